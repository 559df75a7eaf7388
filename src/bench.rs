//! `alignlab bench`: throughput of the hot paths and model FLOP utilisation (MFU).
//!
//! - matmul peak: best fp32 GFLOP/s of square matmuls (n = 512, 1024): the MFU yardstick;
//! - SFT step: training tokens/s and MFU at the quick scenario's size and at d_model 256, 4 layers;
//! - DPO step: pairs/s (chosen and rejected in one forward pass, reference log-probs cached);
//! - sampling: generated tokens/s at batch 256, 32 new tokens, with and without the KV cache;
//! - PPO iteration: rollout tokens/s and update seconds at the quick scenario's settings.

use anyhow::Result;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::algo::sft::sft_loss;
use crate::model::{generate, Gpt, GptConfig, SampleSettings};

/// Median seconds of `reps` timed calls after `warmup` untimed ones.
fn time_it(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ts[ts.len() / 2]
}

/// Best fp32 matmul throughput in FLOP/s.
pub fn matmul_peak(device: Device, quick: bool) -> f64 {
    let mut best: f64 = 0.0;
    for n in [512i64, 1024] {
        let a = Tensor::randn([n, n], (Kind::Float, device));
        let b = Tensor::randn([n, n], (Kind::Float, device));
        let reps = if quick { 3 } else { 10 };
        let t = time_it(2, reps, || {
            let _ = a.matmul(&b).sum(Kind::Float).double_value(&[]);
        });
        best = best.max(2.0 * (n * n * n) as f64 / t);
    }
    best
}

pub struct SftBench {
    pub tokens_per_s: f64,
    pub mfu: f64,
}

/// One SFT step (forward, backward, AdamW) on random tokens of full length.
pub fn sft_step(cfg: &GptConfig, batch: i64, t: i64, device: Device, peak: f64, quick: bool) -> SftBench {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let gpt = Gpt::new(&vs.root(), cfg);
    let mut opt = nn::adamw(0.9, 0.99, 0.0).build(&vs, 1e-4).unwrap();
    let seq = Tensor::randint_low(3, cfg.vocab_size, [batch, t + 1], (Kind::Int64, device));
    let (inp, tgt) = (seq.narrow(1, 0, t), seq.narrow(1, 1, t));
    let reps = if quick { 3 } else { 20 };
    let secs = time_it(3, reps, || {
        opt.zero_grad();
        let loss = sft_loss(&gpt, &inp, &tgt);
        loss.backward();
        opt.step();
        let _ = loss.double_value(&[]);
    });
    let tokens_per_s = (batch * t) as f64 / secs;
    SftBench { tokens_per_s, mfu: tokens_per_s * cfg.train_flops_per_token(t) / peak }
}

/// Generated tokens/s for batch `b`, prompt length `p`, `n` new tokens.
pub fn sampling(cfg: &GptConfig, b: i64, p: i64, n: i64, use_cache: bool, device: Device, quick: bool) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let gpt = Gpt::new(&vs.root(), cfg);
    let prompt = Tensor::randint_low(3, cfg.vocab_size, [b, p], (Kind::Int64, device));
    let _ = prompt.select(1, 0).fill_(crate::world::BOS);
    let valid = Tensor::ones([b, p], (Kind::Bool, device));
    let s = SampleSettings { temperature: 1.0, top_k: 0, max_new_tokens: n, use_cache };
    let reps = if quick { 2 } else { 5 };
    let secs = time_it(1, reps, || {
        let ro = generate(&gpt, &prompt, &valid, &s);
        let _ = ro.mask.sum(Kind::Float).double_value(&[]);
    });
    (b * n) as f64 / secs
}

