//! Counters and latency histograms that cost a network thread a few plain
//! instructions per request, summed only when someone scrapes.
//!
//! Contract:
//! - [`Metrics`] is the registry of one server. Every thread that counts
//!   (network threads, accept threads, pipeline threads) takes its own
//!   [`Recorder`] with [`Metrics::recorder`]; the recorder owns one
//!   [`Block`] of cells, 128-byte aligned (two cache lines: the adjacent-line
//!   prefetcher pairs lines, so 64 would still let neighbours interfere), so
//!   no two threads ever write the same line.
//! - A cell is written only by its owner, with a relaxed load and a relaxed
//!   store (`Cell::add`): on x86-64 and AArch64 that is a plain load, add,
//!   store, no locked read-modify-write and no fence. The type system holds
//!   the single-writer rule: the only way to write is through a `Recorder`,
//!   which is `Send` but not `Clone` and whose methods take `&mut self`.
//! - [`Metrics::snapshot`] reads every block with relaxed loads and sums
//!   them. Each cell is monotonic, so a snapshot never goes backwards; cells
//!   are not read at one instant together (a request counted in its status
//!   class may not be in its histogram yet), which a scrape tolerates.
//!   Gauges that are differences (connections open = accepted − closed,
//!   streams open = opened − closed) are derived from two counters, so a
//!   connection accepted by one thread and closed by another needs no shared
//!   cell.
//! - Blocks live as long as the registry: a thread that exits leaves its
//!   counts behind, so totals never drop.
//!
//! Histograms ([`Histogram`]): log-linear buckets over nanoseconds (or any
//! `u64`), in the manner of HdrHistogram with two significant bits: each
//! power of two is split into four equal sub-buckets. Why this shape:
//! - Fixed memory: 144 cells (1,152 bytes) cover 0 ns to 2^37 ns (137 s);
//!   larger values land in the last bucket. No allocation when recording.
//! - O(1) recording in a handful of instructions: `leading_zeros`, two
//!   shifts, a mask, then two cell adds (the bucket and the sum). The count
//!   is the sum of the buckets, computed on scrape, so it costs nothing here.
//! - Bounded error: a bucket spans at most a quarter of its lower edge, so a
//!   quantile read at a bucket's midpoint is within ±12.5 % of the truth,
//!   enough for p50/p99/p999 on a dashboard; two sub-bits more (±3 %) would
//!   cost four times the memory per route and thread.
//! - Mergeable: bucket edges are the same everywhere, so threads' and
//!   routes' histograms merge by adding cells.
//! - Prometheus: the text format (0.0.4) has classic histograms only, so the
//!   exposition ([`HistogramSnapshot::cumulative_at`]) reports the power-of-two
//!   edges (every fourth internal edge) from 1.024 µs to 68.7 s, 27 `le`
//!   buckets plus `+Inf`: exact counts at each edge (buckets are
//!   upper-inclusive, as `le` means), factor-2 resolution for
//!   `histogram_quantile`, and a bounded series count per route.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::runtime::link::AsyncCounters;

/// Sub-bucket bits: each power of two is split into `1 << SUB_BITS` buckets.
const SUB_BITS: u32 = 2;
/// Sub-buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// The largest power of two tracked exactly: values up to `2^(MAX_EXP + 1)`.
const MAX_EXP: u32 = 36;
/// Buckets per histogram.
pub const BUCKETS: usize = (MAX_EXP - SUB_BITS + 2) as usize * SUB;

/// Status classes counted per route: 1xx to 5xx.
pub const STATUS_CLASSES: usize = 5;

