//! Response compression: gzip and brotli, negotiated per request from
//! `Accept-Encoding`, as a layer around handlers.
//!
//! Contract:
//! - Off unless asked for: wrap a handler with [`Compression::layer`] (one
//!   route), or wrap every handler of a server the same way.
//! - [`negotiate`] reads `Accept-Encoding` (RFC 9110 §12.5.3) with
//!   q-values: the offered coding with the highest q > 0 wins, ties going to
//!   the server's order (by default gzip, then brotli: see
//!   [`Compression::new`]); `*` stands for every coding not
//!   named; `identity` is acceptable unless refused by `identity;q=0` (or
//!   `*;q=0` without an `identity` entry), and wins only when named with a
//!   q above every offered coding's. No header: identity (HttpArena's
//!   contract: no `Content-Encoding` then). An empty value: identity only.
//!   Nothing acceptable at all: identity anyway (RFC 9110 §12.1: a server
//!   may disregard proactive negotiation rather than answer 406).
//! - A response is compressed when its content type is compressible (text,
//!   JSON, JavaScript, XML, SVG, WASM; [`Compression::types`] replaces the
//!   test), its body is at least [`Compression::min_size`] bytes (unless the
//!   client refused identity), its status is not 204, 206 or 304, it has no
//!   `Content-Encoding` or `Content-Range` yet, and no `Cache-Control:
//!   no-transform` (RFC 9111 §5.2.2.6). Every response whose form depends
//!   on `Accept-Encoding` gets `Vary: Accept-Encoding` (RFC 9110 §12.5.5),
//!   whether or not this one was compressed.
//! - [`Encoder`] compresses a body that comes in pieces (chunked responses,
//!   server-sent events): each piece can be flushed so that the client can
//!   decode everything sent so far (gzip sync flush, brotli flush).
//!
//! Not stalling other connections: an inline handler runs on the network
//! thread, and every connection of that thread waits while it runs. So the
//! inline layer compresses at most [`Compression::inline_limit`] bytes
//! (default 256 KiB: well under a millisecond at the default levels, see
//! the figures in docs/ARCHITECTURE.md); a larger body goes out as it is.
//! To compress large bodies too, register the layered handler where it may
//! take its time: on a pipeline (the pipeline's threads run handler and
//! compression), or as a suspended route ([`Compressed::respond`]): it
//! answers small bodies at once and hands large ones to a [`Workers`] pool,
//! whose bounded queue sends the body uncompressed when full instead of
//! waiting.
//!
//! Library choice: `flate2` with the `zlib-rs` backend (a Rust port of
//! zlib-ng's deflate: no C toolchain, and at level 1 faster than miniz_oxide,
//! measured in docs/ARCHITECTURE.md) and the `brotli` crate (Dropbox's Rust
//! port of Google's encoder; the only maintained pure-Rust brotli encoder).
//! The gzip path reuses one deflate state per thread and level (`reset`
//! instead of a fresh ~300 KB allocation per response) and writes the gzip
//! header and trailer itself (RFC 1952 §2.3, ten bytes and eight).

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use flate2::{Compress, Crc, FlushCompress, Status};

use crate::app::{BodyWriter, Handler, Request, Responder, Response};
use crate::runtime::link::StreamCoder;

/// A content coding this module produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Coding {
    /// `br` (RFC 7932).
    Brotli,
    /// `gzip` (RFC 1952).
    Gzip,
}

