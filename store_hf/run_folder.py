"""The mechanics of a run's output folder: one sub-folder per stage, published atomically.

A stage writes into ``<name>.partial/`` and renames it to ``<name>/`` once everything, ending
with ``stage.json``, is written: a killed run never leaves a folder a later stage would take for
finished. ``stage.json`` records the size and SHA-256 of every file of the stage, and a finished
stage is checked against them before it is used again. Computing a stage removes the later
stages (they were computed from its old result), so a folder never mixes results of two runs.
The folder is locked while a run works in it, and it remembers its settings and a fingerprint of
its input data (``run_config.json``). Under ``accelerate launch`` only the main process writes;
the others wait at the same points.

Only ``store-hf run`` may take a folder over (another run's settings or data, with
``--force``): a stage command cannot redo the earlier stages, so it refuses instead of removing
them. A stage checks the stages it reads before it removes the later ones.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import set_seed

from .files import (
    damaged_files,
    file_checksums,
    link_or_copy,
    read_json,
    safetensors_errors,
    write_json_atomic,
)
from .run_config import (
    DATA_PATHS,
    RUN_FILE,
    RUN_FILE_HINT,
    PipelineError,
    RunConfig,
    changed_inputs,
)

logger = logging.getLogger(__name__)

#: the command that (re)computes a stage, for messages
STAGE_COMMANDS = {
    "tokenizer": "tokenizer-train",
    "encode": "encode",
    "codebook": "cluster",
    "recommender": "rec-train",
    "evaluate": "evaluate",
    "report": "report",
}
LOCK_FILE = ".store-hf.lock"
CHECKPOINTS = "checkpoints"
#: the training stages' logs (TensorBoard: ``tensorboard --logdir <run>/logs``)
LOGS = "logs"
#: results the report stage also copies to the top of the folder
TOP_LEVEL_RESULTS = ("report.md", "metrics.json")


def model_folder(path: str | os.PathLike) -> Path:
    """A recommender model folder: ``path`` itself, or the finished recommender of the run
    folder ``path``. Raises ``FileNotFoundError`` for anything else."""
    path = Path(path)
    inner = path / "recommender" / "model"
    if inner.is_dir():
        return inner
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: not a model folder nor a store-hf run folder")
    return path


def stage_files_problem(folder: Path, recorded: dict[str, Any], redo: str, full: bool) -> None:
    """Raise :class:`PipelineError` naming the first file of ``recorded`` (``stage.json``'s
    ``files``) that is missing under ``folder`` or differs in size or (``full``) checksum."""
    bad = damaged_files(folder, recorded, full=full)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise PipelineError(
            f"{folder / bad[0]}{more}: damaged or missing (its size or checksum differs from "
            f"stage.json); {redo}"
        )


#: model folders whose every file was hashed by this process (the others get a size check)
_HASHED_MODELS: set[Path] = set()


def verified_model_folder(path: str | os.PathLike, verify: bool = True) -> Path:
    """:func:`model_folder` of ``path``, its files checked against the ``stage.json`` of the
    run's recommender stage where it is a run's model (``RUN/recommender/model``).

    Every call checks the sizes; the first in a process also the SHA-256 of every file (an
    edit that keeps the size, like two item ids swapped in ``config.json``). A model folder
    outside a run has nothing recorded to check; ``verify=False`` skips the check.
    """
    folder = model_folder(path)
    stage = folder.parent
    if not verify or folder.name != "model" or not (stage / "stage.json").is_file():
        return folder
    redo = f"redo the stage: `store-hf {STAGE_COMMANDS['recommender']} {stage.parent} --force`"
    summary = read_json(stage / "stage.json", hint=redo)
    recorded = {
        rel.removeprefix("model/"): entry
        for rel, entry in (summary.get("files") or {}).items()
        if rel.startswith("model/")
    }
    key = folder.resolve()
    stage_files_problem(folder, recorded, redo, full=key not in _HASHED_MODELS)
    _HASHED_MODELS.add(key)
    return folder


def process_start(pid: int) -> str | None:
    """When the process ``pid`` started (clock ticks since boot, from ``/proc``), or ``None``
    where that cannot be read (no such process, no ``/proc``)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()[19]  # field 22, after "pid (comm) "
    except (OSError, ValueError, IndexError):
        return None


