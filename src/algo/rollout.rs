//! One rollout batch, shared by every online method: sample completions of training prompts
//! from the policy, then their log-probs under the policy and the reference (at the sampling
//! temperature, `model::sampling_logprobs`), the score (reward model or gold) with its shaping,
//! the per-token KL estimator and the token rewards. PPO adds its critic and GAE on top.

use tch::{Device, Kind, Tensor};

use super::common::{response_hidden, rows_index};
use crate::draw::Rng;
use crate::model::{generate, left_pad, sampling_logprobs, Gpt, Rollout, SampleSettings};

/// The per-token KL estimator in the reward: `"k1"` (the default, TRL's) or `"k3"`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlEstimator {
    K1,
    K3,
}

/// Per-token KL of the policy from the reference at the sampled tokens, `[B, N]`.
pub fn kl_per_token(logp: &Tensor, ref_logp: &Tensor, estimator: KlEstimator) -> Tensor {
    let logratio = logp - ref_logp; // log pi / pi_ref
    match estimator {
        KlEstimator::K1 => logratio,
        // r = pi_ref / pi: (r - 1) - log r >= 0, unbiased for KL(pi || pi_ref).
        KlEstimator::K3 => (-&logratio).exp() - 1.0 + logratio,
    }
}

/// Token rewards `[B, N]`: -kl_coef * kl_t everywhere, plus `score` `[B]` at each row's last
/// response token; zero where `mask` is 0.
pub fn token_rewards(kl: &Tensor, score: &Tensor, mask: &Tensor, kl_coef: f64) -> Tensor {
    let last = (mask.sum_dim_intlist(1, false, Kind::Int64) - 1).clamp_min(0); // [B]
    let at_last = Tensor::zeros_like(mask).scatter(1, &last.unsqueeze(1), &score.unsqueeze(1));
    (kl * -kl_coef + at_last) * mask
}

/// Where the score goes among a response's token rewards.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScorePosition {
    /// At the last response token (`<eos>` when emitted): the value after it is 0.
    LastToken,
    /// At the position after it, where the policy takes no action but the critic has a value
    /// (TRL's `sequence_lengths_p1` and its value mask); at the last position when there is no
    /// room.
    AfterEos,
}

/// The positions of the score `[B]`: the last response token, or the one after it.
fn score_index(mask: &Tensor, position: ScorePosition) -> Tensor {
    let len = mask.sum_dim_intlist(1, false, Kind::Int64);
    match position {
        ScorePosition::LastToken => (len - 1).clamp_min(0),
        ScorePosition::AfterEos => len.clamp_max(mask.size()[1] - 1),
    }
}

/// The mask of the positions with a value: the response's, plus the score's position.
pub fn value_mask(mask: &Tensor, position: ScorePosition) -> Tensor {
    match position {
        ScorePosition::LastToken => mask.shallow_clone(),
        ScorePosition::AfterEos => {
            mask.scatter_value(1, &score_index(mask, position).unsqueeze(1), 1.0)
        }
    }
}

/// [`token_rewards`] with the score at `position`; the KL term stays on the response's tokens.
pub fn token_rewards_at(
    kl: &Tensor,
    score: &Tensor,
    mask: &Tensor,
    kl_coef: f64,
    position: ScorePosition,
) -> Tensor {
    match position {
        ScorePosition::LastToken => token_rewards(kl, score, mask, kl_coef),
        ScorePosition::AfterEos => {
            kl * -kl_coef * mask
                + Tensor::zeros_like(mask).scatter(
                    1,
                    &score_index(mask, position).unsqueeze(1),
                    &score.unsqueeze(1),
                )
        }
    }
}

/// How a per-token loss `[B, N]` becomes the batch's scalar: the established trainers differ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Aggregate {
    /// The mean over every response token of the batch (PPO, REINFORCE++).
    TokenMean,
    /// Each response's tokens summed, the mean over responses: REINFORCE on the sequence
    /// log-prob (RLOO).
    SeqSum,
    /// Each response's token mean, the mean over responses (GRPO).
    SeqMean,
    /// Each response's tokens summed over a constant (the generation budget), the mean over
    /// responses (Dr. GRPO: no per-length normalisation).
    SeqSumOver(f64),
}

/// A per-token quantity `x` `[B, N]` over the `mask`ed tokens, aggregated by `how`.
pub fn aggregate(x: &Tensor, mask: &Tensor, how: Aggregate) -> Tensor {
    let per_seq = || (x * mask).sum_dim_intlist(1, false, Kind::Float);
    match how {
        Aggregate::TokenMean => super::common::masked_mean(x, mask),
        Aggregate::SeqSum => per_seq().mean(Kind::Float),
        Aggregate::SeqMean => (per_seq()
            / mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0))
        .mean(Kind::Float),
        Aggregate::SeqSumOver(n) => per_seq().mean(Kind::Float) / n,
    }
}

/// Running mean and variance (Welford), for score normalisation.
#[derive(Clone, Debug, Default)]
pub struct RunningStats {
    pub n: f64,
    pub mean: f64,
    pub m2: f64,
}

