//! Byte-class masks over 16 bytes at a time, for the request head parser
//! (`proto::head`): bit `k` of a mask is set when byte `k` of the chunk is
//! outside the class, so `mask.trailing_zeros()` is the first byte that
//! needs a closer look.
//!
//! On x86_64 these are SSE2 (part of the x86_64 baseline: no runtime
//! detection): one load, a few compares, `pmovmskb`. Elsewhere the same
//! masks are computed a byte at a time. The module exists because
//! `proto` forbids `unsafe` and the SSE2 intrinsics need it (the
//! unaligned load, and calling a `#[target_feature]` function); the
//! functions here are safe and total, and the tests check every byte value
//! in every lane against the scalar definition.
#![allow(unsafe_code)]

/// Bytes a request target takes without a closer look: VCHAR
/// (`0x21..=0x7e`). Stops at SP, controls, DEL and 0x80 and up.
#[inline(always)]
pub(crate) fn target_stops(chunk: &[u8; 16]) -> u32 {
    imp::target_stops(chunk)
}

/// Bytes field content takes without a closer look: SP, VCHAR and
/// obs-text. Stops at controls (HTAB, CR and LF among them) and DEL.
#[inline(always)]
pub(crate) fn value_stops(chunk: &[u8; 16]) -> u32 {
    imp::value_stops(chunk)
}

/// The usual field-name bytes: ASCII letters, digits and `-`. Stops at
/// anything else (the colon, other token characters, faults).
#[inline(always)]
pub(crate) fn name_stops(chunk: &[u8; 16]) -> u32 {
    imp::name_stops(chunk)
}

/// The usual `Host` value bytes: ASCII letters, digits, `-`, `.` and `:`.
#[inline(always)]
pub(crate) fn host_stops(chunk: &[u8; 16]) -> u32 {
    imp::host_stops(chunk)
}

/// Whether `chunk`, with the bits of `fold` set in each byte, is `want`
/// (a fixed text, with letters matched in either case by folding in 0x20).
#[inline(always)]
pub(crate) fn matches_folded(chunk: &[u8; 16], fold: &[u8; 16], want: &[u8; 16]) -> bool {
    imp::matches_folded(chunk, fold, want)
}

/// The definitions, a byte at a time: the portable build's masks, and what
/// the tests hold the SSE2 ones to.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
mod scalar {
    #[inline(always)]
    fn mask(chunk: &[u8; 16], stop: impl Fn(u8) -> bool) -> u32 {
        let mut m = 0;
        for (k, &b) in chunk.iter().enumerate() {
            m |= u32::from(stop(b)) << k;
        }
        m
    }

    pub(crate) fn target_stops(chunk: &[u8; 16]) -> u32 {
        mask(chunk, |b| !(0x21..=0x7e).contains(&b))
    }

    pub(crate) fn value_stops(chunk: &[u8; 16]) -> u32 {
        mask(chunk, |b| b < 0x20 || b == 0x7f)
    }

    pub(crate) fn name_stops(chunk: &[u8; 16]) -> u32 {
        mask(chunk, |b| !(b.is_ascii_alphanumeric() || b == b'-'))
    }

    pub(crate) fn host_stops(chunk: &[u8; 16]) -> u32 {
        mask(chunk, |b| {
            !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
        })
    }

    pub(crate) fn matches_folded(chunk: &[u8; 16], fold: &[u8; 16], want: &[u8; 16]) -> bool {
        (0..16).all(|k| chunk[k] | fold[k] == want[k])
    }
}

#[cfg(not(target_arch = "x86_64"))]
use scalar as imp;

