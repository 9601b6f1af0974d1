//! Simulates many clients' lock traffic against one repository, to
//! measure what the lock protocol costs as clients are added (issue 18;
//! driven by `tests/bench/lock-traffic.sh`, which starts the S3 server).
//!
//! ```sh
//! cargo run --release -p obnam-repository --example lock_traffic -- create URL
//! cargo run --release -p obnam-repository --example lock_traffic -- loop URL CLIENTS SECONDS [HOLD_MS]
//! cargo run --release -p obnam-repository --example lock_traffic -- held URL HELD REPS
//! ```
//!
//! Each simulated client is a thread with its own opened repository (as
//! its own process would have: its own store connection and list of held
//! locks) and its own client name, `client-N`, so no two of them ever
//! conflict: what is measured is the protocol's cost, not waiting.
//!
//! - `create`: make an empty repository at URL.
//! - `loop`: CLIENTS clients at once, each taking its lock
//!   (`lock_client`, as a backup does), holding it HOLD_MS (default 0),
//!   releasing it, and again, for SECONDS. Prints the acquisitions per
//!   second and the latency of an acquisition (median, p99, max).
//! - `held`: HELD clients take their locks and keep them; then one more
//!   client takes and releases its lock REPS times, one after another.
//!   Prints that client's acquisition latency (median, p99): the cost of
//!   one acquisition with HELD other locks present.
//!
//! With `LOCK_TRAFFIC_LOG` set to the S3 server's request log (moto's,
//! one line per request), the requests made during the measured part
//! (not the opens) are counted from it, by kind and folder, and divided
//! by the acquisitions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use obnam_repository::object::NoFilters;
use obnam_repository::{OpenOptions, Repository};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TIMEOUT: Duration = Duration::from_secs(600);

fn open(url: &str, create: bool) -> Res<Repository> {
    let options = OpenOptions {
        create,
        ..OpenOptions::default()
    };
    Ok(Repository::open(url, &options, Arc::new(NoFilters))?)
}

