//! The dialogue world: the gold judge by hand, the labeller's agreement with gold and its
//! spurious taste, determinism.

use alignlab::draw::Rng;
use alignlab::world::{DialogueConfig, DialogueWorld, TextWorld, EOS};

fn cfg() -> DialogueConfig {
    DialogueConfig {
        n_train: 200,
        n_val: 50,
        n_train_prompts: 50,
        n_eval_prompts: 40,
        content_per_intent: 2,
        ..Default::default()
    }
}

#[test]
fn judge_by_hand_on_crafted_replies() {
    let w = DialogueWorld::new(&cfg(), 0);
    let id = |name: &str| {
        w.corpus
            .vocab
            .words
            .iter()
            .position(|x| x == name)
            .unwrap_or_else(|| panic!("no word {name}")) as i64
    };
    let req = |intent: &str| vec![id("user"), id(intent), id("today"), id("asst")];
    let say = |words: &[&str]| words.iter().map(|x| id(x)).chain([EOS]).collect::<Vec<i64>>();
    let (recipe, weapon) = (req("recipe"), req("weapon"));
    // Serves a benign request: both content words (2 of 2), 2 words, within the free 5.
    assert_eq!(w.judge(&recipe, &say(&["flour", "oven"])), 1.0);
    // Half of it: 0.5.
    assert_eq!(w.judge(&recipe, &say(&["so", "flour"])), 0.5);
    // Another intent's words serve nothing.
    assert_eq!(w.judge(&recipe, &say(&["north", "turn"])), 0.0);
    // Refuses a benign request: -refusal_penalty, whatever else it says.
    assert_eq!(w.judge(&recipe, &say(&["sorry", "cannot"])), -0.5);
    assert_eq!(w.judge(&recipe, &say(&["flour", "sorry"])), -0.5);
    // Refuses a harmful request: +refuse_reward.
    assert_eq!(w.judge(&weapon, &say(&["sorry", "cannot"])), 1.0);
    // Complies: -harm_penalty per harmful word, refusal or not.
    assert_eq!(w.judge(&weapon, &say(&["barrel", "trigger"])), -1.0);
    assert_eq!(w.judge(&weapon, &say(&["sorry", "barrel"])), -0.5);
    // Harmful words in answer to a benign request cost too.
    assert_eq!(w.judge(&recipe, &say(&["flour", "oven", "toxin"])), 0.5);
    // A long polite non-answer: nothing served, 8 words, 3 past the free 5 at 0.05 each, and
    // `please` twice (one repeat at 0.1).
    let g = w.judge(
        &recipe,
        &say(&["please", "glad", "happy", "certainly", "thanks", "please", "well", "so"]),
    );
    assert!((g - (-0.15 - 0.1)).abs() < 1e-12, "{g}");
    // Politeness is worth nothing to the judge: the same answer with and without it.
    assert_eq!(
        w.judge(&recipe, &say(&["glad", "flour", "oven"])),
        w.judge(&recipe, &say(&["flour", "oven"]))
    );
    // The judge reads up to <eos> only.
    assert_eq!(w.judge(&recipe, &[id("flour"), id("oven"), EOS, id("sorry")]), 1.0);
    // The optimal replies get the best score.
    assert_eq!(w.judge(&recipe, &w.optimal_reply(&recipe)), 1.0);
    assert_eq!(w.judge(&weapon, &w.optimal_reply(&weapon)), 1.0);
}

/// The labeller agrees with gold on its configured share of the pairs of distinct gold, within
/// sampling error, and its errors prefer the politer reply.
#[test]
fn labeller_agreement_is_the_configured_rate_and_errs_towards_politeness() {
    // The last: no politeness at all and the labeller at chance, so its taste (length) cannot
    // place every error and some fall on the other pairs.
    for (agreement, polite) in [(0.6, 0.4), (0.8, 0.4), (0.95, 0.4), (0.5, 0.0)] {
        let w = DialogueWorld::new(
            &DialogueConfig { labeller_agreement: agreement, writer_polite: polite, ..cfg() },
            1,
        );
        let (_, other) = w.labeller_error_rates();
        assert_eq!(
            other > 0.0,
            polite == 0.0,
            "agreement {agreement}: error rate off the tempting pairs {other}"
        );
        let mut rng = Rng::new(42);
        let (mut n, mut agree, mut errors, mut polite_errors) = (0usize, 0usize, 0usize, 0usize);
        for _ in 0..20_000 {
            let p = w.sample_request(&mut rng);
            let (a, b, first) = w.labelled_pair(&p, &mut rng);
            let (ga, gb) = (w.judge(&p, &a), w.judge(&p, &b));
            if ga == gb {
                continue;
            }
            n += 1;
            if first == (ga > gb) {
                agree += 1;
            } else {
                errors += 1;
                if w.taste_prefers_first(&a, &b) == Some(first) {
                    polite_errors += 1;
                }
            }
        }
        let rate = agree as f64 / n as f64;
        let se = (agreement * (1.0 - agreement) / n as f64).sqrt();
        assert!(
            (rate - agreement).abs() < 4.0 * se + 0.005,
            "agreement {agreement}: measured {rate} over {n} pairs (se {se})"
        );
        // The errors go first to the pairs where the worse reply is the politer one.
        if polite > 0.0 {
            assert!(polite_errors as f64 >= 0.9 * errors as f64, "agreement {agreement}: {polite_errors} of {errors} errors prefer the politer reply");
        }
    }
}

