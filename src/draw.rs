//! Random draws for the worlds, the data and the sweeps: rand_chacha's ChaCha12 generator with
//! the distributions of rand and rand_distr.
//!
//! Why ChaCha12: rand_chacha promises the same stream for the same seed on every platform and in
//! every release of the crate (its output is part of its semver contract), unlike `StdRng`,
//! which may change algorithm; and ChaCha's independent streams give every document of a corpus
//! its own generator, so corpora are drawn in parallel with the same bytes at any thread count.
//! Torch's own generator is used only for model initialisation and sampling.
//!
//! [`Rng`] names the draws the code makes; each is one call into rand or rand_distr:
//! uniform integers without modulo bias (`random_range`), uniform floats (`StandardUniform`),
//! Bernoulli (`random_bool`), standard normals (`StandardNormal`), categorical draws
//! (`WeightedIndex`) and Fisher-Yates shuffles (`SliceRandom`).

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::seq::SliceRandom;
use rand::{Rng as _, RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;
use rand_distr::StandardNormal;

/// Derive an independent seed for a named purpose ("world", "sft/data", ...) from a base seed:
/// the label's FNV-1a hash mixed with the base, expanded by ChaCha12.
pub fn derive_seed(base: u64, label: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha12Rng::seed_from_u64(base ^ h.rotate_left(17)).next_u64()
}

/// The generator of a stream of draws.
#[derive(Clone, Debug)]
pub struct Rng(ChaCha12Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha12Rng::seed_from_u64(seed))
    }

    /// The `index`-th of the independent streams of `seed` (one per document of a corpus).
    pub fn stream(seed: u64, index: u64) -> Rng {
        let mut r = ChaCha12Rng::seed_from_u64(seed);
        r.set_stream(index);
        Rng(r)
    }

    /// The generator's state, for checkpoints: its key (4 words), stream and position (2 words).
    pub fn state(&self) -> [u64; 7] {
        let key = self.0.get_seed();
        let word =
            |i: usize| u64::from_le_bytes(key[8 * i..8 * i + 8].try_into().expect("8 bytes"));
        let pos = self.0.get_word_pos();
        [word(0), word(1), word(2), word(3), self.0.get_stream(), pos as u64, (pos >> 64) as u64]
    }

    pub fn from_state(s: [u64; 7]) -> Rng {
        let mut key = [0u8; 32];
        for (i, w) in s[..4].iter().enumerate() {
            key[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        let mut r = ChaCha12Rng::from_seed(key);
        r.set_stream(s[4]);
        r.set_word_pos(s[5] as u128 | (s[6] as u128) << 64);
        Rng(r)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        self.0.random_range(lo..=hi)
    }

    /// Uniform integer in [0, n) (n >= 1).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n)
    }

    pub fn normal(&mut self) -> f64 {
        StandardNormal.sample(&mut self.0)
    }

    /// True with probability `p` (clamped to [0, 1]).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.0.random_bool(p.clamp(0.0, 1.0))
    }

    /// An index drawn from non-negative weights, not all zero.
    pub fn categorical(&mut self, weights: &[f64]) -> usize {
        WeightedIndex::new(weights)
            .expect("non-negative finite weights, not all zero")
            .sample(&mut self.0)
    }

    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        xs.shuffle(&mut self.0);
    }
}
