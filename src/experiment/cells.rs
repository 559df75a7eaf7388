//! A sweep's cells (one method run of one seed, or a seed's Best-of-N): which are pending, and
//! running them, in this process or as child processes (`alignlab cell`) `jobs` at a time.

use super::{folders, method_stage};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Child;
use std::time::Instant;

use super::options::RunOptions;
use super::progress::{cell_line, Tag};
use super::scenario::{Override, Scenario};
use super::shared::{with_shared, with_stages};
use super::summary::Summary;
use crate::log::{write_atomic, Metrics};

/// A cell: (seed, index in the seed's cells, label or, for a failed one, its error).
pub type Cell = (u64, usize, String);

/// Runs a pilot scenario's tables with extra overrides: `(pilot, tables, overrides)` (the
/// tuning's and the calibration's runs, counted by the protocol).
pub type PilotRunner<'a> = &'a dyn Fn(&Scenario, &[String], &[Override]) -> Result<()>;

/// One cell of a sweep: a method run (index into `sc.methods`) or, at index
/// `sc.methods.len()`, Best-of-N, for `sc.seed`. The shared stages are reused from the run
/// folder (or computed, the first time).
pub fn run_cell(sc: &Scenario, opts: &RunOptions, index: usize) -> Result<()> {
    let mut metrics = Metrics::default();
    let mut summary = Summary::default();
    crate::profile::stage("load", &format!("cell{index}"), sc.seed, "startup");
    let done = with_shared(sc, opts, &mut metrics, &mut summary, |shared, metrics, _| {
        let mut evals = Metrics::default();
        match sc.methods.get(index) {
            Some(m) => method_stage::method_stage(sc, m, shared, opts, metrics, &mut evals),
            None => match &sc.best_of_n {
                Some(grid) if index == sc.methods.len() => {
                    method_stage::best_of_n_stage(sc, grid, shared, opts, metrics, &mut evals)
                }
                _ => anyhow::bail!(
                    "cell {index} does not exist: the scenario has {} method runs{}",
                    sc.methods.len(),
                    if sc.best_of_n.is_some() { " and Best-of-N" } else { "" }
                ),
            },
        }
    });
    // For the sweep's profile (read by `run_cells`).
    write_atomic(&cell_profile_path(sc, opts, sc.seed, index), profile_rows().to_csv().as_bytes())?;
    done
}

fn cell_profile_path(sc: &Scenario, opts: &RunOptions, seed: u64, index: usize) -> PathBuf {
    opts.runs_root.join(&sc.name).join("cells").join(format!("seed{seed}-cell{index}.profile.csv"))
}

/// This process's profile so far as rows `profile/{phase}/wall_s|cpu_s|gflop` of each stage.
pub fn profile_rows() -> Metrics {
    let mut m = Metrics::default();
    for ((stage, phase), c) in crate::profile::snapshot() {
        let (method, setting, seed) = stage;
        m.push(&method, &setting, seed, 0, &format!("profile/{phase}/wall_s"), c.wall_s);
        m.push(&method, &setting, seed, 0, &format!("profile/{phase}/cpu_s"), c.cpu_s);
        m.push(&method, &setting, seed, 0, &format!("profile/{phase}/gflop"), c.flops / 1e9);
    }
    m
}

/// What the cells of a sweep cost: their profiles, and the time job slots stood idle.
#[derive(Default)]
pub(super) struct CellsProfile {
    pub rows: Metrics,
    /// Job-slot seconds with no cell running, from the first start to the last exit.
    pub idle_s: f64,
}

/// The cells of a sweep that have not finished: (seed, index, label), in the order a sweep
/// starts them: the costliest first (by [`Method::cost`]; ties in file order), so that no
/// long cell starts last and leaves the other job slots idle at the end.
pub fn pending_cells(sc: &Scenario, opts: &RunOptions) -> Vec<Cell> {
    let mut out = Vec::new();
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        for (i, m) in s.methods.iter().enumerate() {
            if !folders::method_done(&s, m, opts) {
                let label = format!("{} seed {seed}", cell_name(&s, i));
                out.push((cell_cost(&s, i), (seed, i, label)));
            }
        }
        if let Some(grid) = &s.best_of_n {
            if !folders::best_of_n_done(&s, grid, opts) {
                let n = s.methods.len();
                let label = format!("{} seed {seed}", cell_name(&s, n));
                out.push((cell_cost(&s, n), (seed, n, label)));
            }
        }
    }
    // A stable sort: ties keep the file's order.
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.into_iter().map(|(_, cell)| cell).collect()
}

