//! The benchmark server: the TechEmpower-style endpoints, for comparing
//! Stoat with other servers (see `../shared/bench`).
//!
//! - `GET /plaintext`: `Hello, World!` as `text/plain`.
//! - `GET /json`: `{"message":"Hello, World!"}`, serialized per request.
//! - `POST /echo`: the request body back, as `application/octet-stream`,
//!   streamed: each piece is written back as it arrives (`Content-Length`
//!   when the request has one, chunked otherwise), so uploads of any size
//!   cost no memory beyond a read buffer (`Server::post_streaming`).
//!
//! Usage: `bench [--port P] [--threads N] [--model shared|per_core]
//! [--max-connections N] [--buffer-memory-limit BYTES]
//! [--keepalive-timeout SECS] [--echo stream|whole] [--metrics PATH]
//! [--dashboard PATH] [--access-log FILE|stderr] [--access-log-queue N]
//! [--defer-accept SECS]` (defaults: port 8080, then the configuration's
//! thread count, per_core, and the configuration's connection limit,
//! read-buffer memory limit, keep-alive timeout and `defer_accept_sec`, off;
//! `--echo whole` serves `/echo` with a whole-body handler, for comparison).
//! Listens on 127.0.0.1; stops on SIGINT or SIGTERM.

use std::process;

use serde::Serialize;
use stoat::app::{BodyChunk, BodyWriter, Request, Response, Server};
use stoat::config::{Config, Model};

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

const USAGE: &str = "usage: bench [--port P] [--threads N] [--model shared|per_core] \
                     [--max-connections N] [--buffer-memory-limit BYTES] \
                     [--keepalive-timeout SECS] [--echo stream|whole] \
                     [--metrics PATH] [--dashboard PATH] [--access-log FILE|stderr] \
                     [--access-log-queue N] [--defer-accept SECS]";

fn main() {
    let (config, whole_echo) = match parse_args(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("bench: {message}\n{USAGE}");
            process::exit(2);
        }
    };
    let mut server = Server::new(config)
        .get("/plaintext", |_| Response::text("Hello, World!"))
        .get("/json", |_| {
            let message = Message {
                message: "Hello, World!",
            };
            match serde_json::to_vec(&message) {
                Ok(json) => Response::json_bytes(json),
                Err(_) => Response::new(500),
            }
        });
    server = if whole_echo {
        // For comparison: the body read whole, then sent back.
        server.post("/echo", |req| Response::bytes(req.body().to_vec()))
    } else {
        server.post_streaming("/echo", echo)
    };
    if let Err(e) = server.run() {
        eprintln!("bench: {e}");
        process::exit(1);
    }
}

/// `POST /echo`: the body back, piece by piece as it is read.
fn echo(req: &Request, res: &mut BodyWriter) -> impl FnMut(BodyChunk, &mut BodyWriter) {
    res.start(Response::bytes(Vec::new()), req.content_length());
    |chunk: BodyChunk, res: &mut BodyWriter| match chunk {
        BodyChunk::Data(bytes) => {
            res.write(bytes);
        }
        BodyChunk::End => {
            res.finish();
        }
    }
}

/// The configuration the arguments ask for.
/// `true` in the pair: `--echo whole`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(Config, bool), String> {
    let mut config = Config::default();
    let mut whole_echo = false;
    config.http.bind_address = [127, 0, 0, 1].into();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => {
                config.http.port = value.parse().map_err(|_| format!("bad port {value:?}"))?;
            }
            "--threads" => {
                config.http.network_threads = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad thread count {value:?}"))?;
            }
            "--defer-accept" => {
                config.http.defer_accept_sec = value
                    .parse()
                    .map_err(|_| format!("bad defer-accept seconds {value:?}"))?;
            }
            "--max-connections" => {
                config.http.max_connections = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad connection limit {value:?}"))?;
            }
            "--echo" => {
                whole_echo = match value.as_str() {
                    "whole" => true,
                    "stream" => false,
                    _ => return Err(format!("bad echo kind {value:?}")),
                };
            }
            "--keepalive-timeout" => {
                config.http.keepalive_timeout_sec = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad keep-alive timeout {value:?}"))?;
            }
            "--buffer-memory-limit" => {
                config.http.buffer_memory_limit = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad buffer memory limit {value:?}"))?;
            }
            "--model" => {
                config.http.model = match value.as_str() {
                    "shared" => Model::Shared,
                    "per_core" | "per-core" => Model::PerCore,
                    _ => return Err(format!("bad model {value:?}")),
                };
            }
            "--metrics" => config.http.metrics.path = value,
            "--dashboard" => config.http.metrics.dashboard = value,
            "--access-log" => config.http.access_log.path = value,
            "--access-log-queue" => {
                config.http.access_log.queue = value
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("bad access-log queue {value:?}"))?;
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
    Ok((config, whole_echo))
}
