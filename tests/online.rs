//! The online and critic-free methods: advantages and aggregations against hand-computed
//! values, convergence in the tabular world (exact pi* by enumeration), a toy language model
//! learning from each, and semi-online sampling at its two ends.

mod common;
use alignlab::algo::dpo::{PrefLoss, TrainConfig};
use alignlab::algo::grpo::group_advantages;
use alignlab::algo::online_dpo::{self, OnlineContext};
use alignlab::algo::pg::{self, Estimator, PgConfig};
use alignlab::algo::ppo::{aggregate, Aggregate, PpoContext};
use alignlab::algo::reinforce_pp;
use alignlab::algo::rloo::loo_advantages;
use alignlab::algo::trainer::Trainer;
use alignlab::data::Labels;
use alignlab::model::{Gpt, GptConfig, Rollout};
use common::{mean_tv, tabular};
use std::cell::RefCell;
use tch::{nn, Device, Kind, Tensor};

fn t(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).to_kind(Kind::Float)
}

fn vals(x: &Tensor) -> Vec<f64> {
    Vec::try_from(x.reshape([-1]).to_kind(Kind::Double)).unwrap()
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn advantages_match_hand_computed_values() {
    // RLOO: R_i - mean of the others, per group of 4: group [1, 2, 3, 6] and [0, 0, 0, 4].
    let r = t(&[1.0, 2.0, 3.0, 6.0, 0.0, 0.0, 0.0, 4.0]);
    let want = [
        1.0 - 11.0 / 3.0,
        2.0 - 10.0 / 3.0,
        3.0 - 3.0,
        6.0 - 2.0,
        -4.0 / 3.0,
        -4.0 / 3.0,
        -4.0 / 3.0,
        4.0,
    ];
    assert!(
        close(&vals(&loo_advantages(&r, 4)), &want, 1e-5),
        "{:?}",
        vals(&loo_advantages(&r, 4))
    );
    // GRPO: (R - 3) / (sqrt(14 / 3) + 1e-4) on [1, 2, 3, 6] (unbiased std); Dr. GRPO: R - 3.
    let g = t(&[1.0, 2.0, 3.0, 6.0]);
    let sd = (14.0f64 / 3.0).sqrt() + 1e-4;
    assert!(close(
        &vals(&group_advantages(&g, 4, true)),
        &[-2.0 / sd, -1.0 / sd, 0.0, 3.0 / sd],
        1e-5
    ));
    assert!(close(&vals(&group_advantages(&g, 4, false)), &[-2.0, -1.0, 0.0, 3.0], 1e-6));
    // REINFORCE++: token rewards -kl + score at the last token, returns-to-go, whitened over the
    // 5 real tokens. Row 0: [-0.1, -0.2, 0.7] -> to go [0.4, 0.5, 0.7]; row 1 (2 tokens, score
    // 0): [-0.1, -0.1] -> [-0.2, -0.1].
    let mask = t(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]).view([2, 3]);
    let kl = t(&[0.1, 0.2, 0.3, 0.1, 0.1, 0.0]).view([2, 3]);
    let whiten = |x: &[f64]| {
        let m = x.iter().sum::<f64>() / x.len() as f64;
        let sd = (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64 + 1e-8).sqrt();
        x.iter().map(|v| (v - m) / sd).collect::<Vec<_>>()
    };
    let w = whiten(&[0.4, 0.5, 0.7, -0.2, -0.1]);
    let got = vals(&reinforce_pp::advantages(&t(&[1.0, 0.0]), &kl, &mask, 2, false));
    assert!(close(&got, &[w[0], w[1], w[2], w[3], w[4], 0.0], 1e-5), "{got:?}");
    // The baseline variant: scores minus the group mean (0.5): [0.5, -0.5].
    // Row 0: [-0.1, -0.2, 0.2] -> [-0.1, 0.0, 0.2]; row 1: [-0.1, -0.6] -> [-0.7, -0.6].
    let w = whiten(&[-0.1, 0.0, 0.2, -0.7, -0.6]);
    let got = vals(&reinforce_pp::advantages(&t(&[1.0, 0.0]), &kl, &mask, 2, true));
    assert!(close(&got, &[w[0], w[1], w[2], w[3], w[4], 0.0], 1e-5), "{got:?}");
}

