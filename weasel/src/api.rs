//! Weasel's HTTP API: the routes, and how answers are encoded.
//!
//! | route | runs | answer |
//! |---|---|---|
//! | `POST /v1/commit` | `commit_status` pipeline (group commit) | 200 committed, 409 conflict, 400, 415, 503 |
//! | `GET /v1/status/{request_id}` | inline (own lock, never behind an fsync) | 200 committed or conflict, 404 unknown |
//! | `GET /v1/version` | inline | 200 `{"version":V}` |
//! | `GET /v1/kv/{key}` | inline | 200 value and version, 404 |
//! | `GET /v1/kv?prefix=P&limit=N&start_after=K` | inline | 200 keys in order |
//! | `GET /v1/watch?from=V` | SSE, the watch thread | `commit` events |
//! | `POST /v1/admin/snapshot` | `commit_status` pipeline | 202 started, 409, 401, 404 (admin off) |
//! | `GET /healthz` | inline | 200 `{"status":"ok"}`; 503 `draining` once stopping (`http.drain_health_sec`), 503 after a failed log write |
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
use stoat::app::{Health, Request, Response, Server, StartError};

use crate::commit::{self, CommitRoute};
use crate::status::Outcome;
use crate::store::Store;
use crate::PIPELINE;

/// The commit route's path.
pub const COMMIT_PATH: &str = "/v1/commit";

/// `limit` of `GET /v1/kv` when none is given.
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Largest `limit` of `GET /v1/kv`.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Adds Weasel's routes and its batch handler to `server`. Errors if the
/// configuration has no `commit_status` pipeline.
pub fn routes(server: Server, store: Arc<Store>) -> Result<Server, StartError> {
    let hub = store.hub.clone();
    let s6 = store.clone();
    // Draining from the stop signal on (Stoat's `Health`, set by
    // `Server::run`), at `http.health_path` (default `/healthz`).
    let health = server.health_flag();
    let health_path = server.config().http.health_path.clone();
    let (s0, s1, s2, s3, s4, s5) = (
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store.clone(),
        store,
    );
    let mut server = server
        // The errors Stoat answers by itself (413, 408, 431, a framing
        // 400, 404, 405, a full ring's 503, ...) in the same JSON shape.
        .error_body("application/json", engine_error)
        .get(&health_path, move |_| healthz(&s0, &health))
        .get("/v1/version", move |_| version(&s1))
        .get("/v1/kv/{key}", move |req| get_key(&s2, req))
        .get("/v1/kv", move |req| list(&s3, req))
        // Inline: the outcome window has its own short lock, so a status
        // query never waits behind a batch's fsync (issue 17 item 4).
        .get("/v1/status/{request_id}", move |req| status(&s6, req))
        .sse("/v1/watch", move |req, stream| {
            s4.hub.subscribe(req, stream)
        })
        .on_stop(move || hub.close_all());
    server
        .pipeline(PIPELINE, move |jobs| commit::handle_batch(&s5, jobs))?
        .post(COMMIT_PATH, CommitRoute::Commit)
        .post("/v1/admin/snapshot", CommitRoute::AdminSnapshot);
    Ok(server)
}

/// 200 `{"status":"ok"}`; 503 `{"status":"draining"}` once a stop began
/// (a load balancer stops sending new work while this process finishes);
/// or 503 `{"status":"unhealthy","error":"storage","message":WHY}` after a
/// failed log write or fsync (see `store/log.rs`).
fn healthz(store: &Store, health: &Health) -> Response {
    if health.is_draining() {
        return json_bytes(503, b"{\"status\":\"draining\"}\n".to_vec());
    }
    match store.health() {
        None => json_bytes(200, b"{\"status\":\"ok\"}\n".to_vec()),
        Some(why) => json(
            503,
            &serde_json::json!({"status": "unhealthy", "error": "storage", "message": why}),
        ),
    }
}

