//! [`Server`]: a configuration and a router, started as a running server.
//!
//! Contract: [`Server::start`] hands the router to the runtime and returns
//! at once with a [`ServerHandle`]; [`Server::run`] starts, then blocks
//! until SIGINT or SIGTERM, stops gracefully (in-flight requests finish
//! within `drain_timeout_sec`) and returns once every thread has exited. A
//! second signal during the stop exits the process at once (see
//! [`Signals::stop`]).
//!
//! Route registration follows [`Router`]: a bad pattern or a duplicate
//! route panics while the server is being built, before anything is bound.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use crate::app::pipeline::{BatchHandler, Pipeline};
use crate::app::router::{StreamHandler, SuspendHandler};
use crate::app::streaming::StreamingHandler;
use crate::app::websocket::WebSocket;
use crate::app::{Handler, IntoResponse, Request, Router};
use crate::config::Config;
use crate::proto::Method;
use crate::runtime::ring::Ring;

use crate::app::Health;
use crate::runtime::{self, ServerHandle};
use crate::sys::Signals;

/// Why [`Server::run`] stops.
enum Stop {
    /// SIGINT or SIGTERM.
    Signal,
    /// A successor process took the listeners over.
    HandedOver,
}

/// Waits for a stop signal, handing over on SIGUSR2 meanwhile.
fn wait_for_stop(signals: &Signals, restart: &Signals, handle: &ServerHandle) -> io::Result<Stop> {
    use rustix::event::{PollFd, PollFlags};
    use std::os::fd::AsFd;
    loop {
        let mut fds = [
            PollFd::from_borrowed_fd(signals.as_fd(), PollFlags::IN),
            PollFd::from_borrowed_fd(restart.as_fd(), PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if signals.drain()? > 0 {
            return Ok(Stop::Signal);
        }
        if restart.drain()? > 0 {
            match crate::app::restart::hand_over(handle) {
                Ok(true) => return Ok(Stop::HandedOver),
                Ok(false) => {}
                Err(e) => eprintln!("stoat: handover failed: {e}; still serving"),
            }
        }
    }
}

/// A server being built: its configuration and its routes.
///
/// ```no_run
/// use stoat::app::{Response, Server};
///
/// fn main() -> std::io::Result<()> {
///     Server::default()
///         .get("/plaintext", |_| Response::text("Hello, World!"))
///         .run()
/// }
/// ```
#[derive(Default)]
pub struct Server {
    config: Config,
    router: Router,
    /// Batch handlers by pipeline name.
    batch: BTreeMap<String, Box<dyn BatchHandler>>,
    /// Called when [`Server::run`] gets its stop signal.
    on_stop: Vec<Box<dyn FnOnce() + Send>>,
    /// Ready or draining, on the health path (see [`Server::health`]).
    health: Health,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("router", &self.router)
            .field("batch_handlers", &self.batch.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Server {
    /// A server with `config` and no routes.
    pub fn new(config: Config) -> Server {
        Server::with_router(config, Router::new())
    }

    /// A server with `config` serving `router`.
    pub fn with_router(config: Config, router: Router) -> Server {
        Server {
            config,
            router,
            batch: BTreeMap::new(),
            on_stop: Vec::new(),
            health: Health::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration, to change before starting.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Routes `method` requests matching `pattern` to `handler`; see
    /// [`Router::route`] (panics on a bad or duplicate route).
    #[track_caller]
    pub fn route<H: Handler>(mut self, method: Method, pattern: &str, handler: H) -> Server {
        self.router = self.router.route(method, pattern, handler);
        self
    }

    /// Routes `GET` (and `HEAD`) to `handler`; see [`Router::get`].
    #[track_caller]
    pub fn get<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Get, pattern, handler)
    }

    /// Routes `POST` to `handler`; see [`Router::route`].
    #[track_caller]
    pub fn post<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Post, pattern, handler)
    }

    /// Routes `PUT` to `handler`; see [`Router::route`].
    #[track_caller]
    pub fn put<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Put, pattern, handler)
    }

    /// Routes `DELETE` to `handler`; see [`Router::route`].
    #[track_caller]
    pub fn delete<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Delete, pattern, handler)
    }

    /// Routes `PATCH` to `handler`; see [`Router::route`].
    #[track_caller]
    pub fn patch<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Patch, pattern, handler)
    }

    /// Routes `method` requests matching `pattern` to `handler`, which
    /// answers later from any thread through a `Responder`; see
    /// [`Router::suspend`].
    #[track_caller]
    pub fn suspend<H: SuspendHandler>(
        mut self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Server {
        self.router = self.router.suspend(method, pattern, handler);
        self
    }

    /// Routes `GET` requests matching `pattern` to a server-sent event
    /// stream; see [`Router::sse`].
    #[track_caller]
    pub fn sse<H: StreamHandler>(mut self, pattern: &str, handler: H) -> Server {
        self.router = self.router.sse(pattern, handler);
        self
    }

    /// Routes `method` requests matching `pattern` to `handler`, which takes
    /// the request body as it arrives (uploads larger than memory should
    /// hold); see [`StreamingHandler`] and [`Router::streaming`].
    #[track_caller]
    pub fn streaming<H: StreamingHandler>(
        mut self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Server {
        self.router = self.router.streaming(method, pattern, handler);
        self
    }

    /// Routes `POST` to a handler that takes the body as it arrives; see
    /// [`Server::streaming`].
    #[track_caller]
    pub fn post_streaming<H: StreamingHandler>(self, pattern: &str, handler: H) -> Server {
        self.streaming(Method::Post, pattern, handler)
    }

    /// Routes `PUT` to a handler that takes the body as it arrives; see
    /// [`Server::streaming`].
    #[track_caller]
    pub fn put_streaming<H: StreamingHandler>(self, pattern: &str, handler: H) -> Server {
        self.streaming(Method::Put, pattern, handler)
    }

    /// Routes `GET` requests matching `pattern` to a WebSocket endpoint
    /// (handshake checks, subprotocols, origin hook, session callbacks);
    /// see [`WebSocket`] and [`Router::websocket`].
    #[track_caller]
    pub fn websocket(mut self, pattern: &str, endpoint: WebSocket) -> Server {
        self.router = self.router.websocket(pattern, endpoint);
        self
    }

    /// Routes `method` requests matching `pattern` to `handler`, run on the
    /// threads of pipeline `pipeline` (which must be in the config's
    /// `[http.pipelines]` when the server starts); see
    /// [`Router::on_pipeline`].
    #[track_caller]
    pub fn on_pipeline<H: Handler>(
        mut self,
        pipeline: &str,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Server {
        self.router = self.router.on_pipeline(pipeline, method, pattern, handler);
        self
    }

    /// Gives pipeline `pipeline` a handler that sees each batch of jobs
    /// before their routes' handlers run (for group work such as one fsync
    /// for many commits); see `Job`.
    pub fn pipeline_batch<B: BatchHandler>(mut self, pipeline: &str, handler: B) -> Server {
        self.batch.insert(pipeline.to_owned(), Box::new(handler));
        self
    }

    /// Routes `GET` (and `HEAD`) of `[http] health_path` (default
    /// `/healthz`) to the server's [`Health`]: `200 ready`, then `503
    /// draining` from the stop signal on (see [`Server::run`]).
    #[track_caller]
    pub fn health(self) -> Server {
        let health = self.health.clone();
        let path = self.config.http.health_path.clone();
        self.route(Method::Get, &path, move |_: &Request<'_>| health.response())
    }

    /// The server's ready/draining flag (also the one [`Server::health`]
    /// answers from), to report draining from elsewhere.
    pub fn health_flag(&self) -> Health {
        self.health.clone()
    }

    /// Calls `f` when [`Server::run`] (or [`Server::run_with`]) receives
    /// its stop signal, before the graceful stop begins: to end streams
    /// that would otherwise hold the drain until its deadline, say.
    /// [`Server::start`] ignores it (its caller decides when to stop).
    pub fn on_stop(mut self, f: impl FnOnce() + Send + 'static) -> Server {
        self.on_stop.push(Box::new(f));
        self
    }

    /// Checks the configuration, binds and starts serving; returns at once.
    /// An invalid configuration, or a route on a pipeline the configuration
    /// does not have, is an `InvalidInput` error naming the key or route.
    pub fn start(mut self) -> io::Result<ServerHandle> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        self.config.validate().map_err(|e| invalid(e.to_string()))?;
        // Only pipelines some route (or batch handler) uses get threads.
        let mut used: Vec<String> = self.router.pipeline_names().map(str::to_owned).collect();
        used.extend(self.batch.keys().cloned());
        let mut pipelines = BTreeMap::new();
        for name in used {
            if pipelines.contains_key(&name) {
                continue;
            }
            let Some(pc) = self.config.http.pipelines.get(&name) else {
                continue;
            };
            let pipeline = Arc::new(Pipeline {
                ring: Ring::with_capacity(pc.ring_buffer_size),
                batch: self.batch.remove(&name),
            });
            pipelines.insert(name, (pipeline, pc.threads, pc.nice));
        }
        if let Some(name) = self.batch.keys().next() {
            return Err(invalid(format!(
                "a batch handler is set for pipeline `{name}`, which is not configured \
                 (add [http.pipelines.{name}] to the config)"
            )));
        }
        let bound: BTreeMap<String, Arc<Pipeline>> = pipelines
            .iter()
            .map(|(n, (p, _, _))| (n.clone(), p.clone()))
            .collect();
        self.router.bind_pipelines(&bound).map_err(invalid)?;
        let mut handle = runtime::start(&self.config, Arc::new(self.router))?;
        for (name, (pipeline, threads, nice)) in pipelines {
            let mut joins = Vec::with_capacity(threads);
            for i in 0..threads {
                let p = pipeline.clone();
                let t = std::thread::Builder::new()
                    .name(format!("stoat-{name}-{i}"))
                    .spawn(move || {
                        // Blocking or computing handlers must not take the
                        // CPU from the network threads on a shared core
                        // (`[http.pipelines.NAME] nice`).
                        let _ = crate::sys::lower_current_thread_priority(nice);
                        p.work()
                    })?;
                joins.push(t);
            }
            let p = pipeline.clone();
            handle.attach(Box::new(move || p.ring.close()), joins);
        }
        Ok(handle)
    }

    /// Starts, serves until SIGINT or SIGTERM, then stops gracefully and
    /// waits for every thread. A second signal exits at once.
    ///
    /// The stop, in order: the health path reports draining (503) while
    /// the server still serves, for `drain_health_sec` (0 by default), so a
    /// load balancer checking it stops sending new requests; then the
    /// listener closes and open requests finish within `drain_timeout_sec`.
    ///
    /// SIGUSR2 restarts without downtime: the program is started again
    /// with the listening sockets, and this process stops once the new one
    /// serves (see [`restart`](crate::app::restart)). A process started so
    /// takes the sockets instead of binding, and says it serves once it
    /// does.
    pub fn run(self) -> io::Result<()> {
        self.run_with(|_| {})
    }

    /// Like [`Server::run`], calling `started` once the server listens
    /// (to log its address, say).
    pub fn run_with(mut self, started: impl FnOnce(&ServerHandle)) -> io::Result<()> {
        // Watch before starting: a signal during startup is not lost.
        let signals = Signals::stop()?;
        let restart = Signals::new(&[signal_hook::consts::SIGUSR2])?;
        let on_stop = std::mem::take(&mut self.on_stop);
        let health = self.health.clone();
        let drain_health = self.config.http.drain_health();
        let handle = self.start()?;
        // Serving: a predecessor that handed its sockets over may go.
        if let Err(e) = crate::app::restart::notify_ready() {
            eprintln!("stoat: cannot tell the previous process to stop: {e}");
        }
        started(&handle);
        let waited = wait_for_stop(&signals, &restart, &handle);
        if let Ok(Stop::Signal) = waited {
            // Report draining while still serving, then stop.
            health.set_draining();
            if !drain_health.is_zero() {
                let _ = signals.wait(Some(drain_health));
            }
        }
        let waited = waited.map(|_| ());
        for f in on_stop {
            f();
        }
        handle.shutdown();
        let joined = handle.join();
        // Kept until here: a second signal while draining exits at once.
        drop(signals);
        waited.and(joined)
    }
}
