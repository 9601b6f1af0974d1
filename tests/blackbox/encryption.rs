//! The encryption plugin, end to end: encrypted round trips, what the raw
//! repository files give away (nothing about file names or contents), key
//! slots, wrong secrets, tampering, and the seal that keeps encrypted and
//! plain objects from mixing.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use obnam_test_support::{noise, run, BackupWorld, Run, TestEnv};

/// Cheap Argon2id costs, so that each run unlocks in milliseconds. The
/// costs are recorded in each slot; these tests do not measure them.
const CHEAP_KDF: [&str; 4] = ["--kdf-memory", "256KiB", "--kdf-iterations", "1"];

/// Run obnam on the world's repository with a passphrase in the environment.
fn with_pass(w: &BackupWorld, pass: &str, args: &[&str]) -> Run {
    run(w
        .env
        .obnam()
        .env("OBNAM_PASSPHRASE", pass)
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client])
        .args(CHEAP_KDF)
        .args(args))
}

fn backup(w: &BackupWorld, pass: &str, extra: &[&str]) -> Run {
    let data = w.data.to_str().unwrap().to_string();
    let mut args = vec!["backup", data.as_str()];
    args.extend_from_slice(extra);
    with_pass(w, pass, &args)
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = fs::read(&p).unwrap();
                out.insert(p, bytes);
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn sha256_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(data)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Restore the latest generation to `to` and compare the data folder.
fn restore_and_compare(w: &BackupWorld, pass: &str, to: &Path) {
    with_pass(w, pass, &["restore", "--to", to.to_str().unwrap()]).ok();
    let restored = to.join(w.data.strip_prefix("/").unwrap());
    let want = files_under(&w.data);
    let got = files_under(&restored);
    assert_eq!(want.len(), got.len());
    for (path, bytes) in want {
        let rel = path.strip_prefix(&w.data).unwrap();
        assert_eq!(
            got.get(&restored.join(rel)),
            Some(&bytes),
            "{}",
            rel.display()
        );
    }
}

#[test]
fn an_encrypted_repository_round_trips_and_its_files_give_nothing_away() {
    let w = BackupWorld::new("distinctive-client-name-41");
    let mut secrets: Vec<Vec<u8>> = vec![w.client.as_bytes().to_vec()];
    for i in 0..5 {
        let name = format!("quarterly-report-{i}-confidential.txt");
        let text = format!("The merger with Initech closes on day {i}. ").repeat(2000);
        w.file(&format!("docs/{name}"), text.as_bytes());
        secrets.push(name.into_bytes());
        // Whole-file SHA-256 (one chunk each) as hex and as bytes: with
        // unkeyed tokens these would show in stored ids.
        let sha = sha256_hex(text.as_bytes());
        secrets.push(sha.clone().into_bytes());
        secrets.push(hex_to_bytes(&sha));
        secrets.push(text.as_bytes()[1000..1064].to_vec());
    }
    let blob = noise(3 << 20, 7);
    w.file("media/holiday-video-secret.bin", &blob);
    secrets.push(b"holiday-video-secret".to_vec());
    secrets.push(blob[1 << 20..(1 << 20) + 64].to_vec());

    backup(&w, "hunter2", &["--encrypt"]).ok();
    let config = fs::read_to_string(w.repo.join("config")).unwrap();
    assert!(config.contains("\"filter\": \"encrypt\""), "{config}");
    assert!(config.contains("\"version\": 4"), "{config}");
    assert!(config.contains("\"tokens\": \"blake3\""), "{config}");

    for (path, bytes) in files_under(&w.repo) {
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(secret)
            );
            let name = path.strip_prefix(&w.repo).unwrap().to_string_lossy();
            assert!(
                !contains(name.as_bytes(), secret),
                "an object name gives away {:?}",
                String::from_utf8_lossy(secret)
            );
        }
    }

    let to = w.env.path().join("restored");
    restore_and_compare(&w, "hunter2", &to);
    // Dedup works under keyed tokens: an unchanged second backup stores
    // almost nothing.
    let before: usize = files_under(&w.repo).values().map(Vec::len).sum();
    let run = backup(&w, "hunter2", &[]).ok();
    assert!(run.stdout.contains(" 0 B new"), "{}", run.stdout);
    let after: usize = files_under(&w.repo).values().map(Vec::len).sum();
    assert!(after - before < 64 << 10, "{before} -> {after}");
    with_pass(&w, "hunter2", &["fsck", "--verify-data"]).ok();
}

fn hex_to_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_cipher_works_and_an_unknown_cipher_is_refused_before_anything_is_written() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"aes content");
    let run = backup(&w, "pw", &["--encrypt", "--cipher", "rot13"]).fails();
    assert!(
        run.stderr.contains(
            "--cipher: 'rot13' is not one of: auto, xaes-256-gcm, xchacha20-poly1305, \
             aes-256-gcm"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !w.repo.exists(),
        "a failed creation leaves no repository folder"
    );
    for cipher in ["xaes-256-gcm", "xchacha20-poly1305", "aes-256-gcm"] {
        let w = BackupWorld::new("c");
        w.file("a.txt", b"aes content");
        w.file("big.bin", &noise(300_000, 3));
        backup(&w, "pw", &["--encrypt", "--cipher", cipher]).ok();
        let config = fs::read_to_string(w.repo.join("config")).unwrap();
        assert!(config.contains(&format!("\"{cipher}\"")), "{config}");
        restore_and_compare(&w, "pw", &w.env.path().join("out"));
        with_pass(&w, "pw", &["fsck", "--verify-data"]).ok();
    }
}

/// A config naming another cipher than the repository's key slots were
/// made with was changed: refused on a machine that never used the
/// repository too, which has no record of the config to go by. Found by
/// an outside review: such a machine's backup wrote a generation neither
/// cipher reads back, exit 0, and called the sound ones damaged, advising
/// `obnam forget` of them.
#[test]
fn a_config_naming_another_cipher_is_refused_on_a_new_machine_too() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "pw", &["--encrypt", "--cipher", "xaes-256-gcm"]).ok();
    let config = w.repo.join("config");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(&config, text.replace("xaes-256-gcm", "xchacha20-poly1305")).unwrap();
    let before = files_under(&w.repo);
    let fresh = w.env.path().join("new-machine-state");
    for args in [&["backup", w.data.to_str().unwrap()][..], &["generations"]] {
        let run = run(w
            .env
            .obnam()
            .env("OBNAM_PASSPHRASE", "pw")
            .env("XDG_STATE_HOME", &fresh)
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", &w.client])
            .args(args))
        .fails();
        assert!(
            run.stderr
                .contains("config names cipher xchacha20-poly1305, but its key slot")
                && run.stderr.contains("was made with xaes-256-gcm")
                && !run.stderr.contains("forget"),
            "{args:?}: {run:#?}"
        );
    }
    let after = files_under(&w.repo);
    let written: Vec<_> = after
        .keys()
        .filter(|p| !before.contains_key(*p) && !p.starts_with(w.repo.join("locks")))
        .collect();
    assert!(written.is_empty(), "{written:?}");
}

/// A new encrypted repository gets XAES-256-GCM where the processor has
/// instructions for AES and GCM, XChaCha20-Poly1305 elsewhere: the two
/// ciphers whose random nonces are safe for any number of objects.
#[test]
fn a_new_encrypted_repository_gets_the_faster_safe_cipher_of_this_processor() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "pw", &["--encrypt"]).ok();
    let config = fs::read_to_string(w.repo.join("config")).unwrap();
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let aes = flags.contains(&"aes") && (flags.contains(&"pclmulqdq") || flags.contains(&"pmull"));
    let want = if aes {
        "xaes-256-gcm"
    } else {
        "xchacha20-poly1305"
    };
    let recorded = |name: &str| config.contains(&format!("\"{name}\""));
    assert!(recorded(want), "{config}");
    let other = if aes {
        "xchacha20-poly1305"
    } else {
        "xaes-256-gcm"
    };
    assert!(!recorded(other), "{config}");
    restore_and_compare(&w, "pw", &w.env.path().join("out"));
}

