//! The request head parser alone, for callgrind: parses a head N times
//! (the bench request, or a browser-like head with `browser`).
//!
//! Usage: `valgrind --tool=callgrind --toggle-collect='*parse_one*'
//! target/release/examples/head_cost [bench|browser] [N]`, then divide by N.

use std::hint::black_box;

use stoat::proto::{HeadParser, Limits, RequestHead};

const BENCH: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
const BROWSER: &[u8] = concat!(
    "GET /static/app.js?v=3 HTTP/1.1\r\n",
    "Host: www.example.org\r\n",
    "User-Agent: Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n",
    "Accept: */*\r\n",
    "Accept-Language: en-GB,en;q=0.5\r\n",
    "Accept-Encoding: gzip, deflate, br\r\n",
    "Referer: https://www.example.org/\r\n",
    "Connection: keep-alive\r\n",
    "Sec-Fetch-Dest: script\r\n",
    "Sec-Fetch-Mode: no-cors\r\n",
    "Sec-Fetch-Site: same-origin\r\n",
    "\r\n",
)
.as_bytes();

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "bench".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let buf = if which == "browser" { BROWSER } else { BENCH };
    let limits = Limits::default();
    let mut head = RequestHead::default();
    let mut parser = HeadParser::new();
    let mut total = 0;
    for _ in 0..n {
        match parse_one(&mut parser, black_box(buf), &limits, &mut head) {
            Ok(true) => total += head.len + head.headers.len(),
            other => panic!("{other:?}"),
        }
    }
    println!("{which}: {n} heads, {total}");
}

/// One parse, not inlined: what callgrind counts (`--toggle-collect='*parse_one*'`).
#[inline(never)]
fn parse_one(
    parser: &mut HeadParser,
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<bool, stoat::proto::ProtoError> {
    parser.parse(buf, limits, head)
}
