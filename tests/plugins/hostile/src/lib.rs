//! Test plugin "hostile": writes generations that a careless restore would
//! follow out of its target folder, so that the black-box tests can check
//! that `obnam restore` refuses them.
//!
//! * `hostile-nul CLIENT`: through the repository API, a generation with a
//!   file whose name contains a NUL byte, next to a good file.
//! * `hostile-raw CLIENT OUTSIDE`: a generation whose directory trees are
//!   written by hand, because the API's generation builder (rightly) cannot
//!   make them: entries named `..` and with `/` in their names (one of them
//!   an absolute path into OUTSIDE), a symlink to OUTSIDE followed by a
//!   directory of the same name with a file in it, a symlink followed by a
//!   file of the same name, and one good file. File data goes through the
//!   API; the tree pack, its index object and the generation object are
//!   written into the repository folder as `docs/repository-format.md`
//!   describes them (no data filters, so every object has an empty filter
//!   header). The repository must be a local folder.
//! * `hostile-damaged CLIENT`: through the API, a generation under `/data`
//!   with a good file, a file whose checksum does not match its content, a
//!   file with a chunk that was never stored, and a file whose recorded size
//!   differs from its content's.
//! * `hostile-split-link CLIENT`: through the API, a generation with two
//!   names of one hard-linked file (same device and inode) recorded with
//!   two contents.
//!
//! Each prints the id of the generation it wrote.
//!
//! * `hostile-recurse`: calls the hook `hostile-echo`, whose callback
//!   calls the same hook again, for ever: the host must stop it with an
//!   error, not die of a stack overflow.
//! * `hostile-thread-panic`: starts a thread that panics, and carries on
//!   when it has ended: the panic must be reported all the same.
//!
//! It also plays a user who changes files under a running backup: with
//! `OBNAM_TEST_SWAP=NAME:ACTION` set, its `backup-exclude` callback acts on
//! the file named NAME when the walk meets it, that is after the walk's
//! `lstat` and before a worker reads the file, so the race is won every
//! time. ACTION is `fifo` (replace the file with a FIFO), `symlink=TARGET`
//! (replace it, a file or a folder, with a symlink to TARGET), `replace=OTHER`
//! (move the folder OTHER into its place), `remove` (remove it, a file or
//! a folder with what is in it), `rewrite` (write other bytes of the same
//! length over it and set its modification time back) or `grow=BYTES`
//! (append BYTES bytes to it). A folder replaced is moved aside to `NAME.moved`.
//!
//! And a buggy plugin on the chunk hooks, after the dedup plugin has
//! answered: with `OBNAM_TEST_CHUNKER=shrink` its `backup-chunk-boundaries`
//! callback cuts the data it was given to half (and the lengths with it);
//! with `OBNAM_TEST_STORE=other-id` its `backup-store-chunk` callback
//! answers the id of other content (one byte of the token changed).
//! With `OBNAM_TEST_CHDIR=DIR` its `backup-starting` callback moves the
//! process's working folder to DIR. With `OBNAM_TEST_EXIT=CODE` it
//! ends the process there with `exit(CODE)`.
//!
//! With `HOSTILE_ENABLE=error` (or `panic`) its `enable` fails so (or
//! panics): a plugin that does not start.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use plugin_api::payloads::{
    ExcludeCandidate, SplitRequest, StoreChunkRequest, BACKUP_CHUNK_BOUNDARIES, BACKUP_EXCLUDE,
    BACKUP_STORE_CHUNK,
};
use plugin_api::{
    App, ChunkId, Context, Entry, EntryKind, Plugin, Repository, Result, PRIORITY_DEFAULT,
    PRIORITY_LATE,
};
use serde::Serialize;

#[derive(Default)]
struct Hostile;

