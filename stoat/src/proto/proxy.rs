//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1
//! and 2): the first bytes a load balancer sends on a connection to say
//! whose connection it is relaying.
//!
//! Contract: [`parse`] looks at the bytes received so far at the start of a
//! connection and answers at once, without state between calls:
//! - [`Status::NeedMore`]: everything so far is a valid beginning of a
//!   header of an accepted version; call again with more bytes. A header is
//!   never longer than [`MAX_HEADER_LEN`], so a caller whose buffer holds
//!   that much (or at least what was received) and still gets `NeedMore`
//!   only needs to wait; bytes that cannot begin a header are refused with
//!   the first bytes that show it (one byte for most non-PROXY traffic).
//! - [`Status::Proxied`]: a complete header of `consumed` bytes with the
//!   original connection's [`Addresses`]; the application's bytes start at
//!   `consumed`.
//! - [`Status::Local`]: a complete v2 `LOCAL` header (the proxy's own
//!   connection, e.g. a health check): `consumed` bytes to skip, and the
//!   connection's real endpoints are the ones to use.
//! - `Err(`[`ProxyError`]`)`: the bytes are not an acceptable header. The
//!   spec's rule for every such case is to drop the connection without an
//!   answer; each cause has its own variant so it can be counted.
//!
//! The spec asks a receiver to read the whole header before anything else
//! and to refuse anything malformed; we are strict where the spec leaves
//! room (no leading zeros in v1 ports, no v2 family or transport outside the
//! defined ones, v2 TLVs must tile the rest of the header exactly). v2 TLVs
//! are walked only to check their framing and are otherwise skipped: the
//! spec says receivers must ignore unknown TLVs, and none is used here.
//! `PP2_TYPE_CRC32C` is not verified (the header came over a connection
//! from a trusted proxy, whose TCP checksum already covers it).
//!
//! No allocation, no `unsafe`; time plays no part (the runtime bounds the
//! wait for a header with its request timeout).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which header versions a listener accepts (`[http] proxy_protocol`,
/// minus `"off"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accept {
    /// The text header (`PROXY TCP4 ...\r\n`) only.
    V1,
    /// The binary header only.
    V2,
    /// Either, told apart by the first byte.
    Any,
}

/// What the bytes received so far amount to. See the module doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A valid beginning; more bytes are needed.
    NeedMore,
    /// A complete header of `consumed` bytes relaying a connection.
    Proxied {
        /// Bytes of the header; the application's data follows.
        consumed: usize,
        /// The relayed connection's endpoints, as far as the header gives them.
        addresses: Addresses,
    },
    /// A complete v2 `LOCAL` header of `consumed` bytes: the proxy speaks
    /// for itself (health checks); use the connection's real endpoints.
    Local {
        /// Bytes of the header; the application's data follows.
        consumed: usize,
    },
}

/// The endpoints of the connection a header relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// TCP over IPv4 or IPv6 (v1 `TCP4`/`TCP6`, v2 `INET`/`INET6` with
    /// `STREAM`): the client (`source`) and the address it connected to.
    Inet {
        /// The original client.
        source: SocketAddr,
        /// The address the client connected to (the proxy's listener).
        destination: SocketAddr,
    },
    /// v1 `UNKNOWN` or v2 `UNSPEC`: the proxy does not know or say; the
    /// spec says to use the connection's real endpoints.
    Unknown,
    /// v2 `UNIX` `STREAM`: the client is a local socket of the proxy's
    /// host, which has no IP address; use the connection's real endpoints.
    Unix,
}

