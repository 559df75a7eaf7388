//! How a run shows its progress on stderr: a bar on a terminal, lines elsewhere, JSON for
//! wrappers, or nothing.

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
    /// The invocation's first line: the scenario, its seeds, the device, threads and jobs; a
    /// JSON object with `--json-progress`, nothing with `--quiet`.
    pub fn header(
        self,
        scenario: &str,
        seeds: &[u64],
        (device, threads, jobs): (&str, i32, usize),
    ) {
        match self {
            ProgressMode::Quiet => {}
            ProgressMode::Json => {
                #[derive(serde::Serialize)]
                struct Header<'a> {
                    scenario: &'a str,
                    seeds: &'a [u64],
                    device: &'a str,
                    threads: i32,
                    jobs: usize,
                }
                json_line(&Header { scenario, seeds, device, threads, jobs });
            }
            ProgressMode::Bar | ProgressMode::Lines => eprintln!(
                "alignlab: scenario {scenario} (seeds {seeds:?}) on {device}, {threads} threads, {jobs} job(s)"
            ),
        }
    }

    /// A note between stages (a cached stage reused, how the cells run): a line, a JSON object
    /// with the scenario and seed, or nothing.
    pub fn note(self, scenario: &str, seed: Option<u64>, message: &str) {
        match self {
            ProgressMode::Quiet => {}
            ProgressMode::Json => {
                #[derive(serde::Serialize)]
                struct Note<'a> {
                    scenario: &'a str,
                    seed: Option<u64>,
                    stage: &'a str,
                    message: &'a str,
                }
                json_line(&Note { scenario, seed, stage: "note", message });
            }
            ProgressMode::Bar | ProgressMode::Lines => eprintln!("{message}"),
        }
    }

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

/// Write `value` to stderr as one line of JSON.
fn json_line(value: &impl serde::Serialize) {
    eprintln!("{}", serde_json::to_string(value).expect("a progress line serializes"));
}

/// A float for a JSON line: three decimals, or null where it is not finite.
fn rounded(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1e3).round() / 1e3)
}

/// What a progress line is about: the scenario, the seed, the cell (a method run's name and
/// setting, or a shared stage's name) and the stage (`sft`, `reward`, the method, `bon`).
pub(crate) struct Tag {
    pub scenario: String,
    pub seed: u64,
    pub cell: String,
    pub stage: String,
}

impl Tag {
    /// A stage of `sc`'s seed that is a cell of its own (`sft`, `reward`, `bon`).
    pub fn stage(sc: &super::scenario::Scenario, stage: &str) -> Tag {
        Tag { scenario: sc.name.clone(), seed: sc.seed, cell: stage.into(), stage: stage.into() }
    }
}

/// The whole run's clock: the estimated work of its pending cells (`Method::cost`'s units) and
/// the work finished, for an ETA that the finished cells' pace extrapolates.
struct RunClock {
    start: std::time::Instant,
    total: f64,
    done: f64,
}

static RUN_CLOCK: std::sync::Mutex<Option<RunClock>> = std::sync::Mutex::new(None);

/// Start the run's clock over cells of `total` estimated work (nothing to time when zero).
pub(crate) fn start_run_clock(total: f64) {
    let clock =
        (total > 0.0).then(|| RunClock { start: std::time::Instant::now(), total, done: 0.0 });
    *RUN_CLOCK.lock().unwrap_or_else(|e| e.into_inner()) = clock;
}

/// A cell of estimated work `cost` finished; returns the run's elapsed seconds and its ETA.
pub(crate) fn cell_finished(cost: f64) -> Option<(f64, f64)> {
    let mut clock = RUN_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let c = clock.as_mut()?;
    c.done = (c.done + cost).min(c.total);
    drop(clock);
    run_eta()
}

/// The run's elapsed seconds and ETA: its remaining work at the pace of the work finished so
/// far (none before the first cell finishes).
pub(crate) fn run_eta() -> Option<(f64, f64)> {
    let clock = RUN_CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let c = clock.as_ref()?;
    let elapsed = c.start.elapsed().as_secs_f64();
    (c.done > 0.0).then(|| (elapsed, elapsed * (c.total - c.done) / c.done))
}

/// Seconds as the progress lines show them: `42 s`, `3.5 min`, `2.1 h`.
pub(crate) fn duration(s: f64) -> String {
    match s {
        s if !s.is_finite() => "?".into(),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.1} min", s / 60.0),
        s => format!("{:.1} h", s / 3600.0),
    }
}

