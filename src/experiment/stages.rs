//! The stages after SFT: preference data, reward model, and each preference method. Each is
//! cached in its run folder under the hash of every setting it depends on.

use anyhow::{Context, Result};
use std::path::PathBuf;
use tch::{nn, Tensor};

use super::{key_of, progress, stage_hash, write_atomic, Metrics, RunOptions, Summary};
use crate::algo::common::copy_weights;
use crate::algo::trainer::{CkptParts, ResumeFrom};
use crate::algo::{best_of_n, reward};
use crate::data::{self, PairTensors, PrefData};
use crate::draw::derive_seed;
use crate::eval::optimal as frontier;
use crate::eval::Evaluator;
use crate::experiment::scenario::{Method, Scenario};
use crate::model::{self, Gpt, SampleSettings};
use crate::profile::{add_work, parse_work, stage_work, work_csv, Work, WORK};
use crate::world::TextWorld;

fn stage_dir(sc: &Scenario, opts: &RunOptions, stage: &str, key: &str) -> PathBuf {
    opts.runs_root
        .join(&sc.name)
        .join(format!("{stage}-{}", stage_hash(key)))
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
    format!(
        "{}|prefs|{}|max_new={}",
        sft_key(sc),
        key_of(&sc.prefs),
        sc.sample.max_new_tokens
    )
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
pub const NUMERICS: u32 = 4;

/// The key of the reward-model stage, which every later stage extends.
fn reward_key(sc: &Scenario) -> String {
    format!(
        "{}|reward|{}|numerics={NUMERICS}",
        prefs_key(sc),
        key_of(&sc.reward)
    )
}

/// The SFT stage's folder.
pub fn sft_dir(sc: &Scenario, opts: &RunOptions) -> PathBuf {
    opts.runs_root
        .join(&sc.name)
        .join(format!("sft-{}", stage_hash(&sft_key(sc))))
}

/// pi_SFT's log-probs of the preference pairs are cached per torch thread count (see
/// [`reference_stage`]), and so is pi_SFT's evaluation (`sft_evaluation`).
fn reference_key(sc: &Scenario, threads: i32) -> String {
    format!("{}|reference|threads={threads}", prefs_key(sc))
}

fn eval0_key(sc: &Scenario, threads: i32) -> String {
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
    t.push(
        stage,
        "",
        seed,
        0,
        &run_wall_metric(stage),
        started.elapsed().as_secs_f64(),
    );
    write_atomic(&dir.join("timing.csv"), t.to_csv().as_bytes())
}

/// The shared part of the cost ledger for one seed: the folders of the stages its runs stand
/// on (SFT, and the reward model's trunk where it has another size; preference data; reward
/// model; pi_SFT's reference log-probs at every torch thread count up to `max_threads`, one
/// per process kind that built them), and the wall seconds each kept when it ran. A reference
/// folder that does not exist was never computed and costs nothing; any other folder without
/// its time counts as not timed. pi_SFT's evaluation is not here: the first run that needed it
/// computed it inside its own time.
pub fn shared_ledger(sc: &Scenario, opts: &RunOptions, max_threads: i32) -> super::Ledger {
    let mut dirs = vec![(sft_dir(sc, opts), true)];
    if sc.reward_model != sc.model {
        dirs.push((
            sft_dir(
                &Scenario {
                    model: sc.reward_model.clone(),
                    ..sc.clone()
                },
                opts,
            ),
            true,
        ));
    }
    dirs.push((stage_dir(sc, opts, "prefs", &prefs_key(sc)), true));
    dirs.push((stage_dir(sc, opts, "reward", &reward_key(sc)), true));
    for t in 1..=max_threads.max(1) {
        dirs.push((
            stage_dir(sc, opts, "reference", &reference_key(sc, t)),
            false,
        ));
    }
    let mut ledger = super::Ledger::default();
    for (dir, always) in dirs {
        if !always && !dir.exists() {
            continue;
        }
        ledger.stages += 1;
        if let Some(secs) = own_walls(&cached_timing(&dir).unwrap_or_default()).next() {
            ledger.wall_s += secs;
            ledger.timed += 1;
        }
    }
    ledger
}

/// A cached stage's compute (its folder's `compute.csv`); NaN where the folder predates it.
fn stage_compute(dir: &std::path::Path) -> Work {
    std::fs::read_to_string(dir.join("compute.csv"))
        .ok()
        .and_then(|t| parse_work(&t))
        .unwrap_or([f64::NAN; WORK.len()])
}

/// Keep the compute of the stage just run (`stage` of `seed`) beside its outputs.
fn save_stage_compute(dir: &std::path::Path, stage: &str, seed: u64) -> Result<Work> {
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

/// Preference pairs from pi_SFT (or the true process), cached; with the compute they took.
pub fn prefs_stage(
    sc: &Scenario,
    world: &dyn TextWorld,
    sft: &Gpt,
    opts: &RunOptions,
    summary: &mut Summary,
) -> Result<(PrefData, Work)> {
    let dir = stage_dir(sc, opts, "prefs", &prefs_key(sc));
    let path = dir.join("pairs.txt");
    let data = if path.exists() {
        PrefData::load(&path)?
    } else {
        let _stage = crate::profile::enter_stage("prefs", "", sc.seed, "prefs");
        let started = std::time::Instant::now();
        let d = data::build(
            world,
            sft,
            &sc.prefs,
            sc.sample.max_new_tokens,
            sc.seed,
            opts.device,
        );
        save_stage_compute(&dir, "prefs", sc.seed)?;
        save_stage_wall(&dir, "prefs", sc.seed, started)?;
        write_atomic(&path, d.to_text().as_bytes())?;
        d
    };
    // The words behind the ids, for `alignlab export-prefs`.
    if !dir.join("words.toml").exists() {
        super::export::write_words(&dir, &world.vocab().words)?;
    }
    anyhow::ensure!(data.train.len() >= 2 && !data.val.is_empty(), "preference data has {} training and {} validation pairs; fix: raise world.n_train_prompts or prefs.k", data.train.len(), data.val.len());
    let gap: f64 = data
        .train
        .iter()
        .map(|p| p.gold_chosen - p.gold_rejected)
        .sum::<f64>()
        / data.train.len() as f64;
    // Agreement with gold on the pairs gold can tell apart (a gold tie has no right label).
    let distinct = data
        .train
        .iter()
        .filter(|p| p.gold_chosen != p.gold_rejected)
        .count();
    let agree = data
        .train
        .iter()
        .filter(|p| p.gold_chosen > p.gold_rejected)
        .count() as f64
        / distinct.max(1) as f64;
    let ties = if distinct < data.train.len() {
        format!(", {} gold ties", data.train.len() - distinct)
    } else {
        String::new()
    };
    summary.add("prefs", "pairs", format!("{} train, {} val (mean gold gap {gap:.3}, labels agree with gold on {:.1}% of the pairs of distinct gold{ties})", data.train.len(), data.val.len(), 100.0 * agree));
    Ok((data, stage_compute(&dir)))
}

/// The Bradley-Terry reward model, initialised from pi_SFT, cached; with the compute it took.
pub fn reward_stage(
    sc: &Scenario,
    world: &dyn TextWorld,
    sft_vs: &nn::VarStore,
    train: &PairTensors,
    val: &PairTensors,
    opts: &RunOptions,
    metrics: &mut Metrics,
    summary: &mut Summary,
) -> Result<(nn::VarStore, reward::RewardModel, Work)> {
    let dir = stage_dir(sc, opts, "reward", &reward_key(sc));
    let ckpt = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.csv");
    let mut vs = nn::VarStore::new(opts.device);
    tch::manual_seed(derive_seed(sc.seed, "reward/init") as i64);
    let rm = reward::RewardModel::new(&vs.root(), &sc.reward_model);
    if ckpt.exists() && metrics_path.exists() {
        model::load_checkpoint(&mut vs, &ckpt)?;
        let m = Metrics::read(&metrics_path)?;
        let best = m
            .rows
            .iter()
            .filter(|r| r.metric == "reward/val/accuracy")
            .map(|r| r.value)
            .fold(f64::NEG_INFINITY, f64::max);
        summary.add(
            "reward",
            "val accuracy (best epoch)",
            format!("{best:.4} (cached)"),
        );
        metrics.extend(m);
        return Ok((vs, rm, stage_compute(&dir)));
    }
    let _stage = crate::profile::enter_stage("reward", "", sc.seed, "train");
    if sc.reward_model == sc.model {
        copy_weights(&vs, sft_vs)?;
    } else {
        // A reward model of another size: its trunk is an SFT model of that size.
        let rm_sc = Scenario {
            model: sc.reward_model.clone(),
            ..sc.clone()
        };
        let (trunk_vs, _) = super::sft_stage(
            &rm_sc,
            world,
            opts,
            &mut Metrics::default(),
            &mut super::Summary::default(),
        )?;
        copy_weights(&vs, &trunk_vs)?;
    }
    // The reward model's own time (a trunk of another size keeps its own in its SFT folder).
    let started = std::time::Instant::now();
    let mut m = Metrics::default();
    let pb = progress(
        opts.progress,
        reward::total_steps(train.len(), &sc.reward) as u64,
        "reward",
    );
    let report = reward::train(&rm, &vs, train, val, &sc.reward, sc.seed, &mut m, || {
        pb.inc(1)
    })?;
    pb.finish_and_clear();
    let work = save_stage_compute(&dir, "reward", sc.seed)?;
    model::save_checkpoint(&vs, &ckpt)?;
    save_stage_wall(&dir, "reward", sc.seed, started)?;
    write_atomic(&metrics_path, m.to_csv().as_bytes())?;
    summary.add(
        "reward",
        "val accuracy (best epoch)",
        format!("{:.4} (epoch {})", report.best_val_acc, report.best_epoch),
    );
    metrics.extend(m);
    Ok((vs, rm, work))
}

/// pi_SFT's log-probs of every preference pair's chosen and rejected response (DPO's
/// reference), for the training and the validation pairs; cached, per torch thread count: the
/// last bits of the values depend on it, and a cell (one thread of a `--jobs 2` sweep) must
/// get the bytes it would have computed itself.
pub fn reference_stage(
    sc: &Scenario,
    sft: &Gpt,
    train: &PairTensors,
    val: &PairTensors,
    opts: &RunOptions,
) -> Result<((Tensor, Tensor), (Tensor, Tensor), Work)> {
    let dir = stage_dir(
        sc,
        opts,
        "reference",
        &reference_key(sc, tch::get_num_threads()),
    );
    let path = dir.join("logps.safetensors");
    let names = [
        "train_chosen",
        "train_rejected",
        "val_chosen",
        "val_rejected",
    ];
    if path.exists() {
        let _p = crate::profile::span("checkpoint_io");
        let read = Tensor::read_safetensors(&path).with_context(|| {
            format!(
                "cannot read {}; fix: delete its folder so it is recomputed",
                path.display()
            )
        })?;
        let get = |name: &str| {
            read.iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.to_device(opts.device))
                .with_context(|| {
                    format!(
                        "{} lacks {name}; fix: delete its folder so it is recomputed",
                        path.display()
                    )
                })
        };
        let (tc, tr, vc, vr) = (
            get(names[0])?,
            get(names[1])?,
            get(names[2])?,
            get(names[3])?,
        );
        if tc.size() == [train.len() as i64] && vc.size() == [val.len() as i64] {
            return Ok(((tc, tr), (vc, vr), stage_compute(&dir)));
        }
    }
    let stage = crate::profile::enter_stage("reference", "", sc.seed, "train");
    let started = std::time::Instant::now();
    let train_ref = crate::algo::dpo::reference_logps(sft, train, 512);
    let val_ref = crate::algo::dpo::reference_logps(sft, val, 512);
    std::fs::create_dir_all(&dir)?;
    let work = save_stage_compute(&dir, "reference", sc.seed)?;
    drop(stage);
    let _p = crate::profile::span("checkpoint_io");
    let tmp = crate::log::partial_path(&path);
    let tensors = [
        (names[0], &train_ref.0),
        (names[1], &train_ref.1),
        (names[2], &val_ref.0),
        (names[3], &val_ref.1),
    ];
    Tensor::write_safetensors(&tensors, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    save_stage_wall(&dir, "reference", sc.seed, started)?;
    Ok((train_ref, val_ref, work))
}

/// Everything a method run needs, shared across methods.
pub struct Shared<'a> {
    pub world: &'a dyn TextWorld,
    /// The prompts the online methods roll out on (`[prefs] rollout_prompts`).
    pub rollout_prompts: &'a [Vec<i64>],
    pub sft_vs: &'a nn::VarStore,
    pub sft: &'a Gpt,
    pub rm: &'a reward::RewardModel,
    pub rm_vs: &'a nn::VarStore,
    pub train: &'a PairTensors,
    pub train_ref: &'a (Tensor, Tensor),
    pub val: &'a PairTensors,
    pub val_ref: &'a (Tensor, Tensor),
    /// What the shared stages cost.
    pub work: SharedWork,
}

pub fn eval_settings(sc: &Scenario) -> SampleSettings {
    SampleSettings {
        temperature: sc.sample.temperature,
        top_k: sc.sample.top_k as i64,
        max_new_tokens: sc.sample.max_new_tokens as i64,
        use_cache: true,
    }
}

pub fn evaluator<'a>(sc: &Scenario, s: &Shared<'a>) -> Evaluator<'a> {
    Evaluator::new(
        s.world,
        s.sft,
        Some(s.rm),
        Some((s.val, s.val_ref)),
        sc.eval.samples_per_prompt,
        sc.eval.selection_fraction,
        eval_settings(sc),
        derive_seed(sc.seed, "eval/sampling") as i64,
    )
}

