//! WebSocket endpoints (RFC 6455): [`WebSocket`] (a route's endpoint:
//! subprotocols, an `Origin` check, the session to start), [`Session`]
//! (open, message and close callbacks on the network thread),
//! [`WsContext`] (what a callback may do) and [`WsSender`] (send from any
//! thread).
//!
//! Contract:
//! - A handshake is validated as RFC 6455 §4.2.1 says: a bad one gets
//!   400, a version other than 13 gets 426 with `Sec-WebSocket-Version:
//!   13`, an origin the hook refuses 403. Subprotocol: the first of the
//!   endpoint's protocols (in its order) that the client offers; none if
//!   none match. Extensions (permessage-deflate) are declined.
//! - Callbacks run on the network thread that owns the connection: they
//!   must be quick. A panic in one closes the connection with 1011.
//! - A [`WsSender`] is `Send + Clone`: its `send_*` never block; the
//!   per-connection backlog is bounded (`ws_backlog`): full is
//!   [`SendError::Full`], a closed connection (or one closing)
//!   [`SendError::Closed`], each with the message back;
//!   [`WsSender::poll_writable`] registers a [`Waker`] for when there is
//!   room again. [`WsContext`]'s `send_*` (on the network thread) return
//!   the same `Result`.
//! - Protocol rules (masking, fragments, control frames, close codes,
//!   UTF-8, `ws_max_message_size`), pings (`ws_ping_sec`), the idle timeout
//!   (`ws_idle_timeout_sec`) and the close 1001 of a graceful stop are the
//!   runtime's: a session sees only whole, valid messages.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::app::{Request, Response};
use crate::proto::ws_frame::{encode_close, encode_frame, Opcode};
use crate::proto::ws_handshake::{self, HandshakeError};
use crate::runtime::link::{Link, SendError};
use crate::runtime::websocket::{WsIo, WsSession};
use crate::runtime::ResponseSink;

pub use crate::runtime::websocket::WsMessage as Message;

/// One WebSocket connection's callbacks. They run on the network thread.
pub trait Session: Send + 'static {
    /// The handshake was answered.
    fn on_open(&mut self, ws: &mut WsContext<'_>) {
        let _ = ws;
    }
    /// A whole message arrived.
    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>);
    /// The connection ended; `code` is the peer's close code (`None`: a
    /// close frame without one; `Some(1006)`: the connection dropped
    /// without a close frame).
    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        let _ = (code, reason);
    }
}

