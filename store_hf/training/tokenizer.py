"""Post-pretraining of the dense tokenizer with ``transformers.Trainer`` (paper section 3.1),
and the pipeline's tokenizer stage."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase, Trainer, TrainingArguments

from ..files import write_json_atomic
from ..modeling_store import StoreTokenizerModel
from ..presets import Preset
from ..reporting import tensorboard_logging_dir
from ..templates import default_task_setup
from .arguments import stage_training_arguments, two_rate_optimizer
from .checkpoints import last_checkpoint
from .collators import DenseTokenizerCollator, format_content, tokenize_items

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


def train_tokenizer_stage(
    folder: Path,
    *,
    preset: Preset,
    items: Dataset,
    attributes: list[str],
    trained: bool,
    seed: int,
    eval_items: int,
    checkpoints: Path,
    is_main: bool = True,
    report_to: str | Sequence[str] = "none",
    logging_dir: Path | None = None,
) -> dict[str, Any]:
    """The pipeline's tokenizer stage: post-train a dense tokenizer on a seeded sample of
    ``items`` and save it (with its text tokenizer) to ``folder/model``.

    Args:
        trained: ``False`` for the ablations that read the pretrained backbone as it is.
        eval_items: held-out items (at most a tenth of the catalogue) of the dense-information
            gap measured before and after training.
        checkpoints: the Trainer's checkpoint folder; training resumes from it.
        report_to: the Trainer's logging integrations (see :func:`stage_training_arguments`);
            ``logging_dir``: where TensorBoard writes (``None``: under ``checkpoints``).

    Returns:
        the stage summary (``stage.json``): items, held-out gaps, final loss.
    """
    settings = preset.tokenizer
    if not trained:
        model, tokenizer = build_tokenizer_model(preset, attributes)
        model.merge_lora()  # LoRA starts as the identity (B = 0): this is the backbone
        if is_main:
            model.save_pretrained(folder / "model")
            tokenizer.save_pretrained(folder / "model")
            write_json_atomic(folder / "log_history.json", [])
        return {"trained": False, "train_items": 0, "final_loss": None}
    items = items.shuffle(seed=seed)
    n_eval = min(eval_items, len(items) // 10)
    n_train = min(settings.max_items or len(items), len(items) - n_eval)
    train_items = items.select(range(n_train))
    held_out = items.select(range(len(items) - n_eval, len(items)))
    model, tokenizer = build_tokenizer_model(preset, attributes)
    before = {}
    if n_eval >= 2:  # the scaler must be calibrated before "before" means anything
        calibrate_placeholder_scaler(
            model,
            DenseTokenizerCollator(tokenizer.pad_token_id),
            tokenize_items(train_items, tokenizer, model.config),
        )
        before = dense_information_gap(model, tokenizer, held_out)
    args = stage_training_arguments(checkpoints, settings, seed=seed, report_to=report_to)
    resume = last_checkpoint(checkpoints)
    with tensorboard_logging_dir(logging_dir):
        trainer = train_dense_tokenizer(
            model,
            tokenizer,
            train_items,
            args,
            resume_from_checkpoint=str(resume) if resume else None,
            embedding_learning_rate=settings.embedding_learning_rate,
        )
    after = dense_information_gap(model, tokenizer, held_out) if n_eval >= 2 else {}
    model.merge_lora()
    log = trainer.state.log_history
    if is_main:
        model.save_pretrained(folder / "model")
        tokenizer.save_pretrained(folder / "model")
        write_json_atomic(folder / "log_history.json", log)
    return {
        "trained": True,
        "train_items": n_train,
        "eval_items": n_eval,
        "dense_information_before": before,
        "dense_information_after": after,
        "final_loss": next((h["loss"] for h in reversed(log) if "loss" in h), None),
    }


__all__ = [
    "build_tokenizer_model",
    "calibrate_placeholder_scaler",
    "dense_information_gap",
    "item_texts",
    "train_dense_tokenizer",
    "train_tokenizer_stage",
]
