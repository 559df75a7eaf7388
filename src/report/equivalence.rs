//! `alignlab equivalence A B`: whether two results folders of one scenario, run in two
//! precisions (or with any other change that should not move the numbers), agree. Paired by
//! seed, B - A: gold at each KL budget (the selected frontier) and the win rate at each
//! temperature, each with a two-one-sided-tests verdict against a margin (0.02 gold, 0.03 win
//! rate by default); and the drift of the last evaluation's exact KL and implicit accuracy per
//! run. Writes `equivalence.csv` and `equivalence.md` into B.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::paired::winrates;
use super::{budget_table, points, Frontier, BUDGETS};
use crate::experiment::{write_atomic, Metrics};
use crate::stats::{mean_ci_t, tost};

/// The default margins: gold reward and win rate.
pub const GOLD_MARGIN: f64 = 0.02;
pub const WINRATE_MARGIN: f64 = 0.03;

/// One comparison of B against A.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EquivalenceRecord {
    pub method: String,
    /// `kl_budget`, `temperature` or `drift`.
    pub axis: String,
    pub x: f64,
    pub metric: String,
    pub seeds: usize,
    /// Mean of B - A over seeds (over runs for a drift).
    pub mean_diff: f64,
    /// Half-width of the 90% t-interval (TOST); 95% for a drift.
    pub half_width: f64,
    /// The margin, NaN for a drift (reported, not tested).
    pub margin: f64,
    pub verdict: String,
}

fn read(dir: &Path) -> Result<Metrics> {
    let path = dir.join("eval.csv");
    Metrics::read(&path).with_context(|| {
        format!(
            "cannot read {}; fix: pass a results folder written by `alignlab run`",
            path.display()
        )
    })
}

/// Every comparison of B against A.
pub fn compare(a: &Metrics, b: &Metrics, margins: (f64, f64)) -> Vec<EquivalenceRecord> {
    let mut out = Vec::new();
    let (pa, pb) = (points(a), points(b));
    let (ta, tb) = (budget_table(&pa, BUDGETS), budget_table(&pb, BUDGETS));
    for ra in ta.iter().filter(|r| r.frontier == Frontier::Selected) {
        let Some(rb) = tb.iter().find(|r| {
            r.frontier == Frontier::Selected && r.method == ra.method && r.budget == ra.budget
        }) else {
            continue;
        };
        let diffs: Vec<f64> = ra
            .values
            .iter()
            .filter_map(|(s, va)| {
                let vb = rb.values.iter().find(|v| v.0 == *s)?.1?;
                Some(vb.0 - (*va)?.0)
            })
            .collect();
        if !diffs.is_empty() {
            out.push(record(&ra.method, ("kl_budget", ra.budget, "gold"), &diffs, margins.0));
        }
    }
    let (wa, wb) = (winrates(a), winrates(b));
    let mut by: BTreeMap<(String, u64), Vec<f64>> = BTreeMap::new();
    for ((m, seed, t), va) in &wa {
        if let Some(vb) = wb.get(&(m.clone(), *seed, *t)) {
            by.entry((m.clone(), *t)).or_default().push(vb - va);
        }
    }
    for ((m, t), diffs) in &by {
        out.push(record(m, ("temperature", f64::from_bits(*t), "winrate"), diffs, margins.1));
    }
    out.extend(drift(a, b, "eval/kl"));
    out.extend(drift(a, b, "eval/implicit_acc"));
    out
}

fn record(
    method: &str,
    (axis, x, metric): (&str, f64, &str),
    diffs: &[f64],
    margin: f64,
) -> EquivalenceRecord {
    let (mean_diff, half_width, verdict) = tost(diffs, margin);
    EquivalenceRecord {
        method: method.to_string(),
        axis: axis.to_string(),
        x,
        metric: metric.to_string(),
        seeds: diffs.len(),
        mean_diff,
        half_width,
        margin,
        verdict: verdict.name().to_string(),
    }
}

/// Per method: B - A of `metric` at each run's last evaluation, over its runs (settings and
/// seeds), with a 95% t-interval: reported, not tested.
fn drift(a: &Metrics, b: &Metrics, metric: &str) -> Vec<EquivalenceRecord> {
    let last = |m: &Metrics| {
        let mut v: BTreeMap<(String, String, u64), (usize, f64)> = BTreeMap::new();
        for r in m.rows.iter().filter(|r| r.metric == metric && r.value.is_finite()) {
            let e = v.entry((r.method.clone(), r.setting.clone(), r.seed)).or_insert((0, 0.0));
            if r.step >= e.0 {
                *e = (r.step, r.value);
            }
        }
        v
    };
    let (la, lb) = (last(a), last(b));
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (k, (_, va)) in &la {
        if let Some((_, vb)) = lb.get(k) {
            by.entry(k.0.clone()).or_default().push(vb - va);
        }
    }
    by.into_iter()
        .map(|(m, d)| {
            let (mean_diff, hw) = mean_ci_t(&d);
            let half_width = if d.len() >= 2 { hw } else { f64::NAN };
            EquivalenceRecord {
                method: m,
                axis: "drift".into(),
                x: f64::NAN,
                metric: metric.to_string(),
                seeds: d.len(),
                mean_diff,
                half_width,
                margin: f64::NAN,
                verdict: "-".into(),
            }
        })
        .collect()
}

/// The table of [`compare`] as markdown.
pub fn markdown(rows: &[EquivalenceRecord], (a, b): (&str, &str)) -> String {
    let mut s = format!("# {b} against {a}\n\nB - A paired by seed; equivalence by two one-sided tests at 5% (the 90% t-interval inside the margin). Drifts: each run's last evaluation, mean over runs with a 95% t-interval, not tested.\n\n| method | axis | at | metric | seeds | B - A | interval | margin | verdict |\n|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let at = if r.x.is_finite() { format!("{}", r.x) } else { "-".into() };
        let margin = if r.margin.is_finite() { format!("{}", r.margin) } else { "-".into() };
        let _ = writeln!(
            s,
            "| {} | {} | {at} | {} | {} | {:+.4} | ± {:.4} | {margin} | {} |",
            r.method, r.axis, r.metric, r.seeds, r.mean_diff, r.half_width, r.verdict
        );
    }
    s
}

/// Compare the results folders `a` and `b`; write `equivalence.csv` and `equivalence.md` into
/// `b` and return the markdown.
pub fn run(a: &Path, b: &Path, margins: (f64, f64)) -> Result<String> {
    let mut rows = compare(&read(a)?, &read(b)?, margins);
    // The reward model's validation accuracy at its last epoch, per seed (metrics.csv).
    let metrics = |d: &Path| Metrics::read(&d.join("metrics.csv")).ok();
    if let (Some(ma), Some(mb)) = (metrics(a), metrics(b)) {
        rows.extend(drift(&ma, &mb, "reward/val/accuracy"));
    }
    anyhow::ensure!(!rows.is_empty(), "{} and {} share no method, budget or temperature; fix: pass two results folders of the same scenario", a.display(), b.display());
    write_atomic(&b.join("equivalence.csv"), crate::log::csv_text(&rows).as_bytes())?;
    let md = markdown(&rows, (&a.display().to_string(), &b.display().to_string()));
    write_atomic(&b.join("equivalence.md"), md.as_bytes())?;
    Ok(md)
}
