//! Body framing (RFC 9112 §6): no body, `Content-Length`, or `chunked`
//! (RFC 9112 §7.1), as a streaming decoder that yields body bytes as they
//! arrive, without copying: it returns ranges into the input it was given.
//!
//! Contract:
//! - Feed [`BodyDecoder::decode`] the bytes that follow the request head. It
//!   consumes a prefix of them and returns a [`Decoded`]: how many bytes it
//!   consumed, the body bytes among them as one range of the input (possibly
//!   empty), and whether the body is complete. The caller drops the consumed
//!   bytes and calls again, appending more input when it has any.
//! - `consumed == 0 && !done` means more input is needed. The decoder never
//!   consumes a byte past the end of the body, so what follows it (the next
//!   pipelined request) stays with the caller.
//! - At most one run of body bytes is returned per call. Framing that follows
//!   the run is consumed in the same call, up to the start of the next run, so
//!   a small body given whole completes in one call.
//! - The decoder keeps no bytes, only a state, so input may be split at any
//!   byte boundary. Chunk data is returned by slicing; framing is scanned byte
//!   by byte, and every piece of it is bounded (64 size digits,
//!   `max_chunk_ext` per size line, `max_trailer_bytes` of trailers), so each
//!   call's work is linear in the input and no line can stall the decoder.
//! - Chunked framing is strict: CRLF everywhere (a bare LF or a CR without LF
//!   is an error), extensions and trailer fields are checked against their
//!   grammar and bounded, then discarded. `max_body_size` is enforced when a
//!   chunk size is read, before its data arrives.
//! - Errors are final: once `decode` fails it fails again with the same error.
//!   Once done, `decode` returns consumed 0, no data, done.

use std::ops::Range;

use crate::proto::{Limits, ProtoError};

/// How the body of a request is framed, decided from its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or `Content-Length: 0`).
    Empty,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The result of one [`BodyDecoder::decode`] call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// How many bytes of the input were consumed (framing and data).
    pub consumed: usize,
    /// Body bytes found, as a range of the input (inside `..consumed`); may be empty.
    pub data: Range<usize>,
    /// The body, chunked trailers included, is complete.
    pub done: bool,
}

/// Streaming body decoder. Feed it the bytes after the head; call again
/// while it consumes something and is not done.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Body bytes yielded so far; never more than `max_body_size`.
    received: u64,
    max_body_size: u64,
    max_chunk_ext: usize,
    max_trailer_bytes: usize,
}

impl BodyDecoder {
    /// A decoder for `kind`, enforcing `max_body_size`, `max_chunk_ext` and
    /// `max_trailer_bytes` of `limits`.
    pub fn new(kind: BodyKind, limits: &Limits) -> BodyDecoder {
        let state = match kind {
            BodyKind::Empty | BodyKind::Length(0) => State::Done,
            // The head parser refuses this first; checked again so that the
            // decoder alone never yields more than the limit.
            BodyKind::Length(n) if n > limits.max_body_size => {
                State::Failed(ProtoError::BodyTooLarge)
            }
            BodyKind::Length(n) => State::Length { remaining: n },
            BodyKind::Chunked => State::Framing(Framing::START),
        };
        BodyDecoder {
            state,
            received: 0,
            max_body_size: limits.max_body_size,
            max_chunk_ext: limits.max_chunk_ext,
            max_trailer_bytes: limits.max_trailer_bytes,
        }
    }

