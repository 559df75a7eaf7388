//! A results folder's series as TensorBoard event files: every row of `metrics.csv` (training)
//! and `eval.csv` (evaluations) as a scalar, one TensorBoard run per method run
//! (`<out>/<method>/<setting>/seed<k>/`), tagged by the metric's name with the method's prefix
//! replaced by `train/` (`dpo/loss` is `train/loss`, so the methods' curves share a tag, as
//! TRL's logs do); `eval/*`, `compute/*` and the other rows keep theirs.
//!
//! The event files are written in the record format TensorBoard reads (a TFRecord of `Event`
//! protocol buffers, each a `Summary` of one `simple_value`), by hand: a length, its masked
//! CRC-32C, the bytes and theirs. The values are float32, as TensorBoard stores scalars. Every
//! event's wall time is 0, so the files are the same bytes for the same results: plot against
//! the step. `alignlab tensorboard RESULTS_DIR` and `alignlab run --tensorboard DIR` write them.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::log::{write_atomic, Metrics, Row};

/// A scalar of a run: step, tag, value.
type Point = (i64, String, f32);

/// `alignlab tensorboard DIR [--out OUT]`: the event files of `dir` under `out` (default
/// `tensorboard/<dir's name>`); returns the line to print.
pub fn command(dir: &Path, out: Option<PathBuf>) -> Result<String> {
    let name = dir.file_name().unwrap_or_default();
    let out = out.unwrap_or_else(|| PathBuf::from("tensorboard").join(name));
    let n = write(dir, &out)?.len();
    Ok(format!(
        "written: {} ({n} runs; view: tensorboard --logdir {})",
        out.display(),
        out.display()
    ))
}

/// The event files of `results` (its `metrics.csv` and `eval.csv`) under `out`; returns the
/// files written.
pub fn write(results: &Path, out: &Path) -> Result<Vec<PathBuf>> {
    let mut runs: BTreeMap<(String, String, u64), Vec<Point>> = BTreeMap::new();
    let mut read_any = false;
    for name in ["metrics.csv", "eval.csv"] {
        let path = results.join(name);
        if !path.exists() {
            continue;
        }
        read_any = true;
        for r in Metrics::read(&path)?.rows {
            let key = (r.method.clone(), r.setting.clone(), r.seed);
            runs.entry(key).or_default().push((r.step as i64, tag(&r), r.value as f32));
        }
    }
    anyhow::ensure!(
        read_any,
        "{} has neither metrics.csv nor eval.csv; fix: pass a results folder, e.g. results/sentiment",
        results.display()
    );
    let mut written = Vec::new();
    for ((method, setting, seed), mut points) in runs {
        // By step, each step's rows in file order (a stable sort).
        points.sort_by_key(|p| p.0);
        let setting = if setting.is_empty() { "-".to_string() } else { setting.replace('/', "_") };
        let dir = out.join(method.replace('/', "_")).join(setting).join(format!("seed{seed}"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut bytes = record(&event(0, Body::FileVersion("brain.Event:2")));
        for (step, tag, value) in &points {
            bytes.extend(record(&event(*step, Body::Scalar(tag, *value))));
        }
        let path = dir.join("events.out.tfevents.0.alignlab");
        write_atomic(&path, &bytes)?;
        written.push(path);
    }
    Ok(written)
}

/// A row's tag: the method's own prefix as `train/`, the rest as it is.
fn tag(r: &Row) -> String {
    match r.metric.strip_prefix(&format!("{}/", r.method)) {
        Some(rest) => format!("train/{rest}"),
        None => r.metric.clone(),
    }
}

/// What an event holds.
enum Body<'a> {
    FileVersion(&'a str),
    Scalar(&'a str, f32),
}

/// An `Event` message: wall_time (1, double; 0), step (2, varint), then file_version (3) or a
/// summary (5) holding one value: tag (1) and simple_value (2, float).
fn event(step: i64, body: Body) -> Vec<u8> {
    let mut e = vec![0x09];
    e.extend(0f64.to_le_bytes());
    e.push(0x10);
    varint(&mut e, step as u64);
    match body {
        Body::FileVersion(v) => bytes_field(&mut e, 3, v.as_bytes()),
        Body::Scalar(tag, value) => {
            let mut v = Vec::new();
            bytes_field(&mut v, 1, tag.as_bytes());
            v.push(0x15);
            v.extend(value.to_le_bytes());
            let mut summary = Vec::new();
            bytes_field(&mut summary, 1, &v);
            bytes_field(&mut e, 5, &summary);
        }
    }
    e
}

/// A length-delimited field: its key, the length, the bytes.
fn bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A TFRecord: the length (u64), its masked CRC-32C, the data, the data's masked CRC-32C.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend(len);
    out.extend(masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend(masked_crc(data).to_le_bytes());
    out
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_values() {
        // The standard check value, and RFC 3720's 32 bytes of zeros.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8a91_36aa);
    }

    #[test]
    fn an_event_by_hand() {
        // step 3, tag "a", value 1.0: wall_time 0, step 3, summary (10 bytes) { value (8 bytes)
        // { tag "a", simple_value 1.0 } }.
        let e = event(3, Body::Scalar("a", 1.0));
        let want = [
            0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 3, 0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15, 0, 0,
            0x80, 0x3f,
        ];
        assert_eq!(e, want);
        let r = record(&e);
        assert_eq!(&r[..8], &(want.len() as u64).to_le_bytes());
        assert_eq!(r.len(), want.len() + 16);
    }
}
