//! Best-of-N sampling (Stiennon et al. 2020; Gao et al. 2022, arXiv 2210.10760): draw N
//! completions from pi_SFT, keep the one the reward model scores highest.
//!
//! Implementation details:
//! 1. One draw of N_max candidates per evaluation row (the evaluation prompts, each
//!    `samples_per_prompt` times); every N of the grid uses the first N of them (nested, so the
//!    curve over N has common random numbers).
//! 2. Selection by the learned reward model (the method) and by the gold reward (an oracle).
//! 3. KL: the analytic log N - (N - 1) / N, an upper bound on KL(pi_BoN || pi_SFT) (Beirami et
//!    al. 2024), logged as `eval/kl` with `eval/kl_is_bound` = 1.

use tch::Kind;

use super::reward::Proxy;
use crate::model::{generate, left_pad, Gpt, SampleSettings};
use crate::stats::{mean_ci, win_rate, Stat};
use crate::world::TextWorld;

/// The largest N a Best-of-N grid may ask for (its KL bound: log 256 - 255/256 = 4.55 nats).
pub const MAX_N: usize = 256;

/// The analytic KL bound of Best-of-N: log N - (N - 1) / N.
pub fn kl_bound(n: usize) -> f64 {
    let n = n as f64;
    n.ln() - (n - 1.0) / n
}

/// Index of the best of `scores[..n]` (the first one on ties).
pub fn argmax_prefix(scores: &[f64], n: usize) -> usize {
    let mut best = 0;
    for i in 1..n {
        if scores[i] > scores[best] {
            best = i;
        }
    }
    best
}

pub struct BonPoint {
    pub n: usize,
    pub gold: Stat,
    pub proxy: Stat,
    pub gold_oracle: Stat,
    pub kl_bound: f64,
    /// Win rate of the picked candidates against the rows' references: (rate, lo, hi).
    pub winrate: Option<(f64, f64, f64)>,
    /// The gold reward of each row's picked candidate.
    pub picked_gold: Vec<f64>,
}

/// Candidates for every row, scored: (proxy `[rows][N_max]`, gold `[rows][N_max]`).
pub fn score_candidates(
    world: &dyn TextWorld,
    sft: &Gpt,
    scorer: Proxy,
    rows: &[Vec<i64>],
    n_max: usize,
    settings: &SampleSettings,
    seed: i64,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let _guard = tch::no_grad_guard();
    let _p = crate::profile::span("candidates");
    let device = sft.cfg_device();
    let flat: Vec<Vec<i64>> =
        rows.iter().flat_map(|p| std::iter::repeat_n(p.clone(), n_max)).collect();
    let (mut proxy, mut gold) = (Vec::with_capacity(flat.len()), Vec::with_capacity(flat.len()));
    tch::manual_seed(seed);
    for chunk in flat.chunks(2048) {
        let (prompt, valid) = left_pad(chunk, device);
        let ro = generate(sft, &prompt, &valid, settings);
        crate::profile::count(crate::profile::Count::RmQueries, ro.response.size()[0] as f64);
        let s = scorer.score(&ro).to_kind(Kind::Double).to_device(tch::Device::Cpu);
        proxy.extend(Vec::<f64>::try_from(s).expect("scores"));
        let _p = crate::profile::span("eval_gold");
        let responses = ro.response_rows();
        let items: Vec<(&[i64], &[i64])> = crate::model::sample::row_pairs(chunk, &responses);
        gold.extend(world.gold_batch(&items));
    }
    let split = |v: Vec<f64>| v.chunks(n_max).map(|c| c.to_vec()).collect::<Vec<_>>();
    (split(proxy), split(gold))
}

/// Evaluate every N of the grid on the same candidates; `ref_gold` (one per row) adds the win
/// rate against the references.
pub fn evaluate(
    proxy: &[Vec<f64>],
    gold: &[Vec<f64>],
    grid: &[usize],
    ref_gold: Option<&[f64]>,
) -> Vec<BonPoint> {
    grid.iter()
        .map(|&n| {
            let picked: Vec<usize> = proxy.iter().map(|p| argmax_prefix(p, n)).collect();
            let g: Vec<f64> = picked.iter().zip(gold).map(|(&i, g)| g[i]).collect();
            let p: Vec<f64> = picked.iter().zip(proxy).map(|(&i, p)| p[i]).collect();
            let oracle: Vec<f64> = gold.iter().map(|g| g[argmax_prefix(g, n)]).collect();
            let winrate = ref_gold.map(|r| win_rate(&g, r));
            BonPoint {
                n,
                gold: mean_ci(&g),
                proxy: mean_ci(&p),
                gold_oracle: mean_ci(&oracle),
                kl_bound: kl_bound(n),
                winrate,
                picked_gold: g,
            }
        })
        .collect()
}

/// `[best_of_n]`: Best-of-N from pi_SFT, ranked by the reward model.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestOfNConfig {
    /// The N of each point, e.g. [1, 2, 4, 8, 16, 32, 64].
    pub n: Vec<usize>,
}

impl BestOfNConfig {
    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::need;
        let n = &self.n;
        need(
            !n.is_empty(),
            "n",
            || "is an empty list".into(),
            "give the N of each point, e.g. [1, 2, 4, 8, 16]",
        )?;
        need(
            n.iter().all(|&n| (1..=MAX_N).contains(&n)),
            "n",
            || format!("every N must be in 1..={MAX_N}"),
            "use e.g. [1, 2, 4, 8, 16, 32, 64]",
        )?;
        need(
            n.iter().enumerate().all(|(i, v)| !n[..i].contains(v)),
            "n",
            || format!("lists an N twice ({n:?})"),
            "list each N once",
        )
    }
}
