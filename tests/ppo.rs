//! PPO: GAE, the clipped losses, the KL controller, PPO-GT's optimum in the tabular world, a toy
//! reward learned end to end; Best-of-N's bookkeeping.

use alignlab::algo::best_of_n::{argmax_prefix, evaluate, kl_bound};
use alignlab::algo::ppo::{
    self, gae, gae_loop, policy_loss, token_rewards, value_loss, KlControl, KlController,
    KlEstimator, PpoConfig, PpoContext,
};
use alignlab::algo::reward::RewardModel;
use alignlab::algo::trainer::Trainer;
use alignlab::model::{Gpt, GptConfig, Rollout};
use alignlab::world::tabular::{to_rows, tv};
use alignlab::world::{TabularConfig, TabularWorld};
use tch::{nn, Device, Kind, Tensor};

fn t2(rows: &[&[f64]]) -> Tensor {
    let n = rows[0].len() as i64;
    let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).to_kind(Kind::Float).view([rows.len() as i64, n])
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn gae_loop_and_vectorised_agree() {
    tch::manual_seed(0);
    let (b, n) = (7, 12);
    let rewards = Tensor::randn([b, n], (Kind::Float, Device::Cpu));
    let values = Tensor::randn([b, n], (Kind::Float, Device::Cpu));
    // Rows of different lengths, one of length 1 and one full.
    let lens = [1i64, 12, 5, 8, 3, 11, 6];
    let mask = Tensor::arange(n, (Kind::Int64, Device::Cpu))
        .unsqueeze(0)
        .lt_tensor(&Tensor::from_slice(&lens).unsqueeze(1))
        .to_kind(Kind::Float);
    for (gamma, lambda) in [(1.0, 0.95), (0.99, 0.9), (1.0, 1.0), (0.9, 0.0)] {
        let a = gae_loop(&rewards, &values, &mask, gamma, lambda);
        let v = gae(&rewards, &values, &mask, gamma, lambda);
        assert!(max_diff(&a, &v) < 1e-4, "gamma {gamma} lambda {lambda}: {}", max_diff(&a, &v));
    }
    // By hand, one row [r0, r1] with values [v0, v1], gamma 1, lambda 0.5:
    // d1 = r1 - v1, d0 = r0 + v1 - v0, A1 = d1, A0 = d0 + 0.5 d1.
    let (r, v, m) = (t2(&[&[1.0, 2.0, 9.0]]), t2(&[&[0.5, 0.25, 7.0]]), t2(&[&[1.0, 1.0, 0.0]]));
    let a = gae(&r, &v, &m, 1.0, 0.5);
    let expect = t2(&[&[1.0 + 0.25 - 0.5 + 0.5 * 1.75, 1.75, 0.0]]);
    assert!(max_diff(&a, &expect) < 1e-6, "{a}");
}

#[test]
fn token_rewards_put_the_score_on_the_last_token() {
    let kl = t2(&[&[0.1, 0.2, 0.3], &[1.0, -1.0, 5.0]]);
    let mask = t2(&[&[1.0, 1.0, 1.0], &[1.0, 1.0, 0.0]]);
    let score = Tensor::from_slice(&[2.0f32, 3.0]);
    let r = token_rewards(&kl, &score, &mask, 0.5);
    let expect = t2(&[&[-0.05, -0.1, -0.15 + 2.0], &[-0.5, 0.5 + 3.0, 0.0]]);
    assert!(max_diff(&r, &expect) < 1e-6, "{r}");
    // k3 is non-negative and zero at equal log-probs; k1 is the log-ratio.
    let (lp, rlp) = (t2(&[&[-1.0, -2.0]]), t2(&[&[-1.5, -2.0]]));
    let k3 = ppo::kl_per_token(&lp, &rlp, KlEstimator::K3);
    assert!(
        (k3.double_value(&[0, 0]) - ((-0.5f64).exp() - 1.0 + 0.5)).abs() < 1e-6
            && k3.double_value(&[0, 1]).abs() < 1e-7
    );
    assert!(
        (ppo::kl_per_token(&lp, &rlp, KlEstimator::K1).double_value(&[0, 0]) - 0.5).abs() < 1e-6
    );
}