/// A cell of seed `sc.seed` by name: a method run's name and setting, or `best_of_n`.
pub fn cell_name(sc: &Scenario, index: usize) -> String {
    match sc.methods.get(index) {
        Some(m) => format!("{} {}", m.name(), m.setting()),
        None => "best_of_n".into(),
    }
}

/// The estimated work of `cells` (see [`cell_cost`]), for the run's clock.
pub(super) fn cells_cost(sc: &Scenario, cells: &[Cell]) -> f64 {
    cells.iter().map(|c| cell_cost(&sc.with_seed(c.0), c.1)).sum()
}

/// A cell of seed `sc.seed`'s estimated work ([`Method::cost`]'s units): a method run's, or
/// Best-of-N's (every candidate generated and scored, at each temperature).
pub fn cell_cost(sc: &Scenario, index: usize) -> f64 {
    match sc.methods.get(index) {
        Some(m) => m.cost(&sc.train),
        None => {
            let n = sc.world.n_eval_prompts()
                * sc.eval.samples_per_prompt
                * sc.best_of_n.iter().flatten().max().copied().unwrap_or(1);
            n as f64 * 2.0 * (1 + sc.eval.temperatures.len()) as f64
        }
    }
}

/// Run the pending cells as child processes (`alignlab cell ...`), `jobs` at a time. Returns
/// the failed cells with the tail of their error output.
fn run_cells(
    sc: &Scenario,
    opts: &RunOptions,
    pending: Vec<Cell>,
) -> Result<(Vec<Cell>, CellsProfile)> {
    let mut prof = CellsProfile::default();
    if pending.is_empty() {
        return Ok((vec![], prof));
    }
    // The running binary; if it was replaced on disk meanwhile (a rebuild), the path it was
    // started by.
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .or_else(|| std::env::args().next().map(PathBuf::from))
        .context("cannot find the alignlab binary to run cells")?;
    let threads = opts.threads_per_run();
    let note = format!(
        "alignlab: {} cells, {} at a time, {threads} torch threads each",
        pending.len(),
        opts.jobs
    );
    opts.progress.note(&sc.name, None, &note);
    let (total, mut finished) = (pending.len(), 0usize);
    super::progress::start_run_clock(cells_cost(sc, &pending));
    let mut failed = Vec::new();
    let mut queue = pending.into_iter();
    let mut running: Vec<(Child, Cell, PathBuf, Instant)> = Vec::new();
    let t_first = std::time::Instant::now();
    let mut busy_s = 0.0;
    loop {
        while running.len() < opts.jobs {
            let Some((seed, index, label)) = queue.next() else {
                break;
            };
            running.push(spawn_cell(sc, opts, (&exe, threads), (seed, index, label))?);
        }
        if running.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            if let Some(status) = running[i].0.try_wait()? {
                let (_, cell, log, started) = running.remove(i);
                finished += 1;
                let wall = started.elapsed().as_secs_f64();
                busy_s += wall;
                // The cell's own profile, and what it cost before its first line ran (exec,
                // loading libtorch): its wall time here less the time it accounted for.
                absorb_profile(sc, opts, &cell, wall, &mut prof);
                let s = sc.with_seed(cell.0);
                super::progress::cell_finished(cell_cost(&s, cell.1));
                let tag = Tag {
                    scenario: sc.name.clone(),
                    seed: cell.0,
                    cell: cell_name(&s, cell.1),
                    stage: "cell".into(),
                };
                if status.success() {
                    cell_line(opts.progress, &tag, wall, (finished, total));
                } else {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: String = text
                        .lines()
                        .rfind(|l| l.starts_with("error"))
                        .unwrap_or("(no error line)")
                        .to_string();
                    eprintln!("  FAILED: {} ({}); log: {}", cell.2, tail, log.display());
                    failed.push((cell.0, cell.1, tail));
                }
            } else {
                i += 1;
            }
        }
    }
    prof.idle_s = (opts.jobs as f64 * t_first.elapsed().as_secs_f64() - busy_s).max(0.0);
    Ok((failed, prof))
}

