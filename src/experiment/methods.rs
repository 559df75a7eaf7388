//! The method registry: every method a scenario can run, with its name in tables and CSVs, its
//! setting label, the part of its run folder's cache key it owns, and the grids a `[sweep]`
//! may set. Adding a method is one variant here (with its arms below), its table in the
//! scenario, and its dispatch in `stages::method_stage`.

use crate::algo::dpo::{PrefLoss, TrainConfig};
use crate::algo::ppo::{KlControl, PpoConfig};

/// The grids a `[sweep]` table may set, besides `seeds`: `table.key` of each method's list.
pub const SWEEP_GRIDS: &[&str] = &["dpo.beta", "ipo.beta", "cdpo.beta", "unlikelihood.alpha", "ppo.target_kl", "ppo.kl_coef", "ppo_gt.target_kl", "ppo_gt.kl_coef", "best_of_n.n"];

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum MethodKind {
    Dpo { loss: PrefLoss, beta: f64 },
    PreferredFt,
    Unlikelihood { alpha: f64 },
    /// PPO with a critic, against the reward model or (`gold`) the world's gold reward.
    Ppo { gold: bool, cfg: PpoConfig },
}

/// Per-method overrides of `[train]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Overrides {
    pub lr: Option<f64>,
    pub steps: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Method {
    pub kind: MethodKind,
    pub opt: Overrides,
}

impl Method {
    /// The method's name in tables and CSVs.
    pub fn name(&self) -> &'static str {
        match self.kind {
            MethodKind::Dpo { loss: PrefLoss::Sigmoid, .. } => "dpo",
            MethodKind::Dpo { loss: PrefLoss::Ipo, .. } => "ipo",
            MethodKind::Dpo { loss: PrefLoss::Conservative { .. }, .. } => "cdpo",
            MethodKind::PreferredFt => "preferred_ft",
            MethodKind::Unlikelihood { .. } => "unlikelihood",
            MethodKind::Ppo { gold: false, .. } => "ppo",
            MethodKind::Ppo { gold: true, .. } => "ppo_gt",
        }
    }

    /// The method's setting, e.g. `beta=0.1`.
    pub fn setting(&self) -> String {
        match self.kind {
            MethodKind::Dpo { loss: PrefLoss::Conservative { label_smoothing }, beta } => format!("beta={beta};eps={label_smoothing}"),
            MethodKind::Dpo { beta, .. } => format!("beta={beta}"),
            MethodKind::PreferredFt => String::new(),
            MethodKind::Unlikelihood { alpha } => format!("alpha={alpha}"),
            MethodKind::Ppo { cfg, .. } => match cfg.kl {
                KlControl::Adaptive { target, .. } => format!("target_kl={target}"),
                KlControl::Fixed { coef } => format!("kl_coef={coef}"),
            },
        }
    }

    /// The method's part of its run folder's cache key: its kind with every setting, and for
    /// the offline methods the optimisation they run with (PPO's is in its kind).
    pub fn cache_key(&self, base: &TrainConfig) -> String {
        #[derive(serde::Serialize)]
        struct Key {
            kind: MethodKind,
            train: Option<TrainConfig>,
        }
        let train = (!matches!(self.kind, MethodKind::Ppo { .. })).then(|| self.train_config(base));
        format!("method|{}", super::key_of(&Key { kind: self.kind, train }))
    }

    pub fn train_config(&self, base: &TrainConfig) -> TrainConfig {
        let mut t = base.clone();
        if let Some(lr) = self.opt.lr {
            t.lr = lr;
        }
        if let Some(steps) = self.opt.steps {
            t.steps = steps;
        }
        t
    }
}


