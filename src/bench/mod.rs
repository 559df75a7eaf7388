//! `alignlab bench`: throughput of the hot paths and model FLOP utilisation (MFU).
//!
//! - matmul peak: best fp32 GFLOP/s of square matmuls (n = 512, 1024): the MFU yardstick;
//! - SFT step: training tokens/s and MFU at the quick scenario's size and at d_model 256, 4 layers;
//! - DPO step: pairs/s (chosen and rejected in one forward pass, reference log-probs cached);
//! - sampling: generated tokens/s at batch 256, 32 new tokens, with and without the KV cache;
//! - PPO iteration: rollout tokens/s and update seconds at the quick scenario's settings;
//! - several small policies: K quick-size GPTs trained one after another against the same K
//!   stacked into one model (batched matmuls), seconds per step of all K;
//! - the CPU work outside libtorch that runs on rayon (corpus generation of the summarize and
//!   dialogue worlds, gold scoring, the importance-sampling frontier): seconds on a pool of one
//!   thread against one of `--threads`, each result checked equal between the two.

pub mod real;

use crate::algo::trainer::Trainer;
use anyhow::Result;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

use crate::algo::sft::sft_loss;
use crate::model::{generate, Gpt, GptConfig, SampleSettings};

use crate::profile::time_it;

pub use crate::profile::matmul_peak;

pub struct SftBench {
    pub tokens_per_s: f64,
    pub mfu: f64,
}