def boot_id() -> str | None:
    """This machine's boot id (changes with every boot), or ``None`` where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


class FolderLock:
    """An exclusive lock on a run folder: a file holding the owner's process id, host, start
    time and boot id.

    A lock of this host is taken over when its process no longer runs, or when its process id
    now belongs to another process (another start time or boot: the id was reused, e.g. by a
    restarted container); a live one makes :meth:`acquire` raise :class:`PipelineError` naming
    its process. A lock of another host cannot be checked from here: it is refused, unless
    ``break_lock`` (``--break-lock``) takes it over.
    """

    def __init__(self, path: Path, break_lock: bool = False) -> None:
        self.path = path
        self.break_lock = break_lock
        self.held = False

    def acquire(self) -> None:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": process_start(os.getpid()),
            "boot_id": boot_id(),
        }
        for _ in range(3):  # a stale lock removed by another process between two attempts
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = None if self.break_lock else self._owner()
                if owner is not None:
                    raise PipelineError(owner) from None
                logger.warning(
                    "%s: taking over the lock (%s)",
                    self.path,
                    "--break-lock" if self.break_lock else "its process no longer runs",
                )
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me) + "\n")
            self.held = True
            atexit.register(self.release)
            return
        raise PipelineError(f"{self.path}: could not take the lock")

    def _owner(self) -> str | None:
        """Why the lock is held (the message for the user), ``None`` where it is stale."""
        try:
            text = self.path.read_text()
            try:  # {"pid", "host", "started", "boot_id"}; "pid host" before
                holder = json.loads(text)
            except ValueError:
                pid, host = text.split()
                holder = {"pid": pid, "host": host}
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, TypeError, KeyError):
            return None  # unreadable or half-written by a killed process
        folder = self.path.parent
        if host != socket.gethostname():
            return (
                f"{folder}: in use by a store-hf run on host {host} (process {pid}), which "
                "cannot be checked from here; if it no longer runs, pass --break-lock to take "
                f"the lock ({self.path}) over"
            )
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # it runs, as another user
            pass
        started = holder.get("started")
        if holder.get("boot_id") not in (None, boot_id()):
            return None  # written before this machine booted
        if started is not None and started != process_start(pid):
            return None  # the id now names another process
        if started is None and pid == os.getpid():
            return None  # an old lock naming this process, which holds no lock of that kind
        return (
            f"{folder}: in use by another store-hf run (process {pid}); wait for it to finish "
            f"or stop it (a lock of a process that no longer runs is taken over: {self.path})"
        )

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class RunFolder:
    """The output folder of one :class:`RunConfig`: claims and locks it, runs, publishes and
    checks stages.

    Args:
        config: the run; its ``output_dir`` is the folder.
        force: redo stages even where finished (their checkpoints too), and, with
            ``take_over``, take over a folder that holds another run or was computed from
            other data.
        stages: every stage in run order; computing one removes the later ones.
        distributed_stages: stages whose body runs on every process (the others run on the
            main process only).
        take_over: whether this may take over a folder of another run (``store-hf run``);
            ``False`` for a stage command, which cannot redo the earlier stages: it refuses.
        break_lock: take over the folder's lock whoever holds it (``--break-lock``).
    """

    def __init__(
        self,
        config: RunConfig,
        force: bool = False,
        stages: tuple[str, ...] = (),
        distributed_stages: tuple[str, ...] = (),
        take_over: bool = True,
        break_lock: bool = False,
    ) -> None:
        from accelerate import PartialState

        self.config = config
        self.out = Path(config.output_dir)
        self.force = force
        self.stages = stages
        self.distributed_stages = distributed_stages
        # cpu=True where there is no GPU: a bare PartialState() would ignore ACCELERATE_USE_CPU
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.take_over = take_over
        self.lock = FolderLock(self.out / LOCK_FILE, break_lock=break_lock)
        self._opened = False
        self._depth = 0
        self._inputs: dict[str, str] | None = None
        self._verified: set[str] = set()

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes (always, outside ``accelerate launch``)."""
        return self.state.is_main_process

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def checkpoints(self, name: str) -> Path:
        """Where the training stage ``name`` keeps its Trainer checkpoints."""
        return self.out / CHECKPOINTS / name

    def logs(self, name: str) -> Path:
        """Where the training stage ``name`` writes its TensorBoard logs (with ``report_to``)."""
        return self.out / LOGS / name

    def is_done(self, name: str) -> bool:
        return (self.stage_dir(name) / "stage.json").is_file()

    def require(self, name: str) -> Path:
        """The folder of the finished, undamaged stage ``name``; :class:`PipelineError` where
        it has not finished or a file differs from what ``stage.json`` recorded."""
        if not self.is_done(name):
            raise PipelineError(
                f"{self.stage_dir(name)}: stage {name!r} has not finished; run "
                f"`store-hf {STAGE_COMMANDS.get(name, name)} {self.out}` (or `store-hf run`)"
            )
        self.verify(name)
        return self.stage_dir(name)

    def verify(self, name: str) -> dict[str, Any]:
        """``stage.json`` of a finished stage, after checking its files against the recorded
        sizes and checksums (folders of older versions, without checksums, are trusted)."""
        redo = f"redo the stage: `store-hf {STAGE_COMMANDS.get(name, name)} {self.out} --force`"
        summary = read_json(self.stage_dir(name) / "stage.json", hint=redo)
        if name in self._verified or "files" not in summary:
            return summary
        stage_files_problem(self.stage_dir(name), summary["files"], redo, full=True)
        self._verified.add(name)
        return summary

    # -- claiming the folder
    def inputs(self) -> dict[str, str]:
        """The run's input fingerprint (:meth:`RunConfig.input_fingerprint`), hashed once."""
        if self._inputs is None:
            self._inputs = self.config.input_fingerprint()
        return self._inputs

    def open(self) -> None:
        """Lock the folder and claim it for this run (once per instance): create it, or check
        that it holds this run computed from the same data; write ``run_config.json``."""
        if self._opened:
            return
        if self.is_main:
            self._open()
        self.state.wait_for_everyone()
        self._opened = True

    def close(self) -> None:
        """Release the lock; the next :meth:`open` checks the folder again."""
        if self.is_main:
            self.lock.release()
        self._opened = False

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """The folder open (locked and claimed) for the block; nested sessions share one lock,
        the outermost releases it."""
        self._depth += 1
        try:
            self.open()
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self.close()

    def _open(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise PipelineError(f"{self.out}: exists and is not a folder")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PipelineError(
                f"{self.out}: cannot create the output folder: {e.strerror}"
            ) from None
        if not os.access(self.out, os.W_OK):
            raise PipelineError(f"{self.out}: the output folder is not writable")
        self.lock.acquire()
        run_file = self.out / RUN_FILE
        inputs = self.inputs()
        if run_file.is_file():
            saved = read_json(run_file, hint=RUN_FILE_HINT)
            diff = self.config.differences_from(saved)
            changed = changed_inputs(saved.get("inputs", inputs), inputs)
            problem = (
                f"holds another run (settings differ: {diff})"
                if diff
                else f"the input data changed since this run was computed ({', '.join(changed)})"
            )
            if (diff or changed) and not self.take_over:
                raise PipelineError(
                    f"{self.out}: {problem}; a stage command cannot redo the earlier stages "
                    f"and leaves the folder as it is: redo the whole run with `store-hf run "
                    f"{run_file} --force`, or start it in a new --output-dir"
                )
            if (diff or changed) and not self.force:
                raise PipelineError(
                    f"{self.out}: {problem}; choose a new --output-dir, or pass --force to redo "
                    "the run with these settings and data"
                )
            if diff or changed:
                self._clear(f"a new run takes the folder over ({diff or changed})")
        elif any(p.name != LOCK_FILE for p in self.out.iterdir()) and not self.force:
            raise PipelineError(
                f"{self.out}: not empty and not a store-hf run folder; choose a new --output-dir"
            )
        config = self.config.with_absolute_paths()
        write_json_atomic(
            run_file,
            {
                "identity": config.identity(),
                "settings": config.settings(),
                "config": dataclasses.asdict(config),
                # where the data is from the run folder: found again when both are moved
                "data_paths": {
                    name: os.path.relpath(getattr(config, name), os.path.abspath(self.out))
                    for name in DATA_PATHS
                    if getattr(config, name) is not None
                },
                "inputs": inputs,
            },
        )

    def _clear(self, why: str) -> None:
        """Remove every stage, partial stage, checkpoint and top-level result."""
        logger.warning("%s: removing its stages: %s", self.out, why)
        for name in self.stages:
            self._remove_stage(name, checkpoints=True)

    def _remove_stage(self, name: str, checkpoints: bool) -> None:
        for path in (self.stage_dir(name), self.out / f"{name}.partial"):
            shutil.rmtree(path, ignore_errors=True)
        if checkpoints:  # the logs go with them: a redone stage starts its curves again
            shutil.rmtree(self.checkpoints(name), ignore_errors=True)
            shutil.rmtree(self.logs(name), ignore_errors=True)
        if name == "report":
            for result in TOP_LEVEL_RESULTS:
                (self.out / result).unlink(missing_ok=True)
        self._verified.discard(name)

    def _invalidate_after(self, name: str) -> None:
        """Remove the stages after ``name`` (and their checkpoints): they were computed from
        the result ``name`` is about to replace."""
        if name not in self.stages:
            return
        later = self.stages[self.stages.index(name) + 1 :]
        stale = [s for s in later if self.stage_dir(s).exists() or self.checkpoints(s).exists()]
        if stale:
            logger.info(
                "stage %s: removing the later stages %s (computed from its old result)", name, stale
            )
        for s in stale:
            self._remove_stage(s, checkpoints=True)

    def reuse(self, source: str | os.PathLike, stages: tuple[str, ...]) -> list[str]:
        """Take the finished ``stages`` (in order, stopping at the first unfinished one) from the
        run folder ``source``, whose settings may differ from this run's in ``recommender``
        alone; returns the names taken.

        Files are hard-linked where the file system allows (no extra disk; stages are never
        modified in place), else copied, and each stage is published atomically like a computed
        one. Stages this run has already finished are kept.
        """
        source = Path(source)
        if not (source / RUN_FILE).is_file():
            raise PipelineError(f"{source}: not a store-hf run folder (no {RUN_FILE})")
        saved = read_json(source / RUN_FILE, hint=RUN_FILE_HINT)
        diff = [
            k
            for k in self.config.differences_from(saved)
            if k != "recommender" and not k.startswith("recommender.")
        ]
        if diff:
            raise PipelineError(
                f"{source}: its stages cannot be reused here, the runs differ in {diff} "
                "(only 'recommender' settings may differ)"
            )
        inputs = saved.get("inputs")
        if inputs is not None and changed_inputs(inputs, self.inputs()):
            raise PipelineError(f"{source}: its stages were computed from other input data")
        self.open()
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
                self.verify(name)
                logger.info("stage %s: taken from %s", name, source / name)
            taken.append(name)
        self.state.wait_for_everyone()
        return taken

    # -- running a stage
    def run_stage(
        self,
        name: str,
        body: Callable[[Path], dict[str, Any]],
        requires: tuple[str, ...] = (),
    ) -> Path:
        """Run ``body(partial_dir) -> summary`` unless the stage is done; publish atomically.

        The summary, with the stage's name, wall time and the checksums of its files, becomes
        ``stage.json``. Before the body runs, the stages it reads (``requires``) are checked
        (finished, undamaged); only then are the later stages removed, and with ``force`` this
        stage's checkpoints too (it trains from the start). A file the body cannot write with
        safetensors (a full disk) is named in one line.
        """
        self.open()
        final = self.stage_dir(name)
        done = self.is_done(name) and not self.force
        self.state.wait_for_everyone()  # every process decides on the same folder state
        if done:
            if self.is_main:
                self.verify(name)
            logger.info("stage %s: already done (%s), skipping", name, final)
            return final
        partial = self.out / f"{name}.partial"
        if self.is_main:
            for needed in requires:  # inputs first: a stage that cannot run removes nothing
                self.require(needed)
            self._invalidate_after(name)
            if self.force:
                shutil.rmtree(self.checkpoints(name), ignore_errors=True)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.state.wait_for_everyone()
        start = time.time()
        logger.info("stage %s: started", name)
        # every stage seeds itself from the run seed before it builds a model, injects LoRA or
        # initialises new rows: a stage computes the same whether the run was interrupted
        # before it or not
        set_seed(self.config.seed)
        with safetensors_errors(partial, doing="writing the stage's files"):
            summary = body(partial) if name in self.distributed_stages or self.is_main else {}
        self.state.wait_for_everyone()
        if self.is_main:
            summary = {
                "stage": name,
                "seconds": round(time.time() - start, 1),
                **summary,
                "files": file_checksums(partial, exclude=("stage.json",)),
            }
            write_json_atomic(partial / "stage.json", summary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
            self._verified.add(name)
            logger.info("stage %s: done in %.1f s", name, summary["seconds"])
        self.state.wait_for_everyone()
        return final


__all__ = [
    "CHECKPOINTS",
    "LOCK_FILE",
    "STAGE_COMMANDS",
    "FolderLock",
    "RunFolder",
    "model_folder",
    "verified_model_folder",
]
