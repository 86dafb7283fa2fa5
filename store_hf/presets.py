"""Named settings for the whole pipeline: ``tiny`` (tests), ``cpu`` (``make demo``), ``paper`` (GPU)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class TokenizerStageSettings:
    """Dense-tokenizer post-pretraining (paper section 4.1, "Tokenizer")."""

    max_items: int | None = None  # train on a random subset of the catalogue (None: all items)
    learning_rate: float = 1e-4
    # dense/task embeddings and the placeholder gain (None: learning_rate); new parameters that
    # start from scratch, while LoRA only nudges a pretrained model
    embedding_learning_rate: float | None = None
    batch_size: int = 512  # items per optimiser step (each item gives one sample per task)
    per_device_batch_size: int = 32
    num_epochs: float = 1.0
    max_steps: int = -1
    warmup_ratio: float = 0.05
    bf16: bool = False
    encode_batch_size: int = 64


@dataclass(frozen=True)
class Preset:
    name: str
    backbone: (
        str  # Hub id, folder, .gguf file, "smollm2-135m", or "tiny-opt" (random, built in code)
    )
    description: str
    num_dense_tokens: int = 4
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    max_content_length: int = 256
    max_target_length: int = 64
    tokenizer: TokenizerStageSettings = field(default_factory=TokenizerStageSettings)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def store_config_kwargs(self) -> dict[str, Any]:
        """The :class:`StoreConfig` fields this preset sets."""
        return {
            "num_dense_tokens": self.num_dense_tokens,
            "lora_r": self.lora_r,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": self.lora_dropout,
            "max_content_length": self.max_content_length,
            "max_target_length": self.max_target_length,
        }


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        backbone="facebook/opt-350m",
        description="the paper's settings (OPT-350m, lr 1e-4, batch 512, LoRA r 32, v 4); needs a GPU",
        tokenizer=TokenizerStageSettings(
            learning_rate=1e-4, batch_size=512, per_device_batch_size=64, num_epochs=3.0, bf16=True
        ),
    ),
    "cpu": Preset(
        name="cpu",
        backbone="smollm2-135m",
        description="SmolLM2-135M (offline GGUF) on a catalogue subset, sized for 2 CPU cores",
        lora_r=16,
        lora_alpha=32,
        # LoRA dropout draws a Bernoulli mask per adapted layer: measured at 37% of the forward
        # time of SmolLM2-135M on 2 cores, for little benefit at a few hundred steps.
        lora_dropout=0.0,
        max_content_length=64,
        max_target_length=24,
        # bf16 autocast made training slower on this CPU (forward 5.6 s vs 6.5 s, backward 4.6-7.0 s
        # vs 2.8 s per 8 items); it is used for encoding only.
        tokenizer=TokenizerStageSettings(
            max_items=480,
            learning_rate=5e-4,
            batch_size=16,
            per_device_batch_size=8,
            num_epochs=1.0,
            bf16=False,
        ),
    ),
    "tiny": Preset(
        name="tiny",
        backbone="tiny-opt",
        description="a tiny randomly initialised OPT with SmolLM2's tokenizer: seconds, for tests",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        max_content_length=32,
        max_target_length=12,
        tokenizer=TokenizerStageSettings(
            max_items=64,
            learning_rate=5e-3,
            batch_size=16,
            per_device_batch_size=16,
            num_epochs=1.0,
        ),
    ),
}


def get_preset(name: str, **overrides: Any) -> Preset:
    """A preset by name, with top-level fields overridden (e.g. ``backbone=...``)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