#[test]
fn policy_loss_clips_outside_the_trust_region() {
    let mask = t2(&[&[1.0, 1.0, 0.0]]);
    let adv = t2(&[&[1.0, -2.0, 100.0]]);
    let old = t2(&[&[-1.0, -2.0, -3.0]]);
    // Ratio 1: no clipping, loss = -mean(A) over the mask, approx_kl = 0.
    let same = old.copy().set_requires_grad(true);
    let pl = policy_loss(&same, &old, &adv, &mask, 0.2);
    assert!((pl.loss.double_value(&[]) - 0.5).abs() < 1e-6);
    assert_eq!(pl.clipfrac.double_value(&[]), 0.0);
    assert!(pl.approx_kl.double_value(&[]).abs() < 1e-9);
    assert!(
        (pl.ratio_mean.double_value(&[]) - 1.0).abs() < 1e-7
            && pl.ratio_var.double_value(&[]).abs() < 1e-12
    );
    pl.loss.backward();
    // d/dlogp of -A r at r = 1 is -A / 2 (mean over 2 tokens).
    assert!(max_diff(&same.grad(), &t2(&[&[-0.5, 1.0, 0.0]])) < 1e-6);
    // Ratio e^0.5 > 1.2 with A > 0 and e^-0.5 < 0.8 with A < 0: both clipped, no gradient.
    let moved = (&old + t2(&[&[0.5, -0.5, 0.0]])).set_requires_grad(true);
    let pl = policy_loss(&moved, &old, &adv, &mask, 0.2);
    let expect = (-(1.0 * 1.2) + 2.0 * 0.8) / 2.0;
    assert!((pl.loss.double_value(&[]) - expect).abs() < 1e-6, "{}", pl.loss.double_value(&[]));
    assert_eq!(pl.clipfrac.double_value(&[]), 1.0);
    pl.loss.backward();
    assert!(
        moved.grad().abs().max().double_value(&[]) < 1e-9,
        "clipped tokens must get no gradient"
    );
    // Ratio e^0.5 with A < 0 is the pessimistic branch: not clipped.
    let pl = policy_loss(&(&old + t2(&[&[0.0, 0.5, 0.0]])), &old, &adv, &mask, 0.2);
    assert!((pl.loss.double_value(&[]) - (-1.0 + 2.0 * 0.5f64.exp()) / 2.0).abs() < 1e-5);
}

#[test]
fn value_loss_is_clipped_around_the_old_values() {
    let mask = t2(&[&[1.0, 1.0]]);
    let old = t2(&[&[0.0, 0.0]]);
    let ret = t2(&[&[1.0, 1.0]]);
    // V = 0.1 (inside the clip): 0.5 * 0.81; V = 2 (clipped to 0.2): max(1, 0.64) = 1.
    let v = t2(&[&[0.1, 2.0]]);
    let (l, frac) = value_loss(&v, &old, &ret, &mask, 0.2);
    assert!((l.double_value(&[]) - 0.5 * (0.81 + 1.0) / 2.0).abs() < 1e-6);
    assert_eq!(frac.double_value(&[]), 0.0);
    // V = 0.5 past the clip towards the return: the clipped error 0.64 > 0.25 counts.
    let (l, frac) = value_loss(&t2(&[&[0.5, 0.1]]), &old, &ret, &mask, 0.2);
    assert!((l.double_value(&[]) - 0.5 * (0.64 + 0.81) / 2.0).abs() < 1e-6);
    assert_eq!(frac.double_value(&[]), 0.5);
}

#[test]
fn adaptive_kl_controller_follows_ziegler() {
    let mut c = KlController::new(KlControl::Adaptive { init: 0.1, target: 2.0, horizon: 1000.0 });
    c.update(10.0, 100); // error clipped at +0.2
    assert!((c.coef - 0.1 * (1.0 + 0.2 * 0.1)).abs() < 1e-12);
    c.update(1.8, 100); // error -0.1
    assert!((c.coef - 0.1 * 1.02 * (1.0 - 0.1 * 0.1)).abs() < 1e-12);
    let mut f = KlController::new(KlControl::Fixed { coef: 0.3 });
    f.update(100.0, 100);
    assert_eq!(f.coef, 0.3);
}

fn tabular_cfg() -> PpoConfig {
    TabularWorld::ppo_config()
}

