//! `obnam diff [GEN1] [GEN2]`: what changed between two generations.
//!
//! With no arguments it compares the client's latest two generations;
//! with one, that generation and the latest; with two, the first and the
//! second (`latest` names the newest). Each change is one line:
//!
//! ```text
//! +  /home/alice/new.txt           added
//! -  /home/alice/old.txt           removed
//! M  /home/alice/notes.txt         content changed (and maybe metadata)
//! U  /home/alice/script.sh         metadata only: mode 100644 -> 100755
//! T  /home/alice/thing             kind changed (file -> symlink)
//! ```
//!
//! then a summary. Metadata is mode, owner, modification time, extended
//! attributes, and which names in the tree are hard links of each other
//! ([`crate::links`]); a directory's modification time (which changes
//! whenever its entries do) and status-change times are not compared,
//! nor link counts (which change when another name of a file comes or
//! goes, outside the tree too). Everything below an added or removed
//! directory is listed.
//!
//! Directories are named by their content ([`plugin_api::TreeId`]): a
//! directory with the same id in both generations is skipped unread, so
//! a diff reads only the directories on the way to a change.

use std::collections::BTreeMap;
use std::ffi::OsString;

use serde_json::{json, Value};

use plugin_api::{Context, Entry, EntryKind, GenerationInfo, GenerationReader, Result};

use crate::format;
use crate::links::{recorded_object, LinkTable};
use crate::listing::{bytes_fields, kind_name};
use crate::names::{self, escape};
use crate::select;

/// What happened to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    /// Content (data, symlink target, device number) changed.
    Modified,
    /// Only metadata changed.
    Metadata,
    /// The kind of object changed.
    Kind,
}

impl Change {
    fn mark(self) -> &'static str {
        match self {
            Change::Added => "+",
            Change::Removed => "-",
            Change::Modified => "M",
            Change::Metadata => "U",
            Change::Kind => "T",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Modified => "modified",
            Change::Metadata => "metadata",
            Change::Kind => "kind",
        }
    }
}

/// How two entries at one path differ: the change and what differs.
pub fn compare(old: &Entry, new: &Entry) -> Option<(Change, Vec<String>)> {
    if old.kind != new.kind {
        return Some((
            Change::Kind,
            vec![format!(
                "{} -> {}",
                kind_name(old.kind),
                kind_name(new.kind)
            )],
        ));
    }
    let content = match new.kind {
        EntryKind::File => {
            old.size != new.size
                || if old.checksum.is_empty() || new.checksum.is_empty() {
                    old.chunks != new.chunks
                } else {
                    old.checksum != new.checksum
                }
        }
        EntryKind::Symlink => old.target != new.target,
        EntryKind::CharDevice | EntryKind::BlockDevice => old.rdev != new.rdev,
        _ => false,
    };
    let mut what = Vec::new();
    if content && new.kind == EntryKind::File && old.size != new.size {
        what.push(format!("size {} -> {}", old.size, new.size));
    }
    // What made a symlink or a device modified, as verify says it.
    if content && new.kind == EntryKind::Symlink {
        what.push(format!(
            "target {} -> {}",
            escape(&old.target),
            escape(&new.target)
        ));
    }
    if content && matches!(new.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        let (old_major, old_minor) = format::major_minor(old.rdev);
        let (new_major, new_minor) = format::major_minor(new.rdev);
        what.push(format!(
            "device {old_major},{old_minor} -> {new_major},{new_minor}"
        ));
    }
    if old.mode != new.mode {
        what.push(format!("mode {:o} -> {:o}", old.mode, new.mode));
    }
    if (old.uid, &old.user) != (new.uid, &new.user) {
        what.push(format!(
            "owner {} -> {}",
            owner(&old.user, old.uid),
            owner(&new.user, new.uid)
        ));
    }
    if (old.gid, &old.group) != (new.gid, &new.group) {
        what.push(format!(
            "group {} -> {}",
            owner(&old.group, old.gid),
            owner(&new.group, new.gid)
        ));
    }
    if new.kind != EntryKind::Dir && (old.mtime, old.mtime_ns) != (new.mtime, new.mtime_ns) {
        what.push(format!(
            "mtime {} -> {}",
            format::time_rfc3339(old.mtime, old.mtime_ns),
            format::time_rfc3339(new.mtime, new.mtime_ns)
        ));
    }
    if old.xattrs != new.xattrs {
        what.push("extended attributes".into());
    }
    if content {
        Some((Change::Modified, what))
    } else if !what.is_empty() {
        Some((Change::Metadata, what))
    } else {
        None
    }
}

