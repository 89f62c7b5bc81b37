//! The GPU backends' code path, checked without a GPU. A `--features wgpu` build runs the model
//! the way CUDA does: Burn's fusion and autotune over CubeCL kernels, and the composed kernels
//! (attention, cross-entropy, dropout, AdamW) the GPU backends take where the CPU backend has its
//! own. Where no GPU exists, wgpu can still find a software adapter (Mesa's lavapipe, which CI
//! installs): slow, but it runs the same kernels, so their results can be compared:
//! - inference on wgpu gives the Hugging Face outputs of the golden case, padded rows included;
//! - f32 pre-training on wgpu logs the CPU backend's losses and gradient norms step by step
//!   (dropout off: both then compute one function from the same weights and batches);
//! - f16 compute over f32 master weights (the casts, the loss scale) on that path trains near
//!   f32;
//! - the GPU backends' layer norm (CubeCL kernels of berthash's own) gives the CPU's output and
//!   gradients, and their attention the CPU's without dropout and the composed attention's with
//!   it (the same mask from the same seed);
//! - one masked-LM step's gradients on wgpu equal the CPU backend's parameter by parameter (the
//!   GPU backends' own gradients: sums cut into blocks, rows picked by index scattered in
//!   parallel), and so do the optimizer's flat gradient vectors and their norm; each backend's
//!   AdamW update (gathered, updated and cut back into parameters) is AdamW's formula applied
//!   to its gradients;
//! - the autotune results are kept in the kernel cache `BERTHASH_KERNEL_CACHE` names.
//!
//! Without a usable wgpu adapter the tests print why and pass, unless `BERTHASH_REQUIRE_WGPU` is
//! set (CI sets it): then they fail.
#![cfg(feature = "wgpu")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use berthash_model::weights::TensorFile;
use common::{assert_golden_outputs, berthash, golden, s};

/// Whether wgpu starts here (asked once for all the tests); a missing adapter fails the test
/// where it is required.
fn wgpu_usable() -> bool {
    static STARTED: OnceLock<Result<(), String>> = OnceLock::new();
    let started = STARTED.get_or_init(probe_wgpu);
    let Err(why) = started else {
        return true;
    };
    assert!(
        std::env::var_os("BERTHASH_REQUIRE_WGPU").is_none(),
        "BERTHASH_REQUIRE_WGPU is set and wgpu did not start: {why}"
    );
    eprintln!("skipped: wgpu did not start here ({why})");
    false
}

/// One tiny inference on wgpu.
const TINY_INFERENCE: &[&str] = &[
    "bench",
    "--backend",
    "wgpu",
    "--size",
    "femto",
    "--phase",
    "infer",
    "--batch",
    "1",
    "--seq",
    "8",
    "--steps",
    "1",
    "--warmup",
    "0",
    "--in-process",
    "--json",
];

/// [`TINY_INFERENCE`]'s error output when it fails.
fn probe_wgpu() -> Result<(), String> {
    let probe = berthash(TINY_INFERENCE);
    if probe.status.success() {
        return Ok(());
    }
    Err(String::from_utf8_lossy(&probe.stderr).trim().to_string())
}

