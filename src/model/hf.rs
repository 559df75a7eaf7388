//! Hugging Face checkpoints' weights in and out: safetensors stored in fp32, fp16 or bf16, held
//! here in fp32.
//!
//! Every family maps onto alignlab's GPT-2 names (see `gpt`); [`layout`] lists, per alignlab
//! tensor, the checkpoint tensors it is made of and how: the same, transposed (GPT-2's Conv1D),
//! concatenated (the Llama family's q/k/v and gate/up projections, fused here) or GPT-NeoX's
//! per-head interleaved q/k/v. Loading applies it, `export` inverts it.

use serde_json::Value;
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

pub use super::checkpoint::*;
use super::checkpoint::{err, read_safetensors};

use super::arch::{Arch, Family, Mlp, RopeScaling};
use super::config::{GptConfig, Init, Precision};

/// The network a scenario runs from this checkpoint: its architecture and sizes, the world's
/// vocabulary (the first `vocab` rows of its embedding, or, with `special_rows`, those three
/// rows and the first `vocab - 3`: see `GptConfig::special_rows`) and the scenario's block.
pub fn network(
    ck: &Checkpoint,
    vocab: i64,
    block: i64,
    precision: Precision,
    special_rows: Option<[i64; 3]>,
) -> Result<GptConfig, HfError> {
    let config = ck.dir.join("config.json");
    let shift = if special_rows.is_some() { crate::tokens::N_SPECIAL as i64 } else { 0 };
    if vocab > ck.gpt.vocab_size + shift {
        return Err(err(
            &config,
            format!(
                "the embedding holds {} tokens, fewer than the world's {vocab}",
                ck.gpt.vocab_size
            ),
            "use a checkpoint with a larger vocabulary",
        ));
    }
    if block > ck.gpt.block_size {
        return Err(err(
            &config,
            format!("positions reach {}, fewer than model.block_size = {block}", ck.gpt.block_size),
            format!("set model.block_size <= {}", ck.gpt.block_size),
        ));
    }
    let init = Init { fingerprint: fingerprint(ck)?, dir: ck.dir.clone() };
    let cfg = GptConfig {
        vocab_size: vocab,
        block_size: block,
        precision,
        init: Some(init),
        suppress: vec![crate::tokens::PAD, crate::tokens::BOS],
        special_rows,
        ..ck.gpt.clone()
    };
    check(ck, &cfg)?;
    Ok(cfg)
}

/// How an alignlab tensor is made of a checkpoint's.
#[derive(Clone, Debug)]
pub enum Layout {
    Same,
    /// GPT-2's Conv1D `[in, out]`.
    Transposed,
    /// Rows of the sources, one after another (fused q/k/v, gate/up), with each one's rows.
    Cat(Vec<i64>),
    /// GPT-NeoX's fused q/k/v, rows ordered head by head `[H, 3, Dh]`; here `[3, H, Dh]`.
    NeoxQkv {
        heads: i64,
    },
}

/// One alignlab tensor: its name, the checkpoint's names it is made of, and how.
#[derive(Clone, Debug)]
pub struct Part {
    pub name: String,
    pub sources: Vec<String>,
    pub layout: Layout,
}

/// Every tensor of `cfg`'s network (as alignlab names it) with its checkpoint sources, under
/// the checkpoint family's names (GPT-2's with the `transformer.` prefix).
pub fn layout(cfg: &GptConfig) -> Vec<Part> {
    let a = cfg.arch();
    let mut p = Parts { rms: a.rms_norm, v: vec![] };
    let (emb, layers, norms, final_norm, head) = match a.family {
        Family::Gpt2 => (
            "transformer.wte.weight",
            "transformer.h",
            ["ln_1", "ln_2"],
            "transformer.ln_f",
            "lm_head.weight",
        ),
        Family::GptNeox => (
            "gpt_neox.embed_in.weight",
            "gpt_neox.layers",
            ["input_layernorm", "post_attention_layernorm"],
            "gpt_neox.final_layer_norm",
            "embed_out.weight",
        ),
        Family::Llama => (
            "model.embed_tokens.weight",
            "model.layers",
            ["input_layernorm", "post_attention_layernorm"],
            "model.norm",
            "lm_head.weight",
        ),
    };
    p.same("wte.weight", emb);
    if a.rope.is_none() {
        p.same("wpe.weight", "transformer.wpe.weight");
    }
    for i in 0..cfg.n_layer {
        let (h, t) = (format!("h.{i}"), format!("{layers}.{i}"));
        p.norm(&format!("{h}.ln_1"), &format!("{t}.{}", norms[0]));
        p.norm(&format!("{h}.ln_2"), &format!("{t}.{}", norms[1]));
        match a.family {
            Family::Gpt2 => {
                for lin in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
                    p.one(
                        &format!("{h}.{lin}.weight"),
                        &format!("{t}.{lin}.weight"),
                        Layout::Transposed,
                    );
                    p.same(&format!("{h}.{lin}.bias"), &format!("{t}.{lin}.bias"));
                }
            }
            Family::GptNeox => neox_block(&mut p, &h, &t, cfg.n_head, &a),
            Family::Llama => llama_block(&mut p, &h, &t, cfg.n_head, &a),
        }
    }
    p.norm("ln_f", final_norm);
    if !a.tied {
        p.same("lm_head.weight", head);
    }
    p.v
}

