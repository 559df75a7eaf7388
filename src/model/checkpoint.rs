//! A Hugging Face checkpoint folder read: `config.json` in transformers 4's layout
//! (`rope_theta`, `rope_scaling`, `rotary_pct`, `torch_dtype`) or 5's (`rope_parameters`,
//! `dtype`) as alignlab's network, its special tokens, and its weight files
//! (`model.safetensors`, or the shards `model.safetensors.index.json` lists).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

use super::arch::{Arch, Family, Mlp, Rope, RopeScaling};
use super::config::GptConfig;

/// A checkpoint problem: the file, what is wrong, and what to do.
#[derive(Debug)]
pub struct HfError {
    pub file: PathBuf,
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for HfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; fix: {}", self.file.display(), self.problem, self.fix)
    }
}

impl std::error::Error for HfError {}

impl HfError {
    /// The scenario's error at `key`: the file and its problem, and the fix.
    pub fn at(self, key: &str) -> crate::config::ConfigError {
        crate::config::ConfigError {
            key: key.into(),
            problem: format!("{}: {}", self.file.display(), self.problem),
            fix: self.fix,
        }
    }
}

pub(super) fn err(file: &Path, problem: impl Into<String>, fix: impl Into<String>) -> HfError {
    HfError { file: file.to_path_buf(), problem: problem.into(), fix: fix.into() }
}

/// The `model_type`s read, with the families they map onto.
pub const SUPPORTED: &str = "gpt2, gpt_neox, llama, qwen2, mistral";

/// A checkpoint folder's network, special tokens and weight files.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub dir: PathBuf,
    /// The network at the checkpoint's own vocabulary and position range.
    pub gpt: GptConfig,
    /// `num_labels` of a `*ForSequenceClassification` checkpoint.
    pub num_labels: Option<i64>,
    pub files: Vec<PathBuf>,
    /// Where an alignlab export of a shifted vocabulary put `<pad>`, `<bos>`, `<eos>`
    /// (`alignlab_special_rows`, see `experiment::export_shifted`).
    pub alignlab_special_rows: Option<[i64; 3]>,
}

impl Checkpoint {
    /// The weight file an error about a tensor names (the first shard).
    pub fn weights_file(&self) -> PathBuf {
        self.files.first().cloned().unwrap_or_else(|| self.dir.clone())
    }
}

/// `config.json`'s value of `key`, as an integer, float, bool or string.
struct Cfg<'a> {
    v: &'a Value,
    file: &'a Path,
}

impl Cfg<'_> {
    fn int(&self, key: &str) -> Result<i64, HfError> {
        self.opt_int(key)?.ok_or_else(|| {
            err(
                self.file,
                format!("has no `{key}`"),
                "use the config.json the checkpoint came with",
            )
        })
    }

    fn opt_int(&self, key: &str) -> Result<Option<i64>, HfError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().filter(|&n| n >= 0).map(Some).ok_or_else(|| {
                err(self.file, format!("`{key}` is {v}, not a count"), "correct that key")
            }),
        }
    }

    fn float(&self, key: &str, default: f64) -> Result<f64, HfError> {
        match self.v.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| {
                err(self.file, format!("`{key}` is {v}, not a number"), "correct that key")
            }),
        }
    }

    fn bool(&self, key: &str, default: bool) -> bool {
        self.v.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.v.get(key).and_then(Value::as_str)
    }
}

/// `dir`'s `config.json`, parsed; `missing` is the fix where there is none.
pub(super) fn read_config(dir: &Path, missing: &str) -> Result<(PathBuf, Value), HfError> {
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|_| err(&file, "does not exist", missing))?;
    let v = serde_json::from_str(&text)
        .map_err(|e| err(&file, format!("is not JSON ({e})"), "download the checkpoint again"))?;
    Ok((file, v))
}

