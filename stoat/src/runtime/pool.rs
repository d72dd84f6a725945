//! The read-buffer pool: fixed-size buffers under one global memory limit,
//! with a small cache per network thread so that taking and giving back a
//! buffer for a request touches no lock.
//!
//! Contract: [`Pool::take`] returns `None` when the global limit is
//! reached; the caller then stops reading and retries when a buffer is
//! given back. Bodies too large for one buffer are moved to the heap; the
//! whole body's bytes are reserved first from a separate budget
//! ([`SpillBudget`], `body_memory_limit`). A body that cannot be admitted
//! waits, holding only its read buffer, which comes from the other budget:
//! admitted bodies finish (or hit the body timeout) and free theirs, and
//! config validation makes every admissible body fit the budget alone, so
//! the waiters always progress. A connection holds a buffer only while it has unconsumed
//! input or a request in progress: an idle keep-alive connection holds none.
//!
//! Buffers not needed stay allocated only for a while: at every timer sweep
//! (`trim`) a thread frees the buffers of its cache, and of the shared
//! list, that nobody took since the previous sweep (the low-water mark of
//! each list over the interval, as jemalloc's decay or Go's scavenger do),
//! so memory taken by a burst goes back once the burst is over, while a
//! steady load keeps the buffers it cycles through.
//!
//! Written by hand: it is product core (the memory bound), it is small, and
//! the pool crates we looked at (object-pool, lockfree-object-pool) have no
//! global byte limit or per-thread cache of the shape we need.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The budget for bodies larger than one buffer.
#[derive(Debug)]
pub struct SpillBudget {
    limit: usize,
    used: AtomicUsize,
    /// The most ever reserved at once.
    peak: AtomicUsize,
}

/// Bytes of the [`SpillBudget`] held by one body; given back on drop.
#[derive(Debug)]
pub struct SpillGrant {
    budget: Arc<SpillBudget>,
    bytes: usize,
}

impl SpillBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<SpillBudget> {
        Arc::new(SpillBudget {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// Reserves `bytes`, or `None` if the budget does not have them now.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Option<SpillGrant> {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used.checked_add(bytes)? > self.limit {
                return None;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(used + bytes, Ordering::Relaxed);
                    return Some(SpillGrant {
                        budget: self.clone(),
                        bytes,
                    });
                }
                Err(now) => used = now,
            }
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Whether any bytes are free (a waiter may try again).
    pub fn has_room(&self) -> bool {
        self.used() < self.limit
    }
}

impl Drop for SpillGrant {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The pool shared by all threads.
#[derive(Debug)]
pub struct Pool {
    buffer_size: usize,
    /// Most buffers that may exist at once.
    max_buffers: usize,
    /// Buffers that exist (in use, cached or free).
    allocated: AtomicUsize,
    /// Free buffers not in any thread's cache.
    free: Mutex<Free>,
    /// Buffers in the threads' caches, as each thread last published at a
    /// trim (its sweep): a gauge for the metrics, never read to decide.
    thread_cached: AtomicUsize,
}

/// The shared free list and its low-water mark since the last trim.
#[derive(Debug, Default)]
struct Free {
    list: Vec<Box<[u8]>>,
    low: usize,
}

/// A thread's cache in front of the shared pool.
#[derive(Debug)]
pub struct LocalPool {
    cache: Vec<Box<[u8]>>,
    /// What this thread last added to `Pool::thread_cached`.
    published: usize,
    /// The fewest buffers the cache held since the last trim.
    low: usize,
}

/// Buffers a thread keeps for itself before giving back to the shared list.
const LOCAL_CACHE: usize = 32;

impl Pool {
    /// A pool of `buffer_size` buffers, at most `memory_limit` bytes of them.
    pub fn new(buffer_size: usize, memory_limit: usize) -> Pool {
        Pool {
            buffer_size,
            max_buffers: (memory_limit / buffer_size.max(1)).max(1),
            allocated: AtomicUsize::new(0),
            free: Mutex::new(Free::default()),
            thread_cached: AtomicUsize::new(0),
        }
    }

