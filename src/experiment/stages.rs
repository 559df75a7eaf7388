//! The shared stages of a seed: SFT, preference data, the reward model and the reference
//! log-probs of the pairs, each cached in its run folder; what they hand to every method run
//! ([`Shared`]), and the evaluator with pi_SFT's evaluation.

use anyhow::{Context, Result};
use tch::{nn, Tensor};

use super::export;
use super::folders::{self, *};
use super::options::RunOptions;
use super::progress::{progress, Tag};
use super::scenario::Scenario;
use super::summary::Summary;
use crate::algo::common::copy_weights;
use crate::algo::reward;
use crate::algo::sft::{self, SeqData};
use crate::algo::trainer::Trainer;
use crate::data::{self, PairTensors, PrefData};
use crate::draw::derive_seed;
use crate::eval::Evaluator;
use crate::log::{write_atomic, Metrics};
use crate::model::{self, Gpt, SampleSettings};
use crate::profile::Work;
use crate::world::TextWorld;

/// pi_SFT starts from `[model] init`'s checkpoint where there is one.
fn load_init(sc: &Scenario, vs: &nn::VarStore) -> Result<()> {
    if let Some(init) = &sc.model.init {
        load_checkpoint_into(&init.dir, &sc.model, vs)?;
    }
    Ok(())
}

/// The Hugging Face checkpoint in `dir` into `vs`, a network of `cfg` (the scenario's check
/// opened the folder; it is read again here, where the weights go); whether a reward model's
/// score head came from it.
pub(super) fn load_checkpoint_into(
    dir: &std::path::Path,
    cfg: &crate::model::GptConfig,
    vs: &nn::VarStore,
) -> Result<bool> {
    let ck = model::hf::open(dir)?;
    let vars: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    Ok(model::hf::load(&ck, cfg, &vars, "")?)
}