/// pi_SFT's evaluation, which is also every method's step 0 (each starts as a copy of pi_SFT
/// and samples with the same seed: the same bytes); cached per torch thread count, like the
/// reference log-probs, so each cell of a sweep reads it instead of evaluating again.
fn sft_evaluation(
    sc: &Scenario,
    s: &Shared,
    ev: &Evaluator,
    opts: &RunOptions,
) -> Result<Vec<(String, f64)>> {
    let path =
        stage_dir(sc, opts, "eval0", &eval0_key(sc, tch::get_num_threads())).join("eval.csv");
    if path.exists() {
        return Ok(Metrics::read(&path)?
            .rows
            .into_iter()
            .map(|r| (r.metric, r.value))
            .collect());
    }
    let (rows, _) = ev.evaluate(s.sft);
    let mut m = Metrics::default();
    for (k, v) in &rows {
        m.push("sft", "", sc.seed, 0, k, *v);
    }
    write_atomic(&path, m.to_csv().as_bytes())?;
    Ok(rows)
}

/// Evaluate pi_SFT itself (step 0 of every method), and at each of `[eval] temperatures`.
pub fn eval_sft(sc: &Scenario, s: &Shared, opts: &RunOptions, evals: &mut Metrics) -> Result<()> {
    let _stage = crate::profile::enter_stage("sft", "", sc.seed, "eval_estimators");
    let ev = evaluator(sc, s);
    for (k, v) in sft_evaluation(sc, s, &ev, opts)? {
        evals.push("sft", "", sc.seed, 0, &k, v);
    }
    temperature_sweep(sc, &ev, s.sft, ("sft", "", 0), evals);
    shifted_sweep(sc, s, s.sft, ("sft", "", 0), evals);
    Ok(())
}

