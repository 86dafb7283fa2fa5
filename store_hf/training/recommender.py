"""Instruction tuning of the generative recommender (paper section 3.3), and the pipeline's
recommender stage.

Stage 1 trains the recommendation task ("history codes -> next item codes") jointly with the
text-code alignment task ("item text -> item codes") and, optionally, the yes/no scoring task;
stage 2 trains recommendation alone, early-stopped on the validation split. Both stages run on
``Trainer``, so Accelerate, gradient accumulation, bf16 and checkpoints come for free.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from transformers import (
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from ..backbones import resolve_bf16
from ..data import EVAL_SEED, sample_users
from ..evaluation import evaluate_recommender
from ..files import write_json_atomic
from ..modeling_store import StoreForGenerativeRec
from ..presets import RecStageSettings
from ..reporting import tensorboard_logging_dir
from .arguments import stage_training_arguments, two_rate_optimizer
from .checkpoints import last_checkpoint
from .collators import RecCollator
from .instructions import RecInstructionData

logger = logging.getLogger(__name__)


class RecTrainer(Trainer):
    """``Trainer`` whose evaluation also ranks the validation users (``eval_ndcg@10`` ...) when
    ``ranking_split`` is set, so early stopping can follow ranking quality.

    Args:
        loss_normalizer: where set, every training step's summed token loss is divided by this
            constant (labelled tokens per optimiser step, on average over the stage) instead of
            by the step's own labelled tokens, so that each labelled token, hence each
            supervised item, has the same gradient weight whatever batch it falls in.
        schedule: ``(offset, total, warmup)`` optimiser steps: a cosine schedule with linear
            warmup over ``total`` steps of which this trainer runs the steps from ``offset`` on
            (one schedule over two stages); ``None``: the Trainer's own schedule.
        rank_bf16: rank the validation users on a bf16 copy of the model, as the evaluate stage
            ranks the test users (the trained weights stay fp32); otherwise on the model itself,
            under bf16 autocast where the Trainer trains in bf16.
    """

    def __init__(
        self,
        *args,
        ranking_split: Dataset | None = None,
        num_beams: int = 20,
        eval_batch: int = 16,
        loss_normalizer: float | None = None,
        schedule: tuple[int, int, int] | None = None,
        rank_bf16: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ranking_split = ranking_split
        self.num_beams = num_beams
        self.eval_batch = eval_batch
        self.loss_normalizer = loss_normalizer
        self.schedule = schedule
        self.rank_bf16 = rank_bf16

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        # the training loop's count of labelled tokens per optimiser step is the loss divisor
        batches, count = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.loss_normalizer is not None and count is not None:
            count = torch.tensor(self.loss_normalizer, dtype=torch.float32, device=device)
        return batches, count

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.schedule is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        offset, total, warmup = self.schedule

        def factor(step: int) -> float:
            t = step + offset
            if t < warmup:
                return (t + 1) / max(1, warmup)
            progress = min(1.0, (t - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        optimizer = optimizer if optimizer is not None else self.optimizer
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    def evaluation_loop(self, *args, **kwargs):
        # extend the loop's metrics (not evaluate()'s result) so that callbacks such as early
        # stopping, and best-model tracking, see the ranking metrics too
        output = super().evaluation_loop(*args, **kwargs)
        if self.ranking_split is not None:
            prefix = kwargs.get("metric_key_prefix", args[3] if len(args) > 3 else "eval")
            ranking = self._rank_validation()
            output.metrics.update({f"{prefix}_{k}": v for k, v in ranking.items() if "@" in k})
        return output

    def _rank_validation(self) -> dict:
        model = self.model
        if self.rank_bf16:
            # casting weights once beats autocast's cast of every weight in every beam step
            # (benchmarks/evaluation.py); a copy, since training goes on in fp32
            model = copy.deepcopy(model).to(torch.bfloat16)
        # otherwise: the Trainer autocasts its own loss evaluation only, beam search needs it too
        autocast = self.args.bf16 and not self.rank_bf16
        with torch.autocast(self.args.device.type, dtype=torch.bfloat16, enabled=autocast):
            return evaluate_recommender(
                model,
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
    overrides.setdefault("max_grad_norm", resolve_max_grad_norm(settings))
    return stage_training_arguments(
        output_dir,
        replace(settings, num_epochs=epochs),
        seed=seed,
        train_sampling_strategy=sampling,
        # the learning curves are drawn against training tokens (report.py)
        include_num_input_tokens_seen="non_padding",
        **overrides,
    )


def resolve_max_grad_norm(settings: RecStageSettings) -> float:
    """The gradient-clipping norm of a recommender stage (0: none): ``settings.max_grad_norm``,
    or where unset none under constant loss normalisation (clipping would rescale every step to
    the same norm, undoing it) and the Trainer's 1.0 under per-step normalisation."""
    if settings.max_grad_norm is not None:
        return settings.max_grad_norm
    return 0.0 if settings.loss_normalization == "constant" else 1.0


