//! Running a scenario: stages, run folders, cached checkpoints, results.
//!
//! `runs/<scenario>/<hash>/` holds checkpoints and logs of a stage, keyed by the hash of every
//! setting the stage depends on, so a stage whose settings did not change is reused.
//! `results/<scenario>/` holds the resolved scenario and the CSV outputs.

pub mod calibrate;
pub mod export;
pub mod methods;
pub mod scenario;
pub mod stages;
pub mod tabular;
pub mod tune;

pub use crate::log::{write_atomic, Metrics, Row};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

use crate::algo::sft::{self, SeqData};
use crate::draw::derive_seed;
use crate::experiment::scenario::{Scenario, WorldConfig};
use crate::model::{self, Gpt};
use crate::world::{SentimentWorld, SummarizeWorld, TextWorld};

#[derive(Clone)]
pub struct RunOptions {
    pub results_root: PathBuf,
    pub runs_root: PathBuf,
    pub device: Device,
    /// How training progress is shown (see [`ProgressMode`]).
    pub progress: ProgressMode,
    /// Method runs at a time, as child processes (1: in this process).
    pub jobs: usize,
    /// Torch threads in all (divided among the jobs).
    pub threads: usize,
    /// Arguments that make `alignlab cell` see the same scenario: file, --set, --device, --runs.
    pub cell_args: Vec<String>,
}

impl RunOptions {
    /// The same options with `sets` appended to the cells' `--set` overrides (settings fixed by
    /// the tuning or the calibration, or a pilot's grids).
    pub fn with_sets(&self, sets: &[String]) -> RunOptions {
        let mut o = self.clone();
        for s in sets {
            o.cell_args.extend(["--set".to_string(), s.clone()]);
        }
        o
    }
}

/// Which code produced a result: crate version, commit, numerics version of the stages.
pub fn code_version() -> String {
    format!(
        "alignlab {} (commit {}), numerics {}",
        env!("CARGO_PKG_VERSION"),
        env!("ALIGNLAB_GIT_COMMIT"),
        stages::NUMERICS
    )
}

/// A configuration as TOML text. Cache keys are built from these: a key follows the settings'
/// names and values, never a type's name or its `Debug` output, so moving or renaming a type
/// neither changes a key nor keeps one whose settings changed.
pub fn key_of<T: serde::Serialize>(x: &T) -> String {
    #[derive(serde::Serialize)]
    struct Key<'a, T> {
        v: &'a T,
    }
    toml::to_string(&Key { v: x }).expect("configurations serialize to TOML")
}

/// Short content hash naming a stage's run folder.
pub fn stage_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The built world of a scenario.
pub fn build_world(sc: &Scenario) -> Box<dyn TextWorld> {
    match &sc.world {
        WorldConfig::Sentiment(c) => Box::new(SentimentWorld::new(c, sc.seed)),
        WorldConfig::Summarize(c) => Box::new(SummarizeWorld::new(c, sc.seed)),
        WorldConfig::Dialogue(c) => Box::new(crate::world::DialogueWorld::new(c, sc.seed)),
    }
}

/// What `alignlab run` prints and writes at the end.
#[derive(Default)]
pub struct Summary {
    pub rows: Vec<(String, String, String)>,
    /// The per-method table (header first).
    pub table: Vec<Vec<String>>,
    /// Method runs that failed (the others finished).
    pub failed: Vec<String>,
}

impl Summary {
    pub fn add(&mut self, stage: &str, metric: &str, value: String) {
        self.rows.push((stage.into(), metric.into(), value));
    }

    pub fn print(&self) {
        let w0 = self
            .rows
            .iter()
            .map(|r| r.0.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let w1 = self
            .rows
            .iter()
            .map(|r| r.1.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!("{:w0$}  {:w1$}  value", "stage", "metric");
        for (a, b, c) in &self.rows {
            println!("{a:w0$}  {b:w1$}  {c}");
        }
        if !self.table.is_empty() {
            println!();
            let widths: Vec<usize> = (0..self.table[0].len())
                .map(|j| {
                    self.table
                        .iter()
                        .map(|r| r[j].chars().count())
                        .max()
                        .unwrap()
                })
                .collect();
            for row in &self.table {
                let cells: Vec<String> = row
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:w$}"))
                    .collect();
                println!("{}", cells.join("  ").trim_end());
            }
        }
    }

    pub fn to_csv(&self) -> String {
        let rows: Vec<SummaryRecord> = self
            .rows
            .iter()
            .map(|(stage, metric, value)| SummaryRecord {
                stage: stage.clone(),
                metric: metric.clone(),
                value: value.clone(),
            })
            .collect();
        crate::log::csv_text(&rows)
    }
}

/// One row of `summary.csv`: a stage, what was measured, and its value as text.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SummaryRecord {
    pub stage: String,
    pub metric: String,
    pub value: String,
}

/// How a run shows its progress on stderr.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ProgressMode {
    /// A live bar (stderr is a terminal).
    Bar,
    /// One line per stage every few seconds and at its end: stage, step, rate, ETA (stderr is a
    /// file or a pipe, where a bar would stay silent).
    Lines,
    /// The same as one JSON object per line (`--json-progress`), for wrappers.
    Json,
    /// Nothing (`--quiet`, and the cells a sweep starts).
    Quiet,
}

impl ProgressMode {
    /// `--quiet`, `--json-progress`, else a bar on a terminal and lines elsewhere.
    pub fn choose(quiet: bool, json: bool) -> ProgressMode {
        use std::io::IsTerminal;
        match (quiet, json) {
            (true, _) => ProgressMode::Quiet,
            (_, true) => ProgressMode::Json,
            _ if std::io::stderr().is_terminal() => ProgressMode::Bar,
            _ => ProgressMode::Lines,
        }
    }
}

