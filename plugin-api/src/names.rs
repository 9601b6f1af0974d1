//! The one check of names read from a repository, shared by every walker
//! of a generation (restore, ls, fsck, and third-party plugins).
//!
//! A repository is input: a damaged or hostile one may hold an entry whose
//! name is empty, `.` or `..`, or contains `/` or NUL. Such a name cannot
//! be made in a folder, would make a path that points elsewhere (`a` +
//! `/` + `..`), or would make a walker that joins names to paths go round
//! in circles (joining `/` to a path gives `/`). Every walker checks each
//! name with [`check_entry_name`] before it makes a path of it, and
//! reports the entry instead of descending into it.

/// Why a stored entry name is unusable, or `Ok` if it is a proper file
/// name.
pub fn check_entry_name(name: &[u8]) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name == b"." || name == b".." {
        return Err("the name is '.' or '..'");
    }
    if name.contains(&b'/') {
        return Err("the name contains '/'");
    }
    if name.contains(&0) {
        return Err("the name contains a NUL byte");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_proper_names_pass() {
        for good in [&b"a"[..], b"...", b"\xff\xfe", b" ", b"a.b", b".hidden"] {
            assert!(check_entry_name(good).is_ok(), "{good:?}");
        }
        for bad in [&b""[..], b".", b"..", b"/", b"a/b", b"a\0b", b"\0"] {
            assert!(check_entry_name(bad).is_err(), "{bad:?}");
        }
    }
}