/// One SFT step (forward, backward, AdamW) on random tokens of full length.
pub fn sft_step(
    cfg: &GptConfig,
    batch: i64,
    t: i64,
    device: Device,
    peak: f64,
    quick: bool,
) -> SftBench {
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
pub fn sampling(
    cfg: &GptConfig,
    b: i64,
    p: i64,
    n: i64,
    use_cache: bool,
    device: Device,
    quick: bool,
) -> f64 {
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
pub fn ppo_iteration(
    cfg: &GptConfig,
    rollout_batch: usize,
    device: Device,
    quick: bool,
) -> Result<(f64, f64, f64)> {
    use crate::algo::ppo::{self, KlControl, PpoConfig, PpoContext};
    tch::manual_seed(0);
    let (pvs, rvs, cvs) =
        (nn::VarStore::new(device), nn::VarStore::new(device), nn::VarStore::new(device));
    let policy = Gpt::new(&pvs.root(), cfg);
    let reference = Gpt::new(&rvs.root(), cfg);
    let critic = crate::algo::reward::RewardModel::new(&cvs.root(), cfg);
    let rm_vs = nn::VarStore::new(device);
    let rm = crate::algo::reward::RewardModel::new(&rm_vs.root(), cfg);
    let score =
        |ro: &crate::model::Rollout| rm.score(&ro.prompt, &ro.prompt_valid, &ro.response, &ro.mask);
    let mut rng = crate::draw::Rng::new(0);
    let prompts: Vec<Vec<i64>> = (0..512)
        .map(|_| {
            (0..rng.range(2, 8)).map(|_| rng.range(3, cfg.vocab_size as usize - 1) as i64).collect()
        })
        .collect();
    let ctx = PpoContext {
        reference: &reference,
        prompts: &prompts,
        max_new_tokens: 16,
        score: &score,
        ema_reference: None,
    };
    let iterations = if quick { 3 } else { 6 };
    let pcfg = PpoConfig {
        iterations,
        rollout_batch,
        minibatch_size: rollout_batch / 2,
        kl: KlControl::Fixed { coef: 0.1 },
        eval_every: usize::MAX,
        ..PpoConfig::default()
    };
    let mut t = Trainer::new("ppo", "bench", 0, pcfg.eval_every).in_iterations();
    ppo::train(&policy, &pvs, (&critic, &cvs), &ctx, &pcfg, &mut t)?;
    let m = t.metrics;
    let median = |k: &str| {
        let mut v: Vec<f64> =
            m.rows.iter().filter(|r| r.metric == k && r.step > 1).map(|r| r.value).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (ro, up, toks) = (
        median("ppo/time/rollout_s"),
        median("ppo/time/update_s"),
        median("ppo/time/rollout_tokens"),
    );
    Ok((toks / ro, ro, up))
}

/// DPO steps (policy forward and backward on chosen and rejected packed after their shared
/// prompt, reference log-probs cached, Adam) on random pairs: pairs/s.
pub fn dpo_step(cfg: &GptConfig, pairs: usize, device: Device, quick: bool) -> f64 {
    dpo_step_of(cfg, pairs, (9, 16), device, if quick { 3 } else { 10 })
}

/// [`dpo_step`] with prompts and responses of `(p, n)` tokens, timed over `reps` steps after
/// two untimed ones.
pub fn dpo_step_of(
    cfg: &GptConfig,
    pairs: usize,
    (p, r): (i64, i64),
    device: Device,
    reps: usize,
) -> f64 {
    use crate::algo::common::pair_logps;
    use crate::algo::dpo::{preference_loss, PairLogps, PrefLoss};
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let gpt = Gpt::new(&vs.root(), cfg);
    let mut opt = crate::algo::adam::Adam::new(&vs, 1e-4, (0.9, 0.999), 0.0);
    let n = pairs as i64;
    let prompt = Tensor::randint_low(3, cfg.vocab_size, [n, p], (Kind::Int64, device));
    let _ = prompt.select(1, 0).fill_(crate::world::BOS);
    let response = || Tensor::randint_low(3, cfg.vocab_size, [n, r], (Kind::Int64, device));
    let mask = Tensor::ones([n, r], (Kind::Float, device));
    let batch = crate::data::PairBatch {
        prompt_valid: prompt.ones_like().to_kind(Kind::Bool),
        prompt,
        chosen: response(),
        chosen_mask: mask.copy(),
        rejected: response(),
        rejected_mask: mask,
    };
    let (rc, rr) =
        (Tensor::zeros([n], (Kind::Float, device)), Tensor::zeros([n], (Kind::Float, device)));
    let secs = time_it(2, reps, || {
        let (lc, lr) = pair_logps(&gpt, &batch);
        let tokens = batch.chosen_mask.sum_dim_intlist(1, false, Kind::Float);
        let lp = PairLogps {
            policy_chosen: &lc,
            policy_rejected: &lr,
            reference_chosen: &rc,
            reference_rejected: &rr,
            chosen_tokens: &tokens,
            rejected_tokens: &tokens,
            chosen_prompt: None,
        };
        let loss = preference_loss(PrefLoss::Dpo { beta: 0.1 }, &lp).batch_loss();
        opt.zero_grad();
        loss.backward();
        opt.step();
        let _ = loss.double_value(&[]);
    });
    pairs as f64 / secs
}

/// K GPTs of one shape as one model: every weight gets a leading K dimension and each linear
/// layer is one batched matmul over the K models (`baddbmm`), attention runs on K x B rows.
/// The same architecture as [`Gpt`] (pre-LayerNorm, tanh GELU, tied head); for measuring
/// whether training several small policies in one batch beats training them one by one.
struct StackedGpt {
    k: i64,
    cfg: GptConfig,
    wte: Tensor, // [K, V, C]
    wpe: Tensor, // [K, T, C]
    layers: Vec<[Tensor; 12]>,
    ln_f: (Tensor, Tensor),
}

impl StackedGpt {
    fn new(p: &nn::Path, cfg: &GptConfig, k: i64) -> StackedGpt {
        let d = cfg.d_model;
        let w = |name: &str, i: i64, o: i64| p.randn(name, &[k, i, o], 0.0, 0.02);
        let z = |name: &str, o: i64| p.zeros(name, &[k, 1, o]);
        let o = |name: &str| p.ones(name, &[k, 1, d]);
        let layers = (0..cfg.n_layer)
            .map(|l| {
                let n = |s: &str| format!("h{l}_{s}");
                [
                    o(&n("ln1w")),
                    z(&n("ln1b"), d),
                    w(&n("qkv"), d, 3 * d),
                    z(&n("qkvb"), 3 * d),
                    w(&n("proj"), d, d),
                    z(&n("projb"), d),
                    o(&n("ln2w")),
                    z(&n("ln2b"), d),
                    w(&n("fc"), d, 4 * d),
                    z(&n("fcb"), 4 * d),
                    w(&n("fc2"), 4 * d, d),
                    z(&n("fc2b"), d),
                ]
            })
            .collect();
        StackedGpt {
            k,
            cfg: cfg.clone(),
            wte: w("wte", cfg.vocab_size, d),
            wpe: w("wpe", cfg.block_size, d),
            layers,
            ln_f: (o("lnfw"), z("lnfb", d)),
        }
    }

    /// Logits `[K, B*T, V]` of tokens `[K, B, T]`.
    fn logits(&self, tokens: &Tensor) -> Tensor {
        let (k, b, t) = tokens.size3().unwrap();
        let (d, h) = (self.cfg.d_model, self.cfg.n_head);
        let ln = |x: &Tensor, w: &Tensor, bias: &Tensor| {
            x.layer_norm([d], None::<Tensor>, None::<Tensor>, 1e-5, false) * w + bias
        };
        let offsets = (Tensor::arange(k, (Kind::Int64, tokens.device())) * self.cfg.vocab_size)
            .view([k, 1, 1]);
        let emb = self
            .wte
            .view([k * self.cfg.vocab_size, d])
            .index_select(0, &(tokens + offsets).view([-1]))
            .view([k, b * t, d]);
        let mut x =
            (emb.view([k, b, t, d]) + self.wpe.narrow(1, 0, t).unsqueeze(1)).view([k, b * t, d]);
        for [l1w, l1b, qkv_w, qkv_b, pw, pb, l2w, l2b, fw, fb, f2w, f2b] in &self.layers {
            let qkv = qkv_b
                .baddbmm(&ln(&x, l1w, l1b), qkv_w, 1.0, 1.0)
                .view([k * b, t, 3, h, d / h])
                .permute([2, 0, 3, 1, 4]);
            let y = Tensor::scaled_dot_product_attention(
                &qkv.get(0),
                &qkv.get(1),
                &qkv.get(2),
                None::<Tensor>,
                0.0,
                true,
                None,
                false,
            );
            let y = y.permute([0, 2, 1, 3]).contiguous().view([k, b * t, d]);
            x = &x + pb.baddbmm(&y, pw, 1.0, 1.0);
            let m = fb.baddbmm(&ln(&x, l2w, l2b), fw, 1.0, 1.0).gelu("tanh");
            x = &x + f2b.baddbmm(&m, f2w, 1.0, 1.0);
        }
        ln(&x, &self.ln_f.0, &self.ln_f.1).bmm(&self.wte.transpose(1, 2))
    }
}

/// Seconds per training step (forward, backward, Adam) of `k` GPTs at batch 64, 21 tokens:
/// (one after another as separate models, stacked as one).
pub fn stacked_steps(cfg: &GptConfig, k: i64, device: Device, quick: bool) -> (f64, f64) {
    let (batch, t) = (64i64, 21i64);
    tch::manual_seed(0);
    let seq = Tensor::randint_low(3, cfg.vocab_size, [k, batch, t + 1], (Kind::Int64, device));
    let (inp, tgt) = (seq.narrow(2, 0, t), seq.narrow(2, 1, t));
    let reps = if quick { 3 } else { 10 };
    let models: Vec<(nn::VarStore, Gpt)> = (0..k)
        .map(|_| {
            let vs = nn::VarStore::new(device);
            let g = Gpt::new(&vs.root(), cfg);
            (vs, g)
        })
        .collect();
    let mut opts: Vec<nn::Optimizer> =
        models.iter().map(|(vs, _)| nn::adam(0.9, 0.99, 0.0).build(vs, 1e-4).unwrap()).collect();
    let separate = time_it(2, reps, || {
        for (i, ((_, g), opt)) in models.iter().zip(opts.iter_mut()).enumerate() {
            opt.zero_grad();
            let loss = sft_loss(g, &inp.get(i as i64), &tgt.get(i as i64));
            loss.backward();
            opt.step();
            let _ = loss.double_value(&[]);
        }
    });
    let vs = nn::VarStore::new(device);
    let stacked = StackedGpt::new(&vs.root(), cfg, k);
    let mut opt = nn::adam(0.9, 0.99, 0.0).build(&vs, 1e-4).unwrap();
    let together = time_it(2, reps, || {
        opt.zero_grad();
        let logits = stacked.logits(&inp);
        // The sum over models of each model's mean token NLL: each model's gradient is its own.
        let loss = logits.view([-1, cfg.vocab_size]).cross_entropy_for_logits(&tgt.reshape([-1]))
            * stacked.k as f64;
        loss.backward();
        opt.step();
        let _ = loss.double_value(&[]);
    });
    (separate, together)
}

/// `alignlab bench`: every row, or with `real` only those at real checkpoints' sizes.
/// What `alignlab bench` measures: `bench --help` and docs/benchmarks.md name each (a test
/// checks both).
pub const MEASURES: &[&str] = &[
    "matmul peaks",
    "SFT step",
    "DPO step",
    "sampling with the KV cache",
    "GPT-2-small-shaped SFT step",
    "sampling at batch 256 with and without the KV cache",
    "PPO's generation alone",
    "PPO iteration",
    "stacked policies",
    "rayon",
];

pub fn run(device: Device, quick: bool, real: bool) -> Result<()> {
    if real {
        return real::run(device);
    }
    println!("alignlab bench on {device:?}, {} threads", tch::get_num_threads());
    let peak = matmul_peak(device, quick);
    println!("matmul peak (fp32, n=512/1024)         {:>10.1} GFLOP/s", peak / 1e9);
    let peak16 = crate::profile::matmul_peak_of(Kind::BFloat16, device, quick);
    println!("matmul peak (bf16, n=512/1024)         {:>10.1} GFLOP/s", peak16 / 1e9);
    let quick_model = GptConfig::sized(51, 64, 2, 4, 128);
    let big_model = GptConfig { n_layer: 4, d_model: 256, ..quick_model.clone() };
    precision_rows(&quick_model, &big_model, (peak, peak16), device, quick);
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
    for k in [2i64, 4, 8] {
        let (separate, together) = stacked_steps(&quick_model, k, device, quick);
        println!(
            "{k} quick policies, one step each: separate {:.4} s, stacked {:.4} s, speed-up {:.2}x",
            separate,
            together,
            separate / together
        );
    }
    let threads = tch::get_num_threads().max(1) as usize;
    for p in cpu_parallel(threads, quick)? {
        println!(
            "rayon {:36} 1 thread {:.4} s, {threads} threads {:.4} s, speed-up {:.2}x",
            p.name,
            p.one,
            p.many,
            p.one / p.many
        );
    }
    Ok(())
}

/// The SFT and DPO steps and sampling in fp32 and in bf16, each against the matmul peak of its
/// precision, and the bf16/fp32 ratio of each; then a GPT-2-small-shaped SFT step (d768, 12
/// layers, vocabulary 50257, batch 8 x 128) in both.
fn precision_rows(
    quick_model: &GptConfig,
    big_model: &GptConfig,
    (peak, peak16): (f64, f64),
    device: Device,
    quick: bool,
) {
    use crate::model::gpt::Precision;
    let both = |cfg: &GptConfig| {
        [Precision::Fp32, Precision::Bf16].map(|precision| GptConfig { precision, ..cfg.clone() })
    };
    let name = |p: Precision| if p.is_fp32() { "fp32" } else { "bf16" };
    for (model, cfg) in [("quick (d128 L2)", quick_model), ("d256 L4", big_model)] {
        let r = both(cfg).map(|c| {
            let pk = if c.precision.is_fp32() { peak } else { peak16 };
            (c.precision, sft_step(&c, 64, 21, device, pk, quick))
        });
        for (p, b) in &r {
            println!(
                "sft step {model:16} B64 T21 {} {:>10.0} tokens/s  MFU {:5.1}% of the {} peak",
                name(*p),
                b.tokens_per_s,
                100.0 * b.mfu,
                name(*p)
            );
        }
        println!(
            "sft step {model:16} bf16 / fp32       {:>10.2}x",
            r[1].1.tokens_per_s / r[0].1.tokens_per_s
        );
    }
    for (model, cfg) in [("quick (d128 L2)", quick_model), ("d256 L4", big_model)] {
        let r = both(cfg).map(|c| dpo_step(&c, 64, device, quick));
        println!("dpo step {model:16} B64 pairs P9 N16 fp32 {:>10.1} pairs/s, bf16 {:>10.1} pairs/s: {:.2}x", r[0], r[1], r[1] / r[0]);
    }
    for (model, cfg) in [("quick (d128 L2)", quick_model), ("d256 L4", big_model)] {
        let r = both(cfg).map(|c| sampling(&c, 256, 9, 32, true, device, quick));
        println!("sampling {model:16} B256 P9 N32 cached fp32 {:>10.0} tokens/s, bf16 {:>10.0} tokens/s: {:.2}x", r[0], r[1], r[1] / r[0]);
    }
    if quick {
        println!("sft step GPT-2 small (d768 L12)       (left out of --quick)");
        return;
    }
    let gpt2 = real::gpt2_small(Precision::Fp32);
    let r = both(&gpt2).map(|c| {
        let pk = if c.precision.is_fp32() { peak } else { peak16 };
        sft_step(&c, 8, 128, device, pk, true)
    });
    for (p, b) in [Precision::Fp32, Precision::Bf16].iter().zip(&r) {
        println!("sft step GPT-2 small (d768 L12) B8 T128 {} {:>8.0} tokens/s  MFU {:5.1}% of the {} peak", name(*p), b.tokens_per_s, 100.0 * b.mfu, name(*p));
    }
    println!(
        "sft step GPT-2 small bf16 / fp32      {:>10.2}x",
        r[1].tokens_per_s / r[0].tokens_per_s
    );
}

/// One place of the CPU work that runs on rayon, timed on a pool of one thread and on a pool
/// of `threads`.
pub struct CpuParallel {
    pub name: String,
    pub one: f64,
    pub many: f64,
}

/// Median seconds of `f` on a rayon pool of one thread and on one of `threads`; an error if the
/// two pools' results differ (the places promise the same bytes at any thread count).
fn on_pools<T: PartialEq + Send>(
    name: &str,
    threads: usize,
    reps: usize,
    f: impl Fn() -> T + Sync,
) -> Result<CpuParallel> {
    let pool = |n: usize| rayon::ThreadPoolBuilder::new().num_threads(n).build();
    let (p1, pn) = (pool(1)?, pool(threads)?);
    anyhow::ensure!(
        p1.install(&f) == pn.install(&f),
        "{name}: the result on {threads} threads differs from the one on 1"
    );
    let one = time_it(1, reps, || drop(p1.install(&f)));
    let many = time_it(1, reps, || drop(pn.install(&f)));
    Ok(CpuParallel { name: name.to_string(), one, many })
}

/// The places of the CPU work outside libtorch that run on rayon, at the paper worlds' sizes
/// (the worlds' default settings): building the summarize and dialogue worlds (every document
/// drawn from its own stream), the gold reward of 64 off-policy completions of every evaluation
/// prompt (the parallel map of preference data, evaluation and Best-of-N's candidates), and the
/// importance-sampling frontier over 256 prompts with 512 candidates each at the 12 betas of
/// the evaluation.
pub fn cpu_parallel(threads: usize, quick: bool) -> Result<Vec<CpuParallel>> {
    use crate::draw::{derive_seed, Rng};
    use crate::world::{
        DialogueConfig, DialogueWorld, SentimentConfig, SentimentWorld, SummarizeConfig,
        SummarizeWorld, TextWorld,
    };
    use rayon::prelude::*;
    let reps = if quick { 1 } else { 5 };
    let mut out = vec![];
    let (scfg, dcfg) = (SummarizeConfig::default(), DialogueConfig::default());
    // A world's identity is its corpora and prompts (the worlds do not implement PartialEq).
    out.push(on_pools("summarize world (corpora, prompts)", threads, reps, || {
        let w = SummarizeWorld::new(&scfg, 0);
        (w.train_prompts().to_vec(), w.eval_prompts().to_vec(), w.sft_examples(false).to_vec())
    })?);
    out.push(on_pools("dialogue world (corpora, prompts)", threads, reps, || {
        let w = DialogueWorld::new(&dcfg, 0);
        (w.train_prompts().to_vec(), w.eval_prompts().to_vec(), w.sft_examples(false).to_vec())
    })?);
    let worlds: Vec<(&str, Box<dyn TextWorld>)> = vec![
        ("sentiment", Box::new(SentimentWorld::new(&SentimentConfig::default(), 0))),
        ("summarize", Box::new(SummarizeWorld::new(&scfg, 0))),
        ("dialogue", Box::new(DialogueWorld::new(&dcfg, 0))),
    ];
    for (name, w) in &worlds {
        let mut rng = Rng::new(derive_seed(0, "bench/gold"));
        let pairs: Vec<(Vec<i64>, Vec<i64>)> = w
            .eval_prompts()
            .iter()
            .flat_map(|p| {
                (0..64)
                    .map(|_| (p.clone(), w.offpolicy_completion(p, 24, &mut rng)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let label = format!("gold of {} {name} completions", pairs.len());
        out.push(on_pools(&label, threads, reps, || {
            pairs.par_iter().map(|(p, r)| w.gold(p, r)).collect::<Vec<f64>>()
        })?);
    }
    let mut rng = Rng::new(derive_seed(0, "bench/frontier"));
    let rewards: Vec<Vec<f64>> =
        (0..256).map(|_| (0..512).map(|_| rng.normal()).collect()).collect();
    let betas = [0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0];
    out.push(on_pools("importance-sampling frontier", threads, reps, || {
        crate::eval::optimal::optimal_frontier(&rewards, &betas)
    })?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rayon benchmark times the same work on both pools: a result that depends on the
    /// thread count is refused, and every place's result is the same on one thread and on two.
    #[test]
    fn cpu_parallel_checks_equal_results() {
        let e = on_pools("threads", 2, 1, rayon::current_num_threads)
            .err()
            .expect("a thread-dependent result is refused");
        assert!(e.to_string().contains("differs"), "{e}");
        let places = cpu_parallel(2, true).unwrap();
        assert_eq!(places.len(), 6);
        assert!(places.iter().all(|p| p.one > 0.0 && p.many > 0.0));
    }

    /// The stacked model with K separate GPTs' weights computes each one's logits: the
    /// benchmark compares the same work.
    #[test]
    fn stacked_model_matches_separate_models() {
        let cfg = GptConfig::sized(11, 8, 2, 2, 16);
        let k = 3i64;
        tch::manual_seed(1);
        let gpts: Vec<(nn::VarStore, Gpt)> = (0..k)
            .map(|_| {
                let vs = nn::VarStore::new(Device::Cpu);
                let g = Gpt::new(&vs.root(), &cfg);
                (vs, g)
            })
            .collect();
        let vs = nn::VarStore::new(Device::Cpu);
        let st = StackedGpt::new(&vs.root(), &cfg, k);
        tch::no_grad(|| {
            for (i, (gvs, _)) in gpts.iter().enumerate() {
                let v = gvs.variables();
                let get = |n: &str| {
                    v.get(n)
                        .unwrap_or_else(|| {
                            panic!("no variable {n} in {:?}", v.keys().collect::<Vec<_>>())
                        })
                        .shallow_clone()
                };
                let i = i as i64;
                st.wte.get(i).copy_(&get("wte.weight"));
                st.wpe.get(i).copy_(&get("wpe.weight"));
                for (l, w) in st.layers.iter().enumerate() {
                    let n = |s: &str| get(&format!("h.{l}.{s}"));
                    // Linear weights are [out, in]; the stacked ones [in, out].
                    let pairs = [
                        ("ln_1.weight", 0, false),
                        ("ln_1.bias", 1, false),
                        ("attn.c_attn.weight", 2, true),
                        ("attn.c_attn.bias", 3, false),
                        ("attn.c_proj.weight", 4, true),
                        ("attn.c_proj.bias", 5, false),
                        ("ln_2.weight", 6, false),
                        ("ln_2.bias", 7, false),
                        ("mlp.c_fc.weight", 8, true),
                        ("mlp.c_fc.bias", 9, false),
                        ("mlp.c_proj.weight", 10, true),
                        ("mlp.c_proj.bias", 11, false),
                    ];
                    for (name, j, transpose) in pairs {
                        let src = n(name);
                        let src = if transpose { src.transpose(0, 1) } else { src.view([1, -1]) };
                        w[j].get(i).copy_(&src);
                    }
                }
                st.ln_f.0.get(i).copy_(&get("ln_f.weight").view([1, -1]));
                st.ln_f.1.get(i).copy_(&get("ln_f.bias").view([1, -1]));
            }
        });
        let tokens = Tensor::randint_low(3, cfg.vocab_size, [k, 2, 5], (Kind::Int64, Device::Cpu));
        let stacked = st.logits(&tokens).view([k, 2, 5, cfg.vocab_size]);
        for (i, (_, g)) in gpts.iter().enumerate() {
            let one = g.logits(&g.forward(&tokens.get(i as i64), None, None, None));
            let diff = (stacked.get(i as i64) - one).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "model {i}: stacked logits differ by {diff}");
        }
    }
}
