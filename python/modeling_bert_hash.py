# Copyright 2025 The berthash authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""BERT Hash: BERT whose token embedding is a narrow table followed by a linear projection.

The token vector of id t is `projection(embeddings[t])`, with `embeddings` of shape
[vocab_size, projections] and `projection` a bias-free Linear(projections, hidden_size).
Everything after the token vector is stock BERT: the encoder and pooler are transformers'
own BertEncoder and BertPooler, so parameter names match BertModel's.

This file is loaded with `trust_remote_code=True` and must run under transformers 4.55.4
(the version the published models name) as well as 5.x. The two differ in how BERT builds
its attention mask, ties weights and reports hidden states, so this file only relies on
what both share: BertEncoder(config) called as `encoder(hidden_states, attention_mask=...)`
with an additive [batch, 1, 1, seq] mask, returning an output whose first item is the last
hidden state. Attention runs in eager mode in both (the classes below do not declare sdpa
support, so transformers picks "eager").
"""

import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling, MaskedLMOutput, SequenceClassifierOutput
from transformers.models.bert.modeling_bert import BertEncoder, BertPooler

from .configuration_bert_hash import BertHashConfig


class BertHashTokenEmbedding(nn.Module):
    """Token id -> hidden vector through a [vocab, projections] table and a bias-free projection."""

    def __init__(self, config):
        super().__init__()
        # padding_idx as in stock BERT's word embedding: it only zeroes the pad row at
        # initialisation and keeps its gradient at zero; the forward pass is unaffected.
        self.embeddings = nn.Embedding(config.vocab_size, config.projections, padding_idx=config.pad_token_id)
        self.projection = nn.Linear(config.projections, config.hidden_size, bias=False)

    def forward(self, input_ids):
        return self.projection(self.embeddings(input_ids))


class BertHashEmbeddings(nn.Module):
    """Token + absolute position + token type vectors, then LayerNorm and dropout (as BertEmbeddings)."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = BertHashTokenEmbedding(config)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        position_type = getattr(config, "position_embedding_type", "absolute")
        if position_type != "absolute":
            raise ValueError(f"BERT Hash supports absolute position embeddings only, not {position_type!r}")

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch_size, seq_length = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = torch.arange(seq_length, device=device).unsqueeze(0)
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=device)

        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        embeddings = embeddings + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings)


def extended_attention_mask(attention_mask, dtype):
    """[batch, seq] (or [batch, query, key]) mask of 1 = attend / 0 = padding -> additive mask.

    Returns [batch, 1, 1, seq] (or [batch, 1, query, key]) holding 0 where attention is allowed
    and the dtype's most negative value where it is not, which is what BERT's eager attention
    adds to its scores. Written here because the transformers helpers for it changed between
    4.x and 5.x.
    """
    if attention_mask.dim() == 2:
        mask = attention_mask[:, None, None, :]
    elif attention_mask.dim() == 3:
        mask = attention_mask[:, None, :, :]
    else:
        raise ValueError(f"attention_mask must have 2 or 3 dimensions, got shape {tuple(attention_mask.shape)}")
    mask = mask.to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min


class BertHashPredictionHeadTransform(nn.Module):
    """dense H->H, activation, LayerNorm (BERT's MLM transform)."""

    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = ACT2FN[config.hidden_act] if isinstance(config.hidden_act, str) else config.hidden_act
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertHashLMPredictionHead(nn.Module):
    """MLM transform + decoder H->vocab.

    The decoder is never tied to the token embedding (that table is [vocab, projections],
    not [vocab, hidden]). Its bias is one tensor known under two names, `bias` and
    `decoder.bias`, as in BertLMPredictionHead, so checkpoints carrying either or both load.
    """

    def __init__(self, config):
        super().__init__()
        self.transform = BertHashPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=True)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.decoder.bias = self.bias

    # transformers 4.x re-shares through this hook after loading (loading may replace
    # Parameter objects); 5.x uses `_tied_weights_keys` on the model class instead.
    def _tie_weights(self):
        self.decoder.bias = self.bias

    def forward(self, hidden_states):
        return self.decoder(self.transform(hidden_states))


