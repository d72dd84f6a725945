//! `GET /v1/watch`: committed changes as server-sent events.
//!
//! Contract:
//! - Each committed version is one event: `event: commit`, `id:` the
//!   version, `data:` a JSON object `{"version":V,"operations":[...]}`.
//!   Events go out in version order, none skipped.
//! - A watcher starts after version `from`: the `Last-Event-ID` it sent
//!   (a reconnect), else `?from=V`, else the current version (only new
//!   changes). The [`Hub`] keeps the last `weasel.watch_history` versions
//!   (and at most `weasel.watch_history_bytes` of their values) in memory,
//!   rebuilt from the log at start-up, to replay from; each is encoded
//!   once, when a watcher first needs it. A `from`
//!   older than that, or ahead of the store, gets one `event: error` with a
//!   JSON reason, and the stream ends.
//! - One watch thread sends to every watcher (the commit thread only
//!   appends to the history). A send that finds the stream's backlog full
//!   leaves the watcher where it is, to be retried; memory stays bounded
//!   because the history is shared and bounded and a watcher holds only its
//!   position. A watcher whose next version has left the history is too
//!   slow: it gets a final `event: error` (`too_slow`) and is closed. If
//!   even that cannot be queued within [`FINAL_EVENT_GRACE`], the stream is
//!   closed without it.
//!
//! Why not close at the first `Full`: the per-stream backlog (Stoat's
//! `sse_backlog`) is small, and a resume replays up to the whole history,
//! so a healthy client would be cut off by a burst it can absorb.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use stoat::app::{Event, EventStream, Request, SendError};

use crate::store::Change;

/// How often a watcher whose backlog was full is retried.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(5);

/// How often closed watchers are looked for when nothing happens.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// How long a too-slow watcher's final event may wait for room.
pub const FINAL_EVENT_GRACE: Duration = Duration::from_secs(5);

/// One committed version: its changes (values shared with the state),
/// encoded once, by the watch thread, when a watcher first needs it.
#[derive(Debug)]
pub struct CommitEvent {
    /// The version.
    pub version: u64,
    changes: Vec<Change>,
    /// Bytes of keys and values (for the history's byte bound).
    bytes: usize,
    data: OnceLock<String>,
}

impl CommitEvent {
    /// The event for commit `version` with `changes`.
    pub fn new(version: u64, changes: Vec<Change>) -> CommitEvent {
        let bytes = changes
            .iter()
            .map(|c| c.key.len() + c.value.as_ref().map_or(0, |v| v.len()))
            .sum();
        CommitEvent {
            version,
            changes,
            bytes,
            data: OnceLock::new(),
        }
    }

    /// The event's data: `{"version":V,"operations":[{"op":"set","key":K,"value":V},...]}`.
    pub fn data(&self) -> &str {
        self.data.get_or_init(|| {
            let mut out = Vec::with_capacity(self.bytes + 64);
            out.extend_from_slice(b"{\"version\":");
            out.extend_from_slice(itoa::Buffer::new().format(self.version).as_bytes());
            out.extend_from_slice(b",\"operations\":[");
            for (i, c) in self.changes.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match &c.value {
                    Some(v) => {
                        out.extend_from_slice(b"{\"op\":\"set\",\"key\":");
                        crate::api::json_str(&mut out, &c.key);
                        out.push(b',');
                        crate::api::write_value(&mut out, v);
                    }
                    None => {
                        out.extend_from_slice(b"{\"op\":\"delete\",\"key\":");
                        crate::api::json_str(&mut out, &c.key);
                    }
                }
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
            // Built from &str pieces and ASCII only.
            String::from_utf8(out).unwrap_or_default()
        })
    }
}

/// The watch history and the watchers.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    changed: Condvar,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Debug)]
struct Inner {
    /// Consecutive versions, oldest first.
    history: VecDeque<CommitEvent>,
    /// Sum of the history's `bytes`.
    bytes: usize,
    /// The latest version published.
    head: u64,
    watchers: Vec<Watcher>,
    /// Something to send since the watch thread last looked.
    dirty: bool,
    /// The server is stopping: no new watchers.
    stopped: bool,
}

#[derive(Debug)]
struct Watcher {
    stream: EventStream,
    /// The next version to send.
    next: u64,
    /// The final event still to queue, and since when.
    closing: Option<(Event, Instant)>,
}

