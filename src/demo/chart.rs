//! The demo's picture: per-pod share of requests over time, through fairway-proxy and
//! through the per-connection stand-in, side by side, with the scale-up marked.

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;

/// One panel: a title and one share series per pod (one value per bucket).
#[derive(Debug)]
pub struct Panel<'a> {
    pub title: &'a str,
    pub rows: &'a [Vec<f64>],
}

/// Why the chart could not be written.
#[derive(Debug, thiserror::Error)]
#[error("draw the chart: {0}")]
pub struct ChartError(String);

const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// Writes an SVG of `panels` to `path`; `bucket` is the time per row, `scale_up` where
/// the vertical marker goes.
pub fn draw(
    path: &Path,
    pods: &[String],
    panels: &[Panel<'_>],
    bucket: Duration,
    scale_up: Duration,
) -> Result<(), ChartError> {
    let err = |e: &dyn std::fmt::Display| ChartError(e.to_string());
    let root = SVGBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    let step = bucket.as_secs_f64();
    for (area, panel) in areas.iter().zip(panels) {
        let end = panel.rows.len() as f64 * step;
        let mut chart = ChartBuilder::on(area)
            .caption(panel.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..end.max(step), 0f64..100f64)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("% of requests")
            .draw()
            .map_err(|e| err(&e))?;
        let marker = scale_up.as_secs_f64();
        chart
            .draw_series(LineSeries::new(
                [(marker, 0.0), (marker, 100.0)],
                BLACK.mix(0.4),
            ))
            .map_err(|e| err(&e))?;
        for (i, pod) in pods.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points = panel
                .rows
                .iter()
                .enumerate()
                .map(|(b, row)| ((b as f64 + 0.5) * step, row.get(i).copied().unwrap_or(0.0)));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(pod.as_str())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}