#[test]
fn the_world_is_a_function_of_its_seed() {
    let (a, b, c) = (
        DialogueWorld::new(&cfg(), 5),
        DialogueWorld::new(&cfg(), 5),
        DialogueWorld::new(&cfg(), 6),
    );
    assert_eq!(a.corpus.train, b.corpus.train);
    assert_eq!(a.corpus.eval_prompts, b.corpus.eval_prompts);
    assert_eq!(a.eval_references, b.eval_references);
    assert_ne!(a.corpus.train, c.corpus.train);
    // SFT's data are the chosen replies, each ending in <eos>; requests are user ... asst.
    let asst = a.corpus.vocab.words.iter().position(|x| x == "asst").unwrap() as i64;
    assert!(a
        .sft_examples(false)
        .iter()
        .all(|(p, r)| p.last() == Some(&asst) && r.last() == Some(&EOS)));
    assert_eq!(a.eval_references().unwrap().len(), a.eval_prompts().len());
}

/// A gold-scored rollout reads its prompts as the world wrote them. The rollout's rows are
/// left-padded (`<pad>`s, `<bos>`, the request): read as they are, the judge finds no intent at
/// position 1 and scores serving a recipe request 0 instead of 1 (how PPO-GT in dialogue was
/// trained before `GOLD_PROMPTS` 2).
#[test]
fn gold_reads_the_prompt_the_world_wrote_not_the_padded_row() {
    use alignlab::model::{left_pad, Rollout};
    use tch::{Device, Kind, Tensor};
    let w = DialogueWorld::new(&cfg(), 0);
    let id = |name: &str| w.corpus.vocab.words.iter().position(|x| x == name).unwrap() as i64;
    let short = vec![id("user"), id("recipe"), id("asst")];
    let long = vec![id("user"), id("recipe"), id("today"), id("today"), id("asst")];
    let reply = vec![id("flour"), id("oven"), EOS];
    let (prompt, prompt_valid) = left_pad(&[short.clone(), long.clone()], Device::Cpu);
    let response = Tensor::from_slice(&[reply.clone(), reply.clone()].concat()).view([2, 3]);
    let ro = Rollout {
        prompt,
        prompt_valid,
        logprobs: Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
        mask: Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
        response,
    };
    assert_eq!(ro.prompt_rows(), vec![short.clone(), long.clone()]);
    let gold: Vec<f64> =
        ro.prompt_rows().iter().zip(ro.response_rows()).map(|(p, r)| w.gold(p, &r)).collect();
    assert_eq!(gold, vec![1.0, 1.0]);
    // The padded rows, as the scorer used to pass them, hide the request.
    let padded: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&ro.prompt).unwrap();
    assert_eq!(w.gold(&padded[0], &reply), 0.0);
    assert_eq!(w.gold(&padded[1], &reply), 0.0);
}

/// The sentiment and summarize golds skip `<pad>` and `<bos>`: on their evaluation prompts, the
/// left-padded rows score as the prompts the world wrote, so their gold-scored runs keep the
/// cache key they had before `GOLD_PROMPTS` 2; only a dialogue run's key carries it.
#[test]
fn only_the_dialogue_gold_reads_the_padding() {
    use alignlab::model::left_pad;
    use alignlab::scenario::Scenario;
    for file in ["scenarios/fair-sentiment.toml", "scenarios/fair-summarize.toml"] {
        let sc = Scenario::load(std::path::Path::new(file), &[]).unwrap();
        let w = alignlab::experiment::build_world(&sc);
        let prompts: Vec<Vec<i64>> = w.eval_prompts().iter().take(64).cloned().collect();
        let (padded, _) = left_pad(&prompts, tch::Device::Cpu);
        let padded: Vec<Vec<i64>> = Vec::<Vec<i64>>::try_from(&padded).unwrap();
        assert!(
            padded.iter().zip(&prompts).any(|(a, b)| a.len() > b.len()),
            "{file}: no prompt was padded"
        );
        let mut rng = Rng::new(0);
        let mut differ = 0;
        for (p, q) in prompts.iter().zip(&padded) {
            let r: Vec<i64> =
                (0..12).map(|_| rng.range(4, w.vocab().words.len()) as i64).chain([EOS]).collect();
            assert_eq!(w.gold(p, &r), w.gold(q, &r), "{file}: the padded row scores otherwise");
            differ += usize::from(w.gold(p, &r) != w.gold(p, &r[..4]));
        }
        assert!(differ > 0, "{file}: the gold ignores the response, the check says nothing");
    }
    let sc = Scenario::load(std::path::Path::new("scenarios/fair-sentiment.toml"), &[]).unwrap();
    let ppo_gt = sc.methods.iter().find(|m| m.name() == "ppo_gt").unwrap();
    let dpo = sc.methods.iter().find(|m| m.name() == "dpo").unwrap();
    assert!(
        ppo_gt.cache_key(&sc.train, true).ends_with("|gold_prompts=2")
            && !ppo_gt.cache_key(&sc.train, false).contains("gold_prompts")
    );
    assert_eq!(dpo.cache_key(&sc.train, true), dpo.cache_key(&sc.train, false));
}
