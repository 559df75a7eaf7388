//! A checkpoint's own tokenizer: `tokenizer.json` through Hugging Face's `tokenizers` crate
//! (the Rust implementation transformers' fast tokenizers call), with BOS, EOS and padding
//! taken from `tokenizer_config.json` and the model's `config.json` rather than fixed ids, and
//! a prompt template.

use serde_json::Value;
use std::path::Path;

use super::checkpoint::{err, HfError};

/// A loaded tokenizer and its special tokens.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: Option<i64>,
    pub eos: Option<i64>,
    pub pad: Option<i64>,
    pub unk: Option<i64>,
}

impl Tokenizer {
    /// `dir/tokenizer.json`, its special tokens named by `dir/tokenizer_config.json` (or, where
    /// it names none, the ids of `dir/config.json`).
    pub fn open(dir: &Path) -> Result<Tokenizer, HfError> {
        let file = dir.join("tokenizer.json");
        if !file.exists() {
            return Err(err(&file, "does not exist", "pass a folder with the checkpoint's tokenizer.json (a fast tokenizer; save one with tokenizer.save_pretrained(dir) in transformers)"));
        }
        let inner = tokenizers::Tokenizer::from_file(&file).map_err(|e| {
            err(&file, format!("cannot be read as a tokenizer ({e})"), "download it again")
        })?;
        let json = |name: &str| -> Option<Value> {
            serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
        };
        let (tok_config, config) = (json("tokenizer_config.json"), json("config.json"));
        let special = |key: &str| -> Option<i64> {
            // A token named in tokenizer_config.json (a string, or {"content": ...}).
            let named = tok_config.as_ref().and_then(|c| c.get(key)).and_then(|v| {
                v.as_str().or_else(|| v.get("content").and_then(Value::as_str)).map(String::from)
            });
            if let Some(name) = named {
                return inner.token_to_id(&name).map(i64::from);
            }
            let id = config.as_ref().and_then(|c| c.get(format!("{key}_id")))?;
            id.as_i64().or_else(|| id.as_array()?.first()?.as_i64())
        };
        Ok(Tokenizer {
            bos: special("bos_token"),
            eos: special("eos_token"),
            pad: special("pad_token"),
            unk: special("unk_token"),
            inner,
        })
    }

    /// Ids of `text`, without the special tokens a post-processor would add.
    pub fn encode(&self, text: &str) -> Vec<i64> {
        self.encode_with(text, false)
    }

    /// Ids of `text`; with `special`, as transformers' `tokenizer(text)` gives them (the
    /// post-processor's BOS or CLS/SEP added).
    pub fn encode_with(&self, text: &str, special: bool) -> Vec<i64> {
        match self.inner.encode(text, special) {
            Ok(e) => e.get_ids().iter().map(|&i| i64::from(i)).collect(),
            // The tokenizers crate fails only on a malformed tokenizer, which `open` rejects.
            Err(e) => panic!("tokenizer failed on {text:?}: {e}"),
        }
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner.decode(&ids, true).unwrap_or_default()
    }

    /// The ids of its special tokens (added tokens marked special: `<|endoftext|>`, `<s>`...).
    pub fn special_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .inner
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| i64::from(id))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The token of `id` as the vocabulary writes it (`Ġthe`), or "" for an unknown id.
    pub fn id_to_token(&self, id: i64) -> String {
        u32::try_from(id).ok().and_then(|i| self.inner.id_to_token(i)).unwrap_or_default()
    }

    /// One more than its largest id: the rows an embedding needs for it.
    pub fn rows(&self) -> i64 {
        self.inner.get_vocab(true).values().copied().max().map_or(0, |m| i64::from(m) + 1)
    }

    /// Its `tokenizer.json`.
    pub fn json(&self) -> String {
        self.inner.to_string(false).expect("a loaded tokenizer serializes")
    }

    /// Its `tokenizer.json` with `names` added as special tokens after its ids, and their ids.
    pub fn json_with_specials(&self, names: &[&str]) -> (String, Vec<i64>) {
        let mut t = self.inner.clone();
        let added: Vec<tokenizers::AddedToken> =
            names.iter().map(|n| tokenizers::AddedToken::from(n.to_string(), true)).collect();
        let _ = t.add_special_tokens(added);
        let ids = names.iter().map(|n| t.token_to_id(n).map_or(-1, i64::from)).collect();
        (t.to_string(false).expect("a loaded tokenizer serializes"), ids)
    }

    /// Tokens the tokenizer can produce (its vocabulary with the added tokens).
    pub fn vocab_size(&self) -> i64 {
        self.inner.get_vocab_size(true) as i64
    }

    /// The tokenizer's ids all index a row of an embedding of `rows`.
    pub fn check_fits(&self, dir: &Path, rows: i64) -> Result<(), HfError> {
        let top = self.rows();
        if top > rows {
            return Err(err(
                &dir.join("tokenizer.json"),
                format!("has ids up to {} but the model's embedding has {rows} rows", top - 1),
                "use the tokenizer that came with the checkpoint",
            ));
        }
        Ok(())
    }
}

/// A prompt template: `{prompt}` marks where the prompt goes, e.g.
/// `"Human: {prompt}\n\nAssistant:"`.
#[derive(Clone, Debug)]
pub struct Template(String);

impl Template {
    /// `text`, which must hold `{prompt}` exactly once.
    pub fn new(text: &str) -> Result<Template, String> {
        match text.matches("{prompt}").count() {
            1 => Ok(Template(text.to_string())),
            0 => Err(format!("{text:?} has no {{prompt}}")),
            n => Err(format!("{text:?} has {{prompt}} {n} times")),
        }
    }

    pub fn apply(&self, prompt: &str) -> String {
        self.0.replacen("{prompt}", prompt, 1)
    }
}
