//! Response encoding into a caller's buffer: status line, the caller's
//! headers, `Date`, `Server`, framing (`Content-Length` or chunked) and
//! `Connection: close`. The body is not copied: the caller writes it after
//! the head, or sends head and body with one vectored write.
//!
//! Contract:
//! - [`encode_head`] appends one complete response head to `out` (never
//!   clears it) and returns the [`BodyMode`] the caller must follow. The
//!   head is, in this order: the status line, the caller's headers in the
//!   order given, the framing header (`Content-Length` or
//!   `Transfer-Encoding: chunked`, or none), `Connection: close` if the
//!   connection closes, `Server` unless empty, `Date`, and the empty line.
//! - The encoder owns the framing: the caller says what the body is
//!   ([`ResponseBody`]) and what the request was ([`Framing`]); the encoder
//!   applies RFC 9110 §8.6 / RFC 9112 §6 (no framing headers and no body for
//!   1xx, 204 and 304; the GET's framing headers but no body for HEAD).
//! - Header names and values are trusted: the application layer validates
//!   them. Debug builds assert that values hold no CR, LF or NUL and that the
//!   caller does not pass a field the encoder writes.
//! - Cost: one `reserve`, then appends that never grow the buffer; the
//!   status line of a registered code is one static string, `Content-Length`
//!   one line formatted on the stack, and `Server` + `Date` + the final CRLF
//!   one cached tail ([`DateCache::tail`]); nothing is formatted through
//!   `fmt` and nothing is allocated per header. No `unsafe` (proto forbids
//!   it).

use crate::proto::DateCache;

/// A response header field given by the caller. The encoder writes
/// `Content-Length`, `Transfer-Encoding`, `Connection`, `Date` and `Server`
/// itself: the caller must not pass those (except `Connection: upgrade` in a
/// `101 Switching Protocols`, RFC 9110 §7.8).
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
    /// The body bytes as they are, ended by closing the connection (a
    /// streamed body to an HTTP/1.0 client).
    UntilClose,
}

/// Connection facts the encoder needs, decided by the connection state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Framing {
    /// The connection closes after this response: send `Connection: close`.
    pub close: bool,
    /// The request was HEAD: send the headers a GET would get, no body.
    pub head_request: bool,
    /// The request was HTTP/1.0: no chunked coding (a body of unknown
    /// length is delimited by closing), and a persistent connection says
    /// `Connection: keep-alive` (RFC 9112 §9.3, Appendix C.2.2).
    pub http10: bool,
}

/// How a response head begins: its status line and the caller's header
/// lines, to be formatted or formatted already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadStart<'a> {
    /// The status line for the head's status, then these fields in order.
    Headers(&'a [Header<'a>]),
    /// Formatted already: exactly what [`HeadStart::Headers`] would give
    /// for the head's status and fields (status line, then
    /// `name: value\r\n` per field), e.g. a precomputed
    /// `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n`, copied whole.
    /// The status must then be in `200..=999`; debug builds assert that the
    /// start begins with its status line and ends with CRLF.
    Preformatted(&'a [u8]),
}

/// A response head as the caller describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// In `100..=999` (RFC 9112 §4: `status-code = 3DIGIT`); anything else
    /// is a caller bug, asserted in debug builds and sent as 500.
    pub status: u16,
    /// The status line and the caller's fields.
    pub start: HeadStart<'a>,
    /// The body's framing. For 1xx, 204 and 304 it is ignored.
    pub body: ResponseBody,
}

/// What the encoder adds to every head from outside the response: the
/// cached `Date` (and its cached tail) and the `Server` value (empty: no
/// `Server` header).
#[derive(Debug, Clone, Copy)]
pub struct EncodeCtx<'a> {
    /// The current `Date` and the tail cached with it.
    pub date: &'a DateCache,
    /// The `Server` value.
    pub server: &'a [u8],
}

/// Appends the status line and header block of `head` to `out`. Returns
/// what the caller must write after it. The encoder adds the framing,
/// `Connection`, `Server` and `Date` (from `ctx`), the same for either
/// [`HeadStart`]. `ResponseBody::Length(0)` is sent as `Content-Length: 0`
/// and returns [`BodyMode::None`].
#[inline(always)]
pub fn encode_head(
    out: &mut Vec<u8>,
    head: ResponseHead<'_>,
    framing: Framing,
    ctx: EncodeCtx<'_>,
) -> BodyMode {
    encode_response(out, head, framing, ctx, &[])
}

/// Most bytes of a body [`encode_response`] writes with its head.
pub const SMALL_BODY: usize = 32;

/// [`encode_head`], then `body` right after the head when the head says
/// a body follows ([`BodyMode::Raw`]; not for a HEAD request or a 204):
/// a small body (at most [`SMALL_BODY`] bytes, `head.body` its
/// `ResponseBody::Length`) goes out with its head in one copy. With
/// [`BodyMode::Raw`] returned, `body` is written already.
#[inline(always)]
pub fn encode_response(
    out: &mut Vec<u8>,
    head: ResponseHead<'_>,
    framing: Framing,
    ctx: EncodeCtx<'_>,
    body: &[u8],
) -> BodyMode {
    debug_assert!(
        body.len() <= SMALL_BODY
            && (body.is_empty() || head.body == ResponseBody::Length(body.len() as u64)),
        "the small body does not fit the head"
    );
    match head.start {
        HeadStart::Headers(headers) => {
            encode_lines(out, head.status, headers, head.body, framing, ctx, body)
        }
        HeadStart::Preformatted(start) => {
            encode_preformatted(out, head.status, start, head.body, framing, ctx, body)
        }
    }
}

/// Most bytes of a head [`HeadMemo`] keeps.
pub const MEMO_BYTES: usize = 256;

/// The start of a `200` response head (its status line and the caller's
/// fields, each line ending in CRLF) formatted at compile time, kept in a
/// `static`: a preset of `Response`. [`HeadMemo`] keys on its address, one
/// word for the whole start: a `&'static Preset` is never freed and never
/// changes, so one address always names the same bytes.
#[derive(Debug)]
pub struct Preset {
    start: &'static [u8],
}

impl Preset {
    /// A preset for `start`, which must begin with `HTTP/1.1 200 OK\r\n`
    /// and end with CRLF (asserted where it is encoded, in debug builds).
    pub const fn new(start: &'static [u8]) -> Preset {
        Preset { start }
    }

    /// The formatted start.
    #[inline]
    pub fn start(&self) -> &'static [u8] {
        self.start
    }
}

/// The last preset response this thread encoded, kept whole with its small
/// static body: a handler that answers the same way again (the same preset
/// and body, framing, `Server` and second) gets its response with one copy
/// instead of having it encoded piece by piece. One per network thread,
/// never per connection. The key holds addresses, not bytes: the preset and
/// the small body are `&'static` (a preset of `Response`, a
/// `Body::Static`), whose bytes cannot change, so the same address (and
/// length) is the same bytes.
#[derive(Debug, Clone)]
pub struct HeadMemo {
    key: MemoKey,
    /// The head, and the small static body written with it.
    bytes: MemoBytes,
}