/// Read `dir`'s `config.json` and find its weight files.
pub fn open(dir: &Path) -> Result<Checkpoint, HfError> {
    if !dir.is_dir() {
        return Err(err(dir, "is not a folder", "pass the folder `huggingface-cli download` wrote (it holds config.json and model.safetensors)"));
    }
    let (file, v) = read_config(
        dir,
        "pass a Hugging Face model folder (config.json beside model.safetensors)",
    )?;
    let c = Cfg { v: &v, file: &file };
    let model_type = c.str("model_type").unwrap_or("");
    let gpt = match model_type {
        "gpt2" => gpt2(&c)?,
        "gpt_neox" => neox(&c)?,
        "llama" | "qwen2" | "mistral" => llama(&c, model_type)?,
        other => {
            return Err(err(
                &file,
                format!("model_type `{other}` is not supported"),
                format!("use a checkpoint of one of: {SUPPORTED}"),
            ))
        }
    };
    let labels = match v.get("id2label") {
        Some(Value::Object(m)) => Some(m.len() as i64),
        _ => c.opt_int("num_labels")?,
    };
    let classifier = v.get("architectures").and_then(Value::as_array).is_some_and(|a| {
        a.iter().any(|s| s.as_str().is_some_and(|s| s.ends_with("ForSequenceClassification")))
    });
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        files: weight_files(dir)?,
        num_labels: if classifier { labels.or(Some(2)) } else { None },
        alignlab_special_rows: v
            .get("alignlab_special_rows")
            .and_then(|r| serde_json::from_value(r.clone()).ok()),
        gpt,
    })
}

fn sizes(vocab: i64, block: i64, layers: i64, heads: i64, d: i64, arch: Arch) -> GptConfig {
    GptConfig { arch: Some(arch), ..GptConfig::sized(vocab, block, layers, heads, d) }
}

fn gpt2(c: &Cfg) -> Result<GptConfig, HfError> {
    let (d, heads) = (c.int("n_embd")?, c.int("n_head")?);
    check_heads(c, d, heads)?;
    let mut arch = Arch::native(d, heads);
    arch.d_ff = c.opt_int("n_inner")?.unwrap_or(4 * d);
    arch.norm_eps = c.float("layer_norm_epsilon", 1e-5)?;
    arch.mlp = activation(c, "activation_function", "gelu_new")?;
    arch.tied = c.bool("tie_word_embeddings", true);
    if c.bool("scale_attn_by_inverse_layer_idx", false) {
        return Err(err(
            c.file,
            "`scale_attn_by_inverse_layer_idx` is true",
            "use a GPT-2 checkpoint without it (the published gpt2 to gpt2-xl have none)",
        ));
    }
    let block = c.opt_int("n_positions")?.map_or_else(|| c.int("n_ctx"), Ok)?;
    Ok(sizes(c.int("vocab_size")?, block, c.int("n_layer")?, heads, d, arch))
}

fn neox(c: &Cfg) -> Result<GptConfig, HfError> {
    let (d, heads) = (c.int("hidden_size")?, c.int("num_attention_heads")?);
    check_heads(c, d, heads)?;
    let head_dim = d / heads;
    let bias = c.bool("attention_bias", true);
    let arch = Arch {
        family: Family::GptNeox,
        n_kv_head: heads,
        head_dim,
        d_ff: c.int("intermediate_size")?,
        mlp: activation(c, "hidden_act", "gelu")?,
        rms_norm: false,
        norm_eps: c.float("layer_norm_eps", 1e-5)?,
        rope: Some(rope(c, head_dim, 0.25)?),
        parallel_residual: c.bool("use_parallel_residual", true),
        tied: c.bool("tie_word_embeddings", false),
        qkv_bias: bias,
        out_bias: bias,
        mlp_bias: true,
    };
    let block = c.int("max_position_embeddings")?;
    Ok(sizes(c.int("vocab_size")?, block, c.int("num_hidden_layers")?, heads, d, arch))
}