    /// Buffers that exist now.
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Takes a buffer: from the thread cache, the shared free list, or a new
    /// allocation under the limit. `None`: the limit is reached.
    #[inline]
    pub fn take(&self, local: &mut LocalPool) -> Option<Box<[u8]>> {
        if let Some(b) = local.cache.pop() {
            local.low = local.low.min(local.cache.len());
            return Some(b);
        }
        self.take_shared(local)
    }

    /// [`Pool::take`] with the thread cache empty (out of line: the
    /// cache's pop is the common case, inlined where buffers are taken).
    #[inline(never)]
    fn take_shared(&self, local: &mut LocalPool) -> Option<Box<[u8]>> {
        {
            let mut guard = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let free = &mut *guard;
            if let Some(b) = free.list.pop() {
                // Refill part of the cache while the lock is held.
                let n = free.list.len().min(LOCAL_CACHE / 2);
                let at = free.list.len() - n;
                local.cache.extend(free.list.drain(at..));
                free.low = free.low.min(free.list.len());
                return Some(b);
            }
        }
        let mut n = self.allocated.load(Ordering::Relaxed);
        loop {
            if n >= self.max_buffers {
                return None;
            }
            match self.allocated.compare_exchange_weak(
                n,
                n + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => n = now,
            }
        }
        Some(vec![0u8; self.buffer_size].into_boxed_slice())
    }

    /// Gives a buffer back.
    #[inline]
    pub fn give(&self, local: &mut LocalPool, buf: Box<[u8]>) {
        debug_assert_eq!(buf.len(), self.buffer_size);
        if local.cache.len() < LOCAL_CACHE {
            local.cache.push(buf);
            return;
        }
        self.give_shared(local, buf);
    }

    /// [`Pool::give`] with the thread cache full (out of line).
    #[inline(never)]
    fn give_shared(&self, local: &mut LocalPool, buf: Box<[u8]>) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.list.push(buf);
        // Half the cache goes too, so that other threads can have it.
        let keep = LOCAL_CACHE / 2;
        free.list.extend(local.cache.drain(keep..));
        local.low = local.low.min(local.cache.len());
    }

    /// Returns a thread's cached buffers to the shared list (thread exit).
    pub fn release(&self, local: &mut LocalPool) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.list.append(&mut local.cache);
        local.low = 0;
        self.publish(local);
    }

    /// Buffers that exist but no connection holds: the shared free list
    /// now, and the threads' caches as of their last sweep (so a buffer
    /// given back since then still counts as in use, for at most a sweep).
    pub fn cached(&self) -> usize {
        let free = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .list
            .len();
        (free + self.thread_cached.load(Ordering::Relaxed)).min(self.allocated())
    }

    /// Brings `Pool::thread_cached` up to this thread's cache.
    fn publish(&self, local: &mut LocalPool) {
        let now = local.cache.len();
        if now > local.published {
            self.thread_cached
                .fetch_add(now - local.published, Ordering::Relaxed);
        } else if now < local.published {
            self.thread_cached
                .fetch_sub(local.published - now, Ordering::Relaxed);
        }
        local.published = now;
    }

    /// Frees the buffers that stayed unused since the last trim, in this
    /// thread's cache and in the shared list (see the module doc). Called
    /// at each timer sweep; returns how many were freed. Freeing many at
    /// once is followed by [`crate::sys::release_free_heap`] (the caller's),
    /// so that the memory leaves the process, not just the pool.
    pub fn trim(&self, local: &mut LocalPool) -> usize {
        let mine = local.low.min(local.cache.len());
        local.cache.truncate(local.cache.len() - mine);
        local.low = local.cache.len();
        let shared = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            let n = free.low.min(free.list.len());
            let keep = free.list.len() - n;
            free.list.truncate(keep);
            free.low = keep;
            n
        };
        self.allocated.fetch_sub(mine + shared, Ordering::Relaxed);
        self.publish(local);
        mine + shared
    }

    /// Whether a `take` could succeed now without waiting.
    pub fn has_free(&self, local: &LocalPool) -> bool {
        !local.cache.is_empty()
            || self.allocated.load(Ordering::Relaxed) < self.max_buffers
            || !self
                .free
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .list
                .is_empty()
    }
}

