use super::*;

fn set(p: &[&str]) -> PatternSet {
    PatternSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn set_error(p: &[&str]) -> SetError {
    PatternSet::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .err()
        .unwrap()
}

fn one(p: &[u8]) -> Pattern {
    Pattern::new(p).unwrap()
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
    assert!(one(b"re:\\.tmp$").is_match(b"/a/b.tmp"));
    assert!(one(b"\\.tmp$").is_match(b"/a/b.tmp"));
}

#[test]
fn names_that_are_not_utf8_are_matched_byte_by_byte() {
    for pattern in ["caf.$", "caf[^/]$", r"caf\W$", "re:caf.$"] {
        assert!(set(&[pattern]).is_match(b"/src/caf\xe9"), "{pattern}");
        assert!(
            one(pattern.as_bytes()).is_match(b"/src/caf\xe9"),
            "{pattern}"
        );
    }
    // Text is matched as text: `.` is one character, not one byte, and
    // `é` is a word character.
    assert!(one(b"caf.$").is_match("/src/café".as_bytes()));
    assert!(!one(br"caf\W$").is_match("/src/café".as_bytes()));
    assert!(!one(b"caf.$").is_match("/src/cafés".as_bytes()));
    assert!(!one(b"^/a/..$").is_match("/a/é".as_bytes()));
    // A literal that is not ASCII matches its UTF-8 bytes in either.
    assert!(one("é".as_bytes()).is_match("/x/é\u{1}\x01".as_bytes()));
    assert!(one("é".as_bytes()).is_match(b"/x/\xc3\xa9\xff"));
    // Bytes of the pattern that are not UTF-8 match those bytes.
    let latin1 = one(b"re:/x_\xff$");
    assert!(latin1.is_match(b"/home/x_\xff"));
    assert!(!latin1.is_match("/home/x_\u{ff}".as_bytes()));
    // An expression that needs Unicode still matches text as text.
    let letters = set(&[r"^/\p{L}+$"]);
    assert!(letters.is_match("/été".as_bytes()));
    assert!(!letters.is_match(b"/\xe9t\xe9"));
    // Globs match such names too.
    assert!(set(&["sh:caf?"]).is_match(b"/src/caf\xe9"));
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
    assert!(one(b"sh:*.tmp").is_match(b"/x/y/z.tmp"));
}

#[test]
fn a_glob_written_as_a_folder_matches_it() {
    assert!(set(&["sh:sub/"]).is_match(b"/src/sub"));
    assert!(one(b"sh:/src/sub//").is_match(b"/src/sub"));
    assert!(one(b"sh:/").is_match(b"/"));
}

#[test]
fn prefixes_match_whole_components() {
    let s = set(&["pp:/home/alice/tmp/"]);
    assert!(s.is_match(b"/home/alice/tmp"));
    assert!(s.is_match(b"/home/alice/tmp/x/y"));
    assert!(!s.is_match(b"/home/alice/tmpfile"));
    let root = set(&["pp:/"]);
    assert!(root.is_match(b"/"));
    assert!(root.is_match(b"/any/thing"));
    assert!(one(b"pp:/a/b\xfe").is_match(b"/a/b\xfe/c"));
}

#[test]
fn the_first_matching_pattern_is_named() {
    let s = set(&["pp:/a", "sh:*.x", r"\.x$"]);
    assert_eq!(s.first_match(b"/b/c.x"), Some("sh:*.x"));
    assert_eq!(s.first_match(b"/a/c.x"), Some("pp:/a"));
    assert_eq!(s.first_match(b"/b/c.y"), None);
    assert_eq!(s.first_match(b"/b/c\xff.x"), Some("sh:*.x"));
}

#[test]
fn bad_patterns_are_one_line_that_names_them() {
    let err = set_error(&["a", "*.tmp"]);
    assert_eq!(err.index, Some(1));
    assert_eq!(
        err.reason,
        "bad regular expression '*.tmp': repetition operator missing expression; patterns \
         are regular expressions unless prefixed: for a shell glob, write 'sh:*.tmp'"
    );
    let err = set_error(&["("]);
    assert_eq!(err.reason, "bad regular expression '(': unclosed group");
    let err = Pattern::new(b"re:(").err().unwrap();
    assert_eq!(err.0, "bad regular expression 're:(': unclosed group");
    // An explicit re: gets no glob hint.
    let err = Pattern::new(b"re:*.tmp").err().unwrap();
    assert!(!err.0.contains("sh:"), "{err}");
    let err = set_error(&["sh:["]);
    assert!(err.reason.starts_with("bad shell glob 'sh:['"), "{err:?}");
    let err = set_error(&["pp:relative"]);
    assert!(err.reason.contains("absolute"), "{err:?}");
    let err = Pattern::new(b"sh:*\xff").err().unwrap();
    assert!(err.0.contains("is not UTF-8 text"), "{err}");
    assert!(err.0.contains("sh:*\\xff"), "{err}");
    let err = Pattern::new(b"(\n").err().unwrap();
    assert!(!err.0.contains('\n'), "{err}");
}

#[test]
fn a_prefix_tells_a_pattern_from_a_path() {
    for pattern in [&b"sh:*.odt"[..], b"glob:x", b"re:\\.tmp$"] {
        assert!(is_pattern(pattern));
    }
    for path in [&b"/home/a"[..], b"pp:/home/a", b"sh", b"relative"] {
        assert!(!is_pattern(path));
    }
}

/// A pattern that is only its style's prefix (an unset variable after
/// `sh:`) would match every path: refused, alone and in a set, naming it.
#[test]
fn a_bare_prefix_is_refused() {
    for bare in ["sh:", "glob:", "re:"] {
        let e = Pattern::new(bare.as_bytes()).err().expect(bare);
        assert!(e.0.contains("no pattern after it"), "{bare}: {}", e.0);
        let texts = vec!["\\.o$".to_string(), bare.to_string()];
        let e = PatternSet::new(&texts).err().expect(bare);
        assert_eq!(e.index, Some(1), "{bare}");
    }
    assert!(Pattern::new(b"sh:*.o").is_ok());
    assert!(Pattern::new(b"pp:").is_err());
}

/// In a set, a pattern that needs Unicode (`\p{L}`) leaves the others
/// matching a path that is not UTF-8 byte by byte: `\xe9` still matches
/// the Latin-1 byte (it matched nothing once one pattern of the set
/// needed Unicode), and the Unicode one still matches such a path as
/// text where it can.
#[test]
fn a_pattern_that_needs_unicode_leaves_the_others_matching_bytes() {
    let texts: Vec<String> = ["\\p{Greek}", "caf\\xe9$", "(?-u:\\xff)z$"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let set = PatternSet::new(&texts).unwrap();
    assert_eq!(set.first_match(b"/d/caf\xe9"), Some("caf\\xe9$"));
    assert_eq!(set.first_match(b"/d/\xffz"), Some("(?-u:\\xff)z$"));
    let mut greek = "/d/\u{3b1}/".as_bytes().to_vec();
    greek.push(0xe9);
    assert_eq!(set.first_match(&greek), Some("\\p{Greek}"));
    assert_eq!(set.first_match(b"/d/plain"), None);
}

/// `.` matches a newline in a name, in a pattern alone and in a set (it
/// did not: `new.line` and `^/d/.*` skipped a file named with one, where
/// the globs `?` and `*` matched it); `(?-s)` turns that off.
#[test]
fn a_dot_matches_a_newline_in_a_name() {
    let path = b"/d/new\nline";
    for text in [
        "new.line",
        "^/d/.*$",
        "^/d/.+e$",
        "sh:/d/new?line",
        "sh:/d/*",
    ] {
        let p = Pattern::new(text.as_bytes()).unwrap();
        assert!(p.is_match(path), "{text}");
        let set = PatternSet::new(&[text.to_string()]).unwrap();
        assert_eq!(set.first_match(path), Some(text), "{text}");
    }
    let mut latin1 = path.to_vec();
    latin1.push(0xe9);
    assert!(Pattern::new(b"^/d/new.line.$").unwrap().is_match(&latin1));
    assert!(!Pattern::new(b"(?-s)new.line").unwrap().is_match(path));
}
