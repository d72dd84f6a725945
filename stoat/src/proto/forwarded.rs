//! The client address according to `X-Forwarded-For` or `Forwarded`
//! (RFC 7239) fields, walked from the nearest hop outwards, believing only
//! what trusted proxies wrote.
//!
//! Contract: [`client_addr`] takes the field values in the order they came
//! (several field lines of one name form one list, RFC 9110 §5.3) and a
//! predicate saying which addresses are trusted proxies. Each proxy appends
//! the address it received the request from, so the list is read from its
//! right end: the last entry was written by the proxy that talks to us
//! (the caller checks that it is trusted before calling), each entry that
//! is itself a trusted proxy's address vouches for the one before it, and
//! the first entry that is not a trusted proxy is the client. Everything
//! left of it was written by the client or by proxies nobody trusts and is
//! ignored. If every entry is a trusted proxy, the leftmost is the answer.
//!
//! `None` (use the connection's own address) when the walk reaches an
//! entry that is not an address (`unknown`, an obfuscated `_name`, junk),
//! when there are no entries, or when the chain of trusted hops is longer
//! than [`MAX_HOPS`]: what cannot be read is never guessed.
//!
//! Entries are IP addresses, optionally with a port: `192.0.2.1`,
//! `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:8080`
//! (the last three forms as `Forwarded` quotes them, `for="[..]:port"`).
//! A missing port is 0. No allocation: the last entries are kept as
//! slices on the stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Most entries examined from the right; a longer chain of trusted proxies
/// gives `None`.
pub const MAX_HOPS: usize = 16;

/// Which field the values are from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

/// The client address per the field `values` (in arrival order), believing
/// entries only through addresses for which `trusted` holds. See the
/// module doc.
pub fn client_addr<'a>(
    field: Field,
    values: impl IntoIterator<Item = &'a [u8]>,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<SocketAddr> {
    // The last MAX_HOPS + 1 entries in a ring: one more than the hops, to
    // tell "too long" from "exactly MAX_HOPS".
    const KEEP: usize = MAX_HOPS + 1;
    let mut ring: [&'a [u8]; KEEP] = [&[]; KEEP];
    let mut seen = 0usize;
    for value in values {
        let mut push = |entry: &'a [u8]| {
            ring[seen % KEEP] = entry;
            seen += 1;
        };
        match field {
            Field::XForwardedFor => {
                for entry in value.split(|&b| b == b',') {
                    // Empty list elements are allowed (RFC 9110 §5.6.1).
                    if !trim(entry).is_empty() {
                        push(entry);
                    }
                }
            }
            Field::Forwarded => split_unquoted(value, b',', &mut |element| {
                if !trim(element).is_empty() {
                    // An element without `for` is no address: it stops
                    // the walk when reached.
                    push(for_value(element).unwrap_or(&[]));
                }
            }),
        }
    }
    let mut last = None;
    for k in 0..seen.min(KEEP) {
        if k == MAX_HOPS {
            return None;
        }
        let addr = parse_node(trim(ring[(seen - 1 - k) % KEEP]))?;
        if !trusted(addr.ip()) {
            return Some(addr);
        }
        last = Some(addr);
    }
    last
}

/// Calls `f` with each piece of `s` between `sep` bytes that are not inside
/// a quoted-string (RFC 9110 §5.6.4: `"` ... `"`, with `\` escaping the
/// next byte). An unterminated quote runs to the end.
fn split_unquoted<'a>(s: &'a [u8], sep: u8, f: &mut impl FnMut(&'a [u8])) {
    let mut start = 0;
    let mut quoted = false;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b if b == sep && !quoted => {
                f(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    f(&s[start.min(s.len())..]);
}

/// The value of the `for` pair of a `Forwarded` element (RFC 7239 §4:
/// `forwarded-pair = token "=" value`, the token case-insensitive).
fn for_value(element: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    split_unquoted(element, b';', &mut |pair| {
        let pair = trim(pair);
        if found.is_none() && pair.len() >= 4 && pair[..4].eq_ignore_ascii_case(b"for=") {
            found = Some(&pair[4..]);
        }
    });
    found
}

/// An entry: an address with an optional port, quoted or not.
fn parse_node(node: &[u8]) -> Option<SocketAddr> {
    let node = match node {
        [b'"', inner @ .., b'"'] => inner,
        _ => node,
    };
    let text = std::str::from_utf8(node).ok()?;
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 0,
            _ => port(after.strip_prefix(':')?)?,
        };
        return Some(SocketAddr::new(IpAddr::V6(ip), port));
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    let (ip, p) = text.rsplit_once(':')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    Some(SocketAddr::new(IpAddr::V4(ip), port(p)?))
}

fn port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| matches!(b, b' ' | b'\t')).count();
    &s[n..]
}

