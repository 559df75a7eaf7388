//! `alignlab report RESULTS_DIR`: every table and plot of a results folder, from its CSVs alone.
//!
//! Reads `eval.csv` (and `metrics.csv`, `scenario.resolved.toml` when present) and writes:
//! - `frontier.csv`: per method, gold reward at fixed KL budgets, two frontiers:
//!   `selected` (which evaluation of which setting a method contributes at a budget is chosen on
//!   the selection half of the held-out prompts, the value is the test half's) and `final`
//!   (the final checkpoint of each setting only, chosen the same way); mean and 95% t-interval
//!   over the seeds that reached the budget, and the selection bias the split removed (the
//!   test half's own envelope minus the reported value, paired by seed). A seed has a value at a
//!   budget only if it evaluated a point at or past it: nothing is extrapolated;
//! - `paired.csv`: the scenario's pairs of methods, compared paired by seed (see [`paired`]);
//! - `kl_estimators.csv`: k1, k2 and k3 against the exact KL per method (see [`estimators`]);
//! - `fits.csv`: Gao et al.'s fits of gold and proxy reward gain against d = sqrt(KL), for
//!   Best-of-N (R = d(a - b d)) and PPO (R = d(a - b log d)), pooled and per seed (see
//!   [`overopt`], which also tests b > 0 over seeds and PPO's gold peak and decline);
//! - with `calibration.csv` (calibrated grids), where each calibrated run landed per seed (see
//!   [`calibration`]);
//! - with `tuning.csv` (equal tuning), each method's configurations and pick, and the spread of
//!   gold across them compared between methods (see [`tuning`]);
//! - `compute.csv`: gold at equal compute per method (see [`compute`]), where the runs log it;
//! - `report.md`: the final-evaluation table, the budget tables and the paired verdicts;
//!   `report.tex`: its tables in LaTeX (booktabs), see [`latex`];
//! - `frontier.{png,svg}`, `curves.{png,svg}`, `overoptimization.{png,svg}`;
//! - where the world has reference responses: `winrate.csv`, `winrate_temperature.{png,svg}`
//!   and `winrate_steps.{png,svg}` (see [`winrate`]).

pub mod calibration;
pub mod compute;
pub mod equivalence;
pub mod estimators;
pub mod frontier;
pub mod latex;
pub mod numbers;
pub mod overopt;
pub mod paired;
pub mod paper;
pub mod plot;
pub mod provenance;
pub mod tensorboard;
pub mod tuning;
pub mod winrate;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::experiment::{write_atomic, Metrics, Row};
use crate::log::csv_text;
use crate::stats::Paired;
use frontier::{mean_ci_t, same_sample_at_budget, selected_at_budget, SplitPoint};

/// KL budgets (nats) of the frontier table, beside a scenario's own (`[sweep] budgets`).
pub const BUDGETS: &[f64] = &[0.5, 1.0, 2.0, 4.0, 8.0];

/// The budgets a folder is reported at: [`BUDGETS`] and the ones its scenario calibrated its
/// grids to (`[sweep] budgets` of `scenario.resolved.toml`), in order.
pub fn folder_budgets(dir: &Path) -> Vec<f64> {
    let own: Vec<f64> = std::fs::read_to_string(dir.join("scenario.resolved.toml"))
        .ok()
        .and_then(|t| toml::from_str::<toml::Value>(&t).ok())
        .and_then(|v| v.get("sweep")?.get("budgets")?.as_array().cloned())
        .map(|a| {
            a.iter().filter_map(|x| x.as_float().or(x.as_integer().map(|i| i as f64))).collect()
        })
        .unwrap_or_default();
    let mut b: Vec<f64> = BUDGETS.iter().copied().chain(own).filter(|b| b.is_finite()).collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    b
}

/// One evaluation: a policy at a step of a run.
#[derive(Clone, Debug)]
pub struct Point {
    pub method: String,
    pub setting: String,
    pub seed: u64,
    pub step: usize,
    pub kl: f64,
    pub gold: f64,
    pub gold_ci: f64,
    pub proxy: f64,
    pub kl_is_bound: bool,
    /// Gold and KL on the selection half and the test half of the prompts (NaN in runs made
    /// before the split existed).
    pub gold_sel: f64,
    pub kl_sel: f64,
    pub gold_test: f64,
    pub kl_test: f64,
    /// The optimal frontier's samples per prompt (N), where recorded.
    pub is_samples: Option<f64>,
    /// The checkpoint its run kept (`[train] keep`), where the run chose one.
    pub kept: bool,
}

