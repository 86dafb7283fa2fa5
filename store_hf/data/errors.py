"""Errors raised by the data layer: every message names the file, the line and the field."""

from __future__ import annotations

import os


class DataFormatError(ValueError):
    """Bad input data. ``str(err)`` reads ``path:line: field 'x': message``."""

    def __init__(
        self,
        message: str,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f":{line}" if line is not None else "") + ": "
        what = f"field '{field}': " if field is not None else ""
        super().__init__(where + what + message)
