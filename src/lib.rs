//! alignlab: RLHF (reward model + PPO) and DPO side by side, on shared libtorch models, in
//! controlled worlds where the true reward is known exactly.

pub mod algo;
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod draw;
pub mod eval;
pub mod experiment;
pub mod log;
pub mod model;
pub mod profile;
pub mod report;
pub mod stats;
pub mod tokens;
pub mod world;

/// The scenario files (parsing, `--set`, sweeps, cross-section checks), part of `experiment`.
pub use experiment::scenario;
