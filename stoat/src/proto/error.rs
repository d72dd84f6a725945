//! Protocol errors: each maps to exactly one status code, and every one of
//! them closes the connection after the error response is sent, because once
//! the framing of a request is in doubt, nothing after it can be trusted
//! (RFC 9112 §11.2, request smuggling).

use std::fmt;

/// A request the server refuses. `Copy`, one status each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtoError {
    /// The request line is not `method SP request-target SP HTTP-version`
    /// (double space, tab, missing target, bad method token).
    BadRequestLine,
    /// The request line is longer than `max_request_line`.
    RequestLineTooLong,
    /// The HTTP version is well formed but not 1.0 or 1.1 (for example `HTTP/2.0`).
    VersionNotSupported,
    /// The HTTP version is not of the form `HTTP/DIGIT.DIGIT`.
    BadVersion,
    /// A field name has a character outside `tchar`, or whitespace before the colon.
    BadHeaderName,
    /// A field value holds NUL, a bare CR, LF or another control character.
    BadHeaderValue,
    /// A line ends in a CR that is not followed by LF (bare CR).
    BareCr,
    /// A line ends in a LF without CR. RFC 9112 §2.2 allows accepting it;
    /// we refuse it, so that an LF inside a value cannot start a new field.
    BareLf,
    /// A `Host` value with characters outside `uri-host [":" port]`.
    BadHost,
    /// A field line starts with whitespace (obs-fold, RFC 9112 §5.2).
    ObsFold,
    /// The header section is larger than `max_header_bytes`.
    HeadersTooLarge,
    /// More field lines than `max_headers`.
    TooManyHeaders,
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3 rule 3).
    ContentLengthWithTransferEncoding,
    /// Several `Content-Length` values that differ.
    ConflictingContentLength,
    /// A `Content-Length` that is not plain digits or does not fit u64.
    BadContentLength,
    /// A transfer coding other than `chunked` (we implement no other).
    UnknownTransferCoding,
    /// `chunked` is not the final transfer coding, or appears twice.
    ChunkedNotLast,
    /// `Transfer-Encoding` in an HTTP/1.0 request (RFC 9112 §6.1).
    TransferEncodingInHttp10,
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    MissingHost,
    /// More than one `Host` field line.
    DuplicateHost,
    /// An `Expect` value other than `100-continue`.
    UnsupportedExpectation,
    /// The body is larger than `max_body_size`.
    BodyTooLarge,
    /// A chunk size that is not hexadecimal digits.
    BadChunkSize,
    /// A chunk size that does not fit u64.
    ChunkSizeOverflow,
    /// A chunk-size line (with its extensions) not ended by CRLF, or malformed extensions.
    BadChunkLine,
    /// Chunk extensions longer than `max_chunk_ext`.
    ChunkExtensionsTooLong,
    /// Chunk data not followed by CRLF.
    ChunkDataNotTerminated,
    /// A malformed trailer field line.
    BadTrailer,
    /// The trailer section is larger than `max_trailer_bytes`.
    TrailersTooLarge,
    /// The head did not arrive within `request_timeout`.
    HeadTimeout,
    /// No body bytes arrived within `body_timeout`.
    BodyTimeout,
}

impl ProtoError {
    /// The status code of the response this error gets.
    pub const fn status(self) -> u16 {
        use ProtoError::*;
        match self {
            RequestLineTooLong => 414,
            VersionNotSupported => 505,
            HeadersTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            UnknownTransferCoding => 501,
            UnsupportedExpectation => 417,
            BodyTooLarge => 413,
            HeadTimeout | BodyTimeout => 408,
            BadRequestLine
            | BadVersion
            | BadHeaderName
            | BadHeaderValue
            | BareCr
            | BareLf
            | BadHost
            | ObsFold
            | ContentLengthWithTransferEncoding
            | ConflictingContentLength
            | BadContentLength
            | ChunkedNotLast
            | TransferEncodingInHttp10
            | MissingHost
            | DuplicateHost
            | BadChunkSize
            | ChunkSizeOverflow
            | BadChunkLine
            | ChunkExtensionsTooLong
            | ChunkDataNotTerminated
            | BadTrailer => 400,
        }
    }

    /// Whether the connection must close after the error response. Always
    /// true: an error means the framing of what follows is in doubt.
    pub const fn closes(self) -> bool {
        true
    }

    /// A short, fixed explanation sent as the error response's body.
    pub const fn message(self) -> &'static str {
        use ProtoError::*;
        match self {
            BadRequestLine => "malformed request line",
            RequestLineTooLong => "request line too long",
            VersionNotSupported => "HTTP version not supported",
            BadVersion => "malformed HTTP version",
            BadHeaderName => "invalid header field name",
            BadHeaderValue => "invalid header field value",
            BareCr => "bare CR in request head",
            BareLf => "bare LF in request head",
            BadHost => "invalid Host header",
            ObsFold => "obsolete line folding is not accepted",
            HeadersTooLarge => "request header fields too large",
            TooManyHeaders => "too many header fields",
            ContentLengthWithTransferEncoding => "both Content-Length and Transfer-Encoding",
            ConflictingContentLength => "conflicting Content-Length values",
            BadContentLength => "invalid Content-Length",
            UnknownTransferCoding => "transfer coding not implemented",
            ChunkedNotLast => "chunked must be the final transfer coding, once",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            MissingHost => "missing Host header",
            DuplicateHost => "more than one Host header",
            UnsupportedExpectation => "unsupported expectation",
            BodyTooLarge => "request body too large",
            BadChunkSize => "invalid chunk size",
            ChunkSizeOverflow => "chunk size too large",
            BadChunkLine => "malformed chunk-size line",
            ChunkExtensionsTooLong => "chunk extensions too long",
            ChunkDataNotTerminated => "chunk data not followed by CRLF",
            BadTrailer => "malformed trailer field",
            TrailersTooLarge => "trailer section too large",
            HeadTimeout => "request head timed out",
            BodyTimeout => "request body timed out",
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), self.status())
    }
}

impl std::error::Error for ProtoError {}
