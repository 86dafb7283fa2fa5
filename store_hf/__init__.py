"""store-hf: STORE (semantic tokenization + generative recommendation with a single LLM)."""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# ``import store_hf`` stays light (no torch, transformers or datasets): it runs before every
# submodule, the command line's included, and ``store-hf --help`` must not wait seconds for
# torch. The model classes below load on first access (module ``__getattr__``).
_EXPORTS = {
    "CodeTrie": ".trie",
    "RecommendationOutput": ".modeling_store",
    "SemanticCodebook": ".semantic_ids",
    "StoreConfig": ".configuration_store",
    "StoreForGenerativeRec": ".modeling_store",
    "StoreTokenizerModel": ".modeling_store",
    "StoreTokenizerOutput": ".modeling_store",
    "TrieLogitsProcessor": ".trie",
}

if TYPE_CHECKING:  # what the lazy exports are, for type checkers and editors
    from .configuration_store import StoreConfig
    from .modeling_store import (
        RecommendationOutput,
        StoreForGenerativeRec,
        StoreTokenizerModel,
        StoreTokenizerOutput,
    )
    from .semantic_ids import SemanticCodebook
    from .trie import CodeTrie, TrieLogitsProcessor


def _register_auto_classes() -> None:
    """Make ``AutoConfig``/``AutoModel``/``AutoModelForCausalLM`` resolve ``model_type
    "store"`` to the package's classes (without ``trust_remote_code``), and register the
    ``"store-recommendation"`` pipeline (importing ``pipeline_store`` does; a tenth of a second
    once transformers is loaded)."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from . import pipeline_store  # noqa: F401  (registers the pipeline's task)
    from .configuration_store import StoreConfig
    from .modeling_store import StoreForGenerativeRec, StoreTokenizerModel

    AutoConfig.register("store", StoreConfig, exist_ok=True)
    AutoModel.register(StoreConfig, StoreTokenizerModel, exist_ok=True)
    AutoModelForCausalLM.register(StoreConfig, StoreForGenerativeRec, exist_ok=True)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # the model classes are about to be used: the Auto classes should know them too
    _register_auto_classes()
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


# A program that has already imported transformers pays nothing more for torch and the model
# classes, and may load a saved folder with the Auto classes right after ``import store_hf``
# (as it could when this module imported everything eagerly).
if "transformers" in sys.modules:
    _register_auto_classes()

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