/// SFT stage: train pi_SFT or reuse the cached checkpoint. Returns the model's VarStore.
pub fn sft_stage(
    sc: &Scenario,
    world: &dyn TextWorld,
    opts: &RunOptions,
    metrics: &mut Metrics,
    summary: &mut Summary,
) -> Result<(nn::VarStore, Gpt)> {
    let dir = folders::sft_dir(sc, opts);
    let _lock = folders::lock_stage(sc, opts, &dir)?;
    let ckpt = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.csv");
    let fresh = || {
        let vs = nn::VarStore::new(opts.device);
        tch::manual_seed(derive_seed(sc.seed, "sft/init") as i64);
        let gpt = Gpt::new(&vs.root(), &sc.model);
        (vs, gpt)
    };
    let (mut vs, mut gpt) = fresh();
    let val = SeqData::from_examples(world.sft_examples(true), opts.device);
    let true_nll = world.true_nll_per_token();
    let finished = ckpt.exists() && metrics_path.exists();
    let cached = read_finished(sc, opts, &dir, finished, || {
        model::load_checkpoint(&mut vs, &ckpt)?;
        Metrics::read(&metrics_path)
    })?;
    if let Some(cached) = cached {
        let val_nll = cached.last("sft/nll/val").unwrap_or(f64::NAN);
        summary.add("sft", "cached checkpoint", dir.display().to_string());
        let note = format!("sft: reusing the cached checkpoint in {}", dir.display());
        opts.progress.note(&sc.name, Some(sc.seed), &note);
        summary.add("sft", "val NLL/token", val_nll_line(val_nll, true_nll));
        metrics.extend(cached);
        return Ok((vs, gpt));
    }
    if finished {
        // Moved aside: a fresh start (the failed read may have filled some weights).
        (vs, gpt) = fresh();
    }
    load_init(sc, &vs)?;
    let _stage = crate::profile::enter_stage("sft", "", sc.seed, "train");
    let started = std::time::Instant::now();
    let train = SeqData::from_examples(world.sft_examples(false), opts.device);
    let pb = progress(opts.progress, sc.sft.steps as u64, Tag::stage(sc, "sft"));
    let mut t = Trainer::new("sft", "", sc.seed, sc.sft.eval_every)
        .without_resume("none (this stage saves its checkpoint at the end)")
        .with_faults(sc.faults.clone())
        .on_step(|step, loss| {
            pb.set_position(step as u64 + 1);
            if step % 10 == 0 {
                pb.set_message(format!("loss {loss:.4}"));
            }
        });
    let report = sft::train(&gpt, &vs, &train, &val, &sc.sft, &mut t)?;
    let mut m = t.metrics;
    pb.finish_and_clear();
    if true_nll.is_finite() {
        m.push("sft", "", sc.seed, sc.sft.steps, "sft/nll/true_process", true_nll);
    }
    model::save_checkpoint(&vs, &ckpt)?;
    export::write_card(&dir, &sc.model, world.vocab())?;
    write_atomic(&metrics_path, m.to_csv().as_bytes())?;
    folders::save_stage_wall(&dir, "sft", sc.seed, started)?;
    summary.add("sft", "val NLL/token", val_nll_line(report.val_nll, true_nll));
    summary.add("sft", "train NLL/token (EMA)", format!("{:.4}", report.train_nll));
    summary.add(
        "sft",
        "train tokens/s",
        format!("{:.0} ({:.1} s)", report.tokens / report.seconds, report.seconds),
    );
    summary.add("sft", "checkpoint", ckpt.display().to_string());
    metrics.extend(m);
    Ok((vs, gpt))
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
    let _lock = folders::lock_stage(sc, opts, &dir)?;
    let path = dir.join("pairs.txt");
    let cached = read_finished(sc, opts, &dir, path.exists(), || PrefData::load(&path))?;
    let data = if let Some(d) = cached {
        d
    } else {
        let _stage = crate::profile::enter_stage("prefs", "", sc.seed, "prefs");
        let started = std::time::Instant::now();
        let d = data::build(world, sft, &sc.prefs, sc.sample.max_new_tokens, sc.seed, opts.device);
        save_stage_compute(&dir, "prefs", sc.seed)?;
        save_stage_wall(&dir, "prefs", sc.seed, started)?;
        write_atomic(&path, d.to_text().as_bytes())?;
        d
    };
    // The words behind the ids, for `alignlab export-prefs`.
    if !dir.join("words.toml").exists() {
        super::export::write_words(&dir, &world.vocab().words)?;
    }
    let fix = if world.file_pairs().is_some() {
        "give more rows (or keep the file's labels, labels = \"world\": the judge's ties are dropped)"
    } else {
        "raise world.n_train_prompts or prefs.k"
    };
    anyhow::ensure!(
        data.train.len() >= 2 && !data.val.is_empty(),
        "preference data has {} training and {} validation pairs; fix: {fix}",
        data.train.len(),
        data.val.len()
    );
    let gap: f64 = data.train.iter().map(|p| p.gold_chosen - p.gold_rejected).sum::<f64>()
        / data.train.len() as f64;
    // Agreement with gold on the pairs gold can tell apart (a gold tie has no right label).
    let distinct = data.train.iter().filter(|p| p.gold_chosen != p.gold_rejected).count();
    let agree = data.train.iter().filter(|p| p.gold_chosen > p.gold_rejected).count() as f64
        / distinct.max(1) as f64;
    let ties = if distinct < data.train.len() {
        format!(", {} gold ties", data.train.len() - distinct)
    } else {
        String::new()
    };
    summary.number("prefs", "label_agreement_pct", 100.0 * agree);
    if gap.is_nan() {
        summary.add(
            "prefs",
            "pairs",
            format!(
                "{} train, {} val (no gold reward to compare the labels with)",
                data.train.len(),
                data.val.len()
            ),
        );
    } else {
        summary.add("prefs", "pairs", format!("{} train, {} val (mean gold gap {gap:.3}, labels agree with gold on {:.1}% of the pairs of distinct gold{ties})", data.train.len(), data.val.len(), 100.0 * agree));
    }
    Ok((data, stage_compute(&dir)))
}

/// The reference log-probs of a split's pairs: (chosen, rejected), `[N]` each.
pub type RefLogps = (Tensor, Tensor);

/// The reward model's starting weights: `reward.init`'s checkpoint, pi_SFT, or an SFT model
/// of the reward model's own size.
fn init_reward(
    sc: &Scenario,
    world: &dyn TextWorld,
    sft_vs: &nn::VarStore,
    vs: &nn::VarStore,
    opts: &RunOptions,
    summary: &mut Summary,
) -> Result<()> {
    if let Some(init) = folders::own_reward_checkpoint(sc) {
        let head = load_checkpoint_into(&init.dir, &sc.reward_model, vs)?;
        summary.add(
            "reward",
            "initialised from",
            format!(
                "{} ({})",
                init.dir.display(),
                if head { "with its score head" } else { "a new head" }
            ),
        );
    } else if sc.reward_model == sc.model {
        copy_weights(vs, sft_vs)?;
    } else {
        // A reward model of another size: its trunk is an SFT model of that size.
        let rm_sc = Scenario { model: sc.reward_model.clone(), ..sc.clone() };
        let (trunk_vs, _) = sft_stage(
            &rm_sc,
            world,
            opts,
            &mut Metrics::default(),
            &mut super::Summary::default(),
        )?;
        copy_weights(vs, &trunk_vs)?;
    }
    Ok(())
}

