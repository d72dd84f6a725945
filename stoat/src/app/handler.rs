//! [`Handler`]: the code a route runs.
//!
//! Contract: a handler runs on a network thread, once per request routed to
//! it, possibly on several threads at once (hence `Send + Sync`). It must
//! not block for long: every other connection of that thread waits while
//! it runs. It returns the whole [`Response`]; a panic is caught by the
//! router and answered with `500`.
//!
//! Any `Fn(&Request) -> impl IntoResponse` is a handler: plain functions
//! and closures, no async colouring.

use crate::app::{IntoResponse, Request, Response};

/// Code that answers requests.
///
/// Implemented for every `Fn(&Request<'_>) -> R` where `R:`
/// [`IntoResponse`]. Implement it on a type of your own to keep state
/// beside the code:
///
/// ```
/// use stoat::app::{Handler, Request, Response};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// struct Counter(AtomicU64);
///
/// impl Handler for Counter {
///     fn call(&self, _req: &Request<'_>) -> Response {
///         let n = self.0.fetch_add(1, Ordering::Relaxed);
///         Response::text(n.to_string())
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn call(&self, req: &Request<'_>) -> Response;
}

impl<F, R> Handler for F
where
    F: Fn(&Request<'_>) -> R + Send + Sync + 'static,
    R: IntoResponse,
{
    #[inline]
    fn call(&self, req: &Request<'_>) -> Response {
        self(req).into_response()
    }
}
