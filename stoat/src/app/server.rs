//! [`Server`]: a configuration and a router, started as a running server.
//!
//! Contract: [`Server::start`] hands the router to the runtime and returns
//! at once with a [`ServerHandle`]; [`Server::run`] starts, then blocks
//! until SIGINT or SIGTERM, stops gracefully (in-flight requests finish
//! within `drain_timeout_sec`) and returns once every thread has exited. A
//! second signal during the stop exits the process at once (see
//! [`Signals::stop`]).
//!
//! Registration: `Server`'s methods are the one way to add routes, for
//! every route kind (inline, suspended, server-sent events, streamed
//! bodies, WebSocket, pipelines). A bad pattern or a duplicate route
//! panics while the server is being built, before anything is bound
//! ([`Server::try_route`] returns the error instead). Handler closures
//! need no argument types written out.
//!
//! [`Server::start`] validates the configuration once and returns a
//! [`StartError`]: the configuration error with its key and file, a route
//! on a pipeline that is not configured, or the I/O error of a bind or a
//! thread spawn.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::app::dashboard::{DashboardHook, Extra};
use crate::app::deferred::{EventStream, Responder};
use crate::app::error_page::ErrorPage;
use crate::app::metrics::{self, Exposition, Live, MetricsHook, RouteLabel};
use crate::app::pipeline::PipelineObs;
use crate::app::pipeline::{self, Job, Pipeline};
use crate::app::router::{Kind, RouteError};
use crate::app::streaming::StreamingHandler;
use crate::app::websocket::WebSocket;
use crate::app::Health;
use crate::app::{Compression, IntoResponse, Request, Router};
use crate::config::AccessLogFormat;
use crate::config::{Config, ConfigError};
use crate::proto::Method;
use crate::runtime::access_log::{AccessLog, Format, Target};
use crate::runtime::metrics::{Metrics, Shape};
use crate::runtime::pipeline::{PipelineStart, ServeError};
use crate::runtime::ring::Ring;
use crate::runtime::Observers;
use crate::runtime::ServerHandle;
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
/// fn main() -> Result<(), stoat::app::StartError> {
///     Server::default()
///         .get("/plaintext", |_| Response::text("Hello, World!"))
///         .run()
/// }
/// ```
#[derive(Default)]
pub struct Server {
    config: Config,
    router: Router,
    /// Pipelines opened by [`Server::pipeline`], started with the server.
    pipelines: Vec<PipelineStart>,
    /// Called when [`Server::run`] gets its stop signal.
    on_stop: Vec<Box<dyn FnOnce() + Send>>,
    /// Ready or draining, on the health path (see [`Server::health`]).
    health: Health,
    /// A service's own metrics and dashboard tiles.
    metrics_hooks: Vec<MetricsHook>,
    dashboard_hooks: Vec<DashboardHook>,
    /// What the metrics read of each pipeline, in [`Server::pipeline`]'s order.
    pipeline_obs: Vec<Arc<PipelineObs>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("router", &self.router)
            .field(
                "pipelines",
                &self.pipelines.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a server did not start. See the module doc.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration breaks a rule: the error names the key, and the
    /// file when the configuration came from one.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// [`Server::pipeline`] named a pipeline the configuration does not
    /// have (or no longer has, at start).
    #[error(
        "pipeline `{name}` is not configured{}: add [http.pipelines.{name}]",
        in_file(file)
    )]
    UnknownPipeline {
        /// The pipeline's name.
        name: String,
        /// The configuration's file, when it came from one.
        file: Option<PathBuf>,
    },
    /// [`Server::pipeline`] was called twice for one pipeline.
    #[error("pipeline `{name}` is opened twice (open it once and add every route to it)")]
    DuplicatePipeline {
        /// The pipeline's name.
        name: String,
    },
    /// A thread of pipeline `name` could not be spawned; none of the
    /// server's threads run.
    #[error("cannot start the threads of pipeline `{name}`: {source}")]
    PipelineThreads {
        /// The pipeline's name.
        name: String,
        /// The spawn's error.
        source: io::Error,
    },
    /// Binding, a network thread's spawn, or the signal handlers of
    /// [`Server::run`] failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn in_file(file: &Option<PathBuf>) -> String {
    match file {
        Some(f) => format!(" in {}", f.display()),
        None => String::new(),
    }
}

