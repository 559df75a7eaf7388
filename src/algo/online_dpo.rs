//! Online DPO (Guo et al. 2024, "Direct Language Model Alignment from Online AI Feedback",
//! arXiv 2402.04792) and its semi-online form (Lanchantin et al. 2025): the offline
//! preference losses of `dpo.rs` on pairs the policy samples as it trains.
//!
//! Implementation details (setting in `[online_dpo]`, `[online_dpo_gt]`):
//! 1. Each step, `train.batch_size` training prompts (drawn with replacement), two samples of
//!    each at `prefs.temperature` from the sampler, with the KV cache.
//! 2. The sampler is a copy of the policy refreshed every `sync_every` steps: 1 is online,
//!    more is semi-online, `train.steps` samples pi_SFT only (the offline data distribution).
//!    Online samples from the copy too, so that it is semi-online at s = 1 to the byte: the
//!    policy's weights live in the optimiser's flat buffer, and a matrix product on such a view
//!    need not round as on a fresh tensor.
//! 3. Labels by the annotator: the reward model (`[online_dpo]`) or the gold reward
//!    (`[online_dpo_gt]`), with the rule of the offline data (`prefs.labels`: the higher score
//!    wins, ties dropped; or Bradley-Terry at `prefs.bt_temperature`).
//! 4. The loss (`loss`: any preference loss, DPO by default, with its parameters) against the
//!    frozen pi_ref, whose log-probs of the fresh pairs are computed without gradients; the
//!    optimisation of `[train]` (Adam, warm-up, clipping), one step per batch.

use anyhow::Result;
use tch::{nn, Tensor};

use super::adam::Adam;
use super::common::{copy_weights, pair_logps};
use super::dpo::{pref_step, PrefLoss, Step, TrainConfig};
use super::trainer::{CkptParts, Trainer};
use crate::data::{Labels, Pair, PairTensors};
use crate::draw::{derive_seed, Rng};
use crate::model::{generate, left_pad, Gpt, Rollout, SampleSettings};

/// Everything an online DPO run needs besides its policy.
pub struct OnlineContext<'a> {
    pub reference: &'a Gpt,
    pub prompts: &'a [Vec<i64>],
    pub max_new_tokens: i64,
    /// `prefs.temperature`.
    pub temperature: f64,
    pub labels: Labels,
    /// The annotator's score of each sample `[B]` (reward model or gold reward).
    pub score: &'a dyn Fn(&Rollout) -> Tensor,
    /// The sampler and its store, refreshed from the policy every `sync_every` steps.
    pub sampler: (&'a Gpt, &'a nn::VarStore),
    pub sync_every: usize,
    /// Where every labelled pair is kept, in the order trained on (Tang et al.'s control
    /// trains offline on them, shuffled).
    pub record: Option<&'a std::cell::RefCell<Vec<Pair>>>,
}

/// Train `policy` on pairs it samples; `t` evaluates at step 0, every `eval_every` steps and at
/// the end.
pub fn train(
    policy: &Gpt,
    vs: &nn::VarStore,
    ctx: &OnlineContext,
    method: PrefLoss,
    cfg: &TrainConfig,
    t: &mut Trainer,
) -> Result<()> {
    let mut opt = Adam::new(vs, cfg.lr, (0.9, 0.999), 0.0);
    let mut rng = Rng::new(derive_seed(t.seed, &format!("{}/prompts", t.stream)));
    let start = t.start(policy, &mut opt, Some(&mut rng))?;
    for step in start..cfg.steps {
        // 1. The sampler: the policy's copy of the last sync.
        if step % ctx.sync_every == 0 {
            copy_weights(ctx.sampler.1, vs)?;
        }
        let t_sample = std::time::Instant::now();
        let span = crate::profile::span("rollout");
        let sample_seed = derive_seed(t.seed, &format!("{}/sample/{step}", t.stream)) as i64;
        let sampled = sample_pairs(ctx, cfg.batch_size, sample_seed, &mut rng)?;
        drop(span);
        let sample_s = t_sample.elapsed().as_secs_f64();
        let t_update = std::time::Instant::now();
        let s = step + 1;
        let logs = s % 10 == 0 || s == cfg.steps;
        let pairs = &sampled.pairs;
        if let Some(record) = ctx.record {
            record.borrow_mut().extend(pairs.iter().cloned());
        }
        if !pairs.is_empty() {
            // 4. The loss against the frozen reference, and the step.
            let b = PairTensors::new(pairs, policy.cfg_device())
                .batch(&(0..pairs.len()).collect::<Vec<_>>());
            // Reference-free losses (SimPO, ORPO) skip the reference pass, and with it the KL.
            let reference =
                method.uses_reference().then(|| tch::no_grad(|| pair_logps(ctx.reference, &b)));
            let reference_logps = reference.as_ref().map(|(c, r)| (c, r));
            let out = pref_step(policy, &mut opt, &b, reference_logps, method, cfg, t)?;
            if logs {
                out.log(t, s);
                if let Some((rc, rr)) = &reference {
                    t.log(s, &format!("{}/objective/kl_k1", t.name), kl_k1(&out, rc, rr));
                }
            }
        }
        if logs {
            let values = [
                ("objective/score", sampled.score_mean),
                ("pairs", pairs.len() as f64),
                ("response/length", sampled.length),
                ("response/eos_rate", sampled.eos_rate),
                ("time/sample_s", sample_s),
                ("time/update_s", t_update.elapsed().as_secs_f64()),
            ];
            for (key, v) in values {
                t.log(s, &format!("{}/{key}", t.name), v);
            }
        }
        if t.step_done(cfg.steps, f64::NAN) {
            let parts = CkptParts { opts: vec![&opt], rng: rng.state(), extra: vec![] };
            t.evaluate(s, policy, &parts)?;
        }
    }
    Ok(())
}

