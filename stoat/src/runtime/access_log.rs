//! The access log: one line per response, written by a thread of its own.
//!
//! Contract:
//! - A network thread never formats or writes a line, and never reads a
//!   clock for one. Each network thread owns a bounded byte ring
//!   ([`LogProducer`], single producer) that the writer thread drains
//!   (single consumer). A response's record is written in place: a fixed
//!   header (status, route, byte counts, the request's start as an
//!   `Instant`, the text lengths) followed by its method, target, `Referer`
//!   and `User-Agent` bytes (cut as [`Entry::new`] cuts them: 256 bytes at
//!   most). When the ring lacks room the record is dropped and counted
//!   ([`AccessLog::dropped`]); a log file on a stalled disk, or a FIFO that
//!   nobody reads, therefore slows no request; it only loses lines.
//! - The records of one drive of a connection follow a drive header that
//!   holds the client's address (filled in at the drive's end) and, in the
//!   `shared` model, a sequence number taken from one counter when the
//!   drive logs its first record: a connection's next drive may run on
//!   another thread (another ring), and the writer merges the rings by
//!   that number, so one connection's lines keep their order.
//! - Once per loop turn ([`LogProducer::publish`], at the batch end, with
//!   the clock read the loop makes there anyway) the producer writes a
//!   clock record and publishes its tail with one release store; it wakes
//!   the writer only when the writer said it sleeps (a flag it sets before
//!   parking), never per record. The clock record ends every record before
//!   it: durations run from the request's start to the end of the batch
//!   that handed the response to the kernel (the metrics' definition). The
//!   writer turns that `Instant` into wall time with its own clock pair,
//!   read once per pass: nginx's per-iteration time cache, with the
//!   reading moved off the network thread.
//! - The writer thread (`stoat-access-log`) formats records (`combined`:
//!   the Apache/nginx combined format followed by the duration in seconds
//!   and the route pattern; `json`: one object per line), and writes
//!   through a 64 KiB buffer. While lines flow it looks at the rings every
//!   10 ms; once a look finds them empty it flushes and parks, so lines
//!   reach the file within about 20 ms of the load stopping.
//! - [`AccessLog::reopen`] (called on SIGHUP, logrotate's convention) makes
//!   the writer close and reopen the file by its path before its next write,
//!   or within a second when idle. A file that cannot be reopened is
//!   reported once through `tracing` and lines are dropped (and counted)
//!   until a later reopen succeeds.
//! - Dropping the [`AccessLog`] ends the thread after it has written what
//!   was published.
//!
//! Why a hand-written ring rather than a queue of entries (std's
//! `sync_channel`, used before, cost a try_send and a move of a ~330-byte
//! entry per response) or the `rtrb` crate: records are of variable length
//! and written in place, the drive header is completed after its records,
//! and the ring is published once per batch. `rtrb`'s `write_chunk_uninit`
//! reserves a fixed number of slots up front, splits them across the wrap
//! into two slices, and makes them visible by `commit`: one release per
//! record, no patching after it. The ring here is ~150 lines: positions
//! grow without wrapping, records are 8-byte aligned and never straddle the
//! end (a pad record fills the rest), and a reserve at the end of every
//! allocation keeps room for the clock record that publishes.

// The ring's reads and writes of records in place (each block says why it
// is sound); nothing else here is unsafe.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proto::Span;

/// Inline bytes for method, target, `Referer` and `User-Agent` together.
pub const TEXT_BYTES: usize = 256;

/// Ring bytes per network thread for each line of `http.access_log.queue`
/// (a line of a short target and user agent takes 100 to 200 bytes).
pub const BYTES_PER_LINE: usize = 128;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The process's standard error.
    Stderr,
    /// A file, appended to (created with mode 0644 if missing).
    File(PathBuf),
}

/// The line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `remote - - [time] "METHOD target HTTP/1.1" status bytes "referer"
    /// "user-agent" duration "route"`.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// One response as the writer formats it (read back from a ring record).
#[derive(Clone)]
pub struct Entry {
    /// Unix time of the response in milliseconds.
    pub unix_ms: u64,
    /// The client's address, when known.
    pub remote: Option<SocketAddr>,
    /// Response status code.
    pub status: u16,
    /// Route index (into the names given to [`AccessLog::start`]); `u32::MAX`
    /// for none.
    pub route: u32,
    /// Request bytes (head and body).
    pub request_bytes: u64,
    /// Response bytes.
    pub response_bytes: u64,
    /// From the first byte of the head to the last byte handed to the kernel.
    pub duration: Duration,
    /// Lengths of method, target, referer, user agent in `text`.
    lens: [u8; 4],
    /// Bit i set: part i was cut to fit.
    cut: u8,
    text: [u8; TEXT_BYTES],
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("status", &self.status)
            .field("route", &self.route)
            .field("method", &String::from_utf8_lossy(self.part(0)))
            .field("target", &String::from_utf8_lossy(self.part(1)))
            .finish_non_exhaustive()
    }
}

/// How much of each text part is kept: all of them when they fit
/// [`TEXT_BYTES`] together (less one); else the method up to 16 bytes, referer and
/// user agent up to 40 each, the target what they leave (at least 160).
fn cut_lens(method: usize, target: usize, referer: usize, user_agent: usize) -> [usize; 4] {
    // Below TEXT_BYTES, so that each length fits a u8.
    if method + target + referer + user_agent < TEXT_BYTES {
        return [method, target, referer, user_agent];
    }
    let m = method.min(16);
    let r = referer.min(40);
    let u = user_agent.min(40);
    [m, target.min(TEXT_BYTES - m - r - u), r, u]
}

impl Entry {
    /// An entry; the text parts are cut to share [`TEXT_BYTES`] (see
    /// `cut_lens`), as a record in the ring cuts them.
    pub fn new(method: &[u8], target: &[u8], referer: &[u8], user_agent: &[u8]) -> Entry {
        let parts = [method, target, referer, user_agent];
        let lens = cut_lens(method.len(), target.len(), referer.len(), user_agent.len());
        let mut e = Entry::empty();
        let mut at = 0;
        for i in 0..4 {
            let n = lens[i];
            e.text[at..at + n].copy_from_slice(&parts[i][..n]);
            at += n;
            // n <= 216 (bounded above), so it fits a u8.
            e.lens[i] = n as u8;
            if n < parts[i].len() {
                e.cut |= 1 << i;
            }
        }
        e
    }

