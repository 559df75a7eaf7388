//! Encoder classifiers as reward models: tiny random BERT, RoBERTa and DistilBERT
//! `*ForSequenceClassification` checkpoints with their tokenizers (`make fixtures`), scoring a
//! padded batch of texts (empty, unicode, one longer than the positions): logits within 1e-5 of
//! transformers', the same token ids, labels by name or index, and the three reward readings.

use std::path::{Path, PathBuf};

use alignlab::model::encoder::{Classifier, RewardOf};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn texts(dir: &Path) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("texts.json")).unwrap()).unwrap()
}

fn matches_transformers(name: &str) {
    let dir = fixture(name);
    let c = Classifier::open(&dir, "POSITIVE", RewardOf::Logit, Device::Cpu).unwrap();
    let e: std::collections::BTreeMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect();
    let (ids, valid) = c.encode(&texts(&dir), Device::Cpu);
    assert_eq!(
        Vec::<i64>::try_from(ids.view([-1])).unwrap(),
        Vec::<i64>::try_from(e["input_ids"].view([-1])).unwrap(),
        "{name}: ids"
    );
    let logits = c.logits(&ids, &valid);
    let diff = (&logits - &e["logits"]).abs().max().double_value(&[]);
    eprintln!("{name}: max |logits - transformers| = {diff:.2e}");
    assert!(diff <= 1e-5, "{name}: {diff}");
    // Rewards: the POSITIVE logit, and its log-probability and probability.
    let want = e["logits"].select(1, 1);
    let score = |r: RewardOf| {
        Tensor::from_slice(&Classifier::open(&dir, "1", r, Device::Cpu).unwrap().score(
            &texts(&dir),
            3,
            Device::Cpu,
        ))
        .to_kind(Kind::Float)
    };
    assert!((score(RewardOf::Logit) - &want).abs().max().double_value(&[]) <= 1e-5);
    let lp = e["logits"].log_softmax(1, Kind::Float).select(1, 1);
    assert!((score(RewardOf::LogProb) - &lp).abs().max().double_value(&[]) <= 1e-5);
    assert!((score(RewardOf::Prob) - lp.exp()).abs().max().double_value(&[]) <= 1e-5);
}

#[test]
fn bert_matches_transformers() {
    matches_transformers("bert-classifier");
}

#[test]
fn roberta_matches_transformers() {
    matches_transformers("roberta-classifier");
}

#[test]
fn distilbert_matches_transformers() {
    matches_transformers("distilbert-classifier");
}

#[test]
fn a_label_that_does_not_exist_is_refused_with_the_labels() {
    let e = Classifier::open(&fixture("bert-classifier"), "positive", RewardOf::Prob, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("has no label `positive` (its labels: 0 = NEGATIVE, 1 = POSITIVE)")
            && e.contains("fix:"),
        "{e}"
    );
    let e = Classifier::open(&fixture("llama"), "0", RewardOf::Prob, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model_type `llama` is not a supported encoder classifier"), "{e}");
}
