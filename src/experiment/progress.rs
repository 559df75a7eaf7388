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
                let name = scenario.replace('\\', "\\\\").replace('"', "\\\"");
                eprintln!("{{\"scenario\":\"{name}\",\"seeds\":{seeds:?},\"device\":\"{device}\",\"threads\":{threads},\"jobs\":{jobs}}}");
            }
            ProgressMode::Bar | ProgressMode::Lines => eprintln!(
                "alignlab: scenario {scenario} (seeds {seeds:?}) on {device}, {threads} threads, {jobs} job(s)"
            ),
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
        let eta = if rate > 0.0 { self.len.saturating_sub(pos) as f64 / rate } else { f64::NAN };
        let msg = self.msg.borrow();
        match self.mode {
            ProgressMode::Lines => eprintln!(
                "{}: {pos}/{} ({rate:.1}/s, {elapsed:.0} s, eta {eta:.0} s){}{}",
                self.what,
                self.len,
                if msg.is_empty() { String::new() } else { format!(" {msg}") },
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