#[test]
fn inference_on_wgpu_matches_hugging_face() {
    if !wgpu_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (head, keys) in [
        ("cls", &["last_hidden_state", "pooler_output", "logits"][..]),
        ("mlm", &["last_hidden_state", "logits"][..]),
    ] {
        let out = dir.path().join(format!("{head}.safetensors"));
        let output = berthash(&[
            "forward",
            "--backend",
            "wgpu",
            "--model",
            s(&golden().join(head)),
            "--inputs",
            s(&golden().join("inputs.json")),
            "--output",
            s(&out),
        ]);
        assert!(
            output.status.success(),
            "{head}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_golden_outputs(&TensorFile::read(&out).unwrap(), head, keys);
    }
}

/// `pretrain` of femto for `steps` steps at batch 4, dropout off, every loss logged; returns its
/// output and its run directory.
fn pretrain(dir: &Path, backend: &str, precision: &str, steps: &str) -> (Output, PathBuf) {
    let config = dir.join("no-dropout.toml");
    std::fs::write(
        &config,
        "[model]\nhidden_dropout_prob = 0.0\nattention_probs_dropout_prob = 0.0\n",
    )
    .unwrap();
    let out = dir.join(format!("{backend}-{precision}"));
    let output = berthash(&[
        "pretrain",
        "--size",
        "femto",
        "--config",
        s(&config),
        "--backend",
        backend,
        "--precision",
        precision,
        "--max-steps",
        steps,
        "--batch-size",
        "4",
        "--warmup-steps",
        "1",
        "--log-every",
        "1",
        "--save-every",
        "0",
        "--eval-every",
        "0",
        "--out",
        s(&out),
    ]);
    (output, out)
}

/// The (loss, gradient norm) of each step of an 8-step run.
fn losses(dir: &Path, backend: &str, precision: &str) -> Vec<(f64, f64)> {
    let (output, out) = pretrain(dir, backend, precision, "8");
    assert!(
        output.status.success(),
        "{backend} {precision}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<(f64, f64)> = metrics
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|record| record["kind"] == "train")
        .map(|record| {
            (
                record["loss"].as_f64().unwrap(),
                record["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(steps.len(), 8, "{backend} {precision}: {metrics}");
    steps
}

/// The largest relative difference between two runs' losses and between their gradient norms.
fn max_rel_diff(a: &[(f64, f64)], b: &[(f64, f64)]) -> (f64, f64) {
    let rel = |x: f64, y: f64| (x - y).abs() / y.abs();
    a.iter().zip(b).fold((0.0, 0.0), |(loss, norm), (x, y)| {
        (loss.max(rel(x.0, y.0)), norm.max(rel(x.1, y.1)))
    })
}

#[test]
fn pretraining_on_wgpu_follows_the_cpu_backend() {
    if !wgpu_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cpu = losses(dir.path(), "cpu", "f32");
    let f32 = losses(dir.path(), "wgpu", "f32");
    let f16 = losses(dir.path(), "wgpu", "f16");
    assert!(
        f16.iter()
            .all(|(loss, norm)| loss.is_finite() && norm.is_finite()),
        "{f16:?}"
    );
    // Summation orders differ between the backends' kernels: about 1e-7 relative is seen.
    let (loss, norm) = max_rel_diff(&f32, &cpu);
    assert!(
        loss < 1e-4 && norm < 1e-3,
        "wgpu f32 vs cpu: loss {loss:e}, grad norm {norm:e}\n{f32:?}\n{cpu:?}"
    );
    // Half-precision activations: about 5e-5 relative on the loss over these steps.
    let (loss, norm) = max_rel_diff(&f16, &f32);
    assert!(
        loss < 1e-3 && norm < 2e-2,
        "wgpu f16 vs f32: loss {loss:e}, grad norm {norm:e}\n{f16:?}\n{f32:?}"
    );
    // The run learns: the last step's loss is below the first's in both.
    assert!(f32[7].0 < f32[0].0 && f16[7].0 < f16[0].0);
}

/// wgpu's WGSL kernels have no bf16: the run is refused, naming the precisions that work, before
/// its directory exists.
#[test]
fn bf16_on_wgpu_is_refused_before_the_run_starts() {
    if !wgpu_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (output, out) = pretrain(dir.path(), "wgpu", "bf16", "1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot compute in bf16 on this device; it can in f32"),
        "{stderr}"
    );
    assert!(!out.exists(), "{} was created", out.display());
}

/// The autotune results land in `BERTHASH_KERNEL_CACHE`, in the directory of the backend and
/// device, and the next run says it found them.
#[test]
fn tuned_kernels_are_kept_where_the_variable_says() {
    if !wgpu_usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berthash"))
            .args(TINY_INFERENCE)
            .env("BERTHASH_KERNEL_CACHE", dir.path())
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let first = run();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let cache = dir.path().join("wgpu-default-adapter");
    assert!(
        stderr.contains(&format!("kept in {}", cache.display()))
            && stderr.contains("nothing is cached yet"),
        "{stderr}"
    );
    assert!(
        cache.join("autotune").is_dir(),
        "no autotune results in {}",
        cache.display()
    );
    let second = run();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        second.status.success() && stderr.contains("fast for those cached there"),
        "{stderr}"
    );
}

/// One masked-LM training step without dropout, read back in the model's order.
struct MlmStep {
    /// Every parameter's gradient.
    grads: Vec<Vec<f32>>,
    /// The optimizer's gradient vectors (one per weight-decay group) and their clipped norm.
    gathered: Vec<Vec<f32>>,
    norm: f32,
    /// Every parameter before and after the AdamW update (pre-training's hyper-parameters,
    /// lr [`LR`], the gradients clipped to norm 1), and whether it is decayed.
    initial: Vec<Vec<f32>>,
    updated: Vec<Vec<f32>>,
    decayed: Vec<bool>,
}

const LR: f64 = 1e-3;

impl MlmStep {
    /// The largest difference between the update and AdamW's first update computed here in
    /// f64 from the step's own gradients and norm: `p (1 - lr wd) - lr g / (|g| + eps)`, with
    /// `g` the clipped gradient (at step 1 the bias-corrected moments are `g` and `g^2`).
    fn update_error(&self) -> f64 {
        let config = berthash_train::OptimizerConfig::pretraining();
        let coef = (1.0 / (f64::from(self.norm) + 1e-6)).min(1.0);
        let mut worst = 0f64;
        for (((p0, p1), g), &decayed) in self
            .initial
            .iter()
            .zip(&self.updated)
            .zip(&self.grads)
            .zip(&self.decayed)
        {
            let decay = if decayed {
                1.0 - LR * config.weight_decay
            } else {
                1.0
            };
            for ((&p0, &p1), &g) in p0.iter().zip(p1).zip(g) {
                let g = f64::from(g) * coef;
                let expected = f64::from(p0) * decay - LR * g / (g.abs() + config.eps);
                worst = worst.max((f64::from(p1) - expected).abs());
            }
        }
        worst
    }
}

/// [`MlmStep`] from weights seeded on the host (the same on every backend) and one batch: token
/// ids from a small range (each repeated many times), both token types, padded rows, masked
/// positions in no order.
fn mlm_step<B: berthash_kernels::TrainBackend>(device: &B::Device) -> MlmStep {
    use berthash_model::init::Initializer;
    use berthash_model::{BertHashConfig, BertHashForMaskedLM, BertInput};
    use berthash_train::clip::clip_grad_norm;
    use berthash_train::{AdamW, OptimizerConfig};
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    /// Each parameter's gradient in `grads`, or its value where `grads` is `None`.
    struct Read<'a> {
        grads: Option<&'a GradientsParams>,
        out: Vec<Vec<f32>>,
    }
    impl<B: burn::tensor::backend::AutodiffBackend> ModuleVisitor<B> for Read<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let tensor = match self.grads {
                Some(grads) => grads
                    .get::<B::InnerBackend, D>(param.id)
                    .expect("every parameter has a gradient"),
                None => param.val().inner(),
            };
            self.out.push(values(tensor));
        }
    }
    fn values<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
        tensor.into_data().convert::<f32>().to_vec().unwrap()
    }

    // Dropout off: the backends draw their masks differently.
    let config = BertHashConfig {
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..BertHashConfig::femto()
    };
    let model: BertHashForMaskedLM<B> = BertHashForMaskedLM::new(
        &config,
        Default::default(),
        &mut Initializer::new(7, config.initializer_range, device),
    );
    let [batch, seq] = [4, 16];
    let ids: Vec<i64> = (0..batch * seq).map(|i| 1 + (i * 7 % 23) as i64).collect();
    let types: Vec<i64> = (0..batch * seq).map(|i| ((i % seq) >= 9) as i64).collect();
    let mask: Vec<i64> = (0..batch * seq)
        .map(|i| (i / seq != 2 || i % seq < 11) as i64)
        .collect();
    let positions: Vec<i64> = vec![60, 3, 17, 40, 8, 33, 51, 26, 1, 47];
    let labels: Vec<i64> = positions.iter().map(|p| p * 131 % 30000).collect();
    let int2 =
        |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [batch, seq]), device);
    let int1 = |v: Vec<i64>| {
        let n = v.len();
        Tensor::<B, 1, Int>::from_data(TensorData::new(v, [n]), device)
    };
    let input = BertInput {
        input_ids: int2(ids),
        token_type_ids: Some(int2(types)),
        attention_mask: Some(int2(mask)),
    };
    let (loss, _) = model.loss(input, int1(positions), int1(labels));
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut read = Read {
        grads: Some(&grads),
        out: Vec::new(),
    };
    model.visit(&mut read);
    let grads_read = read.out;
    let mut read = Read {
        grads: None,
        out: Vec::new(),
    };
    model.visit(&mut read);
    let initial = read.out;
    let mut optim = AdamW::<B>::new(OptimizerConfig::pretraining(), &model);
    let decayed = berthash_model::names::param_names::<B, _>(&model)
        .iter()
        .map(|p| !berthash_train::optim::is_no_decay(&p.name))
        .collect();
    let gathered = optim.gather(&model, grads);
    let gathered_read = gathered.vectors().cloned().map(values).collect();
    let clipped = clip_grad_norm(&gathered, 1.0, Some(1.0));
    let norm = clipped.norm.into_scalar().to_f32();
    let model = optim.step(LR, model, gathered, clipped.grad_scale);
    let mut read = Read {
        grads: None,
        out: Vec::new(),
    };
    model.visit(&mut read);
    MlmStep {
        grads: grads_read,
        gathered: gathered_read,
        norm,
        initial,
        updated: read.out,
        decayed,
    }
}

