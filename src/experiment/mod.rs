//! Running a scenario: stages, run folders, cached checkpoints, results.
//!
//! `runs/<scenario>/<hash>/` holds checkpoints and logs of a stage, keyed by the hash of every
//! setting the stage depends on, so a stage whose settings did not change is reused.
//! `results/<scenario>/` holds the resolved scenario and the CSV outputs.

mod metrics;

pub use metrics::{write_atomic, Metrics, Row};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tch::{nn, Device};

use crate::algo::sft::{self, SeqData};
use crate::eval::{mean_ci, Stat};
use crate::model::{self, generate, left_pad, Gpt, SampleSettings};
use crate::rng::derive_seed;
use crate::scenario::{Scenario, WorldConfig};
use crate::world::SentimentWorld;

pub struct RunOptions {
    pub results_root: PathBuf,
    pub runs_root: PathBuf,
    pub device: Device,
    pub show_progress: bool,
}

/// Short content hash naming a stage's run folder.
pub fn stage_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// The built world of a scenario.
pub enum World {
    Sentiment(SentimentWorld),
}

impl World {
    pub fn build(sc: &Scenario) -> World {
        match &sc.world {
            WorldConfig::Sentiment(c) => World::Sentiment(SentimentWorld::new(c, sc.seed)),
        }
    }
}

/// What `alignlab run` prints and writes at the end.
pub struct Summary {
    pub rows: Vec<(String, String, String)>,
}

impl Summary {
    fn add(&mut self, stage: &str, metric: &str, value: String) {
        self.rows.push((stage.into(), metric.into(), value));
    }

    pub fn print(&self) {
        let w0 = self.rows.iter().map(|r| r.0.len()).max().unwrap_or(5).max(5);
        let w1 = self.rows.iter().map(|r| r.1.len()).max().unwrap_or(6).max(6);
        println!("{:w0$}  {:w1$}  value", "stage", "metric");
        for (a, b, c) in &self.rows {
            println!("{a:w0$}  {b:w1$}  {c}");
        }
    }

    fn to_csv(&self) -> String {
        let mut s = String::from("stage,metric,value\n");
        for (a, b, c) in &self.rows {
            s.push_str(&format!("{a},{b},\"{c}\"\n"));
        }
        s
    }
}

fn progress(show: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}")
            .unwrap()
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// SFT stage: train pi_SFT or reuse the cached checkpoint. Returns the model's VarStore.
pub fn sft_stage(sc: &Scenario, world: &SentimentWorld, opts: &RunOptions, metrics: &mut Metrics, summary: &mut Summary) -> Result<(nn::VarStore, Gpt)> {
    let key = format!("sft|{:?}|{:?}|{:?}|seed={}", sc.world, sc.model, sc.sft, sc.seed);
    let dir = opts.runs_root.join(&sc.name).join(format!("sft-{}", stage_hash(&key)));
    let ckpt = dir.join("model.safetensors");
    let metrics_path = dir.join("metrics.csv");
    let mut vs = nn::VarStore::new(opts.device);
    tch::manual_seed(derive_seed(sc.seed, "sft/init") as i64);
    let gpt = Gpt::new(&vs.root(), &sc.model);
    let val = SeqData::new(&world.val, opts.device);
    let true_nll = world.val_nll_per_token();
    if ckpt.exists() && metrics_path.exists() {
        model::load_checkpoint(&mut vs, &ckpt)?;
        let text = std::fs::read_to_string(&metrics_path).with_context(|| format!("cannot read {}", metrics_path.display()))?;
        let cached = Metrics::from_csv(&text).with_context(|| format!("corrupt {}; fix: delete {}", metrics_path.display(), dir.display()))?;
        let val_nll = cached.last("sft/nll/val").unwrap_or(f64::NAN);
        summary.add("sft", "cached checkpoint", dir.display().to_string());
        summary.add("sft", "val NLL/token", format!("{val_nll:.4} (true process {true_nll:.4}, ratio {:.4})", val_nll / true_nll));
        metrics.extend(cached);
        return Ok((vs, gpt));
    }
    let train = SeqData::new(&world.train, opts.device);
    let mut m = Metrics::default();
    let pb = progress(opts.show_progress, sc.sft.steps as u64, "sft");
    let report = sft::train(&gpt, &vs, &train, &val, &sc.sft, sc.seed, "sft", &mut m, |step, loss| {
        pb.set_position(step as u64 + 1);
        if step % 10 == 0 {
            pb.set_message(format!("loss {loss:.4}"));
        }
    })?;
    pb.finish_and_clear();
    m.push("sft", "", sc.seed, sc.sft.steps, "sft/nll/true_process", true_nll);
    model::save_checkpoint(&vs, &ckpt)?;
    write_atomic(&metrics_path, m.to_csv().as_bytes())?;
    summary.add("sft", "val NLL/token", format!("{:.4} (true process {true_nll:.4}, ratio {:.4})", report.val_nll, report.val_nll / true_nll));
    summary.add("sft", "train NLL/token (EMA)", format!("{:.4}", report.train_nll));
    summary.add("sft", "train tokens/s", format!("{:.0} ({:.1} s)", report.tokens / report.seconds, report.seconds));
    summary.add("sft", "checkpoint", ckpt.display().to_string());
    metrics.extend(m);
    Ok((vs, gpt))
}

