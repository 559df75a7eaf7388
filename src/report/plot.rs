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

/// How a series' line is drawn: the palette's ten colours first solid, then dashed, then
/// dotted, so that up to 30 series stay apart.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// A series' colour and line.
#[derive(Clone, Copy, Debug)]
struct Look {
    color: RGBColor,
    dash: Dash,
}

fn look(i: usize) -> Look {
    let dash = [Dash::Solid, Dash::Dashed, Dash::Dotted][(i / PALETTE.len()) % 3];
    Look { color: color(i), dash }
}

/// Draw `pts` as a line in `look`, `width` pixels wide.
fn draw_line<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    pts: Vec<(f64, f64)>,
    look: Look,
    width: u32,
) -> Result<()> {
    let style = look.color.stroke_width(width);
    match look.dash {
        Dash::Solid => chart.draw_series(LineSeries::new(pts, style)).map(|_| ()),
        Dash::Dashed => chart.draw_series(DashedLineSeries::new(pts, 8, 5, style)).map(|_| ()),
        Dash::Dotted => chart.draw_series(DashedLineSeries::new(pts, 2, 4, style)).map(|_| ()),
    }
    .map_err(err)
}

/// A legend entry's mark.
#[derive(Clone, Copy, Debug)]
enum Mark {
    Line(Look, u32),
    Dot(RGBColor),
    Cross,
}

