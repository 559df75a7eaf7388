//! PPO with a learned critic for RLHF (Schulman et al. 2017; Ziegler et al. 2019, arXiv
//! 1909.08593; Stiennon et al. 2020; Ouyang et al. 2022), the recipe of TRL and CleanRL, with the
//! math visible in the order it runs (CleanRL style).
//!
//! Implementation details (setting in `[ppo]` / `[ppo_gt]`):
//! 1. Rollouts: `rollout_batch` training prompts per iteration, sampled with the KV cache at
//!    `temperature`; the old log-probs, reference log-probs and values are recomputed in one
//!    forward pass each (the same code path as the update, so the first ratio is exactly 1).
//! 2. Score: the reward model's score (PPO) or the world's gold reward (PPO-GT) of the whole
//!    text, optionally minus `missing_eos_penalty` when the response has no `<eos>`, optionally
//!    normalised by running mean and std (`score_norm`).
//! 3. Per-token reward: -kl_coef * kl_t at every response token, kl_t = log pi - log pi_ref
//!    (`kl_estimator = "k1"`) or (r - 1) - log r with r = pi_ref / pi (`"k3"`), plus the score at
//!    the last response token.
//! 4. KL coefficient: fixed (`kl_coef`) or adaptive (`target_kl`, Ziegler et al. 2019 sec. 2.2):
//!    e = clip(KL / target - 1, -0.2, 0.2), coef *= 1 + e * rollout_batch / `horizon`, where KL
//!    is the batch mean of the summed per-token KL of the estimator in the reward (k1 or k3,
//!    TRL's convention); `objective/kl` logs that sum, `objective/kl_k1` the k1 sum beside it.
//! 5. GAE (`gamma`, `gae_lambda`) over response tokens, the value after the last token 0;
//!    returns = advantages + values; advantages whitened over the batch's tokens
//!    (`whiten_advantages`).
//! 6. `ppo_epochs` passes over shuffled minibatches of `minibatch_size` rollouts: clipped policy
//!    loss (`clip_coef`), clipped value loss 0.5 max((V - R)^2, (V_clip - R)^2) (`vf_clip`),
//!    token means over the response mask.
//! 7. The critic is its own network (the reward model's trunk and head, copied) with its own
//!    Adam at `vf_lr`. Policy and critic share no parameters, so a shared optimiser would only
//!    couple their learning rates through `vf_coef` and their gradient clipping; separate
//!    optimisers make both explicit. `vf_coef` scales the value loss as in the reference
//!    implementations and is logged in the total loss.
//! 8. Gradient-norm clipping at `grad_clip`, each network separately; a NaN or Inf stops the
//!    run naming the iteration.

use anyhow::Result;
use tch::{nn, Kind, Tensor};

use super::adam::Adam;
use super::common::{masked_mean, response_hidden};
use super::reward::RewardModel;
use super::rollout::{self, minibatches, seq_mean};
pub use super::rollout::{
    aggregate, kl_per_token, token_rewards, token_rewards_at, value_mask, Aggregate, KlEstimator,
    RunningStats, ScorePosition,
};
use super::trainer::{CkptParts, Means, Trainer};
use crate::config::{
    at_least_one, in_open_unit, in_range, in_unit, learning_rate, need, non_negative, positive,
    ConfigError, MAX_BATCH, MAX_STEPS,
};
use crate::draw::{derive_seed, Rng};
use crate::model::{Gpt, Rollout, SampleSettings};
use serde::{Deserialize, Serialize};

/// How the KL penalty's coefficient is set: one run of `[ppo]` per `kl_coef` (fixed) and per
/// `target_kl` (adaptive, from `init_kl_coef` over `horizon`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum KlControl {
    Fixed { coef: f64 },
    Adaptive { init: f64, target: f64, horizon: f64 },
}

