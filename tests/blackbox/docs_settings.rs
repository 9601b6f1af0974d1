//! The documentation and the binary agree on the settings: every option
//! that `obnam --help` or a subcommand's `--help` lists is described in
//! `docs/user-guide.md`, and every option the user guide and the README
//! name exists (apart from the few options of other programs they quote).

use std::collections::BTreeSet;
use std::fs;

use obnam_test_support::{workspace_dir, TestEnv};

/// Options of other programs that the documents quote, and where from.
const NOT_OBNAMS: &[(&str, &str)] = &[
    ("--prefix", "install.sh"),
    ("--from", "install.sh"),
    ("--release", "cargo build"),
    ("--workspace", "cargo build and cargo test"),
    ("--xattrs", "GNU tar, reading obnam dump's stream"),
    ("--xattrs-include", "GNU tar, reading obnam dump's stream"),
    ("--acls", "GNU tar, reading obnam dump's stream"),
];

/// The long options named in a text: `--name` not preceded by a letter,
/// digit or dash (so not the `--` of `-rw-r--r--`), and not a pattern such
/// as `--no-NAME` (a name ending in `-`).
fn named_options(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    let mut at = 0;
    while let Some(i) = text[at..].find("--").map(|i| at + i) {
        at = i + 2;
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'-') {
            continue;
        }
        let name: String = text[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if name.is_empty() || name.ends_with('-') || !name.as_bytes()[0].is_ascii_lowercase() {
            continue;
        }
        found.insert(format!("--{name}"));
    }
    found
}

/// The options a help text lists: at the start of its option lines, and
/// the aliases it names (`[alias: --dry-run]`).
fn listed_options(help: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let option = match (indent, trimmed.strip_prefix('-')) {
            (2, Some(rest)) if rest.get(1..3) == Some(", ") => rest.get(3..),
            (6, Some(_)) => Some(trimmed),
            _ => None,
        };
        if let Some(option) = option {
            let name: String = option.chars().take_while(|c| !c.is_whitespace()).collect();
            found.insert(name);
        }
    }
    // Aliases, in `[alias: --dry-run]`, which help may wrap over lines.
    for (i, _) in help.match_indices("[alias") {
        let end = help[i..].find(']').map_or(help.len(), |e| i + e);
        found.extend(named_options(&help[i..end]));
    }
    found
}

/// The subcommands `obnam --help` lists.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| l.as_bytes().get(2).is_some_and(|c| c.is_ascii_lowercase()))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_setting_is_documented_and_every_documented_setting_exists() {
    let env = TestEnv::new();
    let top = env.run(["--help"]).ok().stdout;
    let mut in_help = listed_options(&top);
    let subs = subcommands(&top);
    assert!(subs.len() > 15, "{subs:?}");
    for sub in &subs {
        let help = env.run([sub.as_str(), "--help"]).ok().stdout;
        in_help.extend(listed_options(&help));
    }
    // Every boolean's --no-NAME is documented with its NAME.
    let settings: BTreeSet<&String> = in_help
        .iter()
        .filter(|o| !(o.starts_with("--no-") && in_help.contains(&format!("--{}", &o[5..]))))
        .filter(|o| *o != "--help" && *o != "--version")
        .collect();
    assert!(settings.contains(&"--to".to_string()), "{settings:?}");
    assert!(settings.contains(&"--exclude".to_string()), "{settings:?}");

    let guide = fs::read_to_string(workspace_dir().join("docs/user-guide.md")).unwrap();
    let documented = named_options(&guide);
    let undocumented: Vec<&&String> = settings
        .iter()
        .filter(|o| !documented.contains(o.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "settings in --help that docs/user-guide.md never names: {undocumented:?}"
    );

    let readme = fs::read_to_string(workspace_dir().join("README.md")).unwrap();
    for (doc, named) in [
        ("docs/user-guide.md", documented),
        ("README.md", named_options(&readme)),
    ] {
        let unknown: Vec<String> = named
            .into_iter()
            .filter(|o| !in_help.contains(o))
            .filter(|o| !NOT_OBNAMS.iter().any(|(name, _)| name == o))
            .collect();
        assert!(
            unknown.is_empty(),
            "{doc} names options no obnam --help lists: {unknown:?}"
        );
    }
}

#[test]
fn the_option_scanner_reads_what_it_should() {
    let text =
        "give `--to DIR`, or --no-NAME; -rw-r--r-- is a mode; --Bad; x--y; (--exclude-from FILE)";
    assert_eq!(
        named_options(text).into_iter().collect::<Vec<_>>(),
        ["--exclude-from", "--to"]
    );
    let help = "Options:\n  -r, --repository <URL>  the repo\n      --to <DIR>  where\n                  wrapped --not-an-option text\n      --pretend  do nothing [alias: --dry-run]\n";
    assert_eq!(
        listed_options(help).into_iter().collect::<Vec<_>>(),
        ["--dry-run", "--pretend", "--repository", "--to"]
    );
}
