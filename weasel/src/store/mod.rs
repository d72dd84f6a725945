//! The store: the in-memory state, the commit log it is rebuilt from, and
//! the outcome window.
//!
//! Contract:
//! - [`State`] (every live key with its value and version, and the store
//!   version) sits behind an `RwLock`: the network threads' inline reads
//!   take the read lock for a map lookup and a clone of an `Arc`; the
//!   commit thread takes the write lock only to apply a batch that is
//!   already durable. A reader therefore never sees a commit that a crash
//!   could take back.
//! - [`Writer`] (the log and the outcome window) sits behind a `Mutex`
//!   held for a whole batch, so batches are decided and written one at a
//!   time even with several pipeline threads.
//! - [`Store::open`] first takes the data directory's lock ([`DirLock`]:
//!   `flock` on `DIR/LOCK`, released by the kernel when the process dies,
//!   `kill -9` included), so a second process on the same directory stops
//!   with [`Locked`] before it reads or cuts anything. Then it replays
//!   every record of the log in order: versions must follow one another,
//!   and the outcome window and the watch history are rebuilt from the
//!   same records. A record that does not decode, or breaks the version
//!   sequence, is damage like a bad checksum ([`log::Damage`]): start-up
//!   refuses and [`repair`] sets it aside.
//! - Health: a failed log write is recorded as the store's health problem
//!   ([`Store::health`], served by `/healthz` as 503) until an append
//!   succeeds again; a failed fsync is fatal ([`Store::is_fatal`]): the
//!   server is stopped and the process exits for a restart (see
//!   `log.rs` and docs/ARCHITECTURE.md, "Weasel: disk failures").

pub mod log;
pub mod record;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::codec::Codecs;
use crate::config::StoreConfig;
use crate::status::{Outcome, StatusWindow};
use crate::watch::{CommitEvent, Hub};
use log::{Damage, Log};
use record::{BatchRecord, LoggedOp, LoggedOutcome};

/// A live key's value and the version that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The value.
    pub value: Arc<[u8]>,
    /// The version of the commit that set it.
    pub version: u64,
}

/// One key's change in a commit, its value shared between the state and
/// the watch history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: String,
    /// The new value; `None`: deleted.
    pub value: Option<Arc<[u8]>>,
}

impl Change {
    /// The changes of logged operations (each value copied once).
    pub fn of(ops: &[LoggedOp]) -> Vec<Change> {
        ops.iter()
            .map(|op| Change {
                key: op.key.clone(),
                value: op.value.as_ref().map(|v| Arc::from(v.as_slice())),
            })
            .collect()
    }
}

/// The committed (durable) state.
#[derive(Debug, Default)]
pub struct State {
    /// The latest committed version (0: nothing yet).
    pub version: u64,
    /// Live keys, ordered (for prefix listing).
    pub map: BTreeMap<String, Item>,
}

impl State {
    /// The current version of `key` (0: absent).
    pub fn key_version(&self, key: &str) -> u64 {
        self.map.get(key).map_or(0, |i| i.version)
    }

    /// Applies commit `version`'s changes.
    pub fn apply(&mut self, version: u64, changes: &[Change]) {
        for c in changes {
            match &c.value {
                Some(v) => {
                    let item = Item {
                        value: v.clone(),
                        version,
                    };
                    self.map.insert(c.key.clone(), item);
                }
                None => {
                    self.map.remove(&c.key);
                }
            }
        }
        self.version = version;
    }
}

/// The commit thread's side: the log and the outcomes.
#[derive(Debug)]
pub struct Writer {
    /// The commit log.
    pub log: Log,
    /// Outcomes by request id.
    pub status: StatusWindow,
}

/// A Weasel store.
#[derive(Debug)]
pub struct Store {
    state: RwLock<State>,
    writer: Mutex<Writer>,
    /// Committed changes for watchers.
    pub hub: Arc<Hub>,
    /// The `[weasel]` settings.
    pub config: StoreConfig,
    /// Body formats for commits.
    pub codecs: Codecs,
    /// Counters since start-up.
    pub stats: Stats,
    /// Why the store is unhealthy (a failed log write), if it is.
    health: RwLock<Option<String>>,
    /// `health` is set (read on every append without a lock).
    unhealthy: AtomicBool,
    /// An fsync failed: the process must stop and recover from disk.
    fatal: AtomicBool,
    /// Held for the life of the store.
    _lock: DirLock,
}

