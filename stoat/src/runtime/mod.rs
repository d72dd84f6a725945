//! Threads and ownership: listeners, network event loops, the connection
//! table, buffers, timers, shutdown.
//!
//! Contract: [`start`] binds, spawns the threads of the configured model
//! and returns a [`ServerHandle`] at once. Exactly one thread may read,
//! write, re-arm or close a connection at any moment; every other thread
//! asks the owner through a wakeup that cannot be lost.

pub mod outbox;
pub mod service;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;

pub use outbox::Body;
pub use service::{RawRequest, ResponseSink, Service};

/// Counters of a running server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Requests answered since start.
    pub requests: u64,
}

/// A running server: its address, counters, and the way to stop it.
pub struct ServerHandle {
    _todo: (),
}

impl ServerHandle {
    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        todo!()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        todo!()
    }

    /// Begins a graceful stop: no new connections, idle ones closed,
    /// in-flight requests finish within the drain deadline. Returns at once.
    pub fn shutdown(&self) {
        todo!()
    }

    /// Waits until every thread has exited.
    pub fn join(self) -> io::Result<()> {
        todo!()
    }
}

/// Binds and starts serving `service` as `config` says.
pub fn start(config: &Config, service: Arc<dyn Service>) -> io::Result<ServerHandle> {
    let _ = (config, service);
    todo!()
}
