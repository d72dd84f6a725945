//! Weasel's API over real sockets, against the real binary: conflicts,
//! idempotent retries, both body formats and 415, reads, watch.

mod common;

use std::sync::{Arc, Barrier};

use common::{commit_body, Conn, Weasel};
use serde_json::json;

fn start(extra: &str) -> (tempfile::TempDir, Weasel) {
    let tmp = tempfile::tempdir().unwrap();
    let w = Weasel::start(&tmp.path().join("data"), extra);
    (tmp, w)
}

#[test]
fn conflicts_name_the_key_and_its_version() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    let r = c.commit_json(&commit_body("c1", &[("a", 0)], &[("a", "x"), ("b", "y")]));
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"status": "committed", "version": 1}))
    );
    // "a" exists now: "must not exist" fails.
    let r = c.commit_json(&commit_body("c2", &[("a", 0)], &[("a", "z")]));
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json(),
        json!({"status": "conflict", "key": "a", "version": 1})
    );
    // The first failing precondition, in order, is the one named.
    let r = c.commit_json(&commit_body(
        "c3",
        &[("b", 1), ("zz", 4), ("a", 7)],
        &[("a", "z")],
    ));
    assert_eq!(
        r.json(),
        json!({"status": "conflict", "key": "zz", "version": 0})
    );
    // Right versions commit; nothing of a conflicting commit was applied.
    assert_eq!(
        c.get("/v1/kv/a").json(),
        json!({"key": "a", "value": "x", "version": 1})
    );
    let r = c.commit_json(&commit_body("c4", &[("a", 1), ("b", 1)], &[("a", "w")]));
    assert_eq!(r.json(), json!({"status": "committed", "version": 2}));
    // Delete, then "must not exist" holds again.
    let del = json!({"request_id": "c5", "preconditions": [{"key": "a", "version": 2}],
                     "operations": [{"op": "delete", "key": "a"}]});
    assert_eq!(c.commit_json(&del).json()["version"], 3);
    assert_eq!(c.get("/v1/kv/a").status, 404);
    let r = c.commit_json(&commit_body("c6", &[("a", 0)], &[("a", "again")]));
    assert_eq!(r.json()["version"], 4);
    assert_eq!(c.get("/v1/version").json(), json!({"version": 4}));
}

#[test]
fn racing_creators_exactly_one_wins() {
    let (_tmp, w) = start("");
    let n = 16;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let addr = w.addr;
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = Conn::connect(addr);
                barrier.wait();
                let v = format!("v{i}");
                c.commit_json(&commit_body(
                    &format!("r{i}"),
                    &[("lock", 0)],
                    &[("lock", &v)],
                ))
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.status != 200) {
        assert_eq!(
            r.json(),
            json!({"status": "conflict", "key": "lock", "version": 1})
        );
    }
}

#[test]
fn retries_get_the_first_outcome() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    let body = commit_body("once", &[], &[("k", "1")]);
    let first = c.commit_json(&body).json();
    assert_eq!(first, json!({"status": "committed", "version": 1}));
    for _ in 0..3 {
        assert_eq!(c.commit_json(&body).json(), first);
    }
    assert_eq!(
        c.get("/v1/version").json()["version"],
        1,
        "a retry must not commit again"
    );
    // A conflict is remembered too, even once it would now succeed.
    let late = commit_body("late", &[("k", 0)], &[("k", "2")]);
    assert_eq!(c.commit_json(&late).status, 409);
    let del = json!({"request_id": "del", "operations": [{"op": "delete", "key": "k"}]});
    assert_eq!(c.commit_json(&del).status, 200);
    let again = c.commit_json(&late);
    assert_eq!(again.status, 409);
    assert_eq!(
        again.json(),
        json!({"status": "conflict", "key": "k", "version": 1})
    );
    // Status by id.
    let s = c.get("/v1/status/once");
    assert_eq!(
        (s.status, s.json()),
        (200, json!({"status": "committed", "version": 1}))
    );
    assert_eq!(c.get("/v1/status/late").json()["status"], "conflict");
    let s = c.get("/v1/status/never");
    assert_eq!(
        (s.status, s.json()["status"].clone()),
        (404, json!("unknown"))
    );
}