#[test]
fn a_wrong_or_missing_passphrase_is_refused_and_nothing_is_written() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"some content");
    backup(&w, "right", &["--encrypt"]).ok();
    let before = files_under(&w.repo);
    let run = backup(&w, "wrong", &[]).fails().no_rust_panic();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: cannot open repository {}: the passphrase from OBNAM_PASSPHRASE does not open any of its 1 passphrase slot(s); if it is the right passphrase, the repository's config or key slots were changed since they were made (each slot is sealed to the config's id)\n",
            w.repo.display()
        )
    );
    let run = with_pass(&w, "wrong", &["restore", "--to", "/tmp/never-written"]).fails();
    assert!(run
        .stderr
        .contains("does not open any of its 1 passphrase slot(s)"));
    assert!(!Path::new("/tmp/never-written").exists());
    // No passphrase at all, and no terminal to ask on.
    let run = w.obnam(&["ls"]).fails();
    assert!(
        run.stderr.contains(&format!(
            "repository {} is encrypted: give its passphrase in OBNAM_PASSPHRASE",
            w.repo.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        files_under(&w.repo),
        before,
        "a refused run changed the repository"
    );
    // A passphrase file works (its one trailing newline is not part of it).
    let file = w.env.write("pass.txt", "right\n");
    w.obnam(&["ls", "--passphrase-file", file.to_str().unwrap()])
        .ok();
}

#[test]
fn without_the_encryption_plugin_the_missing_filter_error_names_it() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "pw", &["--encrypt"]).ok();
    let dir = w.env.path().join("some-plugins");
    fs::create_dir(&dir).unwrap();
    for name in ["backup", "dedup", "restore"] {
        let lib = format!("libobnam_plugin_{name}.so");
        fs::copy(obnam_test_support::target_dir().join(&lib), dir.join(&lib)).unwrap();
    }
    let run = run(w
        .env
        .obnam()
        .env("OBNAM_PASSPHRASE", "pw")
        .args(["--no-bundled-plugins", "--plugin-dir"])
        .arg(&dir)
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", "c", "ls"]))
    .fails();
    assert_eq!(
        run.stderr,
        format!(
            "ERROR: repository {} is encrypted: it needs the 'encrypt' filter; no loaded plugin provides it (is the plugin of that filter not loaded, or was the config changed?)\n",
            w.repo.display()
        )
    );
}

#[test]
fn encryption_is_chosen_at_creation_and_never_mixed_into_a_plain_repository() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"plain content");
    w.backup(&[]).ok();
    let before = files_under(&w.repo);
    let run = backup(&w, "pw", &["--encrypt"]).fails();
    assert!(
        run.stderr.contains(&format!(
            "repository {} is not encrypted; --encrypt applies only when a repository is created",
            w.repo.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(files_under(&w.repo), before);
    // The key commands say so too.
    let run = w.obnam(&["key", "list"]).fails();
    assert!(
        run.stderr.contains("is not encrypted; it has no keys"),
        "{}",
        run.stderr
    );
    // And an encrypted repository refuses an unsealed object slipped in.
    let e = BackupWorld::new("c");
    e.file("a.txt", b"x");
    backup(&e, "pw", &["--encrypt"]).ok();
    let client = fs::read_dir(e.repo.join("clients"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::write(&client, b"\x00{\"name\":\"intruder\",\"created\":0}").unwrap();
    // Left out of the listing as a damaged record, and named.
    let run = with_pass(&e, "pw", &["clients"]).ok();
    assert!(!run.stdout.contains("intruder"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("is corrupt: it is not sealed with the repository's 'encrypt' filter"),
        "{}",
        run.stderr
    );
    with_pass(&e, "pw", &["fsck"]).fails();
}

/// A repository whose config was lost (deleted, a sync tool, a store's
/// glitch) is not "created" again over its objects: the next backup made
/// a new repository there, deleted every key slot as a crashed
/// creation's, and exited 0; with the config put back, every earlier
/// backup was unreadable for good.
#[test]
fn a_lost_config_is_never_replaced_by_a_new_repository() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"precious");
    backup(&w, "pw", &["--encrypt"]).ok();
    let saved = w.env.path().join("config.saved");
    fs::rename(w.repo.join("config"), &saved).unwrap();
    let before = files_under(&w.repo);
    for extra in [&[][..], &["--encrypt"][..]] {
        let run = backup(&w, "pw", extra).fails().no_rust_panic();
        assert!(
            run.stderr.contains(&format!(
                "ERROR: {} has no config object, but holds a repository's objects (clients/ is \
                 not empty): its config was deleted or lost. obnam will not make a new \
                 repository over it",
                w.repo.display()
            )),
            "{run:#?}"
        );
        assert!(!run.stderr.contains("created a new repository"), "{run:#?}");
        assert_eq!(files_under(&w.repo), before, "{extra:?}");
    }
    // Readers say the same, not "not an obnam repository".
    let run = with_pass(&w, "pw", &["generations"]).fails();
    assert!(
        run.stderr.contains("its config was deleted or lost"),
        "{run:#?}"
    );
    // With the config back, every backup is there.
    fs::rename(&saved, w.repo.join("config")).unwrap();
    restore_and_compare(&w, "pw", &w.env.path().join("restored"));
}

/// A config replaced behind this machine's back is refused: an attacker
/// who can write the repository but holds no key removed the key slots
/// and wrote a plain config, and the owner's next backup stored every
/// file in the clear, exit 0; another cipher named made every earlier
/// object "damaged" and the next backup's generation unrestorable.
#[test]
fn a_config_replaced_behind_this_machines_back_is_refused() {
    let w = BackupWorld::new("c");
    w.file("secret.txt", b"the plans");
    backup(&w, "pw", &["--encrypt"]).ok();
    let config = fs::read_to_string(w.repo.join("config")).unwrap();
    let sealed = config.clone();
    // Another cipher named, by an edit.
    let cipher = serde_json::from_str::<serde_json::Value>(&config).unwrap()["seal"]["cipher"]
        .as_str()
        .unwrap()
        .to_string();
    let swapped = match cipher.as_str() {
        "aes-256-gcm" => "xaes-256-gcm",
        _ => "aes-256-gcm",
    };
    let edited = config.replace(&format!("\"{cipher}\""), &format!("\"{swapped}\""));
    assert_ne!(edited, config);
    fs::write(w.repo.join("config"), &edited).unwrap();
    let before = files_under(&w.repo);
    let run = backup(&w, "pw", &[]).fails().no_rust_panic();
    assert!(
        run.stderr.contains(&format!(
            "ERROR: the config of repository {} is not the one this machine used before (its \
             settings differ)",
            w.repo.display()
        )),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains("/.local/state/obnam/repositories/"),
        "{run:#?}"
    );
    assert_eq!(files_under(&w.repo), before);
    // A plain config, and no key slots: the downgrade.
    let mut plain: serde_json::Value = serde_json::from_str(&sealed).unwrap();
    let object = plain.as_object_mut().unwrap();
    object.remove("seal");
    fs::write(w.repo.join("config"), plain.to_string()).unwrap();
    fs::remove_dir_all(w.repo.join("keys")).unwrap();
    let before = files_under(&w.repo);
    let run = w.backup(&[]).fails().no_rust_panic();
    assert!(
        run.stderr.contains("(it was encrypted; now it is not)"),
        "{run:#?}"
    );
    assert_eq!(files_under(&w.repo), before);
    assert!(
        !files_under(&w.repo)
            .values()
            .any(|bytes| contains(bytes, b"the plans")),
        "plain text in the repository"
    );
    // Another machine (another HOME) has no record: it trusts what it
    // finds the first time, as ssh does a host key.
    let other = TestEnv::new();
    let first = obnam_test_support::run(other.obnam().arg("--repository").arg(&w.repo).args([
        "--client-name",
        "c",
        "generations",
    ]));
    assert!(
        !first.stderr.contains("not the one this machine"),
        "{first:#?}"
    );
}

/// A run with neither XDG_STATE_HOME nor HOME keeps no record, and says
/// so (it said nothing, and the protection above was silently gone).
#[test]
fn a_run_with_nowhere_to_keep_records_says_so() {
    let w = BackupWorld::new("c");
    w.file("secret.txt", b"the plans");
    let run = obnam_test_support::run(
        w.env
            .obnam()
            .env_remove("HOME")
            .env_remove("XDG_STATE_HOME")
            .env("OBNAM_PASSPHRASE", "pw")
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c"])
            .args(CHEAP_KDF)
            .args(["backup", "--encrypt", w.data.to_str().unwrap()]),
    )
    .ok();
    let said = "WARNING: neither XDG_STATE_HOME nor HOME names an absolute folder, so this \
                machine keeps no record of the repositories it uses";
    assert_eq!(run.stderr.matches(said).count(), 1, "{run:#?}");
    // With a state folder, no word of it.
    let run = backup(&w, "pw", &[]).ok();
    assert!(!run.stderr.contains(said), "{run:#?}");
}

/// An encrypted repository wiped, or wiped but for its key slots, is not
/// made anew by the next backup of a machine that used it (the key slot
/// was deleted and every file stored readable, exit 0), with or without
/// `--encrypt`: not without the owner's word, the record removed. Nor is
/// one named by a link that someone pointed at a plain repository of
/// theirs (its real path had no record, and it was trusted as new).
#[test]
fn an_encrypted_repository_wiped_or_swapped_is_not_made_anew_in_the_clear() {
    let w = BackupWorld::new("c");
    w.file("secret.txt", b"the plans");
    backup(&w, "pw", &["--encrypt"]).ok();
    let records = w.env.home().join(".local/state/obnam/repositories");
    for keep_keys in [true, false] {
        for entry in fs::read_dir(&w.repo).unwrap() {
            let path = entry.unwrap().path();
            if !(keep_keys && path.ends_with("keys")) {
                fs::remove_dir_all(&path)
                    .or_else(|_| fs::remove_file(&path))
                    .unwrap();
            }
        }
        let before = files_under(&w.repo);
        for encrypt in [false, true] {
            let run = match encrypt {
                false => w.backup(&[]),
                true => backup(&w, "pw", &["--encrypt"]),
            }
            .fails()
            .no_rust_panic();
            assert!(
                run.stderr.contains(&format!(
                    "this machine used an encrypted repository at {} (id ",
                    w.repo.display()
                )) && run.stderr.contains("and there is none there now")
                    && run.stderr.contains(&records.display().to_string()),
                "{run:#?}"
            );
            assert_eq!(files_under(&w.repo), before, "keys kept: {keep_keys}");
        }
    }
    // The owner's word: the record removed.
    fs::remove_dir_all(&records).unwrap();
    fs::remove_dir_all(&w.repo).unwrap();
    backup(&w, "pw", &["--encrypt"]).ok();
    // The same folder by other names: one repository.
    let other = |path: &Path| {
        obnam_test_support::run(
            w.env
                .obnam()
                .env("OBNAM_PASSPHRASE", "pw")
                .arg("--repository")
                .arg(path)
                .args(["--client-name", "c", "backup"])
                .arg(&w.data),
        )
    };
    let link = w.env.path().join("link-to-repo");
    std::os::unix::fs::symlink(&w.repo, &link).unwrap();
    let dotted = w.repo.join("..").join(w.repo.file_name().unwrap());
    let slashed = format!("{}/", w.repo.display());
    for path in [link.as_path(), dotted.as_path(), Path::new(&slashed)] {
        other(path).ok();
    }
    // The link and the folder.
    assert_eq!(fs::read_dir(&records).unwrap().count(), 2);
    // Someone who can write where the link is points it at a plain
    // repository of theirs.
    let evil = w.env.path().join("evil");
    let theirs = TestEnv::new();
    obnam_test_support::run(
        theirs
            .obnam()
            .arg("--repository")
            .arg(&evil)
            .args(["--client-name", "c", "backup"])
            .arg(&w.data),
    )
    .ok();
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&evil, &link).unwrap();
    let before = files_under(&evil);
    let run = other(&link).fails().no_rust_panic();
    assert!(
        run.stderr.contains(&format!(
            "the config of repository {} is not the one this machine used before (it was \
             encrypted; now it is not)",
            link.display()
        )),
        "{run:#?}"
    );
    assert_eq!(files_under(&evil), before);
}

/// A repository this machine used that is not there (its disk not
/// mounted) is not made anew in its place: the backup went into the empty
/// mount point, exit 0, and the record was replaced, so that the real
/// repository, back, was refused as an attack.
#[test]
fn a_repository_not_there_is_not_made_anew_where_this_machine_used_one() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"on the disk");
    w.backup(&[]).ok();
    let away = w.env.path().join("unmounted");
    fs::rename(&w.repo, &away).unwrap();
    fs::create_dir(&w.repo).unwrap();
    let run = w.backup(&["--quiet"]).fails().no_rust_panic();
    assert!(
        run.stderr.contains(&format!(
            "ERROR: this machine used an unencrypted repository at {} (id ",
            w.repo.display()
        )) && run
            .stderr
            .contains("if it is on a disk or share that is not mounted, mount it"),
        "{run:#?}"
    );
    assert!(files_under(&w.repo).is_empty());
    fs::remove_dir(&w.repo).unwrap();
    fs::rename(&away, &w.repo).unwrap();
    w.backup(&[]).ok();
    let gens = w.obnam(&["generations"]).ok();
    assert_eq!(gens.stdout.lines().count(), 2, "{}", gens.stdout);
}

