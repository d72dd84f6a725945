//! The connection state machine fed an arbitrary byte stream in arbitrary
//! pieces, answering every request: never panics, never loops, every
//! response starts with a status line, and it never answers more requests
//! than it parsed.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use stoat::proto::conn::Timeout;
use stoat::proto::encode::{BodyMode, EncodeCtx, HeadStart, ResponseHead};
use stoat::proto::{Conn, ConnEvent, DateCache, Limits, RequestHead, ResponseBody};

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = 1 + step as usize % 64;
    let limits = Limits {
        max_request_line: 128,
        max_header_bytes: 256,
        max_headers: 8,
        max_body_size: 1024,
        ..Limits::default()
    };
    let mut now = Instant::now();
    let date = DateCache::new(1_700_000_000);
    let mut conn = Conn::new(now);
    let mut head = RequestHead::default();
    let mut input = Vec::new();
    let mut out = Vec::new();
    let mut requests = 0usize;
    let mut fed = 0;
    'outer: loop {
        let mut spins = 0;
        loop {
            spins += 1;
            assert!(spins < 100_000, "no progress");
            let (consumed, event) = match conn.poll(&input, now, &limits, &mut head) {
                Ok(x) => x,
                Err(e) => {
                    conn.respond_error(e, now, &mut out, EncodeCtx { date: &date, server: b"" });
                    break 'outer;
                }
            };
            assert!(consumed <= input.len());
            let answer = match &event {
                ConnEvent::Head { complete } => {
                    conn.send_continue(&mut out);
                    *complete
                }
                ConnEvent::Body(r) => {
                    assert!(r.end <= consumed);
                    false
                }
                ConnEvent::BodyEnd => true,
                ConnEvent::NeedInput => {
                    input.drain(..consumed);
                    break;
                }
                ConnEvent::Waiting => panic!("waiting with no request outstanding"),
                ConnEvent::Close => break 'outer,
            };
            input.drain(..consumed);
            if answer {
                requests += 1;
                let mode = conn.respond(
                    ResponseHead {
                        status: 200,
                        start: HeadStart::Headers(&[]),
                        body: ResponseBody::Length(2),
                    },
                    false,
                    now,
                    &mut out,
                    EncodeCtx {
                        date: &date,
                        server: b"",
                    },
                );
                if mode == BodyMode::Raw {
                    out.extend_from_slice(b"ok");
                }
            }
        }
        if fed == data.len() {
            // All sent: the peer half-closes; the next poll must end it.
            conn.on_read_closed();
        }
        let n = step.min(data.len() - fed);
        input.extend_from_slice(&data[fed..fed + n]);
        fed += n;
        now += Duration::from_millis(1);
        if let Timeout::Respond(e) = conn.on_timeout(now, &limits) {
            conn.respond_error(e, now, &mut out, EncodeCtx { date: &date, server: b"" });
            break;
        }
    }
    let statuses = memchr_count(&out, b"HTTP/1.1 ");
    assert!(statuses >= requests);
    assert!(out.is_empty() || out.starts_with(b"HTTP/1.1 "));
});

fn memchr_count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
