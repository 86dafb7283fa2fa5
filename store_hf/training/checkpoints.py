"""Which Trainer checkpoint a stage resumes from."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


def last_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete ``checkpoint-<step>`` in ``folder`` (``None``: none).

    ``Trainer`` writes ``trainer_state.json`` last, after the weights, optimizer and RNG state,
    so a checkpoint without a readable one was cut off by a killed process: resuming from it
    would fail on every rerun. Such checkpoints are removed (by the main process) with a warning.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    main = int(os.environ.get("RANK", "0")) == 0
    complete = []
    for path in folder.glob("checkpoint-*"):
        step = path.name.rsplit("-", 1)[-1]
        if not (path.is_dir() and step.isdigit()):
            continue
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            if main:
                logger.warning("%s: incomplete checkpoint (a killed save), removed", path)
                shutil.rmtree(path, ignore_errors=True)
            continue
        complete.append((int(step), path))
    return max(complete)[1] if complete else None


__all__ = ["last_checkpoint"]
