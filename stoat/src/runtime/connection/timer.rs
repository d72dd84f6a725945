//! Timers: what the loop's sweep does to a connection: protocol
//! deadlines (408, keep-alive expiry, write stall), slow heads parked off
//! the pool, a suspended request's 503 at its deadline, SSE heartbeats.

use std::sync::Arc;

use super::{Connection, Next, Shared, ThreadCtx};
use crate::proto::conn::Timeout;
use crate::proto::encode::Header;
use crate::runtime::link::Link;
use crate::runtime::metrics::CloseReason;
use crate::runtime::outbox::Body;
use crate::runtime::proxy::Expect;

/// The SSE heartbeat: a comment line (WHATWG HTML, "Server-sent events":
/// lines starting with a colon are ignored by clients).
pub(super) const HEARTBEAT: &[u8] = b":\n\n";

impl Connection {
    /// Acts on the protocol deadline (called by the timer sweep).
    pub fn on_timer(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        ctx.obs.begin();
        let next = self.on_timer_inner(shared, ctx);
        if ctx.obs.on() {
            ctx.obs.finish(|| self.log_remote());
        }
        ctx.out.clear();
        if next == Next::Close && self.proxy == Expect::Header {
            // The request timeout ran out before its PROXY header was whole.
            crate::runtime::proxy::count_truncated(&shared.proxy);
        }
        next
    }

    pub(super) fn on_timer_inner(&mut self, shared: &Shared, ctx: &mut ThreadCtx) -> Next {
        if self.is_ws() {
            return self.ws_timer(shared, ctx);
        }
        if ctx.stopping_now() && self.stop_may_close(ctx.now, &shared.limits) {
            return Next::Close;
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
    pub(super) fn park_slow_head(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        if !self.proto.is_reading_head() || self.output.is_some() || self.spill.is_some() {
            return;
        }
        let Some(input) = &self.input else {
            return;
        };
        if input.body_start != 0 || input.start != input.parse {
            return;
        }
        let bytes = input.mem[input.start..input.end].into();
        self.park_bytes(bytes);
        if let Some(input) = self.input.take() {
            shared.pool.give(&mut ctx.local, input.mem);
        }
    }

    /// Deadlines of a request that is with another thread: a suspended
    /// request unanswered at its deadline gets 503 (its late answer is
    /// discarded); an idle stream gets a heartbeat comment.
    pub(super) fn on_link_timer(
        &mut self,
        link: &Arc<Link>,
        shared: &Shared,
        ctx: &mut ThreadCtx,
    ) -> Next {
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
                link.settle(|c| &c.expired);
                const LATE: &str = "the request was not answered in time\n";
                let page = shared.service.error_body(503, LATE.trim_end());
                self.late_answer(shared, ctx, link, |sink| {
                    // RFC 9110 §15.6.4: 503, the server cannot answer now.
                    let retry = Header {
                        name: "Retry-After",
                        value: b"1",
                    };
                    match page {
                        Some((ty, body)) => {
                            let ct = Header {
                                name: "Content-Type",
                                value: ty.as_bytes(),
                            };
                            sink.send(503, &[ct, retry], Body::Bytes(body), false)
                        }
                        None => sink.send(503, &[retry], Body::Static(LATE.as_bytes()), false),
                    }
                });
                ctx.requests += 1;
            }
            None => {
                if self.output.is_some() || !self.proto.streams_response() {
                    return Next::Keep {
                        want_write: self.output.is_some(),
                    };
                }
                if ctx.now.duration_since(link.last_beat()) < shared.sse_heartbeat {
                    return Next::Keep { want_write: false };
                }
                link.beat(ctx.now);
                // Through the stream's coding, as the events go.
                let chunked = self.proto.stream_is_chunked();
                super::dispatch::write_stream(Some(link), chunked, HEARTBEAT, ctx.out.head_mut());
            }
        }
        self.drive_inner(shared, ctx, false)
    }
}
