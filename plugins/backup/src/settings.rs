//! The backup's settings: declared here, read once per run.

use std::path::{Path, PathBuf};

use plugin_api::live_paths;
use plugin_api::names::escape_path;
use plugin_api::{
    App, Context, Result, Setting, GROUP_BACKUP, GROUP_DEVELOPMENT, GROUP_PERFORMANCE,
};
use progress::OutputFormat;
use regex::Regex;

use crate::metadata::ChangeRule;

/// Declare the backup's settings.
pub fn register(app: &mut App<'_>) {
    app.add_setting(
        Setting::path_list("root")
            .subcommands(&["backup", "verify"])
            .metavar("DIR")
            .help("what to back up (besides the folders and files named on the command line)")
            .group(GROUP_BACKUP),
    );
    app.add_setting(
        Setting::bytesize("checkpoint")
            .subcommands(&["backup"])
            .default("1GiB")
            .help("commit a checkpoint generation after every SIZE bytes of new data stored")
            .group(GROUP_BACKUP),
    );
    app.add_setting(
        Setting::boolean("leave-checkpoints")
            .subcommands(&["backup"])
            .help("keep the checkpoint generations of a backup that finished well")
            .group(GROUP_BACKUP),
    );
    app.add_setting(
        Setting::boolean("ignore-inode")
            .subcommands(&["backup"])
            .help(
                "do not read a file again only because its inode number changed: for file \
                 systems whose inode numbers are not stable (some FUSE and network file systems)",
            )
            .group(GROUP_BACKUP),
    );
    app.add_setting(
        Setting::boolean("ignore-ctime")
            .subcommands(&["backup"])
            .help(
                "do not read a file again only because its change time changed; a file \
                 rewritten with its modification time set back is then missed (its old content \
                 kept until a backup without this setting)",
            )
            .group(GROUP_BACKUP),
    );
    app.add_setting(
        Setting::boolean("small-files-in-btree")
            .subcommands(&["backup"])
            .help("accepted so that old configuration files still work; it does nothing")
            .group(GROUP_BACKUP),
    );
    app.add_setting(
        Setting::integer("chunkids-per-group")
                .subcommands(&["backup"])
            .default("1024")
            .help("accepted so that old configuration files still work; it does nothing (chunk lists are stored whole)")
            .group(GROUP_PERFORMANCE),
    );
    app.add_setting(
        Setting::integer("backup-threads")
            .subcommands(&["backup"])
            .help("how many files to read at once (0: one per processor)")
            // Each is a thread, and the queue of work grows with them: a
            // huge count would fail to start, or abort on allocation.
            .range("0", "1024")
            .group(GROUP_PERFORMANCE),
    );
    app.add_setting(
        Setting::string_list("testing-fail-matching")
                .subcommands(&["backup"])
            .metavar("REGEX")
            .help("development testing helper: a file whose path matches fails as if it could not be read")
            .group(GROUP_DEVELOPMENT),
    );
    app.add_setting(
        Setting::string_list("testing-panic-matching")
                .subcommands(&["backup"])
            .metavar("REGEX")
            .help("development testing helper: the thread that reads a file whose path matches panics, as a bug would")
            .group(GROUP_DEVELOPMENT),
    );
}

/// Everything a backup run needs to know from the settings.
pub struct BackupSettings {
    /// Absolute, sorted, without repeats; one may be inside another.
    pub roots: Vec<PathBuf>,
    /// Of `roots`, those inside another ([`inner_roots`]), sorted: what
    /// the walk of an outer root leaves to their own walks. Usually none,
    /// and then the walk compares no path with them.
    pub inner_roots: Vec<PathBuf>,
    pub client: String,
    pub checkpoint: u64,
    pub leave_checkpoints: bool,
    /// `--ignore-inode`, `--ignore-ctime`: what tells a file unchanged.
    pub change_rule: ChangeRule,
    pub fail_matching: Vec<Regex>,
    /// `--testing-panic-matching`: files whose reading panics.
    pub panic_matching: Vec<Regex>,
    pub pretend: bool,
    pub verbose: bool,
    pub quiet: bool,
    /// `--output-format`.
    pub output: OutputFormat,
    pub threads: usize,
    /// The repository's folder, if local: never backed up into itself.
    pub repository_dir: Option<PathBuf>,
}