/// A legend drawn beside the data, in an area of its own: an optional title, then one entry
/// per line (its mark, then its label), `size`-point text.
fn side_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(String, Mark)],
    size: u32,
) -> Result<()> {
    let mut y = 8i32;
    let font = (FONT, size).into_font();
    if !title.is_empty() {
        area.draw(&Text::new(title.to_string(), (6, y), font.clone())).map_err(err)?;
        y += size as i32 + 8;
    }
    for (label, mark) in entries {
        let cy = y + size as i32 / 2;
        match *mark {
            Mark::Line(l, w) => {
                let style = l.color.stroke_width(w);
                let segments: Vec<(i32, i32)> = match l.dash {
                    Dash::Solid => vec![(8, 34)],
                    Dash::Dashed => vec![(8, 16), (21, 29)],
                    Dash::Dotted => vec![(8, 10), (14, 16), (20, 22), (26, 28), (32, 34)],
                };
                for (a, b) in segments {
                    area.draw(&PathElement::new(vec![(a, cy), (b, cy)], style)).map_err(err)?;
                }
            }
            Mark::Dot(c) => area.draw(&Circle::new((21, cy), 4, c.filled())).map_err(err)?,
            Mark::Cross => {
                area.draw(&Cross::new((21, cy), 5, BLACK.stroke_width(2))).map_err(err)?
            }
        }
        area.draw(&Text::new(label.clone(), (42, y), font.clone())).map_err(err)?;
        y += size as i32 + 6;
    }
    Ok(())
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
) -> Result<String> {
    let n = n.map(|n| format!("N {n:.0}, ")).unwrap_or_default();
    let line: Vec<(f64, f64)> = stats.iter().map(|&(k, m, _)| (k, m)).collect();
    chart.draw_series(DashedLineSeries::new(line, 8, 5, BLACK.stroke_width(2))).map_err(err)?;
    Ok(format!("π* inner bound ({n}KL {lo:.2}-{hi:.2})"))
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
    both(dir, "frontier", (1300, 700), |r| frontier(r, p, e), |r| frontier(r, p, e))?;
    let banded = banded_methods(points).len();
    if banded > MAX_BANDS {
        let size = (CURVE_COLUMNS as u32 * 400, 40 + banded.div_ceil(CURVE_COLUMNS) as u32 * 330);
        both(dir, "frontier_panels", size, |r| frontier_panels(r, p), |r| frontier_panels(r, p))?;
    } else {
        let _ = std::fs::remove_file(dir.join("frontier_panels.png"));
        let _ = std::fs::remove_file(dir.join("frontier_panels.svg"));
    }
    let size = curves_size(points);
    both(dir, "curves", size, |r| curves(r, points), |r| curves(r, points))?;
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

/// Methods whose frontier has a band (several seeds) beyond which one figure's bands would
/// cover each other: the frontier is then drawn without bands, and `frontier_panels` shows each
/// method's band in a panel of its own.
const MAX_BANDS: usize = 4;

/// The methods of the frontier plot whose frontier has a seed band.
fn banded_methods(points: &[Point]) -> Vec<String> {
    if seeds(points).len() < 2 {
        return vec![];
    }
    methods(points).into_iter().filter(|m| !matches!(m.as_str(), "sft" | "optimal")).collect()
}

/// Gold reward against KL: every evaluation a point (all held-out prompts), each method's
/// frontier (chosen on the selection half, the test half's value; mean over seeds with a 95%
/// band, drawn only up to the KL every seed reached), the final-checkpoint frontier thin, and the
/// importance-sampling inner bound of the optimal frontier dashed with its N and KL range. The
/// legend stands beside the data; with more than [`MAX_BANDS`] banded methods the bands are
/// left to `frontier_panels`.
fn frontier<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[Point],
    external: &[super::External],
) -> Result<()> {
    let shown: Vec<&Point> =
        points.iter().filter(|p| p.kl.is_finite() && p.gold.is_finite()).collect();
    let (x1, (y0, y1)) = frontier_ranges(&shown, external);
    let (area, legend_area) = root.split_horizontally(root.dim_in_pixel().0 - 300);
    let split = super::has_split(points);
    let one_seed = if seeds(points).len() == 1 { " (one seed)" } else { "" };
    let caption = if split {
        format!("Gold reward vs KL(π || π_ref): chosen on selection prompts, shown on test prompts{one_seed}")
    } else {
        format!("Gold reward vs KL(π || π_ref){one_seed}")
    };
    let mut chart = ChartBuilder::on(&area)
        .caption(caption, (FONT, 18))
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
    let bands = banded_methods(points).len() <= MAX_BANDS;
    let mut entries = Vec::new();
    for (i, m) in methods(points).iter().enumerate() {
        if m == "sft" {
            continue;
        }
        let l = look(i);
        let mine: Vec<&&Point> = shown.iter().filter(|p| &p.method == m).collect();
        let label = if m == "best_of_n" { "best_of_n (KL bound)".to_string() } else { m.clone() };
        if m != "optimal" {
            let c = l.color;
            chart
                .draw_series(
                    mine.iter().map(|p| Circle::new((p.kl, p.gold), 3, c.mix(0.45).filled())),
                )
                .map_err(err)?;
            entries.push((label, Mark::Line(l, 2)));
        }
        let kmax = mine.iter().map(|p| p.kl).fold(0.0, f64::max);
        let stats = frontier_curve(points, m, Frontier::Selected, kmax);
        if bands && stats.iter().any(|s| s.2 > 0.0) {
            let pts: Vec<_> = stats.iter().map(|&(k, m, c)| (k, m - c, m + c)).collect();
            band(&mut chart, &pts, l.color.mix(0.15).filled())?;
        }
        if m == "optimal" {
            let n = points.iter().find(|p| p.method == "optimal").and_then(|p| p.is_samples);
            let lo = mine.iter().map(|p| p.kl).fold(f64::INFINITY, f64::min);
            let label = optimal_curve(&mut chart, &stats, n, (lo, kmax))?;
            entries.push((label, Mark::Line(Look { color: BLACK, dash: Dash::Dashed }, 2)));
        } else {
            draw_line(&mut chart, stats.iter().map(|&(k, m, _)| (k, m)).collect(), l, 2)?;
            if !matches!(m.as_str(), "best_of_n") {
                let fin = frontier_curve(points, m, Frontier::Final, kmax);
                let thin = Look { dash: Dash::Dotted, ..l };
                draw_line(&mut chart, fin.iter().map(|&(k, m, _)| (k, m)).collect(), thin, 1)?;
            }
        }
    }
    entries.extend(external_points(&mut chart, external)?);
    let thin = Look { color: BLACK, dash: Dash::Dotted };
    entries.push(("thin dotted: final checkpoints only".into(), Mark::Line(thin, 1)));
    entries.push(("dots: every evaluation".into(), Mark::Dot(RGBColor(150, 150, 150))));
    let title = if bands { "" } else { "seed bands: frontier_panels.png" };
    side_legend(&legend_area, title, &entries, 13)
}