#[test]
fn key_slots_can_be_added_listed_removed_and_replaced() {
    let w = BackupWorld::new("laptop");
    w.file("a.txt", b"content under several keys");
    backup(&w, "first", &["--encrypt"]).ok();

    let add = |pass: &str, new: &str, extra: &[&str]| {
        let mut args = vec!["key", "add"];
        args.extend_from_slice(extra);
        run(w
            .env
            .obnam()
            .env("OBNAM_PASSPHRASE", pass)
            .env("OBNAM_NEW_PASSPHRASE", new)
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "laptop"])
            .args(CHEAP_KDF)
            .args(&args))
    };
    let out = add("first", "second", &["--key-label", "spare"]).ok();
    assert!(out.stdout.starts_with("added key slot "), "{}", out.stdout);
    let second_id = out.stdout.trim().rsplit(' ').next().unwrap().to_string();
    // A wrong current passphrase adds nothing.
    add("nope", "third", &[]).fails();

    let list = with_pass(&w, "second", &["key", "list"]).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", list.stdout);
    let opened: Vec<&&str> = lines.iter().filter(|l| l.starts_with('*')).collect();
    assert_eq!(opened.len(), 1);
    assert!(opened[0].contains(&second_id) && opened[0].contains("\"spare\""));
    assert!(list.stdout.contains("added by laptop@"));
    let first_id = lines
        .iter()
        .find(|l| !l.contains(&second_id))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // Both passphrases open it; the JSON listing has both slots.
    with_pass(&w, "first", &["ls"]).ok();
    let json = with_pass(&w, "second", &["key", "list", "--output-format", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);

    // Remove the first slot: its passphrase no longer opens the repository.
    let out = with_pass(&w, "second", &["key", "remove", &first_id]).ok();
    assert_eq!(out.stdout, format!("removed key slot {first_id}\n"));
    with_pass(&w, "first", &["ls"]).fails();
    // The last slot is never removed; an unknown one is named.
    let run = with_pass(&w, "second", &["key", "remove", &second_id]).fails();
    assert!(
        run.stderr.contains(&format!(
            "refusing to remove key slot {second_id}: it is the last one"
        )),
        "{}",
        run.stderr
    );
    let run = with_pass(&w, "second", &["key", "remove", "feedface"]).fails();
    assert!(
        run.stderr.contains("has no key slot feedface"),
        "{}",
        run.stderr
    );

    // passwd replaces the slot that opened the repository.
    let out = run_env(
        &w,
        &[
            ("OBNAM_PASSPHRASE", "second"),
            ("OBNAM_NEW_PASSPHRASE", "third"),
        ],
        &["key", "passwd"],
    )
    .ok();
    assert!(
        out.stdout
            .starts_with(&format!("replaced key slot {second_id} by ")),
        "{}",
        out.stdout
    );
    with_pass(&w, "second", &["ls"]).fails();
    with_pass(&w, "third", &["ls"]).ok();

    // A key-file slot: the file is created (0600) and then opens the repository.
    let key_file = w.env.path().join("repo.key");
    let kf = key_file.to_str().unwrap();
    add("third", "unused", &["--new-key-file", kf]).ok();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    w.obnam(&["ls", "--key-file", kf]).ok();
    let list = w.obnam(&["key", "list", "--key-file", kf]).ok();
    assert!(list.stdout.contains("key-file"), "{}", list.stdout);
    let short = w.env.write("short.key", "too short");
    let run = w
        .obnam(&["ls", "--key-file", short.to_str().unwrap()])
        .fails();
    assert!(
        run.stderr.contains("a key file needs at least 32 bytes"),
        "{}",
        run.stderr
    );

    // client-keys: every client, and the slots that open the repository.
    let other = BackupWorld {
        env: TestEnv::new(),
        repo: w.repo.clone(),
        data: w.data.clone(),
        client: "desktop".into(),
    };
    backup(&other, "third", &[]).ok();
    let ck = with_pass(&w, "third", &["client-keys"]).ok();
    assert!(ck.stdout.starts_with("desktop: "), "{}", ck.stdout);
    assert!(ck.stdout.contains("\nlaptop: "), "{}", ck.stdout);
    let json = with_pass(&w, "third", &["client-keys", "--output-format", "json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["clients"], serde_json::json!(["desktop", "laptop"]));
    assert_eq!(v["key_slots"].as_array().unwrap().len(), 2);
    assert_eq!(v["encrypted"], true);
    // Removing a client leaves the key slots, which open the repository
    // for every client: remove-client says so, and how to revoke one.
    let run = with_pass(&w, "third", &["remove-client", "desktop"]).ok();
    assert!(
        run.stdout.contains("removed client desktop")
            && run.stdout.contains("the repository's key slots stay")
            && run.stdout.contains("'obnam key remove ID' revokes one"),
        "{run:#?}"
    );
}

fn run_env(w: &BackupWorld, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = w.env.obnam();
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd
        .arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client])
        .args(CHEAP_KDF)
        .args(args))
}