/// Start `cell` as a child process (`alignlab cell ... --threads T`), its output to its log.
fn spawn_cell(
    sc: &Scenario,
    opts: &RunOptions,
    (exe, threads): (&std::path::Path, usize),
    (seed, index, label): Cell,
) -> Result<(Child, Cell, PathBuf, Instant)> {
    let log =
        opts.runs_root.join(&sc.name).join("cells").join(format!("seed{seed}-cell{index}.log"));
    std::fs::create_dir_all(log.parent().unwrap())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("cell")
        .args(&opts.cell_args)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--index")
        .arg(index.to_string())
        .arg("--threads")
        .arg(threads.to_string());
    let f = std::fs::File::create(&log)?;
    cmd.stdout(f.try_clone()?).stderr(f);
    let child = cmd.spawn().with_context(|| format!("cannot start cell {label}"))?;
    Ok((child, (seed, index, label), log, Instant::now()))
}

/// Add a finished cell's profile to the sweep's, with the time it spent before its first line
/// ran (exec, loading libtorch): its wall time `wall` less the time it accounted for.
fn absorb_profile(
    sc: &Scenario,
    opts: &RunOptions,
    cell: &Cell,
    wall: f64,
    prof: &mut CellsProfile,
) {
    if let Ok(m) = Metrics::read(&cell_profile_path(sc, opts, cell.0, cell.1)) {
        let accounted: f64 =
            m.rows.iter().filter(|r| r.metric.ends_with("/wall_s")).map(|r| r.value).sum();
        prof.rows.push(
            "load",
            &format!("cell{}", cell.1),
            cell.0,
            0,
            "profile/exec/wall_s",
            (wall - accounted).max(0.0),
        );
        prof.rows.extend(m);
    }
}

/// How many method runs (cells: a Best-of-N seed is one) an invocation ran and how many it found
/// cached from an earlier one; `summary.csv` keeps one per stage (`invocation` rows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunsDone {
    pub ran: usize,
    pub cached: usize,
}

impl RunsDone {
    /// The cells of `sc` in `pending` (not finished) out of `total`.
    pub(super) fn of(total: usize, pending: usize) -> RunsDone {
        RunsDone { ran: pending, cached: total - pending }
    }

    pub fn absorb(&mut self, o: RunsDone) {
        self.ran += o.ran;
        self.cached += o.cached;
    }

    /// Its numbers in `summary` under `runs:<stage>`.
    pub fn numbers(&self, summary: &mut super::Summary, stage: &str) {
        summary.number(&format!("runs:{stage}"), "ran", self.ran as f64);
        summary.number(&format!("runs:{stage}"), "cached", self.cached as f64);
    }

    /// As `summary.csv` gives it: `12 run, 3 found cached`.
    pub fn line(&self) -> String {
        format!("{} run, {} found cached", self.ran, self.cached)
    }

    /// The inverse of [`RunsDone::line`].
    pub fn parse(s: &str) -> Option<RunsDone> {
        let (ran, rest) = s.split_once(" run, ")?;
        Some(RunsDone {
            ran: ran.parse().ok()?,
            cached: rest.strip_suffix(" found cached")?.parse().ok()?,
        })
    }
}

