//! SVG plots of a run, for `docs/`.

use plotters::prelude::*;
use std::path::Path;

/// One line of a chart.
pub struct Line<'a> {
    /// Its legend.
    pub label: &'a str,
    /// Its points.
    pub points: Vec<(f64, f64)>,
}

/// Why a plot was not written.
#[derive(Debug, thiserror::Error)]
#[error("plotting {path}: {why}")]
pub struct PlotError {
    path: String,
    why: String,
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(23, 190, 207),
];

/// Draws `lines` as a line chart into an SVG file.
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[Line<'_>],
) -> Result<(), PlotError> {
    let err = |why: String| PlotError {
        path: path.display().to_string(),
        why,
    };
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let xmax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| finite(p.0)))
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let ymax = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| finite(p.1)))
        .fold(0.0f64, f64::max)
        .max(1e-9)
        * 1.08;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(75)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, l) in lines.iter().enumerate() {
        let colour = COLOURS.get(i % COLOURS.len()).copied().unwrap_or(BLACK);
        chart
            .draw_series(LineSeries::new(
                l.points.iter().map(|p| (finite(p.0), finite(p.1))),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(e.to_string()))?
            .label(l.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    if lines.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// The empirical CDF of `xs` as points (value, share at or below it).
pub fn cdf(xs: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len().max(1) as f64;
    v.iter()
        .enumerate()
        .map(|(i, x)| (*x, (i + 1) as f64 / n))
        .collect()
}