def steps_per_epoch(num_examples: int, settings: RecStageSettings) -> int:
    """Optimiser steps of one epoch over ``num_examples`` (``settings.batch_size`` examples per
    step over every process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = max(1, settings.batch_size // (settings.per_device_batch_size * world))
    per_step *= settings.per_device_batch_size * world  # examples per optimiser step
    return max(1, math.ceil(num_examples / per_step))


def labelled_tokens_per_step(train: Dataset, settings: RecStageSettings) -> float:
    """Mean labelled (loss-bearing) tokens per optimiser step of an epoch over ``train``, over
    every process: the constant divisor of ``loss_normalization="constant"``. Counted as the
    Trainer counts them (labels after the causal shift)."""
    labelled = sum(int(np.count_nonzero(np.asarray(row[1:]) != -100)) for row in train["labels"])
    return labelled / steps_per_epoch(len(train), settings)


def _stage_steps(num_examples: int, settings: RecStageSettings, epochs: float) -> int:
    if settings.max_steps > 0:
        return settings.max_steps
    return math.ceil(steps_per_epoch(num_examples, settings) * epochs)


def _trainer(
    model: StoreForGenerativeRec,
    args: TrainingArguments,
    train: Dataset,
    valid: Dataset,
    settings: RecStageSettings,
    ranking_split: Dataset | None,
    callbacks: list[TrainerCallback] | None = None,
    schedule: tuple[int, int, int] | None = None,
) -> RecTrainer:
    """A stage's trainer: code-token rows at ``settings.code_learning_rate``, validation loss on
    ``valid`` (none where it is empty), with ``ranking_split`` ranking metrics, the loss divided
    as ``settings.loss_normalization`` says and, with ``schedule``, a shared schedule (see
    :class:`RecTrainer`)."""
    code_params = [p for n, p in model.named_parameters() if n.endswith("code_weight")]
    constant = settings.loss_normalization == "constant" and len(train) > 0
    return RecTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=valid if len(valid) else None,
        data_collator=RecCollator(model._pad_id()),
        optimizers=(
            two_rate_optimizer(model, code_params, args, settings.code_learning_rate),
            None,
        ),
        callbacks=[*(callbacks or []), _Timed()],
        ranking_split=ranking_split,
        num_beams=settings.num_beams,
        eval_batch=settings.eval_batch_size,
        loss_normalizer=labelled_tokens_per_step(train, settings) if constant else None,
        schedule=schedule,
        rank_bf16=resolve_bf16(settings.eval_bf16),
    )


def evaluation_steps(
    num_examples: int, settings: RecStageSettings, epochs: float, early_stopping: bool = True
) -> int:
    """Optimiser steps between two validations of a stage.

    ``settings.evals_per_epoch`` evaluations per epoch, but, for a stage that stops early (stage
    2), at least ``settings.patience + 1`` over the whole stage: with fewer, early stopping could
    never stop the stage and the best checkpoint would always be the last one. Stage 1 does not
    stop early (``early_stopping=False``): its validations only draw its learning curve. The interval is stretched so that the last
    validation falls on the stage's last step: the Trainer validates the final step anyway, and
    an interval that does not divide the stage ends it with two validations a step or two
    apart (each 1,000-user validation of the ``full`` preset costs 2-3 minutes on 2 cores).
    ``settings.eval_steps``, where set, wins.
    """
    if settings.eval_steps:
        return settings.eval_steps
    total = _stage_steps(num_examples, settings, epochs)
    least = settings.patience + 1 if early_stopping else 1
    interval = max(1, steps_per_epoch(num_examples, settings) // max(1, settings.evals_per_epoch))
    interval = max(1, min(interval, total // least))
    stretched = math.ceil(total / max(1, total // interval))
    # rounding up can cost a short stage a validation: never below patience + 1 for it
    needed = min(least, math.ceil(total / interval))
    return stretched if math.ceil(total / stretched) >= needed else interval


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
    report_to: str | Sequence[str] = "none",
    logging_dir: str | os.PathLike | None = None,
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
        report_to: the Trainers' logging integrations (see
            :func:`~store_hf.training.stage_training_arguments`); ``logging_dir``: where
            TensorBoard writes, ``joint/`` and ``rec/`` for the two stages (``None``: under
            ``output_dir``).

    Returns:
        ``{"joint_log", "rec_log", "best_metric", "stopped_at_step", "seconds"}``.
    """
    check_rec_settings(settings)
    output_dir = Path(output_dir)
    # the two stages restart the step count: each its own TensorBoard run
    logs = {s: None if logging_dir is None else Path(logging_dir) / s for s in ("joint", "rec")}
    data = RecInstructionData(model, tokenizer)
    train_rows = sample_users(splits["train"], settings.max_train_users, seed)
    valid_rows = sample_users(splits["validation"], settings.max_eval_users, eval_seed)
    train_users = set(train_rows["user_id"])
    if settings.layout == "packed":
        rec_train = data.packed(train_rows, settings.packing_stride)
    else:
        rec_train = data.recommendation(train_rows)
    # validation loss does not depend on the order: sorted, its batches carry little padding
    # (a stable argsort: Dataset.sort makes pyarrow warn of a deprecated option on every run)
    rec_valid = data.recommendation(valid_rows)
    rec_valid = rec_valid.select(np.argsort(np.asarray(rec_valid["length"]), kind="stable"))
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
    start = time.time()

    by_ndcg = settings.early_stopping_metric != "loss"
    # stage 1 validates at the cadence of stage 2 (without its patience floor: stage 1 does
    # not stop early): the learning curves of both stages show whether more training would help
    joint_eval = evaluation_steps(
        len(joint_ds), settings, settings.joint_epochs, early_stopping=False
    )
    schedules: dict[str, tuple[int, int, int] | None] = {"joint": None, "rec": None}
    if settings.lr_schedule == "continuous":  # one cosine over stage 1 and stage 2's cap
        first = _stage_steps(len(joint_ds), settings, settings.joint_epochs)
        total = first + _stage_steps(len(rec_train), settings, settings.num_epochs)
        warmup = math.ceil(settings.warmup_ratio * total)
        schedules = {"joint": (0, total, warmup), "rec": (first, total, warmup)}
    joint_args = _stage_args(
        output_dir / "joint",
        settings,
        seed,
        settings.joint_epochs,
        report_to=report_to,
        eval_strategy="steps" if len(rec_valid) else "no",
        eval_steps=joint_eval,
    )
    with tensorboard_logging_dir(logs["joint"]):
        joint_trainer = _trainer(
            model,
            joint_args,
            joint_ds,
            rec_valid,
            settings,
            valid_rows if by_ndcg else None,
            schedule=schedules["joint"],
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
        report_to=report_to,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=by_ndcg,
        save_total_limit=2,
    )
    with tensorboard_logging_dir(logs["rec"]):
        rec_trainer = _trainer(
            model,
            rec_args,
            rec_train,
            rec_valid,
            settings,
            valid_rows if by_ndcg else None,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience)],
            schedule=schedules["rec"],
        )
    # stage 2 restarts the learning-rate schedule (warmup to the peak again) and can leave the
    # model worse than stage 1 did: stage 1's last validation competes for the best model
    last = next((h for h in reversed(joint_trainer.state.log_history) if metric in h), None)
    if last is not None and last.get("step") == joint_trainer.state.global_step:
        stage1_metric = last[metric]
    else:  # stage 1 did not validate its final weights
        stage1_metric = rec_trainer.evaluate().get(metric) if len(rec_valid) else None
    stage1_weights = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rec_trainer.train(resume_from_checkpoint=_resume(output_dir / "rec", resume_from_checkpoint))
    stage2_kept = keep_better_stage(
        model, stage1_weights, stage1_metric, rec_trainer.state.best_metric, by_ndcg
    )
    return {
        "joint_log": joint_trainer.state.log_history,
        "rec_log": rec_trainer.state.log_history,
        "stage1_metric": stage1_metric,
        "stage2_kept": stage2_kept,
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
        "finetune": settings.finetune,
        "loss_normalization": settings.loss_normalization,
        "loss_normalizer": {
            "joint": joint_trainer.loss_normalizer,
            "rec": rec_trainer.loss_normalizer,
        },
        "lr_schedule": settings.lr_schedule,
        "max_grad_norm": rec_trainer.args.max_grad_norm,  # what both stages clipped at
        "num_validation_users": len(valid_rows),
        "validation_seconds": round(_validation_seconds(joint_trainer, rec_trainer), 1),
    }


