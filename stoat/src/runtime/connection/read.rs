//! Reading and parsing: the input buffer taken from the pool (or made
//! room in, or its request moved to a spill), reads until the socket is
//! drained, and the protocol machine run over what is buffered, each
//! complete request dispatched in order; parse errors answered.

use std::io;
use std::os::fd::AsFd;

use super::write::outbox;
use super::{Connection, Input, Next, Shared, Spill, ThreadCtx};
use crate::proto::encode::EncodeCtx;
use crate::proto::{Event, ProtoError};
use crate::runtime::proxy::Expect;
use crate::sys::socket;

impl Connection {
    /// Answers what is buffered, then reads until the socket is drained.
    /// The flag: it stopped because the output is over its limit.
    pub(super) fn read_and_answer(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        peer_closed: bool,
    ) -> (Next, bool) {
        let mut drained = false;
        loop {
            if self.proxy != Expect::Http {
                // The PROXY header comes before any HTTP: the machine sees
                // nothing until it is read (or known not to be there).
                if let Err(next) = self.take_proxy_header(shared) {
                    return (next, false);
                }
            }
            // With nothing unparsed, the machine has nothing to say unless
            // the peer closed: skip the poll (the common case before a read).
            let unparsed = self.input.as_ref().is_some_and(|i| i.parse < i.end);
            let mut full = false;
            if self.proxy == Expect::Http && (unparsed || self.proto.is_read_closed()) {
                full = self.answer(shared, ctx);
            }
            if self.streams_request_body() && self.stream_backpressure(ctx).is_err() {
                return (Next::Close, false);
            }
            // Output left from earlier stops reading too (a client that
            // does not read while nothing new was parsed); only `full`
            // (requests left unparsed) asks to go on once it is written.
            let over = self.output.is_some() && self.output_full(shared, ctx);
            if drained || self.stream_is_held() || self.proto.stops_reading() || full || over {
                return (Next::Keep { want_write: false }, full);
            }
            if let Err(next) = self.make_space(shared, ctx) {
                return (next, false);
            }
            let Some(input) = self.input.as_mut() else {
                return (Next::Close, false);
            };
            let spare = input.mem.len() - input.end;
            match socket::read(self.fd.as_fd(), &mut input.mem[input.end..]) {
                Ok(0) if self.proxy == Expect::Header => {
                    // Ended before its PROXY header was complete.
                    crate::runtime::proxy::count_truncated(&shared.proxy);
                    return (Next::Close, false);
                }
                Ok(0) if self.proxy == Expect::NoHeader => {
                    // Too short to tell: not a header; HTTP decides (an
                    // incomplete request at end of stream closes).
                    self.proxy = Expect::Http;
                    if let Some(conn) = self.proto.http() {
                        conn.on_read_closed();
                    }
                }
                Ok(0) => match self.proto.http() {
                    Some(conn) => conn.on_read_closed(),
                    None => return (Next::Close, false),
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
                Err(_) => return (Next::Close, false),
            }
        }
    }

    /// The input buffer with room to read into: taken from the pool,
    /// compacted, or its request moved to a spill. The common cases (a
    /// fresh buffer, or one with room) inline; the rest in `make_room`.
    #[inline]
    pub(super) fn make_space(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Result<(), Next> {
        // `parked` may hold only the client's address (kept for the access
        // log): no parked bytes, the fresh buffer is all there is to do.
        if self.input.is_none() && self.parked.as_ref().map_or(true, |p| p.bytes.is_none()) {
            let Some(mem) = shared.pool.take(&mut ctx.local) else {
                return Err(Next::WaitBuffer);
            };
            self.input = Some(Input::new(mem));
        }
        match &self.input {
            Some(input) if input.end < input.mem.len() => Ok(()),
            _ => self.make_room(shared, ctx),
        }
    }

    /// [`Connection::make_space`] past its common cases: parked bytes
    /// put back, a full buffer compacted or its request spilled.
    #[inline(never)]
    fn make_room(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Result<(), Next> {
        if self.input.is_none() {
            let Some(mem) = shared.pool.take(&mut ctx.local) else {
                return Err(Next::WaitBuffer);
            };
            let mut input = Input::new(mem);
            if let Some(bytes) = self.take_parked_bytes() {
                input.mem[..bytes.len()].copy_from_slice(&bytes);
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
    /// complete request, until it needs input, waits, or closes, or the
    /// output queued for the client passes its limit (then `true`: the
    /// rest stays buffered, unparsed, until the client reads).
    pub(super) fn answer(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> bool {
        // ctx.head belongs to this connection's current request only if it
        // was parsed in this call; otherwise it is parsed again at dispatch.
        let mut head_fresh = false;
        // The client has not read what it asked for so far: parse nothing
        // more. (A body streaming in to its route is held back by its own,
        // smaller mark instead: `stream_is_held`.)
        if (self.output.is_some() || !ctx.out.is_empty())
            && self.stream.is_none()
            && self.output_full(shared, ctx)
        {
            return true;
        }
        loop {
            let empty: &[u8] = &[];
            let data = match &self.input {
                Some(i) => &i.mem[i.parse..i.end],
                None => empty,
            };
            let Some(conn) = self.proto.http() else {
                return false;
            };
            let (consumed, event) = match conn.poll(data, ctx.now, &shared.limits, &mut ctx.head) {
                Ok(x) => x,
                Err(e) => {
                    self.respond_error(e, shared, ctx);
                    return false;
                }
            };
            let Some(input) = self.input.as_mut() else {
                // No buffer: only Close or NeedInput can come from no input.
                return false;
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
                    self.dispatch_head(shared, ctx, start);
                    if self.output_full(shared, ctx) {
                        return true;
                    }
                }
                Event::Head { complete: false } => {
                    input.body_start = input.parse;
                    input.body_end = input.parse;
                    head_fresh = true;
                    let out = outbox(&mut self.output, &mut ctx.out);
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
                        return false;
                    }
                    self.dispatch(shared, ctx, req);
                    head_fresh = false;
                    if self.output_full(shared, ctx) {
                        return true;
                    }
                }
                Event::NeedInput => {
                    if input.body_start == 0 && self.spill.is_none() && self.proto.is_idle() {
                        // Only empty lines were consumed: nothing in progress.
                        input.start = input.parse;
                    }
                    return false;
                }
                Event::Waiting | Event::Close => return false,
            }
        }
    }

    pub(super) fn respond_error(&mut self, err: ProtoError, shared: &Shared, ctx: &mut ThreadCtx) {
        if ctx.obs.close_reason.is_none() {
            ctx.obs.close_reason = Some(crate::runtime::metrics::CloseReason::Error);
        }
        if self.abort_stream() {
            return;
        }
        let out = outbox(&mut self.output, &mut ctx.out);
        if let Some(conn) = self.proto.http() {
            let before = out.pending();
            let enc = EncodeCtx {
                date: &ctx.date,
                server: &shared.server,
            };
            match shared.service.error_body(err.status(), err.message()) {
                Some((ty, body)) => {
                    conn.respond_error_with(err, ty, &body, ctx.now, out.head_mut(), enc)
                }
                None => conn.respond_error(err, ctx.now, out.head_mut(), enc),
            }
            if ctx.obs.on() {
                ctx.obs.response_now(u32::MAX, err.status());
                if ctx.obs.logs() {
                    let bytes = out.pending() - before;
                    let head = crate::proto::RequestHead::default();
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
        self.take_parked_bytes();
    }
}

/// Where a complete request's bytes are.
pub(super) enum Req {
    /// In the input buffer: head at `start`, body (decoded) at `body`
    /// (empty: no body; otherwise the head ends where the body starts).
    InBuffer {
        start: usize,
        body: std::ops::Range<usize>,
    },
    /// In a spill.
    Spilled(Box<Spill>),
}
