"""Writing result files atomically: a killed process never leaves a half-written file that a
later run would take for finished.

* :func:`atomic_write`: bytes, text or a writer function -> a temporary file in the target's
  folder, then ``os.replace`` (atomic on POSIX and Windows within one file system).
* :func:`write_json_atomic`: JSON (numpy scalars and arrays, paths and tensors converted);
  :func:`read_json` reads it back, naming the file when it is not valid JSON.
* :func:`file_checksums`: sizes and SHA-256 of every file of a folder, to tell later whether a
  finished result was damaged.
* :func:`save_tensors_and_config` / :func:`load_tensors_and_config`: the ``<name>.safetensors``
  + ``<name>.json`` pair every saved model of this package uses (semantic-ID codebooks, RQ-VAE,
  SASRec, TIGER), with a content fingerprint in both files that detects a pair from two saves
  (the same content gives the same bytes: files saved from one seed compare with ``sha256sum``).
* :func:`safetensors_errors`: safetensors' own error (a truncated file, a full disk; not an
  ``OSError``) as a one-line :class:`CorruptFileError` naming the file.

Not used by the remote-code modules (``modeling_store`` and what it imports): those must load
from a Hub folder without this package installed, so they keep their own few lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

#: What :func:`atomic_write` accepts: the file's bytes, its text (UTF-8) or a function that
#: writes the file at the temporary path it is given (e.g. ``safetensors.save_file``).
Content = bytes | str | Callable[[str], Any]


def atomic_write(path: str | os.PathLike, content: Content, mode: int = 0o644) -> Path:
    """Write ``path`` through a temporary file in its folder and a rename.

    Args:
        path: the file to (re)place; its parent folder is created.
        content: bytes, str (written as UTF-8) or ``write(tmp_path: str)``.
        mode: permission bits of the result (``mkstemp`` creates 0600; a saved file is meant to
            be shared, so 0644 by default).

    Returns:
        ``path`` as a ``Path``. On any error the temporary file is removed and ``path`` is left
        as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if not callable(content):
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
                f.flush()
                os.fsync(f.fileno())
        if callable(content):  # the writer opens the path itself, after our handle is closed
            content(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, value: Any, indent: int | None = 2) -> Path:
    """Write ``value`` as JSON to ``path`` through a temporary file and a rename; numpy scalars
    and arrays and paths are converted. Creates the parent folder. Returns the path."""
    return atomic_write(path, json.dumps(value, indent=indent, default=_json_default) + "\n")


class CorruptFileError(ValueError):
    """A file this package wrote (or reads) that cannot be parsed; the message names it."""


def read_json(path: str | os.PathLike, hint: str = "") -> Any:
    """The JSON value in ``path``.

    Raises:
        FileNotFoundError: no such file (the message names it).
        CorruptFileError: not valid JSON or not UTF-8, e.g. a truncated file; the message names
            the file, where parsing stopped and ``hint`` (what to do about it).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}: {e.msg}"
        raise CorruptFileError(
            f"{path}: not valid JSON ({where}){'; ' + hint if hint else ''}"
        ) from None
    except UnicodeDecodeError as e:
        raise CorruptFileError(
            f"{path}: not UTF-8 text ({e}){'; ' + hint if hint else ''}"
        ) from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (constant memory for large weights)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(folder: str | os.PathLike, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """``{relative path: {"size": bytes, "sha256": hex}}`` of every file under ``folder``
    (sorted; hidden files and names in ``exclude`` left out)."""
    folder = Path(folder)
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in exclude or any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        out[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def damaged_files(
    folder: str | os.PathLike, recorded: dict[str, Any], full: bool = True
) -> list[str]:
    """The files of ``recorded`` (from :func:`file_checksums`) that are missing under
    ``folder`` or differ in size or (with ``full``, reading every file) in content."""
    folder = Path(folder)
    bad = []
    for rel, expected in recorded.items():
        path = folder / rel
        if (
            not path.is_file()
            or path.stat().st_size != expected["size"]
            or (full and sha256_file(path) != expected["sha256"])
        ):
            bad.append(rel)
    return bad


@contextlib.contextmanager
def safetensors_errors(
    path: str | os.PathLike, doing: str = "reading", hint: str = ""
) -> Iterator[None]:
    """Report safetensors' own error raised in the block (a truncated or damaged file, a full
    disk while saving: ``SafetensorError`` is not an ``OSError``) as a one-line
    :class:`CorruptFileError` naming ``path``, what was being done (``"reading"``,
    ``"writing the stage's files"``) and ``hint`` (what to do about it)."""
    try:
        yield
    except Exception as e:
        from safetensors import SafetensorError

        if not isinstance(e, SafetensorError):
            raise
        detail = " ".join(str(e).split())
        raise CorruptFileError(
            f"{path}: {doing} failed in safetensors ({detail}){'; ' + hint if hint else ''}"
        ) from None


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy the file ``src`` to ``dst`` atomically (see :func:`atomic_write`)."""
    return atomic_write(dst, Path(src).read_bytes())


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