#[test]
fn aggregations_match_hand_computed_values() {
    let x = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 99.0]).view([2, 3]);
    let mask = t(&[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]).view([2, 3]);
    let v = |how| aggregate(&x, &mask, how).double_value(&[]);
    assert!((v(Aggregate::TokenMean) - 3.0).abs() < 1e-6);
    assert!((v(Aggregate::SeqSum) - 7.5).abs() < 1e-6);
    assert!((v(Aggregate::SeqMean) - 3.25).abs() < 1e-6);
    assert!((v(Aggregate::SeqSumOver(3.0)) - 2.5).abs() < 1e-6);
}

/// The tabular settings of the critic-free runs: full-batch steps at a tabular learning rate.
fn tabular_pg(kl_coef: f64, est: Estimator) -> PgConfig {
    let cfg = PgConfig {
        iterations: 400,
        prompts_per_iteration: 128,
        group_size: 4,
        ppo_epochs: 1,
        minibatch_size: 512,
        lr: 0.05,
        grad_clip: 1e9,
        kl_coef,
        ..PgConfig::default()
    };
    cfg.for_estimator(est).unwrap()
}

#[test]
fn tabular_rloo_reaches_the_kl_regularised_optimum() {
    let (w, reference, ref_probs, ref_lp) = tabular();
    for beta in [0.1, 1.0] {
        let target = w.optimal(&ref_lp, beta);
        let fitted =
            w.fit_pg_gold(&reference, Estimator::Rloo, &tabular_pg(beta, Estimator::Rloo), 1);
        eprintln!(
            "beta {beta}: TV(pi_ref, pi*) {:.4}, TV(pi_RLOO, pi*) {:.4}",
            mean_tv(&ref_probs, &target),
            mean_tv(&fitted, &target)
        );
        assert!(mean_tv(&ref_probs, &target) > 0.1, "the test would be empty");
        assert!(
            mean_tv(&fitted, &target) <= 0.05,
            "RLOO ends at TV {} from pi*",
            mean_tv(&fitted, &target)
        );
    }
}

#[test]
fn tabular_online_dpo_reaches_the_kl_regularised_optimum() {
    let (w, reference, ref_probs, ref_lp) = tabular();
    for beta in [0.1, 1.0] {
        let target = w.optimal(&ref_lp, beta);
        let fitted = w.fit_online_dpo(&reference, PrefLoss::Dpo { beta }, 4096, 400, 0.05, 1);
        eprintln!(
            "beta {beta}: TV(pi_ref, pi*) {:.4}, TV(pi_online, pi*) {:.4}",
            mean_tv(&ref_probs, &target),
            mean_tv(&fitted, &target)
        );
        assert!(
            mean_tv(&fitted, &target) <= 0.05,
            "online DPO ends at TV {} from pi*",
            mean_tv(&fitted, &target)
        );
    }
}

#[test]
fn tabular_grpo_without_kl_concentrates_on_the_best_response() {
    let (w, reference, _, _) = tabular();
    for (est, cfg) in [
        (Estimator::Grpo, tabular_pg(0.0, Estimator::Grpo)),
        (
            Estimator::Grpo,
            PgConfig {
                scale_std: Some(false),
                length_norm: Some(false),
                max_new_tokens: 2,
                ..tabular_pg(0.0, Estimator::Grpo)
            },
        ),
    ] {
        let fitted = w.fit_pg_gold(&reference, est, &cfg, 1);
        for (x, p) in fitted.iter().enumerate() {
            let best =
                (0..p.len()).max_by(|&a, &b| w.reward[x][a].total_cmp(&w.reward[x][b])).unwrap();
            assert!(
                p[best] > 0.95,
                "prompt {x}: mass {} on the best response (scale_std {:?})",
                p[best],
                cfg.scale_std
            );
        }
    }
}

const X: i64 = 7;

/// Torch's generator is global: the tests that sample take turns.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A toy reward: the fraction of response tokens that are `X`.
fn emits_x(ro: &Rollout) -> Tensor {
    let hits = ro.response.eq(X).to_kind(Kind::Float) * &ro.mask;
    hits.sum_dim_intlist(1, false, Kind::Float)
        / ro.mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
}

