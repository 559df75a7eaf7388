//! Run folders: `runs/<scenario>/<stage>-<hash>/`, keyed by the hash of every setting a stage
//! depends on, so a stage whose settings did not change is reused; which of them a run has
//! finished, and the wall time and compute each keeps.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use super::keys::{key_of, stage_hash};
use super::methods::Method;
use super::options::RunOptions;
use super::scenario::Scenario;
use crate::log::{write_atomic, Metrics};
use crate::profile::{add_work, parse_work, stage_work, work_csv, Work, WORK};

pub(super) fn stage_dir(sc: &Scenario, opts: &RunOptions, stage: &str, key: &str) -> PathBuf {
    opts.runs_root.join(&sc.name).join(format!("{stage}-{}", stage_hash(key)))
}

/// The version of the worlds' draws, part of every stage's key. 2: every draw from rand_chacha's
/// ChaCha12 (one stream per document) and rand/rand_distr's distributions, in place of the
/// hand-written xoshiro generator (version 1, unmarked in older keys).
pub const WORLDS: u32 = 2;

/// The key of the SFT stage: the world (and the version of its draws), the model and SFT's
/// settings, and the seed.
pub fn sft_key(sc: &Scenario) -> String {
    format!(
        "sft|{}|worlds={WORLDS}|{}|{}|seed={}",
        key_of(&sc.world),
        key_of(&sc.model),
        key_of(&sc.sft),
        sc.seed
    )
}

pub fn prefs_key(sc: &Scenario) -> String {
    format!("{}|prefs|{}|max_new={}", sft_key(sc), key_of(&sc.prefs), sc.sample.max_new_tokens)
}

/// The version of the numerics of the stages after the preference data (reward model, every
/// method, Best-of-N, evaluation). Raise it when a change alters the numbers they produce,
/// so that run folders made by older code are not reused as if current. 2: the last block
/// runs on the rows read, DPO packs chosen and rejected after one prompt, flat-buffer Adam.
/// SFT and the preference data did not change, and keep their folders. 3: evaluations also
/// score the selection and test halves of the prompts, the held-out implicit accuracy counts
/// ties one half, top-k evaluations measure the truncated distribution's KL, PPO with k3
/// adapts its KL coefficient on the k3 sum, the importance-sampling frontier pools a prompt's
/// candidates and filters on every prompt's effective sample size. 4: the worlds, data orders
/// and labels draw from ChaCha12 ([`WORLDS`] 2), and every evaluation carries its compute.
/// 5: a method's random streams (batch order, prompts, rollouts) derive from its typed
/// identity (`Method::stream_key`: its table and grid values) instead of its display label,
/// and cDPO's label says `label_smoothing` (it kept `eps` to keep its seeds). 6: the model
/// never emits `<pad>` or `<bos>` (their logits held at -1e9 in sampling, log-probs, KL and
/// entropy; `GptConfig::suppress`), which changes SFT's keys too. 7: one tie rule for every
/// accuracy over pairs (a tie counts one half: `dpo/rewards/accuracies`, the reward model's
/// accuracies, which choose its best epoch), as `eval/implicit_acc` already counted.
pub const NUMERICS: u32 = 7;

/// The key of the reward-model stage, which every later stage extends (with `reward.init`,
/// its checkpoint's fingerprint).
pub(super) fn reward_key(sc: &Scenario) -> String {
    let init = own_reward_checkpoint(sc).map(|i| format!("|init={}", i.fingerprint));
    let init = init.unwrap_or_default();
    // A frozen proxy classifier's fingerprint (its folder was opened when the scenario was
    // checked).
    let judge = sc.reward.classifier.as_ref().map(|c| {
        let j = c.opened().expect("the scenario's check opened [reward.classifier]");
        format!("|classifier={}", j.fingerprint)
    });
    let judge = judge.unwrap_or_default();
    format!("{}|reward|{}{init}{judge}|numerics={NUMERICS}", prefs_key(sc), key_of(&sc.reward))
}

/// `reward.init`'s checkpoint, where the reward model starts from one of its own rather than
/// from pi_SFT (or an SFT trunk of its size).
pub fn own_reward_checkpoint(sc: &Scenario) -> Option<&crate::model::config::Init> {
    sc.reward_model.init.as_ref().filter(|_| sc.reward_model.init != sc.model.init)
}

/// The SFT stage's folder.
pub fn sft_dir(sc: &Scenario, opts: &RunOptions) -> PathBuf {
    opts.runs_root.join(&sc.name).join(format!("sft-{}", stage_hash(&sft_key(sc))))
}

/// pi_SFT's log-probs of the preference pairs are cached per torch thread count (see
/// [`reference_stage`]), and so is pi_SFT's evaluation (`sft_evaluation`).
pub(super) fn reference_key(sc: &Scenario, threads: i32) -> String {
    format!("{}|reference|threads={threads}", prefs_key(sc))
}

pub(super) fn eval0_key(sc: &Scenario, threads: i32) -> String {
    format!(
        "{}|eval0|{}|{}|threads={threads}",
        reward_key(sc),
        key_of(&sc.eval),
        key_of(&sc.sample)
    )
}

