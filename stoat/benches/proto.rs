//! Hot paths of the protocol core: parsing a request head (ours against a
//! bare `httparse::Request::parse` of the same bytes), encoding a small
//! response, and one whole request/response turn of the connection machine.

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stoat::proto::encode::{encode_head, EncodeCtx, Framing, HeadStart, Header, ResponseHead};
use stoat::proto::{Conn, ConnEvent, DateCache, HeadParser, Limits, RequestHead, ResponseBody};

/// What a desktop browser sends for a page (Chrome-like, 13 fields).
const BROWSER: &[u8] = b"GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n\
Host: www.kittyhell.com\r\n\
Connection: keep-alive\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-Mode: navigate\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; __utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x\r\n\r\n";

/// What wrk sends.
const WRK: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

fn parse_head(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse_head");
    for (name, req) in [("browser", BROWSER), ("wrk", WRK)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        let mut head = RequestHead::default();
        g.bench_function(format!("stoat/{name}"), |b| {
            b.iter(|| {
                let mut p = HeadParser::new();
                let done = p.parse(black_box(req), &limits, &mut head);
                black_box((done, head.len))
            })
        });
        // The bare parser with the same header capacity, initialized array
        // (the documented way) ...
        g.bench_function(format!("httparse/{name}"), |b| {
            b.iter(|| {
                let mut headers = [httparse::EMPTY_HEADER; 100];
                let mut r = httparse::Request::new(&mut headers);
                black_box(r.parse(black_box(req)).map(|s| s.is_complete()))
            })
        });
        // ... and uninitialized, as stoat calls it.
        g.bench_function(format!("httparse_uninit/{name}"), |b| {
            b.iter(|| {
                let mut headers: [MaybeUninit<httparse::Header<'_>>; 100] =
                    [const { MaybeUninit::uninit() }; 100];
                let mut r = httparse::Request::new(&mut []);
                black_box(
                    r.parse_with_uninit_headers(black_box(req), &mut headers)
                        .map(|s| s.is_complete()),
                )
            })
        });
    }
    g.finish();
}

fn encode_response(c: &mut Criterion) {
    let date = DateCache::new(1_700_000_000);
    let mut out = Vec::with_capacity(4096);
    let headers = [Header {
        name: "Content-Type",
        value: b"text/plain",
    }];
    c.bench_function("encode/plaintext_head", |b| {
        b.iter(|| {
            out.clear();
            let head = ResponseHead {
                status: 200,
                start: HeadStart::Headers(black_box(&headers)),
                body: ResponseBody::Length(13),
            };
            let ctx = EncodeCtx {
                date: &date,
                server: b"stoat",
            };
            let mode = encode_head(&mut out, head, Framing::default(), ctx);
            out.extend_from_slice(b"Hello, World!");
            black_box((mode, out.len()))
        })
    });
}

fn conn_turn(c: &mut Criterion) {
    let limits = Limits::default();
    let date = DateCache::new(1_700_000_000);
    let now = Instant::now();
    let mut conn = Conn::new(now);
    let mut head = RequestHead::default();
    let mut out = Vec::with_capacity(4096);
    let headers = [Header {
        name: "Content-Type",
        value: b"text/plain",
    }];
    c.bench_function("conn/wrk_request_response", |b| {
        b.iter(|| {
            out.clear();
            let (n, ev) = conn.poll(black_box(WRK), now, &limits, &mut head).unwrap();
            debug_assert_eq!(ev, ConnEvent::Head { complete: true });
            conn.respond(
                ResponseHead {
                    status: 200,
                    start: HeadStart::Headers(&headers),
                    body: ResponseBody::Length(13),
                },
                false,
                now,
                &mut out,
                EncodeCtx {
                    date: &date,
                    server: b"stoat",
                },
            );
            out.extend_from_slice(b"Hello, World!");
            black_box((n, out.len()))
        })
    });
}

criterion_group!(benches, parse_head, encode_response, conn_turn);
criterion_main!(benches);
