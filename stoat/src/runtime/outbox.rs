//! A connection's pending output: encoded response heads (and small bodies)
//! in one byte buffer, and large bodies kept as they are, to be sent with
//! one vectored write instead of being copied.

use std::collections::VecDeque;
use std::fs::File;
use std::io::IoSlice;
use std::sync::Arc;

use crate::proto::encode::{MemoBytes, MEMO_BYTES};
use crate::runtime::file_body::FileBody;

/// A response body.
#[derive(Debug, Clone, Default)]
pub enum Body {
    /// No body.
    #[default]
    Empty,
    /// Bytes that live for the whole program.
    Static(&'static [u8]),
    /// Owned bytes.
    Bytes(Vec<u8>),
    /// Shared bytes (sent to many clients without copying).
    Shared(Arc<[u8]>),
    /// A range of an open file, sent with `sendfile(2)` (see
    /// `file_body.rs`). Its bytes are not in memory: [`Body::as_bytes`] is
    /// empty, [`Body::len`] is the range's length.
    File(FileBody),
}

impl Body {
    /// The body's bytes (none for a [`Body::File`]).
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Body::Empty | Body::File(_) => &[],
            Body::Static(b) => b,
            Body::Bytes(b) => b,
            Body::Shared(b) => b,
        }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Body::File(f) => f.len(),
            other => other.as_bytes().len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::Static(s.as_bytes())
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Body::Static(s)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::Bytes(s.into_bytes())
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::Bytes(v)
    }
}

impl From<Arc<[u8]>> for Body {
    fn from(v: Arc<[u8]>) -> Body {
        Body::Shared(v)
    }
}

/// Bodies at most this long are copied after their head; longer ones are
/// queued and sent from where they are.
const COPY_LIMIT: usize = 8 * 1024;

/// Most segments one vectored write takes.
const MAX_IOV: usize = 64;

/// Pending output, in order: segments, each either bytes in `buf` or a
/// queued body.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Bytes not yet sent: heads and small bodies.
    buf: Vec<u8>,
    /// Large bodies, each placed after `buf[..at]` (the head bytes that
    /// precede it). Sorted by `at`.
    bodies: VecDeque<(usize, Body)>,
    /// The bytes of `bodies` together (so that `pending` is a sum, not a loop).
    body_bytes: usize,
    /// Bytes of `buf` (and of the first body) already written.
    sent_buf: usize,
    sent_body: usize,
}

impl Outbox {
    /// The byte buffer that heads are encoded into.
    pub fn head_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Appends a body after what is queued.
    pub fn push_body(&mut self, body: Body) {
        if let Body::File(f) = &body {
            // Never copied; sent by `sendfile` when its turn comes.
            if !f.is_empty() {
                self.body_bytes += f.len();
                self.bodies.push_back((self.buf.len(), body));
            }
            return;
        }
        let bytes = body.as_bytes();
        if bytes.len() <= COPY_LIMIT || self.bodies.len() >= MAX_IOV / 2 {
            self.buf.extend_from_slice(bytes);
        } else {
            self.body_bytes += bytes.len();
            self.bodies.push_back((self.buf.len(), body));
        }
    }

