"""store-hf: STORE (semantic tokenization + generative recommendation with a single LLM)."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

from .configuration_store import StoreConfig
from .modeling_store import (
    RecommendationOutput,
    StoreForGenerativeRec,
    StoreTokenizerModel,
    StoreTokenizerOutput,
)
from .semantic_ids import SemanticCodebook
from .trie import CodeTrie, TrieLogitsProcessor

AutoConfig.register("store", StoreConfig)
AutoModel.register(StoreConfig, StoreTokenizerModel)
AutoModelForCausalLM.register(StoreConfig, StoreForGenerativeRec)

__all__ = [
    "CodeTrie",
    "RecommendationOutput",
    "SemanticCodebook",
    "StoreConfig",
    "StoreForGenerativeRec",
    "StoreTokenizerModel",
    "StoreTokenizerOutput",
    "TrieLogitsProcessor",
    "__version__",
]
