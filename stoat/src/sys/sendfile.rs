//! `sendfile(2)`: file bytes to a socket without passing through user
//! memory (the body of a static file sent as it is on disk).
//!
//! Contract: [`sendfile`] sends at most `count` bytes of `file` from
//! `offset` to the non-blocking socket `out`, advancing `offset` by what was
//! sent, and returns that count. The file's own position is not used or
//! moved (the offset is explicit), so one open file may be sent to several
//! connections at once. `WouldBlock` when the socket is full; `Ok(0)` when
//! `offset` is at or past the file's end (it shrank since its size was
//! taken: the caller must treat that as an error, the promised
//! `Content-Length` can no longer be kept).

use std::io;
use std::os::fd::AsFd;

/// Sends up to `count` bytes of `file` at `*offset` to `out`; see the
/// module doc.
pub fn sendfile(
    out: impl AsFd,
    file: impl AsFd,
    offset: &mut u64,
    count: usize,
) -> io::Result<usize> {
    loop {
        match rustix::fs::sendfile(out.as_fd(), file.as_fd(), Some(offset), count) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn sends_from_the_offset_and_advances_it() {
        let path = std::env::temp_dir().join(format!("stoat-sendfile-{}", std::process::id()));
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&content)
            .unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut offset = 10u64;
        let n = sendfile(&a, &file, &mut offset, 1000).unwrap();
        assert_eq!((n, offset), (1000, 1010));
        let mut got = vec![0u8; 1000];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, &content[10..1010]);
        // At the end: nothing more.
        let mut end = content.len() as u64;
        assert_eq!(sendfile(&a, &file, &mut end, 10).unwrap(), 0);
        std::fs::remove_file(&path).unwrap();
    }
}
