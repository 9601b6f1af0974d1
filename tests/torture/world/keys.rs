//! Key changes of an encrypted repository, between steps: `key passwd`
//! from the passphrase every run uses to a new one, under a fault drawn
//! as the other commands' are (`kill -9` and SIGINT at a random moment,
//! the crash limit, injected storage faults).
//!
//! What must hold after each: a change that reported success leaves the
//! new passphrase opening the repository and the old one opening
//! nothing; a stopped one leaves at least one of the two opening it (a
//! repository that no passphrase opens has lost every backup); and the
//! change run again, as a user would after seeing it fail, finishes it
//! (one passphrase, the new). The steps after check, with the new
//! passphrase, that every committed generation restores exactly.

use super::*;

/// How often a step is followed by a key change, in percent.
const KEY_CHANGE_PERCENT: u64 = 25;

impl World {
    /// The passphrase runs use now.
    pub(super) fn passphrase(&self) -> String {
        match self.key_changes {
            0 => "torture passphrase".to_string(),
            n => format!("torture passphrase {n}"),
        }
    }

    /// `obnam key passwd` from the current passphrase to `new`, with `fault`.
    fn key_passwd(&self, new: &str, fault: &Fault) -> Command {
        let mut cmd = self.obnam(0);
        cmd.env("OBNAM_NEW_PASSPHRASE", new)
            .args(fault.args())
            .args(["key", "passwd"]);
        cmd
    }

    /// Whether `passphrase` opens the repository (`key list` with it), and
    /// what the run said if it did not.
    fn opens(&mut self, passphrase: &str) -> Result<bool, Broken> {
        let mut cmd = self.obnam(0);
        cmd.env("OBNAM_PASSPHRASE", passphrase)
            .args(["key", "list"]);
        let out = run_together(vec![(cmd, Fault::None)]).remove(0);
        self.stats.processes += 1;
        if out.ok() {
            return Ok(true);
        }
        if out.stderr.contains("does not open any of its") {
            return Ok(false);
        }
        Err(format!(
            "key list with a passphrase failed otherwise than by not opening: {}",
            out.summary()
        ))
    }

    /// Maybe change the passphrase after `step` (encrypted local
    /// repositories only; drawn from `keys`, a stream of its own, so that
    /// the seeds' other operations stay as they were).
    pub(super) fn maybe_change_key(&mut self, step: usize, keys: &mut Rng) -> Result<(), Broken> {
        let roll = keys.below(100);
        // A change writes a lock, a slot, and deletes two objects: a
        // crash limit past a few never stops it.
        let fault = match self.draw_fault_within(keys, true, [40, 150, 400]) {
            Fault::CrashLimit(n) => Fault::CrashLimit(1 + n % 3),
            fault => fault,
        };
        if !self.cfg.encrypted || roll >= KEY_CHANGE_PERCENT {
            return Ok(());
        }
        let old = self.passphrase();
        let new = format!("torture passphrase {}", self.key_changes + 1);
        let cmd = self.key_passwd(&new, &fault);
        let out = run_together(vec![(cmd, fault.clone())]).remove(0);
        self.stats.processes += 1;
        self.stats.key_changes += 1;
        self.count_fault(&fault, &out);
        self.note(format!(
            "step {step}: key passwd to '{new}' ({fault:?}): {}",
            out.summary()
        ));
        let (old_opens, new_opens) = (self.opens(&old)?, self.opens(&new)?);
        if out.ok() {
            if old_opens || !new_opens {
                return Err(format!(
                    "a key passwd that reported success left the old passphrase opening: \
                     {old_opens}, the new: {new_opens}"
                ));
            }
        } else if !old_opens && !new_opens {
            return Err(format!(
                "a key passwd stopped by {fault:?} left no passphrase that opens the \
                 repository: {}",
                out.summary()
            ));
        }
        // A change that did not finish is run again, without a fault, as
        // a user would after seeing it fail.
        if old_opens {
            if !out.ok() {
                self.stats.key_changes_stopped += 1;
            }
            let again = self.key_passwd(&new, &Fault::None);
            let redo = run_together(vec![(again, Fault::None)]).remove(0);
            self.stats.processes += 1;
            self.note(format!("step {step}: key passwd again: {}", redo.summary()));
            if !redo.ok() {
                return Err(format!(
                    "a key passwd run again after one stopped failed: {}",
                    redo.summary()
                ));
            }
            if self.opens(&old)? || !self.opens(&new)? {
                return Err(
                    "after a key passwd run again, the old passphrase still opens, or the \
                     new one does not"
                        .to_string(),
                );
            }
        }
        self.key_changes += 1;
        Ok(())
    }
}
