//! Names and paths as a generation stores them: raw bytes that need not be
//! UTF-8.
//!
//! Two jobs live here. [`check_name`] decides whether a name read from the
//! repository may be created in the restore target at all: a repository is
//! input, and a hostile or corrupt one must not make restore write outside
//! its target, so a name that is empty, `.`, `..`, or contains `/` or NUL is
//! refused. [`escape`] shows any name on a terminal without garbling it:
//! invalid UTF-8, control characters and bidirectional overrides become
//! visible escapes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Why a stored name cannot be restored, or `Ok` if it can: the check
/// every walker of a generation shares.
pub use plugin_api::names::check_entry_name as check_name;

/// Names and paths as printable text: the escaping every command shares,
/// so that a name looks the same in `ls`, `restore`, `backup` and the rest.
pub use plugin_api::names::{escape, escape_path, show_child};

/// The absolute generation path of `name` in the directory `parent`.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(parent.len() + name.len() + 1);
    path.extend_from_slice(parent);
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Parse a path given on the command line: it must be absolute; `.`
/// components and repeated or trailing slashes are dropped; `..` is
/// refused. Returns the components (none for `/`).
pub fn parse_absolute(arg: &OsStr) -> Result<Vec<Vec<u8>>, String> {
    let bytes = arg.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(format!(
            "'{}' is not an absolute path (paths in a generation start with '/')",
            escape(bytes)
        ));
    }
    let mut parts = Vec::new();
    for part in bytes.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(format!("'{}' contains '..'", escape(bytes)));
            }
            p => parts.push(p.to_vec()),
        }
    }
    Ok(parts)
}

/// Stored path bytes as a `Path`, for the repository API.
pub fn as_path(path: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(path))
}

/// The absolute path made of `parts`.
pub fn from_parts(parts: &[Vec<u8>]) -> Vec<u8> {
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut path = Vec::new();
    for p in parts {
        path.push(b'/');
        path.extend_from_slice(p);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        assert!(check_name(b"file").is_ok());
        assert!(check_name(b"...").is_ok());
        assert!(check_name(b".hidden").is_ok());
        assert!(check_name(b"new\nline").is_ok());
        assert!(check_name(b"\xff\xfe").is_ok());
    }

    #[test]
    fn dangerous_names_are_refused() {
        assert!(check_name(b"").is_err());
        assert!(check_name(b".").is_err());
        assert!(check_name(b"..").is_err());
        assert!(check_name(b"../etc").is_err());
        assert!(check_name(b"a/b").is_err());
        assert!(check_name(b"/").is_err());
        assert!(check_name(b"a\0b").is_err());
    }

    #[test]
    fn join_makes_absolute_paths() {
        assert_eq!(join(b"/", b"home"), b"/home");
        assert_eq!(join(b"/home", b"x"), b"/home/x");
    }

    #[test]
    fn command_line_paths_are_parsed() {
        assert_eq!(
            parse_absolute(OsStr::new("/home//x/./y/")).unwrap(),
            vec![b"home".to_vec(), b"x".to_vec(), b"y".to_vec()]
        );
        assert!(parse_absolute(OsStr::new("/")).unwrap().is_empty());
        assert!(parse_absolute(OsStr::new("home/x")).is_err());
        assert!(parse_absolute(OsStr::new("/home/../etc")).is_err());
        assert_eq!(
            from_parts(&parse_absolute(OsStr::new("/a/b")).unwrap()),
            b"/a/b"
        );
        assert_eq!(from_parts(&[]), b"/");
    }
}
