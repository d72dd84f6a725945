//! The open-file limit (`RLIMIT_NOFILE`), which caps how many connections
//! the process can hold.
//!
//! Contract:
//! - Limits are `u64`; `u64::MAX` stands for "unlimited" (`RLIM_INFINITY`).
//! - [`raise_nofile_limit`] raises the soft limit to the hard limit (no
//!   privilege needed) and returns the new soft limit. An unlimited hard
//!   limit is not a valid `RLIMIT_NOFILE` value for the soft limit, so then
//!   the kernel's ceiling `fs.nr_open` is used. It never lowers the limit.
//! - Call it once at start-up, before threads are spawned (the limit is
//!   process-wide).

use std::io;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Where the kernel's per-process ceiling for open files is published.
const NR_OPEN_PATH: &str = "/proc/sys/fs/nr_open";

/// The current `(soft, hard)` open-file limits.
pub fn nofile_limit() -> (u64, u64) {
    let limit = getrlimit(Resource::Nofile);
    (
        limit.current.unwrap_or(u64::MAX),
        limit.maximum.unwrap_or(u64::MAX),
    )
}

/// Raises the soft open-file limit to the hard limit; returns the new soft
/// limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let (soft, hard) = nofile_limit();
    let target = if hard == u64::MAX { nr_open()? } else { hard };
    if soft >= target {
        return Ok(soft);
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: if hard == u64::MAX { None } else { Some(hard) },
        },
    )?;
    Ok(nofile_limit().0)
}

/// The kernel's maximum for `RLIMIT_NOFILE` (`fs.nr_open`).
fn nr_open() -> io::Result<u64> {
    let text = std::fs::read_to_string(NR_OPEN_PATH)?;
    text.trim()
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{NR_OPEN_PATH}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_returns_the_hard_limit() {
        let (soft, hard) = nofile_limit();
        assert!(soft <= hard);
        let raised = raise_nofile_limit().unwrap();
        assert!(raised >= soft);
        if hard != u64::MAX {
            assert_eq!(raised, hard);
        }
        assert_eq!(nofile_limit(), (raised, hard));
        // Raising again changes nothing.
        assert_eq!(raise_nofile_limit().unwrap(), raised);
    }

    #[test]
    fn nr_open_is_readable() {
        assert!(nr_open().unwrap() >= 1024);
    }
}
