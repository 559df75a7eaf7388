//! The training algorithms. Each file opens with its paper, variant and implementation details.

pub mod adam;
pub mod best_of_n;
pub mod common;
pub mod dpo;
pub mod grpo;
pub mod online_dpo;
pub mod pg;
pub mod pg_config;
pub mod ppo;
pub mod reinforce_pp;
pub mod reward;
pub mod rloo;
pub mod rollout;
pub mod sft;
pub mod tabular;
pub mod trainer;
