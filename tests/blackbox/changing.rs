//! Files that change, or lie about their size, under a running backup: a
//! file that grows between the walk and the read, a file whose `stat` size
//! is not its length (`/proc`), and a file replaced by a FIFO or a symlink
//! after the walk saw it. The swaps are made by the `hostile` test plugin's
//! `backup-exclude` callback (`OBNAM_TEST_SWAP`), which runs after the
//! walk's `lstat` of the file and before a worker opens it, so every run
//! loses the race the same way.
//!
//! Each backup runs under a deadline and is killed if it passes it: the
//! faults these tests guard against made a backup spin or hang, and a test
//! must fail then, not hang with it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use obnam_test_support::{noise, BackupWorld, Run, TestEnv};

/// Far longer than any of these backups takes when it works.
const DEADLINE: Duration = Duration::from_secs(60);

/// Run `cmd` to its end, or kill it at `DEADLINE` and fail the test.
#[track_caller]
fn run_with_deadline(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start obnam");
    // Read both pipes on threads, so that a full pipe cannot stall obnam.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for obnam") {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    assert!(
        status.is_some(),
        "obnam did not finish within {DEADLINE:?} and was killed:\n{run:#?}"
    );
    run
}

/// `obnam ARGS` on the world's repository and client, with the hostile
/// test plugin loaded next to the bundled ones and `OBNAM_TEST_SWAP=swap`.
fn obnam_swapping(w: &BackupWorld, swap: &str, args: &[&str]) -> Run {
    let plugins = w.env.plugin_dir("hostile-plugin", &["hostile"]);
    let mut cmd = w.env.obnam();
    cmd.arg("--plugin-dir")
        .arg(plugins)
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client])
        .args(args)
        .env("OBNAM_TEST_SWAP", swap);
    run_with_deadline(&mut cmd).no_rust_panic()
}

/// Back up the world's data folder, with `swap` done during the walk.
fn backup_swapping(w: &BackupWorld, swap: &str) -> Run {
    obnam_swapping(w, swap, &["backup", w.data.to_str().unwrap()])
}

/// Restore the latest generation into a new folder; the path the data
/// folder has there.
fn restore(w: &BackupWorld, name: &str) -> PathBuf {
    let to = w.env.path().join(name);
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    to.join(w.data.strip_prefix("/").unwrap())
}

