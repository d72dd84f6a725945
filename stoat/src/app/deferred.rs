//! Answers that come later, from any thread: [`Responder`] (suspend and
//! resume) and [`EventStream`] (server-sent events).
//!
//! Contract:
//! - A [`Responder`] is `Send + 'static`: move it to any thread, executor or
//!   callback and call [`Responder::send`] once (`Err(SendError::Closed)`
//!   gives the response back when it can no longer be delivered). Dropped unanswered, it
//!   answers `500` (counted as abandoned). Unanswered at the request
//!   deadline (`request_timeout_sec`), the client gets `503` and the late
//!   answer is discarded. A client that disconnects while its request is
//!   suspended makes [`Responder::is_closed`] true.
//! - An [`EventStream`] is `Send + 'static`: [`EventStream::send`] queues an
//!   event for the client without blocking. The per-stream backlog is
//!   bounded (`sse_backlog`): a full backlog returns [`SendError::Full`] at
//!   once, a gone client [`SendError::Closed`], each with the event back.
//!   [`EventStream::poll_writable`] registers a [`Waker`] woken when there
//!   is room again (no polling on a timer). Dropping the stream ends the
//!   response (the last chunk is sent after the queued events). Idle streams
//!   get a heartbeat comment every `sse_heartbeat_sec`.
//! - The network thread that owns the connection writes everything; these
//!   handles only leave their answer in the connection's link and wake it
//!   (see `runtime/link.rs`).

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::app::{IntoResponse, Response};
use crate::runtime::link::Link;
pub use crate::runtime::link::SendError;

/// The answer to one suspended request. See the module doc.
pub struct Responder {
    link: Option<Arc<Link>>,
}

impl Responder {
    pub(crate) fn new(link: Arc<Link>) -> Responder {
        Responder { link: Some(link) }
    }

    /// Sends the response. `Err(SendError::Closed(response))`: it cannot
    /// be delivered, because the client is gone or the deadline passed (a
    /// 503 went out instead). Never `Full`.
    pub fn send(mut self, response: impl IntoResponse) -> Result<(), SendError<Response>> {
        let response = response.into_response();
        let Some(link) = self.link.take() else {
            return Err(SendError::Closed(response));
        };
        if !link.claim() {
            return Err(SendError::Closed(response));
        }
        // Router::answer_late sends it on the owning thread.
        link.deliver(Box::new(response));
        Ok(())
    }

    /// Whether the answer can no longer reach the client: it disconnected,
    /// or the request's deadline passed.
    pub fn is_closed(&self) -> bool {
        self.link.as_ref().map_or(true, |l| l.is_closed())
    }

    /// Forgets the request without answering: the caller answers another
    /// way (the router, when a pipeline ring is full).
    pub(crate) fn disarm(mut self) -> Arc<Link> {
        self.link.take().expect("an armed responder")
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            if !link.is_answered() && !link.is_closed() {
                link.settle(|c| &c.abandoned);
                link.answer(Box::new(
                    Response::text("the handler dropped the request unanswered\n").with_status(500),
                ));
            }
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// One server-sent event (WHATWG HTML, "Server-sent events"): optional
/// `id`, `event` type, `retry` time, the `data` (split into one `data:`
/// line per line), or a comment.
///
/// ```
/// use stoat::app::SseEvent;
/// let e = SseEvent::data("line one\nline two").id("7").event("update");
/// assert_eq!(e.encode(), b"id: 7\nevent: update\ndata: line one\ndata: line two\n\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comment: Option<String>,
}

impl SseEvent {
    /// An event carrying `data`.
    pub fn data(data: impl Into<String>) -> SseEvent {
        SseEvent {
            data: Some(data.into()),
            ..SseEvent::default()
        }
    }

    /// A comment (ignored by clients; keeps proxies from timing out).
    pub fn comment(text: impl Into<String>) -> SseEvent {
        SseEvent {
            comment: Some(text.into()),
            ..SseEvent::default()
        }
    }

    /// Sets the event id (what `Last-Event-ID` carries on reconnect).
    /// CR and LF are removed: they would end the field.
    pub fn id(mut self, id: impl Into<String>) -> SseEvent {
        self.id = Some(id.into());
        self
    }

    /// Sets the event type.
    pub fn event(mut self, event: impl Into<String>) -> SseEvent {
        self.event = Some(event.into());
        self
    }

    /// Sets the client's reconnection time in milliseconds.
    pub fn retry(mut self, ms: u64) -> SseEvent {
        self.retry = Some(ms);
        self
    }

