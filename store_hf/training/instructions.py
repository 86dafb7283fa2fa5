"""The recommender's instruction examples (paper section 3.3, Figures 5 and 7): tokenised
``input_ids`` with ``labels`` on the answer only, for the recommendation, text-code alignment
and yes/no scoring tasks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from ..modeling_store import StoreForGenerativeRec
from ..packing import packed_example, packing_windows, user_sequences
from .collators import IGNORE, format_content


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


__all__ = ["RecInstructionData"]
