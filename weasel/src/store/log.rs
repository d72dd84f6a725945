//! The commit log: an append-only file of checksummed records.
//!
//! Contract:
//! - A record is `len: u32 LE | crc32: u32 LE | payload (len bytes)`, the
//!   CRC-32 (IEEE, `crc32fast`) taken over the payload. One record holds
//!   one whole batch, so a batch is on disk entirely or not at all. A
//!   payload is never empty and starts with [`PAYLOAD_MARK`] (a
//!   `BatchRecord`'s MessagePack array head, see `record.rs`).
//! - [`Log::append`] writes one record with one `write` (the frame and
//!   payload built in one buffer) and, when `fsync` is on, one
//!   `fdatasync`; only after it returns `Ok` may the batch be acknowledged.
//! - [`Log::open`] reads every record back in order. At the first record
//!   that is not whole and valid it tells a torn tail from damage:
//!   * torn tail (cut, the file truncated there and synced): everything
//!     from there to the end is zeros (what power loss leaves when the
//!     size reached the disk but the data did not), or the record runs
//!     past the end of the file (a crash during the write), or its last
//!     pages (from a 4 KiB-aligned offset to the end) are zeros; and in
//!     every case no valid record follows. Such a record was never
//!     acknowledged: its fsync had not returned.
//!   * damage (anything else: a bad checksum or a bad frame with a valid
//!     record after it, or a whole last record whose checksum fails):
//!     [`Log::open`] refuses with a [`Damage`] error naming the record
//!     number and byte offset, and leaves the file untouched.
//!     [`repair`] (the `weasel repair` command) copies everything from the
//!     damaged record on into a file of its own beside the log, synced,
//!     and only then truncates the log there: no byte is deleted.
//! - Write failures (see docs/ARCHITECTURE.md, "Weasel: disk failures"):
//!   a failed `write` (ENOSPC, EIO) leaves the page cache holding at most
//!   a partial record past the last good offset, so the log truncates the
//!   file back to that offset and stays usable: the next append retries.
//!   A failed `fdatasync` leaves the page cache in an unknown state (Linux
//!   may have dropped the dirty pages and will not report it again), so
//!   the log is then *fatal*: it refuses every append, and the process is
//!   stopped so that a restart re-reads what is really on disk.
//!
//! Hand-written because it is the product's core and small: an embedded
//! database (redb, sled) would add its own page-level write amplification
//! and a second fsync per transaction for what is one sequential append.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record's frame before its payload.
pub const FRAME: usize = 8;

/// Largest payload a record may have; a length above it is corruption.
pub const MAX_RECORD: usize = 1 << 30;

/// The first byte of every payload (a one-field struct in MessagePack's
/// array form: `fixarray` of 1). Used to skip impossible record starts
/// quickly when looking for valid data after a bad record.
pub const PAYLOAD_MARK: u8 = 0x91;

/// The log's file name inside the data directory.
pub const FILE_NAME: &str = "commits.log";

/// The granularity a torn write leaves zeros in (a page).
const PAGE: usize = 4096;

/// An open commit log, positioned at its end.
#[derive(Debug)]
pub struct Log {
    file: File,
    path: PathBuf,
    len: u64,
    fsync: bool,
    /// An fsync failed: no more appends (see the module doc).
    fatal: bool,
    buf: Vec<u8>,
}

/// What [`Log::open`] found.
#[derive(Debug)]
pub struct Recovered {
    /// Every whole record's payload, in order.
    pub records: Vec<Vec<u8>>,
    /// Each record's byte offset in the file.
    pub offsets: Vec<u64>,
    /// Bytes of torn tail cut off the end; 0 normally.
    pub truncated: u64,
}

/// The log is damaged: a record that is not a torn tail fails. Carried
/// inside an `io::Error` of kind `InvalidData` (see [`Damage::of`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The log file.
    pub path: PathBuf,
    /// The damaged record's number (0-based).
    pub record: usize,
    /// Its byte offset.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
    /// The offset of the next valid record, if there is one.
    pub valid_after: Option<u64>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: record {} at offset {} is damaged ({})",
            self.path.display(),
            self.record,
            self.offset,
            self.reason
        )?;
        match self.valid_after {
            Some(at) => write!(f, "; valid records follow at offset {at}")?,
            None => f.write_str("; it is the last record")?,
        }
        write!(
            f,
            "; the file was left untouched. `weasel repair --data-dir DIR` sets \
             everything from offset {} aside in a file of its own and keeps the \
             records before it",
            self.offset
        )
    }
}

impl std::error::Error for Damage {}

