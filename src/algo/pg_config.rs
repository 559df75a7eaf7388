//! The settings of the critic-free methods (`[rloo]`, `[reinforce_pp]`, `[grpo]`), what each
//! method's file decides ([`Recipe`]) and the helpers those files share; the loop that runs them
//! is `pg.rs`, which reads this file and the three method files, none of which reads it.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use super::rollout::{Aggregate, KlEstimator};
use crate::config::{
    at_least_one, in_open_unit, in_range, learning_rate, need, non_negative, positive, ConfigError,
    MAX_BATCH, MAX_STEPS,
};

/// The three critic-free estimators.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    Rloo,
    ReinforcePp,
    Grpo,
}

/// `[rloo]`, `[reinforce_pp]` and `[grpo]`: every setting of the loop, and the knobs of one
/// method each (`baseline`: REINFORCE++; `scale_std`, `length_norm`: GRPO), which the other
/// tables refuse.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgConfig {
    /// Rollout-and-update iterations.
    pub iterations: usize,
    /// Training prompts per iteration, each sampled `group_size` times.
    pub prompts_per_iteration: usize,
    /// Samples per prompt (RLOO's k, GRPO's G), at least 2.
    pub group_size: usize,
    /// Passes over each iteration's rollouts.
    pub ppo_epochs: usize,
    /// Rollouts per minibatch.
    pub minibatch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// The ratio clip, 1 +- clip_coef.
    pub clip_coef: f64,
    /// Gradient-norm clip.
    pub grad_clip: f64,
    /// k1 (RLOO's and REINFORCE++'s default) or k3 (GRPO's).
    pub kl_estimator: Option<KlEstimator>,
    /// Subtracted from the score of a response that never emits `<eos>` (0: off).
    pub missing_eos_penalty: f64,
    /// Evaluate every this many iterations.
    pub eval_every: usize,
    /// REINFORCE++ only: subtract the group's mean score first (the `baseline` variant).
    pub baseline: Option<bool>,
    /// GRPO only: divide by the group's std (false: Dr. GRPO).
    pub scale_std: Option<bool>,
    /// GRPO only: each response's token mean (false: Dr. GRPO's sum over the budget).
    pub length_norm: Option<bool>,
    /// The run's KL coefficient, from the table's `kl_coef` grid.
    #[serde(skip_deserializing)]
    pub kl_coef: f64,
    /// `sample.temperature` and `sample.max_new_tokens`, not keys of the table.
    #[serde(skip)]
    pub temperature: f64,
    #[serde(skip)]
    pub max_new_tokens: usize,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            iterations: 100,
            prompts_per_iteration: 16,
            group_size: 4,
            ppo_epochs: 4,
            minibatch_size: 32,
            lr: 1e-4,
            clip_coef: 0.2,
            grad_clip: 1.0,
            kl_estimator: None,
            missing_eos_penalty: 0.0,
            eval_every: 25,
            baseline: None,
            scale_std: None,
            length_norm: None,
            kl_coef: 0.05,
            temperature: 1.0,
            max_new_tokens: 16,
        }
    }
}

impl PgConfig {
    /// Fill in the method's own defaults, refusing a knob of another method.
    pub fn for_estimator(mut self, est: Estimator) -> Result<PgConfig, ConfigError> {
        let only = |set: bool, key: &str, owner: &str| {
            need(
                !set || owner == est.name(),
                key,
                || format!("applies to [{owner}] only"),
                "remove it",
            )
        };
        only(self.baseline.is_some(), "baseline", "reinforce_pp")?;
        only(self.scale_std.is_some(), "scale_std", "grpo")?;
        only(self.length_norm.is_some(), "length_norm", "grpo")?;
        self.kl_estimator.get_or_insert(if est == Estimator::Grpo {
            KlEstimator::K3
        } else {
            KlEstimator::K1
        });
        match est {
            Estimator::ReinforcePp => {
                self.baseline.get_or_insert(false);
            }
            Estimator::Grpo => {
                self.scale_std.get_or_insert(true);
                self.length_norm.get_or_insert(true);
            }
            Estimator::Rloo => {}
        }
        Ok(self)
    }

    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("iterations", self.iterations, 1, MAX_STEPS, "use e.g. 100")?;
        in_range(
            "group_size",
            self.group_size,
            2,
            256,
            "use e.g. 4: a baseline needs two samples of a prompt",
        )?;
        let batch = self.prompts_per_iteration * self.group_size;
        need(
            self.prompts_per_iteration >= 1 && batch <= MAX_BATCH,
            "prompts_per_iteration",
            || {
                format!("must be at least 1, with prompts_per_iteration x group_size at most {MAX_BATCH}")
            },
            "use e.g. 16",
        )?;
        in_range("ppo_epochs", self.ppo_epochs, 1, 1000, "use 1 to 4")?;
        need(
            self.minibatch_size >= 1 && self.minibatch_size <= batch,
            "minibatch_size",
            || format!("must be in 1..=prompts_per_iteration x group_size ({batch})"),
            "use e.g. 32",
        )?;
        learning_rate("lr", self.lr, "use e.g. 1e-4")?;
        in_open_unit("clip_coef", self.clip_coef, "use 0.2")?;
        positive("grad_clip", self.grad_clip, "use 1.0")?;
        non_negative("missing_eos_penalty", self.missing_eos_penalty, "use 0 (off)")?;
        at_least_one("eval_every", self.eval_every, "evaluate every few dozen iterations")
    }
}

impl Estimator {
    /// Its scenario table.
    pub fn name(self) -> &'static str {
        match self {
            Estimator::Rloo => "rloo",
            Estimator::ReinforcePp => "reinforce_pp",
            Estimator::Grpo => "grpo",
        }
    }
}

/// A method's advantages `[B, N]` from the shaped scores `[B]`, the per-token KL estimate
/// `[B, N]`, the mask and the group size.
pub type Advantages = Box<dyn Fn(&Tensor, &Tensor, &Tensor, usize) -> Tensor>;

/// What a critic-free method decides: its advantages, whether its KL is a loss term, and how its
/// per-token loss is aggregated.
pub struct Recipe {
    /// Advantages `[B, N]` from the shaped scores `[B]`, the per-token KL estimate `[B, N]`
    /// (0 past the mask), the mask and the group size (rows of a group are consecutive).
    pub advantages: Advantages,
    /// The KL is `kl_coef` times its estimate in the loss (GRPO), not in the reward.
    pub kl_in_loss: bool,
    pub aggregate: Aggregate,
}

/// Group means `[B]` of `x` `[B]` (groups of `k` consecutive rows), broadcast back to the rows.
pub fn group_mean(x: &Tensor, k: usize) -> Tensor {
    let g = x.view([-1, k as i64]);
    g.mean_dim(1, true, Kind::Float).expand_as(&g).reshape([-1])
}

/// A per-sequence quantity `[B]` on every token `[B, N]`.
pub fn on_tokens(x: &Tensor, mask: &Tensor) -> Tensor {
    x.unsqueeze(1) * mask
}
