//! What the model reads from `obnam prune` (and `forget --prune`): the
//! figures of its report, in JSON or text.
//!
//! A prune changes no generation, so the model has nothing to update
//! after one: what it must keep true is that every generation still
//! restores and `fsck --verify-data` stays clean (checked after every
//! step with a prune), and, at the end, that a prune with nothing beside
//! it finishes its work and leaves nothing more to do.

use serde_json::Value;

/// The figures of one prune report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub pretend: bool,
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    pub deferred: bool,
    /// Blobs generations refer to that are in no stored pack (JSON only).
    pub missing_blobs: Option<u64>,
    /// Plans of earlier prunes this one carried out (JSON only).
    pub finished_earlier_plans: Option<u64>,
}

/// Every JSON document of `stdout`, in order: `forget --prune
/// --output-format json` prints forget's array, then prune's object.
pub fn json_documents(stdout: &str) -> Result<Vec<Value>, String> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("JSON output: {e}:\n{stdout}"))
}

/// Read prune's JSON object.
pub fn from_json(v: &Value) -> Result<Figures, String> {
    let count = |key: &str| {
        v[key]
            .as_u64()
            .ok_or_else(|| format!("prune JSON: no count {key}: {v}"))
    };
    let flag = |key: &str| {
        v[key]
            .as_bool()
            .ok_or_else(|| format!("prune JSON: no flag {key}: {v}"))
    };
    let listed = |key: &str| {
        v[key]
            .as_array()
            .map(Vec::len)
            .ok_or_else(|| format!("prune JSON: no list {key}: {v}"))
    };
    let figures = Figures {
        pretend: flag("pretend")?,
        packs_deleted: count("packs_deleted")?,
        packs_rewritten: count("packs_rewritten")?,
        deferred: flag("deferred")?,
        missing_blobs: Some(count("missing_blobs")?),
        finished_earlier_plans: Some(count("finished_earlier_plans")?),
    };
    // The list names the packs the count counts (a deferred prune has
    // copied them already; one that waits for an earlier plan, none).
    let rewrite = listed("rewrite")? as u64;
    if rewrite != figures.packs_rewritten {
        return Err(format!(
            "prune JSON: packs_rewritten {} but {rewrite} packs listed to rewrite: {v}",
            figures.packs_rewritten
        ));
    }
    listed("delete")?;
    Ok(figures)
}

/// Read prune's text report: its closing lines (`packs deleted: N` ..., or
/// `packs to delete: N` ... under `--pretend`), the deferral line and the
/// `delete`/`rewrite` lines of `--pretend`, which must agree with the
/// counts.
pub fn from_text(stdout: &str) -> Result<Figures, String> {
    let number = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(|n| {
                n.trim()
                    .parse::<u64>()
                    .map_err(|e| format!("prune text: {prefix}{n}: {e}"))
            })
    };
    let pretend = stdout.lines().any(|l| l.starts_with("packs to delete: "));
    let (deleted, rewritten) = if pretend {
        ("packs to delete: ", "packs to rewrite: ")
    } else {
        ("packs deleted: ", "packs rewritten: ")
    };
    let missing = |what: &str| format!("prune text: no line {what:?}:\n{stdout}");
    let figures = Figures {
        pretend,
        packs_deleted: number(deleted).ok_or_else(|| missing(deleted))??,
        packs_rewritten: number(rewritten).ok_or_else(|| missing(rewritten))??,
        deferred: stdout.lines().any(|l| l.starts_with("deletion deferred: ")),
        missing_blobs: None,
        finished_earlier_plans: None,
    };
    if pretend {
        let rewrite = stdout
            .lines()
            .filter(|l| l.starts_with("rewrite packs/"))
            .count() as u64;
        if rewrite != figures.packs_rewritten {
            return Err(format!(
                "prune --pretend lists {rewrite} packs to rewrite but counts {}:\n{stdout}",
                figures.packs_rewritten
            ));
        }
    }
    if !stdout.lines().any(|l| l.starts_with("time: ")) {
        return Err(missing("time: "));
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reports_read_alike() {
        let text = "packs deleted: 2\npacks rewritten: 1\nbytes freed: 10\nbytes rewritten: 3\n\
                    space given back: 7 B\ntime: 0.05 s\n";
        let json = r#"{"pretend": false, "packs_deleted": 2, "packs_rewritten": 1,
            "deferred": false, "missing_blobs": 0, "finished_earlier_plans": 0,
            "delete": ["packs/aa/aa"], "rewrite": ["packs/bb/bb"]}"#;
        let t = from_text(text).unwrap();
        let j = from_json(&json_documents(json).unwrap()[0]).unwrap();
        assert_eq!(
            (t.packs_deleted, t.packs_rewritten, t.deferred),
            (2, 1, false)
        );
        assert_eq!(
            (j.packs_deleted, j.packs_rewritten, j.deferred),
            (2, 1, false)
        );
        assert_eq!(j.missing_blobs, Some(0));
        // Documents one after the other are read apart (the harness then
        // requires one).
        assert_eq!(json_documents(&format!("[]\n{json}")).unwrap().len(), 2);
        let pretend = "rewrite packs/bb/bb\npacks to delete: 0\npacks to rewrite: 2\ntime: 0 s\n";
        assert!(from_text(pretend).is_err());
        assert!(from_text("packs deleted: 1\n").is_err());
    }
}
