//! Dispatch: one complete request handed to the service with its
//! response sink (built here, in one place, for every answer), and the
//! answers that come back later through the connection's link (a
//! suspended or pipelined request's response, stream events).

use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use super::read::Req;
use super::write::outbox;
use super::{Connection, Machine, Next, Shared, ThreadCtx};
use crate::proto::encode::{encode_chunk, HeadMemo};
use crate::proto::{Conn, DateCache, HeadParser, ProtoError};
use crate::runtime::link::{Link, Mail};
use crate::runtime::metrics::Counter;
use crate::runtime::outbox::{Body, Outbox};
use crate::runtime::proxy::ConnInfo;
use crate::runtime::service::{LinkCtx, RawRequest, ResponseSink};
use crate::runtime::websocket::{WsSession, WsState};

impl Connection {
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
            link.settle(|c| &c.resumed);
            self.late_answer(shared, ctx, link, |sink| {
                shared.service.answer_late(answer, sink);
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
    pub(super) fn late_answer(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        link: &Link,
        f: impl FnOnce(&mut ResponseSink<'_>),
    ) {
        let Some(conn) = self.proto.http() else {
            return;
        };
        let out = outbox(&mut self.output, &mut ctx.out);
        let mut sink = response_sink(
            conn,
            out,
            &ctx.date,
            &mut ctx.memo,
            ctx.now,
            &ctx.stop_flag,
            None,
        );
        sink.route = link.route;
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
            let bytes = if ctx.obs.logs() {
                sink.out.pending() - before
            } else {
                0
            };
            ctx.obs.response(route, status, start);
            if ctx.obs.logs() {
                // The request's bytes are gone: the log gets no method or target.
                let head = crate::proto::RequestHead::default();
                ctx.obs
                    .log_entry(route, status, start, &head, &[], 0, bytes);
            }
        }
    }

    /// Encodes taken stream events (and the stream's end) into the output.
    pub(super) fn write_events(&mut self, mail: &Mail, ctx: &mut ThreadCtx) {
        if !self.proto.streams_response() {
            return;
        }
        let out = outbox(&mut self.output, &mut ctx.out);
        let chunked = self.proto.stream_is_chunked();
        let link = self.link.as_deref();
        for event in &mail.events {
            write_stream(link, chunked, event, out.head_mut());
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
            if let Some(link) = &self.link {
                // The coding's trailer goes before the last chunk.
                link.finish_coding(|b| put_stream(chunked, b, out.head_mut()));
            }
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
    pub(super) fn pump_stream(&mut self, ctx: &mut ThreadCtx) {
        if self.output.is_some() || !self.proto.streams_response() {
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

    /// Runs the service for one complete request and makes sure it answered.
    #[inline]
    pub(super) fn dispatch(&mut self, shared: &Shared, ctx: &mut ThreadCtx, req: Req) {
        // Two copies: without metrics and log, no check of them is left
        // on the request's path.
        if ctx.obs.on() {
            self.dispatch_with::<true>(shared, ctx, req);
        } else {
            self.dispatch_with::<false>(shared, ctx, req);
        }
    }

    /// [`Connection::dispatch`] of a request without a body whose head is
    /// in the input buffer at `start`: the read loop's usual case, inlined
    /// there (no call), observed or not.
    #[inline(always)]
    pub(super) fn dispatch_head(&mut self, shared: &Shared, ctx: &mut ThreadCtx, start: usize) {
        let req = Req::InBuffer { start, body: 0..0 };
        if ctx.obs.on() {
            self.dispatch_in::<true>(shared, ctx, req);
        } else {
            self.dispatch_in::<false>(shared, ctx, req);
        }
    }

    /// [`Connection::dispatch`], `OBSERVED` when metrics or the access log
    /// are on (`ctx.obs.on()`).
    #[inline(never)]
    fn dispatch_with<const OBSERVED: bool>(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        req: Req,
    ) {
        self.dispatch_in::<OBSERVED>(shared, ctx, req);
    }

    /// The body of [`Connection::dispatch_with`] and
    /// [`Connection::dispatch_head`].
    #[inline(always)]
    fn dispatch_in<const OBSERVED: bool>(
        &mut self,
        shared: &Shared,
        ctx: &mut ThreadCtx,
        req: Req,
    ) {
        let (buf, body): (&[u8], &[u8]) = match &req {
            Req::InBuffer { start, body } => {
                let mem = &self.input.as_ref().expect("input present").mem;
                // No body: nothing to index (and, inlined with `0..0`,
                // no bounds to check).
                let body = if body.is_empty() {
                    &[][..]
                } else {
                    &mem[body.clone()]
                };
                (&mem[*start..], body)
            }
            Req::Spilled(spill) => (&spill.data[..spill.head_len], &spill.data[spill.head_len..]),
        };
        let Some(conn) = self.proto.http() else {
            return;
        };
        let out = outbox(&mut self.output, &mut ctx.out);
        let mut upgraded: Option<Box<dyn WsSession>> = None;
        let link = LinkCtx {
            upgrade: &mut upgraded,
            slot: &mut self.link,
            owner: &ctx.owner,
            key: ctx.key,
            shared,
        };
        let mut sink = response_sink(
            conn,
            out,
            &ctx.date,
            &mut ctx.memo,
            ctx.now,
            &ctx.stop_flag,
            Some(link),
        );
        let logs = OBSERVED && ctx.obs.logs();
        let before = if logs { sink.out.pending() } else { 0 };
        shared.service.call(
            &RawRequest {
                head: &ctx.head,
                buf,
                body,
                arena: &ctx.arena,
                conn: ConnInfo::live(
                    self.fd.as_fd(),
                    self.parked.as_ref().and_then(|p| p.client.as_ref()),
                    &shared.proxy.trusted,
                ),
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
            if logs { sink.out.pending() - before } else { 0 },
        );
        // The handler has returned: nothing can point into the arena.
        ctx.arena.recycle();
        if let Some(session) = upgraded {
            // Nothing but frames follow the 101: the WebSocket state takes
            // the HTTP machine's place (see `Machine`).
            self.proto = Machine::Ws(WsState::new(session, ctx.now));
            if OBSERVED {
                ctx.obs.count(Counter::WsOpened);
            }
        }
        // A suspended request is counted when its answer is delivered.
        if self.link.as_ref().map_or(true, |l| l.deadline.is_none()) {
            ctx.requests += 1;
            if OBSERVED {
                if self.link.is_some() {
                    // A stream (SSE) began: its head is the response noted.
                    ctx.obs.count(Counter::SseOpened);
                }
                let (route, status, bytes) = noted;
                ctx.obs.response_now(route, status);
                if logs {
                    ctx.obs
                        .log_entry(route, status, ctx.now, &ctx.head, buf, body.len(), bytes);
                }
            }
        }
    }

    /// Parses the head again from its bytes (the body arrived in a later
    /// read, and `ctx.head` has served other connections since).
    pub(super) fn reparse_head(&mut self, req: &Req, shared: &Shared, ctx: &mut ThreadCtx) -> bool {
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
}

/// The sink a handler answers into: the one place a [`ResponseSink`] is
/// built (a request dispatched now, with its `link` to suspend or stream;
/// a late answer or a deadline's 503, without).
#[inline]
#[allow(clippy::too_many_arguments)]
fn response_sink<'a>(
    conn: &'a mut Conn,
    out: &'a mut Outbox,
    date: &'a DateCache,
    memo: &'a mut HeadMemo,
    now: Instant,
    stopping: &'a AtomicBool,
    link: Option<LinkCtx<'a>>,
) -> ResponseSink<'a> {
    ResponseSink {
        conn,
        out,
        date,
        // The date cache's copy of `shared.server`: its tail is found
        // without comparing the value (`DateCache::tail`).
        server: date.server(),
        memo,
        now,
        sent: false,
        stopping,
        link,
        route: u32::MAX,
        status: 0,
    }
}

/// Writes `bytes` of a streamed response (an event, a heartbeat) into
/// `out`: through the stream's coding when its link has one (so a
/// compressed stream covers every byte), in one chunk when `chunked`.
pub(super) fn write_stream(link: Option<&Link>, chunked: bool, bytes: &[u8], out: &mut Vec<u8>) {
    match link {
        Some(link) => link.coded(bytes, |b| put_stream(chunked, b, out)),
        None => put_stream(chunked, bytes, out),
    }
}

/// `bytes` as they go on the wire: a chunk, or as they are.
fn put_stream(chunked: bool, bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.is_empty() {
        // An empty chunk would end the body.
        return;
    }
    if chunked {
        encode_chunk(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
}
