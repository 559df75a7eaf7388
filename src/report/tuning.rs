//! Equal tuning in a results folder (`tuning.csv`, written by `alignlab run` with `[tune]`):
//! each method's configurations with their selection-half gold at the reference budget on the
//! tuning seeds, the one frozen for the sweep, and the DPO paper's robustness claim tested: per
//! method and tuning seed, the spread of that gold across the method's configurations (best
//! minus worst), compared between methods paired by tuning seed.

use std::fmt::Write as _;

use crate::experiment::tune::TuningRecord;
use crate::stats::{mean_ci_t, Paired};

/// Per tuning seed, a method's spread at the reference budget (None: not reached).
pub type SeedSpreads = Vec<(u64, Option<f64>)>;

/// Per method, per tuning seed (in seed order): best minus worst gold across its configurations
/// at the reference budget; `None` on a seed where none of them reached the budget (their
/// values are then each run's best below it, and their spread is not one at the budget: a
/// method that never moves far enough would look perfectly robust).
pub fn spreads(records: &[TuningRecord]) -> Vec<(String, SeedSpreads)> {
    let methods = super::distinct(records.iter().map(|r| r.method.clone()));
    let mut seeds = super::distinct(records.iter().map(|r| r.seed));
    seeds.sort_unstable();
    methods
        .into_iter()
        .map(|m| {
            let per = seeds
                .iter()
                .map(|&s| {
                    let rs: Vec<&TuningRecord> =
                        records.iter().filter(|r| r.method == m && r.seed == s).collect();
                    let (lo, hi) =
                        rs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                            (lo.min(r.gold_sel), hi.max(r.gold_sel))
                        });
                    (s, rs.iter().any(|r| r.reached).then_some(hi - lo))
                })
                .collect();
            (m, per)
        })
        .collect()
}

/// The robustness claim tested: per method other than DPO, DPO's spread minus its own, paired
/// on the tuning seeds where both have one; None where there is no such seed.
pub fn robustness(records: &[TuningRecord]) -> Vec<(String, Option<Paired>)> {
    let sp = spreads(records);
    let Some((_, dpo)) = sp.iter().find(|(m, _)| m == "dpo") else {
        return vec![];
    };
    sp.iter()
        .filter(|(m, _)| m != "dpo")
        .map(|(m, per)| {
            let d: Vec<f64> = dpo
                .iter()
                .filter_map(|(sd, a)| Some(a.as_ref()? - per.iter().find(|b| b.0 == *sd)?.1?))
                .collect();
            (m.clone(), (!d.is_empty()).then(|| Paired::new(&d)))
        })
        .collect()
}

pub fn markdown(records: &[TuningRecord]) -> String {
    let mut s = String::new();
    let Some(first) = records.first() else {
        return s;
    };
    let _ = writeln!(s, "\n## Equal tuning (selection-half gold at KL {} on the tuning seeds; `*` the configuration frozen for the sweep; `(below)`: its runs stayed under the budget, read at their best)\n", first.budget);
    let _ = writeln!(s, "| method | configuration | per tuning seed | mean |\n|---|---|---|---|");
    for m in super::distinct(records.iter().map(|r| r.method.clone())) {
        for c in super::distinct(records.iter().filter(|r| r.method == m).map(|r| r.config.clone()))
        {
            let rs: Vec<&TuningRecord> =
                records.iter().filter(|r| r.method == m && r.config == c).collect();
            let per: Vec<String> = rs
                .iter()
                .map(|r| {
                    format!(
                        "{}: {:.4}{}",
                        r.seed,
                        r.gold_sel,
                        if r.reached { "" } else { " (below)" }
                    )
                })
                .collect();
            let mean = rs.iter().map(|r| r.gold_sel).sum::<f64>() / rs.len() as f64;
            let _ = writeln!(
                s,
                "| {m} | {}{} | {} | {mean:.4} |",
                c,
                if rs.iter().any(|r| r.picked) { " *" } else { "" },
                per.join(", ")
            );
        }
    }
    let sp = spreads(records);
    let _ = writeln!(s, "\n## Robustness to hyperparameters (spread: best minus worst configuration's gold per tuning seed; A - B paired by seed)\n");
    let _ = writeln!(s, "| method | spread per seed | mean ± 95% t |\n|---|---|---|");
    for (m, per) in &sp {
        let have: Vec<f64> = per.iter().filter_map(|p| p.1).collect();
        let (mean, ci) = mean_ci_t(&have);
        let cells: Vec<String> = per
            .iter()
            .map(|(sd, v)| {
                v.map_or(format!("{sd}: - (none reached KL {})", first.budget), |v| {
                    format!("{sd}: {v:.4}")
                })
            })
            .collect();
        // One tuning seed has no interval: say so rather than print ± 0.
        let summary = match have.len() {
            0 => format!("- (no configuration reached KL {})", first.budget),
            1 => format!("{mean:.4} ± - (one seed)"),
            _ => format!("{mean:.4} ± {ci:.4}"),
        };
        let _ = writeln!(s, "| {m} | {} | {summary} |", cells.join(", "));
    }
    for (m, p) in robustness(records) {
        let Some(p) = p else {
            let _ = writeln!(s, "\nDPO - {m} spread: not compared: no tuning seed on which a configuration of both reached KL {}.", first.budget);
            continue;
        };
        let v = p.verdict_words(
            &format!("DPO's spread is larger: {m} more robust than DPO"),
            &format!("DPO's spread is smaller: DPO more robust than {m}"),
        );
        let n = p.diffs.len();
        let ci = if n < 2 { String::new() } else { format!(" ± {:.4}", p.ci95) };
        let _ = writeln!(
            s,
            "\nDPO - {m} spread: {:.4}{ci} over {n} tuning seed{}: {v}.",
            p.mean,
            if n == 1 { "" } else { "s" }
        );
    }
    s
}
