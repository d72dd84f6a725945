//! Request head parsing: request line and header section (RFC 9112 §2-§5),
//! and the framing rules of §6 that decide how the body is delimited.
//!
//! Contract: [`HeadParser::parse`] is given the bytes received so far for
//! one request head (starting at the request line) and either reports that
//! more bytes are needed, fills a [`RequestHead`] whose fields are byte
//! ranges ([`Span`]) of those bytes, or returns the [`ProtoError`] that
//! refuses the request. It allocates nothing per request: the header index
//! vector inside `RequestHead` is reused.
//!
//! Why httparse: it is the parser hyper, actix and most of the Rust HTTP
//! ecosystem run on, fuzzed for years, with SIMD scanning of the target and
//! of header values. It returns slices into our buffer, which we turn into
//! offsets. It is lenient where RFC 9112 allows leniency and we are not
//! (bare LF line ends; it also knows nothing of Content-Length or
//! Transfer-Encoding), so those rules are checked here after it succeeds.
//!
//! Incremental: the first call on a new head lets httparse try the whole
//! buffer, which is the common case (the head arrives in one read). When it
//! is partial, later calls only scan the newly arrived bytes for the blank
//! line that ends the head, and run httparse again only once it is there.
//! A head typed one byte at a time costs O(n), not O(n²).

use std::mem::MaybeUninit;

use crate::proto::{BodyKind, Limits, ProtoError};

/// A byte range of the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes of `buf` this span covers. `buf` must be the buffer that
    /// was parsed (or one holding the same bytes at the same offsets).
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the span is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Request method (RFC 9110 §9). Methods without a variant are `Other`;
/// their text is [`RequestHead::method_span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// TRACE
    Trace,
    /// CONNECT
    Connect,
    /// Any other token.
    Other,
}

impl Method {
    /// The method for a method token (case-sensitive, RFC 9110 §9.1).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// The method's name, or `None` for `Other`.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other => return None,
        })
    }
}

/// HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    #[default]
    Http11,
}

/// One header field line, as offsets into the parsed buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderSpan {
    /// Field name.
    pub name: Span,
    /// Field value, without leading or trailing whitespace.
    pub value: Span,
}

/// A parsed request head. Every span refers to the buffer given to
/// [`HeadParser::parse`]; the head itself holds no bytes.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The method token.
    pub method_span: Span,
    /// The request target, as sent (origin, absolute, authority or asterisk form).
    pub target: Span,
    /// The HTTP version.
    pub version: Version,
    /// The header field lines in order.
    pub headers: Vec<HeaderSpan>,
    /// Bytes of the head, final blank line included: the body starts here.
    pub len: usize,
    /// How the body is framed.
    pub body: BodyKind,
    /// Whether the connection may stay open after this request (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `Connection: upgrade` together with an `Upgrade` field.
    pub upgrade: bool,
    /// The `Host` field value.
    pub host: Option<Span>,
}

impl Default for RequestHead {
    fn default() -> Self {
        RequestHead {
            method: Method::Get,
            method_span: Span::default(),
            target: Span::default(),
            version: Version::Http11,
            headers: Vec::new(),
            len: 0,
            body: BodyKind::Empty,
            keep_alive: true,
            expect_continue: false,
            upgrade: false,
            host: None,
        }
    }
}

impl RequestHead {
    /// The value of the first header named `name` (ASCII case-insensitive).
    pub fn header<'a>(&self, buf: &'a [u8], name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.of(buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.of(buf))
    }

    /// The path part of the target: for the absolute form
    /// (`http://host/path?q`) the part from the first `/` after the
    /// authority; otherwise the target up to `?`.
    pub fn path<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        let target = self.target.of(buf);
        let origin = origin_form(target);
        match memchr::memchr(b'?', origin) {
            Some(q) => &origin[..q],
            None => origin,
        }
    }

    /// The query after `?`, if any.
    pub fn query<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let origin = origin_form(self.target.of(buf));
        memchr::memchr(b'?', origin).map(|q| &origin[q + 1..])
    }
}

