//! The WebSocket frame decoder on arbitrary bytes, fed whole and in random
//! splits: never panics, never loops, and the outcome (the messages and
//! control frames it hands out, then its verdict) does not depend on the
//! split. Every text message it completes is UTF-8 (a message handed out
//! whole in one piece is checked here, as the caller must), no message is
//! larger than the limit, and a control payload is at most 125 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoat::proto::ws_frame::{CloseCode, Decoder, Item, MAX_CONTROL_PAYLOAD};

/// What the decoder handed out, reassembled.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Message { text: bool, payload: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close { code: Option<u16>, reason: Vec<u8> },
}

/// Decodes `data` arriving in pieces whose sizes come from `splits` (each
/// byte a piece length, 0 taken as "all the rest"; the sizes repeat).
fn run(data: &[u8], splits: &[u8], max: usize) -> (Vec<Out>, Result<(), CloseCode>) {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut msg: Option<(bool, Vec<u8>)> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut piece = 0;
    let mut spins = 0usize;
    loop {
        spins += 1;
        assert!(spins < 1_000_000, "no progress");
        let (used, item) = match d.decode(&mut buf, max) {
            Ok(x) => x,
            Err(code) => return (out, Err(code)),
        };
        assert!(used <= buf.len());
        match item {
            Item::NeedInput => {
                // A partial frame keeps at most a header or a control frame.
                assert!(buf.len() - used <= 14 + MAX_CONTROL_PAYLOAD + 6);
                buf.drain(..used);
                if fed == data.len() {
                    return (out, Ok(()));
                }
                let want = splits
                    .get(piece % splits.len().max(1))
                    .map_or(0, |&s| s as usize);
                piece += 1;
                let n = if want == 0 {
                    data.len() - fed
                } else {
                    want.min(data.len() - fed)
                };
                buf.extend_from_slice(&data[fed..fed + n]);
                fed += n;
                continue;
            }
            Item::Data {
                payload,
                text,
                first,
                last,
            } => {
                assert!(payload.end <= used);
                let bytes = &buf[payload];
                if first {
                    assert!(msg.is_none(), "a new message inside one");
                    // The caller checks a text message handed out whole.
                    if last && text && std::str::from_utf8(bytes).is_err() {
                        return (out, Err(CloseCode::InvalidData));
                    }
                    msg = Some((text, Vec::new()));
                }
                let (t, m) = msg.as_mut().expect("data with no message");
                assert_eq!(*t, text);
                m.extend_from_slice(bytes);
                assert!(m.len() <= max);
                if last {
                    let (text, payload) = msg.take().unwrap();
                    if text {
                        assert!(std::str::from_utf8(&payload).is_ok(), "invalid text passed");
                    }
                    out.push(Out::Message { text, payload });
                }
            }
            Item::Ping(r) => {
                assert!(r.len() <= MAX_CONTROL_PAYLOAD && r.end <= used);
                out.push(Out::Ping(buf[r].to_vec()));
            }
            Item::Pong(r) => {
                assert!(r.len() <= MAX_CONTROL_PAYLOAD && r.end <= used);
                out.push(Out::Pong(buf[r].to_vec()));
            }
            Item::Close { code, reason } => {
                assert!(reason.end <= used);
                let reason = buf[reason].to_vec();
                assert!(std::str::from_utf8(&reason).is_ok());
                if let Some(c) = code {
                    assert!(stoat::proto::ws_frame::is_valid_close_code(c));
                }
                out.push(Out::Close { code, reason });
            }
        }
        buf.drain(..used);
    }
}

fuzz_target!(|input: &[u8]| {
    // [limit selector][n split bytes][splits...][stream]
    let [sel, n, rest @ ..] = input else {
        return;
    };
    let n = (*n as usize % 16).min(rest.len());
    let (splits, data) = rest.split_at(n);
    let max = [125usize, 1000, 1 << 16, 1 << 20][*sel as usize % 4];
    let whole = run(data, &[], max);
    let split = run(data, splits, max);
    let bytewise = run(data, &[1], max);
    assert_eq!(whole, split, "whole and split differ");
    assert_eq!(whole, bytewise, "whole and byte by byte differ");
});
