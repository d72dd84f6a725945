//! TCP sockets: a listening socket, and the I/O and option calls the event
//! loops make on connected sockets through a `BorrowedFd`.
//!
//! Contract:
//! - Every fd is close-on-exec. Accepted sockets are non-blocking and have
//!   `TCP_NODELAY` set (responses are written whole, so Nagle only adds
//!   latency): [`Listener::bind`] sets it on the listening socket and Linux
//!   copies it to every socket accepted from it, so an accept is one
//!   syscall, not two.
//! - `EAGAIN` surfaces as [`io::ErrorKind::WouldBlock`]; `EINTR` is retried
//!   inside each call; every other error keeps its errno
//!   (`raw_os_error()`), so `EMFILE`/`ENFILE` on accept can be told apart
//!   ([`is_fd_limit`]) from errors to just retry ([`is_transient_accept`]).
//! - [`write()`] and [`writev`] send with `MSG_NOSIGNAL`: writing to a socket
//!   whose peer has gone returns `EPIPE` or `ECONNRESET` and never raises
//!   `SIGPIPE`, whatever the process's SIGPIPE disposition.
//! - A thread blocked in [`Listener::accept`] is woken by
//!   [`Listener::shutdown`] from another thread; it then gets an error
//!   (`EINVAL`), as does every later accept.
//! - Only the owner of a connection calls these functions on its fd (see
//!   `DESIGN.md`, ownership invariant); they do not close anything.
//! - `SO_REUSEPORT` joins only listeners of this process: the first
//!   reuse-port listener of an address first binds a probe socket WITHOUT
//!   `SO_REUSEPORT`, which fails with `EADDRINUSE` when anyone (another
//!   process's reuse-port group included) holds the address; only then is
//!   the group bound. Later listeners of the same address in this process
//!   (the other network threads) skip the probe: a process-wide count of
//!   the reuse-port addresses it holds tells them apart. Without the probe
//!   a second server on the same port would silently join the group and
//!   take a share of the connections. The window between the probe and
//!   the bind is a few system calls: two processes started within it could
//!   still both bind; a deliberate restart handover would pass listeners
//!   down instead of binding.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{self, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};

use rustix::io::Errno;
use rustix::net::{
    sockopt, AddressFamily, SendAncillaryBuffer, SendFlags, SocketFlags, SocketType,
};

/// How to set up a listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    /// Set `SO_REUSEPORT`, so several listeners (one per thread) may bind the
    /// same address and the kernel spreads connections among them.
    pub reuse_port: bool,
    /// The `listen(2)` backlog (the kernel caps it at `net.core.somaxconn`).
    pub backlog: i32,
    /// Make `accept` return `WouldBlock` instead of blocking (for a listener
    /// polled by epoll; blocking accept threads want `false`).
    pub nonblocking: bool,
    /// `TCP_DEFER_ACCEPT` seconds (see [`set_defer_accept`]); 0 = off.
    pub defer_accept_secs: u32,
}

impl Default for ListenOptions {
    /// No `SO_REUSEPORT`, backlog 1024, blocking.
    fn default() -> Self {
        ListenOptions {
            reuse_port: false,
            backlog: 1024,
            nonblocking: false,
            defer_accept_secs: 0,
        }
    }
}

/// A listening TCP socket (IPv4 or IPv6), `SO_REUSEADDR` always set.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    /// The address counted in [`OUR_REUSE_PORT`] (reuse-port listeners).
    group: Option<SocketAddr>,
}

/// Reuse-port addresses this process listens on, with how many listeners
/// each (see the module doc).
static OUR_REUSE_PORT: Mutex<Option<HashMap<SocketAddr, usize>>> = Mutex::new(None);

fn our_reuse_port() -> MutexGuard<'static, Option<HashMap<SocketAddr, usize>>> {
    // A map of counts stays consistent even if a holder panicked.
    OUR_REUSE_PORT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Fails with `AddrInUse` ("address in use") if anyone holds `addr`: binds
