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
pub mod snapshot;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

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
    /// Bytes of live keys and values (what snapshots are sized against).
    pub bytes: usize,
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
                    self.bytes += v.len();
                    match self.map.insert(c.key.clone(), item) {
                        Some(old) => self.bytes -= old.value.len(),
                        None => self.bytes += c.key.len(),
                    }
                }
                None => {
                    if let Some(old) = self.map.remove(&c.key) {
                        self.bytes -= c.key.len() + old.value.len();
                    }
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
    /// Outcomes by request id: its own lock, so that `GET /v1/status`
    /// answers inline without waiting for a batch's fsync (the writer
    /// mutex is held across it).
    pub status: Arc<Mutex<StatusWindow>>,
}

impl Writer {
    /// The outcome window (a short lock).
    pub fn status(&self) -> MutexGuard<'_, StatusWindow> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    /// Whether a snapshot is being written, and the bytes on disk.
    snap: Arc<Snapshotting>,
    /// The outcome window (shared with the writer).
    status: Arc<Mutex<StatusWindow>>,
    /// Held for the life of the store.
    _lock: DirLock,
}

/// The snapshot thread's state, shared with the commit thread: whether a
/// snapshot is being written (a commit over the disk bound waits on
/// `done` for it), and the bytes the data directory holds.
#[derive(Debug, Default)]
struct Snapshotting {
    busy: Mutex<bool>,
    done: Condvar,
    /// Size of the newest durable snapshot (0: none).
    snapshot_bytes: AtomicU64,
    /// Bytes of the sealed segments not yet retired.
    sealed_bytes: AtomicU64,
    /// The live data's size when the newest snapshot was taken.
    snapshot_live: AtomicU64,
}

impl Snapshotting {
    fn busy(&self) -> MutexGuard<'_, bool> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the snapshot finished and wakes a commit waiting for it.
    fn finish(&self) {
        *self.busy() = false;
        self.done.notify_all();
    }
}

/// Calls [`Snapshotting::finish`] when dropped.
struct FinishOnDrop<'a>(&'a Snapshotting);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// Deletes what snapshot `version` makes useless: older snapshots and the
/// segments sealed at or before it (then syncs the directory).
fn retire(dir: &Path, version: u64) -> io::Result<()> {
    let files = snapshot::list(dir)?;
    let mut removed = false;
    for (v, path) in files.segments.iter().chain(&files.snapshots) {
        let older_snapshot = path.extension().is_some_and(|e| e == "snap") && *v < version;
        let covered_segment = path.extension().map_or(true, |e| e != "snap") && *v <= version;
        if older_snapshot || covered_segment {
            std::fs::remove_file(path)?;
            removed = true;
        }
    }
    if removed {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
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
    /// The version of the snapshot it started from (0: none).
    pub snapshot: u64,
}

/// What replaying a log's records rebuilt.
struct Replayed {
    state: State,
    status: StatusWindow,
    tail: VecDeque<CommitEvent>,
}

/// Replays `records` (at `offsets` in the file at `path`) on top of `r`;
/// the first that does not decode or breaks the version sequence is
/// [`Damage`].
fn replay_into(
    r: &mut Replayed,
    config: &StoreConfig,
    path: &Path,
    records: &[Vec<u8>],
    offsets: &[u64],
) -> Result<(), Damage> {
    let Replayed {
        state,
        status,
        tail,
    } = r;
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
    Ok(())
}

/// Loads the newest usable snapshot of `dir` (deleting unfinished ones)
/// and replays the retired segments after it: the state, the snapshot's
/// version, whether an unusable newer snapshot was passed over, and the
/// records replayed.
fn load_base(config: &StoreConfig, dir: &Path) -> io::Result<(Replayed, u64, bool, usize)> {
    let files = snapshot::list(dir)?;
    for tmp in &files.temporary {
        // An unfinished snapshot (a crash while writing it).
        std::fs::remove_file(tmp)?;
    }
    let mut replayed = Replayed {
        state: State::default(),
        status: StatusWindow::new(config.status_window),
        tail: VecDeque::new(),
    };
    let mut base = 0;
    let mut fell_back = false;
    for (i, (v, path)) in files.snapshots.iter().enumerate().rev() {
        match snapshot::load(path) {
            Ok(loaded) => {
                let st = &mut replayed.state;
                st.version = loaded.version;
                for (k, item) in loaded.items {
                    st.bytes += k.len() + item.value.len();
                    st.map.insert(k, item);
                }
                for (id, o) in loaded.status {
                    replayed.status.insert(&id, o);
                }
                base = *v;
                break;
            }
            Err(why) => {
                crate::say!(
                    "weasel: snapshot {} is not usable ({why}); trying the one before",
                    path.display()
                );
                fell_back = true;
                if i == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "no usable snapshot in {} ({} found, all damaged): start-up \
                             refused, nothing changed",
                            dir.display(),
                            files.snapshots.len()
                        ),
                    ));
                }
            }
        }
    }
    let mut records = 0;
    for (v, path) in &files.segments {
        if *v <= base {
            continue;
        }
        let seg = log::read_sealed(path)?;
        replay_into(&mut replayed, config, path, &seg.records, &seg.offsets)
            .map_err(|d| io::Error::new(io::ErrorKind::InvalidData, d))?;
        records += seg.records.len();
    }
    Ok((replayed, base, fell_back, records))
}

