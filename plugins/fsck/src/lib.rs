//! `obnam fsck`: check that every generation of every client can be read.
//!
//! Without options it reads every tree of every generation and checks
//! that every chunk a file refers to is in the index. With
//! `--verify-data` it also reads every chunk (through the data filters, so
//! a tampered or truncated object is found) and checks each file's
//! whole-file checksum. Problems are reported one per line, naming the
//! client, the generation and the path, and the run ends non-zero.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use plugin_api::{
    App, ChunkId, Context, Entry, EntryKind, GenerationReader, Plugin, Repository, Result, Setting,
};
use sha2::{Digest, Sha256};

#[derive(Default)]
struct Fsck;

impl Plugin for Fsck {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        app.add_setting(
            Setting::boolean("verify-data")
                .help("with fsck: read every chunk and check every file's checksum")
                .group("Checking"),
        );
        app.add_subcommand(
            "fsck",
            "",
            "check that every generation of every client reads back (and, with --verify-data, its data)",
            fsck,
        );
        Ok(())
    }
}

/// What one check found.
#[derive(Default)]
struct Report {
    generations: u64,
    files: u64,
    chunks_checked: u64,
    problems: u64,
}

struct Checker<'a, 'c> {
    ctx: &'a Context<'c>,
    repo: Repository,
    verify_data: bool,
    /// Chunks already read and found good (with --verify-data).
    verified: HashSet<ChunkId>,
    report: Report,
}

impl Checker<'_, '_> {
    fn problem(&mut self, what: &str) -> Result<()> {
        self.report.problems += 1;
        plugin_api::tracing::error!("{what}");
        Ok(())
    }

    fn check_generation(&mut self, client: &str, reader: &GenerationReader) -> Result<()> {
        let mut stack = vec![PathBuf::from("/")];
        while let Some(dir) = stack.pop() {
            let entries = match reader.list_dir(&dir) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    let id = reader.info().id;
                    self.problem(&format!(
                        "client {client}, generation {id}: {}: {e}",
                        dir.display()
                    ))?;
                    continue;
                }
            };
            for entry in entries {
                let path = dir.join(OsStr::from_bytes(&entry.name));
                match entry.kind {
                    EntryKind::Dir => stack.push(path),
                    EntryKind::File => self.check_file(client, &reader.info().id, &path, &entry)?,
                    _ => {}
                }
            }
            self.ctx
                .status(&format!("{} files checked", self.report.files));
        }
        Ok(())
    }

    fn check_file(&mut self, client: &str, gen: &str, path: &Path, entry: &Entry) -> Result<()> {
        self.report.files += 1;
        let place = format!("client {client}, generation {gen}: {}", path.display());
        let mut hasher = self.verify_data.then(Sha256::new);
        let mut size = 0u64;
        for id in &entry.chunks {
            if !self.repo.has_chunk(*id) {
                return self.problem(&format!("{place}: chunk {} is missing", hex(id)));
            }
            if let Some(h) = hasher.as_mut() {
                let data = match self.repo.get_chunk(*id) {
                    Ok(d) => d,
                    Err(e) => return self.problem(&format!("{place}: {e}")),
                };
                if self.verified.insert(*id) {
                    self.report.chunks_checked += 1;
                    if self.repo.token(&data) != id.token {
                        return self.problem(&format!(
                            "{place}: chunk {} does not match its checksum",
                            hex(id)
                        ));
                    }
                }
                size += data.len() as u64;
                h.update(&data);
            }
        }
        if let Some(h) = hasher {
            if size != entry.size {
                return self.problem(&format!(
                    "{place}: its chunks hold {size} bytes, not {}",
                    entry.size
                ));
            }
            if h.finalize().as_slice() != entry.checksum.as_slice() {
                return self.problem(&format!("{place}: its content does not match its checksum"));
            }
        }
        Ok(())
    }
}

fn hex(id: &ChunkId) -> String {
    id.token.0.iter().map(|b| format!("{b:02x}")).collect()
}

fn fsck(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!("fsck takes no arguments, got '{}'", arg.to_string_lossy());
    }
    let repo = ctx.repository(false)?;
    let mut checker = Checker {
        ctx,
        repo: repo.clone(),
        verify_data: ctx.boolean("verify-data")?,
        verified: HashSet::new(),
        report: Report::default(),
    };
    for client in repo.clients()? {
        for gen in repo.generations(&client)? {
            checker.report.generations += 1;
            match repo.open_generation(&client, &gen.id) {
                Ok(reader) => checker.check_generation(&client, &reader)?,
                Err(e) => {
                    checker.problem(&format!("client {client}, generation {}: {e}", gen.id))?
                }
            }
        }
    }
    let r = &checker.report;
    if !ctx.boolean("quiet")? {
        ctx.outln(&format!(
            "Checked {} generations, {} files, {} chunks read; {} problems",
            r.generations, r.files, r.chunks_checked, r.problems
        ))?;
    }
    if r.problems > 0 {
        plugin_api::bail!("The repository has problems");
    }
    Ok(())
}

plugin_api::export_plugin!("fsck", Fsck);
