//! The `shared` model: `accept_threads` block in `accept4`; every new
//! connection goes into one table and is registered on one epoll with
//! `EPOLLIN | EPOLLRDHUP | EPOLLONESHOT`; whichever network thread receives
//! its event owns it until it re-arms it.
//!
//! Contract (ownership): `EPOLLONESHOT` disarms a connection when its event
//! is delivered, so at most one network thread holds it; the slot's mutex
//! (never contended on the request path) turns that protocol guarantee
//! into one the compiler checks, and also covers the timer sweep, which
//! takes a slot only with `try_lock` (never waiting on an owner). A slot's
//! generation is part of the epoll token, so an event that raced a close is
//! recognised as stale and dropped even when the fd number and slot were
//! reused. Only the thread holding the slot closes the fd.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};

use crate::runtime::connection::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::control::{Control, FD_BACKOFF, SWEEP};
use crate::runtime::event_loop::{self, Common, Model, MAILBOX};
use crate::sys::socket::{is_fd_limit, is_transient_accept};
use crate::sys::{EventFd, Interest, Listener};

/// Most slots looked at to find an idle connection to evict.
const EVICT_SCAN: usize = 1024;
/// A connection's interest, re-armed after each event.
const CONN_INTEREST: Interest = Interest::READ
    .union(Interest::RDHUP)
    .union(Interest::ONESHOT);
/// The mailbox's: one thread drains it at a time and re-arms it.
const MAILBOX_INTEREST: Interest = Interest::READ.union(Interest::ONESHOT);

/// One slot of the connection table.
#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Connection>,
}

/// Everything the threads of the shared model share.
pub(crate) struct Core {
    common: Common,
    slots: Box<[Mutex<Slot>]>,
    /// Free slot indices, and a condvar for accept threads waiting for one.
    free: Mutex<Vec<u32>>,
    space: Condvar,
    /// Slots handed out so far at most (one past the highest): the sweep
    /// walks these, not the whole table. Free slots are taken lowest first
    /// and most recently freed first, so this follows the most connections
    /// open at once.
    used: AtomicUsize,
    threads: usize,
    /// Where the next search for an idle connection to evict starts.
    evict_cursor: AtomicUsize,
    /// Slots given back so far (an accept thread paused by EMFILE waits for
    /// this to change).
    closes: AtomicU64,
    /// Accept threads waiting on `space` (changed under `free`'s lock): a
    /// slot given back wakes them only if there are any, so a close costs
    /// no `futex` call of its own.
    sleepers: AtomicUsize,
}

/// One network thread's view of the [`Core`]: the table the generic loop
/// (`event_loop::run`) drives.
struct Worker<'a> {
    core: &'a Core,
    /// This thread's index: its share of the table for sweeps and the stop.
    index: usize,
}

fn token(slot: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(slot)
}

fn untoken(t: u64) -> (u32, u32) {
    (t as u32, (t >> 32) as u32)
}