/// Every PPO setting (see the header): a scenario's `[ppo]` and `[ppo_gt]` tables, whose grids
/// `target_kl` and `kl_coef` set `kl`, one run per value.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// Rollout-and-update iterations.
    pub iterations: usize,
    /// Rollouts per iteration.
    pub rollout_batch: usize,
    /// Rollouts per minibatch.
    pub minibatch_size: usize,
    /// Passes over each iteration's rollouts.
    pub ppo_epochs: usize,
    /// The policy's Adam learning rate.
    pub lr: f64,
    /// The critic's Adam learning rate.
    pub vf_lr: f64,
    /// The ratio clip, 1 +- clip_coef.
    pub clip_coef: f64,
    /// The value clip around the old values.
    pub vf_clip: f64,
    /// Weight of the value loss.
    pub vf_coef: f64,
    /// Discount.
    pub gamma: f64,
    /// GAE lambda.
    pub gae_lambda: f64,
    /// The adaptive controller's start and horizon (rollouts), for each `target_kl`.
    pub init_kl_coef: f64,
    /// The adaptive KL controller's horizon, in rollouts (Ziegler et al.).
    pub horizon: f64,
    /// The KL penalty's reference as an exponential moving average of the policy, updated
    /// after each iteration: ref <- ref_ema ref + (1 - ref_ema) pi (Xu et al. 2024); 0 keeps
    /// pi_SFT (the default). The evaluation's KL is always to pi_SFT.
    pub ref_ema: f64,
    /// The run's KL control, set from the grids (never a key of the table).
    #[serde(skip_deserializing)]
    pub kl: KlControl,
    /// The per-token KL in the reward: `"k1"` (log-ratio, TRL's default) or `"k3"`.
    pub kl_estimator: KlEstimator,
    /// Subtracted from the score of a response that never emits `<eos>` (0: off).
    pub missing_eos_penalty: f64,
    /// Whiten the scores with running statistics (for the reward model's unbounded logits).
    pub score_norm: bool,
    /// Whiten the advantages per minibatch.
    pub whiten_advantages: bool,
    /// Where the score goes: `"last_token"` (the default) or `"after_eos"` (TRL's).
    pub score_position: ScorePosition,
    /// Whiten with the n - 1 variance (TRL's and OpenRLHF's); default: the n one.
    pub whiten_unbiased: bool,
    /// `policy/clipfrac` as `"ratio"` (CleanRL's, the default) or `"active"` (TRL's).
    pub clipfrac: ClipFrac,
    /// Gradient-norm clip.
    pub grad_clip: f64,
    /// The rollouts' sampling temperature: `sample.temperature`, not a key of the table (the
    /// method's cache key holds `[sample]`).
    #[serde(skip)]
    pub temperature: f64,
    /// Evaluate every this many iterations.
    pub eval_every: usize,
}

impl Default for KlControl {
    fn default() -> Self {
        KlControl::Fixed { coef: 0.1 }
    }
}

/// The established recipe (TRL's and CleanRL's defaults); a scenario must still
/// give its KL control (`target_kl` or `kl_coef`), which has no honest default: this one is a
/// fixed 0.1.
impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            iterations: 100,
            rollout_batch: 128,
            minibatch_size: 32,
            ppo_epochs: 4,
            lr: 1e-4,
            vf_lr: 1e-4,
            clip_coef: 0.2,
            vf_clip: 0.2,
            vf_coef: 0.1,
            gamma: 1.0,
            gae_lambda: 0.95,
            init_kl_coef: 0.1,
            horizon: 10000.0,
            ref_ema: 0.0,
            kl: KlControl::default(),
            kl_estimator: KlEstimator::K1,
            missing_eos_penalty: 0.0,
            score_norm: false,
            whiten_advantages: true,
            score_position: ScorePosition::LastToken,
            whiten_unbiased: false,
            clipfrac: ClipFrac::Ratio,
            grad_clip: 1.0,
            temperature: 1.0,
            eval_every: 25,
        }
    }
}