impl Coding {
    /// Its `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    /// The file name suffix of a file precompressed with it.
    pub fn suffix(self) -> &'static str {
        match self {
            Coding::Brotli => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// What [`negotiate`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Send the body as it is.
    Identity,
    /// Send it in this coding.
    Coding(Coding),
    /// The client accepts none of the offered codings and refused
    /// identity. Callers may answer 406 or (as [`Compression`] does) send
    /// identity anyway.
    Nothing,
}

/// Chooses a coding among `offered` (in the server's order of preference)
/// for a request whose `Accept-Encoding` value is `accept` (`None`: no such
/// field). See the module doc for the rules.
pub fn negotiate(accept: Option<&[u8]>, offered: &[Coding]) -> Choice {
    let Some(accept) = accept else {
        return Choice::Identity;
    };
    // q-values in thousandths; None: not named.
    let mut star: Option<u16> = None;
    let mut identity: Option<u16> = None;
    let mut named = [None::<u16>; 2];
    for element in accept.split(|&b| b == b',') {
        let Some((coding, q)) = parse_element(element) else {
            continue;
        };
        let slot = if coding.eq_ignore_ascii_case(b"*") {
            &mut star
        } else if coding.eq_ignore_ascii_case(b"identity") {
            &mut identity
        } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            // RFC 9110 §8.4.1.3: x-gzip is gzip.
            &mut named[index(Coding::Gzip)]
        } else if coding.eq_ignore_ascii_case(b"br") {
            &mut named[index(Coding::Brotli)]
        } else {
            continue;
        };
        // A coding named twice: the first entry counts.
        slot.get_or_insert(q);
    }
    let mut best: Option<(Coding, u16)> = None;
    for &coding in offered {
        let q = named[index(coding)].or(star).unwrap_or(0);
        if q > 0 && best.map_or(true, |(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    // Identity: acceptable unless refused; preferred only when named with
    // a higher q than the best coding.
    let identity_q = identity.or(star.filter(|&q| q == 0));
    match (best, identity_q) {
        (Some((_, q)), Some(iq)) if iq > q => Choice::Identity,
        (Some((coding, _)), _) => Choice::Coding(coding),
        (None, Some(0)) => Choice::Nothing,
        (None, _) => Choice::Identity,
    }
}

fn index(coding: Coding) -> usize {
    match coding {
        Coding::Brotli => 0,
        Coding::Gzip => 1,
    }
}

/// One element of `Accept-Encoding`: `coding [ OWS ";" OWS "q=" qvalue ]`
/// (RFC 9110 §12.5.3, §12.4.2). Its coding and q in thousandths; `None`
/// for an empty or malformed element (ignored, as an unknown coding is).
fn parse_element(element: &[u8]) -> Option<(&[u8], u16)> {
    let mut parts = element.split(|&b| b == b';');
    let coding = trim(parts.next()?);
    if coding.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        let param = trim(param);
        let eq = param.iter().position(|&b| b == b'=')?;
        let (name, value) = (trim(&param[..eq]), trim(&param[eq + 1..]));
        if name.eq_ignore_ascii_case(b"q") {
            q = parse_qvalue(value)?;
        }
    }
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn parse_qvalue(value: &[u8]) -> Option<u16> {
    let (int, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if frac.len() > 3 || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + frac.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match int {
        b"0" => Some(thousandths),
        b"1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether responses of this content type are worth compressing: text,
/// JSON, JavaScript, XML, SVG and WASM; not images, audio, video, fonts
/// in compressed formats, or archives.
pub fn compressible(content_type: &[u8]) -> bool {
    let essence = trim(content_type.split(|&b| b == b';').next().unwrap_or(b""));
    let Some(slash) = essence.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (kind, sub) = (&essence[..slash], &essence[slash + 1..]);
    if kind.eq_ignore_ascii_case(b"text") {
        // An event stream is compressed by the SSE path (flushed per
        // event), never as a whole body.
        return !sub.eq_ignore_ascii_case(b"event-stream");
    }
    let sub_lower: Cow<'_, [u8]> = if sub.iter().any(u8::is_ascii_uppercase) {
        Cow::Owned(sub.to_ascii_lowercase())
    } else {
        Cow::Borrowed(sub)
    };
    let sub = &*sub_lower;
    if kind.eq_ignore_ascii_case(b"application") {
        return matches!(
            sub,
            b"json"
                | b"javascript"
                | b"x-javascript"
                | b"ecmascript"
                | b"xml"
                | b"wasm"
                | b"manifest+json"
                | b"ld+json"
                | b"x-ndjson"
                | b"graphql-response+json"
        ) || sub.ends_with(b"+json")
            || sub.ends_with(b"+xml");
    }
    if kind.eq_ignore_ascii_case(b"image") {
        return matches!(sub, b"svg+xml" | b"x-icon" | b"vnd.microsoft.icon" | b"bmp");
    }
    if kind.eq_ignore_ascii_case(b"font") {
        return matches!(sub, b"ttf" | b"otf");
    }
    false
}

/// Compression settings, and the layer that applies them. See the module
/// doc.
///
/// ```
/// use stoat::app::{Compression, Response};
///
/// let gzip_and_br = Compression::new().gzip_level(4).brotli_level(3).min_size(512);
/// let handler = gzip_and_br.layer(|_: &stoat::app::Request| Response::json_bytes("[]"));
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct Compression {
    /// Offered codings, in order of preference.
    offered: Vec<Coding>,
    gzip_level: u32,
    brotli_level: u32,
    min_size: usize,
    inline_limit: usize,
    types: Arc<TypeTest>,
    workers: Option<Workers>,
}

/// The test of which content types are compressed.
type TypeTest = dyn Fn(&[u8]) -> bool + Send + Sync;

/// Default gzip level: 1, the cheapest (`examples/compress_levels.rs` on
/// HttpArena's 50-item json answer: level 1 at 243 MB per CPU second to
/// 27% of the size, level 6 at 94 MB/s to 18%).
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
/// Default brotli quality: 3 (same measure: quality 1 at 100 MB/s only
/// reaches 26%, quality 3 at 63 MB/s reaches 17%; 5 and above cost over
/// 20 times more).
pub const DEFAULT_BROTLI_LEVEL: u32 = 3;
/// Bodies below this many bytes are sent as they are by default: the
/// codings' headers and the CPU would cost more than they save.
pub const DEFAULT_MIN_SIZE: usize = 256;
/// The most an inline layer compresses per response, by default.
pub const DEFAULT_INLINE_LIMIT: usize = 256 * 1024;

impl Default for Compression {
    fn default() -> Compression {
        Compression::new()
    }
}

impl fmt::Debug for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compression")
            .field("offered", &self.offered)
            .field("gzip_level", &self.gzip_level)
            .field("brotli_level", &self.brotli_level)
            .field("min_size", &self.min_size)
            .field("inline_limit", &self.inline_limit)
            .field("workers", &self.workers.is_some())
            .finish()
    }
}

impl Compression {
    /// gzip then brotli (for equal q-values gzip wins: at the default
    /// levels it costs less than half the CPU of brotli for a size within
    /// a quarter), at the default levels and sizes.
    pub fn new() -> Compression {
        Compression {
            offered: vec![Coding::Gzip, Coding::Brotli],
            gzip_level: DEFAULT_GZIP_LEVEL,
            brotli_level: DEFAULT_BROTLI_LEVEL,
            min_size: DEFAULT_MIN_SIZE,
            inline_limit: DEFAULT_INLINE_LIMIT,
            types: Arc::new(compressible),
            workers: None,
        }
    }

    /// The server-wide compression of `[http.compression]` (`None` when
    /// not `enabled`): its codings, levels and sizes, the default content
    /// types. [`Server::new`](super::Server::new) applies it; a validated
    /// table names only `gzip` and `br`.
    pub fn from_config(config: &crate::config::CompressionConfig) -> Option<Compression> {
        if !config.enabled {
            return None;
        }
        let codings: Vec<Coding> = config
            .codings
            .iter()
            .filter_map(|c| match c.as_str() {
                "gzip" => Some(Coding::Gzip),
                "br" => Some(Coding::Brotli),
                _ => None,
            })
            .collect();
        Some(
            Compression::new()
                .codings(&codings)
                .gzip_level(config.gzip_level)
                .brotli_level(config.brotli_level)
                .min_size(config.min_size)
                .inline_limit(config.inline_limit),
        )
    }

    /// The codings offered, in order of preference (ties in the client's
    /// q-values go to the first). Empty: compression off.
    pub fn codings(mut self, offered: &[Coding]) -> Compression {
        self.offered = offered.to_vec();
        self
    }

    /// The gzip level, 0 (stored) to 9 (smallest); clamped.
    pub fn gzip_level(mut self, level: u32) -> Compression {
        self.gzip_level = level.min(9);
        self
    }

    /// The brotli quality, 0 to 11 (smallest); clamped.
    pub fn brotli_level(mut self, level: u32) -> Compression {
        self.brotli_level = level.min(11);
        self
    }

    /// Bodies shorter than this are sent as they are (unless the client
    /// refused identity).
    pub fn min_size(mut self, bytes: usize) -> Compression {
        self.min_size = bytes;
        self
    }

    /// The largest body compressed on the thread that runs the handler
    /// (see the module doc); larger ones go to the [`Workers`] when the
    /// layer runs as a suspended route with workers, else as they are.
    pub fn inline_limit(mut self, bytes: usize) -> Compression {
        self.inline_limit = bytes;
        self
    }

    /// Replaces the test of which content types are compressed (given the
    /// whole `Content-Type` value); the default is [`compressible`].
    pub fn types(mut self, test: impl Fn(&[u8]) -> bool + Send + Sync + 'static) -> Compression {
        self.types = Arc::new(test);
        self
    }

    /// Bodies above [`Compression::inline_limit`] of a suspended layer are
    /// compressed by `workers`.
    pub fn workers(mut self, workers: Workers) -> Compression {
        self.workers = Some(workers);
        self
    }

    /// Wraps `handler`: its responses are compressed as negotiated.
    pub fn layer<H: Handler>(self, handler: H) -> Compressed<H> {
        Compressed {
            compression: self,
            handler,
        }
    }

    /// What `res`, the answer to `req`, should be sent as: the coding, and
    /// whether it needs `Vary`. `None`: leave it alone (not compressible).
    fn plan(&self, req: &Request<'_>, res: &Response) -> Option<Choice> {
        if self.offered.is_empty()
            || matches!(res.status(), 204 | 206 | 304)
            || res.body_bytes().is_empty()
            || res.header_value("content-encoding").is_some()
            || res.header_value("content-range").is_some()
            || res
                .header_value("cache-control")
                .is_some_and(|v| contains_token(v, b"no-transform"))
            || !res
                .header_value("content-type")
                .is_some_and(|t| (self.types)(t))
        {
            return None;
        }
        let choice = negotiate(req.header("accept-encoding"), &self.offered);
        let identity_refused = choice == Choice::Nothing
            || matches!(choice, Choice::Coding(_)) && identity_refused(req);
        if res.body_bytes().len() < self.min_size && !identity_refused {
            // Small: always identity, whatever the request said, so the
            // answer does not vary.
            return None;
        }
        Some(choice)
    }

    /// Compresses `res` (the answer to `req`) as negotiated, on this
    /// thread, whatever its size.
    pub fn apply(&self, req: &Request<'_>, res: Response) -> Response {
        match self.plan(req, &res) {
            None => res,
            Some(Choice::Coding(coding)) => self.encode_response(coding, res),
            Some(_) => vary(res),
        }
    }

    /// As [`Compression::apply`] for a response made on the network
    /// thread: a body over [`Compression::inline_limit`] is sent as it is
    /// (see the module doc).
    pub(crate) fn apply_inline(&self, req: &Request<'_>, res: Response) -> Response {
        if res.body_bytes().len() > self.inline_limit {
            // Too long to compress on this thread: sent as it is. It is
            // still a representation that could vary.
            return match self.plan(req, &res) {
                None => res,
                Some(_) => vary(res),
            };
        }
        self.apply(req, res)
    }

    /// The coding of an event stream answering `req` (`None`: identity),
    /// as a coder the runtime runs over every byte of the stream (events,
    /// heartbeats, the end), flushed after each (see [`Encoder`]). Events
    /// are small and the stream's size unknown: no minimum size applies.
    pub(crate) fn stream_coder(&self, req: &Request<'_>) -> Option<(Coding, Box<dyn StreamCoder>)> {
        if self.offered.is_empty() {
            return None;
        }
        match negotiate(req.header("accept-encoding"), &self.offered) {
            Choice::Coding(coding) => {
                let coder = EventCoder {
                    encoder: Some(Encoder::new(coding, self.level(coding))),
                    out: Vec::new(),
                };
                Some((coding, Box::new(coder)))
            }
            _ => None,
        }
    }

    /// Whether streams are compressed at all (then their answer varies
    /// with `Accept-Encoding`).
    pub(crate) fn is_on(&self) -> bool {
        !self.offered.is_empty()
    }

    /// `res` with its body in `coding`.
    fn encode_response(&self, coding: Coding, res: Response) -> Response {
        let body = self.encode(coding, res.body_bytes());
        vary(res.body(body).header("Content-Encoding", coding.token()))
    }

    /// `bytes` compressed with `coding` at the configured level, whole.
    pub fn encode(&self, coding: Coding, bytes: &[u8]) -> Vec<u8> {
        match coding {
            Coding::Gzip => gzip(bytes, self.gzip_level),
            Coding::Brotli => brotli(bytes, self.brotli_level),
        }
    }

    /// A streaming encoder for the coding negotiated for `req`, if any
    /// (for chunked and event-stream bodies, whose size is not known).
    pub fn encoder_for(&self, req: &Request<'_>, content_type: &[u8]) -> Option<Encoder> {
        if self.offered.is_empty()
            || !(self.types)(content_type) && content_type != b"text/event-stream"
        {
            return None;
        }
        match negotiate(req.header("accept-encoding"), &self.offered) {
            Choice::Coding(coding) => Some(Encoder::new(coding, self.level(coding))),
            _ => None,
        }
    }

    fn level(&self, coding: Coding) -> u32 {
        match coding {
            Coding::Gzip => self.gzip_level,
            Coding::Brotli => self.brotli_level,
        }
    }
}

/// `res` with `Vary: Accept-Encoding`, unless it has it (a route's layer
/// and the server's may both look at one response).
fn vary(res: Response) -> Response {
    if res
        .header_value("vary")
        .is_some_and(|v| contains_token(v, b"accept-encoding") || trim(v) == b"*")
    {
        return res;
    }
    res.header("Vary", "Accept-Encoding")
}

/// An event stream's coding for the runtime (`Link`'s coder): an
/// [`Encoder`] and its output buffer, reused for every event.
struct EventCoder {
    /// `None` once finished.
    encoder: Option<Encoder>,
    out: Vec<u8>,
}

impl StreamCoder for EventCoder {
    fn code(&mut self, input: &[u8]) -> &[u8] {
        self.out.clear();
        if let Some(e) = &mut self.encoder {
            e.write_flush(input, &mut self.out);
        }
        &self.out
    }

    fn finish(&mut self) -> &[u8] {
        self.out.clear();
        if let Some(e) = self.encoder.take() {
            e.finish(&mut self.out);
        }
        &self.out
    }
}

/// Whether `req` refused identity (`identity;q=0`, or `*;q=0` without an
/// identity entry).
fn identity_refused(req: &Request<'_>) -> bool {
    negotiate(req.header("accept-encoding"), &[]) == Choice::Nothing
}

/// Whether a comma-separated list holds `token` (ASCII case-insensitive).
fn contains_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|item| trim(item).eq_ignore_ascii_case(token))
}

/// A handler whose responses are compressed: [`Compression::layer`].
pub struct Compressed<H> {
    compression: Compression,
    handler: H,
}

impl<H> fmt::Debug for Compressed<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Compressed")
            .field(&self.compression)
            .finish()
    }
}

