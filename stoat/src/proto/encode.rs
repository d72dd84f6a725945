//! Response encoding into a caller's buffer: status line, the caller's
//! headers, `Date`, `Server`, framing (`Content-Length` or chunked) and
//! `Connection: close`. The body is not copied: the caller writes it after
//! the head, or sends head and body with one vectored write.
//!
//! STUB: interface fixed; implementation pending.

use crate::proto::DateCache;

/// A response header field given by the caller. The encoder writes
/// `Content-Length`, `Transfer-Encoding`, `Connection`, `Date` and `Server`
/// itself: the caller must not pass those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name (a token).
    pub name: &'a str,
    /// Field value (no CR, LF or NUL).
    pub value: &'a [u8],
}

/// How the response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: `Content-Length: 0` (or nothing, for 1xx, 204, 304).
    Empty,
    /// A body of exactly this many bytes follows.
    Length(u64),
    /// A body of unknown length, sent with chunked framing.
    Chunked,
}

/// What the caller writes after the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// Nothing (HEAD request, 1xx, 204, 304, or an empty body).
    None,
    /// The body bytes as they are.
    Raw,
    /// The body as chunks ([`encode_chunk`], then [`encode_last_chunk`]).
    Chunked,
}

/// Connection facts the encoder needs, decided by the connection state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Framing {
    /// The connection closes after this response: send `Connection: close`.
    pub close: bool,
    /// The request was HEAD: send the headers a GET would get, no body.
    pub head_request: bool,
}

/// Appends the status line and header block to `out`. `server` is the
/// `Server` value (empty: no `Server` header). Returns what the caller
/// must write after it.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[Header<'_>],
    body: ResponseBody,
    framing: Framing,
    date: &DateCache,
    server: &[u8],
) -> BodyMode {
    let _ = (out, status, headers, body, framing, date, server);
    todo!()
}

/// Appends `HTTP/1.1 100 Continue\r\n\r\n`.
pub fn encode_continue(out: &mut Vec<u8>) {
    let _ = out;
    todo!()
}

/// Appends one chunk (`size CRLF data CRLF`); an empty `data` writes nothing.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let _ = (out, data);
    todo!()
}

/// Appends the last chunk and the end of the (empty) trailer section.
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    let _ = out;
    todo!()
}

/// The reason phrase of a status code (empty for unknown codes).
pub fn reason(status: u16) -> &'static str {
    let _ = status;
    todo!()
}