/// The final evaluation of a policy on the world's shifted inputs at each of `[eval]
/// shift_temperatures` (`shift_t{T}/...`), where the world has a shift.
fn shifted_sweep(
    sc: &Scenario,
    s: &Shared,
    policy: &Gpt,
    (name, setting, step): (&str, &str, usize),
    evals: &mut Metrics,
) {
    let Some((prompts, refs)) = s.world.shifted_eval() else {
        return;
    };
    if sc.eval.shift_temperatures.is_empty() {
        return;
    }
    let ev = evaluator(sc, s).on_prompts(
        prompts,
        refs,
        sc.eval.samples_per_prompt,
        sc.eval.selection_fraction,
    );
    for &t in &sc.eval.shift_temperatures {
        for (k, v) in ev.evaluate_at_temperature(policy, t) {
            evals.push(
                name,
                setting,
                sc.seed,
                step,
                &k.replacen("eval_t", "shift_t", 1),
                v,
            );
        }
    }
}

/// The final evaluation of a policy at each of `[eval] temperatures` (`eval_t{T}/...`).
fn temperature_sweep(
    sc: &Scenario,
    ev: &Evaluator,
    policy: &Gpt,
    (name, setting, step): (&str, &str, usize),
    evals: &mut Metrics,
) {
    for &t in &sc.eval.temperatures {
        // Already evaluated at this step (a curve temperature at the last evaluation): the
        // same policy, settings and seed, so the same values.
        let gold = crate::eval::at_temperature("eval/gold", t);
        if evals.rows.iter().any(|r| {
            r.method == name
                && r.setting == setting
                && r.seed == sc.seed
                && r.step == step
                && r.metric == gold
        }) {
            continue;
        }
        for (k, v) in ev.evaluate_at_temperature(policy, t) {
            evals.push(name, setting, sc.seed, step, &k, v);
        }
    }
}

