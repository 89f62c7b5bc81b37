//! `Autodiff<B>`: each kernel is one graph node whose backward is the inner backend's fused
//! backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::TensorMetadata;

use crate::{dropout, AttentionConfig, DenseThen, Kernels, LayerNormSaved, RowIndices};

/// The node of `x W + b`: two parents (input, weight) or three (and the bias).
#[derive(Debug)]
struct Dense;

impl<B: Kernels, const N: usize> Backward<B, N> for Dense {
    /// The input, kept when the weight needs a gradient, and the weight, kept when the input
    /// does.
    type State = (Option<FloatTensor<B>>, Option<FloatTensor<B>>);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight) = ops.state;
        let bias_node = ops.parents.get(2).cloned().flatten();
        let out = B::dense_backward(x, weight, grad, bias_node.is_some());
        let [x_node, weight_node] = [ops.parents[0].clone(), ops.parents[1].clone()];
        for (node, grad) in [
            (x_node, out.x),
            (weight_node, out.weight),
            (bias_node, out.bias),
        ] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, grad);
            }
        }
    }
}

/// `x W + b` as one node.
fn dense_node<B: Kernels, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    bias: Option<FloatTensor<Autodiff<B, C>>>,
) -> FloatTensor<Autodiff<B, C>> {
    // The input is only needed for the weight's gradient, and the weight for the input's.
    let state = (
        weight.is_tracked().then(|| x.primitive.clone()),
        x.is_tracked().then(|| weight.primitive.clone()),
    );
    let forward = |bias| B::dense(x.primitive, weight.primitive, bias, DenseThen::Nothing);
    match bias {
        Some(bias) => match Dense
            .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, forward(Some(bias.primitive))),
            OpsKind::UnTracked(prep) => prep.finish(forward(Some(bias.primitive))),
        },
        None => match Dense
            .prepare::<C>([x.node.clone(), weight.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, forward(None)),
            OpsKind::UnTracked(prep) => prep.finish(forward(None)),
        },
    }
}

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
    fn dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        then: DenseThen<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        let y = dense_node::<B, C>(x, weight, bias);
        match then {
            DenseThen::Nothing => y,
            DenseThen::Gelu => Self::gelu_erf(y),
            DenseThen::Add(residual) => Self::float_add(y, residual),
        }
    }

    fn self_attention(
        qkv: [FloatTensor<Self>; 3],
        key_bias: Option<FloatTensor<Self>>,
        config: AttentionConfig,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Attention;

        impl<B: Kernels> Backward<B, 3> for Attention {
            /// Q, K and V, the probabilities before dropout, the dropout's mask, the constants.
            type State = (
                [FloatTensor<B>; 3],
                FloatTensor<B>,
                Option<B::DropoutMask>,
                AttentionConfig,
            );

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (qkv, probs, mask, config) = ops.state;
                let qkv_grads = B::attention_backward(qkv, probs, mask, config, grad);
                for (node, grad) in ops.parents.into_iter().zip(qkv_grads) {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        // The bias is the padding mask, a constant: only Q, K and V are differentiated.
        let key_bias = key_bias.map(|bias| bias.primitive);
        let nodes = qkv.each_ref().map(|t| t.node.clone());
        let primitives = qkv.map(|t| t.primitive);
        match Attention.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (context, probs, mask) =
                    B::attention_forward(primitives.clone(), key_bias, config);
                prep.finish((primitives, probs, mask, config), context)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::attention_forward(primitives, key_bias, config).0)
            }
        }
    }

    fn gelu_erf(x: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gelu;

        impl<B: Kernels> Backward<B, 1> for Gelu {
            /// The input.
            type State = FloatTensor<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::gelu_erf_backward(x, grad)
                });
            }
        }

        match Gelu
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let out = B::gelu_erf(x.primitive.clone());
                prep.finish(x.primitive, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_erf(x.primitive)),
        }
    }

    fn layer_norm_training(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNorm;

        impl<B: Kernels> Backward<B, 3> for LayerNorm {
            /// What the forward saved, and the weight.
            type State = (LayerNormSaved<FloatTensor<B>>, FloatTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let grad = grads.consume::<B>(&ops.node);
                let (saved, gamma) = ops.state;
                let out = B::layer_norm_backward(saved, gamma, grad);
                for (node, grad) in ops.parents.into_iter().zip([out.x, out.gamma, out.beta]) {
                    if let Some(node) = node {
                        grads.register::<B>(node.id, grad);
                    }
                }
            }
        }

        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        let [x, gamma, beta] = [x, gamma, beta].map(|t| t.primitive);
        match LayerNorm.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (y, saved) = B::layer_norm_forward(x, gamma.clone(), beta, epsilon);
                prep.finish((saved, gamma), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::layer_norm_forward(x, gamma, beta, epsilon).0)
            }
        }
    }

    fn select_rows(
        x: FloatTensor<Self>,
        indices: IntTensor<Self>,
        kind: RowIndices,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SelectRows;

        impl<B: Kernels> Backward<B, 1> for SelectRows {
            /// The indices, the rows of the input and whether indices repeat.
            type State = (IntTensor<B>, usize, RowIndices);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (indices, rows, kind) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::select_rows_backward(grad, indices, rows, kind)
                });
            }
        }

        let rows = x.primitive.shape()[0];
        match SelectRows
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(
                (indices.clone(), rows, kind),
                B::select_rows(x.primitive, indices, kind),
            ),
            OpsKind::UnTracked(prep) => prep.finish(B::select_rows(x.primitive, indices, kind)),
        }
    }

    // Graph nodes built from tracked Burn ops: only reached by a second-order use.
    dropout::composed_dropout!();

    fn dropout(x: FloatTensor<Self>, prob: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Dropout;

        impl<B: Kernels> Backward<B, 1> for Dropout {
            type State = (B::DropoutMask, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (mask, prob) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::dropout_backward(grad, mask, prob)
                });
            }
        }

        match Dropout
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, mask) = B::dropout_forward(x.primitive, prob);
                prep.finish((mask, prob), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dropout_forward(x.primitive, prob).0),
        }
    }

    fn cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct CrossEntropy;

        impl<B: Kernels> Backward<B, 1> for CrossEntropy {
            /// The logits themselves (not a checkpoint: the backward overwrites them with the
            /// gradient when nothing else holds them), the row log-sum-exps and the targets.
            type State = (FloatTensor<B>, FloatTensor<B>, IntTensor<B>);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (logits, log_sum_exp, targets) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::cross_entropy_backward(logits, log_sum_exp, targets, grad)
                });
            }
        }

        match CrossEntropy
            .prepare::<C>([logits.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (loss, log_sum_exp) =
                    B::cross_entropy_forward(logits.primitive.clone(), targets.clone());
                prep.finish((logits.primitive, log_sum_exp, targets), loss)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::cross_entropy_forward(logits.primitive, targets).0)
            }
        }
    }
}
