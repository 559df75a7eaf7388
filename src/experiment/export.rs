//! `alignlab export RUN_DIR --hf OUT`: a trained policy as a Hugging Face `transformers`
//! checkpoint of its family: alignlab's own GPT and a GPT-2 checkpoint's as GPT-2
//! (`GPT2LMHeadModel`), a Pythia checkpoint's as GPT-NeoX, a Llama-family checkpoint's as
//! Llama or Qwen2. Only names and layouts change (`model::hf::layout`).
//!
//! Writes `config.json`, `model.safetensors`, `tokenizer.json` (a WordLevel tokenizer of the
//! world's words, split on whitespace), `tokenizer_config.json`, `generation_config.json`, and
//! `alignlab_check.safetensors`: a few prompts with alignlab's own logits and greedy
//! continuations, which `baselines/hf/check.py` compares against `transformers`.

use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

pub use super::export_files::{read_card, write_card, write_tokenizer, ModelCard};
use super::export_shifted as shifted;

use super::export_files::check_ids;
use super::write_atomic;
use crate::model::{self, generate, Gpt, GptConfig, SampleSettings};
use crate::tokens::{BOS, EOS, PAD};

/// Write `words.toml` (the vocabulary, by id) into a preference-data folder.
pub fn write_words(dir: &Path, words: &[String]) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Words<'a> {
        words: &'a [String],
    }
    write_atomic(
        &dir.join("words.toml"),
        toml::to_string(&Words { words }).expect("words serialize").as_bytes(),
    )
}

/// `alignlab export-prefs PREFS_DIR OUT.jsonl`: the pairs of a preference-data run folder
/// (`runs/<scenario>/prefs-<hash>`, the pairs every method of that seed trained on) in TRL's
/// format: one JSON object per line with `prompt`, `chosen`, `rejected` as text (words split by
/// spaces; each response with a leading space, since TRL joins prompt and response as strings;
/// without the final `<eos>`, which TRL appends itself), the same as the token ids alignlab
/// trains on (the prompt's with `<bos>`, which the exported tokenizer adds; the responses' with
/// `<eos>`), the split (`train` or `val`), the gold rewards, and whether each response was cut
/// at the length limit without `<eos>` (TRL appends `<eos>` to every response, so its ids of a
/// truncated one end with an `<eos>` alignlab's do not).
pub fn prefs(dir: &Path, out: &Path) -> Result<usize> {
    /// One line of the file.
    #[derive(serde::Serialize)]
    struct PrefRow<'a> {
        prompt: String,
        chosen: String,
        rejected: String,
        prompt_ids: Vec<i64>,
        chosen_ids: &'a [i64],
        rejected_ids: &'a [i64],
        split: &'a str,
        gold_chosen: f64,
        gold_rejected: f64,
        chosen_truncated: bool,
        rejected_truncated: bool,
    }
    let (pairs_path, words_path) = (dir.join("pairs.txt"), dir.join("words.toml"));
    if !pairs_path.exists() {
        bail!("{} has no pairs.txt; fix: pass a preference-data run folder, e.g. runs/<scenario>/prefs-<hash>", dir.display());
    }
    if !words_path.exists() {
        bail!("{} has no words.toml (preference folders record it since this export exists); fix: rerun the scenario's stages (alignlab prepare)", dir.display());
    }
    #[derive(serde::Deserialize)]
    struct Words {
        words: Vec<String>,
    }
    let text = std::fs::read_to_string(&words_path)
        .with_context(|| format!("cannot read {}", words_path.display()))?;
    let words: Words = toml::from_str(&text).with_context(|| {
        format!("corrupt {}; fix: delete the folder and rerun", words_path.display())
    })?;
    let data = crate::data::PrefData::load(&pairs_path)?;
    let word = |i: i64| {
        words.words.get(i as usize).cloned().with_context(|| {
            format!(
                "{}: token {i} is past the vocabulary; fix: delete the folder and rerun",
                pairs_path.display()
            )
        })
    };
    let as_text = |ids: &[i64]| -> Result<String> {
        Ok(ids
            .iter()
            .filter(|&&t| t != EOS)
            .map(|&t| word(t))
            .collect::<Result<Vec<_>>>()?
            .join(" "))
    };
    let mut s = String::new();
    let mut n = 0;
    for (split, pairs) in [("train", &data.train), ("val", &data.val)] {
        for p in pairs {
            let row = PrefRow {
                prompt: as_text(&p.prompt)?,
                chosen: format!(" {}", as_text(&p.chosen)?),
                rejected: format!(" {}", as_text(&p.rejected)?),
                prompt_ids: [&[BOS], p.prompt.as_slice()].concat(),
                chosen_ids: &p.chosen,
                rejected_ids: &p.rejected,
                split,
                gold_chosen: p.gold_chosen,
                gold_rejected: p.gold_rejected,
                chosen_truncated: p.chosen.last() != Some(&EOS),
                rejected_truncated: p.rejected.last() != Some(&EOS),
            };
            s += &(serde_json::to_string(&row)? + "\n");
            n += 1;
        }
    }
    write_atomic(out, s.as_bytes())?;
    Ok(n)
}

