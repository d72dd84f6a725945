//! Query strings and percent-decoding: what [`Request::query`],
//! [`Request::query_iter`] and [`Request::param_decoded`] give.
//!
//! Contract:
//! - A query is split on `&` into pairs, each split at its first `=` (a
//!   pair without `=` has the value `""`); empty pairs are skipped. This is
//!   the WHATWG URL Standard's `application/x-www-form-urlencoded` parser
//!   (§5.1), except that bytes that do not decode to UTF-8 are not
//!   replaced with U+FFFD: such a pair is skipped (a lookup finds the next
//!   pair of that name), as the raw accessors of [`Request`] do, so that a
//!   value never silently differs from what was sent.
//! - Names and values are percent-decoded (RFC 3986 §2.1) and, in a query,
//!   `+` is a space (form encoding). A `%` not followed by two hex digits is
//!   kept as it is (WHATWG: "If byte is 0x25 (%) and the next two bytes
//!   are not both hex digits, append byte").
//! - Path parameters are percent-decoded by the same function, but `+`
//!   stays `+`: in a path it is a literal sub-delimiter (RFC 3986 §3.3).
//!   A decoded parameter may hold `/` or `..` (from `%2F`, `%2E`): code that
//!   maps it to a file must check it (`files.rs` does).
//! - Cost: text with no `%` and no `+` comes back borrowed (`Cow::Borrowed`)
//!   from the request buffer: no allocation, one `memchr2` pass. Only text
//!   that needs decoding is copied, once.
//!
//! Percent-decoding uses the `percent-encoding` crate (rust-url's, already
//! in the dependency graph): `percent_decode` yields a borrowed `Cow` when
//! the input has no `%`, which is the no-allocation rule. Its sibling
//! `form_urlencoded` also does `+` but replaces invalid UTF-8 with U+FFFD
//! (lossy), which the contract above refuses, so `+` is handled here.
//!
//! [`Request`]: crate::app::Request
//! [`Request::query`]: crate::app::Request::query
//! [`Request::query_iter`]: crate::app::Request::query_iter
//! [`Request::param_decoded`]: crate::app::Request::param_decoded

use std::borrow::Cow;
use std::str;

/// The decoded `(name, value)` pairs of a query, in order. See the module
/// doc for the rules.
#[derive(Debug, Clone)]
pub struct QueryPairs<'a> {
    /// What is left of the raw query.
    rest: &'a [u8],
}

impl<'a> QueryPairs<'a> {
    /// The pairs of `query` (the text after `?`, raw).
    pub fn new(query: &'a [u8]) -> QueryPairs<'a> {
        QueryPairs { rest: query }
    }
}

impl<'a> Iterator for QueryPairs<'a> {
    type Item = (Cow<'a, str>, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (pair, rest) = match memchr::memchr(b'&', self.rest) {
                Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
                None => (self.rest, &b""[..]),
            };
            self.rest = rest;
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            if let (Some(name), Some(value)) = (decode_form(name), decode_form(value)) {
                return Some((name, value));
            }
        }
        None
    }
}

/// The value of the first pair of `query` named `name` (compared after
/// decoding), decoded.
pub fn query_value<'a>(query: &'a [u8], name: &str) -> Option<Cow<'a, str>> {
    QueryPairs::new(query)
        .find(|(n, _)| n == name)
        .map(|(_, value)| value)
}

/// Decodes a query name or value: `+` is a space, `%XX` a byte. `None`
/// when the result is not UTF-8. Borrowed when there is nothing to decode.
pub fn decode_form(raw: &[u8]) -> Option<Cow<'_, str>> {
    decode(raw, true)
}

/// Decodes a path segment (a route parameter): `%XX` is a byte, `+` stays
/// `+`. `None` when the result is not UTF-8. Borrowed when there is
/// nothing to decode.
pub fn decode_path(raw: &[u8]) -> Option<Cow<'_, str>> {
    decode(raw, false)
}