#[test]
fn tabular_ppo_gt_reaches_the_kl_regularised_optimum() {
    let w = TabularWorld::new(&TabularConfig { n_prompts: 3, n_words: 3, length: 2 }, 7);
    let reference = w.random_table(1.0, 7);
    let ref_probs = to_rows(&w.table_logprobs(&reference).exp());
    let ref_lp: Vec<Vec<f64>> =
        ref_probs.iter().map(|r| r.iter().map(|p| p.ln()).collect()).collect();
    for beta in [0.1, 0.5] {
        let target = w.optimal(&ref_lp, beta);
        let fitted = w.fit_ppo_gold(&reference, beta, &tabular_cfg(), 1);
        let mean_tv = |p: &Vec<Vec<f64>>| {
            p.iter().zip(&target).map(|(a, b)| tv(a, b)).sum::<f64>() / p.len() as f64
        };
        eprintln!(
            "beta {beta}: TV(pi_ref, pi*) {:.4}, TV(pi_PPO, pi*) {:.4}",
            mean_tv(&ref_probs),
            mean_tv(&fitted)
        );
        assert!(mean_tv(&ref_probs) > 0.1, "the test would be empty");
        assert!(mean_tv(&fitted) <= 0.1, "PPO-GT ends at TV {} from pi*", mean_tv(&fitted));
    }
}

/// A toy reward: the fraction of response tokens that are `X`. With no KL penalty PPO must
/// learn to emit X within a few updates; the first minibatch of each update has ratio 1.
#[test]
fn ppo_learns_to_emit_a_token() {
    const X: i64 = 7;
    let cfg = GptConfig::sized(12, 16, 1, 2, 32);
    tch::manual_seed(0);
    let (pvs, rvs, cvs) = (
        nn::VarStore::new(Device::Cpu),
        nn::VarStore::new(Device::Cpu),
        nn::VarStore::new(Device::Cpu),
    );
    let policy = Gpt::new(&pvs.root(), &cfg);
    let reference = Gpt::new(&rvs.root(), &cfg);
    let critic = RewardModel::new(&cvs.root(), &cfg);
    let score = |ro: &Rollout| {
        let hits = ro.response.eq(X).to_kind(Kind::Float) * &ro.mask;
        hits.sum_dim_intlist(1, false, Kind::Float)
            / ro.mask.sum_dim_intlist(1, false, Kind::Float).clamp_min(1.0)
    };
    let prompts = vec![vec![3, 4], vec![5], vec![6, 8, 9]];
    let ctx = PpoContext {
        reference: &reference,
        prompts: &prompts,
        max_new_tokens: 6,
        score: &score,
        ema_reference: None,
    };
    let pcfg = PpoConfig {
        iterations: 8,
        rollout_batch: 64,
        minibatch_size: 16,
        lr: 3e-3,
        vf_lr: 3e-3,
        gae_lambda: 0.95,
        vf_clip: 0.2,
        vf_coef: 0.1,
        grad_clip: 1.0,
        eval_every: 8,
        ..tabular_cfg()
    };
    let evals = std::cell::RefCell::new(vec![]);
    let mut t =
        Trainer::new("ppo", "toy", 0, pcfg.eval_every).in_iterations().on_eval(|it, _, _, _| {
            evals.borrow_mut().push(it);
            Ok(())
        });
    ppo::train(&policy, &pvs, (&critic, &cvs), &ctx, &pcfg, &mut t).unwrap();
    let metrics = t.metrics;
    assert_eq!(*evals.borrow(), vec![0, 8]);
    let series = |k: &str| {
        metrics.rows.iter().filter(|r| r.metric == k).map(|r| r.value).collect::<Vec<_>>()
    };
    let s = series("ppo/objective/score");
    eprintln!("mean score per iteration: {s:?}");
    assert!(s[0] < 0.25, "the untrained policy already emits X ({})", s[0]);
    assert!(*s.last().unwrap() > 0.8, "PPO did not learn to emit X: {s:?}");
    for v in series("ppo/policy/approx_kl_first") {
        assert!(v.abs() < 1e-6, "approx_kl on the first minibatch is {v}");
    }
    for k in [
        "ppo/loss/policy",
        "ppo/loss/value",
        "ppo/policy/clipfrac",
        "ppo/policy/entropy",
        "ppo/policy/ratio_mean",
        "ppo/policy/ratio_var",
        "ppo/objective/kl_coef",
        "ppo/objective/non_score_reward",
        "ppo/value/explained_variance",
        "ppo/response/length",
        "ppo/response/eos_rate",
    ] {
        assert_eq!(series(k).len(), 8, "{k} is not logged every iteration");
    }
}

