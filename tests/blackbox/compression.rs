//! The bundled compress plugin, end to end: the awkward tree restores
//! exactly whatever `--compress-with` and `--compress-level` say, also
//! when they change between backups; text shrinks, random data costs its
//! own size and is stored as it is; bad settings fail before anything is
//! written; and the stored objects really carry the codec's filter tag.
//!
//! Stored objects are inspected in the pack files, read here without
//! obnam as docs/repository-format.md describes them: the pack's trailer
//! lists its blobs, and each blob's filter header (a count, then each tag
//! with its length) says which filters changed it; the compressed payload
//! is a varint of the original length and then a zstd frame or a raw
//! DEFLATE stream, decoded here with the zstd and flate2 crates.

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use obnam_test_support::awkward::{assert_same, assert_sparse, make_awkward_tree, restored};
use obnam_test_support::{noise, target_dir, BackupWorld, Run};

const CLIENT: &str = "compressed";

fn world() -> BackupWorld {
    BackupWorld::new(CLIENT)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// Restore the latest generation (or `extra` says which) into `to`.
fn restore(w: &BackupWorld, to: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["restore", "--to", path_str(to)];
    args.extend_from_slice(extra);
    w.obnam(&args).no_rust_panic()
}

fn genids(w: &BackupWorld) -> Vec<String> {
    w.obnam(&["genids"])
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every file below `dir`.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The repository's size on storage: the bytes of all its files.
fn repo_size(w: &BackupWorld) -> u64 {
    files(&w.repo)
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

fn packs(w: &BackupWorld) -> BTreeSet<PathBuf> {
    files(&w.repo.join("packs")).into_iter().collect()
}

/// The stored form of objects as docs/repository-format.md describes it,
/// read here without obnam: a filter header, then the payload.
fn split_header(stored: &[u8]) -> (Vec<String>, &[u8]) {
    let count = stored[0] as usize;
    let mut at = 1;
    let mut tags = Vec::new();
    for _ in 0..count {
        let len = stored[at] as usize;
        tags.push(String::from_utf8(stored[at + 1..at + 1 + len].to_vec()).unwrap());
        at += 1 + len;
    }
    (tags, &stored[at..])
}

/// Undo the compress plugin's filters (the only ones these tests load):
/// a varint of the original length, then a zstd frame or raw DEFLATE.
fn undo(tags: &[String], payload: &[u8]) -> Vec<u8> {
    let mut data = payload.to_vec();
    for tag in tags.iter().rev() {
        let (mut len, mut at) = (0usize, 0);
        while data[at] & 0x80 != 0 {
            len |= ((data[at] & 0x7f) as usize) << (7 * at);
            at += 1;
        }
        len |= (data[at] as usize) << (7 * at);
        let body = &data[at + 1..];
        let plain = match tag.as_str() {
            "zstd" => zstd::bulk::decompress(body, len).unwrap(),
            "deflate" => {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(body)
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            other => panic!("unexpected filter tag {other}"),
        };
        assert_eq!(plain.len(), len, "{tag}: length field");
        data = plain;
    }
    data
}

/// One blob of a pack: its filter tags, its plain bytes and its kind.
#[derive(Debug)]
struct Blob {
    tags: Vec<String>,
    plain: Vec<u8>,
    tree: bool,
}

/// Every blob in a pack, found through the pack's (filtered) trailer.
fn blobs(pack: &Path) -> Vec<Blob> {
    let bytes = fs::read(pack).unwrap();
    let n = bytes.len();
    assert_eq!(&bytes[..8], b"OBNAMPK1", "{} is no pack", pack.display());
    assert_eq!(&bytes[n - 4..], b"OBPK", "{}", pack.display());
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let trailer_len = u32_at(&bytes, n - 8) as usize;
    let (tags, payload) = split_header(&bytes[n - 8 - trailer_len..n - 8]);
    let trailer = undo(&tags, payload);
    let count = u32_at(&trailer, 0) as usize;
    // The entries, then the trailer's checksum.
    assert_eq!(trailer.len(), 4 + count * 49 + 32);
    (0..count)
        .map(|i| {
            let entry = &trailer[4 + i * 49..4 + (i + 1) * 49];
            let offset = u32_at(entry, 40) as usize;
            let length = u32_at(entry, 44) as usize;
            let (tags, payload) = split_header(&bytes[offset..offset + length]);
            Blob {
                plain: undo(&tags, payload),
                tags,
                tree: entry[48] == 1,
            }
        })
        .collect()
}

/// The blobs of the packs not in `seen`, which then lists every pack.
fn new_blobs(w: &BackupWorld, seen: &mut BTreeSet<PathBuf>) -> Vec<Blob> {
    let now = packs(w);
    let new: Vec<Blob> = now.difference(seen).flat_map(|p| blobs(p)).collect();
    *seen = now;
    new
}

/// The distinct tag lists of `blobs`.
fn tag_sets(blobs: &[Blob]) -> BTreeSet<Vec<String>> {
    blobs.iter().map(|b| b.tags.clone()).collect()
}

fn tag(name: &str) -> Vec<String> {
    vec![name.to_string()]
}

/// Whether `needle` (not empty) is somewhere in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `needle` is somewhere in the repository's packs, as it is.
fn stored_verbatim(w: &BackupWorld, needle: &[u8]) -> bool {
    packs(w)
        .iter()
        .any(|p| contains(&fs::read(p).unwrap(), needle))
}

/// `n` bytes of text: lines of words picked pseudo-randomly from a small
/// vocabulary, as a log or a document would be. Compresses well, but not
/// absurdly well.
fn text(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 32] = [
        "backup",
        "restore",
        "chunk",
        "the",
        "a",
        "of",
        "repository",
        "generation",
        "file",
        "folder",
        "error",
        "warning",
        "checksum",
        "token",
        "pack",
        "index",
        "and",
        "with",
        "compression",
        "level",
        "zstd",
        "deflate",
        "data",
        "stored",
        "read",
        "write",
        "client",
        "lock",
        "tree",
        "blob",
        "filter",
        "tag",
    ];
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(n + 100);
    let mut line = 0u64;
    while out.len() < n {
        out.extend_from_slice(format!("{line:06} ").as_bytes());
        for _ in 0..10 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(WORDS[(x >> 40) as usize % WORDS.len()].as_bytes());
            out.push(b' ');
        }
        out.push(b'\n');
        line += 1;
    }
    out.truncate(n);
    out
}

/// Back up the awkward tree with `settings`, check which tags its objects
/// got (the tiny files none, the sparse file's zeros `codec`), restore it,
/// and compare.
fn awkward_round_trip(settings: &[&str], codec: Option<&str>) {
    let w = world();
    let tree = make_awkward_tree(&w.data);
    w.backup(settings).no_rust_panic().ok();
    let want: BTreeSet<Vec<String>> = [vec![], codec.map(tag).unwrap_or_default()].into();
    assert_eq!(tag_sets(&new_blobs(&w, &mut BTreeSet::new())), want);
    let target = w.env.path().join("restored");
    restore(&w, &target, settings).ok();
    assert_same(&tree.root, &restored(&target, &tree.root));
    assert_sparse(&restored(&target, &tree.sparse));
    w.obnam(&["fsck", "--verify-data"]).no_rust_panic().ok();
}

#[test]
fn awkward_tree_round_trips_with_zstd_by_default() {
    awkward_round_trip(&[], Some("zstd"));
}

#[test]
fn awkward_tree_round_trips_without_compression() {
    awkward_round_trip(&["--compress-with", "none"], None);
}

#[test]
fn awkward_tree_round_trips_with_deflate() {
    awkward_round_trip(
        &["--compress-with", "deflate", "--compress-level", "9"],
        Some("deflate"),
    );
}

#[test]
fn awkward_tree_round_trips_with_a_negative_zstd_level() {
    awkward_round_trip(&["--compress-level", "-5"], Some("zstd"));
}

#[test]
fn switching_codecs_between_backups_keeps_every_generation_readable() {
    let w = world();
    let tree = make_awkward_tree(&w.data);
    let root = tree.root.clone();
    let mut seen = BTreeSet::new();
    let mut first_restores = Vec::new();
    let steps: [(&[&str], Option<&str>); 3] = [
        (&[], Some("zstd")),
        (&["--compress-with", "none"], None),
        (&["--compress-with", "deflate"], Some("deflate")),
    ];
    for (i, (settings, codec)) in steps.iter().enumerate() {
        // New, compressible data in every generation.
        w.file(&format!("notes-{i}.txt"), &text(300_000, 7 + i as u64));
        fs::write(root.join("plain.txt"), format!("version {i}\n")).unwrap();
        w.backup(settings).no_rust_panic().ok();

        // What this backup wrote is compressed as it said, and only so.
        let new = new_blobs(&w, &mut seen);
        let chunk_tags = codec.map(tag).unwrap_or_default();
        let want: BTreeSet<Vec<String>> = [vec![], chunk_tags.clone()].into();
        assert_eq!(tag_sets(&new), want, "step {i}");
        let notes = text(300_000, 7 + i as u64);
        let mut stored = 0;
        for blob in new.iter().filter(|b| !b.tree && contains(&notes, &b.plain)) {
            assert_eq!(blob.tags, chunk_tags, "step {i}");
            stored += blob.plain.len();
        }
        assert_eq!(stored, notes.len(), "step {i}: the new file's chunks");

        let target = w.env.path().join(format!("restore-{i}"));
        restore(&w, &target, settings).ok();
        assert_same(&root, &restored(&target, &root));
        first_restores.push(target);
    }

    // Every generation restores exactly, whatever this run's setting.
    let ids = genids(&w);
    assert_eq!(ids.len(), 3, "{ids:?}");
    for (i, id) in ids.iter().enumerate() {
        let target = w.env.path().join(format!("again-{i}"));
        let with = ["none", "deflate", "zstd"][i];
        restore(&w, &target, &["--generation", id, "--compress-with", with]).ok();
        assert_same(
            &restored(&first_restores[i], &root),
            &restored(&target, &root),
        );
    }
    w.obnam(&["fsck", "--verify-data", "--compress-with", "none"])
        .no_rust_panic()
        .ok();
}

#[test]
fn text_is_stored_much_smaller_with_zstd_and_deflate() {
    let data = text(4 << 20, 42);
    let mut sizes = Vec::new();
    for settings in [
        &["--compress-with", "none"][..],
        &[][..],
        &["--compress-with", "deflate"][..],
    ] {
        let w = world();
        w.file("log.txt", &data);
        w.backup(settings).no_rust_panic().ok();
        sizes.push(repo_size(&w));
    }
    let [none, zstd, deflate] = sizes[..] else {
        unreachable!()
    };
    let n = data.len() as u64;
    assert!(none >= n, "uncompressed repository {none} < data {n}");
    assert!(zstd * 3 < none, "zstd {zstd} vs none {none}");
    assert!(deflate * 3 < none, "deflate {deflate} vs none {none}");
}

#[test]
fn random_data_costs_its_own_size_and_is_stored_as_it_is() {
    let data = noise(4 << 20, 99);
    let n = data.len() as u64;
    let mut sizes = Vec::new();
    for settings in [&["--compress-with", "none"][..], &[][..]] {
        let w = world();
        w.file("random.bin", &data);
        w.backup(settings).no_rust_panic().ok();
        sizes.push(repo_size(&w));
        // The chunks were not worth compressing: their bytes are in the
        // packs as they are, so reading them back decompresses nothing.
        for at in [0, n as usize / 3, n as usize - 100] {
            assert!(
                stored_verbatim(&w, &data[at..at + 64]),
                "{settings:?}: bytes at {at} not stored as they are"
            );
        }
        for blob in new_blobs(&w, &mut BTreeSet::new()) {
            if !blob.tree {
                assert!(blob.tags.is_empty(), "{settings:?}: {:?}", blob.tags);
            }
        }
        let target = w.env.path().join("restored");
        restore(&w, &target, &[]).ok();
        assert_eq!(
            fs::read(restored(&target, &w.data.join("random.bin"))).unwrap(),
            data
        );
    }
    let [none, zstd] = sizes[..] else {
        unreachable!()
    };
    // No blow-up: nothing but the repository's own bookkeeping on top.
    assert!(zstd <= none, "zstd {zstd} > none {none}");
    assert!(zstd < n + n / 100, "zstd {zstd} for {n} bytes of data");
}

#[test]
fn zstd_objects_carry_their_tag_and_read_back_whatever_the_settings() {
    let w = world();
    let data = text(1 << 20, 5);
    w.file("doc.txt", &data);
    w.backup(&[]).no_rust_panic().ok();
    // Every chunk of the file is stored compressed, tagged `zstd`.
    let chunks: Vec<Blob> = new_blobs(&w, &mut BTreeSet::new())
        .into_iter()
        .filter(|b| !b.tree)
        .collect();
    assert!(chunks.len() > 1, "{}", chunks.len());
    for chunk in &chunks {
        assert_eq!(chunk.tags, tag("zstd"));
        assert!(contains(&data, &chunk.plain));
    }
    let total: usize = chunks.iter().map(|b| b.plain.len()).sum();
    assert_eq!(total, data.len());
    assert!(!stored_verbatim(&w, &data[1000..1064]));

    // Reading ignores the settings: each object's tag says what to undo.
    let target = w.env.path().join("restored");
    restore(&w, &target, &["--compress-with", "none"]).ok();
    assert_eq!(
        fs::read(restored(&target, &w.data.join("doc.txt"))).unwrap(),
        data
    );

    // Without the plugin, the tagged objects cannot be read.
    let plugins = w.env.path().join("without-compress");
    fs::create_dir(&plugins).unwrap();
    fs::set_permissions(&plugins, fs::Permissions::from_mode(0o755)).unwrap();
    for name in ["backup", "dedup", "exclude", "restore"] {
        let lib = format!("libobnam_plugin_{name}.so");
        fs::copy(target_dir().join(&lib), plugins.join(&lib)).unwrap();
    }
    let elsewhere = w.env.path().join("not-restored");
    let mut cmd = w.env.obnam();
    cmd.arg("--no-bundled-plugins")
        .arg("--plugin-dir")
        .arg(&plugins)
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", CLIENT, "restore", "--to"])
        .arg(&elsewhere);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert!(
        run.stderr
            .contains("needs the 'zstd' filter; no loaded plugin provides it"),
        "{run:#?}"
    );
}

#[test]
fn bad_settings_fail_clearly_before_anything_is_written() {
    let min = "-131072";
    let cases: [(&[&str], i32, String); 6] = [
        (
            &["--compress-with", "lz4"],
            2,
            "--compress-with: 'lz4' is not one of: none, zstd, deflate".into(),
        ),
        (
            &["--compress-level", "23"],
            1,
            format!("--compress-level: '23' is out of range for zstd: give {min} to 22 (unset: 1)"),
        ),
        (
            &["--compress-level", "-200000"],
            1,
            format!(
                "--compress-level: '-200000' is out of range for zstd: give {min} to 22 (unset: 1)"
            ),
        ),
        (
            &["--compress-level", "fast"],
            1,
            "--compress-level: 'fast' is not an integer".into(),
        ),
        (
            &["--compress-with", "deflate", "--compress-level", "10"],
            1,
            "--compress-level: '10' is out of range for deflate: give 0 to 9 (unset: 6)".into(),
        ),
        (
            &["--compress-with", "none", "--compress-level", "max"],
            1,
            "--compress-level: 'max' is not an integer".into(),
        ),
    ];
    for (settings, code, message) in cases {
        let w = world();
        w.file("f.txt", &text(10_000, 1));
        let run = w.backup(settings).no_rust_panic();
        assert_eq!(run.code, code, "{settings:?}: {run:#?}");
        assert!(run.stderr.contains(&message), "{settings:?}: {run:#?}");
        assert!(!w.repo.exists(), "{settings:?} created the repository");
    }

    // From the environment, the same.
    let w = world();
    w.file("f.txt", b"x");
    let data = w.data.to_str().unwrap().to_string();
    let mut cmd = w.env.obnam();
    cmd.env("OBNAM_COMPRESS_LEVEL", "99")
        .arg("--repository")
        .arg(&w.repo)
        .args(["backup", &data]);
    let run = obnam_test_support::run(&mut cmd).no_rust_panic().fails();
    assert!(
        run.stderr.contains(
            "setting 'compress-level': environment variable OBNAM_COMPRESS_LEVEL: \
             '99' is out of range for zstd"
        ),
        "{run:#?}"
    );
    assert!(!w.repo.exists());
}

#[test]
fn a_bad_level_stops_any_other_writer_on_first_use() {
    // The repotest plugin writes through the repository API, without the
    // backup-starting hook: the filter itself refuses the setting.
    let w = world();
    let plugins = w.env.plugin_dir("plugins", &["repotest"]);
    let repotest = |extra: &[&str]| {
        let mut cmd = w.env.obnam();
        cmd.arg("--plugin-dir")
            .arg(&plugins)
            .arg("--repository")
            .arg(&w.repo)
            .args(extra)
            .args(["repotest-run", "writer", "3"]);
        obnam_test_support::run(&mut cmd).no_rust_panic()
    };
    let run = repotest(&["--compress-with", "deflate", "--compress-level", "12"]).fails();
    assert!(
        run.stderr
            .contains("--compress-level: '12' is out of range for deflate: give 0 to 9 (unset: 6)"),
        "{run:#?}"
    );
    repotest(&["--compress-with", "deflate"]).ok();
    let tags = tag_sets(&new_blobs(&w, &mut BTreeSet::new()));
    assert!(tags.contains(&tag("deflate")), "{tags:?}");
}

#[test]
fn the_plugin_and_its_settings_are_listed() {
    let w = world();
    let run = w.obnam(&["plugins"]).ok();
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("compress "))
        .unwrap_or_else(|| panic!("compress not listed:\n{}", run.stdout));
    assert!(line.ends_with("/libobnam_plugin_compress.so"), "{line}");

    let help = w.obnam(&["backup", "--help"]).ok().stdout;
    let backing_up: Vec<&str> = help
        .lines()
        .skip_while(|l| *l != "Backing up:")
        .take_while(|l| !l.is_empty())
        .collect();
    // As one line of words: --help wraps its text.
    let section = backing_up
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(section.contains("--compress-with <CODEC>"), "{help}");
    assert!(
        section.contains("(one of: none, zstd, deflate) [default: zstd]"),
        "{section}"
    );
    assert!(section.contains("--compress-level <LEVEL>"), "{section}");

    // The level is unset unless given, so --dump-config leaves it out.
    let dump = w.obnam(&["--dump-config"]).ok().stdout;
    assert!(dump.contains("\ncompress-with = zstd\n"), "{dump}");
    assert!(!dump.contains("compress-level"), "{dump}");
    let dump = w
        .obnam(&["--compress-level", "-3", "--dump-config"])
        .ok()
        .stdout;
    assert!(dump.contains("\ncompress-level = -3\n"), "{dump}");
}

#[test]
fn lock_objects_are_never_compressed() {
    // A lock is JSON that zstd would shrink, but every obnam that meets
    // the repository reads it: it is stored as it is.
    let w = world();
    let plugins = w.env.plugin_dir("plugins", &["repotest"]);
    let mut holder = w
        .env
        .obnam()
        .arg("--plugin-dir")
        .arg(&plugins)
        .arg("--repository")
        .arg(&w.repo)
        .args(["repotest-lock", "holder", "600"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let locks = files(&w.repo.join("locks"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(line, "locked\n");
    assert_eq!(locks.len(), 1, "{locks:?}");
    let stored = fs::read(&locks[0]).unwrap();
    let (tags, payload) = split_header(&stored);
    assert!(tags.is_empty(), "{tags:?}");
    // The lock record, then its checksum.
    let json: serde_json::Value = serde_json::from_slice(&payload[..payload.len() - 32]).unwrap();
    assert_eq!(json["client"], "holder");
    // The same bytes are worth compressing as any other object would be.
    let packed = zstd::bulk::compress(payload, 3).unwrap();
    assert!(
        packed.len() + 8 < payload.len(),
        "{} {}",
        packed.len(),
        payload.len()
    );
}