/// Whether `needle` is anywhere in the files under `dir`, as it is.
fn in_files_under(dir: &Path, needle: &[u8]) -> bool {
    fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        if p.is_dir() {
            in_files_under(&p, needle)
        } else {
            let bytes = fs::read(&p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

/// The error line a file that could not be backed up gets.
fn error_about(run: &Run, path: &Path) -> String {
    let prefix = format!("ERROR: {}: ", path.display());
    run.stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no error about {}:\n{run:#?}", path.display()))
        .to_string()
}

/// A file rewritten in place after the walk saw it, its modification
/// time set back: only its change time tells. It was stored as the old
/// start and the new end, exit 0; now it is reported as changed and the
/// previous version kept. With `--ignore-ctime` the change time counts
/// for nothing, as the setting says.
#[test]
fn a_file_rewritten_while_it_is_backed_up_with_its_mtime_set_back_is_reported() {
    let w = BackupWorld::new("testclient");
    let first = noise(100_000, 7);
    let doc = w.file("doc", &first);
    w.file("other", b"other file\n");
    w.backup(&[]).ok();
    let second = noise(100_000, 8);
    fs::write(&doc, &second).unwrap();
    let run = backup_swapping(&w, "doc:rewrite").fails();
    assert!(
        error_about(&run, &doc).ends_with("it changed while it was being backed up"),
        "{run:#?}"
    );
    let restored = restore(&w, "restored");
    assert_eq!(fs::read(restored.join("doc")).unwrap(), first);
}

/// A file whose times are not older than the previous backup's start may
/// have changed after it was read without its times moving (a write in
/// the same tick of the file system's clock): the next backup reads it
/// again, once.
#[test]
fn a_file_changed_during_the_previous_backup_is_read_again_once() {
    let w = BackupWorld::new("testclient");
    let f = w.file("f", b"content\n");
    w.file("old", b"old\n");
    let hour = std::time::Duration::from_secs(3600);
    let set_mtime = |path: &Path, t: std::time::SystemTime| {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    set_mtime(&w.data.join("old"), std::time::SystemTime::now() - hour);
    // A modification time after the backup starts, as a write during it
    // would give.
    set_mtime(&f, std::time::SystemTime::now() + hour);
    let read = |run: &Run| -> String {
        let s = &run.stdout;
        s[s.find('(').unwrap() + 1..s.find(" read").unwrap()].to_string()
    };
    assert_eq!(read(&w.backup(&[]).ok()), "2 files");
    // Nothing changed, but `f` was racy: read again; `old` was not.
    assert_eq!(read(&w.backup(&[]).ok()), "1 file");
    // Still racy: its time is still after this backup's start.
    assert_eq!(read(&w.backup(&[]).ok()), "1 file");
    set_mtime(&f, std::time::SystemTime::now() - hour);
    assert_eq!(read(&w.backup(&[]).ok()), "1 file");
    // Older than the last backup's start now: trusted.
    assert_eq!(read(&w.backup(&[]).ok()), "0 files");
}

/// Two machines that back up as one client (the client name defaults to
/// the host name: clones of one machine) are told of it, and a machine's
/// backup does not take the other's latest generation for its previous
/// one. Found by an outside review: with inode numbers and change times
/// not compared, a file of the same size and times on the other machine
/// was taken as unchanged, and the other machine's content recorded for
/// it, exit 0.
#[test]
fn a_backup_after_another_machines_backup_of_the_client_reads_every_file() {
    let w = BackupWorld::new("shared");
    let f = w.file("app.conf", b"password=AAAA\n");
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let set_mtime = |t| {
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(t)
            .unwrap();
    };
    set_mtime(when);
    let same = ["--ignore-inode", "--ignore-ctime"];
    let first = w
        .backup(&[&same[..], &["--testing-machine-id", "machine-a"]].concat())
        .ok();
    assert!(!first.stderr.contains("another machine"), "{first:#?}");
    // The other machine's file at the same path: same size and times.
    fs::write(&f, b"password=BBBB\n").unwrap();
    set_mtime(when);
    let other = w
        .backup(&[&same[..], &["--testing-machine-id", "machine-b"]].concat())
        .ok();
    assert!(
        other
            .stderr
            .contains("WARNING: the latest backup of client 'shared' (generation ")
            && other.stderr.contains("was made on another machine (host '")
            && other
                .stderr
                .contains("give each machine its own --client-name"),
        "{other:#?}"
    );
    assert!(other.stdout.contains("(1 file read"), "{other:#?}");
    let restored = restore(&w, "b");
    assert_eq!(
        fs::read(restored.join("app.conf")).unwrap(),
        b"password=BBBB\n"
    );
    // The same machine again: its own previous generation, no word.
    let again = w
        .backup(&[&same[..], &["--testing-machine-id", "machine-b"]].concat())
        .ok();
    assert!(!again.stderr.contains("another machine"), "{again:#?}");
    assert!(again.stdout.contains("(0 files read"), "{again:#?}");
}

/// A file that grows by tens of MiB after the walk saw its size: the
/// backup finishes promptly, reports the file as changed, keeps the
/// version of the previous backup, and backs up the rest. Both ways of
/// reading are covered: a small file (read on one thread) and one of
/// 16 MiB or more (read and stored on two).
#[test]
fn a_file_that_grows_while_it_is_backed_up_is_reported_and_the_previous_version_kept() {
    for (name, start) in [("small", 100usize), ("large", 20 << 20)] {
        let w = BackupWorld::new("testclient");
        let first = noise(start, 1);
        let log = w.file("log", &first);
        w.file("other", b"other file\n");
        w.backup(&[]).ok();

        let mut second = first.clone();
        second.extend_from_slice(b"second backup\n");
        fs::write(&log, &second).unwrap();
        let run = backup_swapping(&w, "log:grow=33554432").fails();
        assert!(
            error_about(&run, &log).ends_with("it changed while it was being backed up"),
            "{name}: {run:#?}"
        );
        assert!(
            run.stdout.contains("Generation "),
            "{name}: the generation was committed: {run:#?}"
        );
        let restored = restore(&w, &format!("restored-{name}"));
        assert!(
            fs::read(restored.join("log")).unwrap() == first,
            "{name}: the changed file keeps its previous version"
        );
        assert_eq!(fs::read(restored.join("other")).unwrap(), b"other file\n");
    }
}

/// `/proc/kallsyms` says it has 0 bytes and holds megabytes: it is backed
/// up as read, promptly, and restores to what was read.
#[test]
fn a_file_longer_than_its_stat_size_is_backed_up_as_read() {
    let kallsyms = Path::new("/proc/kallsyms");
    let expected = match fs::read(kallsyms) {
        Ok(data) if data.len() > 1 << 20 && fs::metadata(kallsyms).unwrap().len() == 0 => data,
        _ => {
            eprintln!("skipped: no /proc/kallsyms of over 1 MiB that claims 0 bytes here");
            return;
        }
    };
    let w = BackupWorld::new("testclient");
    let run = obnam_swapping(&w, "", &["backup", "/proc/kallsyms", "/proc/version"]).ok();
    assert!(run.stdout.contains("Generation "), "{run:#?}");
    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let restored = fs::read(to.join("proc/kallsyms")).unwrap();
    assert!(
        restored == expected,
        "restored {} bytes, read {} bytes",
        restored.len(),
        expected.len()
    );
    assert_eq!(
        fs::read(to.join("proc/version")).unwrap(),
        fs::read("/proc/version").unwrap()
    );
}

/// A file replaced by a FIFO after the walk saw it: the backup neither
/// hangs waiting for a writer nor reads the FIFO; it names the file, says
/// what happened, and backs up the rest.
#[test]
fn a_file_swapped_for_a_fifo_after_the_walk_is_skipped_by_name() {
    let w = BackupWorld::new("testclient");
    w.file("a", b"before\n");
    let victim = w.file("victim", b"victim\n");
    w.file("z", b"after\n");
    let run = backup_swapping(&w, "victim:fifo").fails();
    let error = error_about(&run, &victim);
    assert!(error.contains("FIFO"), "{error}");
    assert!(run.stdout.contains("Generation "), "{run:#?}");
    let restored = restore(&w, "restored");
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"before\n");
    assert_eq!(fs::read(restored.join("z")).unwrap(), b"after\n");
    assert!(
        !restored.join("victim").exists(),
        "no content was read for it"
    );
}

/// A file replaced by a symlink after the walk saw it: the link is not
/// followed, so the target's content (a file the attacker could not read)
/// is nowhere in the repository, and the file is named in an error.
#[test]
fn a_file_swapped_for_a_symlink_after_the_walk_is_not_followed() {
    let w = BackupWorld::new("testclient");
    let secret = noise(256 << 10, 7);
    let target = w.env.write("secret", &secret);
    w.file("a", b"before\n");
    // As long as the target, so that only following the link, not its
    // size, can put the target's content in the repository.
    let victim = w.file("victim", &noise(secret.len(), 8));
    let run = backup_swapping(&w, &format!("victim:symlink={}", target.display())).fails();
    let error = error_about(&run, &victim);
    assert!(error.contains("symbolic link"), "{error}");
    assert!(
        !in_files_under(&w.repo, &secret[..4096]),
        "the symlink's target was read into the repository"
    );
    let restored = restore(&w, "restored");
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"before\n");
    assert!(fs::symlink_metadata(restored.join("victim")).is_err());
}

/// Every name under `dir`, at any depth.
fn names_under(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        names.push(e.file_name().to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            names.extend(names_under(&e.path()));
        }
    }
    names
}

/// A folder replaced by a symlink after the walk saw it (to `/etc`, say,
/// by a user whose home a root backup walks): the link is not followed,
/// so nothing of what it points to is listed or read, and the folder is
/// named in an error. The rest is backed up.
#[test]
fn a_folder_swapped_for_a_symlink_after_the_walk_is_not_followed() {
    let w = BackupWorld::new("testclient");
    let secret = noise(64 << 10, 9);
    let outside = w.env.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret-file"), &secret).unwrap();
    w.file("a", b"before\n");
    w.file("victim/mine", b"mine\n");
    w.file("z", b"after\n");
    let victim = w.data.join("victim");
    let run = backup_swapping(&w, &format!("victim:symlink={}", outside.display())).fails();
    let error = error_about(&run, &victim);
    assert!(error.contains("symbolic link"), "{error}");
    assert!(
        !in_files_under(&w.repo, &secret[..4096]),
        "what the symlink points to was read into the repository"
    );
    let listed = w.obnam(&["ls"]).ok().stdout;
    assert!(!listed.contains("secret-file"), "{listed}");
    let restored = restore(&w, "restored");
    assert_eq!(fs::read(restored.join("a")).unwrap(), b"before\n");
    assert_eq!(fs::read(restored.join("z")).unwrap(), b"after\n");
    assert!(!names_under(&restored).contains(&"secret-file".to_string()));
}

/// A folder replaced by another folder after the walk saw it (or a path
/// that, through a folder higher up swapped since, now leads elsewhere):
/// the folder opened is not the one the walk saw, so it is not listed.
#[test]
fn a_folder_replaced_after_the_walk_is_not_listed() {
    let w = BackupWorld::new("testclient");
    let other = w.env.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("other-file"), b"not from the walked folder\n").unwrap();
    w.file("victim/mine", b"mine\n");
    w.file("z", b"after\n");
    let victim = w.data.join("victim");
    let run = backup_swapping(&w, &format!("victim:replace={}", other.display())).fails();
    let error = error_about(&run, &victim);
    assert!(error.contains("replaced by another folder"), "{error}");
    let restored = restore(&w, "restored");
    assert_eq!(fs::read(restored.join("z")).unwrap(), b"after\n");
    assert!(!names_under(&restored).contains(&"other-file".to_string()));
}

/// A file, a folder or a symlink that vanishes between the walk's `lstat`
/// and the backup's next look at it is reported in the same words,
/// whichever system call found it gone.
#[test]
fn whatever_vanishes_during_a_backup_gets_one_message() {
    let w = BackupWorld::new("vanish");
    w.file("keep", b"kept");
    for name in ["gone-file", "gone-dir", "gone-link"] {
        // Each is new to its backup, which then looks at it again (an
        // unchanged inode's attributes and target are taken from the
        // previous generation, without a look).
        match name {
            "gone-file" => drop(w.file(name, b"going")),
            "gone-dir" => drop(w.file("gone-dir/inside", b"going too")),
            _ => std::os::unix::fs::symlink("keep", w.data.join(name)).unwrap(),
        }
        let run = backup_swapping(&w, &format!("{name}:remove"));
        assert_eq!(run.code, 1, "{run:#?}");
        assert_eq!(
            error_about(&run, &w.data.join(name)),
            format!(
                "ERROR: {}: it vanished during the backup",
                w.data.join(name).display()
            )
        );
        assert!(!run.stderr.contains("os error 2"), "{run:#?}");
    }
}

/// A file or a folder that fails, and that the previous generation had,
/// is kept as it was there: the summary counts it as an error, says it
/// was kept, and the generation holds it.
#[test]
fn the_summary_says_what_failed_and_was_kept_from_the_previous_generation() {
    let w = BackupWorld::new("kept");
    w.file("only", b"first version");
    w.file("sub/inside", b"in the folder");
    w.backup(&[]).ok();
    fs::write(w.data.join("only"), b"second version, longer").unwrap();
    // The file fails; the folder is swapped for a symlink after the walk
    // saw it, so it cannot be listed.
    let run = obnam_swapping(
        &w,
        "sub:symlink=/etc",
        &[
            "backup",
            w.data.to_str().unwrap(),
            "--testing-fail-matching",
            "/only$",
        ],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stdout
            .starts_with("Backed up 0 files and 2 directories")
            && run
                .stdout
                .contains("; 0 excluded, 2 errors (2 kept as the previous generation had it)\n"),
        "{run:#?}"
    );
    let restored = restore(&w, "restored");
    assert_eq!(fs::read(restored.join("only")).unwrap(), b"first version");
    assert_eq!(
        fs::read(restored.join("sub/inside")).unwrap(),
        b"in the folder"
    );
    let run = w
        .backup(&[
            "--testing-fail-matching",
            "/only$",
            "--output-format",
            "json",
        ])
        .fails();
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["kept"], 1, "{summary:#}");
    assert_eq!(summary["errors"], 1, "{summary:#}");
}