impl<H: Handler> Handler for Compressed<H> {
    fn call(&self, req: &Request<'_>) -> Response {
        self.compression.apply_inline(req, self.handler.call(req))
    }
}

impl<H: Handler> Compressed<H> {
    /// Answers `req` through `responder` (a suspended route): bodies up to
    /// [`Compression::inline_limit`] are compressed and sent at once,
    /// larger ones are handed to the [`Workers`] (see the module doc).
    ///
    /// ```no_run
    /// use stoat::app::{Compression, Method, Request, Response, Server, Workers};
    /// # fn main() -> std::io::Result<()> {
    /// let big = Compression::new()
    ///     .workers(Workers::start(1, 64)?)
    ///     .layer(|_: &Request<'_>| Response::text("a large report ...".repeat(100_000)));
    /// let server = Server::default().suspend(Method::Get, "/report", move |req, responder| {
    ///     big.respond(req, responder)
    /// });
    /// # let _ = server; Ok(()) }
    /// ```
    pub fn respond(&self, req: &Request<'_>, responder: Responder) {
        let res = self.handler.call(req);
        let large = res.body_bytes().len() > self.compression.inline_limit;
        match (self.compression.plan(req, &res), &self.compression.workers) {
            (Some(Choice::Coding(coding)), Some(workers)) if large => {
                let level = self.compression.level(coding);
                workers.submit(Work {
                    coding,
                    level,
                    res,
                    responder,
                });
            }
            (None, _) => {
                let _ = responder.send(res);
            }
            (Some(_), _) if large => {
                let _ = responder.send(res.header("Vary", "Accept-Encoding"));
            }
            (Some(_), _) => {
                let _ = responder.send(self.compression.apply(req, res));
            }
        }
    }
}

