//! A bounded multi-producer, multi-consumer ring in the style of the LMAX
//! Disruptor: the queue between the network threads and a service
//! pipeline's worker threads.
//!
//! Contract:
//! - The capacity is fixed at construction (rounded up to a power of two,
//!   at least 2) and every slot is allocated then: a push or a pop never
//!   allocates.
//! - Producers never block: [`Ring::try_push`] hands the value back when the
//!   ring is full or closed, and the caller answers `503` at once.
//! - Consumers take every published entry available, up to a maximum, as
//!   one batch claimed with one compare-and-swap ([`Ring::pop_batch`]), so a
//!   service can do group work (one `fsync` for many commits). Any number of
//!   consumers may run at once; each entry goes to exactly one of them.
//! - Order: entries are consumed in the order their pushes claimed a
//!   position; a batch is a run of consecutive positions. One producer's
//!   pushes claim increasing positions, so its entries reach the consumers
//!   in its order (each consumer's batches, and the batches in claim order,
//!   keep it).
//! - Idle consumers park ([`Ring::wait_batch`]) after a short spin; they do
//!   not busy-wait. A producer pays for a wakeup only when a consumer is
//!   parked. [`Ring::close`] refuses further pushes and wakes every parked
//!   consumer; entries pushed before it are still delivered, and
//!   `wait_batch` returns 0 only once the ring is closed and empty.
//! - Dropping the ring drops the entries still in it.
//!
//! Why hand-written: the `disruptor` crate's consumers wait by spinning,
//! which a 2-core machine cannot afford (a spinning worker takes a core from
//! the network threads); crossbeam's `ArrayQueue` pops one entry at a time
//! (no batch claim) and has no way to park a consumer.
//!
//! # Algorithm
//!
//! Dmitry Vyukov's bounded MPMC queue with a batch claim. Positions are
//! `u64`s that only grow (at 10^9 pushes a second they would take
//! centuries to reach the closed bit, 2^63). Slot `p & mask` carries a
//! sequence number `seq` that tells its state for position `p`:
//!
//! - `seq == p`: free, a producer may claim position `p`;
//! - `seq == p + 1`: published, holds the entry of position `p`;
//! - `seq == p + capacity`: consumed, free for position `p + capacity`.
//!
//! A producer claims position `tail` with a CAS on `tail` (when the slot is
//! free), writes the value, then publishes `seq = p + 1` (Release). A
//! consumer reads `head`, counts the consecutive published slots from it
//! (Acquire loads), claims them all with one CAS `head -> head + n`, moves
//! the values out and frees each slot with `seq = p + capacity` (Release).
//! Because a slot's `seq` only grows and takes the value `p + 1` exactly
//! once (capacity >= 2), a consumer whose CAS succeeds knows that nobody
//! else claimed those positions and that each was published.
//!
//! Closing sets bit 63 of `tail`: a producer's CAS fails from then on, so
//! the set of positions ever claimed is fixed, and "closed and drained" is
//! `head == tail & !CLOSED`.
//!
//! # Parking without lost wakeups
//!
//! A consumer that finds nothing takes the park lock, increments `sleepers`,
//! issues a `SeqCst` fence, and looks again; only if there is still nothing
//! (and the ring is not closed) does it wait on the condvar, which releases
//! the lock atomically. A producer, after publishing, issues a `SeqCst`
//! fence and loads `sleepers`; if it is non-zero it takes the lock and
//! notifies one consumer. The two fences order "increment sleepers, then
//! look at the slot" against "publish the slot, then look at sleepers":
//! at least one side sees the other's write, so either the consumer sees
//! the entry, or the producer sees the sleeper. In the second case the
//! producer's taking the lock waits until that consumer is inside
//! `Condvar::wait` (it holds the lock from its increment until then), so the
//! notification cannot fall before the wait. `close` sets the closed bit
//! before it takes the lock and notifies all, so a consumer either sees the
//! bit in its re-check or is already waiting.
//!
//! Only the first unpublished slot can hold consumers back (a batch stops
//! at a gap), and its producer runs the wake check when it publishes it.
//!
//! Locks and condvar: std's are futex-based on Linux, so a parked consumer
//! costs nothing, and loom can model them (`loom_models` below, run by `.ci/loom`).

