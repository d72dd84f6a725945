//! The sans-IO HTTP/1.1 protocol core.
//!
//! Contract: every function here takes bytes (and, where time matters, a
//! caller-supplied `now`) and returns indices into those bytes, events, bytes
//! written into a caller's buffer, and deadlines. Nothing here opens a socket,
//! reads a clock or spawns a thread. No `unsafe`: the module forbids it
//! (`#![forbid(unsafe_code)]`, which no inner `allow` can lift).
//!
//! - [`head`]: incremental request-head parsing (hand-written, differential-
//!   fuzzed against httparse) with the RFC 9112 framing rules in one pass.
//! - [`body`]: body framing (none, `Content-Length`, `chunked`) as a streaming
//!   decoder.
//! - [`encode`]: response encoding into a caller's buffer; [`date`] caches the
//!   `Date` header value.
//! - [`conn`]: one connection's state machine: keep-alive, pipelining order,
//!   `Expect: 100-continue`, half-close, errors and deadlines.
//! - [`error`]: every protocol error, one status code each.
//! - [`limits`]: the configurable limits and timeouts, with defaults.
//! - [`ws_handshake`]: the WebSocket opening handshake (RFC 6455 §4).
//! - [`ws_frame`]: WebSocket frames: a streaming decoder for client frames
//!   (masking, fragmentation, control frames, close codes, UTF-8, size
//!   limit) and the server frame encoder.
#![forbid(unsafe_code)]

pub mod body;
pub mod conn;
pub mod date;
pub mod encode;
pub mod error;
pub mod head;
pub mod limits;
pub mod ws_frame;
pub mod ws_handshake;

pub use body::{BodyDecoder, BodyKind, Decoded};
pub(crate) use conn::Event;
pub use conn::{Conn, ConnEvent};
pub use date::DateCache;
pub use encode::{Header, ResponseBody};
pub use error::ProtoError;
pub use head::{HeadParser, Method, RequestHead, Span, Version};
pub use limits::Limits;
