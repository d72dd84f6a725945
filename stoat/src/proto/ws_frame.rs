//! WebSocket frames (RFC 6455 §5): a streaming decoder for client frames
//! and an encoder for server frames. Sans-IO: bytes in, events out.
//!
//! Contract:
//! - [`Decoder::decode`] takes the unconsumed input (mutable: payloads are
//!   unmasked in place) and returns how many bytes it consumed and one
//!   [`Item`]: a piece of a data message's payload (a range of the input,
//!   unmasked), a whole control frame, or "need more input". Data payloads
//!   are handed out as they arrive, so a frame larger than the caller's
//!   buffer never needs to fit in it; the bytes left unconsumed are at most
//!   a frame header (14 bytes) or one control frame (131 bytes), so a
//!   partial frame keeps only what it needs.
//! - Every rule of §5 a server must enforce is checked as early as
//!   possible, and a violation is a [`CloseCode`] to fail the connection
//!   with: unmasked client frames, reserved bits or opcodes, fragmented or
//!   oversized control frames, continuation without a message, a new
//!   message inside a fragmented one (1002); a message larger than the
//!   limit, decided from the frame header before its payload (1009); text
//!   that is not UTF-8, decided at the first invalid byte even across
//!   fragments (1007); a close frame with a bad code or reason (1002/1007).
//! - No extension is negotiated (permessage-deflate is declined), so every
//!   reserved bit must be 0.
//!
//! Why hand-written: the crates that frame WebSocket (tungstenite,
//! websocket-codec) own the read buffer or the socket and copy each frame
//! into a message buffer of their own; here the payload must be unmasked in
//! the connection's pooled buffer and handed out in pieces so that an idle
//! or slow connection holds no buffer (issue 7, memory).

use std::ops::Range;

/// The largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
pub const MAX_HEADER: usize = 14;

/// A frame's opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// `0x0`: continues a fragmented message.
    Continuation,
    /// `0x1`: a text message (UTF-8).
    Text,
    /// `0x2`: a binary message.
    Binary,
    /// `0x8`: the close handshake.
    Close,
    /// `0x9`: a ping.
    Ping,
    /// `0xA`: a pong.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A close status code (RFC 6455 §7.4.1) this side fails a connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1002: a protocol error.
    Protocol,
    /// 1007: text that is not UTF-8.
    InvalidData,
    /// 1009: a message larger than the limit.
    TooBig,
}

impl CloseCode {
    /// The code on the wire.
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Protocol => 1002,
            CloseCode::InvalidData => 1007,
            CloseCode::TooBig => 1009,
        }
    }
}

/// What [`Decoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A frame is not complete enough to say more: read more input.
    NeedInput,
    /// Payload bytes of a data message, unmasked, at `payload` in the
    /// input. `first`: the message's first bytes (its kind is `text`);
    /// `last`: the message is complete with these bytes. Text is checked
    /// piece by piece, except a message that comes whole (`first` and
    /// `last`): the caller checks that one (`std::str::from_utf8`, 1007).
    Data {
        /// Where the bytes are, in the input given to `decode`.
        payload: Range<usize>,
        /// A text message (else binary).
        text: bool,
        /// The first piece of its message.
        first: bool,
        /// The message ends here.
        last: bool,
    },
    /// A ping; its payload (unmasked) is at the range.
    Ping(Range<usize>),
    /// A pong; its payload is at the range.
    Pong(Range<usize>),
    /// A close frame with its status code (if any) and UTF-8 reason.
    Close {
        /// The status code; `None` for an empty close frame.
        code: Option<u16>,
        /// The reason's bytes (valid UTF-8).
        reason: Range<usize>,
    },
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Payload {
    remaining: u64,
    mask: [u8; 4],
    /// Bytes of this frame's payload unmasked so far, mod 4.
    offset: u8,
    fin: bool,
}

/// A data message in progress.
#[derive(Debug, Clone, Copy)]
struct Message {
    text: bool,
    /// Payload bytes so far.
    len: u64,
    /// Nothing of it handed out yet.
    fresh: bool,
}

