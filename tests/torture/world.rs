//! One schedule played against one repository: the clients, the model of
//! what must be true, the steps, and the invariants checked after each.
//!
//! Every other client's backups name, beside its tree, the first entry
//! of it as a root of its own (walked apart, after the outer one): the
//! tree backed up is the same.
//!
//! The model records, for every backup that reported success, the
//! manifest of the tree it backed up ([`Manifest`]); for every run that
//! did not (killed, interrupted, crashed, failed), the manifest of the
//! tree it was backing up. After every step the harness checks:
//!
//! 1. every process ended for an allowed reason: success, the signal or
//!    crash limit the schedule gave it, or an injected storage fault with
//!    a clear `ERROR:` line; never a panic, never a hang;
//!    a run without faults always succeeds (the next run after any crash
//!    succeeds without `force-lock`: stale locks of dead processes are
//!    broken, see the recovery step), and so does every run beside a
//!    `force-lock`, which removes the locks of runs that are gone only;
//! 2. every generation whose backup reported success, and that no forget
//!    removed, is listed, in commit order, and restores exactly (names,
//!    types, content, mode, owner, times, hard links, holes);
//! 3. no generation exists that no run created: generations the model
//!    does not know are only left by runs that did not report success (or
//!    kept with `--leave-checkpoints`), at most one finished generation
//!    per such run, and every file they hold is a file of the tree of one
//!    of the client's runs;
//! 4. `latest` is the finished generation of the client's last run, when
//!    that run succeeded (and no forget removed it since);
//! 5. `fsck --verify-data` finds no problem (one beside a forget or a
//!    prune included: a generation removed under it is no damage);
//! 6. a restore that reports success under injected faults restored the
//!    right data (faults may stop a run, never corrupt its result);
//! 7. at the end, after one clean backup of every client, no lock is left;
//! 8. a forget removes what it says and nothing else, whatever runs beside
//!    it (backups of its own client and of others, restores, fsck) and
//!    however it ends. One that reported success removed exactly the
//!    generations its report (JSON or text) marks `remove`, and the
//!    complete ones it keeps are still listed; named, it removed exactly
//!    the named complete generations; under a policy it kept the latest
//!    complete generation, and a plain count `N` kept the newest N. One
//!    that did not report (killed, crashed, failed on a storage fault)
//!    removed only named generations, or, under a policy, only
//!    generations that had enough newer complete ones during the step
//!    (see `forget::could_remove`). With no backup of its client beside
//!    it, a forget decides exactly what its `--pretend` run said. A
//!    removed generation is never listed again; the model forgets it (it
//!    no longer has to restore), and a restore or `ls` beside the forget
//!    may fail, with an `ERROR:` line, only if a generation it could have
//!    been reading was removed. `remove-client` is a forget of every
//!    generation of its client: one that reported success left none of
//!    those there before the step (a backup beside it may start the
//!    client again), one that did not may have removed any of them;
//! 9. a prune (alone, `forget --prune`, or two at once) beside backups of
//!    every client, restores, forgets and fsck, killed or crashed or
//!    failed on a storage fault at any moment, loses nothing: invariants
//!    2 to 6 hold after it (a restore beside it without faults succeeds
//!    and is exact; the end restores every committed generation after its
//!    prunes, and fsck follows); a prune without faults after a failed one
//!    succeeds; at the end, prunes with nothing beside them carry out
//!    every plan without deferring, find no generation referring to data
//!    in no pack, leave no plan and no lock, and leave a further prune
//!    nothing to delete or rewrite.
//! 10. on a local folder, now and then between steps, the record of a
//!     committed generation is damaged and a stray file put beside it:
//!     `genids` lists the client's other generations and names the damaged
//!     one, prune refuses and deletes no pack, and `forget ID` removes the
//!     record (and breaks a damaged lock object long untouched); the
//!     generation then counts as forgotten (invariants 2 to 9 go on
//!     holding for the rest). And now and then, when an earlier prune
//!     left a plan (deferred, or stopped), the plan is damaged (its plan
//!     object or its runs record changed or cut short, or a folder or a
//!     FIFO put in its place): a backup stops, naming it (when the plan
//!     object is damaged), `fsck` names it, a prune removes it and
//!     succeeds, and then a backup succeeds; invariants 2 to 9 go on
//!     holding (a damaged plan is never carried out).
//! 11. now and then, `repair-index` under a drawn fault changes nothing
//!     the model knows; on a local folder, after an index object is
//!     deleted, a repair without faults leaves `fsck` nothing to say
//!     ([`World::maybe_lose_an_index_object`]).
//! 12. on a local folder, now and then, with packs cut to half their
//!     size, a backup without faults commits a generation that restores
//!     exactly while they are cut ([`World::maybe_cut_packs`]).
//! 13. on a local folder, now and then, a client's record is deleted or
//!     damaged: `clients` still lists the client, naming the record,
//!     `fsck` reports it, and the client's next backup (beside another
//!     client's, under a drawn fault) writes it again, after which neither
//!     names it ([`World::maybe_lose_a_client_record`]).
//! 15. on a local folder, now and then, a byte of a pack is changed and
//!     `repair-packs` (under a drawn fault, then without) takes the pack
//!     out; after a clean backup of every client, `fsck` names only
//!     generations committed before the damage, which are forgotten, and
//!     then nothing ([`World::maybe_damage_a_pack`]).
//! 16. on a local folder of an unsealed repository, now and then, one
//!     byte of the filter header of a committed generation's record is
//!     changed (a tag's byte, its length, the count of tags): `genids`
//!     leaves the generation out naming `repair-records`, and
//!     `repair-records` (under a drawn fault, then without) writes the
//!     record back byte for byte; the generation stays in the model, and
//!     restores exactly at the next checks
//!     ([`World::maybe_damage_a_record_header`]).
//! 14. a restore or `ls` without injected faults beside a `forget` (and a
//!     prune) of its client never finds its generation's data deleted
//!     under it: it holds a reader's lock, and a prune's deletion waits
//!     for it. It may fail only because its generation was gone before it
//!     looked (invariant 8).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use obnam_test_support::backend::Backend;
use obnam_test_support::TestEnv;

use crate::forget::{self as forget_report, ClientReport, Selection, POLICIES};
use crate::manifest::Manifest;
use crate::rng::Rng;
use crate::runs::{run_together, Fault, Outcome};
use crate::sources::Source;

mod keys;

/// What one schedule is made of.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub steps: usize,
    pub clients: usize,
    pub backend: Backend,
    /// Whether the schedule injects storage faults (`--testing-storage-faults`).
    pub storage_faults: bool,
    /// Whether the repository is encrypted (created with `--encrypt` by
    /// the clients' simultaneous first backups; every run unlocks it).
    pub encrypted: bool,
}

/// What a schedule did, for the summary.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub processes: u64,
    pub backups: u64,
    pub backups_committed: u64,
    pub kills: u64,
    pub interrupts: u64,
    pub crash_limits: u64,
    pub storage_fault_runs: u64,
    pub runs_stopped_by_faults: u64,
    pub concurrent_groups: u64,
    pub same_client_overlaps: u64,
    pub restores_verified: u64,
    pub fscks: u64,
    pub forgets: u64,
    /// Forgets that reported success.
    pub forgets_reported: u64,
    /// Committed generations that forgets removed.
    pub generations_forgotten: u64,
    /// Prunes (`forget --prune` included) and those that reported success.
    pub prunes: u64,
    pub prunes_reported: u64,
    /// Reported prunes whose deletion waited for runs beside them.
    pub prunes_deferred: u64,
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    /// Generation records damaged by the harness, then forgotten by id.
    pub records_damaged: u64,
    /// Prune plans damaged by the harness, then removed by a prune.
    pub plans_damaged: u64,
    /// Passphrase changes (`key passwd`), and those stopped by a fault
    /// before they finished (then run again).
    pub key_changes: u64,
    pub key_changes_stopped: u64,
    /// `repair-index` runs, and index objects the harness deleted first.
    pub index_repairs: u64,
    pub index_objects_lost: u64,
    /// Packs the harness cut short for a backup, then put back.
    pub packs_cut: u64,
    /// Client records the harness deleted or damaged, then a backup of
    /// the client wrote again.
    pub client_records_lost: u64,
    /// Packs the harness changed a byte of, then `repair-packs` took out;
    /// and the committed generations that lost data only they held.
    pub packs_damaged: u64,
    pub generations_lost_to_damage: u64,
    /// Generation records whose filter header the harness damaged, then
    /// `repair-records` wrote back.
    pub record_headers_repaired: u64,
    /// `force-lock` runs beside the others.
    pub force_locks: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.processes += o.processes;
        self.backups += o.backups;
        self.backups_committed += o.backups_committed;
        self.kills += o.kills;
        self.interrupts += o.interrupts;
        self.crash_limits += o.crash_limits;
        self.storage_fault_runs += o.storage_fault_runs;
        self.runs_stopped_by_faults += o.runs_stopped_by_faults;
        self.concurrent_groups += o.concurrent_groups;
        self.same_client_overlaps += o.same_client_overlaps;
        self.restores_verified += o.restores_verified;
        self.fscks += o.fscks;
        self.records_damaged += o.records_damaged;
        self.plans_damaged += o.plans_damaged;
        self.key_changes += o.key_changes;
        self.key_changes_stopped += o.key_changes_stopped;
        self.index_repairs += o.index_repairs;
        self.index_objects_lost += o.index_objects_lost;
        self.packs_cut += o.packs_cut;
        self.client_records_lost += o.client_records_lost;
        self.packs_damaged += o.packs_damaged;
        self.generations_lost_to_damage += o.generations_lost_to_damage;
        self.record_headers_repaired += o.record_headers_repaired;
        self.force_locks += o.force_locks;
        self.forgets += o.forgets;
        self.forgets_reported += o.forgets_reported;
        self.generations_forgotten += o.generations_forgotten;
        self.prunes += o.prunes;
        self.prunes_reported += o.prunes_reported;
        self.prunes_deferred += o.prunes_deferred;
        self.packs_deleted += o.packs_deleted;
        self.packs_rewritten += o.packs_rewritten;
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} steps, {} obnam processes: {} backups ({} committed), {} kill -9, {} SIGINT, \
             {} crash limits, {} runs with storage faults ({} runs stopped by a fault in all), \
             {} concurrent groups ({} with one client twice), {} restores verified, {} fsck, \
             {} forgets ({} reported success, {} committed generations removed), \
             {} prunes ({} reported success, {} deferred; {} packs deleted, {} rewritten), \
             {} generation records damaged and forgotten, {} prune plans damaged and \
             removed, {} passphrase changes ({} stopped and run again), {} repair-index \
             runs ({} after an index object was lost), {} packs cut short for a backup, \
             {} client records lost or damaged and written again, {} packs damaged and \
             repaired ({} committed generations lost data only they held), {} generation \
             records' filter headers damaged and written back whole, {} force-locks beside \
             other runs",
            self.steps,
            self.processes,
            self.backups,
            self.backups_committed,
            self.kills,
            self.interrupts,
            self.crash_limits,
            self.storage_fault_runs,
            self.runs_stopped_by_faults,
            self.concurrent_groups,
            self.same_client_overlaps,
            self.restores_verified,
            self.fscks,
            self.forgets,
            self.forgets_reported,
            self.generations_forgotten,
            self.prunes,
            self.prunes_reported,
            self.prunes_deferred,
            self.packs_deleted,
            self.packs_rewritten,
            self.records_damaged,
            self.plans_damaged,
            self.key_changes,
            self.key_changes_stopped,
            self.index_repairs,
            self.index_objects_lost,
            self.packs_cut,
            self.client_records_lost,
            self.packs_damaged,
            self.generations_lost_to_damage,
            self.record_headers_repaired,
            self.force_locks
        )
    }
}

/// A generation the model knows: a backup reported it.
struct Committed {
    id: String,
    tree: Arc<Manifest>,
    /// The step of the run: generations of later steps are later.
    step: usize,
    verified: bool,
}

struct Client {
    name: String,
    source: Source,
    committed: Vec<Committed>,
    /// Committed generations that a forget removed: never listed again.
    forgotten: Vec<Committed>,
    /// Trees of runs that did not report success.
    interrupted: Vec<Arc<Manifest>>,
    /// Whether some successful run kept its checkpoints.
    kept_checkpoints: bool,
    /// Generations the model does not know, already checked.
    checked_unknown: BTreeSet<String>,
    /// The generations committed by the client's last step with backups,
    /// if every backup of that step succeeded: `latest` must be one of them.
    latest_must_be: Option<Vec<String>>,
    /// A run of this client failed: the next step backs it up cleanly.
    needs_recovery: bool,
}

