//! Listening sockets inherited from the process that started us, and the
//! handover that passes ours to a successor: how a server restarts without
//! its port ever being closed.
//!
//! Two ways in, one convention (the listeners are fds 3, 4, ... in order):
//! - systemd socket activation (`sd_listen_fds(3)`): `LISTEN_PID` is our
//!   pid and `LISTEN_FDS` the count. The socket unit owns the sockets;
//!   between a stop and a start, connections wait in the kernel's queue.
//! - A handover from a running Stoat ([`Handover::spawn`], nginx's binary
//!   upgrade): the old process starts the new binary with its listeners
//!   as fds 3.., `STOAT_LISTEN_FDS` the count, `STOAT_HANDOVER_PARENT` its
//!   own pid (we check it is our parent, so a stray copy of the
//!   environment in a grandchild means nothing) and `STOAT_READY_FD` a
//!   pipe. Once the new process serves, it writes one byte there
//!   ([`notify_ready`]); the old one then stops accepting and finishes
//!   what it has. If the new one fails, the old one sees the pipe close
//!   without the byte and goes on serving.
//!
//! Why inheriting beats `SO_REUSEPORT` overlap (old and new process each
//! binding their own socket): each `SO_REUSEPORT` socket has its own
//! accept queue, so connections the kernel already put in the old
//! process's queue are reset when it closes its socket (unless
//! `net.ipv4.tcp_migrate_req` is set, Linux 5.14+, not the default), and
//! a second process binding our port must succeed, which is exactly what
//! a stray second instance must not be able to do. An inherited socket is
//! the same socket: one queue, never closed, nothing in it lost, and no
//! second bind of anything.
//!
//! Contract: the environment is read once, on first use; [`take_inherited`]
//! hands the inherited sockets out once per process (later calls return
//! none), each checked to be a listening TCP
//! socket (else an error naming the fd), close-on-exec, in blocking or
//! non-blocking mode as it came (the mode is shared with the other
//! process, so it is never changed here). The environment variables are
//! left as they are (changing the environment of a threaded process is
//! not sound); they cannot be misread by another process: `LISTEN_PID`
//! and `STOAT_HANDOVER_PARENT` name the one process they are for, and a
//! successor gets a fresh set.

use std::ffi::OsStr;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::{Errno, FdFlags};
use rustix::net::{sockopt, SocketType};

/// The first inherited fd (after stdin, stdout, stderr).
pub const FIRST_FD: RawFd = 3;
/// Most listeners accepted from the environment (a bound on what a bad
/// `LISTEN_FDS` can make us touch).
pub const MAX_INHERITED: usize = 1024;

/// systemd's count of passed fds.
pub const LISTEN_FDS: &str = "LISTEN_FDS";
/// systemd's pid the fds are for.
pub const LISTEN_PID: &str = "LISTEN_PID";
/// Our handover's count of passed fds.
pub const STOAT_LISTEN_FDS: &str = "STOAT_LISTEN_FDS";
/// The pid of the process handing over (must be our parent).
pub const STOAT_HANDOVER_PARENT: &str = "STOAT_HANDOVER_PARENT";
/// The fd to write one byte to once serving.
pub const STOAT_READY_FD: &str = "STOAT_READY_FD";

/// Where inherited listeners came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// systemd socket activation.
    Systemd,
    /// A handover from a previous Stoat process.
    Handover,
}

/// One inherited listening socket.
#[derive(Debug)]
pub struct InheritedListener {
    /// The socket (close-on-exec from now on).
    pub fd: OwnedFd,
    /// The address it is bound to.
    pub local_addr: SocketAddr,
}

/// What [`take_inherited`] found.
#[derive(Debug)]
pub struct Inherited {
    /// Where they came from.
    pub source: Source,
    /// The listeners, in fd order.
    pub listeners: Vec<InheritedListener>,
}

/// What this process inherited, read from the environment once.
#[derive(Default)]
struct State {
    /// The environment was read.
    read: bool,
    /// Where they came from, if anywhere.
    source: Option<Source>,
    /// The listeners, until [`take_inherited`] takes them.
    listeners: Vec<InheritedListener>,
    /// The handover's ready pipe, until [`notify_ready`] uses it.
    ready: Option<OwnedFd>,
    /// The process that handed over (our parent when we started).
    predecessor: Option<i32>,
}

