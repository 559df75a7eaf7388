//! The preference methods: losses against hand-computed values, the DPO gradient, the tabular
//! world's exact optima (Rafailov et al. Eq. 4; Azar et al. on deterministic preferences) and
//! the KL estimators of the evaluator.

use alignlab::algo::common::response_logps;
use alignlab::algo::dpo::{preference_loss, PairLogps};
use alignlab::algo::reward::reward_loss;
use alignlab::data::{Pair, PairTensors};
use alignlab::eval::{mean_ci, Evaluator};
use alignlab::model::{Gpt, GptConfig, SampleSettings};
use alignlab::scenario::{Labels, PrefLoss};
use alignlab::world::tabular::{kl, to_rows, tv};
use alignlab::world::{SentimentConfig, SentimentWorld, TabularConfig, TabularWorld};
use tch::{nn, Device, Kind, Tensor};

/// A preference loss on summed log-probs, each chosen response counted as one token.
fn pref(
    loss: PrefLoss,
    pc: &Tensor,
    pr: &Tensor,
    rc: &Tensor,
    rr: &Tensor,
) -> alignlab::algo::dpo::LossOut {
    let tokens = pc.ones_like();
    preference_loss(
        loss,
        &PairLogps {
            policy_chosen: pc,
            policy_rejected: pr,
            reference_chosen: rc,
            reference_rejected: rr,
            chosen_tokens: &tokens,
            rejected_tokens: &tokens,
            chosen_prompt: None,
        },
    )
}

static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn t(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).to_kind(Kind::Float)
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn dpo_family_losses_match_hand_computed_values() {
    // Policy equal to the reference: every log-ratio is 0, the loss is ln 2 for any beta.
    for beta in [0.1, 1.0, 5.0] {
        let lp = t(&[-3.0, -7.5]);
        let out = pref(PrefLoss::Dpo { beta }, &lp, &lp, &lp, &lp);
        for v in Vec::<f64>::try_from(out.losses).unwrap() {
            assert!(close(v, std::f64::consts::LN_2, 1e-6), "DPO at zero margin: {v}");
        }
    }
    // Delta = (pc - rc) - (pr - rr) = (-2 - -3) - (-5 - -4) = 2.
    let (pc, pr, rc, rr) = (t(&[-2.0]), t(&[-5.0]), t(&[-3.0]), t(&[-4.0]));
    let v = |o: &Tensor| o.double_value(&[0]);
    // DPO: -log sigmoid(0.1 * 2) = 0.598138869...
    let dpo = pref(PrefLoss::Dpo { beta: 0.1 }, &pc, &pr, &rc, &rr);
    assert!(close(v(&dpo.losses), 0.5981388693815918, 1e-6));
    let (chosen, rejected) = dpo.rewards.as_ref().unwrap();
    assert!(close(v(chosen), 0.1, 1e-6) && close(v(rejected), -0.1, 1e-6));
    // IPO: (Delta - 1/(2 beta))^2 = (2 - 1)^2 at beta 0.5; (2 - 5)^2 at beta 0.1.
    assert!(close(
        v(&pref(PrefLoss::Ipo { beta: 0.5, length_normalize: false }, &pc, &pr, &rc, &rr).losses),
        1.0,
        1e-6
    ));
    assert!(close(
        v(&pref(PrefLoss::Ipo { beta: 0.1, length_normalize: false }, &pc, &pr, &rc, &rr).losses),
        9.0,
        1e-5
    ));
    // cDPO, eps = 0.1: -0.9 log sigmoid(0.2) - 0.1 log sigmoid(-0.2).
    let c = pref(PrefLoss::Cdpo { beta: 0.1, label_smoothing: 0.1 }, &pc, &pr, &rc, &rr);
    assert!(close(v(&c.losses), 0.6181388693815918, 1e-6));
    // cDPO with eps = 0 is DPO.
    let c0 = pref(PrefLoss::Cdpo { beta: 0.1, label_smoothing: 0.0 }, &pc, &pr, &rc, &rr);
    assert!(close(v(&c0.losses), v(&dpo.losses), 1e-7));
    // Unlikelihood: -(log p_w - alpha log p_l) = -(-2 + 0.5 * 5) = -0.5.
    // Hinge (SLiC): max(0, 1 - beta Delta) = 1 - 0.2 at beta 0.1, 0 once beta Delta >= 1.
    assert!(close(v(&pref(PrefLoss::Hinge { beta: 0.1 }, &pc, &pr, &rc, &rr).losses), 0.8, 1e-6));
    assert!(close(v(&pref(PrefLoss::Hinge { beta: 1.0 }, &pc, &pr, &rc, &rr).losses), 0.0, 1e-7));
    let ul = pref(PrefLoss::Unlikelihood { alpha: 0.5 }, &pc, &pr, &rc, &rr);
    assert!(close(v(&ul.losses), -0.5, 1e-6) && ul.rewards.is_none());
    // Preferred-FT: token-mean NLL of the chosen: (2 + 4) / (3 + 1) over the batch.
    let (pc2, tokens) = (t(&[-2.0, -4.0]), t(&[3.0, 1.0]));
    let ft = preference_loss(
        PrefLoss::PreferredFt {},
        &PairLogps {
            policy_chosen: &pc2,
            policy_rejected: &pc2,
            reference_chosen: &pc2,
            reference_rejected: &pc2,
            chosen_tokens: &tokens,
            rejected_tokens: &tokens,
            chosen_prompt: None,
        },
    );
    assert!(close(ft.batch_loss().double_value(&[]), 1.5, 1e-6));
    // The batch loss of the others is the mean over pairs.
    assert!(close(
        pref(
            PrefLoss::Dpo { beta: 0.1 },
            &t(&[-2.0, -3.0]),
            &t(&[-5.0, -3.0]),
            &t(&[-3.0, -3.0]),
            &t(&[-4.0, -3.0])
        )
        .batch_loss()
        .double_value(&[]),
        (0.5981388693815918 + std::f64::consts::LN_2) / 2.0,
        1e-6
    ));
}

