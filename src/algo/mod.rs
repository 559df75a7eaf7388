//! The training algorithms. Each file opens with its paper, variant and implementation details.

pub mod common;
pub mod dpo;
pub mod reward;
pub mod sft;