/// The Bradley-Terry reward model, initialised from pi_SFT, cached; with the compute it took.
pub fn reward_stage(
    sc: &Scenario,
    world: &dyn TextWorld,
    sft_vs: &nn::VarStore,
    (train, val, val_pairs): (&PairTensors, &PairTensors, &[data::Pair]),
    opts: &RunOptions,
    metrics: &mut Metrics,
    summary: &mut Summary,
) -> Result<(nn::VarStore, reward::RewardModel, Work)> {
    let dir = stage_dir(sc, opts, "reward", &reward_key(sc));
    let _lock = folders::lock_stage(sc, opts, &dir)?;
    let ckpt = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.csv");
    let fresh = || {
        let vs = nn::VarStore::new(opts.device);
        tch::manual_seed(derive_seed(sc.seed, "reward/init") as i64);
        let rm = reward::RewardModel::new(&vs.root(), &sc.reward_model);
        (vs, rm)
    };
    let (mut vs, mut rm) = fresh();
    let finished = ckpt.exists() && metrics_path.exists();
    let cached = read_finished(sc, opts, &dir, finished, || {
        model::load_checkpoint(&mut vs, &ckpt)?;
        Metrics::read(&metrics_path)
    })?;
    if let Some(m) = cached {
        let best = m
            .rows
            .iter()
            .filter(|r| r.metric == "reward/val/accuracy")
            .map(|r| r.value)
            .fold(f64::NEG_INFINITY, f64::max);
        summary.add("reward", "val accuracy (best epoch)", format!("{best:.4} (cached)"));
        summary.number("reward", "val_accuracy", best);
        metrics.extend(m);
        return Ok((vs, rm, stage_compute(&dir)));
    }
    if finished {
        (vs, rm) = fresh();
    }
    let _stage = crate::profile::enter_stage("reward", "", sc.seed, "train");
    init_reward(sc, world, sft_vs, &vs, opts, summary)?;
    // The reward model's own time (a trunk of another size keeps its own in its SFT folder).
    let started = std::time::Instant::now();
    let (m, (acc, epoch)) = match &sc.reward.classifier {
        Some(c) => {
            summary.add("reward", "proxy", format!("the frozen judge {} (nothing trained; the critic starts from the reward model's starting weights)", c.init));
            frozen_proxy(sc, world, val_pairs)?
        }
        None => {
            let pb = progress(
                opts.progress,
                reward::total_steps(train.len(), &sc.reward) as u64,
                Tag::stage(sc, "reward"),
            );
            let mut t = Trainer::new("reward", "", sc.seed, 1)
                .without_resume("the SFT checkpoint (the reward model restarts from it)")
                .with_faults(sc.faults.clone())
                .on_step(|_, _| pb.inc(1));
            let report = reward::train(&rm, &vs, train, val, &sc.reward, &mut t)?;
            pb.finish_and_clear();
            (t.metrics, (report.best_val_acc, report.best_epoch))
        }
    };
    let work = save_stage_compute(&dir, "reward", sc.seed)?;
    model::save_checkpoint(&vs, &ckpt)?;
    export::write_card(&dir, &sc.reward_model, world.vocab())?;
    save_stage_wall(&dir, "reward", sc.seed, started)?;
    write_atomic(&metrics_path, m.to_csv().as_bytes())?;
    summary.add("reward", "val accuracy (best epoch)", format!("{acc:.4} (epoch {epoch})"));
    summary.number("reward", "val_accuracy", acc);
    metrics.extend(m);
    Ok((vs, rm, work))
}

/// `[reward.classifier]`'s judge, where there is one (opened when the scenario was checked;
/// shared by the configuration's copies).
pub(super) fn proxy_judge(
    sc: &Scenario,
    world: &dyn TextWorld,
) -> Result<Option<std::sync::Arc<crate::model::judge::TextJudge>>> {
    let Some(c) = &sc.reward.classifier else { return Ok(None) };
    let judge = c.open("reward.classifier", &crate::world::text_sample(world.vocab()));
    Ok(Some(judge.map_err(|e| anyhow::anyhow!("{}: {} (fix: {})", e.key, e.problem, e.fix))?))
}

