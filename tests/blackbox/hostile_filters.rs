//! Hostile data against the bundled data filters (issue 12, fault 4): a
//! stored object that claims to decompress to far more than the format
//! allows must be refused, naming the object, its claim and the limit,
//! before anything is allocated for it.
//!
//! The repository is made by obnam, without compression, and then one
//! chunk's stored blob is replaced, in its pack, by a hand-made `zstd`
//! object of the same stored length (a "decompression bomb": about 32 KB
//! that claims, and really inflates to, 1 GiB). Sixteen files share that
//! chunk, and the restore runs four workers under an address-space cap
//! well below what the bomb would need, as in the reported fault (8 GB
//! peak, then an abort under a memory cap). The same restore of the
//! repository before tampering must succeed under the same cap, so that
//! the cap itself is not what fails.
//!
//! Likewise for the encryption plugin's key slots: a slot that demands
//! terabytes of Argon2id memory or billions of passes is skipped with a
//! warning, and the repository opens with its real slot.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use obnam_test_support::{noise, run, BackupWorld, Run};

/// What the bomb claims and inflates to: 1 GiB.
const BOMB_LEN: usize = 1 << 30;

/// The address-space cap of the restore, in KiB (for `ulimit -v`): far
/// below the bomb, far above what a restore of small files needs.
const CAP_KIB: u64 = 768 * 1024;

/// How many files share the bomb's chunk.
const FILES: usize = 16;

/// Size of each file: one chunk (content-defined chunks are at least
/// 64 KiB), larger than the bomb's stored form.
const FILE_LEN: usize = 40_000;

/// Run obnam on `w`'s repository with `args`, under `ulimit -v CAP_KIB`.
fn obnam_capped(w: &BackupWorld, args: &[&str]) -> Run {
    let plain = w.env.obnam();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {CAP_KIB} && exec \"$@\""))
        .arg("sh")
        .arg(plain.get_program())
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client])
        .args(args)
        .current_dir(w.env.path());
    for (key, value) in plain.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    run(&mut cmd)
}

/// A zstd frame (RFC 8878) of `len` zero bytes, made by hand: a frame
/// header that declares the content size and a 128 KiB window, then RLE
/// blocks of 128 KiB (four bytes each), so that 1 GiB takes 32 KiB.
fn zstd_rle_frame(len: usize) -> Vec<u8> {
    zstd_frame(len, &[])
}

