"""The whole STORE pipeline as resumable stages, each in its own folder of the output directory.

    data -> tokenizer -> encode -> codebook -> recommender -> evaluate -> report

This module orchestrates: which stage runs after which, on which inputs. The folder mechanics
(claiming, atomic publication, reuse) are in :mod:`store_hf.run_folder`; each stage's body is
beside the code it drives (:func:`store_hf.training.train_tokenizer_stage`,
:func:`store_hf.training.train_recommender_stage`, :func:`store_hf.evaluation.evaluate_stage`,
:func:`store_hf.report.write_report`). Interrupted trainings resume from their checkpoints under
``checkpoints/``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import native_bf16
from .data.dataset import RecDataset
from .data.splits import leave_one_out, sample_users
from .files import read_json
from .reporting import missing_integrations, parse_report_to
from .run_config import RUN_FILE, PipelineError, RunConfig, read_yaml_settings
from .run_folder import STAGE_COMMANDS, RunFolder
from .semantic_ids import SemanticCodebook

logger = logging.getLogger(__name__)

STAGES = ("tokenizer", "encode", "codebook", "recommender", "evaluate", "report")
#: stages whose work is split across processes under ``accelerate launch``
DISTRIBUTED_STAGES = ("tokenizer", "encode", "recommender")
#: Stages another run can lend (``reuse_stages``): they do not depend on the ``recommender``
#: settings, so runs that differ only there (recommender ablations) can share them.
SHAREABLE_STAGES = ("tokenizer", "encode", "codebook")
#: The finished stages each stage reads: checked before it removes anything (the stages after
#: it, its checkpoints), so a stage command that cannot run leaves the folder as it was.
STAGE_INPUTS = {
    "tokenizer": (),
    "encode": ("tokenizer",),
    "codebook": ("encode",),
    "recommender": ("tokenizer", "encode", "codebook"),
    "evaluate": ("recommender",),
    "report": STAGES[:-1],
}


class Pipeline:
    """Runs the stages of one :class:`RunConfig` into its output folder.

    Under several processes the training and encoding stages run on all of them (Trainer and
    the item encoder split the work) and the others on the main process only; only the main
    process writes.

    Args:
        config: the run.
        force: redo finished stages (and, with ``take_over``, take over a folder of another
            run or other data).
        take_over: ``False`` for a stage command: it never takes a folder over, as it cannot
            redo the earlier stages (see :class:`RunFolder`).
        break_lock: take over the folder's lock whoever holds it.
    """

    def __init__(
        self,
        config: RunConfig,
        force: bool = False,
        take_over: bool = True,
        break_lock: bool = False,
    ) -> None:
        config.check()
        self.config = config
        self.preset = config.resolved_preset()
        self.folder = RunFolder(
            config,
            force=force,
            stages=STAGES,
            distributed_stages=DISTRIBUTED_STAGES,
            take_over=take_over,
            break_lock=break_lock,
        )
        self.out = self.folder.out
        self.force = force
        self._dataset: RecDataset | None = None
        self._splits = None

    # -- the run folder
    @property
    def is_main(self) -> bool:
        return self.folder.is_main

    def claim_output_dir(self) -> None:
        """Lock the output folder and create it, or check that it holds this run computed
        from the same data (see :meth:`RunFolder.open`)."""
        self.folder.open()

    def _stage(self, name: str, body) -> Path:
        with self.folder.session():  # one lock for a whole run, or for one stage command
            return self.folder.run_stage(name, body, requires=STAGE_INPUTS[name])

    def reuse_stages(self, source: str | os.PathLike) -> list[str]:
        """Take the finished stages of ``SHAREABLE_STAGES`` from the run folder ``source``
        (a run whose settings differ from this one in ``recommender`` alone) instead of
        computing them again; returns the names taken. See :meth:`RunFolder.reuse`."""
        with self.folder.session():
            return self.folder.reuse(source, SHAREABLE_STAGES)

    def stage_dir(self, name: str) -> Path:
        return self.folder.stage_dir(name)

    def is_done(self, name: str) -> bool:
        return self.folder.is_done(name)

    def require(self, name: str) -> Path:
        return self.folder.require(name)

    # -- shared inputs
    @property
    def dataset(self) -> RecDataset:
        if self._dataset is None:
            self._dataset = self.config.load_dataset()
        return self._dataset

    @property
    def splits(self):
        if self._splits is None:
            self._splits = leave_one_out(
                self.dataset, max_history=self.preset.recommender.max_history
            )
        return self._splits

    def impressions(self, part: str):
        """A click log's impressions in time order: the first 80% train the scoring task, the
        rest evaluate it (``None`` for sequence-only datasets)."""
        log = self.dataset.impressions
        if log is None or len(log) == 0:
            return None
        cut = int(len(log) * 0.8)
        return log.select(range(cut)) if part == "train" else log.select(range(cut, len(log)))

    def test_users(self):
        """The test rows the evaluate stage ranks: ``max_test_users`` users drawn with the
        run's ``eval_seed`` (the same users for every training seed and system)."""
        limit = self.preset.recommender.max_test_users
        return sample_users(self.splits["test"], limit, self.config.eval_seed)

    def load_recommender(self):
        """The finished recommender stage's model."""
        from .modeling_store import StoreForGenerativeRec

        return StoreForGenerativeRec.from_pretrained(self.require("recommender") / "model")

    # -- stages
    def tokenizer(self) -> Path:
        return self._stage("tokenizer", self._tokenizer)

    def _tokenizer(self, folder: Path) -> dict[str, Any]:
        from .training import train_tokenizer_stage

        return train_tokenizer_stage(
            folder,
            preset=self.preset,
            items=self.dataset.items,
            attributes=self.dataset.attributes,
            # the ablations read the pretrained backbone as it is: no dense-token training
            trained=self.config.semantic_ids == "store",
            seed=self.config.seed,
            eval_items=self.config.eval_tokenizer_items,
            checkpoints=self.folder.checkpoints("tokenizer"),
            is_main=self.is_main,
            report_to=self.config.report_to,
            logging_dir=self.folder.logs("tokenizer"),
        )

    def encode(self) -> Path:
        return self._stage("encode", self._encode)

    def _encode(self, folder: Path) -> dict[str, Any]:
        from .item_encoding import encode_stage

        return encode_stage(
            folder,
            items=self.dataset.items,
            method=self.config.semantic_ids,
            tokenizer_dir=self.require("tokenizer") / "model",
            batch_size=self.preset.tokenizer.encode_batch_size,
            bf16=self.preset.tokenizer.encode_bf16,
            is_main=self.is_main,
        )

    def _embeddings(self) -> tuple[torch.Tensor, list[str]]:
        from safetensors.torch import load_file

        folder = self.require("encode")
        embeddings = load_file(str(folder / "embeddings.safetensors"))["embeddings"]
        return embeddings, read_json(folder / "item_ids.json", hint=self._redo("encode"))

    def codebook(self) -> Path:
        return self._stage("codebook", self._codebook)

    def _codebook(self, folder: Path) -> dict[str, Any]:
        embeddings, item_ids = self._embeddings()
        from .semantic_ids import fit_codebook_stage

        return fit_codebook_stage(
            folder,
            embeddings,
            item_ids,
            self.preset.codebook,
            method=self.config.semantic_ids,
            num_positions=self.preset.num_dense_tokens,
            seed=self.config.seed,
        )

    def recommender(self) -> Path:
        return self._stage("recommender", self._recommender)

    def item_codes(self) -> tuple[list[str], np.ndarray, int]:
        """The finished codebook stage's catalogue: item ids, ``(num_items, v)`` codes and k."""
        folder = self.require("codebook")
        if (folder / "codebook").is_dir():
            codebook = SemanticCodebook.from_pretrained(folder / "codebook")
            return codebook.item_ids, codebook.codes, codebook.codebook_size
        from safetensors.numpy import load_file

        stats = read_json(folder / "statistics.json", hint=self._redo("codebook"))
        item_ids = read_json(folder / "rqvae" / "item_ids.json", hint=self._redo("codebook"))
        codes = load_file(str(folder / "rqvae" / "codes.safetensors"))["codes"]
        return item_ids, codes, stats["codebook_size"]

    def _recommender(self, folder: Path) -> dict[str, Any]:
        from .training import train_recommender_stage

        settings = self.preset.recommender
        item_ids, codes, k = self.item_codes()
        # code rows from dense tokens need dense tokens: the RQ-VAE ablations start from the
        # default initialisation (mean word embedding plus noise)
        dense = None
        if settings.code_init == "dense" and self.config.semantic_ids == "store":
            dense, _ = self._embeddings()
        codebook = self.require("codebook") / "codebook"
        return train_recommender_stage(
            folder,
            tokenizer_dir=self.require("tokenizer") / "model",
            item_ids=item_ids,
            codes=codes,
            codebook_size=k,
            dense=dense,
            splits=self.splits,
            items=self.dataset.items,
            settings=settings,
            checkpoints=self.folder.checkpoints("recommender"),
            seed=self.config.seed,
            eval_seed=self.config.eval_seed,
            impressions=self.impressions("train"),
            # assigns codes to new items (STORE's codebook only)
            codebook_dir=codebook if codebook.is_dir() else None,
            is_main=self.is_main,
            report_to=self.config.report_to,
            logging_dir=self.folder.logs("recommender"),
        )

    def evaluate(self) -> Path:
        return self._stage("evaluate", self._evaluate)

    def _evaluate(self, folder: Path) -> dict[str, Any]:
        from .evaluation import evaluate_stage

        return evaluate_stage(
            folder,
            model_dir=self.require("recommender") / "model",
            test=self.test_users(),
            num_test_users=len(self.splits["test"]),
            train=self.splits["train"],
            settings=self.preset.recommender,
            impressions=self.impressions("test"),
            eval_seed=self.config.eval_seed,
        )

    def report(self) -> Path:
        return self._stage("report", self._report)

    def _report(self, folder: Path) -> dict[str, Any]:
        from .report import RunSummary, write_report

        for name in STAGES[:-1]:
            self.require(name)
        run = RunSummary.from_stage_folders(
            self.out,
            identity=self.config.identity(),
            semantic_ids=self.config.semantic_ids,
            preset=self.preset.to_dict(),
            dataset_stats=self.dataset.statistics(),
            example_history=list(self.splits["test"][0]["history"][-5:]),
        )
        return write_report(folder, run)

    def _redo(self, stage: str) -> str:
        return f"redo the stage: `store-hf {STAGE_COMMANDS[stage]} {self.out} --force`"

    def check_inputs(self) -> None:
        """What would fail only in a later stage, checked before the first one: the data
        (read and validated), the codebook size against the catalogue and the logging
        integrations (installed)."""
        missing = missing_integrations(parse_report_to(self.config.report_to))
        if missing:
            raise PipelineError(
                f"report_to: {missing} not installed (transformers does not find it); install "
                "it (e.g. pip install tensorboard) or leave it out of report_to"
            )
        num_items = len(self.dataset.items)
        k = self.preset.codebook.codebook_size
        if num_items < k:
            suggest = max(2, 1 << max(1, (num_items // 4).bit_length() - 1))
            raise PipelineError(
                f"codebook: codebook_size {k} is more than the {num_items} items of the "
                f"catalogue (k-means needs at least k items per position); set a smaller one, "
                f"e.g. --codebook-size {suggest}"
            )

    def run(self, until: str | None = None) -> Path:
        """Run every stage in order (up to and including ``until``), holding the folder's lock
        throughout."""
        if not self.is_done("report") or self.force:
            self.check_inputs()  # before touching the output folder
        with self.folder.session():
            for name in STAGES:
                getattr(self, name)()
                if name == until:
                    break
        return self.out


__all__ = [
    "RUN_FILE",
    "STAGES",
    "Pipeline",
    "PipelineError",
    "RunConfig",
    "native_bf16",
    "read_yaml_settings",
]