impl Point {
    /// The point on the two halves. A run from before the split is chosen and reported on all
    /// its prompts (the report says so: see [`has_split`]).
    pub fn split(&self) -> SplitPoint {
        if self.gold_sel.is_finite() && self.gold_test.is_finite() {
            SplitPoint {
                kl_sel: self.kl_sel,
                gold_sel: self.gold_sel,
                kl_test: self.kl_test,
                gold_test: self.gold_test,
            }
        } else {
            SplitPoint {
                kl_sel: self.kl,
                gold_sel: self.gold,
                kl_test: self.kl,
                gold_test: self.gold,
            }
        }
    }
}

/// Whether the evaluations carry the selection/test split.
pub fn has_split(points: &[Point]) -> bool {
    points.iter().any(|p| p.gold_sel.is_finite())
}

/// Every evaluation of `eval.csv`, in file order.
pub fn points(evals: &Metrics) -> Vec<Point> {
    let mut by: BTreeMap<(String, String, u64, usize), Vec<&Row>> = BTreeMap::new();
    let mut order = Vec::new();
    for r in &evals.rows {
        let k = (r.method.clone(), r.setting.clone(), r.seed, r.step);
        if !by.contains_key(&k) {
            order.push(k.clone());
        }
        by.entry(k).or_default().push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let rows = &by[&k];
            let get =
                |m: &str| rows.iter().find(|r| r.metric == m).map(|r| r.value).unwrap_or(f64::NAN);
            Point {
                method: k.0.clone(),
                setting: k.1.clone(),
                seed: k.2,
                step: k.3,
                kl: get("eval/kl"),
                gold: get("eval/gold"),
                gold_ci: get("eval/gold_ci"),
                proxy: get("eval/proxy"),
                kl_is_bound: get("eval/kl_is_bound") == 1.0,
                gold_sel: get("eval/gold_sel"),
                kl_sel: get("eval/kl_sel"),
                gold_test: get("eval/gold_test"),
                kl_test: get("eval/kl_test"),
                is_samples: Some(get("eval/is_samples")).filter(|v| v.is_finite()),
                kept: get("eval/kept") == 1.0,
            }
        })
        .collect()
}

pub use crate::stats::distinct;

/// Methods in order of first appearance.
pub fn methods(points: &[Point]) -> Vec<String> {
    distinct(points.iter().map(|p| p.method.clone()))
}

pub fn seeds(points: &[Point]) -> Vec<u64> {
    let mut s: Vec<u64> = points.iter().map(|p| p.seed).collect();
    s.sort();
    s.dedup();
    s
}

/// The SFT evaluation of a seed (the start of every method).
pub(crate) fn sft_point(points: &[Point], seed: u64) -> Option<&Point> {
    points.iter().find(|p| p.method == "sft" && p.seed == seed)
}

/// Which evaluations of a method form a frontier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Frontier {
    /// Every evaluation (each setting, each step): the checkpoint is a choice.
    Selected,
    /// The final checkpoint of each setting only.
    Final,
}

impl Frontier {
    pub fn name(self) -> &'static str {
        match self {
            Frontier::Selected => "selected",
            Frontier::Final => "final",
        }
    }
}

/// A method's evaluations in one seed, on both halves, with SFT's point at KL 0 (every method
/// starts there; not for the optimal frontier). Empty when the method did not run in that seed.
pub fn seed_points(points: &[Point], method: &str, seed: u64, which: Frontier) -> Vec<SplitPoint> {
    let mine: Vec<&Point> =
        points.iter().filter(|p| p.method == method && p.seed == seed).collect();
    // A setting's final checkpoint: the one its run kept, else its last evaluation.
    let last_step = |p: &Point| {
        let same = || mine.iter().filter(|q| q.setting == p.setting);
        same()
            .find(|q| q.kept)
            .map(|q| q.step)
            .unwrap_or_else(|| same().map(|q| q.step).max().unwrap_or(0))
    };
    let mut out: Vec<SplitPoint> = mine
        .iter()
        .filter(|p| which == Frontier::Selected || p.step == last_step(p))
        .map(|p| p.split())
        .collect();
    if out.is_empty() {
        return out;
    }
    if method != "optimal" {
        if let Some(s) = sft_point(points, seed) {
            let g = s.split();
            out.push(SplitPoint { kl_sel: 0.0, kl_test: 0.0, ..g });
        }
    }
    out
}