/// See the module doc. About 40 bytes: a connection keeps one (the size
/// limit is the caller's, passed to each [`Decoder::decode`], so that it is
/// not kept per connection).
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    frame: Option<Payload>,
    message: Option<Message>,
    utf8: Utf8,
}

impl Decoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Decoder {
        Decoder {
            frame: None,
            message: None,
            utf8: Utf8::default(),
        }
    }

    /// Whether a frame's payload is partly received (the next bytes are
    /// not a frame header).
    pub fn in_frame(&self) -> bool {
        self.frame.is_some()
    }

    /// Whether a data message or a frame is partly received.
    pub fn is_mid_message(&self) -> bool {
        self.frame.is_some() || self.message.is_some()
    }

    /// Decodes from `input`; see the module doc. A message larger than
    /// `max_message` bytes (across its fragments) is refused (1009); pass
    /// the same limit on every call. After an error the connection must be
    /// failed: the decoder's state is undefined.
    pub fn decode(
        &mut self,
        input: &mut [u8],
        max_message: usize,
    ) -> Result<(usize, Item), CloseCode> {
        if let Some(frame) = self.frame {
            return self.payload(input, 0, frame);
        }
        let Some(header) = parse_header(input)? else {
            return Ok((0, Item::NeedInput));
        };
        let Header {
            fin,
            opcode,
            len,
            mask,
            size,
        } = header;
        if opcode.is_control() {
            // §5.5: control frames are at most 125 bytes and not fragmented.
            if !fin || len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(CloseCode::Protocol);
            }
            let end = size + len as usize;
            if input.len() < end {
                // Kept whole: at most 131 bytes.
                return Ok((0, Item::NeedInput));
            }
            unmask(&mut input[size..end], mask, 0);
            let range = size..end;
            let item = match opcode {
                Opcode::Ping => Item::Ping(range),
                Opcode::Pong => Item::Pong(range),
                _ => close_item(&input[size..end], size)?,
            };
            return Ok((end, item));
        }
        match (opcode, &mut self.message) {
            // §5.4: a continuation needs a message in progress, and a new
            // message cannot start inside one.
            (Opcode::Continuation, None) => return Err(CloseCode::Protocol),
            (Opcode::Continuation, Some(_)) => {}
            (_, Some(_)) => return Err(CloseCode::Protocol),
            (kind, None) => {
                self.message = Some(Message {
                    text: kind == Opcode::Text,
                    len: 0,
                    fresh: true,
                });
                self.utf8 = Utf8::default();
            }
        }
        let Some(message) = &mut self.message else {
            return Err(CloseCode::Protocol);
        };
        // Decided before the payload is read: nothing of it is kept.
        message.len = message.len.saturating_add(len);
        if message.len > max_message as u64 {
            return Err(CloseCode::TooBig);
        }
        let frame = Payload {
            remaining: len,
            mask,
            offset: 0,
            fin,
        };
        self.frame = Some(frame);
        self.payload(input, size, frame)
    }

    /// Hands out the payload bytes of the current data frame found at
    /// `input[at..]`.
    fn payload(
        &mut self,
        input: &mut [u8],
        at: usize,
        mut frame: Payload,
    ) -> Result<(usize, Item), CloseCode> {
        let have = (input.len() - at) as u64;
        let n = frame.remaining.min(have) as usize;
        if n == 0 && frame.remaining > 0 {
            return Ok((at, Item::NeedInput));
        }
        let range = at..at + n;
        unmask(&mut input[range.clone()], frame.mask, frame.offset);
        frame.offset = ((frame.offset as usize + n) % 4) as u8;
        frame.remaining -= n as u64;
        let frame_done = frame.remaining == 0;
        let last = frame_done && frame.fin;
        let Some(message) = &mut self.message else {
            return Err(CloseCode::Protocol);
        };
        let (text, first) = (message.text, message.fresh);
        message.fresh = false;
        // A message handed out whole in one piece is left to the caller,
        // whose `std::str::from_utf8` gives it the `&str` too (one pass).
        if text && !(first && last) {
            self.utf8.feed(&input[range.clone()], last)?;
        }
        self.frame = if frame_done { None } else { Some(frame) };
        if last {
            self.message = None;
        }
        Ok((
            range.end,
            Item::Data {
                payload: range,
                text,
                first,
                last,
            },
        ))
    }
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: Opcode,
    len: u64,
    mask: [u8; 4],
    /// Bytes of the header.
    size: usize,
}

