//! Damaged records, and files that are no record, in the folders of
//! generation, client and lock records: each is left out or waited for
//! with a message that says how to remove it, `fsck` reports it, and no
//! one of them keeps a client from its other generations
//! (`docs/user-guide.md`, "Damaged records").

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use obnam_test_support::{files_under, BackupWorld};

/// The ids `genids` lists, and what it said on standard error.
fn genids(w: &BackupWorld) -> (Vec<String>, String) {
    let run = w.obnam(&["genids"]).ok().no_rust_panic();
    (run.stdout.lines().map(str::to_string).collect(), run.stderr)
}

/// The record of generation `id`.
fn record_of(w: &BackupWorld, id: &str) -> PathBuf {
    files_under(&w.repo.join("generations"))
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == id))
        .unwrap_or_else(|| panic!("no record of generation {id}"))
}

/// Flip one bit in the middle of the file at `path`.
fn damage(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    fs::write(path, bytes).unwrap();
}

/// Two generations of a file `a`, "one" then "two"; their ids.
fn two_generations(w: &BackupWorld) -> (String, String) {
    w.file("a", b"one\n");
    w.backup(&[]).ok();
    w.file("a", b"two\n");
    w.backup(&[]).ok();
    let (ids, _) = genids(w);
    assert_eq!(ids.len(), 2, "{ids:?}");
    (ids[0].clone(), ids[1].clone())
}

/// `nagios-last-backup-age` does not say OK while a generation record of
/// the client is damaged (it may be the newest backup): a WARNING, on the
/// status line a monitoring system reads, naming it (it said OK, exit 0,
/// with a warning on standard error, which such systems drop); a worse
/// state stays as it is.
#[test]
fn the_nagios_check_warns_of_a_damaged_generation_record() {
    let w = BackupWorld::new("c");
    let (first, second) = two_generations(&w);
    let run = w.obnam(&["nagios-last-backup-age"]);
    assert_eq!(run.code, 0, "{run:#?}");
    damage(&record_of(&w, &second));
    let run = w.obnam(&["nagios-last-backup-age"]).no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    let line = run.stdout.trim_end();
    assert!(
        line.starts_with("OBNAM WARNING: latest backup of c is ")
            && line.contains(&format!("(generation {first}, "))
            && line.contains(&format!(
                "; the damaged generation record {second} may be newer: 'obnam fsck' reports them|age="
            )),
        "{run:#?}"
    );
    let run = w
        .obnam(&[
            "nagios-last-backup-age",
            "--testing-now",
            "2099-01-01T00:00:00Z",
        ])
        .no_rust_panic();
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stdout.starts_with("OBNAM CRITICAL: "), "{run:#?}");
    w.obnam(&["forget", &second]).ok();
    let run = w.obnam(&["nagios-last-backup-age"]);
    assert_eq!(run.code, 0, "{run:#?}");
}

