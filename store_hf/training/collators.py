"""Batches of both training stages: item rows to dense-tokenizer batches (content formatting,
tokenisation, padding), and padded instruction examples of the recommender."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..configuration_store import StoreConfig
from ..templates import format_content

#: label of the tokens that carry no loss (prompts, padding): the ignore index of cross-entropy
IGNORE = -100


def tokenize_items(
    items: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    config: StoreConfig,
    num_proc: int | None = None,
) -> Dataset:
    """Tokenise an item table once for all epochs.

    Returns a Dataset with ``item_id``, ``content_ids`` (list of int, at most
    ``config.max_content_length``) and ``target_ids`` (one list per task in ``config.tasks``, each
    ending with EOS, at most ``config.max_target_length`` long; empty where the item lacks that
    attribute, so the task is skipped for it).
    """
    missing = [
        a
        for a in {*config.content_attributes, *(t["attribute"] for t in config.tasks)}
        if a not in items.column_names
    ]
    if missing:
        raise ValueError(
            f"the item table has no attribute(s) {sorted(missing)}; it has {items.column_names}"
        )
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id; targets need an end marker")
    max_target = config.max_target_length - 1

    def encode(batch: dict[str, list]) -> dict[str, list]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        content = tokenizer(
            [format_content(r, config.content_attributes) for r in rows],
            truncation=True,
            max_length=config.max_content_length,
        )["input_ids"]
        targets = []
        for task in config.tasks:
            texts = [r[task["attribute"]] for r in rows]
            ids = tokenizer(
                texts, add_special_tokens=False, truncation=True, max_length=max_target
            )["input_ids"]
            targets.append([t + [eos] if text else [] for t, text in zip(ids, texts)])
        return {
            "content_ids": content,
            "target_ids": [list(per_item) for per_item in zip(*targets)],
        }

    return items.map(
        encode,
        batched=True,
        remove_columns=[c for c in items.column_names if c != "item_id"],
        num_proc=num_proc,
        desc="tokenize items",
    )


@dataclass
class DenseTokenizerCollator:
    """Pads a list of tokenised items (from :func:`tokenize_items`) into one batch for
    :meth:`StoreTokenizerModel.forward`: content left-padded once per item, one sample per
    (item, task) with a non-empty target, labels right-padded with -100."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        content = [f["content_ids"] for f in features]
        width = max(len(c) for c in content)
        content_ids = torch.full((len(content), width), self.pad_token_id, dtype=torch.long)
        content_mask = torch.zeros((len(content), width), dtype=torch.long)
        for row, ids in enumerate(content):
            content_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            content_mask[row, width - len(ids) :] = 1
        item_index, task_ids, targets = [], [], []
        for row, f in enumerate(features):
            for task, ids in enumerate(f["target_ids"]):
                if ids:
                    item_index.append(row)
                    task_ids.append(task)
                    targets.append(ids)
        t_width = max((len(t) for t in targets), default=1)
        labels = torch.full((len(targets), t_width), -100, dtype=torch.long)
        for row, ids in enumerate(targets):
            labels[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {
            "content_input_ids": content_ids,
            "content_attention_mask": content_mask,
            "task_item_index": torch.tensor(item_index, dtype=torch.long),
            "task_ids": torch.tensor(task_ids, dtype=torch.long),
            "labels": labels,
        }


class RecCollator:
    """Right-pads ``input_ids``/``labels`` into ``(B, L)`` tensors with an attention mask."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