/// A file that fails while it is read is counted in neither `files` nor
/// `bytes_found` (what the summary and `backup-finished` say was backed
/// up), only in `errors`: `bytes_found` counted it while `files` did not.
#[test]
fn a_file_that_fails_while_read_counts_as_an_error_only() {
    let w = BackupWorld::new("counts");
    w.file("good", b"0123456789");
    w.file("turns", &[7u8; 5000]);
    let run = obnam_swapping(
        &w,
        "turns:fifo",
        &[
            "backup",
            w.data.to_str().unwrap(),
            "--output-format",
            "json",
        ],
    );
    assert_eq!(run.code, 1, "{run:#?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["errors"], 1, "{summary:#}");
    assert_eq!(summary["files"], 1, "{summary:#}");
    assert_eq!(summary["bytes_found"], 10, "{summary:#}");
}

/// Two users of one machine backing up into one repository as one client
/// (the host name, by default) share one history, and each one's `forget`
/// keeps the latest backups of either: the backup says so, as it does of
/// two machines. Found by an outside review: nothing was said, and one
/// user's `forget --keep 1` removed every backup of the other.
#[test]
fn a_backup_after_another_users_says_so() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: playing another user needs root");
        return;
    }
    let env = TestEnv::new();
    let shared = env.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("f"), b"theirs").unwrap();
    // What only root sees of the file: the user's backup cannot record it.
    let trusted = xattr::set(shared.join("f"), "trusted.mark", b"root's").is_ok();
    let someone = 4242;
    std::os::unix::fs::chown(&shared, Some(someone), Some(someone)).unwrap();
    std::os::unix::fs::chown(shared.join("f"), Some(someone), Some(someone)).unwrap();
    for path in [env.path(), &shared] {
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    // The user's repository, handed to root after their backup (root
    // writes into no repository another user could change; two users
    // share one over a remote store).
    let repo = env.path().join("repo");
    fs::create_dir(&repo).unwrap();
    std::os::unix::fs::chown(&repo, Some(someone), Some(someone)).unwrap();
    let backup = |as_user: bool| {
        let mut direct = env.obnam();
        direct
            .env("HOME", &shared)
            .args(["--client-name", "host", "--repository"])
            .arg(&repo)
            .arg("backup")
            .arg(shared.join("f"));
        if !as_user {
            return obnam_test_support::run(&mut direct);
        }
        let mut cmd = obnam_test_support::as_user(&direct, someone, &[]);
        cmd.current_dir(&shared);
        obnam_test_support::run(&mut cmd)
    };
    let theirs = backup(true).ok();
    assert!(!theirs.stderr.contains("another user"), "{theirs:#?}");
    let chown = std::process::Command::new("chown")
        .args(["-R", "0:0"])
        .arg(&repo)
        .status()
        .unwrap();
    assert!(chown.success());
    let mine = backup(false).ok();
    assert!(
        mine.stderr.contains(&format!(
            "was made by another user of this machine (uid {someone}; this is uid 0)"
        )) && mine
            .stderr
            .contains("give each user their own --client-name")
            && mine.stderr.contains("Every file is read again")
            && mine.stdout.contains("(1 file read"),
        "{mine:#?}"
    );
    // Root's generation holds what root sees, not what the user's did
    // (it took the user's record of the unchanged file: no `trusted.*`).
    if trusted {
        let to = env.path().join("restored");
        let mut restore = env.obnam();
        restore
            .args(["--client-name", "host", "--repository"])
            .arg(&repo)
            .args(["restore", "--to"])
            .arg(&to);
        obnam_test_support::run(&mut restore).ok();
        let restored = to.join(shared.strip_prefix("/").unwrap()).join("f");
        assert_eq!(
            xattr::get(restored, "trusted.mark").unwrap().as_deref(),
            Some(&b"root's"[..])
        );
    }
    let again = backup(false).ok();
    assert!(!again.stderr.contains("another user"), "{again:#?}");
}

