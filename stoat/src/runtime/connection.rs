//! One connection as the network thread drives it: the socket, the
//! protocol state machine, the input buffer (only while there is input),
//! and pending output (only while the socket would not take it).
//!
//! Contract: the owning thread calls [`Connection::drive`] whenever the
//! socket may be readable or writable (or a buffer became free); `drive`
//! flushes, reads until the socket is drained (a short read or EAGAIN),
//! answers every complete request in order, writes all responses of the
//! batch with one syscall, and says whether the connection lives on. Both
//! threading models run this same code; only the owner calls it.
//!
//! Input buffer layout (`Input`): `mem[start..end]` holds unconsumed bytes.
//! `start` is where the current request begins; its head is parsed in
//! place and its body bytes are moved down to `mem[body_start..body_end]`
//! as they are decoded (chunk framing removed), so a request that fits one
//! buffer is handed to its handler without a copy. `parse` is where the
//! protocol machine reads next. A request too large for one buffer is
//! moved to a `Spill` (bounded by `max_body_size`). A route that streams
//! its body instead takes each run of body bytes as it is decoded, and the
//! bytes are consumed at once (`connection/stream.rs`, `body_stream.rs`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::conn::Timeout;
use crate::proto::encode::{encode_chunk, Header};
use crate::proto::{Conn, DateCache, Event, HeadParser, Limits, ProtoError, RequestHead};
use crate::runtime::arena::{ArenaSlot, ArenaStats};
use crate::runtime::body_stream::StreamState;
use crate::runtime::link::{AsyncCounters, Link, Mail, Owner};
use crate::runtime::metrics::{CloseReason, Counter};
use crate::runtime::observe::{Observe, Observers};
use crate::runtime::outbox::{Body, Outbox};
use crate::runtime::pool::{LocalPool, Pool, SpillBudget, SpillGrant};
use crate::runtime::service::{LinkCtx, RawRequest, ResponseSink, Service};
use crate::runtime::websocket::{WsLimits, WsSession, WsState};
use crate::sys::socket;

// An upgraded connection's driving works on this file's private fields.
#[path = "ws_connection.rs"]
mod ws_connection;

/// Stop reading new requests while this much output is pending: a client
/// that pipelines without reading cannot grow our output without bound.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

mod machine;
mod stream;

use machine::{ws_of, Machine};

/// Everything a network thread shares with the others, read-only while
/// serving.
pub(crate) struct Shared {
    pub limits: Limits,
    pub server: Vec<u8>,
    pub service: std::sync::Arc<dyn Service>,
    pub pool: Pool,
    /// The budget of bodies larger than one buffer.
    pub spills: Arc<SpillBudget>,
    /// Interval of SSE heartbeat comments.
    pub sse_heartbeat: Duration,
    /// Most queued events per stream.
    pub sse_backlog: usize,
    /// WebSocket settings.
    pub ws: WsLimits,
    pub counters: Arc<AsyncCounters>,
    /// Counters of the request arenas.
    pub arenas: Arc<ArenaStats>,
    /// Metrics and access log, when on.
    pub observers: Observers,
}

/// The SSE heartbeat: a comment line (WHATWG HTML, "Server-sent events":
/// lines starting with a colon are ignored by clients).
const HEARTBEAT: &[u8] = b":\n\n";

/// A network thread's working state, reused for every connection it drives.
pub(crate) struct ThreadCtx {
    pub head: RequestHead,
    pub out: Outbox,
    pub date: DateCache,
    pub now: Instant,
    pub local: LocalPool,
    /// Requests answered by this thread (read by `Stats`).
    pub requests: u64,
    /// The server is stopping: responses close their connections.
    pub stopping: bool,
    /// The server-wide stop flag, for a stop that begins mid-batch.
    stop_flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Instant and unix time at start, to derive the Date without a second clock read.
    base: (Instant, u64),
    /// Where links of this thread's connections wake it.
    pub owner: Arc<dyn Owner>,
    /// The key of the connection being driven, in the loop's table.
    pub key: u64,
    /// The request arena, lent to the request being handled (if it asks).
    pub arena: ArenaSlot,
    /// Metrics and access-log notes (see `observe.rs`).
    pub obs: Observe,
}