/// A world of five files of distinct random data, each in a pack of its
/// own (the smallest pack size, files bigger than it), backed up encrypted.
fn damaged_world() -> (BackupWorld, Vec<PathBuf>) {
    let w = BackupWorld::new("c");
    for i in 0..5 {
        w.file(
            &format!("f{i}.bin"),
            &noise(100_000 + i * 1000, 100 + i as u64),
        );
    }
    backup(&w, "pw", &["--encrypt", "--pack-size", "64KiB"]).ok();
    // The data packs are the big ones; tree packs are small.
    let mut packs: Vec<(u64, PathBuf)> = files_under(&w.repo.join("packs"))
        .into_iter()
        .map(|(p, b)| (b.len() as u64, p))
        .filter(|(len, _)| *len > 90_000)
        .collect();
    packs.sort();
    assert_eq!(packs.len(), 5, "one pack per file");
    (w, packs.into_iter().map(|(_, p)| p).collect())
}

/// Restore after damage: the restore fails naming the object, no file is
/// restored with wrong contents, and exactly `intact` files restore.
fn restore_after_damage(w: &BackupWorld, intact: usize, expect: &str) {
    let to = w.env.path().join("restored");
    let run = with_pass(w, "pw", &["restore", "--to", to.to_str().unwrap()])
        .fails()
        .no_rust_panic();
    assert!(run.stderr.contains(expect), "{}", run.stderr);
    assert!(
        run.stderr.contains("chunk"),
        "the error names the object: {}",
        run.stderr
    );
    let restored = to.join(w.data.strip_prefix("/").unwrap());
    let mut good = 0;
    for (path, bytes) in files_under(&w.data) {
        let rel = path.strip_prefix(&w.data).unwrap();
        if let Ok(got) = fs::read(restored.join(rel)) {
            assert_eq!(
                got,
                bytes,
                "{} was restored with wrong contents",
                rel.display()
            );
            good += 1;
        }
    }
    assert_eq!(good, intact, "{}", run.stderr);
}

#[test]
fn a_flipped_byte_in_a_pack_is_caught_and_the_other_files_restore() {
    let (w, packs) = damaged_world();
    let mut bytes = fs::read(&packs[2]).unwrap();
    bytes[5000] ^= 0x20;
    fs::write(&packs[2], bytes).unwrap();
    restore_after_damage(&w, 4, "cannot be decrypted: it fails authentication");
    let run = with_pass(&w, "pw", &["fsck", "--verify-data"]).fails();
    assert!(
        run.stderr.contains("fails authentication") || run.stdout.contains("fails authentication")
    );
}

#[test]
fn a_truncated_pack_is_caught_and_the_other_files_restore() {
    let (w, packs) = damaged_world();
    let bytes = fs::read(&packs[0]).unwrap();
    fs::write(&packs[0], &bytes[..bytes.len() / 2]).unwrap();
    restore_after_damage(&w, 4, "");
}

#[test]
fn swapped_packs_are_caught_and_the_other_files_restore() {
    let (w, packs) = damaged_world();
    let a = fs::read(&packs[1]).unwrap();
    let b = fs::read(&packs[3]).unwrap();
    fs::write(&packs[1], &b).unwrap();
    fs::write(&packs[3], &a).unwrap();
    restore_after_damage(&w, 3, "");
}

/// Run obnam under `script` with cheap passphrase slots, typing `input`.
fn on_terminal(w: &BackupWorld, input: &str, args: &str) -> Option<Run> {
    w.on_terminal(input, &format!("--kdf-memory 256KiB {args}"))
}

#[test]
fn the_passphrase_is_asked_for_on_a_terminal() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"typed");
    let data = w.data.display().to_string();
    let Some(run) = on_terminal(&w, "sesame\nsesame\n", &format!("--encrypt backup {data}")) else {
        return;
    };
    assert!(run.stdout.contains("New passphrase for"), "{}", run.stdout);
    assert!(
        run.stdout.contains("The same passphrase again"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Backed up 1 file "), "{}", run.stdout);
    with_pass(&w, "sesame", &["ls"]).ok();
    let run = on_terminal(&w, "open sesame\n", "ls").unwrap();
    assert!(run.stdout.contains("Passphrase for"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("does not open any of its 1 passphrase slot(s)"),
        "{}",
        run.stdout
    );
    // Two different answers create nothing.
    let v = BackupWorld::new("c");
    v.file("a.txt", b"typed");
    let data = v.data.display().to_string();
    let run = on_terminal(&v, "one\ntwo\n", &format!("--encrypt backup {data}")).unwrap();
    assert!(
        run.stdout.contains("the two passphrases differ"),
        "{}",
        run.stdout
    );
    assert!(!v.repo.exists());
}

/// The question comes before any progress line, which would be drawn
/// over it (and over what is typed), leaving a progress bar stuck at 0%.
#[test]
fn no_progress_line_is_drawn_before_the_passphrase_is_asked() {
    let w = BackupWorld::new("c");
    w.file("a.txt", &noise(300_000, 1));
    let data = w.data.display().to_string();
    for (input, args, question) in [
        (
            "sesame\nsesame\n",
            format!("--encrypt backup {data}"),
            "New passphrase for",
        ),
        ("sesame\n", format!("backup {data}"), "Passphrase for"),
    ] {
        let Some(run) = on_terminal(&w, input, &args) else {
            return;
        };
        let asked = run
            .stdout
            .find(question)
            .unwrap_or_else(|| panic!("not asked: {run:#?}"));
        assert!(
            !run.stdout[..asked].contains("\x1b[K"),
            "a progress line before the question: {:?}",
            &run.stdout[..asked + question.len()]
        );
        assert!(run.stdout.contains("Backed up "), "{run:#?}");
    }
}

#[test]
fn key_add_remove_and_passwd_report_in_json() {
    let w = BackupWorld::new("laptop");
    w.file("a.txt", b"content");
    backup(&w, "first", &["--encrypt"]).ok();
    let key = |pass: &str, new: &str, args: &[&str]| {
        run(w
            .env
            .obnam()
            .env("OBNAM_PASSPHRASE", pass)
            .env("OBNAM_NEW_PASSPHRASE", new)
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "laptop", "--output-format", "json"])
            .args(CHEAP_KDF)
            .arg("key")
            .args(args))
        .ok()
    };
    let slots = |pass: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&key(pass, "", &["list"]).stdout).unwrap();
        // Every time in JSON also in nanoseconds.
        for slot in v.as_array().unwrap() {
            assert!(
                slot["created_ns"].as_i64().unwrap() > 1_700_000_000_000_000_000,
                "{slot}"
            );
        }
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let first = slots("first");
    assert_eq!(first.len(), 1);
    let added: serde_json::Value =
        serde_json::from_str(&key("first", "second", &["add"]).stdout).unwrap();
    let second = added["added"].as_str().unwrap().to_string();
    assert_eq!(slots("second").len(), 2);
    let replaced: serde_json::Value =
        serde_json::from_str(&key("second", "third", &["passwd"]).stdout).unwrap();
    assert_eq!(replaced["removed"], second.as_str());
    let third = replaced["added"].as_str().unwrap().to_string();
    let removed: serde_json::Value =
        serde_json::from_str(&key("third", "", &["remove", &first[0]]).stdout).unwrap();
    assert_eq!(removed, serde_json::json!({ "removed": first[0] }));
    assert_eq!(slots("third"), [third]);
}