/// A damaged generation record, and a stray file beside it, leave the
/// client's other generations usable: listed, restored by id, built on by
/// the next backup (`latest` is refused while the damaged one may be the
/// newest). fsck reports the damage, prune refuses to delete what
/// the damaged generation may refer to, and `forget ID` removes it.
#[test]
fn a_damaged_generation_record_is_left_out_until_forgotten() {
    let w = BackupWorld::new("c");
    let (first, second) = two_generations(&w);
    let record = record_of(&w, &second);
    damage(&record);
    fs::write(record.with_file_name(".DS_Store"), b"not a record").unwrap();
    fs::create_dir(record.with_file_name("0123456789abcdef")).unwrap();

    let (ids, stderr) = genids(&w);
    assert_eq!(ids, vec![first.clone()]);
    assert!(
        stderr.contains(&format!("'obnam forget {second}' removes it")),
        "{stderr}"
    );
    assert!(
        stderr.contains(".DS_Store is not an object obnam writes"),
        "{stderr}"
    );

    // `latest` may be the damaged one: refused, with what to do; the
    // first is restored by its id.
    let target = w.env.path().join("restored");
    let to = target.to_str().unwrap();
    let run = w.obnam(&["restore", "--to", to]).fails().no_rust_panic();
    assert!(run.stderr.contains("--generation"), "{run:#?}");
    assert!(!target.exists());
    w.obnam(&["restore", "--generation", &first, "--to", to])
        .ok();
    let restored = target.join(w.data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"one\n");
    // A backup starts from the newest generation it can read.
    w.file("a", b"three\n");
    w.backup(&[]).ok().no_rust_panic();
    assert_eq!(genids(&w).0.len(), 2);

    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(run.stderr.contains("damaged record"), "{run:#?}");
    assert!(run.stderr.contains(&second), "{run:#?}");

    let packs_before = files_under(&w.repo.join("packs"));
    let run = w.obnam(&["prune"]).fails().no_rust_panic();
    assert!(run.stderr.contains("nothing was deleted"), "{run:#?}");
    assert!(
        run.stderr.contains(&format!("obnam forget {second}")),
        "{run:#?}"
    );
    assert_eq!(files_under(&w.repo.join("packs")), packs_before);

    // A policy cannot judge a history with a generation of unknown time.
    let run = w.obnam(&["forget", "--keep", "1"]).fails().no_rust_panic();
    assert!(run.stderr.contains("nothing was removed"), "{run:#?}");
    assert_eq!(genids(&w).0.len(), 2);

    let run = w.obnam(&["forget", &second]).ok().no_rust_panic();
    assert!(
        run.stdout.contains("removed the damaged record"),
        "{run:#?}"
    );
    assert!(!record.exists());
    let (ids, stderr) = genids(&w);
    assert_eq!(ids.len(), 2);
    assert!(!stderr.contains("damaged record"), "{stderr}");
    // What is not obnam's stays, with a warning, and is no problem.
    w.obnam(&["fsck"]).ok().no_rust_panic();
    w.obnam(&["prune"]).ok().no_rust_panic();
    let run = w.obnam(&["fsck"]).ok().no_rust_panic();
    assert!(run.stderr.contains(".DS_Store"), "{run:#?}");
}

/// A record that is whole but is another generation's (copied over, or
/// put there by someone) is damage too: it would show that generation
/// twice.
#[test]
fn a_generation_record_under_another_id_is_damage() {
    let w = BackupWorld::new("c");
    let (first, second) = two_generations(&w);
    fs::copy(record_of(&w, &first), record_of(&w, &second)).unwrap();
    let (ids, stderr) = genids(&w);
    assert_eq!(ids, vec![first]);
    assert!(stderr.contains(&second), "{stderr}");
    w.obnam(&["fsck"]).fails().no_rust_panic();
}

/// A damaged client record: the client is taken from its generations,
/// with a warning, and fsck reports the record, until the client's next
/// backup writes it again.
#[test]
fn a_damaged_client_record_is_written_again_by_its_next_backup() {
    let w = BackupWorld::new("c");
    w.file("a", b"one\n");
    w.backup(&[]).ok();
    let clients = files_under(&w.repo.join("clients"));
    assert_eq!(clients.len(), 1);
    damage(&clients[0]);
    let run = w.obnam(&["clients"]).ok().no_rust_panic();
    assert_eq!(run.stdout.trim(), "c");
    assert!(
        run.stderr.contains("damaged record")
            && run.stderr.contains("client 'c' has generations")
            && run
                .stderr
                .contains(") is damaged: the client is taken from its generations"),
        "{run:#?}"
    );
    w.obnam(&["fsck"]).fails().no_rust_panic();
    let run = w.backup(&[]).ok().no_rust_panic();
    assert!(run.stderr.contains("written again"), "{run:#?}");
    assert_eq!(w.obnam(&["clients"]).ok().stdout.trim(), "c");
    w.obnam(&["fsck"]).ok().no_rust_panic();

    // One that cannot be written again (a folder in its place) does not
    // fail the backup: nothing refers to a client record.
    fs::remove_file(&clients[0]).unwrap();
    fs::create_dir(&clients[0]).unwrap();
    fs::write(clients[0].join("x"), b"x").unwrap();
    let run = w.backup(&[]).ok().no_rust_panic();
    assert!(
        run.stderr.contains("could not be written again"),
        "{run:#?}"
    );
}