/// The largest difference between `reference` and `other`, and the largest magnitude in
/// `reference` (at least 1e-6), which the tests' bounds are relative to.
fn diff_and_scale(reference: &[f32], other: &[f32]) -> (f32, f32) {
    let scale = reference.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let diff = reference
        .iter()
        .zip(other)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    (diff, scale)
}

/// Sets CubeCL's autotune cache, which would otherwise be kept under `target/` of the crate
/// being tested, to a temporary folder (once per process; the first test to run sets it).
fn autotune_cache_in_a_temporary_folder() -> tempfile::TempDir {
    use burn::cubecl::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
    let cache = tempfile::tempdir().unwrap();
    let mut storage = CubeClRuntimeConfig::storage().lock();
    if storage.is_none() {
        let mut config = CubeClRuntimeConfig::default();
        config.autotune.cache = CacheConfig::File(cache.path().to_path_buf());
        *storage = Some(std::sync::Arc::new(config));
    }
    cache
}

/// A layer norm's output and its input's, weight's and bias's gradients under autodiff, for
/// `x` `[rows, width]` and the output's gradient `grad`.
fn layer_norm_and_grads<B: berthash_kernels::TrainBackend>(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    grad: &[f32],
    device: &B::Device,
) -> [Vec<f32>; 4] {
    use burn::prelude::*;
    let width = gamma.len();
    let rows = x.len() / width;
    let tensor = |v: &[f32], shape: Vec<usize>| {
        Tensor::<B, 2>::from_data(burn::tensor::TensorData::new(v.to_vec(), shape), device)
    };
    let x = tensor(x, vec![rows, width]).require_grad();
    let gamma = tensor(gamma, vec![1, width])
        .reshape([width])
        .require_grad();
    let beta = tensor(beta, vec![1, width]).reshape([width]).require_grad();
    let y = berthash_kernels::layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-12);
    let grads = (y.clone() * tensor(grad, vec![rows, width]))
        .sum()
        .backward();
    let values = |t: Tensor<B::InnerBackend, 2>| t.into_data().to_vec::<f32>().unwrap();
    [
        values(y.inner()),
        values(x.grad(&grads).unwrap()),
        values(gamma.grad(&grads).unwrap().unsqueeze()),
        values(beta.grad(&grads).unwrap().unsqueeze()),
    ]
}