    /// The event in the `text/event-stream` format. Data lines split on
    /// CRLF, LF and CR (all three end a line for the client).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        if let Some(c) = &self.comment {
            for line in lines(c) {
                let _ = writeln!(out, ": {line}");
            }
        }
        if let Some(id) = &self.id {
            let _ = writeln!(out, "id: {}", one_line(id));
        }
        if let Some(event) = &self.event {
            let _ = writeln!(out, "event: {}", one_line(event));
        }
        if let Some(ms) = self.retry {
            let _ = writeln!(out, "retry: {ms}");
        }
        if let Some(data) = &self.data {
            for line in lines(data) {
                let _ = writeln!(out, "data: {line}");
            }
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// The lines of `s`, split on CRLF, LF or CR; an empty string is one line.
fn lines(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        match s.find(['\r', '\n']) {
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// `s` without CR and LF (for single-line fields).
fn one_line(s: &str) -> String {
    s.chars().filter(|&c| c != '\r' && c != '\n').collect()
}

/// A server-sent event stream to one client. See the module doc.
pub struct EventStream {
    link: Arc<Link>,
    last_event_id: Option<String>,
}

impl EventStream {
    pub(crate) fn new(link: Arc<Link>, last_event_id: Option<String>) -> EventStream {
        EventStream {
            link,
            last_event_id,
        }
    }

    /// Queues `event` for the client. Never blocks: a full backlog is
    /// [`SendError::Full`] (nothing queued; wait with
    /// [`EventStream::poll_writable`] and retry, or drop events), a gone
    /// client [`SendError::Closed`]; both give the event back.
    pub fn send(&self, event: SseEvent) -> Result<(), SendError<SseEvent>> {
        self.link
            .push_event(event.encode(), |c| &c.sse_full)
            .map_err(|e| e.map(|_| event))
    }

    /// Whether an event can be queued now. `Pending`: the backlog is full,
    /// and `waker` is woken once (on the network thread, so its `wake`
    /// must be quick) when the client has taken events and there is room,
    /// or when the stream closes. `Ready`: send now (a closed stream then
    /// says `Closed`). The check and the registration are atomic with the
    /// network thread's draining: the wakeup cannot be lost. In async code
    /// pass the task's waker; on a thread, a waker built from
    /// [`std::task::Wake`] that unparks it or signals a condition variable.
    pub fn poll_writable(&self, waker: &Waker) -> Poll<()> {
        self.link.poll_writable(waker)
    }

    /// As [`EventStream::poll_writable`], and `Pending` also while more
    /// than `limit` bytes of events are queued ([`EventStream::queued_bytes`]):
    /// for a publisher that bounds each stream's memory in bytes. The
    /// waker is woken whenever the client has taken events.
    pub fn poll_queued_at_most(&self, limit: usize, waker: &Waker) -> Poll<()> {
        self.link.poll_queued_at_most(limit, waker)
    }

    /// Queues an event already encoded ([`SseEvent::encode`]) and shared:
    /// the same bytes may be queued to many streams and are held once (a
    /// publisher encodes each event once for all its subscribers). Same
    /// rules as [`EventStream::send`].
    pub fn send_shared(&self, encoded: Arc<[u8]>) -> Result<(), SendError<Arc<[u8]>>> {
        self.link.push_event(encoded, |c| &c.sse_full)
    }

    /// Bytes of events queued for this stream that the connection has not
    /// yet taken for writing: how far the client is behind, for a sender
    /// that bounds memory in bytes rather than in events.
    pub fn queued_bytes(&self) -> usize {
        self.link.queued_bytes()
    }

    /// Whether the client is gone.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// The `Last-Event-ID` the client sent (on reconnect), if any.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.link.end_stream();
    }
}

impl fmt::Debug for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStream")
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_data_split_on_every_line_end() {
        let e = SseEvent::data("a\r\nb\nc\rd");
        assert_eq!(e.encode(), b"data: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(SseEvent::data("").encode(), b"data: \n\n");
        assert_eq!(SseEvent::data("x\n").encode(), b"data: x\ndata: \n\n");
    }

    #[test]
    fn all_fields_in_order() {
        let e = SseEvent::data("d").id("1").event("e").retry(3000);
        assert_eq!(e.encode(), b"id: 1\nevent: e\nretry: 3000\ndata: d\n\n");
        assert_eq!(SseEvent::comment("hi").encode(), b": hi\n\n");
        assert_eq!(
            SseEvent::data("d").id("a\nb").encode(),
            b"id: ab\ndata: d\n\n"
        );
    }
}
