//! A WebSocket echo server: every text or binary message sent to `/` comes
//! back unchanged (the server the Autobahn cases and the echo benchmark
//! run against; see `.ci/autobahn` and `bench/ws`).
//!
//! Usage: `ws_echo [--port P] [--threads N] [--model shared|per_core]
//! [--max-connections N] [--ping-sec S]` (defaults: port 9001, the
//! configuration's thread count, per_core, its `ws_ping_sec`). Listens on 127.0.0.1; stops on SIGINT or SIGTERM
//! (open WebSockets get close 1001).

use std::process;

use stoat::app::{Message, Server, Session, WebSocket, WsContext};
use stoat::config::{Config, Model};

const USAGE: &str =
    "usage: ws_echo [--port P] [--threads N] [--model shared|per_core] [--max-connections N] \
     [--ping-sec S]";

/// Echoes each message.
struct Echo;

impl Session for Echo {
    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        // Err: the connection is closing; nothing to do.
        let _ = ws.send(msg);
    }
}

fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ws_echo: {message}\n{USAGE}");
            process::exit(2);
        }
    };
    let server = Server::new(config).websocket("/", WebSocket::new(|_| Echo));
    let started =
        |h: &stoat::app::ServerHandle| eprintln!("ws_echo: listening on {}", h.local_addr());
    if let Err(e) = server.run_with(started) {
        eprintln!("ws_echo: {e}");
        process::exit(1);
    }
}

/// The configuration the arguments ask for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::default();
    config.http.bind_address = [127, 0, 0, 1].into();
    config.http.port = 9001;
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let count = |what: &str| {
            value
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("bad {what} {value:?}"))
        };
        match flag.as_str() {
            "--port" => {
                config.http.port = value.parse().map_err(|_| format!("bad port {value:?}"))?;
            }
            "--threads" => config.http.network_threads = count("thread count")?,
            "--max-connections" => config.http.max_connections = count("connection limit")?,
            "--ping-sec" => {
                config.http.ws_ping_sec =
                    value.parse().map_err(|_| format!("bad ping {value:?}"))?;
            }
            "--model" => {
                config.http.model = match value.as_str() {
                    "shared" => Model::Shared,
                    "per_core" | "per-core" => Model::PerCore,
                    _ => return Err(format!("bad model {value:?}")),
                };
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    if config.http.model == Model::Shared {
        config.http.accept_threads = 1;
    }
    // Enough buffers for every thread, whatever the thread count.
    let per_thread = 2 * config.http.buffer_size;
    config.http.buffer_memory_limit = config
        .http
        .buffer_memory_limit
        .max(per_thread.saturating_mul(config.http.network_threads));
    Ok(config)
}
