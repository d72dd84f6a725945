//! Stoat: an HTTP/1.1 server engine.
//!
//! The crate is layered (see `docs/ARCHITECTURE.md`):
//!
//! - [`proto`]: the sans-IO protocol core. Bytes and `now` in; requests, body
//!   bytes, response bytes and deadlines out. No sockets, no threads, no clock.
//!
//! Later layers (`sys`, `runtime`, `app`, `config`) build the server on top.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod proto;
pub mod runtime;
mod simd;
pub mod sys;
