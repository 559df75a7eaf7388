//! Models: a GPT with its hidden states exposed, a scalar head, the KV cache, sampling.

pub mod arch;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod encoder;
pub mod gpt;
pub mod heads;
pub mod hf;
pub mod judge;
mod layers;
pub mod sample;
pub mod tokenizer;

pub use cache::KvCache;
pub use gpt::{Gpt, GptConfig, ModelConfig, Rows};
pub use heads::ScalarHead;
pub use sample::{generate, left_pad, sampling_logprobs, Rollout, SampleConfig, SampleSettings};

use anyhow::{Context, Result};
use std::path::Path;
use tch::nn::VarStore;

/// Save a VarStore as safetensors, atomically (temp file + rename).
pub fn save_checkpoint(vs: &VarStore, path: &Path) -> Result<()> {
    let _p = crate::profile::span("checkpoint_io");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = crate::log::partial_path(path);
    if let Err(e) = vs.save(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot write checkpoint {}: {} (is the disk full?); fix: free space on that disk or pass --runs a folder on another one", path.display(), e.to_string().lines().next().unwrap_or(""));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move checkpoint into {}", path.display()))?;
    Ok(())
}

/// Load a safetensors checkpoint into a VarStore whose variables already exist.
pub fn load_checkpoint(vs: &mut VarStore, path: &Path) -> Result<()> {
    let _p = crate::profile::span("checkpoint_io");
    vs.load(path).with_context(|| {
        format!(
            "cannot read checkpoint {}; fix: delete it (and its run folder) so the stage is recomputed",
            path.display()
        )
    })?;
    // A checkpoint written by a diverged run (or damaged on disk) loads fine and fails much
    // later, inside sampling: check every weight now.
    let mut vars: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in vars {
        let finite = tch::no_grad(|| t.isfinite().all().int64_value(&[]) == 1);
        anyhow::ensure!(finite, "checkpoint {} has non-finite weights in `{name}`; fix: delete it (and its run folder) so the stage is recomputed", path.display());
    }
    Ok(())
}