/// [`layout`]'s list as it is built.
struct Parts {
    rms: bool,
    v: Vec<Part>,
}

impl Parts {
    fn one(&mut self, name: &str, src: &str, layout: Layout) {
        self.v.push(Part { name: name.into(), sources: vec![src.into()], layout });
    }

    fn same(&mut self, name: &str, src: &str) {
        self.one(name, src, Layout::Same);
    }

    /// A norm's weight, and its bias unless it is an RMSNorm.
    fn norm(&mut self, name: &str, src: &str) {
        self.same(&format!("{name}.weight"), &format!("{src}.weight"));
        if !self.rms {
            self.same(&format!("{name}.bias"), &format!("{src}.bias"));
        }
    }

    /// A linear layer's weight, and its bias when it has one.
    fn linear(&mut self, name: &str, src: &str, bias: bool) {
        self.same(&format!("{name}.weight"), &format!("{src}.weight"));
        if bias {
            self.same(&format!("{name}.bias"), &format!("{src}.bias"));
        }
    }

    /// Rows of `srcs` (each with its row count) fused into one tensor.
    fn cat(&mut self, name: &str, srcs: &[(String, i64)]) {
        let sources = srcs.iter().map(|(s, _)| s.clone()).collect();
        let rows = srcs.iter().map(|(_, r)| *r).collect();
        self.v.push(Part { name: name.into(), sources, layout: Layout::Cat(rows) });
    }
}

/// GPT-NeoX's block: q/k/v interleaved by head, `dense`, `dense_h_to_4h`, `dense_4h_to_h`.
fn neox_block(p: &mut Parts, h: &str, t: &str, heads: i64, a: &Arch) {
    let qkv = format!("{t}.attention.query_key_value");
    p.one(&format!("{h}.attn.c_attn.weight"), &format!("{qkv}.weight"), Layout::NeoxQkv { heads });
    if a.qkv_bias {
        p.one(&format!("{h}.attn.c_attn.bias"), &format!("{qkv}.bias"), Layout::NeoxQkv { heads });
    }
    p.linear(&format!("{h}.attn.c_proj"), &format!("{t}.attention.dense"), a.out_bias);
    p.linear(&format!("{h}.mlp.c_fc"), &format!("{t}.mlp.dense_h_to_4h"), a.mlp_bias);
    p.linear(&format!("{h}.mlp.c_proj"), &format!("{t}.mlp.dense_4h_to_h"), a.mlp_bias);
}

/// The Llama family's block: q, k, v fused here, as are gate and up; o and down as they are.
fn llama_block(p: &mut Parts, h: &str, t: &str, heads: i64, a: &Arch) {
    let (q, kv) = (heads * a.head_dim, a.n_kv_head * a.head_dim);
    let fused = |names: &[(&str, i64)], suffix: &str| -> Vec<(String, i64)> {
        names.iter().map(|(n, r)| (format!("{t}.{n}.{suffix}"), *r)).collect()
    };
    let qkv = [("self_attn.q_proj", q), ("self_attn.k_proj", kv), ("self_attn.v_proj", kv)];
    let fc = [("mlp.gate_proj", a.d_ff), ("mlp.up_proj", a.d_ff)];
    p.cat(&format!("{h}.attn.c_attn.weight"), &fused(&qkv, "weight"));
    if a.qkv_bias {
        p.cat(&format!("{h}.attn.c_attn.bias"), &fused(&qkv, "bias"));
    }
    p.linear(&format!("{h}.attn.c_proj"), &format!("{t}.self_attn.o_proj"), a.out_bias);
    p.cat(&format!("{h}.mlp.c_fc.weight"), &fused(&fc, "weight"));
    if a.mlp_bias {
        p.cat(&format!("{h}.mlp.c_fc.bias"), &fused(&fc, "bias"));
    }
    p.linear(&format!("{h}.mlp.c_proj"), &format!("{t}.mlp.down_proj"), a.mlp_bias);
}