/// A step's labelled pairs and what is logged of its samples.
struct Sampled {
    pairs: Vec<Pair>,
    score_mean: f64,
    length: f64,
    eos_rate: f64,
}

/// Steps 2 and 3: two samples of each of `n` prompts from the sampler (drawn with `seed`),
/// scored by the annotator, and labels by the rule of the offline data (ties under
/// deterministic labels are dropped).
fn sample_pairs(ctx: &OnlineContext, n: usize, seed: i64, rng: &mut Rng) -> Result<Sampled> {
    let sampler = ctx.sampler.0;
    let rows: Vec<Vec<i64>> = (0..n)
        .flat_map(|_| std::iter::repeat_n(ctx.prompts[rng.below(ctx.prompts.len())].clone(), 2))
        .collect();
    let (prompt, valid) = left_pad(&rows, sampler.cfg_device());
    let settings = SampleSettings {
        temperature: ctx.temperature,
        top_k: 0,
        max_new_tokens: ctx.max_new_tokens,
        use_cache: true,
    };
    tch::manual_seed(seed);
    let ro = tch::no_grad(|| generate(sampler, &prompt, &valid, &settings));
    let scores: Vec<f64> = Vec::try_from(
        tch::no_grad(|| (ctx.score)(&ro)).to_kind(tch::Kind::Double).to_device(tch::Device::Cpu),
    )?;
    let responses = ro.response_rows();
    let count = responses.len() as f64;
    let length = responses.iter().map(|r| r.len() as f64).sum::<f64>() / count;
    let eos = responses.iter().filter(|r| r.last() == Some(&crate::tokens::EOS)).count();
    let mut pairs = Vec::with_capacity(n);
    for i in 0..n {
        let (a, b) = (2 * i, 2 * i + 1);
        let a_wins = match ctx.labels {
            Labels::Deterministic | Labels::World if scores[a] == scores[b] => continue,
            Labels::Deterministic | Labels::World => scores[a] > scores[b],
            Labels::BradleyTerry { temperature } => {
                rng.bernoulli(1.0 / (1.0 + (-(scores[a] - scores[b]) / temperature).exp()))
            }
        };
        let (w, l) = if a_wins { (a, b) } else { (b, a) };
        pairs.push(Pair {
            prompt: rows[a].clone(),
            chosen: responses[w].clone(),
            rejected: responses[l].clone(),
            gold_chosen: scores[w],
            gold_rejected: scores[l],
        });
    }
    let score_mean = scores.iter().sum::<f64>() / scores.len() as f64;
    Ok(Sampled { pairs, score_mean, length, eos_rate: eos as f64 / count })
}

/// The k1 estimate of KL(pi || pi_ref) on a step's pairs (sampled at `prefs.temperature`): the
/// policy's mean log-probs (logged by the step) minus the reference's `rc`, `rr`.
fn kl_k1(out: &Step, rc: &Tensor, rr: &Tensor) -> f64 {
    let logp = |k: &str| {
        out.logged.iter().find(|l| l.0 == k).map(|l| l.1.double_value(&[])).unwrap_or(f64::NAN)
    };
    (logp("logps/chosen") + logp("logps/rejected")
        - rc.mean(tch::Kind::Float).double_value(&[])
        - rr.mean(tch::Kind::Float).double_value(&[]))
        / 2.0
}
