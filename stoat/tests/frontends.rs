//! Stoat behind real load balancers: Debian's HAProxy and nginx, started by
//! these tests on loopback with the configurations of `docs/deploy/`.
//!
//! - HAProxy (`send-proxy-v2`, `option httpchk GET /healthz`) in front of
//!   two servers (one of each threading model): the handler sees the real
//!   client's address; the health checks arrive as PROXY v2 `LOCAL`; a
//!   spoofed PROXY header from an untrusted address is refused.
//! - Rolling restart of two Weasel instances behind HAProxy under `wrk`,
//!   5 rounds: each instance in turn gets SIGTERM (503 on `/healthz` for
//!   `drain_health_sec`, HAProxy takes it out, it drains and exits) and is
//!   started again: no non-2xx answer, no socket error.
//! - Restart of one Weasel under `wrk` straight to it, 10 times, by
//!   handover (SIGUSR2: the listening socket passes to the new process):
//!   no failed request, no reset; every commit acknowledged meanwhile (by a
//!   client committing throughout) is there at the end.
//! - nginx as a reverse proxy: keep-alive connections to the upstream (many
//!   client connections, few upstream ones), X-Forwarded-For believed from
//!   it, server-sent events and a WebSocket echo through it.
//!
//! Without haproxy, nginx or wrk installed, each test prints SKIPPED and
//! passes, unless `STOAT_REQUIRE_FRONTENDS` is set (`.ci/run` installs them
//! and sets it), in which case a missing program fails the test.

#[macro_use]
mod common;
mod frontends_util;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use common::*;
use frontends_util::*;
use stoat::app::{
    EventStream, Message, Request, Response, Session, SseEvent, WebSocket, WsContext,
};
use stoat::config::{Model, ProxyProtocol};

/// Echoes each WebSocket message.
struct Echo;

impl Session for Echo {
    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        // Err: the connection is closing; nothing to do.
        let _ = ws.send(msg);
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
            .get("/who", |req: &Request<'_>| {
                Response::text(format!("client={:?}", req.client_addr()))
            })
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

    // nginx's X-Forwarded-For (from 127.0.0.1, trusted) names the client.
    let mut c = TcpStream::connect(front).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let local = c.local_addr().unwrap();
    c.write_all(b"GET /who HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let (status, body) = split_response(&out);
    assert_eq!(status, 200);
    // nginx writes the address without the port.
    assert_eq!(
        body,
        format!("client={:?}", Some(SocketAddr::new(local.ip(), 0)))
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
            .send(SseEvent::data(format!("event-{id}")).id(id.to_string()))
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

/// A connection to `to` from source address `from` (any port).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    rustix::net::bind(&fd, &SocketAddr::from((from, 0))).unwrap();
    rustix::net::connect(&fd, &to).unwrap();
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

#[test]
fn haproxy_passes_the_client_address() {
    let Some(bins) = require(&["haproxy"]) else {
        return;
    };
    let backend = |model: Model, name: &'static str| {
        let mut cfg = config(model);
        cfg.http.proxy_protocol = ProxyProtocol::V2;
        cfg.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        start_with(cfg, move |s| {
            s.health().get("/who", move |req: &Request<'_>| {
                Response::text(format!(
                    "{name} client={:?} peer={:?}",
                    req.client_addr(),
                    req.peer_addr()
                ))
            })
        })
    };
    let a = backend(Model::PerCore, "a");
    let b = backend(Model::Shared, "b");
    let haproxy = Haproxy::start(&bins[0], a.local_addr().port(), b.local_addr().port());
    haproxy.wait_server("s1", "UP");
    haproxy.wait_server("s2", "UP");
    // HAProxy's health checks come with a PROXY v2 LOCAL header.
    for server in [&a, &b] {
        wait_until("a health check", || server.stats().proxy_local > 0);
    }
    let front = SocketAddr::from(([127, 0, 0, 1], haproxy.port));
    let mut served = [0; 2];
    for _ in 0..20 {
        let mut c = TcpStream::connect(front).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let local = c.local_addr().unwrap();
        c.write_all(b"GET /who HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let (status, body) = split_response(&out);
        assert_eq!(status, 200, "{body}");
        // The client's own address and port, not HAProxy's.
        assert!(
            body.contains(&format!("client={:?}", Some(local))),
            "{body} (client {local})"
        );
        assert!(!body.contains(&format!("peer={:?}", Some(local))), "{body}");
        served[usize::from(body.starts_with('b'))] += 1;
    }
    assert!(served[0] > 0 && served[1] > 0, "round robin: {served:?}");
    assert_eq!(a.stats().proxy_refused + b.stats().proxy_refused, 0);
    // A spoofed header, straight to an instance from an untrusted address
    // (127.0.0.2): closed without an answer, counted.
    for server in [&a, &b] {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.local_addr());
        s.write_all(
            b"PROXY TCP4 203.0.113.1 127.0.0.1 1111 80\r\nGET /who HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty(), "answered: {}", show(&out));
        wait_until("the spoofed header counted", || {
            server.stats().proxy_refused == 1
        });
    }
    drop(haproxy);
    stop(a);
    stop(b);
}

/// The number of sessions HAProxy sent to server `name` so far.
fn sessions(haproxy: &Haproxy, name: &str) -> u64 {
    let csv = haproxy.admin("show stat");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let (Some(sv), Some(stot)) = (
        header.iter().position(|c| *c == "svname"),
        header.iter().position(|c| *c == "stot"),
    ) else {
        return 0;
    };
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.len() > stot && f[0] == "stoat" && f[sv] == name)
        .and_then(|f| f[stot].parse().ok())
        .unwrap_or(0)
}

