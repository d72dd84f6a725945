//! Driving a connection that was upgraded to WebSocket: the same socket,
//! read buffer and pending output as an HTTP connection, with frames in
//! place of requests. A child of `connection.rs` (it works on the
//! connection's fields); the session state is `runtime/websocket.rs`.
//!
//! Contract, as `Connection::drive` for HTTP: flush what is pending, queue
//! what senders on other threads left in the link (only while nothing is
//! pending, so a slow reader fills the bounded backlog and senders see
//! `Full`), decode and deliver every complete frame, read until the socket
//! is drained, write the batch with one syscall. Memory: the decoder
//! consumes everything but an incomplete frame header or control frame
//! (at most 131 bytes), which moves to an exact-size heap copy; the pooled
//! buffer goes back whenever the input is consumed, so an idle WebSocket
//! holds no read buffer.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::write::outbox;
use super::{ws_of, Connection, Next, Shared, ThreadCtx};
use crate::proto::ws_frame::{encode_frame, CloseCode, Item, Opcode};
use crate::runtime::link::{Link, Mail};
use crate::runtime::metrics::{CloseReason, Counter};
use crate::runtime::websocket::{Phase, Tick, WsIo, WsMessage, CLOSE_TIMEOUT};
use crate::sys::socket;
use std::net::Shutdown;

impl Connection {
    /// Drives an upgraded connection; see the module doc.
    pub(super) fn ws_drive(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        peer_closed: bool,
    ) -> Next {
        if self.flush_pending(ctx).is_err() {
            return Next::Close;
        }
        self.ws_open(shared, ctx);
        self.ws_pump(ctx);
        let next = self.ws_read(shared, ctx, peer_closed);
        if next == Next::Close {
            // Whatever the last batch answered (a close frame) still goes.
            let _ = self.flush_new(ctx);
            return Next::Close;
        }
        if self.flush_new(ctx).is_err() {
            return Next::Close;
        }
        self.ws_settle(shared, ctx, next)
    }

