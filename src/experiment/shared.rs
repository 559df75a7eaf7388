//! A seed's shared stages built in order (world, SFT, preference data, reward model, reference
//! log-probs) and handed to the method runs that stand on them.

use super::folders;
use anyhow::Result;

use super::options::RunOptions;
use super::scenario::Scenario;
use super::stages::{self, Shared};
use super::summary::Summary;
use crate::log::Metrics;
use crate::world::TextWorld;

/// The built world of a scenario.
pub fn build_world(sc: &Scenario) -> Box<dyn TextWorld> {
    sc.world.build(sc.seed)
}

/// Build the shared stages of one seed (world, SFT, preference data, reward model, reference
/// log-probs) and hand them to `f`.
pub(super) fn with_shared<T>(
    sc: &Scenario,
    opts: &RunOptions,
    metrics: &mut Metrics,
    summary: &mut Summary,
    f: impl FnOnce(&stages::Shared, &mut Metrics, &mut Summary) -> Result<T>,
) -> Result<T> {
    // Building the world and loading the cached stages: start-up (a cell's labels its own).
    let (stage, setting, _) = crate::profile::current();
    crate::profile::stage("load", if stage == "load" { &setting } else { "" }, sc.seed, "startup");
    let world = build_world(sc);
    let world = world.as_ref();
    for (k, v) in world.describe() {
        summary.add("world", &k, v);
    }
    let (mut sft_vs, sft) = stages::sft_stage(sc, world, opts, metrics, summary)?;
    sft_vs.freeze(); // pi_SFT is pi_ref from here on: no gradients, ever
    let (prefs, prefs_work) = stages::prefs_stage(sc, world, &sft, opts, summary)?;
    let train = crate::data::PairTensors::new(&prefs.train, opts.device);
    let val = crate::data::PairTensors::new(&prefs.val, opts.device);
    let (mut rm_vs, rm, reward_work) = stages::reward_stage(
        sc,
        world,
        &sft_vs,
        (&train, &val, &prefs.val),
        opts,
        metrics,
        summary,
    )?;
    rm_vs.freeze();
    let (train_ref, val_ref, reference_work) =
        stages::reference_stage(sc, &sft, &train, &val, opts)?;
    let work =
        folders::SharedWork { prefs: prefs_work, reward: reward_work, reference: reference_work };
    let rollout_prompts = prefs.rollout_prompts(world.train_prompts(), sc.prefs.rollout_prompts);
    let judge = stages::proxy_judge(sc, world)?;
    let proxy = match &judge {
        Some(j) => crate::algo::reward::Proxy::Frozen(j, world.vocab()),
        None => crate::algo::reward::Proxy::Trained(&rm),
    };
    let shared = stages::Shared {
        world,
        rollout_prompts: &rollout_prompts,
        sft_vs: &sft_vs,
        sft: &sft,
        rm_vs: &rm_vs,
        proxy,
        train: &train,
        train_ref: &train_ref,
        val: &val,
        val_ref: &val_ref,
        work,
    };
    f(&shared, metrics, summary)
}

/// The shared stages of `sc.seed` only.
pub fn prepare(sc: &Scenario, opts: &RunOptions) -> Result<()> {
    with_stages(sc, opts, |_, _| Ok(()))
}

/// [`with_shared`] for a process that keeps neither the stages' logs nor their summary (a
/// pilot's runs, a sweep's cells, `prepare`): `f` gets the stages and a log it may write.
pub(crate) fn with_stages<T>(
    sc: &Scenario,
    opts: &RunOptions,
    f: impl FnOnce(&Shared, &mut Metrics) -> Result<T>,
) -> Result<T> {
    with_shared(sc, opts, &mut Metrics::default(), &mut Summary::default(), |s, m, _| f(s, m))
}

/// `alignlab world`: the world of a scenario's seed, described with `show` prompts and texts.
pub fn show_world(sc: &Scenario, show: usize) -> String {
    let mut rng = crate::draw::Rng::new(crate::draw::derive_seed(sc.seed, "world/show"));
    build_world(sc).show(show, &mut rng)
}
