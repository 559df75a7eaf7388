//! GPT: pre-LayerNorm transformer, learned positions, tied input/output embeddings.
//!
//! Parameter names follow GPT-2 (`wte`, `wpe`, `h.0.attn.c_attn`, `h.0.mlp.c_fc`, `ln_f`), so
//! checkpoints map onto GPT-2's by name (tch's Linear stores `[out, in]`, the transpose of
//! GPT-2's Conv1D). `forward` returns the final hidden states so that the LM head, the reward
//! head and the critic share one trunk. No dropout: runs are small and must be deterministic.

use serde::{Deserialize, Serialize};

use crate::config::{in_range, need, ConfigError};
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{nn, Kind, Tensor};

use super::cache::{KvCache, LayerKv};

/// What the matrix products of a model run in. Master weights, optimiser state, layer norms,
/// softmax and log-softmax, log-probabilities, losses, the exact KL and the scalar heads are
/// float32 in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in float32.
    #[default]
    Fp32,
    /// The linear layers, attention and the LM head in bfloat16 (the CPU's AMX or AVX512-BF16
    /// units, a GPU's tensor cores), from bfloat16 copies of the float32 weights; the residual
    /// stream stays float32 and the logits are upcast before any softmax.
    Bf16,
}

impl Precision {
    pub fn is_fp32(&self) -> bool {
        *self == Precision::Fp32
    }

    /// The element type of the matrix products.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }
}

/// The CPU's bfloat16 matrix units, where it has them (`amx_bf16` or `avx512_bf16` in
/// `/proc/cpuinfo`).
pub fn cpu_bf16_units() -> Option<&'static str> {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    if flags.contains(&"amx_bf16") {
        Some("AMX-BF16")
    } else if flags.contains(&"avx512_bf16") {
        Some("AVX512-BF16")
    } else {
        None
    }
}

/// `[model]`: the policy's size (its vocabulary is the world's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block (divides `d_model`).
    pub n_head: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Longest sequence in tokens (`<bos>`, prompt and response).
    pub block_size: usize,
    /// What the matrix products run in: "fp32", or "bf16" (linear layers, attention and the LM
    /// head in bfloat16 from copies of the float32 weights; everything else float32).
    pub precision: Precision,
    /// Run "bf16" on a CPU without bfloat16 units, where it is emulated and slower than fp32.
    pub emulated_bf16: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            n_layer: 2,
            n_head: 4,
            d_model: 128,
            block_size: 32,
            precision: Precision::Fp32,
            emulated_bf16: false,
        }
    }
}

impl ModelConfig {
    /// The network over a vocabulary of `vocab_size` tokens.
    pub fn gpt(&self, vocab_size: usize) -> GptConfig {
        GptConfig {
            vocab_size: vocab_size as i64,
            block_size: self.block_size as i64,
            n_layer: self.n_layer as i64,
            n_head: self.n_head as i64,
            d_model: self.d_model as i64,
            precision: self.precision,
        }
    }

