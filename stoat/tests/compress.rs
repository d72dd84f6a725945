//! Response compression over real sockets, in both threading models: the
//! inline layer (negotiation, Vary, decodable bodies, a body over the
//! inline limit sent as it is) and the suspended layer whose large bodies
//! are compressed by worker threads.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use stoat::app::{
    BodyChunk, BodyWriter, CompressedBody, Compression, EventStream, Handler, Method, Request,
    Responder, Response, Server, SseEvent, Workers,
};
use stoat::config::Model;

use common::{config, find, start_with, stop, wait_until, Client, Resp, TIMEOUT};

both_models!(
    inline_layer,
    large_bodies_on_workers,
    streamed_response_compressed,
    event_stream_compressed_with_heartbeats,
    server_wide_switch
);

fn body(len: usize) -> String {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{{\"n\":{i},\"word\":\"w{}\"}},", i % 11));
        i += 1;
    }
    s.truncate(len);
    s
}

fn decode(coding: Option<&str>, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        Some("gzip") => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        None => out.extend_from_slice(bytes),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

fn get(c: &mut Client, path: &str, accept: Option<&str>) -> Resp {
    let field = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{field}\r\n").as_bytes());
    c.response()
}

fn inline_layer(model: Model) {
    let small = Compression::new()
        .inline_limit(50_000)
        .layer(|_: &Request<'_>| Response::json_bytes(body(20_000)));
    let big = Compression::new()
        .inline_limit(50_000)
        .layer(|_: &Request<'_>| Response::json_bytes(body(80_000)));
    let server = start_with(config(model), move |s: Server| {
        s.get("/small", move |req| small.call(req))
            .get("/big", move |req| big.call(req))
    });
    let mut c = Client::connect(server.local_addr());
    let cases = [
        (None, None),
        (Some("gzip"), Some("gzip")),
        (Some("gzip, br"), Some("gzip")),
        (Some("br"), Some("br")),
        (Some("br;q=0.1, gzip"), Some("gzip")),
        (Some("identity"), None),
        (Some("*;q=0, identity;q=0"), None),
    ];
    for (accept, coding) in cases {
        let r = get(&mut c, "/small", accept);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), coding, "{accept:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept:?}");
        assert_eq!(
            decode(coding, &r.body),
            body(20_000).as_bytes(),
            "{accept:?}"
        );
        if coding.is_some() {
            assert!(r.body.len() < 20_000 / 3, "{accept:?}: {}", r.body.len());
        }
    }
    // Over the inline limit: as it is, but still Vary.
    let r = get(&mut c, "/big", Some("gzip"));
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.body, body(80_000).as_bytes());
    stop(server);
}

fn large_bodies_on_workers(model: Model) {
    let workers = Workers::start(1, 4).expect("workers start");
    let layered = Compression::new()
        .inline_limit(50_000)
        .workers(workers)
        .layer(|req: &Request<'_>| {
            let len = req.query("len").and_then(|l| l.parse().ok()).unwrap_or(0);
            Response::text(body(len))
        });
    let server = start_with(config(model), move |s: Server| {
        s.suspend(
            Method::Get,
            "/doc",
            move |req: &Request<'_>, r: Responder| layered.respond(req, r),
        )
    });
    let mut c = Client::connect(server.local_addr());
    for len in [10, 1000, 49_000, 300_000] {
        for (accept, coding) in [
            (Some("gzip"), Some("gzip")),
            (Some("br"), Some("br")),
            (None, None),
        ] {
            let r = get(&mut c, &format!("/doc?len={len}"), accept);
            assert_eq!(r.status, 200);
            let coding = if len < 256 { None } else { coding };
            assert_eq!(r.header("content-encoding"), coding, "{len} {accept:?}");
            assert_eq!(
                decode(coding, &r.body),
                body(len).as_bytes(),
                "{len} {accept:?}"
            );
        }
    }
    stop(server);
}

/// Echoes the upload back, chunked and compressed piece by piece.
fn echo(
    req: &Request<'_>,
    res: &mut BodyWriter<'_, '_>,
) -> impl FnMut(BodyChunk<'_>, &mut BodyWriter<'_, '_>) {
    let c = Compression::new();
    let mut body = Some(CompressedBody::start(&c, req, res, Response::text("")));
    move |chunk, res| match chunk {
        BodyChunk::Data(bytes) => {
            if let Some(b) = &mut body {
                b.write(res, bytes);
            }
        }
        BodyChunk::End => {
            if let Some(b) = body.take() {
                b.finish(res);
            }
        }
    }
}

