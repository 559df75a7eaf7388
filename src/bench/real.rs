//! `alignlab bench --real`: the steps at the sizes of real checkpoints, random weights from
//! the configs (nothing downloaded): a GPT-2-small-shaped model's (124M) DPO step and cached
//! generation in fp32 and bf16, a Qwen2.5-0.5B-shaped model's DPO step with its peak memory,
//! and the peak memory of PPO with four GPT-2-small-shaped models (policy, reference, critic,
//! reward model). `make bench-compare` runs TRL 1.12 on the same shapes beside it.

use anyhow::Result;
use tch::Device;

use super::{dpo_step_of, ppo_iteration, sampling};
use crate::model::arch::{Arch, Family, Mlp, Rope, RopeScaling};
use crate::model::gpt::Precision;
use crate::model::GptConfig;

/// GPT-2 small: d768, 12 layers, 12 heads, 50257 tokens, 1024 positions.
pub fn gpt2_small(precision: Precision) -> GptConfig {
    GptConfig { precision, ..GptConfig::sized(50257, 1024, 12, 12, 768) }
}

/// Qwen2.5-0.5B's shapes: d896, 24 layers, 14 query and 2 key/value heads of 64, SwiGLU of
/// 4864, q/k/v biases, tied embeddings over 151936 tokens, RoPE theta 1e6.
pub fn qwen25_05b(precision: Precision) -> GptConfig {
    let arch = Arch {
        family: Family::Llama,
        n_kv_head: 2,
        head_dim: 64,
        d_ff: 4864,
        mlp: Mlp::SwiGlu,
        rms_norm: true,
        norm_eps: 1e-6,
        rope: Some(Rope { theta: 1e6, dims: 64, scaling: RopeScaling::None }),
        parallel_residual: false,
        tied: true,
        qkv_bias: true,
        out_bias: false,
        mlp_bias: false,
    };
    GptConfig { precision, arch: Some(arch), ..GptConfig::sized(151936, 32768, 24, 14, 896) }
}

/// The process's peak resident memory in GiB (`VmHWM`), and a reset of it (writing 5 to
/// `/proc/self/clear_refs`), so that each row reports its own peak.
fn peak_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    kib / (1u64 << 20) as f64
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn run(device: Device) -> Result<()> {
    let both = [Precision::Fp32, Precision::Bf16];
    let name = |p: Precision| if p.is_fp32() { "fp32" } else { "bf16" };
    reset_peak();
    let (toks, ro, up) = ppo_iteration(&gpt2_small(Precision::Fp32), 16, device, true)?;
    println!("ppo GPT-2 small x4 (policy, reference, critic, RM) B16 N16 fp32: rollout {toks:.0} tokens/s ({ro:.2} s), update {up:.2} s, peak RSS {:.2} GiB", peak_gib());
    let dpo = both.map(|p| dpo_step_of(&gpt2_small(p), 8, (64, 64), device, 3));
    for (p, r) in both.iter().zip(&dpo) {
        println!(
            "dpo step GPT-2 small (d768 L12) B8 pairs P64 N64 {} {:>8.2} pairs/s",
            name(*p),
            r
        );
    }
    println!("dpo step GPT-2 small bf16 / fp32        {:>8.2}x", dpo[1] / dpo[0]);
    let gen = both.map(|p| sampling(&gpt2_small(p), 8, 64, 64, true, device, true));
    for (p, r) in both.iter().zip(&gen) {
        println!("generation GPT-2 small B8 P64 N64 cached {} {:>8.1} tokens/s", name(*p), r);
    }
    println!("generation GPT-2 small bf16 / fp32      {:>8.2}x", gen[1] / gen[0]);
    for p in both {
        reset_peak();
        let r = dpo_step_of(&qwen25_05b(p), 4, (64, 64), device, 2);
        println!("dpo step Qwen2.5-0.5B shape B4 pairs P64 N64 {} {:>8.3} pairs/s ({:.1} s/step), peak RSS {:.2} GiB", name(p), r, 4.0 / r, peak_gib());
    }
    Ok(())
}
