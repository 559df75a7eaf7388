//! The plumbing every trainer holds, as one small context ([`Trainer`]), so that a trainer file
//! holds its algorithm only: who the run is (method, setting, seed) and what it logs, the
//! evaluation cadence and the callback that evaluates and checkpoints, where a resumed run
//! starts, progress, and the NaN check that stops a diverging run naming what survives. Faults
//! are injected through a typed test-only setting ([`Faults`]), never through the environment.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::adam::Adam;
use crate::draw::Rng;
use crate::log::Metrics;
use crate::model::Gpt;

/// A point of a run: a method (its name in tables) and a step (or iteration).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct At {
    pub method: String,
    pub step: usize,
}

impl At {
    fn is(&self, method: &str, step: usize) -> bool {
        self.method == method && self.step == step
    }
}

/// `[faults]`: failures injected on purpose, for the tests of what a failure leaves behind.
/// Not part of any cache key; absent from a scenario, nothing is injected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// The loss of this method is NaN at this step (the run must stop naming it, and the other
    /// runs go on).
    pub nan_at: Option<At>,
    /// The process aborts (as kill -9 would) right after this method's checkpoint at this step
    /// (the rerun must resume and give the same bytes).
    pub abort_at: Option<At>,
}

impl Faults {
    pub fn is_none(&self) -> bool {
        self.nan_at.is_none() && self.abort_at.is_none()
    }

    /// Abort the process if `abort_at` names this checkpoint.
    pub fn abort_if_due(&self, method: &str, step: usize) {
        if self.abort_at.as_ref().is_some_and(|a| a.is(method, step)) {
            eprintln!("faults.abort_at: aborting after {method} step {step}");
            std::process::abort();
        }
    }
}

/// Stop a stage on a NaN or Inf, naming where it happened and what survives.
pub fn check_finite(
    value: f64,
    what: &str,
    stage: &str,
    step: usize,
    last_good: &str,
) -> Result<()> {
    if !value.is_finite() {
        bail!(
            "{stage}: {what} is {value} at step {step}; last good checkpoint: {last_good}; fix: lower the learning rate or raise the gradient clip of [{stage}] and rerun (finished stages are kept)"
        );
    }
    Ok(())
}

/// A trainer's state at a checkpoint, besides the weights (which the caller saves): its
/// optimisers, its host RNG and any scalars it carries (e.g. PPO's KL coefficient).
pub struct CkptParts<'a> {
    pub opts: Vec<&'a Adam>,
    pub rng: [u64; 7],
    pub extra: Vec<f64>,
}

/// Where a trainer resumes from: the step reached, the optimiser state files (in the order of
/// `CkptParts::opts`), the RNG and the scalars.
#[derive(Clone, Debug)]
pub struct ResumeFrom {
    pub step: usize,
    pub opt_files: Vec<std::path::PathBuf>,
    pub rng: [u64; 7],
    pub extra: Vec<f64>,
}

/// Where a run stopped by a NaN can restart from: its last evaluation's resume folder, or
/// pi_SFT before the first (`unit`: "step" or "iteration").
pub fn last_good(step: usize, eval_every: usize, unit: &str) -> String {
    match step / eval_every * eval_every {
        0 => "pi_SFT (no evaluation yet)".to_string(),
        s => format!("the resume folder of this run, at {unit} {s}"),
    }
}

/// The evaluation callback: `(step, policy, metrics so far, checkpoint state)`.
pub type OnEval<'a> = Box<dyn FnMut(usize, &Gpt, &Metrics, &CkptParts) -> Result<()> + 'a>;
/// The progress callback: `(step just done, the value the trainer reports)`.
pub type OnStep<'a> = Box<dyn FnMut(usize, f64) + 'a>;

/// What every trainer holds besides its algorithm (as TRL's Trainer base owns it): the run's
/// name, setting and seed, the metrics it logs, the evaluation cadence with its callback, the
/// resume point, progress and the fault hooks.
pub struct Trainer<'a> {
    /// The method's name in tables (`dpo`, `ppo`): metric keys and messages.
    pub name: String,
    /// Its setting label (`beta=0.1`): the metrics' setting column, never a seed.
    pub setting: String,
    /// What the run's random streams (batch order, prompts, samples) derive from, with the
    /// seed: the method's typed identity (its table and grid values serialised; see
    /// `Method::stream_key`), so that no display label's format moves a seed. Default: the
    /// name.
    pub stream: String,
    pub seed: u64,
    /// Evaluate after every this many steps (and at step 0 and the last).
    pub eval_every: usize,
    /// "step" or "iteration", in messages.
    pub unit: &'static str,
    /// What the trainer logs; the caller takes it back when the run ends.
    pub metrics: Metrics,
    /// Where a resumed run starts (the caller has restored the weights); None: a fresh start.
    pub resume: Option<ResumeFrom>,
    /// The step the loop is at (0-based: the step being computed), set by [`Trainer::start`]
    /// and advanced by [`Trainer::step_done`].
    pub step: usize,
    pub faults: Faults,
    /// What survives a NaN in a stage that keeps no resume folder (SFT, the reward model: it
    /// saves its checkpoint at the end); None: the last evaluation's resume folder.
    pub last_good: Option<&'static str>,
    on_eval: OnEval<'a>,
    on_step: OnStep<'a>,
}

