//! Equal tuning (`[tune]`): every trained method gets a grid of the same shape over its
//! optimisation settings, run on tuning seeds that are never reported, and keeps the one with
//! the best gold at the reference budget.
//!
//! - `[tune.<method>]` lists settings of the method's table (`lr`, `batch_size`; for PPO also
//!   `ppo_epochs`, `init_kl_coef`, `horizon`, ...); their product is its configurations, and
//!   every tuned table must vary as many settings with as many values each (the scenario
//!   refuses otherwise). The KL knob is not tuned: it is the sweep's grid (calibrated with
//!   `[sweep] budgets`, or as written); nor is the length (`steps`, `iterations`), whose
//!   configurations would nest.
//! - Configuration j of every table runs together, with the table's whole grid, on every
//!   tuning seed (cells, cached like any other).
//! - A configuration's score on a seed is the upper concave envelope of its runs' evaluations
//!   (every setting, every step, pi_SFT included) on the *selection* half of the prompts, read
//!   at `[tune] budget`; a method whose runs never reach the budget is read at the largest KL
//!   it reached (`reached` false). The configuration with the best mean score over the tuning
//!   seeds is frozen for the sweep (ties: the first listed).

use super::cells::PilotRunner;
use super::folders;
use anyhow::{Context, Result};

use super::scenario::{Override, Scenario};
use super::{Metrics, RunOptions};
use crate::stats::{at_budget, envelope};

/// One configuration of one method on one tuning seed.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TuningRecord {
    pub method: String,
    /// Its settings, `key=value` joined by spaces.
    pub config: String,
    pub seed: u64,
    /// Selection-half gold of the method's envelope at the reference budget.
    #[serde(with = "crate::log::float_text")]
    pub gold_sel: f64,
    #[serde(with = "crate::log::float_text")]
    pub budget: f64,
    /// Whether the runs reached the budget (else the envelope's value at their largest KL).
    pub reached: bool,
    /// Whether this configuration was frozen for the sweep.
    pub picked: bool,
}

impl Default for TuningRecord {
    fn default() -> Self {
        TuningRecord {
            method: String::new(),
            config: String::new(),
            seed: 0,
            gold_sel: f64::NAN,
            budget: f64::NAN,
            reached: false,
            picked: false,
        }
    }
}

/// The frozen configurations as overrides, and every configuration's scores.
pub struct Tuning {
    pub overrides: Vec<Override>,
    pub records: Vec<TuningRecord>,
    /// The tuning runs' work (every configuration on every tuning seed).
    pub work: super::RunsWork,
}

