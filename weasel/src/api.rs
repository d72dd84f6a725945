//! Weasel's HTTP API: the routes, and how answers are encoded.
//!
//! | route | runs | answer |
//! |---|---|---|
//! | `POST /v1/commit` | `commit_status` pipeline (group commit) | 200 committed, 409 conflict, 400, 415, 503 |
//! | `GET /v1/status/{request_id}` | `commit_status` pipeline | 200 committed or conflict, 404 unknown |
//! | `GET /v1/version` | inline | 200 `{"version":V}` |
//! | `GET /v1/kv/{key}` | inline | 200 value and version, 404 |
//! | `GET /v1/kv?prefix=P&limit=N` | inline | 200 keys in order |
//! | `GET /v1/watch?from=V` | SSE, the watch thread | `commit` events |
//! | `GET /healthz` | inline | 200 `ok` |
//!
//! Contract: every answer is JSON (`application/json`, one line ending in
//! a newline, so curl output reads well); errors are
//! `{"error": CODE, "message": TEXT}`. Keys in the path and the `prefix`
//! are percent-decoded and must be UTF-8. Values are bytes: JSON answers
//! carry a UTF-8 value as `"value"` and any other as `"value_base64"`
//! (standard alphabet, padded). Inline handlers hold the state's read lock
//! only to look up and copy out; see docs/API.md for examples.

use std::ops::Bound;
use std::sync::Arc;

use base64::Engine;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use stoat::app::{EventStream, Method, Request, Response, Server};

use crate::commit;
use crate::status::Outcome;
use crate::store::Store;
use crate::PIPELINE;

/// The commit route's path.
pub const COMMIT_PATH: &str = "/v1/commit";

/// `limit` of `GET /v1/kv` when none is given.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Largest `limit` of `GET /v1/kv`.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Adds Weasel's routes and its batch handler to `server`.
pub fn routes(server: Server, store: Arc<Store>) -> Server {
    let hub = store.hub.clone();
    let (s1, s2, s3, s4, s5, s6, s7) = (
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store,
    );
    server
        .get("/healthz", |_| "ok\n")
        .get("/v1/version", move |_| version(&s1))
        .get("/v1/kv/{key}", move |req| get_key(&s2, req))
        .get("/v1/kv", move |req| list(&s3, req))
        .on_pipeline(PIPELINE, Method::Post, COMMIT_PATH, move |req: &Request| {
            commit::handle_one(&s4, req)
        })
        .on_pipeline(
            PIPELINE,
            Method::Get,
            "/v1/status/{request_id}",
            move |req: &Request| status(&s5, req),
        )
        .sse("/v1/watch", move |req: &Request, stream: EventStream| {
            s6.hub.subscribe(req, stream)
        })
        .pipeline_batch(PIPELINE, move |jobs: &mut [stoat::app::Job]| {
            commit::handle_batch(&s7, jobs)
        })
        .on_stop(move || hub.close_all())
}

fn version(store: &Store) -> Response {
    let v = store.read().version;
    json_bytes(200, format!("{{\"version\":{v}}}\n").into_bytes())
}

#[derive(Serialize)]
struct ItemOut<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<String>,
    version: u64,
}

impl<'a> ItemOut<'a> {
    fn new(key: &'a str, value: &'a [u8], version: u64) -> ItemOut<'a> {
        match std::str::from_utf8(value) {
            Ok(s) => ItemOut {
                key,
                value: Some(s),
                value_base64: None,
                version,
            },
            Err(_) => ItemOut {
                key,
                value: None,
                value_base64: Some(base64::engine::general_purpose::STANDARD.encode(value)),
                version,
            },
        }
    }
}

fn get_key(store: &Store, req: &Request<'_>) -> Response {
    let key = match decoded(req.param("key").unwrap_or("")) {
        Ok(k) => k,
        Err(m) => return error(400, "bad_request", &format!("key: {m}")),
    };
    let item = store.read().map.get(&*key).cloned();
    match item {
        Some(item) => {
            let mut out = Vec::with_capacity(key.len() + item.value.len() + 48);
            // Writing a derived Serialize into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &ItemOut::new(&key, &item.value, item.version));
            out.push(b'\n');
            json_bytes(200, out)
        }
        None => json(
            404,
            &serde_json::json!({"error": "not_found", "message": "no such key", "key": key}),
        ),
    }
}

#[derive(Serialize)]
struct ListOut<'a> {
    version: u64,
    items: Vec<ItemOut<'a>>,
    /// More keys with the prefix follow the last one listed.
    truncated: bool,
}

fn list(store: &Store, req: &Request<'_>) -> Response {
    let prefix = match decoded(req.query_param("prefix").unwrap_or("")) {
        Ok(p) => p,
        Err(m) => return error(400, "bad_request", &format!("prefix: {m}")),
    };
    let limit = match req.query_param("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => {
                let m = format!("limit must be a number from 1 to {MAX_LIST_LIMIT}, got {l:?}");
                return error(400, "bad_request", &m);
            }
        },
    };
    let state = store.read();
    let mut matching = state
        .map
        .range::<str, _>((Bound::Included(&*prefix), Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&*prefix));
    let items: Vec<ItemOut<'_>> = matching
        .by_ref()
        .take(limit)
        .map(|(k, i)| ItemOut::new(k, &i.value, i.version))
        .collect();
    let truncated = matching.next().is_some();
    let out = ListOut {
        version: state.version,
        items,
        truncated,
    };
    let mut body = serde_json::to_vec(&out).unwrap_or_default();
    drop(state);
    body.push(b'\n');
    json_bytes(200, body)
}

fn status(store: &Store, req: &Request<'_>) -> Response {
    let id = match decoded(req.param("request_id").unwrap_or("")) {
        Ok(id) => id,
        Err(m) => return error(400, "bad_request", &format!("request_id: {m}")),
    };
    match store.status(&id) {
        Some(o @ Outcome::Committed { .. }) | Some(o @ Outcome::Conflict { .. }) => {
            commit::outcome_response(&o).status(200)
        }
        None => json(
            404,
            &serde_json::json!({"status": "unknown", "request_id": id}),
        ),
    }
}

/// Percent-decodes a path segment or query value; it must be UTF-8.
fn decoded(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "not UTF-8 once percent-decoded".to_owned())
}

/// Adds `"value"` (UTF-8) or `"value_base64"` (other bytes) to `m`.
pub fn insert_value(m: &mut serde_json::Map<String, serde_json::Value>, v: &[u8]) {
    match std::str::from_utf8(v) {
        Ok(s) => m.insert("value".into(), s.into()),
        Err(_) => m.insert(
            "value_base64".into(),
            base64::engine::general_purpose::STANDARD.encode(v).into(),
        ),
    };
}

/// A JSON answer with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> Response {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    json_bytes(status, body)
}

fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    Response::json_bytes(body).status(status)
}

/// A JSON error answer: `{"error": code, "message": message}`.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({"error": code, "message": message}),
    )
}
