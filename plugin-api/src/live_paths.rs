//! Paths of the live file system as a user gives them on the command
//! line or in a config file, made absolute the one way every command
//! takes them: `obnam verify DIR` must find what `obnam backup DIR`
//! stored, from the same folder, and the exclude plugin must know the
//! log file that `--log` names by the path the walk reaches it by.
//! (Since 0.1.14.)

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// `path` made absolute against `cwd`, with `.` and `..` resolved by
/// name, as the shell's `cd -L` does: symbolic links are not resolved (a
/// backup root that is a link is backed up as the link). `/..` is `/`.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether `path` is written as naming a folder: with a trailing `/` or
/// `/.` (not `/` itself). Where it is a symbolic link, it names the
/// folder the link leads to, as it does for the shell.
pub fn names_folder(path: &OsStr) -> bool {
    let bytes = path.as_bytes();
    bytes.len() > 1 && (bytes.ends_with(b"/") || bytes.ends_with(b"/."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_by_name() {
        let cwd = Path::new("/home/u/src");
        assert_eq!(
            absolute(cwd, Path::new("docs")),
            PathBuf::from("/home/u/src/docs")
        );
        assert_eq!(
            absolute(cwd, Path::new("../v/./x/")),
            PathBuf::from("/home/u/v/x")
        );
        assert_eq!(absolute(cwd, Path::new("/")), PathBuf::from("/"));
        assert_eq!(absolute(cwd, Path::new("/../..")), PathBuf::from("/"));
        assert_eq!(absolute(cwd, Path::new("/a//b/")), PathBuf::from("/a/b"));
    }

    #[test]
    fn a_trailing_slash_or_slash_dot_names_a_folder() {
        for (path, folder) in [
            ("link/", true),
            ("link/.", true),
            ("/srv/link/", true),
            ("link", false),
            ("/", false),
            ("link/..", false),
            (".", false),
        ] {
            assert_eq!(names_folder(OsStr::new(path)), folder, "{path}");
        }
    }
}
