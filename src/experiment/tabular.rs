//! `alignlab tabular`: the tabular world's convergence to pi* (every response enumerated, so
//! TV(pi, pi*) and the dispreferred responses' mass are exact).
//!
//! - Bradley-Terry labels (temperature 1, 2M pairs per prompt from pi_ref): DPO and IPO at
//!   beta 0.1 and 1, full-batch on the pair counts; PPO-GT with the fixed KL coefficient beta.
//!   DPO and PPO-GT both target pi* proportional to pi_ref exp(r / beta); IPO targets another
//!   regularised optimum, so its TV to pi* need not vanish.
//! - Deterministic labels (200k pairs): DPO drives the worst response's mass to zero, IPO keeps it.
//!
//! Writes `tabular.csv` (series,method,beta,labels,step,metric,value) and the world itself,
//! `tabular_world.csv` (prompt,response,text,reward,ref_prob,pi_star_beta=0.1,pi_star_beta=1),
//! into the output folder;
//! `alignlab tabular` then draws `tabular.{png,svg}` from the rows (`report::plot::tabular`).

use anyhow::Result;
use std::path::Path;

use super::write_atomic;
use crate::algo::ppo::KlControl;
use crate::experiment::scenario::{Labels, PrefLoss};
use crate::world::tabular::{to_rows, tv};
use crate::world::{TabularConfig, TabularWorld};

/// One row of `tabular.csv`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct TabularRecord {
    pub series: String,
    pub method: String,
    #[serde(with = "crate::log::float_text")]
    pub beta: f64,
    pub labels: String,
    pub step: usize,
    pub metric: String,
    #[serde(with = "crate::log::float_text")]
    pub value: f64,
}

/// One row of `tabular_unseen.csv`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct UnseenRecord {
    pub loss: String,
    pub setting: String,
    pub pairs: usize,
    #[serde(with = "crate::log::float_text")]
    pub unseen_responses: f64,
    #[serde(with = "crate::log::float_text")]
    pub mass_ref: f64,
    #[serde(with = "crate::log::float_text")]
    pub mass: f64,
}

/// One row of `tabular_world.csv`: a response of a prompt, its reward, its probability under
/// pi_ref and under pi* = pi_ref exp(r / beta) / Z at the two betas the study uses.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct WorldRecord {
    pub prompt: usize,
    pub response: usize,
    /// The response's words, space-separated.
    pub text: String,
    #[serde(with = "crate::log::float_text")]
    pub reward: f64,
    #[serde(with = "crate::log::float_text")]
    pub ref_prob: f64,
    #[serde(rename = "pi_star_beta=0.1", with = "crate::log::float_text")]
    pub pi_star_beta_0_1: f64,
    #[serde(rename = "pi_star_beta=1", with = "crate::log::float_text")]
    pub pi_star_beta_1: f64,
}

/// `tabular_world.csv`: the world the study ran in, every (prompt, response) with its reward,
/// pi_ref's probability and pi*'s at beta 0.1 and 1, so that pi*, the KL and the limits can be
/// recomputed outside alignlab.
fn write_world(
    out: &Path,
    w: &TabularWorld,
    (ref_probs, ref_lp): (&[Vec<f64>], &[Vec<f64>]),
) -> Result<()> {
    let (low, high) = (w.optimal(ref_lp, 0.1), w.optimal(ref_lp, 1.0));
    let mut records = Vec::new();
    for (x, probs) in ref_probs.iter().enumerate() {
        for (r, &p) in probs.iter().enumerate() {
            let words = w.responses[r].iter().map(|&t| w.vocab.words[t as usize].as_str());
            records.push(WorldRecord {
                prompt: x,
                response: r,
                text: words.collect::<Vec<_>>().join(" "),
                reward: w.reward[x][r],
                ref_prob: p,
                pi_star_beta_0_1: low[x][r],
                pi_star_beta_1: high[x][r],
            });
        }
    }
    std::fs::create_dir_all(out)?;
    write_atomic(&out.join("tabular_world.csv"), crate::log::csv_text(&records).as_bytes())
}

