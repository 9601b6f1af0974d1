//! Test plugin "repotest": deterministic workloads on the repository
//! service, and a verifier that reads them back.
//!
//! * `repotest-run CLIENT COUNT`: lock CLIENT, build a generation with
//!   COUNT files under `/data` whose contents are derived from the client
//!   and the file number, committing a checkpoint every 10 files, then
//!   commit and remove the checkpoints. Prints the generation id and the
//!   bytes written.
//!   Two variables make it a tool for tests of interleavings: with
//!   `OBNAM_TEST_CONTENT_OF=NAME` the files hold what NAME's would (so
//!   that one client's run dedups against another's data), and with
//!   `OBNAM_TEST_GATE=FILE` it prints `locked` once it holds the lock and
//!   then waits until FILE exists before it looks anything up. With
//!   `OBNAM_TEST_NO_CHECKSUM=1` its files record no whole-file checksum.
//! * `repotest-verify CLIENT`: read every generation of CLIENT (checkpoints
//!   too) and check every file's content, byte for byte.
//! * `repotest-lock CLIENT SECONDS`: hold CLIENT's lock for a while.
//! * `repotest-core-limit`: open the repository, then print the soft limit
//!   of core files (`0` once a secret was read).
//! * A creation barrier, for races between creators: when
//!   `OBNAM_TEST_CREATION_BARRIER=DIR` is set, the `repository-open` hook
//!   of a process creating a repository marks its arrival in DIR and waits
//!   until `OBNAM_TEST_CREATION_BARRIER_COUNT` processes have arrived, or
//!   two seconds have passed. Creators that all got this far then write
//!   their key slots and config at the same moment.
//! * With `OBNAM_TEST_OPEN=drop-seal`, a late `repository-open` callback
//!   removes the seal another plugin chose for a new repository (a bug
//!   that meant only to edit its own answer); with `=seal`, it seals the
//!   new repository itself, as a second sealing plugin would; with
//!   `=creating`, it says the repository is not being created.
//! * With `OBNAM_TEST_INTERRUPT=hang`, its `run-interrupted` callback
//!   never returns (a plugin stuck releasing what it holds).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use plugin_api::{App, Context, Entry, EntryKind, Plugin, Result};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct RepoTest;

fn arg(args: &[std::ffi::OsString], i: usize, what: &str) -> Result<String> {
    args.get(i)
        .map(|a| a.to_string_lossy().into_owned())
        .ok_or_else(|| plugin_api::Error::msg(format!("missing argument: {what}")))
}

/// The content of file `i` of `client`: a few KiB, mostly unique, with
/// one repeated block so that dedup has something to find.
fn content(client: &str, i: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut seed = Sha256::digest(format!("{client}/{i}").as_bytes()).to_vec();
    let len = 2000 + (i as usize * 997) % 14000;
    while out.len() < len {
        out.extend_from_slice(&seed);
        seed = Sha256::digest(&seed).to_vec();
    }
    out.truncate(len);
    out.extend_from_slice(&[b'x'; 4096]);
    out
}

fn chunks_of(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.chunks(4096)
}