/// A shared stage's own wall seconds, kept beside its outputs in `timing.csv` as a method
/// run's are (`{stage}/time/run_s` at step 0): the shared part of the cost ledger.
pub fn save_stage_wall(
    dir: &std::path::Path,
    stage: &str,
    seed: u64,
    started: std::time::Instant,
) -> Result<()> {
    let mut t = Metrics::default();
    t.push(stage, "", seed, 0, &run_wall_metric(stage), started.elapsed().as_secs_f64());
    write_atomic(&dir.join("timing.csv"), t.to_csv().as_bytes())
}

/// The folders of the shared stages a seed's runs stand on (SFT, and the reward model's trunk
/// where it has another size; preference data; reward model; pi_SFT's reference log-probs at
/// every torch thread count up to `max_threads`, one per process kind that built them), each
/// with whether it must exist (a reference folder that does not was never computed). pi_SFT's
/// evaluation is not here: the first run that needed it computed it inside its own time.
pub fn shared_dirs(sc: &Scenario, opts: &RunOptions, max_threads: i32) -> Vec<(PathBuf, bool)> {
    let mut dirs = vec![(sft_dir(sc, opts), true)];
    if sc.reward_model != sc.model && own_reward_checkpoint(sc).is_none() {
        dirs.push((
            sft_dir(&Scenario { model: sc.reward_model.clone(), ..sc.clone() }, opts),
            true,
        ));
    }
    dirs.push((stage_dir(sc, opts, "prefs", &prefs_key(sc)), true));
    dirs.push((stage_dir(sc, opts, "reward", &reward_key(sc)), true));
    for t in 1..=max_threads.max(1) {
        dirs.push((stage_dir(sc, opts, "reference", &reference_key(sc, t)), false));
    }
    dirs
}

/// Hold the lock of a stage's or run's folder `dir` while it is computed or read: a second
/// invocation on the same `runs/` waits for a stage another holds (and says so), then finds it
/// finished and reads it, so no stage is trained twice and none by two processes at once. The
/// lock is the operating system's (`flock` on `runs/<scenario>/locks/<folder>.lock`), released
/// when its holder ends, killed or not; the lock files stay, empty.
pub(super) fn lock_stage(sc: &Scenario, opts: &RunOptions, dir: &Path) -> Result<std::fs::File> {
    let locks = opts.runs_root.join(&sc.name).join("locks");
    std::fs::create_dir_all(&locks).with_context(|| {
        format!("cannot create {}; fix: check the permissions of --runs", locks.display())
    })?;
    let name = folder_name(dir);
    let path = locks.join(format!("{name}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open the lock {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let note = format!(
                "waiting: another alignlab invocation holds {name} (its lock {}); this one reads it when that one is done",
                path.display()
            );
            opts.progress.note(&sc.name, Some(sc.seed), &note);
            file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
    Ok(file)
}

/// `--on-corrupt refuse`: a finished stage that cannot be read stops the run with its error
/// instead of being moved aside and recomputed.
static REFUSE_CORRUPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What a finished stage that cannot be read does: `refuse` stops the run, else it is moved
/// aside and recomputed (the default). Set once per process, from the command line.
pub fn set_refuse_corrupt(refuse: bool) {
    REFUSE_CORRUPT.store(refuse, std::sync::atomic::Ordering::Relaxed);
}

/// A finished stage's folder `dir` read back with `read`, or None where it is not finished
/// (`finished` false). A folder that cannot be read (a corrupt or truncated file) is moved aside
/// to `<folder>.corrupt-<k>` with a warning naming what was wrong, and None returned, so the
/// caller computes the stage again; with `--on-corrupt refuse` its error stops the run.
pub(super) fn read_finished<T>(
    sc: &Scenario,
    opts: &RunOptions,
    dir: &Path,
    finished: bool,
    read: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    if !finished {
        return Ok(None);
    }
    let e = match read() {
        Ok(v) => return Ok(Some(v)),
        Err(e) => e,
    };
    if REFUSE_CORRUPT.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(e.context(format!(
            "{} cannot be read (--on-corrupt refuse); fix: delete it, or leave out --on-corrupt refuse to have it moved aside and recomputed",
            dir.display()
        )));
    }
    let aside = move_aside(dir)?;
    let note = format!(
        "warning: {} could not be read ({e:#}); moved aside to {} and computed again",
        dir.display(),
        aside.display()
    );
    // A warning: printed under --quiet too; a JSON object with --json-progress.
    match opts.progress {
        super::progress::ProgressMode::Json => opts.progress.note(&sc.name, Some(sc.seed), &note),
        _ => eprintln!("{note}"),
    }
    Ok(None)
}

/// The last component of a stage's folder, as its lock and its moved-aside copy are named.
fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| "stage".into(), |n| n.to_string_lossy().to_string())
}