/// The committed versions `first..end` read from the log files of `dir`
/// (the retired segments after the newest snapshot, then the active log),
/// for a watch resuming from before the in-memory history. `Err(oldest)`:
/// `first` is no longer in the log (compacted into a snapshot); `oldest`
/// is the oldest version the log still holds.
pub fn read_events(dir: &Path, first: u64, end: u64) -> Result<Vec<CommitEvent>, u64> {
    // A retirement may delete a segment while it is read: list again once.
    let mut last = 0;
    for _ in 0..2 {
        let Ok(files) = snapshot::list(dir) else {
            continue;
        };
        let base = files.snapshots.last().map_or(0, |(v, _)| *v);
        last = base + 1;
        if first <= base {
            return Err(base + 1);
        }
        let mut paths: Vec<PathBuf> = files
            .segments
            .iter()
            .filter(|(v, _)| *v > base)
            .map(|(_, p)| p.clone())
            .collect();
        paths.push(dir.join(log::FILE_NAME));
        let mut events = Vec::new();
        let mut ok = true;
        'files: for path in &paths {
            let Ok(records) = log::read_valid(path) else {
                ok = false;
                break;
            };
            for payload in records {
                let Ok(batch) = BatchRecord::decode(&payload) else {
                    ok = false;
                    break 'files;
                };
                for entry in batch.entries {
                    if let LoggedOutcome::Committed { version, ops } = entry.outcome {
                        if version >= end {
                            break 'files;
                        }
                        if version >= first {
                            events.push(CommitEvent::new(version, Change::of(&ops)));
                        }
                    }
                }
            }
        }
        if !ok {
            continue;
        }
        return match events.first() {
            Some(e) if e.version == first => Ok(events),
            Some(e) => Err(e.version),
            None => Err(last),
        };
    }
    Err(last)
}

/// `weasel repair`: locks `config.data_dir` and sets aside the log from
/// its first damaged record on (a bad frame or checksum, or a record that
/// does not decode or breaks the version sequence), keeping every byte
/// (see [`log::repair`]). A torn tail is not damage: a normal start cuts
/// it.
pub fn repair(config: &StoreConfig) -> io::Result<log::Repaired> {
    let _lock = DirLock::acquire(&config.data_dir)?;
    let (mut replayed, _, _, _) = load_base(config, &config.data_dir)?;
    let cut = match Log::open(&config.data_dir, config.fsync) {
        Err(e) => match Damage::of(&e) {
            Some(d) => d.offset,
            None => return Err(e),
        },
        Ok((log, recovered)) => {
            let path = log.path().to_path_buf();
            match replay_into(
                &mut replayed,
                config,
                &path,
                &recovered.records,
                &recovered.offsets,
            ) {
                Ok(()) => return Ok(log::Repaired::Clean),
                Err(d) => d.offset,
            }
        }
    };
    log::repair(&config.data_dir, Some(cut))
}

