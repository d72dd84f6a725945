//! The PROXY protocol header parser on arbitrary bytes: never panics; the
//! answer for any prefix is `NeedMore` or the answer for the whole (an
//! error found early stays an error, a header is done only when complete);
//! `consumed` stays within the input and `MAX_HEADER_LEN`; `Any` agrees
//! with the single version the first byte selects; and a parsed header,
//! written out again, parses to the same addresses.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use stoat::proto::proxy::{parse, Accept, Addresses, Status, MAX_HEADER_LEN, V2_SIGNATURE};

fn consumed(status: Status) -> Option<usize> {
    match status {
        Status::NeedMore => None,
        Status::Proxied { consumed, .. } | Status::Local { consumed } => Some(consumed),
    }
}

fn v1_line(source: SocketAddr, destination: SocketAddr) -> String {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
}

fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        (SocketAddr::V6(s), SocketAddr::V6(d)) => {
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        _ => panic!("mixed families in one header: {source} {destination}"),
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let accept = match mode % 3 {
        0 => Accept::V1,
        1 => Accept::V2,
        _ => Accept::Any,
    };
    let whole = parse(data, accept);
    if let Ok(status) = whole {
        if let Some(n) = consumed(status) {
            assert!(n <= data.len() && n <= MAX_HEADER_LEN, "{n} of {}", data.len());
        }
    }
    // Prefixes (every one for short inputs, a spread for long ones).
    let step = (data.len() / 512).max(1);
    for cut in (0..data.len()).step_by(step) {
        match parse(&data[..cut], accept) {
            Ok(Status::NeedMore) => {}
            other => assert_eq!(other, whole, "prefix of {cut} bytes"),
        }
    }
    // `Any` is the version the first byte names.
    let single = match data.first() {
        Some(b'P') => Some(Accept::V1),
        Some(b'\r') => Some(Accept::V2),
        _ => None,
    };
    if let Some(single) = single {
        assert_eq!(parse(data, Accept::Any), parse(data, single));
    }
    // Round trip of the addresses through both encodings.
    if let Ok(Status::Proxied {
        addresses: Addresses::Inet { source, destination },
        ..
    }) = whole
    {
        assert_eq!(source.is_ipv4(), destination.is_ipv4());
        let line = v1_line(source, destination);
        let again = parse(line.as_bytes(), Accept::V1);
        assert_eq!(
            again,
            Ok(Status::Proxied {
                consumed: line.len(),
                addresses: Addresses::Inet { source, destination }
            }),
            "{line:?}"
        );
        let bin = v2_header(source, destination);
        let again = parse(&bin, Accept::V2);
        assert_eq!(
            again,
            Ok(Status::Proxied {
                consumed: bin.len(),
                addresses: Addresses::Inet { source, destination }
            })
        );
    }
});
