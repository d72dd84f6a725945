//! Snapshots of the live state, and the files of a data directory.
//!
//! Contract:
//! - A snapshot `snapshot-V.snap` holds the state at version V (every live
//!   key with its value and version) and the request-id outcome window,
//!   in a simple framed format ending in a CRC-32 of everything before it
//!   and an end mark; [`load`] refuses a file whose checksum or framing
//!   fails. It is written as `snapshot-V.snap.tmp`, synced, renamed, and
//!   the directory synced: a crash mid-write leaves only a `.tmp`, which
//!   start-up deletes.
//! - The log is a sequence of segments: retired `commits.log.V` (sealed at
//!   version V: every record in it is at or before V, and each segment
//!   follows the one before) and the active `commits.log`. A snapshot is
//!   taken only at a seal (the log is rotated first), so a segment is
//!   wholly covered by a snapshot at V or later, or wholly after it.
//! - Retirement: once snapshot V is durable and read back whole, the older
//!   snapshots and every segment sealed at or before V are deleted. Until
//!   then the previous snapshot and its segments stay, so a torn or corrupt
//!   new snapshot falls back to the previous one (see `Store::open`).
//!
//! Why a hand-written format: the file is one pass of length-prefixed
//! byte strings; a serde format would buffer the whole state again (values
//! are `Arc`s shared with the live map and are written straight from it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::status::{Outcome, StatusWindow};
use crate::store::Item;

/// The start of every snapshot file.
const MAGIC: &[u8; 8] = b"WSNAP001";
/// The end of every snapshot file, after the checksum.
const END: &[u8; 4] = b"WEND";

/// The snapshot file of version `v`.
pub fn snapshot_name(v: u64) -> String {
    format!("snapshot-{v:020}.snap")
}

/// The retired log segment sealed at version `v`.
pub fn segment_name(v: u64) -> String {
    format!("{}.{v:020}", super::log::FILE_NAME)
}

/// What a data directory holds, sorted by version.
#[derive(Debug, Default)]
pub struct Files {
    /// Snapshots, oldest first.
    pub snapshots: Vec<(u64, PathBuf)>,
    /// Retired segments, oldest first.
    pub segments: Vec<(u64, PathBuf)>,
    /// Unfinished snapshot files.
    pub temporary: Vec<PathBuf>,
}

/// Lists the snapshots and segments of `dir`.
pub fn list(dir: &Path) -> io::Result<Files> {
    let mut files = Files::default();
    let seg_prefix = format!("{}.", super::log::FILE_NAME);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.starts_with("snapshot-") && name.ends_with(".snap.tmp") {
            files.temporary.push(path);
        } else if let Some(v) = name
            .strip_prefix("snapshot-")
            .and_then(|r| r.strip_suffix(".snap"))
            .and_then(|v| v.parse().ok())
        {
            files.snapshots.push((v, path));
        } else if let Some(v) = name
            .strip_prefix(&seg_prefix)
            .filter(|r| r.len() == 20)
            .and_then(|v| v.parse().ok())
        {
            files.segments.push((v, path));
        }
    }
    files.snapshots.sort();
    files.segments.sort();
    Ok(files)
}

/// A state to write: a consistent copy taken under the locks (keys and
/// `Arc`s of values, not the values' bytes).
#[derive(Debug)]
pub struct Image {
    /// The version it is at.
    pub version: u64,
    /// Every live key.
    pub items: Vec<(String, Item)>,
    /// The outcome window, oldest first.
    pub status: Vec<(Arc<str>, Outcome)>,
}

/// A [`Write`] that checksums what passes through.
struct Summed<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)
}

/// Writes `image` as `dir/snapshot-V.snap` (through a synced `.tmp` and a
/// rename, then a directory sync); returns the file.
pub fn write(dir: &Path, image: &Image) -> io::Result<PathBuf> {
    let path = dir.join(snapshot_name(image.version));
    let tmp = dir.join(format!("{}.tmp", snapshot_name(image.version)));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let mut w = Summed {
        inner: BufWriter::with_capacity(1 << 20, file),
        crc: crc32fast::Hasher::new(),
    };
    w.write_all(MAGIC)?;
    w.write_all(&image.version.to_le_bytes())?;
    w.write_all(&(image.items.len() as u64).to_le_bytes())?;
    for (key, item) in &image.items {
        put_bytes(&mut w, key.as_bytes())?;
        put_bytes(&mut w, &item.value)?;
        w.write_all(&item.version.to_le_bytes())?;
    }
    w.write_all(&(image.status.len() as u64).to_le_bytes())?;
    for (id, outcome) in &image.status {
        put_bytes(&mut w, id.as_bytes())?;
        match outcome {
            Outcome::Committed { version } => {
                w.write_all(&[0])?;
                w.write_all(&version.to_le_bytes())?;
            }
            Outcome::Conflict { key, version } => {
                w.write_all(&[1])?;
                put_bytes(&mut w, key.as_bytes())?;
                w.write_all(&version.to_le_bytes())?;
            }
        }
    }
    let crc = w.crc.clone().finalize();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    inner.write_all(END)?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, &path)?;
    File::open(dir)?.sync_all()?;
    Ok(path)
}