/// A zstd frame of `zeros` zero bytes (RLE blocks, as [`zstd_rle_frame`]
/// makes them), then the bytes of `tail` (one raw block).
fn zstd_frame(zeros: usize, tail: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 128 << 10;
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header descriptor: 4-byte content size, not single-segment,
    // no checksum, no dictionary; window descriptor: 2^(10+7) = 128 KiB.
    out.extend_from_slice(&[0x80, 0x38]);
    out.extend_from_slice(&u32::try_from(zeros + tail.len()).unwrap().to_le_bytes());
    let mut left = zeros;
    while left > 0 {
        let n = left.min(BLOCK);
        left -= n;
        let last = u32::from(left == 0 && tail.is_empty());
        // Block header: last flag, type 1 (RLE), size; then the byte.
        let header = last | (1 << 1) | ((n as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.push(0);
    }
    if !tail.is_empty() {
        // The last block, type 0 (raw): the bytes as they are.
        let header = 1 | ((tail.len() as u32) << 3);
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(tail);
    }
    out
}

/// The compress plugin's varint length (unsigned LEB128).
fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The bomb, as a stored blob of exactly `stored_len` bytes: a filter
/// header with the one tag `zstd`, the compress plugin's varint length
/// claiming [`BOMB_LEN`], a zstd frame that really inflates to that, and a
/// zstd skippable frame as padding to `stored_len`.
fn bomb(stored_len: usize) -> Vec<u8> {
    let mut out = vec![1, 4];
    out.extend_from_slice(b"zstd");
    varint(BOMB_LEN, &mut out);
    out.extend_from_slice(&zstd_rle_frame(BOMB_LEN));
    let pad = stored_len
        .checked_sub(out.len() + 8)
        .expect("the replaced blob is large enough to hold the bomb");
    out.extend_from_slice(&0x184d_2a50u32.to_le_bytes());
    out.extend_from_slice(&(pad as u32).to_le_bytes());
    out.resize(stored_len, 0);
    out
}

/// Replace the stored blob of every file-data chunk in `repo` by
/// `make(stored_len)`, and return the chunks' ids as obnam names them.
///
/// This is the only code here that knows the repository layout
/// (docs/repository-format.md), for a repository written with
/// `--compress-with none` and no encryption, so that the pack trailer is
/// stored as it is (a filter header with no tags):
///
/// ```text
/// pack:    "OBNAMPK1", blobs, trailer, u32 LE trailer length, "OBPK"
/// trailer: u8 0 (no filter tags), u32 LE N, N entries of 49 bytes:
///          token (32), variant (u64 LE), offset (u32 LE),
///          length (u32 LE), kind (u8: 0 = file data, 1 = tree),
///          then the trailer's checksum (32 bytes)
/// ```
///
/// The new blob has exactly the old one's length and offset, so the
/// trailer and the index objects (and their checksums) stay valid without
/// being rewritten. A blob is checked against its id on its decoded bytes,
/// which the bomb must never get to.
fn replace_data_blobs(repo: &Path, make: impl Fn(usize) -> Vec<u8>) -> Vec<String> {
    let packs: Vec<PathBuf> = fs::read_dir(repo.join("packs"))
        .unwrap()
        .flat_map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect()
            } else {
                vec![p]
            }
        })
        .collect();
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut found = Vec::new();
    for pack in packs {
        let mut bytes = fs::read(&pack).unwrap();
        let n = bytes.len();
        assert_eq!(&bytes[..8], b"OBNAMPK1", "{} is no pack", pack.display());
        assert_eq!(&bytes[n - 4..], b"OBPK", "{}", pack.display());
        let trailer_len = u32_at(&bytes, n - 8) as usize;
        let trailer = bytes[n - 8 - trailer_len..n - 8].to_vec();
        assert_eq!(
            trailer[0],
            0,
            "the trailer of {} is filtered",
            pack.display()
        );
        let count = u32_at(&trailer, 1) as usize;
        // Format 3 ends the trailer with its 32-byte checksum.
        assert_eq!(trailer.len(), 5 + count * 49 + 32, "{}", pack.display());
        for entry in trailer[5..5 + count * 49].chunks(49) {
            if entry[48] != 0 {
                continue; // a tree
            }
            let offset = u32_at(entry, 40) as usize;
            let length = u32_at(entry, 44) as usize;
            assert_eq!(bytes[offset], 0, "the chunk is stored with no filters");
            bytes[offset..offset + length].copy_from_slice(&make(length));
            let variant = u64::from_le_bytes(entry[32..40].try_into().unwrap());
            let token: String = entry[..32].iter().map(|b| format!("{b:02x}")).collect();
            found.push(if variant == 0 {
                token
            } else {
                format!("{token}.{variant:x}")
            });
        }
        fs::write(&pack, bytes).unwrap();
    }
    assert!(
        !found.is_empty(),
        "no file-data chunk in {}",
        repo.display()
    );
    found
}

#[test]
fn a_compression_bomb_is_refused_before_it_is_allocated() {
    let w = BackupWorld::new("bombed");
    let content = noise(FILE_LEN, 12);
    for i in 0..FILES {
        w.file(&format!("f{i:02}"), &content);
    }
    // One thread: the files share one stored chunk (concurrent backups of
    // the same new chunk may each store a copy; all are replaced anyway).
    w.backup(&["--compress-with", "none", "--backup-threads", "1"])
        .no_rust_panic()
        .ok();
    let restore = |to: &str| {
        let to = w.env.path().join(to);
        let to = to.to_str().unwrap().to_string();
        obnam_capped(&w, &["restore", "--restore-workers", "4", "--to", &to])
    };

    // Under the cap, the intact repository restores.
    restore("intact").no_rust_panic().ok();
    assert_eq!(
        fs::read(
            w.env
                .path()
                .join("intact")
                .join(w.data.strip_prefix("/").unwrap())
                .join("f00")
        )
        .unwrap(),
        content
    );

    let chunks = replace_data_blobs(&w.repo, bomb);
    let run = restore("bombed").no_rust_panic().fails();
    assert!(
        run.code > 0,
        "obnam must exit with an error, not be killed by a signal:\n{run:#?}"
    );
    assert!(
        !run.stderr.contains("memory allocation"),
        "obnam ran out of memory:\n{run:#?}"
    );
    let claim = BOMB_LEN.to_string();
    let limit = (64usize << 20).to_string();
    assert!(
        chunks
            .iter()
            .any(|chunk| run.stderr.contains(&format!("object chunk/{chunk} ")))
            && run.stderr.contains(&format!("claims {claim} bytes"))
            && run.stderr.contains(&format!("limit of {limit} bytes")),
        "the error names the object (one of chunk/{chunks:?}), its claim {claim} and the \
         limit {limit}:\n{run:#?}"
    );
}