/// The data directory's lock: `flock(LOCK_EX | LOCK_NB)` on `DIR/LOCK`,
/// which holds the owner's pid (for the error a second process gets). The
/// kernel drops the lock when the file is closed or the process dies.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Another process holds the data directory's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// The directory.
    pub dir: PathBuf,
    /// The pid written by the holder, when readable.
    pub pid: Option<u32>,
}

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "data directory {} is locked by another weasel process",
            self.dir.display()
        )?;
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid})")?;
        }
        f.write_str("; two processes must never share one data directory")
    }
}

impl std::error::Error for Locked {}

impl Locked {
    /// The lock error inside `e`, if `e` is one.
    pub fn of(e: &io::Error) -> Option<&Locked> {
        e.get_ref().and_then(|e| e.downcast_ref::<Locked>())
    }
}

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "LOCK";

impl DirLock {
    /// Creates `dir` if needed and locks it, or fails with [`Locked`]
    /// (kind `WouldBlock`).
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        std::fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))?;
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let locked = Locked {
                    dir: dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                };
                return Err(io::Error::new(io::ErrorKind::WouldBlock, locked));
            }
            Err(e) => return Err(e.into()),
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(DirLock { _file: file })
    }
}

/// Counters since start-up (for the exit line and the benchmarks).
#[derive(Debug, Default)]
pub struct Stats {
    /// Commit requests decided (committed or conflict) and written.
    pub decided: AtomicU64,
    /// Log records (one write and one fsync each) written.
    pub records: AtomicU64,
}

/// What recovery found, for the start-up log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Records replayed.
    pub records: usize,
    /// The version reached.
    pub version: u64,
    /// Bytes of torn tail cut off.
    pub truncated: u64,
}

/// What replaying a log's records rebuilt.
struct Replayed {
    state: State,
    status: StatusWindow,
    tail: VecDeque<CommitEvent>,
}

/// Replays `records` (at `offsets` in the file at `path`); the first that
/// does not decode or breaks the version sequence is [`Damage`].
fn replay(
    config: &StoreConfig,
    path: &Path,
    records: &[Vec<u8>],
    offsets: &[u64],
) -> Result<Replayed, Damage> {
    let mut state = State::default();
    let mut status = StatusWindow::new(config.status_window);
    let mut tail: VecDeque<CommitEvent> = VecDeque::new();
    for (i, payload) in records.iter().enumerate() {
        let damage = |reason: String| Damage {
            path: path.to_path_buf(),
            record: i,
            offset: offsets[i],
            reason,
            valid_after: offsets.get(i + 1).copied(),
        };
        let batch = BatchRecord::decode(payload)
            .map_err(|e| damage(format!("a good checksum but it does not decode: {e}")))?;
        for entry in batch.entries {
            let outcome = match entry.outcome {
                LoggedOutcome::Committed { version, ops } => {
                    if version != state.version + 1 {
                        return Err(damage(format!(
                            "version {version} follows {}",
                            state.version
                        )));
                    }
                    let changes = Change::of(&ops);
                    state.apply(version, &changes);
                    tail.push_back(CommitEvent::new(version, changes));
                    if tail.len() > config.watch_history {
                        tail.pop_front();
                    }
                    Outcome::Committed { version }
                }
                LoggedOutcome::Conflict { key, version } => Outcome::Conflict { key, version },
            };
            status.insert(&entry.request_id, outcome);
        }
    }
    Ok(Replayed {
        state,
        status,
        tail,
    })
}