impl PpoConfig {
    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check_kl_and_optimiser()?;
        self.check_rollouts()?;
        Ok(())
    }

    /// The KL controller, the learning rates and the clips.
    fn check_kl_and_optimiser(&self) -> Result<(), ConfigError> {
        need(
            self.init_kl_coef.is_finite() && self.init_kl_coef > 0.0 && self.init_kl_coef <= 1e4,
            "init_kl_coef",
            || format!("must be in (0, 1e4] (got {})", self.init_kl_coef),
            "use e.g. 0.1",
        )?;
        learning_rate("ref_ema", self.ref_ema, "use 0 (off) or e.g. 0.99")?;
        need(
            self.horizon.is_finite() && self.horizon >= 1.0,
            "horizon",
            || format!("must be >= 1 (got {})", self.horizon),
            "use e.g. 10000 (rollouts)",
        )?;
        in_range("iterations", self.iterations, 1, MAX_STEPS, "use e.g. 100")?;
        in_range("rollout_batch", self.rollout_batch, 2, MAX_BATCH, "use e.g. 128")?;
        in_range("ppo_epochs", self.ppo_epochs, 1, 1000, "use 4")?;
        need(
            self.minibatch_size >= 1 && self.minibatch_size <= self.rollout_batch,
            "minibatch_size",
            || format!("must be in 1..=rollout_batch ({})", self.rollout_batch),
            "use e.g. rollout_batch / 4",
        )?;
        learning_rate("lr", self.lr, "use e.g. 1e-4")?;
        learning_rate("vf_lr", self.vf_lr, "use e.g. 1e-4")?;
        Ok(())
    }

    /// The rollouts, minibatches, epochs and evaluation cadence.
    fn check_rollouts(&self) -> Result<(), ConfigError> {
        in_open_unit("clip_coef", self.clip_coef, "use 0.2")?;
        positive("vf_clip", self.vf_clip, "use 0.2")?;
        non_negative("vf_coef", self.vf_coef, "use 0.1")?;
        in_unit("gamma", self.gamma, "use 1.0")?;
        in_unit("gae_lambda", self.gae_lambda, "use 0.95")?;
        non_negative("missing_eos_penalty", self.missing_eos_penalty, "use 0 (off) or e.g. 1.0")?;
        positive("grad_clip", self.grad_clip, "use 1.0")?;
        at_least_one("eval_every", self.eval_every, "evaluate every few dozen iterations")?;
        Ok(())
    }

    /// The runs of a table's grids: one per `target_kl` (adaptive), then one per `kl_coef`.
    pub fn runs(&self, target_kl: &[f64], kl_coef: &[f64]) -> Result<Vec<PpoConfig>, ConfigError> {
        need(!target_kl.is_empty() || !kl_coef.is_empty(), "target_kl", || "neither target_kl nor kl_coef is given".into(), "give target_kl = [...] (adaptive KL) or kl_coef = [...] (fixed), e.g. target_kl = [2.0]")?;
        if let Some(v) = target_kl.iter().find(|v| !(v.is_finite() && (1e-4..=1e4).contains(*v))) {
            need(
                false,
                "target_kl",
                || format!("every target must be in [1e-4, 1e4] (got {v})"),
                "use KL targets in nats, e.g. [1.0, 3.0]",
            )?;
        }
        if let Some(v) =
            kl_coef.iter().find(|v| !(v.is_finite() && (**v == 0.0 || (1e-6..=1e4).contains(*v))))
        {
            need(
                false,
                "kl_coef",
                || format!("every coefficient must be 0 or in [1e-6, 1e4] (got {v})"),
                "use e.g. [0.05, 0.1]",
            )?;
        }
        self.validate()?;
        let adaptive = target_kl.iter().map(|&target| KlControl::Adaptive {
            init: self.init_kl_coef,
            target,
            horizon: self.horizon,
        });
        let fixed = kl_coef.iter().map(|&coef| KlControl::Fixed { coef });
        Ok(adaptive.chain(fixed).map(|kl| PpoConfig { kl, ..*self }).collect())
    }
}