impl BackupSettings {
    /// Read the settings, with `args` (the command line's roots) first.
    pub fn read(ctx: &Context<'_>, args: &[std::ffi::OsString]) -> Result<Self> {
        let mut given: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
        given.extend(ctx.path_list("root")?);
        // An empty name would be taken as the current folder.
        if given.iter().any(|r| r.as_os_str().is_empty()) {
            plugin_api::bail!("backup: a folder or file to back up must not be an empty name");
        }
        let given = given
            .into_iter()
            .map(local_root)
            .collect::<Result<Vec<PathBuf>>>()?;
        let cwd = std::env::current_dir()?;
        let mut roots: Vec<PathBuf> = given
            .iter()
            .map(|r| root_path(&cwd, r))
            .collect::<Result<_>>()?;
        roots.sort();
        roots.dedup();
        let roots = check_nested_roots(roots)?;

        let fail_matching = regex_list(ctx, "testing-fail-matching")?;
        let panic_matching = regex_list(ctx, "testing-panic-matching")?;
        let threads = match ctx.integer("backup-threads")? {
            n if n > 0 => n as usize,
            _ => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        };
        let repository_dir = ctx
            .path("repository")?
            .and_then(|r| local_folder(&r))
            .map(|r| live_paths::absolute(&cwd, &r));
        let roots = leave_out_the_repository(roots, repository_dir.as_deref())?;
        Ok(BackupSettings {
            inner_roots: inner_roots(&roots),
            roots,
            client: ctx.string("client-name")?.unwrap_or_default(),
            checkpoint: ctx.bytesize("checkpoint")?,
            leave_checkpoints: ctx.boolean("leave-checkpoints")?,
            change_rule: ChangeRule {
                ignore_inode: ctx.boolean("ignore-inode")?,
                ignore_ctime: ctx.boolean("ignore-ctime")?,
            },
            fail_matching,
            panic_matching,
            pretend: ctx.boolean("pretend")?,
            verbose: ctx.boolean("verbose")?,
            quiet: ctx.boolean("quiet")?,
            output: ctx.output_format()?,
            threads,
            repository_dir,
        })
    }
}

/// The roots, sorted and without repeats, once checked that each can be
/// backed up beside the others. A root inside another is walked as a root
/// of its own: the walk of the outer one leaves it to that walk
/// (`Walker::walk_dir`), so that the outer root's exclusions
/// (`--one-file-system`, `--exclude`, the markers) never leave out a root
/// the user named, and `--one-file-system` keeps to the inner root's own
/// file system below it. The walk does not follow symbolic links, so a
/// root below a symlink that another root's walk records as a link (the
/// other root itself, or a link inside it) cannot be backed up beside it:
/// a generation cannot hold a link and a folder at the same path. Such
/// roots are refused, naming the link, rather than one of them silently
/// dropped.
fn check_nested_roots(roots: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    for r in &roots {
        for o in roots.iter().filter(|o| *o != r && r.starts_with(o)) {
            if let Some(link) = symlink_between(o, r) {
                plugin_api::bail!(
                    "backup root {} is below {}, a symbolic link that the root {} backs up \
                     as a link: one generation cannot hold both; give the real path of {} \
                     (or leave one of the two roots out)",
                    escape_path(r),
                    escape_path(&link),
                    escape_path(o),
                    escape_path(r)
                );
            }
        }
    }
    Ok(roots)
}

/// Of `roots` (sorted), those inside another, in the same order.
pub fn inner_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots
        .iter()
        .filter(|r| roots.iter().any(|o| o != *r && r.starts_with(o)))
        .cloned()
        .collect()
}

/// The first symbolic link on the way from `outer` (included) down to
/// `inner` (excluded), which `outer` is a prefix of. A path that cannot
/// be looked at counts as no link: the backup reports it itself.
fn symlink_between(outer: &Path, inner: &Path) -> Option<PathBuf> {
    let mut on_the_way: Vec<&Path> = inner
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(outer))
        .collect();
    on_the_way.reverse();
    on_the_way
        .into_iter()
        .find(|a| std::fs::symlink_metadata(a).is_ok_and(|m| m.file_type().is_symlink()))
        .map(Path::to_path_buf)
}

