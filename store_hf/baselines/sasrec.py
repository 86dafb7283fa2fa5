"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over unique item ids.

The ID-based sequential baseline every generative recommender is compared with. Kept to the
paper's architecture with the training fixes later work found necessary:

* one learned embedding per item (row 0 = padding) plus a learned position embedding, pre-LayerNorm
  blocks of causal self-attention and a point-wise feed-forward net (width = hidden size, ReLU, as
  the paper), a final LayerNorm, and item scores = dot product with the (tied) item embeddings;
* trained with **full softmax cross-entropy over all items** at every position of each training
  sequence (the paper uses binary cross-entropy with one sampled negative, which later studies,
  e.g. Klenitskiy & Vasilev 2023, show under-trains it badly);
* early stopping on a validation metric (default NDCG@10) with patience, keeping the best weights;
* evaluation ranks the target among **all** items (no sampled candidates).

Sequences are right-padded and positions count from the oldest item of the (at most ``max_len``
long) window. With causal attention a position never sees the padding after it, so a history's
scores do not depend on what else is in the batch, and the output at position ``t`` of a long
sequence equals the output for its prefix of length ``t + 1``: training every position is
exactly training on every prefix.

    dataset = load_embedded_dataset()
    splits = leave_one_out(dataset, max_history=50)
    model = SASRec.fit(splits, SASRecConfig(), item_ids=dataset.item_ids)
    ranks = model.rank_targets(splits["test"]["history"], splits["test"]["target"])  # 1-based
    model.recommend([["12", "7"]], k=10)  # -> [[ten item ids]]
    model.save("runs/sasrec"); SASRec.load("runs/sasrec")
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from datasets import DatasetDict
from torch import nn

from ..data.dataset import RecDataset
from ..data.splits import leave_one_out
from ..files import load_tensors_and_config, save_tensors_and_config
from ..metrics import ranking_metrics
from .common import (
    check_same_length,
    length_batches,
    lookup,
    right_pad,
    train_epochs,
    training_sequences,
    validation_rows,
)

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "sasrec.safetensors"
CONFIG_NAME = "sasrec.json"
FORMAT_VERSION = 1


@dataclass
class SASRecConfig:
    """Architecture and training settings.

    Defaults follow the paper's setting for the sparse Amazon sets (2 blocks, 1 head, dropout 0.5,
    ``max_len`` 50, lr 1e-3, batch 128), with width 64 instead of its 50.

    Args:
        hidden_size: item/position embedding and Transformer width.
        num_layers / num_heads: Transformer blocks; attention heads per block.
        dropout: on embeddings, attention weights and residual branches (0.5 in the paper for the
            sparse Amazon sets).
        max_len: longest history the model reads; longer ones keep their last ``max_len`` items.
            Training uses the last ``max_len + 1`` items of each training sequence, as the paper.
        lr / weight_decay: AdamW settings.
        batch_size: training sequences per step.
        epochs: upper bound on passes over the training sequences.
        patience: stop after this many validation checks without improving ``monitor``
            (0 = never stop early; validation still picks the best epoch).
        monitor: ``"ndcg@K"`` or ``"recall@K"`` on the validation split.
        seed: seeds the initialisation, the epoch shuffles and dropout.
    """

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 1
    dropout: float = 0.5
    max_len: int = 50
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    monitor: str = "ndcg@10"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if min(self.hidden_size, self.num_layers, self.num_heads, self.max_len) < 1:
            raise ValueError("hidden_size, num_layers, num_heads and max_len must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.batch_size, self.epochs) < 1 or self.patience < 0:
            raise ValueError("batch_size and epochs must be >= 1, patience >= 0")
        if not re.fullmatch(r"(ndcg|recall)@[1-9]\d*", self.monitor):
            raise ValueError(
                f"monitor must look like 'ndcg@10' or 'recall@10', got {self.monitor!r}"
            )


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, L, H) -> (B, L, H); position ``t`` attends to positions ``<= t`` only."""
        b, length, h = x.shape
        q, k, v = (
            t.view(b, length, self.num_heads, h // self.num_heads).transpose(1, 2)
            for t in self.qkv(x).split(h, dim=2)
        )
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        return self.proj(y.transpose(1, 2).reshape(b, length, h))


class Block(nn.Module):
    """Pre-LayerNorm Transformer block: causal attention, then a point-wise feed-forward net."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        h = config.hidden_size
        self.ln_1 = nn.LayerNorm(h)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(h)
        self.mlp = nn.Sequential(
            nn.Linear(h, h), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(h, h)
        )
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x)))
        return x + self.drop(self.mlp(self.ln_2(x)))