    fn empty() -> Entry {
        Entry {
            unix_ms: 0,
            remote: None,
            status: 0,
            route: u32::MAX,
            request_bytes: 0,
            response_bytes: 0,
            duration: Duration::ZERO,
            lens: [0; 4],
            cut: 0,
            text: [0; TEXT_BYTES],
        }
    }

    fn part(&self, i: usize) -> &[u8] {
        let start: usize = self.lens[..i].iter().map(|&n| n as usize).sum();
        &self.text[start..start + self.lens[i] as usize]
    }

    fn was_cut(&self, i: usize) -> bool {
        self.cut & (1 << i) != 0
    }
}

// ---- The ring ----------------------------------------------------------

/// A cache line of its own (two, for the adjacent-line prefetcher).
#[repr(align(128))]
#[derive(Debug, Default)]
struct Padded<T>(T);

/// One network thread's bytes (see the module doc). Positions (`head`,
/// `tail`) count bytes since the start and never wrap; the offset in
/// `buf` is the position modulo its length (a power of two).
struct Ring {
    /// The bytes, as words: every record starts 8-byte aligned.
    buf: Box<[UnsafeCell<u64>]>,
    /// End of what the producer published (release store, once a batch).
    tail: Padded<AtomicU64>,
    /// End of what the writer has read (release store, once a pass).
    head: Padded<AtomicU64>,
}

// SAFETY: the bytes in [head, tail) are only read, by the one writer
// thread; the bytes outside are only written, by the one producer (the
// `LogProducer` that owns this ring). `tail` is stored with release after
// the producer's writes and loaded with acquire before the writer's reads;
// `head` the other way round, before the producer writes over read bytes.
unsafe impl Sync for Ring {}

impl Ring {
    fn new(bytes: usize) -> Ring {
        Ring {
            buf: (0..bytes / 8).map(|_| UnsafeCell::new(0)).collect(),
            tail: Padded::default(),
            head: Padded::default(),
        }
    }

    fn mask(&self) -> u64 {
        (self.buf.len() * 8 - 1) as u64
    }

    fn at(&self, pos: u64) -> *mut u8 {
        let off = (pos & self.mask()) as usize;
        // SAFETY: off < the buffer's length in bytes.
        unsafe { UnsafeCell::raw_get(self.buf.as_ptr()).cast::<u8>().add(off) }
    }
}

/// Record kinds (the byte after every record's `u32` length).
const KIND_PAD: u8 = 0;
const KIND_DRIVE: u8 = 1;
const KIND_REC: u8 = 2;
const KIND_CLOCK: u8 = 3;
/// Flag on `KIND_REC`: one byte (the request line's space) separates the
/// method from the target.
const GAP: u8 = 0x80;

/// A response. Its text (method, target, referer, user agent) follows.
#[repr(C)]
#[derive(Clone, Copy)]
struct RecHead {
    len: u32,
    kind: u8,
    cut: u8,
    status: u16,
    route: u32,
    lens: [u8; 4],
    start: Instant,
    request_bytes: u64,
    response_bytes: u64,
}

/// The start of one drive's records: their client address (written at
/// the drive's end) and, in the `shared` model, their place in the order.
#[repr(C)]
#[derive(Clone, Copy)]
struct DriveHead {
    len: u32,
    kind: u8,
    seq: u64,
    remote: Option<SocketAddr>,
}

/// The end of a batch: every record before it was handed to the kernel
/// by `end`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ClockHead {
    len: u32,
    kind: u8,
    end: Instant,
}

const fn rounded(n: usize) -> usize {
    (n + 7) & !7
}

const REC: usize = rounded(std::mem::size_of::<RecHead>());
const DRIVE: usize = rounded(std::mem::size_of::<DriveHead>());
const CLOCK: usize = rounded(std::mem::size_of::<ClockHead>());
/// Left free by every record's allocation: room for the clock record that
/// publishes it, and the pad that may precede the clock.
const RESERVE: u64 = 2 * CLOCK as u64;
/// The smallest ring: the largest record, a drive and a clock fit.
const MIN_RING: usize = 1024;
/// Drive headers' `seq` in the `per_core` model (no merge needed).
const UNORDERED: u64 = u64::MAX;
const NO_DRIVE: u64 = u64::MAX;

/// What the writer thread and the producers share.
#[derive(Debug, Default)]
struct Hub {
    dropped: AtomicU64,
    written: AtomicU64,
    reopen: Arc<AtomicBool>,
    /// The log is being dropped: write what is published and exit.
    closing: AtomicBool,
    /// The writer is parked (or about to): a publish wakes it.
    sleeping: Padded<AtomicBool>,
    /// The `shared` model's drive order.
    seq: Padded<AtomicU64>,
    /// Every producer's ring, for the writer.
    rings: Mutex<Vec<Arc<Ring>>>,
    ring_bytes: usize,
    writer: OnceLock<std::thread::Thread>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("bytes", &(self.buf.len() * 8))
            .finish_non_exhaustive()
    }
}

impl Hub {
    fn wake(&self) {
        if self.sleeping.0.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.writer.get() {
                t.unpark();
            }
        }
    }
}

/// What network threads are given: each makes its own [`LogProducer`].
#[derive(Clone)]
pub struct AccessLogSender {
    hub: Arc<Hub>,
    ordered: bool,
}

impl std::fmt::Debug for AccessLogSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogSender")
            .field("ordered", &self.ordered)
            .finish_non_exhaustive()
    }
}

impl AccessLogSender {
    /// A ring for one network thread, registered with the writer.
    pub fn producer(&self) -> LogProducer {
        let ring = Arc::new(Ring::new(self.hub.ring_bytes));
        self.hub
            .rings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ring.clone());
        LogProducer {
            base: ring.at(0),
            mask: ring.mask(),
            cap: ring.mask() + 1,
            ring,
            hub: self.hub.clone(),
            tail: 0,
            published: 0,
            head: 0,
            drive: NO_DRIVE,
            ordered: self.ordered,
        }
    }
}

