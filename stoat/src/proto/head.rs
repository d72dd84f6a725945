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
//! Why hand-written: this is the product's core hot path, run once per
//! request. httparse (what hyper and most of the Rust ecosystem use) was
//! measured here at ~560 instructions per small request (its parse, a UTF-8
//! check of the target and SIMD dispatch), more than the leanest peer
//! server's whole budget per request, and it is more lenient than we are
//! (bare LF line ends), so its result needed a second pass anyway. This
//! scanner applies our rules in the single pass that finds the spans:
//!
//! - request line `method SP request-target SP HTTP-version CRLF`, single
//!   spaces; the method a token; target bytes visible ASCII or valid UTF-8
//!   (what httparse accepts); `HTTP/1.0` and `HTTP/1.1`, another
//!   `HTTP/d.d` 505, anything else 400;
//! - every line ends in CRLF: bare LF and bare CR are refused; empty lines
//!   before the request line are skipped;
//! - field name a token with the colon right after it; value OWS-trimmed
//!   field-content (HTAB, SP, VCHAR, obs-text); obs-fold refused;
//! - the framing fields (Host, Content-Length, Transfer-Encoding,
//!   Connection, Expect, Upgrade) are noted as their lines are scanned,
//!   dispatching on the name's length first.
//!
//! Two scans. A new head first goes through the fast path ([`fast`]): the
//! usual shape only, 16 bytes per step ([`crate::simd`]), no bookkeeping
//! to name faults; it fills the head, says the bytes end inside it, or
//! declines (every fault, every limit, anything unusual), and the full
//! scan below decides. The full scan takes the target and field values a
//! word (8 bytes) at a time (SWAR: one add-and-mask per word finds the
//! first byte that needs a closer look); names and the method use a
//! 256-entry class table. The first byte that breaks a rule names the
//! error; a request-line fault is named by a slower second look at that
//! line only. Whatever the fast path concludes is what the full scan
//! concludes (`tests::fast_path_agrees_with_full_scan`, the `head_fast`
//! fuzz target). The scanner is
//! differential-fuzzed against httparse (`fuzz/fuzz_targets/head_diff.rs`):
//! wherever httparse accepts a head with CRLF line ends, we accept it with
//! the same method, target, version, fields and length, unless one of our
//! documented framing rules refuses it; and whatever we accept, httparse
//! accepts.
//!
//! Incremental: the first call on a new head scans the whole buffer, which
//! is the common case (the head arrives in one read). When it is partial,
//! later calls only scan the newly arrived bytes for the blank line that
//! ends the head, and scan the head again only once it is there. A head
//! typed one byte at a time costs O(n), not O(n²).

use crate::proto::{BodyKind, Limits, ProtoError};

mod fast;

