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

/// A single value: unquoted if it starts with a quote, else as it is.
pub fn unquote(text: &str) -> Result<Cow<'_, str>, QuoteError> {
    let trimmed = text.trim();
    let Some((value, rest)) = quoted(trimmed)? else {
        return Ok(Cow::Borrowed(text));
    };
    if !rest.trim().is_empty() {
        return Err(QuoteError::TextAfterQuote(rest.trim().to_string()));
    }
    Ok(Cow::Owned(value))
}

/// A comma-separated list.
pub fn split_list(text: &str) -> Result<Vec<String>, QuoteError> {
    let mut items = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if let Some((item, after)) = quoted(rest)? {
            if item.is_empty() {
                return Err(QuoteError::EmptyItem);
            }
            items.push(item);
            let after = after.trim_start();
            rest = match after.strip_prefix(',') {
                Some(next) => next,
                None if after.is_empty() => after,
                None => {
                    let shown = after.split(',').next().unwrap_or(after).trim();
                    return Err(QuoteError::TextAfterQuote(shown.to_string()));
                }
            };
        } else {
            let (item, next) = rest.split_once(',').unwrap_or((rest, ""));
            // Empty items (two commas, one at an end) were always dropped.
            if !item.trim().is_empty() {
                items.push(item.trim().to_string());
            }
            rest = next;
        }
        rest = rest.trim_start();
    }
    Ok(items)
}

/// The quoted text at the start of `text`, unquoted, and what follows the
/// closing quote; `None` if `text` does not start with a quote.
fn quoted(text: &str) -> Result<Option<(String, &str)>, QuoteError> {
    let unclosed = || {
        let shown: String = text.chars().take(20).collect();
        QuoteError::Unclosed(shown)
    };
    if let Some(body) = text.strip_prefix('\'') {
        let end = body.find('\'').ok_or_else(unclosed)?;
        return Ok(Some((body[..end].to_string(), &body[end + 1..])));
    }
    let Some(body) = text.strip_prefix('"') else {
        return Ok(None);
    };
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok(Some((value, &body[i + 1..]))),
            '\\' => match body[i + 1..].chars().next() {
                Some(next @ ('"' | '\\')) => {
                    value.push(next);
                    chars.next();
                }
                _ => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    Err(unclosed())
}

/// A single value as it reads back through [`unquote`].
pub fn quote_value(value: &str) -> String {
    if value.trim() != value || value.starts_with(['"', '\'']) {
        double_quote(value)
    } else {
        value.to_string()
    }
}

/// A list item as it reads back through [`split_list`].
pub fn quote_item(item: &str) -> String {
    if item.trim() != item || item.is_empty() || item.starts_with(['"', '\'']) || item.contains(',')
    {
        double_quote(item)
    } else {
        item.to_string()
    }
}

fn double_quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
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
}