/// The run folder of one method run.
pub fn method_dir(sc: &Scenario, method: &Method, opts: &RunOptions) -> PathBuf {
    let (name, setting) = (method.name(), method.setting());
    let gold_reads_padding = matches!(sc.world, super::scenario::WorldConfig::Dialogue(_));
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

/// A method's resume folder: the state at its last evaluation, replaced atomically.
pub(super) struct ResumeDir {
    dir: PathBuf,
}

struct Resumed {
    from: ResumeFrom,
    metrics: Metrics,
    evals: Metrics,
}

impl ResumeDir {
    fn load(&self, stores: &mut [&mut nn::VarStore]) -> Result<Option<Resumed>> {
        let state_path = self.dir.join("state.txt");
        if !state_path.exists() {
            return Ok(None);
        }
        eprintln!("resuming from {}", self.dir.display());
        let bad = |what: &str| {
            anyhow::anyhow!(
                "corrupt resume state {} ({what}); fix: delete {} to restart this method",
                state_path.display(),
                self.dir.display()
            )
        };
        let text = std::fs::read_to_string(&state_path)?;
        let mut step = None;
        let mut rng = [0u64; 7];
        let mut extra = vec![];
        let mut n_opts = 0;
        for line in text.lines() {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("a line without ="))?;
            match k {
                "step" => step = Some(v.parse::<usize>().map_err(|_| bad("step"))?),
                "rng" => {
                    let parts: Vec<u64> = v
                        .split(',')
                        .map(|x| x.parse::<u64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| bad("rng"))?;
                    rng = parts.try_into().map_err(|_| bad("rng"))?;
                }
                "extra" => {
                    extra = if v.is_empty() {
                        vec![]
                    } else {
                        v.split(',')
                            .map(|x| x.parse::<f64>())
                            .collect::<Result<_, _>>()
                            .map_err(|_| bad("extra"))?
                    }
                }
                "opts" => n_opts = v.parse::<usize>().map_err(|_| bad("opts"))?,
                _ => return Err(bad("an unknown key")),
            }
        }
        for (i, vs) in stores.iter_mut().enumerate() {
            model::load_checkpoint(vs, &self.dir.join(format!("weights{i}.safetensors")))?;
        }
        let metrics = Metrics::read(&self.dir.join("metrics.csv"))?;
        let evals = Metrics::read(&self.dir.join("eval.csv"))?;
        let opt_files = (0..n_opts)
            .map(|i| self.dir.join(format!("opt{i}.safetensors")))
            .collect();
        Ok(Some(Resumed {
            from: ResumeFrom {
                step: step.ok_or_else(|| bad("no step"))?,
                opt_files,
                rng,
                extra,
            },
            metrics,
            evals,
        }))
    }

    fn save(
        &self,
        step: usize,
        parts: &CkptParts,
        stores: &[&nn::VarStore],
        metrics: &Metrics,
        evals: &Metrics,
    ) -> Result<()> {
        let _p = crate::profile::span("checkpoint_io");
        let tmp = self.dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        for (i, vs) in stores.iter().enumerate() {
            model::save_checkpoint(vs, &tmp.join(format!("weights{i}.safetensors")))?;
        }
        for (i, o) in parts.opts.iter().enumerate() {
            o.save(&tmp.join(format!("opt{i}.safetensors")))?;
        }
        std::fs::write(tmp.join("metrics.csv"), metrics.to_csv())?;
        std::fs::write(tmp.join("eval.csv"), evals.to_csv())?;
        let extra: Vec<String> = parts.extra.iter().map(|x| x.to_string()).collect();
        let rng: Vec<String> = parts.rng.iter().map(|x| x.to_string()).collect();
        std::fs::write(
            tmp.join("state.txt"),
            format!(
                "step={step}\nrng={}\nextra={}\nopts={}\n",
                rng.join(","),
                extra.join(","),
                parts.opts.len()
            ),
        )?;
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::rename(&tmp, &self.dir)?;
        Ok(())
    }
}

