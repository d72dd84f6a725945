//! The commit log: an append-only file of checksummed records.
//!
//! Contract:
//! - A record is `len: u32 LE | crc32: u32 LE | payload (len bytes)`, the
//!   CRC-32 (IEEE, `crc32fast`) taken over the payload. One record holds
//!   one whole batch, so a batch is on disk entirely or not at all.
//! - [`Log::append`] writes one record with one `write` (the frame and
//!   payload built in one buffer) and, when `fsync` is on, one
//!   `fdatasync`; only after it returns `Ok` may the batch be acknowledged.
//! - [`Log::open`] reads every record back in order and stops at the first
//!   one that is short or fails its checksum: that is a torn tail (a crash
//!   during a write, never acknowledged, since the fsync had not returned),
//!   and the file is truncated there (and synced) so later appends follow
//!   the last whole record.
//! - After a failed write or sync the file's state is unknown (a failed
//!   fsync may have dropped dirty pages): the log refuses further appends,
//!   and a restart recovers from what is on disk.
//!
//! Hand-written because it is the product's core and small: an embedded
//! database (redb, sled) would add its own page-level write amplification
//! and a second fsync per transaction for what is one sequential append.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record's frame before its payload.
pub const FRAME: usize = 8;

/// Largest payload a record may have; a length above it is corruption.
pub const MAX_RECORD: usize = 1 << 30;

/// The log's file name inside the data directory.
pub const FILE_NAME: &str = "commits.log";

/// An open commit log, positioned at its end.
#[derive(Debug)]
pub struct Log {
    file: File,
    path: PathBuf,
    len: u64,
    fsync: bool,
    failed: bool,
    buf: Vec<u8>,
}

/// What [`Log::open`] found.
#[derive(Debug)]
pub struct Recovered {
    /// Every whole record's payload, in order.
    pub records: Vec<Vec<u8>>,
    /// Bytes cut off the end (a torn or corrupt tail); 0 normally.
    pub truncated: u64,
}

impl Log {
    /// Opens (creating if needed) the log in directory `dir`, reads it back
    /// and cuts a torn tail.
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
        let (records, good) = parse(&bytes);
        let truncated = bytes.len() as u64 - good as u64;
        if truncated > 0 {
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        let log = Log {
            file,
            path,
            len: good as u64,
            fsync,
            failed: false,
            buf: Vec::new(),
        };
        Ok((log, Recovered { records, truncated }))
    }

    /// Appends one record holding `payload`, durable when `Ok`.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "the commit log failed earlier; restart to recover",
            ));
        }
        if payload.len() > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "batch record too large",
            ));
        }
        self.buf.clear();
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.buf.extend_from_slice(payload);
        let result = self.file.write_all(&self.buf).and_then(|()| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match result {
            Ok(()) => {
                self.len += self.buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
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

/// Splits `bytes` into whole records; also returns the length of the good
/// prefix.
fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= FRAME {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let len = len as usize;
        let start = at + FRAME;
        if len > MAX_RECORD || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        at = start + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_corrupt_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, rec) = Log::open(dir.path(), true).unwrap();
            assert!(rec.records.is_empty());
            log.append(b"one").unwrap();
            log.append(b"two").unwrap();
        }
        let path = dir.path().join(FILE_NAME);
        let whole = fs::read(&path).unwrap();
        // Every cut inside the second record leaves just the first.
        for cut in (FRAME + 3 + 1)..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (log, rec) = Log::open(dir.path(), false).unwrap();
            assert_eq!(rec.records, vec![b"one".to_vec()], "cut at {cut}");
            assert_eq!(log.len(), (FRAME + 3) as u64);
            assert_eq!(fs::metadata(&path).unwrap().len(), (FRAME + 3) as u64);
        }
        // A flipped payload bit fails the checksum.
        let mut bad = whole.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        fs::write(&path, &bad).unwrap();
        let (mut log, rec) = Log::open(dir.path(), false).unwrap();
        assert_eq!(rec.records.len(), 1);
        assert_eq!(rec.truncated, (FRAME + 3) as u64);
        log.append(b"three").unwrap();
        drop(log);
        let (_, rec) = Log::open(dir.path(), false).unwrap();
        assert_eq!(rec.records, vec![b"one".to_vec(), b"three".to_vec()]);
    }
}
