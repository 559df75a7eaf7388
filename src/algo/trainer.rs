//! The plumbing every trainer shares: what a checkpoint holds besides the weights, where a
//! resumed run starts, and the NaN check that stops a diverging run naming what survives.

use anyhow::{bail, Result};

use super::adam::Adam;
use crate::draw::Rng;

/// Test hook: `ALIGNLAB_NAN_AT=<method>:<step>` makes that method's loss NaN at that step, to
/// check that a diverging run stops cleanly and the others go on.
pub fn injected_nan(stage: &str, step: usize) -> bool {
    std::env::var("ALIGNLAB_NAN_AT").map(|v| v == format!("{stage}:{step}")).unwrap_or(false)
}

/// Stop a stage on a NaN or Inf, naming where it happened and what survives.
pub fn check_finite(
    value: f64,
    what: &str,
    stage: &str,
    step: usize,
    last_good: &str,
) -> Result<()> {
    let value = if injected_nan(stage, step) { f64::NAN } else { value };
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

/// Where a one-optimiser trainer starts: from `resume` (the optimiser's state and, when it has
/// one, its RNG restored; the step returned) or at step 0, after `on_eval` has seen the state a
/// checkpoint needs.
pub fn start_at(
    resume: &Option<ResumeFrom>,
    opt: &mut Adam,
    rng: Option<&mut Rng>,
    on_eval: impl FnOnce(&CkptParts) -> Result<()>,
) -> Result<usize> {
    match resume {
        Some(r) => {
            opt.load(&r.opt_files[0])?;
            if let Some(rng) = rng {
                *rng = Rng::from_state(r.rng);
            }
            Ok(r.step)
        }
        None => {
            let state = rng.map(|r| r.state()).unwrap_or([0; 7]);
            on_eval(&CkptParts { opts: vec![opt], rng: state, extra: vec![] })?;
            Ok(0)
        }
    }
}