/// A lock object that cannot be read holds what its name says it may
/// (here: everything, a bare id), named with the remedy; `force-lock`
/// removes it and fsck reports it. One untouched for longer than a lock
/// lives unrefreshed is broken. A stray file among the locks is ignored.
#[test]
fn a_damaged_lock_is_named_removed_by_force_lock_and_broken_when_old() {
    let w = BackupWorld::new("c");
    w.file("a", b"one\n");
    w.backup(&[]).ok();
    let locks = w.repo.join("locks");
    let lock = locks.join("0123456789abcdef0123456789abcdef");
    fs::write(&lock, b"garbage").unwrap();
    fs::write(locks.join(".hidden"), b"not a lock").unwrap();

    let run = w.backup(&["--lock-timeout", "1"]).fails().no_rust_panic();
    assert!(
        run.stderr
            .contains("damaged lock object locks/0123456789abcdef")
            && run.stderr.contains("force-lock"),
        "{run:#?}"
    );
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    assert!(run.stderr.contains("damaged lock object"), "{run:#?}");
    let run = w.obnam(&["force-lock"]).ok().no_rust_panic();
    assert!(run.stdout.contains("damaged lock object"), "{run:#?}");
    assert!(!lock.exists());
    let run = w.backup(&[]).ok().no_rust_panic();
    assert!(run.stderr.contains("locks/.hidden"), "{run:#?}");

    // Untouched for two hours: no one holds it.
    fs::write(&lock, b"garbage").unwrap();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let run = w.backup(&["--lock-timeout", "1"]).ok().no_rust_panic();
    assert!(
        run.stderr.contains("breaking stale damaged lock"),
        "{run:#?}"
    );
    assert!(!lock.exists());
}

/// In an encrypted repository a damaged record fails authentication: the
/// same damage, left out and forgotten the same way.
#[test]
fn a_damaged_record_of_an_encrypted_repository_is_left_out_and_forgotten() {
    let w = BackupWorld::new("c");
    let obnam = |args: &[&str]| {
        obnam_test_support::run(
            w.env
                .obnam()
                .env("OBNAM_PASSPHRASE", "pw")
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", "c"])
                .args(args),
        )
    };
    let data = w.data.to_str().unwrap().to_string();
    w.file("a", b"one\n");
    obnam(&["backup", &data, "--encrypt"]).ok();
    w.file("a", b"two\n");
    obnam(&["backup", &data]).ok();
    let ids: Vec<String> = obnam(&["genids"])
        .ok()
        .stdout
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(ids.len(), 2);
    damage(&record_of(&w, &ids[1]));
    let run = obnam(&["genids"]).ok().no_rust_panic();
    assert_eq!(run.stdout.trim(), ids[0]);
    assert!(
        run.stderr.contains(&format!("'obnam forget {}'", ids[1])),
        "{run:#?}"
    );
    obnam(&["fsck"]).fails().no_rust_panic();
    obnam(&["forget", &ids[1]]).ok().no_rust_panic();
    obnam(&["fsck"]).ok().no_rust_panic();
}