/// A stage's progress: a bar, or lines every few seconds, or nothing.
pub(crate) struct Progress {
    mode: ProgressMode,
    bar: indicatif::ProgressBar,
    what: String,
    len: u64,
    pos: std::cell::Cell<u64>,
    msg: std::cell::RefCell<String>,
    start: std::time::Instant,
    last: std::cell::Cell<std::time::Instant>,
}

/// Seconds between two progress lines.
const LINE_EVERY_S: f64 = 5.0;

impl Progress {
    pub fn inc(&self, n: u64) {
        self.set_position(self.pos.get() + n);
    }

    pub fn set_position(&self, pos: u64) {
        self.pos.set(pos);
        self.bar.set_position(pos);
        if self.last.get().elapsed().as_secs_f64() >= LINE_EVERY_S {
            self.line(false);
        }
    }

    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg.clone());
        *self.msg.borrow_mut() = msg;
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        self.line(true);
    }

    /// One line: stage, step, rate and ETA (text or JSON).
    fn line(&self, done: bool) {
        self.last.set(std::time::Instant::now());
        let (pos, elapsed) = (self.pos.get(), self.start.elapsed().as_secs_f64());
        let rate = pos as f64 / elapsed.max(1e-9);
        let eta = if rate > 0.0 {
            self.len.saturating_sub(pos) as f64 / rate
        } else {
            f64::NAN
        };
        let msg = self.msg.borrow();
        match self.mode {
            ProgressMode::Lines => eprintln!(
                "{}: {pos}/{} ({rate:.1}/s, {elapsed:.0} s, eta {eta:.0} s){}{}",
                self.what,
                self.len,
                if msg.is_empty() {
                    String::new()
                } else {
                    format!(" {msg}")
                },
                if done { " done" } else { "" }
            ),
            ProgressMode::Json => {
                let esc = |t: &str| t.replace('\\', "\\\\").replace('"', "\\\"");
                let num = |v: f64| {
                    if v.is_finite() {
                        format!("{v:.3}")
                    } else {
                        "null".into()
                    }
                };
                eprintln!("{{\"stage\":\"{}\",\"step\":{pos},\"total\":{},\"rate\":{},\"elapsed_s\":{},\"eta_s\":{},\"message\":\"{}\",\"done\":{done}}}", esc(&self.what), self.len, num(rate), num(elapsed), num(eta), esc(&msg));
            }
            ProgressMode::Bar | ProgressMode::Quiet => {}
        }
    }
}

pub(crate) fn progress(mode: ProgressMode, len: u64, what: &str) -> Progress {
    let bar = if mode == ProgressMode::Bar {
        let pb = indicatif::ProgressBar::new(len);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>6} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let now = std::time::Instant::now();
    Progress {
        mode,
        bar,
        what: what.to_string(),
        len,
        pos: std::cell::Cell::new(0),
        msg: std::cell::RefCell::new(String::new()),
        start: now,
        last: std::cell::Cell::new(now),
    }
}

/// SFT stage: train pi_SFT or reuse the cached checkpoint. Returns the model's VarStore.
pub fn sft_stage(
    sc: &Scenario,
    world: &dyn TextWorld,
    opts: &RunOptions,
    metrics: &mut Metrics,
    summary: &mut Summary,
) -> Result<(nn::VarStore, Gpt)> {
    let dir = stages::sft_dir(sc, opts);
    let ckpt = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.csv");
    let mut vs = nn::VarStore::new(opts.device);
    tch::manual_seed(derive_seed(sc.seed, "sft/init") as i64);
    let gpt = Gpt::new(&vs.root(), &sc.model);
    let val = SeqData::from_examples(&world.sft_examples(true), opts.device);
    let true_nll = world.true_nll_per_token();
    if ckpt.exists() && metrics_path.exists() {
        model::load_checkpoint(&mut vs, &ckpt)?;
        let text = std::fs::read_to_string(&metrics_path)
            .with_context(|| format!("cannot read {}", metrics_path.display()))?;
        let cached = Metrics::from_csv(&text).with_context(|| {
            format!(
                "corrupt {}; fix: delete {}",
                metrics_path.display(),
                dir.display()
            )
        })?;
        let val_nll = cached.last("sft/nll/val").unwrap_or(f64::NAN);
        summary.add("sft", "cached checkpoint", dir.display().to_string());
        if opts.progress != ProgressMode::Quiet {
            eprintln!("sft: reusing the cached checkpoint in {}", dir.display());
        }
        summary.add(
            "sft",
            "val NLL/token",
            format!(
                "{val_nll:.4} (true process {true_nll:.4}, ratio {:.4})",
                val_nll / true_nll
            ),
        );
        metrics.extend(cached);
        return Ok((vs, gpt));
    }
    let _stage = crate::profile::enter_stage("sft", "", sc.seed, "train");
    let started = std::time::Instant::now();
    let train = SeqData::from_examples(&world.sft_examples(false), opts.device);
    let mut m = Metrics::default();
    let pb = progress(opts.progress, sc.sft.steps as u64, "sft");
    let report = sft::train(
        &gpt,
        &vs,
        &train,
        &val,
        &sc.sft,
        sc.seed,
        "sft",
        &mut m,
        |step, loss| {
            pb.set_position(step as u64 + 1);
            if step % 10 == 0 {
                pb.set_message(format!("loss {loss:.4}"));
            }
        },
    )?;
    pb.finish_and_clear();
    m.push(
        "sft",
        "",
        sc.seed,
        sc.sft.steps,
        "sft/nll/true_process",
        true_nll,
    );
    model::save_checkpoint(&vs, &ckpt)?;
    export::write_card(&dir, &sc.model, &world.vocab().words)?;
    write_atomic(&metrics_path, m.to_csv().as_bytes())?;
    stages::save_stage_wall(&dir, "sft", sc.seed, started)?;
    summary.add(
        "sft",
        "val NLL/token",
        format!(
            "{:.4} (true process {true_nll:.4}, ratio {:.4})",
            report.val_nll,
            report.val_nll / true_nll
        ),
    );
    summary.add(
        "sft",
        "train NLL/token (EMA)",
        format!("{:.4}", report.train_nll),
    );
    summary.add(
        "sft",
        "train tokens/s",
        format!(
            "{:.0} ({:.1} s)",
            report.tokens / report.seconds,
            report.seconds
        ),
    );
    summary.add("sft", "checkpoint", ckpt.display().to_string());
    metrics.extend(m);
    Ok((vs, gpt))
}

