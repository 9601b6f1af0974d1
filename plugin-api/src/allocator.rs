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
//! And **a larger per-thread cache of small free blocks** (128 of each
//! size instead of glibc's 7). With one arena, a thread whose cache is
//! full or empty takes the arena's lock, and threads that hand blocks to
//! one another (the walk and the reader of the previous generation's
//! trees, the reading thread of a large file and its storers) empty and
//! fill their caches all the time: half of a no-change backup's context
//! switches were waits on that lock. With the larger cache the no-change
//! backup of the benchmark corpus takes 0.124 -> 0.110 s (processor time
//! 0.145 -> 0.123 s), for a peak 1-2 MB higher; initial backups and
//! restores take as long as before.
//! glibc reads that setting only from the environment when a process
//! starts (`GLIBC_TUNABLES`), so obnam starts itself again with it set
//! ([`restart_with_thread_caches`]).
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

/// The glibc tunable of the per-thread cache's length, and obnam's value.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TCACHE_COUNT: (&str, u32) = ("glibc.malloc.tcache_count", 128);

/// Start this program again, with the same arguments, environment and
/// open files, with glibc's per-thread cache of small blocks set as the
/// module documentation says; returns (and the process goes on as it is)
/// where that is not to be done or cannot be: not glibc, the setting made
/// already (by this function, or by the user, whose value stands), or the
/// program's file not found or not executable. Call it first thing in
/// `main`, before anything else is done that the new process would do
/// again.
pub fn restart_with_thread_caches() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::process::CommandExt;

        let (name, count) = TCACHE_COUNT;
        let current = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
        if current
            .as_bytes()
            .windows(name.len())
            .any(|w| w == name.as_bytes())
        {
            return;
        }
        let Ok(program) = std::env::current_exe() else {
            return;
        };
        let mut tunables = current;
        if !tunables.is_empty() {
            tunables.push(":");
        }
        tunables.push(format!("{name}={count}"));
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(program);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        // `exec` returns only if it failed; then this process goes on.
        let _ = command.args(args).env("GLIBC_TUNABLES", tunables).exec();
    }
}
