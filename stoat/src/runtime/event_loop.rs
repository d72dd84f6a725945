//! The network loop, written once for both threading models.
//!
//! Contract: a network thread waits on its epoll until the next sweep at
//! most; for each event it drives the connection the event names, delivers
//! the links posted to its mailbox, then retries connections waiting for a
//! read buffer (first come, first served); every [`SWEEP`] it runs the
//! connections' deadlines and gives memory back; once the server stops it
//! closes what may be closed and ends when its share of connections is gone
//! or the drain deadline passed.
//!
//! What differs between the models is behind [`Model`], and only that: how
//! an event's token finds its connection and who owns it while it runs (a
//! thread-local slab in `per_core`; the shared slot table, a slot's mutex
//! and its generation in `shared`, with a claim that leaves an event that
//! comes while another thread drives its connection to that thread), how a
//! connection is re-armed after an event (never: both are edge-triggered,
//! write interest added once), and where
//! connections are accepted (in the loop, or on accept threads). The wait
//! queue, the close path and the fd-limit report are here, once.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::runtime::connection::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::control::{give_back_memory, Control, SWEEP};
use crate::runtime::link::{Link, Owner};
use crate::runtime::wake::LoopMailbox;
use crate::sys::{Epoll, EventFd, Events, Interest};

/// The token of a thread's eventfd (wakes it for a stop).
pub(crate) const WAKER: u64 = u64::MAX;
/// The token of the mailbox's eventfd (links with something for a connection).
pub(crate) const MAILBOX: u64 = u64::MAX - 1;
/// The token of a loop's own listener (models that accept in the loop).
pub(crate) const LISTENER: u64 = u64::MAX - 2;

/// A wait shorter than this found its events ready: it did not block (an
/// `epoll_wait` with events ready takes a few microseconds; one that
/// sleeps until the next client's packet, tens at the least). Only a
/// hint: `per_core` grows its accept burst on it (a backlog), and tells by
/// it whether a connection registered unread had its bytes there already
/// (`per_core::EarlyRead`); a wrong guess costs one `accept4` or one
/// `read`.
pub(crate) const AT_ONCE: std::time::Duration = std::time::Duration::from_micros(20);

/// What a connection table needs beside its connections, the same in both
/// models: owned by the loop in `per_core`, by the one `Core` every network
/// thread shares in `shared`.
pub(crate) struct Common {
    pub shared: Arc<Shared>,
    pub control: Arc<Control>,
    pub epoll: Epoll,
    pub waker: Arc<EventFd>,
    /// Links of the table's connections with something for them.
    pub mailbox: Arc<LoopMailbox>,
    /// Connections that could not get a buffer, in arrival order.
    waiting: WaitQueue,
}

/// How one threading model finds, owns and re-arms its connections (see
/// the module doc). `act` and `each` settle what the connection asked for
/// (`Next`) while they still own it.
pub(crate) trait Model {
    /// Most events taken from one `epoll_wait`.
    const EVENTS: usize;

    fn common(&self) -> &Common;

    /// Finds the connection `token` names and, owning it, runs `f` on it and
    /// settles what `f` returns: `Keep` re-arms it where the model must,
    /// `WaitBuffer` parks it ([`Common::park`]), `Close` closes it
    /// ([`Common::close`]). A stale token (its connection closed) does
    /// nothing.
    fn act<F>(&mut self, token: u64, ctx: &mut ThreadCtx, f: F)
    where
        F: FnOnce(&mut Connection, &Shared, &mut ThreadCtx) -> Next;

    /// [`Model::act`] for an epoll event of the connection (`peer_closed`:
    /// it said RDHUP or HUP). A model where an event may come while
    /// another thread drives the connection (`shared`) does not wait for
    /// it: it leaves the event to that thread, which drives once more
    /// before it lets go.
    #[inline]
    fn event<F>(&mut self, token: u64, _peer_closed: bool, ctx: &mut ThreadCtx, f: F)
    where
        F: FnOnce(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        self.act(token, ctx, f);
    }

    /// Runs `f` on every connection of this thread's share that no other
    /// thread is driving (the sweep, the stop) and settles what it returns;
    /// a `Keep` without write interest leaves the connection armed as it is.
    fn each<F>(&mut self, ctx: &mut ThreadCtx, f: F)
    where
        F: FnMut(&mut Connection, &Shared, &mut ThreadCtx) -> Next;

