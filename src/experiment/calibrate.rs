//! Budget-calibrated grids (`[sweep] budgets`): every method evaluated at the same KL budgets.
//!
//! On a pilot seed that is never reported (`[sweep] pilot_seed`, or several: `pilot_seeds`, where
//! a setting's landed KL is the mean of its final KLs over them), each method table's KL knob
//! (`target_kl` or `kl_coef` for PPO, PPO-GT and the policy-gradient family, `beta` for the DPO
//! family and online DPO, `alpha` for Unlikelihood) is searched in log space for the setting
//! whose converged run (its final checkpoint) lands near each budget:
//! 1. round 0 runs the table's own grid;
//! 2. each later round proposes, for every budget not yet *settled*, the setting interpolated
//!    linearly in (log setting, log KL) between the two runs that bracket it, or extrapolated
//!    along the two runs nearest it (at most a factor 4 past the last one tried). A budget is
//!    settled by a run that lands within `[sweep] calibration_aim` of it (default 10%) and
//!    nearer it in log KL than any other budget: the aim is tighter than the 25% the landed-KL
//!    table asks of every test seed, because test seeds scatter around the pilot by 10 to 20%
//!    (Unlikelihood's alpha 0.206 landed 0.81 on the pilot and 0.74 to 0.90 on the test
//!    seeds), and one run serves one budget (a run at 2.00 is within 25% of both 2 and 2.5, but
//!    it settles only 2);
//! 3. after `[sweep] calibration_rounds` rounds, each budget takes, among the runs nearer it than
//!    any other budget, the one that landed nearest it in log KL (where there is none, the
//!    nearest run of all, which then serves two budgets), and the table's grid becomes those
//!    settings.
//!
//! [`RULE`] numbers this search; `summary.csv` records it, and the paper's provenance table
//! marks a folder calibrated under an older rule as needing a rerun.
//!
//! Best-of-N needs no pilot: its KL is the analytic log N - (N-1)/N, and N is the integer whose
//! KL is nearest each budget in log KL. Tables without a knob (Preferred-FT) run as written.
//! The pilot runs are ordinary cells of the pilot seed, cached like any other, so a rerun
//! calibrates from its cache in seconds.
//!
//! **Top-ups** (`[sweep] top_up_rounds`, default 0). A setting fixed on the pilot can still miss
//! a budget on a test seed: PPO-GT's same target KL lands 25% apart from seed to seed, and an
//! Unlikelihood alpha that lands at 4 nats on the pilot diverges on one test seed. After the
//! sweep, for every (calibrated table, budget the pilot reached, test seed) whose calibrated run
//! landed more than 25% from the budget, a run of that seed alone is added at the setting
//! [`propose`] gives from *that seed's* runs of the table (setting, final KL); up to
//! `top_up_rounds` rounds, each from the runs so far ([`top_up_value`]). The choice reads final
//! KLs only, never gold, so it does not select on what is reported; the added runs are
//! `[sweep] seed_runs` of the results' scenario, and the report's landed-KL table shows them
//! beside the run they stand in for. Every seed still reports every calibrated run; a top-up
//! adds a point to that seed's frontier, not a replacement.

use super::cells::PilotRunner;
use super::folders;
use anyhow::{Context, Result};

pub use super::methods::knob;
use super::scenario::{Override, Scenario, SeedRun};
pub use super::scenario::{AIM, TOLERANCE};
use super::{methods, Metrics, RunOptions};

/// The version of the search: 1 settled a budget at 25% and let one run serve two budgets
/// (the fair-protocol folders up to commit 745c076); 2 is the module's header.
pub const RULE: u32 = 2;

