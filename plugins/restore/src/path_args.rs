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
        let bytes = arg.as_encoded_bytes();
        let text = arg.to_string_lossy();
        let styled = |prefix: &str| text.strip_prefix(prefix).map(str::to_string);
        if let Some(glob) = styled("sh:").or_else(|| styled("glob:")) {
            // A glob is text to globset: bytes that are not UTF-8 would
            // be turned into U+FFFD and never match.
            if arg.to_str().is_none() {
                plugin_api::bail!(
                    "{command}: shell glob '{}' is not UTF-8 text; give the name with re: \
                     (which matches bytes) or pp:",
                    escape(bytes)
                );
            }
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
        } else if let Some(re) = bytes.strip_prefix(b"re:") {
            let r = Regex::new(&byte_pattern(re)).map_err(|e| {
                plugin_api::Error::msg(format!("{command}: bad regular expression '{text}': {e}"))
            })?;
            out.push(PathArg::Pattern {
                text: text.to_string(),
                matcher: Matcher::Regex(r),
            });
        } else {
            // pp:PATH is PATH, whatever its bytes.
            let path = match bytes.strip_prefix(b"pp:") {
                Some(rest) => <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rest)
                    .to_os_string(),
                None => arg.clone(),
            };
            out.push(PathArg::Exact(
                names::parse_absolute(&path).map_err(plugin_api::Error::msg)?,
            ));
        }
    }
    Ok(out)
}

/// A regular expression's text from its bytes: bytes that are not UTF-8
/// become byte escapes outside Unicode mode (`(?-u:\xFF)`), so that they
/// match those bytes in a name, as the rest of the pattern matches its
/// characters.
fn byte_pattern(re: &[u8]) -> String {
    let mut out = String::new();
    for chunk in re.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("(?-u:\\x{b:02X})"));
        }
    }
    out
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
            PathArg::Pattern { matcher, .. } => {
                assert!(matcher.is_match(b"/home/x_\xff"));
                assert!(!matcher.is_match("/home/x_\u{ff}".as_bytes()));
                assert!(!matcher.is_match("/home/x_\u{fffd}".as_bytes()));
            }
            PathArg::Exact(_) => panic!("re: is a pattern"),
        }
        match &parsed[1] {
            PathArg::Exact(parts) => assert_eq!(names::from_parts(parts), b"/a/b\xfe"),
            PathArg::Pattern { .. } => panic!("pp: is a path"),
        }
        let err = parse("ls", &[arg(b"sh:*\xff")]).err().unwrap();
        assert!(err.message().contains("is not UTF-8 text"), "{err}");
    }
}
