//! `alignlab report RESULTS_DIR`: every table and plot of a results folder, from its CSVs alone.
//!
//! Reads `eval.csv` (and `metrics.csv` when present) and writes:
//! - `frontier.csv`: per method, gold reward at fixed KL budgets on the method's upper concave
//!   envelope (all its settings and evaluation steps), mean and 95% t-interval over seeds;
//! - `fits.csv`: Gao et al.'s fits of gold and proxy reward gain against d = sqrt(KL), for
//!   Best-of-N (R = d(a - b d)) and PPO (R = d(a - b log d));
//! - `report.md`: the final-evaluation table and the budget table, in Markdown;
//! - `frontier.{png,svg}`, `curves.{png,svg}`, `overoptimization.{png,svg}`;
//! - where the world has reference responses: `winrate.csv`, `winrate_temperature.{png,svg}`
//!   and `winrate_steps.{png,svg}` (see [`winrate`]).

pub mod frontier;
pub mod paper;
pub mod plot;
pub mod winrate;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::experiment::{write_atomic, Metrics, Row};
use frontier::{at_budget, envelope, fit_gao, mean_ci_t, FitForm};

/// KL budgets (nats) of the frontier table.
pub const BUDGETS: &[f64] = &[0.5, 1.0, 2.0, 4.0, 8.0];

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
            let get = |m: &str| rows.iter().find(|r| r.metric == m).map(|r| r.value).unwrap_or(f64::NAN);
            Point { method: k.0.clone(), setting: k.1.clone(), seed: k.2, step: k.3, kl: get("eval/kl"), gold: get("eval/gold"), gold_ci: get("eval/gold_ci"), proxy: get("eval/proxy"), kl_is_bound: get("eval/kl_is_bound") == 1.0 }
        })
        .collect()
}

/// The distinct items, in order of first appearance.
pub fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Methods in order of first appearance.
pub fn methods(points: &[Point]) -> Vec<String> {
    distinct(points.iter().map(|p| p.method.clone()))
}

fn seeds(points: &[Point]) -> Vec<u64> {
    let mut s: Vec<u64> = points.iter().map(|p| p.seed).collect();
    s.sort();
    s.dedup();
    s
}

/// The SFT evaluation of a seed (the start of every method).
fn sft_point(points: &[Point], seed: u64) -> Option<&Point> {
    points.iter().find(|p| p.method == "sft" && p.seed == seed)
}

/// Per method: the envelope of each seed (SFT's point included: every method starts there).
pub fn envelopes(points: &[Point], method: &str) -> Vec<(u64, Vec<(f64, f64)>)> {
    seeds(points)
        .into_iter()
        .filter_map(|seed| {
            let mut pts: Vec<(f64, f64)> = points.iter().filter(|p| p.method == method && p.seed == seed).map(|p| (p.kl, p.gold)).collect();
            if pts.is_empty() {
                return None;
            }
            if method != "optimal" {
                if let Some(s) = sft_point(points, seed) {
                    pts.push((0.0, s.gold));
                }
            }
            Some((seed, envelope(&pts)))
        })
        .collect()
}

/// Rows of `frontier.csv`: (method, budget, mean, ci, seeds reaching the budget, seeds).
pub fn budget_table(points: &[Point], budgets: &[f64]) -> Vec<(String, f64, f64, f64, usize, usize)> {
    let mut out = Vec::new();
    for m in methods(points) {
        if m == "sft" {
            continue;
        }
        let envs = envelopes(points, &m);
        for &b in budgets {
            // The optimal frontier is an estimate over its beta grid only: past its largest KL
            // it is unknown (not flat: a smaller beta would do better).
            let vals: Vec<f64> = envs.iter().map(|(_, e)| if m == "optimal" && e.last().is_some_and(|l| b > l.0) { f64::NAN } else { at_budget(e, b) }).collect();
            let reached = vals.iter().filter(|v| v.is_finite()).count();
            let (mean, ci) = mean_ci_t(&vals);
            out.push((m.clone(), b, mean, ci, reached, envs.len()));
        }
    }
    out
}

