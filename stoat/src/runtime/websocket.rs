//! A WebSocket session's state on its network thread, and the interface
//! the app layer's sessions implement.
//!
//! Contract:
//! - A route that accepts a handshake gives the runtime a [`WsSession`]
//!   (through `ResponseSink::upgrade`); the connection then speaks
//!   WebSocket until it closes. Its callbacks run on the network thread that
//!   owns the connection, with a [`WsIo`] to send frames, start the close
//!   handshake, or get a link for a sender on another thread.
//! - Per-connection WebSocket state is a [`WsState`], kept in the
//!   connection in place of the HTTP machine it no longer needs (see
//!   `Machine` in `connection.rs`): an upgraded connection costs no more
//!   than an HTTP one, and an HTTP connection pays nothing for it. To fit,
//!   clocks are `u32` millisecond [`Tick`]s, the fragments of a message are
//!   boxed only while one is in flight, and the message size limit is read
//!   from [`WsLimits`], not kept per connection.
//! - Senders on other threads queue encoded frames in the connection's
//!   [`Link`] (bounded by `ws_backlog`: `Full` / `Closed`, as SSE); the
//!   link is made on the first request for a sender, so a session that
//!   never pushes from elsewhere holds none.
//! - Driving (reads, writes, timers) is in `ws_connection.rs`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::proto::ws_frame::{encode_close, encode_frame, Decoder, Opcode};
use crate::runtime::link::{AsyncCounters, Link, Owner};

/// A session's callbacks; see the module doc.
pub(crate) trait WsSession: Send {
    /// The handshake was answered; the session may send.
    fn on_open(&mut self, io: &mut WsIo<'_>);
    /// A whole message arrived.
    fn on_message(&mut self, io: &mut WsIo<'_>, msg: WsMessage<'_>);
    /// The connection ended: with the peer's close code (`None`: the peer
    /// sent a close frame without one; 1006: no close frame at all).
    fn on_close(&mut self, code: Option<u16>, reason: &str);
}

/// A whole message as a session receives it (re-exported by the app
/// layer as `Message`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsMessage<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

/// WebSocket settings shared by a server's connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WsLimits {
    /// Ping interval; `None`: no pings.
    pub ping: Option<Duration>,
    /// Close after this long without a message either way.
    pub idle: Option<Duration>,
    pub max_message: usize,
    /// Most frames queued per sender link.
    pub backlog: usize,
}

/// How long a close handshake may take (our close frame sent, the peer's
/// not come; or the peer's close answered and the TCP close not come).
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// A coarse clock reading: milliseconds since a process-wide base, modulo
/// 2^32 (it wraps after about 49 days). Four bytes instead of an
/// `Instant`'s sixteen. Only differences are used ([`Tick::elapsed`]), and
/// every one is compared against an interval shorter than half the wrap
/// (about 24 days; see [`Tick::elapsed`]): the
/// ping interval, the idle timeout, the close and write timeouts (a clock
/// is only compared while its interval is configured, and the sweep looks
/// at least once per interval). The base is process-wide, not per thread,
/// because the `shared` model moves connections between threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tick(u32);

impl Tick {
    /// The tick of `now`.
    pub fn of(now: Instant) -> Tick {
        static BASE: OnceLock<Instant> = OnceLock::new();
        let base = *BASE.get_or_init(|| now);
        let ms = now.saturating_duration_since(base).as_millis();
        // Truncation is the point: the clock wraps (see the type's doc).
        Tick(ms as u32)
    }

    /// How long from `self` to `now`; zero if `now` is earlier (in the
    /// `shared` model a thread's batch clock may be a little older than the
    /// one that stamped `self`): a difference past half the wrap (about
    /// 24 days) counts as negative.
    pub fn elapsed(self, now: Tick) -> Duration {
        let ms = now.0.wrapping_sub(self.0);
        if ms > u32::MAX / 2 {
            return Duration::ZERO;
        }
        Duration::from_millis(u64::from(ms))
    }
}

/// The fragments of a message so far: allocated when a fragmented message
/// begins and freed when it is delivered, so an idle connection holds none.
pub(crate) struct Fragments {
    pub data: Vec<u8>,
    pub text: bool,
}

/// The close handshake (RFC 6455 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame at `since` and wait for the peer's.
    CloseSent { since: Tick },
    /// Both close frames are exchanged (or the connection failed): flush,
    /// shut our side (the server closes the TCP connection first, §7.1.1),
    /// and discard input until the peer's end of stream.
    Closed { since: Tick },
}