    /// Range checks; the first violation is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("n_layer", self.n_layer, 1, 48, "use a few layers, e.g. 2")?;
        need(self.n_head >= 1, "n_head", || "must be at least 1".into(), "use e.g. 4 heads")?;
        need(
            self.d_model >= 1 && self.d_model.is_multiple_of(self.n_head),
            "d_model",
            || format!("d_model {} is not a multiple of n_head {}", self.d_model, self.n_head),
            "make d_model divisible by n_head, e.g. d_model = 128 with n_head = 4",
        )?;
        need(
            self.d_model <= 16384 && self.n_head <= 256,
            "d_model",
            || {
                format!(
                    "d_model {} with {} heads is past this harness's range",
                    self.d_model, self.n_head
                )
            },
            "use d_model <= 16384 and n_head <= 256 (e.g. 128 and 4)",
        )?;
        need(
            self.block_size <= 4096,
            "block_size",
            || format!("must be at most 4096 (got {})", self.block_size),
            "use a block just long enough for prompt + response, e.g. 32",
        )?;
        need(
            self.precision.is_fp32()
                || self.emulated_bf16
                || tch::Cuda::is_available()
                || cpu_bf16_units().is_some(),
            "precision",
            || {
                "bf16 on a CPU without bfloat16 units (no amx_bf16 or avx512_bf16 in /proc/cpuinfo) is emulated, slower than fp32".into()
            },
            "use precision = \"fp32\", or set emulated_bf16 = true to run it anyway",
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: i64,
    pub block_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub d_model: i64,
    /// Left out of the text when fp32, so that fp32 cache keys and model cards read as before.
    #[serde(default, skip_serializing_if = "Precision::is_fp32")]
    pub precision: Precision,
}

impl GptConfig {
    /// Parameters, counting the tied embedding once.
    pub fn n_params(&self) -> i64 {
        let d = self.d_model;
        self.vocab_size * d + self.block_size * d + self.n_layer * (12 * d * d + 13 * d) + 2 * d
    }

    /// Forward+backward FLOPs per trained token at context length `t` (nanoGPT's estimate:
    /// 6 per weight in the matmuls, including the tied LM head, plus attention scores).
    pub fn train_flops_per_token(&self, t: i64) -> f64 {
        let d = self.d_model as f64;
        let matmul_weights = self.n_layer as f64 * 12.0 * d * d + d * self.vocab_size as f64;
        6.0 * matmul_weights + 12.0 * self.n_layer as f64 * d * t as f64
    }
}

fn init_linear(p: nn::Path, i: i64, o: i64, std: f64) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: std },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, i, o, cfg)
}

/// A linear layer's weight and bias as a pass multiplies by them: the float32 masters, or
/// bfloat16 copies (cast inside the graph when the pass carries a gradient, so that the
/// gradient reaches the masters in float32; cached between optimiser steps otherwise).
struct Lin {
    w: Tensor,
    b: Tensor,
}

impl Lin {
    fn of(l: &nn::Linear) -> Lin {
        Lin {
            w: l.ws.shallow_clone(),
            b: l.bs.as_ref().expect("every linear layer has a bias").shallow_clone(),
        }
    }

    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Lin {
        Lin { w: f(&self.w), b: f(&self.b) }
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, Some(&self.b))
    }
}

/// One block's four linear layers as a pass multiplies by them.
struct BlockMats {
    c_attn: Lin,
    attn_proj: Lin,
    c_fc: Lin,
    mlp_proj: Lin,
}

impl BlockMats {
    fn of(block: &Block) -> BlockMats {
        BlockMats {
            c_attn: Lin::of(&block.attn.c_attn),
            attn_proj: Lin::of(&block.attn.c_proj),
            c_fc: Lin::of(&block.mlp.c_fc),
            mlp_proj: Lin::of(&block.mlp.c_proj),
        }
    }

    /// `f` of every weight and bias: a cast, or a shallow copy of cached casts.
    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> BlockMats {
        BlockMats {
            c_attn: self.c_attn.map(&f),
            attn_proj: self.attn_proj.map(&f),
            c_fc: self.c_fc.map(&f),
            mlp_proj: self.mlp_proj.map(&f),
        }
    }

    fn all(&self) -> [&Tensor; 8] {
        let l = [&self.c_attn, &self.attn_proj, &self.c_fc, &self.mlp_proj];
        [&l[0].w, &l[0].b, &l[1].w, &l[1].b, &l[2].w, &l[2].b, &l[3].w, &l[3].b]
    }
}

/// In bf16, the bfloat16 copies of every matrix (the blocks' and the tied embedding as the LM
/// head) that passes without a gradient use.
struct HalfCopies {
    /// The masters' versions (and the weights epoch) the copies were taken at.
    versions: Vec<i64>,
    blocks: Vec<BlockMats>,
    head: Tensor,
}

