//! Weights in Hugging Face names and layouts, read from and written to safetensors.
//!
//! A parameter's Hugging Face key comes from its module path ([`crate::names`]).
//! Three things a file may do differently are absorbed here: the `bert.` prefix (present on
//! models saved with a head, absent on bare encoders), the MLM vocab bias (one tensor stored as
//! `cls.predictions.bias` and `cls.predictions.decoder.bias`) and the hashed-embedding projection,
//! whose attribute name is not public and is therefore found by shape.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{Module, Param, ParamId};
use burn::prelude::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::ModelError;
use crate::names::{map_named, visit_named, HfKey, NamedMapper, NamedVisitor};

/// The bias transformers stores twice for the MLM decoder; we hold it once, as the decoder's.
const MLM_BIAS: &str = "cls.predictions.bias";
const MLM_DECODER_BIAS: &str = "cls.predictions.decoder.bias";
const WORD_EMBEDDINGS: &str = "embeddings.word_embeddings.";
const PROJECTION: &str = "embeddings.word_embeddings.projection";

/// One tensor of a safetensors file, kept as raw little-endian bytes so that writing back what
/// was read is bit-exact.
#[derive(Debug, Clone, PartialEq)]
pub struct RawTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl RawTensor {
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self {
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }

    /// The values as f32, whatever float type the file used; `path` and `key` name it in errors.
    pub fn to_f32(&self, path: &Path, key: &str) -> Result<Vec<f32>, ModelError> {
        let chunks = |n: usize| self.bytes.chunks_exact(n);
        Ok(match self.dtype {
            Dtype::F32 => chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => chunks(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
                .collect(),
            Dtype::F16 => chunks(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => chunks(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(ModelError::DtypeMismatch {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    found: format!("{other:?}"),
                })
            }
        })
    }

    /// Re-encodes f32 values in `dtype` (the dtype the model was loaded from).
    fn from_f32_as(dtype: Dtype, shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = match dtype {
            Dtype::F64 => values
                .iter()
                .flat_map(|v| f64::from(*v).to_le_bytes())
                .collect(),
            Dtype::F16 => values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
            Dtype::BF16 => values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
            _ => return Self::from_f32(shape, values),
        };
        Self {
            dtype,
            shape,
            bytes,
        }
    }
}

/// The tensors and metadata of one safetensors file.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, RawTensor>,
    pub metadata: Option<HashMap<String, String>>,
}

impl TensorFile {
    /// Reads and validates a safetensors file (header length, JSON, offsets inside the file).
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path).map_err(|cause| ModelError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::parse(path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ModelError> {
        let corrupt = |message: String| ModelError::Safetensors {
            path: path.to_path_buf(),
            message,
        };
        if bytes.len() < 8 {
            return Err(corrupt(format!(
                "file is {} bytes long, shorter than the 8-byte header length",
                bytes.len()
            )));
        }
        let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        if header_len > (bytes.len() - 8) as u64 {
            return Err(corrupt(format!(
                "header length {header_len} points past the end of the file ({} bytes): truncated or not safetensors",
                bytes.len()
            )));
        }
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(describe(&e)))?;
        let file = SafeTensors::deserialize(bytes).map_err(|e| corrupt(describe(&e)))?;
        let tensors = file
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let raw = RawTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                };
                (name, raw)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            metadata: metadata.metadata().clone(),
        })
    }

    /// Serializes in the layout the `safetensors` library itself writes, so that a file we read
    /// and write back unchanged is byte-identical.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        let views = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map_err(|e| {
                    ModelError::Safetensors {
                        path: self.path.clone(),
                        message: format!("tensor `{name}`: {}", describe(&e)),
                    }
                })?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        safetensors::serialize(views, self.metadata.clone()).map_err(|e| ModelError::Safetensors {
            path: self.path.clone(),
            message: describe(&e),
        })
    }

    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        crate::fs::write_atomic(path, &self.to_bytes()?)
    }

    /// Whether the encoder keys carry the `bert.` prefix.
    pub fn is_prefixed(&self) -> bool {
        self.tensors.keys().any(|k| k.starts_with("bert."))
    }

    fn encoder_key(&self, key: &str) -> String {
        if self.is_prefixed() {
            format!("bert.{key}")
        } else {
            key.to_string()
        }
    }

    pub fn has_pooler(&self) -> bool {
        self.tensors
            .contains_key(&self.encoder_key("pooler.dense.weight"))
    }

    pub fn has_mlm_head(&self) -> bool {
        self.tensors.contains_key("cls.predictions.decoder.weight")
    }

    pub fn has_classifier(&self) -> bool {
        self.tensors.contains_key("classifier.weight")
    }

    /// Finds the projection of the hashed word embedding: the one `[hidden, projections]` tensor
    /// under `embeddings.word_embeddings.` besides the table itself. Returns its module key
    /// (without `.weight`) and whether it has a bias.
    pub fn find_projection(
        &self,
        hidden: usize,
        projections: usize,
    ) -> Result<(String, bool), ModelError> {
        let scope = self.encoder_key(WORD_EMBEDDINGS);
        let table = format!("{scope}embeddings.weight");
        let candidates: Vec<&String> = self
            .tensors
            .iter()
            .filter(|(k, t)| {
                k.starts_with(&scope)
                    && **k != table
                    && k.ends_with(".weight")
                    && t.shape == [hidden, projections]
            })
            .map(|(k, _)| k)
            .collect();
        match candidates.as_slice() {
            [key] => {
                let module = key.trim_end_matches(".weight");
                let has_bias = self.tensors.contains_key(&format!("{module}.bias"));
                let relative = module.strip_prefix("bert.").unwrap_or(module);
                Ok((relative.to_string(), has_bias))
            }
            [] => Err(ModelError::Projection {
                path: self.path.clone(),
                message: format!(
                    "no tensor of shape [{hidden}, {projections}] (hidden_size, projections) under `{scope}`; found: {}",
                    self.describe_keys(&scope)
                ),
            }),
            many => Err(ModelError::Projection {
                path: self.path.clone(),
                message: format!(
                    "several tensors of shape [{hidden}, {projections}] under `{scope}`: {}",
                    many.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }

    fn describe_keys(&self, scope: &str) -> String {
        let found: Vec<String> = self
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with(scope))
            .map(|(k, t)| format!("{k} {:?}", t.shape))
            .collect();
        if found.is_empty() {
            "nothing".into()
        } else {
            found.join(", ")
        }
    }
}

fn describe(error: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match error {
        E::InvalidOffset(name) => format!(
            "the offsets of tensor `{name}` are invalid (past the end of the data or overlapping): truncated or corrupt file"
        ),
        E::MetadataIncompleteBuffer => {
            "the tensor data does not cover the file exactly: truncated or corrupt file".into()
        }
        E::HeaderTooLarge => "the header is larger than 100 MB: not a safetensors file".into(),
        E::InvalidHeaderLength => "the header length is invalid: truncated or corrupt file".into(),
        E::InvalidHeaderStart => "the header does not start with `{`: not a safetensors file".into(),
        other => format!("{other:?}"),
    }
}

/// How a model's tensors are named and stored in a file: remembered at load so that saving
/// writes the same layout back.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightLayout {
    /// Module key of the hashed-embedding projection, relative to the encoder
    /// (`embeddings.word_embeddings.projection` in our files).
    pub projection: String,
    pub dtype: Dtype,
    pub metadata: Option<HashMap<String, String>>,
}

impl Default for WeightLayout {
    fn default() -> Self {
        Self {
            projection: PROJECTION.to_string(),
            dtype: Dtype::F32,
            metadata: Some(HashMap::from([("format".to_string(), "pt".to_string())])),
        }
    }
}

/// What a load found beyond the expected tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Model tensors absent from the file, left at their fresh initialisation (heads, pooler).
    pub initialized: Vec<String>,
    /// File tensors the model has no place for.
    pub unexpected: Vec<String>,
}