/// The one percent-decoding function: `plus` says whether `+` means a
/// space (form encoding).
fn decode(raw: &[u8], plus: bool) -> Option<Cow<'_, str>> {
    let first = if plus {
        memchr::memchr2(b'%', b'+', raw)
    } else {
        memchr::memchr(b'%', raw)
    };
    if first.is_none() {
        // Nothing to decode: the common case, borrowed.
        return str::from_utf8(raw).ok().map(Cow::Borrowed);
    }
    let bytes: Cow<'_, [u8]> = if plus && memchr::memchr(b'+', raw).is_some() {
        let spaced: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        match percent_encoding::percent_decode(&spaced).into() {
            Cow::Borrowed(_) => Cow::Owned(spaced),
            Cow::Owned(decoded) => Cow::Owned(decoded),
        }
    } else {
        percent_encoding::percent_decode(raw).into()
    };
    match bytes {
        Cow::Borrowed(b) => str::from_utf8(b).ok().map(Cow::Borrowed),
        Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_table() {
        // (raw, as a query component, as a path segment)
        let table: &[(&[u8], Option<&str>, Option<&str>)] = &[
            (b"", Some(""), Some("")),
            (b"plain", Some("plain"), Some("plain")),
            (b"a+b", Some("a b"), Some("a+b")),
            (b"a%20b", Some("a b"), Some("a b")),
            (b"a%2Bb", Some("a+b"), Some("a+b")),
            (b"%2e%2E%2f", Some("../"), Some("../")),
            (b"caf%C3%A9", Some("café"), Some("café")),
            (b"%", Some("%"), Some("%")),
            (b"%4", Some("%4"), Some("%4")),
            (b"%zz", Some("%zz"), Some("%zz")),
            (b"100%", Some("100%"), Some("100%")),
            (b"%00", Some("\0"), Some("\0")),
            (b"%ff", None, None),
            (b"\xff", None, None),
            (b"+%2B+", Some(" + "), Some("+++")),
        ];
        for &(raw, form, path) in table {
            let shown = String::from_utf8_lossy(raw);
            assert_eq!(decode_form(raw).as_deref(), form, "form {shown:?}");
            assert_eq!(decode_path(raw).as_deref(), path, "path {shown:?}");
        }
    }

    #[test]
    fn nothing_encoded_is_borrowed() {
        for raw in [&b"abc"[..], b"a=b&c=d", b""] {
            assert!(matches!(decode_form(raw), Some(Cow::Borrowed(_))));
            assert!(matches!(decode_path(raw), Some(Cow::Borrowed(_))));
        }
        assert!(matches!(decode_path(b"a+b"), Some(Cow::Borrowed(_))));
        assert!(matches!(decode_form(b"a+b"), Some(Cow::Owned(_))));
        assert!(matches!(decode_form(b"a%41"), Some(Cow::Owned(_))));
        for (name, value) in QueryPairs::new(b"a=13&b=42&flag") {
            assert!(matches!(name, Cow::Borrowed(_)), "{name}");
            assert!(matches!(value, Cow::Borrowed(_)), "{value}");
        }
    }

    #[test]
    fn pairs_table() {
        type Case = (&'static [u8], &'static [(&'static str, &'static str)]);
        let table: &[Case] = &[
            (b"", &[]),
            (b"&&", &[]),
            (b"a=13&b=42", &[("a", "13"), ("b", "42")]),
            (
                b"a=1&b=&c&a=2&&d=x%20y",
                &[("a", "1"), ("b", ""), ("c", ""), ("a", "2"), ("d", "x y")],
            ),
            (b"q=a+b%2Bc", &[("q", "a b+c")]),
            (b"k%3Dx=v%26w", &[("k=x", "v&w")]),
            (b"=v", &[("", "v")]),
            (b"a=b=c", &[("a", "b=c")]),
            (b"bad=%ff&ok=1", &[("ok", "1")]),
            (b"%ff=1&ok=2", &[("ok", "2")]),
        ];
        for &(raw, want) in table {
            let got: Vec<(String, String)> = QueryPairs::new(raw)
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn lookup() {
        let q = b"a=13&b=42&a=7&sp+ace=1&x=%ff&x=2";
        assert_eq!(query_value(q, "a").as_deref(), Some("13"));
        assert_eq!(query_value(q, "b").as_deref(), Some("42"));
        assert_eq!(query_value(q, "sp ace").as_deref(), Some("1"));
        assert_eq!(query_value(q, "sp+ace"), None);
        assert_eq!(
            query_value(q, "x").as_deref(),
            Some("2"),
            "bad pair skipped"
        );
        assert_eq!(query_value(q, "c"), None);
        assert_eq!(query_value(b"", "a"), None);
    }
}