impl ThreadCtx {
    pub fn new(
        shared: &Shared,
        stop_flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
        owner: Arc<dyn Owner>,
    ) -> ThreadCtx {
        let now = Instant::now();
        let unix = unix_now();
        let mut head = RequestHead::default();
        head.headers.reserve(shared.limits.max_headers);
        ThreadCtx {
            head,
            out: Outbox::default(),
            date: DateCache::with_server(unix, &shared.server),
            now,
            local: LocalPool::new(),
            requests: 0,
            stopping: false,
            stop_flag,
            base: (now, unix),
            owner,
            key: 0,
            arena: ArenaSlot::with_stats(shared.arenas.clone()),
            obs: Observe::new(&shared.observers),
        }
    }

    /// Whether the server is stopping, as of now (not of this batch).
    pub fn stopping_now(&self) -> bool {
        self.stopping || self.stop_flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Reads the clock once for a batch of events.
    pub fn tick(&mut self) {
        self.now = Instant::now();
        if self.obs.on() {
            self.obs.tick(self.now);
        }
        let secs = self.base.1 + (self.now - self.base.0).as_secs();
        self.date.update(secs);
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the loop does with a connection after driving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it; `want_write`: output is pending (wait for writability).
    Keep { want_write: bool },
    /// No buffer could be had: wait until the pool has one, then drive again.
    WaitBuffer,
    /// Close it now.
    Close,
}

/// Unconsumed input in a pooled buffer. See the module doc for the layout.
struct Input {
    mem: Box<[u8]>,
    start: usize,
    body_start: usize,
    body_end: usize,
    parse: usize,
    end: usize,
}

/// A request too large for one buffer: its head bytes, then its body.
/// `_grant` holds the budget for all of it, reserved up front.
struct Spill {
    data: Vec<u8>,
    head_len: usize,
    _grant: SpillGrant,
}

/// The bytes of a slow head, kept off the pool (see `park_slow_head`).
struct Parked(Box<[u8]>);

/// One connection, owned by exactly one thread at a time.
pub(crate) struct Connection {
    fd: OwnedFd,
    /// The protocol state: HTTP, or WebSocket in its place after an upgrade.
    proto: Machine,
    input: Option<Input>,
    output: Option<Box<Outbox>>,
    spill: Option<Box<Spill>>,
    /// The request (or stream) that is with another thread; see `link.rs`.
    link: Option<Arc<Link>>,
    /// In its loop's queue of connections waiting for a buffer (at most
    /// once, however many events come meanwhile).
    pub waiting: bool,
    /// The bytes of a head that trickles in, kept off the pool between
    /// reads (see `park_slow_head`). Boxed twice to keep `Connection`
    /// small (one pointer): slow heads are rare.
    parked: Option<Box<Parked>>,
    /// A body streamed to its route as it arrives (see
    /// `connection/stream.rs`): one pointer for other connections. (A
    /// WebSocket is not here: it takes the HTTP machine's place, see
    /// [`Machine`].)
    stream: Option<Box<StreamState>>,
}

impl Connection {
    pub fn new(fd: OwnedFd, now: Instant) -> Connection {
        Connection {
            fd,
            proto: Machine::Http(Conn::new(now)),
            input: None,
            output: None,
            spill: None,
            link: None,
            waiting: false,
            parked: None,
            stream: None,
        }
    }

    /// Whether a request body is streaming to its route.
    fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }

    /// Whether the connection was upgraded to WebSocket.
    #[inline]
    fn is_ws(&self) -> bool {
        matches!(self.proto, Machine::Ws(_))
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the connection is between requests with nothing buffered:
    /// it may be closed without losing anything (shutdown, connection limit).
    pub fn is_idle(&self) -> bool {
        self.proto.is_idle()
            && self.input.is_none()
            && self.output.is_none()
            && self.link.is_none()
            && self.stream.is_none()
    }

    /// Whether it is an idle keep-alive connection that holds nothing: the
    /// one to close when the table is full and a new connection waits.
    pub fn is_evictable(&self) -> bool {
        // A waiting one has unread bytes (its next request) in the socket.
        self.proto.is_keepalive_idle() && self.is_idle() && !self.waiting
    }

    /// Gives back what the connection holds (its buffer) before it is
    /// dropped, and tells the other side of its link that it is gone.
    pub fn release(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        if let Some(input) = self.input.take() {
            shared.pool.give(&mut ctx.local, input.mem);
        }
        if let Some(link) = self.link.take() {
            if ctx.obs.on() && link.deadline.is_none() && !self.is_ws() {
                // A stream closed with its connection.
                ctx.obs.count(Counter::SseClosed);
            }
            link.close();
        }
        self.stream = None;
        if let Some(ws) = ws_of(&mut self.proto) {
            if ctx.obs.on() {
                ctx.obs.count(Counter::WsClosed);
            }
            ws.report_close();
        }
    }

    /// The link `link` was posted to this thread: delivers its answer or
    /// stream events, then carries on with the requests pipelined behind.
    /// A link that is not this connection's (closed and reused) is ignored.
    pub fn on_link(&mut self, link: &Arc<Link>, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        if self.is_ws() {
            return self.ws_on_link(link, shared, ctx);
        }
        if !self.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            return Next::Keep {
                want_write: self.output.is_some(),
            };
        }
        let mut mail = Mail::default();
        let room = if self.output.is_some() { 0 } else { usize::MAX };
        link.take(room, &mut mail);
        if let Some(answer) = mail.answer {
            self.link = None;
            link.counters.resumed.fetch_add(1, Ordering::Relaxed);
            self.late_answer(shared, ctx, link, |sink| {
                answer(sink);
                if !sink.sent {
                    sink.send(
                        500,
                        &[],
                        Body::Static(b"the handler sent no response"),
                        false,
                    );
                }
            });
            ctx.requests += 1;
        } else {
            self.write_events(&mail, ctx);
        }
        self.drive(shared, ctx, false)
    }

    /// Runs `f` with a sink for the request that was waiting (a late
    /// answer, or the 503 at its deadline): it cannot suspend again.
    fn late_answer(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        link: &Link,
        f: impl FnOnce(&mut ResponseSink<'_>),
    ) {
        let Some(conn) = self.proto.http() else {
            return;
        };
        let out = match &mut self.output {
            Some(o) => o,
            None => &mut ctx.out,
        };
        let mut sink = ResponseSink {
            conn,
            out,
            date: &ctx.date,
            server: &shared.server,
            now: ctx.now,
            sent: false,
            stopping: &ctx.stop_flag,
            link: None,
            route: link.route,
            status: 0,
        };
        let before = if ctx.obs.logs() {
            sink.out.pending()
        } else {
            0
        };
        f(&mut sink);
        if ctx.obs.on() && sink.sent {
            // The request began a request timeout before its deadline.
            let start = link
                .deadline
                .map_or(ctx.now, |d| d - shared.limits.request_timeout);
            let (route, status) = (sink.route, sink.status);
            ctx.obs.response(route, status, start);
            if ctx.obs.logs() {
                let bytes = sink.out.pending() - before;
                // The request's bytes are gone: the log gets no method or target.
                let head = RequestHead::default();
                ctx.obs
                    .log_entry(route, status, start, &head, &[], 0, bytes);
            }
        }
    }

    /// Encodes taken stream events (and the stream's end) into the output.
    fn write_events(&mut self, mail: &Mail, ctx: &mut ThreadCtx) {
        if !self.proto.is_streaming() {
            return;
        }
        let out = match &mut self.output {
            Some(o) => o,
            None => &mut ctx.out,
        };
        let chunked = self.proto.stream_is_chunked();
        for event in &mail.events {
            if chunked {
                encode_chunk(out.head_mut(), event);
            } else {
                out.head_mut().extend_from_slice(event);
            }
        }
        if !mail.events.is_empty() {
            if let Some(link) = &self.link {
                link.beat(ctx.now);
            }
            if ctx.obs.on() {
                ctx.obs.add(Counter::SseEvents, mail.events.len() as u64);
            }
        }
        if mail.ended {
            if let Some(conn) = self.proto.http() {
                conn.end_stream(ctx.now, out.head_mut());
            }
            self.link = None;
            if ctx.obs.on() {
                ctx.obs.count(Counter::SseClosed);
            }
        }
    }

    /// Takes stream events left in the link once the output has room.
    fn pump_stream(&mut self, ctx: &mut ThreadCtx) {
        if self.output.is_some() || !self.proto.is_streaming() {
            return;
        }
        let Some(link) = self.link.clone() else {
            return;
        };
        if link.has_events() {
            let mut mail = Mail::default();
            link.take(usize::MAX, &mut mail);
            self.write_events(&mail, ctx);
        }
    }

    /// Flushes, reads and answers; see the module doc. `peer_closed`: the
    /// event said the peer shut down its side (RDHUP/HUP): read to EOF
    /// rather than stop at a short read, since an edge-triggered socket
    /// reports that only once.
    pub fn drive(&mut self, shared: &Shared, ctx: &mut ThreadCtx, peer_closed: bool) -> Next {
        ctx.obs.begin();
        let next = self.drive_inner(shared, ctx, peer_closed);
        if ctx.obs.on() {
            ctx.obs.finish(self.fd.as_fd());
        }
        // ctx.out is the thread's scratch: whatever a closing connection
        // left there must never reach the next connection.
        ctx.out.clear();
        if ctx.stopping_now() && next != Next::Close && self.is_idle() {
            // Answered during a stop: nothing more will come.
            ctx.obs.close_reason = Some(CloseReason::Shutdown);
            return Next::Close;
        }
        next
    }

    fn drive_inner(&mut self, shared: &Shared, ctx: &mut ThreadCtx, peer_closed: bool) -> Next {
        if self.is_ws() {
            return self.ws_drive(shared, ctx, peer_closed);
        }
        if peer_closed && self.link.is_some() {
            // As nginx does for a proxied request: a client that closes
            // while its request is with another thread has given up on it.
            return Next::Close;
        }
        if self.flush_pending(ctx).is_err() {
            return Next::Close;
        }
        self.pump_stream(ctx);
        let next = self.read_and_answer(shared, ctx, peer_closed);
        if next == Next::Close {
            return Next::Close;
        }
        if self.flush_new(ctx).is_err() {
            return Next::Close;
        }
        if self.is_ws() {
            // Upgraded in this batch: frames may follow the handshake.
            return self.ws_drive(shared, ctx, peer_closed);
        }
        self.settle(shared, ctx, next)
    }

    /// Acts on the protocol deadline (called by the timer sweep).
    pub fn on_timer(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        ctx.obs.begin();
        let next = self.on_timer_inner(shared, ctx);
        if ctx.obs.on() {
            ctx.obs.finish(self.fd.as_fd());
        }
        ctx.out.clear();
        next
    }

    fn on_timer_inner(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        if self.is_ws() {
            return self.ws_timer(shared, ctx);
        }
        if let Some(link) = self.link.clone() {
            return self.on_link_timer(&link, shared, ctx);
        }
        self.park_slow_head(shared, ctx);
        match self.proto.deadline(&shared.limits) {
            Some(d) if d <= ctx.now => {}
            _ => {
                return Next::Keep {
                    want_write: self.output.is_some(),
                }
            }
        }
        let Some(conn) = self.proto.http() else {
            return Next::Close;
        };
        let idle = conn.is_keepalive_idle();
        match conn.on_timeout(ctx.now, &shared.limits) {
            Timeout::None => Next::Keep {
                want_write: self.output.is_some(),
            },
            Timeout::Close => {
                ctx.obs.close_reason = Some(if self.output.is_some() {
                    CloseReason::WriteStall
                } else if idle {
                    CloseReason::KeepAliveTimeout
                } else {
                    CloseReason::RequestTimeout
                });
                Next::Close
            }
            Timeout::Respond(err) => {
                ctx.obs.close_reason = Some(CloseReason::RequestTimeout);
                self.respond_error(err, shared, ctx);
                if self.flush_new(ctx).is_err() {
                    return Next::Close;
                }
                self.settle(shared, ctx, Next::Keep { want_write: false })
            }
        }
    }

    /// A head still incomplete at a sweep came slowly (a head normally
    /// arrives in one read): its bytes move to a heap copy of their own size
    /// and the read buffer goes back to the pool, so thousands of trickling
    /// clients cannot hold every buffer while fast ones wait. The copy is
    /// at most `max_request_line + max_header_bytes` and is moved back when
    /// more bytes arrive; the head deadline still runs from the accept.
    fn park_slow_head(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        if !self.proto.is_reading_head() || self.output.is_some() || self.spill.is_some() {
            return;
        }
        let Some(input) = &self.input else {
            return;
        };
        if input.body_start != 0 || input.start != input.parse {
            return;
        }
        self.parked = Some(Box::new(Parked(input.mem[input.start..input.end].into())));
        if let Some(input) = self.input.take() {
            shared.pool.give(&mut ctx.local, input.mem);
        }
    }

    /// Deadlines of a request that is with another thread: a suspended
    /// request unanswered at its deadline gets 503 (its late answer is
    /// discarded); an idle stream gets a heartbeat comment.
    fn on_link_timer(&mut self, link: &Arc<Link>, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        if self
            .proto
            .deadline(&shared.limits)
            .is_some_and(|d| d <= ctx.now)
            && self
                .proto
                .http()
                .map_or(Timeout::Close, |c| c.on_timeout(ctx.now, &shared.limits))
                == Timeout::Close
        {
            // The output stalled past the write timeout.
            ctx.obs.close_reason = Some(CloseReason::WriteStall);
            return Next::Close;
        }
        match link.deadline {
            Some(deadline) => {
                if ctx.now < deadline || link.is_answered() {
                    return Next::Keep {
                        want_write: self.output.is_some(),
                    };
                }
                link.close();
                self.link = None;
                link.counters.expired.fetch_add(1, Ordering::Relaxed);
                self.late_answer(shared, ctx, link, |sink| {
                    // RFC 9110 §15.6.4: 503, the server cannot answer now.
                    sink.send(
                        503,
                        &[Header {
                            name: "Retry-After",
                            value: b"1",
                        }],
                        Body::Static(b"the request was not answered in time\n"),
                        false,
                    );
                });
                ctx.requests += 1;
            }
            None => {
                if self.output.is_some() || !self.proto.is_streaming() {
                    return Next::Keep {
                        want_write: self.output.is_some(),
                    };
                }
                if ctx.now.duration_since(link.last_beat()) < shared.sse_heartbeat {
                    return Next::Keep { want_write: false };
                }
                link.beat(ctx.now);
                let chunked = self.proto.stream_is_chunked();
                let out = ctx.out.head_mut();
                if chunked {
                    encode_chunk(out, HEARTBEAT);
                } else {
                    out.extend_from_slice(HEARTBEAT);
                }
            }
        }
        self.drive_inner(shared, ctx, false)
    }

    fn respond_error(&mut self, err: ProtoError, shared: &Shared, ctx: &mut ThreadCtx) {
        if ctx.obs.close_reason.is_none() {
            ctx.obs.close_reason = Some(CloseReason::Error);
        }
        if self.abort_stream() {
            return;
        }
        let out = match &mut self.output {
            Some(o) => o,
            None => &mut ctx.out,
        };
        if let Some(conn) = self.proto.http() {
            let before = out.pending();
            conn.respond_error(err, ctx.now, out.head_mut(), &ctx.date, &shared.server);
            if ctx.obs.on() {
                ctx.obs.response(u32::MAX, err.status(), ctx.now);
                if ctx.obs.logs() {
                    let bytes = out.pending() - before;
                    let head = RequestHead::default();
                    ctx.obs
                        .log_entry(u32::MAX, err.status(), ctx.now, &head, &[], 0, bytes);
                }
            }
        }
        // Whatever was buffered can no longer be trusted.
        if let Some(input) = &mut self.input {
            input.start = input.end;
            input.parse = input.end;
            input.body_start = 0;
        }
        self.spill = None;
        self.parked = None;
    }

    /// Writes output left from an earlier batch.
    fn flush_pending(&mut self, ctx: &mut ThreadCtx) -> io::Result<()> {
        if let Some(out) = &mut self.output {
            if write_out(&self.fd, out, &mut ctx.obs)? {
                self.output = None;
                self.proto.set_write_pending(false, ctx.now);
            } else {
                self.proto.set_write_pending(true, ctx.now);
            }
        }
        Ok(())
    }

    /// Writes this batch's responses (in `ctx.out`) with one syscall; what
    /// the socket does not take moves into the connection.
    fn flush_new(&mut self, ctx: &mut ThreadCtx) -> io::Result<()> {
        if let Some(out) = &mut self.output {
            // Responses were appended behind older pending output.
            if write_out(&self.fd, out, &mut ctx.obs)? {
                self.output = None;
                self.proto.set_write_pending(false, ctx.now);
            }
            return Ok(());
        }
        if ctx.out.is_empty() {
            return Ok(());
        }
        if !write_out(&self.fd, &mut ctx.out, &mut ctx.obs)? {
            self.output = Some(Box::new(std::mem::take(&mut ctx.out)));
            self.proto.set_write_pending(true, ctx.now);
        }
        Ok(())
    }

    /// Decides what the loop does, and gives the buffer back if it is empty.
    fn settle(&mut self, shared: &Shared, ctx: &mut ThreadCtx, next: Next) -> Next {
        if self.proto.is_closing() && self.output.is_none() {
            return Next::Close;
        }
        if let Some(input) = &self.input {
            if input.start == input.end && input.body_start == 0 {
                if let Some(input) = self.input.take() {
                    shared.pool.give(&mut ctx.local, input.mem);
                }
            }
        }
        match next {
            Next::WaitBuffer if self.output.is_none() => Next::WaitBuffer,
            _ => Next::Keep {
                want_write: self.output.is_some(),
            },
        }
    }

    /// Answers what is buffered, then reads until the socket is drained.
    fn read_and_answer(&mut self, shared: &Shared, ctx: &mut ThreadCtx, peer_closed: bool) -> Next {
        let mut drained = false;
        loop {
            // With nothing unparsed, the machine has nothing to say unless
            // the peer closed: skip the poll (the common case before a read).
            let unparsed = self.input.as_ref().is_some_and(|i| i.parse < i.end);
            if unparsed || self.proto.is_read_closed() {
                self.answer(shared, ctx);
            }
            if self.is_streaming() && self.stream_backpressure(ctx).is_err() {
                return Next::Close;
            }
            let backlog = self.output.as_ref().map_or(0, |o| o.pending());
            if drained
                || self.stream_is_held()
                || self.proto.stops_reading()
                || backlog > OUTPUT_HIGH_WATER
            {
                return Next::Keep { want_write: false };
            }
            if let Err(next) = self.make_space(shared, ctx) {
                return next;
            }
            let Some(input) = self.input.as_mut() else {
                return Next::Close;
            };
            let spare = input.mem.len() - input.end;
            match socket::read(self.fd.as_fd(), &mut input.mem[input.end..]) {
                Ok(0) => match self.proto.http() {
                    Some(conn) => conn.on_read_closed(),
                    None => return Next::Close,
                },
                Ok(n) => {
                    if ctx.obs.on() {
                        ctx.obs.read(n);
                    }
                    input.end += n;
                    // man epoll(7): for stream sockets a short read means
                    // the receive queue is empty; no EAGAIN read is needed.
                    drained = n < spare && !peer_closed;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                Err(_) => return Next::Close,
            }
        }
    }

    /// The input buffer with room to read into: taken from the pool,
    /// compacted, or its request moved to a spill.
    fn make_space(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Result<(), Next> {
        if self.input.is_none() {
            let Some(mem) = shared.pool.take(&mut ctx.local) else {
                return Err(Next::WaitBuffer);
            };
            let mut input = Input {
                mem,
                start: 0,
                body_start: 0,
                body_end: 0,
                parse: 0,
                end: 0,
            };
            if let Some(parked) = self.parked.take() {
                let bytes = &parked.0;
                input.mem[..bytes.len()].copy_from_slice(bytes);
                input.end = bytes.len();
            }
            self.input = Some(input);
        }
        let Some(input) = self.input.as_mut() else {
            return Err(Next::Close);
        };
        if input.end == input.mem.len() && input.start > 0 {
            // Move the current request to the front.
            let shift = input.start;
            input.mem.copy_within(shift..input.end, 0);
            input.start = 0;
            input.parse -= shift;
            input.end -= shift;
            if input.body_start > 0 {
                input.body_start -= shift;
                input.body_end -= shift;
            }
        }
        if input.end == input.mem.len() {
            if input.body_start == 0 {
                // A head larger than the buffer: the parser's limits fit in
                // one buffer (config validates it), so this means the limits
                // were set above the buffer size.
                return Err(Next::Close);
            }
            // The body does not fit: move head and body so far to a spill,
            // admitted whole (its remaining bound reserved now) or not at
            // all: it waits, not reading, holding only this buffer.
            let head_len = input.body_start - input.start;
            let len = input.body_end - input.start;
            let rest = self.proto.body_remaining_bound().unwrap_or(0);
            let whole = len.saturating_add(usize::try_from(rest).unwrap_or(usize::MAX));
            let Some(grant) = shared.spills.reserve(whole) else {
                return Err(Next::WaitBuffer);
            };
            let mut data = Vec::with_capacity(whole);
            data.extend_from_slice(&input.mem[input.start..input.body_end]);
            let rest = input.end - input.parse;
            input.mem.copy_within(input.parse..input.end, 0);
            input.start = 0;
            input.parse = 0;
            input.end = rest;
            input.body_start = 0;
            input.body_end = 0;
            self.spill = Some(Box::new(Spill {
                data,
                head_len,
                _grant: grant,
            }));
        }
        Ok(())
    }

    /// Runs the protocol machine over the buffered input, answering every
    /// complete request, until it needs input, waits, or closes.
    fn answer(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        // ctx.head belongs to this connection's current request only if it
        // was parsed in this call; otherwise it is parsed again at dispatch.
        let mut head_fresh = false;
        loop {
            let empty: &[u8] = &[];
            let data = match &self.input {
                Some(i) => &i.mem[i.parse..i.end],
                None => empty,
            };
            let Some(conn) = self.proto.http() else {
                return;
            };
            let (consumed, event) = match conn.poll(data, ctx.now, &shared.limits, &mut ctx.head) {
                Ok(x) => x,
                Err(e) => {
                    self.respond_error(e, shared, ctx);
                    return;
                }
            };
            let Some(input) = self.input.as_mut() else {
                // No buffer: only Close or NeedInput can come from no input.
                return;
            };
            let at = input.parse;
            input.parse += consumed;
            if self.spill.is_some() || self.stream.is_some() {
                // The request lives in the spill, or its body is streamed:
                // parsed bytes are done with.
                input.start = input.parse;
            }
            match event {
                Event::Head { complete: true } => {
                    let start = input.start;
                    input.start = input.parse;
                    let req = Req::InBuffer { start, body: 0..0 };
                    self.dispatch(shared, ctx, req);
                }
                Event::Head { complete: false } => {
                    input.body_start = input.parse;
                    input.body_end = input.parse;
                    head_fresh = true;
                    let out = match &mut self.output {
                        Some(o) => o,
                        None => &mut ctx.out,
                    };
                    if ctx.head.expect_continue {
                        if let Some(conn) = self.proto.http() {
                            conn.send_continue(out.head_mut());
                        }
                    }
                    self.open_stream(shared, ctx);
                }
                Event::Body(range) => {
                    let (from, to) = (at + range.start, at + range.end);
                    if self.stream.is_some() {
                        self.stream_data(from..to, ctx, shared);
                        continue;
                    }
                    match &mut self.spill {
                        Some(spill) => spill.data.extend_from_slice(&input.mem[from..to]),
                        None => {
                            if from != input.body_end {
                                input.mem.copy_within(from..to, input.body_end);
                            }
                            input.body_end += to - from;
                        }
                    }
                }
                Event::BodyEnd => {
                    if self.stream.is_some() {
                        self.stream_end(ctx, shared);
                        head_fresh = false;
                        continue;
                    }
                    let req = match self.spill.take() {
                        Some(spill) => Req::Spilled(spill),
                        None => Req::InBuffer {
                            start: input.start,
                            body: input.body_start..input.body_end,
                        },
                    };
                    input.start = input.parse;
                    input.body_start = 0;
                    input.body_end = 0;
                    if !head_fresh && !self.reparse_head(&req, shared, ctx) {
                        return;
                    }
                    self.dispatch(shared, ctx, req);
                    head_fresh = false;
                }
                Event::NeedInput => {
                    if input.body_start == 0 && self.spill.is_none() && self.proto.is_idle() {
                        // Only empty lines were consumed: nothing in progress.
                        input.start = input.parse;
                    }
                    return;
                }
                Event::Waiting | Event::Close => return,
            }
        }
    }
}

/// Where a complete request's bytes are.
enum Req {
    /// In the input buffer: head at `start`, body (decoded) at `body`
    /// (empty: no body; otherwise the head ends where the body starts).
    InBuffer {
        start: usize,
        body: std::ops::Range<usize>,
    },
    /// In a spill.
    Spilled(Box<Spill>),
}

impl Connection {
    /// Parses the head again from its bytes (the body arrived in a later
    /// read, and `ctx.head` has served other connections since).
    fn reparse_head(&mut self, req: &Req, shared: &Shared, ctx: &mut ThreadCtx) -> bool {
        let bytes: &[u8] = match req {
            Req::InBuffer { start, body } => match &self.input {
                Some(i) => &i.mem[*start..body.start],
                None => return false,
            },
            Req::Spilled(spill) => &spill.data[..spill.head_len],
        };
        match HeadParser::new().parse(bytes, &shared.limits, &mut ctx.head) {
            Ok(true) => true,
            // The same bytes parsed before; anything else is a bug, answered as one.
            _ => {
                self.respond_error(ProtoError::BadRequestLine, shared, ctx);
                false
            }
        }
    }

    /// Runs the service for one complete request and makes sure it answered.
    fn dispatch(&mut self, shared: &Shared, ctx: &mut ThreadCtx, req: Req) {
        let (buf, body): (&[u8], &[u8]) = match &req {
            Req::InBuffer { start, body } => {
                let mem = &self.input.as_ref().expect("input present").mem;
                (&mem[*start..], &mem[body.clone()])
            }
            Req::Spilled(spill) => (&spill.data[..spill.head_len], &spill.data[spill.head_len..]),
        };
        let Some(conn) = self.proto.http() else {
            return;
        };
        let out = match &mut self.output {
            Some(o) => o,
            None => &mut ctx.out,
        };
        let mut upgraded: Option<Box<dyn WsSession>> = None;
        let mut sink = ResponseSink {
            conn,
            out,
            date: &ctx.date,
            server: &shared.server,
            now: ctx.now,
            sent: false,
            stopping: &ctx.stop_flag,
            route: u32::MAX,
            status: 0,
            link: Some(LinkCtx {
                upgrade: &mut upgraded,
                slot: &mut self.link,
                owner: &ctx.owner,
                key: ctx.key,
                timeout: shared.limits.request_timeout,
                backlog: shared.sse_backlog,
                counters: &shared.counters,
            }),
        };
        let before = if ctx.obs.logs() {
            sink.out.pending()
        } else {
            0
        };
        shared.service.call(
            &RawRequest {
                head: &ctx.head,
                buf,
                body,
                arena: &ctx.arena,
            },
            &mut sink,
        );
        if !sink.sent {
            sink.send(
                500,
                &[],
                Body::Static(b"the handler sent no response"),
                false,
            );
        }
        let noted = (
            sink.route,
            sink.status,
            if ctx.obs.logs() {
                sink.out.pending() - before
            } else {
                0
            },
        );
        // The handler has returned: nothing can point into the arena.
        ctx.arena.recycle();
        if let Some(session) = upgraded {
            // Nothing but frames follow the 101: the WebSocket state takes
            // the HTTP machine's place (see `Machine`).
            self.proto = Machine::Ws(WsState::new(session, ctx.now));
            if ctx.obs.on() {
                ctx.obs.count(Counter::WsOpened);
            }
        }
        // A suspended request is counted when its answer is delivered.
        if self.link.as_ref().map_or(true, |l| l.deadline.is_none()) {
            ctx.requests += 1;
            if ctx.obs.on() {
                if self.link.is_some() {
                    // A stream (SSE) began: its head is the response noted.
                    ctx.obs.count(Counter::SseOpened);
                }
                let (route, status, bytes) = noted;
                ctx.obs.response(route, status, ctx.now);
                if ctx.obs.logs() {
                    ctx.obs
                        .log_entry(route, status, ctx.now, &ctx.head, buf, body.len(), bytes);
                }
            }
        }
    }
}

/// Writes as much of `out` as the socket takes. `Ok(true)`: all written.
fn write_out(fd: &OwnedFd, out: &mut Outbox, obs: &mut Observe) -> io::Result<bool> {
    while !out.is_empty() {
        let r = match out.single() {
            Some(bytes) => socket::write(fd.as_fd(), bytes),
            None => {
                let mut iov = Vec::new();
                out.slices(&mut iov);
                socket::writev(fd.as_fd(), &iov)
            }
        };
        match r {
            Ok(n) => {
                if obs.on() {
                    obs.written(n);
                }
                out.advance(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Connection` is what every idle connection costs (the `shared`
    /// model preallocates one per slot): new per-connection state goes
    /// behind one pointer. Run with `--nocapture` to see the size.
    #[test]
    fn connection_stays_small() {
        let size = std::mem::size_of::<Connection>();
        let conn = std::mem::size_of::<Conn>();
        let ws = std::mem::size_of::<WsState>();
        let machine = std::mem::size_of::<Machine>();
        println!(
            "size_of::<Connection>() = {size}, size_of::<Conn>() = {conn}, \
             size_of::<WsState>() = {ws}, size_of::<Machine>() = {machine}"
        );
        assert!(size <= 224, "Connection grew to {size} bytes");
        // An upgraded connection keeps its WebSocket state in place of
        // the HTTP machine: neither may grow the other.
        assert!(ws <= conn, "WsState ({ws} B) outgrew Conn ({conn} B)");
        assert!(
            machine <= conn,
            "Machine ({machine} B) outgrew Conn ({conn} B)"
        );
    }
}