/// Move `dir` to the first free `<dir>.corrupt-<k>`; returns where it went.
pub(super) fn move_aside(dir: &Path) -> Result<PathBuf> {
    let name = folder_name(dir);
    let aside = (1..)
        .map(|k| dir.with_file_name(format!("{name}.corrupt-{k}")))
        .find(|p| !p.exists())
        .expect("a free name");
    std::fs::rename(dir, &aside).with_context(|| {
        format!("cannot move the unreadable {} aside; fix: delete it", dir.display())
    })?;
    Ok(aside)
}

/// A cached stage's compute (its folder's `compute.csv`); NaN where the folder predates it.
pub(super) fn stage_compute(dir: &std::path::Path) -> Work {
    std::fs::read_to_string(dir.join("compute.csv"))
        .ok()
        .and_then(|t| parse_work(&t))
        .unwrap_or([f64::NAN; WORK.len()])
}

/// Keep the compute of the stage just run (`stage` of `seed`) beside its outputs.
pub(super) fn save_stage_compute(dir: &std::path::Path, stage: &str, seed: u64) -> Result<Work> {
    let w = stage_work(&(stage.to_string(), String::new(), seed));
    write_atomic(&dir.join("compute.csv"), work_csv(&w).as_bytes())?;
    Ok(w)
}

/// What the shared stages cost, which a method's compute includes where it uses them: the
/// preference data, the reward model, DPO's reference log-probs. SFT is every method's start,
/// and is left out of all of them.
#[derive(Clone, Copy, Debug)]
pub struct SharedWork {
    pub prefs: Work,
    pub reward: Work,
    pub reference: Work,
}

/// The sum of the shared stages' compute that `uses` (prefs, reward, reference) selects.
pub fn shared_work(w: &SharedWork, (prefs, reward, reference): (bool, bool, bool)) -> Work {
    let mut out = [0.0; WORK.len()];
    for (used, part) in [(prefs, &w.prefs), (reward, &w.reward), (reference, &w.reference)] {
        if used {
            add_work(&mut out, part, 1.0);
        }
    }
    out
}

/// The `compute/*` evaluation rows: the compute a run has used so far (see [`crate::profile`]).
pub fn compute_rows(w: &Work) -> Vec<(String, f64)> {
    WORK.iter().zip(w).map(|(k, v)| (format!("compute/{k}"), *v)).collect()
}

/// The run folder of one method run.
pub fn method_dir(sc: &Scenario, method: &Method, opts: &RunOptions) -> PathBuf {
    let (name, setting) = (method.name(), method.setting());
    let gold_reads_padding = sc.world.capabilities().gold_reads_padding;
    let key = format!(
        "{}|{}|eval|{}|{}",
        reward_key(sc),
        method.cache_key(&sc.train, gold_reads_padding),
        key_of(&sc.eval),
        key_of(&sc.sample)
    );
    let label = if setting.is_empty() {
        name.to_string()
    } else {
        format!("{name}-{}", setting.replace(';', "-"))
    };
    stage_dir(sc, opts, &label, &key)
}

/// Whether a method run has finished (its results are in its run folder).
pub fn method_done(sc: &Scenario, method: &Method, opts: &RunOptions) -> bool {
    let dir = method_dir(sc, method, opts);
    dir.join("metrics.csv").exists() && dir.join("eval.csv").exists()
}

/// A run's own wall seconds, kept in its folder's `timing.csv` (a killed run that resumed:
/// the last process's): `{method}/time/run_s` at step 0. The cost ledger sums them over every
/// run a result stands on, whether it ran in this invocation or was found cached.
pub fn run_wall_metric(method: &str) -> String {
    format!("{method}/time/run_s")
}

/// The own wall seconds in a `timing.csv` (a run's, a Best-of-N stage's or a shared stage's;
/// a sweep's holds one per run): its rows of [`run_wall_metric`] at step 0.
pub fn own_walls(timing: &Metrics) -> impl Iterator<Item = f64> + '_ {
    timing
        .rows
        .iter()
        .filter(|r| r.step == 0 && r.metric == run_wall_metric(&r.method))
        .map(|r| r.value)
}

/// A finished stage's `timing.csv`: empty where its folder has none (written before it was
/// kept), an error where it is corrupt.
pub(super) fn cached_timing(dir: &std::path::Path) -> Result<Metrics> {
    match std::fs::read_to_string(dir.join("timing.csv")) {
        Ok(t) => Metrics::from_csv(&t),
        Err(_) => Ok(Metrics::default()),
    }
}

/// A finished run's `timing.csv` (empty where its folder has none or it cannot be read).
pub fn run_timing(sc: &Scenario, method: &Method, opts: &RunOptions) -> Metrics {
    cached_timing(&method_dir(sc, method, opts)).unwrap_or_default()
}

pub(super) fn best_of_n_dir(sc: &Scenario, grid: &[usize], opts: &RunOptions) -> PathBuf {
    let key = format!(
        "{}|best_of_n|{}|eval|{}|{}",
        reward_key(sc),
        key_of(&grid),
        key_of(&sc.eval),
        key_of(&sc.sample)
    );
    stage_dir(sc, opts, "best_of_n", &key)
}

pub fn best_of_n_done(sc: &Scenario, grid: &[usize], opts: &RunOptions) -> bool {
    best_of_n_dir(sc, grid, opts).join("eval.csv").exists()
}