/// Strips `scheme://authority` from an absolute-form target (RFC 9112 §3.2.2).
fn origin_form(target: &[u8]) -> &[u8] {
    if target.first() == Some(&b'/') {
        return target;
    }
    if let Some(i) = memchr::memmem::find(target, b"://") {
        let rest = &target[i + 3..];
        return match memchr::memchr2(b'/', b'?', rest) {
            Some(p) if rest[p] == b'/' => &rest[p..],
            Some(p) => &rest[p..],
            None => b"/",
        };
    }
    target
}

/// Incremental parser state for one request head: how far the buffer has
/// been scanned for the end of the head. Reset (with [`HeadParser::reset`])
/// before the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeadParser {
    /// `None`: nothing tried yet for this head. `Some(n)`: the first `n`
    /// bytes are known not to hold the end of the head.
    scanned: Option<u32>,
    /// Where the request line starts (after empty lines) and how far it has
    /// been searched for its LF; `line_end` once found.
    line_start: u32,
    line_scanned: u32,
    line_end: Option<u32>,
}

impl HeadParser {
    /// A parser for a new head.
    pub const fn new() -> HeadParser {
        HeadParser {
            scanned: None,
            line_start: 0,
            line_scanned: 0,
            line_end: None,
        }
    }

    /// Forgets progress: the next call parses a new head.
    #[inline]
    pub fn reset(&mut self) {
        *self = HeadParser::new();
    }

    /// Parses the head at the start of `buf`. `Ok(true)`: `head` is filled
    /// and `head.len` bytes of `buf` belong to it. `Ok(false)`: more bytes
    /// are needed (call again with the same bytes plus more). Errors are
    /// final for the connection.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<bool, ProtoError> {
        if let Some(scanned) = self.scanned {
            let from = scanned as usize;
            match find_head_end(buf, from) {
                Ok(()) => {}
                Err(resume) => {
                    self.scanned = Some(resume as u32);
                    self.check_partial(buf, limits)?;
                    return Ok(false);
                }
            }
        }
        let mut raw: [MaybeUninit<httparse::Header<'_>>; Limits::MAX_HEADERS_CAP] =
            [const { MaybeUninit::uninit() }; Limits::MAX_HEADERS_CAP];
        let max = limits.max_headers.min(Limits::MAX_HEADERS_CAP);
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(buf, &mut raw[..max]) {
            Ok(httparse::Status::Complete(len)) => {
                finish(buf, len, &req, limits, head)?;
                self.reset();
                Ok(true)
            }
            Ok(httparse::Status::Partial) => {
                // httparse stops at the first byte it cannot judge yet, so a
                // complete head would have been found: nothing before the
                // last two bytes (a terminator may straddle) can end it.
                self.scanned = Some(buf.len().saturating_sub(2) as u32);
                self.check_partial(buf, limits)?;
                Ok(false)
            }
            Err(e) => Err(classify(buf, e, limits)),
        }
    }
}

/// Looks for the blank line that ends a head (`\n\r\n` or `\n\n`) from
/// `from` on. `Err(resume)`: not there; bytes before `resume` need no
/// second look.
fn find_head_end(buf: &[u8], from: usize) -> Result<(), usize> {
    for i in memchr::memchr_iter(b'\n', &buf[from.min(buf.len())..]) {
        let i = from + i;
        match buf.get(i + 1) {
            Some(b'\n') => return Ok(()),
            Some(b'\r') => match buf.get(i + 2) {
                Some(b'\n') => return Ok(()),
                Some(_) => {}
                None => return Err(i),
            },
            Some(_) => {}
            None => return Err(i),
        }
    }
    Err(buf.len())
}

