//! Connections that end badly and servers that stop, in both threading
//! models: client resets mid-request and mid-response free their
//! connection; a graceful stop answers the request in flight, closes idle
//! connections, refuses new ones, and `join` returns.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use stoat::config::Model;

use common::{
    app, blocking_server, config, get, join, start, start_with, stop, wait_connections, wait_until,
    Client, TIMEOUT,
};

both_models!(
    reset_mid_request,
    reset_mid_response,
    reset_does_not_leak_output,
    graceful_shutdown_answers_in_flight,
    shutdown_closes_idle_connections,
);

/// Clients that go away (RST, or a plain close: FIN) inside a head or a
/// body: the server frees the connection at once (not at the 10 s request
/// timeout) and keeps serving.
fn reset_mid_request(model: Model) {
    let server = start(model);
    let addr = server.local_addr();
    let cases: [(&str, &[u8], bool); 4] = [
        ("RST inside the head", b"GET /hello HTTP/1.1\r\nHo", true),
        (
            "RST inside the body",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nten bytes.",
            true,
        ),
        (
            "FIN inside the head",
            b"GET /hello HTTP/1.1\r\nHost: te",
            false,
        ),
        (
            "FIN inside the body",
            b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\nten bytes.",
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, rst) in cases {
        let mut c = Client::connect(addr);
        // Accepted first, so the end reaches a connection the server holds.
        wait_connections(&server, 1);
        // The end follows the bytes at once: the server may see both in
        // one readiness event.
        c.send(bytes);
        if rst {
            c.reset();
        } else {
            drop(c);
        }
        let deadline = Instant::now() + TIMEOUT;
        while server.stats().connections != 0 {
            if Instant::now() >= deadline {
                failures.push(format!("{name}: connection still open after {TIMEOUT:?}"));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Whatever happened, start the next case from no connection
        // (request_timeout_sec is 10 s by default).
        wait_until_closed(&server);
    }

    // The server still serves, and only what was asked.
    let mut c = Client::connect(addr);
    c.send(&get("/hello"));
    match c.try_response(false) {
        Ok(r) if r.text() == "hello" => {}
        Ok(r) => failures.push(format!("a new connection got {r:?}")),
        Err(e) => failures.push(format!("a new connection got no answer: {e}")),
    }
    drop(c);
    wait_connections(&server, 0);
    stop(server);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Waits (up to the default request timeout and a sweep) for the server to
/// hold no connection.
fn wait_until_closed(server: &stoat::app::ServerHandle) {
    let deadline = Instant::now() + Duration::from_secs(12);
    while server.stats().connections != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Clients that go away while a 10 MiB response is being written: the
/// server drops the pending output and frees the connection.
fn reset_mid_response(model: Model) {
    let server = start(model);
    let addr = server.local_addr();
    for rst in [false, true] {
        let mut c = Client::connect(addr);
        c.send(&get("/big"));
        // Read a little of it, so the response is surely under way.
        let mut some = vec![0u8; 64 * 1024];
        c.stream.read_exact(&mut some).unwrap();
        assert!(some.starts_with(b"HTTP/1.1 200 OK\r\n"));
        if rst {
            c.reset();
        } else {
            // Closing with unread data also makes the kernel send RST.
            drop(c);
        }
        wait_connections(&server, 0);
    }
    // The server still serves, and nothing of the abandoned responses
    // reaches a new connection.
    let mut c = Client::connect(addr);
    c.send(&get("/hello"));
    match c.try_response(false) {
        Ok(r) => assert_eq!(r.text(), "hello", "a new connection got {r:?}"),
        Err(e) => panic!("a new connection did not get its own answer: {e}"),
    }
    drop(c);
    stop(server);
}

/// A client that sends a request and resets at once: the server answers
/// into a write that fails. Nothing of that answer may reach the next
/// connection the same thread serves (one network thread, so it is the
/// same thread).
fn reset_does_not_leak_output(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    for i in 0..20 {
        let mut gone = Client::connect(addr);
        gone.send(&get(&format!("/p/gone-{i}")));
        gone.reset();
        let mut next = Client::connect(addr);
        next.send(&get(&format!("/p/next-{i}")));
        let r = next.response();
        assert_eq!(
            r.text(),
            format!("/p/next-{i}"),
            "round {i}: another connection's response arrived: {r:?}"
        );
        next.expect_nothing_yet();
    }
    stop(server);
}

/// A graceful stop while a handler is running: that request still gets its
/// 200, with `Connection: close`, then EOF; idle keep-alive connections
/// are closed; new connections are refused; `join` returns.
fn graceful_shutdown_answers_in_flight(model: Model) {
    let (server, entered_rx, release_tx) = blocking_server(model);
    let addr = server.local_addr();

    let mut idle: Vec<Client> = (0..4)
        .map(|_| {
            let mut c = Client::connect(addr);
            c.send(&get("/hello"));
            assert_eq!(c.response().text(), "hello");
            c
        })
        .collect();
    let mut busy = Client::connect(addr);
    busy.send(&get("/block"));
    entered_rx
        .recv_timeout(TIMEOUT)
        .expect("the handler is entered");

    server.shutdown();
    release_tx.send(()).unwrap();

    // Every expectation is checked and the failures reported together.
    let mut failures = Vec::new();
    match busy.try_response(false) {
        Ok(r) => {
            if r.status != 200 || r.text() != "finished" {
                failures.push(format!("in-flight request answered {r:?}"));
            }
            if !r.connection_has("close") {
                failures.push(format!(
                    "in-flight response has no `Connection: close`: {r:?}"
                ));
            }
            if let Err(e) = busy.try_end() {
                failures.push(format!("in-flight connection not closed: {e}"));
            }
        }
        Err(e) => failures.push(format!("in-flight request not answered: {e}")),
    }
    for (i, c) in idle.iter_mut().enumerate() {
        if let Err(e) = c.try_end() {
            failures.push(format!("idle connection {i} not closed by the stop: {e}"));
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    while !refused(addr) {
        if Instant::now() >= deadline {
            failures.push(format!(
                "connections still accepted {TIMEOUT:?} after shutdown"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    join(server);
    if !refused(addr) {
        failures.push("a connection was accepted after join".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A stop with only idle keep-alive connections: all closed at once, and
/// `join` returns.
fn shutdown_closes_idle_connections(model: Model) {
    let server = start(model);
    let addr = server.local_addr();
    let mut idle: Vec<Client> = (0..6)
        .map(|i| {
            let mut c = Client::connect(addr);
            c.send(&get(&format!("/p/{i}")));
            assert_eq!(c.response().status, 200);
            c
        })
        .collect();
    // One connection that has sent nothing yet is idle too.
    idle.push(Client::connect(addr));
    wait_connections(&server, idle.len());
    server.shutdown();
    for (i, c) in idle.iter_mut().enumerate() {
        if let Err(e) = c.try_end() {
            panic!("idle connection {i} not closed by the stop: {e}");
        }
    }
    wait_until("new connections refused", || refused(addr));
    stop(server);
}

/// Whether a connection to `addr` is refused. (One that races the
/// listener's close may still be accepted into its backlog: the caller
/// polls.)
fn refused(addr: SocketAddr) -> bool {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}