/// `weasel repair`: locks `config.data_dir` and sets aside the log from
/// its first damaged record on (a bad frame or checksum, or a record that
/// does not decode or breaks the version sequence), keeping every byte
/// (see [`log::repair`]). A torn tail is not damage: a normal start cuts
/// it.
pub fn repair(config: &StoreConfig) -> io::Result<log::Repaired> {
    let _lock = DirLock::acquire(&config.data_dir)?;
    let cut = match Log::open(&config.data_dir, config.fsync) {
        Err(e) => match Damage::of(&e) {
            Some(d) => d.offset,
            None => return Err(e),
        },
        Ok((log, recovered)) => {
            match replay(config, log.path(), &recovered.records, &recovered.offsets) {
                Ok(_) => return Ok(log::Repaired::Clean),
                Err(d) => d.offset,
            }
        }
    };
    log::repair(&config.data_dir, Some(cut))
}

impl Store {
    /// Opens the store in `config.data_dir`: locks it, replays its log.
    pub fn open(config: StoreConfig, codecs: Codecs) -> io::Result<(Store, Recovery)> {
        let lock = DirLock::acquire(&config.data_dir)?;
        let (log, recovered) = Log::open(&config.data_dir, config.fsync)?;
        let Replayed {
            state,
            status,
            tail,
        } = replay(&config, log.path(), &recovered.records, &recovered.offsets)
            .map_err(|d| io::Error::new(io::ErrorKind::InvalidData, d))?;
        let hub = Hub::new(&config, state.version);
        hub.publish(tail.into());
        let recovery = Recovery {
            records: recovered.records.len(),
            version: state.version,
            truncated: recovered.truncated,
        };
        let store = Store {
            state: RwLock::new(state),
            writer: Mutex::new(Writer { log, status }),
            hub,
            config,
            codecs,
            stats: Stats::default(),
            health: RwLock::new(None),
            unhealthy: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
            _lock: lock,
        };
        Ok((store, recovery))
    }

    /// `None` when healthy; otherwise why not (a failed log write or
    /// fsync), for `/healthz`.
    pub fn health(&self) -> Option<String> {
        self.health
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the outcome of a log append for [`Store::health`]: success
    /// clears a problem; a failure sets it, and a fatal one (a failed
    /// fsync) also stops the server with SIGTERM to this process (the
    /// graceful stop of `Server::run`), after which `main` exits with its
    /// storage-failure code so a supervisor restarts it and recovery
    /// re-reads the log.
    pub(crate) fn note_append(&self, result: &io::Result<()>, log: &Log) {
        let Err(e) = result else {
            if self.unhealthy.load(std::sync::atomic::Ordering::Acquire) {
                *self.health.write().unwrap_or_else(|e| e.into_inner()) = None;
                self.unhealthy
                    .store(false, std::sync::atomic::Ordering::Release);
                crate::say!("weasel: the commit log accepts writes again; healthy");
            }
            return;
        };
        let fatal = log.is_fatal();
        let problem = if fatal {
            format!(
                "the commit log failed ({e}); after a failed fsync the file's state is \
                 unknown: the server is stopping so that a restart recovers from disk"
            )
        } else {
            format!(
                "the commit log write failed ({e}); commits are refused until a write \
                 succeeds (each new commit retries)"
            )
        };
        crate::say!("weasel: {problem}");
        *self.health.write().unwrap_or_else(|e| e.into_inner()) = Some(problem);
        self.unhealthy
            .store(true, std::sync::atomic::Ordering::Release);
        if fatal && !self.fatal.swap(true, std::sync::atomic::Ordering::SeqCst) {
            use rustix::process::{getpid, kill_process, Signal};
            if let Err(e) = kill_process(getpid(), Signal::TERM) {
                crate::say!("weasel: cannot signal the stop ({e}); exiting");
                std::process::exit(crate::EXIT_STORAGE);
            }
        }
    }

    /// Whether an fsync failed: the process must stop and restart.
    pub fn is_fatal(&self) -> bool {
        self.fatal.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The state, for reading (inline handlers).
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-changed
        // in a way readers could misread (apply is a sequence of whole
        // inserts and removes), so a poisoned lock is still usable.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The state, for applying a durable batch.
    pub(crate) fn write_state(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer side, held for one batch.
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The outcome recorded for `request_id`.
    pub fn status(&self, request_id: &str) -> Option<Outcome> {
        self.writer().status.get(request_id).cloned()
    }
}
