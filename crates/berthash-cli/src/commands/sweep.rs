//! `berthash sweep`: fine-tune over a grid of learning rates and batch sizes, several seeds
//! each, every combination and seed its own resumable run under `--out`; then `sweep.json` and
//! `sweep.md` with the chosen metric at the last and at the best evaluation, per run and per
//! combination (mean, standard deviation, median and best over seeds). Started again, a sweep
//! skips finished runs and resumes an interrupted one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_train::run_dir::{RunDir, CONFIG_JSON, SUMMARY};
use berthash_train::{Checkpoints, Summary};
use serde::Serialize;

use crate::commands::finetune::FinetuneArgs;

/// One run of the sweep.
#[derive(Debug, Serialize)]
struct SweepRun {
    lr: f64,
    batch_size: usize,
    seed: u64,
    run_dir: PathBuf,
    metric: String,
    /// The metric at the last evaluation.
    last: Option<f64>,
    /// The metric at the best evaluation.
    best: Option<f64>,
}

/// One (lr, batch size) combination over its seeds, by the best-evaluation metric.
#[derive(Debug, Serialize)]
struct Combination {
    lr: f64,
    batch_size: usize,
    seeds: usize,
    mean: f64,
    std: f64,
    median: f64,
    best: f64,
}

pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    if args.run.resume || args.run.overwrite {
        bail!("a sweep resumes its unfinished runs by itself: drop --resume/--overwrite");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let task = args
            .task
            .config
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        PathBuf::from(format!("runs/sweep-{task}"))
    });
    let mut runs = Vec::new();
    for lr in axis(&args.lr) {
        for batch in axis(&args.batch_size) {
            for seed in axis(&args.seed) {
                runs.push(run_one(&args, &out, lr, batch, seed)?);
            }
        }
    }
    write_report(&out, &runs)
}

/// A grid axis: its values, or the recipe's value (`None`) when the flag was not given.
fn axis<T: Copy>(values: &[T]) -> Vec<Option<T>> {
    if values.is_empty() {
        vec![None]
    } else {
        values.iter().copied().map(Some).collect()
    }
}

/// Runs (or resumes, or skips when finished) one combination and seed.
fn run_one(
    args: &FinetuneArgs,
    out: &Path,
    lr: Option<f64>,
    batch: Option<usize>,
    seed: Option<u64>,
) -> anyhow::Result<SweepRun> {
    // Named by the axes the grid sets: `lr1e-3-bs32-seed1`.
    let parts: Vec<String> = [
        lr.map(|v| format!("lr{v:e}")),
        batch.map(|v| format!("bs{v}")),
        seed.map(|v| format!("seed{v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let dir = out.join(if parts.is_empty() {
        "run".into()
    } else {
        parts.join("-")
    });
    if !dir.join(SUMMARY).is_file() {
        let mut run = args.clone();
        run.lr = lr.into_iter().collect();
        run.batch_size = batch.into_iter().collect();
        run.seed = seed.into_iter().collect();
        run.out = Some(dir.clone());
        // Resumed from its newest checkpoint; started again if it died before writing one.
        let checkpoints = Checkpoints::new(RunDir::at(&dir).checkpoints(), 1);
        run.run.resume = checkpoints.latest()?.is_some();
        run.run.overwrite = !run.run.resume && dir.join(CONFIG_JSON).is_file();
        eprintln!(
            "== sweep: {}{}",
            dir.display(),
            if run.run.resume { " (resuming)" } else { "" }
        );
        crate::commands::finetune::run(run)?;
    }
    let summary: Summary = read_json(&RunDir::at(&dir).summary())?;
    let config: serde_json::Value = read_json(&dir.join(CONFIG_JSON))?;
    let metric = summary.metric_for_best_model.clone();
    Ok(SweepRun {
        lr: config["optimizer"]["lr"].as_f64().unwrap_or(f64::NAN),
        batch_size: config["train"]["batch_size"].as_u64().unwrap_or(0) as usize,
        seed: config["train"]["seed"].as_u64().unwrap_or(0),
        last: summary.final_eval.get(&metric).copied(),
        best: summary.best_eval.as_ref().map(|b| b.value),
        metric,
        run_dir: dir,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unexpected content", path.display()))
}

fn combinations(runs: &[SweepRun]) -> Vec<Combination> {
    let mut out: Vec<Combination> = Vec::new();
    for run in runs {
        if out
            .iter()
            .any(|c| c.lr == run.lr && c.batch_size == run.batch_size)
        {
            continue;
        }
        let mut values: Vec<f64> = runs
            .iter()
            .filter(|r| r.lr == run.lr && r.batch_size == run.batch_size)
            .filter_map(|r| r.best)
            .collect();
        values.sort_by(f64::total_cmp);
        let n = values.len().max(1) as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        let median = match values.len() {
            0 => f64::NAN,
            len if len % 2 == 1 => values[len / 2],
            len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
        };
        out.push(Combination {
            lr: run.lr,
            batch_size: run.batch_size,
            seeds: values.len(),
            mean,
            std: var.sqrt(),
            median,
            best: values.last().copied().unwrap_or(f64::NAN),
        });
    }
    out
}

/// `sweep.json` and `sweep.md` in `out`.
fn write_report(out: &Path, runs: &[SweepRun]) -> anyhow::Result<()> {
    let combos = combinations(runs);
    let metric = runs.first().map_or("", |r| r.metric.as_str());
    let greater = runs.first().is_none_or(|r| !r.metric.ends_with("loss"));
    let best = combos.iter().filter(|c| c.mean.is_finite()).max_by(|a, b| {
        if greater {
            a.mean.total_cmp(&b.mean)
        } else {
            b.mean.total_cmp(&a.mean)
        }
    });
    let json =
        serde_json::json!({ "metric": metric, "runs": runs, "combinations": combos, "best": best });
    let mut md = format!(
        "| lr | batch size | seeds | {metric} mean | std | median | best |\n|---|---|---|---|---|---|---|\n"
    );
    for c in &combos {
        md.push_str(&format!(
            "| {:e} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |\n",
            c.lr, c.batch_size, c.seeds, c.mean, c.std, c.median, c.best
        ));
    }
    berthash_train::run_dir::write_json(&out.join("sweep.json"), &json)?;
    berthash_model::fs::write_atomic(&out.join("sweep.md"), md.as_bytes())?;
    println!("{md}sweep results: {}", out.join("sweep.json").display());
    Ok(())
}