/// Why the bytes are not an acceptable PROXY header. Every one means: close
/// the connection without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyError {
    /// The bytes begin neither header (a client that sends no PROXY header
    /// where one is required, or a direct HTTP request).
    Missing,
    /// A v1 header where only v2 is accepted.
    V1NotAccepted,
    /// A v2 header where only v1 is accepted.
    V2NotAccepted,
    /// v1: no line end within [`V1_MAX_LEN`] bytes.
    V1TooLong,
    /// v1: the line ends in LF without CR, or holds a CR elsewhere.
    V1LineEnd,
    /// v1: the protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    V1Protocol,
    /// v1: not exactly four single-space-separated fields after the
    /// protocol (an empty field: a double space or trailing space).
    V1Fields,
    /// v1: an address that is not an IPv4 (`TCP4`) or IPv6 (`TCP6`)
    /// address in the textual form.
    V1Address,
    /// v1: a port that is not a decimal from 0 to 65535 without leading zeros.
    V1Port,
    /// v2: the version nibble is not 2.
    V2Version,
    /// v2: the command nibble is not `LOCAL` (0) or `PROXY` (1).
    V2Command,
    /// v2: the family/transport byte is none of the defined values
    /// (`0x00`, `0x11`, `0x12`, `0x21`, `0x22`, `0x31`, `0x32`).
    V2Family,
    /// v2: a datagram (`DGRAM`) transport relayed on a stream connection.
    V2Datagram,
    /// v2: the length is shorter than the family's address block.
    V2AddressLength,
    /// v2: the length is over [`V2_MAX_PAYLOAD`].
    V2TooLong,
    /// v2: a TLV whose header or value runs past the end of the header.
    V2Tlv,
}

/// The v2 signature: the first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's start.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// Longest v1 header, CRLF included (the spec's bound, reached by
/// `UNKNOWN` with two IPv6 addresses).
pub const V1_MAX_LEN: usize = 107;
/// Fixed part of a v2 header: signature, version/command, family, length.
pub const V2_FIXED_LEN: usize = 16;
/// Most address-and-TLV bytes accepted after a v2 header's fixed part. The
/// wire format allows 65,535; the addresses take at most 216 and real
/// proxies send well under a kilobyte of TLVs (AWS's VPC endpoint id,
/// HAProxy's SSL and unique-id TLVs), and the header must fit the
/// connection's read buffer.
pub const V2_MAX_PAYLOAD: usize = 4096;
/// Longest header of either version.
pub const MAX_HEADER_LEN: usize = V2_FIXED_LEN + V2_MAX_PAYLOAD;

/// Parses the PROXY header at the start of `input` (the first bytes of a
/// connection). See the module doc.
pub fn parse(input: &[u8], accept: Accept) -> Result<Status, ProxyError> {
    match input.first() {
        None => Ok(Status::NeedMore),
        // A version is named only once its whole prefix is there: "P"
        // may still be "POST".
        Some(b'P') => {
            starts_like(input, V1_PREFIX)?;
            if input.len() < V1_PREFIX.len() {
                return Ok(Status::NeedMore);
            }
            if accept == Accept::V2 {
                return Err(ProxyError::V1NotAccepted);
            }
            parse_v1(input)
        }
        Some(b'\r') => {
            starts_like(input, &V2_SIGNATURE)?;
            if input.len() < V2_SIGNATURE.len() {
                return Ok(Status::NeedMore);
            }
            if accept == Accept::V1 {
                return Err(ProxyError::V2NotAccepted);
            }
            parse_v2(input)
        }
        Some(_) => Err(ProxyError::Missing),
    }
}

impl ProxyError {
    /// A short, stable name (for counters and logs).
    pub const fn name(self) -> &'static str {
        match self {
            ProxyError::Missing => "missing",
            ProxyError::V1NotAccepted => "v1_not_accepted",
            ProxyError::V2NotAccepted => "v2_not_accepted",
            ProxyError::V1TooLong => "v1_too_long",
            ProxyError::V1LineEnd => "v1_line_end",
            ProxyError::V1Protocol => "v1_protocol",
            ProxyError::V1Fields => "v1_fields",
            ProxyError::V1Address => "v1_address",
            ProxyError::V1Port => "v1_port",
            ProxyError::V2Version => "v2_version",
            ProxyError::V2Command => "v2_command",
            ProxyError::V2Family => "v2_family",
            ProxyError::V2Datagram => "v2_datagram",
            ProxyError::V2AddressLength => "v2_address_length",
            ProxyError::V2TooLong => "v2_too_long",
            ProxyError::V2Tlv => "v2_tlv",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            ProxyError::Missing => "no PROXY header",
            ProxyError::V1NotAccepted => "a PROXY v1 header where only v2 is accepted",
            ProxyError::V2NotAccepted => "a PROXY v2 header where only v1 is accepted",
            ProxyError::V1TooLong => "PROXY v1 line longer than 107 bytes",
            ProxyError::V1LineEnd => "PROXY v1 line not ended by CRLF",
            ProxyError::V1Protocol => "PROXY v1 protocol not TCP4, TCP6 or UNKNOWN",
            ProxyError::V1Fields => "PROXY v1 line without exactly four single-spaced fields",
            ProxyError::V1Address => "PROXY v1 address malformed or of the wrong family",
            ProxyError::V1Port => "PROXY v1 port malformed",
            ProxyError::V2Version => "PROXY v2 version not 2",
            ProxyError::V2Command => "PROXY v2 command not LOCAL or PROXY",
            ProxyError::V2Family => "PROXY v2 family/transport undefined",
            ProxyError::V2Datagram => "PROXY v2 datagram transport on a stream",
            ProxyError::V2AddressLength => "PROXY v2 length shorter than its addresses",
            ProxyError::V2TooLong => "PROXY v2 header too long",
            ProxyError::V2Tlv => "PROXY v2 TLV runs past the header",
        };
        f.write_str(what)
    }
}

