//! Request head parsing on arbitrary bytes: never panics, and gives the same
//! verdict whether the bytes arrive at once or split in two (the incremental
//! path must agree with the one-shot path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoat::proto::{HeadParser, Limits, RequestHead};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_request_line: 256,
        max_header_bytes: 512,
        max_headers: 16,
        ..Limits::default()
    };
    let mut whole = RequestHead::default();
    let one = HeadParser::new().parse(data, &limits, &mut whole);

    let mut split_head = RequestHead::default();
    let mut p = HeadParser::new();
    let cut = (split as usize * data.len()) / 255;
    let two = match p.parse(&data[..cut], &limits, &mut split_head) {
        Ok(false) => p.parse(data, &limits, &mut split_head),
        done => done,
    };
    match (one, two) {
        (Ok(true), Ok(true)) => {
            assert_eq!(whole.len, split_head.len);
            assert_eq!(whole.headers, split_head.headers);
            assert_eq!(whole.body, split_head.body);
            assert!(whole.len <= data.len());
            for h in &whole.headers {
                let _ = h.name.of(data);
                let _ = h.value.of(data);
            }
            let _ = whole.path(data);
            let _ = whole.query(data);
        }
        (Ok(false), Ok(false)) => {}
        // A head complete in the first part is complete there.
        (Ok(true), Err(_)) | (Err(_), Ok(true)) => panic!("verdicts differ"),
        (Err(a), Err(b)) => {
            let _ = (a.status(), b.status());
        }
        // A limit may be hit earlier on the partial path.
        _ => {}
    }
});
