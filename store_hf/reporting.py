"""Where the training stages report their logs: ``report_to`` (the run setting handed to
``transformers.TrainingArguments``) and the run folder's ``logs/`` folder.

Light on purpose (no torch or transformers at import): the run config checks ``report_to`` before
anything heavy is imported or anything is written, and the command line checks ``--report-to``
while it parses.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

#: The logging integrations of ``transformers.TrainingArguments(report_to=...)``, written out
#: (importing ``transformers.integrations`` imports torch); tests/test_reporting.py checks that
#: they agree with the installed transformers.
INTEGRATIONS = (
    "azure_ml",
    "clearml",
    "codecarbon",
    "comet_ml",
    "dagshub",
    "dvclive",
    "flyte",
    "kubeflow",
    "mlflow",
    "neptune",
    "swanlab",
    "tensorboard",
    "trackio",
    "wandb",
)
#: ``none``: no integration (the default: a run stays offline); ``all``: every installed one.
REPORT_TO_CHOICES = ("none", "all", *INTEGRATIONS)

#: The environment variable transformers' TensorBoard callback reads its folder from
#: (``TrainingArguments`` has no ``logging_dir`` since transformers 5).
TENSORBOARD_ENV = "TENSORBOARD_LOGGING_DIR"


def parse_report_to(value: str | Sequence[str]) -> list[str]:
    """The integrations a ``report_to`` setting names: ``"tensorboard"``,
    ``"tensorboard,wandb"`` or ``["tensorboard", "wandb"]``; ``"none"`` gives ``[]``, ``"all"``
    is kept as ``["all"]`` (transformers resolves it to the installed integrations).

    Raises:
        ValueError: an unknown name (the message lists the known ones), no name at all, or
            ``none``/``all`` together with other names.
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = [str(p).strip() for p in parts if str(p).strip()]
    if not names:
        raise ValueError(f"no integration named; give one of {list(REPORT_TO_CHOICES)}")
    unknown = [n for n in names if n not in REPORT_TO_CHOICES]
    if unknown:
        raise ValueError(f"{unknown} not one of {list(REPORT_TO_CHOICES)}")
    if len(names) > 1 and {"none", "all"} & set(names):
        raise ValueError(f"'none' and 'all' stand alone, got {names}")
    return [] if names == ["none"] else names


def missing_integrations(names: Sequence[str]) -> list[str]:
    """The integrations of ``names`` (from :func:`parse_report_to`) that are not installed:
    transformers would refuse them only when a stage's Trainer starts."""
    from transformers.integrations import get_available_reporting_integrations

    available = set(get_available_reporting_integrations())
    return [n for n in names if n != "all" and n not in available]


@contextlib.contextmanager
def tensorboard_logging_dir(folder: str | os.PathLike | None) -> Iterator[None]:
    """TensorBoard event files of the Trainers built inside the block go to ``folder``
    (``None``: transformers' default, ``<output_dir>/runs/<date_host>``).

    transformers' TensorBoard callback reads the folder from the environment when the Trainer
    builds it; the variable is restored on leaving, so that the next Trainer (another stage)
    gets its own folder.
    """
    if folder is None:
        yield
        return
    before = os.environ.get(TENSORBOARD_ENV)
    os.environ[TENSORBOARD_ENV] = str(Path(folder))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TENSORBOARD_ENV, None)
        else:
            os.environ[TENSORBOARD_ENV] = before


__all__ = [
    "INTEGRATIONS",
    "REPORT_TO_CHOICES",
    "TENSORBOARD_ENV",
    "missing_integrations",
    "parse_report_to",
    "tensorboard_logging_dir",
]
