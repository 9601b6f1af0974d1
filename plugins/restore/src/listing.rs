//! The listing subcommands: `clients`, `generations`, `genids` and `ls`.
//!
//! Each prints plain text by default and one JSON document on standard
//! output with `--output-format json`. Text output never prints a stored
//! name raw: names that are not UTF-8, or that hold control characters,
//! are escaped (see [`crate::names::escape`]), so a hostile name cannot
//! garble the terminal. In JSON a path is a string (JSON escapes control
//! characters itself); a path that is not UTF-8 is given escaped, and its
//! exact bytes as an array of numbers in `path_bytes`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use serde_json::{json, Value};

use plugin_api::{Context, Entry, EntryKind, GenerationInfo, Result};

use crate::format;
use crate::names::{self, escape};
use crate::select;

pub(crate) fn no_arguments(command: &str, args: &[OsString]) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!(
            "{command} takes no arguments, got '{}'",
            escape(arg.as_encoded_bytes())
        );
    }
    Ok(())
}

pub(crate) fn pretty(ctx: &Context<'_>, value: &Value) -> Result<()> {
    ctx.outln(&serde_json::to_string_pretty(value)?)
}

/// A JSON array printed an element at a time, exactly as
/// `serde_json::to_string_pretty` prints it whole: a command with a
/// million results held a million `Value`s first (4 GB for `find`).
pub(crate) struct PrettyArray<'c, 'a> {
    ctx: &'c Context<'a>,
    /// What comes before the `[` on its line (`  "changes": `).
    head: String,
    /// How deep the array is (two spaces a level).
    level: usize,
    /// The element printed last, held until it is known whether a comma
    /// follows it.
    pending: Option<String>,
    started: bool,
}

impl<'c, 'a> PrettyArray<'c, 'a> {
    pub(crate) fn new(ctx: &'c Context<'a>, head: &str, level: usize) -> Self {
        PrettyArray {
            ctx,
            head: head.to_string(),
            level,
            pending: None,
            started: false,
        }
    }

    pub(crate) fn push(&mut self, value: &Value) -> Result<()> {
        let inner = " ".repeat(2 * (self.level + 1));
        let text = serde_json::to_string_pretty(value)?
            .lines()
            .map(|line| format!("{inner}{line}"))
            .collect::<Vec<_>>()
            .join("\n");
        if !self.started {
            self.ctx.outln(&format!("{}[", self.head))?;
            self.started = true;
        }
        if let Some(previous) = self.pending.replace(text) {
            self.ctx.outln(&format!("{previous},"))?;
        }
        Ok(())
    }

    /// End the array; `tail` follows its `]` on the line (a comma).
    pub(crate) fn finish(self, tail: &str) -> Result<()> {
        if !self.started {
            return self.ctx.outln(&format!("{}[]{tail}", self.head));
        }
        if let Some(last) = &self.pending {
            self.ctx.outln(last)?;
        }
        self.ctx
            .outln(&format!("{}]{tail}", " ".repeat(2 * self.level)))
    }
}

/// `obnam clients`: one client name per line.
pub fn clients(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    no_arguments("clients", &args)?;
    let repo = ctx.repository(false)?;
    let mut names = repo.clients()?;
    names.sort();
    if ctx.output_format()?.is_json() {
        return pretty(ctx, &json!(names));
    }
    for name in names {
        ctx.outln(&escape(name.as_bytes()))?;
    }
    Ok(())
}

/// The client's generations for a listing command that takes no
/// arguments. A client without generations lists none: that is not an
/// error, but a client the repository does not know is warned of.
fn listed_generations(
    ctx: &Context<'_>,
    command: &str,
    args: &[OsString],
) -> Result<Vec<GenerationInfo>> {
    no_arguments(command, args)?;
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    let gens = repo.generations(&client)?;
    // A client the repository does not know (a mistyped --client-name,
    // or the host name by default on another machine) is said: a script
    // counting the backups saw none, exit 0, without a word.
    if gens.is_empty()
        && repo.damaged_generations(&client)?.is_empty()
        && !repo.clients()?.contains(&client)
    {
        plugin_api::tracing::warn!(
            "there is no client '{}' in the repository (see 'obnam clients'; the client name \
             defaults to this machine's host name)",
            plugin_api::names::escape(client.as_bytes())
        );
    }
    Ok(gens)
}

