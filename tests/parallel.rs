//! The data-parallel CPU work (rayon) gives the same bytes whatever the number of threads:
//! the worlds' corpora (every document from a stream of its own), gold scoring in the evaluator,
//! in Best-of-N and in the preference data, and the importance-sampling frontier, each run in a
//! pool of one thread and in one of three.

use alignlab::algo::best_of_n::score_candidates;
use alignlab::algo::reward::{Proxy, RewardModel};
use alignlab::data::{self, PrefsConfig};
use alignlab::eval::optimal::optimal_frontier;
use alignlab::eval::Evaluator;
use alignlab::model::{Gpt, GptConfig, SampleSettings};
use alignlab::world::{SentimentConfig, SentimentWorld, TextWorld};
use tch::{nn, Device};

fn world() -> SentimentWorld {
    let cfg = SentimentConfig {
        n_positive: 6,
        n_negative: 6,
        n_neutral: 8,
        tilt: 1.0,
        sharpness: 2.0,
        min_len: 4,
        max_len: 10,
        stop_prob: 0.2,
        prompt_min_len: 2,
        prompt_max_len: 4,
        n_train: 200,
        n_val: 50,
        n_train_prompts: 60,
        n_eval_prompts: 24,
        labeller: None,
    };
    SentimentWorld::new(&cfg, 3)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Everything computed in parallel, as exact bits, in this process (whose rayon pool has
/// RAYON_NUM_THREADS threads).
fn digest() -> String {
    let w = world();
    let cfg = GptConfig::sized(w.vocab().size() as i64, 32, 1, 2, 16);
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let policy = Gpt::new(&vs.root(), &cfg);
    let rm_vs = nn::VarStore::new(Device::Cpu);
    let rm = RewardModel::new(&rm_vs.root(), &cfg);
    let settings =
        SampleSettings { temperature: 1.0, top_k: 0, max_new_tokens: 8, use_cache: true };
    let mut out = String::new();
    // Every world's corpora and prompts.
    out += &format!(
        "sentiment {:?} {:?} {:?} {:?}\n",
        w.corpus.train, w.corpus.val, w.corpus.train_prompts, w.corpus.eval_prompts
    );
    let sum = alignlab::world::SummarizeWorld::new(
        &alignlab::world::SummarizeConfig { n_train: 300, n_val: 50, ..Default::default() },
        4,
    );
    out += &format!("summarize {:?}\n", sum.sft_examples(false));
    let dlg = alignlab::world::DialogueWorld::new(
        &alignlab::world::DialogueConfig { n_train: 300, n_val: 50, ..Default::default() },
        5,
    );
    out += &format!("dialogue {:?} {:?}\n", dlg.sft_examples(false), dlg.eval_prompts());
    // The evaluator: gold, fluency and everything computed from them.
    let ev = Evaluator::new(&w, &policy, None, None, (2, 0.5), settings.clone(), 7);
    let (rows, samples) = ev.evaluate(&policy);
    assert!(
        samples.gold.iter().any(|g| *g != samples.gold[0]),
        "the samples should differ in gold"
    );
    out += &format!(
        "eval {:?} {:?}\n",
        rows.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect::<Vec<_>>(),
        bits(&samples.gold)
    );
    // Best-of-N's candidates.
    let prompts: Vec<Vec<i64>> = w.eval_prompts().to_vec();
    let (proxy, gold) =
        score_candidates(&w, &policy, Proxy::Trained(&rm), &prompts, 4, &settings, 11);
    out += &format!(
        "bon {:?} {:?}\n",
        proxy.iter().map(|g| bits(g)).collect::<Vec<_>>(),
        gold.iter().map(|g| bits(g)).collect::<Vec<_>>()
    );
    // The preference data (gold of every completion, then the labels from it).
    let prefs = PrefsConfig { k: 3, ..Default::default() };
    out += &data::build(&w, &policy, &prefs, 8, 5, Device::Cpu).to_text();
    // The importance-sampling frontier, one beta per task, in the order given.
    let rewards: Vec<Vec<f64>> =
        (0..50).map(|i| (0..16).map(|j| ((i * 16 + j) as f64 * 0.37).sin()).collect()).collect();
    let betas = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0];
    let points = optimal_frontier(&rewards, &betas);
    assert_eq!(points.iter().map(|p| p.beta).collect::<Vec<_>>(), betas.to_vec());
    out += &format!(
        "frontier {:?}\n",
        points
            .iter()
            .flat_map(|p| [p.beta, p.kl, p.gold, p.ess_mean, p.ess_min])
            .map(f64::to_bits)
            .collect::<Vec<_>>()
    );
    out
}

/// The child: print the digest (run by the test below with RAYON_NUM_THREADS set).
#[test]
fn parallel_digest_child() {
    if std::env::var_os("ALIGNLAB_PARALLEL_CHILD").is_some() {
        println!("DIGEST {}", digest().replace('\n', "|"));
    }
}

#[test]
fn gold_scoring_and_frontier_do_not_depend_on_the_thread_count() {
    let run = |threads: &str| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "parallel_digest_child", "--nocapture", "--test-threads", "1"])
            .env("ALIGNLAB_PARALLEL_CHILD", "1")
            .env("RAYON_NUM_THREADS", threads)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let at = text.find("DIGEST ").unwrap_or_else(|| panic!("no digest from the child: {text}"));
        text[at..].lines().next().unwrap().to_string()
    };
    let (one, three) = (run("1"), run("3"));
    assert!(one.len() > 1000, "a short digest: {one}");
    assert_eq!(one, three, "one thread and three threads differ");
}
