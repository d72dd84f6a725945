//! Response compression over real sockets, in both threading models: the
//! inline layer (negotiation, Vary, decodable bodies, a body over the
//! inline limit sent as it is) and the suspended layer whose large bodies
//! are compressed by worker threads.

#[macro_use]
mod common;

use std::io::Read;

use stoat::app::{
    BodyChunk, BodyWriter, CompressedBody, Compression, Handler, Method, Request, Responder,
    Response, Server, Workers,
};
use stoat::config::Model;

use common::{config, start_with, stop, Client, Resp};

both_models!(
    inline_layer,
    large_bodies_on_workers,
    streamed_response_compressed
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
