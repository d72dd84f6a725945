//! The peer: a WebSocket echo server on tungstenite (blocking, one thread
//! per connection), as its own examples do.
//!
//! Usage: `tung_echo [--port P] [--read-buffer BYTES]` (default 9002 and
//! tungstenite's default read buffer, 128 KiB, whose spare capacity it
//! zeroes on every read). Listens on 127.0.0.1.

use std::net::TcpListener;
use std::thread;

use tungstenite::protocol::WebSocketConfig;
use tungstenite::{accept_with_config, Message};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut port = 9002u16;
    let mut config = WebSocketConfig::default();
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--port", Some(p)) => port = p.parse().expect("a port"),
            ("--read-buffer", Some(n)) => {
                config = config.read_buffer_size(n.parse().expect("a size"));
            }
            _ => {
                eprintln!("usage: tung_echo [--port P] [--read-buffer BYTES]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    eprintln!(
        "tung_echo: listening on {}",
        listener.local_addr().expect("addr")
    );
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        thread::spawn(move || {
            let Ok(mut ws) = accept_with_config(stream, Some(config)) else {
                return;
            };
            loop {
                match ws.read() {
                    Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                        if ws.send(msg).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
    }
}