use fast::Shape;

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
    /// Whether a `Referer` or `User-Agent` field is among `headers` (the
    /// access log looks for them only then).
    pub referer_or_user_agent: bool,
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
            referer_or_user_agent: false,
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
    #[inline]
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<bool, ProtoError> {
        if self.scanned.is_none() {
            match fast::parse(buf, limits, head) {
                Shape::Complete => return Ok(true),
                Shape::Partial => return self.partial(buf, limits),
                Shape::Other => {}
            }
        }
        self.parse_full(buf, limits, head)
    }

    /// [`HeadParser::parse`] without the fast path, for the differential
    /// fuzz target (`fuzz/fuzz_targets/head_fast.rs`); built only there.
    #[cfg(fuzzing)]
    #[doc(hidden)]
    pub fn parse_without_fast_path(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<bool, ProtoError> {
        self.parse_full(buf, limits, head)
    }

    /// [`HeadParser::parse`] by the full scan, which names every fault.
    #[inline(never)]
    fn parse_full(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<bool, ProtoError> {
        if let Some(scanned) = self.scanned {
            if let Err(resume) = find_head_end(buf, scanned as usize) {
                self.scanned = Some(resume as u32);
                self.check_partial(buf, limits)?;
                return Ok(false);
            }
        }
        if scan(buf, limits, head)? {
            self.reset();
            Ok(true)
        } else {
            self.partial(buf, limits)
        }
    }

    /// The head is not complete in `buf` and nothing in it breaks a rule.
    #[cold]
    fn partial(&mut self, buf: &[u8], limits: &Limits) -> Result<bool, ProtoError> {
        // The scan stops only at the end of the bytes, so a complete head
        // would have been found: nothing before the last two bytes (a
        // terminator may straddle) can end it.
        self.scanned = Some(buf.len().saturating_sub(2) as u32);
        self.check_partial(buf, limits)?;
        Ok(false)
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

/// `HTTP/1.1` and `HTTP/1.0` as little-endian words.
const HTTP11: u64 = u64::from_le_bytes(*b"HTTP/1.1");
const HTTP10: u64 = u64::from_le_bytes(*b"HTTP/1.0");

/// One pass over a whole head: `Ok(true)` with `head` filled, `Ok(false)`
/// when the bytes end before the head does (nothing wrong so far), or the
/// error at the first byte that breaks a rule.
#[inline]
fn scan(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Result<bool, ProtoError> {
    // RFC 9112 §2.2: empty lines before the request line are ignored. (A
    // bare LF empty line is tolerated here, as it always was: it cannot
    // split a field line.)
    let mut i = 0;
    loop {
        match buf.get(i) {
            None => return Ok(false),
            Some(b'\n') => i += 1,
            Some(b'\r') => match buf.get(i + 1) {
                Some(b'\n') => i += 2,
                Some(_) => return Err(ProtoError::BareCr),
                None => return Ok(false),
            },
            Some(_) => break,
        }
    }
    let line_start = i;

    // method SP: a token, `GET` in one compare.
    let method_end;
    if buf.get(i..i + 4) == Some(b"GET ") {
        head.method = Method::Get;
        method_end = i + 3;
    } else {
        let Some(n) = buf[i..].iter().position(|&b| !is(b, TCHAR)) else {
            return Ok(false);
        };
        method_end = i + n;
        if n == 0 || buf[method_end] != b' ' {
            return Err(request_line_fault(buf, line_start, limits));
        }
        head.method = Method::from_bytes(&buf[i..method_end]);
    }
    head.method_span = span(i, method_end);

    // request-target SP: visible ASCII, or UTF-8 (as httparse allows).
    let target_start = method_end + 1;
    i = target_start;
    let mut non_ascii = false;
    let target_end = loop {
        let Some(j) = find_stop(buf, i, target_stops, TARGET) else {
            return Ok(false);
        };
        match buf[j] {
            b' ' if j > target_start => break j,
            0x80.. => {
                non_ascii = true;
                i = j + 1;
            }
            _ => return Err(request_line_fault(buf, line_start, limits)),
        }
    };
    if non_ascii && std::str::from_utf8(&buf[target_start..target_end]).is_err() {
        return Err(ProtoError::BadRequestLine);
    }
    head.target = span(target_start, target_end);

    // HTTP-version CRLF.
    i = target_end + 1;
    let Some(v) = buf.get(i..i + 10) else {
        // Judged once the line is whole (or long enough to judge).
        if memchr::memchr(b'\n', &buf[i..]).is_some() {
            return Err(request_line_fault(buf, line_start, limits));
        }
        return Ok(false);
    };
    let word = u64::from_le_bytes([v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]]);
    head.version = if word == HTTP11 {
        Version::Http11
    } else if word == HTTP10 {
        Version::Http10
    } else {
        return Err(request_line_fault(buf, line_start, limits));
    };
    if v[8..] != *b"\r\n" {
        return Err(request_line_fault(buf, line_start, limits));
    }
    i += 10;
    let fields_start = i;
    if fields_start - line_start > limits.max_request_line {
        return Err(ProtoError::RequestLineTooLong);
    }

    // Field lines, up to the empty line.
    let max = limits.max_headers.min(Limits::MAX_HEADERS_CAP);
    head.headers.clear();
    let mut fields = Fields::new();
    // A framing rule broken by a field: reported once the head is complete
    // and within the limits (syntax errors and limits name the fault first).
    let mut broken: Option<ProtoError> = None;
    loop {
        let Some(&first) = buf.get(i) else {
            return Ok(false);
        };
        if first == b'\r' {
            match buf.get(i + 1) {
                Some(b'\n') => {
                    i += 2;
                    break;
                }
                Some(_) => return Err(field_fault(ProtoError::BareCr, i, fields_start, limits)),
                None => return Ok(false),
            }
        }
        if head.headers.len() == max {
            return Err(ProtoError::TooManyHeaders);
        }

        // field-name ":" (no whitespace before the colon). `Host:`, in every
        // HTTP/1.1 request and usually first, is taken in one compare.
        let name_start = i;
        let colon = if is_host_name(buf, i) {
            i + 4
        } else {
            loop {
                let Some(j) = find_stop(buf, i, name_stops, TCHAR) else {
                    return Ok(false);
                };
                match buf[j] {
                    b':' if j > name_start => break j,
                    // A token character other than a letter, digit or `-`.
                    b if is(b, TCHAR) => i = j + 1,
                    _ => return Err(name_fault(buf, j, j == name_start, fields_start, limits)),
                }
            }
        };

        // OWS field-value OWS CRLF.
        i = colon + 1;
        while let Some(b' ' | b'\t') = buf.get(i) {
            i += 1;
        }
        let value_start = i;
        let cr = loop {
            let Some(j) = find_stop(buf, i, value_stops, VALUE) else {
                return Ok(false);
            };
            match buf[j] {
                b'\t' => i = j + 1,
                b'\r' => match buf.get(j + 1) {
                    Some(b'\n') => break j,
                    Some(_) => {
                        return Err(field_fault(ProtoError::BareCr, j, fields_start, limits))
                    }
                    None => return Ok(false),
                },
                b'\n' => return Err(field_fault(ProtoError::BareLf, j, fields_start, limits)),
                _ => {
                    return Err(field_fault(
                        ProtoError::BadHeaderValue,
                        j,
                        fields_start,
                        limits,
                    ))
                }
            }
        };
        let mut value_end = cr;
        while value_end > value_start && matches!(buf[value_end - 1], b' ' | b'\t') {
            value_end -= 1;
        }
        i = cr + 2;

        let name = span(name_start, colon);
        let value = span(value_start, value_end);
        if let Err(e) = fields.note(&buf[name_start..colon], &buf[value_start..value_end], value) {
            broken.get_or_insert(e);
        }
        head.headers.push(HeaderSpan { name, value });
    }

    if i - fields_start > limits.max_header_bytes {
        return Err(ProtoError::HeadersTooLarge);
    }
    if let Some(e) = broken {
        return Err(e);
    }
    head.len = i;
    fields.apply(head, limits)?;
    Ok(true)
}

#[inline(always)]
fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        end: end as u32,
    }
}

/// The first byte at or after `from` that `stops` (a word at a time) or
/// `class` (the table, for the tail under 8 bytes) does not let through;
/// `None` when the bytes end first.
#[inline(always)]
fn find_stop(buf: &[u8], from: usize, stops: fn(u64) -> u64, class: u8) -> Option<usize> {
    let mut i = from;
    // Two words per step while there are: long values (cookies, user
    // agents) pay one branch per 16 bytes.
    while let Some(w) = buf.get(i..i + 16) {
        let lo = stops(load_word(w, 0));
        let hi = stops(load_word(w, 8));
        if lo | hi != 0 {
            let k = if lo != 0 {
                lo.trailing_zeros() / 8
            } else {
                8 + hi.trailing_zeros() / 8
            };
            return Some(i + k as usize);
        }
        i += 16;
    }
    while let Some(w) = buf.get(i..i + 8) {
        let word = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let s = stops(word);
        if s != 0 {
            // Little-endian: the lowest flagged byte is the first in memory.
            return Some(i + (s.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf[i.min(buf.len())..]
        .iter()
        .position(|&b| !is(b, class))
        .map(|n| i + n)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` a request target cannot hold without
/// a closer look: below 0x21 (controls, SP), DEL, and 0x80 and up (checked
/// as UTF-8). Exact per byte: the low seven bits plus a constant below 0x80
/// cannot carry into the next byte.
#[inline(always)]
fn target_stops(w: u64) -> u64 {
    let low7 = w & !HIGH;
    let ge_21 = low7 + ONES * (0x80 - 0x21);
    let ge_7f = low7 + ONES;
    (!ge_21 | ge_7f | w) & HIGH
}

/// High bit set in each byte of `w` that is not an ASCII letter, digit or
/// `-`: the bytes of most field names. Anything else (the colon, other
/// token characters, faults) gets a closer look.
#[inline(always)]
fn name_stops(w: u64) -> u64 {
    let low7 = w & !HIGH;
    let letter = in_range(low7 | (ONES * 0x20), b'a', b'z');
    let digit = in_range(low7, b'0', b'9');
    let dash = in_range(low7, b'-', b'-');
    !((letter | digit | dash) & !w) & HIGH
}

/// High bit set in each byte of `low7` (every byte below 0x80) that lies in
/// `lo..=hi`. Exact per byte: no sum carries into the next byte.
#[inline(always)]
fn in_range(low7: u64, lo: u8, hi: u8) -> u64 {
    let ge_lo = low7 + ONES * u64::from(0x80 - lo);
    let gt_hi = low7 + ONES * u64::from(0x7f - hi);
    ge_lo & !gt_hi & HIGH
}

/// Whether every byte of `value` is a `uri-host [":" port]` byte. A word at
/// a time for the usual letters, digits, `-`, `.` and `:` (the last word
/// overlapping the one before); the table for anything else.
#[inline(always)]
fn is_host(value: &[u8]) -> bool {
    let n = value.len();
    if (8..=16).contains(&n) {
        // The usual `name:port` or `a.b.c.d:port`: two overlapping words,
        // checked together (no loop); other host bytes go to the table.
        if host_bits(load_word(value, 0)) & host_bits(load_word(value, n - 8)) == HIGH {
            return true;
        }
    } else if n > 16 {
        let mut at = 0;
        loop {
            let last = at + 8 >= n;
            if !host_word(load_word(value, if last { n - 8 } else { at })) {
                break;
            }
            if last {
                return true;
            }
            at += 8;
        }
    }
    value.iter().all(|&b| is(b, HOST))
}

/// Whether every byte of `w` is an ASCII letter, digit, `-`, `.` or `:`.
#[inline(always)]
fn host_word(w: u64) -> bool {
    host_bits(w) == HIGH
}

/// High bit set in each byte of `w` that is an ASCII letter, digit, `-`,
/// `.` or `:`.
#[inline(always)]
fn host_bits(w: u64) -> u64 {
    let low7 = w & !HIGH;
    let letter = in_range(low7 | (ONES * 0x20), b'a', b'z');
    let digit_colon = in_range(low7, b'0', b':');
    let dash_dot = in_range(low7, b'-', b'.');
    (letter | digit_colon | dash_dot) & !w & HIGH
}

/// The 8 bytes of `s` from `at`, as a little-endian word.
#[inline(always)]
fn load_word(s: &[u8], at: usize) -> u64 {
    let w = &s[at..at + 8];
    u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
}

/// High bit set in each byte of `w` a field value cannot hold without a
/// closer look: controls (HTAB, CR and LF among them) and DEL. obs-text
/// (0x80 and up) is field-content.
#[inline(always)]
fn value_stops(w: u64) -> u64 {
    let low7 = w & !HIGH;
    let ge_20 = low7 + ONES * (0x80 - 0x20);
    let ge_7f = low7 + ONES;
    (!ge_20 | ge_7f) & !w & HIGH
}

/// Byte classes, one table load per byte.
const TCHAR: u8 = 1;
/// Field-content bytes taken without a second look: SP, VCHAR, obs-text.
const VALUE: u8 = 2;
/// Request-target bytes taken without a second look: VCHAR.
const TARGET: u8 = 4;
/// `uri-host [":" port]` bytes (RFC 3986 reg-name, IP-literal, port).
const HOST: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alnum = c.is_ascii_alphanumeric();
        if alnum
            || matches!(
                c,
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
        {
            t[b] |= TCHAR;
        }
        if (c >= 0x20 && c != 0x7f) || c >= 0x80 {
            t[b] |= VALUE;
        }
        if c > 0x20 && c < 0x7f {
            t[b] |= TARGET;
        }
        if alnum
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
            )
        {
            t[b] |= HOST;
        }
        b += 1;
    }
    t
};

#[inline(always)]
fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

/// `tchar` of RFC 9110 §5.6.2.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    is(b, TCHAR)
}

/// A fault at `at` in the header section; the 431 limit, if the section is
/// already past it, is named instead (the verdict a reader of the same
/// bytes in small pieces reaches first).
#[cold]
#[inline(never)]
fn field_fault(e: ProtoError, at: usize, fields_start: usize, limits: &Limits) -> ProtoError {
    if at - fields_start > limits.max_header_bytes {
        ProtoError::HeadersTooLarge
    } else {
        e
    }
}

/// Names what is wrong with a field line whose name ended at `at` without
/// a colon. `empty`: the line starts with the byte at `at`.
#[cold]
#[inline(never)]
fn name_fault(
    buf: &[u8],
    at: usize,
    empty: bool,
    fields_start: usize,
    limits: &Limits,
) -> ProtoError {
    let e = match buf[at] {
        // RFC 9112 §5.2: a server MUST reject obs-fold in a request (outside
        // message/http) with 400. A first field line starting with
        // whitespace is refused the same way.
        b' ' | b'\t' if empty => ProtoError::ObsFold,
        b'\r' if buf.get(at + 1).is_some_and(|&b| b != b'\n') => ProtoError::BareCr,
        b'\n' => ProtoError::BareLf,
        _ => ProtoError::BadHeaderName,
    };
    field_fault(e, at, fields_start, limits)
}

/// Names the rule a request line starting at `start` broke: a second,
/// slower look at that line only. Only runs on bad input.
#[cold]
#[inline(never)]
fn request_line_fault(buf: &[u8], start: usize, limits: &Limits) -> ProtoError {
    let rest = &buf[start..];
    let lf = memchr::memchr(b'\n', rest);
    let line_len = lf.unwrap_or(rest.len());
    // RFC 9112 §2.2: a bare CR anywhere in the head is invalid.
    if has_bare_cr(&rest[..lf.map_or(rest.len(), |n| n + 1)]) {
        return ProtoError::BareCr;
    }
    // We accept no bare LF as a line end.
    if lf.is_some() && (line_len == 0 || rest[line_len - 1] != b'\r') {
        return ProtoError::BareLf;
    }
    let line = &rest[..line_len];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > limits.max_request_line {
        return ProtoError::RequestLineTooLong;
    }
    request_line_error(line, lf.is_some()).unwrap_or(ProtoError::BadRequestLine)
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
                // RFC 9110 §15.6.6: 505 for a version we do not support.
                Some(ProtoError::VersionNotSupported)
            }
        }
        _ => Some(ProtoError::BadVersion),
    }
}

fn has_bare_cr(buf: &[u8]) -> bool {
    memchr::memchr_iter(b'\r', buf).any(|i| buf.get(i + 1).is_some_and(|&b| b != b'\n'))
}

/// What the framing rules need from the header fields, gathered as the
/// field lines are scanned: a word of flags, the Content-Length and the
/// Host span. Three stores to set up.
struct Fields {
    flags: u16,
    content_length: u64,
    host: Span,
}

const F_HOST: u16 = 1;
/// A `Referer` or `User-Agent` field (for the access log, no rule).
const F_LOGGED: u16 = 1 << 12;
const F_CONTENT_LENGTH: u16 = 1 << 1;
const F_TRANSFER_ENCODING: u16 = 1 << 2;
const F_CHUNKED: u16 = 1 << 3;
const F_CHUNKED_TWICE: u16 = 1 << 4;
const F_CHUNKED_LAST: u16 = 1 << 5;
const F_OTHER_CODING: u16 = 1 << 6;
const F_CLOSE: u16 = 1 << 7;
const F_KEEP_ALIVE: u16 = 1 << 8;
const F_CONNECTION_UPGRADE: u16 = 1 << 9;
const F_UPGRADE: u16 = 1 << 10;
const F_EXPECT_CONTINUE: u16 = 1 << 11;

impl Fields {
    #[inline(always)]
    fn new() -> Fields {
        Fields {
            flags: 0,
            content_length: 0,
            host: Span::default(),
        }
    }

    #[inline(always)]
    fn note(&mut self, name: &[u8], value: &[u8], span: Span) -> Result<(), ProtoError> {
        // Dispatch on length first: most fields are none of these.
        match name.len() {
            4 if is_name(name, b"host") => {
                // RFC 9112 §3.2: a server MUST respond with 400 to a request
                // that lacks Host or has more than one Host field line.
                if self.flags & F_HOST != 0 {
                    return Err(ProtoError::DuplicateHost);
                }
                if !is_host(value) {
                    return Err(ProtoError::BadHost);
                }
                self.flags |= F_HOST;
                self.host = span;
            }
            6 if is_name(name, b"expect") => {
                // RFC 9110 §10.1.1: 100-continue is the only expectation;
                // a server that receives another MAY respond with 417.
                if value.eq_ignore_ascii_case(b"100-continue") {
                    self.flags |= F_EXPECT_CONTINUE;
                } else {
                    return Err(ProtoError::UnsupportedExpectation);
                }
            }
            7 if is_name(name, b"upgrade") => self.flags |= F_UPGRADE,
            10 if is_name(name, b"connection") => self.connection(value),
            7 if is_name(name, b"referer") => self.flags |= F_LOGGED,
            10 if is_name(name, b"user-agent") => self.flags |= F_LOGGED,
            14 if is_name(name, b"content-length") => {
                // RFC 9110 §8.6: Content-Length = 1*DIGIT. Several identical
                // values may be accepted; differing ones are unrecoverable
                // (RFC 9112 §6.3 rule 5). A comma list is not plain digits.
                let n = parse_content_length(value)?;
                if self.flags & F_CONTENT_LENGTH != 0 && self.content_length != n {
                    return Err(ProtoError::ConflictingContentLength);
                }
                self.flags |= F_CONTENT_LENGTH;
                self.content_length = n;
            }
            17 if is_name(name, b"transfer-encoding") => self.transfer_encoding(value),
            _ => {}
        }
        Ok(())
    }

    #[inline(always)]
    fn connection(&mut self, value: &[u8]) {
        // The usual single token, in one compare.
        match value.len() {
            10 if is_name(value, b"keep-alive") => return self.flags |= F_KEEP_ALIVE,
            5 if is_name(value, b"close") => return self.flags |= F_CLOSE,
            _ => {}
        }
        self.connection_list(value);
    }

    #[inline(never)]
    fn connection_list(&mut self, value: &[u8]) {
        for token in list_elements(value) {
            if token.eq_ignore_ascii_case(b"close") {
                self.flags |= F_CLOSE;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.flags |= F_KEEP_ALIVE;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.flags |= F_CONNECTION_UPGRADE;
            }
        }
    }

    #[inline(never)]
    fn transfer_encoding(&mut self, value: &[u8]) {
        self.flags |= F_TRANSFER_ENCODING;
        // Several field lines form one list, in order (RFC 9110 §5.3).
        for coding in list_elements(value) {
            if coding.eq_ignore_ascii_case(b"chunked") {
                if self.flags & F_CHUNKED != 0 {
                    self.flags |= F_CHUNKED_TWICE;
                }
                self.flags |= F_CHUNKED | F_CHUNKED_LAST;
            } else {
                self.flags = (self.flags | F_OTHER_CODING) & !F_CHUNKED_LAST;
            }
        }
    }

    #[inline(always)]
    fn apply(self, head: &mut RequestHead, limits: &Limits) -> Result<(), ProtoError> {
        let http11 = head.version == Version::Http11;
        let f = self.flags;
        if f & F_TRANSFER_ENCODING != 0 {
            // RFC 9112 §6.1: a server MUST NOT treat an HTTP/1.0 request
            // with Transfer-Encoding as having a reliable body length.
            if !http11 {
                return Err(ProtoError::TransferEncodingInHttp10);
            }
            // RFC 9112 §6.3 rule 3: Transfer-Encoding with Content-Length
            // ought to be handled as an error (request smuggling).
            if f & F_CONTENT_LENGTH != 0 {
                return Err(ProtoError::ContentLengthWithTransferEncoding);
            }
            // RFC 9112 §6.3: if chunked is not the final coding of a
            // request, respond 400 and close. §7: a sender MUST NOT apply
            // chunked more than once.
            if f & F_CHUNKED_LAST == 0 || f & F_CHUNKED_TWICE != 0 {
                return Err(ProtoError::ChunkedNotLast);
            }
            // RFC 9112 §6.1: a transfer coding the server does not
            // implement SHOULD get 501.
            if f & F_OTHER_CODING != 0 {
                return Err(ProtoError::UnknownTransferCoding);
            }
            head.body = BodyKind::Chunked;
        } else {
            head.body = match self.content_length {
                0 => BodyKind::Empty,
                n if n > limits.max_body_size => return Err(ProtoError::BodyTooLarge),
                n => BodyKind::Length(n),
            };
        }
        if f & F_HOST != 0 {
            head.host = Some(self.host);
        } else if http11 {
            return Err(ProtoError::MissingHost);
        } else {
            head.host = None;
        }
        // RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive".
        head.keep_alive = f & F_CLOSE == 0 && (http11 || f & F_KEEP_ALIVE != 0);
        // RFC 9110 §10.1.1: ignore 100-continue in an HTTP/1.0 request.
        head.expect_continue = f & F_EXPECT_CONTINUE != 0 && http11 && head.body != BodyKind::Empty;
        head.upgrade = f & (F_UPGRADE | F_CONNECTION_UPGRADE) == F_UPGRADE | F_CONNECTION_UPGRADE;
        head.referer_or_user_agent = f & F_LOGGED != 0;
        Ok(())
    }
}

/// Whether `buf` holds `Host:` (name in any case) at `at`. `b | 0x20` is
/// `h`, `o`, `s` or `t` only for that letter in either case, so this is
/// exact.
#[inline(always)]
fn is_host_name(buf: &[u8], at: usize) -> bool {
    match buf.get(at..at + 5).and_then(|s| s.split_first_chunk::<4>()) {
        Some((name, [b':'])) => {
            u32::from_le_bytes(*name) | 0x2020_2020 == u32::from_le_bytes(*b"host")
        }
        _ => false,
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

/// Whether the field name `name` (a token: the scanner checked it) is
/// `lit`, given in lowercase, ignoring ASCII case. Setting bit 0x20
/// lowercases letters and leaves `-` and digits as they are; no other token
/// character maps onto a lowercase letter or `-` that way, so for a token
/// this is an exact case-insensitive comparison, done a word at a time.
/// Words may overlap (the last one ends at the end), so every name of four
/// bytes or more takes one to three compares.
#[inline(always)]
fn is_name(name: &[u8], lit: &[u8]) -> bool {
    debug_assert_eq!(name.len(), lit.len());
    let n = name.len().min(lit.len());
    let (name, lit) = (&name[..n], &lit[..n]);
    if n >= 8 {
        let word = |s: &[u8], at: usize| {
            let w = &s[at..at + 8];
            u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
        };
        let mut at = 0;
        while at + 8 < n {
            if word(name, at) | 0x2020_2020_2020_2020 != word(lit, at) {
                return false;
            }
            at += 8;
        }
        word(name, n - 8) | 0x2020_2020_2020_2020 == word(lit, n - 8)
    } else if n >= 4 {
        let word =
            |s: &[u8], at: usize| u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]);
        word(name, 0) | 0x2020_2020 == word(lit, 0)
            && word(name, n - 4) | 0x2020_2020 == word(lit, n - 4)
    } else {
        name.iter().zip(lit).all(|(&a, &b)| a | 0x20 == b)
    }
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

    /// Heads as browsers, tools and APIs send them.
    fn realistic_heads() -> Vec<&'static [u8]> {
        let chrome = concat!(
            "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n",
            "Host: www.kittyhell.com\r\n",
            "Connection: keep-alive\r\n",
            "sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n",
            "sec-ch-ua-mobile: ?0\r\n",
            "sec-ch-ua-platform: \"Linux\"\r\n",
            "Upgrade-Insecure-Requests: 1\r\n",
            "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n",
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n",
            "Sec-Fetch-Site: none\r\n",
            "Sec-Fetch-Mode: navigate\r\n",
            "Sec-Fetch-User: ?1\r\n",
            "Sec-Fetch-Dest: document\r\n",
            "Accept-Encoding: gzip, deflate, br, zstd\r\n",
            "Accept-Language: en-US,en;q=0.9,de;q=0.8\r\n",
            "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=1714000000; __utma=101.2024.3.4.5.6; __utmz=101.2024.1.1.utmcsr=(direct)|utmccn=(direct)|utmcmd=(none); session=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U\r\n",
            "\r\n",
        );
        let firefox = concat!(
            "GET /search?q=r%C3%B6sti+recipe&client=firefox-b-d HTTP/1.1\r\n",
            "Host: www.example.org\r\n",
            "User-Agent: Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n",
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n",
            "Accept-Language: en-GB,en;q=0.5\r\n",
            "Accept-Encoding: gzip, deflate, br\r\n",
            "Referer: https://www.example.org/\r\n",
            "DNT: 1\r\n",
            "Connection: keep-alive\r\n",
            "Upgrade-Insecure-Requests: 1\r\n",
            "Sec-GPC: 1\r\n",
            "If-None-Match: W/\"5e15153d-120f\"\r\n",
            "If-Modified-Since: Tue, 07 Jan 2020 23:33:17 GMT\r\n",
            "Priority: u=0, i\r\n",
            "TE: trailers\r\n",
            "\r\n",
        );
        let mut cases: Vec<&[u8]> = vec![
            b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:19144\r\n\r\n",
            b"GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: a\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
            b"POST /api/v1/items?x=1&y=%20 HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 27\r\nAuthorization: Bearer abc.def.ghi\r\n\r\n",
            b"PUT /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n\r\n",
            b"M-SEARCH * HTTP/1.1\r\nHost: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n",
            b"PROPFIND /dav/ HTTP/1.1\r\nHost: a\r\nDepth: 1\r\n\r\n",
            b"!#$%&'*+-.^_`|~09AZaz /~!$&'()*+,;=:@[]{}|^`\"<>\\ HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /caf\xc3\xa9/\xe2\x82\xac HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nX-Spaces:    \t \r\nX-Tabs:\tv\t\r\nX-Inner: a \t b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Obs-Text: caf\xe9 \xff\x80\r\nX-Quote: \"a,b\" ; c=\"d\"\r\n\r\n",
            b"\r\n\r\nGET /after-empty-lines HTTP/1.1\r\nhost: A\r\n\r\n",
            b"GET / HTTP/1.1\r\nHOST: a\r\n!#$%&'*+-.^_`|~: v\r\nx: 1\r\n\r\nGET /next HTTP/1.1\r\n",
            b"DELETE /items/42 HTTP/1.1\r\nHost: [::1]:8080\r\nContent-Length: 0\r\nX-Request-ID: 7f4e0f8c-9d7e-4b8f-8b0a-2f1a0e3c5d6b\r\n\r\n",
            b"GET /long?aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1 HTTP/1.1\r\nHost: a\r\nX-Long: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n",
            b"PATCH /x HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        ];
        cases.push(chrome.as_bytes());
        cases.push(firefox.as_bytes());
        cases
    }

    /// Realistic heads through both parsers: the same method, target,
    /// version, fields (names and trimmed values) and length as httparse.
    #[test]
    fn agrees_with_httparse_on_realistic_heads() {
        for req in realistic_heads() {
            let what = String::from_utf8_lossy(req);
            let ours = parse(req).unwrap_or_else(|e| panic!("{e:?}: {what:?}"));
            let mut raw = [httparse::EMPTY_HEADER; 64];
            let mut theirs = httparse::Request::new(&mut raw);
            let httparse::Status::Complete(len) = theirs.parse(req).expect("httparse accepts")
            else {
                panic!("httparse partial: {what:?}");
            };
            assert_eq!(ours.len, len, "{what:?}");
            assert_eq!(
                ours.method_span.of(req),
                theirs.method.unwrap().as_bytes(),
                "{what:?}"
            );
            assert_eq!(
                ours.target.of(req),
                theirs.path.unwrap().as_bytes(),
                "{what:?}"
            );
            let minor = match ours.version {
                Version::Http10 => 0,
                Version::Http11 => 1,
            };
            assert_eq!(Some(minor), theirs.version, "{what:?}");
            assert_eq!(ours.headers.len(), theirs.headers.len(), "{what:?}");
            for (a, b) in ours.headers.iter().zip(theirs.headers.iter()) {
                assert_eq!(a.name.of(req), b.name.as_bytes(), "{what:?}");
                assert_eq!(a.value.of(req), b.value, "{what:?}");
            }
        }
    }

    /// Heads at the edges of the fast path: framing fields, OWS, limits,
    /// forms it declines. With the realistic ones, the seeds of
    /// `fast_path_agrees_with_full_scan`.
    const EDGE_HEADS: &[&[u8]] = &[
        b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \t a.b \t\r\n\r\n",
        b"GET / HTTP/1.1\r\nhOsT: [v1.fe80::a+en1]:80\r\nhost-x: y\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: 1\r\nHost: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a_b~c!d$e&f'g(h)i*j+k,l;m=n%20o\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nA: \t\r\nB:\t\tv\t w \t\r\nC:  v\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Name.With_Odd~Chars!: v\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"get / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"GET /0123456789abcdef0123456789abcdef HTTP/1.1\r\nHost: 0123456789abcdef.example\r\nX-0123456789abcdef: 0123456789abcdef0123456789abcdef\r\n\r\n",
    ];

    /// Limits that the mutated heads cross now and then.
    fn edge_limits() -> [Limits; 2] {
        [
            Limits::default(),
            Limits {
                max_request_line: 24,
                max_header_bytes: 64,
                max_headers: 3,
                max_body_size: 4,
                ..Limits::default()
            },
        ]
    }

    /// One input through both: the fast path's verdict, where it gives one,
    /// is the full scan's, with the same head; and `HeadParser::parse`
    /// (fast path first) gives what the full scan alone gives, with the
    /// same parser state after. Returns the fast path's verdict.
    fn check_fast(buf: &[u8], limits: &Limits) -> Shape {
        let what = || String::from_utf8_lossy(buf).into_owned();
        // The fast path writes over the last head's lines: start from a
        // head with more of them, as a connection's reused head may be.
        let mut fast_head = RequestHead::default();
        let last = realistic_heads().pop().unwrap();
        assert_eq!(scan(last, &Limits::default(), &mut fast_head), Ok(true));
        let shape = fast::parse(buf, limits, &mut fast_head);
        let mut full_head = RequestHead::default();
        let full = scan(buf, limits, &mut full_head);
        match shape {
            Shape::Complete => {
                assert_eq!(full, Ok(true), "{:?}", what());
                assert_eq!(
                    format!("{fast_head:?}"),
                    format!("{full_head:?}"),
                    "{:?}",
                    what()
                );
            }
            Shape::Partial => assert_eq!(full, Ok(false), "{:?}", what()),
            Shape::Other => {}
        }
        let (mut p, mut q) = (HeadParser::new(), HeadParser::new());
        let (mut a, mut b) = (fast_head.clone(), RequestHead::default());
        let _ = scan(last, &Limits::default(), &mut a);
        let one = p.parse(buf, limits, &mut a);
        let two = q.parse_full(buf, limits, &mut b);
        assert_eq!(one, two, "{:?}", what());
        assert_eq!(p, q, "{:?}", what());
        if one == Ok(true) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{:?}", what());
        }
        shape
    }

    /// Framing fields after the 64th field line (where the fast path marks
    /// no more lines for `Fields::note`, and declines): the same verdicts
    /// as the full scan, through `HeadParser::parse` too.
    #[test]
    fn framing_fields_after_many_lines() {
        let head = |last: &str| {
            let mut h = String::from("POST /a HTTP/1.1\r\nHost: a\r\n");
            for k in 0..70 {
                h.push_str(&format!("X-Filler-{k}: v\r\n"));
            }
            h.push_str(last);
            h.push_str("\r\n");
            h.into_bytes()
        };
        let many = head("Content-Length: 3\r\n");
        assert_eq!(check_fast(&many, &Limits::default()), Shape::Other);
        let parsed = parse(&many).unwrap();
        assert_eq!(parsed.body, BodyKind::Length(3));
        assert_eq!(parsed.headers.len(), 72);
        assert_eq!(
            err(&head("Host: b\r\n")),
            ProtoError::DuplicateHost,
            "a second Host after 70 lines"
        );
        assert_eq!(
            err(&head("Transfer-Encoding: gzip\r\n")),
            ProtoError::ChunkedNotLast
        );
        // Lines the fast path marks (a name of a framing field's length)
        // but that are none: taken whole.
        let mut short = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for k in 0..20 {
            short.push_str(&format!("Abcd: {k}\r\nAccept: */*\r\nCookie: c={k}\r\n"));
        }
        short.push_str("Connection: close\r\nUser-Agent: t\r\n\r\n");
        assert_eq!(
            check_fast(short.as_bytes(), &Limits::default()),
            Shape::Complete
        );
        let parsed = parse(short.as_bytes()).unwrap();
        assert!(!parsed.keep_alive && parsed.referer_or_user_agent);
    }

    /// The fast path against the full scan (which names every fault), on
    /// the realistic and edge heads, every prefix of them, and every head
    /// one byte away (each byte replaced by one of a set of bytes that
    /// matter to some rule, deleted, or another inserted before it), plus
    /// random multi-byte mutations.
    #[test]
    fn fast_path_agrees_with_full_scan() {
        const BYTES: &[u8] = b"\0\t\n\r !\"(),-./09:;<=>?@AHTZ[\\]_`az{|}~\x7f\x80\xc3\xe9\xff";
        let mut seeds: Vec<&[u8]> = realistic_heads();
        seeds.extend_from_slice(EDGE_HEADS);
        let limits = edge_limits();
        let (mut inputs, mut complete, mut partial) = (0u64, 0u64, 0u64);
        let mut check = |buf: &[u8]| {
            for l in &limits {
                inputs += 1;
                match check_fast(buf, l) {
                    Shape::Complete => complete += 1,
                    Shape::Partial => partial += 1,
                    Shape::Other => {}
                }
            }
        };
        for seed in &seeds {
            // Every realistic head is the fast path's, but for empty lines
            // before the request line (the connection skips those first).
            if !EDGE_HEADS.contains(seed) && seed[0] != b'\r' {
                assert_eq!(
                    check_fast(seed, &Limits::default()),
                    Shape::Complete,
                    "{:?}",
                    String::from_utf8_lossy(seed)
                );
            }
            for n in 0..=seed.len() {
                check(&seed[..n]);
            }
            let mut buf = seed.to_vec();
            for at in 0..seed.len() {
                for &b in BYTES {
                    buf[at] = b;
                    check(&buf);
                    // And cut short somewhere after the change.
                    check(&buf[..at + 1 + (at * 7 + b as usize) % (seed.len() - at)]);
                }
                buf[at] = seed[at];
                let mut cut = seed.to_vec();
                cut.remove(at);
                check(&cut);
                for b in [b' ', b'\t', b'\r', b'\n', b':', b'a'] {
                    let mut grown = seed.to_vec();
                    grown.insert(at, b);
                    check(&grown);
                }
            }
        }
        // Random mutations: up to four bytes changed, xorshift-seeded so a
        // failure replays.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        };
        for _ in 0..20_000 {
            let seed = seeds[next() % seeds.len()];
            let mut buf = seed.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = next() % buf.len();
                buf[at] = BYTES[next() % BYTES.len()];
            }
            check(&buf);
        }
        // Not vacuous: the fast path gave both verdicts on a good share of
        // what it was given (the rest is mostly faults, and what the tight
        // limits refuse).
        assert!(
            complete * 10 > inputs && partial * 10 > inputs,
            "{complete} complete and {partial} partial of {inputs}"
        );
    }
}
