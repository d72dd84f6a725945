//! [`Request`]: what a handler sees of a request.
//!
//! Contract: a `Request` borrows everything from the connection's buffer
//! (through [`RawRequest`]) and from the router (parameter names); it owns
//! nothing and building one allocates nothing. Route parameters are
//! [`Span`]s of the path, at most [`MAX_PARAMS`](super::MAX_PARAMS) of them,
//! borrowed from the router's captures (not copied). Accessors return raw text: the path, query and parameters
//! are not percent-decoded, except [`Request::query`], [`Request::query_iter`]
//! and [`Request::param_decoded`] (see `query.rs`). Text accessors never panic: bytes that are not
//! UTF-8 give `None` (or `""` for [`Request::path`], see there).

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;
use std::str;

use super::query::{self, QueryPairs};
use crate::proto::forwarded::{self, Field};
use crate::proto::Span;
use crate::proto::{Method, Version};
use crate::runtime::RawRequest;

/// A complete request, as handlers see it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    raw: RawRequest<'a>,
    /// The path part of the target (no query), raw.
    path: &'a [u8],
    /// Names of the matched route's parameters, in pattern order.
    names: &'a [Box<str>],
    /// Their values, as spans of `path`.
    captures: &'a [Span],
}

impl<'a> Request<'a> {
    /// A request with no route parameters. The router builds requests
    /// itself; this is for calling a handler directly (in tests, say).
    #[inline]
    pub fn new(raw: RawRequest<'a>) -> Request<'a> {
        Request::routed(raw, path_of(&raw), &[], &[])
    }

    /// A routed request: `path` is [`path_of`] `raw` (or its whole target
    /// when that has no query), `names` the route's parameter names and
    /// `captures` their values.
    #[inline]
    pub(crate) fn routed(
        raw: RawRequest<'a>,
        path: &'a [u8],
        names: &'a [Box<str>],
        captures: &'a [Span],
    ) -> Request<'a> {
        debug_assert_eq!(names.len(), captures.len());
        Request {
            raw,
            path,
            names,
            captures,
        }
    }