fn llama(c: &Cfg, model_type: &str) -> Result<GptConfig, HfError> {
    let (d, heads) = (c.int("hidden_size")?, c.int("num_attention_heads")?);
    let kv = c.opt_int("num_key_value_heads")?.unwrap_or(heads);
    let head_dim = c.opt_int("head_dim")?.unwrap_or(if heads > 0 { d / heads } else { 0 });
    if heads == 0 || kv == 0 || heads % kv != 0 || head_dim == 0 || head_dim % 2 != 0 {
        return Err(err(
            c.file,
            format!(
                "{heads} attention heads, {kv} key/value heads and head_dim {head_dim} do not fit"
            ),
            "use the config.json the checkpoint came with",
        ));
    }
    if model_type != "llama" && c.bool("use_sliding_window", false)
        || model_type == "mistral" && c.opt_int("sliding_window")?.is_some()
    {
        return Err(err(c.file, "uses sliding-window attention", "use a checkpoint with full attention (`use_sliding_window: false`, `sliding_window: null`)"));
    }
    let attention_bias = c.bool("attention_bias", false);
    let arch = Arch {
        family: Family::Llama,
        n_kv_head: kv,
        head_dim,
        d_ff: c.int("intermediate_size")?,
        mlp: match c.str("hidden_act").unwrap_or("silu") {
            "silu" | "swish" => Mlp::SwiGlu,
            other => {
                return Err(err(
                    c.file,
                    format!("hidden_act `{other}` is not supported for {model_type}"),
                    "use a checkpoint with `hidden_act: silu`",
                ))
            }
        },
        rms_norm: true,
        norm_eps: c.float("rms_norm_eps", 1e-6)?,
        rope: Some(rope(c, head_dim, 1.0)?),
        parallel_residual: false,
        tied: c.bool("tie_word_embeddings", false),
        qkv_bias: model_type == "qwen2" || attention_bias,
        out_bias: attention_bias,
        mlp_bias: c.bool("mlp_bias", false),
    };
    let block = c.int("max_position_embeddings")?;
    Ok(sizes(c.int("vocab_size")?, block, c.int("num_hidden_layers")?, heads, d, arch))
}

fn check_heads(c: &Cfg, d: i64, heads: i64) -> Result<(), HfError> {
    if heads == 0 || d % heads != 0 || (d / heads) % 2 != 0 {
        return Err(err(
            c.file,
            format!("width {d} does not split into {heads} heads of even size"),
            "use the config.json the checkpoint came with",
        ));
    }
    Ok(())
}

fn activation(c: &Cfg, key: &str, default: &str) -> Result<Mlp, HfError> {
    match c.str(key).unwrap_or(default) {
        "gelu_new" | "gelu_pytorch_tanh" => Ok(Mlp::GeluTanh),
        "gelu" => Ok(Mlp::Gelu),
        other => Err(err(
            c.file,
            format!("`{key}` = `{other}` is not supported"),
            "use a checkpoint with gelu, gelu_new or gelu_pytorch_tanh",
        )),
    }
}

/// The rotary embedding from transformers 5's `rope_parameters` or 4's `rope_theta` /
/// `rotary_emb_base`, `rope_scaling` and `rotary_pct` / `partial_rotary_factor`.
fn rope(c: &Cfg, head_dim: i64, default_fraction: f64) -> Result<Rope, HfError> {
    let params = c.v.get("rope_parameters").filter(|p| p.is_object());
    let scaling = params.or_else(|| c.v.get("rope_scaling").filter(|p| p.is_object()));
    let get = |p: Option<&Value>, key: &str| p.and_then(|p| p.get(key)).and_then(Value::as_f64);
    let theta = get(params, "rope_theta")
        .or_else(|| c.v.get("rope_theta").and_then(Value::as_f64))
        .or_else(|| c.v.get("rotary_emb_base").and_then(Value::as_f64))
        .unwrap_or(10000.0);
    let fraction = get(params, "partial_rotary_factor")
        .or_else(|| c.v.get("partial_rotary_factor").and_then(Value::as_f64))
        .or_else(|| c.v.get("rotary_pct").and_then(Value::as_f64))
        .unwrap_or(default_fraction);
    let dims = ((head_dim as f64 * fraction) as i64) / 2 * 2;
    if dims < 2 || dims > head_dim {
        return Err(err(c.file, format!("a rotary fraction of {fraction} of {head_dim}-wide heads rotates {dims} dimensions"), "use the config.json the checkpoint came with"));
    }
    let kind = scaling
        .and_then(|s| s.get("rope_type").or_else(|| s.get("type")))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let need = |key: &str| {
        get(scaling, key).ok_or_else(|| {
            err(
                c.file,
                format!("rope scaling `{kind}` has no `{key}`"),
                "use the config.json the checkpoint came with",
            )
        })
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear { factor: need("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max: need("original_max_position_embeddings")?,
        },
        other => {
            return Err(err(
                c.file,
                format!("rope scaling `{other}` is not supported"),
                "use a checkpoint with rope scaling default, linear or llama3",
            ))
        }
    };
    Ok(Rope { theta, dims, scaling })
}

/// `model.safetensors`, or the shards `model.safetensors.index.json` lists.
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HfError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if let Ok(text) = std::fs::read_to_string(&index) {
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            err(&index, format!("is not JSON ({e})"), "download the checkpoint again")
        })?;
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| err(&index, "has no `weight_map`", "download the checkpoint again"))?;
        let mut files: Vec<PathBuf> =
            map.values().filter_map(Value::as_str).map(|f| dir.join(f)).collect();
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.exists()) {
            return Err(err(
                missing,
                "is listed in model.safetensors.index.json but missing",
                "download the checkpoint again",
            ));
        }
        return Ok(files);
    }
    let fix = if dir.join("pytorch_model.bin").exists() {
        "this folder has only pytorch_model.bin: save it as safetensors (model.save_pretrained(dir, safe_serialization=True) in transformers)"
    } else {
        "download the checkpoint's model.safetensors into this folder"
    };
    Err(err(&single, "does not exist (nor model.safetensors.index.json)", fix))
}