/// A checkpoint tensor's name as [`layout`] gives it: published GPT-2 checkpoints name the
/// trunk without the `transformer.` prefix that transformers writes.
fn canonical(family: Family, name: String) -> String {
    let bare = !name.starts_with("transformer.") && name != "lm_head.weight";
    if family == Family::Gpt2 && bare && !name.starts_with("score.") {
        format!("transformer.{name}")
    } else {
        name
    }
}

/// The shape an alignlab tensor is given by the checkpoint's of `shapes` under `part`.
fn assembled_shape(part: &Part, shapes: &[&Vec<i64>]) -> Vec<i64> {
    let mut s = shapes[0].clone();
    match part.layout {
        Layout::Transposed => s.reverse(),
        Layout::Cat(_) => s[0] = shapes.iter().map(|s| s[0]).sum(),
        Layout::Same | Layout::NeoxQkv { .. } => {}
    }
    s
}

/// Before any work: every tensor `cfg`'s network needs is in the checkpoint's weight files,
/// with the shape config.json implies (the embedding and position table at least as large as
/// the scenario's vocabulary and block), read from the files' headers alone.
pub fn check(ck: &Checkpoint, cfg: &GptConfig) -> Result<(), HfError> {
    let family = cfg.arch().family;
    let mut shapes = BTreeMap::new();
    for path in &ck.files {
        for (name, shape) in header_shapes(path)? {
            shapes.insert(canonical(family, name), shape);
        }
    }
    let want: BTreeMap<String, Vec<i64>> = cfg.var_shapes().into_iter().collect();
    let file = ck.weights_file();
    for part in layout(cfg) {
        let found: Vec<&Vec<i64>> = part
            .sources
            .iter()
            .map(|s| shapes.get(s).ok_or_else(|| missing(&file, s)))
            .collect::<Result<_, _>>()?;
        if let Layout::Cat(rows) = &part.layout {
            // Each source on its own, so that the error names the one that is wrong.
            for ((src, shape), r) in part.sources.iter().zip(&found).zip(rows) {
                let want: Vec<i64> =
                    [*r].into_iter().chain(want[&part.name][1..].to_vec()).collect();
                if **shape != want {
                    let one = Part {
                        name: part.name.clone(),
                        sources: vec![src.clone()],
                        layout: Layout::Same,
                    };
                    return Err(wrong_shape(&file, &one, shape, &want));
                }
            }
        }
        let mut got = assembled_shape(&part, &found);
        let need = &want[&part.name];
        if cut_to_rows(&part.name) {
            got[0] = (got[0] + shifted(cfg, &part.name)).min(need[0]);
        }
        if &got != need {
            return Err(wrong_shape(&file, &part, &got, need));
        }
    }
    Ok(())
}

/// Rows a shifted vocabulary adds in front of tensor `name` (see `GptConfig::special_rows`).
fn shifted(cfg: &GptConfig, name: &str) -> i64 {
    match (cfg.special_rows, name) {
        (Some(_), "wte.weight" | "lm_head.weight") => crate::tokens::N_SPECIAL as i64,
        _ => 0,
    }
}

/// `t`'s rows under `cfg`'s vocabulary: the three special rows first where it is shifted.
fn rows_of(cfg: &GptConfig, name: &str, t: Tensor) -> Tensor {
    match cfg.special_rows {
        Some(rows) if shifted(cfg, name) > 0 => {
            let index = Tensor::from_slice(&rows);
            Tensor::cat(&[t.index_select(0, &index), t], 0)
        }
        _ => t,
    }
}

/// The tensors a scenario takes the first rows of: the embedding and LM head (the world's
/// vocabulary) and the position table (its block).
fn cut_to_rows(name: &str) -> bool {
    matches!(name, "wte.weight" | "lm_head.weight" | "wpe.weight")
}

fn missing(file: &std::path::Path, name: &str) -> HfError {
    err(
        file,
        format!("has no tensor `{name}`"),
        "use the weights this config.json came with (a full checkpoint, not an adapter)",
    )
}

