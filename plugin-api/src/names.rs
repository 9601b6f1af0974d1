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
//!
//! It also holds the one way every command shows a name or a path in its
//! messages ([`escape`]): names are any bytes, and one printed raw could
//! fake an output line (a newline and `ERROR: ...`), send escape
//! sequences to the terminal, or look like another name (two invalid
//! bytes both shown as U+FFFD).

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

/// Whether `c` would change how a terminal shows the text after it: a
/// control character, or a bidirectional formatting character.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `bytes` as printable text: valid UTF-8 is kept, except that `\` becomes
/// `\\`, newline, tab and carriage return become `\n`, `\t`, `\r`, other
/// control and bidirectional characters become `\u{XXXX}`, and bytes that
/// are not UTF-8 become `\xNN`. Different inputs give different outputs.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// A message that may hold text made elsewhere (a plugin's reason, a
/// pattern, paths escaped already), as printable text: only what would
/// change how a terminal shows it is escaped, as [`escape`] does it; a
/// `\` stays one (escaping it again would double every backslash of
/// the paths and patterns the message escaped or quotes).
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe_char(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// A path of the file system (a backup root, a file being read, a
/// mount point) as printable text, escaped as [`escape`] does.
pub fn escape_path(path: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape(path.as_os_str().as_bytes())
}

/// A single name as printable text: like [`escape`], and a `/` in it
/// becomes `\x2f`, so that it cannot pass for a path separator.
pub fn escape_name(name: &[u8]) -> String {
    escape(name).replace('/', "\\x2f")
}

/// The path of `name` in the directory `parent`, as printable text; a name
/// containing `/` (which only a damaged or hostile generation holds) shows
/// it escaped.
pub fn show_child(parent: &[u8], name: &[u8]) -> String {
    let mut shown = escape(parent);
    if !shown.ends_with('/') {
        shown.push('/');
    }
    shown.push_str(&escape_name(name));
    shown
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

    #[test]
    fn escape_text_escapes_what_moves_the_terminal_and_keeps_backslashes() {
        assert_eq!(
            escape_text(r"matches --exclude '/\.cache$' in C:\x"),
            r"matches --exclude '/\.cache$' in C:\x"
        );
        assert_eq!(
            escape_text("a\nb\u{1b}[2J\u{202e}c"),
            r"a\nb\u{001b}[2J\u{202e}c"
        );
    }

    #[test]
    fn escape_keeps_plain_text() {
        assert_eq!(escape(b"/home/liw/notes.txt"), "/home/liw/notes.txt");
        assert_eq!(escape("/tmp/päivää €".as_bytes()), "/tmp/päivää €");
    }

    #[test]
    fn escape_shows_awkward_bytes() {
        assert_eq!(escape(b"a\nb"), "a\\nb");
        assert_eq!(escape(b"a\tb\r"), "a\\tb\\r");
        assert_eq!(escape(b"\x1b[31m"), "\\u{001b}[31m");
        assert_eq!(escape(b"bad\xff\xfe"), "bad\\xff\\xfe");
        assert_eq!(escape(b"back\\slash"), "back\\\\slash");
        assert_eq!(escape("x\u{202e}y".as_bytes()), "x\\u{202e}y");
    }

    #[test]
    fn names_with_slashes_are_shown_escaped() {
        assert_eq!(escape_name(b"../../x"), "..\\x2f..\\x2fx");
        assert_eq!(show_child(b"/", b"a"), "/a");
        assert_eq!(
            show_child(b"/evil", b"/etc/passwd"),
            "/evil/\\x2fetc\\x2fpasswd"
        );
        assert_eq!(show_child(b"/d\n", b"x"), "/d\\n/x");
    }

    #[test]
    fn paths_are_escaped_as_bytes_are() {
        use std::os::unix::ffi::OsStrExt;
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(b"/d/evil\nERROR: x\xff"));
        assert_eq!(escape_path(path), "/d/evil\\nERROR: x\\xff");
    }

    #[test]
    fn escape_is_unambiguous() {
        // A literal backslash-x text and a real invalid byte differ.
        assert_ne!(escape(b"\\xff"), escape(b"\xff"));
        assert_ne!(escape(b"\\n"), escape(b"\n"));
    }
}