impl Damage {
    /// The damage inside `e`, if `e` is one.
    pub fn of(e: &io::Error) -> Option<&Damage> {
        e.get_ref().and_then(|e| e.downcast_ref::<Damage>())
    }

    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// How the valid part of a log ends.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Every byte is in a valid record.
    Clean,
    /// A torn tail from `at` on, safe to cut.
    Torn { at: usize },
    /// A damaged record at `at`.
    Damaged {
        at: usize,
        reason: String,
        valid_after: Option<usize>,
    },
}

/// Whole valid records of `bytes`: (offset, payload range), and how the
/// valid part ends.
fn scan(bytes: &[u8]) -> (Vec<(usize, usize, usize)>, End) {
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        if at == bytes.len() {
            return (records, End::Clean);
        }
        match check(bytes, at) {
            Ok(end) => {
                records.push((at, at + FRAME, end));
                at = end;
            }
            Err(problem) => return (records, classify(bytes, at, problem)),
        }
    }
}

/// Why the record at `at` is not valid.
enum Problem {
    /// It runs past the end of the file (or its frame does).
    Incomplete,
    /// It is whole but wrong (checksum, empty or unmarked payload).
    Bad(String),
}

/// The end of the valid record at `at`, or what is wrong with it.
fn check(bytes: &[u8], at: usize) -> Result<usize, Problem> {
    let rest = &bytes[at..];
    if rest.len() < FRAME {
        return Err(Problem::Incomplete);
    }
    let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len > MAX_RECORD || rest.len() - FRAME < len {
        return Err(Problem::Incomplete);
    }
    let payload = &rest[FRAME..FRAME + len];
    if len == 0 {
        return Err(Problem::Bad("empty record".into()));
    }
    if crc32fast::hash(payload) != crc {
        return Err(Problem::Bad("checksum mismatch".into()));
    }
    if payload[0] != PAYLOAD_MARK {
        return Err(Problem::Bad("not a batch record".into()));
    }
    Ok(at + FRAME + len)
}

/// The first offset after `from` where a valid record starts.
fn next_valid(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(FRAME)).find(|&p| {
        // Cheap tests first: most offsets fail the mark or the length.
        bytes[p + FRAME] == PAYLOAD_MARK && check(bytes, p).is_ok()
    })
}

/// Torn tail or damage, for the first invalid record at `at`.
fn classify(bytes: &[u8], at: usize, problem: Problem) -> End {
    let rest = &bytes[at..];
    if rest.iter().all(|&b| b == 0) {
        return End::Torn { at };
    }
    if let Some(q) = next_valid(bytes, at + 1) {
        let reason = match problem {
            Problem::Incomplete => "its length runs past valid data".to_owned(),
            Problem::Bad(r) => r,
        };
        return End::Damaged {
            at,
            reason,
            valid_after: Some(q),
        };
    }
    match problem {
        Problem::Incomplete => End::Torn { at },
        Problem::Bad(reason) => {
            // A whole last record whose last pages are zeros: the size
            // reached the disk, those pages did not.
            let first_page = at.div_ceil(PAGE) * PAGE;
            let zero_pages = (first_page..bytes.len())
                .step_by(PAGE)
                .find(|&p| bytes[p..].iter().all(|&b| b == 0));
            if zero_pages.is_some() {
                End::Torn { at }
            } else {
                End::Damaged {
                    at,
                    reason,
                    valid_after: None,
                }
            }
        }
    }
}

