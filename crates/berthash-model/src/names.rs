//! Hugging Face names of a module's parameters: the one naming rule of the project.
//!
//! Our module fields mirror transformers' attribute names, so a parameter's key is its module
//! path with three renames: `self_` -> `self`, `layer_norm` -> `LayerNorm`, LayerNorm
//! `gamma`/`beta` -> `weight`/`bias`. Burn's Linear weights are `[in, out]`; transformers stores
//! them `[out, in]`, so a key also says whether its tensor is stored transposed.
//!
//! [`visit_named`] and [`map_named`] walk a module with each float parameter's key; the weight
//! reader and writer, the optimizer's state and the trainer's gradient surgery all use them.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

/// Tracks the module path during a visit and names each parameter as transformers does.
#[derive(Debug, Default)]
struct PathStack {
    stack: Vec<(String, String)>,
}

/// A parameter's Hugging Face key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HfKey {
    /// `bert.encoder.layer.0.attention.self.query.weight`
    pub name: String,
    /// A Linear weight: stored `[out, in]` in files, held `[in, out]` by Burn.
    pub transposed: bool,
}

impl PathStack {
    fn enter(&mut self, name: &str, container: &str) {
        self.stack.push((name.to_string(), container.to_string()));
    }

    fn exit(&mut self) {
        self.stack.pop();
    }

    /// The key of the parameter at the top of the stack.
    fn key(&self) -> HfKey {
        let Some((param, container)) = self.stack.last() else {
            return HfKey {
                name: String::new(),
                transposed: false,
            };
        };
        let mut parts: Vec<&str> = self.stack[..self.stack.len() - 1]
            .iter()
            .map(|(name, _)| match name.as_str() {
                "self_" => "self",
                "layer_norm" => "LayerNorm",
                other => other,
            })
            .collect();
        let is_layer_norm = container == "Struct:LayerNorm";
        parts.push(match param.as_str() {
            "gamma" if is_layer_norm => "weight",
            "beta" if is_layer_norm => "bias",
            other => other,
        });
        HfKey {
            name: parts.join("."),
            transposed: container == "Struct:Linear" && param == "weight",
        }
    }
}

/// Sees each float parameter of a module with its key.
pub trait NamedVisitor<B: Backend> {
    fn visit<const D: usize>(&mut self, key: HfKey, param: &Param<Tensor<B, D>>);
}

/// Rewrites each float parameter of a module, knowing its key.
pub trait NamedMapper<B: Backend> {
    fn map<const D: usize>(
        &mut self,
        key: HfKey,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>>;
}

struct Visiting<'a, V> {
    path: PathStack,
    inner: &'a mut V,
}

impl<B: Backend, V: NamedVisitor<B>> ModuleVisitor<B> for Visiting<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.inner.visit(self.path.key(), param);
    }
}

impl<B: Backend, V: NamedMapper<B>> ModuleMapper<B> for Visiting<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        self.inner.map(self.path.key(), param)
    }
}

/// Calls `visitor` with every float parameter of `module` and its key, in module order.
pub fn visit_named<B: Backend, M: Module<B>, V: NamedVisitor<B>>(module: &M, visitor: &mut V) {
    module.visit(&mut Visiting {
        path: PathStack::default(),
        inner: visitor,
    });
}

/// Passes every float parameter of `module` through `mapper`, with its key.
pub fn map_named<B: Backend, M: Module<B>, V: NamedMapper<B>>(module: M, mapper: &mut V) -> M {
    module.map(&mut Visiting {
        path: PathStack::default(),
        inner: mapper,
    })
}

/// One float parameter of a module.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamName {
    pub id: ParamId,
    /// The Hugging Face name.
    pub name: String,
    /// Burn's shape (Linear weights are `[in, out]`).
    pub shape: Vec<usize>,
}

/// The float parameters of `module`, in module order, with their Hugging Face names.
pub fn param_names<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamName> {
    struct Names(Vec<ParamName>);
    impl<B: Backend> NamedVisitor<B> for Names {
        fn visit<const D: usize>(&mut self, key: HfKey, param: &Param<Tensor<B, D>>) {
            self.0.push(ParamName {
                id: param.id,
                name: key.name,
                shape: param.lazy_shape().to_vec(),
            });
        }
    }
    let mut names = Names(Vec::new());
    visit_named(module, &mut names);
    names.0
}
