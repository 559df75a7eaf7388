//! Model checks: the KV cache is exact, sampling is reproducible, training moves the loss.

use alignlab::algo::common::token_logprobs;
use alignlab::algo::sft::{sft_loss, SeqData};
use alignlab::model::sample::positions_of;
use alignlab::model::{
    generate, left_pad, load_checkpoint, save_checkpoint, Gpt, GptConfig, KvCache, SampleSettings,
};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

fn tiny() -> GptConfig {
    GptConfig::sized(20, 24, 2, 2, 32)
}

/// torch's generator is global and tests run on parallel threads: hold this while seeding
/// and drawing.
static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model(seed: i64) -> (nn::VarStore, Gpt) {
    let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(Device::Cpu);
    let gpt = Gpt::new(&vs.root(), &tiny());
    (vs, gpt)
}

fn prompts() -> Vec<Vec<i64>> {
    vec![vec![5, 6, 7, 8, 9], vec![3, 4], vec![10, 11, 12], vec![7]]
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn cached_and_uncached_logits_agree_on_left_padded_batches() {
    let (_vs, gpt) = model(0);
    let _g = tch::no_grad_guard();
    let (prompt, valid) = left_pad(&prompts(), Device::Cpu);
    let (b, p) = prompt.size2().unwrap();
    let extra = Tensor::randint_low(3, 20, [b, 6], (Kind::Int64, Device::Cpu));
    let full = Tensor::cat(&[&prompt, &extra], 1);
    let full_valid =
        Tensor::cat(&[valid.shallow_clone(), Tensor::ones([b, 6], (Kind::Bool, Device::Cpu))], 1);
    let pos = positions_of(&full_valid);
    // Reference: one uncached forward over the whole sequence.
    let reference = gpt.logits(&gpt.forward(&full, Some(&pos), Some(&full_valid), None));
    // Cached: prefill the prompt, then one token at a time.
    let mut cache = KvCache::new(&gpt.cfg, b, p + 6, Device::Cpu);
    let mut pieces = vec![gpt.logits(&gpt.forward(
        &prompt,
        Some(&pos.narrow(1, 0, p)),
        Some(&valid),
        Some(&mut cache),
    ))];
    for t in 0..6 {
        let tok = extra.narrow(1, t, 1);
        let h = gpt.forward(
            &tok,
            Some(&pos.narrow(1, p + t, 1)),
            Some(&full_valid.narrow(1, 0, p + t + 1)),
            Some(&mut cache),
        );
        pieces.push(gpt.logits(&h));
    }
    let cached = Tensor::cat(&pieces, 1);
    // Compare at real tokens only (padding positions are never used).
    let m = full_valid.unsqueeze(-1).to_kind(Kind::Float);
    let diff = max_abs_diff(&(&reference * &m), &(&cached * &m));
    assert!(diff < 1e-5, "cached vs uncached max abs diff {diff}");
    // A left-padded row gives the same logits as the same row alone, unpadded.
    let alone = Tensor::cat(&[Tensor::from_slice(&[1i64, 3, 4]), extra.get(1)], 0).unsqueeze(0);
    let alone_logits = gpt.logits(&gpt.forward(&alone, None, None, None));
    let padded_row = reference.get(1).narrow(0, p - 3, 3 + 6);
    let diff = max_abs_diff(&alone_logits.get(0), &padded_row);
    assert!(diff < 1e-5, "left padding changed the logits by {diff}");
}

fn settings(use_cache: bool) -> SampleSettings {
    SampleSettings { temperature: 1.0, top_k: 0, max_new_tokens: 12, use_cache }
}

#[test]
fn sampling_is_reproducible_and_cache_does_not_change_samples() {
    let (_vs, gpt) = model(1);
    let (prompt, valid) = left_pad(&prompts(), Device::Cpu);
    let draw = |seed: i64, cache: bool| {
        let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed);
        generate(&gpt, &prompt, &valid, &settings(cache))
    };
    let a = draw(7, true);
    let b = draw(7, true);
    assert!(a.response.equal(&b.response), "same seed, different tokens");
    let c = draw(8, true);
    assert!(!a.response.equal(&c.response), "different seeds gave identical samples");
    let u = draw(7, false);
    assert!(a.response.equal(&u.response), "cached and uncached sampling disagree");
    assert!(max_abs_diff(&a.logprobs, &u.logprobs) < 1e-5);
}