fn arg(args: &[std::ffi::OsString], i: usize, what: &str) -> Result<String> {
    args.get(i)
        .map(|a| a.to_string_lossy().into_owned())
        .ok_or_else(|| plugin_api::Error::msg(format!("missing argument: {what}")))
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// Store `data` as one chunk; its id and the file checksum a backup
/// records for a file of these bytes (SHA-256, whatever the tokens are).
fn store(repo: &Repository, data: &[u8]) -> Result<(ChunkId, Vec<u8>)> {
    use sha2::{Digest, Sha256};
    let token = repo.token(data);
    let id = match repo.find_chunks(token).first() {
        Some(id) => *id,
        None => repo.put_chunk(token, data)?,
    };
    Ok((id, Sha256::digest(data).to_vec()))
}

fn nul(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let repo = ctx.repository(true)?;
    repo.add_client(&client)?;
    repo.lock_client(&client)?;
    let builder = repo.begin_generation(&client, false)?;
    let dir = Entry {
        kind: EntryKind::Dir,
        mode: 0o40755,
        nlink: 2,
        ..Entry::default()
    };
    builder.put(Path::new("/evil"), &dir)?;
    for (name, data) in [(&b"good"[..], &b"good\n"[..]), (b"bad\0name", b"pwned\n")] {
        let (id, checksum) = store(&repo, data)?;
        let mut path = b"/evil/".to_vec();
        path.extend_from_slice(name);
        let file = Entry {
            kind: EntryKind::File,
            mode: 0o100644,
            nlink: 1,
            size: data.len() as u64,
            checksum,
            chunks: vec![id],
            ..Entry::default()
        };
        use std::os::unix::ffi::OsStringExt;
        builder.put(&PathBuf::from(std::ffi::OsString::from_vec(path)), &file)?;
    }
    builder.finish_dir(Path::new("/evil"))?;
    let gen = builder.commit(false)?;
    repo.unlock_client(&client)?;
    ctx.outln(&gen.id)
}

fn damaged(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let repo = ctx.repository(true)?;
    repo.add_client(&client)?;
    repo.lock_client(&client)?;
    let builder = repo.begin_generation(&client, false)?;
    let dir = Entry {
        kind: EntryKind::Dir,
        mode: 0o40755,
        nlink: 2,
        ..Entry::default()
    };
    builder.put(Path::new("/data"), &dir)?;
    let file = |data: &[u8]| -> Result<Entry> {
        let (id, checksum) = store(&repo, data)?;
        Ok(Entry {
            kind: EntryKind::File,
            mode: 0o100644,
            nlink: 1,
            size: data.len() as u64,
            checksum,
            chunks: vec![id],
            ..Entry::default()
        })
    };
    builder.put(Path::new("/data/good"), &file(b"good\n")?)?;
    let mut bad_checksum = file(b"content\n")?;
    bad_checksum.checksum = vec![0; 32];
    builder.put(Path::new("/data/bad-checksum"), &bad_checksum)?;
    let mut missing = file(b"stored\n")?;
    missing.chunks.push(ChunkId {
        token: repo.token(b"this chunk was never stored"),
        variant: 0,
    });
    builder.put(Path::new("/data/missing-chunk"), &missing)?;
    let mut wrong_size = file(b"sized\n")?;
    wrong_size.size = 1000;
    builder.put(Path::new("/data/wrong-size"), &wrong_size)?;
    builder.finish_dir(Path::new("/data"))?;
    let gen = builder.commit(false)?;
    repo.unlock_client(&client)?;
    ctx.outln(&gen.id)
}

/// `hostile-split-link CLIENT`: a generation with `/data/a/one` and
/// `/data/c/two`, recorded as two names of one file (the same device and
/// inode, two links) but with different contents, as a backup records a
/// hard-linked file rewritten between its reading of the two names.
fn split_link(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let repo = ctx.repository(true)?;
    repo.add_client(&client)?;
    repo.lock_client(&client)?;
    let builder = repo.begin_generation(&client, false)?;
    let dir = Entry {
        kind: EntryKind::Dir,
        mode: 0o40755,
        nlink: 2,
        ..Entry::default()
    };
    for folder in ["/data", "/data/a", "/data/c"] {
        builder.put(Path::new(folder), &dir)?;
    }
    let kind = repo.file_checksum_kind();
    let linked = |data: &[u8]| -> Result<Entry> {
        // The checksum of the repository's kind (`store` gives SHA-256).
        let (id, _) = store(&repo, data)?;
        let mut hasher = plugin_api::checksum::FileHasher::new(kind);
        hasher.update(data);
        Ok(Entry {
            kind: EntryKind::File,
            mode: 0o100644,
            nlink: 2,
            dev: 7,
            ino: 99,
            size: data.len() as u64,
            mtime: 1_700_000_000,
            checksum: hasher.finish(),
            chunks: vec![id],
            ..Entry::default()
        })
    };
    builder.put(Path::new("/data/a/one"), &linked(b"first content\n")?)?;
    builder.finish_dir(Path::new("/data/a"))?;
    builder.put(
        Path::new("/data/c/two"),
        &linked(b"second, longer content\n")?,
    )?;
    builder.finish_dir(Path::new("/data/c"))?;
    builder.finish_dir(Path::new("/data"))?;
    let gen = builder.commit(false)?;
    repo.unlock_client(&client)?;
    ctx.outln(&gen.id)
}

/// A tree entry as the repository format stores it.
#[derive(Serialize, Clone)]
struct RawEntry {
    #[serde(with = "serde_bytes")]
    name: Vec<u8>,
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: i64,
    mtime_ns: u32,
    ctime: i64,
    ctime_ns: u32,
    nlink: u64,
    dev: u64,
    ino: u64,
    #[serde(with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    target: Vec<u8>,
    #[serde(with = "serde_bytes", skip_serializing_if = "Vec::is_empty")]
    checksum: Vec<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    chunks: Vec<serde_bytes::ByteBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtree: Option<serde_bytes::ByteBuf>,
}

#[derive(Serialize)]
struct RawTree {
    entries: Vec<RawEntry>,
}

fn stored_id(id: &ChunkId) -> serde_bytes::ByteBuf {
    let mut bytes = id.token.0.to_vec();
    if id.variant != 0 {
        bytes.extend_from_slice(&id.variant.to_le_bytes());
    }
    serde_bytes::ByteBuf::from(bytes)
}

fn base(name: &[u8], kind: &'static str, mode: u32) -> RawEntry {
    RawEntry {
        name: name.to_vec(),
        kind,
        mode,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 1_000_000_000,
        mtime_ns: 0,
        ctime: 1_000_000_000,
        ctime_ns: 0,
        nlink: 1,
        dev: 1,
        ino: 0,
        target: Vec::new(),
        checksum: Vec::new(),
        chunks: Vec::new(),
        subtree: None,
    }
}

/// An object of format 3 as `docs/repository-format.md` gives it: the
/// filter header and plain bytes in `object` (no filters, so one 0 byte of
/// header), then the checksum of the plain bytes bound to the object's
/// name.
fn checksummed(context: &str, mut object: Vec<u8>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"obnam object checksum\0");
    h.update(context.as_bytes());
    h.update(b"\0");
    h.update(&object[1..]);
    object.extend_from_slice(&h.finalize());
    object
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Collects tree blobs and writes them as one tree pack with its index.
struct TreePack<'a> {
    repo: &'a Repository,
    blobs: Vec<(ChunkId, Vec<u8>)>,
    next_ino: u64,
}

