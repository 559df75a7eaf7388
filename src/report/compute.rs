//! Compute accounting: what each run cost, and the gold reward at equal compute.
//!
//! Every evaluation of a method carries `compute/*` rows (see `crate::profile`): the model
//! GFLOPs, token positions forward and backward, optimiser steps, policy samples, reward-model
//! and gold queries the run has used so far, the shared stages it stands on included (the
//! preference data, the reward model, DPO's reference log-probs) and SFT, every method's
//! start, left out. Evaluation is not part of a method's compute. Best-of-N at N is charged N
//! samples and reward-model queries per prompt.
//!
//! Reward at equal compute, per method and seed: of the method's evaluations (every setting,
//! every step) that cost at most C GFLOPs, the one with the best gold on the selection half of
//! the prompts, its gold on the test half. A run that finished below C is credited with what
//! it reached (it needed less); below a method's cheapest evaluation it has no value. Each
//! cell is one run: the cost of trying a grid of settings is the tuning's (not counted here).

use std::fmt::Write as _;

use super::Point;
use crate::experiment::Metrics;
use crate::stats::mean_ci_t;

/// One evaluation's compute and gold on the two halves.
#[derive(Clone, Debug)]
pub struct CostPoint {
    pub method: String,
    pub seed: u64,
    pub step: usize,
    pub gflop: f64,
    /// The run's own work: its compute less its step-0 row's (the shared stages it stands on);
    /// NaN where the run has no step-0 row (Best-of-N).
    pub own_gflop: f64,
    pub gold_sel: f64,
    pub gold_test: f64,
}

/// The evaluations that carry compute (step-0 pi_SFT rows of a method included: their cost is
/// the shared stages it stands on).
pub fn cost_points(evals: &Metrics, points: &[Point]) -> Vec<CostPoint> {
    let mut gflop = std::collections::HashMap::new();
    for r in evals.rows.iter().filter(|r| r.metric == "compute/gflop") {
        gflop.insert((r.method.as_str(), r.setting.as_str(), r.seed, r.step), r.value);
    }
    points
        .iter()
        .filter_map(|p| {
            let g = *gflop.get(&(p.method.as_str(), p.setting.as_str(), p.seed, p.step))?;
            let shared = gflop.get(&(p.method.as_str(), p.setting.as_str(), p.seed, 0));
            let s = p.split();
            (g.is_finite() && s.gold_sel.is_finite()).then(|| CostPoint {
                method: p.method.clone(),
                seed: p.seed,
                step: p.step,
                gflop: g,
                own_gflop: shared.map_or(f64::NAN, |s| g - s),
                gold_sel: s.gold_sel,
                gold_test: s.gold_test,
            })
        })
        .collect()
}

/// A method's test-half gold at compute `budget` for one seed (see the module's header).
pub fn at_compute(points: &[CostPoint], method: &str, seed: u64, budget: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.method == method && p.seed == seed && p.gflop <= budget)
        .max_by(|a, b| a.gold_sel.total_cmp(&b.gold_sel))
        .map(|p| p.gold_test)
}

/// The least compute at which a method's evaluations reach selection-half gold `level` on a seed.
pub fn cost_to_reach(points: &[CostPoint], method: &str, seed: u64, level: f64) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.method == method && p.seed == seed && p.gold_sel >= level)
        .map(|p| p.gflop)
        .min_by(|a, b| a.total_cmp(b))
}

