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

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::runtime::connection::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::control::{give_back_memory, Control, FD_BACKOFF, SWEEP};
use crate::runtime::link::{Link, Owner};
use crate::runtime::wake::LoopMailbox;
use crate::sys::socket::{is_fd_limit, is_transient_accept};
use crate::sys::{Epoll, EventFd, Events, Interest, Listener};

const WAKER: u64 = u64::MAX;
const MAILBOX: u64 = u64::MAX - 1;
/// Most slots looked at to find an idle connection to evict.
const EVICT_SCAN: usize = 1024;

/// One slot of the connection table.
#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Connection>,
}

/// Everything the threads of the shared model share.
pub(crate) struct Core {
    shared: Arc<Shared>,
    control: Arc<Control>,
    epoll: Epoll,
    waker: Arc<EventFd>,
    /// Links with something for their connections; `EPOLLONESHOT`, so one
    /// network thread drains it at a time and re-arms it.
    mailbox: Arc<LoopMailbox>,
    slots: Box<[Mutex<Slot>]>,
    /// Free slot indices, and a condvar for accept threads waiting for one.
    free: Mutex<Vec<u32>>,
    space: Condvar,
    /// Connections waiting for a buffer (slot, generation), FIFO.
    waiting: Mutex<VecDeque<(u32, u32)>>,
    threads: usize,
    /// Where the next search for an idle connection to evict starts.
    evict_cursor: std::sync::atomic::AtomicUsize,
    /// Slots given back so far (an accept thread paused by EMFILE waits for
    /// this to change).
    closes: std::sync::atomic::AtomicU64,
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
        let epoll = Epoll::new()?;
        epoll.add(&*waker, WAKER, Interest::READ)?;
        let mailbox = Arc::new(LoopMailbox::new(max_connections)?);
        epoll.add(mailbox.fd(), MAILBOX, Interest::READ | Interest::ONESHOT)?;
        let slots = (0..max_connections)
            .map(|_| Mutex::new(Slot::default()))
            .collect();
        Ok(Core {
            shared,
            control,
            epoll,
            waker,
            mailbox,
            slots,
            // Lowest indices first, so the table's hot part stays small.
            free: Mutex::new((0..max_connections as u32).rev().collect()),
            space: Condvar::new(),
            waiting: Mutex::new(VecDeque::new()),
            threads,
            evict_cursor: std::sync::atomic::AtomicUsize::new(0),
            closes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// An accept thread: accepts from `listeners` (non-blocking; it waits
    /// in `poll` for any of them or the stop), registers what it gets.
    pub fn accept_loop(&self, listeners: &[Arc<Listener>]) {
        let mut logged = false;
        loop {
            if self.control.is_stopping() {
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
            let (fd, peer) = loop {
                if self.control.is_stopping() {
                    give_back(slot);
                    return;
                }
                match accept_any(listeners) {
                    Ok(Some(accepted)) => break accepted,
                    Ok(None) => {
                        // Every queue is empty: wait for one, or the stop.
                        // (Never blocked in accept: a stop cannot shut an
                        // inherited listener down, another process may be
                        // accepting on it; see sys/listenfd.rs.)
                        self.wait_acceptable(listeners);
                    }
                    Err(_) if self.control.is_stopping() => {
                        give_back(slot);
                        return;
                    }
                    Err(e) if is_fd_limit(&e) => {
                        self.control.fd_limit_errors.fetch_add(1, Ordering::Relaxed);
                        if !logged {
                            tracing::warn!(error = %e, "accept: out of file descriptors; pausing accepts until fds are freed");
                            // Kept beside the log event: tests/limits.rs reads this line.
                            let _ = writeln!(
                                std::io::stderr(),
                                "stoat: accept: {e}; pausing accepts until fds are freed"
                            );
                            logged = true;
                        }
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
            let mut s = lock(&self.slots[slot as usize]);
            s.generation = s.generation.wrapping_add(1);
            let t = token(slot, s.generation);
            let interest = Interest::READ | Interest::RDHUP | Interest::ONESHOT;
            if self.epoll.add(&fd, t, interest).is_err() {
                drop(s);
                self.give_slot(slot);
                continue;
            }
            let mut conn = Connection::new(fd, Instant::now());
            conn.expect(self.shared.proxy.at_accept(&peer));
            s.conn = Some(conn);
            self.control.opened();
        }
    }

    /// Waits until a listener has a connection or the stop began (the
    /// control's accept waker, never drained once notified).
    fn wait_acceptable(&self, listeners: &[Arc<Listener>]) {
        use rustix::event::{PollFd, PollFlags};
        use std::os::fd::AsFd;
        let mut fds: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|l| PollFd::new(l.as_ref(), PollFlags::IN))
            .collect();
        if let Some(waker) = &self.control.accept_waker {
            fds.push(PollFd::from_borrowed_fd(waker.as_fd(), PollFlags::IN));
        }
        // Bounded, so a missed stop is still seen; errors (EINTR) retry.
        let timeout = rustix::event::Timespec::try_from(SWEEP).ok();
        let _ = rustix::event::poll(&mut fds, timeout.as_ref());
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
            if self.control.is_stopping() {
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
            free = self
                .space
                .wait_timeout(free, SWEEP)
                .unwrap_or_else(|e| e.into_inner())
                .0;
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
            self.control.closed();
            if let Some(m) = &self.shared.observers.metrics {
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
        self.control.fd_limit_pauses.fetch_add(1, Ordering::Relaxed);
        let free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let closes = self.closes.load(Ordering::Acquire);
        let _ = self
            .space
            .wait_timeout_while(free, FD_BACKOFF, |_| {
                self.closes.load(Ordering::Acquire) == closes && !self.control.is_stopping()
            })
            .unwrap_or_else(|e| e.into_inner());
    }

    fn give_slot(&self, slot: u32) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(slot);
        self.closes.fetch_add(1, Ordering::Release);
        self.space.notify_all();
    }

    /// A network thread.
    pub fn network_loop(&self, index: usize) {
        let owner: Arc<dyn Owner> = self.mailbox.clone();
        let mut ctx = ThreadCtx::new(&self.shared, self.control.stop_flag(), owner);
        let mut events = Events::with_capacity(256);
        let mut mail: Vec<Arc<Link>> = Vec::new();
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let wait = next_sweep.saturating_duration_since(ctx.end_batch());
            if self.epoll.wait(&mut events, Some(wait)).is_err() {
                break;
            }
            ctx.tick();
            let before = ctx.requests;
            for ev in events.iter() {
                if ev.token() == WAKER {
                    // Level-triggered and drained by one thread; the others
                    // notice a stop at their next sweep.
                    let _ = self.waker.drain();
                    continue;
                }
                if ev.token() == MAILBOX {
                    self.deliver(&mut mail, &mut ctx);
                    continue;
                }
                let (slot, generation) = untoken(ev.token());
                self.drive(slot, generation, &mut ctx, ev.is_rdhup() || ev.is_hup());
            }
            self.retry_waiting(&mut ctx);
            self.control
                .requests
                .fetch_add(ctx.requests - before, Ordering::Relaxed);
            if self.control.is_stopping() && !ctx.stopping {
                ctx.stopping = true;
                let (now, limits) = (ctx.now, &self.shared.limits);
                self.close_where(index, &mut ctx, |c| c.stop_may_close(now, limits));
            }
            if ctx.now >= next_sweep {
                next_sweep = ctx.now + SWEEP;
                self.sweep(index, &mut ctx);
                // The slot table is fixed: it never shrinks.
                give_back_memory(&self.shared, &mut ctx, false);
            }
            if ctx.stopping {
                if self.control.drain_deadline().is_some_and(|d| ctx.now >= d) {
                    self.close_where(index, &mut ctx, |_| true);
                }
                if self.control.connections.load(Ordering::Acquire) == 0 {
                    break;
                }
            }
        }
        self.shared.pool.release(&mut ctx.local);
    }

    /// Hands every posted link to its connection, then re-arms the mailbox.
    fn deliver(&self, mail: &mut Vec<Arc<Link>>, ctx: &mut ThreadCtx) {
        mail.clear();
        self.mailbox.drain(mail);
        // Re-arm before delivering: links posted from now on wake some
        // thread (perhaps this one, after the batch).
        let _ = self.epoll.modify(
            self.mailbox.fd(),
            MAILBOX,
            Interest::READ | Interest::ONESHOT,
        );
        for link in mail.drain(..) {
            let (slot, generation) = untoken(link.key());
            let Some(m) = self.slots.get(slot as usize) else {
                continue;
            };
            let mut s = lock(m);
            if s.generation != generation {
                continue;
            }
            let Some(conn) = s.conn.as_mut() else {
                continue;
            };
            ctx.key = link.key();
            let next = conn.on_link(&link, &self.shared, ctx);
            self.after(slot, &mut s, next, ctx);
        }
    }

    fn drive(&self, slot: u32, generation: u32, ctx: &mut ThreadCtx, peer_closed: bool) {
        let Some(m) = self.slots.get(slot as usize) else {
            return;
        };
        let mut s = lock(m);
        if s.generation != generation {
            // Stale: the connection this event was for is gone.
            return;
        }
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        ctx.key = token(slot, generation);
        let next = conn.drive(&self.shared, ctx, peer_closed);
        self.after(slot, &mut s, next, ctx);
    }

    /// Re-arms, parks or closes a connection the caller holds.
    fn after(&self, slot: u32, s: &mut MutexGuard<'_, Slot>, next: Next, ctx: &mut ThreadCtx) {
        let t = token(slot, s.generation);
        match next {
            Next::Keep { want_write } => {
                if let Some(conn) = &s.conn {
                    let mut interest = Interest::READ | Interest::RDHUP | Interest::ONESHOT;
                    if want_write {
                        interest |= Interest::WRITE;
                    }
                    if self.epoll.modify(conn.fd(), t, interest).is_err() {
                        self.close_held(slot, s, ctx);
                    }
                }
            }
            Next::WaitBuffer => {
                // Stays disarmed until a buffer is free; timeouts still run.
                let generation = s.generation;
                if let Some(conn) = s.conn.as_mut() {
                    if !conn.waiting {
                        conn.waiting = true;
                        self.waiting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push_back((slot, generation));
                        self.control.waiting.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Next::Close => self.close_held(slot, s, ctx),
        }
    }

    fn close_held(&self, slot: u32, s: &mut MutexGuard<'_, Slot>, ctx: &mut ThreadCtx) {
        if let Some(mut conn) = s.conn.take() {
            if conn.waiting {
                let generation = s.generation;
                self.waiting
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|&w| w != (slot, generation));
                self.control.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            conn.release(&self.shared, ctx);
            // Closing removes the fd from the epoll; a racing event carries
            // the old generation and is dropped.
            drop(conn);
            s.generation = s.generation.wrapping_add(1);
            self.control.closed();
            ctx.obs.closed(ctx.stopping);
            self.give_slot(slot);
        }
    }

    fn retry_waiting(&self, ctx: &mut ThreadCtx) {
        // At most one try per waiter per call (one that still cannot
        // proceed goes to the back).
        let n = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).len();
        for _ in 0..n {
            if !self.shared.pool.has_free(&ctx.local) && !self.shared.spills.has_room() {
                return;
            }
            let next = self
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some((slot, generation)) = next else {
                return;
            };
            self.control.waiting.fetch_sub(1, Ordering::Relaxed);
            if let Some(m) = self.slots.get(slot as usize) {
                let mut s = lock(m);
                if s.generation == generation {
                    if let Some(conn) = s.conn.as_mut() {
                        conn.waiting = false;
                    }
                }
            }
            self.drive(slot, generation, ctx, false);
        }
    }

    /// This thread's share of the table: every `threads`-th slot.
    fn partition(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        (index..self.slots.len()).step_by(self.threads)
    }

    fn sweep(&self, index: usize, ctx: &mut ThreadCtx) {
        for i in self.partition(index) {
            // Never wait for an owner: a busy connection is alive anyway.
            let Ok(mut s) = self.slots[i].try_lock() else {
                continue;
            };
            ctx.key = token(i as u32, s.generation);
            let Some(conn) = s.conn.as_mut() else {
                continue;
            };
            let next = conn.on_timer(&self.shared, ctx);
            match next {
                Next::Close => self.close_held(i as u32, &mut s, ctx),
                Next::Keep { want_write: true } | Next::WaitBuffer => {
                    self.after(i as u32, &mut s, next, ctx)
                }
                _ => {}
            }
        }
    }

    fn close_where(&self, index: usize, ctx: &mut ThreadCtx, pred: impl Fn(&Connection) -> bool) {
        for i in self.partition(index) {
            let Ok(mut s) = self.slots[i].try_lock() else {
                continue;
            };
            if s.conn.as_ref().is_some_and(&pred) {
                self.close_held(i as u32, &mut s, ctx);
            }
        }
    }
}
