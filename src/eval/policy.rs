//! Evaluation of a policy on the fixed held-out prompts, with common random numbers: every
//! method and every step samples with the same seed.
//!
//! - gold: mean gold reward of the samples (95% CI);
//! - kl: KL(pi || pi_ref) of a sampled completion, the sum over its positions of the exact
//!   full-vocabulary KL between the two next-token distributions (exact per position, unbiased
//!   for the sequence KL), at the sampling temperature; beside it the sample estimators
//!   k1 = sum log(pi/pi_ref) and k3 = sum (r - 1 - log r), r = pi_ref/pi, of the sampled tokens;
//! - proxy: the reward model's score; implicit_acc: fraction of held-out pairs where
//!   log(pi/pi_ref)(y_w) > log(pi/pi_ref)(y_l) (DPO's implicit reward ranks them right), ties
//!   one half (0.5 at step 0, where every log-ratio is 0);
//! - with top-k sampling, the KL is that of the truncated distribution the policy samples from;
//! - gold, KL and win rate again on the selection half (`_sel`) and the test half (`_test`) of
//!   the prompts: the report chooses checkpoints on the first and reports the second;
//! - entropy: sum over positions of the per-token entropy; distinct-1/2; fluency (mean per-word
//!   log-likelihood under the true process); length and EOS rate; where the world has a
//!   feature its labeller likes and its judge does not (the dialogue world's politeness
//!   words), its mean count, `eval/spurious`.

use rayon::prelude::*;
use tch::{Kind, Tensor};

use super::{mean_ci, win_rate, winrate_metrics, Stat};
use crate::algo::common::{pair_logps, response_hidden};
use crate::algo::reward::Proxy;
use crate::data::PairTensors;
use crate::model::{generate, left_pad, sampling_logprobs, Gpt, SampleSettings};
use crate::profile;
use crate::world::{TextWorld, EOS};

pub struct Evaluator<'a> {
    pub world: &'a dyn TextWorld,
    pub reference: &'a Gpt,
    /// The proxy reward, where there is one (`eval/proxy`).
    pub proxy: Option<Proxy<'a>>,
    /// Held-out pairs and their reference log-probs, for the implicit-reward accuracy.
    pub heldout: Option<(&'a PairTensors, &'a (Tensor, Tensor))>,
    pub prompts: Vec<Vec<i64>>,
    /// Gold reward of each row's reference response, where the world has references.
    pub ref_gold: Option<Vec<f64>>,
    pub settings: SampleSettings,
    pub seed: i64,
    /// Rows `..n_sel_rows` are the selection half of the held-out prompts, the rest the test half.
    pub n_sel_rows: usize,
}

/// Response-position logits `[B, N, V]` of a model on prompt + response.
fn response_logits(model: &Gpt, prompt: &Tensor, valid: &Tensor, response: &Tensor) -> Tensor {
    model.logits(&response_hidden(model, prompt, valid, response))
}

