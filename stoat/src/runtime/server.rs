//! Starting and stopping: binds the listeners, spawns the threads of the
//! configured model, and gives back a [`ServerHandle`].
//!
//! Contract: [`start`] returns once every listener is bound (so a port of 0
//! is resolved) and every thread is running. [`ServerHandle::shutdown`]
//! begins a graceful stop from any thread: listeners close, idle
//! connections close, in-flight requests are answered with
//! `Connection: close` until the drain deadline, then everything closes and
//! the threads exit. Dropping the handle does the same and waits.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::config::{Config, Model};
use crate::runtime::connection::Shared;
use crate::runtime::control::Control;
use crate::runtime::link::AsyncCounters;
use crate::runtime::observe::Observers;
use crate::runtime::pool::Pool;
use crate::runtime::proxy::ProxyPolicy;
use crate::runtime::service::Service;
use crate::runtime::{per_core, shared};
use crate::sys::listenfd::take_inherited;
use crate::sys::{EventFd, ListenOptions, Listener};

/// Counters of a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests answered since start.
    pub requests: u64,
    /// Accept calls that failed because the process or system is out of
    /// file descriptors (EMFILE/ENFILE).
    pub fd_limit_errors: u64,
    /// Pauses of accepting that followed them: each such failure pauses
    /// accepting (until a connection closes, or `FD_BACKOFF`) before the
    /// next try, so `fd_limit_errors` never runs ahead of this.
    pub fd_limit_pauses: u64,
    /// Read buffers that exist now (in use or cached).
    pub buffers: usize,
    /// Of those, cached for reuse (no connection holds them): the shared
    /// free list now, the network threads' caches as of their last sweep.
    pub buffers_cached: usize,
    /// Bytes of `body_memory_limit` reserved by bodies larger than a buffer.
    pub body_bytes: usize,
    /// The most of it ever reserved at once.
    pub body_bytes_peak: usize,
    /// Connections waiting for a read buffer (the pool is at its limit).
    pub waiting_for_buffer: usize,
    /// Requests taken off the network thread (pipeline jobs, suspended handlers).
    pub suspended: u64,
    /// Of those, answered in time.
    pub resumed: u64,
    /// Of those, answered 503 at their deadline (late answers discarded).
    pub expired: u64,
    /// Of those, whose responder was dropped unanswered (answered 500).
    pub abandoned: u64,
    /// Request arenas lent to a request now (see `Request::arena`).
    pub arenas_in_use: usize,
    /// Reset arenas kept for reuse (at most two per network thread).
    pub arenas_cached: usize,
    /// Their retained bytes.
    pub arena_bytes_cached: usize,
    /// Arenas freed at their reset for having grown too large.
    pub arenas_dropped: usize,
    /// Connections whose PROXY header named a client (or `UNKNOWN`).
    pub proxy_proxied: u64,
    /// PROXY v2 `LOCAL` headers (the load balancer's own health checks).
    pub proxy_local: u64,
    /// Connections closed unanswered for their PROXY header: missing where
    /// required, malformed, of a version not accepted, cut short, or sent
    /// by a peer that is not a trusted proxy.
    pub proxy_refused: u64,
    /// The most response bytes ever queued for one client at once (encoded,
    /// not yet taken by its socket), counted when above
    /// `http.max_pending_output` (0: never above): at most that limit plus
    /// one response, however many requests a client pipelines unread.
    pub output_peak: usize,
}

/// Reads a running server's [`Stats`]; cheap to clone, usable after the
/// server stopped (the last values).
#[derive(Clone)]
pub struct StatsReader {
    control: Arc<Control>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsReader").finish_non_exhaustive()
    }
}

impl StatsReader {
    /// Current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            connections: self.control.connections.load(Ordering::Acquire),
            accepted: self.control.accepted.load(Ordering::Relaxed),
            requests: self.control.requests.load(Ordering::Relaxed),
            buffers: self.shared.pool.allocated(),
            buffers_cached: self.shared.pool.cached(),
            waiting_for_buffer: self.control.waiting.load(Ordering::Relaxed),
            body_bytes: self.shared.spills.used(),
            body_bytes_peak: self.shared.spills.peak(),
            suspended: c.suspended.load(Ordering::Relaxed),
            resumed: c.resumed.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            abandoned: c.abandoned.load(Ordering::Relaxed),
            arenas_in_use: self.shared.arenas.in_use.load(Ordering::Relaxed),
            arenas_cached: self.shared.arenas.cached.load(Ordering::Relaxed),
            arena_bytes_cached: self.shared.arenas.cached_bytes.load(Ordering::Relaxed),
            arenas_dropped: self.shared.arenas.dropped.load(Ordering::Relaxed),
            output_peak: self.shared.output_peak.load(Ordering::Relaxed),
            fd_limit_errors: self.control.fd_limit_errors.load(Ordering::Relaxed),
            fd_limit_pauses: self.control.fd_limit_pauses.load(Ordering::Relaxed),
            proxy_proxied: self.shared.proxy.counters.proxied.load(Ordering::Relaxed),
            proxy_local: self.shared.proxy.counters.local.load(Ordering::Relaxed),
            proxy_refused: self.shared.proxy.counters.refused.load(Ordering::Relaxed),
        }
    }
}

