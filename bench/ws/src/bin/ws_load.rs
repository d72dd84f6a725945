//! The load client: `-c` WebSocket connections, each with one small text
//! message in flight at a time; one thread drives them all in rounds
//! (write one masked frame on every connection, then read every echo), so
//! the client costs little next to the server. Frames are written and read
//! by hand (a fixed message, a fixed mask).
//!
//! Usage: `ws_load --port P [--path /] [-c 64] [--size 32] (--seconds S | --messages N)`.
//! Prints `messages=M seconds=T rate=R/s`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn main() {
    let mut port = 9001u16;
    let mut path = String::from("/");
    let mut conns = 64usize;
    let mut size = 32usize;
    let mut seconds: Option<f64> = None;
    let mut messages: Option<u64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--port" => port = value.parse().unwrap_or_else(|_| usage()),
            "--path" => path = value,
            "-c" => conns = value.parse().unwrap_or_else(|_| usage()),
            "--size" => size = value.parse().unwrap_or_else(|_| usage()),
            "--seconds" => seconds = Some(value.parse().unwrap_or_else(|_| usage())),
            "--messages" => messages = Some(value.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        }
    }
    assert!(size < 126, "small messages only");
    let mut socks: Vec<TcpStream> = (0..conns).map(|_| handshake(port, &path)).collect();
    let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut frame = vec![0x81, 0x80 | size as u8];
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    let reply_len = 2 + size;
    let mut buf = vec![0u8; reply_len];
    let start = Instant::now();
    let deadline = seconds.map(|s| start + Duration::from_secs_f64(s));
    let mut done = 0u64;
    'run: loop {
        let round = match messages {
            Some(n) if n - done < conns as u64 => (n - done) as usize,
            _ => conns,
        };
        if round == 0 {
            break;
        }
        for s in &mut socks[..round] {
            s.write_all(&frame).expect("write");
        }
        for s in &mut socks[..round] {
            s.read_exact(&mut buf).expect("an echo");
            assert_eq!(buf[0], 0x81);
            assert_eq!(&buf[2..], &payload[..]);
        }
        done += round as u64;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break 'run;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // A close frame (1000), masked, on every connection, then wait for the
    // servers' ends, 2 s at most in all (a server that answers the close
    // but keeps the TCP connection open must not hold the count back).
    let mut close = vec![0x88, 0x82];
    close.extend_from_slice(&MASK);
    close.extend([0x03 ^ MASK[0], 0xE8 ^ MASK[1]]);
    for s in &mut socks {
        let _ = s.write_all(&close);
    }
    let until = Instant::now() + Duration::from_secs(2);
    for mut s in socks {
        let mut sink = [0u8; 64];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
                break;
            }
            if !matches!(s.read(&mut sink), Ok(n) if n > 0) {
                break;
            }
        }
    }
    println!(
        "messages={done} seconds={secs:.3} rate={:.0}/s",
        done as f64 / secs
    );
}

fn usage() -> ! {
    eprintln!("usage: ws_load --port P [--path /] [-c 64] [--size 32] (--seconds S | --messages N)");
    std::process::exit(2);
}

/// Connects and completes the opening handshake.
fn handshake(port: u16, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("write handshake");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("handshake response");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}
