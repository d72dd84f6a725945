//! Request head parsing (stub; being written).

use crate::proto::{BodyKind, Limits, ProtoError};

/// A byte range of the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
}

/// HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// A parsed request head.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// Body framing.
    pub body: Option<BodyKind>,
}

/// Incremental head parser.
#[derive(Debug, Clone, Default)]
pub struct HeadParser {
    scanned: usize,
}

impl HeadParser {
    /// Parses.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &Limits,
        head: &mut RequestHead,
    ) -> Result<bool, ProtoError> {
        let _ = (buf, limits, head, self.scanned);
        todo!()
    }
}