# ----------------------------------------------------------------------------- tensors + config


def save_tensors_and_config(
    folder: str | os.PathLike,
    weights_name: str,
    config_name: str,
    tensors: Mapping[str, Any],
    config: Mapping[str, Any],
    format_version: int,
    indent: int | None = 1,
) -> str:
    """Write ``folder/weights_name`` (safetensors) and ``folder/config_name`` (JSON), each
    atomically, with one fingerprint in both: a hash of the tensors and the config, so equal
    content gives byte-identical files and a pair from two different saves is detected.

    Args:
        tensors: name -> numpy array or torch tensor (all of one kind), contiguous.
        config: JSON-able settings; written after ``format_version`` and ``fingerprint``.
        format_version: also stored (as a string) in the safetensors metadata.
        indent: JSON indent (``None`` for one line, e.g. when it holds a large code table).

    Returns:
        The fingerprint (32 hex characters).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if all(isinstance(t, np.ndarray) for t in tensors.values()):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save
    metadata = {"format_version": str(format_version)}
    text = json.dumps(dict(config), indent=indent, default=_json_default)
    digest = hashlib.sha256(_sorted_metadata(save(dict(tensors), metadata=metadata)))
    digest.update(text.encode("utf-8"))
    fingerprint = digest.hexdigest()[:32]
    blob = _sorted_metadata(save(dict(tensors), metadata={**metadata, "fingerprint": fingerprint}))
    meta = {"format_version": format_version, "fingerprint": fingerprint, **config}
    # Weights first: a crash between the two writes leaves a pair whose fingerprints differ,
    # which the loader reports, never a config that silently describes other weights.
    atomic_write(folder / weights_name, blob)
    atomic_write(folder / config_name, json.dumps(meta, indent=indent, default=_json_default))
    return fingerprint


def _sorted_metadata(blob: bytes) -> bytes:
    """A safetensors file's bytes with the metadata of its header in sorted order.

    safetensors keeps the metadata in a hash map, so two saves of the same tensors and
    metadata may write it in different orders; the header is rewritten (compact JSON, padded
    with spaces to its old length, as safetensors pads it), the tensors are left as they are.
    """
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    if len(text) > size:  # not expected: the same content, compact, is never longer
        return blob
    return blob[:8] + text.ljust(size, b" ") + blob[8 + size :]


def load_tensors_and_config(
    folder: str | os.PathLike,
    weights_name: str,
    config_name: str,
    format_version: int,
    framework: Literal["np", "pt"] = "pt",
    device: str = "cpu",
    what: str = "model",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a pair written by :func:`save_tensors_and_config`.

    Args:
        format_version: the newest version this code reads; a newer file is an error.
        framework: ``"np"`` (numpy arrays) or ``"pt"`` (torch tensors on ``device``).
        what: names the kind of file in error messages (``"codebook"``, ``"SASRec"``).

    Returns:
        ``(tensors, config)``; ``config`` still holds ``format_version`` and ``fingerprint``.

    Raises:
        FileNotFoundError: a file is missing (named).
        ValueError: unreadable JSON or safetensors header, a newer ``format_version``, or
            fingerprints that differ (the two files come from different saves).
    """
    from safetensors import safe_open

    folder = Path(folder)
    weights_path, config_path = folder / weights_name, folder / config_name
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{what} file missing: {path}")
    try:
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        version = int(meta["format_version"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"corrupt {what} file {config_path}: {e!r}") from e
    if not 1 <= version <= format_version:
        raise ValueError(
            f"{config_path} has format_version {version}; this store_hf reads 1 to "
            f"{format_version}: upgrade store_hf"
        )
    try:
        with safe_open(str(weights_path), framework=framework, device=device) as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (not a dict)
            file_meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise ValueError(f"corrupt {what} file {weights_path}: {e!r}") from e
    if file_meta.get("fingerprint") != meta.get("fingerprint"):
        raise ValueError(
            f"{config_path} and {weights_path} come from different saves (fingerprints differ); "
            f"save the {what} again"
        )
    return tensors, meta


__all__ = [
    "CorruptFileError",
    "atomic_copy",
    "atomic_write",
    "damaged_files",
    "file_checksums",
    "link_or_copy",
    "load_tensors_and_config",
    "read_json",
    "safetensors_errors",
    "save_tensors_and_config",
    "sha256_file",
    "write_json_atomic",
]
