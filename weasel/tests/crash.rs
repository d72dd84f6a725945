//! Crash safety: the real binary, several concurrent committing clients,
//! SIGKILL at a different moment each round, restart, and check:
//! - every acknowledged commit is there, with the version it was given
//!   (its keys, its status by request id, a retry of it);
//! - versions run 1..=V without a gap, and each version is one whole
//!   commit (both of its keys): no partial batch is visible.
//!
//! Kill points are chosen by count of acknowledged commits (a random
//! number each round, seeded per run and printed), not by sleeping; the
//! kill lands while other clients' commits are in flight.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::{commit_body, Conn, Weasel, TIMEOUT};

const ROUNDS: usize = 24;
const CLIENTS: usize = 6;
/// Most acknowledged commits per round before the kill.
const MAX_KILL_AFTER: u64 = 120;

/// Acknowledged commits: request id -> version.
#[derive(Default)]
struct Acks {
    map: Mutex<HashMap<String, u64>>,
    changed: Condvar,
}

#[test]
fn every_acknowledged_commit_survives_sigkill() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = seed;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let extra = "watch_history = 1000000";
    let acks = Arc::new(Acks::default());
    for round in 0..ROUNDS {
        let w = Weasel::start(&dir, extra);
        verify(&w, &acks, round);
        let kill_after =
            acks.map.lock().unwrap().len() as u64 + 1 + xorshift(&mut rng) % MAX_KILL_AFTER;
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (addr, acks, stop) = (w.addr, acks.clone(), stop.clone());
                std::thread::spawn(move || run_client(addr, round, client, &acks, &stop))
            })
            .collect();
        let mut w = w;
        {
            let deadline = Instant::now() + TIMEOUT;
            let mut map = acks.map.lock().unwrap();
            while (map.len() as u64) < kill_after {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "round {round}: commits stalled at {}",
                    map.len()
                );
                map = acks.changed.wait_timeout(map, left).unwrap().0;
            }
        }
        w.kill();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
    }
    let w = Weasel::start(&dir, extra);
    let total = verify(&w, &acks, ROUNDS);
    eprintln!(
        "crash test: {ROUNDS} rounds, {} acknowledged commits, final version {total}",
        acks.map.lock().unwrap().len()
    );
}

/// Commits `r{round}-c{client}-{n}` (two keys) until the server goes away.
fn run_client(
    addr: std::net::SocketAddr,
    round: usize,
    client: usize,
    acks: &Acks,
    stop: &AtomicBool,
) {
    let Ok(mut c) = Conn::try_connect(addr) else {
        return;
    };
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let rid = format!("r{round}-c{client}-{n}");
        let (a, b) = (format!("{rid}-a"), format!("{rid}-b"));
        let body = commit_body(&rid, &[(&a, 0)], &[(&a, &rid), (&b, &rid)]);
        let r = match c.try_request(
            "POST",
            "/v1/commit",
            &["Content-Type: application/json"],
            body.to_string().as_bytes(),
        ) {
            Ok(r) => r,
            Err(_) => return, // Killed: this commit's outcome is unknown.
        };
        assert_eq!(r.status, 200, "{rid}: {}", String::from_utf8_lossy(&r.body));
        let v = r.json()["version"].as_u64().unwrap();
        acks.map.lock().unwrap().insert(rid, v);
        acks.changed.notify_all();
    }
}

/// Checks the restarted store against what was acknowledged; returns V.
fn verify(w: &Weasel, acks: &Acks, round: usize) -> u64 {
    let acks = acks.map.lock().unwrap().clone();
    let mut c = w.conn();
    let head = c.get("/v1/version").json()["version"].as_u64().unwrap();
    // Replay the whole history (rebuilt from the log) through the watch.
    let mut watch = w.conn();
    assert_eq!(
        watch.request("GET", "/v1/watch?from=0", &[], b"").status,
        200
    );
    let mut sse = watch.sse();
    let mut by_version: HashMap<u64, String> = HashMap::new();
    for v in 1..=head {
        let e = sse.expect();
        assert_eq!(
            e.id,
            Some(v.to_string()),
            "round {round}: versions must run without a gap"
        );
        let d: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        let ops = d["operations"].as_array().unwrap();
        assert_eq!(
            ops.len(),
            2,
            "round {round}: version {v} is not a whole commit: {d}"
        );
        let rid = ops[0]["value"].as_str().unwrap().to_owned();
        assert_eq!(ops[0]["key"], format!("{rid}-a"));
        assert_eq!(ops[1]["key"], format!("{rid}-b"));
        assert_eq!(ops[1]["value"], rid.as_str());
        by_version.insert(v, rid);
    }
    drop(sse);
    for (rid, &v) in &acks {
        assert!(
            v <= head,
            "round {round}: acknowledged {rid} at {v}, store only at {head}"
        );
        assert_eq!(by_version.get(&v), Some(rid), "round {round}: version {v}");
        let item = c.get(&format!("/v1/kv/{rid}-b")).json();
        assert_eq!(item["version"], v, "round {round}: {rid}");
        assert_eq!(item["value"], rid.as_str());
    }
    // Outcomes survive too: a retry of acknowledged commits gets their version.
    for (rid, &v) in acks.iter().take(20) {
        let (a, b) = (format!("{rid}-a"), format!("{rid}-b"));
        let r = c.commit_json(&commit_body(rid, &[(&a, 0)], &[(&a, rid), (&b, rid)]));
        assert_eq!(r.json()["version"], v, "round {round}: retry of {rid}");
        assert_eq!(c.get(&format!("/v1/status/{rid}")).json()["version"], v);
    }
    assert_eq!(
        c.get("/v1/version").json()["version"],
        head,
        "retries must not commit"
    );
    head
}

