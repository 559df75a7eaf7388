//! Adam (Kingma & Ba 2015) with bias correction and optional decoupled weight decay (AdamW),
//! written out so that its state can be checkpointed: a killed run resumes with the same
//! moments and step and finishes with the same bytes as an uninterrupted one. libtorch's own
//! optimiser does not expose its state through `tch`.
//!
//! The parameters live in one flat buffer (each variable of the store becomes a view into it),
//! and the moments and the gathered gradient are flat too, so a step is a handful of
//! vectorised ops over all parameters instead of a dozen small ops per tensor: `tch` has no
//! `_foreach` or fused Adam. Only one optimiser may own a store's variables at a time: a
//! second `Adam::new` on the same store rebinds them, and `step` checks for that.

use anyhow::{Context, Result};
use std::path::Path;
use tch::{nn::VarStore, Kind, Tensor};

pub struct Adam {
    names: Vec<String>,
    vars: Vec<Tensor>,
    /// Offset and length of each variable in the flat buffers.
    spans: Vec<(i64, i64)>,
    flat: Tensor,
    m: Tensor,
    v: Tensor,
    /// The gradient gathered by `clip_grad_norm` (and clipped there), used by `step`.
    grad: Option<Tensor>,
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
        let mut named: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let device = named.first().map(|v| v.1.device()).unwrap_or(tch::Device::Cpu);
        let mut spans = Vec::with_capacity(named.len());
        let mut off = 0;
        for (_, t) in &named {
            let n = t.numel() as i64;
            spans.push((off, n));
            off += n;
        }
        let flat = if named.is_empty() {
            Tensor::zeros([0], (Kind::Float, device))
        } else {
            let _guard = tch::no_grad_guard();
            Tensor::cat(&named.iter().map(|(_, t)| t.detach().reshape([-1])).collect::<Vec<_>>(), 0)
        };
        for ((_, t), &(o, n)) in named.iter().zip(&spans) {
            let mut t = t.shallow_clone();
            t.set_data(&flat.narrow(0, o, n).view(t.size().as_slice()));
        }
        let (m, v) = (flat.zeros_like(), flat.zeros_like());
        let (names, vars) = named.into_iter().unzip();
        Adam {
            names,
            vars,
            spans,
            flat,
            m,
            v,
            grad: None,
            step: 0,
            lr,
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        self.grad = None;
        for t in &self.vars {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.detach_().zero_();
            }
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The flat gradient, or `None` when some variable has none (it took no part in the loss).
    fn gather(&self) -> Option<Tensor> {
        let grads: Vec<Tensor> = self.vars.iter().map(|t| t.grad()).collect();
        if grads.is_empty() || grads.iter().any(|g| !g.defined()) {
            return None;
        }
        Some(Tensor::cat(&grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(), 0))
    }

    /// Global gradient norm; rescale the gradient so that its norm is at most `max_norm`.
    /// Returns the norm before clipping (the `grad_norm` metric). `step` then uses the clipped
    /// gradient; the variables' own `.grad()` stay as backward left them.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> f64 {
        let _guard = tch::no_grad_guard();
        match self.gather() {
            None => {
                // Rare (an unused variable): clip the defined gradients in place, one by one.
                super::common::clip_grad_norm(&self.vars, max_norm)
            }
            Some(mut g) => {
                let norm = g.dot(&g).sqrt().double_value(&[]);
                if norm.is_finite() && norm > max_norm {
                    let _ = g.g_mul_scalar_(max_norm / (norm + 1e-6));
                }
                self.grad = Some(g);
                norm
            }
        }
    }

    pub fn step(&mut self) {
        let _guard = tch::no_grad_guard();
        if let (Some(first), Some(&(o, _))) = (self.vars.first(), self.spans.first()) {
            assert_eq!(
                first.data_ptr(),
                self.flat.narrow(0, o, 1).data_ptr(),
                "optimiser's variables were rebound (a second Adam on the same store?)"
            );
        }
        self.step += 1;
        crate::profile::count(crate::profile::Count::GradSteps, 1.0);
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let grad = self.grad.take().or_else(|| self.gather());
        match grad {
            Some(g) => {
                let (p, m, v) =
                    (self.flat.shallow_clone(), self.m.shallow_clone(), self.v.shallow_clone());
                self.update(p, m, v, &g, bc1, bc2);
            }
            None => {
                // Some variable has no gradient: update the others one by one, leaving its
                // moments as they are (as torch.optim.Adam skips a parameter whose grad is None).
                for (t, &(o, n)) in self.vars.iter().zip(&self.spans) {
                    let g = t.grad();
                    if g.defined() {
                        let (p, m, v) = (
                            self.flat.narrow(0, o, n),
                            self.m.narrow(0, o, n),
                            self.v.narrow(0, o, n),
                        );
                        self.update(p, m, v, &g.reshape([-1]), bc1, bc2);
                    }
                }
            }
        }
        // The variables are views of `flat`: their own version counters do not see the step.
        crate::model::gpt::weights_changed();
    }

    fn update(&self, mut p: Tensor, mut m: Tensor, mut v: Tensor, g: &Tensor, bc1: f64, bc2: f64) {
        if self.weight_decay > 0.0 {
            let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
        }
        // m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2
        let _ = m.lerp_(g, 1.0 - self.beta1);
        let _ = v.lerp_(&(g * g), 1.0 - self.beta2);
        // p <- p - lr m_hat / (sqrt(v_hat) + eps)
        let denom = (v.g_div_scalar(bc2)).sqrt_().g_add_scalar_(self.eps);
        let _ = p.addcdiv_(&m.g_mul_scalar(-self.lr / bc1), &denom);
    }

    /// Moments and step as safetensors (`m.<name>`, `v.<name>`, `step`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for ((name, t), &(o, n)) in self.names.iter().zip(&self.vars).zip(&self.spans) {
            let shape = t.size();
            named.push((format!("m.{name}"), self.m.narrow(0, o, n).view(shape.as_slice())));
            named.push((format!("v.{name}"), self.v.narrow(0, o, n).view(shape.as_slice())));
        }
        named.push(("step".into(), Tensor::from_slice(&[self.step])));
        let tmp = path.with_extension("partial.safetensors");
        Tensor::write_safetensors(&named, &tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self.flat.device();
        let named = Tensor::read_safetensors(path).with_context(|| format!("cannot read optimiser state {}; fix: delete the run's resume folder to restart the stage", path.display()))?;
        let get = |k: &str| named.iter().find(|(n, _)| n == k).map(|(_, t)| t.to_device(device));
        let _guard = tch::no_grad_guard();
        for (name, &(o, n)) in self.names.iter().zip(&self.spans) {
            let m = get(&format!("m.{name}"))
                .with_context(|| format!("{} lacks m.{name}", path.display()))?;
            let v = get(&format!("v.{name}"))
                .with_context(|| format!("{} lacks v.{name}", path.display()))?;
            self.m.narrow(0, o, n).copy_(&m.reshape([-1]));
            self.v.narrow(0, o, n).copy_(&v.reshape([-1]));
        }
        self.step = get("step").context("optimiser state lacks its step")?.int64_value(&[0]);
        Ok(())
    }
}
