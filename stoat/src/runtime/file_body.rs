//! [`FileBody`]: a response body that is a range of an open file, sent with
//! `sendfile(2)` (see `sys/sendfile.rs`) instead of being read into memory.
//!
//! Contract: the range `offset..offset + len` is fixed when the body is
//! made (the `Content-Length` is promised from it). The file is shared
//! (`Arc`) and read at explicit offsets, so one open file may be sent to
//! many connections at once. The owner thread sends it in `sendfile` calls
//! of at most [`FILE_SLICE`] bytes, and only while the socket takes them:
//! a turn of one connection sends at most what its send buffer holds (the
//! kernel's `tcp_wmem`, a few MB at most), then the thread serves others
//! until the socket is writable again. What `sendfile` reads from a cold
//! page cache is read on the network thread, one slice per call: on a slow
//! disk, warm the cache (or serve from memory: `Files` caches small files).
//! If the file shrinks below the promised range while being sent, the
//! connection is closed (the length can no longer be kept).

use std::fs::File;
use std::sync::Arc;

/// Most bytes one `sendfile` call is asked for.
pub(crate) const FILE_SLICE: usize = 256 * 1024;

/// A range of an open file, as a response body. One pointer wide (the
/// range is boxed), so that [`Body`](super::Body), and with it every
/// `Response`, stays as small as before.
#[derive(Debug, Clone)]
pub struct FileBody {
    range: Box<Range>,
}

#[derive(Debug, Clone)]
struct Range {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

impl FileBody {
    /// `len` bytes of `file` from `offset`. The caller has checked that the
    /// file holds them (from its metadata).
    pub fn new(file: Arc<File>, offset: u64, len: usize) -> FileBody {
        FileBody {
            range: Box::new(Range { file, offset, len }),
        }
    }

    /// The file.
    pub fn file(&self) -> &File {
        &self.range.file
    }

    /// Where the range starts in the file.
    pub fn offset(&self) -> u64 {
        self.range.offset
    }

    /// The range's length in bytes.
    pub fn len(&self) -> usize {
        self.range.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.range.len == 0
    }
}
