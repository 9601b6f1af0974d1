//! Prune on the engine alone: what a reader that opened the repository
//! before a prune sees after it, and a second prune with nothing to do;
//! and `stats`' measure of each client, which walks as a prune does.

use std::sync::Arc;

use crate::generation::{Generation, GenerationBuilder, GenerationReader};
use crate::ids::ChunkId;
use crate::tree::{EntryKind, StoredChunkId, TreeEntry};
use crate::{OpenOptions, Repository};

use super::referenced::Referenced;
use super::{PruneOptions, PruneReport};

fn open(dir: &std::path::Path) -> Arc<Repository> {
    let options = OpenOptions {
        create: true,
        pack_size: 1 << 16,
        ..OpenOptions::default()
    };
    Arc::new(
        Repository::open(
            dir.to_str().unwrap(),
            &options,
            Arc::new(crate::object::NoFilters),
        )
        .unwrap(),
    )
}

fn data(i: u32) -> Vec<u8> {
    let mut d = format!("file {i} ").into_bytes();
    d.resize(3000, (i % 200) as u8 + 1);
    d
}

/// A generation of client `c` holding files `files`, one chunk each.
fn backup(repo: &Arc<Repository>, files: impl Iterator<Item = u32>) -> (Generation, Vec<ChunkId>) {
    backup_as(repo, "c", files)
}

/// A generation of `client` holding files `files`, one chunk each (file
/// `i`'s content a function of `i` alone, so that clients share chunks).
fn backup_as(
    repo: &Arc<Repository>,
    client: &str,
    files: impl Iterator<Item = u32>,
) -> (Generation, Vec<ChunkId>) {
    repo.add_client(client).unwrap();
    let b = GenerationBuilder::new(repo.clone(), client, false).unwrap();
    b.put(b"/d", TreeEntry::bare_dir(b"")).unwrap();
    let mut ids = Vec::new();
    for i in files {
        let d = data(i);
        let token = repo.token(&d);
        let id = match repo.find_chunks(&token).first() {
            Some(id) => *id,
            None => repo.put_chunk(token, d.clone()).unwrap(),
        };
        let mut e = TreeEntry::bare_dir(b"x");
        e.kind = EntryKind::File;
        e.mode = 0o100644;
        e.size = d.len() as u64;
        e.chunks = vec![StoredChunkId(id)];
        b.put(format!("/d/f{i}").as_bytes(), e).unwrap();
        ids.push(id);
    }
    b.finish_dir(b"/d").unwrap();
    (b.commit(false).unwrap(), ids)
}

thread_local! {
    /// Makes a prune on this thread stop after it copied what it
    /// rewrites, before its plan: as one killed there.
    pub(super) static STOP_BEFORE_PLAN: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

fn pack_files(dir: &std::path::Path) -> Vec<String> {
    walkdir(&dir.join("packs"))
}

/// A prune stopped before its plan leaves the copies it made; the next
/// one keeps those and deletes the old packs, without copying again.
/// (It kept the first copy in pack-id order, so about half the time it
/// copied again, and a prune stopped every time grew the repository
/// every time.)
#[test]
fn prunes_stopped_before_their_plan_make_progress_and_do_not_grow_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (old, _) = backup(&repo, 0..60);
    let (kept, ids) = backup(&repo, 0..4);
    repo.remove_generation("c", &old.id).unwrap();
    drop(repo);
    let before = pack_files(dir.path());
    STOP_BEFORE_PLAN.with(|s| s.set(true));
    let options = PruneOptions::default();
    let mut after_first = None;
    for _ in 0..3 {
        let err = open(dir.path())
            .prune(&options, &mut |_, _, _| {})
            .unwrap_err();
        assert!(err.to_string().contains("stopped before the plan"), "{err}");
        let now = pack_files(dir.path());
        let first = after_first.get_or_insert_with(|| now.clone());
        assert_eq!(&now, first, "a stopped prune wrote more packs");
    }
    let after_first = after_first.unwrap();
    assert!(after_first.len() > before.len());
    STOP_BEFORE_PLAN.with(|s| s.set(false));
    let report = prune(&open(dir.path()), 20);
    assert_eq!(report.packs_rewritten, 0, "{report:?}");
    assert_eq!(report.bytes_rewritten, 0, "{report:?}");
    let now = pack_files(dir.path());
    let gone = before.iter().filter(|p| !now.contains(p)).count();
    assert!(gone >= 3, "{before:?} {now:?}");
    assert_eq!(report.packs_deleted, gone as u64, "{report:?}");
    // Nothing written by the prune that completed.
    assert!(now.iter().all(|p| after_first.contains(p)), "{now:?}");
    let fresh = open(dir.path());
    assert!(fresh.check_objects(true).unwrap().problems.is_empty());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(fresh.get_chunk(id).unwrap(), data(i as u32));
    }
    assert_eq!(fresh.generations("c").unwrap()[0].id, kept.id);
}

