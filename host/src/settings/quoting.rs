//! Quotes in values written in config files and environment variables.
//!
//! A plain value means what it always meant: white space around it is
//! dropped, and a list is split at every comma, each item trimmed and
//! empty items dropped. Quotes are for the values a plain one cannot say,
//! so that `--dump-config` can write every value and read it back as it
//! was:
//!
//! - A value or list item that starts with `"` runs to the next `"`.
//!   Inside, `\"` is a quote and `\\` a backslash; any other backslash is
//!   kept as it is (`"\.tmp$"` is the pattern `\.tmp$`). Commas and white
//!   space inside are kept.
//! - One that starts with `'` runs to the next `'`, taken as it is.
//! - Only white space may follow the closing quote (and then, in a list,
//!   a comma). A quoted empty list item, `""`, is refused, as an empty
//!   item on the command line is.
//!
//! A quote anywhere but at the start is an ordinary character.
//!
//! The values of path settings are bytes, which need not be UTF-8 (a
//! folder named in Latin-1 by an old system), and a config file is text.
//! So in a path setting's double-quoted value or item `\xNN`, with two
//! hex digits, is the byte NN: `root = "/home/caf\xe9"` is the folder
//! whose last name is `caf` and byte 0xE9. It is the form in which
//! messages show such a byte ([`plugin_api::names::escape`]), so a name
//! can be copied from an error into a config file. Other settings keep
//! `\x` as it is (`"\x41"` as a regular expression is `A` already). The
//! environment gives bytes, read the same way.

use std::borrow::Cow;

/// Why quoted text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuoteError {
    #[error("the quote that starts {0} has no closing quote")]
    Unclosed(String),
    #[error("only white space may follow a closing quote, not '{0}'")]
    TextAfterQuote(String),
    #[error("a list item must not be empty (\"\")")]
    EmptyItem,
}

/// Whether `\xNN` in double quotes is a byte: in the values of path
/// settings only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escapes {
    /// `\xNN` is kept as it is, as any backslash but `\"` and `\\`.
    Text,
    /// `\xNN` is the byte NN.
    Bytes,
}

/// A single value: unquoted if it starts with a quote, else as it is.
pub fn unquote(text: &str) -> Result<Cow<'_, str>, QuoteError> {
    match unquote_bytes(text.as_bytes(), Escapes::Text)? {
        Cow::Borrowed(_) => Ok(Cow::Borrowed(text)),
        // Without byte escapes the value is a piece of `text` cut at
        // ASCII quotes and backslashes: UTF-8 still.
        Cow::Owned(v) => Ok(Cow::Owned(String::from_utf8_lossy(&v).into_owned())),
    }
}

/// A comma-separated list.
pub fn split_list(text: &str) -> Result<Vec<String>, QuoteError> {
    Ok(split_list_bytes(text.as_bytes(), Escapes::Text)?
        .into_iter()
        .map(|item| String::from_utf8_lossy(&item).into_owned())
        .collect())
}

/// A single value given as bytes: [`unquote`], with `escapes`.
pub fn unquote_bytes(text: &[u8], escapes: Escapes) -> Result<Cow<'_, [u8]>, QuoteError> {
    let trimmed = trim(text);
    let Some((value, rest)) = quoted(trimmed, escapes)? else {
        return Ok(Cow::Borrowed(text));
    };
    if !trim(rest).is_empty() {
        return Err(QuoteError::TextAfterQuote(shown(trim(rest))));
    }
    Ok(Cow::Owned(value))
}

/// A comma-separated list given as bytes: [`split_list`], with `escapes`.
pub fn split_list_bytes(text: &[u8], escapes: Escapes) -> Result<Vec<Vec<u8>>, QuoteError> {
    let mut items = Vec::new();
    let mut rest = trim_start(text);
    while !rest.is_empty() {
        if let Some((item, after)) = quoted(rest, escapes)? {
            if item.is_empty() {
                return Err(QuoteError::EmptyItem);
            }
            items.push(item);
            let after = trim_start(after);
            rest = match after.strip_prefix(b",") {
                Some(next) => next,
                None if after.is_empty() => after,
                None => {
                    let first = after.split(|&b| b == b',').next().unwrap_or(after);
                    return Err(QuoteError::TextAfterQuote(shown(trim(first))));
                }
            };
        } else {
            let (item, next) = match rest.iter().position(|&b| b == b',') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &b""[..]),
            };
            // Empty items (two commas, one at an end) were always dropped.
            if !trim(item).is_empty() {
                items.push(trim(item).to_vec());
            }
            rest = next;
        }
        rest = trim_start(rest);
    }
    Ok(items)
}

/// Text for a message: as it is if UTF-8, else escaped.
fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => plugin_api::names::escape(bytes),
    }
}

/// The first character of `bytes`, if they start with one, and its length.
fn first_char(bytes: &[u8]) -> Option<char> {
    bytes.utf8_chunks().next()?.valid().chars().next()
}