impl TreePack<'_> {
    fn file(&mut self, name: &[u8], data: &[u8]) -> Result<RawEntry> {
        let (id, checksum) = store(self.repo, data)?;
        self.next_ino += 1;
        let mut e = base(name, "file", 0o100644);
        e.size = data.len() as u64;
        e.checksum = checksum;
        e.chunks = vec![stored_id(&id)];
        e.ino = self.next_ino;
        Ok(e)
    }

    fn symlink(&mut self, name: &[u8], target: &[u8]) -> RawEntry {
        self.next_ino += 1;
        let mut e = base(name, "symlink", 0o120777);
        e.target = target.to_vec();
        e.ino = self.next_ino;
        e
    }

    /// A directory entry whose subtree holds `entries` (kept in the order
    /// given: a hostile tree need not be sorted).
    fn dir(&mut self, name: &[u8], entries: Vec<RawEntry>) -> Result<RawEntry> {
        let id = self.tree(entries)?;
        self.next_ino += 1;
        let mut e = base(name, "dir", 0o40755);
        e.nlink = 2;
        e.subtree = Some(stored_id(&id));
        e.ino = self.next_ino;
        Ok(e)
    }

    fn tree(&mut self, entries: Vec<RawEntry>) -> Result<ChunkId> {
        let bytes = rmp_serde::to_vec_named(&RawTree { entries })
            .map_err(|e| plugin_api::Error::msg(format!("encoding a tree: {e}")))?;
        let id = ChunkId {
            token: self.repo.token(&bytes),
            variant: 0,
        };
        if !self.blobs.iter().any(|(b, _)| *b == id) {
            self.blobs.push((id, bytes));
        }
        Ok(id)
    }

    /// Write the pack and the index object into the repository folder.
    fn write(self, folder: &Path) -> Result<()> {
        let seed = format!("hostile {}", now_ns());
        let pack_id = self.repo.token(format!("{seed} pack").as_bytes()).0[..16].to_vec();
        let index_id = self.repo.token(format!("{seed} index").as_bytes()).0[..16].to_vec();
        let mut pack = b"OBNAMPK1".to_vec();
        let mut places = Vec::new();
        for (id, bytes) in &self.blobs {
            let offset = pack.len() as u32;
            pack.push(0); // no filter tags
            pack.extend_from_slice(bytes);
            places.push((*id, offset, (bytes.len() + 1) as u32));
        }
        let mut trailer = vec![0u8]; // no filter tags
        trailer.extend_from_slice(&(places.len() as u32).to_le_bytes());
        let mut index = vec![0u8]; // no filter tags
        index.extend_from_slice(b"OBNAMIX1");
        index.extend_from_slice(&1u32.to_le_bytes());
        index.extend_from_slice(&pack_id);
        index.extend_from_slice(&(places.len() as u32).to_le_bytes());
        for (id, offset, length) in &places {
            for out in [&mut trailer, &mut index] {
                out.extend_from_slice(&id.token.0);
                out.extend_from_slice(&id.variant.to_le_bytes());
            }
            index.extend_from_slice(&0u32.to_le_bytes()); // pack number
            for out in [&mut trailer, &mut index] {
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&length.to_le_bytes());
                out.push(1); // tree blob
            }
        }
        let trailer = checksummed(&format!("pack/{}", hex(&pack_id)), trailer);
        let index = checksummed(&format!("index/{}", hex(&index_id)), index);
        pack.extend_from_slice(&trailer);
        pack.extend_from_slice(&(trailer.len() as u32).to_le_bytes());
        pack.extend_from_slice(b"OBPK");
        let pack_hex = hex(&pack_id);
        let pack_dir = folder.join("packs").join(&pack_hex[..2]);
        std::fs::create_dir_all(&pack_dir)?;
        std::fs::write(pack_dir.join(&pack_hex), pack)?;
        std::fs::create_dir_all(folder.join("index"))?;
        std::fs::write(folder.join("index").join(hex(&index_id)), index)?;
        Ok(())
    }
}

