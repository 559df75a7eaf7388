//! Where a run's time goes: wall and CPU time per stage and per phase, and the model FLOPs of
//! every forward and backward pass.
//!
//! One profiler per thread (the stages run on one). A stage (`sft`, `reward`, `dpo beta=0.1 seed 0`, ...) is set
//! with [`stage`]; inside it, code marks phases with [`span`] (`rollout`, `eval_generate`,
//! ...). Spans nest, and time is exclusive: a phase's clock pauses while a phase inside it
//! runs, so the phases of a stage add up to its wall time. Time in a stage outside any span
//! is the stage's default phase (`train`). CPU time is the process's (every torch thread).
//!
//! FLOPs are counted where the model computes ([`add_flops`] from the GPT forward and its LM
//! head): 2 per weight per token in the matmuls plus attention's scores and mixing, and twice
//! that again for the backward pass when the output requires a gradient (the estimate of
//! nanoGPT and Kaplan et al.: forward 2N, backward 4N per token).
//!
//! How the profiler is used, in one place: it is a thread-local instrument, written one way.
//! The model, the algorithms and the evaluator only *record* into it ([`span`], [`add_flops`],
//! [`count`]), and nothing they compute ever reads it back, so no number a run produces
//! depends on it. Only `experiment` *reads* it: to charge each run its compute
//! ([`stage_work`], the `compute/*` evaluation rows) and to write the profile of a sweep
//! ([`snapshot`]). It is not passed down as an argument because every layer below
//! `experiment` would then carry a parameter it never reads.

use std::cell::RefCell;
use std::time::Instant;

/// The phases time is split into, in the order tables show them.
pub const PHASES: &[&str] = &[
    "exec", "startup", "train", "rollout", "prefs", "eval_generate", "eval_reference", "eval_gold",
    "eval_estimators", "candidates", "frontier", "checkpoint_io",
    // A sweep's coordinating process waiting for its cells (their own phases are counted in
    // them).
    "wait",
];

/// Wall seconds, CPU seconds, FLOPs and work counts of one (stage, phase).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Cost {
    pub wall_s: f64,
    pub cpu_s: f64,
    pub flops: f64,
    /// The work counted in [`COUNTS`] order (see [`count`]).
    pub counts: [f64; N_COUNTS],
}

impl Cost {
    fn add(&mut self, o: &Cost) {
        self.wall_s += o.wall_s;
        self.cpu_s += o.cpu_s;
        self.flops += o.flops;
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
    }
}

/// What compute accounting counts besides FLOPs, each a deterministic function of the run (so it
/// can sit beside the evaluations, unlike wall time):
/// - `tokens_fwd`: token positions through a model's forward pass (policy, reference, reward
///   model and critic alike), `tokens_bwd` those of them that also went backward;
/// - `grad_steps`: optimiser steps (a PPO minibatch steps the policy and the critic: two);
/// - `samples`: sequences a policy generated;
/// - `rm_queries`, `gold_queries`: responses scored by the reward model, by the gold reward.
pub const COUNTS: &[&str] =
    &["tokens_fwd", "tokens_bwd", "grad_steps", "samples", "rm_queries", "gold_queries"];
pub const N_COUNTS: usize = 6;

/// One of [`COUNTS`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Count {
    TokensFwd = 0,
    TokensBwd = 1,
    GradSteps = 2,
    Samples = 3,
    RmQueries = 4,
    GoldQueries = 5,
}

/// The phases whose work is a method's own compute (the rest is evaluation, I/O and start-up).
pub const WORK_PHASES: &[&str] = &["train", "rollout", "prefs", "candidates"];

/// A stage: (method or shared stage, setting, seed), as in the metric files.
pub type Stage = (String, String, u64);