/// One traced value.
#[derive(Clone, Debug)]
pub struct TraceRow {
    pub series: String,
    pub method: &'static str,
    pub beta: f64,
    pub labels: &'static str,
    pub step: usize,
    pub metric: &'static str,
    pub value: f64,
}

/// A point of a traced series: its name, (method, labels, metric), beta and (step, value).
fn trace(
    series: &str,
    (method, labels, metric): (&'static str, &'static str, &'static str),
    beta: f64,
    (step, value): (usize, f64),
) -> TraceRow {
    TraceRow { series: series.to_string(), method, beta, labels, step, metric, value }
}

/// `tabular.csv`: every traced point.
fn write_trace(out: &Path, rows: &[TraceRow]) -> Result<()> {
    let records: Vec<TabularRecord> = rows
        .iter()
        .map(|r| TabularRecord {
            series: r.series.clone(),
            method: r.method.into(),
            beta: r.beta,
            labels: r.labels.into(),
            step: r.step,
            metric: r.metric.into(),
            value: r.value,
        })
        .collect();
    std::fs::create_dir_all(out)?;
    write_atomic(&out.join("tabular.csv"), crate::log::csv_text(&records).as_bytes())
}

pub fn convergence(out: &Path, seed: u64) -> Result<Vec<TraceRow>> {
    let w = TabularWorld::new(&TabularConfig { n_prompts: 3, n_words: 3, length: 2 }, seed);
    let reference = w.random_table(1.0, seed);
    let ref_probs = to_rows(&w.table_logprobs(&reference).exp());
    let ref_lp: Vec<Vec<f64>> =
        ref_probs.iter().map(|r| r.iter().map(|p| p.ln()).collect()).collect();
    write_world(out, &w, (&ref_probs, &ref_lp))?;
    let mut rows = Vec::new();
    let bt = w.sample_pair_counts(
        &ref_probs,
        2_000_000,
        Labels::BradleyTerry { temperature: 1.0 },
        seed + 11,
    );
    let det = w.sample_pair_counts(&ref_probs, 200_000, Labels::Deterministic, seed + 3);
    let n_x = w.cfg.n_prompts;
    let worst: Vec<usize> = (0..n_x)
        .map(|x| {
            (0..w.n_responses()).min_by(|&a, &b| w.reward[x][a].total_cmp(&w.reward[x][b])).unwrap()
        })
        .collect();
    for beta in [0.1, 1.0] {
        let target = w.optimal(&ref_lp, beta);
        let mean_tv = |p: &[Vec<f64>]| {
            p.iter().zip(&target).map(|(a, b)| tv(a, b)).sum::<f64>() / p.len() as f64
        };
        for (method, kind) in [
            ("dpo", PrefLoss::Dpo { beta }),
            ("ipo", PrefLoss::Ipo { beta, length_normalize: false }),
        ] {
            let series = format!("{} beta={beta}", method.to_uppercase());
            w.fit_preference_traced(&reference, &bt, kind, (1500, 0.05), 25, |step, p| {
                rows.push(trace(
                    &series,
                    (method, "bradley_terry", "tv_to_optimal"),
                    beta,
                    (step, mean_tv(p)),
                ));
            });
            let series = format!("{} beta={beta} (deterministic labels)", method.to_uppercase());
            w.fit_preference_traced(&reference, &det, kind, (3000, 0.05), 50, |step, p| {
                let mass = (0..n_x).map(|x| p[x][worst[x]]).fold(0.0, f64::max);
                rows.push(trace(
                    &series,
                    (method, "deterministic", "worst_mass"),
                    beta,
                    (step, mass),
                ));
            });
        }
        let mut cfg = TabularWorld::ppo_config();
        cfg.kl = KlControl::Fixed { coef: beta };
        let series = format!("PPO-GT beta={beta}");
        w.fit_ppo_gold_traced(&reference, beta, &cfg, seed, 10, |step, p| {
            rows.push(trace(
                &series,
                ("ppo_gt", "gold", "tv_to_optimal"),
                beta,
                (step, mean_tv(p)),
            ));
        });
        rows.push(trace(
            &format!("pi_ref beta={beta}"),
            ("reference", "-", "tv_to_optimal"),
            beta,
            (0, mean_tv(&ref_probs)),
        ));
    }
    write_trace(out, &rows)?;
    Ok(rows)
}

/// Likelihood displacement, exactly: each preference loss trained from pi_ref on few pairs
/// (`n_pairs` per prompt from pi_ref, deterministic labels), and the probability mass it leaves
/// on the responses that occur in no pair of their prompt (mean over prompts), before and
/// after. Writes `tabular_unseen.csv` (loss,setting,pairs,unseen_responses,mass_ref,mass).
pub fn unseen_mass(out: &Path, seed: u64) -> Result<Vec<(String, String, f64, f64)>> {
    let w = TabularWorld::new(&TabularConfig { n_prompts: 3, n_words: 3, length: 2 }, seed);
    let reference = w.random_table(1.0, seed);
    let ref_probs = to_rows(&w.table_logprobs(&reference).exp());
    let n_pairs = 4;
    let counts = w.sample_pair_counts(&ref_probs, n_pairs, Labels::Deterministic, seed + 5);
    let unseen: Vec<Vec<usize>> = counts
        .iter()
        .map(|c| {
            (0..c.len())
                .filter(|&r| (0..c.len()).all(|o| c[r][o] == 0.0 && c[o][r] == 0.0))
                .collect()
        })
        .collect();
    let mass = |p: &[Vec<f64>]| {
        unseen.iter().enumerate().map(|(x, u)| u.iter().map(|&r| p[x][r]).sum::<f64>()).sum::<f64>()
            / p.len() as f64
    };
    let n_unseen = unseen.iter().map(|u| u.len()).sum::<usize>() as f64 / unseen.len() as f64;
    let (beta, eps) = (0.1, 0.1);
    let losses = [
        PrefLoss::Dpo { beta },
        PrefLoss::Ipo { beta, length_normalize: false },
        PrefLoss::Cdpo { beta, label_smoothing: eps },
        PrefLoss::Robust { beta, label_smoothing: eps },
        PrefLoss::Hinge { beta },
        PrefLoss::Kto { beta, lambda_d: 1.0, lambda_u: 1.0 },
        PrefLoss::ExoPair { beta, label_smoothing: 1e-3 },
        PrefLoss::NcaPair { beta },
        PrefLoss::Simpo { beta: 2.0, gamma: 0.5 },
        PrefLoss::Orpo { lambda: 1.0, nll: Default::default() },
    ];
    let mut rows = Vec::new();
    let mut records = Vec::new();
    for loss in losses {
        let fitted = w.fit_preference(&reference, &counts, loss, 2000, 0.05);
        let (m0, m) = (mass(&ref_probs), mass(&fitted));
        records.push(UnseenRecord {
            loss: loss.name(),
            setting: loss.setting().replace(';', " "),
            pairs: n_pairs,
            unseen_responses: n_unseen,
            mass_ref: m0,
            mass: m,
        });
        rows.push((loss.name(), loss.setting(), m0, m));
    }
    std::fs::create_dir_all(out)?;
    write_atomic(&out.join("tabular_unseen.csv"), crate::log::csv_text(&records).as_bytes())?;
    Ok(rows)
}

/// `alignlab tabular`'s lines: each series' last value.
pub fn last_values(rows: &[TraceRow]) -> String {
    let last = |r: &&TraceRow| {
        rows.iter().filter(|q| q.series == r.series).map(|q| q.step).max() == Some(r.step)
    };
    rows.iter()
        .filter(last)
        .map(|r| format!("{:40} step {:5}  {} = {:.3e}\n", r.series, r.step, r.metric, r.value))
        .collect()
}
