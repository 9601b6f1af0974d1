//! How the process's C allocator is set up: once, by the host, before it
//! loads plugins or starts a thread.
//!
//! The host and every plugin share one C allocator (each plugin's Rust
//! standard library allocates through `malloc`), so its settings are the
//! process's, and this crate, which both link, is where they are made.
//!
//! What is set, and why: **one arena per two processors** (at least one).
//! glibc gives threads up to eight arenas per processor, and memory freed
//! into an arena stays there for that arena's later allocations. A
//! backup's threads (the walk, its workers, the storers of a large file's
//! chunks, the store's writers) each ended up with an arena of their own
//! holding freed buffers: the peak resident memory of a backup of the
//! benchmark corpus was about twice its peak of live heap (61 MiB of heap,
//! 131 to 150 MiB resident, on two processors). With one arena it is 84
//! MiB, a restore's 93 MiB is 69, and neither is slower (two arenas gave
//! 101 and 76; see `docs/performance.md`). Small blocks come from each
//! thread's own cache without the arena's lock, and the large ones (chunks,
//! packs) are few, so threads seldom wait on each other for an arena.
//!
//! Tried and not kept: a fixed threshold of 1 MiB for blocks mapped on
//! their own (glibc raises it, by default, to the largest such block
//! freed). It brought a backup's peak to 71 MiB, but every pack read whole
//! or written then cost a fresh zeroed mapping: `fsck --verify-data` took
//! 75 % more processor time.
//!
//! Elsewhere (musl, other systems) nothing is changed.

/// Set the C allocator up as the module documentation says. Call it once,
/// first thing in `main`, before any other thread starts (arenas already
/// made stay).
pub fn set_up() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let processors = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = (processors / 2).clamp(1, 128) as libc::c_int;
        // SAFETY: `mallopt` only sets one of glibc's allocator parameters,
        // under the allocator's own lock, and M_ARENA_MAX takes any
        // positive count. Were the value refused, the default would stay,
        // which is harmless, so the result is not needed.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}
