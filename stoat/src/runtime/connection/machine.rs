//! A connection's protocol state: the HTTP machine, or the WebSocket
//! state that takes its place after an upgrade (see [`Machine`]).

use std::time::Instant;

use crate::proto::{Conn, Limits};
use crate::runtime::websocket::{Tick, WsState};

/// A connection's protocol state. An upgraded connection no longer needs
/// its HTTP machine (nothing but frames follow the 101), so its WebSocket
/// state takes that machine's place: an idle WebSocket costs what an idle
/// HTTP connection does, one slab entry. `WsState` is kept no larger than
/// `Conn` (a test holds it), so the enum is no larger than `Conn` either.
///
/// HTTP code reaches the `Conn` through the forwarding methods below (the
/// WebSocket answer of each is what HTTP code should see on an upgraded
/// connection: no request in progress, none to read, `stops_reading`) or
/// through `http()`. `drive`, `on_link` and `on_timer` branch off upgraded
/// connections first; the one HTTP code that runs after an upgrade is the
/// rest of the batch that upgraded, which stops at `stops_reading`.
pub(super) enum Machine {
    Http(Conn),
    /// Upgraded; driven by `ws_connection.rs`.
    Ws(WsState),
}

impl Machine {
    /// The HTTP machine; `None` after an upgrade.
    #[inline]
    pub(super) fn http(&mut self) -> Option<&mut Conn> {
        match self {
            Machine::Http(c) => Some(c),
            Machine::Ws(_) => None,
        }
    }

    #[inline]
    pub(super) fn is_idle(&self) -> bool {
        matches!(self, Machine::Http(c) if c.is_idle())
    }

    #[inline]
    pub(super) fn is_keepalive_idle(&self) -> bool {
        matches!(self, Machine::Http(c) if c.is_keepalive_idle())
    }

    /// Whether a response streams out (SSE, a stream answered through the
    /// link); not `Connection::streams_request_body` (a request body in).
    #[inline]
    pub(super) fn streams_response(&self) -> bool {
        matches!(self, Machine::Http(c) if c.is_streaming())
    }

    #[inline]
    pub(super) fn stream_is_chunked(&self) -> bool {
        matches!(self, Machine::Http(c) if c.stream_is_chunked())
    }

    #[inline]
    pub(super) fn is_reading_head(&self) -> bool {
        matches!(self, Machine::Http(c) if c.is_reading_head())
    }

    #[inline]
    pub(super) fn is_closing(&self) -> bool {
        matches!(self, Machine::Http(c) if c.is_closing())
    }

    #[inline]
    pub(super) fn is_read_closed(&self) -> bool {
        matches!(self, Machine::Http(c) if c.is_read_closed())
    }

    /// Whether the HTTP read loop stops here: the machine closes, waits
    /// for its handler, or has seen the peer's end (one match for the
    /// three: the loop asks on every read). True after an upgrade: the 101
    /// ends HTTP on the connection, and the HTTP read loop of the batch
    /// that upgraded must stop there (frames are `ws_connection.rs`'s).
    #[inline]
    pub(super) fn stops_reading(&self) -> bool {
        match self {
            Machine::Http(c) => c.is_closing() || c.is_dispatched() || c.is_read_closed(),
            Machine::Ws(_) => true,
        }
    }

    #[inline]
    pub(super) fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match self {
            Machine::Http(c) => c.deadline(limits),
            Machine::Ws(_) => None,
        }
    }

    #[inline]
    pub(super) fn body_remaining_bound(&self) -> Option<u64> {
        match self {
            Machine::Http(c) => c.body_remaining_bound(),
            Machine::Ws(_) => None,
        }
    }

    /// Output is (or is no longer) waiting for the socket since `now`:
    /// the write-stall clock of either protocol.
    pub(super) fn set_write_pending(&mut self, pending: bool, now: Instant) {
        match self {
            Machine::Http(c) => c.set_write_pending(pending, now),
            Machine::Ws(w) => w.core.write_since = pending.then(|| Tick::of(now)),
        }
    }
}

/// The WebSocket state in `proto`, if the connection was upgraded.
pub(in crate::runtime) fn ws_of(proto: &mut Machine) -> Option<&mut WsState> {
    match proto {
        Machine::Ws(w) => Some(w),
        Machine::Http(_) => None,
    }
}