/// A counter of the thread block, by what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[non_exhaustive]
pub enum Counter {
    /// Connections accepted.
    Accepted,
    /// Request bytes read from sockets (heads and bodies).
    RequestBytes,
    /// Response bytes handed to the kernel.
    ResponseBytes,
    /// SSE streams opened.
    SseOpened,
    /// SSE streams closed.
    SseClosed,
    /// SSE events written to connections.
    SseEvents,
    /// WebSocket sessions opened (after the 101).
    WsOpened,
    /// WebSocket sessions closed.
    WsClosed,
    /// WebSocket frames sent (data, control, and frames queued by senders
    /// on other threads), counted when put in the connection's output.
    WsFramesSent,
    /// WebSocket frames received (each frame once, however many reads
    /// its payload takes).
    WsFramesReceived,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 10] = [
        Counter::Accepted,
        Counter::RequestBytes,
        Counter::ResponseBytes,
        Counter::SseOpened,
        Counter::SseClosed,
        Counter::SseEvents,
        Counter::WsOpened,
        Counter::WsClosed,
        Counter::WsFramesSent,
        Counter::WsFramesReceived,
    ];
}

/// Number of [`Counter`]s.
pub const COUNTERS: usize = Counter::ALL.len();

/// Why a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed (EOF or reset), or asked for `Connection: close`.
    ClientClose,
    /// Idle between requests past `keepalive_timeout_sec`.
    KeepAliveTimeout,
    /// A request (head or body) not complete in time: answered 408.
    RequestTimeout,
    /// Output made no progress within the write timeout.
    WriteStall,
    /// A protocol error (answered 4xx/5xx and closed) or a socket error.
    Error,
    /// An idle keep-alive connection closed to admit a new one at `max_connections`.
    Evicted,
    /// Closed by a graceful stop.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in index order.
    pub const ALL: [CloseReason; 7] = [
        CloseReason::ClientClose,
        CloseReason::KeepAliveTimeout,
        CloseReason::RequestTimeout,
        CloseReason::WriteStall,
        CloseReason::Error,
        CloseReason::Evicted,
        CloseReason::Shutdown,
    ];

    /// The label value in the exposition.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::KeepAliveTimeout => "keepalive_timeout",
            CloseReason::RequestTimeout => "request_timeout",
            CloseReason::WriteStall => "write_stall",
            CloseReason::Error => "error",
            CloseReason::Evicted => "evicted",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// Number of [`CloseReason`]s.
pub const CLOSE_REASONS: usize = CloseReason::ALL.len();

/// One counter cell: written by its owner only, read by anyone.
#[derive(Debug, Default)]
pub struct Cell(AtomicU64);

impl Cell {
    /// Adds `n`: a relaxed load and a relaxed store, correct only because
    /// one thread (the block's owner) ever writes the cell.
    #[inline(always)]
    fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// The value now.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A log-linear histogram (see the module doc): fixed memory, O(1) record.
#[derive(Debug)]
pub struct Histogram {
    buckets: [Cell; BUCKETS],
    sum: Cell,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| Cell::default()),
            sum: Cell::default(),
        }
    }
}

impl Histogram {
    /// Records `value`. Owner thread only (through a [`Recorder`]).
    #[inline]
    fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `n` times `value`.
    #[inline]
    fn record_n(&self, value: u64, n: u64) {
        self.buckets[bucket_of(value)].add(n);
        self.sum.add(value.wrapping_mul(n));
    }

    fn add_to(&self, into: &mut HistogramSnapshot) {
        for (total, cell) in into.buckets.iter_mut().zip(&self.buckets) {
            *total += cell.get();
        }
        into.sum = into.sum.wrapping_add(self.sum.get());
    }
}

/// The bucket of `value`. Buckets are upper-inclusive: bucket `i` holds
/// values in `(upper(i - 1), upper(i)]`, so an exposition edge `le` that is
/// a bucket's upper bound counts exactly the values `<= le`.
#[inline(always)]
pub fn bucket_of(value: u64) -> usize {
    let u = value.saturating_sub(1);
    if u < SUB as u64 {
        return u as usize;
    }
    let e = 63 - u.leading_zeros();
    let i = (e - SUB_BITS + 1) as usize * SUB + ((u >> (e - SUB_BITS)) as usize & (SUB - 1));
    i.min(BUCKETS - 1)
}