struct State {
    stage: Stage,
    /// Where time outside any span goes in this stage.
    default_phase: &'static str,
    /// Open phases, innermost last; the stage's default phase when empty.
    stack: Vec<&'static str>,
    since_wall: Instant,
    since_cpu: f64,
    /// (stage, phase) -> cost, in first-seen order.
    totals: Vec<((Stage, &'static str), Cost)>,
}

thread_local! {
    /// The profiler of the thread that runs the stages (data-parallel helpers open no spans).
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

/// CPU seconds of this process, all threads.
pub fn process_cpu_s() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    STATE.with(|cell| {
        let mut guard = cell.borrow_mut();
        let st = guard.get_or_insert_with(|| State {
            stage: ("startup".into(), String::new(), 0),
            default_phase: "startup",
            stack: vec![],
            since_wall: Instant::now(),
            since_cpu: process_cpu_s(),
            totals: vec![],
        });
        f(st)
    })
}

impl State {
    fn phase(&self) -> &'static str {
        self.stack.last().copied().unwrap_or(self.default_phase)
    }

    fn slot(&mut self) -> &mut Cost {
        let key = (self.stage.clone(), self.phase());
        let i = match self.totals.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                self.totals.push((key, Cost::default()));
                self.totals.len() - 1
            }
        };
        &mut self.totals[i].1
    }

    /// Charge the time since the last change to the current (stage, phase).
    fn charge(&mut self) {
        let (now, cpu) = (Instant::now(), process_cpu_s());
        let dt = Cost {
            wall_s: now.duration_since(self.since_wall).as_secs_f64(),
            cpu_s: cpu - self.since_cpu,
            ..Default::default()
        };
        self.slot().add(&dt);
        self.since_wall = now;
        self.since_cpu = cpu;
    }
}

/// While alive, time goes to `phase` of the current stage.
#[must_use = "the phase ends when the guard is dropped"]
pub struct Span(());

impl Drop for Span {
    fn drop(&mut self) {
        with_state(|st| {
            st.charge();
            st.stack.pop();
        });
    }
}

/// Start a phase (one of [`PHASES`]) until the returned guard is dropped.
pub fn span(phase: &'static str) -> Span {
    debug_assert!(PHASES.contains(&phase), "unknown phase {phase}");
    with_state(|st| {
        st.charge();
        st.stack.push(phase);
    });
    Span(())
}

/// From now on time goes to the stage (`method`, `setting`, `seed`), to `default_phase` where
/// no span is open.
pub fn stage(method: &str, setting: &str, seed: u64, default_phase: &'static str) {
    debug_assert!(PHASES.contains(&default_phase), "unknown phase {default_phase}");
    with_state(|st| {
        st.charge();
        st.stage = (method.to_string(), setting.to_string(), seed);
        st.default_phase = default_phase;
    });
}

