//! Handlers that block, wait or stream, beside an inline one:
//!
//! - `GET /plaintext`: inline, `Hello, World!`.
//! - `GET /block?us=N`: on the pipeline `work`, blocks N microseconds
//!   (a sleep: a blocking call), answers `blocked N`.
//! - `GET /later?ms=N`: suspended; a timer thread answers `later N` after
//!   N ms.
//! - `GET /events?count=N&every_ms=M`: a server-sent event stream of N
//!   events (`id` 1..N, `data` the id), one every M ms from a producer
//!   thread, then the end of the response.
//!
//! Usage: `pipeline [--port P] [--threads N] [--pipeline-threads K]
//! [--ring R] [--model shared|per_core]`. Listens on 127.0.0.1; stops on
//! SIGINT or SIGTERM.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::process;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use stoat::app::{per_job, Method, Request, Responder, Response, Server, SseEvent};
use stoat::config::{Config, Model, PipelineConfig};

const USAGE: &str = "usage: pipeline [--port P] [--threads N] [--pipeline-threads K] [--ring R] \
                     [--model shared|per_core]";

fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("pipeline: {message}\n{USAGE}");
            process::exit(2);
        }
    };
    let later = timer_thread();
    let mut server = Server::new(config)
        .get("/plaintext", |_| Response::text("Hello, World!"))
        .suspend(Method::Get, "/later", move |req, responder| {
            let ms: u64 = param(req, "ms").unwrap_or(0).min(600_000);
            // The timer thread owns the responder now; if it is gone the
            // responder is dropped and the client gets 500.
            let _ = later.send((Instant::now() + Duration::from_millis(ms), ms, responder));
        })
        .sse("/events", |req, stream| {
            let count: u64 = param(req, "count").unwrap_or(10).min(1_000_000);
            let every = Duration::from_millis(param(req, "every_ms").unwrap_or(100).min(60_000));
            thread::spawn(move || {
                for id in 1..=count {
                    thread::sleep(every);
                    let id = id.to_string();
                    if stream.send(SseEvent::data(id.clone()).id(id)).is_err() {
                        return; // Closed (client gone) or Full (client too slow).
                    }
                }
                // Dropping the stream ends the response.
            });
        });
    // `/block` runs on the `work` pipeline's threads, one job at a time.
    let work = server.pipeline(
        "work",
        per_job(|req, ()| {
            let us: u64 = param(req, "us").unwrap_or(0).min(10_000_000);
            thread::sleep(Duration::from_micros(us));
            Response::text(format!("blocked {us}"))
        }),
    );
    if let Err(e) = work.map(|p| p.get("/block", ())) {
        eprintln!("pipeline: {e}");
        process::exit(2);
    }
    if let Err(e) = server.run() {
        eprintln!("pipeline: {e}");
        process::exit(1);
    }
}

/// One thread answering suspended requests at their due time.
fn timer_thread() -> mpsc::Sender<(Instant, u64, Responder)> {
    let (tx, rx) = mpsc::channel::<(Instant, u64, Responder)>();
    thread::spawn(move || {
        // Due time, sequence (ties), ms; responders kept beside by sequence.
        let mut heap = BinaryHeap::new();
        let mut waiting = std::collections::HashMap::new();
        let mut seq = 0u64;
        loop {
            let timeout = heap
                .peek()
                .map(|Reverse((due, _)): &Reverse<(Instant, u64)>| {
                    due.saturating_duration_since(Instant::now())
                });
            let got = match timeout {
                Some(t) => rx
                    .recv_timeout(t)
                    .map_err(|e| e == mpsc::RecvTimeoutError::Disconnected),
                None => rx.recv().map_err(|_| true),
            };
            match got {
                Ok((due, ms, responder)) => {
                    seq += 1;
                    heap.push(Reverse((due, seq)));
                    waiting.insert(seq, (ms, responder));
                }
                Err(true) => return,
                Err(false) => {}
            }
            let now = Instant::now();
            while let Some(Reverse((due, s))) = heap.peek().copied() {
                if due > now {
                    break;
                }
                heap.pop();
                if let Some((ms, responder)) = waiting.remove(&s) {
                    let _ = responder.send(Response::text(format!("later {ms}")));
                }
            }
        }
    });
    tx
}

fn param(req: &Request, name: &str) -> Option<u64> {
    req.query_param(name)?.parse().ok()
}

/// The configuration the arguments ask for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config::default();
    config.http.bind_address = [127, 0, 0, 1].into();
    let mut work = PipelineConfig::default();
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            process::exit(0);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || -> Result<usize, String> {
            value
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("bad value {value:?} for {flag}"))
        };
        match flag.as_str() {
            "--port" => {
                config.http.port = value.parse().map_err(|_| format!("bad port {value:?}"))?;
            }
            "--threads" => config.http.network_threads = number()?,
            "--pipeline-threads" => work.threads = number()?,
            "--ring" => work.ring_buffer_size = number()?,
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
    config.http.pipelines.insert("work".to_owned(), work);
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
