//! Body framing (RFC 9112 §6): no body, `Content-Length`, or `chunked`, as a
//! streaming decoder that yields body bytes as they arrive, without copying:
//! it returns ranges into the input it was given.
//!
//! STUB: interface fixed; implementation pending.

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
    _todo: (),
}

impl BodyDecoder {
    /// A decoder for `kind`, enforcing `max_body_size`, `max_chunk_ext` and
    /// `max_trailer_bytes` of `limits`.
    pub fn new(kind: BodyKind, limits: &Limits) -> BodyDecoder {
        let _ = (kind, limits);
        todo!()
    }

    /// Decodes from `input`. Returns consumed bytes, a data range within
    /// them, and whether the body is complete. `consumed == 0 && !done`
    /// means more input is needed. Errors are final.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, ProtoError> {
        let _ = input;
        todo!()
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        todo!()
    }

    /// Body bytes decoded so far.
    pub fn received(&self) -> u64 {
        todo!()
    }
}
