"""The mechanics of a run's output folder: one sub-folder per stage, published atomically.

A stage writes into ``<name>.partial/`` and renames it to ``<name>/`` once everything, ending
with ``stage.json``, is written: a killed run never leaves a folder a later stage would take for
finished. Finished stages are skipped unless forced. Under ``accelerate launch`` only the main
process writes; the others wait at the same points.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from .files import link_or_copy, write_json_atomic
from .run_config import RUN_FILE, PipelineError, RunConfig

logger = logging.getLogger(__name__)

#: the command that (re)computes a stage, for error messages
STAGE_COMMANDS = {
    "tokenizer": "tokenizer-train",
    "encode": "encode",
    "codebook": "cluster",
    "recommender": "rec-train",
    "evaluate": "evaluate",
    "report": "report",
}


class RunFolder:
    """The output folder of one :class:`RunConfig`: claims it, runs and publishes stages.

    Args:
        config: the run; its ``output_dir`` is the folder.
        force: redo finished stages, and take over a folder that holds another run.
        distributed_stages: stages whose body runs on every process (the others run on the
            main process only).
    """

    def __init__(
        self, config: RunConfig, force: bool = False, distributed_stages: tuple[str, ...] = ()
    ) -> None:
        from accelerate import PartialState

        self.config = config
        self.out = Path(config.output_dir)
        self.force = force
        self.distributed_stages = distributed_stages
        # cpu=True where there is no GPU: a bare PartialState() would ignore ACCELERATE_USE_CPU
        self.state = PartialState(cpu=not torch.cuda.is_available())

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes (always, outside ``accelerate launch``)."""
        return self.state.is_main_process

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def is_done(self, name: str) -> bool:
        return (self.stage_dir(name) / "stage.json").is_file()

    def require(self, name: str) -> Path:
        """The folder of the finished stage ``name``; :class:`PipelineError` if unfinished."""
        if not self.is_done(name):
            raise PipelineError(
                f"{self.stage_dir(name)}: stage {name!r} has not finished; run "
                f"`store-hf {STAGE_COMMANDS.get(name, name)}` (or `store-hf run`)"
            )
        return self.stage_dir(name)

    def claim(self) -> None:
        """Create the folder, or check that it belongs to this run; write ``run_config.json``."""
        if self.is_main:
            self._claim()
        self.state.wait_for_everyone()

    def _claim(self) -> None:
        run_file = self.out / RUN_FILE
        if self.out.exists() and not self.out.is_dir():
            raise PipelineError(f"{self.out}: exists and is not a folder")
        if run_file.is_file():
            diff = self.config.differences(self.out)
            if diff and not self.force:
                raise PipelineError(
                    f"{self.out}: holds another run (settings differ: {diff}); choose a new "
                    "--output-dir, or pass --force to overwrite it"
                )
        elif self.out.is_dir() and any(self.out.iterdir()) and not self.force:
            raise PipelineError(
                f"{self.out}: not empty and not a store-hf run folder; choose a new --output-dir"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            run_file,
            {"identity": self.config.identity(), "config": dataclasses.asdict(self.config)},
        )

    def reuse(self, source: str | os.PathLike, stages: tuple[str, ...]) -> list[str]:
        """Take the finished ``stages`` (in order, stopping at the first unfinished one) from the
        run folder ``source``, whose settings may differ from this run's in ``recommender``
        alone; returns the names taken.

        Files are hard-linked where the file system allows (no extra disk; stages are never
        modified in place), else copied, and each stage is published atomically like a computed
        one. Stages this run has already finished are kept.
        """
        source = Path(source)
        diff = self.config.differences(source)
        if diff is None:
            raise PipelineError(f"{source}: not a store-hf run folder (no {RUN_FILE})")
        diff = [k for k in diff if k != "recommender"]
        if diff:
            raise PipelineError(
                f"{source}: its stages cannot be reused here, the runs differ in {diff} "
                "(only 'recommender' settings may differ)"
            )
        self.claim()
        taken = []
        for name in stages:
            if not (source / name / "stage.json").is_file():
                break  # a later stage depends on this one: take no more
            if self.is_done(name):
                continue
            if self.is_main:
                partial = self.out / f"{name}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(source / name, partial, copy_function=link_or_copy)
                os.replace(partial, self.stage_dir(name))
                logger.info("stage %s: taken from %s", name, source / name)
            taken.append(name)
        self.state.wait_for_everyone()
        return taken

    def run_stage(self, name: str, body: Callable[[Path], dict[str, Any]]) -> Path:
        """Run ``body(partial_dir) -> summary`` unless the stage is done; publish atomically.

        The summary, with the stage's name and wall time, becomes ``stage.json``.
        """
        final = self.stage_dir(name)
        done = self.is_done(name) and not self.force
        self.state.wait_for_everyone()  # every process decides on the same folder state
        if done:
            logger.info("stage %s: already done (%s), skipping", name, final)
            return final
        partial = self.out / f"{name}.partial"
        if self.is_main:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.state.wait_for_everyone()
        start = time.time()
        logger.info("stage %s: started", name)
        # every stage seeds itself from the run seed before it builds a model, injects LoRA or
        # initialises new rows: a stage computes the same whether the run was interrupted
        # before it or not
        set_seed(self.config.seed)
        summary = body(partial) if name in self.distributed_stages or self.is_main else {}
        self.state.wait_for_everyone()
        if self.is_main:
            summary = {"stage": name, "seconds": round(time.time() - start, 1), **summary}
            write_json_atomic(partial / "stage.json", summary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
            logger.info("stage %s: done in %.1f s", name, summary["seconds"])
        self.state.wait_for_everyone()
        return final


__all__ = ["STAGE_COMMANDS", "RunFolder"]
