//! A method run's context (see `train.rs`): the scenario, the shared stages, the evaluator and
//! the resume folder, and the evaluation callback every trainer calls, which evaluates, logs the
//! compute so far, keeps the best checkpoint and writes the resume state.

use anyhow::Result;
use std::path::PathBuf;
use tch::nn;

use super::folders::compute_rows;
use super::options::RunOptions;
use super::scenario::Scenario;
use super::stages::{sft_evaluation, Shared};
use std::cell::RefCell;

use super::progress::Progress;
use crate::algo::trainer::{CkptParts, ResumeFrom, Trainer};
use crate::eval::Evaluator;
use crate::log::Metrics;
use crate::model::{self, Gpt};
use crate::profile::{add_work, stage_work, Work, WORK};

/// A method's resume folder: the state at its last evaluation, replaced atomically.
pub(super) struct ResumeDir {
    pub dir: PathBuf,
}

struct Resumed {
    from: ResumeFrom,
    metrics: Metrics,
    evals: Metrics,
}

impl ResumeDir {
    fn load(&self, stores: &mut [&mut nn::VarStore]) -> Result<Option<Resumed>> {
        let state_path = self.dir.join("state.txt");
        if !state_path.exists() {
            return Ok(None);
        }
        let bad = |what: &str| {
            anyhow::anyhow!(
                "corrupt resume state {} ({what}); fix: delete {} to restart this method",
                state_path.display(),
                self.dir.display()
            )
        };
        let text = std::fs::read_to_string(&state_path)?;
        let mut step = None;
        let mut rng = [0u64; 7];
        let mut extra = vec![];
        let mut n_opts = 0;
        for line in text.lines() {
            let (k, v) = line.split_once('=').ok_or_else(|| bad("a line without ="))?;
            match k {
                "step" => step = Some(v.parse::<usize>().map_err(|_| bad("step"))?),
                "rng" => {
                    let parts: Vec<u64> = v
                        .split(',')
                        .map(|x| x.parse::<u64>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| bad("rng"))?;
                    rng = parts.try_into().map_err(|_| bad("rng"))?;
                }
                "extra" => {
                    extra = if v.is_empty() {
                        vec![]
                    } else {
                        v.split(',')
                            .map(|x| x.parse::<f64>())
                            .collect::<Result<_, _>>()
                            .map_err(|_| bad("extra"))?
                    }
                }
                "opts" => n_opts = v.parse::<usize>().map_err(|_| bad("opts"))?,
                _ => return Err(bad("an unknown key")),
            }
        }
        for (i, vs) in stores.iter_mut().enumerate() {
            model::load_checkpoint(vs, &self.dir.join(format!("weights{i}.safetensors")))?;
        }
        let metrics = Metrics::read(&self.dir.join("metrics.csv"))?;
        let evals = Metrics::read(&self.dir.join("eval.csv"))?;
        let opt_files = (0..n_opts).map(|i| self.dir.join(format!("opt{i}.safetensors"))).collect();
        Ok(Some(Resumed {
            from: ResumeFrom { step: step.ok_or_else(|| bad("no step"))?, opt_files, rng, extra },
            metrics,
            evals,
        }))
    }

    fn save(
        &self,
        step: usize,
        parts: &CkptParts,
        stores: &[&nn::VarStore],
        metrics: &Metrics,
        evals: &Metrics,
    ) -> Result<()> {
        let _p = crate::profile::span("checkpoint_io");
        let tmp = self.dir.with_extension("partial");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        for (i, vs) in stores.iter().enumerate() {
            model::save_checkpoint(vs, &tmp.join(format!("weights{i}.safetensors")))?;
        }
        for (i, o) in parts.opts.iter().enumerate() {
            o.save(&tmp.join(format!("opt{i}.safetensors")))?;
        }
        std::fs::write(tmp.join("metrics.csv"), metrics.to_csv())?;
        std::fs::write(tmp.join("eval.csv"), evals.to_csv())?;
        let extra: Vec<String> = parts.extra.iter().map(|x| x.to_string()).collect();
        let rng: Vec<String> = parts.rng.iter().map(|x| x.to_string()).collect();
        std::fs::write(
            tmp.join("state.txt"),
            format!(
                "step={step}\nrng={}\nextra={}\nopts={}\n",
                rng.join(","),
                extra.join(","),
                parts.opts.len()
            ),
        )?;
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::rename(&tmp, &self.dir)?;
        Ok(())
    }
}