/// `frontier_panels`: where the frontier plot leaves its bands out (more than [`MAX_BANDS`]
/// banded methods), one panel per method with its frontier and 95% seed band, the other
/// methods' frontiers thin and grey behind it, on common axes.
fn frontier_panels<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    points: &[Point],
) -> Result<()> {
    let ms: Vec<String> =
        methods(points).into_iter().filter(|m| !matches!(m.as_str(), "sft" | "optimal")).collect();
    let shown: Vec<&Point> =
        points.iter().filter(|p| p.kl.is_finite() && p.gold.is_finite()).collect();
    let (x1, (y0, y1)) = frontier_ranges(&shown, &[]);
    let curve = |m: &str| {
        let kmax = shown.iter().filter(|p| p.method == m).map(|p| p.kl).fold(0.0, f64::max);
        frontier_curve(points, m, Frontier::Selected, kmax)
    };
    let curves: Vec<Vec<(f64, f64, f64)>> = ms.iter().map(|m| curve(m)).collect();
    let title = format!(
        "Frontier of each method: mean over {} seeds, 95% t band (grey: the other methods)",
        seeds(points).len()
    );
    let root = root.titled(&title, (FONT, 18)).map_err(err)?;
    let cols = ms.len().min(CURVE_COLUMNS);
    let cells = root.split_evenly((ms.len().div_ceil(CURVE_COLUMNS), cols));
    for (k, (cell, m)) in cells.iter().zip(&ms).enumerate() {
        let mut chart = ChartBuilder::on(cell)
            .caption(m, (FONT, 15))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(48)
            .build_cartesian_2d(0.0..x1, y0..y1)
            .map_err(err)?;
        chart.configure_mesh().x_desc("KL (nats)").label_style((FONT, 11)).draw().map_err(err)?;
        for (_, c) in curves.iter().enumerate().filter(|(j, _)| *j != k) {
            let grey = Look { color: RGBColor(195, 195, 195), dash: Dash::Solid };
            draw_line(&mut chart, c.iter().map(|&(x, m, _)| (x, m)).collect(), grey, 1)?;
        }
        let l = look(methods(points).iter().position(|x| x == m).unwrap_or(k));
        let pts: Vec<_> = curves[k].iter().map(|&(x, m, h)| (x, m - h, m + h)).collect();
        if pts.len() > 1 {
            band(&mut chart, &pts, l.color.mix(0.2).filled())?;
        }
        draw_line(&mut chart, curves[k].iter().map(|&(x, m, _)| (x, m)).collect(), l, 2)?;
    }
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

/// Policies trained elsewhere (`alignlab eval --frontier`): black crosses with their 95% bars;
/// returns their legend entries.
fn external_points<'a, DB: DrawingBackend + 'a, CT: CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    ext: &[super::External],
) -> Result<Vec<(String, Mark)>> {
    let mut entries = Vec::new();
    for e in shown_external(ext) {
        let (lo, hi) = (e.gold - e.gold_ci, e.gold + e.gold_ci);
        chart
            .draw_series([ErrorBar::new_vertical(e.kl, lo, e.gold, hi, BLACK.stroke_width(1), 8)])
            .map_err(err)?;
        chart.draw_series([Cross::new((e.kl, e.gold), 7, BLACK.stroke_width(2))]).map_err(err)?;
        entries.push((format!("{} (external, seed {})", e.policy, e.seed), Mark::Cross));
    }
    Ok(entries)
}

