//! The boundary between the runtime and what it serves.
//!
//! Contract: the network thread calls [`Service::call`] once per complete
//! request, with the request's head, the bytes its spans index, and the
//! whole body. The service answers through the [`ResponseSink`] before it
//! returns (inline handlers). The sink encodes the response straight into
//! the connection's output, in request order; a service that does not
//! answer gets a 500 sent for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::proto::encode::{BodyMode, Header};
use crate::proto::{Conn, DateCache, RequestHead, ResponseBody};
use crate::runtime::outbox::{Body, Outbox};

/// What the runtime serves: the app layer's router implements it.
pub trait Service: Send + Sync + 'static {
    /// Handles one complete request on the network thread.
    fn call(&self, req: &RawRequest<'_>, res: &mut ResponseSink<'_>);
}

/// A complete request as the network thread holds it.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// The parsed head; its spans index `buf`.
    pub head: &'a RequestHead,
    /// The bytes the head was parsed from.
    pub buf: &'a [u8],
    /// The whole body (decoded: no chunk framing).
    pub body: &'a [u8],
}

/// Where a service writes its response: encodes it into the connection's
/// output at once.
pub struct ResponseSink<'a> {
    pub(crate) conn: &'a mut Conn,
    pub(crate) out: &'a mut Outbox,
    pub(crate) date: &'a DateCache,
    pub(crate) server: &'a [u8],
    pub(crate) now: Instant,
    pub(crate) sent: bool,
    /// The server's stop flag, read when the response is sent (a stop may
    /// begin while the handler runs): once set, every response closes.
    pub(crate) stopping: &'a AtomicBool,
}

impl ResponseSink<'_> {
    /// Sends a response: `status`, the caller's `headers` (no framing
    /// fields: the encoder writes Content-Length, Transfer-Encoding,
    /// Connection, Date and Server), and `body`. `close`: close the
    /// connection after it. A second call is ignored (debug assert).
    pub fn send(&mut self, status: u16, headers: &[Header<'_>], body: Body, close: bool) {
        debug_assert!(!self.sent, "a response was already sent");
        if self.sent {
            return;
        }
        self.sent = true;
        let len = body.as_bytes().len() as u64;
        let framing = if len == 0 {
            ResponseBody::Empty
        } else {
            ResponseBody::Length(len)
        };
        let mode = self.conn.respond(
            status,
            headers,
            framing,
            close || self.stopping.load(Ordering::Acquire),
            self.now,
            self.out.head_mut(),
            self.date,
            self.server,
        );
        if mode == BodyMode::Raw {
            self.out.push_body(body);
        }
    }

    /// Whether a response has been sent.
    pub fn is_sent(&self) -> bool {
        self.sent
    }
}
