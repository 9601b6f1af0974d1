//! Damaged and hostile repositories: every object read back is verified,
//! every walk ends, and a lost pack heals at the next backup
//! (`docs/repository-format.md`, "What is verified where").
//!
//! The hostile repositories are written by hand (`support/handmade.rs`),
//! as an attacker would, after the format's documentation.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use obnam_test_support::handmade::{self, Entry, Handmade};
use obnam_test_support::{files_under, BackupWorld, Run, TestEnv};

/// Run obnam with `args`, killing it after `limit`: a run that hangs or
/// spins fails the test instead of stalling the suite.
fn run_within(env: &TestEnv, args: &[&str], limit: Duration) -> Run {
    let mut child = env
        .obnam()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start obnam");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "obnam {args:?} was still running after {limit:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Run::from_output(child.wait_with_output().expect("output"))
}

/// Flip `mask` into the first occurrence of `needle` in any file below
/// `dir`; returns the file changed.
fn flip_first(dir: &Path, needle: &[u8], mask: u8) -> PathBuf {
    for path in files_under(dir) {
        let mut bytes = fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[at] ^= mask;
            fs::write(&path, bytes).unwrap();
            return path;
        }
    }
    panic!("{:?} is in no file below {}", needle, dir.display());
}

fn repo_args(repo: &Path) -> Vec<String> {
    vec![
        "--repository".into(),
        repo.to_str().unwrap().into(),
        "--client-name".into(),
        "evil".into(),
    ]
}

fn args<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(more.iter().copied())
        .collect()
}

/// `fsck --verify-data` reads the packs no index object lists too, and
/// names one whose list of blobs cannot be read (it said "0 problems" and
/// nothing more, where the `repair-index` it recommends then failed on
/// it); no generation uses it, so it is no problem of theirs.
#[test]
fn fsck_verify_data_names_an_unlisted_pack_it_cannot_read() {
    let w = BackupWorld::new("c");
    w.file("a", b"something\n");
    w.backup(&[]).ok();
    let stray = w.repo.join("packs/ab/ab000000000000000000000000000000");
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, obnam_test_support::noise(1000, 7)).unwrap();
    let run = w.obnam(&["fsck", "--verify-data"]).ok().no_rust_panic();
    assert!(
        run.stdout.contains(" 0 problems")
            && run.stderr.contains(
                "packs/ab/ab000000000000000000000000000000: its list of blobs cannot be read"
            )
            && run
                .stderr
                .contains("'obnam prune' deletes what no generation uses"),
        "{run:#?}"
    );
    // Without --verify-data no pack is read.
    let run = w.obnam(&["fsck"]).ok();
    assert!(!run.stderr.contains("packs/ab/"), "{run:#?}");
}

/// A backup whose previous generation's trees are lost (every index
/// object removed) says so once for each tree, not again for every folder
/// below it; and the generation it makes restores.
#[test]
fn a_lost_tree_of_the_previous_generation_is_warned_of_once() {
    let w = BackupWorld::new("c");
    for f in ["a/b/c/d/f1", "a/b/c/f2", "a/b/f3", "a/f4", "f5"] {
        w.file(f, f.as_bytes());
    }
    w.backup(&[]).ok();
    for index in files_under(&w.repo.join("index")) {
        fs::remove_file(index).unwrap();
    }
    let run = w.backup(&[]).ok().no_rust_panic();
    let warned: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("the previous generation's tree"))
        .collect();
    assert!(!warned.is_empty(), "{run:#?}");
    let mut ids: Vec<&str> = warned
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "each tree once: {run:#?}");
    let restored = w.env.path().join("restored");
    w.obnam(&["restore", "--to", restored.to_str().unwrap()])
        .ok();
    let top = restored.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(top.join("a/b/c/d/f1")).unwrap(), b"a/b/c/d/f1");
}

#[test]
fn a_flipped_bit_in_a_tree_fails_restore_and_fsck() {
    let w = BackupWorld::new("c");
    w.file("text.txt", b"some words\n");
    w.backup(&["--compress-with", "none"]).ok();
    // `text.txt` becomes `Text.txt` in the stored tree.
    let pack = flip_first(&w.repo.join("packs"), b"text.txt", 0x20);
    assert!(pack.starts_with(w.repo.join("packs")));
    let target = w.env.path().join("restored");
    let run = w
        .obnam(&["restore", "--to", target.to_str().unwrap()])
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr
            .contains("is corrupt: its content does not match its id"),
        "{run:#?}"
    );
    assert!(
        files_under(&target)
            .iter()
            .all(|p| !p.ends_with("Text.txt")),
        "the altered name was restored: {:?}",
        files_under(&target)
    );
    for extra in [&[][..], &["--verify-data"][..]] {
        let mut a = vec!["fsck"];
        a.extend_from_slice(extra);
        let run = w.obnam(&a).fails().no_rust_panic();
        assert!(
            run.stderr.contains("object tree/") && run.stderr.contains("does not match its id"),
            "fsck {extra:?}: {run:#?}"
        );
        assert!(!run.stdout.contains("; 0 problems"), "{run:#?}");
    }
    // prune stops before deleting anything, and says whose folder it is
    // and what to do (it named the object only).
    let id = w.obnam(&["genids"]).ok().stdout.trim().to_string();
    let packs = files_under(&w.repo.join("packs"));
    let run = w.obnam(&["prune"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains("does not match its id")
            && run.stderr.contains(&format!("client 'c', generation {id}"))
            && run
                .stderr
                .contains("nothing was deleted; 'obnam fsck' names the folder"),
        "{run:#?}"
    );
    assert_eq!(files_under(&w.repo.join("packs")), packs);
}