/// The largest value bucket `i` holds (the last bucket also holds every
/// value above it).
pub fn bucket_upper(i: usize) -> u64 {
    lower_of_index(i + 1)
}

/// The smallest `u` (value − 1) of bucket `i`: the inverse of `bucket_of`.
fn lower_of_index(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let e = (i / SUB) as u32 + SUB_BITS - 1;
    let m = (i % SUB) as u64;
    (SUB as u64 + m) << (e - SUB_BITS)
}

/// Power-of-two edges for a classic Prometheus histogram, `2^from` to
/// `2^to` (capped at 2^36), in the histogram's unit: every one is a bucket
/// upper bound, so counts at them are exact. Durations in nanoseconds use
/// 10..=36 (1.024 µs to 68.7 s).
pub fn exposition_edges(from: u32, to: u32) -> impl Iterator<Item = u64> {
    (from..=to.min(MAX_EXP)).map(|k| 1u64 << k)
}

/// Cells of one route, on one thread.
#[derive(Debug, Default)]
#[repr(align(128))]
struct RouteCells {
    /// Responses by status class (1xx..5xx).
    classes: [Cell; STATUS_CLASSES],
    /// Request duration in nanoseconds.
    duration: Histogram,
}

/// Cells of one pipeline, on one thread.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PipelineCells {
    /// Jobs pushed into the ring.
    jobs: Cell,
    /// Pushes refused because the ring was full (answered 503).
    full: Cell,
    /// Push to pick-up, nanoseconds (recorded by the pipeline thread).
    queued: Histogram,
    /// Pick-up to answer, nanoseconds (recorded by the pipeline thread).
    service: Histogram,
}

/// One thread's cells: the unit of cache-line separation.
#[derive(Debug)]
#[repr(align(128))]
pub struct Block {
    counters: [Cell; COUNTERS],
    closed: [Cell; CLOSE_REASONS],
    /// One per route plus the last for requests matched by no route
    /// (404, 405, protocol errors).
    routes: Box<[RouteCells]>,
    pipelines: Box<[PipelineCells]>,
}

impl Block {
    fn new(shape: Shape) -> Block {
        Block {
            counters: std::array::from_fn(|_| Cell::default()),
            closed: std::array::from_fn(|_| Cell::default()),
            routes: (0..shape.routes + 1)
                .map(|_| RouteCells::default())
                .collect(),
            pipelines: (0..shape.pipelines)
                .map(|_| PipelineCells::default())
                .collect(),
        }
    }
}

/// How many routes and pipelines the blocks have cells for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Routes (each gets counters by status class and a histogram).
    pub routes: usize,
    /// Pipelines (each gets job counters and two histograms).
    pub pipelines: usize,
}

/// The registry of one server's blocks.
#[derive(Debug)]
pub struct Metrics {
    shape: Shape,
    blocks: Mutex<Vec<Arc<Block>>>,
    /// Evictions by threads without a block (the `shared` model's accept
    /// threads): rare, so one shared atomic.
    evicted: AtomicU64,
    /// The server's counters of requests and streams that left the network
    /// threads (their senders run on any thread, so they cannot write a
    /// thread's block): read for the `Full` answers of stream senders.
    streams: OnceLock<Arc<AsyncCounters>>,
}

impl Metrics {
    /// A registry whose blocks have cells for `shape`'s routes and pipelines.
    pub fn new(shape: Shape) -> Arc<Metrics> {
        Arc::new(Metrics {
            shape,
            blocks: Mutex::new(Vec::new()),
            evicted: AtomicU64::new(0),
            streams: OnceLock::new(),
        })
    }

    /// Reads the `Full` answers of stream senders from `counters` (the
    /// server's; set by the first network thread, the same for all).
    pub(crate) fn attach(&self, counters: &Arc<AsyncCounters>) {
        let _ = self.streams.set(counters.clone());
    }