/// A network thread's end of its ring (see the module doc).
#[derive(Debug)]
pub struct LogProducer {
    ring: Arc<Ring>,
    hub: Arc<Hub>,
    /// The ring's first byte.
    base: *mut u8,
    mask: u64,
    cap: u64,
    /// Where the next record goes (not yet published).
    tail: u64,
    /// What the writer may read.
    published: u64,
    /// The writer's `head` as last seen (refreshed only when short of room).
    head: u64,
    /// Position of the open drive header, or `NO_DRIVE`.
    drive: u64,
    /// Drives take a sequence number (the `shared` model).
    ordered: bool,
}

// SAFETY: `base` points into `ring`'s buffer, which this producer keeps
// alive (the Arc) and is the only writer of; moving the producer to another
// thread moves that role with it.
unsafe impl Send for LogProducer {}

impl LogProducer {
    /// Where position `pos` is in the buffer.
    #[inline(always)]
    fn at(&self, pos: u64) -> *mut u8 {
        // SAFETY: the offset is below the buffer's length (mask + 1).
        unsafe { self.base.add((pos & self.mask) as usize) }
    }

    /// Room for `len` bytes (and a pad before them if they would cross the
    /// end), leaving `reserve` free after them; the records' place.
    #[inline(always)]
    fn alloc(&mut self, len: u64, reserve: u64) -> Option<*mut u8> {
        let to_end = self.cap - (self.tail & self.mask);
        let pad = if to_end < len { to_end } else { 0 };
        let need = self.tail + pad + len + reserve;
        if need - self.head > self.cap {
            self.head = self.ring.head.0.load(Ordering::Acquire);
            if need - self.head > self.cap {
                return None;
            }
        }
        if pad != 0 {
            self.pad(pad);
        }
        let p = self.at(self.tail);
        self.tail += len;
        Some(p)
    }

    /// Fills the rest of the buffer up to its end with a pad record.
    #[cold]
    #[inline(never)]
    fn pad(&mut self, pad: u64) {
        let p = self.at(self.tail);
        // SAFETY: [tail, tail + pad) is free (checked by `alloc`) and ours;
        // positions are 8-aligned, so pad >= 8 holds the len and kind.
        unsafe {
            p.cast::<u32>().write(pad as u32);
            p.add(4).write(KIND_PAD);
        }
        self.tail += pad;
    }