/// A client whose record is gone, but whose generations are there, is
/// still a client: `clients` lists it, `forget --all-clients` forgets by
/// its rules, fsck checks it and names the lost record (it left the client
/// out of its walk and said "0 problems", exit 0; `clients` and `forget
/// --all-clients` left it out, so that its generations were kept for
/// ever), and `remove-client` removes it. Its next backup makes the record
/// again.
#[test]
fn a_client_whose_record_is_lost_is_still_a_client() {
    let w = BackupWorld::new("alice");
    let as_client = |name: &str, args: &[&str]| {
        obnam_test_support::run(
            w.env
                .obnam()
                .arg("--repository")
                .arg(&w.repo)
                .args(["--client-name", name])
                .args(args),
        )
    };
    let data = w.data.to_str().unwrap();
    for round in 0..2 {
        w.file("a", format!("round {round}").as_bytes());
        as_client("alice", &["backup", data]).ok();
        as_client("bob", &["backup", data]).ok();
    }
    // Remove one of the two client records (their names are tokens).
    let mut ids: Vec<String> = fs::read_dir(w.repo.join("clients"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2);
    let id = ids[0].clone();
    fs::remove_file(w.repo.join("clients").join(&id)).unwrap();
    let run = as_client("alice", &["clients"]).ok().no_rust_panic();
    assert_eq!(run.stdout, "alice\nbob\n", "{run:#?}");
    let warned = |name: &str| {
        format!(
            "client '{name}' has generations (generations/{id}/) but its client record \
             (clients/{id}) is missing: the client is taken from its generations"
        )
    };
    let gone = match run.stderr.contains(&warned("alice")) {
        true => "alice",
        false => "bob",
    };
    assert!(run.stderr.contains(&warned(gone)), "{run:#?}");
    let run = w.obnam(&["fsck"]).fails().no_rust_panic();
    let problem = format!(
        "client '{gone}' has 2 generations (generations/{id}/) but no client record \
         (clients/{id} is missing)"
    );
    assert!(
        run.stdout.contains(&problem) || run.stderr.contains(&problem),
        "{run:#?}"
    );
    assert!(
        run.stdout.contains("2 clients") || run.stdout.contains("4 generations"),
        "fsck walks both clients: {run:#?}"
    );
    // Retention reaches it.
    as_client("alice", &["forget", "--all-clients", "--keep", "1"]).ok();
    for name in ["alice", "bob"] {
        let ids = as_client(name, &["genids"]).ok().stdout;
        assert_eq!(ids.lines().count(), 1, "{name}: {ids}");
    }
    // Its next backup makes the record again; fsck is clean.
    as_client(gone, &["backup", data]).ok();
    assert!(w.repo.join("clients").join(&id).exists());
    w.obnam(&["fsck"]).ok();
    // Lost again, it is removed by name, and only the other is left.
    fs::remove_file(w.repo.join("clients").join(&id)).unwrap();
    as_client(gone, &["remove-client", gone])
        .ok()
        .no_rust_panic();
    let other = if gone == "alice" { "bob" } else { "alice" };
    let run = as_client(other, &["clients"]).ok();
    assert_eq!(run.stdout, format!("{other}\n"), "{run:#?}");
    assert!(run.stderr.is_empty(), "{run:#?}");
    w.obnam(&["fsck"]).ok();
}

/// A damaged client record of a client with no generation left (nothing
/// names the client but the record's key) is removed by `remove-client`:
/// it said "there is no client", and fsck failed on the record for ever;
/// and `--pretend` says it would.
#[test]
fn a_damaged_client_record_without_generations_is_removed_by_remove_client() {
    let w = BackupWorld::new("c");
    w.file("a", b"one\n");
    w.backup(&[]).ok();
    let id = w.obnam(&["genids"]).ok().stdout.trim().to_string();
    w.obnam(&["forget", &id]).ok();
    let clients = files_under(&w.repo.join("clients"));
    assert_eq!(clients.len(), 1);
    damage(&clients[0]);
    w.obnam(&["fsck"]).fails().no_rust_panic();
    assert_eq!(w.obnam(&["clients"]).ok().stdout, "");
    // --pretend answers as the removal will (it said "there is no
    // client", and the removal then removed it).
    let run = w.obnam(&["remove-client", "--pretend", "c"]).ok();
    assert!(
        run.stdout
            .contains("would remove client c and its 0 generations"),
        "{run:#?}"
    );
    assert_eq!(files_under(&w.repo.join("clients")).len(), 1);
    let run = w.obnam(&["remove-client", "c"]).ok().no_rust_panic();
    assert!(
        run.stdout
            .contains("removed client c and its 0 generations"),
        "{run:#?}"
    );
    assert!(files_under(&w.repo.join("clients")).is_empty());
    w.obnam(&["fsck"]).ok();
    let run = w.obnam(&["remove-client", "c"]).fails();
    assert!(run.stderr.contains("there is no client 'c'"), "{run:#?}");
}

/// The bytes of `path` with the byte at `at` replaced by `byte`.
fn set_byte(path: &Path, at: usize, byte: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] = byte;
    fs::write(path, bytes).unwrap();
}