/// One process of a step.
#[derive(Clone, Debug)]
enum Job {
    Backup {
        client: usize,
        fault: Fault,
        checkpoint: Option<&'static str>,
        keep_checkpoints: bool,
    },
    /// Restore the `pick`-th (modulo) committed generation.
    Restore {
        client: usize,
        pick: u64,
        fault: Fault,
    },
    Fsck {
        fault: Fault,
    },
    Ls {
        client: usize,
    },
    /// `forget` for the client (or every client), after a `--pretend` run
    /// of the same request just before the step.
    Forget {
        client: usize,
        all_clients: bool,
        selection: Selection,
        fault: Fault,
        /// Whether the real run reports in JSON (else in text).
        json: bool,
        /// `--prune`: prune after forgetting.
        prune: bool,
    },
    Prune {
        fault: Fault,
        /// `--repack-threshold` (default 20).
        threshold: Option<u8>,
        pretend: bool,
        json: bool,
    },
    /// `force-lock` of the client (or every client), beside the step's
    /// other runs: it removes only locks left by runs that are gone (a
    /// `kill -9`), never a live run's, so every run beside it ends as its
    /// own fault allows.
    ForceLock {
        client: usize,
        all_clients: bool,
        fault: Fault,
    },
}

/// A restore (of the generation) or `ls` of the client that failed beside
/// a forget of it: explained once it is known what the forgets removed.
struct BesideForget {
    client: usize,
    id: Option<String>,
    what: String,
    why: String,
}

/// What the model knows of a forget of the running step.
struct PendingForget {
    /// The clients it works on.
    clients: Vec<usize>,
    /// The generation ids it names (resolved from the model).
    named: Option<BTreeSet<String>>,
    /// Its `--pretend` report just before the step, per client.
    before: BTreeMap<usize, ClientReport>,
}

/// A failed invariant.
type Broken = String;

/// The part of a forget's report for client `name`. With `--all-clients`
/// a client that `remove-client` removed (and no backup started again)
/// has none: it was not there to judge, so it is judged to lose nothing.
fn client_part(reports: &[ClientReport], name: &str, all_clients: bool) -> Option<ClientReport> {
    match reports.iter().find(|r| r.client == name) {
        Some(report) => Some(report.clone()),
        None if all_clients => Some(ClientReport {
            client: name.to_string(),
            verdicts: Vec::new(),
            damaged_removed: Vec::new(),
        }),
        None => None,
    }
}

pub struct World {
    cfg: Config,
    env: TestEnv,
    url: String,
    clients: Vec<Client>,
    log: String,
    pub stats: Stats,
    scratch: u64,
    /// The clients backed up since the last check.
    touched: BTreeSet<usize>,
    /// A prune failed: the next step starts with one without faults.
    prune_needs_recovery: bool,
    /// Passphrase changes so far: they name the passphrase in use.
    key_changes: u64,
}

impl World {
    pub fn new(cfg: Config) -> World {
        let env = TestEnv::new();
        let url = cfg.backend.repo_url(&env, "repo");
        let mut rng = Rng::new(cfg.seed ^ 0x005e_ed0f_7ee5);
        let clients = (0..cfg.clients)
            .map(|i| Client {
                name: format!("client{i}"),
                source: Source::create(env.path().join(format!("src{i}")), &mut rng),
                committed: Vec::new(),
                forgotten: Vec::new(),
                interrupted: Vec::new(),
                kept_checkpoints: false,
                checked_unknown: BTreeSet::new(),
                latest_must_be: None,
                needs_recovery: false,
            })
            .collect();
        World {
            cfg,
            env,
            url,
            clients,
            log: String::new(),
            stats: Stats::default(),
            scratch: 0,
            touched: BTreeSet::new(),
            prune_needs_recovery: false,
            key_changes: 0,
        }
    }

    fn obnam(&self, client: usize) -> Command {
        let mut cmd = self.cfg.backend.obnam(&self.env, &self.url);
        cmd.args(["--client-name", &self.clients[client].name])
            .args(["--lock-timeout", "200"]);
        if self.cfg.encrypted {
            // The cipher is the default (the processor's); the key
            // derivation as cheap as the settings allow, as it is paid by
            // every run.
            cmd.env("OBNAM_PASSPHRASE", self.passphrase()).args([
                "--encrypt",
                "--kdf-memory",
                "64KiB",
                "--kdf-iterations",
                "1",
            ]);
        }
        cmd
    }

    /// Play the whole schedule; on a broken invariant, panic with the
    /// seed, the schedule so far and how to replay it.
    pub fn play(&mut self) {
        let mut rng = Rng::new(self.cfg.seed);
        // Operations added to the harness later (forget, prune) draw from a
        // stream of their own: a seed's backups, restores and faults stay
        // what they were before, so a regression seed still plays the
        // schedule that found its fault, with the new operations beside.
        let mut ops = Rng::new(self.cfg.seed ^ 0x0f0e_6e70_9e0b_5e5d);
        // And damage to records, later still, from a third; to prune
        // plans, from a fourth.
        let mut damage = Rng::new(self.cfg.seed ^ 0x0da3_a6ed_4ec0_4d5e);
        let mut plan_damage = Rng::new(self.cfg.seed ^ 0x9a1d_da3a_6ed0_7a15);
        // And passphrase changes, from a fifth.
        let mut keys = Rng::new(self.cfg.seed ^ 0x4e75_c4a6_9e5e_ed01);
        // And index objects lost and repaired, from a sixth.
        let mut index_loss = Rng::new(self.cfg.seed ^ 0x1bde_7105_7e9a_14ed);
        // And packs cut short, from a seventh.
        let mut pack_cut = Rng::new(self.cfg.seed ^ 0x5c07_5407_7c0d_e5a1);
        // And client records lost, from an eighth.
        let mut client_loss = Rng::new(self.cfg.seed ^ 0xc11e_7a3c_0a1d_105e);
        // And packs damaged and repaired, from a ninth.
        let mut pack_damage = Rng::new(self.cfg.seed ^ 0xda3a_6ed0_9ac4_5e11);
        // And records' filter headers damaged and repaired, from a tenth.
        let mut header_damage = Rng::new(self.cfg.seed ^ 0x4ead_e7da_3a6e_d0f1);
        // And force-locks beside the step's runs, from an eleventh.
        let mut force_locks = Rng::new(self.cfg.seed ^ 0xf0ce_10c5_be5d_e0ff);
        // Step 0: every client backs up at once, so the repository is
        // created by simultaneous first runs, and commands other than
        // backup have a repository to work on.
        let start = (0..self.clients.len())
            .map(|client| Job::Backup {
                client,
                fault: Fault::None,
                checkpoint: None,
                keep_checkpoints: false,
            })
            .collect();
        self.note("step 0: a first backup of every client, at once");
        if let Err(broken) = self.run_jobs(0, start) {
            self.fail(0, &broken);
        }
        for step in 1..=self.cfg.steps {
            let result = self
                .step(step, &mut rng, &mut ops, &mut force_locks)
                .and_then(|()| self.check(step, &mut rng))
                .and_then(|()| self.maybe_damage_a_record(step, &mut damage))
                .and_then(|()| self.maybe_damage_a_plan(step, &mut plan_damage))
                .and_then(|()| self.maybe_change_key(step, &mut keys))
                .and_then(|()| self.maybe_lose_an_index_object(step, &mut index_loss))
                .and_then(|()| self.maybe_cut_packs(step, &mut pack_cut))
                .and_then(|()| self.maybe_lose_a_client_record(step, &mut client_loss))
                .and_then(|()| self.maybe_damage_a_pack(step, &mut pack_damage))
                .and_then(|()| self.maybe_damage_a_record_header(step, &mut header_damage));
            if let Err(broken) = result {
                self.fail(step, &broken);
            }
        }
        if let Err(broken) = self.finish() {
            self.fail(self.cfg.steps + 1, &broken);
        }
    }

    fn fail(&self, step: usize, broken: &str) -> ! {
        panic!(
            "\ntorture: INVARIANT BROKEN at step {step} (seed {seed}, {backend:?}, {clients} clients, \
             storage faults {faults}, encrypted {encrypted}):\n{broken}\n\nschedule so far:\n{log}\n\
             replay: OBNAM_TORTURE_SEED={seed} OBNAM_TORTURE_STEPS={steps} \
             OBNAM_TORTURE_ENCRYPTED={encrypted} cargo test -p obnam-tests \
             --test torture replay -- --nocapture\n",
            seed = self.cfg.seed,
            backend = self.cfg.backend,
            clients = self.cfg.clients,
            faults = self.cfg.storage_faults,
            encrypted = self.cfg.encrypted,
            log = self.log,
            steps = self.cfg.steps,
        )
    }

    fn note(&mut self, line: impl AsRef<str>) {
        self.log.push_str(line.as_ref());
        self.log.push('\n');
    }

    // ------------------------------------------------------------ schedule

    /// A fault for a run. Draws the same number of values whatever it picks.
    fn draw_fault(&self, rng: &mut Rng, signals: bool) -> Fault {
        // Most kills land early (a release build backs up these trees in
        // tens of milliseconds), some late.
        self.draw_fault_within(rng, signals, [150, 600, 2000])
    }

    /// [`draw_fault`](Self::draw_fault) with signals due within one of
    /// `spans` milliseconds (picked at random).
    fn draw_fault_within(&self, rng: &mut Rng, signals: bool, spans: [u64; 3]) -> Fault {
        let kind = rng.below(100);
        let delays = spans.map(|span| rng.range(0, span));
        let delay = delays[rng.index(3)];
        let limit = rng.range(1, 25);
        let spec = storage_spec(rng);
        match kind {
            0..=29 => Fault::None,
            30..=49 if signals => Fault::Kill { after_ms: delay },
            50..=59 if signals => Fault::Interrupt { after_ms: delay },
            60..=74 if signals => Fault::CrashLimit(limit),
            75..=99 if self.cfg.storage_faults => Fault::Storage(spec),
            _ => Fault::None,
        }
    }

    fn draw_backup(&self, rng: &mut Rng, client: usize) -> Job {
        let fault = self.draw_fault(rng, true);
        let checkpoint = [None, Some("64KiB"), Some("256KiB"), Some("1MiB")][rng.index(4)];
        let keep_checkpoints = rng.chance(0.1);
        Job::Backup {
            client,
            fault,
            checkpoint,
            keep_checkpoints,
        }
    }

    /// A forget of `client`, from the stream of the later operations.
    fn draw_forget(&self, ops: &mut Rng, client: usize) -> Job {
        let how = ops.below(100);
        let picks = [ops.next_u64(), ops.next_u64()];
        let picks = picks[..1 + usize::from(ops.chance(0.3))].to_vec();
        let policy = POLICIES[ops.index(POLICIES.len())];
        let all_clients = ops.chance(0.15);
        let json = ops.chance(0.6);
        // A forget takes a few hundred milliseconds in a debug build
        // (most of it starting up, the removals at the end): signals
        // spread over that, so that some land among the removals.
        let fault = self.draw_fault_within(ops, true, [250, 450, 700]);
        let prune = ops.chance(0.2);
        let (selection, all_clients) = match how {
            // Named ids are one client's.
            0..=44 => (Selection::Named(picks), false),
            45..=89 => (Selection::Keep(policy), all_clients),
            90..=95 => (Selection::CheckpointsOnly, all_clients),
            // remove-client works on one client.
            _ => (Selection::WholeClient, false),
        };
        // remove-client prints text and has no `--prune`: the model must
        // not read its output as JSON nor look for a prune's report in it
        // (the long run found a schedule that did). Drawn all the same, so
        // that the rest of the stream stays as it was.
        let whole_client = matches!(selection, Selection::WholeClient);
        Job::Forget {
            client,
            all_clients,
            selection,
            fault,
            json: json && !whole_client,
            prune: prune && !whole_client,
        }
    }

    /// A prune, from the stream of the later operations.
    fn draw_prune(&self, ops: &mut Rng) -> Job {
        // A prune of these repositories takes from a few hundred
        // milliseconds to a few seconds (beside backups, restores and
        // fsck on two cores): signals spread over all of it.
        let fault = self.draw_fault_within(ops, true, [300, 900, 2500]);
        // 0 rewrites every pack with an unused byte (the copying path at
        // its busiest); 100 only deletes.
        let threshold = [None, Some(0), Some(50), Some(100)][ops.index(4)];
        let pretend = ops.chance(0.15);
        let json = ops.chance(0.5);
        Job::Prune {
            fault,
            threshold,
            pretend,
            json,
        }
    }

    fn draw_job(&self, rng: &mut Rng) -> Job {
        let kind = rng.below(10);
        let client = rng.index(self.clients.len());
        let pick = rng.next_u64();
        let backup = self.draw_backup(rng, client);
        let fault = self.draw_fault(rng, false);
        match kind {
            0..=5 => backup,
            6 | 7 => Job::Restore {
                client,
                pick,
                fault,
            },
            8 => Job::Fsck { fault },
            _ => Job::Ls { client },
        }
    }