fn prune(repo: &Repository, threshold: u8) -> PruneReport {
    let options = PruneOptions {
        repack_threshold: threshold,
        ..PruneOptions::default()
    };
    repo.prune(&options, &mut |_, _, _| {}).unwrap()
}

#[test]
fn a_reader_opened_before_a_prune_reads_the_blobs_it_moved() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (first, _) = backup(&repo, 0..20);
    let (second, kept) = backup(&repo, 0..10);
    repo.remove_generation("c", &first.id).unwrap();
    drop(repo);

    // A reader that loaded the index before the prune.
    let reader = open(dir.path());
    assert_eq!(reader.generations("c").unwrap().len(), 1);

    let pruner = open(dir.path());
    let report = prune(&pruner, 20);
    assert!(report.packs_rewritten > 0, "{report:?}");
    assert!(report.packs_deleted > 0, "{report:?}");
    assert!(!report.deferred);

    // Its index places the kept chunks in packs that are gone now.
    for (i, id) in kept.iter().enumerate() {
        assert_eq!(reader.get_chunk(id).unwrap(), data(i as u32));
    }
    let gen = GenerationReader::new(reader.clone(), second);
    assert_eq!(gen.list_dir(b"/d").unwrap().unwrap().len(), 10);

    // Nothing more to do, and nothing lost.
    let again = prune(&open(dir.path()), 20);
    assert_eq!(
        (again.packs_deleted, again.packs_rewritten),
        (0, 0),
        "{again:?}"
    );
    let fresh = open(dir.path());
    assert!(fresh.check_objects(true).unwrap().problems.is_empty());
    for (i, id) in kept.iter().enumerate() {
        assert_eq!(fresh.get_chunk(id).unwrap(), data(i as u32));
    }
}

/// A backup or fsck that loaded the index before a prune, and then
/// looks for packs that are gone, finds none lost: the prune's packs
/// went after the index objects that listed them, and a fresh load knows
/// the copies. A pack deleted by hand is still found missing.
#[test]
fn packs_a_prune_deleted_are_not_taken_for_lost() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (first, _) = backup(&repo, 0..20);
    let (_, kept) = backup(&repo, 0..10);
    repo.remove_generation("c", &first.id).unwrap();
    drop(repo);

    let reader = open(dir.path());
    assert!(kept.iter().all(|id| reader.has_chunk(id)));
    let report = prune(&open(dir.path()), 20);
    assert!(report.packs_deleted > 0, "{report:?}");
    assert_eq!(
        reader.forget_missing_packs().unwrap(),
        crate::check::MissingPacks::default()
    );
    assert!(kept.iter().all(|id| reader.has_chunk(id)));

    let packs: Vec<String> = walkdir(&dir.path().join("packs"));
    std::fs::remove_file(&packs[0]).unwrap();
    let lost = open(dir.path()).forget_missing_packs().unwrap();
    assert_eq!(lost.packs, 1, "{lost:?}");
}

#[test]
fn pretending_writes_nothing_and_tells_what_a_prune_does() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (first, _) = backup(&repo, 0..20);
    backup(&repo, 10..30);
    repo.remove_generation("c", &first.id).unwrap();
    let listing = |dir: &std::path::Path| {
        let mut names: Vec<_> = walkdir(dir);
        names.sort();
        names
    };
    let before = listing(dir.path());
    let options = PruneOptions {
        pretend: true,
        ..PruneOptions::default()
    };
    let pretended = open(dir.path()).prune(&options, &mut |_, _, _| {}).unwrap();
    assert_eq!(listing(dir.path()), before);
    let done = prune(&open(dir.path()), 20);
    for (what, p, d) in [
        ("packs deleted", pretended.packs_deleted, done.packs_deleted),
        (
            "packs rewritten",
            pretended.packs_rewritten,
            done.packs_rewritten,
        ),
        ("bytes freed", pretended.bytes_freed, done.bytes_freed),
        (
            "bytes rewritten",
            pretended.bytes_rewritten,
            done.bytes_rewritten,
        ),
    ] {
        assert_eq!(p, d, "{what}: {pretended:?} {done:?}");
    }
    assert!(done.packs_deleted > 0);
}

