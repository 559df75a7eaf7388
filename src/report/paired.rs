//! Paired comparisons of two methods, per seed: a seed fixes the world, SFT, preference data,
//! reward model and evaluation samples for every method, so A - B is taken within each seed.
//!
//! - `kl_budget`: the test-half gold reward of each method's selected frontier at each budget
//!   (read from the budget table); compared only where every seed of both methods reached the
//!   budget.
//! - `kl_budget_final`: the same on the final-checkpoint frontier (each run's kept or last
//!   checkpoint only), which does not depend on how densely a method was evaluated: a method
//!   evaluated more often offers the selected frontier more checkpoints to choose from. A budget
//!   whose adjusted verdict differs between the two frontiers is flagged.
//! - `temperature`: the test-half win rate against the references at each final-evaluation
//!   temperature. A method with several settings contributes, per seed and temperature, the
//!   setting with the best selection-half win rate; the win rates of A and B in a seed are on the
//!   same prompts and reference responses, so their difference is paired over prompts too.
//! - `winrate_change`: (A at the highest temperature - A at the lowest) - (B's change): the
//!   temperature-robustness claim, paired the same way.
//!
//! Each comparison: the per-seed differences, their mean with a 95% t-interval over seeds, the
//! difference detectable at 80% power, and the verdict "above", "below" or "inconclusive,
//! detectable difference d" ([`crate::stats::Paired`]).
//!
//! Multiplicity: a claim is a family, the comparisons of one pair on one axis (DPO against PPO
//! at every KL budget is one family; at every temperature another). Each row carries its
//! paired t-test's p-value and Holm's adjustment within its family, and an adjusted verdict
//! ("above" or "below" where the adjusted p is below 0.05, else "inconclusive"): a claim is
//! judged on the adjusted verdicts only. The paper adjusts every test it reports once more,
//! across the paper, by Benjamini and Hochberg.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::winrate::{by_run, temperature_in};
use super::{distinct, methods, seeds, Frontier, FrontierRow, Point};
use crate::experiment::Metrics;
use crate::stats::Paired;

/// One comparison of A against B.
#[derive(Clone, Debug)]
pub struct PairedRow {
    pub a: String,
    pub b: String,
    /// `kl_budget`, `temperature` or `winrate_change`.
    pub axis: &'static str,
    /// The budget or temperature (for `winrate_change`, the highest temperature).
    pub x: f64,
    /// `gold` or `winrate`.
    pub metric: &'static str,
    /// Seeds of the results folder.
    pub seeds: usize,
    /// The comparison, where every seed has a value for both methods.
    pub paired: Option<Paired>,
    /// Its p-value adjusted by Holm within its family ([`PairedRow::family`]); NaN where not
    /// compared or with one seed.
    pub p_holm: f64,
}

impl PairedRow {
    pub fn verdict(&self) -> String {
        match &self.paired {
            Some(p) => p.verdict_text(),
            None => "not compared: not reached by every seed of both methods".into(),
        }
    }

    /// The claim it belongs to: `A|B|axis`.
    pub fn family(&self) -> String {
        format!("{}|{}|{}", self.a, self.b, self.axis)
    }

    /// The raw p-value (NaN where not compared).
    pub fn p_value(&self) -> f64 {
        self.paired.as_ref().map_or(f64::NAN, Paired::p_value)
    }

    /// The verdict after Holm's adjustment within the family.
    pub fn verdict_adjusted(&self) -> String {
        adjusted_verdict(self.paired.as_ref(), self.p_holm)
    }
}

/// The budgets of `kl_budget` rows whose adjusted verdict differs from the same pair's at that
/// budget on the final-checkpoint frontier (both compared): (A, B, budget).
pub fn density_flags(rows: &[PairedRow]) -> Vec<(String, String, f64)> {
    rows.iter()
        .filter(|r| r.axis == "kl_budget" && r.paired.is_some())
        .filter(|r| {
            rows.iter().any(|f| {
                f.axis == "kl_budget_final"
                    && (&f.a, &f.b, f.x) == (&r.a, &r.b, r.x)
                    && f.paired.is_some()
                    && verdict_class(&f.verdict_adjusted()) != verdict_class(&r.verdict_adjusted())
            })
        })
        .map(|r| (r.a.clone(), r.b.clone(), r.x))
        .collect()
}