    /// Whether nothing is pending.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.sent_buf == self.buf.len() && self.bodies.is_empty()
    }

    /// Bytes pending.
    #[inline]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.sent_buf + self.body_bytes - self.sent_body
    }

    /// The pending output when it is one contiguous run (no queued body).
    #[inline]
    pub fn single(&self) -> Option<&[u8]> {
        self.bodies.is_empty().then(|| &self.buf[self.sent_buf..])
    }

    /// The file body to send now, when everything before it is written:
    /// the file, the offset to send from, the bytes left of it.
    pub fn front_file(&self) -> Option<(&File, u64, usize)> {
        match self.bodies.front() {
            Some((at, Body::File(f))) if *at <= self.sent_buf => Some((
                f.file(),
                f.offset() + self.sent_body as u64,
                f.len() - self.sent_body,
            )),
            _ => None,
        }
    }

    /// The pending output as slices for one vectored write, up to the first
    /// file body (which `sendfile` sends; see [`Outbox::front_file`]).
    pub fn slices<'a>(&'a self, iov: &mut Vec<IoSlice<'a>>) {
        iov.clear();
        let mut from = self.sent_buf;
        for (i, (at, body)) in self.bodies.iter().enumerate() {
            if *at > from {
                iov.push(IoSlice::new(&self.buf[from..*at]));
            }
            from = from.max(*at);
            if let Body::File(_) = body {
                return;
            }
            let skip = if i == 0 { self.sent_body } else { 0 };
            iov.push(IoSlice::new(&body.as_bytes()[skip..]));
        }
        if self.buf.len() > from {
            iov.push(IoSlice::new(&self.buf[from..]));
        }
    }

    /// Records that `n` bytes were written.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        if !self.bodies.is_empty() {
            return self.advance_bodies(n);
        }
        // The common case, one run of bytes: no loop.
        self.sent_buf += n.min(self.buf.len() - self.sent_buf);
        if self.sent_buf == self.buf.len() {
            self.buf.clear();
            self.sent_buf = 0;
            self.sent_body = 0;
        }
    }

    /// [`Outbox::advance`] with queued bodies.
    #[inline(never)]
    fn advance_bodies(&mut self, mut n: usize) {
        while n > 0 {
            let buf_end = self.bodies.front().map_or(self.buf.len(), |(at, _)| *at);
            let in_buf = buf_end.saturating_sub(self.sent_buf);
            if in_buf > 0 {
                let k = in_buf.min(n);
                self.sent_buf += k;
                n -= k;
                continue;
            }
            match self.bodies.front() {
                Some((_, body)) => {
                    let left = body.len() - self.sent_body;
                    let k = left.min(n);
                    self.sent_body += k;
                    n -= k;
                    if self.sent_body == body.len() {
                        self.body_bytes -= body.len();
                        self.bodies.pop_front();
                        self.sent_body = 0;
                    }
                }
                None => break,
            }
        }
        if self.is_empty() {
            self.clear();
        }
    }

    /// Forgets everything pending, keeping the buffer's capacity.
    #[inline]
    pub fn clear(&mut self) {
        self.buf.clear();
        if !self.bodies.is_empty() {
            // Dropping the bodies is a loop: skipped when there are none.
            self.bodies.clear();
            self.body_bytes = 0;
        }
        self.sent_buf = 0;
        self.sent_body = 0;
    }
}

/// Appends a remembered response (see `HeadMemo`) to `out`: its bytes are
/// copied in whole 32-byte blocks, a fixed sequence of copies chosen by
/// the block count, written into the buffer's spare room, then the length
/// is cut to the response's. `extend_from_slice` instead calls
/// `append_elements` and `memcpy` (55 instructions for a 145-byte
/// response, measured with callgrind); the blocks are ~25.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn append_memo(out: &mut Vec<u8>, memo: &MemoBytes) {
    let (bytes, len) = (&memo.bytes, memo.len);
    // Room for the largest copy: the blocks may run past `len`.
    out.reserve(MEMO_BYTES);
    let at = out.len();
    let src = bytes.as_ptr();
    /// In arm `$n` (blocks less one), copies blocks `$i` of 32 bytes, then
    /// sets the length.
    macro_rules! blocks {
        ($($n:literal => [$($i:literal),*]),* $(,)?) => {
            // Blocks less one: `len` 0 wraps to the fallback.
            match len.wrapping_sub(1) >> 5 {
                $($n => {
                    // SAFETY: `reserve` left at least `MEMO_BYTES` bytes of
                    // spare capacity after `at`; in arm `n`, block `i <= n`
                    // spans `i * 32..i * 32 + 32`, within both the
                    // `MEMO_BYTES` source array and that spare room
                    // (`(n + 1) * 32 <= MEMO_BYTES`). The regions do not
                    // overlap (`memo` is borrowed, `out` mutably).
                    // `len <= (n + 1) * 32`, so the new length covers only
                    // bytes written here.
                    unsafe {
                        let dst = out.as_mut_ptr().add(at);
                        $(
                            std::ptr::copy_nonoverlapping(src.add($i * 32), dst.add($i * 32), 32);
                        )*
                        out.set_len(at + len);
                    }
                })*
                // Never (a filled memo holds 1..=MEMO_BYTES bytes): the
                // plain copy, which checks its bounds.
                _ => out.extend_from_slice(&bytes[..len.min(MEMO_BYTES)]),
            }
        };
    }
    blocks! {
        0 => [0],
        1 => [0, 1],
        2 => [0, 1, 2],
        3 => [0, 1, 2, 3],
        4 => [0, 1, 2, 3, 4],
        5 => [0, 1, 2, 3, 4, 5],
        6 => [0, 1, 2, 3, 4, 5, 6],
        7 => [0, 1, 2, 3, 4, 5, 6, 7],
    }
}