impl std::error::Error for ProxyError {}

/// `Ok` if `input` and `prefix` agree on their common length, so a header
/// arriving a byte at a time is not refused early, and anything else is.
fn starts_like(input: &[u8], prefix: &[u8]) -> Result<(), ProxyError> {
    let n = input.len().min(prefix.len());
    if input[..n] == prefix[..n] {
        Ok(())
    } else {
        Err(ProxyError::Missing)
    }
}

/// Version 1: `PROXY SP protocol SP src SP dst SP sport SP dport CRLF`, or
/// `PROXY SP UNKNOWN [anything] CRLF`.
fn parse_v1(input: &[u8]) -> Result<Status, ProxyError> {
    let window = &input[..input.len().min(V1_MAX_LEN)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        return if window.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Status::NeedMore)
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ProxyError::V1LineEnd);
    }
    let consumed = lf + 1;
    // `lf >= 6`: the prefix matched and holds no LF.
    let line = &window[V1_PREFIX.len()..lf - 1];
    if line.contains(&b'\r') {
        return Err(ProxyError::V1LineEnd);
    }
    // "UNKNOWN": the receiver ignores the rest of the line and uses the
    // real endpoints.
    if let Some(rest) = line.strip_prefix(b"UNKNOWN") {
        return match rest.first() {
            None | Some(b' ') => Ok(Status::Proxied {
                consumed,
                addresses: Addresses::Unknown,
            }),
            Some(_) => Err(ProxyError::V1Protocol),
        };
    }
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next() {
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => return Err(ProxyError::V1Protocol),
    };
    let mut next = || match fields.next() {
        Some(field) if !field.is_empty() => Ok(field),
        _ => Err(ProxyError::V1Fields),
    };
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::V1Fields);
    }
    let source = SocketAddr::new(v1_address(src, v6)?, v1_port(sport)?);
    let destination = SocketAddr::new(v1_address(dst, v6)?, v1_port(dport)?);
    Ok(Status::Proxied {
        consumed,
        addresses: Addresses::Inet {
            source,
            destination,
        },
    })
}

/// An address in the family the protocol named. std's parsers take the
/// RFC forms and refuse leading zeros in IPv4 octets.
fn v1_address(field: &[u8], v6: bool) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1Address)?;
    let addr = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    addr.map_err(|_| ProxyError::V1Address)
}

/// A port: 1 to 5 digits, no leading zero (except `0` itself), at most 65535.
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    if field.len() > 5 || (field.len() > 1 && field[0] == b'0') {
        return Err(ProxyError::V1Port);
    }
    let mut value: u32 = 0;
    for &b in field {
        if !b.is_ascii_digit() {
            return Err(ProxyError::V1Port);
        }
        value = value * 10 + u32::from(b - b'0');
    }
    u16::try_from(value).map_err(|_| ProxyError::V1Port)
}

