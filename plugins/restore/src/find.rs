//! `obnam find PATTERN...`: which paths match, in which generations.
//!
//! Each PATTERN is read as `--exclude` reads its patterns (the
//! `patterns` crate): a regular expression searched for anywhere in an
//! entry's absolute path (anchor it with `^` and `$` to match whole
//! paths), or with a prefix `re:`, `sh:`/`glob:` (a shell glob) or `pp:`
//! (a path and everything below it). A path matches if any pattern does.
//! Every generation of the client is searched unless `--generation` names
//! one.
//!
//! The output groups by path, then by *version*: the entry's kind, mode,
//! size, modification time, content checksum and symlink target. A file
//! unchanged over ten generations is one version listed with ten
//! generation ids; a file changed once is two versions.
//!
//! Directories are named by their content ([`TreeId`]), so a directory
//! that did not change between generations is searched once: its
//! matches are remembered by path and id, and reused.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::rc::Rc;

use serde_json::{json, Value};

use patterns::Pattern;
use plugin_api::{Context, Entry, EntryKind, GenerationReader, Result, TreeId};

use crate::format;
use crate::listing::{bytes_fields, kind_name, time_fields};
use crate::names::{self, escape};
use crate::select;

/// What makes two entries at one path the same version, and all that is
/// shown of one (not its list of chunks, which is long for a large
/// file, and was held for every match).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    kind: u8,
    mode: u32,
    size: u64,
    mtime: i64,
    mtime_ns: u32,
    checksum: Vec<u8>,
    target: Vec<u8>,
}

impl Version {
    fn of(e: &Entry) -> Self {
        Version {
            kind: e.kind as u8,
            mode: e.mode,
            size: e.size,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
            checksum: e.checksum.clone(),
            target: e.target.clone(),
        }
    }

    fn kind(&self) -> EntryKind {
        [
            EntryKind::File,
            EntryKind::Dir,
            EntryKind::Symlink,
            EntryKind::Fifo,
            EntryKind::Socket,
            EntryKind::CharDevice,
            EntryKind::BlockDevice,
        ]
        .into_iter()
        .find(|k| *k as u8 == self.kind)
        .unwrap_or(EntryKind::File)
    }
}

/// A match: a path, and its entry's version there.
type Found = (Rc<[u8]>, Rc<Version>);

/// The matches at and below one directory: its own, and those of its
/// subdirectories, shared with every other directory (of any generation)
/// that holds the same subdirectory. Each match is held once, however
/// deep: a list of every match below it per directory held a match
/// as many times as it was deep (5000 matches 120 folders deep took
/// 930 MB).
#[derive(Default)]
struct Matches {
    here: Vec<Found>,
    below: Vec<Rc<Matches>>,
}

impl Matches {
    /// Every match, in no particular order (without recursion: trees
    /// may be deep).
    fn each(self: &Rc<Self>, mut f: impl FnMut(&Found)) {
        let mut stack = vec![self.clone()];
        while let Some(m) = stack.pop() {
            m.here.iter().for_each(&mut f);
            stack.extend(m.below.iter().cloned());
        }
    }

    fn is_empty(&self) -> bool {
        self.here.is_empty() && self.below.is_empty()
    }
}

/// Searches generations, remembering each directory's matches.
struct Finder {
    patterns: Vec<Pattern>,
    memo: HashMap<(Vec<u8>, TreeId), Rc<Matches>>,
}

