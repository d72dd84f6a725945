//! A network thread's inbox of links ([`Link`]) that have something for it:
//! a [`Mailbox`] whose wake is an eventfd in the owner's epoll.
//!
//! Contract: any thread calls [`Owner::post`]; the owner (in `shared`, any
//! network thread that receives the eventfd's event) calls
//! [`LoopMailbox::drain`] when the eventfd is readable, which consumes the
//! eventfd's signal *before* it takes the items: `mailbox.rs` shows why that
//! order (and only that order) loses no wakeup, and models it with loom. In
//! `shared` the eventfd is `EPOLLONESHOT` and re-armed after the drain;
//! re-arming re-evaluates readiness, so a write in between is reported.

use std::sync::Arc;

use crate::runtime::link::{Link, Owner};
use crate::runtime::mailbox::Mailbox;
use crate::sys::EventFd;

/// See the module doc. Bounded: a link is in the mailbox at most once at a
/// time (`Link::notify`) and belongs to an open connection (or one that
/// just closed), so the mailbox holds at most about `max_connections` links.
pub(crate) struct LoopMailbox {
    inner: Mailbox<Arc<Link>, EventFd>,
}

impl LoopMailbox {
    /// `bound`: the most connections that can post to it.
    pub fn new(bound: usize) -> std::io::Result<LoopMailbox> {
        // Links of connections that closed after posting may still be in
        // the mailbox while their slots hold new connections: twice the
        // table is a safe bound.
        Ok(LoopMailbox {
            inner: Mailbox::new(EventFd::new()?, bound.saturating_mul(2).max(64)),
        })
    }

    /// The eventfd to register with the owner's epoll.
    pub fn fd(&self) -> &EventFd {
        self.inner.waker()
    }

    /// Owner: consumes the wake signal, then takes every posted link.
    pub fn drain(&self, out: &mut Vec<Arc<Link>>) {
        let _ = self.inner.waker().drain();
        self.inner.drain(out);
    }
}

impl Owner for LoopMailbox {
    fn post(&self, link: Arc<Link>) {
        self.inner.post(link);
    }
}
