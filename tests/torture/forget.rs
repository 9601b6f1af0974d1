//! What the model needs to know about `obnam forget`: its reports (the
//! JSON document and the text table) read back, and which generations a
//! forget could have removed when it did not live to report.
//!
//! The harness names generations from its model (so a named forget is
//! exact) or gives a policy; it learns what a policy will remove from a
//! `--pretend` run just before the step, and what a forget did remove
//! from the forget's own report. The judgement itself (which generation a
//! rule keeps) is the plugin's, tested on made-up histories there; the
//! harness only checks what must be true whatever the judgement: named
//! generations and only they go, the latest complete generation stays, a
//! count keeps that many, and nothing goes that the forget did not say.

use std::collections::BTreeSet;

/// Which generations a forget is asked to remove.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Generation ids picked from the client's committed generations
    /// (each value modulo their number; one or two ids).
    Named(Vec<u64>),
    /// The client's newest committed generation, by id: the one its next
    /// backup builds on.
    NamedLatest,
    /// `--keep POLICY`.
    Keep(&'static str),
    /// Neither: only checkpoints nothing should restore from go.
    CheckpointsOnly,
    /// `remove-client`: every generation of the client, then the client
    /// (its next backup starts it again, from nothing).
    WholeClient,
}

/// The policies the schedules use. Every generation of a schedule is made
/// within minutes, so the time rules keep the newest of one or two hours
/// or days: as sharp as the counts, with a boundary now and then.
pub const POLICIES: [&str; 8] = ["1", "2", "3", "5", "1d", "2h", "2,1d", "1,1h"];

/// One generation as a forget report lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub id: String,
    pub checkpoint: bool,
    pub remove: bool,
}

/// One client's part of a forget report: its generations in commit order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReport {
    pub client: String,
    pub verdicts: Vec<Verdict>,
    /// Named generations whose record could not be read (damaged, or
    /// read short under an injected fault), removed as damaged records
    /// (`removed the damaged record of generation ID`).
    pub damaged_removed: Vec<String>,
}

impl ClientReport {
    pub fn removed(&self) -> BTreeSet<String> {
        self.verdicts
            .iter()
            .filter(|v| v.remove)
            .map(|v| v.id.clone())
            .chain(self.damaged_removed.iter().cloned())
            .collect()
    }

    /// The complete (not checkpoint) generations, oldest first.
    pub fn complete(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.checkpoint)
    }
}

