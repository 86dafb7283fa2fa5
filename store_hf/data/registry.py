"""Format registry: every reader is a :class:`Reader` with a name, a read function and a locator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .dataset import RecDataset
from .errors import DataFormatError

#: ``read(items_path, interactions_path, *, options=None, name=None, **kwargs) -> RecDataset``
ReadFn = Callable[..., RecDataset]
#: ``locate(directory) -> (items_path, interactions_path)`` or ``None`` if the folder is not this format.
LocateFn = Callable[[Path], "tuple[Path, Path] | None"]


@dataclass(frozen=True)
class Reader:
    name: str
    read: ReadFn
    locate: LocateFn
    description: str


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader) -> Reader:
    _READERS[reader.name] = reader
    return reader


def get_reader(name: str) -> Reader:
    if name not in _READERS:
        raise DataFormatError(
            f"unknown dataset format {name!r}; known formats: {sorted(_READERS)}", field="format"
        )
    return _READERS[name]


def available_formats() -> list[str]:
    return sorted(_READERS)


def detect_format(directory: str | Path) -> tuple[str, Path, Path]:
    """Find which registered format a folder holds; return ``(format, items, interactions)``."""
    d = Path(directory)
    if not d.is_dir():
        raise DataFormatError("not a folder (pass a folder, or --items and --interactions)", path=d)
    for reader in _READERS.values():
        if reader.name == "generic":
            continue
        found = reader.locate(d)
        if found is not None:
            return reader.name, found[0], found[1]
    found = _READERS["generic"].locate(d) if "generic" in _READERS else None
    if found is not None:
        return "generic", found[0], found[1]
    raise DataFormatError(
        f"no known dataset layout in this folder; known formats: {available_formats()}", path=d
    )
