//! The link between a connection whose request left the network thread
//! (a pipeline job, a suspended request, an SSE stream) and the threads that
//! answer it.
//!
//! Contract:
//! - The connection's owner (the network thread driving it) creates the
//!   [`Link`] and keeps one `Arc` of it in the connection; the answering side
//!   (a `Responder`, an `EventStream`, a pipeline job) holds the others.
//! - The answering side never touches the socket: it leaves its answer (a
//!   response, stream events, the end of a stream) in the link and calls
//!   [`Link::notify`], which puts the link in the owner's mailbox at most
//!   once until the owner takes it ([`Link::take`]). The mailbox wakes the
//!   owner's epoll through an eventfd; see `mailbox.rs` for why that wakeup
//!   cannot be lost.
//! - The owner writes everything. When the connection closes, or the
//!   request's deadline passes first, the owner marks the link closed; from
//!   then on answers are discarded and [`Link::is_closed`] is true.
//! - Bounded: a link holds one answer, or at most `backlog` stream events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::runtime::service::ResponseSink;

/// A late answer: run by the owner with a sink for the waiting request.
pub type Answer = Box<dyn FnOnce(&mut ResponseSink<'_>) + Send>;

/// Where links go to wake their owner.
pub(crate) trait Owner: Send + Sync {
    /// Queues `link` for the owning thread and wakes it.
    fn post(&self, link: Arc<Link>);
}

/// Counters of requests that left the network thread.
#[derive(Debug, Default)]
pub struct AsyncCounters {
    /// Requests suspended (pipeline jobs and suspended handlers).
    pub suspended: AtomicU64,
    /// Suspended requests answered in time.
    pub resumed: AtomicU64,
    /// Suspended requests answered 503 at their deadline.
    pub expired: AtomicU64,
    /// Suspended requests whose responder was dropped unanswered (500).
    pub abandoned: AtomicU64,
}

/// Why a stream event was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The per-stream backlog is full: the client reads slower than events
    /// come. Nothing was queued.
    Full,
    /// The client is gone (or the stream ended): nothing more can be sent.
    Closed,
}

/// What the answering side left for the owner.
#[derive(Default)]
pub(crate) struct Mail {
    /// The response to a suspended request.
    pub answer: Option<Answer>,
    /// Encoded stream events (each becomes one chunk), oldest first.
    pub events: VecDeque<Vec<u8>>,
    /// The stream's sender is gone: end the response.
    pub ended: bool,
}

/// See the module doc.
pub struct Link {
    owner: Arc<dyn Owner>,
    /// The connection's key in its owner's table.
    key: u64,
    /// The owner gave up on the request (client gone, deadline passed).
    closed: AtomicBool,
    /// In the owner's mailbox, not yet taken.
    queued: AtomicBool,
    /// Whether an answer was given (or the link was abandoned).
    answered: AtomicBool,
    mail: Mutex<Mail>,
    /// Most stream events queued at once.
    backlog: usize,
    /// When the request expires unanswered (not for streams).
    pub(crate) deadline: Option<Instant>,
    /// Owner: when the stream last sent something (for heartbeats).
    last_beat: Mutex<Instant>,
    pub(crate) counters: Arc<AsyncCounters>,
    /// The route's index for the metrics (`u32::MAX`: none).
    pub(crate) route: u32,
}

impl Link {
    pub(crate) fn new(
        owner: Arc<dyn Owner>,
        key: u64,
        deadline: Option<Instant>,
        backlog: usize,
        counters: Arc<AsyncCounters>,
        route: u32,
    ) -> Arc<Link> {
        Arc::new(Link {
            owner,
            key,
            closed: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            mail: Mutex::new(Mail::default()),
            backlog,
            deadline,
            last_beat: Mutex::new(Instant::now()),
            counters,
            route,
        })
    }

    /// The connection's key in the owner's table.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Whether the owner gave up on this request: the client disconnected,
    /// or the deadline passed. Late answers are discarded.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn mail(&self) -> MutexGuard<'_, Mail> {
        self.mail.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves the response to a suspended request. `false`: the request is
    /// gone or was answered already (the answer is dropped).
    pub(crate) fn answer(self: &Arc<Self>, answer: Answer) -> bool {
        if self.answered.swap(true, Ordering::AcqRel) || self.is_closed() {
            return false;
        }
        self.mail().answer = Some(answer);
        self.notify();
        true
    }

    /// Whether an answer was given.
    pub(crate) fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// Queues one encoded stream event.
    pub(crate) fn push_event(self: &Arc<Self>, event: Vec<u8>) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        {
            let mut mail = self.mail();
            if mail.ended {
                return Err(SendError::Closed);
            }
            if mail.events.len() >= self.backlog {
                return Err(SendError::Full);
            }
            mail.events.push_back(event);
        }
        self.notify();
        Ok(())
    }

    /// Ends a stream: the owner sends the last chunk after queued events.
    pub(crate) fn end_stream(self: &Arc<Self>) {
        self.mail().ended = true;
        self.notify();
    }

    /// Puts the link in the owner's mailbox unless it is there already.
    fn notify(self: &Arc<Self>) {
        // Paired with `take`: the owner clears `queued` before it looks at
        // the mail, so mail left after that look finds `queued` false and
        // posts again; mail left before it is seen by that look.
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.owner.post(self.clone());
        }
    }

    /// Owner: takes what was left (events only up to `max_events`; the rest
    /// stay, counting against the backlog, until the socket takes more).
    pub(crate) fn take(&self, max_events: usize, into: &mut Mail) {
        self.queued.store(false, Ordering::SeqCst);
        let mut mail = self.mail();
        if let Some(a) = mail.answer.take() {
            into.answer = Some(a);
        }
        let n = mail.events.len().min(max_events);
        into.events.extend(mail.events.drain(..n));
        into.ended = mail.ended && mail.events.is_empty();
    }

    /// Owner: events are waiting beyond what was taken.
    pub(crate) fn has_events(&self) -> bool {
        !self.mail().events.is_empty()
    }

    /// Owner: when the stream last sent something.
    pub(crate) fn last_beat(&self) -> Instant {
        *self.last_beat.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Owner: the stream sent something at `now`.
    pub(crate) fn beat(&self, now: Instant) {
        *self.last_beat.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Owner: gives up on the request; answers from now on are discarded.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut mail = self.mail();
        mail.answer = None;
        mail.events.clear();
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("key", &self.key)
            .field("closed", &self.is_closed())
            .field("answered", &self.is_answered())
            .finish()
    }
}