    /// Writes a response's record, in place; when the ring lacks room it
    /// is dropped and counted. `start`: when its request began. `method`
    /// and `target`: where they are in `buf` (as the parser left them;
    /// spans outside `buf`, or a target before the method, log as empty).
    /// The common case inline: one space between method and target, and
    /// the four parts within [`TEXT_BYTES`]: all kept, one copy of the
    /// request line's part.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn record(
        &mut self,
        start: Instant,
        status: u16,
        route: u32,
        request_bytes: u64,
        response_bytes: u64,
        buf: &[u8],
        method: Span,
        target: Span,
        referer: &[u8],
        user_agent: &[u8],
    ) {
        let (ms, me) = (method.start as usize, method.end as usize);
        let (ts, te) = (target.start as usize, target.end as usize);
        let (r, u) = (referer.len(), user_agent.len());
        let line = te.wrapping_sub(ms);
        if !(ms < me && ts == me + 1 && ts <= te && te <= buf.len() && line + r + u <= TEXT_BYTES) {
            self.record_slow(
                start,
                status,
                route,
                request_bytes,
                response_bytes,
                buf,
                method,
                target,
                referer,
                user_agent,
            );
            return;
        }
        let head = RecHead {
            len: 0,
            kind: KIND_REC | GAP,
            cut: 0,
            status,
            route,
            // Each < TEXT_BYTES (checked above; method and space >= 2).
            lens: [(me - ms) as u8, (te - ts) as u8, r as u8, u as u8],
            start,
            request_bytes,
            response_bytes,
        };
        let Some(at) = self.put(REC + line + r + u, head) else {
            return;
        };
        // SAFETY: `put` gave `line + r + u` bytes at `at`; buf[ms..te] is
        // within `buf` (checked above).
        unsafe {
            let from = buf.as_ptr().add(ms);
            if (8..=16).contains(&line) {
                // A short request line (`GET /plaintext`): two overlapping
                // words rather than a call to memcpy.
                let (a, b) = (
                    from.cast::<u64>().read_unaligned(),
                    from.add(line - 8).cast::<u64>().read_unaligned(),
                );
                at.cast::<u64>().write_unaligned(a);
                at.add(line - 8).cast::<u64>().write_unaligned(b);
            } else {
                std::ptr::copy_nonoverlapping(from, at, line);
            }
            if r != 0 {
                std::ptr::copy_nonoverlapping(referer.as_ptr(), at.add(line), r);
            }
            if u != 0 {
                std::ptr::copy_nonoverlapping(user_agent.as_ptr(), at.add(line + r), u);
            }
        }
    }

    /// Allocates a record of `body` bytes (a drive header first if none is
    /// open) and writes `head` with its length; where its text goes. None
    /// (counted) when the ring lacks room.
    #[inline(always)]
    fn put(&mut self, body: usize, mut head: RecHead) -> Option<*mut u8> {
        let first = self.drive == NO_DRIVE;
        let len = rounded(body) + if first { DRIVE } else { 0 };
        let Some(mut p) = self.alloc(len as u64, RESERVE) else {
            self.drop_one();
            return None;
        };
        if first {
            self.open_drive(p, self.tail - len as u64);
            // SAFETY: within the allocation (len includes DRIVE).
            p = unsafe { p.add(DRIVE) };
        }
        head.len = rounded(body) as u32;
        // SAFETY: `alloc` gave [p, p + rounded(body)), 8-aligned, ours
        // until published.
        unsafe {
            p.cast::<RecHead>().write(head);
            Some(p.add(REC))
        }
    }

    /// [`record`](Self::record) past its common case: parts cut to fit
    /// (see `cut_lens`), method and target copied apart.
    #[allow(clippy::too_many_arguments)]
    #[cold]
    #[inline(never)]
    fn record_slow(
        &mut self,
        start: Instant,
        status: u16,
        route: u32,
        request_bytes: u64,
        response_bytes: u64,
        buf: &[u8],
        method: Span,
        target: Span,
        referer: &[u8],
        user_agent: &[u8],
    ) {
        let (ms, me) = (method.start as usize, method.end as usize);
        let (ts, te) = (target.start as usize, target.end as usize);
        let ok = ms <= me && me <= ts && ts <= te && te <= buf.len();
        let (ml, tl) = if ok { (me - ms, te - ts) } else { (0, 0) };
        let [m, t, r, u] = cut_lens(ml, tl, referer.len(), user_agent.len());
        let cut = u8::from(m < ml)
            | u8::from(t < tl) << 1
            | u8::from(r < referer.len()) << 2
            | u8::from(u < user_agent.len()) << 3;
        let head = RecHead {
            len: 0,
            kind: KIND_REC,
            cut,
            status,
            route,
            // Each <= 216 (see cut_lens).
            lens: [m as u8, t as u8, r as u8, u as u8],
            start,
            request_bytes,
            response_bytes,
        };
        let Some(mut at) = self.put(REC + m + t + r + u, head) else {
            return;
        };
        // SAFETY: `put` gave m + t + r + u bytes at `at`; the bytes read
        // from `buf` are within it when `ok`, and none are read otherwise.
        unsafe {
            if ok {
                std::ptr::copy_nonoverlapping(buf.as_ptr().add(ms), at, m);
                at = at.add(m);
                std::ptr::copy_nonoverlapping(buf.as_ptr().add(ts), at, t);
                at = at.add(t);
            }
            std::ptr::copy_nonoverlapping(referer.as_ptr(), at, r);
            at = at.add(r);
            std::ptr::copy_nonoverlapping(user_agent.as_ptr(), at, u);
        }
    }

    /// Writes a drive header at `p` (its first record follows).
    #[inline(always)]
    fn open_drive(&mut self, p: *mut u8, pos: u64) {
        // Taken while the connection is held by this drive: its previous
        // drive (on any thread) took a smaller number, its next a larger.
        let seq = if self.ordered {
            self.hub.seq.0.fetch_add(1, Ordering::Relaxed)
        } else {
            UNORDERED
        };
        // SAFETY: `p` starts an allocation of at least DRIVE bytes.
        unsafe {
            p.cast::<DriveHead>().write(DriveHead {
                len: DRIVE as u32,
                kind: KIND_DRIVE,
                seq,
                remote: None,
            });
        }
        self.drive = pos;
    }

    #[cold]
    fn drop_one(&self) {
        self.hub.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this drive wrote a drive header (and so wants its address).
    #[inline(always)]
    pub fn in_drive(&self) -> bool {
        self.drive != NO_DRIVE
    }

    /// The drive is over: its records get the client's address.
    #[inline]
    pub fn end_drive(&mut self, remote: Option<SocketAddr>) {
        if self.drive != NO_DRIVE {
            // SAFETY: the header is unpublished (publish closes the drive
            // first), so still the producer's; `at` keeps its alignment.
            unsafe {
                let h = self.at(self.drive).cast::<DriveHead>();
                std::ptr::addr_of_mut!((*h).remote).write(remote);
            }
            self.drive = NO_DRIVE;
        }
    }

    /// The batch's output was handed to the kernel by `end`: closes what it
    /// wrote with a clock record and publishes it (one release store), and
    /// wakes the writer if it sleeps. Nothing when nothing was written.
    #[inline]
    pub fn publish(&mut self, end: Instant) {
        if self.tail != self.published {
            self.publish_slow(end);
        }
    }

    #[inline(never)]
    fn publish_slow(&mut self, end: Instant) {
        // A drive left open (an answer given outside a drive) has no address.
        self.drive = NO_DRIVE;
        // Every record's allocation left RESERVE free for this.
        let Some(p) = self.alloc(CLOCK as u64, 0) else {
            return;
        };
        // SAFETY: as in `record`.
        unsafe {
            p.cast::<ClockHead>().write(ClockHead {
                len: CLOCK as u32,
                kind: KIND_CLOCK,
                end,
            });
        }
        // SeqCst with the load below, against the writer's store of
        // `sleeping` and its load of `tail` (Dekker): one of the two sees
        // the other, so a writer never parks on published records.
        self.ring.tail.0.store(self.tail, Ordering::SeqCst);
        self.published = self.tail;
        if self.hub.sleeping.0.load(Ordering::SeqCst) {
            self.hub.wake();
        }
    }
}

impl Drop for LogProducer {
    fn drop(&mut self) {
        self.publish(Instant::now());
    }
}

/// A running access log: its writer thread and what producers share.
#[derive(Debug)]
pub struct AccessLog {
    hub: Arc<Hub>,
    thread: Option<JoinHandle<()>>,
    /// Closed by the writer thread as it exits (a Mutex: `AccessLog` is
    /// shared between threads, a `Receiver` is not `Sync`).
    exited: Mutex<Receiver<()>>,
}

impl AccessLog {
    /// Opens `target` and starts the writer thread. Each network thread's
    /// ring holds `queue` × [`BYTES_PER_LINE`] bytes. `routes` names route
    /// indexes (a method and a pattern).
    pub fn start(
        target: Target,
        format: Format,
        queue: usize,
        routes: Vec<String>,
    ) -> io::Result<AccessLog> {
        let out = Output::open(&target)?;
        let hub = Arc::new(Hub {
            ring_bytes: queue
                .saturating_mul(BYTES_PER_LINE)
                .max(MIN_RING)
                .next_power_of_two(),
            ..Hub::default()
        });
        let (exit_tx, exited) = mpsc::channel();
        let writer = Writer {
            hub: hub.clone(),
            out: Some(out),
            target,
            format,
            routes,
            line: String::with_capacity(512),
            reported: false,
            time: (u64::MAX, String::new()),
            sources: Vec::new(),
            next: 0,
            batch: Vec::new(),
            stuck: None,
        };
        let thread = std::thread::Builder::new()
            .name("stoat-access-log".into())
            .spawn(move || {
                writer.run();
                drop(exit_tx);
            })?;
        let _ = hub.writer.set(thread.thread().clone());
        Ok(AccessLog {
            hub,
            thread: Some(thread),
            exited: Mutex::new(exited),
        })
    }

