//! The `shared` model: `accept_threads` wait for connections; every new
//! connection goes into one table and is registered once on one epoll,
//! edge-triggered, with `EPOLLIN | EPOLLRDHUP | EPOLLET` (`EPOLLOUT` added
//! once, the first time its output backs up, as in `per_core`); whichever
//! network thread receives its event drives it. It is never re-armed: a
//! request costs a `read`, a `write` and a share of an `epoll_wait`, as in
//! `per_core` (with `EPOLLONESHOT` it cost an `epoll_ctl(MOD)` more).
//!
//! Contract (ownership): an edge-triggered event may come to a thread
//! while another drives its connection. Each slot has a [`Claim`]: the
//! thread whose event finds it unclaimed drives the connection; one whose
//! event finds it claimed counts its event there and returns at once (it
//! never waits for a driver: a handler that blocks holds no other
//! thread), and the driver, before it lets go, sees the count changed and
//! drives once more, so no event is lost (loom model below). At most one
//! thread drives a connection. The slot's lock (uncontended on the
//! request path: only the claim's holder takes it there) turns that into
//! a guarantee the compiler checks, and also covers the timer sweep, which
//! takes a slot only with `try_lock` (never waiting on a driver). A slot's
//! generation is part of the epoll token, so an event that raced a close is
//! recognised as stale and dropped even when the fd number and slot were
//! reused. Only the thread holding the slot closes the fd.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags};

use crate::runtime::connection::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::control::{Control, FD_BACKOFF, SWEEP};
use crate::runtime::event_loop::{self, Common, Model, MAILBOX};
use crate::sys::socket::{is_fd_limit, is_transient_accept};
use crate::sys::{EventFd, Interest, Listener};

use self::claim::Claim;

/// Most slots looked at to find an idle connection to evict.
const EVICT_SCAN: usize = 1024;
/// A connection's registration: edge-triggered, never re-armed. Without
/// write interest, so that registering a socket (always writable) raises no
/// event that only says so.
const CONN_INTEREST: Interest = Interest::READ.union(Interest::RDHUP).union(Interest::EDGE);
/// The registration from the first time a connection's output backs up
/// (`Next::Keep { want_write: true }`); kept from then on.
const CONN_INTEREST_WRITE: Interest = CONN_INTEREST.union(Interest::WRITE);
/// `Connection::model[0]`'s bit: its registration has write interest.
const WRITABLE_ARMED: u8 = 1;
/// The mailbox's: one thread drains it at a time and re-arms it.
const MAILBOX_INTEREST: Interest = Interest::READ.union(Interest::ONESHOT);

/// One slot of the connection table.
#[derive(Default)]
struct Slot {
    generation: u32,
    conn: Option<Connection>,
}

/// One entry of the table: who drives its connection now, and the slot.
#[derive(Default)]
struct Entry {
    claim: Claim,
    slot: parking_lot::Mutex<Slot>,
}