impl Finder {
    fn matches(&self, path: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.is_match(path))
    }

    /// The matches at and below the directory `path` (whose id is `id`).
    fn search(
        &mut self,
        reader: &GenerationReader,
        path: &[u8],
        id: TreeId,
    ) -> Result<Rc<Matches>> {
        if let Some(found) = self.memo.get(&(path.to_vec(), id)) {
            return Ok(found.clone());
        }
        let mut found = Matches::default();
        let children = reader.list_dir(names::as_path(path))?.unwrap_or_default();
        for child in children {
            if let Err(why) = names::check_name(&child.name) {
                plugin_api::tracing::warn!(
                    "{}: skipped: {why}",
                    names::show_child(path, &child.name)
                );
                continue;
            }
            let child_path = names::join(path, &child.name);
            if self.matches(&child_path) {
                found
                    .here
                    .push((child_path.as_slice().into(), Rc::new(Version::of(&child))));
            }
            if child.kind == EntryKind::Dir {
                if let Some(child_id) = reader.subtree_id(names::as_path(&child_path))? {
                    let below = self.search(reader, &child_path, child_id)?;
                    if !below.is_empty() {
                        found.below.push(below);
                    }
                }
            }
        }
        let found = Rc::new(found);
        self.memo.insert((path.to_vec(), id), found.clone());
        Ok(found)
    }
}

/// Per path, per version: the generations it is in, oldest first.
type Results = BTreeMap<Rc<[u8]>, BTreeMap<Rc<Version>, Vec<String>>>;

fn text_line(path: &[u8], v: &Version, gens: &[String]) -> String {
    let mut line = format!(
        "{} {:>10} {} {}",
        format::mode_string(v.kind(), v.mode),
        v.size,
        format::time(v.mtime, v.mtime_ns),
        escape(path)
    );
    if v.kind() == EntryKind::Symlink {
        line.push_str(" -> ");
        line.push_str(&escape(&v.target));
    }
    line.push_str("  in ");
    line.push_str(&gens.join(" "));
    line
}

fn json_version(path: &[u8], v: &Version, gens: &[String]) -> Value {
    let mut obj = serde_json::Map::new();
    bytes_fields(&mut obj, "path", path);
    obj.insert("kind".into(), json!(kind_name(v.kind())));
    obj.insert("mode".into(), json!(v.mode));
    obj.insert("size".into(), json!(v.size));
    time_fields(&mut obj, "mtime", v.mtime, v.mtime_ns);
    if v.kind() == EntryKind::Symlink {
        bytes_fields(&mut obj, "target", &v.target);
    }
    obj.insert("generations".into(), json!(gens));
    Value::Object(obj)
}

/// `obnam find PATTERN...`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    if args.is_empty() {
        plugin_api::bail!("find needs at least one PATTERN (a regular expression)");
    }
    let mut patterns = Vec::new();
    for arg in &args {
        patterns.push(
            Pattern::new(arg.as_encoded_bytes())
                .map_err(|e| plugin_api::Error::msg(format!("find: {e}")))?,
        );
    }
    let repo = ctx.repository(false)?;
    let client = select::client(ctx)?;
    select::hold_for_reading(&repo, &client, "find");
    let gens = select::generations(&repo, &client)?;
    let searched = match select::given_generation(ctx)? {
        Some(wanted) => vec![select::choose(&gens, &wanted, &client)?.clone()],
        None => gens,
    };
    let mut finder = Finder {
        patterns,
        memo: HashMap::new(),
    };
    let mut results = Results::new();
    for gen in &searched {
        ctx.status(&format!("find: searching generation {}", gen.id));
        let reader = repo.open_generation(&client, &gen.id)?;
        let Some(root) = reader.subtree_id(std::path::Path::new("/"))? else {
            continue;
        };
        finder.search(&reader, b"/", root)?.each(|(path, version)| {
            results
                .entry(path.clone())
                .or_default()
                .entry(version.clone())
                .or_default()
                .push(gen.id.clone());
        });
    }
    // Each path's versions in the order of the first generation they are in.
    let order = |ids: &Vec<String>| searched.iter().position(|g| g.id == ids[0]);
    let mut json = ctx
        .output_format()?
        .is_json()
        .then(|| crate::listing::PrettyArray::new(ctx, "", 0));
    for (path, versions) in &results {
        let mut versions: Vec<_> = versions.iter().collect();
        versions.sort_by_key(|(_, ids)| order(ids));
        for (version, ids) in versions {
            match json.as_mut() {
                Some(array) => array.push(&json_version(path, version, ids))?,
                None => ctx.outln(&text_line(path, version, ids))?,
            }
        }
    }
    match json {
        Some(array) => array.finish(""),
        None => Ok(()),
    }
}