/// A configuration as `tuning.csv` names it: its settings, `key=value` joined by spaces.
fn label(overrides: &[Override]) -> String {
    overrides
        .iter()
        .map(|o| format!("{}={}", o.key.split_once('.').map_or(o.key.as_str(), |x| x.1), o.value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The overrides that make a scenario a pilot on `seeds`: those seeds only, no calibration, no
/// seed runs, no top-ups, no tuning of its own.
pub fn pilot_overrides(seeds: &[u64]) -> Vec<Override> {
    vec![
        Override::new("tune.seeds", toml::Value::Array(vec![])),
        Override::new("sweep.budgets", toml::Value::Array(vec![])),
        Override::new("sweep.seed_runs", toml::Value::Array(vec![])),
        Override::new("sweep.top_up_rounds", 0),
        Override::ints("sweep.seeds", &seeds.iter().map(|&s| s as i64).collect::<Vec<_>>()),
    ]
}

/// The selection-half envelope of (KL, gold) points at `budget`; past the largest KL reached,
/// the value there (and false).
pub fn score(points: &[(f64, f64)], budget: f64) -> (f64, bool) {
    let env = envelope(points);
    let Some(last) = env.last() else {
        return (f64::NAN, false);
    };
    if last.0 >= budget {
        (at_budget(&env, budget), true)
    } else {
        (env.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max), false)
    }
}

/// Tune `sc` (see the module's header). `load` reads the scenario with extra overrides;
/// `run_pilot` runs the listed tables' methods of a scenario loaded with the overrides given.
pub fn tune(
    sc: &Scenario,
    opts: &RunOptions,
    load: &dyn Fn(&[Override]) -> Result<Scenario>,
    run_pilot: PilotRunner,
) -> Result<Tuning> {
    let t = sc.tune.as_ref().context("the scenario has no [tune]")?;
    let n = t.tables[0].1.len();
    let base = pilot_overrides(&t.seeds);
    let names: Vec<String> = t.tables.iter().map(|x| x.0.clone()).collect();
    let mut records = Vec::new();
    let mut work = super::RunsWork::default();
    for j in 0..n {
        let mut ov = base.clone();
        for (_, configs) in &t.tables {
            ov.extend(configs[j].iter().cloned());
        }
        let tuning = load(&ov)?;
        let note = format!(
            "tuning configuration {}/{n}: {}",
            j + 1,
            t.tables.iter().map(|(_, c)| Override::args(&c[j])).collect::<Vec<_>>().join(", ")
        );
        opts.progress.note(&sc.name, None, &note);
        run_pilot(&tuning, &names, &ov)?;
        for (table, configs) in &t.tables {
            let config = label(&configs[j]);
            for &seed in &t.seeds {
                let s = tuning.with_seed(seed);
                let pts = selection_points(&s, table, opts, &mut work)?;
                let (gold_sel, reached) = score(&pts, t.budget);
                records.push(TuningRecord {
                    method: table.clone(),
                    config: config.clone(),
                    seed,
                    gold_sel,
                    budget: t.budget,
                    reached,
                    picked: false,
                });
            }
        }
    }
    // Freeze each table's best configuration by its mean over the tuning seeds.
    let mut overrides = Vec::new();
    for (table, configs) in &t.tables {
        let mine = |j: usize| {
            let config = label(&configs[j]);
            move |r: &&TuningRecord| r.method == *table && r.config == config
        };
        let mean = |j: usize| {
            let v: Vec<f64> = records.iter().filter(mine(j)).map(|r| r.gold_sel).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let best =
            (0..n).filter(|&j| mean(j).is_finite()).fold(None, |b: Option<usize>, j| match b {
                Some(k) if mean(k) >= mean(j) => Some(k),
                _ => Some(j),
            });
        let best = best.with_context(|| {
            format!("no configuration of {table} could be scored on the tuning seeds")
        })?;
        let picked = mine(best);
        for r in records.iter_mut() {
            r.picked |= picked(&&*r);
        }
        overrides.extend(configs[best].iter().cloned());
    }
    Ok(Tuning { overrides, records, work })
}

/// A tuning run's (KL, gold) points on the selection half of the prompts, every evaluation of
/// every run of `table` on this seed; their work goes into `work`.
fn selection_points(
    s: &Scenario,
    table: &str,
    opts: &RunOptions,
    work: &mut super::RunsWork,
) -> Result<Vec<(f64, f64)>> {
    let mut pts = Vec::new();
    for m in s.methods.iter().filter(|m| m.name() == table) {
        let path = folders::method_dir(s, m, opts).join("eval.csv");
        let e = Metrics::read(&path).with_context(|| {
            format!("the tuning run {} {} left no {}", m.name(), m.setting(), path.display())
        })?;
        work.add(&e);
        work.add_timing(&folders::run_timing(s, m, opts));
        let get = |step: usize, k: &str| {
            e.rows.iter().find(|r| r.step == step && r.metric == k).map(|r| r.value)
        };
        pts.extend(
            e.rows
                .iter()
                .filter(|r| r.metric == "eval/kl_sel")
                .filter_map(|r| Some((r.value, get(r.step, "eval/gold_sel")?))),
        );
    }
    Ok(pts)
}