/// `obnam genids`: one generation id per line, oldest first.
pub fn genids(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let gens = listed_generations(ctx, "genids", &args)?;
    if ctx.output_format()?.is_json() {
        let ids: Vec<&str> = gens.iter().map(|g| g.id.as_str()).collect();
        return pretty(ctx, &json!(ids));
    }
    for gen in gens {
        ctx.outln(&gen.id)?;
    }
    Ok(())
}

/// One line of `obnam generations`.
fn generation_line(gen: &GenerationInfo) -> String {
    let mut line = format!(
        "{}  {} .. {}  {}  {}",
        gen.id,
        format::time_ns(gen.started_ns),
        format::time_ns(gen.ended_ns),
        plugin_api::human::count(gen.file_count, "file", "files"),
        format::bytes(gen.data_size)
    );
    if gen.is_checkpoint {
        line.push_str("  (checkpoint)");
    }
    line
}

fn generation_json(gen: &GenerationInfo) -> Value {
    json!({
        "id": gen.id,
        "started": format::time_rfc3339_ns(gen.started_ns),
        "ended": format::time_rfc3339_ns(gen.ended_ns),
        "started_ns": gen.started_ns,
        "ended_ns": gen.ended_ns,
        "file_count": gen.file_count,
        "data_size": gen.data_size,
        "is_checkpoint": gen.is_checkpoint,
    })
}

/// `obnam generations`: one line per generation, oldest first.
pub fn generations(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let gens = listed_generations(ctx, "generations", &args)?;
    if ctx.output_format()?.is_json() {
        let list: Vec<Value> = gens.iter().map(generation_json).collect();
        return pretty(ctx, &Value::Array(list));
    }
    for gen in &gens {
        ctx.outln(&generation_line(gen))?;
    }
    Ok(())
}

/// The size column of `ls`: bytes, or `major, minor` for a device.
fn size_column(entry: &Entry) -> String {
    match entry.kind {
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let (major, minor) = format::major_minor(entry.rdev);
            format!("{major}, {minor}")
        }
        _ => entry.size.to_string(),
    }
}

fn owner(name: &str, id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        escape(name.as_bytes())
    }
}

/// One `ls -l` style line; `shown` is the path as printable text.
pub fn ls_line(shown: &str, entry: &Entry) -> String {
    let mut line = format!(
        "{} {:>3} {:<8} {:<8} {:>10} {} {}",
        format::mode_string(entry.kind, entry.mode),
        entry.nlink,
        owner(&entry.user, entry.uid),
        owner(&entry.group, entry.gid),
        size_column(entry),
        format::time(entry.mtime, entry.mtime_ns),
        shown
    );
    if entry.kind == EntryKind::Symlink {
        line.push_str(" -> ");
        line.push_str(&escape(&entry.target));
    }
    line
}

pub(crate) use progress::bytes_fields;

/// A time in JSON as every listing gives times: `NAME` in RFC 3339 (UTC,
/// to the nanosecond) and `NAME_ns`, nanoseconds since 1970 (negative
/// before), as `generations` gives `started` and `started_ns`.
pub(crate) fn time_fields(
    obj: &mut serde_json::Map<String, Value>,
    name: &str,
    secs: i64,
    nanos: u32,
) {
    obj.insert(name.into(), json!(format::time_rfc3339(secs, nanos)));
    // Beyond 64 bits (after 2262, before 1677) the nanoseconds are null,
    // never a number wrapped round to another time: the RFC 3339 field
    // holds every time exactly.
    let ns = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
    let ns = i64::try_from(ns).map_or(Value::Null, Value::from);
    obj.insert(format!("{name}_ns"), ns);
}