/// The GPU backends' layer norm (CubeCL kernels: one unit per row, column sums over blocks of
/// rows) gives the CPU backend's output and gradients, for a row count with no divisor (the
/// last block of the column sums is short), narrow and wide rows, and fewer rows than a block.
#[test]
fn the_layer_norm_on_wgpu_equals_the_cpus() {
    if !wgpu_usable() {
        return;
    }
    use burn::backend::{Autodiff, Flex, Wgpu};
    let _cache = autotune_cache_in_a_temporary_folder();
    for (rows, width) in [(4919, 13), (300, 128), (5, 80)] {
        // Rows off centre, as a residual stream is, and a weight near 1.
        let wave = |n: usize, k: f32, offset: f32| -> Vec<f32> {
            (0..n)
                .map(|i| offset + (i as f32 * k).sin() * 2.0)
                .collect()
        };
        let x = wave(rows * width, 0.37, 3.0);
        let gamma = wave(width, 1.3, 1.0)
            .iter()
            .map(|v| 0.5 + v / 6.0)
            .collect::<Vec<_>>();
        let beta = wave(width, 0.7, 0.0);
        let grad = wave(rows * width, 0.11, 0.0);
        let cpu =
            layer_norm_and_grads::<Autodiff<Flex>>(&x, &gamma, &beta, &grad, &Default::default());
        let gpu =
            layer_norm_and_grads::<Autodiff<Wgpu>>(&x, &gamma, &beta, &grad, &Default::default());
        for (name, (c, g)) in ["y", "x grad", "gamma grad", "beta grad"]
            .iter()
            .zip(cpu.iter().zip(&gpu))
        {
            assert_eq!(c.len(), g.len(), "{rows} x {width}: {name}");
            let (diff, scale) = diff_and_scale(c, g);
            eprintln!("{rows} x {width}: {name}: {diff:e} at scale {scale:e}");
            assert!(
                diff <= 1e-4 * scale,
                "{rows} x {width}: {name} differs by {diff} at scale {scale}"
            );
        }
    }
}

