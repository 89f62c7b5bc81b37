//! `berthash plot RUN_DIR`: training curves from `metrics.jsonl` as one SVG, one panel per
//! metric (loss, learning rate, eval metrics…) against the step. Self-contained SVG (no font or
//! system library needed), viewable in any browser.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// A run directory (with metrics.jsonl) or a metrics.jsonl file.
    pub run: PathBuf,
    /// Output file (default: RUN_DIR/curves.svg).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the run's metrics as a TensorBoard event file in the run directory instead.
    #[arg(long)]
    pub tensorboard: bool,
}

/// Keys that are bookkeeping, not curves.
const NOT_PLOTTED: &[&str] = &[
    "step",
    "epoch",
    "elapsed",
    "elapsed_s",
    "time",
    "tokens",
    "tokens_seen",
];

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let (metrics_path, run_dir) = if args.run.is_dir() {
        (args.run.join("metrics.jsonl"), args.run.clone())
    } else {
        let dir = args.run.parent().map(PathBuf::from).unwrap_or_default();
        (args.run.clone(), dir)
    };
    if args.tensorboard {
        let events = berthash_train::log::metrics_to_tensorboard(&metrics_path, &run_dir)?;
        println!("wrote {}", events.display());
        return Ok(());
    }
    let text = std::fs::read_to_string(&metrics_path)
        .with_context(|| format!("reading {}", metrics_path.display()))?;
    let series = read_series(&text, &metrics_path.display().to_string())?;
    if series.is_empty() {
        bail!(
            "{}: no numeric metric with a `step` to plot",
            metrics_path.display()
        );
    }
    let out = args.out.unwrap_or_else(|| run_dir.join("curves.svg"));
    berthash_model::fs::write_atomic(&out, render(&series).as_bytes())?;
    println!(
        "wrote {} ({} panels: {})",
        out.display(),
        series.len(),
        series.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

/// Every numeric key of every record that has a `step`, as (step, value) points.
fn read_series(text: &str, name: &str) -> anyhow::Result<BTreeMap<String, Vec<(f64, f64)>>> {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let record: Value = serde_json::from_str(line)
            .with_context(|| format!("{name}: line {}: not a JSON object", n + 1))?;
        let Some(step) = record.get("step").and_then(Value::as_f64) else {
            continue;
        };
        let Some(fields) = record.as_object() else {
            continue;
        };
        for (key, value) in fields {
            if let Some(v) = value.as_f64().filter(|v| v.is_finite()) {
                if !NOT_PLOTTED.contains(&key.as_str()) {
                    series.entry(key.clone()).or_default().push((step, v));
                }
            }
        }
    }
    Ok(series)
}

const WIDTH: f64 = 720.0;
const PANEL: f64 = 220.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 30.0;
const PLOT_W: f64 = WIDTH - MARGIN_LEFT - 20.0;
const PLOT_H: f64 = PANEL - MARGIN_TOP - 40.0;

fn render(series: &BTreeMap<String, Vec<(f64, f64)>>) -> String {
    let height = PANEL * series.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
"#
    );
    for (i, (name, points)) in series.iter().enumerate() {
        panel(&mut svg, i as f64 * PANEL, name, points);
    }
    svg.push_str("</svg>\n");
    svg
}

fn bounds(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

fn panel(svg: &mut String, top: f64, name: &str, points: &[(f64, f64)]) {
    let (x0, x1) = bounds(points.iter().map(|p| p.0));
    let (y0, y1) = bounds(points.iter().map(|p| p.1));
    let sx = |x: f64| MARGIN_LEFT + (x - x0) / (x1 - x0) * PLOT_W;
    let sy = |y: f64| top + MARGIN_TOP + (1.0 - (y - y0) / (y1 - y0)) * PLOT_H;
    let bottom = top + MARGIN_TOP + PLOT_H;
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN_LEFT}" y="{}" font-size="13" font-weight="bold">{name}</text>"#,
        top + 18.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{MARGIN_LEFT}" y="{}" width="{PLOT_W}" height="{PLOT_H}" fill="none" stroke="#999"/>"##,
        top + MARGIN_TOP
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let (x, y) = (x0 + f * (x1 - x0), y0 + f * (y1 - y0));
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            sx(x),
            bottom + 14.0,
            short(x)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            MARGIN_LEFT - 6.0,
            sy(y) + 4.0,
            short(y)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">step</text>"#,
        MARGIN_LEFT + PLOT_W / 2.0,
        bottom + 30.0
    );
    let path: Vec<String> = points
        .iter()
        .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
        .collect();
    if points.len() == 1 {
        let _ = writeln!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#1f77b4"/>"##,
            sx(points[0].0),
            sy(points[0].1)
        );
    } else {
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{}"/>"##,
            path.join(" ")
        );
    }
}

/// A compact tick label: 0.00123 -> 1.23e-3, 2500 -> 2500, 3.14159 -> 3.14.
fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numeric_series_and_names_bad_lines() {
        let text = "{\"step\": 1, \"loss\": 10.0, \"lr\": 0.001}\n{\"step\": 2, \"loss\": 9.0, \"lr\": 0.002}\n{\"step\": 2, \"eval_loss\": 8.5}\n";
        let series = read_series(text, "m.jsonl").unwrap();
        assert_eq!(series["loss"], vec![(1.0, 10.0), (2.0, 9.0)]);
        assert_eq!(series["eval_loss"], vec![(2.0, 8.5)]);
        assert!(!series.contains_key("step"));
        let err = read_series("{\"step\": 1}\nnot json\n", "m.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("m.jsonl: line 2"));
        let svg = render(&series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 1);
    }
}
