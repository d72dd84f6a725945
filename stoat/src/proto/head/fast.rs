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
//! `HTTP/1.0` or `HTTP/1.1`, a framing field the rules refuse, a line that
//! may be a framing field after the 64th field line (its mark would not fit
//! the word of marks), a limit reached, and every fault. So every error
//! verdict is the full scan's, by construction;
//! `tests::fast_path_agrees_with_full_scan` checks the complete and partial
//! verdicts against it over mutated heads and every prefix of them.
//!
//! The usual head (`GET /path HTTP/1.1`, `Host: ` first, nothing else: what
//! load generators and most API clients send) takes the shortest way: the
//! version, its CRLF and `Host: ` in one 16-byte compare, the Host value
//! checked as it is scanned, and the head's end (`CRLF CRLF`) in one more
//! compare. Other field lines go through a loop with no call on its usual
//! path, so the class constants stay in registers from line to line; the
//! lines that may be framing fields are given to `Fields::note` after it.

use super::{
    is, span, BodyKind, Fields, HeaderSpan, Limits, Method, RequestHead, Span, Version, F_HOST,
    HOST, HTTP10, HTTP11, TARGET, TCHAR, VALUE,
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

    // HTTP-version CRLF, and `Host: ` when it comes next (where browsers,
    // tools and load generators put it): the usual 16 bytes in one compare.
    let v = target_end + 1;
    let fields_start = v + 10;
    let mut i = fields_start;
    let mut count = 0;
    let mut host_first = None;
    // The rest from here on is scanned as a slice that starts where the
    // Host value does: an offset into it needs no check against overflow.
    let host_value = match buf[v..].split_first_chunk::<16>() {
        Some((chunk, value))
            if simd::matches_folded(chunk, &VERSION_HOST_FOLD, VERSION_HOST)
                && limits.max_headers != 0 =>
        {
            Some((chunk[7] == b'1', value))
        }
        _ => None,
    };
    let http11 = match host_value {
        Some((http11, _)) => http11,
        None => version(buf, v)?,
    };
    head.version = if http11 {
        Version::Http11
    } else {
        Version::Http10
    };
    if fields_start > limits.max_request_line {
        return Err(Other);
    }

    // Field lines, up to the empty line.
    if let Some((_, value)) = host_value {
        // `Host: ` first, on its own: RFC 9112 §3.2, a `uri-host [":"
        // port]`, checked as the value is scanned (the usual value has no
        // OWS around it: other OWS makes the scan stop at it, and
        // `host_end` declines).
        let value_start = i + 6;
        let n = find(value, 0, simd::host_stops, HOST)?;
        let mut cr = value_start + n;
        let host = span(value_start, cr);
        if value.get(n..n + 4) == Some(b"\r\n\r\n") {
            // Host and no other line (every GET of a load generator): what
            // `Fields::apply` concludes, directly.
            let len = cr + 4;
            if len - fields_start > limits.max_header_bytes {
                return Err(Other);
            }
            put(&mut head.headers, 0, span(i, i + 4), host);
            head.headers.truncate(1);
            head.len = len;
            head.body = BodyKind::Empty;
            head.host = Some(host);
            head.keep_alive = http11;
            head.expect_continue = false;
            head.upgrade = false;
            head.referer_or_user_agent = false;
            return Ok(());
        }
        if buf.get(cr..cr + 2) != Some(b"\r\n") {
            cr = host_end(buf, cr)?;
        }
        let host = span(value_start, cr);
        put(&mut head.headers, 0, span(i, i + 4), host);
        host_first = Some(host);
        count = 1;
        i = cr + 2;
    }
    let mut fields = Fields::new();
    if let Some(host) = host_first {
        fields.flags = F_HOST;
        fields.host = host;
    }
    // The other lines. The loop makes no call on its usual path (so the
    // class constants stay in registers from line to line): the lines that
    // may be framing fields (by their name's length) are marked in `noted`
    // and given to `Fields::note` after it, in order.
    let max = limits.max_headers.min(Limits::MAX_HEADERS_CAP);
    let (mut i, count, mut noted) = lines(buf, i, count, max, &mut head.headers)?;
    line_end(buf, i)?;
    i += 2;

    if i - fields_start > limits.max_header_bytes {
        return Err(Other);
    }
    head.headers.truncate(count);
    head.len = i;
    while noted != 0 {
        let k = noted.trailing_zeros() as usize;
        noted &= noted - 1;
        let line = head.headers[k];
        if fields
            .note(line.name.of(buf), line.value.of(buf), line.value)
            .is_err()
        {
            return Err(Other);
        }
    }
    fields.apply(head, limits).map_err(|_| Other)
}

