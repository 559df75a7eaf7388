//! The exact tabular trainers: DPO-family losses on preference counts and PPO with the gold
//! reward, on tabular policies of the tabular world (`world::tabular`), with the same loss
//! functions and the same optimiser (the flat `Adam`) as the language-model trainers. The world
//! holds no training code.

use tch::{Device, Kind, Tensor};

use super::adam::Adam;
use super::dpo::{preference_loss, PairLogps, PrefLoss};
use super::pg::{Estimator, PgConfig};
use super::ppo::{
    aggregate, gae, kl_per_token, policy_loss, policy_loss_by, token_rewards, value_loss, whiten,
    KlEstimator, PpoConfig,
};
use super::rollout::minibatches;
use crate::data::Labels;
use crate::draw::{derive_seed, Rng};
use crate::world::tabular::{to_rows, TabularWorld};

impl TabularWorld {
    /// The PPO settings of the tabular convergence runs: large batches, no clipping of
    /// gradients, tabular learning rates; `kl` is replaced by the fixed beta of the run.
    pub fn ppo_config() -> PpoConfig {
        PpoConfig {
            iterations: 300,
            rollout_batch: 512,
            minibatch_size: 128,
            lr: 0.05,
            vf_lr: 0.1,
            vf_clip: 10.0,
            vf_coef: 1.0,
            kl: crate::algo::ppo::KlControl::Fixed { coef: 0.0 },
            grad_clip: 1e9,
            eval_every: 1000,
            ..PpoConfig::default()
        }
    }

