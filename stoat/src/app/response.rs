//! [`Response`]: what a handler answers, and [`IntoResponse`], the
//! conversions that let it answer with plain values.
//!
//! Contract: a `Response` holds a status in `200..=999`, a content type, the
//! handler's other header fields (each checked by [`header::check`]: no
//! field can inject another, and the fields the encoder owns never reach
//! it), a [`Body`], and whether to close the connection after it. The
//! encoder adds `Content-Length`, `Date`, `Server` and `Connection`.
//!
//! Cost: the content type has its own slot, so the common response (one
//! content type, a static body) is built, moved and sent with no
//! allocation: `Response::text("Hello")` is a few stores. Other fields go
//! to a `Vec`, allocated only when a handler adds one.

use std::borrow::Cow;

use crate::app::header::{self, HeaderValue, InvalidHeader, Kind};
use crate::proto::encode::{Header, Preset, SMALL_BODY};
use crate::runtime::{Body, ResponseSink};

/// A common content type, and the head of a `200` with it and no other
/// field, formatted at compile time: such a response (most responses of
/// [`Response::text`] and friends) is sent by copying it whole.
#[derive(Debug)]
pub(crate) struct ContentPreset {
    value: &'static [u8],
    head: Preset,
}

macro_rules! content_types {
    ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {$(
        $(#[$doc])*
        // A `static`, not a `const`: one address, which `HeadMemo` keys on.
        static $name: ContentPreset = ContentPreset {
            value: $value.as_bytes(),
            head: Preset::new(
                concat!("HTTP/1.1 200 OK\r\nContent-Type: ", $value, "\r\n").as_bytes(),
            ),
        };
    )*};
}

content_types! {
    /// `text/plain; charset=utf-8`
    TEXT = "text/plain; charset=utf-8";
    /// `text/html; charset=utf-8`
    HTML = "text/html; charset=utf-8";
    /// `application/json` (RFC 8259 §11: no charset parameter)
    JSON = "application/json";
    /// `application/octet-stream`
    OCTETS = "application/octet-stream";
}

/// A response's content type: none, a preset (two words for the handler
/// to write), or any other value.
#[derive(Debug, Clone)]
enum ContentType {
    None,
    Preset(&'static ContentPreset),
    Value(HeaderValue),
}

impl ContentType {
    #[inline]
    fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            ContentType::None => None,
            ContentType::Preset(preset) => Some(preset.value),
            ContentType::Value(value) => Some(value.as_bytes()),
        }
    }
}

/// Header fields sent from the stack; more are collected into a `Vec`.
const STACK_HEADERS: usize = 16;

/// An HTTP response, built with chained calls:
///
/// ```
/// use stoat::app::Response;
///
/// let res = Response::text("created")
///     .with_status(201)
///     .header("Location", "/items/7")
///     .header("Cache-Control", "no-store");
/// assert_eq!(res.status(), 201);
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    close: bool,
    content_type: ContentType,
    headers: Vec<(Cow<'static, str>, HeaderValue)>,
    body: Body,
}