    /// Draw and run one step.
    fn step(
        &mut self,
        step: usize,
        rng: &mut Rng,
        ops: &mut Rng,
        locks: &mut Rng,
    ) -> Result<(), Broken> {
        self.stats.steps += 1;
        // A client whose run failed is backed up cleanly first: the next
        // run after a crash must succeed, without force-lock.
        let recover: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].needs_recovery)
            .collect();
        if !recover.is_empty() || self.prune_needs_recovery {
            let mut jobs: Vec<Job> = recover
                .iter()
                .map(|&client| Job::Backup {
                    client,
                    fault: Fault::None,
                    checkpoint: None,
                    keep_checkpoints: false,
                })
                .collect();
            // After a failed prune, one without faults, beside the
            // recovering backups: it must succeed, finishing or dropping
            // what the failed one left.
            if std::mem::take(&mut self.prune_needs_recovery) {
                jobs.push(Job::Prune {
                    fault: Fault::None,
                    threshold: None,
                    pretend: false,
                    json: true,
                });
            }
            self.note(format!("step {step}: recovery"));
            self.run_jobs(step, jobs)?;
        }
        let kind = rng.below(100);
        let mut edits: Vec<(usize, Rng, usize)> = Vec::new();
        let mut jobs = Vec::new();
        let size = rng.range(2, 5) as usize;
        // Draw every kind's values, so the stream does not depend on the kind.
        let single_client = rng.index(self.clients.len());
        let single = self.draw_backup(rng, single_client);
        let group: Vec<Job> = (0..size).map(|_| self.draw_job(rng)).collect();
        let same_client_group: Vec<Job> = (0..size)
            .map(|_| self.draw_backup(rng, single_client))
            .collect();
        let verify = self.draw_job(rng);
        let fsck_fault = self.draw_fault(rng, false);
        let edit_rngs: Vec<(Rng, usize)> = (0..self.clients.len())
            .map(|_| (rng.fork(), rng.range(0, 8) as usize))
            .collect();
        let forget_roll = ops.below(100);
        let forget_client = ops.index(self.clients.len());
        let prune_roll = ops.below(100);
        let prunes = [self.draw_prune(ops), self.draw_prune(ops)];
        let race_roll = ops.below(100);
        let race_fault = self.draw_fault_within(ops, true, [250, 450, 700]);
        let race_prune = self.draw_prune(ops);
        let force_roll = locks.below(100);
        let force_lock = Job::ForceLock {
            client: locks.index(self.clients.len()),
            all_clients: locks.chance(0.3),
            fault: self.draw_fault(locks, true),
        };
        match kind {
            0..=34 => jobs.push(single),
            35..=64 => jobs = group,
            65..=79 => {
                jobs = same_client_group;
                self.stats.same_client_overlaps += 1;
            }
            80..=89 => jobs.push(match verify {
                r @ Job::Restore { .. } => r,
                Job::Backup { client, .. } | Job::Ls { client } => Job::Ls { client },
                j @ (Job::Fsck { .. }
                | Job::Forget { .. }
                | Job::Prune { .. }
                | Job::ForceLock { .. }) => j,
            }),
            _ => jobs.push(Job::Fsck { fault: fsck_fault }),
        }
        // A forget in four steps of ten, beside whatever the step runs:
        // in a group of one client's backups it is that client's, so it
        // waits for their lock and they for its.
        let forget_client = if (65..=79).contains(&kind) {
            single_client
        } else {
            forget_client
        };
        let forget = self.draw_forget(ops, forget_client);
        if forget_roll < 40 {
            jobs.push(forget);
        }
        // A prune in three steps of ten, beside whatever the step runs
        // (a forget of its step included), and now and then two at once.
        let [prune, second] = prunes;
        if prune_roll < 30 {
            jobs.push(prune);
        }
        if prune_roll < 6 {
            jobs.push(second);
        }
        // The race prune's design is about: a backup that builds on a
        // generation a forget removes beside it, while a prune decides
        // what nothing refers to. In about one step of ten without a
        // forget, the latest generation of a client the step backs up is
        // forgotten by name, and a prune runs, all at once.
        let backed_up = jobs.iter().find_map(|j| match j {
            Job::Backup { client, .. } => Some(*client),
            _ => None,
        });
        if let (true, Some(client)) = (forget_roll >= 40 && race_roll < 15, backed_up) {
            jobs.push(Job::Forget {
                client,
                all_clients: false,
                selection: Selection::NamedLatest,
                fault: race_fault,
                json: true,
                prune: false,
            });
            jobs.push(race_prune);
        }
        // A force-lock in one step of eight, beside whatever the step runs.
        if force_roll < 12 {
            jobs.push(force_lock);
        }
        // The trees of the clients backed up in this step change first.
        for (client, (edit_rng, count)) in edit_rngs.into_iter().enumerate() {
            if jobs
                .iter()
                .any(|j| matches!(j, Job::Backup { client: c, .. } if *c == client))
            {
                edits.push((client, edit_rng, count));
            }
        }
        for (client, mut edit_rng, count) in edits {
            let done = self.clients[client].source.mutate(&mut edit_rng, count);
            self.note(format!(
                "step {step}: edit client{client}: {}",
                done.join("; ")
            ));
        }
        self.note(format!("step {step}:"));
        self.run_jobs(step, jobs)
    }

    /// Run the jobs of a step at the same time and check how each ended.
    fn run_jobs(&mut self, step: usize, jobs: Vec<Job>) -> Result<(), Broken> {
        if jobs.len() > 1 {
            self.stats.concurrent_groups += 1;
        }
        // What each forget will do, as its --pretend run says now.
        let mut pending: Vec<Option<PendingForget>> = Vec::new();
        for job in &jobs {
            pending.push(match job {
                Job::Forget { .. } => Some(self.prepare_forget(job)?),
                _ => None,
            });
        }
        // The clients a forget of this step works on.
        let forgetting: BTreeSet<usize> = pending
            .iter()
            .flatten()
            .flat_map(|p| p.clients.iter().copied())
            .collect();
        // The trees as the backups of this step see them.
        let mut trees: Vec<Option<Arc<Manifest>>> = vec![None; self.clients.len()];
        let mut commands = Vec::new();
        let mut targets: Vec<Option<(PathBuf, Arc<Manifest>, String)>> = Vec::new();
        for job in &jobs {
            let mut target = None;
            let (cmd, fault) = match job {
                Job::Backup {
                    client,
                    fault,
                    checkpoint,
                    keep_checkpoints,
                } => {
                    self.touched.insert(*client);
                    let c = &self.clients[*client];
                    trees[*client].get_or_insert_with(|| Arc::new(Manifest::of(&c.source.root)));
                    let mut cmd = self.obnam(*client);
                    cmd.arg("backup").arg(&c.source.root).args(fault.args());
                    // Every other client also names the first thing in its
                    // tree (a folder or a file) as a root of its own,
                    // inside the other: what is backed up is the same
                    // tree, walked in two parts.
                    if client % 2 == 0 {
                        if let Some(inner) = first_entry(&c.source.root) {
                            cmd.arg(inner);
                        }
                    }
                    // Two of every three clients move their new chunks out
                    // of memory early (the second in small packs, so that
                    // many are written during a run); the third keeps the
                    // default, which these small trees never reach.
                    match client % 3 {
                        1 => cmd.args([
                            "--testing-new-chunks-in-memory",
                            "8",
                            "--pack-size",
                            "64KiB",
                        ]),
                        2 => cmd.args(["--testing-new-chunks-in-memory", "64"]),
                        _ => &mut cmd,
                    };
                    if let Some(size) = checkpoint {
                        cmd.args(["--checkpoint", size]);
                    }
                    if *keep_checkpoints {
                        cmd.arg("--leave-checkpoints");
                    }
                    (cmd, fault.clone())
                }
                Job::Restore {
                    client,
                    pick,
                    fault,
                } => {
                    let c = &self.clients[*client];
                    if c.committed.is_empty() {
                        let mut cmd = self.obnam(*client);
                        cmd.arg("clients");
                        (cmd, Fault::None)
                    } else {
                        let g = &c.committed[(*pick % c.committed.len() as u64) as usize];
                        self.scratch += 1;
                        let dir = self.env.path().join(format!("restore{}", self.scratch));
                        let mut cmd = self.obnam(*client);
                        cmd.args(["restore", "--generation", &g.id, "--to"])
                            .arg(&dir)
                            .args(fault.args());
                        target = Some((dir, g.tree.clone(), g.id.clone()));
                        (cmd, fault.clone())
                    }
                }
                Job::Fsck { fault } => {
                    let mut cmd = self.obnam(0);
                    cmd.args(["fsck", "--verify-data"]).args(fault.args());
                    (cmd, fault.clone())
                }
                Job::ForceLock {
                    client,
                    all_clients,
                    fault,
                } => {
                    let mut cmd = self.obnam(*client);
                    cmd.arg("force-lock").args(fault.args());
                    if *all_clients {
                        cmd.arg("--all-clients");
                    }
                    (cmd, fault.clone())
                }
                Job::Ls { client } => {
                    let mut cmd = self.obnam(*client);
                    if self.clients[*client].committed.is_empty() {
                        cmd.arg("generations");
                    } else {
                        cmd.arg("ls");
                    }
                    (cmd, Fault::None)
                }
                Job::Forget {
                    client,
                    all_clients,
                    selection,
                    fault,
                    json,
                    prune,
                } => {
                    let named = pending[commands.len()]
                        .as_ref()
                        .and_then(|p| p.named.as_ref());
                    let mut options = fault.args();
                    if *json {
                        options.extend(["--output-format".into(), "json".into()]);
                    }
                    if *prune {
                        options.push("--prune".into());
                    }
                    let cmd = match selection {
                        Selection::WholeClient => {
                            let mut cmd = self.obnam(*client);
                            cmd.arg("remove-client")
                                .arg(&self.clients[*client].name)
                                .args(fault.args());
                            cmd
                        }
                        _ => self.forget_command(*client, *all_clients, selection, named, &options),
                    };
                    (cmd, fault.clone())
                }
                Job::Prune {
                    fault,
                    threshold,
                    pretend,
                    json,
                } => {
                    // A prune is the repository's, not a client's: the
                    // client name it is given is ignored.
                    let mut cmd = self.obnam(0);
                    cmd.arg("prune").args(fault.args());
                    if let Some(t) = threshold {
                        cmd.args(["--repack-threshold", &t.to_string()]);
                    }
                    if *pretend {
                        cmd.arg("--pretend");
                    }
                    if *json {
                        cmd.args(["--output-format", "json"]);
                    }
                    (cmd, fault.clone())
                }
            };
            commands.push((cmd, fault));
            targets.push(target);
        }
        let faults: Vec<Fault> = commands.iter().map(|(_, f)| f.clone()).collect();
        let outcomes = run_together(commands);
        self.stats.processes += outcomes.len() as u64;
        let mut problems = Vec::new();
        // Per client: the ids committed by this step's backups, and
        // whether every backup of it succeeded.
        let mut committed_now: Vec<Option<(Vec<String>, bool)>> = vec![None; self.clients.len()];
        // Per client: backups of this step that did not report success.
        let mut failed_now = vec![0usize; self.clients.len()];
        // Runs that failed beside a forget, to be explained by what it removed.
        let mut beside_forget: Vec<BesideForget> = Vec::new();
        for ((job, outcome), (fault, target)) in
            jobs.iter().zip(&outcomes).zip(faults.iter().zip(targets))
        {
            let what = describe(job);
            self.note(format!("  {what}: {}", outcome.summary()));
            let reader = match job {
                Job::Restore { client, .. } | Job::Ls { client } => Some(*client),
                _ => None,
            };
            if let Err(e) = allowed(fault, outcome) {
                // A restore or ls whose generation a forget removed under it
                // may fail cleanly; whether one was removed is known once
                // the forgets are reconciled, below.
                if let Some(client) = reader.filter(|c| forgetting.contains(c)) {
                    // Its generation may be gone before it looked, never its
                    // data under it: it held a reader's lock, which a
                    // prune's deletion waits for (invariant 14).
                    if *fault == Fault::None && lost_data_under_its_lock(outcome) {
                        problems.push(format!(
                            "{what}: its generation's data was deleted under it, though it \
                             held a reader's lock\nstderr:\n{}",
                            outcome.stderr
                        ));
                        continue;
                    }
                    if failed_cleanly(outcome) {
                        let id = target.as_ref().map(|(_, _, id)| id.clone());
                        beside_forget.push(BesideForget {
                            client,
                            id,
                            what,
                            why: e,
                        });
                        continue;
                    }
                }
                problems.push(format!(
                    "{what}: {e}\nstdout:\n{}\nstderr:\n{}",
                    outcome.stdout, outcome.stderr
                ));
                continue;
            }
            self.count_fault(fault, outcome);
            match job {
                Job::Backup {
                    client,
                    keep_checkpoints,
                    ..
                } => {
                    self.stats.backups += 1;
                    let tree = trees[*client].clone().expect("tree taken");
                    let entry = committed_now[*client].get_or_insert((Vec::new(), true));
                    let generation = outcome
                        .stdout
                        .lines()
                        .find_map(|l| l.strip_prefix("Generation "))
                        .map(str::to_string);
                    let c = &mut self.clients[*client];
                    match (outcome.ok(), generation) {
                        (true, Some(id)) => {
                            self.log.push_str(&format!(
                                "    committed {id}: tree digest {}\n",
                                tree.digest()
                            ));
                            self.stats.backups_committed += 1;
                            c.kept_checkpoints |= *keep_checkpoints;
                            entry.0.push(id.clone());
                            c.committed.push(Committed {
                                id,
                                tree,
                                step,
                                verified: false,
                            });
                        }
                        (true, None) => problems.push(format!(
                            "{what}: succeeded without naming its generation:\n{}",
                            outcome.stdout
                        )),
                        (false, _) => {
                            entry.1 = false;
                            failed_now[*client] += 1;
                            c.interrupted.push(tree);
                            c.needs_recovery = true;
                        }
                    }
                }
                Job::Restore { .. } => {
                    if let (true, Some((dir, tree, id))) = (outcome.ok(), target) {
                        let src = self.clients[restore_client(job)].source.root.clone();
                        if let Err(e) = self.compare_restore(&dir, &src, &tree) {
                            problems.push(format!(
                                "{what}: restored generation {id} differs from what was backed up{}:\n{e}",
                                if *fault == Fault::None { "" } else { " (a run with injected faults reported success)" }
                            ));
                        }
                    }
                }
                Job::Fsck { .. } => {
                    self.stats.fscks += 1;
                    if outcome.ok() && !outcome.stdout.contains(" 0 problems") {
                        problems.push(format!(
                            "{what}: fsck succeeded but reported:\n{}",
                            outcome.stdout
                        ));
                    }
                }
                Job::Ls { .. } => {}
                Job::ForceLock { .. } => self.stats.force_locks += 1,
                Job::Forget { prune, json, .. } => {
                    self.stats.forgets += 1;
                    self.stats.forgets_reported += u64::from(outcome.ok());
                    if *prune {
                        self.stats.prunes += 1;
                        if let Err(e) = self.prune_ended(outcome, *json, false, true) {
                            problems.push(format!("{what}: {e}"));
                        }
                    }
                }
                Job::Prune { json, pretend, .. } => {
                    self.stats.prunes += 1;
                    if let Err(e) = self.prune_ended(outcome, *json, *pretend, false) {
                        problems.push(format!("{what}: {e}"));
                    }
                }
            }
        }
        let new_ids: Vec<Vec<String>> = committed_now
            .iter()
            .map(|now| now.as_ref().map(|(ids, _)| ids.clone()).unwrap_or_default())
            .collect();
        for (client, now) in committed_now.into_iter().enumerate() {
            if let Some((ids, all_ok)) = now {
                self.clients[client].latest_must_be = all_ok.then_some(ids);
            }
        }
        // Reconcile the model with what the forgets did: per client, the
        // generations (any, known to the model or not) gone in this step.
        let mut gone: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for ((job, outcome), pending) in jobs.iter().zip(&outcomes).zip(&pending) {
            let Some(pending) = pending else { continue };
            if !problems.is_empty() {
                break;
            }
            match self.reconcile_forget(job, pending, outcome, &new_ids, &failed_now) {
                Ok(ids) => gone.extend(ids),
                Err(e) => problems.push(format!(
                    "{}: {e}\nstdout:\n{}\nstderr:\n{}",
                    describe(job),
                    outcome.stdout,
                    outcome.stderr
                )),
            }
        }
        for BesideForget {
            client,
            id,
            what,
            why,
        } in beside_forget
        {
            let removed = gone.get(&client);
            let explained = match &id {
                Some(id) => removed.is_some_and(|r| r.contains(id)),
                None => removed.is_some_and(|r| !r.is_empty()),
            };
            if !explained {
                problems.push(format!(
                    "{what}: {why}, beside a forget that removed no generation it could \
                     have been reading (removed: {removed:?})"
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n\n"))
        }
    }

    // ------------------------------------------------------------- forget

    /// `forget` with `options` for the request (ids last).
    fn forget_command(
        &self,
        client: usize,
        all_clients: bool,
        selection: &Selection,
        named: Option<&BTreeSet<String>>,
        options: &[String],
    ) -> Command {
        let mut cmd = self.obnam(client);
        cmd.arg("forget").args(options);
        if all_clients {
            cmd.arg("--all-clients");
        }
        if let Selection::Keep(policy) = selection {
            cmd.args(["--keep", policy]);
        }
        cmd.args(named.into_iter().flatten());
        cmd
    }

    /// Resolve a forget's named ids from the model and learn, from a
    /// `--pretend` run, every generation of its clients just before the
    /// step and what the forget would do now.
    fn prepare_forget(&mut self, job: &Job) -> Result<PendingForget, Broken> {
        let Job::Forget {
            client,
            all_clients,
            selection,
            ..
        } = job
        else {
            unreachable!("only forgets are prepared")
        };
        let named = match selection {
            Selection::NamedLatest => Some(
                self.clients[*client]
                    .committed
                    .last()
                    .map(|g| g.id.clone())
                    .into_iter()
                    .collect(),
            ),
            Selection::Named(picks) => {
                let committed = &self.clients[*client].committed;
                // No committed generation: a forget without ids, which
                // removes old checkpoints only.
                Some(
                    picks
                        .iter()
                        .filter(|_| !committed.is_empty())
                        .map(|p| committed[(p % committed.len() as u64) as usize].id.clone())
                        .collect::<BTreeSet<String>>(),
                )
            }
            _ => None,
        };
        let cmd = self.forget_command(
            *client,
            *all_clients,
            selection,
            named.as_ref(),
            &["--pretend", "--output-format", "json"].map(String::from),
        );
        let out = run_together(vec![(cmd, Fault::None)]).remove(0);
        self.stats.processes += 1;
        allowed(&Fault::None, &out)
            .map_err(|e| format!("forget --pretend: {e}\n{}\n{}", out.stdout, out.stderr))?;
        let reports = forget_report::parse_json(&out.stdout)?;
        let clients: Vec<usize> = if *all_clients {
            (0..self.clients.len()).collect()
        } else {
            vec![*client]
        };
        let mut before = BTreeMap::new();
        for &c in &clients {
            let name = &self.clients[c].name;
            let report = client_part(&reports, name, *all_clients).ok_or_else(|| {
                format!(
                    "forget --pretend reported nothing for {name}:\n{}",
                    out.stdout
                )
            })?;
            self.log.push_str(&format!(
                "  ({} of {name}: forget --pretend would remove {:?})\n",
                describe(job),
                report.removed()
            ));
            before.insert(c, report.clone());
        }
        Ok(PendingForget {
            clients,
            named,
            before,
        })
    }

    /// Bring the model in line with what a forget of the step did, and
    /// check it did only what it may (invariant 8). `new` and `failed` are
    /// per client the generations the step's backups reported and the
    /// number of its backups that did not report. Returns, per client,
    /// the generations (known to the model or not) gone in the step.
    fn reconcile_forget(
        &mut self,
        job: &Job,
        pending: &PendingForget,
        outcome: &Outcome,
        new: &[Vec<String>],
        failed: &[usize],
    ) -> Result<BTreeMap<usize, BTreeSet<String>>, Broken> {
        let Job::Forget {
            selection, json, ..
        } = job
        else {
            unreachable!("only forgets are reconciled")
        };
        let whole_client = matches!(selection, Selection::WholeClient);
        let reports = match (outcome.ok() && !whole_client, json) {
            (false, _) => None,
            (true, true) => Some(forget_report::parse_json(&outcome.stdout)?),
            (true, false) => Some(forget_report::parse_text(&outcome.stdout)?),
        };
        let mut gone = BTreeMap::new();
        for &c in &pending.clients {
            let listed = self.generations(c)?;
            let now: BTreeSet<String> = listed.iter().map(|(id, _)| id.clone()).collect();
            let name = self.clients[c].name.clone();
            let before = &pending.before[&c];
            let made: BTreeSet<String> = new[c].iter().cloned().collect();
            let may_go = match &reports {
                Some(reports) => {
                    let all_clients = matches!(
                        job,
                        Job::Forget {
                            all_clients: true,
                            ..
                        }
                    );
                    let report = client_part(reports, &name, all_clients)
                        .ok_or_else(|| format!("its report has no part for {name}"))?;
                    let report = &report;
                    let beside = !made.is_empty() || failed[c] > 0;
                    check_forget_report(
                        &name,
                        report,
                        selection,
                        pending.named.as_ref(),
                        before,
                        beside,
                        &now,
                    )?;
                    report.removed()
                }
                // remove-client removes every generation there is when it
                // holds the client's lock, a backup's of this step too.
                None if whole_client => before
                    .verdicts
                    .iter()
                    .map(|v| v.id.clone())
                    .chain(made.iter().cloned())
                    .collect(),
                None => match (selection, &pending.named) {
                    (_, Some(named)) => named.clone(),
                    (Selection::Keep(policy), None) => forget_report::could_remove(
                        before,
                        &made,
                        failed[c],
                        forget_report::newer_needed(policy),
                    ),
                    _ => BTreeSet::new(),
                },
            };
            if whole_client && outcome.ok() {
                // Only what a backup of this step made after it may be
                // listed (a backup that ran after it starts the client
                // again, and one that failed may leave a checkpoint).
                if let Some(id) = before.verdicts.iter().find(|v| now.contains(&v.id)) {
                    return Err(format!(
                        "{name}: remove-client reported success, but generation {} is still \
                         listed: {listed:?}",
                        id.id
                    ));
                }
                if !outcome
                    .stdout
                    .contains(&format!("removed client {name} and its "))
                {
                    return Err(format!(
                        "{name}: remove-client did not say what it removed:\n{}",
                        outcome.stdout
                    ));
                }
            }
            let client = &mut self.clients[c];
            let lost: BTreeSet<String> = client
                .committed
                .iter()
                .filter(|g| !now.contains(&g.id))
                .map(|g| g.id.clone())
                .collect();
            if let Some(id) = lost.iter().find(|id| !may_go.contains(*id)) {
                return Err(format!(
                    "{name}: committed generation {id} is gone, but this forget could not have \
                     removed it (it could remove {may_go:?}); listed now: {listed:?}"
                ));
            }
            let (forgotten, kept) = std::mem::take(&mut client.committed)
                .into_iter()
                .partition(|g| lost.contains(&g.id));
            client.committed = kept;
            client.forgotten.extend::<Vec<Committed>>(forgotten);
            if let Some(ids) = &mut client.latest_must_be {
                ids.retain(|id| !lost.contains(id));
                if ids.is_empty() {
                    client.latest_must_be = None;
                }
            }
            // (A forget that failed leaves no recovery run: it may leave
            // its lock, and the client's next run, whatever it is, must
            // break it; a run without faults must succeed.)
            self.stats.generations_forgotten += lost.len() as u64;
            self.touched.insert(c);
            if !lost.is_empty() {
                self.log.push_str(&format!("    {name}: forgot {lost:?}\n"));
            }
            let existed = before.verdicts.iter().map(|v| &v.id).chain(&made);
            gone.insert(
                c,
                existed.filter(|id| !now.contains(*id)).cloned().collect(),
            );
        }
        Ok(gone)
    }

    // ----------------------------------------------------- damaged records

    /// Now and then, on a local folder, with nothing beside it: damage the
    /// record of one committed generation (and put a stray file beside
    /// it), then check what `docs/user-guide.md` ("Damaged records")
    /// promises: the other generations are still listed, prune deletes
    /// nothing, and `forget ID` removes the damaged record. The model
    /// then counts the generation as forgotten.
    fn maybe_damage_a_record(&mut self, step: usize, damage: &mut Rng) -> Result<(), Broken> {
        let roll = damage.below(100);
        let pick_client = damage.index(self.clients.len());
        let pick_gen = damage.below(1 << 16);
        if roll >= 5 || !matches!(self.cfg.backend, Backend::Local) {
            return Ok(());
        }
        let client = &self.clients[pick_client];
        if client.committed.is_empty() {
            return Ok(());
        }
        let id = client.committed[pick_gen as usize % client.committed.len()]
            .id
            .clone();
        let name = client.name.clone();
        let repo = Path::new(&self.url).to_path_buf();
        let record = std::fs::read_dir(repo.join("generations"))
            .map_err(|e| format!("damage: generations/: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join(&id)))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("damage: no record of committed generation {id}"))?;
        let mut bytes = std::fs::read(&record).map_err(|e| format!("damage: {e}"))?;
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&record, bytes).map_err(|e| format!("damage: {e}"))?;
        let stray = record.with_file_name(".stray");
        std::fs::write(&stray, b"not a record").map_err(|e| format!("damage: {e}"))?;
        self.note(format!("step {step}: damage the record of {name}'s {id}"));
        let packs = |repo: &Path| obnam_test_support::files_under(&repo.join("packs")).len();
        let packs_before = packs(&repo);
        let mut run = |args: &[&str]| {
            let mut cmd = self.obnam(pick_client);
            cmd.args(args);
            let out = run_together(vec![(cmd, Fault::None)]).remove(0);
            self.stats.processes += 1;
            self.note(format!("  {}: {}", args.join(" "), out.summary()));
            out
        };
        let listed = run(&["genids"]);
        if listed.code != Some(0) || listed.stdout.contains(&id) || !listed.stderr.contains(&id) {
            return Err(format!(
                "{name}: genids with {id} damaged must list the others and name it:\n{}\n{}",
                listed.stdout, listed.stderr
            ));
        }
        let pruned = run(&["prune"]);
        if pruned.code != Some(1) || !pruned.stderr.contains("nothing was deleted") {
            return Err(format!(
                "prune with {id} damaged must refuse:\n{}\n{}",
                pruned.stdout, pruned.stderr
            ));
        }
        // A damaged lock object, untouched for longer than a lock lives
        // unrefreshed: the forget, which takes the client's lock, breaks it.
        let lock = repo.join("locks").join("0da3a6ed0da3a6ed0da3a6ed0da3a6ed");
        std::fs::write(&lock, b"garbage").map_err(|e| format!("damage: {e}"))?;
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .and_then(|f| {
                f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
            })
            .map_err(|e| format!("damage: {e}"))?;
        let forgot = run(&["forget", &id]);
        if forgot.code != Some(0)
            || !forgot.stdout.contains("removed the damaged record")
            || !forgot.stderr.contains("breaking stale damaged lock")
        {
            return Err(format!(
                "{name}: forget {id} must break the damaged lock and remove the damaged \
                 record:\n{}\n{}",
                forgot.stdout, forgot.stderr
            ));
        }
        std::fs::remove_file(&stray).map_err(|e| format!("damage: {e}"))?;
        if record.exists() || lock.exists() || packs(&repo) != packs_before {
            return Err(format!(
                "{id}: forget left its record or the damaged lock, or the refused prune \
                 changed the packs"
            ));
        }
        self.forgotten_in_model(pick_client, &id);
        self.stats.records_damaged += 1;
        self.stats.generations_forgotten += 1;
        Ok(())
    }

    /// Generation `id` of client `client` was removed: the model no
    /// longer expects it to restore.
    fn forgotten_in_model(&mut self, client: usize, id: &str) {
        let client = &mut self.clients[client];
        let (gone, kept) = std::mem::take(&mut client.committed)
            .into_iter()
            .partition(|g| g.id == id);
        client.committed = kept;
        client.forgotten.extend::<Vec<Committed>>(gone);
        if let Some(ids) = &mut client.latest_must_be {
            ids.retain(|g| *g != id);
            if ids.is_empty() {
                client.latest_must_be = None;
            }
        }
    }

    /// Now and then, on a local folder, with nothing beside it: change a
    /// byte in a pack (in its first half, where its blobs are), as a
    /// failing disk would, and take the pack out with `repair-packs` under
    /// a drawn fault (run again without one if the fault stopped it); then
    /// back every client up cleanly and check what the user guide ("A
    /// damaged chunk") promises: `fsck` then names only generations
    /// committed before the damage (data only they held is lost with the
    /// damaged blob: what a client still has is stored again, under the
    /// same id); those are forgotten, in the repository and in the model,
    /// after which `fsck` finds nothing wrong, and every other generation
    /// restores exactly at the next checks (invariant 15).
    fn maybe_damage_a_pack(&mut self, step: usize, rng: &mut Rng) -> Result<(), Broken> {
        let roll = rng.below(100);
        let pick = rng.below(1 << 16) as usize;
        let at = rng.below(1 << 30) as usize;
        let fault = self.draw_fault(rng, true);
        if roll >= 5 || !matches!(self.cfg.backend, Backend::Local) {
            return Ok(());
        }
        let repo = PathBuf::from(&self.url);
        let is_pack = |p: &Path| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let folder = p.parent().and_then(Path::file_name).unwrap_or_default();
            name.len() == 32 && folder.len() == 2 && name.starts_with(&*folder.to_string_lossy())
        };
        let mut packs = obnam_test_support::files_under(&repo.join("packs"));
        packs.retain(|p| is_pack(p));
        packs.sort();
        if packs.is_empty() {
            return Ok(());
        }
        let pack = packs[pick % packs.len()].clone();
        let key = pack
            .strip_prefix(&repo)
            .map_err(|e| format!("damage a pack: {e}"))?
            .to_string_lossy()
            .into_owned();
        let mut bytes = fs::read(&pack).map_err(|e| format!("damage {key}: {e}"))?;
        if bytes.len() < 64 {
            return Ok(());
        }
        let offset = at % (bytes.len() / 2);
        bytes[offset] ^= 0x40;
        fs::write(&pack, &bytes).map_err(|e| format!("damage {key}: {e}"))?;
        let mut committed_before: BTreeSet<String> = BTreeSet::new();
        for c in &self.clients {
            committed_before.extend(c.committed.iter().map(|g| g.id.clone()));
        }
        self.note(format!(
            "step {step}: change byte {offset} of {key}, then repair-packs {fault:?}"
        ));
        let run = |world: &mut World, client: usize, args: &[&str], fault: Fault| {
            let mut cmd = world.obnam(client);
            cmd.args(args).args(fault.args());
            let out = run_together(vec![(cmd, fault)]).remove(0);
            world.stats.processes += 1;
            world.note(format!("  {}: {}", args.join(" "), out.summary()));
            out
        };
        let first = run(self, 0, &["repair-packs", &key], fault.clone());
        self.count_fault(&fault, &first);
        allowed(&fault, &first).map_err(|e| format!("repair-packs {key}: {e}"))?;
        if !first.ok() {
            // Stopped: run again without a fault. It finishes the work,
            // whether the first run had taken the pack out of the index
            // yet or not (then the pack is listed no more, and goes with
            // what the index has nowhere else copied), or says there is
            // nothing left to do.
            let again = run(self, 0, &["repair-packs", &key], Fault::None);
            let done_before = again.code == Some(1)
                && again
                    .stderr
                    .contains("is neither in the repository's index nor in the store");
            if !again.ok() && !done_before {
                return Err(format!(
                    "repair-packs {key} after a stopped one:\n{}\n{}",
                    again.stdout, again.stderr
                ));
            }
        }
        self.stats.packs_damaged += 1;
        // Every client backs up cleanly: what they still have of the
        // dropped data is stored again.
        let jobs = (0..self.clients.len())
            .map(|client| Job::Backup {
                client,
                fault: Fault::None,
                checkpoint: None,
                keep_checkpoints: false,
            })
            .collect();
        self.run_jobs(step, jobs)?;
        let checked = run(self, 0, &["fsck", "--output-format", "json"], Fault::None);
        self.stats.fscks += 1;
        let report: serde_json::Value = serde_json::from_str(checked.stdout.trim())
            .map_err(|e| format!("fsck after repair-packs: {e}:\n{}", checked.stdout))?;
        let reached = report["generations_with_problems"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for g in reached {
            let (Some(name), Some(id)) = (g["client"].as_str(), g["id"].as_str()) else {
                return Err(format!("fsck's generations_with_problems: {g}"));
            };
            let Some(client) = self.clients.iter().position(|c| c.name == name) else {
                return Err(format!("fsck names a generation of no client: {g}"));
            };
            let known = self.clients[client].committed.iter().any(|c| c.id == id);
            if known && !committed_before.contains(id) {
                return Err(format!(
                    "{name}'s generation {id}, committed by a clean backup after \
                     repair-packs {key}, lacks data:\n{}",
                    checked.stderr
                ));
            }
            let forgot = run(self, client, &["forget", id], Fault::None);
            self.stats.forgets += 1;
            if !forgot.ok() {
                return Err(format!(
                    "forget {id} after repair-packs:\n{}\n{}",
                    forgot.stdout, forgot.stderr
                ));
            }
            if known {
                self.forgotten_in_model(client, id);
                self.stats.generations_forgotten += 1;
                self.stats.generations_lost_to_damage += 1;
            }
        }
        let checked = run(self, 0, &["fsck"], Fault::None);
        self.stats.fscks += 1;
        if !checked.ok() || !checked.stdout.contains(" 0 problems") {
            return Err(format!(
                "fsck after repair-packs {key} and the forgets:\n{}\n{}",
                checked.stdout, checked.stderr
            ));
        }
        Ok(())
    }

    /// Now and then, on a local folder, with nothing beside it: lose the
    /// record of a client with committed generations (deleted, as a sync
    /// tool or a stray `rm` does, or a byte of it changed, or cut to half),
    /// then check what `docs/user-guide.md` ("Damaged records") promises:
    /// `clients` still lists the client and names the record, `fsck`
    /// reports it (exit 1), and the client's next backup, run here beside
    /// another client's backup under a drawn fault, builds on its
    /// generations and writes the record again (the model checks the
    /// generations as after any step); then neither names it.
    fn maybe_lose_a_client_record(&mut self, step: usize, rng: &mut Rng) -> Result<(), Broken> {
        let roll = rng.below(100);
        let pick = rng.index(self.clients.len());
        let how = rng.below(3);
        let beside = rng.index(self.clients.len());
        let other = self.draw_backup(rng, beside);
        if roll >= 5 || !matches!(self.cfg.backend, Backend::Local) {
            return Ok(());
        }
        let Some(latest) = self.clients[pick].committed.last() else {
            return Ok(());
        };
        let latest = latest.id.clone();
        let name = self.clients[pick].name.clone();
        let repo = Path::new(&self.url).to_path_buf();
        // The client's id: the folder of generations/ holding its record.
        let id = fs::read_dir(repo.join("generations"))
            .map_err(|e| format!("lose a client record: generations/: {e}"))?
            .filter_map(|e| e.ok())
            .find(|e| e.path().join(&latest).is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .ok_or_else(|| format!("lose a client record: no record of {latest}"))?;
        let record = repo.join("clients").join(&id);
        let key = format!("clients/{id}");
        let bytes = fs::read(&record).map_err(|e| format!("lose {key}: {e}"))?;
        let done = match how {
            0 => fs::remove_file(&record).map(|()| "delete"),
            1 => {
                let mut changed = bytes.clone();
                let middle = changed.len() / 2;
                changed[middle] ^= 0x04;
                fs::write(&record, changed).map(|()| "change a byte of")
            }
            _ => fs::write(&record, &bytes[..bytes.len() / 2]).map(|()| "cut short"),
        }
        .map_err(|e| format!("lose {key}: {e}"))?;
        self.note(format!(
            "step {step}: {done} the client record of {name}, {key}"
        ));
        let run = |world: &mut World, args: &[&str]| {
            let mut cmd = world.obnam(pick);
            cmd.args(args);
            let out = run_together(vec![(cmd, Fault::None)]).remove(0);
            world.stats.processes += 1;
            world.note(format!("  {}: {}", args.join(" "), out.summary()));
            out
        };
        let listed = run(self, &["clients"]);
        if listed.code != Some(0)
            || !listed.stdout.lines().any(|l| l == name)
            || !listed.stderr.contains(&key)
        {
            return Err(format!(
                "clients with {key} lost must list {name} and name the record:\n{}\n{}",
                listed.stdout, listed.stderr
            ));
        }
        let checked = run(self, &["fsck"]);
        self.stats.fscks += 1;
        if checked.code != Some(1)
            || !(checked.stdout.contains(&key) || checked.stderr.contains(&key))
        {
            return Err(format!(
                "fsck with {key} lost must report it and exit 1:\n{}\n{}",
                checked.stdout, checked.stderr
            ));
        }
        let heal = Job::Backup {
            client: pick,
            fault: Fault::None,
            checkpoint: None,
            keep_checkpoints: false,
        };
        let mut jobs = vec![heal];
        if !matches!(&other, Job::Backup { client, .. } if *client == pick) {
            jobs.push(other);
        }
        self.run_jobs(step, jobs)?;
        if !record.is_file() {
            return Err(format!("{name}'s backup did not write {key} again"));
        }
        let listed = run(self, &["clients"]);
        if listed.code != Some(0)
            || !listed.stdout.lines().any(|l| l == name)
            || listed.stderr.contains(&key)
        {
            return Err(format!(
                "clients after {name}'s backup wrote {key} again:\n{}\n{}",
                listed.stdout, listed.stderr
            ));
        }
        self.stats.client_records_lost += 1;
        Ok(())
    }

    /// Now and then, on a local folder of an unsealed repository, with
    /// nothing beside it: change one byte of the filter header of a
    /// committed generation's record, as a failing disk would (a tag's
    /// byte, its length byte, or its count of tags), then check what the
    /// user guide ("Damaged records") promises: `genids` leaves the
    /// generation out and names `repair-records`, which (under a drawn
    /// fault, run again without one if the fault stopped it) writes the
    /// record back as it was written, byte for byte. The generation stays
    /// in the model: the next checks restore it exactly (invariant 16).
    fn maybe_damage_a_record_header(&mut self, step: usize, rng: &mut Rng) -> Result<(), Broken> {
        let roll = rng.below(100);
        let pick_client = rng.index(self.clients.len());
        let pick_gen = rng.below(1 << 16);
        let pick_byte = rng.below(1 << 16);
        let fault = self.draw_fault(rng, true);
        if roll >= 6 || !matches!(self.cfg.backend, Backend::Local) || self.cfg.encrypted {
            return Ok(());
        }
        let client = &self.clients[pick_client];
        if client.committed.is_empty() {
            return Ok(());
        }
        let id = client.committed[pick_gen as usize % client.committed.len()]
            .id
            .clone();
        let name = client.name.clone();
        let repo = Path::new(&self.url).to_path_buf();
        let record = std::fs::read_dir(repo.join("generations"))
            .map_err(|e| format!("header damage: generations/: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join(&id)))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("header damage: no record of committed generation {id}"))?;
        let written = std::fs::read(&record).map_err(|e| format!("header damage: {e}"))?;
        // The header: a count of tags, then each tag's length and bytes.
        let mut bytes = written.clone();
        let what = match bytes.as_slice() {
            [0, ..] => {
                bytes[0] = 1;
                "its count of tags raised".to_string()
            }
            [1, len, ..] if bytes.len() > 2 + usize::from(*len) => {
                let len = usize::from(*len);
                match pick_byte as usize % (2 + len) {
                    0 => {
                        bytes[0] = 0;
                        "its count of tags lowered".to_string()
                    }
                    1 => {
                        bytes[1] += 1;
                        "its tag's length raised".to_string()
                    }
                    at => {
                        // Another printable byte, as one flipped low bit
                        // gives ('zstd' to 'zsud').
                        bytes[at] ^= 0x01;
                        format!("byte {} of its tag changed", at - 2)
                    }
                }
            }
            _ => return Err(format!("{id}: a record's header is not what obnam writes")),
        };
        std::fs::write(&record, &bytes).map_err(|e| format!("header damage: {e}"))?;
        self.note(format!(
            "step {step}: damage the filter header of {name}'s {id} ({what}), then \
             repair-records {fault:?}"
        ));
        let run = |world: &mut World, args: &[&str], fault: Fault| {
            let mut cmd = world.obnam(pick_client);
            cmd.args(args).args(fault.args());
            let out = run_together(vec![(cmd, fault)]).remove(0);
            world.stats.processes += 1;
            world.note(format!("  {}: {}", args.join(" "), out.summary()));
            out
        };
        let listed = run(self, &["genids"], Fault::None);
        if listed.code != Some(0)
            || listed.stdout.contains(&id)
            || !listed.stderr.contains(&id)
            || !listed.stderr.contains("'obnam repair-records'")
        {
            return Err(format!(
                "{name}: genids with the filter header of {id} damaged ({what}) must list the \
                 others and name it and repair-records:\n{}\n{}",
                listed.stdout, listed.stderr
            ));
        }
        let first = run(self, &["repair-records"], fault.clone());
        self.count_fault(&fault, &first);
        allowed(&fault, &first).map_err(|e| format!("repair-records: {e}"))?;
        if !first.ok() {
            let again = run(self, &["repair-records"], Fault::None);
            if !again.ok() {
                return Err(format!(
                    "repair-records after a stopped one:\n{}\n{}",
                    again.stdout, again.stderr
                ));
            }
        }
        let now = std::fs::read(&record).map_err(|e| format!("header damage: {e}"))?;
        if now != written {
            return Err(format!(
                "{id}: repair-records left its record other than written ({what})"
            ));
        }
        let listed = run(self, &["genids"], Fault::None);
        if !listed.ok() || !listed.stdout.contains(&id) || listed.stderr.contains(&id) {
            return Err(format!(
                "{name}: genids after repair-records must list {id} again:\n{}\n{}",
                listed.stdout, listed.stderr
            ));
        }
        self.stats.record_headers_repaired += 1;
        Ok(())
    }

    /// Now and then, with nothing beside it: `repair-index`, under a fault
    /// drawn as for any run (it must end as the fault allows, and change
    /// nothing the model knows: the next checks restore every generation);
    /// and on a local folder, now and then, first lose an index object
    /// (deleted, as by hand): a repair without faults must index its packs
    /// again from their own lists, so that `fsck` then finds nothing wrong.
    fn maybe_lose_an_index_object(&mut self, step: usize, rng: &mut Rng) -> Result<(), Broken> {
        let roll = rng.below(100);
        let pick = rng.below(1 << 16);
        let fault = self.draw_fault(rng, true);
        if roll >= 12 {
            return Ok(());
        }
        let lose = roll < 6 && matches!(self.cfg.backend, Backend::Local);
        let run = |world: &mut World, args: &[&str], fault: Fault| {
            let mut cmd = world.obnam(0);
            cmd.args(args).args(fault.args());
            let out = run_together(vec![(cmd, fault)]).remove(0);
            world.stats.processes += 1;
            world.note(format!("  {}: {}", args.join(" "), out.summary()));
            out
        };
        if !lose {
            self.note(format!("step {step}: repair-index {fault:?}"));
            let out = run(self, &["repair-index"], fault.clone());
            self.stats.index_repairs += 1;
            self.count_fault(&fault, &out);
            return allowed(&fault, &out).map_err(|e| format!("repair-index: {e}"));
        }
        let mut objects = obnam_test_support::files_under(&Path::new(&self.url).join("index"));
        objects.retain(|p| !p.to_string_lossy().contains("/.tmp"));
        if objects.is_empty() {
            return Ok(());
        }
        let lost = objects.remove(pick as usize % objects.len());
        std::fs::remove_file(&lost).map_err(|e| format!("lose an index object: {e}"))?;
        self.stats.index_objects_lost += 1;
        self.note(format!(
            "step {step}: lose {}, then repair-index",
            lost.file_name().unwrap_or_default().to_string_lossy()
        ));
        // (An object a prune replaced, whose deletion its plan defers,
        // lists nothing the prune's own objects do not: then there is
        // nothing to index, and the check below says whether that is so.)
        let out = run(self, &["repair-index"], Fault::None);
        self.stats.index_repairs += 1;
        if !out.ok() {
            return Err(format!(
                "repair-index after an index object was lost:\n{}\n{}",
                out.stdout, out.stderr
            ));
        }
        let checked = run(self, &["fsck"], Fault::None);
        self.stats.fscks += 1;
        if !checked.ok() || !checked.stdout.contains(" 0 problems") {
            return Err(format!(
                "fsck after repair-index:\n{}\n{}",
                checked.stdout, checked.stderr
            ));
        }
        Ok(())
    }

    /// Now and then, on a local folder, with nothing beside it: cut packs
    /// short (each of them or not, at random: to half its size, as an
    /// interrupted copy or a full disk would), back up a client, and
    /// restore what that backup committed while the packs are still cut:
    /// it must restore exactly, that is, the backup built nothing on the
    /// blobs the cuts took, whichever of them its files and the trees of
    /// its last generation use. (Before, a backup took such a pack for
    /// whole.) The client's earlier generations are verified first, and
    /// the packs are put back after, so that what the model expects of
    /// them stays true.
    fn maybe_cut_packs(&mut self, step: usize, rng: &mut Rng) -> Result<(), Broken> {
        let roll = rng.below(100);
        let picks = rng.next_u64();
        let client = rng.index(self.clients.len());
        if roll >= 8
            || !matches!(self.cfg.backend, Backend::Local)
            || std::env::var_os("XX_NO_CUT").is_some()
        {
            return Ok(());
        }
        self.verify_committed(client, None)?;
        let mut packs = obnam_test_support::files_under(&Path::new(&self.url).join("packs"));
        packs.retain(|p| !p.to_string_lossy().contains("/.tmp"));
        packs.sort();
        let mut cut = Vec::new();
        for (i, pack) in packs.into_iter().enumerate() {
            if (picks >> (i % 64)) & 1 == 1 {
                let whole = std::fs::read(&pack).map_err(|e| format!("cut a pack: {e}"))?;
                std::fs::write(&pack, &whole[..whole.len() / 2])
                    .map_err(|e| format!("cut a pack: {e}"))?;
                cut.push((pack, whole));
            }
        }
        if cut.is_empty() {
            return Ok(());
        }
        self.stats.packs_cut += cut.len() as u64;
        self.note(format!(
            "step {step}: cut {} packs to half their size, then back up {}",
            cut.len(),
            self.clients[client].name
        ));
        let backup = Job::Backup {
            client,
            fault: Fault::None,
            checkpoint: None,
            keep_checkpoints: false,
        };
        let checked = self
            .run_jobs(step, vec![backup])
            .and_then(|()| self.verify_committed(client, None))
            .map_err(|e| format!("with {} packs cut short: {e}", cut.len()));
        for (pack, whole) in cut {
            std::fs::write(&pack, &whole).map_err(|e| format!("put a pack back: {e}"))?;
        }
        checked
    }

    /// Now and then, on a local folder, with nothing beside it, when an
    /// earlier prune left a plan (its deletion deferred, or the prune
    /// stopped): damage the plan, then check what `docs/user-guide.md`
    /// ("Damaged records") promises: a backup stops, naming the plan
    /// (when its plan object is damaged), `fsck` names it, a prune
    /// removes it, deleting nothing because of it, and succeeds, and then
    /// a backup goes on (the model checks it, and what it committed
    /// restores at the next checks).
    fn maybe_damage_a_plan(&mut self, step: usize, damage: &mut Rng) -> Result<(), Broken> {
        let roll = damage.below(100);
        let runs_record = damage.chance(0.3);
        let how = damage.index(4);
        let client = damage.index(self.clients.len());
        if roll >= 50 || !matches!(self.cfg.backend, Backend::Local) {
            return Ok(());
        }
        let folder = Path::new(&self.url).join("prune");
        let mut plans: Vec<PathBuf> = fs::read_dir(&folder)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        plans.retain(|p| p.extension().is_some_and(|e| e == "plan") && p.is_file());
        plans.sort();
        let Some(plan) = plans.first() else {
            return Ok(());
        };
        let runs = plan.with_extension("runs");
        let target = if runs_record && runs.is_file() {
            runs
        } else {
            plan.clone()
        };
        let shown = |p: &Path| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        };
        let plan_key = format!("prune/{}", shown(plan));
        let key = format!("prune/{}", shown(&target));
        let what = match how {
            0 => {
                let mut bytes = fs::read(&target).map_err(|e| format!("damage: {e}"))?;
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x10;
                fs::write(&target, bytes).map_err(|e| format!("damage: {e}"))?;
                "a changed byte"
            }
            1 => {
                let bytes = fs::read(&target).map_err(|e| format!("damage: {e}"))?;
                fs::write(&target, &bytes[..bytes.len() / 2])
                    .map_err(|e| format!("damage: {e}"))?;
                "cut short"
            }
            2 => {
                fs::remove_file(&target).map_err(|e| format!("damage: {e}"))?;
                fs::create_dir(&target).map_err(|e| format!("damage: {e}"))?;
                "a folder in its place"
            }
            _ => {
                fs::remove_file(&target).map_err(|e| format!("damage: {e}"))?;
                let made = Command::new("mkfifo")
                    .arg(&target)
                    .status()
                    .map_err(|e| format!("damage: mkfifo: {e}"))?;
                if !made.success() {
                    return Err(format!("damage: mkfifo {}: {made}", target.display()));
                }
                "a FIFO in its place"
            }
        };
        self.note(format!(
            "step {step}: damage the prune plan object {key}: {what}"
        ));
        let root = self.clients[client].source.root.clone();
        let mut run = |client: usize, args: &[&std::ffi::OsStr]| {
            let mut cmd = self.obnam(client);
            cmd.args(args);
            let out = run_together(vec![(cmd, Fault::None)]).remove(0);
            self.stats.processes += 1;
            let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
            self.note(format!("  {}: {}", shown.join(" "), out.summary()));
            out
        };
        // A backup cannot tell what a damaged plan object names: it stops
        // before it starts, saying what to do (it reads no runs record).
        if target == *plan {
            let refused = run(client, &["backup".as_ref(), root.as_os_str()]);
            if refused.code != Some(1)
                || !refused.stderr.contains(&key)
                || !refused.stderr.contains("'obnam prune' removes it")
            {
                return Err(format!(
                    "a backup with {key} damaged must stop, naming it:\n{}\n{}",
                    refused.stdout, refused.stderr
                ));
            }
        }
        let checked = run(0, &["fsck".as_ref()]);
        let pruned = run(0, &["prune".as_ref()]);
        self.stats.fscks += 1;
        self.stats.prunes += 1;
        if checked.code != Some(1)
            || !checked.stderr.contains(&key)
            || !checked.stderr.contains("never carried out")
        {
            return Err(format!(
                "fsck with {key} damaged must name it:\n{}\n{}",
                checked.stdout, checked.stderr
            ));
        }
        if pruned.code != Some(0)
            || !pruned
                .stderr
                .contains(&format!("removed the damaged prune plan {plan_key}"))
            || fs::symlink_metadata(&target).is_ok()
        {
            return Err(format!(
                "prune with {key} damaged must remove it and succeed:\n{}\n{}",
                pruned.stdout, pruned.stderr
            ));
        }
        // Then a backup goes on; run_jobs checks that it succeeds, and the
        // model expects what it commits.
        self.run_jobs(
            step,
            vec![Job::Backup {
                client,
                fault: Fault::None,
                checkpoint: None,
                keep_checkpoints: false,
            }],
        )?;
        self.stats.prunes_reported += 1;
        self.stats.plans_damaged += 1;
        Ok(())
    }

    // -------------------------------------------------------------- prune

    /// Read the report of a prune (or of `forget --prune`, whose one JSON
    /// document holds it under `prune`) that reported success, for the
    /// summary; a failed one is followed by one without faults in the
    /// next step.
    fn prune_ended(
        &mut self,
        outcome: &Outcome,
        json: bool,
        pretend: bool,
        after_forget: bool,
    ) -> Result<(), Broken> {
        if !outcome.ok() {
            self.prune_needs_recovery = true;
            return Ok(());
        }
        self.stats.prunes_reported += 1;
        let figures = if json {
            let docs = crate::prune::json_documents(&outcome.stdout)?;
            let [doc] = docs.as_slice() else {
                return Err(format!(
                    "{} JSON documents, not one, in:\n{}",
                    docs.len(),
                    outcome.stdout
                ));
            };
            let doc = if after_forget { &doc["prune"] } else { doc };
            if doc.is_null() {
                return Err(format!("no prune JSON in:\n{}", outcome.stdout));
            }
            crate::prune::from_json(doc)?
        } else {
            crate::prune::from_text(&outcome.stdout)?
        };
        if figures.pretend != pretend {
            return Err(format!(
                "asked for pretend={pretend}, the report says pretend={}:\n{}",
                figures.pretend, outcome.stdout
            ));
        }
        self.log_prune(&figures);
        Ok(())
    }

    fn log_prune(&mut self, f: &crate::prune::Figures) {
        if !f.pretend {
            self.stats.packs_deleted += f.packs_deleted;
            self.stats.packs_rewritten += f.packs_rewritten;
            self.stats.prunes_deferred += u64::from(f.deferred);
        }
        self.log.push_str(&format!(
            "    prune{}: {} packs deleted, {} rewritten{}\n",
            if f.pretend { " --pretend" } else { "" },
            f.packs_deleted,
            f.packs_rewritten,
            if f.deferred {
                ", deletion deferred"
            } else {
                ""
            }
        ));
    }

    /// `obnam prune --output-format json ARGS` with nothing beside it.
    fn prune_alone(&mut self, args: &[&str]) -> Result<crate::prune::Figures, Broken> {
        let mut cmd = self.obnam(0);
        cmd.args(["prune", "--output-format", "json"]).args(args);
        let out = run_together(vec![(cmd, Fault::None)]).remove(0);
        self.stats.processes += 1;
        self.stats.prunes += 1;
        self.note(format!("  prune {}: {}", args.join(" "), out.summary()));
        allowed(&Fault::None, &out)
            .map_err(|e| format!("prune {args:?}: {e}\n{}\n{}", out.stdout, out.stderr))?;
        self.stats.prunes_reported += 1;
        let docs = crate::prune::json_documents(&out.stdout)?;
        let figures = crate::prune::from_json(docs.first().ok_or("prune printed no JSON")?)?;
        self.log_prune(&figures);
        Ok(figures)
    }

    /// The end's prunes, with nothing beside them (invariant 9): the first
    /// carries out every plan left and its own, with every generation's
    /// data in a pack; one that only deletes follows it, and after them a
    /// third has nothing left to delete or rewrite. (The second is there
    /// because packs the first wrote hold copies of blobs that older packs
    /// may hold too, and which copy counts can change once they exist.)
    fn final_prune(&mut self) -> Result<(), Broken> {
        for args in [&[][..], &["--repack-threshold", "100"][..]] {
            let f = self.prune_alone(args)?;
            if f.deferred {
                return Err(format!(
                    "prune {args:?} with nothing beside it deferred its deletion: {f:?}"
                ));
            }
            if f.missing_blobs != Some(0) {
                return Err(format!(
                    "prune {args:?}: generations refer to blobs in no pack: {f:?}"
                ));
            }
        }
        let last = self.prune_alone(&["--repack-threshold", "100", "--pretend"])?;
        if last.packs_deleted != 0 || last.packs_rewritten != 0 {
            return Err(format!(
                "after two prunes with nothing beside them, a third would still delete or \
                 rewrite packs: {last:?}"
            ));
        }
        self.folder_is_empty("prune", "prune objects left after the final prunes")
    }

    fn count_fault(&mut self, fault: &Fault, outcome: &Outcome) {
        let stopped = !outcome.ok();
        match fault {
            Fault::None => {}
            Fault::Kill { .. } => self.stats.kills += u64::from(outcome.signalled),
            Fault::Interrupt { .. } => self.stats.interrupts += u64::from(outcome.signalled),
            Fault::CrashLimit(_) => self.stats.crash_limits += u64::from(stopped),
            Fault::Storage(_) => self.stats.storage_fault_runs += 1,
        }
        if *fault != Fault::None && stopped {
            self.stats.runs_stopped_by_faults += 1;
        }
    }

    /// Restore-and-compare helper: the tree below `dir` for `src` must be `tree`.
    fn compare_restore(&mut self, dir: &Path, src: &Path, tree: &Manifest) -> Result<(), String> {
        let restored = dir.join(src.strip_prefix("/").expect("absolute source"));
        if !restored.is_dir() {
            return Err(format!("{} was not restored", restored.display()));
        }
        let diffs = tree.differences(&Manifest::of(&restored));
        self.stats.restores_verified += 1;
        let _ = fs::remove_dir_all(dir);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("\n"))
        }
    }

    // ---------------------------------------------------------- invariants

    /// The invariants that hold between steps.
    fn check(&mut self, step: usize, rng: &mut Rng) -> Result<(), Broken> {
        // The clients whose backups ran (the others' generations are
        // checked at the end), and one generation verified before, again.
        let recheck = rng.next_u64();
        let again = (recheck % self.clients.len() as u64) as usize;
        let touched = std::mem::take(&mut self.touched);
        // (A prune that deleted what generations need shows in the
        // generation verified again, or in the next fsck, every fourth step,
        // or at the end, which verifies them all: restoring or checking
        // every generation after every prune would make the short run too
        // slow in a debug build.)
        for client in 0..self.clients.len() {
            if touched.contains(&client) {
                self.check_generations(client)?;
            }
            self.verify_committed(client, (client == again).then_some(recheck >> 8))?;
        }
        if step % 4 == 3 {
            self.fsck()?;
        }
        Ok(())
    }

    /// The client's generations as obnam lists them: (id, is_checkpoint).
    fn generations(&mut self, client: usize) -> Result<Vec<(String, bool)>, Broken> {
        let out = run_together(vec![(
            {
                let mut c = self.obnam(client);
                c.args(["generations", "--output-format", "json"]);
                c
            },
            Fault::None,
        )])
        .remove(0);
        self.stats.processes += 1;
        allowed(&Fault::None, &out)
            .map_err(|e| format!("generations of client{client}: {e}\n{}", out.stderr))?;
        let list: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| format!("generations JSON: {e}"))?;
        Ok(list
            .as_array()
            .ok_or("generations JSON is not a list")?
            .iter()
            .map(|g| {
                (
                    g["id"].as_str().unwrap_or_default().to_string(),
                    g["is_checkpoint"].as_bool().unwrap_or(false),
                )
            })
            .collect())
    }

    fn check_generations(&mut self, client: usize) -> Result<(), Broken> {
        let listed = self.generations(client)?;
        let name = self.clients[client].name.clone();
        let position = |id: &str| listed.iter().position(|(g, _)| g == id);
        let c = &self.clients[client];
        // Every committed generation is there, in commit order (runs of
        // one step may commit in any order among themselves).
        let mut positions = Vec::new();
        for g in &c.committed {
            let Some(pos) = position(&g.id) else {
                return Err(format!(
                    "{name}: committed generation {} is missing: {listed:?}",
                    g.id
                ));
            };
            positions.push((g.step, pos, g.id.as_str()));
        }
        for (i, a) in positions.iter().enumerate() {
            for b in &positions[i + 1..] {
                if a.0 < b.0 && a.1 > b.1 {
                    return Err(format!(
                        "{name}: generation {} (step {}) is listed after {} (step {}): {listed:?}",
                        a.2, a.0, b.2, b.0
                    ));
                }
            }
        }
        // A generation a forget removed never comes back.
        if let Some(g) = c.forgotten.iter().find(|g| position(&g.id).is_some()) {
            return Err(format!(
                "{name}: generation {}, which a forget removed, is listed again: {listed:?}",
                g.id
            ));
        }
        // Generations the model does not know come from runs that did not
        // report success (or kept checkpoints).
        let known: BTreeSet<&str> = c.committed.iter().map(|g| g.id.as_str()).collect();
        let unknown: Vec<(String, bool)> = listed
            .iter()
            .filter(|(id, _)| !known.contains(id.as_str()))
            .cloned()
            .collect();
        let finished_unknown = unknown.iter().filter(|(_, cp)| !cp).count();
        if finished_unknown > c.interrupted.len() {
            return Err(format!(
                "{name}: {finished_unknown} finished generations that no successful run reported, \
                 but only {} runs failed: {unknown:?}",
                c.interrupted.len()
            ));
        }
        if !unknown.is_empty() && c.interrupted.is_empty() && !c.kept_checkpoints {
            return Err(format!(
                "{name}: generations that no run created: {unknown:?}"
            ));
        }
        if let (Some(ids), Some((latest, _))) = (&c.latest_must_be, listed.last()) {
            if !ids.contains(latest) {
                return Err(format!(
                    "{name}: latest is {latest}, not the generation of the last run ({ids:?}): {listed:?}"
                ));
            }
        }
        for (id, _) in unknown {
            if !self.clients[client].checked_unknown.contains(&id) {
                self.check_unknown(client, &id)?;
                self.clients[client].checked_unknown.insert(id);
            }
        }
        Ok(())
    }

    /// A generation of a run that did not report success holds only files
    /// that were in the tree of one of the client's runs, with their content.
    fn check_unknown(&mut self, client: usize, id: &str) -> Result<(), Broken> {
        self.scratch += 1;
        let dir = self.env.path().join(format!("restore{}", self.scratch));
        let mut cmd = self.obnam(client);
        cmd.args(["restore", "--generation", id, "--to"]).arg(&dir);
        let out = run_together(vec![(cmd, Fault::None)]).remove(0);
        self.stats.processes += 1;
        allowed(&Fault::None, &out).map_err(|e| format!("restore of {id}: {e}\n{}", out.stderr))?;
        let c = &self.clients[client];
        let restored = dir.join(c.source.root.strip_prefix("/").expect("absolute"));
        let got = if restored.exists() {
            Manifest::of(&restored)
        } else {
            Manifest::default()
        };
        let trees: Vec<&Manifest> = c
            .committed
            .iter()
            .chain(&c.forgotten)
            .map(|g| &*g.tree)
            .chain(c.interrupted.iter().map(|t| &**t))
            .collect();
        for (path, entry) in &got.entries {
            if entry.content == "dir" {
                continue;
            }
            if !trees.iter().any(|t| t.contains_content(path, entry)) {
                return Err(format!(
                    "{}: generation {id} (from a run that did not report success) holds {path:?} \
                     as {}, which no tree of the client had",
                    c.name, entry.content
                ));
            }
        }
        let _ = fs::remove_dir_all(&dir);
        self.stats.restores_verified += 1;
        Ok(())
    }

    /// Restore every committed generation not yet verified (and, with
    /// `recheck`, one already verified) and compare with its tree.
    fn verify_committed(&mut self, client: usize, recheck: Option<u64>) -> Result<(), Broken> {
        let n = self.clients[client].committed.len();
        let again = recheck.filter(|_| n > 0).map(|r| (r % n as u64) as usize);
        for i in 0..n {
            let g = &self.clients[client].committed[i];
            if g.verified && Some(i) != again {
                continue;
            }
            let (id, tree) = (g.id.clone(), g.tree.clone());
            self.scratch += 1;
            let dir = self.env.path().join(format!("restore{}", self.scratch));
            let mut cmd = self.obnam(client);
            cmd.args(["restore", "--generation", &id, "--to"]).arg(&dir);
            let out = run_together(vec![(cmd, Fault::None)]).remove(0);
            self.stats.processes += 1;
            let name = self.clients[client].name.clone();
            allowed(&Fault::None, &out)
                .map_err(|e| format!("{name}: restore of committed {id}: {e}\n{}", out.stderr))?;
            let src = self.clients[client].source.root.clone();
            self.compare_restore(&dir, &src, &tree)
                .map_err(|e| format!("{name}: committed generation {id} restores wrong:\n{e}"))?;
            self.clients[client].committed[i].verified = true;
        }
        Ok(())
    }

    fn fsck(&mut self) -> Result<(), Broken> {
        let mut cmd = self.obnam(0);
        cmd.args(["fsck", "--verify-data"]);
        let out = run_together(vec![(cmd, Fault::None)]).remove(0);
        self.stats.processes += 1;
        self.stats.fscks += 1;
        allowed(&Fault::None, &out)
            .map_err(|e| format!("fsck --verify-data: {e}\n{}\n{}", out.stdout, out.stderr))?;
        if !out.stdout.contains(" 0 problems") {
            return Err(format!(
                "fsck --verify-data found problems:\n{}",
                out.stdout
            ));
        }
        Ok(())
    }

    /// The end: one clean backup of every client; every committed
    /// generation restores; fsck is clean; no lock is left.
    fn finish(&mut self) -> Result<(), Broken> {
        let jobs = (0..self.clients.len())
            .map(|client| Job::Backup {
                client,
                fault: Fault::None,
                checkpoint: None,
                keep_checkpoints: false,
            })
            .collect();
        self.note("end: a clean backup of every client");
        self.run_jobs(self.cfg.steps + 1, jobs)?;
        for client in 0..self.clients.len() {
            self.check_generations(client)?;
        }
        self.final_prune()?;
        for client in 0..self.clients.len() {
            self.check_generations(client)?;
            for g in &mut self.clients[client].committed {
                g.verified = false;
            }
            self.verify_committed(client, None)?;
        }
        self.fsck()?;
        self.folder_is_empty("locks", "locks left after clean runs of every client")
    }

    /// On a local repository, that `folder` holds no object (`what` says
    /// why it must not).
    fn folder_is_empty(&self, folder: &str, what: &str) -> Result<(), Broken> {
        if !self.cfg.backend.is_local() {
            return Ok(());
        }
        let left: Vec<_> = fs::read_dir(Path::new(&self.url).join(folder))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{what}: {left:?}"))
        }
    }

    /// The schedule as played so far, with what each run did.
    pub fn schedule(&self) -> &str {
        &self.log
    }

    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "seed {} on {:?}: {}",
            self.cfg.seed,
            backend_name(&self.cfg.backend),
            self.stats
        );
        s
    }
}

