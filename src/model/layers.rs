//! A decoder block's parts for every architecture of `arch`: norms, the fused attention
//! (query, key and value in one product; rotary positions; grouped-query heads) and the MLP,
//! each over the matrices a pass multiplies by (float32 masters or bfloat16 copies).

use tch::{nn, Kind, Tensor};

use super::arch::{Arch, Mlp, Rope};
use super::cache::LayerKv;
use super::config::GptConfig;

fn init_linear(p: nn::Path, i: i64, o: i64, std: f64, bias: bool) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: std },
        bs_init: bias.then_some(nn::Init::Const(0.0)),
        bias,
    };
    nn::linear(p, i, o, cfg)
}

/// A linear layer's weight and bias as a pass multiplies by them: the float32 masters, or
/// bfloat16 copies (cast inside the graph when the pass carries a gradient, so that the
/// gradient reaches the masters in float32; cached between optimiser steps otherwise).
pub(super) struct Lin {
    pub w: Tensor,
    pub b: Option<Tensor>,
}

impl Lin {
    fn of(l: &nn::Linear) -> Lin {
        Lin { w: l.ws.shallow_clone(), b: l.bs.as_ref().map(Tensor::shallow_clone) }
    }

    fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Lin {
        Lin { w: f(&self.w), b: self.b.as_ref().map(&f) }
    }

    /// Output rows `start..start+len` only.
    fn rows(&self, start: i64, len: i64) -> Lin {
        self.map(|t| t.narrow(0, start, len))
    }

    fn apply(&self, x: &Tensor) -> Tensor {
        x.linear(&self.w, self.b.as_ref())
    }
}

/// One block's four linear layers as a pass multiplies by them.
pub(super) struct BlockMats {
    c_attn: Lin,
    attn_proj: Lin,
    c_fc: Lin,
    mlp_proj: Lin,
}

impl BlockMats {
    pub fn of(block: &Block) -> BlockMats {
        BlockMats {
            c_attn: Lin::of(&block.attn.c_attn),
            attn_proj: Lin::of(&block.attn.c_proj),
            c_fc: Lin::of(&block.mlp.c_fc),
            mlp_proj: Lin::of(&block.mlp.c_proj),
        }
    }

    /// `f` of every weight and bias: a cast, or a shallow copy of cached casts.
    pub fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> BlockMats {
        BlockMats {
            c_attn: self.c_attn.map(&f),
            attn_proj: self.attn_proj.map(&f),
            c_fc: self.c_fc.map(&f),
            mlp_proj: self.mlp_proj.map(&f),
        }
    }

    pub fn all(&self) -> Vec<&Tensor> {
        [&self.c_attn, &self.attn_proj, &self.c_fc, &self.mlp_proj]
            .into_iter()
            .flat_map(|l| std::iter::once(&l.w).chain(l.b.as_ref()))
            .collect()
    }
}

/// LayerNorm with a bias, or the Llama family's RMSNorm; float32 in both precisions.
pub(super) enum Norm {
    Layer(nn::LayerNorm),
    Rms { weight: Tensor, eps: f64 },
}

impl Norm {
    pub fn new(p: nn::Path, d: i64, arch: &Arch) -> Norm {
        if arch.rms_norm {
            Norm::Rms { weight: p.ones("weight", &[d]), eps: arch.norm_eps }
        } else {
            let cfg = nn::LayerNormConfig { eps: arch.norm_eps, ..Default::default() };
            Norm::Layer(nn::layer_norm(p, vec![d], cfg))
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Norm::Layer(ln) => x.apply(ln),
            Norm::Rms { weight, eps } => {
                let variance = x.square().mean_dim(-1, true, Kind::Float);
                x * (variance + *eps).rsqrt() * weight
            }
        }
    }
}

/// Rotary positions' `cos` and `sin` `[B, T, dims]` of one pass, in the precision of the
/// matrix products (cast once per pass, not per layer), with the rotation.
pub(super) struct Rotary<'a> {
    pub rope: &'a Rope,
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rotary<'_> {
    /// `x` `[B, H, T, Dh]` rotated at this pass's positions.
    fn apply(&self, x: &Tensor) -> Tensor {
        self.rope.apply(x, &self.cos.unsqueeze(1), &self.sin.unsqueeze(1))
    }
}

