//! A method's stage and Best-of-N's: train from pi_SFT (or draw candidates), evaluate, and keep
//! the results in the run folder; a finished run is read back, a killed one resumes.

use anyhow::{Context, Result};
use tch::nn;

use super::folders::compute_rows;
use super::folders::{best_of_n_dir, cached_timing, method_dir, read_finished};
use super::folders::{run_wall_metric, shared_work};
use super::options::RunOptions;
use super::progress::{progress, Progress, Tag};
use super::run::{ResumeDir, Run};
use super::scenario::{Method, Scenario};
use super::stages::{eval_settings, evaluator, shifted_sweep, temperature_sweep, Shared};
use crate::algo::best_of_n;
use crate::algo::common::copy_weights;
use crate::draw::derive_seed;
use crate::eval::optimal as frontier;
use crate::log::{write_atomic, Metrics};
use crate::model::SampleSettings;
use crate::model::{self, Gpt};
use crate::profile::{add_work, stage_work, Work};

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
    let _lock = super::folders::lock_stage(sc, opts, &dir)?;
    let (metrics_path, eval_path) = (dir.join("metrics.csv"), dir.join("eval.csv"));
    let finished = metrics_path.exists() && eval_path.exists();
    let cached = read_finished(sc, opts, &dir, finished, || {
        let mut m = Metrics::read(&metrics_path)?;
        m.extend(cached_timing(&dir)?);
        Ok((m, Metrics::read(&eval_path)?))
    })?;
    if let Some((m, e)) = cached {
        metrics.extend(m);
        evals.extend(e);
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
        resume: ResumeDir { dir: dir.join("resume") },
        name: method.name(),
        setting: method.setting(),
        stream: method.stream_key(),
        metrics: Metrics::default(),
        evals: Default::default(),
        deps: shared_work(&s.work, method.uses_shared()),
        compute_base: Default::default(),
        keep: method.keep(&sc.train),
        best: dir.join("best").join("policy.safetensors"),
    };
    let (last, metrics_logged) = method
        .train(&run, &policy, &mut vs)
        .with_context(|| format!("method {} {}", run.name, run.setting))?;
    run.metrics = metrics_logged;
    super::export::write_card(&dir, &sc.model, s.world.vocab())?;
    let mut e = run.evals.take();
    let kept = kept_checkpoint(&run, last, &mut vs, &mut e)?;
    temperature_sweep(sc, &run.ev, &policy, (&run.name, &run.setting, kept), &mut e);
    shifted_sweep(sc, s, &policy, (&run.name, &run.setting, kept), &mut e);
    run.metrics.push(
        &run.name,
        &run.setting,
        sc.seed,
        0,
        &run_wall_metric(&run.name),
        started.elapsed().as_secs_f64(),
    );
    finish_method(&dir, &vs, std::mem::take(&mut run.metrics), e, metrics, evals)?;
    let _ = std::fs::remove_dir_all(dir.join("best"));
    Ok(())
}

