//! Behaviour over real sockets, in both threading models: keep-alive,
//! pipelining, HTTP/1.0, chunked uploads, 100-continue, large responses to
//! slow readers, requests typed a byte at a time, routing answers.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use stoat::config::Model;

use common::{big_body, get, post_echo, start, stop, wait_connections, Client, BIG_LEN};

both_models!(
    keep_alive_reuse,
    pipelined_in_order,
    http10_closes,
    http10_keep_alive_stays_open,
    chunked_upload,
    large_body_upload,
    expect_continue,
    expect_continue_refused_body_too_large,
    slow_reader_gets_big_body_intact,
    byte_at_a_time,
    half_close_still_answered,
    not_found,
    method_not_allowed_lists_allow,
    head_on_get_route,
);

/// Several requests on one connection: one accept, each answered, no close
/// until asked.
fn keep_alive_reuse(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    let local = c.stream.local_addr().unwrap();
    for i in 0..5 {
        c.send(&get(&format!("/p/{i}")));
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.text(), format!("/p/{i}"));
        assert!(!r.connection_has("close"), "request {i}: {r:?}");
    }
    c.send(&post_echo(b"on the same socket"));
    assert_eq!(c.response().text(), "on the same socket");
    assert_eq!(c.stream.local_addr().unwrap(), local);
    let stats = server.stats();
    assert_eq!(stats.accepted, 1, "{stats:?}");
    assert_eq!(stats.connections, 1, "{stats:?}");

    c.send(b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.connection_has("close"), "{r:?}");
    c.expect_end();
    wait_connections(&server, 0);
    assert_eq!(server.stats().accepted, 1);
    stop(server);
}

/// 16 requests in one write (GETs and POSTs with bodies), answered in order.
fn pipelined_in_order(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..16 {
        if i % 4 == 3 {
            let body = format!("body number {i}").repeat(i);
            batch.extend_from_slice(&post_echo(body.as_bytes()));
            expected.push(body);
        } else {
            // Paths of different lengths: a reordering cannot go unnoticed.
            let path = format!("/p/{}", "x".repeat(i) + &i.to_string());
            batch.extend_from_slice(&get(&path));
            expected.push(path);
        }
    }
    c.send(&batch);
    for (i, want) in expected.iter().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 200, "response {i}");
        assert_eq!(&r.text(), want, "response {i}");
    }
    // Nothing more: exactly 16 answers.
    c.expect_nothing_yet();
    assert_eq!(server.stats().accepted, 1);
    stop(server);
}

/// An HTTP/1.0 request without keep-alive: its response, then EOF.
fn http10_closes(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello");
    assert!(!r.connection_has("keep-alive"), "{r:?}");
    c.expect_end();
    wait_connections(&server, 0);
    stop(server);
}

/// HTTP/1.0 with `Connection: keep-alive`: the response says keep-alive
/// and the connection serves the next request.
fn http10_keep_alive_stays_open(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    for i in 0..3 {
        c.send(format!("GET /p/{i} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(r.text(), format!("/p/{i}"));
        assert!(r.connection_has("keep-alive"), "request {i}: {r:?}");
        assert!(r.header("content-length").is_some(), "{r:?}");
    }
    assert_eq!(server.stats().accepted, 1);
    // The last one without keep-alive ends it.
    c.send(b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(c.response().text(), "hello");
    c.expect_end();
    stop(server);
}

/// Chunked request bodies, with extensions and trailers, sent in pieces
/// that split the framing anywhere; one larger than a read buffer.
fn chunked_upload(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.stream.set_nodelay(true).unwrap();

    let small = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n\
        1;a=b;c=\"quoted ; value\"\r\n \r\n\
        A\r\nchunked wo\r\n\
        3\r\nrld\r\n\
        0;last=yes\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n";
    // Split inside the head, a size line, an extension, data and the trailer.
    for piece in small.chunks(7) {
        c.send(piece);
    }
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello chunked world");

    // About 100 KiB in chunks of varied sizes: larger than the 16 KiB
    // read buffer.
    let mut body = Vec::new();
    let mut wire =
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut size = 1;
    while body.len() < 100_000 {
        let chunk: Vec<u8> = (0..size)
            .map(|j| b'a' + ((body.len() + j) % 26) as u8)
            .collect();
        wire.extend_from_slice(format!("{size:x};n={size}\r\n").as_bytes());
        wire.extend_from_slice(&chunk);
        wire.extend_from_slice(b"\r\n");
        body.extend_from_slice(&chunk);
        size = size * 7 % 4001 + 1;
    }
    wire.extend_from_slice(b"0\r\nX-Done: 1\r\n\r\n");
    for piece in wire.chunks(3001) {
        c.send(piece);
    }
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");

    // The connection is still in step.
    c.send(&get("/hello"));
    assert_eq!(c.response().text(), "hello");
    stop(server);
}

/// A `Content-Length` body of several read buffers (300 KB, under the
/// 1 MiB `max_body_size`) reaches the handler whole.
fn large_body_upload(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    c.send(&post_echo(&body));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
    c.send(&get("/hello"));
    assert_eq!(c.response().text(), "hello");
    stop(server);
}

/// `Expect: 100-continue`: the interim 100 comes before the body is sent,
/// then the final response.
fn expect_continue(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 13\r\n\r\n",
    );
    let interim = c.response();
    assert_eq!(interim.status, 100, "{interim:?}");
    assert_eq!(interim.reason, "Continue");
    c.send(b"after the 100");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "after the 100");

    // Chunked with 100-continue, on the same connection.
    c.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(c.response().status, 100);
    c.send(b"4\r\nmore\r\n0\r\n\r\n");
    assert_eq!(c.response().text(), "more");
    stop(server);
}

/// `Expect: 100-continue` with a `Content-Length` over `max_body_size`:
/// the final 413 comes at once, without inviting the body with a 100
/// (RFC 9110 §10.1.1: the point of the expectation is to let the server
/// refuse before the body is sent).
fn expect_continue_refused_body_too_large(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /echo HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 2000000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.connection_has("close"), "{r:?}");
    c.expect_end();
    stop(server);
}

