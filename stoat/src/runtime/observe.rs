//! What a network thread notes about its requests for the metrics and the
//! access log: the one place the connection code calls, so that with both
//! off a request costs a few never-taken branches.
//!
//! Contract:
//! - [`Observe::response`] and [`Observe::log_entry`] note a response as its handler's sink sent it
//!   (route, status, when its request began, its sizes; for the access log
//!   a fixed-size [`Entry`] with the method, target, `Referer` and
//!   `User-Agent` copied, since the request's bytes are gone later).
//! - [`Observe::finish`] runs once the connection's output of this drive
//!   was handed to the kernel: its access-log entries get the connection's
//!   client address (asked once per connection, see `Connection::log_remote`)
//!   and are queued, with one clock read for their end (with the log on
//!   only). They go before the connection is handed back to its loop, so
//!   one connection's lines keep their order even when the `shared`
//!   model's next drive of it runs on another thread (holding them to the
//!   batch's end would lose that).
//! - [`Observe::end_batch`] runs once the batch's output was all handed to
//!   the kernel, with the clock read the loop makes there anyway (for its
//!   `epoll_wait` timeout): the durations of every response noted in the
//!   batch are recorded. No clock read is added per request or per drive
//!   for the metrics.
//! - Durations run from the batch clock of the read that completed the
//!   request (for a head and body that arrive in one read, as nearly all
//!   do, the first byte of the head) to the end of the batch whose writes
//!   handed over the response (a response the socket did not take whole:
//!   the rest is a slow reader's, and a stall past the write timeout is
//!   counted as a `write_stall` close). A deferred answer (pipeline,
//!   suspended handler) runs from its request's start (its deadline minus
//!   the request timeout).
//! - [`Observe::closed`] counts a close by the reason the connection code
//!   left in `close_reason` (reset at every drive), else `shutdown` while
//!   stopping, else `client_close`.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use crate::proto::RequestHead;
use crate::runtime::access_log::{AccessLogSender, Entry};
use crate::runtime::link::AsyncCounters;
use crate::runtime::metrics::{CloseReason, Counter, Metrics, Recorder};

/// The server-wide side: what each thread's [`Observe`] is made from.
#[derive(Debug, Clone, Default)]
pub struct Observers {
    /// The counters' registry, when metrics are on.
    pub metrics: Option<Arc<Metrics>>,
    /// The access log's queue, when the log is on.
    pub access_log: Option<AccessLogSender>,
}

/// One network thread's notes.
#[derive(Debug)]
pub(crate) struct Observe {
    rec: Option<Recorder>,
    log: Option<AccessLogSender>,
    on: bool,
    /// The batch's `Instant` (to tell its requests from late answers).
    tick_at: Option<Instant>,
    /// Responses of this batch to requests of this batch, as runs of one
    /// route and status class (`key`): with pipelining, a batch of
    /// responses to one route is one entry, and the histogram takes it
    /// in one add.
    runs: Vec<(u64, u32)>,
    /// Access-log entries of this drive (with their request's start).
    entries: Vec<(Entry, Instant)>,
    /// Why the connection being driven closes, when it does.
    pub close_reason: Option<CloseReason>,
    /// Instant and unix milliseconds at start (wall time without a clock read).
    base: (Instant, u64),
}

impl Observe {
    /// `streams`: the server's counters of requests and streams off the
    /// network threads (the registry reads stream senders' `Full` answers
    /// there).
    pub fn new(observers: &Observers, streams: &Arc<AsyncCounters>) -> Observe {
        if let Some(m) = &observers.metrics {
            m.attach(streams);
        }
        let rec = observers.metrics.as_ref().map(|m| m.recorder());
        let log = observers.access_log.clone();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Observe {
            on: rec.is_some() || log.is_some(),
            rec,
            log,
            tick_at: None,
            runs: Vec::new(),
            entries: Vec::new(),
            close_reason: None,
            base: (Instant::now(), unix_ms),
        }
    }

    /// Whether anything is observed (else every call here is skipped).
    #[inline(always)]
    pub fn on(&self) -> bool {
        self.on
    }

    /// Whether the access log wants entries (and so response sizes).
    #[inline(always)]
    pub fn logs(&self) -> bool {
        self.log.is_some()
    }

    /// The batch's clock was read (`now`): requests read in this batch
    /// start here.
    #[inline]
    pub fn tick(&mut self, now: Instant) {
        self.tick_at = Some(now);
    }

    /// `n` request bytes were read.
    #[inline]
    pub fn read(&mut self, n: usize) {
        if let Some(rec) = &mut self.rec {
            rec.add(Counter::RequestBytes, n as u64);
        }
    }

    /// `n` response bytes were handed to the kernel.
    #[inline]
    pub fn written(&mut self, n: usize) {
        if let Some(rec) = &mut self.rec {
            rec.add(Counter::ResponseBytes, n as u64);
        }
    }