/// The ids of the repository's key slots, from its `keys/` folder.
fn slot_ids(w: &BackupWorld) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(w.repo.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    ids
}

/// Add a slot for passphrase `new`, opening with `pass`; its id.
fn add_slot(w: &BackupWorld, pass: &str, new: &str) -> String {
    let out = run_env(
        w,
        &[("OBNAM_PASSPHRASE", pass), ("OBNAM_NEW_PASSPHRASE", new)],
        &["key", "add"],
    )
    .ok();
    out.stdout.trim().rsplit(' ').next().unwrap().to_string()
}

// Found by an outside review: `key remove` counted slots, not slots that
// can be read, so it removed the one working slot next to a damaged one.
#[test]
fn key_remove_leaves_at_least_one_slot_that_can_be_read() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "aaa", &["--encrypt"]).ok();
    let a = slot_ids(&w).remove(0);
    let b = add_slot(&w, "aaa", "bbb");
    let c = add_slot(&w, "aaa", "ccc");
    // B damaged (cut short); C asks for more Argon2id memory than this
    // obnam accepts, so it cannot be used either.
    let b_path = w.repo.join("keys").join(&b);
    let text = fs::read(&b_path).unwrap();
    fs::write(&b_path, &text[..100]).unwrap();
    let c_path = w.repo.join("keys").join(&c);
    let mut slot: serde_json::Value = serde_json::from_slice(&fs::read(&c_path).unwrap()).unwrap();
    slot["kdf"]["memory_kib"] = (8u64 << 20).into();
    fs::write(&c_path, slot.to_string()).unwrap();
    let list = with_pass(&w, "aaa", &["key", "list"]).ok();
    assert!(
        list.stdout
            .contains(&format!("{b}  damaged (cannot be read)")),
        "{}",
        list.stdout
    );

    let run = with_pass(&w, "aaa", &["key", "remove", &a]).fails();
    assert!(
        run.stderr.contains(&format!(
            "refusing to remove key slot {a}: no other key slot can be read"
        )) && run.stderr.contains("nothing was removed")
            && run.stderr.contains(&b)
            && run.stderr.contains(&c),
        "{}",
        run.stderr
    );
    assert_eq!(slot_ids(&w).len(), 3);
    with_pass(&w, "aaa", &["ls"]).ok();
    // The unusable slots themselves may go: A still opens the repository.
    with_pass(&w, "aaa", &["key", "remove", &b]).ok();
    with_pass(&w, "aaa", &["key", "remove", &c]).ok();
    // passwd next to a damaged slot replaces A by a slot that opens.
    let d = add_slot(&w, "aaa", "ddd");
    fs::write(w.repo.join("keys").join(&d), b"{").unwrap();
    run_env(
        &w,
        &[("OBNAM_PASSPHRASE", "aaa"), ("OBNAM_NEW_PASSPHRASE", "eee")],
        &["key", "passwd"],
    )
    .ok();
    with_pass(&w, "eee", &["ls"]).ok();
    with_pass(&w, "aaa", &["ls"]).fails();
}

/// A passphrase change leaves no slot the old passphrase opens. Found by
/// an outside review: `key passwd` removed only the slot that opened the
/// repository, so a second slot of the old passphrase (added twice, or
/// left by a `key passwd` stopped between its add and its removal and
/// then run again) kept it working after a change said to have replaced
/// it. `key add` of a passphrase that opens a slot already adds nothing.
#[test]
fn a_passphrase_change_leaves_no_slot_of_the_old_passphrase() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "old", &["--encrypt"]).ok();
    let refused = run_env(
        &w,
        &[("OBNAM_PASSPHRASE", "old"), ("OBNAM_NEW_PASSPHRASE", "old")],
        &["key", "add"],
    )
    .fails();
    assert!(refused.stderr.contains("opens key slot"), "{refused:#?}");
    assert_eq!(slot_ids(&w).len(), 1);

    // A change stopped after its add (the crash limit ends the run before
    // the removal), then run again as a user would.
    let passwd = |crash: &[&str]| {
        let mut args = vec!["key", "passwd"];
        args.extend_from_slice(crash);
        run_env(
            &w,
            &[("OBNAM_PASSPHRASE", "old"), ("OBNAM_NEW_PASSPHRASE", "new")],
            &args,
        )
    };
    let stopped = passwd(&["--crash-limit", "2"]);
    assert_eq!(stopped.code, 75, "{stopped:#?}");
    assert_eq!(slot_ids(&w).len(), 2, "the new slot was added");
    passwd(&[]).ok();
    assert_eq!(slot_ids(&w).len(), 1, "one slot, of the new passphrase");
    with_pass(&w, "new", &["ls"]).ok();
    with_pass(&w, "old", &["ls"]).fails();
}

/// A slot that was not made with this repository's key (a slot file
/// copied from another repository) opens nothing here, so it does not
/// count as the slot left when another is removed. Found by an outside
/// review: `key remove` counted it, removed the only working slot, and
/// no one could open the repository again.
#[test]
fn a_slot_of_another_repository_does_not_count_as_the_one_left() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "mine", &["--encrypt"]).ok();
    let mine = slot_ids(&w).remove(0);
    let other = BackupWorld::new("c");
    other.file("b.txt", b"other");
    backup(&other, "theirs", &["--encrypt"]).ok();
    let theirs = slot_ids(&other).remove(0);
    fs::copy(
        other.repo.join("keys").join(&theirs),
        w.repo.join("keys").join(&theirs),
    )
    .unwrap();
    let run = with_pass(&w, "mine", &["key", "remove", &mine]).fails();
    assert!(
        run.stderr.contains(&format!(
            "refusing to remove key slot {mine}: no other key slot can be read ({theirs}: it \
             was not made with this repository's key)"
        )),
        "{run:#?}"
    );
    // Each run says so: such a slot costs every run that tries it a key
    // derivation (forty made an open take seconds, in silence).
    let run = with_pass(&w, "mine", &["ls"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "key slot(s) {theirs} of {} were not made with this repository's key",
            w.repo.display()
        )),
        "{run:#?}"
    );
    with_pass(&w, "mine", &["key", "remove", &theirs]).ok();
    assert_eq!(with_pass(&w, "mine", &["ls"]).ok().stderr, "");
}

/// Slots are tried cheapest first. Found by an outside review: anyone who
/// can write to `keys/` could add slots at the most a KDF may cost, named
/// to come first, and every open then spent minutes on them.
#[test]
fn key_slots_are_tried_cheapest_first() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "aaa", &["--encrypt"]).ok();
    let a = slot_ids(&w).remove(0);
    let b = add_slot(&w, "aaa", "bbb");
    // B made dear (256 MiB, 2 passes) and named to come first.
    let mut slot: serde_json::Value =
        serde_json::from_slice(&fs::read(w.repo.join("keys").join(&b)).unwrap()).unwrap();
    slot["kdf"]["memory_kib"] = (256u64 << 10).into();
    slot["kdf"]["iterations"] = 2.into();
    fs::remove_file(w.repo.join("keys").join(&b)).unwrap();
    let junk = "0000-dear";
    assert!(junk < a.as_str());
    fs::write(w.repo.join("keys").join(junk), slot.to_string()).unwrap();
    let log = w.env.path().join("open.log");
    let log_arg = log.to_str().unwrap();
    with_pass(&w, "aaa", &["--log", log_arg, "--log-level", "debug", "ls"]).ok();
    let text = fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("trying key slot {a} ")), "{text}");
    assert!(
        !text.contains(&format!("trying key slot {junk} ")),
        "{text}"
    );
    // A wrong passphrase tries it too, last.
    with_pass(&w, "zzz", &["--log", log_arg, "--log-level", "debug", "ls"]).fails();
    let text = fs::read_to_string(&log).unwrap();
    let (first, dear) = (
        text.rfind(&format!("trying key slot {a} ")).unwrap(),
        text.rfind(&format!("trying key slot {junk} ")).unwrap(),
    );
    assert!(first < dear, "{text}");
}