/// A verdict without its words: "above", "below" or "inconclusive" (whose words name its p,
/// which moves with the samples while the verdict stays).
pub fn verdict_class(v: &str) -> &'static str {
    match v {
        "above" => "above",
        "below" => "below",
        _ => "inconclusive",
    }
}

/// "above" or "below" where the adjusted p-value is below the test level, else
/// "inconclusive" (with its adjusted p); "not compared" without a comparison.
pub fn adjusted_verdict(paired: Option<&Paired>, p_adj: f64) -> String {
    match paired {
        None => "not compared".into(),
        Some(p) if p_adj < crate::stats::ALPHA => {
            if p.mean > 0.0 { "above" } else { "below" }.into()
        }
        Some(_) if p_adj.is_finite() => format!("inconclusive (adjusted p {p_adj:.3})"),
        Some(_) => "inconclusive".into(),
    }
}

/// Holm's adjustment of each row's p-value within its family.
fn adjust(rows: &mut [PairedRow]) {
    let families = distinct(rows.iter().map(PairedRow::family));
    for f in families {
        let idx: Vec<usize> = (0..rows.len()).filter(|&i| rows[i].family() == f).collect();
        let ps: Vec<f64> = idx.iter().map(|&i| rows[i].p_value()).collect();
        for (&i, p) in idx.iter().zip(crate::stats::holm(&ps)) {
            rows[i].p_holm = p;
        }
    }
}

/// The pairs to compare: `[report] compare` of the folder's resolved scenario (which the scenario
/// fills with its world's default comparisons when it names none), else the world's defaults
/// (`Capabilities::comparisons`), kept to the methods present; none without a resolved scenario.
pub fn pairs(dir: &Path, points: &[Point]) -> Result<Vec<(String, String)>> {
    let path = dir.join("scenario.resolved.toml");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(vec![]) };
    let v: toml::Value = toml::from_str(&text).with_context(|| {
        format!("corrupt {}; fix: rerun the scenario to rewrite it", path.display())
    })?;
    if let Some(list) = v.get("report").and_then(|r| r.get("compare")).and_then(|c| c.as_array()) {
        let mut out = Vec::new();
        for p in list {
            let names: Vec<&str> = p
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            anyhow::ensure!(names.len() == 2, "{}: report.compare holds {p}, not a pair of method names; fix: write pairs such as [\"dpo\", \"ppo\"]", path.display());
            out.push((names[0].to_string(), names[1].to_string()));
        }
        return Ok(out);
    }
    let world: Option<crate::world::WorldConfig> =
        v.get("world").and_then(|w| w.clone().try_into().ok());
    let Some(world) = world else { return Ok(vec![]) };
    let present = methods(points);
    Ok(world
        .capabilities()
        .comparisons
        .iter()
        .filter(|p| p.iter().all(|m| present.iter().any(|x| x == m)))
        .map(|[a, b]| (a.to_string(), b.to_string()))
        .collect())
}

/// Per (method, seed, temperature): the reported test-half win rate of the setting chosen on the
/// selection half, from each setting's last evaluation at that temperature. Runs from before the
/// split are chosen and reported on all their prompts.
pub fn winrates(evals: &Metrics) -> BTreeMap<(String, u64, u64), f64> {
    winrates_of(evals, "eval_t")
}

/// Per temperature (its bits): the step, selection-half and test-half win rates.
type ByTemperature = BTreeMap<u64, (usize, f64, f64)>;

