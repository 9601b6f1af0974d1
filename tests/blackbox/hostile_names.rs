//! Client names and host names are data from the repository (client,
//! generation and lock records), and a damaged or hostile repository may
//! hold any: every message that shows one escapes it as file names are
//! escaped (`plugin_api::names::escape`), so that a name holding a
//! newline cannot fake an output line, nor an escape byte reach the
//! terminal. The command line refuses control characters in
//! `--client-name`, so such a client is written into the repository by
//! hand (`support/handmade.rs`), as an attacker would.

use std::fs;
use std::path::Path;

use serde_json::json;

use obnam_test_support::handmade::{self, Entry, Handmade};
use obnam_test_support::{run, Run, TestEnv};

/// A client name that would fake an error line and colour the terminal.
const EVIL: &str = "evil\nERROR: fake\x1b[31m";
/// It as every message shows it.
const SHOWN: &str = "evil\\nERROR: fake\\u{001b}[31m";
/// A host name in a lock record, as hostile.
const EVIL_HOST: &str = "host\nERROR: fake host\x1b[0m";
const SHOWN_HOST: &str = "host\\nERROR: fake host\\u{001b}[0m";

/// No name made a line of its own, nor reached the terminal raw.
#[track_caller]
fn assert_no_raw_name(run: &Run, what: &str) {
    for line in run.stdout.lines().chain(run.stderr.lines()) {
        assert!(
            !line.starts_with("ERROR: fake"),
            "{what}: a name made a line of its own: {run:#?}"
        );
    }
    assert!(
        !run.stdout.contains('\x1b') && !run.stderr.contains('\x1b'),
        "{what}: an escape byte was printed: {run:#?}"
    );
}

#[test]
fn client_and_host_names_from_the_repository_are_escaped_in_every_message() {
    let env = TestEnv::new();
    let repo = env.path().join("repo");
    // A generation of the hostile client whose one file's chunk is not
    // stored: fsck names the client with the problem.
    let mut h = Handmade::default();
    let missing = handmade::token(b"never stored");
    let root = h.tree(&[Entry::file(b"f", missing, b"never stored")]);
    let gen = h.write(&repo, EVIL, root);
    let obnam_as = |client: &str, args: &[&str]| {
        run(env
            .obnam()
            .arg("--repository")
            .arg(&repo)
            .args(["--client-name", client])
            .args(args))
        .no_rust_panic()
    };
    let obnam = |args: &[&str]| obnam_as("c", args);

    let clients = obnam(&["clients"]).ok();
    assert_eq!(clients.stdout.trim(), SHOWN, "{clients:#?}");

    let fsck = obnam(&["fsck"]).fails();
    assert!(
        fsck.stderr.contains(&format!(
            "ERROR: client {SHOWN}, generation {gen}: /f: chunk"
        )),
        "{fsck:#?}"
    );
    assert_no_raw_name(&fsck, "fsck");

    let stats = obnam(&["stats"]).ok();
    assert!(
        stats
            .stdout
            .contains(&format!("client {SHOWN}: 1 generation")),
        "{stats:#?}"
    );
    assert_no_raw_name(&stats, "stats");

    let forget = obnam(&["forget", "--all-clients", "--keep", "1", "--pretend"]).ok();
    assert!(
        forget.stdout.contains(&format!("client {SHOWN}:")),
        "{forget:#?}"
    );
    assert_no_raw_name(&forget, "forget");

    // Records under another client's id that name the hostile client:
    // damaged, and the warnings say whose they are.
    let other = handmade::client_id("c2");
    handmade::write_record(
        &repo,
        &format!("clients/{other}"),
        &json!({"name": EVIL, "created": 1}),
    );
    handmade::write_record(
        &repo,
        &format!("generations/{other}/{gen}"),
        &handmade::generation_record(&gen, EVIL, root),
    );
    let clients = obnam(&["clients"]).ok();
    assert!(
        clients
            .stderr
            .contains(&format!("it is the record of client '{SHOWN}'")),
        "{clients:#?}"
    );
    assert_no_raw_name(&clients, "clients");
    let genids = obnam_as("c2", &["genids"]).ok();
    assert!(
        genids.stderr.contains(&format!(
            "it is the record of a generation of client '{SHOWN}'"
        )),
        "{genids:#?}"
    );
    assert_no_raw_name(&genids, "genids");

    // Locks: their client and host names.
    let now = obnam_test_support::now_ns();
    handmade::write_record(
        &repo,
        "locks/0123456789abcdef0123456789abcdef",
        &json!({"kind": "client", "client": EVIL, "host": EVIL_HOST, "pid": 1,
                "created": now, "refreshed": now}),
    );
    handmade::write_record(
        &repo,
        "locks/x.fedcba9876543210fedcba9876543210",
        &json!({"kind": "exclusive", "client": "", "host": EVIL_HOST, "pid": 1,
                "created": now, "refreshed": now}),
    );
    let data = env.path().join("data");
    fs::create_dir(&data).unwrap();
    let backup = obnam(&["backup", data.to_str().unwrap(), "--lock-timeout", "1"]).fails();
    assert!(
        backup.stderr.contains(&format!(
            "the repository is locked by host {SHOWN_HOST} (pid 1)"
        )),
        "{backup:#?}"
    );
    assert_no_raw_name(&backup, "a backup waiting for a lock");
    let forced = obnam(&["force-lock", "--all-clients"]).ok();
    assert!(
        forced.stdout.contains(&format!(
            "client '{SHOWN}' is locked by host {SHOWN_HOST} (pid 1)"
        )),
        "{forced:#?}"
    );
    assert_no_raw_name(&forced, "force-lock");
    assert!(!Path::new(&repo.join("locks/0123456789abcdef0123456789abcdef")).exists());
}
