//! The summarize world: the gold judge by hand, the reference process's exact likelihood
//! (normalised over every summary it can write), the optimal summary by enumeration, the SFT
//! loss mask and the win rate.

use alignlab::algo::sft::SeqData;
use alignlab::draw::Rng;
use alignlab::eval::win_rate;
use alignlab::world::{SummarizeConfig, SummarizeWorld, TextWorld, BOS, EOS, PAD};
use tch::Device;

fn cfg() -> SummarizeConfig {
    SummarizeConfig {
        n_facts: 12,
        n_filler: 6,
        doc_min_len: 6,
        doc_max_len: 9,
        max_facts: 4,
        n_train: 50,
        n_val: 20,
        n_train_prompts: 10,
        n_eval_prompts: 40,
        ..SummarizeConfig::default()
    }
}

fn world() -> SummarizeWorld {
    SummarizeWorld::new(&cfg(), 7)
}

fn sal(w: &SummarizeWorld, t: i64) -> f64 {
    w.salience[t as usize].unwrap()
}

#[test]
fn judge_by_hand() {
    let w = world();
    let p = &w.corpus.eval_prompts[0];
    let facts = w.doc_facts(p);
    assert!(facts.len() >= 2 && *p.last().unwrap() == w.sep);
    let (a, b) = (facts[0], facts[1]);
    let outside = (3..15).find(|t| !facts.contains(t)).unwrap();
    let filler = 3 + 12; // the first filler word
    let lp = 0.35;
    let close = |x: f64, y: f64| assert!((x - y).abs() < 1e-12, "{x} vs {y}");
    close(w.judge(p, &[]), 0.0);
    close(w.judge(p, &[a, EOS]), sal(&w, a) - lp);
    close(w.judge(p, &[a, b, EOS, outside, outside]), sal(&w, a) + sal(&w, b) - 2.0 * lp); // stops at <eos>
    close(w.judge(p, &[a, a]), sal(&w, a) - 2.0 * lp - 0.5); // a repeat
    close(w.judge(p, &[outside, a]), sal(&w, a) - 0.5 - 2.0 * lp); // a fact not in the document
    close(w.judge(p, &[filler, a]), sal(&w, a) - 2.0 * lp); // filler costs its length
                                                            // Order does not matter.
    close(w.judge(p, &[a, b]), w.judge(p, &[b, a]));
    // TextWorld::gold is the judge.
    close(w.gold(p, &[a, b]), w.judge(p, &[a, b]));
}

/// Every subsequence of the document's facts, in document order.
fn subsets(facts: &[i64]) -> Vec<Vec<i64>> {
    (0..1u32 << facts.len())
        .map(|m| {
            facts.iter().enumerate().filter(|(i, _)| m >> i & 1 == 1).map(|(_, &f)| f).collect()
        })
        .collect()
}

#[test]
fn reference_likelihood_is_normalised_and_optimal_is_the_argmax() {
    let w = world();
    for p in w.corpus.eval_prompts.iter().take(10) {
        let facts = w.doc_facts(p);
        let outside: Vec<i64> = (3..15).filter(|t| !facts.contains(t)).collect();
        let mut total = 0.0;
        let mut best = f64::NEG_INFINITY;
        for s in subsets(&facts) {
            total += w.reference_log_lik(p, &s).exp();
            for &h in &outside {
                total += w.reference_log_lik(p, &[s.clone(), vec![h]].concat()).exp();
            }
            best = best.max(w.judge(p, &s));
        }
        assert!((total - 1.0).abs() < 1e-9, "the reference process's probabilities sum to {total}");
        let opt = w.optimal_summary(p);
        assert!(
            (w.judge(p, &opt) - best).abs() < 1e-12,
            "optimal {} vs best subset {best}",
            w.judge(p, &opt)
        );
        // Summaries it cannot write: out of document order, or a repeat.
        if facts.len() >= 2 {
            assert_eq!(w.reference_log_lik(p, &[facts[1], facts[0]]), f64::NEG_INFINITY);
            assert_eq!(w.reference_log_lik(p, &[facts[0], facts[0]]), f64::NEG_INFINITY);
        }
    }
    // The references it samples all have a finite likelihood, and its frequency matches: the
    // probability of the optimal summary, estimated from 20000 draws.
    let p = &w.corpus.eval_prompts[0];
    let opt = w.optimal_summary(p);
    let mut rng = Rng::new(3);
    let n = 20000;
    let mut hits = 0;
    for _ in 0..n {
        let r = w.sample_reference(p, &mut rng);
        assert!(w.reference_log_lik(p, &r).is_finite());
        hits += (r == opt) as usize;
    }
    let (f, q) = (hits as f64 / n as f64, w.reference_log_lik(p, &opt).exp());
    assert!(
        (f - q).abs() < 4.0 * (q * (1.0 - q) / n as f64).sqrt() + 1e-9,
        "frequency {f} vs probability {q}"
    );
}