/// a socket without `SO_REUSEPORT` there (and closes it at once).
fn probe_free(addr: SocketAddr, family: AddressFamily) -> io::Result<()> {
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    // As the real listener has it: a port whose old connections linger in
    // TIME_WAIT is free; one with a listener is not.
    sockopt::set_socket_reuseaddr(&fd, true)?;
    match rustix::net::bind(&fd, &addr) {
        Ok(()) => Ok(()),
        Err(Errno::ADDRINUSE) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address in use: {addr} is already bound by another socket or process"),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Sets `TCP_DEFER_ACCEPT` on a listening socket: the kernel completes
/// the handshake but queues the connection for `accept` only once data
/// came, or after about `secs` seconds (then it is accepted as any other).
/// rustix has no wrapper for this option, hence libc.
pub fn set_defer_accept(fd: BorrowedFd<'_>, secs: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    #[allow(unsafe_code)]
    // SAFETY: `fd` is a valid open descriptor for the duration of the call
    // (borrowed); the option value points at a live `c_int` and its length
    // is that of a `c_int`, as TCP_DEFER_ACCEPT expects.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Listener {
    /// Creates, configures, binds and listens. Port 0 picks a free port
    /// (see [`Listener::local_addr`]).
    pub fn bind(addr: SocketAddr, options: ListenOptions) -> io::Result<Listener> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let mut flags = SocketFlags::CLOEXEC;
        if options.nonblocking {
            flags |= SocketFlags::NONBLOCK;
        }
        let fd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
        // Rebinding a port whose old connections linger in TIME_WAIT must
        // work after a restart.
        sockopt::set_socket_reuseaddr(&fd, true)?;
        // Accepted sockets inherit it (the kernel clones the listener's
        // socket for each connection): no setsockopt per connection.
        sockopt::set_tcp_nodelay(&fd, true)?;
        if options.defer_accept_secs > 0 {
            set_defer_accept(fd.as_fd(), options.defer_accept_secs)?;
        }
        if !options.reuse_port {
            rustix::net::bind(&fd, &addr).map_err(|e| in_use(e, addr))?;
            rustix::net::listen(&fd, options.backlog)?;
            return Ok(Listener { fd, group: None });
        }
        sockopt::set_socket_reuseport(&fd, true)?;
        // Held across probe and bind: this process's own listeners of one
        // address are counted before another of them looks.
        let mut ours = our_reuse_port();
        let known = ours.as_ref().is_some_and(|m| m.contains_key(&addr));
        if !known && addr.port() != 0 {
            probe_free(addr, family)?;
        }
        rustix::net::bind(&fd, &addr).map_err(|e| in_use(e, addr))?;
        rustix::net::listen(&fd, options.backlog)?;
        let bound = rustix::net::getsockname(&fd)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok())
            .unwrap_or(addr);
        *ours
            .get_or_insert_with(HashMap::new)
            .entry(bound)
            .or_insert(0) += 1;
        Ok(Listener {
            fd,
            group: Some(bound),
        })
    }

    /// A listening socket made elsewhere (inherited: see
    /// `sys::listenfd`), switched to non-blocking accepts. The mode belongs
    /// to the socket, shared with any other process holding it, which
    /// must therefore cope with `WouldBlock` too (ours do).
    pub fn from_inherited(fd: OwnedFd) -> io::Result<Listener> {
        Self::from_inherited_with(fd, 0)
    }

    /// [`Listener::from_inherited`], and `TCP_DEFER_ACCEPT` set to `secs`
    /// if it is not 0.
    pub fn from_inherited_with(fd: OwnedFd, defer_accept_secs: u32) -> io::Result<Listener> {
        if defer_accept_secs > 0 {
            set_defer_accept(fd.as_fd(), defer_accept_secs)?;
        }
        rustix::io::ioctl_fionbio(&fd, true)?;
        Ok(Listener { fd, group: None })
    }

    /// Accepts one connection (`accept4` with `SOCK_NONBLOCK |
    /// SOCK_CLOEXEC`, the only syscall): a non-blocking socket with
    /// `TCP_NODELAY` (from the listener), and the peer's address. Blocks unless the listener is non-blocking, in which
    /// case an empty queue gives `WouldBlock`.
    pub fn accept(&self) -> io::Result<(OwnedFd, SocketAddr)> {
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let (fd, peer) = retry_intr(|| rustix::net::acceptfrom_with(&self.fd, flags))?;
        let peer = match peer.map(SocketAddr::try_from) {
            Some(Ok(peer)) => peer,
            // An AF_INET or AF_INET6 listener only yields such peers.
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "accepted a connection from a non-IP address",
                ))
            }
        };
        Ok((fd, peer))
    }

    /// The address the listener is bound to (with the real port if 0 was
    /// asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let addr = rustix::net::getsockname(&self.fd)?;
        SocketAddr::try_from(addr)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
    }

    /// Stops listening (`shutdown(SHUT_RDWR)`) without closing the fd: wakes
    /// every thread blocked in [`Listener::accept`] (and makes later accepts
    /// fail), so accept threads can be stopped before the fd is closed.
    pub fn shutdown(&self) -> io::Result<()> {
        rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Both)?;
        Ok(())
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(addr) = self.group else { return };
        let mut ours = our_reuse_port();
        if let Some(map) = ours.as_mut() {
            if let Some(n) = map.get_mut(&addr) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&addr);
                }
            }
        }
    }
}