#[cfg(target_arch = "x86_64")]
mod imp {
    use core::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_and_si128, _mm_andnot_si128, _mm_cmpeq_epi8, _mm_cmpgt_epi8,
        _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };

    /// One call through a `#[target_feature(enable = "sse2")]` function.
    macro_rules! sse2 {
        ($f:ident($($arg:expr),*)) => {
            // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64
            // CPU has it; rustc enables it for every x86_64 target), so
            // the target feature the callee requires is present.
            unsafe { $f($($arg),*) }
        };
    }

    #[inline(always)]
    pub(crate) fn target_stops(chunk: &[u8; 16]) -> u32 {
        sse2!(target_sse2(chunk))
    }

    #[inline(always)]
    pub(crate) fn value_stops(chunk: &[u8; 16]) -> u32 {
        sse2!(value_sse2(chunk))
    }

    #[inline(always)]
    pub(crate) fn name_stops(chunk: &[u8; 16]) -> u32 {
        sse2!(name_sse2(chunk))
    }

    #[inline(always)]
    pub(crate) fn host_stops(chunk: &[u8; 16]) -> u32 {
        sse2!(host_sse2(chunk))
    }

    #[inline(always)]
    pub(crate) fn matches_folded(chunk: &[u8; 16], fold: &[u8; 16], want: &[u8; 16]) -> bool {
        sse2!(matches_sse2(chunk, fold, want))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn matches_sse2(chunk: &[u8; 16], fold: &[u8; 16], want: &[u8; 16]) -> bool {
        let x = _mm_or_si128(load(chunk), load(fold));
        _mm_movemask_epi8(_mm_cmpeq_epi8(x, load(want))) == 0xffff
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(chunk: &[u8; 16]) -> __m128i {
        // SAFETY: `chunk` is 16 readable bytes; `loadu` has no alignment
        // requirement.
        unsafe { _mm_loadu_si128(chunk.as_ptr().cast()) }
    }

    /// The bit of each byte lane whose compare is false.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn not_mask(ok: __m128i) -> u32 {
        !(_mm_movemask_epi8(ok) as u32) & 0xffff
    }

    /// Each byte lane of `x` outside `lo..=hi`, all ones. Adding
    /// `0x80 - lo` (wrapping) moves the range to the bottom of the signed
    /// bytes, `-128..=-128 + (hi - lo)`, and every other value above it, so
    /// one signed compare is exact for all 256 values; both constants fold
    /// into the instructions as memory operands (no register copies).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn outside(x: __m128i, lo: u8, hi: u8) -> __m128i {
        let moved = _mm_add_epi8(x, _mm_set1_epi8(0x80u8.wrapping_sub(lo) as i8));
        _mm_cmpgt_epi8(moved, _mm_set1_epi8((0x80 + (hi - lo)) as i8))
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn target_sse2(chunk: &[u8; 16]) -> u32 {
        let x = load(chunk);
        // Signed `> 0x20` is false for SP, controls and 0x80 and up.
        let visible = _mm_cmpgt_epi8(x, _mm_set1_epi8(0x20));
        let del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
        (_mm_movemask_epi8(del) as u32) | not_mask(visible)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn value_sse2(chunk: &[u8; 16]) -> u32 {
        let x = load(chunk);
        // Unsigned `b <= 0x1f`: `min(b, 0x1f) == b`.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
        let del = _mm_cmpeq_epi8(x, _mm_set1_epi8(0x7f));
        _mm_movemask_epi8(_mm_or_si128(control, del)) as u32
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn name_sse2(chunk: &[u8; 16]) -> u32 {
        let x = load(chunk);
        // Setting 0x20 lowercases letters and makes no other byte one.
        let lower = _mm_or_si128(x, _mm_set1_epi8(0x20));
        let no_letter = outside(lower, b'a', b'z');
        let no_digit = outside(x, b'0', b'9');
        let dash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'-' as i8));
        // `andnot(a, b)` is `!a & b`.
        _mm_movemask_epi8(_mm_andnot_si128(dash, _mm_and_si128(no_letter, no_digit))) as u32
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn host_sse2(chunk: &[u8; 16]) -> u32 {
        let x = load(chunk);
        let lower = _mm_or_si128(x, _mm_set1_epi8(0x20));
        let no_letter = outside(lower, b'a', b'z');
        let no_digit_colon = outside(x, b'0', b':');
        let no_dash_dot = outside(x, b'-', b'.');
        _mm_movemask_epi8(_mm_and_si128(
            _mm_and_si128(no_letter, no_digit_colon),
            no_dash_dot,
        )) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte value in every lane, among bytes of each other class.
    #[test]
    fn masks_match_the_byte_definitions() {
        type Mask = fn(&[u8; 16]) -> u32;
        let pairs: [(Mask, Mask); 4] = [
            (target_stops, scalar::target_stops),
            (value_stops, scalar::value_stops),
            (name_stops, scalar::name_stops),
            (host_stops, scalar::host_stops),
        ];
        for (fast, slow) in pairs {
            for b in 0..=255u8 {
                for lane in 0..16 {
                    for fill in [
                        b'a', b'Z', b'0', b'-', b':', b' ', b'\t', 0, 0x7f, 0x80, 0xff,
                    ] {
                        let mut chunk = [fill; 16];
                        chunk[lane] = b;
                        assert_eq!(
                            fast(&chunk),
                            slow(&chunk),
                            "{b:#x} at {lane} among {fill:#x}"
                        );
                    }
                }
            }
        }
        // The folded compare: every byte value in every lane, with and
        // without a fold bit.
        let want = *b"HTTP/1.1\r\nhost: ";
        let fold = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x20, 0x20, 0x20, 0x20, 0, 0];
        for lane in 0..16 {
            for b in 0..=255u8 {
                let mut chunk = want;
                chunk[lane] = b;
                assert_eq!(
                    matches_folded(&chunk, &fold, &want),
                    scalar::matches_folded(&chunk, &fold, &want),
                    "{b:#x} at {lane}"
                );
                assert_eq!(
                    matches_folded(&chunk, &fold, &want),
                    b | fold[lane] == want[lane],
                    "{b:#x} at {lane}"
                );
            }
        }
        assert!(matches_folded(b"HTTP/1.0\r\nHOST: ", &fold, &want));
        assert!(!matches_folded(b"HTTP/1.1\r\nHost:\t", &fold, &want));
        // Spot checks of the definitions themselves.
        assert_eq!(scalar::target_stops(b"/plaintext HTTP/"), 1 << 10);
        assert_eq!(scalar::value_stops(b"127.0.0.1:8080\r\n"), 3 << 14);
        assert_eq!(scalar::name_stops(b"Content-Length: "), 3 << 14);
        assert_eq!(scalar::host_stops(b"127.0.0.1:8080\r\n"), 3 << 14);
    }
}