/// Export the policy of `run_dir` into `out` (a reward model's folder: the reward model, see
/// `export_rm`).
pub fn hf(run_dir: &Path, out: &Path) -> Result<()> {
    let (ckpt, card) = read_card(run_dir)?;
    let names = model::hf::header_shapes(&ckpt)?;
    if names.iter().any(|(n, _)| n == "score.weight") {
        return super::export_rm::reward_model(&ckpt, &card, out);
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let policy = Gpt::new(&vs.root(), &card.gpt);
    model::load_checkpoint(&mut vs, &ckpt)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_weights(&vs, &card.gpt, out)?;
    if card.gpt.special_rows.is_some() {
        super::export_shifted::write_files(run_dir, &card, out)?;
    } else {
        write_config(&card, out)?;
    }
    write_check(&policy, &card, out)
}

/// The weights under the checkpoint family's names and layouts (GPT-2's Conv1D transposed,
/// the Llama family's q/k/v and gate/up apart, GPT-NeoX's q/k/v interleaved by head).
fn write_weights(vs: &nn::VarStore, cfg: &GptConfig, out: &Path) -> Result<()> {
    let vars: std::collections::BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let tensors =
        model::hf::tensors_out(cfg, &vars).map_err(|e| anyhow::anyhow!("the model {e}"))?;
    let tmp = out.join("model.partial.safetensors");
    Tensor::write_safetensors(&tensors, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out.join("model.safetensors"))?;
    Ok(())
}

/// `config.json`, `generation_config.json` and the tokenizer's files.
fn write_config(card: &ModelCard, out: &Path) -> Result<()> {
    let config = model::hf::config_json(&card.gpt, BOS, EOS, PAD);
    super::export_files::write_json(&out.join("config.json"), &config)?;
    write_tokenizer(card, out)
}

/// What transformers must reproduce: logits of a few prompts and greedy continuations.
fn write_check(policy: &Gpt, card: &ModelCard, out: &Path) -> Result<()> {
    let cfg = &card.gpt;
    let (rows, len) = (3i64, 5i64);
    let ids = check_ids(cfg.vocab_size, rows, len, (7, 3));
    let prompt = Tensor::from_slice(&ids).view([rows, len]);
    let valid = prompt.ones_like().to_kind(Kind::Bool);
    let new = (cfg.block_size - len).clamp(0, 12);
    let (logits, greedy) = tch::no_grad(|| {
        // The model's own logits (transformers knows nothing of the suppression).
        let logits = policy.raw_logits(&policy.forward(&prompt, None, None, None));
        let ro = generate(
            policy,
            &prompt,
            &valid,
            &SampleSettings { temperature: 0.0, top_k: 0, max_new_tokens: new, use_cache: true },
        );
        // Positions past `<eos>` are padding: -1 marks them for the check.
        let greedy = ro.response.where_self(&ro.mask.gt(0.0), &Tensor::full_like(&ro.response, -1));
        (logits, greedy)
    });
    let (prompt, logits, greedy) = if cfg.special_rows.is_some() {
        // In the tokenizer's ids, logits in its order; no text (a BPE's text need not give
        // back ids drawn at random).
        let order = Tensor::from_slice(&shifted::order(cfg.vocab_size));
        let to_hf = |t: &Tensor| shifted::ids_to_hf(t, cfg.vocab_size);
        (to_hf(&prompt), logits.index_select(-1, &order), to_hf(&greedy))
    } else {
        let texts: Vec<String> = (0..rows as usize)
            .map(|r| {
                ids[r * len as usize + 1..(r + 1) * len as usize]
                    .iter()
                    .map(|&i| card.words[i as usize].clone())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        write_atomic(&out.join("alignlab_check.txt"), (texts.join("\n") + "\n").as_bytes())?;
        (prompt, logits, greedy)
    };
    let check = out.join("alignlab_check.safetensors");
    Tensor::write_safetensors(
        &[("input_ids", prompt), ("logits", logits), ("greedy", greedy)],
        &check,
    )
    .with_context(|| format!("cannot write {}", check.display()))
}