impl ResumeDir {
    /// Restore the weights into `stores` and the logs so far into `metrics` and `evals`;
    /// returns where the trainer resumes, or None for a fresh start.
    pub fn resume_into(
        &self,
        stores: &mut [&mut nn::VarStore],
        metrics: &mut Metrics,
        evals: &mut Metrics,
    ) -> Result<Option<ResumeFrom>> {
        Ok(self.load(stores)?.map(|r| {
            *metrics = r.metrics;
            *evals = r.evals;
            r.from
        }))
    }
}

/// A trainer's evaluation callback: evaluate `policy` at `step` into `evals`, then, before the
/// last step, checkpoint everything a resumed run needs.
#[allow(clippy::too_many_arguments)]
fn evaluate_and_checkpoint(
    rows: Vec<(String, f64)>,
    (name, setting, seed): (&str, &str, u64),
    (step, total): (usize, usize),
    resume: &ResumeDir,
    parts: &CkptParts,
    stores: &[&nn::VarStore],
    metrics: &Metrics,
    evals: &mut Metrics,
) -> Result<()> {
    for (k, v) in rows {
        evals.push(name, setting, seed, step, &k, v);
    }
    if step > 0 && step < total {
        resume.save(step, parts, stores, metrics, evals)?;
        maybe_abort(name, step);
    }
    Ok(())
}

/// Test hook: `ALIGNLAB_ABORT_AT=<method>:<step>` aborts the process (as kill -9 would) right
/// after that method's checkpoint at that step.
fn maybe_abort(name: &str, step: usize) {
    if let Ok(v) = std::env::var("ALIGNLAB_ABORT_AT") {
        if v == format!("{name}:{step}") {
            eprintln!("ALIGNLAB_ABORT_AT: aborting after {name} step {step}");
            std::process::abort();
        }
    }
}

/// What a method's trainer works with (see `Method::train`): the scenario, the shared stages,
/// its evaluator and resume folder, and the metrics and evaluations it writes.
pub(super) struct Run<'a> {
    pub sc: &'a Scenario,
    pub s: &'a Shared<'a>,
    pub opts: &'a RunOptions,
    pub ev: Evaluator<'a>,
    pub resume: ResumeDir,
    pub name: String,
    pub setting: String,
    pub metrics: Metrics,
    pub evals: Metrics,
    /// The compute of the shared stages the method stands on.
    pub deps: Work,
    /// What this process adds its own compute to: `deps` in a fresh run, the compute logged at
    /// the checkpoint in a resumed one (set at this process's first evaluation).
    pub compute_base: std::cell::Cell<Option<Work>>,
    /// Which checkpoint the run keeps (`[train] keep`), and where the best so far is written
    /// (beside the resume folder, which each checkpoint replaces).
    pub keep: crate::algo::dpo::Keep,
    pub best: PathBuf,
}

/// The sum of the shared stages' compute that `uses` (prefs, reward, reference) selects.
pub fn shared_work(w: &SharedWork, (prefs, reward, reference): (bool, bool, bool)) -> Work {
    let mut out = [0.0; WORK.len()];
    for (used, part) in [
        (prefs, &w.prefs),
        (reward, &w.reward),
        (reference, &w.reference),
    ] {
        if used {
            add_work(&mut out, part, 1.0);
        }
    }
    out
}

/// The `compute/*` evaluation rows: the compute a run has used so far (see [`crate::profile`]).
pub fn compute_rows(w: &Work) -> Vec<(String, f64)> {
    WORK.iter()
        .zip(w)
        .map(|(k, v)| (format!("compute/{k}"), *v))
        .collect()
}