impl Hub {
    /// A hub at version `head`, keeping at most `capacity` versions and
    /// `max_bytes` of their keys and values (at least the latest version);
    /// its watch thread runs for the life of the process.
    pub fn new(capacity: usize, max_bytes: usize, head: u64) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                bytes: 0,
                head,
                watchers: Vec::new(),
                dirty: false,
                stopped: false,
            }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
            max_bytes,
        });
        let h = hub.clone();
        // A spawn failure leaves watchers unserved, not commits: report it.
        if let Err(e) = thread::Builder::new()
            .name("weasel-watch".into())
            .spawn(move || h.run())
        {
            tracing::error!(error = %e, "cannot start the watch thread");
        }
        hub
    }

    /// Appends committed versions (consecutive, after the head).
    pub fn publish(&self, events: Vec<CommitEvent>) {
        if events.is_empty() {
            return;
        }
        let mut g = self.lock();
        for e in events {
            g.head = e.version;
            g.bytes += e.bytes;
            g.history.push_back(e);
        }
        while g.history.len() > self.capacity || (g.bytes > self.max_bytes && g.history.len() > 1) {
            if let Some(old) = g.history.pop_front() {
                g.bytes -= old.bytes;
            }
        }
        g.dirty = true;
        drop(g);
        self.changed.notify_one();
    }

    /// Ends every stream (the server is stopping: a stream would hold the
    /// graceful drain until its deadline) and refuses new ones.
    pub fn close_all(&self) {
        let mut g = self.lock();
        g.stopped = true;
        g.watchers.clear();
    }

    /// Watchers connected.
    pub fn watchers(&self) -> usize {
        self.lock().watchers.len()
    }

    /// Starts a watcher on `stream` for `req` (runs on the network thread:
    /// decides where to start, then hands over to the watch thread).
    pub fn subscribe(&self, req: &Request<'_>, stream: EventStream) {
        let from = match start_from(req, &stream) {
            Ok(from) => from,
            Err(message) => {
                let _ = stream.send(error_event("bad_request", &message));
                return;
            }
        };
        let mut g = self.lock();
        if g.stopped {
            return; // Dropping the stream ends it.
        }
        let head = g.head;
        let from = from.unwrap_or(head);
        let oldest = g.history.front().map_or(head + 1, |e| e.version);
        if from > head {
            drop(g);
            let m = format!("from {from} is ahead of the store's version {head}");
            let _ = stream.send(error_event("ahead", &m));
            return;
        }
        if from + 1 < oldest {
            drop(g);
            let m = format!(
                "version {} is no longer retained; the oldest retained is {oldest} \
                 (read the current state with GET /v1/kv and watch from /v1/version)",
                from + 1
            );
            let _ = stream.send(error_event("too_old", &m));
            return;
        }
        // Tell the client at once that it is subscribed, and from where.
        let _ = stream.send(Event::comment(format!("watching after version {from}")));
        g.watchers.push(Watcher {
            stream,
            next: from + 1,
            closing: None,
        });
        g.dirty = true;
        drop(g);
        self.changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watch thread.
    fn run(&self) {
        let mut g = self.lock();
        loop {
            g.dirty = false;
            let stalled = g.send_all();
            let wait = if stalled {
                RETRY_INTERVAL
            } else {
                SWEEP_INTERVAL
            };
            if !g.dirty {
                g = match self.changed.wait_timeout(g, wait) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
        }
    }
}

impl Inner {
    /// Sends what each watcher can take; whether any is waiting for room.
    fn send_all(&mut self) -> bool {
        let Inner {
            history, watchers, ..
        } = self;
        let oldest = history.front().map(|e| e.version);
        let mut stalled = false;
        watchers.retain_mut(|w| {
            if w.stream.is_closed() {
                return false;
            }
            if w.closing.is_none() {
                match oldest {
                    Some(oldest) if w.next < oldest => {
                        let m = format!(
                            "this watcher fell behind: version {} is no longer retained; \
                             reconnect from a newer version",
                            w.next
                        );
                        w.closing = Some((error_event("too_slow", &m), Instant::now()));
                    }
                    Some(oldest) => {
                        let start = (w.next - oldest) as usize;
                        for e in history.iter().skip(start) {
                            let event = Event::data(e.data())
                                .event("commit")
                                .id(e.version.to_string());
                            match w.stream.send(event) {
                                Ok(()) => w.next = e.version + 1,
                                Err(SendError::Full) => {
                                    stalled = true;
                                    return true;
                                }
                                Err(_) => return false,
                            }
                        }
                        return true;
                    }
                    None => return true,
                }
            }
            let Some((event, since)) = &w.closing else {
                return true;
            };
            match w.stream.send(event.clone()) {
                Ok(()) => false, // Dropping the stream ends the response.
                Err(SendError::Full) if since.elapsed() < FINAL_EVENT_GRACE => {
                    stalled = true;
                    true
                }
                Err(_) => false,
            }
        });
        stalled
    }
}

/// `from`: `Last-Event-ID` (a reconnect) first, then `?from=`; `None`:
/// from now.
fn start_from(req: &Request<'_>, stream: &EventStream) -> Result<Option<u64>, String> {
    if let Some(id) = stream.last_event_id().filter(|s| !s.is_empty()) {
        return id
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("Last-Event-ID {id:?} is not a version number"));
    }
    match req.query_param("from") {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("from={v:?} is not a version number")),
    }
}

fn error_event(error: &str, message: &str) -> Event {
    let data = serde_json::json!({ "error": error, "message": message }).to_string();
    Event::data(data).event("error")
}
