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

use globset::{GlobBuilder, GlobMatcher};
use regex::bytes::Regex;

use plugin_api::{EntryKind, GenerationReader, Result};

use crate::names::{self, escape};
use crate::walk::Parts;

/// A pattern that selects paths.
pub enum Matcher {
    Glob(GlobMatcher),
    Regex(Regex),
}

impl Matcher {
    fn is_match(&self, path: &[u8]) -> bool {
        match self {
            Matcher::Glob(g) => g.is_match(names::as_path(path)),
            Matcher::Regex(r) => r.is_match(path),
        }
    }
}

/// One PATH argument.
pub enum PathArg {
    Exact(Parts),
    Pattern { text: String, matcher: Matcher },
}

/// Parse the arguments of `command` (before the repository is opened, so
/// that a bad one is refused at once).
pub fn parse(command: &str, args: &[OsString]) -> Result<Vec<PathArg>> {
    let mut out = Vec::new();
    for arg in args {
        let text = arg.to_string_lossy();
        let styled = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
        if let Some(glob) = styled("sh:").or_else(|| styled("glob:")) {
            let full = if glob.starts_with('/') || glob.starts_with("**") {
                glob.clone()
            } else {
                format!("**/{glob}")
            };
            let g = GlobBuilder::new(&full)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    plugin_api::Error::msg(format!(
                        "{command}: bad shell glob '{text}': {}",
                        e.kind()
                    ))
                })?;
            out.push(PathArg::Pattern {
                text: text.to_string(),
                matcher: Matcher::Glob(g.compile_matcher()),
            });
        } else if let Some(re) = styled("re:") {
            let r = Regex::new(&re).map_err(|e| {
                plugin_api::Error::msg(format!("{command}: bad regular expression '{text}': {e}"))
            })?;
            out.push(PathArg::Pattern {
                text: text.to_string(),
                matcher: Matcher::Regex(r),
            });
        } else {
            let path = match arg.as_encoded_bytes().strip_prefix(b"pp:") {
                Some(rest) => OsString::from(String::from_utf8_lossy(rest).into_owned()),
                None => arg.clone(),
            };
            out.push(PathArg::Exact(
                names::parse_absolute(&path).map_err(plugin_api::Error::msg)?,
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
            PathArg::Exact(parts) => exact.push(parts),
            PathArg::Pattern { text, matcher } => patterns.push((text, matcher, false)),
        }
    }
    if patterns.is_empty() {
        return Ok(exact);
    }
    let mut stack: Vec<Parts> = vec![Vec::new()];
    while let Some(dir) = stack.pop() {
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
            for (_, matcher, used) in patterns.iter_mut() {
                if matcher.is_match(&path) {
                    *used = true;
                    matched = true;
                }
            }
            if matched {
                exact.push(parts);
            } else if child.kind == EntryKind::Dir {
                stack.push(parts);
            }
        }
    }
    if let Some((text, _, _)) = patterns.iter().find(|(_, _, used)| !used) {
        plugin_api::bail!(
            "pattern '{}' matches nothing in generation {gen}",
            escape(text.as_bytes())
        );
    }
    Ok(exact)
}