/// A remembered response: its first `len` bytes are the response. Copied
/// out in whole 32-byte blocks (see `Outbox`'s `append_memo`), so the
/// array past `len` is read too.
#[derive(Debug, Clone)]
pub struct MemoBytes {
    /// The bytes; past `len`, whatever an earlier response left.
    pub bytes: [u8; MEMO_BYTES],
    /// How many are the response's (1..=MEMO_BYTES once filled).
    pub len: usize,
    /// What follows the response: [`BodyMode::None`] or [`BodyMode::Raw`].
    pub mode: BodyMode,
}

/// Everything the remembered bytes depend on, one field per input, so that
/// a lookup is a chain of word compares: the preset's address with the
/// framing facts in its low bits (a `Preset` is aligned to 8, so three low
/// bits are free), the small body's address and length, the body length (0
/// for `Empty`: a `Length` is never 0 here), the `Date` second, and the
/// `Server` value's address and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemoKey {
    preset: usize,
    small: usize,
    small_len: usize,
    length: u64,
    secs: u64,
    server: usize,
    server_len: usize,
}

// The framing facts fit below a `Preset`'s alignment.
const _: () = assert!(std::mem::align_of::<Preset>() >= 8);

impl MemoKey {
    #[inline(always)]
    fn new(
        preset: &'static Preset,
        body: ResponseBody,
        framing: Framing,
        ctx: EncodeCtx<'_>,
        small: &'static [u8],
    ) -> MemoKey {
        let bits = usize::from(framing.close)
            | usize::from(framing.head_request) << 1
            | usize::from(framing.http10) << 2;
        MemoKey {
            preset: preset as *const Preset as usize | bits,
            small: small.as_ptr() as usize,
            small_len: small.len(),
            length: match body {
                ResponseBody::Length(n) => n,
                ResponseBody::Empty | ResponseBody::Chunked => 0,
            },
            secs: ctx.date.secs(),
            server: ctx.server.as_ptr() as usize,
            server_len: ctx.server.len(),
        }
    }
}

impl Default for HeadMemo {
    fn default() -> HeadMemo {
        HeadMemo {
            // No preset is at address 0.
            key: MemoKey {
                preset: 0,
                small: 0,
                small_len: 0,
                length: 0,
                secs: 0,
                server: 0,
                server_len: 0,
            },
            bytes: MemoBytes {
                bytes: [0; MEMO_BYTES],
                len: 0,
                mode: BodyMode::None,
            },
        }
    }
}

impl HeadMemo {
    /// The remembered response for these inputs, if the last one had them
    /// all: its mode is [`BodyMode::None`] or [`BodyMode::Raw`] (a
    /// `Chunked` body is never remembered). Else what
    /// [`HeadMemo::fill`] needs.
    #[inline(always)]
    pub fn find(
        &self,
        preset: &'static Preset,
        body: ResponseBody,
        framing: Framing,
        ctx: EncodeCtx<'_>,
        small: &'static [u8],
    ) -> Result<&MemoBytes, Miss> {
        let key = MemoKey::new(preset, body, framing, ctx, small);
        if key != self.key || body == ResponseBody::Chunked {
            return Err(Miss { key, preset });
        }
        Ok(&self.bytes)
    }

    /// After a miss of [`HeadMemo::find`] with the same inputs: encodes the
    /// response into `out`, and keeps it if it fits. The context comes in
    /// parts (`date`, `server`): an `EncodeCtx` argument is built in memory
    /// on the caller's hit path too (3 stores, measured).
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        &mut self,
        miss: Miss,
        out: &mut Vec<u8>,
        body: ResponseBody,
        framing: Framing,
        date: &DateCache,
        server: &[u8],
        small: &[u8],
    ) -> BodyMode {
        let ctx = EncodeCtx { date, server };
        let at = out.len();
        let mode = encode_preformatted(out, 200, miss.preset.start, body, framing, ctx, small);
        let bytes = &out[at..];
        if bytes.len() <= MEMO_BYTES && body != ResponseBody::Chunked {
            self.bytes.bytes[..bytes.len()].copy_from_slice(bytes);
            self.bytes.len = bytes.len();
            self.bytes.mode = mode;
            self.key = miss.key;
        } else {
            self.key.preset = 0;
        }
        mode
    }
}

/// A miss of [`HeadMemo::find`], for [`HeadMemo::fill`].
#[derive(Debug)]
pub struct Miss {
    key: MemoKey,
    preset: &'static Preset,
}

/// [`encode_head`] for [`HeadStart::Headers`].
fn encode_lines(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[Header<'_>],
    body: ResponseBody,
    framing: Framing,
    ctx: EncodeCtx<'_>,
    small: &[u8],
) -> BodyMode {
    let EncodeCtx { date, server } = ctx;
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF
    // Filled only for unregistered codes, so the common path skips it.
    let mut custom: [u8; 15];
    let (status, status_line): (u16, &[u8]) = match status_line(status) {
        Some(line) => (status, line),
        // RFC 9112 §4: "A server MUST send the space that separates the
        // status-code from the reason-phrase even when the reason-phrase is
        // absent": unregistered codes go out as `HTTP/1.1 NNN \r\n`.
        None if (100..=999).contains(&status) => {
            custom = *b"HTTP/1.1 000 \r\n";
            (status, custom_status_line(&mut custom, status))
        }
        None => {
            debug_assert!(
                (100..=999).contains(&status),
                "status code {status} outside 100..=999"
            );
            (500, STATUS_LINE_500)
        }
    };

    let headers_len: usize = headers
        .iter()
        .map(|h| {
            debug_check_header(h, status);
            h.name.len() + h.value.len() + 4
        })
        .sum();
    debug_assert!(is_field_value(server), "Server value holds CR, LF or NUL");
    let bound = status_line.len() + headers_len + server.len() + OWNED_MAX;
    let parts = Parts {
        start: Start::Lines {
            status_line,
            headers,
        },
        status,
        body,
        framing,
        date,
        server,
    };
    encode_parts(out, bound, &parts, small)
}

/// [`encode_head`] for [`HeadStart::Preformatted`].
fn encode_preformatted(
    out: &mut Vec<u8>,
    status: u16,
    start: &[u8],
    body: ResponseBody,
    framing: Framing,
    ctx: EncodeCtx<'_>,
    small: &[u8],
) -> BodyMode {
    let EncodeCtx { date, server } = ctx;
    debug_assert!(
        (200..=999).contains(&status)
            && status_line(status).map_or(start.starts_with(b"HTTP/1.1 "), |line| {
                start.starts_with(line)
            })
            && start.ends_with(b"\r\n"),
        "preformatted head start does not fit status {status}"
    );
    debug_assert!(is_field_value(server), "Server value holds CR, LF or NUL");
    let bound = start.len() + server.len() + OWNED_MAX;
    let parts = Parts {
        start: Start::Preformatted(start),
        status,
        body,
        framing,
        date,
        server,
    };
    encode_parts(out, bound, &parts, small)
}

/// Writes `parts` (at most `bound` bytes) to `out`, then `small` if the
/// head says a body follows.
#[inline(always)]
fn encode_parts(out: &mut Vec<u8>, bound: usize, parts: &Parts<'_>, small: &[u8]) -> BodyMode {
    if let Start::Preformatted(_) = parts.start {
        // Three pieces (the start, the framing line, the cached tail) and
        // the small body: appended where they go.
        out.reserve(bound + small.len());
        let mode = write_head(out, parts);
        if mode == BodyMode::Raw {
            out.extend_from_slice(small);
        }
        return mode;
    }
    if bound + small.len() <= STACK_HEAD {
        // The usual head (and a small body): written on the stack with
        // fixed-size copies, appended with one copy.
        let mut buf = [0u8; STACK_HEAD];
        let mut w = Cursor {
            buf: &mut buf,
            pos: 0,
        };
        let mode = write_head(&mut w, parts);
        if mode == BodyMode::Raw {
            w.put(small);
        }
        let len = w.pos;
        out.extend_from_slice(&buf[..len]);
        mode
    } else {
        let mode = encode_large(out, bound, parts);
        if mode == BodyMode::Raw {
            out.extend_from_slice(small);
        }
        mode
    }
}

/// Heads whose bound is at most this are written on the stack first.
const STACK_HEAD: usize = 256;

/// What a head is made of (see [`encode_head`]).
#[derive(Clone, Copy)]
struct Parts<'a> {
    start: Start<'a>,
    status: u16,
    body: ResponseBody,
    framing: Framing,
    date: &'a DateCache,
    server: &'a [u8],
}

