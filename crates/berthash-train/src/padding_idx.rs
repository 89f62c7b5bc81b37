//! `nn.Embedding(padding_idx=pad)` semantics for the hashed token table: PyTorch never updates
//! the padding row (its gradient is zero however many `[PAD]` tokens a batch holds), so the
//! trainer zeroes the gradient of row `pad_token_id` of
//! `…embeddings.word_embeddings.embeddings.weight` after backward, before clipping and the
//! optimizer. Padding behind an attention mask gets exactly zero gradient anyway (its keys get
//! softmax weight 0 and its outputs feed no loss); what moved the `[PAD]` row without this is an
//! id 0 at an attended position: MLM random replacements that draw id 0, or inputs without an
//! attention mask. There the gradient norm and the update differed from transformers'.

use berthash_model::names::param_names;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The Hugging Face name (suffix) of the hashed token table.
pub const TOKEN_TABLE: &str = "embeddings.word_embeddings.embeddings.weight";

/// Zeroes row `pad` of the token table's gradient in `grads` (if it has one).
pub fn zero_padding_grad<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    pad: usize,
) {
    let table = param_names::<B, M>(module)
        .into_iter()
        .find(|p| p.name == TOKEN_TABLE || p.name.ends_with(&format!(".{TOKEN_TABLE}")));
    let Some(table) = table else {
        return;
    };
    let Some(grad) = grads.remove::<B::InnerBackend, 2>(table.id) else {
        return;
    };
    let [rows, cols] = grad.dims();
    let grad = if pad < rows {
        let device = grad.device();
        let zeros = Tensor::zeros([1, cols], (&device, grad.dtype()));
        grad.slice_assign([pad..pad + 1, 0..cols], zeros)
    } else {
        grad
    };
    grads.register(table.id, grad);
}

#[cfg(test)]
mod tests {
    use super::*;
    use berthash_model::pretrained::init_model;
    use berthash_model::{
        BertHashConfig, BertHashForSequenceClassification, BertInput, ModelOptions,
    };
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    /// An attended id 0 (as an MLM random replacement can draw) puts gradient on the `[PAD]`
    /// row; after zeroing, that row is exactly zero and every other row is unchanged.
    #[test]
    fn pad_row_gradient_is_zeroed_and_nothing_else() {
        let device = Default::default();
        let mut config = BertHashConfig::preset("femto").unwrap();
        config.hidden_dropout_prob = 0.0;
        config.attention_probs_dropout_prob = 0.0;
        config.set_labels(&["a".to_string(), "b".to_string()]);
        let model: BertHashForSequenceClassification<B> =
            init_model(&config, ModelOptions::default(), 7, &device);
        let ids = Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                vec![101i64, 2000, 0, 102, 0, 101, 3000, 4000, 5000, 102],
                [2, 5],
            ),
            &device,
        );
        let mask = Tensor::<B, 2, Int>::from_data(
            TensorData::new(vec![1i64, 1, 1, 1, 0, 1, 1, 1, 1, 1], [2, 5]),
            &device,
        );
        let input = BertInput {
            input_ids: ids,
            token_type_ids: None,
            attention_mask: Some(mask),
        };
        let (_, logits) = model.forward(input);
        let grads = logits.powi_scalar(2).sum().backward();
        let mut grads = GradientsParams::from_grads(grads, &model);
        let id = model.bert.embeddings.word_embeddings.embeddings.weight.id;
        let row = |g: &GradientsParams, r: usize| -> Vec<f32> {
            g.get::<Flex, 2>(id)
                .unwrap()
                .slice([r..r + 1, 0..config.projections])
                .into_data()
                .to_vec()
                .unwrap()
        };
        assert!(
            row(&grads, 0).iter().any(|&v| v != 0.0),
            "the attended id 0 should reach row 0"
        );
        let before = row(&grads, 2000);
        zero_padding_grad(&model, &mut grads, config.pad_token_id);
        assert!(row(&grads, 0).iter().all(|&v| v == 0.0));
        assert_eq!(row(&grads, 2000), before);
        assert!(before.iter().any(|&v| v != 0.0));
    }
}