fn trim(s: &[u8]) -> &[u8] {
    let s = trim_start(s);
    let n = s
        .iter()
        .rev()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    &s[..s.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10.0.0.0/8 and ::1 are the trusted proxies.
    fn trusted(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
        }
    }

    fn xff(values: &[&str]) -> Option<String> {
        client_addr(
            Field::XForwardedFor,
            values.iter().map(|v| v.as_bytes()),
            trusted,
        )
        .map(|a| a.to_string())
    }

    fn fwd(values: &[&str]) -> Option<String> {
        client_addr(
            Field::Forwarded,
            values.iter().map(|v| v.as_bytes()),
            trusted,
        )
        .map(|a| a.to_string())
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn x_forwarded_for_walks_from_the_right() {
        assert_eq!(xff(&["192.0.2.1"]), some("192.0.2.1:0"));
        assert_eq!(xff(&["192.0.2.1, 10.0.0.2"]), some("192.0.2.1:0"));
        // A client-written entry left of the real client is ignored.
        assert_eq!(xff(&["6.6.6.6, 192.0.2.1, 10.0.0.2"]), some("192.0.2.1:0"));
        assert_eq!(xff(&["6.6.6.6,192.0.2.1"]), some("192.0.2.1:0"));
        // Several field lines are one list.
        assert_eq!(
            xff(&["6.6.6.6", "192.0.2.1", "10.0.0.9"]),
            some("192.0.2.1:0")
        );
        // All trusted: the leftmost.
        assert_eq!(xff(&["10.0.0.1, 10.0.0.2"]), some("10.0.0.1:0"));
        // Ports and IPv6 forms.
        assert_eq!(xff(&["192.0.2.1:4711"]), some("192.0.2.1:4711"));
        assert_eq!(xff(&["2001:db8::1"]), some("[2001:db8::1]:0"));
        assert_eq!(xff(&["[2001:db8::1]:80, ::1"]), some("[2001:db8::1]:80"));
        // Empty elements are skipped.
        assert_eq!(xff(&[" , 192.0.2.1 ,, "]), some("192.0.2.1:0"));
    }

    #[test]
    fn x_forwarded_for_refuses_what_it_cannot_read() {
        assert_eq!(xff(&[]), None);
        assert_eq!(xff(&[""]), None);
        assert_eq!(xff(&["unknown"]), None);
        assert_eq!(xff(&["192.0.2.1, junk"]), None);
        assert_eq!(xff(&["192.0.2.1:99999"]), None);
        assert_eq!(xff(&["192.0.2.1:"]), None);
        assert_eq!(xff(&["[2001:db8::1"]), None);
        assert_eq!(xff(&["[2001:db8::1]x"]), None);
        assert_eq!(xff(&["01.2.3.4"]), None);
        // Junk left of the client is never reached.
        assert_eq!(xff(&["junk, 192.0.2.1"]), some("192.0.2.1:0"));
    }

    #[test]
    fn hop_limit() {
        let chain = |n: usize| {
            let mut v = vec!["192.0.2.1".to_owned()];
            v.extend((0..n).map(|i| format!("10.0.0.{i}")));
            v.join(", ")
        };
        assert_eq!(xff(&[&chain(MAX_HOPS - 1)]), some("192.0.2.1:0"));
        assert_eq!(xff(&[&chain(MAX_HOPS)]), None);
        assert_eq!(xff(&[&chain(100)]), None);
        // A long list whose nearest entry is untrusted stops at once.
        let long = vec!["6.6.6.6"; 1000].join(",") + ", 192.0.2.7";
        assert_eq!(xff(&[&long]), some("192.0.2.7:0"));
    }

    #[test]
    fn forwarded() {
        assert_eq!(
            fwd(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            some("192.0.2.60:0")
        );
        assert_eq!(
            fwd(&["For=\"[2001:db8:cafe::17]:4711\""]),
            some("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(
            fwd(&["for=6.6.6.6, for=192.0.2.43;proto=https, for=10.1.2.3"]),
            some("192.0.2.43:0")
        );
        assert_eq!(
            fwd(&["for=192.0.2.43", "for=10.1.2.3"]),
            some("192.0.2.43:0")
        );
        assert_eq!(fwd(&["proto=https; for = 192.0.2.1"]), None);
        assert_eq!(fwd(&["proto=https;for=192.0.2.1"]), some("192.0.2.1:0"));
        // A quoted comma does not split elements.
        assert_eq!(fwd(&["for=192.0.2.1;ext=\"a,b\""]), some("192.0.2.1:0"));
        assert_eq!(fwd(&["for=192.0.2.1;ext=\"a\\\",b\""]), some("192.0.2.1:0"));
        assert_eq!(fwd(&["for=\"192.0.2.1:8080\""]), some("192.0.2.1:8080"));
    }

    #[test]
    fn forwarded_refuses_what_it_cannot_read() {
        assert_eq!(fwd(&["for=unknown"]), None);
        assert_eq!(fwd(&["for=_hidden"]), None);
        assert_eq!(fwd(&["for=192.0.2.1, proto=https"]), None);
        assert_eq!(fwd(&["for=\"[2001:db8::1\""]), None);
        assert_eq!(fwd(&["for=192.0.2.1;ext=\"a,b"]), some("192.0.2.1:0"));
        assert_eq!(fwd(&[""]), None);
        assert_eq!(fwd(&["for="]), None);
        // An element without `for` stops the walk.
        assert_eq!(fwd(&["for=192.0.2.1, by=10.0.0.1"]), None);
    }
}