use std::fmt;
use std::mem::MaybeUninit;
use std::sync::PoisonError;

use self::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use self::sync::{Condvar, Mutex, UnsafeCell};

/// std, or loom in this crate's tests built with `--cfg stoat_loom`
/// (`.ci/loom`): the same names either way, so the models check this code.
mod sync {
    #[cfg(all(test, stoat_loom))]
    pub(super) use loom::cell::UnsafeCell;
    #[cfg(all(test, stoat_loom))]
    pub(super) use loom::sync::{atomic, Condvar, Mutex};

    #[cfg(not(all(test, stoat_loom)))]
    pub(super) use std::sync::{atomic, Condvar, Mutex};

    /// `std::cell::UnsafeCell` with loom's closure API.
    #[cfg(not(all(test, stoat_loom)))]
    #[derive(Debug)]
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(all(test, stoat_loom)))]
    impl<T> UnsafeCell<T> {
        pub(super) fn new(value: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }

        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

/// Bit 63 of `tail`: the ring is closed.
const CLOSED: u64 = 1 << 63;

/// How many times an idle consumer looks again before it parks. Loom
/// explores every interleaving, so there a single look is enough.
const SPINS: u32 = if cfg!(all(test, stoat_loom)) { 1 } else { 64 };

/// Keeps the cursors on their own cache lines (two lines: the adjacent-line
/// prefetcher pairs them).
#[repr(align(128))]
struct Padded<T>(T);

struct Slot<T> {
    /// The slot's state for the positions that map to it (module doc).
    seq: AtomicU64,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded MPMC ring with batch consumption and parking consumers
/// (module doc).
pub struct Ring<T> {
    /// Next position to consume.
    head: Padded<AtomicU64>,
    /// Next position to claim for a push; bit 63 is [`CLOSED`].
    tail: Padded<AtomicU64>,
    /// Consumers registered as (about to be) waiting on `cv`.
    sleepers: AtomicUsize,
    /// Held by a parking consumer from its registration until it waits; a
    /// waker takes it so that its notify cannot come before that wait.
    park: Mutex<()>,
    cv: Condvar,
    mask: u64,
    slots: Box<[Slot<T>]>,
    /// The ring owns `T`s (for drop check).
    _owns: std::marker::PhantomData<T>,
}

#[allow(unsafe_code)]
// SAFETY: the ring moves `T`s between threads (pushed on one, popped on
// another), so `T: Send` is needed and enough. Each slot's value is
// accessed by exactly one thread at a time: the producer that claimed its
// position (before publishing) or the consumer that claimed it (after
// publication, until freeing); the `seq` Release/Acquire pairs order these
// accesses. No `&T` is ever handed out, so `T: Sync` is not needed.
unsafe impl<T: Send> Send for Ring<T> {}
#[allow(unsafe_code)]
// SAFETY: as for `Send`: through `&Ring` a thread can only move whole
// values in or out, under the claim protocol above.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Ring<T> {
    /// A ring of at least `capacity` entries (rounded up to a power of two,
    /// at least 2). All slots are allocated here.
    ///
    /// # Panics
    /// If the rounded capacity overflows `usize`.
    pub fn with_capacity(capacity: usize) -> Ring<T> {
        let cap = capacity
            .max(2)
            .checked_next_power_of_two()
            .expect("ring capacity overflows usize");
        let slots = (0..cap as u64)
            .map(|p| Slot {
                seq: AtomicU64::new(p),
                value: UnsafeCell::new(MaybeUninit::uninit()),
            })
            .collect();
        Ring {
            head: Padded(AtomicU64::new(0)),
            tail: Padded(AtomicU64::new(0)),
            sleepers: AtomicUsize::new(0),
            park: Mutex::new(()),
            cv: Condvar::new(),
            mask: cap as u64 - 1,
            slots,
            _owns: std::marker::PhantomData,
        }
    }

    /// How many entries the ring holds at most.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// How many entries are claimed by producers and not yet by consumers:
    /// a snapshot, stale as soon as it is returned.
    pub fn len(&self) -> usize {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Relaxed) & !CLOSED;
        tail.saturating_sub(head) as usize
    }

    /// Whether [`Ring::len`] is 0 (a snapshot).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether [`Ring::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.tail.0.load(Ordering::Relaxed) & CLOSED != 0
    }

    fn slot(&self, pos: u64) -> &Slot<T> {
        // The mask keeps the index below `slots.len()`.
        &self.slots[(pos & self.mask) as usize]
    }

    /// Appends `value`, or hands it back when the ring is full or closed.
    /// Never blocks and never allocates. "Full" may also be seen for a
    /// moment while a consumer moves the oldest entries out.
    pub fn try_push(&self, value: T) -> Result<(), T> {
        let mut pos = self.tail.0.load(Ordering::Relaxed);
        loop {
            if pos & CLOSED != 0 {
                return Err(value);
            }
            let slot = self.slot(pos);
            // Acquire: pairs with the consumer's Release that freed the slot,
            // so its move out happens before our write below.
            let seq = slot.seq.load(Ordering::Acquire);
            let diff = seq.wrapping_sub(pos) as i64;
            if diff == 0 {
                match self.tail.0.compare_exchange_weak(
                    pos,
                    pos + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        slot.value.with_mut(|v| {
                            #[allow(unsafe_code)]
                            // SAFETY: our CAS claimed position `pos` and its
                            // slot is free (`seq == pos`): no other thread
                            // touches the value until we publish below.
                            unsafe {
                                (*v).write(value);
                            }
                        });
                        // Release: the write above happens before a
                        // consumer's Acquire load that sees `pos + 1`.
                        slot.seq.store(pos + 1, Ordering::Release);
                        self.wake_after_publish();
                        return Ok(());
                    }
                    Err(now) => pos = now,
                }
            } else if diff < 0 {
                // The slot still holds (or is handing out) the entry of
                // position `pos - capacity`: the ring is full.
                return Err(value);
            } else {
                // Another producer claimed `pos` meanwhile.
                pos = self.tail.0.load(Ordering::Relaxed);
            }
        }
    }

    /// The producer's half of the parking protocol (module doc).
    fn wake_after_publish(&self) {
        // Orders our publication before the load of `sleepers`, against the
        // consumer's increment of `sleepers` before its re-check.
        fence(Ordering::SeqCst);
        if self.sleepers.load(Ordering::Relaxed) > 0 {
            self.wake_one();
        }
    }

    fn wake_one(&self) {
        // A registered sleeper holds the lock until it waits: taking it here
        // means that sleeper is now waiting (or gone), so the notify below
        // cannot be lost.
        drop(self.park.lock().unwrap_or_else(PoisonError::into_inner));
        self.cv.notify_one();
    }

    /// Moves every published entry available, up to `max`, to the end of
    /// `out`, in position order, claimed with one CAS (retried only if
    /// another consumer claimed first). Returns how many were moved; 0
    /// when the ring is empty or its oldest entry is not yet published.
    /// Never blocks. `out` is reserved before the claim, so nothing can
    /// panic between the claim and the slots' release.
    pub fn pop_batch(&self, max: usize, out: &mut Vec<T>) -> usize {
        let max = max.min(self.slots.len()) as u64;
        if max == 0 {
            return 0;
        }
        out.reserve(max as usize);
        let mut head = self.head.0.load(Ordering::Relaxed);
        loop {
            // Count the published run from `head`.
            let mut n = 0;
            while n < max {
                let pos = head + n;
                // Acquire: pairs with the producer's Release publication.
                let seq = self.slot(pos).seq.load(Ordering::Acquire);
                if seq != pos + 1 {
                    break;
                }
                n += 1;
            }
            if n == 0 {
                let seq = self.slot(head).seq.load(Ordering::Acquire);
                let diff = seq.wrapping_sub(head + 1) as i64;
                if diff < 0 {
                    // Empty, or the oldest position is claimed but not yet
                    // published.
                    return 0;
                }
                // `head` is stale: another consumer took it.
                head = self.head.0.load(Ordering::Relaxed);
                continue;
            }
            match self
                .head
                .0
                .compare_exchange(head, head + n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    for pos in head..head + n {
                        let slot = self.slot(pos);
                        let value = slot.value.with_mut(|v| {
                            #[allow(unsafe_code)]
                            // SAFETY: `head` was still `head` at our CAS, so
                            // no other consumer claimed `pos`, and we saw
                            // `seq == pos + 1` (Acquire): the producer's
                            // write is complete and visible. Producers do
                            // not touch the slot until we free it below, and
                            // the value is read exactly once.
                            unsafe {
                                (*v).assume_init_read()
                            }
                        });
                        // Cannot reallocate (reserved above), so cannot panic.
                        out.push(value);
                        // Release: our read happens before the next
                        // producer's write into this slot.
                        slot.seq
                            .store(pos + self.slots.len() as u64, Ordering::Release);
                    }
                    return n as usize;
                }
                Err(now) => head = now,
            }
        }
    }

    /// Whether the ring is closed and every claimed position was consumed.
    fn closed_and_drained(&self) -> bool {
        let tail = self.tail.0.load(Ordering::Acquire);
        tail & CLOSED != 0 && self.head.0.load(Ordering::Acquire) == tail & !CLOSED
    }

    /// Like [`Ring::pop_batch`], but waits for entries: spins briefly, then
    /// parks until a producer publishes or the ring is closed. Returns 0
    /// only when the ring is closed and drained, so a worker loops
    /// `while ring.wait_batch(max, &mut batch) > 0`.
    ///
    /// # Panics
    /// If `max` is 0.
    pub fn wait_batch(&self, max: usize, out: &mut Vec<T>) -> usize {
        assert!(max > 0, "wait_batch needs room for an entry");
        loop {
            for _ in 0..SPINS {
                let n = self.pop_batch(max, out);
                if n > 0 {
                    self.pass_on(n, max);
                    return n;
                }
                if self.closed_and_drained() {
                    return 0;
                }
                std::hint::spin_loop();
            }

            let guard = self.park.lock().unwrap_or_else(PoisonError::into_inner);
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            // Orders the increment before the re-check's loads, against the
            // producer's publication before its load of `sleepers`.
            fence(Ordering::SeqCst);
            let n = self.pop_batch(max, out);
            if n > 0 || self.closed_and_drained() {
                self.sleepers.fetch_sub(1, Ordering::Relaxed);
                drop(guard);
                if n > 0 {
                    self.pass_on(n, max);
                }
                return n;
            }
            let guard = self.cv.wait(guard).unwrap_or_else(PoisonError::into_inner);
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
            drop(guard);
        }
    }

    /// A batch cut at `max` may leave published entries whose producers
    /// woke only us: hand them to another parked consumer.
    fn pass_on(&self, n: usize, max: usize) {
        if n == max.min(self.slots.len()) && self.sleepers.load(Ordering::Relaxed) > 0 {
            self.wake_one();
        }
    }

    /// Refuses further pushes and wakes every parked consumer. Entries
    /// already pushed are still delivered; once they are, `wait_batch`
    /// returns 0. Idempotent.
    pub fn close(&self) {
        self.tail.0.fetch_or(CLOSED, Ordering::SeqCst);
        // A consumer registers and re-checks under the lock: taking it after
        // setting the bit means every consumer either saw the bit or is
        // waiting now.
        drop(self.park.lock().unwrap_or_else(PoisonError::into_inner));
        self.cv.notify_all();
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // `&mut self`: no other thread uses the ring; the loads only keep
        // the code the same for loom.
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Relaxed) & !CLOSED;
        for pos in head..tail {
            let slot = self.slot(pos);
            // Every claimed position was published (nothing can panic between
            // a producer's claim and its publication); check anyway.
            if slot.seq.load(Ordering::Relaxed) == pos + 1 {
                slot.value.with_mut(|v| {
                    #[allow(unsafe_code)]
                    // SAFETY: `&mut self`: no other thread uses the ring.
                    // Position `pos` is published and unconsumed, so the slot
                    // holds an initialized value, dropped exactly once here.
                    unsafe {
                        (*v).assume_init_drop()
                    }
                });
            }
        }
    }
}

