//! The sentiment world: gold reward, Bayes predictive, determinism.

use alignlab::draw::Rng;
use alignlab::world::sentiment::{NEG, POS};
use alignlab::world::{SentimentConfig, SentimentWorld, TextWorld, EOS};

fn cfg() -> SentimentConfig {
    SentimentConfig {
        n_positive: 6,
        n_negative: 6,
        n_neutral: 8,
        tilt: 1.0,
        sharpness: 2.0,
        min_len: 4,
        max_len: 10,
        stop_prob: 0.2,
        prompt_min_len: 2,
        prompt_max_len: 8,
        n_train: 200,
        n_val: 100,
        n_train_prompts: 50,
        n_eval_prompts: 20,
        labeller: None,
    }
}

fn logsumexp(a: f64, b: f64) -> f64 {
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

#[test]
fn gold_reward_is_a_probability_and_reads_sentiment() {
    let w = SentimentWorld::new(&cfg(), 0);
    let id = |name: &str| w.corpus.vocab.words.iter().position(|x| x == name).unwrap() as i64;
    let positive =
        vec![id("great"), id("film"), id("superb"), id("wonderful"), id("the"), id("brilliant")];
    // The mirror image: each positive word swapped for its negative counterpart.
    let negative =
        vec![id("awful"), id("film"), id("boring"), id("dull"), id("the"), id("tedious")];
    let (gp, gn) = (w.gold_reward(&positive), w.gold_reward(&negative));
    assert!(gp > 0.9, "clearly positive text got {gp}");
    assert!(gn < 0.1, "clearly negative text got {gn}");
    let mut rng = Rng::new(1);
    let mut by_z = [vec![], vec![]];
    for _ in 0..400 {
        let (z, words) = w.sample_review(&mut rng);
        let g = w.gold_reward(&words);
        assert!((0.0..=1.0).contains(&g));
        by_z[z].push(g);
    }
    let mean = |v: &Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
    assert!(mean(&by_z[POS]) > 0.8 && mean(&by_z[NEG]) < 0.2, "the classifier does not separate z");
    // Tokens after <eos> do not count.
    let mut tail = positive.clone();
    tail.push(EOS);
    tail.extend(&negative);
    assert_eq!(w.gold_reward(&tail), gp);
}

#[test]
fn gold_reward_is_the_exact_posterior() {
    let w = SentimentWorld::new(&cfg(), 3);
    let mut rng = Rng::new(5);
    for _ in 0..20 {
        let (_, words) = w.sample_review(&mut rng);
        let lp = w.log_lik_given_z(&words, POS);
        let ln = w.log_lik_given_z(&words, NEG);
        // Bayes with a 1/2 prior: p(pos | x) = p(x|pos) / (p(x|pos) + p(x|neg)).
        let posterior = (lp - logsumexp(lp, ln)).exp();
        assert!((w.gold_reward(&words) - posterior).abs() < 1e-12);
    }
}

#[test]
fn bayes_predictive_is_a_distribution_and_matches_the_marginal_likelihood() {
    let w = SentimentWorld::new(&cfg(), 2);
    let mut rng = Rng::new(9);
    let v = w.corpus.vocab.size() as i64;
    for _ in 0..10 {
        let (_, words) = w.sample_review(&mut rng);
        // Chain rule: the summed predictive NLL is -log sum_z 1/2 p(words, length | z).
        let (nll, n) = w.predictive_nll(&words);
        assert_eq!(n, words.len() + 1);
        let mut hazard = 0.0;
        for t in 0..words.len() {
            hazard += (1.0 - w.hazard(t)).ln();
        }
        hazard += w.hazard(words.len()).ln();
        let marginal = logsumexp(
            0.5f64.ln() + w.log_lik_given_z(&words, POS),
            0.5f64.ln() + w.log_lik_given_z(&words, NEG),
        ) + hazard;
        assert!((nll + marginal).abs() < 1e-9, "predictive {nll} vs marginal {}", -marginal);
        // A second implementation: the next-token predictive, step by step. It is a
        // distribution, and its log-probs of the review's tokens sum to the same NLL.
        let mut nll2 = 0.0;
        for t in 0..=words.len() {
            let p = w.predictive_next(&words[..t]);
            assert_eq!(p.len() as i64, v);
            let total: f64 = p.iter().sum();
            assert!((total - 1.0).abs() < 1e-9, "predictive sums to {total}");
            let next = if t < words.len() { words[t] } else { EOS };
            nll2 -= p[next as usize].ln();
        }
        assert!((nll - nll2).abs() < 1e-9);
    }
}

#[test]
fn the_world_is_deterministic_from_its_seed() {
    let a = SentimentWorld::new(&cfg(), 11);
    let b = SentimentWorld::new(&cfg(), 11);
    let c = SentimentWorld::new(&cfg(), 12);
    assert_eq!(a.corpus.train, b.corpus.train);
    assert_eq!(a.corpus.eval_prompts, b.corpus.eval_prompts);
    assert_ne!(a.corpus.train, c.corpus.train);
    for p in a.corpus.eval_prompts.iter().chain(&a.corpus.train_prompts) {
        assert!((2..=8).contains(&p.len()), "prompt of {} words", p.len());
    }
    for (_, r) in &a.corpus.train {
        assert!((4..=10).contains(&r.len()), "review of {} words", r.len());
    }
    assert!(
        a.true_nll_per_token() > 0.5
            && a.true_nll_per_token() < (a.corpus.vocab.size() as f64).ln()
    );
}

#[test]
fn the_sentiment_labeller_prefers_gold_plus_its_word() {
    use alignlab::draw::Rng;
    use alignlab::world::sentiment::LabellerConfig;
    use alignlab::world::TextWorld;
    let c = SentimentConfig {
        labeller: Some(LabellerConfig { word: "film".into(), bonus: 0.3, polarity: 0.0 }),
        ..cfg()
    };
    c.validate().unwrap();
    let w = SentimentWorld::new(&c, 3);
    let film = w.corpus.vocab.words.iter().position(|x| x == "film").unwrap() as i64;
    let great = w.corpus.vocab.words.iter().position(|x| x == "great").unwrap() as i64;
    let prompt = w.corpus.eval_prompts[0].clone();
    let mut rng = Rng::new(1);
    // Its count stops at <eos>, and it is the world's spurious feature.
    assert_eq!(w.spurious_count(&[film, great, film, EOS, film]), Some(2));
    assert_eq!(TextWorld::spurious(&w, &prompt, &[film, film]), Some(2.0));
    // Brute force over pairs of short completions: the choice is gold + 0.3 x count.
    let words: Vec<i64> = (3..w.corpus.vocab.size() as i64).collect();
    let mut disagree_gold = 0;
    for &x in &words {
        for &y in &words {
            let (a, b) = (vec![x, film, x], vec![y, y, great]);
            let score = |r: &[i64]| {
                w.gold(&prompt, r) + 0.3 * r.iter().filter(|&&t| t == film).count() as f64
            };
            let first = w.labeller_prefers_first(&prompt, &a, &b, &mut rng).unwrap();
            if score(&a) != score(&b) {
                assert_eq!(first, score(&a) > score(&b), "{a:?} {b:?}");
            }
            disagree_gold += (first != (w.gold(&prompt, &a) > w.gold(&prompt, &b))) as usize;
        }
    }
    assert!(disagree_gold > 0, "the bonus changes some choices");
    // No labeller: no choice and no spurious feature; a word that is not neutral is refused.
    let plain = SentimentWorld::new(&cfg(), 3);
    assert_eq!(plain.labeller_prefers_first(&prompt, &[film], &[great], &mut rng), None);
    assert_eq!(TextWorld::spurious(&plain, &prompt, &[film]), None);
    let bad = SentimentConfig {
        labeller: Some(LabellerConfig { word: "great".into(), bonus: 0.3, polarity: 0.0 }),
        ..cfg()
    };
    let e = format!("{:?}", bad.validate().unwrap_err());
    assert!(e.contains("labeller.word") && e.contains("neutral"), "{e}");
}
