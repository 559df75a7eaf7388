//! The tables of a markdown document (`report.md`, `paper/README.md`) as LaTeX in booktabs
//! style, written beside it (`report.tex`, `paper/tables.tex`), so that a table goes into a paper
//! as the SVG figures do. The cells are the markdown's own text (numbers and intervals as
//! printed there), escaped for LaTeX; each table is captioned by the heading it sits under and
//! labelled `tab:<document>-<k>`. Needs `\usepackage{booktabs}` in the paper's preamble.

/// Every pipe table of `markdown` as a LaTeX `table` environment, in order, labelled
/// `tab:<label>-<k>` (k from 1); an empty string when it has none.
pub fn tables(markdown: &str, label: &str) -> String {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut out = String::new();
    let (mut heading, mut k, mut i) = (String::new(), 0, 0);
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(h) = line.strip_prefix('#') {
            heading = h.trim_start_matches('#').trim().to_string();
        }
        let is_table = line.starts_with('|') && lines.get(i + 1).is_some_and(|l| separator(l));
        if !is_table {
            i += 1;
            continue;
        }
        let head = cells(line);
        let mut rows = Vec::new();
        i += 2;
        while i < lines.len() && lines[i].trim().starts_with('|') {
            rows.push(cells(lines[i].trim()));
            i += 1;
        }
        k += 1;
        out += &table(&head, &rows, &heading, &format!("tab:{label}-{k}"));
    }
    if out.is_empty() {
        return out;
    }
    format!("% Tables of the markdown beside this file, written by alignlab; needs \\usepackage{{booktabs}}.\n\n{out}")
}

/// `|---|---|` (with optional colons and spaces).
fn separator(line: &str) -> bool {
    let l = line.trim();
    l.starts_with('|') && l.contains('-') && l.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// The cells of `| a | b |`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// One `table` environment: right-aligned columns where every body cell starts like a number
/// or is a dash (`-`, `- (2/5 seeds)`: no value).
fn table(head: &[String], rows: &[Vec<String>], caption: &str, label: &str) -> String {
    let n = head.len();
    let numeric = |j: usize| {
        rows.iter().all(|r| {
            let c = r.get(j).map_or("", String::as_str);
            c.is_empty() || c.starts_with('-') || number_like(c)
        }) && rows.iter().any(|r| r.get(j).is_some_and(|c| number_like(c)))
    };
    let spec: String = (0..n).map(|j| if numeric(j) { 'r' } else { 'l' }).collect();
    let row = |r: &[String]| {
        let mut cols: Vec<String> = r.iter().take(n).map(|c| escape(c)).collect();
        cols.resize(n, String::new());
        format!("    {} \\\\\n", cols.join(" & "))
    };
    let mut s = String::from("\\begin{table}[htbp]\n  \\centering\n");
    if !caption.is_empty() {
        s += &format!("  \\caption{{{}}}\n", escape(caption));
    }
    s += &format!("  \\label{{{label}}}\n  \\begin{{tabular}}{{{spec}}}\n    \\toprule\n");
    s += &row(head);
    s += "    \\midrule\n";
    for r in rows {
        s += &row(r);
    }
    s += "    \\bottomrule\n  \\end{tabular}\n\\end{table}\n\n";
    s
}

/// A cell that reads as a number: a digit, or a sign or point before one.
fn number_like(c: &str) -> bool {
    let t = c.trim_start_matches(['+', '-', '.', '<', '=', ' ']);
    t.starts_with(|ch: char| ch.is_ascii_digit())
}

/// Markdown cell text as LaTeX text: `code` as \texttt, **bold** as \textbf, LaTeX's special
/// characters escaped, `±` and `→` in math mode.
pub fn escape(text: &str) -> String {
    let mut out = String::new();
    let (mut code, mut bold) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                out += if code { "}" } else { "\\texttt{" };
                code = !code;
            }
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out += if bold { "}" } else { "\\textbf{" };
                bold = !bold;
            }
            '\\' => out += "\\textbackslash{}",
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out += "\\textasciitilde{}",
            '^' => out += "\\textasciicircum{}",
            '<' => out += "\\textless{}",
            '>' => out += "\\textgreater{}",
            '±' => out += "$\\pm$",
            '→' => out += "$\\to$",
            c => out.push(c),
        }
    }
    // An unmatched ` or ** closes at the end of the cell.
    out += &"}".repeat(usize::from(code) + usize::from(bold));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_by_hand() {
        let md = "# Run\n\n## Paired comparisons\n\ntext\n\n| A | B | at | A - B | verdict |\n|---|---|---|---|---|\n| dpo | ppo_gt | KL 0.5 | -0.146 ± 0.013 | below |\n| `beta=0.1` | **x_1** | 5% | <= 0.63 | -> |\n\nafter\n";
        let want = "% Tables of the markdown beside this file, written by alignlab; needs \\usepackage{booktabs}.\n\n\\begin{table}[htbp]\n  \\centering\n  \\caption{Paired comparisons}\n  \\label{tab:r-1}\n  \\begin{tabular}{lllrl}\n    \\toprule\n    A & B & at & A - B & verdict \\\\\n    \\midrule\n    dpo & ppo\\_gt & KL 0.5 & -0.146 $\\pm$ 0.013 & below \\\\\n    \\texttt{beta=0.1} & \\textbf{x\\_1} & 5\\% & \\textless{}= 0.63 & -\\textgreater{} \\\\\n    \\bottomrule\n  \\end{tabular}\n\\end{table}\n\n";
        assert_eq!(tables(md, "r"), want);
        assert_eq!(tables("no tables | here\n", "r"), "");
    }

    #[test]
    fn every_table_is_converted() {
        let md = "| a |\n|---|\n| 1 |\n\n# H\n| b | c |\n|:--|--:|\n| x | 2 |\n| y |\n";
        let tex = tables(md, "d");
        assert_eq!(tex.matches("\\begin{tabular}").count(), 2);
        assert!(tex.contains("\\begin{tabular}{r}") && tex.contains("\\label{tab:d-2}"));
        // A short row is padded to the header's columns.
        assert!(tex.contains("    y &  \\\\\n"), "{tex}");
    }
}