/// The folder of a repository given as a folder or a `file://` URL (any
/// bytes), or `None` for a remote one.
fn local_folder(repository: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = repository.as_os_str().as_bytes();
    match bytes.strip_prefix(b"file://") {
        Some(path) => Some(PathBuf::from(std::ffi::OsStr::from_bytes(path))),
        None if bytes.windows(3).any(|w| w == b"://") => None,
        None => Some(repository.to_path_buf()),
    }
}

/// The regular expressions of a list setting, or an error naming the
/// setting, where its value came from, and the expression that does not
/// compile.
fn regex_list(ctx: &Context<'_>, setting: &str) -> Result<Vec<Regex>> {
    let mut list = Vec::new();
    for pattern in ctx.string_list(setting)? {
        let re = Regex::new(&pattern).map_err(|e| {
            ctx.setting_error(setting, &format!("bad regular expression '{pattern}': {e}"))
        })?;
        list.push(re);
    }
    Ok(list)
}

/// The roots less those that are the repository's own folder or inside
/// it, each with a warning: a repository is never backed up into itself
/// (the walk leaves it out below a root; a root naming it was backed up).
/// Refused if that leaves none.
fn leave_out_the_repository(
    roots: Vec<PathBuf>,
    repository: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    let Some(repository) = repository else {
        return Ok(roots);
    };
    let given = roots.len();
    // Also as the file system resolves them: either may be named by a way
    // through a symbolic link. A root's own last name is not resolved (a
    // root that is a link is backed up as the link).
    let real_repository = std::fs::canonicalize(repository).ok();
    let real_root = |root: &Path| {
        let parent = std::fs::canonicalize(root.parent()?).ok()?;
        Some(match root.file_name() {
            Some(name) => parent.join(name),
            None => parent,
        })
    };
    let kept: Vec<PathBuf> = roots
        .into_iter()
        .filter(|root| {
            let inside = root.starts_with(repository)
                || real_repository
                    .as_deref()
                    .zip(real_root(root))
                    .is_some_and(|(repository, root)| root.starts_with(repository));
            if inside {
                plugin_api::tracing::warn!(
                    "backup root {} is the repository's folder, or inside it: left out (a \
                     repository is never backed up into itself)",
                    escape_path(root)
                );
            }
            !inside
        })
        .collect();
    if kept.is_empty() && given > 0 {
        plugin_api::bail!(
            "every backup root is the repository's folder {}, or inside it: nothing to back up",
            escape_path(repository)
        );
    }
    Ok(kept)
}

/// A root as a path: a `file://` URL (which Obnam 1.x took) is its path;
/// any other URL is refused, naming it as given (it read as a folder
/// `sftp:` below the current one). Live data is read from local files
/// only.
fn local_root(root: PathBuf) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = root.as_os_str().as_bytes();
    if let Some(path) = bytes.strip_prefix(b"file://") {
        return Ok(PathBuf::from(std::ffi::OsStr::from_bytes(path)));
    }
    let scheme = bytes.iter().position(|b| *b == b':').map(|at| &bytes[..at]);
    let is_url = scheme.is_some_and(|s| {
        s.first().is_some_and(u8::is_ascii_alphabetic)
            && s.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(b))
            && bytes[s.len()..].starts_with(b"://")
    });
    if is_url {
        plugin_api::bail!(
            "backup root {}: obnam backs up local files only, not a URL (a file:// URL is \
             taken as its path); to back up another machine's files, run obnam there",
            escape_path(&root)
        );
    }
    Ok(root)
}

