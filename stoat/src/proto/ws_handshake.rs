//! The WebSocket opening handshake, server side (RFC 6455 §4.2): checks a
//! request head and writes the `101 Switching Protocols` answer.
//!
//! Contract: [`validate`] looks at a parsed [`RequestHead`] and the bytes
//! its spans index, and returns what the answer needs (the key, the
//! offered subprotocols, the `Origin`) or a [`HandshakeError`] with its
//! status: 400 for a request that is not a valid handshake, 426 (with
//! `Sec-WebSocket-Version: 13`) for another protocol version.
//! [`encode_accept`] writes the 101 response. Extensions
//! (`Sec-WebSocket-Extensions`, permessage-deflate) are never accepted:
//! the answer names none, which declines them (§9.1).

use base64::Engine as _;
use sha1_smol::Sha1;

use crate::proto::{Method, RequestHead, Version};

/// The GUID appended to the key (§1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a request is not a WebSocket handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Not `GET` (§4.1: the method MUST be GET).
    Method,
    /// Not HTTP/1.1 or later.
    Version,
    /// No `Upgrade: websocket`.
    Upgrade,
    /// No `upgrade` token in `Connection`.
    Connection,
    /// `Sec-WebSocket-Version` is missing or not 13: answered 426.
    WsVersion,
    /// `Sec-WebSocket-Key` is missing or not base64 of 16 bytes.
    Key,
}

impl HandshakeError {
    /// The response status: 426 Upgrade Required for a version we do not
    /// speak (§4.4), else 400.
    pub fn status(self) -> u16 {
        match self {
            HandshakeError::WsVersion => 426,
            _ => 400,
        }
    }

    /// A short explanation for the response body.
    pub fn message(self) -> &'static str {
        match self {
            HandshakeError::Method => "a WebSocket handshake must be GET\n",
            HandshakeError::Version => "a WebSocket handshake must be HTTP/1.1\n",
            HandshakeError::Upgrade => "missing Upgrade: websocket\n",
            HandshakeError::Connection => "missing the upgrade token in Connection\n",
            HandshakeError::WsVersion => "only Sec-WebSocket-Version 13 is supported\n",
            HandshakeError::Key => "Sec-WebSocket-Key must be base64 of 16 bytes\n",
        }
    }
}

/// A valid handshake request, borrowed from its buffer.
#[derive(Debug, Clone, Copy)]
pub struct Handshake<'a> {
    /// The `Sec-WebSocket-Key` value.
    pub key: &'a [u8],
    /// The `Origin` value, if any.
    pub origin: Option<&'a [u8]>,
    head: &'a RequestHead,
    buf: &'a [u8],
}

impl<'a> Handshake<'a> {
    /// The subprotocols the client offers (`Sec-WebSocket-Protocol`, every
    /// field line, comma-separated), in its order.
    pub fn protocols(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.head
            .headers
            .iter()
            .filter(move |h| {
                h.name
                    .of(buf)
                    .eq_ignore_ascii_case(b"sec-websocket-protocol")
            })
            .flat_map(move |h| tokens(h.value.of(buf)))
    }
}

/// Checks that `head` is a WebSocket opening handshake (§4.2.1).
pub fn validate<'a>(head: &'a RequestHead, buf: &'a [u8]) -> Result<Handshake<'a>, HandshakeError> {
    if head.method != Method::Get {
        return Err(HandshakeError::Method);
    }
    if head.version != Version::Http11 {
        return Err(HandshakeError::Version);
    }
    let fields = |name: &'static [u8]| {
        head.headers
            .iter()
            .filter(move |h| h.name.of(buf).eq_ignore_ascii_case(name))
            .map(move |h| h.value.of(buf))
    };
    let has_token = |name: &'static [u8], token: &[u8]| {
        fields(name).any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(token)))
    };
    if !has_token(b"upgrade", b"websocket") {
        return Err(HandshakeError::Upgrade);
    }
    if !has_token(b"connection", b"upgrade") {
        return Err(HandshakeError::Connection);
    }
    let mut versions = fields(b"sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v == b"13" => {}
        _ => return Err(HandshakeError::WsVersion),
    }
    let mut keys = fields(b"sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        _ => return Err(HandshakeError::Key),
    };
    // §4.2.1: a base64-encoded value that, when decoded, is 16 bytes long.
    let mut raw = [0u8; 18];
    match base64::engine::general_purpose::STANDARD.decode_slice(key, &mut raw) {
        Ok(16) => {}
        _ => return Err(HandshakeError::Key),
    }
    Ok(Handshake {
        key,
        origin: fields(b"origin").next(),
        head,
        buf,
    })
}

