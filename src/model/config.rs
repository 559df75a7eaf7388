//! `[model]` and the network's shape: the precision of the matrix products, the sizes, and
//! the architecture of a checkpoint the policy starts from.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use tch::Kind;

use super::arch::Arch;
use crate::config::{in_range, need, ConfigError};

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

/// `[model]`: the policy's size (its vocabulary is the world's), or the checkpoint it starts
/// from.
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
    /// A Hugging Face checkpoint folder (config.json and model.safetensors, as
    /// `huggingface-cli download` writes it: GPT-2, GPT-NeoX/Pythia, Llama, Qwen2, Mistral) the
    /// policy starts from instead of random weights. Its config.json gives the architecture and
    /// sizes (n_layer, n_head and d_model are then not used); the world's token ids index the
    /// first rows of its embedding, so its vocabulary must hold the world's. "" for none.
    pub init: String,
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
            init: String::new(),
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
            arch: None,
            init: None,
            suppress: vec![crate::tokens::PAD, crate::tokens::BOS],
            special_rows: None,
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
    /// A checkpoint's architecture; `None`: alignlab's own GPT (GPT-2's layout at these sizes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// The checkpoint the weights start from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<Init>,
    /// Tokens the model never emits (the world's padding and `<bos>`): their logits are held
    /// at -1e9, so they are never sampled and get no probability in any log-prob, KL or
    /// entropy, as generation elsewhere masks them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppress: Vec<i64>,
    /// A checkpoint's embedding and LM-head rows under a world whose ids are its tokenizer's
    /// shifted by 3: rows 0, 1, 2 (`<pad>`, `<bos>`, `<eos>`) from these checkpoint rows,
    /// row i >= 3 from checkpoint row i - 3. None: row i from row i.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_rows: Option<[i64; 3]>,
}

/// A checkpoint folder the weights start from: its fingerprint (see `hf::fingerprint`) goes
/// into cache keys, so that a stage trained from another checkpoint is not reused; the folder
/// itself does not (the same files elsewhere give the same key).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Init {
    pub fingerprint: String,
    #[serde(skip)]
    pub dir: PathBuf,
}

impl GptConfig {
    /// alignlab's own GPT at these sizes, in fp32, nothing suppressed.
    pub fn sized(
        vocab_size: i64,
        block_size: i64,
        n_layer: i64,
        n_head: i64,
        d_model: i64,
    ) -> Self {
        GptConfig {
            vocab_size,
            block_size,
            n_layer,
            n_head,
            d_model,
            precision: Precision::Fp32,
            arch: None,
            init: None,
            suppress: vec![],
            special_rows: None,
        }
    }

    /// The architecture: the checkpoint's, or alignlab's own GPT at these sizes.
    pub fn arch(&self) -> Arch {
        self.arch.clone().unwrap_or_else(|| Arch::native(self.d_model, self.n_head))
    }

    /// Parameters, counting a tied embedding once: the sizes of [`GptConfig::var_shapes`].
    pub fn n_params(&self) -> i64 {
        self.var_shapes().iter().map(|(_, s)| s.iter().product::<i64>()).sum()
    }

    /// Every variable of the network (alignlab's names, see `gpt`) with its shape, as
    /// `Gpt::new` creates them: for checks and estimates that must not allocate the model.
    pub fn var_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let (a, d, v) = (self.arch(), self.d_model, self.vocab_size);
        let mut out = vec![("wte.weight".to_string(), vec![v, d])];
        if a.rope.is_none() {
            out.push(("wpe.weight".into(), vec![self.block_size, d]));
        }
        let norm = |out: &mut Vec<(String, Vec<i64>)>, name: &str| {
            out.push((format!("{name}.weight"), vec![d]));
            if !a.rms_norm {
                out.push((format!("{name}.bias"), vec![d]));
            }
        };
        let width = self.n_head * a.head_dim;
        for i in 0..self.n_layer {
            norm(&mut out, &format!("h.{i}.ln_1"));
            norm(&mut out, &format!("h.{i}.ln_2"));
            let linears = [
                ("attn.c_attn", a.qkv_rows(self.n_head), d, a.qkv_bias),
                ("attn.c_proj", d, width, a.out_bias),
                ("mlp.c_fc", a.fc_rows(), d, a.mlp_bias),
                ("mlp.c_proj", d, a.d_ff, a.mlp_bias),
            ];
            for (name, rows, cols, bias) in linears {
                out.push((format!("h.{i}.{name}.weight"), vec![rows, cols]));
                if bias {
                    out.push((format!("h.{i}.{name}.bias"), vec![rows]));
                }
            }
        }
        norm(&mut out, "ln_f");
        if !a.tied {
            out.push(("lm_head.weight".into(), vec![v, d]));
        }
        out
    }

    /// Forward+backward FLOPs per trained token at context length `t` (nanoGPT's estimate:
    /// 6 per weight in the matmuls, including the LM head, plus attention scores).
    pub fn train_flops_per_token(&self, t: i64) -> f64 {
        let a = self.arch();
        let (block, _) = a.block_matmul_weights(self.d_model, self.n_head);
        let width = (self.n_head * a.head_dim) as f64;
        let matmul_weights =
            self.n_layer as f64 * block as f64 + self.d_model as f64 * self.vocab_size as f64;
        6.0 * matmul_weights + 12.0 * self.n_layer as f64 * width * t as f64
    }
}
