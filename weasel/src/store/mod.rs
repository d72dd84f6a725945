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
//! - [`Store::open`] replays every record of the log in order: versions
//!   must follow one another, and the outcome window and the watch history
//!   are rebuilt from the same records.

pub mod log;
pub mod record;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::codec::Codecs;
use crate::config::StoreConfig;
use crate::status::{Outcome, StatusWindow};
use crate::watch::{CommitEvent, Hub};
use log::Log;
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
}

/// Counters since start-up (for the exit line and the benchmarks).
#[derive(Debug, Default)]
pub struct Stats {
    /// Commit requests decided (committed or conflict) and written.
    pub decided: AtomicU64,
    /// Log records (one write and one fsync each) written.
    pub records: AtomicU64,
    /// Outcomes, duplicates, log bytes, batch sizes, sync times (`/metrics`).
    pub commits: crate::metrics::CommitMetrics,
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

impl Store {
    /// Opens the store in `config.data_dir`, replaying its log.
    pub fn open(config: StoreConfig, codecs: Codecs) -> io::Result<(Store, Recovery)> {
        let (log, recovered) = Log::open(&config.data_dir, config.fsync)?;
        let mut state = State::default();
        let mut status = StatusWindow::new(config.status_window);
        let mut tail: VecDeque<CommitEvent> = VecDeque::new();
        for (i, payload) in recovered.records.iter().enumerate() {
            let batch = BatchRecord::decode(payload).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: record {i} has a good checksum but does not decode: {e}",
                        log.path().display()
                    ),
                )
            })?;
            for entry in batch.entries {
                let outcome = match entry.outcome {
                    LoggedOutcome::Committed { version, ops } => {
                        if version != state.version + 1 {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "{}: record {i}: version {version} follows {}",
                                    log.path().display(),
                                    state.version
                                ),
                            ));
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
        let hub = Hub::new(
            config.watch_history,
            config.watch_history_bytes,
            state.version,
        );
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
        };
        Ok((store, recovery))
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
