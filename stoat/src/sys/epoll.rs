//! An epoll instance: registration of fds with a `u64` token and an
//! [`Interest`], and waiting for readiness into a fixed-capacity [`Events`]
//! buffer.
//!
//! Contract:
//! - [`Epoll`] owns its fd (close-on-exec) and is `Send + Sync`: every method
//!   takes `&self`, so several network threads may share one instance and
//!   `wait` on it at once (the `shared` model). With [`Interest::ONESHOT`] the
//!   kernel reports a ready fd to exactly one waiter and disarms it; that
//!   thread owns it until it re-arms it with [`Epoll::modify`] (the `shared`
//!   model's mailbox). An edge-triggered fd shared by several waiters may be
//!   reported to one while another still handles its last event: the
//!   `shared` model's connections sort that out with a claim per slot.
//! - `epoll_ctl` on an fd that another thread may close is a race (fd reuse):
//!   only the owner of a connection may `modify`, `delete` or close it.
//!   Closing an fd removes it from the interest list once no other duplicate
//!   of it is open, so an explicit `delete` before close is optional.
//! - [`Epoll::wait`] returns `Ok(0)` when interrupted by a signal (`EINTR`)
//!   and on timeout; the caller just loops. Timeouts round up to whole
//!   milliseconds (never wake early) and are capped at `i32::MAX` ms.
//! - [`Events`] never grows: a wait reports at most `capacity` events; the
//!   rest stay pending for the next wait.

use std::fmt;
use std::io;
use std::ops::{BitOr, BitOrAssign};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::Timespec;

/// An epoll instance. Cheap to share by reference between threads.
#[derive(Debug)]
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    /// Creates an epoll instance (`epoll_create1(EPOLL_CLOEXEC)`).
    pub fn new() -> io::Result<Epoll> {
        let fd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        Ok(Epoll { fd })
    }

    /// Registers `fd` with `token` (`EPOLL_CTL_ADD`). Fails with `EEXIST` if
    /// it is already registered.
    pub fn add(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        epoll::add(&self.fd, fd, EventData::new_u64(token), interest.0)?;
        Ok(())
    }

    /// Changes the token and interest of a registered `fd`
    /// (`EPOLL_CTL_MOD`). This is how a `ONESHOT` registration is re-armed.
    pub fn modify(&self, fd: impl AsFd, token: u64, interest: Interest) -> io::Result<()> {
        epoll::modify(&self.fd, fd, EventData::new_u64(token), interest.0)?;
        Ok(())
    }

    /// Removes `fd` from the interest list (`EPOLL_CTL_DEL`).
    pub fn delete(&self, fd: impl AsFd) -> io::Result<()> {
        epoll::delete(&self.fd, fd)?;
        Ok(())
    }

    /// Waits until at least one registered fd is ready, `timeout` passes
    /// (`None` waits forever) or a signal interrupts the wait. Fills `events`
    /// (replacing its previous content) and returns how many arrived; `Ok(0)`
    /// on timeout or `EINTR`.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        events.buf.clear();
        let timeout = timeout.map(clamp_timeout);
        match epoll::wait(&self.fd, spare_capacity(&mut events.buf), timeout.as_ref()) {
            Ok(n) => Ok(n),
            Err(rustix::io::Errno::INTR) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Which readiness to be told about, and how (`EPOLL*` flags). Combine with
/// `|`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interest(EventFlags);

impl Interest {
    /// `EPOLLIN`: readable (data, a pending connection, or end of stream).
    pub const READ: Interest = Interest(EventFlags::IN);
    /// `EPOLLOUT`: writable.
    pub const WRITE: Interest = Interest(EventFlags::OUT);
    /// `EPOLLRDHUP`: the peer shut down its writing half (FIN received).
    pub const RDHUP: Interest = Interest(EventFlags::RDHUP);
    /// `EPOLLONESHOT`: report once to one waiter, then disarm until
    /// [`Epoll::modify`] re-arms it.
    pub const ONESHOT: Interest = Interest(EventFlags::ONESHOT);
    /// `EPOLLET`: edge-triggered; report only on a change of state.
    pub const EDGE: Interest = Interest(EventFlags::ET);
    /// `EPOLLEXCLUSIVE`: wake one of the epoll instances that share this fd
    /// (e.g. one listener in several per-thread epolls). Only valid with
    /// [`Epoll::add`], and not together with `ONESHOT`.
    pub const EXCLUSIVE: Interest = Interest(EventFlags::EXCLUSIVE);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Interest) -> bool {
        self.0.contains(other.0)
    }

    /// The union of both sets of flags.
    pub const fn union(self, other: Interest) -> Interest {
        Interest(self.0.union(other.0))
    }

    /// The raw `EPOLL*` bits.
    pub const fn bits(self) -> u32 {
        self.0.bits()
    }
}

