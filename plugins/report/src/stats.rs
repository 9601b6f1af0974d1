//! `obnam stats`: where a repository's space goes.
//!
//! For each client: its generations (and how many are checkpoints), the
//! files and bytes of its newest one, the file data of all its
//! generations together (what keeping a full copy of each would take),
//! what its generations cost in storage after dedup and compression, and
//! the ratio of the two. For the repository: the same totals, and its
//! packs with the share of their bytes that no generation needs any more
//! (what `obnam prune` gives back). The figures come from
//! [`Repository::usage`](plugin_api::Repository::usage), which reads every
//! generation's directory trees but no file data.

use std::ffi::OsString;

use serde_json::{json, Value};

use plugin_api::human::bytes;
use plugin_api::{ClientUsage, Context, Result, Usage};

/// `logical` over `stored`, as people read a dedup ratio ("12.5x"); `-`
/// when nothing is stored.
pub fn ratio(logical: u64, stored: u64) -> Option<f64> {
    (stored > 0).then(|| logical as f64 / stored as f64)
}

fn ratio_text(logical: u64, stored: u64) -> String {
    match ratio(logical, stored) {
        Some(r) if r >= 100.0 => format!("{r:.0}x"),
        Some(r) => format!("{r:.2}x"),
        None => "-".into(),
    }
}

/// `part` as a percentage of `whole`, one decimal.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "0.0 %".into();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

use plugin_api::human::count as plural;

/// A client's lines; `missing`: blobs generations refer to are missing
/// (the client's ratio is then unknown too: its stored bytes leave out
/// what is missing, which may be its own).
fn client_lines(c: &ClientUsage, missing: bool) -> Vec<String> {
    vec![
        format!(
            "client {}: {}{}",
            plugin_api::names::escape(c.name.as_bytes()),
            plural(c.generations, "generation", "generations"),
            if c.checkpoints > 0 {
                format!(" ({})", plural(c.checkpoints, "checkpoint", "checkpoints"))
            } else {
                String::new()
            }
        ),
        format!(
            "  latest generation:  {}, {}",
            plural(c.latest_files, "file", "files"),
            bytes(c.latest_bytes)
        ),
        format!(
            "  all generations:    {} of file data",
            bytes(c.logical_bytes)
        ),
        format!(
            "  stored:             {} in {} (dedup and compression: {})",
            bytes(c.stored_bytes),
            plural(c.blobs, "blob", "blobs"),
            if missing {
                "unknown while blobs are missing".to_string()
            } else {
                ratio_text(c.logical_bytes, c.stored_bytes)
            }
        ),
    ]
}

/// The report as text lines.
pub fn text(url: &str, u: &Usage) -> Vec<String> {
    let generations = u.generations();
    let logical = u.logical_bytes();
    let mut lines = vec![
        format!("repository {url}"),
        format!(
            "  {}, {}",
            plural(u.clients.len() as u64, "client", "clients"),
            plural(generations, "generation", "generations")
        ),
        format!("  all generations:    {} of file data", bytes(logical)),
        format!(
            "  stored:             {} needed, in {} (dedup and compression: {})",
            bytes(u.used_bytes),
            plural(u.used_blobs, "blob", "blobs"),
            // With blobs missing, what is stored is less than the
            // generations need: no ratio says anything of the repository.
            if u.missing_blobs > 0 {
                "unknown while blobs are missing".to_string()
            } else {
                ratio_text(logical, u.used_bytes)
            }
        ),
        format!(
            "  packs:              {}, {}",
            plural(u.packs, "pack", "packs"),
            bytes(u.pack_bytes)
        ),
        format!(
            "  unused:             {} ({} of the packs' bytes): {} wholly unused, {} partly",
            bytes(u.unused_bytes()),
            percent(u.unused_bytes(), u.pack_bytes),
            plural(u.unused_packs, "pack", "packs"),
            u.partly_used_packs
        ),
    ];
    if u.missing_blobs > 0 {
        lines.push(format!(
            "  missing:            {} that generations refer to {} in no pack (run 'obnam fsck')",
            plural(u.missing_blobs, "blob", "blobs"),
            if u.missing_blobs == 1 { "is" } else { "are" }
        ));
    }
    for c in &u.clients {
        lines.push(String::new());
        lines.extend(client_lines(c, u.missing_blobs > 0));
    }
    lines
}