impl<T> fmt::Debug for Ring<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(all(test, not(stoat_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::{Duration, Instant};

    #[test]
    fn capacity_is_a_power_of_two_at_least_two() {
        assert_eq!(Ring::<u8>::with_capacity(0).capacity(), 2);
        assert_eq!(Ring::<u8>::with_capacity(1).capacity(), 2);
        assert_eq!(Ring::<u8>::with_capacity(3).capacity(), 4);
        assert_eq!(Ring::<u8>::with_capacity(4).capacity(), 4);
        assert_eq!(Ring::<u8>::with_capacity(1000).capacity(), 1024);
    }

    #[test]
    fn full_hands_the_value_back_and_a_pop_frees_room() {
        let ring = Ring::with_capacity(4);
        for i in 0..4 {
            ring.try_push(i).unwrap();
        }
        assert_eq!(ring.try_push(9), Err(9));
        assert_eq!(ring.len(), 4);
        let mut out = Vec::new();
        assert_eq!(ring.pop_batch(1, &mut out), 1);
        assert_eq!(out, [0]);
        ring.try_push(4).unwrap();
        assert_eq!(ring.try_push(9), Err(9));
        assert_eq!(ring.pop_batch(100, &mut out), 4);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        assert!(ring.is_empty());
        assert_eq!(ring.pop_batch(100, &mut out), 0);
    }

    #[test]
    fn batches_respect_max_and_wrap_around_many_laps() {
        let ring = Ring::with_capacity(8);
        let mut out = Vec::new();
        let mut next = 0u32;
        let mut expect = 0u32;
        for lap in 0..1000 {
            let k = lap % 8 + 1;
            for _ in 0..k {
                ring.try_push(next).unwrap();
                next += 1;
            }
            assert_eq!(ring.pop_batch(0, &mut out), 0);
            while !ring.is_empty() {
                out.clear();
                let n = ring.pop_batch(3, &mut out);
                assert!((1..=3).contains(&n));
                for v in &out {
                    assert_eq!(*v, expect);
                    expect += 1;
                }
            }
        }
        assert_eq!(expect, next);
    }

    #[test]
    fn close_refuses_pushes_but_delivers_what_was_pushed() {
        let ring = Ring::with_capacity(4);
        ring.try_push(1).unwrap();
        ring.try_push(2).unwrap();
        ring.close();
        ring.close();
        assert!(ring.is_closed());
        assert_eq!(ring.try_push(3), Err(3));
        let mut out = Vec::new();
        assert_eq!(ring.wait_batch(10, &mut out), 2);
        assert_eq!(out, [1, 2]);
        assert_eq!(ring.wait_batch(10, &mut out), 0);
    }

    #[test]
    fn drop_drops_the_entries_left() {
        struct Counted(Arc<AtomicUsize>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let ring = Ring::with_capacity(4);
        // Wrap once so the live entries straddle the end of the slots.
        for _ in 0..3 {
            assert!(ring.try_push(Counted(drops.clone())).is_ok());
        }
        let mut out = Vec::new();
        ring.pop_batch(3, &mut out);
        drop(out);
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        for _ in 0..4 {
            assert!(ring.try_push(Counted(drops.clone())).is_ok());
        }
        ring.close();
        drop(ring);
        assert_eq!(drops.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn a_parked_consumer_is_woken_by_a_push_and_by_close() {
        let ring = Arc::new(Ring::with_capacity(4));
        let r = ring.clone();
        let (tx, rx) = mpsc::channel();
        let consumer = thread::spawn(move || {
            let mut got = Vec::new();
            while r.wait_batch(4, &mut got) > 0 {
                for v in got.drain(..) {
                    tx.send(v).unwrap();
                }
            }
        });
        // The consumer registers as a sleeper (under the park lock, just
        // before it waits) once it found nothing: the event to wait for.
        let parked = |ring: &Ring<i32>| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while ring.sleepers.load(Ordering::Relaxed) == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the consumer never parked"
                );
                thread::yield_now();
            }
        };
        parked(&ring);
        ring.try_push(7).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)),
            Ok(7),
            "woken by the push"
        );
        // It delivered 7, so it left `wait_batch`; parked again, then closed.
        parked(&ring);
        ring.close();
        within(Duration::from_secs(10), move || consumer.join().unwrap());
    }

    /// Runs `f` on a thread and fails if it does not finish in `limit`.
    fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let r = f();
            let _ = tx.send(());
            r
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("did not finish within {limit:?}"));
        handle.join().unwrap()
    }

    #[test]
    fn stress_many_producers_two_consumers() {
        const PRODUCERS: u64 = 4;
        const ITEMS: u64 = 100_000;
        let started = Instant::now();
        let (streams, refused) = within(Duration::from_secs(60), || {
            let ring = Arc::new(Ring::<u64>::with_capacity(256));
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let ring = ring.clone();
                    thread::spawn(move || {
                        let mut batch = Vec::with_capacity(64);
                        let mut seen = Vec::new();
                        let mut batches = 0u64;
                        while ring.wait_batch(64, &mut batch) > 0 {
                            batches += 1;
                            seen.append(&mut batch);
                        }
                        (seen, batches)
                    })
                })
                .collect();
            let go = Arc::new(AtomicBool::new(false));
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let ring = ring.clone();
                    let go = go.clone();
                    thread::spawn(move || {
                        while !go.load(Ordering::Acquire) {
                            std::hint::spin_loop();
                        }
                        let mut refused = 0u64;
                        for i in 0..ITEMS {
                            let mut v = p << 32 | i;
                            while let Err(back) = ring.try_push(v) {
                                v = back;
                                refused += 1;
                                thread::yield_now();
                            }
                        }
                        refused
                    })
                })
                .collect();
            go.store(true, Ordering::Release);
            let refused: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
            ring.close();
            let streams: Vec<_> = consumers.into_iter().map(|h| h.join().unwrap()).collect();
            (streams, refused)
        });
        let elapsed = started.elapsed();

        let mut count = vec![0u64; PRODUCERS as usize];
        for (seen, batches) in &streams {
            // Each consumer sees every producer's entries in its order.
            let mut last = vec![None::<u64>; PRODUCERS as usize];
            for v in seen {
                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                if let Some(prev) = last[p] {
                    assert!(i > prev, "producer {p}: {i} after {prev}");
                }
                last[p] = Some(i);
                count[p] += 1;
            }
            eprintln!(
                "consumer: {} entries in {} batches (mean {:.1})",
                seen.len(),
                batches,
                seen.len() as f64 / (*batches).max(1) as f64
            );
        }
        // Every entry exactly once: counts match and, with per-consumer order
        // strictly increasing, no entry can appear twice in one stream; check
        // across streams too.
        let mut all: Vec<u64> = streams
            .iter()
            .flat_map(|(s, _)| s.iter().copied())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, PRODUCERS * ITEMS);
        assert!(count.iter().all(|&c| c == ITEMS), "{count:?}");
        eprintln!(
            "stress: {} entries in {elapsed:?}, {refused} pushes refused (full)",
            PRODUCERS * ITEMS
        );
    }
}

