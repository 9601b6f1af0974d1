//! The host's own settings: the definitions of the ones every subcommand
//! shares. What their values mean is up to the modules that read them
//! (the repository's settings: the services module).

use plugin_api::abi::SettingKind;

use crate::settings::{SettingDef, Value, HOST_OWNER};

/// Help group of the host's settings.
pub const GROUP_GLOBAL: &str = "Global options";
/// Help group of performance settings.
pub const GROUP_PERFORMANCE: &str = plugin_api::GROUP_PERFORMANCE;
/// Help group of development settings.
pub const GROUP_DEVELOPMENT: &str = plugin_api::GROUP_DEVELOPMENT;
/// Help group of the logging settings.
pub const GROUP_LOGGING: &str = "Logging";
/// Help group of the settings of remote repositories.
pub const GROUP_REMOTE: &str = "Remote repositories";

/// The host's settings, to be registered before any plugin's;
/// `pack_size` is the repository engine's default pack size.
pub fn definitions(pack_size: u64) -> Vec<SettingDef> {
    let mut defs = global();
    defs.extend(performance(pack_size));
    defs.extend(remote());
    defs.extend(development());
    defs.extend(logging());
    defs
}

/// The settings listed under [`GROUP_GLOBAL`].
fn global() -> Vec<SettingDef> {
    let host_name = gethostname::gethostname().to_string_lossy().into_owned();
    vec![
        def(
            "repository",
            SettingKind::String,
            "URL",
            "the repository: a folder, or a file://, sftp://[user@]host[:port]/path or s3://bucket[/prefix] URL",
            GROUP_GLOBAL,
        )
        .short('r')
        // A local folder's name need not be UTF-8.
        .path()
        .path_check(check_repository),
        def(
            "client-name",
            SettingKind::String,
            "NAME",
            "name of this client in the repository",
            GROUP_GLOBAL,
        )
        .default(Value::Str(host_name))
        .default_text("this machine's host name")
        .check(check_client_name),
        // Several commands work on one client or on all (force-lock,
        // forget): one setting, owned by the host, whichever plugins are
        // loaded.
        def(
            "all-clients",
            SettingKind::Boolean,
            "",
            "work on every client in the repository, not only --client-name's \
             (force-lock, forget)",
            GROUP_GLOBAL,
        )
        .subcommands(&["force-lock", "forget"]),
        def(
            "quiet",
            SettingKind::Boolean,
            "",
            "show no progress and no warnings",
            GROUP_GLOBAL,
        ),
        def(
            "verbose",
            SettingKind::Boolean,
            "",
            "say more about what is being done",
            GROUP_GLOBAL,
        ),
        def(
            "pretend",
            SettingKind::Boolean,
            "",
            "do not change anything, only report what would be done",
            GROUP_GLOBAL,
        )
        .subcommands(&[
            "backup",
            "restore",
            "forget",
            "prune",
            "remove-client",
            "force-lock",
            "key",
            "repair-index",
            "repair-packs",
            "repair-records",
        ])
        .alias("dry-run"),
        def(
            "output-format",
            SettingKind::Choice,
            "FORMAT",
            "format of structured output: json prints one JSON document; json-lines \
             makes backup and restore print a stream of JSON objects, one per line \
             (progress, then a summary), and the other commands what json prints",
            GROUP_GLOBAL,
        )
        .choices(&["text", "json", "json-lines"]),
        def(
            "lock-timeout",
            SettingKind::Integer,
            "SECONDS",
            "how long to wait for a lock held by another process (0: do not wait; 604800 is a week)",
            GROUP_GLOBAL,
        )
        .default(Value::Int(60))
        // A week is longer than any wait meant; a bound keeps the
        // deadline computable.
        .within("0", "604800"),
    ]
}

/// The settings listed under [`GROUP_PERFORMANCE`].
fn performance(pack_size: u64) -> Vec<SettingDef> {
    vec![def(
        "pack-size",
        SettingKind::ByteSize,
        "SIZE",
        "target size of the repository's pack files",
        GROUP_PERFORMANCE,
    )
    .subcommands(&["backup", "forget", "prune"])
    .default(Value::Bytes(pack_size))
    // Smaller packs would make a file per chunk, larger ones more than a
    // pack may hold.
    .within("64KiB", "1GiB")]
}

