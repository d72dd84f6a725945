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

use std::io;
use std::sync::Arc;

use crate::app::{Handler, IntoResponse, Request, Router};
use crate::config::Config;
use crate::proto::Method;
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
#[derive(Debug, Default)]
pub struct Server {
    config: Config,
    router: Router,
}

impl Server {
    /// A server with `config` and no routes.
    pub fn new(config: Config) -> Server {
        Server::with_router(config, Router::new())
    }

    /// A server with `config` serving `router`.
    pub fn with_router(config: Config, router: Router) -> Server {
        Server { config, router }
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

    /// Checks the configuration, binds and starts serving; returns at once.
    /// An invalid configuration is an `InvalidInput` error naming the key.
    pub fn start(self) -> io::Result<ServerHandle> {
        self.config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        runtime::start(&self.config, Arc::new(self.router))
    }

    /// Starts, serves until SIGINT or SIGTERM, then stops gracefully and
    /// waits for every thread. A second signal exits at once.
    pub fn run(self) -> io::Result<()> {
        self.run_with(|_| {})
    }

    /// Like [`Server::run`], calling `started` once the server listens
    /// (to log its address, say).
    pub fn run_with(self, started: impl FnOnce(&ServerHandle)) -> io::Result<()> {
        // Watch before starting: a signal during startup is not lost.
        let signals = Signals::stop()?;
        let handle = self.start()?;
        started(&handle);
        let waited = loop {
            match signals.wait(None) {
                Ok(0) => continue,
                Ok(_) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        handle.shutdown();
        let joined = handle.join();
        // Kept until here: a second signal while draining exits at once.
        drop(signals);
        waited.and(joined)
    }
}
