"""Train/validation/test splits of user sequences.

Every split is a ``datasets.DatasetDict`` with the same columns, one row per prediction:
``user_id`` (str), ``history`` (list of item ids, oldest first, at most ``max_history`` long) and
``target`` (the item id to predict).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from datasets import Dataset, DatasetDict

from .dataset import RecDataset
from .errors import DataFormatError

TrainTargets = Literal["all", "last"]

#: Seed of the evaluation samples (validation users for early stopping, test users ranked by
#: ``store-hf evaluate``, the examples and ``benchmarks/quality.py``). It is fixed and separate
#: from the training seed, so runs with different training seeds are ranked on the same users
#: and their spread measures the models, not which users were drawn.
EVAL_SEED = 0
#: The samples of test users that tuning has looked at (every tuning round ranked eval seed 0
#: at one of these sizes): the confirmation sample is drawn from the test users outside them.
TUNING_SAMPLES: tuple[tuple[int, int], ...] = (
    (EVAL_SEED, 2000),
    (EVAL_SEED, 1000),
    (EVAL_SEED, 300),
)
CONFIRMATION_SEED = 20261203


def _rows_for(user: str, seq: list[str], start: int, stop: int, max_history: int) -> list[dict]:
    """One row per target position ``start <= t < stop`` of ``seq``."""
    return [
        {"user_id": user, "history": seq[max(0, t - max_history) : t], "target": seq[t]}
        for t in range(max(start, 1), stop)
    ]


def _to_dataset(rows: list[dict]) -> Dataset:
    if not rows:
        return Dataset.from_dict({"user_id": [], "history": [], "target": []})
    return Dataset.from_list(rows)


def leave_one_out(
    dataset: RecDataset, max_history: int = 20, train_targets: TrainTargets = "all"
) -> DatasetDict:
    """The standard protocol: per user, the last item is the test target, the second-to-last the
    validation target, and the earlier items are training data.

    Args:
        max_history: keep only the last ``max_history`` items before each target.
        train_targets: ``"all"`` gives one training row per position of the training part (every
            prefix predicts its next item, as TIGER and LC-Rec train); ``"last"`` only the last one.

    Users need at least 3 interactions (one training item); shorter sequences raise, since the
    readers already drop them with a count.
    """
    if max_history < 1:
        raise DataFormatError("must be >= 1", field="max_history")
    train, valid, test = [], [], []
    for user, seq in zip(dataset.sequences["user_id"], dataset.sequences["item_ids"]):
        if len(seq) < 3:
            raise DataFormatError(
                f"user {user!r} has {len(seq)} interactions; leave-one-out needs 3 (read with min_sequence_length=3)",
                field="item_ids",
            )
        n = len(seq)
        train.extend(
            _rows_for(user, seq, 1 if train_targets == "all" else n - 3, n - 2, max_history)
        )
        valid.extend(_rows_for(user, seq, n - 2, n - 1, max_history))
        test.extend(_rows_for(user, seq, n - 1, n, max_history))
    return DatasetDict(
        train=_to_dataset(train), validation=_to_dataset(valid), test=_to_dataset(test)
    )


def user_split(
    dataset: RecDataset,
    num_test_users: int,
    num_validation_users: int = 0,
    num_train_users: int | None = None,
    max_history: int = 20,
    train_targets: TrainTargets = "all",
    seed: int = 0,
) -> DatasetDict:
    """The STORE paper's protocol: disjoint users for fine-tuning and for test.

    Users are shuffled with ``seed``; the first ``num_test_users`` form the test split, the next
    ``num_validation_users`` the validation split (both predict each user's last item from the
    items before it), and the next ``num_train_users`` (default: all the rest) the training split.
    """
    n_users = dataset.num_users
    n_train = (
        n_users - num_test_users - num_validation_users
        if num_train_users is None
        else num_train_users
    )
    if (
        min(num_test_users, num_validation_users, n_train) < 0
        or num_test_users + num_validation_users + n_train > n_users
    ):
        raise DataFormatError(
            f"asked for {num_test_users} test + {num_validation_users} validation + {n_train} train users, "
            f"the dataset has {n_users}",
            field="num_test_users",
        )
    order = np.random.default_rng(seed).permutation(n_users)
    users = dataset.sequences["user_id"]
    seqs = dataset.sequences["item_ids"]
    parts = {
        "test": order[:num_test_users],
        "validation": order[num_test_users : num_test_users + num_validation_users],
        "train": order[
            num_test_users + num_validation_users : num_test_users + num_validation_users + n_train
        ],
    }
    out = {}
    for split, idx in parts.items():
        rows: list[dict] = []
        for i in sorted(idx.tolist()):
            seq, n = seqs[i], len(seqs[i])
            first = 1 if split == "train" and train_targets == "all" else n - 1
            rows.extend(_rows_for(users[i], seq, first, n, max_history))
        out[split] = _to_dataset(rows)
    return DatasetDict(train=out["train"], validation=out["validation"], test=out["test"])


def sample_users(split: Dataset, max_users: int | None, seed: int = 0) -> Dataset:
    """The rows of at most ``max_users`` users of ``split``, chosen uniformly at random (all
    rows of each chosen user, in their original order); ``split`` itself when it has no more
    users than that or ``max_users`` is None. The choice depends only on the set of user ids
    and ``seed``, so every system evaluated with the same arguments sees the same users."""
    if max_users is None:
        return split
    users = sorted(set(split["user_id"]))
    if len(users) <= max_users:
        return split
    keep = set(np.random.default_rng(seed).choice(users, size=max_users, replace=False).tolist())
    return split.filter(lambda u: u in keep, input_columns="user_id")


def confirmation_sample(split: Dataset, max_users: int = 2000) -> Dataset:
    """Test users held back for final tables: ``max_users`` users of ``split`` drawn (as
    :func:`sample_users` draws, with ``CONFIRMATION_SEED``) from the users outside every
    ``TUNING_SAMPLES`` sample, so that no setting was chosen while looking at them.

    Raises:
        ValueError: fewer than ``max_users`` users lie outside the tuning samples.
    """
    seen: set = set()
    for seed, size in TUNING_SAMPLES:
        seen.update(sample_users(split, size, seed)["user_id"])
    fresh = split.filter(lambda u: u not in seen, input_columns="user_id")
    available = len(set(fresh["user_id"]))
    if available < max_users:
        raise ValueError(
            f"only {available} test users lie outside the tuning samples {TUNING_SAMPLES}; "
            f"a confirmation sample of {max_users} needs more"
        )
    return sample_users(fresh, max_users, CONFIRMATION_SEED)
