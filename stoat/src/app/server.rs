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

use crate::app::dashboard::{DashboardHook, Extra};
use crate::app::metrics::{self, Exposition, Live, MetricsHook, RouteLabel};
use crate::app::pipeline::{BatchHandler, Pipeline};
use crate::app::router::{StreamHandler, SuspendHandler};
use crate::app::streaming::StreamingHandler;
use crate::app::websocket::WebSocket;
use crate::app::{Handler, IntoResponse, Request, Router};
use crate::config::AccessLogFormat;
use crate::config::Config;
use crate::proto::Method;
use crate::runtime::access_log::{AccessLog, Format, Target};
use crate::runtime::metrics::{Metrics, Shape};
use crate::runtime::ring::Ring;
use crate::runtime::Observers;

use crate::runtime::{self, ServerHandle};
use crate::sys::Signals;

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
    /// A service's own metrics and dashboard tiles.
    metrics_hooks: Vec<MetricsHook>,
    dashboard_hooks: Vec<DashboardHook>,
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
            metrics_hooks: Vec::new(),
            dashboard_hooks: Vec::new(),
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
        let (router, live, feed) =
            metrics::register(&self.config.http.metrics, std::mem::take(&mut self.router));
        self.router = router;
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
                metrics: Default::default(),
                rejected: Default::default(),
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
                pipelines: pipelines.len(),
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
            access_log: access_log.as_ref().map(|l| l.sender()),
        };
        if let Some(m) = &registry {
            for (i, (pipeline, _, _)) in pipelines.values().enumerate() {
                let _ = pipeline.metrics.set((i, m.clone()));
            }
        }
        let buffer_size = http.buffer_size;
        let mut handle = runtime::start_observed(&self.config, Arc::new(self.router), observers)?;
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
                pipelines: pipelines
                    .iter()
                    .map(|(n, (p, _, _))| (n.clone(), p.clone()))
                    .collect(),
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
    pub fn run(self) -> io::Result<()> {
        self.run_with(|_| {})
    }

    /// Like [`Server::run`], calling `started` once the server listens
    /// (to log its address, say).
    pub fn run_with(mut self, started: impl FnOnce(&ServerHandle)) -> io::Result<()> {
        crate::app::init_logging(&self.config.log);
        let drain_timeout_sec = self.config.http.drain_timeout_sec;
        // Watch before starting: a signal during startup is not lost.
        let signals = Signals::stop()?;
        let on_stop = std::mem::take(&mut self.on_stop);
        let handle = self.start()?;
        started(&handle);
        let waited = loop {
            match signals.wait(None) {
                Ok(0) => continue,
                Ok(_) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        tracing::info!(drain_timeout_sec, "stop signal: draining");
        for f in on_stop {
            f();
        }
        handle.shutdown();
        let joined = handle.join();
        tracing::info!("stopped");
        // Kept until here: a second signal while draining exits at once.
        drop(signals);
        waited.and(joined)
    }
}