#[test]
fn retry_after_restart_gets_the_first_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let body = commit_body("r1", &[("k", 0)], &[("k", "v")]);
    let mut w = Weasel::start(&dir, "");
    assert_eq!(w.conn().commit_json(&body).json()["version"], 1);
    w.kill();
    let w = Weasel::start(&dir, "");
    let mut c = w.conn();
    // Re-deciding would conflict (k exists); the first outcome is kept.
    assert_eq!(
        c.commit_json(&body).json(),
        json!({"status": "committed", "version": 1})
    );
    assert_eq!(c.get("/v1/status/r1").json()["version"], 1);
}

#[test]
fn status_window_is_bounded() {
    let (_tmp, w) = start("status_window = 2");
    let mut c = w.conn();
    for i in 0..3 {
        c.commit_json(&commit_body(&format!("s{i}"), &[], &[("k", "v")]));
    }
    assert_eq!(c.get("/v1/status/s0").status, 404);
    assert_eq!(c.get("/v1/status/s2").status, 200);
}

#[test]
fn messagepack_bodies_and_binary_values() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    #[derive(serde::Serialize)]
    struct Op<'a> {
        op: &'a str,
        key: &'a str,
        #[serde(with = "serde_bytes")]
        value: &'a [u8],
    }
    #[derive(serde::Serialize)]
    struct Body<'a> {
        request_id: &'a str,
        operations: Vec<Op<'a>>,
    }
    let body = rmp_serde::to_vec_named(&Body {
        request_id: "m1",
        operations: vec![
            Op {
                op: "set",
                key: "bin",
                value: &[0, 159, 255],
            },
            Op {
                op: "set",
                key: "txt",
                value: b"hello",
            },
        ],
    })
    .unwrap();
    let r = c.request(
        "POST",
        "/v1/commit",
        &["Content-Type: application/msgpack"],
        &body,
    );
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"status": "committed", "version": 1}))
    );
    assert_eq!(
        c.get("/v1/kv/bin").json(),
        json!({"key": "bin", "value_base64": "AJ//", "version": 1})
    );
    assert_eq!(c.get("/v1/kv/txt").json()["value"], "hello");
    // The same body as JSON commits the same way.
    let r = c.commit_json(&commit_body("j1", &[("txt", 1)], &[("txt", "bye")]));
    assert_eq!(r.json()["version"], 2);
    // MessagePack errors say what is wrong.
    let r = c.request(
        "POST",
        "/v1/commit",
        &["Content-Type: application/x-msgpack"],
        &[0x92, 0x01],
    );
    assert_eq!(r.status, 400);
    let mut trailing = body.clone();
    trailing.push(0xc0);
    let r = c.request(
        "POST",
        "/v1/commit",
        &["Content-Type: application/msgpack"],
        &trailing,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("after the value"),
        "{:?}",
        r.json()
    );
}

#[test]
fn bad_bodies_get_400_and_other_types_415() {
    let (_tmp, w) = start("max_value_bytes = 16");
    let mut c = w.conn();
    let post = |c: &mut Conn, ct: Option<&str>, body: &str| {
        let h = ct.map(|ct| format!("Content-Type: {ct}"));
        let headers: Vec<&str> = h.iter().map(String::as_str).collect();
        c.request("POST", "/v1/commit", &headers, body.as_bytes())
    };
    let ok = r#"{"request_id":"x","operations":[{"op":"set","key":"a","value":"v"}]}"#;
    for ct in ["text/plain", "application/xml", "application/jsonx"] {
        let r = post(&mut c, Some(ct), ok);
        assert_eq!(r.status, 415, "{ct}");
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .contains("application/json"));
    }
    assert_eq!(post(&mut c, None, ok).status, 415);
    let cases = [
        ("{", "EOF"),
        (r#"{"request_id":"x"}"#, "operations"),
        (
            r#"{"request_id":"x","operations":[{"op":"put","key":"a"}]}"#,
            "operations[0].op",
        ),
        (
            r#"{"request_id":"x","operations":[{"op":"set","key":"a"}]}"#,
            "needs a value",
        ),
        (
            r#"{"request_id":"x","operations":[{"op":"delete","key":"a","value":"v"}]}"#,
            "no value",
        ),
        (r#"{"request_id":"x","operations":[]}"#, "must not be empty"),
        (
            r#"{"request_id":"","operations":[{"op":"delete","key":"a"}]}"#,
            "request_id",
        ),
        (
            r#"{"request_id":"x","operations":[{"op":"delete","key":""}]}"#,
            "operations[0].key",
        ),
        (
            r#"{"request_id":"x","operations":[{"op":"set","key":"a","value":"12345678901234567"}]}"#,
            "at most 16",
        ),
        (
            r#"{"request_id":"x","operations":[{"op":"delete","key":"a"},{"op":"delete","key":"a"}]}"#,
            "twice",
        ),
        (
            r#"{"request_id":"x","operations":[{"op":"delete","key":"a"}],"extra":1}"#,
            "extra",
        ),
        (
            r#"{"request_id":"x","preconditions":[{"key":"a","version":-1}],"operations":[{"op":"delete","key":"a"}]}"#,
            "preconditions[0].version",
        ),
        (
            r#"{"request_id":"x","read_version":99,"operations":[{"op":"delete","key":"a"}]}"#,
            "ahead",
        ),
    ];
    for (body, says) in cases {
        let r = post(&mut c, Some("application/json; charset=utf-8"), body);
        assert_eq!(r.status, 400, "{body}");
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(says), "{body}: {m}");
    }
    assert_eq!(
        c.get("/v1/version").json()["version"],
        0,
        "nothing was committed"
    );
    assert_eq!(post(&mut c, Some("Application/JSON"), ok).status, 200);
}