#[test]
fn labeller_is_off_policy_and_worse_than_references() {
    let w = world();
    let mut rng = Rng::new(5);
    let (mut lab, mut refs, mut opt) = (0.0, 0.0, 0.0);
    for (p, r) in w.corpus.eval_prompts.iter().zip(&w.eval_references) {
        let l = w.offpolicy_completion(p, 8, &mut rng);
        assert!(l.len() <= 8);
        lab += w.judge(p, &l);
        refs += w.judge(p, r);
        opt += w.judge(p, &w.optimal_summary(p));
    }
    assert!(lab < refs && refs <= opt, "labeller {lab}, references {refs}, optimal {opt}");
}

#[test]
fn sft_examples_score_the_summary_only() {
    let w = world();
    let ex = w.sft_examples(false);
    let (p, r) = &ex[0];
    let d = SeqData::from_examples(&ex[..1], Device::Cpu);
    let (inp, tgt) = d.batch(&[0]);
    let inp = Vec::<i64>::try_from(inp.reshape([-1])).unwrap();
    let tgt = Vec::<i64>::try_from(tgt.reshape([-1])).unwrap();
    assert_eq!(inp[0], BOS);
    assert_eq!(&inp[1..1 + p.len()], p.as_slice());
    // Targets: pad over the prompt (positions predicting prompt tokens), then summary and <eos>.
    assert!(tgt[..p.len()].iter().all(|&t| t == PAD));
    assert_eq!(&tgt[p.len()..p.len() + r.len()], r.as_slice());
    assert_eq!(tgt[p.len() + r.len()], EOS);
    // Whole texts (an empty prompt) score every token.
    let d = SeqData::new(&[vec![5, 6, 7]], Device::Cpu);
    let (_, tgt) = d.batch(&[0]);
    assert_eq!(Vec::<i64>::try_from(tgt.reshape([-1])).unwrap(), vec![5, 6, 7, EOS]);
}

#[test]
fn win_rate_counts_ties_half_with_a_wilson_interval() {
    let (w, lo, hi) = win_rate(&[1.0, 0.0, 0.5, 2.0], &[0.0, 1.0, 0.5, 1.0]);
    assert!((w - 0.625).abs() < 1e-12);
    assert!(lo < w && w < hi);
    // p = 0.5, n = 100: the Wilson interval is 0.5 +- 0.0962.
    let s: Vec<f64> = (0..100).map(|i| (i % 2) as f64).collect();
    let (w, lo, hi) = win_rate(&s, &vec![0.5; 100]);
    assert!(
        (w - 0.5).abs() < 1e-12 && (lo - 0.4038).abs() < 1e-3 && (hi - 0.5962).abs() < 1e-3,
        "{lo} {hi}"
    );
    // All wins: the interval stays inside [0, 1].
    let (w, lo, hi) = win_rate(&[1.0; 20], &[0.0; 20]);
    assert!(w == 1.0 && hi <= 1.0 + 1e-12 && lo > 0.8 && lo < 1.0);
}

