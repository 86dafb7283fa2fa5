"""RQ-VAE semantic IDs (TIGER, Rajput et al. 2023, Sec. 3.1): item embedding -> 4 codes.

The second way to make semantic IDs, next to STORE's PCA + k-means (:mod:`.codebook`): TIGER's
codes for the TIGER baseline, and the ``llm-rqvae`` / ``minilm-rqvae`` ablations of the
pipeline (:func:`store_hf.semantic_ids.fit_rqvae`).

An MLP encoder maps an item's text embedding to a small latent ``z``; ``L`` residual quantisation
levels each pick the nearest code of their own codebook for the residual left by the levels
before (``r_0 = z``, ``c_d = argmin_j ||r_d - e^d_j||``, ``r_{d+1} = r_d - e^d_{c_d}``); an MLP
decoder reconstructs the embedding from ``sum_d e^d_{c_d}``. The loss is TIGER's

    L = ||x - x_hat||^2 + sum_d ( ||sg[r_d] - e^d_{c_d}||^2 + beta * ||r_d - sg[e^d_{c_d}]||^2 )

with a straight-through gradient from the decoder to the encoder. Two details keep the codebooks
in use (TIGER's "k-means initialisation" plus the usual dead-code fix):

* each codebook is initialised by k-means on the first training batch's residuals of its level;
* after every epoch (until ``reset_until`` of training), codes no item chose during the epoch are
  moved onto random residuals of the last batch, so they start attracting items again.

Items whose ``L`` codes coincide are then told apart by one more position (TIGER's collision
handling): the index of the item among those sharing its codes, in catalogue order. Its size is
the largest group size, so codes are unique and the last position is 0 for most items.

    rq = RQVAE(input_dim=384, config=RQVAEConfig(seed=0))
    codes = rq.fit(embeddings)   # (N, 4) int64, unique rows
    rq.report                    # utilisation per level, collision rate, losses, seconds
    rq.save("runs/rqvae"); RQVAE.load("runs/rqvae")
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..files import load_tensors_and_config, save_tensors_and_config

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "rqvae.safetensors"
CONFIG_NAME = "rqvae.json"
FORMAT_VERSION = 1


@dataclass
class RQVAEConfig:
    """Architecture and training settings (TIGER's architecture, a CPU-sized schedule).

    Args:
        hidden_dims: encoder widths (the decoder mirrors them); TIGER: 512, 256, 128.
        latent_dim: width of ``z`` and of every code vector; TIGER: 32.
        num_levels / codebook_size: residual levels and codes per level; TIGER: 3 x 256.
        beta: commitment weight (0.25, as TIGER and VQ-VAE).
        lr / weight_decay: AdamW settings (TIGER trains with Adagrad for 20k epochs; with the
            k-means init, 50 AdamW epochs already use every code of every level on the 4,344
            Amazon Scientific items, in about 20 s on one busy CPU core).
        epochs / batch_size: passes over the items and items per step.
        kmeans_iters: Lloyd iterations of the codebook initialisation.
        reset_dead_codes: move unused codes onto random residuals after each epoch ...
        reset_until: ... during this first fraction of the epochs (late resets would only
            disturb codes that are about to be read out).
        seed: seeds the initialisation, the shuffles, k-means and the resets.
    """

    hidden_dims: tuple[int, ...] = (512, 256, 128)
    latent_dim: int = 32
    num_levels: int = 3
    codebook_size: int = 256
    beta: float = 0.25
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 50
    batch_size: int = 1024
    kmeans_iters: int = 25
    reset_dead_codes: bool = True
    reset_until: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        # the settings checker every config of the package shares (a ValueError naming the
        # field): types from the annotations, ranges by name (store_hf.run_config.SETTING_RANGES)
        from ..run_config import check_settings

        for name, value in check_settings(asdict(self), RQVAEConfig, "RQVAEConfig").items():
            setattr(self, name, value)


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def kmeans(
    x: torch.Tensor, k: int, iters: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding.

    Args:
        x: ``(n, d)`` points.
        k: clusters. With fewer than ``k`` distinct points the spare centroids are copies of
            points (they are dead codes the resets will move).
        iters: Lloyd iterations after seeding.
        generator: CPU generator for the seeding draws.

    Returns:
        ``centroids`` ``(k, d)`` and ``assignment`` ``(n,)`` long. An empty cluster keeps its
        previous centroid.
    """
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centroids = [x[first]]
    dist = ((x - x[first]) ** 2).sum(1)
    for _ in range(1, k):
        # k-means++: the next seed is drawn with probability ~ squared distance to the chosen ones
        weights = dist.clamp(min=0).cpu()
        if float(weights.sum()) <= 0:  # every point already is a centroid
            idx = int(torch.randint(n, (1,), generator=generator))
        else:
            idx = int(torch.multinomial(weights, 1, generator=generator))
        centroids.append(x[idx])
        dist = torch.minimum(dist, ((x - x[idx]) ** 2).sum(1))
    c = torch.stack(centroids)
    assign = torch.cdist(x, c).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        used = counts > 0
        c[used] = sums[used] / counts[used, None].to(x.dtype)
        new = torch.cdist(x, c).argmin(1)
        if torch.equal(new, assign):
            break
        assign = new
    return c, assign


def disambiguate(codes: np.ndarray) -> np.ndarray:
    """Append TIGER's collision position: ``(N, L)`` codes -> ``(N, L + 1)`` unique codes.

    The new column is the item's index among the items with the same ``L`` codes, counted in row
    order (0 for the first, so 0 for every item without a collision).
    """
    codes = np.asarray(codes, dtype=np.int64)
    _, group = np.unique(codes, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")  # rows of each group together, in row order
    sorted_groups = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_groups)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    extra = np.empty(len(codes), dtype=np.int64)
    extra[order] = np.arange(len(order)) - group_start
    return np.concatenate([codes, extra[:, None]], axis=1)


def code_statistics(codes: np.ndarray, codebook_size: int) -> dict:
    """Utilisation per level and collisions of ``(N, L)`` codes (before disambiguation).

    ``collision_rate`` = 1 - distinct tuples / N (the share of items that need a non-zero extra
    code); ``items_in_collisions`` = share of items whose tuple at least one other item shares.
    """
    codes = np.asarray(codes)
    n = len(codes)
    _, counts = np.unique(codes, axis=0, return_counts=True)
    used = [int(len(np.unique(codes[:, level]))) for level in range(codes.shape[1])]
    return {
        "codes_used": used,
        "utilisation": [u / codebook_size for u in used],
        "distinct_tuples": int(len(counts)),
        "collision_rate": 1.0 - len(counts) / n,
        "items_in_collisions": float(counts[counts > 1].sum() / n),
        "max_group_size": int(counts.max()),
    }


class RQVAE(nn.Module):
    """Encoder MLP -> ``num_levels`` residual quantisers -> decoder MLP.

    Args:
        input_dim: width of the item embeddings (384 for MiniLM).
        config: :class:`RQVAEConfig`; its seed also fixes the weight initialisation.

    Attributes:
        codebooks: ``(num_levels, codebook_size, latent_dim)`` parameter.
        report: after :meth:`fit`, statistics of the codes and the training (see :meth:`fit`).
        fit_log: one dict per logged epoch (losses, dead codes reset).
    """

    def __init__(self, input_dim: int, config: RQVAEConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RQVAEConfig()
        self.input_dim = input_dim
        with torch.random.fork_rng(devices=[]):  # a seeded init that leaves the global RNG alone
            torch.manual_seed(c.seed)
            self.encoder = _mlp([input_dim, *c.hidden_dims, c.latent_dim])
            self.decoder = _mlp([c.latent_dim, *reversed(c.hidden_dims), input_dim])
            self.codebooks = nn.Parameter(
                torch.randn(c.num_levels, c.codebook_size, c.latent_dim) * 0.1
            )
        self.register_buffer("initialised", torch.tensor(False))
        self.report: dict = {}
        self.fit_log: list[dict] = []

    # ---- quantisation --------------------------------------------------------------------------

    def quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Residual quantisation of latents.

        Args:
            z: ``(B, latent_dim)``.

        Returns:
            ``codes`` ``(B, num_levels)`` long; ``quantised`` ``(B, latent_dim)``, the sum of the
            chosen code vectors; ``loss`` (scalar), the codebook + commitment terms summed over
            levels and averaged over the batch.
        """
        residual = z
        quantised = torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for level in range(self.config.num_levels):
            book = self.codebooks[level]
            idx = torch.cdist(residual.detach(), book.detach()).argmin(1)
            e = book[idx]
            loss = loss + ((residual.detach() - e) ** 2).sum(1).mean()
            loss = loss + self.config.beta * ((residual - e.detach()) ** 2).sum(1).mean()
            quantised = quantised + e
            residual = residual - e.detach()  # the next level quantises what is left
            codes.append(idx)
        return torch.stack(codes, 1), quantised, loss

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x``: ``(B, input_dim)`` -> dict with ``codes`` (B, L), ``reconstruction``
        (B, input_dim), and the scalar losses ``loss``, ``reconstruction_loss``,
        ``quantisation_loss``."""
        z = self.encoder(x)
        codes, quantised, q_loss = self.quantise(z)
        # straight-through: the decoder's gradient reaches the encoder as if z were quantised
        z_q = z + (quantised - z).detach()
        x_hat = self.decoder(z_q)
        rec = ((x_hat - x) ** 2).sum(1).mean()
        return {
            "codes": codes,
            "reconstruction": x_hat,
            "loss": rec + q_loss,
            "reconstruction_loss": rec,
            "quantisation_loss": q_loss,
        }

    @torch.no_grad()
    def encode(self, embeddings: np.ndarray | torch.Tensor, batch_size: int = 4096) -> np.ndarray:
        """``(N, input_dim)`` embeddings -> ``(N, num_levels)`` int64 codes (no disambiguation)."""
        x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        was_training = self.training
        self.eval()
        out = [
            self.quantise(self.encoder(x[i : i + batch_size]))[0]
            for i in range(0, len(x), batch_size)
        ]
        self.train(was_training)
        return torch.cat(out).cpu().numpy().astype(np.int64)

    @torch.no_grad()
    def _init_codebooks(self, x: torch.Tensor, generator: torch.Generator) -> None:
        """k-means of each level's residuals of the batch ``x`` ``(B, input_dim)``."""
        residual = self.encoder(x)
        for level in range(self.config.num_levels):
            centroids, assign = kmeans(
                residual, self.config.codebook_size, self.config.kmeans_iters, generator
            )
            self.codebooks.data[level] = centroids
            residual = residual - centroids[assign]
        self.initialised.fill_(True)

    @torch.no_grad()
    def _reset_dead(
        self, usage: torch.Tensor, residuals: list[torch.Tensor], generator: torch.Generator
    ) -> int:
        """Move codes with ``usage == 0`` (``(L, K)`` counts) onto random rows of each level's
        residuals (``L`` tensors ``(B, latent_dim)``); returns how many moved."""
        moved = 0
        for level, res in enumerate(residuals):
            dead = (usage[level] == 0).nonzero().flatten()
            if len(dead):
                pick = torch.randint(len(res), (len(dead),), generator=generator)
                self.codebooks.data[level, dead] = res[pick]
                moved += len(dead)
        return moved

    # ---- training ------------------------------------------------------------------------------

    def fit(self, embeddings: np.ndarray | torch.Tensor, log_every: int = 50) -> np.ndarray:
        """Train on the item embeddings and return their disambiguated semantic IDs.

        Args:
            embeddings: ``(N, input_dim)`` float, one row per catalogue item.
            log_every: keep an entry in :attr:`fit_log` every this many epochs.

        Returns:
            ``(N, num_levels + 1)`` int64 codes, unique rows: the RQ-VAE codes plus the
            collision position (see :func:`disambiguate`). :attr:`report` then holds
            ``code_statistics`` of the RQ-VAE codes (utilisation per level, collision rate before
            disambiguation), ``level_sizes`` (codes per position, the last = largest collision
            group), the final losses and the training seconds.
        """
        c = self.config
        started = time.perf_counter()
        x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ValueError(f"embeddings must be (N, {self.input_dim}), got {tuple(x.shape)}")
        n = len(x)
        generator = torch.Generator().manual_seed(c.seed)
        optimizer = torch.optim.AdamW(self.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.fit_log = []
        self.train()
        resets = 0
        for epoch in range(1, c.epochs + 1):
            order = torch.randperm(n, generator=generator)
            usage = torch.zeros(c.num_levels, c.codebook_size, dtype=torch.long)
            totals = np.zeros(3)
            for start in range(0, n, c.batch_size):
                batch = x[order[start : start + c.batch_size]]
                if not bool(self.initialised):
                    self._init_codebooks(batch, generator)
                out = self(batch)
                optimizer.zero_grad(set_to_none=True)
                out["loss"].backward()
                optimizer.step()
                for level in range(c.num_levels):
                    usage[level] += torch.bincount(
                        out["codes"][:, level], minlength=c.codebook_size
                    )
                totals += len(batch) * np.array(
                    [
                        out["loss"].item(),
                        out["reconstruction_loss"].item(),
                        out["quantisation_loss"].item(),
                    ]
                )
            moved = 0
            if c.reset_dead_codes and epoch <= c.reset_until * c.epochs:
                with torch.no_grad():
                    residuals, r = [], self.encoder(batch)
                    for level in range(c.num_levels):
                        residuals.append(r)
                        r = (
                            r
                            - self.codebooks[level][torch.cdist(r, self.codebooks[level]).argmin(1)]
                        )
                moved = self._reset_dead(usage, residuals, generator)
                resets += moved
            if epoch % log_every == 0 or epoch == c.epochs:
                loss, rec, quant = (totals / n).tolist()
                entry = {
                    "epoch": epoch,
                    "loss": loss,
                    "reconstruction_loss": rec,
                    "quantisation_loss": quant,
                    "dead_codes_reset": moved,
                }
                self.fit_log.append(entry)
                logger.info("rqvae %s", entry)
        self.eval()
        raw = self.encode(x)
        codes = disambiguate(raw)
        with torch.no_grad():
            final = self(x)
        self.report = {
            **code_statistics(raw, c.codebook_size),
            "level_sizes": [c.codebook_size] * c.num_levels + [int(codes[:, -1].max()) + 1],
            "reconstruction_loss": final["reconstruction_loss"].item(),
            "quantisation_loss": final["quantisation_loss"].item(),
            "dead_codes_reset": resets,
            "seconds": round(time.perf_counter() - started, 2),
            "config": asdict(self.config),
        }
        return codes

    # ---- persistence ---------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``rqvae.safetensors`` (weights) and ``rqvae.json`` (input width, config, report,
        log; not the training time), atomically, with a shared content fingerprint
        (:func:`store_hf.files.save_tensors_and_config`)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {
            "input_dim": self.input_dim,
            "config": asdict(self.config),
            # no wall time (null): a model trained from the same data and seed saves the same
            # bytes
            "report": {
                **{k: v for k, v in self.report.items() if k != "config"},
                "seconds": None,
            },
            "fit_log": self.fit_log,
        }
        save_tensors_and_config(folder, WEIGHTS_NAME, CONFIG_NAME, tensors, meta, FORMAT_VERSION)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> RQVAE:
        """Read a model written by :meth:`save`, in eval mode, on the CPU."""
        state, meta = load_tensors_and_config(
            folder, WEIGHTS_NAME, CONFIG_NAME, FORMAT_VERSION, what="RQ-VAE"
        )
        model = cls(int(meta["input_dim"]), RQVAEConfig(**meta["config"]))
        model.load_state_dict(state)
        model.report = {**meta.get("report", {}), "config": meta["config"]}
        model.fit_log = meta.get("fit_log", [])
        return model.eval()