fn distinct(texts: &[Vec<i64>], n: usize) -> f64 {
    let mut all = std::collections::HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let words: Vec<i64> = t.iter().copied().filter(|&x| x != EOS).collect();
        for g in words.windows(n) {
            all.insert(g.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        all.len() as f64 / total as f64
    }
}

/// The gold reward of each evaluation row's reference response (`samples_per_prompt` rows per
/// prompt), where the world has references.
pub fn reference_gold(world: &dyn TextWorld, samples_per_prompt: usize) -> Option<Vec<f64>> {
    Some(gold_per_row(world, world.eval_prompts(), world.eval_references()?, samples_per_prompt))
}

/// The gold reward of each prompt's reference, repeated for its `samples_per_prompt` rows.
fn gold_per_row(
    world: &dyn TextWorld,
    prompts: &[Vec<i64>],
    refs: &[Vec<i64>],
    samples_per_prompt: usize,
) -> Vec<f64> {
    let items = crate::model::sample::row_pairs(prompts, refs);
    world
        .gold_batch(&items)
        .into_iter()
        .flat_map(|g| std::iter::repeat_n(g, samples_per_prompt))
        .collect()
}

/// Per-sample results, kept for tests and CIs.
pub struct EvalSamples {
    pub gold: Vec<f64>,
    pub kl: Vec<f64>,
    pub k1: Vec<f64>,
    pub k2: Vec<f64>,
    pub k3: Vec<f64>,
}

impl Evaluator<'_> {
    pub fn new<'a>(
        world: &'a dyn TextWorld,
        reference: &'a Gpt,
        proxy: Option<Proxy<'a>>,
        heldout: Option<(&'a PairTensors, &'a (Tensor, Tensor))>,
        (samples_per_prompt, selection_fraction): (usize, f64),
        settings: SampleSettings,
        seed: i64,
    ) -> Evaluator<'a> {
        let ev = Evaluator {
            world,
            reference,
            proxy,
            heldout,
            prompts: vec![],
            ref_gold: None,
            settings,
            seed,
            n_sel_rows: 0,
        };
        ev.with_rows(
            world.eval_prompts(),
            world.eval_references(),
            samples_per_prompt,
            selection_fraction,
        )
    }

    /// Evaluate on `prompts` (each repeated `samples_per_prompt` times; the first
    /// `selection_fraction` of them the selection half), with `refs` for the win rate.
    fn with_rows(
        mut self,
        prompts: &[Vec<i64>],
        refs: Option<&[Vec<i64>]>,
        samples_per_prompt: usize,
        selection_fraction: f64,
    ) -> Self {
        self.prompts = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), samples_per_prompt))
            .collect();
        self.ref_gold =
            refs.map(|refs| gold_per_row(self.world, prompts, refs, samples_per_prompt));
        self.n_sel_rows =
            super::selection_prompts(prompts.len(), selection_fraction) * samples_per_prompt;
        self
    }

    /// The same evaluation on other prompts with their references (a shifted distribution):
    /// every prompt repeated `samples_per_prompt` times, the first `selection_fraction` of
    /// them the selection half.
    pub fn on_prompts(
        self,
        prompts: &[Vec<i64>],
        refs: &[Vec<i64>],
        samples_per_prompt: usize,
        selection_fraction: f64,
    ) -> Self {
        self.with_rows(prompts, Some(refs), samples_per_prompt, selection_fraction)
    }

    /// Sample at the evaluation settings, then score: the named metrics and per-sample values;
    /// and the squeezing diagnostic `eval/greedy_logp`.
    pub fn evaluate(&self, policy: &Gpt) -> (Vec<(String, f64)>, EvalSamples) {
        let (mut rows, samples) = self.evaluate_with(policy, &self.settings);
        rows.push(("eval/greedy_logp".to_string(), self.greedy_logp(policy)));
        (rows, samples)
    }

    /// Squeezing (Ren and Sutherland 2025): the log-probability, at temperature 1, of the
    /// policy's greedy response to each held-out prompt (its most likely response, as far as
    /// greedy decoding finds it), mean over prompts. Rising: mass piles onto one response.
    fn greedy_logp(&self, policy: &Gpt) -> f64 {
        let _guard = tch::no_grad_guard();
        let (prompt, valid) = left_pad(self.world.eval_prompts(), self.reference.cfg_device());
        let greedy = SampleSettings { temperature: 0.0, top_k: 0, ..self.settings.clone() };
        let ro = {
            let _p = profile::span("eval_generate");
            generate(policy, &prompt, &valid, &greedy)
        };
        let _p = profile::span("eval_estimators");
        let lp = sampling_logprobs(&response_logits(policy, &prompt, &valid, &ro.response), 0.0, 0);
        let picked = lp.gather(-1, &ro.response.unsqueeze(-1), false).squeeze_dim(-1) * &ro.mask;
        picked.sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float).double_value(&[])
    }

    /// The evaluation at another sampling temperature, metrics named `eval_t{T}/...`; the
    /// held-out implicit-reward accuracy does not depend on sampling and is left out.
    pub fn evaluate_at_temperature(&self, policy: &Gpt, temperature: f64) -> Vec<(String, f64)> {
        let settings = SampleSettings { temperature, ..self.settings };
        let (rows, _) = self.evaluate_with(policy, &settings);
        rows.into_iter()
            .filter(|(k, _)| k != "eval/implicit_acc")
            .map(|(k, v)| (super::at_temperature(&k, temperature), v))
            .collect()
    }

    fn evaluate_with(
        &self,
        policy: &Gpt,
        settings: &SampleSettings,
    ) -> (Vec<(String, f64)>, EvalSamples) {
        let _guard = tch::no_grad_guard();
        let device = self.reference.cfg_device();
        let (prompt, valid) = left_pad(&self.prompts, device);
        tch::manual_seed(self.seed);
        let span = profile::span("eval_generate");
        let ro = generate(policy, &prompt, &valid, settings);
        let rows = ro.response_rows();
        drop(span);
        let span = profile::span("eval_gold");
        // Each sample's gold reward and fluency on its own: in parallel, in order.
        let items = crate::model::sample::row_pairs(&self.prompts, &rows);
        let gold = self.world.gold_batch(&items);
        let fluency: Option<Vec<f64>> =
            self.prompts.par_iter().zip(&rows).map(|(p, r)| self.world.fluency(p, r)).collect();
        let spurious: Option<Vec<f64>> =
            self.prompts.iter().zip(&rows).map(|(p, r)| self.world.spurious(p, r)).collect();
        drop(span);
        let span = profile::span("eval_estimators");
        let Estimates { kl, k1, k2, k3, entropy } =
            estimates(policy, self.reference, (&prompt, &valid), &ro.response, settings, &ro.mask);
        let mask = &ro.mask;
        let length =
            mask.sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float).double_value(&[]);
        let eos_rate =
            rows.iter().filter(|r| r.last() == Some(&EOS)).count() as f64 / rows.len() as f64;
        let g: Stat = mean_ci(&gold);
        let k: Stat = mean_ci(&kl);
        let mut out = vec![
            ("eval/gold".to_string(), g.mean),
            ("eval/gold_ci".to_string(), g.ci95),
            ("eval/kl".to_string(), k.mean),
            ("eval/kl_ci".to_string(), k.ci95),
            ("eval/kl_k1".to_string(), mean_ci(&k1).mean),
            ("eval/kl_k3".to_string(), mean_ci(&k3).mean),
            ("eval/kl_k2".to_string(), mean_ci(&k2).mean),
            ("eval/kl_sd".to_string(), sd(&kl)),
            ("eval/kl_k1_sd".to_string(), sd(&k1)),
            ("eval/kl_k2_sd".to_string(), sd(&k2)),
            ("eval/kl_k3_sd".to_string(), sd(&k3)),
            ("eval/entropy".to_string(), mean_ci(&entropy).mean),
            ("eval/distinct1".to_string(), distinct(&rows, 1)),
            ("eval/distinct2".to_string(), distinct(&rows, 2)),
            ("eval/length".to_string(), length),
            ("eval/eos_rate".to_string(), eos_rate),
        ];
        if let Some(f) = fluency {
            out.push(("eval/fluency".to_string(), mean_ci(&f).mean));
        }
        if let Some(f) = spurious {
            out.push(("eval/spurious".to_string(), mean_ci(&f).mean));
        }
        if let Some(refs) = &self.ref_gold {
            out.extend(winrate_metrics(win_rate(&gold, refs)).map(|(k, v)| (k.to_string(), v)));
        }
        out.extend(super::split_metrics(
            self.n_sel_rows,
            &gold,
            Some(&kl),
            self.ref_gold.as_deref(),
        ));
        if let Some(p) = self.proxy {
            let proxy = p.score(&ro);
            out.push(("eval/proxy".to_string(), proxy.mean(Kind::Float).double_value(&[])));
        }
        if let Some((pairs, reference)) = self.heldout {
            out.push((
                "eval/implicit_acc".to_string(),
                implicit_accuracy(policy, pairs, reference),
            ));
        }
        drop(span);
        (out, EvalSamples { gold, kl, k1, k2, k3 })
    }
}

