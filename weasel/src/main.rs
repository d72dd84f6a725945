//! The `weasel` program: Weasel on Stoat, configured from TOML.
//!
//! `weasel` with no arguments serves on the embedded default config
//! (127.0.0.1:8080, data in `./weasel-data`). `--config FILE` reads a file
//! instead; `--data-dir`, `--bind` and `--port` override it;
//! `--check-config` validates and exits; `--print-default-config` prints
//! the embedded config. Once listening it prints one line to stderr,
//! `weasel: listening on http://ADDR` (tests read the port from it).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use clap::Parser;
use weasel::config::{default_config_text, WeaselConfig};

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
    /// Data directory (overrides weasel.data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
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
        print!("{}", default_config_text());
        return Ok(());
    }
    let mut config = match &args.config {
        Some(path) => WeaselConfig::load(path)?,
        None => WeaselConfig::embedded()?,
    };
    if let Some(bind) = args.bind {
        config.server.http.bind_address = bind;
    }
    if let Some(port) = args.port {
        config.server.http.port = port;
    }
    if let Some(dir) = args.data_dir {
        config.store.data_dir = dir;
    }
    config.validate()?;
    if args.check_config {
        println!("configuration ok");
        return Ok(());
    }
    stoat::app::init_logging(&config.server.log);
    let data_dir = config.store.data_dir.clone();
    let (server, store, recovery) = weasel::build(config)
        .map_err(|e| anyhow::anyhow!("cannot open the store in {}: {e}", data_dir.display()))?;
    tracing::info!(
        version = recovery.version,
        records = recovery.records,
        data_dir = %data_dir.display(),
        torn_tail_bytes_cut = recovery.truncated,
        "recovered"
    );
    server.run_with(|h| eprintln!("weasel: listening on http://{}", h.local_addr()))?;
    let decided = store.stats.decided.load(Ordering::Relaxed);
    let records = store.stats.records.load(Ordering::Relaxed);
    tracing::info!(
        decided,
        records,
        per_write = format_args!("{:.1}", decided as f64 / records.max(1) as f64),
        "stopped"
    );
    Ok(())
}