/// [`winrates`] of a metric family: `eval_t` (the evaluation prompts) or `shift_t` (the
/// world's shifted inputs).
pub fn winrates_of(evals: &Metrics, family: &str) -> BTreeMap<(String, u64, u64), f64> {
    // (method, setting, seed) -> temperature bits -> (step, sel, test)
    let mut last: BTreeMap<(String, String, u64), ByTemperature> = BTreeMap::new();
    let (_, by) = by_run(evals);
    for ((method, setting, seed, step), m) in &by {
        for (metric, &w) in m {
            let Some(t) = temperature_in(family, metric) else {
                continue;
            };
            let prefix = format!("{family}{t}/");
            let sel = m.get(&format!("{prefix}winrate_sel")).copied().unwrap_or(w);
            let test = m.get(&format!("{prefix}winrate_test")).copied().unwrap_or(w);
            let e = last
                .entry((method.clone(), setting.clone(), *seed))
                .or_default()
                .entry(t.to_bits())
                .or_insert((*step, sel, test));
            if *step >= e.0 {
                *e = (*step, sel, test);
            }
        }
    }
    // Best-of-N contributes its largest N, the paper's Best of 128, not the N its selection half
    // likes best.
    let largest_n = last
        .keys()
        .filter(|k| k.0 == "best_of_n")
        .filter_map(|k| k.1.strip_prefix("n=")?.parse::<usize>().ok())
        .max();
    last.retain(|k, _| k.0 != "best_of_n" || largest_n.is_some_and(|n| k.1 == format!("n={n}")));
    let mut best: BTreeMap<(String, u64, u64), (f64, f64)> = BTreeMap::new();
    for ((method, _, seed), temps) in &last {
        for (&t, &(_, sel, test)) in temps {
            let e = best.entry((method.clone(), *seed, t)).or_insert((f64::NEG_INFINITY, f64::NAN));
            if sel > e.0 {
                *e = (sel, test);
            }
        }
    }
    best.into_iter().map(|(k, v)| (k, v.1)).collect()
}

/// The temperatures (as bits) at which both `a` and `b` have a win rate, in increasing order.
fn common_temperatures<V>(w: &BTreeMap<(String, u64, u64), V>, a: &str, b: &str) -> Vec<u64> {
    let mut t: Vec<u64> = w
        .keys()
        .filter(|k| k.0 == a)
        .map(|k| k.2)
        .filter(|t| w.keys().any(|k| k.0 == b && k.2 == *t))
        .collect();
    t.sort_by(|x, y| f64::from_bits(*x).total_cmp(&f64::from_bits(*y)));
    t.dedup();
    t
}

