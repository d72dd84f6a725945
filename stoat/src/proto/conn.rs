//! One HTTP/1.1 connection as a sans-IO state machine.
//!
//! Contract: the caller owns the bytes. It passes the unconsumed input to
//! [`Conn::poll`] with `now`, and gets back how many bytes were consumed and
//! an [`Event`]: a request head, body bytes (a range of the input), the end
//! of a body, "need more input", "a request is with the application" or
//! "close". It answers with [`Conn::respond`] (or [`Conn::respond_error`]),
//! which encodes the response head into the caller's output buffer and
//! decides keep-alive. [`Conn::deadline`] says when the caller must call
//! [`Conn::on_timeout`]. No socket, no clock, no allocation per request.
//!
//! Order: pipelined requests are taken one at a time. Once a request is
//! complete ([`Event::Head`] with `complete`, or [`Event::BodyEnd`]),
//! `poll` parses nothing more until the response has been started, so
//! responses leave strictly in request order (RFC 9112 §9.3.2) even when a
//! handler answers later from another thread.

use std::ops::Range;
use std::time::Instant;

use crate::proto::body::{BodyDecoder, BodyKind};
use crate::proto::encode::{
    self, BodyMode, EncodeCtx, Framing, HeadMemo, HeadStart, Header, MemoBytes, Preset,
    ResponseBody, ResponseHead,
};
use crate::proto::{HeadParser, Limits, Method, ProtoError, RequestHead, Version};

/// The crate's short name for [`ConnEvent`].
pub(crate) use self::ConnEvent as Event;

/// What [`Conn::poll`] found: a connection's next protocol event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// Nothing to do until more bytes arrive (or the peer closes).
    NeedInput,
    /// A request head was parsed into the caller's [`RequestHead`]; the
    /// consumed bytes are the head. `complete`: the request has no body and
    /// is ready to answer. Otherwise [`Event::Body`] and [`Event::BodyEnd`]
    /// follow; if `head.expect_continue`, call [`Conn::send_continue`] to
    /// ask the client for the body.
    Head {
        /// The request has no body: answer it now.
        complete: bool,
    },
    /// Body bytes: a range of the input given to `poll`.
    Body(Range<usize>),
    /// The body is complete: the request is ready to answer.
    BodyEnd,
    /// A request is with the application; nothing is parsed until it is
    /// answered.
    Waiting,
    /// Nothing more will be read: close once the output is flushed.
    Close,
}

/// What the caller does when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Not yet: the deadline moved.
    None,
    /// Close without a response (idle keep-alive connection, or a write
    /// that stalled).
    Close,
    /// Send this error response, then close (408 for a slow head or body).
    Respond(ProtoError),
}

/// The connection's reading state (RFC 9112 message parsing phases).
#[derive(Debug, Clone)]
enum State {
    /// Between requests; `first`: no request yet on this connection.
    Idle { since: Instant, first: bool },
    /// Receiving a request head whose first byte arrived at `started`.
    ReadingHead { started: Instant },
    /// Receiving a body; `last` is when body bytes last arrived.
    ReadingBody { decoder: BodyDecoder, last: Instant },
    /// A complete request is with the application.
    Dispatched,
    /// A chunked response is being streamed (SSE); ends with [`Conn::end_stream`].
    Streaming,
    /// No more requests: close once the output is flushed.
    Closing,
}

/// One connection's protocol state.
#[derive(Debug, Clone)]
pub struct Conn {
    state: State,
    parser: HeadParser,
    /// The current request allows the connection to persist.
    keep_alive: bool,
    /// The current request is HEAD.
    head_request: bool,
    /// The current request is HTTP/1.0.
    http10: bool,
    /// The current request asked for 100-continue and has not had it.
    continue_pending: bool,
    /// The peer will send nothing more (EOF / half-close).
    read_closed: bool,
    /// Output is waiting to be written since this instant.
    write_since: Option<Instant>,
}

impl Conn {
    /// A new connection accepted at `now`.
    pub fn new(now: Instant) -> Conn {
        Conn {
            state: State::Idle {
                since: now,
                first: true,
            },
            parser: HeadParser::new(),
            keep_alive: true,
            head_request: false,
            http10: false,
            continue_pending: false,
            read_closed: false,
            write_since: None,
        }
    }

