//! The files an export writes beside the weights, and the run folder's record it reads:
//! the model card (`model.toml`), the tokenizer over the world's words (with `<bos>` added by
//! its post-processor), `generation_config.json`.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;

use super::write_atomic;
use crate::model::GptConfig;
use crate::tokens::{BOS, EOS, N_SPECIAL, PAD};

/// What a run folder records beside `model.safetensors`: the network and the vocabulary.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub gpt: GptConfig,
    pub words: Vec<String>,
}

/// Write `model.toml` into a run folder, and a real tokenizer's `tokenizer.json` where the
/// world has one (a dataset world's: what its export writes).
pub fn write_card(dir: &Path, gpt: &GptConfig, vocab: &crate::world::Vocab) -> Result<()> {
    let card = ModelCard { gpt: gpt.clone(), words: vocab.words.clone() };
    if let Some(t) = vocab.tokenizer() {
        write_atomic(&dir.join("tokenizer.json"), t.json().as_bytes())?;
    }
    write_atomic(
        &dir.join("model.toml"),
        toml::to_string(&card).expect("the model card serializes").as_bytes(),
    )
}

/// A run folder's checkpoint and its model card, checked against each other.
pub fn read_card(run_dir: &Path) -> Result<(std::path::PathBuf, ModelCard)> {
    let (ckpt, card_path) = (run_dir.join("model.safetensors"), run_dir.join("model.toml"));
    if !ckpt.exists() {
        bail!("{} has no model.safetensors, so it holds no finished model; fix: pass a finished method run's folder (runs/<scenario>/dpo-beta=0.1-<hash>), a reward model's (runs/<scenario>/reward-<hash>) or a PPO run's critic (runs/<scenario>/ppo-<...>/critic)", run_dir.display());
    }
    if !card_path.exists() {
        bail!("{} has a model.safetensors but no model.toml (the network and vocabulary an export needs), so it was written by an alignlab older than the export; fix: move the folder away and rerun its scenario (a folder that exists is read from the cache, not written again)", run_dir.display());
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

/// `generation_config.json`: the special tokens, and those generation must never emit.
#[derive(serde::Serialize)]
pub(super) struct GenerationConfig {
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    pub pad_token_id: i64,
    pub suppress_tokens: Vec<i64>,
}

/// `tokenizer_config.json`: the tokenizer's class, its special tokens and its length.
#[derive(serde::Serialize)]
pub(super) struct TokenizerConfig<'a> {
    pub tokenizer_class: &'static str,
    pub bos_token: &'a str,
    pub eos_token: &'a str,
    pub pad_token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unk_token: Option<&'a str>,
    pub model_max_length: i64,
}

/// Write `value` to `path` as pretty JSON with a final newline.
pub(super) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("JSON serializes")? + "\n";
    write_atomic(path, text.as_bytes())
}

/// `generation_config.json`, `tokenizer.json` and `tokenizer_config.json`.
pub fn write_tokenizer(card: &ModelCard, out: &Path) -> Result<()> {
    let cfg = &card.gpt;
    // The tokens alignlab never samples (padding, `<bos>`) are suppressed in generation too.
    let generation = GenerationConfig {
        bos_token_id: BOS,
        eos_token_id: EOS,
        pad_token_id: PAD,
        suppress_tokens: cfg.suppress.clone(),
    };
    write_json(&out.join("generation_config.json"), &generation)?;
    // A WordLevel tokenizer: the world's words split on whitespace; the three special tokens.
    let special: Vec<Value> = card.words[..N_SPECIAL]
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({"id": i, "content": w, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let vocab: serde_json::Map<String, Value> =
        card.words.iter().enumerate().map(|(i, w)| (w.clone(), json!(i))).collect();
    let pad = &card.words[PAD as usize];
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": special,
        "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": bos_processor(&card.words[BOS as usize]), "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": pad},
    });
    write_json(&out.join("tokenizer.json"), &tokenizer)?;
    let tok_config = TokenizerConfig {
        tokenizer_class: "PreTrainedTokenizerFast",
        bos_token: &card.words[BOS as usize],
        eos_token: &card.words[EOS as usize],
        pad_token: pad,
        unk_token: Some(pad),
        model_max_length: cfg.block_size,
    };
    write_json(&out.join("tokenizer_config.json"), &tok_config)
}

/// The tokenizer's post-processor: `<bos>` before the text, as alignlab feeds every sequence
/// (so `tokenizer(prompt)` gives alignlab's prompt ids, and TRL's prompt + completion too).
fn bos_processor(bos: &str) -> Value {
    let special = json!({"SpecialToken": {"id": bos, "type_id": 0}});
    let seq = |id: &str| json!({"Sequence": {"id": id, "type_id": 0}});
    json!({
        "type": "TemplateProcessing",
        "single": [special, seq("A")],
        "pair": [special, seq("A"), seq("B")],
        "special_tokens": {bos: {"id": bos, "ids": [BOS], "tokens": [bos]}},
    })
}

/// `rows` fixed sequences of `len` tokens for an export's check: `<bos>`, then words
/// `(r * a + j * b) mod` the world's word count (`(a, b)` varies the pattern).
pub(super) fn check_ids(vocab: i64, rows: i64, len: i64, (a, b): (i64, i64)) -> Vec<i64> {
    let n_words = vocab - N_SPECIAL as i64;
    (0..rows)
        .flat_map(|r| {
            std::iter::once(BOS)
                .chain((1..len).map(move |j| N_SPECIAL as i64 + (r * a + j * b) % n_words))
        })
        .collect()
}