/// Build the shared stages of one seed (world, SFT, preference data, reward model, reference
/// log-probs) and hand them to `f`.
fn with_shared<T>(
    sc: &Scenario,
    opts: &RunOptions,
    metrics: &mut Metrics,
    summary: &mut Summary,
    f: impl FnOnce(&stages::Shared, &mut Metrics, &mut Summary) -> Result<T>,
) -> Result<T> {
    // Building the world and loading the cached stages: start-up (a cell's labels its own).
    let (stage, setting, _) = crate::profile::current();
    crate::profile::stage(
        "load",
        if stage == "load" { &setting } else { "" },
        sc.seed,
        "startup",
    );
    let world = build_world(sc);
    let world = world.as_ref();
    for (k, v) in world.describe() {
        summary.add("world", &k, v);
    }
    let (mut sft_vs, sft) = sft_stage(sc, world, opts, metrics, summary)?;
    sft_vs.freeze(); // pi_SFT is pi_ref from here on: no gradients, ever
    let (prefs, prefs_work) = stages::prefs_stage(sc, world, &sft, opts, summary)?;
    let train = crate::data::PairTensors::new(&prefs.train, opts.device);
    let val = crate::data::PairTensors::new(&prefs.val, opts.device);
    let (mut rm_vs, rm, reward_work) =
        stages::reward_stage(sc, world, &sft_vs, &train, &val, opts, metrics, summary)?;
    rm_vs.freeze();
    let (train_ref, val_ref, reference_work) =
        stages::reference_stage(sc, &sft, &train, &val, opts)?;
    let work = stages::SharedWork {
        prefs: prefs_work,
        reward: reward_work,
        reference: reference_work,
    };
    let rollout_prompts = prefs.rollout_prompts(world.train_prompts(), sc.prefs.rollout_prompts);
    let shared = stages::Shared {
        world,
        rollout_prompts: &rollout_prompts,
        sft_vs: &sft_vs,
        sft: &sft,
        rm: &rm,
        rm_vs: &rm_vs,
        train: &train,
        train_ref: &train_ref,
        val: &val,
        val_ref: &val_ref,
        work,
    };
    f(&shared, metrics, summary)
}

/// One cell of a sweep: a method run (index into `sc.methods`) or, at index
/// `sc.methods.len()`, Best-of-N, for `sc.seed`. The shared stages are reused from the run
/// folder (or computed, the first time).
pub fn run_cell(sc: &Scenario, opts: &RunOptions, index: usize) -> Result<()> {
    let mut metrics = Metrics::default();
    let mut summary = Summary::default();
    crate::profile::stage("load", &format!("cell{index}"), sc.seed, "startup");
    let done = with_shared(
        sc,
        opts,
        &mut metrics,
        &mut summary,
        |shared, metrics, _| {
            let mut evals = Metrics::default();
            match sc.methods.get(index) {
                Some(m) => stages::method_stage(sc, m, shared, opts, metrics, &mut evals),
                None => match &sc.best_of_n {
                    Some(grid) if index == sc.methods.len() => {
                        stages::best_of_n_stage(sc, grid, shared, opts, metrics, &mut evals)
                    }
                    _ => anyhow::bail!(
                        "cell {index} does not exist: the scenario has {} method runs{}",
                        sc.methods.len(),
                        if sc.best_of_n.is_some() {
                            " and Best-of-N"
                        } else {
                            ""
                        }
                    ),
                },
            }
        },
    );
    // For the sweep's profile (read by `run_cells`).
    write_atomic(
        &cell_profile_path(sc, opts, sc.seed, index),
        profile_rows().to_csv().as_bytes(),
    )?;
    done
}

fn cell_profile_path(sc: &Scenario, opts: &RunOptions, seed: u64, index: usize) -> PathBuf {
    opts.runs_root
        .join(&sc.name)
        .join("cells")
        .join(format!("seed{seed}-cell{index}.profile.csv"))
}

/// This process's profile so far as rows `profile/{phase}/wall_s|cpu_s|gflop` of each stage.
pub fn profile_rows() -> Metrics {
    let mut m = Metrics::default();
    for ((stage, phase), c) in crate::profile::snapshot() {
        let (method, setting, seed) = stage;
        m.push(
            &method,
            &setting,
            seed,
            0,
            &format!("profile/{phase}/wall_s"),
            c.wall_s,
        );
        m.push(
            &method,
            &setting,
            seed,
            0,
            &format!("profile/{phase}/cpu_s"),
            c.cpu_s,
        );
        m.push(
            &method,
            &setting,
            seed,
            0,
            &format!("profile/{phase}/gflop"),
            c.flops / 1e9,
        );
    }
    m
}

