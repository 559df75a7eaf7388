//! The training of each kind of method: one arm per [`MethodKind`], each setting up its models
//! and handing the trainer its context ([`Run`]).

use anyhow::Result;
use tch::{nn, Tensor};

use super::methods::{Method, MethodKind};
use super::progress::Progress;
use super::run::Run;
use crate::algo::common::copy_weights;
use crate::algo::dpo::{PrefLoss, TrainConfig};
use crate::algo::pg::{Estimator, PgConfig};
use crate::algo::ppo::PpoConfig;
use crate::algo::trainer::Trainer;
use crate::algo::{dpo, online_dpo, pg, ppo, reward};
use crate::log::Metrics;
use crate::model::{Gpt, Rollout};

/// A run's trained steps and the metrics it logged.
type Trained = Result<(usize, Metrics)>;

impl Method {
    /// Train `policy` (pi_SFT's copy, in `vs`) from the run's resume folder, evaluating and
    /// checkpointing as it goes into `run.evals`; returns the last step and the metrics logged.
    pub(super) fn train(&self, run: &Run, policy: &Gpt, vs: &mut nn::VarStore) -> Trained {
        match self.kind {
            MethodKind::Pref(loss) => {
                pref(run, policy, vs, loss, &self.train_config(&run.sc.train))
            }
            MethodKind::Online { .. } => online(self, run, policy, vs),
            MethodKind::Pg { est, cfg } => critic_free(run, policy, vs, est, &cfg),
            MethodKind::Ppo { gold, cfg, .. } => with_critic(run, policy, vs, gold, &cfg),
        }
    }
}

/// How a rollout is scored: by the proxy (the reward model or a frozen judge), or (`gold`) by
/// the world's gold reward on the
/// prompts as the world wrote them, never the rollout's padded rows.
fn scorer<'a>(run: &'a Run, gold: bool) -> Box<dyn Fn(&Rollout) -> Tensor + 'a> {
    let s = run.s;
    if gold {
        Box::new(move |ro: &Rollout| {
            crate::profile::count(crate::profile::Count::GoldQueries, ro.response.size()[0] as f64);
            ro.score_rows(|items| s.world.gold_batch(items))
        })
    } else {
        Box::new(move |ro: &Rollout| {
            crate::profile::count(crate::profile::Count::RmQueries, ro.response.size()[0] as f64);
            s.proxy.score(ro)
        })
    }
}

/// An offline preference loss on the preference pairs.
fn pref(
    run: &Run,
    policy: &Gpt,
    vs: &mut nn::VarStore,
    loss: PrefLoss,
    cfg: &TrainConfig,
) -> Trained {
    let (sc, s) = (run.sc, run.s);
    let resumed = run.resume_into(&mut [vs])?;
    let pb = run.progress(cfg.steps as u64);
    let vs = &*vs;
    let stores = [vs];
    let mut t = run.trainer(&stores, (cfg.steps, sc.eval.every), resumed, &pb);
    dpo::train(policy, vs, s.train, s.train_ref, loss, cfg, &mut t)?;
    pb.finish_and_clear();
    Ok((cfg.steps, t.metrics))
}

/// A preference loss on pairs the policy samples (online, semi-online with `sync_every`), or
/// Tang et al.'s control (`shuffled`): the online run replayed, then the same loss offline on
/// its pairs.
fn online(method: &Method, run: &Run, policy: &Gpt, vs: &mut nn::VarStore) -> Trained {
    let MethodKind::Online { gold, loss, sync_every, shuffled } = method.kind else {
        unreachable!("an online method")
    };
    let (sc, s) = (run.sc, run.s);
    let cfg = method.train_config(&sc.train);
    let mut sampler_vs = nn::VarStore::new(run.opts.device);
    let sampler = Gpt::new(&sampler_vs.root(), &sc.model);
    let semi = sync_every > 1 && !shuffled;
    let resumed = if semi {
        run.resume_into(&mut [vs, &mut sampler_vs])?
    } else {
        run.resume_into(&mut [vs])?
    };
    let pb = run.progress(cfg.steps as u64 * if shuffled { 2 } else { 1 });
    let record = std::cell::RefCell::new(Vec::new());
    let score = scorer(run, gold);
    let ctx = online_dpo::OnlineContext {
        reference: s.sft,
        prompts: s.rollout_prompts,
        max_new_tokens: sc.sample.max_new_tokens as i64,
        temperature: sc.prefs.temperature,
        labels: sc.prefs.label_rule(),
        score: &*score,
        sampler: (&sampler, &sampler_vs),
        sync_every,
        record: shuffled.then_some(&record),
    };
    let vs = &*vs;
    let metrics = if shuffled {
        // 1. The online run, replayed in full (it is deterministic, so a resumed cell gets the
        // same pairs) with the stream of `[online_<loss>]`, its pairs kept, its policy dropped.
        let online_vs = nn::VarStore::new(run.opts.device);
        let online = Gpt::new(&online_vs.root(), &sc.model);
        copy_weights(&online_vs, s.sft_vs)?;
        let kind = MethodKind::Online { gold, loss, sync_every: 1, shuffled: false };
        let replayed = Method { kind, opt: method.opt };
        let mut replay = Trainer::new(&replayed.name(), &run.setting, sc.seed, sc.eval.every)
            .with_stream(replayed.stream_key())
            .with_faults(sc.faults.clone())
            .on_step(|_, _| pb.inc(1));
        online_dpo::train(&online, &online_vs, &ctx, loss, &cfg, &mut replay)?;
        // 2. The same loss offline from pi_SFT on those pairs, in a shuffled order.
        let pairs = record.into_inner();
        let data = crate::data::PairTensors::new(&pairs, run.opts.device);
        let reference = dpo::reference_logps(s.sft, &data, 512);
        let stores = [vs];
        let mut t = run.trainer(&stores, (cfg.steps, sc.eval.every), resumed, &pb);
        dpo::train(policy, vs, &data, &reference, loss, &cfg, &mut t)?;
        t.metrics
    } else {
        let stores: Vec<&nn::VarStore> = if semi { vec![vs, &sampler_vs] } else { vec![vs] };
        let mut t = run.trainer(&stores, (cfg.steps, sc.eval.every), resumed, &pb);
        online_dpo::train(policy, vs, &ctx, loss, &cfg, &mut t)?;
        t.metrics
    };
    pb.finish_and_clear();
    Ok((cfg.steps, metrics))
}

