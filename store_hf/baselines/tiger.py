"""TIGER (Rajput et al., NeurIPS 2023): generative retrieval of semantic IDs with a small T5.

Every item is a tuple of ``v`` codes (its semantic ID, from :mod:`store_hf.semantic_ids.rqvae`:
3 RQ-VAE codes + 1 collision code). The recommender is a transformers
``T5ForConditionalGeneration`` trained from scratch:

* vocabulary: ``pad`` (0, also the decoder start), ``eos`` (1), then the ``v * k`` code tokens
  laid out as in :mod:`store_hf.trie` (code ``c`` at position ``p`` is token
  ``2 + p * k + c``), then optionally ``num_user_tokens`` hashed user-id tokens (TIGER uses 2000);
* encoder input: the codes of the last ``max_history`` history items, flattened oldest first
  (``[user token]``, codes..., ``eos``); decoder target: the next item's ``v`` codes;
* training: teacher-forced cross-entropy on every prefix of each training sequence (the rows of
  ``leave_one_out(train_targets="all")``), AdamW with warmup and cosine decay, early stopping on
  validation NDCG@10 (or Recall@10) of a fixed user sample, keeping the best weights;
* inference: ``generate`` with beam search, ``max_new_tokens = v`` and
  :class:`~store_hf.trie.TrieLogitsProcessor`, so every beam is a catalogue item. The decoder
  sequence is ``[pad, c_0, ..., c_{v-1}]``: the processor reads depth 0 after the non-code
  ``pad``, then ``1 .. v-1`` from the trailing code tokens, which is exactly its rule.

The ranked list of a history is its ``num_beams`` beams, best first; a target that no beam
reached gets rank 0 (not retrieved), so Recall@K is only defined for ``K <= num_beams``.

    rq = RQVAE(384); codes = rq.fit(item_embeddings)          # (N, 4)
    splits = leave_one_out(dataset, max_history=20)
    model = TIGER.fit(splits, codes, TIGERConfig(), item_ids=dataset.item_ids)
    model.recommend([["12", "7"]], k=10)                       # -> [[ten item ids]]
    model.evaluate(splits["test"], ks=(1, 5, 10, 20))
    model.save("runs/tiger/model"); TIGER.load("runs/tiger/model")
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from ..files import load_tensors_and_config, save_tensors_and_config
from ..metrics import ranking_metrics, target_ranks
from ..trie import CodeTrie, TrieLogitsProcessor, code_token_ids, token_ids_to_codes
from .common import (
    Rows,
    check_same_length,
    length_batches,
    lookup,
    right_pad,
    train_epochs,
    validation_rows,
)

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "tiger.safetensors"
CONFIG_NAME = "tiger.json"
FORMAT_VERSION = 1
PAD, EOS = 0, 1
CODE_OFFSET = 2  # first code token id


@dataclass
class TIGERConfig:
    """Architecture and training settings.

    The architecture is TIGER's (4 + 4 layers, d_model 128, 6 heads of 64, dropout 0.1) with a
    narrower feed-forward (512 instead of 1024) to suit a CPU.

    Args:
        d_model / d_kv / d_ff / num_layers / num_heads / dropout: T5 settings; ``num_layers``
            for the encoder and for the decoder.
        max_history: history items the encoder reads (the last ones).
        num_user_tokens: hashed user-id tokens prepended to the encoder input (TIGER: 2000);
            0 = none. When > 0, ``recommend``/``rank_targets`` need ``user_ids``.
        lr / weight_decay / warmup_steps: AdamW with linear warmup, then cosine decay to 10 %
            over ``epochs``.
        batch_size: training rows per step.
        epochs: upper bound on passes over the training rows.
        patience: stop after this many validation checks without improving ``monitor``
            (0 = never stop early; validation still picks the best epoch).
        monitor: ``"ndcg@K"`` or ``"recall@K"`` on the validation sample, ``K <= num_beams``.
        num_beams: beams (= length of the ranked list) for ``rank_targets`` / ``evaluate``.
        valid_max_users: validation rows used for early stopping (a fixed random sample; beam
            search over all of them each epoch is slow on a CPU); ``None`` = all.
        eval_batch_size: histories per ``generate`` call (each runs ``num_beams`` beams).
        seed: seeds the initialisation, the epoch shuffles and dropout; ``eval_seed`` the
            validation sample (fixed apart from ``seed``).
    """

    d_model: int = 128
    d_kv: int = 64
    d_ff: int = 512
    num_layers: int = 4
    num_heads: int = 6
    dropout: float = 0.1
    max_history: int = 20
    num_user_tokens: int = 0
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 200
    batch_size: int = 256
    epochs: int = 30
    patience: int = 4
    monitor: str = "ndcg@10"
    num_beams: int = 20
    valid_max_users: int | None = 2000
    eval_batch_size: int = 64
    seed: int = 0
    eval_seed: int = 0  # the validation sample: fixed apart from ``seed``

    def __post_init__(self) -> None:
        if min(self.d_model, self.d_kv, self.d_ff, self.num_layers, self.num_heads) < 1:
            raise ValueError("d_model, d_kv, d_ff, num_layers and num_heads must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if min(self.max_history, self.batch_size, self.epochs, self.num_beams) < 1:
            raise ValueError("max_history, batch_size, epochs and num_beams must be >= 1")
        if self.patience < 0 or self.num_user_tokens < 0 or self.warmup_steps < 0:
            raise ValueError("patience, num_user_tokens and warmup_steps must be >= 0")
        match = re.fullmatch(r"(ndcg|recall)@([1-9]\d*)", self.monitor)
        if not match:
            raise ValueError(f"monitor must look like 'ndcg@10', got {self.monitor!r}")
        if int(match.group(2)) > self.num_beams:
            raise ValueError(f"monitor {self.monitor} needs num_beams >= {match.group(2)}")


class TIGER:
    """A T5 that generates the semantic ID of the next item.

    (About 320 lines: one baseline's whole life cycle, build, train, rank, save and load, kept in
    one class like SASRec's so that the two read side by side; the shared parts are in
    :mod:`store_hf.baselines.common`.)

    Args:
        item_ids: the catalogue, in a fixed order; row ``j`` of ``codes`` is ``item_ids[j]``.
        codes: ``(N, v)`` integer semantic IDs, unique rows (use :func:`store_hf.semantic_ids.disambiguate`).
        config: :class:`TIGERConfig`.
        codebook_size: ``k``, code tokens per position; default ``codes.max() + 1``. One ``k``
            serves every position (the trie's token layout), so a collision position smaller
            than the RQ-VAE codebooks simply leaves some of its tokens unused.

    Attributes:
        model: the ``T5ForConditionalGeneration``.
        trie: :class:`~store_hf.trie.CodeTrie` of the catalogue's codes.
        fit_log: one dict per epoch of the last :meth:`fit`.
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        codes: np.ndarray | torch.Tensor,
        config: TIGERConfig | None = None,
        codebook_size: int | None = None,
    ) -> None:
        self.config = c = config or TIGERConfig()
        self.item_ids = [str(i) for i in item_ids]
        self.item_index = {item_id: j for j, item_id in enumerate(self.item_ids)}
        if len(self.item_index) != len(self.item_ids):
            raise ValueError("item_ids contains duplicates")
        codes = np.asarray(torch.as_tensor(codes).cpu().numpy(), dtype=np.int64)
        if codes.ndim != 2 or len(codes) != len(self.item_ids):
            raise ValueError(f"codes must be ({len(self.item_ids)}, v), got {codes.shape}")
        if len(np.unique(codes, axis=0)) != len(codes):
            raise ValueError("codes are not unique per item; add the collision position first")
        self.codes = codes
        self.codebook_size = int(codebook_size or codes.max() + 1)
        self.trie = CodeTrie(codes, self.codebook_size, CODE_OFFSET)
        # item j's v tokens, (N, v)
        self.item_tokens = code_token_ids(codes, self.codebook_size, CODE_OFFSET)
        self.user_offset = self.trie.code_vocab_end  # first user token
        self.model = T5ForConditionalGeneration(
            T5Config(
                vocab_size=self.user_offset + c.num_user_tokens,
                d_model=c.d_model,
                d_kv=c.d_kv,
                d_ff=c.d_ff,
                num_layers=c.num_layers,
                num_decoder_layers=c.num_layers,
                num_heads=c.num_heads,
                dropout_rate=c.dropout,
                feed_forward_proj="relu",
                pad_token_id=PAD,
                eos_token_id=EOS,
                decoder_start_token_id=PAD,
                tie_word_embeddings=True,
            )
        )
        self.fit_log: list[dict] = []

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_positions(self) -> int:
        """``v``, codes per item."""
        return self.codes.shape[1]

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> TIGER:
        self.model.to(device)
        return self

    # ---- inputs --------------------------------------------------------------------------------

    def user_token(self, user_id: str) -> int:
        """The hashed token of a user id (crc32, stable across runs unlike ``hash``)."""
        return self.user_offset + zlib.crc32(str(user_id).encode()) % self.config.num_user_tokens

    def encode_histories(
        self, histories: Sequence[Sequence[str]], user_ids: Sequence[str] | None = None
    ) -> list[list[int]]:
        """Item-id histories -> encoder token lists ``[user]? codes of the last max_history
        items... eos``. Unknown ids raise ``ValueError``; an empty history is just ``[eos]``."""
        use_users = self.config.num_user_tokens > 0
        if use_users and (user_ids is None or len(user_ids) != len(histories)):
            raise ValueError("this model reads user tokens: pass one user id per history")
        rows = []
        for r, history in enumerate(histories):
            items = lookup(list(history)[-self.config.max_history :], self.item_index)
            tokens = self.item_tokens[items].flatten().tolist()
            head = [self.user_token(user_ids[r])] if use_users else []
            rows.append(head + tokens + [EOS])
        return rows

    def _batch(self, rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Right-padded ``input_ids`` and ``attention_mask``, (B, L), on the model's device."""
        ids = right_pad(rows)  # pads with 0 = PAD
        return {"input_ids": ids.to(self.device), "attention_mask": (ids != PAD).to(self.device)}

    # ---- inference -----------------------------------------------------------------------------

    @torch.no_grad()
    def generate_items(
        self,
        histories: Sequence[Sequence[str]],
        num_beams: int | None = None,
        user_ids: Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> list[list[int]]:
        """Constrained beam search: per history, catalogue rows of the beams, best first.

        Returns ``len(histories)`` lists of at most ``num_beams`` distinct item indices (fewer
        only when the catalogue has fewer items than beams).
        """
        beams = min(num_beams or self.config.num_beams, self.num_items)
        batch_size = batch_size or self.config.eval_batch_size
        encoded = self.encode_histories(histories, user_ids)
        v = self.num_positions
        # eos is the escape hatch for a beam with no valid continuation (only possible when
        # beams outnumber a trie level's prefixes); such beams decode to -1 and are dropped.
        processor = TrieLogitsProcessor(self.trie, eos_token_id=EOS)
        order = np.argsort([len(r) for r in encoded], kind="stable")  # little padding per batch
        out: list[list[int]] = [[] for _ in encoded]
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                seq = self.model.generate(
                    **self._batch([encoded[r] for r in rows]),
                    num_beams=beams,
                    num_return_sequences=beams,
                    max_new_tokens=v,
                    min_new_tokens=0,
                    do_sample=False,
                    length_penalty=0.0,
                    early_stopping=True,
                    decoder_start_token_id=PAD,
                    pad_token_id=PAD,
                    eos_token_id=EOS,
                    logits_processor=LogitsProcessorList([processor]),
                )  # (b * beams, <= 1 + v): [pad, codes...]
                tail = seq[:, 1 : 1 + v]
                if tail.shape[1] < v:  # every beam ended early (cannot happen with a real trie)
                    tail = torch.nn.functional.pad(tail, (0, v - tail.shape[1]), value=PAD)
                codes = token_ids_to_codes(tail.cpu(), self.codebook_size, CODE_OFFSET, False)
                items = self.trie.lookup(codes).view(len(rows), beams).tolist()
                for r, found in zip(rows, items):
                    # dict.fromkeys dedupes, keeping the best-first order
                    out[r] = [i for i in dict.fromkeys(found) if i >= 0]
        finally:
            self.model.train(was_training)
        return out

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        user_ids: Sequence[str] | None = None,
        num_beams: int | None = None,
    ) -> list[list[str]]:
        """Top-``k`` item ids per history, best first (beam search with ``max(k, num_beams)``
        beams; history items are not excluded)."""
        beams = max(k, num_beams or self.config.num_beams)
        found = self.generate_items(histories, beams, user_ids)
        return [[self.item_ids[j] for j in items[:k]] for items in found]

    def rank_targets(
        self,
        histories: Sequence[Sequence[str]],
        targets: Sequence[str],
        user_ids: Sequence[str] | None = None,
        num_beams: int | None = None,
        exclude_history: bool = False,
    ) -> np.ndarray:
        """1-based position of each target in its beam list, 0 if no beam reached it;
        ``(len(targets),)`` int64.

        With ``exclude_history`` the history's items are dropped from the beams (a target in
        its own history gets rank 0); ``max_history`` more beams are searched, so that
        ``num_beams`` items remain after the drop."""
        check_same_length(histories, targets)
        lookup(list(targets), self.item_index, "target item id")  # fail before the slow part
        k = num_beams or self.config.num_beams
        beams = k + (self.config.max_history if exclude_history else 0)
        found = self.generate_items(histories, beams, user_ids)
        lists = [[self.item_ids[j] for j in items] for items in found]
        exclude = [list(h) for h in histories] if exclude_history else None
        ranks = target_ranks(lists, list(targets), exclude=exclude)
        return np.where(ranks <= k, ranks, 0)

    def evaluate(
        self, rows: Rows, ks: Sequence[int] = (1, 5, 10, 20), num_beams: int | None = None
    ) -> dict[str, float]:
        """Recall@K / NDCG@K on split rows (``history``, ``target`` and, with user tokens,
        ``user_id`` columns), with ``max(max(ks), num_beams)`` beams."""
        beams = max(max(ks), num_beams or self.config.num_beams)
        users = rows["user_id"] if self.config.num_user_tokens else None
        ranks = self.rank_targets(rows["history"], rows["target"], users, beams)
        return ranking_metrics(ranks, ks)

    # ---- training ------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        data,
        codes: np.ndarray | torch.Tensor,
        config: TIGERConfig | None = None,
        *,
        item_ids: Sequence[str],
        codebook_size: int | None = None,
        device: str | torch.device = "cpu",
        callback: Callable[[dict], None] | None = None,
    ) -> TIGER:
        """Train a TIGER and return it with the weights of its best validation epoch.

        Args:
            data: split rows, a ``DatasetDict``/mapping with ``train`` and optionally
                ``validation`` (``leave_one_out(dataset, max_history, train_targets="all")``:
                every prefix of a training sequence is one teacher-forced example).
            codes: ``(N, v)`` unique semantic IDs, row ``j`` for ``item_ids[j]``.
            config: :class:`TIGERConfig` (``seed`` makes the run deterministic on CPU).
            item_ids: the catalogue.
            codebook_size: see :class:`TIGER`.
            device: where to train.
            callback: called with each epoch's log dict.

        Without validation rows it trains all ``epochs`` and keeps the last weights.
        """
        config = config or TIGERConfig()
        torch.manual_seed(config.seed)  # weight init and dropout
        model = cls(item_ids, codes, config, codebook_size).to(device)
        train = data["train"]
        users = train["user_id"] if config.num_user_tokens else None
        inputs = model.encode_histories(train["history"], users)
        labels = model.item_tokens[lookup(list(train["target"]), model.item_index, "target")]
        if not inputs:
            raise ValueError("no training rows")

        valid = validation_rows(data)
        if valid is not None and config.valid_max_users and len(valid) > config.valid_max_users:
            # a fixed sample, so every epoch is scored on the same users
            pick = np.random.default_rng(config.eval_seed).choice(
                len(valid), config.valid_max_users, replace=False
            )
            valid = valid.select(np.sort(pick)) if hasattr(valid, "select") else valid
        monitor_k = int(config.monitor.split("@")[1])

        net = model.model
        optimizer = torch.optim.AdamW(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        warmup = min(config.warmup_steps, total_steps // 2)

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        shuffle = torch.Generator().manual_seed(config.seed)
        lengths = np.array([len(r) for r in inputs])

        def train_epoch() -> dict:
            started, total = time.perf_counter(), 0.0
            for batch in length_batches(lengths, config.batch_size, shuffle):
                enc = model._batch([inputs[i] for i in batch])
                loss = net(**enc, labels=labels[batch].to(model.device)).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(batch)
            seconds = round(time.perf_counter() - started, 3)
            return {"loss": total / len(inputs), "train_seconds": seconds}

        def validate() -> dict | None:
            return None if valid is None else model.evaluate(valid, sorted({10, monitor_k}))

        model.fit_log = []
        train_epochs(net, config, train_epoch, validate, model.fit_log, "tiger", callback)
        return model

    # ---- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``tiger.safetensors`` (T5 weights) and ``tiger.json`` (config, item ids, codes,
        log), each atomically, with a shared random fingerprint that detects a mixed pair
        (:func:`store_hf.files.save_tensors_and_config`)."""
        # tied embeddings: state_dict holds the shared matrix under several names; one copy each
        tensors = {
            k: v.detach().cpu().contiguous().clone() for k, v in self.model.state_dict().items()
        }
        meta = {
            "config": asdict(self.config),
            "codebook_size": self.codebook_size,
            "item_ids": self.item_ids,
            "codes": self.codes.tolist(),
            "fit_log": self.fit_log,
        }
        # one JSON line: the code table has a row per item
        save_tensors_and_config(
            folder, WEIGHTS_NAME, CONFIG_NAME, tensors, meta, FORMAT_VERSION, indent=None
        )

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> TIGER:
        """Read a model written by :meth:`save`, in eval mode."""
        state, meta = load_tensors_and_config(
            folder, WEIGHTS_NAME, CONFIG_NAME, FORMAT_VERSION, what="TIGER"
        )
        model = cls(
            meta["item_ids"],
            np.array(meta["codes"], dtype=np.int64),
            TIGERConfig(**meta["config"]),
            meta["codebook_size"],
        )
        model.model.load_state_dict(state)
        model.fit_log = meta.get("fit_log", [])
        model.to(device)
        model.model.eval()
        return model
