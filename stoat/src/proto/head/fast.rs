//! The head parser's fast path: one pass over a head of the usual shape,
//! 16 bytes per step ([`crate::simd`]), with none of the bookkeeping that
//! names a fault.
//!
//! Contract: [`parse`] either fills `head` exactly as the full scan
//! (`super::scan`) would for the same bytes and limits ([`Shape::Complete`]),
//! reports that the bytes end before the head does with nothing wrong so far
//! (the full scan's `Ok(false)`: [`Shape::Partial`]), or declines
//! ([`Shape::Other`]), leaving `head` partly written for the full scan to
//! overwrite. It declines at the first thing it does not take on its own:
//! empty lines before the request line, a version other than
//! `HTTP/1.0` or `HTTP/1.1`, a framing field the rules refuse, a limit
//! reached, and every fault. So every error verdict is the full scan's, by
//! construction; `tests::fast_path_agrees_with_full_scan` checks the
//! complete and partial verdicts against it over mutated heads and every
//! prefix of them.

use super::{
    is, is_host_name, span, BodyKind, Fields, HeaderSpan, Limits, Method, RequestHead, Version,
    F_HOST, HOST, HTTP10, HTTP11, TARGET, TCHAR, VALUE,
};
use crate::simd;

/// What the fast path made of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `head` is filled: the full scan would return `Ok(true)` with the
    /// same head.
    Complete,
    /// The bytes end inside the head and nothing so far breaks a rule: the
    /// full scan would return `Ok(false)`.
    Partial,
    /// Not taken: the full scan decides.
    Other,
}