/// The last character of `bytes`, if they end with one.
fn last_char(bytes: &[u8]) -> Option<char> {
    (1..=bytes.len().min(4)).find_map(|len| {
        let text = std::str::from_utf8(&bytes[bytes.len() - len..]).ok()?;
        text.chars().next_back()
    })
}

/// `bytes` without the white space at their start, as `str::trim_start`
/// would drop it from text (bytes that are not UTF-8 are no white space).
fn trim_start(mut bytes: &[u8]) -> &[u8] {
    while let Some(c) = first_char(bytes).filter(|c| c.is_whitespace()) {
        bytes = &bytes[c.len_utf8()..];
    }
    bytes
}

/// `bytes` without the white space at either end, as `str::trim`.
fn trim(bytes: &[u8]) -> &[u8] {
    let mut bytes = trim_start(bytes);
    while let Some(c) = last_char(bytes).filter(|c| c.is_whitespace()) {
        bytes = &bytes[..bytes.len() - c.len_utf8()];
    }
    bytes
}

/// A quoted value, unquoted, and what follows its closing quote.
type Quoted<'a> = (Vec<u8>, &'a [u8]);

/// The quoted text at the start of `text`, unquoted, and what follows the
/// closing quote; `None` if `text` does not start with a quote.
fn quoted(text: &[u8], escapes: Escapes) -> Result<Option<Quoted<'_>>, QuoteError> {
    let unclosed = || {
        let shown: String = match std::str::from_utf8(text) {
            Ok(text) => text.chars().take(20).collect(),
            Err(_) => plugin_api::names::escape(&text[..text.len().min(20)]),
        };
        QuoteError::Unclosed(shown)
    };
    if let Some(body) = text.strip_prefix(b"'") {
        let end = body.iter().position(|&b| b == b'\'').ok_or_else(unclosed)?;
        return Ok(Some((body[..end].to_vec(), &body[end + 1..])));
    }
    let Some(body) = text.strip_prefix(b"\"") else {
        return Ok(None);
    };
    let mut value = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => return Ok(Some((value, &body[i + 1..]))),
            b'\\' => match body.get(i + 1) {
                Some(&next @ (b'"' | b'\\')) => {
                    value.push(next);
                    i += 1;
                }
                Some(b'x') if escapes == Escapes::Bytes => match hex_byte(body.get(i + 2..i + 4)) {
                    Some(byte) => {
                        value.push(byte);
                        i += 3;
                    }
                    None => value.push(b'\\'),
                },
                _ => value.push(b'\\'),
            },
            b => value.push(b),
        }
        i += 1;
    }
    Err(unclosed())
}

/// The byte two hex digits (of either case) say.
fn hex_byte(digits: Option<&[u8]>) -> Option<u8> {
    let digits = std::str::from_utf8(digits?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(digits, 16).ok()
}

/// A single value as it reads back through [`unquote`].
pub fn quote_value(value: &str) -> String {
    // ` ;` and ` #` would start a comment in a config file, and so would
    // `;` or `#` at the value's start.
    let comment = value.starts_with([';', '#'])
        || value
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_whitespace() && matches!(w[1], b';' | b'#'));
    if value.trim() != value || value.starts_with(['"', '\'']) || comment {
        double_quote(value.as_bytes(), Escapes::Text)
    } else {
        value.to_string()
    }
}

/// A list item as it reads back through [`split_list`].
pub fn quote_item(item: &str) -> String {
    if item.is_empty() || item.contains(',') {
        double_quote(item.as_bytes(), Escapes::Text)
    } else {
        quote_value(item)
    }
}

/// A path setting's value as it reads back through [`unquote_bytes`] with
/// [`Escapes::Bytes`]: as [`quote_value`] writes text, and double-quoted
/// with `\xNN` for each byte that is not UTF-8 or is a control character
/// (a line break would end the line of a config file).
pub fn quote_path_value(value: &[u8]) -> String {
    match plain_text(value) {
        Some(text) => quote_value(text),
        None => double_quote(value, Escapes::Bytes),
    }
}

/// A path list's item as it reads back through [`split_list_bytes`] with
/// [`Escapes::Bytes`].
pub fn quote_path_item(item: &[u8]) -> String {
    match plain_text(item) {
        Some(text) => quote_item(text),
        None => double_quote(item, Escapes::Bytes),
    }
}

/// `bytes` as text, if they are UTF-8 without control characters.
fn plain_text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|text| !text.chars().any(char::is_control))
}

