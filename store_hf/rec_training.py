"""Instruction tuning and evaluation of the generative recommender (paper section 3.3).

Stage 1 trains the recommendation task ("history codes -> next item codes") jointly with the
text-code alignment task ("item text -> item codes") and, optionally, the yes/no scoring task;
stage 2 trains recommendation alone, early-stopped on the validation split. Both stages run on
``Trainer``, so Accelerate, gradient accumulation, bf16 and checkpoints come for free.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from tqdm.auto import tqdm
from transformers import (
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from .collators import format_content
from .data import EVAL_SEED, sample_users
from .metrics import DEFAULT_KS, RankingMetrics, impression_metrics, ranking_metrics
from .modeling_store import StoreForGenerativeRec
from .packing import packed_example, packing_windows, user_sequences
from .presets import RecStageSettings
from .tokenizer_training import stage_training_arguments, two_rate_optimizer

logger = logging.getLogger(__name__)

IGNORE = -100


def _example(prompt: list[int], target: list[int]) -> dict[str, Any]:
    # "length" lets Trainer's length-grouped sampler batch similar lengths without a pass
    # over the data (random batches of this mix of short history prompts and long item texts
    # hold 1.5x as many tokens as length-sorted ones, most of it padding)
    ids = prompt + target
    return {"input_ids": ids, "labels": [IGNORE] * len(prompt) + target, "length": len(ids)}


class RecInstructionData:
    """Tokenized instruction examples (``input_ids`` + ``labels`` on the answer only).

    Args:
        model: the recommender (its catalogue codes and prompt templates are used).
        tokenizer: the backbone's text tokenizer (item text of the alignment task).
    """

    def __init__(self, model: StoreForGenerativeRec, tokenizer: PreTrainedTokenizerBase) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prompts = model.prompts
        self.codes = model.item_codes.cpu()

    def _codes(self, item_ids: Sequence[str]) -> torch.LongTensor:
        return self.codes[self.model.item_rows(item_ids)]

    def recommendation(self, split: Dataset) -> Dataset:
        """One example per row of a split (``history`` -> ``target``)."""
        rows = []
        for history, target in zip(split["history"], split["target"]):
            prompt = self.prompts.recommendation(self._codes(history))
            rows.append(_example(prompt, self.prompts.item_tokens(self._codes([target]))))
        return (
            Dataset.from_list(rows)
            if rows
            else Dataset.from_dict({"input_ids": [], "labels": [], "length": []})
        )

    def packed(self, split: Dataset, stride: int | None = None) -> Dataset:
        """One example per user of a per-prefix training split (per window where the sequence
        is longer than ``max_history + 1`` items): the prompt prefix and the codes of every
        item, the loss on every item after the first (see :mod:`store_hf.packing`).

        Needs the packed templates (an empty ``rec_suffix``), so that inference prompts are
        exactly the contexts seen in training."""
        if self.prompts.pieces["rec_suffix"]:
            raise ValueError(
                "packed training needs an empty templates['rec_suffix'] (text between the "
                "history and the next item would differ between training and inference); build "
                "the recommender with templates=packed_templates(...)"
            )
        _, sequences = user_sequences(split["user_id"], split["history"], split["target"])
        prefix = self.prompts.pieces["rec_prefix"]
        v = self.codes.shape[1]
        rows = []
        for seq in sequences:
            flat = self.prompts.item_tokens(self._codes(seq))
            tokens = [flat[j : j + v] for j in range(0, len(flat), v)]
            for start, stop, first in packing_windows(len(seq), self.prompts.max_history, stride):
                rows.append(packed_example(prefix, tokens[start:stop], first - start))
        if not rows:
            return Dataset.from_dict({"input_ids": [], "labels": [], "length": []})
        return Dataset.from_list(rows)

    def alignment(
        self, items: Dataset, content_attributes: list[str], max_length: int | None = None
    ) -> Dataset:
        """One example per item: its content text (at most ``max_length`` tokens, default the
        model's ``max_content_length``) -> its codes."""
        texts = [format_content(row, content_attributes) for row in items]
        text_ids = self.tokenizer(
            texts,
            truncation=True,
            max_length=max_length or self.model.config.max_content_length,
            add_special_tokens=False,
        )["input_ids"]
        codes = self._codes(items["item_id"])
        rows = [
            _example(self.prompts.alignment(ids), self.prompts.item_tokens(c))
            for ids, c in zip(text_ids, codes)
        ]
        return Dataset.from_list(rows)

    def sampled_impressions(self, split: Dataset, negatives: int, seed: int = 0) -> Dataset:
        """Impressions for sequence-only data: each row's target (label 1) and ``negatives``
        items drawn uniformly from the rest of the catalogue (label 0)."""
        rng = np.random.default_rng(seed)
        catalogue = self.model.config.item_ids
        rows = []
        for user, history, target in zip(split["user_id"], split["history"], split["target"]):
            drawn: list[str] = []
            while len(drawn) < negatives:
                item = catalogue[int(rng.integers(len(catalogue)))]
                if item != target and item not in drawn:
                    drawn.append(item)
            rows.append(
                {
                    "user_id": user,
                    "history": list(history),
                    "candidates": [target, *drawn],
                    "labels": [1] + [0] * negatives,
                }
            )
        return _impressions(rows)

    def logged_impressions(self, impressions: Dataset) -> Dataset:
        """Real impressions (MIND): history and candidates restricted to the catalogue (items
        without text were dropped by the reader); impressions left without a history or a
        candidate are skipped."""
        known = set(self.model.config.item_ids)
        rows = []
        for row in impressions:
            history = [i for i in row["history"] if i in known]
            kept = [(c, y) for c, y in zip(row["candidates"], row["labels"]) if c in known]
            if history and kept:
                rows.append(
                    {
                        "user_id": row["user_id"],
                        "history": history,
                        "candidates": [c for c, _ in kept],
                        "labels": [int(y) for _, y in kept],
                    }
                )
        return _impressions(rows)

    def scoring(self, impressions: Dataset) -> Dataset:
        """Yes/no examples of the scoring mode (paper Figure 7), one per candidate."""
        yes, no = self.prompts.answer_ids
        rows = []
        for history, candidates, labels in zip(
            impressions["history"], impressions["candidates"], impressions["labels"]
        ):
            history_codes = self._codes(history)
            for codes, label in zip(self._codes(candidates), labels):
                prompt = self.prompts.scoring(history_codes, codes)
                rows.append(_example(prompt, [yes if label else no]))
        return Dataset.from_list(rows)


def _impressions(rows: list[dict]) -> Dataset:
    if rows:
        return Dataset.from_list(rows)
    return Dataset.from_dict({"user_id": [], "history": [], "candidates": [], "labels": []})


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


@torch.no_grad()
def rank_targets(
    model: StoreForGenerativeRec,
    split: Dataset,
    k: int = 20,
    num_beams: int | None = None,
    batch_size: int = 16,
    mode: str = "trie",
    show_progress: bool = True,
) -> np.ndarray:
    """Rank of each row's ``target`` among the model's top ``k`` for its ``history``.

    Returns:
        ``(len(split),)`` int64 1-based ranks, ``0`` where the target is not among the top
        ``k`` (the per-user record that paired comparisons of systems need).
    """
    metrics = RankingMetrics((k,))
    for lo in tqdm(range(0, len(split), batch_size), desc="evaluate", disable=not show_progress):
        rows = split[lo : lo + batch_size]
        out = model.recommend(
            rows["history"], k=k, num_beams=num_beams, batch_size=batch_size, mode=mode
        )
        metrics.update(out.item_ids, rows["target"])
    ranks = metrics.ranks()
    return np.where(np.isfinite(ranks), ranks, 0).astype(np.int64)


@torch.no_grad()
def evaluate_recommender(
    model: StoreForGenerativeRec,
    split: Dataset,
    ks: Sequence[int] = DEFAULT_KS,
    num_beams: int | None = None,
    batch_size: int = 16,
    mode: str = "trie",
    show_progress: bool = True,
    return_ranks: bool = False,
) -> dict[str, Any]:
    """Recall@K and NDCG@K of next-item prediction over a split (full ranking: beam search over
    the whole catalogue, ``num_beams`` >= the largest K).

    Returns:
        ``{"recall@K", "ndcg@K", ..., "num_users", "seconds", "users_per_second"}``, plus
        ``"ranks"`` (see :func:`rank_targets`) with ``return_ranks``.
    """
    num_beams = num_beams or max(ks)
    if num_beams < max(ks):
        raise ValueError(f"num_beams={num_beams} must be >= the largest K ({max(ks)})")
    start = time.time()
    ranks = rank_targets(model, split, max(ks), num_beams, batch_size, mode, show_progress)
    seconds = time.time() - start
    metrics = ranking_metrics(ranks, ks)
    metrics |= {
        "seconds": round(seconds, 1),
        "users_per_second": round(len(split) / max(seconds, 1e-9), 2),
    }
    return metrics | {"ranks": ranks} if return_ranks else metrics


@torch.no_grad()
def evaluate_scoring(
    model: StoreForGenerativeRec, impressions: Dataset, batch_size: int = 32
) -> dict[str, float]:
    """Scoring mode per impression (``history``, ``candidates``, 0/1 ``labels``): AUC, MRR,
    NDCG@1/5 averaged over impressions, and GAUC over users (see :mod:`store_hf.metrics`)."""
    sizes = [len(c) for c in impressions["candidates"]]
    histories = [h for h, n in zip(impressions["history"], sizes) for _ in range(n)]
    candidates = [c for cands in impressions["candidates"] for c in cands]
    scores = model.score(histories, candidates, batch_size=batch_size).numpy()
    bounds = np.cumsum([0, *sizes])
    return impression_metrics(
        [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:])],
        [np.asarray(labels) for labels in impressions["labels"]],
        user_ids=list(impressions["user_id"]),
    )