/// A cheap fingerprint of a checkpoint: SHA-256 over config.json, and each weight file's
/// length, safetensors header (names, dtypes, shapes, offsets) and 64 chunks of 4 KiB spread
/// over its data. A changed tensor almost surely changes a header or a sampled chunk; the
/// weights are not read in full (a 3 GB checkpoint would take seconds at every start).
pub fn fingerprint(ck: &Checkpoint) -> Result<String, HfError> {
    fingerprint_of(&ck.dir.join("config.json"), &ck.files)
}

/// [`fingerprint`] of a config file and safetensors files.
pub fn fingerprint_of(config: &Path, files: &[PathBuf]) -> Result<String, HfError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut h = Sha256::new();
    h.update(
        std::fs::read(config)
            .map_err(|e| err(config, format!("cannot be read ({e})"), "check its permissions"))?,
    );
    for path in files {
        let io = |e: std::io::Error| {
            err(
                path,
                format!("cannot be read ({e})"),
                "check its permissions, or download it again",
            )
        };
        let (mut f, len, header) = read_header(path)?;
        let header_len = header.len() as u64;
        h.update(len.to_le_bytes());
        h.update(&header);
        let data = len - 8 - header_len;
        let mut chunk = vec![0u8; 4096.min(data as usize)];
        for i in 0..64u64 {
            f.seek(SeekFrom::Start(8 + header_len + (data - chunk.len() as u64) * i / 63))
                .map_err(io)?;
            f.read_exact(&mut chunk).map_err(io)?;
            h.update(&chunk);
        }
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// A safetensors file opened after its header: the file, its length and the header's bytes
/// (a JSON object of names, dtypes, shapes and offsets).
fn read_header(path: &Path) -> Result<(std::fs::File, u64, Vec<u8>), HfError> {
    use std::io::Read;
    let bad =
        |why: String| err(path, format!("is not a safetensors file ({why})"), "download it again");
    let mut f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).map_err(|e| bad(e.to_string()))?;
    let header_len = u64::from_le_bytes(n);
    if header_len > len.saturating_sub(8) || header_len > 100 << 20 {
        return Err(bad(format!("a header of {header_len} bytes in a file of {len}")));
    }
    let mut header = vec![0u8; header_len as usize];
    f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    Ok((f, len, header))
}

/// The tensors a safetensors file holds, with their shapes, from its header alone.
pub fn header_shapes(path: &Path) -> Result<Vec<(String, Vec<i64>)>, HfError> {
    let bad =
        |why: String| err(path, format!("is not a safetensors file ({why})"), "download it again");
    let (_, _, header) = read_header(path)?;
    let v: Value = serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    let map = v.as_object().ok_or_else(|| bad("its header is not an object".into()))?;
    let mut out = vec![];
    for (name, t) in map.iter().filter(|(k, _)| *k != "__metadata__") {
        let shape = t
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().map(|d| d.as_i64()).collect::<Option<Vec<i64>>>());
        out.push((name.clone(), shape.ok_or_else(|| bad(format!("`{name}` has no shape")))?));
    }
    Ok(out)
}

/// Every tensor of a safetensors file, as stored (fp32, fp16 or bf16).
pub(super) fn read_safetensors(path: &Path) -> Result<Vec<(String, tch::Tensor)>, HfError> {
    tch::Tensor::read_safetensors(path).map_err(|e| {
        let why = e.to_string().lines().next().unwrap_or("").to_string();
        err(path, format!("cannot be read as safetensors ({why})"), "download it again")
    })
}