/// Threads beside the network threads, and how to tell them to finish.
type Companion = (Box<dyn FnOnce() + Send + Sync>, Vec<JoinHandle<()>>);

/// A running server: its address, counters, and the way to stop it.
pub struct ServerHandle {
    addr: SocketAddr,
    control: Arc<Control>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Threads that serve the network threads (pipelines), stopped after
    /// them: `stop` tells them to finish, then they are joined.
    companions: Vec<Companion>,
    /// A copy of each listening socket, to hand over to a successor
    /// process (see [`ServerHandle::listener_fds`]); closed when the stop
    /// begins, so the port closes with the stop.
    listener_fds: Mutex<Vec<OwnedFd>>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.stats_reader().stats()
    }

    /// A handle that reads [`Stats`] from any thread (for a metrics page).
    pub fn stats_reader(&self) -> StatsReader {
        StatsReader {
            control: self.control.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The listening sockets, in order, to hand over to a successor
    /// process (`sys::listenfd::Handover`): the same sockets, so a
    /// connection waiting in their queues is never lost. Copies of them
    /// (close-on-exec), empty once the stop began.
    pub fn listener_fds(&self) -> io::Result<Vec<OwnedFd>> {
        let fds = self.listener_fds.lock().unwrap_or_else(|e| e.into_inner());
        fds.iter()
            .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(io::Error::from))
            .collect()
    }

    /// Begins a graceful stop; returns at once. See the module doc.
    pub fn shutdown(&self) {
        self.control.begin_stop();
        self.listener_fds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Waits until every thread has exited.
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                result = Err(io::Error::other("a server thread panicked"));
            }
        }
        for (stop, threads) in self.companions.drain(..) {
            stop();
            for t in threads {
                if t.join().is_err() {
                    result = Err(io::Error::other("a pipeline thread panicked"));
                }
            }
        }
        result
    }

    /// Adds threads that run beside the network threads: after those exit,
    /// `stop` is called and `threads` are joined.
    pub(crate) fn attach(
        &mut self,
        stop: Box<dyn FnOnce() + Send + Sync>,
        threads: Vec<JoinHandle<()>>,
    ) {
        self.companions.push((stop, threads));
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() || !self.companions.is_empty() {
            self.shutdown();
            let _ = self.join_threads();
        }
    }
}

/// Binds and starts serving `service` as `config` says; `config` passed
/// `Config::validate` (see `runtime::start`).
pub(crate) fn start(config: &Config, service: Arc<dyn Service>) -> io::Result<ServerHandle> {
    start_observed(config, service, Observers::default())
}