    /// Decodes from `input`. Returns consumed bytes, a data range within
    /// them, and whether the body is complete. `consumed == 0 && !done`
    /// means more input is needed. Errors are final.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ProtoError> {
        let mut pos = 0;
        let mut data = 0..0;
        loop {
            match self.state {
                State::Done => {
                    return Ok(Decoded {
                        consumed: pos,
                        data,
                        done: true,
                    })
                }
                State::Failed(e) => return Err(e),
                State::Length { remaining } => {
                    // Only ever the first state of a call: nothing precedes it.
                    let n = take(remaining, input.len() - pos);
                    let remaining = remaining - n as u64;
                    self.received += n as u64;
                    self.state = if remaining == 0 {
                        State::Done
                    } else {
                        State::Length { remaining }
                    };
                    return Ok(Decoded {
                        consumed: pos + n,
                        data: pos..pos + n,
                        done: remaining == 0,
                    });
                }
                // chunk-data = 1*OCTET ; a sequence of chunk-size octets
                State::ChunkData { remaining } => {
                    // One run per call; or nothing to take yet.
                    if !data.is_empty() || pos == input.len() {
                        break;
                    }
                    let n = take(remaining, input.len() - pos);
                    data = pos..pos + n;
                    pos += n;
                    self.received += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Framing(Framing::ChunkDataCr)
                    } else {
                        State::ChunkData { remaining }
                    };
                }
                State::Framing(framing) => {
                    let Some(&byte) = input.get(pos) else {
                        break;
                    };
                    match self.step(framing, byte) {
                        Ok(next) => {
                            self.state = next;
                            pos += 1;
                        }
                        // Hand over the data already found; the state still
                        // points at the bad byte, so the next call fails.
                        Err(_) if !data.is_empty() => break,
                        Err(e) => {
                            self.state = State::Failed(e);
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(Decoded {
            consumed: pos,
            data,
            done: false,
        })
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Body bytes decoded so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Most body bytes still to come: exact with `Content-Length`, the
    /// rest of `max_body_size` with chunked framing.
    pub fn remaining_bound(&self) -> u64 {
        match self.state {
            State::Length { remaining } => remaining,
            State::Done | State::Failed(_) => 0,
            State::ChunkData { .. } | State::Framing(_) => {
                self.max_body_size.saturating_sub(self.received)
            }
        }
    }

    /// Advances the chunked framing by one byte.
    fn step(&self, framing: Framing, b: u8) -> Result<State, ProtoError> {
        use Framing::*;
        use ProtoError::*;
        let next = match framing {
            // chunk-size = 1*HEXDIG
            ChunkSize { size, digits } => {
                if let Some(d) = hex_value(b) {
                    // Leading zeros are legal but bounded, so that a size
                    // line cannot run on forever.
                    if digits >= MAX_CHUNK_SIZE_DIGITS {
                        return Err(ChunkSizeOverflow);
                    }
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(ChunkSizeOverflow)?;
                    ChunkSize {
                        size,
                        digits: digits + 1,
                    }
                } else if digits == 0 {
                    return Err(BadChunkSize);
                } else {
                    match b {
                        CR | b';' | b' ' | b'\t' => {
                            // The size is complete: refuse a body that would
                            // grow past the limit before any of it arrives.
                            if size > self.max_body_size.saturating_sub(self.received) {
                                return Err(BodyTooLarge);
                            }
                            return self.step_ext(size, 0, Ext::End, b);
                        }
                        LF => return Err(BadChunkLine),
                        _ => return Err(BadChunkSize),
                    }
                }
            }
            ChunkExt { size, len, at } => return self.step_ext(size, len, at, b),
            // chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
            // last-chunk = 1*("0") [ chunk-ext ] CRLF
            ChunkSizeLf { size } => {
                if b != LF {
                    return Err(BadChunkLine);
                }
                if size == 0 {
                    TrailerFieldStart { len: 0 }
                } else {
                    return Ok(State::ChunkData { remaining: size });
                }
            }
            ChunkDataCr if b == CR => ChunkDataLf,
            ChunkDataLf if b == LF => Framing::START,
            ChunkDataCr | ChunkDataLf => return Err(ChunkDataNotTerminated),
            // chunked-body = *chunk last-chunk trailer-section CRLF
            TrailerFieldStart { .. } if b == CR => LastLf,
            // trailer-section = *( field-line CRLF )
            // field-line = field-name ":" OWS field-value OWS
            TrailerFieldStart { len }
            | TrailerFieldName { len }
            | TrailerFieldValue { len }
            | TrailerFieldLf { len } => {
                let len = len + 1;
                if len > self.max_trailer_bytes {
                    return Err(TrailersTooLarge);
                }
                match (framing, b) {
                    // field-name = token; whitespace before the colon, or at
                    // the start of a line (obs-fold), is not a tchar.
                    (TrailerFieldStart { .. } | TrailerFieldName { .. }, _) if is_tchar(b) => {
                        TrailerFieldName { len }
                    }
                    (TrailerFieldName { .. }, b':') => TrailerFieldValue { len },
                    (TrailerFieldValue { .. }, CR) => TrailerFieldLf { len },
                    // field-value = *field-content, OWS around it: all of it
                    // is VCHAR / obs-text / SP / HTAB.
                    (TrailerFieldValue { .. }, _) if is_field_value_byte(b) => {
                        TrailerFieldValue { len }
                    }
                    (TrailerFieldLf { .. }, LF) => TrailerFieldStart { len },
                    _ => return Err(BadTrailer),
                }
            }
            LastLf if b == LF => return Ok(State::Done),
            LastLf => return Err(BadTrailer),
        };
        Ok(State::Framing(next))
    }

    /// Advances a chunk-size line's extensions by one byte; `len` counts the
    /// extension bytes of this line so far.
    fn step_ext(&self, size: u64, len: usize, at: Ext, b: u8) -> Result<State, ProtoError> {
        if b == CR {
            // The line may end after the size, a name, or a value.
            return match at {
                Ext::End | Ext::Name | Ext::Token => {
                    Ok(State::Framing(Framing::ChunkSizeLf { size }))
                }
                _ => Err(ProtoError::BadChunkLine),
            };
        }
        let len = len + 1;
        if len > self.max_chunk_ext {
            return Err(ProtoError::ChunkExtensionsTooLong);
        }
        let at = at.next(b).ok_or(ProtoError::BadChunkLine)?;
        Ok(State::Framing(Framing::ChunkExt { size, len, at }))
    }
}

/// Most hex digits in one chunk-size, leading zeros included: 16 hold any
/// u64, the rest is room for zero padding, and the bound keeps one size line
/// from occupying the decoder without end.
const MAX_CHUNK_SIZE_DIGITS: u8 = 64;

const CR: u8 = b'\r';
const LF: u8 = b'\n';

/// Where the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `Content-Length` framing: this many body bytes remain.
    Length { remaining: u64 },
    /// chunk-data: this many bytes of the current chunk remain.
    ChunkData { remaining: u64 },
    /// Inside the chunked framing around the data.
    Framing(Framing),
    /// The body is complete.
    Done,
    /// The body was refused; errors are final.
    Failed(ProtoError),
}

/// Positions in the chunked framing, which is read one byte at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// chunk-size = 1*HEXDIG: `digits` read so far, `size` their value.
    ChunkSize { size: u64, digits: u8 },
    /// chunk-ext, at `at`, with `len` bytes of extension text on this line.
    ChunkExt { size: u64, len: usize, at: Ext },
    /// The CR ending a chunk-size line was read; LF must follow.
    ChunkSizeLf { size: u64 },
    /// The chunk data is complete; its CR must follow.
    ChunkDataCr,
    /// The CR after the chunk data was read; LF must follow.
    ChunkDataLf,
    /// At the start of a trailer field line, or of the final CRLF; `len`
    /// counts the trailer-section bytes so far, in every trailer state.
    TrailerFieldStart { len: usize },
    /// Inside a trailer field-name.
    TrailerFieldName { len: usize },
    /// After a trailer field's colon, up to its CR.
    TrailerFieldValue { len: usize },
    /// The CR ending a trailer field line was read; LF must follow.
    TrailerFieldLf { len: usize },
    /// The CR of the final CRLF was read; its LF ends the body.
    LastLf,
}

impl Framing {
    /// The start of a chunk-size line.
    const START: Framing = Framing::ChunkSize { size: 0, digits: 0 };
}

/// Positions inside chunk extensions (RFC 9112 §7.1.1):
///
/// ```text
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name
///                     [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// quoted-string  = DQUOTE *( qdtext / quoted-pair ) DQUOTE
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// After the size or a quoted value: `;`, BWS, or the line's CR.
    End,
    /// BWS after the size or a value: only more BWS or `;` may follow.
    BwsBeforeSemi,
    /// After `;`: BWS, then the name.
    BwsBeforeName,
    /// Inside a chunk-ext-name.
    Name,
    /// BWS after a name: only more BWS, `=` or `;` may follow.
    BwsAfterName,
    /// After `=`: BWS, then the value.
    BwsBeforeValue,
    /// Inside a token chunk-ext-val.
    Token,
    /// Inside a quoted-string chunk-ext-val.
    Quoted,
    /// After a backslash inside a quoted-string.
    QuotedPair,
}

impl Ext {
    /// The position after `b` (never CR, which the caller handles), or `None`
    /// if `b` breaks the grammar.
    fn next(self, b: u8) -> Option<Ext> {
        use Ext::*;
        // BWS = OWS = *( SP / HTAB )
        let ws = b == b' ' || b == b'\t';
        Some(match (self, b) {
            (End | BwsBeforeSemi | Name | BwsAfterName | Token, b';') => BwsBeforeName,
            (End | BwsBeforeSemi | Token, _) if ws => BwsBeforeSemi,
            (BwsBeforeName, _) if ws => BwsBeforeName,
            (BwsBeforeName | Name, _) if is_tchar(b) => Name,
            (Name | BwsAfterName, _) if ws => BwsAfterName,
            (Name | BwsAfterName, b'=') => BwsBeforeValue,
            (BwsBeforeValue, _) if ws => BwsBeforeValue,
            (BwsBeforeValue, b'"') => Quoted,
            (BwsBeforeValue | Token, _) if is_tchar(b) => Token,
            (Quoted, b'"') => End,
            (Quoted, b'\\') => QuotedPair,
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
            (Quoted, b'\t' | b' ' | 0x21 | 0x23..=0x5B | 0x5D..=0x7E | 0x80..=0xFF) => Quoted,
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            (QuotedPair, b'\t' | b' ' | 0x21..=0x7E | 0x80..=0xFF) => Quoted,
            _ => return None,
        })
    }
}

/// How many of `avail` input bytes to take when `remaining` are wanted.
/// The result converts back to u64 with `as` losslessly: usize is at most
/// 64 bits wide on every target Rust supports for this crate.
fn take(remaining: u64, avail: usize) -> usize {
    // If `remaining` does not fit usize it exceeds `avail`.
    usize::try_from(remaining).map_or(avail, |r| r.min(avail))
}

/// HEXDIG (case-insensitive, RFC 5234 with RFC 9110 §5.6.1's note) as its value.
fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA   (RFC 9110 §5.6.2)
fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// field-vchar / SP / HTAB, where field-vchar = VCHAR / obs-text
/// (RFC 9110 §5.5): no control character, no DEL.
fn is_field_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtoError::*;