pub(super) struct Attention {
    c_attn: nn::Linear,
    c_proj: nn::Linear,
    n_head: i64,
    n_kv_head: i64,
    head_dim: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &GptConfig, arch: &Arch) -> Attention {
        let d = cfg.d_model;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        let width = cfg.n_head * arch.head_dim;
        Attention {
            c_attn: init_linear(&p / "c_attn", d, arch.qkv_rows(cfg.n_head), 0.02, arch.qkv_bias),
            c_proj: init_linear(&p / "c_proj", width, d, proj_std, arch.out_bias),
            n_head: cfg.n_head,
            n_kv_head: arch.n_kv_head,
            head_dim: arch.head_dim,
        }
    }

    /// `[B, T, n * Dh]` -> `[B, n, T, Dh]`.
    fn heads(&self, x: &Tensor, n: i64) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        x.view([b, t, n, self.head_dim]).transpose(1, 2)
    }

    /// Keys or values of the key/value heads repeated for the query heads sharing them.
    fn shared(&self, x: Tensor) -> Tensor {
        let rep = self.n_head / self.n_kv_head;
        if rep == 1 {
            return x;
        }
        let (b, kv, t, dh) = x.size4().unwrap();
        x.unsqueeze(2).expand([b, kv, rep, t, dh], false).reshape([b, kv * rep, t, dh])
    }

    /// x `[B, T, C]`; `mask` is `None` for plain causal attention without a cache.
    pub fn forward(
        &self,
        m: &BlockMats,
        x: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut LayerKv, i64)>,
        rotary: Option<&Rotary>,
    ) -> Tensor {
        let (b, t, _) = x.size3().unwrap();
        let (q_w, kv_w) = (self.n_head * self.head_dim, self.n_kv_head * self.head_dim);
        let qkv = m.c_attn.apply(x); // [B, T, (H + 2 KV) Dh]
        let mut q = self.heads(&qkv.narrow(2, 0, q_w), self.n_head); // [B, H, T, Dh]
        let mut k = self.heads(&qkv.narrow(2, q_w, kv_w), self.n_kv_head);
        let v = self.heads(&qkv.narrow(2, q_w + kv_w, kv_w), self.n_kv_head);
        if let Some(r) = rotary {
            q = r.apply(&q);
            k = r.apply(&k);
        }
        let y = match cache {
            Some((kv, past)) => {
                kv.k.narrow(2, past, t).copy_(&k);
                kv.v.narrow(2, past, t).copy_(&v);
                let k_all = self.shared(kv.k.narrow(2, 0, past + t)); // [B, H, past+T, Dh]
                let v_all = self.shared(kv.v.narrow(2, 0, past + t));
                // Without a mask: a prefill (causal) or one query (which sees every key).
                attend(&q, &k_all, &v_all, mask, mask.is_none() && t > 1)
            }
            // Plain causal attention without padding or cache.
            None => attend(&q, &self.shared(k), &self.shared(v), mask, mask.is_none()),
        }; // [B, H, T, Dh]
        m.attn_proj.apply(&y.transpose(1, 2).contiguous().view([b, t, q_w]))
    }

    /// Attention for some query rows only: `hq` `[B, Q, C]` the queries' inputs, `h`
    /// `[B, T, C]` every position's (keys and values), `mask` `[B|1, 1, Q, T]`; `rotary_q` the
    /// queries' rotation, `rotary` every position's. The query projection runs on the Q rows,
    /// the key/value projection on all T.
    pub fn forward_rows(
        &self,
        m: &BlockMats,
        hq: &Tensor,
        h: &Tensor,
        mask: &Tensor,
        rotary: Option<(&Rotary, &Rotary)>,
    ) -> Tensor {
        let (b, q_rows) = (h.size()[0], hq.size()[1]);
        let (q_w, kv_w) = (self.n_head * self.head_dim, self.n_kv_head * self.head_dim);
        let mut q = self.heads(&m.c_attn.rows(0, q_w).apply(hq), self.n_head);
        let kv = m.c_attn.rows(q_w, 2 * kv_w).apply(h); // [B, T, 2 KV Dh]
        let mut k = self.heads(&kv.narrow(2, 0, kv_w), self.n_kv_head);
        let v = self.heads(&kv.narrow(2, kv_w, kv_w), self.n_kv_head);
        if let Some((rq, r)) = rotary {
            q = rq.apply(&q);
            k = r.apply(&k);
        }
        let y = attend(&q, &self.shared(k), &self.shared(v), Some(mask), false);
        m.attn_proj.apply(&y.transpose(1, 2).contiguous().view([b, q_rows, q_w]))
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

pub(super) struct MlpLayers {
    c_fc: nn::Linear,
    c_proj: nn::Linear,
}

impl MlpLayers {
    fn new(p: nn::Path, cfg: &GptConfig, arch: &Arch) -> MlpLayers {
        let d = cfg.d_model;
        let proj_std = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
        MlpLayers {
            c_fc: init_linear(&p / "c_fc", d, arch.fc_rows(), 0.02, arch.mlp_bias),
            c_proj: init_linear(&p / "c_proj", arch.d_ff, d, proj_std, arch.mlp_bias),
        }
    }
}

/// The MLP of `kind` on `x`; for SwiGLU the fused input holds `[gate; up]`.
pub(super) fn mlp(m: &BlockMats, x: &Tensor, kind: Mlp) -> Tensor {
    let h = m.c_fc.apply(x);
    let act = match kind {
        Mlp::GeluTanh => h.gelu("tanh"),
        Mlp::Gelu => h.gelu("none"),
        Mlp::SwiGlu => {
            let ff = h.size()[2] / 2;
            h.narrow(2, 0, ff).silu() * h.narrow(2, ff, ff)
        }
    };
    m.mlp_proj.apply(&act)
}

pub(super) struct Block {
    pub ln_1: Norm,
    pub attn: Attention,
    pub ln_2: Norm,
    pub mlp: MlpLayers,
}

impl Block {
    pub fn new(p: nn::Path, cfg: &GptConfig, arch: &Arch) -> Block {
        Block {
            ln_1: Norm::new(&p / "ln_1", cfg.d_model, arch),
            attn: Attention::new(&p / "attn", cfg, arch),
            ln_2: Norm::new(&p / "ln_2", cfg.d_model, arch),
            mlp: MlpLayers::new(&p / "mlp", cfg, arch),
        }
    }
}

/// `x` in the precision of the matrix products (no copy in fp32).
pub(super) fn low(x: &Tensor, kind: Kind) -> Tensor {
    if x.kind() == kind {
        x.shallow_clone()
    } else {
        x.to_kind(kind)
    }
}

/// `x` back in float32 (no copy when it is).
pub(super) fn high(x: &Tensor) -> Tensor {
    if x.kind() == Kind::Float {
        x.shallow_clone()
    } else {
        x.to_kind(Kind::Float)
    }
}