/// Each sample's exact KL(pi || pi_ref), its k1, k2 and k3 estimates and the policy's entropy,
/// summed over the response.
struct Estimates {
    kl: Vec<f64>,
    k1: Vec<f64>,
    k2: Vec<f64>,
    k3: Vec<f64>,
    entropy: Vec<f64>,
}

/// The [`Estimates`] of `response` to the left-padded `prompt`, at the sampling temperature
/// (greedy decoding is measured at temperature 1). With top-k the policy samples from its
/// truncated distribution: that one's KL is measured (tokens outside the top k have
/// probability 0 and contribute nothing).
fn estimates(
    policy: &Gpt,
    reference: &Gpt,
    (prompt, valid): (&Tensor, &Tensor),
    response: &Tensor,
    settings: &SampleSettings,
    mask: &Tensor,
) -> Estimates {
    let lp = sampling_logprobs(
        &response_logits(policy, prompt, valid, response),
        settings.temperature,
        settings.top_k,
    ); // [B, N, V]
    let lq = {
        let _p = profile::span("eval_reference");
        sampling_logprobs(
            &response_logits(reference, prompt, valid, response),
            settings.temperature,
            0,
        )
    };
    let p = lp.exp();
    // 0 * log 0 = 0: tokens outside a top-k support contribute nothing (without truncation
    // every log-prob is finite and there is nothing to zero).
    let truncated = settings.temperature > 0.0 && settings.top_k > 0;
    let outside_zero = |t: Tensor| if truncated { t.nan_to_num(0.0, 0.0, 0.0) } else { t };
    let sum = |t: Tensor| t.sum_dim_intlist(-1, false, Kind::Float);
    let per_pos_kl = sum(outside_zero(&p * (&lp - &lq))); // [B, N]
    let kl = sum(per_pos_kl * mask);
    let idx = response.unsqueeze(-1);
    let logratio =
        lp.gather(-1, &idx, false).squeeze_dim(-1) - lq.gather(-1, &idx, false).squeeze_dim(-1); // log pi/pi_ref
    let k1 = sum(&logratio * mask);
    let r = (-&logratio).exp();
    let k3 = sum((&r - 1.0 - (-&logratio)) * mask);
    // k2 = (log r)^2 / 2 per token: low variance, biased (Schulman's note on KL estimators).
    let k2 = sum(logratio.square() * 0.5 * mask);
    let entropy = sum((-sum(outside_zero(&p * &lp))) * mask);
    let to_vec = |t: &Tensor| {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(tch::Device::Cpu)).unwrap()
    };
    Estimates {
        kl: to_vec(&kl),
        k1: to_vec(&k1),
        k2: to_vec(&k2),
        k3: to_vec(&k3),
        entropy: to_vec(&entropy),
    }
}

/// The share of held-out pairs whose implicit reward (the policy's log-ratio to the
/// reference's, `reference` holding the reference's log-probs) ranks chosen above rejected.
fn implicit_accuracy(policy: &Gpt, pairs: &PairTensors, (ref_c, ref_r): &(Tensor, Tensor)) -> f64 {
    let mut correct = 0.0;
    let idx: Vec<usize> = (0..pairs.len()).collect();
    let mut offset = 0;
    for chunk in idx.chunks(512) {
        let b = pairs.batch(chunk);
        let n = chunk.len() as i64;
        let (c, r) = pair_logps(policy, &b);
        let (c, r) = (c - ref_c.narrow(0, offset, n), r - ref_r.narrow(0, offset, n));
        // A tie (at step 0 every pair) counts one half, as a coin flip would score.
        let right = crate::algo::common::pair_right(&c, &r);
        correct += right.sum(Kind::Float).double_value(&[]);
        offset += n;
    }
    correct / pairs.len().max(1) as f64
}

/// The sample standard deviation of `x` (n - 1 in the denominator, at least 1).
fn sd(x: &[f64]) -> f64 {
    let m = x.iter().sum::<f64>() / x.len() as f64;
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0).max(1.0)).sqrt()
}
