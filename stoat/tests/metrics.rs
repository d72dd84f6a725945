//! Metrics, the Prometheus exposition and the access log over real
//! sockets, both models: counters add up to what the test did (requests by
//! route and status class, closes by reason, histograms), the page parses
//! with a real Prometheus parser (`prometheus_client`, Python; skipped when
//! missing unless `STOAT_REQUIRE_PROMETHEUS` is set, as CI does), the
//! access log writes one line per response, and a log target that blocks
//! (a FIFO nobody reads) drops and counts lines without holding a request.
//! Streams too: SSE streams open, events written and `Full` answers;
//! WebSocket sessions open, frames each way (a frame read in pieces
//! counted once) and `Full` answers; a write stall counted as such.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use stoat::app::{
    EventStream, Message, Method, Request, Responder, Response, SendError, Server, Session,
    SseEvent, WebSocket, WsContext, WsSender,
};
use stoat::config::{AccessLogFormat, Config, Model};

both_models!(
    counters_add_up,
    evictions_counted,
    sse_counted,
    websocket_counted,
    write_stall_counted,
    exposition_parses_with_prometheus_client,
    access_log_lines,
    access_log_deadline_answer_has_its_address,
    access_log_blocked_target_never_slows_requests,
    read_buffers_by_state,
);

fn metrics_config(model: Model) -> Config {
    let mut c = config(model);
    c.http.metrics.path = "/metrics".into();
    c
}

/// One scrape over its own connection.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut c = Client::connect(addr);
    c.send(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text()
}

/// `name{labels}` → value, for every sample line.
fn samples(page: &str) -> HashMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').expect("sample line");
            (key.to_owned(), value.parse().expect("numeric value"))
        })
        .collect()
}

fn value(s: &HashMap<String, f64>, key: &str) -> f64 {
    *s.get(key).unwrap_or_else(|| panic!("no sample {key}"))
}