/// The absolute path of the root `given`. Written with a trailing `/` or
/// `/.`, a root names a folder, as it does for the shell: where it is a
/// symbolic link, the folder the link leads to, backed up at its real
/// path, with a warning that says so. Written without, a root that is a
/// symbolic link is the link (the walk never follows one); where it leads
/// to a folder, a warning says how to back up that folder instead.
fn root_path(cwd: &Path, given: &Path) -> Result<PathBuf> {
    let names_folder = live_paths::names_folder(given.as_os_str());
    let path = live_paths::absolute(cwd, given);
    let meta = std::fs::symlink_metadata(&path);
    let is_link = meta.as_ref().is_ok_and(|m| m.file_type().is_symlink());
    let shown = escape_path(given);
    if !is_link {
        // `file/` is "Not a directory" to the shell too.
        if names_folder && meta.is_ok_and(|m| !m.is_dir()) {
            plugin_api::bail!(
                "backup root {shown} names a folder, but it is not one: give it without the /"
            );
        }
        return Ok(path);
    }
    if !names_folder {
        if path.is_dir() {
            plugin_api::tracing::warn!(
                "backup root {shown} is a symbolic link to a folder: only the link is backed \
                 up; write {shown}/ to back up the folder it leads to"
            );
        }
        return Ok(path);
    }
    match std::fs::canonicalize(&path) {
        Ok(real) if real.is_dir() => {
            plugin_api::tracing::warn!(
                "backup root {shown} is a symbolic link to the folder {}: that folder is backed \
                 up, at its own path",
                escape_path(&real)
            );
            Ok(real)
        }
        Ok(real) => plugin_api::bail!(
            "backup root {shown}: it leads to {}, which is not a folder",
            escape_path(&real)
        ),
        Err(e) => plugin_api::bail!("backup root {shown}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_local_repository_has_a_folder() {
        use std::os::unix::ffi::OsStrExt;
        let latin1 = Path::new(std::ffi::OsStr::from_bytes(b"/srv/d\xe9p\xf4t"));
        assert_eq!(local_folder(latin1), Some(latin1.to_path_buf()));
        assert_eq!(
            local_folder(Path::new("file:///srv/r")),
            Some(PathBuf::from("/srv/r"))
        );
        assert_eq!(local_folder(Path::new("relative")), Some("relative".into()));
        assert_eq!(local_folder(Path::new("sftp://h/srv/r")), None);
        assert_eq!(local_folder(Path::new("s3://bucket")), None);
    }

    #[test]
    fn the_repository_is_never_a_root() {
        let roots = vec![PathBuf::from("/srv"), PathBuf::from("/srv/repo/x")];
        assert_eq!(
            leave_out_the_repository(roots, Some(Path::new("/srv/repo"))).unwrap(),
            vec![PathBuf::from("/srv")]
        );
        let e = leave_out_the_repository(
            vec![PathBuf::from("/srv/repo")],
            Some(Path::new("/srv/repo")),
        )
        .unwrap_err();
        assert!(e.to_string().contains("nothing to back up"), "{e}");
        let roots = vec![PathBuf::from("/srv/repo2")];
        assert_eq!(
            leave_out_the_repository(roots.clone(), Some(Path::new("/srv/repo"))).unwrap(),
            roots
        );
    }

    #[test]
    fn roots_are_local_paths_or_file_urls() {
        assert_eq!(
            local_root(PathBuf::from("file:///srv/data")).unwrap(),
            PathBuf::from("/srv/data")
        );
        for path in ["data", "/a:b", "sftp:x", "./sftp://x", "9p://x"] {
            assert_eq!(
                local_root(PathBuf::from(path)).unwrap(),
                PathBuf::from(path)
            );
        }
        for url in ["sftp://host/tmp", "s3://bucket/x", "https://h/"] {
            let e = local_root(PathBuf::from(url)).unwrap_err();
            assert!(
                e.to_string().contains(&format!("backup root {url}: ")),
                "{e}"
            );
        }
    }

    #[test]
    fn a_root_is_walked_with_another_only_if_no_symlink_is_on_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        std::os::unix::fs::symlink("real", d.join("link")).unwrap();
        // A root inside a folder root stays a root.
        let roots = vec![d.join("real"), d.join("real/sub")];
        assert_eq!(check_nested_roots(roots.clone()).unwrap(), roots);
        // Below a root that is a link, or below a link inside a root: refused.
        for outer in [d.join("link"), d.to_path_buf()] {
            let e =
                check_nested_roots(vec![outer.clone(), d.join("link/sub")]).expect_err("refused");
            assert!(
                e.to_string().contains(&format!(
                    "is below {}, a symbolic link",
                    d.join("link").display()
                )),
                "{e}"
            );
        }
        // Alone, a root below a link is kept.
        assert_eq!(
            check_nested_roots(vec![d.join("link/sub")]).unwrap(),
            vec![d.join("link/sub")]
        );
    }
}
