//! The generator behind every world, data set and sweep (rand_chacha's ChaCha12 through
//! `draw::Rng`): its stream is pinned, its state round-trips through a checkpoint, its streams
//! are independent, and its draws have the right distributions.

use alignlab::draw::{derive_seed, Rng};

#[test]
fn a_seed_gives_the_same_stream_on_every_machine() {
    // rand_chacha promises value stability for a seed; a dependency update that broke it would
    // change every world. The first words of seed 42 and of its stream 7, pinned; ChaCha12
    // written from its specification (`scripts/chacha12.py`, independent of rand_chacha) gives
    // the same words.
    let mut r = Rng::new(42);
    let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
    let mut s = Rng::stream(42, 7);
    let other: Vec<u64> = (0..3).map(|_| s.next_u64()).collect();
    assert_eq!(first, PINNED_42, "seed 42's stream changed");
    assert_eq!(other, PINNED_42_7, "seed 42's stream 7 changed");
    assert_ne!(first, other, "streams must differ");
    assert_eq!(derive_seed(0, "world/sentiment/process"), PINNED_DERIVE);
}

const PINNED_42: [u64; 3] = [9713269763989775522, 10011513049433592189, 11740708795755607249];
const PINNED_42_7: [u64; 3] = [18398896560331411741, 15071531305834398130, 12447705563529086961];
const PINNED_DERIVE: u64 = 3345543710067729524;

#[test]
fn the_state_round_trips_through_a_checkpoint() {
    let mut r = Rng::stream(9, 3);
    for _ in 0..37 {
        r.next_u64();
    }
    let _ = r.uniform();
    let saved = r.state();
    let ahead: Vec<u64> = (0..5).map(|_| r.next_u64()).collect();
    let mut back = Rng::from_state(saved);
    assert_eq!((0..5).map(|_| back.next_u64()).collect::<Vec<_>>(), ahead);
}

#[test]
fn draws_have_their_distributions() {
    let mut r = Rng::new(1);
    let n = 300_000;
    // Uniform integers in [0, 3): each count within 5 standard deviations of n / 3.
    let mut c = [0usize; 3];
    for _ in 0..n {
        c[r.below(3)] += 1;
    }
    let sd = (n as f64 * (1.0 / 3.0) * (2.0 / 3.0)).sqrt();
    assert!(c.iter().all(|&k| (k as f64 - n as f64 / 3.0).abs() < 5.0 * sd), "{c:?}");
    // Standard normals: mean 0 and variance 1 within 5 standard errors.
    let z: Vec<f64> = (0..n).map(|_| r.normal()).collect();
    let mean = z.iter().sum::<f64>() / n as f64;
    let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
    assert!(
        mean.abs() < 5.0 / (n as f64).sqrt() && (var - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt(),
        "{mean} {var}"
    );
    // Categorical: weights 1, 0, 3 give 1/4, never, 3/4.
    let mut c = [0usize; 3];
    for _ in 0..n {
        c[r.categorical(&[1.0, 0.0, 3.0])] += 1;
    }
    assert_eq!(c[1], 0);
    assert!((c[2] as f64 / n as f64 - 0.75).abs() < 5.0 * (0.75 * 0.25 / n as f64).sqrt(), "{c:?}");
    // Bernoulli at the edges, and a shuffle is a permutation.
    assert!((0..1000).all(|_| r.bernoulli(1.0)) && (0..1000).all(|_| !r.bernoulli(0.0)));
    let mut v: Vec<usize> = (0..50).collect();
    r.shuffle(&mut v);
    let mut sorted = v.clone();
    sorted.sort_unstable();
    assert!(v != sorted && sorted == (0..50).collect::<Vec<_>>());
}
