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

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::encode::HeadMemo;
use crate::proto::{Conn, DateCache, Limits, RequestHead};
use crate::runtime::arena::{ArenaSlot, ArenaStats};
use crate::runtime::body_stream::StreamState;
use crate::runtime::link::{AsyncCounters, Link, Owner};
use crate::runtime::metrics::Counter;
use crate::runtime::observe::{Observe, Observers};
use crate::runtime::outbox::Outbox;
use crate::runtime::pool::{LocalPool, Pool, SpillBudget, SpillGrant};
use crate::runtime::proxy::{Expect, Header as ProxyHeader, ProxyPolicy};
use crate::runtime::service::Service;
use crate::runtime::websocket::WsLimits;

// Each concern in a file of its own; all work on `Connection`'s fields.
mod dispatch;
mod machine;
mod read;
mod stream;
mod timer;
mod write;
// An upgraded connection: frames in place of requests.
mod ws;

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
    /// Bytes queued for one client above which its connection stops
    /// parsing and reading (`http.max_pending_output`).
    pub max_output: usize,
    /// The most bytes ever queued for one client (read by `Stats`).
    pub output_peak: std::sync::atomic::AtomicUsize,
    /// PROXY protocol settings and counters, trusted proxies.
    pub proxy: ProxyPolicy,
    /// Metrics and access log, when on.
    pub observers: Observers,
}

/// During a graceful stop, an idle connection is closed once it has been
/// idle this long, not at once: a client that reuses it may have a request
/// on the way already, and closing then would reset it (the keep-alive
/// race). A client that sends within the grace is answered, with
/// `Connection: close`; the drain deadline closes whatever is left.
pub(crate) const STOP_IDLE_GRACE: Duration = Duration::from_secs(1);