    /// Sample `n_pairs` preference pairs per prompt, both responses drawn independently from
    /// `policy` (probabilities `[X][R]`), labelled by `labels` on the gold reward. Returns the
    /// counts `[X][chosen][rejected]` (pairs of a response with itself are dropped).
    pub fn sample_pair_counts(
        &self,
        policy: &[Vec<f64>],
        n_pairs: usize,
        labels: Labels,
        seed: u64,
    ) -> Vec<Vec<Vec<f64>>> {
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/pairs"));
        let r = self.responses.len();
        let cdfs: Vec<Vec<f64>> = policy
            .iter()
            .map(|p| {
                let mut acc = 0.0;
                p.iter()
                    .map(|v| {
                        acc += v;
                        acc
                    })
                    .collect()
            })
            .collect();
        let draw = |cdf: &Vec<f64>, u: f64| {
            cdf.partition_point(|&c| c < u * cdf[cdf.len() - 1]).min(cdf.len() - 1)
        };
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
                        Labels::Deterministic | Labels::World => ra > rb,
                        Labels::BradleyTerry { temperature } => {
                            rng.bernoulli(1.0 / (1.0 + (-(ra - rb) / temperature).exp()))
                        }
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
    pub fn fit_preference(
        &self,
        reference: &Tensor,
        counts: &[Vec<Vec<f64>>],
        loss: PrefLoss,
        steps: usize,
        lr: f64,
    ) -> Vec<Vec<f64>> {
        self.fit_preference_traced(reference, counts, loss, (steps, lr), usize::MAX, |_, _| {})
    }

    /// [`TabularWorld::fit_preference`], calling `trace(step, probabilities)` every `every`
    /// steps (and at step 0).
    pub fn fit_preference_traced(
        &self,
        reference: &Tensor,
        counts: &[Vec<Vec<f64>>],
        loss: PrefLoss,
        (steps, lr): (usize, f64),
        every: usize,
        mut trace: impl FnMut(usize, &[Vec<f64>]),
    ) -> Vec<Vec<f64>> {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let table = vs.root().var_copy("table", reference);
        let mut opt = Adam::new(&vs, lr, (0.9, 0.999), 0.0);
        let (x, r) = (self.cfg.n_prompts as i64, self.responses.len() as i64);
        let flat: Vec<f32> = counts.iter().flatten().flatten().map(|&c| c as f32).collect();
        let weights = Tensor::from_slice(&flat).view([x, r, r]);
        let total = weights.sum(Kind::Float);
        let ref_lp = tch::no_grad(|| self.table_logprobs(reference));
        let pair = |lp: &Tensor| {
            (lp.unsqueeze(2).expand([x, r, r], false), lp.unsqueeze(1).expand([x, r, r], false))
        };
        let (ref_chosen, ref_rejected) = pair(&ref_lp);
        // Every response has `length` tokens.
        let lengths = Tensor::full([x, r, r], self.cfg.length as f64, (Kind::Float, Device::Cpu));
        for step in 0..steps {
            if step % every == 0 {
                trace(step, &tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp())));
            }
            let lp = self.table_logprobs(&table);
            let (chosen, rejected) = pair(&lp);
            let out = preference_loss(
                loss,
                &PairLogps {
                    policy_chosen: &chosen,
                    policy_rejected: &rejected,
                    reference_chosen: &ref_chosen,
                    reference_rejected: &ref_rejected,
                    chosen_tokens: &lengths,
                    rejected_tokens: &lengths,
                    chosen_prompt: None,
                },
            );
            assert!(
                out.per_token.is_none(),
                "a token-mean loss has no meaning on tabular responses"
            );
            let objective = (out.losses * &weights).sum(Kind::Float) / &total;
            opt.zero_grad();
            objective.backward();
            opt.step();
        }
        let probs = tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp()));
        trace(steps, &probs);
        probs
    }

    /// PPO with the gold reward and a fixed per-token k1 KL penalty `beta`, on a tabular policy
    /// (initialised at `reference`) and a tabular critic (one value per prompt and prefix),
    /// using the same loss functions as the language-model PPO. The stationary point of this
    /// objective is pi* proportional to pi_ref exp(r / beta). Returns the policy `[X][R]`.
    pub fn fit_ppo_gold(
        &self,
        reference: &Tensor,
        beta: f64,
        cfg: &PpoConfig,
        seed: u64,
    ) -> Vec<Vec<f64>> {
        self.fit_ppo_gold_traced(reference, beta, cfg, seed, usize::MAX, |_, _| {})
    }

    /// [`TabularWorld::fit_ppo_gold`], calling `trace(iteration, probabilities)` every `every`
    /// iterations (and at 0).
    pub fn fit_ppo_gold_traced(
        &self,
        reference: &Tensor,
        beta: f64,
        cfg: &PpoConfig,
        seed: u64,
        every: usize,
        mut trace: impl FnMut(usize, &[Vec<f64>]),
    ) -> Vec<Vec<f64>> {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let table = vs.root().var_copy("table", reference);
        let cvs = tch::nn::VarStore::new(Device::Cpu);
        let critic =
            cvs.root().zeros("values", &[self.cfg.n_prompts as i64, self.n_nodes() as i64]);
        let mut opt = Adam::new(&vs, cfg.lr, (0.9, 0.999), 0.0);
        let mut vf_opt = Adam::new(&cvs, cfg.vf_lr, (0.9, 0.999), 0.0);
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/ppo"));
        let (b, l) = (cfg.rollout_batch as i64, self.cfg.length as i64);
        let nn = self.n_nodes() as i64;
        for it in 0..cfg.iterations {
            if it % every == 0 {
                trace(it, &tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp())));
            }
            let (xs_t, nodes, words, mask, score) =
                self.rollout_tensors(self.sample_table(&table, cfg.rollout_batch, &mut rng));
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
            let (n, size, epochs) = (cfg.rollout_batch, cfg.minibatch_size, cfg.ppo_epochs);
            for i in minibatches(n, size, epochs, &mut rng, Device::Cpu) {
                let sel = |t: &Tensor| t.index_select(0, &i);
                let m = sel(&mask);
                let new_logp =
                    self.table_token_logprobs(&table, &sel(&xs_t), &sel(&nodes), &sel(&words));
                let pl = policy_loss(&new_logp, &sel(&old_logp), &sel(&adv), &m, cfg.clip_coef);
                let rows = (sel(&xs_t).unsqueeze(1) * nn + sel(&nodes)).view([-1]);
                let values = critic.view([-1]).index_select(0, &rows).view([i.size()[0], l]);
                let (vf, _) =
                    value_loss(&values, &sel(&old_values), &sel(&returns), &m, cfg.vf_clip);
                opt.zero_grad();
                vf_opt.zero_grad();
                (pl.loss + vf * cfg.vf_coef).backward();
                opt.step();
                vf_opt.step();
            }
        }
        let probs = tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp()));
        trace(cfg.iterations, &probs);
        probs
    }

    /// Sampled rollouts (`sample_table`'s) as tensors: prompts `[B]`, nodes and words `[B, L]`,
    /// an all-ones mask `[B, L]` and the gold reward of each `[B]`.
    fn rollout_tensors(
        &self,
        (xs, nodes, words, idx): (Vec<usize>, Vec<i64>, Vec<i64>, Vec<usize>),
    ) -> (Tensor, Tensor, Tensor, Tensor, Tensor) {
        let (b, l) = (xs.len() as i64, self.cfg.length as i64);
        let xs_t = Tensor::from_slice(&xs.iter().map(|&x| x as i64).collect::<Vec<_>>());
        let mask = Tensor::ones([b, l], (Kind::Float, Device::Cpu));
        let score = Tensor::from_slice(
            &xs.iter().zip(&idx).map(|(&x, &i)| self.reward[x][i] as f32).collect::<Vec<_>>(),
        );
        (
            xs_t,
            Tensor::from_slice(&nodes).view([b, l]),
            Tensor::from_slice(&words).view([b, l]),
            mask,
            score,
        )
    }

    /// A critic-free estimator (RLOO, REINFORCE++, GRPO) with the gold reward and KL coefficient
    /// `cfg.kl_coef` on a tabular policy initialised at `reference`, with the method's own
    /// advantages, KL placement and aggregation ([`Estimator::recipe`]) and the same clipped
    /// loss as the language-model loop. Returns the policy `[X][R]`.
    pub fn fit_pg_gold(
        &self,
        reference: &Tensor,
        est: Estimator,
        cfg: &PgConfig,
        seed: u64,
    ) -> Vec<Vec<f64>> {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let table = vs.root().var_copy("table", reference);
        let mut opt = Adam::new(&vs, cfg.lr, (0.9, 0.999), 0.0);
        let mut rng = Rng::new(derive_seed(seed, &format!("world/tabular/{}", est.name())));
        let recipe = super::pg::recipe(est, cfg);
        let estimator = cfg.kl_estimator.unwrap_or(KlEstimator::K1);
        let k = cfg.group_size;
        for _ in 0..cfg.iterations {
            let prompts: Vec<usize> = (0..cfg.prompts_per_iteration)
                .flat_map(|_| std::iter::repeat_n(rng.range(0, self.cfg.n_prompts - 1), k))
                .collect();
            let (xs_t, nodes, words, mask, score) =
                self.rollout_tensors(self.sample_table_for(&table, &prompts, &mut rng));
            let (old_logp, ref_logp, adv) = tch::no_grad(|| {
                let old_logp = self.table_token_logprobs(&table, &xs_t, &nodes, &words);
                let ref_logp = self.table_token_logprobs(reference, &xs_t, &nodes, &words);
                let kl = kl_per_token(&old_logp, &ref_logp, estimator);
                let adv = (recipe.advantages)(&score, &(kl * cfg.kl_coef), &mask, k);
                (old_logp, ref_logp, adv)
            });
            let (n, size, epochs) = (prompts.len(), cfg.minibatch_size, cfg.ppo_epochs);
            for i in minibatches(n, size, epochs, &mut rng, Device::Cpu) {
                let sel = |t: &Tensor| t.index_select(0, &i);
                let m = sel(&mask);
                let new_logp =
                    self.table_token_logprobs(&table, &sel(&xs_t), &sel(&nodes), &sel(&words));
                let pg_loss = policy_loss_by(
                    &new_logp,
                    &sel(&old_logp),
                    &sel(&adv),
                    &m,
                    cfg.clip_coef,
                    recipe.aggregate,
                )
                .loss;
                let loss = if recipe.kl_in_loss {
                    let kl = kl_per_token(&new_logp, &sel(&ref_logp), estimator);
                    pg_loss + aggregate(&kl, &m, recipe.aggregate) * cfg.kl_coef
                } else {
                    pg_loss
                };
                opt.zero_grad();
                loss.backward();
                opt.step();
            }
        }
        tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp()))
    }

    /// Online DPO with the gold reward's Bradley-Terry labels (temperature 1): each step,
    /// `n_pairs` prompts, two samples of each from the current tabular policy, labelled, and one
    /// full-batch Adam step of [`preference_loss`] against `reference`. Its stationary point is
    /// pi* proportional to pi_ref exp(r / beta). Returns the policy `[X][R]`.
    pub fn fit_online_dpo(
        &self,
        reference: &Tensor,
        loss: PrefLoss,
        n_pairs: usize,
        steps: usize,
        lr: f64,
        seed: u64,
    ) -> Vec<Vec<f64>> {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let table = vs.root().var_copy("table", reference);
        let mut opt = Adam::new(&vs, lr, (0.9, 0.999), 0.0);
        let mut rng = Rng::new(derive_seed(seed, "world/tabular/online_dpo"));
        let l = self.cfg.length as i64;
        let seq_logp = |t: &Tensor, xs: &Tensor, nodes: &[i64], words: &[i64]| {
            let b = xs.size()[0];
            self.table_token_logprobs(
                t,
                xs,
                &Tensor::from_slice(nodes).view([b, l]),
                &Tensor::from_slice(words).view([b, l]),
            )
            .sum_dim_intlist(1, false, Kind::Float)
        };
        for _ in 0..steps {
            let prompts: Vec<usize> = (0..n_pairs)
                .flat_map(|_| std::iter::repeat_n(rng.range(0, self.cfg.n_prompts - 1), 2))
                .collect();
            let (xs, nodes, words, idx) = self.sample_table_for(&table, &prompts, &mut rng);
            // Row 2i against row 2i + 1: the winner first.
            let (mut win, mut lose) = (Vec::new(), Vec::new());
            for i in 0..n_pairs {
                let (a, b) = (2 * i, 2 * i + 1);
                let (ra, rb) = (self.reward[xs[a]][idx[a]], self.reward[xs[b]][idx[b]]);
                let a_wins = rng.bernoulli(1.0 / (1.0 + (-(ra - rb)).exp()));
                let (w, r) = if a_wins { (a, b) } else { (b, a) };
                win.push(w);
                lose.push(r);
            }
            let rows = |which: &[usize]| {
                let n: Vec<i64> = which
                    .iter()
                    .flat_map(|&i| nodes[i * l as usize..(i + 1) * l as usize].to_vec())
                    .collect();
                let w: Vec<i64> = which
                    .iter()
                    .flat_map(|&i| words[i * l as usize..(i + 1) * l as usize].to_vec())
                    .collect();
                (Tensor::from_slice(&which.iter().map(|&i| xs[i] as i64).collect::<Vec<_>>()), n, w)
            };
            let ((xw, nw, ww), (xl, nl, wl)) = (rows(&win), rows(&lose));
            let (rc, rr) = tch::no_grad(|| {
                (seq_logp(reference, &xw, &nw, &ww), seq_logp(reference, &xl, &nl, &wl))
            });
            let (pc, pr) = (seq_logp(&table, &xw, &nw, &ww), seq_logp(&table, &xl, &nl, &wl));
            let lengths = pc.ones_like() * self.cfg.length as f64;
            let out = preference_loss(
                loss,
                &PairLogps {
                    policy_chosen: &pc,
                    policy_rejected: &pr,
                    reference_chosen: &rc,
                    reference_rejected: &rr,
                    chosen_tokens: &lengths,
                    rejected_tokens: &lengths,
                    chosen_prompt: None,
                },
            );
            opt.zero_grad();
            out.batch_loss().backward();
            opt.step();
        }
        tch::no_grad(|| to_rows(&self.table_logprobs(&table).exp()))
    }
}
