//! The completion path back to a network thread: an inbox any thread can
//! post to, drained by its owner, with a wakeup that cannot be lost.
//!
//! Contract:
//! - Any thread calls [`Mailbox::post`]; it never blocks for long (a short
//!   mutex section around a `Vec::push`) and wakes the owner through a
//!   [`Wake`] (in production the owner's [`EventFd`], which its epoll
//!   watches).
//! - One eventfd write per burst: `notified` stays set from the first post
//!   after a drain until the owner's next drain, so many posts between two
//!   drains cost one write.
//! - The owner, whenever the wake fires, first consumes the wake signal
//!   (`EventFd::drain`), then calls [`Mailbox::drain`]. Every consumption of
//!   the signal must be followed by a `Mailbox::drain`; draining the mailbox
//!   at other times as well is harmless (at worst one spurious wakeup).
//! - Bounded by what posts it, not by itself: each item answers one request
//!   already admitted (to a bounded ring, or the connection table), so the
//!   mailbox never holds more items than requests in flight. The bound is
//!   given at construction and checked with `debug_assert!`.
//!
//! # Why the owner cannot sleep with an item posted and no signal pending
//!
//! The owner's loop is: wait in epoll until the wake is pending; consume the
//! wake signal (1); clear `notified` (2, the "arm"); take every item (3);
//! handle them; wait again. A post is: push its item (a), then set
//! `notified` (b, a swap) and, if it was clear, write the wake signal (c).
//!
//! Take a post whose item the take (3) missed: its push (a) came after (3)
//! under the queue's lock, so its swap (b) comes after the owner's arm (2)
//! (which precedes (3)) in `notified`'s modification order. Either (b)
//! found `notified` clear and (c) signals after (1): the signal is pending
//! when the owner next waits. Or (b) found it set by another post's swap
//! that came after (2), and that post found it clear (the arm's clear value
//! is what the first swap after it reads), so that post signals after its
//! swap, which is after (2), hence after (1): again a signal is pending.
//! The next round's take then finds the item (its arm comes after (b)).
//!
//! The order (1) before (2) is the whole point. Arming first is wrong: a
//! post between the arm and the consumption finds the flag clear and
//! signals, the consumption swallows that signal (the take then gets that
//! post's item), and a post after the take finds the flag still set, so it
//! does not signal: its item waits with nothing pending. The loom model
//! `arming_before_consuming_loses_a_wakeup` finds exactly that.
//!
//! The queue is a `Mutex<Vec<T>>`: posts are rare next to requests (one per
//! request that left its network thread), the critical sections are a push
//! or an O(1) swap of the whole batch with the owner's (empty) vector, and
//! the owner's vector keeps its capacity from round to round.

use std::fmt;
use std::sync::PoisonError;

use self::sync::atomic::{AtomicBool, Ordering};
use self::sync::Mutex;
use crate::sys::eventfd::EventFd;

/// std, or loom in this crate's tests built with `--cfg stoat_loom`
/// (`.ci/loom`): the same names either way, so the models check this code.
mod sync {
    #[cfg(all(test, stoat_loom))]
    pub(super) use loom::sync::{atomic, Mutex};
    #[cfg(not(all(test, stoat_loom)))]
    pub(super) use std::sync::{atomic, Mutex};
}

/// How a [`Mailbox`] wakes its owner. `wake` may be called from any thread
/// at any time, must not block for long, and must leave a signal pending
/// that the owner's sleep sees however the two race (a level, not an edge:
/// an eventfd's counter).
pub trait Wake {
    /// Makes the owner's next (or current) sleep return.
    fn wake(&self);
}

impl Wake for EventFd {
    fn wake(&self) {
        // A write to an open eventfd can only fail with EAGAIN (counter at
        // its maximum: a wakeup is pending), which `notify` treats as
        // success. Anything else is a broken invariant, and a lost wakeup
        // would hang a request: fail loudly.
        if let Err(e) = self.notify() {
            panic!("eventfd write failed: {e}");
        }
    }
}

/// An MPSC inbox with a lost-wakeup-free wake of its owner (module doc).
pub struct Mailbox<T, W: Wake = EventFd> {
    items: Mutex<Vec<T>>,
    /// Set by the first post after the owner's last arm; while set, a wake
    /// signal is pending or about to be written.
    notified: AtomicBool,
    waker: W,
    bound: usize,
}