/// GAE, the plain backward loop: advantages `[B, N]`. `values` and `rewards` must be 0 where
/// `mask` is 0 (the value after a row's last token is then 0).
pub fn gae_loop(
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
    gamma: f64,
    lambda: f64,
) -> Tensor {
    let n = rewards.size()[1];
    let (r, v) = (rewards * mask, values * mask);
    let mut last = Tensor::zeros_like(&r.select(1, 0));
    let mut out = Vec::with_capacity(n as usize);
    for t in (0..n).rev() {
        let next_v = if t + 1 < n { v.select(1, t + 1) } else { Tensor::zeros_like(&last) };
        let delta = r.select(1, t) + &next_v * gamma - v.select(1, t);
        last = delta + &last * (gamma * lambda);
        out.push(last.shallow_clone());
    }
    out.reverse();
    Tensor::stack(&out, 1) * mask
}

/// GAE, vectorised: A = delta M with M[k, t] = (gamma lambda)^(k - t) for k >= t. One matmul
/// instead of N dependent steps.
pub fn gae(rewards: &Tensor, values: &Tensor, mask: &Tensor, gamma: f64, lambda: f64) -> Tensor {
    let n = rewards.size()[1];
    let (r, v) = (rewards * mask, values * mask);
    let next_v = Tensor::cat(&[v.narrow(1, 1, n - 1), Tensor::zeros_like(&v.narrow(1, 0, 1))], 1);
    let delta = r + next_v * gamma - &v; // [B, N]
    let idx = Tensor::arange(n, (Kind::Float, rewards.device()));
    let diff = idx.unsqueeze(1) - idx.unsqueeze(0); // [k, t] = k - t
    let decay = (diff.clamp_min(0.0) * (gamma * lambda).max(1e-30).ln()).exp()
        * diff.ge(0.0).to_kind(Kind::Float);
    let decay =
        if gamma * lambda == 0.0 { Tensor::eye(n, (Kind::Float, rewards.device())) } else { decay };
    delta.matmul(&decay) * mask
}

/// Whiten over the masked entries (mean 0, std 1) with the biased variance.
pub fn whiten(x: &Tensor, mask: &Tensor) -> Tensor {
    whiten_with(x, mask, false)
}

/// [`whiten`] with the biased (divided by n) or, `unbiased`, the n - 1 variance (TRL's
/// `masked_whiten`, OpenRLHF).
pub fn whiten_with(x: &Tensor, mask: &Tensor, unbiased: bool) -> Tensor {
    let mean = masked_mean(x, mask);
    let var = masked_mean(&(x - &mean).square(), mask);
    let var = if unbiased {
        let n = mask.sum(Kind::Float);
        var * &n / (n - 1.0).clamp_min(1.0)
    } else {
        var
    };
    (x - mean) * (var + 1e-8).rsqrt() * mask
}

/// Which fraction `policy/clipfrac` logs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipFrac {
    /// Tokens whose ratio lies outside [1 - c, 1 + c] (CleanRL's `clipfracs`).
    Ratio,
    /// Tokens where the clipped term is the one taken (TRL's `pg_clipfrac`: it depends on the
    /// advantage's sign).
    Active,
}

/// Clipped policy loss and its diagnostics.
pub struct PolicyLoss {
    pub loss: Tensor,
    pub approx_kl: Tensor,
    pub clipfrac: Tensor,
    /// The fraction of tokens where the clipped term is taken (TRL's definition).
    pub clipfrac_active: Tensor,
    pub ratio_mean: Tensor,
    pub ratio_var: Tensor,
}

