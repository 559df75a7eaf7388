//! The decoder architectures a checkpoint may have: alignlab's own GPT (GPT-2's layout), and
//! those read from a Hugging Face `config.json`: GPT-2, GPT-NeoX (Pythia) and the Llama family
//! (Llama, Qwen2, SmolLM, Mistral). One block structure covers them; the differences are data:
//! the norm, where positions enter (learned table or rotary), the MLP's activation and gate,
//! grouped-query attention, biases, parallel residual and a tied or separate LM head.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

/// The checkpoint family, which fixes the names and layouts of its tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Gpt2,
    GptNeox,
    Llama,
}

/// The MLP: `Gelu*` are `proj(act(fc(x)))`; `SwiGlu` is `down(silu(gate(x)) * up(x))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mlp {
    /// GPT-2's `gelu_new` (tanh approximation).
    GeluTanh,
    /// The exact (erf) GELU: GPT-NeoX's `gelu`.
    Gelu,
    /// The Llama family's gated SiLU.
    #[serde(rename = "swiglu")]
    SwiGlu,
}

/// Rotary position embedding on the first `dims` dimensions of each head, in the
/// rotate-half layout of GPT-NeoX and Llama.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rope {
    pub theta: f64,
    /// Rotated dimensions per head (even; the head size where the whole head is rotated).
    pub dims: i64,
    pub scaling: RopeScaling,
}

/// How a long-context checkpoint rescales its rotary frequencies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (every frequency divided by it).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max: f64,
    },
}

/// A decoder's architecture beyond its sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    pub family: Family,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    pub n_kv_head: i64,
    /// Width of one head.
    pub head_dim: i64,
    /// Width of the MLP's hidden layer.
    pub d_ff: i64,
    pub mlp: Mlp,
    /// RMSNorm (the Llama family) rather than LayerNorm with a bias.
    pub rms_norm: bool,
    pub norm_eps: f64,
    /// Rotary positions; `None`: a learned position table (`wpe`).
    pub rope: Option<Rope>,
    /// GPT-NeoX's `x + attn(ln1(x)) + mlp(ln2(x))`.
    pub parallel_residual: bool,
    /// The LM head is the token embedding.
    pub tied: bool,
    /// Biases on the query, key and value projections; on the attention's output; on the MLP.
    pub qkv_bias: bool,
    pub out_bias: bool,
    pub mlp_bias: bool,
}

impl Arch {
    /// alignlab's own GPT: GPT-2's architecture at width `d` with `n_head` heads.
    pub fn native(d: i64, n_head: i64) -> Arch {
        Arch {
            family: Family::Gpt2,
            n_kv_head: n_head,
            head_dim: d / n_head,
            d_ff: 4 * d,
            mlp: Mlp::GeluTanh,
            rms_norm: false,
            norm_eps: 1e-5,
            rope: None,
            parallel_residual: false,
            tied: true,
            qkv_bias: true,
            out_bias: true,
            mlp_bias: true,
        }
    }

    /// Rows of the fused query/key/value projection: queries, then keys, then values.
    pub fn qkv_rows(&self, n_head: i64) -> i64 {
        (n_head + 2 * self.n_kv_head) * self.head_dim
    }

    /// Rows of the fused MLP input (`[gate; up]` for SwiGLU).
    pub fn fc_rows(&self) -> i64 {
        match self.mlp {
            Mlp::SwiGlu => 2 * self.d_ff,
            _ => self.d_ff,
        }
    }

    /// Weights of one block's matrix products (each costs 2 FLOPs per token forward), and of
    /// its query/key/value projection alone.
    pub fn block_matmul_weights(&self, d: i64, n_head: i64) -> (i64, i64) {
        let qkv = d * self.qkv_rows(n_head);
        let out = n_head * self.head_dim * d;
        let mlp = d * self.fc_rows() + self.d_ff * d;
        (qkv + out + mlp, qkv)
    }
}

impl Rope {
    /// The rotary frequencies, float32 as Hugging Face's transformers computes them.
    fn inv_freq(&self, device: Device) -> Tensor {
        let exps = Tensor::arange_start_step(0, self.dims, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / self.dims as f64;
        let inv = Tensor::pow_scalar(self.theta, &exps).reciprocal();
        match self.scaling {
            RopeScaling::None => inv,
            RopeScaling::Linear { factor } => inv / factor,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max } => {
                let low_wavelen = original_max / low_freq_factor;
                let high_wavelen = original_max / high_freq_factor;
                let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
                let scaled = inv.where_self(&wavelen.le(low_wavelen), &(&inv / factor));
                let smooth = (wavelen.reciprocal() * original_max - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                let smoothed =
                    (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
                let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
                smoothed.where_self(&medium, &scaled)
            }
        }
    }

    /// `cos` and `sin` `[B, T, dims]` at `positions` `[B, T]`.
    pub fn cos_sin(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let inv = self.inv_freq(positions.device()); // [dims/2]
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * inv.view([1, 1, -1]);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos(), emb.sin())
    }

    /// `x` `[B, H, T, Dh]` rotated on its first `dims` dimensions by `cos` and `sin`
    /// `[B, 1, T, dims]` (of `x`'s element type).
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
        let dh = x.size()[3];
        let (rot, pass) = (x.narrow(3, 0, self.dims), x.narrow(3, self.dims, dh - self.dims));
        let half = self.dims / 2;
        let rotated = Tensor::cat(&[&rot.narrow(3, half, half).neg(), &rot.narrow(3, 0, half)], 3);
        let out = &rot * cos + rotated * sin;
        if self.dims == dh {
            out
        } else {
            Tensor::cat(&[&out, &pass], 3)
        }
    }
}