/// One row of `frontier.csv`: a method's values at a budget, per seed.
#[derive(Clone, Debug)]
pub struct FrontierRow {
    pub method: String,
    pub frontier: Frontier,
    pub budget: f64,
    /// Per seed: the reported (test gold, test KL) of the chosen policy, None if not reached.
    pub values: Vec<(u64, Option<(f64, f64)>)>,
    /// Per seed: the test half's own envelope at the budget (chosen and read on the same samples).
    pub same_sample: Vec<(u64, Option<f64>)>,
}

impl FrontierRow {
    pub fn reached(&self) -> usize {
        self.values.iter().filter(|v| v.1.is_some()).count()
    }

    pub fn all_reached(&self) -> bool {
        !self.values.is_empty() && self.reached() == self.values.len()
    }

    /// Mean and 95% t-interval of the reported gold over the seeds that reached the budget.
    pub fn gold(&self) -> (f64, f64) {
        mean_ci_t(&self.values.iter().filter_map(|v| v.1.map(|x| x.0)).collect::<Vec<_>>())
    }

    pub fn kl_test(&self) -> f64 {
        mean_ci_t(&self.values.iter().filter_map(|v| v.1.map(|x| x.1)).collect::<Vec<_>>()).0
    }

    /// The selection bias the split removed: same-sample value minus reported value, per seed.
    pub fn bias(&self) -> Option<Paired> {
        let d: Vec<f64> = self
            .values
            .iter()
            .zip(&self.same_sample)
            .filter_map(|(v, s)| Some(s.1? - v.1?.0))
            .collect();
        (!d.is_empty()).then(|| Paired::new(&d))
    }
}

/// Rows of `frontier.csv`: every method but SFT, both frontiers, every budget.
pub fn budget_table(points: &[Point], budgets: &[f64]) -> Vec<FrontierRow> {
    let mut out = Vec::new();
    for m in methods(points) {
        if m == "sft" {
            continue;
        }
        let seeds: Vec<u64> = seeds(points)
            .into_iter()
            .filter(|&s| points.iter().any(|p| p.method == m && p.seed == s))
            .collect();
        for which in [Frontier::Selected, Frontier::Final] {
            for &b in budgets {
                let per: Vec<(u64, Vec<SplitPoint>)> =
                    seeds.iter().map(|&s| (s, seed_points(points, &m, s, which))).collect();
                let values = per.iter().map(|(s, pts)| (*s, selected_at_budget(pts, b))).collect();
                let same_sample =
                    per.iter().map(|(s, pts)| (*s, same_sample_at_budget(pts, b))).collect();
                out.push(FrontierRow {
                    method: m.clone(),
                    frontier: which,
                    budget: b,
                    values,
                    same_sample,
                });
            }
        }
    }
    out
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "-".into()
    }
}

/// A table cell: mean ± interval when every seed reached the budget, else `-` and how many did.
pub fn budget_cell(r: &FrontierRow, digits: usize) -> String {
    let (mean, ci) = r.gold();
    if r.all_reached() {
        format!("{mean:.digits$} ± {ci:.digits$}")
    } else if r.reached() > 0 {
        format!("- ({}/{} seeds)", r.reached(), r.values.len())
    } else {
        "-".into()
    }
}

/// The budgets of a table, in order.
fn budgets_of(rows: &[FrontierRow]) -> Vec<f64> {
    let mut b: Vec<f64> = rows.iter().map(|r| r.budget).collect();
    b.sort_by(|a, b| a.total_cmp(b));
    b.dedup();
    b
}

