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
        Ok(()) => Shape::Complete,
        Err(Stop::Partial) => Shape::Partial,
        Err(Stop::Other) => Shape::Other,
    }
}

/// Why the fast path stopped short of a complete head.
enum Stop {
    /// The bytes ended (the `?` on a missing byte).
    Partial,
    /// Declined.
    Other,
}

use Stop::{Other, Partial};

#[inline(always)]
fn parse_inner(buf: &[u8], limits: &Limits, head: &mut RequestHead) -> Result<(), Stop> {
    // method SP: `GET` in one compare, else a token (which also declines
    // empty lines before the request line: CR and LF are no tchar).
    let method_end = if buf.get(..4) == Some(b"GET ") {
        head.method = Method::Get;
        3
    } else {
        let n = buf.iter().position(|&b| !is(b, TCHAR)).ok_or(Partial)?;
        if n == 0 || buf[n] != b' ' {
            return Err(Other);
        }
        head.method = Method::from_bytes(&buf[..n]);
        n
    };
    head.method_span = span(0, method_end);

    // request-target SP: visible ASCII, or UTF-8 (as the full scan takes).
    let target_start = method_end + 1;
    let mut target_end = find(buf, target_start, simd::target_stops, TARGET)?;
    if buf[target_end] != b' ' || target_end == target_start {
        target_end = target_rest(buf, target_start, target_end)?;
    }
    head.target = span(target_start, target_end);

    // HTTP-version CRLF.
    let v = target_end + 1;
    let Some(version) = buf.get(v..v + 10) else {
        // The full scan judges the line once its LF is there.
        return Err(if buf[v..].contains(&b'\n') {
            Other
        } else {
            Partial
        });
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
        return Err(Other);
    };
    if version[8..] != *b"\r\n" {
        return Err(Other);
    }
    let fields_start = v + 10;
    if fields_start > limits.max_request_line {
        return Err(Other);
    }

    // Field lines, up to the empty line.
    let max = limits.max_headers.min(Limits::MAX_HEADERS_CAP);
    // The lines are written over the last head's (the vector is reused);
    // it is cut to `count` at the end.
    let mut count = 0;
    let mut fields = Fields::new();
    let mut i = fields_start;
    if max > 0 && is_host_name(buf, i) {
        // Host, first (where browsers, tools and load generators put it),
        // on its own: RFC 9112 §3.2, a `uri-host [":" port]`, checked as
        // the value is scanned (the usual value has no OWS after it).
        // One SP before the value, usually; other OWS makes the scan stop
        // at its first byte, and `host_rest` declines it.
        let value_start = if buf.get(i + 5) == Some(&b' ') {
            i + 6
        } else {
            i + 5
        };
        let mut cr = find(buf, value_start, simd::host_stops, HOST)?;
        if buf[cr] != b'\r' {
            cr = host_rest(buf, cr)?;
        }
        line_end(buf, cr)?;
        fields.flags = F_HOST;
        fields.host = span(value_start, cr);
        put(
            &mut head.headers,
            0,
            HeaderSpan {
                name: span(i, i + 4),
                value: fields.host,
            },
        );
        count = 1;
        i = cr + 2;
    }
    if *buf.get(i).ok_or(Partial)? != b'\r' {
        // The other lines (a later Host too: `note` checks it).
        loop {
            if count == max {
                return Err(Other);
            }
            // field-name ":" (no whitespace before the colon).
            let name_start = i;
            let mut j = i;
            let colon = loop {
                j = find(buf, j, simd::name_stops, TCHAR)?;
                match buf[j] {
                    b':' if j > name_start => break j,
                    b if is(b, TCHAR) => j += 1,
                    _ => return Err(Other),
                }
            };
            // OWS field-value OWS CRLF.
            let value_start = skip_ows(buf, colon + 1);
            let mut j = value_start;
            let cr = loop {
                j = find(buf, j, simd::value_stops, VALUE)?;
                match buf[j] {
                    b'\t' => j += 1,
                    b'\r' => break j,
                    _ => return Err(Other),
                }
            };
            line_end(buf, cr)?;
            let value_end = if cr > value_start && matches!(buf[cr - 1], b' ' | b'\t') {
                trim_end(buf, value_start, cr)
            } else {
                cr
            };
            let value = span(value_start, value_end);
            if is_framing_name(colon - name_start)
                && fields
                    .note(&buf[name_start..colon], &buf[value_start..value_end], value)
                    .is_err()
            {
                return Err(Other);
            }
            put(
                &mut head.headers,
                count,
                HeaderSpan {
                    name: span(name_start, colon),
                    value,
                },
            );
            count += 1;
            i = cr + 2;
            if *buf.get(i).ok_or(Partial)? == b'\r' {
                break;
            }
        }
    }
    line_end(buf, i)?;
    i += 2;

    if i - fields_start > limits.max_header_bytes {
        return Err(Other);
    }
    head.headers.truncate(count);
    head.len = i;
    if fields.flags == F_HOST {
        // A Host and none of the other framing fields (every GET from a
        // browser or a load generator): what `apply` concludes, directly.
        head.body = BodyKind::Empty;
        head.host = Some(fields.host);
        head.keep_alive = head.version == Version::Http11;
        head.expect_continue = false;
        head.upgrade = false;
        head.referer_or_user_agent = false;
        return Ok(());
    }
    fields.apply(head, limits).map_err(|_| Other)
}