#[test]
fn rolling_restart_behind_haproxy_drops_nothing() {
    let Some(bins) = require(&["haproxy", "wrk"]) else {
        return;
    };
    let bin = weasel_bin();
    let http = "proxy_protocol = \"v2\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
                drain_health_sec = 2\ndrain_timeout_sec = 10";
    let ports = [free_port(), free_port()];
    let mut weasels = [
        WeaselProc::start(&bin, ports[0], http, "weasel-1"),
        WeaselProc::start(&bin, ports[1], http, "weasel-2"),
    ];
    let haproxy = Haproxy::start(&bins[0], ports[0], ports[1]);
    haproxy.wait_server("s1", "UP");
    haproxy.wait_server("s2", "UP");
    let url = format!("http://127.0.0.1:{}/v1/version", haproxy.port);
    let mut rounds = Vec::new();
    for round in 1..=5 {
        let wrk = Wrk::start(&url, 16, 600);
        for (i, name) in ["s1", "s2"].into_iter().enumerate() {
            // Under load on both before each restart.
            for other in ["s1", "s2"] {
                let before = sessions(&haproxy, other);
                wait_for("requests reaching both instances", START, || {
                    sessions(&haproxy, other) > before + 50
                });
            }
            weasels[i].signal(rustix::process::Signal::TERM);
            // 503 on /healthz: taken out while it still serves.
            haproxy.wait_server(name, "DOWN");
            let pid = weasels[i].pid;
            weasels[i].wait_exit_of(pid, START);
            weasels[i].restart(&bin, &format!("weasel-{}", i + 1));
            haproxy.wait_server(name, "UP");
        }
        let before = sessions(&haproxy, "s2");
        wait_for("requests reaching the restarted instance", START, || {
            sessions(&haproxy, "s2") > before + 50
        });
        let r = wrk.interrupt();
        eprintln!(
            "rolling restart round {round}: {} requests, {} failed ({r:?})",
            r.requests,
            r.failures()
        );
        rounds.push(r);
    }
    for (i, r) in rounds.iter().enumerate() {
        assert!(r.requests > 0, "round {}: no requests", i + 1);
        assert_eq!(r.failures(), 0, "round {}: {r:?}", i + 1);
    }
}