/// What the cells of a sweep cost: their profiles, and the time job slots stood idle.
#[derive(Default)]
struct CellsProfile {
    rows: Metrics,
    /// Job-slot seconds with no cell running, from the first start to the last exit.
    idle_s: f64,
}

/// The shared stages of `sc.seed` only.
pub fn prepare(sc: &Scenario, opts: &RunOptions) -> Result<()> {
    with_shared(
        sc,
        opts,
        &mut Metrics::default(),
        &mut Summary::default(),
        |_, _, _| Ok(()),
    )
}

/// The cells of a sweep that have not finished: (seed, index, label), in the order a sweep
/// starts them: the costliest first (by [`Method::cost`]; ties in file order), so that no
/// long cell starts last and leaves the other job slots idle at the end.
pub fn pending_cells(sc: &Scenario, opts: &RunOptions) -> Vec<(u64, usize, String)> {
    let mut out = Vec::new();
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        for (i, m) in s.methods.iter().enumerate() {
            if !stages::method_done(&s, m, opts) {
                out.push((
                    m.cost(&s.train),
                    (seed, i, format!("{} {} seed {seed}", m.name(), m.setting())),
                ));
            }
        }
        if let Some(grid) = &s.best_of_n {
            if !stages::best_of_n_done(&s, grid, opts) {
                // Every candidate generated and scored, at each temperature.
                let n = s.world.n_eval_prompts()
                    * s.eval.samples_per_prompt
                    * grid.iter().max().copied().unwrap_or(1);
                out.push((
                    n as f64 * 2.0 * (1 + s.eval.temperatures.len()) as f64,
                    (seed, s.methods.len(), format!("best_of_n seed {seed}")),
                ));
            }
        }
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.into_iter().map(|(_, cell)| cell).collect()
}