impl ResumeDir {
    /// Restore the weights into `stores` and the logs so far into `metrics` and `evals`;
    /// returns where the trainer resumes, or None for a fresh start.
    pub fn resume_into(
        &self,
        stores: &mut [&mut nn::VarStore],
        metrics: &mut Metrics,
        evals: &mut Metrics,
    ) -> Result<Option<ResumeFrom>> {
        Ok(self.load(stores)?.map(|r| {
            *metrics = r.metrics;
            *evals = r.evals;
            r.from
        }))
    }
}

/// What a method's trainer works with (see `Method::train`): the scenario, the shared stages,
/// its evaluator and resume folder, and the metrics and evaluations it writes.
pub(super) struct Run<'a> {
    pub sc: &'a Scenario,
    pub s: &'a Shared<'a>,
    pub opts: &'a RunOptions,
    pub ev: Evaluator<'a>,
    pub resume: ResumeDir,
    pub name: String,
    pub setting: String,
    /// The method's random stream (`Method::stream_key`).
    pub stream: String,
    pub metrics: Metrics,
    /// The evaluations so far, written by the trainer's evaluation callback.
    pub evals: RefCell<Metrics>,
    /// The compute of the shared stages the method stands on.
    pub deps: Work,
    /// What this process adds its own compute to: `deps` in a fresh run, the compute logged at
    /// the checkpoint in a resumed one (set at this process's first evaluation).
    pub compute_base: std::cell::Cell<Option<Work>>,
    /// Which checkpoint the run keeps (`[train] keep`), and where the best so far is written
    /// (beside the resume folder, which each checkpoint replaces).
    pub keep: crate::algo::dpo::Keep,
    pub best: PathBuf,
}

