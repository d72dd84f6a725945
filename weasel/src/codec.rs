//! Request bodies by `Content-Type`: the [`BodyCodec`] trait and the
//! [`Codecs`] registry.
//!
//! Contract: a codec turns a body into a [`CommitRequest`] or says, in one
//! line naming the field at fault (`operations[1].op: unknown variant
//! ...`), why it cannot. The registry picks the codec by the media type's
//! essence (parameters such as `charset` ignored, case-insensitive); no
//! match is [`CodecError::Unsupported`] (415). Adding a format (protobuf,
//! say) is one `impl BodyCodec` and one [`Codecs::register`] call.
//!
//! The shape is the same in every format; only JSON cannot carry binary
//! values (its `value` is a string), MessagePack's may be `bin` or `str`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// `POST /v1/commit`'s body, decoded (not yet checked against limits).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The client's id for this commit; retries reuse it.
    pub request_id: String,
    /// The store version the client read at (informational; must not be
    /// ahead of the store).
    #[serde(default)]
    pub read_version: Option<u64>,
    /// Key versions that must still hold (`null` or absent: none, as
    /// `read_version` takes `null` too).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub preconditions: Vec<Precondition>,
    /// What to change, applied in order.
    pub operations: Vec<Operation>,
}

/// `null` as an empty list.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Precondition>, D::Error> {
    Ok(Option::<Vec<Precondition>>::deserialize(d)?.unwrap_or_default())
}

/// A key's expected current version (0: the key must not exist).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Precondition {
    /// The key.
    pub key: String,
    /// Its expected version.
    pub version: u64,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// `set` or `delete`.
    pub op: OpKind,
    /// The key.
    pub key: String,
    /// The new value (`set` only).
    #[serde(default)]
    pub value: Option<Value>,
}

/// The kind of an [`Operation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Set the key to the value.
    Set,
    /// Remove the key.
    Delete,
}

