//! A model's parameters by Hugging Face name, as f32 values in Burn's layout (a Linear weight is
//! `[in, out]`, the right operand of `MatMul`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berthash_model::names::{visit_named, HfKey, NamedVisitor};
use berthash_model::ModelError;
use burn::module::{Module, Param};
use burn::prelude::*;

pub struct Weights {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Where the model came from, for errors.
    source: PathBuf,
}

impl Weights {
    pub fn of<B: Backend, M: Module<B>>(model: &M, source: PathBuf) -> Self {
        struct Collect(BTreeMap<String, (Vec<usize>, Vec<f32>)>);
        impl<B: Backend> NamedVisitor<B> for Collect {
            fn visit<const D: usize>(&mut self, key: HfKey, param: &Param<Tensor<B, D>>) {
                let data = param.val().into_data().convert::<f32>();
                let values = data.to_vec::<f32>().expect("f32 after convert");
                self.0.insert(key.name, (data.shape.to_vec(), values));
            }
        }
        let mut collect = Collect(BTreeMap::new());
        visit_named(model, &mut collect);
        Self {
            tensors: collect.0,
            source,
        }
    }

    /// The tensor called `key`, or `bert.{key}` in a model with a head.
    pub fn get(&self, key: &str) -> Result<&(Vec<usize>, Vec<f32>), ModelError> {
        self.tensors
            .get(key)
            .or_else(|| self.tensors.get(&format!("bert.{key}")))
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.source.clone(),
                key: key.to_string(),
            })
    }

    pub fn source(&self) -> &Path {
        &self.source
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_ok()
    }
}