struct Attention {
    c_attn: nn::Linear,
    c_proj: nn::Linear,
    n_head: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &GptConfig) -> Attention {
        let d = cfg.d_model;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        Attention {
            c_attn: init_linear(&p / "c_attn", d, 3 * d, 0.02),
            c_proj: init_linear(&p / "c_proj", d, d, proj_std),
            n_head: cfg.n_head,
        }
    }

    /// x `[B, T, C]`; `mask` is `None` for plain causal attention without a cache.
    fn forward(
        &self,
        m: &BlockMats,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut LayerKv, i64)>,
    ) -> Tensor {
        let (b, t, c) = x.size3().unwrap();
        let dh = c / self.n_head;
        let qkv = m.c_attn.apply(x); // [B, T, 3C]
        let split = |i: i64| qkv.narrow(2, i * c, c).view([b, t, self.n_head, dh]).transpose(1, 2); // [B, H, T, Dh]
        let (q, k, v) = (split(0), split(1), split(2));
        let y = match cache {
            Some((kv, past)) => {
                kv.k.narrow(2, past, t).copy_(&k);
                kv.v.narrow(2, past, t).copy_(&v);
                let k_all = kv.k.narrow(2, 0, past + t); // [B, H, past+T, Dh]
                let v_all = kv.v.narrow(2, 0, past + t);
                attend(&q, &k_all, &v_all, mask, false)
            }
            // Plain causal attention without padding or cache.
            None => attend(&q, &k, &v, mask, mask.is_none()),
        }; // [B, H, T, Dh]
        m.attn_proj.apply(&y.transpose(1, 2).contiguous().view([b, t, c]))
    }

    /// Attention for some query rows only: `hq` `[B, Q, C]` the queries' inputs, `h`
    /// `[B, T, C]` every position's (keys and values), `mask` `[B|1, 1, Q, T]`. The query
    /// projection runs on the Q rows, the key/value projection on all T.
    fn forward_rows(&self, m: &BlockMats, hq: &Tensor, h: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t, c) = h.size3().unwrap();
        let q_rows = hq.size()[1];
        let dh = c / self.n_head;
        let (w, bias) = (&m.c_attn.w, &m.c_attn.b);
        let q = hq
            .linear(&w.narrow(0, 0, c), Some(bias.narrow(0, 0, c)))
            .view([b, q_rows, self.n_head, dh])
            .transpose(1, 2);
        let kv = h.linear(&w.narrow(0, c, 2 * c), Some(bias.narrow(0, c, 2 * c))); // [B, T, 2C]
        let split = |i: i64| kv.narrow(2, i * c, c).view([b, t, self.n_head, dh]).transpose(1, 2);
        let y = attend(&q, &split(0), &split(1), Some(mask), false);
        m.attn_proj.apply(&y.transpose(1, 2).contiguous().view([b, q_rows, c]))
    }
}

/// Scaled dot-product attention of `q` `[B, H, Tq, Dh]` on `k`, `v` `[B, H, Tk, Dh]` under
/// `mask` (bool, true = may attend) or, with `causal`, the causal mask. Float32 inputs, and a
/// single query (a decoding step), take SDPA's fused kernels. Bfloat16 inputs otherwise take
/// the products in bf16 and the softmax in fp32: on the CPU, SDPA's bf16 flash kernel is slower
/// than this at short sequences (its backward above all).
fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool) -> Tensor {
    let (tq, tk) = (q.size()[2], k.size()[2]);
    // One query (a decoding step on the KV cache): SDPA is the faster in bf16 too.
    if q.kind() == Kind::Float || tq == 1 {
        return Tensor::scaled_dot_product_attention(q, k, v, mask, 0.0, causal, None, false);
    }
    let scale = 1.0 / (q.size()[3] as f64).sqrt();
    let scores = q.matmul(&k.transpose(-2, -1)).to_kind(Kind::Float) * scale; // [B, H, Tq, Tk]
    let scores = match mask {
        Some(m) => scores.masked_fill(&m.logical_not(), f64::NEG_INFINITY),
        None if causal => {
            let opts = (Kind::Bool, q.device());
            let future = Tensor::ones([tq, tk], opts).triu(1);
            scores.masked_fill(&future, f64::NEG_INFINITY)
        }
        None => scores,
    };
    scores.softmax(-1, Kind::Float).to_kind(q.kind()).matmul(v)
}

