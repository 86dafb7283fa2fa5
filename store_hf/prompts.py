"""Instruction prompts of the generative recommender (paper Figures 5 and 7), built in token space.

The template texts live in ``templates``; here code tokens and item text are spliced between
their pieces as token ids, so prompts need no string parsing, and a saved recommender (which
stores the pieces as ids in its config) builds them without a text tokenizer. This module is shipped with the model through
``trust_remote_code``: it imports only torch and its sibling ``code_tokens``.
"""

from __future__ import annotations

import torch

from .code_tokens import code_token_ids


class PromptBuilder:
    """Assembles the recommender's prompts from a :class:`StoreConfig` (templates as token ids).

    Args:
        config: a recommender config with ``prompt_token_ids``, ``code_token_offset``,
            ``codebook_size`` and ``max_history`` set.
    """

    def __init__(self, config) -> None:
        if config.prompt_token_ids is None or config.code_token_offset is None:
            raise ValueError(
                "config.prompt_token_ids and config.code_token_offset are unset: build the "
                "recommender with StoreForGenerativeRec.from_tokenizer_model"
            )
        self.pieces = config.prompt_token_ids
        self.codebook_size = config.codebook_size
        self.offset = config.code_token_offset
        self.max_history = config.max_history

    def item_tokens(self, codes: torch.Tensor) -> list[int]:
        """``(n, v)`` or ``(v,)`` codes -> their code tokens, items in order, flattened."""
        codes = codes.reshape(-1, codes.shape[-1])
        return code_token_ids(codes, self.codebook_size, self.offset).reshape(-1).tolist()

    def recommendation(self, history_codes: torch.Tensor) -> list[int]:
        """ "history -> next item" prompt from the history's codes ``(h, v)``, oldest first."""
        p = self.pieces
        history = self.item_tokens(history_codes[-self.max_history :])
        return p["rec_prefix"] + history + p["rec_suffix"]

    def alignment(self, text_ids: list[int]) -> list[int]:
        """ "item text -> item codes" prompt (the text-token alignment task)."""
        return self.pieces["align_prefix"] + list(text_ids) + self.pieces["align_suffix"]

    def scoring(self, history_codes: torch.Tensor, candidate_codes: torch.Tensor) -> list[int]:
        """ "history + candidate -> yes/no" prompt; history ``(h, v)``, candidate ``(v,)``."""
        p = self.pieces
        history = self.item_tokens(history_codes[-self.max_history :])
        return (
            p["score_prefix"]
            + history
            + p["score_candidate"]
            + self.item_tokens(candidate_codes)
            + p["score_suffix"]
        )

    @property
    def answer_ids(self) -> tuple[int, int]:
        """``(yes, no)`` token ids."""
        return self.pieces["answer_yes"][0], self.pieces["answer_no"][0]


def left_pad(
    sequences: list[list[int]], pad_id: int, device=None
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Left-pad token lists into ``(B, max_len)`` ids and attention mask."""
    width = max(1, max(len(s) for s in sequences))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)