/// A damaged folder in the latest generation does not stop the client's
/// backups: the folder is found anew and stored again, under an id of its
/// own (it made every later backup fail; and, found anew but taken for
/// the damaged copy because the ids match, it left the new generation
/// unable to restore the folder).
#[test]
fn a_damaged_folder_of_the_latest_generation_is_stored_again_by_the_next_backup() {
    let w = BackupWorld::new("c");
    w.file("sub/inner.txt", b"inner words\n");
    w.file("top.txt", b"top\n");
    w.backup(&["--compress-with", "none"]).ok();
    flip_first(&w.repo.join("packs"), b"inner.txt", 0x20);
    w.file("new.txt", b"new\n");
    let run = w.backup(&[]).ok();
    assert!(
        run.stderr.contains("cannot read (object tree/")
            || run.stderr.contains("cannot be read (object tree/"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("backing up what is there as new"),
        "{run:#?}"
    );
    let run = w.backup(&[]).ok();
    assert!(!run.stderr.contains("WARNING"), "{run:#?}");
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(
        fs::read(restored.join("sub/inner.txt")).unwrap(),
        b"inner words\n"
    );
    assert_eq!(fs::read(restored.join("new.txt")).unwrap(), b"new\n");
    // The first generation is still damaged, and fsck says so.
    w.obnam(&["fsck"]).fails().no_rust_panic();
}

#[test]
fn a_flipped_bit_in_a_generation_or_index_object_is_named() {
    let w = BackupWorld::new("c");
    w.file("a", b"file a\n");
    w.backup(&["--compress-with", "none"]).ok();
    // The generation's file count, 1, becomes 3.
    let gens = files_under(&w.repo.join("generations"));
    let mut bytes = fs::read(&gens[0]).unwrap();
    let at = bytes
        .windows(14)
        .position(|x| x == b"\"file_count\":1")
        .unwrap();
    bytes[at + 13] ^= 0x02;
    fs::write(&gens[0], bytes).unwrap();
    // Left out of the listing, named (`damaged_records.rs` has the rest).
    let run = w.obnam(&["generations"]).ok().no_rust_panic();
    assert!(
        run.stderr.contains("object generations/")
            && run.stderr.contains("does not match its checksum"),
        "{run:#?}"
    );
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(run.stderr.contains("object generations/"), "{run:#?}");

    // A damaged index object: its blobs count as absent, and fsck names it.
    let w = BackupWorld::new("c");
    w.file("a", b"file a\n");
    w.backup(&["--compress-with", "none"]).ok();
    let index = files_under(&w.repo.join("index"));
    let mut bytes = fs::read(&index[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&index[0], bytes).unwrap();
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains("object index/") && run.stderr.contains("does not match its checksum"),
        "{run:#?}"
    );
}

/// A generation whose root tree claims an id that is not its content's,
/// and that contains itself through that id.
fn self_containing(repo: &Path) {
    let mut h = Handmade::default();
    let claimed = handmade::token(b"any id at all");
    h.tree_as(claimed, &[Entry::dir(b"loop", claimed)]);
    h.write(repo, "evil", claimed);
}

#[test]
fn a_tree_that_contains_itself_ends_every_walk() {
    let env = TestEnv::new();
    let repo = env.path().join("repo");
    self_containing(&repo);
    let base = repo_args(&repo);
    let target = env.path().join("target");
    let limit = Duration::from_secs(60);
    for (what, more) in [
        ("restore", vec!["restore", "--to", target.to_str().unwrap()]),
        ("ls", vec!["ls"]),
        ("fsck", vec!["fsck"]),
    ] {
        let run = run_within(&env, &args(&base, &more), limit)
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr.contains("does not match its id"),
            "{what}: {run:#?}"
        );
    }
    assert!(
        files_under(&target).is_empty(),
        "{:?}",
        files_under(&target)
    );
}

#[test]
fn a_chain_of_folders_deeper_than_the_format_allows_is_refused() {
    let env = TestEnv::new();
    let repo = env.path().join("repo");
    let mut h = Handmade::default();
    let content = b"at the bottom\n";
    let chunk = h.chunk(content);
    let mut tree = h.tree(&[Entry::file(b"f", chunk, content)]);
    for _ in 0..5000 {
        tree = h.tree(&[Entry::dir(b"d", tree)]);
    }
    h.write(&repo, "evil", tree);
    let base = repo_args(&repo);
    let target = env.path().join("target");
    let limit = Duration::from_secs(300);
    for (what, more) in [
        ("restore", vec!["restore", "--to", target.to_str().unwrap()]),
        ("fsck", vec!["fsck"]),
    ] {
        let run = run_within(&env, &args(&base, &more), limit)
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr.contains("deeper than the format allows (4096)"),
            "{what}: {}",
            &run.stderr[..run.stderr.len().min(2000)]
        );
    }
}

#[test]
fn names_that_are_not_file_names_end_fsck_ls_and_restore() {
    let env = TestEnv::new();
    let repo = env.path().join("repo");
    let mut h = Handmade::default();
    let content = b"good\n";
    let chunk = h.chunk(content);
    let inner = h.tree(&[Entry::file(b"good", chunk, content)]);
    let root = h.tree(&[
        Entry::dir(b"/", inner),
        Entry::dir(b"", inner),
        Entry::dir(b"ok", inner),
    ]);
    h.write(&repo, "evil", root);
    let base = repo_args(&repo);
    let target = env.path().join("target");
    let limit = Duration::from_secs(60);
    let run = run_within(&env, &args(&base, &["fsck"]), limit)
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr
            .contains("an entry named \"/\" cannot be restored")
            && run
                .stderr
                .contains("an entry named \"\" cannot be restored"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("; 2 problems"), "{run:#?}");
    run_within(&env, &args(&base, &["ls"]), limit).no_rust_panic();
    let run = run_within(
        &env,
        &args(&base, &["restore", "--to", target.to_str().unwrap()]),
        limit,
    )
    .fails()
    .no_rust_panic();
    assert!(run.stderr.contains("entry named"), "{run:#?}");
    // The proper folder beside them is restored.
    assert_eq!(fs::read(target.join("ok/good")).unwrap(), content);
}

#[test]
fn a_lost_pack_heals_at_the_next_backup() {
    let w = BackupWorld::new("c");
    // Small packs: each file's chunks land in packs of their own.
    let a = obnam_test_support::noise(300_000, 1);
    let b = obnam_test_support::noise(300_000, 2);
    w.file("a", &a);
    w.file("b", &b);
    let settings = ["--compress-with", "none", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    // Lose the data pack that holds the start of `a`.
    let pack = flip_first(&w.repo.join("packs"), &a[..64], 0);
    fs::remove_file(&pack).unwrap();
    let run = w.backup(&settings).ok();
    assert!(
        run.stderr
            .contains("1 pack that the repository's index lists is missing or cut short"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("unchanged file was read again")
            || run.stderr.contains("unchanged files were read again"),
        "{run:#?}"
    );
    // The new generation restores exactly.
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), a);
    assert_eq!(fs::read(restored.join("b")).unwrap(), b);
    // fsck names the pack and what the first generation lost, once.
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(run.stderr.contains("is not in the repository"), "{run:#?}");
}