#[test]
fn reward_model_loss_matches_hand_computed_values() {
    let (c, r) = (t(&[1.0, -1.0]), t(&[0.0, 0.0]));
    // mean(-log sigmoid(1), -log sigmoid(-1)) and accuracy 1/2.
    let (loss, acc) = reward_loss(&c, &r, 0.0, 0.0);
    assert!(close(loss.double_value(&[]), (0.31326168751822286 + 1.3132616875182228) / 2.0, 1e-6));
    assert!(close(acc.double_value(&[]), 0.5, 1e-7));
    // One tie rule for every accuracy over pairs: a tie counts one half (1, 1/2, 0 here).
    let (_, acc) = reward_loss(&t(&[1.0, 0.0, -1.0]), &t(&[0.0, 0.0, 0.0]), 0.0, 0.0);
    assert!(close(acc.double_value(&[]), 0.5, 1e-7), "{}", acc.double_value(&[]));
    let lp = t(&[-3.0, -2.0]);
    let out = pref(PrefLoss::Dpo { beta: 0.1 }, &lp, &lp, &lp, &lp);
    let (c, r) = out.rewards.unwrap();
    let right = alignlab::algo::common::pair_right(&c, &r);
    assert_eq!(Vec::<f64>::try_from(right).unwrap(), vec![0.5, 0.5]);
    // A margin of 0.5 on the first pair alone: -log sigmoid(0.5); centering adds coef * (1+0)^2.
    let (c1, r1) = (t(&[1.0]), t(&[0.0]));
    assert!(close(reward_loss(&c1, &r1, 0.5, 0.0).0.double_value(&[]), 0.4740769841801067, 1e-6));
    assert!(close(reward_loss(&c1, &r1, 0.5, 0.01).0.double_value(&[]), 0.4840769841801067, 1e-6));
}

