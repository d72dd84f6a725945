//! The only code that talks to the kernel: epoll, eventfd, sockets and their
//! options, signals, CPU affinity and rlimits.
//!
//! Every fd is wrapped in an `OwnedFd` (close-on-exec) the moment it exists,
//! every call returns `io::Result` with the errno preserved (`EAGAIN` is
//! `io::ErrorKind::WouldBlock`), and the calls go through rustix's and
//! signal-hook's safe wrappers. The `unsafe` code is marking the epoll
//! [`Events`] buffer `Send + Sync` (it holds only integers), one call
//! of glibc's `malloc_trim` ([`heap`]), and in [`listenfd`] taking
//! ownership of inherited fds and placing fds in a child before exec. Nothing
//! here owns a thread; the runtime decides who calls what (see `DESIGN.md`:
//! only a connection's owner reads, writes, re-arms or closes it).
//!
//! - [`epoll`]: [`Epoll`], [`Interest`], [`Events`], [`EpollEvent`].
//! - [`eventfd`]: [`EventFd`], the wakeup that cannot be lost.
//! - [`socket`]: [`Listener`], [`ListenOptions`] and I/O on `BorrowedFd`.
//! - [`signal`]: [`Signals`], graceful stop on SIGINT/SIGTERM.
//! - [`affinity`]: [`pin_current_thread`], [`available_cpus`].
//! - [`rlimit`]: [`raise_nofile_limit`], [`nofile_limit`].
//! - [`heap`]: [`release_free_heap`], freed memory back to the kernel.
//! - [`listenfd`]: listening sockets inherited from systemd or handed over
//!   to a successor process (zero-downtime restart).
//! - [`sendfile`]: file bytes to a socket (static files sent as they are).

pub mod affinity;
pub mod epoll;
pub mod eventfd;
pub mod heap;
pub mod listenfd;
pub mod rlimit;
pub mod sendfile;
pub mod signal;
pub mod socket;

pub use affinity::{available_cpus, lower_current_thread_priority, pin_current_thread};
#[cfg(test)]
pub(crate) use epoll::Event;
pub use epoll::{Epoll, EpollEvent, Events, Interest};
pub use eventfd::EventFd;
pub use heap::release_free_heap;
pub use rlimit::{nofile_limit, raise_nofile_limit};
pub use signal::Signals;
pub use socket::{ListenOptions, Listener};
