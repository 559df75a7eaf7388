//! The figures, as PNG and SVG (plotters). Text uses DejaVu Sans embedded in the binary, so it
//! renders on a machine without fonts.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

use super::frontier::{fit_gao, gao_curve, mean_ci_t, selected_at_budget, FitForm};
use super::{distinct, methods, seed_points, seeds, Frontier, Point};
use crate::experiment::Metrics;

const FONT: &str = "sans-serif";
static FONT_ONCE: std::sync::Once = std::sync::Once::new();

fn register_font() {
    FONT_ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| ())
            .expect("the embedded font parses");
    });
}

const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

/// The chart's legend: `size`-point labels on a light box at `pos`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    size: u32,
    pos: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .label_font((FONT, size))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(pos)
        .draw()
        .map_err(err)
}

/// The optimal policy's inner bound, dashed: its importance-sampling estimate from pi_ref with
/// `n` samples per prompt, over the KL range `lo..hi` it covers.
fn optimal_curve<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    stats: &[(f64, f64, f64)],
    n: Option<f64>,
    (lo, hi): (f64, f64),
) -> Result<()> {
    let n = n.map(|n| format!("N = {n:.0} per prompt, ")).unwrap_or_default();
    let line: Vec<(f64, f64)> = stats.iter().map(|&(k, m, _)| (k, m)).collect();
    chart
        .draw_series(DashedLineSeries::new(line, 8, 5, BLACK.stroke_width(2)))
        .map_err(err)?
        .label(format!("π* inner bound (IS from π_ref, {n}KL {lo:.2} to {hi:.2})"))
        .legend(swatch(BLACK.stroke_width(2)));
    Ok(())
}

/// A legend entry with no data: `text` beside a thin black line (drawn as a point at `at`).
fn legend_note<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    at: (f64, f64),
    text: &str,
) -> Result<()> {
    chart
        .draw_series(std::iter::once(PathElement::new(vec![at, at], BLACK.stroke_width(1))))
        .map_err(err)?
        .label(text)
        .legend(swatch(BLACK.stroke_width(1)));
    Ok(())
}

/// A shaded band from `lo` to `hi` over `x`, for `(x, lo, hi)` in order of `x`.
fn band<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    pts: &[(f64, f64, f64)],
    style: ShapeStyle,
) -> Result<()> {
    let mut poly: Vec<(f64, f64)> = pts.iter().map(|&(x, _, hi)| (x, hi)).collect();
    poly.extend(pts.iter().rev().map(|&(x, lo, _)| (x, lo)));
    chart.draw_series(std::iter::once(Polygon::new(poly, style))).map_err(err)?;
    Ok(())
}

/// A legend entry: a short line in `style`.
fn swatch<S: Into<ShapeStyle>>(style: S) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    let style = style.into();
    move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style)
}