    /// The request as the runtime gave it: head, buffer and body.
    #[inline]
    pub fn raw(&self) -> &RawRequest<'a> {
        &self.raw
    }

    /// Scratch memory for this request (`bumpalo`): allocate freely while
    /// handling it; it is all reset when the handler returns (after the
    /// response, or after handing the request off with a `Responder`), so
    /// nothing allocated here can be kept. The first call lends the
    /// network thread's arena to the request; requests that never call it
    /// cost nothing. A pipeline job has an arena of its own, freed with
    /// the job.
    ///
    /// ```
    /// # use stoat::app::Request;
    /// fn handler(req: &Request) -> String {
    ///     let path: &mut str = req.arena().alloc_str(req.path());
    ///     path.make_ascii_uppercase();
    ///     format!("{path} has {} bytes", path.len())
    /// }
    /// ```
    #[inline]
    pub fn arena(&self) -> &'a bumpalo::Bump {
        self.raw.arena.get()
    }

    /// The body's length when the head declares it: `Some(n)` for
    /// `Content-Length: n` (or no body, `Some(0)`), `None` for a chunked
    /// body. For a streamed route, this is the length still to come.
    pub fn content_length(&self) -> Option<u64> {
        match self.raw.head.body {
            crate::proto::BodyKind::Empty => Some(0),
            crate::proto::BodyKind::Length(n) => Some(n),
            crate::proto::BodyKind::Chunked => None,
        }
    }

    /// The method. Methods without a [`Method`] variant are
    /// [`Method::Other`]; [`Request::method_str`] has their name.
    #[inline]
    pub fn method(&self) -> Method {
        self.raw.head.method
    }

    /// The method token as sent (`"GET"`, `"PROPFIND"`).
    pub fn method_str(&self) -> &'a str {
        // A method is a token (ASCII), checked by the parser.
        str::from_utf8(self.raw.head.method_span.of(self.raw.buf)).unwrap_or("")
    }

    /// The HTTP version.
    #[inline]
    pub fn version(&self) -> Version {
        self.raw.head.version
    }

    /// The path, without the query, as sent (not percent-decoded): `/a/b`
    /// for a target `/a/b?x=1` or `http://host/a/b?x=1`.
    ///
    /// A path that is not UTF-8 (the parser lets bytes above 0x7F through,
    /// although RFC 3986 asks clients to percent-encode them) reads as
    /// `""` here rather than a truncated path that could name another
    /// resource; [`Request::path_bytes`] has it whole.
    pub fn path(&self) -> &'a str {
        str::from_utf8(self.path).unwrap_or("")
    }

    /// The path as bytes (see [`Request::path`]).
    #[inline]
    pub fn path_bytes(&self) -> &'a [u8] {
        self.path
    }

    /// The value of the route parameter `name` (`id` in `/users/{id}`), as
    /// sent (not percent-decoded). `None` if the route has no such
    /// parameter or its value is not UTF-8.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        self.param_bytes(name)
            .and_then(|value| str::from_utf8(value).ok())
    }

    /// The raw bytes of the route parameter `name`.
    pub fn param_bytes(&self, name: &str) -> Option<&'a [u8]> {
        let i = self.names.iter().position(|n| **n == *name)?;
        self.captures.get(i).map(|span| span.of(self.path))
    }

    /// The route parameters as (name, value) pairs, in pattern order;
    /// values that are not UTF-8 are skipped.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        let path = self.path;
        let names: &'a [Box<str>] = self.names;
        names
            .iter()
            .zip(self.captures)
            .filter_map(move |(name, span)| Some((&**name, str::from_utf8(span.of(path)).ok()?)))
    }

    /// The query: what follows the first `?` of the target (not
    /// percent-decoded). `None` if there is no `?` or it is not UTF-8.
    pub fn query_string(&self) -> Option<&'a str> {
        let query = self.raw.head.query(self.raw.buf)?;
        str::from_utf8(query).ok()
    }

    /// The value of the first query parameter named `name`, decoded as a
    /// form (`+` is a space, `%XX` a byte; see `query.rs`). Borrowed from
    /// the request when nothing in it was encoded. `None` if absent (or
    /// not UTF-8 once decoded).
    pub fn query(&self, name: &str) -> Option<Cow<'a, str>> {
        query::query_value(self.raw.head.query(self.raw.buf)?, name)
    }

    /// The query's pairs, decoded as [`Request::query`] does, in order.
    pub fn query_iter(&self) -> QueryPairs<'a> {
        QueryPairs::new(self.raw.head.query(self.raw.buf).unwrap_or(b""))
    }

    /// The value of the route parameter `name`, percent-decoded (`+` stays
    /// `+` in a path). Borrowed when nothing was encoded. A decoded value
    /// may hold `/` or `..`: check it before using it as a file name.
    pub fn param_decoded(&self, name: &str) -> Option<Cow<'a, str>> {
        query::decode_path(self.param_bytes(name)?)
    }

    /// The value of the first query parameter named `name`, as sent (not
    /// percent-decoded, `+` not turned into a space). A key without `=` has
    /// the value `""`.
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query_pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The query's `key=value` pairs split on `&`, in order, raw; empty
    /// pairs are skipped.
    pub fn query_pairs(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.query_string()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
    }

    /// The value of the first header field named `name` (ASCII
    /// case-insensitive), without surrounding whitespace.
    #[inline]
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.raw.head.header(self.raw.buf, name)
    }

    /// [`Request::header`] as text; `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header(name)
            .and_then(|value| str::from_utf8(value).ok())
    }

    /// Every header field as (name, value), in the order received.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a [u8])> {
        let buf = self.raw.buf;
        self.raw.head.headers.iter().map(move |h| {
            // Field names are tokens (ASCII), checked by the parser.
            let name = str::from_utf8(h.name.of(buf)).unwrap_or("");
            (name, h.value.of(buf))
        })
    }

    /// The `Content-Type` value, whole (parameters included).
    pub fn content_type(&self) -> Option<&'a str> {
        self.header_str("content-type")
    }

    /// The `Host` value.
    pub fn host(&self) -> Option<&'a str> {
        let span = self.raw.head.host?;
        str::from_utf8(span.of(self.raw.buf)).ok()
    }

    /// The body (chunked framing already removed).
    #[inline]
    pub fn body(&self) -> &'a [u8] {
        self.raw.body
    }

    /// The address of the connection's other end: the client's when it
    /// connects directly, the load balancer's when there is one (see
    /// [`Request::client_addr`]). Asked of the kernel when called, so
    /// requests that do not ask cost nothing. `None` if the connection is
    /// already gone, or for a request built without one.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.raw.conn.peer_addr()
    }

    /// The client's address, as far as it can be trusted:
    /// - the address of the connection's PROXY header (read only from
    ///   `trusted_proxies`, see `[http] proxy_protocol`), else the peer;
    /// - if that is itself one of `trusted_proxies`, the forwarding fields
    ///   it wrote are read (`Forwarded`, else `X-Forwarded-For`), from the
    ///   nearest hop outwards, and the first address that is not a trusted
    ///   proxy is the client (see [`crate::proto::forwarded`]); fields that
    ///   cannot be read are ignored.
    ///
    /// Forwarding fields from anyone else are never believed: a client
    /// cannot choose its own address. A port the fields do not give is 0.
    pub fn client_addr(&self) -> Option<SocketAddr> {
        client_addr_of(&self.raw)
    }
}