/// N requests by route and class; closes by client, keep-alive timeout,
/// 408 and protocol error, each counted once under its reason.
fn counters_add_up(model: Model) {
    let mut cfg = metrics_config(model);
    cfg.http.keepalive_timeout_sec = 1;
    cfg.http.request_timeout_sec = 1;
    let server = start_with(cfg, app);
    let addr = server.local_addr();

    // 3 connections: 40 × /hello, 30 × /p/{n}, 10 × 404 each; closed by us.
    for _ in 0..3 {
        let mut c = Client::connect(addr);
        for i in 0..40 {
            c.send(&get("/hello"));
            assert_eq!(c.response().status, 200);
            if i < 30 {
                c.send(&get(&format!("/p/{i}")));
                assert_eq!(c.response().status, 200);
            }
            if i < 10 {
                c.send(&get("/nowhere"));
                assert_eq!(c.response().status, 404);
            }
        }
    }
    // One left idle: closed at the keep-alive timeout.
    let mut idle = Client::connect(addr);
    idle.send(&get("/hello"));
    assert_eq!(idle.response().status, 200);
    idle.expect_end();
    // One head never finished: 408.
    let mut slow = Client::connect(addr);
    slow.send(b"GET /hello HTTP/1.1\r\nHo");
    assert_eq!(slow.response().status, 408);
    slow.expect_end();
    // One protocol error (HTTP/1.1 without Host): 400 and close.
    let mut bad = Client::connect(addr);
    bad.send(b"GET /hello HTTP/1.1\r\n\r\n");
    assert_eq!(bad.response().status, 400);
    bad.expect_end();
    wait_connections(&server, 0);

    // A response is counted when its batch ends and a close just after the
    // connection count drops, so a scrape on another thread can come
    // first: scrape until every request and close of the test is counted
    // (counts only grow, so a count past the expected one fails), and
    // remember how many scrapes that took.
    let mut s = HashMap::new();
    let mut scrapes = 0;
    let counted = |s: &HashMap<String, f64>, key: &str| s.get(key).copied().unwrap_or(0.0);
    wait_until("the test's requests and closes to be counted", || {
        s = samples(&scrape(addr));
        scrapes += 1;
        let closes: f64 = s
            .iter()
            .filter(|(k, _)| k.starts_with("stoat_connections_closed_total"))
            .map(|(_, v)| v)
            .sum();
        let unmatched = "stoat_requests_total{method=\"\",route=\"unmatched\",class=\"4xx\"}";
        counted(&s, unmatched) >= 32.0 && closes >= 6.0
    });
    let req = |route: &str, class: &str| {
        value(
            &s,
            &format!("stoat_requests_total{{method=\"GET\",route=\"{route}\",class=\"{class}\"}}"),
        )
    };
    assert_eq!(req("/hello", "2xx"), 3.0 * 40.0 + 1.0);
    assert_eq!(req("/p/{n}", "2xx"), 90.0);
    // 404s, the 408 and the 400 matched no route.
    assert_eq!(
        value(
            &s,
            "stoat_requests_total{method=\"\",route=\"unmatched\",class=\"4xx\"}"
        ),
        30.0 + 2.0
    );
    let closed = |reason: &str| {
        value(
            &s,
            &format!("stoat_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(closed("client_close"), 3.0);
    assert_eq!(closed("keepalive_timeout"), 1.0);
    assert_eq!(closed("request_timeout"), 1.0);
    assert_eq!(closed("error"), 1.0);
    assert_eq!(closed("evicted"), 0.0);
    assert_eq!(value(&s, "stoat_connections_accepted_total"), 7.0);
    // The scrape's own connection is open while the page is made.
    assert_eq!(value(&s, "stoat_connections_open"), 1.0);

    // The histogram of /hello: one observation per response, cumulative.
    let h = |suffix: &str| {
        format!("stoat_request_duration_seconds{suffix}{{method=\"GET\",route=\"/hello\"")
    };
    assert_eq!(value(&s, &format!("{}}}", h("_count"))), 121.0);
    assert_eq!(value(&s, &format!("{},le=\"+Inf\"}}", h("_bucket"))), 121.0);
    assert!(value(&s, &format!("{}}}", h("_sum"))) > 0.0);
    let mut buckets: Vec<(f64, f64)> = s
        .iter()
        .filter(|(k, _)| k.starts_with(&h("_bucket")) && !k.contains("+Inf"))
        .map(|(k, v)| {
            let le = k.rsplit_once("le=\"").unwrap().1.trim_end_matches("\"}");
            (le.parse::<f64>().unwrap(), *v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(buckets.len(), 27);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");

    // Bytes: every request and response byte went through a socket.
    assert!(value(&s, "stoat_request_bytes_total") >= 241.0 * 30.0);
    assert!(value(&s, "stoat_response_bytes_total") >= 241.0 * 40.0);

    // Each scrape is counted in a later one: exactly the scrapes made
    // before it, once the last one's batch has ended.
    wait_until("the earlier scrapes to be counted", || {
        let before = scrapes;
        let again = samples(&scrape(addr));
        scrapes += 1;
        let n = counted(
            &again,
            "stoat_requests_total{method=\"GET\",route=\"/metrics\",class=\"2xx\"}",
        );
        assert!(n <= f64::from(before), "{n} scrapes counted of {before}");
        n == f64::from(before)
    });
    stop(server);
}

/// Read buffers by state: a connection in the middle of a body holds one
/// (`in_use` 1), and gives it back once answered (`in_use` 0). The threads' caches are
/// published at their sweeps, so each state is waited for. (A half head
/// would not do: a head still incomplete at a sweep is parked off the
/// pool, see `park_slow_head`.)
fn read_buffers_by_state(model: Model) {
    let mut cfg = metrics_config(model);
    cfg.http.network_threads = 1;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let in_use = || {
        let s = samples(&scrape(addr));
        value(&s, "stoat_read_buffers{state=\"in_use\"}")
    };
    let mut a = Client::connect(addr);
    a.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nhal");
    wait_until("a half body's buffer in use", || in_use() == 1.0);
    a.send(b"f!!");
    let r = a.response();
    assert_eq!((r.status, r.text()), (200, "half!!".to_owned()));
    wait_until("every buffer back", || in_use() == 0.0);
    stop(server);
}

/// A connection closed to admit another at `max_connections` is an eviction.
fn evictions_counted(model: Model) {
    let mut cfg = metrics_config(model);
    cfg.http.network_threads = 1;
    cfg.http.max_connections = 2;
    let server = start_with(cfg, app);
    let addr = server.local_addr();
    let mut a = Client::connect(addr);
    a.send(&get("/hello"));
    assert_eq!(a.response().status, 200);
    let mut b = Client::connect(addr);
    b.send(&get("/hello"));
    assert_eq!(b.response().status, 200);
    wait_connections(&server, 2);
    // The scrape's connection takes an idle one's place.
    let s = samples(&scrape(addr));
    let evicted = value(&s, "stoat_connections_closed_total{reason=\"evicted\"}");
    // The eviction is counted before the new connection's request runs.
    assert_eq!(evicted, 1.0);
    stop(server);
}

/// The page, with pipelines, suspended routes and escaping, read by the
/// Python client library's parser (a real Prometheus text parser).
fn exposition_parses_with_prometheus_client(model: Model) {
    let have = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        assert!(
            std::env::var_os("STOAT_REQUIRE_PROMETHEUS").is_none(),
            "prometheus_client (pip) is required but missing"
        );
        eprintln!("skipped: python3 -m pip install prometheus_client");
        return;
    }
    let mut cfg = metrics_config(model);
    cfg.http
        .pipelines
        .insert("work".into(), stoat::config::PipelineConfig::default());
    let server = start_with(cfg, |s: Server| {
        let mut s = app(s)
            .get("/quote\"d\\path", |_: &Request<'_>| Response::text("odd"))
            .metrics_hook(|x| {
                x.family(
                    "test_custom_total",
                    stoat::app::metrics::MetricType::Counter,
                    "A service's own counter.\nSecond line with \\ backslash.",
                )
                .sample(&[("label", "va\"l\\ue\nx")], 42);
            });
        s.pipeline(
            "work",
            stoat::app::per_job(|r: &Request<'_>, ()| {
                Response::text(format!("done {}", r.param("id").unwrap_or("")))
            }),
        )
        .expect("pipeline `work` is configured")
        .post("/work/{id}", ());
        s
    });
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    for i in 0..20 {
        c.send(
            format!("POST /work/{i} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(c.response().text(), format!("done {i}"));
        c.send(&get("/quote\"d\\path"));
        assert_eq!(c.response().status, 200);
    }
    // A response is counted when its batch ends, after it was written: the
    // client can see the 20th answer before the count does. Scrape until
    // the counts have caught up (bounded), then parse that page.
    let mut page = String::new();
    wait_until("the 20 requests of each route to be counted", || {
        page = scrape(addr);
        page.contains(
            "stoat_requests_total{method=\"GET\",route=\"/quote\\\"d\\\\path\",class=\"2xx\"} 20\n",
        ) && page.contains(
            "stoat_request_duration_seconds_count{method=\"POST\",route=\"/work/{id}\"} 20\n",
        ) && page.contains("stoat_pipeline_queue_seconds_count{pipeline=\"work\"} 20\n")
    });
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
text = sys.stdin.read()
fams = {f.name: f for f in text_string_to_metric_families(text)}
def one(name, **labels):
    f = fams[name]
    for s in f.samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and s.name.endswith(labels.pop('_suffix', '')):
            return s
    raise SystemExit(f"missing {name} {labels}")
assert fams['stoat_request_duration_seconds'].type == 'histogram'
assert fams['stoat_pipeline_queue_seconds'].type == 'histogram'
work = [s for s in fams['stoat_request_duration_seconds'].samples
        if s.labels.get('route') == '/work/{id}' and s.name.endswith('_count')]
assert work and work[0].value == 20, work
q = [s for s in fams['stoat_pipeline_queue_seconds'].samples if s.name.endswith('_count')]
assert q[0].labels['pipeline'] == 'work' and q[0].value == 20, q
odd = [s for s in fams['stoat_requests'].samples if s.labels.get('route') == '/quote"d\\path']
assert odd and odd[0].value == 20, odd
custom = fams['test_custom'].samples[0]
assert custom.labels['label'] == 'va"l\\ue\nx' and custom.value == 42, custom
assert fams['test_custom'].documentation == "A service's own counter.\nSecond line with \\ backslash."
print(len(fams), "families,", sum(len(f.samples) for f in fams.values()), "samples")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the page: {}\n{}\npage:\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "prometheus_client: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stop(server);
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("stoat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One JSON line per response, with the route and the client's address.
fn access_log_lines(model: Model) {
    let dir = temp_dir(&format!("alog-{model:?}"));
    let path = dir.join("access.log");
    let mut cfg = config(model);
    cfg.http.access_log.path = path.to_str().unwrap().into();
    cfg.http.access_log.format = AccessLogFormat::Json;
    let server = start_with(cfg, app);
    let mut c = Client::connect(server.local_addr());
    for i in 0..50 {
        c.send(
            format!("GET /p/{i}?q=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: test/1\r\nReferer: http://r/\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(c.response().status, 200);
    }
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    wait_until("50 access-log lines", || read().lines().count() == 50);
    for (i, line) in read().lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["target"], format!("/p/{i}?q=1"));
        assert_eq!(v["status"], 200);
        assert_eq!(v["route"], "GET /p/{n}");
        assert_eq!(v["user_agent"], "test/1");
        assert_eq!(v["referer"], "http://r/");
        assert!(
            v["remote"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{v}"
        );
        assert!(v["response_bytes"].as_u64().unwrap() > 0);
    }
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A suspended request unanswered at its deadline is answered 503 outside
/// a drive of its connection (by the deadline's timer): its line still
/// gets that connection's address, not the next one's nor none. Another
/// connection is answered meanwhile (its line has its own address).
fn access_log_deadline_answer_has_its_address(model: Model) {
    let dir = temp_dir(&format!("alog503-{model:?}"));
    let path = dir.join("access.log");
    let mut cfg = config(model);
    cfg.http.access_log.path = path.to_str().unwrap().into();
    cfg.http.access_log.format = AccessLogFormat::Json;
    cfg.http.request_timeout_sec = 1;
    let held: Arc<Mutex<Vec<Responder>>> = Arc::default();
    let h = held.clone();
    let server = start_with(cfg, move |s| {
        app(s).suspend(Method::Get, "/hold", move |_: &Request, r: Responder| {
            h.lock().unwrap().push(r)
        })
    });
    let mut a = Client::connect(server.local_addr());
    a.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut b = Client::connect(server.local_addr());
    b.send(&get("/p/1"));
    assert_eq!(b.response().status, 200);
    assert_eq!(a.response().status, 503);
    b.send(&get("/p/2"));
    assert_eq!(b.response().status, 200);
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    wait_until("3 access-log lines", || read().lines().count() == 3);
    let remote_of = |status: u64| -> Vec<String> {
        read()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["status"] == status)
            .map(|v| v["remote"].as_str().unwrap_or("none").to_owned())
            .collect()
    };
    let a_addr = a.stream.local_addr().unwrap().to_string();
    let b_addr = b.stream.local_addr().unwrap().to_string();
    assert_eq!(remote_of(503), vec![a_addr]);
    assert_eq!(remote_of(200), vec![b_addr.clone(), b_addr]);
    drop(held);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The log goes to a FIFO whose reader never reads: the writer thread
/// blocks, the queue fills, lines are dropped and counted, and every
/// request is still answered (each read has a 5 s timeout; a request held
/// by the log would fail the test).
fn access_log_blocked_target_never_slows_requests(model: Model) {
    let dir = temp_dir(&format!("fifo-{model:?}"));
    let fifo = dir.join("log.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // A reader that never reads (opening the write end needs one).
    use std::os::unix::fs::OpenOptionsExt;
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut cfg = metrics_config(model);
    cfg.http.access_log.path = fifo.to_str().unwrap().into();
    cfg.http.access_log.queue = 16;
    let server = start_with(cfg, app);
    let mut c = Client::connect(server.local_addr());
    let n = 3000;
    for _ in 0..n {
        c.send(&get("/p/a-long-path-to-fill-the-pipe-faster-0123456789"));
        assert_eq!(c.response().status, 200);
    }
    let s = samples(&scrape(server.local_addr()));
    let written = value(&s, "stoat_access_log_lines_total");
    let dropped = value(&s, "stoat_access_log_dropped_total");
    assert!(dropped > 0.0, "written {written}, dropped {dropped}");
    // Every response was either written, dropped or is still on its way:
    // in the thread's ring (16 lines' worth: 2048 bytes, and a line of this
    // request takes at least 152: a 104-byte record, a 48-byte drive
    // header) or read out of it by the blocked writer (one ring's worth
    // more), so at most 2 x 13 + 1.
    assert!(written + dropped <= n as f64 + 1.0);
    assert!(
        written + dropped + 27.0 >= n as f64,
        "written {written}, dropped {dropped}"
    );
    // Stopping must not wait for the blocked writer forever: drop the
    // reader so its write fails, then stop.
    drop(_reader);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads from `s` into `buf` until `done(buf)` (each read bounded by the
/// socket's timeout).
fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) {
    let mut chunk = [0u8; 16 * 1024];
    while !done(buf) {
        let n = s.read(&mut chunk).expect("more bytes");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// A stream's events are counted as they are written, its `Full` answers
/// one by one, and the stream while open.
fn sse_counted(model: Model) {
    let mut cfg = metrics_config(model);
    cfg.http.sse_backlog = 8;
    let streams: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    let keep = streams.clone();
    let server = start_with(cfg, move |s| {
        s.sse("/events", move |_: &Request, stream: EventStream| {
            keep.lock().unwrap().push(stream)
        })
    });
    let addr = server.local_addr();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    wait_until("the stream", || streams.lock().unwrap().len() == 1);
    let stream = streams.lock().unwrap().pop().unwrap();
    for i in 0..5 {
        stream.send(SseEvent::data(format!("e{i}"))).unwrap();
    }
    let mut buf = Vec::new();
    read_until(&mut c, &mut buf, |b| find(b, b"data: e4\n\n").is_some());
    assert_eq!(occurrences(&buf, b"data: e"), 5);
    // Written before the client could read them: counted already.
    let s = samples(&scrape(addr));
    assert_eq!(value(&s, "stoat_sse_events_total"), 5.0);
    assert_eq!(value(&s, "stoat_sse_streams_open"), 1.0);
    assert_eq!(value(&s, "stoat_sse_full_total"), 0.0);

    // The client stops reading: the socket fills, then the backlog; sends
    // go on until three were answered Full (each one counted).
    let big = "x".repeat(64 * 1024);
    let mut ok = 5u64;
    let mut full = 0;
    while full < 3 {
        match stream.send(SseEvent::data(big.clone())) {
            Ok(()) => ok += 1,
            Err(SendError::Full(_)) => full += 1,
            Err(e) => panic!("{e} while the client is there"),
        }
        std::thread::yield_now();
    }
    let s = samples(&scrape(addr));
    assert_eq!(value(&s, "stoat_sse_full_total"), 3.0);
    // Every event sent is written or still queued (at most the backlog).
    let written = value(&s, "stoat_sse_events_total") as u64;
    assert!(written <= ok && written + 8 >= ok, "{written} of {ok}");

    drop(c);
    // Until the network thread sees the client gone, sends may still be
    // answered Full (and counted).
    wait_until("Closed after the client left", || {
        match stream.send(SseEvent::data("x")) {
            Err(SendError::Full(_)) => full += 1,
            Err(e) => return e.is_closed(),
            Ok(()) => {}
        }
        false
    });
    drop(stream);
    wait_connections(&server, 0);
    let s = samples(&scrape(addr));
    assert_eq!(value(&s, "stoat_sse_streams_open"), 0.0);
    assert_eq!(value(&s, "stoat_sse_full_total"), f64::from(full));
    stop(server);
}

/// Echoes every message; keeps each session's sender.
struct Echo(Arc<Mutex<Vec<WsSender>>>);

impl Session for Echo {
    fn on_open(&mut self, ws: &mut WsContext<'_>) {
        if let Some(s) = ws.sender() {
            self.0.lock().unwrap().push(s);
        }
    }

    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(t) => ws.send_text(t).is_ok(),
            Message::Binary(b) => ws.send_binary(b).is_ok(),
        };
    }

    fn on_close(&mut self, _code: Option<u16>, _reason: &str) {}
}

/// A masked client frame.
fn ws_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [9, 8, 7, 6];
    let mut out = vec![b0];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// Reads server frames until `n` are whole in `buf` (after the 101's
/// head); returns their first bytes and payload lengths.
fn ws_frames(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> Vec<(u8, usize)> {
    let parse = |b: &[u8]| -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while b.len() >= at + 2 {
            let (len, h) = match b[at + 1] & 0x7F {
                126 if b.len() >= at + 4 => {
                    (u16::from_be_bytes([b[at + 2], b[at + 3]]) as usize, 4)
                }
                127 if b.len() >= at + 10 => {
                    let mut l = [0; 8];
                    l.copy_from_slice(&b[at + 2..at + 10]);
                    (u64::from_be_bytes(l) as usize, 10)
                }
                126 | 127 => break,
                l => (l as usize, 2),
            };
            if b.len() < at + h + len {
                break;
            }
            out.push((b[at], len));
            at += h + len;
        }
        out
    };
    read_until(s, buf, |b| parse(b).len() >= n);
    parse(buf)
}

/// Frames each way counted exactly (a fragmented message is two frames, a
/// large frame read in many pieces one, a ping and its pong one each), a
/// sender's pushes and its `Full` answers, and the session while open.
fn websocket_counted(model: Model) {
    let mut cfg = metrics_config(model);
    cfg.http.ws_backlog = 4;
    let senders: Arc<Mutex<Vec<WsSender>>> = Arc::default();
    let keep = senders.clone();
    let server = start_with(cfg, move |s| {
        s.websocket("/ws", WebSocket::new(move |_| Echo(keep.clone())))
    });
    let addr = server.local_addr();
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut buf = Vec::new();
    read_until(&mut c, &mut buf, |b| find(b, b"\r\n\r\n").is_some());
    assert!(buf.starts_with(b"HTTP/1.1 101 "), "{}", show(&buf));
    let head = find(&buf, b"\r\n\r\n").unwrap() + 4;
    buf.drain(..head);

    // Received: 3 whole texts, a text in two fragments, a ping, and a
    // 300 KB binary frame (read in pieces) = 7 frames. Sent: 3 echoes,
    // the reassembled echo, the pong, the binary echo = 6 frames.
    for i in 0..3 {
        c.write_all(&ws_frame(0x81, format!("m{i}").as_bytes()))
            .unwrap();
    }
    c.write_all(&ws_frame(0x01, b"frag")).unwrap();
    c.write_all(&ws_frame(0x80, b"ment")).unwrap();
    c.write_all(&ws_frame(0x89, b"p")).unwrap();
    let big = vec![5u8; 300 * 1024];
    let framed = ws_frame(0x82, &big);
    for piece in framed.chunks(7 * 1024) {
        c.write_all(piece).unwrap();
    }
    let got = ws_frames(&mut c, &mut buf, 6);
    assert_eq!(
        got,
        [
            (0x81, 2),
            (0x81, 2),
            (0x81, 2),
            (0x81, 8),
            (0x8A, 1),
            (0x82, big.len())
        ]
    );
    let s = samples(&scrape(addr));
    assert_eq!(value(&s, "stoat_websockets_open"), 1.0);
    assert_eq!(
        value(&s, "stoat_websocket_frames_total{direction=\"received\"}"),
        7.0
    );
    assert_eq!(
        value(&s, "stoat_websocket_frames_total{direction=\"sent\"}"),
        6.0
    );

    // A push from another thread: one frame more.
    wait_until("the sender", || senders.lock().unwrap().len() == 1);
    let sender = senders.lock().unwrap()[0].clone();
    std::thread::spawn({
        let s = sender.clone();
        move || s.send_text("pushed").unwrap()
    })
    .join()
    .unwrap();
    buf.clear();
    assert_eq!(ws_frames(&mut c, &mut buf, 1), [(0x81, 6)]);
    let s = samples(&scrape(addr));
    assert_eq!(
        value(&s, "stoat_websocket_frames_total{direction=\"sent\"}"),
        7.0
    );
    assert_eq!(value(&s, "stoat_websocket_full_total"), 0.0);

    // The client stops reading: pushes until three Full answers.
    let chunk = vec![7u8; 256 * 1024];
    let mut full = 0;
    while full < 3 {
        match sender.send_binary(&chunk) {
            Ok(()) => {}
            Err(SendError::Full(_)) => full += 1,
            Err(e) => panic!("{e} while the client is there"),
        }
        std::thread::yield_now();
    }
    let s = samples(&scrape(addr));
    assert_eq!(value(&s, "stoat_websocket_full_total"), 3.0);
    drop(c);
    wait_until("Closed after the client left", || sender.is_closed());
    drop(sender);
    senders.lock().unwrap().clear();
    wait_connections(&server, 0);
    let s = samples(&scrape(addr));
    assert_eq!(value(&s, "stoat_websockets_open"), 0.0);
    stop(server);
}

/// A client that never reads a large response is closed at the write
/// timeout, and the close is counted as a write stall, not a client close.
fn write_stall_counted(model: Model) {
    let mut cfg = metrics_config(model);
    cfg.http.write_timeout_sec = 1;
    let body: Arc<[u8]> = vec![1u8; 64 << 20].into();
    let server = start_with(cfg, move |s| {
        s.get("/huge", move |_: &Request<'_>| {
            Response::bytes(body.clone())
        })
    });
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    c.send(&get("/huge"));
    wait_connections(&server, 1);
    // Nothing read: the kernel's buffers take a few MiB of the 64, the rest
    // stalls until the write timeout closes the connection.
    wait_connections(&server, 0);
    let s = samples(&scrape(addr));
    let closed = |reason: &str| {
        value(
            &s,
            &format!("stoat_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(closed("write_stall"), 1.0);
    assert_eq!(closed("client_close"), 0.0);
    drop(c);
    stop(server);
}
