//! Path patterns in four styles, chosen by a prefix as in Borg:
//!
//! * no prefix, or `re:`: a regular expression searched anywhere in the
//!   absolute path (Obnam's style, the default): `\.tmp$`, `^/home/[^/]+/\.cache$`;
//! * `sh:` or `glob:`: a shell glob (`*` and `?` stay within one path
//!   component, `**` crosses folders, `[...]` is a set). A glob that does
//!   not start with `/` matches at any depth (`sh:*.tmp` is `**/*.tmp`);
//!   one that does matches the whole path from the root;
//! * `pp:`: a path prefix: the path itself and everything below it
//!   (`pp:/home/alice/tmp` matches `/home/alice/tmp/x`, not
//!   `/home/alice/tmpfile`).
//!
//! A regular expression that does not compile but would as a glob
//! (`*.tmp`) is an error that suggests the `sh:` form.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::bytes::{Regex, RegexSet};

/// Why a set of patterns did not compile: which pattern (if one is to
/// blame), and what is wrong with it. The caller says where the pattern
/// came from.
#[derive(Debug)]
pub struct PatternError {
    /// The index of the bad pattern.
    pub index: Option<usize>,
    pub reason: String,
}

/// A set of patterns of any styles; the first that matches is named.
pub struct PatternSet {
    texts: Vec<String>,
    regexes: RegexSet,
    /// Index in `texts` of each regular expression of `regexes`.
    regex_at: Vec<usize>,
    globs: GlobSet,
    glob_at: Vec<usize>,
    /// Path prefixes, with their index in `texts`.
    prefixes: Vec<(Vec<u8>, usize)>,
}

/// The glob for `sh:` text `glob`: anchored at the root if it starts with
/// `/`, else at any depth.
fn glob_text(glob: &str) -> String {
    if glob.starts_with('/') || glob.starts_with("**") {
        glob.to_string()
    } else {
        format!("**/{glob}")
    }
}

fn build_glob(glob: &str) -> Result<globset::Glob, globset::Error> {
    GlobBuilder::new(&glob_text(glob))
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

impl PatternSet {
    /// Compile `patterns`; an error names the bad one.
    pub fn new(patterns: &[String]) -> Result<Self, PatternError> {
        let bad = |i: usize, reason: String| PatternError {
            index: Some(i),
            reason,
        };
        let whole = |reason: String| PatternError {
            index: None,
            reason,
        };
        let mut regexes = Vec::new();
        let mut regex_at = Vec::new();
        let mut globs = GlobSetBuilder::new();
        let mut glob_at = Vec::new();
        let mut prefixes = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            if let Some(glob) = p.strip_prefix("sh:").or_else(|| p.strip_prefix("glob:")) {
                let g = build_glob(glob)
                    .map_err(|e| bad(i, format!("bad shell glob '{p}': {}", e.kind())))?;
                globs.add(g);
                glob_at.push(i);
            } else if let Some(prefix) = p.strip_prefix("pp:") {
                let prefix = prefix.trim_end_matches('/');
                if !prefix.starts_with('/') {
                    return Err(bad(
                        i,
                        format!("bad path prefix '{p}': it must be an absolute path"),
                    ));
                }
                prefixes.push((prefix.as_bytes().to_vec(), i));
            } else {
                let re = p.strip_prefix("re:").unwrap_or(p);
                if let Err(e) = Regex::new(re) {
                    let why = first_line(&e.to_string()).to_string();
                    let looks_like_glob = p.contains(['*', '?']) && build_glob(p).is_ok();
                    let hint = if !p.starts_with("re:") && looks_like_glob {
                        format!(
                            "; patterns are regular expressions unless prefixed: for a shell \
                             glob, write 'sh:{p}'"
                        )
                    } else {
                        String::new()
                    };
                    return Err(bad(i, format!("bad regular expression '{p}': {why}{hint}")));
                }
                regexes.push(re.to_string());
                regex_at.push(i);
            }
        }
        Ok(PatternSet {
            texts: patterns.to_vec(),
            regexes: RegexSet::new(&regexes).map_err(|e| whole(e.to_string()))?,
            regex_at,
            globs: globs.build().map_err(|e| whole(e.to_string()))?,
            glob_at,
            prefixes,
        })
    }

    /// The first pattern (in the order given) that matches `path`.
    pub fn first_match(&self, path: &[u8]) -> Option<&str> {
        let by_regex = self
            .regexes
            .matches(path)
            .iter()
            .next()
            .map(|k| self.regex_at[k]);
        let by_glob = if self.glob_at.is_empty() {
            None
        } else {
            let os = std::path::Path::new(std::ffi::OsStr::from_bytes(path));
            self.globs
                .matches(os)
                .into_iter()
                .min()
                .map(|k| self.glob_at[k])
        };
        let by_prefix = self
            .prefixes
            .iter()
            .filter(|(pre, _)| {
                path.starts_with(pre) && (path.len() == pre.len() || path[pre.len()] == b'/')
            })
            .map(|(_, i)| *i)
            .min();
        [by_regex, by_glob, by_prefix]
            .into_iter()
            .flatten()
            .min()
            .map(|i| self.texts[i].as_str())
    }

    /// Whether any pattern matches `path`.
    pub fn is_match(&self, path: &[u8]) -> bool {
        self.first_match(path).is_some()
    }
}