/// A 10 MiB response to a client that reads it in small pieces with
/// pauses: the server must write it in many partial writes; every byte
/// arrives in order.
fn slow_reader_gets_big_body_intact(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/big"));
    let started = Instant::now();
    // Let the server fill the socket buffers before reading anything.
    std::thread::sleep(Duration::from_millis(20));
    let mut got = Vec::with_capacity(BIG_LEN + 1024);
    let mut piece = [0u8; 16 * 1024];
    let mut reads = 0u32;
    let mut body_start = None;
    loop {
        if let Some(start) = body_start {
            if got.len() >= start + BIG_LEN {
                break;
            }
        }
        let n = c.stream.read(&mut piece).expect("read the big body");
        assert!(n > 0, "EOF after {} bytes", got.len());
        got.extend_from_slice(&piece[..n]);
        if body_start.is_none() {
            body_start = common::find(&got, b"\r\n\r\n").map(|i| i + 4);
        }
        reads += 1;
        if reads % 16 == 0 {
            // Slow reader: the pause is the point of the test.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let start = body_start.unwrap();
    let head = String::from_utf8_lossy(&got[..start]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("\r\ncontent-length: {BIG_LEN}\r\n")),
        "{head}"
    );
    let body = &got[start..];
    assert_eq!(body.len(), BIG_LEN, "no bytes after the body");
    if let Some(i) = body.iter().zip(big_body().iter()).position(|(a, b)| a != b) {
        panic!("body differs first at byte {i} of {BIG_LEN}");
    }
    eprintln!("10 MiB read slowly in {:?}", started.elapsed());
    // Still in step for the next request.
    c.send(&get("/hello"));
    assert_eq!(c.response().text(), "hello");
    stop(server);
}

/// A request typed one byte per write (TCP_NODELAY): answered only once
/// complete, and correctly.
fn byte_at_a_time(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.stream.set_nodelay(true).unwrap();
    let requests: [&[u8]; 2] = [
        b"GET /p/typed?q=1 HTTP/1.1\r\nHost: test\r\nUser-Agent: one byte at a time\r\nAccept: */*\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello typed",
    ];
    let expected = ["/p/typed", "hello typed"];
    for (req, want) in requests.iter().zip(expected) {
        let (last, rest) = req.split_last().unwrap();
        for b in rest {
            c.stream.write_all(std::slice::from_ref(b)).unwrap();
            c.stream.flush().unwrap();
        }
        c.expect_nothing_yet();
        c.stream.write_all(&[*last]).unwrap();
        let r = c.response();
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.text(), want);
    }
    stop(server);
}

/// A client that sends its request and half-closes still gets the whole
/// response, then the server closes.
fn half_close_still_answered(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(&post_echo(b"then FIN"));
    c.shutdown_write();
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "then FIN");
    c.expect_end();
    wait_connections(&server, 0);
    stop(server);
}

/// An unknown path: 404, and the connection stays usable.
fn not_found(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    for path in ["/nope", "/hello/extra", "/p", "/p/1/2", "/HELLO"] {
        c.send(&get(path));
        let r = c.response();
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(!r.connection_has("close"), "{path}: {r:?}");
    }
    c.send(&get("/hello"));
    assert_eq!(c.response().text(), "hello");
    assert_eq!(server.stats().accepted, 1);
    stop(server);
}

/// A known path with the wrong method: 405 with `Allow`, and the
/// connection stays usable.
fn method_not_allowed_lists_allow(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /hello HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.response();
    assert_eq!(r.status, 405, "{r:?}");
    let allow = r.header("allow").expect("Allow on a 405");
    let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    assert!(methods.contains(&"GET"), "{allow}");
    assert!(methods.contains(&"HEAD"), "{allow}");
    assert!(!methods.contains(&"POST"), "{allow}");

    c.send(b"DELETE /echo HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 405, "{r:?}");
    let allow = r.header("allow").expect("Allow on a 405");
    assert!(allow.split(',').any(|m| m.trim() == "POST"), "{allow}");

    c.send(&get("/hello"));
    assert_eq!(c.response().text(), "hello");
    stop(server);
}

/// HEAD on a GET route: the GET's status and Content-Length, no body
/// (the next response on the connection starts right after the head).
fn head_on_get_route(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /hello HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("5"), "{r:?}");
    c.send(b"HEAD /big HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-length"),
        Some(BIG_LEN.to_string().as_str())
    );
    c.send(&get("/hello"));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello");
    stop(server);
}