impl Run<'_> {
    /// The method's compute up to now: its shared stages, and its own work in the stage (the
    /// FLOPs and counts of the stage's work phases; evaluation is not part of it). Deterministic,
    /// and the same whether the run was resumed or not: a resumed process starts from the values
    /// logged with the checkpoint it resumes.
    fn compute_now(&self, step: usize, evals: &Metrics) -> Work {
        let base = match self.compute_base.get() {
            Some(b) => b,
            None => {
                let b = if step == 0 {
                    self.deps
                } else {
                    let last = |k: &str| {
                        evals
                            .rows
                            .iter()
                            .rev()
                            .find(|r| {
                                r.method == self.name
                                    && r.setting == self.setting
                                    && r.metric == format!("compute/{k}")
                            })
                            .map_or(f64::NAN, |r| r.value)
                    };
                    let mut b = [0.0; WORK.len()];
                    for (o, k) in b.iter_mut().zip(WORK) {
                        *o = last(k);
                    }
                    b
                };
                self.compute_base.set(Some(b));
                b
            }
        };
        let mut out = base;
        add_work(&mut out, &stage_work(&crate::profile::current()), 1.0);
        out
    }

    /// The evaluation callback of a trainer: evaluate at `step` of `total`, then checkpoint.
    pub fn on_eval(
        &self,
        step: usize,
        total: usize,
        policy: &Gpt,
        parts: &CkptParts,
        stores: &[&nn::VarStore],
        metrics: &Metrics,
        evals: &mut Metrics,
    ) -> Result<()> {
        // Step 0 is pi_SFT (a fresh start; a resumed run does not evaluate it again).
        let mut rows = if step == 0 {
            sft_evaluation(self.sc, self.s, &self.ev, self.opts)?
        } else {
            self.ev.evaluate(policy).0
        };
        for &t in &self.sc.eval.curve_temperatures {
            rows.extend(self.ev.evaluate_at_temperature(policy, t));
        }
        rows.extend(compute_rows(&self.compute_now(step, evals)));
        // A better checkpoint by the keep rule than every earlier evaluation (ties keep the
        // earliest): its weights, for the end of the run.
        if let Some(metric) = self.keep.metric() {
            let before = evals
                .rows
                .iter()
                .filter(|r| {
                    r.method == self.name && r.setting == self.setting && r.metric == metric
                })
                .map(|r| r.value)
                .fold(f64::NEG_INFINITY, f64::max);
            if rows.iter().any(|(k, v)| k == metric && *v > before) {
                let _p = crate::profile::span("checkpoint_io");
                std::fs::create_dir_all(self.best.parent().expect("a run folder"))?;
                model::save_checkpoint(stores[0], &self.best)?;
            }
        }
        evaluate_and_checkpoint(
            rows,
            (&self.name, &self.setting, self.sc.seed),
            (step, total),
            &self.resume,
            parts,
            stores,
            metrics,
            evals,
        )
    }
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
fn cached_timing(dir: &std::path::Path) -> Result<Metrics> {
    match std::fs::read_to_string(dir.join("timing.csv")) {
        Ok(t) => Metrics::from_csv(&t),
        Err(_) => Ok(Metrics::default()),
    }
}

/// A finished run's `timing.csv` (empty where its folder has none or it cannot be read).
pub fn run_timing(sc: &Scenario, method: &Method, opts: &RunOptions) -> Metrics {
    cached_timing(&method_dir(sc, method, opts)).unwrap_or_default()
}

