//! The `per_core` model: each network thread has its own epoll, its own
//! `SO_REUSEPORT` listener and its own connection table; a connection never
//! leaves its thread.
//!
//! Contract: the thread is the only owner of every connection in its
//! table, so no locks are taken on the request path. A new connection is
//! read at once, before it is registered: a request that came with the
//! connection (the usual case) is answered with no wait, and a
//! `Connection: close` exchange never touches the epoll. A connection kept
//! open is registered edge-triggered for read and peer close, and for write
//! too from the first time its output backs up; it is never re-armed
//! otherwise: a request costs one `read`, one `write` and a share of one
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
/// A connection's registration: edge-triggered, never re-armed. Without
/// write interest, so that registering a socket (always writable) raises no
/// event that only says so.
const CONN_INTEREST: Interest = Interest::READ.union(Interest::RDHUP).union(Interest::EDGE);
/// The registration from the first time a connection's output backs up
/// (`Next::Keep { want_write: true }`); kept from then on.
const CONN_INTEREST_WRITE: Interest = CONN_INTEREST.union(Interest::WRITE);

/// Whether reading a new connection at once pays. A read that finds the
/// request saves a registration and a wait (a `Connection: close` exchange
/// costs 5 syscalls rather than 7: wait, `accept4`, `read`, `write`,
/// `close`); one that finds nothing costs a `read` (8). While fewer than
/// 2 in 5 would find bytes, new connections are registered unread and
/// waited for (7, nginx's count without `deferred`); at the switch, 6.8.
///
/// `credit` gains 3 for a read that found bytes and loses 2 for one that
/// did not (so it drifts down below 2 in 5); below zero, reads are
/// skipped. A connection registered unread tells what its read would have
/// found by its first event: if that came at the very next wait and the
/// wait did not block (`event_loop::AT_ONCE`), its bytes were there
/// already. So the estimate
/// follows the clients in both states, at no cost in syscalls. The floor
/// (`CREDIT_MIN`) asks for three such in a row, or more than 2 in 5, before
/// reading again: a client whose request comes a little late every time
/// (a wait that did not block, now and then, by chance) costs no read.
#[derive(Default)]
struct EarlyRead {
    credit: i8,
}

const CREDIT_MAX: i8 = 24;
const CREDIT_MIN: i8 = -9;

impl EarlyRead {
    /// Whether to read the next new connection before registering it.
    #[inline]
    fn try_now(&self) -> bool {
        self.credit >= 0
    }

    /// What a read found (or would have found).
    #[inline]
    fn found(&mut self, bytes: bool) {
        self.credit = if bytes {
            (self.credit + 3).min(CREDIT_MAX)
        } else {
            (self.credit - 2).max(CREDIT_MIN)
        };
    }
}

/// A connection in the table, whether its registration has write
/// interest yet, and whether it was registered without a read at accept
/// and has had no event since (see `EarlyRead`), with the loop's wait
/// count (`Loop::waits`) then. The three are kept in the connection's two
/// model bytes, which were padding: a table entry is a `Connection`, no
/// bigger (bytes per idle connection).
#[repr(transparent)]
struct Entry {
    conn: Connection,
}

/// `Connection::model[0]`'s bits.
const WRITABLE_ARMED: u8 = 1;
const UNREAD: u8 = 2;

impl Entry {
    fn new(conn: Connection) -> Entry {
        Entry { conn }
    }

    #[inline(always)]
    fn writable_armed(&self) -> bool {
        self.conn.model[0] & WRITABLE_ARMED != 0
    }

    #[inline(always)]
    fn set_writable_armed(&mut self, armed: bool) {
        let bits = self.conn.model[0] & !WRITABLE_ARMED;
        self.conn.model[0] = bits | if armed { WRITABLE_ARMED } else { 0 };
    }

    #[inline(always)]
    fn unread(&self) -> bool {
        self.conn.model[0] & UNREAD != 0
    }

    /// Marks it registered unread at wait `at`.
    fn set_unread(&mut self, at: u8) {
        self.conn.model[0] |= UNREAD;
        self.conn.model[1] = at;
    }