/// Snapshot rounds: `WEASEL_SNAPSHOT_ROUNDS`, else 16 (CI time; issue
/// 17's aim of 50 rounds is `WEASEL_SNAPSHOT_ROUNDS=50`).
fn snapshot_rounds() -> usize {
    std::env::var("WEASEL_SNAPSHOT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

/// Whether `dir` shows the moment round `round` kills in: an unfinished
/// snapshot file (even rounds: during the write), or a sealed segment not
/// yet retired (odd rounds: between rotation and retirement).
fn snapshot_moment(dir: &std::path::Path, round: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if round % 2 == 0 {
            name.ends_with(".snap.tmp")
        } else {
            name.starts_with("commits.log.")
        }
    })
}

/// SIGKILL while snapshots are written and the log retired: a small
/// snapshot threshold over a few MB of state keeps a snapshot in flight
/// most of the time, and each round kills only once the directory shows
/// one (a `.snap.tmp`, or a sealed segment not yet retired). Every
/// acknowledged commit must survive, versions gapless, checked through
/// the keys (the watch history no longer reaches version 1 once the log
/// before a snapshot is retired).
#[test]
fn every_acknowledged_commit_survives_sigkill_during_snapshots() {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("snapshot crash test seed {seed}");
    let mut rng = seed;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let extra = "snapshot_min_log_bytes = 2048\nsnapshot_log_percent = 1\nmax_operations = 1000";
    let acks = Arc::new(Acks::default());
    // A few MB of state, so that a snapshot takes a while to write.
    let preload_versions = {
        let w = Weasel::start(&dir, extra);
        let mut c = w.conn();
        let value = "p".repeat(500);
        for i in 0..8 {
            let ops: Vec<_> = (0..1000)
                .map(|k| serde_json::json!({"op": "set", "key": format!("pre-{i}-{k}"), "value": value}))
                .collect();
            let body = serde_json::json!({"request_id": format!("pre-{i}"), "operations": ops});
            let r = c.commit_json(&body);
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
        8
    };
    let mut moments = 0;
    let rounds = snapshot_rounds();
    for round in 0..rounds {
        let w = Weasel::start(&dir, extra);
        verify_keys(&w, &acks, preload_versions, round);
        let kill_after =
            acks.map.lock().unwrap().len() as u64 + 1 + xorshift(&mut rng) % (MAX_KILL_AFTER / 4);
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (addr, acks, stop) = (w.addr, acks.clone(), stop.clone());
                std::thread::spawn(move || run_client(addr, round, client, &acks, &stop))
            })
            .collect();
        let mut w = w;
        {
            let deadline = Instant::now() + TIMEOUT;
            let mut map = acks.map.lock().unwrap();
            loop {
                if map.len() as u64 >= kill_after && snapshot_moment(&dir, round) {
                    moments += 1;
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(
                    !left.is_zero(),
                    "round {round}: no snapshot moment seen with {} commits",
                    map.len()
                );
                // Woken by each acknowledgement; the directory is looked
                // at again at least every millisecond meanwhile.
                map = acks
                    .changed
                    .wait_timeout(map, std::time::Duration::from_millis(1))
                    .unwrap()
                    .0;
            }
        }
        w.kill();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
    }
    let w = Weasel::start(&dir, extra);
    let total = verify_keys(&w, &acks, preload_versions, rounds);
    eprintln!(
        "snapshot crash test: {rounds} rounds ({moments} killed during a snapshot \
         write or before retirement), {} acknowledged commits, final version {total}",
        acks.map.lock().unwrap().len()
    );
    assert_eq!(moments, rounds);
}

/// Checks the restarted store through its keys: every acknowledged commit
/// is there at its version, and versions 1..=V all appear (no key is ever
/// overwritten, so each version holds its keys); returns V.
fn verify_keys(w: &Weasel, acks: &Acks, preload: u64, round: usize) -> u64 {
    let acks = acks.map.lock().unwrap().clone();
    let mut c = w.conn();
    let head = c.get("/v1/version").json()["version"].as_u64().unwrap();
    let mut seen: HashMap<u64, Vec<String>> = HashMap::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => "/v1/kv?limit=1000".to_owned(),
            Some(a) => format!("/v1/kv?limit=1000&start_after={a}"),
        };
        let page = c.get(&path).json();
        for it in page["items"].as_array().unwrap() {
            let key = it["key"].as_str().unwrap().to_owned();
            seen.entry(it["version"].as_u64().unwrap())
                .or_default()
                .push(key.clone());
            after = Some(key);
        }
        if page["truncated"] == false {
            break;
        }
    }
    for v in 1..=head {
        let keys = seen.get(&v).map_or(0, Vec::len);
        let want = if v <= preload { 1000 } else { 2 };
        assert_eq!(
            keys, want,
            "round {round}: version {v} has {keys} keys (gap or partial commit)"
        );
    }
    assert!(
        seen.keys().all(|&v| v <= head),
        "round {round}: a key beyond {head}"
    );
    for (rid, &v) in &acks {
        assert!(
            v <= head,
            "round {round}: acknowledged {rid} at {v}, store only at {head}"
        );
        let item = c.get(&format!("/v1/kv/{rid}-b")).json();
        assert_eq!(item["version"], v, "round {round}: {rid}");
    }
    // Outcomes survive snapshots too (the window is in them).
    for (rid, &v) in acks.iter().take(20) {
        assert_eq!(
            c.get(&format!("/v1/status/{rid}")).json()["version"],
            v,
            "round {round}"
        );
    }
    head
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}