impl Response {
    /// A response with `status`, no header fields and an empty body.
    ///
    /// `status` must be a final status code, `200..=999` (1xx codes are
    /// interim, not answers); any other is a bug: it panics in debug builds
    /// (the router answers 500) and is sent as 500 in release builds.
    #[inline]
    pub fn new(status: u16) -> Response {
        Response {
            status: final_status(status),
            close: false,
            content_type: ContentType::None,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// `200 OK` with an empty body.
    #[inline]
    pub fn ok() -> Response {
        Response::new(200)
    }

    /// `200 OK` with a `text/plain; charset=utf-8` body.
    #[inline]
    pub fn text(body: impl Into<Body>) -> Response {
        Response::with(&TEXT, body.into())
    }

    /// `200 OK` with a `text/html; charset=utf-8` body.
    #[inline]
    pub fn html(body: impl Into<Body>) -> Response {
        Response::with(&HTML, body.into())
    }

    /// `200 OK` with an `application/json` body that is already JSON
    /// (serialize with the library of your choice, e.g.
    /// `serde_json::to_vec`).
    #[inline]
    pub fn json_bytes(body: impl Into<Body>) -> Response {
        Response::with(&JSON, body.into())
    }

    /// `200 OK` with an `application/octet-stream` body.
    #[inline]
    pub fn bytes(body: impl Into<Body>) -> Response {
        Response::with(&OCTETS, body.into())
    }

    #[inline]
    fn with(preset: &'static ContentPreset, body: Body) -> Response {
        Response {
            status: 200,
            close: false,
            content_type: ContentType::Preset(preset),
            headers: Vec::new(),
            body,
        }
    }

    /// The response with status code `status` (see [`Response::new`] for
    /// the valid range); [`Response::status`] reads it back.
    #[inline]
    pub fn with_status(mut self, status: u16) -> Response {
        self.status = final_status(status);
        self
    }

    /// Sets the status code in place; see [`Response::with_status`].
    #[inline]
    pub fn set_status(&mut self, status: u16) {
        self.status = final_status(status);
    }

    /// Adds a header field. The name is a `&'static str` or a `String`; the
    /// value a `&'static str`, `&'static [u8]`, `String`, `Vec<u8>` or an
    /// integer ([`HeaderValue`]). Static text is not copied.
    ///
    /// - `Content-Type` replaces the content type; other fields are added
    ///   after it in call order (several fields may share a name, e.g.
    ///   `Set-Cookie`).
    /// - `Content-Length`, `Transfer-Encoding`, `Date` and `Server` are
    ///   written by the server: they are dropped. So is `Connection`, but
    ///   `Connection: close` acts as [`Response::close`].
    /// - An invalid field (a name that is not a token, a value holding CR,
    ///   LF, NUL or another control character) is a bug: it panics in debug
    ///   builds (the router answers 500) and is skipped in release builds.
    ///   Use [`Response::try_header`] for names or values that come from
    ///   outside the program.
    #[inline]
    pub fn header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<HeaderValue>,
    ) -> Response {
        let added = self.append_header(name, value);
        debug_assert!(added.is_ok(), "response header refused: {added:?}");
        self
    }

    /// [`Response::header`], but an invalid field is an error. The error is
    /// itself an [`IntoResponse`] (500), so `?` works in a handler that
    /// returns a `Result`.
    pub fn try_header(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<HeaderValue>,
    ) -> Result<Response, InvalidHeader> {
        self.append_header(name, value)?;
        Ok(self)
    }

    /// Adds a header field to a response in place (rules of
    /// [`Response::header`]); an invalid field is an error and changes
    /// nothing.
    pub fn append_header(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<HeaderValue>,
    ) -> Result<(), InvalidHeader> {
        let name = name.into();
        let value = value.into();
        match header::check(&name, value.as_bytes())? {
            Kind::Plain => self.headers.push((name, value)),
            Kind::ContentType => self.content_type = ContentType::Value(value),
            Kind::Connection { close } => self.close |= close,
            Kind::Framing => {}
        }
        Ok(())
    }

    /// Replaces the body (the content type stays).
    #[inline]
    pub fn body(mut self, body: impl Into<Body>) -> Response {
        self.body = body.into();
        self
    }

    /// Closes the connection once this response is sent.
    #[inline]
    pub fn close(mut self) -> Response {
        self.close = true;
        self
    }

    /// The status code.
    #[inline]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The header fields that will be sent, `Content-Type` first, then the
    /// others in the order added (the server adds its own fields).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let content_type = self.content_type.as_bytes().map(|v| ("Content-Type", v));
        content_type.into_iter().chain(
            self.headers
                .iter()
                .map(|(name, value)| (&**name, value.as_bytes())),
        )
    }

