"""Ranking quality of a generative recommender: per-user target ranks, Recall/NDCG@K over a
split (full ranking by constrained beam search), the scoring mode's per-impression metrics, and
the pipeline's evaluate stage."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from .backbones import resolve_bf16
from .files import write_json_atomic
from .metrics import DEFAULT_KS, impression_metrics, ranking_metrics, target_ranks
from .modeling_store import StoreForGenerativeRec
from .presets import RecStageSettings


@torch.no_grad()
def rank_targets(
    model: StoreForGenerativeRec,
    split: Dataset,
    k: int = 20,
    num_beams: int | None = None,
    batch_size: int = 16,
    mode: str = "trie",
    show_progress: bool = True,
    exclude_history: bool = False,
) -> np.ndarray:
    """Rank of each row's ``target`` among the model's top ``k`` for its ``history``.

    With ``exclude_history`` the items of a row's own history are dropped from its beams before
    the top ``k`` is taken, and each batch searches ``num_beams`` plus its longest history beams,
    so that ``k`` items remain after the drop (a target in its own history gets rank 0).

    Returns:
        ``(len(split),)`` int64 1-based ranks, ``0`` where the target is not among the top
        ``k`` (the per-user record that paired comparisons of systems need).
    """
    num_beams = num_beams or k
    ranks = []
    for lo in tqdm(range(0, len(split), batch_size), desc="evaluate", disable=not show_progress):
        rows = split[lo : lo + batch_size]
        beams = num_beams + (max(map(len, rows["history"])) if exclude_history else 0)
        beams = min(beams, len(model.config.item_ids))
        out = model.recommend(
            rows["history"], k=beams, num_beams=beams, batch_size=batch_size, mode=mode
        )
        exclude = rows["history"] if exclude_history else None
        top = target_ranks(out.item_ids, rows["target"], exclude=exclude)
        ranks.append(np.where(top <= k, top, 0))
    return np.concatenate(ranks).astype(np.int64) if ranks else np.zeros(0, dtype=np.int64)


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
    exclude_history: bool = False,
) -> dict[str, Any]:
    """Recall@K and NDCG@K of next-item prediction over a split (full ranking: beam search over
    the whole catalogue, ``num_beams`` >= the largest K; ``exclude_history``: see
    :func:`rank_targets`).

    Returns:
        ``{"recall@K", "ndcg@K", ..., "num_users", "seconds", "users_per_second"}``, plus
        ``"ranks"`` (see :func:`rank_targets`) with ``return_ranks``.
    """
    num_beams = num_beams or max(ks)
    if num_beams < max(ks):
        raise ValueError(f"num_beams={num_beams} must be >= the largest K ({max(ks)})")
    start = time.time()
    ranks = rank_targets(
        model, split, max(ks), num_beams, batch_size, mode, show_progress, exclude_history
    )
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


def evaluate_stage(
    folder: Path,
    *,
    model_dir: Path,
    test: Dataset,
    num_test_users: int,
    train: Dataset,
    settings: RecStageSettings,
    impressions: Dataset | None = None,
    eval_seed: int = 0,
) -> dict[str, Any]:
    """The pipeline's evaluate stage: rank ``test`` with the recommender in ``model_dir`` and
    with most-popular (fitted on ``train``), write ``metrics.json`` and ``ranks.json`` (every
    test user's target rank per system) into ``folder``.

    Args:
        num_test_users: the size of the whole test split (``test`` may be a sample of it).
        impressions: held-out impressions of a click log for the scoring mode; without them the
            scoring mode is evaluated on sampled negatives where it was trained with them.

    Returns:
        the stage summary: ``{"metrics", "note", "scoring"}``.
    """
    from .baselines import MostPopular

    rec = StoreForGenerativeRec.from_pretrained(model_dir)
    bf16 = resolve_bf16(settings.eval_bf16)
    if bf16:
        rec = rec.to(torch.bfloat16)
    ks = (1, 5, 10, 20)
    num_beams = max(settings.num_beams, max(ks))
    store = evaluate_recommender(
        rec,
        test,
        ks=ks,
        num_beams=num_beams,
        batch_size=settings.eval_batch_size,
        return_ranks=True,
    )
    popular = MostPopular().fit(train, item_ids=rec.config.item_ids)
    popular_ranks = popular.rank_targets(test["history"], test["target"])
    ranks = {"STORE": store.pop("ranks"), "MostPopular": popular_ranks}
    metrics = {
        "STORE": store | {"bf16": bf16},
        "MostPopular": ranking_metrics(popular_ranks, ks),
    }
    # per-user record: any two systems (or runs) can later be compared user by user
    write_json_atomic(folder / "ranks.json", {"user_id": list(test["user_id"]), "ranks": ranks})
    scoring = _scoring(rec, test, settings, impressions, eval_seed)
    note = (
        f"leave-one-out test split, {len(test)} of {num_test_users} users"
        + (" (random subset)" if len(test) < num_test_users else "")
        + f", full ranking over {len(rec.config.item_ids)} items, beam size {num_beams}"
    )
    result = {"systems": metrics, "note": note}
    if scoring:
        result["scoring"] = scoring
    write_json_atomic(folder / "metrics.json", result)
    return {"metrics": metrics, "note": note, "scoring": scoring}


def _scoring(
    rec: StoreForGenerativeRec,
    test: Dataset,
    settings: RecStageSettings,
    impressions: Dataset | None,
    eval_seed: int,
) -> dict[str, Any]:
    """Scoring mode on held-out impressions (click logs) or, where the scoring task was
    trained with sampled negatives, on the test targets plus 19 sampled items."""
    from .training.instructions import RecInstructionData

    data = RecInstructionData(rec, None)
    if impressions is not None:
        impressions, source = data.logged_impressions(impressions), "held-out logged impressions"
    elif settings.scoring_negatives > 0:
        impressions = data.sampled_impressions(test, 19, seed=eval_seed + 1)
        source = "test target + 19 sampled negatives per user"
    else:
        return {}
    if len(impressions) == 0:
        return {}
    return {**evaluate_scoring(rec, impressions), "impressions": source}


__all__ = ["evaluate_recommender", "evaluate_scoring", "evaluate_stage", "rank_targets"]