/// A cell finished, as `--jobs` reports it: its wall time, the count, the run's ETA.
pub(crate) fn cell_line(
    mode: ProgressMode,
    tag: &Tag,
    wall_s: f64,
    (finished, total): (usize, usize),
) {
    let run = run_eta();
    match mode {
        ProgressMode::Quiet => {}
        ProgressMode::Json => {
            #[derive(serde::Serialize)]
            struct CellLine<'a> {
                scenario: &'a str,
                seed: u64,
                cell: &'a str,
                stage: &'a str,
                done: bool,
                wall_s: Option<f64>,
                finished: usize,
                total: usize,
                run_elapsed_s: Option<f64>,
                run_eta_s: Option<f64>,
            }
            json_line(&CellLine {
                scenario: &tag.scenario,
                seed: tag.seed,
                cell: &tag.cell,
                stage: "cell",
                done: true,
                wall_s: rounded(wall_s),
                finished,
                total,
                run_elapsed_s: run.and_then(|r| rounded(r.0)),
                run_eta_s: run.and_then(|r| rounded(r.1)),
            });
        }
        ProgressMode::Bar | ProgressMode::Lines => eprintln!(
            "  done: {} seed {} in {} ({finished}/{total}{})",
            tag.cell,
            tag.seed,
            duration(wall_s),
            run.map_or(String::new(), |(e, eta)| format!(
                "; run {} so far, eta {}",
                duration(e),
                duration(eta)
            ))
        ),
    }
}

/// A stage's progress: a bar, or lines every few seconds, or nothing.
pub(crate) struct Progress {
    mode: ProgressMode,
    bar: indicatif::ProgressBar,
    tag: Tag,
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

    /// The stage's end: its bar cleared and a summary line kept in its place (a bar), a last
    /// line (lines, JSON).
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        self.line(true);
    }

    /// One line: stage, step, rate and ETA, the run's ETA where known (text or JSON).
    fn line(&self, done: bool) {
        self.last.set(std::time::Instant::now());
        let (pos, elapsed) = (self.pos.get(), self.start.elapsed().as_secs_f64());
        let rate = pos as f64 / elapsed.max(1e-9);
        let eta = if rate > 0.0 { self.len.saturating_sub(pos) as f64 / rate } else { f64::NAN };
        let run = run_eta();
        let msg = self.msg.borrow();
        let tag = &self.tag;
        // A bar shows itself while it runs, and leaves a text line when it ends.
        let text = self.mode == ProgressMode::Lines || (self.mode == ProgressMode::Bar && done);
        match self.mode {
            ProgressMode::Lines | ProgressMode::Bar if text => {
                let run = run.map_or(String::new(), |(_, e)| format!(", run eta {}", duration(e)));
                let msg = if msg.is_empty() || done { String::new() } else { format!(" {msg}") };
                if done {
                    eprintln!(
                        "{} seed {}: {pos}/{} in {} ({rate:.1}/s{run}) done",
                        tag.cell,
                        tag.seed,
                        self.len,
                        duration(elapsed)
                    );
                } else {
                    eprintln!(
                        "{} seed {}: {pos}/{} ({rate:.1}/s, {}, eta {}{run}){msg}",
                        tag.cell,
                        tag.seed,
                        self.len,
                        duration(elapsed),
                        duration(eta)
                    );
                }
            }
            ProgressMode::Json => {
                #[derive(serde::Serialize)]
                struct StageLine<'a> {
                    scenario: &'a str,
                    seed: u64,
                    cell: &'a str,
                    stage: &'a str,
                    step: u64,
                    total: u64,
                    rate: Option<f64>,
                    elapsed_s: Option<f64>,
                    eta_s: Option<f64>,
                    run_eta_s: Option<f64>,
                    message: &'a str,
                    done: bool,
                }
                json_line(&StageLine {
                    scenario: &tag.scenario,
                    seed: tag.seed,
                    cell: &tag.cell,
                    stage: &tag.stage,
                    step: pos,
                    total: self.len,
                    rate: rounded(rate),
                    elapsed_s: rounded(elapsed),
                    eta_s: rounded(eta),
                    run_eta_s: run.and_then(|r| rounded(r.1)),
                    message: &msg,
                    done,
                });
            }
            _ => {}
        }
    }
}

/// A stage's progress over `len` steps, shown as `mode` says.
pub(crate) fn progress(mode: ProgressMode, len: u64, tag: Tag) -> Progress {
    let bar = if mode == ProgressMode::Bar {
        let pb = indicatif::ProgressBar::new(len);
        // `wide_msg` takes what the line has left and is cut there: a long message (PPO's)
        // does not wrap the bar onto a second line.
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>6} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {wide_msg}",
            )
            .unwrap()
            .progress_chars("=> "),
        );
        pb.set_prefix(tag.stage.clone());
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let now = std::time::Instant::now();
    Progress {
        mode,
        bar,
        tag,
        len,
        pos: std::cell::Cell::new(0),
        msg: std::cell::RefCell::new(String::new()),
        start: now,
        last: std::cell::Cell::new(now),
    }
}