    /// The value of the first field named `name` (ASCII case-insensitive)
    /// among [`Response::headers`].
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }

    /// The body's bytes.
    #[inline]
    pub fn body_bytes(&self) -> &[u8] {
        self.body.as_bytes()
    }

    /// Takes the body.
    pub fn into_body(self) -> Body {
        self.body
    }

    /// Whether the connection closes after this response.
    #[inline]
    pub fn will_close(&self) -> bool {
        self.close
    }

    /// Encodes this response into the connection's output.
    #[inline(always)]
    pub(crate) fn send(self, sink: &mut ResponseSink<'_>) {
        if let Some(preset) = self.preset() {
            if let Body::Static(bytes) = self.body {
                if bytes.len() <= SMALL_BODY {
                    let close = self.close;
                    // Nothing to drop: no field list was allocated
                    // (capacity 0), the content type and the body are
                    // `&'static`. Forgotten explicitly, so that no drop
                    // code is left on this path.
                    std::mem::forget(self);
                    return sink.send_preset_small(preset, bytes, close);
                }
            }
        }
        self.send_other(sink);
    }

    /// [`Response::send`] for all but a preset with a small static body.
    #[inline(never)]
    fn send_other(self, sink: &mut ResponseSink<'_>) {
        if let Some(preset) = self.preset() {
            return sink.send_preset(preset, self.body, self.close);
        }
        self.emit(|status, headers, body, close| sink.send(status, headers, body, close));
    }

    /// The preformatted start of this response, when it is a `200` with a
    /// preset content type and no field list (not even an allocated empty
    /// one: nothing to drop either).
    #[inline(always)]
    fn preset(&self) -> Option<&'static Preset> {
        let ContentType::Preset(preset) = self.content_type else {
            return None;
        };
        (self.status == 200 && self.headers.capacity() == 0).then_some(&preset.head)
    }

    /// Gives this response's parts to `f`: status, header fields as the
    /// encoder takes them (content type first), body, close.
    #[inline]
    pub(crate) fn emit<R>(self, f: impl FnOnce(u16, &[Header<'_>], Body, bool) -> R) -> R {
        let Response {
            status,
            close,
            content_type,
            headers,
            body,
        } = self;
        // A preset is a shortcut of `send`; the general path below writes
        // the same fields.
        let content_type = content_type.as_bytes();
        if headers.is_empty() {
            // The common case: at most a content type, no list to build.
            return match content_type {
                Some(value) => f(status, &[content_type_field(value)], body, close),
                None => f(status, &[], body, close),
            };
        }
        let fields = content_type
            .into_iter()
            .map(content_type_field)
            .chain(headers.iter().map(|(name, value)| Header {
                name,
                value: value.as_bytes(),
            }));
        let count = usize::from(content_type.is_some()) + headers.len();
        if count <= STACK_HEADERS {
            let mut stack = [Header {
                name: "",
                value: &[],
            }; STACK_HEADERS];
            for (slot, field) in stack.iter_mut().zip(fields) {
                *slot = field;
            }
            f(status, &stack[..count], body, close)
        } else {
            let list: Vec<Header<'_>> = fields.collect();
            f(status, &list, body, close)
        }
    }
}

impl Default for Response {
    /// `200 OK`, empty.
    fn default() -> Response {
        Response::ok()
    }
}

#[inline]
fn content_type_field(value: &[u8]) -> Header<'_> {
    Header {
        name: "Content-Type",
        value,
    }
}

/// `status` if it is a final status code, else 500.
#[inline]
fn final_status(status: u16) -> u16 {
    if (200..=999).contains(&status) {
        status
    } else {
        debug_assert!(false, "status {status} is not a final status (200..=999)");
        500
    }
}