/// L = mean(max(-A r, -A clip(r, 1 - c, 1 + c))), r = pi / pi_old, over the masked tokens;
/// approx_kl = mean((r - 1) - log r) (the k3 estimator of KL(pi_old || pi)).
pub fn policy_loss(
    new_logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    clip_coef: f64,
) -> PolicyLoss {
    policy_loss_by(new_logp, old_logp, adv, mask, clip_coef, Aggregate::TokenMean)
}

/// [`policy_loss`] with the per-token terms aggregated by `how`; the diagnostics are token means.
pub fn policy_loss_by(
    new_logp: &Tensor,
    old_logp: &Tensor,
    adv: &Tensor,
    mask: &Tensor,
    clip_coef: f64,
    how: Aggregate,
) -> PolicyLoss {
    let logratio = new_logp - old_logp;
    let ratio = logratio.exp();
    let pg1 = -adv * &ratio;
    let pg2 = -adv * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef);
    let loss = aggregate(&pg1.maximum(&pg2), mask, how);
    let detached = ratio.detach();
    let approx_kl = masked_mean(&(&detached - 1.0 - logratio.detach()), mask);
    let clipfrac = masked_mean(&(&detached - 1.0).abs().gt(clip_coef).to_kind(Kind::Float), mask);
    let clipfrac_active =
        masked_mean(&pg2.detach().gt_tensor(&pg1.detach()).to_kind(Kind::Float), mask);
    let ratio_mean = masked_mean(&detached, mask);
    let ratio_var = masked_mean(&(&detached - &ratio_mean).square(), mask);
    PolicyLoss { loss, approx_kl, clipfrac, clipfrac_active, ratio_mean, ratio_var }
}

/// Clipped value loss 0.5 mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)) and the
/// fraction of clipped values.
pub fn value_loss(
    values: &Tensor,
    old_values: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    vf_clip: f64,
) -> (Tensor, Tensor) {
    let clipped = old_values + (values - old_values).clamp(-vf_clip, vf_clip);
    let l1 = (values - returns).square();
    let l2 = (&clipped - returns).square();
    let loss = masked_mean(&l1.maximum(&l2), mask) * 0.5;
    let frac = masked_mean(&l2.gt_tensor(&l1).to_kind(Kind::Float), mask);
    (loss, frac)
}

/// 1 - Var(R - V) / Var(R) over the masked tokens.
pub fn explained_variance(values: &Tensor, returns: &Tensor, mask: &Tensor) -> f64 {
    let var = |x: &Tensor| {
        let m = masked_mean(x, mask);
        masked_mean(&(x - m).square(), mask).double_value(&[])
    };
    let vr = var(returns);
    if vr == 0.0 {
        f64::NAN
    } else {
        1.0 - var(&(returns - values)) / vr
    }
}

/// The adaptive KL controller of Ziegler et al. (2019).
#[derive(Clone, Debug)]
pub struct KlController {
    pub coef: f64,
    control: KlControl,
}

impl KlController {
    pub fn new(control: KlControl) -> KlController {
        let coef = match control {
            KlControl::Fixed { coef } => coef,
            KlControl::Adaptive { init, .. } => init,
        };
        KlController { coef, control }
    }

    /// Update from the measured KL of a batch of `n` rollouts.
    pub fn update(&mut self, kl: f64, n: usize) {
        if let KlControl::Adaptive { target, horizon, .. } = self.control {
            let e = (kl / target - 1.0).clamp(-0.2, 0.2);
            self.coef *= 1.0 + e * n as f64 / horizon;
        }
    }
}

/// The critic's value of the state before each response token, `[B, N]`.
fn values_of(critic: &RewardModel, prompt: &Tensor, valid: &Tensor, response: &Tensor) -> Tensor {
    critic.head.forward(&response_hidden(&critic.gpt, prompt, valid, response))
}

