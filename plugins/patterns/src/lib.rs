//! Path patterns in four styles, chosen by a prefix as in Borg, the one
//! way every bundled command reads them (`--exclude`, `--include`,
//! `--exclude-from`, `find`, and the PATH arguments of `ls` and
//! `restore`):
//!
//! * no prefix, or `re:`: a regular expression searched anywhere in the
//!   absolute path (Obnam's style, the default): `\.tmp$`,
//!   `^/home/[^/]+/\.cache$`;
//! * `sh:` or `glob:`: a shell glob (`*` and `?` stay within one path
//!   component, `**` crosses folders, `[...]` is a set). A glob that does
//!   not start with `/` matches at any depth (`sh:*.tmp` is `**/*.tmp`);
//!   one that does matches the whole path from the root. A trailing `/`
//!   is dropped (`sh:cache/` is `sh:cache`), as Borg does;
//! * `pp:`: a path prefix: the path itself and everything below it
//!   (`pp:/home/alice/tmp` matches `/home/alice/tmp/x`, not
//!   `/home/alice/tmpfile`; `pp:/` matches every path).
//!
//! Paths are bytes. A path that is UTF-8 is matched by a regular
//! expression as text (`.` is one character, `\w` a Unicode word
//! character); one that is not (a Latin-1 name, say) is matched byte by
//! byte, as Obnam 1.x matched every name, so that `caf.$` matches
//! `caf\xe9` as it matches `café`. Bytes of a pattern that are not UTF-8
//! match those bytes. `.` matches a newline too (a name may hold one).
//!
//! A regular expression that does not compile but would as a glob
//! (`*.tmp`) is an error that suggests the `sh:` form. Every error is one
//! line that names the pattern.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// What is wrong with a pattern: one line, naming it as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

impl std::fmt::Display for PatternError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

/// A pattern's text as messages show it: escaped where it is not
/// printable UTF-8.
pub fn shown(text: &[u8]) -> String {
    let mut out = String::new();
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether `arg` names a pattern by its prefix (`sh:`, `glob:`, `re:`),
/// rather than a path (plain, or `pp:PATH`): how `ls`, `restore` and
/// `dump` tell their PATH arguments apart.
pub fn is_pattern(arg: &[u8]) -> bool {
    matches!(styled(arg), Styled::Glob(_)) || arg.starts_with(b"re:")
}

/// A pattern's style and what follows its prefix.
enum Styled<'a> {
    Regex(&'a [u8]),
    Glob(&'a [u8]),
    Prefix(&'a [u8]),
}

/// Refuse a pattern that is only its style's prefix (`sh:`, `glob:`,
/// `re:`: what `--exclude "sh:$PATTERN"` gives with the variable unset).
/// Its empty rest matches every path: as an exclusion, it left out the
/// whole tree, exit 0. (An empty `pp:` is no absolute path, and refused
/// as such; an empty pattern with no prefix is refused by the settings.)
fn not_bare_prefix(pattern: &[u8]) -> Result<(), PatternError> {
    match styled(pattern) {
        Styled::Glob(b"") | Styled::Regex(b"") => Err(PatternError(format!(
            "'{}' is a pattern's prefix with no pattern after it, which would match every \
             path; give the pattern",
            shown(pattern)
        ))),
        _ => Ok(()),
    }
}

fn styled(pattern: &[u8]) -> Styled<'_> {
    if let Some(rest) = pattern.strip_prefix(b"sh:") {
        Styled::Glob(rest)
    } else if let Some(rest) = pattern.strip_prefix(b"glob:") {
        Styled::Glob(rest)
    } else if let Some(rest) = pattern.strip_prefix(b"pp:") {
        Styled::Prefix(rest)
    } else if let Some(rest) = pattern.strip_prefix(b"re:") {
        Styled::Regex(rest)
    } else {
        Styled::Regex(pattern)
    }
}

/// The globset glob for the text after `sh:`.
fn build_glob(pattern: &[u8], glob: &[u8]) -> Result<globset::Glob, PatternError> {
    let Ok(glob) = std::str::from_utf8(glob) else {
        // globset takes text: bytes that are not UTF-8 would never match.
        return Err(PatternError(format!(
            "shell glob '{}' is not UTF-8 text; give the name with re: (which matches bytes)",
            shown(pattern)
        )));
    };
    let glob = if glob.len() > 1 {
        glob.trim_end_matches('/')
    } else {
        glob
    };
    let full = if glob.starts_with('/') || glob.starts_with("**") {
        glob.to_string()
    } else {
        format!("**/{glob}")
    };
    GlobBuilder::new(&full)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| PatternError(format!("bad shell glob '{}': {}", shown(pattern), e.kind())))
}

/// The prefix after `pp:`, without trailing slashes (`/` itself is empty:
/// every path).
fn prefix_of(pattern: &[u8], prefix: &[u8]) -> Result<Vec<u8>, PatternError> {
    if !prefix.starts_with(b"/") {
        return Err(PatternError(format!(
            "bad path prefix '{}': it must be an absolute path",
            shown(pattern)
        )));
    }
    let mut prefix = prefix.to_vec();
    while prefix.last() == Some(&b'/') {
        prefix.pop();
    }
    Ok(prefix)
}

fn prefix_matches(prefix: &[u8], path: &[u8]) -> bool {
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// A regular expression's text from its bytes: bytes that are not UTF-8
/// become byte escapes outside Unicode mode (`(?-u:\xFF)`), so that they
/// match those bytes in a name, as the rest of the pattern matches its
/// characters.
fn regex_text(re: &[u8]) -> String {
    // `.` is any character, a newline too: a name may hold one, and
    // `new.line` or `^/home/.*` skipped such a file (`find` found nothing,
    // `--exclude` left it in), where a glob's `?` and `*` match it.
    // `(?-s)` in the pattern turns it off.
    let mut out = String::from("(?s)");
    for chunk in re.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("(?-u:\\x{b:02X})"));
        }
    }
    out
}

