//! Threads and ownership: listeners, network event loops, the connection
//! table, buffers, timers, pipeline threads, shutdown.
//!
//! Contract: [`start`] validates the configuration, binds, spawns the
//! threads of the configured model and returns a [`ServerHandle`] at once.
//! Exactly one thread may read, write, re-arm or close a connection at any
//! moment; every other thread asks the owner through a wakeup that cannot
//! be lost.
//!
//! Public here is what a [`Service`] written without the app layer needs;
//! rings, mailboxes, the buffer pool, links, the outbox and the arena are
//! the crate's own.

pub mod access_log;
pub(crate) mod arena;
pub mod body_stream;
pub(crate) mod connection;
mod control;
mod event_loop;
pub mod file_body;
pub(crate) mod link;
pub(crate) mod mailbox;
pub mod metrics;
pub(crate) mod observe;
pub(crate) mod outbox;
mod per_core;
pub(crate) mod pipeline;
pub(crate) mod pool;
pub(crate) mod proxy;
pub(crate) mod ring;
mod server;
pub mod service;
mod shared;
mod wake;
pub(crate) mod websocket;

use std::io;
use std::sync::Arc;

pub use arena::ArenaSlot;
pub use body_stream::{BodySink, BodyStream};
pub use file_body::FileBody;
pub use link::{AsyncCounters, SendError};
pub use observe::Observers;
pub use outbox::Body;
pub use proxy::{ConnInfo, ProxyCounters, Resolved};
pub use server::StatsReader;
pub use server::{ServerHandle, Stats};
pub use service::{RawRequest, ResponseSink, Service};

use crate::config::Config;

/// Validates `config`, binds and starts serving `service` as it says; an
/// invalid configuration is an `InvalidInput` error naming the key and
/// file. (`app::Server::start` validates once itself and reports a typed
/// error.)
pub fn start(config: &Config, service: Arc<dyn Service>) -> io::Result<ServerHandle> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    server::start(config, service)
}

/// [`start`] with metrics and an access log (see `runtime/observe.rs`).
pub fn start_observed(
    config: &Config,
    service: Arc<dyn Service>,
    observers: Observers,
) -> io::Result<ServerHandle> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    server::start_observed(config, service, observers)
}
