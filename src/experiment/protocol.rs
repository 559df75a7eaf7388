//! `alignlab run`, top to bottom: equal tuning on the tuning seeds (`[tune]`), grids calibrated
//! to the KL budgets on the pilot seeds (`[sweep] budgets`), the sweep over the reported seeds
//! with its per-seed top-ups, then the cost ledger of every run the result stands on, and the
//! summary, tables and plots.
//!
//! Each phase fixes settings for the next as typed overrides of the scenario file (the tuned
//! configurations, the calibrated grids, the top-ups' seed runs); the scenario is loaded once
//! per phase with them, and the sweep's cells (child processes) get the same ones on their
//! command line.

use anyhow::Result;
use std::cell::Cell;
use std::path::PathBuf;

use super::calibrate::{self, Calibration};
use super::cells::{run_tables, RunsDone};
use super::ledger::{Ledger, RunsWork};
use super::options::RunOptions;
use super::scenario::{parse_sets, Override, Scenario};
use super::summary::Summary;
use super::sweep::{self, TopUp};
use super::tune::{self, Tuning};
use crate::log::{csv_text, write_atomic};
use crate::stats::distinct;

/// A scenario file with the command line's overrides and those the protocol has fixed so far
/// (the tuned configurations, then the calibrated grids).
struct Fixed<'a> {
    file: &'a std::path::Path,
    sets: Vec<Override>,
    fixed: Vec<Override>,
}

impl Fixed<'_> {
    /// The scenario with everything fixed so far and `extra` on top.
    fn load(&self, extra: &[Override]) -> Result<Scenario> {
        let all: Vec<Override> =
            self.sets.iter().chain(&self.fixed).chain(extra).cloned().collect();
        Ok(Scenario::load_with(self.file, &all)?)
    }
}

/// Run the scenario in `file` with `sets` (the command line's `--set`s) under `opts`; writes
/// `results/<name>/` and returns the summary (printed by the caller). `t_start`: when the
/// invocation began, for its wall time.
pub fn run(
    file: &std::path::Path,
    sets: &[String],
    opts: RunOptions,
    t_start: std::time::Instant,
) -> Result<Summary> {
    let given = sets;
    let sets = parse_sets(&file.display().to_string(), sets)?;
    let mut state = Fixed { file, sets, fixed: Vec::new() };
    let mut sc = state.load(&[])?;
    // What the results were made from (a later check resolves it again with the day's code).
    let origin = origin_line(file, given);
    let origin_key = super::keys::stage_hash(&sc.resolved_toml);
    // What this invocation ran and found cached, per phase.
    let (tune_done, cal_done) = (Cell::new(RunsDone::default()), Cell::new(RunsDone::default()));
    let run_pilot = |o: &RunOptions,
                     pilot: &Scenario,
                     tables: &[String],
                     extra: &[Override],
                     count: &Cell<RunsDone>| {
        let mut c = count.get();
        c.absorb(run_tables(pilot, &o.with_overrides(extra), tables)?);
        count.set(c);
        anyhow::Ok(())
    };
    // 1. Equal tuning on the tuning seeds; every configuration is checked before any work.
    let tuning = match &sc.tune {
        None => None,
        Some(t) => {
            for c in t.tables.iter().flat_map(|x| &x.1) {
                let no_tuning = Override::new("tune.seeds", toml::Value::Array(vec![]));
                state.load(&c.iter().cloned().chain([no_tuning]).collect::<Vec<_>>())?;
            }
            let tuned = tune::tune(&sc, &opts, &|e| state.load(e), &|p, t, e| {
                run_pilot(&opts, p, t, e, &tune_done)
            })?;
            let note = format!("tuned: {}", Override::args(&tuned.overrides));
            opts.progress.note(&sc.name, None, &note);
            state.fixed.extend(tuned.overrides.iter().cloned());
            sc = state.load(&[])?;
            Some(tuned)
        }
    };
    // 2. Budget-calibrated grids: searched on the pilot seeds, then the sweep runs them.
    let calibration = if sc.budgets.is_empty() || !sc.calibrate {
        None
    } else {
        let o = opts.with_overrides(&state.fixed);
        let cal = calibrate::calibrate(&sc, &o, &|e| state.load(e), &|p, t, e| {
            run_pilot(&o, p, t, e, &cal_done)
        })?;
        let note = format!("calibrated grids: {}", Override::args(&cal.overrides));
        opts.progress.note(&sc.name, None, &note);
        state.fixed.extend(cal.overrides.iter().cloned());
        sc = state.load(&[])?;
        Some(cal)
    };
    // 3. The sweep, with the top-ups of a calibrated grid.
    let opts = opts.with_overrides(&state.fixed);
    let load_fixed = |e: &[Override]| state.load(e);
    let top_up = calibration.as_ref().map(|c| TopUp { records: &c.records, load: &load_fixed });
    let (mut summary, swept) = sweep::run(&sc, &opts, top_up)?;
    // 4. What the protocol cost: the tuning's and the calibration's runs beside the sweep's.
    let phases = Phases {
        tuning: tuning.as_ref(),
        calibration: calibration.as_ref(),
        tune_done: tune_done.get(),
        cal_done: cal_done.get(),
    };
    if tuning.is_some() || calibration.is_some() {
        ledger(&sc, &opts, &phases, swept, &mut summary);
    }
    origin_rows(&mut summary, (origin, origin_key), &opts);
    let wall = t_start.elapsed().as_secs_f64();
    summary.add("invocation", "wall time", format!("{wall:.1} s"));
    summary.number("invocation", "wall_s", wall);
    write(&sc, &opts, &phases, &summary)?;
    Ok(summary)
}