fn streamed_response_compressed(model: Model) {
    let server = start_with(config(model), |s: Server| s.post_streaming("/echo", echo));
    let mut c = Client::connect(server.local_addr());
    let upload = body(300_000);
    for (accept, coding) in [
        (Some("gzip"), Some("gzip")),
        (Some("br"), Some("br")),
        (None, None),
    ] {
        let field = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
        c.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\n{field}Content-Length: {}\r\n\r\n",
                upload.len()
            )
            .as_bytes(),
        );
        for piece in upload.as_bytes().chunks(7_000) {
            c.send(piece);
        }
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.header("content-encoding"), coding, "{accept:?}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(decode(coding, &r.body), upload.as_bytes(), "{accept:?}");
    }
    stop(server);
}

/// A streaming decoder of one response body's coding.
enum Inflate {
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Identity(Vec<u8>),
}

impl Inflate {
    fn new(coding: Option<&str>) -> Inflate {
        match coding {
            Some("gzip") => Inflate::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Some("br") => {
                Inflate::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)))
            }
            None => Inflate::Identity(Vec::new()),
            Some(other) => panic!("unexpected coding {other}"),
        }
    }

    /// Feeds coded bytes; returns everything decoded so far.
    fn feed(&mut self, bytes: &[u8]) -> &[u8] {
        match self {
            Inflate::Gzip(d) => {
                d.write_all(bytes).expect("valid gzip");
                d.flush().expect("valid gzip");
                d.get_ref()
            }
            Inflate::Brotli(d) => {
                d.write_all(bytes).expect("valid brotli");
                d.flush().expect("valid brotli");
                d.get_ref()
            }
            Inflate::Identity(v) => {
                v.extend_from_slice(bytes);
                v
            }
        }
    }

    /// Ends the stream: the coding's trailer must be complete and valid
    /// (gzip: CRC-32 and length).
    fn finish(self) -> Vec<u8> {
        match self {
            Inflate::Gzip(d) => d.finish().expect("complete gzip stream"),
            Inflate::Brotli(d) => d.into_inner().expect("complete brotli stream"),
            Inflate::Identity(v) => v,
        }
    }
}

/// A raw-socket client of a chunked event stream that decodes its coding
/// as the chunks arrive.
struct SseReader {
    stream: TcpStream,
    buf: Vec<u8>,
    head: String,
    inflate: Option<Inflate>,
    ended: bool,
}

impl SseReader {
    fn open(addr: SocketAddr, path: &str, accept: Option<&str>) -> SseReader {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let field = accept.map_or(String::new(), |a| format!("Accept-Encoding: {a}\r\n"));
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{field}\r\n").as_bytes())
            .unwrap();
        let mut r = SseReader {
            stream,
            buf: Vec::new(),
            head: String::new(),
            inflate: None,
            ended: false,
        };
        let i = loop {
            if let Some(i) = find(&r.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(r.fill(), "connection ended inside the head");
        };
        r.head = String::from_utf8(r.buf.drain(..i + 4).collect())
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            r.head.contains("transfer-encoding: chunked\r\n"),
            "{}",
            r.head
        );
        r.inflate = Some(Inflate::new(r.field("content-encoding")));
        r
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.head.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.trim() == name).then(|| v.trim())
        })
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Feeds the whole chunks received to the decoder; the decoded text.
    fn decoded(&mut self) -> String {
        let inflate = self.inflate.as_mut().unwrap();
        while let Some(line_end) = find(&self.buf, b"\r\n") {
            let size =
                usize::from_str_radix(std::str::from_utf8(&self.buf[..line_end]).unwrap(), 16)
                    .expect("chunk size");
            if size == 0 {
                if self.buf.len() >= line_end + 4 {
                    self.ended = true;
                    self.buf.drain(..line_end + 4);
                }
                break;
            }
            let need = line_end + 2 + size + 2;
            if self.buf.len() < need {
                break;
            }
            inflate.feed(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..need);
        }
        String::from_utf8(inflate.feed(&[]).to_vec()).unwrap()
    }

    /// Reads to the stream's last chunk; everything decoded, the coding
    /// checked complete.
    fn finish(mut self) -> String {
        loop {
            self.decoded();
            if self.ended {
                break;
            }
            assert!(self.fill(), "connection ended before the last chunk");
        }
        String::from_utf8(self.inflate.take().unwrap().finish()).unwrap()
    }

    /// Reads until the decoded text satisfies `cond` (each chunk is
    /// decodable on its own arrival: nothing waits for a later one).
    #[track_caller]
    fn until(&mut self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        loop {
            let text = self.decoded();
            if cond(&text) {
                return text;
            }
            assert!(
                !self.ended && self.fill(),
                "stream ended before {what}: {text:?}"
            );
        }
    }
}

