//! The boundary between the runtime and what it serves.
//!
//! Contract: the network thread calls [`Service::call`] once per complete
//! request, with the request's head, the bytes its spans index, and the
//! whole body. The service answers through the [`ResponseSink`] before it
//! returns (inline handlers). The sink encodes the response straight into
//! the connection's output, in request order; a service that does not
//! answer gets a 500 sent for it.
//!
//! A service may instead take the request off the network thread:
//! [`ResponseSink::suspend`] gives a `Link` through which any thread
//! answers later (pipelines and `Responder` are built on it), and
//! [`ResponseSink::stream`] sends a chunked response head and gives a
//! `Link` that carries the body's chunks (SSE is built on it). Requests
//! pipelined behind a suspended one wait, in order, until it is answered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::proto::encode::{
    self, BodyMode, EncodeCtx, HeadMemo, HeadStart, Header, Preset, ResponseHead,
};
use crate::proto::{Conn, DateCache, RequestHead, ResponseBody};
use crate::runtime::arena::ArenaSlot;
use crate::runtime::body_stream::{BodySink, BodyStream, Progress};
use crate::runtime::connection::Shared;
use crate::runtime::link::{Answer, Link, Owner};
use crate::runtime::outbox::{append_memo, Body, Outbox};
use crate::runtime::proxy::ConnInfo;
use crate::runtime::websocket::WsSession;

/// What the runtime serves: the app layer's router implements it.
pub trait Service: Send + Sync + 'static {
    /// Handles one complete request on the network thread.
    fn call(&self, req: &RawRequest<'_>, res: &mut ResponseSink<'_>);

    /// A request with a body has its head parsed (`req.body` is empty): a
    /// service that streams this request's body returns its consumer, and
    /// may begin the response through `res` (see `body_stream.rs`). `None`,
    /// the default: the body is read whole and given to [`Service::call`];
    /// nothing may have been written to `res` then.
    fn open_stream(
        &self,
        req: &RawRequest<'_>,
        res: &mut BodySink<'_>,
    ) -> Option<Box<dyn BodyStream>> {
        let _ = (req, res);
        None
    }

    /// Writes a late answer (what was left on a suspended request's link,
    /// see [`ResponseSink::suspend`]) into `res`, on the thread that owns
    /// the connection. The default writes nothing: the runtime then
    /// answers 500. A service that suspends requests gives the answers it
    /// leaves their meaning here.
    fn answer_late(&self, answer: Answer, res: &mut ResponseSink<'_>) {
        let _ = (answer, res);
    }

    /// The body of an error the runtime answers by itself (a protocol
    /// error such as 400, 408, 413 or 431; the 503 of a request whose
    /// deadline passed), given its status and short message: its content
    /// type and bytes. `None`, the default: the short text body. Called
    /// only when such an error is answered.
    fn error_body(&self, status: u16, message: &str) -> Option<(&str, Vec<u8>)> {
        let _ = (status, message);
        None
    }
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
    /// The thread's request arena, lent on first use (see `arena.rs`).
    pub arena: &'a ArenaSlot,
    /// The connection's endpoints: peer, PROXY header client, trusted
    /// proxies (see `runtime/proxy.rs`). `ConnInfo::default()` knows none.
    pub conn: ConnInfo<'a>,
}

/// Where a service writes its response: encodes it into the connection's
/// output at once.
pub struct ResponseSink<'a> {
    pub(crate) conn: &'a mut Conn,
    pub(crate) out: &'a mut Outbox,
    pub(crate) date: &'a DateCache,
    pub(crate) server: &'a [u8],
    /// The thread's last preformatted head (see [`ResponseSink::send_preset`]).
    pub(crate) memo: &'a mut HeadMemo,
    pub(crate) now: Instant,
    pub(crate) sent: bool,
    /// The server's stop flag, read when the response is sent (a stop may
    /// begin while the handler runs): once set, every response closes.
    pub(crate) stopping: &'a AtomicBool,
    /// How to take the request off the thread; `None` for a late answer
    /// (which cannot suspend again).
    pub(crate) link: Option<LinkCtx<'a>>,
    /// The route's index for the metrics and access log (`u32::MAX`: none);
    /// set by the service with [`ResponseSink::set_route`].
    pub(crate) route: u32,
    /// The status sent (0 before).
    pub(crate) status: u16,
}

