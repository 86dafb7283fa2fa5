"""LoRA on a STORE model's backbone, through peft's low-level API.

peft's ``get_peft_model`` would wrap the backbone in a ``PeftModel``; STORE keeps its own
wrapper, so the adapters are injected in place and merged away in place. peft is imported
lazily: a saved model with merged adapters loads without it. Shipped with saved models through
``trust_remote_code``.
"""

from __future__ import annotations

import torch
from torch import nn


def inject_lora(backbone: nn.Module, config, trainable_names: tuple[str, ...] = ()) -> None:
    """Add LoRA adapters to ``config.lora_target_modules`` of ``backbone`` (rank ``lora_r``,
    ``lora_alpha``, ``lora_dropout``) and freeze every other backbone parameter except those
    whose attribute name is in ``trainable_names`` (the recommender's code-token rows)."""
    from peft import LoraConfig, inject_adapter_in_model

    lora_config = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
    )
    inject_adapter_in_model(lora_config, backbone)
    for name, param in backbone.named_parameters():
        param.requires_grad_("lora_" in name or name.rpartition(".")[2] in trainable_names)


@torch.no_grad()
def merge_lora(backbone: nn.Module) -> None:
    """Merge every LoRA adapter of ``backbone`` into its base layer and put the base layer back
    in the adapter's place."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(backbone.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            setattr(parent, child, module.get_base_layer())


__all__ = ["inject_lora", "merge_lora"]
