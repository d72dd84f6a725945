//! Group commit: the `commit_status` pipeline's batch handler.
//!
//! Contract, for each batch the pipeline thread takes from the ring:
//! 1. Every `POST /v1/commit` body is decoded and checked against the
//!    limits; a bad one is answered at once (400 or 415), it changes
//!    nothing.
//! 2. The rest are decided in arrival order, at most `weasel.max_batch` at
//!    a time (a chunk): a request id already in the outcome window gets its
//!    first outcome again; otherwise the preconditions are checked against
//!    the committed state plus the effects of the chunk's earlier commits,
//!    and the commit gets the next version or a conflict.
//! 3. The chunk's outcomes (conflicts too, so retries after a restart see
//!    them) go to the log as one record: one `write`, one `fdatasync`.
//! 4. Only then is the state changed (a short write lock), watchers told,
//!    outcomes recorded, and each request answered.
//!
//! `GET /v1/status/{id}` jobs ([`CommitRoute::Status`]) are answered after
//! this batch's commits, so a status query sees the commits of its batch.
//! If the log write fails, the chunk is answered 503 and `/healthz` says why
//! until a later write succeeds; after a failed fsync every later commit is
//! 503 and the server stops (see `store/log.rs`).

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use serde_bytes::ByteBuf;
use stoat::app::{Job, Request, Response};

use crate::api;
use crate::codec::{CodecError, CommitRequest, OpKind};
use crate::status::Outcome;
use crate::store::record::{BatchRecord, Entry, LoggedOp, LoggedOutcome};
use crate::store::{Change, Store};
use crate::watch::CommitEvent;

/// Longest request id in bytes.
pub const MAX_REQUEST_ID: usize = 256;

/// A commit request that passed every check but its preconditions.
#[derive(Debug)]
pub struct Checked {
    request: CommitRequest,
}

/// The routes of the `commit_status` pipeline: what each job carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitRoute {
    /// `POST /v1/commit`.
    Commit,
    /// `GET /v1/status/{request_id}`.
    Status,
    /// `POST /v1/admin/snapshot` (between batches, like status).
    AdminSnapshot,
}

/// The batch handler: see the module doc. An answer that cannot be
/// delivered (`Err`: the client left) is dropped: the commit stands.
pub fn handle_batch(store: &Store, jobs: &mut [Job<CommitRoute>]) {
    let mut commits: Vec<(usize, Checked)> = Vec::new();
    for (i, job) in jobs.iter_mut().enumerate() {
        if job.route() != CommitRoute::Commit {
            continue;
        }
        let parsed = check(store, &job.request());
        match parsed {
            Ok(c) => commits.push((i, c)),
            Err(response) => {
                let _ = job.respond(response);
            }
        }
    }
    let max = store.config.max_batch;
    let mut commits = commits.into_iter().peekable();
    while commits.peek().is_some() {
        let chunk: Vec<(usize, Checked)> = commits.by_ref().take(max).collect();
        let (indices, requests): (Vec<usize>, Vec<Checked>) = chunk.into_iter().unzip();
        let responses = commit_chunk(store, requests);
        for (i, response) in indices.into_iter().zip(responses) {
            let _ = jobs[i].respond(response);
        }
    }
    for job in jobs.iter_mut() {
        let response = match job.route() {
            CommitRoute::Status => api::status(store, &job.request()),
            CommitRoute::AdminSnapshot => api::admin_snapshot(store, &job.request()),
            CommitRoute::Commit => continue,
        };
        let _ = job.respond(response);
    }
}

/// Decodes and checks one request's body.
pub fn check(store: &Store, req: &Request<'_>) -> Result<Checked, Response> {
    let request = store
        .codecs
        .decode_commit(req.content_type(), req.body())
        .map_err(|e| match e {
            CodecError::Unsupported(m) => api::error(415, "unsupported_media_type", &m),
            CodecError::Malformed(m) => api::error(400, "bad_request", &m),
        })?;
    let bad = |m: String| api::error(400, "bad_request", &m);
    let limits = &store.config;
    if request.request_id.is_empty() || request.request_id.len() > MAX_REQUEST_ID {
        return Err(bad(format!(
            "request_id must be 1 to {MAX_REQUEST_ID} bytes"
        )));
    }
    let ops = &request.operations;
    if ops.is_empty() {
        return Err(bad("operations must not be empty".into()));
    }
    if ops.len() > limits.max_operations || request.preconditions.len() > limits.max_operations {
        return Err(bad(format!(
            "at most {} operations and {} preconditions per commit",
            limits.max_operations, limits.max_operations
        )));
    }
    let key_ok = |k: &str| !k.is_empty() && k.len() <= limits.max_key_bytes;
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        if !key_ok(&op.key) {
            return Err(bad(format!(
                "operations[{i}].key: must be 1 to {} bytes",
                limits.max_key_bytes
            )));
        }
        if seen.insert(&op.key, ()).is_some() {
            return Err(bad(format!(
                "operations[{i}].key: {:?} appears twice in one commit",
                op.key
            )));
        }
        match (op.op, &op.value) {
            (OpKind::Set, None) => {
                return Err(bad(format!("operations[{i}]: set needs a value")));
            }
            (OpKind::Set, Some(v)) if v.0.len() > limits.max_value_bytes => {
                return Err(bad(format!(
                    "operations[{i}].value: {} bytes, at most {} allowed",
                    v.0.len(),
                    limits.max_value_bytes
                )));
            }
            (OpKind::Delete, Some(_)) => {
                return Err(bad(format!("operations[{i}]: delete takes no value")));
            }
            _ => {}
        }
    }
    for (i, p) in request.preconditions.iter().enumerate() {
        if !key_ok(&p.key) {
            return Err(bad(format!(
                "preconditions[{i}].key: must be 1 to {} bytes",
                limits.max_key_bytes
            )));
        }
    }
    Ok(Checked { request })
}