/// A Markdown table of one frontier: method rows, budget columns, `cell` of each row.
fn budget_grid(
    rows: &[FrontierRow],
    which: Frontier,
    cell: &dyn Fn(&FrontierRow) -> String,
) -> String {
    let mut s = String::new();
    let budgets = budgets_of(rows);
    let _ = write!(s, "| method |");
    for b in &budgets {
        let _ = write!(s, " KL {b} |");
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(budgets.len()));
    for m in distinct(rows.iter().filter(|r| r.frontier == which).map(|r| r.method.clone())) {
        let _ = write!(s, "| {m} |");
        for b in &budgets {
            let c = rows
                .iter()
                .find(|r| r.method == m && r.frontier == which && r.budget == *b)
                .map(cell)
                .unwrap_or("-".into());
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    s
}

/// The gold reward of one frontier at each budget ([`budget_cell`]).
pub fn budget_markdown(rows: &[FrontierRow], which: Frontier) -> String {
    budget_grid(rows, which, &|r| budget_cell(r, 4))
}

/// The selection bias the split removed, per method and budget: mean ± 95% paired t-interval of
/// (same-sample value - reported value) over the seeds where both exist.
pub fn bias_markdown(rows: &[FrontierRow]) -> String {
    budget_grid(rows, Frontier::Selected, &|r| match r.bias() {
        Some(p) if p.ci95.is_finite() => format!("{:+.4} ± {:.4}", p.mean, p.ci95),
        Some(p) => format!("{:+.4}", p.mean),
        None => "-".into(),
    })
}

/// Markdown: the last evaluation of every run, the budget tables, the paired verdicts.
pub fn markdown(
    points: &[Point],
    budget_rows: &[FrontierRow],
    paired_rows: &[paired::PairedRow],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Last evaluation of every run (all held-out prompts)\n");
    let _ = writeln!(s, "| method | setting | seed | step | gold | KL |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let mut seen = Vec::new();
    for p in points {
        let k = (p.method.clone(), p.setting.clone(), p.seed);
        if seen.contains(&k) {
            continue;
        }
        seen.push(k);
        let last = points
            .iter()
            .filter(|q| q.method == p.method && q.setting == p.setting && q.seed == p.seed)
            .max_by_key(|q| q.step)
            .unwrap();
        let kl =
            if last.kl_is_bound { format!("<= {} (bound)", fmt(last.kl)) } else { fmt(last.kl) };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ± {} | {} |",
            last.method,
            if last.setting.is_empty() { "-" } else { &last.setting },
            last.seed,
            last.step,
            fmt(last.gold),
            fmt(last.gold_ci),
            kl
        );
    }
    let split_note = if has_split(points) {
        "chosen on the selection half of the held-out prompts, reported on the test half"
    } else {
        "these runs predate the selection/test split: chosen and reported on the same prompts"
    };
    let _ = writeln!(s, "\n## Gold reward at KL budgets (upper concave envelope per method, {split_note}; mean ± 95% t-interval over seeds; `-`: not reached by every seed, never extrapolated)\n");
    s.push_str(&budget_markdown(budget_rows, Frontier::Selected));
    let _ = writeln!(s, "\n## Final checkpoints only (each setting's last evaluation)\n");
    s.push_str(&budget_markdown(budget_rows, Frontier::Final));
    if has_split(points) {
        let _ = writeln!(s, "\n## Selection bias removed (test half's own envelope minus the reported value; mean ± 95% paired t-interval over seeds)\n");
        s.push_str(&bias_markdown(budget_rows));
    }
    if !paired_rows.is_empty() {
        s.push('\n');
        s.push_str(&paired::markdown(paired_rows));
    }
    s
}

/// `frontier.csv`.
/// One row of `frontier.csv`: a method's gold at a KL budget on one frontier, over seeds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct FrontierRecord {
    pub method: String,
    pub frontier: String,
    #[serde(with = "crate::log::float_text")]
    pub kl_budget: f64,
    #[serde(with = "crate::log::float_text")]
    pub gold_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub gold_ci95: f64,
    #[serde(with = "crate::log::float_text")]
    pub kl_test_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub same_sample_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub selection_bias_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub selection_bias_ci95: f64,
    pub seeds_reaching: usize,
    pub seeds: usize,
}

fn frontier_csv(rows: &[FrontierRow]) -> String {
    let records: Vec<FrontierRecord> = rows
        .iter()
        .map(|r| {
            let (gold_mean, gold_ci95) = r.gold();
            let same_sample_mean =
                mean_ci_t(&r.same_sample.iter().filter_map(|v| v.1).collect::<Vec<_>>()).0;
            let (selection_bias_mean, selection_bias_ci95) =
                r.bias().map(|p| (p.mean, p.ci95)).unwrap_or((f64::NAN, f64::NAN));
            FrontierRecord {
                method: r.method.clone(),
                frontier: r.frontier.name().to_string(),
                kl_budget: r.budget,
                gold_mean,
                gold_ci95,
                kl_test_mean: r.kl_test(),
                same_sample_mean,
                selection_bias_mean,
                selection_bias_ci95,
                seeds_reaching: r.reached(),
                seeds: r.values.len(),
            }
        })
        .collect();
    csv_text(&records)
}

/// The records of an optional results file (`calibration.csv`, `tuning.csv`): None when the
/// run did not write it, an error when it is there and does not read.
fn read_if_present<R: crate::log::Record>(path: &Path) -> Result<Option<Vec<R>>> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(crate::log::read_csv(path)?))
}