/// Every comparison of every pair: at each KL budget, each temperature, and the change in win
/// rate from the lowest to the highest temperature.
/// The gold values at budgets come from `budget_rows` (the selected frontier of [`super::budget_table`]).
pub fn compare(
    points: &[Point],
    evals: &Metrics,
    pairs: &[(String, String)],
    budget_rows: &[FrontierRow],
) -> Vec<PairedRow> {
    let all_seeds = seeds(points);
    let n = all_seeds.len();
    let present = methods(points);
    let budgets: Vec<f64> = distinct(budget_rows.iter().map(|r| r.budget));
    // A method's reported value at a budget in a seed on a frontier, None where that seed did
    // not reach it.
    let value_on = |f: Frontier, m: &str, s: u64, x: f64| -> Option<f64> {
        let row = budget_rows.iter().find(|r| r.method == m && r.frontier == f && r.budget == x)?;
        row.values.iter().find(|v| v.0 == s)?.1.map(|v| v.0)
    };
    let value_at = |m: &str, s: u64, x: f64| value_on(Frontier::Selected, m, s, x);
    let final_at = |m: &str, s: u64, x: f64| value_on(Frontier::Final, m, s, x);
    let mut out = Vec::new();
    let w = winrates(evals);
    let ws = winrates_of(evals, "shift_t");
    let diffs = |f: &dyn Fn(u64) -> Option<f64>| -> Option<Paired> {
        let d: Option<Vec<f64>> = all_seeds.iter().map(|&s| f(s)).collect();
        d.filter(|d| !d.is_empty()).map(|d| Paired::new(&d))
    };
    for (a, b) in pairs {
        let row = |axis, x, metric, paired| PairedRow {
            a: a.clone(),
            b: b.clone(),
            axis,
            x,
            metric,
            seeds: n,
            paired,
            p_holm: f64::NAN,
        };
        // Gold at KL budgets (SFT has no frontier; methods without evaluations are skipped).
        if a != "sft" && b != "sft" && present.contains(a) && present.contains(b) {
            for &x in &budgets {
                let paired = diffs(&|s| Some(value_at(a, s, x)? - value_at(b, s, x)?));
                out.push(row("kl_budget", x, "gold", paired));
            }
            for &x in &budgets {
                let paired = diffs(&|s| Some(final_at(a, s, x)? - final_at(b, s, x)?));
                out.push(row("kl_budget_final", x, "gold", paired));
            }
        }
        // Win rates by temperature. Greedy Best-of-N is pi_SFT's greedy response N times over:
        // at T = 0 it would repeat the comparison with SFT, so it is left out there.
        let bon = a == "best_of_n" || b == "best_of_n";
        let mut temps = common_temperatures(&w, a, b);
        temps.retain(|&t| !(bon && f64::from_bits(t) == 0.0));
        let at = |m: &str, s: u64, t: u64| w.get(&(m.to_string(), s, t)).copied();
        for &t in &temps {
            let paired = diffs(&|s| Some(at(a, s, t)? - at(b, s, t)?));
            out.push(row("temperature", f64::from_bits(t), "winrate", paired));
        }
        if temps.len() >= 2 {
            let (lo, hi) = (temps[0], temps[temps.len() - 1]);
            let paired =
                diffs(&|s| Some((at(a, s, hi)? - at(a, s, lo)?) - (at(b, s, hi)? - at(b, s, lo)?)));
            out.push(row("winrate_change", f64::from_bits(hi), "winrate", paired));
        }
        // Win rates on the world's shifted inputs (generalisation), by temperature.
        for &t in &common_temperatures(&ws, a, b) {
            let at = |m: &str, s: u64| ws.get(&(m.to_string(), s, t)).copied();
            let paired = diffs(&|s| Some(at(a, s)? - at(b, s)?));
            out.push(row("shifted_temperature", f64::from_bits(t), "winrate", paired));
        }
    }
    adjust(&mut out);
    out
}

/// `paired.csv`: one row per comparison; `diffs` lists the per-seed differences A - B in seed
/// order, separated by `;`.
/// One row of `paired.csv`: A - B paired by seed at one budget or temperature.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct PairedRecord {
    pub a: String,
    pub b: String,
    pub axis: String,
    #[serde(with = "crate::log::float_text")]
    pub x: f64,
    pub metric: String,
    pub seeds: usize,
    pub seeds_compared: usize,
    /// The per-seed differences, `;`-separated.
    pub diffs: String,
    #[serde(with = "crate::log::float_text")]
    pub mean_diff: f64,
    #[serde(with = "crate::log::float_text")]
    pub ci95: f64,
    #[serde(with = "crate::log::float_text")]
    pub lo: f64,
    #[serde(with = "crate::log::float_text")]
    pub hi: f64,
    #[serde(with = "crate::log::float_text")]
    pub mdd80: f64,
    /// The raw verdict (the 95% interval).
    pub verdict: String,
    /// The claim: `A|B|axis`.
    #[serde(default)]
    pub family: String,
    /// The paired t-test's p-value, and Holm's within the family.
    #[serde(default = "nan", with = "crate::log::float_text")]
    pub p: f64,
    #[serde(default = "nan", with = "crate::log::float_text")]
    pub p_holm: f64,
    /// The verdict after Holm's adjustment: what a claim is judged on.
    #[serde(default)]
    pub verdict_adjusted: String,
    /// A `kl_budget` row whose adjusted verdict differs on the final-checkpoint frontier.
    #[serde(default)]
    pub differs_on_final: bool,
}

fn nan() -> f64 {
    f64::NAN
}