/// [`Request::client_addr`] of `raw`: the one place forwarding fields are
/// read.
pub(crate) fn client_addr_of(raw: &RawRequest<'_>) -> Option<SocketAddr> {
    client_addr_given(raw, || raw.conn.peer_addr())
}

/// [`client_addr_of`] with the connection's peer from `peer` (asked only
/// when needed), for a caller that has it already (a pipeline job resolves
/// both addresses with one `getpeername`).
pub(crate) fn client_addr_given(
    raw: &RawRequest<'_>,
    peer: impl FnOnce() -> Option<SocketAddr>,
) -> Option<SocketAddr> {
    if let Some(resolved) = raw.conn.resolved() {
        return resolved.client;
    }
    let nearest = match raw.conn.proxied() {
        Some(client) => client,
        None => peer()?,
    };
    if !raw.conn.is_trusted(nearest.ip()) {
        return Some(nearest);
    }
    let values = |name: &'static str| {
        raw.head
            .headers
            .iter()
            .filter(move |h| h.name.of(raw.buf).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| h.value.of(raw.buf))
    };
    let trusted = |ip| raw.conn.is_trusted(ip);
    let forwarded = if values("forwarded").next().is_some() {
        forwarded::client_addr(Field::Forwarded, values("forwarded"), trusted)
    } else if values("x-forwarded-for").next().is_some() {
        forwarded::client_addr(Field::XForwardedFor, values("x-forwarded-for"), trusted)
    } else {
        None
    };
    Some(forwarded.unwrap_or(nearest))
}