/// The unit of a method's training axis: PPO, PPO-GT and the critic-free methods count
/// iterations (a rollout and its updates), the others optimiser steps.
fn step_unit(method: &str) -> &'static str {
    match method {
        "ppo" | "ppo_gt" | "rloo" | "grpo" | "reinforce_pp" => "iteration",
        _ => "optimiser step",
    }
}

/// The training runs of `points`, by method: (method, its settings in file order).
fn training_runs(points: &[Point]) -> Vec<(String, Vec<String>)> {
    let trained = |m: &str| !matches!(m, "sft" | "best_of_n" | "optimal");
    methods(points)
        .into_iter()
        .filter(|m| trained(m))
        .map(|m| {
            let settings =
                distinct(points.iter().filter(|p| p.method == m).map(|p| p.setting.clone()));
            (m, settings)
        })
        .collect()
}

/// A run's curve of `val` over steps: the mean over the seeds that evaluated each step with its
/// 95% t band over them; with one seed, `within` (an interval over the evaluation prompts)
/// or no band.
fn run_curve(
    points: &[Point],
    (method, setting): (&str, &str),
    val: &dyn Fn(&Point) -> f64,
    within: &dyn Fn(&Point) -> f64,
) -> Vec<(f64, f64, f64)> {
    let mine: Vec<&Point> =
        points.iter().filter(|p| p.method == method && p.setting == setting).collect();
    let mut steps: Vec<usize> = mine.iter().map(|p| p.step).collect();
    steps.sort();
    steps.dedup();
    steps
        .into_iter()
        .filter_map(|step| {
            let at: Vec<&&Point> = mine.iter().filter(|p| p.step == step).collect();
            let mut by_seed: Vec<(u64, f64, f64)> =
                at.iter().map(|p| (p.seed, val(p), within(p))).collect();
            by_seed.dedup_by_key(|v| v.0);
            let vals: Vec<f64> = by_seed.iter().map(|v| v.1).filter(|v| v.is_finite()).collect();
            match vals.len() {
                0 => None,
                1 => Some((step as f64, vals[0], by_seed[0].2)),
                _ => {
                    let (mean, ci) = mean_ci_t(&vals);
                    Some((step as f64, mean, ci))
                }
            }
        })
        .collect()
}

/// Panels per row of the training curves.
const CURVE_COLUMNS: usize = 4;

/// The size of `curves.{png,svg}`: a column of two panels (gold over KL) per method, up to
/// four a row, and a legend under each.
fn curves_size(points: &[Point]) -> (u32, u32) {
    let runs = training_runs(points);
    let n = runs.len().max(1);
    let cols = n.min(CURVE_COLUMNS) as u32;
    let rows = n.div_ceil(CURVE_COLUMNS) as u32;
    let longest = runs.iter().map(|r| r.1.len()).max().unwrap_or(1) as u32;
    (cols * 430, 50 + rows * (2 * 270 + curves_legend_height(longest)))
}

fn curves_legend_height(entries: u32) -> u32 {
    16 + 19 * entries
}

