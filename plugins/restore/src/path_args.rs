//! The PATH arguments of `restore` and `ls`: absolute paths, or patterns
//! in the styles `--exclude` takes, which select the matching paths of the
//! generation (and everything below each):
//!
//! * `/home/alice/src` or `pp:/home/alice/src`: that path;
//! * `sh:GLOB` or `glob:GLOB`: a shell glob (`*` and `?` within one name,
//!   `**` across folders); without a leading `/` it matches at any depth,
//!   so `sh:*.odt` selects every `.odt` file;
//! * `re:REGEX`: a regular expression searched anywhere in the path.
//!
//! A pattern that selects nothing is an error, as a path that is not in
//! the generation is.

use std::ffi::OsString;

use patterns::Pattern;
use plugin_api::{EntryKind, GenerationReader, Result};

use crate::names;
use crate::walk::Parts;

/// One PATH argument.
pub enum PathArg {
    /// A path, and whether it was written with a `/` at its end (it then
    /// names a folder).
    Exact(Parts, bool),
    Pattern(Pattern),
}

/// Parse the arguments of `command` (before the repository is opened, so
/// that a bad one is refused at once).
pub fn parse(command: &str, args: &[OsString]) -> Result<Vec<PathArg>> {
    let mut out = Vec::new();
    for arg in args {
        let bytes = arg.as_encoded_bytes();
        if patterns::is_pattern(bytes) {
            let pattern = Pattern::new(bytes)
                .map_err(|e| plugin_api::Error::msg(format!("{command}: {e}")))?;
            out.push(PathArg::Pattern(pattern));
        } else {
            // pp:PATH is PATH, whatever its bytes.
            let path = match bytes.strip_prefix(b"pp:") {
                Some(rest) => <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rest)
                    .to_os_string(),
                None => arg.clone(),
            };
            // `PATH/` or `PATH/.`, as backup, dump and verify take it.
            let folder = plugin_api::live_paths::names_folder(&path);
            out.push(PathArg::Exact(
                names::parse_absolute(&path).map_err(plugin_api::Error::msg)?,
                folder,
            ));
        }
    }
    Ok(out)
}

/// The paths `args` select in the generation `reader` reads (`gen` is its
/// id, for errors): exact paths as they are (checked later by the
/// caller), and for patterns the topmost matching paths (what is below a
/// match comes with it).
pub fn expand(reader: &GenerationReader, args: Vec<PathArg>, gen: &str) -> Result<Vec<Parts>> {
    let mut exact = Vec::new();
    let mut patterns = Vec::new();
    for arg in args {
        match arg {
            PathArg::Exact(parts, folder) => {
                // `PATH/` names a folder, as to the shell: a symbolic link
                // to one (as completion writes it) or a file is refused,
                // not taken for itself (the link alone was restored).
                if folder {
                    folder_as_written(reader, &parts, gen)?;
                }
                exact.push(parts)
            }
            PathArg::Pattern(pattern) => patterns.push((pattern, false)),
        }
    }
    if patterns.is_empty() {
        return Ok(exact);
    }
    // Folders to search, each with whether a pattern selected it or a
    // folder above it already. Below a selected folder nothing more is
    // selected (it comes with the folder), but the search goes on while a
    // pattern has matched nothing yet: its matches may all be in there.
    let mut stack: Vec<(Parts, bool)> = vec![(Vec::new(), false)];
    while let Some((dir, selected)) = stack.pop() {
        if selected && patterns.iter().all(|(_, used)| *used) {
            continue;
        }
        let dir_path = names::from_parts(&dir);
        let children = reader
            .list_dir(names::as_path(&dir_path))?
            .unwrap_or_default();
        for child in children.into_iter().rev() {
            if names::check_name(&child.name).is_err() {
                continue;
            }
            let mut parts = dir.clone();
            parts.push(child.name.clone());
            let path = names::from_parts(&parts);
            let mut matched = false;
            for (pattern, used) in patterns.iter_mut() {
                if pattern.is_match(&path) {
                    *used = true;
                    matched = true;
                }
            }
            if matched && !selected {
                exact.push(parts.clone());
            }
            if child.kind == EntryKind::Dir {
                stack.push((parts, selected || matched));
            }
        }
    }
    if let Some((pattern, _)) = patterns.iter().find(|(_, used)| !used) {
        plugin_api::bail!(
            "pattern '{}' matches nothing in generation {gen}",
            pattern.text()
        );
    }
    Ok(exact)
}

/// Fail unless `parts`, written with a `/` at its end, is a folder in the
/// generation (one that is not there is the caller's to report).
pub fn folder_as_written(reader: &GenerationReader, parts: &Parts, gen: &str) -> Result<()> {
    let path = names::from_parts(parts);
    let Some(entry) = reader.lookup(names::as_path(&path))? else {
        return Ok(());
    };
    if entry.kind == EntryKind::Dir {
        return Ok(());
    }
    let what = match entry.kind {
        EntryKind::Symlink => format!(
            "a symbolic link (to {}): give it without the / for the link, or the folder it \
             leads to",
            names::escape(&entry.target)
        ),
        EntryKind::File => "a file: give it without the /".to_string(),
        _ => "not a folder: give it without the /".to_string(),
    };
    plugin_api::bail!(
        "{}/ names a folder, but in generation {gen} it is {what}",
        names::escape(&path)
    )
}

/// `roots` sorted, without each one that is, or is inside, another: what
/// a command does once for each path asked for.
pub fn outermost(mut roots: Vec<Parts>) -> Vec<Parts> {
    roots.sort();
    let mut kept: Vec<Parts> = Vec::new();
    for root in roots {
        // Sorted, a path's descendants come right after it.
        if kept.last().is_some_and(|k| root.starts_with(k)) {
            continue;
        }
        kept.push(root);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn arg(bytes: &[u8]) -> OsString {
        OsString::from_vec(bytes.to_vec())
    }

    #[test]
    fn patterns_match_names_that_are_not_utf8() {
        let parsed = parse("ls", &[arg(b"re:/x_\xff$"), arg(b"pp:/a/b\xfe")]).unwrap();
        match &parsed[0] {
            PathArg::Pattern(pattern) => {
                assert!(pattern.is_match(b"/home/x_\xff"));
                assert!(!pattern.is_match("/home/x_\u{ff}".as_bytes()));
                assert!(!pattern.is_match("/home/x_\u{fffd}".as_bytes()));
            }
            PathArg::Exact(..) => panic!("re: is a pattern"),
        }
        match &parsed[1] {
            PathArg::Exact(parts, _) => assert_eq!(names::from_parts(parts), b"/a/b\xfe"),
            PathArg::Pattern(_) => panic!("pp: is a path"),
        }
        let err = parse("ls", &[arg(b"sh:*\xff")]).err().unwrap();
        assert!(err.message().contains("is not UTF-8 text"), "{err}");
    }
}