fn owner(name: &str, id: u32) -> String {
    if name.is_empty() {
        id.to_string()
    } else {
        format!("{}({id})", escape(name.as_bytes()))
    }
}

/// One line of the report.
struct Line {
    path: Vec<u8>,
    change: Change,
    kind: EntryKind,
    what: Vec<String>,
}

/// Compares two generations, directory by directory.
struct Differ<'r> {
    old: &'r GenerationReader,
    new: &'r GenerationReader,
    lines: Vec<Line>,
    /// The names both have that have other names on either side, to
    /// compare which are one object ([`crate::links`]).
    links: LinkTable,
}

/// A directory's entries by name (safe names only).
fn entries(reader: &GenerationReader, path: &[u8]) -> Result<BTreeMap<Vec<u8>, Entry>> {
    let mut map = BTreeMap::new();
    for e in reader.list_dir(names::as_path(path))?.unwrap_or_default() {
        if let Err(why) = names::check_name(&e.name) {
            plugin_api::tracing::warn!("{}: skipped: {why}", names::show_child(path, &e.name));
            continue;
        }
        map.insert(e.name.clone(), e);
    }
    Ok(map)
}

impl Differ<'_> {
    /// Every entry below the directory `path` of `reader`, as `change`.
    fn whole(&mut self, reader: &GenerationReader, path: &[u8], change: Change) -> Result<()> {
        let mut stack = vec![path.to_vec()];
        while let Some(dir) = stack.pop() {
            let mut below = Vec::new();
            for (name, e) in entries(reader, &dir)? {
                let child = names::join(&dir, &name);
                self.lines.push(Line {
                    path: child.clone(),
                    change,
                    kind: e.kind,
                    what: Vec::new(),
                });
                if e.kind == EntryKind::Dir {
                    below.push(child);
                }
            }
            // Not in path order across directories: sorted at the end.
            stack.extend(below.into_iter().rev());
        }
        Ok(())
    }

    /// Compare the directory `path`, present in both.
    fn dir(&mut self, path: &[u8]) -> Result<()> {
        let mut stack = vec![path.to_vec()];
        while let Some(dir) = stack.pop() {
            let at = names::as_path(&dir);
            if self.old.subtree_id(at)? == self.new.subtree_id(at)? {
                continue;
            }
            let old = entries(self.old, &dir)?;
            let mut new = entries(self.new, &dir)?;
            for (name, o) in old {
                let child = names::join(&dir, &name);
                match new.remove(&name) {
                    None => {
                        self.lines.push(Line {
                            path: child.clone(),
                            change: Change::Removed,
                            kind: o.kind,
                            what: Vec::new(),
                        });
                        if o.kind == EntryKind::Dir {
                            let old = self.old;
                            self.whole(old, &child, Change::Removed)?;
                        }
                    }
                    Some(n) => {
                        if o.kind == n.kind {
                            self.links.note(
                                child.clone(),
                                recorded_object(&o),
                                recorded_object(&n),
                            );
                        }
                        if let Some((change, what)) = compare(&o, &n) {
                            self.lines.push(Line {
                                path: child.clone(),
                                change,
                                kind: n.kind,
                                what,
                            });
                            if change == Change::Kind {
                                if o.kind == EntryKind::Dir {
                                    let old = self.old;
                                    self.whole(old, &child, Change::Removed)?;
                                }
                                if n.kind == EntryKind::Dir {
                                    let new = self.new;
                                    self.whole(new, &child, Change::Added)?;
                                }
                                continue;
                            }
                        }
                        if n.kind == EntryKind::Dir {
                            stack.push(child);
                        }
                    }
                }
            }
            for (name, n) in new {
                let child = names::join(&dir, &name);
                self.lines.push(Line {
                    path: child.clone(),
                    change: Change::Added,
                    kind: n.kind,
                    what: Vec::new(),
                });
                if n.kind == EntryKind::Dir {
                    let new = self.new;
                    self.whole(new, &child, Change::Added)?;
                }
            }
        }
        Ok(())
    }
}

