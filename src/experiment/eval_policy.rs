//! `alignlab eval FILE --policy DIR`: a policy trained anywhere (TRL, or alignlab's own export),
//! in Hugging Face format over the world's vocabulary (what `alignlab export --hf` writes, and
//! what a trainer saves after fine-tuning such an export), evaluated on the scenario's
//! evaluation prompts exactly as alignlab's own methods are: the world's gold reward, the exact
//! KL to pi_SFT (pi_ref), the proxy reward, the win rate, with the evaluation's own sampling
//! seed. pi_SFT's values are printed beside it.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, Tensor};

use super::options::RunOptions;
use super::scenario::Scenario;
use super::shared::with_stages;
use super::stages::{evaluator, sft_evaluation};
use crate::model::{hf, Gpt};

/// The evaluation of the policy in `dir` and pi_SFT's, metric by metric.
pub fn eval_policy(
    sc: &Scenario,
    opts: &RunOptions,
    dir: &Path,
) -> Result<Vec<(String, f64, Option<f64>)>> {
    let ck = hf::open(dir)?;
    // An alignlab export of a shifted vocabulary says where its three specials are.
    let special_rows = sc.model.special_rows.map(|r| ck.alignlab_special_rows.unwrap_or(r));
    // A dataset world with shifted ids reads the tokenizer's rows of any checkpoint of it
    // (its embedding may have spare rows); elsewhere the vocabularies must be the world's.
    let fits = match sc.model.special_rows {
        Some(_) => ck.gpt.vocab_size + crate::tokens::N_SPECIAL as i64 >= sc.model.vocab_size,
        None => ck.gpt.vocab_size == sc.model.vocab_size,
    };
    anyhow::ensure!(
        fits,
        "{}: the policy's vocabulary has {} tokens, the world's {}; fix: evaluate a policy over the world's vocabulary (one `alignlab export --hf` wrote, then trained anywhere)",
        dir.join("config.json").display(),
        ck.gpt.vocab_size,
        sc.model.vocab_size
    );
    // The world's vocabulary and the scenario's block, as a scenario with `init` reads it.
    let mut cfg = hf::network(
        &ck, sc.model.vocab_size, sc.model.block_size, sc.model.precision, special_rows,
    )?;
    cfg.suppress.clone_from(&sc.model.suppress);
    with_stages(sc, opts, |s, _| {
        let vs = nn::VarStore::new(opts.device);
        let policy = Gpt::new(&vs.root(), &cfg);
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        hf::load(&ck, &cfg, &vars, "")?;
        let ev = evaluator(sc, s);
        let sft: BTreeMap<String, f64> = sft_evaluation(sc, s, &ev, opts)?.into_iter().collect();
        let (rows, _) = ev.evaluate(&policy);
        Ok(rows.into_iter().map(|(k, v)| (k.clone(), v, sft.get(&k).copied())).collect())
    })
}

/// The command: evaluate at `seed` (default: the scenario's first), print `metric,policy,sft`
/// and write it to `out` where given; with `frontier`, a results folder, record the policy in
/// its `external.csv` (the report draws those on the frontier plot).
pub fn command(
    sc: &Scenario,
    seed: Option<u64>,
    opts: &RunOptions,
    dir: &Path,
    (out, frontier): (&Option<std::path::PathBuf>, &Option<std::path::PathBuf>),
) -> Result<()> {
    let (out, frontier) = (out.as_deref(), frontier.as_deref());
    if let Some(f) = frontier {
        anyhow::ensure!(
            f.join("eval.csv").exists(),
            "{} has no eval.csv; fix: pass the scenario's results folder (e.g. results/{}) after running it",
            f.display(),
            sc.name
        );
    }
    let seed = seed.unwrap_or(sc.seed);
    let rows = eval_policy(&sc.with_seed(seed), opts, dir)?;
    if let Some(f) = frontier {
        record(f, dir, seed, &rows)?;
    }
    let mut text = String::from("metric,policy,sft\n");
    for (k, v, s) in &rows {
        let s = s.map_or(String::new(), |s| s.to_string());
        text.push_str(&format!("{k},{v},{s}\n"));
    }
    print!("{text}");
    if let Some(out) = out {
        crate::log::write_atomic(out, text.as_bytes())
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// A row of a results folder's `external.csv`: a policy trained elsewhere, evaluated with
/// `--frontier` (the report draws it on the frontier plot, with its 95% interval).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct External {
    /// The policy's folder name.
    pub policy: String,
    pub seed: u64,
    #[serde(with = "crate::log::float_text")]
    pub kl: f64,
    #[serde(with = "crate::log::float_text")]
    pub gold: f64,
    #[serde(with = "crate::log::float_text")]
    pub gold_ci: f64,
    #[serde(with = "crate::log::float_text")]
    pub winrate: f64,
}

/// The policy of folder `dir` at `seed` as a row of `frontier/external.csv`, replacing its
/// earlier row; rows sorted by policy and seed.
fn record(
    frontier: &Path,
    dir: &Path,
    seed: u64,
    rows: &[(String, f64, Option<f64>)],
) -> Result<()> {
    let get = |k: &str| rows.iter().find(|(n, _, _)| n == k).map_or(f64::NAN, |r| r.1);
    let policy = dir.file_name().map_or("policy".into(), |n| n.to_string_lossy().to_string());
    let path = frontier.join("external.csv");
    let mut all: Vec<External> = if path.exists() { crate::log::read_csv(&path)? } else { vec![] };
    all.retain(|e| (e.policy.as_str(), e.seed) != (policy.as_str(), seed));
    let (kl, gold, gold_ci) = (get("eval/kl"), get("eval/gold"), get("eval/gold_ci"));
    all.push(External { policy, seed, kl, gold, gold_ci, winrate: get("eval/winrate") });
    all.sort_by(|a, b| (&a.policy, a.seed).cmp(&(&b.policy, b.seed)));
    crate::log::write_atomic(&path, crate::log::csv_text(&all).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