impl RunningStats {
    pub fn update(&mut self, xs: &[f64]) {
        for &x in xs {
            self.n += 1.0;
            let d = x - self.mean;
            self.mean += d / self.n;
            self.m2 += d * (x - self.mean);
        }
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    pub fn std(&self) -> f64 {
        if self.n > 1.0 {
            (self.m2 / (self.n - 1.0)).sqrt()
        } else {
            1.0
        }
    }
}

/// The log-probs of `response` `[B, N]` and the full log-probs `[B, N, V]` under logits at a
/// sampling temperature.
pub fn logprobs(logits: &Tensor, response: &Tensor, temperature: f64) -> (Tensor, Tensor) {
    let logp = sampling_logprobs(logits, temperature, 0);
    let picked = logp.gather(-1, &response.unsqueeze(-1), false).squeeze_dim(-1);
    (picked, logp)
}

/// 1 for each row of a rollout that emitted `<eos>`, else 0: `[B]`.
pub fn has_eos(ro: &Rollout) -> Tensor {
    ro.response.eq(crate::tokens::EOS).any_dim(1, false).to_kind(Kind::Float)
}

/// The policy's entropy per token from its full log-probs `[B, N, V]`, mean over the `mask`ed
/// tokens, without gradient.
pub fn mean_entropy(logp_all: &Tensor, mask: &Tensor) -> f64 {
    tch::no_grad(|| {
        super::common::masked_mean(
            &-(logp_all.exp() * logp_all).sum_dim_intlist(-1, false, Kind::Float),
            mask,
        )
        .double_value(&[])
    })
}

/// How the raw score becomes the score in the reward.
#[derive(Clone, Copy, Debug)]
pub struct Shaping {
    /// Subtracted when a response has no `<eos>`.
    pub missing_eos_penalty: f64,
    /// Normalise by the running mean and std of every score so far.
    pub score_norm: bool,
}

/// A sampled batch with everything an update needs besides the method's own networks.
pub struct Batch {
    pub prompt: Tensor,
    pub valid: Tensor,
    pub ro: Rollout,
    /// log pi(y_t) and log pi_ref(y_t) at the sampling temperature, `[B, N]`, 0 past the mask.
    pub old_logp: Tensor,
    pub ref_logp: Tensor,
    /// The score as given, `[B]`, and after shaping.
    pub raw_score: Tensor,
    pub score: Tensor,
}

/// Sample one completion per row of `rows` with `settings` (torch's generator seeded with
/// `seed`) and score it.
pub fn collect(
    policy: &Gpt,
    reference: &Gpt,
    rows: &[Vec<i64>],
    (settings, seed): (&SampleSettings, i64),
    score_fn: &dyn Fn(&Rollout) -> Tensor,
    shaping: Shaping,
    stats: &mut RunningStats,
) -> Batch {
    let _p = crate::profile::span("rollout");
    let device = policy.cfg_device();
    let (prompt, valid) = left_pad(rows, device);
    tch::manual_seed(seed);
    let ro = generate(policy, &prompt, &valid, settings);
    let mask = &ro.mask;
    let (old_logp, ref_logp, raw_score, score) = tch::no_grad(|| {
        let (old_logp, _) = logprobs(
            &policy.logits(&response_hidden(policy, &prompt, &valid, &ro.response)),
            &ro.response,
            settings.temperature,
        );
        let (ref_logp, _) = logprobs(
            &reference.logits(&response_hidden(reference, &prompt, &valid, &ro.response)),
            &ro.response,
            settings.temperature,
        );
        let old_logp = old_logp * mask;
        let ref_logp = ref_logp * mask;
        let raw_score = score_fn(&ro).to_kind(Kind::Float).to_device(device);
        let mut score = if shaping.missing_eos_penalty != 0.0 {
            &raw_score - (1.0 - has_eos(&ro)) * shaping.missing_eos_penalty
        } else {
            raw_score.shallow_clone()
        };
        if shaping.score_norm {
            stats.update(
                &Vec::<f64>::try_from(score.to_kind(Kind::Double).to_device(tch::Device::Cpu))
                    .unwrap(),
            );
            score = (score - stats.mean()) / stats.std().max(1e-8);
        }
        (old_logp, ref_logp, raw_score, score)
    });
    Batch { prompt, valid, ro, old_logp, ref_logp, raw_score, score }
}

/// `epochs` passes over rows `0..n` in minibatches of `size` (the last of a pass may be
/// smaller), the order reshuffled by `rng` before each pass and carried into the next: each
/// minibatch's row indices, on `device`.
pub fn minibatches(
    n: usize,
    size: usize,
    epochs: usize,
    rng: &mut Rng,
    device: Device,
) -> Vec<Tensor> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut out = Vec::new();
    for _ in 0..epochs {
        rng.shuffle(&mut order);
        for chunk in order.chunks(size.min(n).max(1)) {
            out.push(rows_index(chunk).to_device(device));
        }
    }
    out
}

/// The sequence mean over a batch of the per-token `x` `[B, N]` summed over each sequence.
pub fn seq_mean(x: &Tensor) -> f64 {
    x.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float).double_value(&[])
}