impl Store {
    /// Opens the store in `config.data_dir`: locks it, loads the newest
    /// valid snapshot (a torn or corrupt one is reported and the previous
    /// used), replays the retired segments after it and the active log.
    pub fn open(config: StoreConfig, codecs: Codecs) -> io::Result<(Store, Recovery)> {
        let dir = config.data_dir.clone();
        let lock = DirLock::acquire(&dir)?;
        let (mut replayed, base, fell_back, mut records) = load_base(&config, &dir)?;
        let (log, recovered) = Log::open(&dir, config.fsync)?;
        let snap = Snapshotting::default();
        if let Ok(files) = snapshot::list(&dir) {
            let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
            let newest = files.snapshots.iter().rfind(|(v, _)| *v == base);
            snap.snapshot_bytes
                .store(newest.map_or(0, |(_, p)| size(p)), Ordering::Relaxed);
            let sealed = files.segments.iter().filter(|(v, _)| *v > base);
            snap.sealed_bytes
                .store(sealed.map(|(_, p)| size(p)).sum(), Ordering::Relaxed);
        }
        replay_into(
            &mut replayed,
            &config,
            log.path(),
            &recovered.records,
            &recovered.offsets,
        )
        .map_err(|d| io::Error::new(io::ErrorKind::InvalidData, d))?;
        records += recovered.records.len();
        snap.snapshot_live
            .store(replayed.state.bytes as u64, Ordering::Relaxed);
        if !fell_back && base > 0 {
            // Finish a retirement a crash interrupted.
            retire(&dir, base)?;
        }
        let Replayed {
            state,
            status,
            tail,
        } = replayed;
        let status = Arc::new(Mutex::new(status));
        let hub = Hub::new(&config, state.version);
        hub.publish(tail.into());
        let disk_dir = dir.clone();
        hub.set_disk(Box::new(move |first, end| {
            read_events(&disk_dir, first, end)
        }));
        let recovery = Recovery {
            records,
            version: state.version,
            truncated: recovered.truncated,
            snapshot: base,
        };
        let store = Store {
            state: RwLock::new(state),
            status: Arc::clone(&status),
            writer: Mutex::new(Writer { log, status }),
            hub,
            config,
            codecs,
            stats: Stats::default(),
            health: RwLock::new(None),
            unhealthy: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
            snap: Arc::new(snap),
            _lock: lock,
        };
        Ok((store, recovery))
    }

    /// After a batch was applied (the writer held): starts a snapshot when
    /// the active log has reached its due size (below), or when `force`d.
    /// Returns the version snapshotted, or why not.
    ///
    /// Due size: `snapshot_log_percent` of the live data, but no more than
    /// three quarters of the room the disk bound leaves beside two
    /// snapshots (the newest and the next: `max_disk_percent` of the live
    /// data minus twice the snapshot's size), the last quarter being for
    /// the log that grows while the next one is written; and at least
    /// `snapshot_min_log_bytes`. Before that, [`Store::hold_for_disk`]
    /// makes this batch's commit thread wait while a snapshot being
    /// written and the files it will retire exceed the bound.
    pub(crate) fn maybe_snapshot(&self, writer: &mut Writer, force: bool) -> Result<u64, String> {
        if self.config.snapshot_min_log_bytes == 0 && !force {
            return Err("snapshots are off".into());
        }
        if !force {
            self.hold_for_disk(writer);
        }
        if *self.snap.busy() {
            return Err("a snapshot is being written".into());
        }
        // The copy: keys and Arcs of values, under the read lock (commits
        // are already held off by the writer mutex).
        let image = {
            let state = self.read();
            if !force && (writer.log.len() as u128) < self.due(&state, writer) {
                return Err("not due".into());
            }
            if writer.log.is_empty() {
                return Err("nothing logged since the last snapshot".into());
            }
            snapshot::Image {
                version: state.version,
                items: state
                    .map
                    .iter()
                    .map(|(k, i)| (k.clone(), i.clone()))
                    .collect(),
                status: snapshot::status_image(&writer.status()),
            }
        };
        let version = image.version;
        let live = self.read().bytes as u64;
        let sealed = writer.log.len();
        if let Err(e) = writer.log.rotate(version) {
            let why = e.to_string();
            self.note_append(&Err(e), &writer.log);
            return Err(why);
        }
        self.snap.sealed_bytes.fetch_add(sealed, Ordering::Relaxed);
        *self.snap.busy() = true;
        let dir = self.config.data_dir.clone();
        let snap = self.snap.clone();
        let spawned = std::thread::Builder::new()
            .name("weasel-snapshot".into())
            .spawn(move || {
                // Finished however this thread ends, a panic included: a
                // commit held for the disk bound waits for it.
                let _finish = FinishOnDrop(&snap);
                let started = std::time::Instant::now();
                let done = snapshot::write(&dir, &image).and_then(|path| {
                    // Read back and checked whole before anything older
                    // goes.
                    let bytes = snapshot::verify(&path).map_err(io::Error::other)?;
                    retire(&dir, version)?;
                    Ok(bytes)
                });
                match done {
                    Ok(bytes) => {
                        // Every sealed segment is at or before `version`
                        // (the next rotation waits for this snapshot).
                        snap.sealed_bytes.store(0, Ordering::Relaxed);
                        snap.snapshot_bytes.store(bytes, Ordering::Relaxed);
                        snap.snapshot_live.store(live, Ordering::Relaxed);
                        crate::say!(
                            "weasel: snapshot at version {version} ({} keys, {bytes} bytes) \
                             written in {:?}",
                            image.items.len(),
                            started.elapsed()
                        )
                    }
                    Err(e) => crate::say!(
                        "weasel: snapshot at version {version} failed ({e}); the log keeps \
                         everything, the next one will retry"
                    ),
                }
                drop(image);
            });
        if let Err(e) = spawned {
            self.snap.finish();
            return Err(format!("cannot start the snapshot thread: {e}"));
        }
        Ok(version)
    }

