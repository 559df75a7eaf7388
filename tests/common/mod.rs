//! Fixtures shared by the test files that train in the tabular world.
#![allow(dead_code)]

use alignlab::world::tabular::{to_rows, tv};
use alignlab::world::{TabularConfig, TabularWorld};
use tch::Tensor;

/// The tabular world of the convergence tests (3 prompts, 3 words, length 2), a random
/// reference table, its probabilities and log-probabilities `[X][R]`.
pub fn tabular() -> (TabularWorld, Tensor, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let w = TabularWorld::new(&TabularConfig { n_prompts: 3, n_words: 3, length: 2 }, 7);
    let reference = w.random_table(1.0, 7);
    let ref_probs = to_rows(&w.table_logprobs(&reference).exp());
    let ref_lp: Vec<Vec<f64>> =
        ref_probs.iter().map(|r| r.iter().map(|p| p.ln()).collect()).collect();
    (w, reference, ref_probs, ref_lp)
}

/// The mean over prompts of the total-variation distance.
pub fn mean_tv(p: &[Vec<f64>], q: &[Vec<f64>]) -> f64 {
    p.iter().zip(q).map(|(a, b)| tv(a, b)).sum::<f64>() / p.len() as f64
}
