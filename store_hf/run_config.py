"""What a run depends on (:class:`RunConfig`, saved as ``run_config.json``) and the YAML file
that may hold it."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataOptions, available_formats, load_dataset_or_embedded
from .data.dataset import RecDataset
from .data.splits import EVAL_SEED
from .files import read_json, sha256_file
from .presets import (
    SEMANTIC_IDS,
    CodebookSettings,
    Preset,
    RecStageSettings,
    TokenizerStageSettings,
    get_preset,
)
from .reporting import parse_report_to

RUN_FILE = "run_config.json"
RUN_FILE_HINT = "start the run again in a new --output-dir (this folder's settings are unreadable)"


class PipelineError(ValueError):
    """A run that cannot start or continue (bad config, foreign output folder, missing stage)."""


@dataclass
class RunConfig:
    """Everything a run depends on; saved as ``run_config.json`` in the output folder.

    ``tokenizer``/``recommender``/``codebook`` override fields of the preset's stage settings
    (:class:`~store_hf.presets.TokenizerStageSettings`,
    :class:`~store_hf.presets.RecStageSettings`, :class:`~store_hf.presets.CodebookSettings`).
    ``report_to`` is where the training stages log (``TrainingArguments.report_to``; TensorBoard
    writes under ``<output_dir>/logs/<stage>``); it changes no result, so it is not part of
    :meth:`identity`.
    """

    output_dir: str
    preset: str = "cpu"
    backbone: str | None = None
    dataset: str | None = None
    dataset_format: str | None = None
    items: str | None = None
    interactions: str | None = None
    kcore: int | None = None
    seed: int = 0
    # which validation and test users are ranked: fixed, apart from the training seed (see
    # ``store_hf.data.EVAL_SEED``)
    eval_seed: int = EVAL_SEED
    semantic_ids: str = "store"
    eval_tokenizer_items: int = 48
    # "none" (offline), "tensorboard", "tensorboard,wandb", a list of names or "all"
    report_to: str | list[str] = "none"
    tokenizer: dict[str, Any] = field(default_factory=dict)
    recommender: dict[str, Any] = field(default_factory=dict)
    codebook: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # paths are kept as the strings they were given (the identity compares them as text)
        for name in ("output_dir", "dataset", "items", "interactions"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> RunConfig:
        """Build from a dict, naming the source and field of any unknown or mistyped key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PipelineError(f"{source}: unknown key(s) {unknown}; known keys: {sorted(known)}")
        if "output_dir" not in values:
            raise PipelineError(f"{source}: 'output_dir' is required")
        try:
            config = cls(**typed_settings(values, source))
        except TypeError as e:  # a dataclass that refuses a value: one line, with the source
            raise PipelineError(f"{source}: {e}") from None
        config.check(source)
        return config

    @classmethod
    def from_run_folder(cls, folder: str | os.PathLike) -> RunConfig:
        """The RunConfig saved in the run folder ``folder``, acting on ``folder`` itself.

        The saved ``output_dir`` is the folder as the run was started: relative to the
        directory it was started from, and another folder altogether once the run folder is
        copied or moved (``cp -a runs/ref runs/c; store-hf report runs/c`` must not write into
        runs/ref). The folder given is the run; ``output_dir`` is not part of its identity.
        """
        folder = Path(folder)
        run_file = folder / RUN_FILE
        if not run_file.is_file():
            raise PipelineError(f"{folder}: no {RUN_FILE}; start with store-hf run")
        saved = read_json(run_file, hint=RUN_FILE_HINT)
        values = saved.get("config") if isinstance(saved, dict) else None
        if not isinstance(values, dict):
            raise PipelineError(f"{run_file}: no 'config' mapping; not written by store-hf run")
        return cls.from_dict({**values, "output_dir": str(folder)}, source=str(run_file))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_yaml_settings(path), source=str(path))

    def check(self, source: str = "config") -> None:
        """Validate every field and stage setting (names and types); :class:`PipelineError`
        names ``source`` and the field."""
        typed_settings(dataclasses.asdict(self), source)
        try:
            preset = get_preset(self.preset)
        except ValueError as e:
            raise PipelineError(f"{source}: preset: {e}") from None
        for name, settings in (
            ("tokenizer", preset.tokenizer),
            ("recommender", preset.recommender),
            ("codebook", preset.codebook),
        ):
            values = getattr(self, name)
            if not isinstance(values, dict):
                raise PipelineError(f"{source}: {name}: expected a mapping of settings")
            allowed = {f.name for f in dataclasses.fields(settings)}
            bad = sorted(set(values) - allowed)
            if bad:
                raise PipelineError(
                    f"{source}: {name}: unknown setting(s) {bad}; known: {sorted(allowed)}"
                )
        if self.semantic_ids not in SEMANTIC_IDS:
            raise PipelineError(
                f"{source}: semantic_ids: {self.semantic_ids!r} is not one of {list(SEMANTIC_IDS)}"
            )
        try:
            parse_report_to(self.report_to)
        except ValueError as e:
            raise PipelineError(f"{source}: report_to: {e}") from None
        for name, value, low in (
            ("seed", self.seed, 0),
            ("eval_seed", self.eval_seed, 0),
            ("kcore", self.kcore, 1),
            ("eval_tokenizer_items", self.eval_tokenizer_items, 0),
            ("codebook.codebook_size", self.codebook.get("codebook_size"), 2),
            ("codebook.pca_dim", self.codebook.get("pca_dim"), 1),
        ):
            if value is not None and value < low:
                raise PipelineError(f"{source}: {name}: must be >= {low}, got {value}")
        if not str(self.output_dir).strip():
            raise PipelineError(f"{source}: output_dir: empty")
        if self.dataset_format is not None and self.dataset_format not in available_formats():
            raise PipelineError(
                f"{source}: dataset_format: {self.dataset_format!r} is not one of "
                f"{available_formats()}"
            )

    def input_files(self) -> list[Path]:
        """The data files the run reads: every file of the dataset folder, the items and
        interactions files, or the embedded dataset's files (hidden files left out)."""
        from .data import EMBEDDED_DATASET_DIR

        named = [Path(p) for p in (self.dataset, self.items, self.interactions) if p is not None]
        files = []
        for root in named or [EMBEDDED_DATASET_DIR]:
            if root.is_dir():
                files += sorted(
                    p
                    for p in root.rglob("*")
                    if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)
                )
            elif root.is_file():
                files.append(root)
        return files

    def input_fingerprint(self) -> dict[str, str]:
        """``{path: sha256}`` of :meth:`input_files`: a run folder remembers the data it was
        computed from, so a rerun notices edited data instead of reprinting stale results."""
        return {str(p): sha256_file(p) for p in self.input_files()}

    def resolved_preset(self) -> Preset:
        preset = get_preset(self.preset, **({"backbone": self.backbone} if self.backbone else {}))
        return dataclasses.replace(
            preset,
            tokenizer=dataclasses.replace(preset.tokenizer, **self.tokenizer),
            recommender=dataclasses.replace(preset.recommender, **self.recommender),
            codebook=dataclasses.replace(preset.codebook, **self.codebook),
        )

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (an output folder serves one identity)."""
        values = dataclasses.asdict(self)
        values.pop("output_dir")
        values.pop("report_to")  # where the logs go changes no result
        # defaults of settings added later leave the identity of older folders unchanged
        if values["semantic_ids"] == "store":
            values.pop("semantic_ids")
        if values["eval_seed"] == EVAL_SEED:
            values.pop("eval_seed")
        return values

    def differences(self, folder: str | os.PathLike) -> list[str] | None:
        """Names of the settings in which the run saved in ``folder`` differs from this one
        (``[]``: the same run); ``None`` where ``folder`` holds no run."""
        run_file = Path(folder) / RUN_FILE
        if not run_file.is_file():
            return None
        return self.differences_from(read_json(run_file, hint=RUN_FILE_HINT))

    def differences_from(self, saved: dict[str, Any]) -> list[str]:
        """Names of the settings in which the run of a read ``run_config.json`` (``saved``)
        differs from this one (``[]``: the same run)."""
        theirs, mine = saved.get("identity", {}), self.identity()
        return sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))

    def load_dataset(self) -> RecDataset:
        return load_dataset_or_embedded(
            self.dataset,
            format=self.dataset_format,
            items=self.items,
            interactions=self.interactions,
            options=DataOptions(kcore=self.kcore),
        )


def read_yaml_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level mapping of a YAML run config (not yet checked: flags may still add to it)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise PipelineError(f"{path}: expected a mapping of settings at the top level")
    return values


def _expected(hint: Any) -> tuple[str, Any] | None:
    """What a settings field of type ``hint`` accepts: a phrase for error messages and a check
    ``value -> value`` (converted where YAML is known to mistype) raising ``TypeError``;
    ``None`` for types not checked here."""

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        parts = [_expected(a) for a in args if a is not type(None)]
        if any(p is None for p in parts):
            return None
        words = " or ".join(p[0] for p in parts) + (" or null" if type(None) in args else "")

        def either(value: Any) -> Any:
            if value is None and type(None) in args:
                return None
            for _, check in parts:
                try:
                    return check(value)
                except TypeError:
                    pass
            raise TypeError

        return words, either
    if hint is bool:
        return "true or false", lambda v: v if isinstance(v, bool) else _wrong()
    if hint is int:  # YAML's true/false are bools, and bool is an int subclass: refuse them
        return (
            "an integer",
            lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _wrong(),
        )
    if hint is float:
        return "a number", _number
    if hint is str:
        return "a string", lambda v: v if isinstance(v, str) else _wrong()
    if origin is list:
        item = _expected(typing.get_args(hint)[0])
        if item is None:
            return None
        words, check = item
        return (
            f"a list (each {words})",
            lambda v: [check(x) for x in v] if isinstance(v, list) else _wrong(),
        )
    if hint is dict or origin is dict:
        return "a mapping", lambda v: v if isinstance(v, dict) else _wrong()
    return None


def _wrong() -> Any:
    raise TypeError


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        # YAML 1.1 (PyYAML) reads 5e-4 as a string (a float needs a dot: 5.0e-4); it is a number
        try:
            return float(value)
        except ValueError:
            pass
    raise TypeError


def _check_field(value: Any, hint: Any, where: str) -> Any:
    """``value`` as the field of type ``hint`` takes it; :class:`PipelineError` naming the field
    (``where``) and what it needs otherwise."""
    expected = _expected(hint)
    if expected is None:
        return value
    words, check = expected
    try:
        return check(value)
    except TypeError:
        raise PipelineError(
            f"{where}: expected {words}, got {value!r} ({type(value).__name__})"
        ) from None


def typed_settings(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` (a run config's keys) with every value of a known key checked against the type
    of its field, in RunConfig and in the preset's stage settings (tokenizer, recommender,
    codebook). RunConfig.from_dict checks the key names but not the values, and a mistyped
    value (``seed: abc``) would otherwise fail only in a stage, after the output folder and its
    run_config.json were written."""
    hints = typing.get_type_hints(RunConfig)
    checked = {
        key: _check_field(value, hints[key], f"{source}: {key}") if key in hints else value
        for key, value in values.items()
    }
    for name, settings in (
        ("tokenizer", TokenizerStageSettings),
        ("recommender", RecStageSettings),
        ("codebook", CodebookSettings),
    ):
        section = checked.get(name)
        if not isinstance(section, dict):
            continue
        hints = typing.get_type_hints(settings)
        checked[name] = {  # unknown keys are left to RunConfig.check, which names them
            key: _check_field(value, hints[key], f"{source}: {name}.{key}")
            if key in hints
            else value
            for key, value in section.items()
        }
    return checked