/// The line of a regex error that says what is wrong (the library's
/// message repeats the pattern, with a caret under the fault).
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text)
        .trim();
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn regex_error(pattern: &[u8], explicit: bool, e: &regex::Error) -> PatternError {
    let looks_like_glob = !explicit
        && pattern.iter().any(|b| b"*?".contains(b))
        && build_glob(pattern, pattern).is_ok();
    let hint = if looks_like_glob {
        format!(
            "; patterns are regular expressions unless prefixed: for a shell glob, write 'sh:{}'",
            shown(pattern)
        )
    } else {
        String::new()
    };
    PatternError(format!(
        "bad regular expression '{}': {}{hint}",
        shown(pattern),
        regex_reason(e)
    ))
}

/// A regular expression, compiled twice: as text, for paths that are
/// UTF-8, and byte by byte, for those that are not.
struct Regexes {
    text: Regex,
    /// `None` where the expression needs Unicode (`\p{L}`): it then
    /// matches every path as text.
    bytes: Option<Regex>,
}

impl Regexes {
    fn new(pattern: &[u8], re: &[u8]) -> Result<Self, PatternError> {
        let source = regex_text(re);
        let explicit = pattern.starts_with(b"re:");
        let text = Regex::new(&source).map_err(|e| regex_error(pattern, explicit, &e))?;
        let bytes = RegexBuilder::new(&source).unicode(false).build().ok();
        Ok(Regexes { text, bytes })
    }

    fn is_match(&self, path: &[u8]) -> bool {
        match (&self.bytes, std::str::from_utf8(path)) {
            (Some(bytes), Err(_)) => bytes.is_match(path),
            _ => self.text.is_match(path),
        }
    }
}

enum Matcher {
    Regex(Regexes),
    Glob(GlobMatcher),
    Prefix(Vec<u8>),
}

/// One pattern of any style.
pub struct Pattern {
    text: String,
    matcher: Matcher,
}

impl Pattern {
    /// Parse a pattern given as bytes (a command-line argument may be any
    /// bytes).
    pub fn new(pattern: &[u8]) -> Result<Self, PatternError> {
        not_bare_prefix(pattern)?;
        let matcher = match styled(pattern) {
            Styled::Regex(re) => Matcher::Regex(Regexes::new(pattern, re)?),
            Styled::Glob(glob) => Matcher::Glob(build_glob(pattern, glob)?.compile_matcher()),
            Styled::Prefix(prefix) => Matcher::Prefix(prefix_of(pattern, prefix)?),
        };
        Ok(Pattern {
            text: shown(pattern),
            matcher,
        })
    }

    /// The pattern as given, for messages.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `path` (absolute, bytes) matches.
    pub fn is_match(&self, path: &[u8]) -> bool {
        match &self.matcher {
            Matcher::Regex(r) => r.is_match(path),
            Matcher::Glob(g) => g.is_match(Path::new(OsStr::from_bytes(path))),
            Matcher::Prefix(p) => prefix_matches(p, path),
        }
    }
}