/// An attention's context, probabilities and the gradients of Q, K and V, and its dropout mask,
/// by the backend's own kernels or (`composed`) by the composed ones, after seeding the
/// backend's RNG with the same seed.
fn attention_outputs<B: berthash_kernels::Kernels>(
    inputs: &AttentionInputs,
    config: berthash_kernels::AttentionConfig,
    composed: bool,
) -> (Vec<Vec<f32>>, Option<B::DropoutMask>) {
    use berthash_kernels::attention::{training_backward_composed, training_forward_composed};
    use burn::prelude::*;
    use burn::tensor::ops::FloatTensor;
    use burn::tensor::{TensorMetadata, TensorPrimitive};
    let [batch, seq, width] = inputs.shape;
    let device = &Default::default();
    let primitive = |v: &[f32], shape: Vec<usize>| {
        let flat = Tensor::<B, 1>::from_floats(v, device)
            .into_primitive()
            .tensor();
        B::float_reshape(flat, Shape::from(shape))
    };
    let qkv = || {
        inputs
            .qkv
            .clone()
            .map(|v| primitive(&v, vec![batch, seq, width]))
    };
    let bias = primitive(&inputs.key_bias, vec![batch, seq]);
    let grad = primitive(&inputs.grad, vec![batch, seq, width]);
    B::seed(device, 11);
    let (context, probs, mask) = if composed {
        training_forward_composed::<B>(qkv(), Some(bias), config)
    } else {
        B::attention_forward(qkv(), Some(bias), config)
    };
    let grads = if composed {
        training_backward_composed::<B>(qkv(), probs.clone(), mask.clone(), config, grad)
    } else {
        B::attention_backward(qkv(), probs.clone(), mask.clone(), config, grad)
    };
    let values = |p: FloatTensor<B>| {
        let flat = B::float_reshape(p.clone(), Shape::new([p.shape().num_elements()]));
        Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(flat))
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap()
    };
    let mut out = vec![values(context), values(probs)];
    out.extend(grads.map(values));
    (out, mask)
}