/// The status line and the caller's header lines.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// To be formatted.
    Lines {
        status_line: &'a [u8],
        headers: &'a [Header<'a>],
    },
    /// Formatted already.
    Preformatted(&'a [u8]),
}

/// A head too long for the stack buffer: its bound appended zeroed to
/// `out`, filled, and cut to what was written.
#[cold]
#[inline(never)]
fn encode_large(out: &mut Vec<u8>, bound: usize, parts: &Parts<'_>) -> BodyMode {
    let at = out.len();
    out.resize(at + bound, 0);
    let mut w = Cursor {
        buf: &mut out[at..],
        pos: 0,
    };
    let mode = write_head(&mut w, parts);
    let end = at + w.pos;
    out.truncate(end);
    mode
}

/// Writes the head `encode_head` describes.
#[inline(always)]
fn write_head(w: &mut impl Put, parts: &Parts<'_>) -> BodyMode {
    let Parts {
        start,
        status,
        body,
        framing,
        date,
        server,
    } = *parts;
    match start {
        Start::Lines {
            status_line,
            headers,
        } => {
            w.put(status_line);
            for h in headers {
                // RFC 9112 §5: field-line = field-name ":" OWS field-value OWS
                w.put(h.name.as_bytes());
                w.put(b": ");
                w.put(h.value);
                w.put(b"\r\n");
            }
        }
        Start::Preformatted(start) => w.put(start),
    }

    // RFC 9110 §8.6: "A server MUST NOT send a Content-Length header field in
    // any response with a status code of 1xx (Informational) or 204 (No
    // Content)." RFC 9112 §6.1: "A server MUST NOT send a Transfer-Encoding
    // header field in any response with a status code of 1xx (Informational)
    // or 204 (No Content)." RFC 9112 §6.3: 1xx, 204 and 304 responses end at
    // the empty line after the header section, whatever their fields say.
    let bodyless = status < 200 || status == 204 || status == 304;
    let mode = if bodyless {
        BodyMode::None
    } else {
        match body {
            ResponseBody::Empty => {
                w.put(b"Content-Length: 0\r\n");
                BodyMode::None
            }
            ResponseBody::Length(n) => {
                // RFC 9110 §9.3.2: "The server SHOULD send the same header
                // fields in response to a HEAD request as it would have sent
                // if the request method had been GET", and §8.6 allows the
                // GET's Content-Length in a response to HEAD. No body follows.
                w.put_content_length(n);
                if framing.head_request || n == 0 {
                    BodyMode::None
                } else {
                    BodyMode::Raw
                }
            }
            ResponseBody::Chunked if framing.http10 => {
                // RFC 9112 §6.1: "A server MUST NOT send a response containing
                // Transfer-Encoding unless the corresponding request indicates
                // HTTP/1.1 (or later minor revisions)." The body runs until
                // the connection closes (RFC 9112 §6.3 rule 8).
                if framing.head_request {
                    BodyMode::None
                } else {
                    BodyMode::UntilClose
                }
            }
            ResponseBody::Chunked => {
                // RFC 9112 §6.1: "A server MAY send a Transfer-Encoding header
                // field in a response to a HEAD request ... only to indicate
                // that the chunked transfer coding would have been applied".
                w.put(b"Transfer-Encoding: chunked\r\n");
                if framing.head_request {
                    BodyMode::None
                } else {
                    BodyMode::Chunked
                }
            }
        }
    };

    // RFC 9112 §9.6: "A server that sends a "close" connection option MUST
    // initiate closure of the connection ... after it sends the response
    // containing the "close" connection option."
    let until_close = mode == BodyMode::UntilClose;
    if framing.close || until_close {
        w.put(b"Connection: close\r\n");
    } else if framing.http10 {
        // RFC 9112 Appendix C.2.2: an HTTP/1.0 client keeps the connection
        // only if the response says keep-alive.
        w.put(b"Connection: keep-alive\r\n");
    }
    // RFC 9110 §6.6.1: "An origin server with a clock ... MUST generate a
    // Date header field" in 2xx, 3xx and 4xx responses, and MAY in 1xx and
    // 5xx. Sent always. The cached tail is `Server` (unless empty), `Date`
    // and the head's final CRLF, rewritten once per second.
    match date.tail(server) {
        Some(tail) => w.put(tail),
        None => {
            if !server.is_empty() {
                w.put(b"Server: ");
                w.put(server);
                w.put(b"\r\n");
            }
            w.put(date.head_end());
        }
    }
    mode
}

/// Writes a head into zeroed space of at least its bound (on the stack, or
/// appended to the output): the bound counts the status line, every caller header with its
/// `": "` and CRLF, the `Server` value, and `OWNED_MAX` for every other
/// piece (at most one framing line, one `Connection` line, the `Server`
/// name and CRLF, the `Date` line), so the pieces always fit (the tests
/// check every path; a miscount would panic on an index, never write out
/// of bounds).
///
/// Why hand-written: `extend_from_slice` per piece re-checks capacity and
/// calls `memcpy` for every short string (a head is ~8 pieces of 2 to 60
/// bytes); measured with callgrind that was ~13 instructions a piece more.
/// Here short pieces are copied with two overlapping fixed-size copies the
/// compiler inlines.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

