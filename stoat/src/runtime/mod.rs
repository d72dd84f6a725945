//! Threads and ownership: listeners, network event loops, the connection
//! table, buffers, timers, shutdown.
//!
//! Contract: [`start`] binds, spawns the threads of the configured model
//! and returns a [`ServerHandle`] at once. Exactly one thread may read,
//! write, re-arm or close a connection at any moment; every other thread
//! asks the owner through a wakeup that cannot be lost.

pub mod access_log;
pub mod arena;
pub mod body_stream;
pub(crate) mod connection;
pub mod link;
pub mod mailbox;
pub mod metrics;
pub(crate) mod observe;
pub mod outbox;
mod per_core;
pub mod pool;
pub mod ring;
mod server;
pub mod service;
mod shared;
mod wake;
pub(crate) mod websocket;

pub use arena::ArenaSlot;
pub use body_stream::{BodySink, BodyStream};
pub use observe::Observers;
pub use outbox::Body;
pub use server::{start, start_observed, ServerHandle, Stats, StatsReader};
pub use service::{RawRequest, ResponseSink, Service};