/// One calibrated setting: a table's knob value for a budget, and where it landed on the pilot.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationRecord {
    pub table: String,
    pub key: String,
    #[serde(with = "crate::log::float_text")]
    pub budget: f64,
    #[serde(with = "crate::log::float_text")]
    pub value: f64,
    /// The converged run's KL on the pilot seed, the mean over them where there are several
    /// (Best-of-N: the analytic value).
    #[serde(with = "crate::log::float_text")]
    pub pilot_kl: f64,
    pub within_tolerance: bool,
    /// Pilot runs of this table, every round together (0 for Best-of-N).
    pub pilot_runs: usize,
}

impl Default for CalibrationRecord {
    fn default() -> Self {
        CalibrationRecord {
            table: String::new(),
            key: String::new(),
            budget: f64::NAN,
            value: f64::NAN,
            pilot_kl: f64::NAN,
            within_tolerance: false,
            pilot_runs: 0,
        }
    }
}

/// The calibrated grids as overrides, and the table of what each budget got.
pub struct Calibration {
    pub overrides: Vec<Override>,
    pub records: Vec<CalibrationRecord>,
    /// The pilot runs' work.
    pub work: super::RunsWork,
}

/// Best-of-N's analytic KL bound.
pub fn best_of_n_kl(n: usize) -> f64 {
    let n = n as f64;
    n.ln() - (n - 1.0) / n
}

/// The N whose Best-of-N KL is nearest `budget` in log KL (2 <= N <= `best_of_n::MAX_N`: past
/// KL 4.55 every budget gets the largest N, and the landed-KL table says how far it falls short).
pub fn best_of_n_for(budget: f64) -> usize {
    let mut best = (2usize, f64::INFINITY);
    let mut n = 2usize;
    while n <= crate::algo::best_of_n::MAX_N {
        let d = (best_of_n_kl(n) / budget).ln().abs();
        if d < best.1 {
            best = (n, d);
        }
        if best_of_n_kl(n) > 2.0 * budget {
            break;
        }
        n += 1;
    }
    best.0
}

/// The setting a next round tries for `budget`, from the (setting, landed KL) runs so far, all
/// positive: interpolated in (log setting, log KL) between the runs that bracket the budget,
/// else extrapolated along the two runs nearest it, at most a factor 4 past them. With one run,
/// a factor 2 in the direction `sign` (+1: KL grows with the setting, -1: it falls).
pub fn propose(runs: &[(f64, f64)], budget: f64, sign: f64) -> f64 {
    let mut pts: Vec<(f64, f64)> = runs
        .iter()
        .filter(|(v, k)| *v > 0.0 && *k > 0.0 && k.is_finite())
        .map(|(v, k)| (v.ln(), k.ln()))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts.dedup_by(|a, b| a.0 == b.0);
    let b = budget.ln();
    match pts.len() {
        0 => f64::NAN,
        1 => (pts[0].0 + sign * (2f64.ln()) * (b - pts[0].1).signum()).exp(),
        _ => {
            // Bracketing neighbours first.
            for w in pts.windows(2) {
                let ((x0, y0), (x1, y1)) = (w[0], w[1]);
                if (y0 - b) * (y1 - b) <= 0.0 && y0 != y1 {
                    return (x0 + (b - y0) * (x1 - x0) / (y1 - y0)).exp();
                }
            }
            // Not bracketed: the two runs nearest the budget in KL, their slope.
            let mut near = pts.clone();
            near.sort_by(|p, q| (p.1 - b).abs().total_cmp(&(q.1 - b).abs()));
            let ((x0, y0), (x1, y1)) = (near[0], near[1]);
            let slope = if y1 != y0 && x1 != x0 { (y1 - y0) / (x1 - x0) } else { sign };
            let step = ((b - y0) / slope).clamp(-4f64.ln(), 4f64.ln());
            (x0 + step).exp()
        }
    }
}