/// Where `write_head` writes: a [`Cursor`], or the output itself after a
/// `reserve` of the bound.
trait Put {
    /// Appends `src`.
    fn put(&mut self, src: &[u8]);
    /// Appends `Content-Length: <n>\r\n`.
    fn put_content_length(&mut self, n: u64);
}

impl Put for Vec<u8> {
    #[inline(always)]
    fn put(&mut self, src: &[u8]) {
        self.extend_from_slice(src);
    }

    /// The line is built on the stack and appended as a fixed-size block
    /// (inlined, no `memcpy` call), then cut to its length.
    #[inline(always)]
    fn put_content_length(&mut self, n: u64) {
        if let Some(&(line, len)) = CONTENT_LENGTHS.get(n as usize) {
            // Formatted at compile time.
            let at = self.len();
            self.extend_from_slice(&line);
            self.truncate(at + usize::from(len));
            return;
        }
        let mut line = *b"Content-Length: 00000000000000000000\r\n";
        let mut digits = 1;
        let mut rest = n / 10;
        while rest > 0 {
            digits += 1;
            rest /= 10;
        }
        // u64::MAX has 20 digits: the line has room for them.
        let end = 16 + digits;
        let mut m = n;
        for at in (16..end).rev() {
            line[at] = b'0' + (m % 10) as u8;
            m /= 10;
        }
        line[end] = b'\r';
        line[end + 1] = b'\n';
        let at = self.len();
        self.extend_from_slice(&line);
        self.truncate(at + end + 2);
    }
}

/// `Content-Length: <n>\r\n` for every `n` below 1000, padded to 24 bytes,
/// with its length: the usual small bodies' framing line is one fixed-size
/// copy.
static CONTENT_LENGTHS: [([u8; 24], u8); 1000] = {
    let mut table = [([0u8; 24], 0u8); 1000];
    let mut n = 0;
    while n < 1000 {
        let mut line = [0u8; 24];
        let prefix = b"Content-Length: ";
        let mut i = 0;
        while i < 16 {
            line[i] = prefix[i];
            i += 1;
        }
        let digits = if n >= 100 {
            3
        } else if n >= 10 {
            2
        } else {
            1
        };
        let mut m = n;
        let mut d = digits;
        while d > 0 {
            line[16 + d - 1] = b'0' + (m % 10) as u8;
            m /= 10;
            d -= 1;
        }
        line[16 + digits] = b'\r';
        line[17 + digits] = b'\n';
        table[n] = (line, (18 + digits) as u8);
        n += 1;
    }
    table
};

impl Put for Cursor<'_> {
    #[inline(always)]
    fn put_content_length(&mut self, n: u64) {
        if let Some(&(line, len)) = CONTENT_LENGTHS.get(n as usize) {
            // Formatted at compile time: one fixed-size copy (the bound
            // counts 38 bytes for this line), cut to its length.
            self.buf[self.pos..self.pos + line.len()].copy_from_slice(&line);
            self.pos += usize::from(len);
            return;
        }
        self.put(b"Content-Length: ");
        self.put_decimal(n);
        self.put(b"\r\n");
    }

    #[inline(always)]
    fn put(&mut self, src: &[u8]) {
        let n = src.len();
        let dst = &mut self.buf[self.pos..self.pos + n];
        if (16..=32).contains(&n) {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..]);
        } else if (8..16).contains(&n) {
            dst[..8].copy_from_slice(&src[..8]);
            dst[n - 8..].copy_from_slice(&src[n - 8..]);
        } else if (4..8).contains(&n) {
            dst[..4].copy_from_slice(&src[..4]);
            dst[n - 4..].copy_from_slice(&src[n - 4..]);
        } else if (1..4).contains(&n) {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        } else if (33..=64).contains(&n) {
            dst[..32].copy_from_slice(&src[..32]);
            dst[n - 32..].copy_from_slice(&src[n - 32..]);
        } else {
            dst.copy_from_slice(src);
        }
        self.pos += n;
    }
}

impl Cursor<'_> {
    /// Writes `n` in decimal.
    #[inline(always)]
    fn put_decimal(&mut self, n: u64) {
        if n < 10 {
            self.put(&[b'0' + n as u8]);
        } else {
            self.put(itoa::Buffer::new().format(n).as_bytes());
        }
    }
}

/// Appends `bytes` (a small response body after its head, say): up to 32
/// bytes as one fixed-size block the compiler inlines, cut back to their
/// length, instead of a `memcpy` call; longer ones with
/// `extend_from_slice`.
#[inline(always)]
pub fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 32 {
        out.extend_from_slice(bytes);
        return;
    }
    let at = out.len();
    out.extend_from_slice(&[0; 32]);
    let mut w = Cursor {
        buf: &mut out[at..],
        pos: 0,
    };
    w.put(bytes);
    out.truncate(at + n);
}

/// Appends `HTTP/1.1 100 Continue\r\n\r\n`.
pub fn encode_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
}

