"""File access shared by the readers: transparent gzip, line-numbered parsing errors."""

from __future__ import annotations

import ast
import csv
import gzip
import json
import math
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DataFormatError

PathLike = str | os.PathLike


def require_file(path: PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise a DataFormatError saying which file is missing."""
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(f"{what} file not found", path=p)
    return p


def open_text(path: PathLike, encoding: str = "utf-8"):
    """Open a text file, gunzipping ``*.gz`` on the fly."""
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "rt", encoding=encoding, newline="")
    return open(p, encoding=encoding, newline="")


@contextmanager
def decoding_errors(path: PathLike, encoding: str = "utf-8") -> Iterator[None]:
    """Turn encoding and compression errors met while reading ``path`` into a DataFormatError."""
    try:
        yield
    except UnicodeDecodeError as e:
        raise DataFormatError(
            f"not valid {encoding} text ({e.reason} at byte {e.start}); pass the right encoding",
            path,
        ) from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DataFormatError(f"corrupt gzip file ({e})", path) from None


def read_json(path: PathLike) -> Any:
    """Load a whole-file JSON document with a file/line error on malformed input."""
    with decoding_errors(path), open_text(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataFormatError(
                f"malformed JSON: {e.msg} (column {e.colno})", path, e.lineno
            ) from None


def iter_json_lines(
    path: PathLike, allow_python_literals: bool = False
) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-empty line of a JSON-lines file.

    ``allow_python_literals`` accepts lines written with Python's ``repr`` (single quotes), as in
    the 2014 Amazon metadata files.
    """
    with decoding_errors(path), open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if not allow_python_literals:
                    raise DataFormatError(f"malformed JSON line: {e.msg}", path, lineno) from None
                try:
                    record = ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    raise DataFormatError(
                        "malformed line (neither JSON nor a Python literal)", path, lineno
                    ) from None
            if not isinstance(record, dict):
                raise DataFormatError(
                    f"expected a JSON object, got {type(record).__name__}", path, lineno
                )
            yield lineno, record


def iter_delimited(
    path: PathLike,
    delimiter: str,
    fieldnames: list[str] | None = None,
    required: list[str] | None = None,
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` from a delimited file.

    With ``fieldnames`` the file has no header and every row must have exactly that many fields;
    otherwise the first line is the header and ``required`` columns must be in it.
    """
    with decoding_errors(path, encoding), open_text(path, encoding=encoding) as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        if fieldnames is None:
            try:
                header = next(reader)
            except StopIteration:
                raise DataFormatError("file is empty (no header line)", path, 1) from None
            header = [h.strip().lstrip("\ufeff") for h in header]
            missing = [c for c in (required or []) if c not in header]
            if missing:
                raise DataFormatError(
                    f"missing column(s) {missing}; the header has {header}",
                    path,
                    1,
                    field=missing[0],
                )
            names = header
        else:
            names = fieldnames
        for row in reader:
            lineno = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(names):
                raise DataFormatError(
                    f"expected {len(names)} fields, found {len(row)}", path, lineno
                )
            yield lineno, dict(zip(names, row))


def iter_separated(
    path: PathLike, separator: str, fieldnames: list[str], encoding: str = "utf-8"
) -> Iterator[tuple[int, dict[str, str]]]:
    """Like :func:`iter_delimited` for multi-character separators (MovieLens-1M ``::``)."""
    with decoding_errors(path, encoding), open_text(path, encoding=encoding) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            row = line.split(separator)
            if len(row) != len(fieldnames):
                raise DataFormatError(
                    f"expected {len(fieldnames)} fields, found {len(row)}", path, lineno
                )
            yield lineno, dict(zip(fieldnames, row))


def parse_number(value: Any, path: PathLike, line: int, field: str) -> float:
    """Parse a numeric cell, raising a DataFormatError that names the cell.

    ``nan`` and infinities (``inf``, ``1e400``) are refused: a NaN timestamp makes the time sort
    meaningless and an infinite one silently moves an interaction to one end of the sequence.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(f"not a number: {value!r}", path, line, field) from None
    if not math.isfinite(number):
        raise DataFormatError(f"not a finite number: {value!r}", path, line, field)
    return number


def parse_id(
    value: Any, path: PathLike | None, line: int | None, field: str, what: str = "id"
) -> str:
    """A user or item id cell as a clean string, or a DataFormatError naming the cell.

    JSON ``null`` would otherwise become the id ``"None"``, and ``true``/``1.5``/lists would become
    ids that never match the other file's (``"1.5"`` vs ``"1.50"``), so only strings and integers
    are ids.
    """
    if value is None:
        raise DataFormatError(f"null {what}", path, line, field)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataFormatError(
            f"{what} must be a string or an integer, got {type(value).__name__} {value!r}",
            path,
            line,
            field,
        )
    text = str(value).strip()
    if not text:
        raise DataFormatError(f"empty {what}", path, line, field)
    return text