    /// The routes and pipelines counted.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// A new block for the calling thread to write; its counts stay in the
    /// registry after the recorder is dropped.
    pub fn recorder(&self) -> Recorder {
        let block = Arc::new(Block::new(self.shape));
        self.blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(block.clone());
        Recorder {
            block,
            unmatched: self.shape.routes,
        }
    }

    /// A connection was evicted (at `max_connections`) by a thread that
    /// has no recorder.
    pub fn evicted_elsewhere(&self) {
        self.evicted.fetch_add(1, Ordering::Relaxed);
    }

    /// Every block summed.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot::new(self.shape);
        snap.closed[CloseReason::Evicted as usize] = self.evicted.load(Ordering::Relaxed);
        if let Some(c) = self.streams.get() {
            snap.sse_full = c.sse_full.load(Ordering::Relaxed);
            snap.ws_full = c.ws_full.load(Ordering::Relaxed);
        }
        let blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
        for block in blocks.iter() {
            for (total, cell) in snap.counters.iter_mut().zip(&block.counters) {
                *total += cell.get();
            }
            for (total, cell) in snap.closed.iter_mut().zip(&block.closed) {
                *total += cell.get();
            }
            for (route, cells) in snap.routes.iter_mut().zip(block.routes.iter()) {
                for (total, cell) in route.classes.iter_mut().zip(&cells.classes) {
                    *total += cell.get();
                }
                cells.duration.add_to(&mut route.duration);
            }
            for (pipe, cells) in snap.pipelines.iter_mut().zip(block.pipelines.iter()) {
                pipe.jobs += cells.jobs.get();
                pipe.full += cells.full.get();
                cells.queued.add_to(&mut pipe.queued);
                cells.service.add_to(&mut pipe.service);
            }
        }
        snap
    }
}

/// The writing end of one block: one per thread, never shared.
#[derive(Debug)]
pub struct Recorder {
    block: Arc<Block>,
    /// The index of the "matched no route" cells.
    unmatched: usize,
}