fn toy_models() -> (nn::VarStore, Gpt, nn::VarStore, Gpt) {
    let cfg = GptConfig::sized(12, 16, 1, 2, 32);
    tch::manual_seed(0);
    let (pvs, rvs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let policy = Gpt::new(&pvs.root(), &cfg);
    let reference = Gpt::new(&rvs.root(), &cfg);
    (pvs, policy, rvs, reference)
}

/// Each critic-free estimator, without a KL penalty, learns to emit X within a few iterations
/// and logs the debug metrics every iteration.
#[test]
fn critic_free_methods_learn_to_emit_a_token() {
    let _turn = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let prompts = vec![vec![3, 4], vec![5], vec![6, 8, 9]];
    for est in [Estimator::Rloo, Estimator::ReinforcePp, Estimator::Grpo] {
        let (pvs, policy, _rvs, reference) = toy_models();
        let ctx = PpoContext {
            reference: &reference,
            prompts: &prompts,
            max_new_tokens: 6,
            score: &emits_x,
            ema_reference: None,
        };
        let cfg = PgConfig {
            iterations: 12,
            prompts_per_iteration: 8,
            group_size: 4,
            minibatch_size: 16,
            lr: 3e-3,
            kl_coef: 0.0,
            max_new_tokens: 6,
            eval_every: 12,
            ..PgConfig::default()
        }
        .for_estimator(est)
        .unwrap();
        let mut t = Trainer::new(est.name(), "toy", 0, cfg.eval_every).in_iterations();
        pg::train(&policy, &pvs, &ctx, est, &cfg, &mut t).unwrap();
        let metrics = t.metrics;
        let series = |k: &str| {
            metrics
                .rows
                .iter()
                .filter(|r| r.metric == format!("{}/{k}", est.name()))
                .map(|r| r.value)
                .collect::<Vec<_>>()
        };
        let s = series("objective/score");
        eprintln!("{}: mean score per iteration {s:?}", est.name());
        assert!(
            s[0] < 0.25 && *s.last().unwrap() > 0.6,
            "{} did not learn to emit X: {s:?}",
            est.name()
        );
        for k in [
            "loss/policy", "policy/approx_kl", "policy/clipfrac", "policy/entropy",
            "policy/ratio_mean", "objective/kl", "objective/kl_k1", "advantage/mean",
            "advantage/std", "response/length", "response/eos_rate",
        ] {
            assert_eq!(series(k).len(), 12, "{k} is not logged every iteration");
        }
    }
}

/// Runs online DPO on the toy model and returns its metrics CSV, the final weights and every
/// sampled response (recorded by the annotator).
fn online_run(sync_every: usize, lr: f64) -> (String, Vec<f64>, Vec<Vec<Vec<i64>>>) {
    let (csv, weights, seen, _) = online_run_recorded(sync_every, lr);
    (csv, weights, seen)
}

/// An online run's metrics CSV, final weights, the prompts each step saw, and its pairs.
type Recorded = (String, Vec<f64>, Vec<Vec<Vec<i64>>>, Vec<alignlab::data::Pair>);

/// [`online_run`], with the pairs it trained on.
fn online_run_recorded(sync_every: usize, lr: f64) -> Recorded {
    online_run_with(PrefLoss::Dpo { beta: 0.1 }, sync_every, lr)
}

/// [`online_run_recorded`] with another loss.
fn online_run_with(loss: PrefLoss, sync_every: usize, lr: f64) -> Recorded {
    let (pvs, policy, _rvs, reference) = toy_models();
    let svs = nn::VarStore::new(Device::Cpu);
    let sampler = Gpt::new(&svs.root(), &policy.cfg);
    let prompts = vec![vec![3, 4], vec![5], vec![6, 8, 9]];
    let seen = RefCell::new(Vec::new());
    let score = |ro: &Rollout| {
        seen.borrow_mut().push(ro.response_rows());
        emits_x(ro)
    };
    let record = RefCell::new(Vec::new());
    let ctx = OnlineContext {
        reference: &reference,
        prompts: &prompts,
        max_new_tokens: 6,
        temperature: 1.0,
        labels: Labels::Deterministic,
        score: &score,
        sampler: (&sampler, &svs),
        sync_every,
        record: Some(&record),
    };
    let cfg = TrainConfig {
        steps: 12,
        batch_size: 16,
        lr,
        warmup_steps: 1,
        grad_clip: 10.0,
        ..Default::default()
    };
    let mut t = Trainer::new("online_dpo", "toy", 0, 6);
    online_dpo::train(&policy, &pvs, &ctx, loss, &cfg, &mut t).unwrap();
    let metrics = t.metrics;
    let mut named: Vec<(String, Tensor)> = pvs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let weights: Vec<f64> = named.iter().flat_map(|(_, v)| vals(v)).collect();
    (metrics.split_timing().0.to_csv(), weights, seen.into_inner(), record.into_inner())
}

#[test]
fn semi_online_at_its_two_ends() {
    let _turn = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    // Online (s = 1) is reproducible to the byte.
    let (online_csv, online_w, online_seen) = online_run(1, 1e-2);
    let (again_csv, again_w, again_seen) = online_run(1, 1e-2);
    for k in [
        "online_dpo/objective/kl_k1",
        "online_dpo/response/length",
        "online_dpo/response/eos_rate",
        "online_dpo/pairs",
        "online_dpo/rewards/margins",
    ] {
        assert!(online_csv.contains(k), "{k} is not logged");
    }
    assert_eq!((online_csv, online_w), (again_csv, again_w));
    assert_eq!(online_seen, again_seen);
    // The policy learns from its own samples: later samples differ from pi_SFT's.
    let (_, _, frozen_seen) = online_run(1, 0.0);
    assert_ne!(online_seen, frozen_seen, "online sampling did not follow the policy");
    // Semi-online at s = 4: steps 0 to 3 sample pi_SFT (the copy of step 0), step 4 the
    // policy it has trained since.
    let (_, _, semi_seen) = online_run(4, 1e-2);
    assert_eq!(semi_seen[..4], frozen_seen[..4]);
    assert_ne!(semi_seen[4], frozen_seen[4]);
    // s = total steps: every sample is pi_SFT's, whatever the policy learns.
    let (_, w_a, seen_a) = online_run(12, 1e-2);
    let (_, w_b, seen_b) = online_run(12, 0.0);
    assert_eq!(seen_a, seen_b, "with s = steps the sampler must stay pi_SFT");
    assert_eq!(seen_a, frozen_seen, "pi_SFT's samples, as when nothing is learned");
    assert_ne!(w_a, w_b);
    // And the online policy learns the toy reward.
    let mean_x = |seen: &[Vec<Vec<i64>>]| {
        seen.last().unwrap().iter().flatten().filter(|&&t| t == X).count() as f64
            / seen.last().unwrap().iter().flatten().count() as f64
    };
    eprintln!(
        "share of X in the last samples: online {:.3}, frozen {:.3}",
        mean_x(&online_seen),
        mean_x(&frozen_seen)
    );
    assert!(mean_x(&online_seen) > mean_x(&frozen_seen) + 0.1);
}

/// The pairs online DPO keeps for Tang et al.'s control are exactly those it trained on: each
/// step's two samples of a prompt, the one with more X first, ties dropped.
#[test]
fn online_dpo_records_the_pairs_it_trains_on() {
    let _turn = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (_, _, seen, pairs) = online_run_recorded(1, 1e-2);
    let share = |r: &Vec<i64>| r.iter().filter(|&&t| t == X).count() as f64 / r.len().max(1) as f64;
    let mut expected = Vec::new();
    for step in &seen {
        for two in step.chunks(2) {
            let (a, b) = (share(&two[0]), share(&two[1]));
            if a != b {
                expected.push(if a > b {
                    (two[0].clone(), two[1].clone())
                } else {
                    (two[1].clone(), two[0].clone())
                });
            }
        }
    }
    let got: Vec<(Vec<i64>, Vec<i64>)> =
        pairs.iter().map(|p| (p.chosen.clone(), p.rejected.clone())).collect();
    assert!(!got.is_empty());
    assert_eq!(got, expected);
}

/// Xu et al.'s moving-average reference: ref <- d ref + (1 - d) pi.
#[test]
fn ema_reference_moves_towards_the_policy() {
    let (rvs, pvs) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let _r = rvs.root().var_copy("w", &t(&[1.0, 2.0]));
    let _p = pvs.root().var_copy("w", &t(&[3.0, 4.0]));
    alignlab::algo::ppo::ema_update(&rvs, &pvs, 0.9);
    assert!(close(&vals(&rvs.variables()["w"]), &[1.2, 2.2], 1e-6));
}

/// A reference-free loss skips the reference pass online, so it logs no KL and no log-ratios
/// (they would be the policy's log-probs against zeros), and still learns.
#[test]
fn online_reference_free_loss_logs_no_reference_quantities() {
    let _turn = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let (csv, _, _, pairs) = online_run_with(PrefLoss::Simpo { beta: 2.0, gamma: 0.5 }, 1, 1e-2);
    assert!(
        !pairs.is_empty()
            && csv.contains("online_dpo/loss")
            && csv.contains("online_dpo/rewards/margins"),
        "{csv}"
    );
    for k in ["objective/kl_k1", "dynamics/logratio_chosen", "dynamics/logratio_rejected"] {
        assert!(!csv.contains(k), "a reference-free run logged {k}");
    }
}