/// Rows of `fits.csv`: (method, reward, form, a, b, r2, points).
pub fn fits(points: &[Point]) -> Vec<(String, &'static str, FitForm, f64, f64, f64, usize)> {
    let mut out = Vec::new();
    for (method, form) in [("best_of_n", FitForm::BestOfN), ("ppo", FitForm::Rl), ("ppo_gt", FitForm::Rl)] {
        for (which, get) in [("gold", (|p: &Point| p.gold) as fn(&Point) -> f64), ("proxy", |p: &Point| p.proxy)] {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.method == method)
                .filter_map(|p| sft_point(points, p.seed).map(|s| (p.kl, get(p) - get(s))))
                .collect();
            if let Some((a, b, r2)) = fit_gao(&pts, form) {
                out.push((method.to_string(), which, form, a, b, r2, pts.len()));
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

/// Markdown: the last evaluation of every run, then the budget table.
pub fn markdown(points: &[Point], budget_rows: &[(String, f64, f64, f64, usize, usize)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Last evaluation of every run\n");
    let _ = writeln!(s, "| method | setting | seed | step | gold | KL |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let mut seen = Vec::new();
    for p in points {
        let k = (p.method.clone(), p.setting.clone(), p.seed);
        if seen.contains(&k) {
            continue;
        }
        seen.push(k);
        let last = points.iter().filter(|q| q.method == p.method && q.setting == p.setting && q.seed == p.seed).max_by_key(|q| q.step).unwrap();
        let kl = if last.kl_is_bound { format!("<= {} (bound)", fmt(last.kl)) } else { fmt(last.kl) };
        let _ = writeln!(s, "| {} | {} | {} | {} | {} ± {} | {} |", last.method, if last.setting.is_empty() { "-" } else { &last.setting }, last.seed, last.step, fmt(last.gold), fmt(last.gold_ci), kl);
    }
    let _ = writeln!(s, "\n## Gold reward at KL budgets (upper concave envelope per method; mean ± 95% t-interval over seeds)\n");
    let budgets: Vec<f64> = {
        let mut b: Vec<f64> = budget_rows.iter().map(|r| r.1).collect();
        b.dedup();
        b.sort_by(|a, b| a.total_cmp(b));
        b.dedup();
        b
    };
    let _ = write!(s, "| method |");
    for b in &budgets {
        let _ = write!(s, " KL {b} |");
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(budgets.len()));
    let mut ms: Vec<&String> = budget_rows.iter().map(|r| &r.0).collect();
    ms.dedup();
    for m in ms {
        let _ = write!(s, "| {m} |");
        for b in &budgets {
            let r = budget_rows.iter().find(|r| &r.0 == m && r.1 == *b).unwrap();
            if r.2.is_finite() {
                let _ = write!(s, " {} ± {} ({}/{}) |", fmt(r.2), fmt(r.3), r.4, r.5);
            } else {
                let _ = write!(s, " - |");
            }
        }
        let _ = writeln!(s);
    }
    s
}

/// Regenerate every table and plot of `dir` from its CSVs. Returns the frontier plot's path.
pub fn report(dir: &Path) -> Result<PathBuf> {
    let eval_path = dir.join("eval.csv");
    if !eval_path.exists() {
        bail!("{} has no eval.csv; fix: pass a results folder written by `alignlab run` (e.g. results/sentiment)", dir.display());
    }
    let text = std::fs::read_to_string(&eval_path).with_context(|| format!("cannot read {}", eval_path.display()))?;
    let evals = Metrics::from_csv(&text).with_context(|| format!("corrupt {}; fix: rerun the scenario to rewrite it", eval_path.display()))?;
    let pts = points(&evals);
    if pts.is_empty() {
        bail!("{} has no evaluations; fix: rerun the scenario", eval_path.display());
    }
    let budget_rows = budget_table(&pts, BUDGETS);
    let mut csv = String::from("method,kl_budget,gold_mean,gold_ci95,seeds_reaching,seeds\n");
    for (m, b, mean, ci, reached, n) in &budget_rows {
        let _ = writeln!(csv, "{m},{b},{mean},{ci},{reached},{n}");
    }
    write_atomic(&dir.join("frontier.csv"), csv.as_bytes())?;
    let fit_rows = fits(&pts);
    let mut csv = String::from("method,reward,form,a,b,r2,points\n");
    for (m, which, form, a, b, r2, n) in &fit_rows {
        let f = match form {
            FitForm::BestOfN => "d(a-b*d)",
            FitForm::Rl => "d(a-b*log(d))",
        };
        let _ = writeln!(csv, "{m},{which},{f},{a},{b},{r2},{n}");
    }
    write_atomic(&dir.join("fits.csv"), csv.as_bytes())?;
    let mut md = markdown(&pts, &budget_rows);
    let (by_temp, by_step) = (winrate::by_temperature(&evals), winrate::by_step(&evals));
    if !by_temp.is_empty() || !by_step.is_empty() {
        write_atomic(&dir.join("winrate.csv"), winrate::csv(&by_temp, &by_step).as_bytes())?;
        md.push('\n');
        md.push_str(&winrate::markdown(&by_temp));
        plot::winrates(dir, &by_temp, &by_step)?;
    }
    write_atomic(&dir.join("report.md"), md.as_bytes())?;
    let metrics = std::fs::read_to_string(dir.join("metrics.csv")).ok().and_then(|t| Metrics::from_csv(&t).ok());
    plot::all(dir, &pts, metrics.as_ref())?;
    Ok(dir.join("frontier.png"))
}