struct Mlp {
    c_fc: nn::Linear,
    c_proj: nn::Linear,
}

impl Mlp {
    fn new(p: nn::Path, cfg: &GptConfig) -> Mlp {
        let d = cfg.d_model;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        Mlp {
            c_fc: init_linear(&p / "c_fc", d, 4 * d, 0.02),
            c_proj: init_linear(&p / "c_proj", 4 * d, d, proj_std),
        }
    }

    fn forward(m: &BlockMats, x: &Tensor) -> Tensor {
        m.mlp_proj.apply(&m.c_fc.apply(x).gelu("tanh"))
    }
}

struct Block {
    ln_1: nn::LayerNorm,
    attn: Attention,
    ln_2: nn::LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(p: nn::Path, cfg: &GptConfig) -> Block {
        let ln = |name: &str| nn::layer_norm(&p / name, vec![cfg.d_model], Default::default());
        Block {
            ln_1: ln("ln_1"),
            attn: Attention::new(&p / "attn", cfg),
            ln_2: ln("ln_2"),
            mlp: Mlp::new(&p / "mlp", cfg),
        }
    }
}

/// The attention mask `[B|1, 1, T, past+T]` (bool, true = may attend) of `t` queries at
/// positions `past..past+t`: causal, and with `key_valid` `[B, past+T]` only real keys, except
/// that every query may attend to itself, so a padding row never has all keys masked (which
/// would give NaN; padding positions' outputs are never used).
pub fn attention_mask(
    past: i64,
    t: i64,
    key_valid: Option<&Tensor>,
    device: tch::Device,
) -> Tensor {
    let qi = Tensor::arange_start(past, past + t, (Kind::Int64, device)).unsqueeze(1); // [T, 1]
    let kj = Tensor::arange(past + t, (Kind::Int64, device)).unsqueeze(0); // [1, Tk]
    let causal = kj.le_tensor(&qi); // [T, Tk]
    let m = match key_valid {
        Some(kv) => causal
            .unsqueeze(0)
            .logical_and(&kv.unsqueeze(1))
            .logical_or(&kj.eq_tensor(&qi).unsqueeze(0)), // [B, T, Tk]
        None => causal.unsqueeze(0),
    };
    m.unsqueeze(1)
}

/// Which positions' final hidden states a caller needs. The last block then runs its queries,
/// its MLP and the final LayerNorm on those rows only (the other rows feed nothing after it):
/// e.g. the response positions for log-probs, one position per row for a reward model's score.
pub enum Rows<'a> {
    All,
    /// `len` consecutive positions from `start`, the same for every row.
    Range(i64, i64),
    /// Positions per row, `[B, Q]` (int64).
    Index(&'a Tensor),
}

pub struct Gpt {
    pub cfg: GptConfig,
    wte: Tensor,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: nn::LayerNorm,
    /// In bf16, the bfloat16 copies of the matrices that passes without a gradient use, with the
    /// masters' versions they were taken at (an optimiser step, a load or a copy into the
    /// masters changes a version, and the copies are taken again).
    half: std::cell::RefCell<Option<HalfCopies>>,
}

