//! The preference-loss zoo: every loss against values computed here by hand at two points, its
//! gradient against a finite difference, the conventions that tell losses apart (IPO's length
//! normalisation, robust against conservative DPO), and where each goes in the tabular world.

mod common;
use alignlab::algo::dpo::{preference_loss, LossOut, PairLogps, PrefLoss};
use alignlab::data::Labels;
use alignlab::world::tabular::to_rows;
use common::{mean_tv, tabular};
use tch::{Kind, Tensor};

fn d(v: &[f64]) -> Tensor {
    Tensor::from_slice(v).to_kind(Kind::Double)
}

fn ls(z: f64) -> f64 {
    -(1.0 + (-z).exp()).ln() // log sigmoid
}

fn sg(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Two pairs: (policy chosen, policy rejected, reference chosen, reference rejected, |y_w|, |y_l|).
const PAIRS: [[f64; 6]; 2] =
    [[-2.0, -5.0, -3.0, -4.0, 2.0, 4.0], [-6.0, -3.0, -5.0, -4.0, 3.0, 1.0]];

fn run(loss: PrefLoss, pairs: &[[f64; 6]], pc: &Tensor, pr: &Tensor) -> LossOut {
    let col = |j: usize| d(&pairs.iter().map(|p| p[j]).collect::<Vec<_>>());
    let (rc, rr, lw, ll) = (col(2), col(3), col(4), col(5));
    preference_loss(
        loss,
        &PairLogps {
            policy_chosen: pc,
            policy_rejected: pr,
            reference_chosen: &rc,
            reference_rejected: &rr,
            chosen_tokens: &lw,
            rejected_tokens: &ll,
            chosen_prompt: None,
        },
    )
}

/// A per-pair loss by hand: (pc, pr, rc, rr, |y_w|, |y_l|) and the batch -> the loss.
type ByHand = Box<dyn Fn(&[f64; 6], &[[f64; 6]]) -> f64>;

/// Every loss with its parameters, and the per-pair loss computed by hand from
/// (pc, pr, rc, rr, |y_w|, |y_l|) and the batch (KTO's reference point).
fn zoo() -> Vec<(PrefLoss, ByHand)> {
    let b = 0.5;
    let eps = 0.1;
    vec![
        (PrefLoss::Dpo { beta: b }, Box::new(move |p, _| -ls(b * ((p[0] - p[2]) - (p[1] - p[3]))))),
        (
            PrefLoss::Ipo { beta: b, length_normalize: false },
            Box::new(move |p, _| ((p[0] - p[2]) - (p[1] - p[3]) - 1.0 / (2.0 * b)).powi(2)),
        ),
        (
            PrefLoss::Ipo { beta: b, length_normalize: true },
            Box::new(move |p, _| {
                ((p[0] - p[2]) / p[4] - (p[1] - p[3]) / p[5] - 1.0 / (2.0 * b)).powi(2)
            }),
        ),
        (
            PrefLoss::Cdpo { beta: b, label_smoothing: eps },
            Box::new(move |p, _| {
                let z = b * ((p[0] - p[2]) - (p[1] - p[3]));
                -(1.0 - eps) * ls(z) - eps * ls(-z)
            }),
        ),
        // beta 0.3: off the kink at beta Delta = 1.
        (
            PrefLoss::Hinge { beta: 0.3 },
            Box::new(|p, _| (1.0 - 0.3 * ((p[0] - p[2]) - (p[1] - p[3]))).max(0.0)),
        ),
        (
            PrefLoss::Robust { beta: b, label_smoothing: eps },
            Box::new(move |p, _| {
                let z = b * ((p[0] - p[2]) - (p[1] - p[3]));
                ((1.0 - eps) * -ls(z) - eps * -ls(-z)) / (1.0 - 2.0 * eps)
            }),
        ),
        (
            PrefLoss::Simpo { beta: 2.0, gamma: 0.5 },
            Box::new(|p, _| -ls(2.0 * (p[0] / p[4] - p[1] / p[5]) - 0.5)),
        ),
        (
            PrefLoss::Kto { beta: b, lambda_d: 1.0, lambda_u: 1.5 },
            Box::new(move |p, all| {
                let z0 = (all.iter().map(|q| ((q[0] - q[2]) + (q[1] - q[3])) / 2.0).sum::<f64>()
                    / all.len() as f64)
                    .max(0.0);
                (1.0 * (1.0 - sg(b * ((p[0] - p[2]) - z0)))
                    + 1.5 * (1.0 - sg(b * (z0 - (p[1] - p[3])))))
                    / 2.0
            }),
        ),
        (
            PrefLoss::Orpo { lambda: 0.2, nll: Default::default() },
            Box::new(|p, _| {
                let (mw, ml) = (p[0] / p[4], p[1] / p[5]);
                let odds = |m: f64| m - (1.0 - m.exp()).ln();
                -mw - 0.2 * ls(odds(mw) - odds(ml))
            }),
        ),
        (
            PrefLoss::ExoPair { beta: b, label_smoothing: 1e-3 },
            Box::new(move |p, _| {
                let z = b * ((p[0] - p[2]) - (p[1] - p[3]));
                sg(z) * (ls(z) - (1.0f64 - 1e-3).ln()) + sg(-z) * (ls(-z) - 1e-3f64.ln())
            }),
        ),
        (
            PrefLoss::NcaPair { beta: b },
            Box::new(move |p, _| {
                let (w, r) = (b * (p[0] - p[2]), b * (p[1] - p[3]));
                -ls(w) - 0.5 * ls(-w) - 0.5 * ls(-r)
            }),
        ),
        (PrefLoss::Unlikelihood { alpha: 0.3 }, Box::new(|p, _| -(p[0] - 0.3 * p[1]))),
    ]
}

#[test]
fn every_loss_matches_its_hand_computed_values_at_two_points() {
    // KTO's reference point needs a batch whose mean log-ratio is positive: a third pair.
    let with_z0 = [PAIRS[0], [-1.0, -2.0, -3.0, -3.0, 2.0, 2.0]];
    for (loss, by_hand) in zoo() {
        let pairs: &[[f64; 6]] =
            if matches!(loss, PrefLoss::Kto { .. }) { &with_z0 } else { &PAIRS };
        let (pc, pr) = (
            d(&pairs.iter().map(|p| p[0]).collect::<Vec<_>>()),
            d(&pairs.iter().map(|p| p[1]).collect::<Vec<_>>()),
        );
        let got: Vec<f64> = Vec::try_from(run(loss, pairs, &pc, &pr).losses).unwrap();
        for (i, p) in pairs.iter().enumerate() {
            let want = by_hand(p, pairs);
            assert!(
                (got[i] - want).abs() < 1e-9,
                "{} at point {i}: {} against {want}",
                loss.name(),
                got[i]
            );
        }
    }
    // The losses are not all the same function: every pair of them differs somewhere.
    let values: Vec<Vec<f64>> =
        zoo().iter().map(|(_, f)| PAIRS.iter().map(|p| f(p, &PAIRS)).collect()).collect();
    for i in 0..values.len() {
        for j in 0..i {
            assert_ne!(values[i], values[j], "losses {i} and {j} agree at both points");
        }
    }
}

#[test]
fn every_loss_gradient_matches_a_finite_difference() {
    // KTO's reference point z0 carries no gradient by design; at these points the batch's mean
    // log-ratio is negative, so z0 sits at its clamp (0) and a finite difference does not move it.
    let kto_points = [[-3.0, -5.0, -3.0, -4.0, 2.0, 4.0], [-6.0, -4.0, -5.0, -4.0, 3.0, 1.0]];
    for (loss, _) in zoo() {
        let points = if matches!(loss, PrefLoss::Kto { .. }) { kto_points } else { PAIRS };
        for p in points {
            // The loss of one pair (in double precision) as a function of the policy's two log-probs.
            let f = |pc: f64, pr: f64| {
                run(loss, &[p], &d(&[pc]), &d(&[pr])).losses.sum(Kind::Double).double_value(&[])
            };
            let (pc, pr) = (d(&[p[0]]).set_requires_grad(true), d(&[p[1]]).set_requires_grad(true));
            run(loss, &[p], &pc, &pr).losses.sum(Kind::Double).backward();
            let h = 1e-6;
            let fd_c = (f(p[0] + h, p[1]) - f(p[0] - h, p[1])) / (2.0 * h);
            let fd_r = (f(p[0], p[1] + h) - f(p[0], p[1] - h)) / (2.0 * h);
            let (gc, gr) = (pc.grad().double_value(&[0]), pr.grad().double_value(&[0]));
            assert!(
                (gc - fd_c).abs() < 1e-5 && (gr - fd_r).abs() < 1e-5,
                "{}: gradient ({gc}, {gr}) against finite difference ({fd_c}, {fd_r})",
                loss.name()
            );
        }
    }
}

#[test]
fn ipo_length_normalisation_is_the_summed_form_on_inputs_over_their_lengths() {
    let b = 0.3;
    for p in PAIRS {
        let normalised =
            run(PrefLoss::Ipo { beta: b, length_normalize: true }, &[p], &d(&[p[0]]), &d(&[p[1]]))
                .losses
                .double_value(&[0]);
        let scaled = [p[0] / p[4], p[1] / p[5], p[2] / p[4], p[3] / p[5], 1.0, 1.0];
        let summed = run(
            PrefLoss::Ipo { beta: b, length_normalize: false },
            &[scaled],
            &d(&[scaled[0]]),
            &d(&[scaled[1]]),
        )
        .losses
        .double_value(&[0]);
        assert!((normalised - summed).abs() < 1e-12);
        let plain =
            run(PrefLoss::Ipo { beta: b, length_normalize: false }, &[p], &d(&[p[0]]), &d(&[p[1]]))
                .losses
                .double_value(&[0]);
        assert!((normalised - plain).abs() > 1e-3, "the lengths must matter at this point");
    }
}

#[test]
fn robust_is_unbiased_under_flipped_labels_and_conservative_dpo_is_not() {
    let (b, eps) = (0.7, 0.2);
    for delta in [-3.0, -0.5, 0.0, 0.8, 2.5] {
        // A pair and its flipped version: Delta and -Delta.
        let value = |loss: PrefLoss, delta: f64| {
            run(loss, &[[delta, 0.0, 0.0, 0.0, 1.0, 1.0]], &d(&[delta]), &d(&[0.0]))
                .losses
                .double_value(&[0])
        };
        let clean = value(PrefLoss::Dpo { beta: b }, delta);
        let expect = |loss: PrefLoss| (1.0 - eps) * value(loss, delta) + eps * value(loss, -delta);
        assert!(
            (expect(PrefLoss::Robust { beta: b, label_smoothing: eps }) - clean).abs() < 1e-12,
            "robust is biased at Delta {delta}"
        );
        if delta != 0.0 {
            assert!(
                (expect(PrefLoss::Cdpo { beta: b, label_smoothing: eps }) - clean).abs() > 1e-3,
                "cDPO would be unbiased at Delta {delta}"
            );
            assert!(
                (value(PrefLoss::Robust { beta: b, label_smoothing: eps }, delta)
                    - value(PrefLoss::Cdpo { beta: b, label_smoothing: eps }, delta))
                .abs()
                    > 1e-3
            );
        }
    }
}

/// Robust DPO on Bradley-Terry pairs whose labels flip at rate eps reaches pi* (it estimates the
/// clean loss); conservative DPO on the same pairs stops short of it.
#[test]
fn tabular_robust_dpo_reaches_pi_star_under_label_flips() {
    let (w, reference, _, ref_lp) = tabular();
    let (beta, eps) = (1.0, 0.2);
    let clean = w.sample_pair_counts(
        &to_rows(&w.table_logprobs(&reference).exp()),
        2_000_000,
        Labels::BradleyTerry { temperature: 1.0 },
        11,
    );
    // Expected counts after flips: (1 - eps) c[a][b] + eps c[b][a].
    let flipped: Vec<Vec<Vec<f64>>> = clean
        .iter()
        .map(|c| {
            (0..c.len())
                .map(|a| (0..c.len()).map(|b| (1.0 - eps) * c[a][b] + eps * c[b][a]).collect())
                .collect()
        })
        .collect();
    let target = w.optimal(&ref_lp, beta);
    let robust = w.fit_preference(
        &reference,
        &flipped,
        PrefLoss::Robust { beta, label_smoothing: eps },
        2000,
        0.05,
    );
    let cdpo = w.fit_preference(
        &reference,
        &flipped,
        PrefLoss::Cdpo { beta, label_smoothing: eps },
        2000,
        0.05,
    );
    eprintln!(
        "TV to pi*: robust {:.4}, cDPO {:.4}",
        mean_tv(&robust, &target),
        mean_tv(&cdpo, &target)
    );
    assert!(
        mean_tv(&robust, &target) <= 0.02,
        "robust DPO ends at TV {}",
        mean_tv(&robust, &target)
    );
    assert!(mean_tv(&cdpo, &target) > 2.0 * mean_tv(&robust, &target));
}

/// The reference-free losses have no pi* to reach. On deterministic labels (the higher gold
/// reward always wins) SimPO drives each prompt's mass to its best response; ORPO moves mass
/// towards responses that win and off the worst one, which never wins.
#[test]
fn tabular_reference_free_losses_go_where_the_labels_point() {
    let (w, reference, ref_probs, _) = tabular();
    let det = w.sample_pair_counts(&ref_probs, 200_000, Labels::Deterministic, 3);
    let simpo =
        w.fit_preference(&reference, &det, PrefLoss::Simpo { beta: 2.0, gamma: 0.5 }, 2000, 0.05);
    let orpo = w.fit_preference(
        &reference,
        &det,
        PrefLoss::Orpo { lambda: 1.0, nll: Default::default() },
        2000,
        0.05,
    );
    for x in 0..ref_probs.len() {
        let order: Vec<usize> = {
            let mut o: Vec<usize> = (0..ref_probs[x].len()).collect();
            o.sort_by(|&a, &b| w.reward[x][b].total_cmp(&w.reward[x][a]));
            o
        };
        let (best, worst) = (order[0], *order.last().unwrap());
        eprintln!(
            "prompt {x}: best {:.3} -> SimPO {:.3}, ORPO {:.3}; worst {:.3} -> ORPO {:.4}",
            ref_probs[x][best], simpo[x][best], orpo[x][best], ref_probs[x][worst], orpo[x][worst]
        );
        assert!(
            simpo[x][best] > 0.9,
            "SimPO leaves {} on the best response of prompt {x}",
            simpo[x][best]
        );
        assert!(
            orpo[x][best] > ref_probs[x][best] && orpo[x][worst] < 0.1 * ref_probs[x][worst],
            "ORPO on prompt {x}"
        );
    }
}

/// IPO's fixed point in closed form. On pair counts n[a][b] (a chosen over b) the loss
/// sum n[a][b] (g_a - g_b - c)^2, g = log pi - log pi_ref and c = 1/(2 beta), is stationary where
/// L g = c (wins - losses), L the Laplacian of n + n^T: a linear system per prompt, solved here
/// (g up to a constant), then pi = pi_ref exp(g) / Z. The tabular IPO run must reach it.
#[test]
fn tabular_ipo_reaches_its_closed_form_fixed_point() {
    let (w, reference, ref_probs, _) = tabular();
    let counts =
        w.sample_pair_counts(&ref_probs, 200_000, Labels::BradleyTerry { temperature: 1.0 }, 13);
    for beta in [0.1, 1.0] {
        let c = 1.0 / (2.0 * beta);
        let target: Vec<Vec<f64>> = counts
            .iter()
            .zip(&ref_probs)
            .map(|(n, pref)| {
                let r = n.len();
                // Rows 1..r of L g = c (wins - losses) with g_0 = 0 (the gauge), by elimination.
                let mut a = vec![vec![0.0; r]; r];
                let mut rhs = vec![0.0; r];
                for y in 0..r {
                    for o in 0..r {
                        if o != y {
                            let both = n[y][o] + n[o][y];
                            a[y][y] += both;
                            a[y][o] -= both;
                            rhs[y] += c * (n[y][o] - n[o][y]);
                        }
                    }
                }
                let (mut m, mut b): (Vec<Vec<f64>>, Vec<f64>) =
                    ((1..r).map(|i| a[i][1..].to_vec()).collect(), rhs[1..].to_vec());
                let k = r - 1;
                for col in 0..k {
                    let piv = (col..k)
                        .max_by(|&i, &j| m[i][col].abs().total_cmp(&m[j][col].abs()))
                        .unwrap();
                    m.swap(col, piv);
                    b.swap(col, piv);
                    for row in 0..k {
                        if row != col {
                            let f = m[row][col] / m[col][col];
                            let pivot = m[col].clone();
                            for (x, p) in m[row][col..k].iter_mut().zip(&pivot[col..k]) {
                                *x -= f * p;
                            }
                            b[row] -= f * b[col];
                        }
                    }
                }
                let g: Vec<f64> =
                    std::iter::once(0.0).chain((0..k).map(|i| b[i] / m[i][i])).collect();
                let un: Vec<f64> = pref.iter().zip(&g).map(|(p, g)| p * g.exp()).collect();
                let z: f64 = un.iter().sum();
                un.iter().map(|u| u / z).collect()
            })
            .collect();
        let fitted = w.fit_preference(
            &reference,
            &counts,
            PrefLoss::Ipo { beta, length_normalize: false },
            3000,
            0.05,
        );
        eprintln!(
            "beta {beta}: TV(pi_ref, IPO's fixed point) {:.4}, TV(pi_IPO, it) {:.5}",
            mean_tv(&ref_probs, &target),
            mean_tv(&fitted, &target)
        );
        assert!(mean_tv(&ref_probs, &target) > 0.02, "the test would be empty");
        assert!(
            mean_tv(&fitted, &target) <= 0.002,
            "IPO ends at TV {} from its fixed point",
            mean_tv(&fitted, &target)
        );
    }
}