fn raw(ctx: &Context<'_>, args: Vec<std::ffi::OsString>) -> Result<()> {
    let client = arg(&args, 0, "CLIENT")?;
    let outside = arg(&args, 1, "OUTSIDE")?;
    let url = ctx
        .string("repository")?
        .ok_or_else(|| plugin_api::Error::msg("hostile-raw needs --repository"))?;
    let folder = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
    let repo = ctx.repository(true)?;
    repo.add_client(&client)?;
    repo.lock_client(&client)?;
    let mut trees = TreePack {
        repo: &repo,
        blobs: Vec::new(),
        next_ino: 100,
    };

    let escaped1 = trees.file(b"escaped1", b"pwned 1\n")?;
    let up2 = trees.dir(b"..", vec![escaped1])?;
    let up1 = trees.dir(b"..", vec![up2])?;
    let slashed = trees.file(b"../../escaped2", b"pwned 2\n")?;
    let absolute = trees.file(format!("{outside}/escaped3").as_bytes(), b"pwned 3\n")?;
    let good = trees.file(b"good", b"good\n")?;
    let link = trees.symlink(b"link", outside.as_bytes());
    let escaped4 = trees.file(b"escaped4", b"pwned 4\n")?;
    let below = trees.dir(b"link", vec![escaped4])?;
    let link2 = trees.symlink(b"link2", format!("{outside}/escaped5").as_bytes());
    let over = trees.file(b"link2", b"pwned 5\n")?;
    let dot = trees.file(b".", b"pwned 6\n")?;
    let nul = trees.file(b"nul\0name", b"pwned 7\n")?;
    let evil = trees.dir(
        b"evil",
        vec![
            up1, slashed, absolute, dot, good, link, below, link2, over, nul,
        ],
    )?;
    let root = trees.tree(vec![evil])?;
    repo.flush()?;
    trees.write(&folder)?;

    let client_id = hex(&repo.token(format!("obnam-client\0{client}").as_bytes()).0[..16]);
    let gen_id = hex(&repo.token(format!("gen {}", now_ns()).as_bytes()).0[..8]);
    let gen = serde_json::json!({
        "id": gen_id,
        "client": client,
        "started": now_ns(),
        "ended": now_ns(),
        "file_count": 9,
        "data_size": 64,
        "is_checkpoint": false,
        "root": stored_id(&root).into_vec(),
    });
    let gen_dir = folder.join("generations").join(&client_id);
    std::fs::create_dir_all(&gen_dir)?;
    let mut object = vec![0u8]; // no filter tags
    object.extend_from_slice(&serde_json::to_vec(&gen)?);
    let object = checksummed(&format!("generations/{client_id}/{gen_id}"), object);
    std::fs::write(gen_dir.join(&gen_id), object)?;
    repo.unlock_client(&client)?;
    ctx.outln(&gen_id)
}