fn backend_name(b: &Backend) -> &'static str {
    match b {
        Backend::Local => "local",
        Backend::Sftp { .. } => "sftp",
        Backend::S3 { name, .. } => name,
    }
}

/// What a forget that reported success says must hold (invariant 8):
/// `now` is the client's list after the step, `before` the `--pretend`
/// report, `beside` whether a backup of the client ran in the step.
fn check_forget_report(
    name: &str,
    report: &ClientReport,
    selection: &Selection,
    named: Option<&BTreeSet<String>>,
    before: &ClientReport,
    beside: bool,
    now: &BTreeSet<String>,
) -> Result<(), Broken> {
    for v in &report.verdicts {
        if v.remove && now.contains(&v.id) {
            return Err(format!(
                "{name}: the forget reported removing {}, which is still listed",
                v.id
            ));
        }
        // (A checkpoint it kept may be gone: the backup it was left for
        // can finish beside it and remove its checkpoints.)
        if !v.remove && !v.checkpoint && !now.contains(&v.id) {
            return Err(format!(
                "{name}: the forget reported keeping {}, which is gone",
                v.id
            ));
        }
    }
    let complete: Vec<_> = report.complete().collect();
    // A named generation whose record the forget could not read (an
    // injected short read) is removed as a damaged record: removed all
    // the same.
    let removed: BTreeSet<String> = complete
        .iter()
        .filter(|v| v.remove)
        .map(|v| v.id.clone())
        .chain(report.damaged_removed.iter().cloned())
        .collect();
    match (selection, named) {
        (_, Some(named)) if removed != *named => {
            return Err(format!(
                "{name}: named {named:?}, the forget removed complete generations {removed:?}"
            ))
        }
        (Selection::Keep(policy), _) => {
            if complete.last().is_some_and(|v| v.remove) {
                return Err(format!(
                    "{name}: --keep {policy} removed the latest complete generation: {report:?}"
                ));
            }
            if let Some(n) = forget_report::plain_count(policy) {
                for (i, v) in complete.iter().enumerate() {
                    if v.remove == (i + n >= complete.len()) {
                        return Err(format!(
                            "{name}: --keep {policy} must keep the newest {n} complete \
                             generations and only them: {report:?}"
                        ));
                    }
                }
            }
        }
        (Selection::CheckpointsOnly, _) if !removed.is_empty() => {
            return Err(format!(
                "{name}: a forget without ids or --keep removed complete generations {removed:?}"
            ))
        }
        _ => {}
    }
    // What the pretend run listed, less what the forget removed as
    // damaged records (listed by the one, unreadable to the other).
    let before_readable: Vec<_> = before
        .verdicts
        .iter()
        .filter(|v| !report.damaged_removed.contains(&v.id))
        .cloned()
        .collect();
    if !beside && report.verdicts != before_readable {
        return Err(format!(
            "{name}: with no backup of the client beside it, the forget decided otherwise than \
             its --pretend run just before:\npretend: {before:?}\nforget:  {report:?}"
        ));
    }
    Ok(())
}

