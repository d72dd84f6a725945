//! Output is bounded per connection (issue 12, row 4), both models: a
//! client pipelines thousands of `GET`s of a 256 KiB body on one socket
//! and does not read. The server stops parsing (and reading) once the
//! bytes queued for that client exceed `http.max_pending_output`, so what
//! it ever holds for the client (`Stats::output_peak`) stays within the
//! limit plus one response, however many requests wait; then the client
//! reads, and every response arrives, in order, intact. The answer comes
//! inline, from a pipeline thread, or from a suspended handler.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;

use common::*;
use stoat::app::{Method, Request, Responder, Response, Server};
use stoat::config::{Config, Model, PipelineConfig};

both_models!(inline_bounded, pipeline_bounded, suspended_bounded);

/// Requests pipelined unread.
const REQUESTS: usize = 2000;
/// Each response's body.
const BODY: usize = 256 * 1024;
/// `http.max_pending_output` of these tests (the default).
const LIMIT: usize = 64 * 1024;
/// Room for one response's head.
const HEAD_ROOM: usize = 1024;

/// The body shared by every response; each response's first 8 bytes are
/// its number, so a lost, repeated or reordered response shows.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| (0..BODY).map(big_byte).collect())
}

fn body_for(n: usize) -> Vec<u8> {
    let mut body = pattern().to_vec();
    body[..8].copy_from_slice(format!("{n:08}").as_bytes());
    body
}

fn body_of(req: &Request<'_>) -> Response {
    let n: usize = req.param("n").and_then(|n| n.parse().ok()).unwrap_or(0);
    Response::bytes(body_for(n))
}

fn bounded_config(model: Model) -> Config {
    let mut c = config(model);
    c.http.max_pending_output = LIMIT;
    c.http.pipelines.insert(
        "work".into(),
        PipelineConfig {
            ring_buffer_size: 64,
            threads: 1,
            ..PipelineConfig::default()
        },
    );
    c
}

fn inline_bounded(model: Model) {
    run(model, "/v", |s, calls| {
        s.get("/v/{n}", move |req: &Request<'_>| {
            calls.fetch_add(1, Ordering::Relaxed);
            body_of(req)
        })
    });
}

fn pipeline_bounded(model: Model) {
    run(model, "/q", |s, calls| {
        let mut s = s;
        s.pipeline("work", move |jobs: &mut [stoat::app::Job<()>]| {
            for job in jobs.iter_mut() {
                calls.fetch_add(1, Ordering::Relaxed);
                let response = body_of(&job.request());
                let _ = job.respond(response);
            }
        })
        .expect("the work pipeline is configured")
        .get("/q/{n}", ());
        s
    });
}

fn suspended_bounded(model: Model) {
    run(model, "/s", |s, calls| {
        s.suspend(
            Method::Get,
            "/s/{n}",
            move |req: &Request<'_>, r: Responder| {
                calls.fetch_add(1, Ordering::Relaxed);
                let response = body_of(req);
                // Answered from another thread, as a suspended request is.
                thread::spawn(move || {
                    let _ = r.send(response);
                });
            },
        )
    });
}

/// Starts the server with the route `routes` adds at `prefix/{n}`, sends
/// [`REQUESTS`] pipelined GETs without reading, waits until the server has
/// reached its limit and stopped, checks what it holds, then reads every
/// response and checks it.
fn run(model: Model, prefix: &str, routes: impl FnOnce(Server, Arc<AtomicUsize>) -> Server) {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = calls.clone();
    let server = start_with(bounded_config(model), move |s| routes(s, handler_calls));
    let stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut requests = Vec::new();
    for n in 0..REQUESTS {
        requests
            .extend_from_slice(format!("GET {prefix}/{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    // Written from another thread: once the server stops reading, the
    // write may wait for it.
    let mut writer = stream.try_clone().unwrap();
    let writing = thread::spawn(move || writer.write_all(&requests));

    // The server answers until the bytes queued for this client pass the
    // limit, and the socket's buffers fill: then it must stop.
    wait_until("the output limit reached", || {
        server.stats().output_peak > LIMIT
    });
    let bound = LIMIT + BODY + HEAD_ROOM;
    let stalled = server.stats();
    assert!(
        stalled.output_peak <= bound,
        "{} bytes queued for one client (limit {LIMIT})",
        stalled.output_peak
    );
    let answered_unread = calls.load(Ordering::Relaxed);
    assert!(
        answered_unread < REQUESTS,
        "all {REQUESTS} requests were handled while the client read nothing"
    );

    // Now the client reads: every response, in order, intact.
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut body = vec![0u8; BODY];
    let mut line = String::new();
    for n in 0..REQUESTS {
        line.clear();
        reader.read_line(&mut line).expect("status line");
        assert_eq!(line, "HTTP/1.1 200 OK\r\n", "response {n}");
        let mut length = None;
        loop {
            line.clear();
            reader.read_line(&mut line).expect("header line");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
        }
        assert_eq!(length, Some(BODY), "response {n}");
        reader.read_exact(&mut body).expect("body");
        assert_eq!(
            &body[..8],
            format!("{n:08}").as_bytes(),
            "response {n} out of order"
        );
        assert!(body[8..] == pattern()[8..], "response {n} corrupted");
    }
    writing.join().unwrap().expect("requests written");
    assert_eq!(calls.load(Ordering::Relaxed), REQUESTS);
    let end = server.stats();
    assert!(
        end.output_peak <= bound,
        "{} bytes queued for one client (limit {LIMIT})",
        end.output_peak
    );
    println!(
        "{model:?} {prefix}: peak queued {} B (limit {LIMIT}), {answered_unread} answered before the client read",
        end.output_peak
    );
    stop(server);
}