    /// The active log's size at which a snapshot is due (see
    /// [`Store::maybe_snapshot`]).
    fn due(&self, state: &State, writer: &Writer) -> u128 {
        let live = state.bytes as u128;
        let mut due = live * self.config.snapshot_log_percent as u128 / 100;
        if self.config.max_disk_percent != 0 {
            let bound = live * self.config.max_disk_percent as u128 / 100;
            let snapshot = self.snapshot_estimate(state, writer);
            due = due.min(bound.saturating_sub(2 * snapshot) * 3 / 4);
        }
        due.max(self.config.snapshot_min_log_bytes as u128)
    }

    /// The size of the next snapshot: the last one's plus the live data's
    /// growth since, or when more, the live data plus a key's framing and
    /// version and an outcome's (request id and outcome, about) each.
    fn snapshot_estimate(&self, state: &State, writer: &Writer) -> u128 {
        let computed = (state.bytes + 16 * state.map.len() + 32 * writer.status().len()) as u128;
        let last = self.snap.snapshot_bytes.load(Ordering::Relaxed) as u128;
        let live_then = self.snap.snapshot_live.load(Ordering::Relaxed) as u128;
        // The last one's size plus what the live data grew since, or the
        // computed size when more (the outcome window fills after start).
        computed.max(last + (state.bytes as u128).saturating_sub(live_then))
    }

    /// The disk bound's back-pressure (the writer held, so no batch is
    /// written meanwhile): while a snapshot is being written and the
    /// newest snapshot, the sealed segments, the active log and the
    /// snapshot being written (its estimate) exceed `max_disk_percent` of
    /// the live data, waits for the snapshot to finish (it then retires
    /// the old snapshot and the segments). Commits queue in the ring
    /// meanwhile (503 when it is full). Below `snapshot_min_log_bytes` of
    /// log nothing waits: the bound does not hold for tiny stores.
    fn hold_for_disk(&self, writer: &Writer) {
        if self.config.max_disk_percent == 0 {
            return;
        }
        let over = || {
            let state = self.read();
            // 2% kept for the batch written after this check.
            let bound = state.bytes as u128 * self.config.max_disk_percent as u128 * 98 / 10_000;
            let snapshot = self.snap.snapshot_bytes.load(Ordering::Relaxed) as u128;
            let logged =
                (self.snap.sealed_bytes.load(Ordering::Relaxed) + writer.log.len()) as u128;
            logged > self.config.snapshot_min_log_bytes as u128
                && snapshot + logged + self.snapshot_estimate(&state, writer) > bound
        };
        let mut busy = self.snap.busy();
        while *busy && over() {
            busy = self.snap.done.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
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
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(request_id)
            .cloned()
    }
}
