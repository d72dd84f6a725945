//! Chunked decoding on arbitrary bytes: never panics, and the decoded body
//! and verdict do not depend on how the input is split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoat::proto::{BodyDecoder, BodyKind, Limits};

/// Decodes `data` fed in pieces of `step` bytes (0: all at once).
fn decode(
    data: &[u8],
    step: usize,
    limits: &Limits,
) -> (Vec<u8>, Result<usize, stoat::proto::ProtoError>) {
    let mut d = BodyDecoder::new(BodyKind::Chunked, limits);
    let mut body = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut used = 0;
    loop {
        match d.decode(&buf) {
            Err(e) => return (body, Err(e)),
            Ok(r) => {
                assert!(r.consumed <= buf.len());
                assert!(r.data.end <= r.consumed);
                body.extend_from_slice(&buf[r.data.clone()]);
                buf.drain(..r.consumed);
                used += r.consumed;
                if r.done {
                    return (body, Ok(used));
                }
                if r.consumed == 0 && r.data.is_empty() {
                    if fed == data.len() {
                        return (body, Ok(usize::MAX));
                    }
                    let n = if step == 0 {
                        data.len() - fed
                    } else {
                        step.min(data.len() - fed)
                    };
                    buf.extend_from_slice(&data[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_body_size: 4096,
        max_chunk_ext: 64,
        max_trailer_bytes: 128,
        ..Limits::default()
    };
    let (a, ra) = decode(data, 0, &limits);
    let (b, rb) = decode(data, 1 + step as usize % 7, &limits);
    assert_eq!(ra, rb);
    assert_eq!(a, b);
    assert!(a.len() as u64 <= limits.max_body_size);
});