/// A network thread's working state, reused for every connection it drives.
pub(crate) struct ThreadCtx {
    pub head: RequestHead,
    pub out: Outbox,
    pub date: DateCache,
    /// The last preformatted head encoded here (see `HeadMemo`).
    pub memo: HeadMemo,
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
    /// The most bytes this thread has queued for one client
    /// (`Shared::output_peak` is raised only when this is).
    output_peak: usize,
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
            memo: HeadMemo::default(),
            now,
            local: LocalPool::new(),
            requests: 0,
            stopping: false,
            stop_flag,
            base: (now, unix),
            owner,
            key: 0,
            arena: ArenaSlot::with_stats(shared.arenas.clone()),
            output_peak: 0,
            obs: Observe::new(&shared.observers, &shared.counters),
        }
    }

    /// Whether the server is stopping, as of now (not of this batch).
    pub fn stopping_now(&self) -> bool {
        self.stopping || self.stop_flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The clock read at the end of a batch (the loop's, for its wait):
    /// the batch's responses are recorded against it.
    #[inline]
    pub fn end_batch(&mut self) -> Instant {
        let now = Instant::now();
        if self.obs.on() {
            self.obs.end_batch(now);
        }
        now
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

impl Input {
    /// A buffer from the pool, holding nothing yet.
    #[inline]
    fn new(mem: Box<[u8]>) -> Input {
        Input {
            mem,
            start: 0,
            body_start: 0,
            body_end: 0,
            parse: 0,
            end: 0,
        }
    }
}

/// A request too large for one buffer: its head bytes, then its body.
/// `_grant` holds the budget for all of it, reserved up front.
struct Spill {
    data: Vec<u8>,
    head_len: usize,
    _grant: SpillGrant,
}

/// Rare per-connection state, behind one pointer: the bytes of a slow
/// head, kept off the pool (see `park_slow_head`), the client address
/// of the connection's PROXY header (see `runtime/proxy.rs`), and, with
/// the access log on, the peer's address (asked of the kernel once).
#[derive(Default)]
struct Parked {
    bytes: Option<Box<[u8]>>,
    client: Option<std::net::SocketAddr>,
    peer: Option<std::net::SocketAddr>,
}

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
    /// Whether its first bytes, not checked yet, must or must not be a
    /// PROXY header (decided at accept, see `runtime/proxy.rs`; one byte
    /// in what was padding: `Connection` does not grow).
    proxy: Expect,
    /// Two bytes the threading model keeps for this connection, in what
    /// would be padding (`per_core`: its write interest and early-read
    /// bookkeeping, see `per_core::Entry`; `shared` leaves them alone).
    pub(crate) model: [u8; 2],
    /// The bytes of a head that trickles in, kept off the pool between
    /// reads (see `park_slow_head`), and a PROXY header's client address.
    /// Boxed to keep `Connection` small (one pointer): both are rare.
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
            proxy: Expect::Http,
            model: [0; 2],
            parked: None,
            stream: None,
        }
    }

    /// What the connection's first bytes must be (`ProxyPolicy::at_accept`).
    pub fn expect(&mut self, proxy: Expect) {
        self.proxy = proxy;
    }

    /// Keeps `bytes` of a slow head off the pool.
    fn park_bytes(&mut self, bytes: Box<[u8]>) {
        self.parked.get_or_insert_with(Box::default).bytes = Some(bytes);
    }

    /// Takes the parked head bytes back, if any.
    fn take_parked_bytes(&mut self) -> Option<Box<[u8]>> {
        let parked = self.parked.as_mut()?;
        let bytes = parked.bytes.take();
        if parked.client.is_none() && parked.peer.is_none() {
            self.parked = None;
        }
        bytes
    }

    /// Reads the PROXY header off the front of the input, if it is all
    /// there. `Err(Next::Close)`: refused (counted): close, no answer.
    fn take_proxy_header(&mut self, shared: &Shared) -> Result<(), Next> {
        let Some(input) = self.input.as_mut() else {
            return Ok(());
        };
        if input.parse == input.end {
            return Ok(());
        }
        let bytes = &input.mem[input.parse..input.end];
        match crate::runtime::proxy::take_header(&shared.proxy, self.proxy, bytes) {
            ProxyHeader::NeedMore => Ok(()),
            ProxyHeader::Done { consumed, client } => {
                input.parse += consumed;
                input.start = input.parse;
                self.proxy = Expect::Http;
                if client.is_some() {
                    self.parked.get_or_insert_with(Box::default).client = client;
                }
                Ok(())
            }
            ProxyHeader::Refused(_) => Err(Next::Close),
        }
    }

    /// The client's address for the access log: the PROXY header's client,
    /// else the peer's, asked of the kernel once and kept.
    #[cold]
    #[inline(never)]
    fn log_remote(&mut self) -> Option<std::net::SocketAddr> {
        let parked = self.parked.get_or_insert_with(Box::default);
        if parked.client.is_none() && parked.peer.is_none() {
            parked.peer = crate::runtime::observe::peer(self.fd.as_fd());
        }
        parked.client.or(parked.peer)
    }

    /// Hands the access-log entries of this drive to the log's queue (out
    /// of line: `drive` stays small enough to inline into the loop).
    #[cold]
    #[inline(never)]
    fn send_log_entries(&mut self, ctx: &mut ThreadCtx) {
        ctx.obs.finish(|| match self.parked.as_deref() {
            // Known already (every drive after the connection's first).
            Some(p) if p.client.is_some() || p.peer.is_some() => p.client.or(p.peer),
            _ => self.log_remote(),
        });
    }

    /// Whether a stop may close it now: idle for [`STOP_IDLE_GRACE`].
    pub fn stop_may_close(&self, now: Instant, limits: &Limits) -> bool {
        if !self.is_idle() {
            return false;
        }
        let Some(deadline) = self.proto.deadline(limits) else {
            return true;
        };
        // The deadline of an idle connection is its idle start plus the
        // keep-alive timeout (or, before its first request, the request
        // timeout).
        let timeout = if self.proto.is_keepalive_idle() {
            limits.keepalive_timeout
        } else {
            limits.request_timeout
        };
        deadline
            .checked_sub(timeout)
            .map_or(true, |since| now >= since + STOP_IDLE_GRACE)
    }

    /// Whether a request body is streaming in to its route (see
    /// `connection/stream.rs`); not to be confused with
    /// `Machine::streams_response` (a response streaming out, SSE).
    fn streams_request_body(&self) -> bool {
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
            // The client left before its answer was delivered (a request
            // answered meanwhile but not yet written counts here too).
            link.settle(|c| &c.abandoned);
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

    /// Flushes, reads and answers; see the module doc. `peer_closed`: the
    /// event said the peer shut down its side (RDHUP/HUP): read to EOF
    /// rather than stop at a short read, since an edge-triggered socket
    /// reports that only once.
    pub fn drive(&mut self, shared: &Shared, ctx: &mut ThreadCtx, peer_closed: bool) -> Next {
        ctx.obs.begin();
        let next = self.drive_inner(shared, ctx, peer_closed);
        if ctx.obs.on() && ctx.obs.has_entries() {
            self.send_log_entries(ctx);
        }
        // ctx.out is the thread's scratch: whatever a closing connection
        // left there must never reach the next connection.
        ctx.out.clear();
        if ctx.stopping_now() && next != Next::Close && self.stop_may_close(ctx.now, &shared.limits)
        {
            // Idle through the grace of a stop. (A response sent during the
            // stop closes its connection by itself, `Connection: close`; an
            // idle connection driven by some other event, EPOLLOUT say, may
            // have a request on the way: it gets the grace.)
            ctx.obs.close_reason = Some(crate::runtime::metrics::CloseReason::Shutdown);
            return Next::Close;
        }
        next
    }

    pub(super) fn drive_inner(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        peer_closed: bool,
    ) -> Next {
        if self.is_ws() {
            return self.ws_drive(shared, ctx, peer_closed);
        }
        if peer_closed && self.link.is_some() {
            // As nginx does for a proxied request: a client that closes
            // while its request is with another thread has given up on it.
            return Next::Close;
        }
        loop {
            if self.flush_pending(ctx).is_err() {
                return Next::Close;
            }
            self.pump_stream(ctx);
            let (next, full) = self.read_and_answer(shared, ctx, peer_closed);
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
            if full && self.output.is_none() {
                // Parsing stopped at the output limit and the socket took
                // it all at once: no event will come for the requests still
                // buffered (edge-triggered), so go on with them now.
                continue;
            }
            return self.settle(shared, ctx, next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::websocket::WsState;

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