/// Everything a PPO run needs besides the two networks.
pub struct PpoContext<'a> {
    pub reference: &'a Gpt,
    pub prompts: &'a [Vec<i64>],
    pub max_new_tokens: i64,
    /// The score of each rollout `[B]` (reward model or gold reward).
    pub score: &'a dyn Fn(&Rollout) -> Tensor,
    /// The store behind `reference`, moved towards the policy after each iteration when
    /// `ref_ema` > 0 (it must then be the run's own copy of pi_SFT, checkpointed with it).
    pub ema_reference: Option<&'a nn::VarStore>,
}

/// ref <- decay ref + (1 - decay) policy, variable by variable.
pub fn ema_update(reference: &nn::VarStore, policy: &nn::VarStore, decay: f64) {
    let _guard = tch::no_grad_guard();
    let policy = policy.variables();
    for (name, r) in reference.variables() {
        let mut r = r.shallow_clone();
        let p = &policy[&name];
        let _ = r.g_mul_scalar_(decay).g_add_(&(p * (1.0 - decay)));
    }
}

/// Train `policy` (and `critic`) with PPO; `t` evaluates at iteration 0, every `eval_every`
/// iterations and at the end, and reports each iteration's KL as progress.
pub fn train(
    policy: &Gpt,
    policy_vs: &nn::VarStore,
    (critic, critic_vs): (&RewardModel, &nn::VarStore),
    ctx: &PpoContext,
    cfg: &PpoConfig,
    t: &mut Trainer,
) -> Result<()> {
    let mut opt = Adam::new(policy_vs, cfg.lr, (0.9, 0.999), 0.0);
    let mut vf_opt = Adam::new(critic_vs, cfg.vf_lr, (0.9, 0.999), 0.0);
    let mut rng = Rng::new(derive_seed(t.seed, &format!("{}/prompts", t.stream)));
    let mut kl_ctl = KlController::new(cfg.kl);
    let mut score_stats = RunningStats::default();
    // The scalars a checkpoint carries besides the optimisers: KL coefficient, score statistics.
    let scalars = |kl: &KlController, st: &RunningStats| vec![kl.coef, st.n, st.mean, st.m2];
    let start = match t.resume.take() {
        Some(r) => {
            opt.load(&r.opt_files[0])?;
            vf_opt.load(&r.opt_files[1])?;
            rng = Rng::from_state(r.rng);
            kl_ctl.coef = r.extra[0];
            score_stats = RunningStats { n: r.extra[1], mean: r.extra[2], m2: r.extra[3] };
            r.step
        }
        None => {
            let extra = scalars(&kl_ctl, &score_stats);
            let parts = CkptParts { opts: vec![&opt, &vf_opt], rng: rng.state(), extra };
            t.evaluate(0, policy, &parts)?;
            0
        }
    };
    t.start_at(start);
    for it in start..cfg.iterations {
        let t_rollout = std::time::Instant::now();
        let rows: Vec<Vec<i64>> = (0..cfg.rollout_batch)
            .map(|_| ctx.prompts[rng.range(0, ctx.prompts.len() - 1)].clone())
            .collect();
        let seed = derive_seed(t.seed, &format!("{}/rollout/{it}", t.stream)) as i64;
        let b = rollouts(policy, critic, ctx, cfg, (&rows, seed), kl_ctl.coef, &mut score_stats);
        let rollout_s = t_rollout.elapsed().as_secs_f64();
        let generated = b.batch.ro.mask.sum(Kind::Float).double_value(&[]);
        let t_update = std::time::Instant::now();
        let (stats, first_approx_kl) =
            update((policy, &mut opt), (critic, &mut vf_opt), &b, cfg, &mut rng, t)?;
        let update_s = t_update.elapsed().as_secs_f64();
        // 4. KL controller, the reference's moving average and metrics.
        kl_ctl.update(b.kl_seq, cfg.rollout_batch);
        if let (Some(reference_vs), true) = (ctx.ema_reference, cfg.ref_ema > 0.0) {
            ema_update(reference_vs, policy_vs, cfg.ref_ema);
        }
        let it1 = it + 1;
        stats.log(t, it1, STATS);
        t.log(it1, &format!("{}/policy/approx_kl_first", t.name), first_approx_kl);
        log_batch(t, it1, &b);
        for (key, v) in [
            ("time/rollout_s", rollout_s),
            ("time/update_s", update_s),
            ("time/rollout_tokens", generated),
        ] {
            t.log(it1, &format!("{}/{key}", t.name), v);
        }
        if t.step_done(cfg.iterations, b.kl_seq) {
            let extra = scalars(&kl_ctl, &score_stats);
            let parts = CkptParts { opts: vec![&opt, &vf_opt], rng: rng.state(), extra };
            t.evaluate(it1, policy, &parts)?;
        }
    }
    Ok(())
}