    /// The listener's event (models that accept in the loop). `turn`
    /// counts the loop's waits.
    fn accept(&mut self, _ctx: &mut ThreadCtx, _turn: u64) {}

    /// A wait returned; it began at `began` (the clock read just before
    /// it; `ctx.now` is the one just after): a model that wants to know
    /// whether it blocked (see [`AT_ONCE`]) keeps it.
    fn waited(&mut self, _began: Instant) {}

    /// The mailbox was drained, before its links are delivered.
    fn mailbox_drained(&self) {}

    /// After a sweep: whether the table shrank (its memory may go back).
    fn after_sweep(&mut self, ctx: &mut ThreadCtx) -> bool;

    /// The stop began: accept nothing more.
    fn stop_accepting(&mut self) {}

    /// This thread's share of the connections is gone.
    fn drained(&self) -> bool;
}

/// Runs one network thread until the server stops and its share of
/// connections is gone.
pub(crate) fn run<M: Model>(m: &mut M) {
    let shared = m.common().shared.clone();
    let control = m.common().control.clone();
    let owner: Arc<dyn Owner> = m.common().mailbox.clone();
    let mut ctx = ThreadCtx::new(&shared, control.stop_flag(), owner);
    let mut events = Events::with_capacity(M::EVENTS);
    let mut mail: Vec<Arc<Link>> = Vec::new();
    let mut next_sweep = Instant::now() + SWEEP;
    let mut turn: u64 = 0;
    loop {
        let before = ctx.end_batch();
        let wait = next_sweep.saturating_duration_since(before);
        if m.common().epoll.wait(&mut events, Some(wait)).is_err() {
            break;
        }
        ctx.tick();
        turn += 1;
        m.waited(before);
        let before = ctx.requests;
        for ev in events.iter() {
            match ev.token() {
                WAKER => {
                    // Level-triggered; in `shared` one thread drains it and
                    // the others notice the stop at their next sweep.
                    let _ = m.common().waker.drain();
                }
                MAILBOX => deliver(m, &mut mail, &mut ctx),
                LISTENER => m.accept(&mut ctx, turn),
                token => {
                    let peer_closed = ev.is_rdhup() || ev.is_hup();
                    let only_writable = !(ev.is_readable() || peer_closed || ev.is_error());
                    m.event(token, peer_closed, &mut ctx, |conn, shared, ctx| {
                        // An edge that says only "writable" to a connection
                        // with nothing to write and nothing read has nothing
                        // to act on (a socket registered for `OUT` reports it
                        // at once, and again as its output drains): a read
                        // would find nothing, and bytes that come later
                        // raise an edge of their own.
                        if only_writable && conn.is_idle() {
                            return Next::Keep { want_write: false };
                        }
                        conn.drive(shared, ctx, peer_closed)
                    });
                }
            }
        }
        if !m.common().waiting.is_empty() {
            retry_waiting(m, &mut ctx);
        }
        control
            .requests
            .fetch_add(ctx.requests - before, Ordering::Relaxed);
        if control.is_stopping() && !ctx.stopping {
            begin_stop(m, &mut ctx);
        }
        if ctx.now >= next_sweep {
            next_sweep = ctx.now + SWEEP;
            m.each(&mut ctx, |conn, shared, ctx| conn.on_timer(shared, ctx));
            let shrank = m.after_sweep(&mut ctx);
            give_back_memory(&shared, &mut ctx, shrank);
        }
        if ctx.stopping {
            if control.drain_deadline().is_some_and(|d| ctx.now >= d) {
                m.each(&mut ctx, |_, _, _| Next::Close);
            }
            if m.drained() {
                break;
            }
        }
    }
    shared.pool.release(&mut ctx.local);
}

/// Hands every posted link to its connection.
fn deliver<M: Model>(m: &mut M, mail: &mut Vec<Arc<Link>>, ctx: &mut ThreadCtx) {
    mail.clear();
    m.common().mailbox.drain(mail);
    // Re-armed (one-shot) before delivering: links posted from now on wake
    // some thread (perhaps this one, after the batch).
    m.mailbox_drained();
    for link in mail.drain(..) {
        m.act(link.key(), ctx, |conn, shared, ctx| {
            conn.on_link(&link, shared, ctx)
        });
    }
}

