//! `Server::error_body`: the errors the engine answers by itself carry the
//! hook's body and content type, over real sockets, in both threading
//! models; the status and the fields the engine adds (`Allow`,
//! `Retry-After`, `Connection: close`) stay. Without the hook the default
//! bodies are unchanged.

#[macro_use]
mod common;

use std::sync::{Arc, Condvar, Mutex};

use common::*;
use stoat::app::{per_job, Method, Request, Responder, Response, Server};
use stoat::config::{Config, Model, PipelineConfig};

/// The hook under test: `{"status":S,"message":M}`.
fn json_errors(server: Server) -> Server {
    server.error_body("application/json", |status, message| {
        format!("{{\"status\":{status},\"message\":\"{message}\"}}").into_bytes()
    })
}

/// The response is the hook's body for `status` with the engine's message.
#[track_caller]
fn assert_page(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert_eq!(
        r.text(),
        format!("{{\"status\":{status},\"message\":\"{message}\"}}"),
        "{r:?}"
    );
}

fn small_limits(model: Model) -> Config {
    let mut c = config(model);
    c.http.max_body_size = 64;
    c.http.max_header_bytes = 1024;
    c.http.request_timeout_sec = 1;
    c
}

fn routes(server: Server) -> Server {
    let held: Arc<Mutex<Vec<Responder>>> = Arc::default();
    server
        .get("/ok", |_: &Request| Response::text("ok"))
        .get("/panic", |_: &Request| -> Response {
            panic!("handler bug")
        })
        .suspend(Method::Get, "/hold", move |_: &Request, r: Responder| {
            // Never answered: the request deadline answers 503.
            held.lock().unwrap().push(r)
        })
}

/// Protocol errors (400 framing, 413, 431, 408), 404, 405, 501 and the
/// 500 of a panicking handler, and the 503 of a passed deadline.
fn engine_errors_use_the_page(model: Model) {
    let server = start_with(small_limits(model), |s| json_errors(routes(s)));
    let addr = server.local_addr();

    let mut c = Client::connect(addr);
    c.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_page(&c.response(), 404, "no such resource");
    c.send(b"DELETE /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_page(&r, 405, "method not allowed on this resource");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    c.send(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_page(&c.response(), 500, "the handler failed");
    // The connection is still good after app-level errors.
    c.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().text(), "ok");

    // Framing: both Content-Length and Transfer-Encoding (RFC 9112 §6.1).
    let mut c = Client::connect(addr);
    c.send(
        b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
    );
    let r = c.response();
    assert_page(&r, 400, "both Content-Length and Transfer-Encoding");
    assert!(r.connection_has("close"), "{r:?}");

    // 413, decided from Content-Length before the body is read.
    let mut c = Client::connect(addr);
    c.send(b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n");
    assert_page(&c.response(), 413, "request body too large");

    // 431: a header section over max_header_bytes.
    let mut c = Client::connect(addr);
    let big = format!(
        "GET /ok HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    c.send_lossy(big.as_bytes());
    assert_page(&c.response(), 431, "request header fields too large");

    // 408: a head that never ends, answered at the request deadline.
    let mut c = Client::connect(addr);
    c.send(b"GET /ok HTTP/1.1\r\nHost: t\r\n");
    let r = c.response();
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.text().starts_with("{\"status\":408,"), "{r:?}");

    // 503: a suspended request not answered by its deadline.
    let mut c = Client::connect(addr);
    c.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_page(&r, 503, "the request was not answered in time");
    assert_eq!(r.header("retry-after"), Some("1"));
    stop(server);
}

/// Without the hook, the same errors keep their default bodies.
fn default_bodies_without_the_page(model: Model) {
    let server = start_with(small_limits(model), routes);
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    c.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (404, ""));
    assert_eq!(r.header("content-type"), None);
    let mut c = Client::connect(addr);
    c.send(b"POST /ok HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; charset=utf-8"),
        "{r:?}"
    );
    assert_eq!(r.text(), "request body too large");
    stop(server);
}

/// A full pipeline ring's 503 carries the page, with `Retry-After`.
fn full_ring_uses_the_page(model: Model) {
    let mut cfg = config(model);
    cfg.http.pipelines.insert(
        "work".into(),
        PipelineConfig {
            ring_buffer_size: 2,
            threads: 1,
            ..PipelineConfig::default()
        },
    );
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let g = gate.clone();
    let server = start_with(cfg, move |s| {
        let mut s = json_errors(s);
        s.pipeline(
            "work",
            per_job(move |_, ()| {
                let (open, cv) = &*g;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = cv.wait(open).unwrap();
                }
                "done"
            }),
        )
        .unwrap()
        .get("/job", ());
        s
    });
    let addr = server.local_addr();
    // The thread holds at most a batch of one ring's size and the ring one
    // more: of 8 requests (ring 2), some are refused at once.
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(addr)).collect();
    for c in &mut clients {
        c.send(b"GET /job HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    wait_until("every request refused or queued", || {
        let s = server.stats();
        s.requests + s.suspended == 8
    });
    let refused = 8 - server.stats().suspended as usize;
    assert!(refused >= 1, "nothing refused");
    let mut pages = 0;
    for c in &mut clients {
        let mut byte = [0u8; 1];
        c.stream.set_nonblocking(true).unwrap();
        let ready = c.stream.peek(&mut byte).is_ok();
        c.stream.set_nonblocking(false).unwrap();
        if ready {
            let r = c.response();
            assert_page(&r, 503, "the service is busy; retry shortly");
            assert_eq!(r.header("retry-after"), Some("1"));
            pages += 1;
        }
    }
    assert_eq!(pages, refused);
    let (open, cv) = &*gate;
    *open.lock().unwrap() = true;
    cv.notify_all();
    stop(server);
}

both_models!(
    engine_errors_use_the_page,
    default_bodies_without_the_page,
    full_ring_uses_the_page,
);
