//! Structured logs: lifecycle events and errors through `tracing`.
//!
//! Contract: [`init_logging`] installs a `tracing-subscriber` formatter on
//! standard error, filtered by `RUST_LOG` when it is set and valid, else by
//! the configuration's `[log] level`. It is idempotent: when a global
//! subscriber exists already (the application installed its own, or a
//! second server in one process), it leaves it and returns `false`. The
//! library never installs one by itself: `Server::run` does (a binary's
//! entry point); `Server::start` (embedding) leaves the choice to the caller.

use std::io::{self, IsTerminal, Write};

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
        .with_writer(|| Quiet(io::stderr()))
        // Colours only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .try_init()
        .is_ok()
}

/// Standard error whose write errors are dropped: a log line must never
/// stop the server, and a closed stderr pipe (the parent went away, or
/// closed its end during a stop) gives `EPIPE` on every write.
struct Quiet(io::Stderr);

impl Write for Quiet {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Claimed written: the caller must not retry or report it.
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}
