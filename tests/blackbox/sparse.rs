//! Sparse files and whole-file checksums, through the real binary.
//!
//! A backup reads a sparse file's data only (`SEEK_DATA`/`SEEK_HOLE`) and
//! records its holes unread; the restored file has the same content and
//! is sparse again; `verify` and `fsck --verify-data` agree. New
//! repositories record the BLAKE3 block list checksum, repositories of
//! format version 3 keep SHA-256: both are checked here against an
//! independent computation from the format's description.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use obnam_test_support::awkward::restored;
use obnam_test_support::handmade::{Entry, Handmade};
use obnam_test_support::{noise, BackupWorld};
use sha2::{Digest, Sha256};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Write `data` at `offset` of `path`.
fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(data).unwrap();
}

/// A file of `size` bytes, all hole, with `data` written at each offset.
fn sparse_file(path: &Path, size: u64, data: &[(u64, &[u8])]) {
    fs::File::create(path).unwrap().set_len(size).unwrap();
    for (offset, bytes) in data {
        write_at(path, *offset, bytes);
    }
}

/// The data segments of a file, as the file system tells them.
fn data_segments(path: &Path) -> Vec<(u64, u64)> {
    use rustix::fs::SeekFrom as Seek;
    let file = fs::File::open(path).unwrap();
    let size = file.metadata().unwrap().len();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match rustix::fs::seek(&file, Seek::Data(pos)) {
            Ok(at) => at,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => panic!("SEEK_DATA on {}: {e}", path.display()),
        };
        let end = rustix::fs::seek(&file, Seek::Hole(start))
            .unwrap()
            .min(size);
        out.push((start, end));
        pos = end;
    }
    out
}

/// Assert that two sparse files hold the same bytes, reading only where
/// either has data (everywhere else both are holes, which read as zeros).
fn assert_same_sparse(a: &Path, b: &Path) {
    let size = fs::metadata(a).unwrap().len();
    assert_eq!(fs::metadata(b).unwrap().len(), size, "{}", b.display());
    let mut ranges = data_segments(a);
    ranges.extend(data_segments(b));
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    for (start, end) in ranges {
        let read = |f: &mut fs::File| {
            let mut buf = vec![0u8; (end - start) as usize];
            f.seek(SeekFrom::Start(start)).unwrap();
            f.read_exact(&mut buf).unwrap();
            buf
        };
        assert!(
            read(&mut fa) == read(&mut fb),
            "{} and {} differ in {start}..{end}",
            a.display(),
            b.display()
        );
    }
}

