//! The request arena: scratch memory for a handler, handed out lazily and
//! reset after each response.
//!
//! Contract: a network thread has one [`ArenaSlot`]. A request's handler
//! asks for the arena (`Request::arena`); only then is a [`Bump`] taken
//! from the slot's small free list (or made), so requests that never touch
//! it cost nothing. References into it cannot outlive the handler call
//! (they borrow the request), so when the handler has answered (or
//! suspended, or a streaming-body callback has returned) the runtime calls
//! [`ArenaSlot::recycle`]: the arena is reset and goes back to the free
//! list, at most [`FREE_MAX`] of them, each kept only if its retained chunk
//! is at most [`KEEP_MAX`] bytes (larger ones are freed). So no connection,
//! idle or not, holds an arena between requests, and a thread keeps at most
//! `FREE_MAX * KEEP_MAX` bytes of arenas. Requests that leave the network
//! thread (pipeline jobs) have a slot of their own, empty until used and
//! freed with the job; a `Responder` or `EventStream` is `'static` and
//! cannot hold arena references.
//!
//! The allocator itself is `bumpalo` (widely used, made for this); what is
//! written here is only the lending and the bounds.

use std::cell::{OnceCell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bumpalo::Bump;

/// Most reset arenas a slot keeps for reuse. One request uses the arena at
/// a time on a thread; the second covers a request answered while another
/// streams.
pub const FREE_MAX: usize = 2;

/// An arena whose retained chunk is larger than this after a reset is freed
/// rather than kept: one large request does not pin its memory.
pub const KEEP_MAX: usize = 64 * 1024;

/// Counters over every slot of a server (read by `Stats`).
#[derive(Debug, Default)]
pub struct ArenaStats {
    /// Arenas lent to a request now.
    pub in_use: AtomicUsize,
    /// Arenas kept, reset, in free lists.
    pub cached: AtomicUsize,
    /// Their retained bytes.
    pub cached_bytes: AtomicUsize,
    /// Arenas freed at a reset for being larger than [`KEEP_MAX`].
    pub dropped: AtomicUsize,
}

/// One thread's arena: the one lent to the current request (if it asked)
/// and a bounded free list.
pub struct ArenaSlot {
    current: OnceCell<Bump>,
    free: RefCell<Vec<Bump>>,
    stats: Option<Arc<ArenaStats>>,
}

impl ArenaSlot {
    /// A slot that counts nothing (a pipeline job's, tests'). Allocates
    /// nothing until the arena is used.
    pub const fn new() -> ArenaSlot {
        ArenaSlot {
            current: OnceCell::new(),
            free: RefCell::new(Vec::new()),
            stats: None,
        }
    }

    /// A slot counting into `stats`.
    pub fn with_stats(stats: Arc<ArenaStats>) -> ArenaSlot {
        ArenaSlot {
            current: OnceCell::new(),
            free: RefCell::new(Vec::new()),
            stats: Some(stats),
        }
    }

    fn count(&self, f: impl FnOnce(&ArenaStats)) {
        if let Some(s) = &self.stats {
            f(s);
        }
    }

    /// The arena of the current request, taken from the free list (or made,
    /// empty: bumpalo allocates its first chunk at the first allocation)
    /// on first use.
    pub fn get(&self) -> &Bump {
        self.current.get_or_init(|| {
            self.count(|s| {
                s.in_use.fetch_add(1, Ordering::Relaxed);
            });
            match self.free.borrow_mut().pop() {
                Some(bump) => {
                    self.count(|s| {
                        s.cached.fetch_sub(1, Ordering::Relaxed);
                        s.cached_bytes
                            .fetch_sub(bump.allocated_bytes(), Ordering::Relaxed);
                    });
                    bump
                }
                None => Bump::new(),
            }
        })
    }

    /// Whether the current request has taken the arena.
    pub fn is_lent(&self) -> bool {
        self.current.get().is_some()
    }

    /// Ends the current request's use: resets its arena and keeps it (or
    /// frees it, see the module doc). Cheap when it was never taken.
    #[inline]
    pub fn recycle(&mut self) {
        if let Some(bump) = self.current.take() {
            self.put_back(bump);
        }
    }

    fn put_back(&mut self, mut bump: Bump) {
        bump.reset();
        let bytes = bump.allocated_bytes();
        let keep = bytes <= KEEP_MAX && self.free.get_mut().len() < FREE_MAX;
        self.count(|s| {
            s.in_use.fetch_sub(1, Ordering::Relaxed);
            if keep {
                s.cached.fetch_add(1, Ordering::Relaxed);
                s.cached_bytes.fetch_add(bytes, Ordering::Relaxed);
            } else {
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
        if keep {
            self.free.get_mut().push(bump);
        }
    }
}

impl Default for ArenaSlot {
    fn default() -> Self {
        ArenaSlot::new()
    }
}

impl Drop for ArenaSlot {
    fn drop(&mut self) {
        self.recycle();
        let free = std::mem::take(self.free.get_mut());
        let bytes: usize = free.iter().map(Bump::allocated_bytes).sum();
        self.count(|s| {
            s.cached.fetch_sub(free.len(), Ordering::Relaxed);
            s.cached_bytes.fetch_sub(bytes, Ordering::Relaxed);
        });
    }
}

impl fmt::Debug for ArenaSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArenaSlot")
            .field("lent", &self.is_lent())
            .field("free", &self.free.borrow().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_lazily_reset_and_bounded() {
        let stats = Arc::new(ArenaStats::default());
        let mut slot = ArenaSlot::with_stats(stats.clone());
        slot.recycle();
        assert_eq!(stats.in_use.load(Ordering::Relaxed), 0);
        assert_eq!(stats.cached.load(Ordering::Relaxed), 0, "never taken");
        for _ in 0..100 {
            let a = slot.get();
            assert_eq!(stats.in_use.load(Ordering::Relaxed), 1);
            let before = a.allocated_bytes();
            let s = a.alloc_slice_fill_copy(1000, 7u8);
            assert_eq!(s.len(), 1000);
            assert!(a.allocated_bytes() <= before.max(1000) * 4 + 4096);
            slot.recycle();
            assert_eq!(stats.in_use.load(Ordering::Relaxed), 0);
            assert_eq!(stats.cached.load(Ordering::Relaxed), 1);
        }
        // An oversized arena is freed at its reset.
        slot.get().alloc_slice_fill_copy(KEEP_MAX * 2, 1u8);
        slot.recycle();
        assert_eq!(stats.cached.load(Ordering::Relaxed), 0);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.cached_bytes.load(Ordering::Relaxed), 0);
        drop(slot);
        assert_eq!(stats.cached.load(Ordering::Relaxed), 0);
    }
}