/// PPO iterations at the quick scenario's settings on random prompts: (rollout generated
/// tokens/s, rollout seconds, update seconds) per iteration, medians over iterations after the
/// first. The rollout includes sampling, scoring and the old/reference/value passes.
pub fn ppo_iteration(cfg: &GptConfig, rollout_batch: usize, device: Device, quick: bool) -> Result<(f64, f64, f64)> {
    use crate::algo::ppo::{self, KlControl, PpoConfig, PpoContext};
    tch::manual_seed(0);
    let (pvs, rvs, cvs) = (nn::VarStore::new(device), nn::VarStore::new(device), nn::VarStore::new(device));
    let policy = Gpt::new(&pvs.root(), cfg);
    let reference = Gpt::new(&rvs.root(), cfg);
    let critic = crate::algo::reward::RewardModel::new(&cvs.root(), cfg);
    let rm_vs = nn::VarStore::new(device);
    let rm = crate::algo::reward::RewardModel::new(&rm_vs.root(), cfg);
    let score = |ro: &crate::model::Rollout| rm.score(&ro.prompt, &ro.prompt_valid, &ro.response, &ro.mask);
    let mut rng = crate::rng::Rng::new(0);
    let prompts: Vec<Vec<i64>> = (0..512).map(|_| (0..rng.range(2, 8)).map(|_| rng.range(3, cfg.vocab_size as usize - 1) as i64).collect()).collect();
    let ctx = PpoContext { reference: &reference, prompts: &prompts, max_new_tokens: 16, score: &score, ema_reference: None };
    let iterations = if quick { 3 } else { 6 };
    let pcfg = PpoConfig { iterations, rollout_batch, minibatch_size: rollout_batch / 2, kl: KlControl::Fixed { coef: 0.1 }, eval_every: usize::MAX, ..PpoConfig::default() };
    let mut m = crate::experiment::Metrics::default();
    ppo::train(&policy, &pvs, &critic, &cvs, &ctx, &pcfg, 0, ("ppo", "bench"), &mut m, None, |_, _, _, _| Ok(()), |_, _| {})?;
    let median = |k: &str| {
        let mut v: Vec<f64> = m.rows.iter().filter(|r| r.metric == k && r.step > 1).map(|r| r.value).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (ro, up, toks) = (median("ppo/time/rollout_s"), median("ppo/time/update_s"), median("ppo/time/rollout_tokens"));
    Ok((toks / ro, ro, up))
}

/// DPO steps (policy forward and backward on chosen and rejected packed after their shared
/// prompt, reference log-probs cached, Adam) on random pairs: pairs/s.
pub fn dpo_step(cfg: &GptConfig, pairs: usize, device: Device, quick: bool) -> f64 {
    use crate::algo::common::pair_logps;
    use crate::algo::dpo::{preference_loss, PairLogps, PrefLoss};
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let gpt = Gpt::new(&vs.root(), cfg);
    let mut opt = crate::algo::adam::Adam::new(&vs, 1e-4, (0.9, 0.999), 0.0);
    let n = pairs as i64;
    let prompt = Tensor::randint_low(3, cfg.vocab_size, [n, 9], (Kind::Int64, device));
    let _ = prompt.select(1, 0).fill_(crate::world::BOS);
    let response = || Tensor::randint_low(3, cfg.vocab_size, [n, 16], (Kind::Int64, device));
    let mask = Tensor::ones([n, 16], (Kind::Float, device));
    let batch = crate::data::PairBatch { prompt_valid: prompt.ones_like().to_kind(Kind::Bool), prompt, chosen: response(), chosen_mask: mask.copy(), rejected: response(), rejected_mask: mask };
    let (rc, rr) = (Tensor::zeros([n], (Kind::Float, device)), Tensor::zeros([n], (Kind::Float, device)));
    let reps = if quick { 3 } else { 10 };
    let secs = time_it(2, reps, || {
        let (lc, lr) = pair_logps(&gpt, &batch);
        let tokens = batch.chosen_mask.sum_dim_intlist(1, false, Kind::Float);
        let lp = PairLogps { policy_chosen: &lc, policy_rejected: &lr, reference_chosen: &rc, reference_rejected: &rr, chosen_tokens: &tokens, rejected_tokens: &tokens };
        let loss = preference_loss(PrefLoss::Dpo { beta: 0.1 }, &lp).batch_loss();
        opt.zero_grad();
        loss.backward();
        opt.step();
        let _ = loss.double_value(&[]);
    });
    pairs as f64 / secs
}

pub fn run(device: Device, quick: bool) -> Result<()> {
    println!("alignlab bench on {device:?}, {} threads", tch::get_num_threads());
    let peak = matmul_peak(device, quick);
    println!("matmul peak (fp32, n=512/1024)         {:>10.1} GFLOP/s", peak / 1e9);
    let quick_model = GptConfig { vocab_size: 51, block_size: 64, n_layer: 2, n_head: 4, d_model: 128 };
    let big_model = GptConfig { vocab_size: 51, block_size: 64, n_layer: 4, n_head: 4, d_model: 256 };
    for (name, cfg) in [("quick (d128 L2)", &quick_model), ("d256 L4", &big_model)] {
        let r = sft_step(cfg, 64, 21, device, peak, quick);
        println!("sft step {name:16} B64 T21       {:>10.0} tokens/s  MFU {:5.1}%", r.tokens_per_s, 100.0 * r.mfu);
    }
    for (name, cfg) in [("quick (d128 L2)", &quick_model), ("d256 L4", &big_model)] {
        println!("dpo step {name:16} B64 pairs P9 N16 {:>10.1} pairs/s", dpo_step(cfg, 64, device, quick));
    }
    let cached = sampling(&quick_model, 256, 9, 32, true, device, quick);
    let uncached = sampling(&quick_model, 256, 9, 32, false, device, quick);
    println!("sampling quick B256 P9 N32 cached     {cached:>10.0} tokens/s");
    println!("sampling quick B256 P9 N32 uncached   {uncached:>10.0} tokens/s");
    println!("KV-cache speed-up                     {:>10.2}x", cached / uncached);
    let rollout_gen = sampling(&quick_model, 64, 9, 16, true, device, quick);
    println!("sampling quick B64 P9 N16 cached      {rollout_gen:>10.0} tokens/s  (PPO's generation alone)");
    for b in [64usize, 256] {
        let (tps, ro, up) = ppo_iteration(&quick_model, b, device, quick)?;
        println!("ppo iteration quick B{b:<3} N16 4 epochs mb B/2 rollout {tps:>8.0} tokens/s ({:.3} s), update {up:.3} s", ro);
    }
    Ok(())
}
