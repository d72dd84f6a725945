//! Streamed request bodies: the service boundary for routes that take the
//! body as it arrives instead of whole.
//!
//! Contract: when a request with a body has its head parsed, the network
//! thread asks [`Service::open_stream`](super::Service::open_stream). A
//! service that streams this route returns a [`BodyStream`]; it may begin
//! the response at once through the [`BodySink`]. Then every run of body
//! bytes the decoder yields (chunk framing removed) goes to
//! [`BodyStream::data`] as soon as it is read, straight from the read
//! buffer, and [`BodyStream::end`] follows the last. The bytes are consumed
//! from the read buffer when `data` returns, so between reads the
//! connection holds no buffer and no body: memory does not grow with the
//! body's size, and `body_memory_limit` is not used.
//!
//! The response is written as the consumer goes: [`BodySink::start`] sends
//! the head (with `Content-Length` when the length is known, chunked
//! otherwise), [`BodySink::write`] body bytes, [`BodySink::finish`] ends
//! it. A response not finished when `end` returns is finished for it (one
//! never started gets 500). A `Content-Length` response given fewer bytes
//! than it declared closes the connection after them (the client sees the
//! message incomplete, RFC 9112 §8); bytes beyond it are dropped and close
//! it too. A response finished before the body ends waits for the body to
//! end (its bytes are still given to `data`) before the next request.
//!
//! Backpressure: while the connection's pending output (what the socket
//! did not take) is above a bound, the connection stops reading, so a
//! client that does not read its response is held back by TCP itself; the
//! write timeout then runs instead of the body timeout. A body error or a
//! body timeout after the response began closes the connection without an
//! error response (it would land inside the response). A disconnect drops
//! the consumer.
//!
//! Everything runs on the network thread that owns the connection: a
//! consumer must be quick. It is `Send` because in the `shared` model a
//! connection may be driven by any network thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::proto::encode::{
    encode_chunk, encode_last_chunk, BodyMode, EncodeCtx, HeadStart, Header, ResponseHead,
};
use crate::proto::{Conn, DateCache, ResponseBody};
use crate::runtime::arena::ArenaSlot;
use crate::runtime::outbox::{Body, Outbox};

/// A streamed body's consumer, made by the service at the head.
pub trait BodyStream: Send + 'static {
    /// The next decoded body bytes (never empty).
    fn data(&mut self, chunk: &[u8], res: &mut BodySink<'_>);
    /// The body is complete.
    fn end(&mut self, res: &mut BodySink<'_>);
}

/// Where a streamed response stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Phase {
    /// No head sent yet.
    #[default]
    NotStarted,
    /// `Content-Length` framing: bytes still owed.
    Length { left: u64 },
    /// Chunked framing.
    Chunked,
    /// Delimited by closing (an HTTP/1.0 client).
    UntilClose,
    /// A head with no body (HEAD, 204, 304, length 0): bytes are dropped.
    NoBody,
    /// Finished.
    Finished,
}

/// A streamed response's progress, kept by the connection between reads.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub phase: Phase,
    /// The connection closes after the response.
    pub close: bool,
}

impl Progress {
    /// Whether a response head has been sent.
    pub fn started(&self) -> bool {
        self.phase != Phase::NotStarted
    }
}

/// A streamed body on its connection: the consumer and the response.
pub(crate) struct StreamState {
    pub consumer: Box<dyn BodyStream>,
    pub progress: Progress,
}

/// Where a streamed-body route writes its response: straight into the
/// connection's output.
pub struct BodySink<'a> {
    pub(crate) conn: &'a mut Conn,
    pub(crate) out: &'a mut Outbox,
    pub(crate) date: &'a DateCache,
    pub(crate) server: &'a [u8],
    pub(crate) now: Instant,
    pub(crate) stopping: &'a AtomicBool,
    pub(crate) progress: &'a mut Progress,
    pub(crate) arena: &'a ArenaSlot,
}