/// Why a set of patterns did not compile: which pattern (if one is to
/// blame), and what is wrong with it. The caller says where the pattern
/// came from.
#[derive(Debug)]
pub struct SetError {
    /// The index of the bad pattern.
    pub index: Option<usize>,
    pub reason: String,
}

/// A set of patterns of any styles, matched at once; the first that
/// matches is named. For the exclusion rules, asked about every file.
pub struct PatternSet {
    texts: Vec<String>,
    regexes: RegexSet,
    /// The same byte by byte, for paths that are not UTF-8: those that
    /// can be (not those that need Unicode, such as `\p{L}`, which match
    /// such a path as text), with the index in `regexes` of each. One
    /// that needs Unicode made every other match as text too, and a byte
    /// written `\xe9` then matched nothing.
    regexes_bytes: RegexSet,
    bytes_at: Vec<usize>,
    /// Indices in `regexes` of those that need Unicode.
    unicode_only: Vec<usize>,
    /// Index in `texts` of each regular expression of `regexes`.
    regex_at: Vec<usize>,
    globs: GlobSet,
    glob_at: Vec<usize>,
    /// Path prefixes, with their index in `texts`.
    prefixes: Vec<(Vec<u8>, usize)>,
}

impl PatternSet {
    /// Compile `patterns`; an error names the bad one.
    pub fn new(patterns: &[String]) -> Result<Self, SetError> {
        let bad = |i: usize, e: PatternError| SetError {
            index: Some(i),
            reason: e.0,
        };
        let whole = |reason: String| SetError {
            index: None,
            reason,
        };
        let mut regexes = Vec::new();
        let mut regex_at = Vec::new();
        let mut globs = GlobSetBuilder::new();
        let mut glob_at = Vec::new();
        let mut prefixes = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let pattern = p.as_bytes();
            not_bare_prefix(pattern).map_err(|e| bad(i, e))?;
            match styled(pattern) {
                Styled::Glob(glob) => {
                    globs.add(build_glob(pattern, glob).map_err(|e| bad(i, e))?);
                    glob_at.push(i);
                }
                Styled::Prefix(prefix) => {
                    prefixes.push((prefix_of(pattern, prefix).map_err(|e| bad(i, e))?, i));
                }
                Styled::Regex(re) => {
                    // Compiled alone first, for an error that names it.
                    Regexes::new(pattern, re).map_err(|e| bad(i, e))?;
                    regexes.push(regex_text(re));
                    regex_at.push(i);
                }
            }
        }
        let (mut bytes_at, mut unicode_only) = (Vec::new(), Vec::new());
        for (k, re) in regexes.iter().enumerate() {
            match RegexBuilder::new(re).unicode(false).build() {
                Ok(_) => bytes_at.push(k),
                Err(_) => unicode_only.push(k),
            }
        }
        let by_bytes: Vec<&String> = bytes_at.iter().map(|&k| &regexes[k]).collect();
        let regexes_bytes = RegexSetBuilder::new(by_bytes)
            .unicode(false)
            .build()
            .map_err(|e| whole(regex_reason(&e)))?;
        Ok(PatternSet {
            texts: patterns.to_vec(),
            regexes: RegexSet::new(&regexes).map_err(|e| whole(regex_reason(&e)))?,
            regexes_bytes,
            bytes_at,
            unicode_only,
            regex_at,
            globs: globs.build().map_err(|e| whole(e.to_string()))?,
            glob_at,
            prefixes,
        })
    }

    /// The first pattern (in the order given) that matches `path`.
    pub fn first_match(&self, path: &[u8]) -> Option<&str> {
        let by_regex = match std::str::from_utf8(path) {
            Ok(_) => self.regexes.matches(path).iter().next(),
            Err(_) => {
                let by_bytes = self.regexes_bytes.matches(path).iter().next();
                let by_text = || {
                    self.regexes
                        .matches(path)
                        .iter()
                        .find(|k| self.unicode_only.binary_search(k).is_ok())
                };
                let by_text = match self.unicode_only.is_empty() {
                    true => None,
                    false => by_text(),
                };
                [by_bytes.map(|k| self.bytes_at[k]), by_text]
                    .into_iter()
                    .flatten()
                    .min()
            }
        }
        .map(|k| self.regex_at[k]);
        let by_glob = if self.glob_at.is_empty() {
            None
        } else {
            self.globs
                .matches(Path::new(OsStr::from_bytes(path)))
                .into_iter()
                .min()
                .map(|k| self.glob_at[k])
        };
        let by_prefix = self
            .prefixes
            .iter()
            .filter(|(pre, _)| prefix_matches(pre, path))
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

#[cfg(test)]
mod tests;