/// `POST /v1/admin/snapshot`: starts a snapshot now (runs on the commit
/// pipeline, between batches). Off (404) unless `weasel.admin_token` is
/// set; then `Authorization: Bearer TOKEN` is required (else 401).
pub fn admin_snapshot(store: &Store, req: &Request<'_>) -> Response {
    let token = &store.config.admin_token;
    if token.is_empty() {
        return error(
            404,
            "not_found",
            "the admin routes are off (weasel.admin_token)",
        );
    }
    let given = req
        .header_str("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared whole, in constant time over the token's length.
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return error(401, "unauthorized", "missing or wrong bearer token");
    }
    let mut writer = store.writer();
    match store.maybe_snapshot(&mut writer, true) {
        Ok(v) => json(202, &serde_json::json!({"status": "started", "version": v})),
        Err(why) => error(409, "conflict", &why),
    }
}

fn version(store: &Store) -> Response {
    let v = store.read().version;
    json_bytes(200, format!("{{\"version\":{v}}}\n").into_bytes())
        .header("Cache-Control", "no-cache")
}

/// Appends `{"key":K,"value":V,"version":N}` (or `"value_base64"` when
/// the value is not UTF-8). Written by hand: it is the inline read's whole
/// cost beyond the HTTP turn, and serde's generic map serializer took more
/// instructions than the request's parsing (callgrind, weasel/bench).
fn write_item(out: &mut Vec<u8>, key: &str, value: &[u8], version: u64) {
    out.extend_from_slice(b"{\"key\":");
    json_str(out, key);
    out.push(b',');
    write_value(out, value);
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(itoa::Buffer::new().format(version).as_bytes());
    out.push(b'}');
}

/// Appends `"value":"..."` (UTF-8) or `"value_base64":"..."` (other bytes).
pub(crate) fn write_value(out: &mut Vec<u8>, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(v) => {
            out.extend_from_slice(b"\"value\":");
            json_str(out, v);
        }
        Err(_) => {
            out.extend_from_slice(b"\"value_base64\":\"");
            let b64 = base64::engine::general_purpose::STANDARD.encode(value);
            out.extend_from_slice(b64.as_bytes());
            out.push(b'"');
        }
    }
}

/// Appends `s` as a JSON string.
pub(crate) fn json_str(out: &mut Vec<u8>, s: &str) {
    // RFC 8259 §7: only '"', '\\' and control characters need escaping.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
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
            // The ETag is the key's version: it changes exactly when the
            // value does (RFC 9110 §8.8.3), so a client holding it can ask
            // with If-None-Match and get 304 without the value.
            let etag = format!("\"{}\"", item.version);
            if req
                .header_str("if-none-match")
                .is_some_and(|h| etag_matches(h, item.version))
            {
                return Response::new(304)
                    .header("ETag", etag)
                    .header("Cache-Control", "no-cache");
            }
            let mut out = Vec::with_capacity(key.len() + item.value.len() + 48);
            write_item(&mut out, &key, &item.value, item.version);
            out.push(b'\n');
            json_bytes(200, out)
                .header("ETag", etag)
                .header("Cache-Control", "no-cache")
        }
        None => json(
            404,
            &serde_json::json!({"error": "not_found", "message": "no such key", "key": key}),
        ),
    }
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
    let after = match req.query_param("start_after").map(decoded) {
        None => None,
        Some(Ok(a)) => Some(a),
        Some(Err(m)) => return error(400, "bad_request", &format!("start_after: {m}")),
    };
    // From the prefix, or just past `start_after` when that is later.
    let from = match &after {
        Some(a) if **a >= *prefix => Bound::Excluded(&**a),
        _ => Bound::Included(&*prefix),
    };
    let state = store.read();
    let mut body = Vec::with_capacity(64 + limit * 64);
    body.extend_from_slice(b"{\"version\":");
    body.extend_from_slice(itoa::Buffer::new().format(state.version).as_bytes());
    body.extend_from_slice(b",\"items\":[");
    let mut matching = state
        .map
        .range::<str, _>((from, Bound::Unbounded))
        .take_while(|(k, _)| k.starts_with(&*prefix));
    // At most `limit` items and about `max_list_bytes` (at least one
    // item): a page never materializes more than that, whatever the values.
    let max_bytes = store.config.max_list_bytes;
    let mut full = false;
    for (i, (k, item)) in matching.by_ref().take(limit).enumerate() {
        if i > 0 {
            if body.len() + k.len() + item.value.len() > max_bytes {
                full = true;
                break;
            }
            body.push(b',');
        }
        write_item(&mut body, k, &item.value, item.version);
    }
    let truncated = full || matching.next().is_some();
    drop(state);
    body.extend_from_slice(if truncated {
        b"],\"truncated\":true}\n"
    } else {
        b"],\"truncated\":false}\n"
    });
    if body.len() >= 1 << 20 {
        store.hub.note_burst(); // Give its memory back once written.
    }
    json_bytes(200, body).header("Cache-Control", "no-cache")
}

