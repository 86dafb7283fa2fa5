"""Packed recommendation training: one causal pass per user learns every next item at once.

The per-prefix layout (the paper's, and TIGER's/LC-Rec's) turns a user with ``n`` training items
into ``n - 1`` examples, "history codes -> next item codes", so the history is read about
``n / 2`` times over. A decoder reads a whole sequence causally, so one example

    [rec_prefix] codes(i_1) codes(i_2) ... codes(i_n)

with the loss on the codes of ``i_2 .. i_n`` asks exactly what the per-prefix rows ask: the codes
of each item given the prompt prefix and every earlier item. With an empty ``rec_suffix`` (the
template set, :func:`store_hf.templates.packed_templates`) the inference prompt ``[rec_prefix] codes(history)``
is the training context token for token, and for sequences within the history limit the packed
loss equals the token-weighted per-prefix loss (``tests/test_packing.py``).

Sequences longer than ``max_history + 1`` items are cut into windows of ``max_history + 1`` items
that overlap by ``max_history - stride`` items: every item after the first is supervised in
exactly one window, with at least ``max_history + 1 - stride`` items before it (the per-prefix
rows give it ``max_history``); see :func:`packing_windows`.
"""

from __future__ import annotations

from collections.abc import Sequence

# Re-exported: the pipeline and older scripts import it from here.
from .templates import packed_templates  # noqa: E402,F401

IGNORE = -100


def packing_windows(num_items: int, max_history: int, stride: int | None = None) -> list[tuple]:
    """Windows ``(start, stop, first_supervised)`` over a sequence of ``num_items`` items.

    Each window holds at most ``max_history + 1`` items ``[start, stop)``; the loss is taken on
    items ``first_supervised .. stop - 1``. Every item but the first is supervised exactly once.

    Args:
        stride: items between window starts (default ``max_history // 2``, at least 1): smaller
            strides give supervised items longer histories at the cost of more tokens.
    """
    width = max_history + 1
    if num_items <= width:
        return [(0, num_items, 1)] if num_items > 1 else []
    stride = max(1, min(stride if stride is not None else max_history // 2, max_history))
    starts = list(range(0, num_items - width + 1, stride))
    if starts[-1] != num_items - width:
        starts.append(num_items - width)
    windows, done = [], 1  # items before ``done`` are supervised already (or the first item)
    for start in starts:
        windows.append((start, start + width, max(done, start + 1)))
        done = start + width
    return windows


def packed_example(
    prefix: Sequence[int], item_tokens: Sequence[Sequence[int]], first_supervised: int
) -> dict[str, list[int] | int]:
    """``input_ids``, ``labels`` and ``length`` of one packed window: ``prefix`` then every
    item's tokens; labels on the tokens of items ``first_supervised ..``, -100 elsewhere."""
    ids, labels = list(prefix), [IGNORE] * len(prefix)
    for j, tokens in enumerate(item_tokens):
        ids.extend(tokens)
        labels.extend(tokens if j >= first_supervised else [IGNORE] * len(tokens))
    return {"input_ids": ids, "labels": labels, "length": len(ids)}


def user_sequences(
    user_ids: Sequence[str], histories: Sequence[Sequence[str]], targets: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """Whole training sequences back from per-prefix rows (``leave_one_out(...,
    train_targets="all")``: a user's rows are consecutive, the first has the first item as its
    history, each row's target is the next item).

    Returns ``(users, sequences)``, users in first-seen order.
    """
    users: list[str] = []
    sequences: list[list[str]] = []
    seen: set[str] = set()
    for user, history, target in zip(user_ids, histories, targets):
        if not users or users[-1] != user:
            if user in seen:
                raise ValueError(f"the rows of user {user!r} are not consecutive")
            seen.add(user)
            users.append(user)
            sequences.append(list(history))
        sequences[-1].append(target)
    return users, sequences
