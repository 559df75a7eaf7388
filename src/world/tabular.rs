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

use tch::nn::OptimizerConfig;

use super::{names, Vocab, BOS, N_SPECIAL};
use crate::algo::dpo::preference_loss;
use crate::algo::ppo::{gae, kl_per_token, policy_loss, token_rewards, value_loss, whiten, KlEstimator, PpoConfig};
use crate::model::Gpt;
use crate::scenario::{Labels, PrefLoss};
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

    /// The PPO settings of the tabular convergence runs: large batches, no clipping of
    /// gradients, tabular learning rates; `kl` is replaced by the fixed beta of the run.
    pub fn ppo_config() -> PpoConfig {
        PpoConfig {
            iterations: 300,
            rollout_batch: 512,
            minibatch_size: 128,
            ppo_epochs: 4,
            lr: 0.05,
            vf_lr: 0.1,
            clip_coef: 0.2,
            vf_clip: 10.0,
            vf_coef: 1.0,
            gamma: 1.0,
            gae_lambda: 0.95,
            kl: crate::algo::ppo::KlControl::Fixed { coef: 0.0 },
            kl_estimator: KlEstimator::K1,
            missing_eos_penalty: 0.0,
            score_norm: false,
            whiten_advantages: true,
            grad_clip: 1e9,
            temperature: 1.0,
            eval_every: 1000,
        }
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
        (Tensor::from_slice(&nodes).view(shape).to_device(device), Tensor::from_slice(&words).view(shape).to_device(device))
    }

    /// log pi(y|x) of every response under a table of logits: `[n_prompts, n_responses]`.
    pub fn table_logprobs(&self, logits: &Tensor) -> Tensor {
        let (nodes, words) = self.node_and_word_index(logits.device());
        let (x, r, l, w) = (self.cfg.n_prompts as i64, self.responses.len() as i64, self.cfg.length as i64, self.cfg.n_words as i64);
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
        Tensor::from_slice(&v).view([self.cfg.n_prompts as i64, self.n_nodes() as i64, self.cfg.n_words as i64])
    }

    /// Sample `n_pairs` preference pairs per prompt, both responses drawn independently from
    /// `policy` (probabilities `[X][R]`), labelled by `labels` on the gold reward. Returns the
    /// counts `[X][chosen][rejected]` (pairs of a response with itself are dropped).
    pub fn sample_pair_counts(&self, policy: &[Vec<f64>], n_pairs: usize, labels: Labels, seed: u64) -> Vec<Vec<Vec<f64>>> {
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/pairs"));
        let r = self.responses.len();
        let cdfs: Vec<Vec<f64>> = policy
            .iter()
            .map(|p| {
                let mut acc = 0.0;
                p.iter().map(|v| {
                    acc += v;
                    acc
                }).collect()
            })
            .collect();
        let draw = |cdf: &Vec<f64>, u: f64| cdf.partition_point(|&c| c < u * cdf[cdf.len() - 1]).min(cdf.len() - 1);
        (0..self.cfg.n_prompts)
            .map(|x| {
                let mut counts = vec![vec![0.0; r]; r];
                for _ in 0..n_pairs {
                    let (a, b) = (draw(&cdfs[x], rng.uniform()), draw(&cdfs[x], rng.uniform()));
                    if a == b {
                        continue;
                    }
                    let (ra, rb) = (self.reward[x][a], self.reward[x][b]);
                    let a_wins = match labels {
                        Labels::Deterministic => ra > rb,
                        Labels::BradleyTerry { temperature } => rng.bernoulli(1.0 / (1.0 + (-(ra - rb) / temperature).exp())),
                    };
                    let (w, l) = if a_wins { (a, b) } else { (b, a) };
                    counts[w][l] += 1.0;
                }
                counts
            })
            .collect()
    }

    /// Train a tabular policy, initialised at `reference` (logits), on pair `counts` with a
    /// DPO-family loss: full-batch Adam on the count-weighted mean of [`preference_loss`] over
    /// every (chosen, rejected) cell, which is exactly the loss over the sampled pairs.
    /// Returns the trained policy's probabilities `[X][R]`.
    pub fn fit_preference(&self, reference: &Tensor, counts: &[Vec<Vec<f64>>], kind: PrefLoss, beta: f64, steps: usize, lr: f64) -> Vec<Vec<f64>> {
        self.fit_preference_traced(reference, counts, kind, beta, steps, lr, usize::MAX, |_, _| {})
    }

    /// [`TabularWorld::fit_preference`], calling `trace(step, probabilities)` every `every`
    /// steps (and at step 0).
    #[allow(clippy::too_many_arguments)]
    pub fn fit_preference_traced(&self, reference: &Tensor, counts: &[Vec<Vec<f64>>], kind: PrefLoss, beta: f64, steps: usize, lr: f64, every: usize, mut trace: impl FnMut(usize, &[Vec<f64>])) -> Vec<Vec<f64>> {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let table = vs.root().var_copy("table", reference);
        let mut opt = tch::nn::Adam::default().build(&vs, lr).expect("Adam on a tabular policy");
        let (x, r) = (self.cfg.n_prompts as i64, self.responses.len() as i64);
        let flat: Vec<f32> = counts.iter().flatten().flatten().map(|&c| c as f32).collect();
        let weights = Tensor::from_slice(&flat).view([x, r, r]);
        let total = weights.sum(Kind::Float);
        let ref_lp = tch::no_grad(|| self.table_logprobs(reference));
        let pair = |lp: &Tensor| (lp.unsqueeze(2).expand([x, r, r], false), lp.unsqueeze(1).expand([x, r, r], false));
        let (ref_chosen, ref_rejected) = pair(&ref_lp);
        for step in 0..steps {
            if step % every == 0 {
                trace(step, &tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp())));
            }
            let lp = self.table_logprobs(&table);
            let (chosen, rejected) = pair(&lp);
            let out = preference_loss(kind, beta, &chosen, &rejected, &ref_chosen, &ref_rejected);
            let loss = (out.losses * &weights).sum(Kind::Float) / &total;
            opt.backward_step(&loss);
        }
        let probs = tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp()));
        trace(steps, &probs);
        probs
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
    pub fn sample_table(&self, logits: &Tensor, n: usize, rng: &mut Rng) -> (Vec<usize>, Vec<i64>, Vec<i64>, Vec<usize>) {
        let probs = to_rows(&logits.detach().softmax(-1, Kind::Double).view([-1, self.cfg.n_words as i64]));
        let (nn, w) = (self.n_nodes(), self.cfg.n_words);
        let (mut xs, mut nodes, mut words, mut idx) = (Vec::with_capacity(n), Vec::new(), Vec::new(), Vec::with_capacity(n));
        for _ in 0..n {
            let x = rng.range(0, self.cfg.n_prompts - 1);
            let (mut offset, mut within, mut width, mut response) = (0usize, 0usize, 1usize, 0usize);
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
    pub fn table_token_logprobs(&self, logits: &Tensor, xs: &Tensor, nodes: &Tensor, words: &Tensor) -> Tensor {
        let nn = self.n_nodes() as i64;
        let flat = logits.log_softmax(-1, Kind::Float).view([-1, self.cfg.n_words as i64]); // [X*N, W]
        let rows = xs.unsqueeze(1) * nn + nodes; // [B, L]
        let picked = flat.index_select(0, &rows.view([-1])).view([rows.size()[0], rows.size()[1], -1]);
        picked.gather(-1, &words.unsqueeze(-1), false).squeeze_dim(-1)
    }

    /// PPO with the gold reward and a fixed per-token k1 KL penalty `beta`, on a tabular policy
    /// (initialised at `reference`) and a tabular critic (one value per prompt and prefix),
    /// using the same loss functions as the language-model PPO. The stationary point of this
    /// objective is pi* proportional to pi_ref exp(r / beta). Returns the policy `[X][R]`.
    pub fn fit_ppo_gold(&self, reference: &Tensor, beta: f64, cfg: &PpoConfig, seed: u64) -> Vec<Vec<f64>> {
        self.fit_ppo_gold_traced(reference, beta, cfg, seed, usize::MAX, |_, _| {})
    }

    /// [`TabularWorld::fit_ppo_gold`], calling `trace(iteration, probabilities)` every `every`
    /// iterations (and at 0).
    pub fn fit_ppo_gold_traced(&self, reference: &Tensor, beta: f64, cfg: &PpoConfig, seed: u64, every: usize, mut trace: impl FnMut(usize, &[Vec<f64>])) -> Vec<Vec<f64>> {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let table = vs.root().var_copy("table", reference);
        let cvs = tch::nn::VarStore::new(Device::Cpu);
        let critic = cvs.root().zeros("values", &[self.cfg.n_prompts as i64, self.n_nodes() as i64]);
        let mut opt = tch::nn::Adam::default().build(&vs, cfg.lr).expect("Adam");
        let mut vf_opt = tch::nn::Adam::default().build(&cvs, cfg.vf_lr).expect("Adam");
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/ppo"));
        let (b, l) = (cfg.rollout_batch as i64, self.cfg.length as i64);
        let nn = self.n_nodes() as i64;
        for it in 0..cfg.iterations {
            if it % every == 0 {
                trace(it, &tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp())));
            }
            let (xs, nodes, words, idx) = self.sample_table(&table, cfg.rollout_batch, &mut rng);
            let xs_t = Tensor::from_slice(&xs.iter().map(|&x| x as i64).collect::<Vec<_>>());
            let nodes = Tensor::from_slice(&nodes).view([b, l]);
            let words = Tensor::from_slice(&words).view([b, l]);
            let mask = Tensor::ones([b, l], (Kind::Float, Device::Cpu));
            let score = Tensor::from_slice(&xs.iter().zip(&idx).map(|(&x, &i)| self.reward[x][i] as f32).collect::<Vec<_>>());
            let value_rows = (xs_t.unsqueeze(1) * nn + &nodes).view([-1]);
            let (old_logp, old_values, adv, returns) = tch::no_grad(|| {
                let old_logp = self.table_token_logprobs(&table, &xs_t, &nodes, &words);
                let ref_logp = self.table_token_logprobs(reference, &xs_t, &nodes, &words);
                let old_values = critic.view([-1]).index_select(0, &value_rows).view([b, l]);
                let kl = kl_per_token(&old_logp, &ref_logp, KlEstimator::K1);
                let rewards = token_rewards(&kl, &score, &mask, beta);
                let adv = gae(&rewards, &old_values, &mask, cfg.gamma, cfg.gae_lambda);
                let returns = &adv + &old_values;
                let adv = if cfg.whiten_advantages { whiten(&adv, &mask) } else { adv };
                (old_logp, old_values, adv, returns)
            });
            let mut order: Vec<usize> = (0..cfg.rollout_batch).collect();
            for _ in 0..cfg.ppo_epochs {
                rng.shuffle(&mut order);
                for chunk in order.chunks(cfg.minibatch_size) {
                    let i = Tensor::from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>());
                    let sel = |t: &Tensor| t.index_select(0, &i);
                    let m = sel(&mask);
                    let new_logp = self.table_token_logprobs(&table, &sel(&xs_t), &sel(&nodes), &sel(&words));
                    let pl = policy_loss(&new_logp, &sel(&old_logp), &sel(&adv), &m, cfg.clip_coef);
                    let rows = (sel(&xs_t).unsqueeze(1) * nn + sel(&nodes)).view([-1]);
                    let values = critic.view([-1]).index_select(0, &rows).view([chunk.len() as i64, l]);
                    let (vf, _) = value_loss(&values, &sel(&old_values), &sel(&returns), &m, cfg.vf_clip);
                    opt.zero_grad();
                    vf_opt.zero_grad();
                    (pl.loss + vf * cfg.vf_coef).backward();
                    opt.step();
                    vf_opt.step();
                }
            }
        }
        let probs = tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp()));
        trace(cfg.iterations, &probs);
        probs
    }
}