use std::os::unix::ffi::OsStrExt;

/// The line of a regex error that says what is wrong.
fn first_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(p: &[&str]) -> PatternSet {
        PatternSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn error(p: &[&str]) -> PatternError {
        PatternSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .err()
            .unwrap()
    }

    #[test]
    fn regular_expressions_are_searched_anywhere() {
        let s = set(&[r"\.git"]);
        assert!(s.is_match(b"/src/.git"));
        assert!(s.is_match(b"/src/.github/x"));
        assert!(!set(&[r"/\.git$"]).is_match(b"/src/.github"));
        // Unescaped, the dot matches any character: `.git` matches /legit.
        assert!(set(&[".git"]).is_match(b"/legit"));
        assert!(set(&["re:\\.tmp$"]).is_match(b"/a/b.tmp"));
    }

    #[test]
    fn globs_match_at_any_depth_unless_rooted() {
        let s = set(&["sh:*.tmp"]);
        assert!(s.is_match(b"/a.tmp"));
        assert!(s.is_match(b"/x/y/z.tmp"));
        assert!(!s.is_match(b"/x/y/z.tmpl"));
        let rooted = set(&["glob:/home/*/cache"]);
        assert!(rooted.is_match(b"/home/alice/cache"));
        assert!(!rooted.is_match(b"/home/alice/x/cache"));
        assert!(!rooted.is_match(b"/srv/home/alice/cache"));
        let deep = set(&["sh:/home/**/node_modules"]);
        assert!(deep.is_match(b"/home/a/b/c/node_modules"));
        assert!(set(&["sh:.git"]).is_match(b"/src/.git"));
        assert!(!set(&["sh:.git"]).is_match(b"/src/legit"));
    }

    #[test]
    fn prefixes_match_whole_components() {
        let s = set(&["pp:/home/alice/tmp/"]);
        assert!(s.is_match(b"/home/alice/tmp"));
        assert!(s.is_match(b"/home/alice/tmp/x/y"));
        assert!(!s.is_match(b"/home/alice/tmpfile"));
    }

    #[test]
    fn the_first_matching_pattern_is_named() {
        let s = set(&["pp:/a", "sh:*.x", r"\.x$"]);
        assert_eq!(s.first_match(b"/b/c.x"), Some("sh:*.x"));
        assert_eq!(s.first_match(b"/a/c.x"), Some("pp:/a"));
        assert_eq!(s.first_match(b"/b/c.y"), None);
    }

    #[test]
    fn bad_patterns_are_named_and_globs_get_a_hint() {
        let err = error(&["a", "*.tmp"]);
        assert_eq!(err.index, Some(1));
        assert!(
            err.reason.starts_with("bad regular expression '*.tmp'"),
            "{err:?}"
        );
        assert!(err.reason.contains("write 'sh:*.tmp'"), "{err:?}");
        let err = error(&["("]);
        assert!(!err.reason.contains("sh:"), "{err:?}");
        let err = error(&["sh:["]);
        assert!(err.reason.starts_with("bad shell glob 'sh:['"), "{err:?}");
        let err = error(&["pp:relative"]);
        assert!(err.reason.contains("absolute"), "{err:?}");
    }
}