/// Whether a run failed the way a run may fail for a reason outside its
/// control: an `ERROR:` line and an ordinary exit, no panic, no signal.
/// Whether a reader (restore, ls) that took its reader's lock (it did
/// not warn that it could not) found data of its generation deleted
/// while it read.
fn lost_data_under_its_lock(o: &Outcome) -> bool {
    !o.stderr.contains("could not take a reader's lock")
        && (o.stderr.contains("was removed while it was being restored")
            || o.stderr.contains("is not in the repository"))
}

fn failed_cleanly(o: &Outcome) -> bool {
    !o.ok()
        && o.code.is_some_and(|c| c != 101)
        && !["panicked at", "RUST_BACKTRACE", "stack backtrace"]
            .iter()
            .any(|n| o.stderr.contains(n))
        && o.stderr.lines().any(|l| l.starts_with("ERROR:"))
}

fn restore_client(job: &Job) -> usize {
    match job {
        Job::Restore { client, .. } => *client,
        _ => unreachable!("only restores restore"),
    }
}

fn describe(job: &Job) -> String {
    match job {
        Job::Backup {
            client,
            fault,
            checkpoint,
            keep_checkpoints,
        } => format!(
            "backup client{client} {fault:?}{}{}",
            checkpoint
                .map(|c| format!(" --checkpoint {c}"))
                .unwrap_or_default(),
            if *keep_checkpoints {
                " --leave-checkpoints"
            } else {
                ""
            }
        ),
        Job::Restore {
            client,
            pick,
            fault,
        } => format!("restore client{client} #{} {fault:?}", pick % 1000),
        Job::Fsck { fault } => format!("fsck --verify-data {fault:?}"),
        Job::Ls { client } => format!("ls client{client}"),
        Job::ForceLock {
            client,
            all_clients,
            fault,
        } => format!(
            "force-lock {} {fault:?}",
            if *all_clients {
                "--all-clients".to_string()
            } else {
                format!("client{client}")
            }
        ),
        Job::Forget {
            client,
            all_clients,
            selection,
            fault,
            json,
            prune,
        } => {
            format!(
                "forget {} {} {fault:?}{}",
                if *all_clients {
                    "--all-clients".to_string()
                } else {
                    format!("client{client}")
                },
                match selection {
                    Selection::Named(picks) => format!(
                        "named #{:?}",
                        picks.iter().map(|p| p % 1000).collect::<Vec<_>>()
                    ),
                    Selection::NamedLatest => "named latest".into(),
                    Selection::Keep(policy) => format!("--keep {policy}"),
                    Selection::CheckpointsOnly => "(checkpoints only)".into(),
                    Selection::WholeClient => "remove-client".into(),
                },
                if *json { " json" } else { "" }
            ) + if *prune { " --prune" } else { "" }
        }
        Job::Prune {
            fault,
            threshold,
            pretend,
            json,
        } => format!(
            "prune {fault:?}{}{}{}",
            threshold
                .map(|t| format!(" --repack-threshold {t}"))
                .unwrap_or_default(),
            if *pretend { " --pretend" } else { "" },
            if *json { " json" } else { "" }
        ),
    }
}

