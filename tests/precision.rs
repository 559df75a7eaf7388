//! bf16: the matrix products in bfloat16 from copies of float32 master weights. What a wrong
//! implementation would break: logits far from fp32's or not float32, gradients that do not
//! reach the masters in float32, copies that go stale after an optimiser step, a KV cache of
//! the wrong type, and the scenario's checks.

use alignlab::algo::adam::Adam;
use alignlab::algo::sft::sft_loss;
use alignlab::model::gpt::{cpu_bf16_units, Precision};
use alignlab::model::sample::positions_of;
use alignlab::model::{generate, left_pad, Gpt, GptConfig, SampleSettings};
use tch::{nn, Device, Kind, Tensor};

fn cfg(precision: Precision) -> GptConfig {
    GptConfig { precision, ..GptConfig::sized(23, 24, 2, 2, 32) }
}

static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The same random weights in an fp32 and a bf16 model.
fn pair(seed: i64) -> ((nn::VarStore, Gpt), (nn::VarStore, Gpt)) {
    let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    tch::manual_seed(seed);
    let vs32 = nn::VarStore::new(Device::Cpu);
    let g32 = Gpt::new(&vs32.root(), &cfg(Precision::Fp32));
    let mut vs16 = nn::VarStore::new(Device::Cpu);
    let g16 = Gpt::new(&vs16.root(), &cfg(Precision::Bf16));
    vs16.copy(&vs32).unwrap();
    ((vs32, g32), (vs16, g16))
}

fn batch() -> (Tensor, Tensor) {
    left_pad(&[vec![1, 5, 6, 7, 8, 9], vec![1, 3, 4], vec![1, 10, 11, 12]], Device::Cpu)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn logits(g: &Gpt) -> Tensor {
    let (tokens, valid) = batch();
    g.logits(&g.forward(&tokens, Some(&positions_of(&valid)), Some(&valid), None))
}

#[test]
fn bf16_logits_are_float32_and_close_to_fp32s() {
    let ((_a, g32), (_b, g16)) = pair(0);
    let _g = tch::no_grad_guard();
    let (l32, l16) = (logits(&g32), logits(&g16));
    assert_eq!(l16.kind(), Kind::Float, "logits are upcast before any softmax");
    let d = max_abs_diff(&l32, &l16);
    // bfloat16 keeps 8 significant bits: a relative error near 2^-8 per product. Zero
    // would mean the products never ran in bf16; 0.05 is far past rounding.
    assert!(d > 0.0 && d < 0.05, "bf16 logits differ from fp32's by {d}");
    let lp = |l: &Tensor| l.log_softmax(-1, Kind::Float);
    assert!(max_abs_diff(&lp(&l32), &lp(&l16)) < 0.05);
}

#[test]
fn bf16_gradients_reach_the_float32_masters_and_the_copies_follow_every_step() {
    let ((_a, _g32), (vs16, g16)) = pair(1);
    let seq = Tensor::randint_low(3, 23, [4, 9], (Kind::Int64, Device::Cpu));
    let (inp, tgt) = (seq.narrow(1, 0, 8), seq.narrow(1, 1, 8));
    let mut opt = Adam::new(&vs16, 1e-2, (0.9, 0.999), 0.0);
    for _ in 0..3 {
        // Without a gradient, the cached copies: equal to a pass that casts inside the graph
        // (the same casts), so a copy left stale by the step before would differ.
        let cached = tch::no_grad(|| logits(&g16));
        let in_graph = logits(&g16).detach();
        assert_eq!(in_graph.kind(), Kind::Float);
        let d = max_abs_diff(&cached, &in_graph);
        assert_eq!(d, 0.0, "cached bf16 copies are stale");
        opt.zero_grad();
        let loss = sft_loss(&g16, &inp, &tgt);
        loss.backward();
        for (name, v) in vs16.variables() {
            assert_eq!(v.kind(), Kind::Float, "{name}: the master stays float32");
            let grad = v.grad();
            assert!(grad.defined(), "{name}: no gradient reached the master");
            assert_eq!(grad.kind(), Kind::Float, "{name}: the gradient is float32");
        }
        opt.step();
    }
    // After the last step too.
    let cached = tch::no_grad(|| logits(&g16));
    assert_eq!(max_abs_diff(&cached, &logits(&g16).detach()), 0.0);
}

#[test]
fn bf16_sampling_with_the_kv_cache_runs_in_bf16_and_agrees_without_it() {
    let ((_a, _g32), (_b, g16)) = pair(2);
    let (prompt, valid) = batch();
    let s = |use_cache| SampleSettings { temperature: 0.0, top_k: 0, max_new_tokens: 6, use_cache };
    let cache = alignlab::model::KvCache::new(&g16.cfg, 3, 12, Device::Cpu);
    assert_eq!(cache.layers[0].k.kind(), Kind::BFloat16);
    let (a, b) =
        (generate(&g16, &prompt, &valid, &s(true)), generate(&g16, &prompt, &valid, &s(false)));
    assert_eq!(a.logprobs.kind(), Kind::Float);
    assert!(bool::try_from(a.logprobs.isfinite().all()).unwrap());
    // Greedy decoding from bf16 products may break a near-tie differently with and without
    // the cache (other shapes, other rounding); the first token sees the same prompt pass.
    assert_eq!(
        Vec::<i64>::try_from(a.response.select(1, 0)).unwrap(),
        Vec::<i64>::try_from(b.response.select(1, 0)).unwrap()
    );
}

#[test]
fn an_fp32_config_serializes_as_before_and_bf16_names_itself() {
    let text32 = toml::to_string(&cfg(Precision::Fp32)).unwrap();
    assert!(!text32.contains("precision"), "fp32 cache keys and model cards must not change");
    let text16 = toml::to_string(&cfg(Precision::Bf16)).unwrap();
    assert!(text16.contains("precision = \"bf16\""), "{text16}");
    let back: GptConfig = toml::from_str(&text32).unwrap();
    assert_eq!(back.precision, Precision::Fp32);
}

#[test]
fn this_machine_reports_its_bf16_units_as_lscpu_does() {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has = info.contains(" amx_bf16") || info.contains(" avx512_bf16");
    assert_eq!(cpu_bf16_units().is_some(), has);
}