/// Parses a frame header at the start of `input`; `None`: not all here.
fn parse_header(input: &[u8]) -> Result<Option<Header>, CloseCode> {
    let [b0, b1, ..] = *input else {
        return Ok(None);
    };
    // §5.2: RSV1-3 MUST be 0 unless an extension defines them (none is
    // negotiated); unknown opcodes fail the connection.
    if b0 & 0x70 != 0 {
        return Err(CloseCode::Protocol);
    }
    let opcode = Opcode::from_bits(b0 & 0x0F).ok_or(CloseCode::Protocol)?;
    // §5.1: the server MUST close the connection on an unmasked frame.
    if b1 & 0x80 == 0 {
        return Err(CloseCode::Protocol);
    }
    let (len, at) = match b1 & 0x7F {
        126 => match input.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match input.get(2..10) {
            Some(b) => {
                let mut be = [0; 8];
                be.copy_from_slice(b);
                let len = u64::from_be_bytes(be);
                // §5.2: the most significant bit MUST be 0.
                if len >> 63 != 0 {
                    return Err(CloseCode::Protocol);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let Some(m) = input.get(at..at + 4) else {
        return Ok(None);
    };
    Ok(Some(Header {
        fin: b0 & 0x80 != 0,
        opcode,
        len,
        mask: [m[0], m[1], m[2], m[3]],
        size: at + 4,
    }))
}

/// A close frame's payload (unmasked, at `base` in the input) checked as
/// §5.5.1 and §7.4 say.
fn close_item(payload: &[u8], base: usize) -> Result<Item, CloseCode> {
    match payload.len() {
        0 => Ok(Item::Close {
            code: None,
            reason: base..base,
        }),
        // A body, if present, starts with a two-byte code.
        1 => Err(CloseCode::Protocol),
        n => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(CloseCode::Protocol);
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(CloseCode::InvalidData);
            }
            Ok(Item::Close {
                code: Some(code),
                reason: base + 2..base + n,
            })
        }
    }
}

/// Whether a peer may send `code` (RFC 6455 §7.4.1-2 and the IANA
/// registry): 1000-1003 and 1007-1014 are defined for use; 1004-1006 and
/// 1015 must never be sent; 1016-2999 are reserved; 3000-4999 are for
/// libraries and applications.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `data` with the mask, starting `offset` bytes into it (§5.3).
fn unmask(data: &mut [u8], mask: [u8; 4], offset: u8) {
    let mut key = [0u8; 4];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(i + offset as usize) % 4];
    }
    let word = u32::from_ne_bytes(key);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(key) {
        *b ^= k;
    }
}

/// Incremental UTF-8 validation across pieces, failing at the first byte
/// that no valid text can have: std's `Utf8Error::error_len` tells an
/// invalid sequence (`Some`) from one cut off by the end of the piece
/// (`None`); the cut-off prefix (at most 3 bytes) is carried over.
#[derive(Debug, Clone, Copy, Default)]
struct Utf8 {
    carry: [u8; 4],
    carried: u8,
}

