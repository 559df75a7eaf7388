//! Every file the documentation and the code's comments name exists: a path under `src/`,
//! `tests/`, `docs/`, `scenarios/`, `scripts/`, `baselines/` or `paper/` in the README, `docs/`,
//! `src/`, the scenarios and the Makefile. A path on a line that says it is `(new)` (an
//! example of a file to write) is not checked. The tests themselves are not read: some name
//! missing files on purpose.

use std::path::Path;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The repository paths a text names: `src/...rs`, `docs/...md` and the like.
fn named_paths(text: &str) -> Vec<String> {
    const ROOTS: [&str; 7] =
        ["src/", "tests/", "docs/", "scenarios/", "scripts/", "baselines/", "paper/"];
    const EXTS: [&str; 6] = [".rs", ".md", ".toml", ".py", ".sh", ".txt"];
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.contains("(new)")) {
        for (i, _) in line.char_indices() {
            let rest = &line[i..];
            let prev = line[..i].chars().last();
            if !ROOTS.iter().any(|r| rest.starts_with(r))
                || prev.is_some_and(|c| c.is_alphanumeric() || "/_.<-".contains(c))
            {
                continue;
            }
            let path: String =
                rest.chars().take_while(|c| c.is_alphanumeric() || "/_.-".contains(*c)).collect();
            let path = path.trim_end_matches('.');
            if EXTS.iter().any(|e| path.ends_with(e)) {
                out.push(path.to_string());
            }
        }
    }
    out
}

#[test]
fn every_file_the_docs_and_comments_name_exists() {
    let mut all = Vec::new();
    for d in ["src", "docs", "scenarios"] {
        files(Path::new(d), &mut all);
    }
    all.extend(["README.md", "Makefile"].map(std::path::PathBuf::from));
    let mut missing = Vec::new();
    for f in all {
        let Ok(text) = std::fs::read_to_string(&f) else { continue };
        for p in named_paths(&text) {
            if !Path::new(&p).exists() {
                missing.push(format!("{}: names {p}", f.display()));
            }
        }
    }
    assert!(missing.is_empty(), "files named but not in the repository:\n{}", missing.join("\n"));
}

#[test]
fn the_path_finder_reads_paths_and_skips_the_rest() {
    assert_eq!(
        named_paths("see `src/algo/dpo.rs` and docs/keys.md."),
        ["src/algo/dpo.rs", "docs/keys.md"]
    );
    assert_eq!(named_paths("results/<name>/eval.csv, runs/x/src/y.rs"), Vec::<String>::new());
    assert_eq!(named_paths("// src/algo/new_thing.rs (new): its recipe"), Vec::<String>::new());
}