fn run(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let count: u64 = arg(&args, 1, "COUNT")?.parse()?;
    let repo = ctx.repository(true)?;
    let content_of = std::env::var("OBNAM_TEST_CONTENT_OF").unwrap_or_else(|_| client.clone());
    repo.add_client(&client)?;
    repo.lock_client(&client)?;
    if let Some(gate) = std::env::var_os("OBNAM_TEST_GATE") {
        ctx.outln("locked")?;
        while !Path::new(&gate).exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let builder = repo.begin_generation(&client, true)?;
    let dir = Entry {
        kind: EntryKind::Dir,
        mode: 0o40755,
        ..Entry::default()
    };
    builder.put(Path::new("/data"), &dir)?;
    for i in 0..count {
        let data = content(&content_of, i);
        let mut chunks = Vec::new();
        for piece in chunks_of(&data) {
            let token = repo.token(piece);
            let id = match repo.find_chunks(token).first() {
                Some(id) => *id,
                None => repo.put_chunk(token, piece)?,
            };
            chunks.push(id);
        }
        let entry = Entry {
            kind: EntryKind::File,
            mode: 0o100644,
            size: data.len() as u64,
            checksum: match std::env::var_os("OBNAM_TEST_NO_CHECKSUM") {
                Some(_) => Vec::new(),
                None => Sha256::digest(&data).to_vec(),
            },
            chunks,
            ..Entry::default()
        };
        builder.put(&PathBuf::from(format!("/data/file{i}")), &entry)?;
        if i % 10 == 9 {
            builder.commit(true)?;
        }
    }
    builder.finish_dir(Path::new("/data"))?;
    let gen = builder.commit(false)?;
    // Held after the commit, before the tidying up: where an interruption
    // names the committed generation.
    if let Some(gate) = std::env::var_os("OBNAM_TEST_GATE_AFTER_COMMIT") {
        ctx.outln(&format!("committed {}", gen.id))?;
        while !Path::new(&gate).exists() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    builder.remove_checkpoints()?;
    repo.unlock_client(&client)?;
    ctx.outln(&format!(
        "generation {} files {} bytes-written {}",
        gen.id,
        gen.file_count,
        repo.bytes_written()
    ))
}

fn verify(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let content_of = std::env::var("OBNAM_TEST_CONTENT_OF").unwrap_or_else(|_| client.clone());
    let repo = ctx.repository(false)?;
    let gens = repo.generations(&client)?;
    let mut files = 0;
    for gen in &gens {
        let reader = repo.open_generation(&client, &gen.id)?;
        let entries = reader.list_dir(Path::new("/data"))?.unwrap_or_default();
        if entries.len() as u64 != gen.file_count {
            plugin_api::bail!(
                "generation {} lists {} files but counts {}",
                gen.id,
                entries.len(),
                gen.file_count
            );
        }
        for entry in entries {
            let name = String::from_utf8_lossy(&entry.name).into_owned();
            let i: u64 = name.trim_start_matches("file").parse()?;
            let mut data = Vec::new();
            for id in &entry.chunks {
                data.extend_from_slice(&repo.get_chunk(*id)?);
            }
            if data != content(&content_of, i) || Sha256::digest(&data).to_vec() != entry.checksum {
                plugin_api::bail!("generation {}: {name} does not read back", gen.id);
            }
            files += 1;
        }
    }
    ctx.outln(&format!("generations {} files {files} ok", gens.len()))
}

/// The soft limit of core files once the repository is open, as
/// `/proc/self/limits` gives it (`0`, `unlimited`).
fn core_limit(ctx: &Context<'_>, _args: Vec<std::ffi::OsString>) -> Result<()> {
    ctx.repository(false)?;
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .ok_or_else(|| plugin_api::Error::msg("no core file limit in /proc/self/limits"))?;
    let soft = line["Max core file size".len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default();
    ctx.outln(soft)
}

fn hold_lock(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let seconds: u64 = arg(&args, 1, "SECONDS")?.parse()?;
    let repo = ctx.repository(true)?;
    repo.lock_client(&client)?;
    ctx.outln("locked")?;
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    Ok(())
}

/// The `repository-open` hook: the creation barrier (see the top).
fn creation_barrier(payload: &serde_json::Value) -> Result<()> {
    let Some(dir) = std::env::var_os("OBNAM_TEST_CREATION_BARRIER") else {
        return Ok(());
    };
    if payload.get("creating").and_then(serde_json::Value::as_bool) != Some(true) {
        return Ok(());
    }
    let count: usize = std::env::var("OBNAM_TEST_CREATION_BARRIER_COUNT")
        .unwrap_or_else(|_| "2".into())
        .parse()?;
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(std::process::id().to_string()), b"")?;
    let start = std::time::Instant::now();
    while std::fs::read_dir(&dir)?.count() < count
        && start.elapsed() < std::time::Duration::from_secs(2)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(())
}

/// The late `repository-open` callback of `OBNAM_TEST_OPEN` (see the top).
fn meddle(payload: &mut serde_json::Value) -> Result<()> {
    let creating = payload.get("creating").and_then(serde_json::Value::as_bool) == Some(true);
    match std::env::var("OBNAM_TEST_OPEN").as_deref() {
        Ok("drop-seal") if creating => {
            if let Some(o) = payload.as_object_mut() {
                o.remove("seal");
                o.remove("new_key_slots");
            }
        }
        Ok("seal") if creating => {
            payload["seal"] = serde_json::json!({"filter": "repotest"});
        }
        Ok("creating") => payload["creating"] = serde_json::Value::Bool(false),
        _ => {}
    }
    Ok(())
}

impl Plugin for RepoTest {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_subcommand(
            "repotest-run",
            "CLIENT COUNT",
            "build a deterministic generation",
            run,
        );
        app.add_subcommand(
            "repotest-verify",
            "CLIENT",
            "read back every generation of CLIENT",
            verify,
        );
        app.add_subcommand(
            "repotest-lock",
            "CLIENT SECONDS",
            "hold CLIENT's lock for SECONDS",
            hold_lock,
        );
        app.add_subcommand(
            "repotest-core-limit",
            "",
            "open the repository, then print the soft limit of core files",
            core_limit,
        );
        app.add_json_callback(
            plugin_api::payloads::REPOSITORY_OPEN,
            plugin_api::PRIORITY_DEFAULT,
            |_ctx, payload| creation_barrier(payload),
        );
        app.add_json_callback(
            plugin_api::payloads::REPOSITORY_OPEN,
            plugin_api::PRIORITY_LATE,
            |_ctx, payload| meddle(payload),
        );
        app.add_json_callback(
            plugin_api::payloads::RUN_INTERRUPTED,
            plugin_api::PRIORITY_DEFAULT,
            |_ctx, _payload| {
                if std::env::var("OBNAM_TEST_INTERRUPT").as_deref() == Ok("hang") {
                    loop {
                        std::thread::park();
                    }
                }
                Ok(())
            },
        );
        Ok(())
    }
}

plugin_api::export_plugin!("repotest", RepoTest);