/// A chunk damaged in its pack after it was written (a changed byte on a
/// failing disk) stayed damaged for good: backups refer to it without
/// reading it back. `repair-packs` takes the pack out, copying the blobs
/// that check, and the next backup reads the file again and stores the
/// chunk anew, under the same id: the older generation restores again
/// too, and `fsck --verify-data` finds nothing.
#[test]
fn a_damaged_chunk_is_taken_out_by_repair_packs_and_healed_by_the_next_backup() {
    let w = BackupWorld::new("c");
    let a = obnam_test_support::noise(300_000, 11);
    let b = obnam_test_support::noise(300_000, 12);
    w.file("a", &a);
    w.file("b", &b);
    let settings = ["--compress-with", "none", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    let first = w.obnam(&["genids"]).ok().stdout.trim().to_string();
    let pack = flip_first(&w.repo.join("packs"), &a[100_000..100_064], 0x01);
    let key = key_of(&w.repo, &pack);
    let damaged = fs::read(&pack).unwrap();
    let run = w.obnam(&["fsck", "--verify-data"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains(&key) && run.stderr.contains(&format!("obnam repair-packs {key}")),
        "{run:#?}"
    );

    let run = w.obnam(&["repair-packs", "--pretend", &key]).ok();
    assert!(
        run.stdout
            .contains(&format!("{key}: 1 blob damaged, would be dropped;"))
            && run.stdout.contains("would be deleted")
            && run
                .stdout
                .contains("--pretend: nothing was written or deleted"),
        "{run:#?}"
    );
    assert!(pack.exists());
    let run = w.obnam(&["repair-packs", &key]).ok();
    assert!(
        run.stdout
            .contains(&format!("{key}: 1 blob damaged, was dropped;"))
            && run.stdout.contains("the pack was deleted")
            && run.stdout.contains("  dropped: chunk "),
        "{run:#?}"
    );
    assert!(!pack.exists());
    // The chunk is missing now, not damaged: named by a plain fsck.
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(run.stderr.contains("is not in the repository"), "{run:#?}");

    let run = w.backup(&settings).ok();
    assert!(
        run.stderr.contains("unchanged file was read again"),
        "{run:#?}"
    );
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains(" 0 problems"), "{run:#?}");
    let target = w.env.path().join("restored");
    w.obnam(&[
        "restore",
        "--generation",
        &first,
        "--to",
        target.to_str().unwrap(),
    ])
    .ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), a);
    assert_eq!(fs::read(restored.join("b")).unwrap(), b);

    // What it refuses, before anything is read.
    let run = w.obnam(&["repair-packs"]).fails();
    assert!(
        run.stderr.contains("repair-packs needs the packs"),
        "{run:#?}"
    );
    let run = w.obnam(&["repair-packs", "packs/zz/nonsense"]).fails();
    assert!(run.stderr.contains("names no pack"), "{run:#?}");
    let run = w.obnam(&["repair-packs", &key]).fails();
    assert!(
        run.stderr
            .contains("is neither in the repository's index nor in the store"),
        "{run:#?}"
    );
    // A pack the index does not list, still there (a repair stopped
    // after the index objects were replaced, before it deleted the
    // pack): run again, it takes it out, copying what the index has
    // nowhere else (here nothing: the backup stored the chunk again);
    // the rerun was refused, with a hint that led in a circle.
    fs::write(w.repo.join(&key), &damaged).unwrap();
    let run = w.obnam(&["repair-packs", &key]).ok();
    assert!(
        run.stdout
            .contains(&format!("{key}: no index object lists it ("))
            && run.stdout.contains("the pack was deleted"),
        "{run:#?}"
    );
    assert!(!w.repo.join(&key).exists());
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains(" 0 problems"), "{run:#?}");
    // Its own list unreadable: what it holds is unknown, and it stays.
    fs::write(w.repo.join(&key), b"left over").unwrap();
    let run = w.obnam(&["repair-packs", &key]).fails();
    assert!(
        run.stderr
            .contains("no index object lists it, and its own list of blobs cannot be read")
            && run.stderr.contains("so it stays"),
        "{run:#?}"
    );
    fs::remove_file(w.repo.join(&key)).unwrap();
}

/// A byte of a compressed chunk's filter header changed (`zstd` read
/// `zst$` or `zstx`: with `zstd` in its place, the chunk checks) is
/// damage to that chunk: `fsck --verify-data` names its pack, and
/// `repair-packs` copies it with the byte undone, nothing lost. It read
/// as a plugin missing: `repair-packs` refused
/// the pack (a torture run's failure), and fsck stopped. A tag close to
/// `zstd` with which the chunk does not check is a plugin missing (taken
/// for damage, a missing plugin's blobs were all dropped): the pack stays.
#[test]
fn a_damaged_filter_tag_is_damage_that_repair_packs_takes_out() {
    let w = BackupWorld::new("c");
    let text = |seed: usize| -> Vec<u8> {
        (0..20_000)
            .flat_map(|i| format!("line {} of file {seed}\n", i * 7919 % 10_007).into_bytes())
            .collect()
    };
    let (a, b) = (text(1), text(2));
    w.file("a", &a);
    w.file("b", &b);
    let settings = ["--compress-with", "zstd", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    let first = w.obnam(&["genids"]).ok().stdout.trim().to_string();
    // The largest pack holds file data; its blobs are compressed.
    let pack = files_under(&w.repo.join("packs"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let key = key_of(&w.repo, &pack);
    let sound = fs::read(&pack).unwrap();
    let tag = b"\x01\x04zstd";
    let at: Vec<usize> = sound
        .windows(tag.len())
        .enumerate()
        .filter(|(_, w)| w == tag)
        .map(|(i, _)| i)
        .collect();
    assert!(at.len() > 1, "{key} holds {} compressed blobs", at.len());

    // A plugin 'zstx' missing: the blob does not check as 'zstd'.
    let mut missing = sound.clone();
    missing[at[0] + 5] = b'x';
    missing[at[0] + 20] ^= 0x10;
    fs::write(&pack, &missing).unwrap();
    let run = w.obnam(&["repair-packs", &key]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("needs the 'zstx' filter; no loaded plugin provides it"),
        "{run:#?}"
    );
    assert_eq!(fs::read(&pack).unwrap(), missing, "nothing was changed");

    // One byte of a tag: damage, proven or plain.
    let mut once = sound.clone();
    once[at[0] + 5] = b'$';
    once[at[1] + 5] = b'x';
    fs::write(&pack, &once).unwrap();
    let run = w.obnam(&["fsck", "--verify-data"]).fails().no_rust_panic();
    for read in ["zst$", "zstx"] {
        assert!(
            run.stderr.contains(&format!(
                "its filter header is damaged: a tag reads '{read}', which no loaded plugin \
                 provides, and with 'zstd' in its place the object checks"
            )),
            "{run:#?}"
        );
    }
    assert!(
        run.stderr.contains(&format!("obnam repair-packs {key}")),
        "{run:#?}"
    );
    // The one wrong byte is known, and each blob checks without it: they
    // are copied repaired, nothing lost.
    let run = w.obnam(&["repair-packs", &key]).ok();
    assert!(
        run.stdout.contains(&format!(
            "{key}: 2 blobs with a damaged filter header, repaired; "
        )) && run.stdout.contains("the pack was deleted"),
        "{run:#?}"
    );
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains(" 0 problems"), "{run:#?}");
    let target = w.env.path().join("restored");
    w.obnam(&[
        "restore",
        "--generation",
        &first,
        "--to",
        target.to_str().unwrap(),
    ])
    .ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), a);
    assert_eq!(fs::read(restored.join("b")).unwrap(), b);
}

