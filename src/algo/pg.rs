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
use super::rollout::{self, kl_per_token, KlEstimator, RunningStats};
use super::trainer::{CkptParts, Trainer};
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
    let (name, seed) = (t.name.clone(), t.seed);
    let recipe = recipe(est, cfg);
    let estimator = cfg.kl_estimator.unwrap_or(KlEstimator::K1);
    let mut opt = Adam::new(vs, cfg.lr, (0.9, 0.999), 0.0);
    let mut rng = Rng::new(derive_seed(seed, &format!("{}/prompts", t.stream)));
    let settings = SampleSettings {
        temperature: cfg.temperature,
        top_k: 0,
        max_new_tokens: ctx.max_new_tokens,
        use_cache: true,
    };
    let device = policy.cfg_device();
    let start = t.start(policy, &mut opt, Some(&mut rng))?;
    let k = cfg.group_size;
    for it in start..cfg.iterations {
        // 1. Rollouts: each prompt `group_size` times, a group's rows consecutive.
        let t_rollout = std::time::Instant::now();
        let rows: Vec<Vec<i64>> = (0..cfg.prompts_per_iteration)
            .flat_map(|_| std::iter::repeat_n(ctx.prompts[rng.below(ctx.prompts.len())].clone(), k))
            .collect();
        let shaping =
            rollout::Shaping { missing_eos_penalty: cfg.missing_eos_penalty, score_norm: false };
        let batch = rollout::collect(
            policy,
            ctx.reference,
            &rows,
            (&settings, derive_seed(seed, &format!("{}/rollout/{it}", t.stream)) as i64),
            ctx.score,
            shaping,
            &mut RunningStats::default(),
        );
        let rollout::Batch { prompt, valid, ro, old_logp, ref_logp, raw_score, score } = batch;
        let mask = &ro.mask;
        // 2. KL and the method's advantages.
        let (adv, kl_seq, kl_k1) = tch::no_grad(|| {
            let kl = kl_per_token(&old_logp, &ref_logp, estimator) * mask;
            let adv = (recipe.advantages)(&score, &(&kl * cfg.kl_coef), mask, k) * mask;
            let seq_mean = |x: &Tensor| {
                x.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[])
            };
            let kl_seq = seq_mean(&kl);
            (adv, kl_seq, seq_mean(&(&old_logp - &ref_logp)))
        });
        let rollout_s = t_rollout.elapsed().as_secs_f64();
        // 3. Update: epochs of minibatches, the clipped surrogate (and GRPO's KL term).
        let t_update = std::time::Instant::now();
        let n = rows.len();
        let mut order: Vec<usize> = (0..n).collect();
        let mut stats = [0.0f64; 7];
        let mut count = 0.0;
        for _epoch in 0..cfg.ppo_epochs {
            rng.shuffle(&mut order);
            for chunk in order.chunks(cfg.minibatch_size.min(n)) {
                let index =
                    Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>())
                        .to_device(device);
                let sel = |t: &Tensor| t.index_select(0, &index);
                let (p, v, resp, m) = (sel(&prompt), sel(&valid), sel(&ro.response), sel(mask));
                let logits = policy.logits(&response_hidden(policy, &p, &v, &resp));
                let (new_logp, logp_all) = rollout::logprobs(&logits, &resp, cfg.temperature);
                let new_logp = new_logp * &m;
                let pl = policy_loss_by(
                    &new_logp,
                    &sel(&old_logp),
                    &sel(&adv),
                    &m,
                    cfg.clip_coef,
                    recipe.aggregate,
                );
                let loss = if recipe.kl_in_loss {
                    &pl.loss
                        + rollout::aggregate(
                            &kl_per_token(&new_logp, &sel(&ref_logp), estimator),
                            &m,
                            recipe.aggregate,
                        ) * cfg.kl_coef
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
                let vals = [
                    loss_v,
                    pl.approx_kl.double_value(&[]),
                    pl.clipfrac.double_value(&[]),
                    entropy,
                    pl.ratio_mean.double_value(&[]),
                    pl.ratio_var.double_value(&[]),
                    gn,
                ];
                for (s, v) in stats.iter_mut().zip(vals) {
                    *s += v;
                }
                count += 1.0;
            }
        }
        let update_s = t_update.elapsed().as_secs_f64();
        // 4. Metrics.
        let it1 = it + 1;
        let push = |t: &mut Trainer, k: &str, v: f64| t.log(it1, &format!("{name}/{k}"), v);
        let names = [
            "loss/policy",
            "policy/approx_kl",
            "policy/clipfrac",
            "policy/entropy",
            "policy/ratio_mean",
            "policy/ratio_var",
            "grad_norm",
        ];
        for (key, s) in names.iter().zip(stats) {
            push(t, key, s / count);
        }
        let (score_mean, adv_mean, adv_std, length, eos_rate) = tch::no_grad(|| {
            let eos = rollout::has_eos(&ro).mean(Kind::Float).double_value(&[]);
            let adv_mean = masked_mean(&adv, mask);
            let adv_std = masked_mean(&(&adv - &adv_mean).square(), mask).sqrt();
            (
                raw_score.mean(Kind::Float).double_value(&[]),
                adv_mean.double_value(&[]),
                adv_std.double_value(&[]),
                mask.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[]),
                eos,
            )
        });
        push(t, "objective/kl", kl_seq);
        push(t, "objective/kl_k1", kl_k1);
        push(t, "objective/kl_coef", cfg.kl_coef);
        push(t, "objective/score", score_mean);
        push(t, "objective/non_score_reward", -cfg.kl_coef * kl_seq);
        push(t, "advantage/mean", adv_mean);
        push(t, "advantage/std", adv_std);
        push(t, "response/length", length);
        push(t, "response/eos_rate", eos_rate);
        push(t, "time/rollout_s", rollout_s);
        push(t, "time/update_s", update_s);
        if t.step_done(cfg.iterations, kl_seq) {
            t.evaluate(
                it1,
                policy,
                &CkptParts { opts: vec![&opt], rng: rng.state(), extra: vec![] },
            )?;
        }
    }
    Ok(())
}