/// The kept checkpoint's step: the last, or the best evaluation by the keep rule (its weights
/// loaded into `vs`, marked `eval/kept` at its step in `e`); the final-only evaluations and the
/// saved model are its.
fn kept_checkpoint(
    run: &Run,
    last: usize,
    vs: &mut nn::VarStore,
    e: &mut Metrics,
) -> Result<usize> {
    let Some(metric) = run.keep.metric() else {
        return Ok(last);
    };
    let best = e
        .rows
        .iter()
        .filter(|r| r.method == run.name && r.setting == run.setting && r.metric == metric)
        .fold(None, |b: Option<(usize, f64)>, r| match b {
            Some((_, v)) if v >= r.value => b,
            _ => Some((r.step, r.value)),
        });
    let (step, _) = best.with_context(|| {
        format!("method {} {}: no {metric} to keep a checkpoint by", run.name, run.setting)
    })?;
    model::load_checkpoint(vs, &run.best)?;
    e.push(&run.name, &run.setting, run.sc.seed, step, "eval/kept", 1.0);
    Ok(step)
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
    let _lock = super::folders::lock_stage(sc, opts, &dir)?;
    let eval_path = dir.join("eval.csv");
    let cached = read_finished(sc, opts, &dir, eval_path.exists(), || {
        Ok((Metrics::read(&eval_path)?, cached_timing(&dir)?))
    })?;
    if let Some((e, m)) = cached {
        evals.extend(e);
        metrics.extend(m);
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
    let pb = progress(opts.progress, 1 + sc.eval.temperatures.len() as u64, Tag::stage(sc, "bon"));
    pb.set_message(format!("{} candidates", rows.len() * n_max));
    let seed = derive_seed(sc.seed, "best_of_n/sampling") as i64;
    let (proxy, gold) = best_of_n::score_candidates(
        s.world,
        s.sft,
        s.proxy,
        &rows,
        n_max,
        &eval_settings(sc),
        seed,
    );
    // Its compute at N: the preference data and the reward model, and N of the n_max candidates
    // drawn and scored per row.
    let candidates = stage_work(&("best_of_n".to_string(), String::new(), sc.seed));
    let deps = shared_work(&s.work, (true, true, false));
    pb.inc(1);
    let n_sel =
        crate::eval::selection_prompts(s.world.eval_prompts().len(), sc.eval.selection_fraction)
            * sc.eval.samples_per_prompt;
    let mut e = Metrics::default();
    let bon = Bon { sc, s, grid, rows: &rows, seed, n_sel, ref_gold: ref_gold.as_deref() };
    points(&bon, (&proxy, &gold), (&deps, &candidates), &mut e);
    at_temperatures(&bon, &pb, &mut e);
    pb.finish_and_clear();
    optimal_points(&bon, &gold, &mut e);
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

/// Best-of-N's points at the evaluation temperature: per N, the gold and proxy of the picked
/// candidates, the analytic KL bound, the compute (the shared stages `deps` and N of the
/// `n_max` candidates), win rates and the two halves.
fn points(
    b: &Bon,
    (proxy, gold): (&[Vec<f64>], &[Vec<f64>]),
    (deps, candidates): (&Work, &Work),
    e: &mut Metrics,
) {
    let n_max = *b.grid.iter().max().expect("a non-empty grid");
    for p in best_of_n::evaluate(proxy, gold, b.grid, b.ref_gold) {
        let setting = format!("n={}", p.n);
        let mut put = |k: &str, v: f64| e.push("best_of_n", &setting, b.sc.seed, 0, k, v);
        put("eval/gold", p.gold.mean);
        put("eval/gold_ci", p.gold.ci95);
        put("eval/kl", p.kl_bound);
        put("eval/kl_is_bound", 1.0);
        put("eval/proxy", p.proxy.mean);
        put("eval/gold_oracle", p.gold_oracle.mean);
        put("eval/gold_oracle_ci", p.gold_oracle.ci95);
        let share = p.n as f64 / n_max as f64;
        let mut work = *deps;
        add_work(&mut work, candidates, share);
        for (k, v) in compute_rows(&work) {
            put(&k, v);
        }
        for (k, v) in p.winrate.map(crate::eval::winrate_metrics).into_iter().flatten() {
            put(k, v);
        }
        // The analytic KL bound holds on either half.
        let kl = vec![p.kl_bound; p.picked_gold.len()];
        for (k, v) in crate::eval::split_metrics(b.n_sel, &p.picked_gold, Some(&kl), b.ref_gold) {
            put(&k, v);
        }
    }
}

/// What Best-of-N's evaluations share: the scenario, the shared stages, the grid of N, the
/// evaluation rows (each prompt `samples_per_prompt` times), the sampling seed, the selection
/// half's rows and the references' gold per row (where the world has references).
struct Bon<'a> {
    sc: &'a Scenario,
    s: &'a Shared<'a>,
    grid: &'a [usize],
    rows: &'a [Vec<i64>],
    seed: i64,
    n_sel: usize,
    ref_gold: Option<&'a [f64]>,
}

/// Best-of-N at each final-evaluation temperature: candidates drawn from pi_SFT at T.
fn at_temperatures(b: &Bon, pb: &Progress, e: &mut Metrics) {
    let n_max = *b.grid.iter().max().expect("a non-empty grid");
    for &t in &b.sc.eval.temperatures {
        let settings = SampleSettings { temperature: t, ..eval_settings(b.sc) };
        // Greedy decoding gives one candidate whatever N is: draw it once.
        let n_draw = if t == 0.0 { 1 } else { n_max };
        let (mut proxy_t, mut gold_t) = best_of_n::score_candidates(
            b.s.world, b.s.sft, b.s.proxy, b.rows, n_draw, &settings, b.seed,
        );
        if n_draw == 1 {
            proxy_t.iter_mut().chain(gold_t.iter_mut()).for_each(|c| *c = vec![c[0]; n_max]);
        }
        pb.inc(1);
        for p in best_of_n::evaluate(&proxy_t, &gold_t, b.grid, b.ref_gold) {
            let setting = format!("n={}", p.n);
            let mut put = |k: &str, v: f64| {
                e.push("best_of_n", &setting, b.sc.seed, 0, &crate::eval::at_temperature(k, t), v)
            };
            put("eval/gold", p.gold.mean);
            put("eval/gold_ci", p.gold.ci95);
            put("eval/proxy", p.proxy.mean);
            for (k, v) in p.winrate.map(crate::eval::winrate_metrics).into_iter().flatten() {
                put(k, v);
            }
            for (k, v) in crate::eval::split_metrics(b.n_sel, &p.picked_gold, None, b.ref_gold) {
                put(&k, v);
            }
        }
    }
}

/// An inner bound of the optimal frontier from the candidates' gold (see below), each beta
/// a point, on all prompts and on each half.
fn optimal_points(b: &Bon, gold: &[Vec<f64>], e: &mut Metrics) {
    // An inner bound of the optimal frontier: pi* proportional to pi_SFT exp(r / beta) on the
    // first `optimal_samples` candidates of each prompt (its rows pooled), by self-normalised
    // importance sampling of the gold reward; a beta is kept while every prompt's effective
    // sample size is at least `optimal_min_ess` (past that the point reflects the sample).
    let spp = b.sc.eval.samples_per_prompt;
    let pooled: Vec<Vec<f64>> = gold
        .chunks(spp)
        .map(|rows| {
            rows.iter()
                .flatten()
                .copied()
                .take(b.sc.eval.optimal_samples.unwrap_or(usize::MAX))
                .collect()
        })
        .collect();
    let n_sel_prompts = b.n_sel / spp;
    let betas = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0];
    let span = crate::profile::span("frontier");
    let (all, sel, test) = (
        frontier::optimal_frontier(&pooled, &betas),
        frontier::optimal_frontier(&pooled[..n_sel_prompts], &betas),
        frontier::optimal_frontier(&pooled[n_sel_prompts..], &betas),
    );
    for ((p, ps), pt) in all.iter().zip(&sel).zip(&test) {
        if p.ess_min < b.sc.eval.optimal_min_ess {
            continue;
        }
        let setting = format!("beta={}", p.beta);
        let mut put = |k: &str, v: f64| e.push("optimal", &setting, b.sc.seed, 0, k, v);
        put("eval/gold", p.gold);
        put("eval/kl", p.kl);
        put("eval/ess", p.ess_mean);
        put("eval/ess_min", p.ess_min);
        put("eval/is_samples", b.sc.eval.optimal_samples.unwrap_or(0) as f64);
        put("eval/gold_sel", ps.gold);
        put("eval/kl_sel", ps.kl);
        put("eval/gold_test", pt.gold);
        put("eval/kl_test", pt.kl);
    }
    drop(span);
}