impl HeadParser {
    /// Limits that can be decided before the head is complete: the request
    /// line's length (414) and the header section's (431). Finds the request
    /// line's end incrementally, skipping empty lines before it.
    fn check_partial(&mut self, buf: &[u8], limits: &Limits) -> Result<(), ProtoError> {
        if self.line_end.is_none() {
            let mut from = self.line_scanned as usize;
            while let Some(i) = memchr::memchr(b'\n', &buf[from..]) {
                let lf = from + i;
                let line = &buf[self.line_start as usize..lf];
                if line.is_empty() || line == b"\r" {
                    // RFC 9112 §2.2: empty lines before the request line are ignored.
                    self.line_start = (lf + 1) as u32;
                    from = lf + 1;
                } else {
                    self.line_end = Some(lf as u32);
                    break;
                }
            }
            if self.line_end.is_none() {
                self.line_scanned = buf.len() as u32;
            }
        }
        match self.line_end {
            None => {
                // RFC 9112 §3: a server that receives a request-target longer
                // than any URI it wishes to parse MUST respond with 414.
                if buf.len() - self.line_start as usize > limits.max_request_line {
                    return Err(ProtoError::RequestLineTooLong);
                }
            }
            Some(end) => {
                if buf.len() - end as usize - 1 > limits.max_header_bytes {
                    return Err(ProtoError::HeadersTooLarge);
                }
            }
        }
        Ok(())
    }
}

/// Turns httparse's slices into spans and applies the framing rules.
fn finish(
    buf: &[u8],
    len: usize,
    req: &httparse::Request<'_, '_>,
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<(), ProtoError> {
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        Span {
            start,
            end: start + s.len() as u32,
        }
    };
    // httparse fills method, path and version before it reports Complete.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ProtoError::BadRequestLine);
    };
    head.method_span = span(method.as_bytes());
    head.method = Method::from_bytes(method.as_bytes());
    head.target = span(target.as_bytes());
    head.version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    head.len = len;

    // RFC 9112 §2.2 lets a recipient accept a bare LF as a line terminator;
    // we do not: "LF inside a value" must not turn into a new field line.
    // Every line ends in CRLF: check the byte before each line start.
    // The request line ends where the first field line starts (or where
    // the final CRLF starts when there are none).
    let line_end = match req.headers.first() {
        Some(h) => span(h.name.as_bytes()).start as usize,
        None => len - 2,
    };
    if line_end < 2 || buf[line_end - 2] != b'\r' {
        return Err(ProtoError::BareLf);
    }
    if len < 4 || &buf[len - 4..len] != b"\r\n\r\n" && !req.headers.is_empty() {
        return Err(ProtoError::BareLf);
    }
    if req.headers.is_empty() && &buf[len - 2..len] != b"\r\n" {
        return Err(ProtoError::BareLf);
    }
    let request_line_start = head.method_span.start as usize;
    if line_end - request_line_start > limits.max_request_line {
        return Err(ProtoError::RequestLineTooLong);
    }
    if len - line_end > limits.max_header_bytes {
        return Err(ProtoError::HeadersTooLarge);
    }

    let mut fields = Fields::default();
    head.headers.clear();
    for (i, h) in req.headers.iter().enumerate() {
        let name = span(h.name.as_bytes());
        let value = span(h.value);
        if let Some(next) = req.headers.get(i + 1) {
            let next_start = span(next.name.as_bytes()).start as usize;
            if buf[next_start - 2] != b'\r' {
                return Err(ProtoError::BareLf);
            }
        }
        fields.note(h.name.as_bytes(), h.value, value)?;
        head.headers.push(HeaderSpan { name, value });
    }
    fields.apply(head, limits)
}

/// What the framing rules need from the header fields, gathered in one pass.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    chunked: u32,
    other_coding: bool,
    host: Option<Span>,
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    upgrade: bool,
    expect_continue: bool,
}