impl BitOr for Interest {
    type Output = Interest;

    fn bitor(self, rhs: Interest) -> Interest {
        self.union(rhs)
    }
}

impl BitOrAssign for Interest {
    fn bitor_assign(&mut self, rhs: Interest) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Interest({:?})", self.0)
    }
}

/// A fixed-capacity buffer of readiness events, one per waiting thread.
pub struct Events {
    buf: Vec<epoll::Event>,
}

impl Events {
    /// A buffer that receives at most `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// How many events one wait can return.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the last wait returned no event.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Event> + '_ {
        self.buf.iter().map(|e| Event {
            token: e.data.u64(),
            flags: e.flags,
        })
    }
}

// rustix's `epoll::Event` is neither `Send` nor `Sync` only because its
// `EventData` union may hold a `*mut c_void`. This module stores and reads
// tokens only as `u64` (`EventData::new_u64`, `EventData::u64`), never as
// pointers, so the buffer is plain data that may move to, and be read from,
// any thread; each runtime thread builds or receives its own `Events`.
#[allow(unsafe_code)]
// SAFETY: the events hold only integers (see above); no pointer is ever
// stored in or dereferenced from them.
unsafe impl Send for Events {}
#[allow(unsafe_code)]
// SAFETY: as for `Send`; `&Events` only allows copying the integers out.
unsafe impl Sync for Events {}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The crate's short name for [`EpollEvent`].
pub(crate) use self::EpollEvent as Event;

/// One readiness event: the registration's token and what happened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EpollEvent {
    token: u64,
    flags: EventFlags,
}

impl Event {
    /// The token given to [`Epoll::add`] or [`Epoll::modify`].
    pub fn token(&self) -> u64 {
        self.token
    }

    /// `EPOLLIN`: a read will not block (it may return data, 0 for end of
    /// stream, or an error).
    pub fn is_readable(&self) -> bool {
        self.flags.contains(EventFlags::IN)
    }

    /// `EPOLLOUT`: a write will not block.
    pub fn is_writable(&self) -> bool {
        self.flags.contains(EventFlags::OUT)
    }

    /// `EPOLLHUP`: both directions are closed (always reported, even if not
    /// asked for).
    pub fn is_hup(&self) -> bool {
        self.flags.contains(EventFlags::HUP)
    }

    /// `EPOLLRDHUP`: the peer shut down its writing half.
    pub fn is_rdhup(&self) -> bool {
        self.flags.contains(EventFlags::RDHUP)
    }

    /// `EPOLLERR`: an error is pending on the fd (always reported); read it
    /// with `take_error` (`SO_ERROR`).
    pub fn is_error(&self) -> bool {
        self.flags.contains(EventFlags::ERR)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("token", &self.token)
            .field("flags", &self.flags)
            .finish()
    }
}

