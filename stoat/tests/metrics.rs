//! Metrics, the Prometheus exposition and the access log over real
//! sockets, both models: counters add up to what the test did (requests by
//! route and status class, closes by reason, histograms), the page parses
//! with a real Prometheus parser (`prometheus_client`, Python; skipped when
//! missing unless `STOAT_REQUIRE_PROMETHEUS` is set, as CI does), the
//! access log writes one line per response, and a log target that blocks
//! (a FIFO nobody reads) drops and counts lines without holding a request.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use stoat::app::{Request, Response, Server};
use stoat::config::{AccessLogFormat, Config, Model};

both_models!(
    counters_add_up,
    evictions_counted,
    exposition_parses_with_prometheus_client,
    access_log_lines,
    access_log_blocked_target_never_slows_requests,
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

    let s = samples(&scrape(addr));
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

    // The first scrape counts itself in the next one.
    let again = samples(&scrape(addr));
    assert_eq!(
        value(
            &again,
            "stoat_requests_total{method=\"GET\",route=\"/metrics\",class=\"2xx\"}"
        ),
        1.0
    );
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
    // Every response was either written, dropped or is still queued.
    assert!(written + dropped <= n as f64 + 1.0);
    assert!(
        written + dropped + 17.0 >= n as f64,
        "written {written}, dropped {dropped}"
    );
    // Stopping must not wait for the blocked writer forever: drop the
    // reader so its write fails, then stop.
    drop(_reader);
    stop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
