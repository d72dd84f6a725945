//! Differential: our hand-written head scanner against httparse.
//!
//! Where httparse accepts a head whose lines all end in CRLF (we refuse bare
//! LF and bare CR; httparse takes bare LF), we accept it too, with the same
//! method, target, version, field names, trimmed field values and head
//! length, unless one of our documented framing rules (Host,
//! Content-Length, Transfer-Encoding, HTTP/1.0 with Transfer-Encoding,
//! Expect) refuses it. Whatever we accept, httparse accepts the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stoat::proto::{HeadParser, Limits, ProtoError, RequestHead, Version};

const MAX_HEADERS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_request_line: 1 << 20,
        max_header_bytes: 1 << 20,
        max_headers: MAX_HEADERS,
        max_body_size: u64::MAX,
        ..Limits::default()
    };
    let mut head = RequestHead::default();
    let ours = HeadParser::new().parse(data, &limits, &mut head);

    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let theirs = req.parse(data);

    match (&ours, &theirs) {
        (Ok(true), Ok(httparse::Status::Complete(len))) => {
            assert_eq!(head.len, *len, "head length");
            assert_eq!(
                head.method_span.of(data),
                req.method.unwrap().as_bytes(),
                "method"
            );
            assert_eq!(head.target.of(data), req.path.unwrap().as_bytes(), "target");
            let minor = match head.version {
                Version::Http10 => 0,
                Version::Http11 => 1,
            };
            assert_eq!(Some(minor), req.version, "version");
            assert_eq!(head.headers.len(), req.headers.len(), "field count");
            for (a, b) in head.headers.iter().zip(req.headers.iter()) {
                assert_eq!(a.name.of(data), b.name.as_bytes(), "field name");
                assert_eq!(a.value.of(data), b.value, "field value");
            }
        }
        (Ok(true), other) => panic!("we accept, httparse says {other:?}"),
        (_, Ok(httparse::Status::Complete(len))) => {
            let head_bytes = &data[..*len];
            if has_bare_lf(head_bytes) || has_bare_cr(head_bytes) {
                return;
            }
            match ours {
                Err(e) if framing_rule(e) => {}
                other => panic!("httparse accepts, we say {other:?}"),
            }
        }
        _ => {}
    }
});

/// Our refusals of heads httparse has no opinion on (it parses syntax only).
fn framing_rule(e: ProtoError) -> bool {
    matches!(
        e,
        ProtoError::MissingHost
            | ProtoError::DuplicateHost
            | ProtoError::BadHost
            | ProtoError::BadContentLength
            | ProtoError::ConflictingContentLength
            | ProtoError::ContentLengthWithTransferEncoding
            | ProtoError::ChunkedNotLast
            | ProtoError::UnknownTransferCoding
            | ProtoError::TransferEncodingInHttp10
            | ProtoError::UnsupportedExpectation
    )
}

fn has_bare_lf(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\n' && (i == 0 || b[i - 1] != b'\r'))
}

fn has_bare_cr(b: &[u8]) -> bool {
    b.iter()
        .enumerate()
        .any(|(i, &c)| c == b'\r' && b.get(i + 1) != Some(&b'\n'))
}