/// `Sec-WebSocket-Accept` for `key`: base64(SHA-1(key + GUID)) (§4.2.2).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.digest().bytes();
    let mut out = [0u8; 28];
    // 20 bytes encode to exactly 28 characters.
    let n = base64::engine::general_purpose::STANDARD
        .encode_slice(digest, &mut out)
        .unwrap_or(0);
    debug_assert_eq!(n, 28);
    out
}

/// Writes the `101 Switching Protocols` response accepting `key`, naming
/// `protocol` if one was chosen. No extension is named: all are declined.
pub fn encode_accept(out: &mut Vec<u8>, key: &[u8], protocol: Option<&[u8]>, server: &[u8]) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accept_key(key));
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    if !server.is_empty() {
        out.extend_from_slice(b"Server: ");
        out.extend_from_slice(server);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The comma-separated tokens of a field value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{HeadParser, Limits};

    fn head(text: &str) -> (RequestHead, Vec<u8>) {
        let buf = text.as_bytes().to_vec();
        let mut head = RequestHead::default();
        assert_eq!(
            HeadParser::new().parse(&buf, &Limits::default(), &mut head),
            Ok(true)
        );
        (head, buf)
    }

    fn check(fields: &str) -> Result<Vec<String>, HandshakeError> {
        check_line("GET /chat HTTP/1.1", fields)
    }

    fn check_line(line: &str, fields: &str) -> Result<Vec<String>, HandshakeError> {
        let (h, buf) = head(&format!("{line}\r\nHost: a\r\n{fields}\r\n"));
        validate(&h, &buf).map(|hs| {
            hs.protocols()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
    }

    const GOOD: &str = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    #[test]
    fn rfc_example_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_handshake_and_protocols() {
        assert_eq!(check(GOOD), Ok(vec![]));
        let with = format!(
            "{GOOD}Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Protocol: x\r\n"
        );
        assert_eq!(
            check(&with),
            Ok(vec!["chat".into(), "superchat".into(), "x".into()])
        );
    }

    #[test]
    fn bad_handshakes() {
        use HandshakeError::*;
        assert_eq!(check_line("POST /chat HTTP/1.1", GOOD), Err(Method));
        assert_eq!(check_line("GET /chat HTTP/1.0", GOOD), Err(Version));
        assert_eq!(check(&GOOD.replace("websocket", "h2c")), Err(Upgrade));
        assert_eq!(
            check(&GOOD.replace("keep-alive, Upgrade", "keep-alive")),
            Err(Connection)
        );
        assert_eq!(check(&GOOD.replace(": 13", ": 8")), Err(WsVersion));
        assert_eq!(
            check(&GOOD.replace("Sec-WebSocket-Version: 13\r\n", "")),
            Err(WsVersion)
        );
        assert_eq!(
            check(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=")),
            Err(Key)
        );
        assert_eq!(
            check(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "!!!")),
            Err(Key)
        );
        assert_eq!(WsVersion.status(), 426);
        assert_eq!(Key.status(), 400);
    }

    #[test]
    fn accept_response() {
        let mut out = Vec::new();
        encode_accept(&mut out, b"dGhlIHNhbXBsZSBub25jZQ==", Some(b"chat"), b"");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
        assert!(!text.contains("Extensions"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