    /// Reads from `input` (the bytes received and not yet consumed).
    /// Returns the bytes consumed and what was found. After an error, send
    /// [`Conn::respond_error`] and close.
    #[inline]
    pub fn poll(
        &mut self,
        input: &[u8],
        now: Instant,
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<(usize, Event), ProtoError> {
        match &mut self.state {
            State::Idle { .. } | State::ReadingHead { .. } => {
                self.poll_head(input, now, limits, head)
            }
            _ => self.poll_rest(input, now),
        }
    }

    /// [`Conn::poll`] past the head: a body, or a request being answered
    /// (out of line, so the head's path inlines into the caller).
    #[inline(never)]
    fn poll_rest(&mut self, input: &[u8], now: Instant) -> Result<(usize, Event), ProtoError> {
        match &mut self.state {
            State::Idle { .. } | State::ReadingHead { .. } => Ok((0, Event::NeedInput)),
            State::ReadingBody { decoder, last } => {
                // Framing-only steps (a chunk-size line) are taken here, so
                // every event returned carries data or news.
                let mut at = 0;
                loop {
                    let d = decoder.decode(&input[at..])?;
                    let data = at + d.data.start..at + d.data.end;
                    at += d.consumed;
                    if !data.is_empty() {
                        *last = now;
                        // Body bytes came without waiting: no 100 needed.
                        self.continue_pending = false;
                        return Ok((at, Event::Body(data)));
                    }
                    if d.done {
                        self.state = State::Dispatched;
                        self.continue_pending = false;
                        return Ok((at, Event::BodyEnd));
                    }
                    if d.consumed == 0 {
                        break;
                    }
                }
                if self.read_closed {
                    // The peer closed mid-body: the request can never complete.
                    self.state = State::Closing;
                    return Ok((at, Event::Close));
                }
                Ok((at, Event::NeedInput))
            }
            State::Dispatched | State::Streaming => Ok((0, Event::Waiting)),
            State::Closing => Ok((0, Event::Close)),
        }
    }

    #[inline]
    fn poll_head(
        &mut self,
        input: &[u8],
        now: Instant,
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<(usize, Event), ProtoError> {
        let idle = matches!(self.state, State::Idle { .. });
        if idle {
            // RFC 9112 §2.2: a server SHOULD ignore at least one empty line
            // (CRLF) received prior to the request-line. While idle, such
            // lines are consumed here; before a request line the head parser
            // skips them itself, so spans stay relative to `input`. A lone
            // trailing CR stays: it may be the start of the next CRLF.
            // Most heads begin with their method: one compare skips the scan.
            if !matches!(input.first(), Some(&b) if b > b'\r') {
                let mut skipped = 0;
                while skipped < input.len() {
                    match input[skipped] {
                        b'\n' => skipped += 1,
                        b'\r' if input.get(skipped + 1) == Some(&b'\n') => skipped += 2,
                        _ => break,
                    }
                }
                if skipped == input.len() || input[skipped..] == *b"\r" {
                    return Ok((skipped, self.idle_input_end()));
                }
            }
        }
        // A head that arrived whole goes from idle straight to its request
        // (an error: to the error's response, which closes); only a part of
        // one makes the connection wait in `ReadingHead`.
        if !self.parser.parse(input, limits, head)? {
            if idle {
                // A connection's first head is timed from the accept: bytes
                // that sat unread (waiting for a buffer) do not restart the
                // clock.
                let started = match self.state {
                    State::Idle { since, first: true } => since,
                    _ => now,
                };
                self.state = State::ReadingHead { started };
            }
            if self.read_closed {
                // EOF inside a head: nothing to answer (the client cannot be
                // waiting for a response to half a request).
                self.state = State::Closing;
                return Ok((input.len(), Event::Close));
            }
            return Ok((0, Event::NeedInput));
        }
        self.keep_alive = head.keep_alive;
        self.head_request = head.method == Method::Head;
        self.http10 = head.version == Version::Http10;
        let consumed = head.len;
        let complete = match head.body {
            BodyKind::Empty => {
                self.state = State::Dispatched;
                true
            }
            kind => {
                self.continue_pending = head.expect_continue;
                self.state = State::ReadingBody {
                    decoder: BodyDecoder::new(kind, limits),
                    last: now,
                };
                false
            }
        };
        Ok((consumed, Event::Head { complete }))
    }

    /// The event for an idle connection with no request bytes buffered.
    fn idle_input_end(&mut self) -> Event {
        if self.read_closed {
            self.state = State::Closing;
            Event::Close
        } else {
            Event::NeedInput
        }
    }

    /// Writes `100 Continue` if the current request expects it and its body
    /// has not started (RFC 9110 §10.1.1). Returns whether it wrote.
    pub fn send_continue(&mut self, out: &mut Vec<u8>) -> bool {
        let pending = self.continue_pending;
        if pending {
            encode::encode_continue(out);
            self.continue_pending = false;
        }
        pending
    }

    /// The peer will send nothing more (read returned 0, or RDHUP). Requests
    /// already buffered are still parsed and answered; then the connection
    /// closes.
    pub fn on_read_closed(&mut self) {
        self.read_closed = true;
    }

    /// Whether the peer has closed its side.
    pub fn is_read_closed(&self) -> bool {
        self.read_closed
    }

    /// Encodes the response head for the current request into `out` and
    /// returns what the caller writes after it (the body bytes for
    /// [`BodyMode::Raw`], chunks and [`Conn::end_stream`] for
    /// [`BodyMode::Chunked`]). `headers` must not hold framing fields
    /// (see [`Header`]). Decides keep-alive: `Connection: close` is sent
    /// when the request or `close` asks for it, or the peer has closed.
    #[inline]
    pub fn respond(
        &mut self,
        head: ResponseHead<'_>,
        close: bool,
        now: Instant,
        out: &mut Vec<u8>,
        ctx: EncodeCtx<'_>,
    ) -> BodyMode {
        self.respond_small(head, close, now, out, ctx, &[])
    }

    /// [`Conn::respond`] for a response whose whole body is `body`, at
    /// most [`encode::SMALL_BODY`] bytes (`head.body` its length): the body
    /// is written with the head when one follows it (see
    /// [`encode::encode_response`]), so nothing is left to write. An empty
    /// `body` is [`Conn::respond`].
    #[inline]
    pub fn respond_small(
        &mut self,
        head: ResponseHead<'_>,
        close: bool,
        now: Instant,
        out: &mut Vec<u8>,
        ctx: EncodeCtx<'_>,
        body: &[u8],
    ) -> BodyMode {
        let (keep, framing) = self.framing(close);
        let mode = encode::encode_response(out, head, framing, ctx, body);
        self.responded(mode, keep, now);
        mode
    }

    /// [`Conn::respond_small`] for a `200` whose start is `preset` (a
    /// preset of `Response`), through the thread's [`HeadMemo`]: the same
    /// bytes, handed to `copy` whole when the last such response was the
    /// same.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn respond_preset(
        &mut self,
        preset: &'static Preset,
        body: ResponseBody,
        close: bool,
        now: Instant,
        out: &mut Vec<u8>,
        ctx: EncodeCtx<'_>,
        small: &'static [u8],
        memo: &mut HeadMemo,
        copy: impl FnOnce(&mut Vec<u8>, &MemoBytes),
    ) -> BodyMode {
        let (keep, framing) = self.framing(close);
        match memo.find(preset, body, framing, ctx, small) {
            Ok(found) => {
                // What `responded` does for `None` and `Raw`, the only
                // modes remembered; before the copy, so that `now` and
                // `keep` need not outlive it.
                self.continue_pending = false;
                self.state = self.next_request(keep, now);
                copy(out, found);
                found.mode
            }
            Err(miss) => {
                let mode = memo.fill(miss, out, body, framing, ctx.date, ctx.server, small);
                self.responded(mode, keep, now);
                mode
            }
        }
    }

    /// Whether the connection persists after the response being sent, and
    /// the encoder's framing facts.
    #[inline]
    fn framing(&self, close: bool) -> (bool, Framing) {
        // A response before the body was read leaves unread body bytes on
        // the connection: close rather than guess where the next request
        // starts.
        let body_unread = matches!(self.state, State::ReadingBody { .. });
        let keep = self.keep_alive && !close && !self.read_closed && !body_unread;
        let framing = Framing {
            close: !keep,
            head_request: self.head_request,
            http10: self.http10,
        };
        (keep, framing)
    }

    /// Moves on once a response head is encoded.
    #[inline]
    fn responded(&mut self, mode: BodyMode, keep: bool, now: Instant) {
        self.continue_pending = false;
        self.state = match mode {
            BodyMode::Chunked => {
                self.keep_alive = keep;
                State::Streaming
            }
            BodyMode::UntilClose => {
                self.keep_alive = false;
                State::Streaming
            }
            BodyMode::None | BodyMode::Raw => self.next_request(keep, now),
        };
    }

    /// Encodes a response head for the current request without changing
    /// the reading state: for a route that streams the request body, whose
    /// response may begin while the body is still arriving (the body is
    /// read to its end either way). Decides keep-alive as
    /// [`Conn::respond`] does; the caller writes the body as the returned
    /// mode says and calls [`Conn::finish_response`] once the request body
    /// has ended ([`Event::BodyEnd`]) and the response is complete.
    pub fn start_response(
        &mut self,
        head: ResponseHead<'_>,
        close: bool,
        out: &mut Vec<u8>,
        ctx: EncodeCtx<'_>,
    ) -> BodyMode {
        let keep = self.keep_alive && !close && !self.read_closed;
        let framing = Framing {
            close: !keep,
            head_request: self.head_request,
            http10: self.http10,
        };
        let mode = encode::encode_head(out, head, framing, ctx);
        self.continue_pending = false;
        self.keep_alive = keep && mode != BodyMode::UntilClose;
        mode
    }

    /// Completes a response begun with [`Conn::start_response`] after the
    /// request body ended: moves on to the next request, or to closing
    /// (`close`: the response could not be completed as framed).
    pub fn finish_response(&mut self, now: Instant, close: bool) {
        if let State::Dispatched = self.state {
            self.state = self.next_request(self.keep_alive && !close, now);
        }
    }

    /// Stops the connection without a response (one has begun and cannot
    /// be replaced by an error response): close once the output is flushed.
    pub fn abort(&mut self) {
        self.state = State::Closing;
    }

    /// Ends a streamed (chunked) response: writes the last chunk and moves
    /// on to the next request (or to closing).
    pub fn end_stream(&mut self, now: Instant, out: &mut Vec<u8>) {
        if let State::Streaming = self.state {
            // A keep-alive stream is chunked; one to an HTTP/1.0 client ends
            // by closing.
            if self.keep_alive {
                encode::encode_last_chunk(out);
            }
            self.state = self.next_request(self.keep_alive, now);
        }
    }

    fn next_request(&mut self, keep: bool, now: Instant) -> State {
        self.parser.reset();
        if keep {
            State::Idle {
                since: now,
                first: false,
            }
        } else {
            State::Closing
        }
    }

    /// Encodes the error response for `err` (its status, a short text body,
    /// `Connection: close`) and moves to closing.
    pub fn respond_error(
        &mut self,
        err: ProtoError,
        now: Instant,
        out: &mut Vec<u8>,
        ctx: EncodeCtx<'_>,
    ) {
        let msg = err.message().as_bytes();
        self.respond_error_with(err, "text/plain; charset=utf-8", msg, now, out, ctx);
    }

    /// [`Conn::respond_error`] with a body of the caller's (the service's
    /// error page): the status and `Connection: close` stay the error's.
    pub fn respond_error_with(
        &mut self,
        err: ProtoError,
        content_type: &str,
        msg: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        ctx: EncodeCtx<'_>,
    ) {
        let headers = [Header {
            name: "Content-Type",
            value: content_type.as_bytes(),
        }];
        // An error may come before the head was understood: never a HEAD reply.
        self.head_request = false;
        let head = ResponseHead {
            status: err.status(),
            start: HeadStart::Headers(&headers),
            body: ResponseBody::Length(msg.len() as u64),
        };
        let mode = self.respond(head, true, now, out, ctx);
        if mode == BodyMode::Raw {
            out.extend_from_slice(msg);
        }
        self.state = State::Closing;
    }

    /// Tells whether output is waiting to be written, so that a write that
    /// makes no progress for `write_timeout` is cut off. Call with `true`
    /// when a write leaves bytes pending or makes progress, `false` when
    /// the output is flushed.
    pub fn set_write_pending(&mut self, pending: bool, now: Instant) {
        if !pending && self.write_since.is_some() {
            if let State::ReadingBody { last, .. } = &mut self.state {
                // Reading stopped while output waited (backpressure of a
                // streamed body): the body's idle clock starts again now.
                *last = now;
            }
        }
        self.write_since = pending.then_some(now);
    }

    /// Whether the connection is done and should close once flushed.
    pub fn is_closing(&self) -> bool {
        matches!(self.state, State::Closing)
    }

    /// Whether the connection is between requests with nothing in progress
    /// (an idle keep-alive connection: it needs no buffer).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle { .. }) && self.write_since.is_none()
    }