/// A loaded snapshot.
#[derive(Debug)]
pub struct Loaded {
    /// Its version.
    pub version: u64,
    /// Live keys in key order.
    pub items: Vec<(String, Item)>,
    /// The outcome window, oldest first.
    pub status: Vec<(String, Outcome)>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() - self.at < n {
            return Err(format!("truncated at offset {}", self.at));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, String> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let b = self.take(4)?;
        let n = u32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, String> {
        let at = self.at;
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| format!("not UTF-8 at offset {at}"))
    }
}

/// Reads the snapshot at `path` back and checks its header, checksum and
/// end mark, without decoding it (what a snapshot just written must pass
/// before anything older is retired: the checksum covers every byte the
/// writer produced from the image). Returns its size.
pub fn verify(path: &Path) -> Result<u64, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    checked_body(&bytes)?;
    Ok(bytes.len() as u64)
}

/// The bytes before the checksum, once the header, end mark and checksum
/// hold.
fn checked_body(bytes: &[u8]) -> Result<usize, String> {
    if bytes.len() < MAGIC.len() + 8 + 8 + 8 + 4 + END.len() || &bytes[..8] != MAGIC {
        return Err("not a snapshot (bad header or too short)".into());
    }
    let body_end = bytes.len() - END.len() - 4;
    if &bytes[bytes.len() - END.len()..] != END {
        return Err("no end mark (torn)".into());
    }
    let crc = u32::from_le_bytes(bytes[body_end..body_end + 4].try_into().unwrap_or([0; 4]));
    if crc32fast::hash(&bytes[..body_end]) != crc {
        return Err("checksum mismatch".into());
    }
    Ok(body_end)
}

/// Reads and checks the snapshot at `path`.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let body_end = checked_body(&bytes)?;
    let mut r = Reader {
        bytes: &bytes[..body_end],
        at: MAGIC.len(),
    };
    let version = r.u64()?;
    let n = r.u64()? as usize;
    let mut items = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let key = r.string()?;
        let value: Arc<[u8]> = Arc::from(r.bytes()?);
        let v = r.u64()?;
        items.push((key, Item { value, version: v }));
    }
    let n = r.u64()? as usize;
    let mut status = Vec::with_capacity(n.min(1 << 24));
    for _ in 0..n {
        let id = r.string()?;
        let kind = r.take(1)?[0];
        let outcome = match kind {
            0 => Outcome::Committed { version: r.u64()? },
            1 => {
                let key = r.string()?;
                Outcome::Conflict {
                    key,
                    version: r.u64()?,
                }
            }
            k => return Err(format!("unknown outcome kind {k}")),
        };
        status.push((id, outcome));
    }
    if r.at != body_end {
        return Err("trailing bytes".into());
    }
    Ok(Loaded {
        version,
        items,
        status,
    })
}

/// The image of `window` (oldest first).
pub fn status_image(window: &StatusWindow) -> Vec<(Arc<str>, Outcome)> {
    window
        .entries()
        .map(|(id, o)| (id.clone(), o.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Image {
        Image {
            version: 42,
            items: vec![
                (
                    "a".into(),
                    Item {
                        value: Arc::from(&b"x"[..]),
                        version: 40,
                    },
                ),
                (
                    "b".into(),
                    Item {
                        value: Arc::from(&[0u8, 255][..]),
                        version: 42,
                    },
                ),
            ],
            status: vec![
                ("r1".into(), Outcome::Committed { version: 41 }),
                (
                    "r2".into(),
                    Outcome::Conflict {
                        key: "a".into(),
                        version: 40,
                    },
                ),
            ],
        }
    }

    #[test]
    fn round_trip_and_every_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), &image()).unwrap();
        assert_eq!(path.file_name().unwrap(), snapshot_name(42).as_str());
        let l = load(&path).unwrap();
        assert_eq!(l.version, 42);
        assert_eq!(l.items, image().items);
        assert_eq!(l.status.len(), 2);
        let whole = fs::read(&path).unwrap();
        for at in 0..whole.len() {
            let mut bad = whole.clone();
            bad[at] ^= 0x20;
            fs::write(&path, &bad).unwrap();
            assert!(load(&path).is_err(), "flip at {at} not detected");
        }
        for cut in 0..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            assert!(load(&path).is_err(), "cut at {cut} not detected");
        }
        let files = list(dir.path()).unwrap();
        assert_eq!(files.snapshots.len(), 1);
    }
}