fn tiny_gpt(seed: i64, vs: &nn::VarStore) -> Gpt {
    let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(seed);
    Gpt::new(&vs.root(), &GptConfig::sized(16, 16, 1, 2, 16))
}

fn toy_pairs() -> Vec<Pair> {
    let p = |prompt: &[i64], chosen: &[i64], rejected: &[i64]| Pair {
        prompt: prompt.to_vec(),
        chosen: chosen.to_vec(),
        rejected: rejected.to_vec(),
        gold_chosen: 1.0,
        gold_rejected: 0.0,
    };
    vec![
        p(&[1, 5, 6], &[7, 8, 2], &[9, 2]),
        p(&[1, 4], &[10, 11, 12, 2], &[13, 14, 2]),
        p(&[1, 3, 3, 3], &[5, 2], &[6, 7, 8, 9]),
    ]
}

fn grads(vs: &nn::VarStore) -> Vec<Tensor> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.iter().map(|(_, v)| v.grad().copy()).collect()
}

#[test]
fn dpo_gradient_is_the_weighted_likelihood_gradient() {
    // grad L = -(beta / B) sum_i sigmoid(r_l - r_w) (grad log pi(y_w) - grad log pi(y_l))  (DPO Eq. 8)
    let beta = 0.7;
    let vs = nn::VarStore::new(Device::Cpu);
    let policy = tiny_gpt(1, &vs);
    let ref_vs = nn::VarStore::new(Device::Cpu);
    let reference = tiny_gpt(2, &ref_vs);
    let data = PairTensors::new(&toy_pairs(), Device::Cpu);
    let b = data.batch(&[0, 1, 2]);
    let (rc, rr) = tch::no_grad(|| {
        (
            response_logps(&reference, &b.prompt, &b.prompt_valid, &b.chosen, &b.chosen_mask),
            response_logps(&reference, &b.prompt, &b.prompt_valid, &b.rejected, &b.rejected_mask),
        )
    });
    let logps = |vs: &nn::VarStore| {
        for v in vs.variables().values() {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        (
            response_logps(&policy, &b.prompt, &b.prompt_valid, &b.chosen, &b.chosen_mask),
            response_logps(&policy, &b.prompt, &b.prompt_valid, &b.rejected, &b.rejected_mask),
        )
    };
    // Autograd through the loss.
    let (pc, pr) = logps(&vs);
    let out = pref(PrefLoss::Dpo { beta }, &pc, &pr, &rc, &rr);
    out.batch_loss().backward();
    let auto = grads(&vs);
    let (chosen, rejected) = out.rewards.as_ref().unwrap();
    let weights: Vec<f64> =
        Vec::try_from((rejected - chosen).sigmoid().to_kind(Kind::Double)).unwrap();
    assert!(
        weights.iter().any(|w| (w - 0.5).abs() > 0.01),
        "the toy batch must not sit at zero margin"
    );
    // The closed form, pair by pair.
    let mut expected: Vec<Tensor> = auto.iter().map(|g| g.zeros_like()).collect();
    for (i, w) in weights.iter().enumerate() {
        let (pc, pr) = logps(&vs);
        (pc.get(i as i64) - pr.get(i as i64)).backward();
        for (e, g) in expected.iter_mut().zip(grads(&vs)) {
            *e = &*e + g * (-beta * w / 3.0);
        }
    }
    let mut worst: f64 = 0.0;
    for (a, e) in auto.iter().zip(&expected) {
        worst = worst.max((a - e).abs().max().double_value(&[]));
    }
    let scale = expected.iter().map(|e| e.abs().max().double_value(&[])).fold(0.0, f64::max);
    assert!(scale > 1e-3, "gradients vanish: the test would be empty");
    assert!(worst < 1e-5 * scale.max(1.0), "autograd and Eq. 8 differ by {worst}");
}

fn tabular() -> (TabularWorld, Tensor, Vec<Vec<f64>>) {
    let w = TabularWorld::new(&TabularConfig { n_prompts: 3, n_words: 3, length: 2 }, 7);
    let reference = w.random_table(1.0, 7);
    let ref_probs = to_rows(&w.table_logprobs(&reference).exp());
    (w, reference, ref_probs)
}

#[test]
fn tabular_policy_is_a_distribution_and_exact_helpers_hold() {
    let (w, reference, ref_probs) = tabular();
    assert_eq!(w.n_responses(), 9);
    assert_eq!(w.n_nodes(), 4);
    for row in &ref_probs {
        assert!(close(row.iter().sum::<f64>(), 1.0, 1e-6));
    }
    // log pi(y) is the sum of the two per-node log-softmaxes, computed by hand.
    let ls = reference.log_softmax(-1, Kind::Double);
    let (x, y1, y2) = (1i64, 2i64, 0i64);
    let by_hand = ls.double_value(&[x, 0, y1]) + ls.double_value(&[x, 1 + y1, y2]);
    assert!(close(ref_probs[x as usize][(y1 * 3 + y2) as usize].ln(), by_hand, 1e-6));
    // pi* at beta -> infinity is pi_ref; at small beta it concentrates on the best response.
    let far = w.optimal(
        &ref_probs.iter().map(|r| r.iter().map(|p| p.ln()).collect()).collect::<Vec<Vec<f64>>>(),
        1e6,
    );
    assert!(tv(&far[0], &ref_probs[0]) < 1e-5 && kl(&far[0], &ref_probs[0]).abs() < 1e-6);
    let sharp = w.optimal(
        &ref_probs.iter().map(|r| r.iter().map(|p| p.ln()).collect()).collect::<Vec<Vec<f64>>>(),
        1e-3,
    );
    let best = (0..9).max_by(|&a, &b| w.reward[0][a].total_cmp(&w.reward[0][b])).unwrap();
    assert!(sharp[0][best] > 0.999);
}

fn log_rows(p: &[Vec<f64>]) -> Vec<Vec<f64>> {
    p.iter().map(|r| r.iter().map(|v| v.ln()).collect()).collect()
}

#[test]
fn tabular_dpo_on_bradley_terry_pairs_reaches_the_optimum() {
    // Labels p(y1 > y2) = sigmoid(r1 - r2) (temperature 1), pairs drawn from pi_ref: the DPO
    // optimum is pi* proportional to pi_ref exp(r / beta) (Rafailov et al., Eq. 4 and Thm 1).
    let (w, reference, ref_probs) = tabular();
    let counts =
        w.sample_pair_counts(&ref_probs, 2_000_000, Labels::BradleyTerry { temperature: 1.0 }, 11);
    for beta in [0.1, 1.0] {
        let target = w.optimal(&log_rows(&ref_probs), beta);
        let fitted = w.fit_preference(&reference, &counts, PrefLoss::Dpo { beta }, 1500, 0.05);
        let mean_tv = |p: &Vec<Vec<f64>>| {
            p.iter().zip(&target).map(|(a, b)| tv(a, b)).sum::<f64>() / p.len() as f64
        };
        let (start, end) = (mean_tv(&ref_probs), mean_tv(&fitted));
        eprintln!("beta {beta}: TV(pi_ref, pi*) {start:.4}, TV(pi_DPO, pi*) {end:.4}");
        assert!(
            start > 0.08,
            "pi* too close to pi_ref at beta {beta} ({start}): the test would be empty"
        );
        assert!(end <= 0.05, "DPO at beta {beta} ends at TV {end} from pi*");
    }
}

#[test]
fn tabular_deterministic_labels_dpo_collapses_ipo_stays_bounded() {
    // Azar et al. (2023), section 4.2: with deterministic preferences DPO's optimum puts zero
    // mass on every dispreferred response whatever beta; IPO's regularisation keeps it finite.
    let (w, reference, ref_probs) = tabular();
    let counts = w.sample_pair_counts(&ref_probs, 200_000, Labels::Deterministic, 3);
    let worst: Vec<usize> = (0..3)
        .map(|x| (0..9).min_by(|&a, &b| w.reward[x][a].total_cmp(&w.reward[x][b])).unwrap())
        .collect();
    let mass = |p: &Vec<Vec<f64>>| (0..3).map(|x| p[x][worst[x]]).fold(0.0, f64::max);
    for beta in [0.1, 1.0] {
        let dpo_short = w.fit_preference(&reference, &counts, PrefLoss::Dpo { beta }, 500, 0.05);
        let dpo_long = w.fit_preference(&reference, &counts, PrefLoss::Dpo { beta }, 2000, 0.05);
        let ipo_short = w.fit_preference(
            &reference,
            &counts,
            PrefLoss::Ipo { beta, length_normalize: false },
            1000,
            0.05,
        );
        let ipo_long = w.fit_preference(
            &reference,
            &counts,
            PrefLoss::Ipo { beta, length_normalize: false },
            3000,
            0.05,
        );
        eprintln!(
            "beta {beta}: worst mass ref {:.2e}, DPO {:.2e} -> {:.2e}, IPO {:.2e} -> {:.2e}",
            mass(&ref_probs),
            mass(&dpo_short),
            mass(&dpo_long),
            mass(&ipo_short),
            mass(&ipo_long)
        );
        assert!(mass(&dpo_long) < 1e-3, "DPO keeps {} on a dispreferred response", mass(&dpo_long));
        assert!(mass(&dpo_long) < mass(&dpo_short) / 2.0, "DPO's worst mass is not still falling");
        assert!(
            mass(&ipo_long) > 100.0 * mass(&dpo_long),
            "IPO collapsed like DPO: {}",
            mass(&ipo_long)
        );
        assert!(
            close(mass(&ipo_long), mass(&ipo_short), 0.1 * mass(&ipo_long)),
            "IPO has not converged to a finite optimum"
        );
    }
}

fn sentiment() -> SentimentWorld {
    SentimentWorld::new(
        &SentimentConfig {
            n_positive: 4,
            n_negative: 4,
            n_neutral: 6,
            tilt: 1.0,
            sharpness: 2.0,
            min_len: 4,
            max_len: 10,
            stop_prob: 0.2,
            prompt_min_len: 2,
            prompt_max_len: 4,
            n_train: 10,
            n_val: 10,
            n_train_prompts: 10,
            n_eval_prompts: 16,
            labeller: None,
        },
        1,
    )
}

/// Two different random models over the world's vocabulary (seeds 3 and 4).
fn two_policies(world: &SentimentWorld, vs_a: &nn::VarStore, vs_b: &nn::VarStore) -> (Gpt, Gpt) {
    let cfg = GptConfig::sized(world.corpus.vocab.size() as i64, 24, 1, 2, 16);
    let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(3);
    let p = Gpt::new(&vs_a.root(), &cfg);
    tch::manual_seed(4);
    (p, Gpt::new(&vs_b.root(), &cfg))
}

#[test]
fn exact_kl_and_sampled_estimators_agree() {
    let world = sentiment();
    let (vs_a, vs_b) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (policy, reference) = two_policies(&world, &vs_a, &vs_b);
    // Sharpen the policy so the two differ well beyond the sampling noise.
    tch::no_grad(|| {
        for (_, mut v) in vs_a.variables() {
            let _ = v.g_mul_scalar_(3.0);
        }
    });
    let settings =
        SampleSettings { temperature: 1.0, top_k: 0, max_new_tokens: 8, use_cache: true };
    let ev = Evaluator::new(&world, &reference, None, None, (128, 0.5), settings, 5);
    let (named, s) = {
        let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        ev.evaluate(&policy)
    };
    let exact = mean_ci(&s.kl);
    assert!(exact.mean > 0.05, "the two policies must differ: KL {}", exact.mean);
    assert!(s.kl.iter().all(|&k| k >= -1e-6), "per-position KL is never negative");
    for (name, est) in [("k1", &s.k1), ("k3", &s.k3)] {
        let diff: Vec<f64> = est.iter().zip(&s.kl).map(|(a, b)| a - b).collect();
        let d = mean_ci(&diff);
        eprintln!("exact {exact}, {name} - exact {d}");
        // Within about four standard errors (twice the 95% half-width): an unbiased estimator
        // fails this once in about 15,000 draws; a 95% bound would fail one world in twenty.
        assert!(d.mean.abs() <= 2.0 * d.ci95, "{name} disagrees with the exact KL: difference {d}");
    }
    assert!(s.k3.iter().all(|&k| k >= -1e-6), "k3 is never negative");
    // k2 = (log r)^2 / 2 is biased at this divergence: its difference from the exact KL lies
    // outside its interval.
    let d2 = mean_ci(&s.k2.iter().zip(&s.kl).map(|(a, b)| a - b).collect::<Vec<_>>());
    eprintln!("k2 - exact {d2}");
    assert!(d2.mean.abs() > d2.ci95, "k2 shows no bias: {d2}");
    let get = |k: &str| named.iter().find(|(n, _)| n == k).unwrap().1;
    assert!(close(get("eval/kl"), exact.mean, 1e-9));
    // Squeezing: the sharpened policy puts more mass on its greedy response than the reference
    // does on its own.
    let (named_ref, _) = {
        let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        ev.evaluate(&reference)
    };
    let greedy_ref = named_ref.iter().find(|(n, _)| n == "eval/greedy_logp").unwrap().1;
    assert!(
        get("eval/greedy_logp") <= 0.0 && get("eval/greedy_logp") > greedy_ref + 1.0,
        "greedy log-mass {} against the reference's {greedy_ref}",
        get("eval/greedy_logp")
    );
    // The same policy as the reference: every estimator is exactly zero.
    let ev0 = Evaluator::new(&world, &policy, None, None, (4, 0.5), ev.settings.clone(), 5);
    let (_, s0) = ev0.evaluate(&policy);
    assert!(s0.kl.iter().chain(&s0.k1).chain(&s0.k3).all(|k| k.abs() < 1e-5));
}

/// With top-k the policy samples from its truncated distribution, and the KL is that one's. At
/// top_k = 1 the policy is deterministic: KL = -sum log pi_ref(y) of the greedy tokens, which is
/// also what k1 computes from the sampled tokens; the untruncated KL of the same policy differs.
#[test]
fn top_k_kl_is_the_truncated_distributions() {
    let world = sentiment();
    let (vs_a, vs_b) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
    let (policy, reference) = two_policies(&world, &vs_a, &vs_b);
    let top1 = SampleSettings { temperature: 1.0, top_k: 1, max_new_tokens: 6, use_cache: true };
    let greedy = SampleSettings { temperature: 0.0, ..top1.clone() };
    let (_, s1) =
        Evaluator::new(&world, &reference, None, None, (1, 0.5), top1, 5).evaluate(&policy);
    let (_, sg) =
        Evaluator::new(&world, &reference, None, None, (1, 0.5), greedy, 5).evaluate(&policy);
    for (i, ((kl, k1), full)) in s1.kl.iter().zip(&s1.k1).zip(&sg.kl).enumerate() {
        assert!((kl - k1).abs() < 1e-4, "row {i}: truncated KL {kl} vs -sum log pi_ref(y) {k1}");
        assert!(
            (kl - full).abs() > 1e-3,
            "row {i}: the truncated KL {kl} equals the full one {full}"
        );
    }
}

/// Chosen and rejected packed after one prompt (`pair_logps`) must give the log-probs of two
/// separate passes (`response_logps`), and the same gradient: left-padded prompts, responses
/// of different widths with right padding, a model with more than one block.
#[test]
fn packed_pair_logps_equal_separate_passes() {
    use alignlab::algo::common::pair_logps;
    use alignlab::model::left_pad;
    let _g = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(3);
    let vs = nn::VarStore::new(Device::Cpu);
    let gpt = Gpt::new(&vs.root(), &GptConfig::sized(20, 16, 3, 2, 32));
    let (prompt, valid) = left_pad(&[vec![1, 5, 6, 7], vec![1, 8], vec![1, 9, 10]], Device::Cpu);
    let chosen = Tensor::from_slice(&[4i64, 5, 2, 11, 2, 0, 12, 13, 14]).view([3, 3]);
    let chosen_mask = chosen.ne(0).to_kind(Kind::Float);
    let rejected = Tensor::from_slice(&[7i64, 8, 9, 2, 3, 2, 0, 0, 15, 16, 17, 18]).view([3, 4]);
    let rejected_mask = rejected.ne(0).to_kind(Kind::Float);
    // 4 + 3 + 4 = 11 tokens; positions stay below block_size 16 although a third response
    // would not fit.
    let batch = alignlab::data::PairBatch {
        prompt: prompt.shallow_clone(),
        prompt_valid: valid.shallow_clone(),
        chosen: chosen.shallow_clone(),
        chosen_mask: chosen_mask.shallow_clone(),
        rejected: rejected.shallow_clone(),
        rejected_mask: rejected_mask.shallow_clone(),
    };
    let (pc, pr) = pair_logps(&gpt, &batch);
    let sc = response_logps(&gpt, &prompt, &valid, &chosen, &chosen_mask);
    let sr = response_logps(&gpt, &prompt, &valid, &rejected, &rejected_mask);
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    assert!(
        diff(&pc, &sc) < 1e-5 && diff(&pr, &sr) < 1e-5,
        "packed {pc:?} {pr:?} vs separate {sc:?} {sr:?}"
    );
    // The rejected response really is scored (not a copy of the chosen one).
    assert!(diff(&pc, &pr) > 0.1);
    let vars = vs.trainable_variables();
    let g_packed = Tensor::run_backward(&[(&pc * 1.5 - &pr).sum(Kind::Float)], &vars, false, false);
    let g_sep = Tensor::run_backward(&[(&sc * 1.5 - &sr).sum(Kind::Float)], &vars, false, false);
    for (a, b) in g_packed.iter().zip(&g_sep) {
        assert!(diff(a, b) < 1e-5, "gradients differ by {}", diff(a, b));
    }
    // With the prompt (TRL's ORPO NLL): the same responses, and each prompt's own log-prob
    // after `<bos>`, as a separate pass scores the prompt as a response to `<bos>` alone.
    let (qc, qr, (ps, pn)) = alignlab::algo::common::pair_logps_with_prompt(&gpt, &batch);
    assert!(diff(&qc, &pc) < 1e-5 && diff(&qr, &pr) < 1e-5);
    let (bos, bos_valid) = left_pad(&[vec![], vec![], vec![]], Device::Cpu);
    let as_response = Tensor::from_slice(&[1i64, 5, 6, 7, 1, 8, 0, 0, 1, 9, 10, 0]).view([3, 4]);
    let as_mask = as_response.ne(0).to_kind(Kind::Float);
    let sp = response_logps(&gpt, &bos, &bos_valid, &as_response, &as_mask);
    assert!(diff(&ps, &sp) < 1e-5, "prompt {ps:?} vs separate {sp:?}");
    assert_eq!(Vec::<f64>::try_from(pn).unwrap(), vec![4.0, 2.0, 3.0]);
}

/// ORPO's NLL conventions on one batch by hand: chosen sums -2 and -3 over 2 and 3 tokens,
/// prompts -1 and -4 over 1 and 2: alignlab's per-pair token mean is 1 on average; TRL's one
/// token mean over prompts and responses is 10 / 8; the odds-ratio term is the same in both.
#[test]
fn orpo_nll_conventions_by_hand() {
    use alignlab::algo::dpo::OrpoNll;
    let (pc, pr) = (t(&[-2.0, -3.0]), t(&[-4.0, -6.0]));
    let (ntok, psum, pcount) = (t(&[2.0, 3.0]), t(&[-1.0, -4.0]), t(&[1.0, 2.0]));
    let loss = |nll: OrpoNll| {
        preference_loss(
            PrefLoss::Orpo { lambda: 0.5, nll },
            &PairLogps {
                policy_chosen: &pc,
                policy_rejected: &pr,
                reference_chosen: &pc,
                reference_rejected: &pr,
                chosen_tokens: &ntok,
                rejected_tokens: &ntok,
                chosen_prompt: Some((&psum, &pcount)),
            },
        )
        .batch_loss()
        .double_value(&[])
    };
    let (ours, trl) = (loss(OrpoNll::Response), loss(OrpoNll::Sequence));
    assert!(close(trl - ours, 1.25 - 1.0, 1e-6), "{trl} - {ours}");
    // The setting is named only when it is not the default.
    let l = PrefLoss::Orpo { lambda: 0.5, nll: OrpoNll::Sequence };
    assert_eq!(l.setting(), "lambda=0.5;nll=sequence");
    assert_eq!(PrefLoss::Orpo { lambda: 0.5, nll: OrpoNll::Response }.setting(), "lambda=0.5");
}

/// At step 0 the policy is the reference: every held-out pair's log-ratios tie, and a tie counts
/// one half (a coin flip's score), so the implicit-reward accuracy is 0.5, not 0.
#[test]
fn implicit_accuracy_counts_ties_one_half() {
    let world = sentiment();
    let cfg = GptConfig::sized(world.corpus.vocab.size() as i64, 24, 1, 2, 16);
    let vs = nn::VarStore::new(Device::Cpu);
    let policy = {
        let _lock = RNG_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(3);
        Gpt::new(&vs.root(), &cfg)
    };
    let data = PairTensors::new(&toy_pairs(), Device::Cpu);
    let refs = alignlab::algo::dpo::reference_logps(&policy, &data, 512);
    let settings =
        SampleSettings { temperature: 1.0, top_k: 0, max_new_tokens: 4, use_cache: true };
    let ev = Evaluator::new(&world, &policy, None, Some((&data, &refs)), (1, 0.5), settings, 5);
    let (named, _) = ev.evaluate(&policy);
    let acc = named.iter().find(|(k, _)| k == "eval/implicit_acc").unwrap().1;
    assert_eq!(acc, 0.5);
}

#[test]
fn online_methods_never_roll_out_on_the_preference_validation_prompts() {
    use alignlab::data::{Pair, PrefData, RolloutPrompts};
    let pair = |p: Vec<i64>| Pair {
        prompt: p,
        chosen: vec![5],
        rejected: vec![6],
        gold_chosen: 1.0,
        gold_rejected: 0.0,
    };
    let data = PrefData {
        train: vec![pair(vec![3, 4]), pair(vec![3, 4]), pair(vec![7])],
        val: vec![pair(vec![8, 9]), pair(vec![3])],
    };
    let world = vec![vec![3, 4], vec![8, 9], vec![7], vec![3], vec![10]];
    // "train": the world's order, less every prompt of a validation pair (a prompt without pairs,
    // [10], whose completions all tied, stays a training prompt).
    assert_eq!(
        data.rollout_prompts(&world, RolloutPrompts::Train),
        vec![vec![3, 4], vec![7], vec![10]]
    );
    assert_eq!(data.rollout_prompts(&world, RolloutPrompts::All), world);
}