impl Fields {
    fn note(&mut self, name: &[u8], value: &[u8], span: Span) -> Result<(), ProtoError> {
        // Dispatch on length first: most fields are none of these.
        match name.len() {
            4 if is_name(name, b"host") => {
                // RFC 9112 §3.2: a server MUST respond with 400 to a request
                // that lacks Host or has more than one Host field line.
                if self.host.is_some() {
                    return Err(ProtoError::DuplicateHost);
                }
                if !value.iter().all(|&b| HOST_CHARS[b as usize]) {
                    return Err(ProtoError::BadHost);
                }
                self.host = Some(span);
            }
            6 if is_name(name, b"expect") => {
                // RFC 9110 §10.1.1: 100-continue is the only expectation;
                // a server that receives another MAY respond with 417.
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.expect_continue = true;
                } else {
                    return Err(ProtoError::UnsupportedExpectation);
                }
            }
            7 if is_name(name, b"upgrade") => self.upgrade = true,
            10 if is_name(name, b"connection") => {
                for token in list_elements(value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        self.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        self.keep_alive = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        self.connection_upgrade = true;
                    }
                }
            }
            14 if is_name(name, b"content-length") => {
                // RFC 9110 §8.6: Content-Length = 1*DIGIT. Several identical
                // values may be accepted; differing ones are unrecoverable
                // (RFC 9112 §6.3 rule 5). A comma list is not plain digits.
                let n = parse_content_length(value)?;
                match self.content_length {
                    Some(prev) if prev != n => return Err(ProtoError::ConflictingContentLength),
                    _ => self.content_length = Some(n),
                }
            }
            17 if is_name(name, b"transfer-encoding") => {
                self.transfer_encoding = true;
                // Several field lines form one list, in order (RFC 9110 §5.3).
                for coding in list_elements(value) {
                    if coding.eq_ignore_ascii_case(b"chunked") {
                        self.chunked += 1;
                        self.chunked_last = true;
                    } else {
                        self.other_coding = true;
                        self.chunked_last = false;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(self, head: &mut RequestHead, limits: &Limits) -> Result<(), ProtoError> {
        let http11 = head.version == Version::Http11;
        if self.transfer_encoding {
            // RFC 9112 §6.1: a server MUST NOT treat an HTTP/1.0 request
            // with Transfer-Encoding as having a reliable body length.
            if !http11 {
                return Err(ProtoError::TransferEncodingInHttp10);
            }
            // RFC 9112 §6.3 rule 3: Transfer-Encoding with Content-Length
            // ought to be handled as an error (request smuggling).
            if self.content_length.is_some() {
                return Err(ProtoError::ContentLengthWithTransferEncoding);
            }
            // RFC 9112 §6.3: if chunked is not the final coding of a
            // request, respond 400 and close. §7: a sender MUST NOT apply
            // chunked more than once.
            if !self.chunked_last || self.chunked > 1 {
                return Err(ProtoError::ChunkedNotLast);
            }
            // RFC 9112 §6.1: a transfer coding the server does not
            // implement SHOULD get 501.
            if self.other_coding {
                return Err(ProtoError::UnknownTransferCoding);
            }
            head.body = BodyKind::Chunked;
        } else {
            head.body = match self.content_length {
                None | Some(0) => BodyKind::Empty,
                Some(n) if n > limits.max_body_size => return Err(ProtoError::BodyTooLarge),
                Some(n) => BodyKind::Length(n),
            };
        }
        if http11 && self.host.is_none() {
            return Err(ProtoError::MissingHost);
        }
        head.host = self.host;
        // RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
        head.keep_alive = !self.close && (http11 || self.keep_alive);
        // RFC 9110 §10.1.1: ignore 100-continue in an HTTP/1.0 request.
        head.expect_continue = self.expect_continue && http11 && head.body != BodyKind::Empty;
        head.upgrade = self.upgrade && self.connection_upgrade;
        Ok(())
    }
}

/// `1*DIGIT` into u64, or `BadContentLength`.
fn parse_content_length(value: &[u8]) -> Result<u64, ProtoError> {
    if value.is_empty() {
        return Err(ProtoError::BadContentLength);
    }
    let mut n: u64 = 0;
    for &b in value {
        if !b.is_ascii_digit() {
            return Err(ProtoError::BadContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ProtoError::BadContentLength)?;
    }
    Ok(n)
}

/// The elements of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed,
/// empty elements skipped.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// Whether the field name `name` (a token: httparse checked it) is `lit`,
/// given in lowercase, ignoring ASCII case. Setting bit 0x20 lowercases
/// letters and leaves `-` and digits as they are; no other token character
/// maps onto a lowercase letter or `-` that way, so for a token this is an
/// exact case-insensitive comparison, done a word at a time.
#[inline]
fn is_name(name: &[u8], lit: &[u8]) -> bool {
    debug_assert_eq!(name.len(), lit.len());
    let mut n = name.chunks_exact(8);
    let mut l = lit.chunks_exact(8);
    for (a, b) in (&mut n).zip(&mut l) {
        let a = u64::from_le_bytes(a.try_into().unwrap_or([0; 8]));
        let b = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        if a | 0x2020_2020_2020_2020 != b {
            return false;
        }
    }
    n.remainder()
        .iter()
        .zip(l.remainder())
        .all(|(&a, &b)| a | 0x20 == b)
}

/// Characters of `uri-host [ ":" port ]` (RFC 3986 reg-name, IP-literal,
/// port), as a table: one load per byte.
static HOST_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b':'
                    | b'['
                    | b']'
            );
        b += 1;
    }
    t
};

/// Names the rule an httparse error broke. Only runs on bad input.
fn classify(buf: &[u8], e: httparse::Error, limits: &Limits) -> ProtoError {
    if e == httparse::Error::TooManyHeaders {
        return ProtoError::TooManyHeaders;
    }
    // RFC 9112 §2.2: a bare CR anywhere in the head is invalid.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let rest = &buf[start..];
    if has_bare_cr(rest) {
        return ProtoError::BareCr;
    }
    // We accept no bare LF as a line end (see `finish`).
    if memchr::memchr_iter(b'\n', rest).any(|i| i == 0 || rest[i - 1] != b'\r') {
        return ProtoError::BareLf;
    }
    let line_len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    let line = &rest[..line_len];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limits.max_request_line {
        return ProtoError::RequestLineTooLong;
    }
    if let Some(err) = request_line_error(line, line_len < rest.len()) {
        return err;
    }
    // The request line is sound: the fault is in a field line.
    let fields = &rest[(line_len + 1).min(rest.len())..];
    if fields.first().is_some_and(|&b| b == b' ' || b == b'\t')
        || memchr::memmem::find(fields, b"\n ").is_some()
        || memchr::memmem::find(fields, b"\n\t").is_some()
    {
        // RFC 9112 §5.2: a server MUST reject obs-fold in a request
        // (outside message/http) with 400.
        return ProtoError::ObsFold;
    }
    match e {
        httparse::Error::HeaderName => ProtoError::BadHeaderName,
        httparse::Error::HeaderValue => ProtoError::BadHeaderValue,
        httparse::Error::NewLine => ProtoError::BareLf,
        _ => ProtoError::BadHeaderName,
    }
}

/// The error in a request line, if it has one. `complete`: the line's LF
/// was seen. RFC 9112 §3: `method SP request-target SP HTTP-version`, single
/// spaces, no other whitespace.
fn request_line_error(line: &[u8], complete: bool) -> Option<ProtoError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Some(ProtoError::BadRequestLine);
    };
    if method.is_empty() || target.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Some(ProtoError::BadRequestLine);
    }
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Some(ProtoError::BadRequestLine);
    }
    // HTTP-version = "HTTP" "/" DIGIT "." DIGIT (RFC 9112 §2.3).
    match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            if *major == b'1' && (*minor == b'0' || *minor == b'1') {
                // A supported version: the error is elsewhere, unless the
                // line itself was unreadable.
                (!complete).then_some(ProtoError::BadRequestLine)
            } else {
                // RFC 9110 §15.6.6: 505 for a major version we do not support.
                // HTTP/1.2+ cannot be parsed by httparse; refused the same way.
                Some(ProtoError::VersionNotSupported)
            }
        }
        _ => Some(ProtoError::BadVersion),
    }
}

