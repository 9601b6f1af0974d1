//! What reading a tree leaves on it: nothing. A backup and a verify read
//! every file and list every folder, and each read would stamp the access
//! time (under `relatime`, when it is older than a day or than the last
//! change) as though the file's user had opened it. They read with
//! `O_NOATIME` where the kernel allows it (the reader owns the file, or is
//! root), and a user's backup of a file of another user's, which the
//! kernel reads only without it, still goes on.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use obnam_test_support::{BackupWorld, TestEnv};

/// A file's or folder's access time, to the nanosecond.
fn atime(path: &Path) -> (i64, i64) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.atime(), m.atime_nsec())
}

/// Set the access time of `path` two days back and its modification time
/// three: any read under `relatime` then updates the access time.
fn age(path: &Path) {
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let times = FileTimes::new()
        .set_accessed(now - 2 * day)
        .set_modified(now - 3 * day);
    File::open(path)
        .and_then(|f| f.set_times(times))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Whether a plain read of a file aged by [`age`] changes its access time
/// on the file system of `dir`: not where it is mounted `noatime`, and
/// then nothing here can be told.
fn reads_stamp_atimes(dir: &Path) -> bool {
    let probe = dir.join("probe");
    fs::write(&probe, b"probe").unwrap();
    age(&probe);
    let before = atime(&probe);
    fs::read(&probe).unwrap();
    let stamped = atime(&probe) != before;
    fs::remove_file(&probe).unwrap();
    stamped
}

#[test]
fn backup_and_verify_leave_access_times_as_they_were() {
    let w = BackupWorld::new("quiet");
    if !reads_stamp_atimes(w.env.path()) {
        eprintln!("skipped: reads do not change access times on this file system (noatime)");
        return;
    }
    let mut paths: Vec<PathBuf> = vec![
        w.file("a.txt", b"alpha\n"),
        w.file("sub/b.bin", &vec![7u8; 300_000]),
        w.file("sub/deeper/c", b"c"),
    ];
    paths.extend([
        w.data.join("sub/deeper"),
        w.data.join("sub"),
        w.data.clone(),
    ]);
    // Files first, then the folders their writing changed.
    for p in &paths {
        age(p);
    }
    let before: Vec<_> = paths.iter().map(|p| atime(p)).collect();
    let backup = w.backup(&[]).ok();
    assert!(backup.stdout.contains("3 files read"), "{backup:#?}");
    let after: Vec<_> = paths.iter().map(|p| atime(p)).collect();
    assert_eq!(
        before, after,
        "the backup changed access times of {paths:?}"
    );
    let verify = w.obnam(&["verify", w.data.to_str().unwrap()]).ok();
    let after: Vec<_> = paths.iter().map(|p| atime(p)).collect();
    assert_eq!(before, after, "verify changed access times: {verify:#?}");
}

/// A user's backup of a folder holding a file of root's that the user may
/// read: the kernel refuses `O_NOATIME` on it, and it is read without.
#[test]
fn a_users_backup_reads_a_file_of_another_user_it_may_read() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: playing another user needs root");
        return;
    }
    let env = TestEnv::new();
    let someone = 4243;
    let home = env.path().join("home-of-user");
    let data = home.join("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("mine"), b"the user's own").unwrap();
    fs::write(data.join("roots"), b"root's, readable to all").unwrap();
    let repo = home.join("repo");
    for path in [&home, &data, &data.join("mine")] {
        std::os::unix::fs::chown(path, Some(someone), Some(someone)).unwrap();
    }
    for path in [env.path(), &home, &data] {
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(
        data.join("roots"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    age(&data.join("mine"));
    let mine_before = atime(&data.join("mine"));
    let mut direct = env.obnam();
    direct
        .env("HOME", &home)
        .args(["--client-name", "user", "--repository"])
        .arg(&repo)
        .arg("backup")
        .arg(&data);
    let mut cmd = obnam_test_support::as_user(&direct, someone, &[]);
    cmd.current_dir(&home);
    let run = obnam_test_support::run(&mut cmd).ok();
    assert!(run.stdout.contains("2 files read"), "{run:#?}");
    assert_eq!(atime(&data.join("mine")), mine_before, "{run:#?}");
    // Both files came back as they were.
    let to = env.path().join("restored");
    env.run([
        "--repository",
        repo.to_str().unwrap(),
        "--client-name",
        "user",
        "restore",
        "--to",
        to.to_str().unwrap(),
    ])
    .ok();
    let back = to.join(data.strip_prefix("/").unwrap());
    assert_eq!(fs::read(back.join("mine")).unwrap(), b"the user's own");
    assert_eq!(
        fs::read(back.join("roots")).unwrap(),
        b"root's, readable to all"
    );
}