/// `[reward.classifier]`: nothing to train; the frozen judge's accuracy and loss on the
/// validation pairs, logged as the reward model's at epoch 0.
fn frozen_proxy(
    sc: &Scenario,
    world: &dyn TextWorld,
    val_pairs: &[data::Pair],
) -> Result<(Metrics, (f64, usize))> {
    let judge = proxy_judge(sc, world)?.expect("a [reward.classifier]");
    let (acc, loss) = reward::judge_accuracy(&judge, world.vocab(), val_pairs);
    let mut m = Metrics::default();
    m.push("reward", "", sc.seed, 0, "reward/val/accuracy", acc);
    m.push("reward", "", sc.seed, 0, "reward/val/loss", loss);
    Ok((m, (acc, 0)))
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
) -> Result<(RefLogps, RefLogps, Work)> {
    let dir = stage_dir(sc, opts, "reference", &reference_key(sc, tch::get_num_threads()));
    let _lock = folders::lock_stage(sc, opts, &dir)?;
    let path = dir.join("logps.safetensors");
    let names = ["train_chosen", "train_rejected", "val_chosen", "val_rejected"];
    let cached = read_finished(sc, opts, &dir, path.exists(), || {
        let _p = crate::profile::span("checkpoint_io");
        let read = Tensor::read_safetensors(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let get = |name: &str| {
            read.iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.to_device(opts.device))
                .with_context(|| format!("{} lacks {name}", path.display()))
        };
        let (tc, tr, vc, vr) = (get(names[0])?, get(names[1])?, get(names[2])?, get(names[3])?);
        anyhow::ensure!(
            tc.size() == [train.len() as i64] && vc.size() == [val.len() as i64],
            "{} holds {:?} and {:?} log-probs for {} and {} pairs",
            path.display(),
            tc.size(),
            vc.size(),
            train.len(),
            val.len()
        );
        Ok(((tc, tr), (vc, vr)))
    })?;
    if let Some((t, v)) = cached {
        return Ok((t, v, stage_compute(&dir)));
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
    /// The reward model's weights (trained, or its starting weights beside a frozen
    /// `[reward.classifier]`): PPO's critic starts from them.
    pub rm_vs: &'a nn::VarStore,
    /// What the methods optimise: the trained reward model or the frozen judge.
    pub proxy: reward::Proxy<'a>,
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
        Some(s.proxy),
        Some((s.val, s.val_ref)),
        (sc.eval.samples_per_prompt, sc.eval.selection_fraction),
        eval_settings(sc),
        derive_seed(sc.seed, "eval/sampling") as i64,
    )
}

/// pi_SFT's evaluation, which is also every method's step 0 (each starts as a copy of pi_SFT
/// and samples with the same seed: the same bytes); cached per torch thread count, like the
/// reference log-probs, so each cell of a sweep reads it instead of evaluating again.
pub(super) fn sft_evaluation(
    sc: &Scenario,
    s: &Shared,
    ev: &Evaluator,
    opts: &RunOptions,
) -> Result<Vec<(String, f64)>> {
    let dir = stage_dir(sc, opts, "eval0", &eval0_key(sc, tch::get_num_threads()));
    let _lock = folders::lock_stage(sc, opts, &dir)?;
    let path = dir.join("eval.csv");
    if let Some(m) = read_finished(sc, opts, &dir, path.exists(), || Metrics::read(&path))? {
        return Ok(m.rows.into_iter().map(|r| (r.metric, r.value)).collect());
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
pub(super) fn shifted_sweep(
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
            evals.push(name, setting, sc.seed, step, &k.replacen("eval_t", "shift_t", 1), v);
        }
    }
}

/// The final evaluation of a policy at each of `[eval] temperatures` (`eval_t{T}/...`).
pub(super) fn temperature_sweep(
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

/// SFT's validation NLL beside the true process's, where the world has one (a dataset does not).
fn val_nll_line(val_nll: f64, true_nll: f64) -> String {
    if true_nll.is_finite() {
        format!("{val_nll:.4} (true process {true_nll:.4}, ratio {:.4})", val_nll / true_nll)
    } else {
        format!("{val_nll:.4} (no true process in this world)")
    }
}
