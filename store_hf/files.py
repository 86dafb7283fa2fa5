"""Writing result files atomically: a killed process never leaves a half-written file that a
later run would take for finished."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def write_json_atomic(path: str | os.PathLike, value: Any, indent: int = 2) -> Path:
    """Write ``value`` as JSON to ``path`` through a temporary file and a rename; numpy scalars
    and arrays and paths are converted. Creates the parent folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=indent, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file beside ``dst`` and a rename."""
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy(src, tmp)
    os.replace(tmp, dst)
    return dst


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link ``src`` to ``dst`` (no extra disk; for files never modified in place), or copy
    it where the file system does not allow links. A ``copy_function`` for ``shutil.copytree``."""
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copy2(src, dst)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch tensors
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