impl Log {
    /// Opens (creating if needed) the log in directory `dir`, reads it back
    /// and cuts a torn tail; refuses a damaged log (see the module doc).
    pub fn open(dir: &Path, fsync: bool) -> io::Result<(Log, Recovered)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        if created && fsync {
            // The new file's directory entry must be durable too.
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (found, end) = scan(&bytes);
        let good = match end {
            End::Clean => bytes.len(),
            End::Torn { at } => at,
            End::Damaged {
                at,
                reason,
                valid_after,
            } => {
                return Err(Damage {
                    path,
                    record: found.len(),
                    offset: at as u64,
                    reason,
                    valid_after: valid_after.map(|q| q as u64),
                }
                .into_io())
            }
        };
        let truncated = (bytes.len() - good) as u64;
        if truncated > 0 {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let offsets = found.iter().map(|&(at, _, _)| at as u64).collect();
        let records = found
            .iter()
            .map(|&(_, from, to)| bytes[from..to].to_vec())
            .collect();
        let log = Log {
            file,
            path,
            len: good as u64,
            fsync,
            fatal: false,
            buf: Vec::new(),
        };
        Ok((
            log,
            Recovered {
                records,
                offsets,
                truncated,
            },
        ))
    }

    /// Appends one record holding `payload`, durable when `Ok`. After an
    /// error, [`Log::is_fatal`] tells whether appends may be retried.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.fatal {
            return Err(io::Error::other(
                "an fsync of the commit log failed earlier; the server is stopping \
                 so that a restart recovers from what is on disk",
            ));
        }
        if payload.len() > MAX_RECORD || payload.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "batch record empty or too large",
            ));
        }
        self.buf.clear();
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.buf.extend_from_slice(payload);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Nothing of this record was acknowledged: cut what part of it
            // reached the page cache, so the next append follows the last
            // good record. If even that fails, the file is unknown.
            if let Err(t) = self.file.set_len(self.len) {
                self.fatal = true;
                return Err(io::Error::new(
                    e.kind(),
                    format!("{e}; cutting the partial record failed too ({t})"),
                ));
            }
            return Err(e);
        }
        if self.fsync {
            if let Err(e) = self.file.sync_data() {
                self.fatal = true;
                return Err(e);
            }
        }
        self.len += self.buf.len() as u64;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new(); // Do not keep a burst's buffer for ever.
        }
        Ok(())
    }

    /// Whether an fsync failed: the log takes no more appends.
    pub fn is_fatal(&self) -> bool {
        self.fatal
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log has no records.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repaired {
    /// Nothing was damaged (a torn tail is cut by a normal start).
    Clean,
    /// Bytes from `offset` on were moved to `aside`.
    SetAside {
        /// Where the log was cut.
        offset: u64,
        /// Bytes set aside.
        bytes: u64,
        /// Valid records found in the set-aside part.
        valid_records: usize,
        /// The file holding them.
        aside: PathBuf,
    },
}

/// Sets the log in `dir` right from `cut` on (a byte offset; `None`: the
/// first damaged record the log itself finds): copies those bytes into
/// `commits.log.damaged-at-OFFSET` (synced, with its directory entry),
/// then truncates the log there. The caller holds the directory lock.
pub fn repair(dir: &Path, cut: Option<u64>) -> io::Result<Repaired> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Repaired::Clean),
        Err(e) => return Err(e),
    };
    let at = match cut {
        Some(at) => at as usize,
        None => match scan(&bytes).1 {
            End::Damaged { at, .. } => at,
            End::Clean | End::Torn { .. } => return Ok(Repaired::Clean),
        },
    };
    let tail = &bytes[at.min(bytes.len())..];
    let mut aside = dir.join(format!("{FILE_NAME}.damaged-at-{at}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{FILE_NAME}.damaged-at-{at}.{n}"));
        n += 1;
    }
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&aside)?;
        f.write_all(tail)?;
        f.sync_all()?;
    }
    File::open(dir)?.sync_all()?;
    let mut valid_records = 0;
    let mut p = 0;
    while let Some(q) = next_valid(tail, p) {
        valid_records += 1;
        p = check(tail, q).unwrap_or(q + 1);
    }
    let log = OpenOptions::new().write(true).open(&path)?;
    log.set_len(at as u64)?;
    log.sync_all()?;
    Ok(Repaired::SetAside {
        offset: at as u64,
        bytes: tail.len() as u64,
        valid_records,
        aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as the store writes them (starts with the mark).
    fn payload(i: usize) -> Vec<u8> {
        let mut p = vec![PAYLOAD_MARK];
        p.extend_from_slice(format!("record number {i} ").repeat(1 + i % 5).as_bytes());
        p
    }

    /// A log of `n` records in a new directory; its bytes.
    fn log_of(n: usize) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, rec) = Log::open(dir.path(), true).unwrap();
            assert!(rec.records.is_empty());
            for i in 0..n {
                log.append(&payload(i)).unwrap();
            }
        }
        let path = dir.path().join(FILE_NAME);
        let bytes = fs::read(&path).unwrap();
        (dir, path, bytes)
    }

    #[test]
    fn torn_tail_at_every_byte_of_the_last_record_is_cut() {
        let (dir, path, whole) = log_of(3);
        let last_start = whole.len() - FRAME - payload(2).len();
        for cut in last_start + 1..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (log, rec) = Log::open(dir.path(), false).unwrap();
            assert_eq!(rec.records, vec![payload(0), payload(1)], "cut at {cut}");
            assert_eq!(rec.truncated, (cut - last_start) as u64);
            assert_eq!(log.len(), last_start as u64);
            assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        }
    }

    #[test]
    fn zero_filled_tails_are_cut_whatever_their_length() {
        let (dir, path, whole) = log_of(3);
        for zeros in [1, 7, 8, 9, 100, 4095, 4096] {
            let mut bytes = whole.clone();
            bytes.resize(whole.len() + zeros, 0);
            fs::write(&path, &bytes).unwrap();
            let (mut log, rec) = Log::open(dir.path(), false).unwrap();
            assert_eq!(rec.records.len(), 3, "{zeros} zero bytes");
            assert_eq!(rec.truncated, zeros as u64);
            assert_eq!(fs::read(&path).unwrap(), whole);
            log.append(&payload(3)).unwrap();
            drop(log);
            let (_, rec) = Log::open(dir.path(), false).unwrap();
            assert_eq!(rec.records.len(), 4);
            fs::write(&path, &whole).unwrap();
        }
        // A zero-filled log with no record at all.
        fs::write(&path, vec![0u8; 4096]).unwrap();
        let (log, rec) = Log::open(dir.path(), false).unwrap();
        assert!(rec.records.is_empty());
        assert_eq!(log.len(), 0);
    }

    #[test]
    fn a_last_record_whose_last_page_is_zeros_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        let big = {
            let mut p = vec![b'x'; 3 * PAGE + 1];
            p[0] = PAYLOAD_MARK;
            p
        };
        {
            let (mut log, _) = Log::open(dir.path(), true).unwrap();
            log.append(&payload(0)).unwrap();
            log.append(&big).unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        let end = bytes.len();
        let page = (end - PAGE / 2) / PAGE * PAGE;
        bytes[page..].iter_mut().for_each(|b| *b = 0);
        fs::write(&path, &bytes).unwrap();
        let (_, rec) = Log::open(dir.path(), false).unwrap();
        assert_eq!(rec.records, vec![payload(0)]);
    }

    #[test]
    fn damage_followed_by_valid_data_refuses_and_leaves_the_file_alone() {
        let (dir, path, whole) = log_of(40);
        let (offsets, _) = scan(&whole);
        let last_start = offsets.last().unwrap().0;
        // Every byte of every record but the last, flipped in turn.
        for at in 0..last_start {
            let mut bad = whole.clone();
            bad[at] ^= 0xff;
            fs::write(&path, &bad).unwrap();
            let e = Log::open(dir.path(), false).unwrap_err();
            let d = Damage::of(&e).unwrap_or_else(|| panic!("byte {at}: {e}"));
            let record = offsets.iter().rposition(|&(o, _, _)| o <= at).unwrap();
            assert_eq!(d.record, record, "byte {at}");
            assert_eq!(d.offset, offsets[record].0 as u64, "byte {at}");
            assert!(d.valid_after.is_some(), "byte {at}");
            let text = e.to_string();
            assert!(text.contains(&format!("offset {}", d.offset)), "{text}");
            assert!(text.contains(&format!("record {record}")), "{text}");
            assert_eq!(fs::read(&path).unwrap(), bad, "byte {at}: file changed");
        }
        // The case of the report: 3 commits, byte 12 overwritten.
        let (dir, path, whole) = log_of(3);
        let mut bad = whole.clone();
        bad[12] = 0xff;
        fs::write(&path, &bad).unwrap();
        let e = Log::open(dir.path(), false).unwrap_err();
        assert_eq!(Damage::of(&e).unwrap().offset, 0);
        assert_eq!(fs::read(&path).unwrap(), bad);
        // Zeros in the middle are damage too, not a tail.
        let mut zeroed = whole.clone();
        let second = scan(&whole).0[1].0;
        zeroed[second..second + 8].iter_mut().for_each(|b| *b = 0);
        fs::write(&path, &zeroed).unwrap();
        let e = Log::open(dir.path(), false).unwrap_err();
        assert_eq!(Damage::of(&e).unwrap().record, 1);
    }

    #[test]
    fn a_whole_last_record_with_a_bad_checksum_is_damage() {
        let (dir, path, whole) = log_of(3);
        let mut bad = whole.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&path, &bad).unwrap();
        let e = Log::open(dir.path(), false).unwrap_err();
        let d = Damage::of(&e).unwrap();
        assert_eq!((d.record, d.valid_after), (2, None));
        assert_eq!(fs::read(&path).unwrap(), bad);
    }

    #[test]
    fn repair_sets_the_damaged_part_aside_and_keeps_every_byte() {
        let (dir, path, whole) = log_of(10);
        let offsets = scan(&whole).0;
        let at = offsets[4].0;
        let mut bad = whole.clone();
        bad[at + FRAME + 2] ^= 0x55;
        fs::write(&path, &bad).unwrap();
        let done = repair(dir.path(), None).unwrap();
        let Repaired::SetAside {
            offset,
            bytes,
            valid_records,
            aside,
        } = done
        else {
            panic!("nothing repaired")
        };
        assert_eq!(offset, at as u64);
        assert_eq!(bytes, (bad.len() - at) as u64);
        assert_eq!(valid_records, 5, "records 5..10 are valid");
        let kept = fs::read(&path).unwrap();
        let set_aside = fs::read(&aside).unwrap();
        assert_eq!([kept, set_aside].concat(), bad, "every byte kept");
        let (_, rec) = Log::open(dir.path(), false).unwrap();
        assert_eq!(rec.records.len(), 4);
        assert_eq!(repair(dir.path(), None).unwrap(), Repaired::Clean);
    }
}