/// Makes a connection's session, given the chosen subprotocol, already in
/// the runtime's form (see [`Adapter`]).
type Factory = dyn Fn(&Request<'_>, Option<Box<str>>) -> Box<dyn WsSession> + Send + Sync;
type OriginCheck = dyn Fn(Option<&str>) -> bool + Send + Sync;

/// A route's WebSocket endpoint: give it to `Server::websocket`.
///
/// ```no_run
/// use stoat::app::{Message, Server, Session, WebSocket, WsContext};
///
/// struct Echo;
/// impl Session for Echo {
///     fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
///         // An error is `Closed`: the connection is closing.
///         let _ = ws.send(msg);
///     }
/// }
///
/// Server::default()
///     .websocket("/", WebSocket::new(|_req| Echo).protocols(&["echo"]))
///     .run()
///     .unwrap();
/// ```
pub struct WebSocket {
    factory: Box<Factory>,
    protocols: Vec<Box<str>>,
    origin: Option<Box<OriginCheck>>,
}

impl WebSocket {
    /// An endpoint starting a session made by `make` for each accepted
    /// handshake (it sees the upgrade request).
    pub fn new<S: Session, F>(make: F) -> WebSocket
    where
        F: Fn(&Request<'_>) -> S + Send + Sync + 'static,
    {
        WebSocket {
            factory: Box::new(move |req, protocol| match protocol {
                None => Box::new(Adapter {
                    session: make(req),
                    protocol: NoProtocol,
                }),
                Some(protocol) => Box::new(Adapter {
                    session: make(req),
                    protocol,
                }),
            }),
            protocols: Vec::new(),
            origin: None,
        }
    }

    /// The subprotocols this endpoint speaks, preferred first.
    pub fn protocols(mut self, protocols: &[&str]) -> WebSocket {
        self.protocols = protocols.iter().map(|p| (*p).into()).collect();
        self
    }

    /// A check of the `Origin` field (`None`: the request had none);
    /// `false` refuses the handshake with 403 (RFC 6455 §4.2.2).
    pub fn check_origin(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> WebSocket {
        self.origin = Some(Box::new(check));
        self
    }

    /// Answers the handshake `req`: 101 and a session, or the error.
    pub(crate) fn accept(&self, req: &Request<'_>, sink: &mut ResponseSink<'_>) {
        let raw = req.raw();
        let hs = match ws_handshake::validate(raw.head, raw.buf) {
            Ok(hs) => hs,
            Err(e) => return refuse(e, sink),
        };
        if let Some(check) = &self.origin {
            let origin = hs.origin.and_then(|o| std::str::from_utf8(o).ok());
            if !check(origin) {
                return Response::text("origin not allowed\n")
                    .with_status(403)
                    .send(sink);
            }
        }
        let protocol = self
            .protocols
            .iter()
            .find(|p| hs.protocols().any(|o| o == p.as_bytes()))
            .cloned();
        let chosen = protocol.clone();
        let session = match panic::catch_unwind(AssertUnwindSafe(|| (self.factory)(req, protocol)))
        {
            Ok(s) => s,
            Err(_) => return Response::new(500).send(sink),
        };
        let key = hs.key;
        sink.upgrade(
            |out, server| {
                let p = chosen.as_deref().map(str::as_bytes);
                ws_handshake::encode_accept(out, key, p, server)
            },
            session,
        );
    }
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("protocols", &self.protocols)
            .field("origin_check", &self.origin.is_some())
            .finish()
    }
}

/// 400, or 426 with the version we speak (RFC 6455 §4.4).
fn refuse(e: HandshakeError, sink: &mut ResponseSink<'_>) {
    let mut r = Response::text(e.message()).with_status(e.status());
    if e == HandshakeError::WsVersion {
        r = r.header("Sec-WebSocket-Version", "13");
    }
    r.send(sink)
}

/// The user's session behind the runtime's interface: one allocation of
/// the session's own size (none for a zero-sized session without a
/// subprotocol), not a box in a box. `P` is the chosen subprotocol:
/// [`NoProtocol`] (zero-sized) or `Box<str>`.
struct Adapter<S, P> {
    session: S,
    protocol: P,
}

/// No subprotocol was chosen.
struct NoProtocol;

/// The chosen subprotocol, as an [`Adapter`] keeps it.
trait Chosen: Send + 'static {
    fn get(&self) -> Option<&str>;
}

impl Chosen for NoProtocol {
    fn get(&self) -> Option<&str> {
        None
    }
}

impl Chosen for Box<str> {
    fn get(&self) -> Option<&str> {
        Some(self)
    }
}

impl<S: Session, P: Chosen> Adapter<S, P> {
    fn guarded(&mut self, io: &mut WsIo<'_>, f: impl FnOnce(&mut S, &mut WsContext<'_>)) {
        let session = &mut self.session;
        let mut ctx = WsContext {
            io,
            protocol: self.protocol.get(),
        };
        if panic::catch_unwind(AssertUnwindSafe(|| f(session, &mut ctx))).is_err() {
            // §7.4.1: 1011, an unexpected condition.
            ctx.io.close(1011, "");
        }
    }
}

impl<S: Session, P: Chosen> WsSession for Adapter<S, P> {
    fn on_open(&mut self, io: &mut WsIo<'_>) {
        self.guarded(io, |s, ctx| s.on_open(ctx));
    }

    fn on_message(&mut self, io: &mut WsIo<'_>, msg: Message<'_>) {
        self.guarded(io, |s, ctx| s.on_message(ctx, msg));
    }

    fn on_close(&mut self, code: Option<u16>, reason: &str) {
        let session = &mut self.session;
        let _ = panic::catch_unwind(AssertUnwindSafe(|| session.on_close(code, reason)));
    }
}

/// What a session's callback may do. See the module doc.
pub struct WsContext<'a> {
    io: &'a mut (dyn Io + 'a),
    protocol: Option<&'a str>,
}

