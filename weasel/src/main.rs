//! The `weasel` server program: Weasel on Stoat, configured from TOML.
//!
//! `weasel` with no arguments serves on the embedded default config
//! (127.0.0.1:8080). `--config FILE` reads a file instead; `--bind` and
//! `--port` override it; `--check-config` validates and exits;
//! `--print-default-config` prints the embedded config.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use stoat::app::Server;
use stoat::config::{Config, DEFAULT_CONFIG};

/// Weasel: a small durable versioned key-value store, served by Stoat.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (TOML); without it, the embedded default config.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Validate the configuration and exit (0 when valid).
    #[arg(long)]
    check_config: bool,
    /// Address to bind (overrides http.bind_address).
    #[arg(long, value_name = "ADDR")]
    bind: Option<IpAddr>,
    /// Port to listen on (overrides http.port; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weasel: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::from_toml_str(DEFAULT_CONFIG, None)?,
    };
    if let Some(bind) = args.bind {
        config.http.bind_address = bind;
    }
    if let Some(port) = args.port {
        config.http.port = port;
    }
    config.validate()?;
    if args.check_config {
        println!("configuration ok");
        return Ok(());
    }
    Server::new(config)
        .get("/healthz", |_| "ok\n")
        .run_with(|h| eprintln!("weasel: listening on http://{}", h.local_addr()))?;
    Ok(())
}