    /// A link of this connection was posted: its sender queued frames.
    pub(super) fn ws_on_link(
        &mut self,
        link: &Arc<Link>,
        shared: &Shared,
        ctx: &mut ThreadCtx,
    ) -> Next {
        if self.link.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            // Taken (or left for later) by the pump below; this clears the
            // link's queued flag so the next frame posts again.
            let mut mail = Mail::default();
            link.take(0, &mut mail);
        }
        self.ws_drive(shared, ctx, false)
    }

    /// The sweep: pings, the missing pong, idle and close timeouts, a
    /// stalled write, and the close 1001 of a graceful stop.
    pub(super) fn ws_timer(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        let now = Tick::of(ctx.now);
        let limits = shared.ws;
        let stopping = ctx.stopping_now();
        let Some(ws) = ws_of(&mut self.proto) else {
            return Next::Close;
        };
        if ws
            .core
            .write_since
            .is_some_and(|t| t.elapsed(now) >= shared.limits.write_timeout)
        {
            // Output stalled past write_timeout: the peer does not read.
            ctx.obs.close_reason = Some(CloseReason::WriteStall);
            return Next::Close;
        }
        let out = outbox(&mut self.output, &mut ctx.out).head_mut();
        let core = &mut ws.core;
        match core.phase {
            Phase::Open => {
                let sent = if stopping {
                    // RFC 6455 §7.4.1: 1001, the server is going away.
                    core.start_close(out, 1001, "server stopping", now)
                } else if limits
                    .ping
                    .is_some_and(|p| core.last_ping.elapsed(now) >= p)
                {
                    if core.awaiting_pong {
                        core.start_close(out, 1001, "no pong", now)
                    } else {
                        encode_frame(out, Opcode::Ping, b"");
                        core.awaiting_pong = true;
                        core.last_ping = now;
                        true
                    }
                } else if limits
                    .idle
                    .is_some_and(|i| core.last_message.elapsed(now) >= i)
                {
                    core.start_close(out, 1001, "idle", now)
                } else {
                    false
                };
                if sent && ctx.obs.on() {
                    ctx.obs.count(Counter::WsFramesSent);
                }
                if !core.is_open() {
                    if let Some(link) = &self.link {
                        link.close();
                    }
                }
            }
            Phase::CloseSent { since } | Phase::Closed { since } => {
                if since.elapsed(now) >= CLOSE_TIMEOUT {
                    return Next::Close;
                }
            }
        }
        self.ws_drive(shared, ctx, false)
    }

    /// Calls `on_open` once, before anything else reaches the session.
    fn ws_open(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        let Some(ws) = ws_of(&mut self.proto) else {
            return;
        };
        if ws.core.opened {
            return;
        }
        ws.core.opened = true;
        let out = outbox(&mut self.output, &mut ctx.out).head_mut();
        let mut io = WsIo {
            core: &mut ws.core,
            out,
            link: &mut self.link,
            owner: &ctx.owner,
            key: ctx.key,
            limits: &shared.ws,
            counters: &shared.counters,
            now: Tick::of(ctx.now),
            sent: 0,
        };
        ws.session.on_open(&mut io);
        let sent = io.sent;
        if ctx.obs.on() {
            ctx.obs.add(Counter::WsFramesSent, sent);
        }
    }

    /// Queues the frames senders left in the link, while nothing waits to
    /// be written.
    fn ws_pump(&mut self, ctx: &mut ThreadCtx) {
        if self.output.is_some() {
            return;
        }
        let (Some(link), Some(ws)) = (self.link.clone(), ws_of(&mut self.proto)) else {
            return;
        };
        if !link.has_events() {
            return;
        }
        let mut mail = Mail::default();
        link.take(usize::MAX, &mut mail);
        let now = Tick::of(ctx.now);
        let out = ctx.out.head_mut();
        let mut sent = 0;
        for frame in &mail.events {
            if !ws.core.is_open() {
                break;
            }
            sent += 1;
            // A sender's close frame starts the close handshake.
            if frame.first() == Some(&(0x80 | 0x8)) {
                out.extend_from_slice(frame);
                ws.core.phase = Phase::CloseSent { since: now };
                link.close();
                break;
            }
            out.extend_from_slice(frame);
            ws.core.last_message = now;
        }
        if ctx.obs.on() {
            ctx.obs.add(Counter::WsFramesSent, sent);
        }
    }

    /// Decodes what is buffered, then reads until the socket is drained.
    fn ws_read(&mut self, shared: &Shared, ctx: &mut ThreadCtx, peer_closed: bool) -> Next {
        let mut drained = false;
        loop {
            if self.input.as_ref().is_some_and(|i| i.parse < i.end) {
                self.ws_decode(shared, ctx);
            }
            let backlog = self.output.as_ref().map_or(0, |o| o.pending());
            if drained || backlog > shared.max_output {
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
                Ok(0) => {
                    // The peer's end of stream: with no close frame, the
                    // connection ends abnormally (1006).
                    return Next::Close;
                }
                Ok(n) => {
                    input.end += n;
                    drained = n < spare && !peer_closed;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => drained = true,
                Err(_) => return Next::Close,
            }
        }
    }

    /// Runs the decoder over the buffered input and acts on every item.
    fn ws_decode(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        let (Some(ws), Some(input)) = (ws_of(&mut self.proto), self.input.as_mut()) else {
            return;
        };
        let out = outbox(&mut self.output, &mut ctx.out).head_mut();
        let now = Tick::of(ctx.now);
        let max_message = shared.ws.max_message;
        // Frames sent and received in this run, for the metrics.
        let (mut sent, mut received) = (0u64, 0u64);
        loop {
            if let Phase::Closed { .. } = ws.core.phase {
                // Done: whatever comes now is discarded.
                input.parse = input.end;
                break;
            }
            let data = &mut input.mem[input.parse..input.end];
            let at_header = !ws.core.decoder.in_frame();
            let (n, item) = match ws.core.decoder.decode(data, max_message) {
                Ok(x) => x,
                Err(code) => {
                    sent += u64::from(ws.core.fail(out, code.code(), now));
                    input.parse = input.end;
                    break;
                }
            };
            // A frame header was consumed: one frame received (its payload
            // may come in later pieces, not counted again).
            received += u64::from(at_header && n > 0);
            let base = input.parse;
            input.parse += n;
            let bytes = |r: std::ops::Range<usize>| base + r.start..base + r.end;
            match item {
                Item::NeedInput => break,
                Item::Data {
                    payload,
                    text,
                    first,
                    last,
                } => {
                    let r = bytes(payload);
                    if !ws.core.is_open() {
                        continue;
                    }
                    if !(first && last) {
                        ws.core.push_fragment(first, text, &input.mem[r.clone()]);
                        if !last {
                            continue;
                        }
                    }
                    ws.core.last_message = now;
                    // A fragmented message was gathered by `push_fragment`
                    // (and is freed after delivery); a whole one is read
                    // in place.
                    let fragments = if first && last {
                        None
                    } else {
                        ws.core.message.take()
                    };
                    let (text, data) = match &fragments {
                        Some(f) => (f.text, &f.data[..]),
                        None => (text, &input.mem[r]),
                    };
                    // The one check of a message that came whole (the
                    // decoder checks pieces), which also gives the `&str`.
                    let msg = if text {
                        match std::str::from_utf8(data) {
                            Ok(t) => WsMessage::Text(t),
                            Err(_) => {
                                sent += u64::from(ws.core.fail(
                                    out,
                                    CloseCode::InvalidData.code(),
                                    now,
                                ));
                                input.parse = input.end;
                                break;
                            }
                        }
                    } else {
                        WsMessage::Binary(data)
                    };
                    let mut io = WsIo {
                        core: &mut ws.core,
                        out: &mut *out,
                        link: &mut self.link,
                        owner: &ctx.owner,
                        key: ctx.key,
                        limits: &shared.ws,
                        counters: &shared.counters,
                        now,
                        sent: 0,
                    };
                    ws.session.on_message(&mut io, msg);
                    sent += io.sent;
                }
                Item::Ping(r) => {
                    // §5.5.2: a pong with the ping's payload, unless we
                    // are closing (§5.5.1: nothing after our close frame).
                    if ws.core.is_open() {
                        encode_frame(out, Opcode::Pong, &input.mem[bytes(r)]);
                        sent += 1;
                    }
                }
                Item::Pong(_) => ws.core.awaiting_pong = false,
                Item::Close { code, reason } => {
                    ws.core.peer_close = Some(code);
                    if ws.core.is_open() {
                        // §5.5.1: answer with a close frame, echoing the code.
                        match code {
                            Some(c) => crate::proto::ws_frame::encode_close(out, c, ""),
                            None => encode_frame(out, Opcode::Close, b""),
                        }
                        sent += 1;
                    }
                    let _ = reason;
                    ws.core.phase = Phase::Closed { since: now };
                }
            }
        }
        if ctx.obs.on() {
            ctx.obs.add(Counter::WsFramesSent, sent);
            ctx.obs.add(Counter::WsFramesReceived, received);
        }
        if !ws.core.is_open() {
            if let Some(link) = &self.link {
                link.close();
            }
            ws.report_close();
        }
        if input.parse == input.end {
            input.parse = 0;
            input.end = 0;
        }
        input.start = input.parse;
    }

    /// After a batch: shut our side once the close handshake is done and
    /// flushed; give the read buffer back (an incomplete frame moves to an
    /// exact-size copy).
    fn ws_settle(&mut self, shared: &Shared, ctx: &mut ThreadCtx, next: Next) -> Next {
        let Some(ws) = ws_of(&mut self.proto) else {
            return Next::Close;
        };
        if let Phase::Closed { .. } = ws.core.phase {
            if self.output.is_none() && !ws.core.shut {
                ws.core.shut = true;
                // The server closes the TCP connection first (§7.1.1); the
                // peer's end of stream (or CLOSE_TIMEOUT) ends it here.
                if socket::shutdown(self.fd.as_fd(), Shutdown::Write).is_err() {
                    return Next::Close;
                }
            }
        }
        if let Some(input) = &self.input {
            if input.parse < input.end {
                let bytes = input.mem[input.parse..input.end].into();
                self.park_bytes(bytes);
            }
            if let Some(input) = self.input.take() {
                shared.pool.give(&mut ctx.local, input.mem);
            }
        }
        match next {
            Next::WaitBuffer if self.output.is_none() => Next::WaitBuffer,
            _ => Next::Keep {
                want_write: self.output.is_some(),
            },
        }
    }
}