#[test]
fn reads_list_by_prefix_with_limit() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    let keys = ["a/1", "a/2", "a/3", "b/1", "a b"];
    let sets: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "v")).collect();
    assert_eq!(c.commit_json(&commit_body("l", &[], &sets)).status, 200);
    let r = c.get("/v1/kv?prefix=a%2F&limit=2").json();
    assert_eq!(r["version"], 1);
    assert_eq!(r["truncated"], true);
    let listed: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["a/1", "a/2"]);
    let r = c.get("/v1/kv?prefix=a").json();
    assert_eq!(r["items"].as_array().unwrap().len(), 4);
    assert_eq!(r["truncated"], false);
    assert_eq!(c.get("/v1/kv/a%2F3").json()["key"], "a/3");
    assert_eq!(c.get("/v1/kv/a%20b").json()["key"], "a b");
    // Paging: start after the last key listed.
    let r = c.get("/v1/kv?prefix=a%2F&limit=2&start_after=a%2F2").json();
    let listed: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        (listed, r["truncated"].clone()),
        (vec!["a/3"], json!(false))
    );
    let r = c.get("/v1/kv?prefix=b&start_after=a").json();
    assert_eq!(
        r["items"][0]["key"], "b/1",
        "a start_after before the prefix starts at the prefix"
    );
    assert_eq!(c.get("/v1/kv?limit=0").status, 400);
    assert_eq!(c.get("/v1/kv?limit=x").status, 400);
    assert_eq!(c.get("/v1/kv/%FF").status, 400);
    assert_eq!(c.get("/healthz").status, 200);
}

#[test]
fn watch_sees_every_commit_in_order_across_a_reconnect() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    let commit = |c: &mut Conn, i: u64| {
        let k = format!("k{}", i % 3);
        let v = format!("v{i}");
        let r = c.commit_json(&commit_body(&format!("w{i}"), &[], &[(&k, &v)]));
        assert_eq!(r.json()["version"], i);
    };
    for i in 1..=3 {
        commit(&mut c, i);
    }
    let mut watch = w.conn();
    let head = watch.request("GET", "/v1/watch?from=1", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let mut sse = watch.sse();
    let mut seen = Vec::new();
    let check = |e: &common::SseEvent, v: u64| {
        assert_eq!(e.event.as_deref(), Some("commit"));
        assert_eq!(e.id.as_deref(), Some(v.to_string().as_str()));
        let d: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(d["version"], v);
        assert_eq!(d["operations"][0]["value"], format!("v{v}"));
    };
    for v in 2..=3 {
        let e = sse.expect();
        check(&e, v);
        seen.push(v);
    }
    // Commits while connected arrive live.
    for i in 4..=6 {
        commit(&mut c, i);
        let e = sse.expect();
        check(&e, i);
    }
    drop(sse); // Disconnect; commits go on.
    for i in 7..=10 {
        commit(&mut c, i);
    }
    let mut watch = w.conn();
    let head = watch.request("GET", "/v1/watch?from=0", &["Last-Event-ID: 6"], b"");
    assert_eq!(head.status, 200);
    let mut sse = watch.sse();
    for v in 7..=10 {
        check(&sse.expect(), v);
    }
    commit(&mut c, 11);
    check(&sse.expect(), 11);
}