/// The name of an entry's kind in JSON output.
pub(crate) fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
        EntryKind::CharDevice => "chardevice",
        EntryKind::BlockDevice => "blockdevice",
    }
}

/// One `ls` entry as JSON. `path` is its path; `shown`, the printable
/// form, is used instead when the entry's name holds a `/` or NUL, which
/// the raw path cannot show unambiguously.
pub fn ls_json(path: &[u8], shown: &str, entry: &Entry) -> Value {
    let mut obj = serde_json::Map::new();
    if names::check_name(&entry.name).is_ok() || entry.name.is_empty() {
        bytes_fields(&mut obj, "path", path);
    } else {
        obj.insert("path".into(), json!(shown));
        obj.insert("unsafe_name".into(), json!(true));
    }
    obj.insert("kind".into(), json!(kind_name(entry.kind)));
    obj.insert("mode".into(), json!(entry.mode));
    obj.insert(
        "mode_string".into(),
        json!(format::mode_string(entry.kind, entry.mode)),
    );
    obj.insert("nlink".into(), json!(entry.nlink));
    obj.insert("uid".into(), json!(entry.uid));
    obj.insert("gid".into(), json!(entry.gid));
    obj.insert("user".into(), json!(entry.user));
    obj.insert("group".into(), json!(entry.group));
    obj.insert("size".into(), json!(entry.size));
    time_fields(&mut obj, "mtime", entry.mtime, entry.mtime_ns);
    if entry.kind == EntryKind::Symlink {
        bytes_fields(&mut obj, "target", &entry.target);
    }
    if matches!(entry.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        let (major, minor) = format::major_minor(entry.rdev);
        obj.insert("rdev".into(), json!(entry.rdev));
        obj.insert("major".into(), json!(major));
        obj.insert("minor".into(), json!(minor));
    }
    Value::Object(obj)
}

pub(crate) fn os_path(path: &[u8]) -> OsString {
    OsString::from_vec(path.to_vec())
}

/// Prints `ls` output as it is produced: lines, or one JSON array written
/// element by element so that a large generation needs no large buffer.
struct LsOutput<'a, 'c> {
    ctx: &'a Context<'c>,
    json: bool,
    first: bool,
}

impl LsOutput<'_, '_> {
    fn entry(&mut self, path: &[u8], shown: &str, entry: &Entry) -> Result<()> {
        if !self.json {
            return self.ctx.outln(&ls_line(shown, entry));
        }
        let text = serde_json::to_string(&ls_json(path, shown, entry))?;
        let sep = if self.first { "[\n  " } else { ",\n  " };
        self.first = false;
        self.ctx.output(format!("{sep}{text}").as_bytes())
    }

    fn finish(self) -> Result<()> {
        if !self.json {
            return Ok(());
        }
        if self.first {
            self.ctx.outln("[]")
        } else {
            self.ctx.outln("\n]")
        }
    }
}