/// Appends one chunk (`size CRLF data CRLF`); an empty `data` writes nothing.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    // RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF,
    // chunk-size = 1*HEXDIG. A chunk of size 0 is the last-chunk, which
    // would end the body: an empty `data` writes nothing instead.
    if data.is_empty() {
        return;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // At most 16 hex digits for a 64-bit size, then CRLF.
    let mut size_line = *b"0000000000000000\r\n";
    let mut n = data.len() as u64;
    let mut start = 16;
    loop {
        start -= 1;
        size_line[start] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    let size_line = &size_line[start..];
    out.reserve(size_line.len() + data.len() + 2);
    out.extend_from_slice(size_line);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the end of the (empty) trailer section.
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    // RFC 9112 §7.1: last-chunk = 1*("0") [ chunk-ext ] CRLF, then
    // trailer-section (empty here) and the final CRLF.
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Upper bound of the bytes the encoder adds besides the status line, the
/// caller's headers and the `Server` value: the framing line
/// (`Content-Length: ` + 20 digits + CRLF is the longest), the `Connection`
/// line (`Connection: keep-alive` + CRLF is the longest), the `Server: `
/// name and CRLF, and the `Date` line with the final CRLF.
const OWNED_MAX: usize = (16 + 20 + 2) + 24 + (8 + 2) + 39;

/// Sent for a status code outside `100..=999`.
const STATUS_LINE_500: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\n";

/// Fills `HTTP/1.1 NNN \r\n` for a code in `100..=999` with no registered
/// reason phrase.
fn custom_status_line(buf: &mut [u8; 15], status: u16) -> &[u8] {
    buf[9] = b'0' + (status / 100) as u8;
    buf[10] = b'0' + (status / 10 % 10) as u8;
    buf[11] = b'0' + (status % 10) as u8;
    &buf[..]
}

/// Debug-build checks of a caller's header (the app layer validates them).
fn debug_check_header(h: &Header<'_>, status: u16) {
    debug_assert!(is_token(h.name), "header name {:?} is not a token", h.name);
    debug_assert!(
        is_field_value(h.value),
        "header {:?} value holds CR, LF or NUL",
        h.name
    );
    debug_assert!(
        !is_owned_name(h.name, status),
        "header {:?} is written by the encoder",
        h.name
    );
}

/// RFC 9110 §5.6.2: token = 1*tchar.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are
/// invalid and dangerous".
fn is_field_value(value: &[u8]) -> bool {
    !value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// A field the encoder writes itself. A 101 response carries the caller's
/// `Connection: upgrade` (RFC 9110 §7.8: a sender of Upgrade "MUST also send
/// an "upgrade" connection option").
fn is_owned_name(name: &str, status: u16) -> bool {
    ["content-length", "transfer-encoding", "date", "server"]
        .iter()
        .any(|owned| name.eq_ignore_ascii_case(owned))
        || (status != 101 && name.eq_ignore_ascii_case("connection"))
}

/// Defines [`reason`] and `status_line` from one table, so the two agree.
macro_rules! status_codes {
    ($($code:literal $reason:literal,)*) => {
        /// The reason phrase of a status code (empty for unknown codes).
        ///
        /// Covers the IANA HTTP Status Code Registry as of RFC 9110 and the
        /// codes registered by other RFCs (102, 103, 207, 208, 226, 425, 428,
        /// 429, 431, 451, 506, 507, 508, 510, 511). The reserved `306` and
        /// `418` ("(Unused)") have none.
        pub fn reason(status: u16) -> &'static str {
            match status {
                $($code => $reason,)*
                _ => "",
            }
        }

        /// The complete `HTTP/1.1 NNN Reason\r\n` of a registered code.
        fn status_line(status: u16) -> Option<&'static [u8]> {
            match status {
                $($code => Some(concat!("HTTP/1.1 ", $code, " ", $reason, "\r\n").as_bytes()),)*
                _ => None,
            }
        }
    };
}

status_codes! {
    100 "Continue",
    101 "Switching Protocols",
    102 "Processing",
    103 "Early Hints",
    200 "OK",
    201 "Created",
    202 "Accepted",
    203 "Non-Authoritative Information",
    204 "No Content",
    205 "Reset Content",
    206 "Partial Content",
    207 "Multi-Status",
    208 "Already Reported",
    226 "IM Used",
    300 "Multiple Choices",
    301 "Moved Permanently",
    302 "Found",
    303 "See Other",
    304 "Not Modified",
    305 "Use Proxy",
    307 "Temporary Redirect",
    308 "Permanent Redirect",
    400 "Bad Request",
    401 "Unauthorized",
    402 "Payment Required",
    403 "Forbidden",
    404 "Not Found",
    405 "Method Not Allowed",
    406 "Not Acceptable",
    407 "Proxy Authentication Required",
    408 "Request Timeout",
    409 "Conflict",
    410 "Gone",
    411 "Length Required",
    412 "Precondition Failed",
    413 "Content Too Large",
    414 "URI Too Long",
    415 "Unsupported Media Type",
    416 "Range Not Satisfiable",
    417 "Expectation Failed",
    421 "Misdirected Request",
    422 "Unprocessable Content",
    423 "Locked",
    424 "Failed Dependency",
    425 "Too Early",
    426 "Upgrade Required",
    428 "Precondition Required",
    429 "Too Many Requests",
    431 "Request Header Fields Too Large",
    451 "Unavailable For Legal Reasons",
    500 "Internal Server Error",
    501 "Not Implemented",
    502 "Bad Gateway",
    503 "Service Unavailable",
    504 "Gateway Timeout",
    505 "HTTP Version Not Supported",
    506 "Variant Also Negotiates",
    507 "Insufficient Storage",
    508 "Loop Detected",
    510 "Not Extended",
    511 "Network Authentication Required",
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The general start, as the tests below spell it.
    fn encode_lines_head(
        out: &mut Vec<u8>,
        status: u16,
        headers: &[Header<'_>],
        body: ResponseBody,
        framing: Framing,
        date: &DateCache,
        server: &[u8],
    ) -> BodyMode {
        let head = ResponseHead {
            status,
            start: HeadStart::Headers(headers),
            body,
        };
        encode_head(out, head, framing, EncodeCtx { date, server })
    }

    /// The preformatted start, as the tests below spell it.
    fn encode_preformatted_head(
        out: &mut Vec<u8>,
        status: u16,
        start: &[u8],
        body: ResponseBody,
        framing: Framing,
        date: &DateCache,
        server: &[u8],
    ) -> BodyMode {
        let head = ResponseHead {
            status,
            start: HeadStart::Preformatted(start),
            body,
        };
        encode_head(out, head, framing, EncodeCtx { date, server })
    }

    use ResponseBody::{Chunked, Empty, Length};

    /// Sun, 06 Nov 1994 08:49:37 GMT.
    const NOW: u64 = 784_111_777;
    const DATE: &[u8] = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";

    const GET: Framing = Framing {
        close: false,
        head_request: false,
        http10: false,
    };
    const HEAD: Framing = Framing {
        close: false,
        head_request: true,
        http10: false,
    };
    const CLOSE: Framing = Framing {
        close: true,
        head_request: false,
        http10: false,
    };
    const HTTP10: Framing = Framing {
        close: false,
        head_request: false,
        http10: true,
    };

    const fn h(name: &'static str, value: &'static [u8]) -> Header<'static> {
        Header { name, value }
    }

    const CT: Header<'static> = h("Content-Type", b"text/plain");

    /// Encodes one head into a fresh buffer with the fixed date.
    fn head(
        status: u16,
        headers: &[Header<'_>],
        body: ResponseBody,
        framing: Framing,
        server: &[u8],
    ) -> (Vec<u8>, BodyMode) {
        let mut out = Vec::new();
        let date = DateCache::new(NOW);
        let mode = encode_lines_head(&mut out, status, headers, body, framing, &date, server);
        (out, mode)
    }

    /// Every framing path with the longest owned pieces, and caller pieces
    /// of every length from 0 to 70 (short and long copies and their
    /// edges), compared with a plain concatenation. Debug builds also
    /// assert the reserve on every `put`, so a miscount fails here.
    #[test]
    fn writer_matches_plain_concatenation_for_all_piece_sizes() {
        let long = [b'v'; 70];
        let names = "Xabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrs";
        for len in 0..=70usize {
            let name = &names[..len.max(1)];
            let value = &long[..len];
            let server = &long[..len];
            for framing in [GET, HEAD, CLOSE, HTTP10] {
                for body in [Empty, Length(u64::MAX), Length(7), Chunked] {
                    for status in [200, 204, 599, 999, 100] {
                        // Exactly the capacity the head needs: no slack.
                        let mut out = Vec::new();
                        let date = DateCache::new(NOW);
                        let headers = [Header { name, value }];
                        encode_lines_head(&mut out, status, &headers, body, framing, &date, server);
                        let mut want = Vec::new();
                        let (line, _) = head(status, &[], Empty, GET, b"");
                        want.extend_from_slice(
                            &line[..line.iter().position(|&b| b == b'\n').unwrap() + 1],
                        );
                        want.extend_from_slice(name.as_bytes());
                        want.extend_from_slice(b": ");
                        want.extend_from_slice(value);
                        want.extend_from_slice(b"\r\n");
                        assert!(out.starts_with(&want), "len {len} status {status}");
                        assert!(out.ends_with(DATE));
                        if !server.is_empty() {
                            let line = [b"Server: ".as_slice(), server, b"\r\n"].concat();
                            assert!(out.windows(line.len()).any(|w| w == line));
                        }
                    }
                }
            }
        }
    }

    struct Case<'a> {
        name: &'static str,
        status: u16,
        headers: &'a [Header<'a>],
        body: ResponseBody,
        framing: Framing,
        server: &'static [u8],
        /// The expected head up to, not including, the `Date` line.
        want: &'static [u8],
        mode: BodyMode,
    }

    /// `name: status [headers] body, framing, server => head-before-Date mode;`
    macro_rules! cases {
        ($($name:literal: $status:literal $headers:tt $body:expr, $framing:ident, $server:literal
            => $want:literal $mode:ident;)*) => {
            [$(Case {
                name: $name,
                status: $status,
                headers: &$headers,
                body: $body,
                framing: $framing,
                server: $server,
                want: $want,
                mode: BodyMode::$mode,
            }),*]
        };
    }

    /// [`encode_response`] for a `200` with `HeadStart::Preformatted` of
    /// `preset`, through `memo` as `Conn::respond_preset` uses it: the
    /// remembered bytes given to `copy` on a hit ([`HeadMemo::find`]),
    /// else [`HeadMemo::fill`].
    #[allow(clippy::too_many_arguments)]
    fn memo_encode(
        memo: &mut HeadMemo,
        out: &mut Vec<u8>,
        preset: &'static Preset,
        body: ResponseBody,
        framing: Framing,
        ctx: EncodeCtx<'_>,
        small: &'static [u8],
        copy: impl FnOnce(&mut Vec<u8>, &MemoBytes),
    ) -> BodyMode {
        match memo.find(preset, body, framing, ctx, small) {
            Ok(found) => {
                copy(out, found);
                found.mode
            }
            Err(miss) => memo.fill(miss, out, body, framing, ctx.date, ctx.server, small),
        }
    }

    /// The memo gives exactly the encoder's bytes and mode, whatever came
    /// before: every case is encoded after every other case (a miss), and
    /// twice in a row (the second a hit), including a date change. The
    /// cases differ in one input at a time: the preset (two of them with
    /// the same bytes at different addresses), the small body (two with the
    /// same bytes and length at different addresses, and a body of the same
    /// length sent apart), the body length, each framing fact, the `Server`
    /// value (two of one length with different bytes) and the second.
    #[test]
    fn head_memo_matches_the_encoder() {
        static PRESETS: [Preset; 3] = [
            Preset::new(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"),
            Preset::new(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"),
            Preset::new(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"),
        ];
        static BODIES: [&[u8]; 4] = [b"", b"Hello, World!", b"{}", b"[]"];
        let mut cases = Vec::new();
        for preset in &PRESETS {
            for small in BODIES {
                // A small static body, or (empty `small`) a body of that
                // length (or longer) sent after the head by the caller.
                let apart = [small.len(), small.len() + 100];
                let bodies = [
                    (small.len(), small),
                    (apart[0], &b""[..]),
                    (apart[1], &b""[..]),
                ];
                for (body, small) in bodies {
                    for bits in 0..8u8 {
                        let framing = Framing {
                            close: bits & 1 != 0,
                            head_request: bits & 2 != 0,
                            http10: bits & 4 != 0,
                        };
                        let body = match body {
                            0 => Empty,
                            n => Length(n as u64),
                        };
                        for server in [&b"stoat"[..], b"", b"otter"] {
                            cases.push((preset, body, framing, small, server));
                        }
                    }
                }
            }
        }
        let mut dates = [DateCache::new(NOW), DateCache::new(NOW + 1)];
        let mut memo = HeadMemo::default();
        let mut check = |case: &(&'static Preset, ResponseBody, Framing, &'static [u8], &[u8]),
                         date: &DateCache| {
            let &(preset, body, framing, small, server) = case;
            let ctx = EncodeCtx { date, server };
            let mut want = b"before".to_vec();
            let head = ResponseHead {
                status: 200,
                start: HeadStart::Preformatted(preset.start()),
                body,
            };
            let want_mode = encode_response(&mut want, head, framing, ctx, small);
            let mut got = b"before".to_vec();
            let mode = memo_encode(
                &mut memo,
                &mut got,
                preset,
                body,
                framing,
                ctx,
                small,
                |out, m| out.extend_from_slice(&m.bytes[..m.len]),
            );
            assert_eq!(
                (mode, String::from_utf8_lossy(&got)),
                (want_mode, String::from_utf8_lossy(&want))
            );
            assert!(matches!(mode, BodyMode::None | BodyMode::Raw));
        };
        for (i, a) in cases.iter().enumerate() {
            for b in &cases[i..] {
                for date in &dates {
                    check(a, date);
                    check(a, date);
                    check(b, date);
                }
            }
        }
        dates[0].update(NOW + 2);
        check(&cases[0], &dates[0]);
        check(&cases[0], &dates[0]);
    }

    /// A chunked body is never remembered: the head that follows it is
    /// encoded afresh.
    #[test]
    fn head_memo_skips_chunked() {
        static PRESET: Preset = Preset::new(b"HTTP/1.1 200 OK\r\n");
        let date = DateCache::new(NOW);
        let ctx = EncodeCtx {
            date: &date,
            server: b"",
        };
        let mut memo = HeadMemo::default();
        for _ in 0..2 {
            let mut got = Vec::new();
            let copy = |_: &mut Vec<u8>, _: &MemoBytes| panic!("a chunked head was remembered");
            let mode = memo_encode(&mut memo, &mut got, &PRESET, Chunked, GET, ctx, b"", copy);
            assert_eq!(mode, BodyMode::Chunked);
            assert_eq!(
                got,
                [
                    &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"[..],
                    DATE
                ]
                .concat()
            );
        }
    }

    #[test]
    fn encode_head_cases() {
        let cases = cases! {
            "200 with body": 200 [CT] Length(13), GET, b"stoat"
                => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                     Content-Length: 13\r\nServer: stoat\r\n" Raw;
            "HEAD keeps the GET's Content-Length, sends no body":
                200 [CT] Length(1_234_567), HEAD, b"stoat"
                => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                     Content-Length: 1234567\r\nServer: stoat\r\n" None;
            "204 has no Content-Length": 204 [] Empty, GET, b"stoat"
                => b"HTTP/1.1 204 No Content\r\nServer: stoat\r\n" None;
            "204 ignores a body": 204 [] Length(5), GET, b""
                => b"HTTP/1.1 204 No Content\r\n" None;
            "304 has no framing": 304 [h("ETag", b"\"abc\"")] Length(99), GET, b"stoat"
                => b"HTTP/1.1 304 Not Modified\r\nETag: \"abc\"\r\nServer: stoat\r\n" None;
            "304 chunked has no framing": 304 [] Chunked, GET, b""
                => b"HTTP/1.1 304 Not Modified\r\n" None;
            "101 with the caller's Upgrade and Connection": 101
                [h("Upgrade", b"websocket"), h("Connection", b"upgrade")] Empty, GET, b"stoat"
                => b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: upgrade\r\nServer: stoat\r\n" None;
            "103 has no framing": 103 [h("Link", b"</s.css>; rel=preload")] Chunked, GET, b""
                => b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n" None;
            "empty body": 200 [] Empty, GET, b"stoat"
                => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nServer: stoat\r\n" None;
            "Length(0) is an empty body": 200 [] Length(0), GET, b"stoat"
                => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nServer: stoat\r\n" None;
            "HEAD with an empty body": 200 [] Empty, HEAD, b""
                => b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" None;
            "chunked": 200 [CT] Chunked, GET, b"stoat"
                => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                     Transfer-Encoding: chunked\r\nServer: stoat\r\n" Chunked;
            "chunked answering HEAD": 200 [CT] Chunked, HEAD, b"stoat"
                => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\
                     Transfer-Encoding: chunked\r\nServer: stoat\r\n" None;
            "close": 400 [] Length(11), CLOSE, b"stoat"
                => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\n\
                     Connection: close\r\nServer: stoat\r\n" Raw;
            "close on chunked": 200 [] Chunked, CLOSE, b""
                => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\
                     Connection: close\r\n" Chunked;
            "close on 204": 204 [] Empty, CLOSE, b""
                => b"HTTP/1.1 204 No Content\r\nConnection: close\r\n" None;
            "no Server": 200 [] Length(2), GET, b""
                => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" Raw;
            "unknown status has an empty reason": 299 [] Length(2), GET, b""
                => b"HTTP/1.1 299 \r\nContent-Length: 2\r\n" Raw;
            "unknown 1xx has no framing": 199 [] Length(2), GET, b""
                => b"HTTP/1.1 199 \r\n" None;
            "highest status": 999 [] Empty, GET, b""
                => b"HTTP/1.1 999 \r\nContent-Length: 0\r\n" None;
            "reserved 418 has an empty reason": 418 [] Empty, GET, b""
                => b"HTTP/1.1 418 \r\nContent-Length: 0\r\n" None;
            "caller headers keep their order, names and values as given": 503
                [h("x-b", b"2"), h("Retry-After", b"1"), h("X-A", b""),
                 h("x-b", b"tab\there \x80\xff")]
                Length(0), CLOSE, b"stoat/0.1"
                => b"HTTP/1.1 503 Service Unavailable\r\nx-b: 2\r\nRetry-After: 1\r\n\
                     X-A: \r\nx-b: tab\there \x80\xff\r\nContent-Length: 0\r\n\
                     Connection: close\r\nServer: stoat/0.1\r\n" None;
            "HTTP/1.0 kept alive says so": 200 [] Length(2), HTTP10, b""
                => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n" Raw;
            "HTTP/1.0 gets no chunked: the body ends at close": 200 [CT] Chunked, HTTP10, b""
                => b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n" UntilClose;
            "largest Content-Length": 200 [] Length(u64::MAX), GET, b""
                => b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n" Raw;
        };
        for c in &cases {
            let (out, mode) = head(c.status, c.headers, c.body, c.framing, c.server);
            let want = [c.want, DATE].concat();
            assert!(
                out == want,
                "{}:\n got {:?}\nwant {:?}",
                c.name,
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want)
            );
            assert_eq!(mode, c.mode, "{}", c.name);
        }
    }

    #[test]
    fn encode_head_appends_within_its_bound() {
        let date = DateCache::new(NOW);
        let mut out = b"previous".to_vec();
        let headers = [CT; 8];
        let server = [b's'; 300];
        let before = out.len();
        encode_lines_head(
            &mut out,
            200,
            &headers,
            Length(u64::MAX),
            CLOSE,
            &date,
            &server,
        );
        assert!(out.starts_with(b"previous"));
        assert!(out[before..].starts_with(b"HTTP/1.1 200 OK\r\n"));
        assert!(out.ends_with(DATE));
        // The bound is exact for the longest encoder-owned lines (with
        // `Connection: close`, five bytes under the keep-alive line).
        assert_eq!(
            out.len() - before,
            17 + headers.len() * (12 + 2 + 10 + 2) + server.len() + OWNED_MAX - 5
        );
    }

    /// A preformatted start gives the bytes `encode_head` gives for the
    /// same status and fields, on every framing path, with a cached tail
    /// and without (another Server value), for Content-Length values on
    /// both sides of the table's end.
    #[test]
    fn preformatted_matches_encode_head() {
        let headers = [
            h("Content-Type", b"text/plain; charset=utf-8"),
            h("X-A", b"1"),
        ];
        let start = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nX-A: 1\r\n";
        let bodies = [
            Empty,
            Length(0),
            Length(1),
            Length(9),
            Length(10),
            Length(13),
            Length(99),
            Length(100),
            Length(999),
            Length(1000),
            Length(65_536),
            Length(u64::MAX),
            Chunked,
        ];
        for cached in [&b"stoat"[..], b"", b"another-server/1.0"] {
            let date = DateCache::with_server(NOW, cached);
            for server in [&b"stoat"[..], b"", b"another-server/1.0"] {
                for framing in [GET, HEAD, CLOSE, HTTP10] {
                    for body in bodies {
                        for status in [200, 299, 404, 503] {
                            let line = status_line(status).unwrap_or(b"HTTP/1.1 299 \r\n");
                            let start = [line, &start[17..]].concat();
                            let mut want = b"before".to_vec();
                            let want_mode = encode_lines_head(
                                &mut want, status, &headers, body, framing, &date, server,
                            );
                            let mut got = b"before".to_vec();
                            let mode = encode_preformatted_head(
                                &mut got, status, &start, body, framing, &date, server,
                            );
                            assert!(
                                got == want,
                                "{status} {body:?} {framing:?} server {server:?}:\n got {:?}\nwant {:?}",
                                String::from_utf8_lossy(&got),
                                String::from_utf8_lossy(&want)
                            );
                            assert_eq!(mode, want_mode);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn content_length_table_and_formatting_agree() {
        let date = DateCache::new(NOW);
        for n in (0..=1100).chain([9_999, 10_000, 123_456_789, u64::MAX]) {
            let mut out = Vec::new();
            encode_preformatted_head(
                &mut out,
                200,
                b"HTTP/1.1 200 OK\r\n",
                Length(n),
                GET,
                &date,
                b"",
            );
            let line = format!("Content-Length: {n}\r\n");
            assert!(
                out.windows(line.len()).any(|w| w == line.as_bytes()),
                "{n}: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn append_copies_every_short_length() {
        let src: Vec<u8> = (0..80u8).collect();
        for n in 0..=80 {
            let mut out = b"x".to_vec();
            append(&mut out, &src[..n]);
            assert_eq!(&out[..1], b"x");
            assert_eq!(&out[1..], &src[..n], "{n}");
        }
    }

    #[test]
    fn pipelined_heads_share_a_buffer() {
        let date = DateCache::new(NOW);
        let mut out = Vec::new();
        let mode = encode_lines_head(&mut out, 200, &[], Length(2), GET, &date, b"");
        assert_eq!(mode, BodyMode::Raw);
        out.extend_from_slice(b"hi");
        let mode = encode_lines_head(&mut out, 404, &[], Empty, GET, &date, b"");
        assert_eq!(mode, BodyMode::None);
        let want = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"[..],
            DATE,
            b"hi",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n",
            DATE,
        ]
        .concat();
        assert_eq!(out, want);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "outside 100..=999")]
    fn status_out_of_range_asserts() {
        head(1000, &[], Empty, GET, b"");
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn status_out_of_range_is_500() {
        for status in [0, 99, 1000, u16::MAX] {
            let (out, mode) = head(status, &[], Empty, GET, b"");
            let want = [
                &b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"[..],
                DATE,
            ]
            .concat();
            assert_eq!(out, want);
            assert_eq!(mode, BodyMode::None);
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "CR, LF or NUL")]
    fn header_value_with_crlf_asserts() {
        head(200, &[h("X-Evil", b"a\r\nSet-Cookie: x")], Empty, GET, b"");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "CR, LF or NUL")]
    fn server_value_with_nul_asserts() {
        head(200, &[], Empty, GET, b"stoat\0");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "written by the encoder")]
    fn owned_header_asserts() {
        head(200, &[h("content-length", b"5")], Empty, GET, b"");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not a token")]
    fn bad_header_name_asserts() {
        head(200, &[h("X Bad", b"1")], Empty, GET, b"");
    }

    #[test]
    fn continue_line() {
        let mut out = b"x".to_vec();
        encode_continue(&mut out);
        assert_eq!(out, b"xHTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn chunks() {
        let cases: &[(usize, &[u8])] = &[
            (1, b"1\r\n"),
            (9, b"9\r\n"),
            (0xa, b"a\r\n"),
            (0xf, b"f\r\n"),
            (0x10, b"10\r\n"),
            (0xff, b"ff\r\n"),
            (0x100, b"100\r\n"),
            (0xfff, b"fff\r\n"),
            (0x1000, b"1000\r\n"),
            (0x1_0000, b"10000\r\n"),
            (0xab_cdef, b"abcdef\r\n"),
        ];
        for &(len, size_line) in cases {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = b"pre".to_vec();
            encode_chunk(&mut out, &data);
            let mut want = b"pre".to_vec();
            want.extend_from_slice(size_line);
            want.extend_from_slice(&data);
            want.extend_from_slice(b"\r\n");
            assert!(out == want, "chunk of {len:#x} bytes");
        }
    }

    #[test]
    fn empty_chunk_writes_nothing() {
        let mut out = b"pre".to_vec();
        encode_chunk(&mut out, b"");
        assert_eq!(out, b"pre");
    }

    #[test]
    fn chunked_body() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello");
        encode_chunk(&mut out, b"");
        encode_chunk(&mut out, b", world!");
        encode_last_chunk(&mut out);
        assert_eq!(out, b"5\r\nhello\r\n8\r\n, world!\r\n0\r\n\r\n");
    }

    #[test]
    fn last_chunk() {
        let mut out = Vec::new();
        encode_last_chunk(&mut out);
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn reason_spot_checks() {
        let cases = [
            (100, "Continue"),
            (101, "Switching Protocols"),
            (103, "Early Hints"),
            (200, "OK"),
            (204, "No Content"),
            (206, "Partial Content"),
            (304, "Not Modified"),
            (308, "Permanent Redirect"),
            (404, "Not Found"),
            (413, "Content Too Large"),
            (414, "URI Too Long"),
            (421, "Misdirected Request"),
            (422, "Unprocessable Content"),
            (425, "Too Early"),
            (428, "Precondition Required"),
            (429, "Too Many Requests"),
            (431, "Request Header Fields Too Large"),
            (451, "Unavailable For Legal Reasons"),
            (500, "Internal Server Error"),
            (501, "Not Implemented"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
            (511, "Network Authentication Required"),
            // Unknown or reserved: empty.
            (0, ""),
            (99, ""),
            (104, ""),
            (199, ""),
            (306, ""),
            (418, ""),
            (509, ""),
            (600, ""),
            (999, ""),
            (u16::MAX, ""),
        ];
        for (status, want) in cases {
            assert_eq!(reason(status), want, "{status}");
        }
    }

    #[test]
    fn status_lines_match_reasons() {
        for status in 0..=u16::MAX {
            match status_line(status) {
                Some(line) => {
                    assert!((100..=999).contains(&status));
                    let want = format!("HTTP/1.1 {status} {}\r\n", reason(status));
                    assert_eq!(line, want.as_bytes());
                    assert!(!reason(status).is_empty());
                }
                None => assert_eq!(reason(status), ""),
            }
        }
        assert_eq!(status_line(500), Some(STATUS_LINE_500));
        let mut buf = *b"HTTP/1.1 000 \r\n";
        assert_eq!(custom_status_line(&mut buf, 100), b"HTTP/1.1 100 \r\n");
        assert_eq!(custom_status_line(&mut buf, 709), b"HTTP/1.1 709 \r\n");
    }

    /// A small body written with its head is the head `encode_head`
    /// writes followed by the body, where a body follows (not for HEAD,
    /// 204 or 304), for either start and every framing.
    #[test]
    fn small_body_follows_its_head() {
        let headers = [h("Content-Type", b"text/plain; charset=utf-8")];
        let preset = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n";
        let date = DateCache::with_server(NOW, b"stoat");
        let ctx = EncodeCtx {
            date: &date,
            server: date.server(),
        };
        for body in [&b"x"[..], b"Hello, World!", &[b'a'; SMALL_BODY]] {
            for framing in [GET, HEAD, CLOSE, HTTP10] {
                for status in [200, 204, 304, 404] {
                    let starts = [
                        HeadStart::Headers(&headers),
                        HeadStart::Preformatted(preset),
                    ];
                    for start in starts {
                        if matches!(start, HeadStart::Preformatted(_)) && status != 200 {
                            continue;
                        }
                        let head = ResponseHead {
                            status,
                            start,
                            body: Length(body.len() as u64),
                        };
                        let mut want = b"before".to_vec();
                        let want_mode = encode_head(&mut want, head, framing, ctx);
                        if want_mode == BodyMode::Raw {
                            want.extend_from_slice(body);
                        }
                        let mut got = b"before".to_vec();
                        let mode = encode_response(&mut got, head, framing, ctx, body);
                        assert_eq!(mode, want_mode, "{status} {framing:?}");
                        assert_eq!(
                            String::from_utf8_lossy(&got),
                            String::from_utf8_lossy(&want),
                            "{status} {framing:?}"
                        );
                    }
                }
            }
        }
    }
}
