//! `alignlab run`'s sweep: every cell of every seed (with per-seed top-ups of a calibrated
//! grid), then eval.csv, metrics.csv and timing.csv, and the summary with the method table
//! (written by the protocol, which adds its own rows).

use super::{folders, method_stage};
use anyhow::Result;
use std::path::Path;

use super::calibrate;
use super::cells::{pending_cells, profile_rows, run_pending, Cell, CellsProfile, RunsDone};
use super::ledger::{compute_totals, Ledger, RunsWork};
use super::options::RunOptions;
use super::scenario::{self, Override, Scenario};
use super::shared::with_shared;
use super::stages;
use super::summary::Summary;
use crate::log::{write_atomic, Metrics, Row};

/// The per-seed top-ups of a calibrated sweep: the calibration's records, and how to load the
/// scenario with extra overrides (`[sweep] seed_runs`).
pub struct TopUp<'a> {
    pub records: &'a [calibrate::CalibrationRecord],
    pub load: &'a dyn Fn(&[Override]) -> Result<Scenario>,
}

/// `alignlab run`: every stage of every seed, then results, tables and a summary. With
/// `jobs > 1` the method runs go to child processes first; either way a failing method run is
/// reported and the others go on.
pub fn run(sc: &Scenario, opts: &RunOptions, top_up: Option<TopUp>) -> Result<(Summary, RunsWork)> {
    let mut summary = Summary::default();
    let mut metrics = Metrics::default();
    let mut evals = Metrics::default();
    let t0 = std::time::Instant::now();
    let mut failed: Vec<Cell> = Vec::new();
    let mut cells = CellsProfile::default();
    let (mut sc, mut opts) = (sc.clone(), opts.clone());
    let top_up = top_up.filter(|_| sc.top_up_rounds > 0);
    let pending = pending_cells(&sc, &opts);
    // The sweep's cells; the top-ups are counted apart.
    let total: usize = sc
        .seeds
        .iter()
        .map(|&s| sc.with_seed(s).methods.len() + usize::from(sc.best_of_n.is_some()))
        .sum();
    let done = RunsDone::of(total, pending.len());
    // The run's ETA over the pending cells' estimated work (`run_cells` restarts it over its own).
    super::progress::start_run_clock(super::cells::cells_cost(&sc, &pending));
    if opts.jobs > 1 || top_up.is_some() {
        (failed, cells) = run_pending(&sc, &opts, pending)?;
    }
    // Per-seed top-ups, decided on the finished runs' final KLs (see `calibrate`).
    let topped = match &top_up {
        Some(t) => top_ups(t, (&mut sc, &mut opts), &mut failed, &mut cells)?,
        None => RunsDone::default(),
    };
    let (sc, opts) = (&sc, &opts);
    for &seed in &sc.seeds {
        collect(&sc.with_seed(seed), opts, &mut failed, (&mut metrics, &mut evals), &mut summary)?;
    }
    let out = opts.results_root.join(&sc.name);
    crate::profile::stage("report", "", 0, "checkpoint_io");
    write_atomic(&out.join("eval.csv"), evals.to_csv().as_bytes())?;
    let wall = t0.elapsed().as_secs_f64();
    summary.add("run", "wall time", format!("{wall:.1} s"));
    summary.number("run", "wall_s", wall);
    summary.add("invocation", "sweep runs", done.line());
    done.numbers(&mut summary, "sweep");
    if top_up.is_some() {
        top_up_rows(sc, topped, &mut summary);
    }
    let profile = sweep_profile(opts, wall, cells, sc.model.precision.kind());
    summary.add("run", "precision", precision_line(sc.model.precision, opts.device));
    summary.add("run", "profile", profile_line(&profile));
    let gflop =
        profile.rows.iter().find(|r| r.method == "sweep" && r.metric == "profile/sweep/gflop");
    summary.number("run", "tflop", gflop.map_or(f64::NAN, |r| r.value / 1e3));
    compute_rows(&evals, &profile, &mut summary);
    // The cost ledger: what the reported runs cost when they ran, cached or not.
    let mut ledger = RunsWork::default();
    ledger.add(&evals);
    ledger.add_timing(&metrics);
    summary.add("run", "ledger", ledger.wall_line());
    ledger.wall_ledger().numbers(&mut summary, "run", "ledger");
    let shared = Ledger::of_seeds(sc, opts, &sc.seeds);
    summary.add("run", "shared ledger", shared.line("stages"));
    shared.numbers(&mut summary, "run", "shared");
    metrics.extend(profile);
    summary.add("run", "code", code_version());
    summary.number("run", "numerics", folders::NUMERICS as f64);
    summary.add("run", "results", out.display().to_string());
    write_results(&out, sc, &metrics)?;
    summary.table = method_table(&evals);
    summary.failed = failed
        .into_iter()
        .map(|(seed, i, e)| {
            let label = super::cells::cell_name(&sc.with_seed(seed), i);
            format!("{label} (seed {seed}): {e}")
        })
        .collect();
    Ok((summary, ledger))
}