/// Train and evaluate one method from pi_SFT; cached by its settings. Checkpoints at every
/// evaluation; a killed run resumes from the last one. The training itself is the registry's
/// (`Method::train`).
pub fn method_stage(
    sc: &Scenario,
    method: &Method,
    s: &Shared,
    opts: &RunOptions,
    metrics: &mut Metrics,
    evals: &mut Metrics,
) -> Result<()> {
    let dir = method_dir(sc, method, opts);
    let (metrics_path, eval_path) = (dir.join("metrics.csv"), dir.join("eval.csv"));
    if metrics_path.exists() && eval_path.exists() {
        metrics.extend(Metrics::read(&metrics_path)?);
        metrics.extend(cached_timing(&dir)?);
        evals.extend(Metrics::read(&eval_path)?);
        return Ok(());
    }
    let _stage = crate::profile::enter_stage(&method.name(), &method.setting(), sc.seed, "train");
    let started = std::time::Instant::now();
    let mut vs = nn::VarStore::new(opts.device);
    let policy = Gpt::new(&vs.root(), &sc.model);
    copy_weights(&vs, s.sft_vs)?;
    let mut run = Run {
        sc,
        s,
        opts,
        ev: evaluator(sc, s),
        resume: ResumeDir {
            dir: dir.join("resume"),
        },
        name: method.name(),
        setting: method.setting(),
        metrics: Metrics::default(),
        evals: Metrics::default(),
        deps: shared_work(&s.work, method.uses_shared()),
        compute_base: Default::default(),
        keep: method.keep(&sc.train),
        best: dir.join("best").join("policy.safetensors"),
    };
    let last = method
        .train(&mut run, &policy, &mut vs)
        .with_context(|| format!("method {} {}", run.name, run.setting))?;
    super::export::write_card(&dir, &sc.model, &s.world.vocab().words)?;
    let mut e = std::mem::take(&mut run.evals);
    // The kept checkpoint: the last, or the best evaluation by the keep rule, marked
    // `eval/kept` at its step; the final-only evaluations and the saved model are its.
    let kept = match run.keep.metric() {
        None => last,
        Some(metric) => {
            let best = e
                .rows
                .iter()
                .filter(|r| r.method == run.name && r.setting == run.setting && r.metric == metric)
                .fold(None, |b: Option<(usize, f64)>, r| match b {
                    Some((_, v)) if v >= r.value => b,
                    _ => Some((r.step, r.value)),
                });
            let (step, _) = best.with_context(|| {
                format!(
                    "method {} {}: no {metric} to keep a checkpoint by",
                    run.name, run.setting
                )
            })?;
            model::load_checkpoint(&mut vs, &run.best)?;
            e.push(&run.name, &run.setting, sc.seed, step, "eval/kept", 1.0);
            step
        }
    };
    temperature_sweep(
        sc,
        &run.ev,
        &policy,
        (&run.name, &run.setting, kept),
        &mut e,
    );
    shifted_sweep(sc, s, &policy, (&run.name, &run.setting, kept), &mut e);
    run.metrics.push(
        &run.name,
        &run.setting,
        sc.seed,
        0,
        &run_wall_metric(&run.name),
        started.elapsed().as_secs_f64(),
    );
    finish_method(
        &dir,
        &vs,
        std::mem::take(&mut run.metrics),
        e,
        metrics,
        evals,
    )?;
    let _ = std::fs::remove_dir_all(dir.join("best"));
    Ok(())
}

fn finish_method(
    dir: &std::path::Path,
    vs: &nn::VarStore,
    m: Metrics,
    e: Metrics,
    metrics: &mut Metrics,
    evals: &mut Metrics,
) -> Result<()> {
    model::save_checkpoint(vs, &dir.join("model.safetensors"))?;
    let (det, timing) = m.split_timing();
    write_atomic(&dir.join("timing.csv"), timing.to_csv().as_bytes())?;
    write_atomic(&dir.join("metrics.csv"), det.to_csv().as_bytes())?;
    write_atomic(&dir.join("eval.csv"), e.to_csv().as_bytes())?;
    let _ = std::fs::remove_dir_all(dir.join("resume"));
    metrics.extend(m);
    evals.extend(e);
    Ok(())
}

