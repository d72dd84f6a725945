//! The `per_core` model: each network thread has its own epoll, its own
//! `SO_REUSEPORT` listener and its own connection table; a connection never
//! leaves its thread.
//!
//! Contract: the thread is the only owner of every connection in its
//! table, so no locks are taken on the request path. Sockets are registered
//! edge-triggered for read, write and peer close at accept time and never
//! re-armed: a request costs one `read`, one `write` and a share of one
//! `epoll_wait`. Other threads reach this one only through its eventfd.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::runtime::connection::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::control::{Control, FD_BACKOFF};
use crate::runtime::event_loop::{self, Common, Model, LISTENER};
use crate::sys::socket::{is_fd_limit, is_transient_accept};
use crate::sys::{EventFd, Interest, Listener};

/// Most connections accepted per listener event before serving others.
const ACCEPT_BATCH: usize = 64;
/// Most table entries looked at to find an idle connection to evict.
const EVICT_SCAN: usize = 1024;
/// Registered once at accept and never re-armed.
const CONN_INTEREST: Interest = Interest::READ
    .union(Interest::WRITE)
    .union(Interest::RDHUP)
    .union(Interest::EDGE);

/// Why a loop stopped listening for connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paused {
    /// The table is full: resume when a connection closes.
    Full,
    /// EMFILE/ENFILE: resume at this instant.
    Until(Instant),
}

/// One network thread of the `per_core` model: the table the generic loop
/// (`event_loop::run`) drives, and its listener.
pub(crate) struct Loop {
    common: Common,
    listener: Option<Listener>,
    conns: Slab<Connection>,
    max_conns: usize,
    /// Why accepting is paused, if it is.
    accept_paused: Option<Paused>,
    /// Where the next search for an idle connection to evict starts.
    evict_cursor: usize,
    fd_limit_logged: bool,
    /// Connections to accept at a listener event (see `accept`).
    accept_burst: usize,
    /// The loop's turn at which a listener event last took its whole burst
    /// (`u64::MAX`: none since).
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
        let common = Common::new(shared, control, waker, max_conns, Interest::READ)?;
        common.epoll.add(&listener, LISTENER, Interest::READ)?;
        Ok(Loop {
            common,
            listener: Some(listener),
            conns: Slab::new(),
            max_conns,
            accept_paused: None,
            evict_cursor: 0,
            fd_limit_logged: false,
            accept_burst: 1,
            burst_taken_at: u64::MAX,
        })
    }

    pub fn run(mut self) {
        event_loop::run(&mut self);
    }

    /// Settles what a connection asked for: edge-triggered, so `Keep`
    /// needs nothing.
    #[inline(never)]
    fn settle(&mut self, key: usize, next: Next, ctx: &mut ThreadCtx) {
        match next {
            Next::Keep { .. } => {}
            Next::WaitBuffer => {
                if let Some(conn) = self.conns.get_mut(key) {
                    self.common.park(conn, key as u64);
                }
            }
            Next::Close => self.close(key, ctx),
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
    #[inline]
    fn accept_burst(&mut self, ctx: &mut ThreadCtx, turn: u64) {
        self.accept_burst = if self.burst_taken_at == turn.wrapping_sub(1) {
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
                    let key = entry.key() as u64;
                    if let Some(conn) = self.common.adopt(fd, &peer, key, CONN_INTEREST, ctx.now) {
                        entry.insert(conn);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_fd_limit(&e) => {
                    self.common
                        .control
                        .fd_limit_hit(&e, &mut self.fd_limit_logged);
                    self.pause_accepting(Paused::Until(ctx.now + FD_BACKOFF));
                    return;
                }
                Err(e) if is_transient_accept(&e) => continue,
                Err(_) => return,
            }
        }
        // The whole burst was taken: more may be waiting.
        self.burst_taken_at = turn;
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
            self.common
                .control
                .fd_limit_pauses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if self.accept_paused.is_none() {
            if let Some(l) = &self.listener {
                let _ = self.common.epoll.delete(l);
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
                let _ = self.common.epoll.add(l, LISTENER, Interest::READ);
            }
        }
    }

    fn close(&mut self, key: usize, ctx: &mut ThreadCtx) {
        if let Some(conn) = self.conns.try_remove(key) {
            self.common.close(conn, key as u64, ctx);
            if let Some(Paused::Until(_)) = self.accept_paused {
                // An fd was freed: the next accept can have it.
                self.accept_paused = Some(Paused::Until(ctx.now));
            }
            if self.accept_paused.is_some() {
                self.resume_accepting(ctx);
            }
        }
    }
}

impl Model for Loop {
    const EVENTS: usize = 1024;

    #[inline]
    fn common(&self) -> &Common {
        &self.common
    }

    #[inline]
    fn act<F>(&mut self, token: u64, ctx: &mut ThreadCtx, f: F)
    where
        F: FnOnce(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        let key = token as usize;
        let Some(conn) = self.conns.get_mut(key) else {
            // An event for a connection closed earlier in this batch.
            return;
        };
        ctx.key = token;
        let next = f(conn, &self.common.shared, ctx);
        // Edge-triggered: keeping it needs nothing (the common case, kept
        // inline; the rest is out of line).
        if !matches!(next, Next::Keep { .. }) {
            self.settle(key, next, ctx);
        }
    }

    fn each<F>(&mut self, ctx: &mut ThreadCtx, mut f: F)
    where
        F: FnMut(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        // The slab cannot lose an entry while it is walked: what is to be
        // done is collected first, with the close reason each one set.
        let mut acted = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            ctx.key = key as u64;
            let next = f(conn, &self.common.shared, ctx);
            if !matches!(next, Next::Keep { .. }) {
                acted.push((key, next, ctx.obs.close_reason.take()));
            }
        }
        for (key, next, reason) in acted {
            ctx.obs.close_reason = reason;
            self.settle(key, next, ctx);
        }
    }

    #[inline]
    fn accept(&mut self, ctx: &mut ThreadCtx, turn: u64) {
        self.accept_burst(ctx, turn);
    }

    fn after_sweep(&mut self, ctx: &mut ThreadCtx) -> bool {
        self.resume_accepting(ctx);
        // The table's memory follows the connections it holds: once most
        // of it is vacant, trailing vacant entries go back (keys of open
        // connections do not move), so a burst of connections does not
        // leave its table behind.
        if self.conns.capacity() > 2 * self.conns.len() + 256 {
            self.conns.shrink_to_fit();
            return true;
        }
        false
    }

    fn stop_accepting(&mut self) {
        if let Some(l) = self.listener.take() {
            let _ = self.common.epoll.delete(&l);
        }
        self.accept_paused = None;
    }

    fn drained(&self) -> bool {
        self.conns.is_empty()
    }
}