/// How one request of a chunk is answered.
enum Decided {
    /// Its id was answered before: that outcome.
    Known(Outcome),
    /// Decided in this chunk: `entries[i]`.
    Entry(usize),
    /// Refused before deciding (a read_version ahead of the store).
    Refused(Response),
}

/// Decides, writes and applies one chunk; one response per request.
fn commit_chunk(store: &Store, requests: Vec<Checked>) -> Vec<Response> {
    let mut writer = store.writer();
    let mut decided = Vec::with_capacity(requests.len());
    let mut entries: Vec<Entry> = Vec::new();
    {
        let state = store.read();
        // Versions set or deleted (0) by this chunk's earlier commits.
        let mut overlay: HashMap<String, u64> = HashMap::new();
        let mut in_chunk: HashMap<String, usize> = HashMap::new();
        let mut next = state.version;
        for Checked { request } in requests {
            if let Some(o) = writer.status().get(&request.request_id).cloned() {
                decided.push(Decided::Known(o));
                store
                    .stats
                    .commits
                    .duplicates
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(&e) = in_chunk.get(&request.request_id) {
                decided.push(Decided::Entry(e));
                store
                    .stats
                    .commits
                    .duplicates
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(rv) = request.read_version.filter(|&rv| rv > next) {
                let m = format!("read_version {rv} is ahead of the store's version {next}");
                decided.push(Decided::Refused(api::error(400, "bad_request", &m)));
                continue;
            }
            let current = |key: &str| {
                overlay
                    .get(key)
                    .copied()
                    .unwrap_or_else(|| state.key_version(key))
            };
            let failed = request
                .preconditions
                .iter()
                .find(|p| current(&p.key) != p.version)
                .map(|p| (p.key.clone(), current(&p.key)));
            let outcome = match failed {
                Some((key, version)) => LoggedOutcome::Conflict { key, version },
                None => {
                    next += 1;
                    let ops: Vec<LoggedOp> = request
                        .operations
                        .into_iter()
                        .map(|op| {
                            let value = match op.op {
                                OpKind::Set => op.value.map(|v| ByteBuf::from(v.0)),
                                OpKind::Delete => None,
                            };
                            overlay.insert(op.key.clone(), if value.is_some() { next } else { 0 });
                            LoggedOp { key: op.key, value }
                        })
                        .collect();
                    LoggedOutcome::Committed { version: next, ops }
                }
            };
            in_chunk.insert(request.request_id.clone(), entries.len());
            decided.push(Decided::Entry(entries.len()));
            entries.push(Entry {
                request_id: request.request_id,
                outcome,
            });
        }
    }
    if !entries.is_empty() {
        let record = BatchRecord { entries };
        let encoded = record.encode();
        let started = std::time::Instant::now();
        let written = writer.log.append(&encoded);
        store
            .stats
            .commits
            .record_batch(record.entries.len(), encoded.len(), started.elapsed());
        store.note_append(&written, &writer.log);
        if let Err(e) = written {
            tracing::error!(error = %e, "commit log write or fsync failed; refusing commits");
            let m = format!("the commit log failed ({e}); the commit was not made");
            return decided
                .into_iter()
                .map(|d| match d {
                    Decided::Known(o) => outcome_response(&o),
                    Decided::Refused(r) => r,
                    Decided::Entry(_) => api::error(503, "unavailable", &m),
                })
                .collect();
        }
        entries = record.entries;
        let decided = entries.len() as u64;
        store.stats.decided.fetch_add(decided, Ordering::Relaxed);
        store.stats.records.fetch_add(1, Ordering::Relaxed);
        for e in &entries {
            let counter = match e.outcome {
                LoggedOutcome::Committed { .. } => &store.stats.commits.committed,
                LoggedOutcome::Conflict { .. } => &store.stats.commits.conflicts,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut events = Vec::new();
        {
            let mut state = store.write_state();
            for e in &entries {
                if let LoggedOutcome::Committed { version, ops } = &e.outcome {
                    let changes = Change::of(ops);
                    state.apply(*version, &changes);
                    events.push(CommitEvent::new(*version, changes));
                }
            }
        }
        store.hub.publish(events);
        {
            let mut status = writer.status();
            for e in &entries {
                status.insert(&e.request_id, outcome_of(&e.outcome));
            }
        }
        let _ = store.maybe_snapshot(&mut writer, false);
    }
    drop(writer);
    decided
        .into_iter()
        .map(|d| match d {
            Decided::Known(o) => outcome_response(&o),
            Decided::Refused(r) => r,
            Decided::Entry(i) => outcome_response(&outcome_of(&entries[i].outcome)),
        })
        .collect()
}

fn outcome_of(o: &LoggedOutcome) -> Outcome {
    match o {
        LoggedOutcome::Committed { version, .. } => Outcome::Committed { version: *version },
        LoggedOutcome::Conflict { key, version } => Outcome::Conflict {
            key: key.clone(),
            version: *version,
        },
    }
}

/// The answer to a commit with outcome `o`: 200 or 409.
pub fn outcome_response(o: &Outcome) -> Response {
    match o {
        Outcome::Committed { version } => api::json(
            200,
            &serde_json::json!({"status": "committed", "version": version}),
        ),
        Outcome::Conflict { key, version } => api::json(
            409,
            &serde_json::json!({"status": "conflict", "key": key, "version": version}),
        ),
    }
}