/// Carry out `OBNAM_TEST_SWAP` on `path` if it names this file.
fn swap(path: &[u8]) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let Some(spec) = std::env::var_os("OBNAM_TEST_SWAP") else {
        return Ok(());
    };
    let spec = spec.to_string_lossy().into_owned();
    let (name, action) = spec
        .split_once(':')
        .ok_or_else(|| plugin_api::Error::msg("OBNAM_TEST_SWAP is NAME:ACTION"))?;
    let path = Path::new(std::ffi::OsStr::from_bytes(path));
    if path.file_name().map(|n| n.as_bytes()) != Some(name.as_bytes()) {
        return Ok(());
    }
    let failed = |e: std::io::Error| plugin_api::Error::msg(format!("swap {action}: {e}"));
    if action == "fifo" {
        std::fs::remove_file(path).map_err(failed)?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .map_err(|e| failed(e.into()))?;
    } else if let Some(target) = action.strip_prefix("symlink=") {
        put_aside(path).map_err(failed)?;
        std::os::unix::fs::symlink(target, path).map_err(failed)?;
    } else if let Some(other) = action.strip_prefix("replace=") {
        put_aside(path).map_err(failed)?;
        std::fs::rename(other, path).map_err(failed)?;
    } else if action == "remove" {
        if std::fs::symlink_metadata(path).map_err(failed)?.is_dir() {
            std::fs::remove_dir_all(path).map_err(failed)?;
        } else {
            std::fs::remove_file(path).map_err(failed)?;
        }
    } else if action == "rewrite" {
        // Other bytes of the same length, written in place, and the
        // modification time set back: only the change time tells.
        let meta = std::fs::metadata(path).map_err(failed)?;
        let mut data = std::fs::read(path).map_err(failed)?;
        for b in &mut data {
            *b ^= 0x55;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(failed)?;
        std::os::unix::fs::FileExt::write_all_at(&file, &data, 0).map_err(failed)?;
        file.set_modified(meta.modified().map_err(failed)?)
            .map_err(failed)?;
    } else if let Some(bytes) = action.strip_prefix("grow=") {
        use std::io::Write;
        let bytes: usize = bytes
            .parse()
            .map_err(|_| plugin_api::Error::msg("grow=BYTES needs a number"))?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(failed)?;
        let block = vec![b'g'; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(block.len());
            file.write_all(&block[..n]).map_err(failed)?;
            left -= n;
        }
    } else {
        plugin_api::bail!("unknown OBNAM_TEST_SWAP action {action}");
    }
    Ok(())
}

