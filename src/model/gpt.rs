//! The decoder: a pre-norm transformer. alignlab's own GPT is GPT-2's architecture (learned
//! positions, tied input/output embeddings); a checkpoint's architecture (`arch`) may instead
//! have rotary positions, RMSNorm, a gated MLP, grouped-query attention, a parallel residual or
//! a separate LM head.
//!
//! Parameter names follow GPT-2 (`wte`, `wpe`, `h.0.attn.c_attn`, `h.0.mlp.c_fc`, `ln_f`, and
//! `lm_head` where untied) for every architecture; `hf` maps them onto each family's names and
//! layouts. `forward` returns the final hidden states so that the LM head, the reward head and
//! the critic share one trunk. No dropout: runs are small and must be deterministic.

use std::sync::atomic::{AtomicU64, Ordering};
use tch::{nn, Kind, Tensor};

pub use super::config::{cpu_bf16_units, GptConfig, ModelConfig, Precision};

use super::arch::Arch;
use super::cache::KvCache;
use super::layers::{high, low, mlp, Block, BlockMats, Norm, Rotary};

/// In bf16, the bfloat16 copies of every matrix (the blocks' and the LM head) that passes
/// without a gradient use.
struct HalfCopies {
    /// The masters' versions (and the weights epoch) the copies were taken at.
    versions: Vec<i64>,
    blocks: Vec<BlockMats>,
    head: Tensor,
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
    arch: Arch,
    wte: Tensor,
    /// The learned position table (`None` with rotary positions).
    wpe: Option<Tensor>,
    h: Vec<Block>,
    ln_f: Norm,
    /// A separate LM head (`None` where it is the tied embedding).
    lm_head: Option<Tensor>,
    /// In bf16, the bfloat16 copies of the matrices that passes without a gradient use, with the
    /// masters' versions they were taken at (an optimiser step, a load or a copy into the
    /// masters changes a version, and the copies are taken again).
    half: std::cell::RefCell<Option<HalfCopies>>,
}

impl Gpt {
    pub fn new(p: &nn::Path, cfg: &GptConfig) -> Gpt {
        let arch = cfg.arch();
        let wte = (p / "wte").randn("weight", &[cfg.vocab_size, cfg.d_model], 0.0, 0.02);
        let wpe = arch
            .rope
            .is_none()
            .then(|| (p / "wpe").randn("weight", &[cfg.block_size, cfg.d_model], 0.0, 0.02));
        let h = (0..cfg.n_layer).map(|i| Block::new(p / "h" / i, cfg, &arch)).collect();
        let ln_f = Norm::new(p / "ln_f", cfg.d_model, &arch);
        let lm_head = (!arch.tied)
            .then(|| (p / "lm_head").randn("weight", &[cfg.vocab_size, cfg.d_model], 0.0, 0.02));
        Gpt { cfg: cfg.clone(), arch, wte, wpe, h, ln_f, lm_head, half: Default::default() }
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

    /// The LM head's float32 master: the tied embedding or the separate head.
    fn head_master(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.wte)
    }