#[test]
fn sample_logprobs_and_mask_are_consistent() {
    let (_vs, gpt) = model(2);
    let (prompt, valid) = left_pad(&prompts(), Device::Cpu);
    let lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(3);
    let ro = generate(&gpt, &prompt, &valid, &settings(true));
    // The recorded log-probs equal a fresh forward pass's log-probs of the sampled tokens.
    let tokens = ro.tokens();
    let hidden = gpt.forward(&tokens, Some(&ro.positions()), Some(&ro.valid()), None);
    let p = prompt.size()[1];
    let n = ro.response.size()[1];
    let logits = gpt.logits(&hidden.narrow(1, p - 1, n));
    drop(lock);
    let lp = token_logprobs(&logits, &ro.response) * &ro.mask;
    assert!(max_abs_diff(&lp, &ro.logprobs) < 1e-5);
    // The mask is 1 up to and including the first <eos>, 0 after, and padding is <pad>.
    let resp: Vec<Vec<i64>> = Vec::try_from(&ro.response).unwrap();
    let mask: Vec<Vec<f32>> = Vec::try_from(&ro.mask).unwrap();
    for (r, m) in resp.iter().zip(&mask) {
        let end = r.iter().position(|&t| t == 2).map_or(r.len(), |i| i + 1);
        for j in 0..r.len() {
            assert_eq!(m[j] > 0.0, j < end);
            if j >= end {
                assert_eq!(r[j], 0);
            }
        }
    }
}

#[test]
fn greedy_and_top_k_sampling() {
    let (_vs, gpt) = model(3);
    let (prompt, valid) = left_pad(&prompts(), Device::Cpu);
    let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let greedy = SampleSettings { temperature: 0.0, top_k: 0, max_new_tokens: 8, use_cache: true };
    tch::manual_seed(1);
    let a = generate(&gpt, &prompt, &valid, &greedy);
    tch::manual_seed(2);
    let b = generate(&gpt, &prompt, &valid, &greedy);
    assert!(a.response.equal(&b.response), "greedy decoding depends on the seed");
    // top_k = 1 is greedy.
    let top1 = SampleSettings { temperature: 1.0, top_k: 1, max_new_tokens: 8, use_cache: true };
    tch::manual_seed(9);
    let c = generate(&gpt, &prompt, &valid, &top1);
    assert!(a.response.equal(&c.response), "top_k = 1 differs from greedy");
}

#[test]
fn token_logprobs_match_cross_entropy() {
    tch::manual_seed(0);
    let logits = Tensor::randn([3, 5, 20], (Kind::Float, Device::Cpu));
    let targets = Tensor::randint(20, [3, 5], (Kind::Int64, Device::Cpu));
    let lp = token_logprobs(&logits, &targets).sum(Kind::Float).double_value(&[]);
    let ce = logits.view([-1, 20]).cross_entropy_for_logits(&targets.view([-1])).double_value(&[])
        * 15.0;
    assert!((lp + ce).abs() < 1e-4, "sum log p {lp} vs -CE {ce}");
}

fn one_batch() -> SeqData {
    SeqData::new(
        &[vec![3, 4, 5, 6, 7, 8], vec![9, 10, 11], vec![12, 13, 14, 15, 16, 17, 18, 19]],
        Device::Cpu,
    )
}

