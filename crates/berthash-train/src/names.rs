//! Hugging Face names of a module's parameters, keyed by Burn `ParamId`.
//!
//! The optimizer decides weight decay by name (HF convention) and keys its saved state by name,
//! so a checkpoint's state finds its parameters again in a freshly built model.
//!
//! The names come from `berthash_model::weights::PathStack`, the one naming rule of the project.

use berthash_model::weights::PathStack;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// One float parameter of a module.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamName {
    pub id: ParamId,
    /// The Hugging Face name (`bert.encoder.layer.0.attention.self.query.weight`).
    pub name: String,
    /// Burn's shape (Linear weights are `[in, out]`, transposed from the HF file layout).
    pub shape: Vec<usize>,
}

/// The float parameters of `module`, in visiting order, with their HF names.
pub fn param_names<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamName> {
    let mut visitor = Namer {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut visitor);
    visitor.out
}

/// Whether HF's `run_mlm`/`run_glue` exclude a parameter from weight decay: biases and LayerNorm
/// weights (`no_decay = ["bias", "LayerNorm.weight"]`).
pub fn is_no_decay(name: &str) -> bool {
    name.contains("bias") || name.contains("LayerNorm.weight")
}

struct Namer {
    path: PathStack,
    out: Vec<ParamName>,
}

impl<B: Backend> ModuleVisitor<B> for Namer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.push(ParamName {
            id: param.id,
            name: self.path.key().0,
            shape: param.lazy_shape().to_vec(),
        });
    }
}
