//! The exclusion rules, as small predicates over a candidate.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use plugin_api::names::escape_path;
use plugin_api::payloads::ExcludeCandidate;
use plugin_api::{Context, Result};

use patterns::PatternSet;

/// The signature a `CACHEDIR.TAG` file starts with
/// (<https://bford.info/cachedir/>).
const CACHEDIR_SIGNATURE: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55";

/// The rules of one backup run.
pub struct Rules {
    include: PatternSet,
    exclude: PatternSet,
    exclude_caches: bool,
    if_present: Vec<PathBuf>,
    larger_than: u64,
    one_file_system: bool,
    log_file: Option<PathBuf>,
    /// The log file's device and inode: the walk may reach it by another
    /// path than `--log` gives (a symbolic link on the way to either).
    log_identity: Option<(u64, u64)>,
}

/// A pattern, and the line of the `--exclude-from` file it was read
/// from, if it was.
type Pattern = (String, Option<(PathBuf, usize)>);

/// Compile the patterns of `setting`; an error says where the bad one came
/// from: the setting (from the command line, a config file or the
/// environment), or a line of an `--exclude-from` file.
fn compile(ctx: &Context<'_>, setting: &str, patterns: &[Pattern]) -> Result<PatternSet> {
    let texts: Vec<String> = patterns.iter().map(|(p, _)| p.clone()).collect();
    PatternSet::new(&texts).map_err(|e| match e.index.and_then(|i| patterns[i].1.as_ref()) {
        Some((file, line)) => ctx.setting_error(
            "exclude-from",
            &format!("{}: line {line}: {}", escape_path(file), e.reason),
        ),
        None => ctx.setting_error(setting, &e.reason),
    })
}

/// Patterns from an `--exclude-from` file, each with its line.
fn patterns_from(ctx: &Context<'_>, file: &Path) -> Result<Vec<Pattern>> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ctx.setting_error(
            "exclude-from",
            &format!("cannot read {}: {e}", escape_path(file)),
        )
    })?;
    // A byte-order mark (as some editors write) is not part of the first
    // pattern.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(line, l)| (l.to_string(), Some((file.to_path_buf(), line))))
        .collect())
}

/// Paths no rule means to match, of unlike kinds (control characters, a
/// lower-case name with a digit, a Greek letter): a pattern that matches
/// all of them matches every path. An exclusion that did left out the
/// whole tree, exit 0, and an inclusion that did took back every
/// exclusion (an unset variable in `--exclude "(?i)$NAME"`, `"$DIR/"`,
/// `"re:$A|$B"`, `"sh:$P*"`, `--include "(?i)$NAME"`). A narrow rule
/// (`[[:cntrl:]]`, `[0-9]`, a letter) matches some of them at most.
const UNRELATED_PATHS: [&[u8]; 3] = [b"/\x01\x02", b"/qzx/k9", "/\u{3a9}".as_bytes()];

/// Names of a root's children that no rule means to match, in the same
/// way: an exclusion that matches them all leaves out everything below
/// the root, its folders with their subtrees (`--exclude "$HOME/$CACHE"`
/// or `"sh:$DIR/*"` with the last variable unset).
const UNRELATED_NAMES: [&[u8]; 3] = [b"\x01\x02", b"qzx9", "\u{3a9}".as_bytes()];

/// Why `text` (a rule of `setting`, from `from`) is refused: it matches
/// every path, or every path below `root`.
fn match_everything(
    ctx: &Context<'_>,
    setting: &str,
    text: &str,
    from: &Option<(PathBuf, usize)>,
    what: &str,
) -> plugin_api::Error {
    let why = format!(
        "'{}' matches {what}, so it would {} (is a variable in it empty?); give a pattern \
         that names what to {}",
        plugin_api::names::escape_text(text),
        if setting == "include" {
            "take back every exclusion"
        } else {
            "leave out everything there"
        },
        if setting == "include" {
            "take back"
        } else {
            "leave out"
        },
    );
    match from {
        Some((file, line)) => ctx.setting_error(
            "exclude-from",
            &format!("{}: line {line}: {why}", escape_path(file)),
        ),
        None => ctx.setting_error(setting, &why),
    }
}

/// Refuse a rule that matches every path: an inclusion always, an
/// exclusion unless an inclusion takes some back ("leave out everything
/// but" is a rule then). With the backup's `roots`, an exclusion that
/// matches every path below one of them too.
fn refuse_match_everything(
    ctx: &Context<'_>,
    exclude: &[Pattern],
    include: &[Pattern],
    roots: &[PathBuf],
) -> Result<()> {
    // Each pattern compiled once (all compile: the sets did).
    let compiled = |text: &str| patterns::Pattern::new(text.as_bytes()).ok();
    let anywhere = |p: &patterns::Pattern| UNRELATED_PATHS.iter().all(|x| p.is_match(x));
    for (text, from) in include {
        if compiled(text).is_some_and(|p| anywhere(&p)) {
            return Err(match_everything(ctx, "include", text, from, "every path"));
        }
    }
    if !include.is_empty() {
        return Ok(());
    }
    // Each root's unrelated children, by their paths.
    let below: Vec<(&PathBuf, Vec<Vec<u8>>)> = roots
        .iter()
        .map(|root| {
            let base = root.as_os_str().as_bytes();
            let children = UNRELATED_NAMES
                .iter()
                .map(|name| {
                    let mut path = base.to_vec();
                    if !path.ends_with(b"/") {
                        path.push(b'/');
                    }
                    path.extend_from_slice(name);
                    path
                })
                .collect();
            (root, children)
        })
        .collect();
    for (text, from) in exclude {
        let Some(pattern) = compiled(text) else {
            continue;
        };
        if anywhere(&pattern) {
            return Err(match_everything(ctx, "exclude", text, from, "every path"));
        }
        for (root, children) in &below {
            if children.iter().all(|x| pattern.is_match(x)) {
                let what = format!("every path below the root {}", escape_path(root));
                return Err(match_everything(ctx, "exclude", text, from, &what));
            }
        }
    }
    Ok(())
}

