//! Giving freed heap memory back to the kernel.
//!
//! The allocator keeps memory it got from the kernel after the program
//! frees it, unless it lies at the top of a heap: a burst of connections
//! (buffers, table, output) can leave RSS up long after the memory was
//! freed. After the runtime frees a lot at once (the pool's trim, the
//! connection table shrinking) it calls [`release_free_heap`], as HAProxy
//! calls `malloc_trim` after flushing its pools.

/// Asks glibc's allocator to return free pages of every arena to the kernel
/// (`malloc_trim(0)`: whole free pages inside the heaps are released with
/// `MADV_DONTNEED`, not only the top). Costs a walk of the allocator's free
/// lists, so call it after freeing much, not per request. A no-op with
/// other C libraries.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: malloc_trim has no preconditions: it takes the allocator's
    // own locks and touches only memory the allocator owns and considers
    // free (glibc manual, "Memory Allocation Tunables"/malloc_trim(3)).
    unsafe {
        libc::malloc_trim(0);
    }
}