/// How long a run that reads a secret may take before the test calls it
/// hung: far more than reading any sane passphrase or key file needs.
const SECRET_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

fn with_deadline(w: &BackupWorld, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = w.env.obnam();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("--repository")
        .arg(&w.repo)
        .args(["--client-name", &w.client])
        .args(CHEAP_KDF)
        .args(args);
    obnam_test_support::run_with_deadline(&mut cmd, SECRET_DEADLINE).no_rust_panic()
}

// Found by an outside review: `--passphrase-file /dev/zero` read 4.9 GB.
#[test]
fn passphrase_and_key_files_are_read_only_up_to_a_limit() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "pw", &["--encrypt"]).ok();
    let big = w.env.write("big.txt", vec![b'x'; 65537]);
    let big = big.to_str().unwrap();
    let pass = [("OBNAM_PASSPHRASE", "pw")];
    for (env, args, what, file) in [
        (
            &[][..],
            &["ls", "--passphrase-file", "/dev/zero"][..],
            "passphrase file",
            "/dev/zero",
        ),
        (
            &[][..],
            &["ls", "--passphrase-file", big][..],
            "passphrase file",
            big,
        ),
        (
            &[][..],
            &["ls", "--key-file", "/dev/zero"][..],
            "key file",
            "/dev/zero",
        ),
        (
            &pass[..],
            &["key", "add", "--new-passphrase-file", "/dev/zero"][..],
            "passphrase file",
            "/dev/zero",
        ),
        (
            &pass[..],
            &["key", "add", "--new-key-file", "/dev/zero"][..],
            "key file",
            "/dev/zero",
        ),
    ] {
        let run = with_deadline(&w, env, args).fails();
        assert!(
            run.stderr.contains(&format!(
                "{what} {file} holds more than 65536 bytes (64 KiB), the most a {what} may hold"
            )),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(slot_ids(&w).len(), 1, "nothing was added");
    // A passphrase file of exactly the limit is read (and is the wrong one).
    let most = w.env.write("most.txt", vec![b'x'; 65536]);
    let run = with_deadline(
        &w,
        &[],
        &["ls", "--passphrase-file", most.to_str().unwrap()],
    )
    .fails();
    assert!(run.stderr.contains("does not open any"), "{}", run.stderr);
}

// Found by an outside review: a key file whose trailing newline was lost
// no longer opened the repository.
#[test]
fn a_key_file_opens_whatever_its_line_ending() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    let kf = w.env.path().join("repo.key");
    let kf = kf.to_str().unwrap();
    w.backup(&["--encrypt", "--key-file", kf]).ok();
    let text = fs::read(kf).unwrap();
    assert_eq!(text.len(), 65);
    let bare = &text[..64];
    for (name, ending) in [
        ("bare.key", &b""[..]),
        ("crlf.key", b"\r\n"),
        ("two.key", b"\n\n"),
    ] {
        let path = w.env.write(name, [bare, ending].concat());
        w.obnam(&["ls", "--key-file", path.to_str().unwrap()]).ok();
    }
    // A key file of binary bytes without a newline, added to an existing
    // repository, opens it as it is and with a newline added.
    let binary = noise(40, 9);
    let bin = w.env.write("bin.key", &binary);
    w.obnam(&[
        "key",
        "add",
        "--key-file",
        kf,
        "--new-key-file",
        bin.to_str().unwrap(),
    ])
    .ok();
    w.obnam(&["ls", "--key-file", bin.to_str().unwrap()]).ok();
    let nl = w.env.write("bin-nl.key", [&binary[..], b"\n"].concat());
    w.obnam(&["ls", "--key-file", nl.to_str().unwrap()]).ok();
    // Anything else about the file still matters.
    let mut changed = [bare, b"\n"].concat();
    changed[10] = if changed[10] == b'a' { b'b' } else { b'a' };
    let other = w.env.write("other.key", &changed);
    w.obnam(&["ls", "--key-file", other.to_str().unwrap()])
        .fails();
}

// Found by an outside review: of two `key passwd` at once, the second
// added its slot and then failed because the first had removed the slot
// it was opened with, so two new passphrases opened the repository and
// one run said it had failed.
#[test]
fn key_passwd_changes_nothing_when_its_slot_was_removed_meanwhile() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "aaa", &["--encrypt"]).ok();
    let a = slot_ids(&w).remove(0);
    let b = add_slot(&w, "aaa", "bbb");
    let plugins = w.env.plugin_dir("test-plugins", &["repotest"]);
    // Hold a client lock so that passwd waits for its exclusive lock.
    let mut holder = obnam_test_support::spawn_holding_lock(
        w.env
            .obnam()
            .env("OBNAM_PASSPHRASE", "aaa")
            .arg("--plugin-dir")
            .arg(&plugins)
            .arg("--repository")
            .arg(&w.repo)
            .args(["repotest-lock", "other", "600"]),
    );
    let log = w.env.path().join("passwd.log");
    let mut passwd = w
        .env
        .obnam()
        .env("OBNAM_PASSPHRASE", "aaa")
        .env("OBNAM_NEW_PASSPHRASE", "ccc")
        .arg("--repository")
        .arg(&w.repo)
        .args([
            "--client-name",
            "c",
            "--lock-timeout",
            "300",
            "--log-level",
            "debug",
            "--log",
        ])
        .arg(&log)
        .args(CHEAP_KDF)
        .args(["key", "passwd"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(&format!("with key slot {a}"))
    {
        assert!(
            start.elapsed().as_secs() < 60,
            "passwd never opened the repository"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        passwd.try_wait().unwrap().is_none(),
        "passwd did not wait for the lock"
    );
    // Another run removes A meanwhile (as a `key passwd` opened with A would).
    fs::remove_file(w.repo.join("keys").join(&a)).unwrap();
    std::process::Command::new("kill")
        .args(["-INT", &holder.id().to_string()])
        .status()
        .unwrap();
    holder.wait().unwrap();
    let out = Run::from_output(passwd.wait_with_output().unwrap()).fails();
    assert!(
        out.stderr.contains(&format!(
            "key slot {a}, which opened the repository in this run, was removed by another run meanwhile; nothing was changed"
        )),
        "{out:#?}"
    );
    assert_eq!(slot_ids(&w), [b]);
    with_pass(&w, "ccc", &["ls"]).fails();
    with_pass(&w, "bbb", &["ls"]).ok();
}

// Found by an outside review: a passphrase or key file given when a
// repository is created without --encrypt was silently ignored.
#[test]
fn a_secret_given_for_a_plain_repository_is_warned_about() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    let pf = w.env.write("pass.txt", "pw\n");
    let pf = pf.to_str().unwrap();
    let kf = w.env.path().join("new.key");
    let kf = kf.to_str().unwrap();
    let data = w.data.to_str().unwrap();
    let run = run_env(
        &w,
        &[("OBNAM_PASSPHRASE", "pw")],
        &["backup", data, "--passphrase-file", pf, "--key-file", kf],
    )
    .ok();
    assert!(
        run.stderr.contains(&format!(
            "WARNING: repository {} was created without encryption: \
             --key-file {kf}, --passphrase-file {pf}, OBNAM_PASSPHRASE were ignored \
             (only --encrypt makes an encrypted repository)",
            w.repo.display()
        )),
        "{}",
        run.stderr
    );
    assert!(
        !Path::new(kf).exists(),
        "no key file is made for a plain repository"
    );
    // Later runs on the plain repository: a key or passphrase file named
    // on them is not used either.
    let run = w.obnam(&["ls", "--passphrase-file", pf]).ok();
    assert!(
        run.stderr.contains(&format!(
            "WARNING: repository {} is not encrypted: --passphrase-file {pf} was ignored",
            w.repo.display()
        )),
        "{}",
        run.stderr
    );
    let run = w.obnam(&["ls"]).ok();
    assert_eq!(run.stderr, "");
}

// Found by an outside review: with several sources of a passphrase, the
// error did not say which one was used.
#[test]
fn a_wrong_passphrase_error_names_where_the_passphrase_came_from() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "right", &["--encrypt"]).ok();
    let pf = w.env.write("pf1", "wrong\n");
    let pf = pf.to_str().unwrap();
    let run = with_pass(&w, "right-not", &["ls", "--passphrase-file", pf]).fails();
    assert!(
        run.stderr.contains(&format!(
            "the passphrase from --passphrase-file {pf} does not open any of its 1 passphrase slot(s)"
        )),
        "{}",
        run.stderr
    );
    let run = with_pass(&w, "wrong", &["ls"]).fails();
    assert!(
        run.stderr.contains(
            "the passphrase from OBNAM_PASSPHRASE does not open any of its 1 passphrase slot(s)"
        ),
        "{}",
        run.stderr
    );
}

