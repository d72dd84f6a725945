//! Weasel's commit decoders (JSON and MessagePack) on arbitrary bytes: never
//! panic; an error is one line; and the two formats agree: a JSON body that
//! decodes decodes to the same request when its value is re-encoded as
//! MessagePack, and one JSON refuses (other than for a duplicate key,
//! which a JSON value cannot keep), MessagePack refuses too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weasel::codec::{BodyCodec, Json, MessagePack};

fuzz_target!(|data: &[u8]| {
    let json = Json.decode_commit(data);
    let msgpack = MessagePack.decode_commit(data);
    for r in [&json, &msgpack] {
        if let Err(m) = r {
            assert!(
                !m.is_empty() && !m.contains('\n'),
                "error not one line: {m:?}"
            );
        }
    }
    // Same document through the other format.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let Ok(packed) = rmp_serde::to_vec_named(&value) else {
            return;
        };
        let again = MessagePack.decode_commit(&packed);
        match (&json, &again) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "JSON and MessagePack decode differently"),
            (Err(_), Err(_)) => {}
            // serde_json's Value keeps the last of duplicate keys; the
            // struct decoder refuses them.
            (Err(m), Ok(_)) if m.contains("duplicate field") => {}
            (a, b) => panic!("JSON says {a:?}, the same value as MessagePack {b:?}"),
        }
    }
});