impl Run<'_> {
    /// The method's compute up to now: its shared stages, and its own work in the stage (the
    /// FLOPs and counts of the stage's work phases; evaluation is not part of it). Deterministic,
    /// and the same whether the run was resumed or not: a resumed process starts from the values
    /// logged with the checkpoint it resumes.
    fn compute_now(&self, step: usize, evals: &Metrics) -> Work {
        let base = match self.compute_base.get() {
            Some(b) => b,
            None => {
                let b = if step == 0 {
                    self.deps
                } else {
                    let last = |k: &str| {
                        evals
                            .rows
                            .iter()
                            .rev()
                            .find(|r| {
                                r.method == self.name
                                    && r.setting == self.setting
                                    && r.metric == format!("compute/{k}")
                            })
                            .map_or(f64::NAN, |r| r.value)
                    };
                    let mut b = [0.0; WORK.len()];
                    for (o, k) in b.iter_mut().zip(WORK) {
                        *o = last(k);
                    }
                    b
                };
                self.compute_base.set(Some(b));
                b
            }
        };
        let mut out = base;
        let own = stage_work(&crate::profile::current());
        add_work(&mut out, &own, 1.0);
        // The FLOPs exactly (see `profile::add_gflop`): a resumed run, whose base is the value
        // logged at its checkpoint, sums to the uninterrupted run's bits.
        out[0] = crate::profile::add_gflop(base[0], own[0]);
        out
    }

    /// Restore the weights into `stores` (the policy first) and the evaluations so far from the
    /// run's resume folder; returns where the trainer resumes (None: a fresh start) and the
    /// metrics logged so far.
    pub fn resume_into(
        &self,
        stores: &mut [&mut nn::VarStore],
    ) -> Result<(Option<ResumeFrom>, Metrics)> {
        let (mut metrics, mut evals) = (Metrics::default(), Metrics::default());
        let from = self.resume.resume_into(stores, &mut metrics, &mut evals)?;
        if from.is_some() {
            let note = format!("resuming from {}", self.resume.dir.display());
            self.opts.progress.note(&self.sc.name, Some(self.sc.seed), &note);
        }
        *self.evals.borrow_mut() = evals;
        Ok((from, metrics))
    }

    /// This run's progress over `len` steps, its setting as the message.
    pub fn progress(&self, len: u64) -> Progress {
        let tag = super::progress::Tag {
            scenario: self.sc.name.clone(),
            seed: self.sc.seed,
            cell: format!("{} {}", self.name, self.setting),
            stage: self.name.clone(),
        };
        let pb = super::progress::progress(self.opts.progress, len, tag);
        pb.set_message(self.setting.clone());
        pb
    }

    /// The trainer of this run: at `resumed` (from [`Run::resume_into`]), its progress on `pb`
    /// over `total` steps, evaluating and checkpointing `stores` every `eval_every` steps (or
    /// at `eval.checkpoints` evenly spaced points).
    pub fn trainer<'b>(
        &'b self,
        stores: &'b [&'b nn::VarStore],
        (total, eval_every): (usize, usize),
        resumed: (Option<ResumeFrom>, Metrics),
        pb: &'b Progress,
    ) -> Trainer<'b> {
        pb.set_position(resumed.0.as_ref().map_or(0, |f| f.step as u64));
        let eval_every = self.sc.eval.interval(total, eval_every);
        Trainer::new(&self.name, &self.setting, self.sc.seed, eval_every)
            .resuming(resumed.0, resumed.1)
            .with_stream(self.stream.clone())
            .with_faults(self.sc.faults.clone())
            .on_eval(move |step, policy, metrics, parts| {
                self.on_eval((step, total), policy, parts, stores, metrics)
            })
            .on_step(|_, _| pb.inc(1))
    }

    /// The evaluation callback of a trainer: evaluate at `step` of `total` into the run's
    /// evaluations, then, before the last step, checkpoint everything a resumed run needs.
    fn on_eval(
        &self,
        (step, total): (usize, usize),
        policy: &Gpt,
        parts: &CkptParts,
        stores: &[&nn::VarStore],
        metrics: &Metrics,
    ) -> Result<()> {
        // Step 0 is pi_SFT (a fresh start; a resumed run does not evaluate it again).
        let mut rows = if step == 0 {
            sft_evaluation(self.sc, self.s, &self.ev, self.opts)?
        } else {
            self.ev.evaluate(policy).0
        };
        for &t in &self.sc.eval.curve_temperatures {
            rows.extend(self.ev.evaluate_at_temperature(policy, t));
        }
        let mut evals = self.evals.borrow_mut();
        rows.extend(compute_rows(&self.compute_now(step, &evals)));
        // A better checkpoint by the keep rule than every earlier evaluation (ties keep the
        // earliest): its weights, for the end of the run.
        if let Some(metric) = self.keep.metric() {
            let before = evals
                .rows
                .iter()
                .filter(|r| {
                    r.method == self.name && r.setting == self.setting && r.metric == metric
                })
                .map(|r| r.value)
                .fold(f64::NEG_INFINITY, f64::max);
            if rows.iter().any(|(k, v)| k == metric && *v > before) {
                let _p = crate::profile::span("checkpoint_io");
                std::fs::create_dir_all(self.best.parent().expect("a run folder"))?;
                model::save_checkpoint(stores[0], &self.best)?;
            }
        }
        for (k, v) in rows {
            evals.push(&self.name, &self.setting, self.sc.seed, step, &k, v);
        }
        if step > 0 && step < total {
            self.resume.save(step, parts, stores, metrics, &evals)?;
            self.sc.faults.abort_if_due(&self.name, step);
        }
        Ok(())
    }
}
