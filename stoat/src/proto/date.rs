//! The `Date` header value (RFC 9110 §5.6.7, IMF-fixdate), formatted at most
//! once per second and cached.
//!
//! Contract: no clock is read here. The caller passes the current time as
//! unix seconds ([`DateCache::new`], [`DateCache::update`]); the cache formats
//! again only when the second changes, by hand (civil-from-days), without
//! allocating. IMF-fixdate is fixed-length, so the value is always 29 bytes:
//!
//! ```text
//! IMF-fixdate  = day-name "," SP date1 SP time-of-day SP GMT
//!              ; e.g. Sun, 06 Nov 1994 08:49:37 GMT
//! ```
//!
//! The year has four digits, so times after `9999-12-31T23:59:59Z` are
//! clamped to that second.
//!
//! The cache also keeps the whole end of a response head for one `Server`
//! value ([`DateCache::with_server`]): `Server: <name>\r\nDate: <value>\r\n\r\n`,
//! rewritten with the date once per second, so the encoder ends every head
//! with one copy ([`DateCache::tail`]).

/// A cached IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT` (29 bytes).
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: u64,
    value: [u8; 29],
    /// `Date: <value>\r\n\r\n`: the last header line and the end of the head,
    /// kept whole so the encoder appends it with one copy.
    line: [u8; LINE_LEN],
    /// `Server: <server>\r\n` (nothing for an empty server) and `line`.
    tail: Vec<u8>,
    /// Length of the `Server` value in `tail`.
    server_len: usize,
}

/// Length of [`DateCache::line`].
const LINE_LEN: usize = 6 + 29 + 4;

/// The last second whose year has four digits: 9999-12-31T23:59:59Z.
const MAX_SECS: u64 = 253_402_300_799;

const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];

const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

impl DateCache {
    /// A cache holding the date for `unix_secs`, and the head's end for an
    /// empty `Server` value.
    pub fn new(unix_secs: u64) -> DateCache {
        DateCache::with_server(unix_secs, b"")
    }

    /// A cache holding the date for `unix_secs`, and the head's end for the
    /// `Server` value `server` (empty: no `Server` field). `server` must be
    /// a valid field value (no CR, LF or NUL; the config checks it).
    pub fn with_server(unix_secs: u64, server: &[u8]) -> DateCache {
        let value = format(unix_secs);
        let line = line(&value);
        let mut tail = Vec::with_capacity(SERVER_PREFIX.len() + server.len() + 2 + LINE_LEN);
        if !server.is_empty() {
            tail.extend_from_slice(SERVER_PREFIX);
            tail.extend_from_slice(server);
            tail.extend_from_slice(b"\r\n");
        }
        tail.extend_from_slice(&line);
        DateCache {
            secs: unix_secs,
            value,
            line,
            tail,
            server_len: server.len(),
        }
    }

    /// Sets the time; formats again only if the second changed. Returns
    /// whether it did.
    pub fn update(&mut self, unix_secs: u64) -> bool {
        if unix_secs == self.secs {
            return false;
        }
        self.secs = unix_secs;
        self.value = format(unix_secs);
        self.line = line(&self.value);
        let at = self.tail.len() - LINE_LEN;
        self.tail[at..].copy_from_slice(&self.line);
        true
    }

    /// The cached value.
    pub fn value(&self) -> &[u8; 29] {
        &self.value
    }

    /// The second the cached value stands for.
    pub fn secs(&self) -> u64 {
        self.secs
    }

    /// `Date: <value>\r\n\r\n`: the `Date` field line followed by the empty
    /// line that ends a response head.
    pub fn head_end(&self) -> &[u8; 39] {
        &self.line
    }

    /// The `Server` value this cache was made for, as the cache's own
    /// bytes: given back to [`DateCache::tail`], it is known without
    /// comparing (the same memory, borrowed from the cache).
    #[inline]
    pub fn server(&self) -> &[u8] {
        let at = SERVER_PREFIX.len();
        &self.tail[at..at + self.server_len]
    }

    /// `Server: <server>\r\nDate: <value>\r\n\r\n` (without the `Server`
    /// line when `server` is empty) if `server` is the value this cache was
    /// made for; `None` otherwise.
    #[inline]
    pub fn tail(&self, server: &[u8]) -> Option<&[u8]> {
        if server.len() != self.server_len {
            return None;
        }
        let at = SERVER_PREFIX.len();
        if std::ptr::eq(server.as_ptr(), self.tail.as_ptr().wrapping_add(at)) {
            // The cache's own copy (`DateCache::server`): the same bytes.
            return Some(&self.tail);
        }
        // With no Server line the range is empty (the tail is longer than
        // the prefix), and matches the empty value.
        match self.tail.get(at..at + server.len()) {
            Some(cached) if same(cached, server) => Some(&self.tail),
            _ => None,
        }
    }
}

/// `a == b` for slices of one length; up to 16 bytes with two overlapping
/// word compares instead of a `bcmp` call.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |s: &[u8], at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&s[at..at + 4]);
        u32::from_le_bytes(w)
    };
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// The `Server` field name, colon and space.
const SERVER_PREFIX: &[u8] = b"Server: ";

/// Builds `Date: <value>\r\n\r\n`.
fn line(value: &[u8; 29]) -> [u8; LINE_LEN] {
    let mut line = *b"Date: .............................\r\n\r\n";
    line[6..35].copy_from_slice(value);
    line
}

