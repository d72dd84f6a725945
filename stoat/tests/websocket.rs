//! WebSocket over real sockets, in both threading models: the handshake
//! (400, 426, 403, subprotocols), echo of whole and fragmented messages,
//! ping/pong, the close handshake, protocol failures (1002, 1007, 1009),
//! pushes from another thread with `Full` and `Closed`, pings without
//! pongs, and the close 1001 of a graceful stop. The client is written
//! here byte by byte, so every frame on the wire is the test's own.

#[macro_use]
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use stoat::app::{Message, SendError, Session, WebSocket, WsContext, WsSender};
use stoat::config::{Config, Model};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const MASK: [u8; 4] = [1, 2, 3, 4];

/// Echoes; keeps a sender of every connection in `senders`; records
/// close codes in `closes`.
#[derive(Default, Clone)]
struct Shared {
    senders: Arc<Mutex<Vec<WsSender>>>,
    closes: Arc<Mutex<Vec<Option<u16>>>>,
}

struct Echo(Shared);

impl Session for Echo {
    fn on_open(&mut self, ws: &mut WsContext<'_>) {
        if let Some(s) = ws.sender() {
            self.0.senders.lock().unwrap().push(s);
        }
        if let Some(p) = ws.protocol() {
            let _ = ws.send_text(format!("protocol {p}"));
        }
    }

    fn on_message(&mut self, ws: &mut WsContext<'_>, msg: Message<'_>) {
        match msg {
            Message::Text(t) => ws.send_text(t).is_ok(),
            Message::Binary(b) => ws.send_binary(b).is_ok(),
        };
    }

    fn on_close(&mut self, code: Option<u16>, _reason: &str) {
        self.0.closes.lock().unwrap().push(code);
    }
}

fn start_ws(cfg: Config) -> (stoat::app::ServerHandle, Shared) {
    let shared = Shared::default();
    let s = shared.clone();
    let server = start_with(cfg, move |srv| {
        let s2 = s.clone();
        srv.websocket("/", WebSocket::new(move |_| Echo(s.clone())))
            .websocket(
                "/chat",
                WebSocket::new(move |_| Echo(s2.clone()))
                    .protocols(&["v2", "v1"])
                    .check_origin(|o| o != Some("http://evil.example")),
            )
    });
    (server, shared)
}

/// A raw client.
struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

/// The head of a response, as text, and the bytes read after it.
fn handshake(addr: SocketAddr, path: &str, fields: &str) -> (String, Client) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let rest = buf[end + 4..].to_vec();
            return (head, Client { s, buf: rest });
        }
        let n = s.read(&mut chunk).expect("a response head");
        assert!(n > 0, "closed before a response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn good_fields() -> String {
    format!(
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n"
    )
}

fn open(addr: SocketAddr) -> Client {
    let (head, c) = handshake(addr, "/", &good_fields());
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c
}

