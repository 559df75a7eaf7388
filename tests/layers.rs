//! The dependency rule of the design: a file imports only from lower layers or from its own
//! folder. Every `crate::` path under `src/` (in `use` lines and inline, `super::` paths that
//! leave a folder resolved to `crate::`) is checked; an upward or sideways import fails the test
//! naming the file and line, and so does any cycle between the top-level modules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layers from the bottom (the README, "Where things are"). `experiment/scenario/` (parsing, `--set`,
/// sweeps, cross-section checks) is part of `experiment`, which puts the configurations together.
const LAYERS: &[&[&str]] = &[
    &["draw", "device", "tokens", "log", "stats", "config", "profile"],
    &["model"],
    &["world"],
    &["data"],
    &["algo"],
    &["eval"],
    &["experiment"],
    &["report"],
    &["main", "cli", "bench", "lib"],
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
    let rel: Vec<String> =
        path.strip_prefix("src").unwrap().iter().map(|c| c.to_string_lossy().to_string()).collect();
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
                    let name: String =
                        after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() && (prefix == "crate::" || name != "super") {
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
            panic!("{}: module `{own}` has no layer; add it to LAYERS", f.display())
        });
        for (i, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            let code = line.split("//").next().unwrap();
            for t in targets(code, depth) {
                if t == own || t == "self" {
                    continue;
                }
                let Some(l) = layer(&t) else { continue }; // an item of the crate root, not a module
                let at = format!("{}:{}", f.display(), i + 1);
                edges.entry(own.clone()).or_default().entry(t.clone()).or_insert(at.clone());
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
            let ring: Vec<String> =
                stack[i..].iter().chain(std::iter::once(&n.to_string())).cloned().collect();
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
        for m in edges.get(n).map(|e| e.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
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
    assert_eq!(targets("use crate::{log::Metrics, stats::Paired};", 1), ["log", "stats"]);
    assert_eq!(targets("let x = crate::report::plot::tabular(out);", 2), ["report"]);
    assert_eq!(targets("use super::super::experiment::Metrics;", 2), ["experiment"]);
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

/// The file a module path names: the longest prefix of `segs` that is a file under `src/`
/// (`algo/dpo.rs` or `experiment/scenario/mod.rs`), if any.
fn file_of(segs: &[String], files: &[String]) -> Option<String> {
    (1..=segs.len()).rev().find_map(|k| {
        let c = segs[..k].join("/");
        [format!("{c}.rs"), format!("{c}/mod.rs")].into_iter().find(|f| files.contains(f))
    })
}

/// The files a file's code names through `crate::` or `super::` paths (in `use` lines, groups
/// and inline), tests after `#[cfg(test)]` and comments left out.
fn file_edges(rel: &str, text: &str, files: &[String]) -> Vec<String> {
    let code: String = text
        .split("#[cfg(test)]")
        .next()
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let mut own: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if matches!(own.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        own.pop();
    }
    let mut out = Vec::new();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < code.len() {
        let rest = &code[i..];
        let head = ["crate", "super"].into_iter().find(|h| {
            rest.starts_with(h) && !code[..i].ends_with(ident) && rest[h.len()..].starts_with("::")
        });
        let Some(head) = head else {
            i += rest.chars().next().unwrap().len_utf8();
            continue;
        };
        // The path: segments joined by `::`, and a `{...}` group at its end.
        let mut segs: Vec<String> = Vec::new();
        let mut j = i + head.len();
        let mut group = None;
        while code[j..].starts_with("::") {
            j += 2;
            if code[j..].starts_with('{') {
                let end = code[j..].find('}').map_or(code.len(), |e| j + e);
                group = Some(code[j + 1..end].to_string());
                j = end;
                break;
            }
            let name: String = code[j..].chars().take_while(|c| ident(*c)).collect();
            if name.is_empty() {
                break;
            }
            j += name.len();
            segs.push(name);
        }
        let mut base: Vec<String> =
            if head == "crate" { vec![] } else { own[..own.len().saturating_sub(1)].to_vec() };
        if head == "super" {
            while segs.first().is_some_and(|s| s == "super") {
                base.pop();
                segs.remove(0);
            }
        }
        let mut paths = vec![segs.clone()];
        if let Some(g) = group {
            paths = g
                .split(',')
                .map(|p| p.trim().split("::").next().unwrap_or("").to_string())
                .filter(|p| !p.is_empty())
                .map(|p| segs.iter().cloned().chain([p]).collect())
                .collect();
        }
        for p in paths {
            let full: Vec<String> = base.iter().cloned().chain(p).collect();
            if let Some(f) = file_of(&full, files).filter(|f| f != rel) {
                out.push(f);
            }
        }
        i = j.max(i + 1);
    }
    out.sort();
    out.dedup();
    out
}

/// The cycles of a directed graph, one per strongly connected component of two or more nodes.
fn cycles(edges: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    // Kosaraju: finish order on the graph, then components on the reversed graph.
    fn order(
        n: &str,
        e: &BTreeMap<String, Vec<String>>,
        seen: &mut Vec<String>,
        out: &mut Vec<String>,
    ) {
        if seen.iter().any(|s| s == n) {
            return;
        }
        seen.push(n.to_string());
        for m in e.get(n).into_iter().flatten() {
            order(m, e, seen, out);
        }
        out.push(n.to_string());
    }
    let (mut seen, mut fin) = (Vec::new(), Vec::new());
    for n in edges.keys() {
        order(n, edges, &mut seen, &mut fin);
    }
    let mut rev: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (a, bs) in edges {
        for b in bs {
            rev.entry(b.clone()).or_default().push(a.clone());
        }
    }
    let mut assigned: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for n in fin.iter().rev() {
        if assigned.contains(n) {
            continue;
        }
        let mut comp = Vec::new();
        order(n, &rev, &mut assigned, &mut comp);
        if comp.len() > 1 {
            comp.sort();
            out.push(comp);
        }
    }
    out
}

#[test]
fn files_form_no_import_cycle() {
    let mut paths = Vec::new();
    rust_files(Path::new("src"), &mut paths);
    let rel: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix("src").unwrap().to_string_lossy().replace('\\', "/"))
        .collect();
    let mut edges = BTreeMap::new();
    for (p, r) in paths.iter().zip(&rel) {
        edges.insert(r.clone(), file_edges(r, &std::fs::read_to_string(p).unwrap(), &rel));
    }
    let found = cycles(&edges);
    let lines: Vec<String> = found.iter().map(|c| c.join(" <-> ")).collect();
    assert!(found.is_empty(), "{} file-level import cycle(s) in src/ (a shared helper goes in its own file below both users):\n{}", found.len(), lines.join("\n"));
}

#[test]
fn the_file_scanner_resolves_paths_and_finds_cycles() {
    let files: Vec<String> = [
        "algo/mod.rs",
        "algo/dpo.rs",
        "algo/adam.rs",
        "experiment/scenario/mod.rs",
        "experiment/scenario/parse.rs",
        "experiment/methods.rs",
        "log.rs",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(
        file_edges(
            "algo/dpo.rs",
            "use super::adam::Adam;\nuse crate::log::{Metrics, Row};",
            &files
        ),
        ["algo/adam.rs", "log.rs"]
    );
    assert_eq!(
        file_edges(
            "experiment/scenario/parse.rs",
            "use super::super::methods;\nuse super::Scenario; // crate::algo::dpo",
            &files
        ),
        ["experiment/methods.rs", "experiment/scenario/mod.rs"]
    );
    assert_eq!(
        file_edges(
            "experiment/scenario/mod.rs",
            "pub use super::methods::{Method, Overrides};\nlet x = crate::algo::dpo::f();",
            &files
        ),
        ["algo/dpo.rs", "experiment/methods.rs"]
    );
    let graph = |pairs: &[(&str, &str)]| {
        let mut e: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry(a.to_string()).or_default().push(b.to_string());
            e.entry(b.to_string()).or_default();
        }
        e
    };
    assert!(cycles(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])).is_empty());
    assert_eq!(
        cycles(&graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])),
        [["a", "b", "c"]]
    );
}