#[test]
fn watch_resumes_from_the_log_and_says_compacted_before_a_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let extra = "watch_history = 4\nadmin_token = \"t\"";
    let w = Weasel::start(&dir, extra);
    let mut c = w.conn();
    for i in 1..=10 {
        c.commit_json(&commit_body(
            &format!("h{i}"),
            &[],
            &[("k", &format!("v{i}"))],
        ));
    }
    // Version 3 left the in-memory history (7..=10) but is in the log:
    // served from it, then the live stream, no gap, no duplicate.
    let mut watch = w.conn();
    assert_eq!(
        watch.request("GET", "/v1/watch?from=2", &[], b"").status,
        200
    );
    let mut sse = watch.sse();
    for v in 3..=10u64 {
        let e = sse.expect();
        assert_eq!(e.id, Some(v.to_string()));
        assert!(
            e.data.contains(&format!("\"value\":\"v{v}\"")),
            "{}",
            e.data
        );
    }
    c.commit_json(&commit_body("h11", &[], &[("k", "v11")]));
    assert_eq!(sse.expect().id.as_deref(), Some("11"));
    drop(sse);
    // After a snapshot the log before it is gone: `compacted`, naming the
    // oldest version the log holds.
    let r = c.request(
        "POST",
        "/v1/admin/snapshot",
        &["Authorization: Bearer t"],
        b"",
    );
    assert_eq!(r.status, 202);
    c.commit_json(&commit_body("h12", &[], &[("k", "v12")]));
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while dir.join("commits.log.00000000000000000011").exists() {
        assert!(std::time::Instant::now() < deadline, "log not retired");
        std::thread::sleep(std::time::Duration::from_millis(10)); // Polling the file system, bounded.
    }
    let mut watch = w.conn();
    watch.request("GET", "/v1/watch?from=2", &[], b"");
    let mut sse = watch.sse();
    let e = sse.expect();
    assert_eq!(e.event.as_deref(), Some("compacted"));
    let d: serde_json::Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(d["error"], "compacted");
    assert_eq!(d["oldest"], 12);
    assert_eq!(sse.next().unwrap(), None, "the stream ends after it");
    // From the oldest retained on is fine; so is "ahead" refused.
    let mut watch = w.conn();
    watch.request("GET", "/v1/watch?from=8", &[], b"");
    assert_eq!(watch.sse().expect().id.as_deref(), Some("9"));
    let mut watch = w.conn();
    watch.request("GET", "/v1/watch?from=13", &[], b"");
    let e = watch.sse().expect();
    assert_eq!(e.event.as_deref(), Some("error"));
    assert!(e.data.contains("ahead"));
}

#[test]
fn watch_history_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut w = Weasel::start(&dir, "");
    let mut c = w.conn();
    for i in 1..=3 {
        c.commit_json(&commit_body(&format!("p{i}"), &[], &[("k", "v")]));
    }
    w.kill();
    let w = Weasel::start(&dir, "");
    let mut watch = w.conn();
    watch.request("GET", "/v1/watch", &["Last-Event-ID: 1"], b"");
    let mut sse = watch.sse();
    assert_eq!(sse.expect().id.as_deref(), Some("2"));
    assert_eq!(sse.expect().id.as_deref(), Some("3"));
}