/// Parses the head at the start of `buf` if it is of the usual shape.
#[inline(always)]
pub(super) fn parse(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Shape {
    match parse_inner(buf, limits, head) {
        Ok(true) => Shape::Complete,
        Ok(false) => Shape::Other,
        Err(Partial) => Shape::Partial,
    }
}

/// The bytes ended (the `?` on a missing byte).
struct Partial;

#[inline(always)]
fn parse_inner(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Result<bool, Partial> {
    // method SP: `GET` in one compare, else a token (which also declines
    // empty lines before the request line: CR and LF are no tchar).
    let method_end = if buf.get(..4) == Some(b"GET ") {
        head.method = Method::Get;
        3
    } else {
        let n = buf.iter().position(|&b| !is(b, TCHAR)).ok_or(Partial)?;
        if n == 0 || buf[n] != b' ' {
            return Ok(false);
        }
        head.method = Method::from_bytes(&buf[..n]);
        n
    };
    head.method_span = span(0, method_end);

    // request-target SP: visible ASCII, or UTF-8 (as the full scan takes).
    let target_start = method_end + 1;
    let mut j = target_start;
    let mut non_ascii = false;
    let target_end = loop {
        j = find(buf, j, simd::target_stops, TARGET)?;
        match buf[j] {
            b' ' if j > target_start => break j,
            0x80.. => {
                non_ascii = true;
                j += 1;
            }
            _ => return Ok(false),
        }
    };
    if non_ascii && std::str::from_utf8(&buf[target_start..target_end]).is_err() {
        return Ok(false);
    }
    head.target = span(target_start, target_end);

    // HTTP-version CRLF.
    let v = target_end + 1;
    let Some(version) = buf.get(v..v + 10) else {
        // The full scan judges the line once its LF is there.
        return if buf[v..].contains(&b'\n') {
            Ok(false)
        } else {
            Err(Partial)
        };
    };
    let word = u64::from_le_bytes([
        version[0], version[1], version[2], version[3], version[4], version[5], version[6],
        version[7],
    ]);
    head.version = if word == HTTP11 {
        Version::Http11
    } else if word == HTTP10 {
        Version::Http10
    } else {
        return Ok(false);
    };
    if version[8..] != *b"\r\n" {
        return Ok(false);
    }
    let fields_start = v + 10;
    if fields_start > limits.max_request_line {
        return Ok(false);
    }

    // Field lines, up to the empty line.
    let max = limits.max_headers.min(Limits::MAX_HEADERS_CAP);
    head.headers.clear();
    let mut fields = Fields::new();
    let mut i = fields_start;
    loop {
        let first = *buf.get(i).ok_or(Partial)?;
        if first == b'\r' {
            match buf.get(i + 1) {
                Some(b'\n') => {
                    i += 2;
                    break;
                }
                Some(_) => return Ok(false),
                None => return Err(Partial),
            }
        }
        if head.headers.len() == max {
            return Ok(false);
        }
        let name_start = i;
        let (colon, value_start, value_end, cr);
        let host = is_host_name(buf, i);
        if host {
            // RFC 9112 §3.2: one Host, a `uri-host [":" port]` (checked as
            // the value is scanned: the common value has no OWS after it).
            if fields.flags & F_HOST != 0 {
                return Ok(false);
            }
            colon = i + 4;
            value_start = skip_ows(buf, colon + 1);
            let mut j = value_start;
            cr = loop {
                j = find(buf, j, simd::host_stops, HOST)?;
                match buf[j] {
                    b'\r' => break j,
                    b if is(b, HOST) => j += 1,
                    _ => return Ok(false),
                }
            };
            value_end = cr;
            fields.flags |= F_HOST;
            fields.host = span(value_start, value_end);
        } else {
            // field-name ":" (no whitespace before the colon).
            let mut j = i;
            colon = loop {
                j = find(buf, j, simd::name_stops, TCHAR)?;
                match buf[j] {
                    b':' if j > name_start => break j,
                    b if is(b, TCHAR) => j += 1,
                    _ => return Ok(false),
                }
            };
            // OWS field-value OWS.
            value_start = skip_ows(buf, colon + 1);
            let mut j = value_start;
            cr = loop {
                j = find(buf, j, simd::value_stops, VALUE)?;
                match buf[j] {
                    b'\t' => j += 1,
                    b'\r' => break j,
                    _ => return Ok(false),
                }
            };
            value_end = if cr > value_start && matches!(buf[cr - 1], b' ' | b'\t') {
                trim_end(buf, value_start, cr)
            } else {
                cr
            };
        }
        match buf.get(cr + 1) {
            Some(b'\n') => {}
            Some(_) => return Ok(false),
            None => return Err(Partial),
        }
        let value = span(value_start, value_end);
        if !host
            && is_framing_name(colon - name_start)
            && fields
                .note(&buf[name_start..colon], &buf[value_start..value_end], value)
                .is_err()
        {
            return Ok(false);
        }
        head.headers.push(HeaderSpan {
            name: span(name_start, colon),
            value,
        });
        i = cr + 2;
    }

    if i - fields_start > limits.max_header_bytes {
        return Ok(false);
    }
    head.len = i;
    if fields.flags == F_HOST {
        // A Host and none of the other framing fields (every GET from a
        // browser or a load generator): what `apply` concludes, directly.
        head.body = BodyKind::Empty;
        head.host = Some(fields.host);
        head.keep_alive = head.version == Version::Http11;
        head.expect_continue = false;
        head.upgrade = false;
        return Ok(true);
    }
    Ok(fields.apply(head, limits).is_ok())
}

/// Whether a field name of `len` bytes may be one that [`Fields::note`]
/// looks at: Expect, Upgrade, Connection, Content-Length,
/// Transfer-Encoding. (Host, four bytes with the colon right after, is
/// taken by its own branch; `note` still sees any other four-byte name.)
#[inline(always)]
fn is_framing_name(len: usize) -> bool {
    matches!(len, 4 | 6 | 7 | 10 | 14 | 17)
}

/// The first byte at or after `from` outside a class: `stops` 16 bytes at a
/// time, `class` (the table) for the last few. `Err(Partial)`: the bytes end
/// first.
#[inline(always)]
fn find(buf: &[u8], from: usize, stops: fn(&[u8; 16]) -> u32, class: u8) -> Result<usize, Partial> {
    let mut i = from;
    while let Some(chunk) = buf.get(i..i + 16) {
        let m = stops(chunk.try_into().unwrap_or(&[0; 16]));
        if m != 0 {
            return Ok(i + m.trailing_zeros() as usize);
        }
        i += 16;
    }
    find_tail(buf, i, stops, class)
}

/// [`find`] for the last bytes, fewer than 16: the buffer's last 16 bytes
/// (when it has them) with the ones before `from` masked off, else the
/// table.
#[inline(always)]
fn find_tail(
    buf: &[u8],
    from: usize,
    stops: fn(&[u8; 16]) -> u32,
    class: u8,
) -> Result<usize, Partial> {
    if let Some(last) = buf.last_chunk::<16>() {
        let base = buf.len() - 16;
        // `from - base` is at most 16: the bytes from `from` are fewer than 16.
        let m = stops(last).checked_shr((from - base) as u32).unwrap_or(0);
        return if m != 0 {
            Ok(from + m.trailing_zeros() as usize)
        } else {
            Err(Partial)
        };
    }
    buf.get(from..)
        .and_then(|rest| rest.iter().position(|&b| !is(b, class)))
        .map(|n| from + n)
        .ok_or(Partial)
}

/// Skips OWS (SP and HTAB) from `i`: the usual single SP in one compare.
#[inline(always)]
fn skip_ows(buf: &[u8], i: usize) -> usize {
    match buf.get(i) {
        Some(b' ') if !matches!(buf.get(i + 1), Some(b' ' | b'\t')) => i + 1,
        Some(b' ' | b'\t') => skip_more_ows(buf, i),
        _ => i,
    }
}

#[cold]
fn skip_more_ows(buf: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t') = buf.get(i) {
        i += 1;
    }
    i
}

/// The end of a value that ends in OWS before `cr`.
#[cold]
fn trim_end(buf: &[u8], start: usize, mut end: usize) -> usize {
    while end > start && matches!(buf[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    end
}