    /// Whether the connection is idle between requests after serving at
    /// least one (a keep-alive connection, which may be closed to make room
    /// for a new one; one that never sent a request may have it in flight).
    pub fn is_keepalive_idle(&self) -> bool {
        matches!(self.state, State::Idle { first: false, .. }) && self.write_since.is_none()
    }

    /// While a body is being read: the most body bytes still to come.
    pub fn body_remaining_bound(&self) -> Option<u64> {
        match &self.state {
            State::ReadingBody { decoder, .. } => Some(decoder.remaining_bound()),
            _ => None,
        }
    }

    /// Whether part of a request head has arrived and the rest has not.
    pub fn is_reading_head(&self) -> bool {
        matches!(self.state, State::ReadingHead { .. })
    }

    /// Whether a response body is being streamed.
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming)
    }

    /// Whether a streamed body is chunked (false: an HTTP/1.0 client, whose
    /// body is delimited by closing, gets the bytes as they are).
    pub fn stream_is_chunked(&self) -> bool {
        !self.http10
    }

    /// Whether a request is with the application.
    pub fn is_dispatched(&self) -> bool {
        matches!(self.state, State::Dispatched | State::Streaming)
    }

    /// The next instant at which [`Conn::on_timeout`] must be called.
    pub fn deadline(&self, limits: &Limits) -> Option<Instant> {
        let read = match &self.state {
            State::Idle { since, first: true } => Some(*since + limits.request_timeout),
            State::Idle {
                since,
                first: false,
            } => Some(*since + limits.keepalive_timeout),
            State::ReadingHead { started } => Some(*started + limits.request_timeout),
            // While output waits the connection does not read (it waits
            // for the peer to read): the write timeout is the clock.
            State::ReadingBody { .. } if self.write_since.is_some() => None,
            State::ReadingBody { last, .. } => Some(*last + limits.body_timeout),
            State::Dispatched | State::Streaming | State::Closing => None,
        };
        let write = self.write_since.map(|t| t + limits.write_timeout);
        match (read, write) {
            (Some(r), Some(w)) => Some(r.min(w)),
            (r, w) => r.or(w),
        }
    }

    /// Acts on the deadline: says whether to close, answer an error, or
    /// nothing yet.
    pub fn on_timeout(&mut self, now: Instant, limits: &Limits) -> Timeout {
        if self
            .write_since
            .is_some_and(|t| now >= t + limits.write_timeout)
        {
            // The peer does not read: nothing can be sent to it.
            self.state = State::Closing;
            return Timeout::Close;
        }
        match self.deadline(limits) {
            Some(d) if now >= d => {}
            _ => return Timeout::None,
        }
        match self.state {
            State::Idle { .. } => {
                self.state = State::Closing;
                Timeout::Close
            }
            // RFC 9110 §15.5.9: 408 when the request did not arrive in time.
            State::ReadingHead { .. } => Timeout::Respond(ProtoError::HeadTimeout),
            State::ReadingBody { .. } => Timeout::Respond(ProtoError::BodyTimeout),
            State::Dispatched | State::Streaming | State::Closing => Timeout::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::proto::DateCache;

    /// A test harness: feeds bytes, answers each complete request with a
    /// fixed handler, and collects what the server would write.
    struct Harness {
        conn: Conn,
        limits: Limits,
        head: RequestHead,
        input: Vec<u8>,
        out: Vec<u8>,
        date: DateCache,
        now: Instant,
        /// (method, target, body) of each complete request, in order.
        requests: Vec<(Method, Vec<u8>, Vec<u8>)>,
        body: Vec<u8>,
        target: Vec<u8>,
        closed: bool,
        error: Option<ProtoError>,
        /// Answer requests as they complete (false: leave them dispatched).
        auto_answer: bool,
    }

    impl Harness {
        fn new() -> Harness {
            let now = Instant::now();
            Harness {
                conn: Conn::new(now),
                limits: Limits::default(),
                head: RequestHead::default(),
                input: Vec::new(),
                out: Vec::new(),
                date: DateCache::new(784111777),
                now,
                requests: Vec::new(),
                body: Vec::new(),
                target: Vec::new(),
                closed: false,
                error: None,
                auto_answer: true,
            }
        }

        /// Receives `bytes` and runs the machine until it needs input.
        fn feed(&mut self, bytes: &[u8]) {
            self.input.extend_from_slice(bytes);
            self.run();
        }

        fn eof(&mut self) {
            self.conn.on_read_closed();
            self.run();
        }

        fn run(&mut self) {
            loop {
                let r = self
                    .conn
                    .poll(&self.input, self.now, &self.limits, &mut self.head);
                let (consumed, event) = match r {
                    Ok(x) => x,
                    Err(e) => {
                        self.error = Some(e);
                        self.conn.respond_error(
                            e,
                            self.now,
                            &mut self.out,
                            EncodeCtx {
                                date: &self.date,
                                server: b"stoat",
                            },
                        );
                        self.closed = true;
                        return;
                    }
                };
                match event {
                    Event::Head { complete } => {
                        self.target = self.head.target.of(&self.input).to_vec();
                        self.body.clear();
                        if self.head.expect_continue {
                            self.conn.send_continue(&mut self.out);
                        }
                        self.input.drain(..consumed);
                        if complete {
                            self.complete();
                        }
                    }
                    Event::Body(range) => {
                        self.body.extend_from_slice(&self.input[range]);
                        self.input.drain(..consumed);
                    }
                    Event::BodyEnd => {
                        self.input.drain(..consumed);
                        self.complete();
                    }
                    Event::NeedInput => {
                        self.input.drain(..consumed);
                        return;
                    }
                    Event::Waiting => return,
                    Event::Close => {
                        self.input.drain(..consumed);
                        self.closed = true;
                        return;
                    }
                }
            }
        }

        fn complete(&mut self) {
            self.requests
                .push((self.head.method, self.target.clone(), self.body.clone()));
            if self.auto_answer {
                self.answer();
            }
        }

        /// Answers the dispatched request with its target and body echoed.
        fn answer(&mut self) {
            let (_, target, body) = self.requests.last().unwrap().clone();
            let mut text = target;
            text.extend_from_slice(&body);
            let mode = self.conn.respond(
                ResponseHead {
                    status: 200,
                    start: HeadStart::Headers(&[]),
                    body: ResponseBody::Length(text.len() as u64),
                },
                false,
                self.now,
                &mut self.out,
                EncodeCtx {
                    date: &self.date,
                    server: b"",
                },
            );
            if mode == BodyMode::Raw {
                self.out.extend_from_slice(&text);
            }
        }

        fn output(&mut self) -> String {
            String::from_utf8(std::mem::take(&mut self.out)).unwrap()
        }
    }

    const DATE: &str = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";

    fn ok(body: &str, close: bool) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}{DATE}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
    }

    #[test]
    fn keep_alive_by_default_in_http11() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.output(), ok("/a", false));
        assert!(h.conn.is_idle() && !h.closed);
        h.feed(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.output(), ok("/b", false));
    }

    #[test]
    fn http10_closes_unless_keep_alive() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.0\r\n\r\n");
        assert_eq!(h.output(), ok("/a", true));
        assert!(h.conn.is_closing());
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let want = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n{DATE}\r\n/a"
        );
        assert_eq!(h.output(), want);
        assert!(h.conn.is_idle());
    }

    #[test]
    fn connection_close_requested() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.output(), ok("/a", true));
        // Nothing after a close is parsed.
        assert_eq!(h.requests.len(), 1);
        assert!(h.closed);
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let mut h = Harness::new();
        let mut burst = Vec::new();
        for i in 0..16 {
            burst.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        }
        h.feed(&burst);
        let want: String = (0..16).map(|i| ok(&format!("/{i}"), false)).collect();
        assert_eq!(h.output(), want);
    }

    #[test]
    fn pipelined_request_waits_for_the_answer_before_it() {
        let mut h = Harness::new();
        h.auto_answer = false;
        h.feed(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiGET /fast HTTP/1.1\r\nHost: x\r\n\r\n");
        // The first request is with the application; the second is not parsed yet.
        assert_eq!(h.requests.len(), 1);
        assert_eq!(
            h.conn.poll(&h.input, h.now, &h.limits, &mut h.head),
            Ok((0, Event::Waiting))
        );
        assert!(h.out.is_empty());
        h.answer();
        h.auto_answer = true;
        h.run();
        assert_eq!(h.output(), ok("/slowhi", false) + &ok("/fast", false));
    }

    #[test]
    fn content_length_body() {
        let mut h = Harness::new();
        h.feed(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
        assert!(h.out.is_empty());
        h.feed(b" world");
        assert_eq!(h.output(), ok("/ehello world", false));
    }

    #[test]
    fn chunked_body_byte_at_a_time() {
        let mut h = Harness::new();
        let req = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\nGET /n HTTP/1.1\r\nHost: x\r\n\r\n";
        for b in req.iter() {
            h.feed(std::slice::from_ref(b));
        }
        assert_eq!(h.output(), ok("/chello world", false) + &ok("/n", false));
    }

    #[test]
    fn expect_100_continue() {
        let mut h = Harness::new();
        h.feed(b"PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(h.output(), "HTTP/1.1 100 Continue\r\n\r\n");
        h.feed(b"abc");
        assert_eq!(h.output(), ok("/uabc", false));
    }

    #[test]
    fn expect_100_continue_not_sent_when_body_already_here() {
        let mut h = Harness::new();
        h.feed(
            b"PUT /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        );
        // The harness asks right after the head; the body is parsed after.
        // Either way exactly one final response, in order.
        let out = h.output();
        assert!(out.ends_with(&ok("/uabc", false)), "{out}");
    }

    #[test]
    fn error_breaks_framing_and_closes() {
        let mut h = Harness::new();
        h.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        let out = h.output();
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.contains("Connection: close\r\n"));
        assert!(!out.contains("smuggled"));
        assert!(h.conn.is_closing());
        assert_eq!(h.requests.len(), 0);
    }

    #[test]
    fn body_too_large_decided_before_body() {
        let mut h = Harness::new();
        h.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n");
        assert_eq!(h.error, Some(ProtoError::BodyTooLarge));
        assert!(h.output().starts_with("HTTP/1.1 413 "));
    }

    #[test]
    fn head_request_gets_no_body() {
        let mut h = Harness::new();
        h.feed(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        let want = format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n{DATE}\r\n") + &ok("/b", false);
        assert_eq!(h.output(), want);
    }

    #[test]
    fn half_close_after_full_request_is_answered() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        h.eof();
        // Answered (before EOF was known: keep-alive), then closed.
        assert_eq!(h.output(), ok("/a", false));
        assert!(h.closed);
        let mut h = Harness::new();
        h.conn.on_read_closed();
        h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.output(), ok("/a", true));
        assert!(h.closed);
    }

    #[test]
    fn half_close_mid_head_closes_silently() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.1\r\nHo");
        h.eof();
        assert!(h.closed);
        assert!(h.out.is_empty());
    }

    #[test]
    fn half_close_mid_body_closes_silently() {
        let mut h = Harness::new();
        h.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab");
        h.eof();
        assert!(h.closed);
        assert!(h.out.is_empty());
    }

    #[test]
    fn empty_lines_before_request_skipped() {
        let mut h = Harness::new();
        h.feed(b"\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n");
        h.feed(b"\r");
        h.feed(b"\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(h.output(), ok("/a", false) + &ok("/b", false));
    }

    #[test]
    fn idle_keep_alive_times_out_silently() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        h.output();
        let deadline = h.conn.deadline(&h.limits).unwrap();
        assert_eq!(deadline, h.now + h.limits.keepalive_timeout);
        assert_eq!(
            h.conn
                .on_timeout(deadline - Duration::from_millis(1), &h.limits),
            Timeout::None
        );
        assert_eq!(h.conn.on_timeout(deadline, &h.limits), Timeout::Close);
        assert!(h.conn.is_closing());
    }

    #[test]
    fn new_connection_gets_request_timeout() {
        let h = Harness::new();
        assert_eq!(
            h.conn.deadline(&h.limits),
            Some(h.now + h.limits.request_timeout)
        );
    }

    #[test]
    fn slow_head_gets_408_at_its_deadline_however_it_trickles() {
        let mut h = Harness::new();
        let start = h.now;
        for b in b"GET /a HTTP/1.1\r\nHost: ".iter() {
            h.now += Duration::from_millis(400);
            h.feed(std::slice::from_ref(b));
            // A first head's deadline is fixed at the accept (a later
            // head's at its first byte): trickling does not move it.
            assert_eq!(
                h.conn.deadline(&h.limits),
                Some(start + h.limits.request_timeout)
            );
        }
        let d = h.conn.deadline(&h.limits).unwrap();
        let t = h.conn.on_timeout(d, &h.limits);
        assert_eq!(t, Timeout::Respond(ProtoError::HeadTimeout));
        h.conn.respond_error(
            ProtoError::HeadTimeout,
            d,
            &mut h.out,
            EncodeCtx {
                date: &h.date,
                server: b"",
            },
        );
        assert!(h.output().starts_with("HTTP/1.1 408 Request Timeout\r\n"));
        assert!(h.conn.is_closing());
    }

    #[test]
    fn body_idle_timeout() {
        let mut h = Harness::new();
        h.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab");
        h.now += Duration::from_secs(3);
        h.feed(b"c");
        let d = h.conn.deadline(&h.limits).unwrap();
        assert_eq!(d, h.now + h.limits.body_timeout);
        assert_eq!(
            h.conn.on_timeout(d, &h.limits),
            Timeout::Respond(ProtoError::BodyTimeout)
        );
    }

    #[test]
    fn write_stall_closes() {
        let mut h = Harness::new();
        h.auto_answer = false;
        h.feed(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            h.conn.deadline(&h.limits),
            None,
            "no read deadline while dispatched"
        );
        h.answer();
        h.conn.set_write_pending(true, h.now);
        let d = h.conn.deadline(&h.limits).unwrap();
        assert_eq!(
            d,
            h.now + h.limits.write_timeout.min(h.limits.keepalive_timeout)
        );
        let stall = h.now + h.limits.write_timeout;
        assert_eq!(h.conn.on_timeout(stall, &h.limits), Timeout::Close);
    }

    #[test]
    fn streaming_response_is_chunked_and_ends() {
        let mut h = Harness::new();
        h.auto_answer = false;
        h.feed(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
        let hdr = [Header {
            name: "Content-Type",
            value: b"text/event-stream",
        }];
        let mode = h.conn.respond(
            ResponseHead {
                status: 200,
                start: HeadStart::Headers(&hdr),
                body: ResponseBody::Chunked,
            },
            false,
            h.now,
            &mut h.out,
            EncodeCtx {
                date: &h.date,
                server: b"",
            },
        );
        assert_eq!(mode, BodyMode::Chunked);
        encode::encode_chunk(&mut h.out, b"data: 1\n\n");
        assert_eq!(
            h.conn.poll(&h.input, h.now, &h.limits, &mut h.head),
            Ok((0, Event::Waiting))
        );
        h.conn.end_stream(h.now, &mut h.out);
        h.auto_answer = true;
        h.run();
        let want = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n{DATE}\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n"
        ) + &ok("/after", false);
        assert_eq!(h.output(), want);
    }

    #[test]
    fn streaming_to_http10_is_close_delimited() {
        let mut h = Harness::new();
        h.auto_answer = false;
        h.feed(b"GET /events HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let mode = h.conn.respond(
            ResponseHead {
                status: 200,
                start: HeadStart::Headers(&[]),
                body: ResponseBody::Chunked,
            },
            false,
            h.now,
            &mut h.out,
            EncodeCtx {
                date: &h.date,
                server: b"",
            },
        );
        assert_eq!(mode, BodyMode::UntilClose);
        h.out.extend_from_slice(b"data: 1\n\n");
        h.conn.end_stream(h.now, &mut h.out);
        assert_eq!(
            h.output(),
            format!("HTTP/1.1 200 OK\r\nConnection: close\r\n{DATE}\r\ndata: 1\n\n")
        );
        assert!(h.conn.is_closing());
    }

    #[test]
    fn early_response_while_body_unread_closes() {
        let mut h = Harness::new();
        h.auto_answer = false;
        h.feed(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab");
        let mode = h.conn.respond(
            ResponseHead {
                status: 403,
                start: HeadStart::Headers(&[]),
                body: ResponseBody::Empty,
            },
            false,
            h.now,
            &mut h.out,
            EncodeCtx {
                date: &h.date,
                server: b"",
            },
        );
        assert_eq!(mode, BodyMode::None);
        assert!(h.output().contains("Connection: close\r\n"));
        assert!(h.conn.is_closing());
    }

    #[test]
    fn response_started_while_body_streams() {
        let now = Instant::now();
        let limits = Limits::default();
        let mut head = RequestHead::default();
        let date = DateCache::new(784111777);
        let mut c = Conn::new(now);
        let input = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nab";
        let (n, ev) = c.poll(input, now, &limits, &mut head).unwrap();
        assert_eq!(ev, Event::Head { complete: false });
        let mut out = Vec::new();
        let mode = c.start_response(
            ResponseHead {
                status: 200,
                start: HeadStart::Headers(&[]),
                body: ResponseBody::Chunked,
            },
            false,
            &mut out,
            EncodeCtx {
                date: &date,
                server: b"",
            },
        );
        assert_eq!(mode, BodyMode::Chunked);
        assert!(String::from_utf8(out)
            .unwrap()
            .starts_with("HTTP/1.1 200 OK\r\n"));
        // The body is still read, as before the response.
        assert_eq!(
            c.poll(&input[n..], now, &limits, &mut head),
            Ok((2, Event::Body(0..2)))
        );
        // While output waits, the write timeout is the clock; once it
        // drains, the body's idle clock starts again.
        c.set_write_pending(true, now);
        assert_eq!(c.deadline(&limits), Some(now + limits.write_timeout));
        let later = now + Duration::from_secs(3);
        c.set_write_pending(false, later);
        assert_eq!(c.deadline(&limits), Some(later + limits.body_timeout));
        assert_eq!(
            c.poll(b"cde", later, &limits, &mut head),
            Ok((3, Event::Body(0..3)))
        );
        assert_eq!(
            c.poll(b"", later, &limits, &mut head),
            Ok((0, Event::BodyEnd))
        );
        c.finish_response(later, false);
        assert!(c.is_keepalive_idle());
        // A response that could not be completed as framed closes.
        let input = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let (_, ev) = c.poll(input, later, &limits, &mut head).unwrap();
        assert_eq!(ev, Event::Head { complete: true });
        let mut out = Vec::new();
        c.start_response(
            ResponseHead {
                status: 200,
                start: HeadStart::Headers(&[]),
                body: ResponseBody::Length(9),
            },
            false,
            &mut out,
            EncodeCtx {
                date: &date,
                server: b"",
            },
        );
        c.finish_response(later, true);
        assert!(c.is_closing());
    }

    #[test]
    fn version_recorded() {
        let mut h = Harness::new();
        h.feed(b"GET /a HTTP/1.0\r\n\r\n");
        assert_eq!(h.head.version, Version::Http10);
    }
}