/// A setting rounded to 3 significant digits, so that labels stay readable.
pub fn round3(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(2 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

fn within(kl: f64, budget: f64) -> bool {
    (kl - budget).abs() <= TOLERANCE * budget
}

/// The budget nearest `kl` in log KL (the first of a tie).
pub fn nearest_budget(kl: f64, budgets: &[f64]) -> Option<f64> {
    budgets.iter().copied().min_by(|a, b| (kl / a).ln().abs().total_cmp(&(kl / b).ln().abs()))
}

/// Whether the run landing at `kl` settles `budget`: within `aim` of it and nearer it than any
/// other budget.
pub fn settles(kl: f64, budget: f64, budgets: &[f64], aim: f64) -> bool {
    kl > 0.0
        && kl.is_finite()
        && (kl - budget).abs() <= aim * budget
        && nearest_budget(kl, budgets) == Some(budget)
}

/// The (setting, landed KL) run each budget takes: among the runs nearer it than any other
/// budget, the nearest in log KL; where there is none, the nearest of all.
pub fn pick(runs: &[(f64, f64)], budget: f64, budgets: &[f64]) -> Option<(f64, f64)> {
    let ok: Vec<(f64, f64)> =
        runs.iter().copied().filter(|r| r.1 > 0.0 && r.1.is_finite()).collect();
    let dist = |r: &&(f64, f64)| (r.1 / budget).ln().abs();
    let own = ok
        .iter()
        .filter(|r| nearest_budget(r.1, budgets) == Some(budget))
        .min_by(|p, q| dist(p).total_cmp(&dist(q)));
    own.copied().or_else(|| nearest_run(runs, budget))
}

/// The (setting, landed KL) run that landed nearest `budget` in log KL (runs with a positive,
/// finite KL).
fn nearest_run(runs: &[(f64, f64)], budget: f64) -> Option<(f64, f64)> {
    runs.iter()
        .copied()
        .filter(|r| r.1 > 0.0 && r.1.is_finite())
        .min_by(|p, q| (p.1 / budget).ln().abs().total_cmp(&(q.1 / budget).ln().abs()))
}

/// The value of `key` in a method's setting label as `eval.csv` writes it (`beta=0.1`,
/// `target_kl=1;rollout_batch=64`, Best-of-N's `n=16`): for the report, which has the CSVs
/// only. A running scenario reads its methods' values typed (`Method::grid_value`).
pub fn setting_value(setting: &str, key: &str) -> Option<f64> {
    setting.split(';').find_map(|p| p.strip_prefix(&format!("{key}="))).and_then(|v| v.parse().ok())
}

fn grid_override(table: &str, key: &str, values: &[f64]) -> Override {
    Override::floats(&format!("{table}.{key}"), values)
}

/// Calibrate `sc`'s grids to its budgets (see the module's header). `load` reads the scenario
/// with extra overrides; `run_pilot` runs the methods of the pilot scenario (loaded with the
/// overrides it is given) whose table is listed (cached cells are reused).
pub fn calibrate(
    sc: &Scenario,
    opts: &RunOptions,
    load: &dyn Fn(&[Override]) -> Result<Scenario>,
    run_pilot: PilotRunner,
) -> Result<Calibration> {
    let mut knobs = knobs_of(sc)?;
    let mut work = super::RunsWork::default();
    let pilot_base = vec![
        Override::ints(
            "sweep.seeds",
            &sc.pilot_seeds.iter().map(|&s| s as i64).collect::<Vec<_>>(),
        ),
        Override::new("sweep.budgets", toml::Value::Array(vec![])),
        Override::new("sweep.seed_runs", toml::Value::Array(vec![])),
        Override::new("sweep.top_up_rounds", 0),
    ];
    for round in 0..=sc.calibration_rounds {
        // This round's settings: round 0 the grids, then proposals for the budgets not reached.
        let todo = proposals(sc, &knobs, round);
        if todo.is_empty() {
            break;
        }
        let mut ov = pilot_base.clone();
        ov.extend(todo.iter().map(|(i, v)| grid_override(&knobs[*i].table, knobs[*i].key, v)));
        let pilot = load(&ov)?;
        let names: Vec<String> = todo.iter().map(|(i, _)| knobs[*i].table.clone()).collect();
        let note = format!(
            "calibration round {round}: {}",
            todo.iter()
                .map(|(i, v)| format!("{} {v:?}", knobs[*i].table))
                .collect::<Vec<_>>()
                .join(", ")
        );
        opts.progress.note(&sc.name, None, &note);
        run_pilot(&pilot, &names, &ov)?;
        landings(sc, &pilot, &names, &mut knobs, opts, &mut work)?;
    }
    let (records, overrides) = grids(sc, &knobs);
    Ok(Calibration { overrides, records, work })
}

/// A calibrated table: its knob, the way KL moves with it (for a first step from a single
/// run), its own grid (round 0) and the (setting, landed KL) of its pilot runs.
struct Knob {
    table: String,
    key: &'static str,
    sign: f64,
    grid: Vec<f64>,
    runs: Vec<(f64, f64)>,
}

/// Every table of `sc` with a KL knob among its grids, each once.
fn knobs_of(sc: &Scenario) -> Result<Vec<Knob>> {
    let resolved: toml::Table =
        toml::from_str(&sc.resolved_toml).context("the resolved scenario is TOML")?;
    let mut knobs: Vec<Knob> = Vec::new();
    for m in &sc.methods {
        let table = m.name();
        if knobs.iter().any(|k| k.table == table) {
            continue;
        }
        if let Some(key) = knob(&resolved, &table) {
            let sign = sign_of(key);
            let grid = sc
                .methods
                .iter()
                .filter(|m| m.name() == table)
                .filter_map(|m| m.grid_value(key))
                .collect();
            knobs.push(Knob { table, key, sign, grid, runs: vec![] });
        }
    }
    Ok(knobs)
}

/// A round's settings per knob (index, values): round 0 the grids, then proposals for the
/// budgets no run has settled yet, each value once and not run before.
fn proposals(sc: &Scenario, knobs: &[Knob], round: usize) -> Vec<(usize, Vec<f64>)> {
    let mut todo: Vec<(usize, Vec<f64>)> = Vec::new();
    for (i, k) in knobs.iter().enumerate() {
        let vals: Vec<f64> = if round == 0 {
            k.grid.clone()
        } else {
            let mut v: Vec<f64> = sc
                .budgets
                .iter()
                .filter(|b| {
                    !k.runs.iter().any(|r| settles(r.1, **b, &sc.budgets, sc.calibration_aim))
                })
                .map(|b| round3(propose(&k.runs, *b, k.sign)))
                .filter(|v| v.is_finite() && *v > 0.0)
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v.dedup();
            v.retain(|x| !k.runs.iter().any(|r| r.0 == *x));
            v
        };
        if !vals.is_empty() {
            todo.push((i, vals));
        }
    }
    todo
}

/// Where each new pilot run of the round landed: its final KL, the mean over the pilot seeds;
/// the runs' work goes into `work`.
fn landings(
    sc: &Scenario,
    pilot: &Scenario,
    names: &[String],
    knobs: &mut [Knob],
    opts: &RunOptions,
    work: &mut super::RunsWork,
) -> Result<()> {
    for m in pilot.methods.iter().filter(|m| names.contains(&m.name())) {
        let k = knobs.iter_mut().find(|k| k.table == m.name()).expect("a calibrated table");
        let Some(v) = m.grid_value(k.key) else {
            continue;
        };
        if !k.runs.iter().any(|r| r.0 == v) {
            // Where a setting lands: its final KL, the mean over the pilot seeds.
            let mut kls = Vec::new();
            for &seed in &sc.pilot_seeds {
                let e = pilot_evals(&pilot.with_seed(seed), m, opts)?;
                kls.push(last_kl(&e).with_context(|| {
                    format!(
                        "the pilot run {} {} (seed {seed}) has no eval/kl_sel",
                        m.name(),
                        m.setting()
                    )
                })?);
                work.add(&e);
                work.add_timing(&folders::run_timing(&pilot.with_seed(seed), m, opts));
            }
            k.runs.push((v, kls.iter().sum::<f64>() / kls.len() as f64));
        }
    }
    Ok(())
}

/// Each budget's run (`pick`) and the calibrated grids; Best-of-N's N per budget, analytic.
fn grids(sc: &Scenario, knobs: &[Knob]) -> (Vec<CalibrationRecord>, Vec<Override>) {
    let mut records = Vec::new();
    let mut overrides = Vec::new();
    for k in knobs {
        let mut grid: Vec<f64> = Vec::new();
        for &b in &sc.budgets {
            if let Some((v, kl)) = pick(&k.runs, b, &sc.budgets) {
                records.push(CalibrationRecord {
                    table: k.table.clone(),
                    key: k.key.to_string(),
                    budget: b,
                    value: v,
                    pilot_kl: kl,
                    within_tolerance: within(kl, b),
                    pilot_runs: k.runs.len(),
                });
                if !grid.contains(&v) {
                    grid.push(v);
                }
            }
        }
        if !grid.is_empty() {
            overrides.push(grid_override(&k.table, k.key, &grid));
        }
    }
    if sc.best_of_n.is_some() {
        let mut grid: Vec<usize> = Vec::new();
        for &b in &sc.budgets {
            let n = best_of_n_for(b);
            records.push(CalibrationRecord {
                table: "best_of_n".into(),
                key: "n".into(),
                budget: b,
                value: n as f64,
                pilot_kl: best_of_n_kl(n),
                within_tolerance: within(best_of_n_kl(n), b),
                pilot_runs: 0,
            });
            if !grid.contains(&n) {
                grid.push(n);
            }
        }
        overrides.push(Override::ints(
            "best_of_n.n",
            &grid.iter().map(|&n| n as i64).collect::<Vec<_>>(),
        ));
    }
    (records, overrides)
}

/// The way KL moves with a knob: +1 where it grows with the setting (target KL, alpha), -1
/// where it falls (beta, a KL coefficient).
pub fn sign_of(key: &str) -> f64 {
    if key == "target_kl" || key == "alpha" {
        1.0
    } else {
        -1.0
    }
}

/// The setting a top-up round runs on one seed for `budget`, or None when none is needed or
/// none can be proposed. `calibrated` is the final KL of the seed's calibrated run for the
/// budget, `topped` those of the top-ups it has had, and `runs` every run of the table on the
/// seed as (setting, final KL). None when one of them lands within 25% of the budget, or when
/// no setting can be proposed.
///
/// A seed's KL need not be monotone in the knob where it saturates or diverges (summarize's PPO
/// on seed 3: target 2.66 lands lower than target 2), and extrapolating along two such runs
/// points the wrong way. So the proposal must move from the run nearest the budget in the
/// direction the knob moves KL (`sign`); where it does not, it is a factor 2 that way.
pub fn top_up_value(
    calibrated: f64,
    topped: &[f64],
    runs: &[(f64, f64)],
    budget: f64,
    sign: f64,
) -> Option<f64> {
    if std::iter::once(&calibrated).chain(topped).any(|kl| within(*kl, budget)) {
        return None;
    }
    let mut v = round3(propose(runs, budget, sign));
    let positive: Vec<(f64, f64)> = runs.iter().copied().filter(|r| r.0 > 0.0).collect();
    if let Some((x0, k0)) = nearest_run(&positive, budget) {
        let way = sign * (budget / k0).ln().signum();
        if v.is_finite() && v > 0.0 && (v / x0).ln() * way <= 0.0 {
            v = round3(x0 * 2f64.powf(way));
        }
    }
    // A setting the seed has run already would add nothing (where KL is flat in the knob, the
    // factor 2 lands on an earlier top-up): step on from that run by factors of 2, the way its
    // own KL must move, to a setting not yet run.
    for _ in 0..8 {
        let Some(&(x, k)) = runs.iter().find(|r| r.0 == v) else {
            break;
        };
        let way = sign * (budget / k).ln().signum();
        if !(way != 0.0 && k.is_finite()) {
            return None;
        }
        v = round3(x * 2f64.powf(way));
    }
    (v.is_finite() && v > 0.0 && !runs.iter().any(|r| r.0 == v)).then_some(v)
}

/// A run's final KL on the selection half of the held-out prompts (`eval/kl_sel` at the last
/// step evaluated): calibration and top-ups never read the test half, which the report reads.
fn last_kl(e: &Metrics) -> Option<f64> {
    e.rows.iter().filter(|r| r.metric == "eval/kl_sel").max_by_key(|r| r.step).map(|r| r.value)
}

/// The final KL of a finished run (None: not finished, or no `eval/kl_sel`).
pub fn final_kl(sc: &Scenario, m: &methods::Method, opts: &RunOptions) -> Option<f64> {
    last_kl(&Metrics::read(&folders::method_dir(sc, m, opts).join("eval.csv")).ok()?)
}

/// One round of top-ups (see the module's header): the seed runs to add, from the finished runs
/// of `sc`'s seeds (its calibrated grids and the top-ups it has) and the calibration's records.
pub fn top_ups(sc: &Scenario, opts: &RunOptions, records: &[CalibrationRecord]) -> Vec<SeedRun> {
    let mut out = Vec::new();
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        // Each table's finished runs on this seed, read once: (table, setting, final KL).
        let finished: Vec<(String, f64, f64)> = s
            .methods
            .iter()
            .filter_map(|m| {
                Some((
                    m.name(),
                    m.grid_value(knob_of(records, &m.name())?)?,
                    final_kl(&s, m, opts)?,
                ))
            })
            .collect();
        for r in records.iter().filter(|r| r.within_tolerance && r.table != "best_of_n") {
            let runs: Vec<(f64, f64)> =
                finished.iter().filter(|f| f.0 == r.table).map(|f| (f.1, f.2)).collect();
            // A failed or missing calibrated run is reported as such, not topped up.
            let Some(calibrated) = runs.iter().find(|x| x.0 == r.value).map(|x| x.1) else {
                continue;
            };
            let topped: Vec<f64> = s
                .seed_runs
                .iter()
                .filter(|(x, _)| x.seed == seed && x.table == r.table && x.budget == r.budget)
                .filter_map(|(x, _)| runs.iter().find(|y| y.0 == x.value).map(|y| y.1))
                .collect();
            if let Some(value) = top_up_value(calibrated, &topped, &runs, r.budget, sign_of(&r.key))
            {
                if !out
                    .iter()
                    .any(|o: &SeedRun| o.seed == seed && o.table == r.table && o.value == value)
                {
                    out.push(SeedRun { seed, table: r.table.clone(), value, budget: r.budget });
                }
            }
        }
    }
    out
}

/// The knob the calibration's records give `table` (None: not calibrated, or Best-of-N).
fn knob_of<'a>(records: &'a [CalibrationRecord], table: &str) -> Option<&'a str> {
    records.iter().find(|r| r.table == table && r.table != "best_of_n").map(|r| r.key.as_str())
}

/// `[sweep] seed_runs` as an override.
pub fn seed_runs_override(runs: &[SeedRun]) -> Override {
    let items = runs.iter().map(|r| toml::Value::try_from(r).expect("a seed run serializes"));
    Override::new("sweep.seed_runs", items.collect::<Vec<_>>())
}

/// A pilot run's evaluations.
fn pilot_evals(sc: &Scenario, m: &methods::Method, opts: &RunOptions) -> Result<Metrics> {
    let path = folders::method_dir(sc, m, opts).join("eval.csv");
    Metrics::read(&path).with_context(|| {
        format!("the pilot run {} {} left no {}", m.name(), m.setting(), path.display())
    })
}
