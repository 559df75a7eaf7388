//! KV cache for incremental decoding. The model is immutable; the cache is passed in as `&mut`.

use tch::{Device, Tensor};

use super::GptConfig;

/// One layer's preallocated keys and values, `[B, H_kv, capacity, D_head]`, in the precision of
/// the model's matrix products.
pub struct LayerKv {
    pub k: Tensor,
    pub v: Tensor,
}

/// Keys and values per layer; `len` positions are filled.
pub struct KvCache {
    pub layers: Vec<LayerKv>,
    pub len: i64,
    pub capacity: i64,
}

impl KvCache {
    pub fn new(cfg: &GptConfig, batch: i64, capacity: i64, device: Device) -> KvCache {
        let arch = cfg.arch();
        let shape = [batch, arch.n_kv_head, capacity, arch.head_dim];
        let layers = (0..cfg.n_layer)
            .map(|_| LayerKv {
                k: Tensor::zeros(shape, (cfg.precision.kind(), device)),
                v: Tensor::zeros(shape, (cfg.precision.kind(), device)),
            })
            .collect();
        KvCache { layers, len: 0, capacity }
    }
}