static STATE: Mutex<State> = Mutex::new(State {
    read: false,
    source: None,
    listeners: Vec::new(),
    ready: None,
    predecessor: None,
});

/// The state, read from the environment on first use. An error (a bad
/// variable, an fd that is not a listening socket) is returned by that
/// first call; later calls find nothing inherited.
fn state() -> io::Result<std::sync::MutexGuard<'static, State>> {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if !state.read {
        state.read = true;
        read_env(&mut state)?;
    }
    Ok(state)
}

fn read_env(state: &mut State) -> io::Result<()> {
    let env = |name: &str| std::env::var_os(name);
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let Some((source, count)) = from_env(env, me, parent)? else {
        return Ok(());
    };
    let mut listeners = Vec::with_capacity(count);
    for i in 0..count {
        listeners.push(adopt_listener(FIRST_FD + i as RawFd)?);
    }
    if source == Source::Handover {
        state.predecessor = Some(parent);
        if let Some(ready) = env(STOAT_READY_FD) {
            let raw = parse_fd(&ready, STOAT_READY_FD)?;
            if raw < FIRST_FD + count as RawFd {
                return Err(invalid(format!(
                    "{STOAT_READY_FD}={raw} overlaps the inherited listeners"
                )));
            }
            state.ready = Some(adopt(raw)?);
        }
    }
    state.source = Some(source);
    state.listeners = listeners;
    Ok(())
}

/// Takes the listening sockets passed by systemd or by a handover, once:
/// `Ok(None)` when there are none (or they were taken already). An fd that
/// is not a listening TCP socket is an error (the environment lies, or the
/// socket unit is not a `ListenStream=` of TCP).
pub fn take_inherited() -> io::Result<Option<Inherited>> {
    let mut state = state()?;
    let Some(source) = state.source else {
        return Ok(None);
    };
    if state.listeners.is_empty() {
        return Ok(None);
    }
    let listeners = std::mem::take(&mut state.listeners);
    Ok(Some(Inherited { source, listeners }))
}

/// Tells the process that handed its listeners over that we take over
/// now (one byte on its pipe, then the pipe closes): it stops accepting,
/// finishes what it has and exits. Does nothing when we were not started
/// by a handover, or after the first call.
pub fn notify_ready() -> io::Result<()> {
    let fd = state()?.ready.take();
    if let Some(fd) = fd {
        rustix::io::write(&fd, b"R")?;
    }
    Ok(())
}

/// Waits until the process that handed over to us has exited (its drain
/// done, everything it held released), at most `timeout`: `Ok(true)` once
/// it is gone (or when there is none), `Ok(false)` if it still runs.
/// Watches it through a pidfd (`pidfd_open(2)`), so its exit is seen at
/// once, without polling.
pub fn wait_predecessor_exit(timeout: Duration) -> io::Result<bool> {
    let Some(pid) = state()?.predecessor else {
        return Ok(true);
    };
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return Ok(true);
    };
    let pidfd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        // Already gone.
        Err(Errno::SRCH) => return Ok(true),
        Err(e) => return Err(e.into()),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let wait = Timespec::try_from(left.min(Duration::from_secs(1)))
            .map_err(|_| invalid("timeout out of range".to_owned()))?;
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&wait)) {
            // A pidfd is readable once its process has exited.
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) | Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A successor process started with our listeners, not yet known to serve.
#[derive(Debug)]
pub struct Handover {
    child: Child,
    ready: OwnedFd,
}

/// How a handover ended.
#[derive(Debug)]
pub enum HandoverOutcome {
    /// The successor serves: stop accepting and finish.
    Ready {
        /// Its pid.
        pid: u32,
    },
    /// It exited (or closed its pipe) without saying it serves: keep
    /// serving. Its exit status if it has exited already.
    Failed(Option<ExitStatus>),
    /// It did not say it serves within the time given, and was killed:
    /// keep serving.
    TimedOut,
}

