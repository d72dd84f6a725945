//! Routes that take the request body as it arrives ([`Server::post_streaming`]
//! and friends), for uploads too large to hold whole.
//!
//! Contract (the runtime's is in `runtime/body_stream.rs`): the route's
//! [`StreamingHandler`] runs when the head is parsed, with the [`Request`]
//! (its body empty) and a [`BodyWriter`]; it may start the response at
//! once, and returns the [`BodyHandler`] that gets each
//! [`BodyChunk::Data`] as it is decoded (chunk framing removed), then
//! [`BodyChunk::End`]. The chunks are slices of the read buffer, valid for
//! the call only: copy what must be kept. The response streams through
//! the writer (`Content-Length` when the length is known, chunked
//! otherwise) and is finished for the handler after `End` if it did not
//! finish it (500 if it never started one). Everything runs on the network
//! thread, which must not block. While the client does not read the
//! response, the connection stops reading the body (TCP holds the client
//! back). `413` for a `Content-Length` over `max_body_size` is still sent
//! before the handler runs; a chunked body is cut off at `max_body_size`
//! (413 if the response has not started, else the connection closes).
//!
//! A panic in a handler answers 500 if no response was started; otherwise
//! the response is left unfinished and the connection closes after the
//! body. Requests without a body reach the same handler, `End` at once.
//!
//! ```no_run
//! use stoat::app::{BodyChunk, BodyWriter, Request, Response, Server};
//!
//! // Echo: the body back, as it comes.
//! fn echo(req: &Request, res: &mut BodyWriter) -> impl FnMut(BodyChunk, &mut BodyWriter) {
//!     res.start(Response::new(200), req.content_length());
//!     |chunk: BodyChunk, res: &mut BodyWriter| match chunk {
//!         BodyChunk::Data(bytes) => {
//!             res.write(bytes);
//!         }
//!         BodyChunk::End => {
//!             res.finish();
//!         }
//!     }
//! }
//!
//! fn main() -> Result<(), stoat::app::StartError> {
//!     Server::default().post_streaming("/echo", echo).run()
//! }
//! ```
//!
//! [`Server::post_streaming`]: super::Server::post_streaming

use std::panic::{self, AssertUnwindSafe};

use crate::app::{IntoResponse, Request, Response};
use crate::runtime::{Body, BodySink, BodyStream};

/// What a [`BodyHandler`] is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyChunk<'a> {
    /// The next bytes of the body, decoded (never empty).
    Data(&'a [u8]),
    /// The body is complete.
    End,
}

/// Writes a streamed route's response into the connection's output.
pub struct BodyWriter<'s, 'a> {
    sink: &'s mut BodySink<'a>,
}

impl BodyWriter<'_, '_> {
    /// Sends the response head: `head`'s status and header fields, with
    /// `Content-Length: n` for `length` `Some(n)`, chunked for `None`. A body
    /// in `head` is written as the first bytes (counted in `length`).
    /// `false` if a head was sent already.
    pub fn start(&mut self, head: Response, length: Option<u64>) -> bool {
        let sink = &mut *self.sink;
        head.emit(|status, headers, body, close| {
            let started = sink.start(status, headers, length, close);
            if started && !body.is_empty() {
                sink.write(body.as_bytes());
            }
            started
        })
    }

    /// Writes body bytes. `false` if no head was sent or the response is
    /// finished.
    pub fn write(&mut self, bytes: &[u8]) -> bool {
        self.sink.write(bytes)
    }

    /// Ends the response. A `Content-Length` response short of its length
    /// closes the connection after it. `false` if no head was sent or it
    /// was finished already.
    pub fn finish(&mut self) -> bool {
        self.sink.finish()
    }

    /// Sends a whole response at once (an early `400`, say). `false` if a
    /// head was sent already.
    pub fn respond(&mut self, response: impl IntoResponse) -> bool {
        let sink = &mut *self.sink;
        response
            .into_response()
            .emit(|status, headers, body, close| sink.send(status, headers, body, close))
    }

    /// Whether the response head has been sent.
    pub fn is_started(&self) -> bool {
        self.sink.is_started()
    }

    /// Whether the response is finished.
    pub fn is_finished(&self) -> bool {
        self.sink.is_finished()
    }

    /// Output bytes waiting for the client on this connection.
    pub fn pending(&self) -> usize {
        self.sink.pending()
    }

    /// Scratch memory for this call, reset when it returns.
    pub fn arena(&self) -> &bumpalo::Bump {
        self.sink.arena()
    }
}

/// Takes a streamed body's chunks; see the module doc.
pub trait BodyHandler: Send + 'static {
    /// The next chunk (or the end) of the body.
    fn on_chunk(&mut self, chunk: BodyChunk<'_>, res: &mut BodyWriter<'_, '_>);
}

impl<F> BodyHandler for F
where
    F: FnMut(BodyChunk<'_>, &mut BodyWriter<'_, '_>) + Send + 'static,
{
    fn on_chunk(&mut self, chunk: BodyChunk<'_>, res: &mut BodyWriter<'_, '_>) {
        self(chunk, res)
    }
}

/// A streamed-body route: runs at the head and returns the body's handler.
pub trait StreamingHandler: Send + Sync + 'static {
    /// Starts handling `req` (its body is empty; it comes to the handler
    /// returned).
    fn open(&self, req: &Request<'_>, res: &mut BodyWriter<'_, '_>) -> Box<dyn BodyHandler>;
}

impl<F, B> StreamingHandler for F
where
    F: Fn(&Request<'_>, &mut BodyWriter<'_, '_>) -> B + Send + Sync + 'static,
    B: BodyHandler,
{
    fn open(&self, req: &Request<'_>, res: &mut BodyWriter<'_, '_>) -> Box<dyn BodyHandler> {
        Box::new(self(req, res))
    }
}

/// The runtime's consumer for a streamed route: catches the handler's
/// panics.
struct Adapter {
    /// `None` after a panic: the rest of the body is dropped.
    handler: Option<Box<dyn BodyHandler>>,
}

/// Runs `handler` for `req`'s head and returns the body's consumer.
pub(crate) fn open(
    handler: &dyn StreamingHandler,
    req: &Request<'_>,
    sink: &mut BodySink<'_>,
) -> Box<dyn BodyStream> {
    let opened = panic::catch_unwind(AssertUnwindSafe(|| {
        handler.open(req, &mut BodyWriter { sink: &mut *sink })
    }));
    let handler = match opened {
        Ok(h) => Some(h),
        Err(_) => {
            failed(sink);
            None
        }
    };
    Box::new(Adapter { handler })
}

/// After a panic: 500 if nothing was sent, else the response is cut off.
fn failed(sink: &mut BodySink<'_>) {
    if !sink.is_started() {
        sink.send(500, &[], Body::Empty, false);
    } else {
        sink.abandon();
    }
}

impl Adapter {
    fn call(&mut self, chunk: BodyChunk<'_>, sink: &mut BodySink<'_>) {
        let Some(handler) = &mut self.handler else {
            return;
        };
        let ran = panic::catch_unwind(AssertUnwindSafe(|| {
            handler.on_chunk(chunk, &mut BodyWriter { sink: &mut *sink })
        }));
        if ran.is_err() {
            self.handler = None;
            failed(sink);
        }
    }
}

impl BodyStream for Adapter {
    fn data(&mut self, chunk: &[u8], res: &mut BodySink<'_>) {
        self.call(BodyChunk::Data(chunk), res);
    }

    fn end(&mut self, res: &mut BodySink<'_>) {
        self.call(BodyChunk::End, res);
    }
}
