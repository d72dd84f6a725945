//! The accept path, over real sockets, both models: a connection is served
//! whether its request came with it (`per_core` reads a new connection
//! before registering it, see `runtime/per_core.rs`) or only after it was
//! accepted and registered; an early-served connection kept alive is
//! registered and answers its next request; a response too large for the
//! socket on the first or a later request still arrives whole (write
//! interest added when the output first backs up); with
//! `http.defer_accept_sec`, a silent connection is not accepted until it
//! speaks.

#[macro_use]
mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;

use common::*;
use stoat::config::Model;

both_models!(
    requests_sent_at_connect_all_answered,
    kept_alive_after_first_request_at_connect,
    silent_connection_answered_when_it_speaks,
    big_response_first_or_later,
    deferred_accept_waits_for_bytes,
);

/// Connects and writes `bytes` at once (as the connection is made), with
/// no wait between; returns the client.
fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> Client {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(bytes).expect("write at connect");
    Client::from_stream(stream)
}

/// Many connections, from several threads at once, each writing its
/// request in its first write right after `connect` returns: the request
/// is there before the server accepts (or arrives while it registers),
/// and every one is answered with its own path, then closed.
fn requests_sent_at_connect_all_answered(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let clients: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..150 {
                    let path = format!("/p/{t}-{i}");
                    let req =
                        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                    let mut c = connect_and_send(addr, req.as_bytes());
                    let r = c.response();
                    assert_eq!(r.status, 200, "{r:?}");
                    assert_eq!(r.body, path.as_bytes(), "{r:?}");
                    c.expect_end();
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    wait_connections(&server, 0);
    stop(server);
}

/// A connection whose first request came with it, answered at accept, is
/// kept alive: its second and third requests (written after the first
/// answer, so after the server's first read) are answered too.
fn kept_alive_after_first_request_at_connect(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    for i in 0..100 {
        let mut c = connect_and_send(
            addr,
            format!("GET /p/{i}a HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.body, format!("/p/{i}a").as_bytes(), "{r:?}");
        c.send(format!("GET /p/{i}b HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.body, format!("/p/{i}b").as_bytes(), "{r:?}");
        c.send(format!("GET /p/{i}c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        let r = c.response();
        assert_eq!(r.body, format!("/p/{i}c").as_bytes(), "{r:?}");
        c.expect_end();
    }
    stop(server);
}

/// A connection that sends nothing at first is accepted (its read at
/// accept finds nothing) and waits registered: accepted before a later
/// connection that is answered (one network thread, and one accept
/// thread, take connections in order), then answered when it speaks, in
/// two pieces.
fn silent_connection_answered_when_it_speaks(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let mut silent: Vec<Client> = (0..20).map(|_| Client::connect(addr)).collect();
    let mut later = connect_and_send(
        addr,
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(later.response().body, b"hello");
    later.expect_end();
    wait_connections(&server, 20);
    for (i, c) in silent.iter_mut().enumerate() {
        c.expect_nothing_yet();
        c.send(format!("GET /p/{i} HTTP/1.1\r\n").as_bytes());
    }
    for (i, c) in silent.iter_mut().enumerate() {
        c.send(b"Host: x\r\n\r\n");
        let r = c.response();
        assert_eq!(r.body, format!("/p/{i}").as_bytes(), "{r:?}");
    }
    drop(silent);
    wait_connections(&server, 0);
    stop(server);
}

/// `GET /big` (10 MiB, far more than a socket takes at once) as the
/// request that comes with the connection, and as the second request of
/// a connection: the whole body arrives, byte for byte, both times.
fn big_response_first_or_later(model: Model) {
    let server = start(model);
    let addr = server.local_addr();
    let big = big_body();
    let mut c = connect_and_send(addr, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.body == big[..], "first /big differs");
    let mut c2 = connect_and_send(addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c2.response().body, b"hello");
    c2.send(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c2.response();
    assert!(r.body == big[..], "second /big differs");
    c.send(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert!(r.body == big[..], "third /big differs");
    c.expect_end();
    drop(c2);
    stop(server);
}

/// `defer_accept_sec` (TCP_DEFER_ACCEPT): a connection that has sent
/// nothing is not handed to the server (not accepted, not counted), while
/// one that came with its request is answered; once the silent one
/// speaks, it is accepted and answered. (30 s: far longer than the test,
/// so the kernel's own give-up on the silence never comes into it.)
fn deferred_accept_waits_for_bytes(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    cfg.http.defer_accept_sec = 30;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let mut silent = Client::connect(addr);
    let mut speaker = connect_and_send(
        addr,
        b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(speaker.response().body, b"hello");
    speaker.expect_end();
    assert_eq!(
        server.stats().accepted,
        1,
        "the silent connection was accepted"
    );
    silent.send(b"GET /p/late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(silent.response().body, b"/p/late");
    silent.expect_end();
    assert_eq!(server.stats().accepted, 2);
    stop(server);
}