impl BodySink<'_> {
    /// Sends the response head: `status`, the caller's `headers` (no
    /// framing fields, as for [`ResponseSink::send`](super::ResponseSink::send)),
    /// `Content-Length: n` for `length` `Some(n)`, chunked for `None`.
    /// `close`: close the connection after the response. `false` if a head
    /// was sent already.
    pub fn start(
        &mut self,
        status: u16,
        headers: &[Header<'_>],
        length: Option<u64>,
        close: bool,
    ) -> bool {
        if self.progress.started() {
            return false;
        }
        let body = match length {
            Some(0) => ResponseBody::Empty,
            Some(n) => ResponseBody::Length(n),
            None => ResponseBody::Chunked,
        };
        let close = close || self.stopping.load(Ordering::Acquire);
        let mode = self.conn.start_response(
            ResponseHead {
                status,
                start: HeadStart::Headers(headers),
                body,
            },
            close,
            self.out.head_mut(),
            EncodeCtx {
                date: self.date,
                server: self.server,
            },
        );
        self.progress.phase = match (mode, length) {
            (BodyMode::Raw, Some(n)) => Phase::Length { left: n },
            (BodyMode::Chunked, _) => Phase::Chunked,
            (BodyMode::UntilClose, _) => Phase::UntilClose,
            _ => Phase::NoBody,
        };
        true
    }

    /// Writes body bytes (copied into the output). `false` if no head was
    /// sent or the response is finished.
    pub fn write(&mut self, data: &[u8]) -> bool {
        match &mut self.progress.phase {
            Phase::Length { left } => {
                let n = usize::try_from(*left).map_or(data.len(), |l| l.min(data.len()));
                self.out.head_mut().extend_from_slice(&data[..n]);
                *left -= n as u64;
                if n < data.len() {
                    // More than declared: the rest cannot be framed.
                    self.progress.close = true;
                }
            }
            Phase::Chunked => {
                // An empty chunk would be the last chunk.
                if !data.is_empty() {
                    encode_chunk(self.out.head_mut(), data);
                }
            }
            Phase::UntilClose => self.out.head_mut().extend_from_slice(data),
            Phase::NoBody => {}
            Phase::NotStarted | Phase::Finished => return false,
        }
        true
    }

    /// Ends the response (the last chunk when chunked). `false` if no head
    /// was sent or it was finished already.
    pub fn finish(&mut self) -> bool {
        match self.progress.phase {
            Phase::Length { left } if left > 0 => self.progress.close = true,
            Phase::Chunked => encode_last_chunk(self.out.head_mut()),
            Phase::NotStarted | Phase::Finished => return false,
            _ => {}
        }
        self.progress.phase = Phase::Finished;
        true
    }

    /// Sends a whole response at once (head, `body`, end). `false` if a head
    /// was sent already.
    pub fn send(&mut self, status: u16, headers: &[Header<'_>], body: Body, close: bool) -> bool {
        if !self.start(status, headers, Some(body.len() as u64), close) {
            return false;
        }
        if matches!(self.progress.phase, Phase::Length { .. }) {
            self.out.push_body(body);
            self.progress.phase = Phase::Length { left: 0 };
        }
        self.finish()
    }

    /// Leaves the response unfinished (the handler failed midway): nothing
    /// more is written and the connection closes after the body, so the
    /// client sees the response incomplete rather than ended.
    pub fn abandon(&mut self) {
        if self.progress.started() {
            self.progress.close = true;
            self.progress.phase = Phase::Finished;
        }
    }

    /// Whether a response head has been sent.
    pub fn is_started(&self) -> bool {
        self.progress.started()
    }

    /// Whether the response is finished.
    pub fn is_finished(&self) -> bool {
        self.progress.phase == Phase::Finished
    }

    /// Output bytes waiting for the socket on this connection (written in
    /// this batch or left from earlier ones).
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// Scratch memory for this callback, reset when it returns (see
    /// `arena.rs`).
    pub fn arena(&self) -> &bumpalo::Bump {
        self.arena.get()
    }

    /// Completes what the consumer left undone once the body has ended:
    /// a response never started gets 500, one not finished is finished.
    /// Then the connection moves on (or closes).
    pub(crate) fn complete(&mut self) {
        if !self.progress.started() {
            self.send(
                500,
                &[],
                Body::Static(b"the handler sent no response"),
                false,
            );
        }
        self.finish();
        self.conn.finish_response(self.now, self.progress.close);
    }
}