/// Regenerate every table and plot of `dir` from its CSVs. Returns the frontier plot's path.
pub fn report(dir: &Path) -> Result<PathBuf> {
    let eval_path = dir.join("eval.csv");
    if !eval_path.exists() {
        bail!("{} has no eval.csv; fix: pass a results folder written by `alignlab run` (e.g. results/sentiment)", dir.display());
    }
    let text = std::fs::read_to_string(&eval_path)
        .with_context(|| format!("cannot read {}", eval_path.display()))?;
    let evals = Metrics::from_csv(&text).with_context(|| {
        format!("corrupt {}; fix: rerun the scenario to rewrite it", eval_path.display())
    })?;
    let pts = points(&evals);
    if pts.is_empty() {
        bail!("{} has no evaluations; fix: rerun the scenario", eval_path.display());
    }
    let budget_rows = budget_table(&pts, &folder_budgets(dir));
    write_atomic(&dir.join("frontier.csv"), frontier_csv(&budget_rows).as_bytes())?;
    let pairs = paired::pairs(dir, &pts)?;
    let paired_rows = paired::compare(&pts, &evals, &pairs, &budget_rows);
    write_atomic(&dir.join("paired.csv"), paired::csv(&paired_rows).as_bytes())?;
    let fit_rows = overopt::fits(&pts);
    write_atomic(&dir.join("fits.csv"), csv_text(&overopt::records(&fit_rows)).as_bytes())?;
    let kl_rows = estimators::rows(&evals);
    if !kl_rows.is_empty() {
        write_atomic(&dir.join("kl_estimators.csv"), estimators::csv(&kl_rows).as_bytes())?;
        plot::kl_estimators(dir, &estimators::points(&evals))?;
    }
    let mut md = markdown(&pts, &budget_rows, &paired_rows);
    md.push_str(&overopt::markdown(&pts, &fit_rows));
    let cost_points = compute::cost_points(&evals, &pts);
    let cost = compute::table(&cost_points);
    if !cost.is_empty() {
        write_atomic(&dir.join("compute.csv"), csv_text(&cost).as_bytes())?;
    }
    md.push_str(&compute::markdown(&evals, &cost, &cost_points));
    if let Some(cal) = read_if_present(&dir.join("calibration.csv"))? {
        md.push_str(&calibration::markdown(&cal, &evals, &calibration::seed_runs(dir)?));
    }
    if let Some(t) = read_if_present(&dir.join("tuning.csv"))? {
        md.push_str(&tuning::markdown(&t));
    }
    let (by_temp, by_step) = (winrate::by_temperature(&evals), winrate::by_step(&evals));
    if !by_temp.is_empty() || !by_step.is_empty() {
        write_atomic(&dir.join("winrate.csv"), winrate::csv(&by_temp, &by_step).as_bytes())?;
        md.push('\n');
        md.push_str(&winrate::markdown(&by_temp));
        plot::winrates(dir, &by_temp, &by_step)?;
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    write_atomic(&dir.join("report.tex"), latex::tables(&md, "report").as_bytes())?;
    let metrics = std::fs::read_to_string(dir.join("metrics.csv"))
        .ok()
        .and_then(|t| Metrics::from_csv(&t).ok());
    plot::all(dir, &pts, &external(dir)?, metrics.as_ref())?;
    Ok(dir.join("frontier.png"))
}

pub use crate::experiment::eval_policy::External;

/// The rows of `dir/external.csv` (policies evaluated with `alignlab eval --frontier`), if any.
pub fn external(dir: &Path) -> Result<Vec<External>> {
    let path = dir.join("external.csv");
    if !path.exists() {
        return Ok(vec![]);
    }
    crate::log::read_csv(&path).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}; fix: delete it and evaluate the policies again with alignlab eval --frontier"
        )
    })
}