    /// What network threads make their rings from. `ordered`: a
    /// connection's drives may run on different threads (the `shared`
    /// model), so drives are numbered and the writer merges by number.
    pub fn sender(&self, ordered: bool) -> AccessLogSender {
        AccessLogSender {
            hub: self.hub.clone(),
            ordered,
        }
    }

    /// Lines dropped because a ring was full or the file was unusable.
    pub fn dropped(&self) -> u64 {
        self.hub.dropped.load(Ordering::Relaxed)
    }

    /// Lines written.
    pub fn written(&self) -> u64 {
        self.hub.written.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file (after logrotate moved it).
    pub fn reopen(&self) {
        self.hub.reopen.store(true, Ordering::Release);
    }

    /// The flag that [`reopen`](Self::reopen) sets, for a signal handler
    /// (`signal_hook::flag::register(SIGHUP, flag)`): setting a flag is all
    /// a handler may do.
    pub fn reopen_flag(&self) -> Arc<AtomicBool> {
        self.hub.reopen.clone()
    }
}

/// How long dropping the log waits for the writer to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.hub.closing.store(true, Ordering::Release);
        if let Some(t) = self.hub.writer.get() {
            t.unpark();
        }
        if let Some(thread) = self.thread.take() {
            // A writer blocked on its target (a stalled disk, a FIFO nobody
            // reads) must not hold the server's stop: wait a bounded time,
            // then leave it detached.
            let exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
            match exited.recv_timeout(CLOSE_WAIT) {
                Err(RecvTimeoutError::Timeout) => {
                    tracing::warn!(
                        "access log writer still blocked at close; lines queued are lost"
                    );
                }
                _ => {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// The file or stderr.
enum Output {
    Stderr(io::Stderr),
    File(BufWriter<File>),
}

impl Output {
    fn open(target: &Target) -> io::Result<Output> {
        Ok(match target {
            Target::Stderr => Output::Stderr(io::stderr()),
            Target::File(path) => Output::File(BufWriter::with_capacity(
                64 * 1024,
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Output::Stderr(e) => e.write_all(bytes),
            Output::File(f) => f.write_all(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stderr(e) => e.flush(),
            Output::File(f) => f.flush(),
        }
    }
}

/// One ring as the writer reads it: lines read out of it (so its bytes go
/// back to the producer) and waiting for their turn, as (drive number,
/// line); `None` marks a drive's start (a drive whose lines were all
/// dropped still takes its number).
struct Source {
    ring: Arc<Ring>,
    pending: VecDeque<(u64, Option<Box<Entry>>)>,
}

/// The writer thread's state.
struct Writer {
    hub: Arc<Hub>,
    /// `None` after a failed reopen, until one succeeds.
    out: Option<Output>,
    target: Target,
    format: Format,
    routes: Vec<String>,
    line: String,
    /// A write error has been reported (once per failure, not per line).
    reported: bool,
    /// The last second formatted, and its text (CLF or RFC 3339 without
    /// the milliseconds): lines of one second share it.
    time: (u64, String),
    sources: Vec<Source>,
    /// The next drive number to write (ordered rings).
    next: u64,
    /// Lines of the batch being read, until its clock record.
    batch: Vec<(u64, Option<Box<Entry>>, Instant)>,
    /// Since when the next drive number has been missing.
    stuck: Option<Instant>,
}

/// How long the idle writer waits before looking at the reopen flag again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// While lines flow, how often the writer reads the rings. Lines reach the
/// file at most two intervals after their batch when the load stops.
const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// A drive number missing this long is given up on (its thread is in one
/// batch that long): later drives are written without waiting for it.
const GAP_WAIT: Duration = Duration::from_secs(1);

impl Writer {
    fn run(mut self) {
        // While lines flow, the writer wakes every BATCH_INTERVAL and reads
        // what was published: producers then never wake it. When a pass
        // finds nothing, it flushes and parks until a publish wakes it (or
        // IDLE_CHECK, for the reopen flag).
        let mut flowing = false;
        loop {
            if flowing {
                std::thread::sleep(BATCH_INTERVAL);
            } else {
                self.hub.sleeping.0.store(true, Ordering::SeqCst);
                if !self.any_published() && !self.hub.closing.load(Ordering::Acquire) {
                    std::thread::park_timeout(IDLE_CHECK);
                }
                self.hub.sleeping.0.store(false, Ordering::Relaxed);
            }
            self.check_reopen();
            let got = self.collect();
            self.emit(false);
            if got {
                flowing = true;
            } else {
                self.flush();
                flowing = false;
            }
            if self.hub.closing.load(Ordering::Acquire) {
                self.collect();
                self.emit(true);
                break;
            }
        }
        self.flush();
    }

    /// Takes rings registered since the last look.
    fn refresh(&mut self) {
        let rings = self.hub.rings.lock().unwrap_or_else(|e| e.into_inner());
        for ring in &rings[self.sources.len()..] {
            self.sources.push(Source {
                ring: ring.clone(),
                pending: VecDeque::new(),
            });
        }
    }

    fn any_published(&mut self) -> bool {
        self.refresh();
        self.sources
            .iter()
            .any(|s| s.ring.tail.0.load(Ordering::SeqCst) != s.ring.head.0.load(Ordering::Relaxed))
    }

    /// Reads every ring's published records into lines and gives their
    /// bytes back. Whether anything was read.
    fn collect(&mut self) -> bool {
        self.refresh();
        // One clock pair per pass turns the batches' `Instant`s into wall
        // time (the network threads never read the wall clock).
        let now = Instant::now();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let wall = |t: Instant| match t.checked_duration_since(now) {
            Some(ahead) => unix_ms + ahead.as_millis() as u64,
            None => unix_ms.saturating_sub(now.duration_since(t).as_millis() as u64),
        };
        let mut got = false;
        for s in &mut self.sources {
            let ring = &s.ring;
            let tail = ring.tail.0.load(Ordering::Acquire);
            let head = ring.head.0.load(Ordering::Relaxed);
            let (mut pos, mut done) = (head, head);
            let (mut seq, mut remote) = (UNORDERED, None);
            self.batch.clear();
            while pos < tail {
                let p = ring.at(pos);
                // SAFETY: [head, tail) was published (acquire above): whole
                // records, each written as the type its kind names.
                let (len, kind) = unsafe { (p.cast::<u32>().read(), p.add(4).read()) };
                match kind & !GAP {
                    KIND_DRIVE => {
                        // SAFETY: written as a DriveHead (its kind), 8-aligned.
                        let d = unsafe { p.cast::<DriveHead>().read() };
                        seq = d.seq;
                        remote = d.remote;
                        self.batch.push((seq, None, now));
                    }
                    KIND_REC => {
                        // SAFETY: written as a RecHead (its kind), 8-aligned.
                        let h = unsafe { p.cast::<RecHead>().read() };
                        let n: usize = h.lens.iter().map(|&n| n as usize).sum();
                        let gap = usize::from(kind & GAP != 0);
                        // SAFETY: the record's text, within its `len`, in
                        // the published range (records never cross the end).
                        let text = unsafe { std::slice::from_raw_parts(p.add(REC), n + gap) };
                        let mut e = Box::new(Entry::empty());
                        let m = usize::from(h.lens[0]);
                        e.text[..m].copy_from_slice(&text[..m]);
                        e.text[m..n].copy_from_slice(&text[m + gap..]);
                        e.lens = h.lens;
                        e.cut = h.cut;
                        e.status = h.status;
                        e.route = h.route;
                        e.request_bytes = h.request_bytes;
                        e.response_bytes = h.response_bytes;
                        e.remote = remote;
                        self.batch.push((seq, Some(e), h.start));
                    }
                    KIND_CLOCK => {
                        // SAFETY: written as a ClockHead (its kind), 8-aligned.
                        let end = unsafe { p.cast::<ClockHead>().read() }.end;
                        let ms = wall(end);
                        for (seq, entry, start) in self.batch.drain(..) {
                            let entry = entry.map(|mut e| {
                                e.duration = end.saturating_duration_since(start);
                                e.unix_ms = ms;
                                e
                            });
                            s.pending.push_back((seq, entry));
                        }
                        done = pos + u64::from(len);
                    }
                    _ => {}
                }
                pos += u64::from(len);
            }
            if done != head {
                ring.head.0.store(done, Ordering::Release);
                got = true;
            }
        }
        got
    }

    /// Writes the lines whose turn has come: an unordered ring's at once,
    /// ordered rings' by drive number (waiting for a number still missing,
    /// at most GAP_WAIT); `all`: everything left, in number order.
    fn emit(&mut self, all: bool) {
        let mut sources = std::mem::take(&mut self.sources);
        for s in &mut sources {
            while let Some((UNORDERED, _)) = s.pending.front() {
                if let Some((_, Some(e))) = s.pending.pop_front() {
                    self.write(&e);
                }
            }
        }
        loop {
            let next = self.next;
            let found = sources
                .iter()
                .position(|s| s.pending.front().is_some_and(|f| f.0 == next));
            if let Some(i) = found {
                self.stuck = None;
                self.write_drive(&mut sources[i], next);
                self.next = next + 1;
                continue;
            }
            let lowest = sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.pending.front().map(|f| (f.0, i)))
                .min();
            let Some((lowest, i)) = lowest else {
                self.stuck = None;
                break;
            };
            if lowest < next {
                // A drive given up on (GAP_WAIT) came after all: written
                // now, out of its turn.
                self.write_drive(&mut sources[i], lowest);
                continue;
            }
            let now = Instant::now();
            let since = *self.stuck.get_or_insert(now);
            if all || now.duration_since(since) >= GAP_WAIT {
                self.stuck = None;
                self.next = lowest;
                continue;
            }
            break;
        }
        self.sources = sources;
    }

    /// Writes the lines of drive `seq`, at the front of `source`.
    fn write_drive(&mut self, source: &mut Source, seq: u64) {
        while source.pending.front().is_some_and(|f| f.0 == seq) {
            if let Some((_, Some(e))) = source.pending.pop_front() {
                self.write(&e);
            }
        }
    }

    fn check_reopen(&mut self) {
        let asked = self.hub.reopen.swap(false, Ordering::AcqRel);
        if !asked {
            return;
        }
        self.flush();
        match Output::open(&self.target) {
            Ok(out) => {
                self.out = Some(out);
                self.reported = false;
                tracing::info!(target = ?self.target, "access log reopened");
            }
            Err(e) => {
                self.out = None;
                tracing::error!(target = ?self.target, error = %e, "access log reopen failed; lines are dropped until a reopen succeeds");
            }
        }
    }

    fn write(&mut self, entry: &Entry) {
        self.line.clear();
        let secs = entry.unix_ms / 1000;
        if self.time.0 != secs {
            self.time.1.clear();
            match self.format {
                Format::Combined => clf_time(&mut self.time.1, entry.unix_ms),
                Format::Json => rfc3339_secs(&mut self.time.1, entry.unix_ms),
            }
            self.time.0 = secs;
        }
        match self.format {
            Format::Combined => combined(&mut self.line, entry, &self.routes, &self.time.1),
            Format::Json => json(&mut self.line, entry, &self.routes, &self.time.1),
        }
        self.line.push('\n');
        let result = match self.out.as_mut() {
            Some(out) => out.write_all(self.line.as_bytes()),
            None => Err(io::Error::other("no file open")),
        };
        match result {
            Ok(()) => {
                self.hub.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.hub.dropped.fetch_add(1, Ordering::Relaxed);
                if !self.reported {
                    self.reported = true;
                    tracing::error!(error = %e, "access log write failed");
                }
            }
        }
    }

    fn flush(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                if !self.reported {
                    self.reported = true;
                    tracing::error!(error = %e, "access log flush failed");
                }
            }
        }
    }
}

fn route_name(routes: &[String], route: u32) -> &str {
    routes.get(route as usize).map_or("-", String::as_str)
}

/// The combined format, then duration (seconds) and route: nginx's
/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
/// "$http_referer" "$http_user_agent" $request_time "route"`. Bytes outside
/// printable ASCII, `"` and `\` are written `\xHH`, as nginx escapes them.
/// `time` is the entry's second, formatted.
fn combined(line: &mut String, e: &Entry, routes: &[String], time: &str) {
    match e.remote {
        Some(addr) => push_ip(line, addr.ip()),
        None => line.push('-'),
    }
    line.push_str(" - - [");
    line.push_str(time);
    line.push_str("] \"");
    escape_clf(line, e.part(0), false);
    line.push(' ');
    escape_clf(line, e.part(1), e.was_cut(1));
    line.push_str(" HTTP/1.1\" ");
    push_int(line, u64::from(e.status));
    line.push(' ');
    push_int(line, e.response_bytes);
    line.push_str(" \"");
    dash_or(line, e.part(2), e.was_cut(2));
    line.push_str("\" \"");
    dash_or(line, e.part(3), e.was_cut(3));
    line.push_str("\" ");
    push_int(line, e.duration.as_secs());
    line.push('.');
    let micros = e.duration.subsec_micros();
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(micros);
    for _ in digits.len()..6 {
        line.push('0');
    }
    line.push_str(digits);
    line.push_str(" \"");
    escape_clf(line, route_name(routes, e.route).as_bytes(), false);
    line.push('"');
}

fn push_int(line: &mut String, n: u64) {
    line.push_str(itoa::Buffer::new().format(n));
}

fn push_ip(line: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                push_int(line, u64::from(*o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(line, "{v6}");
        }
    }
}

fn dash_or(line: &mut String, bytes: &[u8], cut: bool) {
    if bytes.is_empty() {
        line.push('-');
    } else {
        escape_clf(line, bytes, cut);
    }
}

fn escape_clf(line: &mut String, bytes: &[u8], cut: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let plain = |b: u8| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\';
    if bytes.iter().all(|&b| plain(b)) {
        // Printable ASCII: valid UTF-8 as it is.
        line.push_str(std::str::from_utf8(bytes).unwrap_or_default());
    } else {
        for &b in bytes {
            if plain(b) {
                line.push(b as char);
            } else {
                line.push_str("\\x");
                line.push(HEX[usize::from(b >> 4)] as char);
                line.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
    if cut {
        line.push_str("...");
    }
}

/// One JSON object: time (RFC 3339, UTC, milliseconds), remote, method,
/// target, status, request_bytes, response_bytes, duration_us, route,
/// referer, user_agent; `"cut": true` when a text field was shortened.
/// `time` is the entry's second, formatted without the milliseconds.
fn json(line: &mut String, e: &Entry, routes: &[String], time: &str) {
    line.push_str("{\"time\":\"");
    line.push_str(time);
    line.push('.');
    let ms = e.unix_ms % 1000;
    if ms < 100 {
        line.push('0');
    }
    if ms < 10 {
        line.push('0');
    }
    push_int(line, ms);
    line.push_str("Z\",\"remote\":");
    match e.remote {
        Some(addr) => {
            line.push('"');
            if addr.is_ipv6() {
                line.push('[');
            }
            push_ip(line, addr.ip());
            if addr.is_ipv6() {
                line.push(']');
            }
            line.push(':');
            push_int(line, u64::from(addr.port()));
            line.push('"');
        }
        None => line.push_str("null"),
    }
    line.push_str(",\"method\":");
    json_str(line, e.part(0));
    line.push_str(",\"target\":");
    json_str(line, e.part(1));
    line.push_str(",\"status\":");
    push_int(line, u64::from(e.status));
    line.push_str(",\"request_bytes\":");
    push_int(line, e.request_bytes);
    line.push_str(",\"response_bytes\":");
    push_int(line, e.response_bytes);
    line.push_str(",\"duration_us\":");
    push_int(
        line,
        u64::try_from(e.duration.as_micros()).unwrap_or(u64::MAX),
    );
    line.push_str(",\"route\":");
    json_str(line, route_name(routes, e.route).as_bytes());
    line.push_str(",\"referer\":");
    json_str(line, e.part(2));
    line.push_str(",\"user_agent\":");
    json_str(line, e.part(3));
    if e.cut != 0 {
        line.push_str(",\"cut\":true");
    }
    line.push('}');
}

/// A JSON string of bytes: UTF-8 kept, invalid bytes as U+FFFD, control
/// characters, `"` and `\` escaped.
fn json_str(line: &mut String, bytes: &[u8]) {
    line.push('"');
    if bytes
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push_str(std::str::from_utf8(bytes).unwrap_or_default());
        line.push('"');
        return;
    }
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `03/Dec/2026:08:20:44 +0000` (the log is in UTC).
fn clf_time(line: &mut String, unix_ms: u64) {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let _ = write!(
        line,
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[m as usize - 1],
        t / 3600,
        t / 60 % 60,
        t % 60
    );
}

/// `2026-12-03T08:20:44` (the milliseconds and `Z` follow per line).
fn rfc3339_secs(line: &mut String, unix_ms: u64) {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    let _ = write!(
        line,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut e = Entry::new(b"GET", b"/v1/kv/a?x=\"1\"", b"", b"curl/8.0");
        e.unix_ms = 1_796_285_244_123; // 2026-12-03T08:07:24.123Z
        e.remote = Some("127.0.0.1:5555".parse().unwrap());
        e.status = 200;
        e.route = 0;
        e.request_bytes = 80;
        e.response_bytes = 13;
        e.duration = Duration::from_micros(1_250);
        e
    }

    #[test]
    fn combined_line() {
        let mut s = String::new();
        let mut t = String::new();
        clf_time(&mut t, entry().unix_ms);
        combined(&mut s, &entry(), &["GET /v1/kv/{key}".into()], &t);
        assert_eq!(
            s,
            "127.0.0.1 - - [03/Dec/2026:08:07:24 +0000] \"GET /v1/kv/a?x=\\x221\\x22 HTTP/1.1\" \
             200 13 \"-\" \"curl/8.0\" 0.001250 \"GET /v1/kv/{key}\""
        );
    }

    #[test]
    fn json_line() {
        let mut s = String::new();
        let mut t = String::new();
        rfc3339_secs(&mut t, entry().unix_ms);
        json(&mut s, &entry(), &[], &t);
        assert_eq!(
            s,
            "{\"time\":\"2026-12-03T08:07:24.123Z\",\"remote\":\"127.0.0.1:5555\",\"method\":\"GET\",\
             \"target\":\"/v1/kv/a?x=\\\"1\\\"\",\"status\":200,\"request_bytes\":80,\"response_bytes\":13,\
             \"duration_us\":1250,\"route\":\"-\",\"referer\":\"\",\"user_agent\":\"curl/8.0\"}"
        );
    }

    #[test]
    fn long_parts_are_cut_to_fit() {
        let target = vec![b'a'; 1000];
        let ua = vec![b'u'; 100];
        let e = Entry::new(b"GET", &target, b"", &ua);
        assert_eq!(e.part(3).len(), 40);
        assert_eq!(e.part(1).len(), TEXT_BYTES - 3 - 40);
        assert!(e.was_cut(1) && e.was_cut(3) && !e.was_cut(0));
        let mut s = String::new();
        json(&mut s, &e, &[], "t");
        assert!(s.ends_with(",\"cut\":true}"), "{s}");
    }

    /// One response through a producer: a drive of one record, published.
    fn log_one(p: &mut LogProducer, target: &[u8]) {
        let start = Instant::now();
        // The request line's bytes, as the parser leaves them.
        let buf = [b"GET ".as_slice(), target, b" HTTP/1.1"].concat();
        let (method, target) = spans(&buf);
        p.record(
            start,
            200,
            0,
            80,
            13,
            &buf,
            method,
            target,
            b"",
            b"curl/8.0",
        );
        p.end_drive(Some("127.0.0.1:5555".parse().unwrap()));
        p.publish(Instant::now());
    }

    /// The method's and the target's spans in a request line.
    fn spans(line: &[u8]) -> (Span, Span) {
        let sp = line.iter().position(|&b| b == b' ').unwrap();
        let ts = sp + line[sp..].iter().position(|&b| b != b' ').unwrap();
        let te = ts + line[ts..].iter().position(|&b| b == b' ').unwrap();
        let span = |start: usize, end: usize| Span {
            start: start as u32,
            end: end as u32,
        };
        (span(0, sp), span(ts, te))
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    #[test]
    fn writes_to_a_file_and_reopens_it() {
        let dir = std::env::temp_dir().join(format!("stoat-alog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::start(Target::File(path.clone()), Format::Json, 16, vec![]).unwrap();
        let mut tx = log.sender(false).producer();
        log_one(&mut tx, b"/a");
        wait_for(|| lines(&path).len() == 1);
        // logrotate: move the file away, then signal.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen_flag().store(true, Ordering::Release);
        log_one(&mut tx, b"/b");
        wait_for(|| lines(&path).len() == 1);
        assert_eq!(lines(&rotated).len(), 1);
        assert!(lines(&path)[0].contains("\"target\":\"/b\""));
        assert!(lines(&path)[0].contains("\"remote\":\"127.0.0.1:5555\""));
        assert_eq!(log.written(), 2);
        assert_eq!(log.dropped(), 0);
        drop(tx);
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two rings of the `shared` model: one "connection" alternates between
    /// them drive by drive, and each ring publishes only now and then (so
    /// the writer sees the later drives of one ring before the earlier of
    /// the other). Records of many lengths wrap the small rings many times.
    /// The lines come out in drive order, none lost, none cut wrongly.
    #[test]
    fn ordered_rings_merge_by_drive_and_wrap() {
        let dir = std::env::temp_dir().join(format!("stoat-alog-ord-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::start(Target::File(path.clone()), Format::Json, 64, vec![]).unwrap();
        let sender = log.sender(true);
        let mut rings = [sender.producer(), sender.producer()];
        let n = 1000;
        for i in 0..n {
            let target = format!("/{i}/{}", "x".repeat(i % 300));
            let r = &mut rings[i % 2];
            // Every third with two spaces after the method (two copies).
            let sep = if i % 3 == 0 { "  " } else { " " };
            let buf = format!("GET{sep}{target} HTTP/1.1");
            let (method, target) = spans(buf.as_bytes());
            let t = Instant::now();
            r.record(t, 200, 0, 1, 2, buf.as_bytes(), method, target, b"", b"u");
            r.end_drive(None);
            for (k, every) in [(0, 7), (1, 11)] {
                if i % every == 0 {
                    let r = &mut rings[k];
                    r.publish(Instant::now());
                    // Pacing for this test only (a network thread never
                    // waits): the writer has read what was published.
                    wait_for(|| r.ring.head.0.load(Ordering::Acquire) == r.published);
                }
            }
        }
        drop(rings);
        let dropped = log.dropped();
        drop(log);
        let got = lines(&path);
        assert_eq!(dropped, 0);
        assert_eq!(got.len(), n);
        let mut last = None;
        for line in &got {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let target = v["target"].as_str().unwrap();
            let i: usize = target.split('/').nth(1).unwrap().parse().unwrap();
            assert!(last < Some(i), "{last:?} then {i}");
            last = Some(i);
            let keep = (TEXT_BYTES - 3 - 1).min(target.len());
            let want = format!("/{i}/{}", "x".repeat(i % 300));
            assert_eq!(target, &want[..keep]);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Polls `done` until it holds, failing after 10 s.
    fn wait_for(mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::yield_now();
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(20_790), (2026, 12, 3));
    }
}
