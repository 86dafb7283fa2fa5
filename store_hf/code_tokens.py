"""The code-token layout of STORE's recommender vocabulary.

``v * k`` tokens are appended to the LLM vocabulary; code ``c`` at position ``p`` is the token
``token_offset + p * k + c``, so position ``p`` owns the contiguous id range
``[token_offset + p * k, token_offset + (p + 1) * k)``. Shipped with saved models through
``trust_remote_code`` (torch and numpy only).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["code_token_ids", "token_ids_to_codes"]


def code_token_ids(
    codes: torch.Tensor | np.ndarray, codebook_size: int, token_offset: int
) -> torch.LongTensor:
    """Token ids of code tuples: code ``c`` at position ``p`` -> ``token_offset + p * k + c``.

    Args:
        codes: ``(N, v)`` integer codes, each in ``[0, codebook_size)``.
        codebook_size: ``k``, codes per position.
        token_offset: id of the first code token (code 0 at position 0).

    Returns:
        ``(N, v)`` LongTensor of token ids, on the device of ``codes`` (CPU for numpy input).
    """
    codes = torch.as_tensor(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be (N, v), got shape {tuple(codes.shape)}")
    if codes.dtype.is_floating_point or codes.dtype == torch.bool:
        raise ValueError(f"codes must be integers, got {codes.dtype}")
    codes = codes.long()
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(
            f"codes must lie in [0, {codebook_size}), got range "
            f"[{int(codes.min())}, {int(codes.max())}]"
        )
    pos = torch.arange(codes.shape[1], device=codes.device) * codebook_size
    return codes + pos + token_offset


def token_ids_to_codes(
    token_ids: torch.Tensor | np.ndarray,
    codebook_size: int,
    token_offset: int,
    strict: bool = True,
) -> torch.LongTensor:
    """Inverse of :func:`code_token_ids`: ``(N, v)`` token ids -> ``(N, v)`` codes.

    Column ``p`` must hold code tokens of position ``p``. With ``strict=True`` (default) any
    other token raises ``ValueError``; with ``strict=False`` it becomes code ``-1`` (so e.g. the
    last ``v`` tokens of every ``generate`` output can be decoded and then checked with
    :meth:`CodeTrie.contains`, which is ``False`` for rows holding ``-1``).
    """
    token_ids = torch.as_tensor(token_ids)
    if token_ids.ndim != 2:
        raise ValueError(f"token_ids must be (N, v), got shape {tuple(token_ids.shape)}")
    pos = torch.arange(token_ids.shape[1], device=token_ids.device) * codebook_size
    codes = token_ids.long() - token_offset - pos
    bad = (codes < 0) | (codes >= codebook_size)
    if bad.any():
        if strict:
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"token {int(token_ids[row, col])} at row {row}, position {col} is not a code "
                f"token of position {col} (expected ids in [{token_offset + col * codebook_size}, "
                f"{token_offset + (col + 1) * codebook_size}))"
            )
        codes = codes.masked_fill(bad, -1)
    return codes