fn wrong_shape(file: &std::path::Path, part: &Part, got: &[i64], want: &[i64]) -> HfError {
    let names = part.sources.join("` + `");
    err(
        file,
        format!("tensor `{names}` has shape {got:?} where config.json asks for {want:?}"),
        "use the weights this config.json came with",
    )
}

/// Read every tensor of the checkpoint's weight files, in float32.
pub fn read_tensors(ck: &Checkpoint) -> Result<BTreeMap<String, Tensor>, HfError> {
    let mut all = BTreeMap::new();
    for path in &ck.files {
        for (name, t) in read_safetensors(path)? {
            let name = canonical(ck.gpt.arch().family, name);
            all.insert(name, t.to_kind(Kind::Float));
        }
    }
    Ok(all)
}

/// The checkpoint's tensors of one alignlab tensor: [`assemble`] inverted.
pub fn disassemble(part: &Part, t: &Tensor) -> Vec<Tensor> {
    match &part.layout {
        Layout::Same => vec![t.shallow_clone()],
        Layout::Transposed => vec![t.transpose(0, 1).contiguous()],
        Layout::Cat(rows) => t.split_with_sizes(rows.as_slice(), 0),
        Layout::NeoxQkv { heads } => {
            let rest: Vec<i64> = t.size()[1..].to_vec();
            let dh = t.size()[0] / (3 * heads);
            let shape: Vec<i64> = [3, *heads, dh].into_iter().chain(rest.iter().copied()).collect();
            vec![t.view(shape.as_slice()).transpose(0, 1).contiguous().view(t.size().as_slice())]
        }
    }
}

/// Build one alignlab tensor from the checkpoint's.
fn assemble(part: &Part, found: &[&Tensor]) -> Tensor {
    match part.layout {
        Layout::Same => found[0].shallow_clone(),
        Layout::Transposed => found[0].transpose(0, 1).contiguous(),
        Layout::Cat(_) => Tensor::cat(found, 0),
        Layout::NeoxQkv { heads } => {
            let t = found[0];
            let rest: Vec<i64> = t.size()[1..].to_vec();
            let dh = t.size()[0] / (3 * heads);
            let shape: Vec<i64> = [heads, 3, dh].into_iter().chain(rest.iter().copied()).collect();
            let out: Vec<i64> = [3 * heads * dh].into_iter().chain(rest).collect();
            t.view(shape.as_slice()).transpose(0, 1).contiguous().view(out.as_slice())
        }
    }
}

/// The checkpoint's tensors for each of `vars` (alignlab's names under `prefix`, e.g. "" for
/// a policy), in `cfg`'s layout; the embedding and LM head cut to `cfg`'s vocabulary and the
/// position table to its block. A missing tensor or one of the wrong shape is an error that
/// names it. Where `vars` has a reward model's `score` head and the checkpoint is a
/// `*ForSequenceClassification` one with one output, its `score.weight` goes there (the bias,
/// which such heads lack, set to 0): the result says whether it did (a causal LM's reward
/// model keeps its new head).
pub fn load(
    ck: &Checkpoint,
    cfg: &GptConfig,
    vars: &BTreeMap<String, Tensor>,
    prefix: &str,
) -> Result<bool, HfError> {
    let tensors = read_tensors(ck)?;
    let file = ck.weights_file();
    for part in layout(cfg) {
        let name = format!("{prefix}{}", part.name);
        let Some(var) = vars.get(&name) else { continue };
        let found: Vec<&Tensor> = part
            .sources
            .iter()
            .map(|s| tensors.get(s).ok_or_else(|| missing(&file, s)))
            .collect::<Result<_, _>>()?;
        let mut t = rows_of(cfg, &part.name, assemble(&part, &found));
        if cut_to_rows(&part.name) {
            t = t.narrow(0, 0, var.size()[0].min(t.size()[0]));
        }
        if t.size() != var.size() {
            return Err(wrong_shape(&file, &part, &t.size(), &var.size()));
        }
        tch::no_grad(|| var.shallow_clone().copy_(&t));
    }
    super::gpt::weights_changed();
    let head =
        (vars.get(&format!("{prefix}score.weight")), vars.get(&format!("{prefix}score.bias")));
    match (head, tensors.get("score.weight")) {
        ((Some(w), Some(b)), Some(score)) => load_score(&file, score, w, b).map(|()| true),
        _ => Ok(false),
    }
}