/// Gold reward of a policy's samples on the evaluation prompts (common random numbers).
pub fn sample_gold(sc: &Scenario, world: &SentimentWorld, gpt: &Gpt, device: Device) -> Stat {
    let (prompt, valid) = left_pad(&world.eval_prompts, device);
    let settings = SampleSettings {
        temperature: sc.sample.temperature,
        top_k: sc.sample.top_k as i64,
        max_new_tokens: sc.sample.max_new_tokens as i64,
        use_cache: true,
    };
    tch::manual_seed(derive_seed(sc.seed, "eval/sampling") as i64);
    let ro = generate(gpt, &prompt, &valid, &settings);
    let gold: Vec<f64> = world
        .eval_prompts
        .iter()
        .zip(ro.response_rows())
        .map(|(p, r)| world.gold_reward(&[p.as_slice(), r.as_slice()].concat()))
        .collect();
    mean_ci(&gold)
}

/// `alignlab run`: every stage that exists, then results and a summary.
pub fn run(sc: &Scenario, opts: &RunOptions) -> Result<Summary> {
    let mut summary = Summary { rows: vec![] };
    let mut metrics = Metrics::default();
    let t0 = std::time::Instant::now();
    let world = World::build(sc);
    let World::Sentiment(world) = &world;
    summary.add("world", "vocabulary", format!("{} tokens", world.vocab.size()));
    summary.add("world", "reviews", format!("{} train, {} val", world.train.len(), world.val.len()));
    let (_vs, gpt) = sft_stage(sc, world, opts, &mut metrics, &mut summary)?;
    let gold = sample_gold(sc, world, &gpt, opts.device);
    summary.add("sft", "gold reward (eval prompts)", gold.to_string());
    metrics.push("sft", "", sc.seed, sc.sft.steps, "eval/gold", gold.mean);
    let out = opts.results_root.join(&sc.name);
    write_results(&out, sc, &metrics, &summary)?;
    summary.add("run", "wall time", format!("{:.1} s", t0.elapsed().as_secs_f64()));
    summary.add("run", "results", out.display().to_string());
    Ok(summary)
}

fn write_results(out: &Path, sc: &Scenario, metrics: &Metrics, summary: &Summary) -> Result<()> {
    write_atomic(&out.join("scenario.resolved.toml"), sc.resolved_toml.as_bytes())?;
    write_atomic(&out.join("metrics.csv"), metrics.to_csv().as_bytes())?;
    write_atomic(&out.join("summary.csv"), summary.to_csv().as_bytes())?;
    Ok(())
}
