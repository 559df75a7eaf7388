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
    anyhow::ensure!(
        ck.gpt.vocab_size == sc.model.vocab_size,
        "{}: the policy's vocabulary has {} tokens, the world's {}; fix: evaluate a policy over the world's vocabulary (one `alignlab export --hf` wrote, then trained anywhere)",
        dir.join("config.json").display(),
        ck.gpt.vocab_size,
        sc.model.vocab_size
    );
    // The world's vocabulary and the scenario's block, as a scenario with `init` reads it.
    let mut cfg = hf::network(
        &ck,
        sc.model.vocab_size,
        sc.model.block_size,
        sc.model.precision,
        sc.model.special_rows,
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
/// and write it to `out` where given.
pub fn command(
    sc: &Scenario,
    seed: Option<u64>,
    opts: &RunOptions,
    dir: &Path,
    out: Option<&Path>,
) -> Result<()> {
    let rows = eval_policy(&sc.with_seed(seed.unwrap_or(sc.seed)), opts, dir)?;
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
