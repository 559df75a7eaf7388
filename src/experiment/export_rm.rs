//! `alignlab export RUN_DIR --hf OUT` of a reward-model folder: the reward model as a Hugging
//! Face `*ForSequenceClassification` checkpoint of its family with one output (`score.weight`),
//! which scores a sequence at its last token as alignlab's does.
//!
//! transformers' score head has no bias; alignlab's has one. It is carried exactly by the final
//! LayerNorm's bias: score = w . (LN(x) + delta) with w . delta = b, delta = b w / |w|^2. A
//! family with RMSNorm (no bias to carry it) is refused.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

use super::export_files::{write_tokenizer, ModelCard};
use crate::algo::reward::RewardModel;
use crate::model::{self, arch::Family};
use crate::tokens::{BOS, EOS, PAD};

pub fn reward_model(ckpt: &Path, card: &ModelCard, out: &Path) -> Result<()> {
    // The LM head is not part of a reward model.
    let mut cfg = card.gpt.clone();
    let mut arch = cfg.arch();
    arch.tied = true;
    cfg.arch = Some(arch.clone());
    if arch.rms_norm {
        bail!("{}: this reward model's final norm is an RMSNorm, which cannot carry its score's bias into transformers' bias-free score head; fix: export a reward model of a LayerNorm family (GPT-2, GPT-NeoX)", ckpt.display());
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let rm = RewardModel::new(&vs.root(), &cfg);
    model::load_checkpoint(&mut vs, ckpt)?;
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let (w, b) = (vars["score.weight"].shallow_clone(), vars["score.bias"].shallow_clone());
    let mut tensors =
        model::hf::tensors_out(&cfg, &vars).map_err(|e| anyhow::anyhow!("the reward model {e}"))?;
    // Fold the bias into the final LayerNorm's.
    let ln_f = match arch.family {
        Family::Gpt2 => "transformer.ln_f.bias",
        Family::GptNeox => "gpt_neox.final_layer_norm.bias",
        Family::Llama => unreachable!("RMSNorm refused above"),
    };
    let delta = tch::no_grad(|| &w.view([-1]) * (&b / w.square().sum(Kind::Float)));
    for (name, t) in tensors.iter_mut() {
        if name == ln_f {
            *t = tch::no_grad(|| &*t + &delta);
        }
    }
    tensors.push(("score.weight".into(), w.detach().copy()));
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let tmp = out.join("model.partial.safetensors");
    Tensor::write_safetensors(&tensors, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out.join("model.safetensors"))?;
    write_config(&cfg, out)?;
    write_tokenizer(card, out)?;
    write_check(&rm, &cfg, out)
}

/// `config.json`: the family's `*ForSequenceClassification` with one label.
fn write_config(cfg: &model::GptConfig, out: &Path) -> Result<()> {
    let mut v = model::hf::config_json(cfg, BOS, EOS, PAD);
    let lm = v["architectures"][0].as_str().unwrap_or("").to_string();
    let cls = lm
        .replace("LMHeadModel", "ForSequenceClassification")
        .replace("ForCausalLM", "ForSequenceClassification");
    v["architectures"] = serde_json::json!([cls]);
    v["num_labels"] = serde_json::json!(1);
    v["id2label"] = serde_json::json!({"0": "LABEL_0"});
    v["label2id"] = serde_json::json!({"LABEL_0": 0});
    super::export_files::write_json(&out.join("config.json"), &v)
}

/// What transformers must reproduce: alignlab's scores of a few sequences at their last token.
fn write_check(rm: &RewardModel, cfg: &model::GptConfig, out: &Path) -> Result<()> {
    let (rows, len) = (3i64, 9i64);
    let ids = super::export_files::check_ids(cfg.vocab_size, rows, len, (5, 7));
    let input = Tensor::from_slice(&ids).view([rows, len]);
    let scores = tch::no_grad(|| {
        rm.head.forward(&rm.gpt.forward(&input, None, None, None)).select(1, len - 1).contiguous()
    });
    let check = out.join("alignlab_check.safetensors");
    Tensor::write_safetensors(&[("input_ids", input), ("scores", scores)], &check)
        .with_context(|| format!("cannot write {}", check.display()))?;
    Ok(())
}