/// Formats `unix_secs` as IMF-fixdate.
fn format(unix_secs: u64) -> [u8; 29] {
    let secs = unix_secs.min(MAX_SECS);
    let days = secs / 86_400;
    let sod = (secs % 86_400) as u32;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 4, Sunday = 0).
    let weekday = ((days + 4) % 7) as usize;

    let mut out = *b"Www, DD Mmm YYYY HH:MM:SS GMT";
    out[0..3].copy_from_slice(DAY_NAMES[weekday]);
    put2(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTH_NAMES[month as usize - 1]);
    put2(&mut out[12..14], year / 100);
    put2(&mut out[14..16], year % 100);
    put2(&mut out[17..19], sod / 3600);
    put2(&mut out[20..22], sod / 60 % 60);
    put2(&mut out[23..25], sod % 60);
    out
}

/// Writes `n` (below 100) as two decimal digits.
fn put2(dst: &mut [u8], n: u32) {
    dst[0] = b'0' + (n / 10) as u8;
    dst[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31) in the proleptic
/// Gregorian calendar. Howard Hinnant's `civil_from_days`, for days >= 0:
/// the year is shifted to start on March 1 so the leap day ends it, and
/// counted in 400-year eras of 146097 days.
fn civil_from_days(days: u64) -> (u32, u32, u32) {
    // Day 0 of era 0 is 0000-03-01, 719468 days before the unix epoch.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = (z - era * 146_097) as u32; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of March-based year, [0, 365]
    let mp = (5 * doy + 2) / 153; // March = 0, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    // `days` is clamped to year 9999, so the year fits a u32.
    let year = (era * 400) as u32 + yoe + u32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn fmt(secs: u64) -> String {
        String::from_utf8(DateCache::new(secs).value().to_vec()).unwrap()
    }

    #[test]
    fn known_values() {
        let cases: &[(u64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (951_868_800, "Wed, 01 Mar 2000 00:00:00 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (4_107_542_399, "Sun, 28 Feb 2100 23:59:59 GMT"),
            (946_684_799, "Fri, 31 Dec 1999 23:59:59 GMT"),
            (946_684_800, "Sat, 01 Jan 2000 00:00:00 GMT"),
            (1_704_067_199, "Sun, 31 Dec 2023 23:59:59 GMT"),
            (1_735_689_599, "Tue, 31 Dec 2024 23:59:59 GMT"),
            (1_735_689_600, "Wed, 01 Jan 2025 00:00:00 GMT"),
            (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
            (253_402_300_799, "Fri, 31 Dec 9999 23:59:59 GMT"),
            // Clamped: the year has four digits.
            (253_402_300_800, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (u64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        for &(secs, want) in cases {
            assert_eq!(fmt(secs), want, "secs = {secs}");
        }
    }

    #[test]
    fn matches_httpdate() {
        // Deterministic xorshift64* over 1970..2200, plus every day boundary
        // neighbourhood it lands near.
        const END: u64 = 7_258_118_400; // 2200-01-01T00:00:00Z
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..5000 {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let secs = r % END;
            for s in [
                secs,
                secs - secs % 86_400,
                (secs - secs % 86_400).saturating_sub(1),
            ] {
                let want = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s));
                assert_eq!(fmt(s), want, "secs = {s}");
            }
        }
    }

    #[test]
    fn update_reformats_only_on_a_new_second() {
        let mut cache = DateCache::new(784_111_777);
        assert_eq!(cache.secs(), 784_111_777);
        assert!(!cache.update(784_111_777));
        assert_eq!(cache.value(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(cache.update(784_111_778));
        assert_eq!(cache.secs(), 784_111_778);
        assert_eq!(cache.value(), b"Sun, 06 Nov 1994 08:49:38 GMT");
        assert_eq!(
            cache.head_end(),
            b"Date: Sun, 06 Nov 1994 08:49:38 GMT\r\n\r\n"
        );
        // A clock that steps back is followed too.
        assert!(cache.update(0));
        assert_eq!(cache.value(), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            cache.head_end(),
            b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn tail_carries_server_and_follows_the_date() {
        let mut cache = DateCache::with_server(784_111_777, b"stoat");
        assert_eq!(
            cache.tail(b"stoat"),
            Some(&b"Server: stoat\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n"[..])
        );
        // Another value (even one of the same length) is not the cached one.
        assert_eq!(cache.tail(b"other"), None);
        assert_eq!(cache.tail(b"sto"), None);
        assert_eq!(cache.tail(b""), None);
        cache.update(784_111_778);
        assert_eq!(
            cache.tail(b"stoat"),
            Some(&b"Server: stoat\r\nDate: Sun, 06 Nov 1994 08:49:38 GMT\r\n\r\n"[..])
        );
        let mut plain = DateCache::new(0);
        assert_eq!(plain.tail(b""), Some(&plain.head_end()[..]));
        assert_eq!(plain.tail(b"stoat"), None);
        plain.update(1);
        assert_eq!(plain.tail(b""), Some(&plain.head_end()[..]));
    }

    /// The cache's own copy of its `Server` value is that value, and is
    /// recognised (by address) as a copy made elsewhere is (by content).
    #[test]
    fn own_server_value_finds_the_same_tail() {
        for server in [&b"stoat"[..], b"", b"another-server/1.0"] {
            let mut cache = DateCache::with_server(784_111_777, server);
            assert_eq!(cache.server(), server);
            let copy = server.to_vec();
            assert_eq!(cache.tail(cache.server()), cache.tail(&copy));
            assert!(cache.tail(cache.server()).is_some());
            cache.update(784_111_778);
            assert_eq!(cache.tail(cache.server()), cache.tail(&copy));
            assert!(cache
                .tail(cache.server())
                .unwrap()
                .ends_with(b":38 GMT\r\n\r\n"));
        }
    }
}
