//! Which names are hard links of each other, compared between two sides
//! (two generations for `diff`, a generation and the file system for
//! `verify`).
//!
//! A link count alone says nothing a user can act on: it counts names
//! outside the compared tree too, and changes whenever one comes or goes.
//! What a restore reproduces is which names *in the tree* are one object.
//! So each side's groups of names (those sharing a device and inode
//! number) are compared, among the names both sides have: a name whose
//! partners differ is a change (two names that were one file and are now
//! two, or the other way round). Names only one side has are already
//! reported as added or removed.

use std::collections::{BTreeSet, HashMap};

/// A (device, inode) pair: an object on one side.
pub type Object = (u64, u64);

/// The object of a recorded entry with other names (see
/// [`LinkTable::note`]).
pub fn recorded_object(e: &plugin_api::Entry) -> Option<Object> {
    (e.kind != plugin_api::EntryKind::Dir && e.nlink > 1 && (e.dev, e.ino) != (0, 0))
        .then_some((e.dev, e.ino))
}

/// The object of a live non-directory with other names.
pub fn live_object(m: &std::fs::Metadata) -> Option<Object> {
    use std::os::unix::fs::MetadataExt;
    (!m.is_dir() && m.nlink() > 1).then(|| (m.dev(), m.ino()))
}

/// A name, and its object before and after (see [`LinkTable`]).
type Noted = (Vec<u8>, Option<Object>, Option<Object>);

/// The names of both sides, each with the object it is on either side
/// when that object has more than one name (`None` otherwise: a
/// directory, or a link count of one).
#[derive(Default)]
pub struct LinkTable {
    names: Vec<Noted>,
}

impl LinkTable {
    /// Note a name both sides have; `before` and `after` are its
    /// objects when they have other names (see [`LinkTable`]).
    pub fn note(&mut self, name: Vec<u8>, before: Option<Object>, after: Option<Object>) {
        if before.is_some() || after.is_some() {
            self.names.push((name, before, after));
        }
    }

    /// The names whose partners differ, each with what changed, in name
    /// order: `hard links: with A -> with nothing else`.
    pub fn changed(&self) -> Vec<(Vec<u8>, String)> {
        let groups = |side: fn(&Noted) -> Option<Object>| {
            let mut groups: HashMap<Object, Vec<usize>> = HashMap::new();
            for (i, n) in self.names.iter().enumerate() {
                if let Some(object) = side(n) {
                    groups.entry(object).or_default().push(i);
                }
            }
            groups
        };
        let before = groups(|n| n.1);
        let after = groups(|n| n.2);
        let partners = |groups: &HashMap<Object, Vec<usize>>, object: Option<Object>, me: usize| {
            object
                .and_then(|o| groups.get(&o))
                .map(|g| {
                    g.iter()
                        .filter(|&&i| i != me)
                        .map(|&i| self.names[i].0.clone())
                        .collect::<BTreeSet<_>>()
                })
                .unwrap_or_default()
        };
        let mut changed: Vec<(Vec<u8>, String)> = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(i, (name, b, a))| {
                let (was, is) = (partners(&before, *b, i), partners(&after, *a, i));
                (was != is).then(|| {
                    (
                        name.clone(),
                        format!("hard links: {} -> {}", shown(&was), shown(&is)),
                    )
                })
            })
            .collect();
        changed.sort();
        changed
    }
}

/// A set of partner names, shortly: at most three named.
fn shown(names: &BTreeSet<Vec<u8>>) -> String {
    if names.is_empty() {
        return "no other name".to_string();
    }
    let mut listed: Vec<String> = names
        .iter()
        .take(3)
        .map(|n| crate::names::escape(n))
        .collect();
    if names.len() > 3 {
        listed.push(format!("{} more", names.len() - 3));
    }
    format!("with {}", listed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_and_a_new_pairing_are_found_and_nothing_else() {
        let mut t = LinkTable::default();
        // a and b were one file and are two; c and d are one file on
        // both sides (their inode changed, as on another file system).
        t.note(b"/a".to_vec(), Some((1, 10)), None);
        t.note(b"/b".to_vec(), Some((1, 10)), None);
        t.note(b"/c".to_vec(), Some((1, 20)), Some((2, 5)));
        t.note(b"/d".to_vec(), Some((1, 20)), Some((2, 5)));
        // e is linked to a name outside the tree on both sides.
        t.note(b"/e".to_vec(), Some((1, 30)), Some((1, 30)));
        // f and g become one.
        t.note(b"/f".to_vec(), None, Some((1, 40)));
        t.note(b"/g".to_vec(), None, Some((1, 40)));
        let changed = t.changed();
        assert_eq!(
            changed,
            vec![
                (
                    b"/a".to_vec(),
                    "hard links: with /b -> no other name".into()
                ),
                (
                    b"/b".to_vec(),
                    "hard links: with /a -> no other name".into()
                ),
                (
                    b"/f".to_vec(),
                    "hard links: no other name -> with /g".into()
                ),
                (
                    b"/g".to_vec(),
                    "hard links: no other name -> with /f".into()
                ),
            ]
        );
    }
}