fn has_bare_cr(buf: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', buf).any(|i| buf.get(i + 1).is_some_and(|&b| b != b'\n'))
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<RequestHead, ProtoError> {
        parse_with(bytes, &Limits::default())
    }

    fn parse_with(bytes: &[u8], limits: &Limits) -> Result<RequestHead, ProtoError> {
        let mut head = RequestHead::default();
        let mut p = HeadParser::new();
        match p.parse(bytes, limits, &mut head)? {
            true => Ok(head),
            false => panic!("partial: {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    /// Feeds `bytes` one byte at a time, as `nc` would.
    fn parse_trickle(bytes: &[u8], limits: &Limits) -> Result<Option<RequestHead>, ProtoError> {
        let mut head = RequestHead::default();
        let mut p = HeadParser::new();
        for n in 1..=bytes.len() {
            if p.parse(&bytes[..n], limits, &mut head)? {
                assert_eq!(head.len, n, "complete exactly at the end of the head");
                return Ok(Some(head));
            }
        }
        Ok(None)
    }

    fn err(bytes: &[u8]) -> ProtoError {
        let e = parse(bytes).expect_err("must be refused");
        // The same verdict whatever the packetization.
        assert_eq!(parse_trickle(bytes, &Limits::default()).err(), Some(e));
        e
    }

    macro_rules! refused {
        ($($name:ident: $bytes:expr => $err:ident, $status:expr;)*) => {$(
            #[test]
            fn $name() {
                let e = err($bytes);
                assert_eq!(e, ProtoError::$err);
                assert_eq!(e.status(), $status);
                assert!(e.closes());
            }
        )*};
    }

    refused! {
        content_length_with_transfer_encoding:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            => ContentLengthWithTransferEncoding, 400;
        transfer_encoding_with_content_length_after:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
            => ContentLengthWithTransferEncoding, 400;
        content_length_differing_values:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
            => ConflictingContentLength, 400;
        content_length_sign:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n" => BadContentLength, 400;
        content_length_negative:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -3\r\n\r\n" => BadContentLength, 400;
        content_length_hex:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n" => BadContentLength, 400;
        content_length_empty:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n" => BadContentLength, 400;
        content_length_space_inside:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n" => BadContentLength, 400;
        content_length_list:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n" => BadContentLength, 400;
        content_length_overflow:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n"
            => BadContentLength, 400;
        content_length_over_max_body_size:
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1048577\r\n\r\n" => BodyTooLarge, 413;
        transfer_encoding_unknown_coding:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            => UnknownTransferCoding, 501;
        transfer_encoding_unknown_coding_in_separate_line:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\nTransfer-Encoding: chunked\r\n\r\n"
            => UnknownTransferCoding, 501;
        transfer_encoding_chunked_not_last:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
            => ChunkedNotLast, 400;
        transfer_encoding_without_chunked:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n" => ChunkedNotLast, 400;
        transfer_encoding_chunked_twice:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
            => ChunkedNotLast, 400;
        transfer_encoding_chunked_twice_across_lines:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
            => ChunkedNotLast, 400;
        transfer_encoding_empty:
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n" => ChunkedNotLast, 400;
        transfer_encoding_in_http10:
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n" => TransferEncodingInHttp10, 400;
        whitespace_between_field_name_and_colon:
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n" => BadHeaderName, 400;
        tab_between_field_name_and_colon:
            b"GET / HTTP/1.1\r\nHost\t: a\r\n\r\n" => BadHeaderName, 400;
        obs_fold:
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n" => ObsFold, 400;
        obs_fold_tab:
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n" => ObsFold, 400;
        space_before_first_field:
            b"GET / HTTP/1.1\r\n Host: a\r\n\r\n" => ObsFold, 400;
        bare_cr_in_value:
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n" => BareCr, 400;
        bare_cr_line_end:
            b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n" => BareCr, 400;
        bare_cr_in_request_line:
            b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n" => BareCr, 400;
        nul_in_value:
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n" => BadHeaderValue, 400;
        control_char_in_value:
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n" => BadHeaderValue, 400;
        lf_in_value:
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n" => BareLf, 400;
        lf_line_end_in_fields:
            b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n" => BareLf, 400;
        lf_line_end_after_request_line:
            b"GET / HTTP/1.1\nHost: a\r\n\r\n" => BareLf, 400;
        lf_only_head:
            b"GET / HTTP/1.1\nHost: a\n\n" => BareLf, 400;
        invalid_token_char_in_name:
            b"GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n" => BadHeaderName, 400;
        non_ascii_in_name:
            b"GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: b\r\n\r\n" => BadHeaderName, 400;
        empty_field_name:
            b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n" => BadHeaderName, 400;
        missing_host_http11:
            b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n" => MissingHost, 400;
        duplicate_host:
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" => DuplicateHost, 400;
        duplicate_host_same_value:
            b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n" => DuplicateHost, 400;
        invalid_host:
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n" => BadHost, 400;
        request_line_double_space:
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        request_line_double_space_before_version:
            b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        request_line_tab:
            b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        request_line_tab_in_target:
            b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        request_line_missing_target:
            b"GET HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        request_line_missing_version:
            b"GET /\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        request_line_bad_method_token:
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n" => BadRequestLine, 400;
        version_http2:
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n" => VersionNotSupported, 505;
        version_http3:
            b"GET / HTTP/3.0\r\nHost: a\r\n\r\n" => VersionNotSupported, 505;
        version_http09:
            b"GET / HTTP/0.9\r\nHost: a\r\n\r\n" => VersionNotSupported, 505;
        version_malformed_lowercase:
            b"GET / http/1.1\r\nHost: a\r\n\r\n" => BadVersion, 400;
        version_malformed_two_digits:
            b"GET / HTTP/1.10\r\nHost: a\r\n\r\n" => BadVersion, 400;
        version_malformed_missing_minor:
            b"GET / HTTP/1\r\nHost: a\r\n\r\n" => BadVersion, 400;
        expect_other_than_100_continue:
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n"
            => UnsupportedExpectation, 417;
    }

    #[test]
    fn request_line_too_long() {
        let limits = Limits::default();
        let mut req = b"GET /".to_vec();
        req.extend(std::iter::repeat_n(b'a', limits.max_request_line));
        // Refused before the line ends: the limit is reached mid-line.
        let e = parse_trickle(&req, &limits).unwrap_err();
        assert_eq!((e, e.status()), (ProtoError::RequestLineTooLong, 414));
        req.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(parse(&req).unwrap_err(), ProtoError::RequestLineTooLong);
    }

    #[test]
    fn header_bytes_too_large() {
        let limits = Limits::default();
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
        req.extend(std::iter::repeat_n(b'a', limits.max_header_bytes));
        let e = parse_trickle(&req, &limits).unwrap_err();
        assert_eq!((e, e.status()), (ProtoError::HeadersTooLarge, 431));
        req.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&req).unwrap_err(), ProtoError::HeadersTooLarge);
    }

    #[test]
    fn too_many_headers() {
        let limits = Limits {
            max_headers: 4,
            ..Limits::default()
        };
        let ok = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(parse_with(ok, &limits).unwrap().headers.len(), 4);
        let e = parse_with(
            b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
            &limits,
        )
        .unwrap_err();
        assert_eq!((e, e.status()), (ProtoError::TooManyHeaders, 431));
    }

    #[test]
    fn simple_get() {
        let buf = b"GET /plaintext?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nAccept: */*\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.method_span.of(buf), b"GET");
        assert_eq!(h.target.of(buf), b"/plaintext?x=1");
        assert_eq!(h.path(buf), b"/plaintext");
        assert_eq!(h.query(buf), Some(&b"x=1"[..]));
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.len, buf.len());
        assert_eq!(h.body, BodyKind::Empty);
        assert!(h.keep_alive);
        assert_eq!(h.host.unwrap().of(buf), b"localhost:8080");
        assert_eq!(h.header(buf, "accept"), Some(&b"*/*"[..]));
        assert_eq!(h.headers.len(), 2);
    }

    #[test]
    fn head_is_complete_exactly_when_blank_line_arrives() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n";
        let h = parse_trickle(&buf[..27], &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.len, 27);
        // With the next pipelined request behind it, the head still ends at 27.
        assert_eq!(parse(buf).unwrap().len, 27);
    }

    #[test]
    fn byte_at_a_time_scans_each_byte_once() {
        // A long head typed one byte at a time: the parser's scan position
        // advances with the input instead of restarting at zero.
        let mut req = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..50 {
            req.extend_from_slice(format!("X-Header-{i}: value-{i}\r\n").as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        let limits = Limits::default();
        let mut head = RequestHead::default();
        let mut p = HeadParser::new();
        for n in 1..req.len() {
            assert!(!p.parse(&req[..n], &limits, &mut head).unwrap());
            let scanned = p.scanned.unwrap() as usize;
            assert!(
                scanned + 2 >= n,
                "scan resumes near the end: {scanned} of {n}"
            );
        }
        assert!(p.parse(&req, &limits, &mut head).unwrap());
        assert_eq!(head.headers.len(), 51);
    }

    #[test]
    fn keep_alive_rules() {
        let cases: &[(&[u8], bool)] = &[
            (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                false,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (
                b"GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
                false,
            ),
        ];
        for (req, keep) in cases {
            assert_eq!(
                parse(req).unwrap().keep_alive,
                *keep,
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn body_framing() {
        let cases: &[(&[u8], BodyKind)] = &[
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n",
                BodyKind::Length(12),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                BodyKind::Empty,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
                BodyKind::Length(5),
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                BodyKind::Chunked,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
                BodyKind::Chunked,
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", BodyKind::Empty),
            (
                b"POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n",
                BodyKind::Length(3),
            ),
        ];
        for (req, kind) in cases {
            assert_eq!(
                parse(req).unwrap().body,
                *kind,
                "{:?}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn expect_continue() {
        let h = parse(
            b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert!(h.unwrap().expect_continue);
        // Ignored without a body, and in HTTP/1.0 (RFC 9110 §10.1.1).
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n")
                .unwrap()
                .expect_continue
        );
        assert!(
            !parse(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .expect_continue
        );
    }

    #[test]
    fn absolute_form_target_accepted() {
        let buf = b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.target.of(buf), b"http://example.com:8080/a/b?c=d");
        assert_eq!(h.path(buf), b"/a/b");
        assert_eq!(h.query(buf), Some(&b"c=d"[..]));
        let buf = b"GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n";
        assert_eq!(parse(buf).unwrap().path(buf), b"/");
    }

    #[test]
    fn asterisk_and_authority_forms_accepted() {
        let buf = b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(parse(buf).unwrap().target.of(buf), b"*");
        let buf = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(
            (h.method, h.target.of(buf)),
            (Method::Connect, &b"example.com:443"[..])
        );
    }

    #[test]
    fn empty_lines_before_request_line_are_skipped() {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line.
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.method_span.of(buf), b"GET");
        assert_eq!(h.len, buf.len());
    }

    #[test]
    fn upgrade_needs_both_fields() {
        let h = parse(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(h.unwrap().upgrade);
        assert!(
            !parse(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .upgrade
        );
    }

    #[test]
    fn field_names_match_ignoring_case_only() {
        assert!(is_name(b"Content-Length", b"content-length"));
        assert!(is_name(b"TRANSFER-ENCODING", b"transfer-encoding"));
        assert!(is_name(b"hOsT", b"host"));
        assert!(!is_name(b"hosu", b"host"));
        assert!(!is_name(b"Content_Length", b"content-length"));
        // Every token character: only the two cases of a letter match it.
        for b in 0u8..=255 {
            if is_tchar(b) {
                let want = b.eq_ignore_ascii_case(&b'h');
                assert_eq!(is_name(&[b], b"h"), want, "{b:#x}");
                assert_eq!(is_name(&[b], b"-"), b == b'-', "{b:#x}");
            }
        }
    }

    #[test]
    fn methods() {
        for (m, want) in [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Patch),
            ("TRACE", Method::Trace),
            ("PURGE", Method::Other),
            ("get", Method::Other),
        ] {
            let req = format!("{m} / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(parse(req.as_bytes()).unwrap().method, want, "{m}");
        }
    }

    #[test]
    fn value_whitespace_trimmed_and_obs_text_allowed() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: \t b \xe9 c \t\r\n\r\n";
        let h = parse(buf).unwrap();
        assert_eq!(h.header(buf, "x-a"), Some(&b"b \xe9 c"[..]));
    }

    #[test]
    fn partial_heads_are_partial() {
        let full = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for n in 0..full.len() {
            let mut head = RequestHead::default();
            let mut p = HeadParser::new();
            assert_eq!(
                p.parse(&full[..n], &Limits::default(), &mut head),
                Ok(false),
                "{n}"
            );
        }
    }
}