impl Gpt {
    pub fn new(p: &nn::Path, cfg: &GptConfig) -> Gpt {
        let wte = (p / "wte").randn("weight", &[cfg.vocab_size, cfg.d_model], 0.0, 0.02);
        let wpe = (p / "wpe").randn("weight", &[cfg.block_size, cfg.d_model], 0.0, 0.02);
        let h = (0..cfg.n_layer).map(|i| Block::new(p / "h" / i, cfg)).collect();
        let ln_f = nn::layer_norm(p / "ln_f", vec![cfg.d_model], Default::default());
        Gpt { cfg: cfg.clone(), wte, wpe, h, ln_f, half: Default::default() }
    }

    /// The blocks' matrices this pass multiplies by: the masters in fp32; in bf16, copies cast
    /// inside the graph when `grad` (the pass will be differentiated), else the cached copies.
    fn block_mats(&self, grad: bool) -> Vec<BlockMats> {
        let masters = self.h.iter().map(BlockMats::of);
        match self.cfg.precision.kind() {
            Kind::Float => masters.collect(),
            kind if grad => masters.map(|m| m.map(|t| t.to_kind(kind))).collect(),
            _ => self.half_copies().blocks.iter().map(|b| b.map(Tensor::shallow_clone)).collect(),
        }
    }

    /// The LM head (the tied embedding) as [`Gpt::block_mats`] gives the blocks'.
    fn head(&self, grad: bool) -> Tensor {
        match self.cfg.precision.kind() {
            Kind::Float => self.wte.shallow_clone(),
            kind if grad => self.wte.to_kind(kind),
            _ => self.half_copies().head.shallow_clone(),
        }
    }

