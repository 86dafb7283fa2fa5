"""Constrained generation of semantic IDs: a tensor trie of the catalogue and a logits processor.

STORE's recommender generates the next item as ``v`` code tokens, one per position, and beam
search must only produce code tuples of real items. This module holds:

* :func:`code_token_ids` / :func:`token_ids_to_codes` (defined in ``code_tokens``): the fixed
  code-token layout, code ``c`` at position ``p`` is token ``token_offset + p * k + c``.
* :class:`CodeTrie`: the catalogue's code tuples as a bitmap trie held in a few tensors
  (no Python dicts on the hot path).
* :class:`TrieLogitsProcessor`: a :class:`transformers.LogitsProcessor` that lets ``generate``
  (beam search, greedy, sampling) emit only valid next code tokens. It is stateless: the
  generation depth of a row is read from the row's trailing tokens.

This file uses torch, numpy, transformers, the standard library and its sibling ``code_tokens``
only, because it is copied into Hub model folders for ``trust_remote_code``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from transformers import LogitsProcessor

# The code-token layout is part of this module's documented API (``store_hf.trie``).
from .code_tokens import code_token_ids, token_ids_to_codes

__all__ = ["CodeTrie", "TrieLogitsProcessor", "code_token_ids", "token_ids_to_codes"]

_SHIFTS = torch.arange(8, dtype=torch.uint8)  # bit i of byte b <-> code 8 * b + i


class CodeTrie:
    """The catalogue's code tuples as a trie of tensors, for constrained generation.

    Representation (no Python objects per node). Nodes are numbered breadth-first, node 0 =
    root, then the ``n_1`` nodes of depth 1, ..., then the ``n_v`` leaves (distinct complete
    tuples); within a depth, nodes are in lexicographic order of their prefixes.

    * ``child_bits``: ``(num_internal, ceil(k / 8))`` uint8, one row per node of depth
      ``0 .. v-1``; bit ``c`` of a row says whether code ``c`` continues that node's prefix.
      The valid next codes of ``B`` prefixes are one row gather and a bit unpack.
    * ``edge_keys``: ``(num_nodes - 1,)`` int64, sorted, ``parent_id * k + code`` for every
      node but the root, in node order, so the child of ``node`` with code ``c`` is
      ``1 + searchsorted(edge_keys, node * k + c)`` (if the key is there). A walk down ``d``
      codes costs ``d`` vectorised binary searches for the whole batch.
    * ``item_order``: ``(N,)`` int64, the catalogue rows sorted by tuple (ties by row), and
      ``leaf_offsets``: ``(n_v + 1,)`` int64, where each leaf's rows start in ``item_order``.
      The rows of leaf ``l`` are ``item_order[leaf_offsets[l] : leaf_offsets[l + 1]]``.
    * ``position_mask``: ``(v, k)`` bool, codes occurring at each position (``"position"`` mode).

    Memory: ``ceil(k / 8)`` bytes per internal node, 8 bytes per node (edge keys), 8 bytes per
    item and per leaf, i.e. ``ceil(k/8) * (n_0 + ... + n_{v-1}) + 8 * (n_1 + ... + n_v) +
    8 * (N + n_v + 1) + v * k`` bytes, with ``n_j`` = distinct prefixes of length ``j``
    (``n_j <= min(k**j, N)``). Example: ``v = 4``, ``k = 256``, ``N = 300,000`` random tuples:
    21.7 MB (a dense int32 child table per depth, ``4 * k`` bytes per internal node, would take
    371 MB; 76 MB even with a bitmap for the last depth). See :attr:`memory_bytes`.

    Duplicate tuples are allowed (several items sharing a code sequence when collision
    resolution is off): they form one leaf; :meth:`lookup` returns the first such item and
    :meth:`items_of` all of them.

    Args:
        codes: ``(N, v)`` integer codes (torch or numpy), each in ``[0, codebook_size)``.
        codebook_size: ``k``.
        token_offset: id of the first code token (see :func:`code_token_ids`).
    """

    def __init__(
        self, codes: torch.Tensor | np.ndarray, codebook_size: int, token_offset: int
    ) -> None:
        if isinstance(codes, torch.Tensor):
            codes = codes.detach().cpu().numpy()
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] < 1 or codes.shape[1] < 1:
            raise ValueError(f"codes must be (N, v) with N, v >= 1, got shape {codes.shape}")
        if not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes must be integers, got {codes.dtype}")
        if codebook_size < 1:
            raise ValueError(f"codebook_size must be >= 1, got {codebook_size}")
        if token_offset < 0:
            raise ValueError(f"token_offset must be >= 0, got {token_offset}")
        codes = codes.astype(np.int64, copy=False)
        if codes.min() < 0 or codes.max() >= codebook_size:
            raise ValueError(
                f"codes must lie in [0, {codebook_size}), got range [{codes.min()}, {codes.max()}]"
            )
        n, v = codes.shape
        k = codebook_size
        self._num_items, self._v, self._k, self._offset = n, v, k, token_offset
        nbytes = (k + 7) // 8

        # Lexicographic sort (position 0 most significant); stable, so within a group of equal
        # tuples the smallest item index comes first.
        order = np.lexsort(codes.T[::-1])
        s = codes[order]
        # first_diff[i]: first position where sorted row i+1 differs from row i (v if equal).
        neq = s[1:] != s[:-1]
        first_diff = np.where(neq.any(1), neq.argmax(1), v)
        # Row i opens a new node at depth j iff i == 0 or it differs from row i-1 before j.
        ids = [np.zeros(n, dtype=np.int64)]  # node id of each sorted row's length-j prefix
        for j in range(1, v + 1):
            new = np.concatenate([[True], first_diff < j])
            ids.append(np.cumsum(new) - 1)
        counts = [int(a[-1]) + 1 for a in ids]  # n_0 = 1, ..., n_v = distinct tuples
        # Global node ids are breadth-first: depth j's nodes are starts[j] .. starts[j+1]-1.
        starts = np.concatenate([[0], np.cumsum(counts)])

        bits, keys = [], []
        for j in range(v):
            edge = np.concatenate([[True], first_diff < j + 1])  # rows that open a child
            parent, code = ids[j][edge], s[edge, j]  # sorted by (parent, code)
            table = np.zeros((counts[j], nbytes), dtype=np.uint8)
            np.bitwise_or.at(table, (parent, code >> 3), (1 << (code & 7)).astype(np.uint8))
            bits.append(table)
            keys.append((parent + starts[j]) * k + code)
        self.child_bits = torch.from_numpy(np.concatenate(bits))
        # Edge e (in this sorted order) leads to node e + 1, because the children are numbered
        # in exactly this (depth, parent, code) order.
        self.edge_keys = torch.from_numpy(np.concatenate(keys).astype(np.int64))
        self.item_order = torch.from_numpy(order.astype(np.int64, copy=False))
        leaf_starts = np.flatnonzero(np.concatenate([[True], first_diff < v]))
        self.leaf_offsets = torch.from_numpy(np.append(leaf_starts, n).astype(np.int64))
        self._leaf_start = int(starts[v])
        self.level_sizes = tuple(counts)
        # Position sets for mode="position": code c appears at position p somewhere.
        pos = np.zeros((v, k), dtype=bool)
        pos[np.broadcast_to(np.arange(v), codes.shape), codes] = True
        self.position_mask = torch.from_numpy(pos)

    # ------------------------------------------------------------------ properties
    @property
    def num_items(self) -> int:
        """``N``, catalogue rows the trie was built from (duplicates counted)."""
        return self._num_items

    @property
    def num_unique(self) -> int:
        """Distinct code tuples (leaves)."""
        return self.level_sizes[-1]

    @property
    def num_positions(self) -> int:
        """``v``, codes per item."""
        return self._v

    @property
    def codebook_size(self) -> int:
        """``k``, codes per position."""
        return self._k

    @property
    def token_offset(self) -> int:
        """Token id of code 0 at position 0."""
        return self._offset

    @property
    def code_vocab_end(self) -> int:
        """One past the last code token id: ``token_offset + v * k``."""
        return self._offset + self._v * self._k

    @property
    def device(self) -> torch.device:
        """Device of the trie's tensors."""
        return self.child_bits.device

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the trie's tensors."""
        tensors = (
            self.child_bits,
            self.edge_keys,
            self.item_order,
            self.leaf_offsets,
            self.position_mask,
        )
        return sum(t.numel() * t.element_size() for t in tensors)

    def __repr__(self) -> str:
        return (
            f"CodeTrie(num_items={self.num_items}, num_unique={self.num_unique}, "
            f"num_positions={self._v}, codebook_size={self._k}, token_offset={self._offset}, "
            f"level_sizes={self.level_sizes}, memory_bytes={self.memory_bytes})"
        )

    def to(self, device: torch.device | str) -> CodeTrie:
        """This trie with its tensors on ``device`` (``self`` if already there, else a copy)."""
        device = torch.device(device)
        if self.device == device:
            return self
        other = object.__new__(CodeTrie)
        other.__dict__.update(self.__dict__)
        for name in ("child_bits", "edge_keys", "item_order", "leaf_offsets", "position_mask"):
            setattr(other, name, getattr(self, name).to(device))
        return other

    # ------------------------------------------------------------------ internals
    def _unpack(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, ceil(k/8))`` uint8 bit rows -> ``(B, k)`` bool."""
        shifts = _SHIFTS.to(rows.device)
        out = (rows.unsqueeze(-1) >> shifts) & 1
        return out.reshape(rows.shape[0], -1)[:, : self._k].bool()

    def _walk(
        self, codes: torch.Tensor, depth: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Follow ``codes`` from the root.

        Args:
            codes: ``(B, d)`` long codes (values outside ``[0, k)`` make the row invalid).
            depth: optional ``(B,)`` per-row number of leading columns to follow (default ``d``).

        Returns:
            ``node`` ``(B,)`` long, the global id of the reached node (after ``v`` steps a
            leaf; minus ``_leaf_start`` it indexes ``leaf_offsets``), and ``ok`` ``(B,)`` bool,
            whether the whole prefix exists. Where ``ok`` is False, ``node`` is the last node
            reached (still a valid index, not meaningful).
        """
        b, d = codes.shape
        node = torch.zeros(b, dtype=torch.long, device=codes.device)
        ok = torch.ones(b, dtype=torch.bool, device=codes.device)
        last = self.edge_keys.shape[0] - 1
        for j in range(d):
            c = codes[:, j]
            active = ok if depth is None else ok & (depth > j)
            query = node * self._k + c.clamp(0, self._k - 1)
            edge = torch.searchsorted(self.edge_keys, query).clamp_(max=last)
            hit = (self.edge_keys[edge] == query) & (c >= 0) & (c < self._k)
            ok = ok & (hit | ~active)
            node = torch.where(active & ok, edge + 1, node)  # stays a valid index where not ok
        return node, ok

    def _allowed_at(self, node: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
        """``(B, k)`` valid next codes of internal ``node`` ids (all False where not ``ok``)."""
        return self._unpack(self.child_bits[node]) & ok[:, None]

    # ------------------------------------------------------------------ public API
    def allowed_mask(self, prefix_codes: torch.Tensor) -> torch.BoolTensor:
        """Valid next codes after each prefix.

        Args:
            prefix_codes: ``(B, d)`` integer codes, ``0 <= d < v``; every row has depth ``d``.

        Returns:
            ``(B, k)`` bool: ``out[b, c]`` is True iff ``prefix_codes[b] + (c,)`` is a prefix of
            some catalogue tuple. A row whose prefix is not in the trie is all False.
        """
        prefix_codes = torch.as_tensor(prefix_codes, device=self.device).long()
        if prefix_codes.ndim != 2 or prefix_codes.shape[1] >= self._v:
            raise ValueError(
                f"prefix_codes must be (B, d) with d < v = {self._v}, "
                f"got shape {tuple(prefix_codes.shape)}"
            )
        return self._allowed_at(*self._walk(prefix_codes))

    def lookup(self, codes: torch.Tensor) -> torch.LongTensor:
        """Catalogue row of each full tuple: ``(B, v)`` codes -> ``(B,)`` item index or -1.

        With duplicate tuples the smallest item index sharing the tuple is returned.
        """
        leaf, ok = self._leaves(codes)
        first = self.item_order[self.leaf_offsets[leaf]]
        return torch.where(ok, first, torch.full_like(leaf, -1))

    def items_of(self, codes: torch.Tensor) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Every catalogue row whose tuple is one of ``codes`` ``(M, v)``.

        Returns:
            ``rows`` ``(R,)`` and ``owner`` ``(R,)``: the matching rows grouped by query, in query
            order (ascending row within a query), and the query each row answers. A query that
            is no catalogue tuple matches nothing.
        """
        leaf, ok = self._leaves(codes)
        start = self.leaf_offsets[leaf]
        counts = torch.where(ok, self.leaf_offsets[leaf + 1] - start, 0)
        owner = torch.repeat_interleave(torch.arange(len(leaf), device=leaf.device), counts)
        # position of each output row inside its query's run: 0, 1, .. counts[q] - 1
        within = torch.arange(len(owner), device=leaf.device) - (counts.cumsum(0) - counts)[owner]
        return self.item_order[start[owner] + within], owner

    def _leaves(self, codes: torch.Tensor) -> tuple[torch.LongTensor, torch.BoolTensor]:
        """``(B, v)`` codes -> leaf index ``(B,)`` (0 where not a tuple) and whether it is one."""
        codes = torch.as_tensor(codes, device=self.device).long()
        if codes.ndim != 2 or codes.shape[1] != self._v:
            raise ValueError(f"codes must be (B, v = {self._v}), got shape {tuple(codes.shape)}")
        node, ok = self._walk(codes)
        return (node - self._leaf_start).clamp(min=0), ok

    def contains(self, codes: torch.Tensor) -> torch.BoolTensor:
        """``(B, v)`` codes -> ``(B,)`` bool, whether each tuple belongs to a catalogue item."""
        return self.lookup(codes) >= 0


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token that would not continue a catalogue item's code tuple.

    Use with ``generate(..., max_new_tokens=v, logits_processor=LogitsProcessorList([proc]))``
    (beam search, greedy or sampling). For each row the processor finds the depth ``d`` (codes
    of the current item generated so far) from the row's trailing tokens alone, without state:

    * the last token is a code token of position ``p`` -> ``d = (p + 1) mod v``; the previous
      ``d`` tokens must be codes of positions ``0 .. d-1`` and form a trie prefix;
    * otherwise (a text token, or the prompt ends with a complete item, ``p = v - 1``) -> ``d = 0``.

    So the prompt must end with a non-code token or with a complete item's ``v`` codes, and
    ``max_new_tokens`` should be ``v``: after ``v`` codes the depth wraps to 0 and further steps
    would start a second item. Left padding (the decoder-only default) does not matter since
    only trailing tokens are read.

    Every other column of ``scores`` is set to ``-inf`` (text tokens, other positions' code
    tokens, and any padding columns beyond the tokenizer vocabulary); allowed tokens keep their
    score (no renormalisation, as in standard constrained beam search).

    Args:
        trie: the catalogue's :class:`CodeTrie`.
        mode: ``"trie"`` (default): only prefixes of real items (conditional beam search).
            ``"position"``: at depth ``d`` every code of position ``d`` that occurs in the
            catalogue, whatever the prefix (the "w/o conditional beam search" ablation of
            LC-Rec); generated tuples may then not be catalogue items.
        eos_token_id: token id(s) used as the escape hatch below and by
            ``force_eos_after_item``. Must not be code tokens.
        force_eos_after_item: if True (needs ``eos_token_id``), a row whose last token is a
            code of the last position is finished and only EOS is allowed (score 0, i.e. the
            beam score is unchanged). Then ``max_new_tokens`` may exceed ``v`` and beam search
            stops at EOS; the prompt must then end with a non-code token, since a prompt
            ending with a complete item would be "finished" right away.
        reuse_output: return the same ``-inf`` buffer on every call, resetting only the
            entries the previous call wrote (see "Cost per call" below). Default True.

    Rows with no allowed token (only possible in ``"trie"`` mode when the prompt itself ends
    with a partial code sequence that is not a catalogue prefix): an all ``-inf`` row would make
    sampling produce NaN and beam search emit garbage, so with ``eos_token_id`` set such a row
    may only emit EOS (score 0) -- the sequence then ends with a non-item, which
    :meth:`CodeTrie.contains` detects -- and without it ``__call__`` raises ``ValueError``.
    Inside beam search this never happens for prompts that obey the rule above: every running
    beam is a valid prefix, and every valid prefix has a continuation.

    Cost per call: the trie work is a few vectorised ops on ``(B, k)`` tensors (no loop over rows
    or beams). A fresh ``(B, V)`` output full of ``-inf`` would cost more than all of that for
    a large vocabulary (one write of ``B * V`` floats: 1.3 ms for 160 x 51,024 on one CPU core).
    So by default the processor keeps its output buffer and, on the next call, only resets the
    ``B * k`` (+ EOS) entries it wrote before: ``O(B * k)`` per step instead of ``O(B * V)``.
    The buffer is reused only when nothing else still holds it or a view of it (its Python
    reference count says so): transformers' beam search clones the processed scores before
    keeping them and greedy/sample keep the returned tensor itself, so both get a fresh buffer
    whenever they keep one. A processor placed *after* this one that writes into its input in
    place (transformers' own processors return new tensors) would leave its writes in the
    buffer; pass ``reuse_output=False`` for such a chain.

    Put this processor last if others (``top_k``, ``top_p``) run before it in sampling: a
    warper that keeps only non-code tokens would leave nothing for this mask to allow.
    """

    def __init__(
        self,
        trie: CodeTrie,
        mode: Literal["trie", "position"] = "trie",
        eos_token_id: int | Sequence[int] | None = None,
        force_eos_after_item: bool = False,
        reuse_output: bool = True,
    ) -> None:
        if mode not in ("trie", "position"):
            raise ValueError(f"mode must be 'trie' or 'position', got {mode!r}")
        if eos_token_id is None:
            eos = []
        elif isinstance(eos_token_id, int | np.integer):
            eos = [int(eos_token_id)]
        else:
            eos = [int(e) for e in eos_token_id]
        for e in eos:
            if trie.token_offset <= e < trie.code_vocab_end or e < 0:
                raise ValueError(f"eos_token_id {e} must be a non-negative non-code token id")
        if force_eos_after_item and not eos:
            raise ValueError("force_eos_after_item=True needs eos_token_id")
        self.trie = trie
        self.mode = mode
        self.eos_token_ids = eos
        self.force_eos_after_item = force_eos_after_item
        self.reuse_output = reuse_output
        self._buffer: torch.Tensor | None = None  # last output (reuse_output)
        self._written: torch.Tensor | None = None  # its flat indices not -inf

    def _trie_on(self, device: torch.device) -> CodeTrie:
        if self.trie.device != device:  # move once, keep for the next steps
            self.trie = self.trie.to(device)
        return self.trie

    def depth_and_prefix(
        self, input_ids: torch.LongTensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generation depth and current-item prefix of each row, from its trailing tokens.

        Args:
            input_ids: ``(B, L)`` token ids (prompt plus tokens generated so far).

        Returns:
            ``depth`` ``(B,)`` long in ``[0, v)``; ``prefix`` ``(B, v - 1)`` long, codes of the
            current item in columns ``0 .. depth-1`` (-1 where the trailing tokens are not the
            codes of the expected positions; columns from ``depth`` on are unspecified);
            ``last_pos`` ``(B,)`` long, the code position of the last token or -1 for a
            non-code token.
        """
        trie = self.trie
        v, k, off = trie.num_positions, trie.codebook_size, trie.token_offset
        b, length = input_ids.shape
        if length == 0:
            # generate(inputs_embeds=...) of a decoder-only model passes only the generated
            # tokens, none at the first step: the prompt counts as ending with a text token.
            input_ids = torch.full((b, 1), -1, dtype=torch.long, device=input_ids.device)
            length = 1
        rel = input_ids[:, -1] - off
        is_code = (rel >= 0) & (rel < v * k)
        last_pos = torch.where(is_code, torch.div(rel, k, rounding_mode="floor"), -1)
        depth = torch.where(is_code, (last_pos + 1) % v, 0)
        j = torch.arange(v - 1, device=input_ids.device)
        col = length - depth[:, None] + j  # column of the current item's j-th code
        tok = input_ids.gather(1, col.clamp(0, length - 1))
        codes = tok - off - j * k
        good = (codes >= 0) & (codes < k) & (col >= 0)  # right position and inside the row
        return depth, codes.masked_fill(~good, -1), last_pos

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Mask ``scores`` ``(B, V)`` for ``input_ids`` ``(B, L)``; returns ``(B, V)`` (a new
        tensor, or the reused buffer of the previous call; see ``reuse_output``)."""
        trie = self._trie_on(scores.device)
        v, k, off = trie.num_positions, trie.codebook_size, trie.token_offset
        if scores.shape[-1] < trie.code_vocab_end:
            raise ValueError(
                f"scores have {scores.shape[-1]} columns but the code tokens need "
                f"token_offset + v * k = {off} + {v} * {k} = {trie.code_vocab_end}; "
                "were the code tokens added to the model's vocabulary (resize_token_embeddings)?"
            )
        input_ids = input_ids.to(scores.device)
        depth, prefix, last_pos = self.depth_and_prefix(input_ids)
        if self.mode == "position":
            allowed = trie.position_mask[depth]
        else:
            # walk only as many steps as the deepest row needs
            deepest = int(depth.max()) if depth.numel() else 0
            allowed = trie._allowed_at(*trie._walk(prefix[:, :deepest], depth))
        finished = None
        if self.force_eos_after_item:
            finished = last_pos == v - 1
            allowed = allowed & ~finished[:, None]

        # Only B x k entries are read and written (plus EOS), into an all -inf output.
        cols = off + depth[:, None] * k + torch.arange(k, device=scores.device)
        vals = scores.gather(1, cols).masked_fill(~allowed, float("-inf"))

        dead = ~allowed.any(1)
        if finished is not None:
            dead = dead & ~finished
        if not self.eos_token_ids and dead.any():
            rows = dead.nonzero().flatten()[:5].tolist()
            tails = [input_ids[r, -v:].tolist() for r in rows]
            raise ValueError(
                f"TrieLogitsProcessor: rows {rows} have no valid next code (trailing tokens "
                f"{tails} are a partial code sequence that is not a catalogue prefix). End "
                "prompts with a non-code token or a complete item, or pass eos_token_id."
            )
        force = dead if finished is None else dead | finished
        eos_at = None  # (rows, EOS ids) set to 0
        if self.eos_token_ids and force.any():
            eos = torch.tensor(self.eos_token_ids, device=scores.device)
            eos_at = (force.nonzero(), eos[None, :])

        out = self._output_like(scores)
        # scatter_ along dim 1 is several times faster than an index_put_ of flat indices
        out.scatter_(1, cols, vals)
        if eos_at is not None:
            out[eos_at] = 0.0
        if out is self._buffer:
            self._written = (cols, eos_at)
        return out

    def _output_like(self, scores: torch.Tensor) -> torch.Tensor:
        """An all ``-inf`` tensor shaped like ``scores``: the previous output with its written
        entries reset where that is safe, else a new one."""
        fresh = not self.reuse_output or (torch.is_grad_enabled() and scores.requires_grad)
        buf = self._buffer
        if fresh or buf is None or buf.shape != scores.shape or buf.dtype != scores.dtype:
            buf = None
        elif buf.device != scores.device or sys.getrefcount(buf) > 3:
            # > 3: besides self._buffer, this local and getrefcount's argument, someone (a
            # caller keeping the scores, or a view of them) still holds the last output
            buf = None
        elif self._written is not None:
            cols, eos_at = self._written
            buf.scatter_(1, cols, buf.new_full((), float("-inf")).expand(cols.shape))
            if eos_at is not None:
                buf[eos_at] = float("-inf")
        if buf is None:
            buf = torch.full(scores.shape, float("-inf"), dtype=scores.dtype, device=scores.device)
            if not fresh:
                self._buffer = buf
            else:
                self._buffer = self._written = None
        return buf