impl Recorder {
    /// Adds one to `counter`.
    #[inline]
    pub fn count(&mut self, counter: Counter) {
        self.block.counters[counter as usize].add(1);
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(&mut self, counter: Counter, n: u64) {
        self.block.counters[counter as usize].add(n);
    }

    /// A connection closed for `reason`.
    #[inline]
    pub fn closed(&mut self, reason: CloseReason) {
        self.block.closed[reason as usize].add(1);
    }

    /// A response finished: `route` is the route's index (`None`: matched
    /// no route), `status` its code, `duration` from the first byte of the
    /// head to the last byte handed to the kernel.
    #[inline]
    pub fn response(&mut self, route: Option<usize>, status: u16, duration: Duration) {
        self.status(route, status);
        self.duration(route, duration);
    }

    /// Counts a response of `route` by its status class.
    #[inline]
    pub fn status(&mut self, route: Option<usize>, status: u16) {
        self.statuses(route, status, 1);
    }

    /// Counts `n` responses of `route` with `status`.
    #[inline]
    pub fn statuses(&mut self, route: Option<usize>, status: u16, n: u32) {
        let cells = &self.block.routes[route.unwrap_or(self.unmatched).min(self.unmatched)];
        let class = (status / 100).clamp(1, STATUS_CLASSES as u16) as usize - 1;
        cells.classes[class].add(u64::from(n));
    }

    /// Records one request duration of `route`.
    #[inline]
    pub fn duration(&mut self, route: Option<usize>, duration: Duration) {
        self.durations(route, duration, 1);
    }

    /// Records `n` request durations of `route`, all `duration` long (the
    /// responses of one batch): one bucket add and one sum add.
    #[inline]
    pub fn durations(&mut self, route: Option<usize>, duration: Duration, n: u32) {
        let cells = &self.block.routes[route.unwrap_or(self.unmatched).min(self.unmatched)];
        cells.duration.record_n(nanos(duration), u64::from(n));
    }

    /// A job was pushed into pipeline `pipeline`'s ring (`accepted`), or
    /// refused because the ring was full.
    #[inline]
    pub fn pipeline_push(&mut self, pipeline: usize, accepted: bool) {
        if let Some(cells) = self.block.pipelines.get(pipeline) {
            if accepted {
                cells.jobs.add(1);
            } else {
                cells.full.add(1);
            }
        }
    }

    /// A pipeline thread ran a job: `queued` from push to pick-up,
    /// `service` from pick-up to its answer.
    #[inline]
    pub fn pipeline_job(&mut self, pipeline: usize, queued: Duration, service: Duration) {
        if let Some(cells) = self.block.pipelines.get(pipeline) {
            cells.queued.record(nanos(queued));
            cells.service.record(nanos(service));
        }
    }

    /// A pipeline thread picked a job up `queued` after its push.
    #[inline]
    pub fn pipeline_queued(&mut self, pipeline: usize, queued: Duration) {
        if let Some(cells) = self.block.pipelines.get(pipeline) {
            cells.queued.record(nanos(queued));
        }
    }

    /// A pipeline thread's batch handler spent `service` on a job.
    #[inline]
    pub fn pipeline_service(&mut self, pipeline: usize, service: Duration) {
        if let Some(cells) = self.block.pipelines.get(pipeline) {
            cells.service.record(nanos(service));
        }
    }
}

/// A histogram of a service's own (batch sizes, fsync times) for one
/// writer thread: the writer records with plain stores, any thread reads.
/// Made with [`histogram`].
#[derive(Debug)]
pub struct HistogramWriter(Arc<Histogram>);

impl HistogramWriter {
    /// Records `value` (nanoseconds for durations, or a count).
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.0.record(value);
    }

    /// Records a duration in nanoseconds.
    #[inline]
    pub fn record_duration(&mut self, d: Duration) {
        self.0.record(nanos(d));
    }
}

/// The reading side of a [`HistogramWriter`]; clone it freely.
#[derive(Debug, Clone)]
pub struct HistogramReader(Arc<Histogram>);

impl HistogramReader {
    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        self.0.add_to(&mut h);
        h
    }
}

/// A single-writer histogram: the writer for the thread that records, the
/// reader for scrapes.
pub fn histogram() -> (HistogramWriter, HistogramReader) {
    let h = Arc::new(Histogram::default());
    (HistogramWriter(h.clone()), HistogramReader(h))
}

/// A duration in nanoseconds, saturating (584 years), without u128 math.
#[inline(always)]
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A histogram's cells summed over threads (and, by [`merge`](Self::merge),
/// over routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Counts per internal bucket (see [`bucket_upper`]).
    pub buckets: Box<[u64; BUCKETS]>,
    /// Sum of the recorded values.
    pub sum: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: Box::new([0; BUCKETS]),
            sum: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// What was recorded since `earlier` (a snapshot of the same cells).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let mut d = HistogramSnapshot::default();
        for ((out, now), then) in d
            .buckets
            .iter_mut()
            .zip(self.buckets.iter())
            .zip(earlier.buckets.iter())
        {
            *out = now.saturating_sub(*then);
        }
        d.sum = self.sum.wrapping_sub(earlier.sum);
        d
    }

    /// Cumulative counts at each of `edges` (ascending), as Prometheus's
    /// `le` buckets: the number of values `<= edge`. Exact when each edge is
    /// a bucket upper bound (as [`exposition_edges`] are).
    pub fn cumulative_at(&self, edges: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut i = 0;
        let mut acc = 0u64;
        for edge in edges {
            while i < BUCKETS - 1 && bucket_upper(i) <= edge {
                acc += self.buckets[i];
                i += 1;
            }
            out.push((edge, acc));
        }
        out
    }

    /// The value at quantile `q` (0..=1), read at the midpoint of the bucket
    /// that holds it (within ±12.5 %); `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * count as f64).ceil() as u64).max(1);
        let mut acc = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            acc += n;
            if acc >= rank {
                let low = if i == 0 { 0 } else { bucket_upper(i - 1) + 1 };
                let high = bucket_upper(i);
                return Some(low + (high - low) / 2);
            }
        }
        None
    }
}