/// The top-ups' runs and what they were for.
fn top_up_rows(sc: &Scenario, topped: RunsDone, summary: &mut Summary) {
    summary.add("invocation", "top-up runs", topped.line());
    topped.numbers(summary, "top-up");
    let misses = sc
        .seed_runs
        .iter()
        .map(|(r, _)| (r.table.clone(), r.seed, r.budget.to_bits()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    summary.add("protocol", "top-ups", format!("{} run(s) of one seed for {misses} (method, budget, seed) whose calibrated run landed more than {:.0}% from the budget; at most {} round(s), chosen on the seed's final KLs only", sc.seed_runs.len(), 100.0 * calibrate::TOLERANCE, sc.top_up_rounds));
}

/// The top-up rounds of a calibrated sweep: each round adds a run of one seed where its
/// calibrated run missed a budget (`[sweep] seed_runs`), reloads the scenario with them and runs
/// only the new cells. Returns how many ran and how many were found cached.
fn top_ups(
    t: &TopUp,
    (sc, opts): (&mut Scenario, &mut RunOptions),
    failed: &mut Vec<Cell>,
    cells: &mut CellsProfile,
) -> Result<RunsDone> {
    let mut topped = RunsDone::default();
    let base = opts.clone();
    let mut n_new = 0;
    let mut added: Vec<scenario::SeedRun> = sc.seed_runs.iter().map(|r| r.0.clone()).collect();
    for round in 1..=sc.top_up_rounds {
        let new = calibrate::top_ups(sc, opts, t.records);
        if new.is_empty() {
            break;
        }
        let note = format!(
            "top-up round {round}: {}",
            new.iter()
                .map(|r| format!(
                    "{} {} (budget {}) on seed {}",
                    r.table, r.value, r.budget, r.seed
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        opts.progress.note(&sc.name, None, &note);
        n_new += new.len();
        added.extend(new);
        let set = calibrate::seed_runs_override(&added);
        *sc = (t.load)(std::slice::from_ref(&set))?;
        *opts = base.with_overrides(&[set]);
        // Only the new runs: a failed cell of the grid is not retried here.
        let pending: Vec<_> = pending_cells(sc, opts)
            .into_iter()
            .filter(|(seed, i, _)| {
                *i >= sc.n_shared
                    && *i < sc.with_seed(*seed).methods.len()
                    && !failed.iter().any(|f| f.0 == *seed && f.1 == *i)
            })
            .collect();
        topped.ran += pending.len();
        let (f, c) = run_pending(sc, opts, pending)?;
        failed.extend(f);
        cells.rows.extend(c.rows);
        cells.idle_s += c.idle_s;
    }
    topped.cached = n_new.saturating_sub(topped.ran);
    Ok(topped)
}

/// One seed's results: its shared stages, pi_SFT's evaluation, and every method run and
/// Best-of-N read from its folder (or run here, with one job), into `metrics` and `evals`; a run
/// that fails is added to `failed` and the others go on.
fn collect(
    s: &Scenario,
    opts: &RunOptions,
    failed: &mut Vec<Cell>,
    (metrics, evals): (&mut Metrics, &mut Metrics),
    summary: &mut Summary,
) -> Result<()> {
    let seed = s.seed;
    with_shared(s, opts, metrics, summary, |shared, metrics, _| {
        stages::eval_sft(s, shared, opts, evals)?;
        for (i, method) in s.methods.iter().enumerate() {
            if failed.iter().any(|f| f.0 == seed && f.1 == i) {
                continue;
            }
            let pending = !folders::method_done(s, method, opts);
            if let Err(e) = method_stage::method_stage(s, method, shared, opts, metrics, evals) {
                eprintln!("error: {e:#}");
                failed.push((seed, i, format!("{e:#}")));
            } else if pending {
                super::progress::cell_finished(super::cells::cell_cost(s, i));
            }
        }
        if let Some(grid) = &s.best_of_n {
            if !failed.iter().any(|f| f.0 == seed && f.1 == s.methods.len()) {
                if let Err(e) = method_stage::best_of_n_stage(s, grid, shared, opts, metrics, evals)
                {
                    failed.push((seed, s.methods.len(), format!("{e:#}")));
                }
            }
        }
        Ok(())
    })
}

/// The summary's compute rows: per method, the mean work of a run and its wall time in this
/// invocation (runs found cached did no work in it).
fn compute_rows(evals: &Metrics, profile: &Metrics, summary: &mut Summary) {
    for (m, n, v) in compute_totals(evals) {
        // Runs found cached did no work in this invocation and have no wall time in it.
        // A run is a (setting, seed); Best-of-N's points of a seed are one stage.
        let unit = |setting: &str, seed: u64| {
            if m == "best_of_n" {
                (String::new(), seed)
            } else {
                (setting.to_string(), seed)
            }
        };
        let rows: Vec<_> = profile
            .rows
            .iter()
            .filter(|r| r.method == m && r.metric.ends_with("/wall_s"))
            .collect();
        let count = |keys: Vec<(String, u64)>| {
            keys.into_iter().collect::<std::collections::BTreeSet<_>>().len()
        };
        let ran = count(rows.iter().map(|r| unit(&r.setting, r.seed)).collect());
        let units = count(
            evals.rows.iter().filter(|r| r.method == m).map(|r| unit(&r.setting, r.seed)).collect(),
        )
        .max(1);
        let per_run =
            rows.iter().map(|r| r.value).sum::<f64>() / ran.max(1) as f64 * units as f64 / n as f64;
        let wall = match ran {
            0 => "found cached, no wall time in this invocation".to_string(),
            r if r >= units => format!("{per_run:.1} s wall with its evaluations"),
            r => format!("{per_run:.1} s wall with its evaluations ({r} of {units} run in this invocation, the others found cached)"),
        };
        summary.add("compute", &m, format!("per run ({n} runs): {:.3} TFLOP, {:.0} tokens forward, {:.0} backward, {:.0} optimiser steps, {:.0} samples, {:.0} reward-model and {:.0} gold queries; {wall}", v[0] / 1e3, v[1], v[2], v[3], v[4], v[5], v[6]));
    }
}

/// What the matrix products ran in, and on which units.
fn precision_line(p: crate::model::gpt::Precision, device: tch::Device) -> String {
    if p.is_fp32() {
        return "fp32".into();
    }
    match (device, crate::model::gpt::cpu_bf16_units()) {
        (tch::Device::Cpu, Some(units)) => format!("bf16 on the CPU's {units} units"),
        (tch::Device::Cpu, None) => "bf16, emulated (the CPU has no bfloat16 units)".into(),
        _ => "bf16 on the GPU".into(),
    }
}

/// The sweep's profile: this process's stages, the cells', and the sweep's totals (method
/// `sweep`): wall and CPU time, idle job slots, model FLOPs, the matmul peak measured now, and
/// the FLOP utilisation (FLOPs / (wall x peak)), the peak that of the matrix products' element
/// type `kind`.
fn sweep_profile(opts: &RunOptions, wall: f64, cells: CellsProfile, kind: tch::Kind) -> Metrics {
    let mut m = profile_rows();
    m.extend(cells.rows);
    let sum = |suffix: &str| {
        m.rows
            .iter()
            .filter(|r| r.metric.starts_with("profile/") && r.metric.ends_with(suffix))
            .map(|r| r.value)
            .sum::<f64>()
    };
    let (cpu, gflop) = (sum("/cpu_s"), sum("/gflop"));
    let peak = crate::profile::matmul_peak_of(kind, opts.device, true) / 1e9;
    for (k, v) in [
        ("wall_s", wall),
        ("cpu_s", cpu),
        ("idle_s", cells.idle_s),
        ("gflop", gflop),
        ("peak_gflops", peak),
        ("flop_utilisation", gflop / (wall * peak)),
        ("jobs", opts.jobs as f64),
        ("threads", opts.threads as f64),
    ] {
        m.push("sweep", "", 0, 0, &format!("profile/sweep/{k}"), v);
    }
    m
}

/// The summary's profile line: where the work went (wall seconds of every process by phase,
/// the coordinator's waiting left out), idle job slots, CPU time and FLOP utilisation.
fn profile_line(m: &Metrics) -> String {
    let get = |k: &str| {
        m.rows
            .iter()
            .find(|r| r.method == "sweep" && r.metric == format!("profile/sweep/{k}"))
            .map_or(f64::NAN, |r| r.value)
    };
    let phases = crate::profile::by_phase(
        m.rows.iter().filter(|r| r.method != "sweep" && r.metric.ends_with("/wall_s")).filter_map(
            |r| {
                let phase = r.metric.strip_prefix("profile/")?.strip_suffix("/wall_s")?;
                Some((phase, crate::profile::Cost { wall_s: r.value, ..Default::default() }))
            },
        ),
    );
    let work: f64 = phases.iter().filter(|(p, _)| *p != "wait").map(|(_, c)| c.wall_s).sum();
    let parts: Vec<String> = phases
        .iter()
        .filter(|(p, c)| *p != "wait" && c.wall_s >= 0.005 * work)
        .map(|(p, c)| format!("{p} {:.0}%", 100.0 * c.wall_s / work))
        .collect();
    let idle = get("idle_s");
    let idle = if idle > 0.0 { format!("; idle job slots {idle:.0} s") } else { String::new() };
    format!("work {work:.0} s: {}{idle}; CPU {:.0} s; {:.1} TFLOP, FLOP utilisation {:.1}% of {:.0} GFLOP/s", parts.join(", "), get("cpu_s"), get("gflop") / 1e3, 100.0 * get("flop_utilisation"), get("peak_gflops"))
}

/// Which code produced a result: crate version, commit, numerics version of the stages.
pub fn code_version() -> String {
    format!(
        "alignlab {} (commit {}), numerics {}",
        env!("CARGO_PKG_VERSION"),
        env!("ALIGNLAB_GIT_COMMIT"),
        folders::NUMERICS
    )
}

/// One row per run at its last evaluation: method, setting, gold, KL, proxy, implicit accuracy.
pub fn method_table(evals: &Metrics) -> Vec<Vec<String>> {
    let mut keys: Vec<(String, String, u64)> = Vec::new();
    for r in &evals.rows {
        let k = (r.method.clone(), r.setting.clone(), r.seed);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let has_win = evals.rows.iter().any(|r| r.metric == "eval/winrate");
    let mut header: Vec<String> = [
        "method", "setting", "seed", "step", "gold", "KL", "KL k1", "proxy", "impl. acc", "fluency",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if has_win {
        header.push("win rate (95% CI)".into());
    }
    let mut table = vec![header];
    for (m, s, seed) in keys {
        let rows: Vec<&Row> = evals
            .rows
            .iter()
            .filter(|r| r.method == m && r.setting == s && r.seed == seed)
            .collect();
        let step = rows.iter().map(|r| r.step).max().unwrap_or(0);
        let get = |metric: &str| {
            rows.iter().find(|r| r.step == step && r.metric == metric).map(|r| r.value)
        };
        let pm = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{a:.4} ± {b:.4}"),
            (Some(a), None) => format!("{a:.4}"),
            _ => "-".into(),
        };
        table.push(vec![
            m.clone(),
            if s.is_empty() { "-".into() } else { s.clone() },
            seed.to_string(),
            step.to_string(),
            pm(get("eval/gold"), get("eval/gold_ci")),
            if get("eval/kl_is_bound") == Some(1.0) {
                format!("<= {:.4} (bound)", get("eval/kl").unwrap_or(f64::NAN))
            } else {
                pm(get("eval/kl"), get("eval/kl_ci"))
            },
            pm(get("eval/kl_k1"), None),
            pm(get("eval/proxy"), None),
            pm(get("eval/implicit_acc"), None),
            pm(get("eval/fluency"), None),
        ]);
        if has_win {
            let cell = match (get("eval/winrate"), get("eval/winrate_lo"), get("eval/winrate_hi")) {
                (Some(w), Some(lo), Some(hi)) => format!("{w:.3} [{lo:.3}, {hi:.3}]"),
                _ => "-".into(),
            };
            table.last_mut().unwrap().push(cell);
        }
    }
    table
}

fn write_results(out: &Path, sc: &Scenario, metrics: &Metrics) -> Result<()> {
    write_atomic(&out.join("scenario.resolved.toml"), sc.resolved_toml.as_bytes())?;
    let (det, timing) = metrics.split_timing();
    write_atomic(&out.join("metrics.csv"), det.to_csv().as_bytes())?;
    write_atomic(&out.join("timing.csv"), timing.to_csv().as_bytes())?;
    Ok(())
}