    /// Adds one to `counter`.
    #[inline]
    pub fn count(&mut self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(&mut self, counter: Counter, n: u64) {
        if let Some(rec) = &mut self.rec {
            rec.add(counter, n);
        }
    }

    /// A response was sent to a request that began at `start` (the batch
    /// clock, for requests answered at once). Counted, with its duration,
    /// when the drive's output is written.
    #[inline(always)]
    pub fn response(&mut self, route: u32, status: u16, start: Instant) {
        let key = u64::from(route) << 16 | u64::from(status);
        if let Some((k, n)) = self.runs.last_mut() {
            if *k == key && self.tick_at == Some(start) {
                *n += 1;
                return;
            }
        }
        self.response_slow(key, start);
    }

    #[inline(never)]
    fn response_slow(&mut self, key: u64, start: Instant) {
        let Some(rec) = &mut self.rec else {
            return;
        };
        if self.tick_at != Some(start) {
            // A late answer (pipeline, suspended): its own start, recorded
            // now against the clock now.
            let (route, status) = split(key);
            rec.status(route, status);
            rec.duration(route, Instant::now().saturating_duration_since(start));
            return;
        }
        self.runs.push((key, 1));
    }

    /// The access-log entry of the response just noted.
    #[allow(clippy::too_many_arguments)]
    pub fn log_entry(
        &mut self,
        route: u32,
        status: u16,
        start: Instant,
        head: &RequestHead,
        buf: &[u8],
        body_len: usize,
        response_bytes: usize,
    ) {
        let (referer, user_agent) = fields(head, buf);
        self.entries.push((
            Entry::new(
                head.method_span.of(buf),
                head.target.of(buf),
                referer,
                user_agent,
            ),
            start,
        ));
        if let Some((entry, _)) = self.entries.last_mut() {
            entry.status = status;
            entry.route = route;
            entry.request_bytes = (head.len + body_len) as u64;
            entry.response_bytes = response_bytes as u64;
        }
    }

    /// Whether this drive left access-log entries to send.
    #[inline(always)]
    pub fn has_entries(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The output of this drive was written: its access-log entries are
    /// queued, in order, with the client's address from `remote` (called
    /// only when there are entries: the connection keeps the address, so
    /// it costs one `getpeername` per connection) and one clock read per
    /// drive that logged something. Nothing without the log.
    #[inline]
    pub fn finish(&mut self, remote: impl FnOnce() -> Option<SocketAddr>) {
        if !self.entries.is_empty() {
            self.send_entries(remote());
        }
    }

    #[cold]
    #[inline(never)]
    fn send_entries(&mut self, remote: Option<SocketAddr>) {
        let Some(log) = &self.log else {
            self.entries.clear();
            return;
        };
        let end = Instant::now();
        let unix_ms = self.base.1 + end.saturating_duration_since(self.base.0).as_millis() as u64;
        for (mut entry, start) in self.entries.drain(..) {
            entry.remote = remote;
            entry.unix_ms = unix_ms;
            entry.duration = end.saturating_duration_since(start);
            log.send(entry);
        }
    }

    /// The batch's output was written, at `now` (the loop's own clock
    /// read): records the durations of the responses noted in it.
    #[inline]
    pub fn end_batch(&mut self, now: Instant) {
        if !self.runs.is_empty() {
            self.end_batch_slow(now);
        }
    }

    #[inline(never)]
    fn end_batch_slow(&mut self, end: Instant) {
        if let (Some(rec), Some(start)) = (&mut self.rec, self.tick_at) {
            let d = end.saturating_duration_since(start);
            for &(key, n) in &self.runs {
                let (route, status) = split(key);
                rec.statuses(route, status, n);
                rec.durations(route, d, n);
            }
        }
        self.runs.clear();
    }

    /// A connection closed.
    #[inline]
    pub fn closed(&mut self, stopping: bool) {
        let reason = self.close_reason.take();
        if let Some(rec) = &mut self.rec {
            let reason = reason.unwrap_or(if stopping {
                CloseReason::Shutdown
            } else {
                CloseReason::ClientClose
            });
            rec.closed(reason);
        }
    }

    /// Forgets notes of a connection that is not closing (a new drive).
    #[inline(always)]
    pub fn begin(&mut self) {
        self.close_reason = None;
    }
}

/// A run's route index (`None`: matched no route) and status.
#[inline(always)]
fn split(key: u64) -> (Option<usize>, u16) {
    let route = (key >> 16) as u32;
    ((route != u32::MAX).then_some(route as usize), key as u16)
}

/// The first `Referer` and `User-Agent` values in `head` (empty when
/// missing), in one pass over the fields.
fn fields<'a>(head: &RequestHead, buf: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let (mut referer, mut user_agent) = (None, None);
    for h in &head.headers {
        let name = h.name.of(buf);
        // Only these two lengths can match: skip the compare otherwise.
        match name.len() {
            7 if referer.is_none() && name.eq_ignore_ascii_case(b"referer") => {
                referer = Some(h.value.of(buf));
            }
            10 if user_agent.is_none() && name.eq_ignore_ascii_case(b"user-agent") => {
                user_agent = Some(h.value.of(buf));
            }
            _ => continue,
        }
        if referer.is_some() && user_agent.is_some() {
            break;
        }
    }
    (referer.unwrap_or(&[]), user_agent.unwrap_or(&[]))
}

/// A connection's peer address: a syscall, made once per connection and
/// only with the access log on (the connection keeps the answer).
pub(crate) fn peer(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let addr = rustix::net::getpeername(fd).ok()??;
    SocketAddr::try_from(addr).ok()
}