/// One route's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSnapshot {
    /// Responses by status class: index 0 is 1xx, 4 is 5xx.
    pub classes: [u64; STATUS_CLASSES],
    /// Request duration, nanoseconds.
    pub duration: HistogramSnapshot,
}

impl RouteSnapshot {
    /// Responses of every class.
    pub fn requests(&self) -> u64 {
        self.classes.iter().sum()
    }
}

/// One pipeline's sums.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineSnapshot {
    /// Jobs pushed.
    pub jobs: u64,
    /// Pushes refused for a full ring (503).
    pub full: u64,
    /// Push to pick-up, nanoseconds.
    pub queued: HistogramSnapshot,
    /// Pick-up to answer, nanoseconds.
    pub service: HistogramSnapshot,
}

/// Every block summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    counters: [u64; COUNTERS],
    closed: [u64; CLOSE_REASONS],
    /// Per route, then one for requests that matched no route.
    pub routes: Vec<RouteSnapshot>,
    /// Per pipeline.
    pub pipelines: Vec<PipelineSnapshot>,
    /// `Full` answers to `EventStream` senders (the stream's backlog was full).
    pub sse_full: u64,
    /// `Full` answers to WebSocket senders.
    pub ws_full: u64,
}

impl Snapshot {
    /// An all-zero snapshot of `shape`.
    pub fn new(shape: Shape) -> Snapshot {
        Snapshot {
            counters: [0; COUNTERS],
            closed: [0; CLOSE_REASONS],
            routes: vec![RouteSnapshot::default(); shape.routes + 1],
            pipelines: vec![PipelineSnapshot::default(); shape.pipelines],
            sse_full: 0,
            ws_full: 0,
        }
    }