#[cfg(all(test, stoat_loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Explores every interleaving (`None`), or those with at most `bound`
    /// preemptions (the larger models; unbounded they take hours).
    fn model(bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = bound;
        builder.check(f);
    }

    /// Pops until `n` entries are in `out` (yielding while none is ready).
    fn pop_n(ring: &Ring<u32>, n: usize, out: &mut Vec<u32>) {
        while out.len() < n {
            if ring.pop_batch(n, out) == 0 {
                thread::yield_now();
            }
        }
    }

    fn before(v: &[u32], a: u32, b: u32) -> bool {
        let pos = |x| v.iter().position(|&y| y == x).unwrap();
        pos(a) < pos(b)
    }

    #[test]
    fn two_producers_one_consumer() {
        model(Some(4), || {
            let ring = Arc::new(Ring::with_capacity(4));
            let r = ring.clone();
            let p1 = thread::spawn(move || {
                r.try_push(10).unwrap();
                r.try_push(11).unwrap();
            });
            let r = ring.clone();
            let p2 = thread::spawn(move || r.try_push(20).unwrap());
            let mut got = Vec::new();
            pop_n(&ring, 3, &mut got);
            p1.join().unwrap();
            p2.join().unwrap();
            assert!(before(&got, 10, 11), "{got:?}");
            got.sort_unstable();
            assert_eq!(got, [10, 11, 20]);
        });
    }

    #[test]
    fn one_producer_two_consumers() {
        model(Some(4), || {
            let ring = Arc::new(Ring::with_capacity(4));
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let r = ring.clone();
                    thread::spawn(move || {
                        let mut got = Vec::new();
                        r.pop_batch(4, &mut got);
                        got
                    })
                })
                .collect();
            ring.try_push(1).unwrap();
            ring.try_push(2).unwrap();
            let mut all = Vec::new();
            for c in consumers {
                let got = c.join().unwrap();
                // Each batch is a run of consecutive positions, in order.
                assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
                all.extend(got);
            }
            ring.pop_batch(4, &mut all);
            all.sort_unstable();
            assert_eq!(all, [1, 2]);
        });
    }

    #[test]
    fn full_ring_refuses_then_accepts_after_a_pop() {
        model(None, || {
            let ring = Arc::new(Ring::with_capacity(2));
            ring.try_push(1).unwrap();
            ring.try_push(2).unwrap();
            assert_eq!(ring.try_push(3), Err(3));
            let r = ring.clone();
            let consumer = thread::spawn(move || {
                let mut got = Vec::new();
                assert_eq!(r.pop_batch(1, &mut got), 1);
                got
            });
            let mut v = 3;
            while let Err(back) = ring.try_push(v) {
                v = back;
                thread::yield_now();
            }
            assert_eq!(consumer.join().unwrap(), [1]);
            let mut rest = Vec::new();
            assert_eq!(ring.pop_batch(4, &mut rest), 2);
            assert_eq!(rest, [2, 3]);
        });
    }

    /// A consumer parks on an empty ring; the push must wake it (a lost
    /// wakeup is a deadlock, which loom reports).
    #[test]
    fn park_unpark_no_lost_wakeup() {
        model(None, || {
            let ring = Arc::new(Ring::with_capacity(2));
            let r = ring.clone();
            let consumer = thread::spawn(move || {
                let mut got = Vec::new();
                assert_eq!(r.wait_batch(2, &mut got), 1);
                got
            });
            ring.try_push(7).unwrap();
            assert_eq!(consumer.join().unwrap(), [7]);
        });
    }

    /// Two consumers park, taking one entry each; one producer pushes two.
    /// Both must be woken: no close here, so a lost wakeup is a deadlock.
    /// Four threads: bounded to 2 preemptions to stay within seconds (3
    /// takes a minute).
    #[test]
    fn two_parked_consumers_each_woken() {
        model(Some(2), || {
            let ring = Arc::new(Ring::with_capacity(2));
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let r = ring.clone();
                    thread::spawn(move || {
                        let mut got = Vec::new();
                        assert_eq!(r.wait_batch(1, &mut got), 1);
                        got[0]
                    })
                })
                .collect();
            ring.try_push(1).unwrap();
            ring.try_push(2).unwrap();
            let mut all: Vec<u32> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
            all.sort_unstable();
            assert_eq!(all, [1, 2]);
        });
    }

    /// Close wakes a parked consumer; an entry pushed before close is still
    /// delivered, then `wait_batch` returns 0.
    #[test]
    fn close_wakes_a_parked_consumer() {
        model(None, || {
            let ring = Arc::new(Ring::with_capacity(2));
            let r = ring.clone();
            let consumer = thread::spawn(move || {
                let mut got = Vec::new();
                while r.wait_batch(2, &mut got) > 0 {}
                got
            });
            ring.try_push(5).unwrap();
            ring.close();
            assert_eq!(ring.try_push(6), Err(6));
            assert_eq!(consumer.join().unwrap(), [5]);
        });
    }
}
