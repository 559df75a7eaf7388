//! The training of each kind of method: one arm per [`MethodKind`], each setting up its models
//! and handing the trainer its context ([`Run`]).

use anyhow::Result;
use tch::{nn, Tensor};

use super::methods::{Method, MethodKind};
use super::progress::progress;
use super::run::Run;
use crate::algo::common::copy_weights;
use crate::algo::{dpo, online_dpo, pg, ppo, reward};
use crate::model::{Gpt, Rollout};

impl Method {
    /// Train `policy` (pi_SFT's copy, in `vs`) from the run's resume folder, evaluating and
    /// checkpointing as it goes, into `run.metrics` and `run.evals`; returns the last step.
    pub(super) fn train(
        &self,
        run: &mut Run,
        policy: &Gpt,
        vs: &mut nn::VarStore,
    ) -> Result<usize> {
        let (sc, s) = (run.sc, run.s);
        let (mut m, mut e) = (std::mem::take(&mut run.metrics), std::mem::take(&mut run.evals));
        let (name, setting) = (run.name.as_str(), run.setting.as_str());
        let world = s.world;
        let score_rm = |ro: &Rollout| {
            crate::profile::count(crate::profile::Count::RmQueries, ro.response.size()[0] as f64);
            s.rm.score(&ro.prompt, &ro.prompt_valid, &ro.response, &ro.mask)
        };
        let score_gold = |ro: &Rollout| {
            crate::profile::count(crate::profile::Count::GoldQueries, ro.response.size()[0] as f64);
            // The prompts as the world wrote them, never the rollout's padded rows.
            let g: Vec<f32> = ro
                .prompt_rows()
                .iter()
                .zip(ro.response_rows())
                .map(|(p, r)| world.gold(p, &r) as f32)
                .collect();
            Tensor::from_slice(&g)
        };
        let score = |gold: bool| -> &dyn Fn(&Rollout) -> Tensor {
            if gold {
                &score_gold
            } else {
                &score_rm
            }
        };
        let last = match self.kind {
            MethodKind::Pref(loss) => {
                let cfg = self.train_config(&sc.train);
                let from = run.resume.resume_into(&mut [vs], &mut m, &mut e)?;
                let pb = progress(run.opts.progress, cfg.steps as u64, name);
                pb.set_message(setting.to_string());
                pb.set_position(from.as_ref().map(|f| f.step as u64).unwrap_or(0));
                let vs = &*vs;
                dpo::train(
                    policy,
                    vs,
                    s.train,
                    s.train_ref,
                    loss,
                    &cfg,
                    sc.eval.every,
                    sc.seed,
                    (name, setting),
                    &mut m,
                    from,
                    |step, pol, m, parts| {
                        run.on_eval(step, cfg.steps, pol, parts, &[vs], m, &mut e)
                    },
                    |_| pb.inc(1),
                )?;
                pb.finish_and_clear();
                cfg.steps
            }
            MethodKind::Online { gold, loss, sync_every, shuffled } => {
                let cfg = self.train_config(&sc.train);
                let mut sampler_vs = nn::VarStore::new(run.opts.device);
                let sampler = Gpt::new(&sampler_vs.root(), &sc.model);
                let semi = sync_every > 1 && !shuffled;
                let from = if semi {
                    run.resume.resume_into(&mut [vs, &mut sampler_vs], &mut m, &mut e)?
                } else {
                    run.resume.resume_into(&mut [vs], &mut m, &mut e)?
                };
                let pb = progress(
                    run.opts.progress,
                    cfg.steps as u64 * if shuffled { 2 } else { 1 },
                    name,
                );
                pb.set_message(setting.to_string());
                let record = std::cell::RefCell::new(Vec::new());
                let ctx = online_dpo::OnlineContext {
                    reference: s.sft,
                    prompts: s.rollout_prompts,
                    max_new_tokens: sc.sample.max_new_tokens as i64,
                    temperature: sc.prefs.temperature,
                    labels: sc.prefs.label_rule(),
                    score: score(gold),
                    sampler: (&sampler, &sampler_vs),
                    sync_every,
                    record: shuffled.then_some(&record),
                };
                if shuffled {
                    // 1. The online run, replayed in full (it is deterministic, so a resumed cell
                    // gets the same pairs), its pairs kept and its policy dropped.
                    let online_vs = nn::VarStore::new(run.opts.device);
                    let online = Gpt::new(&online_vs.root(), &sc.model);
                    copy_weights(&online_vs, s.sft_vs)?;
                    let online_name = format!("online_{}", loss.name());
                    online_dpo::train(
                        &online,
                        &online_vs,
                        &ctx,
                        loss,
                        &cfg,
                        sc.eval.every,
                        sc.seed,
                        (&online_name, setting),
                        &mut crate::log::Metrics::default(),
                        None,
                        |_, _, _, _| Ok(()),
                        |_| pb.inc(1),
                    )?;
                    // 2. The same loss offline from pi_SFT on those pairs, in a shuffled order.
                    let pairs = record.into_inner();
                    let data = crate::data::PairTensors::new(&pairs, run.opts.device);
                    let reference = dpo::reference_logps(s.sft, &data, 512);
                    pb.set_position(from.as_ref().map(|f| f.step as u64).unwrap_or(0));
                    let vs = &*vs;
                    dpo::train(
                        policy,
                        vs,
                        &data,
                        &reference,
                        loss,
                        &cfg,
                        sc.eval.every,
                        sc.seed,
                        (name, setting),
                        &mut m,
                        from,
                        |step, pol, m, parts| {
                            run.on_eval(step, cfg.steps, pol, parts, &[vs], m, &mut e)
                        },
                        |_| pb.inc(1),
                    )?;
                } else {
                    pb.set_position(from.as_ref().map(|f| f.step as u64).unwrap_or(0));
                    let vs = &*vs;
                    let stores: Vec<&nn::VarStore> =
                        if semi { vec![vs, &sampler_vs] } else { vec![vs] };
                    online_dpo::train(
                        policy,
                        vs,
                        &ctx,
                        loss,
                        &cfg,
                        sc.eval.every,
                        sc.seed,
                        (name, setting),
                        &mut m,
                        from,
                        |step, pol, m, parts| {
                            run.on_eval(step, cfg.steps, pol, parts, &stores, m, &mut e)
                        },
                        |_| pb.inc(1),
                    )?;
                }
                pb.finish_and_clear();
                cfg.steps
            }
            MethodKind::Pg { est, cfg } => {
                let from = run.resume.resume_into(&mut [vs], &mut m, &mut e)?;
                let ctx = ppo::PpoContext {
                    reference: s.sft,
                    prompts: s.rollout_prompts,
                    max_new_tokens: sc.sample.max_new_tokens as i64,
                    score: score(false),
                    ema_reference: None,
                };
                let pb = progress(run.opts.progress, cfg.iterations as u64, name);
                pb.set_position(from.as_ref().map(|f| f.step as u64).unwrap_or(0));
                let vs = &*vs;
                let on_iteration = |_, kl: f64| {
                    pb.inc(1);
                    pb.set_message(format!("{setting} KL {kl:.2}"));
                };
                pg::train(
                    policy,
                    vs,
                    &ctx,
                    est,
                    &cfg,
                    sc.seed,
                    (name, setting),
                    &mut m,
                    from,
                    |step, pol, m, parts| {
                        run.on_eval(step, cfg.iterations, pol, parts, &[vs], m, &mut e)
                    },
                    on_iteration,
                )?;
                pb.finish_and_clear();
                cfg.iterations
            }
            MethodKind::Ppo { gold, cfg, .. } => {
                let mut critic_vs = nn::VarStore::new(run.opts.device);
                let critic = reward::RewardModel::new(&critic_vs.root(), &sc.reward_model);
                copy_weights(&critic_vs, s.rm_vs)?;
                // With `ref_ema`, the penalty's reference is the run's own copy of pi_SFT,
                // checkpointed with the run; without it, pi_SFT itself.
                let mut ema_ref = match cfg.ref_ema > 0.0 {
                    true => {
                        let ref_vs = nn::VarStore::new(run.opts.device);
                        let gpt = Gpt::new(&ref_vs.root(), &sc.model);
                        copy_weights(&ref_vs, s.sft_vs)?;
                        Some((ref_vs, gpt))
                    }
                    false => None,
                };
                let from = match &mut ema_ref {
                    Some((ref_vs, _)) => {
                        run.resume.resume_into(&mut [vs, &mut critic_vs, ref_vs], &mut m, &mut e)?
                    }
                    None => run.resume.resume_into(&mut [vs, &mut critic_vs], &mut m, &mut e)?,
                };
                let reference = ema_ref.as_ref().map_or(s.sft, |r| &r.1);
                let ctx = ppo::PpoContext {
                    reference,
                    prompts: s.rollout_prompts,
                    max_new_tokens: sc.sample.max_new_tokens as i64,
                    score: score(gold),
                    ema_reference: ema_ref.as_ref().map(|r| &r.0),
                };
                let pb = progress(run.opts.progress, cfg.iterations as u64, name);
                pb.set_position(from.as_ref().map(|f| f.step as u64).unwrap_or(0));
                let vs = &*vs;
                let stores: Vec<&nn::VarStore> = std::iter::once(vs)
                    .chain([&critic_vs])
                    .chain(ema_ref.as_ref().map(|r| &r.0))
                    .collect();
                let on_iteration = |_, kl: f64| {
                    pb.inc(1);
                    pb.set_message(format!("{setting} KL {kl:.2}"));
                };
                ppo::train(
                    policy,
                    vs,
                    &critic,
                    &critic_vs,
                    &ctx,
                    &cfg,
                    sc.seed,
                    (name, setting),
                    &mut m,
                    from,
                    |step, pol, m, parts| {
                        run.on_eval(step, cfg.iterations, pol, parts, &stores, m, &mut e)
                    },
                    on_iteration,
                )?;
                pb.finish_and_clear();
                cfg.iterations
            }
        };
        (run.metrics, run.evals) = (m, e);
        Ok(last)
    }
}
