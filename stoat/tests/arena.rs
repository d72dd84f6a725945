//! The arena example (`examples/arena.rs`) against HttpArena's contract over
//! real sockets, with the shared data set (`shared/arena/data`, found above
//! the repository), as their validation script checks it: baseline (GET,
//! POST with Content-Length and chunked bodies, requests split across
//! writes), pipelined, limited-conn, json, json-comp, upload (streamed),
//! static (every file, content types, precompressed answers, 404) and
//! echo-ws.

#[macro_use]
mod common;

#[allow(dead_code)]
#[path = "../examples/arena.rs"]
mod arena;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;

use stoat::app::ServerHandle;
use stoat::config::Model;

use common::{stop, Client, Resp, TIMEOUT};

both_models!(
    baseline_and_limited_conn,
    pipelined,
    json_and_json_comp,
    upload_streams,
    static_files,
    echo_ws
);

/// `shared/arena/data`: beside the repository (CI's clone, /work/main) or
/// above a worktree (/work/wt/NAME).
fn data_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for dir in manifest.ancestors() {
        let candidate = dir.join("shared/arena/data");
        if candidate.join("dataset.json").is_file() {
            return candidate;
        }
    }
    panic!("shared/arena/data not found above {}", manifest.display());
}

fn start(model: Model) -> ServerHandle {
    let (mut config, _) = arena::parse_args(std::iter::empty()).expect("default arguments");
    config.http.model = model;
    config.http.port = 0;
    config.http.bind_address = [127, 0, 0, 1].into();
    config.http.network_threads = 2;
    config.http.accept_threads = 1;
    let data = data_dir();
    arena::server(config, data.to_str().unwrap())
        .expect("the arena server builds")
        .start()
        .expect("server starts")
}

fn request(c: &mut Client, raw: &str) -> Resp {
    c.send(raw.as_bytes());
    c.response()
}

/// A small deterministic generator (the same inputs every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn baseline_and_limited_conn(model: Model) {
    let server = start(model);
    let mut rng = Lcg(16);
    let mut c = Client::connect(server.local_addr());
    for i in 0..60 {
        let (a, b, n) = (
            rng.next(100_000) as i64,
            rng.next(100_000) as i64,
            rng.next(1000) as i64,
        );
        let path = format!("/baseline11?a={a}&b={b}");
        let (raw, want) = match i % 3 {
            0 => (format!("GET {path} HTTP/1.1\r\nHost: l\r\n\r\n"), a + b),
            1 => {
                let body = n.to_string();
                (
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: l\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                    a + b + n,
                )
            }
            _ => {
                let body = n.to_string();
                (
                    format!(
                        "POST {path} HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                        body.len()
                    ),
                    a + b + n,
                )
            }
        };
        // Split across writes, at a point that moves.
        let bytes = raw.as_bytes();
        let cut = 1 + (i * 7) % (bytes.len() - 1);
        c.send(&bytes[..cut]);
        c.send(&bytes[cut..]);
        let r = c.response();
        assert_eq!(r.status, 200, "{raw:?}");
        assert_eq!(r.text(), want.to_string(), "{raw:?}");
        assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    }
    // The documented example values.
    let r = request(
        &mut c,
        "GET /baseline11?a=13&b=42 HTTP/1.1\r\nHost: l\r\n\r\n",
    );
    assert_eq!(r.text(), "55");
    let r = request(
        &mut c,
        "POST /baseline11?a=13&b=42 HTTP/1.1\r\nHost: l\r\nContent-Length: 2\r\n\r\n20",
    );
    assert_eq!(r.text(), "75");
    // limited-conn: ten requests, the client closes, and again.
    for _ in 0..3 {
        let mut c = Client::connect(server.local_addr());
        for k in 0..10 {
            let r = request(
                &mut c,
                &format!("GET /baseline11?a={k}&b=1 HTTP/1.1\r\nHost: l\r\n\r\n"),
            );
            assert_eq!(r.text(), (k + 1).to_string());
        }
        drop(c);
    }
    stop(server);
}

fn pipelined(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    let batch = "GET /pipeline HTTP/1.1\r\nHost: l\r\n\r\n".repeat(16);
    for _ in 0..3 {
        c.send(batch.as_bytes());
        for i in 0..16 {
            let r = c.response();
            assert_eq!((r.status, r.text().as_str()), (200, "ok"), "response {i}");
            assert!(r.header("content-type").unwrap().starts_with("text/plain"));
        }
    }
    stop(server);
}

fn expected_json(count: usize, m: i64) -> serde_json::Value {
    let data: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(data_dir().join("dataset.json")).unwrap()).unwrap();
    let items: Vec<serde_json::Value> = data
        .into_iter()
        .take(count)
        .map(|mut item| {
            let total = item["price"].as_i64().unwrap() * item["quantity"].as_i64().unwrap() * m;
            item["total"] = total.into();
            item
        })
        .collect();
    serde_json::json!({ "items": items, "count": count })
}