impl From<StartError> for io::Error {
    /// For callers that report `io::Error`s: I/O errors as they are, the
    /// others as `InvalidInput` with the message.
    fn from(e: StartError) -> io::Error {
        match e {
            StartError::Io(e) => e,
            StartError::PipelineThreads { source, .. } => source,
            e => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        }
    }
}

impl Server {
    /// A server with `config` and no routes.
    pub fn new(config: Config) -> Server {
        Server {
            config,
            ..Server::default()
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

    /// The routes registered so far: answer a request without sockets with
    /// [`Router::handle`] (tests of an app).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Routes `method` requests whose path matches `pattern` to `handler`,
    /// any `Fn(&Request) -> impl IntoResponse` (a type implementing
    /// [`Handler`](super::Handler) is registered as `move |req|
    /// h.call(req)`). It runs on the network thread.
    ///
    /// `pattern`: `/` and segments separated by `/`; a segment is literal
    /// text or a whole-segment parameter `{name}` (ASCII letters, digits,
    /// `_`, `-`), at most [`MAX_PARAMS`](super::MAX_PARAMS) of them.
    ///
    /// # Panics
    ///
    /// On a malformed pattern, a method and pattern shape registered twice
    /// (whatever the route kinds), or `Method::Other` (see [`RouteError`];
    /// [`Server::try_route`] returns it instead).
    #[track_caller]
    pub fn route<F, R>(mut self, method: Method, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.add_kind(method, pattern, |_| Kind::Inline(Box::new(handler)));
        self
    }

    /// [`Server::route`], returning the error instead of panicking.
    pub fn try_route<F, R>(
        &mut self,
        method: Method,
        pattern: &str,
        handler: F,
    ) -> Result<(), RouteError>
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.router
            .add(method, pattern, |_| Kind::Inline(Box::new(handler)))
    }

    /// Routes `GET` (and, unless routed apart, `HEAD`) to `handler`; see
    /// [`Server::route`].
    #[track_caller]
    pub fn get<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Get, pattern, handler)
    }

    /// Routes `POST` to `handler`; see [`Server::route`].
    #[track_caller]
    pub fn post<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Post, pattern, handler)
    }

    /// Routes `PUT` to `handler`; see [`Server::route`].
    #[track_caller]
    pub fn put<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Put, pattern, handler)
    }

    /// Routes `DELETE` to `handler`; see [`Server::route`].
    #[track_caller]
    pub fn delete<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Delete, pattern, handler)
    }

    /// Routes `PATCH` to `handler`; see [`Server::route`].
    #[track_caller]
    pub fn patch<F, R>(self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
        R: IntoResponse,
    {
        self.route(Method::Patch, pattern, handler)
    }

    /// Routes `method` requests matching `pattern` to `handler`, which
    /// answers later, from any thread, through the [`Responder`] it gets
    /// (`Send + 'static`). It runs on the network thread, so it must only
    /// hand the work off. Panics as [`Server::route`].
    #[track_caller]
    pub fn suspend<F>(mut self, method: Method, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>, Responder) + Send + Sync + 'static,
    {
        self.add_kind(method, pattern, |_| Kind::Suspend(Box::new(handler)));
        self
    }

    /// Routes `GET` requests matching `pattern` to a server-sent event
    /// stream: `handler` gets the request and the [`EventStream`]
    /// (`Send + 'static`) to push events into from any thread; the
    /// response ends when the stream is dropped. It runs on the network
    /// thread, so it must only hand the stream off. Panics as
    /// [`Server::route`].
    #[track_caller]
    pub fn sse<F>(mut self, pattern: &str, handler: F) -> Server
    where
        F: Fn(&Request<'_>, EventStream) + Send + Sync + 'static,
    {
        self.add_kind(Method::Get, pattern, |_| {
            Kind::Stream(Box::new(handler), None)
        });
        self
    }

    /// As [`Server::sse`], the stream compressed with `compression` as each
    /// request's `Accept-Encoding` allows, whatever the server's
    /// compression: every byte of it (events, heartbeats, the end) goes
    /// through one encoder, flushed after each event so the client decodes
    /// it at once.
    #[track_caller]
    pub fn sse_compressed<F>(
        mut self,
        pattern: &str,
        compression: Compression,
        handler: F,
    ) -> Server
    where
        F: Fn(&Request<'_>, EventStream) + Send + Sync + 'static,
    {
        let compression = Some(Box::new(compression));
        self.add_kind(Method::Get, pattern, |_| {
            Kind::Stream(Box::new(handler), compression)
        });
        self
    }

    /// Compresses the responses of every inline route and every event
    /// stream of this server as each request's `Accept-Encoding` allows
    /// (see [`Compression`] for which responses qualify). Replaces the
    /// `[http.compression]` table of the configuration. Routes answered off
    /// the network thread compress on their own ([`Compressed::respond`],
    /// [`CompressedBody`]); a route's own [`Compression::layer`] decides
    /// first (a response it compressed is left alone).
    ///
    /// [`Compressed::respond`]: super::Compressed::respond
    /// [`CompressedBody`]: super::CompressedBody
    pub fn compression(mut self, compression: Compression) -> Server {
        self.router.set_compression(Some(compression));
        self
    }

    /// Routes `method` requests matching `pattern` to `handler`, which
    /// takes the request body as it arrives (uploads larger than memory
    /// should hold); see [`StreamingHandler`]. Panics as [`Server::route`].
    #[track_caller]
    pub fn streaming<H: StreamingHandler>(
        mut self,
        method: Method,
        pattern: &str,
        handler: H,
    ) -> Server {
        self.add_kind(method, pattern, |_| Kind::BodyStream(Box::new(handler)));
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
    /// see [`WebSocket`]. Panics as [`Server::route`].
    #[track_caller]
    pub fn websocket(mut self, pattern: &str, endpoint: WebSocket) -> Server {
        self.add_kind(Method::Get, pattern, |_| {
            Kind::WebSocket(Box::new(endpoint))
        });
        self
    }

    /// Opens pipeline `name` (`[http.pipelines.NAME]` of the
    /// configuration) with its batch handler, which gets every batch of
    /// jobs on the pipeline's threads; returns the [`Pipeline`] to register
    /// its routes on, each with the value of `R` its [`Job`]s carry. See
    /// `pipeline.rs` and [`Pipeline`] for an example.
    ///
    /// Errors at once if the configuration has no pipeline `name`, or if
    /// it was opened before.
    pub fn pipeline<R, F>(&mut self, name: &str, batch: F) -> Result<Pipeline<'_, R>, StartError>
    where
        R: Copy + Send + Sync + 'static,
        F: Fn(&mut [Job<R>]) + Send + Sync + 'static,
    {
        let Some(pc) = self.config.http.pipelines.get(name) else {
            return Err(StartError::UnknownPipeline {
                name: name.to_owned(),
                file: self.config.file().map(PathBuf::from),
            });
        };
        if self.pipelines.iter().any(|p| p.name == name) {
            return Err(StartError::DuplicatePipeline {
                name: name.to_owned(),
            });
        }
        let ring = Arc::new(Ring::with_capacity(pc.ring_buffer_size));
        let obs = PipelineObs::new(name, ring.clone());
        self.pipeline_obs.push(obs.clone());
        self.pipelines
            .push(pipeline::starter(name, ring.clone(), obs.clone(), batch));
        Ok(Pipeline::new(self, ring, obs))
    }

    /// Adds a service's own families to `/metrics` (`[http.metrics] path`):
    /// `f` runs on every scrape, after the server's families.
    pub fn metrics_hook(mut self, f: impl Fn(&mut Exposition) + Send + Sync + 'static) -> Server {
        self.metrics_hooks.push(Arc::new(f));
        self
    }

    /// Adds a service's own tiles to the dashboard: `f` runs once per
    /// sample (every second while a page is open).
    pub fn dashboard_hook(mut self, f: impl Fn(&mut Vec<Extra>) + Send + Sync + 'static) -> Server {
        self.dashboard_hooks.push(Arc::new(f));
        self
    }

    /// Sets the body of every error the engine answers by itself: the
    /// protocol errors (400, 408, 413, 414, 431, 501, 505, ...), 404, 405,
    /// the 503s of a full pipeline ring or a passed request deadline, and
    /// the 500 of a panicking handler. `render(status, message)` makes the
    /// body, of type `content_type`; the status and the fields the engine
    /// adds (`Allow`, `Retry-After`, `Connection: close`) stay. It runs
    /// only when such an error is answered. Like nginx's `error_page` or
    /// actix's `ErrorHandlers`, for the engine's own answers:
    ///
    /// ```
    /// use stoat::app::Server;
    ///
    /// let server = Server::default().error_body("application/json", |status, message| {
    ///     format!(r#"{{"error":"http_{status}","message":"{message}"}}"#).into_bytes()
    /// });
    /// # let _ = server;
    /// ```
    pub fn error_body(
        mut self,
        content_type: &str,
        render: impl Fn(u16, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> Server {
        self.router
            .set_error_page(ErrorPage::new(content_type, render));
        self
    }

    /// Routes `GET` (and `HEAD`) of `[http] health_path` (default
    /// `/healthz`) to the server's [`Health`]: `200 ready`, then `503
    /// draining` from the stop signal on (see [`Server::run`]).
    #[track_caller]
    pub fn health(self) -> Server {
        let health = self.health.clone();
        let path = self.config.http.health_path.clone();
        self.get(&path, move |_: &Request<'_>| health.response())
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

    /// Adds a route of `kind`, panicking on a [`RouteError`].
    #[track_caller]
    pub(crate) fn add_kind(
        &mut self,
        method: Method,
        pattern: &str,
        kind: impl FnOnce(Box<[Box<str>]>) -> Kind,
    ) {
        if let Err(e) = self.router.add(method, pattern, kind) {
            panic!("{e}");
        }
    }

    /// The routes, for tests that serve them without a server.
    #[cfg(test)]
    pub(crate) fn into_router(self) -> Router {
        self.router
    }

    /// Validates the configuration (once), starts the pipelines' threads,
    /// binds and starts serving; returns at once. See [`StartError`].
    pub fn start(mut self) -> Result<ServerHandle, StartError> {
        self.config.validate()?;
        if !self.router.has_compression() {
            self.router
                .set_compression(Compression::from_config(&self.config.http.compression));
        }
        for p in &self.pipelines {
            if !self.config.http.pipelines.contains_key(&p.name) {
                return Err(StartError::UnknownPipeline {
                    name: p.name.clone(),
                    file: self.config.file().map(PathBuf::from),
                });
            }
        }
        let invalid = |e: String| StartError::Io(io::Error::new(io::ErrorKind::InvalidInput, e));
        let (live, feed) =
            metrics::register(&self.config.http.metrics, &mut self.router).map_err(invalid)?;
        let routes: Vec<RouteLabel> = self
            .router
            .route_labels()
            .map(|(method, pattern)| RouteLabel {
                method: method.to_owned(),
                pattern: pattern.to_owned(),
            })
            .collect();
        let http = &self.config.http;
        let registry = http.metrics.enabled().then(|| {
            Metrics::new(Shape {
                routes: routes.len(),
                pipelines: self.pipeline_obs.len(),
            })
        });
        let access_log = if http.access_log.enabled() {
            let target = match http.access_log.path.as_str() {
                "stderr" => Target::Stderr,
                path => Target::File(path.into()),
            };
            let format = match http.access_log.format {
                AccessLogFormat::Combined => Format::Combined,
                AccessLogFormat::Json => Format::Json,
            };
            let names = routes
                .iter()
                .map(|r| format!("{} {}", r.method, r.pattern))
                .collect();
            let log = AccessLog::start(target.clone(), format, http.access_log.queue, names)
                .map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("http.access_log.path: cannot open {target:?}: {e}"),
                    )
                })?;
            Some(Arc::new(log))
        } else {
            None
        };
        // logrotate's convention: SIGHUP reopens the log file.
        let sighup = match &access_log {
            Some(log) if http.access_log.path != "stderr" => Some(signal_hook::flag::register(
                signal_hook::consts::SIGHUP,
                log.reopen_flag(),
            )?),
            _ => None,
        };
        let observers = Observers {
            metrics: registry.clone(),
            // In `shared` a connection's drives may run on different
            // threads: the log orders them (see access_log.rs).
            access_log: access_log
                .as_ref()
                .map(|l| l.sender(self.config.http.model == crate::config::Model::Shared)),
        };
        if let Some(m) = &registry {
            for (i, p) in self.pipeline_obs.iter().enumerate() {
                let _ = p.metrics.set((i, std::sync::Mutex::new(m.recorder())));
            }
        }
        let buffer_size = http.buffer_size;
        let router = Arc::new(std::mem::take(&mut self.router));
        let pipelines = std::mem::take(&mut self.pipelines);
        let mut handle =
            crate::runtime::pipeline::serve(&self.config, router, pipelines, observers).map_err(
                |e| match e {
                    ServeError::Pipeline { name, source } => {
                        StartError::PipelineThreads { name, source }
                    }
                    ServeError::Runtime(e) => StartError::Io(e),
                },
            )?;
        tracing::info!(
            address = %handle.local_addr(),
            model = ?self.config.http.model,
            network_threads = self.config.http.network_threads,
            "listening"
        );
        if let Some(metrics) = registry {
            let _ = live.set(Live {
                metrics,
                stats: handle.stats_reader(),
                routes,
                pipelines: self.pipeline_obs.clone(),
                access_log: access_log.clone(),
                started: std::time::Instant::now(),
                hooks: std::mem::take(&mut self.metrics_hooks),
                dashboard_hooks: std::mem::take(&mut self.dashboard_hooks),
                buffer_size,
            });
        }
        if feed.is_some() || access_log.is_some() {
            // After the network threads exit: the feed's thread ends, and
            // the access log writes what is queued and closes.
            handle.attach(
                Box::new(move || {
                    if let Some(feed) = feed {
                        feed.stop();
                    }
                    if let Some(id) = sighup {
                        signal_hook::low_level::unregister(id);
                    }
                    drop(live);
                    drop(access_log);
                }),
                Vec::new(),
            );
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
    /// has taken over (see [`restart`](crate::app::restart)). A process
    /// started so takes the sockets instead of binding, and says it has
    /// taken over as soon as it serves.
    pub fn run(self) -> Result<(), StartError> {
        self.run_with(|_| {})
    }

    /// Like [`Server::run`], calling `started` once the server listens
    /// (to log its address, say).
    pub fn run_with(mut self, started: impl FnOnce(&ServerHandle)) -> Result<(), StartError> {
        crate::app::init_logging(&self.config.log);
        let drain_timeout_sec = self.config.http.drain_timeout_sec;
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
        tracing::info!(drain_timeout_sec, "stop signal: draining");
        for f in on_stop {
            f();
        }
        handle.shutdown();
        let joined = handle.join();
        tracing::info!("stopped");
        // Kept until here: a second signal while draining exits at once.
        drop(signals);
        Ok(waited.and(joined)?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A configuration error from `start` names its key and its file; no
    /// socket is bound.
    #[test]
    fn start_reports_the_config_key_and_file() {
        let mut config = Config::from_toml_str("", Some(Path::new("site.toml"))).unwrap();
        config.http.network_threads = 0;
        let Err(err) = Server::new(config).start() else {
            panic!("an invalid configuration started");
        };
        let StartError::Config(e) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(e.key(), Some("http.network_threads"));
        assert_eq!(e.file(), Some(Path::new("site.toml")));
        assert!(err.to_string().contains("site.toml"), "{err}");
    }

    /// `pipeline` fails at once on a name the configuration lacks, or one
    /// opened twice; routes go on the pipeline it returns.
    #[test]
    fn pipeline_names_are_checked_at_once() {
        let mut config = Config::default();
        config.http.pipelines.clear();
        let mut server = Server::new(config);
        let err = server.pipeline("nope", |_: &mut [Job<()>]| {}).unwrap_err();
        assert!(
            matches!(&err, StartError::UnknownPipeline { name, .. } if name == "nope"),
            "{err:?}"
        );
        server
            .config_mut()
            .http
            .pipelines
            .insert("work".into(), Default::default());
        server
            .pipeline("work", |_: &mut [Job<u8>]| {})
            .unwrap()
            .get("/a", 1)
            .post("/a", 2);
        let err = server.pipeline("work", |_: &mut [Job<()>]| {}).unwrap_err();
        assert!(
            matches!(&err, StartError::DuplicatePipeline { name } if name == "work"),
            "{err:?}"
        );
        assert_eq!(format!("{:?}", server.router()), "[GET /a, POST /a]");
    }
}
