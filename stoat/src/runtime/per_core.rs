//! The `per_core` model: each network thread has its own epoll, its own
//! `SO_REUSEPORT` listener and its own connection table; a connection never
//! leaves its thread.
//!
//! Contract: the thread is the only owner of every connection in its
//! table, so no locks are taken on the request path. Sockets are registered
//! edge-triggered for read, write and peer close at accept time and never
//! re-armed: a request costs one `read`, one `write` and a share of one
//! `epoll_wait`. Other threads reach this one only through its eventfd.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::runtime::connection::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::control::{give_back_memory, Control, FD_BACKOFF, SWEEP};
use crate::runtime::link::{Link, Owner};
use crate::runtime::wake::LoopMailbox;
use crate::sys::socket::{is_fd_limit, is_transient_accept};
use crate::sys::{Epoll, EventFd, Events, Interest, Listener};

const LISTENER: u64 = u64::MAX;
const WAKER: u64 = u64::MAX - 1;
const MAILBOX: u64 = u64::MAX - 2;
/// Most connections accepted per listener event before serving others.
const ACCEPT_BATCH: usize = 64;
/// Most table entries looked at to find an idle connection to evict.
const EVICT_SCAN: usize = 1024;

/// Why a loop stopped listening for connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paused {
    /// The table is full: resume when a connection closes.
    Full,
    /// EMFILE/ENFILE: resume at this instant.
    Until(Instant),
}

/// One network thread of the `per_core` model.
pub(crate) struct Loop {
    shared: Arc<Shared>,
    control: Arc<Control>,
    epoll: Epoll,
    listener: Option<Listener>,
    waker: Arc<EventFd>,
    /// Links of this thread's connections with something for it.
    mailbox: Arc<LoopMailbox>,
    conns: Slab<Connection>,
    /// The table shrank at the last sweep (its memory may go back).
    shrank: bool,
    max_conns: usize,
    /// Connections that could not get a buffer, in arrival order.
    waiting: VecDeque<usize>,
    /// Why accepting is paused, if it is.
    accept_paused: Option<Paused>,
    /// Where the next search for an idle connection to evict starts.
    evict_cursor: usize,
    fd_limit_logged: bool,
    /// Connections to accept at a listener event (see `accept`).
    accept_burst: usize,
    /// The loop's turn (epoll waits so far), and the turn at which a
    /// listener event last took its whole burst (`u64::MAX`: none since).
    turn: u64,
    burst_taken_at: u64,
}

impl Loop {
    pub fn new(
        shared: Arc<Shared>,
        control: Arc<Control>,
        listener: Listener,
        waker: Arc<EventFd>,
        max_conns: usize,
    ) -> io::Result<Loop> {
        let epoll = Epoll::new()?;
        epoll.add(&listener, LISTENER, Interest::READ)?;
        epoll.add(&*waker, WAKER, Interest::READ)?;
        let mailbox = Arc::new(LoopMailbox::new(max_conns)?);
        epoll.add(mailbox.fd(), MAILBOX, Interest::READ)?;
        Ok(Loop {
            shared,
            control,
            epoll,
            listener: Some(listener),
            waker,
            mailbox,
            conns: Slab::new(),
            shrank: false,
            max_conns,
            waiting: VecDeque::new(),
            accept_paused: None,
            evict_cursor: 0,
            fd_limit_logged: false,
            accept_burst: 1,
            turn: 0,
            burst_taken_at: u64::MAX,
        })
    }

