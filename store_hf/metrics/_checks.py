"""Input checks shared by the metrics: one ValueError per kind of bad input, naming it.

numpy only; torch tensors are accepted and copied to numpy (torch is never imported here).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of ``x``; torch tensors (any device, bfloat16 too) are detached and copied."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if getattr(x, "is_floating_point", lambda: False)():
            x = x.double()
        return x.numpy()
    return np.asarray(x)


def _positive_int(value: Any, message: str, below_one: str = "") -> int:
    """``value`` as an int >= 1 (bools refused); ``ValueError(f"{message}, got {value!r}")``
    otherwise, with ``below_one`` added to the message when it is an integer < 1."""
    if isinstance(value, bool):
        raise ValueError(f"{message}, got {value!r}")
    try:
        n = operator.index(value)
    except TypeError:
        raise ValueError(f"{message}, got {value!r}") from None
    if n < 1:
        raise ValueError(f"{message}{below_one}, got {n}")
    return n


def _check_ks(ks: Sequence[int] | int, name: str = "ks") -> tuple[int, ...]:
    """Validate cut-offs: a non-empty sequence of integers >= 1 (a single int is accepted)."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = (ks,)
    try:
        items = list(ks)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers >= 1, got {ks!r}") from None
    if not items:
        raise ValueError(f"{name} must contain at least one cut-off K")
    message = f"{name} must contain integers >= 1"
    return tuple(_positive_int(k, message, " (K < 1 is undefined)") for k in items)


def _check_num_resamples(num_resamples: int) -> int:
    return _positive_int(num_resamples, "num_resamples must be an integer >= 1")


def _check_list_of_lists(value: Any, name: str) -> None:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of sequences, got a single {type(value)}")


def _numeric_per_user(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 ``(num_users,)`` array; ValueError naming ``name`` if it is not
    numeric (or bool) or not 1-D."""
    a = _to_numpy(x)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (num_users,), got shape {tuple(a.shape)}")
    return a


def _check_ranks(ranks: Any, name: str = "ranks") -> np.ndarray:
    """Validate 1-based ranks (0 or inf = not retrieved); return float64 with inf for misses."""
    r = _numeric_per_user(ranks, name)
    if np.isnan(r).any():
        raise ValueError(f"{name} contains NaN; use 0 or inf for a target that was not retrieved")
    if (r < 0).any():
        raise ValueError(f"{name} must be >= 1 (or 0 / inf = not retrieved), got {r[r < 0][0]}")
    finite = np.isfinite(r)
    if (r[finite] != np.floor(r[finite])).any():
        bad = r[finite][r[finite] != np.floor(r[finite])][0]
        raise ValueError(f"{name} must be whole numbers (1-based ranks), got {bad}")
    return np.where(r == 0, np.inf, r)


def _check_binary_labels(labels: np.ndarray, name: str) -> np.ndarray:
    if labels.dtype == object or not (
        np.issubdtype(labels.dtype, np.number) or np.issubdtype(labels.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be 0/1 (or bool), got dtype {labels.dtype}")
    labels = labels.astype(np.float64)
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        raise ValueError(f"{name} must be 0/1 (or bool), found {labels[bad][0].item()!r}")
    return labels


def _check_scores(scores: np.ndarray, name: str) -> np.ndarray:
    if scores.dtype == object or not (
        np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.bool_)
    ):
        raise ValueError(f"{name} must be numeric, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError(f"{name} contains NaN")
    return scores


def _check_values(values: Any, name: str) -> np.ndarray:
    """Validate per-user values: a non-empty 1-D numeric array without NaN / inf; float64."""
    v = _numeric_per_user(values, name)
    if v.shape[0] == 0:
        raise ValueError(f"{name} is empty; at least one user is needed")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN or inf")
    return v


def _check_confidence(confidence: float) -> float:
    if isinstance(confidence, bool) or not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)
