"""Writing result files atomically: a killed process never leaves a half-written file that a
later run would take for finished."""

from __future__ import annotations

import json
import os
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