fn json_and_json_comp(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    for (count, m) in [(1, 1), (3, 2), (17, 5), (50, 3), (50, 1)] {
        let want = expected_json(count, m);
        let r = request(
            &mut c,
            &format!("GET /json/{count}?m={m} HTTP/1.1\r\nHost: l\r\n\r\n"),
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("content-encoding"),
            None,
            "no Accept-Encoding, no coding"
        );
        let got: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(got, want, "json/{count}?m={m}");

        for (accept, coding) in [
            ("gzip, br", "gzip"),
            ("br", "br"),
            ("gzip", "gzip"),
            ("br;q=0.5, gzip", "gzip"),
        ] {
            let r = request(
                &mut c,
                &format!("GET /json/{count}?m={m} HTTP/1.1\r\nHost: l\r\nAccept-Encoding: {accept}\r\n\r\n"),
            );
            assert_eq!(r.status, 200);
            let body = match r.header("content-encoding") {
                Some(c) if c == coding => {
                    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
                    decode(c, &r.body)
                }
                // Bodies below the size threshold go as they are.
                None if r.body.len() < 256 => r.body.clone(),
                other => panic!("json/{count} with {accept}: Content-Encoding {other:?}"),
            };
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, want, "json/{count}?m={m} with {accept}");
        }
    }
    let r = request(&mut c, "GET /json/abc HTTP/1.1\r\nHost: l\r\n\r\n");
    assert_eq!(r.status, 400);
    stop(server);
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(bytes).read_to_end(&mut out),
        "br" => brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out),
        other => panic!("unexpected coding {other}"),
    }
    .expect("a valid body in its coding");
    out
}

fn upload_streams(model: Model) {
    let server = start(model);
    let mut c = Client::connect(server.local_addr());
    for len in [500_000usize, 2_000_000, 20_000_000] {
        c.send(
            format!("POST /upload HTTP/1.1\r\nHost: l\r\nContent-Length: {len}\r\n\r\n").as_bytes(),
        );
        let piece = vec![b'u'; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(piece.len());
            c.send(&piece[..n]);
            left -= n;
        }
        let r = c.response();
        assert_eq!((r.status, r.text()), (200, len.to_string()));
    }
    // Chunked, in uneven chunks.
    c.send(b"POST /upload HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut total = 0;
    for size in [1usize, 1000, 65_536, 300_000, 7] {
        c.send(format!("{size:x}\r\n").as_bytes());
        c.send(&vec![b'c'; size]);
        c.send(b"\r\n");
        total += size;
    }
    c.send(b"0\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text()), (200, total.to_string()));
    stop(server);
}

fn static_files(model: Model) {
    let server = start(model);
    let dir = data_dir().join("static");
    let mut c = Client::connect(server.local_addr());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".br") && !n.ends_with(".gz"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 20);
    for name in &names {
        let original = std::fs::read(dir.join(name)).unwrap();
        let want_type = match name.rsplit('.').next().unwrap() {
            "css" => "text/css",
            "js" => "application/javascript",
            "json" => "application/json",
            "html" => "text/html",
            "svg" => "image/svg+xml",
            "webp" => "image/webp",
            "woff2" => "font/woff2",
            other => panic!("unexpected extension {other}"),
        };
        let r = request(
            &mut c,
            &format!("GET /static/{name} HTTP/1.1\r\nHost: l\r\nAccept-Encoding: br;q=1, gzip;q=0.8\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(want_type), "{name}");
        let br = dir.join(format!("{name}.br"));
        match r.header("content-encoding") {
            Some("br") => {
                assert_eq!(r.body, std::fs::read(&br).unwrap(), "{name}: the .br file");
                assert_eq!(decode("br", &r.body), original, "{name}");
            }
            None => {
                assert!(
                    !br.exists(),
                    "{name} has a .br sibling but went uncompressed"
                );
                assert_eq!(r.body, original, "{name}");
            }
            other => panic!("{name}: Content-Encoding {other:?}"),
        }
        let r = request(
            &mut c,
            &format!("GET /static/{name} HTTP/1.1\r\nHost: l\r\n\r\n"),
        );
        assert_eq!((r.status, r.header("content-encoding")), (200, None));
        assert_eq!(r.body, original, "{name} as it is");
    }
    let r = request(
        &mut c,
        "GET /static/missing.css HTTP/1.1\r\nHost: l\r\n\r\n",
    );
    assert_eq!(r.status, 404);
    stop(server);
}

/// A minimal WebSocket client: masked frames out, (first byte, payload) in.
struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

const MASK: [u8; 4] = [9, 8, 7, 6];

impl Ws {
    fn open(addr: SocketAddr) -> Ws {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: l\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
        let mut ws = Ws { s, buf: Vec::new() };
        let end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            assert!(ws.read_more(), "closed before the handshake answer");
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        ws.buf.drain(..end);
        ws
    }

    fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    fn send(&mut self, b0: u8, payload: &[u8]) {
        let mut out = vec![b0];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        self.s.write_all(&out).unwrap();
    }

    fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] & 0x7F {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n if n < 126 => (n as usize, 2),
                    _ => (usize::MAX, 0),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return Some((b0, payload));
                }
            }
            if !self.read_more() {
                return None;
            }
        }
    }
}

fn echo_ws(model: Model) {
    let server = start(model);
    let mut ws = Ws::open(server.local_addr());
    ws.send(0x81, b"hello arena");
    assert_eq!(ws.frame(), Some((0x81, b"hello arena".to_vec())));
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(0x82, &binary);
    assert_eq!(ws.frame(), Some((0x82, binary)));
    ws.send(0x89, b"ping!");
    assert_eq!(ws.frame(), Some((0x8A, b"ping!".to_vec())));
    ws.send(0x88, &1000u16.to_be_bytes());
    let (b0, payload) = ws.frame().expect("a close frame");
    assert_eq!(b0, 0x88);
    assert_eq!(&payload[..2], &1000u16.to_be_bytes());
    assert!(ws.frame().is_none(), "the server ends the connection");
    stop(server);
}
