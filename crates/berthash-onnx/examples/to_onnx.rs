//! A model directory to `OUT/onnx/model.onnx` through the library, with its own head:
//!
//! ```sh
//! cargo run -p berthash-onnx --example to_onnx -- tests/fixtures/golden/tiny/cls /tmp/tiny-cls
//! ```

use std::path::PathBuf;

use berthash_model::{load_any, AnyModel};
use burn::backend::Flex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [source, out] = args.as_slice() else {
        return Err("usage: to_onnx MODEL_DIR OUT_DIR".into());
    };
    let loaded = load_any::<Flex>(source, &Default::default())?;
    let config = &loaded.config;
    let path = match &loaded.model {
        AnyModel::Base(m) => berthash_onnx::write(out, config, m, source, None)?,
        AnyModel::MaskedLm(m) => berthash_onnx::write(out, config, m, source, None)?,
        AnyModel::Classifier(m) => berthash_onnx::write(out, config, m, source, None)?,
    };
    println!("wrote {}", path.display());
    Ok(())
}