/// `GET /v1/status/{request_id}`: the outcome of a commit by request id.
pub fn status(store: &Store, req: &Request<'_>) -> Response {
    let id = match decoded(req.param("request_id").unwrap_or("")) {
        Ok(id) => id,
        Err(m) => return error(400, "bad_request", &format!("request_id: {m}")),
    };
    match store.status(&id) {
        Some(o @ Outcome::Committed { .. }) | Some(o @ Outcome::Conflict { .. }) => {
            commit::outcome_response(&o).with_status(200)
        }
        None => json(
            404,
            &serde_json::json!({"status": "unknown", "request_id": id}),
        ),
    }
}

/// Whether an `If-None-Match` field matches the entity tag `"version"`:
/// `*`, or a comma-separated list of entity tags compared weakly (RFC 9110
/// §13.1.2: `W/"7"` matches `"7"`).
fn etag_matches(field: &str, version: u64) -> bool {
    let field = field.trim();
    if field == "*" {
        return true;
    }
    let mut buf = itoa::Buffer::new();
    let v = buf.format(version);
    field.split(',').any(|tag| {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        tag.strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .is_some_and(|t| t == v)
    })
}

/// Percent-decodes a path segment or query value; it must be UTF-8.
fn decoded(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    if !raw.as_bytes().contains(&b'%') {
        return Ok(std::borrow::Cow::Borrowed(raw)); // The common case: nothing to decode.
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| "not UTF-8 once percent-decoded".to_owned())
}

/// A JSON answer with `status`.
pub fn json(status: u16, value: &serde_json::Value) -> Response {
    let mut body = value.to_string().into_bytes();
    body.push(b'\n');
    json_bytes(status, body)
}

fn json_bytes(status: u16, body: Vec<u8>) -> Response {
    Response::json_bytes(body).with_status(status)
}

/// The body of an error Stoat answers by itself: `{"error": CODE,
/// "message": TEXT}` like Weasel's own errors, CODE named after the status.
pub fn engine_error(status: u16, message: &str) -> Vec<u8> {
    let code = match status {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "too_large",
        414 => "uri_too_long",
        431 => "headers_too_large",
        500 => "internal",
        501 => "not_implemented",
        503 => "unavailable",
        505 => "version_not_supported",
        _ => "error",
    };
    let mut body = serde_json::json!({"error": code, "message": message})
        .to_string()
        .into_bytes();
    body.push(b'\n');
    body
}

/// A JSON error answer: `{"error": code, "message": message}`.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &serde_json::json!({"error": code, "message": message}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_valid_json_whatever_the_bytes() {
        let cases: [(&str, &[u8]); 4] = [
            ("a", b"x"),
            ("q\"uo\\te", b"line\nbreak\t\x01"),
            ("\u{e9}t\u{e9}", "\u{1f600}".as_bytes()),
            ("bin", &[0, 159, 255]),
        ];
        for (key, value) in cases {
            let mut out = Vec::new();
            write_item(&mut out, key, value, 42);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["key"], key);
            assert_eq!(v["version"], 42);
            match std::str::from_utf8(value) {
                Ok(s) => assert_eq!(v["value"], s),
                Err(_) => assert_eq!(v["value_base64"], "AJ//"),
            }
        }
    }
}