fn walkdir(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walkdir(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn a_prune_with_nothing_to_delete_merges_many_small_index_objects() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    // Each run its own process, leaving its own index object.
    for run in 0..20 {
        let (_, ids) = backup(&open(dir.path()), run * 3..run * 3 + 3);
        all.extend(ids);
    }
    let index_objects = || std::fs::read_dir(dir.path().join("index")).unwrap().count();
    let before = index_objects();
    assert!(before > super::compact::COMPACT_ABOVE, "{before}");
    // Pretending counts the objects it would merge, and merges none.
    let options = PruneOptions {
        pretend: true,
        ..PruneOptions::default()
    };
    let told = open(dir.path()).prune(&options, &mut |_, _, _| {}).unwrap();
    assert_eq!(told.index_objects_deleted, before as u64, "{told:?}");
    assert_eq!(index_objects(), before);
    // A reader that loaded the index before the merge.
    let reader = open(dir.path());
    let report = prune(&open(dir.path()), 20);
    assert_eq!(report.packs_deleted, 0, "{report:?}");
    assert_eq!(report.index_objects_deleted, before as u64, "{report:?}");
    assert_eq!(index_objects(), 1);
    // Nothing is lost: not for a new reader, not for the old one once it
    // loads the index again, not for the next prune.
    let fresh = open(dir.path());
    assert!(fresh.check_objects(true).unwrap().problems.is_empty());
    for (i, id) in all.iter().enumerate() {
        assert_eq!(fresh.get_chunk(id).unwrap(), data(i as u32));
        assert!(fresh.has_chunk(id));
    }
    reader.reload_index().unwrap();
    assert!(all.iter().all(|id| reader.has_chunk(id)));
    let again = prune(&open(dir.path()), 20);
    assert_eq!(
        (again.packs_deleted, again.index_objects_deleted),
        (0, 0),
        "{again:?}"
    );
}

/// A lock object of a backup run on another host, live (refreshed now):
/// a prune's plan waits for it.
fn write_foreign_lock(repo: &Repository) -> String {
    let now = crate::now_ns();
    let record = crate::lock::LockRecord {
        kind: crate::lock::LockKind::Client,
        client: "other".into(),
        host: "another-host.invalid".into(),
        pid: 4242,
        created: now,
        refreshed: now,
        boot_id: None,
        pid_ns: None,
        pid_start: None,
        command: None,
    };
    let name = crate::ids::ObjectId::random().to_hex();
    repo.write_object(
        &format!("locks/{name}"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    name
}

/// A prune that finishes an earlier plan (deleting index objects and
/// packs) and then goes on in the same run must not act on what it had
/// loaded before: here, merging the small index objects it just deleted
/// would list again the blobs of the packs it just deleted.
#[test]
fn a_prune_that_finishes_an_earlier_plan_then_acts_on_the_repository_as_it_is_now() {
    let dir = tempfile::tempdir().unwrap();
    let mut gens = Vec::new();
    // Each run its own process, leaving its own small index object.
    for run in 0..20 {
        gens.push(backup(&open(dir.path()), run * 3..run * 3 + 3));
    }
    let repo = open(dir.path());
    for (generation, _) in &gens[..10] {
        repo.remove_generation("c", &generation.id).unwrap();
    }
    drop(repo);
    // A backup elsewhere that began before the plan: the deletion waits.
    let lock = write_foreign_lock(&open(dir.path()));
    let first = prune(&open(dir.path()), 20);
    assert!(first.deferred, "{first:?}");
    assert_eq!(first.packs_deleted, 0, "{first:?}");
    std::fs::remove_file(dir.path().join("locks").join(&lock)).unwrap();

    let second = prune(&open(dir.path()), 20);
    assert_eq!(second.finished_earlier_plans, 1, "{second:?}");
    assert!(second.packs_deleted > 0, "{second:?}");
    let fresh = open(dir.path());
    let problems = fresh.check_objects(true).unwrap().problems;
    assert!(problems.is_empty(), "{problems:#?}");
    for (_, ids) in &gens[10..] {
        for id in ids {
            assert!(fresh.get_chunk(id).is_ok(), "chunk {id:?} lost");
        }
    }
    let third = prune(&open(dir.path()), 20);
    assert_eq!(
        (third.packs_deleted, third.missing_blobs),
        (0, 0),
        "{third:?}"
    );
}

/// A prune rewrites only the index objects that list a pack it deletes:
/// the others stay as they were, and everything kept is still listed.
#[test]
fn a_prune_rewrites_only_the_index_objects_of_the_packs_it_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let index_objects = || -> std::collections::BTreeSet<String> {
        // No folder before the first backup.
        std::fs::read_dir(dir.path().join("index"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    // Three runs, each its own packs and index object.
    let mut runs = Vec::new();
    for files in [0..20, 100..120, 200..220] {
        let before = index_objects();
        let repo = open(dir.path());
        let (gen, ids) = backup(&repo, files);
        let written: Vec<String> = index_objects().difference(&before).cloned().collect();
        assert!(!written.is_empty());
        runs.push((gen, ids, written));
    }
    // The middle run's data is no longer used.
    let repo = open(dir.path());
    repo.remove_generation("c", &runs[1].0.id).unwrap();
    drop(repo);
    let report = prune(&open(dir.path()), 20);
    assert!(report.packs_deleted > 0, "{report:?}");
    assert!(!report.deferred);

    let now = index_objects();
    for name in runs[0].2.iter().chain(&runs[2].2) {
        assert!(
            now.contains(name),
            "index object {name} of a kept run was rewritten"
        );
    }
    for name in &runs[1].2 {
        assert!(
            !now.contains(name),
            "index object {name} lists deleted packs"
        );
    }
    let fresh = open(dir.path());
    assert!(fresh.check_objects(true).unwrap().problems.is_empty());
    for (i, id) in runs[0].1.iter().enumerate() {
        assert_eq!(fresh.get_chunk(id).unwrap(), data(i as u32));
    }
    for (i, id) in runs[2].1.iter().enumerate() {
        assert_eq!(fresh.get_chunk(id).unwrap(), data(200 + i as u32));
    }
    for id in &runs[1].1 {
        assert!(!fresh.has_chunk(id));
    }
}

/// A client's figures measured alone: a walk into a set of keys, then a
/// pass over the whole index.
fn by_index_pass(repo: &Repository, client: &str) -> (u64, u64) {
    let stored = repo.stored_packs().unwrap();
    let mut refs = Referenced::default();
    for g in repo.generations(client).unwrap() {
        repo.walk_tree(g.root.0, &mut refs).unwrap();
    }
    refs.blobs.settle();
    let bytes = repo.stored_bytes_of(&refs.blobs, &stored).unwrap();
    (refs.blobs.len() as u64, bytes)
}

/// Clients that share chunks, and chunks stored twice (two runs that
/// stored the same new data at once): each client's blobs and stored
/// bytes, measured in batches of clients (here of a few hundred blobs:
/// Alice has more and is measured alone, the others share a batch), are
/// what a pass over the whole index for that client alone finds, and
/// the repository's figures count what the clients share once.
#[test]
fn clients_measured_in_batches_are_measured_as_each_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = open(tmp.path());
    let (a1, mut alice_blobs) = backup_as(&repo, "alice", 0..300);
    let (a2, more) = backup_as(&repo, "alice", 100..450);
    alice_blobs.extend(more);
    for g in [a1, a2] {
        alice_blobs.push(g.root.0);
        let reader = GenerationReader::new(repo.clone(), g);
        alice_blobs.push(reader.lookup(b"/d").unwrap().unwrap().subtree.unwrap().0);
    }
    alice_blobs.sort();
    alice_blobs.dedup();
    backup_as(&repo, "bob", 200..260);
    // Two runs store the same 50 new chunks at once, each in its own
    // packs, before either knows of the other's.
    let other = open(tmp.path());
    other.load_index().unwrap();
    for handle in [&repo, &other] {
        for i in 1000..1050 {
            let d = data(i);
            handle.put_chunk(handle.token(&d), d).unwrap();
        }
    }
    repo.flush().unwrap();
    other.flush().unwrap();
    let repo = open(tmp.path());
    backup_as(&repo, "carol", 1000..1050);
    backup_as(&repo, "dave", 1000..1050);
    let twice = {
        let index = repo.catalog.read();
        let mut n = 0;
        index
            .for_each_blob(|_, places| n += u32::from(places.len() > 1))
            .unwrap();
        n
    };
    assert_eq!(twice, 50, "chunks with two copies");

    let usage = repo.usage().unwrap();
    let names: Vec<&str> = usage.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave"]);
    for c in &usage.clients {
        let (blobs, bytes) = by_index_pass(&repo, &c.name);
        assert_eq!((c.blobs, c.stored_bytes), (blobs, bytes), "{}", c.name);
    }
    let alice = &usage.clients[0];
    // 450 chunks, the folder's two trees and the two roots.
    assert_eq!(alice.blobs, 450 + 4, "{alice:?}");
    assert_eq!(alice_blobs.len(), 454);
    // Her stored bytes, from each of her blobs looked up by id.
    let looked_up: u64 = {
        let index = repo.catalog.read();
        alice_blobs
            .iter()
            .map(|id| u64::from(index.places(id)[0].length))
            .sum()
    };
    assert_eq!(alice.stored_bytes, looked_up, "{alice:?}");
    assert!(alice.stored_bytes > 450 * 3000, "{alice:?}");
    // Bob's chunks are all Alice's; Carol's and Dave's the same 50,
    // and their generations the same two trees: 4 folders, 4 roots.
    assert_eq!(usage.used_blobs, 450 + 50 + 4 + 4);
}

/// A pretend prune that leaves out the generations a forget would remove
/// tells what the prune after that forget does; a prune that deletes
/// never leaves out a generation that is there.
#[test]
fn leaving_generations_out_is_for_pretending_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (first, _) = backup(&repo, 0..20);
    backup(&repo, 10..30);
    let pretend = |forgotten: &[&str]| PruneOptions {
        pretend: true,
        pretend_forgotten: forgotten.iter().map(|s| s.to_string()).collect(),
        ..PruneOptions::default()
    };
    let unchanged = repo.prune(&pretend(&[]), &mut |_, _, _| {}).unwrap();
    assert_eq!(unchanged.bytes_freed, 0, "{unchanged:?}");
    let told = repo
        .prune(&pretend(&[first.id.as_str()]), &mut |_, _, _| {})
        .unwrap();
    assert!(told.bytes_freed > 0, "{told:?}");
    assert_eq!(told.generations, 1, "{told:?}");

    let refused = repo.prune(
        &PruneOptions {
            pretend: false,
            ..pretend(&[first.id.as_str()])
        },
        &mut |_, _, _| {},
    );
    assert!(
        matches!(refused, Err(crate::error::RepoError::Usage(_))),
        "{refused:?}"
    );
    assert_eq!(repo.generations("c").unwrap().len(), 2, "nothing removed");

    repo.remove_generation("c", &first.id).unwrap();
    let done = prune(&open(dir.path()), 20);
    assert_eq!(
        (done.bytes_freed, done.packs_deleted, done.packs_rewritten),
        (told.bytes_freed, told.packs_deleted, told.packs_rewritten),
        "{told:?} {done:?}"
    );
}

/// The one file of `prune/` whose name ends in `suffix`.
fn plan_file(dir: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    let found: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("prune"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

/// Damage `path` (a plan object or a runs record) as `how` says.
fn damage_plan_object(repo: &Repository, dir: &std::path::Path, path: &std::path::Path, how: &str) {
    match how {
        "flipped" => {
            let mut bytes = std::fs::read(path).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x10;
            std::fs::write(path, bytes).unwrap();
        }
        "truncated" => {
            let bytes = std::fs::read(path).unwrap();
            std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
        }
        "random" => std::fs::write(path, crate::ids::ObjectId::random().0).unwrap(),
        // Whole, checksum and all, but naming what is no index object: a
        // plan carried out deletes what it names.
        "names no object" => {
            let key = path.strip_prefix(dir).unwrap().to_str().unwrap();
            let plan = super::plan::Plan {
                created: 1,
                packs: Vec::new(),
                index: vec!["../config".into()],
            };
            repo.write_object(key, serde_json::to_vec(&plan).unwrap())
                .unwrap();
        }
        "folder" => {
            std::fs::remove_file(path).unwrap();
            std::fs::create_dir(path).unwrap();
        }
        "FIFO" => {
            std::fs::remove_file(path).unwrap();
            rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
        }
        other => panic!("no damage {other}"),
    }
}

/// A prune plan that cannot be trusted (its plan object or its runs
/// record changed, cut short, replaced by random bytes, naming what is
/// no index object, or a folder or a FIFO in its place) is never carried
/// out. A backup does not take its lock while a plan object is damaged,
/// and says that a prune removes it; fsck reports it; a prune removes
/// it, deleting nothing because of it, and plans afresh by the usual
/// protocol; the backup then goes on, keeping clear of the fresh plan,
/// and what it committed is kept.
#[test]
fn a_damaged_prune_plan_is_never_carried_out_and_prune_replaces_it() {
    let cases = [
        (".plan", "flipped"),
        (".plan", "truncated"),
        (".plan", "random"),
        (".plan", "names no object"),
        (".plan", "folder"),
        (".plan", "FIFO"),
        (".runs", "flipped"),
        (".runs", "folder"),
    ];
    for (which, how) in cases {
        let case = format!("{how} {which}");
        let dir = tempfile::tempdir().unwrap();
        let (old, old_ids) = backup(&open(dir.path()), 0..40);
        let (_, kept_ids) = backup_as(&open(dir.path()), "b", 100..110);
        open(dir.path()).remove_generation("c", &old.id).unwrap();
        // A backup elsewhere that began before the plan: it waits.
        let lock = write_foreign_lock(&open(dir.path()));
        let first = prune(&open(dir.path()), 20);
        assert!(first.deferred, "{case}: {first:?}");
        let path = plan_file(dir.path(), which);
        let key = path
            .strip_prefix(dir.path())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        damage_plan_object(&open(dir.path()), dir.path(), &path, how);

        // A backup cannot tell what a damaged plan object names: it does
        // not take its lock, and says what to do. A plan whose runs
        // record is damaged it reads as ever (a backup needs no runs
        // record).
        let lock_new =
            |repo: &Repository| repo.lock_client("new", std::time::Duration::from_secs(5));
        if which == ".plan" {
            let e = lock_new(&open(dir.path())).unwrap_err().to_string();
            assert!(
                e.contains(&key) && e.contains("'obnam prune' removes it"),
                "{case}: {e}"
            );
        } else {
            let repo = open(dir.path());
            lock_new(&repo).unwrap_or_else(|e| panic!("{case}: {e}"));
            repo.unlock_client("new").unwrap();
        }
        let problems = open(dir.path()).check_objects(false).unwrap().problems;
        assert!(
            problems.iter().any(|p| p.contains(&key)),
            "{case}: {problems:#?}"
        );

        // The backup elsewhere still runs: the damaged plan is removed,
        // and a fresh one waits for that backup.
        let second = prune(&open(dir.path()), 20);
        assert_eq!(second.abandoned_plans, 1, "{case}: {second:?}");
        assert_eq!(second.finished_earlier_plans, 0, "{case}: {second:?}");
        assert!(second.deferred, "{case}: {second:?}");
        assert_eq!(second.packs_deleted, 0, "{case}: {second:?}");
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{case}: {key} is still there"
        );
        // A backup now takes its lock, and keeps clear of the fresh
        // plan's packs: it stores half of the old client's files anew.
        let repo = open(dir.path());
        lock_new(&repo).unwrap_or_else(|e| panic!("{case}: {e}"));
        let (_, new_ids) = backup_as(&repo, "new", 0..20);
        assert!(
            new_ids.iter().all(|id| !old_ids.contains(id)),
            "{case}: the backup built on planned packs"
        );
        repo.unlock_client("new").unwrap();
        drop(repo);
        std::fs::remove_file(dir.path().join("locks").join(&lock)).unwrap();
        let third = prune(&open(dir.path()), 20);
        assert_eq!(third.finished_earlier_plans, 1, "{case}: {third:?}");
        let fresh = open(dir.path());
        for id in new_ids.iter().chain(&kept_ids) {
            fresh
                .get_chunk(id)
                .unwrap_or_else(|e| panic!("{case}: chunk lost: {e}"));
        }
        let problems = fresh.check_objects(true).unwrap().problems;
        assert!(problems.is_empty(), "{case}: {problems:#?}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("prune")).unwrap().count(),
            0,
            "{case}"
        );
        let fourth = prune(&fresh, 20);
        assert_eq!(
            (fourth.packs_deleted, fourth.missing_blobs),
            (0, 0),
            "{case}: {fourth:?}"
        );
    }
}

/// A prune that walks for longer than a lock stays fresh keeps its lock
/// fresh: it writes nothing while it walks, which would refresh it, and
/// a lock not refreshed is broken as stale (a second prune could then
/// run beside it). Each generation's walk here begins with a refresh
/// due, and ends with it done.
#[test]
fn a_prune_refreshes_its_lock_while_it_walks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (first, _) = backup(&repo, 0..20);
    backup(&repo, 10..30);
    backup(&repo, 30..40);
    repo.remove_generation("c", &first.id).unwrap();
    drop(repo);
    let pruner = open(dir.path());
    let mut walked = 0;
    let report = pruner
        .prune(&PruneOptions::default(), &mut |step, done, _| {
            if step == super::PruneStep::Walk {
                if done > 0 {
                    assert!(
                        !pruner.lock_refresh_due(),
                        "generation {done}: walked with a stale lock"
                    );
                }
                walked += 1;
                pruner.make_lock_refresh_due();
            }
        })
        .unwrap();
    assert!(walked >= 2, "{walked}");
    assert!(report.packs_deleted > 0, "{report:?}");
}

/// A damaged lock may be a backup's that began before the plan: the
/// deletion waits while it stays (and is not old enough to be held by no
/// one), as for any run the plan may have missed; once it is gone the
/// next prune carries the plan out.
#[test]
fn a_prune_waits_for_a_damaged_lock_as_for_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    let (first, _) = backup(&repo, 0..20);
    backup(&repo, 10..30);
    repo.remove_generation("c", &first.id).unwrap();
    drop(repo);
    let packs = || walkdir(&dir.path().join("packs")).len();
    let before = packs();
    // A client's lock by its name (which a prune's own lock does not
    // conflict with), whose content cannot be read.
    let damaged = dir.path().join("locks").join(format!(
        "c.0123456789abcdef.{}",
        crate::ids::ObjectId::random().to_hex()
    ));
    std::fs::create_dir_all(damaged.parent().unwrap()).unwrap();
    std::fs::write(&damaged, b"not a lock record").unwrap();

    let waiting = prune(&open(dir.path()), 20);
    assert!(waiting.deferred, "{waiting:?}");
    assert_eq!(waiting.waiting_runs, 1, "{waiting:?}");
    assert!(packs() >= before, "nothing deleted while it may run");

    std::fs::remove_file(&damaged).unwrap();
    let done = prune(&open(dir.path()), 20);
    assert_eq!(done.finished_earlier_plans, 1, "{done:?}");
    assert!(done.packs_deleted > 0, "{done:?}");
    let fresh = open(dir.path());
    assert!(fresh.check_objects(true).unwrap().problems.is_empty());
}

/// A pack to rewrite that holds a damaged blob generations use is kept
/// whole: the damage is not copied, the pack is not deleted, and the
/// prune goes on with the other packs (it stopped, and so did every
/// later prune: the repository could no longer shrink).
#[test]
fn a_pack_holding_a_damaged_used_blob_is_kept_and_the_prune_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let repo = open(dir.path());
    // Two packs of 64 KiB, each with files that stay and files that go.
    let (first, _) = backup(&repo, 0..60);
    let (second, kept) = backup(&repo, (0..60).filter(|i| i % 3 == 0));
    repo.remove_generation("c", &first.id).unwrap();
    let (damaged_id, damaged_pack, packs) = {
        repo.load_index().unwrap();
        let index = repo.catalog.read();
        let at = index.get(&kept[0]).unwrap();
        let mut packs: Vec<u32> = kept.iter().map(|id| index.get(id).unwrap().pack).collect();
        packs.sort_unstable();
        packs.dedup();
        let pack = index.pack_id(at.pack).unwrap();
        let path = dir.path().join(crate::pack::key(&pack));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at.offset as usize + at.length as usize / 2] ^= 0x55;
        std::fs::write(&path, bytes).unwrap();
        (kept[0], pack, packs)
    };
    assert!(
        packs.len() >= 2,
        "the kept files span {} packs",
        packs.len()
    );
    drop(repo);

    let report = prune(&open(dir.path()), 20);
    let damaged_key = crate::pack::key(&damaged_pack);
    assert!(!report.rewrite.contains(&damaged_key), "{report:?}");
    assert_eq!(report.packs_rewritten, packs.len() as u64 - 1, "{report:?}");
    assert!(dir.path().join(&damaged_key).exists());

    // Every kept file reads back but the damaged one, whose damage was
    // neither copied nor lost; a second prune has nothing left to do
    // but that pack, and keeps it again.
    let fresh = open(dir.path());
    for (i, id) in kept.iter().enumerate() {
        let read = fresh.get_chunk(id);
        if *id == damaged_id {
            assert!(read.unwrap_err().is_damaged_object());
        } else {
            assert_eq!(read.unwrap(), data(3 * i as u32));
        }
    }
    let gen = GenerationReader::new(fresh.clone(), second);
    assert_eq!(gen.list_dir(b"/d").unwrap().unwrap().len(), kept.len());
    let again = prune(&open(dir.path()), 20);
    assert_eq!(
        (again.packs_deleted, again.packs_rewritten),
        (0, 0),
        "{again:?}"
    );
    assert!(dir.path().join(&damaged_key).exists());
}