    /// A counter's total.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters[counter as usize]
    }

    /// Connections closed for `reason`.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize]
    }

    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// Connections open now: accepted minus closed.
    pub fn open(&self) -> u64 {
        self.counter(Counter::Accepted)
            .saturating_sub(self.closed_total())
    }

    /// Responses by status class over all routes (index 0 is 1xx).
    pub fn classes(&self) -> [u64; STATUS_CLASSES] {
        let mut out = [0; STATUS_CLASSES];
        for r in &self.routes {
            for (o, c) in out.iter_mut().zip(r.classes) {
                *o += c;
            }
        }
        out
    }

    /// Responses of every route and class.
    pub fn requests(&self) -> u64 {
        self.routes.iter().map(RouteSnapshot::requests).sum()
    }

    /// Request durations of every route merged.
    pub fn duration(&self) -> HistogramSnapshot {
        let mut h = HistogramSnapshot::default();
        for r in &self.routes {
            h.merge(&r.duration);
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_upper_inclusive() {
        // Every value lands in the bucket whose range holds it, and ranges
        // tile 0..=2^37 with no gap.
        for i in 0..BUCKETS - 1 {
            let upper = bucket_upper(i);
            assert_eq!(bucket_of(upper), i, "upper of {i}");
            assert_eq!(bucket_of(upper + 1), i + 1, "next after {i}");
        }
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(BUCKETS, 144);
    }

    #[test]
    fn relative_width_is_at_most_a_quarter() {
        for i in SUB..BUCKETS - 1 {
            let low = bucket_upper(i - 1) + 1;
            let high = bucket_upper(i);
            assert!((high - low + 1) * 4 < low, "bucket {i}: {low}..={high}");
        }
    }

    #[test]
    fn exposition_edges_are_bucket_uppers() {
        for edge in exposition_edges(0, 36) {
            assert_eq!(bucket_upper(bucket_of(edge)), edge, "edge {edge}");
        }
    }

    #[test]
    fn blocks_sum_on_snapshot() {
        let m = Metrics::new(Shape {
            routes: 2,
            pipelines: 1,
        });
        let mut a = m.recorder();
        let mut b = m.recorder();
        let t = std::thread::spawn(move || {
            for _ in 0..1000 {
                b.count(Counter::Accepted);
                b.response(Some(1), 200, Duration::from_micros(3));
            }
            b.closed(CloseReason::KeepAliveTimeout);
            b.pipeline_push(0, false);
        });
        for _ in 0..500 {
            a.count(Counter::Accepted);
            a.response(None, 404, Duration::from_millis(2));
        }
        a.add(Counter::ResponseBytes, 7);
        a.closed(CloseReason::ClientClose);
        a.pipeline_push(0, true);
        a.pipeline_job(0, Duration::from_micros(10), Duration::from_micros(20));
        t.join().unwrap();
        let s = m.snapshot();
        assert_eq!(s.counter(Counter::Accepted), 1500);
        assert_eq!(s.counter(Counter::ResponseBytes), 7);
        assert_eq!(s.requests(), 1500);
        assert_eq!(s.routes[1].classes, [0, 1000, 0, 0, 0]);
        assert_eq!(s.routes[2].classes, [0, 0, 0, 500, 0]);
        assert_eq!(s.classes(), [0, 1000, 0, 500, 0]);
        assert_eq!(s.closed(CloseReason::KeepAliveTimeout), 1);
        assert_eq!(s.closed_total(), 2);
        assert_eq!(s.open(), 1498);
        assert_eq!(s.pipelines[0].jobs, 1);
        assert_eq!(s.pipelines[0].full, 1);
        assert_eq!(s.pipelines[0].queued.count(), 1);
        assert_eq!(s.duration().count(), 1500);
        assert_eq!(s.duration().sum, 1000 * 3_000 + 500 * 2_000_000);
    }

    #[test]
    fn quantiles_are_within_an_eighth() {
        let m = Metrics::new(Shape {
            routes: 1,
            pipelines: 0,
        });
        let mut r = m.recorder();
        for v in 1..=10_000u64 {
            r.response(Some(0), 200, Duration::from_nanos(v * 1000));
        }
        let h = m.snapshot().routes[0].duration.clone();
        for (q, want) in [
            (0.5, 5_000_000.0),
            (0.99, 9_900_000.0),
            (0.999, 9_990_000.0),
        ] {
            let got = h.quantile(q).unwrap() as f64;
            assert!((got - want).abs() / want <= 0.125, "q{q}: {got} vs {want}");
        }
        let cum = h.cumulative_at(exposition_edges(10, 36));
        // Exact at every edge: values are 1000, 2000, ... 10^7 ns.
        for (edge, n) in cum {
            assert_eq!(n, (edge / 1000).min(10_000), "le {edge}");
        }
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }

    #[test]
    fn since_subtracts() {
        let m = Metrics::new(Shape {
            routes: 1,
            pipelines: 0,
        });
        let mut r = m.recorder();
        r.response(Some(0), 200, Duration::from_micros(5));
        let a = m.snapshot();
        r.response(Some(0), 500, Duration::from_micros(50));
        let b = m.snapshot();
        let d = b.routes[0].duration.since(&a.routes[0].duration);
        assert_eq!(d.count(), 1);
        assert_eq!(d.sum, 50_000);
    }

    #[test]
    fn block_is_cache_line_separated() {
        assert_eq!(std::mem::align_of::<Block>(), 128);
        assert_eq!(std::mem::align_of::<RouteCells>(), 128);
        assert_eq!(std::mem::size_of::<Histogram>(), (BUCKETS + 1) * 8);
    }
}
