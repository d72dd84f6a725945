//! Bounded memory and bounded time, over real sockets, both models: the
//! buffer pool's limit and FIFO wait queue, the head deadline against a
//! trickle, keep-alive expiry, the write-stall timeout, `max_connections`,
//! and the accept backoff on EMFILE (in a child process whose fd limit is
//! lowered); the request arena reset after every response, lent only to
//! requests that use it, and bounded.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stoat::app::{Request, Response, Server};
use stoat::config::{Config, Model};

both_models!(
    pool_limit_fifo_wait,
    slow_heads_give_buffers_back,
    large_bodies_take_turns_within_budget,
    head_deadline_against_trickle,
    keepalive_expiry,
    write_stall_closes,
    max_connections_enforced,
    idle_evicted_at_limit,
    emfile_backoff,
    arena_reset_between_responses,
    arena_memory_bounded,
);

/// One network thread, 4 KiB buffers, a pool of exactly two.
fn two_buffers(model: Model) -> Config {
    let mut c = config(model);
    c.http.network_threads = 1;
    c.http.max_request_line = 1024;
    c.http.max_header_bytes = 1024;
    c.http.buffer_size = 4096;
    c.http.buffer_memory_limit = 2 * 4096;
    c
}

/// With every buffer held by a half-sent request, later connections wait
/// (they are not read); as buffers come back the waiters are served in
/// arrival order. Holders finish without needing another buffer (responses
/// do not come from the read pool), so a full pool cannot deadlock.
fn pool_limit_fifo_wait(model: Model) {
    let server = start_with(two_buffers(model), app);
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    // Half-sent bodies: the buffers stay with them (only a slow *head*
    // gives its buffer back at a sweep).
    a.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
    b.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab");
    wait_until("both buffers taken", || server.stats().buffers == 2);
    // The waiters send half a head too: whoever gets a buffer keeps it.
    let mut c = Client::connect(addr);
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nc1");
    wait_until("c waiting", || server.stats().waiting_for_buffer == 1);
    let mut d = Client::connect(addr);
    d.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nd1");
    wait_until("d waiting", || server.stats().waiting_for_buffer == 2);

    a.send(b"cd");
    assert_eq!(a.response().text(), "abcd");
    // The freed buffer goes to the first waiter, c; d still waits.
    wait_until("c served first", || server.stats().waiting_for_buffer == 1);
    assert_eq!(server.stats().buffers, 2);
    c.send(b"c2");
    assert_eq!(c.response().text(), "c1c2");
    wait_until("d served", || server.stats().waiting_for_buffer == 0);
    d.send(b"d2");
    assert_eq!(d.response().text(), "d1d2");
    b.send(b"cd");
    assert_eq!(b.response().text(), "abcd");
    assert!(server.stats().buffers <= 2);
    assert_eq!(server.stats().waiting_for_buffer, 0);
    stop(server);
}

/// Bodies larger than a buffer are admitted whole from their own budget:
/// 8 clients upload 100 KiB each at once while the budget holds one such
/// body and the pool four buffers. The uploads take turns, every one is
/// echoed intact, and the budget is never exceeded (no deadlock: a waiting
/// body holds only a read buffer, never body budget).
fn large_bodies_take_turns_within_budget(model: Model) {
    const BODY: usize = 100 * 1024;
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    cfg.http.max_request_line = 1024;
    cfg.http.max_header_bytes = 1024;
    cfg.http.buffer_size = 4096;
    cfg.http.buffer_memory_limit = 4 * 4096;
    cfg.http.max_body_size = 128 * 1024;
    cfg.http.body_memory_limit = 130 * 1024;
    let limit = cfg.http.body_memory_limit;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let uploads: Vec<_> = (0..8u8)
        .map(|k| {
            std::thread::spawn(move || {
                let body: Vec<u8> = (0..BODY).map(|i| (i as u8) ^ k).collect();
                let mut c = Client::connect(addr);
                let mut req =
                    format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n")
                        .into_bytes();
                req.extend_from_slice(&body);
                c.send(&req);
                let r = c.response();
                assert_eq!(r.status, 200);
                assert!(r.body == body, "upload {k} came back different");
            })
        })
        .collect();
    for u in uploads {
        u.join().unwrap();
    }
    let stats = server.stats();
    assert!(stats.body_bytes_peak <= limit, "{stats:?}");
    assert!(
        stats.body_bytes_peak > BODY,
        "no body was spilled: {stats:?}"
    );
    assert!(stats.buffers <= 4, "{stats:?}");
    assert_eq!(stats.body_bytes, 0, "every reservation given back");
    stop(server);
}

