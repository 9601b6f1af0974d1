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

use std::collections::HashMap;

/// An object on one side: a device and inode number, and for a recorded
/// entry a digest of its state (see `Entry::object_key`).
pub type Object = (u64, u64, u64);

/// The object of a recorded entry with other names (see
/// [`LinkTable::note`]): names recorded with one inode number in
/// different states are two objects, as restore makes them.
pub fn recorded_object(e: &plugin_api::Entry) -> Option<Object> {
    (e.kind != plugin_api::EntryKind::Dir && e.nlink > 1 && (e.dev, e.ino) != (0, 0))
        .then(|| e.object_key())
}

/// The object of a live non-directory with other names.
pub fn live_object(m: &std::fs::Metadata) -> Option<Object> {
    use std::os::unix::fs::MetadataExt;
    (!m.is_dir() && m.nlink() > 1).then(|| (m.dev(), m.ino(), 0))
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
    ///
    /// In time linear in the names (and their sorting): each side's
    /// groups are interned by their members, so that a name's partners
    /// are compared as two numbers, and only a changed name's are listed,
    /// three at most. (Comparing each name's partners as sets of names
    /// took 44 s for one file of 20,000 names.)
    pub fn changed(&self) -> Vec<(Vec<u8>, String)> {
        // Each side's groups, their members in name order.
        let groups = |side: fn(&Noted) -> Option<Object>| {
            let mut groups: HashMap<Object, Vec<usize>> = HashMap::new();
            for (i, n) in self.names.iter().enumerate() {
                if let Some(object) = side(n) {
                    groups.entry(object).or_default().push(i);
                }
            }
            for members in groups.values_mut() {
                members.sort_by(|&x, &y| self.names[x].0.cmp(&self.names[y].0));
            }
            groups
        };
        let before = groups(|n| n.1);
        let after = groups(|n| n.2);
        // A number for each set of names, the same on both sides.
        let mut sets: HashMap<Vec<usize>, usize> = HashMap::new();
        let mut intern = |members: &[usize]| {
            let mut key = members.to_vec();
            key.sort_unstable();
            let next = sets.len();
            *sets.entry(key).or_insert(next)
        };
        let before_sets: HashMap<Object, usize> =
            before.iter().map(|(o, m)| (*o, intern(m))).collect();
        let after_sets: HashMap<Object, usize> =
            after.iter().map(|(o, m)| (*o, intern(m))).collect();
        let mut changed = Vec::new();
        for (i, (name, b, a)) in self.names.iter().enumerate() {
            // A name with no partner on a side is a set of its own.
            let was = b.map_or_else(|| intern(&[i]), |o| before_sets[&o]);
            let is = a.map_or_else(|| intern(&[i]), |o| after_sets[&o]);
            if was != is {
                let partners = |groups: &HashMap<Object, Vec<usize>>, object: Option<Object>| {
                    self.shown(object.and_then(|o| groups.get(&o)), i)
                };
                changed.push((
                    name.clone(),
                    format!(
                        "hard links: {} -> {}",
                        partners(&before, *b),
                        partners(&after, *a)
                    ),
                ));
            }
        }
        changed.sort();
        changed
    }

    /// The partners of name `me` in `group` (its members in name order,
    /// `me` among them), shortly: at most three named.
    fn shown(&self, group: Option<&Vec<usize>>, me: usize) -> String {
        // `me` is one of its group's members.
        let others = group.map_or(0, |g| g.len().saturating_sub(1));
        if others == 0 {
            return "no other name".to_string();
        }
        let mut listed: Vec<String> = group
            .into_iter()
            .flatten()
            .filter(|&&j| j != me)
            .take(3)
            .map(|&j| crate::names::escape(&self.names[j].0))
            .collect();
        if others > 3 {
            listed.push(format!("{} more", others - 3));
        }
        format!("with {}", listed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_and_a_new_pairing_are_found_and_nothing_else() {
        let mut t = LinkTable::default();
        // a and b were one file and are two; c and d are one file on
        // both sides (their inode changed, as on another file system).
        t.note(b"/a".to_vec(), Some((1, 10, 0)), None);
        t.note(b"/b".to_vec(), Some((1, 10, 0)), None);
        t.note(b"/c".to_vec(), Some((1, 20, 0)), Some((2, 5, 0)));
        t.note(b"/d".to_vec(), Some((1, 20, 0)), Some((2, 5, 0)));
        // e is linked to a name outside the tree on both sides.
        t.note(b"/e".to_vec(), Some((1, 30, 0)), Some((1, 30, 0)));
        // f and g become one.
        t.note(b"/f".to_vec(), None, Some((1, 40, 0)));
        t.note(b"/g".to_vec(), None, Some((1, 40, 0)));
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

    /// One file of many names, one of them taken apart: that name is
    /// changed, and so is every other (each lost a partner), listed
    /// shortly. In linear time: this was quadratic (44 s for 20,000 names;
    /// these 200,000 would take hours).
    #[test]
    fn a_name_taken_out_of_a_large_group_changes_every_name_listed_shortly() {
        let mut t = LinkTable::default();
        let n = 200_000;
        for i in 0..n {
            let name = format!("/f{i:06}").into_bytes();
            let after = (i != 5).then_some((1, 10, 0));
            t.note(name, Some((1, 10, 0)), after);
        }
        let changed = t.changed();
        // Every other name lost one partner: it changed too.
        assert_eq!(changed.len(), n);
        assert_eq!(
            changed[5],
            (
                b"/f000005".to_vec(),
                format!(
                    "hard links: with /f000000, /f000001, /f000002, {} more -> no other name",
                    n - 4
                )
            )
        );
        assert_eq!(
            changed[0].1,
            format!("hard links: with /f000001, /f000002, /f000003, {} more -> with /f000001, /f000002, /f000003, {} more", n - 4, n - 5)
        );
    }
}