/// `cfg`'s tensors under the checkpoint family's names and layouts, from alignlab's `vars`.
pub fn tensors_out(
    cfg: &GptConfig,
    vars: &BTreeMap<String, Tensor>,
) -> Result<Vec<(String, Tensor)>, String> {
    let mut out = vec![];
    for part in layout(cfg) {
        let t = vars.get(&part.name).ok_or_else(|| format!("has no tensor `{}`", part.name))?;
        // A shifted vocabulary goes out in the tokenizer's order, the three specials last.
        let t = match shifted(cfg, &part.name) {
            0 => t.shallow_clone(),
            n => Tensor::cat(&[t.narrow(0, n, t.size()[0] - n), t.narrow(0, 0, n)], 0),
        };
        out.extend(part.sources.iter().cloned().zip(disassemble(&part, &t)));
    }
    Ok(out)
}

/// `cfg`'s `config.json` in transformers 4's layout (`rope_theta`, `rope_scaling`,
/// `torch_dtype`), which transformers 5 reads too.
pub fn config_json(cfg: &GptConfig, bos: i64, eos: i64, pad: i64) -> Value {
    use serde_json::json;
    let a = cfg.arch();
    let act = match a.mlp {
        Mlp::GeluTanh => "gelu_new",
        Mlp::Gelu => "gelu",
        Mlp::SwiGlu => "silu",
    };
    let rope = a.rope.clone();
    let scaling = match rope.as_ref().map(|r| &r.scaling) {
        Some(RopeScaling::Linear { factor }) => json!({"rope_type": "linear", "factor": factor}),
        Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max }) => {
            json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor, "original_max_position_embeddings": original_max,
            })
        }
        _ => Value::Null,
    };
    let theta = rope.as_ref().map_or(10000.0, |r| r.theta);
    let mut v = match a.family {
        Family::Gpt2 => json!({
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "n_positions": cfg.block_size, "n_embd": cfg.d_model, "n_layer": cfg.n_layer,
            "n_head": cfg.n_head, "n_inner": a.d_ff, "activation_function": act,
            "layer_norm_epsilon": a.norm_eps, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "initializer_range": 0.02, "scale_attn_weights": true,
        }),
        Family::GptNeox => json!({
            "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
            "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head, "intermediate_size": a.d_ff, "hidden_act": act,
            "layer_norm_eps": a.norm_eps, "max_position_embeddings": cfg.block_size,
            "rotary_pct": rope.as_ref().map_or(1.0, |r| r.dims as f64 / a.head_dim as f64),
            "rotary_emb_base": theta, "rope_scaling": scaling,
            "use_parallel_residual": a.parallel_residual, "attention_bias": a.qkv_bias,
            "hidden_dropout": 0.0, "attention_dropout": 0.0,
        }),
        Family::Llama => {
            // Llama's `attention_bias` puts a bias on q, k, v and o; Qwen2 has it on q, k, v.
            let qwen = a.qkv_bias && !a.out_bias;
            json!({
                "architectures": [if qwen { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
                "model_type": if qwen { "qwen2" } else { "llama" },
                "hidden_size": cfg.d_model, "intermediate_size": a.d_ff,
                "num_hidden_layers": cfg.n_layer, "num_attention_heads": cfg.n_head,
                "num_key_value_heads": a.n_kv_head, "head_dim": a.head_dim, "hidden_act": act,
                "rms_norm_eps": a.norm_eps, "max_position_embeddings": cfg.block_size,
                "rope_theta": theta, "rope_scaling": scaling, "attention_bias": a.out_bias,
                "mlp_bias": a.mlp_bias, "attention_dropout": 0.0, "use_sliding_window": false,
            })
        }
    };
    let common = json!({
        "vocab_size": cfg.vocab_size, "tie_word_embeddings": a.tied, "bos_token_id": bos,
        "eos_token_id": eos, "pad_token_id": pad, "torch_dtype": "float32",
    });
    let map = v.as_object_mut().expect("an object");
    map.extend(common.as_object().expect("an object").clone());
    v
}

/// A `*ForSequenceClassification` checkpoint's one-output `score` head into a reward model's
/// `w` and `b` (0: such heads have no bias).
fn load_score(
    file: &std::path::Path,
    score: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<(), HfError> {
    if score.size() != w.size() {
        return Err(err(
            file,
            format!(
                "its `score.weight` has shape {:?}; a reward model has one output of {:?}",
                score.size(),
                w.size()
            ),
            "use a reward-model checkpoint (num_labels = 1), or a causal LM for a new head",
        ));
    }
    tch::no_grad(|| {
        w.shallow_clone().copy_(score);
        let _ = b.shallow_clone().zero_();
    });
    Ok(())
}