    /// The LM head as [`Gpt::block_mats`] gives the blocks'.
    fn head(&self, grad: bool) -> Tensor {
        match self.cfg.precision.kind() {
            Kind::Float => self.head_master().shallow_clone(),
            kind if grad => self.head_master().to_kind(kind),
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
            .flat_map(|b| b.all().into_iter().map(|t| t.internal_version()))
            .chain([
                self.head_master().internal_version(),
                WEIGHTS_EPOCH.load(Ordering::Relaxed) as i64,
            ])
            .collect();
        if self.half.borrow().as_ref().is_none_or(|h| h.versions != versions) {
            let copies = tch::no_grad(|| HalfCopies {
                versions,
                blocks: masters.iter().map(|m| m.map(|t| t.to_kind(kind))).collect(),
                head: self.head_master().to_kind(kind),
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
        let tok = Tensor::embedding(&self.wte, tokens, -1, false, false); // [B, T, C]
        let (mut x, rotary) = match (&self.wpe, &self.arch.rope) {
            (Some(wpe), _) => (tok + Tensor::embedding(wpe, &pos, -1, false, false), None),
            (None, Some(rope)) => {
                let (cos, sin) = rope.cos_sin(&pos);
                let kind = self.cfg.precision.kind();
                (tok, Some(Rotary { rope, cos: low(&cos, kind), sin: low(&sin, kind) }))
            }
            (None, None) => unreachable!("a model has learned or rotary positions"),
        };

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
            let h = low(&block.ln_1.forward(&x), kind);
            let attn =
                high(&block.attn.forward(m, &h, mask.as_ref(), layer_cache, rotary.as_ref()));
            x = self.residual(block, m, &x, attn);
        }
        if let Some(c) = cache {
            c.len = past + t;
        }
        if !pruned {
            return self.ln_f.forward(&x);
        }
        let last = mats.last().expect("at least one block");
        self.last_block_on_rows(&x, last, mask, rotary.as_ref(), &rows)
    }

    /// A block's output from its input `x` and its attention's output: `x + attn` then the
    /// MLP on that, or with a parallel residual `x + attn + mlp(x)`.
    fn residual(&self, block: &Block, m: &BlockMats, x: &Tensor, attn: Tensor) -> Tensor {
        let kind = self.cfg.precision.kind();
        if self.arch.parallel_residual {
            let f = high(&mlp(m, &low(&block.ln_2.forward(x), kind), self.arch.mlp));
            return f + attn + x;
        }
        let x = x + attn;
        &x + high(&mlp(m, &low(&block.ln_2.forward(&x), kind), self.arch.mlp))
    }

    /// The last block on the kept `rows` of `x` (the output of the blocks before it): their
    /// attention-mask rows (without a mask, the causal mask written out), their queries
    /// against every key, their MLP; then the final layer norm.
    fn last_block_on_rows(
        &self,
        x: &Tensor,
        m: &BlockMats,
        mask: Option<Tensor>,
        rotary: Option<&Rotary>,
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
        let h = low(&block.ln_1.forward(x), kind);
        let rotary_q =
            rotary.map(|r| Rotary { rope: r.rope, cos: select(&r.cos), sin: select(&r.sin) });
        let both = rotary.zip(rotary_q.as_ref()).map(|(r, rq)| (rq, r));
        let attn = high(&block.attn.forward_rows(m, &select(&h), &h, &mask, both));
        let xq = self.residual(block, m, &select(x), attn);
        self.ln_f.forward(&xq)
    }

    /// Model FLOPs of this pass (see `profile`): every block on `t` new tokens after `past`,
    /// or, with `rows`, the last block's queries on the kept rows only; three times that
    /// when the output will carry a gradient (forward and backward).
    fn count_flops(&self, b: i64, t: i64, past: i64, rows: &Rows, x: &Tensor) {
        let (d, l) = (self.cfg.d_model, self.cfg.n_layer);
        let (weights, qkv) = self.arch.block_matmul_weights(d, self.cfg.n_head);
        let (weights, qkv) = (weights as f64, qkv as f64);
        let width = (self.cfg.n_head * self.arch.head_dim) as f64;
        // Causal attention: query i sees past + i + 1 keys. Per token and layer: 2 FLOPs per
        // matrix weight; scores and mixing 2 * 2 * keys * width.
        let keys = past as f64 + (t as f64 + 1.0) / 2.0;
        let layers = |n: i64, l: i64| l as f64 * n as f64 * (2.0 * weights + 4.0 * keys * width);
        let q = match rows {
            Rows::All => t,
            Rows::Range(_, len) => *len,
            Rows::Index(idx) => idx.size()[1],
        };
        let flops = if q == t {
            layers(b * t, l)
        } else {
            // The last block: keys and values on every row (counted as the whole QKV
            // projection), the rest on the kept queries, each against every key.
            layers(b * t, l - 1)
                + (b * t) as f64 * 2.0 * qkv
                + (b * q) as f64 * (2.0 * (weights - qkv) + 4.0 * t as f64 * width)
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

    /// The LM head's logits with the tokens the model never emits (`cfg.suppress`) held at
    /// -1e9: what sampling, log-probs, the KL and the entropy use. Finite, so that a
    /// log-prob read at a padding position and multiplied by its zero mask stays 0.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        let out = self.raw_logits(hidden);
        if self.cfg.suppress.is_empty() {
            return out;
        }
        let idx = Tensor::from_slice(&self.cfg.suppress).to_device(out.device());
        out.index_fill(-1, &idx, -1e9)
    }

    /// The LM head (the tied embedding or a separate head), nothing suppressed: hidden `[.., C]` -> logits `[.., V]`.
    pub fn raw_logits(&self, hidden: &Tensor) -> Tensor {
        let out = if self.cfg.precision.is_fp32() {
            hidden.linear::<Tensor>(self.head_master(), None)
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
