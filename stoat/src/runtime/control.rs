//! What every thread of one server shares to be stopped and counted
//! ([`Control`]), and the timing constants both threading models use. Its
//! own module so that `server` (which starts the models) and the models
//! (which run under it) import it, not each other.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::runtime::connection::{Shared, ThreadCtx};
use crate::sys::EventFd;

/// How often deadlines are checked: a coarse sweep over the table costs
/// nothing per request (see docs/ARCHITECTURE.md, "Time").
pub(crate) const SWEEP: Duration = Duration::from_millis(250);

/// Buffers freed in one trim after which freed heap memory is handed back
/// to the kernel (`malloc_trim`): a burst's worth, not a steady trickle.
pub(crate) const RELEASE_AFTER: usize = 16;

/// Longest pause of accepting after EMFILE/ENFILE: accepting resumes when a
/// connection closes (an fd is free), or after this long at the latest.
pub(crate) const FD_BACKOFF: Duration = Duration::from_millis(100);

/// At a sweep: read buffers unused for a whole interval go back to the
/// allocator, and when that freed a burst's worth (or the connection table
/// shrank), freed heap memory goes back to the kernel. Both models call
/// this, so memory is given back the same way in each.
pub(crate) fn give_back_memory(shared: &Shared, ctx: &mut ThreadCtx, table_shrank: bool) {
    let freed = shared.pool.trim(&mut ctx.local);
    if freed >= RELEASE_AFTER || table_shrank {
        crate::sys::release_free_heap();
    }
}

/// State every thread of one server shares for control and counting.
pub(crate) struct Control {
    stopping: Arc<AtomicBool>,
    drain_deadline: Mutex<Option<Instant>>,
    drain_timeout: Duration,
    pub connections: AtomicUsize,
    pub accepted: AtomicU64,
    /// Accept calls that failed for the fd limit (EMFILE/ENFILE).
    pub fd_limit_errors: AtomicU64,
    /// Pauses of accepting after such a failure.
    pub fd_limit_pauses: AtomicU64,
    pub requests: AtomicU64,
    /// Connections waiting for a read buffer now.
    pub waiting: AtomicUsize,
    /// Wakes the network threads (one per thread in `per_core`, one shared).
    pub wakers: Vec<Arc<EventFd>>,
    /// Wakes the accept threads (`shared` model) from their `poll` for
    /// good: notified at the stop and never drained. (Not `shutdown(2)` of
    /// the listener: an inherited one is shared with another process.)
    pub accept_waker: Option<Arc<EventFd>>,
}

impl Control {
    /// The stop flag itself, for threads to read mid-batch.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The instant after which remaining connections are closed.
    pub fn drain_deadline(&self) -> Option<Instant> {
        *self
            .drain_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub fn begin_stop(&self) {
        {
            let mut d = self
                .drain_deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if d.is_none() {
                *d = Some(Instant::now() + self.drain_timeout);
            }
        }
        self.stopping.store(true, Ordering::Release);
        if let Some(waker) = &self.accept_waker {
            let _ = waker.notify();
        }
        for w in &self.wakers {
            let _ = w.notify();
        }
    }

    /// A connection closed.
    pub fn closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// An accept failed for the fd limit (EMFILE/ENFILE): counted, and
    /// reported once per accepting thread (`logged`); the caller pauses
    /// accepting until a connection closes or [`FD_BACKOFF`] passes.
    pub fn fd_limit_hit(&self, e: &std::io::Error, logged: &mut bool) {
        self.fd_limit_errors.fetch_add(1, Ordering::Relaxed);
        if !*logged {
            tracing::warn!(error = %e, "accept: out of file descriptors; pausing accepts until fds are freed");
            // Kept beside the log event: tests/limits.rs reads this line.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "stoat: accept: {e}; pausing accepts until fds are freed"
            );
            *logged = true;
        }
    }

    /// A connection was accepted.
    pub fn opened(&self) {
        self.connections.fetch_add(1, Ordering::AcqRel);
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
}

impl Control {
    pub fn new(
        config: &Config,
        wakers: Vec<Arc<EventFd>>,
        accept_waker: Option<Arc<EventFd>>,
    ) -> Control {
        Control {
            stopping: Arc::new(AtomicBool::new(false)),
            drain_deadline: Mutex::new(None),
            drain_timeout: config.http.drain_timeout(),
            connections: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            fd_limit_errors: AtomicU64::new(0),
            fd_limit_pauses: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            wakers,
            accept_waker,
        }
    }
}
