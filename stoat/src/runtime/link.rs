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
//!   A sender that found the backlog full registers a [`Waker`]
//!   ([`Link::poll_writable`]); the owner wakes it when it takes events out
//!   (room again) or closes the link. The check for room and the
//!   registration happen under the mail lock that the owner takes to drain,
//!   so a wakeup cannot be lost: either the sender sees the room, or the
//!   owner sees the waker.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Instant;

/// A late answer, opaque to the link: the service that suspended the
/// request gave it, and turns it into a response on the owning thread
/// (`Service::answer_late`). Opaque so that this module needs nothing of
/// the sink's (`service` imports `link`, never the other way round); one
/// box, as a boxed closure was.
pub type Answer = Box<dyn std::any::Any + Send>;

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
    /// Suspended requests that ended unanswered: the responder was dropped
    /// (500), or the client left before the answer was delivered. Each
    /// suspended request is counted once, in exactly one of `resumed`,
    /// `expired` and `abandoned` ([`Link::settle`]).
    pub abandoned: AtomicU64,
    /// `Full` answers to `EventStream` senders. Senders run on any thread,
    /// so these are shared atomics, touched only when a backlog is full.
    pub sse_full: AtomicU64,
    /// `Full` answers to WebSocket senders (`WsSender`).
    pub ws_full: AtomicU64,
}

/// Why something was not sent: the item comes back to the caller, to
/// retry later, send elsewhere or drop. Every `send` of the app layer
/// (`Responder`, `Job`, `EventStream`, `WsSender`, `WsContext`) returns
/// `Result<(), SendError<T>>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "the item was not sent; it is returned inside the error"]
pub enum SendError<T> {
    /// The bounded backlog is full: the client reads slower than items
    /// come. Nothing was queued; wait for room (`poll_writable`) and retry.
    Full(T),
    /// The client is gone, the request's deadline passed, it was answered
    /// already or the connection is closing: nothing more can be sent.
    Closed(T),
}

impl<T> SendError<T> {
    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(t) | SendError::Closed(t) => t,
        }
    }

    /// Whether the backlog was full (a retry may succeed).
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::Full(_))
    }

    /// Whether nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }

    /// The same error carrying `f` of the item.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> SendError<U> {
        match self {
            SendError::Full(t) => SendError::Full(f(t)),
            SendError::Closed(t) => SendError::Closed(f(t)),
        }
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SendError::Full(_) => "the send backlog is full",
            SendError::Closed(_) => "the connection is closed",
        })
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {}

/// One encoded stream event or frame: owned by this stream, or shared
/// (the same bytes queued to many streams, as one watch event to every
/// watcher, held once).
#[derive(Debug, Clone)]
pub(crate) enum Chunk {
    /// Bytes of this stream only.
    Owned(Vec<u8>),
    /// Bytes shared with other streams.
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(a) => a,
        }
    }
}

impl From<Vec<u8>> for Chunk {
    fn from(v: Vec<u8>) -> Chunk {
        Chunk::Owned(v)
    }
}

impl From<Arc<[u8]>> for Chunk {
    fn from(a: Arc<[u8]>) -> Chunk {
        Chunk::Shared(a)
    }
}

/// What the answering side left for the owner.
#[derive(Default)]
pub(crate) struct Mail {
    /// The response to a suspended request.
    pub answer: Option<Answer>,
    /// Encoded stream events (each becomes one chunk), oldest first.
    pub events: VecDeque<Chunk>,
    /// The stream's sender is gone: end the response.
    pub ended: bool,
    /// Senders waiting for room in the backlog (see [`Link::poll_writable`]).
    pub wakers: Vec<Waker>,
}