/// The two generations compared, from the arguments.
fn chosen(
    gens: &[GenerationInfo],
    args: &[OsString],
    client: &str,
) -> Result<(GenerationInfo, GenerationInfo)> {
    // Before the ids are looked up: `diff A B PATH` (as ls takes paths)
    // said that PATH is no generation of the client.
    if args.len() > 2 {
        plugin_api::bail!(
            "diff takes at most two generations, got {} arguments (it compares whole \
             generations; it takes no PATH)",
            args.len()
        );
    }
    let mut named = Vec::new();
    for arg in args {
        if arg.as_encoded_bytes().starts_with(b"/") {
            plugin_api::bail!(
                "diff compares whole generations and takes no PATH ('{}'): give one or two \
                 generation ids",
                escape(arg.as_encoded_bytes())
            );
        }
        let Some(id) = arg.to_str() else {
            plugin_api::bail!(
                "diff: '{}' is not a generation id",
                escape(arg.as_encoded_bytes())
            );
        };
        named.push(select::choose(gens, id, client)?.clone());
    }
    match named.len() {
        0 => match gens {
            [.., a, b] => Ok((a.clone(), b.clone())),
            _ => plugin_api::bail!(
                "diff needs two generations, and client '{}' has only one (name two ids to compare others)",
                escape(client.as_bytes())
            ),
        },
        1 => Ok((named[0].clone(), select::choose(gens, select::LATEST, client)?.clone())),
        _ => Ok((named[0].clone(), named[1].clone())),
    }
}