    /// Its first event: clears the mark, and gives the wait it was made at.
    fn take_unread(&mut self) -> u8 {
        self.conn.model[0] &= !UNREAD;
        self.conn.model[1]
    }
}

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
    conns: Slab<Entry>,
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
    early_read: EarlyRead,
    /// When the last wait began (see `at_once`).
    wait_began: Instant,
    /// Waits so far (wrapping).
    waits: u8,
    /// Listener events in a row that found a backlog (see `accept_burst`).
    backlog_turns: u8,
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
            early_read: EarlyRead::default(),
            wait_began: Instant::now(),
            waits: 0,
            backlog_turns: 0,
        })
    }

    /// Whether the last wait returned without blocking (a hint, see
    /// `event_loop::AT_ONCE`).
    #[inline]
    fn at_once(&self, ctx: &ThreadCtx) -> bool {
        ctx.now.saturating_duration_since(self.wait_began) < event_loop::AT_ONCE
    }

    pub fn run(mut self) {
        event_loop::run(&mut self);
    }

    /// Settles what a connection asked for: edge-triggered, so `Keep`
    /// needs nothing, unless its output backed up for the first time (write
    /// interest is added then, once).
    #[inline(never)]
    fn settle(&mut self, key: usize, next: Next, ctx: &mut ThreadCtx) {
        match next {
            Next::Keep { want_write: false } => {}
            Next::Keep { want_write: true } => {
                let Some(e) = self.conns.get_mut(key) else {
                    return;
                };
                if !e.writable_armed() {
                    // Edge-triggered: an `EPOLL_CTL_MOD` reports the socket
                    // if it is writable already, so no edge is lost.
                    let armed =
                        self.common
                            .epoll
                            .modify(e.conn.fd(), key as u64, CONN_INTEREST_WRITE);
                    if armed.is_err() {
                        self.close(key, ctx);
                        return;
                    }
                    e.set_writable_armed(true);
                }
            }
            Next::WaitBuffer => {
                if let Some(e) = self.conns.get_mut(key) {
                    self.common.park(&mut e.conn, key as u64);
                }
            }
            Next::Close => self.close(key, ctx),
        }
    }

    /// A connection just accepted: driven at once, before it is registered.
    /// Its request has often come with it (a client writes as soon as it
    /// is connected, and the accept is reported when the handshake is over,
    /// no sooner): it is answered with no `epoll_wait` between, and one that
    /// closes after its answer (`Connection: close`) is never registered.
    /// A read that finds nothing costs one `read` (EAGAIN); then it is
    /// registered and waits as any other. Nothing is lost in between: the
    /// registration (`EPOLL_CTL_ADD`) reports what is there already, bytes
    /// or a peer's close, even edge-triggered. While such reads mostly find
    /// nothing (`EarlyRead`), the connection is registered unread.
    fn start(&mut self, key: usize, ctx: &mut ThreadCtx) {
        let Some(e) = self.conns.get_mut(key) else {
            return;
        };
        if !self.early_read.try_now() {
            if self
                .common
                .epoll
                .add(e.conn.fd(), key as u64, CONN_INTEREST)
                .is_err()
            {
                self.close(key, ctx);
                return;
            }
            e.set_unread(self.waits);
            return;
        }
        ctx.key = key as u64;
        let next = e.conn.drive(&self.common.shared, ctx, false);
        // Nothing read: still before its first request, holding nothing
        // (a connection that was answered is between requests, or closed).
        let nothing = next == (Next::Keep { want_write: false })
            && e.conn.is_idle()
            && !e.conn.is_evictable();
        self.early_read.found(!nothing);
        if next != Next::Close {
            let want_write = next == Next::Keep { want_write: true };
            let interest = if want_write {
                CONN_INTEREST_WRITE
            } else {
                CONN_INTEREST
            };
            if self
                .common
                .epoll
                .add(e.conn.fd(), key as u64, interest)
                .is_err()
            {
                self.close(key, ctx);
                return;
            }
            e.set_writable_armed(want_write);
            if next != Next::WaitBuffer {
                return;
            }
        }
        self.settle(key, next, ctx);
    }

    /// Accepts up to `accept_burst` connections. The listener is
    /// level-triggered, so connections left in the queue are reported again
    /// at the next wait: while they come one at a time (the usual case), one
    /// `accept4` per event is enough, with no second one that only says
    /// EAGAIN (nginx's `multi_accept off`). When an event takes its whole
    /// burst and the listener is ready again at the very next wait, and
    /// that wait did not block (`at_once`), twice in a row, a backlog is
    /// building: the burst doubles (up to `ACCEPT_BATCH`); otherwise it
    /// starts again from one. (Without `at_once`, connections that come one
    /// at a time, each answered in its accept's turn, would look like a
    /// backlog: every turn is a listener's; and once, the next client may
    /// just have been quicker than this thread.)
    #[inline]
    fn accept_burst(&mut self, ctx: &mut ThreadCtx, turn: u64, at_once: bool) {
        if at_once && self.burst_taken_at == turn.wrapping_sub(1) {
            self.backlog_turns = self.backlog_turns.saturating_add(1);
        } else {
            self.backlog_turns = 0;
        }
        self.accept_burst = if self.backlog_turns >= 2 {
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
                    let conn = self.common.adopt(fd, &peer, ctx.now);
                    let key = self.conns.insert(Entry::new(conn));
                    self.start(key, ctx);
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
            if self.conns.get(key).is_some_and(|e| e.conn.is_evictable()) {
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
                    || self.conns.iter().any(|(_, e)| e.conn.is_evictable())
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
        if let Some(e) = self.conns.try_remove(key) {
            self.common.close(e.conn, key as u64, ctx);
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
        let Some(e) = self.conns.get_mut(key) else {
            // An event for a connection closed earlier in this batch.
            return;
        };
        if e.unread() {
            // Its first event: were its bytes there when it was registered?
            let next_wait = e.take_unread().wrapping_add(1) == self.waits;
            let bytes = next_wait
                && ctx.now.saturating_duration_since(self.wait_began) < event_loop::AT_ONCE;
            self.early_read.found(bytes);
        }
        ctx.key = token;
        let next = f(&mut e.conn, &self.common.shared, ctx);
        // Edge-triggered: keeping it needs nothing (the common case, kept
        // inline; the rest is out of line).
        if next != (Next::Keep { want_write: false }) {
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
        for (key, e) in self.conns.iter_mut() {
            ctx.key = key as u64;
            let next = f(&mut e.conn, &self.common.shared, ctx);
            if next != (Next::Keep { want_write: false }) {
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
        let at_once = self.at_once(ctx);
        self.accept_burst(ctx, turn, at_once);
    }

    #[inline]
    fn waited(&mut self, began: Instant) {
        self.wait_began = began;
        self.waits = self.waits.wrapping_add(1);
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