/// While alive, time goes to another stage; the one before it resumes at drop.
#[must_use = "the stage ends when the guard is dropped"]
pub struct StageGuard(Option<(Stage, &'static str)>);

impl Drop for StageGuard {
    fn drop(&mut self) {
        if let Some((s, phase)) = self.0.take() {
            stage(&s.0, &s.1, s.2, phase);
        }
    }
}

/// The current stage.
pub fn current() -> Stage {
    with_state(|st| st.stage.clone())
}

/// [`stage`] until the returned guard is dropped.
pub fn enter_stage(
    method: &str,
    setting: &str,
    seed: u64,
    default_phase: &'static str,
) -> StageGuard {
    let before = with_state(|st| (st.stage.clone(), st.default_phase));
    stage(method, setting, seed, default_phase);
    StageGuard(Some(before))
}

/// Count model FLOPs against the current (stage, phase).
pub fn add_flops(flops: f64) {
    with_state(|st| st.slot().flops += quantize(flops));
}

/// FLOPs are counted in multiples of 2^10 (each count rounded, an error under 512 FLOPs on
/// counts of millions). Every count and every sum of counts is then a float held exactly, up to
/// 2^63 FLOPs, so a total does not depend on the order it was added in: a run resumed from a
/// checkpoint sums to the same bytes as the uninterrupted one.
const FLOP_QUANTUM: f64 = 1024.0;

fn quantize(flops: f64) -> f64 {
    (flops / FLOP_QUANTUM).round() * FLOP_QUANTUM
}

/// `a + b` of two GFLOP values, exactly: each back to its FLOPs (a multiple of 2^10, which its
/// GFLOP value gives back exactly up to 2^60, about 1.2e18 FLOPs), added, divided once.
pub fn add_gflop(a: f64, b: f64) -> f64 {
    (quantize(a * 1e9) + quantize(b * 1e9)) / 1e9
}

/// Count `n` of `what` against the current (stage, phase).
pub fn count(what: Count, n: f64) {
    with_state(|st| st.slot().counts[what as usize] += n);
}

/// The compute of a stage so far in this process: FLOPs and counts of its [`WORK_PHASES`], as
/// `[gflop, tokens_fwd, tokens_bwd, grad_steps, samples, rm_queries, gold_queries]`.
pub fn stage_work(stage: &Stage) -> Work {
    let mut out = [0.0; N_COUNTS + 1];
    let mut flops = 0.0;
    with_state(|st| {
        for ((s, phase), c) in &st.totals {
            if s == stage && WORK_PHASES.contains(phase) {
                flops += c.flops;
                for (o, v) in out[1..].iter_mut().zip(&c.counts) {
                    *o += v;
                }
            }
        }
    });
    // Multiples of 2^10 added exactly, divided once.
    out[0] = flops / 1e9;
    out
}

/// A stage's compute as [`stage_work`] gives it, named by [`WORK`].
pub type Work = [f64; N_COUNTS + 1];

/// The names of a [`Work`]'s entries: model GFLOPs, then [`COUNTS`].
pub const WORK: &[&str] =
    &["gflop", "tokens_fwd", "tokens_bwd", "grad_steps", "samples", "rm_queries", "gold_queries"];

/// `into += scale * w`, entry by entry.
pub fn add_work(into: &mut Work, w: &Work, scale: f64) {
    for (o, v) in into.iter_mut().zip(w) {
        *o += scale * v;
    }
}

/// A [`Work`] as a two-line CSV (header, values), as a cached stage keeps it.
pub fn work_csv(w: &Work) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(WORK).expect("writing to memory");
    out.write_record(w.iter().map(|v| v.to_string())).expect("writing to memory");
    String::from_utf8(out.into_inner().expect("writing to memory")).expect("CSV of ASCII fields")
}

/// A [`Work`] back from [`work_csv`]'s text; None if it is not one.
pub fn parse_work(text: &str) -> Option<Work> {
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    if !rd.headers().ok()?.iter().eq(WORK.iter().copied()) {
        return None;
    }
    let v: Vec<f64> =
        rd.records().next()?.ok()?.iter().map(|x| x.parse().ok()).collect::<Option<_>>()?;
    v.try_into().ok()
}

/// Every (stage, phase) with its cost so far, time charged up to now.
pub fn snapshot() -> Vec<((Stage, &'static str), Cost)> {
    with_state(|st| {
        st.charge();
        st.totals.clone()
    })
}

/// Forward FLOPs of the matmuls and attention of one transformer pass: `tokens` new tokens per
/// row in `rows` rows of width `d`, `layers` layers, each query seeing `keys` keys on average.
pub fn transformer_flops(rows: i64, tokens: i64, keys: f64, d: i64, layers: i64) -> f64 {
    let (n, d, l) = ((rows * tokens) as f64, d as f64, layers as f64);
    // 12 d^2 weights per layer (QKV 3, projection 1, MLP 8), 2 FLOPs each per token;
    // scores and mixing: 2 * 2 * keys * d per token per layer.
    l * n * (24.0 * d * d + 4.0 * keys * d)
}

/// Median seconds of `reps` timed calls after `warmup` untimed ones.
pub fn time_it(warmup: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut ts: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(|a, b| a.total_cmp(b));
    ts[ts.len() / 2]
}

/// Best fp32 matmul throughput in FLOP/s on the current torch threads: square matmuls of
/// n = 512 and 1024, the yardstick of FLOP utilisation.
pub fn matmul_peak(device: tch::Device, quick: bool) -> f64 {
    matmul_peak_of(tch::Kind::Float, device, quick)
}

/// Best matmul throughput in FLOP/s with elements of `kind` (float or bfloat16): the yardstick
/// of FLOP utilisation in that precision.
pub fn matmul_peak_of(kind: tch::Kind, device: tch::Device, quick: bool) -> f64 {
    use tch::{Kind, Tensor};
    let _guard = tch::no_grad_guard();
    let mut best: f64 = 0.0;
    for n in [512i64, 1024] {
        let a = Tensor::randn([n, n], (kind, device));
        let b = Tensor::randn([n, n], (kind, device));
        let reps = if quick { 3 } else { 10 };
        let t = time_it(2, reps, || {
            let _ = a.matmul(&b).sum(Kind::Float).double_value(&[]);
        });
        best = best.max(2.0 * (n * n * n) as f64 / t);
    }
    best
}

/// A profile's rows summed by phase (every stage together), in [`PHASES`] order.
pub fn by_phase<'a>(rows: impl IntoIterator<Item = (&'a str, Cost)>) -> Vec<(&'static str, Cost)> {
    let mut out: Vec<(&'static str, Cost)> = PHASES.iter().map(|p| (*p, Cost::default())).collect();
    for (phase, c) in rows {
        if let Some(slot) = out.iter_mut().find(|(p, _)| *p == phase) {
            slot.1.add(&c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_spans_are_exclusive_and_add_up() {
        stage("profile-test", "", 0, "train");
        let t0 = Instant::now();
        {
            let _a = span("rollout");
            std::thread::sleep(std::time::Duration::from_millis(30));
            {
                let _b = span("eval_gold");
                std::thread::sleep(std::time::Duration::from_millis(40));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let total = t0.elapsed().as_secs_f64();
        stage("startup", "", 0, "startup");
        let rows: Vec<_> =
            snapshot().into_iter().filter(|((s, _), _)| s.0 == "profile-test").collect();
        let get =
            |p: &str| rows.iter().find(|((_, q), _)| *q == p).map(|(_, c)| c.wall_s).unwrap_or(0.0);
        // Each phase its own sleep, with room for a loaded machine's oversleeping (up to 25 ms)
        // but not for the inner span's 40 ms: a clock that did not pause would give rollout
        // 70 ms and train 90 ms.
        assert!((0.029..0.055).contains(&get("rollout")), "rollout {}", get("rollout"));
        assert!((0.039..0.065).contains(&get("eval_gold")), "eval_gold {}", get("eval_gold"));
        assert!((0.019..0.045).contains(&get("train")), "train {}", get("train"));
        let sum: f64 = rows.iter().map(|(_, c)| c.wall_s).sum();
        assert!((sum - total).abs() < 0.02, "phases {sum} vs wall {total}");
    }

    #[test]
    fn work_round_trips_through_its_csv() {
        let w: Work = [1.5, 2.0, 3.0, 4.0, 5.0, 0.0, 7.25];
        let text = work_csv(&w);
        assert_eq!(text, "gflop,tokens_fwd,tokens_bwd,grad_steps,samples,rm_queries,gold_queries\n1.5,2,3,4,5,0,7.25\n");
        assert_eq!(parse_work(&text), Some(w));
        assert_eq!(parse_work(&text.replace("gflop", "flop")), None);
        assert_eq!(parse_work("gflop,tokens_fwd,tokens_bwd,grad_steps,samples,rm_queries,gold_queries\n1,2,x,4,5,6,7\n"), None);
    }

    /// A resumed run's compute (the total logged at its checkpoint, then its own counts after)
    /// equals the uninterrupted run's to the bit, where plain float sums differ in the last
    /// digit (92.06349696 against 92.06349696000001 was seen).
    #[test]
    fn compute_sums_do_not_depend_on_where_a_run_resumed() {
        let counts: Vec<f64> =
            (0..200).map(|i| 1.0e7 * (1.0 + (i as f64 * 0.37).sin().abs()) + 0.3).collect();
        let deps = 0.123456789;
        let plain = |cut: usize| {
            let before: f64 = counts[..cut].iter().sum::<f64>() / 1e9;
            deps + before + counts[cut..].iter().sum::<f64>() / 1e9
        };
        assert!((1..200).any(|cut| plain(cut) != plain(0)), "the plain sums agree: no test");
        let exact = |cut: usize| {
            let sum = |c: &[f64]| c.iter().map(|&f| quantize(f)).sum::<f64>() / 1e9;
            // As a run's compute is taken (`Run::compute_now`): its base plus its own work.
            let at_checkpoint = add_gflop(deps, sum(&counts[..cut]));
            // The checkpoint's value read back from its CSV text, then the rest added.
            let logged: f64 = at_checkpoint.to_string().parse().unwrap();
            add_gflop(logged, sum(&counts[cut..]))
        };
        for cut in 0..200 {
            assert_eq!(exact(cut).to_bits(), exact(0).to_bits(), "resumed at {cut}");
        }
        // A GFLOP value gives its FLOPs back exactly up to 2^60 (a run of 1e18 FLOPs).
        for k in [1u64, 977, 123_456_789, 1 << 40, (1 << 50) - 3] {
            let flops = (k * 1024) as f64;
            assert_eq!(quantize(flops / 1e9 * 1e9), flops, "{flops}");
        }
    }

    #[test]
    fn transformer_flops_by_hand() {
        // 2 rows x 3 tokens, d = 4, 1 layer, 2 keys each: 6 * (24*16 + 4*2*4) = 6 * 416.
        assert_eq!(transformer_flops(2, 3, 2.0, 4, 1), 2496.0);
    }
}