/// Maps a model key (as the module tree names it) to the key in a file, and back.
struct KeyMap<'a> {
    model_prefixed: bool,
    file_prefixed: bool,
    layout: &'a WeightLayout,
}

impl KeyMap<'_> {
    /// The file key of a model parameter, with the projection renamed to the file's.
    fn to_file(&self, model_key: &str) -> String {
        let encoder_key = if self.model_prefixed {
            model_key.strip_prefix("bert.")
        } else {
            Some(model_key)
        };
        let Some(encoder_key) = encoder_key else {
            return model_key.to_string(); // a head: named the same everywhere
        };
        let renamed = match encoder_key.strip_prefix(PROJECTION) {
            Some(param) => format!("{}{param}", self.layout.projection),
            None => encoder_key.to_string(),
        };
        if self.file_prefixed {
            format!("bert.{renamed}")
        } else {
            renamed
        }
    }
}

struct Loader<'a, B: Backend> {
    file: &'a TensorFile,
    keys: KeyMap<'a>,
    device: B::Device,
    used: BTreeSet<String>,
    initialized: Vec<String>,
    error: Option<ModelError>,
}

impl<'a, B: Backend> Loader<'a, B> {
    /// The file tensor for a model key (the MLM bias under either of its names).
    fn lookup(&mut self, model_key: &str) -> Option<(String, &'a RawTensor)> {
        let file_key = self.keys.to_file(model_key);
        let names: Vec<String> = if file_key == MLM_DECODER_BIAS {
            vec![MLM_BIAS.to_string(), MLM_DECODER_BIAS.to_string()]
        } else {
            vec![file_key]
        };
        for name in &names {
            if self.file.tensors.contains_key(name) {
                self.used.extend(names.iter().cloned());
            }
        }
        let file: &'a TensorFile = self.file;
        names
            .iter()
            .find_map(|n| file.tensors.get_key_value(n.as_str()))
            .map(|(k, t)| (k.clone(), t))
    }
}

