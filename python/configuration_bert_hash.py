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
"""Configuration of BERT Hash models: a BertConfig plus the width of the hashed token table."""

from transformers import BertConfig


class BertHashConfig(BertConfig):
    """BertConfig with one extra field.

    Args:
        projections: width of the per-token table (`embeddings.word_embeddings.embeddings`,
            shape [vocab_size, projections]); a bias-free linear map lifts it to hidden_size.
        **kwargs: every BertConfig field.
    """

    model_type = "bert_hash"

    # An explicit __init__ (rather than a class attribute) so that `projections` is an
    # instance attribute and always lands in config.json, with transformers 4.x (plain
    # class) and 5.x (dataclass-based configs, which keep custom __init__ of remote code).
    def __init__(self, projections=5, **kwargs):
        super().__init__(**kwargs)
        self.projections = projections