/// The DPO paper's cost claim at equal gold: for `a` against `b`, the highest selection-half gold
/// both reach on every seed, and per seed the ratio of the compute each needed to reach it
/// (b / a); None where a seed lacks either method.
pub fn cost_ratio(points: &[CostPoint], a: &str, b: &str) -> Option<(f64, Vec<(u64, f64)>)> {
    let seeds = super::distinct(points.iter().map(|p| p.seed));
    let best = |m: &str, s: u64| {
        points
            .iter()
            .filter(|p| p.method == m && p.seed == s)
            .map(|p| p.gold_sel)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let level = seeds.iter().map(|&s| best(a, s).min(best(b, s))).fold(f64::INFINITY, f64::min);
    if !level.is_finite() {
        return None;
    }
    let per: Option<Vec<(u64, f64)>> = seeds
        .iter()
        .map(|&s| {
            Some((s, cost_to_reach(points, b, s, level)? / cost_to_reach(points, a, s, level)?))
        })
        .collect();
    Some((level, per?))
}

/// The fractions of the way from pi_SFT's gold to the common maximum at which the cost is
/// compared.
pub const COST_FRACTIONS: &[f64] = &[0.25, 0.5, 0.75, 0.9, 1.0];

/// One level of the cost curve of another method against DPO: per seed, the compute the other
/// needed to reach the level over DPO's, all of it (shared stages included) and its own work.
#[derive(Clone, Debug)]
pub struct CostLevel {
    pub fraction: f64,
    pub level: f64,
    pub total: Vec<(u64, f64)>,
    pub own: Vec<(u64, f64)>,
}

/// The cost curve of `other` against DPO: at each fraction f of [`COST_FRACTIONS`], the
/// selection-half gold L0 + f (L1 - L0), L0 pi_SFT's (DPO's step-0 evaluations, mean over
/// seeds) and L1 the highest gold both methods reach on every seed; a level some seed of either
/// method does not reach has no ratio there.
pub fn cost_curve(points: &[CostPoint], other: &str) -> Vec<CostLevel> {
    let Some((top, _)) = cost_ratio(points, "dpo", other) else { return vec![] };
    let sft: Vec<f64> =
        points.iter().filter(|p| p.method == "dpo" && p.step == 0).map(|p| p.gold_sel).collect();
    if sft.is_empty() {
        return vec![];
    }
    let base = sft.iter().sum::<f64>() / sft.len() as f64;
    // Both must gain on pi_SFT for there to be a way from it.
    if top <= base {
        return vec![];
    }
    let seeds = super::distinct(points.iter().map(|p| p.seed));
    let own_reach = |m: &str, s: u64, level: f64| {
        points
            .iter()
            .filter(|p| p.method == m && p.seed == s && p.gold_sel >= level)
            .map(|p| p.own_gflop)
            .filter(|g| g.is_finite() && *g > 0.0)
            .min_by(|a, b| a.total_cmp(b))
    };
    COST_FRACTIONS
        .iter()
        .map(|&f| {
            let level = base + f * (top - base);
            let ratio = |get: &dyn Fn(&str, u64) -> Option<f64>| -> Vec<(u64, f64)> {
                let per: Option<Vec<(u64, f64)>> =
                    seeds.iter().map(|&s| Some((s, get(other, s)? / get("dpo", s)?))).collect();
                per.unwrap_or_default()
            };
            CostLevel {
                fraction: f,
                level,
                total: ratio(&|m, s| cost_to_reach(points, m, s, level)),
                own: ratio(&|m, s| own_reach(m, s, level)),
            }
        })
        .collect()
}

/// The curve's comparisons of log ratios, Holm-adjusted over its levels (one claim): per
/// level, the paired comparison and its adjusted p, for all compute and for own work.
pub fn curve_tests(curve: &[CostLevel]) -> Vec<[(Option<crate::stats::Paired>, f64); 2]> {
    let test = |r: &[(u64, f64)]| {
        (r.len() >= 2)
            .then(|| crate::stats::Paired::new(&r.iter().map(|x| x.1.ln()).collect::<Vec<_>>()))
    };
    let sides: Vec<[Option<crate::stats::Paired>; 2]> =
        curve.iter().map(|c| [test(&c.total), test(&c.own)]).collect();
    let adjusted: Vec<Vec<f64>> = (0..2)
        .map(|k| {
            let ps: Vec<f64> =
                sides.iter().map(|s| s[k].as_ref().map_or(f64::NAN, |p| p.p_value())).collect();
            crate::stats::holm(&ps)
        })
        .collect();
    sides
        .into_iter()
        .enumerate()
        .map(|(i, [t, o])| [(t, adjusted[0][i]), (o, adjusted[1][i])])
        .collect()
}

/// A cost ratio's cell: geometric mean with its 95% interval and the adjusted verdict against a
/// ratio of 1.
fn ratio_cell((p, adj): &(Option<crate::stats::Paired>, f64)) -> String {
    let Some(p) = p else { return "-".into() };
    let verdict = match (*adj < crate::stats::ALPHA, p.mean > 0.0) {
        (true, true) => "DPO cheaper",
        (true, false) => "DPO dearer",
        (false, _) => "interval includes 1",
    };
    format!(
        "{:.2} ({:.2} to {:.2}; Holm p {adj:.3}: {verdict})",
        p.mean.exp(),
        p.lo().exp(),
        p.hi().exp()
    )
}

/// The cost claim: the gold level, per seed the compute ratio, and the paired comparison.
pub type CostClaim = (f64, Vec<(u64, f64)>, crate::stats::Paired);

/// The cost claim at equal gold, `other` against DPO: the gold level, per seed the compute
/// `other` needed over DPO's, and the paired comparison of their logs (above 0: `other` needed
/// more, DPO the cheaper).
pub fn equal_gold(points: &[CostPoint], other: &str) -> Option<CostClaim> {
    let (level, per) = cost_ratio(points, "dpo", other)?;
    let logs: Vec<f64> = per.iter().map(|p| p.1.ln()).collect();
    Some((level, per, crate::stats::Paired::new(&logs)))
}

/// Budgets of 1 and 3 x 10^k GFLOPs from the cheapest evaluation's cost to the dearest's.
pub fn budgets(points: &[CostPoint]) -> Vec<f64> {
    let (lo, hi) = points
        .iter()
        .filter(|p| p.gflop > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| (lo.min(p.gflop), hi.max(p.gflop)));
    if !lo.is_finite() {
        return vec![];
    }
    let mut out = Vec::new();
    let mut k = lo.log10().floor() as i32;
    while 10f64.powi(k) <= hi * 3.0 {
        for m in [1.0, 3.0] {
            let b = m * 10f64.powi(k);
            if b >= lo && b <= hi * 3.0 {
                out.push(b);
            }
        }
        k += 1;
    }
    out
}

/// One row of `compute.csv`: a method's gold at a compute budget, over seeds.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ComputeRecord {
    pub method: String,
    #[serde(with = "crate::log::float_text")]
    pub gflop_budget: f64,
    #[serde(with = "crate::log::float_text")]
    pub gold_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub gold_ci95: f64,
    pub seeds_reaching: usize,
    pub seeds: usize,
}