/// The settings listed under [`GROUP_REMOTE`].
fn remote() -> Vec<SettingDef> {
    vec![
        def(
            "ssh-key",
            SettingKind::String,
            "FILE",
            "sftp:// repositories: log in with the SSH private key in FILE (else ssh's own defaults)",
            GROUP_REMOTE,
        )
        .path(),
        def(
            "ssh-host-keys-check",
            SettingKind::Choice,
            "HOW",
            "sftp:// repositories: check the server's host key: yes (it must be in ~/.ssh/known_hosts), ifknown (check it if known, add it if not), no (do not check)",
            GROUP_REMOTE,
        )
        .choices(&["yes", "ifknown", "no"])
        .default(Value::Str("yes".into())),
        def(
            "s3-endpoint",
            SettingKind::String,
            "URL",
            "s3:// repositories: the S3 endpoint (else AWS_ENDPOINT_URL, else AWS); credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            GROUP_REMOTE,
        )
        .check(obnam_repository::backend::s3::check_endpoint),
        def(
            "s3-region",
            SettingKind::String,
            "REGION",
            "s3:// repositories: the region (else AWS_REGION, else us-east-1)",
            GROUP_REMOTE,
        ),
        def(
            "storage-timeout",
            SettingKind::Integer,
            "SECONDS",
            "give up on one storage operation after SECONDS, and retry it (1 to 86400)",
            GROUP_REMOTE,
        )
        .default(Value::Int(120))
        .within("1", "86400"),
    ]
}

/// The settings listed under [`GROUP_DEVELOPMENT`].
fn development() -> Vec<SettingDef> {
    vec![
        def(
            "crash-limit",
            SettingKind::Integer,
            "N",
            "development: stop abruptly before the repository write after the N-th (0: never)",
            GROUP_DEVELOPMENT,
        )
        .within("0", &i64::MAX.to_string()),
        def(
            "testing-weak-tokens",
            SettingKind::Boolean,
            "",
            "development: keep only the first byte of each chunk's token, so that \
             different chunks collide on purpose",
            GROUP_DEVELOPMENT,
        )
        .subcommands(&["backup"]),
        def(
            "testing-storage-faults",
            SettingKind::String,
            "SPEC",
            "development: inject storage faults: comma-separated KIND=PROBABILITY items \
             (write-fail, write-lost-ack, delete-fail, read-fail, short-read, slow, \
             stale-list, list-fail) and seed=N",
            GROUP_DEVELOPMENT,
        ),
        def(
            "testing-new-chunks-in-memory",
            SettingKind::Integer,
            "N",
            "development: a backup holds N of its new chunks in memory (not some \
             262,144) before it moves those of packs already written to the local \
             index cache",
            GROUP_DEVELOPMENT,
        )
        .subcommands(&["backup"])
        // The count sizes memory: 64 times the default is plenty to try.
        .within("0", "16777216"),
        def(
            "testing-max-tree-size",
            SettingKind::ByteSize,
            "SIZE",
            "development: a backup writes tree objects of at most SIZE (not the \
             format's 256 MiB), so that a folder too large for one is tried without \
             a million files",
            GROUP_DEVELOPMENT,
        )
        .subcommands(&["backup"])
        .default(Value::Bytes(obnam_repository::limits::MAX_TREE_LEN as u64))
        .within("1KiB", "256MiB"),
        def(
            "testing-generation-time",
            SettingKind::String,
            "TIME",
            "development: generations made by this run say it started at TIME \
             (RFC 3339, e.g. 2026-01-05T10:00:00Z), to try retention policies",
            GROUP_DEVELOPMENT,
        )
        .subcommands(&["backup"]),
        def(
            "testing-machine-id",
            SettingKind::String,
            "ID",
            "development: this machine's identity as generations record it, instead of \
             its machine id, to play several machines",
            GROUP_DEVELOPMENT,
        )
        .subcommands(&["backup"]),
    ]
}