/// Slow heads do not keep the buffers: with a pool of two and four clients
/// trickling heads, a fast client is still served (long before the slow
/// ones' deadline), and the slow ones complete later.
fn slow_heads_give_buffers_back(model: Model) {
    let mut cfg = two_buffers(model);
    cfg.http.request_timeout_sec = 30;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let mut slow: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for c in &mut slow {
        c.send(b"GET /hello HTTP/1.1\r\nHo");
    }
    let mut fast = Client::connect(addr);
    let start = std::time::Instant::now();
    fast.send(b"GET /p/fast HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(fast.response().text(), "/p/fast");
    assert!(start.elapsed() < Duration::from_secs(5));
    for c in &mut slow {
        c.send(b"st: t\r\n\r\n");
        assert_eq!(c.response().text(), "hello");
    }
    stop(server);
}

/// A head that trickles in (a byte every 100 ms) gets 408 and a close at
/// the head deadline, however steadily the bytes come.
fn head_deadline_against_trickle(model: Model) {
    let mut cfg = config(model);
    cfg.http.request_timeout_sec = 1;
    let server = start_with(cfg, app);
    let mut c = Client::connect(server.local_addr());
    let start = Instant::now();
    let head = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for &byte in head.iter() {
        if c.stream.write_all(&[byte]).is_err() {
            break; // The server closed: the deadline passed.
        }
        c.stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let r = c.response();
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.connection_has("close"));
    c.expect_end();
    let took = start.elapsed();
    assert!(took >= Duration::from_secs(1), "408 after {took:?}");
    wait_connections(&server, 0);
    stop(server);
}

/// An idle keep-alive connection is closed after `keepalive_timeout_sec`,
/// not before.
fn keepalive_expiry(model: Model) {
    let mut cfg = config(model);
    cfg.http.keepalive_timeout_sec = 1;
    let server = start_with(cfg, app);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
    let idle_since = Instant::now();
    c.expect_end();
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
    wait_connections(&server, 0);
    stop(server);
}

/// A client that stops reading a large response is closed once no write
/// progress was made for `write_timeout_sec`.
fn write_stall_closes(model: Model) {
    let mut cfg = config(model);
    cfg.http.write_timeout_sec = 1;
    let server = start_with(cfg, app);
    let c = Client::connect(server.local_addr());
    let mut s = c.stream.try_clone().unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    wait_until("the connection to open", || server.stats().connections == 1);
    let start = Instant::now();
    // Never read: the socket buffers fill, the server's writes stall.
    wait_connections(&server, 0);
    assert!(start.elapsed() >= Duration::from_millis(900));
    drop(c);
    stop(server);
}

/// Beyond `max_connections`, with every connection busy, nothing more is
/// accepted (the backlog holds the rest); when a connection closes, the
/// next waiting one is served.
fn max_connections_enforced(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    cfg.http.max_connections = 4;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    // Busy: each has half a request in progress.
    let mut held: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for c in &mut held {
        c.send(b"GET /hello HTTP/1.1\r\nHo");
    }
    wait_connections(&server, 4);
    wait_until("all four reading", || server.stats().buffers == 4);
    // Two more connect (the kernel's backlog completes the handshake) but
    // are not accepted while the table is full of busy connections.
    let mut extra: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
    for c in &mut extra {
        c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    assert_eq!(server.stats().accepted, 4);
    for c in &mut extra {
        c.expect_nothing_yet();
    }
    // Each close lets one more in.
    drop(held.pop());
    assert_eq!(extra[0].response().status, 200);
    drop(held.pop());
    assert_eq!(extra[1].response().status, 200);
    assert!(server.stats().connections <= 4);
    drop(held);
    drop(extra);
    wait_connections(&server, 0);
    stop(server);
}

/// At the limit, idle keep-alive connections are closed to make room for
/// new ones (as nginx does); busy ones are left alone.
fn idle_evicted_at_limit(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    cfg.http.max_connections = 2;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let mut busy = Client::connect(addr);
    busy.send(b"GET /hello HTTP/1.1\r\nHo");
    let mut idle = Client::connect(addr);
    idle.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(idle.response().status, 200);
    wait_connections(&server, 2);
    let mut fresh = Client::connect(addr);
    fresh.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(fresh.response().text(), "hello");
    idle.expect_end();
    busy.send(b"st: t\r\n\r\n");
    assert_eq!(busy.response().text(), "hello");
    assert!(server.stats().connections <= 2);
    stop(server);
}

/// The child's role: serve with the fd limit lowered to 64 until stdin
/// closes; prints the port, then `cpu <ticks>` lines on request.
#[test]
fn emfile_child() {
    let Ok(model) = std::env::var("STOAT_EMFILE_CHILD") else {
        return; // Not a child: nothing to do.
    };
    let model = if model == "shared" {
        Model::Shared
    } else {
        Model::PerCore
    };
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(64),
            maximum: Some(64),
        },
    )
    .expect("lower RLIMIT_NOFILE");
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, app);
    println!("port {}", server.local_addr().port());
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        if line == "stats" {
            let s = server.stats();
            println!(
                "stats {} {} {}",
                s.fd_limit_errors, s.fd_limit_pauses, s.accepted
            );
        }
    }
    stop(server);
}