/// `repair-packs` drops nothing of a sound pack whatever the reads bring
/// (a read that brings less than the store lists is a failed read, not
/// damage: a short read took every blob it did not bring for damaged,
/// and the pack was deleted); `--pretend` takes no lock (it writes
/// nothing, so a store that refuses writes does not stop it).
#[test]
fn repair_packs_loses_nothing_of_a_sound_pack_on_short_reads() {
    let w = BackupWorld::new("c");
    let a = obnam_test_support::noise(300_000, 21);
    w.file("a", &a);
    let settings = ["--compress-with", "none", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    let pack = flip_first(&w.repo.join("packs"), &a[100_000..100_064], 0);
    let key = key_of(&w.repo, &pack);
    let before = fs::read(&pack).unwrap();
    for seed in 1..=8 {
        let faults = format!("--testing-storage-faults=short-read=0.5,seed={seed}");
        let run = w.obnam(&["repair-packs", &faults, &key]).no_rust_panic();
        assert!(
            !run.stdout.contains("dropped") && !run.stdout.contains("deleted"),
            "seed {seed}: {run:#?}"
        );
        assert_eq!(fs::read(&pack).unwrap(), before, "seed {seed}");
    }
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains(" 0 problems"), "{run:#?}");
    let run = w
        .obnam(&[
            "repair-packs",
            "--pretend",
            "--testing-storage-faults=write-fail=1,seed=1",
            &key.to_uppercase().replace("PACKS/", "packs/"),
        ])
        .ok();
    assert!(
        run.stdout.contains("every blob checks (") && run.stdout.contains("left as it is"),
        "{run:#?}"
    );
}

/// A pack whose own list of blobs (at its end) does not read, though
/// every blob checks: `fsck --verify-data` names it as `packs/XX/ID` with
/// the command; `repair-packs` copies its blobs into new packs and takes
/// it out (it left it as it was, and fsck failed for good). A FIFO where
/// a pack was cannot be read at all: its blobs are dropped from the
/// index, and the next backup stores them again.
#[test]
fn repair_packs_takes_out_a_pack_whose_list_or_whole_does_not_read() {
    let w = BackupWorld::new("c");
    let a = obnam_test_support::noise(300_000, 31);
    let b = obnam_test_support::noise(300_000, 32);
    w.file("a", &a);
    w.file("b", &b);
    let settings = ["--compress-with", "none", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    let first = w.obnam(&["genids"]).ok().stdout.trim().to_string();
    let pack = flip_first(&w.repo.join("packs"), &a[100_000..100_064], 0);
    let key = key_of(&w.repo, &pack);
    let mut bytes = fs::read(&pack).unwrap();
    let near_end = bytes.len() - 20;
    bytes[near_end] ^= 0x01;
    fs::write(&pack, &bytes).unwrap();
    let run = w.obnam(&["fsck", "--verify-data"]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains(&format!("object {key} is corrupt: its own list of blobs"))
            && run.stderr.contains(&format!("'obnam repair-packs {key}'")),
        "{run:#?}"
    );
    let run = w.obnam(&["repair-packs", &key]).ok();
    assert!(
        run.stdout
            .contains(&format!("{key}: its own list of blobs cannot be read ("))
            && run
                .stdout
                .contains("copied into new packs; the pack was deleted")
            && !run.stdout.contains("dropped"),
        "{run:#?}"
    );
    assert!(!pack.exists());
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains(" 0 problems"), "{run:#?}");

    let pack = flip_first(&w.repo.join("packs"), &b[100_000..100_064], 0);
    let key = key_of(&w.repo, &pack);
    make_fifo(&pack);
    let run = w.obnam(&["repair-packs", &key]).ok();
    assert!(
        run.stdout.contains(&format!("{key}: cannot be read (")) && run.stdout.contains("FIFO"),
        "{run:#?}"
    );
    fs::remove_file(&pack).unwrap();
    w.backup(&settings).ok();
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(run.stdout.contains(" 0 problems"), "{run:#?}");
    let target = w.env.path().join("restored");
    w.obnam(&[
        "restore",
        "--generation",
        &first,
        "--to",
        target.to_str().unwrap(),
    ])
    .ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), a);
    assert_eq!(fs::read(restored.join("b")).unwrap(), b);
}