/// A file another program holds under a write lease (Samba's oplocks, an
/// NFS server's delegations) is read once the lease is given up: the open
/// asks the holder to let go and waits for it. It was skipped at once
/// with a bare "Resource temporarily unavailable (os error 11)" (found by
/// an outside review). The holder here ignores the request and lets go
/// by itself two seconds later. Verify waits as the backup does.
#[test]
fn a_file_under_a_lease_is_read_once_the_lease_is_given_up() {
    use std::io::{BufRead, BufReader};
    let w = BackupWorld::new("c");
    let leased = w.file("leased", b"held by another program");
    w.file("other", b"free");
    let holder = r#"
import fcntl, os, signal, sys, time
signal.signal(signal.SIGIO, signal.SIG_IGN)
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.fcntl(fd, 1024, fcntl.F_WRLCK)  # F_SETLEASE
except OSError as e:
    print("no lease:", e, flush=True)
    sys.exit(0)
print("held", flush=True)
time.sleep(2)
os.close(fd)
"#;
    // The holder, once it holds the lease; `None` where it cannot.
    let hold = || {
        let mut child = match Command::new("python3")
            .args(["-c", holder])
            .arg(&leased)
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipped: python3 is not here to hold a lease: {e}");
                return None;
            }
        };
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if line.trim() != "held" {
            let _ = child.wait();
            eprintln!("skipped: {}", line.trim());
            return None;
        }
        Some(child)
    };
    let Some(mut child) = hold() else { return };
    let run = w.backup(&["--output-format", "json"]);
    let _ = child.wait();
    assert_eq!(run.code, 0, "{run:#?}");
    // So does verify.
    let Some(mut child) = hold() else { return };
    let verify = w.obnam(&["verify", w.data.to_str().unwrap()]);
    let _ = child.wait();
    assert_eq!(verify.code, 0, "{verify:#?}");
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["files_read"], 2, "{summary:#}");
    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    let back = to.join(leased.strip_prefix("/").unwrap());
    assert_eq!(fs::read(back).unwrap(), b"held by another program");
}