class _Timed(TrainerCallback):
    """Wall time spent in evaluations (validation loss and ranking)."""

    def __init__(self) -> None:
        self.seconds, self._start = 0.0, None

    def on_step_end(self, args, state, control, **kwargs):
        self._start = time.perf_counter()  # an evaluation, if any, follows the step

    def on_evaluate(self, args, state, control, **kwargs):
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None


def _validation_seconds(*trainers: RecTrainer) -> float:
    return sum(
        cb.seconds
        for t in trainers
        for cb in t.callback_handler.callbacks
        if isinstance(cb, _Timed)
    )


CHOICES = {
    "finetune": ("lora", "full"),
    "loss_normalization": ("constant", "batch"),
    "lr_schedule": ("per-stage", "continuous"),
    "layout": ("packed", "per-prefix"),
}


def check_rec_settings(settings: RecStageSettings) -> None:
    """Refuse a recommender setting outside its choices, naming the field."""
    for field, allowed in CHOICES.items():
        value = getattr(settings, field)
        if value not in allowed:
            raise ValueError(
                f"recommender.{field} must be one of {', '.join(map(repr, allowed))}, got {value!r}"
            )


@torch.no_grad()
def keep_better_stage(
    model: torch.nn.Module,
    stage1_weights: dict[str, torch.Tensor],
    stage1_metric: float | None,
    stage2_metric: float | None,
    greater_is_better: bool,
) -> bool:
    """Whether stage 2's best model beat stage 1's last one on the validation metric; where it
    did not, the trainable weights go back to ``stage1_weights`` (a tie keeps stage 1, the
    shorter training). Without both metrics stage 2's model is kept."""
    if stage1_metric is None or stage2_metric is None:
        return True
    better = stage2_metric > stage1_metric if greater_is_better else stage2_metric < stage1_metric
    if not better:
        logger.info(
            "stage 2's best validation %.4f did not beat stage 1's %.4f: keeping stage 1's model",
            stage2_metric,
            stage1_metric,
        )
        params = dict(model.named_parameters())
        for name, value in stage1_weights.items():
            params[name].copy_(value)
    return better


