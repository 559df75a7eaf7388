//! The calibrated grids of a results folder (`calibration.csv`, written by `alignlab run` with
//! `[sweep] budgets`): what each budget got on the pilot seed(s), and where each calibrated run
//! landed on every reported seed: its final checkpoint's KL against the budget, within the
//! calibration's tolerance (25%) or not.

use std::fmt::Write as _;

use crate::experiment::calibrate::{setting_value, CalibrationRecord, TOLERANCE};
use crate::experiment::scenario::SeedRun;
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

/// The top-ups of a results folder: `[sweep] seed_runs` of its resolved scenario (none when it
/// has no such file or key).
pub fn seed_runs(dir: &std::path::Path) -> anyhow::Result<Vec<SeedRun>> {
    let path = dir.join("scenario.resolved.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(vec![]);
    };
    let t: toml::Table = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not TOML: {e}; fix: rerun the scenario to rewrite it",
            path.display()
        )
    })?;
    let Some(runs) = t.get("sweep").and_then(|s| s.get("seed_runs")) else {
        return Ok(vec![]);
    };
    runs.clone().try_into().map_err(|e| {
        anyhow::anyhow!(
            "{}: `sweep.seed_runs` does not read: {e}; fix: rerun the scenario to rewrite it",
            path.display()
        )
    })
}

/// The report's section: the calibration, and the landed KL of every calibrated run per seed,
/// with the top-ups (`tops`) of the seeds where it missed.
pub fn markdown(records: &[CalibrationRecord], evals: &Metrics, tops: &[SeedRun]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## Calibrated grids (searched on the pilot seed(s); a run lands when its final KL is within {:.0}% of its budget)\n", 100.0 * TOLERANCE);
    if !tops.is_empty() {
        let _ = writeln!(s, "`a → b (top-up v)`: the calibrated run landed at a on that seed, and a run of that seed alone at setting v, chosen from the seed's final KLs only, landed at b.\n");
    }
    let _ = writeln!(s, "| method | knob | budget | setting | pilot KL | landed per seed (final KL) | seeds within |\n|---|---|---|---|---|---|---|");
    // (landed, runs) over every budget, and over the budgets the pilot reached; top-ups used.
    let (mut all, mut reach, mut topped) = ((0, 0), (0, 0), 0);
    for r in records {
        let per = landed(evals, &r.table, &r.key, r.value);
        let near = |kl: f64| (kl - r.budget).abs() <= TOLERANCE * r.budget;
        let mut ok = 0;
        let mut cells = Vec::new();
        for (sd, kl) in &per {
            let mut cell = format!("{sd}: {kl:.3}");
            let mut hit = near(*kl);
            for t in
                tops.iter().filter(|t| t.seed == *sd && t.table == r.table && t.budget == r.budget)
            {
                if let Some((_, k)) =
                    landed(evals, &r.table, &r.key, t.value).into_iter().find(|x| x.0 == *sd)
                {
                    let _ = write!(cell, " → {k:.3} (top-up {})", t.value);
                    topped += usize::from(!hit && near(k));
                    hit |= near(k);
                }
            }
            ok += usize::from(hit);
            cells.push(cell);
        }
        all = (all.0 + ok, all.1 + per.len());
        if r.within_tolerance {
            reach = (reach.0 + ok, reach.1 + per.len());
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3}{} | {} | {ok}/{} |",
            r.table,
            r.key,
            r.budget,
            r.value,
            r.pilot_kl,
            if r.within_tolerance { "" } else { " (not reached)" },
            cells.join(", "),
            per.len()
        );
    }
    if all.1 > 0 {
        let via = if topped > 0 {
            format!(" ({topped} of them through a top-up)")
        } else {
            String::new()
        };
        let _ = writeln!(s, "\nLanded within {:.0}%: {} of {} (budget, seed) runs; {} of {} on the budgets the pilot reached{via}.", 100.0 * TOLERANCE, all.0, all.1, reach.0, reach.1);
    }
    s
}
