//! [`Lock`]: a mutex on a futex, without poisoning: the `shared` model's
//! slot table takes one per event, where std's `Mutex` spent more on its
//! poison flag (a panic count read at lock and again at unlock, about a
//! dozen instructions) than on the lock itself; every caller of the slot
//! table ignored the poison anyway (a connection is plain data: a panic
//! mid-drive leaves nothing a later drive cannot handle).
//!
//! Contract: the classic three-state futex mutex (0 free, 1 held, 2 held
//! with sleepers; Drepper, "Futexes Are Tricky", mutex 2, as std's own
//! Linux mutex): `lock` takes a free lock with one compare-exchange;
//! when held, it spins a little and then sleeps in `futex(FUTEX_WAIT)`
//! after marking the lock contended; `unlock` is one swap, and a
//! `futex(FUTEX_WAKE)` only when the lock was marked contended.
//! `try_lock` never waits. A guard unlocks when dropped, unwinding
//! included.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::futex;

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;

/// Spins while the holder may be about to let go, before sleeping.
const SPINS: u32 = 100;

/// See the module doc.
#[derive(Default)]
pub struct Lock<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: as std's `Mutex<T>`: the value is reached only through a
// `LockGuard`, and the state lets one guard exist at a time, so moving the
// lock or sharing it between threads moves or shares only a `T: Send`.
#[allow(unsafe_code)]
unsafe impl<T: Send> Send for Lock<T> {}
// SAFETY: see `Send` above.
#[allow(unsafe_code)]
unsafe impl<T: Send> Sync for Lock<T> {}

/// Holds the lock; the value is reached through it.
pub struct LockGuard<'a, T> {
    lock: &'a Lock<T>,
}

impl<T> Lock<T> {
    /// An unlocked lock holding `value`.
    pub const fn new(value: T) -> Lock<T> {
        Lock {
            state: AtomicU32::new(FREE),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock if it is free now.
    #[inline]
    pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        self.state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| LockGuard { lock: self })
    }

    /// Takes the lock, waiting for its holder if there is one.
    #[inline]
    pub fn lock(&self) -> LockGuard<'_, T> {
        if self
            .state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        LockGuard { lock: self }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        for _ in 0..SPINS {
            match self.state.load(Ordering::Relaxed) {
                FREE => {
                    if self
                        .state
                        .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return;
                    }
                }
                // Sleepers already: spinning would not help.
                CONTENDED => break,
                _ => std::hint::spin_loop(),
            }
        }
        // Marked contended, so the holder's unlock wakes a sleeper; taken
        // (held as contended, which costs at most one needless wake) when
        // the swap finds it free.
        while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
            // Returns at once if the state changed meanwhile (EAGAIN), or
            // on a wake or a signal (EINTR): either way, try again.
            let _ = futex::wait(&self.state, futex::Flags::PRIVATE, CONTENDED, None);
        }
    }

    #[inline]
    fn unlock(&self) {
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            self.wake();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake(&self) {
        let _ = futex::wake(&self.state, futex::Flags::PRIVATE, 1);
    }
}

impl<T> Deref for LockGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock: no other reference to the
        // value exists while it lives.
        #[allow(unsafe_code)]
        unsafe {
            &*self.lock.value.get()
        }
    }
}

impl<T> DerefMut for LockGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only
        // reference made through the guard.
        #[allow(unsafe_code)]
        unsafe {
            &mut *self.lock.value.get()
        }
    }
}

impl<T> Drop for LockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn try_lock_fails_while_held_and_succeeds_after() {
        let l = Lock::new(5u32);
        let mut g = l.lock();
        *g += 1;
        assert!(l.try_lock().is_none());
        drop(g);
        assert_eq!(*l.try_lock().expect("free again"), 6);
    }

    /// Threads that increment under the lock, most of them waiting for it
    /// (sleeping in the futex): no increment is lost, and every waiter
    /// gets the lock in the end (a lost wake would hang the join).
    #[test]
    fn contended_increments_are_not_lost() {
        const THREADS: usize = 4;
        const EACH: u64 = 20_000;
        let l = Arc::new(Lock::new(0u64));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let mut g = l.lock();
                        let v = *g;
                        if i % 64 == 0 {
                            // Held across a yield now and then, so that
                            // others find it held and sleep.
                            std::thread::yield_now();
                        }
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*l.lock(), THREADS as u64 * EACH);
    }

    #[test]
    fn a_panic_while_held_unlocks() {
        let l = Arc::new(Lock::new(1u32));
        let l2 = l.clone();
        let r = std::thread::spawn(move || {
            let _g = l2.lock();
            panic!("mid-drive");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*l.try_lock().expect("unlocked by the unwind"), 1);
    }
}