/// What a folder was made from and how: its scenario (file, `--set`s, resolved key) and the
/// threads each run had (byte-identity holds at the same count, on the same CPU type).
fn origin_rows(summary: &mut Summary, (origin, key): (String, String), opts: &RunOptions) {
    summary.add("run", "scenario", origin);
    summary.add("run", "scenario key", key);
    let (per_run, at_a_time) = (opts.threads_per_run(), opts.jobs.max(1));
    summary.add(
        "run",
        "threads",
        format!("{per_run} torch threads per run, {at_a_time} at a time"),
    );
}

/// The scenario file and its `--set`s as one line: `scenarios/sentiment.toml --set a=1 --set b=[0, 1]`
/// (what [`parse_origin`] reads back).
pub fn origin_line(file: &std::path::Path, sets: &[String]) -> String {
    let mut line = file.display().to_string();
    for s in sets {
        line.push_str(" --set ");
        line.push_str(s);
    }
    line
}

/// The file and the `--set`s of an [`origin_line`] (a folder's `run,scenario` row).
pub fn parse_origin(line: &str) -> (PathBuf, Vec<String>) {
    let mut parts = line.split(" --set ");
    let file = PathBuf::from(parts.next().unwrap_or_default());
    (file, parts.map(str::to_string).collect())
}

/// What the phases before the sweep produced and ran.
struct Phases<'a> {
    tuning: Option<&'a Tuning>,
    calibration: Option<&'a Calibration>,
    tune_done: RunsDone,
    cal_done: RunsDone,
}

/// "pilot seed 1000", or "pilot seeds [1000, 1001]".
fn pilot_words(seeds: &[u64]) -> String {
    match seeds {
        [one] => format!("pilot seed {one}"),
        _ => format!("pilot seeds {seeds:?}"),
    }
}

/// The protocol's rows of `summary.csv`: each phase's runs and work, the ledger of own wall
/// seconds over every run and shared stage, and the total against the sweep's.
fn ledger(sc: &Scenario, opts: &RunOptions, p: &Phases, sweep: RunsWork, summary: &mut Summary) {
    let mut total = sweep;
    let mut all_seeds = sc.seeds.clone();
    if let Some(t) = p.tuning {
        let configs = distinct(
            t.records.iter().filter(|r| r.method == t.records[0].method).map(|r| r.config.clone()),
        )
        .len();
        let tune_seeds = distinct(t.records.iter().map(|r| r.seed));
        summary.add(
            "protocol",
            "tuning",
            format!("{configs} configurations on tuning seed(s) {tune_seeds:?}, {}", t.work.line()),
        );
        summary.add("invocation", "tuning runs", p.tune_done.line());
        p.tune_done.numbers(summary, "tuning");
        total.absorb(&t.work);
        all_seeds.extend(tune_seeds);
    }
    if let Some(cal) = p.calibration {
        summary.add(
            "protocol",
            "calibration",
            format!("{}, {}", pilot_words(&sc.pilot_seeds), cal.work.line()),
        );
        summary.add(
            "protocol",
            "calibration rule",
            format!(
                "{}: settled within {} of a budget, one run per budget",
                calibrate::RULE,
                sc.calibration_aim
            ),
        );
        summary.add("invocation", "calibration runs", p.cal_done.line());
        p.cal_done.numbers(summary, "calibration");
        summary.number("protocol", "calibration_rule", calibrate::RULE as f64);
        total.absorb(&cal.work);
        all_seeds.extend(&sc.pilot_seeds);
    }
    summary.add(
        "protocol",
        "sweep",
        format!("{} reported seed(s), {}", sc.seeds.len(), sweep.line()),
    );
    summary.add("protocol", "ledger", total.wall_line());
    total.wall_ledger().numbers(summary, "protocol", "ledger");
    let shared = Ledger::of_seeds(sc, opts, &all_seeds);
    summary.add("protocol", "shared ledger", shared.line("stages"));
    shared.numbers(summary, "protocol", "shared");
    summary.add("protocol", "total", format!("{}, each run charged as in the compute table (its own work and the shared stages it stands on): {:.2} times the sweep's model FLOPs; SFT, preference data and reward model trained on {} seeds instead of {}", total.line(), total.work[0] / sweep.work[0], all_seeds.len(), sc.seeds.len()));
}

/// `summary.csv` (once, with every row), and the tuning's and the calibration's tables.
fn write(sc: &Scenario, opts: &RunOptions, p: &Phases, summary: &Summary) -> Result<()> {
    let out: PathBuf = opts.results_root.join(&sc.name);
    write_atomic(&out.join("summary.csv"), summary.to_csv().as_bytes())?;
    write_atomic(&out.join("numbers.csv"), summary.numbers_csv().as_bytes())?;
    if let Some(cal) = p.calibration {
        write_atomic(&out.join("calibration.csv"), csv_text(&cal.records).as_bytes())?;
    }
    if let Some(t) = p.tuning {
        write_atomic(&out.join("tuning.csv"), csv_text(&t.records).as_bytes())?;
    }
    Ok(())
}