/// A pack cut short (an interrupted copy, a full disk, a store that lost
/// its end) is named by plain `fsck` and by the next backup from the
/// store's listing, without reading it (backups and plain fsck took it
/// for whole, exit 0, and every later generation was built on the blobs
/// it lost: the loss showed at restore time only). The backup stores
/// again what it held, from the files, so its generation restores; the
/// older one's blobs before the cut still restore.
#[test]
fn a_pack_cut_short_is_named_and_the_next_backup_builds_nothing_on_it() {
    let w = BackupWorld::new("c");
    let a = obnam_test_support::noise(300_000, 1);
    let b = obnam_test_support::noise(3_000, 2);
    w.file("a", &a);
    w.file("b", &b);
    let settings = ["--compress-with", "none", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    let pack = flip_first(&w.repo.join("packs"), &a[..64], 0);
    let bytes = fs::read(&pack).unwrap();
    fs::write(&pack, &bytes[..bytes.len() / 2]).unwrap();
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains(&name) && run.stderr.contains("it was cut short"),
        "{run:#?}"
    );
    let run = w.backup(&settings).ok();
    assert!(
        run.stderr.contains(&name)
            && run.stderr.contains("it was cut short")
            && (run
                .stderr
                .contains("packs that the repository's index lists are missing or cut short")
                || run
                    .stderr
                    .contains("pack that the repository's index lists is missing or cut short"))
            && run.stderr.contains("unchanged file was read again"),
        "{run:#?}"
    );
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), a);
    assert_eq!(fs::read(restored.join("b")).unwrap(), b);
    // A backup after it builds on the blobs stored again: nothing is read.
    let run = w.backup(&settings).ok();
    assert!(!run.stderr.contains("read again"), "{run:#?}");
}

/// fsck, after a pack was cut short, names the pack once and the files
/// that lost data, and only those: the files whose blobs lie before the
/// cut restore, and it called them "not in the repository" too (it
/// forgot the whole pack, as a backup does to build nothing on it), and
/// named the pack twice (a warning, then the error).
#[test]
fn fsck_names_only_the_files_a_pack_cut_short_lost() {
    let w = BackupWorld::new("c");
    let files: Vec<Vec<u8>> = (0..8)
        .map(|i| obnam_test_support::noise(4_000, i))
        .collect();
    for (i, data) in files.iter().enumerate() {
        w.file(&format!("f{i}"), data);
    }
    let settings = ["--compress-with", "none", "--pack-size", "1MiB"];
    w.backup(&settings).ok();
    // Every file in one pack (no compression: their bytes are in it as
    // they are), each found by its first bytes; the pack is cut where the
    // fifth of them in the pack's order begins.
    let packs = files_under(&w.repo.join("packs"));
    let bytes = packs
        .iter()
        .map(|p| (p, fs::read(p).unwrap()))
        .find(|(_, b)| b.windows(64).any(|w| w == &files[0][..64]))
        .unwrap();
    let (pack, bytes) = bytes;
    let mut at: Vec<(usize, usize)> = files
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let offset = bytes.windows(64).position(|w| w == &data[..64]);
            (offset.expect("every file in the same pack"), i)
        })
        .collect();
    at.sort();
    let cut = at[4].0;
    fs::write(pack, &bytes[..cut]).unwrap();
    let (kept, lost): (Vec<usize>, Vec<usize>) = at.iter().map(|(_, i)| *i).partition(|i| {
        at.iter()
            .position(|(_, j)| j == i)
            .is_some_and(|rank| rank < 4)
    });
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    for verify in [false, true] {
        let mut fsck = vec!["fsck"];
        if verify {
            fsck.push("--verify-data");
        }
        let run = w.obnam(&fsck).fails().no_rust_panic();
        assert_eq!(run.stderr.matches(&name).count(), 1, "{run:#?}");
        assert!(run.stderr.contains("it was cut short"), "{run:#?}");
        for i in &lost {
            assert!(run.stderr.contains(&format!("/f{i}:")), "f{i}: {run:#?}");
        }
        for i in &kept {
            assert!(!run.stderr.contains(&format!("/f{i}:")), "f{i}: {run:#?}");
        }
    }
    // And those it does not name restore exactly.
    let target = w.env.path().join("restored");
    let run = w
        .obnam(&["restore", "--to", target.to_str().unwrap()])
        .fails();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    for i in &kept {
        assert_eq!(
            fs::read(restored.join(format!("f{i}"))).unwrap(),
            files[*i],
            "f{i}: {run:#?}"
        );
    }
}

/// Many packs cut short (a failed copy of a whole repository), half of
/// them to nothing: a backup names a few and counts the rest, rather than
/// a line for each at every run, and its generation restores exactly;
/// fsck names each.
#[test]
fn many_packs_cut_short_are_named_a_few_and_counted() {
    let w = BackupWorld::new("c");
    let files: Vec<Vec<u8>> = (0..16)
        .map(|i| obnam_test_support::noise(100_000, i))
        .collect();
    for (i, data) in files.iter().enumerate() {
        w.file(&format!("f{i}"), data);
    }
    let settings = ["--compress-with", "none", "--pack-size", "64KiB"];
    w.backup(&settings).ok();
    let packs = files_under(&w.repo.join("packs"));
    assert!(packs.len() > 10, "{}", packs.len());
    // Half of them cut to nothing (a pack is never empty: a size of 0
    // in a listing that gives sizes is a pack cut short, not "unknown").
    for (i, pack) in packs.iter().enumerate() {
        let bytes = fs::read(pack).unwrap();
        let keep = if i % 2 == 0 { 0 } else { bytes.len() / 2 };
        fs::write(pack, &bytes[..keep]).unwrap();
    }
    let run = w.backup(&settings).ok();
    assert_eq!(
        run.stderr.matches("it was cut short").count(),
        5,
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(&format!(
            "and {} more packs were cut short (fsck names them all)",
            packs.len() - 5
        )),
        "{run:#?}"
    );
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert_eq!(
        run.stderr.matches("ERROR: packs/").count(),
        packs.len(),
        "{run:#?}"
    );
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    for (i, data) in files.iter().enumerate() {
        assert_eq!(&fs::read(restored.join(format!("f{i}"))).unwrap(), data);
    }
}