/// A critic-free method (RLOO, REINFORCE++, GRPO) against the reward model.
fn critic_free(
    run: &Run,
    policy: &Gpt,
    vs: &mut nn::VarStore,
    est: Estimator,
    cfg: &PgConfig,
) -> Trained {
    let (sc, s) = (run.sc, run.s);
    let resumed = run.resume_into(&mut [vs])?;
    let score = scorer(run, false);
    let ctx = ppo::PpoContext {
        reference: s.sft,
        prompts: s.rollout_prompts,
        max_new_tokens: sc.sample.max_new_tokens as i64,
        score: &*score,
        ema_reference: None,
    };
    let pb = run.progress(cfg.iterations as u64);
    let vs = &*vs;
    let stores = [vs];
    let mut t = run
        .trainer(&stores, (cfg.iterations, cfg.eval_every), resumed, &pb)
        .in_iterations()
        .on_step(|_, kl| show_kl(&pb, &run.setting, kl));
    pg::train(policy, vs, &ctx, est, cfg, &mut t)?;
    pb.finish_and_clear();
    Ok((cfg.iterations, t.metrics))
}

/// PPO with a critic (a copy of the reward model), against the reward model or (`gold`) the
/// gold reward; with `ref_ema`, the penalty's reference is the run's own copy of pi_SFT,
/// checkpointed with the run, otherwise pi_SFT itself.
fn with_critic(
    run: &Run,
    policy: &Gpt,
    vs: &mut nn::VarStore,
    gold: bool,
    cfg: &PpoConfig,
) -> Trained {
    let (sc, s) = (run.sc, run.s);
    let mut critic_vs = nn::VarStore::new(run.opts.device);
    let critic = reward::RewardModel::new(&critic_vs.root(), &sc.reward_model);
    copy_weights(&critic_vs, s.rm_vs)?;
    let mut ema_ref = match cfg.ref_ema > 0.0 {
        true => {
            let ref_vs = nn::VarStore::new(run.opts.device);
            let gpt = Gpt::new(&ref_vs.root(), &sc.model);
            copy_weights(&ref_vs, s.sft_vs)?;
            Some((ref_vs, gpt))
        }
        false => None,
    };
    let resumed = match &mut ema_ref {
        Some((ref_vs, _)) => run.resume_into(&mut [vs, &mut critic_vs, ref_vs])?,
        None => run.resume_into(&mut [vs, &mut critic_vs])?,
    };
    let score = scorer(run, gold);
    let ctx = ppo::PpoContext {
        reference: ema_ref.as_ref().map_or(s.sft, |r| &r.1),
        prompts: s.rollout_prompts,
        max_new_tokens: sc.sample.max_new_tokens as i64,
        score: &*score,
        ema_reference: ema_ref.as_ref().map(|r| &r.0),
    };
    let pb = run.progress(cfg.iterations as u64);
    let vs = &*vs;
    let stores: Vec<&nn::VarStore> =
        std::iter::once(vs).chain([&critic_vs]).chain(ema_ref.as_ref().map(|r| &r.0)).collect();
    let mut t = run
        .trainer(&stores, (cfg.iterations, cfg.eval_every), resumed, &pb)
        .in_iterations()
        .on_step(|_, kl| show_kl(&pb, &run.setting, kl));
    ppo::train(policy, vs, (&critic, &critic_vs), &ctx, cfg, &mut t)?;
    pb.finish_and_clear();
    // The critic at the end of training, in the run folder's `critic/` with its model card, so
    // that `alignlab export` writes it as a reward model is written.
    let critic_dir = run.resume.dir.with_file_name("critic");
    std::fs::create_dir_all(&critic_dir)?;
    crate::model::save_checkpoint(&critic_vs, &critic_dir.join("model.safetensors"))?;
    super::export::write_card(&critic_dir, &sc.reward_model, s.world.vocab())?;
    Ok((cfg.iterations, t.metrics))
}

/// An iteration of PPO or a policy-gradient method done: progress, with its KL.
fn show_kl(pb: &Progress, setting: &str, kl: f64) {
    pb.inc(1);
    pb.set_message(format!("{setting} KL {kl:.2}"));
}
