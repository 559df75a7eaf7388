//! `kl_estimators.csv`: the sampled KL estimators against the exact KL, per method over every
//! evaluation of its runs. Each evaluation scores the same samples with the exact KL (the
//! full-vocabulary sum along each sampled response) and with k1 = sum log(pi/pi_ref), k2 = sum
//! (log(pi/pi_ref))^2 / 2 and k3 = sum (r - 1) - log r with r = pi_ref/pi, at the sampled tokens
//! (k1 and k3 are unbiased, k2 is not). Bias: the estimator's mean minus the exact mean of an
//! evaluation, averaged over evaluations; spread: the standard deviation over an evaluation's
//! samples, averaged likewise.

use std::collections::BTreeMap;

use crate::log::Metrics;

/// One method and estimator: evaluations, mean exact KL, mean bias, mean bias relative to the
/// exact KL (over evaluations with KL > 0.05), mean spread.
pub struct EstimatorRow {
    pub method: String,
    pub estimator: &'static str,
    pub evaluations: usize,
    pub kl: f64,
    pub bias: f64,
    pub rel_bias: f64,
    pub sd: f64,
}

/// Every training evaluation (after step 0) that has k2: its `eval/kl*` values by metric, keyed
/// by (method, setting, seed, step).
fn evaluations(evals: &Metrics) -> BTreeMap<(String, String, u64, usize), BTreeMap<&str, f64>> {
    let mut at: BTreeMap<(String, String, u64, usize), BTreeMap<&str, f64>> = BTreeMap::new();
    for r in evals.rows.iter().filter(|r| r.metric.starts_with("eval/kl") && r.step > 0) {
        at.entry((r.method.clone(), r.setting.clone(), r.seed, r.step))
            .or_default()
            .insert(r.metric.as_str(), r.value);
    }
    at.retain(|_, v| v.contains_key("eval/kl_k2"));
    at
}

/// The rows, or none when the evaluations predate k2.
pub fn rows(evals: &Metrics) -> Vec<EstimatorRow> {
    let at = evaluations(evals);
    let mut out = Vec::new();
    let methods: Vec<String> = {
        let mut m: Vec<String> = at.keys().map(|k| k.0.clone()).collect();
        m.dedup();
        m
    };
    for method in methods {
        let evs: Vec<&BTreeMap<&str, f64>> =
            at.iter().filter(|(k, _)| k.0 == method).map(|(_, v)| v).collect();
        let mean = |f: &dyn Fn(&BTreeMap<&str, f64>) -> Option<f64>| {
            let v: Vec<f64> = evs.iter().filter_map(|e| f(e)).filter(|x| x.is_finite()).collect();
            if v.is_empty() {
                f64::NAN
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let kl = mean(&|e| e.get("eval/kl").copied());
        for (name, key, sd_key) in [
            ("exact", "eval/kl", "eval/kl_sd"),
            ("k1", "eval/kl_k1", "eval/kl_k1_sd"),
            ("k2", "eval/kl_k2", "eval/kl_k2_sd"),
            ("k3", "eval/kl_k3", "eval/kl_k3_sd"),
        ] {
            let bias = mean(&|e| Some(e.get(key)? - e.get("eval/kl")?));
            let rel_bias = mean(&|e| {
                let exact = *e.get("eval/kl")?;
                let est = *e.get(key)?;
                (exact > 0.05).then(|| (est - exact) / exact)
            });
            let sd = mean(&|e| e.get(sd_key).copied());
            out.push(EstimatorRow {
                method: method.clone(),
                estimator: name,
                evaluations: evs.len(),
                kl,
                bias,
                rel_bias,
                sd,
            });
        }
    }
    out
}

/// One row of `kl_estimators.csv`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EstimatorRecord {
    pub method: String,
    pub estimator: String,
    pub evaluations: usize,
    #[serde(with = "crate::log::float_text")]
    pub kl_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub bias_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub rel_bias_mean: f64,
    #[serde(with = "crate::log::float_text")]
    pub sd_mean: f64,
}

pub fn csv(rows: &[EstimatorRow]) -> String {
    let records: Vec<EstimatorRecord> = rows
        .iter()
        .map(|r| EstimatorRecord {
            method: r.method.clone(),
            estimator: r.estimator.into(),
            evaluations: r.evaluations,
            kl_mean: r.kl,
            bias_mean: r.bias,
            rel_bias_mean: r.rel_bias,
            sd_mean: r.sd,
        })
        .collect();
    crate::log::csv_text(&records)
}

/// Every evaluation with k2 (after step 0): its exact KL and k1, k2, k3 minus it.
pub fn points(evals: &Metrics) -> Vec<(f64, [f64; 3])> {
    evaluations(evals)
        .values()
        .filter_map(|e| {
            let exact = *e.get("eval/kl")?;
            Some((
                exact,
                [
                    e.get("eval/kl_k1")? - exact,
                    e.get("eval/kl_k2")? - exact,
                    e.get("eval/kl_k3")? - exact,
                ],
            ))
        })
        .collect()
}