/// Everything but the session's own state: what [`WsIo`] works on.
pub(crate) struct WsCore {
    pub decoder: Decoder,
    /// The fragments of a message so far (`None` when none).
    pub message: Option<Box<Fragments>>,
    pub phase: Phase,
    /// On-thread callbacks were called (`on_open`, `on_close`).
    pub opened: bool,
    pub close_reported: bool,
    /// The peer's close code, for `on_close`.
    pub peer_close: Option<Option<u16>>,
    /// Our side of the TCP connection is shut.
    pub shut: bool,
    /// When the last ping went out, and whether its pong is awaited.
    pub last_ping: Tick,
    pub awaiting_pong: bool,
    /// When a message last went either way.
    pub last_message: Tick,
    /// Output is waiting to be written since this tick (the write-stall
    /// timeout; the HTTP machine keeps its own).
    pub write_since: Option<Tick>,
}

/// One connection's WebSocket state; see the module doc.
pub(crate) struct WsState {
    pub session: Box<dyn WsSession>,
    pub core: WsCore,
}

impl WsState {
    pub fn new(session: Box<dyn WsSession>, now: Instant) -> WsState {
        let now = Tick::of(now);
        WsState {
            session,
            core: WsCore {
                decoder: Decoder::new(),
                message: None,
                phase: Phase::Open,
                opened: false,
                close_reported: false,
                peer_close: None,
                shut: false,
                last_ping: now,
                awaiting_pong: false,
                last_message: now,
                write_since: None,
            },
        }
    }

    /// Reports the end to the session, once.
    pub fn report_close(&mut self) {
        if self.core.close_reported || !self.core.opened {
            return;
        }
        self.core.close_reported = true;
        // RFC 6455 §7.1.5: with no close frame received the code is 1006.
        let code = self.core.peer_close.unwrap_or(Some(1006));
        self.session.on_close(code, "");
    }
}

impl WsCore {
    /// Sends a close frame with `code` (unless one was sent) and waits for
    /// the peer's; `sender`'s link is closed: senders get `Closed`.
    /// Whether a frame was written (for the frame count).
    pub fn start_close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str, now: Tick) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        encode_close(out, code, reason);
        self.phase = Phase::CloseSent { since: now };
        true
    }

    /// Fails the connection (RFC 6455 §7.1.7): a close frame with `code`
    /// if none was sent, then the TCP close. Whether a frame was written.
    pub fn fail(&mut self, out: &mut Vec<u8>, code: u16, now: Tick) -> bool {
        let open = self.phase == Phase::Open;
        if open {
            encode_close(out, code, "");
        }
        self.phase = Phase::Closed { since: now };
        open
    }

    /// Whether data frames may still be sent.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// Keeps a fragment of a message.
    pub fn push_fragment(&mut self, first: bool, text: bool, data: &[u8]) {
        let fragments = self.message.get_or_insert_with(|| {
            Box::new(Fragments {
                data: Vec::new(),
                text,
            })
        });
        if first {
            fragments.data.clear();
            fragments.text = text;
        }
        fragments.data.extend_from_slice(data);
    }
}

/// What a session's callback may do; see the module doc.
pub(crate) struct WsIo<'a> {
    pub core: &'a mut WsCore,
    pub out: &'a mut Vec<u8>,
    pub link: &'a mut Option<Arc<Link>>,
    pub owner: &'a Arc<dyn Owner>,
    pub key: u64,
    pub limits: &'a WsLimits,
    pub counters: &'a Arc<AsyncCounters>,
    pub now: Tick,
    /// Frames written through this `WsIo` (for the metrics).
    pub sent: u64,
}

impl WsIo<'_> {
    /// Sends a message; `false`: the close handshake began, nothing sent.
    pub fn send(&mut self, text: bool, data: &[u8]) -> bool {
        if !self.core.is_open() {
            return false;
        }
        let op = if text { Opcode::Text } else { Opcode::Binary };
        encode_frame(self.out, op, data);
        self.core.last_message = self.now;
        self.sent += 1;
        true
    }

    /// Starts the close handshake with `code` and `reason`.
    pub fn close(&mut self, code: u16, reason: &str) {
        if self.core.start_close(self.out, code, reason, self.now) {
            self.sent += 1;
        }
        if let Some(link) = self.link.as_ref() {
            link.close();
        }
    }

    /// The link other threads' senders queue frames in (made on first use).
    /// `None` once the close handshake began.
    pub fn sender_link(&mut self) -> Option<Arc<Link>> {
        if !self.core.is_open() {
            return None;
        }
        let link = self.link.get_or_insert_with(|| {
            Link::new(
                self.owner.clone(),
                self.key,
                None,
                self.limits.backlog,
                self.counters.clone(),
                u32::MAX,
            )
        });
        Some(link.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_differences_wrap_and_never_go_negative() {
        let t = Tick(u32::MAX - 10);
        assert_eq!(t.elapsed(Tick(20)), Duration::from_millis(31));
        // A batch clock a little older than the stamp: no time passed.
        assert_eq!(Tick(100).elapsed(Tick(90)), Duration::ZERO);
        // Past any base another test thread may set meanwhile.
        let now = Instant::now() + Duration::from_secs(1);
        let first = Tick::of(now);
        let later = Tick::of(now + Duration::from_millis(1500));
        assert_eq!(first.elapsed(later), Duration::from_millis(1500));
    }
}