/// Lines in the server's request log so far (0 without a log).
fn log_lines() -> usize {
    match std::env::var("LOCK_TRAFFIC_LOG") {
        Ok(path) => std::fs::read_to_string(path)
            .map(|s| s.lines().count())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// The requests logged after line `from`, counted by "METHOD folder"
/// (a GET with `list-type` is a LIST).
fn requests_since(from: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let Ok(path) = std::env::var("LOCK_TRAFFIC_LOG") else {
        return counts;
    };
    // The server logs a request when it has answered it: give the last
    // answers time to be logged.
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for line in text.lines().skip(from) {
        // moto (werkzeug): ... "GET /bucket/prefix/locks/ID HTTP/1.1" 200 -
        let Some(request) = line.split('"').nth(1) else {
            continue;
        };
        let mut words = request.split_whitespace();
        let (Some(method), Some(target)) = (words.next(), words.next()) else {
            continue;
        };
        let method = method.trim_start_matches(|c: char| !c.is_ascii_uppercase());
        let (kind, folder) = if target.contains("list-type") {
            let prefix = target
                .split(['?', '&'])
                .find_map(|p| p.strip_prefix("prefix="))
                .unwrap_or("");
            let prefix = prefix.replace("%2F", "/");
            ("LIST", folder_of(&prefix))
        } else {
            (method, folder_of(target.split('?').next().unwrap_or("")))
        };
        *counts.entry(format!("{kind} {folder}")).or_insert(0) += 1;
    }
    counts
}

/// The repository folder a key or prefix is in (`locks`, `index`, ...).
fn folder_of(key: &str) -> String {
    for folder in ["locks/", "index/", "prune/", "generations/", "packs/"] {
        if key.contains(folder) {
            return folder.trim_end_matches('/').to_string();
        }
    }
    "other".to_string()
}

fn print_requests(counts: &BTreeMap<String, usize>, acquisitions: usize) {
    let total: usize = counts.values().sum();
    if total == 0 {
        return;
    }
    let per = |n: usize| n as f64 / acquisitions.max(1) as f64;
    let parts: Vec<String> = counts
        .iter()
        .map(|(k, n)| format!("{k} {:.1}", per(*n)))
        .collect();
    println!(
        "requests per acquisition (with its release): {:.1} = {}",
        per(total),
        parts.join(", ")
    );
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn open_clients(url: &str, first: usize, n: usize) -> Res<Vec<(String, Repository)>> {
    // Opened from a few threads at once: each open reads the config and
    // lists the index, which adds up for hundreds of clients.
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| -> Res<()> {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let out = &out;
                s.spawn(move || -> Res<()> {
                    for i in (t..n).step_by(8) {
                        let repo = open(url, false)?;
                        out.lock().unwrap().push((first + i, repo));
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "an opening thread panicked")??;
        }
        Ok(())
    })?;
    let mut repos = out.into_inner().unwrap();
    repos.sort_by_key(|(i, _)| *i);
    Ok(repos
        .into_iter()
        .map(|(i, r)| (format!("client-{i}"), r))
        .collect())
}

fn run_loop(url: &str, clients: usize, seconds: f64, hold: Duration) -> Res<()> {
    let repos = open_clients(url, 0, clients)?;
    let barrier = Barrier::new(clients);
    let stop = AtomicBool::new(false);
    let latencies = Mutex::new(Vec::new());
    let from = log_lines();
    let start = Instant::now();
    std::thread::scope(|s| -> Res<()> {
        let handles: Vec<_> = repos
            .iter()
            .map(|(name, repo)| {
                let (barrier, stop, latencies) = (&barrier, &stop, &latencies);
                s.spawn(move || -> Res<()> {
                    barrier.wait();
                    let mut mine = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        repo.lock_client(name, TIMEOUT)?;
                        mine.push(t.elapsed());
                        std::thread::sleep(hold);
                        repo.unlock_client(name)?;
                    }
                    latencies.lock().unwrap().extend(mine);
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().map_err(|_| "a client thread panicked")??;
        }
        Ok(())
    })?;
    let elapsed = start.elapsed();
    let mut lat = latencies.into_inner().unwrap();
    lat.sort();
    println!(
        "loop: {clients} clients, hold {}, {:.1} s: {} acquisitions, {:.1} per second; latency median {}, p99 {}, max {}",
        ms(hold),
        elapsed.as_secs_f64(),
        lat.len(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
        ms(quantile(&lat, 1.0)),
    );
    print_requests(&requests_since(from), lat.len());
    Ok(())
}

fn run_held(url: &str, held: usize, reps: usize) -> Res<()> {
    let holders = open_clients(url, 0, held)?;
    for (name, repo) in &holders {
        repo.lock_client(name, TIMEOUT)?;
    }
    let (name, repo) = open_clients(url, held, 1)?.pop().ok_or("no client")?;
    let from = log_lines();
    let mut lat = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        repo.lock_client(&name, TIMEOUT)?;
        lat.push(t.elapsed());
        repo.unlock_client(&name)?;
    }
    let counts = requests_since(from);
    lat.sort();
    println!(
        "held: {held} other locks present: {reps} acquisitions, latency median {}, p99 {}",
        ms(quantile(&lat, 0.5)),
        ms(quantile(&lat, 0.99)),
    );
    print_requests(&counts, reps);
    for (name, repo) in &holders {
        repo.unlock_client(name)?;
    }
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: lock_traffic create URL | loop URL CLIENTS SECONDS [HOLD_MS] | held URL HELD REPS";
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or(usage);
    match arg(1)? {
        "create" => {
            open(arg(2)?, true)?;
            println!("created {}", arg(2)?);
        }
        "loop" => {
            let hold = args.get(5).map(|h| h.parse()).transpose()?.unwrap_or(0);
            run_loop(
                arg(2)?,
                arg(3)?.parse()?,
                arg(4)?.parse()?,
                Duration::from_millis(hold),
            )?;
        }
        "held" => run_held(arg(2)?, arg(3)?.parse()?, arg(4)?.parse()?)?,
        _ => return Err(usage.into()),
    }
    Ok(())
}