/// The id of a world's first generation.
fn first_generation(w: &BackupWorld) -> String {
    let ids = w.obnam(&["genids"]).ok().stdout;
    ids.lines().next().expect("a generation").to_string()
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn holes_are_recorded_unread_and_restored_as_holes() {
    let w = BackupWorld::new("sparse");
    let huge = w.data.join("huge.img");
    let (a, b, c) = (
        noise(MIB as usize, 1),
        noise(3 * MIB as usize, 2),
        b"the end!".to_vec(),
    );
    // Data at the start, unaligned in the middle, and in the last bytes.
    sparse_file(
        &huge,
        100 * GIB,
        &[(0, &a), (37 * GIB + 123, &b), (100 * GIB - 8, &c)],
    );
    let all_hole = w.data.join("all-hole.img");
    sparse_file(&all_hole, 5 * GIB, &[]);
    // Many holes between small pieces of data: each hole is recorded as
    // chunks of zeros of a few lengths, which the restore reads once
    // (it read them again at every hole: 33 s for 2,000 holes).
    let many = w.data.join("many-holes.img");
    let pieces: Vec<(u64, Vec<u8>)> = (0..64u64)
        .map(|i| (i * 3 * MIB + i * 4099, noise(4096, 100 + i)))
        .collect();
    let borrowed: Vec<(u64, &[u8])> = pieces.iter().map(|(at, d)| (*at, &d[..])).collect();
    sparse_file(&many, 64 * 3 * MIB + 12345, &borrowed);
    let data_bytes = (a.len() + b.len() + c.len()) as u64 + 64 * 4096;

    let run = w.backup(&["--output-format", "json"]).ok();
    let summary = json(&run.stdout);
    let holes = summary["bytes_in_holes"].as_u64().unwrap();
    let total = 105 * GIB + 64 * 3 * MIB + 12345;
    assert_eq!(summary["bytes_read"].as_u64(), Some(total), "{summary}");
    // Every hole was skipped, give or take the file system's blocks
    // around each of the three pieces of data.
    assert!(
        holes <= total - data_bytes && holes >= total - data_bytes - 16 * MIB,
        "{holes} bytes of holes, of {total} with {data_bytes} of data"
    );
    // Holes are no new data: what is new is the data read (the zeros
    // read around it count, the holes' chunks of zeros do not).
    let new = summary["bytes_new"].as_u64().unwrap();
    assert!(
        new >= data_bytes && new <= total - holes,
        "{new} bytes new, of {data_bytes} of data and {} read",
        total - holes
    );

    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    for file in [&huge, &all_hole, &many] {
        let copy = restored(&to, file);
        assert_same_sparse(file, &copy);
        let used = fs::metadata(&copy).unwrap().blocks() * 512;
        assert!(
            used < 64 * MIB,
            "{} uses {used} bytes of disk",
            copy.display()
        );
    }
    w.obnam(&["verify", w.data.to_str().unwrap()]).ok();
    let fsck = w.obnam(&["fsck", "--verify-data"]).ok();
    assert!(fsck.stdout.contains("0 problems"), "{}", fsck.stdout);

    // A change in a hole is a change: the next backup reads the file
    // again, and the restore has it.
    write_at(&huge, 60 * GIB, b"new data in a hole");
    w.backup(&[]).ok();
    let again = w.env.path().join("again");
    w.obnam(&["restore", "--to", again.to_str().unwrap()]).ok();
    assert_same_sparse(&huge, &restored(&again, &huge));
    // And verify sees the difference from the first generation.
    let first = first_generation(&w);
    let differs = w
        .obnam(&["verify", "--generation", &first, w.data.to_str().unwrap()])
        .fails();
    assert!(
        differs.stdout.contains("huge.img") && differs.stdout.contains("content"),
        "{}",
        differs.stdout
    );
}

#[test]
fn small_holes_and_dense_files_are_read_as_they_are() {
    let w = BackupWorld::new("dense");
    // 4 KiB of data every 512 KiB: every hole is under 1 MiB, so the
    // file is read whole, zeros and all.
    let pieces: Vec<(u64, Vec<u8>)> = (0..16u64)
        .map(|i| (i * 512 * 1024, noise(4096, 10 + i)))
        .collect();
    let holey = w.data.join("small-holes.img");
    let refs: Vec<(u64, &[u8])> = pieces.iter().map(|(o, d)| (*o, d.as_slice())).collect();
    sparse_file(&holey, 8 * MIB, &refs);
    w.file("dense.bin", &noise(3 << 20, 3));
    // Zeros written as data are not holes.
    w.file("zeros.bin", &vec![0u8; 4 << 20]);
    let summary = json(&w.backup(&["--output-format", "json"]).ok().stdout);
    assert_eq!(summary["bytes_in_holes"].as_u64(), Some(0), "{summary}");
    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    for name in ["small-holes.img", "dense.bin", "zeros.bin"] {
        let original = w.data.join(name);
        assert_eq!(
            fs::read(restored(&to, &original)).unwrap(),
            fs::read(&original).unwrap(),
            "{name}"
        );
    }
}

/// A sparse file rewritten with the same data shifted, so that other
/// zeros surround each piece of data in the file system's blocks (what
/// inserting bytes into a disk image does): the next backup stores almost
/// nothing new, and both generations restore.
#[test]
fn the_same_data_with_other_zeros_around_it_deduplicates() {
    let w = BackupWorld::new("shifted");
    let image = w.data.join("disk.img");
    let (a, b) = (noise(3 * MIB as usize, 21), noise(5 * MIB as usize, 22));
    let place = |shift: u64| {
        let _ = fs::remove_file(&image);
        sparse_file(
            &image,
            40 * MIB,
            &[(4 * MIB + 100 + shift, &a), (20 * MIB + 1234 + shift, &b)],
        );
        // Data, not holes: zeros written around each piece.
        write_at(&image, 4 * MIB + 100 + shift + a.len() as u64, &[0; 9000]);
    };
    place(0);
    let first = w
        .backup(&["--compress-with", "none", "--output-format", "json"])
        .ok();
    let first = json(&first.stdout);
    // The 8 MiB of data is new (the holes are not counted).
    assert!(first["bytes_new"].as_u64().unwrap() > 7 * MIB, "{first}");
    let before = w.env.path().join("before");
    fs::copy(&image, &before).unwrap();

    place(3000);
    let second = w
        .backup(&["--compress-with", "none", "--output-format", "json"])
        .ok();
    let second = json(&second.stdout);
    let new = second["bytes_new"].as_u64().unwrap();
    assert!(new < 64 << 10, "{new} bytes stored anew: {second}");

    let to = w.env.path().join("restored");
    w.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    assert_eq!(
        fs::read(restored(&to, &image)).unwrap(),
        fs::read(&image).unwrap()
    );
    let old = w.env.path().join("restored-first");
    let gen = first_generation(&w);
    w.obnam(&[
        "restore",
        "--generation",
        &gen,
        "--to",
        old.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        fs::read(restored(&old, &image)).unwrap(),
        fs::read(&before).unwrap()
    );
    w.obnam(&["verify", w.data.to_str().unwrap()]).ok();
}

/// The BLAKE3 block list checksum, computed from the format's
/// description (docs/repository-format.md), independently of obnam.
fn block_list_checksum(content: &[u8]) -> Vec<u8> {
    let mut outer = blake3::Hasher::new_derive_key(
        "obnam 2026-12-03 whole-file checksum: BLAKE3 list of 64 KiB blocks",
    );
    for block in content.chunks(64 << 10) {
        outer.update(blake3::hash(block).as_bytes());
    }
    outer.update(&(content.len() as u64).to_le_bytes());
    let mut out = vec![0xb3];
    out.extend_from_slice(outer.finalize().as_bytes());
    out
}

/// Whether `needle` is in any file below `dir`.
fn stored_somewhere(dir: &Path, needle: &[u8]) -> bool {
    fs::read_dir(dir).unwrap().any(|e| {
        let path = e.unwrap().path();
        if path.is_dir() {
            stored_somewhere(&path, needle)
        } else {
            let bytes = fs::read(&path).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle)
        }
    })
}

#[test]
fn new_repositories_record_block_list_checksums_and_old_ones_sha256() {
    let content = noise(200_000, 7);

    // A new repository (format version 4). Uncompressed, so that the
    // stored tree shows the checksum as it is.
    let w = BackupWorld::new("new");
    w.file("f.bin", &content);
    w.backup(&["--compress-with", "none"]).ok();
    let sha = Sha256::digest(&content).to_vec();
    assert!(stored_somewhere(
        &w.repo.join("packs"),
        &block_list_checksum(&content)
    ));
    assert!(!stored_somewhere(&w.repo.join("packs"), &sha));

    // A repository of format version 3 (made by hand, as an older obnam
    // would have): its backups keep SHA-256, which older obnam can check.
    let old = BackupWorld::new("old");
    let mut hand = Handmade::default();
    let chunk = hand.chunk(b"old content");
    let root = hand.tree(&[Entry::file(b"old.txt", chunk, b"old content")]);
    hand.write(&old.repo, "old", root);
    let new_file = old.file("f.bin", &content);
    old.backup(&["--compress-with", "none"]).ok();
    assert!(stored_somewhere(&old.repo.join("packs"), &sha));
    assert!(!stored_somewhere(
        &old.repo.join("packs"),
        &block_list_checksum(&content)
    ));
    // Both generations restore, each checked against its own kind.
    let to = old.env.path().join("restored");
    old.obnam(&["restore", "--to", to.to_str().unwrap()]).ok();
    assert_eq!(fs::read(restored(&to, &new_file)).unwrap(), content);
    let first = first_generation(&old);
    let to_old = old.env.path().join("restored-old");
    old.obnam(&[
        "restore",
        "--generation",
        &first,
        "--to",
        to_old.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(fs::read(to_old.join("old.txt")).unwrap(), b"old content");
    old.obnam(&["fsck", "--verify-data"]).ok();
}

/// A file whose holes add up to more than a generation records of one
/// file (16 TiB: a reference a 16 MiB of hole, a checksum update a 64
/// KiB) is refused at once, named, and the rest backed up: one of 8 EiB,
/// which any user can make where a backup reads (`truncate -s 8E`, on
/// tmpfs or XFS), held the backup for weeks; one of 256 TiB took 2 GB
/// and was then left out as "too many entries" for its folder.
#[test]
fn a_file_of_endless_holes_is_refused_at_once_and_the_rest_backed_up() {
    if !obnam_test_support::running_as_root() {
        eprintln!("skipped: a tmpfs (which holds files of 8 EiB) needs root to mount");
        return;
    }
    let w = BackupWorld::new("c");
    let disk = w.data.join("disk");
    fs::create_dir_all(&disk).unwrap();
    if !obnam_test_support::mount_small_tmpfs(&disk) {
        eprintln!("skipped: cannot mount a small tmpfs here");
        return;
    }
    let huge = disk.join("huge");
    sparse_file(&huge, (1 << 63) - 1, &[(4096, b"data")]);
    let just_over = disk.join("just-over");
    sparse_file(&just_over, (16 << 40) + 2 * MIB, &[(0, b"x")]);
    let at_most = disk.join("at-most");
    sparse_file(&at_most, (16 << 40) - MIB, &[(5 * MIB, b"kept")]);
    fs::write(disk.join("small"), b"small").unwrap();
    let run = w.backup(&[]);
    obnam_test_support::unmount(&disk);
    let run = run.fails();
    for (file, holes) in [(&huge, "9.2 EB"), (&just_over, "17.6 TB")] {
        assert!(
            run.stderr.contains(&format!(
                "ERROR: {}: its holes add up to {holes}, more than a generation records of one \
                 file (17.6 TB of holes): not backed up",
                file.display()
            )),
            "{run:#?}"
        );
    }
    let listed = w.obnam(&["ls"]).ok().stdout;
    assert!(
        listed.contains("/disk/small") && listed.contains("/disk/at-most"),
        "{listed}"
    );
    assert!(
        !listed.contains("/disk/huge") && !listed.contains("just-over"),
        "{listed}"
    );
}