/// A pack that no index object lists (left by a backup that ended
/// abruptly) takes space: `stats` counts it at its size, and a prune,
/// pretending or not, counts its size as freed (both said 0 bytes).
#[test]
fn packs_no_index_object_lists_count_at_their_size() {
    let dir = tempfile::tempdir().unwrap();
    backup(&open(dir.path()), 0..3);
    let before = open(dir.path()).usage().unwrap();
    let id = crate::ids::ObjectId::random();
    let key = crate::pack::key(&id);
    let path = dir.path().join(&key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![7u8; 12_345]).unwrap();
    let after = open(dir.path()).usage().unwrap();
    assert_eq!(after.packs, before.packs + 1);
    assert_eq!(after.pack_bytes, before.pack_bytes + 12_345);
    let options = PruneOptions {
        pretend: true,
        ..PruneOptions::default()
    };
    let told = open(dir.path()).prune(&options, &mut |_, _, _| {}).unwrap();
    assert_eq!(
        (told.packs_deleted, told.bytes_freed),
        (1, 12_345),
        "{told:?}"
    );
    let report = prune(&open(dir.path()), 20);
    assert_eq!(
        (report.packs_deleted, report.bytes_freed),
        (1, 12_345),
        "{report:?}"
    );
    assert!(!path.exists());
}