/// [`start`] with metrics and an access log (see `runtime/observe.rs`);
/// `config` passed `Config::validate`.
pub(crate) fn start_observed(
    config: &Config,
    service: Arc<dyn Service>,
    observers: Observers,
) -> io::Result<ServerHandle> {
    let http = &config.http;
    // A server holding many connections needs many fds: take all we may.
    let _ = crate::sys::raise_nofile_limit();
    let shared = Arc::new(Shared {
        limits: config.limits(),
        server: http.server_name.as_bytes().to_vec(),
        service,
        pool: Pool::new(http.buffer_size, http.buffer_memory_limit),
        spills: crate::runtime::pool::SpillBudget::new(http.body_memory_limit),
        sse_heartbeat: http.sse_heartbeat(),
        sse_backlog: http.sse_backlog,
        ws: crate::runtime::websocket::WsLimits {
            ping: (http.ws_ping_sec > 0).then(|| std::time::Duration::from_secs(http.ws_ping_sec)),
            idle: (http.ws_idle_timeout_sec > 0)
                .then(|| std::time::Duration::from_secs(http.ws_idle_timeout_sec)),
            max_message: http.ws_max_message_size,
            backlog: http.ws_backlog,
        },
        counters: Arc::new(AsyncCounters::default()),
        arenas: Arc::default(),
        max_output: http.max_pending_output,
        output_peak: AtomicUsize::new(0),
        proxy: ProxyPolicy::new(http),
        observers,
    });
    let addr = http.socket_addr();
    let threads = http.network_threads;
    let cpus = crate::sys::available_cpus();
    let pin = |i: usize| http.pin_threads.then(|| cpus[i % cpus.len().max(1)]);
    let backlog = i32::try_from(http.backlog).unwrap_or(i32::MAX);
    // Listening sockets passed by systemd or a predecessor replace binding.
    let inherited = take_inherited()?;
    let listener_fds;
    match http.model {
        Model::PerCore => {
            let mut listeners = Vec::with_capacity(threads);
            let mut bound = addr;
            if let Some(inherited) = inherited {
                // Thread i serves inherited socket i mod n (a copy of it):
                // every socket is served, none is ever closed unserved.
                let n = inherited.listeners.len();
                if n > threads {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{n} listening sockets were inherited, more than http.network_threads ({threads}) in the per_core model"
                        ),
                    ));
                }
                bound = inherited.listeners[0].local_addr;
                let fds: Vec<OwnedFd> = inherited.listeners.into_iter().map(|l| l.fd).collect();
                for i in 0..threads {
                    let copy = rustix::io::fcntl_dupfd_cloexec(&fds[i % n], 0)?;
                    listeners.push(Listener::from_inherited_with(copy, http.defer_accept_sec)?);
                }
                listener_fds = fds;
            } else {
                // One SO_REUSEPORT listener per thread; the first fixes the port.
                for _ in 0..threads {
                    let l = Listener::bind(
                        bound,
                        ListenOptions {
                            reuse_port: true,
                            backlog,
                            nonblocking: true,
                            defer_accept_secs: http.defer_accept_sec,
                        },
                    )?;
                    bound = l.local_addr()?;
                    listeners.push(l);
                }
                listener_fds = listeners
                    .iter()
                    .map(|l| rustix::io::fcntl_dupfd_cloexec(l, 0).map_err(io::Error::from))
                    .collect::<io::Result<_>>()?;
            }
            let wakers = (0..threads)
                .map(|_| EventFd::new().map(Arc::new))
                .collect::<io::Result<Vec<_>>>()?;
            let control = Arc::new(Control::new(config, wakers.clone(), None));
            let max_per_thread = http.max_connections.div_ceil(threads);
            let mut handles = Vec::with_capacity(threads);
            for (i, (listener, waker)) in listeners.into_iter().zip(wakers).enumerate() {
                let loop_ = per_core::Loop::new(
                    shared.clone(),
                    control.clone(),
                    listener,
                    waker,
                    max_per_thread,
                )?;
                handles.push(spawn_network(i, pin(i), move || loop_.run())?);
            }
            Ok(ServerHandle {
                addr: bound,
                control,
                shared,
                threads: handles,
                companions: Vec::new(),
                listener_fds: Mutex::new(listener_fds),
            })
        }
        Model::Shared => {
            // Non-blocking: accept threads wait in poll(2), so a stop wakes
            // them without shutting a listener down (see `Control`).
            let listeners: Vec<Arc<Listener>> = match inherited {
                Some(inherited) => inherited
                    .listeners
                    .into_iter()
                    .map(|l| {
                        Listener::from_inherited_with(l.fd, http.defer_accept_sec).map(Arc::new)
                    })
                    .collect::<io::Result<_>>()?,
                None => vec![Arc::new(Listener::bind(
                    addr,
                    ListenOptions {
                        reuse_port: false,
                        backlog,
                        nonblocking: true,
                        defer_accept_secs: http.defer_accept_sec,
                    },
                )?)],
            };
            let bound = listeners[0].local_addr()?;
            listener_fds = listeners
                .iter()
                .map(|l| rustix::io::fcntl_dupfd_cloexec(l.as_ref(), 0).map_err(io::Error::from))
                .collect::<io::Result<_>>()?;
            let waker = Arc::new(EventFd::new()?);
            let control = Arc::new(Control::new(
                config,
                vec![waker.clone()],
                Some(Arc::new(EventFd::new()?)),
            ));
            let core = Arc::new(shared::Core::new(
                shared.clone(),
                control.clone(),
                waker,
                http.max_connections,
                threads,
            )?);
            let mut handles = Vec::new();
            for i in 0..http.accept_threads {
                let (core, listeners) = (core.clone(), listeners.clone());
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("stoat-accept-{i}"))
                        .spawn(move || core.accept_loop(&listeners))?,
                );
            }
            for i in 0..threads {
                let core = core.clone();
                handles.push(spawn_network(i, pin(i), move || core.network_loop(i))?);
            }
            Ok(ServerHandle {
                addr: bound,
                control,
                shared,
                threads: handles,
                companions: Vec::new(),
                listener_fds: Mutex::new(listener_fds),
            })
        }
    }
}

/// Spawns network thread `i`, pinned to `cpu` when given.
fn spawn_network(
    i: usize,
    cpu: Option<usize>,
    run: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("stoat-net-{i}"))
        .spawn(move || {
            if let Some(cpu) = cpu {
                // Best effort: an unpinned thread still serves.
                let _ = crate::sys::pin_current_thread(cpu);
            }
            run();
        })
}
