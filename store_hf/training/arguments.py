"""``TrainingArguments`` and the optimiser shared by both training stages (tokenizer and
recommender)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from transformers import TrainingArguments

from ..backbones import resolve_bf16
from ..presets import RecStageSettings, TokenizerStageSettings
from ..reporting import parse_report_to


def stage_training_arguments(
    output_dir: str | os.PathLike,
    settings: TokenizerStageSettings | RecStageSettings,
    seed: int = 0,
    report_to: str | Sequence[str] = "none",
    **overrides,
) -> TrainingArguments:
    """``TrainingArguments`` of a training stage (tokenizer or recommender settings):
    ``settings.batch_size`` samples per optimiser step, reached by gradient accumulation over
    processes and micro-batches.

    ``report_to``: the run's logging integrations (``"none"``, ``"tensorboard"``,
    ``"tensorboard,wandb"``, ``["trackio"]``, ``"all"``; see
    :func:`store_hf.reporting.parse_report_to`); ``overrides`` replace any argument."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    accumulation = max(1, settings.batch_size // (settings.per_device_batch_size * world))
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.per_device_batch_size,
        per_device_eval_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.num_epochs,
        max_steps=settings.max_steps,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type="cosine",
        weight_decay=0.0,
        bf16=resolve_bf16(settings.bf16),
        logging_steps=1,
        save_strategy="steps",
        save_steps=50,
        save_total_limit=1,
        eval_strategy="no",
        prediction_loss_only=True,
        remove_unused_columns=False,
        # a comma-separated string becomes the list TrainingArguments takes
        report_to=parse_report_to(report_to) or "none",
        seed=seed,
        dataloader_num_workers=0,
        # bf16 on a machine without an accelerator means CPU autocast, which Trainer only allows
        # when told explicitly.
        use_cpu=not torch.cuda.is_available(),
    )
    kwargs.update(overrides)
    return TrainingArguments(**kwargs)


def two_rate_optimizer(
    model: torch.nn.Module,
    new_params: list[torch.nn.Parameter],
    args: TrainingArguments,
    new_learning_rate: float | None,
) -> torch.optim.Optimizer | None:
    """AdamW with ``new_learning_rate`` for parameters that start from scratch (dense, task or
    code-token embeddings) and ``args.learning_rate`` for the rest (LoRA, which only nudges a
    pretrained model). ``None`` (the Trainer's default optimiser) when no separate rate is set."""
    if new_learning_rate is None:
        return None
    new_ids = {id(p) for p in new_params}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in new_ids]
    return torch.optim.AdamW(
        [
            {"params": rest, "lr": args.learning_rate},
            {"params": list(new_params), "lr": new_learning_rate},
        ],
        weight_decay=args.weight_decay,
    )


__all__ = ["stage_training_arguments", "two_rate_optimizer"]