/// `bytes` in double quotes, `"` and `\` escaped; with [`Escapes::Bytes`],
/// bytes that are not UTF-8 and control characters as `\xNN` (text is
/// UTF-8, and its control characters are kept as they are, to read back
/// as they were).
fn double_quote(bytes: &[u8], escapes: Escapes) -> String {
    let mut out = String::from("\"");
    let hex = |out: &mut String, bytes: &[u8]| {
        for b in bytes {
            out.push_str(&format!("\\x{b:02x}"));
        }
    };
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() && escapes == Escapes::Bytes => {
                    hex(&mut out, c.encode_utf8(&mut [0; 4]).as_bytes())
                }
                c => out.push(c),
            }
        }
        hex(&mut out, chunk.invalid());
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> Vec<String> {
        split_list(text).unwrap()
    }

    #[test]
    fn plain_lists_mean_what_they_meant() {
        assert_eq!(list(r"/\.cache$, \.tmp$"), [r"/\.cache$", r"\.tmp$"]);
        assert_eq!(list("a,,b,"), ["a", "b"]);
        assert_eq!(list(""), Vec::<String>::new());
        assert_eq!(list(r#"a"b, c'"#), [r#"a"b"#, "c'"]);
    }

    #[test]
    fn quoted_items_keep_commas_and_spaces() {
        assert_eq!(
            list(r#""f{1,2}$", ' x ', "a\"b\\c\.d""#),
            ["f{1,2}$", " x ", r#"a"b\c\.d"#]
        );
        assert_eq!(split_list(r#""""#), Err(QuoteError::EmptyItem));
        assert!(matches!(
            split_list(r#""a" b, c"#),
            Err(QuoteError::TextAfterQuote(t)) if t == "b"
        ));
        assert!(matches!(
            split_list(r#""a, b"#),
            Err(QuoteError::Unclosed(_))
        ));
    }

    #[test]
    fn single_values() {
        assert_eq!(unquote("plain text").unwrap(), "plain text");
        assert_eq!(unquote(r#"" lead""#).unwrap(), " lead");
        assert_eq!(
            unquote("'it''").unwrap_err(),
            QuoteError::TextAfterQuote("'".into())
        );
        assert_eq!(unquote(r#"a "b""#).unwrap(), r#"a "b""#);
    }

    #[test]
    fn awkward_values_read_back() {
        let awkward = [
            "f{1,2}$",
            " lead",
            "trail ",
            "\"quoted\"",
            "'single'",
            r"back\slash\",
            r#"\""#,
            ",",
            "a, b",
            "tab\there",
            "ünïcode, ✓",
        ];
        for value in awkward {
            assert_eq!(unquote(&quote_value(value)).unwrap(), value, "{value:?}");
        }
        let items: Vec<String> = awkward.iter().map(|s| s.to_string()).collect();
        let text = items
            .iter()
            .map(|i| quote_item(i))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(split_list(&text).unwrap(), items, "{text}");
    }

    #[test]
    fn path_values_say_bytes_with_backslash_x() {
        let value = |text: &[u8]| unquote_bytes(text, Escapes::Bytes).unwrap().into_owned();
        assert_eq!(value(br#""/caf\xe9""#), b"/caf\xe9");
        assert_eq!(value(br#""/caf\xE9\x0a""#), b"/caf\xe9\n");
        // Only in double quotes, and only with two hex digits.
        assert_eq!(value(br"/caf\xe9"), br"/caf\xe9");
        assert_eq!(value(br"'/caf\xe9'"), br"/caf\xe9");
        assert_eq!(value(br#""a\xg0\x4""#), br"a\xg0\x4");
        assert_eq!(value(br#""a\\xe9""#), br"a\xe9");
        // Text settings keep it.
        assert_eq!(unquote(r#""\xe9""#).unwrap(), r"\xe9");
        // Bytes that are not UTF-8 are no white space; Unicode's is, as
        // in text.
        let list = |text: &[u8]| split_list_bytes(text, Escapes::Bytes).unwrap();
        assert_eq!(list(b" \xa0/x\xa0 , y"), [&b"\xa0/x\xa0"[..], b"y"]);
        assert_eq!(list(" /x\u{a0}, y\u{3000}".as_bytes()), [&b"/x"[..], b"y"]);
        assert_eq!(value(br#" "/x" "#), b"/x");
        assert_eq!(
            split_list_bytes(b"/a\xe9, \"/b\\xe9,c\" ,", Escapes::Bytes).unwrap(),
            [&b"/a\xe9"[..], b"/b\xe9,c"]
        );
    }

    #[test]
    fn awkward_paths_read_back() {
        let awkward: [&[u8]; 9] = [
            b"/srv/d\xe9p\xf4t",
            b"/tmp/a\nb",
            b"/tmp/back\\slash \\xe9",
            b"\"quoted\"",
            b" lead",
            b"a, b",
            b"tab\there",
            "\u{85}next line".as_bytes(),
            b"\xff",
        ];
        for value in awkward {
            let text = quote_path_value(value);
            assert!(!text.contains(['\n', '\r']), "{text}");
            assert_eq!(
                unquote_bytes(text.as_bytes(), Escapes::Bytes).unwrap(),
                value,
                "{text}"
            );
        }
        let text = awkward
            .iter()
            .map(|i| quote_path_item(i))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            split_list_bytes(text.as_bytes(), Escapes::Bytes).unwrap(),
            awkward,
            "{text}"
        );
        // Plain UTF-8 stays plain.
        assert_eq!(quote_path_value("/home/päivi".as_bytes()), "/home/päivi");
    }
}