/// The update's statistics, a mean over its minibatches.
const STATS: [&str; 9] = [
    "loss/policy", "loss/value", "policy/approx_kl", "policy/clipfrac", "value/clipfrac",
    "policy/entropy", "policy/ratio_mean", "policy/ratio_var", "grad_norm",
];

/// An iteration's rollouts with their values, KL, advantages and returns.
struct PpoBatch {
    batch: rollout::Batch,
    /// The critic's positions: the response's, and with `after_eos` the score's one after it.
    vmask: Tensor,
    old_values: Tensor,
    kl: Tensor,
    adv: Tensor,
    returns: Tensor,
    /// The KL coefficient the rewards were shaped with.
    kl_coef: f64,
    /// The estimator's KL and k1's, summed over a sequence, mean over the batch.
    kl_seq: f64,
    kl_k1: f64,
}

/// 1. Rollouts of `rows` (sampled with `seed`), scored. 2. Values, token rewards, GAE.
fn rollouts(
    policy: &Gpt,
    critic: &RewardModel,
    ctx: &PpoContext,
    cfg: &PpoConfig,
    (rows, seed): (&[Vec<i64>], i64),
    kl_coef: f64,
    score_stats: &mut RunningStats,
) -> PpoBatch {
    let settings = SampleSettings {
        temperature: cfg.temperature,
        top_k: 0,
        max_new_tokens: ctx.max_new_tokens,
        use_cache: true,
    };
    let shaping = rollout::Shaping {
        missing_eos_penalty: cfg.missing_eos_penalty,
        score_norm: cfg.score_norm,
    };
    let batch = rollout::collect(
        policy,
        ctx.reference,
        rows,
        (&settings, seed),
        ctx.score,
        shaping,
        score_stats,
    );
    let rollout::Batch { prompt, valid, ro, old_logp, ref_logp, score, .. } = &batch;
    let mask = &ro.mask;
    let vmask = value_mask(mask, cfg.score_position);
    let (old_values, kl, adv, returns) = tch::no_grad(|| {
        let old_values = values_of(critic, prompt, valid, &ro.response) * &vmask;
        let kl = kl_per_token(old_logp, ref_logp, cfg.kl_estimator) * mask;
        let rewards = token_rewards_at(&kl, score, mask, kl_coef, cfg.score_position);
        let adv = gae(&rewards, &old_values, &vmask, cfg.gamma, cfg.gae_lambda);
        let returns = &adv + &old_values;
        let adv = if cfg.whiten_advantages {
            whiten_with(&adv, mask, cfg.whiten_unbiased)
        } else if cfg.score_position == ScorePosition::LastToken {
            adv
        } else {
            adv * mask
        };
        (old_values, kl, adv, returns)
    });
    // The controller adapts on (and `objective/kl` logs) the sum of the estimator in the
    // reward, as TRL does for k3; the k1 sum is logged beside it.
    let kl_seq = tch::no_grad(|| seq_mean(&kl));
    let kl_k1 = tch::no_grad(|| seq_mean(&(old_logp - ref_logp)));
    PpoBatch { vmask, old_values, kl, adv, returns, kl_coef, kl_seq, kl_k1, batch }
}