impl LocalPool {
    /// An empty cache.
    pub fn new() -> LocalPool {
        LocalPool {
            cache: Vec::with_capacity(LOCAL_CACHE),
            published: 0,
            low: 0,
        }
    }
}

impl Default for LocalPool {
    fn default() -> Self {
        LocalPool::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_enforced_and_freed_buffers_are_reused() {
        let pool = Pool::new(1024, 4 * 1024);
        let mut local = LocalPool::new();
        let bufs: Vec<_> = (0..4).map(|_| pool.take(&mut local).unwrap()).collect();
        assert!(pool.take(&mut local).is_none());
        assert!(!pool.has_free(&local));
        for b in bufs {
            pool.give(&mut local, b);
        }
        assert!(pool.has_free(&local));
        for _ in 0..4 {
            assert!(pool.take(&mut local).is_some());
        }
        assert_eq!(pool.allocated(), 4);
    }

    #[test]
    fn cached_counts_free_and_published_thread_caches() {
        let pool = Pool::new(64, 64 * 100);
        let mut local = LocalPool::new();
        let bufs: Vec<_> = (0..5).map(|_| pool.take(&mut local).unwrap()).collect();
        assert_eq!((pool.allocated(), pool.cached()), (5, 0));
        let mut bufs = bufs.into_iter();
        for b in bufs.by_ref().take(3) {
            pool.give(&mut local, b);
        }
        // Given back to the thread's cache: counted once the thread trims.
        assert_eq!(pool.cached(), 0);
        pool.trim(&mut local);
        assert_eq!((pool.allocated(), pool.cached()), (5, 3));
        let held: Vec<_> = bufs.collect();
        pool.release(&mut local);
        assert_eq!((pool.allocated(), pool.cached()), (5, 3));
        drop(held);
    }

    #[test]
    fn trim_frees_what_stayed_unused() {
        let pool = Pool::new(64, 64 * 100);
        let mut local = LocalPool::new();
        let bufs: Vec<_> = (0..40).map(|_| pool.take(&mut local).unwrap()).collect();
        for b in bufs {
            pool.give(&mut local, b);
        }
        assert_eq!(pool.allocated(), 40);
        // The first trim only starts the interval for what was given back.
        pool.trim(&mut local);
        // A steady user of one buffer keeps it (and what it cycles through).
        let b = pool.take(&mut local).unwrap();
        pool.give(&mut local, b);
        let freed = pool.trim(&mut local);
        assert!(freed > 0);
        assert_eq!(pool.allocated(), 40 - freed);
        assert!(pool.allocated() >= 1);
        // Nothing used for a whole interval: all of it goes.
        pool.trim(&mut local);
        assert_eq!(pool.allocated(), 0);
        assert!(pool.take(&mut local).is_some(), "can allocate again");
    }

    #[test]
    fn buffers_move_between_threads() {
        let pool = Pool::new(64, 64 * 100);
        let mut a = LocalPool::new();
        let mut b = LocalPool::new();
        let bufs: Vec<_> = (0..100).map(|_| pool.take(&mut a).unwrap()).collect();
        for buf in bufs {
            pool.give(&mut a, buf);
        }
        // Thread a's cache holds some; the rest are in the shared list.
        pool.release(&mut a);
        for _ in 0..100 {
            assert!(pool.take(&mut b).is_some());
        }
        assert!(pool.take(&mut b).is_none());
    }
}