/// A lost index object left every generation that used its packs
/// unrestorable, though the packs were there and list what they hold:
/// `fsck` says so and names `repair-index`, which indexes them from their
/// own lists (a pack cut short is said and left alone, exit 1), and every
/// generation restores exactly again, the older ones too.
#[test]
fn a_lost_index_object_is_repaired_from_the_packs_own_lists() {
    let w = BackupWorld::new("c");
    // Encrypted: the lists and blobs are read through the filters.
    let with_pass = |args: &[&str]| {
        obnam_test_support::run(
            w.env
                .obnam()
                .env("OBNAM_PASSPHRASE", "pass")
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", &w.client])
                .args(["--kdf-memory", "256KiB", "--kdf-iterations", "1"])
                .args(args),
        )
    };
    let data = w.data.to_str().unwrap().to_string();
    let a = obnam_test_support::noise(300_000, 1);
    let b = obnam_test_support::noise(300_000, 2);
    w.file("a", &a);
    with_pass(&["backup", &data, "--encrypt"]).ok();
    w.file("b", &b);
    with_pass(&["backup", &data]).ok();
    // Every index object lost.
    for object in files_under(&w.repo.join("index")) {
        fs::remove_file(object).unwrap();
    }
    let run = with_pass(&["fsck"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains("is not in the repository")
            && run.stderr.contains("'obnam repair-index' indexes them"),
        "{run:#?}"
    );
    // A pack cut short beside them: its list cannot be read.
    let pack = files_under(&w.repo.join("packs")).remove(0);
    let bytes = fs::read(&pack).unwrap();
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let other = format!(
        "{}{}",
        &name[..name.len() - 1],
        if name.ends_with('0') { "1" } else { "0" }
    );
    let cut = pack.with_file_name(&other);
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();

    let pretend = with_pass(&["repair-index", "--pretend"]).fails();
    assert!(pretend.stdout.contains("would be indexed"), "{pretend:#?}");
    let run = with_pass(&["repair-index"]).fails().no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout.contains("indexed") && run.stderr.contains("its list of blobs cannot be read"),
        "{run:#?}"
    );
    fs::remove_file(&cut).unwrap();
    with_pass(&["fsck", "--verify-data"]).ok();
    let gens = with_pass(&["genids"]).ok().stdout;
    let first = gens.lines().next().unwrap();
    let target = w.env.path().join("restored-first");
    with_pass(&[
        "restore",
        "--generation",
        first,
        "--to",
        target.to_str().unwrap(),
    ])
    .ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), a);
    assert!(!restored.join("b").exists());
    let run = with_pass(&["repair-index"]).ok();
    assert!(run.stdout.contains("no pack needs indexing"), "{run:#?}");

    // A damaged index object (not lost): its packs are unlisted, indexed
    // from their own lists, and then it goes, so that fsck and prune are
    // whole again (it stopped prune, and fsck named it, for ever).
    w.file("c", b"third");
    with_pass(&["backup", &data]).ok();
    let newest = files_under(&w.repo.join("index"))
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().modified().unwrap())
        .unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    fs::write(&newest, bytes).unwrap();
    with_pass(&["fsck"]).fails();
    let run = with_pass(&["repair-index"]).ok();
    assert!(
        run.stderr.contains("removed the damaged index object"),
        "{run:#?}"
    );
    assert!(!newest.exists());
    with_pass(&["fsck", "--verify-data"]).ok();
    with_pass(&["prune"]).ok();
}

/// A prune after an index object was lost deletes nothing while folder
/// listings of kept generations are in packs no index object lists: it
/// went on without walking below them, deleted the packs of the files
/// there (exit 0), and what `repair-index` would have repaired was lost
/// for good (found by today's retention review). After `repair-index`
/// the prune goes on and every kept generation restores.
#[test]
fn a_prune_after_a_lost_index_object_deletes_nothing_a_generation_needs() {
    let w = BackupWorld::new("c");
    let big = obnam_test_support::noise(3_000_000, 7);
    w.file("d1/F", &big);
    w.backup(&[]).ok();
    let first = w.obnam(&["genids"]).ok().stdout.trim().to_string();
    let indexed_first: Vec<PathBuf> = files_under(&w.repo.join("index"));
    // The second generation's new root folder is in a pack of its own,
    // listed by its own index object; F's data is in the first's packs.
    w.file("d2/s", b"small");
    w.backup(&[]).ok();
    w.obnam(&["forget", &first]).ok();
    for object in files_under(&w.repo.join("index")) {
        if !indexed_first.contains(&object) {
            fs::remove_file(object).unwrap();
        }
    }
    let packs = files_under(&w.repo.join("packs"));
    for pretend in [true, false] {
        let mut args = vec!["prune"];
        if pretend {
            args.push("--pretend");
        }
        let run = w.obnam(&args).fails().no_rust_panic();
        assert!(
            run.stderr.contains("in no pack the index lists")
                && run.stderr.contains("nothing was deleted")
                && run.stderr.contains("run 'obnam repair-index'"),
            "{run:#?}"
        );
        assert_eq!(files_under(&w.repo.join("packs")), packs);
    }
    w.obnam(&["repair-index"]).ok();
    w.obnam(&["prune"]).ok();
    w.obnam(&["fsck", "--verify-data"]).ok();
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("d1/F")).unwrap(), big);
    assert_eq!(fs::read(restored.join("d2/s")).unwrap(), b"small");
}

/// `fsck` checks a generation's files a batch at a time (4,096) as its
/// walk finds them, so that its memory follows the largest folder, not
/// the generation: every file of a generation of several batches is
/// checked once, and a damaged file is named whichever batch it is in.
#[test]
fn fsck_checks_every_file_of_a_generation_of_several_batches() {
    let w = BackupWorld::new("c");
    for d in 0..10 {
        for f in 0..500 {
            let content = format!("the content of file {d}/{f}, one of many\n");
            w.file(&format!("d{d}/f{f}"), content.as_bytes());
        }
    }
    w.backup(&["--compress-with", "none"]).ok();
    let run = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(
        run.stdout
            .contains("Checked 1 generation, 5000 files, 5000 chunks read; 0 problems"),
        "{run:#?}"
    );
    // The first folder and the last one the walk reaches: one of them is
    // in the first batch, the other in the last.
    for (d, f) in [(0, 0), (9, 499)] {
        let needle = format!("the content of file {d}/{f}, one of many");
        flip_first(&w.repo.join("packs"), needle.as_bytes(), 0x01);
    }
    let run = w.obnam(&["fsck", "--verify-data"]).fails().no_rust_panic();
    for name in ["/d0/f0:", "/d9/f499:"] {
        assert!(run.stderr.contains(name), "{name} not named: {run:#?}");
    }
    assert!(run.stdout.contains("5000 files"), "{run:#?}");
}