impl Handover {
    /// Starts `program` with `args`, our `listeners` as fds 3.. and the
    /// handover environment (systemd's variables removed, so the successor
    /// cannot mistake them for its own). stdin, stdout and stderr are
    /// inherited.
    pub fn spawn<I, S>(
        program: &OsStr,
        args: I,
        listeners: &[BorrowedFd<'_>],
    ) -> io::Result<Handover>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if listeners.is_empty() || listeners.len() > MAX_INHERITED {
            return Err(invalid(format!(
                "a handover passes 1 to {MAX_INHERITED} listeners, not {}",
                listeners.len()
            )));
        }
        let (ready_read, ready_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        // Copies above every target number, so that placing them at 3..
        // in the child never overwrites one not yet placed. They are
        // close-on-exec: only the placed copies survive the exec.
        let targets = listeners.len() as RawFd + 1;
        let above = FIRST_FD + targets;
        let mut sources = Vec::with_capacity(listeners.len() + 1);
        for fd in listeners
            .iter()
            .map(AsFd::as_fd)
            .chain([ready_write.as_fd()])
        {
            sources.push(rustix::io::fcntl_dupfd_cloexec(fd, above)?);
        }
        let raw: Vec<RawFd> = sources.iter().map(AsRawFd::as_raw_fd).collect();
        let mut command = Command::new(program);
        command
            .args(args)
            .env_remove(LISTEN_FDS)
            .env_remove(LISTEN_PID)
            .env_remove("LISTEN_FDNAMES")
            .env(STOAT_LISTEN_FDS, listeners.len().to_string())
            .env(STOAT_HANDOVER_PARENT, std::process::id().to_string())
            .env(
                STOAT_READY_FD,
                (FIRST_FD + listeners.len() as RawFd).to_string(),
            );
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the forked child before exec, where
        // only async-signal-safe calls are allowed: it calls dup2(2) (listed
        // async-signal-safe in signal-safety(7)) on fds that are open in the
        // child (`raw`, inherited from the fork; `sources` outlives `spawn`),
        // reads a Vec captured before the fork, and allocates nothing
        // (`io::Error::last_os_error` wraps the errno without allocating).
        unsafe {
            command.pre_exec(move || {
                for (i, &fd) in raw.iter().enumerate() {
                    // dup2 clears close-on-exec on the copy it makes.
                    if libc::dup2(fd, FIRST_FD + i as RawFd) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(sources);
        drop(ready_write);
        Ok(Handover {
            child,
            ready: ready_read,
        })
    }

    /// The successor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the successor says it serves, exits, or `timeout`
    /// passes (then it is killed and reaped). A successor that is ready is
    /// left running on its own (not reaped here: it outlives us).
    pub fn wait_ready(mut self, timeout: Duration) -> io::Result<HandoverOutcome> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Ok(HandoverOutcome::TimedOut);
            }
            let mut fds = [PollFd::new(&self.ready, PollFlags::IN)];
            let wait = Timespec::try_from(left.min(Duration::from_secs(1)))
                .map_err(|_| invalid("timeout out of range".to_owned()))?;
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let mut byte = [0u8; 1];
            let n = loop {
                match rustix::io::read(&self.ready, &mut byte) {
                    Err(Errno::INTR) => continue,
                    other => break other?,
                }
            };
            if n == 1 {
                return Ok(HandoverOutcome::Ready {
                    pid: self.child.id(),
                });
            }
            // End of file: every copy of the write end is closed, so the
            // successor exited (or closed it) without the byte. Reap it if
            // it has exited; bounded, as its exit is imminent or done.
            let status = reap_within(&mut self.child, Duration::from_secs(5))?;
            return Ok(HandoverOutcome::Failed(status));
        }
    }
}

/// Polls for `child`'s exit for at most `limit`.
fn reap_within(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Which variables say fds were passed to this process (`me`, whose parent
/// is `parent`), and how many. systemd's take precedence (the service
/// manager started us; a handover clears them).
fn from_env(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    me: i32,
    parent: i32,
) -> io::Result<Option<(Source, usize)>> {
    if let (Some(pid), Some(fds)) = (env(LISTEN_PID), env(LISTEN_FDS)) {
        // "If [LISTEN_PID] does not match, the fds are not for us" (sd_listen_fds(3)).
        if parse_number(&pid, LISTEN_PID)? == me as u64 {
            return count(&fds, LISTEN_FDS).map(|n| n.map(|n| (Source::Systemd, n)));
        }
    }
    if let (Some(from), Some(fds)) = (env(STOAT_HANDOVER_PARENT), env(STOAT_LISTEN_FDS)) {
        if parse_number(&from, STOAT_HANDOVER_PARENT)? == parent as u64 {
            return count(&fds, STOAT_LISTEN_FDS).map(|n| n.map(|n| (Source::Handover, n)));
        }
    }
    Ok(None)
}

/// A count of fds: 0 means none; more than [`MAX_INHERITED`] is an error.
fn count(value: &OsStr, name: &str) -> io::Result<Option<usize>> {
    let n = parse_number(value, name)?;
    if n as usize > MAX_INHERITED {
        return Err(invalid(format!("{name}={n} is more than {MAX_INHERITED}")));
    }
    Ok((n > 0).then_some(n as usize))
}

fn parse_number(value: &OsStr, name: &str) -> io::Result<u64> {
    value
        .to_str()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("{name}={value:?} is not a number")))
}

fn parse_fd(value: &OsStr, name: &str) -> io::Result<RawFd> {
    let n = parse_number(value, name)?;
    RawFd::try_from(n)
        .ok()
        .filter(|&fd| fd >= FIRST_FD)
        .ok_or_else(|| invalid(format!("{name}={n} is not an fd above 2")))
}

/// Takes ownership of inherited fd `raw`: checked to be open, made
/// close-on-exec.
fn adopt(raw: RawFd) -> io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: the borrow lives only for the fcntl calls below, and
    // `fcntl(F_GETFD)` on a closed number fails with EBADF, which we
    // return before taking ownership.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    rustix::io::fcntl_getfd(borrowed)
        .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("inherited fd {raw}: {e}")))?;
    rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC)?;
    #[allow(unsafe_code)]
    // SAFETY: the fd is open (checked above) and was passed to this process
    // for it to own (the environment named it, for our pid); `TAKEN` makes
    // sure it is adopted once, so nothing else in the process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(fd)
}