/// Draw with `f` into `<stem>.png` and `<stem>.svg`.
fn both(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    f: impl Fn(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    g: impl Fn(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let tmp_png = dir.join(format!(".{stem}.tmp.png"));
    let tmp_svg = dir.join(format!(".{stem}.tmp.svg"));
    let drawn = draw_both(&tmp_png, &tmp_svg, size, f, g);
    if let Err(e) = drawn {
        // The previous figures stay; only the partial files go.
        let _ = std::fs::remove_file(&tmp_png);
        let _ = std::fs::remove_file(&tmp_svg);
        anyhow::bail!("cannot write {}: {e:#} (is the disk full?); fix: free space on that disk; the previous figure is untouched", png.display());
    }
    std::fs::rename(&tmp_png, &png)?;
    std::fs::rename(&tmp_svg, &svg)?;
    Ok(())
}

fn draw_both(
    tmp_png: &Path,
    tmp_svg: &Path,
    size: (u32, u32),
    f: impl Fn(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
    g: impl Fn(DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    {
        let root = BitMapBackend::new(&tmp_png, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        f(root.clone())?;
        root.present().map_err(err)?;
    }
    {
        let root = SVGBackend::new(&tmp_svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        g(root.clone())?;
        root.present().map_err(err)?;
    }
    Ok(())
}

pub fn all(
    dir: &Path,
    points: &[Point],
    external: &[super::External],
    metrics: Option<&Metrics>,
) -> Result<()> {
    register_font();
    let _ = metrics;
    let (p, e) = (points, external);
    both(dir, "frontier", (1000, 700), |r| frontier(r, p, e), |r| frontier(r, p, e))?;
    both(dir, "curves", (1400, 600), |r| curves(r, points), |r| curves(r, points))?;
    both(
        dir,
        "overoptimization",
        (1400, 600),
        |r| overoptimization(r, points),
        |r| overoptimization(r, points),
    )?;
    Ok(())
}

fn range(vals: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let v: Vec<f64> = vals.filter(|x| x.is_finite()).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-6);
    (lo - pad * span, hi + pad * span)
}

/// A method's frontier on a KL grid: per grid KL where every seed reached it, the mean over
/// seeds of the test-half value chosen on the selection half, and its 95% t half-width.
fn frontier_curve(
    points: &[Point],
    method: &str,
    which: Frontier,
    kmax: f64,
) -> Vec<(f64, f64, f64)> {
    let per_seed: Vec<_> = seeds(points)
        .into_iter()
        .map(|s| seed_points(points, method, s, which))
        .filter(|p| !p.is_empty())
        .collect();
    (0..=80)
        .map(|j| kmax * j as f64 / 80.0)
        .filter_map(|k| {
            let vals: Option<Vec<f64>> =
                per_seed.iter().map(|pts| selected_at_budget(pts, k).map(|v| v.0)).collect();
            let vals = vals.filter(|v| !v.is_empty())?;
            let (mean, ci) = mean_ci_t(&vals);
            Some((k, mean, if vals.len() > 1 { ci } else { 0.0 }))
        })
        .collect()
}

/// Gold reward against KL: every evaluation a point (all held-out prompts), each method's
/// frontier (chosen on the selection half, the test half's value; mean over seeds with a 95%
/// band, drawn only up to the KL every seed reached), the final-checkpoint frontier thin, and the
/// importance-sampling inner bound of the optimal frontier dashed with its N and KL range.
fn frontier<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[Point],
    external: &[super::External],
) -> Result<()> {
    let shown: Vec<&Point> =
        points.iter().filter(|p| p.kl.is_finite() && p.gold.is_finite()).collect();
    let (x1, (y0, y1)) = frontier_ranges(&shown, external);
    let split = super::has_split(points);
    let caption = if split {
        "Gold reward vs KL(π || π_ref): chosen on selection prompts, shown on test prompts"
    } else {
        "Gold reward vs KL(π || π_ref)"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("KL(π || π_ref) (nats, summed over the response)")
        .y_desc("gold reward")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    for (i, m) in methods(points).iter().enumerate() {
        if m == "sft" {
            continue;
        }
        let c = color(i);
        let mine: Vec<&&Point> = shown.iter().filter(|p| &p.method == m).collect();
        let label = if m == "best_of_n" { "best_of_n (KL bound)".to_string() } else { m.clone() };
        if m != "optimal" {
            chart
                .draw_series(
                    mine.iter().map(|p| Circle::new((p.kl, p.gold), 3, c.mix(0.45).filled())),
                )
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
        }
        let kmax = mine.iter().map(|p| p.kl).fold(0.0, f64::max);
        let stats = frontier_curve(points, m, Frontier::Selected, kmax);
        if stats.iter().any(|s| s.2 > 0.0) {
            let pts: Vec<_> = stats.iter().map(|&(k, m, c)| (k, m - c, m + c)).collect();
            band(&mut chart, &pts, c.mix(0.15).filled())?;
        }
        if m == "optimal" {
            let n = points.iter().find(|p| p.method == "optimal").and_then(|p| p.is_samples);
            let lo = mine.iter().map(|p| p.kl).fold(f64::INFINITY, f64::min);
            optimal_curve(&mut chart, &stats, n, (lo, kmax))?;
        } else {
            chart
                .draw_series(LineSeries::new(
                    stats.iter().map(|&(k, m, _)| (k, m)),
                    c.stroke_width(2),
                ))
                .map_err(err)?;
            if !matches!(m.as_str(), "best_of_n") {
                let fin = frontier_curve(points, m, Frontier::Final, kmax);
                chart
                    .draw_series(DashedLineSeries::new(
                        fin.iter().map(|&(k, m, _)| (k, m)).collect::<Vec<_>>(),
                        4,
                        4,
                        c.stroke_width(1),
                    ))
                    .map_err(err)?;
            }
        }
    }
    external_points(&mut chart, external)?;
    legend_note(&mut chart, (0.0, y0), "thin dashed: final checkpoints only")?;
    legend(&mut chart, 13, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

fn shown_external(ext: &[super::External]) -> Vec<&super::External> {
    ext.iter().filter(|e| e.kl.is_finite() && e.gold.is_finite()).collect()
}

/// The frontier plot's KL maximum and gold range: every point and every external policy's bar.
fn frontier_ranges(shown: &[&Point], ext: &[super::External]) -> (f64, (f64, f64)) {
    let ext = shown_external(ext);
    let (_, x1) = range(shown.iter().map(|p| p.kl).chain(ext.iter().map(|e| e.kl)), 0.05);
    let bars = ext.iter().flat_map(|e| [e.gold - e.gold_ci, e.gold + e.gold_ci]);
    (x1, range(shown.iter().map(|p| p.gold).chain(bars), 0.05))
}

/// Policies trained elsewhere (`alignlab eval --frontier`): black crosses with their 95% bars.
fn external_points<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    ext: &[super::External],
) -> Result<()> {
    for e in shown_external(ext) {
        let (lo, hi) = (e.gold - e.gold_ci, e.gold + e.gold_ci);
        chart
            .draw_series([ErrorBar::new_vertical(e.kl, lo, e.gold, hi, BLACK.stroke_width(1), 8)])
            .map_err(err)?;
        chart
            .draw_series([Cross::new((e.kl, e.gold), 7, BLACK.stroke_width(2))])
            .map_err(err)?
            .label(format!("{} (external, seed {})", e.policy, e.seed))
            .legend(|(x, y)| Cross::new((x + 9, y), 5, BLACK.stroke_width(2)));
    }
    Ok(())
}

/// Training curves: gold reward and KL against step for every run (first seed), gold with its
/// 95% band.
fn curves<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, points: &[Point]) -> Result<()> {
    let panels = root.split_evenly((1, 2));
    let runs = distinct(
        points
            .iter()
            .filter(|p| !matches!(p.method.as_str(), "sft" | "best_of_n" | "optimal"))
            .map(|p| (p.method.clone(), p.setting.clone())),
    );
    let seed = points.iter().map(|p| p.seed).min().unwrap_or(0);
    for (panel, (title, which)) in panels
        .iter()
        .zip([("Gold reward during training", 0), ("KL(π || π_ref) during training", 1)])
    {
        let sel: Vec<&Point> = points
            .iter()
            .filter(|p| p.seed == seed && runs.contains(&(p.method.clone(), p.setting.clone())))
            .collect();
        let val = |p: &Point| if which == 0 { p.gold } else { p.kl };
        let (_, x1) = range(sel.iter().map(|p| p.step as f64), 0.02);
        let (y0, y1) = range(
            sel.iter().flat_map(|p| {
                [
                    val(p) - if which == 0 { p.gold_ci } else { 0.0 },
                    val(p) + if which == 0 { p.gold_ci } else { 0.0 },
                ]
            }),
            0.05,
        );
        let mut chart = ChartBuilder::on(panel)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x1.max(1.0), y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step (PPO: iteration)")
            .y_desc(if which == 0 { "gold reward" } else { "KL (nats)" })
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (i, (m, s)) in runs.iter().enumerate() {
            let c = color(i);
            let mut pts: Vec<&&Point> =
                sel.iter().filter(|p| &p.method == m && &p.setting == s).collect();
            pts.sort_by_key(|p| p.step);
            if which == 0 && pts.len() > 1 {
                let pts: Vec<_> = pts
                    .iter()
                    .map(|p| (p.step as f64, p.gold - p.gold_ci, p.gold + p.gold_ci))
                    .collect();
                band(&mut chart, &pts, c.mix(0.12).filled())?;
            }
            let label = if s.is_empty() { m.clone() } else { format!("{m} {s}") };
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.step as f64, val(p))),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(label)
                .legend(swatch(c.stroke_width(2)));
        }
        let pos = if which == 0 {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperLeft
        };
        legend(&mut chart, 12, pos)?;
    }
    Ok(())
}

/// Overoptimisation (Gao et al. 2022): gold and proxy reward gain over SFT against
/// d = sqrt(KL), for Best-of-N and PPO, with the fitted functional forms.
fn overoptimization<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[Point],
) -> Result<()> {
    let panels = root.split_evenly((1, 2));
    let families = [("best_of_n", FitForm::BestOfN), ("ppo", FitForm::Rl), ("ppo_gt", FitForm::Rl)];
    for (panel, (title, proxy)) in panels
        .iter()
        .zip([("Gold reward gain over SFT", false), ("Proxy (reward model) gain over SFT", true)])
    {
        let val = |p: &Point| if proxy { p.proxy } else { p.gold };
        let sft = |seed: u64| points.iter().find(|p| p.method == "sft" && p.seed == seed).map(val);
        let mut series: Vec<(usize, &str, FitForm, Curve)> = Vec::new();
        for (i, (m, form)) in families.iter().enumerate() {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| &p.method == m)
                .filter_map(|p| sft(p.seed).map(|s| (p.kl, val(p) - s)))
                .filter(|(k, g)| k.is_finite() && g.is_finite())
                .collect();
            if !pts.is_empty() {
                series.push((i, m, *form, pts));
            }
        }
        let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.3.iter().copied()).collect();
        let (_, x1) = range(all.iter().map(|p| p.0.sqrt()), 0.05);
        let (y0, y1) = range(all.iter().map(|p| p.1).chain([0.0]), 0.08);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x1.max(0.1), y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("d = sqrt(KL)")
            .y_desc("reward gain")
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (i, m, form, pts) in &series {
            let c = color(*i);
            chart
                .draw_series(
                    pts.iter().map(|&(k, g)| Circle::new((k.sqrt(), g), 3, c.mix(0.6).filled())),
                )
                .map_err(err)?
                .label(m.to_string())
                .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
            if let Some((a, b, _)) = fit_gao(pts, *form) {
                let dmax = pts.iter().map(|p| p.0.sqrt()).fold(0.0, f64::max);
                let curve: Vec<(f64, f64)> = (0..=60)
                    .map(|j| dmax * j as f64 / 60.0)
                    .map(|d| (d, gao_curve(a, b, *form, d * d)))
                    .filter(|p| p.1 >= y0 && p.1 <= y1)
                    .collect();
                chart.draw_series(LineSeries::new(curve, c.stroke_width(2))).map_err(err)?;
            }
        }
        legend(&mut chart, 13, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

/// Win rate against the references: by temperature (`by_step = false`) or over training steps,
/// one line per policy with its interval as error bars (or a band).
pub fn winrates(
    dir: &Path,
    temp: &[super::winrate::WinRow],
    steps: &[super::winrate::WinRow],
) -> Result<()> {
    register_font();
    if !temp.is_empty() {
        both(
            dir,
            "winrate_temperature",
            (1000, 650),
            |r| winrate_chart(r, temp, false),
            |r| winrate_chart(r, temp, false),
        )?;
    }
    if !steps.is_empty() {
        both(
            dir,
            "winrate_steps",
            (1000, 650),
            |r| winrate_chart(r, steps, true),
            |r| winrate_chart(r, steps, true),
        )?;
    }
    Ok(())
}

/// The series of the win rate over training: with curves at several temperatures, the paper's
/// Fig. 3 right (DPO alone at each temperature, its setting with the highest last win rate at
/// the evaluation temperature, the one that is not a curve); else every method but SFT,
/// Best-of-N and the optimum.
fn labels_by_step(rows: &[super::winrate::WinRow]) -> Vec<String> {
    let curves = rows.iter().any(|r| r.setting.contains("T="));
    if curves && rows.iter().any(|r| r.method == "dpo" && r.setting.contains("T=")) {
        // With curves at several temperatures: the paper's Fig. 3 right, DPO alone at each
        // temperature, its setting with the highest last win rate at the evaluation
        // temperature (the one that is not a curve).
        let last = |setting: &str| {
            rows.iter()
                .filter(|r| r.method == "dpo" && r.setting == setting)
                .max_by(|a, b| a.x.total_cmp(&b.x))
                .map_or(f64::NEG_INFINITY, |r| r.mean)
        };
        let best = distinct(
            rows.iter()
                .filter(|r| r.method == "dpo" && !r.setting.contains("T="))
                .map(|r| r.setting.clone()),
        )
        .into_iter()
        .max_by(|a, b| last(a).total_cmp(&last(b)));
        distinct(
            rows.iter()
                .filter(|r| {
                    r.method == "dpo"
                        && best.as_ref().is_some_and(|b| r.setting.starts_with(&format!("{b} T=")))
                })
                .map(|r| r.label()),
        )
    } else {
        distinct(
            rows.iter()
                .filter(|r| !matches!(r.method.as_str(), "sft" | "best_of_n" | "optimal"))
                .map(|r| r.label()),
        )
    }
}

fn winrate_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[super::winrate::WinRow],
    by_step: bool,
) -> Result<()> {
    let labels = if by_step { labels_by_step(rows) } else { super::winrate::shown(rows) };
    let sel: Vec<&super::winrate::WinRow> =
        rows.iter().filter(|r| labels.contains(&r.label())).collect();
    let (x0, x1) = range(sel.iter().map(|r| r.x), 0.04);
    let (y0, y1) = range(sel.iter().flat_map(|r| [r.lo, r.hi, 0.5]), 0.05);
    let (title, xdesc) = if by_step {
        (
            "Win rate against the reference over training",
            "step (DPO: batch of pairs; PPO: iteration)",
        )
    } else {
        ("Win rate against the reference by sampling temperature", "sampling temperature")
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0.max(0.0)..y1.min(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(xdesc)
        .y_desc("win rate (ties count 1/2)")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(x0, 0.5), (x1, 0.5)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))
        .map_err(err)?;
    for (i, l) in labels.iter().enumerate() {
        let c = color(i);
        let mut pts: Vec<&&super::winrate::WinRow> =
            sel.iter().filter(|r| &r.label() == l).collect();
        pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        if by_step && pts.len() > 1 {
            let band_pts: Vec<_> = pts.iter().map(|r| (r.x, r.lo, r.hi)).collect();
            band(&mut chart, &band_pts, c.mix(0.12).filled())?;
        } else {
            chart
                .draw_series(
                    pts.iter().map(|r| {
                        ErrorBar::new_vertical(r.x, r.lo, r.mean, r.hi, c.stroke_width(1), 8)
                    }),
                )
                .map_err(err)?;
        }
        chart
            .draw_series(
                LineSeries::new(pts.iter().map(|r| (r.x, r.mean)), c.stroke_width(2)).point_size(3),
            )
            .map_err(err)?
            .label(l.clone())
            .legend(swatch(c.stroke_width(2)));
    }
    legend(&mut chart, 13, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}

/// `alignlab tabular`: the tabular world's runs traced into `out` (tabular.csv, the world's
/// tabular_world.csv, the plot, tabular_unseen.csv); returns the lines to print.
pub fn tabular_command(out: &Path, seed: u64) -> Result<String> {
    use crate::experiment::tabular;
    let rows = tabular::convergence(out, seed)?;
    self::tabular(out, &rows)?;
    tabular::unseen_mass(out, seed)?;
    Ok(format!(
        "{}written: {}/tabular{{.csv,_world.csv,_unseen.csv,.png,.svg}}\n",
        tabular::last_values(&rows),
        out.display()
    ))
}

/// The tabular world's convergence: TV(pi, pi*) against step under Bradley-Terry labels, and
/// the worst response's mass under deterministic labels (log scales).
pub fn tabular(dir: &Path, rows: &[crate::experiment::tabular::TraceRow]) -> Result<()> {
    register_font();
    both(dir, "tabular", (1400, 600), |r| tabular_chart(r, rows), |r| tabular_chart(r, rows))
}

fn tabular_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    rows: &[crate::experiment::tabular::TraceRow],
) -> Result<()> {
    let panels = root.split_evenly((1, 2));
    for (panel, (metric, title, ydesc)) in panels.iter().zip([
        ("tv_to_optimal", "Bradley-Terry labels: distance to π*", "mean TV(π, π*) over prompts"),
        (
            "worst_mass",
            "Deterministic labels: the worst response",
            "largest mass on a prompt's worst response",
        ),
    ]) {
        let sel: Vec<&crate::experiment::tabular::TraceRow> =
            rows.iter().filter(|r| r.metric == metric && r.method != "reference").collect();
        let x1 = sel.iter().map(|r| r.step as f64).fold(1.0, f64::max);
        let vals: Vec<f64> = sel.iter().map(|r| r.value.max(1e-300)).collect();
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-45);
        let hi = vals.iter().cloned().fold(0.0, f64::max).max(lo * 10.0);
        let mut chart = ChartBuilder::on(panel)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x1, (lo * 0.5..hi * 2.0).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step (PPO-GT: iteration)")
            .y_desc(ydesc)
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let series = distinct(sel.iter().map(|r| r.series.as_str()));
        for (i, s) in series.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64)> = sel
                .iter()
                .filter(|r| r.series == *s)
                .map(|r| (r.step as f64, r.value.max(lo * 0.5)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                .map_err(err)?
                .label(s.to_string())
                .legend(swatch(c.stroke_width(2)));
        }
        legend(&mut chart, 12, SeriesLabelPosition::LowerLeft)?;
    }
    Ok(())
}

/// An ablation point: (level, gold at the budget, ci).
pub type LevelPoint = (f64, f64, f64);
/// A curve's (x, y) points.
type Curve = Vec<(f64, f64)>;

/// One panel of the ablation figure: per method, (level, gold at the budget, ci) points.
pub struct AblationPanel {
    pub title: String,
    pub xdesc: String,
    pub log_x: bool,
    pub series: Vec<(String, Vec<LevelPoint>)>,
}

/// `ablations.{png,svg}`: one panel per ablation family.
pub fn ablations(dir: &Path, panels: &[AblationPanel]) -> Result<()> {
    register_font();
    let w = 500 * panels.len() as u32;
    both(
        dir,
        "ablations",
        (w.max(500), 500),
        |r| ablation_chart(r, panels),
        |r| ablation_chart(r, panels),
    )
}

fn ablation_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[AblationPanel],
) -> Result<()> {
    let areas = root.split_evenly((1, panels.len()));
    for (area, p) in areas.iter().zip(panels) {
        let xs: Vec<f64> = p.series.iter().flat_map(|s| s.1.iter().map(|q| q.0)).collect();
        let (y0, y1) = range(p.series.iter().flat_map(|s| s.1.iter().map(|q| q.1)), 0.1);
        let lx = |x: f64| if p.log_x { x.ln() } else { x };
        let (x0, x1) = range(xs.iter().map(|&x| lx(x)), 0.08);
        let mut chart = ChartBuilder::on(area)
            .caption(&p.title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        let fmt_x = |v: &f64| {
            let x = if p.log_x { v.exp() } else { *v };
            if x >= 10.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.2}")
            }
        };
        chart
            .configure_mesh()
            .x_desc(p.xdesc.as_str())
            .y_desc("gold reward at KL 2")
            .x_label_formatter(&fmt_x)
            .label_style((FONT, 12))
            .draw()
            .map_err(err)?;
        for (i, (m, pts)) in p.series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(
                    LineSeries::new(pts.iter().map(|q| (lx(q.0), q.1)), c.stroke_width(2))
                        .point_size(4),
                )
                .map_err(err)?
                .label(m.clone())
                .legend(swatch(c.stroke_width(2)));
        }
        legend(&mut chart, 12, SeriesLabelPosition::LowerRight)?;
    }
    Ok(())
}

/// `kl_estimators.{png,svg}`: each sampled estimator minus the exact KL against the exact KL,
/// one point per evaluation.
pub fn kl_estimators(dir: &Path, points: &[(f64, [f64; 3])]) -> Result<()> {
    register_font();
    both(
        dir,
        "kl_estimators",
        (800, 520),
        |r| kl_estimator_chart(r, points),
        |r| kl_estimator_chart(r, points),
    )
}

fn kl_estimator_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[(f64, [f64; 3])],
) -> Result<()> {
    let (x0, x1) = range(points.iter().map(|p| p.0), 0.05);
    let (y0, y1) = range(points.iter().flat_map(|p| p.1), 0.1);
    let mut chart = ChartBuilder::on(&root)
        .caption("Sampled KL estimators minus the exact KL, per evaluation", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("exact KL(pi || pi_ref)")
        .y_desc("estimator - exact")
        .label_style((FONT, 12))
        .draw()
        .map_err(err)?;
    chart.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], BLACK.mix(0.5))).map_err(err)?;
    for (i, name) in ["k1", "k2", "k3"].iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(points.iter().map(|p| Circle::new((p.0, p.1[i]), 3, c.mix(0.6).filled())))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, c.filled()));
    }
    legend(&mut chart, 12, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}
