//! AdamW against hand-computed values, global-norm clipping, and the weight-decay groups of a
//! real BertHashForMaskedLM.

use berthash_model::names::param_names;
use berthash_model::pretrained::init_model;
use berthash_model::{BertHashConfig, BertHashForMaskedLM, ModelOptions};
use berthash_train::clip::clip_grad_norm;
use berthash_train::{AdamW, OptimizerConfig};
use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

type B = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Toy<B: Backend> {
    weight: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

fn toy(device: &burn::tensor::Device<B>) -> Toy<B> {
    Toy {
        weight: Param::from_tensor(Tensor::from_floats([1.0, -2.0], device)),
        bias: Param::from_tensor(Tensor::from_floats([0.5], device)),
    }
}

/// loss = 3*w0 + 1*w1 + 2*b: constant gradients g_w = (3, 1), g_b = 2.
fn grads(model: &Toy<B>, device: &burn::tensor::Device<B>) -> GradientsParams {
    let x = Tensor::<B, 1>::from_floats([3.0, 1.0], device);
    let loss = model.weight.val().mul(x).sum() + model.bias.val().sum().mul_scalar(2.0);
    GradientsParams::from_grads(loss.backward(), model)
}

fn values(t: Tensor<B, 1>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn assert_close(actual: &[f32], expected: &[f64]) {
    for (a, e) in actual.iter().zip(expected) {
        assert!(
            (f64::from(*a) - e).abs() < 1e-6,
            "{actual:?} != {expected:?}"
        );
    }
}

/// lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.1, no clipping.
fn by_hand() -> OptimizerConfig {
    OptimizerConfig {
        lr: 0.1,
        betas: (0.9, 0.999),
        eps: 1e-8,
        weight_decay: 0.1,
        max_grad_norm: None,
    }
}

#[test]
fn adamw_two_steps_by_hand() {
    let device = Default::default();
    let config = by_hand();
    let mut model = toy(&device);
    let mut optim = AdamW::<B>::new(config, &model);
    assert_eq!(optim.no_decay_names(), ["bias"]);
    assert_eq!(optim.decayed_names(), ["weight"]);

    // Step 1 (t = 1). Weight: decay first, w *= 1 - 0.1*0.1 = 0.99 -> (0.99, -1.98).
    // m = 0.1 g = (0.3, 0.1); v = 0.001 g^2 = (0.009, 0.001); m_hat = g, sqrt(v_hat) = |g|,
    // so the Adam update is lr * sign(g) = 0.1 (up to eps): w = (0.89, -2.08).
    // Bias: no decay, 0.5 - 0.1 = 0.4.
    let g = optim.gather(&model, grads(&model, &device));
    model = optim.step(0.1, model, g, None);
    assert_close(&values(model.weight.val()), &[0.89, -2.08]);
    assert_close(&values(model.bias.val()), &[0.4]);

    // Step 2 (t = 2): w *= 0.99 -> (0.8811, -2.0592). m = 0.9 m + 0.1 g = (0.57, 0.19),
    // bias correction 1 - 0.81 = 0.19 -> m_hat = (3, 1); v = 0.999 v + 0.001 g^2 =
    // (0.017991, 0.001999), correction 1 - 0.999^2 = 0.001999 -> v_hat = (9, 1): update 0.1 again.
    // w = (0.7811, -2.1592); bias 0.4 - 0.1 = 0.3.
    let g = optim.gather(&model, grads(&model, &device));
    model = optim.step(0.1, model, g, None);
    assert_close(&values(model.weight.val()), &[0.7811, -2.1592]);
    assert_close(&values(model.bias.val()), &[0.3]);
    assert_eq!(optim.step_count(), 2);

    // Without bias correction step 2 would move w by 0.1 * 0.57/sqrt(0.017991)... not 0.1:
    // the test above pins the corrected form. The state survives a save/load round trip.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    optim.save(&path).unwrap();
    let mut reloaded = AdamW::<B>::load(optim.config().clone(), &model, &path, &device).unwrap();
    assert_eq!(reloaded.step_count(), 2);
    let (g, h) = (
        optim.gather(&model, grads(&model, &device)),
        reloaded.gather(&model, grads(&model, &device)),
    );
    let (a, b) = (
        optim.step(0.1, model.clone(), g, None),
        reloaded.step(0.1, model.clone(), h, None),
    );
    assert_eq!(values(a.weight.val()), values(b.weight.val()));
    assert_eq!(values(a.bias.val()), values(b.bias.val()));
}

#[test]
fn lr_zero_still_counts_the_step_and_decays_nothing() {
    // HF's first warmup step has lr 0: the moments move, the weights do not.
    let device = Default::default();
    let mut model = toy(&device);
    let mut optim = AdamW::<B>::new(OptimizerConfig::pretraining(), &model);
    let g = optim.gather(&model, grads(&model, &device));
    model = optim.step(0.0, model, g, None);
    assert_eq!(values(model.weight.val()), vec![1.0, -2.0]);
    assert_eq!(optim.step_count(), 1);
}

#[test]
fn clip_grad_norm_as_torch() {
    let device = Default::default();
    let model = toy(&device);
    let scalar = |t: Tensor<Flex, 1>| f64::from(t.into_scalar());
    // |g| = sqrt(9 + 1 + 4) = sqrt(14).
    let g = AdamW::<B>::new(by_hand(), &model).gather(&model, grads(&model, &device));
    let clipped = clip_grad_norm(&g, 1.0, Some(1.0));
    assert!((scalar(clipped.norm) - 14f64.sqrt()).abs() < 1e-5);
    let coef = 1.0 / (14f64.sqrt() + 1e-6);
    assert!((scalar(clipped.grad_scale.unwrap()) - coef).abs() < 1e-7);

    // Below the threshold the coefficient is clamped to 1; without max_norm there is none.
    let clipped = clip_grad_norm(&g, 1.0, Some(10.0));
    assert_eq!(scalar(clipped.grad_scale.unwrap()), 1.0);
    assert!(clip_grad_norm(&g, 1.0, None).grad_scale.is_none());

    // A loss scale's inverse: the norm of the unscaled gradients (sqrt(14) / 4 = 0.935, under
    // the threshold), and a factor that removes the scale.
    let clipped = clip_grad_norm(&g, 0.25, Some(1.0));
    assert!((scalar(clipped.norm) - 14f64.sqrt() / 4.0).abs() < 1e-6);
    assert_eq!(scalar(clipped.grad_scale.unwrap()), 0.25);
    let clipped = clip_grad_norm(&g, 0.5, Some(1.0));
    let expected = 0.5 / (14f64.sqrt() / 2.0 + 1e-6);
    assert!((scalar(clipped.grad_scale.unwrap()) - expected).abs() < 1e-7);
}

/// Random gradients for every parameter of a module, and the f64 sum of their squares.
struct RandomGrads {
    grads: GradientsParams,
    squares: f64,
}

impl burn::module::ModuleVisitor<B> for RandomGrads {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let grad = Tensor::<Flex, D>::random(
            param.dims(),
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &Default::default(),
        );
        let values = grad.to_data().to_vec::<f32>().unwrap();
        self.squares += values.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
        self.grads.register(param.id, grad);
    }
}

#[test]
fn clip_grad_norm_over_a_models_matrices_and_vectors() {
    // The word table is tall, the intermediate weight wide, the vectors of three lengths:
    // every way a gradient is summed.
    let device = Default::default();
    Flex::seed(&Default::default(), 5);
    let config = BertHashConfig::new(16, 1, 2, 32, 4);
    let model: BertHashForMaskedLM<B> = init_model(&config, ModelOptions::default(), 0, &device);
    let mut random = RandomGrads {
        grads: GradientsParams::new(),
        squares: 0.0,
    };
    model.visit(&mut random);
    let grads = AdamW::<B>::new(by_hand(), &model).gather(&model, random.grads);
    let clipped = clip_grad_norm(&grads, 1.0, Some(1.0));
    let norm = f64::from(clipped.norm.into_scalar());
    let expected = random.squares.sqrt();
    assert!(
        (norm - expected).abs() < 1e-6 * expected,
        "norm {norm}, expected {expected}"
    );
    let coef = f64::from(clipped.grad_scale.unwrap().into_scalar());
    assert!((coef - 1.0 / (expected + 1e-6)).abs() < 1e-6 / expected);
}

#[test]
fn the_step_applies_the_gradient_factor_as_scaled_gradients_would() {
    // AdamW with the factor given equals AdamW on gradients scaled beforehand, bit for bit.
    let device = Default::default();
    let config = by_hand();
    let model = toy(&device);
    let factor = 1.0 / (14f32.sqrt() + 1e-6);
    let mut scaled = GradientsParams::new();
    let g = grads(&model, &device);
    let w: Tensor<Flex, 1> = g.get(model.weight.id).unwrap();
    let b: Tensor<Flex, 1> = g.get(model.bias.id).unwrap();
    scaled.register(model.weight.id, w.mul_scalar(factor));
    scaled.register(model.bias.id, b.mul_scalar(factor));
    let (mut a, mut b) = (
        AdamW::<B>::new(config.clone(), &model),
        AdamW::<B>::new(config, &model),
    );
    let factor = Tensor::<Flex, 1>::from_floats([factor], &device);
    let (g, scaled) = (
        a.gather(&model, grads(&model, &device)),
        b.gather(&model, scaled),
    );
    let given = a.step(0.1, model.clone(), g, Some(factor));
    let before = b.step(0.1, model, scaled, None);
    assert_eq!(values(given.weight.val()), values(before.weight.val()));
    assert_eq!(values(given.bias.val()), values(before.bias.val()));
}

#[test]
fn step_and_cast_updates_from_half_gradients_and_writes_the_half_copy() {
    // The update from a bf16 gradient equals the update from that gradient in f32, bit for bit;
    // the copy holds each updated parameter in bf16 under its id, a leaf that requires a
    // gradient, and a parameter without a gradient (the bias here) cast as it is.
    let device = Default::default();
    let model = toy(&device);
    let weight: Tensor<Flex, 1> = grads(&model, &device).get(model.weight.id).unwrap();
    let half = weight.clone().mul_scalar(0.3).cast(FloatDType::BF16);
    let (mut half_grads, mut f32_grads) = (GradientsParams::new(), GradientsParams::new());
    half_grads.register(model.weight.id, half.clone());
    f32_grads.register(model.weight.id, half.cast(FloatDType::F32));
    let mut a = AdamW::<B>::new(by_hand(), &model);
    let mut b = AdamW::<B>::new(by_hand(), &model);
    let (half_grads, f32_grads) = (a.gather(&model, half_grads), b.gather(&model, f32_grads));
    let (updated, copy) = a.step_and_cast(0.1, model.clone(), half_grads, None, FloatDType::BF16);
    let expected = b.step(0.1, model.clone(), f32_grads, None);
    assert_eq!(values(updated.weight.val()), values(expected.weight.val()));
    assert_eq!(values(updated.bias.val()), values(model.bias.val()));
    let as_f32 = |t: Tensor<B, 1>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    for (copied, master) in [(&copy.weight, &updated.weight), (&copy.bias, &updated.bias)] {
        assert_eq!(copied.id, master.id);
        assert_eq!(copied.val().dtype(), DType::BF16);
        assert!(copied.val().is_require_grad());
        assert_eq!(
            as_f32(copied.val()),
            as_f32(master.val().cast(FloatDType::BF16))
        );
    }
    assert_ne!(values(updated.weight.val()), values(model.weight.val()));
}

#[test]
fn no_decay_is_exactly_biases_and_layer_norm_weights() {
    let device = Default::default();
    let config = BertHashConfig::new(16, 1, 2, 32, 4);
    let model: BertHashForMaskedLM<B> = init_model(&config, ModelOptions::default(), 0, &device);
    let optim = AdamW::<B>::new(OptimizerConfig::pretraining(), &model);
    let layer = "bert.encoder.layer.0";
    let mut no_decay = vec![
        "bert.embeddings.LayerNorm.bias".to_string(),
        "bert.embeddings.LayerNorm.weight".into(),
        format!("{layer}.attention.self.query.bias"),
        format!("{layer}.attention.self.key.bias"),
        format!("{layer}.attention.self.value.bias"),
        format!("{layer}.attention.output.dense.bias"),
        format!("{layer}.attention.output.LayerNorm.bias"),
        format!("{layer}.attention.output.LayerNorm.weight"),
        format!("{layer}.intermediate.dense.bias"),
        format!("{layer}.output.dense.bias"),
        format!("{layer}.output.LayerNorm.bias"),
        format!("{layer}.output.LayerNorm.weight"),
        "cls.predictions.transform.dense.bias".into(),
        "cls.predictions.transform.LayerNorm.bias".into(),
        "cls.predictions.transform.LayerNorm.weight".into(),
        "cls.predictions.decoder.bias".into(),
    ];
    no_decay.sort();
    let mut decayed = vec![
        "bert.embeddings.word_embeddings.embeddings.weight".to_string(),
        "bert.embeddings.word_embeddings.projection.weight".into(),
        "bert.embeddings.position_embeddings.weight".into(),
        "bert.embeddings.token_type_embeddings.weight".into(),
        format!("{layer}.attention.self.query.weight"),
        format!("{layer}.attention.self.key.weight"),
        format!("{layer}.attention.self.value.weight"),
        format!("{layer}.attention.output.dense.weight"),
        format!("{layer}.intermediate.dense.weight"),
        format!("{layer}.output.dense.weight"),
        "cls.predictions.transform.dense.weight".into(),
        "cls.predictions.decoder.weight".into(),
    ];
    decayed.sort();
    assert_eq!(optim.no_decay_names(), no_decay);
    assert_eq!(optim.decayed_names(), decayed);
    // Every parameter is in exactly one group.
    assert_eq!(
        param_names::<B, _>(&model).len(),
        no_decay.len() + decayed.len()
    );
}

#[test]
fn a_parameter_without_a_gradient_keeps_its_moments_through_the_update() {
    // Step 1 updates both parameters, step 2 the weight alone (the bias keeps its value and its
    // moments), step 3 both again: the bias's moments are step 1's, decayed once more.
    let device = Default::default();
    let config = by_hand();
    let mut model = toy(&device);
    let mut optim = AdamW::<B>::new(config.clone(), &model);
    let g = optim.gather(&model, grads(&model, &device));
    model = optim.step(0.1, model, g, None);
    let mut weight_only = grads(&model, &device);
    let _: Option<Tensor<Flex, 1>> = weight_only.remove(model.bias.id);
    let g = optim.gather(&model, weight_only);
    model = optim.step(0.1, model, g, None);
    assert_close(&values(model.bias.val()), &[0.4]);

    // The state saved between the steps (the bias's moments apart from the weight's group)
    // loads into an optimizer that continues the same way.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    optim.save(&path).unwrap();
    let mut reloaded = AdamW::<B>::load(config, &model, &path, &device).unwrap();
    let (g, h) = (
        optim.gather(&model, grads(&model, &device)),
        reloaded.gather(&model, grads(&model, &device)),
    );
    let (a, b) = (
        optim.step(0.1, model.clone(), g, None),
        reloaded.step(0.1, model, h, None),
    );
    assert_eq!(values(a.weight.val()), values(b.weight.val()));
    assert_eq!(values(a.bias.val()), values(b.bias.val()));

    // Step 3 of the bias (t = 3, g = 2, no decay): m = 0.9 * 0.2 + 0.1 * 2, v = 0.999 * 0.004
    // + 0.001 * 4, each bias-corrected at t = 3.
    let (m, v) = (0.9 * 0.2 + 0.2, 0.999 * 0.004 + 0.004);
    let (m_hat, v_hat) = (m / (1.0 - 0.9f64.powi(3)), v / (1.0 - 0.999f64.powi(3)));
    assert_close(
        &values(a.bias.val()),
        &[0.4 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8)],
    );
}