    /// The cached bf16 copies, taken again when a master changed since they were taken (an
    /// optimiser step, a load or a copy into the masters changes a version or the epoch).
    fn half_copies(&self) -> std::cell::Ref<'_, HalfCopies> {
        let kind = self.cfg.precision.kind();
        let masters: Vec<BlockMats> = self.h.iter().map(BlockMats::of).collect();
        let versions: Vec<i64> = masters
            .iter()
            .flat_map(|b| b.all().map(|t| t.internal_version()))
            .chain([self.wte.internal_version(), WEIGHTS_EPOCH.load(Ordering::Relaxed) as i64])
            .collect();
        if self.half.borrow().as_ref().is_none_or(|h| h.versions != versions) {
            let copies = tch::no_grad(|| HalfCopies {
                versions,
                blocks: masters.iter().map(|m| m.map(|t| t.to_kind(kind))).collect(),
                head: self.wte.to_kind(kind),
            });
            *self.half.borrow_mut() = Some(copies);
        }
        std::cell::Ref::map(self.half.borrow(), |h| h.as_ref().expect("just filled"))
    }

    /// Final hidden states `[B, T, C]` for `tokens` `[B, T]`.
    ///
    /// - `positions` `[B, T]`: position ids (left-padded batches count from each row's first
    ///   real token); default `past..past+T`.
    /// - `key_valid` `[B, past+T]` (bool): which keys are real tokens; `None` means all are.
    /// - `cache`: keys and values of earlier positions; this call appends to it.
    ///
    /// Every query may attend to itself, so a padding row never has all keys masked (which
    /// would give NaN); padding positions' outputs are never used.
    pub fn forward(
        &self,
        tokens: &Tensor,
        positions: Option<&Tensor>,
        key_valid: Option<&Tensor>,
        cache: Option<&mut KvCache>,
    ) -> Tensor {
        self.forward_impl(tokens, positions, key_valid, None, cache, Rows::All)
    }

    /// Final hidden states at `rows` only, `[B, Q, C]`: the same values as `forward` there
    /// (up to float rounding), with the last block's work on the other rows skipped.
    pub fn forward_rows(
        &self,
        tokens: &Tensor,
        positions: Option<&Tensor>,
        key_valid: Option<&Tensor>,
        rows: Rows,
    ) -> Tensor {
        self.forward_impl(tokens, positions, key_valid, None, None, rows)
    }

    /// Final hidden states at `rows` under the caller's attention mask `[B, 1, T, T]` (bool,
    /// true = may attend; every row must allow at least one key) and positions `[B, T]`: e.g.
    /// two responses packed after one prompt, each blind to the other.
    pub fn forward_masked(
        &self,
        tokens: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        rows: Rows,
    ) -> Tensor {
        self.forward_impl(tokens, Some(positions), None, Some(mask), None, rows)
    }

    fn forward_impl(
        &self,
        tokens: &Tensor,
        positions: Option<&Tensor>,
        key_valid: Option<&Tensor>,
        mask_given: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        rows: Rows,
    ) -> Tensor {
        let (b, t) = tokens.size2().unwrap();
        let device = tokens.device();
        let past = cache.as_ref().map_or(0, |c| c.len);
        if let Some(c) = cache.as_ref() {
            assert!(past + t <= c.capacity, "KV cache of capacity {} is full", c.capacity);
        }
        // With explicit positions (left padding, packed responses) the position embedding's
        // own range check guards block_size.
        assert!(
            positions.is_some() || past + t <= self.cfg.block_size,
            "sequence of {} exceeds block_size {}",
            past + t,
            self.cfg.block_size
        );
        let pos = match positions {
            Some(p) => p.shallow_clone(),
            None => Tensor::arange_start(past, past + t, (Kind::Int64, device))
                .unsqueeze(0)
                .expand([b, t], false),
        };
        let mut x = Tensor::embedding(&self.wte, tokens, -1, false, false)
            + Tensor::embedding(&self.wpe, &pos, -1, false, false); // [B, T, C]

        // Plain causal attention (no padding, no cache) takes SDPA's fused causal path.
        let mask = if let Some(m) = mask_given {
            Some(m.shallow_clone())
        } else if key_valid.is_none() && (past == 0 || t == 1) {
            // Causal without padding, or one new query, which sees every earlier key.
            None
        } else {
            Some(attention_mask(past, t, key_valid, device))
        };
        let pruned = !matches!(rows, Rows::All);
        self.count_flops(b, t, past, &rows, &x);
        assert!(!pruned || cache.is_none(), "forward_rows takes no KV cache");
        let full_blocks = if pruned { self.h.len() - 1 } else { self.h.len() };
        let mats = self.block_mats(x.requires_grad());
        let kind = self.cfg.precision.kind();
        for (i, (block, m)) in self.h.iter().zip(&mats).enumerate().take(full_blocks) {
            let layer_cache = cache.as_mut().map(|c| (&mut c.layers[i], past));
            let h = low(&x.apply(&block.ln_1), kind);
            x = &x + high(&block.attn.forward(m, &h, mask.as_ref(), layer_cache));
            x = &x + high(&Mlp::forward(m, &low(&x.apply(&block.ln_2), kind)));
        }
        if let Some(c) = cache {
            c.len = past + t;
        }
        if !pruned {
            return x.apply(&self.ln_f);
        }
        self.last_block_on_rows(&x, mats.last().expect("at least one block"), mask, &rows)
    }

    /// The last block on the kept `rows` of `x` (the output of the blocks before it): their
    /// attention-mask rows (without a mask, the causal mask written out), their queries
    /// against every key, their MLP; then the final layer norm.
    fn last_block_on_rows(
        &self,
        x: &Tensor,
        m: &BlockMats,
        mask: Option<Tensor>,
        rows: &Rows,
    ) -> Tensor {
        let kind = self.cfg.precision.kind();
        let (b, t) = (x.size()[0], x.size()[1]);
        let device = x.device();
        let block = self.h.last().expect("at least one block");
        let mask = mask.unwrap_or_else(|| attention_mask(0, t, None, device));
        let mask = match rows {
            Rows::Range(start, len) => mask.narrow(2, *start, *len),
            Rows::Index(idx) => {
                let (q, tk) = (idx.size()[1], mask.size()[3]);
                mask.expand([b, 1, t, tk], false).gather(
                    2,
                    &idx.view([b, 1, q, 1]).expand([b, 1, q, tk], false),
                    false,
                )
            }
            Rows::All => unreachable!(),
        };
        let select = |z: &Tensor| match rows {
            Rows::Range(start, len) => z.narrow(1, *start, *len),
            Rows::Index(idx) => z.gather(
                1,
                &idx.unsqueeze(-1).expand([b, idx.size()[1], z.size()[2]], false),
                false,
            ),
            Rows::All => unreachable!(),
        };
        let h = low(&x.apply(&block.ln_1), kind);
        let xq = select(x) + high(&block.attn.forward_rows(m, &select(&h), &h, &mask));
        let xq = &xq + high(&Mlp::forward(m, &low(&xq.apply(&block.ln_2), kind)));
        xq.apply(&self.ln_f)
    }

    /// Model FLOPs of this pass (see `profile`): every block on `t` new tokens after `past`,
    /// or, with `rows`, the last block's queries on the kept rows only; three times that
    /// when the output will carry a gradient (forward and backward).
    fn count_flops(&self, b: i64, t: i64, past: i64, rows: &Rows, x: &Tensor) {
        let (d, l) = (self.cfg.d_model, self.cfg.n_layer);
        // Causal attention: query i sees past + i + 1 keys.
        let keys = past as f64 + (t as f64 + 1.0) / 2.0;
        let q = match rows {
            Rows::All => t,
            Rows::Range(_, len) => *len,
            Rows::Index(idx) => idx.size()[1],
        };
        let flops = if q == t {
            crate::profile::transformer_flops(b, t, keys, d, l)
        } else {
            // The last block: keys and values on every row (QKV is 3 of its 12 d^2), the
            // rest on the kept queries, each against every key.
            crate::profile::transformer_flops(b, t, keys, d, l - 1)
                + (b * t) as f64 * 6.0 * (d * d) as f64
                + (b * q) as f64 * (18.0 * (d * d) as f64 + 4.0 * t as f64 * d as f64)
        };
        crate::profile::add_flops(if x.requires_grad() { 3.0 * flops } else { flops });
        crate::profile::count(crate::profile::Count::TokensFwd, (b * t) as f64);
        if x.requires_grad() {
            crate::profile::count(crate::profile::Count::TokensBwd, (b * t) as f64);
        }
    }

    /// The device the weights live on.
    pub fn cfg_device(&self) -> tch::Device {
        self.wte.device()
    }

    /// LM head with the tied embedding: hidden `[.., C]` -> logits `[.., V]`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let out = if self.cfg.precision.is_fp32() {
            hidden.linear::<Tensor>(&self.wte, None)
        } else {
            let head = self.head(hidden.requires_grad());
            high(&low(hidden, self.cfg.precision.kind()).linear::<Tensor>(&head, None))
        };
        let flops = 2.0 * out.numel() as f64 * self.cfg.d_model as f64;
        crate::profile::add_flops(if out.requires_grad() { 3.0 * flops } else { flops });
        out
    }
}

/// Counts the writes to weights that their own version counters do not see: an optimiser
/// that holds the weights as views of one flat buffer updates the buffer.
static WEIGHTS_EPOCH: AtomicU64 = AtomicU64::new(0);

/// Weights were written where their version counters do not see it: every model's bf16
/// copies are taken again before their next use.
pub fn weights_changed() {
    WEIGHTS_EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// `x` in the precision of the matrix products (no copy in fp32).
fn low(x: &Tensor, kind: Kind) -> Tensor {
    if x.kind() == kind {
        x.shallow_clone()
    } else {
        x.to_kind(kind)
    }
}

/// `x` back in float32 (no copy when it is).
fn high(x: &Tensor) -> Tensor {
    if x.kind() == Kind::Float {
        x.shallow_clone()
    } else {
        x.to_kind(Kind::Float)
    }
}