#[test]
fn the_world_is_a_function_of_its_seed() {
    let (a, b, c) = (
        SummarizeWorld::new(&cfg(), 7),
        SummarizeWorld::new(&cfg(), 7),
        SummarizeWorld::new(&cfg(), 8),
    );
    assert_eq!(
        (&a.corpus.train, &a.corpus.eval_prompts, &a.eval_references, &a.salience),
        (&b.corpus.train, &b.corpus.eval_prompts, &b.eval_references, &b.salience)
    );
    assert_ne!(a.corpus.eval_prompts, c.corpus.eval_prompts);
}

/// The shifted documents differ from the training documents in what the shift changes
/// (length, facts per document, filler register, facts first), keep the judge, and leave every
/// other draw of the world as it was without a shift.
#[test]
fn shifted_documents_change_what_they_should_and_nothing_else() {
    use alignlab::world::summarize::ShiftConfig;
    let shift = ShiftConfig {
        doc_min_len: 12,
        doc_max_len: 16,
        min_facts: 5,
        max_facts: 7,
        filler_share: 0.5,
        facts_first: true,
        n_eval_prompts: 400,
    };
    let base = SummarizeConfig {
        n_facts: 32,
        n_filler: 20,
        doc_min_len: 8,
        doc_max_len: 14,
        min_facts: 2,
        max_facts: 5,
        n_train: 50,
        n_val: 20,
        n_train_prompts: 10,
        n_eval_prompts: 400,
        ..SummarizeConfig::default()
    };
    let (plain, w) = (
        SummarizeWorld::new(&base, 3),
        SummarizeWorld::new(&SummarizeConfig { shift: Some(shift), ..base.clone() }, 3),
    );
    // Everything else is drawn exactly as without a shift.
    assert_eq!(plain.corpus.train, w.corpus.train);
    assert_eq!(plain.corpus.eval_prompts, w.corpus.eval_prompts);
    assert_eq!(plain.eval_references, w.eval_references);
    assert!(plain.shifted_eval().is_none());
    let (prompts, refs) = w.shifted_eval().unwrap();
    assert_eq!((prompts.len(), refs.len()), (400, 400));
    let mean = |docs: &[Vec<i64>], f: &dyn Fn(&Vec<i64>) -> f64| {
        docs.iter().map(f).sum::<f64>() / docs.len() as f64
    };
    let len = |d: &Vec<i64>| (d.len() - 1) as f64; // without `tldr`
    let facts = |d: &Vec<i64>| w.doc_facts(d).len() as f64;
    let (lo_filler, hi_filler) =
        ((N_SPECIAL_WORDS + 32) as i64, (N_SPECIAL_WORDS + 32 + 10) as i64);
    let old_filler =
        |d: &Vec<i64>| d.iter().filter(|&&t| t >= lo_filler && t < hi_filler).count() as f64;
    // Length 8..14 (mean 11) against 12..16 (mean 14); facts 2..5 (3.5) against 5..7 (6).
    assert!(
        (mean(&w.corpus.eval_prompts, &len) - 11.0).abs() < 0.3
            && (mean(prompts, &len) - 14.0).abs() < 0.3
    );
    assert!(
        (mean(&w.corpus.eval_prompts, &facts) - 3.5).abs() < 0.2
            && (mean(prompts, &facts) - 6.0).abs() < 0.2
    );
    // The first half of the filler words never appears in the shifted documents.
    assert!(mean(&w.corpus.eval_prompts, &old_filler) > 2.0 && mean(prompts, &old_filler) == 0.0);
    // Facts first: every shifted document opens with its facts.
    assert!(prompts.iter().all(|d| {
        let n = w.doc_facts(d).len();
        d[..n].iter().all(|t| w.doc_facts(d).contains(t))
    }));
    // The same judge: a shifted document's optimal summary scores what the judge's definition
    // gives, the sum of its worthwhile saliences less their length cost.
    for p in prompts.iter().take(20) {
        let o = w.optimal_summary(p);
        let by_hand: f64 = o.iter().map(|&t| sal(&w, t) - base.length_penalty).sum();
        assert!((w.judge(p, &o) - by_hand).abs() < 1e-12);
    }
}

const N_SPECIAL_WORDS: usize = alignlab::world::N_SPECIAL;