/// Version 2: signature, `ver_cmd`, `fam`, big-endian length, then the
/// family's address block and TLVs filling the rest of the length.
fn parse_v2(input: &[u8]) -> Result<Status, ProxyError> {
    // Decide what each fixed byte says as soon as it is there.
    let Some(&ver_cmd) = input.get(12) else {
        return Ok(Status::NeedMore);
    };
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2Version);
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::V2Command),
    };
    let Some(&family) = input.get(13) else {
        return Ok(Status::NeedMore);
    };
    // LOCAL: "the receiver must ... discard the protocol block including
    // the family which is ignored".
    let address_len = if local { 0 } else { v2_address_len(family)? };
    let Some(len) = input.get(14..16) else {
        return Ok(Status::NeedMore);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::V2TooLong);
    }
    if len < address_len {
        return Err(ProxyError::V2AddressLength);
    }
    let consumed = V2_FIXED_LEN + len;
    let Some(payload) = input.get(V2_FIXED_LEN..consumed) else {
        return Ok(Status::NeedMore);
    };
    if local {
        return Ok(Status::Local { consumed });
    }
    let (addresses, tlvs) = payload.split_at(address_len);
    check_tlvs(tlvs)?;
    let addresses = match family >> 4 {
        0x1 => {
            let ip = |at: usize| {
                IpAddr::from([
                    addresses[at],
                    addresses[at + 1],
                    addresses[at + 2],
                    addresses[at + 3],
                ])
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            Addresses::Inet {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        0x2 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&addresses[at..at + 16]);
                IpAddr::from(octets)
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            Addresses::Inet {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        0x3 => Addresses::Unix,
        _ => Addresses::Unknown,
    };
    Ok(Status::Proxied {
        consumed,
        addresses,
    })
}

/// The address block's length for a `PROXY` command's family byte, or the
/// reason it is refused.
fn v2_address_len(family: u8) -> Result<usize, ProxyError> {
    match family {
        // UNSPEC: no addresses ("the receiver ... must use the real
        // connection endpoints"); any bytes in the length are TLVs.
        0x00 => Ok(0),
        0x11 => Ok(12),
        0x21 => Ok(36),
        0x31 => Ok(216),
        0x12 | 0x22 | 0x32 => Err(ProxyError::V2Datagram),
        _ => Err(ProxyError::V2Family),
    }
}

/// TLVs (`type u8, length u16 BE, value`) must tile `tlvs` exactly.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let Some(head) = tlvs.get(..3) else {
            return Err(ProxyError::V2Tlv);
        };
        let len = usize::from(u16::from_be_bytes([head[1], head[2]]));
        tlvs = tlvs.get(3 + len..).ok_or(ProxyError::V2Tlv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use ProxyError::*;

    const ALL: [Accept; 3] = [Accept::V1, Accept::V2, Accept::Any];

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn inet(source: &str, destination: &str) -> Addresses {
        Addresses::Inet {
            source: sa(source),
            destination: sa(destination),
        }
    }

    /// Parses `input` whole, and every proper prefix of it, with `accept`:
    /// a prefix must give `NeedMore` or the same answer as the whole (an
    /// error found early must not turn into success later, and a header is
    /// done only when all of it is there).
    fn check(input: &[u8], accept: Accept) -> Result<Status, ProxyError> {
        let whole = parse(input, accept);
        for cut in 0..input.len() {
            match parse(&input[..cut], accept) {
                Ok(Status::NeedMore) => {}
                Err(e) => assert_eq!(Err(e), whole, "prefix of {cut} bytes of {input:?}"),
                // Done early only once the header itself is all there.
                Ok(done) => assert_eq!(Ok(done), whole, "prefix of {cut} bytes of {input:?}"),
            }
        }
        whole
    }

    /// A v2 header: fixed part with `ver_cmd`, `family`, and `payload`
    /// (its length written from `payload.len()`).
    fn v2(ver_cmd: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn v4_block() -> Vec<u8> {
        // 192.0.2.1:51000 -> 198.51.100.7:443
        let mut b = vec![192, 0, 2, 1, 198, 51, 100, 7];
        b.extend_from_slice(&51000u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn v6_block() -> Vec<u8> {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::ff".parse().unwrap();
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&1234u16.to_be_bytes());
        b.extend_from_slice(&80u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_tcp4() {
        let input = b"PROXY TCP4 192.0.2.1 198.51.100.7 51000 443\r\nGET / HTTP/1.1\r\n";
        let want = Status::Proxied {
            consumed: 45,
            addresses: inet("192.0.2.1:51000", "198.51.100.7:443"),
        };
        for accept in [Accept::V1, Accept::Any] {
            assert_eq!(check(input, accept), Ok(want));
        }
        assert_eq!(&input[45..48], b"GET");
    }

    #[test]
    fn v1_tcp6() {
        let input = b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n";
        assert_eq!(
            check(input, Accept::Any),
            Ok(Status::Proxied {
                consumed: input.len(),
                addresses: inet("[2001:db8::1]:0", "[::ffff:10.0.0.1]:65535"),
            })
        );
    }

    #[test]
    fn v1_unknown() {
        for input in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            b"PROXY UNKNOWN anything at all, ignored\r\n",
        ] {
            assert_eq!(
                check(input, Accept::V1),
                Ok(Status::Proxied {
                    consumed: input.len(),
                    addresses: Addresses::Unknown
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn v1_longest_line_is_107_bytes() {
        // The spec's worst case: UNKNOWN with two full IPv6 addresses.
        let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX_LEN);
        assert!(matches!(
            check(longest, Accept::V1),
            Ok(Status::Proxied { consumed: 107, .. })
        ));
        // One byte more and the CRLF is past the limit.
        let mut too_long = longest[..105].to_vec();
        too_long.extend_from_slice(b"5\r\n");
        assert_eq!(check(&too_long, Accept::V1), Err(V1TooLong));
        // 107 bytes without a line end are refused without waiting for more.
        let mut no_end = b"PROXY UNKNOWN ".to_vec();
        no_end.resize(V1_MAX_LEN, b'x');
        assert_eq!(parse(&no_end, Accept::V1), Err(V1TooLong));
        no_end.pop();
        assert_eq!(parse(&no_end, Accept::V1), Ok(Status::NeedMore));
    }

    #[test]
    fn v1_malformed() {
        let cases: &[(&[u8], ProxyError)] = &[
            // Not the prefix.
            (b"PROXY\r\n", Missing),
            (b"PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n", Missing),
            (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", Missing),
            (b"PRoXY ", Missing),
            // Line ends.
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", V1LineEnd),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", V1LineEnd),
            (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", V1LineEnd),
            (b"PROXY UNKNOWN\rx\r\n", V1LineEnd),
            (b"PROXY \n", V1LineEnd),
            // Protocol.
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", V1Protocol),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", V1Protocol),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", V1Protocol),
            (b"PROXY UNKNOWNX\r\n", V1Protocol),
            (b"PROXY \r\n", V1Protocol),
            (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", V1Protocol),
            (b"PROXY TCP4\r\n", V1Fields),
            // Fields.
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", V1Fields),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", V1Fields),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", V1Fields),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", V1Fields),
            (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", V1Fields),
            // Addresses.
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", V1Address),
            (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", V1Address),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", V1Address),
            (b"PROXY TCP4 1.2.3.4 ::1 1 2\r\n", V1Address),
            (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", V1Address),
            (b"PROXY TCP6 ::1 [::1] 1 2\r\n", V1Address),
            (b"PROXY TCP6 ::1 ::g 1 2\r\n", V1Address),
            (b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n", V1Address),
            (b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", V1Address),
            // Ports.
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 00 2\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 +2\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 -2\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x2\r\n", V1Port),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 123456\r\n", V1Port),
        ];
        for &(input, err) in cases {
            assert_eq!(check(input, Accept::V1), Err(err), "{input:?}");
            assert_eq!(check(input, Accept::Any), Err(err), "{input:?}");
        }
    }

    #[test]
    fn version_not_accepted() {
        let v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n";
        assert_eq!(check(v1, Accept::V2), Err(V1NotAccepted));
        let v2 = v2(0x21, 0x11, &v4_block());
        assert_eq!(check(&v2, Accept::V1), Err(V2NotAccepted));
        // Decided once the prefix or signature is whole, before the rest
        // arrives; a shorter beginning may still be something else.
        assert_eq!(parse(b"PROXY ", Accept::V2), Err(V1NotAccepted));
        assert_eq!(parse(&V2_SIGNATURE, Accept::V1), Err(V2NotAccepted));
        assert_eq!(parse(b"PROXY", Accept::V2), Ok(Status::NeedMore));
        assert_eq!(parse(b"P", Accept::V2), Ok(Status::NeedMore));
        assert_eq!(parse(b"P\0\0", Accept::V2), Err(Missing));
        assert_eq!(parse(b"POST", Accept::V2), Err(Missing));
        assert_eq!(parse(&V2_SIGNATURE[..11], Accept::V1), Ok(Status::NeedMore));
        assert_eq!(parse(b"\r\n\r\nX", Accept::V1), Err(Missing));
    }

    #[test]
    fn missing_header_is_refused_at_the_first_byte() {
        for accept in ALL {
            assert_eq!(parse(b"", accept), Ok(Status::NeedMore));
            assert_eq!(parse(b"G", accept), Err(Missing));
            assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n", accept), Err(Missing));
            assert_eq!(parse(b"\x16\x03\x01", accept), Err(Missing));
            assert_eq!(parse(b"\0", accept), Err(Missing));
            // A v2 signature that goes wrong, at any byte.
            for at in 1..12 {
                let mut sig = V2_SIGNATURE;
                sig[at] ^= 0x20;
                // The signature is checked before the version is.
                assert_eq!(parse(&sig[..=at], accept), Err(Missing), "byte {at}");
            }
        }
        assert_eq!(parse(b"\r\n\r\n\r\n", Accept::Any), Err(Missing));
        assert_eq!(parse(b"PUT / HTTP/1.1\r\n", Accept::Any), Err(Missing));
    }

    #[test]
    fn v2_inet() {
        let mut input = v2(0x21, 0x11, &v4_block());
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let want = Status::Proxied {
            consumed: 28,
            addresses: inet("192.0.2.1:51000", "198.51.100.7:443"),
        };
        assert_eq!(check(&input, Accept::V2), Ok(want));
        assert_eq!(check(&input, Accept::Any), Ok(want));
    }

    #[test]
    fn v2_inet6() {
        let input = v2(0x21, 0x21, &v6_block());
        assert_eq!(
            check(&input, Accept::Any),
            Ok(Status::Proxied {
                consumed: 16 + 36,
                addresses: inet("[2001:db8::1]:1234", "[2001:db8::ff]:80"),
            })
        );
    }

    #[test]
    fn v2_unix_and_unspec_use_real_endpoints() {
        let input = v2(0x21, 0x31, &[b'/'; 216]);
        assert_eq!(
            check(&input, Accept::Any),
            Ok(Status::Proxied {
                consumed: 232,
                addresses: Addresses::Unix
            })
        );
        let input = v2(0x21, 0x00, &[]);
        assert_eq!(
            check(&input, Accept::Any),
            Ok(Status::Proxied {
                consumed: 16,
                addresses: Addresses::Unknown
            })
        );
    }

    #[test]
    fn v2_local() {
        // HAProxy's health checks with send-proxy-v2: LOCAL, UNSPEC, no payload.
        let input = v2(0x20, 0x00, &[]);
        assert_eq!(
            check(&input, Accept::V2),
            Ok(Status::Local { consumed: 16 })
        );
        // The family and block of a LOCAL are ignored, whatever they hold.
        let input = v2(0x20, 0xff, &[1, 2, 3, 4, 5]);
        assert_eq!(
            check(&input, Accept::Any),
            Ok(Status::Local { consumed: 21 })
        );
        let input = v2(0x20, 0x11, &[]);
        assert_eq!(
            check(&input, Accept::Any),
            Ok(Status::Local { consumed: 16 })
        );
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut payload = v4_block();
        // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "", NOOP padding of 5,
        // an unknown type 0xEE.
        payload.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        payload.extend_from_slice(&[0x02, 0, 0]);
        payload.extend_from_slice(&[0x04, 0, 5, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(&[0xee, 0, 1, 7]);
        let input = v2(0x21, 0x11, &payload);
        assert_eq!(
            check(&input, Accept::Any),
            Ok(Status::Proxied {
                consumed: 16 + payload.len(),
                addresses: inet("192.0.2.1:51000", "198.51.100.7:443"),
            })
        );
        // TLVs after UNSPEC too.
        let input = v2(0x21, 0x00, &[0x04, 0, 1, 0]);
        assert!(matches!(
            check(&input, Accept::Any),
            Ok(Status::Proxied { consumed: 20, .. })
        ));
    }

    #[test]
    fn v2_malformed() {
        let block = v4_block();
        let with_tlvs = |tlvs: &[u8]| {
            let mut p = block.clone();
            p.extend_from_slice(tlvs);
            v2(0x21, 0x11, &p)
        };
        let mut too_long = V2_SIGNATURE.to_vec();
        too_long.extend_from_slice(&[0x21, 0x11]);
        too_long.extend_from_slice(&((V2_MAX_PAYLOAD + 1) as u16).to_be_bytes());
        let mut max_len = V2_SIGNATURE.to_vec();
        max_len.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        let cases: Vec<(Vec<u8>, ProxyError)> = vec![
            // Version nibble.
            (v2(0x11, 0x11, &block), V2Version),
            (v2(0x31, 0x11, &block), V2Version),
            (v2(0x01, 0x11, &block), V2Version),
            (v2(0xf1, 0x11, &block), V2Version),
            // Command nibble.
            (v2(0x22, 0x11, &block), V2Command),
            (v2(0x2f, 0x11, &block), V2Command),
            // Family/transport bytes outside the defined set.
            (v2(0x21, 0x01, &block), V2Family),
            (v2(0x21, 0x02, &block), V2Family),
            (v2(0x21, 0x10, &block), V2Family),
            (v2(0x21, 0x13, &block), V2Family),
            (v2(0x21, 0x20, &v6_block()), V2Family),
            (v2(0x21, 0x30, &[0; 216]), V2Family),
            (v2(0x21, 0x41, &block), V2Family),
            (v2(0x21, 0xff, &block), V2Family),
            // Datagrams on a stream.
            (v2(0x21, 0x12, &block), V2Datagram),
            (v2(0x21, 0x22, &v6_block()), V2Datagram),
            (v2(0x21, 0x32, &[0; 216]), V2Datagram),
            // Length shorter than the addresses.
            (v2(0x21, 0x11, &block[..11]), V2AddressLength),
            (v2(0x21, 0x11, &[]), V2AddressLength),
            (v2(0x21, 0x21, &block), V2AddressLength),
            (v2(0x21, 0x31, &[0; 215]), V2AddressLength),
            // Length over the limit, refused before the payload arrives.
            (too_long, V2TooLong),
            (max_len, V2TooLong),
            // TLVs that do not tile the rest.
            (with_tlvs(&[0x01]), V2Tlv),
            (with_tlvs(&[0x01, 0]), V2Tlv),
            (with_tlvs(&[0x01, 0, 1]), V2Tlv),
            (with_tlvs(&[0x01, 0, 3, 1, 2]), V2Tlv),
            (with_tlvs(&[0x04, 0, 0, 0x01, 0xff, 0xff]), V2Tlv),
            (with_tlvs(&[0x01, 0, 1, 9, 0x02]), V2Tlv),
            (v2(0x21, 0x00, &[0x04]), V2Tlv),
        ];
        for (input, err) in &cases {
            assert_eq!(check(input, Accept::V2), Err(*err), "{input:?}");
            assert_eq!(check(input, Accept::Any), Err(*err), "{input:?}");
        }
    }

    #[test]
    fn v2_truncated_is_need_more() {
        // A header cut anywhere, even before its length, waits: the caller
        // decides how long (the request timeout) and refuses at EOF.
        let mut payload = v6_block();
        payload.extend_from_slice(&[0x01, 0, 2, b'h', b'2']);
        let input = v2(0x21, 0x21, &payload);
        for cut in 0..input.len() {
            assert_eq!(
                parse(&input[..cut], Accept::Any),
                Ok(Status::NeedMore),
                "{cut}"
            );
        }
        let longest = v2(0x21, 0x00, &{
            let mut tlv = vec![0x04];
            tlv.extend_from_slice(&((V2_MAX_PAYLOAD - 3) as u16).to_be_bytes());
            tlv.resize(V2_MAX_PAYLOAD, 0);
            tlv
        });
        assert_eq!(longest.len(), MAX_HEADER_LEN);
        assert_eq!(
            parse(&longest, Accept::V2),
            Ok(Status::Proxied {
                consumed: MAX_HEADER_LEN,
                addresses: Addresses::Unknown
            })
        );
        assert_eq!(
            parse(&longest[..MAX_HEADER_LEN - 1], Accept::V2),
            Ok(Status::NeedMore)
        );
    }

    #[test]
    fn errors_have_names_and_messages() {
        for e in [
            Missing,
            V1NotAccepted,
            V2NotAccepted,
            V1TooLong,
            V1LineEnd,
            V1Protocol,
            V1Fields,
            V1Address,
            V1Port,
            V2Version,
            V2Command,
            V2Family,
            V2Datagram,
            V2AddressLength,
            V2TooLong,
            V2Tlv,
        ] {
            assert!(!e.name().is_empty());
            assert!(e.to_string().contains("PROXY"), "{e}");
        }
    }
}