pub fn csv(rows: &[PairedRow]) -> String {
    let flags = density_flags(rows);
    let records: Vec<PairedRecord> = rows
        .iter()
        .map(|r| {
            let (k, d, mean, ci, lo, hi, mdd) = match &r.paired {
                Some(p) => (
                    p.diffs.len(),
                    p.diffs.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(";"),
                    p.mean,
                    p.ci95,
                    p.lo(),
                    p.hi(),
                    p.mdd80,
                ),
                None => (0, String::new(), f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN),
            };
            PairedRecord {
                a: r.a.clone(),
                b: r.b.clone(),
                axis: r.axis.into(),
                x: r.x,
                metric: r.metric.into(),
                seeds: r.seeds,
                seeds_compared: k,
                diffs: d,
                mean_diff: mean,
                ci95: ci,
                lo,
                hi,
                mdd80: mdd,
                verdict: r.verdict(),
                family: r.family(),
                p: r.p_value(),
                p_holm: r.p_holm,
                verdict_adjusted: r.verdict_adjusted(),
                differs_on_final: r.axis == "kl_budget"
                    && flags.contains(&(r.a.clone(), r.b.clone(), r.x)),
            }
        })
        .collect();
    crate::log::csv_text(&records)
}

/// What an axis value reads as in a table.
pub fn axis_label(r: &PairedRow) -> String {
    match r.axis {
        "kl_budget" => format!("KL {}", r.x),
        "kl_budget_final" => format!("KL {}, final checkpoints", r.x),
        "temperature" => format!("T = {}", r.x),
        "shifted_temperature" => format!("shifted inputs, T = {}", r.x),
        _ => format!("change to T = {}", r.x),
    }
}

/// The paired table in Markdown.
pub fn markdown(rows: &[PairedRow]) -> String {
    let flags = density_flags(rows);
    let mut s = String::from("## Paired comparisons (A - B per seed; mean ± 95% t-interval over seeds; detectable difference at 80% power; p of the paired t-test, Holm-adjusted within each pair's axis, whose verdict a claim is judged on)\n\n| A | B | at | metric | A - B | per seed | detectable | verdict | p (Holm) | adjusted verdict |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let (mean, per, mdd) = match &r.paired {
            Some(p) => (
                if p.ci95.is_finite() {
                    format!("{:+.4} ± {:.4}", p.mean, p.ci95)
                } else {
                    format!("{:+.4}", p.mean)
                },
                p.diffs.iter().map(|d| format!("{d:+.3}")).collect::<Vec<_>>().join(", "),
                if p.mdd80.is_finite() { format!("{:.4}", p.mdd80) } else { "-".into() },
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let p = match (r.p_value(), r.p_holm) {
            (p, h) if p.is_finite() && h.is_finite() => format!("{p:.3} ({h:.3})"),
            _ => "-".into(),
        };
        let flag = if r.axis == "kl_budget" && flags.contains(&(r.a.clone(), r.b.clone(), r.x)) {
            " (differs on final checkpoints)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {mean} | {per} | {mdd} | {} | {p} | {}{flag} |",
            r.a,
            r.b,
            axis_label(r),
            r.metric,
            r.verdict(),
            r.verdict_adjusted()
        );
    }
    s
}

/// A folder's adjusted verdicts against a rerun of the same scenario under a perturbation
/// (another thread count or CPU kernels: float noise, nothing else): the comparisons both
/// have with at least two seeds, and those whose adjusted verdict moved, described.
pub fn moved_verdicts(a: &[PairedRecord], b: &[PairedRecord]) -> (usize, Vec<String>) {
    let mut compared = 0;
    let mut moved = Vec::new();
    for r in a.iter().filter(|r| r.seeds_compared >= 2) {
        let Some(q) = b.iter().find(|q| {
            (&q.a, &q.b, &q.axis, &q.metric) == (&r.a, &r.b, &r.axis, &r.metric)
                && q.x == r.x
                && q.seeds_compared >= 2
        }) else {
            continue;
        };
        compared += 1;
        if verdict_class(&q.verdict_adjusted) != verdict_class(&r.verdict_adjusted) {
            moved.push(format!(
                "{} - {} at {} {}: {} ({:+.3} ± {:.3}) -> {} ({:+.3} ± {:.3})",
                r.a,
                r.b,
                r.axis,
                r.x,
                r.verdict_adjusted,
                r.mean_diff,
                r.ci95,
                q.verdict_adjusted,
                q.mean_diff,
                q.ci95
            ));
        }
    }
    (compared, moved)
}