#[test]
fn handover_restart_under_load_drops_nothing() {
    let Some(_) = require(&["wrk"]) else {
        return;
    };
    become_subreaper();
    let bin = weasel_bin();
    let port = free_port();
    let mut weasel = WeaselProc::start(&bin, port, "drain_timeout_sec = 10", "weasel-single");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // A client committing throughout, on a kept-alive connection.
    let stop_commits = Arc::new(AtomicBool::new(false));
    let committed = Arc::new(AtomicU64::new(0));
    let committer = {
        let (stop, committed) = (stop_commits.clone(), committed.clone());
        std::thread::spawn(move || {
            let mut client = KeepAlive::new(addr);
            let mut acked = Vec::new();
            let mut failed = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let body = format!(
                    r#"{{"request_id":"c{n}","preconditions":[],"operations":[{{"op":"set","key":"k{n}","value":"v{n}"}}]}}"#
                );
                match client.request("POST", "/v1/commit", body.as_bytes()) {
                    Ok((200, _)) => {
                        acked.push(n);
                        committed.fetch_add(1, Ordering::Release);
                    }
                    Ok((status, body)) => failed.push(format!(
                        "commit {n}: {status} {}",
                        String::from_utf8_lossy(&body)
                    )),
                    Err(e) => failed.push(format!("commit {n}: {e}")),
                }
            }
            (acked, failed)
        })
    };

    let mark = weasel.dir.path().join("wrk-started");
    let script = weasel.dir.path().join("mark.lua");
    std::fs::write(
        &script,
        format!(
            "local marked = false\nresponse = function(status, headers, body)\n  if not marked then\n    marked = true\n    local f = io.open(\"{}\", \"w\")\n    if f then f:write(\"1\") f:close() end\n  end\nend\n",
            mark.display()
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/version");
    let mut rounds = Vec::new();
    for round in 1..=10 {
        let _ = std::fs::remove_file(&mark);
        let wrk = Wrk::start_script(&url, 16, 600, Some(&script));
        wait_for("wrk's first response", START, || mark.exists());
        let before = committed.load(Ordering::Acquire);
        wait_for("commits going on", START, || {
            committed.load(Ordering::Acquire) > before + 5
        });
        let old = weasel.pid;
        let new = weasel.hand_over();
        assert_ne!(old, new);
        let before = committed.load(Ordering::Acquire);
        wait_for("commits to the new process", START, || {
            committed.load(Ordering::Acquire) > before + 5
        });
        let r = wrk.interrupt();
        eprintln!(
            "handover round {round} (pid {old} -> {new}): {} requests, {} failed ({r:?})",
            r.requests,
            r.failures()
        );
        rounds.push(r);
    }
    stop_commits.store(true, Ordering::Release);
    let (acked, failed) = committer.join().unwrap();
    eprintln!(
        "committer: {} commits acknowledged, {} failed",
        acked.len(),
        failed.len()
    );
    // Every acknowledged commit is there, in the process serving now.
    let mut check = KeepAlive::new(addr);
    let mut missing = Vec::new();
    for n in &acked {
        match check.request("GET", &format!("/v1/kv/k{n}"), b"") {
            Ok((200, body)) if String::from_utf8_lossy(&body).contains(&format!("\"v{n}\"")) => {}
            other => missing.push(format!("k{n}: {other:?}")),
        }
    }
    for (i, r) in rounds.iter().enumerate() {
        assert!(r.requests > 0, "round {}: no requests", i + 1);
        assert_eq!(r.failures(), 0, "round {}: {r:?}", i + 1);
    }
    assert!(failed.is_empty(), "failed commits: {failed:?}");
    assert!(
        missing.is_empty(),
        "acknowledged commits missing: {missing:?}"
    );
    assert!(acked.len() > 100, "only {} commits", acked.len());
    weasel.stop();
}

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