/// The settings listed under [`GROUP_LOGGING`].
fn logging() -> Vec<SettingDef> {
    vec![
        def(
            "log",
            SettingKind::String,
            "FILE",
            "write a log to FILE",
            GROUP_LOGGING,
        )
        .path()
        .path_check(check_log_file),
        def(
            "log-level",
            SettingKind::Choice,
            "LEVEL",
            "how much to write to the log",
            GROUP_LOGGING,
        )
        // Listed from the least to the most; the default is not the first.
        .choices(&["error", "warning", "info", "debug", "trace"])
        .default(Value::Str("info".into())),
    ]
}

/// Why `file` cannot be the log file's name: an empty one names no file
/// (the message read `cannot open log file : No such file or directory`).
fn check_log_file(file: &std::ffi::OsStr) -> Result<(), String> {
    match file.is_empty() {
        true => Err("the log file's name must not be empty".into()),
        false => Ok(()),
    }
}

/// Why `url` cannot be a repository's location (a mistyped URL, an
/// empty one, one with a password): refused where the setting is read, so
/// that the message names the config file's line or the variable that
/// holds it, and a command line's is a usage error.
fn check_repository(url: &std::ffi::OsStr) -> Result<(), String> {
    obnam_repository::location::Location::parse_os(url)
        .map(drop)
        .map_err(|bad| bad.to_string())
}

/// Why `name` cannot be a client's name. Checked where the setting is
/// read, so that a bad name is refused before a repository is created or
/// opened, in one wording for every command. A name is shown in listings
/// and reports one per line: white space alone, or a control character
/// (a newline, an escape sequence), would make those lie.
pub fn check_client_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a client name must not be empty".into());
    }
    if name.trim().is_empty() {
        return Err(format!(
            "a client name must not be only white space (got {name:?})"
        ));
    }
    // ` lap` and `lap` would be two clients that every listing shows
    // alike (a config file's value is trimmed; one on the command line
    // was not).
    if name.trim() != name {
        return Err(format!(
            "a client name must not start or end with white space (got {name:?})"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "a client name must not contain control characters (got {name:?}, with U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

fn def(name: &str, kind: SettingKind, metavar: &str, help: &str, group: &str) -> SettingDef {
    let default = match kind {
        SettingKind::Boolean => Value::Bool(false),
        SettingKind::Integer => Value::Int(0),
        SettingKind::ByteSize => Value::Bytes(0),
        _ => Value::Unset,
    };
    SettingDef {
        name: name.into(),
        kind,
        help: help.into(),
        metavar: metavar.into(),
        group: group.into(),
        choices: Vec::new(),
        default,
        owner: HOST_OWNER.into(),
        short: None,
        aliases: Vec::new(),
        subcommands: Vec::new(),
        range: None,
        check: None,
        path_check: None,
        path: false,
        multiple: None,
        default_text: None,
    }
}

impl SettingDef {
    fn short(mut self, c: char) -> Self {
        self.short = Some(c);
        self
    }

    fn default_text(mut self, text: &str) -> Self {
        self.default_text = Some(text.into());
        self
    }

    fn alias(mut self, alias: &str) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// The subcommands whose help lists it (the others accept it too).
    fn subcommands(mut self, names: &[&str]) -> Self {
        self.subcommands = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// The host's ranges are fixed: one that does not parse is a bug,
    /// caught by the tests.
    fn within(mut self, least: &str, most: &str) -> Self {
        if let Err(e) = self.set_range(least, most) {
            tracing::error!("{e}");
        }
        self
    }

    /// A path: bytes, which need not be UTF-8. The host's paths are
    /// strings, so this cannot fail; a failure would be a bug, caught by
    /// the tests.
    fn path(mut self) -> Self {
        if let Err(e) = self.set_path() {
            tracing::error!("{e}");
        }
        self
    }

    fn path_check(mut self, check: crate::settings::PathCheck) -> Self {
        self.path_check = Some(check);
        self
    }

    fn check(mut self, check: crate::settings::ValueCheck) -> Self {
        self.check = Some(check);
        self
    }

    fn default(mut self, value: Value) -> Self {
        self.default = value;
        self
    }

    fn choices(mut self, choices: &[&str]) -> Self {
        self.choices = choices.iter().map(|c| c.to_string()).collect();
        self.default = Value::Str(self.choices[0].clone());
        self
    }
}