/// Adopts fd `raw` and checks that it is a listening TCP socket.
fn adopt_listener(raw: RawFd) -> io::Result<InheritedListener> {
    let fd = adopt(raw)?;
    let not = |what: &str| invalid(format!("inherited fd {raw} is not {what}"));
    match sockopt::socket_type(&fd) {
        Ok(SocketType::STREAM) => {}
        Ok(_) => return Err(not("a stream socket")),
        Err(_) => return Err(not("a socket")),
    }
    if !sockopt::socket_acceptconn(&fd)? {
        return Err(not("listening"));
    }
    let local_addr = rustix::net::getsockname(&fd)?;
    let local_addr = SocketAddr::try_from(local_addr).map_err(|_| not("a TCP/IP socket"))?;
    Ok(InheritedListener { fd, local_addr })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::net::TcpListener;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn systemd_fds_are_for_the_named_pid_only() {
        let vars = env(&[(LISTEN_PID, "42"), (LISTEN_FDS, "2")]);
        assert_eq!(from_env(&vars, 42, 1).unwrap(), Some((Source::Systemd, 2)));
        assert_eq!(from_env(&vars, 43, 1).unwrap(), None);
        let none = env(&[(LISTEN_PID, "42"), (LISTEN_FDS, "0")]);
        assert_eq!(from_env(&none, 42, 1).unwrap(), None);
        assert_eq!(from_env(env(&[(LISTEN_FDS, "2")]), 42, 1).unwrap(), None);
        assert_eq!(from_env(env(&[]), 42, 1).unwrap(), None);
    }

    #[test]
    fn handover_fds_are_for_the_child_of_the_named_pid_only() {
        let vars = env(&[(STOAT_HANDOVER_PARENT, "7"), (STOAT_LISTEN_FDS, "3")]);
        assert_eq!(from_env(&vars, 42, 7).unwrap(), Some((Source::Handover, 3)));
        // A grandchild (or an orphan re-parented to init) sees another parent.
        assert_eq!(from_env(&vars, 42, 8).unwrap(), None);
        // systemd's variables, when for us, win.
        let both = env(&[
            (STOAT_HANDOVER_PARENT, "7"),
            (STOAT_LISTEN_FDS, "3"),
            (LISTEN_PID, "42"),
            (LISTEN_FDS, "1"),
        ]);
        assert_eq!(from_env(&both, 42, 7).unwrap(), Some((Source::Systemd, 1)));
    }

    #[test]
    fn bad_variables_are_errors_naming_them() {
        for (vars, name) in [
            (env(&[(LISTEN_PID, "x"), (LISTEN_FDS, "1")]), LISTEN_PID),
            (env(&[(LISTEN_PID, "42"), (LISTEN_FDS, "-1")]), LISTEN_FDS),
            (env(&[(LISTEN_PID, "42"), (LISTEN_FDS, "")]), LISTEN_FDS),
            (env(&[(LISTEN_PID, "42"), (LISTEN_FDS, "1025")]), LISTEN_FDS),
            (
                env(&[(STOAT_HANDOVER_PARENT, "7"), (STOAT_LISTEN_FDS, "1 ")]),
                STOAT_LISTEN_FDS,
            ),
        ] {
            let err = from_env(&vars, 42, 7).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
        assert!(parse_fd(OsStr::new("2"), STOAT_READY_FD).is_err());
        assert_eq!(parse_fd(OsStr::new("9"), STOAT_READY_FD).unwrap(), 9);
    }

    #[test]
    fn adopt_checks_the_socket() {
        // A listening socket, moved to a fresh number and adopted.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let copy = rustix::io::fcntl_dupfd_cloexec(&listener, 100).unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(copy);
        let adopted = adopt_listener(raw).unwrap();
        assert_eq!(adopted.local_addr, addr);
        let flags = rustix::io::fcntl_getfd(&adopted.fd).unwrap();
        assert!(flags.contains(FdFlags::CLOEXEC));
        // A file is not a socket.
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(OwnedFd::from(file));
        let err = adopt_listener(raw).unwrap_err();
        assert!(err.to_string().contains("is not a socket"), "{err}");
        // A connected (not listening) socket.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let raw = std::os::fd::IntoRawFd::into_raw_fd(OwnedFd::from(client));
        let err = adopt_listener(raw).unwrap_err();
        assert!(err.to_string().contains("is not listening"), "{err}");
    }

    /// The child side, as a shell: fd 3 must be a socket, the variables
    /// set, systemd's removed; it then writes the ready byte to its pipe.
    const CHILD: &str = r#"[ -S /proc/self/fd/3 ] && [ "$STOAT_LISTEN_FDS" = 1 ] \
        && [ "$STOAT_READY_FD" = 4 ] && [ "$STOAT_HANDOVER_PARENT" = "$PPID" ] \
        && [ -z "$LISTEN_FDS" ] && printf R >&4 && exec 4>&-"#;

    #[test]
    fn handover_places_listeners_and_waits_for_ready() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handover =
            Handover::spawn(OsStr::new("/bin/sh"), ["-c", CHILD], &[listener.as_fd()]).unwrap();
        let pid = handover.pid();
        match handover.wait_ready(Duration::from_secs(20)).unwrap() {
            HandoverOutcome::Ready { pid: ready } => assert_eq!(ready, pid),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handover_that_fails_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handover =
            Handover::spawn(OsStr::new("/bin/sh"), ["-c", "exit 3"], &[listener.as_fd()]).unwrap();
        match handover.wait_ready(Duration::from_secs(20)).unwrap() {
            HandoverOutcome::Failed(Some(status)) => assert_eq!(status.code(), Some(3)),
            other => panic!("{other:?}"),
        }
        let missing = Handover::spawn(
            OsStr::new("/nonexistent/stoat"),
            [""; 0],
            &[listener.as_fd()],
        );
        assert!(missing.is_err());
    }

    #[test]
    fn handover_that_hangs_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let handover = Handover::spawn(
            OsStr::new("/bin/sh"),
            ["-c", "exec sleep 30"],
            &[listener.as_fd()],
        )
        .unwrap();
        let outcome = handover.wait_ready(Duration::from_millis(200)).unwrap();
        assert!(matches!(outcome, HandoverOutcome::TimedOut), "{outcome:?}");
    }
}
