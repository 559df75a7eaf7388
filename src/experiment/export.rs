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
use std::fmt::Write as _;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

use super::write_atomic;
use crate::model::{self, generate, Gpt, GptConfig, SampleSettings};
use crate::tokens::{BOS, EOS, N_SPECIAL, PAD};

/// What a run folder records beside `model.safetensors`: the network and the vocabulary.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub gpt: GptConfig,
    pub words: Vec<String>,
}

/// Write `model.toml` into a run folder.
pub fn write_card(dir: &Path, gpt: &GptConfig, words: &[String]) -> Result<()> {
    let card = ModelCard { gpt: gpt.clone(), words: words.to_vec() };
    write_atomic(
        &dir.join("model.toml"),
        toml::to_string(&card).expect("the model card serializes").as_bytes(),
    )
}

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
    let ids = |v: &[i64]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let mut s = String::new();
    let mut n = 0;
    for (split, pairs) in [("train", &data.train), ("val", &data.val)] {
        for p in pairs {
            let _ = writeln!(
                s,
                "{{\"prompt\": {}, \"chosen\": {}, \"rejected\": {}, \"prompt_ids\": [{}], \"chosen_ids\": [{}], \"rejected_ids\": [{}], \"split\": \"{split}\", \"gold_chosen\": {}, \"gold_rejected\": {}, \"chosen_truncated\": {}, \"rejected_truncated\": {}}}",
                json_str(&as_text(&p.prompt)?),
                json_str(&format!(" {}", as_text(&p.chosen)?)),
                json_str(&format!(" {}", as_text(&p.rejected)?)),
                ids(&[&[BOS], p.prompt.as_slice()].concat()),
                ids(&p.chosen),
                ids(&p.rejected),
                p.gold_chosen,
                p.gold_rejected,
                p.chosen.last() != Some(&EOS),
                p.rejected.last() != Some(&EOS)
            );
            n += 1;
        }
    }
    write_atomic(out, s.as_bytes())?;
    Ok(n)
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Export the policy of `run_dir` into `out`.
pub fn hf(run_dir: &Path, out: &Path) -> Result<()> {
    let (ckpt, card) = read_card(run_dir)?;
    let mut vs = nn::VarStore::new(Device::Cpu);
    let policy = Gpt::new(&vs.root(), &card.gpt);
    model::load_checkpoint(&mut vs, &ckpt)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_weights(&vs, &card.gpt, out)?;
    write_config(&card, out)?;
    write_check(&policy, &card, out)
}

