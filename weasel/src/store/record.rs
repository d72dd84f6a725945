//! What one log record holds: one batch's outcomes, in commit order.
//!
//! Contract: a [`BatchRecord`] is encoded with MessagePack (rmp-serde,
//! compact array form) as the payload of one log record. It carries every
//! outcome the batch answered, conflicts included, each with its
//! `request_id`, so that after a restart a retry still gets its first
//! outcome. Committed entries carry their version (consecutive across the
//! log) and operations; recovery replays them in order.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// One batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch's outcomes, in the order they were decided.
    pub entries: Vec<Entry>,
}

/// One commit request's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The client's request id.
    pub request_id: String,
    /// What became of it.
    pub outcome: LoggedOutcome,
}

/// A decided commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoggedOutcome {
    /// Applied as `version`.
    Committed {
        /// The store version it created.
        version: u64,
        /// Its operations, in order.
        ops: Vec<LoggedOp>,
    },
    /// Refused: `key` was at `version`, not what the precondition said.
    Conflict {
        /// The key whose precondition failed.
        key: String,
        /// Its version then (0: absent).
        version: u64,
    },
}

/// A set (with a value) or a delete (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedOp {
    /// The key.
    pub key: String,
    /// The new value; `None` deletes.
    pub value: Option<ByteBuf>,
}

impl BatchRecord {
    /// The record's payload bytes.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail: no I/O, no maps
        // with non-string keys, no unsupported types.
        rmp_serde::to_vec(self).unwrap_or_default()
    }

    /// Decodes a payload.
    pub fn decode(bytes: &[u8]) -> Result<BatchRecord, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = BatchRecord {
            entries: vec![
                Entry {
                    request_id: "a".into(),
                    outcome: LoggedOutcome::Committed {
                        version: 7,
                        ops: vec![
                            LoggedOp {
                                key: "k".into(),
                                value: Some(ByteBuf::from(vec![0, 255])),
                            },
                            LoggedOp {
                                key: "d".into(),
                                value: None,
                            },
                        ],
                    },
                },
                Entry {
                    request_id: "b".into(),
                    outcome: LoggedOutcome::Conflict {
                        key: "k".into(),
                        version: 7,
                    },
                },
            ],
        };
        let bytes = r.encode();
        assert!(!bytes.is_empty());
        // The log relies on it to find record starts (log.rs).
        assert_eq!(bytes[0], crate::store::log::PAYLOAD_MARK);
        let empty = BatchRecord { entries: vec![] }.encode();
        assert_eq!(empty[0], crate::store::log::PAYLOAD_MARK);
        assert_eq!(BatchRecord::decode(&bytes).unwrap(), r);
    }
}
