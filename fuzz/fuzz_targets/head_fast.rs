//! Differential: the head parser with its fast path (what the server runs)
//! against the full scan alone (which names every fault), on arbitrary
//! bytes, whole and split in two, under default and tight limits: the same
//! verdict (complete, partial, or the same error), the same head, and the
//! same parser state after every call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoat::proto::{HeadParser, Limits, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let tight = Limits {
        max_request_line: 64,
        max_header_bytes: 128,
        max_headers: 4,
        max_body_size: 16,
        ..Limits::default()
    };
    let cut = (split as usize * data.len()) / 255;
    for limits in [Limits::default(), tight] {
        // One head, reused as a connection reuses it: the fast path writes
        // over the last head's lines.
        let (mut a, mut b) = (RequestHead::default(), RequestHead::default());
        for bytes in [&data[..cut], data] {
            let (mut p, mut q) = (HeadParser::new(), HeadParser::new());
            let fast = p.parse(bytes, &limits, &mut a);
            let full = q.parse_without_fast_path(bytes, &limits, &mut b);
            assert_eq!(fast, full);
            assert_eq!(p, q);
            if fast == Ok(true) {
                assert_eq!(format!("{a:?}"), format!("{b:?}"));
            }
            // And in two calls, as the bytes arrive.
            if fast == Ok(false) {
                let fast = p.parse(data, &limits, &mut a);
                let full = q.parse_without_fast_path(data, &limits, &mut b);
                assert_eq!(fast, full);
                assert_eq!(p, q);
                if fast == Ok(true) {
                    assert_eq!(format!("{a:?}"), format!("{b:?}"));
                }
            }
        }
    }
});
