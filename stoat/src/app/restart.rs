//! Restarting without dropping a request: the listening sockets pass from
//! the running process to its successor (`sys::listenfd`), so the port is
//! never closed and no connection waiting in its queue is lost.
//!
//! Contract (see README, "Restarting without downtime"):
//! - SIGUSR2 to a process in [`Server::run`]: it starts its own program
//!   again (same arguments, `argv[0]` looked up as the shell would) with
//!   its listeners as inherited fds ([`hand_over`]). The successor binds
//!   nothing: [`Server::start`] takes the inherited sockets. Once the
//!   successor says it has taken over ([`notify_ready`]: `Server::run`
//!   says so as soon as it serves), the old process stops accepting,
//!   answers what it has (`Connection: close`, idle connections closed
//!   after a grace, see `runtime`) and exits. If the successor fails or does
//!   not say so within [`HANDOVER_TIMEOUT`], the old process serves on.
//! - A program that owns something only one process may hold (Weasel's
//!   store) calls [`notify_ready`] once its configuration is checked, then
//!   [`wait_predecessor_exit`] before opening it: the old process drains
//!   and exits meanwhile, and new connections wait in the kernel's queue of
//!   the same socket until the successor serves.
//! - Under systemd, socket activation gives the same sockets to every
//!   start of the service (`LISTEN_FDS`), so `systemctl restart` loses no
//!   connection either: they wait in the socket's queue.
//!
//! [`Server::run`]: crate::app::Server::run
//! [`Server::start`]: crate::app::Server::start

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use crate::runtime::ServerHandle;
use crate::sys::listenfd::{self, Handover, HandoverOutcome};

/// How long the old process waits for its successor to take over.
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(60);

/// Tells the process that handed its listeners over to us that we take
/// over now; a no-op in a process that was not started by a handover.
/// [`Server::run`](crate::app::Server::run) calls it once it serves.
pub fn notify_ready() -> io::Result<()> {
    listenfd::notify_ready()
}

/// Waits, at most `timeout`, for the process that handed over to us to
/// exit; `Ok(true)` once it has (or if there is none).
pub fn wait_predecessor_exit(timeout: Duration) -> io::Result<bool> {
    listenfd::wait_predecessor_exit(timeout)
}

/// Starts this program again with `handle`'s listeners and waits until it
/// takes over: `Ok(true)`: stop now (the successor serves the same
/// sockets); `Ok(false)`: it failed or timed out (logged), keep serving.
pub fn hand_over(handle: &ServerHandle) -> io::Result<bool> {
    let fds = handle.listener_fds()?;
    if fds.is_empty() {
        return Ok(false);
    }
    let mut args = std::env::args_os();
    let program: OsString = args
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no argv[0] to start again"))?;
    let borrowed: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
    let handover = Handover::spawn(&program, args, &borrowed)?;
    let pid = handover.pid();
    eprintln!("stoat: handing the listeners over to pid {pid}");
    drop(borrowed);
    drop(fds);
    match handover.wait_ready(HANDOVER_TIMEOUT)? {
        HandoverOutcome::Ready { pid } => {
            eprintln!("stoat: pid {pid} took over; draining");
            Ok(true)
        }
        HandoverOutcome::Failed(status) => {
            eprintln!("stoat: the successor (pid {pid}) failed ({status:?}); still serving");
            Ok(false)
        }
        HandoverOutcome::TimedOut => {
            eprintln!(
                "stoat: the successor (pid {pid}) did not take over within {HANDOVER_TIMEOUT:?} (killed); still serving"
            );
            Ok(false)
        }
    }
}
