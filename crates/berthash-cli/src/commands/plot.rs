//! `berthash plot RUN…`: a run's curves from `metrics.jsonl`, several runs overlaid (a sweep's
//! seeds, a CPU and a GPU run), as SVG or PNG. Panels: the loss (training and held-out/dev on
//! one axis; a log scale when it falls over more than a decade), the learning rate, the gradient norm, and each evaluation metric;
//! bookkeeping keys (token counts, sample counts) are not plotted. Drawn with `plotters`; PNG
//! through `resvg` with an embedded DejaVu Sans, so no system font is needed.
//! `--tensorboard` converts a run's `metrics.jsonl` to a TensorBoard event file instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use berthash_train::log::{read_metrics, Record};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::Shift;
use plotters::prelude::*;

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// Run directories (with metrics.jsonl) or metrics.jsonl files; several are overlaid.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Output file, `.svg` or `.png` (default: the first run's curves.svg).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the run's metrics as a TensorBoard event file in the run directory instead.
    #[arg(long)]
    pub tensorboard: bool,
}

/// Evaluation keys that are counts or restate another curve.
const NOT_PLOTTED: &[&str] = &["eval_samples", "eval_masked_tokens", "eval_perplexity"];
const FONT: &[u8] = include_bytes!("../../../../data/fonts/DejaVuSans.ttf");
const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A panel: its title and its curves, each a label and (step, value) points.
type Panels = BTreeMap<(u8, String), BTreeMap<String, Vec<(f64, f64)>>>;

pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    let files: Vec<(PathBuf, PathBuf)> = args.runs.iter().map(|r| metrics_file(r)).collect();
    if args.tensorboard {
        let [(metrics, dir)] = &files[..] else {
            bail!("--tensorboard converts one run at a time");
        };
        let events = berthash_train::log::metrics_to_tensorboard(metrics, dir)?;
        println!("wrote {}", events.display());
        return Ok(());
    }
    let mut panels = Panels::new();
    for (metrics, dir) in &files {
        let name = (files.len() > 1).then(|| run_name(dir));
        add_run(&mut panels, metrics, name.as_deref())?;
    }
    if panels.is_empty() {
        bail!("{}: nothing to plot", files[0].0.display());
    }
    let out = args.out.unwrap_or_else(|| files[0].1.join("curves.svg"));
    let svg = render(&panels)?;
    let bytes = match out.extension().and_then(|e| e.to_str()) {
        Some("svg") => svg.into_bytes(),
        Some("png") => png(&svg)?,
        _ => bail!("--out {}: use a .svg or .png file", out.display()),
    };
    berthash_model::fs::write_atomic(&out, &bytes)?;
    let titles: Vec<&str> = panels.keys().map(|(_, t)| t.as_str()).collect();
    println!("wrote {} ({})", out.display(), titles.join(", "));
    Ok(())
}

/// `RUN/metrics.jsonl` and `RUN`, for a run directory or the file itself.
fn metrics_file(path: &Path) -> (PathBuf, PathBuf) {
    if path.is_dir() {
        (path.join("metrics.jsonl"), path.to_path_buf())
    } else {
        let dir = path.parent().map(PathBuf::from).unwrap_or_default();
        (path.to_path_buf(), dir)
    }
}

fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into())
}

/// Adds a run's curves; `name` prefixes its labels when several runs are overlaid.
fn add_run(panels: &mut Panels, metrics: &Path, name: Option<&str>) -> anyhow::Result<()> {
    let label = |what: &str| name.map_or_else(|| what.to_string(), |n| format!("{n} {what}"));
    let mut add = |order: u8, title: &str, curve: String, point: (u64, f64)| {
        if point.1.is_finite() {
            let panel = panels.entry((order, title.to_string())).or_default();
            panel
                .entry(curve)
                .or_default()
                .push((point.0 as f64, point.1));
        }
    };
    for record in read_metrics(metrics)? {
        match record {
            Record::Train(r) => {
                add(0, "loss", label("train"), (r.step, r.loss));
                add(1, "learning rate", label("lr"), (r.step, r.lr));
                add(
                    2,
                    "gradient norm",
                    label("grad norm"),
                    (r.step, r.grad_norm),
                );
            }
            Record::Eval(r) => {
                for (key, value) in &r.metrics {
                    let curve = label(&r.split);
                    match key.as_str() {
                        "eval_loss" => add(0, "loss", curve, (r.step, *value)),
                        k if NOT_PLOTTED.contains(&k) => {}
                        k => add(
                            3,
                            k.strip_prefix("eval_").unwrap_or(k),
                            curve,
                            (r.step, *value),
                        ),
                    }
                }
            }
        }
    }
    Ok(())
}