class BertHashOnlyMLMHead(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.predictions = BertHashLMPredictionHead(config)

    def forward(self, sequence_output):
        return self.predictions(sequence_output)


class BertHashPreTrainedModel(PreTrainedModel):
    config_class = BertHashConfig
    base_model_prefix = "bert"

    def _init_weights(self, module):
        # Uses torch.nn.init functions (not tensor.normal_()) because transformers 5.x
        # guards exactly those so that weights already loaded from a checkpoint are kept.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, BertHashLMPredictionHead):
            nn.init.zeros_(module.bias)


class BertHashModel(BertHashPreTrainedModel):
    """Embeddings + BERT encoder (+ optional pooler)."""

    def __init__(self, config, add_pooling_layer=True):
        super().__init__(config)
        self.embeddings = BertHashEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value):
        self.embeddings.word_embeddings = value

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Specify exactly one of input_ids or inputs_embeds")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)

        embedding_output = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        )
        if attention_mask is None:
            attention_mask = torch.ones(embedding_output.shape[:2], device=embedding_output.device)
        mask = extended_attention_mask(attention_mask, embedding_output.dtype)

        # Hidden states are collected with hooks on the layers because BertEncoder reports
        # them itself under 4.x only (5.x records outputs at the model level).
        all_hidden_states = [embedding_output] if output_hidden_states else None
        hooks = []
        if output_hidden_states:

            def record(_module, _inputs, output):
                # BertLayer returns a tuple under 4.x and a tensor under 5.x.
                all_hidden_states.append(output[0] if isinstance(output, tuple) else output)

            hooks = [layer.register_forward_hook(record) for layer in self.encoder.layer]
        try:
            encoder_outputs = self.encoder(embedding_output, attention_mask=mask)
        finally:
            for hook in hooks:
                hook.remove()

        sequence_output = encoder_outputs[0]
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        output = BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=tuple(all_hidden_states) if output_hidden_states else None,
        )
        return output if return_dict else output.to_tuple()


class BertHashForMaskedLM(BertHashPreTrainedModel):
    # One bias under two names (see BertHashLMPredictionHead). transformers 5.x ties by this
    # {target: source} map; 4.x iterates it as a list of key patterns, which gives the same
    # key, so both versions save the bias once and accept checkpoints with either name.
    _tied_weights_keys = {"cls.predictions.decoder.bias": "cls.predictions.bias"}

    def __init__(self, config):
        super().__init__(config)
        self.bert = BertHashModel(config, add_pooling_layer=False)
        self.cls = BertHashOnlyMLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.cls(outputs.last_hidden_state)

        loss = None
        if labels is not None:
            # Positions labelled -100 (unmasked tokens) are ignored.
            loss = CrossEntropyLoss(ignore_index=-100)(logits.view(-1, self.config.vocab_size), labels.view(-1))

        output = MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


class BertHashForSequenceClassification(BertHashPreTrainedModel):
    """Pooler -> dropout -> linear classifier, with BertForSequenceClassification's loss rules."""

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bert = BertHashModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        if return_dict is None:
            return_dict = getattr(self.config, "return_dict", True)
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output))

        loss = None
        if labels is not None:
            # Same inference of the problem type as BertForSequenceClassification, which
            # also records it in the config so that a saved model keeps it.
            if self.config.problem_type is None:
                if self.num_labels == 1:
                    self.config.problem_type = "regression"
                elif labels.dtype in (torch.long, torch.int):
                    self.config.problem_type = "single_label_classification"
                else:
                    self.config.problem_type = "multi_label_classification"

            if self.config.problem_type == "regression":
                if self.num_labels == 1:
                    loss = MSELoss()(logits.squeeze(), labels.squeeze().to(logits.dtype))
                else:
                    loss = MSELoss()(logits, labels.to(logits.dtype))
            elif self.config.problem_type == "single_label_classification":
                loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
            elif self.config.problem_type == "multi_label_classification":
                loss = BCEWithLogitsLoss()(logits, labels.to(logits.dtype))
            else:
                raise ValueError(f"Unknown problem_type {self.config.problem_type!r}")

        output = SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states)
        return output if return_dict else output.to_tuple()


__all__ = [
    "BertHashModel",
    "BertHashForMaskedLM",
    "BertHashForSequenceClassification",
    "BertHashPreTrainedModel",
]