#[test]
fn config_errors_name_the_key_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.toml");
    std::fs::write(&file, "[weasel]\nmax_batch = 0\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weasel"))
        .arg("--config")
        .arg(&file)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("weasel.max_batch") && err.contains("bad.toml"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weasel"))
        .arg("--print-default-config")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    std::fs::write(&file, &text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weasel"))
        .arg("--config")
        .arg(&file)
        .arg("--check-config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_watcher_too_slow_for_the_history_is_told_and_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Weasel::start_with(
        &tmp.path().join("data"),
        // A long write timeout: the watcher must be cut by the watch's
        // rule, not by Stoat's write timeout on a slow machine.
        "sse_backlog = 2\nwrite_timeout_sec = 600",
        "watch_history = 4",
    );
    let mut watch = w.conn();
    // Subscribed (the greeting is read), then not read while commits pile up.
    watch.send("GET", "/v1/watch?from=0", &[], b"").unwrap();
    let head = watch.response().unwrap();
    assert_eq!(head.status, 200);
    let mut sse = watch.sse();
    // Values large enough that the socket buffers fill long before the end.
    let big = "x".repeat(200_000);
    let mut c = w.conn();
    let commits = 50;
    for i in 1..=commits {
        let r = c.commit_json(&commit_body(&format!("s{i}"), &[], &[("k", &big)]));
        assert_eq!(r.status, 200);
    }
    // Now read: versions in order without a gap, then the too_slow event, then the end.
    let mut expect = 1;
    let last = loop {
        let e = sse.expect();
        if e.event.as_deref() != Some("commit") {
            break e;
        }
        assert_eq!(e.id, Some(expect.to_string()), "no version skipped");
        expect += 1;
    };
    eprintln!("fell behind after {} events", expect - 1);
    assert!(expect <= commits, "the watcher should have fallen behind");
    assert_eq!(last.event.as_deref(), Some("error"));
    let d: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(d["error"], "too_slow", "{d}");
    assert_eq!(sse.next().unwrap(), None, "closed after the final event");
}

#[test]
fn sigint_ends_watch_streams_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    // A drain that would outlast the test's bound if streams held it.
    let mut w = Weasel::start_with(&tmp.path().join("data"), "drain_timeout_sec = 600", "");
    let mut watch = w.conn();
    assert_eq!(watch.request("GET", "/v1/watch", &[], b"").status, 200);
    let mut sse = watch.sse();
    assert!(
        w.conn()
            .commit_json(&commit_body("x", &[], &[("k", "v")]))
            .status
            == 200
    );
    assert_eq!(sse.expect().id.as_deref(), Some("1"));
    let status = w.interrupt();
    assert!(status.success(), "{status:?}");
    assert_eq!(sse.next().unwrap(), None, "the stream ended");
}

#[test]
fn reads_carry_the_version_as_etag_and_if_none_match_gets_304() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    assert_eq!(
        c.commit_json(&commit_body("e1", &[], &[("k", "one")]))
            .status,
        200
    );
    let r = c.get("/v1/kv/k");
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    for inm in ["\"1\"", "W/\"1\"", "\"9\", \"1\"", "*"] {
        let h = format!("If-None-Match: {inm}");
        let r = c.request("GET", "/v1/kv/k", &[&h], b"");
        assert_eq!(r.status, 304, "{inm}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some("\"1\""));
    }
    // A changed value has a new tag: the old one no longer matches.
    assert_eq!(
        c.commit_json(&commit_body("e2", &[], &[("k", "two")]))
            .status,
        200
    );
    let r = c.request("GET", "/v1/kv/k", &["If-None-Match: \"1\""], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["value"], "two");
    assert_eq!(r.header("etag"), Some("\"2\""));
    assert_eq!(c.get("/v1/kv").header("cache-control"), Some("no-cache"));
    assert_eq!(
        c.get("/v1/version").header("cache-control"),
        Some("no-cache")
    );
}

