//! The chunk index at scale: a benchmark (not a test) of opening a
//! repository whose index lists tens of millions of chunks, and of the
//! lookups a backup makes, with the process's peak resident memory.
//!
//! ```sh
//! cargo build --release -p obnam-repository --example index_scale
//! B=target/release/examples/index_scale
//! $B create /dev/shm/big 50000000          # 50M random entries in index/, no pack data
//! $B open /dev/shm/big /dev/shm/cache 1000000   # cold: builds the cache
//! $B open /dev/shm/big /dev/shm/cache 1000000   # warm: reuses it
//! ```
//!
//! `create DIR N [CHUNKS_PER_PACK]` makes a repository (no filters) and
//! writes into its `index/` N entries of random tokens, in index objects
//! of at most a million entries, CHUNKS_PER_PACK (default 32: 8 MiB packs
//! of 256 KiB chunks) to a pack; no pack is written. The tokens are a
//! function of the entry's number, so `open` can look up ones that are
//! there.
//!
//! `open DIR CACHE LOOKUPS` opens it with its index cache in CACHE (run
//! it twice: the first run builds the cache, the second reuses it), then
//! makes LOOKUPS lookups of each kind a backup makes: `find_chunks` of a
//! token that is stored (a hit) and of one that is not (a miss: a new
//! chunk), and `has_chunk` of stored ids (an unchanged file). It prints
//! the time of each, the index's own memory, the cache's size on disk,
//! and the peak RSS (VmHWM) of the process. Nothing here is asserted:
//! the figures depend on the machine.

use std::sync::Arc;
use std::time::Instant;

use obnam_repository::ids::{ChunkId, ObjectId, Token};
use obnam_repository::index::{self, BlobKind, Index, IndexEntry, Location};
use obnam_repository::object::{self, NoFilters};
use obnam_repository::{OpenOptions, Repository};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Processor time (user and system) of the process so far, in seconds:
/// what a figure costs, whatever else the machine is doing.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here;
    // 100 ticks a second on Linux.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The token of entry `i` (entries at or past N are never stored).
fn token(i: u64) -> Token {
    let mut t = [0u8; 32];
    for (k, part) in t.chunks_exact_mut(8).enumerate() {
        part.copy_from_slice(&splitmix(i.wrapping_mul(4).wrapping_add(k as u64)).to_le_bytes());
    }
    Token(t)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn create(dir: &str, n: u64, per_pack: u64) -> Result<(), Box<dyn std::error::Error>> {
    let options = OpenOptions {
        create: true,
        ..OpenOptions::default()
    };
    let repo = Repository::open(dir, &options, Arc::new(NoFilters))?;
    // Objects carry a checksum from format 3 on; no filter (no seal)
    // is applied.
    let checksums = repo.config().version >= 3;
    let encode = |key: &str, mut data: Vec<u8>| {
        if checksums {
            object::add_checksum(key, &mut data);
        }
        object::seal_whole(&NoFilters, None, key, &data)
    };
    // The local store makes folders as objects are written into them.
    std::fs::create_dir_all(std::path::Path::new(dir).join("index"))?;
    let started = Instant::now();
    let per_object = index::MAX_ENTRIES_PER_OBJECT as u64;
    let mut written = 0;
    while written < n {
        let count = per_object.min(n - written);
        let mut table = Index::default();
        let mut pack = 0;
        let entries: Vec<IndexEntry> = (written..written + count)
            .map(|i| {
                if i == written || i % per_pack == 0 {
                    pack = table.pack_number(ObjectId::random());
                }
                IndexEntry {
                    id: ChunkId {
                        token: token(i),
                        variant: 0,
                    },
                    location: Location {
                        pack,
                        offset: ((i % per_pack) * 262_144) as u32,
                        length: 262_144,
                        kind: BlobKind::Data,
                    },
                }
            })
            .collect();
        let key = format!("index/{}", ObjectId::random());
        let stored = encode(&key, index::encode(&table, &entries))?;
        std::fs::write(std::path::Path::new(dir).join(&key), stored)?;
        written += count;
    }
    println!(
        "wrote {n} entries ({} per pack) in {:.1} s; index/ holds {} MiB",
        per_pack,
        started.elapsed().as_secs_f64(),
        dir_bytes(&std::path::Path::new(dir).join("index")) >> 20
    );
    Ok(())
}

fn open(dir: &str, cache: &str, lookups: u64) -> Result<(), Box<dyn std::error::Error>> {
    let before = peak_rss_kib();
    let options = OpenOptions {
        index_cache: obnam_repository::index_cache::IndexCacheDir::At(cache.into()),
        ..OpenOptions::default()
    };
    let started = Instant::now();
    let cpu = cpu_seconds();
    let repo = Repository::open(dir, &options, Arc::new(NoFilters))?;
    // The index is loaded when first needed: this is that load.
    let n = repo.chunk_count() as u64;
    let opened = started.elapsed();
    let open_cpu = cpu_seconds() - cpu;
    let after_open = peak_rss_kib();
    let mut rng = 12345u64;
    let mut next = || {
        rng = splitmix(rng);
        rng
    };
    // Per lookup: wall-clock and processor time, in ns.
    let time = |f: &mut dyn FnMut() -> bool| {
        let started = Instant::now();
        let cpu = cpu_seconds();
        let mut found = 0u64;
        for _ in 0..lookups {
            found += u64::from(f());
        }
        let per = lookups.max(1) as f64;
        (
            started.elapsed().as_nanos() as f64 / per,
            (cpu_seconds() - cpu) * 1e9 / per,
            found,
        )
    };
    let (hit, hit_cpu, hits) =
        time(&mut || !repo.find_chunks(&token(next() % n.max(1))).is_empty());
    let (miss, miss_cpu, misses) =
        time(&mut || !repo.find_chunks(&token(n + next() % (1 << 40))).is_empty());
    let (has, has_cpu, found) =
        time(&mut || repo.has_chunk(&ChunkId::first(token(next() % n.max(1)))));
    println!(
        "chunks {n}: open {:.2} s ({open_cpu:.2} s processor); per lookup, wall (processor): \
         find_chunks hit {hit:.0} ns ({hit_cpu:.0}), {hits}/{lookups} found; \
         miss {miss:.0} ns ({miss_cpu:.0}), {misses} found; \
         has_chunk {has:.0} ns ({has_cpu:.0}), {found} found; \
         index memory {} MiB; cache on disk {} MiB; peak RSS {} MiB (after open {} MiB, before {} MiB)",
        opened.as_secs_f64(),
        repo.index_memory_bytes() >> 20,
        dir_bytes(std::path::Path::new(cache)) >> 20,
        peak_rss_kib() / 1024,
        after_open / 1024,
        before / 1024,
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: index_scale create DIR N [CHUNKS_PER_PACK] | open DIR CACHE LOOKUPS";
    match args.get(1).map(String::as_str) {
        Some("create") => {
            let dir = args.get(2).ok_or(usage)?;
            let n = args.get(3).ok_or(usage)?.parse()?;
            let per_pack = args.get(4).map_or(Ok(32), |s| s.parse())?;
            create(dir, n, per_pack)
        }
        Some("open") => {
            let (dir, cache) = (args.get(2).ok_or(usage)?, args.get(3).ok_or(usage)?);
            open(dir, cache, args.get(4).ok_or(usage)?.parse()?)
        }
        _ => Err(usage.into()),
    }
}