/// `obnam ls [PATH...]`: every entry of the generation (or below the given
/// paths), recursively, in name order, parents before their contents.
pub fn ls(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let requested = crate::path_args::parse("ls", &args)?;
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    select::hold_for_reading(&repo, &client, "ls");
    let gen = select::generation(ctx, &repo, &client)?;
    let reader = repo.open_generation(&client, &gen.id)?;
    let asked = crate::path_args::expand(&reader, requested, &gen.id)?;
    let roots: Vec<Vec<u8>> = crate::path_args::outermost(asked)
        .iter()
        .map(|parts| names::from_parts(parts))
        .collect();

    // Every path must exist before anything is printed. The stack holds
    // paths, their printable form, and their entries (none for `/`).
    let mut stack: Vec<(Vec<u8>, String, Option<Entry>)> = Vec::new();
    if roots.is_empty() {
        stack.push((b"/".to_vec(), "/".into(), None));
    }
    for root in roots.iter().rev() {
        if root == b"/" {
            stack.push((root.clone(), "/".into(), None));
            continue;
        }
        match reader.lookup(Path::new(&os_path(root)))? {
            Some(entry) => stack.push((root.clone(), escape(root), Some(entry))),
            None => plugin_api::bail!("{} is not in generation {}", escape(root), gen.id),
        }
    }

    let mut out = LsOutput {
        ctx,
        json: ctx.output_format()?.is_json(),
        first: true,
    };
    while let Some((path, shown, entry)) = stack.pop() {
        let is_dir = match &entry {
            Some(e) => {
                out.entry(&path, &shown, e)?;
                if e.kind == EntryKind::Dir {
                    if let Err(why) = names::check_name(&e.name) {
                        // A hostile generation: show the entry, not what
                        // its unsafe name would lead to.
                        plugin_api::tracing::warn!("{shown}: not listing the contents: {why}");
                        continue;
                    }
                }
                e.kind == EntryKind::Dir
            }
            None => true,
        };
        if is_dir {
            let children = reader
                .list_dir(Path::new(&os_path(&path)))?
                .unwrap_or_default();
            for child in children.into_iter().rev() {
                let child_shown = names::show_child(&path, &child.name);
                stack.push((names::join(&path, &child.name), child_shown, Some(child)));
            }
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ls_lines_show_symlinks_and_escape_names() {
        let link = Entry {
            kind: EntryKind::Symlink,
            mode: 0o120777,
            nlink: 1,
            user: "root".into(),
            group: "root".into(),
            target: b"../x\ny".to_vec(),
            ..Entry::default()
        };
        let line = ls_line(&names::show_child(b"/tmp", b"l\xff"), &link);
        assert!(line.starts_with("lrwxrwxrwx   1 root     root "), "{line}");
        assert!(line.ends_with(" /tmp/l\\xff -> ../x\\ny"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn ls_shows_numbers_when_names_are_unknown() {
        let file = Entry {
            mode: 0o100640,
            nlink: 2,
            uid: 1234,
            gid: 99,
            size: 42,
            ..Entry::default()
        };
        let line = ls_line("/f", &file);
        assert!(
            line.starts_with("-rw-r-----   2 1234     99               42 "),
            "{line}"
        );
    }

    #[test]
    fn devices_show_major_and_minor() {
        let dev = Entry {
            kind: EntryKind::BlockDevice,
            mode: 0o60660,
            rdev: 0x801,
            ..Entry::default()
        };
        assert!(ls_line("/dev/sda1", &dev).contains(" 8, 1 "));
        let v = ls_json(b"/dev/sda1", "/dev/sda1", &dev);
        assert_eq!(v["major"], 8);
        assert_eq!(v["minor"], 1);
    }

    #[test]
    fn json_keeps_exact_bytes_of_non_utf8_paths() {
        let named = |name: &[u8]| Entry {
            name: name.to_vec(),
            ..Entry::default()
        };
        let v = ls_json(b"/a\xffb", "/a\\xffb", &named(b"a\xffb"));
        assert_eq!(v["path"], "/a\\xffb");
        assert_eq!(v["path_bytes"], json!([47, 97, 255, 98]));
        let v = ls_json(b"/a\nb", "/a\\nb", &named(b"a\nb"));
        assert_eq!(v["path"], "/a\nb");
        assert!(v.get("path_bytes").is_none());
        let v = ls_json(b"/d/../x", "/d/..\\x2fx", &named(b"../x"));
        assert_eq!(v["path"], "/d/..\\x2fx");
        assert_eq!(v["unsafe_name"], true);
    }

    #[test]
    fn generation_lines_mark_checkpoints() {
        let gen = GenerationInfo {
            id: "0123456789abcdef".into(),
            client: "c".into(),
            started_ns: 0,
            ended_ns: 1_000_000_000,
            file_count: 3,
            data_size: 1_200_000,
            is_checkpoint: true,
        };
        let line = generation_line(&gen);
        assert!(line.starts_with("0123456789abcdef  "), "{line}");
        assert!(line.contains(" .. "), "{line}");
        assert!(line.ends_with("3 files  1.2 MB  (checkpoint)"), "{line}");
        assert_eq!(generation_json(&gen)["is_checkpoint"], true);
    }
}
