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
//! 101 and 76; see `docs/performance-history.md`). Small blocks come from each
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

/// `len` copies of `value`, in memory the kernel is asked to back with
/// huge pages (2 MiB) where it can (Linux's transparent huge pages, in
/// their usual `madvise` mode). For a large buffer filled once and used
/// briefly, this saves a page fault for each 4 KiB of it: the 64 MiB of an
/// Argon2id key derivation cost 16,384 faults, a third of the time that
/// opening an encrypted repository takes, and cost 32 this way. Where huge
/// pages are not to be had, it is an ordinary vector.
pub fn huge_page_vec<T: Clone>(len: usize, value: T) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    advise_huge_pages(v.spare_capacity_mut());
    v.resize(len, value);
    v
}

/// [`huge_page_vec`], or `None` where the memory cannot be had (a limit
/// on the process's address space, say): for a size that stored data
/// chose, where the allocation's failure must be an error, not the end
/// of the process. (Since 0.1.24.)
pub fn try_huge_page_vec<T: Clone>(len: usize, value: T) -> Option<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).ok()?;
    advise_huge_pages(v.spare_capacity_mut());
    v.resize(len, value);
    Some(v)
}

/// Ask the kernel to back the whole pages of `region`, not touched yet, by
/// huge pages.
fn advise_huge_pages<T>(region: &mut [std::mem::MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = region.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(region);
        let first = start.next_multiple_of(PAGE);
        let last = end / PAGE * PAGE;
        if last > first {
            // SAFETY: [first, last) lies within `region`, memory this
            // function holds the only (mutable) borrow of. MADV_HUGEPAGE
            // asks only that the range be backed by larger pages when it is
            // touched: it changes neither its contents nor its mapping nor
            // who may use it, so no reference to that memory is affected.
            // Its failure (no huge pages in this kernel, a page size other
            // than 4 KiB) leaves the memory as it was, so the result is not
            // needed.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = region;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge-page vector holds what it was asked to, at every size
    /// (empty, less than a page, not a whole number of pages, many pages).
    #[test]
    fn a_huge_page_vector_holds_its_values() {
        for len in [0usize, 1, 4095, 4097, (2 << 20) + 3, 9 << 20] {
            let v = huge_page_vec(len, 7u8);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|&b| b == 7), "{len}");
        }
        let blocks = huge_page_vec(1000, [1u64; 128]);
        assert!(blocks.iter().all(|b| b.iter().all(|&w| w == 1)));
    }
}