def train_recommender_stage(
    folder: Path,
    *,
    tokenizer_dir: Path,
    item_ids: list[str],
    codes: np.ndarray,
    codebook_size: int,
    dense: torch.Tensor | None,
    splits,
    items: Dataset,
    settings: RecStageSettings,
    checkpoints: Path,
    seed: int,
    eval_seed: int,
    impressions: Dataset | None = None,
    codebook_dir: Path | None = None,
    is_main: bool = True,
    report_to: str | Sequence[str] = "none",
    logging_dir: Path | None = None,
) -> dict[str, Any]:
    """The pipeline's recommender stage: build the recommender from the trained tokenizer and
    the catalogue's codes, train both stages, save the best model to ``folder/model``.

    Args:
        tokenizer_dir: the tokenizer stage's ``model`` folder.
        item_ids / codes: the catalogue, ``(num_items, v)`` codes with ``codebook_size`` values
            per position.
        dense: ``(num_items, v, hidden)`` dense tokens where code rows start from them
            (``settings.code_init == "dense"``), else ``None`` (default initialisation).
        codebook_dir: a fitted codebook folder, copied into the model so that it can code new
            items.
        report_to / logging_dir: as :func:`train_recommender`'s.

    Returns:
        the stage summary (``stage.json``).
    """
    from ..backbones import load_tokenizer
    from ..modeling_store import StoreTokenizerModel
    from ..semantic_ids import code_embeddings_from_dense
    from ..templates import packed_templates

    check_rec_settings(settings)
    tok_model = StoreTokenizerModel.from_pretrained(tokenizer_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    code_rows = None
    if dense is not None:
        code_rows = code_embeddings_from_dense(
            tok_model, dense, torch.as_tensor(codes), codebook_size
        )
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model,
        tokenizer,
        item_ids,
        codes,
        codebook_size=codebook_size,
        code_embeddings=code_rows,
        lora_r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        max_history=settings.max_history,
        # packed training: no text between the history and the next item
        **(
            {"templates": packed_templates(tok_model.config.templates)}
            if settings.layout == "packed"
            else {}
        ),
    )
    if settings.finetune == "lora":
        rec.add_lora()
    else:  # every weight trains: the backbone at learning_rate, the code rows at theirs
        rec.requires_grad_(True)
    result = train_recommender(
        rec,
        tokenizer,
        splits,
        items,
        rec.config.content_attributes,
        settings,
        checkpoints,
        seed=seed,
        resume_from_checkpoint=True,
        impressions=impressions,
        eval_seed=eval_seed,
        report_to=report_to,
        logging_dir=logging_dir,
    )
    if settings.finetune == "lora":
        rec.merge_lora()
    if is_main:
        model_dir = folder / "model"
        rec.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        if codebook_dir is not None:
            shutil.copytree(codebook_dir, model_dir / "codebook")
        logs = {"joint": result["joint_log"], "rec": result["rec_log"]}
        write_json_atomic(folder / "log_history.json", logs)
    return {k: v for k, v in result.items() if not k.endswith("_log")}


def _resume(stage_dir: Path, resume: bool | str | None) -> str | None:
    """Resume a stage only where it left a complete checkpoint (a finished stage 1 has one
    too); an explicit checkpoint path is used as given."""
    if not resume:
        return None
    if isinstance(resume, str):
        return resume
    found = last_checkpoint(stage_dir)
    return str(found) if found else None


__all__ = [
    "RecTrainer",
    "check_rec_settings",
    "evaluation_steps",
    "labelled_tokens_per_step",
    "keep_better_stage",
    "train_recommender",
    "train_recommender_stage",
]