/// A chunked response of a streamed-body route ([`BodyWriter`]),
/// compressed as it is written: each [`CompressedBody::write`] compresses
/// and flushes, so the client can decode every piece when it arrives.
///
/// ```
/// use stoat::app::{BodyChunk, BodyWriter, CompressedBody, Compression, Request, Response};
///
/// // Echo the upload back, compressed as the client accepts.
/// fn echo(req: &Request, res: &mut BodyWriter) -> impl FnMut(BodyChunk, &mut BodyWriter) {
///     let mut body = Some(CompressedBody::start(&Compression::new(), req, res, Response::text("")));
///     move |chunk: BodyChunk, res: &mut BodyWriter| match chunk {
///         BodyChunk::Data(bytes) => {
///             if let Some(body) = body.as_mut() {
///                 body.write(res, bytes);
///             }
///         }
///         BodyChunk::End => {
///             // `finish` takes the body: the closure is FnMut, so it is
///             // taken out of its Option once.
///             if let Some(body) = body.take() {
///                 body.finish(res);
///             }
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct CompressedBody {
    /// `None`: identity (negotiated, or not a compressible type).
    encoder: Option<Encoder>,
    out: Vec<u8>,
}

impl CompressedBody {
    /// Starts the chunked response `head` (its status and fields; a body in
    /// it is written first), with `Content-Encoding` and `Vary` when
    /// `compression` and `req`'s `Accept-Encoding` choose a coding.
    pub fn start(
        compression: &Compression,
        req: &Request<'_>,
        res: &mut BodyWriter<'_, '_>,
        head: Response,
    ) -> CompressedBody {
        let content_type = head.header_value("content-type").unwrap_or(b"").to_vec();
        let encoder = compression.encoder_for(req, &content_type);
        let first = head.body_bytes().to_vec();
        let mut head = head.body(crate::runtime::Body::Empty);
        if compression.offered.is_empty() || !(compression.types)(&content_type) {
            // Not compressible: the answer does not vary.
        } else {
            head = head.header("Vary", "Accept-Encoding");
        }
        if let Some(e) = &encoder {
            head = head.header("Content-Encoding", e.coding().token());
        }
        res.start(head, None);
        let mut body = CompressedBody {
            encoder,
            out: Vec::new(),
        };
        if !first.is_empty() {
            body.write(res, &first);
        }
        body
    }