    pub fn run(mut self) {
        let owner: Arc<dyn Owner> = self.mailbox.clone();
        let mut ctx = ThreadCtx::new(&self.shared, self.control.stop_flag(), owner);
        let mut events = Events::with_capacity(1024);
        let mut mail: Vec<Arc<Link>> = Vec::new();
        let mut next_sweep = Instant::now() + SWEEP;
        loop {
            let wait = next_sweep.saturating_duration_since(ctx.end_batch());
            if self.epoll.wait(&mut events, Some(wait)).is_err() {
                break;
            }
            ctx.tick();
            self.turn += 1;
            let before = ctx.requests;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(&mut ctx),
                    WAKER => {
                        let _ = self.waker.drain();
                    }
                    MAILBOX => self.deliver(&mut mail, &mut ctx),
                    key => {
                        let peer_closed = ev.is_rdhup() || ev.is_hup();
                        // An edge that says only "writable" to a connection
                        // with nothing to write and nothing read has nothing
                        // to act on (a new socket reports it when it is
                        // registered, usually before its first bytes): a
                        // read would find nothing, and bytes that come later
                        // raise an edge of their own.
                        if !(ev.is_readable() || peer_closed || ev.is_error())
                            && self.conns.get(key as usize).is_some_and(|c| c.is_idle())
                        {
                            continue;
                        }
                        self.drive(key as usize, &mut ctx, peer_closed)
                    }
                }
            }
            if !self.waiting.is_empty() {
                self.retry_waiting(&mut ctx);
            }
            self.control
                .requests
                .fetch_add(ctx.requests - before, Ordering::Relaxed);
            if self.control.is_stopping() && !ctx.stopping {
                self.begin_stop(&mut ctx);
            }
            if ctx.now >= next_sweep {
                next_sweep = ctx.now + SWEEP;
                self.sweep(&mut ctx);
                give_back_memory(&self.shared, &mut ctx, std::mem::take(&mut self.shrank));
                self.resume_accepting(&ctx);
            }
            if ctx.stopping {
                let past = self.control.drain_deadline().is_some_and(|d| ctx.now >= d);
                if past {
                    let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for key in keys {
                        self.close(key, &mut ctx);
                    }
                }
                if self.conns.is_empty() {
                    break;
                }
            }
        }
        self.shared.pool.release(&mut ctx.local);
    }

    /// Hands every posted link to its connection.
    fn deliver(&mut self, mail: &mut Vec<Arc<Link>>, ctx: &mut ThreadCtx) {
        mail.clear();
        self.mailbox.drain(mail);
        for link in mail.drain(..) {
            let key = link.key() as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            ctx.key = key as u64;
            let next = conn.on_link(&link, &self.shared, ctx);
            self.after(key, next, ctx);
        }
    }

    fn drive(&mut self, key: usize, ctx: &mut ThreadCtx, peer_closed: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            // An event for a connection closed earlier in this batch.
            return;
        };
        ctx.key = key as u64;
        let next = conn.drive(&self.shared, ctx, peer_closed);
        self.after(key, next, ctx);
    }

    fn after(&mut self, key: usize, next: Next, ctx: &mut ThreadCtx) {
        match next {
            Next::Keep { .. } => {}
            Next::WaitBuffer => {
                if let Some(conn) = self.conns.get_mut(key) {
                    if !conn.waiting {
                        conn.waiting = true;
                        self.waiting.push_back(key);
                        self.control.waiting.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Next::Close => self.close(key, ctx),
        }
    }

    fn retry_waiting(&mut self, ctx: &mut ThreadCtx) {
        // FIFO: the longest waiter gets the first free buffer. Each waiter
        // gets at most one try per call (one that still cannot proceed,
        // e.g. a spill needing more than a buffer, goes to the back).
        for _ in 0..self.waiting.len() {
            let Some(&key) = self.waiting.front() else {
                return;
            };
            if !self.shared.pool.has_free(&ctx.local) && !self.shared.spills.has_room() {
                return;
            }
            self.waiting.pop_front();
            self.control.waiting.fetch_sub(1, Ordering::Relaxed);
            if let Some(conn) = self.conns.get_mut(key) {
                conn.waiting = false;
            }
            self.drive(key, ctx, false);
        }
    }

    /// Accepts up to `accept_burst` connections. The listener is
    /// level-triggered, so connections left in the queue are reported again
    /// at the next wait: while they come one at a time (the usual case), one
    /// `accept4` per event is enough, with no second one that only says
    /// EAGAIN (nginx's `multi_accept off`). When an event takes its whole
    /// burst and the listener is ready again at the very next wait, a
    /// backlog is building: the burst doubles (up to `ACCEPT_BATCH`);
    /// otherwise it starts again from one.
    fn accept(&mut self, ctx: &mut ThreadCtx) {
        self.accept_burst = if self.burst_taken_at == self.turn.wrapping_sub(1) {
            (self.accept_burst * 2).min(ACCEPT_BATCH)
        } else {
            1
        };
        self.burst_taken_at = u64::MAX;
        for _ in 0..self.accept_burst {
            // At the limit, an idle keep-alive connection makes room, but
            // only once a new connection is really there.
            let mut victim = None;
            if self.conns.len() >= self.max_conns {
                victim = self.find_evictable();
                if victim.is_none() {
                    self.pause_accepting(Paused::Full);
                    return;
                }
            }
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((fd, peer)) => {
                    if let Some(key) = victim {
                        ctx.obs.close_reason = Some(crate::runtime::metrics::CloseReason::Evicted);
                        self.close(key, ctx);
                    }
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    let interest =
                        Interest::READ | Interest::WRITE | Interest::RDHUP | Interest::EDGE;
                    if self.epoll.add(&fd, key as u64, interest).is_err() {
                        continue;
                    }
                    let mut conn = Connection::new(fd, ctx.now);
                    conn.expect(self.shared.proxy.at_accept(&peer));
                    entry.insert(conn);
                    self.control.opened();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_fd_limit(&e) => {
                    self.control.fd_limit_errors.fetch_add(1, Ordering::Relaxed);
                    if !self.fd_limit_logged {
                        tracing::warn!(error = %e, "accept: out of file descriptors; pausing accepts until fds are freed");
                        // Kept beside the log event: tests/limits.rs reads this line.
                        let _ = writeln!(
                            std::io::stderr(),
                            "stoat: accept: {e}; pausing accepts until fds are freed"
                        );
                        self.fd_limit_logged = true;
                    }
                    self.pause_accepting(Paused::Until(ctx.now + FD_BACKOFF));
                    return;
                }
                Err(e) if is_transient_accept(&e) => continue,
                Err(_) => return,
            }
        }
        // The whole burst was taken: more may be waiting.
        self.burst_taken_at = self.turn;
    }

    /// At the limit, finds an idle keep-alive connection to close to make
    /// room for a new one, as nginx does with its reusable connections. The
    /// search resumes where the last one stopped and looks at most at
    /// `EVICT_SCAN` entries, so a flood at the limit costs a bounded amount
    /// per accept. `None`: none found (all are busy).
    fn find_evictable(&mut self) -> Option<usize> {
        let cap = self.conns.capacity().max(1);
        for _ in 0..EVICT_SCAN.min(cap) {
            let key = self.evict_cursor % cap;
            self.evict_cursor = self.evict_cursor.wrapping_add(1);
            if self.conns.get(key).is_some_and(|c| c.is_evictable()) {
                return Some(key);
            }
        }
        None
    }

    /// Stops listening for connections for `why`.
    fn pause_accepting(&mut self, why: Paused) {
        if let Paused::Until(_) = why {
            self.control.fd_limit_pauses.fetch_add(1, Ordering::Relaxed);
        }
        if self.accept_paused.is_none() {
            if let Some(l) = &self.listener {
                let _ = self.epoll.delete(l);
            }
        }
        self.accept_paused = Some(why);
    }

    /// Listens again if the reason for the pause is gone.
    fn resume_accepting(&mut self, ctx: &ThreadCtx) {
        let over = match self.accept_paused {
            None => return,
            // Full: until a connection closes, or one is idle (evictable).
            Some(Paused::Full) => {
                self.conns.len() < self.max_conns
                    || self.conns.iter().any(|(_, c)| c.is_evictable())
            }
            Some(Paused::Until(t)) => ctx.now >= t,
        };
        if over {
            self.accept_paused = None;
            if let Some(l) = &self.listener {
                let _ = self.epoll.add(l, LISTENER, Interest::READ);
            }
        }
    }

    fn close(&mut self, key: usize, ctx: &mut ThreadCtx) {
        if let Some(mut conn) = self.conns.try_remove(key) {
            if conn.waiting {
                self.waiting.retain(|&k| k != key);
                self.control.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            conn.release(&self.shared, ctx);
            // Dropping the fd closes it, which also removes it from the epoll.
            drop(conn);
            self.control.closed();
            ctx.obs.closed(ctx.stopping);
            if let Some(Paused::Until(_)) = self.accept_paused {
                // An fd was freed: the next accept can have it.
                self.accept_paused = Some(Paused::Until(ctx.now));
            }
            if self.accept_paused.is_some() {
                self.resume_accepting(ctx);
            }
        }
    }

    fn sweep(&mut self, ctx: &mut ThreadCtx) {
        let mut acted = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            ctx.key = key as u64;
            let next = conn.on_timer(&self.shared, ctx);
            if !matches!(next, Next::Keep { .. }) {
                acted.push((key, next, ctx.obs.close_reason.take()));
            }
        }
        for (key, next, reason) in acted {
            ctx.obs.close_reason = reason;
            self.after(key, next, ctx);
        }
        // The table's memory follows the connections it holds: once most
        // of it is vacant, trailing vacant entries go back (keys of open
        // connections do not move), so a burst of connections does not
        // leave its table behind.
        if self.conns.capacity() > 2 * self.conns.len() + 256 {
            self.conns.shrink_to_fit();
            self.shrank = true;
        }
    }

    fn begin_stop(&mut self, ctx: &mut ThreadCtx) {
        ctx.stopping = true;
        if let Some(l) = self.listener.take() {
            let _ = self.epoll.delete(&l);
        }
        self.accept_paused = None;
        let limits = &self.shared.limits;
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.stop_may_close(ctx.now, limits))
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close(key, ctx);
        }
    }
}