// Found by an outside review: an unknown --cipher was an error only when
// a repository was created (exit 1), and ignored otherwise.
#[test]
fn an_unknown_cipher_is_a_usage_error_and_a_different_one_is_warned_about() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    let run = backup(&w, "pw", &["--encrypt", "--cipher", "foo"]);
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(!w.repo.exists());
    backup(&w, "pw", &["--encrypt", "--cipher", "xchacha20-poly1305"]).ok();
    for extra in [&["--cipher", "foo"][..], &["--encrypt", "--cipher", "foo"]] {
        let run = backup(&w, "pw", extra);
        assert_eq!(run.code, 2, "{run:#?}");
    }
    let run = backup(&w, "pw", &["--cipher", "aes-256-gcm"]).ok();
    assert!(
        run.stderr.contains(&format!(
            "WARNING: repository {} is encrypted with xchacha20-poly1305; \
             --cipher aes-256-gcm applies only to a new repository and was ignored",
            w.repo.display()
        )),
        "{}",
        run.stderr
    );
    for same in ["xchacha20-poly1305", "auto"] {
        let run = backup(&w, "pw", &["--cipher", same]).ok();
        assert!(!run.stderr.contains("WARNING"), "{}", run.stderr);
    }
    // A plain repository refuses an unknown cipher too.
    let p = BackupWorld::new("c");
    p.file("a.txt", b"content");
    p.backup(&[]).ok();
    assert_eq!(p.backup(&["--cipher", "foo"]).code, 2);
}

/// `--pretend` (`--dry-run`) with `key add`, `key remove` and `key passwd`
/// says what would be done and changes no key slot (the slots were
/// changed, and the old passphrase stopped working, after a "dry run").
#[test]
fn key_changes_with_pretend_change_nothing() {
    let w = BackupWorld::new("laptop");
    w.file("a.txt", b"content");
    backup(&w, "first", &["--encrypt"]).ok();
    let second = add_slot(&w, "first", "second");
    let before = slot_ids(&w);
    let key = |new: &str, args: &[&str]| {
        run_env(
            &w,
            &[("OBNAM_PASSPHRASE", "first"), ("OBNAM_NEW_PASSPHRASE", new)],
            args,
        )
        .ok()
    };
    let run = key("third", &["key", "add", "--pretend"]);
    assert_eq!(
        run.stdout,
        "would add a key slot for the passphrase from OBNAM_NEW_PASSPHRASE (--pretend: nothing \
         was changed)\n"
    );
    let run = key("", &["--dry-run", "key", "remove", &second]);
    assert_eq!(
        run.stdout,
        format!("would remove key slot {second} (--pretend: nothing was changed)\n")
    );
    let run = key(
        "third",
        &["key", "passwd", "--pretend", "--output-format", "json"],
    );
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["pretend"], true, "{v}");
    assert!(v["added"].is_null(), "{v}");
    // A new key file is not made by a pretend run.
    let keyfile = w.env.path().join("new.key");
    key(
        "",
        &[
            "key",
            "add",
            "--pretend",
            "--new-key-file",
            keyfile.to_str().unwrap(),
        ],
    );
    assert!(!keyfile.exists());
    assert_eq!(slot_ids(&w), before);
    // What a real run would refuse, a pretend run refuses too.
    let run = run_env(
        &w,
        &[("OBNAM_PASSPHRASE", "first")],
        &["key", "remove", "--pretend", "0123456789abcdef"],
    )
    .fails();
    assert!(
        run.stderr.contains("has no key slot 0123456789abcdef"),
        "{run:#?}"
    );
    // Both passphrases still open the repository.
    with_pass(&w, "first", &["generations"]).ok();
    with_pass(&w, "second", &["generations"]).ok();
}

/// A secret that meets only damaged slots, or slots of the other kind,
/// is not called wrong without a word of them. Found by an outside
/// review: a damaged only slot read as a wrong passphrase ("does not
/// open any of its 1 key slot(s)"), and a key file counted passphrase
/// slots it could never open.
#[test]
fn a_damaged_only_slot_is_not_taken_for_a_wrong_passphrase() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "pw", &["--encrypt"]).ok();
    let slot = w.repo.join("keys").join(slot_ids(&w).remove(0));
    let text = fs::read(&slot).unwrap();
    fs::write(&slot, &text[..100]).unwrap();
    let run = with_pass(&w, "pw", &["ls"]).fails();
    assert!(
        run.stderr.contains(
            "does not open any of its 0 passphrase slot(s) (1 slot(s) in all: 1 damaged (see \
             the warnings))"
        ),
        "{run:#?}"
    );
    fs::write(&slot, &text).unwrap();
    let key_file = w.env.path().join("key");
    fs::write(&key_file, "0".repeat(64)).unwrap();
    let run = run_env(
        &w,
        &[("OBNAM_KEY_FILE", key_file.to_str().unwrap())],
        &["ls"],
    )
    .fails();
    assert!(
        run.stderr.contains(
            "it has no key-file slot, only 1 passphrase slot(s): give its passphrase without \
             --key-file (in OBNAM_PASSPHRASE"
        ),
        "{run:#?}"
    );
}

/// A passphrase or key file that others may read, or that belongs to
/// another user, is warned about (whoever reads it opens the repository):
/// found by an outside review, a key file planted where a new
/// repository's was looked for became its key without a word.
#[test]
fn a_secret_file_others_may_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    let file = w.env.path().join("pass");
    fs::write(&file, "pw\n").unwrap();
    let with_file = || {
        run(w
            .env
            .obnam()
            .arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", &w.client])
            .args(CHEAP_KDF)
            .arg("--passphrase-file")
            .arg(&file)
            .args(["--encrypt", "backup"])
            .arg(&w.data))
        .ok()
    };
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let open = with_file();
    assert!(
        open.stderr.contains(&format!(
            "WARNING: passphrase file {} may be read by others (mode 644)",
            file.display()
        )),
        "{open:#?}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let private = with_file();
    assert!(!private.stderr.contains("WARNING"), "{private:#?}");
    if obnam_test_support::running_as_root() {
        std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
        let theirs = with_file();
        assert!(
            theirs.stderr.contains("belongs to another user (uid 4242)"),
            "{theirs:#?}"
        );
    }
}

/// `key passwd` replaces the slot of the secret that opened the
/// repository by one of the same kind. Found by an outside review: opened
/// with a key file (what unattended backups use) and given a new
/// passphrase, it replaced the key file's slot by a passphrase's, and
/// the key file opened nothing any more.
#[test]
fn key_passwd_keeps_the_kind_of_the_slot_it_replaces() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "pw", &["--encrypt"]).ok();
    let key_file = w.env.path().join("key");
    let new_key_file = w.env.path().join("new-key");
    let key = key_file.to_str().unwrap();
    run_env(
        &w,
        &[("OBNAM_PASSPHRASE", "pw")],
        &["--new-key-file", key, "key", "add"],
    )
    .ok();
    let before = slot_ids(&w);
    let refused = run_env(
        &w,
        &[("OBNAM_NEW_PASSPHRASE", "other")],
        &["--key-file", key, "key", "passwd"],
    )
    .fails();
    assert!(
        refused.stderr.contains(
            "a key-file slot, by one of the same kind, but the new secret is a passphrase"
        ),
        "{refused:#?}"
    );
    assert_eq!(slot_ids(&w), before);
    run_env(
        &w,
        &[],
        &[
            "--key-file",
            key,
            "--new-key-file",
            new_key_file.to_str().unwrap(),
            "key",
            "passwd",
        ],
    )
    .ok();
    run_env(
        &w,
        &[],
        &["--key-file", new_key_file.to_str().unwrap(), "ls"],
    )
    .ok();
    run_env(&w, &[], &["--key-file", key, "ls"]).fails();
    with_pass(&w, "pw", &["ls"]).ok();
}

