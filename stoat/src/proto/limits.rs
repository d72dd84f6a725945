//! Limits and timeouts of the protocol core. Every limit is a field here with
//! a documented default; the config layer fills them from TOML.

use std::time::Duration;

/// Per-connection protocol limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line in bytes, CRLF included (else 414).
    pub max_request_line: usize,
    /// Largest header section in bytes, after the request line, final CRLF
    /// included (else 431).
    pub max_header_bytes: usize,
    /// Most header field lines (else 431). At most [`Limits::MAX_HEADERS_CAP`].
    pub max_headers: usize,
    /// Largest request body in bytes (else 413; decided from
    /// `Content-Length` before the body is read, or as chunks arrive).
    pub max_body_size: u64,
    /// Longest chunk-extension text on one chunk-size line (else 400).
    pub max_chunk_ext: usize,
    /// Largest trailer section of a chunked body (else 431).
    pub max_trailer_bytes: usize,
    /// How long a keep-alive connection may sit idle between requests.
    pub keepalive_timeout: Duration,
    /// How long a whole request head may take from its first byte (408).
    pub request_timeout: Duration,
    /// Longest gap between two reads of body bytes (408).
    pub body_timeout: Duration,
    /// Longest time a pending response may make no write progress.
    pub write_timeout: Duration,
}

impl Limits {
    /// Hard upper bound on `max_headers` (the parser's header array is sized by it).
    pub const MAX_HEADERS_CAP: usize = 256;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8 * 1024,
            max_header_bytes: 8 * 1024,
            max_headers: 100,
            max_body_size: 1024 * 1024,
            max_chunk_ext: 1024,
            max_trailer_bytes: 8 * 1024,
            keepalive_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}