/// The SP that ends a request target whose byte at `j` is not visible
/// ASCII: UTF-8 goes on (and is checked whole), anything else declines.
#[cold]
#[inline(never)]
fn target_rest(buf: &[u8], start: usize, mut j: usize) -> Result<usize, Stop> {
    let end = loop {
        match buf[j] {
            b' ' if j > start => break j,
            0x80.. => j = find(buf, j + 1, simd::target_stops, TARGET)?,
            _ => return Err(Other),
        }
    };
    match std::str::from_utf8(&buf[start..end]) {
        Ok(_) => Ok(end),
        Err(_) => Err(Other),
    }
}

/// The CR that ends a Host value whose byte at `j` is not one of the
/// usual ones (an IP literal's brackets, a reg-name's sub-delims): a Host
/// byte lets the scan go on; anything else declines.
#[cold]
#[inline(never)]
fn host_rest(buf: &[u8], mut j: usize) -> Result<usize, Stop> {
    loop {
        match buf[j] {
            b'\r' => return Ok(j),
            b if is(b, HOST) => j = find(buf, j + 1, simd::host_stops, HOST)?,
            _ => return Err(Other),
        }
    }
}

/// Writes line `k` (the lines before it are written) over the last head's.
#[inline(always)]
fn put(headers: &mut Vec<HeaderSpan>, k: usize, line: HeaderSpan) {
    match headers.get_mut(k) {
        Some(slot) => *slot = line,
        None => push(headers, line),
    }
}

/// A head with more lines than any before it on the connection (the
/// vector grows, rarely).
#[cold]
#[inline(never)]
fn push(headers: &mut Vec<HeaderSpan>, line: HeaderSpan) {
    headers.push(line);
}

/// Whether a field name of `len` bytes may be one that [`Fields::note`]
/// looks at: Host, Expect, Upgrade, Connection, Content-Length,
/// Transfer-Encoding.
#[inline(always)]
fn is_framing_name(len: usize) -> bool {
    matches!(len, 4 | 6 | 7 | 10 | 14 | 17)
}

/// The first byte at or after `from` outside a class: `stops` 16 bytes at a
/// time, `class` (the table) for the last few. `Err(Partial)`: the bytes end
/// first.
#[inline(always)]
fn find(buf: &[u8], from: usize, stops: fn(&[u8; 16]) -> u32, class: u8) -> Result<usize, Stop> {
    let mut i = from;
    // The first 16 bytes before the loop: most names and values end in
    // them, and the class's constants are then loaded only by heads whose
    // fields are longer.
    if let Some(chunk) = buf.get(i..i + 16) {
        let m = stops(chunk.try_into().unwrap_or(&[0; 16]));
        if m != 0 {
            return Ok(i + m.trailing_zeros() as usize);
        }
        i += 16;
        while let Some(chunk) = buf.get(i..i + 16) {
            let m = stops(chunk.try_into().unwrap_or(&[0; 16]));
            if m != 0 {
                return Ok(i + m.trailing_zeros() as usize);
            }
            i += 16;
        }
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
) -> Result<usize, Stop> {
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

/// Whether the CR at `cr` is followed by LF (a bare CR declines).
#[inline(always)]
fn line_end(buf: &[u8], cr: usize) -> Result<(), Stop> {
    match buf.get(cr + 1) {
        Some(b'\n') => Ok(()),
        Some(_) => Err(Other),
        None => Err(Partial),
    }
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