#[test]
fn best_of_n_picks_by_proxy_and_bounds_kl() {
    assert_eq!(kl_bound(1), 0.0);
    assert!((kl_bound(4) - (4f64.ln() - 0.75)).abs() < 1e-12);
    assert_eq!(argmax_prefix(&[0.1, 0.5, 0.3, 0.9], 3), 1);
    // Proxy ranks candidate 2 best among the first 3; gold disagrees.
    let proxy = vec![vec![0.0, 0.1, 0.9, 0.5], vec![0.3, 0.2, 0.1, 0.0]];
    let gold = vec![vec![0.2, 1.0, 0.1, 0.7], vec![0.4, 0.9, 0.8, 0.6]];
    let pts = evaluate(&proxy, &gold, &[1, 3], Some(&[0.3, 0.4]));
    assert!((pts[0].gold.mean - 0.3).abs() < 1e-12); // first candidates: 0.2, 0.4
                                                     // Against references 0.3 and 0.4: N=1 loses one and ties one; N=3 (0.1, 0.4) the same.
    assert!(
        (pts[0].winrate.unwrap().0 - 0.25).abs() < 1e-12
            && (pts[1].winrate.unwrap().0 - 0.25).abs() < 1e-12
    );
    assert!((pts[1].gold.mean - (0.1 + 0.4) / 2.0).abs() < 1e-12);
    assert!((pts[1].gold_oracle.mean - (1.0 + 0.9) / 2.0).abs() < 1e-12);
    assert!((pts[1].proxy.mean - (0.9 + 0.3) / 2.0).abs() < 1e-12);
}

/// PPO's conventions as settings: the biased and unbiased whitening, the two clip fractions, and
/// the score at the last token or after it, by hand.
#[test]
fn ppo_conventions_match_hand_computed_values() {
    use alignlab::algo::ppo::{token_rewards_at, value_mask, whiten_with, ScorePosition};
    let v = |t: &Tensor| Vec::<f64>::try_from(t.reshape([-1]).to_kind(Kind::Double)).unwrap();
    let close = |a: &[f64], b: &[f64]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    };
    // Whitening [1, 2, 3, 4]: mean 2.5, variance 1.25 (n) or 5/3 (n - 1).
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([1, 4]);
    let ones = Tensor::ones([1, 4], (Kind::Float, Device::Cpu));
    let z = |var: f64| [-1.5, -0.5, 0.5, 1.5].map(|d| d / (var + 1e-8).sqrt());
    assert!(close(&v(&whiten_with(&x, &ones, false)), &z(1.25)));
    assert!(close(&v(&whiten_with(&x, &ones, true)), &z(5.0 / 3.0)));
    // Ratio 1.5 with a negative advantage: outside [0.8, 1.2], yet the unclipped term is the one
    // taken (-A 1.5 > -A 1.2); ratio 1.5 with a positive advantage: both definitions count it.
    let new = Tensor::from_slice(&[1.5f32.ln(), 1.5f32.ln()]).view([1, 2]);
    let old = Tensor::zeros([1, 2], (Kind::Float, Device::Cpu));
    let adv = Tensor::from_slice(&[-1.0f32, 1.0]).view([1, 2]);
    let mask = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
    let pl = policy_loss(&new, &old, &adv, &mask, 0.2);
    assert!(
        (pl.clipfrac.double_value(&[]) - 1.0).abs() < 1e-6
            && (pl.clipfrac_active.double_value(&[]) - 0.5).abs() < 1e-6
    );
    // The score at the last response token, or one past it (where there is room).
    let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]).view([2, 4]);
    let kl = Tensor::from_slice(&[0.1f32, 0.2, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1]).view([2, 4]);
    let score = Tensor::from_slice(&[1.0f32, 2.0]);
    assert!(close(
        &v(&token_rewards_at(&kl, &score, &mask, 1.0, ScorePosition::LastToken)),
        &[-0.1, 0.8, 0.0, 0.0, -0.1, -0.1, -0.1, 1.9]
    ));
    assert!(close(
        &v(&token_rewards_at(&kl, &score, &mask, 1.0, ScorePosition::AfterEos)),
        &[-0.1, -0.2, 1.0, 0.0, -0.1, -0.1, -0.1, 1.9]
    ));
    assert!(close(
        &v(&value_mask(&mask, ScorePosition::AfterEos)),
        &[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    ));
    assert!(close(&v(&value_mask(&mask, ScorePosition::LastToken)), &v(&mask)));
}
