//! The tabular world: small enough to enumerate every response, so expected reward, KL and the
//! optimal policy are exact.
//!
//! A prompt is one prompt word; a response is exactly `length` words from a `n_words` alphabet
//! (n_words^length responses per prompt). The reward r(x, y) is drawn uniformly in [0, 1] per
//! (prompt, response) from the seed. For any reference policy and beta, the KL-regularised
//! optimum is pi*(y|x) = pi_ref(y|x) exp(r(x,y)/beta) / Z(x) (DPO paper, Eq. 4).
//!
//! A policy's distribution over responses is the product of its next-token distributions
//! restricted to the response words (the other tokens are masked), so it sums to one exactly.

use tch::{Device, Kind, Tensor};

use super::{names, Vocab, BOS, N_SPECIAL};
use crate::model::Gpt;
use crate::rng::{derive_seed, Rng};

#[derive(Clone, Debug, PartialEq)]
pub struct TabularConfig {
    pub n_prompts: usize,
    pub n_words: usize,
    pub length: usize,
}

pub struct TabularWorld {
    pub cfg: TabularConfig,
    pub vocab: Vocab,
    /// Every response, in a fixed order (`[n_responses][length]` token ids).
    pub responses: Vec<Vec<i64>>,
    /// reward[x][i]: gold reward of response i to prompt x.
    pub reward: Vec<Vec<f64>>,
}

const WORDS: &[&str] = &["ra", "re", "ri", "ro", "ru", "sa", "se", "si"];
const PROMPTS: &[&str] = &["alpha", "beta", "gamma", "delta", "omega"];

impl TabularWorld {
    pub fn new(cfg: &TabularConfig, seed: u64) -> TabularWorld {
        let mut words = names(WORDS, cfg.n_words);
        words.extend(names(PROMPTS, cfg.n_prompts));
        let vocab = Vocab::new(words);
        let mut responses = vec![vec![]];
        for _ in 0..cfg.length {
            responses = responses
                .into_iter()
                .flat_map(|r: Vec<i64>| {
                    (0..cfg.n_words).map(move |w| {
                        let mut r = r.clone();
                        r.push((N_SPECIAL + w) as i64);
                        r
                    })
                })
                .collect();
        }
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/reward"));
        let reward = (0..cfg.n_prompts).map(|_| responses.iter().map(|_| rng.uniform()).collect()).collect();
        TabularWorld { cfg: cfg.clone(), vocab, responses, reward }
    }

    /// The token of prompt x.
    pub fn prompt_token(&self, x: usize) -> i64 {
        (N_SPECIAL + self.cfg.n_words + x) as i64
    }

    pub fn n_responses(&self) -> usize {
        self.responses.len()
    }

    /// Every `<bos> x y` sequence, `[n_prompts * n_responses, 2 + length]`, prompt-major.
    pub fn all_sequences(&self, device: Device) -> Tensor {
        let mut flat = Vec::new();
        for x in 0..self.cfg.n_prompts {
            for r in &self.responses {
                flat.push(BOS);
                flat.push(self.prompt_token(x));
                flat.extend(r);
            }
        }
        let rows = (self.cfg.n_prompts * self.responses.len()) as i64;
        Tensor::from_slice(&flat).view([rows, 2 + self.cfg.length as i64]).to_device(device)
    }

    /// log pi(y|x) of every response under a model: `[n_prompts, n_responses]`, each row a
    /// normalised distribution (next-token softmax restricted to the response words).
    pub fn logprobs(&self, model: &Gpt, seqs: &Tensor) -> Tensor {
        let l = self.cfg.length as i64;
        let hidden = model.forward(&seqs.narrow(1, 0, 1 + l), None, None, None); // predicts y_1..y_L
        let logits = model.logits(&hidden.narrow(1, 1, l)); // [R, L, V]
        let words = logits.narrow(2, N_SPECIAL as i64, self.cfg.n_words as i64).log_softmax(-1, Kind::Float);
        let targets = seqs.narrow(1, 2, l) - N_SPECIAL as i64;
        let lp = words.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1).sum_dim_intlist(-1, false, Kind::Float);
        lp.view([self.cfg.n_prompts as i64, self.responses.len() as i64])
    }

    /// The optimum pi* proportional to pi_ref exp(r / beta), as probabilities `[X][R]`.
    pub fn optimal(&self, ref_logprobs: &[Vec<f64>], beta: f64) -> Vec<Vec<f64>> {
        ref_logprobs
            .iter()
            .zip(&self.reward)
            .map(|(lp, r)| {
                let logits: Vec<f64> = lp.iter().zip(r).map(|(l, r)| l + r / beta).collect();
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                logits.iter().map(|l| (l - m).exp() / z).collect()
            })
            .collect()
    }
}

/// Exact KL(p || q) of two distributions over the same responses.
pub fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).filter(|(p, _)| **p > 0.0).map(|(p, q)| p * (p / q).ln()).sum()
}

/// Total variation distance.
pub fn tv(p: &[f64], q: &[f64]) -> f64 {
    0.5 * p.iter().zip(q).map(|(a, b)| (a - b).abs()).sum::<f64>()
}

/// Exact expected reward of a policy.
pub fn expected(p: &[f64], r: &[f64]) -> f64 {
    p.iter().zip(r).map(|(a, b)| a * b).sum()
}