/// Training curves, small multiples: per method, gold reward and KL against its own training
/// axis (steps or iterations), one line per setting (mean over seeds with a 95% t band over
/// them; one seed: gold's 95% interval over the evaluation prompts, no band on KL), its
/// settings' legend under the panels.
fn curves<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, points: &[Point]) -> Result<()> {
    let runs = training_runs(points);
    let n_seeds = seeds(points).len();
    let title = if n_seeds > 1 {
        format!("Training curves: mean over {n_seeds} seeds, 95% t band over seeds")
    } else {
        "Training curves: ONE SEED (gold band: 95% interval over the evaluation prompts; KL: none)"
            .to_string()
    };
    let root = root.titled(&title, (FONT, 20)).map_err(err)?;
    if runs.is_empty() {
        return Ok(());
    }
    let cols = runs.len().min(CURVE_COLUMNS);
    let rows = runs.len().div_ceil(CURVE_COLUMNS);
    let longest = runs.iter().map(|r| r.1.len()).max().unwrap_or(1) as u32;
    let cells = root.split_evenly((rows, cols));
    for (cell, (m, settings)) in cells.iter().zip(&runs) {
        let h = cell.dim_in_pixel().1;
        let (charts, legend_area) = cell.split_vertically(h - curves_legend_height(longest));
        let halves = charts.split_evenly((2, 1));
        for (panel, gold) in halves.iter().zip([true, false]) {
            curve_panel(panel, points, (m, settings), gold, n_seeds)?;
        }
        let entries: Vec<(String, Mark)> = settings
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let label = if s.is_empty() { m.clone() } else { format!("{m} {s}") };
                (label, Mark::Line(look(i), 2))
            })
            .collect();
        side_legend(&legend_area, "", &entries, 12)?;
    }
    Ok(())
}

/// One training-curve panel: `method`'s settings' gold (or KL) against its training axis.
fn curve_panel<DB: DrawingBackend>(
    panel: &DrawingArea<DB, Shift>,
    points: &[Point],
    (method, settings): (&str, &[String]),
    gold: bool,
    n_seeds: usize,
) -> Result<()> {
    let val = |p: &Point| if gold { p.gold } else { p.kl };
    let within = |p: &Point| if gold && n_seeds == 1 { p.gold_ci } else { 0.0 };
    let curves: Vec<Vec<(f64, f64, f64)>> =
        settings.iter().map(|s| run_curve(points, (method, s), &val, &within)).collect();
    let all = curves.iter().flatten();
    let (_, x1) = range(all.clone().map(|c| c.0), 0.02);
    let (y0, y1) = range(all.flat_map(|c| [c.1 - c.2, c.1 + c.2]), 0.05);
    let what = if gold { "gold reward" } else { "KL(π || π_ref), nats" };
    let mut chart = ChartBuilder::on(panel)
        .caption(format!("{method}: {what}"), (FONT, 15))
        .margin(8)
        .x_label_area_size(34)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..x1.max(1.0), y0..y1)
        .map_err(err)?;
    chart.configure_mesh().x_desc(step_unit(method)).label_style((FONT, 11)).draw().map_err(err)?;
    for (i, c) in curves.iter().enumerate() {
        let l = look(i);
        if c.len() > 1 && c.iter().any(|p| p.2 > 0.0) {
            let pts: Vec<_> = c.iter().map(|&(x, m, h)| (x, m - h, m + h)).collect();
            band(&mut chart, &pts, l.color.mix(0.12).filled())?;
        }
        draw_line(&mut chart, c.iter().map(|&(x, m, _)| (x, m)).collect(), l, 2)?;
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
    for (panel, (metric, title, ydesc, xdesc)) in panels.iter().zip([
        (
            "tv_to_optimal",
            "Bradley-Terry labels: distance to π*",
            "mean TV(π, π*) over prompts",
            "step (DPO, IPO: full-batch step; PPO-GT: iteration)",
        ),
        (
            "worst_mass",
            "Deterministic labels: the worst response",
            "largest mass on a prompt's worst response",
            "full-batch step (DPO, IPO)",
        ),
    ]) {
        let (area, legend_area) = panel.split_vertically(panel.dim_in_pixel().1 - 120);
        let sel: Vec<&crate::experiment::tabular::TraceRow> =
            rows.iter().filter(|r| r.metric == metric && r.method != "reference").collect();
        let x1 = sel.iter().map(|r| r.step as f64).fold(1.0, f64::max);
        let vals: Vec<f64> = sel.iter().map(|r| r.value.max(1e-300)).collect();
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-45);
        let hi = vals.iter().cloned().fold(0.0, f64::max).max(lo * 10.0);
        // log10 of the value on a linear axis, labelled as powers of ten: ticks all the way
        // down (plotters' log axis stops labelling decades short of a 40-decade range).
        let (l0, l1) = ((lo * 0.5).log10(), (hi * 2.0).log10());
        let mut chart = ChartBuilder::on(&area)
            .caption(title, (FONT, 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x1, l0..l1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(xdesc)
            .y_desc(ydesc)
            .y_labels(12)
            .y_label_formatter(&|v| {
                // Decades only: a tick between two is left unlabelled.
                if (v - v.round()).abs() < 1e-9 {
                    format!("1e{v:.0}")
                } else {
                    String::new()
                }
            })
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let series = distinct(sel.iter().map(|r| r.series.as_str()));
        let mut entries = Vec::new();
        for (i, s) in series.iter().enumerate() {
            let l = look(i);
            let pts: Vec<(f64, f64)> = sel
                .iter()
                .filter(|r| r.series == *s)
                .map(|r| (r.step as f64, r.value.max(lo * 0.5).log10()))
                .collect();
            chart.draw_series(LineSeries::new(pts, l.color.stroke_width(2))).map_err(err)?;
            entries.push((s.to_string(), Mark::Line(l, 2)));
        }
        let cols = legend_area.split_evenly((1, 2));
        let half = entries.len().div_ceil(2);
        side_legend(&cols[0], "", &entries[..half], 12)?;
        side_legend(&cols[1], "", &entries[half..], 12)?;
    }
    Ok(())
}

/// An ablation point: (level, gold at the budget, ci).
pub type LevelPoint = (f64, f64, f64);
/// A curve's (x, y) points.
type Curve = Vec<(f64, f64)>;

/// One panel of the ablation figure: per method, (level, gold at the budget, ci) points, each
/// drawn with its 95% interval over seeds where it has one.
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
        (w.max(500), 560),
        |r| ablation_chart(r, panels),
        |r| ablation_chart(r, panels),
    )
}