/// The runs of `sc`'s methods whose table is in `tables` (the calibration's pilot runs), each
/// seed's shared stages first; as cells with `jobs > 1`, in this process otherwise. Finished runs
/// are reused; a failed one is an error. Returns how many were run and how many found cached.
pub fn run_tables(sc: &Scenario, opts: &RunOptions, tables: &[String]) -> Result<RunsDone> {
    let pending: Vec<_> = pending_cells(sc, opts)
        .into_iter()
        .filter(|(seed, i, _)| {
            sc.with_seed(*seed).methods.get(*i).is_some_and(|m| tables.contains(&m.name()))
        })
        .collect();
    let done = RunsDone::of(
        sc.seeds.len() * sc.methods.iter().filter(|m| tables.contains(&m.name())).count(),
        pending.len(),
    );
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        with_stages(&s, opts, |shared, metrics| {
            if opts.jobs > 1 {
                return Ok(());
            }
            for m in s.methods.iter().filter(|m| tables.contains(&m.name())) {
                method_stage::method_stage(&s, m, shared, opts, metrics, &mut Metrics::default())?;
            }
            Ok(())
        })?;
    }
    if opts.jobs > 1 {
        let _wait = crate::profile::enter_stage("cells", "", 0, "wait");
        let (failed, _) = run_cells(sc, opts, pending)?;
        if let Some((seed, _, e)) = failed.first() {
            anyhow::bail!("a pilot run of the calibration failed (seed {seed}): {e}; fix: see its log under {}/cells, then rerun", opts.runs_root.join(&sc.name).display());
        }
    }
    Ok(done)
}

/// Run `pending` cells of `sc`: as child processes with `jobs > 1` (each seed's shared stages
/// first, here, so that the cells only read them), else in this process. Returns the failed
/// cells with their error.
pub(super) fn run_pending(
    sc: &Scenario,
    opts: &RunOptions,
    pending: Vec<Cell>,
) -> Result<(Vec<Cell>, CellsProfile)> {
    let seeds: Vec<u64> =
        sc.seeds.iter().copied().filter(|s| pending.iter().any(|p| p.0 == *s)).collect();
    if opts.jobs > 1 {
        for &seed in &seeds {
            with_stages(&sc.with_seed(seed), opts, |_, _| Ok(()))?;
        }
        let _wait = crate::profile::enter_stage("cells", "", 0, "wait");
        return run_cells(sc, opts, pending);
    }
    let mut failed = Vec::new();
    for seed in seeds {
        let s = sc.with_seed(seed);
        with_stages(&s, opts, |shared, metrics| {
            for (_, i, label) in pending.iter().filter(|p| p.0 == seed) {
                let done = match s.methods.get(*i) {
                    Some(m) => method_stage::method_stage(
                        &s,
                        m,
                        shared,
                        opts,
                        metrics,
                        &mut Metrics::default(),
                    ),
                    None => method_stage::best_of_n_stage(
                        &s,
                        s.best_of_n.as_ref().expect("a Best-of-N cell"),
                        shared,
                        opts,
                        metrics,
                        &mut Metrics::default(),
                    ),
                };
                match done {
                    Ok(()) => _ = super::progress::cell_finished(cell_cost(&s, *i)),
                    Err(e) => {
                        eprintln!("error: {label}: {e:#}");
                        failed.push((seed, *i, format!("{e:#}")));
                    }
                }
            }
            Ok(())
        })?;
    }
    Ok((failed, CellsProfile::default()))
}

/// `alignlab cell`'s arguments checked against the scenario: the seed is one of its seeds and
/// the index names a cell (`file` for the message).
pub fn check_cell(sc: &Scenario, seed: u64, index: usize, file: &std::path::Path) -> Result<()> {
    anyhow::ensure!(
        sc.seeds.contains(&seed),
        "seed {seed} is not in the scenario's seeds {:?}; fix: pick one of them",
        sc.seeds
    );
    let cells = sc.methods.len() + usize::from(sc.best_of_n.is_some());
    anyhow::ensure!(index < cells, "cell {index} does not exist: the scenario has {cells} cells per seed (indices 0..{}); fix: `alignlab cells {}` lists them", cells.saturating_sub(1), file.display());
    Ok(())
}

/// `alignlab cells`: a line per cell, `--seed S --index I`, its method and setting, and whether
/// it is pending or done.
pub fn listing(sc: &Scenario, opts: &RunOptions) -> String {
    let pending = pending_cells(sc, opts);
    let mut out = String::new();
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        let methods = s.methods.iter().map(|m| format!("{} {}", m.name(), m.setting()));
        let labels = methods.chain(s.best_of_n.iter().map(|_| "best_of_n".to_string()));
        for (i, label) in labels.enumerate() {
            let done = !pending.iter().any(|p| p.0 == seed && p.1 == i);
            let state = if done { "done" } else { "pending" };
            out += &format!("--seed {seed} --index {i}\t{label}\t{state}\n");
        }
    }
    out
}
