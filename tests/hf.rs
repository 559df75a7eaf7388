//! Hugging Face checkpoints in: tiny random GPT-2, Pythia (GPT-NeoX), Llama 3 and Qwen2
//! checkpoints made by `make fixtures` (scripts/fixtures.py) with transformers, each with the
//! logits transformers computes on fixed ids and its cached greedy continuation. alignlab must
//! give the same logits (fp32, within 1e-5) and the same continuation token for token, with
//! its KV cache; and it must read transformers 4's and 5's config layouts and fp16/bf16 files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use alignlab::model::{hf, Gpt, KvCache};
use tch::{nn, Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn expected(dir: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect()
}

/// The checkpoint at its own vocabulary and positions, loaded.
fn loaded(name: &str) -> (nn::VarStore, Gpt) {
    let ck = hf::open(&fixture(name)).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let gpt = Gpt::new(&vs.root(), &ck.gpt);
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    hf::load(&ck, &ck.gpt, &vars, "").unwrap();
    (vs, gpt)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn logits_match(name: &str) {
    let (_vs, gpt) = loaded(name);
    let e = expected(&fixture(name));
    let got = tch::no_grad(|| gpt.logits(&gpt.forward(&e["ids"], None, None, None)));
    let diff = max_diff(&got, &e["logits"]);
    eprintln!("{name}: max |logits - transformers| = {diff:.2e}");
    assert!(diff <= 1e-5, "{name}: logits differ from transformers' by {diff}");
}

/// Greedy decoding with the KV cache, one token at a time after the prompt.
fn greedy(gpt: &Gpt, prompt: &Tensor, n: i64) -> Vec<i64> {
    let mut cache = KvCache::new(&gpt.cfg, 1, prompt.size()[1] + n, Device::Cpu);
    let mut out = vec![];
    let mut next = tch::no_grad(|| {
        let h = gpt.forward(prompt, None, None, Some(&mut cache));
        gpt.logits(&h.narrow(1, -1, 1)).argmax(-1, false)
    });
    for _ in 0..n {
        out.push(next.int64_value(&[0, 0]));
        next = tch::no_grad(|| {
            let h = gpt.forward(&next, None, None, Some(&mut cache));
            gpt.logits(&h).argmax(-1, false)
        });
    }
    out
}

fn greedy_matches(name: &str) {
    let (_vs, gpt) = loaded(name);
    let e = expected(&fixture(name));
    let want: Vec<i64> = Vec::try_from(e["greedy"].view([-1])).unwrap();
    assert_eq!(greedy(&gpt, &e["prompt"], want.len() as i64), want, "{name}: greedy continuation");
}

#[test]
fn gpt2_logits_and_greedy_match_transformers() {
    logits_match("gpt2");
    greedy_matches("gpt2");
}

#[test]
fn pythia_logits_and_greedy_match_transformers() {
    logits_match("pythia");
    greedy_matches("pythia");
}

#[test]
fn llama_logits_and_greedy_match_transformers() {
    logits_match("llama");
    greedy_matches("llama");
}

#[test]
fn qwen2_logits_and_greedy_match_transformers() {
    logits_match("qwen2");
    greedy_matches("qwen2");
}

/// The architectures read from each layout: transformers 4 (Pythia's `rotary_pct` and
/// `rotary_emb_base`, Llama's `rope_theta` and `rope_scaling`) and 5 (Qwen2's
/// `rope_parameters`).
#[test]
fn configs_of_both_layouts_are_read() {
    use alignlab::model::arch::{Family, Mlp, RopeScaling};
    let pythia = hf::open(&fixture("pythia")).unwrap().gpt.arch();
    assert_eq!(pythia.family, Family::GptNeox);
    assert!(pythia.parallel_residual && !pythia.tied && pythia.mlp == Mlp::Gelu);
    let rope = pythia.rope.unwrap();
    assert_eq!((rope.dims, rope.theta, rope.scaling), (4, 10000.0, RopeScaling::None));
    let llama = hf::open(&fixture("llama")).unwrap().gpt.arch();
    assert_eq!((llama.n_kv_head, llama.head_dim, llama.d_ff), (2, 8, 48));
    let rope = llama.rope.unwrap();
    assert_eq!(rope.theta, 500000.0);
    assert!(matches!(rope.scaling, RopeScaling::Llama3 { factor: 8.0, original_max: 16.0, .. }));
    let qwen = hf::open(&fixture("qwen2")).unwrap().gpt.arch();
    assert!(qwen.qkv_bias && !qwen.out_bias && qwen.tied && qwen.n_kv_head == 1);
    assert_eq!(qwen.rope.unwrap().scaling, RopeScaling::Linear { factor: 2.0 });
}

/// A batch of one row and of two rows give the same logits for that row (the rotary
/// positions and grouped heads are per row), and `forward_rows` agrees with `forward`.
#[test]
fn rows_agree_with_full_forward_on_a_rotary_model() {
    let (_vs, gpt) = loaded("llama");
    let e = expected(&fixture("llama"));
    let ids = &e["ids"];
    let full = tch::no_grad(|| gpt.forward(ids, None, None, None));
    let rows =
        tch::no_grad(|| gpt.forward_rows(ids, None, None, alignlab::model::Rows::Range(4, 6)));
    assert!(max_diff(&full.narrow(1, 4, 6), &rows) < 1e-5);
    let one = tch::no_grad(|| gpt.forward(&ids.narrow(0, 1, 1), None, None, None));
    assert!(max_diff(&full.narrow(0, 1, 1), &one) < 1e-5);
    assert_eq!(full.kind(), Kind::Float);
}

/// A prefill on the KV cache without a padding mask, then one step, give what the plain
/// forward gives on the whole sequence (a prefill without a mask must still be causal).
#[test]
fn cached_prefill_and_step_equal_the_plain_forward() {
    for name in ["gpt2", "pythia", "llama", "qwen2"] {
        let (_vs, gpt) = loaded(name);
        let ids = Tensor::from_slice(&[5i64, 9, 33, 2, 7, 100, 41]).view([1, 7]);
        let full = tch::no_grad(|| gpt.forward(&ids, None, None, None));
        let mut cache = KvCache::new(&gpt.cfg, 1, 7, Device::Cpu);
        let a = tch::no_grad(|| gpt.forward(&ids.narrow(1, 0, 5), None, None, Some(&mut cache)));
        let b = tch::no_grad(|| gpt.forward(&ids.narrow(1, 5, 2), None, None, Some(&mut cache)));
        assert!(max_diff(&a, &full.narrow(1, 0, 5)) < 1e-5, "{name}: prefill");
        assert!(max_diff(&b, &full.narrow(1, 5, 2)) < 1e-5, "{name}: step");
    }
}

/// Export inverts loading: a loaded checkpoint's tensors written back under the family's names
/// equal the checkpoint's own (upcast to fp32), name for name, and its config.json written
/// back reads as the same network.
#[test]
fn export_round_trips_each_family() {
    for name in ["gpt2", "pythia", "llama", "qwen2"] {
        let ck = hf::open(&fixture(name)).unwrap();
        let (vs, _gpt) = loaded(name);
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        let out: BTreeMap<String, Tensor> =
            hf::tensors_out(&ck.gpt, &vars).unwrap().into_iter().collect();
        let original = hf::read_tensors(&ck).unwrap();
        for (k, t) in &out {
            assert_eq!(max_diff(t, &original[k]), 0.0, "{name}: {k}");
        }
        // Every tensor of the checkpoint is written back (GPT-2's tied head is not stored).
        let missing: Vec<&String> = original.keys().filter(|k| !out.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{name}: not exported: {missing:?}");
        let dir = std::env::temp_dir().join(format!("alignlab-hf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), hf::config_json(&ck.gpt, 0, 0, 0).to_string())
            .unwrap();
        let vals: Vec<(String, Tensor)> = out.into_iter().collect();
        Tensor::write_safetensors(&vals, dir.join("model.safetensors")).unwrap();
        let back = hf::open(&dir).unwrap();
        assert_eq!(back.gpt, ck.gpt, "{name}: config.json round trip");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// `GptConfig::var_shapes` (what the checks and the memory estimate use without allocating a
/// model) lists exactly the variables `Gpt::new` creates, for each family and alignlab's own.
#[test]
fn var_shapes_are_the_models_variables() {
    let mut cfgs: Vec<_> =
        ["gpt2", "pythia", "llama", "qwen2"].map(|n| hf::open(&fixture(n)).unwrap().gpt).into();
    cfgs.push(alignlab::model::ModelConfig::default().gpt(40));
    for cfg in cfgs {
        let vs = nn::VarStore::new(Device::Cpu);
        let _gpt = Gpt::new(&vs.root(), &cfg);
        let made: BTreeMap<String, Vec<i64>> =
            vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
        let listed: BTreeMap<String, Vec<i64>> = cfg.var_shapes().into_iter().collect();
        assert_eq!(made, listed, "{:?}", cfg.arch().family);
        assert_eq!(cfg.n_params(), made.values().map(|s| s.iter().product::<i64>()).sum::<i64>());
    }
}

/// A decoder reward model (`LlamaForSequenceClassification`, one output): its trunk and its
/// `score` head loaded into alignlab's reward model give transformers' score at the last
/// token of each row.
#[test]
fn a_sequence_classification_checkpoint_scores_as_transformers() {
    let dir = fixture("llama-rm");
    let mut ck = hf::open(&dir).unwrap();
    assert_eq!(ck.num_labels, Some(1));
    ck.gpt.arch.as_mut().unwrap().tied = true; // its LM head is not used
    let vs = nn::VarStore::new(Device::Cpu);
    let rm = alignlab::algo::reward::RewardModel::new(&vs.root(), &ck.gpt);
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    assert!(hf::load(&ck, &ck.gpt, &vars, "").unwrap(), "the score head was not loaded");
    let e = expected(&dir);
    let h = tch::no_grad(|| rm.gpt.forward(&e["ids"], None, None, None));
    let scores = tch::no_grad(|| rm.head.forward(&h)).select(1, -1);
    assert!(max_diff(&scores, &e["scores"]) < 1e-5, "{scores} vs {}", e["scores"]);
    // A causal LM (the same trunk's shapes) has no score head: the reward model keeps its new
    // one.
    let lm = hf::open(&fixture("llama")).unwrap();
    assert!(!hf::load(&lm, &ck.gpt, &vars, "").unwrap());
}

/// A checkpoint in shards (`model.safetensors.index.json` naming two files) loads as the
/// single file does.
#[test]
fn sharded_checkpoints_load_as_one_file() {
    let dir = std::env::temp_dir().join(format!("alignlab-hf-shards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("llama/config.json"), dir.join("config.json")).unwrap();
    let all = Tensor::read_safetensors(fixture("llama/model.safetensors")).unwrap();
    let (a, b): (Vec<_>, Vec<_>) = all.into_iter().partition(|(n, _)| n.contains("layers.0"));
    let mut map = vec![];
    for (file, part) in
        [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)]
    {
        Tensor::write_safetensors(&part, dir.join(file)).unwrap();
        map.extend(part.iter().map(|(n, _)| format!("\"{n}\": \"{file}\"")));
    }
    let index = format!("{{\"metadata\": {{}}, \"weight_map\": {{{}}}}}", map.join(", "));
    std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    let ck = hf::open(&dir).unwrap();
    assert_eq!(ck.files.len(), 2);
    let vs = nn::VarStore::new(Device::Cpu);
    let gpt = Gpt::new(&vs.root(), &ck.gpt);
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    hf::load(&ck, &ck.gpt, &vars, "").unwrap();
    let e = expected(&fixture("llama"));
    let got = tch::no_grad(|| gpt.logits(&gpt.forward(&e["ids"], None, None, None)));
    assert!(max_diff(&got, &e["logits"]) <= 1e-5);
    std::fs::remove_dir_all(&dir).unwrap();
}
