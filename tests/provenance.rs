//! The committed results against today's code and scenario files. A folder they would not make
//! again (stale: other numerics, calibration rule or resolved scenario) must be listed in
//! `results/stale.txt`, awaiting its rerun; a listed folder that is current is an error too, so
//! the list only shrinks as folders are rerun, and a change that alters numbers cannot land
//! without either rerunning what it alters or saying so there.

use std::path::Path;

#[test]
fn committed_results_are_what_the_code_makes_or_are_listed_stale() {
    let text = std::fs::read_to_string("results/stale.txt").unwrap_or_default();
    let listed: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let check = alignlab::report::provenance::check(Path::new("results"));
    let mut problems = Vec::new();
    for (name, why) in &check {
        match (why, listed.contains(&name.as_str())) {
            (Some(why), false) => problems.push(format!(
                "results/{name} is stale ({why}): rerun its scenario, or list it in results/stale.txt"
            )),
            (None, true) => problems
                .push(format!("results/{name} is current: remove it from results/stale.txt")),
            _ => {}
        }
    }
    for l in &listed {
        if !check.iter().any(|(n, _)| n == l) {
            problems.push(format!("results/stale.txt lists {l}, which is not a results folder"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