/// A client frame: `b0` (FIN, RSV, opcode) and the payload, masked.
fn frame(b0: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![b0];
    let m = if masked { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xFFFF {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl Client {
    fn send(&mut self, b0: u8, payload: &[u8]) {
        self.s.write_all(&frame(b0, payload, true)).unwrap();
    }

    fn fill(&mut self, n: usize) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        while self.buf.len() < n {
            match self.s.read(&mut chunk) {
                Ok(0) => return false,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return false,
                Err(e) => panic!("read: {e}"),
            }
        }
        true
    }

    /// The next server frame: (first byte, payload); `None` at the end.
    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        if !self.fill(2) {
            return None;
        }
        assert_eq!(self.buf[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match self.buf[1] & 0x7F {
            126 => {
                assert!(self.fill(4));
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                assert!(self.fill(10));
                let mut b = [0; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        assert!(self.fill(at + len), "a whole frame");
        let b0 = self.buf[0];
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Some((b0, payload))
    }

    /// The next frame must be a close; returns its code.
    fn close_code(&mut self) -> Option<u16> {
        let (b0, p) = self.frame().expect("a close frame");
        assert_eq!(b0, 0x88, "a close frame, got {b0:#x} {p:?}");
        (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]))
    }

    /// The server closes the TCP connection (end of stream).
    fn expect_end(&mut self) {
        assert!(self.frame().is_none(), "the connection ends");
    }
}

fn handshake_answers(model: Model) {
    let (server, _) = start_ws(config(model));
    let addr = server.local_addr();
    let (head, _) = handshake(addr, "/", &good_fields());
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    assert!(!head.contains("Sec-WebSocket-Extensions"), "{head}");
    // Bad handshakes: 400.
    for fields in [
        good_fields().replace("Upgrade: websocket\r\n", ""),
        good_fields().replace("Connection: Upgrade", "Connection: keep-alive"),
        good_fields().replace(KEY, "c2hvcnQ="),
        good_fields().replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
    ] {
        let (head, _) = handshake(addr, "/", &fields);
        assert!(head.starts_with("HTTP/1.1 400 "), "{fields}: {head}");
    }
    // Another version: 426 naming 13.
    let (head, _) = handshake(addr, "/", &good_fields().replace(": 13", ": 8"));
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    // Subprotocol: the endpoint's preference among the client's offers.
    let offer = format!("{}Sec-WebSocket-Protocol: v1, v2\r\n", good_fields());
    let (head, mut c) = handshake(addr, "/chat", &offer);
    assert!(head.contains("Sec-WebSocket-Protocol: v2\r\n"), "{head}");
    assert_eq!(c.frame(), Some((0x81, b"protocol v2".to_vec())));
    let (head, _) = handshake(
        addr,
        "/chat",
        &format!("{}Sec-WebSocket-Protocol: v9\r\n", good_fields()),
    );
    assert!(
        head.starts_with("HTTP/1.1 101 ") && !head.contains("Protocol:"),
        "{head}"
    );
    // The origin hook.
    let evil = format!("{}Origin: http://evil.example\r\n", good_fields());
    let (head, _) = handshake(addr, "/chat", &evil);
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    drop(c);
    stop(server);
}

fn echo_whole_and_fragmented(model: Model) {
    let (server, _) = start_ws(config(model));
    let mut c = open(server.local_addr());
    c.send(0x81, b"hello");
    assert_eq!(c.frame(), Some((0x81, b"hello".to_vec())));
    c.send(0x82, &[0, 1, 2]);
    assert_eq!(c.frame(), Some((0x82, vec![0, 1, 2])));
    // Larger than a read buffer.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    c.send(0x82, &big);
    assert_eq!(c.frame(), Some((0x82, big)));
    // Fragments with a ping between them: the pong comes first.
    c.send(0x01, "κό".as_bytes());
    c.send(0x89, b"p1");
    c.send(0x00, &"σμε".as_bytes()[..3]);
    c.send(0x80, &"σμε".as_bytes()[3..]);
    assert_eq!(c.frame(), Some((0x8A, b"p1".to_vec())));
    assert_eq!(c.frame(), Some((0x81, "κόσμε".as_bytes().to_vec())));
    // Frames typed one byte at a time.
    for b in frame(0x81, b"slow", true) {
        c.s.write_all(&[b]).unwrap();
    }
    assert_eq!(c.frame(), Some((0x81, b"slow".to_vec())));
    drop(c);
    stop(server);
}

fn close_handshake(model: Model) {
    let (server, shared) = start_ws(config(model));
    let mut c = open(server.local_addr());
    let mut p = 1000u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"bye");
    c.send(0x88, &p);
    assert_eq!(c.close_code(), Some(1000));
    c.expect_end();
    drop(c);
    wait_until("on_close", || {
        *shared.closes.lock().unwrap() == [Some(1000)]
    });
    stop(server);
}

/// Frames sent with the handshake, then the client's end of stream: the
/// batch that upgrades stops its HTTP reading at the 101, the frame is
/// echoed, the end of stream ends the connection (1006), and the thread
/// goes on serving (a regression: the upgraded connection's HTTP read
/// loop once spun on the end of stream).
fn frames_with_the_handshake_then_eof(model: Model) {
    let mut cfg = config(model);
    cfg.http.network_threads = 1;
    let (server, shared) = start_ws(cfg);
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!("GET / HTTP/1.1\r\nHost: x\r\n{}\r\n", good_fields()).into_bytes();
    req.extend_from_slice(&frame(0x81, b"early", true));
    s.write_all(&req).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("the server ends the connection");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 101 "), "{text}");
    assert!(got.ends_with(b"\x81\x05early"), "{text}");
    wait_until("on_close", || {
        *shared.closes.lock().unwrap() == [Some(1006)]
    });
    let mut c = open(server.local_addr());
    c.send(0x81, b"again");
    assert_eq!(c.frame(), Some((0x81, b"again".to_vec())));
    drop(c);
    stop(server);
}

fn protocol_failures(model: Model) {
    let mut cfg = config(model);
    cfg.http.ws_max_message_size = 1000;
    let (server, _) = start_ws(cfg);
    let addr = server.local_addr();
    // Unmasked client frame: 1002.
    let mut c = open(addr);
    c.s.write_all(&frame(0x81, b"x", false)).unwrap();
    assert_eq!(c.close_code(), Some(1002));
    c.expect_end();
    // Reserved bit, reserved opcode, fragmented ping, bad close code: 1002.
    for (b0, payload) in [
        (0xC1, &b"x"[..]),
        (0x83, b""),
        (0x09, b""),
        (0x88, &[0x03, 0xED][..]),
    ] {
        let mut c = open(addr);
        c.send(b0, payload);
        assert_eq!(c.close_code(), Some(1002), "{b0:#x}");
        c.expect_end();
    }
    // Invalid UTF-8 in a first fragment: 1007 before the message ends.
    let mut c = open(addr);
    c.send(0x01, &[b'a', 0xC0, 0xAF]);
    assert_eq!(c.close_code(), Some(1007));
    c.expect_end();
    // Too big, across fragments: 1009.
    let mut c = open(addr);
    c.send(0x02, &[0; 600]);
    c.send(0x80, &[0; 600]);
    assert_eq!(c.close_code(), Some(1009));
    c.expect_end();
    drop(c);
    stop(server);
}

fn push_from_another_thread(model: Model) {
    let mut cfg = config(model);
    cfg.http.ws_backlog = 4;
    let (server, shared) = start_ws(cfg);
    let mut c = open(server.local_addr());
    wait_until("the sender", || shared.senders.lock().unwrap().len() == 1);
    let sender = shared.senders.lock().unwrap()[0].clone();
    std::thread::spawn({
        let s = sender.clone();
        move || s.send_text("pushed").unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(c.frame(), Some((0x81, b"pushed".to_vec())));
    // The client stops reading: the socket fills, then the backlog.
    let big = vec![7u8; 256 * 1024];
    let start = Instant::now();
    let full = loop {
        match sender.send_binary(&big) {
            Ok(()) => {}
            Err(e) => break e,
        }
        assert!(start.elapsed() < TIMEOUT, "Full within the deadline");
        std::thread::yield_now();
    };
    assert_eq!(full, SendError::Full(&big));
    drop(c);
    wait_until("Closed after the client left", || {
        sender.send_text("x") == Err(SendError::Closed("x"))
    });
    assert!(sender.is_closed());
    stop(server);
}

fn ping_without_pong_closes(model: Model) {
    let mut cfg = config(model);
    cfg.http.ws_ping_sec = 1;
    let (server, _) = start_ws(cfg);
    let mut c = open(server.local_addr());
    // One ping; we do not answer; the next interval closes.
    assert_eq!(c.frame(), Some((0x89, vec![])));
    assert_eq!(c.close_code(), Some(1001));
    c.send(0x88, &1001u16.to_be_bytes());
    c.expect_end();
    // Answered pings keep the connection open.
    let mut c = open(server.local_addr());
    for _ in 0..2 {
        assert_eq!(c.frame(), Some((0x89, vec![])));
        c.send(0x8A, b"");
    }
    c.send(0x81, b"alive");
    assert_eq!(c.frame(), Some((0x81, b"alive".to_vec())));
    drop(c);
    stop(server);
}

fn graceful_stop_sends_1001(model: Model) {
    let (server, shared) = start_ws(config(model));
    let mut c = open(server.local_addr());
    c.send(0x81, b"hi");
    assert_eq!(c.frame(), Some((0x81, b"hi".to_vec())));
    server.shutdown();
    assert_eq!(c.close_code(), Some(1001));
    c.send(0x88, &1001u16.to_be_bytes());
    c.expect_end();
    join(server);
    assert_eq!(*shared.closes.lock().unwrap(), [Some(1001)]);
}

both_models!(
    handshake_answers,
    echo_whole_and_fragmented,
    close_handshake,
    frames_with_the_handshake_then_eof,
    protocol_failures,
    push_from_another_thread,
    ping_without_pong_closes,
    graceful_stop_sends_1001,
);