/// Read `forget --output-format json`: one JSON document, an array of
/// per-client objects (with `--prune`, that array under `forget` of an
/// object whose `prune` is the prune's report).
pub fn parse_json(stdout: &str) -> Result<Vec<ClientReport>, String> {
    let docs = crate::prune::json_documents(stdout)?;
    let [doc] = docs.as_slice() else {
        return Err(format!(
            "forget printed {} JSON documents, not one:\n{stdout}",
            docs.len()
        ));
    };
    let clients = doc
        .get("forget")
        .unwrap_or(doc)
        .as_array()
        .ok_or("forget JSON is not a list")?;
    clients
        .iter()
        .map(|c| {
            let client = c["client"]
                .as_str()
                .ok_or("forget JSON: a client without a name")?
                .to_string();
            let verdicts = c["generations"]
                .as_array()
                .ok_or("forget JSON: a client without generations")?
                .iter()
                .map(|g| {
                    let remove = match g["action"].as_str() {
                        Some("remove") => true,
                        Some("keep") => false,
                        other => return Err(format!("forget JSON: action {other:?}")),
                    };
                    Ok(Verdict {
                        id: g["id"].as_str().ok_or("forget JSON: no id")?.to_string(),
                        checkpoint: g["checkpoint"]
                            .as_bool()
                            .ok_or("forget JSON: no checkpoint flag")?,
                        remove,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            let removed = verdicts.iter().filter(|v| v.remove).count() as u64;
            if c["removed"].as_u64() != Some(removed) {
                return Err(format!(
                    "forget JSON: client {client} says removed {} but lists {removed} to remove",
                    c["removed"]
                ));
            }
            let damaged_removed = match c.get("damaged_removed") {
                None => Vec::new(),
                Some(ids) => ids
                    .as_array()
                    .ok_or("forget JSON: damaged_removed is not a list")?
                    .iter()
                    .map(|id| {
                        id.as_str()
                            .map(str::to_string)
                            .ok_or("forget JSON: a damaged id")
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            };
            Ok(ClientReport {
                client,
                verdicts,
                damaged_removed,
            })
        })
        .collect()
}

/// Read forget's text report (not `--pretend`): per client a `client
/// NAME:` line, a line per generation (`keep`/`remove`, id, kind, ...)
/// and the summary `client NAME: kept K, removed R of N generations`,
/// whose counts must agree with the lines.
pub fn parse_text(stdout: &str) -> Result<Vec<ClientReport>, String> {
    let mut reports: Vec<ClientReport> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("client ") {
            if let Some(name) = rest.strip_suffix(':') {
                reports.push(ClientReport {
                    client: name.to_string(),
                    verdicts: Vec::new(),
                    damaged_removed: Vec::new(),
                });
                continue;
            }
            let (name, counts) = rest
                .split_once(": ")
                .ok_or_else(|| format!("forget text: odd line {line:?}"))?;
            if let Some(id) = counts
                .strip_prefix("removed the damaged record of generation ")
                .and_then(|r| r.split_whitespace().next())
            {
                let current = reports
                    .last_mut()
                    .filter(|r| r.client == name)
                    .ok_or_else(|| format!("forget text: a client not listed: {line:?}"))?;
                current.damaged_removed.push(id.to_string());
                continue;
            }
            let current = reports
                .last()
                .filter(|r| r.client == name)
                .ok_or_else(|| format!("forget text: summary of a client not listed: {line:?}"))?;
            let kept = current.verdicts.iter().filter(|v| !v.remove).count();
            let removed = current.verdicts.len() - kept;
            let all = current.verdicts.len();
            let want = format!(
                "kept {kept}, removed {removed} of {all} {}",
                if all == 1 {
                    "generation"
                } else {
                    "generations"
                }
            );
            if counts != want {
                return Err(format!(
                    "forget text: summary {line:?} does not count the lines ({want})"
                ));
            }
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let (remove, id, kind) = match words.as_slice() {
            ["keep", id, kind, ..] => (false, id, kind),
            ["remove", id, kind, ..] => (true, id, kind),
            _ => continue,
        };
        let report = reports
            .last_mut()
            .ok_or_else(|| format!("forget text: a generation before any client: {line:?}"))?;
        report.verdicts.push(Verdict {
            id: id.to_string(),
            checkpoint: *kind == "checkpoint",
            remove,
        });
    }
    Ok(reports)
}

/// How many complete generations newer than a complete generation must
/// exist for the policy to remove it: the largest plain count (`2,1d`
/// keeps the newest two whatever the days say), else one (the latest
/// complete generation is always kept).
pub fn newer_needed(policy: &str) -> usize {
    policy
        .split(',')
        .filter_map(|rule| rule.trim().parse::<usize>().ok())
        .max()
        .unwrap_or(1)
        .max(1)
}

/// A policy that is a plain count alone: it keeps exactly that many.
pub fn plain_count(policy: &str) -> Option<usize> {
    policy.trim().parse().ok()
}

/// The complete generations a policy forget could have removed at some
/// moment of its step, when it did not report what it did: those with at
/// least `needed` complete generations newer than them among what existed
/// during the step. `before` is the client's list just before the step
/// (the `--pretend` run's); `new` the generations that backups of the
/// step reported, and `others` how many more complete ones the step's
/// failed backups may have made (at most one each). Every generation made
/// during the step is newer than every one of `before`; not knowing their
/// order among themselves, each counts the others as newer.
pub fn could_remove(
    before: &ClientReport,
    new: &BTreeSet<String>,
    others: usize,
    needed: usize,
) -> BTreeSet<String> {
    let made = new.len() + others;
    let old: Vec<&str> = before
        .complete()
        .map(|v| v.id.as_str())
        .filter(|id| !new.contains(*id))
        .collect();
    let mut out = BTreeSet::new();
    for (i, id) in old.iter().enumerate() {
        if old.len() - i - 1 + made >= needed {
            out.insert(id.to_string());
        }
    }
    if made > needed {
        out.extend(new.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gens: &[(&str, bool, bool)]) -> ClientReport {
        ClientReport {
            damaged_removed: Vec::new(),
            client: "c".into(),
            verdicts: gens
                .iter()
                .map(|&(id, checkpoint, remove)| Verdict {
                    id: id.into(),
                    checkpoint,
                    remove,
                })
                .collect(),
        }
    }

    #[test]
    fn the_text_and_json_reports_read_alike() {
        let text = "client c:\n  remove       a generation 2025-01-01 00:00:00 +0000  not kept by --keep\n  \
                    remove       b checkpoint 2025-01-01 00:00:00 +0000  checkpoint older than the latest complete generation\n  \
                    keep         d generation 2025-01-01 00:00:00 +0000  latest, last 1\n\
                    client c: kept 1, removed 2 of 3 generations\n";
        let json = r#"[{"client": "c", "pretend": false, "kept": 1, "removed": 2, "generations": [
            {"id": "a", "checkpoint": false, "action": "remove"},
            {"id": "b", "checkpoint": true, "action": "remove"},
            {"id": "d", "checkpoint": false, "action": "keep"}]}]"#;
        let want = vec![report(&[
            ("a", false, true),
            ("b", true, true),
            ("d", false, false),
        ])];
        assert_eq!(parse_text(text).unwrap(), want);
        assert_eq!(parse_json(json).unwrap(), want);
        assert!(parse_text(&text.replace("kept 1, removed 2", "kept 2, removed 1")).is_err());
        assert!(parse_json(&json.replace("\"removed\": 2", "\"removed\": 1")).is_err());
    }

    #[test]
    fn a_policy_needs_its_largest_count_of_newer_generations() {
        assert_eq!(newer_needed("2,1d"), 2);
        assert_eq!(newer_needed("1d"), 1);
        assert_eq!(newer_needed("5"), 5);
        assert_eq!(plain_count("3"), Some(3));
        assert_eq!(plain_count("2,1d"), None);
    }

    #[test]
    fn an_unreported_forget_could_remove_only_what_enough_newer_generations_cover() {
        let before = report(&[("a", false, false), ("x", true, false), ("b", false, false)]);
        let none = BTreeSet::new();
        // Nothing new: the latest stays, and with two needed, all stay.
        assert_eq!(
            could_remove(&before, &none, 0, 1),
            BTreeSet::from(["a".into()])
        );
        assert!(could_remove(&before, &none, 0, 2).is_empty());
        // A failed backup may have made one more: then b may go too.
        assert_eq!(
            could_remove(&before, &none, 1, 1),
            BTreeSet::from(["a", "b"].map(String::from))
        );
        // Two new ones: every old one may go, and with one needed, either
        // new one (their order is not known).
        let new = BTreeSet::from(["n1".to_string(), "n2".to_string()]);
        assert_eq!(
            could_remove(&before, &new, 0, 1),
            BTreeSet::from(["a", "b", "n1", "n2"].map(String::from))
        );
        assert_eq!(
            could_remove(&before, &new, 0, 2),
            BTreeSet::from(["a", "b"].map(String::from))
        );
    }
}
