//! The connection's side of streamed request bodies (`body_stream.rs` has
//! the contract): opening the consumer at the head, handing it each run of
//! decoded bytes straight from the read buffer, ending it, and holding
//! reading back while the response's output waits for the peer.

use std::io;
use std::ops::Range;

use super::write::outbox;
use super::{Connection, Shared, ThreadCtx};
use crate::runtime::body_stream::{BodySink, Progress, StreamState};
use crate::runtime::service::RawRequest;

/// A connection streaming a body stops reading while more than this much
/// of its output waits for the socket: a client that does not read its
/// response is held back by TCP, and the server holds at most this plus
/// one read's worth of output for it.
const STREAM_HIGH_WATER: usize = 16 * 1024;

impl Connection {
    /// A head with a body was parsed into `ctx.head`: asks the service
    /// whether it streams this body; if so, the head's bytes are done with.
    pub(super) fn open_stream(&mut self, shared: &Shared, ctx: &mut ThreadCtx) {
        let (Some(input), Some(conn)) = (&mut self.input, self.proto.http()) else {
            return;
        };
        let out = outbox(&mut self.output, &mut ctx.out);
        let mut progress = Progress::default();
        let mut sink = BodySink {
            conn,
            out,
            date: &ctx.date,
            server: &shared.server,
            now: ctx.now,
            stopping: &ctx.stop_flag,
            progress: &mut progress,
            arena: &ctx.arena,
        };
        let raw = RawRequest {
            head: &ctx.head,
            buf: &input.mem[input.start..],
            body: &[],
            arena: &ctx.arena,
        };
        let consumer = shared.service.open_stream(&raw, &mut sink);
        ctx.arena.recycle();
        let Some(consumer) = consumer else {
            debug_assert!(!progress.started(), "a response for an unstreamed body");
            return;
        };
        input.start = input.parse;
        input.body_start = 0;
        input.body_end = 0;
        self.stream = Some(Box::new(StreamState { consumer, progress }));
    }

    /// Gives the body bytes at `range` of the read buffer to the consumer.
    pub(super) fn stream_data(
        &mut self,
        range: Range<usize>,
        ctx: &mut ThreadCtx,
        shared: &Shared,
    ) {
        let (Some(input), Some(state), Some(conn)) =
            (&self.input, self.stream.as_deref_mut(), self.proto.http())
        else {
            return;
        };
        let out = outbox(&mut self.output, &mut ctx.out);
        let mut sink = BodySink {
            conn,
            out,
            date: &ctx.date,
            server: &shared.server,
            now: ctx.now,
            stopping: &ctx.stop_flag,
            progress: &mut state.progress,
            arena: &ctx.arena,
        };
        state.consumer.data(&input.mem[range], &mut sink);
        ctx.arena.recycle();
    }

    /// The body ended: the consumer's last call, then the response is
    /// completed and the connection moves on to the next request.
    pub(super) fn stream_end(&mut self, ctx: &mut ThreadCtx, shared: &Shared) {
        let Some(mut state) = self.stream.take() else {
            return;
        };
        let Some(conn) = self.proto.http() else {
            return;
        };
        let out = outbox(&mut self.output, &mut ctx.out);
        let mut sink = BodySink {
            conn,
            out,
            date: &ctx.date,
            server: &shared.server,
            now: ctx.now,
            stopping: &ctx.stop_flag,
            progress: &mut state.progress,
            arena: &ctx.arena,
        };
        state.consumer.end(&mut sink);
        sink.complete();
        ctx.arena.recycle();
        ctx.requests += 1;
    }

    /// An error (bad framing, body timeout) while a body streams: with the
    /// response begun, no error response can follow, so the connection just
    /// closes. Returns whether it did; the stream is dropped either way.
    pub(super) fn abort_stream(&mut self) -> bool {
        let Some(state) = self.stream.take() else {
            return false;
        };
        if !state.progress.started() {
            return false;
        }
        if let Some(conn) = self.proto.http() {
            conn.abort();
        }
        if let Some(input) = &mut self.input {
            input.start = input.end;
            input.parse = input.end;
        }
        true
    }

    /// Writes this batch's output once it passes the bound, so that a fast
    /// client's streamed echo never piles up in the thread's scratch.
    pub(super) fn stream_backpressure(&mut self, ctx: &mut ThreadCtx) -> io::Result<()> {
        if self.output.is_none() && ctx.out.pending() > STREAM_HIGH_WATER {
            self.flush_new(ctx)?;
        }
        Ok(())
    }

    /// Whether reading is held back: a body streams and its output waits.
    pub(super) fn stream_is_held(&self) -> bool {
        self.streams_request_body()
            && self
                .output
                .as_ref()
                .is_some_and(|o| o.pending() > STREAM_HIGH_WATER)
    }
}
