//! Weasel: a durable versioned key-value store, Stoat's reference service.
//!
//! Commits and status queries run on Stoat's `commit_status` pipeline,
//! whose thread makes each batch durable with one write and one fsync
//! (group commit); reads answer inline on the network threads; changes
//! stream out as server-sent events. See docs/API.md for the HTTP API and
//! docs/ARCHITECTURE.md ("Weasel") for how it is built.
//!
//! Files, one concept each:
//! - `config.rs`: the `[weasel]` table beside Stoat's `[http]`.
//! - `codec.rs`: commit bodies by Content-Type (JSON, MessagePack).
//! - `store/`: the state, the checksummed commit log, its records.
//! - `commit.rs`: the group-commit batch handler.
//! - `status.rs`: the bounded request-id outcome window.
//! - `watch.rs`: the SSE watch stream and its history.
//! - `api.rs`: the routes.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod codec;
pub mod commit;
pub mod config;
pub mod metrics;
pub mod status;
pub mod store;
pub mod watch;

use std::io;
use std::sync::Arc;

use stoat::app::Server;

use crate::codec::Codecs;
use crate::config::WeaselConfig;
use crate::store::{Recovery, Store};

/// Writes one log line to stderr, ignoring failures: a closed or full
/// stderr must not stop a commit (`eprintln!` would panic).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Exit code: another process holds the data directory's lock.
pub const EXIT_LOCKED: u8 = 3;
/// Exit code: the listening address is in use.
pub const EXIT_ADDR_IN_USE: u8 = 4;
/// Exit code: the commit log is damaged (start-up refused; see `weasel
/// repair`).
pub const EXIT_DAMAGED: u8 = 5;
/// Exit code: a write or fsync of the log failed fatally while serving
/// (restart to recover from disk).
pub const EXIT_STORAGE: i32 = 6;

/// The pipeline commit and status run on.
pub const PIPELINE: &str = "commit_status";

/// Opens the store and builds the server (not yet started).
pub fn build(config: WeaselConfig) -> io::Result<(Server, Arc<Store>, Recovery)> {
    let (store, recovery) = Store::open(config.store, Codecs::default())?;
    let store = Arc::new(store);
    let (expose, tiles) = (store.clone(), store.clone());
    let server = api::routes(Server::new(config.server), store.clone())?
        .metrics_hook(move |x| metrics::expose(&expose, x))
        .dashboard_hook(move |out| metrics::tiles(&tiles, out));
    Ok((server, store, recovery))
}