/// `EADDRINUSE` as an error that says so, naming the address.
fn in_use(e: Errno, addr: SocketAddr) -> io::Error {
    if e == Errno::ADDRINUSE {
        io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("address in use: {addr} is already bound by another socket or process"),
        )
    } else {
        e.into()
    }
}

/// Reads into `buf`; `Ok(0)` means the peer closed its writing half (or
/// `buf` is empty).
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    retry_intr(|| rustix::io::read(fd, &mut *buf))
}

/// Reads into several buffers in order (`readv`).
pub fn readv(fd: BorrowedFd<'_>, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
    retry_intr(|| rustix::io::readv(fd, bufs))
}

/// Writes from `buf` (`send` with `MSG_NOSIGNAL`); returns how many bytes
/// the kernel took, which may be fewer than `buf.len()`.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    retry_intr(|| rustix::net::send(fd, buf, SendFlags::NOSIGNAL))
}

/// Writes several buffers in order in one call (`sendmsg` with
/// `MSG_NOSIGNAL`); returns how many bytes were taken, possibly fewer than
/// the total. At most `IOV_MAX` (1024) slices per call.
pub fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    retry_intr(|| {
        let mut control = SendAncillaryBuffer::default();
        rustix::net::sendmsg(fd, bufs, &mut control, SendFlags::NOSIGNAL)
    })
}

/// Shuts down one or both directions (`shutdown(2)`). Shutting down reading
/// from another thread wakes the owner (its fd becomes readable) without
/// closing the fd.
pub fn shutdown(fd: BorrowedFd<'_>, how: net::Shutdown) -> io::Result<()> {
    let how = match how {
        net::Shutdown::Read => rustix::net::Shutdown::Read,
        net::Shutdown::Write => rustix::net::Shutdown::Write,
        net::Shutdown::Both => rustix::net::Shutdown::Both,
    };
    rustix::net::shutdown(fd, how)?;
    Ok(())
}

/// Sets or clears `TCP_NODELAY`.
pub fn set_nodelay(fd: BorrowedFd<'_>, nodelay: bool) -> io::Result<()> {
    sockopt::set_tcp_nodelay(fd, nodelay)?;
    Ok(())
}

/// Takes the socket's pending error (`SO_ERROR`), clearing it; `None` if
/// there is none. Use it on an `EPOLLERR` event.
pub fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    Ok(sockopt::socket_error(fd)?.err().map(io::Error::from))
}

/// Whether an accept error means the process (`EMFILE`) or the system
/// (`ENFILE`) is out of file descriptors: retrying at once would spin; back
/// off or shed a connection first.
pub fn is_fd_limit(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(e) if e == Errno::MFILE.raw_os_error() || e == Errno::NFILE.raw_os_error()
    )
}

/// Whether an accept error concerns only the one connection being accepted
/// and the listener is fine: accept again. Per accept(2), Linux passes
/// pending network errors of the new connection to `accept`; these are
/// `ECONNABORTED`, `EPROTO`, `ENETDOWN`, `ENOPROTOOPT`, `EHOSTDOWN`,
/// `ENONET`, `EHOSTUNREACH`, `EOPNOTSUPP`, `ENETUNREACH`, plus `EPERM`
/// (firewall) and `EINTR`.
pub fn is_transient_accept(err: &io::Error) -> bool {
    const TRANSIENT: [Errno; 11] = [
        Errno::CONNABORTED,
        Errno::PROTO,
        Errno::NETDOWN,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::NONET,
        Errno::HOSTUNREACH,
        Errno::OPNOTSUPP,
        Errno::NETUNREACH,
        Errno::PERM,
        Errno::INTR,
    ];
    match err.raw_os_error() {
        Some(e) => TRANSIENT.iter().any(|t| t.raw_os_error() == e),
        None => false,
    }
}