/// With the fd limit reached the server pauses accepting before each new
/// try (no busy loop: every accept that fails for the fd limit is followed
/// by a pause, counted in `Stats`), keeps trying while paused, and accepts
/// and serves again once fds are freed.
fn emfile_backoff(model: Model) {
    let name = match model {
        Model::Shared => "shared",
        Model::PerCore => "per_core",
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emfile_child", "--nocapture", "--test-threads=1"])
        .env("STOAT_EMFILE_CHILD", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The server says once that it pauses accepting: the event we wait for.
    let (paused_tx, paused_rx) = std::sync::mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("pausing accepts") {
                let _ = paused_tx.send(());
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut read_line = |prefix: &str| -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "child ended");
            // The harness may print "test emfile_child ... " first.
            if let Some(at) = line.find(&format!("{prefix} ")) {
                return line[at + prefix.len()..].trim().to_owned();
            }
        }
    };
    let port: u16 = read_line("port").parse().unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    // More connections than the child has fds.
    let mut conns: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut served = Client::connect(addr);
    paused_rx
        .recv_timeout(TIMEOUT)
        .expect("the server reports EMFILE and pauses accepting");
    let mut stats = || -> (u64, u64, u64) {
        writeln!(stdin, "stats").unwrap();
        let line = read_line("stats");
        let v: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        (v[0], v[1], v[2])
    };
    // While fds stay short the server keeps trying, one failed accept per
    // pause at most: a loop that retried without pausing would run the
    // failures far ahead of the pauses.
    wait_until("three pauses of accepting", || stats().1 >= 3);
    let (errors, pauses, accepted) = stats();
    assert!(errors >= 3, "{errors} failed accepts, {pauses} pauses");
    assert!(
        errors <= pauses,
        "{errors} failed accepts for {pauses} pauses: retries without a pause"
    );
    // Free fds: the server accepts again and serves.
    conns.clear();
    served.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(served.response().text(), "hello");
    let (_, _, accepted_after) = stats();
    assert!(accepted_after > accepted, "no accept after fds were freed");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

/// `GET /arena?n=N`: allocates N bytes in the request arena and answers
/// "BEFORE AFTER", the arena's `allocated_bytes` before and after;
/// `GET /plain` never touches it.
fn arena_routes(server: Server) -> Server {
    server
        .get("/arena", |req: &Request<'_>| {
            let n: usize = req
                .query_param("n")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let arena = req.arena();
            let before = arena.allocated_bytes();
            let scratch = arena.alloc_slice_fill_copy(n, 7u8);
            assert!(scratch.iter().all(|&b| b == 7));
            Response::text(format!("{before} {}", arena.allocated_bytes()))
        })
        .get("/plain", |_: &Request<'_>| Response::text("plain"))
}

fn before_after(text: &str) -> (usize, usize) {
    let (a, b) = text.split_once(' ').expect("two numbers");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// 375 requests on one keep-alive connection (225 of them pipelined in
/// bursts of 15), each allocating 1,000 bytes of scratch: the arena each
/// one finds is reset (what it holds does not accumulate), and once each
/// response is out no arena is lent.
fn arena_reset_between_responses(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, arena_routes);
    let mut c = Client::connect(server.local_addr());
    let mut first_after = None;
    let mut seen = Vec::new();
    for i in 0..150 {
        c.send(&get("/arena?n=1000"));
        let (before, after) = before_after(&c.response().text());
        assert!(after >= before + 1000 || before >= 1000, "{before} {after}");
        first_after.get_or_insert(after);
        seen.push(before);
        wait_until("the arena given back", || server.stats().arenas_in_use == 0);
        if i % 10 == 0 {
            let mut burst = Vec::new();
            for _ in 0..15 {
                burst.extend_from_slice(&get("/arena?n=1000"));
            }
            c.send(&burst);
            for _ in 0..15 {
                seen.push(before_after(&c.response().text()).0);
            }
        }
    }
    // A reset arena keeps its one chunk: every request finds the same.
    let limit = first_after.unwrap();
    assert!(
        seen.iter().all(|&b| b <= limit),
        "the arena accumulated: {:?}",
        &seen[..20]
    );
    assert_eq!(seen[1], *seen.last().unwrap(), "{:?}", &seen[..20]);
    let stats = server.stats();
    assert_eq!(stats.arenas_in_use, 0, "{stats:?}");
    assert!(stats.arenas_cached <= 2, "{stats:?}");
    stop(server);
}

/// Requests that never use the arena get none; an arena grown past the
/// keep limit by one large request is freed at its reset, so what the
/// server keeps stays within two 64 KiB arenas per thread however large
/// requests' scratch was; idle connections hold none.
fn arena_memory_bounded(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, arena_routes);
    let mut c = Client::connect(server.local_addr());
    for _ in 0..20 {
        c.send(&get("/plain"));
        assert_eq!(c.response().text(), "plain");
    }
    let stats = server.stats();
    assert_eq!(
        (
            stats.arenas_in_use,
            stats.arenas_cached,
            stats.arenas_dropped
        ),
        (0, 0, 0),
        "an arena was made for requests that never asked: {stats:?}"
    );
    c.send(&get("/arena?n=4000000"));
    let (_, after) = before_after(&c.response().text());
    assert!(after >= 4_000_000);
    wait_until("the large arena freed", || {
        server.stats().arenas_dropped == 1
    });
    for _ in 0..20 {
        c.send(&get("/arena?n=100"));
        let (before, _) = before_after(&c.response().text());
        assert!(before < 64 * 1024, "the large chunk was kept: {before}");
    }
    let mut idle: Vec<Client> = (0..50)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for k in &mut idle {
        k.send(&get("/arena?n=500"));
        k.response();
    }
    let stats = server.stats();
    assert_eq!(
        stats.arenas_in_use, 0,
        "idle connections hold arenas: {stats:?}"
    );
    assert!(stats.arenas_cached <= 2, "{stats:?}");
    assert!(stats.arena_bytes_cached <= 2 * 64 * 1024, "{stats:?}");
    drop(idle);
    stop(server);
}