/// The field lines from `i` (after Host, when it came first and `count`
/// is 1) up to the empty line: where that line starts, how many lines
/// there are, and which of them (bit `k` for line `k`) may be framing
/// fields, for `Fields::note`. A function of its own, with only what the
/// loop needs live in it: the loop then keeps its indexes and the class
/// constants in registers from line to line.
#[inline(never)]
fn lines(
    buf: &[u8],
    mut i: usize,
    mut count: usize,
    max: usize,
    headers: &mut Vec<HeaderSpan>,
) -> Result<(usize, usize, u64), Stop> {
    let mut noted: u64 = 0;
    if *buf.get(i).ok_or(Partial)? != b'\r' {
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
                if buf.get(j..j + 2) == Some(b"\r\n") {
                    break j;
                }
                j = value_more(buf, j)?;
            };
            // The byte before the CR is in the value or is the OWS before
            // it; either way at most SP only if it is OWS (the scan stops
            // at controls other than HTAB).
            let value_end = if buf[cr - 1] <= b' ' {
                trim_end(buf, value_start, cr)
            } else {
                cr
            };
            if is_framing_name(colon - name_start) {
                if count >= 64 {
                    return Err(Other);
                }
                noted |= 1 << count;
            }
            put(
                headers,
                count,
                span(name_start, colon),
                span(value_start, value_end),
            );
            count += 1;
            i = cr + 2;
            if *buf.get(i).ok_or(Partial)? == b'\r' {
                break;
            }
        }
    }
    Ok((i, count, noted))
}

/// `HTTP/1.0` and `HTTP/1.1` differ in this bit: `0` is 0x30, `1` 0x31.
const MINOR_BIT: u64 = 1 << 56;
const _: () = assert!(HTTP10 | MINOR_BIT == HTTP11 && HTTP10 & MINOR_BIT == 0);

/// `HTTP/1.1 CRLF Host: `, the 16 bytes after the usual request target,
/// as [`simd::matches_folded`] compares them with [`VERSION_HOST_FOLD`]:
/// `HTTP/1.0` (bit 0 of `1` is the only one `0` lacks) and the name in any
/// case (`b | 0x20` is `h`, `o`, `s` or `t` only for that letter in either
/// case) match too, nothing else does.
const VERSION_HOST: &[u8; 16] = b"HTTP/1.1\r\nhost: ";
const VERSION_HOST_FOLD: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x20, 0x20, 0x20, 0x20, 0, 0];

/// HTTP-version CRLF at `v`: whether it is `HTTP/1.1` (else `HTTP/1.0`).
#[inline(always)]
fn version(buf: &[u8], v: usize) -> Result<bool, Stop> {
    let Some(version) = buf[v..].first_chunk::<10>() else {
        // The full scan judges the line once its LF is there.
        return Err(if buf[v..].contains(&b'\n') {
            Other
        } else {
            Partial
        });
    };
    let (word, crlf) = version.split_at(8);
    let word = u64::from_le_bytes([
        word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
    ]);
    // `HTTP/1.0` and `HTTP/1.1` differ in bit 0 of their last byte only.
    if word | MINOR_BIT != HTTP11 || crlf != b"\r\n" {
        return Err(Other);
    }
    Ok(word == HTTP11)
}

/// The line end of a Host value whose first byte outside the usual ones,
/// at `j`, is not the CR of a CRLF: an IP literal's brackets, a
/// reg-name's sub-delims, or a CR at the end of the bytes.
#[cold]
#[inline(never)]
fn host_end(buf: &[u8], j: usize) -> Result<usize, Stop> {
    let cr = host_rest(buf, j)?;
    line_end(buf, cr)?;
    Ok(cr)
}

/// Where a field value's scan goes on after the byte at `j`, the first
/// one the class does not take that is not the CR of a CRLF: after an
/// HTAB; a CR at the end of the bytes is partial; anything else declines.
#[cold]
#[inline(never)]
fn value_more(buf: &[u8], j: usize) -> Result<usize, Stop> {
    match buf[j] {
        b'\t' => Ok(j + 1),
        b'\r' => line_end(buf, j).and(Err(Other)),
        _ => Err(Other),
    }
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
fn put(headers: &mut Vec<HeaderSpan>, k: usize, name: Span, value: Span) {
    match headers.get_mut(k) {
        Some(slot) => {
            slot.name = name;
            slot.value = value;
        }
        None => push(headers, name, value),
    }
}

/// A head with more lines than any before it on the connection (the
/// vector grows, rarely).
#[cold]
#[inline(never)]
fn push(headers: &mut Vec<HeaderSpan>, name: Span, value: Span) {
    headers.push(HeaderSpan { name, value });
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