fn ablation_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[AblationPanel],
) -> Result<()> {
    let areas = root.split_evenly((1, panels.len()));
    for (panel, p) in areas.iter().zip(panels) {
        let (area, legend_area) = panel.split_vertically(panel.dim_in_pixel().1 - 90);
        let xs: Vec<f64> = p.series.iter().flat_map(|s| s.1.iter().map(|q| q.0)).collect();
        // The axis holds every interval: (gold - ci, gold + ci) where a point has one.
        let ends = p.series.iter().flat_map(|s| s.1.iter()).flat_map(|q| {
            let ci = if q.2.is_finite() { q.2 } else { 0.0 };
            [q.1 - ci, q.1 + ci]
        });
        let (y0, y1) = range(ends, 0.1);
        let lx = |x: f64| if p.log_x { x.ln() } else { x };
        let (x0, x1) = range(xs.iter().map(|&x| lx(x)), 0.08);
        let mut chart = ChartBuilder::on(&area)
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
        let mut entries = Vec::new();
        for (i, (m, pts)) in p.series.iter().enumerate() {
            let l = look(i);
            chart
                .draw_series(
                    LineSeries::new(pts.iter().map(|q| (lx(q.0), q.1)), l.color.stroke_width(2))
                        .point_size(4),
                )
                .map_err(err)?;
            let bars = pts.iter().filter(|q| q.2.is_finite() && q.2 > 0.0).map(|q| {
                ErrorBar::new_vertical(
                    lx(q.0),
                    q.1 - q.2,
                    q.1,
                    q.1 + q.2,
                    l.color.stroke_width(1),
                    8,
                )
            });
            chart.draw_series(bars).map_err(err)?;
            entries.push((m.clone(), Mark::Line(l, 2)));
        }
        side_legend(&legend_area, "", &entries, 12)?;
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