/// Every method's gold at every budget.
pub fn table(points: &[CostPoint]) -> Vec<ComputeRecord> {
    let methods = super::distinct(points.iter().map(|p| p.method.clone()));
    let seeds = super::distinct(points.iter().map(|p| p.seed));
    let mut out = Vec::new();
    for b in budgets(points) {
        for m in &methods {
            let v: Vec<f64> = seeds.iter().filter_map(|&s| at_compute(points, m, s, b)).collect();
            let (mean, ci) = mean_ci_t(&v);
            out.push(ComputeRecord {
                method: m.clone(),
                gflop_budget: b,
                gold_mean: mean,
                gold_ci95: ci,
                seeds_reaching: v.len(),
                seeds: seeds.len(),
            });
        }
    }
    out
}

fn si(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v.abs() >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// The report's compute section: each method's cost per run, gold at equal compute, and DPO's
/// compute against each other method's at equal gold.
pub fn markdown(evals: &Metrics, rows: &[ComputeRecord], points: &[CostPoint]) -> String {
    let tot = crate::experiment::compute_totals(evals);
    let mut s = String::new();
    if tot.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## Compute per run (mean over each method's runs of the final evaluation's compute; shared stages a method stands on included, SFT left out, evaluation not counted)\n");
    let _ = writeln!(s, "| method | runs | TFLOP | tokens fwd | tokens bwd | optimiser steps | samples | RM queries | gold queries |\n|---|---|---|---|---|---|---|---|---|");
    for (m, n, v) in &tot {
        let _ = writeln!(
            s,
            "| {m} | {n} | {:.3} | {} | {} | {} | {} | {} | {} |",
            v[0] / 1e3,
            si(v[1]),
            si(v[2]),
            si(v[3]),
            si(v[4]),
            si(v[5]),
            si(v[6])
        );
    }
    let budgets = super::distinct(rows.iter().map(|r| r.gflop_budget.to_bits()));
    if budgets.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## Gold reward at equal compute (best evaluation within the budget, chosen on the selection half, reported on the test half; mean ± 95% t-interval over seeds; `-`: no evaluation that cheap)\n");
    let head: Vec<String> =
        budgets.iter().map(|b| format!("{:.3} TFLOP", f64::from_bits(*b) / 1e3)).collect();
    let _ = writeln!(s, "| method | {} |\n|---|{}", head.join(" | "), "---|".repeat(head.len()));
    for m in super::distinct(rows.iter().map(|r| r.method.clone())) {
        let cells: Vec<String> = budgets
            .iter()
            .map(|b| match rows.iter().find(|r| r.method == m && r.gflop_budget.to_bits() == *b) {
                Some(r) if r.seeds_reaching > 0 => format!(
                    "{:.3} ± {:.3} ({}/{})",
                    r.gold_mean, r.gold_ci95, r.seeds_reaching, r.seeds
                ),
                _ => "-".into(),
            })
            .collect();
        let _ = writeln!(s, "| {m} | {} |", cells.join(" | "));
    }
    let methods = super::distinct(points.iter().map(|p| p.method.clone()));
    if methods.iter().any(|m| m == "dpo") {
        let _ = writeln!(s, "\n## Compute at equal gold (the highest selection-half gold both methods reach on every seed; per seed the compute the other method needed over DPO's; geometric mean with a 95% t-interval on the log ratio)\n");
        let _ = writeln!(
            s,
            "| method | gold level | ratio per seed | geometric mean |\n|---|---|---|---|"
        );
        for m in methods.iter().filter(|m| *m != "dpo" && *m != "sft") {
            if let Some((level, per, logs)) = equal_gold(points, m) {
                let (mean, ci) = mean_ci_t(&logs.diffs);
                let cells: Vec<String> =
                    per.iter().map(|(sd, r)| format!("{sd}: {r:.2}")).collect();
                let _ = writeln!(
                    s,
                    "| {m} / dpo | {level:.4} | {} | {:.2} ({:.2} to {:.2}) |",
                    cells.join(", "),
                    mean.exp(),
                    (mean - ci).exp(),
                    (mean + ci).exp()
                );
            }
        }
        s.push_str(&curve_table(points, &methods));
    }
    s
}

/// The cost curves of every method against DPO, as a Markdown section (empty without one).
fn curve_table(points: &[CostPoint], methods: &[String]) -> String {
    let mut curves = String::new();
    for m in methods.iter().filter(|m| *m != "dpo" && *m != "sft") {
        let curve = cost_curve(points, m);
        for (c, t) in curve.iter().zip(curve_tests(&curve)) {
            let _ = writeln!(
                curves,
                "| {m} / dpo | {:.0}% | {:.4} | {} | {} |",
                100.0 * c.fraction,
                c.level,
                ratio_cell(&t[0]),
                ratio_cell(&t[1])
            );
        }
    }
    let mut s = String::new();
    if !curves.is_empty() {
        let _ = writeln!(s, "\n## Cost as a curve (the compute another method needed over DPO's to reach each selection-half gold level, 25% to 100% of the way from pi_SFT's gold to the highest both reach on every seed; all compute, and each run's own work without the shared stages it stands on (reward model, preference data, reference log-probs); geometric mean over seeds with a 95% t-interval, Holm-adjusted over the levels, a ratio against 1)\n");
        let _ = writeln!(s, "| method | of the way | gold level | all compute | own work |\n|---|---|---|---|---|\n{curves}");
    }
    s
}