/// A file in `keys/` too large to be a slot is a damaged slot, skipped
/// with a warning, and `key remove` removes it: it stopped every command
/// for every secret (`key remove` of it included).
#[test]
fn a_key_slot_too_large_is_skipped_and_can_be_removed() {
    let w = BackupWorld::new("c");
    w.file("f", b"data");
    backup(&w, "pw", &["--encrypt"]).ok();
    let bogus = w.repo.join("keys").join("bogus");
    fs::write(&bogus, vec![b' '; (1 << 20) + 1]).unwrap();
    let run = with_pass(&w, "pw", &["genids"]).ok();
    assert_eq!(run.stdout.lines().count(), 1, "{run:#?}");
    assert!(
        run.stderr.contains("key slot bogus of")
            && run.stderr.contains("is damaged and was skipped"),
        "{run:#?}"
    );
    let run = with_pass(&w, "pw", &["key", "list"]).ok();
    assert!(run.stdout.contains("bogus  damaged"), "{run:#?}");
    with_pass(&w, "pw", &["key", "remove", "bogus"]).ok();
    assert!(!bogus.exists());
    let run = with_pass(&w, "pw", &["genids"]).ok();
    assert_eq!(run.stderr, "", "{run:#?}");
}

/// A key slot whose key derivation needs more memory than the process
/// may have (within the format's bound: a slot made on a big machine,
/// or written by someone else) is skipped with a warning naming it, not
/// the end of the process (it aborted, exit 134, with a backtrace).
#[test]
fn a_key_slot_needing_memory_the_process_cannot_have_is_skipped() {
    let w = BackupWorld::new("c");
    w.file("f", b"data");
    backup(&w, "pw", &["--encrypt"]).ok();
    let keys = w.repo.join("keys");
    let ours = fs::read_dir(&keys).unwrap().next().unwrap().unwrap().path();
    let mut slot: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&ours).unwrap()).unwrap();
    slot["kdf"]["memory_kib"] = serde_json::json!(2 * 1024 * 1024);
    fs::write(keys.join("0000000000000000"), slot.to_string()).unwrap();
    let base = w.env.obnam();
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--as=1536000000")
        .arg(base.get_program())
        .args(["--repository", w.repo.to_str().unwrap()])
        .args(["--client-name", "c", "genids"])
        .current_dir(w.env.path())
        .env("OBNAM_PASSPHRASE", "wrong");
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let run = run(&mut cmd).no_rust_panic();
    assert_eq!(run.code, 1, "{run:#?}");
    assert!(
        run.stderr.contains("key slot 0000000000000000 of ")
            && run.stderr.contains(
                "its key derivation needs 2048 MiB of memory, which this process cannot have"
            ),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(
            "(2 slot(s) in all: 1 needing more memory than this process may have (see the \
             warnings))"
        ) && !run.stderr.contains("damaged"),
        "{run:#?}"
    );
}

/// The slot that opened the repository is the one slot a run knows to
/// open it: `key remove` refuses it, and removes it when another secret
/// opened the repository (which shows that one's slot opens it). A slot
/// damaged where only its own secret shows it (its wrapped key) read
/// well, the slot in use was removed, and nobody could open the
/// repository again.
#[test]
fn key_remove_keeps_the_slot_known_to_open_the_repository() {
    let w = BackupWorld::new("c");
    w.file("a.txt", b"content");
    backup(&w, "old", &["--encrypt"]).ok();
    let old = slot_ids(&w).remove(0);
    let second = add_slot(&w, "old", "second");
    // One bit of the second slot's wrapped key changed.
    let path = w.repo.join("keys").join(&second);
    let mut slot: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let wrapped = slot["wrapped"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}{}",
        &wrapped[..40],
        if &wrapped[40..41] == "0" { "1" } else { "0" },
        &wrapped[41..]
    );
    slot["wrapped"] = flipped.into();
    fs::write(&path, slot.to_string()).unwrap();
    let run = with_pass(&w, "old", &["key", "remove", &old]).fails();
    assert!(
        run.stderr.contains(&format!(
            "refusing to remove key slot {old}: it opened the repository in this run"
        )) && run.stderr.contains("nothing was removed"),
        "{run:#?}"
    );
    // The damaged one does not open it, so it cannot remove the other.
    with_pass(&w, "second", &["key", "remove", &old]).fails();
    with_pass(&w, "old", &["ls"]).ok();
    // A sound second slot: opened with it, the first goes.
    let third = add_slot(&w, "old", "third");
    with_pass(&w, "third", &["key", "remove", &old]).ok();
    with_pass(&w, "old", &["ls"]).fails();
    with_pass(&w, "third", &["ls"]).ok();
    assert!(slot_ids(&w).contains(&third));
}

/// A new key file's secret is counted without its line endings, which
/// are not part of it (32 newlines made a repository that any 16 CRLFs
/// opened); a passphrase given beside `--key-file` at creation is said
/// to open nothing; `key passwd --new-key-file` on a repository opened
/// with a passphrase makes no key file before it refuses.
#[test]
fn new_key_files_and_passphrases_are_what_they_seem() {
    let w = BackupWorld::new("c");
    w.file("f", b"data");
    let newlines = w.env.path().join("newlines.key");
    fs::write(&newlines, vec![b'\n'; 40]).unwrap();
    let create = |key: &Path, pass: Option<&str>| {
        let mut cmd = w.env.obnam();
        cmd.arg("--repository")
            .arg(&w.repo)
            .args(["--client-name", "c", "--encrypt", "--key-file"])
            .arg(key)
            .args(CHEAP_KDF)
            .arg("backup")
            .arg(&w.data);
        if let Some(pass) = pass {
            cmd.env("OBNAM_PASSPHRASE", pass);
        }
        run(&mut cmd)
    };
    let refused = create(&newlines, None).fails();
    assert!(
        refused
            .stderr
            .contains("holds 0 bytes of secret (its line endings are not part of it)"),
        "{refused:#?}"
    );
    assert!(!w.repo.join("config").exists());
    let key = w.env.path().join("made.key");
    let made = create(&key, Some("pw")).ok();
    assert!(
        made.stderr.contains("gets one key slot, for the key file")
            && made
                .stderr
                .contains("the passphrase from OBNAM_PASSPHRASE does not open it"),
        "{made:#?}"
    );
    // And a passphrase is told that the key file opens it (it was told
    // that the config or the slots were changed).
    let wrong_kind = with_pass(&w, "pw", &["ls"]).fails();
    assert!(
        wrong_kind.stderr.contains(
            "it has no passphrase slot, only 1 key-file slot(s): give its key file with \
             --key-file"
        ),
        "{wrong_kind:#?}"
    );

    let v = BackupWorld::new("c");
    v.file("f", b"data");
    backup(&v, "pw", &["--encrypt"]).ok();
    let new_key = v.env.path().join("new.key");
    for pretend in [true, false] {
        let mut args = vec!["key", "passwd", "--new-key-file", new_key.to_str().unwrap()];
        if pretend {
            args.push("--pretend");
        }
        let run = with_pass(&v, "pw", &args).fails();
        assert!(
            run.stderr.contains("but the new secret is a key-file"),
            "{run:#?}"
        );
        assert!(!new_key.exists(), "no key file is made");
    }
}

/// Once a secret was read, the process makes no core file (a crash then
/// wrote the passphrase and the master key into `./core`); a run of a
/// plain repository leaves the limit as it was.
#[test]
fn no_core_file_once_a_secret_is_read() {
    let w = BackupWorld::new("c");
    w.file("f", b"data");
    backup(&w, "pw", &["--encrypt"]).ok();
    let plain = BackupWorld::new("c");
    plain.file("f", b"data");
    plain.backup(&[]).ok();
    let plugins = w.env.plugin_dir("plugins", &["repotest"]);
    for (repo, limit) in [(&w.repo, "0"), (&plain.repo, "unlimited")] {
        let base = w.env.obnam();
        let mut cmd = std::process::Command::new("prlimit");
        cmd.arg("--core=unlimited")
            .arg(base.get_program())
            .arg("--plugin-dir")
            .arg(&plugins)
            .arg("--repository")
            .arg(repo)
            .args(["--client-name", "c", "repotest-core-limit"])
            .current_dir(w.env.path())
            .env("OBNAM_PASSPHRASE", "pw");
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let run = run(&mut cmd).ok();
        assert_eq!(run.stdout, format!("{limit}\n"), "{run:#?}");
    }
}