    const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

    /// Valid chunked bodies and what they decode to.
    const CHUNKED: &[(&str, &str)] = &[
        ("0\r\n\r\n", ""),
        ("000\r\n\r\n", ""),
        ("5\r\nhello\r\n0\r\n\r\n", "hello"),
        ("0005\r\nhello\r\n0\r\n\r\n", "hello"),
        ("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world"),
        (
            "a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
            "0123456789abcdefghij",
        ),
        ("10\r\n0123456789abcdef\r\n0\r\n\r\n", "0123456789abcdef"),
        ("4\r\n\r\n\r\n\r\n0\r\n\r\n", "\r\n\r\n"),
        ("3\r\n\0\x01\x7f\r\n0\r\n\r\n", "\0\x01\x7f"),
        ("5;a\r\nhello\r\n0\r\n\r\n", "hello"),
        (
            "5 ; a = b ;c=\"x;y \\\" z\"\t;d\r\nhello\r\n0;last=1\r\n\r\n",
            "hello",
        ),
        ("0\r\nX-Sum: abc\r\n\r\n", ""),
        (
            "3\r\nabc\r\n0\r\nA: 1\r\nB:\r\nC: \t spaced  value \t\r\nD:é\r\n\r\n",
            "abc",
        ),
    ];

    /// What a caller ends with after feeding some pieces.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        body: Vec<u8>,
        consumed: usize,
        done: bool,
        /// Bytes left over after the body: unconsumed and not yet fed.
        rest: Vec<u8>,
    }

    fn limits() -> Limits {
        Limits::default()
    }

    /// Does what a connection does: keep the unconsumed bytes, append each
    /// arriving piece, and decode while something is consumed. Checks the
    /// `Decoded` invariants, and that errors and completion are final.
    fn feed(kind: BodyKind, limits: &Limits, pieces: &[&[u8]]) -> Result<Outcome, ProtoError> {
        let mut dec = BodyDecoder::new(kind, limits);
        let mut pending = Vec::new();
        let mut body = Vec::new();
        let mut consumed = 0;
        for (i, piece) in pieces.iter().enumerate() {
            pending.extend_from_slice(piece);
            loop {
                let d = match dec.decode(&pending) {
                    Ok(d) => d,
                    Err(e) => {
                        assert_eq!(dec.decode(&pending), Err(e), "errors are final");
                        assert_eq!(dec.decode(b""), Err(e), "errors are final");
                        return Err(e);
                    }
                };
                assert!(
                    d.data.start <= d.data.end
                        && d.data.end <= d.consumed
                        && d.consumed <= pending.len(),
                    "{d:?} for {} input bytes",
                    pending.len()
                );
                body.extend_from_slice(&pending[d.data.clone()]);
                pending.drain(..d.consumed);
                consumed += d.consumed;
                assert_eq!(dec.received(), body.len() as u64);
                assert_eq!(dec.is_done(), d.done);
                if d.done {
                    let after = dec.decode(&pending);
                    let idle = Decoded {
                        consumed: 0,
                        data: 0..0,
                        done: true,
                    };
                    assert_eq!(after, Ok(idle), "done is final");
                    let mut rest = pending;
                    for p in &pieces[i + 1..] {
                        rest.extend_from_slice(p);
                    }
                    return Ok(Outcome {
                        body,
                        consumed,
                        done: true,
                        rest,
                    });
                }
                if d.consumed == 0 {
                    break;
                }
            }
        }
        Ok(Outcome {
            body,
            consumed,
            done: false,
            rest: pending,
        })
    }

    /// `input` fed whole, split in two at every position, and byte by byte.
    fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![input]];
        for k in 0..=input.len() {
            all.push(vec![&input[..k], &input[k..]]);
        }
        all.push(input.chunks(1).collect());
        all
    }

    /// Feeds `input` under every split; each must give the same result.
    fn decode_all(kind: BodyKind, limits: &Limits, input: &[u8]) -> Result<Outcome, ProtoError> {
        let whole = feed(kind, limits, &[input]);
        for pieces in splits(input) {
            let got = feed(kind, limits, &pieces);
            assert_eq!(got, whole, "{:?} split as {pieces:?}", esc(input));
        }
        whole
    }

    fn assert_error(limits: &Limits, input: &[u8], want: ProtoError) {
        let got = decode_all(BodyKind::Chunked, limits, input);
        assert_eq!(got.err(), Some(want), "{:?}", esc(input));
    }

    fn assert_body(limits: &Limits, input: &[u8], want: &[u8]) {
        let got = decode_all(BodyKind::Chunked, limits, input);
        let got = got.unwrap_or_else(|e| panic!("{:?}: {e}", esc(input)));
        assert!(got.done, "{:?} not done", esc(input));
        assert_eq!(got.body, want, "{:?}", esc(input));
        assert_eq!(got.consumed, input.len(), "{:?}", esc(input));
    }

    fn esc(b: &[u8]) -> String {
        b.escape_ascii().to_string()
    }

    #[test]
    fn valid_bodies_decode_under_any_split() {
        for (input, want) in CHUNKED {
            assert_body(&limits(), input.as_bytes(), want.as_bytes());
        }
        let got = decode_all(BodyKind::Length(5), &limits(), b"hello").unwrap();
        assert_eq!((got.body.as_slice(), got.done), (&b"hello"[..], true));
    }

    #[test]
    fn stops_at_end_of_body_when_pipelined() {
        let mut cases: Vec<(BodyKind, Vec<u8>)> = CHUNKED
            .iter()
            .map(|(input, _)| (BodyKind::Chunked, input.as_bytes().to_vec()))
            .collect();
        cases.push((BodyKind::Length(5), b"hello".to_vec()));
        cases.push((BodyKind::Length(0), Vec::new()));
        cases.push((BodyKind::Empty, Vec::new()));
        for (kind, body) in cases {
            let input = [body.as_slice(), NEXT].concat();
            let got = decode_all(kind, &limits(), &input).unwrap();
            assert!(got.done, "{:?}", esc(&input));
            assert_eq!(got.consumed, body.len(), "{:?}", esc(&input));
            assert_eq!(got.rest, NEXT, "{:?}", esc(&input));
        }
    }

    #[test]
    fn one_data_run_per_call() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &limits());
        // The framing after the first run is read up to the next run.
        let d = dec.decode(input).unwrap();
        assert_eq!((d.consumed, d.data, d.done), (13, 3..8, false));
        let d = dec.decode(&input[13..]).unwrap();
        assert_eq!((d.consumed, d.data, d.done), (input.len() - 13, 0..6, true));
        assert_eq!(dec.received(), 11);
    }

    #[test]
    fn partial_chunk_data_streams() {
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &limits());
        let d = dec.decode(b"5\r\nhel").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (6, 3..6, false));
        let d = dec.decode(b"").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (0, 0..0, false));
        let d = dec.decode(b"lo\r").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (3, 0..2, false));
        let d = dec.decode(b"\n0\r\n\r\nGET").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (6, 0..0, true));
        assert_eq!(dec.received(), 5);
    }

    #[test]
    fn chunk_size_invalid() {
        for input in [
            "g\r\n",
            "5g\r\nhello\r\n0\r\n\r\n",
            "-5\r\nhello\r\n0\r\n\r\n",
            "+5\r\nhello\r\n0\r\n\r\n",
            "0x5\r\nhello\r\n0\r\n\r\n",
            " 5\r\nhello\r\n0\r\n\r\n",
            "5,\r\nhello\r\n0\r\n\r\n",
            "5\r\nhello\r\nz\r\n\r\n",
            "5\r\nhello\r\n0=\r\n\r\n",
        ] {
            assert_error(&limits(), input.as_bytes(), BadChunkSize);
        }
    }

    #[test]
    fn chunk_size_empty() {
        for input in [
            "\r\n",
            "\r\nhello\r\n0\r\n\r\n",
            ";a=b\r\nhello\r\n0\r\n\r\n",
            "\n",
            "5\r\nhello\r\n\r\n",
        ] {
            assert_error(&limits(), input.as_bytes(), BadChunkSize);
        }
    }

    #[test]
    fn chunk_size_overflow() {
        let big = Limits {
            max_body_size: u64::MAX,
            ..limits()
        };
        let zeros = "0".repeat(64);
        let too_many_zeros = "0".repeat(65);
        for input in [
            "10000000000000000\r\n".to_string(),
            "FFFFFFFFFFFFFFFFF\r\n".to_string(),
            "fffffffffffffffff0\r\n".to_string(),
            format!("{too_many_zeros}\r\n\r\n"),
            format!("{too_many_zeros}5\r\nhello\r\n0\r\n\r\n"),
            format!("5\r\nhello\r\n{too_many_zeros}\r\n\r\n"),
        ] {
            assert_error(&big, input.as_bytes(), ChunkSizeOverflow);
        }
        // 64 digits, and u64::MAX itself, are fine.
        assert_body(&limits(), format!("{zeros}\r\n\r\n").as_bytes(), b"");
        let padded = format!("{}5\r\nhello\r\n0\r\n\r\n", "0".repeat(63));
        assert_body(&limits(), padded.as_bytes(), b"hello");
        let max = feed(BodyKind::Chunked, &big, &[b"FFFFFFFFFFFFFFFF\r\nabc"]).unwrap();
        assert_eq!((max.body.as_slice(), max.done), (&b"abc"[..], false));
    }

    #[test]
    fn chunk_size_not_followed_by_crlf() {
        for input in [
            "5\nhello\r\n0\r\n\r\n",
            "5\rhello\r\n0\r\n\r\n",
            "5\r\rhello\r\n0\r\n\r\n",
            "5\r\r\n",
            "5\r\nhello\r\n0\n\r\n",
            "5\r\nhello\r\n0\rx\r\n",
            "5;a\nhello\r\n0\r\n\r\n",
            "5;a=b\rxhello\r\n0\r\n\r\n",
            "5;a=\"b\"\nhello\r\n0\r\n\r\n",
        ] {
            assert_error(&limits(), input.as_bytes(), BadChunkLine);
        }
    }

    #[test]
    fn chunk_data_not_followed_by_crlf() {
        for input in [
            "5\r\nhelloX",
            "5\r\nhello0\r\n\r\n",
            "5\r\nhello\n0\r\n\r\n",
            "5\r\nhello\r0\r\n\r\n",
            "5\r\nhello\r\r\n0\r\n\r\n",
            "5\r\nhello world\r\n0\r\n\r\n",
        ] {
            assert_error(&limits(), input.as_bytes(), ChunkDataNotTerminated);
        }
        // The data before the bad byte is still handed over.
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &limits());
        let d = dec.decode(b"5\r\nhelloX").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (8, 3..8, false));
        assert_eq!(dec.decode(b"X"), Err(ChunkDataNotTerminated));
    }

    #[test]
    fn chunk_extensions_parsed() {
        for ext in [
            ";a",
            ";a=b",
            ";a=\"\"",
            ";a=\"q\\\"uo\\\\te\"",
            ";a=\"\t sp ;=\\\t\"",
            ";a=\"é\"",
            " ;a",
            "\t; a",
            " \t ; \t a \t = \t b",
            ";a=b;c=d",
            ";a=b ; c",
            ";a;b;c",
            ";a=\"x\" ;b",
            ";a=\"x\";b=\"y\"",
            ";!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz",
        ] {
            let input = format!("5{ext}\r\nhello\r\n0{ext}\r\n\r\n");
            assert_body(&limits(), input.as_bytes(), b"hello");
        }
    }

    #[test]
    fn chunk_extensions_too_long() {
        let small = Limits {
            max_chunk_ext: 8,
            ..limits()
        };
        // Exactly at the limit, on every line.
        for ext in [";abcdefg", " ;abcdef", ";a=\"123\"", ";a;b;c;d"] {
            let input = format!("5{ext}\r\nhello\r\n5{ext}\r\nworld\r\n0{ext}\r\n\r\n");
            assert_body(&small, input.as_bytes(), b"helloworld");
        }
        for input in [
            "5;abcdefgh\r\nhello\r\n0\r\n\r\n".to_string(),
            "5  ;abcdef\r\nhello\r\n0\r\n\r\n".to_string(),
            "5\r\nhello\r\n0;a=\"1234\"\r\n\r\n".to_string(),
            // Unterminated: refused at the limit, not at the CRLF.
            format!("5;{}", "a".repeat(100)),
        ] {
            assert_error(&small, input.as_bytes(), ChunkExtensionsTooLong);
        }
        let none = Limits {
            max_chunk_ext: 0,
            ..limits()
        };
        assert_body(&none, b"5\r\nhello\r\n0\r\n\r\n", b"hello");
        assert_error(&none, b"5;\r\nhello\r\n0\r\n\r\n", ChunkExtensionsTooLong);
    }

    #[test]
    fn chunk_extension_malformed() {
        for ext in [
            ";",
            ";;a",
            "; ",
            ";=v",
            ";a=",
            ";a= ",
            ";a=;b",
            ";a=\"open",
            ";a=\"x\"y",
            ";a=\"x\" \"y\"",
            ";a b",
            ";a=b c",
            ";a=b=c",
            " ",
            " a",
            ";a ",
            ";a=b ",
            ";a=\"x\" ",
            ";a@b",
            ";a=b@",
            ";a=@",
            ";a=\"\x01\"",
            ";a=\"\x7f\"",
            ";a=\"\\\x01\"",
            ";a=\"\\",
            ";a=\"\\\r\n\"",
            ";a\x00",
        ] {
            let input = format!("5{ext}\r\nhello\r\n0\r\n\r\n");
            assert_error(&limits(), input.as_bytes(), BadChunkLine);
            let last = format!("0{ext}\r\n\r\n");
            assert_error(&limits(), last.as_bytes(), BadChunkLine);
        }
    }

    #[test]
    fn trailers_parsed() {
        for trailers in [
            "",
            "A: b\r\n",
            "A:b\r\n",
            "A:\r\n",
            "A: \r\n",
            "A:  b c \t\r\n",
            "Checksum: sha-256=:abc=:\r\nExpires: Wed, 21 Oct 2015 07:28:00 GMT\r\n",
            "X-Obs: \u{80}é\r\n",
            "!#$%&'*+-.^_`|~09AZaz: \"quoted\" ; , = ()<>@[]{}\\/?\r\n",
        ] {
            let input = format!("3\r\nabc\r\n0\r\n{trailers}\r\n");
            assert_body(&limits(), input.as_bytes(), b"abc");
        }
    }

    #[test]
    fn trailer_malformed() {
        for trailers in [
            "NoColon\r\n\r\n",
            "Bad Name: v\r\n\r\n",
            "Bad@: v\r\n\r\n",
            "A : v\r\n\r\n",
            ": v\r\n\r\n",
            " A: v\r\n\r\n",
            "\tA: v\r\n\r\n",
            "A: b\r\n c\r\n\r\n",
            "A: b\r\n\tc\r\n\r\n",
            "A: b\x01c\r\n\r\n",
            "A: b\x7f\r\n\r\n",
            "A: b\x00\r\n\r\n",
            "A: b\nB: c\r\n\r\n",
            "A: b\rc\r\n\r\n",
            "A\n",
            "\n",
            "\rx",
            "A: b\r\n\n",
        ] {
            let input = format!("3\r\nabc\r\n0\r\n{trailers}");
            assert_error(&limits(), input.as_bytes(), BadTrailer);
        }
    }

    #[test]
    fn trailers_too_large() {
        let small = Limits {
            max_trailer_bytes: 10,
            ..limits()
        };
        // field lines with their CRLFs count; the final CRLF does not.
        assert_body(&small, b"0\r\nA: 12345\r\n\r\n", b"");
        assert_body(&small, b"0\r\nA:1\r\nB:2\r\n\r\n", b"");
        for input in [
            "0\r\nA: 123456\r\n\r\n".to_string(),
            "0\r\nA:1\r\nB:23\r\n\r\n".to_string(),
            // Unterminated: refused at the limit, not at the CRLF.
            format!("0\r\nA: {}", "x".repeat(100)),
            format!("0\r\n{}", "A:\r\n".repeat(100)),
        ] {
            assert_error(&small, input.as_bytes(), TrailersTooLarge);
        }
        let none = Limits {
            max_trailer_bytes: 0,
            ..limits()
        };
        assert_body(&none, b"0\r\n\r\n", b"");
        assert_error(&none, b"0\r\nA:\r\n\r\n", TrailersTooLarge);
    }

    #[test]
    fn chunked_body_too_large() {
        let small = Limits {
            max_body_size: 10,
            ..limits()
        };
        assert_body(
            &small,
            b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
            b"helloworld",
        );
        assert_body(&small, b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789");
        for input in [
            "B\r\n",
            "0000B\r\n",
            "B;ext=1\r\n",
            "5\r\nhello\r\n6\r\n",
            "5\r\nhello\r\n5\r\nworld\r\n1\r\n",
            "FFFFFFFFFFFFFFFF\r\n",
        ] {
            assert_error(&small, input.as_bytes(), BodyTooLarge);
        }
        // Decided from the size line alone, before any data arrives.
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &small);
        assert_eq!(dec.decode(b"B\r"), Err(BodyTooLarge));
        assert_eq!(dec.received(), 0);
    }

    #[test]
    fn content_length_streams() {
        let mut dec = BodyDecoder::new(BodyKind::Length(11), &limits());
        assert!(!dec.is_done());
        let d = dec.decode(b"").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (0, 0..0, false));
        let d = dec.decode(b"hel").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (3, 0..3, false));
        let d = dec.decode(b"lo w").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (4, 0..4, false));
        let d = dec.decode(b"orldGET / HTTP/1.1").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (4, 0..4, true));
        assert!(dec.is_done());
        assert_eq!(dec.received(), 11);
        let d = dec.decode(b"GET / HTTP/1.1").unwrap();
        assert_eq!((d.consumed, d.data, d.done), (0, 0..0, true));

        let at_limit = Limits {
            max_body_size: 10,
            ..limits()
        };
        let got = decode_all(BodyKind::Length(10), &at_limit, b"0123456789").unwrap();
        assert_eq!((got.body.as_slice(), got.done), (&b"0123456789"[..], true));
        let mut over = BodyDecoder::new(BodyKind::Length(11), &at_limit);
        assert_eq!(over.decode(b"01234567890"), Err(BodyTooLarge));
        assert_eq!(over.decode(b""), Err(BodyTooLarge));
    }

    #[test]
    fn empty_body_done() {
        for kind in [BodyKind::Empty, BodyKind::Length(0)] {
            let mut dec = BodyDecoder::new(kind, &limits());
            assert!(dec.is_done());
            let d = dec.decode(NEXT).unwrap();
            assert_eq!((d.consumed, d.data, d.done), (0, 0..0, true));
            assert_eq!(dec.received(), 0);
        }
    }

    #[test]
    fn errors_are_final() {
        let mut dec = BodyDecoder::new(BodyKind::Chunked, &limits());
        assert_eq!(dec.decode(b"x"), Err(BadChunkSize));
        assert_eq!(dec.decode(b"5\r\nhello\r\n0\r\n\r\n"), Err(BadChunkSize));
        assert!(!dec.is_done());
    }
}
