//! Real tokenizers: alignlab's ids equal those transformers' fast tokenizer gives on 300
//! strings (sentences, unicode, whitespace runs, the empty string, a 500-character word and a
//! long paragraph) for the three schemes published checkpoints use: byte-level BPE (GPT-2,
//! Llama 3, Qwen2), SentencePiece-style BPE with byte fallback (Llama 2, Mistral) and
//! WordPiece (BERT). Made by `make fixtures` (scripts/fixtures.py).

use std::path::{Path, PathBuf};

use alignlab::model::tokenizer::{Template, Tokenizer};

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers").join(name)
}

fn cases(name: &str) -> Vec<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(dir(name).join("cases.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn equal_to_transformers(name: &str) {
    let tok = Tokenizer::open(&dir(name)).unwrap();
    let cases = cases(name);
    assert!(cases.len() >= 300);
    for c in &cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(text), ids(&c["ids"]), "{name}: {text:?}");
        assert_eq!(tok.encode_with(text, true), ids(&c["ids_special"]), "{name}: {text:?}");
        assert_eq!(tok.decode(&ids(&c["ids"])), c["decoded"].as_str().unwrap(), "{name}: {text:?}");
    }
}

#[test]
fn byte_level_bpe_equals_transformers() {
    equal_to_transformers("bytelevel");
    let tok = Tokenizer::open(&dir("bytelevel")).unwrap();
    assert_eq!((tok.bos, tok.eos, tok.pad), (Some(0), Some(0), Some(0)));
}

#[test]
fn sentencepiece_style_bpe_equals_transformers() {
    equal_to_transformers("metaspace");
    let tok = Tokenizer::open(&dir("metaspace")).unwrap();
    assert_eq!((tok.bos, tok.eos, tok.pad), (Some(1), Some(2), Some(0)));
}

#[test]
fn wordpiece_equals_transformers() {
    equal_to_transformers("wordpiece");
}

#[test]
fn a_tokenizer_larger_than_the_embedding_is_refused() {
    let tok = Tokenizer::open(&dir("metaspace")).unwrap();
    let e = tok.check_fits(&dir("metaspace"), 320).unwrap_err().to_string();
    assert!(e.contains("tokenizer.json") && e.contains("embedding has 320 rows"), "{e}");
    tok.check_fits(&dir("metaspace"), tok.vocab_size()).unwrap();
}

#[test]
fn a_folder_without_a_tokenizer_is_refused() {
    let e = Tokenizer::open(&dir("none")).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json: does not exist; fix:"), "{e}");
}

#[test]
fn prompt_templates_hold_the_prompt_once() {
    let t = Template::new("Human: {prompt}\n\nAssistant:").unwrap();
    assert_eq!(t.apply("hi {prompt}"), "Human: hi {prompt}\n\nAssistant:");
    assert!(Template::new("Human: \n\nAssistant:").unwrap_err().contains("has no {prompt}"));
    assert!(Template::new("{prompt}{prompt}").unwrap_err().contains("2 times"));
}