/// A storage fault plan: one to three kinds at modest rates, and a seed.
fn storage_spec(rng: &mut Rng) -> String {
    const KINDS: [&str; 8] = [
        "write-fail",
        "write-lost-ack",
        "delete-fail",
        "read-fail",
        "short-read",
        "slow",
        "stale-list",
        "list-fail",
    ];
    let count = rng.range(1, 4) as usize;
    let mut items: Vec<String> = Vec::new();
    for _ in 0..3 {
        let kind = KINDS[rng.index(KINDS.len())];
        let rate = [0.01, 0.03, 0.1, 0.3][rng.index(4)];
        if items.len() < count && !items.iter().any(|i| i.starts_with(&format!("{kind}="))) {
            items.push(format!("{kind}={rate}"));
        }
    }
    items.push(format!("seed={}", rng.next_u64()));
    items.join(",")
}

/// Whether a process ended for a reason its fault allows.
fn allowed(fault: &Fault, o: &Outcome) -> Result<(), String> {
    for needle in ["panicked at", "RUST_BACKTRACE", "stack backtrace"] {
        if o.stderr.contains(needle) {
            return Err(format!("a panic reached the user ({needle})"));
        }
    }
    if o.code == Some(101) {
        return Err("exit code 101 (a panic)".into());
    }
    if o.ok() {
        return Ok(());
    }
    let error_line = o.stderr.lines().any(|l| l.starts_with("ERROR:"));
    match fault {
        Fault::None => Err(format!("a run without faults failed ({})", o.summary())),
        Fault::Kill { .. } if o.signalled && o.signal == Some(9) => Ok(()),
        Fault::Interrupt { .. }
            if o.signalled
                && (o.signal == Some(2)
                    || (o.code == Some(130) && o.stderr.contains("interrupted by SIGINT"))) =>
        {
            Ok(())
        }
        Fault::CrashLimit(_) if o.code == Some(75) && o.stderr.contains("crash limit") => Ok(()),
        Fault::Storage(spec) => {
            let only_benign = spec.split(',').all(|i| {
                i.starts_with("slow=") || i.starts_with("stale-list=") || i.starts_with("seed=")
            });
            if only_benign {
                Err("a run with only slow operations and stale listings failed".into())
            } else if !error_line {
                Err("failed without an ERROR line".into())
            } else if !spec.contains("short-read")
                && !o
                    .stderr
                    .lines()
                    .any(|l| l.starts_with("ERROR:") && l.contains("injected storage fault"))
            {
                // (A short read fails no operation: the engine's checks
                // report the damage they find in their own words.)
                Err("failed under injected faults without an ERROR naming one".into())
            } else {
                Ok(())
            }
        }
        _ => Err(format!(
            "ended in a way its fault ({fault:?}) does not explain: {}",
            o.summary()
        )),
    }
}

/// The first entry of the folder `dir` in name order, if it has one.
fn first_entry(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    names.into_iter().next()
}