/// A stream's content coding (gzip, brotli: see `app/compress.rs`), run
/// by the owner over every byte of the stream, flushed each time so the
/// client can decode each event as it arrives.
pub(crate) trait StreamCoder: Send {
    /// `input` coded and flushed; the bytes are valid until the next call.
    fn code(&mut self, input: &[u8]) -> &[u8];
    /// The coding's last bytes (its trailer).
    fn finish(&mut self) -> &[u8];
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
    /// The request's end was counted ([`Link::settle`]).
    settled: AtomicBool,
    mail: Mutex<Mail>,
    /// Most stream events queued at once.
    backlog: usize,
    /// Bytes of the stream events queued (not yet taken by the owner).
    queued_bytes: AtomicUsize,
    /// When the request expires unanswered (not for streams).
    pub(crate) deadline: Option<Instant>,
    /// Owner: when the stream last sent something (for heartbeats).
    last_beat: Mutex<Instant>,
    /// Owner: the stream's content coding, applied to every byte the owner
    /// writes for it (events, heartbeats, the end). `None`: identity.
    coder: Mutex<Option<Box<dyn StreamCoder>>>,
    /// Whether `coder` was set: an identity stream's events skip its lock.
    has_coder: AtomicBool,
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
            settled: AtomicBool::new(false),
            mail: Mutex::new(Mail::default()),
            backlog,
            queued_bytes: AtomicUsize::new(0),
            deadline,
            last_beat: Mutex::new(Instant::now()),
            coder: Mutex::new(None),
            has_coder: AtomicBool::new(false),
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
        if !self.claim() {
            return false;
        }
        self.deliver(answer);
        true
    }

    /// Takes the right to answer: `false` if the request is gone or was
    /// answered already. After `true`, [`Link::deliver`] the answer.
    pub(crate) fn claim(&self) -> bool {
        !self.answered.swap(true, Ordering::AcqRel) && !self.is_closed()
    }

    /// Leaves the answer of a successful [`Link::claim`].
    pub(crate) fn deliver(self: &Arc<Self>, answer: Answer) {
        self.mail().answer = Some(answer);
        self.notify();
    }

    /// Whether an answer was given.
    pub(crate) fn is_answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// Bytes of stream events queued and not yet taken by the owner (the
    /// sender's measure of how far its client is behind).
    pub(crate) fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Queues one encoded stream event; a `Full` answer is counted in
    /// `full` (the SSE or the WebSocket counter of [`AsyncCounters`]).
    pub(crate) fn push_event<C: Into<Chunk>>(
        self: &Arc<Self>,
        event: C,
        full: fn(&AsyncCounters) -> &AtomicU64,
    ) -> Result<(), SendError<C>> {
        let pushed = self.push(event);
        if let Err(SendError::Full(_)) = &pushed {
            full(&self.counters).fetch_add(1, Ordering::Relaxed);
        }
        pushed
    }

    fn push<C: Into<Chunk>>(self: &Arc<Self>, event: C) -> Result<(), SendError<C>> {
        if self.is_closed() {
            return Err(SendError::Closed(event));
        }
        {
            let mut mail = self.mail();
            if mail.ended {
                return Err(SendError::Closed(event));
            }
            if mail.events.len() >= self.backlog {
                return Err(SendError::Full(event));
            }
            let event: Chunk = event.into();
            self.queued_bytes.fetch_add(event.len(), Ordering::AcqRel);
            mail.events.push_back(event);
        }
        self.notify();
        Ok(())
    }

    /// Whether a stream event can be queued now: `Ready` when the backlog
    /// has room or nothing more can be sent (a send then says `Closed`);
    /// otherwise `Pending`, and `waker` is woken once, on the owner's
    /// thread, when the owner takes events out or closes the link.
    pub(crate) fn poll_writable(&self, waker: &Waker) -> Poll<()> {
        self.poll_queued_at_most(usize::MAX, waker)
    }

    /// As [`Link::poll_writable`], and `Pending` also while more than
    /// `limit` bytes are queued: for a sender that bounds a stream's
    /// memory in bytes (the owner wakes the waker whenever it takes events).
    pub(crate) fn poll_queued_at_most(&self, limit: usize, waker: &Waker) -> Poll<()> {
        let mut mail = self.mail();
        // Under the mail lock: `take` and `close` drain under it too, then
        // wake every waker registered before (see the module doc). The
        // byte count changes only under that lock as well.
        if self.is_closed()
            || mail.ended
            || (mail.events.len() < self.backlog && self.queued_bytes() <= limit)
        {
            return Poll::Ready(());
        }
        if !mail.wakers.iter().any(|w| w.will_wake(waker)) {
            mail.wakers.push(waker.clone());
        }
        Poll::Pending
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
        let taken: usize = mail.events.iter().take(n).map(|e| e.len()).sum();
        self.queued_bytes.fetch_sub(taken, Ordering::AcqRel);
        into.events.extend(mail.events.drain(..n));
        into.ended = mail.ended && mail.events.is_empty();
        if n > 0 && !mail.wakers.is_empty() {
            let wakers = std::mem::take(&mut mail.wakers);
            // Woken outside the lock: a waker may send at once.
            drop(mail);
            wakers.into_iter().for_each(Waker::wake);
        }
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

    /// Sets the stream's content coding (before the stream's sender gets
    /// the link: every byte of the body goes through it).
    pub(crate) fn set_coder(&self, coder: Box<dyn StreamCoder>) {
        *self.coder.lock().unwrap_or_else(|e| e.into_inner()) = Some(coder);
        self.has_coder.store(true, Ordering::Release);
    }

    /// Owner: `bytes` of the stream as they go on the wire: coded and
    /// flushed when the stream has a coding (then handed to `emit`), else
    /// as they are.
    pub(crate) fn coded(&self, bytes: &[u8], emit: impl FnOnce(&[u8])) {
        if !self.has_coder.load(Ordering::Acquire) {
            return emit(bytes);
        }
        let mut coder = self.coder.lock().unwrap_or_else(|e| e.into_inner());
        match coder.as_mut() {
            Some(c) => emit(c.code(bytes)),
            None => emit(bytes),
        }
    }

    /// Owner: the coding's last bytes at the stream's end (nothing for
    /// identity); the coding is gone after it.
    pub(crate) fn finish_coding(&self, emit: impl FnOnce(&[u8])) {
        if !self.has_coder.load(Ordering::Acquire) {
            return;
        }
        let coder = self.coder.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut c) = coder {
            emit(c.finish());
        }
    }

    /// Owner: gives up on the request; answers from now on are discarded.
    /// Counts how a suspended request ended, once: the first side to
    /// settle it (the owner delivering the answer, its deadline, a dropped
    /// responder, the client leaving) picks the counter; later calls do
    /// nothing. Streams (no deadline) are not counted.
    pub(crate) fn settle(&self, counter: fn(&AsyncCounters) -> &AtomicU64) {
        if self.deadline.is_some() && !self.settled.swap(true, Ordering::AcqRel) {
            counter(&self.counters).fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut mail = self.mail();
        mail.answer = None;
        mail.events.clear();
        self.queued_bytes.store(0, Ordering::Release);
        let wakers = std::mem::take(&mut mail.wakers);
        drop(mail);
        // Senders waiting for room learn that nothing more can be sent.
        wakers.into_iter().for_each(Waker::wake);
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
