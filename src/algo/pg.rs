//! The critic-free policy-gradient loop shared by RLOO (`rloo.rs`), REINFORCE++
//! (`reinforce_pp.rs`) and GRPO (`grpo.rs`). Each of those files holds its method's advantages,
//! where its KL goes and how its loss is aggregated ([`Recipe`]); this loop samples, scores and
//! steps, in the order below (CleanRL style).
//!
//! Implementation details (setting in `[rloo]`, `[reinforce_pp]`, `[grpo]`):
//! 1. Rollouts: `prompts_per_iteration` training prompts, each sampled `group_size` times (the
//!    group of RLOO's leave-one-out and GRPO's normalisation) at `sample.temperature`, with the
//!    KV cache; the old and reference log-probs are recomputed in one pass each
//!    (`rollout::collect`, as PPO).
//! 2. Score: the reward model's (the paper's RLHF setting), optionally minus
//!    `missing_eos_penalty`; no running normalisation (the advantages are normalised instead).
//! 3. KL to pi_ref with `kl_estimator` (k1 or k3) at coefficient `kl_coef`, one run per value:
//!    in the sequence reward (RLOO), in the token rewards (REINFORCE++) or as a loss term
//!    (GRPO), as the method's recipe says.
//! 4. Advantages: the method's, from the rewards of a group or of the batch.
//! 5. Update: `ppo_epochs` passes over shuffled minibatches of `minibatch_size` rollouts;
//!    clipped ratio (`clip_coef`; with one epoch the first step is plain REINFORCE), the
//!    per-token terms aggregated as the method says; Adam at `lr`, gradient-norm clip
//!    `grad_clip`; a NaN or Inf stops the run naming the iteration.

use anyhow::Result;
use tch::{nn, Kind, Tensor};

use super::adam::Adam;
use super::common::{masked_mean, response_hidden};
pub use super::pg_config::{Estimator, PgConfig, Recipe};
use super::ppo::{policy_loss_by, PpoContext};
use super::rollout::{self, kl_per_token, minibatches, seq_mean, KlEstimator, RunningStats};
use super::trainer::{CkptParts, Means, Trainer};
use crate::draw::{derive_seed, Rng};
use crate::model::{Gpt, SampleSettings};

/// The method's choices, from its file.
pub fn recipe(est: Estimator, cfg: &PgConfig) -> Recipe {
    match est {
        Estimator::Rloo => super::rloo::recipe(cfg),
        Estimator::ReinforcePp => super::reinforce_pp::recipe(cfg),
        Estimator::Grpo => super::grpo::recipe(cfg),
    }
}

/// Train `policy` with a critic-free estimator; `t` evaluates at iteration 0, every
/// `eval_every` iterations and at the end, and reports each iteration's KL as progress.
pub fn train(
    policy: &Gpt,
    vs: &nn::VarStore,
    ctx: &PpoContext,
    est: Estimator,
    cfg: &PgConfig,
    t: &mut Trainer,
) -> Result<()> {
    let recipe = recipe(est, cfg);
    let mut opt = Adam::new(vs, cfg.lr, (0.9, 0.999), 0.0);
    let mut rng = Rng::new(derive_seed(t.seed, &format!("{}/prompts", t.stream)));
    let start = t.start(policy, &mut opt, Some(&mut rng))?;
    for it in start..cfg.iterations {
        let t_rollout = std::time::Instant::now();
        let b = rollouts(policy, ctx, cfg, &recipe, it, &mut rng, t);
        let rollout_s = t_rollout.elapsed().as_secs_f64();
        let t_update = std::time::Instant::now();
        let stats = update(policy, &mut opt, &b, (cfg, &recipe), &mut rng, t)?;
        let update_s = t_update.elapsed().as_secs_f64();
        // 4. Metrics.
        let it1 = it + 1;
        stats.log(t, it1, STATS);
        log_batch(t, it1, &b, cfg.kl_coef);
        t.log(it1, &format!("{}/time/rollout_s", t.name), rollout_s);
        t.log(it1, &format!("{}/time/update_s", t.name), update_s);
        if t.step_done(cfg.iterations, b.kl_seq) {
            let parts = CkptParts { opts: vec![&opt], rng: rng.state(), extra: vec![] };
            t.evaluate(it1, policy, &parts)?;
        }
    }
    Ok(())
}

/// The update's statistics, a mean over its minibatches.
const STATS: [&str; 7] = [
    "loss/policy", "policy/approx_kl", "policy/clipfrac", "policy/entropy", "policy/ratio_mean",
    "policy/ratio_var", "grad_norm",
];

/// An iteration's rollouts with their KL and the method's advantages.
struct PgBatch {
    batch: rollout::Batch,
    adv: Tensor,
    /// The estimator's KL and k1's, summed over a sequence, mean over the batch.
    kl_seq: f64,
    kl_k1: f64,
}

