//! Long-format metric rows (`method,setting,seed,step,metric,value`) and atomic file writes.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

/// One row of `eval.csv`, `metrics.csv` and `timing.csv`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Row {
    pub method: String,
    pub setting: String,
    pub seed: u64,
    pub step: usize,
    pub metric: String,
    #[serde(with = "float_text")]
    pub value: f64,
}

/// A float written as Rust's shortest round-trip text (`0.1`, `3`, `NaN`, `inf`): the bytes
/// alignlab's CSVs have always had (the csv crate's own float format writes `3.0` and `1e-7`).
/// Use with `#[serde(with = "float_text")]`; reading accepts any float text.
pub mod float_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let text = <std::borrow::Cow<str>>::deserialize(d)?;
        text.trim().parse().map_err(|_| serde::de::Error::custom(format!("not a number: {text:?}")))
    }
}

/// A CSV file's record type: one per file, its fields the file's columns in order.
pub trait Record: Serialize + DeserializeOwned + Default {}
impl<T: Serialize + DeserializeOwned + Default> Record for T {}

/// CSV text of `rows` with its header (written also when there are no rows); quoting by the
/// csv crate.
pub fn csv_text<R: Record>(rows: &[R]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::with_capacity(64 * rows.len() + 64));
    if rows.is_empty() {
        // The header is written with the first record: write a default one and keep the header.
        w.serialize(R::default()).expect("records serialize");
        let text =
            String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV is UTF-8");
        return format!("{}\n", text.lines().next().unwrap_or(""));
    }
    for r in rows {
        w.serialize(r).expect("records serialize");
    }
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("CSV is UTF-8")
}

/// The records of CSV `text` (with its header); an error names the record and the problem.
pub fn parse_csv<R: Record>(text: &str) -> Result<Vec<R>> {
    csv::Reader::from_reader(text.as_bytes())
        .deserialize()
        .enumerate()
        .map(|(i, r)| r.map_err(|e| anyhow::anyhow!("line {}: {}", i + 2, csv_problem(&e))))
        .collect()
}

/// The records of a CSV file; a missing or corrupt file is an error naming it.
pub fn read_csv<R: Record>(path: &Path) -> Result<Vec<R>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_csv(&text).with_context(|| format!("corrupt {}", path.display()))
}

fn csv_problem(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("expected {expected_len} fields, found {len}")
        }
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(f) => format!("field {}: {}", f + 1, err.kind()),
            None => err.kind().to_string(),
        },
        _ => e.to_string(),
    }
}

#[derive(Default, Debug)]
pub struct Metrics {
    pub rows: Vec<Row>,
}

impl Metrics {
    pub fn push(
        &mut self,
        method: &str,
        setting: &str,
        seed: u64,
        step: usize,
        metric: &str,
        value: f64,
    ) {
        self.rows.push(Row {
            method: method.into(),
            setting: setting.into(),
            seed,
            step,
            metric: metric.into(),
            value,
        });
    }

    /// Split off the wall-clock rows (`.../time/...` and the profile, `profile/...`), which
    /// differ between identical runs: (deterministic rows, timing rows).
    pub fn split_timing(&self) -> (Metrics, Metrics) {
        let (t, d): (Vec<Row>, Vec<Row>) = self
            .rows
            .iter()
            .cloned()
            .partition(|r| r.metric.contains("/time/") || r.metric.starts_with("profile/"));
        (Metrics { rows: d }, Metrics { rows: t })
    }

    pub fn extend(&mut self, other: Metrics) {
        self.rows.extend(other.rows);
    }

    /// CSV text; floats use Rust's shortest round-trip form, so equal runs give equal bytes.
    pub fn to_csv(&self) -> String {
        csv_text(&self.rows)
    }

    /// A cached metrics file of a run folder; a missing or corrupt one is an error naming the
    /// file and the fix (delete the folder, so the stage is recomputed).
    pub fn read(path: &Path) -> Result<Metrics> {
        let dir = path.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("cannot read {}; fix: delete {dir} so the stage is recomputed", path.display())
        })?;
        Metrics::from_csv(&text).with_context(|| {
            format!("corrupt {}; fix: delete {dir} so the stage is recomputed", path.display())
        })
    }

    pub fn from_csv(text: &str) -> Result<Metrics> {
        Ok(Metrics { rows: parse_csv(text)? })
    }

    /// Last value of a metric, if logged.
    pub fn last(&self, metric: &str) -> Option<f64> {
        self.rows.iter().rev().find(|r| r.metric == metric).map(|r| r.value)
    }
}

/// The temporary file beside `path` that an atomic write goes through: unique to this process
/// (two cells of a sweep may write the same cached file at once, with the same bytes), and
/// ending in `path`'s extension (tch picks a checkpoint's format from it).
pub fn partial_path(path: &Path) -> std::path::PathBuf {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("tmp");
    path.with_extension(format!("{}.partial.{ext}", std::process::id()))
}

/// Write a file atomically: a temp file in the same folder ([`partial_path`]), then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let tmp = partial_path(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        // The previous file, if any, is untouched: only the partial one is removed.
        let _ = std::fs::remove_file(&tmp);
        anyhow::bail!("cannot write {}: {e} (is the disk full?); fix: free space on that disk or write elsewhere (--results, --runs); the previous file is untouched", path.display());
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of the metric files are those of the hand-written format they replace:
    /// Rust's shortest float text, no quotes; reading gives the same rows back.
    #[test]
    fn metric_rows_keep_their_bytes_and_round_trip() {
        let text = "method,setting,seed,step,metric,value\ndpo,beta=0.1;eps=0.1,2,50,eval/gold,3\nsft,,0,0,eval/kl,NaN\nppo,target_kl=1,1,7,x/time/s,1e-7\nppo,,1,7,y,0.1\nppo,,1,7,z,-inf\n";
        let m = Metrics::from_csv(text).unwrap();
        assert_eq!(m.rows[0].value, 3.0);
        assert_eq!(m.rows[2].value, 1e-7);
        assert!(m.rows[1].value.is_nan());
        let expected = text.replace("1e-7", "0.0000001");
        assert_eq!(m.to_csv(), expected);
    }

    /// A field with a comma or a quote is quoted by the crate and read back whole; a short
    /// line is an error naming it.
    #[test]
    fn quoting_and_errors() {
        #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
        struct Note {
            stage: String,
            value: String,
        }
        let rows = vec![Note { stage: "run".into(), value: "a, \"b\"".into() }];
        let text = csv_text(&rows);
        assert_eq!(text, "stage,value\nrun,\"a, \"\"b\"\"\"\n");
        assert_eq!(parse_csv::<Note>(&text).unwrap(), rows);
        assert_eq!(csv_text::<Note>(&[]), "stage,value\n");
        let err = Metrics::from_csv("method,setting,seed,step,metric,value\ndpo,,0,1,eval/gold\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("expected 6 fields, found 5"), "{err}");
        let err =
            Metrics::from_csv("method,setting,seed,step,metric,value\ndpo,,x,1,eval/gold,1\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("line 2") && err.contains("field 3"), "{err}");
    }
}
