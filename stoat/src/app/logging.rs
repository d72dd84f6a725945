//! Structured logs: lifecycle events and errors through `tracing`.
//!
//! Contract: [`init_logging`] installs a `tracing-subscriber` formatter on
//! standard error, filtered by `RUST_LOG` when it is set and valid, else by
//! the configuration's `[log] level`. It is idempotent: when a global
//! subscriber exists already (the application installed its own, or a
//! second server in one process), it leaves it and returns `false`. The
//! library never installs one by itself: `Server::run` does (a binary's
//! entry point); `Server::start` (embedding) leaves the choice to the caller.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Installs the global subscriber; `false` if one was installed already.
pub fn init_logging(config: &LogConfig) -> bool {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        // `[log] level` was validated with the configuration.
        .unwrap_or_else(|| {
            EnvFilter::try_new(&config.level).unwrap_or_else(|_| EnvFilter::new("info"))
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .try_init()
        .is_ok()
}
