//! The files an export writes beside the weights, and the run folder's record it reads:
//! the model card (`model.toml`), the tokenizer over the world's words (with `<bos>` added by
//! its post-processor), `generation_config.json`.

use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
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

/// `generation_config.json`, `tokenizer.json` and `tokenizer_config.json`.
pub fn write_tokenizer(card: &ModelCard, out: &Path) -> Result<()> {
    let cfg = &card.gpt;
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

pub(super) fn json_str(s: &str) -> String {
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
