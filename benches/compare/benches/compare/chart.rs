//! The SVG chart: requests/s and server CPU per request of every measured
//! contender, as labelled horizontal bars.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::contenders::Kind;
use crate::report::{Row, thousands};

/// One bar: label, value, colour.
type Bar = (String, f64, RGBColor);

const STRATA: RGBColor = RGBColor(0x2b, 0x6c, 0xb0);
const PEER: RGBColor = RGBColor(0xdd, 0x84, 0x52);
const BASELINE: RGBColor = RGBColor(0x9a, 0x9a, 0x9a);
const NGINX: RGBColor = RGBColor(0x2f, 0x9e, 0x44);
const WIDTH: u32 = 1100;
const ROW_HEIGHT: u32 = 26;

/// Writes the chart of the measured rows to `path` (its folder is created).
pub(crate) fn write(path: &Path, rows: &[Row], subtitle: &str) -> Result<(), String> {
    let colour = |row: &Row| {
        if row.contender.kind == Kind::Nginx {
            NGINX
        } else if row.contender.kind.is_peer() {
            PEER
        } else if row.contender.kind.is_cache() {
            STRATA
        } else {
            BASELINE
        }
    };
    let measured: Vec<(&Row, _)> = rows
        .iter()
        .filter_map(|row| row.measured().map(|m| (row, m)))
        .collect();
    if measured.is_empty() {
        return Err("nothing was measured".to_owned());
    }
    let rps: Vec<Bar> = measured
        .iter()
        .map(|(row, m)| (row.contender.name(), m.rps(), colour(row)))
        .collect();
    let cpu: Vec<Bar> = measured
        .iter()
        .filter_map(|(row, m)| {
            m.per_request_us(m.server_cpu_ns)
                .map(|us| (row.contender.name(), us, colour(row)))
        })
        .collect();

    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    }
    let panel = |bars: usize| 90 + ROW_HEIGHT * bars as u32;
    let legend = 34;
    let height = panel(rps.len()) + if cpu.is_empty() { 0 } else { panel(cpu.len()) } + legend;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, rest) = root.split_vertically(panel(rps.len()));
    let (bottom, _legend) = rest.split_vertically(panel(cpu.len()));
    panel_chart(
        &top,
        &format!("Requests per second, higher is better ({subtitle})"),
        "requests/s",
        &rps,
        |v| thousands(v.round() as u64),
    )?;
    if !cpu.is_empty() {
        panel_chart(
            &bottom,
            "Server CPU per request, lower is better (tiered: redis-server not included; nginx: its process)",
            "µs of server CPU per request",
            &cpu,
            |v| format!("{v:.1} µs"),
        )?;
    }
    let y = (height - legend + 8) as i32;
    let mut x = 290;
    for (name, colour) in [
        ("strata", STRATA),
        ("other crates", PEER),
        ("nginx", NGINX),
        ("no cache", BASELINE),
    ] {
        root.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], colour.filled()))
            .map_err(|e| e.to_string())?;
        root.draw(&Text::new(name, (x + 20, y), ("sans-serif", 16)))
            .map_err(|e| e.to_string())?;
        x += 170;
    }
    root.present().map_err(|e| e.to_string())
}

/// One horizontal bar chart on `area`, the first bar at the top.
fn panel_chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    axis: &str,
    bars: &[Bar],
    show: impl Fn(f64) -> String,
) -> Result<(), String> {
    let n = bars.len();
    let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 22))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(360)
        .build_cartesian_2d(0.0..max * 1.18, (0..n).into_segmented())
        .map_err(|e| e.to_string())?;
    // Segment 0 is at the bottom: bar i goes to segment n - 1 - i.
    let label = |segment: &SegmentValue<usize>| match segment {
        SegmentValue::CenterOf(s) | SegmentValue::Exact(s) if *s < n => bars[n - 1 - *s].0.clone(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(WHITE)
        .y_labels(n)
        .y_label_formatter(&label)
        .x_labels(8)
        .x_label_formatter(&|v| show(*v))
        .x_desc(axis)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 16))
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, value, colour))| {
            let s = n - 1 - i;
            let mut bar = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(s)),
                    (*value, SegmentValue::Exact(s + 1)),
                ],
                colour.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))
        .map_err(|e| e.to_string())?;
    let style =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, value, _))| {
            let s = n - 1 - i;
            EmptyElement::at((*value, SegmentValue::CenterOf(s)))
                + Text::new(show(*value), (5, 0), style.clone())
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}
