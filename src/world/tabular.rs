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
use crate::draw::{derive_seed, Rng};
use crate::model::Gpt;

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
        let reward =
            (0..cfg.n_prompts).map(|_| responses.iter().map(|_| rng.uniform()).collect()).collect();
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
        let words = logits
            .narrow(2, N_SPECIAL as i64, self.cfg.n_words as i64)
            .log_softmax(-1, Kind::Float);
        let targets = seqs.narrow(1, 2, l) - N_SPECIAL as i64;
        let lp = words.gather(-1, &targets.unsqueeze(-1), false).squeeze_dim(-1).sum_dim_intlist(
            -1,
            false,
            Kind::Float,
        );
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

/// A tabular autoregressive policy: one free logit vector over the response words for each
/// (prompt, response prefix), `[n_prompts, n_nodes, n_words]`. It can represent any
/// distribution over responses, so the optima of the DPO paper are reachable exactly.
impl TabularWorld {
    /// Number of distinct response prefixes (lengths 0 to length-1).
    pub fn n_nodes(&self) -> usize {
        (0..self.cfg.length).map(|k| self.cfg.n_words.pow(k as u32)).sum()
    }

    /// For every response and position: the index of its prefix node and its word, `[R, L]` each.
    pub fn node_and_word_index(&self, device: Device) -> (Tensor, Tensor) {
        let w = self.cfg.n_words as i64;
        let (mut nodes, mut words) = (Vec::new(), Vec::new());
        for r in &self.responses {
            let (mut offset, mut within, mut width) = (0i64, 0i64, 1i64);
            for &t in r {
                let word = t - N_SPECIAL as i64;
                nodes.push(offset + within);
                words.push(word);
                offset += width;
                width *= w;
                within = within * w + word;
            }
        }
        let shape = [self.responses.len() as i64, self.cfg.length as i64];
        (
            Tensor::from_slice(&nodes).view(shape).to_device(device),
            Tensor::from_slice(&words).view(shape).to_device(device),
        )
    }

    /// log pi(y|x) of every response under a table of logits: `[n_prompts, n_responses]`.
    pub fn table_logprobs(&self, logits: &Tensor) -> Tensor {
        let (nodes, words) = self.node_and_word_index(logits.device());
        let (x, r, l, w) = (
            self.cfg.n_prompts as i64,
            self.responses.len() as i64,
            self.cfg.length as i64,
            self.cfg.n_words as i64,
        );
        let per_node = logits.log_softmax(-1, Kind::Float); // [X, N, W]
        let picked = per_node.index_select(1, &nodes.view([-1])).view([x, r, l, w]);
        let idx = words.view([1, r, l, 1]).expand([x, r, l, 1], false);
        picked.gather(-1, &idx, false).squeeze_dim(-1).sum_dim_intlist(-1, false, Kind::Float)
    }

    /// A reproducible, non-uniform reference table: logits drawn N(0, scale^2).
    pub fn random_table(&self, scale: f64, seed: u64) -> Tensor {
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/reference"));
        let n = self.cfg.n_prompts * self.n_nodes() * self.cfg.n_words;
        let v: Vec<f32> = (0..n).map(|_| (rng.normal() * scale) as f32).collect();
        Tensor::from_slice(&v).view([
            self.cfg.n_prompts as i64,
            self.n_nodes() as i64,
            self.cfg.n_words as i64,
        ])
    }
}

/// A `[X, R]` tensor as rows of f64.
pub fn to_rows(t: &Tensor) -> Vec<Vec<f64>> {
    let t = t.to_kind(Kind::Double).to_device(Device::Cpu);
    (0..t.size()[0]).map(|i| Vec::<f64>::try_from(t.get(i)).expect("a 2-d tensor")).collect()
}

impl TabularWorld {
    /// Sample `n` rollouts from a table of logits with the host RNG: (prompt `[B]`, node
    /// indices `[B, L]`, words `[B, L]`, response index into `responses` per row).
    pub fn sample_table(
        &self,
        logits: &Tensor,
        n: usize,
        rng: &mut Rng,
    ) -> (Vec<usize>, Vec<i64>, Vec<i64>, Vec<usize>) {
        self.sample_rows(logits, n, rng, |rng| rng.range(0, self.cfg.n_prompts - 1))
    }

    /// [`TabularWorld::sample_table`] for the given prompts, in order.
    pub fn sample_table_for(
        &self,
        logits: &Tensor,
        xs: &[usize],
        rng: &mut Rng,
    ) -> (Vec<usize>, Vec<i64>, Vec<i64>, Vec<usize>) {
        let mut next = xs.iter().copied();
        self.sample_rows(logits, xs.len(), rng, |_| next.next().unwrap())
    }

    /// `n` rollouts, the prompt of each from `prompt(rng)` just before its words.
    fn sample_rows(
        &self,
        logits: &Tensor,
        n: usize,
        rng: &mut Rng,
        mut prompt: impl FnMut(&mut Rng) -> usize,
    ) -> (Vec<usize>, Vec<i64>, Vec<i64>, Vec<usize>) {
        let probs =
            to_rows(&logits.detach().softmax(-1, Kind::Double).view([-1, self.cfg.n_words as i64]));
        let (nn, w) = (self.n_nodes(), self.cfg.n_words);
        let (mut xs, mut nodes, mut words, mut idx) =
            (Vec::with_capacity(n), Vec::new(), Vec::new(), Vec::with_capacity(n));
        for _ in 0..n {
            let x = prompt(rng);
            let (mut offset, mut within, mut width, mut response) =
                (0usize, 0usize, 1usize, 0usize);
            for _ in 0..self.cfg.length {
                let node = offset + within;
                let word = rng.categorical(&probs[x * nn + node]);
                nodes.push(node as i64);
                words.push(word as i64);
                response = response * w + word;
                offset += width;
                width *= w;
                within = within * w + word;
            }
            xs.push(x);
            idx.push(response);
        }
        (xs, nodes, words, idx)
    }

    /// Per-token log-probs `[B, L]` of sampled (prompt, nodes, words) under a table.
    pub fn table_token_logprobs(
        &self,
        logits: &Tensor,
        xs: &Tensor,
        nodes: &Tensor,
        words: &Tensor,
    ) -> Tensor {
        let nn = self.n_nodes() as i64;
        let flat = logits.log_softmax(-1, Kind::Float).view([-1, self.cfg.n_words as i64]); // [X*N, W]
        let rows = xs.unsqueeze(1) * nn + nodes; // [B, L]
        let picked =
            flat.index_select(0, &rows.view([-1])).view([rows.size()[0], rows.size()[1], -1]);
        picked.gather(-1, &words.unsqueeze(-1), false).squeeze_dim(-1)
    }
}