    /// Writes `bytes` (compressed and flushed). `false` as
    /// [`BodyWriter::write`].
    pub fn write(&mut self, res: &mut BodyWriter<'_, '_>, bytes: &[u8]) -> bool {
        match &mut self.encoder {
            None => res.write(bytes),
            Some(e) => {
                self.out.clear();
                e.write_flush(bytes, &mut self.out);
                self.out.is_empty() || res.write(&self.out)
            }
        }
    }

    /// Ends the compressed stream and the response.
    pub fn finish(mut self, res: &mut BodyWriter<'_, '_>) -> bool {
        if let Some(e) = self.encoder.take() {
            self.out.clear();
            e.finish(&mut self.out);
            res.write(&self.out);
        }
        res.finish()
    }
}

/// A pool of threads that compress large bodies off the network threads,
/// with a bounded queue: when it is full, a body is sent uncompressed at
/// once rather than waiting (nothing queues without bound).
#[derive(Clone)]
pub struct Workers {
    queue: SyncSender<Work>,
}

struct Work {
    coding: Coding,
    level: u32,
    res: Response,
    responder: Responder,
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Workers")
    }
}

impl Workers {
    /// Starts `threads` compression threads sharing a queue of `queue`
    /// bodies. They stop when the last [`Workers`] handle (and so every
    /// layer holding one) is dropped.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Workers> {
        let (tx, rx) = sync_channel::<Work>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("stoat-compress-{i}"))
                .spawn(move || loop {
                    // A poisoned lock only means another worker panicked
                    // while waiting; the receiver itself is intact.
                    let work = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(work) => work,
                        Err(_) => return,
                    };
                    let Work {
                        coding,
                        level,
                        res,
                        responder,
                    } = work;
                    if responder.is_closed() {
                        continue;
                    }
                    let body = match coding {
                        Coding::Gzip => gzip(res.body_bytes(), level),
                        Coding::Brotli => brotli(res.body_bytes(), level),
                    };
                    let _ = responder.send(
                        res.body(body)
                            .header("Content-Encoding", coding.token())
                            .header("Vary", "Accept-Encoding"),
                    );
                })?;
        }
        Ok(Workers { queue: tx })
    }

    fn submit(&self, work: Work) {
        match self.queue.try_send(work) {
            Ok(()) => {}
            Err(TrySendError::Full(work) | TrySendError::Disconnected(work)) => {
                let _ = work
                    .responder
                    .send(work.res.header("Vary", "Accept-Encoding"));
            }
        }
    }
}

thread_local! {
    /// One deflate state per level used on this thread, reset between
    /// bodies (index: level).
    static DEFLATE: RefCell<[Option<Box<Compress>>; 10]> = const { RefCell::new([const { None }; 10]) };
}