/// A generation record whose filter header lost one byte (a tag's byte,
/// its length, the count of tags) is damage whose undoing is proven by
/// the record's checksum: every command that leaves it out says that
/// `repair-records` writes it again, which puts back the very bytes
/// written, and the generation restores whole (the advice was `forget`,
/// which lost it). `--pretend` writes nothing.
#[test]
fn a_generation_record_whose_filter_header_lost_a_byte_is_written_again_whole() {
    let w = BackupWorld::new("c");
    let _tree = obnam_test_support::awkward::make_awkward_tree(&w.data);
    w.backup(&[]).ok();
    w.file("late", b"written after the first backup\n");
    w.backup(&[]).ok();
    let (ids, _) = genids(&w);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let record = record_of(&w, &ids[1]);
    let written = fs::read(&record).unwrap();
    assert_eq!(
        &written[..6],
        b"\x01\x04zstd",
        "a record compressed with zstd"
    );
    // (where, the byte put there): a tag's byte, its length byte, the
    // count of tags lowered.
    for (at, byte) in [(5, b'$'), (1, 5), (0, 0)] {
        set_byte(&record, at, byte);
        let (listed, stderr) = genids(&w);
        assert_eq!(listed, vec![ids[0].clone()], "byte {at}: {stderr}");
        assert!(
            stderr.contains("its filter header is damaged")
                && stderr.contains("'obnam repair-records' writes it again with that byte undone"),
            "byte {at}: {stderr}"
        );
        let run = w.obnam(&["fsck"]).fails().no_rust_panic();
        assert!(run.stderr.contains("'obnam repair-records'"), "{run:#?}");
        // Every refusal names it, not the remedy that loses the generation.
        let target = w.env.path().join("refused");
        for args in [
            vec!["restore", "--to", target.to_str().unwrap()],
            vec!["forget", "--keep", "1"],
        ] {
            let run = w.obnam(&args).fails().no_rust_panic();
            assert!(
                run.stderr.contains("'obnam repair-records'"),
                "{args:?}: {run:#?}"
            );
        }
        let packs_before = files_under(&w.repo.join("packs"));
        let run = w.obnam(&["prune"]).fails().no_rust_panic();
        assert!(
            run.stderr.contains("nothing was deleted")
                && run.stderr.contains("'obnam repair-records'"),
            "{run:#?}"
        );
        assert_eq!(files_under(&w.repo.join("packs")), packs_before);

        let run = w
            .obnam(&["repair-records", "--pretend"])
            .ok()
            .no_rust_panic();
        assert!(
            run.stdout
                .contains(&format!("{}: its filter header is damaged", ids[1]))
                && run.stdout.contains("1 record would be written again"),
            "{run:#?}"
        );
        assert_ne!(fs::read(&record).unwrap(), written, "--pretend wrote");

        let run = w.obnam(&["repair-records"]).ok().no_rust_panic();
        assert!(run.stdout.contains("1 record written again"), "{run:#?}");
        assert_eq!(fs::read(&record).unwrap(), written, "byte {at}");
        assert_eq!(genids(&w).0, ids);
        w.obnam(&["fsck", "--verify-data"]).ok().no_rust_panic();
    }
    let target = w.env.path().join("restored");
    w.obnam(&["restore", "--to", target.to_str().unwrap()])
        .ok()
        .no_rust_panic();
    obnam_test_support::awkward::assert_same(
        &obnam_test_support::awkward::restored(&target, &w.data),
        &w.data,
    );
    let run = w.obnam(&["repair-records"]).ok().no_rust_panic();
    assert!(
        run.stdout
            .contains("none has a damaged filter header to undo"),
        "{run:#?}"
    );
}

/// An index object's filter header is repaired the same way, and so is
/// the seal's header in an encrypted repository (the seal's
/// authentication proves it); a record damaged otherwise (in what it
/// holds) is left as it is, said, and the run ends non-zero.
#[test]
fn repair_records_mends_only_what_is_proven() {
    let w = BackupWorld::new("c");
    w.file("a", b"one\n");
    w.backup(&[]).ok();
    w.file("a", b"two\n");
    w.backup(&[]).ok();
    let (ids, _) = genids(&w);
    let index = files_under(&w.repo.join("index"));
    let index = index.first().expect("an index object");
    let written = fs::read(index).unwrap();
    set_byte(index, 3, b'S');
    // As a machine without the index cache sees it: every message about
    // it names the remedy.
    let cache = w.env.path().join("fresh-cache");
    let run = obnam_test_support::run(
        w.env
            .obnam()
            .env("XDG_CACHE_HOME", &cache)
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "fsck"]),
    )
    .fails()
    .no_rust_panic();
    assert!(
        run.stderr
            .contains("'obnam repair-records' writes it again"),
        "{run:#?}"
    );
    let run = w.obnam(&["repair-records"]).ok().no_rust_panic();
    assert!(run.stdout.contains("1 record written again"), "{run:#?}");
    assert_eq!(&fs::read(index).unwrap(), &written);
    w.obnam(&["fsck", "--verify-data"]).ok().no_rust_panic();

    let record = record_of(&w, &ids[1]);
    damage(&record);
    let damaged = fs::read(&record).unwrap();
    let run = w.obnam(&["repair-records"]).fails().no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("damaged record left as it is")
            && run.stderr.contains(&ids[1])
            && run
                .stdout
                .contains("none can be written again so; 1 damaged record left as it is (above)"),
        "{run:#?}"
    );
    assert_eq!(fs::read(&record).unwrap(), damaged);

    let e = BackupWorld::new("c");
    let obnam = |args: &[&str]| {
        obnam_test_support::run(
            e.env
                .obnam()
                .env("OBNAM_PASSPHRASE", "pw")
                .arg("--repository")
                .arg(&e.repo)
                .args(["--client-name", "c"])
                .args(args),
        )
    };
    e.file("a", b"one\n");
    obnam(&["backup", e.data.to_str().unwrap(), "--encrypt"]).ok();
    let id = obnam(&["genids"]).ok().stdout.trim().to_string();
    let record = record_of(&e, &id);
    let sealed = fs::read(&record).unwrap();
    for at in 0..sealed[1] as usize + 2 {
        set_byte(&record, at, sealed[at] ^ 0x81);
        let run = obnam(&["repair-records"]).ok().no_rust_panic();
        assert!(
            run.stdout.contains("1 record written again"),
            "byte {at}: {run:#?}"
        );
        assert_eq!(fs::read(&record).unwrap(), sealed, "byte {at}");
    }
    damage(&record);
    let run = obnam(&["repair-records"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains("damaged record left as it is"),
        "{run:#?}"
    );
}