/// Key slots that demand terabytes of Argon2id memory, or billions of
/// passes, put before the repository's real slot (slots are tried in id
/// order): opening must skip each with a warning that names it and the
/// bound, and open with the real slot, within the same memory cap.
#[test]
fn key_slots_demanding_terabytes_or_billions_of_passes_are_skipped() {
    let w = BackupWorld::new("slots");
    w.file("f", b"hello");
    let pass_file = w.env.write("pass", "correct horse");
    let pass_file = pass_file.to_str().unwrap();
    let cheap = [
        "--passphrase-file",
        pass_file,
        "--kdf-memory",
        "256KiB",
        "--kdf-iterations",
        "1",
    ];
    let mut args = vec!["--encrypt"];
    args.extend_from_slice(&cheap);
    w.backup(&args).no_rust_panic().ok();

    // The stored slot, as docs/repository-format.md describes it.
    let keys = w.repo.join("keys");
    let real: Vec<PathBuf> = fs::read_dir(&keys)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(real.len(), 1, "{real:?}");
    let slot: serde_json::Value = serde_json::from_slice(&fs::read(&real[0]).unwrap()).unwrap();
    assert_eq!(slot["kdf"]["name"], "argon2id", "{slot}");
    for (id, field, value) in [
        ("0000000000000000", "memory_kib", u64::from(u32::MAX)),
        ("0000000000000001", "iterations", 4_000_000_000),
    ] {
        let mut hostile = slot.clone();
        hostile["kdf"][field] = value.into();
        fs::write(keys.join(id), hostile.to_string()).unwrap();
    }

    let mut args = vec!["genids"];
    args.extend_from_slice(&cheap);
    let run = obnam_capped(&w, &args).no_rust_panic();
    assert_eq!(run.code, 0, "the real slot opens the repository:\n{run:#?}");
    for (id, why) in [
        (
            "0000000000000000",
            "its Argon2id memory cost of 4294967295 KiB is more than the limit of 4194304 KiB (4 GiB)",
        ),
        (
            "0000000000000001",
            "its Argon2id time cost of 4000000000 iterations is more than the limit of 64",
        ),
    ] {
        assert!(
            run.stderr.contains(&format!("key slot {id} of "))
                && run.stderr.contains(why),
            "a warning names slot {id} and says: {why}\n{run:#?}"
        );
    }
}

/// Index objects that really are what their checksums say, a few KB
/// each, that decode to 128 MiB of zeros (then no index): each is named
/// damaged, and what a command holds of them is one at a time. They were
/// decoded as many at once as the store reads, and held until the window
/// of them was done: sixteen such objects, behind small ones that widen
/// the window, took gigabytes of fsck, restore and backup on a machine
/// that had not read the small ones before (2 GB for sixteen). Here
/// twelve would take more than the 1 GiB a test run may.
#[test]
fn index_objects_that_decode_to_much_are_read_one_at_a_time() {
    use sha2::{Digest, Sha256};
    const LEN: usize = 128 << 20;
    let w = BackupWorld::new("c");
    // Small index objects first (one a backup), so that the window of
    // index objects read at once is at its widest when the large come.
    for i in 0..20 {
        w.file("f", format!("version {i}").as_bytes());
        w.backup(&[]).ok();
    }
    let mut bombs = Vec::new();
    for i in 0..12 {
        let name = format!("ffffffffffffffffffffffffffffff{i:02x}");
        let key = format!("index/{name}");
        let zeros = LEN - 32;
        let mut h = Sha256::new();
        h.update(b"obnam object checksum\0");
        h.update(key.as_bytes());
        h.update(b"\0");
        h.update(vec![0u8; zeros]);
        let mut stored = vec![1, 4];
        stored.extend_from_slice(b"zstd");
        varint(LEN, &mut stored);
        stored.extend_from_slice(&zstd_frame(zeros, &h.finalize()));
        fs::write(w.repo.join(&key), stored).unwrap();
        bombs.push(name);
    }
    // Another machine's run, which has read no index object before (this
    // one's cache holds the small ones, and the window would start small).
    let elsewhere = w.env.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let run = obnam_test_support::run_with_deadline(
        w.env
            .obnam()
            .env("HOME", &elsewhere)
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "fsck"]),
        std::time::Duration::from_secs(300),
    );
    assert_eq!(run.code, 1, "{run:#?}");
    for name in &bombs {
        assert!(
            run.stderr.contains(&format!("index/{name}")),
            "{name}: {run:#?}"
        );
    }
    // The generations still restore: the damaged objects list nothing.
    let target = w.env.path().join("restored");
    let run = obnam_test_support::run_with_deadline(
        w.env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "restore", "--to"])
            .arg(&target),
        std::time::Duration::from_secs(300),
    )
    .ok();
    let restored = obnam_test_support::awkward::restored(&target, &w.data);
    assert_eq!(
        fs::read(restored.join("f")).unwrap(),
        b"version 19",
        "{run:#?}"
    );
}