/// A run folder's checkpoint and its model card, checked against each other.
fn read_card(run_dir: &Path) -> Result<(std::path::PathBuf, ModelCard)> {
    let (ckpt, card_path) = (run_dir.join("model.safetensors"), run_dir.join("model.toml"));
    if !ckpt.exists() {
        bail!("{} has no model.safetensors; fix: pass a finished run folder, e.g. runs/<scenario>/dpo-beta=0.1-<hash>", run_dir.display());
    }
    if !card_path.exists() {
        bail!("{} has no model.toml (run folders record it since this export exists); fix: rerun the scenario so the stage is written again", run_dir.display());
    }
    let text = std::fs::read_to_string(&card_path)
        .with_context(|| format!("cannot read {}", card_path.display()))?;
    let card: ModelCard = toml::from_str(&text).with_context(|| {
        format!("corrupt {}; fix: delete the run folder and rerun", card_path.display())
    })?;
    let cfg = &card.gpt;
    anyhow::ensure!(
        card.words.len() as i64 == cfg.vocab_size,
        "{}: {} words for a vocabulary of {}; fix: delete the run folder and rerun",
        card_path.display(),
        card.words.len(),
        cfg.vocab_size
    );
    Ok((ckpt, card))
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
    let cfg = &card.gpt;
    let config = model::hf::config_json(cfg, BOS, EOS, PAD);
    write_atomic(&out.join("config.json"), config.as_bytes())?;
    // The tokens alignlab never samples (padding, `<bos>`) are suppressed in generation too.
    let suppress: Vec<String> = cfg.suppress.iter().map(i64::to_string).collect();
    let generation = format!(
        "{{\n  \"bos_token_id\": {BOS},\n  \"eos_token_id\": {EOS},\n  \"pad_token_id\": {PAD},\n  \"suppress_tokens\": [{}]\n}}\n",
        suppress.join(", ")
    );
    write_atomic(&out.join("generation_config.json"), generation.as_bytes())?;
    // A WordLevel tokenizer: the world's words split on whitespace; the three special tokens.
    let special: Vec<String> = card.words[..N_SPECIAL]
        .iter()
        .enumerate()
        .map(|(i, w)| format!("    {{\"id\": {i}, \"content\": {}, \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}}", json_str(w)))
        .collect();
    let vocab: Vec<String> =
        card.words.iter().enumerate().map(|(i, w)| format!("{}: {i}", json_str(w))).collect();
    let tokenizer = format!(
        "{{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n{}\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": {{\"type\": \"WhitespaceSplit\"}},\n  \"post_processor\": {},\n  \"decoder\": null,\n  \"model\": {{\"type\": \"WordLevel\", \"vocab\": {{{}}}, \"unk_token\": {}}}\n}}\n",
        special.join(",\n"),
        bos_processor(&card.words[BOS as usize]),
        vocab.join(", "),
        json_str(&card.words[PAD as usize])
    );
    write_atomic(&out.join("tokenizer.json"), tokenizer.as_bytes())?;
    let tok_config = format!(
        "{{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"bos_token\": {},\n  \"eos_token\": {},\n  \"pad_token\": {},\n  \"unk_token\": {},\n  \"model_max_length\": {}\n}}\n",
        json_str(&card.words[BOS as usize]),
        json_str(&card.words[EOS as usize]),
        json_str(&card.words[PAD as usize]),
        json_str(&card.words[PAD as usize]),
        cfg.block_size
    );
    write_atomic(&out.join("tokenizer_config.json"), tok_config.as_bytes())?;

    Ok(())
}

/// The tokenizer's post-processor: `<bos>` before the text, as alignlab feeds every sequence
/// (so `tokenizer(prompt)` gives alignlab's prompt ids, and TRL's prompt + completion too).
fn bos_processor(bos: &str) -> String {
    let b = json_str(bos);
    format!(
        "{{\"type\": \"TemplateProcessing\", \"single\": [{{\"SpecialToken\": {{\"id\": {b}, \"type_id\": 0}}}}, {{\"Sequence\": {{\"id\": \"A\", \"type_id\": 0}}}}], \"pair\": [{{\"SpecialToken\": {{\"id\": {b}, \"type_id\": 0}}}}, {{\"Sequence\": {{\"id\": \"A\", \"type_id\": 0}}}}, {{\"Sequence\": {{\"id\": \"B\", \"type_id\": 0}}}}], \"special_tokens\": {{{b}: {{\"id\": {b}, \"ids\": [{BOS}], \"tokens\": [{b}]}}}}}}"
    )
}

/// What transformers must reproduce: logits of a few prompts and greedy continuations.
fn write_check(policy: &Gpt, card: &ModelCard, out: &Path) -> Result<()> {
    let cfg = &card.gpt;
    let n_words = cfg.vocab_size - N_SPECIAL as i64;
    let (rows, len) = (3i64, 5i64);
    let ids: Vec<i64> = (0..rows)
        .flat_map(|r| {
            std::iter::once(BOS)
                .chain((1..len).map(move |j| N_SPECIAL as i64 + (r * 7 + j * 3) % n_words))
        })
        .collect();
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
    let check = out.join("alignlab_check.safetensors");
    Tensor::write_safetensors(
        &[("input_ids", prompt), ("logits", logits), ("greedy", greedy)],
        &check,
    )
    .with_context(|| format!("cannot write {}", check.display()))?;
    Ok(())
}
