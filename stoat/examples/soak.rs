//! The soak test's server (`bench/soak/soak.py`): the bench example's and
//! the pipeline example's endpoints in one process, a WebSocket echo, and
//! the server's counters on demand.
//!
//! - `GET /plaintext`: inline, `Hello, World!`.
//! - `POST /echo`: the body back, streamed as it is read (bench example).
//! - `GET /block?us=N`: on the pipeline `work` (small ring: bursts overflow
//!   it), blocks N microseconds.
//! - `GET /later?ms=N`: suspended; a timer thread answers after N ms.
//! - `GET /events?count=N&every_ms=M`: server-sent events from a thread.
//! - `GET /ws`: WebSocket echo.
//!
//! Control on stdin/stdout, so that reading the counters opens no
//! connection: it prints `listening <addr>` once serving; each line `stats`
//! on stdin prints the counters as one JSON line; `stop` (or the end of
//! stdin) stops gracefully, prints the final counters and exits (status 1
//! if a server thread panicked).
//!
//! Usage: `soak [--threads N] [--model shared|per_core] [--ring R]
//! [--pipeline-threads K] [--max-connections N]` (port 0: the kernel picks).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, Write};
use std::process;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use stoat::app::{
    per_job, BodyChunk, BodyWriter, EventStream, Message, Method, Request, Responder, Response,
    Server, Session, SseEvent, StartError, Stats, WebSocket, WsContext,
};
use stoat::config::{Config, Model, PipelineConfig};

const USAGE: &str = "usage: soak [--threads N] [--model shared|per_core] [--ring R] \
                     [--pipeline-threads K] [--max-connections N]";

struct Echo;

impl Session for Echo {
    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        let _ = ws.send(msg);
    }
}

fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("soak: {message}\n{USAGE}");
            process::exit(2);
        }
    };
    let later = timer_thread();
    let mut server = Server::new(config)
        .get("/plaintext", |_| Response::text("Hello, World!"))
        .post_streaming("/echo", echo)
        .suspend(Method::Get, "/later", move |req, responder: Responder| {
            let ms: u64 = param(req, "ms").unwrap_or(0).min(600_000);
            let _ = later.send((Instant::now() + Duration::from_millis(ms), ms, responder));
        })
        .sse("/events", |req, stream: EventStream| {
            let count: u64 = param(req, "count").unwrap_or(10).min(1_000_000);
            let every = Duration::from_millis(param(req, "every_ms").unwrap_or(100).min(60_000));
            thread::spawn(move || {
                for id in 1..=count {
                    thread::sleep(every);
                    let id = id.to_string();
                    if stream.send(SseEvent::data(id.clone()).id(id)).is_err() {
                        return;
                    }
                }
            });
        })
        .websocket("/ws", WebSocket::new(|_| Echo));
    let blocking = per_job(|req: &Request<'_>, ()| {
        let us: u64 = param(req, "us").unwrap_or(0).min(1_000_000);
        thread::sleep(Duration::from_micros(us));
        Response::text(format!("blocked {us}"))
    });
    let routed: Result<(), StartError> = server.pipeline("work", blocking).map(|p| {
        p.get("/block", ());
    });
    if let Err(e) = routed {
        eprintln!("soak: {e}");
        process::exit(1);
    }
    let handle = match server.start() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("soak: {e}");
            process::exit(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {}", handle.local_addr());
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("stats") => {
                let _ = writeln!(out, "{}", json(&handle.stats()));
                let _ = out.flush();
            }
            Ok("stop") | Err(_) => break,
            Ok(_) => {}
        }
    }
    handle.shutdown();
    let last = handle.stats();
    let joined = handle.join();
    let _ = writeln!(out, "{}", json(&last));
    let _ = out.flush();
    if let Err(e) = joined {
        eprintln!("soak: {e}");
        process::exit(1);
    }
}

/// The counters the soak checks, as one JSON object.
fn json(s: &Stats) -> String {
    format!(
        "{{\"connections\":{},\"accepted\":{},\"requests\":{},\"buffers\":{},\
         \"waiting_for_buffer\":{},\"body_bytes\":{},\"suspended\":{},\"resumed\":{},\
         \"expired\":{},\"abandoned\":{},\"arenas_in_use\":{}}}",
        s.connections,
        s.accepted,
        s.requests,
        s.buffers,
        s.waiting_for_buffer,
        s.body_bytes,
        s.suspended,
        s.resumed,
        s.expired,
        s.abandoned,
        s.arenas_in_use
    )
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

/// One thread answering suspended requests at their due time.
fn timer_thread() -> mpsc::Sender<(Instant, u64, Responder)> {
    let (tx, rx) = mpsc::channel::<(Instant, u64, Responder)>();
    thread::spawn(move || {
        let mut heap = BinaryHeap::new();
        let mut waiting = HashMap::new();
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
    config.http.port = 0;
    let mut work = PipelineConfig {
        ring_buffer_size: 8,
        ..PipelineConfig::default()
    };
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
            "--threads" => config.http.network_threads = number()?,
            "--pipeline-threads" => work.threads = number()?,
            "--ring" => work.ring_buffer_size = number()?,
            "--max-connections" => config.http.max_connections = number()?,
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
    config.http.pipelines.insert("work".to_owned(), work);
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}