/// Steps 1 and 2: rollouts of `prompts_per_iteration` prompts, each `group_size` times (a
/// group's rows consecutive), with their KL and the method's advantages.
fn rollouts(
    policy: &Gpt,
    ctx: &PpoContext,
    cfg: &PgConfig,
    recipe: &Recipe,
    it: usize,
    rng: &mut Rng,
    t: &Trainer,
) -> PgBatch {
    let k = cfg.group_size;
    let rows: Vec<Vec<i64>> = (0..cfg.prompts_per_iteration)
        .flat_map(|_| std::iter::repeat_n(ctx.prompts[rng.below(ctx.prompts.len())].clone(), k))
        .collect();
    let settings = SampleSettings {
        temperature: cfg.temperature,
        top_k: 0,
        max_new_tokens: ctx.max_new_tokens,
        use_cache: true,
    };
    let shaping =
        rollout::Shaping { missing_eos_penalty: cfg.missing_eos_penalty, score_norm: false };
    let batch = rollout::collect(
        policy,
        ctx.reference,
        &rows,
        (&settings, derive_seed(t.seed, &format!("{}/rollout/{it}", t.stream)) as i64),
        ctx.score,
        shaping,
        &mut RunningStats::default(),
    );
    let mask = &batch.ro.mask;
    let estimator = cfg.kl_estimator.unwrap_or(KlEstimator::K1);
    let (adv, kl_seq, kl_k1) = tch::no_grad(|| {
        let kl = kl_per_token(&batch.old_logp, &batch.ref_logp, estimator) * mask;
        let adv = (recipe.advantages)(&batch.score, &(&kl * cfg.kl_coef), mask, k) * mask;
        (adv, seq_mean(&kl), seq_mean(&(&batch.old_logp - &batch.ref_logp)))
    });
    PgBatch { adv, kl_seq, kl_k1, batch }
}

/// 3. Update: epochs of minibatches, the clipped surrogate (and GRPO's KL term).
fn update(
    policy: &Gpt,
    opt: &mut Adam,
    b: &PgBatch,
    (cfg, recipe): (&PgConfig, &Recipe),
    rng: &mut Rng,
    t: &Trainer,
) -> Result<Means<7>> {
    let rollout::Batch { prompt, valid, ro, old_logp, ref_logp, .. } = &b.batch;
    let estimator = cfg.kl_estimator.unwrap_or(KlEstimator::K1);
    let n = ro.mask.size()[0] as usize;
    let mut stats = Means::new();
    for index in minibatches(n, cfg.minibatch_size, cfg.ppo_epochs, rng, policy.cfg_device()) {
        let sel = |t: &Tensor| t.index_select(0, &index);
        let (p, v, resp, m) = (sel(prompt), sel(valid), sel(&ro.response), sel(&ro.mask));
        let logits = policy.logits(&response_hidden(policy, &p, &v, &resp));
        let (new_logp, logp_all) = rollout::logprobs(&logits, &resp, cfg.temperature);
        let new_logp = new_logp * &m;
        let (old, adv) = (sel(old_logp), sel(&b.adv));
        let pl = policy_loss_by(&new_logp, &old, &adv, &m, cfg.clip_coef, recipe.aggregate);
        let loss = if recipe.kl_in_loss {
            let kl = kl_per_token(&new_logp, &sel(ref_logp), estimator);
            &pl.loss + rollout::aggregate(&kl, &m, recipe.aggregate) * cfg.kl_coef
        } else {
            pl.loss.shallow_clone()
        };
        opt.zero_grad();
        loss.backward();
        let gn = opt.clip_grad_norm(cfg.grad_clip);
        let loss_v = loss.double_value(&[]);
        t.check_finite(loss_v, "the loss")?;
        t.check_finite(gn, "the gradient norm")?;
        opt.step();
        let entropy = rollout::mean_entropy(&logp_all, &m);
        stats.add([
            loss_v,
            pl.approx_kl.double_value(&[]),
            pl.clipfrac.double_value(&[]),
            entropy,
            pl.ratio_mean.double_value(&[]),
            pl.ratio_var.double_value(&[]),
            gn,
        ]);
    }
    Ok(stats)
}

/// The batch's KL, score, advantages and responses at step `s`.
fn log_batch(t: &mut Trainer, s: usize, b: &PgBatch, kl_coef: f64) {
    let (ro, mask) = (&b.batch.ro, &b.batch.ro.mask);
    let (score_mean, adv_mean, adv_std, length, eos_rate) = tch::no_grad(|| {
        let eos = rollout::has_eos(ro).mean(Kind::Float).double_value(&[]);
        let adv_mean = masked_mean(&b.adv, mask);
        let adv_std = masked_mean(&(&b.adv - &adv_mean).square(), mask).sqrt();
        (
            b.batch.raw_score.mean(Kind::Float).double_value(&[]),
            adv_mean.double_value(&[]),
            adv_std.double_value(&[]),
            mask.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[]),
            eos,
        )
    });
    let values = [
        ("objective/kl", b.kl_seq),
        ("objective/kl_k1", b.kl_k1),
        ("objective/kl_coef", kl_coef),
        ("objective/score", score_mean),
        ("objective/non_score_reward", -kl_coef * b.kl_seq),
        ("advantage/mean", adv_mean),
        ("advantage/std", adv_std),
        ("response/length", length),
        ("response/eos_rate", eos_rate),
    ];
    for (key, v) in values {
        t.log(s, &format!("{}/{key}", t.name), v);
    }
}
