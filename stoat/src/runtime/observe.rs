//! What a network thread notes about its requests for the metrics and the
//! access log: the one place the connection code calls, so that with both
//! off a request costs a few never-taken branches.
//!
//! Contract:
//! - [`Observe::response`] and [`Observe::log_entry`] note a response as its handler's sink sent it
//!   (route, status, when its request began, its sizes; for the access log
//!   a record written in place in the thread's ring, with the method,
//!   target, `Referer` and `User-Agent` copied, since the request's bytes
//!   are gone later; see `access_log.rs`).
//! - [`Observe::finish`] runs once the connection's output of this drive
//!   was handed to the kernel: the drive's access-log records get the
//!   connection's client address (asked once per connection, see
//!   `Connection::log_remote`). In the `shared` model the drive took its
//!   number in the log's order while it held the connection, so one
//!   connection's lines keep their order even when its next drive runs on
//!   another thread.
//! - [`Observe::end_batch`] runs once the batch's output was all handed to
//!   the kernel, with the clock read the loop makes there anyway (for its
//!   `epoll_wait` timeout): the durations of every response noted in the
//!   batch are recorded, and the access log's records of the batch are
//!   published with that clock as their end. No clock read is added per
//!   request or per drive, for the metrics or the log.
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
use crate::runtime::access_log::{AccessLogSender, LogProducer};
use crate::runtime::link::AsyncCounters;
use crate::runtime::metrics::{CloseReason, Counter, Metrics, Recorder};

/// The server-wide side: what each thread's [`Observe`] is made from.
#[derive(Debug, Clone, Default)]
pub struct Observers {
    /// The counters' registry, when metrics are on.
    pub metrics: Option<Arc<Metrics>>,
    /// The access log, when it is on (each thread makes its ring).
    pub access_log: Option<AccessLogSender>,
}

/// One network thread's notes.
#[derive(Debug)]
pub(crate) struct Observe {
    rec: Option<Recorder>,
    log: Option<LogProducer>,
    on: bool,
    /// The batch's `Instant` (to tell its requests from late answers).
    tick_at: Option<Instant>,
    /// Responses of this batch to requests of this batch, as runs of one
    /// route and status class (`key`): with pipelining, a batch of
    /// responses to one route is one entry, and the histogram takes it
    /// in one add.
    runs: Vec<(u64, u32)>,
    /// Why the connection being driven closes, when it does.
    pub close_reason: Option<CloseReason>,
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
        let log = observers.access_log.as_ref().map(|s| s.producer());
        Observe {
            on: rec.is_some() || log.is_some(),
            rec,
            log,
            tick_at: None,
            runs: Vec::new(),
            close_reason: None,
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

    /// A response was sent to a request that began at `start`: the batch
    /// clock ([`Observe::response_now`]), or earlier (a late answer, a
    /// pipeline's or a suspended request's), whose duration is recorded
    /// at once against the clock now.
    #[inline]
    pub fn response(&mut self, route: u32, status: u16, start: Instant) {
        if self.tick_at == Some(start) {
            return self.response_now(route, status);
        }
        if let Some(rec) = &mut self.rec {
            let (route, status) = split(u64::from(route) << 16 | u64::from(status));
            rec.status(route, status);
            rec.duration(route, Instant::now().saturating_duration_since(start));
        }
    }

    /// A response was sent to a request that began at the batch clock
    /// (`ThreadCtx::now`, which `tick` gave here). Counted, with its
    /// duration, when the drive's output is written (`end_batch`).
    #[inline(always)]
    pub fn response_now(&mut self, route: u32, status: u16) {
        if self.rec.is_none() {
            // The access log alone: nothing to count.
            return;
        }
        let key = u64::from(route) << 16 | u64::from(status);
        match self.runs.last_mut() {
            Some((k, n)) if *k == key => *n += 1,
            _ => self.runs.push((key, 1)),
        }
    }

    /// The access-log record of the response just noted, written in
    /// place in this thread's ring (dropped and counted when it is full).
    #[allow(clippy::too_many_arguments)]
    #[inline]
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
        let Some(log) = &mut self.log else {
            return;
        };
        let (referer, user_agent) = fields(head, buf);
        log.record(
            start,
            status,
            route,
            (head.len + body_len) as u64,
            response_bytes as u64,
            buf,
            head.method_span,
            head.target,
            referer,
            user_agent,
        );
    }

    /// Whether this drive wrote access-log records (that want the
    /// client's address).
    #[inline(always)]
    pub fn has_entries(&self) -> bool {
        self.log.as_ref().is_some_and(LogProducer::in_drive)
    }

    /// The output of this drive was written: its access-log records get
    /// the client's address from `remote` (called only when there are
    /// records: the connection keeps the address, so it costs one
    /// `getpeername` per connection). No clock read, no queue operation:
    /// the records are published at the batch's end.
    #[inline]
    pub fn finish(&mut self, remote: impl FnOnce() -> Option<SocketAddr>) {
        if let Some(log) = &mut self.log {
            if log.in_drive() {
                log.end_drive(remote());
            }
        }
    }

    /// The batch's output was written, at `now` (the loop's own clock
    /// read): records the durations of the responses noted in it.
    #[inline]
    pub fn end_batch(&mut self, now: Instant) {
        if !self.runs.is_empty() {
            self.end_batch_slow(now);
        }
        if let Some(log) = &mut self.log {
            log.publish(now);
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
/// missing), in one pass over the parser's field spans: a name's bytes are
/// looked at only when its length is one of the two.
#[inline(always)]
fn fields<'a>(head: &RequestHead, buf: &'a [u8]) -> (&'a [u8], &'a [u8]) {
    let (mut referer, mut user_agent): (&[u8], &[u8]) = (&[], &[]);
    let (mut have_referer, mut have_user_agent) = (false, false);
    if !head.referer_or_user_agent {
        // The parser saw neither (most API clients and tools send neither).
        return (referer, user_agent);
    }
    for h in &head.headers {
        match h.name.end.wrapping_sub(h.name.start) {
            7 if !have_referer && h.name.of(buf).eq_ignore_ascii_case(b"referer") => {
                referer = h.value.of(buf);
                have_referer = true;
            }
            10 if !have_user_agent && h.name.of(buf).eq_ignore_ascii_case(b"user-agent") => {
                user_agent = h.value.of(buf);
                have_user_agent = true;
            }
            _ => continue,
        }
        if have_referer && have_user_agent {
            break;
        }
    }
    (referer, user_agent)
}

/// A connection's peer address: a syscall, made once per connection and
/// only with the access log on (the connection keeps the answer).
pub(crate) fn peer(fd: BorrowedFd<'_>) -> Option<SocketAddr> {
    let addr = rustix::net::getpeername(fd).ok()??;
    SocketAddr::try_from(addr).ok()
}