/// Everything the threads of the shared model share.
pub(crate) struct Core {
    common: Common,
    slots: Box<[Entry]>,
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

/// A held slot. Its lock (`parking_lot`'s) does not poison: a connection
/// is plain data a later drive can handle after a panic.
type SlotGuard<'a> = parking_lot::MutexGuard<'a, Slot>;

impl Core {
    pub fn new(
        shared: Arc<Shared>,
        control: Arc<Control>,
        waker: Arc<EventFd>,
        max_connections: usize,
        threads: usize,
    ) -> io::Result<Core> {
        let common = Common::new(shared, control, waker, max_connections, MAILBOX_INTEREST)?;
        let slots = (0..max_connections).map(|_| Entry::default()).collect();
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
                    self.wait_acceptable(&mut poll_set);
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
            let mut s = self.slots[slot as usize].slot.lock();
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
    fn wait_acceptable(&self, fds: &mut [PollFd<'_>]) {
        // With the stop's waker in the set (never drained once notified, so
        // a stop is never missed), no timeout: a wait costs one `poll`
        // however long it lasts. Without it, bounded, so the stop is still
        // seen. Errors (EINTR) retry.
        let timeout = if self.common.control.accept_waker.is_some() {
            None
        } else {
            rustix::event::Timespec::try_from(SWEEP).ok()
        };
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
            let Some(mut s) = self.slots[i].slot.try_lock() else {
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

    /// Settles what the connection in the held slot asked for:
    /// edge-triggered, so `Keep` needs nothing, unless its output backed up
    /// for the first time (write interest is added then, once).
    #[inline]
    fn settle(&self, slot: u32, s: &mut SlotGuard<'_>, next: Next, ctx: &mut ThreadCtx) {
        match next {
            Next::Keep { want_write: false } => {}
            Next::Keep { want_write: true } => self.arm_write(slot, s, ctx),
            // Waits in the queue until a buffer is free; an event meanwhile
            // finds it waiting and leaves it there; timeouts still run.
            Next::WaitBuffer => {
                let t = token(slot, s.generation);
                if let Some(conn) = s.conn.as_mut() {
                    self.common.park(conn, t);
                }
            }
            Next::Close => self.close_held(slot, s, ctx),
        }
    }

    /// Adds write interest to the held connection's registration, once:
    /// an `EPOLL_CTL_MOD` reports the socket if it is writable already, so
    /// no edge is lost.
    #[inline(never)]
    fn arm_write(&self, slot: u32, s: &mut SlotGuard<'_>, ctx: &mut ThreadCtx) {
        let t = token(slot, s.generation);
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        if conn.model[0] & WRITABLE_ARMED != 0 {
            return;
        }
        if self
            .common
            .epoll
            .modify(conn.fd(), t, CONN_INTEREST_WRITE)
            .is_err()
        {
            self.close_held(slot, s, ctx);
            return;
        }
        conn.model[0] |= WRITABLE_ARMED;
    }

    /// The claim's holder drives the held slot's connection once more for
    /// events counted while it drove (`state`, the claim's): whatever
    /// connection the slot holds now (an event of an older one, closed
    /// meanwhile, costs at most a read that finds nothing).
    #[inline(never)]
    fn drive_again(&self, slot: u32, s: &mut SlotGuard<'_>, state: u64, ctx: &mut ThreadCtx) {
        let generation = s.generation;
        let Some(conn) = s.conn.as_mut() else {
            return;
        };
        ctx.key = token(slot, generation);
        let peer_closed = claim::peer_closed(state, generation);
        let next = conn.drive(&self.common.shared, ctx, peer_closed);
        self.settle(slot, s, next, ctx);
    }

    fn close_held(&self, slot: u32, s: &mut SlotGuard<'_>, ctx: &mut ThreadCtx) {
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
        let Some(e) = self.core.slots.get(slot as usize) else {
            return;
        };
        let mut s = e.slot.lock();
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

    #[inline]
    fn event<F>(&mut self, token: u64, peer_closed: bool, ctx: &mut ThreadCtx, f: F)
    where
        F: FnOnce(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        let (slot, generation) = untoken(token);
        let Some(e) = self.core.slots.get(slot as usize) else {
            return;
        };
        // Claimed: its driver drives once more for this event.
        let Some(mut seen) = e.claim.arrive(peer_closed.then_some(generation)) else {
            return;
        };
        let mut s = e.slot.lock();
        // A stale token (its connection closed) drives nothing.
        if s.generation == generation {
            if let Some(conn) = s.conn.as_mut() {
                ctx.key = token;
                let next = f(conn, &self.core.common.shared, ctx);
                self.core.settle(slot, &mut s, next, ctx);
            }
        }
        while let Err(now) = e.claim.release(seen) {
            seen = now;
            self.core.drive_again(slot, &mut s, seen, ctx);
        }
    }

    fn each<F>(&mut self, ctx: &mut ThreadCtx, mut f: F)
    where
        F: FnMut(&mut Connection, &Shared, &mut ThreadCtx) -> Next,
    {
        // This thread's share: every `threads`-th slot of those in use.
        let used = self.core.used.load(Ordering::Relaxed);
        for i in (self.index..used).step_by(self.core.threads) {
            // Never wait for an owner: a busy connection is alive anyway.
            let Some(mut s) = self.core.slots[i].slot.try_lock() else {
                continue;
            };
            ctx.key = token(i as u32, s.generation);
            let Some(conn) = s.conn.as_mut() else {
                continue;
            };
            match f(conn, &self.core.common.shared, ctx) {
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

/// Who drives a slot's connection, for its edge-triggered events.
///
/// Contract: every event calls [`Claim::arrive`]; the one that finds the
/// claim free gets it (`Some`) and drives; the others only count themselves
/// and return. The holder calls [`Claim::release`] with the state it last
/// saw: it fails, with the newer state, if events were counted since, and
/// the holder drives again (their work is the socket's state, which a drive
/// reads whole, so one more drive serves any number of them). So every
/// event is followed by a drive that began after it, and no two threads
/// drive at once. Who holds the slot's lock without the claim makes an
/// event's claimant wait for it, as the one-shot design did: the sweep and
/// an eviction briefly, a link's delivery and a retry for a buffer for the
/// drive that follows (they could take the claim too, with a drive again
/// that delivers the connection's link: not done).
///
/// The state: the low 32 bits count events since the claim was taken (0:
/// free); the high 32 mark the last event that said the peer closed, by its
/// connection's generation (`HUP_MARK` set), so a drive again reads to the
/// end of the stream for that connection only, not for a newer one in the
/// slot.
mod claim {
    use super::sync::atomic::{AtomicU64, Ordering};

    /// Set in the mark of a peer's close, which keeps 31 bits of the
    /// generation (0 is no mark).
    const HUP_MARK: u32 = 1 << 31;

    fn mark(generation: u32) -> u64 {
        u64::from(HUP_MARK | (generation & !HUP_MARK)) << 32
    }

    /// Whether `state` (the claim's, when a release failed) says the
    /// peer of the connection of this `generation` closed.
    pub(super) fn peer_closed(state: u64, generation: u32) -> bool {
        state & !0xffff_ffff == mark(generation)
    }

    pub(super) struct Claim {
        state: AtomicU64,
    }

    impl Default for Claim {
        fn default() -> Claim {
            Claim {
                state: AtomicU64::new(0),
            }
        }
    }

    impl Claim {
        /// An event (`hup`: it said the peer of the connection of that
        /// generation closed). `Some(state)`: the caller holds the claim
        /// now, having seen `state`; `None`: a holder will drive again.
        #[inline]
        pub fn arrive(&self, hup: Option<u32>) -> Option<u64> {
            let (prev, now) = match hup {
                None => {
                    let prev = self.state.fetch_add(1, Ordering::AcqRel);
                    (prev, prev + 1)
                }
                Some(generation) => {
                    let mut cur = self.state.load(Ordering::Relaxed);
                    loop {
                        let next = mark(generation) | u64::from((cur as u32).wrapping_add(1));
                        match self.state.compare_exchange_weak(
                            cur,
                            next,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        ) {
                            Ok(prev) => break (prev, next),
                            Err(seen) => cur = seen,
                        }
                    }
                }
            };
            (prev as u32 == 0).then_some(now)
        }

        /// The holder is done with what it saw (`seen`): lets go (`Ok`), or
        /// `Err(state)`, events came since: it drives again, still holding.
        #[inline]
        pub fn release(&self, seen: u64) -> Result<(), u64> {
            match self
                .state
                .compare_exchange(seen, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => Ok(()),
                Err(now) => Err(now),
            }
        }
    }
}

/// std, or loom in this crate's tests built with `--cfg stoat_loom`
/// (`.ci/loom`): the same names either way, so the model checks this code.
mod sync {
    #[cfg(all(test, stoat_loom))]
    pub(super) use loom::sync::atomic;
    #[cfg(not(all(test, stoat_loom)))]
    pub(super) use std::sync::atomic;
}

#[cfg(all(test, not(stoat_loom)))]
mod tests {
    use super::claim::{peer_closed, Claim};

    #[test]
    fn claim_counts_events_while_held() {
        let c = Claim::default();
        let seen = c.arrive(None).expect("free: taken");
        assert!(c.arrive(None).is_none(), "held: counted");
        let again = c.release(seen).expect_err("an event came meanwhile");
        assert!(!peer_closed(again, 7));
        c.release(again).expect("nothing since");
        assert!(c.arrive(None).is_some(), "free again");
    }

    #[test]
    fn claim_marks_a_peer_close_for_its_generation_only() {
        let c = Claim::default();
        let seen = c.arrive(None).unwrap();
        assert!(c.arrive(Some(7)).is_none());
        let state = c.release(seen).unwrap_err();
        assert!(peer_closed(state, 7));
        assert!(!peer_closed(state, 8), "a newer connection in the slot");
        c.release(state).unwrap();
        // Taken by a close: the mark is in what the taker saw.
        let seen = c.arrive(Some(9)).unwrap();
        assert!(peer_closed(seen, 9));
        c.release(seen).unwrap();
        let seen = c.arrive(None).unwrap();
        assert!(!peer_closed(seen, 9), "released: the mark went with it");
    }
}

#[cfg(all(test, stoat_loom))]
mod loom_models {
    use super::claim::{peer_closed, Claim};
    use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    /// The generation of the model's connection.
    const GEN: u32 = 3;

    /// A socket as the model sees it: bytes that came (`sent`), bytes a
    /// drive took (`taken`), the peer's close (`closed`) and whether a
    /// drive read to the end after it (`eof_read`), and a flag that says
    /// someone is driving.
    #[derive(Default)]
    struct Conn {
        claim: Claim,
        sent: AtomicUsize,
        taken: AtomicUsize,
        closed: AtomicBool,
        eof_read: AtomicBool,
        driving: AtomicBool,
    }

    impl Conn {
        /// A drive: reads everything there, alone; to the end of the
        /// stream only if told the peer closed (a short read stops it
        /// otherwise).
        fn drive(&self, peer_closed: bool) {
            assert!(
                !self.driving.swap(true, Ordering::SeqCst),
                "two threads drive one connection"
            );
            let n = self.sent.load(Ordering::SeqCst);
            self.taken.store(n, Ordering::SeqCst);
            if peer_closed && self.closed.load(Ordering::SeqCst) {
                self.eof_read.store(true, Ordering::SeqCst);
            }
            self.driving.store(false, Ordering::SeqCst);
        }

        /// Bytes (and with `hup` the end of the stream) come, then their
        /// edge-triggered event reaches a thread, which drives or leaves
        /// it to the holder (`event_loop`'s `Model::event` for `shared`).
        fn event(&self, hup: bool) {
            self.sent.fetch_add(1, Ordering::SeqCst);
            if hup {
                self.closed.store(true, Ordering::SeqCst);
            }
            let Some(mut seen) = self.claim.arrive(hup.then_some(GEN)) else {
                return;
            };
            self.drive(hup);
            while let Err(now) = self.claim.release(seen) {
                seen = now;
                self.drive(peer_closed(seen, GEN));
            }
        }
    }

    /// Three events on three threads (each its own bytes; the last one's
    /// with the peer's close when `hup`): whatever the interleaving, one
    /// thread drives at a time, the last bytes are read by a drive (no
    /// event lost while another thread held it), the close by a drive
    /// that reads to the end, and the claim is let go.
    fn three_events(hup: bool) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(move || {
            let c = Arc::new(Conn::default());
            let threads: Vec<_> = [false, hup]
                .into_iter()
                .map(|hup| {
                    let c = c.clone();
                    thread::spawn(move || c.event(hup))
                })
                .collect();
            c.event(false);
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(c.taken.load(Ordering::SeqCst), 3, "an event was lost");
            assert_eq!(
                c.eof_read.load(Ordering::SeqCst),
                hup,
                "the peer's close was not read to the end"
            );
            assert!(c.claim.arrive(None).is_some(), "the claim was let go");
        });
    }

    #[test]
    fn no_event_is_lost_and_one_thread_drives() {
        three_events(false);
    }

    #[test]
    fn a_peer_close_left_to_the_holder_is_read_to_the_end() {
        three_events(true);
    }
}