/// The framing of a body of `len` bytes.
#[inline(always)]
fn framing_of(len: usize) -> ResponseBody {
    match len as u64 {
        0 => ResponseBody::Empty,
        n => ResponseBody::Length(n),
    }
}

/// What [`ResponseSink::suspend`] and [`ResponseSink::stream`] need.
pub(crate) struct LinkCtx<'a> {
    /// Where an accepted WebSocket handshake leaves its session.
    pub upgrade: &'a mut Option<Box<dyn WsSession>>,
    /// The connection's link slot.
    pub slot: &'a mut Option<Arc<Link>>,
    pub owner: &'a Arc<dyn Owner>,
    /// The connection's key in the owner's table.
    pub key: u64,
    /// The server's settings: the request timeout (a suspended request is
    /// answered 503 after it), the most events queued per stream, the
    /// counters of suspended requests and streams. Borrowed whole, not
    /// copied field by field: the sink is built for every request.
    pub shared: &'a Shared,
}

impl ResponseSink<'_> {
    /// Sends a response: `status`, the caller's `headers` (no framing
    /// fields: the encoder writes Content-Length, Transfer-Encoding,
    /// Connection, Date and Server), and `body`. `close`: close the
    /// connection after it. A second call is ignored (debug assert).
    pub fn send(&mut self, status: u16, headers: &[Header<'_>], body: Body, close: bool) {
        self.send_start(status, HeadStart::Headers(headers), body, close);
    }

    /// [`ResponseSink::send`] for any [`HeadStart`]: with
    /// [`HeadStart::Preformatted`], a precomputed head for a common
    /// response is copied whole.
    #[inline(always)]
    pub fn send_start(&mut self, status: u16, start: HeadStart<'_>, body: Body, close: bool) {
        let Some(close) = self.begin(status, close) else {
            return;
        };
        let out = self.out.head_mut();
        let head = ResponseHead {
            status,
            start,
            body: framing_of(body.len()),
        };
        let ctx = EncodeCtx {
            date: self.date,
            server: self.server,
        };
        match &body {
            // A small static body goes out with its head, in one copy.
            Body::Static(bytes) if bytes.len() <= encode::SMALL_BODY => {
                self.conn
                    .respond_small(head, close, self.now, out, ctx, bytes);
            }
            _ => {
                let mode = self.conn.respond(head, close, self.now, out, ctx);
                if mode == BodyMode::Raw {
                    self.out.push_body(body);
                }
            }
        }
    }

    /// [`ResponseSink::send_start`] for a `200` whose start is `preset` (a
    /// preset of `Response`): the response comes from the thread's
    /// [`HeadMemo`] when the last one was the same.
    #[inline(always)]
    pub(crate) fn send_preset(&mut self, preset: &'static Preset, body: Body, close: bool) {
        let Some(close) = self.begin(200, close) else {
            return;
        };
        let mode = self.respond_preset(preset, framing_of(body.len()), close, &[]);
        if mode == BodyMode::Raw {
            self.out.push_body(body);
        }
    }

    /// [`ResponseSink::send_preset`] for a small static body (at most
    /// [`encode::SMALL_BODY`] bytes), which goes out with its head, in one
    /// copy.
    #[inline(always)]
    pub(crate) fn send_preset_small(
        &mut self,
        preset: &'static Preset,
        small: &'static [u8],
        close: bool,
    ) {
        debug_assert!(small.len() <= encode::SMALL_BODY);
        let Some(close) = self.begin(200, close) else {
            return;
        };
        self.respond_preset(preset, framing_of(small.len()), close, small);
    }

    /// The preset response's head (and `small`, its small static body, or
    /// nothing) through the thread's memo, for [`ResponseSink::send_preset`]
    /// and [`ResponseSink::send_preset_small`].
    #[inline(always)]
    // `append_memo` passed by name is called through an out-of-line
    // `FnOnce::call_once` (+54 per response, measured): a closure inlines.
    #[allow(clippy::redundant_closure)]
    fn respond_preset(
        &mut self,
        preset: &'static Preset,
        framing: ResponseBody,
        close: bool,
        small: &'static [u8],
    ) -> BodyMode {
        self.conn.respond_preset(
            preset,
            framing,
            close,
            self.now,
            self.out.head_mut(),
            EncodeCtx {
                date: self.date,
                server: self.server,
            },
            small,
            self.memo,
            #[inline(always)]
            |out, memo| append_memo(out, memo),
        )
    }

    /// Marks the response sent: `None` if one was sent already (a bug,
    /// asserted in debug builds); else whether the connection closes after
    /// it (asked, or the server stopping).
    #[inline(always)]
    fn begin(&mut self, status: u16, close: bool) -> Option<bool> {
        debug_assert!(!self.sent, "a response was already sent");
        if self.sent {
            return None;
        }
        self.sent = true;
        self.status = status;
        Some(close || self.stopping.load(Ordering::Acquire))
    }

    /// Answers through a [`BodySink`], as a streamed-body route does (used
    /// when its request has no body): runs `f`, then completes the response
    /// as at a body's end. Ignored if a response was sent already.
    pub fn streamed(&mut self, arena: &ArenaSlot, f: impl FnOnce(&mut BodySink<'_>)) {
        if self.sent {
            return;
        }
        self.sent = true;
        let mut progress = Progress::default();
        let mut sink = BodySink {
            conn: &mut *self.conn,
            out: &mut *self.out,
            date: self.date,
            server: self.server,
            now: self.now,
            stopping: self.stopping,
            progress: &mut progress,
            arena,
        };
        f(&mut sink);
        sink.complete();
    }

    /// Whether a response has been sent.
    pub fn is_sent(&self) -> bool {
        self.sent
    }

    /// Names the route that answers, by its index (for the metrics and
    /// the access log); unset, the request counts as matched by none.
    #[inline]
    pub fn set_route(&mut self, index: u32) {
        self.route = index;
    }

    /// Takes the request off the network thread: the response will come
    /// through the returned link, from any thread, or be `503` at the
    /// request deadline. `None` if a response was sent already or this
    /// sink cannot suspend (it is itself delivering a late answer).
    pub fn suspend(&mut self) -> Option<Arc<Link>> {
        if self.sent {
            return None;
        }
        let ctx = self.link.as_mut()?;
        let link = Link::new(
            ctx.owner.clone(),
            ctx.key,
            Some(self.now + ctx.shared.limits.request_timeout),
            0,
            ctx.shared.counters.clone(),
            self.route,
        );
        *ctx.slot = Some(link.clone());
        ctx.shared
            .counters
            .suspended
            .fetch_add(1, Ordering::Relaxed);
        self.sent = true;
        Some(link)
    }

    /// Undoes [`ResponseSink::suspend`] before the link left this thread
    /// (a full pipeline ring): the sink can send a response again.
    pub fn unsuspend(&mut self, link: &Arc<Link>) {
        if let Some(ctx) = self.link.as_mut() {
            if ctx.slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                *ctx.slot = None;
                ctx.shared
                    .counters
                    .suspended
                    .fetch_sub(1, Ordering::Relaxed);
                self.sent = false;
            }
        }
    }

    /// Sends a response head with chunked framing (or, to an HTTP/1.0
    /// client, a body delimited by closing) and returns the link whose
    /// events become the body's chunks. `None` if a response was sent
    /// already, the request was HEAD (the head alone is sent), or this sink
    /// cannot stream.
    pub fn stream(&mut self, status: u16, headers: &[Header<'_>]) -> Option<Arc<Link>> {
        if self.sent || self.link.is_none() {
            return None;
        }
        self.sent = true;
        self.status = status;
        let mode = self.conn.respond(
            ResponseHead {
                status,
                start: HeadStart::Headers(headers),
                body: ResponseBody::Chunked,
            },
            self.stopping.load(Ordering::Acquire),
            self.now,
            self.out.head_mut(),
            EncodeCtx {
                date: self.date,
                server: self.server,
            },
        );
        if mode == BodyMode::None {
            return None;
        }
        let ctx = self.link.as_mut()?;
        let link = Link::new(
            ctx.owner.clone(),
            ctx.key,
            None,
            ctx.shared.sse_backlog,
            ctx.shared.counters.clone(),
            self.route,
        );
        *ctx.slot = Some(link.clone());
        Some(link)
    }

    /// Accepts a WebSocket handshake: writes the `101` response (through
    /// `head`) and hands the connection to `session` once it is flushed
    /// ahead of any frame. `false` if a response was sent already or this
    /// sink cannot upgrade (a late answer).
    pub(crate) fn upgrade(
        &mut self,
        head: impl FnOnce(&mut Vec<u8>, &[u8]),
        session: Box<dyn WsSession>,
    ) -> bool {
        if self.sent {
            return false;
        }
        let Some(ctx) = self.link.as_mut() else {
            return false;
        };
        *ctx.upgrade = Some(session);
        self.sent = true;
        self.status = 101;
        head(self.out.head_mut(), self.server);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Response;
    use crate::proto::{Event, Limits};

    /// A connection that has read `request` (a head without a body).
    fn conn_after(request: &[u8], now: Instant) -> Conn {
        let mut conn = Conn::new(now);
        let mut head = RequestHead::default();
        let (_, event) = conn
            .poll(request, now, &Limits::default(), &mut head)
            .unwrap();
        assert_eq!(event, Event::Head { complete: true });
        conn
    }

    /// The preset path (the thread's memo, shared by every call here) and
    /// the general encoder give the same bytes for every response after
    /// every other: each input that shapes a head (status, fields, body
    /// and its length, HEAD, HTTP/1.0, `Connection: close` asked by either
    /// side or by a stop, the `Date` second) changes one at a time, and a
    /// remembered head is never given for another.
    #[test]
    fn preset_path_matches_the_general_encoder() {
        static LONG: &str = "a static body longer than the small body limit";
        let responses = [
            Response::text("Hello, World!"),
            Response::text("Hello, World?"),
            Response::text(""),
            Response::text(LONG),
            Response::text(String::from("Hello, World!")),
            Response::json_bytes("{}"),
            Response::text("Hello, World!").with_status(404),
            Response::text("Hello, World!").header("X-A", "1"),
            Response::text("Hello, World!").close(),
        ];
        let requests: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        ];
        // One `Server` value at one address for both seconds: only the
        // second tells them apart.
        static SERVER: &[u8] = b"stoat";
        let dates = [
            DateCache::with_server(784_111_777, SERVER),
            DateCache::with_server(784_111_778, SERVER),
        ];
        let mut cases = Vec::new();
        for response in &responses {
            for request in requests {
                for date in &dates {
                    for stopping in [false, true] {
                        cases.push((response, request, date, stopping));
                    }
                }
            }
        }
        let now = Instant::now();
        let mut memo = HeadMemo::default();
        let mut run = |case: &(&Response, &[u8], &DateCache, bool)| {
            let &(response, request, date, stopping) = case;
            let stopping = AtomicBool::new(stopping);
            let output = |general: bool, memo: &mut HeadMemo| {
                let mut conn = conn_after(request, now);
                let mut out = Outbox::default();
                let mut sink = ResponseSink {
                    conn: &mut conn,
                    out: &mut out,
                    date,
                    server: SERVER,
                    memo,
                    now,
                    sent: false,
                    stopping: &stopping,
                    link: None,
                    route: u32::MAX,
                    status: 0,
                };
                let response = response.clone();
                if general {
                    response.emit(|status, headers, body, close| {
                        sink.send(status, headers, body, close)
                    });
                } else {
                    response.send(&mut sink);
                }
                let status = sink.status;
                let mut iov = Vec::new();
                out.slices(&mut iov);
                let bytes: Vec<u8> = iov.iter().flat_map(|s| s.iter().copied()).collect();
                (String::from_utf8(bytes).unwrap(), status, conn.is_closing())
            };
            let want = output(true, &mut HeadMemo::default());
            let got = output(false, &mut memo);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(request));
        };
        for (i, a) in cases.iter().enumerate() {
            for b in &cases[i..] {
                run(a);
                run(a);
                run(b);
            }
        }
    }
}