#[test]
fn admin_snapshot_is_off_by_default_and_needs_the_token() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    assert_eq!(
        c.request("POST", "/v1/admin/snapshot", &[], b"").status,
        404
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let w = Weasel::start(&dir, "admin_token = \"s3cret\"");
    let mut c = w.conn();
    assert_eq!(
        c.commit_json(&commit_body("a1", &[], &[("k", "v")])).status,
        200
    );
    assert_eq!(
        c.request("POST", "/v1/admin/snapshot", &[], b"").status,
        401
    );
    let wrong = c.request(
        "POST",
        "/v1/admin/snapshot",
        &["Authorization: Bearer nope"],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let r = c.request(
        "POST",
        "/v1/admin/snapshot",
        &["Authorization: Bearer s3cret"],
        b"",
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["version"], 1);
    // The snapshot appears; the log before it is retired.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    let snap = dir.join("snapshot-00000000000000000001.snap");
    while !snap.exists() || dir.join("commits.log.00000000000000000001").exists() {
        assert!(std::time::Instant::now() < deadline, "no snapshot written");
        std::thread::sleep(std::time::Duration::from_millis(10)); // Polling the file system, bounded.
    }
    // A restart starts from it and keeps the outcome window.
    let mut w = w;
    assert!(w.interrupt().success());
    let w = Weasel::start(&dir, "admin_token = \"s3cret\"");
    assert!(
        w.recovered.contains("snapshot at version 1"),
        "{}",
        w.recovered
    );
    let mut c = w.conn();
    assert_eq!(c.get("/v1/kv/k").json()["value"], "v");
    assert_eq!(c.get("/v1/status/a1").json()["version"], 1);
    assert_eq!(
        c.commit_json(&commit_body("a2", &[], &[("k", "w")])).json()["version"],
        2
    );
}

/// Issue 17 item 7: each discrepancy between the API and docs/API.md,
/// decided (see "Details the API decides" there) and checked.
#[test]
fn api_details_match_the_document() {
    let (_tmp, w) = start("");
    let mut c = w.conn();
    // A commit whose only operation deletes a missing key still takes the
    // next version (documented: every commit that passes its
    // preconditions gets a version, changed or not).
    let r = c
        .commit_json(&json!({"request_id": "d1", "operations": [{"op": "delete", "key": "nope"}]}));
    assert_eq!(r.json()["version"], 1);
    // `preconditions: null` is accepted like `read_version: null`.
    let r = c.commit_json(&json!({"request_id": "n1", "read_version": null,
        "preconditions": null, "operations": [{"op": "set", "key": "a", "value": "x"}]}));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // `from` is digits only: `+5` is refused as `%2B5` is.
    for from in ["+1", "%2B1", "-1", "x"] {
        let mut watch = w.conn();
        watch.request("GET", &format!("/v1/watch?from={from}"), &[], b"");
        let e = watch.sse().expect();
        assert_eq!(e.event.as_deref(), Some("error"), "{from}");
        assert!(e.data.contains("bad_request"), "{from}: {}", e.data);
    }
    // `+` in a query is a plus, not a space (values are percent-decoded only).
    assert_eq!(
        c.commit_json(&commit_body("p1", &[], &[("a+b", "plus")]))
            .status,
        200
    );
    let r = c.get("/v1/kv?prefix=a+").json();
    assert_eq!(r["items"][0]["key"], "a+b");
    // A status id that is not UTF-8 once decoded is 400.
    assert_eq!(c.get("/v1/status/%FF").status, 400);
    // A retry with an invalid body is checked before its id is looked up: 400.
    let bad = c.request(
        "POST",
        "/v1/commit",
        &["Content-Type: application/json"],
        br#"{"request_id":"d1"}"#,
    );
    assert_eq!(bad.status, 400);
}

/// The errors Stoat answers by itself are JSON `{error, message}` like
/// Weasel's own (docs/API.md), each over a real socket: 404, 405, a
/// framing 400, 413, 431, 408. (A full ring's 503 and a deadline's 503
/// are covered in stoat's `tests/error_body.rs`.)
#[test]
fn engine_errors_are_json() {
    let tmp = tempfile::tempdir().unwrap();
    let w = Weasel::start_with(
        &tmp.path().join("data"),
        "max_body_size = 4096\nmax_header_bytes = 2048\nrequest_timeout_sec = 1",
        "",
    );
    let check = |r: &common::Resp, status: u16, code: &str| {
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
        let v = r.json();
        assert_eq!(v["error"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    };
    let mut c = w.conn();
    check(&c.get("/v1/nope"), 404, "not_found");
    let r = c.request("DELETE", "/v1/version", &[], b"");
    check(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));

    let mut c = w.conn();
    let r = c.request(
        "POST",
        "/v1/commit",
        &[
            "Content-Type: application/json",
            "Transfer-Encoding: chunked",
        ],
        b"{}",
    );
    check(&r, 400, "bad_request");

    let mut c = w.conn();
    c.send_raw(b"POST /v1/commit HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
        .unwrap();
    check(&c.response().unwrap(), 413, "too_large");

    let mut c = w.conn();
    let big = format!("X-Big: {}", "a".repeat(3000));
    let _ = c.send("GET", "/v1/version", &[&big], b"");
    check(&c.response().unwrap(), 431, "headers_too_large");

    // A head that never ends: 408 at the request deadline.
    let mut c = w.conn();
    c.send_raw(b"GET /v1/version HTTP/1.1\r\nHost: t\r\n")
        .unwrap();
    check(&c.response().unwrap(), 408, "request_timeout");
}
