//! The `Date` header value (RFC 9110 §5.6.7, IMF-fixdate), formatted at most
//! once per second and cached.
//!
//! STUB: interface fixed; implementation pending.

/// A cached IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (29 bytes).
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    value: [u8; 29],
}

impl DateCache {
    /// A cache holding the date for `unix_secs`.
    pub fn new(unix_secs: u64) -> DateCache {
        let _ = unix_secs;
        todo!()
    }

    /// Sets the time; formats again only if the second changed. Returns
    /// whether it did.
    pub fn update(&mut self, unix_secs: u64) -> bool {
        let _ = unix_secs;
        todo!()
    }

    /// The cached value.
    pub fn value(&self) -> &[u8; 29] {
        &self.value
    }

    /// The second the cached value stands for.
    pub fn secs(&self) -> u64 {
        self.secs
    }
}