/// `obnam diff [GEN1] [GEN2]`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    select::hold_for_reading(&repo, &client, "diff");
    let gens = select::generations(&repo, &client)?;
    if args.len() < 2 {
        select::newest_is_known(&repo, &client)?;
    }
    let (old_gen, new_gen) = chosen(&gens, &args, &client)?;
    let old = repo.open_generation(&client, &old_gen.id)?;
    let new = repo.open_generation(&client, &new_gen.id)?;
    let mut differ = Differ {
        old: &old,
        new: &new,
        lines: Vec::new(),
        links: LinkTable::default(),
    };
    differ.dir(b"/")?;
    let mut lines = differ.lines;
    // Names that were one object and are no more, or the other way
    // round: metadata of theirs (a restore links them otherwise).
    for (path, what) in differ.links.changed() {
        match lines.iter_mut().find(|l| l.path == path) {
            Some(line) => line.what.push(what),
            None => {
                let kind = new
                    .lookup(names::as_path(&path))?
                    .map_or(EntryKind::File, |e| e.kind);
                lines.push(Line {
                    path,
                    change: Change::Metadata,
                    kind,
                    what: vec![what],
                });
            }
        }
    }
    lines.sort_by(|a, b| a.path.cmp(&b.path));
    let count = |c: Change| lines.iter().filter(|l| l.change == c).count();
    let summary = [
        Change::Added,
        Change::Removed,
        Change::Modified,
        Change::Metadata,
        Change::Kind,
    ]
    .map(|c| (c, count(c)));
    if ctx.output_format()?.is_json() {
        // One object, `{"changes", "from", "summary", "to"}` as a pretty
        // printer orders and indents it, with the changes printed as they
        // are made rather than all held as JSON values first.
        ctx.outln("{")?;
        let mut changes = crate::listing::PrettyArray::new(ctx, "  \"changes\": ", 1);
        for l in &lines {
            let mut obj = serde_json::Map::new();
            bytes_fields(&mut obj, "path", &l.path);
            obj.insert("change".into(), json!(l.change.word()));
            obj.insert("kind".into(), json!(kind_name(l.kind)));
            obj.insert("what".into(), json!(l.what));
            changes.push(&Value::Object(obj))?;
        }
        changes.finish(",")?;
        let mut totals = serde_json::Map::new();
        for (c, n) in summary {
            totals.insert(c.word().into(), json!(n));
        }
        let totals = serde_json::to_string_pretty(&totals)?.replace('\n', "\n  ");
        ctx.outln(&format!("  \"from\": {},", json!(old_gen.id)))?;
        ctx.outln(&format!("  \"summary\": {totals},"))?;
        ctx.outln(&format!("  \"to\": {}", json!(new_gen.id)))?;
        return ctx.outln("}");
    }
    ctx.outln(&format!("comparing {} with {}", old_gen.id, new_gen.id))?;
    for l in &lines {
        let mut line = format!("{}  {}", l.change.mark(), escape(&l.path));
        if !l.what.is_empty() {
            line.push_str("  (");
            line.push_str(&l.what.join(", "));
            line.push(')');
        }
        ctx.outln(&line)?;
    }
    ctx.outln(&format!(
        "{} added, {} removed, {} modified, {} metadata only, {} changed kind",
        summary[0].1, summary[1].1, summary[2].1, summary[3].1, summary[4].1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Entry {
        Entry {
            name: b"f".to_vec(),
            mode: 0o100644,
            size: 3,
            mtime: 10,
            checksum: vec![1; 32],
            nlink: 1,
            ..Entry::default()
        }
    }

    #[test]
    fn content_metadata_and_kind() {
        let a = file();
        assert_eq!(compare(&a, &a.clone()), None);
        let mut b = file();
        b.nlink = 2;
        b.ctime = 99;
        assert_eq!(
            compare(&a, &b),
            None,
            "link counts and ctimes are not compared"
        );
        let mut b = file();
        b.checksum = vec![2; 32];
        assert_eq!(compare(&a, &b).unwrap().0, Change::Modified);
        let mut b = file();
        b.mode = 0o100600;
        let (c, what) = compare(&a, &b).unwrap();
        assert_eq!(c, Change::Metadata);
        assert_eq!(what, vec!["mode 100644 -> 100600".to_string()]);
        let mut b = file();
        b.xattrs = vec![(b"user.x".to_vec(), b"1".to_vec())];
        assert_eq!(compare(&a, &b).unwrap().0, Change::Metadata);
        let mut b = file();
        b.kind = EntryKind::Symlink;
        assert_eq!(compare(&a, &b).unwrap().0, Change::Kind);
    }

    #[test]
    fn a_modified_symlink_or_device_says_what_changed() {
        let link = Entry {
            kind: EntryKind::Symlink,
            target: b"a/f1".to_vec(),
            ..Entry::default()
        };
        let mut moved = link.clone();
        moved.target = b"other".to_vec();
        let (c, what) = compare(&link, &moved).unwrap();
        assert_eq!(c, Change::Modified);
        assert_eq!(what, vec!["target a/f1 -> other".to_string()]);
        let dev = Entry {
            kind: EntryKind::CharDevice,
            rdev: (1 << 8) | 3,
            ..Entry::default()
        };
        let mut renumbered = dev.clone();
        renumbered.rdev = (1 << 8) | 5;
        let (c, what) = compare(&dev, &renumbered).unwrap();
        assert_eq!(c, Change::Modified);
        assert_eq!(what, vec!["device 1,3 -> 1,5".to_string()]);
    }

    #[test]
    fn directory_times_are_not_a_change() {
        let dir = Entry {
            kind: EntryKind::Dir,
            mode: 0o40755,
            mtime: 1,
            ..Entry::default()
        };
        let mut later = dir.clone();
        later.mtime = 2;
        assert_eq!(compare(&dir, &later), None);
    }
}
