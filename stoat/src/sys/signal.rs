//! Signals delivered as readable bytes on an fd (a self-pipe), so an event
//! loop learns of them through epoll, and the graceful-stop policy for
//! SIGINT and SIGTERM.
//!
//! Contract:
//! - [`Signals::new`] registers, for each given signal, a handler (from
//!   `signal-hook`) that writes one byte to a non-blocking socket pair. The
//!   read end is [`Signals::as_fd`]: register it in an epoll with
//!   `Interest::READ`, or block in [`Signals::wait`]. [`Signals::drain`]
//!   reads the bytes and counts the signals; [`Signals::received`] is the
//!   total so far. Several `Signals` may watch one signal; each sees it.
//! - [`Signals::stop`] watches SIGINT and SIGTERM with the stop policy: the
//!   FIRST stop signal only wakes the `Signals` (the runtime begins a
//!   graceful shutdown); a SECOND one makes the process exit at once, inside
//!   the handler, with status `128 + signo` (130 for SIGINT, 143 for
//!   SIGTERM), running no destructors. While no stop-`Signals` is alive
//!   (none created yet, or all dropped), a stop signal also exits at once, so
//!   it is never swallowed; creating the first live one again re-arms the
//!   graceful first signal.
//! - SIGHUP is ignored once a stop-`Signals` was created (the policy is
//!   installed with it): its default action would kill the process without
//!   a graceful stop, and Stoat has nothing to reopen (it writes its log
//!   lines to stderr, which belongs to whoever started it). A handler that
//!   only counts is installed rather than `SIG_IGN`, so programs the server
//!   starts get the default action back.
//! - Dropping a `Signals` unregisters its handlers. signal-hook cannot put
//!   back the default disposition of a signal, so a signal watched only by
//!   dropped plain [`Signals::new`] instances is ignored from then on (the
//!   stop signals keep their exit policy, above).
//! - SIGPIPE: not touched. All socket writes in `sys::socket` use
//!   `MSG_NOSIGNAL`, and Rust binaries start with SIGPIPE ignored anyway, so
//!   nothing needs ignoring process-wide.

use std::ffi::c_int;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use signal_hook::consts::{FORBIDDEN, SIGHUP, SIGINT, SIGTERM};
use signal_hook::SigId;

/// The signals that ask for a stop.
pub const STOP_SIGNALS: [c_int; 2] = [SIGINT, SIGTERM];

/// A set of watched signals whose arrivals are counted and readable on an fd.
/// `Send + Sync`: any thread may drain it (e.g. the one epoll reported it to).
#[derive(Debug)]
pub struct Signals {
    /// Read end of the self-pipe (non-blocking); the write ends belong to
    /// the registered handlers and close when they are unregistered.
    read: UnixStream,
    ids: Vec<SigId>,
    received: AtomicUsize,
    /// Whether this instance counts as a live stop watcher.
    stop: bool,
}