const WIDTH: u32 = 900;
const PANEL: u32 = 300;

fn render(panels: &Panels) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = PANEL * panels.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let areas = root.split_evenly((panels.len(), 1));
        for (((_, title), curves), area) in panels.iter().zip(&areas) {
            panel(area, title, curves).map_err(draw_error)?;
        }
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

fn draw_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {e}")
}

/// A readable tick label: three significant digits, no trailing zeros.
fn tick(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&magnitude) {
        format!("{value:.1e}")
    } else {
        let decimals = (2 - magnitude.log10().floor() as i32).max(0) as usize;
        let text = format!("{value:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

/// The value range with a margin (a flat curve gets one around its value).
fn span(curves: &BTreeMap<String, Vec<(f64, f64)>>, f: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let values = curves.values().flatten().map(f);
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    curves: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (x0, x1) = span(curves, |p| p.0);
    let (y0, y1) = span(curves, |p| p.1);
    let nonnegative = curves.values().flatten().all(|p| p.1 >= 0.0);
    let y0 = if nonnegative { y0.max(0.0) } else { y0 };
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64);
    // A loss falling over more than a decade reads better on a log scale.
    let positive = curves.values().flatten().all(|p| p.1 > 0.0);
    if title == "loss" && positive && y1 > 10.0 * y0.max(f64::MIN_POSITIVE) {
        let (lo, hi) = (y0.max(y1 / 1e6).max(f64::MIN_POSITIVE), y1);
        let mut chart = chart.build_cartesian_2d(x0.max(0.0)..x1, (lo..hi).log_scale())?;
        draw_curves(&mut chart, curves)
    } else {
        let mut chart = chart.build_cartesian_2d(x0.max(0.0)..x1, y0..y1)?;
        draw_curves(&mut chart, curves)
    }
}

/// The grid (readable ticks) and the curves, with a legend.
fn draw_curves<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    curves: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("step")
        .label_style(("sans-serif", 15))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()?;
    for (i, (label, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        let legend =
            move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2));
        if let [point] = points[..] {
            // A single point draws no line: a marker shows it.
            let dot = Circle::new(point, 4, color.filled());
            chart
                .draw_series([dot])?
                .label(label.as_str())
                .legend(legend);
        } else {
            let line = LineSeries::new(points.iter().copied(), style);
            chart
                .draw_series(line)?
                .label(label.as_str())
                .legend(legend);
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// The SVG rasterised with the embedded font.
fn png(svg: &str) -> anyhow::Result<Vec<u8>> {
    let mut fonts = resvg::usvg::fontdb::Database::new();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let options = resvg::usvg::Options {
        fontdb: Arc::new(fonts),
        ..Default::default()
    };
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("reading the drawn SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("allocating the PNG")?;
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the PNG")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short_and_readable() {
        let ticks: Vec<String> = [0.0, 300.0, 0.5, 0.0317, 9.6, -0.183, 2.5e-4, 123456.0]
            .into_iter()
            .map(tick)
            .collect();
        assert_eq!(
            ticks,
            ["0", "300", "0.5", "0.0317", "9.6", "-0.183", "2.5e-4", "1.2e5"]
        );
    }

    #[test]
    fn train_and_held_out_loss_share_a_panel_and_counts_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.jsonl");
        let lines = [
            r#"{"kind":"train","step":1,"loss":10.0,"lr":0.001,"grad_norm":1.0,"tokens_per_s":5.0,"tokens_seen":8,"elapsed_s":1.0}"#,
            r#"{"kind":"train","step":2,"loss":9.0,"lr":0.002,"grad_norm":0.9,"tokens_per_s":5.0,"tokens_seen":16,"elapsed_s":2.0}"#,
            r#"{"kind":"eval","step":2,"split":"held_out","eval_loss":8.5,"eval_accuracy":0.1,"eval_masked_tokens":40.0}"#,
        ];
        std::fs::write(&metrics, lines.join("\n")).unwrap();
        let mut panels = Panels::new();
        add_run(&mut panels, &metrics, Some("a")).unwrap();
        let titles: Vec<&str> = panels.keys().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            titles,
            ["loss", "learning rate", "gradient norm", "accuracy"]
        );
        let loss = &panels[&(0, "loss".to_string())];
        assert_eq!(loss["a train"], vec![(1.0, 10.0), (2.0, 9.0)]);
        assert_eq!(loss["a held_out"], vec![(2.0, 8.5)]);
        let svg = render(&panels).unwrap();
        // Two-point curves are lines; the single held-out points are markers.
        assert!(svg.matches("<polyline").count() >= 3);
        assert!(svg.contains("<circle"));
    }
}
