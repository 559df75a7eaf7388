//! The special tokens every world and model share: padding, beginning and end of sequence.

pub const PAD: i64 = 0;
pub const BOS: i64 = 1;
pub const EOS: i64 = 2;
/// Word ids start here.
pub const N_SPECIAL: usize = 3;
