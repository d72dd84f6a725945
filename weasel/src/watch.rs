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
//!   appends to the history). Each event is encoded once, whole (`id`,
//!   `event`, `data`), into one shared buffer (`Arc<[u8]>`) that is queued
//!   to every watcher: N watchers of one event hold its bytes once.
//! - Memory is bounded per server in bytes: the history by
//!   `weasel.watch_history_bytes` (keys, values and encodings), and what
//!   is queued to watchers but not yet taken by their connections by
//!   `weasel.watch_buffer_bytes`, split evenly between the watchers (a
//!   watcher's share). A watcher whose queue would go over its share is
//!   left where it is and registers the watch thread's waker with its
//!   stream (`EventStream::poll_queued_at_most`; `poll_writable` when the
//!   stream's event backlog is full): the network thread wakes it when the
//!   client has taken events, and it retries then (no polling on a timer); a watcher whose next version has
//!   left the history is too slow: it gets a final `event: error`
//!   (`too_slow`) and is closed. If even that cannot be queued within
//!   [`FINAL_EVENT_GRACE`], the stream is closed without it. Besides, a
//!   connection holds at most one copy of what it took from its queue in
//!   its output buffer (Stoat takes a stream's queued events only once its
//!   output is written). So watch memory stays within about
//!   `watch_history_bytes + 2 * watch_buffer_bytes` plus one event per
//!   watcher, whatever the clients do.
//! - After freeing [`TRIM_AFTER`] bytes (evicted events, closed
//!   watchers), the watch thread gives free heap pages back to the system
//!   (`malloc_trim`).
//!
//! Why not close at the first `Full`: the per-stream backlog (Stoat's
//! `sse_backlog`) is small, and a resume replays up to the whole history,
//! so a healthy client would be cut off by a burst it can absorb.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use stoat::app::{EventStream, Request, SendError, SseEvent};

use crate::config::StoreConfig;
use crate::store::Change;

/// How often closed watchers are looked for when nothing happens.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);

/// Bytes freed by the watch thread after which it trims the heap.
pub const TRIM_AFTER: usize = 8 << 20;

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
    encoded: OnceLock<Arc<[u8]>>,
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
            encoded: OnceLock::new(),
        }
    }

    /// Bytes counted against the history's bound: keys and values, and
    /// the encoding once built.
    fn size(&self) -> usize {
        self.bytes + self.encoded.get().map_or(0, |e| e.len())
    }

    /// The whole encoded SSE event, built once and shared by every
    /// watcher it is queued to (`id: V`, `event: commit`, one `data:` line
    /// holding `{"version":V,"operations":[{"op":"set","key":K,"value":V},...]}`:
    /// JSON strings escape line ends, so the data is one line); and
    /// whether this call built it.
    fn encoded(&self) -> (&Arc<[u8]>, bool) {
        let mut fresh = false;
        let enc = self.encoded.get_or_init(|| {
            fresh = true;
            let v = itoa::Buffer::new().format(self.version).to_owned();
            let mut out = Vec::with_capacity(self.bytes + 64);
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\nevent: commit\ndata: {\"version\":");
            out.extend_from_slice(v.as_bytes());
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
            out.extend_from_slice(b"]}\n\n");
            Arc::from(out)
        });
        (enc, fresh)
    }
}

/// The watch history and the watchers.
#[derive(Debug)]
pub struct Hub {
    inner: Mutex<Inner>,
    changed: Condvar,
    capacity: usize,
    max_bytes: usize,
    /// `weasel.watch_buffer_bytes`: bytes queued to all watchers at once.
    buffer_bytes: usize,
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
    /// Bytes freed (evicted events, closed watchers' queues) since the
    /// heap was last trimmed.
    freed: usize,
}

#[derive(Debug)]
struct Watcher {
    stream: EventStream,
    /// The next version to send.
    next: u64,
    /// The final event still to queue, and since when.
    closing: Option<(SseEvent, Instant)>,
}