impl Signals {
    /// Watches `signals` (for example `signal_hook::consts::SIGUSR1`).
    /// Fails for signals that cannot be handled (SIGKILL, SIGSTOP, SIGILL,
    /// SIGFPE, SIGSEGV).
    pub fn new(signals: &[c_int]) -> io::Result<Signals> {
        // signal-hook panics on these; refuse them as an error instead.
        if let Some(bad) = signals.iter().find(|s| FORBIDDEN.contains(s)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("signal {bad} cannot be handled"),
            ));
        }
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let mut this = Signals {
            read,
            ids: Vec::with_capacity(signals.len()),
            received: AtomicUsize::new(0),
            stop: false,
        };
        for &signal in signals {
            // On error, dropping `this` unregisters what was registered.
            let id = signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
            this.ids.push(id);
        }
        Ok(this)
    }

    /// Watches SIGINT and SIGTERM with the stop policy (see the module
    /// doc): the first one wakes this `Signals`, the second exits the
    /// process.
    pub fn stop() -> io::Result<Signals> {
        let mut this = Signals::new(&STOP_SIGNALS)?;
        let mut state = stop_state();
        if state.is_none() {
            *state = Some(StopState::install()?);
        }
        if let Some(state) = state.as_mut() {
            state.live += 1;
            if state.live == 1 {
                // A new server: its first stop signal is graceful again.
                state.armed.store(false, Ordering::SeqCst);
            }
        }
        this.stop = true;
        Ok(this)
    }

    /// Reads the pending signal bytes without blocking; returns how many
    /// signals arrived since the last drain (0 if none) and adds them to
    /// [`Signals::received`].
    pub fn drain(&self) -> io::Result<usize> {
        let mut buf = [0u8; 64];
        let mut count = 0;
        loop {
            match (&self.read).read(&mut buf) {
                // Write ends closed (all handlers unregistered): nothing more.
                Ok(0) => break,
                Ok(n) => count += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.received.fetch_add(count, Ordering::SeqCst);
        Ok(count)
    }

    /// Blocks until a watched signal arrives or `timeout` passes (`None`:
    /// forever), then drains; returns how many signals arrived (0 on
    /// timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<usize> {
        // A timeout too large for a timespec waits forever.
        let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
        let mut fds = [PollFd::new(&self.read, PollFlags::IN)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            // A signal arriving during the poll interrupts it; its byte is
            // already written, so drain anyway.
            Ok(_) | Err(rustix::io::Errno::INTR) => self.drain(),
            Err(e) => Err(e.into()),
        }
    }

    /// How many watched signals were drained so far, in total.
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

impl AsFd for Signals {
    /// The read end: readable while undrained signals are pending.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        if self.stop {
            if let Some(state) = stop_state().as_mut() {
                state.live -= 1;
                if state.live == 0 {
                    // Nobody will act on a graceful stop: exit at once.
                    state.armed.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

/// The process-wide stop policy, installed once, on the first
/// [`Signals::stop`], and never removed.
struct StopState {
    /// Set by the first stop signal (or when no stop watcher is alive);
    /// while set, a stop signal exits the process.
    armed: Arc<AtomicBool>,
    /// How many stop `Signals` are alive.
    live: usize,
}

impl StopState {
    fn install() -> io::Result<StopState> {
        // Replaces SIGHUP's default action (death) with a handler that
        // only sets a flag nobody reads: SIGHUP is ignored (module doc).
        signal_hook::flag::register(SIGHUP, Arc::new(AtomicBool::new(false)))?;
        let armed = Arc::new(AtomicBool::new(false));
        for signal in STOP_SIGNALS {
            // Actions run in registration order: the exit check must see the
            // flag as it was before this signal set it.
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, armed.clone())?;
            signal_hook::flag::register(signal, armed.clone())?;
        }
        Ok(StopState { armed, live: 0 })
    }
}

static STOP_STATE: Mutex<Option<StopState>> = Mutex::new(None);

fn stop_state() -> MutexGuard<'static, Option<StopState>> {
    // The state stays consistent even if a holder panicked: each update is
    // a single field write.
    STOP_STATE.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::process::Command;
    use std::thread;
    use std::time::Instant;

    use signal_hook::consts::{SIGKILL, SIGUSR1, SIGUSR2};
    use signal_hook::low_level::raise;

    use super::*;
    use crate::sys::{Epoll, Events, Interest};

    const DEADLINE: Duration = Duration::from_secs(10);
    /// Set in a child process re-running one of the `child_*` tests.
    const CHILD_ENV: &str = "STOAT_SIGNAL_CHILD";

    // Each in-process test uses its own harmless signal: tests of one binary
    // share the process, and every watcher of a signal sees each arrival.

    #[test]
    fn raised_signals_are_counted_and_wake_epoll() {
        let signals = Signals::new(&[SIGUSR1]).unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(&signals, 5, Interest::READ).unwrap();
        let mut events = Events::with_capacity(2);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);

        // raise(3) runs the handler on this thread before returning.
        raise(SIGUSR1).unwrap();
        raise(SIGUSR1).unwrap();
        assert_eq!(ep.wait(&mut events, Some(DEADLINE)).unwrap(), 1);
        let event = events.iter().next().unwrap();
        assert!(event.token() == 5 && event.is_readable());
        assert_eq!(signals.drain().unwrap(), 2);
        assert_eq!(signals.received(), 2);
        assert_eq!(ep.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        assert_eq!(signals.drain().unwrap(), 0);
    }

    #[test]
    fn wait_returns_when_another_thread_is_signalled() {
        let signals = Signals::new(&[SIGUSR2]).unwrap();
        assert_eq!(signals.wait(Some(Duration::ZERO)).unwrap(), 0);
        let end = Instant::now() + DEADLINE;
        thread::scope(|s| {
            s.spawn(|| raise(SIGUSR2).unwrap());
            while signals.received() == 0 {
                let left = end.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "signal not seen in time");
                signals.wait(Some(left)).unwrap();
            }
        });
        assert_eq!(signals.received(), 1);
    }

    #[test]
    fn unhandleable_signal_is_refused() {
        let err = Signals::new(&[SIGUSR1, SIGKILL]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn signals_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Signals>();
    }

    /// Runs the test `name` of this binary in a child process and returns
    /// its exit code and standard output.
    fn run_child(name: &str) -> (Option<i32>, String) {
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("child {name} stdout:\n{stdout}\nstderr:\n{stderr}");
        (out.status.code(), stdout)
    }

    fn say(line: &str) {
        let mut out = io::stdout().lock();
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }

    // SIGINT and SIGTERM are only ever raised in child processes, so the
    // stop policy can be tested without disturbing the other tests.

    #[test]
    fn first_stop_signal_is_graceful_second_exits() {
        let (code, stdout) = run_child("sys::signal::tests::child_graceful_then_exit");
        assert!(stdout.contains("graceful-ok"), "first signal not seen");
        assert_eq!(code, Some(128 + SIGTERM));
    }

    #[test]
    fn sighup_is_ignored_once_the_stop_policy_is_installed() {
        let (code, stdout) = run_child("sys::signal::tests::child_hangup_survives");
        assert!(
            stdout.contains("hangup-survived"),
            "SIGHUP killed the child"
        );
        assert_eq!(code, Some(0));
    }

    #[test]
    fn child_hangup_survives() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        let signals = Signals::stop().unwrap();
        raise(SIGHUP).unwrap();
        raise(SIGHUP).unwrap();
        // Not a stop signal: nothing to drain, no stop begun.
        assert_eq!(signals.drain().unwrap(), 0);
        say("hangup-survived");
    }

    #[test]
    fn stop_signal_with_no_live_watcher_exits() {
        let (code, stdout) = run_child("sys::signal::tests::child_dropped_watcher_exits");
        assert!(stdout.contains("dropped"));
        assert_eq!(code, Some(128 + SIGINT));
    }

    #[test]
    fn child_graceful_then_exit() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        // A dropped watcher, then a new one: the first signal is graceful.
        drop(Signals::stop().unwrap());
        let signals = Signals::stop().unwrap();
        raise(SIGINT).unwrap();
        assert_eq!(signals.drain().unwrap(), 1);
        say("graceful-ok");
        raise(SIGTERM).unwrap();
        panic!("the second stop signal did not exit");
    }

    #[test]
    fn child_dropped_watcher_exits() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        drop(Signals::stop().unwrap());
        say("dropped");
        raise(SIGINT).unwrap();
        panic!("a stop signal with no watcher did not exit");
    }
}
