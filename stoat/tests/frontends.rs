//! Stoat behind real load balancers: Debian's HAProxy and nginx, started by
//! these tests on loopback with the configurations of `docs/deploy/`.
//!
//! - nginx as a reverse proxy: keep-alive connections to the upstream (many
//!   client connections, few upstream ones), server-sent events and a
//!   WebSocket echo through it.
//!
//! Without haproxy, nginx or wrk installed, each test prints SKIPPED and
//! passes, unless `STOAT_REQUIRE_FRONTENDS` is set (`.ci/run` installs them
//! and sets it), in which case a missing program fails the test.

#[macro_use]
mod common;
mod frontends_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{mpsc, Mutex};

use common::*;
use frontends_util::*;
use stoat::app::{Event, EventStream, Message, Request, Response, Session, WebSocket, WsContext};
use stoat::config::Model;

/// Echoes each WebSocket message.
struct Echo;

impl Session for Echo {
    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(t) => ws.send_text(t),
            Message::Binary(b) => ws.send_binary(b),
        };
    }
}

/// Reads from `s` into `got` until `needle` is in it; returns the bytes up
/// to and including it, leaving the rest in `got`.
#[track_caller]
fn read_until(s: &mut TcpStream, got: &mut Vec<u8>, needle: &[u8]) -> Vec<u8> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = find(got, needle) {
            return got.drain(..at + needle.len()).collect();
        }
        let n = s.read(&mut chunk).expect("read within the timeout");
        assert!(
            n > 0,
            "closed before {:?}; got {}",
            String::from_utf8_lossy(needle),
            show(got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

/// A masked client text frame (RFC 6455 §5.3).
fn ws_text_frame(text: &str) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x81];
    assert!(text.len() < 126);
    frame.push(0x80 | text.len() as u8);
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

fn nginx_case(model: Model) {
    let Some(bins) = require(&["nginx"]) else {
        return;
    };
    let (tx, rx) = mpsc::channel::<EventStream>();
    let tx = Mutex::new(tx);
    let mut cfg = config(model);
    cfg.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let server = start_with(cfg, move |s| {
        s.get("/hello", |_: &Request<'_>| Response::text("hello"))
            .sse("/events", move |_: &Request<'_>, stream: EventStream| {
                tx.lock().unwrap().send(stream).unwrap();
            })
            .websocket("/ws", WebSocket::new(|_| Echo))
    });
    let nginx = Nginx::start(&bins[0], server.local_addr().port());
    let front = SocketAddr::from(([127, 0, 0, 1], nginx.port));

    // Keep-alive upstream: 50 client connections, one request each, ride
    // on nginx's kept upstream connection (sequential requests need one).
    for _ in 0..50 {
        let (status, body) = fetch(front, "/hello");
        assert_eq!((status, body.as_str()), (200, "hello"));
    }
    let accepted = server.stats().accepted;
    assert!(
        accepted < 5,
        "nginx opened {accepted} upstream connections for 50 sequential requests"
    );

    // Server-sent events through nginx: each event arrives while the
    // stream stays open (nginx does not buffer it).
    let mut sse = TcpStream::connect(front).unwrap();
    sse.set_read_timeout(Some(TIMEOUT)).unwrap();
    sse.write_all(b"GET /events HTTP/1.1\r\nHost: proxied\r\n\r\n")
        .unwrap();
    let stream = rx
        .recv_timeout(TIMEOUT)
        .expect("the SSE request reaches stoat");
    let mut got = Vec::new();
    let head = read_until(&mut sse, &mut got, b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    for id in 1..=5 {
        stream
            .send(Event::data(format!("event-{id}")).id(id.to_string()))
            .unwrap();
        read_until(&mut sse, &mut got, format!("data: event-{id}\n").as_bytes());
    }
    drop(stream);
    drop(sse);

    // WebSocket through nginx: the handshake passes the Upgrade, then
    // frames flow both ways.
    let mut ws = TcpStream::connect(front).unwrap();
    ws.set_read_timeout(Some(TIMEOUT)).unwrap();
    ws.write_all(
        b"GET /ws HTTP/1.1\r\nHost: proxied\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut got = Vec::new();
    let head = read_until(&mut ws, &mut got, b"\r\n\r\n");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    for msg in ["hello through nginx", "second"] {
        ws.write_all(&ws_text_frame(msg)).unwrap();
        let mut want = vec![0x81, msg.len() as u8];
        want.extend_from_slice(msg.as_bytes());
        read_until(&mut ws, &mut got, &want);
    }
    drop(ws);
    drop(nginx);
    stop(server);
}

both_models!(nginx_case);

#[test]
fn deploy_configs_are_the_ones_tested() {
    // The tests read docs/deploy directly; make sure they are there and
    // hold what the docs promise.
    let haproxy = std::fs::read_to_string(deploy_file("haproxy.cfg")).unwrap();
    for needle in [
        "send-proxy-v2",
        "option httpchk GET /healthz",
        "server s1",
        "server s2",
    ] {
        assert!(haproxy.contains(needle), "haproxy.cfg lacks {needle}");
    }
    let nginx = std::fs::read_to_string(deploy_file("nginx.conf")).unwrap();
    for needle in [
        "keepalive 32",
        "proxy_http_version 1.1",
        "$connection_upgrade",
        "X-Forwarded-For",
    ] {
        assert!(nginx.contains(needle), "nginx.conf lacks {needle}");
    }
}
