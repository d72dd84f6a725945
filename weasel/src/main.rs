//! The `weasel` program: Weasel on Stoat, configured from TOML.
//!
//! `weasel` with no arguments serves on the embedded default config
//! (127.0.0.1:8080, data in `./weasel-data`). `--config FILE` reads a file
//! instead; `--data-dir`, `--bind` and `--port` override it;
//! `--check-config` validates and exits; `--print-default-config` prints
//! the embedded config. Once listening it prints one line to stderr,
//! `weasel: listening on http://ADDR` (tests read the port from it).
//! `weasel repair` sets a damaged log's tail aside (see `store/log.rs`).
//!
//! Exit codes: 0 done; 1 other errors (configuration included); 2 bad
//! command line; 3 the data directory is locked by another process
//! ([`weasel::EXIT_LOCKED`]); 4 the address is in use
//! ([`weasel::EXIT_ADDR_IN_USE`]); 5 the commit log is damaged, start-up
//! refused ([`weasel::EXIT_DAMAGED`]); 6 a log fsync failed while serving
//! and the server stopped to recover on restart ([`weasel::EXIT_STORAGE`]).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Parser, Subcommand};
use weasel::config::{default_config_text, WeaselConfig};
use weasel::store::log::{Damage, Repaired};
use weasel::store::Locked;

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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sets a damaged commit log right: copies everything from the first
    /// damaged record on into `commits.log.damaged-at-OFFSET` beside it
    /// (synced), then cuts the log there. No byte is deleted. Takes the
    /// data directory's lock (stop the server first).
    Repair {
        /// Data directory (overrides weasel.data_dir).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Configuration file (TOML), for `weasel.data_dir`.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Why the program stops: an error with its exit code.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        let error = e.into();
        let code = exit_code(&error);
        Failure { code, error }
    }
}

/// The exit code for `e` (see the module doc).
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        // A start error wraps its I/O error transparently: the chain shows
        // the `StartError`, not the `io::Error` inside.
        let io = match cause.downcast_ref::<stoat::app::StartError>() {
            Some(stoat::app::StartError::Io(io)) => Some(io),
            _ => cause.downcast_ref::<std::io::Error>(),
        };
        let Some(io) = io else {
            continue;
        };
        if Locked::of(io).is_some() {
            return weasel::EXIT_LOCKED;
        }
        if Damage::of(io).is_some() {
            return weasel::EXIT_DAMAGED;
        }
        if io.kind() == std::io::ErrorKind::AddrInUse {
            return weasel::EXIT_ADDR_IN_USE;
        }
    }
    1
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(Failure { code, error }) => {
            weasel::say!("weasel: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn run(mut args: Args) -> Result<ExitCode, Failure> {
    if let Some(Command::Repair { data_dir, config }) = args.command.take() {
        return repair(data_dir.or(args.data_dir), config.or(args.config));
    }
    if args.print_default_config {
        print!("{}", default_config_text());
        return Ok(ExitCode::SUCCESS);
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
        return Ok(ExitCode::SUCCESS);
    }
    stoat::app::init_logging(&config.server.log);
    let data_dir = config.store.data_dir.clone();
    // Started by a handover (SIGUSR2 to the running weasel): the
    // configuration is good, so the old process may stop; the store is
    // one writer's, so it is opened only once the old process has exited.
    // Meanwhile new connections wait in the listening socket's queue.
    stoat::app::restart::notify_ready()?;
    let wait = config.server.http.drain_timeout() + Duration::from_secs(30);
    if !stoat::app::restart::wait_predecessor_exit(wait)? {
        return Err(
            anyhow::anyhow!("the previous weasel process did not exit within {wait:?}").into(),
        );
    }
    let (server, store, recovery) = weasel::build(config).map_err(|e| {
        let error = anyhow::Error::from(e)
            .context(format!("cannot open the store in {}", data_dir.display()));
        Failure {
            code: exit_code(&error),
            error,
        }
    })?;
    weasel::say!(
        "weasel: recovered version {} from {}{} records in {}{}",
        recovery.version,
        if recovery.snapshot > 0 {
            format!("the snapshot at version {} and ", recovery.snapshot)
        } else {
            String::new()
        },
        recovery.records,
        data_dir.display(),
        if recovery.truncated > 0 {
            format!(" (cut a torn tail of {} bytes)", recovery.truncated)
        } else {
            String::new()
        }
    );
    server.run_with(|h| weasel::say!("weasel: listening on http://{}", h.local_addr()))?;
    let decided = store.stats.decided.load(Ordering::Relaxed);
    let records = store.stats.records.load(Ordering::Relaxed);
    weasel::say!(
        "weasel: stopped; {decided} commits decided in {records} durable writes ({:.1} per write)",
        decided as f64 / records.max(1) as f64
    );
    if store.is_fatal() {
        weasel::say!(
            "weasel: stopped after a failed fsync of the commit log: {}; restart to recover \
             from what is on disk",
            store.health().unwrap_or_default()
        );
        return Ok(ExitCode::from(weasel::EXIT_STORAGE as u8));
    }
    Ok(ExitCode::SUCCESS)
}

/// `weasel repair`.
fn repair(data_dir: Option<PathBuf>, config: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let mut config = match &config {
        Some(path) => WeaselConfig::load(path)?,
        None => WeaselConfig::embedded()?,
    };
    if let Some(dir) = data_dir {
        config.store.data_dir = dir;
    }
    let dir = config.store.data_dir.clone();
    match weasel::store::repair(&config.store)? {
        Repaired::Clean => {
            println!(
                "weasel repair: the commit log in {} is not damaged; nothing to do",
                dir.display()
            );
        }
        Repaired::SetAside {
            offset,
            bytes,
            valid_records,
            aside,
        } => {
            println!(
                "weasel repair: cut {} at offset {offset}; the {bytes} bytes from there on \
                 ({valid_records} valid records among them, not replayed: they follow the \
                 damage) are kept in {}",
                dir.join(weasel::store::log::FILE_NAME).display(),
                aside.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