/// A value a handler may return.
///
/// | value | response |
/// |---|---|
/// | [`Response`] | itself |
/// | `&'static str`, `String`, `Cow<'static, str>` | 200, `text/plain; charset=utf-8` |
/// | `&'static [u8]`, `Vec<u8>` | 200, `application/octet-stream` |
/// | `()` | 200 with an empty body (as in axum; use `Response::new(204)` for No Content) |
/// | `(u16, T)` | `T`'s response with that status |
/// | `Result<T, E>` | `T`'s or `E`'s response |
/// | [`InvalidHeader`] | 500, empty |
pub trait IntoResponse {
    /// Makes the response.
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    #[inline]
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for &'static str {
    #[inline]
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for String {
    #[inline]
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for Cow<'static, str> {
    #[inline]
    fn into_response(self) -> Response {
        match self {
            Cow::Borrowed(s) => Response::text(s),
            Cow::Owned(s) => Response::text(s),
        }
    }
}

impl IntoResponse for &'static [u8] {
    #[inline]
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for Vec<u8> {
    #[inline]
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

impl IntoResponse for () {
    #[inline]
    fn into_response(self) -> Response {
        Response::ok()
    }
}

impl<T: IntoResponse> IntoResponse for (u16, T) {
    #[inline]
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    #[inline]
    fn into_response(self) -> Response {
        match self {
            Ok(ok) => ok.into_response(),
            Err(err) => err.into_response(),
        }
    }
}

impl IntoResponse for InvalidHeader {
    fn into_response(self) -> Response {
        Response::new(500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(res: &Response) -> Vec<(String, String)> {
        res.headers()
            .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn constructors() {
        let r = Response::text("Hello, World!");
        assert_eq!(r.status(), 200);
        assert_eq!(
            fields(&r),
            pairs(&[("Content-Type", "text/plain; charset=utf-8")])
        );
        assert_eq!(r.body_bytes(), b"Hello, World!");
        assert!(
            matches!(r.body, Body::Static(_)),
            "static text is not copied"
        );
        assert!(!r.will_close());

        let r = Response::json_bytes(b"{}".to_vec());
        assert_eq!(
            r.header_value("content-type"),
            Some(&b"application/json"[..])
        );
        let r = Response::bytes(&b"\x00\x01"[..]);
        assert_eq!(
            r.header_value("Content-Type"),
            Some(&b"application/octet-stream"[..])
        );
        let r = Response::html(String::from("<p>"));
        assert_eq!(
            r.header_value("Content-Type"),
            Some(&b"text/html; charset=utf-8"[..])
        );
        let r = Response::new(204);
        assert_eq!(
            (r.status(), fields(&r), r.body_bytes()),
            (204, vec![], &b""[..])
        );
        assert_eq!(Response::default().status(), 200);
        assert_eq!(Response::ok().body("x").body_bytes(), b"x");
    }

    #[test]
    fn builder() {
        let r = Response::text("x")
            .with_status(201)
            .header("Location", "/a")
            .header(String::from("Set-Cookie"), String::from("a=1"))
            .header("Set-Cookie", b"b=2".to_vec())
            .header("Retry-After", 5u32)
            .header("content-type", "text/csv");
        assert_eq!(r.status(), 201);
        assert_eq!(
            fields(&r),
            pairs(&[
                ("Content-Type", "text/csv"),
                ("Location", "/a"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("Retry-After", "5"),
            ])
        );
        assert!(Response::ok().close().will_close());
    }

    #[test]
    fn framing_fields_are_dropped() {
        let r = Response::text("x")
            .header("Content-Length", "999")
            .header("Transfer-Encoding", "chunked")
            .header("Date", "yesterday")
            .header("Server", "evil")
            .header("Connection", "keep-alive");
        assert_eq!(
            fields(&r),
            pairs(&[("Content-Type", "text/plain; charset=utf-8")])
        );
        assert!(!r.will_close());
        let r = Response::ok().header("Connection", "close");
        assert!(r.will_close());
        assert_eq!(r.headers().count(), 0);
    }

    #[test]
    fn invalid_fields_are_refused() {
        let r = Response::ok().try_header("X-A", "a\r\nSet-Cookie: evil=1");
        assert_eq!(r.unwrap_err(), InvalidHeader::Value);
        let r = Response::ok().try_header("X A", "a");
        assert_eq!(r.unwrap_err(), InvalidHeader::Name);
        let r = Response::ok().try_header("Content-Type", "a\nb");
        assert_eq!(r.unwrap_err(), InvalidHeader::Value);
        let mut r = Response::ok();
        assert_eq!(r.append_header("X\n", "v"), Err(InvalidHeader::Name));
        assert_eq!(r.append_header("X", vec![0u8]), Err(InvalidHeader::Value));
        assert_eq!(r.headers().count(), 0, "nothing added");
        assert_eq!(InvalidHeader::Value.into_response().status(), 500);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "response header refused")]
    fn invalid_header_asserts_in_debug() {
        let _ = Response::ok().header("X", "a\r\nb");
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn invalid_header_is_skipped_in_release() {
        let r = Response::ok().header("X", "a\r\nb").header("Y", "ok");
        assert_eq!(fields(&r), pairs(&[("Y", "ok")]));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "not a final status")]
    fn interim_status_asserts_in_debug() {
        let _ = Response::new(101);
    }

    #[test]
    #[cfg(not(debug_assertions))]
    fn bad_status_is_500_in_release() {
        assert_eq!(Response::new(99).status(), 500);
        assert_eq!(Response::ok().with_status(1000).status(), 500);
    }

    #[test]
    fn into_response() {
        let r = "hi".into_response();
        assert_eq!((r.status(), r.body_bytes()), (200, &b"hi"[..]));
        assert_eq!(r.header_value("content-type"), Some(TEXT.value));
        assert_eq!(String::from("s").into_response().body_bytes(), b"s");
        assert_eq!(Cow::Borrowed("c").into_response().body_bytes(), b"c");
        let r = vec![1u8, 2].into_response();
        assert_eq!(r.header_value("content-type"), Some(OCTETS.value));
        assert_eq!((&b"b"[..]).into_response().body_bytes(), b"b");
        let r = ().into_response();
        assert_eq!((r.status(), r.body_bytes()), (200, &b""[..]));
        let r = (404, "missing").into_response();
        assert_eq!((r.status(), r.body_bytes()), (404, &b"missing"[..]));
        let r = (201, Response::text("x").header("X", "y")).into_response();
        assert_eq!((r.status(), r.header_value("x")), (201, Some(&b"y"[..])));
        let ok: Result<&str, (u16, String)> = Ok("fine");
        assert_eq!(ok.into_response().status(), 200);
        let err: Result<&str, (u16, String)> = Err((409, "conflict".into()));
        let r = err.into_response();
        assert_eq!((r.status(), r.body_bytes()), (409, &b"conflict"[..]));
        assert!(matches!(Response::ok().into_body(), Body::Empty));
    }

    #[test]
    fn small_and_allocation_free() {
        // Moved by value through handlers: keep it a few words.
        assert!(std::mem::size_of::<Response>() <= 96);
        let r = Response::text("static");
        assert_eq!(r.headers.capacity(), 0);
        assert!(matches!(r.content_type, ContentType::Preset(p) if std::ptr::eq(p, &TEXT)));
    }
}
