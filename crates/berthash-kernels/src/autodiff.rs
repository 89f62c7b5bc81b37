//! `Autodiff<B>`: each kernel is one graph node whose backward is the inner backend's fused
//! backward.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::backend::Autodiff;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::Kernels;

impl<B: Kernels, C: CheckpointStrategy> Kernels for Autodiff<B, C> {
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