impl WsContext<'_> {
    /// Sends `msg` (text or binary). `Err(SendError::Closed(msg))`: the
    /// connection is closing, nothing was sent.
    pub fn send<'m>(&mut self, msg: Message<'m>) -> Result<(), SendError<Message<'m>>> {
        let sent = match msg {
            Message::Text(t) => self.io.send(true, t.as_bytes()),
            Message::Binary(b) => self.io.send(false, b),
        };
        match sent {
            true => Ok(()),
            false => Err(SendError::Closed(msg)),
        }
    }

    /// Sends a text message. `Err(SendError::Closed(text))`: the
    /// connection is closing, nothing was sent.
    pub fn send_text<T: AsRef<str>>(&mut self, text: T) -> Result<(), SendError<T>> {
        match self.io.send(true, text.as_ref().as_bytes()) {
            true => Ok(()),
            false => Err(SendError::Closed(text)),
        }
    }

    /// Sends a binary message. `Err(SendError::Closed(data))`: the
    /// connection is closing, nothing was sent.
    pub fn send_binary<T: AsRef<[u8]>>(&mut self, data: T) -> Result<(), SendError<T>> {
        match self.io.send(false, data.as_ref()) {
            true => Ok(()),
            false => Err(SendError::Closed(data)),
        }
    }

    /// Starts the close handshake with `code` (1000: normal) and `reason`
    /// (cut to fit a control frame).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.io.close(code, reason)
    }

    /// A handle to send from any thread; `None` once closing.
    pub fn sender(&mut self) -> Option<WsSender> {
        self.io.sender_link().map(|link| WsSender { link })
    }

    /// The subprotocol chosen at the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }
}

impl fmt::Debug for WsContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsContext")
            .field("protocol", &self.protocol)
            .finish()
    }
}

/// [`WsIo`] behind a trait object, so that [`WsContext`] needs one lifetime.
trait Io {
    fn send(&mut self, text: bool, data: &[u8]) -> bool;
    fn close(&mut self, code: u16, reason: &str);
    fn sender_link(&mut self) -> Option<Arc<Link>>;
}

impl Io for WsIo<'_> {
    fn send(&mut self, text: bool, data: &[u8]) -> bool {
        WsIo::send(self, text, data)
    }
    fn close(&mut self, code: u16, reason: &str) {
        WsIo::close(self, code, reason)
    }
    fn sender_link(&mut self) -> Option<Arc<Link>> {
        WsIo::sender_link(self)
    }
}

/// Sends to one WebSocket client from any thread. See the module doc.
#[derive(Clone)]
pub struct WsSender {
    link: Arc<Link>,
}

impl WsSender {
    /// Queues `msg` (text or binary). Never blocks; `Full` and `Closed`
    /// give it back.
    pub fn send<'m>(&self, msg: Message<'m>) -> Result<(), SendError<Message<'m>>> {
        match msg {
            Message::Text(t) => self.send_frame(Opcode::Text, t.as_bytes()),
            Message::Binary(b) => self.send_frame(Opcode::Binary, b),
        }
        .map_err(|e| e.map(|()| msg))
    }

    /// Queues a text message. Never blocks; `Full` and `Closed` give the
    /// text back.
    pub fn send_text<T: AsRef<str>>(&self, text: T) -> Result<(), SendError<T>> {
        self.send_frame(Opcode::Text, text.as_ref().as_bytes())
            .map_err(|e| e.map(|()| text))
    }

    /// Queues a binary message. Never blocks; `Full` and `Closed` give the
    /// data back.
    pub fn send_binary<T: AsRef<[u8]>>(&self, data: T) -> Result<(), SendError<T>> {
        self.send_frame(Opcode::Binary, data.as_ref())
            .map_err(|e| e.map(|()| data))
    }

    /// Queues the close handshake with `code` and `reason`, after the
    /// messages queued before it.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), SendError<()>> {
        let mut frame = Vec::with_capacity(4 + reason.len());
        encode_close(&mut frame, code, reason);
        self.link
            .push_event(frame, |c| &c.ws_full)
            .map_err(|e| e.map(drop))
    }

    /// Whether the connection is closed or closing.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Whether a message can be queued now; `Pending`: the backlog is full
    /// and `waker` is woken once there is room or the connection closes.
    /// See [`EventStream::poll_writable`](super::EventStream::poll_writable).
    pub fn poll_writable(&self, waker: &Waker) -> Poll<()> {
        self.link.poll_writable(waker)
    }

    fn send_frame(&self, op: Opcode, data: &[u8]) -> Result<(), SendError<()>> {
        let mut frame = Vec::with_capacity(10 + data.len());
        encode_frame(&mut frame, op, data);
        self.link
            .push_event(frame, |c| &c.ws_full)
            .map_err(|e| e.map(drop))
    }
}

impl fmt::Debug for WsSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSender")
            .field("closed", &self.is_closed())
            .finish()
    }
}
