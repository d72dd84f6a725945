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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::config::{Config, Model};
use crate::runtime::connection::Shared;
use crate::runtime::control::Control;
use crate::runtime::link::AsyncCounters;
use crate::runtime::observe::Observers;
use crate::runtime::pool::Pool;
use crate::runtime::service::Service;
use crate::runtime::{per_core, shared};
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
    /// Read buffers that exist now (in use or cached).
    pub buffers: usize,
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

    /// Begins a graceful stop; returns at once. See the module doc.
    pub fn shutdown(&self) {
        self.control.begin_stop();
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
            self.control.begin_stop();
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
        observers,
    });
    let addr = http.socket_addr();
    let threads = http.network_threads;
    let cpus = crate::sys::available_cpus();
    let pin = |i: usize| http.pin_threads.then(|| cpus[i % cpus.len().max(1)]);
    let backlog = i32::try_from(http.backlog).unwrap_or(i32::MAX);
    match http.model {
        Model::PerCore => {
            // One SO_REUSEPORT listener per thread; the first fixes the port.
            let mut listeners = Vec::with_capacity(threads);
            let mut bound = addr;
            for _ in 0..threads {
                let l = Listener::bind(
                    bound,
                    ListenOptions {
                        reuse_port: true,
                        backlog,
                        nonblocking: true,
                    },
                )?;
                bound = l.local_addr()?;
                listeners.push(l);
            }
            let wakers = (0..threads)
                .map(|_| EventFd::new().map(Arc::new))
                .collect::<io::Result<Vec<_>>>()?;
            let control = Arc::new(Control::new(config, wakers.clone(), Vec::new()));
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
            })
        }
        Model::Shared => {
            let listener = Arc::new(Listener::bind(
                addr,
                ListenOptions {
                    reuse_port: false,
                    backlog,
                    nonblocking: false,
                },
            )?);
            let bound = listener.local_addr()?;
            let waker = Arc::new(EventFd::new()?);
            let control = Arc::new(Control::new(
                config,
                vec![waker.clone()],
                vec![listener.clone()],
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
                let (core, listener) = (core.clone(), listener.clone());
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("stoat-accept-{i}"))
                        .spawn(move || core.accept_loop(&listener))?,
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