/// The path part of a request's target: for the usual origin form
/// (`/a/b?q`) the part before `?`; for the absolute form
/// ([`RequestHead::path`](crate::proto::RequestHead::path)) the part after
/// the authority.
#[inline]
pub(crate) fn path_of<'a>(raw: &RawRequest<'a>) -> &'a [u8] {
    let target = raw.head.target.of(raw.buf);
    if target.first() != Some(&b'/') {
        return raw.head.path(raw.buf);
    }
    // Targets are short: a plain loop beats memchr's setup below 32 bytes.
    let query = if target.len() < 32 {
        target.iter().position(|&b| b == b'?')
    } else {
        memchr::memchr(b'?', target)
    };
    match query {
        Some(q) => &target[..q],
        None => target,
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method_str())
            .field("path", &String::from_utf8_lossy(self.path))
            .field("query", &self.query_string())
            .field("params", &self.params().collect::<Vec<_>>())
            .field("headers", &self.raw.head.headers.len())
            .field("body", &self.raw.body.len())
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::path_tree::{Captures, PathTree, Pattern};
    use crate::proto::{HeadParser, Limits, RequestHead};
    use crate::runtime::ArenaSlot;

    /// Parses a request head (the whole of `bytes`).
    pub(crate) fn head(bytes: &[u8]) -> RequestHead {
        let mut head = RequestHead::default();
        let done = HeadParser::new()
            .parse(bytes, &Limits::default(), &mut head)
            .expect("valid head");
        assert!(done, "complete head");
        head
    }

    fn get(target: &str) -> Vec<u8> {
        let mut buf = format!(
            "GET {target} HTTP/1.1\r\nHost: example.com\r\nContent-Type: text/plain\r\n\
             X-Many: 1\r\nx-many: 2\r\nX-Bin: "
        )
        .into_bytes();
        buf.extend_from_slice(b"\xffok\r\n\r\n");
        buf
    }

    #[test]
    fn accessors() {
        let buf = get("/users/42/posts/seven?a=1&b=&c&a=2&&d=x%20y");
        let head = head(&buf);
        let raw = RawRequest {
            head: &head,
            buf: &buf,
            body: b"payload",
            arena: &ArenaSlot::new(),
            conn: Default::default(),
        };
        let mut tree = PathTree::default();
        let pattern = Pattern::parse("/users/{id}/posts/{post}").unwrap();
        tree.insert(&pattern);
        let path = path_of(&raw);
        let mut caps = Captures::default();
        assert_eq!(tree.find(path, &mut caps), Some(0));
        let req = Request::routed(raw, path, pattern.names(), caps.spans());

        assert_eq!(req.method(), Method::Get);
        assert_eq!(req.method_str(), "GET");
        assert_eq!(req.version(), Version::Http11);
        assert_eq!(req.path(), "/users/42/posts/seven");
        assert_eq!(req.param("id"), Some("42"));
        assert_eq!(req.param("post"), Some("seven"));
        assert_eq!(req.param("nope"), None);
        assert_eq!(
            req.params().collect::<Vec<_>>(),
            [("id", "42"), ("post", "seven")]
        );
        assert_eq!(req.query_string(), Some("a=1&b=&c&a=2&&d=x%20y"));
        assert_eq!(req.query("d").as_deref(), Some("x y"));
        assert_eq!(req.query("a").as_deref(), Some("1"));
        assert_eq!(req.query_iter().count(), 5);
        assert_eq!(req.param_decoded("id").as_deref(), Some("42"));
        assert_eq!(req.query_param("a"), Some("1"));
        assert_eq!(req.query_param("b"), Some(""));
        assert_eq!(req.query_param("c"), Some(""));
        assert_eq!(req.query_param("d"), Some("x%20y"));
        assert_eq!(req.query_param("e"), None);
        assert_eq!(req.query_pairs().count(), 5);
        assert_eq!(req.header("HOST"), Some(&b"example.com"[..]));
        assert_eq!(req.header_str("x-many"), Some("1"));
        assert_eq!(req.header("x-bin"), Some(&b"\xffok"[..]));
        assert_eq!(req.header_str("x-bin"), None);
        assert_eq!(req.header("absent"), None);
        assert_eq!(req.headers().len(), 5);
        assert_eq!(
            req.headers().nth(3),
            Some(("x-many", &b"2"[..])),
            "order and case kept"
        );
        assert_eq!(req.content_type(), Some("text/plain"));
        assert_eq!(req.host(), Some("example.com"));
        assert_eq!(req.body(), b"payload");
        let debug = format!("{req:?}");
        assert!(debug.contains("/users/42/posts/seven"), "{debug}");
    }

    #[test]
    fn no_query_and_absolute_form() {
        let buf = b"POST http://example.com/a/b?q=1 HTTP/1.0\r\n\r\n";
        let head = head(buf);
        let arena = ArenaSlot::new();
        let req = Request::new(RawRequest {
            head: &head,
            buf,
            body: b"",
            arena: &arena,
            conn: Default::default(),
        });
        assert_eq!(req.method(), Method::Post);
        assert_eq!(req.version(), Version::Http10);
        assert_eq!(req.path(), "/a/b");
        assert_eq!(req.query_param("q"), Some("1"));
        assert_eq!(req.param("x"), None);
        assert_eq!(req.params().count(), 0);
        assert_eq!(req.content_type(), None);
        assert_eq!(req.host(), None);

        let buf = b"PROPFIND /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let head = self::head(buf);
        let arena = ArenaSlot::new();
        let req = Request::new(RawRequest {
            head: &head,
            buf,
            body: b"",
            arena: &arena,
            conn: Default::default(),
        });
        assert_eq!(req.method(), Method::Other);
        assert_eq!(req.method_str(), "PROPFIND");
        assert_eq!(req.query_string(), None);
        assert_eq!(req.query("x"), None);
        assert_eq!(req.query_param("x"), None);
        assert_eq!(req.query_pairs().count(), 0);
    }

    #[test]
    fn non_utf8_path_never_panics() {
        // The parser refuses such targets today; the head is parsed from
        // placeholders and the bytes changed after, so the fallbacks are
        // tested whatever the parser lets through.
        let mut buf = b"GET /cafX/Y?Z=1 HTTP/1.1\r\nHost: h\r\n\r\n".to_vec();
        let head = head(&buf);
        for (from, to) in [(b'X', 0xc3), (b'Y', 0xff), (b'Z', 0xfe)] {
            let at = buf.iter().position(|&b| b == from).unwrap();
            buf[at] = to;
        }
        let raw = RawRequest {
            head: &head,
            buf: &buf,
            body: b"",
            arena: &ArenaSlot::new(),
            conn: Default::default(),
        };
        let req = Request::new(raw);
        assert_eq!(req.path(), "");
        assert_eq!(req.path_bytes(), b"/caf\xc3/\xff");
        assert_eq!(req.query_string(), None);
        assert_eq!(req.query_param("\u{fe}"), None);
        let mut tree = PathTree::default();
        let pattern = Pattern::parse("/{a}/{b}").unwrap();
        tree.insert(&pattern);
        let mut caps = Captures::default();
        assert_eq!(tree.find(req.path_bytes(), &mut caps), Some(0));
        let req = Request::routed(raw, req.path_bytes(), pattern.names(), caps.spans());
        assert_eq!(req.param("a"), None);
        assert_eq!(req.param_bytes("b"), Some(&b"\xff"[..]));
        assert_eq!(req.params().count(), 0);
        let _ = format!("{req:?}");
    }
}
