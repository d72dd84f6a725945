//! The health path a load balancer checks: `200 ready` while the server
//! takes new work, `503 draining` once a stop began.
//!
//! Contract: a [`Health`] is a shared flag. [`Server::health`] routes
//! `GET` (and `HEAD`) of `[http] health_path` (default `/healthz`) to it,
//! inline (no pipeline, no allocation per check); [`Server::run`] sets it to
//! draining when its stop signal arrives, then keeps serving for
//! `drain_health_sec` so the load balancer's checks see the 503 and stop
//! sending new requests before the listener closes. Health answers are
//! never cached (`Cache-Control: no-store`) and do not close the
//! connection (a load balancer may check over a kept-alive one).
//!
//! [`Server::health`]: crate::app::Server::health
//! [`Server::run`]: crate::app::Server::run

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::app::Response;

/// Whether the server reports ready or draining. Cheap to clone (one `Arc`).
#[derive(Debug, Clone, Default)]
pub struct Health {
    draining: Arc<AtomicBool>,
}

impl Health {
    /// A flag that reports ready.
    pub fn new() -> Health {
        Health::default()
    }

    /// From now on, report draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether draining was reported.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The health path's answer: `200 ready` or `503 draining` (RFC 9110
    /// §15.6.4: the server cannot take the request now; `Retry-After`
    /// omitted: this instance will not come back, a new one will).
    pub fn response(&self) -> Response {
        if self.is_draining() {
            Response::text("draining\n")
                .with_status(503)
                .header("Cache-Control", "no-store")
        } else {
            Response::text("ready\n").header("Cache-Control", "no-store")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_then_draining_for_every_clone() {
        let health = Health::new();
        let copy = health.clone();
        let r = copy.response();
        assert_eq!((r.status(), r.body_bytes()), (200, &b"ready\n"[..]));
        assert_eq!(r.header_value("cache-control"), Some(&b"no-store"[..]));
        health.set_draining();
        assert!(copy.is_draining());
        let r = copy.response();
        assert_eq!((r.status(), r.body_bytes()), (503, &b"draining\n"[..]));
    }
}
