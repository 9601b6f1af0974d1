//! Measures the memory the chunk index takes for a large repository.
//!
//! ```sh
//! cargo run --release -p obnam-repository --example index_memory -- create /tmp/big 1000000
//! cargo run --release -p obnam-repository --example index_memory -- open /tmp/big
//! ```
//!
//! `create` stores N tiny distinct chunks; `open` opens the repository
//! (reading every index object into memory) and prints the index's bytes
//! per chunk and the process's peak resident memory.

use std::sync::Arc;

use obnam_repository::object::NoFilters;
use obnam_repository::{OpenOptions, Repository};

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: index_memory create DIR N | open DIR";
    let (mode, dir) = match (args.get(1), args.get(2)) {
        (Some(m), Some(d)) => (m.as_str(), d.as_str()),
        _ => return Err(usage.into()),
    };
    match mode {
        "create" => {
            let n: u64 = args.get(3).ok_or(usage)?.parse()?;
            let options = OpenOptions {
                create: true,
                ..OpenOptions::default()
            };
            let repo = Repository::open(dir, &options, Arc::new(NoFilters))?;
            for i in 0..n {
                let data = i.to_le_bytes().to_vec();
                repo.put_chunk(repo.token(&data), data)?;
            }
            repo.flush()?;
            repo.consolidate_index()?;
            println!("stored {n} chunks");
        }
        "open" => {
            let before = peak_rss_kib();
            let repo = Repository::open(dir, &OpenOptions::default(), Arc::new(NoFilters))?;
            let chunks = repo.chunk_count();
            let bytes = repo.index_memory_bytes();
            println!(
                "chunks {chunks}, index {bytes} bytes = {:.1} bytes/chunk, peak RSS {} MiB (before opening {} MiB)",
                bytes as f64 / chunks.max(1) as f64,
                peak_rss_kib() / 1024,
                before / 1024
            );
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