/// Converts a timeout to a `Timespec` that plain `epoll_pwait` accepts
/// (milliseconds fitting an `i32`), so rustix never needs `epoll_pwait2`.
fn clamp_timeout(timeout: Duration) -> Timespec {
    const MAX: Duration = Duration::from_millis(i32::MAX as u64 - 1);
    let t = timeout.min(MAX);
    Timespec {
        // Cannot overflow: `t` is below 2^31 milliseconds.
        tv_sec: t.as_secs() as i64,
        tv_nsec: i64::from(t.subsec_nanos()),
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::sys::EventFd;

    const DEADLINE: Duration = Duration::from_secs(10);

    /// Waits until an event with `token` arrives, or panics at the deadline.
    fn wait_for(ep: &Epoll, events: &mut Events, token: u64) -> Event {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event for token {token} in time");
            ep.wait(events, Some(left)).unwrap();
            if let Some(e) = events.iter().find(|e| e.token() == token) {
                return e;
            }
        }
    }

    #[test]
    fn epoll_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Epoll>();
        check::<Events>();
    }

    #[test]
    fn eventfd_wakeup_from_another_thread_arrives() {
        let ep = Epoll::new().unwrap();
        let efd = EventFd::new().unwrap();
        ep.add(&efd, 7, Interest::READ).unwrap();
        let mut events = Events::with_capacity(8);
        thread::scope(|s| {
            s.spawn(|| efd.notify().unwrap());
            let e = wait_for(&ep, &mut events, 7);
            assert!(e.is_readable());
            assert!(!e.is_writable() && !e.is_error() && !e.is_hup());
        });
        assert_eq!(efd.drain().unwrap(), 1);
    }

    #[test]
    fn waiters_on_a_shared_epoll_in_other_threads_are_woken() {
        let ep = Epoll::new().unwrap();
        let efd = EventFd::new().unwrap();
        ep.add(&efd, 1, Interest::READ | Interest::ONESHOT).unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(|| {
                let mut events = Events::with_capacity(4);
                wait_for(&ep, &mut events, 1).token()
            });
            efd.notify().unwrap();
            assert_eq!(waiter.join().unwrap(), 1);
        });
    }

    #[test]
    fn oneshot_fires_once_until_rearmed() {
        let ep = Epoll::new().unwrap();
        let efd = EventFd::new().unwrap();
        let interest = Interest::READ | Interest::ONESHOT;
        ep.add(&efd, 3, interest).unwrap();
        efd.notify().unwrap();
        let mut events = Events::with_capacity(4);
        assert!(wait_for(&ep, &mut events, 3).is_readable());

        // Still readable (not drained), but disarmed: nothing is reported.
        assert_eq!(
            ep.wait(&mut events, Some(Duration::from_millis(50)))
                .unwrap(),
            0
        );
        assert!(events.is_empty());

        // Re-arming with a new token reports the pending readiness again.
        ep.modify(&efd, 4, interest).unwrap();
        assert!(wait_for(&ep, &mut events, 4).is_readable());
    }

    #[test]
    fn zero_timeout_returns_at_once_and_events_are_bounded() {
        let ep = Epoll::new().unwrap();
        let fds: Vec<EventFd> = (0..5).map(|_| EventFd::new().unwrap()).collect();
        for (i, fd) in fds.iter().enumerate() {
            ep.add(fd, i as u64, Interest::READ).unwrap();
        }
        let mut events = Events::with_capacity(2);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        for fd in &fds {
            fd.notify().unwrap();
        }
        let n = ep.wait(&mut events, Some(DEADLINE)).unwrap();
        assert_eq!(n, 2);
        assert_eq!(events.len(), 2);
        assert_eq!(events.capacity(), 2);
    }

    #[test]
    fn delete_stops_reports_and_double_add_fails() {
        let ep = Epoll::new().unwrap();
        let efd = EventFd::new().unwrap();
        ep.add(&efd, 9, Interest::READ).unwrap();
        let err = ep.add(&efd, 9, Interest::READ).unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::EXIST.raw_os_error())
        );
        ep.delete(&efd).unwrap();
        efd.notify().unwrap();
        let mut events = Events::with_capacity(2);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
    }

    #[test]
    fn huge_timeouts_are_clamped() {
        let t = clamp_timeout(Duration::MAX);
        assert!(t.tv_sec < i64::from(i32::MAX) / 1000 + 1);
        let t = clamp_timeout(Duration::from_micros(1500));
        assert_eq!((t.tv_sec, t.tv_nsec), (0, 1_500_000));
    }

    #[test]
    fn interest_combines() {
        let i = Interest::READ | Interest::RDHUP | Interest::ONESHOT;
        assert!(i.contains(Interest::READ | Interest::ONESHOT));
        assert!(!i.contains(Interest::WRITE));
        let mut j = Interest::WRITE;
        j |= Interest::EDGE;
        assert_eq!(j.bits(), EventFlags::OUT.bits() | EventFlags::ET.bits());
    }
}