#[test]
fn tiny_model_overfits_one_batch() {
    let (vs, gpt) = model(4);
    let data = one_batch();
    let (inp, tgt) = data.batch(&[0, 1, 2]);
    let mut opt = nn::adamw(0.9, 0.99, 0.0).build(&vs, 3e-3).unwrap();
    let first = sft_loss(&gpt, &inp, &tgt).double_value(&[]);
    let mut last = first;
    for _ in 0..300 {
        let loss = sft_loss(&gpt, &inp, &tgt);
        opt.backward_step(&loss);
        last = loss.double_value(&[]);
    }
    // The three rows share `<bos>` and then diverge: the first word costs ln 3 each, an
    // irreducible 3 ln 3 over the batch's 20 target tokens. Everything else can be memorised.
    let floor = 3.0 * 3f64.ln() / 20.0;
    assert!(first > 2.5, "initial loss {first} should be near ln(20)");
    assert!(
        last < floor + 0.01,
        "failed to overfit one batch: loss {first} -> {last} (floor {floor})"
    );
}

#[test]
fn zero_learning_rate_leaves_loss_unchanged() {
    let (vs, gpt) = model(5);
    let data = one_batch();
    let (inp, tgt) = data.batch(&[0, 1, 2]);
    let mut opt = nn::adamw(0.9, 0.99, 0.0).build(&vs, 0.0).unwrap();
    let before = sft_loss(&gpt, &inp, &tgt).double_value(&[]);
    for _ in 0..5 {
        let loss = sft_loss(&gpt, &inp, &tgt);
        opt.backward_step(&loss);
    }
    let after = sft_loss(&gpt, &inp, &tgt).double_value(&[]);
    assert_eq!(before, after);
}

