//! Adam (Kingma & Ba 2015) with bias correction and optional decoupled weight decay (AdamW),
//! written out so that its state can be checkpointed: a killed run resumes with the same
//! moments and step and finishes with the same bytes as an uninterrupted one. libtorch's own
//! optimiser does not expose its state through `tch`.

use anyhow::{Context, Result};
use std::path::Path;
use tch::{nn::VarStore, Tensor};

pub struct Adam {
    vars: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    pub step: i64,
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl Adam {
    /// Over every trainable variable of `vs`, in name order.
    pub fn new(vs: &VarStore, lr: f64, (beta1, beta2): (f64, f64), weight_decay: f64) -> Adam {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        let v = vars.iter().map(|(_, t)| t.zeros_like()).collect();
        Adam { vars, m, v, step: 0, lr, beta1, beta2, eps: 1e-8, weight_decay }
    }

    pub fn tensors(&self) -> Vec<Tensor> {
        self.vars.iter().map(|(_, t)| t.shallow_clone()).collect()
    }

    pub fn zero_grad(&mut self) {
        for (_, t) in &self.vars {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        for ((_, p), (m, v)) in self.vars.iter().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let mut p = p.shallow_clone();
            if self.weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
            }
            let _ = m.g_mul_scalar_(self.beta1);
            let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
            let _ = v.g_mul_scalar_(self.beta2);
            let _ = v.addcmul_(&g, &g.g_mul_scalar(1.0 - self.beta2));
            let denom = (v.g_div_scalar(bc2)).sqrt_().g_add_scalar_(self.eps);
            let _ = p.addcdiv_(&m.g_mul_scalar(-self.lr / bc1), &denom);
        }
    }

    /// Moments and step as safetensors (`m.<name>`, `v.<name>`, `step`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, _), (m, v)) in self.vars.iter().zip(self.m.iter().zip(&self.v)) {
            named.push((format!("m.{name}"), m.shallow_clone()));
            named.push((format!("v.{name}"), v.shallow_clone()));
        }
        named.push(("step".into(), Tensor::from_slice(&[self.step])));
        let tmp = path.with_extension("partial.safetensors");
        Tensor::write_safetensors(&named, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self.vars.first().map(|v| v.1.device()).unwrap_or(tch::Device::Cpu);
        let named = Tensor::read_safetensors(path).with_context(|| format!("cannot read optimiser state {}; fix: delete the run's resume folder to restart the stage", path.display()))?;
        let get = |k: &str| named.iter().find(|(n, _)| n == k).map(|(_, t)| t.to_device(device));
        let _guard = tch::no_grad_guard();
        for ((name, _), (m, v)) in self.vars.iter().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            m.copy_(&get(&format!("m.{name}")).with_context(|| format!("{} lacks m.{name}", path.display()))?);
            v.copy_(&get(&format!("v.{name}")).with_context(|| format!("{} lacks v.{name}", path.display()))?);
        }
        self.step = get("step").context("optimiser state lacks its step")?.int64_value(&[0]);
        Ok(())
    }
}