class RecTrainer(Trainer):
    """``Trainer`` whose evaluation also ranks the validation users (``eval_ndcg@10`` ...) when
    ``ranking_split`` is set, so early stopping can follow ranking quality."""

    def __init__(
        self,
        *args,
        ranking_split: Dataset | None = None,
        num_beams: int = 20,
        eval_batch: int = 16,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ranking_split = ranking_split
        self.num_beams = num_beams
        self.eval_batch = eval_batch

    def evaluation_loop(self, *args, **kwargs):
        # extend the loop's metrics (not evaluate()'s result) so that callbacks such as early
        # stopping, and best-model tracking, see the ranking metrics too
        output = super().evaluation_loop(*args, **kwargs)
        if self.ranking_split is not None:
            prefix = kwargs.get("metric_key_prefix", args[3] if len(args) > 3 else "eval")
            # Trainer autocasts its own loss evaluation only: beam search needs it too
            precision = torch.autocast(
                self.args.device.type, dtype=torch.bfloat16, enabled=self.args.bf16
            )
            with precision:
                ranking = self._rank_validation()
            output.metrics.update({f"{prefix}_{k}": v for k, v in ranking.items() if "@" in k})
        return output

    def _rank_validation(self) -> dict:
        return evaluate_recommender(
            self.model,
            self.ranking_split,
            ks=(10,),
            num_beams=max(10, self.num_beams),
            batch_size=self.eval_batch,
            show_progress=False,
        )


def _stage_args(
    output_dir: Path, settings: RecStageSettings, seed: int, epochs: float, **overrides
) -> TrainingArguments:
    sampling = "group_by_length" if settings.group_by_length else "random"
    return stage_training_arguments(
        output_dir,
        replace(settings, num_epochs=epochs),
        seed=seed,
        train_sampling_strategy=sampling,
        **overrides,
    )


def evaluation_steps(num_examples: int, settings: RecStageSettings, epochs: float) -> int:
    """Optimiser steps between two validations of stage 2.

    ``settings.evals_per_epoch`` evaluations per epoch, but at least ``settings.patience + 1``
    over the whole stage: with fewer, early stopping could never stop the stage and the best
    checkpoint would always be the last one. ``settings.eval_steps``, where set, wins.
    """
    if settings.eval_steps:
        return settings.eval_steps
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = max(1, settings.batch_size // (settings.per_device_batch_size * world))
    per_step *= settings.per_device_batch_size * world  # examples per optimiser step
    steps_per_epoch = max(1, math.ceil(num_examples / per_step))
    total = settings.max_steps if settings.max_steps > 0 else math.ceil(steps_per_epoch * epochs)
    interval = max(1, steps_per_epoch // max(1, settings.evals_per_epoch))
    return max(1, min(interval, total // (settings.patience + 1)))


def train_recommender(
    model: StoreForGenerativeRec,
    tokenizer: PreTrainedTokenizerBase,
    splits,
    items: Dataset,
    content_attributes: list[str],
    settings: RecStageSettings,
    output_dir: str | os.PathLike,
    seed: int = 0,
    resume_from_checkpoint: bool | str | None = None,
    impressions: Dataset | None = None,
    eval_seed: int = EVAL_SEED,
) -> dict[str, Any]:
    """Both instruction-tuning stages; the model is left with the best stage-2 weights.

    Args:
        splits: leave-one-out splits (``train``/``validation``), e.g. from ``leave_one_out``.
        items: the item table (alignment task); ``content_attributes`` as the tokenizer's.
        settings: the preset's :class:`RecStageSettings`.
        impressions: training impressions of a click log (MIND), for the scoring task; without
            them the scoring task uses ``settings.scoring_negatives`` sampled negatives per row.
        seed: training seed (which training users, shuffles, dropout); ``eval_seed``: which
            validation users (fixed across training seeds).

    Returns:
        ``{"joint_log", "rec_log", "best_metric", "stopped_at_step", "seconds"}``.
    """
    output_dir = Path(output_dir)
    data = RecInstructionData(model, tokenizer)
    train_rows = sample_users(splits["train"], settings.max_train_users, seed)
    valid_rows = sample_users(splits["validation"], settings.max_eval_users, eval_seed)
    train_users = set(train_rows["user_id"])
    if settings.layout not in ("packed", "per-prefix"):
        raise ValueError(f"layout must be 'packed' or 'per-prefix', got {settings.layout!r}")
    if settings.layout == "packed":
        rec_train = data.packed(train_rows, settings.packing_stride)
    else:
        rec_train = data.recommendation(train_rows)
    # validation loss does not depend on the order: sorted, its batches carry little padding
    rec_valid = data.recommendation(valid_rows).sort("length")
    joint = [rec_train]
    if settings.alignment:
        if settings.alignment_items == "all":
            aligned = items
        else:  # the items the training users interacted with
            seen = {i for h in train_rows["history"] for i in h} | set(train_rows["target"])
            aligned = items.filter(lambda i: i in seen, input_columns="item_id")
        if settings.alignment_max_items and len(aligned) > settings.alignment_max_items:
            aligned = aligned.shuffle(seed=seed).select(range(settings.alignment_max_items))
        joint.append(data.alignment(aligned, content_attributes, settings.alignment_max_length))
    if impressions is not None:  # click logs: the scoring task learns from real impressions
        joint.append(data.scoring(data.logged_impressions(impressions)))
    elif settings.scoring_negatives > 0:
        sampled = data.sampled_impressions(train_rows, settings.scoring_negatives, seed)
        joint.append(data.scoring(sampled))
    joint_ds = concatenate_datasets(joint).shuffle(seed=seed)
    logger.info(
        "recommender data: %d users, %d recommendation, %d joint examples, %d validation rows",
        len(train_users),
        len(rec_train),
        len(joint_ds),
        len(rec_valid),
    )
    collator = RecCollator(model._pad_id())
    code_params = [p for n, p in model.named_parameters() if n.endswith("code_weight")]
    start = time.time()

    by_ndcg = settings.early_stopping_metric != "loss"
    # stage 1 validates at the cadence of stage 2 (no early stopping): the learning curves of
    # both stages show whether more training would help
    joint_eval = evaluation_steps(len(joint_ds), settings, settings.joint_epochs)
    joint_args = _stage_args(
        output_dir / "joint",
        settings,
        seed,
        settings.joint_epochs,
        eval_strategy="steps" if len(rec_valid) else "no",
        eval_steps=joint_eval,
    )
    joint_trainer = RecTrainer(
        model=model,
        args=joint_args,
        train_dataset=joint_ds,
        eval_dataset=rec_valid if len(rec_valid) else None,
        data_collator=collator,
        optimizers=(
            two_rate_optimizer(model, code_params, joint_args, settings.code_learning_rate),
            None,
        ),
        ranking_split=valid_rows if by_ndcg else None,
        num_beams=settings.num_beams,
        eval_batch=settings.eval_batch_size,
    )
    joint_trainer.train(
        resume_from_checkpoint=_resume(output_dir / "joint", resume_from_checkpoint)
    )

    metric = "eval_ndcg@10" if by_ndcg else "eval_loss"
    eval_steps = evaluation_steps(len(rec_train), settings, settings.num_epochs)
    rec_args = _stage_args(
        output_dir / "rec",
        settings,
        seed,
        settings.num_epochs,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=by_ndcg,
        save_total_limit=2,
    )
    rec_trainer = RecTrainer(
        model=model,
        args=rec_args,
        train_dataset=rec_train,
        eval_dataset=rec_valid,
        data_collator=collator,
        optimizers=(
            two_rate_optimizer(model, code_params, rec_args, settings.code_learning_rate),
            None,
        ),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience)],
        ranking_split=valid_rows if by_ndcg else None,
        num_beams=settings.num_beams,
        eval_batch=settings.eval_batch_size,
    )
    rec_trainer.train(resume_from_checkpoint=_resume(output_dir / "rec", resume_from_checkpoint))
    return {
        "joint_log": joint_trainer.state.log_history,
        "rec_log": rec_trainer.state.log_history,
        "best_metric": rec_trainer.state.best_metric,
        "metric_for_best_model": metric,
        "stopped_at_step": rec_trainer.state.global_step,
        "max_steps": rec_trainer.state.max_steps,
        "eval_steps": eval_steps,
        "best_checkpoint": rec_trainer.state.best_model_checkpoint,
        "seconds": round(time.time() - start, 1),
        "num_train_users": len(train_users),
        "num_examples": {"joint": len(joint_ds), "recommendation": len(rec_train)},
        "num_tokens": {
            "joint": sum(joint_ds["length"]),
            "recommendation": sum(rec_train["length"]),
        },
        "layout": settings.layout,
    }


def _resume(stage_dir: Path, resume: bool | str | None) -> bool | str | None:
    """Resume a stage only where it left a checkpoint (a finished stage 1 has one too)."""
    if not resume:
        return None
    has_checkpoint = stage_dir.is_dir() and any(stage_dir.glob("checkpoint-*"))
    return resume if has_checkpoint else None