/// Every one-byte change of a record's filter header (the count, each
/// tag's length byte, each tag byte, whatever it is changed to: a byte
/// that is no text's included) is undone, with one filter and with two
/// (a third-party filter's besides): one top bit flipped in a tag, or the
/// second tag's length, left the record damaged with `forget` the advice,
/// or read as a missing plugin that stopped every command.
#[test]
fn every_one_byte_change_of_a_records_header_is_undone() {
    let w = BackupWorld::new("c");
    let plugins = w.env.plugin_dir("plugins", &["xorfilter"]);
    let plugins = plugins.to_str().unwrap().to_string();
    for extra in [vec![], vec!["--plugin-dir", plugins.as_str()]] {
        let obnam = |args: &[&str]| {
            let mut all = extra.clone();
            all.extend_from_slice(args);
            w.obnam(&all)
        };
        w.file("a", format!("{extra:?}").as_bytes());
        let data = w.data.to_str().unwrap().to_string();
        obnam(&["backup", &data]).ok();
        let ids: Vec<String> = obnam(&["genids"])
            .ok()
            .stdout
            .lines()
            .map(String::from)
            .collect();
        let record = record_of(&w, ids.last().unwrap());
        let written = fs::read(&record).unwrap();
        let header_len = 1
            + (0..written[0] as usize)
                .fold((1, 0), |(pos, len), _| {
                    let l = 1 + written[pos] as usize;
                    (pos + l, len + l)
                })
                .1;
        assert_eq!(written[0] as usize, 1 + extra.len() / 2, "{written:?}");
        for at in 0..header_len {
            for mask in [0x01, 0x02, 0x40, 0x80, 0xff] {
                set_byte(&record, at, written[at] ^ mask);
                let run = obnam(&["repair-records"]).no_rust_panic();
                assert!(
                    run.code == 0 && run.stdout.contains("1 record written again"),
                    "byte {at} ^ {mask:#x}: {run:#?}"
                );
                assert_eq!(fs::read(&record).unwrap(), written, "byte {at} ^ {mask:#x}");
            }
        }
    }
}

/// A name in a folder of records that no record has (a sync tool's
/// conflicted copy, a folder no client's) is ignored, with the warning
/// every command gives: it sent the user in a circle, `repair-records`
/// calling it a damaged record and fsck calling the repository clean.
#[test]
fn repair_records_ignores_names_no_record_has() {
    let w = BackupWorld::new("c");
    let (first, _) = two_generations(&w);
    let record = record_of(&w, &first);
    let copy = record.with_file_name(format!("{first} (conflicted copy)"));
    fs::copy(&record, &copy).unwrap();
    let other = w.repo.join("generations").join("notaclient");
    fs::create_dir(&other).unwrap();
    fs::copy(&record, other.join(&first)).unwrap();
    w.obnam(&["fsck"]).ok().no_rust_panic();
    let run = w.obnam(&["repair-records"]).ok().no_rust_panic();
    assert!(
        run.stdout
            .contains("none has a damaged filter header to undo")
            && run
                .stderr
                .contains("(conflicted copy) is not an object obnam writes")
            && !run.stderr.contains("ERROR"),
        "{run:#?}"
    );
}