/// The gzip header: magic, CM=8 (deflate), no flags, no mtime, XFL 0,
/// OS 255 (unknown) (RFC 1952 §2.3).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// `bytes` as one gzip member.
pub fn gzip(bytes: &[u8], level: u32) -> Vec<u8> {
    let level = level.min(9);
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    DEFLATE.with(|cell| {
        let mut states = cell.borrow_mut();
        let state = states[level as usize]
            .get_or_insert_with(|| Box::new(Compress::new(flate2::Compression::new(level), false)));
        state.reset();
        deflate_into(state, bytes, &mut out, FlushCompress::Finish);
    });
    let mut crc = Crc::new();
    crc.update(bytes);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&crc.amount().to_le_bytes());
    out
}

/// Runs `state` over all of `input` with `flush`, appending to `out`.
fn deflate_into(state: &mut Compress, mut input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let before_in = state.total_in();
        let before_out = state.total_out();
        // `compress_vec` writes into the spare capacity only; it fails only
        // on a misuse of the stream (a bug), never on input.
        let status = state.compress_vec(input, out, flush);
        let consumed = (state.total_in() - before_in) as usize;
        input = &input[consumed..];
        let produced = state.total_out() - before_out;
        match status {
            Ok(Status::StreamEnd) => return,
            Ok(_) if input.is_empty() && !matches!(flush, FlushCompress::Finish) => {
                // A sync flush is complete when it left room unused.
                if out.capacity() > out.len() {
                    return;
                }
            }
            Ok(Status::BufError)
                if produced == 0 && consumed == 0 && out.capacity() > out.len() =>
            {
                return;
            }
            Ok(_) => {}
            Err(_) => {
                debug_assert!(false, "deflate stream misuse");
                return;
            }
        }
    }
}

/// `bytes` as a brotli stream, with a window sized to the body (a small
/// window is a small allocation).
pub fn brotli(bytes: &[u8], level: u32) -> Vec<u8> {
    let params = brotli::enc::BrotliEncoderParams {
        quality: level.min(11) as i32,
        lgwin: window_bits(bytes.len()),
        size_hint: bytes.len(),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(bytes.len() / 3 + 64);
    // Reading from a slice and writing to a Vec cannot fail.
    let _ = brotli::BrotliCompress(&mut &bytes[..], &mut out, &params);
    out
}

/// The brotli window for a body of `len` bytes: the smallest power of two
/// that holds it, within brotli's 10..=22 bits (RFC 7932 §9.1: `WBITS`).
fn window_bits(len: usize) -> i32 {
    let bits = usize::BITS - len.saturating_sub(1).leading_zeros();
    (bits as i32).clamp(10, 22)
}

/// Compresses a body that comes in pieces (see the module doc).
pub struct Encoder {
    inner: EncoderKind,
}

enum EncoderKind {
    Gzip {
        state: Box<Compress>,
        crc: Crc,
        started: bool,
    },
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let coding = match self.inner {
            EncoderKind::Gzip { .. } => Coding::Gzip,
            EncoderKind::Brotli(_) => Coding::Brotli,
        };
        f.debug_struct("Encoder").field("coding", &coding).finish()
    }
}

