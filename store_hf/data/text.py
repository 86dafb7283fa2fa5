"""Text normalisation applied to every item attribute, whatever the reader."""

from __future__ import annotations

import html
import re
from typing import Any

_WHITESPACE = re.compile(r"\s+")


def clean_text(value: Any) -> str:
    """Turn a raw attribute value into one clean line of text.

    HTML entities are unescaped twice (scraped catalogues often hold ``&amp;amp;``), all runs of
    whitespace become one space, and lists (Amazon categories, descriptions) are joined with ", ".
    ``None`` and NaN give the empty string.
    """
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from a CSV cell
        return ""
    if isinstance(value, (list, tuple)):
        parts = (clean_text(v) for v in _flatten(value))
        return ", ".join(p for p in parts if p)
    text = html.unescape(html.unescape(str(value)))
    return _WHITESPACE.sub(" ", text).strip()


def _flatten(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flatten(v)
        else:
            yield v