impl Utf8 {
    /// Checks the next piece; `last`: the text ends with it.
    fn feed(&mut self, mut piece: &[u8], last: bool) -> Result<(), CloseCode> {
        if self.carried > 0 {
            let have = self.carried as usize;
            let need = width(self.carry[0]);
            let take = (need - have).min(piece.len());
            self.carry[have..have + take].copy_from_slice(&piece[..take]);
            let now = have + take;
            piece = &piece[take..];
            match std::str::from_utf8(&self.carry[..now]) {
                Ok(_) => self.carried = 0,
                Err(e) if e.error_len().is_none() => {
                    self.carried = now as u8;
                    return if last {
                        Err(CloseCode::InvalidData)
                    } else {
                        Ok(())
                    };
                }
                Err(_) => return Err(CloseCode::InvalidData),
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() && !last => {
                let tail = &piece[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carried = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(CloseCode::InvalidData),
        }
    }
}

/// The length of the UTF-8 sequence a (valid) lead byte starts.
fn width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// Encodes one unmasked, unfragmented server frame (§5.2: a server MUST
/// NOT mask) into `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: Opcode, payload: &[u8]) {
    encode_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Encodes the header of a final, unmasked frame of `len` payload bytes.
pub fn encode_header(out: &mut Vec<u8>, opcode: Opcode, len: usize) {
    out.push(0x80 | opcode.bits());
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Encodes a close frame with `code` and `reason` (cut to fit the 125-byte
/// control payload at a character boundary).
pub fn encode_close(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode_header(out, Opcode::Close, 2 + end);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&reason.as_bytes()[..end]);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    /// Decodes `input` fed in pieces of `step` bytes (the caller keeps
    /// unconsumed bytes, as the runtime does); returns the messages, the
    /// control frames and the error, if any.
    fn run(input: &[u8], step: usize, max: usize) -> (Vec<String>, Result<(), CloseCode>) {
        let mut d = Decoder::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut msg = Vec::new();
        let mut got = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                let (n, item) = match d.decode(&mut buf, max) {
                    Ok(x) => x,
                    Err(e) => return (got, Err(e)),
                };
                match item {
                    Item::NeedInput => {
                        buf.drain(..n);
                        break;
                    }
                    Item::Data {
                        payload,
                        last,
                        text,
                        first,
                    } => {
                        let whole = &buf[payload.clone()];
                        if first && last && text && std::str::from_utf8(whole).is_err() {
                            return (got, Err(CloseCode::InvalidData));
                        }
                        msg.extend_from_slice(&buf[payload]);
                        if last {
                            let kind = if text { "text" } else { "bin" };
                            got.push(format!("{kind}:{}", String::from_utf8_lossy(&msg)));
                            msg.clear();
                        }
                    }
                    Item::Ping(r) => got.push(format!("ping:{}", String::from_utf8_lossy(&buf[r]))),
                    Item::Pong(r) => got.push(format!("pong:{}", String::from_utf8_lossy(&buf[r]))),
                    Item::Close { code, reason } => got.push(format!(
                        "close:{code:?}:{}",
                        String::from_utf8_lossy(&buf[reason])
                    )),
                }
                buf.drain(..n);
            }
        }
        (got, Ok(()))
    }

    /// Every split of the input gives the same answer.
    fn check(input: &[u8], max: usize, want: &[&str], err: Option<CloseCode>) {
        for step in [input.len().max(1), 1, 2, 3, 7] {
            let (got, res) = run(input, step, max);
            assert_eq!(got, want, "step {step}");
            assert_eq!(res.err(), err, "step {step}");
        }
    }

    #[test]
    fn single_frames() {
        check(&frame(0x81, b"Hello"), 100, &["text:Hello"], None);
        check(&frame(0x82, &[]), 100, &["bin:"], None);
        let big = vec![b'a'; 70_000];
        let (got, res) = run(&frame(0x82, &big), 4096, 100_000);
        assert!(res.is_ok());
        assert_eq!(got[0].len(), 4 + 70_000);
    }

    #[test]
    fn fragments_with_control_frames_between() {
        let mut input = frame(0x01, b"Hel");
        input.extend(frame(0x89, b"p"));
        input.extend(frame(0x00, b"l"));
        input.extend(frame(0x8A, b""));
        input.extend(frame(0x80, b"o"));
        check(&input, 100, &["ping:p", "pong:", "text:Hello"], None);
    }

    #[test]
    fn protocol_errors() {
        // Unmasked.
        check(&[0x81, 0x00], 100, &[], Some(CloseCode::Protocol));
        // RSV1, RSV2, RSV3.
        for b0 in [0xC1, 0xA1, 0x91] {
            check(&frame(b0, b"x"), 100, &[], Some(CloseCode::Protocol));
        }
        // Reserved opcodes.
        for op in [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            check(&frame(0x80 | op, b""), 100, &[], Some(CloseCode::Protocol));
        }
        // Continuation without a message; a message inside a message.
        check(&frame(0x80, b"x"), 100, &[], Some(CloseCode::Protocol));
        let mut two = frame(0x01, b"a");
        two.extend(frame(0x81, b"b"));
        check(&two, 100, &[], Some(CloseCode::Protocol));
        // A fragmented ping; a ping over 125 bytes.
        check(&frame(0x09, b"x"), 100, &[], Some(CloseCode::Protocol));
        check(
            &frame(0x89, &[0; 126]),
            1000,
            &[],
            Some(CloseCode::Protocol),
        );
        check(
            &frame(0x89, &[b'x'; 125]),
            1000,
            &[&format!("ping:{}", "x".repeat(125))],
            None,
        );
    }

    #[test]
    fn too_big_decided_from_the_header() {
        check(
            &frame(0x82, &[0; 101])[..8],
            100,
            &[],
            Some(CloseCode::TooBig),
        );
        let mut frags = frame(0x02, &[0; 60]);
        frags.extend(frame(0x80, &[0; 60]));
        let (_, res) = run(&frags, frags.len(), 100);
        assert_eq!(res, Err(CloseCode::TooBig));
    }

    #[test]
    fn utf8_fails_fast_across_fragments() {
        // "κόσμε" split inside a character, valid.
        let s = "κόσμε".as_bytes();
        let mut input = frame(0x01, &s[..3]);
        input.extend(frame(0x00, &s[3..4]));
        input.extend(frame(0x80, &s[4..]));
        check(&input, 100, &["text:κόσμε"], None);
        // An invalid byte in the first fragment fails before the rest.
        let bad = frame(0x01, &[b'a', 0xFF]);
        check(&bad, 100, &[], Some(CloseCode::InvalidData));
        // A valid prefix cut by the message's end is invalid.
        check(
            &frame(0x81, &[0xE2, 0x82]),
            100,
            &[],
            Some(CloseCode::InvalidData),
        );
        // A prefix that cannot be completed fails at once: F4 90 is > U+10FFFF.
        let mut cut = frame(0x01, &[0xF4]);
        cut.extend(frame(0x00, &[0x90]));
        let (_, res) = run(&cut, cut.len(), 100);
        assert_eq!(res, Err(CloseCode::InvalidData));
        // Binary is not checked.
        check(&frame(0x82, &[0xFF]), 100, &["bin:\u{FFFD}"], None);
    }

    #[test]
    fn close_frames() {
        check(&frame(0x88, b""), 100, &["close:None:"], None);
        let mut ok = 1000u16.to_be_bytes().to_vec();
        ok.extend_from_slice(b"bye");
        check(&frame(0x88, &ok), 100, &["close:Some(1000):bye"], None);
        check(&frame(0x88, b"x"), 100, &[], Some(CloseCode::Protocol));
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let p = code.to_be_bytes();
            check(&frame(0x88, &p), 100, &[], Some(CloseCode::Protocol));
        }
        for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
            assert!(is_valid_close_code(code));
        }
        let mut bad = 1000u16.to_be_bytes().to_vec();
        bad.push(0xFF);
        check(&frame(0x88, &bad), 100, &[], Some(CloseCode::InvalidData));
    }

    #[test]
    fn encoder_lengths() {
        let mut out = Vec::new();
        encode_frame(&mut out, Opcode::Text, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode_header(&mut out, Opcode::Binary, 300);
        assert_eq!(out, [0x82, 126, 1, 44]);
        out.clear();
        encode_header(&mut out, Opcode::Binary, 70_000);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        out.clear();
        encode_close(&mut out, 1001, &"é".repeat(100));
        assert_eq!(out[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
