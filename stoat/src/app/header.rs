//! Response header fields set by handlers: [`HeaderValue`], the checks that
//! keep a field from injecting others, and the fields the encoder owns.
//!
//! Contract: [`check`] is the only way a caller's field reaches a
//! response. It refuses a name that is not a token (RFC 9110 §5.6.2) and a
//! value holding a control character other than HTAB (RFC 9110 §5.5: CR,
//! LF and NUL are "invalid and dangerous"; other CTLs are outside the
//! grammar), so no field can end a line early. It sorts the field into
//! what the response does with it: the framing fields (`Content-Length`,
//! `Transfer-Encoding`, `Date`, `Server`) are written by the encoder and
//! dropped here; `Connection` only matters for its `close` option;
//! `Content-Type` is a singleton kept in its own slot.

use std::borrow::Cow;
use std::fmt;

/// A response header value: static bytes (not copied) or owned ones.
/// Checked when it is attached to a response, not when it is made.
#[derive(Clone, PartialEq, Eq)]
pub struct HeaderValue(pub(crate) Cow<'static, [u8]>);

impl HeaderValue {
    /// A value from static text, usable in `const` items.
    pub const fn from_static(value: &'static str) -> HeaderValue {
        HeaderValue(Cow::Borrowed(value.as_bytes()))
    }

    /// The value's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(&self.0), f)
    }
}

impl From<&'static str> for HeaderValue {
    #[inline]
    fn from(value: &'static str) -> HeaderValue {
        HeaderValue(Cow::Borrowed(value.as_bytes()))
    }
}

impl From<&'static [u8]> for HeaderValue {
    #[inline]
    fn from(value: &'static [u8]) -> HeaderValue {
        HeaderValue(Cow::Borrowed(value))
    }
}

impl From<String> for HeaderValue {
    fn from(value: String) -> HeaderValue {
        HeaderValue(Cow::Owned(value.into_bytes()))
    }
}

impl From<Vec<u8>> for HeaderValue {
    fn from(value: Vec<u8>) -> HeaderValue {
        HeaderValue(Cow::Owned(value))
    }
}

impl From<Cow<'static, str>> for HeaderValue {
    fn from(value: Cow<'static, str>) -> HeaderValue {
        match value {
            Cow::Borrowed(s) => s.into(),
            Cow::Owned(s) => s.into(),
        }
    }
}

impl From<Cow<'static, [u8]>> for HeaderValue {
    fn from(value: Cow<'static, [u8]>) -> HeaderValue {
        HeaderValue(value)
    }
}

macro_rules! from_integer {
    ($($t:ty)*) => {$(
        impl From<$t> for HeaderValue {
            /// The decimal digits (e.g. for `Retry-After` or `Age`).
            fn from(value: $t) -> HeaderValue {
                HeaderValue(Cow::Owned(itoa::Buffer::new().format(value).as_bytes().to_vec()))
            }
        }
    )*};
}

from_integer!(u16 u32 u64 usize i32 i64);

/// Why a header field was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidHeader {
    /// The name is empty or holds a character that is not a `tchar`
    /// (RFC 9110 §5.6.2: letters, digits and ``!#$%&'*+-.^_`|~``).
    #[error("invalid header name: not a token")]
    Name,
    /// The value holds a control character (CR, LF, NUL, ...) other than
    /// horizontal tab.
    #[error("invalid header value: holds a control character")]
    Value,
}

/// What a response does with a checked field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Sent as given.
    Plain,
    /// `Content-Type`: replaces the response's content type.
    ContentType,
    /// `Connection`: `close` among its options closes the connection after
    /// the response; the field itself is the encoder's.
    Connection {
        /// The `close` option is present.
        close: bool,
    },
    /// A field the encoder writes: dropped.
    Framing,
}

/// Checks a caller's field and says what to do with it.
pub(crate) fn check(name: &str, value: &[u8]) -> Result<Kind, InvalidHeader> {
    if !is_token(name) {
        return Err(InvalidHeader::Name);
    }
    if !is_field_value(value) {
        return Err(InvalidHeader::Value);
    }
    // Dispatch on length first: most names are none of these.
    let kind = match name.len() {
        4 if name.eq_ignore_ascii_case("date") => Kind::Framing,
        6 if name.eq_ignore_ascii_case("server") => Kind::Framing,
        10 if name.eq_ignore_ascii_case("connection") => Kind::Connection {
            close: value
                .split(|&b| b == b',')
                .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close")),
        },
        12 if name.eq_ignore_ascii_case("content-type") => Kind::ContentType,
        14 if name.eq_ignore_ascii_case("content-length") => Kind::Framing,
        17 if name.eq_ignore_ascii_case("transfer-encoding") => Kind::Framing,
        _ => Kind::Plain,
    };
    Ok(kind)
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(crate::proto::head::is_tchar)
}

/// RFC 9110 §5.5: `field-value = *field-content`, built of VCHAR, obs-text,
/// SP and HTAB: every byte but the controls (0x00-0x1F, 0x7F) except HTAB.
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["X-Id", "a", "!#$%&'*+-.^_`|~09AZaz"] {
            assert_eq!(check(good, b"v"), Ok(Kind::Plain), "{good}");
        }
        for bad in [
            "",
            "X Id",
            "X:Id",
            "X-Id\r\nSet-Cookie",
            "Ä",
            "a\0",
            "(x)",
            "a/b",
        ] {
            assert_eq!(check(bad, b"v"), Err(InvalidHeader::Name), "{bad:?}");
        }
    }

    #[test]
    fn values() {
        for good in [&b""[..], b"v", b"a b\tc", b"\x80\xff", b"~!\"#"] {
            assert_eq!(check("X", good), Ok(Kind::Plain), "{good:?}");
        }
        for bad in [
            &b"a\r\nSet-Cookie: x=1"[..],
            b"a\rb",
            b"a\nb",
            b"a\0b",
            b"\x1b[31m",
            b"a\x7f",
        ] {
            assert_eq!(check("X", bad), Err(InvalidHeader::Value), "{bad:?}");
        }
    }

    #[test]
    fn owned_fields_are_sorted_out() {
        for name in [
            "Content-Length",
            "content-length",
            "Transfer-Encoding",
            "DATE",
            "Server",
        ] {
            assert_eq!(check(name, b"1"), Ok(Kind::Framing), "{name}");
        }
        assert_eq!(check("Content-Type", b"a/b"), Ok(Kind::ContentType));
        assert_eq!(
            check("connection", b"keep-alive, Close"),
            Ok(Kind::Connection { close: true })
        );
        assert_eq!(
            check("Connection", b"keep-alive"),
            Ok(Kind::Connection { close: false })
        );
        assert_eq!(check("Content-Language", b"en"), Ok(Kind::Plain));
        // An invalid value is refused even on a dropped field.
        assert_eq!(check("Server", b"x\r\n"), Err(InvalidHeader::Value));
    }

    #[test]
    fn values_convert_without_copying_static_text() {
        let v = HeaderValue::from("static");
        assert!(matches!(v.0, Cow::Borrowed(_)));
        assert_eq!(HeaderValue::from(42u64).as_bytes(), b"42");
        assert_eq!(HeaderValue::from(-7i64).as_bytes(), b"-7");
        assert_eq!(HeaderValue::from(String::from("s")).as_bytes(), b"s");
        assert_eq!(HeaderValue::from(vec![1u8]).as_bytes(), [1]);
        assert_eq!(HeaderValue::from(Cow::Borrowed("c")).as_bytes(), b"c");
        assert_eq!(format!("{:?}", HeaderValue::from_static("x y")), "\"x y\"");
    }
}