// The blocks above cover exactly the memo.
const _: () = assert!(MEMO_BYTES == 8 * 32);

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(o: &Outbox) -> Vec<u8> {
        let mut iov = Vec::new();
        o.slices(&mut iov);
        iov.iter().flat_map(|s| s.iter().copied()).collect()
    }

    /// Every memo length, after output of every length mod 32 (and into a
    /// full buffer, which must grow): the bytes appended are exactly the
    /// memo's first `len`, nothing before them changes.
    #[test]
    fn append_memo_copies_exactly_len() {
        let mut memo = MemoBytes {
            bytes: [0; MEMO_BYTES],
            len: 0,
            mode: crate::proto::encode::BodyMode::None,
        };
        for (i, b) in memo.bytes.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5a;
        }
        for len in 0..=MEMO_BYTES {
            memo.len = len;
            for before in 0..40 {
                let prefix: Vec<u8> = (0..before).map(|i| i as u8).collect();
                for full in [false, true] {
                    let mut out = prefix.clone();
                    if full {
                        out.shrink_to_fit();
                    } else {
                        out.reserve(MEMO_BYTES * 2);
                    }
                    append_memo(&mut out, &memo);
                    assert_eq!(out.len(), before + len, "{len} after {before}");
                    assert_eq!(&out[..before], &prefix[..]);
                    assert_eq!(&out[before..], &memo.bytes[..len], "{len} after {before}");
                }
            }
        }
    }

    #[test]
    fn small_bodies_are_copied_large_ones_queued() {
        let mut o = Outbox::default();
        o.head_mut().extend_from_slice(b"H1");
        o.push_body(Body::Static(b"small"));
        o.head_mut().extend_from_slice(b"H2");
        let big = vec![b'x'; COPY_LIMIT + 1];
        o.push_body(Body::Bytes(big.clone()));
        o.head_mut().extend_from_slice(b"H3");
        let mut want = b"H1smallH2".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"H3");
        assert_eq!(collect(&o), want);
        assert_eq!(o.pending(), want.len());
    }

    #[test]
    fn advance_through_segments_at_every_step() {
        let big = vec![b'y'; COPY_LIMIT + 10];
        for step in [1, 3, 7, 4096, 100_000] {
            let mut o = Outbox::default();
            o.head_mut().extend_from_slice(b"HEAD1");
            o.push_body(Body::Bytes(big.clone()));
            o.head_mut().extend_from_slice(b"HEAD2");
            o.push_body(Body::Bytes(big.clone()));
            let mut want = b"HEAD1".to_vec();
            want.extend_from_slice(&big);
            want.extend_from_slice(b"HEAD2");
            want.extend_from_slice(&big);
            let mut got = Vec::new();
            while !o.is_empty() {
                let all = collect(&o);
                assert_eq!(o.pending(), all.len(), "step {step}");
                let n = step.min(all.len());
                got.extend_from_slice(&all[..n]);
                o.advance(n);
            }
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn a_file_body_waits_for_sendfile_in_its_place() {
        let path = std::env::temp_dir().join(format!("stoat-outbox-{}", std::process::id()));
        std::fs::write(&path, vec![b'f'; 100]).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let mut o = Outbox::default();
        o.head_mut().extend_from_slice(b"HEAD1");
        o.push_body(Body::File(FileBody::new(file, 10, 50)));
        o.head_mut().extend_from_slice(b"HEAD2");
        assert_eq!(o.pending(), 5 + 50 + 5);
        assert!(o.single().is_none());
        assert_eq!(collect(&o), b"HEAD1", "slices stop at the file");
        assert!(o.front_file().is_none(), "its head goes first");
        o.advance(5);
        let (_, offset, left) = o.front_file().expect("the file's turn");
        assert_eq!((offset, left), (10, 50));
        assert!(collect(&o).is_empty());
        o.advance(20);
        let (_, offset, left) = o.front_file().unwrap();
        assert_eq!((offset, left), (30, 30));
        o.advance(30);
        assert!(o.front_file().is_none());
        assert_eq!(collect(&o), b"HEAD2");
        o.advance(5);
        assert!(o.is_empty());
        std::fs::remove_file(&path).unwrap();
    }
}
