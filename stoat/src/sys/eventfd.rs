//! An eventfd: a counter in the kernel that makes an fd readable while it is
//! non-zero. The cross-thread wakeup that cannot be lost.
//!
//! Contract:
//! - Non-blocking and close-on-exec; `Send + Sync`, so any thread may
//!   [`EventFd::notify`] through `&self`.
//! - A notify that happens before, during or after the owner's epoll wait is
//!   never lost: the counter stays non-zero (and the fd readable) until
//!   [`EventFd::drain`] resets it. The owner must therefore drain *before* it
//!   looks at the work that notifiers published (drain, then check queues),
//!   so a notify racing with the check leaves the fd readable for the next
//!   wait.
//! - `notify` never blocks: if the counter would overflow (`EAGAIN`), a
//!   wakeup is already pending and the notify succeeds.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};
use rustix::io::Errno;

/// A non-blocking, close-on-exec eventfd used as a wakeup.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates an eventfd with counter 0 (not readable).
    pub fn new() -> io::Result<EventFd> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter, making the fd readable. Never blocks.
    pub fn notify(&self) -> io::Result<()> {
        loop {
            match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
                Ok(_) => return Ok(()),
                // The counter is at its maximum: a wakeup is already pending.
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads and resets the counter; returns how many notifies it held
    /// (0 if none).
    pub fn drain(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(8) => return Ok(u64::from_ne_bytes(buf)),
                Ok(n) => {
                    // eventfd(2) reads are always exactly 8 bytes.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("eventfd read returned {n} bytes"),
                    ));
                }
                Err(Errno::AGAIN) => return Ok(0),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_on_empty_is_zero() {
        let efd = EventFd::new().unwrap();
        assert_eq!(efd.drain().unwrap(), 0);
    }

    #[test]
    fn notifies_accumulate_and_drain_resets() {
        let efd = EventFd::new().unwrap();
        efd.notify().unwrap();
        efd.notify().unwrap();
        efd.notify().unwrap();
        assert_eq!(efd.drain().unwrap(), 3);
        assert_eq!(efd.drain().unwrap(), 0);
    }

    #[test]
    fn notify_on_a_full_counter_succeeds() {
        let efd = EventFd::new().unwrap();
        // The counter's maximum is u64::MAX - 1.
        rustix::io::write(&efd, &(u64::MAX - 1).to_ne_bytes()).unwrap();
        efd.notify().unwrap();
        assert_eq!(efd.drain().unwrap(), u64::MAX - 1);
    }

    #[test]
    fn is_close_on_exec_and_nonblocking() {
        let efd = EventFd::new().unwrap();
        let fd_flags = rustix::io::fcntl_getfd(&efd).unwrap();
        assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC));
        let fl = rustix::fs::fcntl_getfl(&efd).unwrap();
        assert!(fl.contains(rustix::fs::OFlags::NONBLOCK));
    }
}
