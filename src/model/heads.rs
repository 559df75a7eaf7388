//! A scalar head on the GPT's hidden states: the reward model's score and the critic's value.

use tch::{nn, Tensor};

pub struct ScalarHead {
    score: nn::Linear,
}

impl ScalarHead {
    /// Named `score` as in GPT-2 sequence classification checkpoints.
    pub fn new(p: nn::Path, d_model: i64) -> ScalarHead {
        let cfg = nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        ScalarHead { score: nn::linear(p / "score", d_model, 1, cfg) }
    }

    /// hidden `[B, T, C]` -> scalar per position `[B, T]`.
    pub fn forward(&self, hidden: &Tensor) -> Tensor {
        hidden.apply(&self.score).squeeze_dim(-1)
    }
}