/// Runs a syscall again while it fails with `EINTR`.
fn retry_intr<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::INTR) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sys::{Epoll, Events, Interest};

    const DEADLINE: Duration = Duration::from_secs(10);

    fn localhost() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    /// A connected pair: (client, accepted server side, peer address).
    fn pair() -> (TcpStream, OwnedFd, SocketAddr) {
        let listener = Listener::bind(localhost(), ListenOptions::default()).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (client, server, peer)
    }

    /// Waits until `pred` holds for an event of `fd` (token 0), or panics.
    fn wait_until(ep: &Epoll, what: &str, pred: impl Fn(&crate::sys::Event) -> bool) {
        let mut events = Events::with_capacity(4);
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for {what}");
            ep.wait(&mut events, Some(left)).unwrap();
            if events.iter().any(|e| pred(&e)) {
                return;
            }
        }
    }

    #[test]
    fn accept_connect_roundtrip() {
        let (mut client, server, peer) = pair();
        assert_eq!(peer, client.local_addr().unwrap());
        client.write_all(b"ping").unwrap();

        let ep = Epoll::new().unwrap();
        ep.add(&server, 0, Interest::READ).unwrap();
        wait_until(&ep, "readable", |e| e.is_readable());
        let mut buf = [0u8; 16];
        let n = read(server.as_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"ping");

        assert_eq!(write(server.as_fd(), b"pong").unwrap(), 4);
        let mut back = [0u8; 4];
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"pong");
    }

    #[test]
    fn accepted_socket_has_nodelay_cloexec_nonblock() {
        let (_client, server, _) = pair();
        assert!(sockopt::tcp_nodelay(&server).unwrap());
        let fd_flags = rustix::io::fcntl_getfd(&server).unwrap();
        assert!(fd_flags.contains(rustix::io::FdFlags::CLOEXEC));
        let fl = rustix::fs::fcntl_getfl(&server).unwrap();
        assert!(fl.contains(rustix::fs::OFlags::NONBLOCK));
        set_nodelay(server.as_fd(), false).unwrap();
        assert!(!sockopt::tcp_nodelay(&server).unwrap());
    }

    #[test]
    fn writev_of_several_slices_arrives_intact() {
        let (mut client, server, _) = pair();
        let parts: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Length: 5\r\n",
            b"\r\n",
            b"hello",
        ];
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert_eq!(writev(server.as_fd(), &slices).unwrap(), total);
        let mut got = vec![0u8; total];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, parts.concat());
    }

    #[test]
    fn readv_fills_buffers_in_order() {
        let (mut client, server, _) = pair();
        client.write_all(b"abcdefgh").unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(&server, 0, Interest::READ).unwrap();
        wait_until(&ep, "readable", |e| e.is_readable());
        let (mut a, mut b) = ([0u8; 3], [0u8; 8]);
        let n = {
            let mut bufs = [IoSliceMut::new(&mut a), IoSliceMut::new(&mut b)];
            readv(server.as_fd(), &mut bufs).unwrap()
        };
        // Loopback delivers the one segment whole.
        assert_eq!(n, 8);
        assert_eq!(&a, b"abc");
        assert_eq!(&b[..5], b"defgh");
    }

    #[test]
    fn read_on_empty_socket_would_block() {
        let (_client, server, _) = pair();
        let mut buf = [0u8; 8];
        let err = read(server.as_fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn nonblocking_listener_accept_would_block() {
        let options = ListenOptions {
            nonblocking: true,
            ..ListenOptions::default()
        };
        let listener = Listener::bind(localhost(), options).unwrap();
        let err = listener.accept().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!is_fd_limit(&err) && !is_transient_accept(&err));

        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let ep = Epoll::new().unwrap();
        ep.add(&listener, 0, Interest::READ).unwrap();
        wait_until(&ep, "pending connection", |e| e.is_readable());
        listener.accept().unwrap();
    }

    #[test]
    fn write_to_closed_peer_errors_without_sigpipe() {
        // Observe SIGPIPE (Rust ignores it by default, which would hide it).
        let sigpipe = Arc::new(AtomicBool::new(false));
        let id =
            signal_hook::flag::register(signal_hook::consts::SIGPIPE, sigpipe.clone()).unwrap();

        let (client, server, _) = pair();
        let ep = Epoll::new().unwrap();
        ep.add(&server, 0, Interest::READ | Interest::RDHUP)
            .unwrap();
        drop(client);
        wait_until(&ep, "peer FIN", |e| e.is_rdhup());

        // The closed peer answers this first write with a reset.
        assert_eq!(write(server.as_fd(), b"x").unwrap(), 1);
        // Only HUP and ERR (always reported) are of interest now.
        ep.modify(&server, 0, Interest::EDGE).unwrap();
        wait_until(&ep, "reset", |e| e.is_hup() || e.is_error());

        let expected = [Errno::PIPE.raw_os_error(), Errno::CONNRESET.raw_os_error()];
        let err = write(server.as_fd(), b"y").unwrap_err();
        assert!(expected.contains(&err.raw_os_error().unwrap()), "{err:?}");
        let err = writev(server.as_fd(), &[IoSlice::new(b"a"), IoSlice::new(b"b")]).unwrap_err();
        assert!(expected.contains(&err.raw_os_error().unwrap()), "{err:?}");

        assert!(signal_hook::low_level::unregister(id));
        assert!(!sigpipe.load(Ordering::SeqCst), "SIGPIPE was raised");
    }

    #[test]
    fn take_error_is_none_on_a_healthy_socket() {
        let (_client, server, _) = pair();
        assert!(take_error(server.as_fd()).unwrap().is_none());
    }

    #[test]
    fn shutdown_write_gives_peer_eof() {
        let (mut client, server, _) = pair();
        shutdown(server.as_fd(), net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn two_reuse_port_listeners_bind_one_port() {
        let options = ListenOptions {
            reuse_port: true,
            ..ListenOptions::default()
        };
        let first = Listener::bind(localhost(), options).unwrap();
        let addr = first.local_addr().unwrap();
        let second = Listener::bind(addr, options).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);

        // Without SO_REUSEPORT the port is taken.
        let err = Listener::bind(addr, ListenOptions::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("address in use"), "{err}");
    }

    #[test]
    fn reuse_port_group_of_another_owner_is_not_joined() {
        // A foreign reuse-port listener (as another process would bind:
        // not through `Listener`, so not counted as ours).
        let foreign = rustix::net::socket_with(
            AddressFamily::INET,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        sockopt::set_socket_reuseaddr(&foreign, true).unwrap();
        sockopt::set_socket_reuseport(&foreign, true).unwrap();
        rustix::net::bind(&foreign, &localhost()).unwrap();
        rustix::net::listen(&foreign, 16).unwrap();
        let addr = SocketAddr::try_from(rustix::net::getsockname(&foreign).unwrap()).unwrap();
        let options = ListenOptions {
            reuse_port: true,
            ..ListenOptions::default()
        };
        let err = Listener::bind(addr, options).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("address in use"), "{err}");
        // Once it is gone, the address is ours, for several listeners.
        drop(foreign);
        let first = Listener::bind(addr, options).unwrap();
        let second = Listener::bind(addr, options).unwrap();
        drop((first, second));
        // And free again after they close.
        drop(Listener::bind(addr, ListenOptions::default()).unwrap());
    }

    #[test]
    fn shutdown_wakes_a_blocked_accept() {
        let listener = Listener::bind(localhost(), ListenOptions::default()).unwrap();
        thread::scope(|s| {
            let acceptor = s.spawn(|| listener.accept().map(|_| ()));
            // Whether or not the acceptor is blocked yet, it must fail.
            listener.shutdown().unwrap();
            let err = acceptor.join().unwrap().unwrap_err();
            assert_eq!(err.raw_os_error(), Some(Errno::INVAL.raw_os_error()));
        });
    }

    #[test]
    fn ipv6_listener_binds() {
        let addr: SocketAddr = "[::1]:0".parse().unwrap();
        match Listener::bind(addr, ListenOptions::default()) {
            Ok(l) => assert!(l.local_addr().unwrap().is_ipv6()),
            // Hosts without IPv6 (some containers) cannot run this test.
            Err(e) if e.raw_os_error() == Some(Errno::ADDRNOTAVAIL.raw_os_error()) => {}
            Err(e) if e.raw_os_error() == Some(Errno::AFNOSUPPORT.raw_os_error()) => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn accept_error_classification() {
        let emfile = io::Error::from_raw_os_error(Errno::MFILE.raw_os_error());
        let enfile = io::Error::from_raw_os_error(Errno::NFILE.raw_os_error());
        let aborted = io::Error::from_raw_os_error(Errno::CONNABORTED.raw_os_error());
        assert!(is_fd_limit(&emfile) && is_fd_limit(&enfile));
        assert!(!is_transient_accept(&emfile));
        assert!(is_transient_accept(&aborted) && !is_fd_limit(&aborted));
        assert!(!is_fd_limit(&io::Error::other("x")));
    }
}