/// The report as one JSON document.
pub fn json(url: &str, u: &Usage) -> Value {
    let clients: Vec<Value> = u
        .clients
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "generations": c.generations,
                "checkpoints": c.checkpoints,
                "latest_files": c.latest_files,
                "latest_bytes": c.latest_bytes,
                "logical_bytes": c.logical_bytes,
                "blobs": c.blobs,
                "stored_bytes": c.stored_bytes,
                "dedup_ratio": if u.missing_blobs > 0 {
                    serde_json::Value::Null
                } else {
                    serde_json::json!(ratio(c.logical_bytes, c.stored_bytes))
                },
            })
        })
        .collect();
    let logical = u.logical_bytes();
    json!({
        "repository": url,
        "clients": clients,
        "generations": u.generations(),
        "logical_bytes": logical,
        "used_blobs": u.used_blobs,
        "used_bytes": u.used_bytes,
        "dedup_ratio": if u.missing_blobs > 0 {
            serde_json::Value::Null
        } else {
            serde_json::json!(ratio(logical, u.used_bytes))
        },
        "packs": u.packs,
        "pack_bytes": u.pack_bytes,
        "blobs": u.blobs,
        "unused_bytes": u.unused_bytes(),
        "unused_packs": u.unused_packs,
        "partly_used_packs": u.partly_used_packs,
        "missing_blobs": u.missing_blobs,
    })
}

/// `obnam stats`.
pub fn run(ctx: &Context<'_>, args: Vec<OsString>) -> Result<()> {
    if let Some(arg) = args.first() {
        plugin_api::bail!("stats takes no arguments, got '{}'", arg.to_string_lossy());
    }
    let repo = ctx.repository(false)?;
    // Every client's generations are read: a prune's deletion waits for
    // this run (beside a forget and prune, data looked missing).
    if let Err(e) = repo.lock_for_reading("") {
        plugin_api::tracing::warn!(
            "stats: could not take a reader's lock ({e}): a prune that runs meanwhile may make \
             data look missing"
        );
    }
    ctx.status("stats: reading every generation's directories");
    let usage = repo.usage()?;
    if ctx.output_format()?.is_json() {
        return ctx.outln(&serde_json::to_string_pretty(&json(&repo.url(), &usage))?);
    }
    for line in text(&repo.url(), &usage) {
        ctx.outln(&line)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_percentages() {
        assert_eq!(ratio_text(1000, 0), "-");
        assert_eq!(ratio_text(300, 100), "3.00x");
        assert_eq!(ratio_text(100_000, 100), "1000x");
        assert_eq!(percent(1, 3), "33.3 %");
        assert_eq!(percent(0, 0), "0.0 %");
    }

    #[test]
    fn text_names_every_client_and_figure() {
        let u = Usage {
            clients: vec![ClientUsage {
                name: "alice".into(),
                generations: 1,
                checkpoints: 0,
                latest_files: 1,
                latest_bytes: 2048,
                logical_bytes: 2048,
                blobs: 3,
                stored_bytes: 1024,
            }],
            packs: 2,
            pack_bytes: 4096,
            blobs: 5,
            used_blobs: 3,
            used_bytes: 1024,
            unused_packs: 1,
            partly_used_packs: 1,
            missing_blobs: 0,
        };
        let t = text("/r", &u).join("\n");
        assert!(t.contains("1 client, 1 generation"), "{t}");
        assert!(t.contains("client alice: 1 generation\n"), "{t}");
        assert!(t.contains("1 file, 2.0 kB"), "{t}");
        assert!(t.contains("(dedup and compression: 2.00x)"), "{t}");
        assert!(t.contains("75.0 % of the packs' bytes"), "{t}");
        assert!(!t.contains("missing"), "{t}");
        // With blobs missing, the ratio would flatter the repository.
        let damaged = Usage {
            missing_blobs: 41,
            ..u
        };
        let t = text("/r", &damaged).join("\n");
        assert!(
            t.contains("(dedup and compression: unknown while blobs are missing)"),
            "{t}"
        );
        assert!(t.contains("missing:            41 blobs"), "{t}");
        assert!(json("/r", &damaged)["dedup_ratio"].is_null());
        // So is each client's: its stored bytes leave the missing out.
        assert!(!t.contains("x)"), "{t}");
        assert!(json("/r", &damaged)["clients"][0]["dedup_ratio"].is_null());
    }
}