/// Run the pending cells as child processes (`alignlab cell ...`), `jobs` at a time. Returns
/// the failed cells with the tail of their error output.
fn run_cells(
    sc: &Scenario,
    opts: &RunOptions,
    pending: Vec<(u64, usize, String)>,
) -> Result<(Vec<(u64, usize, String)>, CellsProfile)> {
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
    let threads = (opts.threads / opts.jobs).max(1);
    if opts.progress != ProgressMode::Quiet {
        eprintln!(
            "alignlab: {} cells, {} at a time, {threads} torch threads each",
            pending.len(),
            opts.jobs
        );
    }
    let (total, mut finished) = (pending.len(), 0usize);
    let mut failed = Vec::new();
    let mut queue = pending.into_iter();
    let mut running: Vec<(
        std::process::Child,
        (u64, usize, String),
        PathBuf,
        std::time::Instant,
    )> = Vec::new();
    let t_first = std::time::Instant::now();
    let mut busy_s = 0.0;
    loop {
        while running.len() < opts.jobs {
            let Some((seed, index, label)) = queue.next() else {
                break;
            };
            let log = opts
                .runs_root
                .join(&sc.name)
                .join("cells")
                .join(format!("seed{seed}-cell{index}.log"));
            std::fs::create_dir_all(log.parent().unwrap())?;
            let mut cmd = std::process::Command::new(&exe);
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
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start cell {label}"))?;
            running.push((child, (seed, index, label), log, std::time::Instant::now()));
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
                if let Ok(m) = Metrics::read(&cell_profile_path(sc, opts, cell.0, cell.1)) {
                    let accounted: f64 = m
                        .rows
                        .iter()
                        .filter(|r| r.metric.ends_with("/wall_s"))
                        .map(|r| r.value)
                        .sum();
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
                if status.success() {
                    match opts.progress {
                        ProgressMode::Json => eprintln!("{{\"cell\":\"{}\",\"done\":true,\"finished\":{finished},\"total\":{total}}}", cell.2.replace('"', "\\\"")),
                        ProgressMode::Quiet => {}
                        _ => eprintln!("  done: {} ({finished}/{total})", cell.2),
                    }
                } else {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    let tail: String = text
                        .lines()
                        .filter(|l| l.starts_with("error"))
                        .last()
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

/// How many method runs (cells: a Best-of-N seed is one) an invocation ran and how many it found
/// cached from an earlier one; `summary.csv` keeps one per stage (`invocation` rows).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunsDone {
    pub ran: usize,
    pub cached: usize,
}

impl RunsDone {
    /// The cells of `sc` in `pending` (not finished) out of `total`.
    fn of(total: usize, pending: usize) -> RunsDone {
        RunsDone {
            ran: pending,
            cached: total - pending,
        }
    }

    pub fn absorb(&mut self, o: RunsDone) {
        self.ran += o.ran;
        self.cached += o.cached;
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
            sc.with_seed(*seed)
                .methods
                .get(*i)
                .is_some_and(|m| tables.contains(&m.name()))
        })
        .collect();
    let done = RunsDone::of(
        sc.seeds.len()
            * sc.methods
                .iter()
                .filter(|m| tables.contains(&m.name()))
                .count(),
        pending.len(),
    );
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        with_shared(
            &s,
            opts,
            &mut Metrics::default(),
            &mut Summary::default(),
            |shared, metrics, _| {
                if opts.jobs > 1 {
                    return Ok(());
                }
                for m in s.methods.iter().filter(|m| tables.contains(&m.name())) {
                    stages::method_stage(&s, m, shared, opts, metrics, &mut Metrics::default())?;
                }
                Ok(())
            },
        )?;
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

/// The per-seed top-ups of a calibrated sweep: the calibration's records, and how to load the
/// scenario with extra overrides (`[sweep] seed_runs`).
pub struct TopUp<'a> {
    pub records: &'a [calibrate::CalibrationRecord],
    pub load: &'a dyn Fn(&[String]) -> Result<Scenario>,
}

/// Run `pending` cells of `sc`: as child processes with `jobs > 1` (each seed's shared stages
/// first, here, so that the cells only read them), else in this process. Returns the failed
/// cells with their error.
fn run_pending(
    sc: &Scenario,
    opts: &RunOptions,
    pending: Vec<(u64, usize, String)>,
) -> Result<(Vec<(u64, usize, String)>, CellsProfile)> {
    let seeds: Vec<u64> = sc
        .seeds
        .iter()
        .copied()
        .filter(|s| pending.iter().any(|p| p.0 == *s))
        .collect();
    if opts.jobs > 1 {
        for &seed in &seeds {
            with_shared(
                &sc.with_seed(seed),
                opts,
                &mut Metrics::default(),
                &mut Summary::default(),
                |_, _, _| Ok(()),
            )?;
        }
        let _wait = crate::profile::enter_stage("cells", "", 0, "wait");
        return run_cells(sc, opts, pending);
    }
    let mut failed = Vec::new();
    for seed in seeds {
        let s = sc.with_seed(seed);
        with_shared(
            &s,
            opts,
            &mut Metrics::default(),
            &mut Summary::default(),
            |shared, metrics, _| {
                for (_, i, label) in pending.iter().filter(|p| p.0 == seed) {
                    let done = match s.methods.get(*i) {
                        Some(m) => stages::method_stage(
                            &s,
                            m,
                            shared,
                            opts,
                            metrics,
                            &mut Metrics::default(),
                        ),
                        None => stages::best_of_n_stage(
                            &s,
                            s.best_of_n.as_ref().expect("a Best-of-N cell"),
                            shared,
                            opts,
                            metrics,
                            &mut Metrics::default(),
                        ),
                    };
                    if let Err(e) = done {
                        eprintln!("error: {label}: {e:#}");
                        failed.push((seed, *i, format!("{e:#}")));
                    }
                }
                Ok(())
            },
        )?;
    }
    Ok((failed, CellsProfile::default()))
}

/// `alignlab run`: every stage of every seed, then results, tables and a summary. With
/// `jobs > 1` the method runs go to child processes first; either way a failing method run is
/// reported and the others go on.
pub fn run(sc: &Scenario, opts: &RunOptions, top_up: Option<TopUp>) -> Result<Summary> {
    let mut summary = Summary::default();
    let mut metrics = Metrics::default();
    let mut evals = Metrics::default();
    let t0 = std::time::Instant::now();
    let mut failed: Vec<(u64, usize, String)> = Vec::new();
    let mut cells = CellsProfile::default();
    let (mut sc, mut opts) = (sc.clone(), opts.clone());
    let top_up = top_up.filter(|_| sc.top_up_rounds > 0);
    let pending = pending_cells(&sc, &opts);
    // The sweep's cells; the top-ups are counted apart.
    let total: usize = sc
        .seeds
        .iter()
        .map(|&s| sc.with_seed(s).methods.len() + usize::from(sc.best_of_n.is_some()))
        .sum();
    let done = RunsDone::of(total, pending.len());
    if opts.jobs > 1 || top_up.is_some() {
        (failed, cells) = run_pending(&sc, &opts, pending)?;
    }
    // Per-seed top-ups, decided on the finished runs' final KLs (see `calibrate`).
    let mut topped = RunsDone::default();
    if let Some(t) = &top_up {
        let base = opts.clone();
        let mut n_new = 0;
        let mut added: Vec<scenario::SeedRun> = sc.seed_runs.iter().map(|r| r.0.clone()).collect();
        for round in 1..=sc.top_up_rounds {
            let new = calibrate::top_ups(&sc, &opts, t.records);
            if new.is_empty() {
                break;
            }
            eprintln!(
                "top-up round {round}: {}",
                new.iter()
                    .map(|r| format!(
                        "{} {} (budget {}) on seed {}",
                        r.table, r.value, r.budget, r.seed
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            n_new += new.len();
            added.extend(new);
            let set = calibrate::seed_runs_override(&added);
            sc = (t.load)(std::slice::from_ref(&set))?;
            opts = base.with_sets(&[set]);
            // Only the new runs: a failed cell of the grid is not retried here.
            let pending: Vec<_> = pending_cells(&sc, &opts)
                .into_iter()
                .filter(|(seed, i, _)| {
                    *i >= sc.n_shared
                        && *i < sc.with_seed(*seed).methods.len()
                        && !failed.iter().any(|f| f.0 == *seed && f.1 == *i)
                })
                .collect();
            topped.ran += pending.len();
            let (f, c) = run_pending(&sc, &opts, pending)?;
            failed.extend(f);
            cells.rows.extend(c.rows);
            cells.idle_s += c.idle_s;
        }
        topped.cached = n_new.saturating_sub(topped.ran);
    }
    let sc = &sc;
    let opts = &opts;
    for &seed in &sc.seeds {
        let s = sc.with_seed(seed);
        with_shared(
            &s,
            opts,
            &mut metrics,
            &mut summary,
            |shared, metrics, summary| {
                stages::eval_sft(&s, shared, opts, &mut evals)?;
                for (i, method) in s.methods.iter().enumerate() {
                    if failed.iter().any(|f| f.0 == seed && f.1 == i) {
                        continue;
                    }
                    if let Err(e) =
                        stages::method_stage(&s, method, shared, opts, metrics, &mut evals)
                    {
                        eprintln!("error: {e:#}");
                        failed.push((seed, i, format!("{e:#}")));
                    }
                }
                if let Some(grid) = &s.best_of_n {
                    if !failed.iter().any(|f| f.0 == seed && f.1 == s.methods.len()) {
                        if let Err(e) =
                            stages::best_of_n_stage(&s, grid, shared, opts, metrics, &mut evals)
                        {
                            failed.push((seed, s.methods.len(), format!("{e:#}")));
                        }
                    }
                }
                let _ = summary;
                Ok(())
            },
        )?;
    }
    let out = opts.results_root.join(&sc.name);
    crate::profile::stage("report", "", 0, "checkpoint_io");
    write_atomic(&out.join("eval.csv"), evals.to_csv().as_bytes())?;
    let wall = t0.elapsed().as_secs_f64();
    summary.add("run", "wall time", format!("{wall:.1} s"));
    summary.add("invocation", "sweep runs", done.line());
    if top_up.is_some() {
        summary.add("invocation", "top-up runs", topped.line());
        let misses = sc
            .seed_runs
            .iter()
            .map(|(r, _)| (r.table.clone(), r.seed, r.budget.to_bits()))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        summary.add("protocol", "top-ups", format!("{} run(s) of one seed for {misses} (method, budget, seed) whose calibrated run landed more than {:.0}% from the budget; at most {} round(s), chosen on the seed's final KLs only", sc.seed_runs.len(), 100.0 * calibrate::TOLERANCE, sc.top_up_rounds));
    }
    let profile = sweep_profile(opts, wall, cells);
    summary.add("run", "profile", profile_line(&profile));
    for (m, n, v) in compute_totals(&evals) {
        // Runs found cached did no work in this invocation and have no wall time in it.
        // A run is a (setting, seed); Best-of-N's points of a seed are one stage.
        let unit = |setting: &str, seed: u64| {
            if m == "best_of_n" {
                (String::new(), seed)
            } else {
                (setting.to_string(), seed)
            }
        };
        let rows: Vec<_> = profile
            .rows
            .iter()
            .filter(|r| r.method == m && r.metric.ends_with("/wall_s"))
            .collect();
        let count = |keys: Vec<(String, u64)>| {
            keys.into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        };
        let ran = count(rows.iter().map(|r| unit(&r.setting, r.seed)).collect());
        let units = count(
            evals
                .rows
                .iter()
                .filter(|r| r.method == m)
                .map(|r| unit(&r.setting, r.seed))
                .collect(),
        )
        .max(1);
        let per_run =
            rows.iter().map(|r| r.value).sum::<f64>() / ran.max(1) as f64 * units as f64 / n as f64;
        let wall = match ran {
            0 => "found cached, no wall time in this invocation".to_string(),
            r if r >= units => format!("{per_run:.1} s wall with its evaluations"),
            r => format!("{per_run:.1} s wall with its evaluations ({r} of {units} run in this invocation, the others found cached)"),
        };
        summary.add("compute", &m, format!("per run ({n} runs): {:.3} TFLOP, {:.0} tokens forward, {:.0} backward, {:.0} optimiser steps, {:.0} samples, {:.0} reward-model and {:.0} gold queries; {wall}", v[0] / 1e3, v[1], v[2], v[3], v[4], v[5], v[6]));
    }
    // The cost ledger: what the reported runs cost when they ran, cached or not.
    let mut ledger = RunsWork::default();
    ledger.add(&evals);
    ledger.add_timing(&metrics);
    summary.add("run", "ledger", ledger.wall_line());
    summary.add(
        "run",
        "shared ledger",
        Ledger::of_seeds(sc, opts, &sc.seeds).line("stages"),
    );
    metrics.extend(profile);
    summary.add("run", "code", code_version());
    summary.add("run", "results", out.display().to_string());
    write_results(&out, sc, &metrics, &summary)?;
    summary.table = method_table(&evals);
    summary.failed = failed
        .into_iter()
        .map(|(seed, i, e)| {
            let label = sc
                .with_seed(seed)
                .methods
                .get(i)
                .map(|m| format!("{} {}", m.name(), m.setting()))
                .unwrap_or_else(|| "best_of_n".into());
            format!("{label} (seed {seed}): {e}")
        })
        .collect();
    Ok(summary)
}

/// The sweep's profile: this process's stages, the cells', and the sweep's totals (method
/// `sweep`): wall and CPU time, idle job slots, model FLOPs, the matmul peak measured now, and
/// the FLOP utilisation (FLOPs / (wall x peak)).
fn sweep_profile(opts: &RunOptions, wall: f64, cells: CellsProfile) -> Metrics {
    let mut m = profile_rows();
    m.extend(cells.rows);
    let sum = |suffix: &str| {
        m.rows
            .iter()
            .filter(|r| r.metric.starts_with("profile/") && r.metric.ends_with(suffix))
            .map(|r| r.value)
            .sum::<f64>()
    };
    let (cpu, gflop) = (sum("/cpu_s"), sum("/gflop"));
    let peak = crate::profile::matmul_peak(opts.device, true) / 1e9;
    for (k, v) in [
        ("wall_s", wall),
        ("cpu_s", cpu),
        ("idle_s", cells.idle_s),
        ("gflop", gflop),
        ("peak_gflops", peak),
        ("flop_utilisation", gflop / (wall * peak)),
        ("jobs", opts.jobs as f64),
        ("threads", opts.threads as f64),
    ] {
        m.push("sweep", "", 0, 0, &format!("profile/sweep/{k}"), v);
    }
    m
}

/// The summary's profile line: where the work went (wall seconds of every process by phase,
/// the coordinator's waiting left out), idle job slots, CPU time and FLOP utilisation.
fn profile_line(m: &Metrics) -> String {
    let get = |k: &str| {
        m.rows
            .iter()
            .find(|r| r.method == "sweep" && r.metric == format!("profile/sweep/{k}"))
            .map_or(f64::NAN, |r| r.value)
    };
    let phases = crate::profile::by_phase(
        m.rows
            .iter()
            .filter(|r| r.method != "sweep" && r.metric.ends_with("/wall_s"))
            .filter_map(|r| {
                let phase = r.metric.strip_prefix("profile/")?.strip_suffix("/wall_s")?;
                Some((
                    phase,
                    crate::profile::Cost {
                        wall_s: r.value,
                        ..Default::default()
                    },
                ))
            }),
    );
    let work: f64 = phases
        .iter()
        .filter(|(p, _)| *p != "wait")
        .map(|(_, c)| c.wall_s)
        .sum();
    let parts: Vec<String> = phases
        .iter()
        .filter(|(p, c)| *p != "wait" && c.wall_s >= 0.005 * work)
        .map(|(p, c)| format!("{p} {:.0}%", 100.0 * c.wall_s / work))
        .collect();
    let idle = get("idle_s");
    let idle = if idle > 0.0 {
        format!("; idle job slots {idle:.0} s")
    } else {
        String::new()
    };
    format!("work {work:.0} s: {}{idle}; CPU {:.0} s; {:.1} TFLOP, FLOP utilisation {:.1}% of {:.0} GFLOP/s", parts.join(", "), get("cpu_s"), get("gflop") / 1e3, 100.0 * get("flop_utilisation"), get("peak_gflops"))
}

/// Per method, the mean over its runs (settings x seeds) of each run's final compute, in
/// [`WORK`] order.
pub fn compute_totals(evals: &Metrics) -> Vec<(String, usize, Vec<f64>)> {
    use crate::profile::WORK;
    let last = run_work(evals);
    let methods = {
        let mut m: Vec<String> = Vec::new();
        for (k, _) in &last {
            if !m.contains(&k.0) {
                m.push(k.0.clone());
            }
        }
        m
    };
    methods
        .into_iter()
        .map(|m| {
            let runs: Vec<&crate::profile::Work> = last
                .iter()
                .filter(|(k, _)| k.0 == m)
                .map(|(_, v)| v)
                .collect();
            let mean = (0..WORK.len())
                .map(|i| runs.iter().map(|v| v[i]).sum::<f64>() / runs.len() as f64)
                .collect();
            (m, runs.len(), mean)
        })
        .collect()
}

/// Each run's work, (method, setting, seed) and its `compute/*` rows at its last evaluation.
pub fn run_work(evals: &Metrics) -> Vec<((String, String, u64), crate::profile::Work)> {
    use crate::profile::{Work, WORK};
    let mut last: Vec<((String, String, u64), usize, Work)> = Vec::new();
    for r in evals
        .rows
        .iter()
        .filter(|r| r.metric.starts_with("compute/"))
    {
        let Some(i) = WORK.iter().position(|w| r.metric == format!("compute/{w}")) else {
            continue;
        };
        let key = (r.method.clone(), r.setting.clone(), r.seed);
        match last.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, step, v)) if r.step > *step => {
                *step = r.step;
                *v = [f64::NAN; WORK.len()];
                v[i] = r.value;
            }
            Some((_, step, v)) if r.step == *step => v[i] = r.value,
            Some(_) => {}
            None => {
                let mut v = [f64::NAN; WORK.len()];
                v[i] = r.value;
                last.push((key, r.step, v));
            }
        }
    }
    last.into_iter().map(|(k, _, v)| (k, v)).collect()
}

/// The work of a set of method runs (a protocol's tuning, its calibration, its sweep): how many
/// and the sum of their work. A Best-of-N point is charged N/N_max of its seed's candidates, so
/// the sweep takes each seed's largest N, the candidates drawn once.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunsWork {
    pub runs: usize,
    pub work: crate::profile::Work,
    /// The cost ledger: the runs' own wall seconds (`{method}/time/run_s` of their folders'
    /// `timing.csv`), whether they ran in this invocation or an earlier one, and how many runs
    /// had one (folders written before it was kept have none).
    pub wall_s: f64,
    pub timed: usize,
}

impl RunsWork {
    /// Add the runs in `evals` (one run's or a sweep's `eval.csv`).
    pub fn add(&mut self, evals: &Metrics) {
        let all = run_work(evals);
        // Each seed's Best-of-N point with the most work (its largest N).
        let mut bon_max: std::collections::BTreeMap<u64, f64> = std::collections::BTreeMap::new();
        for (k, w) in all.iter().filter(|(k, _)| k.0 == "best_of_n") {
            let m = bon_max.entry(k.2).or_insert(f64::MIN);
            *m = m.max(w[0]);
        }
        for (k, w) in &all {
            if k.0 == "best_of_n" && w[0] < bon_max[&k.2] {
                continue;
            }
            self.runs += 1;
            crate::profile::add_work(&mut self.work, w, 1.0);
        }
    }

    /// Add the runs' own wall times in `timing` (one run's or a sweep's `timing.csv`).
    pub fn add_timing(&mut self, timing: &Metrics) {
        for secs in stages::own_walls(timing) {
            self.wall_s += secs;
            self.timed += 1;
        }
    }

    /// Add another set's runs and work.
    pub fn absorb(&mut self, other: &RunsWork) {
        self.runs += other.runs;
        crate::profile::add_work(&mut self.work, &other.work, 1.0);
        self.wall_s += other.wall_s;
        self.timed += other.timed;
    }

    /// The ledger as `summary.csv` gives it: `5321.4 s over 158 of 158 runs`.
    pub fn wall_line(&self) -> String {
        Ledger {
            wall_s: self.wall_s,
            timed: self.timed,
            stages: self.runs,
        }
        .line("runs")
    }

    /// The ledger back from [`RunsWork::wall_line`]'s text: (seconds, runs timed, runs).
    pub fn parse_wall(text: &str) -> Option<(f64, usize, usize)> {
        let (s, rest) = text.split_once(" s over ")?;
        let (timed, rest) = rest.split_once(" of ")?;
        let runs = rest.split(' ').next()?;
        Some((s.parse().ok()?, timed.parse().ok()?, runs.parse().ok()?))
    }

    /// As `summary.csv` gives it.
    pub fn line(&self) -> String {
        let w = &self.work;
        format!("{} runs: {:.3} TFLOP, {:.0} optimiser steps, {:.0} samples, {:.0} reward-model and {:.0} gold queries", self.runs, w[0] / 1e3, w[3], w[4], w[5], w[6])
    }
}

/// The shared stages' part of the cost ledger (see [`stages::shared_ledger`]): their own wall
/// seconds, how many stage folders kept one, and how many there are.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Ledger {
    pub wall_s: f64,
    pub timed: usize,
    pub stages: usize,
}

impl Ledger {
    /// Over every seed in `seeds`, each once.
    pub fn of_seeds(sc: &Scenario, opts: &RunOptions, seeds: &[u64]) -> Ledger {
        let max_threads = (opts.threads as i32).max(tch::get_num_threads());
        let mut all = Ledger::default();
        for &seed in seeds.iter().collect::<std::collections::BTreeSet<_>>() {
            all.absorb(&stages::shared_ledger(
                &sc.with_seed(seed),
                opts,
                max_threads,
            ));
        }
        all
    }

    /// Add another ledger's stages.
    pub fn absorb(&mut self, other: &Ledger) {
        self.wall_s += other.wall_s;
        self.timed += other.timed;
        self.stages += other.stages;
    }

    /// As `summary.csv` gives it: `812.3 s over 27 of 28 stages`, read back by
    /// [`RunsWork::parse_wall`].
    pub fn line(&self, unit: &str) -> String {
        format!(
            "{:.1} s over {} of {} {unit}",
            self.wall_s, self.timed, self.stages
        )
    }
}

/// One row per run at its last evaluation: method, setting, gold, KL, proxy, implicit accuracy.
pub fn method_table(evals: &Metrics) -> Vec<Vec<String>> {
    let mut keys: Vec<(String, String, u64)> = Vec::new();
    for r in &evals.rows {
        let k = (r.method.clone(), r.setting.clone(), r.seed);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let has_win = evals.rows.iter().any(|r| r.metric == "eval/winrate");
    let mut header: Vec<String> = [
        "method",
        "setting",
        "seed",
        "step",
        "gold",
        "KL",
        "KL k1",
        "proxy",
        "impl. acc",
        "fluency",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if has_win {
        header.push("win rate (95% CI)".into());
    }
    let mut table = vec![header];
    for (m, s, seed) in keys {
        let rows: Vec<&Row> = evals
            .rows
            .iter()
            .filter(|r| r.method == m && r.setting == s && r.seed == seed)
            .collect();
        let step = rows.iter().map(|r| r.step).max().unwrap_or(0);
        let get = |metric: &str| {
            rows.iter()
                .find(|r| r.step == step && r.metric == metric)
                .map(|r| r.value)
        };
        let pm = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{a:.4} ± {b:.4}"),
            (Some(a), None) => format!("{a:.4}"),
            _ => "-".into(),
        };
        table.push(vec![
            m.clone(),
            if s.is_empty() { "-".into() } else { s.clone() },
            seed.to_string(),
            step.to_string(),
            pm(get("eval/gold"), get("eval/gold_ci")),
            if get("eval/kl_is_bound") == Some(1.0) {
                format!("<= {:.4} (bound)", get("eval/kl").unwrap_or(f64::NAN))
            } else {
                pm(get("eval/kl"), get("eval/kl_ci"))
            },
            pm(get("eval/kl_k1"), None),
            pm(get("eval/proxy"), None),
            pm(get("eval/implicit_acc"), None),
            pm(get("eval/fluency"), None),
        ]);
        if has_win {
            let cell = match (
                get("eval/winrate"),
                get("eval/winrate_lo"),
                get("eval/winrate_hi"),
            ) {
                (Some(w), Some(lo), Some(hi)) => format!("{w:.3} [{lo:.3}, {hi:.3}]"),
                _ => "-".into(),
            };
            table.last_mut().unwrap().push(cell);
        }
    }
    table
}

fn write_results(out: &Path, sc: &Scenario, metrics: &Metrics, summary: &Summary) -> Result<()> {
    write_atomic(
        &out.join("scenario.resolved.toml"),
        sc.resolved_toml.as_bytes(),
    )?;
    let (det, timing) = metrics.split_timing();
    write_atomic(&out.join("metrics.csv"), det.to_csv().as_bytes())?;
    write_atomic(&out.join("timing.csv"), timing.to_csv().as_bytes())?;
    write_atomic(&out.join("summary.csv"), summary.to_csv().as_bytes())?;
    Ok(())
}