/// Q, K, V and the context's gradient `[batch, seq, width]`, and a key bias `[batch, seq]`.
struct AttentionInputs {
    shape: [usize; 3],
    qkv: [Vec<f32>; 3],
    key_bias: Vec<f32>,
    grad: Vec<f32>,
}

impl AttentionInputs {
    /// Values of a few units, the last keys of the second row padded.
    fn new(batch: usize, seq: usize, width: usize) -> Self {
        let wave = |k: f32| -> Vec<f32> {
            (0..batch * seq * width)
                .map(|i| (i as f32 * k).sin() * 1.5)
                .collect()
        };
        let key_bias = (0..batch * seq)
            .map(|i| {
                if i / seq == 1 && i % seq >= seq - 2 {
                    f32::MIN
                } else {
                    0.0
                }
            })
            .collect();
        Self {
            shape: [batch, seq, width],
            qkv: [wave(0.37), wave(0.53), wave(0.71)],
            key_bias,
            grad: wave(0.13),
        }
    }
}

/// The GPU backends' attention (one operation each way, the softmax a CubeCL kernel) gives the
/// CPU's context and gradients without dropout, and with dropout the composed attention's on
/// the same backend from the same seed: the same mask, context and gradients.
#[test]
fn the_attention_on_wgpu_equals_the_cpus_and_the_composed_one() {
    if !wgpu_usable() {
        return;
    }
    use berthash_kernels::AttentionConfig;
    use burn::backend::{Flex, Wgpu};
    let _cache = autotune_cache_in_a_temporary_folder();
    let names = ["context", "probs", "query grad", "key grad", "value grad"];
    let compare = |what: &str, a: &[Vec<f32>], b: &[Vec<f32>], bound: f32| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (name, (a, b)) in names.iter().zip(a.iter().zip(b)) {
            assert_eq!(a.len(), b.len(), "{what}: {name}");
            let (diff, scale) = diff_and_scale(a, b);
            eprintln!("{what}: {name}: {diff:e} at scale {scale:e}");
            assert!(
                diff <= bound * scale,
                "{what}: {name} differs by {diff} at scale {scale}"
            );
        }
    };
    for (batch, seq, width, heads) in [(3, 7, 8, 2), (2, 33, 64, 4)] {
        let inputs = AttentionInputs::new(batch, seq, width);
        let config = |dropout| AttentionConfig {
            heads,
            scale: 1.0 / ((width / heads) as f64).sqrt(),
            dropout,
        };
        let what = format!("{batch} x {seq} x {width}, {heads} heads");
        let (cpu, _) = attention_outputs::<Flex>(&inputs, config(0.0), false);
        let (gpu, _) = attention_outputs::<Wgpu>(&inputs, config(0.0), false);
        compare(&format!("{what}, wgpu against the CPU"), &cpu, &gpu, 1e-5);
        let mask = |mask: Option<_>| {
            use burn::tensor::{ops::FloatTensorOps, Shape, TensorMetadata, TensorPrimitive};
            let mask: burn::tensor::ops::FloatTensor<Wgpu> = mask.expect("a mask");
            let flat =
                <Wgpu>::float_reshape(mask.clone(), Shape::new([mask.shape().num_elements()]));
            let mask: burn::tensor::Tensor<Wgpu, 1> =
                burn::tensor::Tensor::from_primitive(TensorPrimitive::Float(flat));
            mask.into_data().to_vec::<f32>().unwrap()
        };
        let (composed, composed_mask) = attention_outputs::<Wgpu>(&inputs, config(0.3), true);
        let (own, own_mask) = attention_outputs::<Wgpu>(&inputs, config(0.3), false);
        let (composed_mask, own_mask) = (mask(composed_mask), mask(own_mask));
        assert_eq!(composed_mask, own_mask, "{what}: the dropout masks");
        let kept = own_mask.iter().filter(|&&m| m == 1.0).count() as f32;
        let kept = kept / own_mask.len() as f32;
        assert!(
            (0.6..0.8).contains(&kept),
            "{what}: dropout 0.3 kept {kept}"
        );
        compare(
            &format!("{what}, dropout 0.3, against the composed"),
            &composed,
            &own,
            1e-5,
        );
    }
}

