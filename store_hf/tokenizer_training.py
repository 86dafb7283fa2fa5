"""Post-pretraining of the dense tokenizer with ``transformers.Trainer`` (paper section 3.1)."""

from __future__ import annotations

import logging
import math
import os

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments

from .backbones import resolve_bf16
from .collators import DenseTokenizerCollator, format_content, tokenize_items
from .modeling_store import StoreTokenizerModel
from .presets import Preset, TokenizerStageSettings
from .templates import default_task_setup

logger = logging.getLogger(__name__)


def build_tokenizer_model(
    preset: Preset,
    attributes: list[str],
    attn_implementation: str | None = None,
    **config_overrides,
) -> tuple[StoreTokenizerModel, PreTrainedTokenizerBase]:
    """A fresh dense tokenizer (with LoRA) around the preset's backbone, with the default task set
    for a catalogue with these item ``attributes``; ``config_overrides`` are StoreConfig fields."""
    content, tasks = default_task_setup(attributes)
    kwargs = {
        "content_attributes": content,
        "tasks": tasks,
        **preset.store_config_kwargs(),
        **config_overrides,
    }
    model, tokenizer = StoreTokenizerModel.from_backbone(
        preset.backbone, attn_implementation=attn_implementation, **kwargs
    )
    return model.add_lora(), tokenizer


def stage_training_arguments(
    output_dir: str | os.PathLike, settings: TokenizerStageSettings, seed: int = 0, **overrides
) -> TrainingArguments:
    """``TrainingArguments`` of a training stage (tokenizer or recommender settings):
    ``settings.batch_size`` samples per optimiser step, reached by gradient accumulation over
    processes and micro-batches."""
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
        report_to="none",
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


def train_dense_tokenizer(
    model: StoreTokenizerModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Dataset,
    args: TrainingArguments,
    eval_items: Dataset | None = None,
    resume_from_checkpoint: bool | str | None = None,
    embedding_learning_rate: float | None = None,
) -> Trainer:
    """Train the dense tokens, task embeddings and LoRA on every (item, task) pair of ``items``.

    Args:
        items: an item table (``RecDataset.items`` or a subset) with the config's attributes.
        args: e.g. from :func:`stage_training_arguments`.
        embedding_learning_rate: a separate learning rate for the dense/task embeddings and the
            placeholder gain (default: ``args.learning_rate`` for everything).

    Returns:
        the ``Trainer`` after training (its ``state.log_history`` has the loss curve).
    """
    train_ds = tokenize_items(items, tokenizer, model.config)
    eval_ds = (
        tokenize_items(eval_items, tokenizer, model.config) if eval_items is not None else None
    )
    collator = DenseTokenizerCollator(tokenizer.pad_token_id)
    if not resume_from_checkpoint:  # a resumed run restores the calibrated buffers
        calibrate_placeholder_scaler(model, collator, train_ds)
    new_params = [
        model.dense_embeddings,
        model.task_embeddings,
        *model.placeholder_scaler.parameters(),
    ]
    optimizer = two_rate_optimizer(model, new_params, args, embedding_learning_rate)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        optimizers=(optimizer, None),
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


def calibrate_placeholder_scaler(
    model: StoreTokenizerModel,
    collator: DenseTokenizerCollator,
    tokenized: Dataset,
    num_items: int = 64,
) -> None:
    """Measure the placeholder scaler's centre/scale on the first ``num_items`` tokenised items."""
    sample = collator([tokenized[i] for i in range(min(num_items, len(tokenized)))])
    model.calibrate_placeholders(
        sample["content_input_ids"].to(model.device),
        sample["content_attention_mask"].to(model.device),
    )


@torch.no_grad()
def dense_information_gap(
    model: StoreTokenizerModel,
    tokenizer: PreTrainedTokenizerBase,
    items: Dataset,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """How much the dense tokens say about their item.

    For every (item, task) pair the target loss is computed twice: with the item's own dense
    tokens and with those of another item of the same batch (a derangement). A tokenizer whose
    dense tokens carry item information gives ``loss_own`` clearly below ``loss_other``.

    Returns:
        ``{"loss_own", "loss_other", "gap", "ppl_own", "ppl_other", "num_targets"}`` (token means).
    """
    model.eval()
    data = tokenize_items(items, tokenizer, model.config)
    collate = DenseTokenizerCollator(tokenizer.pad_token_id)
    gen = torch.Generator().manual_seed(seed)
    sums = {"own": 0.0, "other": 0.0}
    tokens = 0
    for start in range(0, len(data), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
        n = batch["content_input_ids"].shape[0]
        if n < 2:
            continue
        batch = {k: v.to(model.device) for k, v in batch.items()}
        dense = model.encode_dense(batch["content_input_ids"], batch["content_attention_mask"])
        shift = torch.randint(
            1, n, (1,), generator=gen
        ).item()  # a cyclic shift: no item keeps its own
        other = torch.roll(torch.arange(n, device=dense.device), shift)
        idx, labels = batch["task_item_index"], batch["labels"]
        count = int((labels != -100).sum())
        sums["own"] += float(model.target_loss(dense[idx], batch["task_ids"], labels)) * count
        sums["other"] += (
            float(model.target_loss(dense[other][idx], batch["task_ids"], labels)) * count
        )
        tokens += count
    own, other = sums["own"] / max(tokens, 1), sums["other"] / max(tokens, 1)
    return {
        "loss_own": own,
        "loss_other": other,
        "gap": other - own,
        "ppl_own": math.exp(own),
        "ppl_other": math.exp(other),
        "num_targets": tokens,
    }


def item_texts(items: Dataset, content_attributes: list[str]) -> list[str]:
    """Content strings of every item, the input of :meth:`StoreTokenizerModel.encode_items`."""
    return [format_content(row, content_attributes) for row in items]
