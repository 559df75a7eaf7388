//! The calibrated grids of a results folder (`calibration.csv`, written by `alignlab run` with
//! `[sweep] budgets`): what each budget got on the pilot seed(s), and where each calibrated run
//! landed on every reported seed: its final checkpoint's KL against the budget, within the
//! calibration's tolerance (25%) or not.

use std::fmt::Write as _;

use crate::experiment::calibrate::{setting_value, CalibrationRecord, TOLERANCE};
use crate::experiment::Metrics;

/// The final KL of the run of `table` whose `key` is `value`, per seed (in seed order).
pub fn landed(evals: &Metrics, table: &str, key: &str, value: f64) -> Vec<(u64, f64)> {
    let mut out: Vec<(u64, usize, f64)> = Vec::new();
    for r in evals.rows.iter().filter(|r| r.method == table && r.metric == "eval/kl") {
        if setting_value(&r.setting, key) != Some(value) {
            continue;
        }
        match out.iter_mut().find(|o| o.0 == r.seed) {
            Some(o) if r.step >= o.1 => *o = (r.seed, r.step, r.value),
            Some(_) => {}
            None => out.push((r.seed, r.step, r.value)),
        }
    }
    out.sort_by_key(|o| o.0);
    out.into_iter().map(|(s, _, kl)| (s, kl)).collect()
}

/// The report's section: the calibration, and the landed KL of every calibrated run per seed.
pub fn markdown(records: &[CalibrationRecord], evals: &Metrics) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Calibrated grids (searched on the pilot seed(s); a run lands when its final KL is within {:.0}% of its budget)\n", 100.0 * TOLERANCE);
    let _ = writeln!(s, "| method | knob | budget | setting | pilot KL | landed per seed (final KL) | seeds within |\n|---|---|---|---|---|---|---|");
    // (landed, runs) over every budget, and over the budgets the pilot reached.
    let (mut all, mut reach) = ((0, 0), (0, 0));
    for r in records {
        let per = landed(evals, &r.table, &r.key, r.value);
        let cells: Vec<String> = per.iter().map(|(sd, kl)| format!("{sd}: {kl:.3}")).collect();
        let ok = per.iter().filter(|(_, kl)| (kl - r.budget).abs() <= TOLERANCE * r.budget).count();
        all = (all.0 + ok, all.1 + per.len());
        if r.within_tolerance {
            reach = (reach.0 + ok, reach.1 + per.len());
        }
        let _ = writeln!(s, "| {} | {} | {} | {} | {:.3}{} | {} | {ok}/{} |", r.table, r.key, r.budget, r.value, r.pilot_kl, if r.within_tolerance { "" } else { " (not reached)" }, cells.join(", "), per.len());
    }
    if all.1 > 0 {
        let _ = writeln!(s, "\nLanded within {:.0}%: {} of {} (budget, seed) runs; {} of {} on the budgets the pilot reached.", 100.0 * TOLERANCE, all.0, all.1, reach.0, reach.1);
    }
    s
}