#[test]
fn one_steps_gradients_and_update_on_wgpu_equal_the_cpus() {
    if !wgpu_usable() {
        return;
    }
    use burn::backend::{Autodiff, Flex, Wgpu};
    let _cache = autotune_cache_in_a_temporary_folder();
    let cpu = mlm_step::<Autodiff<Flex>>(&Default::default());
    let gpu = mlm_step::<Autodiff<Wgpu>>(&Default::default());
    // Relative to the largest element (sums of many terms cancel in places), at least 1e-6: the
    // key projection's bias has a gradient of 0 in exact arithmetic (softmax ignores what is
    // added to every score of a row), rounding noise of 1e-12 here. The backends' summation
    // orders differ by up to 1e-4 of that; a lost or doubled term, 1e-2.
    let compare = |what: &str, cpu: &[Vec<f32>], gpu: &[Vec<f32>]| {
        assert_eq!(cpu.len(), gpu.len(), "{what}");
        for (i, (c, g)) in cpu.iter().zip(gpu).enumerate() {
            assert_eq!(c.len(), g.len(), "{what} {i}");
            let (diff, scale) = diff_and_scale(c, g);
            eprintln!(
                "{what} {i} ({} values): {diff:e} at scale {scale:e}",
                c.len()
            );
            assert!(
                diff <= 1e-3 * scale,
                "{what} {i} ({} values): differs by {diff} at scale {scale}",
                c.len()
            );
        }
    };
    compare("gradient", &cpu.grads, &gpu.grads);
    compare("gathered gradients", &cpu.gathered, &gpu.gathered);
    let norm_diff = (cpu.norm - gpu.norm).abs() / cpu.norm;
    eprintln!(
        "gradient norm: cpu {} wgpu {} ({norm_diff:e})",
        cpu.norm, gpu.norm
    );
    assert!(
        norm_diff < 1e-4,
        "gradient norm: cpu {} wgpu {}",
        cpu.norm,
        gpu.norm
    );
    // Each backend's update from its own gradients, against the formula: an update moves a
    // weight by about lr (1e-3), and f32 rounding of a weight near 1 is 6e-8. (The two backends'
    // updates differ by more where a gradient is near eps, 1e-6, and its rounding noise moves
    // g / (|g| + eps) by percents.)
    for (backend, step) in [("cpu", &cpu), ("wgpu", &gpu)] {
        let error = step.update_error();
        eprintln!("{backend}: update off AdamW's by {error:e} at most");
        assert!(error < 1e-6, "{backend}: update off AdamW's by {error}");
    }
}
