//! `[model] init`: a scenario run from a Hugging Face checkpoint end to end (SFT, preference
//! data, reward model, DPO, PPO with a critic, PPO-GT, Best-of-N, the evaluation, export), and
//! the checkpoint problems a user meets, each a one-line error before any work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use alignlab::model::hf;
use tch::Tensor;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("alignlab-init-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const TINY: &[&str] = &[
    "sft.steps=20",
    "world.n_train=200",
    "world.n_val=40",
    "world.n_train_prompts=16",
    "world.n_eval_prompts=8",
    "train.steps=4",
    "reward.epochs=1",
    "eval.every=2",
    "eval.samples_per_prompt=1",
    "ppo.iterations=2",
    "ppo.eval_every=1",
    "ppo_gt.iterations=2",
    "ppo_gt.eval_every=1",
    "best_of_n.n=[1,2]",
    "sweep.seeds=[0]",
];

fn run(out: &Path, init: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(["run", "scenarios/sentiment.toml", "--quiet", "--threads", "1"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    c.arg("--set").arg(format!("model.init={}", init.display()));
    for s in TINY.iter().chain(extra) {
        c.arg("--set").arg(s);
    }
    c.output().unwrap()
}

/// The run folders of the sentiment scenario under `out` whose names start with `prefix`.
fn run_dirs(out: &Path, prefix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(out.join("runs/sentiment"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect()
}

/// `alignlab export RUN --hf TO`, which must succeed.
fn export(run: &Path, to: &Path) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    let o = c.arg("export").arg(run).arg("--hf").arg(to).output().unwrap();
    assert!(o.status.success(), "export of {}:\n{}", run.display(), text(&o));
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A short run from a Llama-family and from a GPT-2 checkpoint: every method trains and is
/// evaluated (finite gold reward and KL at every evaluation), and the DPO policy exports back
/// as a checkpoint of the same family.
#[test]
fn dpo_and_ppo_run_from_llama_and_gpt2_checkpoints() {
    for name in ["llama", "gpt2"] {
        let out = tmp(name);
        let o = run(&out, &fixture(name), &[]);
        assert!(o.status.success(), "{name}:\n{}", text(&o));
        let eval = std::fs::read_to_string(out.join("results/sentiment/eval.csv")).unwrap();
        // Long format: method,setting,seed,step,metric,value.
        let mut seen = BTreeMap::new();
        for line in eval.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f[4] == "eval/gold" || f[4] == "eval/kl" {
                let v: f64 = f[5].parse().unwrap();
                assert!(v.is_finite(), "{name}: {line}");
                *seen.entry(f[0].to_string()).or_insert(0) += 1;
            }
        }
        for m in ["sft", "dpo", "ppo", "ppo_gt", "best_of_n"] {
            assert!(seen.contains_key(m), "{name}: no evaluation of {m} in {seen:?}");
        }
        let hf_out = out.join("hf");
        export(&run_dirs(&out, "dpo-")[0], &hf_out);
        let back = hf::open(&hf_out).unwrap();
        let original = hf::open(&fixture(name)).unwrap();
        assert_eq!(back.gpt.arch().family, original.gpt.arch().family);
        assert_eq!(back.gpt.vocab_size, 51, "{name}: the world's vocabulary is exported");
        if name == "gpt2" {
            // The PPO run's critic (a GPT-2 trunk with a value head) exports as a scorer too.
            let ppo = run_dirs(&out, "ppo-").into_iter().find(|d| d.join("critic").is_dir());
            let critic = ppo.expect("a PPO run folder with its critic").join("critic");
            scorer_exports(&critic, &out.join("hf-critic"));
            // The trained critic, not the reward model it started from.
            let weights = |d: &Path| {
                let t = Tensor::read_safetensors(d.join("model.safetensors")).unwrap();
                t.into_iter().collect::<BTreeMap<String, Tensor>>()
            };
            let (c, rm) = (weights(&critic), weights(&run_dirs(&out, "reward-")[0]));
            assert_eq!(c.keys().collect::<Vec<_>>(), rm.keys().collect::<Vec<_>>());
            assert!(c.iter().any(|(k, t)| !t.equal(&rm[k])), "the critic is the reward model");
        }
        std::fs::remove_dir_all(&out).ok();
    }
}

/// A copy of a fixture whose weights file is `tensors` and whose config.json is `config`.
fn broken(name: &str, config: &str, tensors: Vec<(String, Tensor)>) -> PathBuf {
    let d = tmp(&format!("ck-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), config).unwrap();
    Tensor::write_safetensors(&tensors, d.join("model.safetensors")).unwrap();
    d
}

fn llama_tensors() -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(fixture("llama/model.safetensors")).unwrap()
}

fn llama_config() -> String {
    std::fs::read_to_string(fixture("llama/config.json")).unwrap()
}

/// Fails with one line holding every needle, and writes neither results nor runs.
fn fails_before_work(init: &Path, needles: &[&str]) {
    let out = tmp("bad");
    let o = run(&out, init, &[]);
    let t = text(&o);
    assert!(!o.status.success(), "expected failure:\n{t}");
    assert!(!t.contains("panicked"), "panic instead of an error:\n{t}");
    assert_eq!(t.trim().lines().count(), 1, "not one line:\n{t}");
    for n in needles {
        assert!(t.contains(n), "`{n}` missing from:\n{t}");
    }
    assert!(!out.join("results").exists() && !out.join("runs").exists(), "work was done:\n{t}");
}

#[test]
fn bad_checkpoints_fail_in_one_line_before_any_work() {
    let empty = tmp("ck-empty");
    std::fs::create_dir_all(&empty).unwrap();
    fails_before_work(&empty, &["model.init", "config.json: does not exist", "fix:"]);
    fails_before_work(&tmp("ck-nowhere"), &["model.init", "is not a folder", "fix:"]);

    let t5 = broken("t5", &llama_config().replace("\"llama\"", "\"t5\""), llama_tensors());
    fails_before_work(
        &t5,
        &["model_type `t5` is not supported", "gpt2, gpt_neox, llama, qwen2, mistral"],
    );

    let mut fewer = llama_tensors();
    fewer.retain(|(n, _)| n != "model.layers.1.self_attn.k_proj.weight");
    let missing = broken("missing", &llama_config(), fewer);
    fails_before_work(
        &missing,
        &["has no tensor `model.layers.1.self_attn.k_proj.weight`", "fix:"],
    );

    let mut reshaped = llama_tensors();
    for (n, t) in reshaped.iter_mut() {
        if n == "model.layers.0.mlp.up_proj.weight" {
            *t = t.narrow(0, 0, 40);
        }
    }
    let wrong = broken("shape", &llama_config(), reshaped);
    fails_before_work(&wrong, &["tensor `model.layers.0.mlp.up_proj.weight` has shape [40, 32] where config.json asks for [48, 32]", "fix:"]);

    let small = broken(
        "vocab",
        &llama_config().replace("\"vocab_size\": 320", "\"vocab_size\": 40"),
        llama_tensors(),
    );
    fails_before_work(&small, &["embedding holds 40 tokens, fewer than the world's 51", "fix:"]);

    // A checkpoint far too large for this machine: its header alone says so.
    let huge = llama_config()
        .replace("\"hidden_size\": 32", "\"hidden_size\": 16384")
        .replace("\"intermediate_size\": 48", "\"intermediate_size\": 53248")
        .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 126")
        .replace("\"head_dim\": 8", "\"head_dim\": 128")
        .replace("\"num_attention_heads\": 4", "\"num_attention_heads\": 128")
        .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 8");
    let d = tmp("ck-huge");
    std::fs::create_dir_all(&d).unwrap();
    let header = header_only(&d, &huge);
    std::fs::write(d.join("model.safetensors"), header).unwrap();
    fails_before_work(&d, &["model.init", "GiB", "more than the", "use a smaller checkpoint"]);
    // The same checkpoint as the reward model of a small policy: the estimate names reward.init.
    let out = tmp("huge-rm");
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(["run", "scenarios/sentiment.toml", "--quiet", "--threads", "1"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    let o = c.arg("--set").arg(format!("reward.init={}", d.display())).output().unwrap();
    let t = text(&o);
    assert!(!o.status.success() && t.contains("`reward.init`") && t.contains("GiB"), "{t}");
    assert!(t.contains("use a smaller checkpoint") && !out.join("runs").exists(), "{t}");
    for dir in [empty, t5, missing, wrong, small, d, tmp("bad")] {
        std::fs::remove_dir_all(dir).ok();
    }
}

/// A safetensors file with the header of the network `config` describes and no data: enough
/// for every check that reads headers only.
fn header_only(dir: &Path, config: &str) -> Vec<u8> {
    std::fs::write(dir.join("config.json"), config).unwrap();
    // Parse the config through the loader, with a stub weights file so `open` succeeds.
    let stub = Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
    Tensor::write_safetensors(&[("stub", &stub)], dir.join("model.safetensors")).unwrap();
    let cfg = hf::open(dir).unwrap().gpt;
    let shapes: BTreeMap<String, Vec<i64>> = cfg.var_shapes().into_iter().collect();
    let mut offset = 0i64;
    let mut entries = vec![];
    for part in hf::layout(&cfg) {
        let shape = &shapes[&part.name];
        for (i, src) in part.sources.iter().enumerate() {
            let s = match &part.layout {
                hf::Layout::Cat(rows) => [vec![rows[i]], shape[1..].to_vec()].concat(),
                hf::Layout::Transposed => shape.iter().rev().copied().collect(),
                _ => shape.clone(),
            };
            let n: i64 = s.iter().product::<i64>() * 2;
            entries.push(format!(
                "\"{src}\":{{\"dtype\":\"BF16\",\"shape\":{s:?},\"data_offsets\":[{offset},{}]}}",
                offset + n
            ));
            offset += n;
        }
    }
    let header = format!("{{{}}}", entries.join(","));
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes
}

/// `reward.init`: the reward model (and the critic) start from a decoder reward-model
/// checkpoint with its score head, the policy from alignlab's own GPT; the run completes and
/// says where the reward model came from.
#[test]
fn the_reward_model_starts_from_its_own_checkpoint() {
    let out = tmp("rm");
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(["run", "scenarios/sentiment.toml", "--quiet", "--threads", "1"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    c.arg("--set").arg(format!("reward.init={}", fixture("llama-rm").display()));
    for s in TINY.iter().chain(&["model.d_model=32", "model.n_layer=1"]) {
        c.arg("--set").arg(s);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let summary = std::fs::read_to_string(out.join("results/sentiment/summary.csv")).unwrap();
    assert!(
        summary.contains("initialised from") && summary.contains("with its score head"),
        "{summary}"
    );
    // No SFT trunk of the reward model's size was trained: one SFT folder, the policy's.
    assert_eq!(run_dirs(&out, "sft-").len(), 1);
    std::fs::remove_dir_all(&out).ok();
    // A classifier of two labels: refused in one line before any work.
    let two = tmp("rm-two-labels");
    std::fs::create_dir_all(&two).unwrap();
    std::fs::copy(fixture("llama-rm/model.safetensors"), two.join("model.safetensors")).unwrap();
    let config = std::fs::read_to_string(fixture("llama-rm/config.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v["id2label"] = serde_json::json!({"0": "NEG", "1": "POS"});
    v["label2id"] = serde_json::json!({"NEG": 0, "POS": 1});
    std::fs::write(two.join("config.json"), v.to_string()).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(["run", "scenarios/sentiment.toml", "--quiet", "--threads", "1"]);
    c.arg("--results").arg(out.join("results")).arg("--runs").arg(out.join("runs"));
    c.arg("--set").arg(format!("reward.init={}", two.display()));
    let o = c.output().unwrap();
    let t = text(&o);
    assert!(!o.status.success() && t.trim().lines().count() == 1, "{t}");
    assert!(t.contains("reward.init") && t.contains("is a classifier with 2 labels"), "{t}");
    assert!(!out.join("runs").exists(), "work was done");
    std::fs::remove_dir_all(&two).ok();
}

/// `alignlab eval --policy`: pi_SFT exported to Hugging Face format and evaluated as a policy
/// from elsewhere gives pi_SFT's own evaluation, metric for metric and to the last digit (the
/// same weights, prompts and sampling seed; the KL to itself 0); a policy over another
/// vocabulary is refused in one line.
#[test]
fn an_exported_policy_evaluates_as_the_run_evaluated_it() {
    let out = tmp("eval");
    let args = |c: &mut Command| {
        c.arg("--runs").arg(out.join("runs"));
        for s in TINY.iter().chain(&["model.d_model=32", "model.n_layer=1"]) {
            c.arg("--set").arg(s);
        }
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
    c.args(["prepare", "scenarios/sentiment.toml", "--quiet", "--threads", "1"]);
    args(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let hf_dir = out.join("hf");
    export(&run_dirs(&out, "sft-")[0], &hf_dir);
    let eval = |policy: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_alignlab"));
        c.args(["eval", "scenarios/sentiment.toml", "--threads", "1", "--policy"]).arg(policy);
        args(&mut c);
        c.output().unwrap()
    };
    let o = eval(&hf_dir);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout).to_string();
    let mut n = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f[0].starts_with("eval/") && !f[2].is_empty() {
            assert_eq!(f[1], f[2], "{line}");
            n += 1;
        }
    }
    assert!(n >= 5 && table.contains("eval/gold,") && table.contains("eval/kl,0,"), "{table}");
    let o = eval(&fixture("llama"));
    assert!(
        !o.status.success()
            && text(&o).contains("the policy's vocabulary has 320 tokens, the world's 51; fix:"),
        "{}",
        text(&o)
    );
    reward_model_exports(&out);
    std::fs::remove_dir_all(&out).ok();
}

/// The reward-model folder of `out`'s run exports as a scorer (see [`scorer_exports`]).
fn reward_model_exports(out: &Path) {
    scorer_exports(&run_dirs(out, "reward-")[0], &out.join("hf-rm"));
}

/// A reward model's or a critic's folder `dir` exports as a `GPT2ForSequenceClassification`
/// (the score's bias carried by the final LayerNorm's), which, read back, scores the check's
/// sequences as alignlab's model did.
fn scorer_exports(dir: &Path, hf_rm: &Path) {
    export(dir, hf_rm);
    let mut ck = hf::open(hf_rm).unwrap();
    assert_eq!(ck.num_labels, Some(1));
    ck.gpt.arch.as_mut().unwrap().tied = true;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let rm = alignlab::algo::reward::RewardModel::new(&vs.root(), &ck.gpt);
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    assert!(hf::load(&ck, &ck.gpt, &vars, "").unwrap(), "the score head was not loaded");
    let check: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(hf_rm.join("alignlab_check.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let ids = &check["input_ids"];
    let h = tch::no_grad(|| rm.gpt.forward(ids, None, None, None));
    let scores = tch::no_grad(|| rm.head.forward(&h)).select(1, -1);
    let diff = (&scores - &check["scores"]).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "{}: scores differ by {diff}", dir.display());
}
