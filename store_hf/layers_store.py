"""Building blocks of STORE's two models: the placeholder scaler of the dense tokenizer, the
code-token embedding and LM head of the recommender, and the loss on labelled positions.

Shipped with saved models through ``trust_remote_code``: torch only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def labelled_token_loss(
    head: nn.Module,
    states: torch.Tensor,
    labels: torch.LongTensor,
    num_items_in_batch: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of states ``(N, T, dim)`` against aligned labels ``(N, T)`` (-100: none).

    Only labelled positions go through the LM head: the vocabulary projection dominates the cost
    of short targets. The sum is divided by ``num_items_in_batch`` when given (the Trainer's
    count under gradient accumulation), else by the number of labelled tokens.
    """
    keep = labels != -100
    logits = head(states[keep]).float()
    total = F.cross_entropy(logits, labels[keep], reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else keep.sum().clamp_min(1)
    if torch.is_tensor(denom):
        denom = denom.to(total.device)
    return total / denom


class PlaceholderScaler(nn.Module):
    """Maps dense-token outputs ``(..., dim)`` to placeholder inputs ``(..., dim)``.

    Last-layer states do not look like input embeddings: in SmolLM2-135M their norm is about 50
    against 2.5, and about 94% of their energy is a component shared by every item (one outlier
    dimension alone averages 32). Modes:

    - ``"standardize"`` (default): subtract a per-dimension centre and divide by a per-dimension
      scale, both measured over real items by :meth:`calibrate` (buffers, saved with the model),
      then apply a learned gain and bias initialised to the word embeddings' per-dimension std and
      mean. What differs between items becomes the whole signal, at the scale of an embedding.
    - ``"rms"``: RMS-normalise each state, times a learned gain initialised to the embedding RMS.
    - ``"none"``: the raw state, as the paper's text literally says.
    """

    def __init__(self, hidden_size: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.gain = (
            nn.Parameter(torch.ones(hidden_size)) if mode in ("rms", "standardize") else None
        )
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if mode == "standardize" else None
        if mode == "standardize":
            self.register_buffer("center", torch.zeros(hidden_size))
            self.register_buffer("scale", torch.ones(hidden_size))

    @torch.no_grad()
    def reset_parameters(self, embedding_table: torch.Tensor) -> None:
        """Start the gain (and bias) at the statistics of the word-embedding table ``(vocab, dim)``."""
        table = embedding_table.float()
        if self.mode == "rms":
            self.gain.fill_(float(table.pow(2).mean(-1).sqrt().mean()))
        elif self.mode == "standardize":
            self.gain.copy_(table.std(0))
            self.bias.copy_(table.mean(0))

    @torch.no_grad()
    def calibrate(self, states: torch.Tensor) -> None:
        """Measure the centre and scale on dense-token states ``(num_items, v, dim)``."""
        if self.mode != "standardize":
            return
        flat = states.float().reshape(-1, states.shape[-1])
        self.center.copy_(flat.mean(0))
        self.scale.copy_(flat.std(0).clamp_min(1e-3))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return states
        x = states.float()
        if self.mode == "rms":
            x = x * x.pow(2).mean(-1, keepdim=True).add(1e-6).rsqrt() * self.gain
        else:
            x = (x - self.center) / self.scale * self.gain + self.bias
        return x.to(states.dtype)


class CodeTokenEmbedding(nn.Module):
    """Input embeddings of the backbone plus ``num_codes`` trainable code-token rows.

    Ids below ``num_embeddings`` read the frozen word-embedding table (``weight``, kept under its
    original name so a tied LM head stays tied); ids from ``num_embeddings`` on read ``code_weight``.
    """

    def __init__(self, base: nn.Embedding, num_codes: int) -> None:
        super().__init__()
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.num_embeddings, self.embedding_dim = base.weight.shape
        self.padding_idx = base.padding_idx
        self.code_weight = nn.Parameter(base.weight.new_zeros(num_codes, self.embedding_dim))

    def forward(self, input_ids: torch.LongTensor) -> torch.Tensor:
        is_code = input_ids >= self.num_embeddings
        words = F.embedding(input_ids.masked_fill(is_code, 0), self.weight)
        codes = F.embedding((input_ids - self.num_embeddings).clamp_min(0), self.code_weight)
        return torch.where(is_code.unsqueeze(-1), codes.to(words.dtype), words)


class CodeTokenHead(nn.Module):
    """The LM head plus logits for the code tokens: ``(..., dim) -> (..., vocab + num_codes)``.

    With tied input/output embeddings (SmolLM2, OPT) the code rows are the input code rows, so
    training either side trains both; otherwise the head has its own trainable ``code_weight``.
    """

    def __init__(self, base: nn.Linear, embedding: CodeTokenEmbedding, tied: bool) -> None:
        super().__init__()
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.bias = base.bias
        self.tied = tied
        if tied:  # a plain reference, not a submodule: the rows are saved once, with the input
            self._embedding = [embedding]
        else:
            self.code_weight = nn.Parameter(embedding.code_weight.detach().clone())

    @property
    def code_rows(self) -> torch.Tensor:
        return self._embedding[0].code_weight if self.tied else self.code_weight

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        words = F.linear(states, self.weight, self.bias)
        return torch.cat([words, F.linear(states, self.code_rows.to(states.dtype))], dim=-1)


__all__ = ["CodeTokenEmbedding", "CodeTokenHead", "PlaceholderScaler", "labelled_token_loss"]