#[test]
fn checkpoint_round_trip_uses_gpt2_names() {
    let (vs, gpt) = model(6);
    let dir = std::env::temp_dir().join(format!("alignlab-ckpt-{}", std::process::id()));
    let path = dir.join("model.safetensors");
    save_checkpoint(&vs, &path).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in [
        "wte.weight", "wpe.weight", "h.0.attn.c_attn.weight", "h.1.mlp.c_proj.bias",
        "h.0.ln_1.weight", "ln_f.bias",
    ] {
        assert!(names.iter().any(|x| x == n), "missing parameter {n} in {names:?}");
    }
    let (mut vs2, gpt2) = model(99);
    load_checkpoint(&mut vs2, &path).unwrap();
    let x = Tensor::from_slice(&[1i64, 5, 6, 7]).unsqueeze(0);
    let a = gpt.logits(&gpt.forward(&x, None, None, None));
    let b = gpt2.logits(&gpt2.forward(&x, None, None, None));
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    // A corrupt checkpoint is an error that names the file, not a panic.
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = load_checkpoint(&mut vs2, &path).unwrap_err();
    assert!(format!("{err:#}").contains("model.safetensors"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Our Adam keeps every parameter in one flat buffer. Without clipping it must follow
/// libtorch's own AdamW step for step (same betas, eps, decoupled weight decay), on every
/// variable of a real model.
#[test]
fn flat_adam_matches_libtorch_adamw() {
    use alignlab::algo::adam::Adam;
    let (vs_a, gpt_a) = model(7);
    let (mut vs_b, gpt_b) = model(8);
    vs_b.copy(&vs_a).unwrap();
    let data = one_batch();
    let (inp, tgt) = data.batch(&[0, 1, 2]);
    let mut ours = Adam::new(&vs_a, 3e-3, (0.9, 0.999), 0.1);
    let mut theirs = nn::AdamW { beta1: 0.9, beta2: 0.999, wd: 0.1, eps: 1e-8, amsgrad: false }
        .build(&vs_b, 3e-3)
        .unwrap();
    for _ in 0..6 {
        ours.zero_grad();
        sft_loss(&gpt_a, &inp, &tgt).backward();
        ours.step();
        theirs.zero_grad();
        sft_loss(&gpt_b, &inp, &tgt).backward();
        theirs.step();
    }
    let (va, vb) = (vs_a.variables(), vs_b.variables());
    assert_eq!(va.len(), vb.len());
    for (name, a) in &va {
        let d = max_abs_diff(a, &vb[name]);
        // Six steps of 3e-3 each; rounding differences show where a gradient is near eps.
        assert!(d < 5e-5, "{name} differs from libtorch's AdamW by {d}");
    }
    // The weights moved (a zero learning rate or a dead step would pass the comparison above).
    let (_, fresh) = model(7);
    let x = Tensor::from_slice(&[1i64, 5, 6, 7]).unsqueeze(0);
    assert!(
        max_abs_diff(
            &gpt_a.logits(&gpt_a.forward(&x, None, None, None)),
            &fresh.logits(&fresh.forward(&x, None, None, None))
        ) > 1e-3
    );
}

/// Clipping scales the whole gradient by max_norm / norm, across variables; a variable that
/// never had a gradient keeps its value (the per-variable path), as in torch.optim.Adam.
#[test]
fn flat_adam_clips_globally_and_skips_unused_variables() {
    use alignlab::algo::adam::Adam;
    let _g = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let vs = nn::VarStore::new(Device::Cpu);
    let a = vs.root().var_copy("a", &Tensor::from_slice(&[1.0f32, 2.0]));
    let b = vs.root().var_copy("b", &Tensor::from_slice(&[3.0f32]));
    let c = vs.root().var_copy("c", &Tensor::from_slice(&[5.0f32]));
    let lr = 0.1;
    let mut opt = Adam::new(&vs, lr, (0.9, 0.999), 0.0);
    for step in 0..2 {
        // loss = 3 a0 + 4 b: gradient (3, 0, 4), norm 5; clipped to norm 1 it is (0.6, 0, 0.8).
        let loss = a.get(0) * 3.0 + b.get(0) * 4.0;
        opt.zero_grad();
        loss.backward();
        let norm = opt.clip_grad_norm(1.0);
        assert!((norm - 5.0).abs() < 1e-5, "norm {norm}");
        opt.step();
        // With a constant gradient m_hat = g and v_hat = g^2 at every step, so each
        // coordinate with g != 0 moves by lr per step whatever the clipping scale.
        let want = 1.0 - lr * (step + 1) as f64;
        let (a_now, b_now) = (Vec::<f32>::try_from(&a).unwrap(), Vec::<f32>::try_from(&b).unwrap());
        assert!(
            (a_now[0] as f64 - want).abs() < 1e-5
                && a_now[1] == 2.0
                && (b_now[0] as f64 - (want + 2.0)).abs() < 1e-5,
            "{a_now:?} {b_now:?}"
        );
        assert_eq!(
            Vec::<f32>::try_from(&c).unwrap(),
            vec![5.0],
            "a variable without a gradient must not move"
        );
    }
    // Without `c`, the same run takes the flat path and gives the same values.
    let vs2 = nn::VarStore::new(Device::Cpu);
    let a2 = vs2.root().var_copy("a", &Tensor::from_slice(&[1.0f32, 2.0]));
    let b2 = vs2.root().var_copy("b", &Tensor::from_slice(&[3.0f32]));
    let mut opt2 = Adam::new(&vs2, lr, (0.9, 0.999), 0.0);
    for _ in 0..2 {
        let loss = a2.get(0) * 3.0 + b2.get(0) * 4.0;
        opt2.zero_grad();
        loss.backward();
        opt2.clip_grad_norm(1.0);
        opt2.step();
    }
    assert_eq!(max_abs_diff(&a, &a2) + max_abs_diff(&b, &b2), 0.0);
}

/// `forward_rows` skips the last block's work on the rows nobody reads; where it does run it
/// must give `forward`'s values, for a range of rows and for per-row indices, with and without
/// left padding, and its gradient must be `forward`'s too.
#[test]
fn forward_rows_matches_forward_on_the_kept_rows() {
    use alignlab::model::Rows;
    let (vs, gpt) = model(9);
    let (prompt, valid) = left_pad(&prompts(), Device::Cpu);
    let (b, p) = prompt.size2().unwrap();
    let tokens = Tensor::cat(
        &[&prompt, &Tensor::from_slice(&[4i64, 9, 13, 2]).view([1, 4]).expand([b, 4], false)],
        1,
    );
    let all_valid = Tensor::cat(&[&valid, &Tensor::ones([b, 4], (Kind::Bool, Device::Cpu))], 1);
    let pos = positions_of(&all_valid);
    let t = tokens.size()[1];
    let idx = Tensor::from_slice(&[t - 1, p, p + 1, t - 2, 0, t - 1, 3, p - 1]).view([b, 2]);
    for (kv, ps) in [(Some(&all_valid), Some(&pos)), (None, None)] {
        let full = gpt.forward(&tokens, ps, kv, None);
        let ranged = gpt.forward_rows(&tokens, ps, kv, Rows::Range(p - 1, 4));
        assert_eq!(ranged.size(), vec![b, 4, 32]);
        let d = max_abs_diff(&ranged, &full.narrow(1, p - 1, 4));
        assert!(d < 1e-5, "range rows differ by {d} (padding mask: {})", kv.is_some());
        let picked = gpt.forward_rows(&tokens, ps, kv, Rows::Index(&idx));
        let want = full.gather(1, &idx.unsqueeze(-1).expand([b, 2, 32], false), false);
        let d = max_abs_diff(&picked, &want);
        assert!(d < 1e-5, "indexed rows differ by {d} (padding mask: {})", kv.is_some());
    }
    // Gradients: the same loss through both paths.
    let grads = |rows: bool| {
        let h = if rows {
            gpt.forward_rows(&tokens, Some(&pos), Some(&all_valid), Rows::Range(p - 1, 4))
        } else {
            gpt.forward(&tokens, Some(&pos), Some(&all_valid), None).narrow(1, p - 1, 4)
        };
        let loss = gpt.logits(&h).log_softmax(-1, Kind::Float).select(2, 5).sum(Kind::Float);
        let vars: Vec<Tensor> = vs.trainable_variables();
        Tensor::run_backward(&[loss], &vars, false, false)
    };
    for (a, b) in grads(true).iter().zip(grads(false).iter()) {
        let d = max_abs_diff(a, b);
        assert!(d < 1e-5, "gradients differ by {d}");
    }
}

/// The tokens a model never emits (`suppress`: the world's `<pad>` and `<bos>`) are never
/// sampled, and every other token keeps its probability relative to the rest: the
/// distribution is the raw one renormalised without them. Without suppression the same
/// untrained model samples them.
#[test]
fn suppressed_tokens_are_never_sampled() {
    let _store = nn::VarStore::new(Device::Cpu);
    let gpt = {
        let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(3);
        Gpt::new(&_store.root(), &GptConfig { suppress: vec![0, 1], ..tiny() })
    };
    let (prompt, valid) = left_pad(&vec![vec![1i64, 5, 6]; 64], Device::Cpu);
    let count = |g: &Gpt| {
        let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(0);
        let ro = tch::no_grad(|| generate(g, &prompt, &valid, &settings(true)));
        let special = ro.response.le(1).logical_and(&ro.mask.gt(0.0));
        special.sum(Kind::Int64).int64_value(&[])
    };
    let (_vs2, plain) = model(3);
    assert!(count(&plain) > 0, "the unsuppressed model should sample <pad> or <bos> here");
    assert_eq!(count(&gpt), 0);
    let h = tch::no_grad(|| gpt.forward(&prompt, None, None, None));
    let (lp, raw) = (gpt.logits(&h).log_softmax(-1, Kind::Float), gpt.raw_logits(&h));
    assert!(lp.narrow(2, 0, 2).max().double_value(&[]) < -1e8);
    let renorm = raw.narrow(2, 2, 18).log_softmax(-1, Kind::Float);
    assert!(max_abs_diff(&lp.narrow(2, 2, 18), &renorm) < 1e-5);
}
