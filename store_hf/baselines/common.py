"""Helpers the baselines share: rebuilding training sequences from split rows, id lookup,
length-bucketed batches and padding, and the epoch loop with early stopping.

Split rows are what :func:`store_hf.data.leave_one_out` and :func:`store_hf.data.user_split` give:
columns ``user_id`` (str), ``history`` (list of item ids, oldest first) and ``target`` (item id).
Anything indexable by those column names works (a ``datasets.Dataset``, a dict of lists).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: Split rows: a ``datasets.Dataset`` or a mapping of column name -> list.
Rows = Any


def training_sequences(rows: Rows) -> list[list[str]]:
    """Rebuild chronological item sequences from next-item rows, each interaction once.

    ``leave_one_out(..., train_targets="all")`` gives one row per prefix of a user's training
    part, so the same interaction appears in many histories. Consecutive rows of one user whose
    ``history`` is a suffix of the sequence built so far (histories may be truncated to
    ``max_history``) extend it by their ``target``; a row that does not continue the chain starts
    a new sequence. So ``"all"`` rows give back each user's full training sequence, ``"last"``
    rows give ``history + [target]``, and no transition is invented.
    """
    sequences: list[list[str]] = []
    current_user: Any = None
    current: list[str] = []
    for user, history, target in zip(rows["user_id"], rows["history"], rows["target"]):
        history = list(history)
        continues = (
            user == current_user
            and 0 < len(history) <= len(current)
            and current[-len(history) :] == history
        )
        if continues:
            current.append(target)
        else:
            if current:
                sequences.append(current)
            current_user, current = user, history + [target]
    if current:
        sequences.append(current)
    return sequences


def lookup(ids: Sequence[str], index: Mapping[str, int], what: str = "item id") -> list[int]:
    """Map ids to indices, raising ``ValueError`` that names the first unknown id."""
    out = []
    for item_id in ids:
        idx = index.get(item_id)
        if idx is None:
            raise ValueError(f"unknown {what} {item_id!r}: not in the model's item vocabulary")
        out.append(idx)
    return out


def validation_rows(data: Mapping[str, Rows]) -> Rows | None:
    """The ``validation`` split of ``data``, or ``None`` when there is none or it is empty."""
    valid = data.get("validation")
    return None if valid is None or len(valid) == 0 else valid


def check_same_length(histories: Sequence[Any], targets: Sequence[Any]) -> None:
    """ValueError unless there is one target per history."""
    if len(histories) != len(targets):
        raise ValueError(f"{len(histories)} histories but {len(targets)} targets")


def right_pad(rows: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    """Index lists -> ``(len(rows), length)`` long tensor, 0 after each row's items
    (``length`` defaults to the longest row)."""
    length = max(len(r) for r in rows) if length is None else length
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def length_batches(
    lengths: np.ndarray, batch_size: int, generator: torch.Generator
) -> list[np.ndarray]:
    """One epoch of batches (arrays of row indices): rows sorted by length (random order within
    a length), cut into batches, batches in random order. Most sequences are short, so random
    batches would pad nearly all of them to the longest one; this keeps the padding small while
    every epoch still mixes which rows share a batch."""
    tie_break = torch.rand(len(lengths), generator=generator).numpy()
    order = np.lexsort((tie_break, lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def train_epochs(
    module: torch.nn.Module,
    config: Any,
    train_epoch: Callable[[], dict],
    validate: Callable[[], Mapping[str, float] | None],
    log: list[dict],
    name: str,
    callback: Callable[[dict], None] | None = None,
) -> None:
    """Up to ``config.epochs`` passes of ``train_epoch`` (returns the epoch's log entries, e.g.
    ``{"loss": ...}``), each followed by ``validate`` (metrics, or ``None`` without validation
    data); stops early on ``config.monitor`` after ``config.patience`` epochs without a gain
    (:class:`EarlyStopping`), then loads the best weights into ``module`` and leaves it in eval
    mode. Each epoch's entry is appended to ``log`` and passed to ``callback``."""
    patience, monitor = config.patience, config.monitor
    stopper = EarlyStopping(patience)
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        module.train()
        entry = {"epoch": epoch, **train_epoch()}
        metrics = validate()
        seconds = time.perf_counter() - started
        if stopper.end_epoch(entry, metrics, monitor, module, seconds, log, name, callback):
            break
    stopper.restore(module)
    module.eval()


class EarlyStopping:
    """Tracks a validation metric (higher is better) over epochs, keeps the best weights and
    says when ``patience`` epochs have passed without improvement (``patience=0``: never)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0
        self.bad = 0
        self._state: dict | None = None

    def update(self, value: float, epoch: int, module) -> bool:
        """Record one epoch's metric; returns whether it is the best so far."""
        if value > self.best:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self._state = copy.deepcopy(module.state_dict())
            return True
        self.bad += 1
        return False

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.bad >= self.patience

    def end_epoch(
        self,
        entry: dict,
        metrics: Mapping[str, float] | None,
        monitor: str,
        module,
        seconds: float,
        log: list[dict],
        name: str,
        callback: Callable[[dict], None] | None = None,
    ) -> bool:
        """Finish one epoch: add the validation ``metrics`` (``None``: no validation split) and
        the time to ``entry``, append it to ``log``, report it; returns whether to stop."""
        if metrics is not None:
            entry.update({f"valid_{k}": v for k, v in metrics.items() if k != "num_users"})
            entry["best"] = self.update(metrics[monitor], entry["epoch"], module)
        entry["seconds"] = round(seconds, 3)
        log.append(entry)
        logger.info("%s %s", name, entry)
        if callback is not None:
            callback(entry)
        if metrics is not None and self.should_stop:
            logger.info(
                "%s: early stop at epoch %d; best %s %.4f at epoch %d",
                name,
                entry["epoch"],
                monitor,
                self.best,
                self.best_epoch,
            )
            return True
        return False

    def restore(self, module) -> None:
        """Load the best epoch's weights into ``module`` (no-op before any update)."""
        if self._state is not None:
            module.load_state_dict(self._state)
