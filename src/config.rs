//! What a configuration's `validate()` returns: the key within its section, the problem and the
//! fix. The scenario adds the file, the line and the section, giving the one-line error
//! `FILE:LINE: `SECTION.KEY`: PROBLEM; fix: FIX`.

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub key: &'static str,
    pub problem: String,
    pub fix: String,
}

/// `Ok` when `cond` holds, else the error for `key`.
pub fn need(cond: bool, key: &'static str, problem: impl FnOnce() -> String, fix: &str) -> Result<(), ConfigError> {
    if cond {
        Ok(())
    } else {
        Err(ConfigError { key, problem: problem(), fix: fix.to_string() })
    }
}

/// Upper limits that keep a typo in an exponent from running for centuries or allocating the
/// machine away; each is far past what a CPU-sized study uses.
pub const MAX_STEPS: usize = 10_000_000;
pub const MAX_COUNT: usize = 10_000_000;
pub const MAX_BATCH: usize = 65_536;

/// Below this, logits / T overflow float32 and sampling draws from inf/NaN.
pub const MIN_TEMPERATURE: f64 = 0.01;

/// A temperature sampling can use: 0 (greedy, where allowed) or in [MIN_TEMPERATURE, 4].
pub fn sampling_temperature(t: f64, greedy_ok: bool) -> bool {
    (greedy_ok && t == 0.0) || (t.is_finite() && (MIN_TEMPERATURE..=4.0).contains(&t))
}