/// Drives waiting connections again while buffers are free: the longest
/// waiter first, each at most once per call (one that still cannot proceed,
/// e.g. a spill needing more than a buffer, goes to the back).
fn retry_waiting<M: Model>(m: &mut M, ctx: &mut ThreadCtx) {
    for _ in 0..m.common().waiting.len() {
        let c = m.common();
        if !c.shared.pool.has_free(&ctx.local) && !c.shared.spills.has_room() {
            return;
        }
        let Some(token) = c.waiting.pop() else {
            return;
        };
        c.control.waiting.fetch_sub(1, Ordering::Relaxed);
        m.act(token, ctx, |conn, shared, ctx| {
            conn.waiting = false;
            conn.drive(shared, ctx, false)
        });
    }
}

/// The stop began: accept nothing more and close what may be closed now
/// (the rest drains until the deadline).
fn begin_stop<M: Model>(m: &mut M, ctx: &mut ThreadCtx) {
    ctx.stopping = true;
    m.stop_accepting();
    let now = ctx.now;
    m.each(ctx, |conn, shared, _| {
        if conn.stop_may_close(now, &shared.limits) {
            Next::Close
        } else {
            Next::Keep { want_write: false }
        }
    });
}

impl Common {
    pub fn new(
        shared: Arc<Shared>,
        control: Arc<Control>,
        waker: Arc<EventFd>,
        mailbox_bound: usize,
        mailbox_interest: Interest,
    ) -> std::io::Result<Common> {
        let epoll = Epoll::new()?;
        epoll.add(&*waker, WAKER, Interest::READ)?;
        let mailbox = Arc::new(LoopMailbox::new(mailbox_bound)?);
        epoll.add(mailbox.fd(), MAILBOX, mailbox_interest)?;
        Ok(Common {
            shared,
            control,
            epoll,
            waker,
            mailbox,
            waiting: WaitQueue::default(),
        })
    }

    /// Makes a connection of a socket just accepted, counted open; not
    /// registered yet (the model registers it when it must wait for it:
    /// `per_core` first tries a read, see `per_core::Loop::start`). A
    /// connection that never gets registered is closed with
    /// [`Common::close`] like any other.
    #[inline]
    pub fn adopt(&self, fd: OwnedFd, peer: &std::net::SocketAddr, now: Instant) -> Connection {
        let mut conn = Connection::new(fd, now);
        conn.expect(self.shared.proxy.at_accept(peer));
        self.control.opened();
        conn
    }

    /// The connection `token` names could not get a buffer: it waits (once)
    /// in the queue until one is free.
    pub fn park(&self, conn: &mut Connection, token: u64) {
        if !conn.waiting {
            conn.waiting = true;
            self.waiting.push(token);
            self.control.waiting.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Closes a connection its table has just given up: out of the wait
    /// queue, its buffer and links given back, the fd closed (which also
    /// removes it from the epoll; an event that raced the close finds no
    /// connection, or in `shared` a newer generation), counted.
    pub fn close(&self, mut conn: Connection, token: u64, ctx: &mut ThreadCtx) {
        if conn.waiting {
            self.waiting.remove(token);
            self.control.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        conn.release(&self.shared, ctx);
        drop(conn);
        self.control.closed();
        ctx.obs.closed(ctx.stopping);
    }
}

/// Tokens of connections waiting for a read buffer, first come first
/// served. A mutex, because in `shared` every network thread parks and
/// retries on one queue; only the rare path (the pool exhausted) takes it,
/// and an empty queue is seen without it.
#[derive(Default)]
struct WaitQueue {
    queue: Mutex<VecDeque<u64>>,
    len: AtomicUsize,
}

impl WaitQueue {
    fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, token: u64) {
        let mut q = self.lock();
        q.push_back(token);
        self.len.store(q.len(), Ordering::Relaxed);
    }

    fn pop(&self) -> Option<u64> {
        let mut q = self.lock();
        let token = q.pop_front();
        self.len.store(q.len(), Ordering::Relaxed);
        token
    }

    fn remove(&self, token: u64) {
        let mut q = self.lock();
        q.retain(|&t| t != token);
        self.len.store(q.len(), Ordering::Relaxed);
    }
}
