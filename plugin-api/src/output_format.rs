//! The host's `output-format` setting, read the same way by every command.
//!
//! `text` is for people; `json` asks a command for one JSON document;
//! `json-lines` asks the long commands (backup, restore) for a stream of
//! JSON objects, one per line, and every other command for what `json`
//! gives. A plugin asks [`Context::output_format`](crate::Context::output_format)
//! rather than comparing the setting's text, so that it treats
//! `json-lines` as JSON too. (Since 0.1.5; plain Rust, no ABI.)

/// What `--output-format` asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OutputFormat {
    /// Text for people.
    Text,
    /// One JSON document at the end.
    Json,
    /// A stream of JSON objects, one per line; the commands that do not
    /// stream print what `Json` prints.
    JsonLines,
}

impl OutputFormat {
    /// The format a value of `output-format` names (text for anything else).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("json") => OutputFormat::Json,
            Some("json-lines") => OutputFormat::JsonLines,
            _ => OutputFormat::Text,
        }
    }

    /// Whether the output is JSON (a document or a stream).
    pub fn is_json(self) -> bool {
        self != OutputFormat::Text
    }
}

#[cfg(test)]
mod tests {
    use super::OutputFormat;

    #[test]
    fn output_formats() {
        assert_eq!(OutputFormat::parse(None), OutputFormat::Text);
        assert_eq!(OutputFormat::parse(Some("json")), OutputFormat::Json);
        assert_eq!(
            OutputFormat::parse(Some("json-lines")),
            OutputFormat::JsonLines
        );
        assert!(OutputFormat::parse(Some("json-lines")).is_json());
        assert!(!OutputFormat::parse(Some("text")).is_json());
    }
}