/// An event stream compressed per route and per server: the head says the
/// coding, each event is decodable when it arrives (flushed per event),
/// the idle stream's heartbeat comes through the same encoder, and the end
/// of the stream completes the coding (gzip's CRC checked).
fn event_stream_compressed_with_heartbeats(model: Model) {
    let mut cfg = config(model);
    cfg.http.sse_heartbeat_sec = 1;
    let streams: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    let (per_route, per_server) = (streams.clone(), streams.clone());
    let server = start_with(cfg, move |s: Server| {
        s.sse_compressed("/route", Compression::new(), move |_: &Request, st| {
            per_route.lock().unwrap().push(st)
        })
        .sse("/plain", move |_: &Request, st| {
            per_server.lock().unwrap().push(st)
        })
    });
    let addr = server.local_addr();
    for (accept, coding) in [
        (Some("gzip"), Some("gzip")),
        (Some("br"), Some("br")),
        (Some("gzip;q=0"), None),
        (None, None),
    ] {
        let mut c = SseReader::open(addr, "/route", accept);
        assert_eq!(c.field("content-encoding"), coding, "{accept:?}");
        assert_eq!(c.field("vary"), Some("accept-encoding"), "{accept:?}");
        wait_until("the stream", || streams.lock().unwrap().len() == 1);
        let stream = streams.lock().unwrap().pop().unwrap();
        stream.send(SseEvent::data("one").id("1")).unwrap();
        c.until("event one", |t| t.contains("id: 1\ndata: one\n\n"));
        // Idle: the heartbeat comes decodable from the same stream.
        c.until("a heartbeat", |t| t.contains("data: one\n\n:\n\n"));
        stream.send(SseEvent::data("two")).unwrap();
        c.until("event two", |t| t.ends_with("data: two\n\n"));
        drop(stream);
        let text = c.finish();
        assert_eq!(
            text.replace(":\n\n", ""),
            "id: 1\ndata: one\n\ndata: two\n\n",
            "{accept:?}"
        );
    }
    // No compression on the route or the server: identity, no Vary.
    let c = SseReader::open(addr, "/plain", Some("gzip"));
    assert_eq!(c.field("content-encoding"), None);
    assert_eq!(c.field("vary"), None);
    wait_until("the stream", || streams.lock().unwrap().len() == 1);
    streams.lock().unwrap().clear();
    assert_eq!(c.finish(), "");
    stop(server);
}

/// `[http.compression]` turns compression on for every inline route and
/// event stream; `Server::compression` replaces the table.
fn server_wide_switch(model: Model) {
    let streams: Arc<Mutex<Vec<EventStream>>> = Arc::default();
    for explicit in [false, true] {
        let mut cfg = config(model);
        cfg.http.compression.enabled = true;
        let keep = streams.clone();
        let server = start_with(cfg, move |s: Server| {
            let s = s
                .get("/doc", |_| Response::json_bytes(body(5_000)))
                .get("/tiny", |_| Response::json_bytes(body(100)))
                .get("/png", |_| {
                    Response::new(200)
                        .header("Content-Type", "image/png")
                        .body(body(5_000))
                })
                .sse("/events", move |_: &Request, st| {
                    keep.lock().unwrap().push(st)
                });
            if explicit {
                s.compression(Compression::new().codings(&[stoat::app::Coding::Brotli]))
            } else {
                s
            }
        });
        let addr = server.local_addr();
        let mut c = Client::connect(addr);
        let want = if explicit { "br" } else { "gzip" };
        let r = get(&mut c, "/doc", Some("gzip, br"));
        assert_eq!(r.header("content-encoding"), Some(want));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(decode(Some(want), &r.body), body(5_000).as_bytes());
        let r = get(&mut c, "/doc", None);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.body, body(5_000).as_bytes());
        let r = get(&mut c, "/tiny", Some("gzip, br"));
        assert_eq!(r.header("content-encoding"), None, "below min_size");
        let r = get(&mut c, "/png", Some("gzip, br"));
        assert_eq!(
            r.header("content-encoding"),
            None,
            "not a compressible type"
        );
        assert_eq!(r.header("vary"), None);
        let mut e = SseReader::open(addr, "/events", Some("gzip, br"));
        assert_eq!(e.field("content-encoding"), Some(want));
        wait_until("the stream", || streams.lock().unwrap().len() == 1);
        let stream = streams.lock().unwrap().pop().unwrap();
        stream.send(SseEvent::data("x")).unwrap();
        e.until("the event", |t| t == "data: x\n\n");
        drop(stream);
        assert_eq!(e.finish(), "data: x\n\n");
        stop(server);
    }
}