/// A value: bytes, given as a string (UTF-8) or as binary.
#[derive(Clone, PartialEq, Eq)]
pub struct Value(pub Vec<u8>);

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or binary value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value(v.as_bytes().to_vec()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
                Ok(Value(v.into_bytes()))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
                Ok(Value(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Value, E> {
                Ok(Value(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A body format.
pub trait BodyCodec: Send + Sync + 'static {
    /// The media types it reads, lowercase (`application/json`).
    fn media_types(&self) -> &[&'static str];
    /// Decodes a commit body; the error says what is wrong, in one line.
    fn decode_commit(&self, body: &[u8]) -> Result<CommitRequest, String>;
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// No codec for this media type (415); carries the media types known.
    Unsupported(String),
    /// The body does not decode (400): what is wrong.
    Malformed(String),
}

/// The codecs, by media type.
pub struct Codecs {
    codecs: Vec<Box<dyn BodyCodec>>,
}

impl fmt::Debug for Codecs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<&str> = self
            .codecs
            .iter()
            .flat_map(|c| c.media_types().iter().copied())
            .collect();
        f.debug_struct("Codecs")
            .field("media_types", &types)
            .finish()
    }
}

impl Default for Codecs {
    /// JSON and MessagePack.
    fn default() -> Codecs {
        let mut c = Codecs { codecs: Vec::new() };
        c.register(Json);
        c.register(MessagePack);
        c
    }
}

impl Codecs {
    /// Adds `codec` (later registrations win on a shared media type).
    pub fn register(&mut self, codec: impl BodyCodec) {
        self.codecs.insert(0, Box::new(codec));
    }

    /// Decodes `body` sent with `content_type`.
    pub fn decode_commit(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<CommitRequest, CodecError> {
        let essence = content_type
            .and_then(|ct| ct.split(';').next())
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let codec = self
            .codecs
            .iter()
            .find(|c| c.media_types().iter().any(|m| *m == essence))
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .codecs
                    .iter()
                    .flat_map(|c| c.media_types().iter().copied())
                    .collect();
                let sent = match content_type {
                    Some(ct) => format!("Content-Type {ct:?} is not supported"),
                    None => "a Content-Type is required".to_owned(),
                };
                CodecError::Unsupported(format!("{sent}; use one of: {}", known.join(", ")))
            })?;
        codec.decode_commit(body).map_err(CodecError::Malformed)
    }
}

/// `application/json` through serde_json.
pub struct Json;

impl BodyCodec for Json {
    fn media_types(&self) -> &[&'static str] {
        &["application/json"]
    }

    fn decode_commit(&self, body: &[u8]) -> Result<CommitRequest, String> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let req: CommitRequest = serde_path_to_error::deserialize(&mut de).map_err(path_error)?;
        de.end()
            .map_err(|e| one_line(format!("invalid JSON: {e}")))?;
        Ok(req)
    }
}

/// MessagePack through rmp-serde (`application/msgpack` and its older names).
pub struct MessagePack;

impl BodyCodec for MessagePack {
    fn media_types(&self) -> &[&'static str] {
        &[
            "application/msgpack",
            "application/x-msgpack",
            "application/vnd.msgpack",
        ]
    }

    fn decode_commit(&self, body: &[u8]) -> Result<CommitRequest, String> {
        // A `&[u8]` reader advances as it is read: what is left after the
        // value is trailing garbage.
        let mut rest: &[u8] = body;
        let req: CommitRequest = {
            let mut de = rmp_serde::Deserializer::new(&mut rest);
            serde_path_to_error::deserialize(&mut de).map_err(path_error)?
        };
        if !rest.is_empty() {
            return Err(format!(
                "invalid MessagePack: {} bytes after the value",
                rest.len()
            ));
        }
        Ok(req)
    }
}

fn path_error<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> String {
    let path = e.path().to_string();
    let message = if path == "." || path.is_empty() {
        format!("invalid body: {}", e.into_inner())
    } else {
        format!("{path}: {}", e.into_inner())
    };
    one_line(message)
}

/// The message with control characters escaped (`\n` as `\\n`): the
/// decoders quote the client's field names and strings back, and the
/// contract is one line (found by `fuzz/fuzz_targets/weasel_codec.rs`).
fn one_line(message: String) -> String {
    if !message.contains(char::is_control) {
        return message;
    }
    message
        .chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_msgpack_same_shape() {
        let codecs = Codecs::default();
        let json =
            br#"{"request_id":"c-1","read_version":3,"preconditions":[{"key":"a","version":0}],
            "operations":[{"op":"set","key":"a","value":"x"},{"op":"delete","key":"b"}]}"#;
        let a = codecs
            .decode_commit(Some("application/json; charset=utf-8"), json)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        let mp = rmp_serde::to_vec_named(&v).unwrap();
        let b = codecs
            .decode_commit(Some("Application/MsgPack"), &mp)
            .unwrap();
        assert_eq!(a, b);
        assert_eq!(a.operations[0].value, Some(Value(b"x".to_vec())));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let c = Codecs::default();
        let j = Some("application/json");
        let err = |body: &str| match c.decode_commit(j, body.as_bytes()) {
            Err(CodecError::Malformed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(
            err(r#"{"request_id":"x","operations":[{"op":"put","key":"a"}]}"#)
                .starts_with("operations[0].op: unknown variant `put`")
        );
        assert!(err(r#"{"operations":[]}"#).contains("request_id"));
        assert!(err(r#"{"request_id":"x","operations":[],"extra":1}"#).contains("extra"));
        assert!(err(r#"{"request_id":"x","operations":[]} x"#).contains("trailing"));
        assert!(err("{").contains("EOF"));
        assert!(matches!(
            c.decode_commit(Some("text/plain"), b"{}"),
            Err(CodecError::Unsupported(_))
        ));
        assert!(matches!(
            c.decode_commit(None, b"{}"),
            Err(CodecError::Unsupported(_))
        ));
    }

    /// A field name or value with control characters is quoted back
    /// escaped: the error stays one line (the input the fuzz target
    /// `weasel_codec` found, as MessagePack, and its JSON form).
    #[test]
    fn errors_stay_one_line() {
        let c = Codecs::default();
        let mut mp = vec![0x83, 0xaa, b'r'];
        mp.extend_from_slice(&[b'\n'; 9]);
        mp.extend_from_slice(b"\xa1x");
        let json = br#"{"r\n\n\u0001":1,"request_id":"x","operations":[]}"#;
        for (ct, body) in [
            ("application/msgpack", &mp[..]),
            ("application/json", &json[..]),
        ] {
            match c.decode_commit(Some(ct), body) {
                Err(CodecError::Malformed(m)) => {
                    assert!(!m.contains(char::is_control), "{ct}: {m:?}");
                    assert!(m.contains("unknown field `r\\n\\n"), "{ct}: {m:?}");
                }
                other => panic!("{ct}: {other:?}"),
            }
        }
    }
}
