//! The export of a policy trained on a dataset world whose tokenizer ids are shifted under
//! alignlab's `<pad>`, `<bos>`, `<eos>` (see `world::dataset`). Hugging Face's layout keeps the
//! tokenizer's own ids, and the three become added special tokens after them, so that
//! transformers computes the same distribution on the same text, exactly: world id w >= 3 is
//! the tokenizer's id w - 3, and w < 3 is id V + w (V the tokenizer's ids). `config.json`
//! records the three ids (`alignlab_special_rows`), by which `alignlab eval --policy` reads the
//! export back into the world.

use anyhow::Result;
use std::path::Path;

use super::export_files::{write_json, GenerationConfig, ModelCard, TokenizerConfig};
use super::write_atomic;
use crate::model::tokenizer::Tokenizer;
use crate::tokens::N_SPECIAL;

/// The added tokens' names, for `<pad>`, `<bos>`, `<eos>`.
pub const NAMES: [&str; 3] = ["<|alignlab_pad|>", "<|alignlab_bos|>", "<|alignlab_eos|>"];

/// The Hugging Face id of world id `w` in a world of `vocab` ids.
pub fn hf_id(w: i64, vocab: i64) -> i64 {
    let n = N_SPECIAL as i64;
    if w < n {
        vocab - n + w
    } else {
        w - n
    }
}

/// The world's ids in Hugging Face's order: HF id j is world id `order[j]`.
pub fn order(vocab: i64) -> Vec<i64> {
    (N_SPECIAL as i64..vocab).chain(0..N_SPECIAL as i64).collect()
}

/// World ids to Hugging Face's (-1, a padding mark, kept).
pub fn ids_to_hf(t: &tch::Tensor, vocab: i64) -> tch::Tensor {
    let lut: Vec<i64> = (0..vocab).map(|w| hf_id(w, vocab)).collect();
    let lut = tch::Tensor::from_slice(&lut);
    let flat = t.flatten(0, -1);
    let mapped = lut.index_select(0, &flat.clamp_min(0)).where_self(&flat.ge(0), &flat);
    mapped.view(t.size().as_slice())
}

/// `config.json`, `tokenizer.json` (the run's tokenizer with the three added),
/// `tokenizer_config.json` and `generation_config.json`.
pub fn write_files(run_dir: &Path, card: &ModelCard, out: &Path) -> Result<()> {
    let cfg = &card.gpt;
    let v = cfg.vocab_size;
    let tok = Tokenizer::open(run_dir).map_err(|e| anyhow::anyhow!("{e}; the run folder records the tokenizer since this export exists: rerun the scenario"))?;
    let (json, ids) = tok.json_with_specials(&NAMES);
    let want: Vec<i64> = (0..N_SPECIAL as i64).map(|w| hf_id(w, v)).collect();
    anyhow::ensure!(ids == want, "{}: the tokenizer's ids are not contiguous (the added tokens got {ids:?}, not {want:?}); fix: export from a dataset whose tokenizer has no gaps", run_dir.display());
    write_atomic(&out.join("tokenizer.json"), json.as_bytes())?;
    let [pad, bos, eos] = [want[0], want[1], want[2]];
    let mut config = crate::model::hf::config_json(cfg, bos, eos, pad);
    config["alignlab_special_rows"] = serde_json::json!(want);
    write_json(&out.join("config.json"), &config)?;
    let generation = GenerationConfig {
        bos_token_id: bos,
        eos_token_id: eos,
        pad_token_id: pad,
        suppress_tokens: cfg.suppress.iter().map(|&w| hf_id(w, v)).collect(),
    };
    write_json(&out.join("generation_config.json"), &generation)?;
    let [p, b, e] = NAMES;
    let tok_config = TokenizerConfig {
        tokenizer_class: "PreTrainedTokenizerFast",
        bos_token: b,
        eos_token: e,
        pad_token: p,
        unk_token: None,
        model_max_length: cfg.block_size,
    };
    write_json(&out.join("tokenizer_config.json"), &tok_config)
}