impl<B: Backend> NamedMapper<B> for Loader<'_, B> {
    fn map<const D: usize>(
        &mut self,
        key: HfKey,
        param: Param<Tensor<B, D>>,
    ) -> Param<Tensor<B, D>> {
        if self.error.is_some() {
            return param;
        }
        let HfKey {
            name: model_key,
            transposed,
        } = key;
        let expected: Vec<usize> = param.lazy_shape().to_vec();
        let Some((file_key, raw)) = self.lookup(&model_key) else {
            self.initialized.push(model_key);
            return param;
        };
        let stored_shape: Vec<usize> = if transposed {
            expected.iter().rev().copied().collect()
        } else {
            expected.clone()
        };
        if raw.shape != stored_shape {
            self.error = Some(ModelError::ShapeMismatch {
                path: self.file.path.clone(),
                key: file_key,
                expected: stored_shape,
                found: raw.shape.clone(),
            });
            return param;
        }
        let values = match raw.to_f32(&self.file.path, &file_key) {
            Ok(values) => values,
            Err(err) => {
                self.error = Some(err);
                return param;
            }
        };
        // Transposed on the host, so the parameter is a plain row-major tensor (a transposed
        // view would compute differently from the tensors a run holds after an update).
        let values = if transposed {
            transpose_rows(&values, raw.shape[0], raw.shape[1])
        } else {
            values
        };
        let tensor = Tensor::<B, D>::from_data(TensorData::new(values, expected), &self.device);
        let id: ParamId = param.id;
        param.transform_for_load(tensor, id)
    }
}

/// `values` of a row-major `[rows, cols]` matrix, as its `[cols, rows]` transpose.
fn transpose_rows(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (r, row) in values.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            out[c * rows + r] = v;
        }
    }
    out
}

/// Loads `file` into `module`. Parameters whose key starts with one of `optional_prefixes` (heads,
/// pooler) may be missing and keep their initialisation; any other missing one is an error.
pub fn load_module<B: Backend, M: Module<B>>(
    module: M,
    file: &TensorFile,
    model_prefixed: bool,
    layout: &WeightLayout,
    optional_prefixes: &[&str],
    device: &B::Device,
) -> Result<(M, LoadReport), ModelError> {
    let mut loader = Loader::<B> {
        file,
        keys: KeyMap {
            model_prefixed,
            file_prefixed: file.is_prefixed(),
            layout,
        },
        device: device.clone(),
        used: BTreeSet::new(),
        initialized: Vec::new(),
        error: None,
    };
    let module = map_named(module, &mut loader);
    if let Some(err) = loader.error {
        return Err(err);
    }
    if let Some(missing) = loader
        .initialized
        .iter()
        .find(|k| !optional_prefixes.iter().any(|p| k.starts_with(p)))
    {
        return Err(ModelError::MissingTensor {
            path: file.path.clone(),
            key: loader.keys.to_file(missing),
        });
    }
    let unexpected = file
        .tensors
        .keys()
        .filter(|k| !loader.used.contains(*k))
        .cloned()
        .collect();
    Ok((
        module,
        LoadReport {
            initialized: loader.initialized,
            unexpected,
        },
    ))
}

struct Collector {
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl<B: Backend> NamedVisitor<B> for Collector {
    fn visit<const D: usize>(&mut self, key: HfKey, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let tensor = if key.transposed {
            tensor.transpose()
        } else {
            tensor
        };
        let shape = tensor.dims().to_vec();
        let values = tensor
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("converted to f32");
        self.tensors.push((key.name, shape, values));
    }
}

/// The tensors of `module` in Hugging Face names and layouts, ready to write. `prefixed` says
/// whether the encoder keys get `bert.` (true for models with a head, as transformers saves them).
pub fn module_tensors<B: Backend, M: Module<B>>(
    module: &M,
    model_prefixed: bool,
    layout: &WeightLayout,
    path: &Path,
) -> TensorFile {
    let mut collector = Collector {
        tensors: Vec::new(),
    };
    visit_named(module, &mut collector);
    let keys = KeyMap {
        model_prefixed,
        file_prefixed: model_prefixed,
        layout,
    };
    let mut tensors = BTreeMap::new();
    for (model_key, shape, values) in collector.tensors {
        let file_key = keys.to_file(&model_key);
        let raw = RawTensor::from_f32_as(layout.dtype, shape, &values);
        if file_key == MLM_DECODER_BIAS {
            tensors.insert(MLM_BIAS.to_string(), raw.clone());
        }
        tensors.insert(file_key, raw);
    }
    TensorFile {
        path: path.to_path_buf(),
        tensors,
        metadata: layout.metadata.clone(),
    }
}