/// A generation committed beside a prune whose deletion waits may use a
/// pack the plan is to delete (the plan keeps it when it is finished).
/// If the index object listing that pack is lost meanwhile, `repair-index`
/// indexes it again: it left planned packs out, and the generation did
/// not restore (the torture harness, seed 1796575583077415599).
#[test]
fn repair_index_brings_back_a_planned_pack_a_generation_beside_the_prune_uses() {
    let dir = tempfile::tempdir().unwrap();
    let index_objects = || -> std::collections::BTreeSet<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join("index"))
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let (old, ids) = backup(&open(dir.path()), 0..10);
    let listing_old = index_objects();
    backup(&open(dir.path()), 100..110);
    let repo = open(dir.path());
    repo.remove_generation("c", &old.id).unwrap();
    drop(repo);
    // A run that began before the plan (its index loaded, its lock held).
    let beside = open(dir.path());
    assert_eq!(beside.find_chunks(&beside.token(&data(0))).len(), 1);
    let lock = write_foreign_lock(&beside);
    let first = prune(&open(dir.path()), 20);
    assert!(first.deferred, "{first:?}");
    // It builds on the packs the plan is to delete, and commits.
    let (used, used_ids) = backup(&beside, 0..10);
    assert_eq!(used_ids, ids, "the run beside built on the old chunks");
    drop(beside);
    std::fs::remove_file(dir.path().join("locks").join(&lock)).unwrap();
    // The index objects that listed them are lost.
    for object in &listing_old {
        std::fs::remove_file(object).unwrap();
    }
    let repo = open(dir.path());
    let done = repo
        .index_unlisted_packs(false, std::time::Duration::from_secs(5))
        .unwrap();
    assert!(
        done.packs_indexed > 0 && done.problems.is_empty(),
        "{done:?}"
    );
    let fresh = open(dir.path());
    for id in &used_ids {
        assert!(
            fresh.get_chunk(id).is_ok(),
            "chunk {id:?} of {} lost",
            used.id
        );
    }
    // The plan, finished, keeps what is listed and needed.
    prune(&open(dir.path()), 20);
    let fresh = open(dir.path());
    for id in &used_ids {
        assert!(
            fresh.get_chunk(id).is_ok(),
            "chunk {id:?} deleted by the plan"
        );
    }
}