/// Take the file or folder at `path` out of the way: a file is removed,
/// a folder moved to `NAME.moved`.
fn put_aside(path: &Path) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        let mut aside = path.as_os_str().to_owned();
        aside.push(".moved");
        std::fs::rename(path, aside)
    } else {
        std::fs::remove_file(path)
    }
}

impl Plugin for Hostile {
    fn enable(&self, app: &mut App<'_>) -> Result<()> {
        // A plugin that does not start: the run must not go on without it.
        match std::env::var("HOSTILE_ENABLE").as_deref() {
            Ok("error") => return Err(plugin_api::Error::msg("hostile refuses to start")),
            Ok("panic") => panic!("hostile panics as it starts"),
            _ => {}
        }
        app.add_subcommand(
            "hostile-nul",
            "CLIENT",
            "write a generation with a NUL byte in a file name",
            nul,
        );
        app.add_subcommand(
            "hostile-damaged",
            "CLIENT",
            "write a generation with a wrong checksum, a missing chunk and a wrong size",
            damaged,
        );
        app.add_subcommand(
            "hostile-split-link",
            "CLIENT",
            "write a generation with two names of one file recorded with two contents",
            split_link,
        );
        app.add_subcommand(
            "hostile-raw",
            "CLIENT OUTSIDE",
            "write a generation with unsafe names and symlinks with entries below them",
            raw,
        );
        app.new_json_hook("hostile-echo");
        app.add_json_callback("hostile-echo", PRIORITY_DEFAULT, |ctx, value| {
            ctx.call_json("hostile-echo", value)
        });
        app.add_subcommand(
            "hostile-recurse",
            "",
            "call a hook whose callback calls it again",
            |ctx, _| ctx.call_json("hostile-echo", &mut serde_json::json!({})),
        );
        app.add_subcommand(
            "hostile-thread-panic",
            "",
            "start a thread that panics, and carry on",
            |_, _| {
                let worker = std::thread::Builder::new()
                    .name("hostile-worker".into())
                    .spawn(|| panic!("the worker gives up"))?;
                let _ = worker.join();
                Ok(())
            },
        );
        app.add_callback::<ExcludeCandidate, _>(BACKUP_EXCLUDE, PRIORITY_DEFAULT, |_, c| {
            swap(&c.path)
        });
        app.add_json_callback(
            plugin_api::payloads::BACKUP_STARTING,
            PRIORITY_DEFAULT,
            |_, _| {
                if let Some(dir) = std::env::var_os("OBNAM_TEST_CHDIR") {
                    std::env::set_current_dir(dir)?;
                }
                if let Ok(code) = std::env::var("OBNAM_TEST_EXIT") {
                    std::process::exit(code.parse()?);
                }
                Ok(())
            },
        );
        app.add_callback::<SplitRequest, _>(BACKUP_CHUNK_BOUNDARIES, PRIORITY_LATE, |_, r| {
            if std::env::var("OBNAM_TEST_CHUNKER").as_deref() == Ok("shrink") {
                let half = r.data.len() / 2;
                r.data.truncate(half);
                r.lengths.clear();
                if half > 0 {
                    r.lengths.push(half as u32);
                }
            }
            Ok(())
        });
        app.add_callback::<StoreChunkRequest, _>(BACKUP_STORE_CHUNK, PRIORITY_LATE, |_, r| {
            if std::env::var("OBNAM_TEST_STORE").as_deref() == Ok("other-id") {
                r.chunk_id.token.0[0] ^= 1;
            }
            Ok(())
        });
        Ok(())
    }
}

plugin_api::export_plugin!("hostile", Hostile);
