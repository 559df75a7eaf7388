//! The dependency rule of the design: a file imports only from lower layers or from its own
//! folder. Every `crate::` path under `src/` (in `use` lines and inline, `super::` paths that
//! leave a folder resolved to `crate::`) is checked; an upward or sideways import fails the test
//! naming the file and line, and so does any cycle between the top-level modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers from the bottom (DESIGN.md section 2). `experiment/scenario/` (parsing, `--set`,
/// sweeps, cross-section checks) is part of `experiment`, which puts the configurations together.
const LAYERS: &[&[&str]] = &[
    &[
        "draw", "device", "tokens", "log", "stats", "config", "profile",
    ],
    &["model"],
    &["world"],
    &["data"],
    &["algo"],
    &["eval"],
    &["experiment"],
    &["report"],
    &["main", "bench", "lib"],
];

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/algo/dpo.rs` -> `algo`, `src/stats.rs` -> `stats`)
/// and how many `super::` lead from it to the crate root.
fn module_of(path: &Path) -> (String, usize) {
    let rel: Vec<String> = path
        .strip_prefix("src")
        .unwrap()
        .iter()
        .map(|c| c.to_string_lossy().to_string())
        .collect();
    if rel.len() == 1 {
        (rel[0].trim_end_matches(".rs").to_string(), 1)
    } else {
        let depth = rel.len() - 1 + usize::from(rel.last().unwrap() != "mod.rs");
        (rel[0].clone(), depth)
    }
}

/// Every top-level module a line of code names through the crate root: `crate::x`,
/// `crate::{x, y}`, or `super::` repeated up to the root.
fn targets(code: &str, depth: usize) -> Vec<String> {
    let mut out = Vec::new();
    let to_root = "super::".repeat(depth);
    for prefix in ["crate::".to_string(), to_root] {
        let mut rest = code;
        while let Some(i) = rest.find(&prefix) {
            // `super::super::x` must not also match as `super::x` at a shallower depth.
            let before_ok = prefix == "crate::" || i < 7 || &rest[i - 7..i] != "super::";
            let after = &rest[i + prefix.len()..];
            if before_ok {
                if let Some(group) = after.strip_prefix('{') {
                    let inner = &group[..group.find('}').unwrap_or(group.len())];
                    out.extend(
                        inner
                            .split(',')
                            .map(|p| p.trim().split("::").next().unwrap_or("").to_string())
                            .filter(|n| !n.is_empty()),
                    );
                } else {
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && !(prefix != "crate::" && name == "super") {
                        out.push(name);
                    }
                }
            }
            rest = &rest[i + prefix.len()..];
        }
    }
    out
}

#[test]
fn every_import_points_down_and_modules_form_no_cycle() {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in &files {
        let (own, depth) = module_of(f);
        let own_layer = layer(&own).unwrap_or_else(|| {
            panic!(
                "{}: module `{own}` has no layer; add it to LAYERS",
                f.display()
            )
        });
        for (i, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for t in targets(code, depth) {
                if t == own || t == "self" {
                    continue;
                }
                let Some(l) = layer(&t) else { continue }; // an item of the crate root, not a module
                let at = format!("{}:{}", f.display(), i + 1);
                edges
                    .entry(own.clone())
                    .or_default()
                    .entry(t.clone())
                    .or_insert(at.clone());
                if l >= own_layer {
                    violations.push(format!(
                        "{at}: `{own}` (layer {own_layer}) imports `{t}` (layer {l}): {}",
                        code.trim()
                    ));
                }
            }
        }
    }
    // Cycles between top-level modules (depth-first search over the import graph).
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeMap<String, String>>,
        stack: &mut Vec<String>,
        done: &mut Vec<String>,
        cycles: &mut Vec<String>,
    ) {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let ring: Vec<String> = stack[i..]
                .iter()
                .chain(std::iter::once(&n.to_string()))
                .cloned()
                .collect();
            let lines: Vec<String> = ring
                .windows(2)
                .map(|w| format!("{} -> {} at {}", w[0], w[1], edges[&w[0]][&w[1]]))
                .collect();
            cycles.push(lines.join("; "));
            return;
        }
        if done.iter().any(|d| d == n) {
            return;
        }
        stack.push(n.to_string());
        for m in edges
            .get(n)
            .map(|e| e.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            visit(&m, edges, stack, done, cycles);
        }
        stack.pop();
        done.push(n.to_string());
    }
    let mut cycles = Vec::new();
    let (mut stack, mut done) = (Vec::new(), Vec::new());
    for n in edges.keys() {
        visit(n, &edges, &mut stack, &mut done, &mut cycles);
    }
    assert!(
        violations.is_empty() && cycles.is_empty(),
        "{} upward imports, {} cycles:\n{}\n{}",
        violations.len(),
        cycles.len(),
        violations.join("\n"),
        cycles.join("\n")
    );
}

#[test]
fn the_scanner_sees_every_form_of_path() {
    assert_eq!(targets("use crate::world::{BOS, EOS};", 1), ["world"]);
    assert_eq!(
        targets("use crate::{log::Metrics, stats::Paired};", 1),
        ["log", "stats"]
    );
    assert_eq!(
        targets("let x = crate::report::plot::tabular(out);", 2),
        ["report"]
    );
    assert_eq!(
        targets("use super::super::experiment::Metrics;", 2),
        ["experiment"]
    );
    assert_eq!(
        targets("use super::common;", 2),
        Vec::<String>::new(),
        "super:: inside a folder stays in it"
    );
    assert_eq!(
        targets("use super::eval;", 1),
        ["eval"],
        "from a folder's mod.rs, super:: is the crate root"
    );
}