/// Step 3, the update: epochs of minibatches of the clipped surrogate and the clipped value
/// loss; the statistics and the first minibatch's approximate KL.
fn update(
    (policy, opt): (&Gpt, &mut Adam),
    (critic, vf_opt): (&RewardModel, &mut Adam),
    b: &PpoBatch,
    cfg: &PpoConfig,
    rng: &mut Rng,
    t: &Trainer,
) -> Result<(Means<9>, f64)> {
    let rollout::Batch { prompt, valid, ro, old_logp, .. } = &b.batch;
    let mut stats = Means::new();
    let mut first_approx_kl = f64::NAN;
    let device = policy.cfg_device();
    for index in minibatches(cfg.rollout_batch, cfg.minibatch_size, cfg.ppo_epochs, rng, device) {
        let sel = |t: &Tensor| t.index_select(0, &index);
        let (p, v, resp, m) = (sel(prompt), sel(valid), sel(&ro.response), sel(&ro.mask));
        let logits = policy.logits(&response_hidden(policy, &p, &v, &resp));
        let (new_logp, logp_all) = rollout::logprobs(&logits, &resp, cfg.temperature);
        let pl = policy_loss(&(new_logp * &m), &sel(old_logp), &sel(&b.adv), &m, cfg.clip_coef);
        let new_values = values_of(critic, &p, &v, &resp);
        let (old_values, returns) = (sel(&b.old_values), sel(&b.returns));
        let (vf_loss, vf_clipfrac) =
            value_loss(&new_values, &old_values, &returns, &sel(&b.vmask), cfg.vf_clip);
        let loss = &pl.loss + &vf_loss * cfg.vf_coef;
        opt.zero_grad();
        vf_opt.zero_grad();
        loss.backward();
        let gn = opt.clip_grad_norm(cfg.grad_clip);
        let vgn = vf_opt.clip_grad_norm(cfg.grad_clip);
        let loss_v = loss.double_value(&[]);
        t.check_finite(loss_v, "the PPO loss")?;
        t.check_finite(gn + vgn, "the gradient norm")?;
        opt.step();
        vf_opt.step();
        let entropy = rollout::mean_entropy(&logp_all, &m);
        let approx_kl = pl.approx_kl.double_value(&[]);
        if first_approx_kl.is_nan() {
            first_approx_kl = approx_kl;
        }
        let clipfrac = match cfg.clipfrac {
            ClipFrac::Ratio => &pl.clipfrac,
            ClipFrac::Active => &pl.clipfrac_active,
        };
        stats.add([
            pl.loss.double_value(&[]),
            vf_loss.double_value(&[]),
            approx_kl,
            clipfrac.double_value(&[]),
            vf_clipfrac.double_value(&[]),
            entropy,
            pl.ratio_mean.double_value(&[]),
            pl.ratio_var.double_value(&[]),
            gn,
        ]);
    }
    Ok((stats, first_approx_kl))
}

/// The batch's KL, score, value fit and responses at step `s`.
fn log_batch(t: &mut Trainer, s: usize, b: &PpoBatch) {
    let (ro, mask) = (&b.batch.ro, &b.batch.ro.mask);
    let values = tch::no_grad(|| {
        [
            ("objective/kl", b.kl_seq),
            ("objective/kl_k1", b.kl_k1),
            ("objective/kl_coef", b.kl_coef),
            ("objective/score", b.batch.raw_score.mean(Kind::Float).double_value(&[])),
            ("objective/non_score_reward", -b.kl_coef * seq_mean(&b.kl)),
            ("value/explained_variance", explained_variance(&b.old_values, &b.returns, mask)),
            (
                "response/length",
                mask.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[]),
            ),
            ("response/eos_rate", rollout::has_eos(ro).mean(Kind::Float).double_value(&[])),
        ]
    });
    for (key, v) in values {
        t.log(s, &format!("{}/{key}", t.name), v);
    }
}