class SASRec(nn.Module):
    """SASRec over a fixed item vocabulary.

    Args:
        item_ids: the catalogue, in a fixed order; item ``item_ids[j]`` has embedding row
            ``j + 1`` (row 0 is padding) and score column ``j``.
        config: :class:`SASRecConfig`.

    Attributes:
        fit_log: one dict per epoch of the last :meth:`fit` (loss, validation metrics, seconds).
    """

    def __init__(self, item_ids: Sequence[str], config: SASRecConfig | None = None) -> None:
        super().__init__()
        self.config = config or SASRecConfig()
        self.item_ids = [str(i) for i in item_ids]
        self.item_index = {item_id: j + 1 for j, item_id in enumerate(self.item_ids)}
        if len(self.item_index) != len(self.item_ids):
            raise ValueError("item_ids contains duplicates")
        if not self.item_ids:
            raise ValueError("item_ids is empty")
        c = self.config
        self.item_emb = nn.Embedding(len(self.item_ids) + 1, c.hidden_size, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.hidden_size)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.ln_f = nn.LayerNorm(c.hidden_size)
        self.apply(self._init_weights)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.fit_log: list[dict] = []

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-style small init: the tied output layer then starts with near-uniform scores
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def device(self) -> torch.device:
        return self.item_emb.weight.device

    # ---- network -------------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids``: (B, L) vocabulary indices, right-padded with 0, ``L <= max_len``.

        Returns hidden states (B, L, H); position ``t`` depends on ``input_ids[:, :t + 1]`` only.
        """
        length = input_ids.shape[1]
        if length > self.config.max_len:
            raise ValueError(f"sequence length {length} > max_len {self.config.max_len}")
        positions = torch.arange(length, device=input_ids.device)
        x = self.drop(self.item_emb(input_ids) + self.pos_emb(positions))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every catalogue item: (..., H) -> (..., num_items); padding is not a column."""
        return hidden @ self.item_emb.weight[1:].T

    # ---- inference -----------------------------------------------------------------------------

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        """Item-id histories -> vocabulary indices, each cut to its last ``max_len`` items.

        Unknown ids and empty histories raise ``ValueError``.
        """
        rows = []
        for history in histories:
            if len(history) == 0:
                raise ValueError("SASRec needs at least one history item; got an empty history")
            rows.append(lookup(list(history)[-self.config.max_len :], self.item_index))
        return rows

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Next-item scores after each history: right-padded (B, L) and lengths (B,) ->
        (B, num_items). Call in eval mode (``recommend``/``rank_targets`` do)."""
        hidden = self(input_ids.to(self.device))
        last = hidden[torch.arange(len(lengths), device=self.device), lengths.to(self.device) - 1]
        return self.item_logits(last)

    def _batched_scores(
        self, histories: Sequence[Sequence[str]], exclude_history: bool, batch_size: int
    ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Yield (row indices (b,), scores (b, num_items)) in eval mode over all histories.

        Rows go in order of length so a batch pads little; every id is checked before any work.
        Excluded items score -inf.
        """
        encoded = self.encode_histories(histories)
        lengths = np.array([len(r) for r in encoded], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")
        was_training = self.training
        self.eval()
        try:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                ids = right_pad([encoded[r] for r in rows], int(lengths[rows].max()))
                scores = self.score(ids, torch.from_numpy(lengths[rows]))
                if exclude_history:
                    # the whole history, not only the max_len items the model reads
                    for i, r in enumerate(rows):
                        cols = torch.tensor(lookup(histories[r], self.item_index)) - 1
                        scores[i, cols.to(self.device)] = float("-inf")
                yield rows, scores
        finally:
            self.train(was_training)

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        exclude_history: bool = False,
        batch_size: int = 256,
    ) -> list[list[str]]:
        """Top-``k`` item ids per history, best first.

        History items are kept by default (STORE ranks the full catalogue); with
        ``exclude_history=True`` they are removed, and fewer than ``k`` come back only when the
        catalogue runs out.
        """
        histories = list(histories)
        k = min(k, self.num_items)
        out: list[list[str]] = [[] for _ in histories]
        for rows, scores in self._batched_scores(histories, exclude_history, batch_size):
            values, cols = scores.topk(k, dim=1)
            for r, vals, top in zip(rows, values.tolist(), cols.tolist()):
                out[r] = [self.item_ids[c] for c, v in zip(top, vals) if v != float("-inf")]
        return out

    def rank_targets(
        self,
        histories: Sequence[Sequence[str]],
        targets: Sequence[str],
        exclude_history: bool = False,
        batch_size: int = 256,
    ) -> np.ndarray:
        """1-based rank of each target among all items, shape ``(len(targets),)``, int64.

        Ties count against the target (rank = number of items scoring >= the target), so a
        constant scorer gets the worst rank, not the best. With ``exclude_history=True`` a target
        that is in its own history gets rank 0 ("not retrieved").
        """
        histories = list(histories)
        check_same_length(histories, targets)
        cols = torch.tensor(lookup(list(targets), self.item_index, "target item id")) - 1
        ranks = np.zeros(len(targets), dtype=np.int64)
        for rows, scores in self._batched_scores(histories, exclude_history, batch_size):
            target_scores = scores.gather(1, cols[torch.from_numpy(rows), None].to(self.device))
            rank = (scores >= target_scores).sum(dim=1)
            rank[target_scores[:, 0] == float("-inf")] = 0
            ranks[rows] = rank.cpu().numpy()
        return ranks

    def evaluate(
        self,
        rows,
        ks: Sequence[int] = (1, 5, 10, 20),
        exclude_history: bool = False,
        batch_size: int = 256,
    ) -> dict[str, float]:
        """Recall@K / NDCG@K on split rows (``history``, ``target`` columns), full ranking."""
        ranks = self.rank_targets(rows["history"], rows["target"], exclude_history, batch_size)
        return ranking_metrics(ranks, ks)

    # ---- training ------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data: RecDataset | DatasetDict,
        config: SASRecConfig | None = None,
        *,
        item_ids: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        callback: Callable[[dict], None] | None = None,
    ) -> SASRec:
        """Train a SASRec and return it with the weights of its best validation epoch.

        Args:
            data: a :class:`RecDataset` (split with ``leave_one_out(max_history=max_len)``) or
                split rows (``DatasetDict`` with ``train`` and optionally ``validation``). The
                training rows are chained back into each user's training sequence
                (:func:`~store_hf.baselines.common.training_sequences`); every position of its
                last ``max_len + 1`` items is a next-item target.
            config: :class:`SASRecConfig` (``seed`` makes the run deterministic on CPU).
            item_ids: the catalogue; default the dataset's items, or for split rows every id in
                any split (first-seen order; only ids, no interactions, come from the eval splits).
            device: where to train.
            callback: called with each epoch's log dict (e.g. to print progress).

        Without validation rows (or an empty validation split) it trains all ``epochs`` and
        keeps the last weights.
        """
        config = config or SASRecConfig()
        if isinstance(data, RecDataset):
            item_ids = data.item_ids if item_ids is None else item_ids
            data = leave_one_out(data, max_history=config.max_len)
        if item_ids is None:
            item_ids = _ids_in_splits(data)
        torch.manual_seed(config.seed)
        model = cls(item_ids, config).to(device)

        windows = [
            lookup(seq[-(config.max_len + 1) :], model.item_index)
            for seq in training_sequences(data["train"])
            if len(seq) >= 2  # one item alone has no next item to predict
        ]
        if not windows:
            raise ValueError("no training sequence with two or more items")
        lengths = np.array([len(w) for w in windows], dtype=np.int64)

        valid = validation_rows(data)
        valid_histories = valid["history"] if valid is not None else None
        valid_targets = valid["target"] if valid is not None else None
        monitor_k = int(config.monitor.split("@")[1])

        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
        )
        shuffle = torch.Generator().manual_seed(config.seed)

        def train_epoch() -> dict:
            total, positions = 0.0, 0
            for batch in length_batches(lengths, config.batch_size, shuffle):
                seq = right_pad([windows[i] for i in batch], int(lengths[batch].max())).to(device)
                hidden = model(seq[:, :-1])
                # label j is item index j + 1; padding (0) becomes -1. Scoring only the real
                # positions skips the (positions x items) logits of the padding.
                labels = seq[:, 1:] - 1
                real = labels >= 0
                loss = F.cross_entropy(model.item_logits(hidden[real]), labels[real])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                n = int(real.sum())
                total += loss.item() * n
                positions += n
            return {"loss": total / positions}

        def validate() -> dict | None:
            if valid is None:
                return None
            ranks = model.rank_targets(valid_histories, valid_targets)
            return ranking_metrics(ranks, sorted({10, monitor_k}))

        model.fit_log = []
        train_epochs(model, config, train_epoch, validate, model.fit_log, "sasrec", callback)
        return model

    # ---- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``sasrec.safetensors`` (weights) and ``sasrec.json`` (config, item ids, log),
        each atomically, with a shared random fingerprint that detects a weights/config pair
        from two different saves (:func:`store_hf.files.save_tensors_and_config`)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {"config": asdict(self.config), "item_ids": self.item_ids, "fit_log": self.fit_log}
        save_tensors_and_config(folder, WEIGHTS_NAME, CONFIG_NAME, tensors, meta, FORMAT_VERSION)

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> SASRec:
        """Read a model written by :meth:`save`, in eval mode."""
        state, meta = load_tensors_and_config(
            folder, WEIGHTS_NAME, CONFIG_NAME, FORMAT_VERSION, device=str(device), what="SASRec"
        )
        model = cls(meta["item_ids"], SASRecConfig(**meta["config"])).to(device)
        model.load_state_dict(state)
        model.fit_log = meta.get("fit_log", [])
        return model.eval()


def _ids_in_splits(splits: DatasetDict) -> list[str]:
    """Every item id in any split's histories and targets, first-seen order."""
    seen: dict[str, None] = {}
    for rows in splits.values():
        for history, target in zip(rows["history"], rows["target"]):
            seen.update(dict.fromkeys(history))
            seen[target] = None
    return list(seen)
