//! CPU affinity and priority: pin a thread to one CPU, list the CPUs the
//! process may run on, lower a thread's scheduling priority.
//!
//! Contract:
//! - [`pin_current_thread`] affects only the calling thread
//!   (`sched_setaffinity(0, ...)`); threads it spawns later inherit the pin.
//! - [`available_cpus`] is the affinity mask of the process (its main
//!   thread), not of the calling thread, so it stays the same after worker
//!   threads pin themselves. It honours `taskset` and cgroup cpusets: the
//!   ids are those to pass to [`pin_current_thread`], not `0..n`.

use std::io;

use rustix::process::getpid;
use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

/// Restricts the calling thread to run on CPU `cpu` only. Fails with
/// `InvalidInput` if `cpu` is beyond what a CPU set can hold, and `EINVAL`
/// if the CPU is not available to the process.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= CpuSet::MAX_CPU {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} is beyond the maximum {}", CpuSet::MAX_CPU - 1),
        ));
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    sched_setaffinity(None, &set)?;
    Ok(())
}

/// Raises the calling thread's nice value by `by` (lower priority), so that
/// on a shared core the scheduler prefers the other threads (the network
/// threads, when pipeline threads call it). Linux applies
/// `setpriority(PRIO_PROCESS, tid)` to that one thread.
pub fn lower_current_thread_priority(by: i32) -> io::Result<()> {
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid))?;
    rustix::process::setpriority_process(Some(tid), (now + by).min(19))?;
    Ok(())
}

/// The ids of the CPUs the process may run on, ascending. Empty only if the
/// mask cannot be read.
pub fn available_cpus() -> Vec<usize> {
    // The pid of the process names its main thread.
    match sched_getaffinity(Some(getpid())) {
        Ok(set) => (0..CpuSet::MAX_CPU)
            .filter(|&cpu| set.is_set(cpu))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn available_cpus_is_non_empty_and_sorted() {
        let cpus = available_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn pinning_succeeds_and_sticks() {
        let before = available_cpus();
        let cpus = before.clone();
        // On a thread of its own, so no test-harness thread stays pinned.
        thread::spawn(move || {
            // CPU 0 is present unless a cpuset excludes it.
            if cpus.contains(&0) {
                pin_current_thread(0).unwrap();
                assert_eq!(rustix::thread::sched_getcpu(), 0);
            }
            let last = *cpus.last().unwrap();
            pin_current_thread(last).unwrap();
            assert_eq!(rustix::thread::sched_getcpu(), last);
            let mask = sched_getaffinity(None).unwrap();
            assert_eq!(mask.count(), 1);
            assert!(mask.is_set(last));
        })
        .join()
        .unwrap();
        // The process mask is unchanged by a thread's pin.
        assert_eq!(available_cpus(), before);
    }

    #[test]
    fn out_of_range_cpu_is_refused() {
        let err = pin_current_thread(CpuSet::MAX_CPU).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