impl<'a> Trainer<'a> {
    /// A fresh run with no evaluation callback and no progress.
    pub fn new(name: &str, setting: &str, seed: u64, eval_every: usize) -> Trainer<'a> {
        Trainer {
            name: name.to_string(),
            setting: setting.to_string(),
            stream: name.to_string(),
            seed,
            eval_every: eval_every.max(1),
            unit: "step",
            metrics: Metrics::default(),
            resume: None,
            step: 0,
            faults: Faults::default(),
            last_good: None,
            on_eval: Box::new(|_, _, _, _| Ok(())),
            on_step: Box::new(|_, _| {}),
        }
    }

    /// Evaluate (and checkpoint) with `f` at step 0, every `eval_every` steps and at the end.
    pub fn on_eval(
        mut self,
        f: impl FnMut(usize, &Gpt, &Metrics, &CkptParts) -> Result<()> + 'a,
    ) -> Self {
        self.on_eval = Box::new(f);
        self
    }

    /// Report progress with `f` after every step.
    pub fn on_step(mut self, f: impl FnMut(usize, f64) + 'a) -> Self {
        self.on_step = Box::new(f);
        self
    }

    /// Start at `from` (None: a fresh run), with the logs `metrics` written so far.
    pub fn resuming(mut self, from: Option<ResumeFrom>, metrics: Metrics) -> Self {
        self.resume = from;
        self.metrics = metrics;
        self
    }

    /// Draw the run's random streams from `stream` (see [`Trainer::stream`]).
    pub fn with_stream(mut self, stream: String) -> Self {
        self.stream = stream;
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// A stage that keeps no resume folder: `what` survives a NaN.
    pub fn without_resume(mut self, what: &'static str) -> Self {
        self.last_good = Some(what);
        self
    }

    /// Count in iterations (PPO and the policy-gradient methods) rather than steps.
    pub fn in_iterations(mut self) -> Self {
        self.unit = "iteration";
        self
    }

    /// Where a one-optimiser loop starts: at the resume point (the optimiser's state and, when
    /// it has one, its RNG restored; the step returned) or at 0, after the step-0 evaluation.
    pub fn start(&mut self, policy: &Gpt, opt: &mut Adam, rng: Option<&mut Rng>) -> Result<usize> {
        match self.resume.take() {
            Some(r) => {
                opt.load(&r.opt_files[0])?;
                if let Some(rng) = rng {
                    *rng = Rng::from_state(r.rng);
                }
                Ok(self.start_at(r.step))
            }
            None => {
                let state = rng.map(|r| r.state()).unwrap_or([0; 7]);
                self.evaluate(
                    0,
                    policy,
                    &CkptParts { opts: vec![opt], rng: state, extra: vec![] },
                )?;
                Ok(self.start_at(0))
            }
        }
    }

    /// The loop starts at `step` (a trainer that restores its own state from [`Trainer::resume`]).
    pub fn start_at(&mut self, step: usize) -> usize {
        self.step = step;
        step
    }

    /// Evaluate `policy` at `step` and checkpoint `parts`.
    pub fn evaluate(&mut self, step: usize, policy: &Gpt, parts: &CkptParts) -> Result<()> {
        (self.on_eval)(step, policy, &self.metrics, parts)
    }

    /// The current step (of `total`) is done, reporting `value`: progress, the step advanced,
    /// and whether the run evaluates now (after every `eval_every` steps and after the last).
    pub fn step_done(&mut self, total: usize, value: f64) -> bool {
        (self.on_step)(self.step, value);
        self.step += 1;
        self.step.is_multiple_of(self.eval_every) || self.step == total
    }

    /// Stop on a NaN or Inf in `value` (`what`: "the loss") at the current step, naming the
    /// last good checkpoint; `faults.nan_at` makes the value NaN there.
    pub fn check_finite(&self, value: f64, what: &str) -> Result<()> {
        let step = self.step;
        let injected = self.faults.nan_at.as_ref().is_some_and(|a| a.is(&self.name, step));
        let value = if injected { f64::NAN } else { value };
        let last_good = match self.last_good {
            Some(what) => what.to_string(),
            None => last_good(step, self.eval_every, self.unit),
        };
        check_finite(value, what, &self.name, step, &last_good)
    }

    /// Log `key` = `value` at step `s` under the run's name, setting and seed.
    pub fn log(&mut self, s: usize, key: &str, value: f64) {
        self.metrics.push(&self.name, &self.setting, self.seed, s, key, value);
    }
}

/// Running sums of a minibatch loop's statistics, in the order they are added (so that a resumed
/// run sums as an uninterrupted one); their means are logged under `names`.
pub struct Means<const N: usize> {
    sums: [f64; N],
    count: f64,
}

impl<const N: usize> Means<N> {
    pub fn new() -> Means<N> {
        Means { sums: [0.0; N], count: 0.0 }
    }

    pub fn add(&mut self, values: [f64; N]) {
        for (s, v) in self.sums.iter_mut().zip(values) {
            *s += v;
        }
        self.count += 1.0;
    }

    /// Each mean at step `s`, as `{run name}/{name}`.
    pub fn log(&self, t: &mut Trainer, s: usize, names: [&str; N]) {
        for (name, sum) in names.iter().zip(self.sums) {
            t.log(s, &format!("{}/{name}", t.name), sum / self.count);
        }
    }
}

impl<const N: usize> Default for Means<N> {
    fn default() -> Self {
        Means::new()
    }
}