fn best_of_n_dir(sc: &Scenario, grid: &[usize], opts: &RunOptions) -> PathBuf {
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

/// Best-of-N from pi_SFT for every N of the grid, on the evaluation prompts; cached.
pub fn best_of_n_stage(
    sc: &Scenario,
    grid: &[usize],
    s: &Shared,
    opts: &RunOptions,
    metrics: &mut Metrics,
    evals: &mut Metrics,
) -> Result<()> {
    let dir = best_of_n_dir(sc, grid, opts);
    let eval_path = dir.join("eval.csv");
    if eval_path.exists() {
        evals.extend(Metrics::read(&eval_path)?);
        metrics.extend(cached_timing(&dir)?);
        return Ok(());
    }
    let _stage = crate::profile::enter_stage("best_of_n", "", sc.seed, "candidates");
    let started = std::time::Instant::now();
    let rows: Vec<Vec<i64>> = s
        .world
        .eval_prompts()
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), sc.eval.samples_per_prompt))
        .collect();
    let ref_gold = crate::eval::policy::reference_gold(s.world, sc.eval.samples_per_prompt);
    let n_max = *grid.iter().max().expect("a non-empty grid");
    let pb = progress(opts.progress, 1 + sc.eval.temperatures.len() as u64, "bon");
    pb.set_message(format!("{} candidates", rows.len() * n_max));
    let seed = derive_seed(sc.seed, "best_of_n/sampling") as i64;
    let (proxy, gold) =
        best_of_n::score_candidates(s.world, s.sft, s.rm, &rows, n_max, &eval_settings(sc), seed);
    // Its compute at N: the preference data and the reward model, and N of the n_max candidates
    // drawn and scored per row.
    let candidates = stage_work(&("best_of_n".to_string(), String::new(), sc.seed));
    let deps = shared_work(&s.work, (true, true, false));
    pb.inc(1);
    let n_sel =
        crate::eval::selection_prompts(s.world.eval_prompts().len(), sc.eval.selection_fraction)
            * sc.eval.samples_per_prompt;
    let mut e = Metrics::default();
    for p in best_of_n::evaluate(&proxy, &gold, grid, ref_gold.as_deref()) {
        let setting = format!("n={}", p.n);
        let mut put = |k: &str, v: f64| e.push("best_of_n", &setting, sc.seed, 0, k, v);
        put("eval/gold", p.gold.mean);
        put("eval/gold_ci", p.gold.ci95);
        put("eval/kl", p.kl_bound);
        put("eval/kl_is_bound", 1.0);
        put("eval/proxy", p.proxy.mean);
        put("eval/gold_oracle", p.gold_oracle.mean);
        put("eval/gold_oracle_ci", p.gold_oracle.ci95);
        let share = p.n as f64 / n_max as f64;
        let mut work = deps;
        add_work(&mut work, &candidates, share);
        for (k, v) in compute_rows(&work) {
            put(&k, v);
        }
        for (k, v) in p
            .winrate
            .map(crate::eval::winrate_metrics)
            .into_iter()
            .flatten()
        {
            put(k, v);
        }
        // The analytic KL bound holds on either half.
        let kl = vec![p.kl_bound; p.picked_gold.len()];
        for (k, v) in
            crate::eval::split_metrics(n_sel, &p.picked_gold, Some(&kl), ref_gold.as_deref())
        {
            put(&k, v);
        }
    }
    // Best-of-N at each final-evaluation temperature: candidates drawn from pi_SFT at T.
    for &t in &sc.eval.temperatures {
        let settings = SampleSettings {
            temperature: t,
            ..eval_settings(sc)
        };
        // Greedy decoding gives one candidate whatever N is: draw it once.
        let n_draw = if t == 0.0 { 1 } else { n_max };
        let (mut proxy_t, mut gold_t) =
            best_of_n::score_candidates(s.world, s.sft, s.rm, &rows, n_draw, &settings, seed);
        if n_draw == 1 {
            proxy_t
                .iter_mut()
                .chain(gold_t.iter_mut())
                .for_each(|c| *c = vec![c[0]; n_max]);
        }
        pb.inc(1);
        for p in best_of_n::evaluate(&proxy_t, &gold_t, grid, ref_gold.as_deref()) {
            let setting = format!("n={}", p.n);
            let mut put = |k: &str, v: f64| {
                e.push(
                    "best_of_n",
                    &setting,
                    sc.seed,
                    0,
                    &crate::eval::at_temperature(k, t),
                    v,
                )
            };
            put("eval/gold", p.gold.mean);
            put("eval/gold_ci", p.gold.ci95);
            put("eval/proxy", p.proxy.mean);
            for (k, v) in p
                .winrate
                .map(crate::eval::winrate_metrics)
                .into_iter()
                .flatten()
            {
                put(k, v);
            }
            for (k, v) in
                crate::eval::split_metrics(n_sel, &p.picked_gold, None, ref_gold.as_deref())
            {
                put(&k, v);
            }
        }
    }
    pb.finish_and_clear();
    // An inner bound of the optimal frontier: pi* proportional to pi_SFT exp(r / beta) on the
    // first `optimal_samples` candidates of each prompt (its rows pooled), by self-normalised
    // importance sampling of the gold reward; a beta is kept while every prompt's effective
    // sample size is at least `optimal_min_ess` (past that the point reflects the sample).
    let spp = sc.eval.samples_per_prompt;
    let pooled: Vec<Vec<f64>> = gold
        .chunks(spp)
        .map(|rows| {
            rows.iter()
                .flatten()
                .copied()
                .take(sc.eval.optimal_samples.unwrap_or(usize::MAX))
                .collect()
        })
        .collect();
    let n_sel_prompts = n_sel / spp;
    let betas = [
        0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
    ];
    let span = crate::profile::span("frontier");
    let (all, sel, test) = (
        frontier::optimal_frontier(&pooled, &betas),
        frontier::optimal_frontier(&pooled[..n_sel_prompts], &betas),
        frontier::optimal_frontier(&pooled[n_sel_prompts..], &betas),
    );
    for ((p, ps), pt) in all.iter().zip(&sel).zip(&test) {
        if p.ess_min < sc.eval.optimal_min_ess {
            continue;
        }
        let setting = format!("beta={}", p.beta);
        let mut put = |k: &str, v: f64| e.push("optimal", &setting, sc.seed, 0, k, v);
        put("eval/gold", p.gold);
        put("eval/kl", p.kl);
        put("eval/ess", p.ess_mean);
        put("eval/ess_min", p.ess_min);
        put(
            "eval/is_samples",
            sc.eval.optimal_samples.unwrap_or(0) as f64,
        );
        put("eval/gold_sel", ps.gold);
        put("eval/kl_sel", ps.kl);
        put("eval/gold_test", pt.gold);
        put("eval/kl_test", pt.kl);
    }
    drop(span);
    let mut timing = Metrics::default();
    timing.push(
        "best_of_n",
        "",
        sc.seed,
        0,
        &run_wall_metric("best_of_n"),
        started.elapsed().as_secs_f64(),
    );
    write_atomic(&dir.join("timing.csv"), timing.to_csv().as_bytes())?;
    write_atomic(&eval_path, e.to_csv().as_bytes())?;
    metrics.extend(timing);
    evals.extend(e);
    Ok(())
}