impl<T, W: Wake> Mailbox<T, W> {
    /// An empty mailbox that wakes its owner through `waker`. `bound` is
    /// the most items it can hold at once (the owner's requests in flight);
    /// debug builds assert it.
    pub fn new(waker: W, bound: usize) -> Mailbox<T, W> {
        Mailbox {
            items: Mutex::new(Vec::new()),
            notified: AtomicBool::new(false),
            waker,
            bound,
        }
    }

    /// The wake mechanism, e.g. the eventfd the owner registers with its
    /// epoll and drains before [`Mailbox::drain`].
    pub fn waker(&self) -> &W {
        &self.waker
    }

    /// Queues `item` for the owner and wakes it unless a wake is already
    /// pending. Callable from any thread.
    pub fn post(&self, item: T) {
        {
            let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
            debug_assert!(
                items.len() < self.bound,
                "mailbox over its bound of {} items",
                self.bound
            );
            items.push(item);
        }
        // AcqRel: the push above happens before an owner's arm that reads
        // this value, and if we find the flag clear we signal after the arm
        // that cleared it (hence after the owner consumed the old signal).
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Owner: re-arms the wake and moves every posted item to the end of
    /// `out`, in posting order. Call it after consuming the wake signal
    /// (reading the eventfd), never before (module doc). O(1) under the
    /// lock when `out` is empty: the vectors are swapped.
    pub fn drain(&self, out: &mut Vec<T>) {
        // The arm. AcqRel: a post whose swap comes after this one signals
        // after it; a post whose swap we read has its item visible below.
        self.notified.swap(false, Ordering::AcqRel);
        let mut items = self.items.lock().unwrap_or_else(PoisonError::into_inner);
        if out.is_empty() {
            std::mem::swap(&mut *items, out);
        } else {
            out.append(&mut items);
        }
    }

    /// How many items wait (a snapshot).
    pub fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no item waits (a snapshot).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T, W: Wake> fmt::Debug for Mailbox<T, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("len", &self.len())
            .field("notified", &self.notified.load(Ordering::Relaxed))
            .field("bound", &self.bound)
            .finish()
    }
}