impl Hub {
    /// A hub at version `head`, keeping at most `config.watch_history`
    /// versions and `config.watch_history_bytes` of their keys, values and
    /// encodings (at least the latest version), and queueing at most about
    /// `config.watch_buffer_bytes` to its watchers; its watch thread runs
    /// for the life of the process.
    pub fn new(config: &StoreConfig, head: u64) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            inner: Mutex::new(Inner {
                history: VecDeque::new(),
                bytes: 0,
                head,
                watchers: Vec::new(),
                dirty: false,
                stopped: false,
                freed: 0,
            }),
            changed: Condvar::new(),
            capacity: config.watch_history.max(1),
            max_bytes: config.watch_history_bytes,
            buffer_bytes: config.watch_buffer_bytes.max(1),
        });
        let h = hub.clone();
        // A spawn failure leaves watchers unserved, not commits: report it.
        if let Err(e) = thread::Builder::new()
            .name("weasel-watch".into())
            .spawn(move || h.run())
        {
            crate::say!("weasel: cannot start the watch thread: {e}");
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
                let size = old.size();
                g.bytes -= size;
                g.freed += size;
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

    /// Bytes of events queued to watchers and not yet taken by their
    /// connections (what `weasel.watch_buffer_bytes` bounds).
    pub fn queued_bytes(&self) -> usize {
        self.lock()
            .watchers
            .iter()
            .map(|w| w.stream.queued_bytes())
            .sum()
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
        let _ = stream.send(SseEvent::comment(format!("watching after version {from}")));
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
    fn run(self: Arc<Self>) {
        let waker = Waker::from(Arc::new(Kick(Arc::downgrade(&self))));
        let mut g = self.lock();
        loop {
            g.dirty = false;
            g.send_all(self.buffer_bytes, &waker);
            if g.freed >= TRIM_AFTER {
                // Large events and queues went back to the allocator; give
                // the pages back to the system (issue: memory after a
                // burst). Rare: once per TRIM_AFTER bytes freed.
                g.freed = 0;
                stoat::sys::release_free_heap();
            }
            if !g.dirty {
                g = match self.changed.wait_timeout(g, SWEEP_INTERVAL) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
        }
    }
}

/// Wakes the watch thread when a full stream has room again (called on a
/// network thread, outside the stream's own lock).
struct Kick(Weak<Hub>);

impl Wake for Kick {
    fn wake(self: Arc<Self>) {
        if let Some(hub) = self.0.upgrade() {
            // Under the hub's lock: the watch thread either has not yet
            // checked `dirty` (and sees it) or is waiting (and is notified).
            hub.lock().dirty = true;
            hub.changed.notify_one();
        }
    }
}

impl Inner {
    /// Sends what each watcher can take. A watcher that cannot take more
    /// registers `waker` for when it can; if it can already, `dirty` is set
    /// so that the watch thread goes round again at once.
    ///
    /// A watcher's share is `buffer / watchers`: the next event is queued
    /// only while the bytes its connection has not yet taken stay within
    /// the share (an event larger than the share goes alone, to an empty
    /// queue). The event's bytes are shared (one `Arc` for every watcher),
    /// so a share costs memory only for events no longer in the history.
    fn send_all(&mut self, buffer: usize, waker: &Waker) {
        let Inner {
            history,
            watchers,
            bytes,
            freed,
            dirty,
            ..
        } = self;
        let oldest = history.front().map(|e| e.version);
        let share = buffer / watchers.len().max(1);
        let mut again = false;
        let mut stalled = |ready: Poll<()>| {
            if ready.is_ready() {
                again = true;
            }
        };
        watchers.retain_mut(|w| {
            if w.stream.is_closed() {
                // Its connection freed what it held (up to about a share).
                *freed += share;
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
                            let (encoded, fresh) = e.encoded();
                            if fresh {
                                *bytes += encoded.len();
                            }
                            let queued = w.stream.queued_bytes();
                            if queued > 0 && queued + encoded.len() > share {
                                // Over its share: wait until it has taken
                                // enough for this event.
                                let limit = share.saturating_sub(encoded.len());
                                stalled(w.stream.poll_queued_at_most(limit, waker));
                                return true;
                            }
                            match w.stream.send_shared(encoded.clone()) {
                                Ok(()) => w.next = e.version + 1,
                                Err(SendError::Full(_)) => {
                                    stalled(w.stream.poll_writable(waker));
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
            let Some((event, since)) = w.closing.take() else {
                return true;
            };
            match w.stream.send(event) {
                Ok(()) => false, // Dropping the stream ends the response.
                Err(SendError::Full(event)) if since.elapsed() < FINAL_EVENT_GRACE => {
                    // The event comes back: kept for the retry.
                    w.closing = Some((event, since));
                    stalled(w.stream.poll_writable(waker));
                    true
                }
                Err(_) => false,
            }
        });
        *dirty |= again;
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

fn error_event(error: &str, message: &str) -> SseEvent {
    let data = serde_json::json!({ "error": error, "message": message }).to_string();
    SseEvent::data(data).event("error")
}