/// A folder found good in one generation is not checked again in the
/// next ones that hold it unchanged, and yet: every file is counted in
/// every generation; a damaged file in a folder that changed is named;
/// and a damaged file in a folder every generation shares is named once,
/// with the later generations that reach it counted (its folder is not
/// taken as good).
#[test]
fn fsck_checks_each_folder_once_and_still_finds_damage_in_every_generation() {
    let w = BackupWorld::new("c");
    for d in ["a", "a/deeper", "b", "c"] {
        for f in 0..20 {
            let content = format!("file {f} of folder {d}, in every generation\n");
            w.file(&format!("{d}/f{f}"), content.as_bytes());
        }
    }
    let none = ["--compress-with", "none"];
    w.backup(&none).ok();
    w.file(
        "c/f0",
        b"the new content of c/f0, from the second generation on\n",
    );
    w.backup(&none).ok();
    w.backup(&none).ok();
    for extra in [&[][..], &["--verify-data"][..]] {
        let run = w
            .obnam(&[&["fsck", "--output-format", "json"][..], extra].concat())
            .ok();
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report["generations"], 3, "{run:#?}");
        assert_eq!(report["files"], 3 * 80, "{run:#?}");
        assert_eq!(report["problems"].as_array().unwrap().len(), 0);
    }

    flip_first(
        &w.repo.join("packs"),
        b"the new content of c/f0, from the second",
        0x01,
    );
    flip_first(
        &w.repo.join("packs"),
        b"file 7 of folder a/deeper, in every",
        0x01,
    );
    let run = w
        .obnam(&["fsck", "--verify-data", "--output-format", "json"])
        .fails()
        .no_rust_panic();
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let naming = |path: &str| problems.iter().filter(|p| p.contains(path)).count();
    assert_eq!(naming("/a/deeper/f7:"), 1, "{problems:#?}");
    assert_eq!(naming("/c/f0:"), 1, "{problems:#?}");
    // a/deeper/f7 in the second and third generations, c/f0 in the third.
    assert_eq!(report["affected"], 3, "{run:#?}");
    assert_eq!(report["files"], 3 * 80, "{run:#?}");
    // Every generation a problem reaches is named, not only the first
    // (forgetting the one named left the others, and prune refusing).
    let ids: Vec<String> = w
        .obnam(&["genids"])
        .ok()
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    let named: Vec<&str> = report["generations_with_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            assert_eq!(g["client"], "c");
            g["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(named, ids, "{run:#?}");
    let run = w.obnam(&["fsck", "--verify-data"]).fails();
    assert!(
        run.stdout.contains(&format!(
            "3 more files and folders reach objects reported above\nProblems reach 3 \
             generations of client c: {}\n",
            ids.join(" ")
        )),
        "{run:#?}"
    );
}

/// Put a FIFO (a named pipe) where `path` was.
fn make_fifo(path: &Path) {
    let _ = fs::remove_file(path);
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// The key of an object below `repo`, as messages name it.
fn key_of(repo: &Path, path: &Path) -> String {
    path.strip_prefix(repo)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// Something that is not a file where an object should be (a FIFO, which
/// a read would wait on for a writer forever) is damage to that object,
/// named; no command waits on it.
#[test]
fn a_fifo_in_place_of_an_object_is_damage_and_nothing_waits_on_it() {
    let w = BackupWorld::new("c");
    let content = obnam_test_support::noise(100_000, 3);
    w.file("a", &content);
    w.backup(&["--compress-with", "none"]).ok();
    let base: Vec<String> = vec![
        "--repository".into(),
        w.repo.to_str().unwrap().into(),
        "--client-name".into(),
        "c".into(),
    ];
    let limit = Duration::from_secs(60);

    // The pack that holds the file's data.
    let pack = flip_first(&w.repo.join("packs"), &content[..64], 0);
    make_fifo(&pack);
    let pack_key = key_of(&w.repo, &pack);
    let target = w.env.path().join("restored");
    let run = run_within(
        &w.env,
        &args(&base, &["restore", "--to", target.to_str().unwrap()]),
        limit,
    )
    .fails()
    .no_rust_panic();
    assert!(
        run.stderr.contains(&pack_key) && run.stderr.contains("it is a FIFO"),
        "{run:#?}"
    );
    for command in [&["verify"][..], &["stats"], &["ls"], &["fsck"]] {
        run_within(&w.env, &args(&base, command), limit).no_rust_panic();
    }

    // The config.
    make_fifo(&w.repo.join("config"));
    let run = run_within(&w.env, &args(&base, &["generations"]), limit)
        .fails()
        .no_rust_panic();
    assert!(
        run.stderr.contains("config") && run.stderr.contains("it is a FIFO"),
        "{run:#?}"
    );
}

/// Forget this machine's index cache, as a new machine would have none.
fn cold_cache(w: &BackupWorld) {
    fs::remove_dir_all(w.env.home()).unwrap();
    fs::create_dir(w.env.home()).unwrap();
}

/// An index object whose bytes cannot be one in any way (a compressed
/// stream that does not decompress, an object far larger than the format
/// allows) is reported, and its blobs count as absent, by every command,
/// as one whose checksum fails: none fails for it alone, prune refuses to
/// delete anything, and the next backup heals.
#[test]
fn an_index_object_that_does_not_decompress_or_is_too_large_loses_only_its_blobs() {
    let a = obnam_test_support::noise(200_000, 4);
    for damage in ["last byte", "too large"] {
        let w = BackupWorld::new("c");
        w.file("a", &a);
        w.backup(&[]).ok();
        let objects = files_under(&w.repo.join("index"));
        assert!(!objects.is_empty());
        for object in &objects {
            if damage == "last byte" {
                let mut bytes = fs::read(object).unwrap();
                *bytes.last_mut().unwrap() ^= 0x01;
                fs::write(object, bytes).unwrap();
            } else {
                let f = fs::File::options().write(true).open(object).unwrap();
                f.set_len(2 << 30).unwrap();
            }
        }
        let expected = match damage {
            "last byte" => "cannot be decompressed",
            _ => "larger than the format allows",
        };
        cold_cache(&w);
        let run = w.obnam(&["fsck"]).fails().no_rust_panic();
        assert!(
            run.stderr.contains("index/") && run.stderr.contains(expected),
            "{damage}: {run:#?}"
        );
        assert!(
            run.stdout.contains("Checked 1 generation"),
            "{damage}: {run:#?}"
        );
        cold_cache(&w);
        w.obnam(&["stats"]).ok();
        cold_cache(&w);
        w.obnam(&["forget", "--keep", "1"]).ok();
        cold_cache(&w);
        let target = w.env.path().join("restored");
        let run = w
            .obnam(&["restore", "--to", target.to_str().unwrap()])
            .fails()
            .no_rust_panic();
        assert!(
            run.stderr.contains("not in the repository"),
            "{damage}: {run:#?}"
        );
        cold_cache(&w);
        let run = w.obnam(&["prune"]).fails().no_rust_panic();
        assert!(
            run.stderr.contains("nothing was deleted"),
            "{damage}: {run:#?}"
        );
        // The next backup stores the file again, and restores it.
        cold_cache(&w);
        w.backup(&[]).ok();
        let target = w.env.path().join("healed");
        w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
        let restored = target.join(w.data.strip_prefix("/").unwrap());
        assert_eq!(fs::read(restored.join("a")).unwrap(), a, "{damage}");
    }
}

/// An index object replaced by something that is not a file (a folder, a
/// FIFO) is damage to it, named by every command that reads the index
/// and by fsck as any other damage to an index object is: not an object
/// that is silently absent. Nothing waits on the FIFO; the next backup
/// heals.
#[test]
fn an_index_object_replaced_by_a_folder_or_fifo_is_named_as_damaged() {
    let a = obnam_test_support::noise(200_000, 5);
    let limit = Duration::from_secs(60);
    for kind in ["folder", "FIFO"] {
        let w = BackupWorld::new("c");
        w.file("a", &a);
        w.backup(&[]).ok();
        let objects = files_under(&w.repo.join("index"));
        assert!(!objects.is_empty());
        let keys: Vec<String> = objects.iter().map(|o| key_of(&w.repo, o)).collect();
        for object in &objects {
            fs::remove_file(object).unwrap();
            match kind {
                "folder" => fs::create_dir(object).unwrap(),
                _ => make_fifo(object),
            }
        }
        let what = format!("it is a {kind}");
        let base: Vec<String> = vec![
            "--repository".into(),
            w.repo.to_str().unwrap().into(),
            "--client-name".into(),
            "c".into(),
        ];
        let named = |run: &Run| keys.iter().all(|k| run.stderr.contains(k.as_str()));
        cold_cache(&w);
        let run = run_within(&w.env, &args(&base, &["fsck"]), limit)
            .fails()
            .no_rust_panic();
        assert!(
            named(&run) && run.stderr.contains(&what),
            "{kind}: {run:#?}"
        );
        cold_cache(&w);
        let run = run_within(&w.env, &args(&base, &["prune"]), limit)
            .fails()
            .no_rust_panic();
        assert!(
            named(&run) && run.stderr.contains("nothing was deleted"),
            "{kind}: {run:#?}"
        );
        cold_cache(&w);
        let data = w.data.to_str().unwrap().to_string();
        let run = run_within(&w.env, &args(&base, &["backup", &data]), limit)
            .ok()
            .no_rust_panic();
        assert!(
            named(&run) && run.stderr.contains("its blobs count as absent"),
            "{kind}: {run:#?}"
        );
        let target = w.env.path().join("healed");
        w.obnam(&["restore", "--to", target.to_str().unwrap()]).ok();
        let restored = target.join(w.data.strip_prefix("/").unwrap());
        assert_eq!(fs::read(restored.join("a")).unwrap(), a, "{kind}");
    }
}

/// Flip a byte inside the pages of every file of this machine's index
/// cache, where only the page checks find it (a bad sector, a crash of
/// the disk that holds `~/.cache`); returns how many files.
fn damage_index_cache(w: &BackupWorld) -> usize {
    let mut damaged = 0;
    for path in files_under(&w.env.home().join(".cache/obnam/index")) {
        if path.extension().is_some_and(|e| e == "ixs") {
            let mut bytes = fs::read(&path).unwrap();
            let at = if bytes.len() > 5000 {
                5000
            } else {
                bytes.len() / 2
            };
            bytes[at] ^= 0xff;
            fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    damaged
}

fn pack_bytes(repo: &Path) -> u64 {
    files_under(&repo.join("packs"))
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum()
}

/// A damaged page of the local index cache costs a load of the index
/// from the repository, nothing else. Found by an outside review: what
/// the file held counted as absent for the rest of the run, so a restore
/// said "chunk ... is not in the repository" of an intact repository and
/// restored nothing, fsck failed having checked nothing, and a backup
/// stored every file again.
#[test]
fn a_damaged_page_of_the_index_cache_is_read_again_from_the_repository() {
    let w = BackupWorld::new("evil");
    for i in 0..30 {
        w.file(
            &format!("d{}/f{i}", i % 3),
            &obnam_test_support::noise(100_000, i),
        );
    }
    w.backup(&[]).ok();
    // A second index object, so that the cache holds several files.
    w.file("d0/more", &obnam_test_support::noise(300_000, 99));
    w.backup(&[]).ok();
    let base = repo_args(&w.repo);

    assert!(damage_index_cache(&w) > 0);
    let to = w.env.path().join("restored");
    let restore = w
        .env
        .run(args(&base, &["restore", "--to", to.to_str().unwrap()]))
        .ok();
    assert!(!restore.stderr.contains("ERROR"), "{restore:#?}");
    let restored = to.join(w.data.strip_prefix("/").unwrap());
    for path in files_under(&w.data) {
        let rel = path.strip_prefix(&w.data).unwrap();
        assert_eq!(
            fs::read(&path).unwrap(),
            fs::read(restored.join(rel)).unwrap()
        );
    }

    for verify in [false, true] {
        damage_index_cache(&w);
        let mut more = vec!["fsck"];
        if verify {
            more.push("--verify-data");
        }
        let fsck = w.env.run(args(&base, &more)).ok();
        assert!(fsck.stdout.contains("; 0 problems"), "{fsck:#?}");
    }

    damage_index_cache(&w);
    let before = pack_bytes(&w.repo);
    w.file("d1/new", b"one new file");
    w.backup(&[]).ok();
    let grown = pack_bytes(&w.repo) - before;
    assert!(grown < 100_000, "the backup stored {grown} bytes again");
}