#[cfg(all(test, not(stoat_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::thread;

    use rustix::event::{poll, PollFd, PollFlags, Timespec};

    #[derive(Default)]
    struct CountingWake(AtomicUsize);

    impl Wake for CountingWake {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_burst_of_posts_costs_one_wake() {
        let mb = Mailbox::new(CountingWake::default(), 16);
        mb.post(1);
        mb.post(2);
        mb.post(3);
        assert_eq!(mb.waker().0.load(Ordering::Relaxed), 1);
        assert_eq!(mb.len(), 3);
        let mut out = Vec::new();
        mb.drain(&mut out);
        assert_eq!(out, [1, 2, 3]);
        assert!(mb.is_empty());
        mb.post(4);
        assert_eq!(mb.waker().0.load(Ordering::Relaxed), 2);
        // Drain appends to a non-empty vector, in order.
        mb.drain(&mut out);
        assert_eq!(out, [1, 2, 3, 4]);
        // A drain with nothing posted re-arms: the next post wakes.
        mb.drain(&mut out);
        mb.post(5);
        assert_eq!(mb.waker().0.load(Ordering::Relaxed), 3);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "over its bound")]
    fn the_bound_is_asserted() {
        let mb = Mailbox::new(CountingWake::default(), 2);
        mb.post(1);
        mb.post(2);
        mb.post(3);
    }

    /// Posters on real threads, an owner sleeping in poll(2) on a real
    /// eventfd: every item arrives, in each poster's order, and a missing
    /// wakeup would show as a poll that times out.
    #[test]
    fn real_eventfd_no_lost_wakeups() {
        const POSTERS: u64 = 4;
        const ITEMS: u64 = 50_000;
        let total = (POSTERS * ITEMS) as usize;
        let mb = Arc::new(Mailbox::new(EventFd::new().unwrap(), total));
        let posters: Vec<_> = (0..POSTERS)
            .map(|p| {
                let mb = mb.clone();
                thread::spawn(move || {
                    for i in 0..ITEMS {
                        mb.post(p << 32 | i);
                        if i % 1024 == 0 {
                            // Let the owner sleep now and then.
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();

        let mut next = vec![0u64; POSTERS as usize];
        let mut batch = Vec::new();
        let (mut received, mut wakeups) = (0usize, 0u64);
        let timeout = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        while received < total {
            let mut fds = [PollFd::new(mb.waker(), PollFlags::IN)];
            let ready = poll(&mut fds, Some(&timeout)).unwrap();
            assert_eq!(ready, 1, "lost wakeup: {received} of {total} received");
            wakeups += 1;
            mb.waker().drain().unwrap();
            mb.drain(&mut batch);
            for v in batch.drain(..) {
                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                assert_eq!(i, next[p], "poster {p} out of order");
                next[p] += 1;
            }
            received = next.iter().sum::<u64>() as usize;
        }
        for h in posters {
            h.join().unwrap();
        }
        // Nothing left behind, and no signal left pending after the last
        // drain other than at most one spurious one.
        assert!(mb.is_empty());
        eprintln!("mailbox: {total} items in {wakeups} wakeups");
    }
}

#[cfg(all(test, stoat_loom))]
mod loom_models {
    use super::*;
    use loom::sync::{Arc, Condvar};
    use loom::thread;

    /// An eventfd as loom sees it: a pending flag the owner sleeps on. If
    /// the owner waits with nothing pending and nobody left to signal, loom
    /// reports a deadlock: that is the lost wakeup.
    #[derive(Default)]
    struct LoomEventFd {
        pending: Mutex<bool>,
        cv: Condvar,
    }

    impl Wake for LoomEventFd {
        fn wake(&self) {
            *self.pending.lock().unwrap() = true;
            self.cv.notify_one();
        }
    }

    impl LoomEventFd {
        /// epoll_wait: returns at once if a signal is pending.
        fn sleep(&self) {
            let mut pending = self.pending.lock().unwrap();
            while !*pending {
                pending = self.cv.wait(pending).unwrap();
            }
        }

        /// The eventfd read.
        fn consume(&self) {
            *self.pending.lock().unwrap() = false;
        }
    }

    /// Every interleaving: these models are small.
    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = None;
        builder.check(f);
    }

    /// The owner's loop until it has `n` items: sleep until a wake is
    /// pending; consume it; drain (arm, then take).
    fn owner(mb: &Mailbox<u32, LoomEventFd>, n: usize) -> Vec<u32> {
        let mut got = Vec::new();
        while got.len() < n {
            mb.waker().sleep();
            mb.waker().consume();
            mb.drain(&mut got);
        }
        got
    }

    #[test]
    fn two_posters_vs_owner() {
        model(|| {
            let mb = Arc::new(Mailbox::new(LoomEventFd::default(), 2));
            let posters: Vec<_> = [1, 2]
                .into_iter()
                .map(|v| {
                    let mb = mb.clone();
                    thread::spawn(move || mb.post(v))
                })
                .collect();
            let mut got = owner(&mb, 2);
            got.sort_unstable();
            assert_eq!(got, [1, 2]);
            for p in posters {
                p.join().unwrap();
            }
        });
    }

    #[test]
    fn burst_vs_owner() {
        model(|| {
            let mb = Arc::new(Mailbox::new(LoomEventFd::default(), 3));
            let m = mb.clone();
            let poster = thread::spawn(move || {
                m.post(1);
                m.post(2);
                m.post(3);
            });
            assert_eq!(owner(&mb, 3), [1, 2, 3]);
            poster.join().unwrap();
        });
    }

    /// The control: with the arm before the consumption of the signal, loom
    /// finds an interleaving where the owner sleeps forever with an item.
    #[test]
    #[should_panic(expected = "deadlock")]
    fn arming_before_consuming_loses_a_wakeup() {
        model(|| {
            let mb = Arc::new(Mailbox::new(LoomEventFd::default(), 3));
            let m = mb.clone();
            // Post 1 signals; post 2 lands between the arm and the
            // consumption (its signal is swallowed, its item taken); post 3
            // comes after the take, finds the flag set and does not signal.
            let poster = thread::spawn(move || {
                m.post(1);
                m.post(2);
                m.post(3);
            });
            let mut got = Vec::new();
            while got.len() < 3 {
                mb.waker().sleep();
                mb.notified.swap(false, Ordering::AcqRel);
                mb.waker().consume();
                got.append(&mut mb.items.lock().unwrap());
            }
            poster.join().unwrap();
        });
    }
}