impl Encoder {
    /// A streaming encoder for `coding` at `level`.
    pub fn new(coding: Coding, level: u32) -> Encoder {
        let inner = match coding {
            Coding::Gzip => EncoderKind::Gzip {
                state: Box::new(Compress::new(flate2::Compression::new(level.min(9)), false)),
                crc: Crc::new(),
                started: false,
            },
            Coding::Brotli => EncoderKind::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                level.min(11),
                // The size is unknown: a 64 KiB window bounds the state.
                16,
            ))),
        };
        Encoder { inner }
    }

    /// Its coding.
    pub fn coding(&self) -> Coding {
        match self.inner {
            EncoderKind::Gzip { .. } => Coding::Gzip,
            EncoderKind::Brotli(_) => Coding::Brotli,
        }
    }

    /// Compresses `input` and flushes: everything given so far can be
    /// decoded from what was appended to `out` so far.
    pub fn write_flush(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match &mut self.inner {
            EncoderKind::Gzip {
                state,
                crc,
                started,
            } => {
                if !*started {
                    out.extend_from_slice(&GZIP_HEADER);
                    *started = true;
                }
                crc.update(input);
                deflate_into(state, input, out, FlushCompress::Sync);
            }
            EncoderKind::Brotli(writer) => {
                use std::io::Write;
                // Writing to a Vec cannot fail.
                let _ = writer.write_all(input);
                let _ = writer.flush();
                out.append(writer.get_mut());
            }
        }
    }

    /// Ends the stream, appending its last bytes to `out`.
    pub fn finish(self, out: &mut Vec<u8>) {
        match self.inner {
            EncoderKind::Gzip {
                mut state,
                crc,
                started,
            } => {
                if !started {
                    out.extend_from_slice(&GZIP_HEADER);
                }
                deflate_into(&mut state, &[], out, FlushCompress::Finish);
                out.extend_from_slice(&crc.sum().to_le_bytes());
                out.extend_from_slice(&crc.amount().to_le_bytes());
            }
            EncoderKind::Brotli(writer) => {
                // `into_inner` finishes the stream; a Vec cannot fail.
                out.extend_from_slice(&writer.into_inner());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::app::request::tests::head;
    use crate::runtime::{ArenaSlot, RawRequest};

    const BOTH: &[Coding] = &[Coding::Brotli, Coding::Gzip];
    const GZ: Choice = Choice::Coding(Coding::Gzip);
    const BR: Choice = Choice::Coding(Coding::Brotli);
    const ID: Choice = Choice::Identity;
    const NONE: Choice = Choice::Nothing;

    #[test]
    fn negotiation_table() {
        let table: &[(Option<&str>, &[Coding], Choice)] = &[
            (None, BOTH, ID),
            (Some(""), BOTH, ID),
            (Some("gzip"), BOTH, GZ),
            (Some("GZIP"), BOTH, GZ),
            (Some("x-gzip"), BOTH, GZ),
            (Some("br"), BOTH, BR),
            (Some("gzip, br"), BOTH, BR),
            (Some("gzip, deflate, br, zstd"), BOTH, BR),
            (Some("gzip, br"), &[Coding::Gzip, Coding::Brotli], GZ),
            (Some("br;q=1, gzip;q=0.8"), BOTH, BR),
            (Some("br;q=0.5, gzip;q=0.8"), BOTH, GZ),
            (Some("br;q=0.5, gzip;q=0.8"), &[Coding::Brotli], BR),
            (Some("gzip;q=0"), BOTH, ID),
            (Some("gzip;q=0, br;q=0"), BOTH, ID),
            (Some("deflate"), BOTH, ID),
            (Some("*"), BOTH, BR),
            (Some("*"), &[Coding::Gzip], GZ),
            (Some("*;q=0"), BOTH, NONE),
            (Some("*;q=0, gzip"), BOTH, GZ),
            (Some("*;q=0, identity"), BOTH, ID),
            (Some("br;q=0, *"), BOTH, GZ),
            (Some("identity;q=0"), BOTH, NONE),
            (Some("identity;q=0, gzip"), BOTH, GZ),
            (Some("identity, gzip;q=0.5"), BOTH, ID),
            (Some("identity;q=0.4, gzip;q=0.5"), BOTH, GZ),
            (Some("gzip;q=0.5, identity;q=0.5"), BOTH, GZ),
            (Some("gzip ; q=0.5 , br ; Q=0.25"), BOTH, GZ),
            (Some("gzip;q=1.000"), BOTH, GZ),
            (Some("gzip;q=0.001"), BOTH, GZ),
            (Some("gzip;q=1.001, br;q=0.1"), BOTH, BR),
            (Some("gzip;q=2"), BOTH, ID),
            (Some("gzip;q=0.0001"), BOTH, ID),
            (Some("gzip;q=abc"), BOTH, ID),
            (Some("gzip;q"), BOTH, ID),
            (Some(",,gzip,,"), BOTH, GZ),
            (Some("gzip;q=0, gzip"), BOTH, ID),
            (Some("br"), &[], ID),
            (Some("identity;q=0"), &[], NONE),
        ];
        for &(accept, offered, want) in table {
            assert_eq!(
                negotiate(accept.map(str::as_bytes), offered),
                want,
                "Accept-Encoding: {accept:?}, offered {offered:?}"
            );
        }
    }

    #[test]
    fn compressible_types() {
        for t in [
            "text/plain",
            "text/html; charset=utf-8",
            "TEXT/CSS",
            "application/json",
            "application/javascript",
            "application/problem+json",
            "application/atom+xml",
            "image/svg+xml",
            "application/wasm",
        ] {
            assert!(compressible(t.as_bytes()), "{t}");
        }
        for t in [
            "image/png",
            "image/webp",
            "font/woff2",
            "application/octet-stream",
            "application/zip",
            "text/event-stream",
            "video/mp4",
            "",
            "nonsense",
        ] {
            assert!(!compressible(t.as_bytes()), "{t}");
        }
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    fn unbrotli(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut out)
            .expect("valid brotli");
        out
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut s = Vec::new();
        let mut i = 0u64;
        while s.len() < len {
            s.extend_from_slice(
                format!("{{\"id\":{i},\"name\":\"item {}\"}},", i * 7 % 13).as_bytes(),
            );
            i += 1;
        }
        s.truncate(len);
        s
    }

    #[test]
    fn whole_bodies_round_trip() {
        for len in [0, 1, 100, 4096, 70_000, 300_000] {
            let body = sample(len);
            for level in [0, 1, 6, 9] {
                let gz = gzip(&body, level);
                assert_eq!(gunzip(&gz), body, "gzip level {level} len {len}");
                // The thread's deflate state is reused: a second body too.
                assert_eq!(gunzip(&gzip(&body, level)), body);
            }
            for level in [0, 1, 5, 11] {
                assert_eq!(
                    unbrotli(&brotli(&body, level)),
                    body,
                    "br {level} len {len}"
                );
            }
            if len >= 4096 {
                assert!(gzip(&body, 1).len() < len / 2);
                assert!(brotli(&body, 1).len() < len / 2);
            }
        }
    }

    #[test]
    fn streaming_pieces_decode_as_they_come() {
        for coding in [Coding::Gzip, Coding::Brotli] {
            let mut enc = Encoder::new(coding, 1);
            let mut out = Vec::new();
            let mut sent = Vec::new();
            for i in 0..50 {
                let piece = format!("data: event {i} {}\n\n", "x".repeat(i * 10));
                sent.extend_from_slice(piece.as_bytes());
                enc.write_flush(piece.as_bytes(), &mut out);
                // Everything sent so far decodes from the output so far.
                let partial = partial_decode(coding, &out);
                assert_eq!(partial, sent, "{coding:?} after piece {i}");
            }
            enc.finish(&mut out);
            let whole = match coding {
                Coding::Gzip => gunzip(&out),
                Coding::Brotli => unbrotli(&out),
            };
            assert_eq!(whole, sent);
        }
        let mut out = Vec::new();
        Encoder::new(Coding::Gzip, 1).finish(&mut out);
        assert_eq!(gunzip(&out), b"");
    }

    /// What a decoder gives from a stream that is not finished.
    fn partial_decode(coding: Coding, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        match coding {
            Coding::Gzip => {
                let mut d = flate2::read::GzDecoder::new(bytes);
                while let Ok(n) = d.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
            }
            Coding::Brotli => {
                let mut d = brotli::Decompressor::new(bytes, 4096);
                while let Ok(n) = d.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
            }
        }
        out
    }

    fn with_request<R>(accept: Option<&str>, f: impl FnOnce(&Request<'_>) -> R) -> R {
        let mut text = String::from("GET /x HTTP/1.1\r\nHost: h\r\n");
        if let Some(a) = accept {
            text.push_str(&format!("Accept-Encoding: {a}\r\n"));
        }
        text.push_str("\r\n");
        let buf = text.into_bytes();
        let head = head(&buf);
        let arena = ArenaSlot::new();
        let req = Request::new(RawRequest {
            head: &head,
            buf: &buf,
            body: b"",
            arena: &arena,
            conn: Default::default(),
        });
        f(&req)
    }

    fn field(res: &Response, name: &str) -> Option<String> {
        res.header_value(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    #[test]
    fn layer_rules() {
        let body: &'static [u8] = sample(2000).leak();
        let json = move || Response::json_bytes(body);
        let c = Compression::new();
        // (accept, response, coding wanted, Vary wanted)
        type Make = Box<dyn Fn() -> Response + Send + Sync>;
        let cases: Vec<(Option<&str>, Make, Option<&str>, bool)> = vec![
            (None, Box::new(json), None, true),
            (Some("gzip"), Box::new(json), Some("gzip"), true),
            (Some("gzip, br"), Box::new(json), Some("gzip"), true),
            (Some("br"), Box::new(json), Some("br"), true),
            (Some("deflate"), Box::new(json), None, true),
            (
                Some("gzip"),
                Box::new(|| Response::bytes(vec![7u8; 2000])),
                None,
                false,
            ),
            (
                Some("gzip"),
                Box::new(|| Response::text("tiny")),
                None,
                false,
            ),
            (
                Some("identity;q=0, gzip"),
                Box::new(|| Response::text("tiny")),
                Some("gzip"),
                true,
            ),
            (
                Some("gzip"),
                Box::new(move || json().with_status(206)),
                None,
                false,
            ),
            (
                Some("gzip"),
                Box::new(move || json().header("Cache-Control", "public, no-transform")),
                None,
                false,
            ),
            (Some("gzip"), Box::new(|| Response::new(204)), None, false),
        ];
        for (i, (accept, make, coding, vary)) in cases.into_iter().enumerate() {
            let original = make();
            let res = with_request(accept, |req| {
                c.clone()
                    .layer(move |_: &Request<'_>| make())
                    .call_inline(req)
            });
            assert_eq!(
                field(&res, "content-encoding").as_deref(),
                coding,
                "case {i}"
            );
            assert_eq!(field(&res, "vary").is_some(), vary, "case {i} vary");
            let decoded = match coding {
                Some("gzip") => gunzip(res.body_bytes()),
                Some("br") => unbrotli(res.body_bytes()),
                _ => res.body_bytes().to_vec(),
            };
            assert_eq!(decoded, original.body_bytes(), "case {i} body");
            assert_eq!(res.status(), original.status());
        }
    }

    #[test]
    fn encoded_responses_are_left_alone() {
        let c = Compression::new();
        let body = sample(3000);
        let res = with_request(Some("gzip"), |req| {
            c.apply(
                req,
                Response::json_bytes(body.clone()).header("Content-Encoding", "br"),
            )
        });
        assert_eq!(field(&res, "content-encoding").as_deref(), Some("br"));
        assert_eq!(field(&res, "vary"), None);
        assert_eq!(res.body_bytes(), body, "not encoded twice");
    }

    #[test]
    fn inline_limit_sends_large_bodies_as_they_are() {
        let body = sample(10_000);
        let c = Compression::new().inline_limit(5_000);
        let res = with_request(Some("gzip"), |req| {
            let b = body.clone();
            c.layer(move |_: &Request<'_>| Response::json_bytes(b.clone()))
                .call_inline(req)
        });
        assert_eq!(field(&res, "content-encoding"), None);
        assert_eq!(field(&res, "vary").as_deref(), Some("Accept-Encoding"));
        assert_eq!(res.body_bytes(), body);
    }

    impl<H: Handler> Compressed<H> {
        fn call_inline(&self, req: &Request<'_>) -> Response {
            Handler::call(self, req)
        }
    }
}