/// One connection from whichever listener has one; `None` if none has.
fn accept_any(
    listeners: &[Arc<Listener>],
) -> io::Result<Option<(std::os::fd::OwnedFd, std::net::SocketAddr)>> {
    for l in listeners {
        match l.accept() {
            Ok(accepted) => return Ok(Some(accepted)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

fn lock(m: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Core {
    pub fn new(
        shared: Arc<Shared>,
        control: Arc<Control>,
        waker: Arc<EventFd>,
        max_connections: usize,
        threads: usize,
    ) -> io::Result<Core> {
        let common = Common::new(shared, control, waker, max_connections, MAILBOX_INTEREST)?;
        let slots = (0..max_connections)
            .map(|_| Mutex::new(Slot::default()))
            .collect();
        Ok(Core {
            common,
            slots,
            // Lowest indices first, so the table's hot part stays small.
            free: Mutex::new((0..max_connections as u32).rev().collect()),
            space: Condvar::new(),
            used: AtomicUsize::new(0),
            threads,
            evict_cursor: AtomicUsize::new(0),
            closes: AtomicU64::new(0),
            sleepers: AtomicUsize::new(0),
        })
    }

    /// An accept thread: accepts from `listeners` (non-blocking; it waits
    /// in `poll` for any of them or the stop), registers what it gets.
    pub fn accept_loop(&self, listeners: &[Arc<Listener>]) {
        let control = &self.common.control;
        let mut logged = false;
        // Whether to wait for a listener before the next accept: after a
        // connection that came only after a wait, the queue was most likely
        // emptied by it, and an `accept4` that says EAGAIN would be wasted;
        // after one taken at once (a backlog), accept again at once.
        let mut wait_first = false;
        let mut poll_set = self.poll_set(listeners);
        loop {
            if control.is_stopping() {
                return;
            }
            // A free slot if there is one; otherwise the connection accepted
            // next waits for one (an idle keep-alive connection evicted, or
            // a close) while the backlog holds the rest.
            let slot = self.try_free_slot();
            let give_back = |slot: Option<u32>| {
                if let Some(slot) = slot {
                    self.give_slot(slot);
                }
            };
            let mut waited = false;
            let (fd, peer) = loop {
                if control.is_stopping() {
                    give_back(slot);
                    return;
                }
                if wait_first {
                    // Wait for a connection, or the stop. (Never blocked in
                    // accept: a stop cannot shut an inherited listener
                    // down, another process may be accepting on it; see
                    // sys/listenfd.rs.)
                    Self::wait_acceptable(&mut poll_set);
                    wait_first = false;
                    waited = true;
                    continue;
                }
                match accept_any(listeners) {
                    Ok(Some(accepted)) => break accepted,
                    // Every queue is empty.
                    Ok(None) => wait_first = true,
                    Err(_) if control.is_stopping() => {
                        give_back(slot);
                        return;
                    }
                    Err(e) if is_fd_limit(&e) => {
                        control.fd_limit_hit(&e, &mut logged);
                        self.wait_for_close();
                    }
                    Err(e) if is_transient_accept(&e) => {}
                    Err(_) => {
                        // The listener is gone (shut down).
                        give_back(slot);
                        return;
                    }
                }
            };
            let slot = match slot {
                Some(slot) => slot,
                None => match self.free_slot() {
                    Some(slot) => slot,
                    None => return,
                },
            };
            wait_first = waited;
            self.used.fetch_max(slot as usize + 1, Ordering::Relaxed);
            // Held while registering: an event that comes at once waits for
            // the connection to be in its slot.
            let mut s = lock(&self.slots[slot as usize]);
            s.generation = s.generation.wrapping_add(1);
            let t = token(slot, s.generation);
            let conn = self.common.adopt(fd, &peer, Instant::now());
            if self.common.epoll.add(conn.fd(), t, CONN_INTEREST).is_ok() {
                s.conn = Some(conn);
            } else {
                // Never registered, never driven: nothing to give back.
                drop(conn);
                self.common.control.closed();
                drop(s);
                self.give_slot(slot);
            }
        }
    }

    /// Waits until a listener has a connection or the stop began (the
    /// control's accept waker, never drained once notified).
    fn wait_acceptable(fds: &mut [PollFd<'_>]) {
        // Bounded, so a missed stop is still seen; errors (EINTR) retry.
        let timeout = rustix::event::Timespec::try_from(SWEEP).ok();
        let _ = rustix::event::poll(fds, timeout.as_ref());
    }

    /// What an accept thread polls: the listeners and the stop's waker.
    /// Made once per thread (poll sets only the results on each call).
    fn poll_set<'a>(&'a self, listeners: &'a [Arc<Listener>]) -> Vec<PollFd<'a>> {
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(listeners.len() + 1);
        fds.extend(
            listeners
                .iter()
                .map(|l| PollFd::new(l.as_ref(), PollFlags::IN)),
        );
        if let Some(waker) = &self.common.control.accept_waker {
            fds.push(PollFd::from_borrowed_fd(waker.as_fd(), PollFlags::IN));
        }
        fds
    }

    /// A free slot, if there is one now.
    fn try_free_slot(&self) -> Option<u32> {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Takes a free slot; when the table is full, evicts an idle keep-alive
    /// connection (as nginx does), else waits for a close (re-trying the
    /// eviction at every sweep interval).
    fn free_slot(&self) -> Option<u32> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.common.control.is_stopping() {
                return None;
            }
            if let Some(slot) = free.pop() {
                return Some(slot);
            }
            drop(free);
            if let Some(slot) = self.evict_idle() {
                return Some(slot);
            }
            free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = free.pop() {
                return Some(slot);
            }
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            free = self
                .space
                .wait_timeout(free, SWEEP)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Closes one idle keep-alive connection and returns its slot. Holding
    /// a slot's lock is owning its connection (the sweep closes the same
    /// way); a busy slot is skipped (`try_lock`), never waited for. The
    /// search resumes where the last one stopped and looks at most at
    /// `EVICT_SCAN` slots.
    fn evict_idle(&self) -> Option<u32> {
        let n = self.slots.len();
        for _ in 0..EVICT_SCAN.min(n) {
            let i = self.evict_cursor.fetch_add(1, Ordering::Relaxed) % n;
            let Ok(mut s) = self.slots[i].try_lock() else {
                continue;
            };
            if !s.conn.as_ref().is_some_and(|c| c.is_evictable()) {
                continue;
            }
            // Idle: it holds no buffer and no link, so there is nothing to
            // give back; dropping it closes the fd (and leaves the epoll).
            drop(s.conn.take());
            s.generation = s.generation.wrapping_add(1);
            self.common.control.closed();
            if let Some(m) = &self.common.shared.observers.metrics {
                m.evicted_elsewhere();
            }
            return Some(i as u32);
        }
        None
    }

    /// After EMFILE/ENFILE: waits until a connection closes (its slot is
    /// given back, so an fd is free) or [`FD_BACKOFF`] passes, as the
    /// `per_core` loop pauses accepting.
    fn wait_for_close(&self) {
        let control = &self.common.control;
        control.fd_limit_pauses.fetch_add(1, Ordering::Relaxed);
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let closes = self.closes.load(Ordering::Acquire);
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        let free = self
            .space
            .wait_timeout_while(free, FD_BACKOFF, |_| {
                self.closes.load(Ordering::Acquire) == closes && !control.is_stopping()
            })
            .unwrap_or_else(|e| e.into_inner())
            .0;
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        drop(free);
    }

    /// Gives a slot back, and wakes the accept threads waiting for one (or
    /// for a close), if any. A sleeper counts itself under `free`'s lock
    /// before it waits, and the slot is pushed under the same lock: either
    /// the sleeper saw the slot (or the close) before it waited, or it is
    /// counted here and woken.
    fn give_slot(&self, slot: u32) {
        let sleepers = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            free.push(slot);
            self.closes.fetch_add(1, Ordering::Release);
            self.sleepers.load(Ordering::Relaxed)
        };
        if sleepers > 0 {
            self.space.notify_all();
        }
    }

    /// A network thread.
    pub fn network_loop(&self, index: usize) {
        event_loop::run(&mut Worker { core: self, index });
    }

    /// Settles what the connection in the held slot asked for: `Keep`
    /// re-arms it (one-shot), with write interest while output is pending.
    #[inline]
    fn settle(&self, slot: u32, s: &mut MutexGuard<'_, Slot>, next: Next, ctx: &mut ThreadCtx) {
        let t = token(slot, s.generation);
        match next {
            Next::Keep { want_write } => {
                if let Some(conn) = &s.conn {
                    let mut interest = CONN_INTEREST;
                    if want_write {
                        interest = interest.union(Interest::WRITE);
                    }
                    if self.common.epoll.modify(conn.fd(), t, interest).is_err() {
                        self.close_held(slot, s, ctx);
                    }
                }
            }
            // Stays disarmed until a buffer is free; timeouts still run.
            Next::WaitBuffer => {
                if let Some(conn) = s.conn.as_mut() {
                    self.common.park(conn, t);
                }
            }
            Next::Close => self.close_held(slot, s, ctx),
        }
    }

    fn close_held(&self, slot: u32, s: &mut MutexGuard<'_, Slot>, ctx: &mut ThreadCtx) {
        if let Some(conn) = s.conn.take() {
            self.common.close(conn, token(slot, s.generation), ctx);
            // A racing event carries the old generation and is dropped.
            s.generation = s.generation.wrapping_add(1);
            self.give_slot(slot);
        }
    }
}

impl Model for Worker<'_> {
    const EVENTS: usize = 256;

    #[inline]
    fn common(&self) -> &Common {
        &self.core.common
    }

    #[inline]
    fn act<F>(&mut self, token: u64, ctx: &mut ThreadCtx, f: F)
    where
        F: FnOnce(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        let (slot, generation) = untoken(token);
        let Some(m) = self.core.slots.get(slot as usize) else {
            return;
        };
        let mut s = lock(m);
        if s.generation != generation {
            // Stale: the connection this token was for is gone.
            return;
        }
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        ctx.key = token;
        let next = f(conn, &self.core.common.shared, ctx);
        self.core.settle(slot, &mut s, next, ctx);
    }

    fn each<F>(&mut self, ctx: &mut ThreadCtx, mut f: F)
    where
        F: FnMut(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        // This thread's share: every `threads`-th slot of those in use.
        let used = self.core.used.load(Ordering::Relaxed);
        for i in (self.index..used).step_by(self.core.threads) {
            // Never wait for an owner: a busy connection is alive anyway.
            let Ok(mut s) = self.core.slots[i].try_lock() else {
                continue;
            };
            ctx.key = token(i as u32, s.generation);
            let Some(conn) = s.conn.as_mut() else {
                continue;
            };
            match f(conn, &self.core.common.shared, ctx) {
                // Armed as it is: re-arming would only cost a syscall.
                Next::Keep { want_write: false } => {}
                next => self.core.settle(i as u32, &mut s, next, ctx),
            }
        }
    }

    fn mailbox_drained(&self) {
        let c = &self.core.common;
        let _ = c.epoll.modify(c.mailbox.fd(), MAILBOX, MAILBOX_INTEREST);
    }

    fn after_sweep(&mut self, _ctx: &mut ThreadCtx) -> bool {
        // The slot table is fixed: it never shrinks.
        false
    }

    fn drained(&self) -> bool {
        self.core.common.control.connections.load(Ordering::Acquire) == 0
    }
}
