//! `--backend cuda|wgpu` where that backend cannot run: `pretrain` and `finetune` stop with one
//! clean line and exit status 1 before creating their run directory (no panic, no `RecvError`).
//!
//! Which case a build meets depends on its features and the machine:
//! - built without the backend (a plain `cargo test`): the "built without" error;
//! - built with `--features cuda` on a machine without an NVIDIA device (CI: `cargo test -p
//!   berthash-cli --features cuda --test backend_probe`): the probe's error;
//! - built with `--features cuda` where an NVIDIA device exists: two femto steps must train.
//!
//! wgpu may find a software adapter (Mesa's lavapipe) on a machine without a GPU; a wgpu build
//! therefore accepts either outcome, but never a panic or a half-made run directory, unless
//! `BERTHASH_REQUIRE_WGPU` is set (CI installs lavapipe and sets it): then both must train.
//! `bench --host-only` needs no adapter at all (wgpu's no-op device): a wgpu build must run it.

use std::path::{Path, PathBuf};
use std::process::Output;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs in the temporary directory: CubeCL keeps its autotune results in `target/` beside the
/// nearest `Cargo.toml` above the working directory, which would be this crate's.
fn berthash(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_berthash"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn pretrain_args<'a>(backend: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "pretrain",
        "--size",
        "femto",
        "--backend",
        backend,
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--warmup-steps",
        "1",
        "--save-every",
        "0",
        "--eval-every",
        "0",
        "--out",
        out,
    ]
}

fn finetune_args<'a>(
    backend: &'a str,
    config: &'a str,
    data: &'a str,
    out: &'a str,
) -> Vec<&'a str> {
    vec![
        "finetune",
        "--config",
        config,
        "--data-dir",
        data,
        "--scratch",
        "femto",
        "--backend",
        backend,
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--max-eval-samples",
        "8",
        "--out",
        out,
    ]
}

/// Exit status 1, one line on stderr (`error: ` + a message containing `expect`), nothing on
/// stdout, no panic, and `out` not created. With `runtime_warnings`, the error line may come
/// with the runtime's own WARN log lines (a runtime that started and then failed logs its device
/// thread's failure; the driver checks before it cover the usual cases).
fn assert_clean_failure(output: &Output, out: &Path, expect: &str, runtime_warnings: bool) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let context = format!(
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status.code()
    );
    assert_eq!(output.status.code(), Some(1), "{context}");
    let mut lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if runtime_warnings {
        lines.retain(|l| !l.contains(" WARN "));
    }
    assert_eq!(lines.len(), 1, "expected one line on stderr: {context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    assert!(lines[0].contains(expect), "expected {expect:?}: {context}");
    for bad in ["panicked", "RecvError", "backtrace"] {
        assert!(!stderr.contains(bad), "{bad} on stderr: {context}");
    }
    assert!(stdout.trim().is_empty(), "{context}");
    assert!(!out.exists(), "{} was created: {context}", out.display());
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn assert_trained(output: &Output, out: &Path) {
    assert!(
        output.status.success(),
        "status {:?}\n{}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.join("summary.json").exists());
}

/// Runs pretrain and finetune on `backend` and checks each against `check`.
fn both_commands(backend: &str, check: impl Fn(&Output, &Path)) {
    let dir = tempfile::tempdir().unwrap();
    let pre = dir.path().join("pre");
    check(
        &berthash(&pretrain_args(backend, pre.to_str().unwrap())),
        &pre,
    );

    let config = repo().join("configs/glue/sst2.toml");
    let data = repo().join("tests/fixtures/glue/SST-2");
    let fine = dir.path().join("fine");
    let args = finetune_args(
        backend,
        config.to_str().unwrap(),
        data.to_str().unwrap(),
        fine.to_str().unwrap(),
    );
    check(&berthash(&args), &fine);
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_not_built_fails_cleanly() {
    both_commands("cuda", |output, out| {
        assert_clean_failure(output, out, "built without the cuda backend", false)
    });
}

#[cfg(not(feature = "wgpu"))]
#[test]
fn wgpu_not_built_fails_cleanly() {
    both_commands("wgpu", |output, out| {
        assert_clean_failure(output, out, "built without the wgpu backend", false)
    });
}

/// Whether the NVIDIA kernel driver exposes a device here (its device files exist).
#[cfg(feature = "cuda")]
fn nvidia_device_present() -> bool {
    Path::new("/dev/nvidiactl").exists() || Path::new("/dev/nvidia0").exists()
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_fails_cleanly_without_a_gpu_and_trains_with_one() {
    if nvidia_device_present() {
        both_commands("cuda", assert_trained);
    } else {
        both_commands("cuda", |output, out| {
            assert_clean_failure(
                output,
                out,
                "--backend cuda cannot run on this machine",
                false,
            )
        });
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_trains_or_fails_cleanly() {
    let required = std::env::var_os("BERTHASH_REQUIRE_WGPU").is_some();
    both_commands("wgpu", |output, out| {
        if output.status.success() || required {
            assert_trained(output, out);
        } else {
            assert_clean_failure(
                output,
                out,
                "--backend wgpu cannot run on this machine",
                true,
            );
        }
    });
}

/// `bench --host-only` runs the step on wgpu's no-op device: any machine, no GPU, no Vulkan
/// loader. Its flags are checked first.
#[cfg(feature = "wgpu")]
#[test]
fn bench_host_only_runs_without_a_gpu() {
    let output = berthash(&[
        "bench",
        "--backend",
        "wgpu",
        "--host-only",
        "--size",
        "femto",
        "--batch",
        "2",
        "--seq",
        "16",
        "--phase",
        "train,infer",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--json",
        "--in-process",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let phases: Vec<&str> = rows.iter().map(|r| r["phase"].as_str().unwrap()).collect();
    assert_eq!(phases, ["train", "infer"], "{rows:?}");
    for row in &rows {
        assert_eq!(row["backend"], "wgpu-noop", "{row}");
        assert!(row["ms_per_step"].as_f64().unwrap() > 0.0, "{row}");
    }
    for (args, expect) in [
        (&["--backend", "cpu"][..], "add --backend wgpu"),
        (
            &["--backend", "wgpu", "--precision", "bf16"],
            "use --precision f32 or f16",
        ),
        (
            &["--backend", "wgpu", "--phase", "data"],
            "drop data from --phase",
        ),
    ] {
        let output = berthash(&[&["bench", "--host-only"][..], args].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expect),
            "{args:?}: {stderr}"
        );
    }
}
