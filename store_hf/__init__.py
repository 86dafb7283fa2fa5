"""store-hf: STORE (semantic tokenization + generative recommendation with a single LLM)."""

__version__ = "0.1.0"

from transformers import AutoConfig, AutoModel

from .clustering import SemanticCodebook
from .configuration_store import StoreConfig
from .modeling_store import StoreTokenizerModel, StoreTokenizerOutput

AutoConfig.register("store", StoreConfig)
AutoModel.register(StoreConfig, StoreTokenizerModel)

__all__ = [
    "SemanticCodebook",
    "StoreConfig",
    "StoreTokenizerModel",
    "StoreTokenizerOutput",
    "__version__",
]