/// The patterns of a list setting, from no file.
fn patterns_of(ctx: &Context<'_>, setting: &str) -> Result<Vec<Pattern>> {
    Ok(ctx
        .string_list(setting)?
        .into_iter()
        .map(|p| (p, None))
        .collect())
}

impl Rules {
    /// Compile the rules from the settings; a bad pattern is an error
    /// naming it, and so is one that matches every path (or every path
    /// below one of the backup's `roots`, where they are known).
    pub fn from_settings(ctx: &Context<'_>, roots: &[PathBuf]) -> Result<Self> {
        let mut exclude = patterns_of(ctx, "exclude")?;
        for file in ctx.path_list("exclude-from")? {
            exclude.extend(patterns_from(ctx, &file)?);
        }
        let include = patterns_of(ctx, "include")?;
        // A pattern that does not compile is named first, whatever else.
        let (include_set, exclude_set) = (
            compile(ctx, "include", &include)?,
            compile(ctx, "exclude", &exclude)?,
        );
        refuse_match_everything(ctx, &exclude, &include, roots)?;
        let cwd = std::env::current_dir()?;
        let log_file = ctx
            .path("log")?
            .map(|p| plugin_api::live_paths::absolute(&cwd, &p));
        // The host has opened it (it makes it if need be) before any
        // plugin runs.
        let log_identity = log_file
            .as_deref()
            .and_then(|p| std::fs::metadata(p).ok())
            .filter(|m| m.is_file())
            .map(|m| (m.dev(), m.ino()));
        Ok(Rules {
            include: include_set,
            exclude: exclude_set,
            exclude_caches: ctx.boolean("exclude-caches")?,
            if_present: ctx.path_list("exclude-if-present")?,
            larger_than: ctx.bytesize("exclude-larger-than")?,
            one_file_system: ctx.boolean("one-file-system")?,
            log_file,
            log_identity,
        })
    }

    /// Why a candidate is to be left out, if it is.
    pub fn reason(&self, c: &ExcludeCandidate) -> Option<String> {
        let path = c.path();
        let bytes = path.as_os_str().as_bytes();
        if !self.include.is_match(bytes) {
            if let Some(pattern) = self.exclude.first_match(bytes) {
                return Some(format!("matches --exclude '{pattern}'"));
            }
        }
        if self.exclude_caches && path.file_name() != Some("CACHEDIR.TAG".as_ref()) {
            if let Some(parent) = path.parent() {
                if is_cache_dir(parent) {
                    return Some(format!(
                        "{} is a cache folder (CACHEDIR.TAG)",
                        plugin_api::names::escape_path(parent)
                    ));
                }
            }
        }
        if c.stat.is_dir() {
            for name in &self.if_present {
                if path.join(name).symlink_metadata().is_ok() {
                    return Some(format!(
                        "it holds {} (--exclude-if-present)",
                        escape_path(name)
                    ));
                }
            }
        } else if self.larger_than > 0 && c.stat.size > self.larger_than {
            return Some(format!("it is larger than {} bytes", self.larger_than));
        }
        if self.one_file_system && c.stat.dev != c.root_stat.dev {
            return Some("it is on another file system than its root (--one-file-system)".into());
        }
        let is_log = self.log_file.as_deref() == Some(path)
            || (c.stat.mode & 0o170000 == 0o100000
                && self.log_identity == Some((c.stat.dev, c.stat.ino)));
        if is_log {
            return Some("it is obnam's log file".into());
        }
        None
    }
}

/// Whether a folder holds a valid `CACHEDIR.TAG`.
fn is_cache_dir(dir: &Path) -> bool {
    use std::io::Read;
    // Only a regular file is a tag: a FIFO of that name blocked the open
    // (and the backup) for ever, and a symlink led the read anywhere (a
    // device). Opened without following a link or waiting for a writer,
    // then checked.
    // Read without stamping its access time, as the backup reads.
    use rustix::fs::OFlags;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = plugin_api::live_paths::open_unseen(&dir.join("CACHEDIR.TAG"), flags) else {
        return false;
    };
    let mut f = std::fs::File::from(fd);
    if !f.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 43];
    f.read_exact(&mut head).is_ok() && head == CACHEDIR_SIGNATURE
}
