"""What a run depends on (:class:`RunConfig`, saved as ``run_config.json``), the YAML file
that may hold it, and the one checker of settings values (:func:`check_settings`: the type from
a dataclass's annotations, the range from :data:`SETTING_RANGES`) that RunConfig, the command
line, the RQ-VAE and the baseline scripts share.

A run is identified by its settings (:meth:`RunConfig.identity`: no path, no output folder)
and by the content of its input files (:meth:`RunConfig.input_fingerprint`, keyed by each
file's role, never by how its path was spelt), so the same run started from another working
directory, or with absolute instead of relative paths, is the same run."""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import math
import numbers
import os
import types
import typing
from collections.abc import Mapping
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
#: RunConfig fields that name input data: kept out of the identity (the data's content is in
#: the input fingerprint instead); saved absolute and relative to the run folder
DATA_PATHS = ("dataset", "items", "interactions")


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
        # paths are kept as the strings they were given (relative to the working directory);
        # run_config.json keeps them absolute (see ``with_absolute_paths``)
        for name in ("output_dir", *DATA_PATHS):
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

        The data paths are found where they are: the saved absolute path, else the same path
        relative to the run folder (a run folder moved together with its data); where neither
        exists the saved one is kept, and reading it says "file not found at ...".
        """
        folder = Path(folder)
        return cls.from_dict(run_folder_settings(folder), source=str(folder / RUN_FILE))

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
        if not str(self.output_dir).strip():
            raise PipelineError(f"{source}: output_dir: empty")
        if self.dataset_format is not None and self.dataset_format not in available_formats():
            raise PipelineError(
                f"{source}: dataset_format: {self.dataset_format!r} is not one of "
                f"{available_formats()}"
            )

    def input_files(self) -> dict[str, Path]:
        """The data files the run reads, by role: ``dataset/<file in the folder>`` (or
        ``dataset`` for a single file), ``items``, ``interactions``, or ``embedded/<file>``
        for the embedded dataset (hidden files left out). The keys do not depend on how the
        paths were spelt nor on the working directory.

        Raises:
            PipelineError: a named path does not exist ("file not found at ...").
        """
        from .data import EMBEDDED_DATASET_DIR

        roots = {name: getattr(self, name) for name in DATA_PATHS if getattr(self, name)}
        files: dict[str, Path] = {}
        for name, root in (roots or {"embedded": EMBEDDED_DATASET_DIR}).items():
            root = Path(root)
            if root.is_dir():
                for p in sorted(root.rglob("*")):
                    rel = p.relative_to(root)
                    if p.is_file() and not any(x.startswith(".") for x in rel.parts):
                        files[f"{name}/{rel.as_posix()}"] = p
            elif root.is_file():
                files[name] = root
            else:
                raise PipelineError(f"{name}: file not found at {os.path.abspath(root)}")
        return files

    def input_fingerprint(self) -> dict[str, str]:
        """``{role: sha256}`` of :meth:`input_files`: a run folder remembers the data it was
        computed from, so a rerun notices edited data instead of reprinting stale results."""
        return {key: sha256_file(p) for key, p in self.input_files().items()}

    def with_absolute_paths(self) -> RunConfig:
        """This config with the data paths absolute (as ``run_config.json`` keeps them)."""
        paths = {
            name: os.path.abspath(getattr(self, name))
            for name in DATA_PATHS
            if getattr(self, name) is not None
        }
        return dataclasses.replace(self, **paths)

    def resolved_preset(self) -> Preset:
        preset = get_preset(self.preset, **({"backbone": self.backbone} if self.backbone else {}))
        return dataclasses.replace(
            preset,
            tokenizer=dataclasses.replace(preset.tokenizer, **self.tokenizer),
            recommender=dataclasses.replace(preset.recommender, **self.recommender),
            codebook=dataclasses.replace(preset.codebook, **self.codebook),
        )

    def settings(self) -> dict[str, Any]:
        """Every setting the run trains with: the preset's after this config's overrides, as
        flat ``name`` / ``section.name`` keys (JSON values). ``run_config.json`` keeps them, so
        that a folder is not taken for a run of a preset whose defaults have changed since."""
        values = self.resolved_preset().to_dict()
        values.pop("description")
        flat: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, dict):
                flat |= {f"{key}.{name}": v for name, v in value.items()}
            else:
                flat[key] = value
        return json.loads(json.dumps(flat, default=str))  # tuples as lists, as read back

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (an output folder serves one identity)."""
        values = dataclasses.asdict(self)
        values.pop("output_dir")
        values.pop("report_to")  # where the logs go changes no result
        for name in DATA_PATHS:  # the data is identified by its content (input_fingerprint)
            values.pop(name)
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
        theirs, mine = dict(saved.get("identity", {})), self.identity()
        for name in DATA_PATHS:  # the identity of folders of older versions held the paths
            theirs.pop(name, None)
        differ = {k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k)}
        # the settings a preset gave the saved run (folders of older versions: not kept); a
        # setting added since is compared where both have it, its default keeping old behaviour
        recorded, now = saved.get("settings") or {}, self.settings()
        differ |= {k for k in set(recorded) & set(now) if recorded[k] != now[k]}
        return sorted(differ)

    def load_dataset(self) -> RecDataset:
        return load_dataset_or_embedded(
            self.dataset,
            format=self.dataset_format,
            items=self.items,
            interactions=self.interactions,
            options=DataOptions(kcore=self.kcore),
        )


def run_folder_settings(folder: Path) -> dict[str, Any]:
    """The settings saved in ``folder/run_config.json`` for a run in ``folder`` (see
    :meth:`RunConfig.from_run_folder`), not yet checked."""
    run_file = folder / RUN_FILE
    if not run_file.is_file():
        raise PipelineError(f"{folder}: no {RUN_FILE}; start with store-hf run")
    saved = read_json(run_file, hint=RUN_FILE_HINT)
    values = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(values, dict):
        raise PipelineError(f"{run_file}: no 'config' mapping; not written by store-hf run")
    relative = saved.get("data_paths")
    relative = relative if isinstance(relative, dict) else {}
    values = {**values, "output_dir": str(folder)}
    for name in DATA_PATHS:
        saved_path, here = values.get(name), relative.get(name)
        if (
            isinstance(saved_path, str)
            and isinstance(here, str)
            and not Path(saved_path).exists()
            and (folder / here).exists()
        ):
            values[name] = os.path.normpath(os.path.abspath(folder / here))
    return values


def read_yaml_settings(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level mapping of a YAML run config (not yet checked: flags may still add to it).

    A run folder's ``run_config.json`` is read as the settings of that folder's run
    (``store-hf run RUN/run_config.json --force`` redoes it from the start).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: config file not found")
    if path.name == RUN_FILE:
        return run_folder_settings(path.parent)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise PipelineError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(values, dict):
        raise PipelineError(f"{path}: expected a mapping of settings at the top level")
    return values


def changed_inputs(saved: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """The input files (keys of :meth:`RunConfig.input_fingerprint`) whose content differs
    between a saved fingerprint and the current one (``[]``: the same data). A fingerprint of
    an older version, keyed by the paths as they were typed, is compared by content alone."""
    if not set(saved) & set(current) and sorted(saved.values()) == sorted(current.values()):
        return []
    return sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))


# ----------------------------------------------------------------------------- settings values
@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: ``low`` and ``high`` bounds (``None``: none),
    each inclusive unless its ``*_open`` flag is set."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


#: The range of every numeric setting, by field name (``fnmatch`` patterns, the first match
#: wins), for every settings dataclass: the run's, the three stages' (so a field added to
#: ``store_hf.presets`` is covered without an entry here), the RQ-VAE's and the baselines'.
#: A name not matched: an integer must be >= 1 (sizes, counts, steps), a number >= 0. Every
#: number must also be finite.
SETTING_RANGES: tuple[tuple[str, Range], ...] = (
    ("max_steps", Range(-1)),  # -1: no limit (TrainingArguments)
    ("*seed", Range(0)),
    ("codebook_size", Range(2)),
    ("*learning_rate", Range(0, low_open=True)),
    ("lr", Range(0, low_open=True)),
    ("*epochs", Range(0, low_open=True)),
    ("*dropout", Range(0, 1, high_open=True)),
    ("*_ratio", Range(0, 1)),
    ("reset_until", Range(0, 1)),
    ("patience", Range(0)),
    ("max_grad_norm", Range(0)),  # 0: no clipping
    ("scoring_negatives", Range(0)),
    ("eval_tokenizer_items", Range(0)),
    ("kmeans_iters", Range(0)),
    ("warmup_steps", Range(0)),
    ("num_user_tokens", Range(0)),
)
_INTEGER_RANGE, _NUMBER_RANGE = Range(1), Range(0)


def setting_range(name: str, value: float) -> Range:
    """The range of the setting ``name`` (:data:`SETTING_RANGES`) for a value of its type."""
    for pattern, allowed in SETTING_RANGES:
        if fnmatch.fnmatchcase(name, pattern):
            return allowed
    return _INTEGER_RANGE if isinstance(value, int) else _NUMBER_RANGE


def check_setting(value: Any, hint: Any, name: str, where: str) -> Any:
    """``value`` as the setting ``name`` of type ``hint`` takes it (converted where YAML is
    known to mistype), its type and range checked; :class:`PipelineError` saying what it
    needs, after ``where`` (e.g. ``"run.yaml: recommender.batch_size"``), otherwise."""
    value = _check_field(value, hint, where)
    for number in value if isinstance(value, (list, tuple)) else (value,):
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        if not math.isfinite(number):
            raise PipelineError(f"{where}: must be a finite number, got {number}")
        allowed = setting_range(name, number)
        if number not in allowed:
            raise PipelineError(f"{where}: must be {allowed}, got {number}")
    return value


def check_settings(
    values: Mapping[str, Any], fields: type | Mapping[str, Any], source: str, prefix: str = ""
) -> dict[str, Any]:
    """``values`` with every value of a known setting checked (:func:`check_setting`).

    Args:
        values: setting name -> value (a config file's section, a script's arguments).
        fields: a dataclass, whose annotations give the types, or ``{name: type}``.
        source: names where the values come from in errors (a file, ``"command line"``).
        prefix: put before each name in errors (``"recommender."``).

    Returns:
        The values, converted where needed (``"5e-4"`` -> ``0.0005``, a list -> a tuple);
        names ``fields`` does not know are left as they are (for the caller to refuse).
    """
    hints = typing.get_type_hints(fields) if isinstance(fields, type) else dict(fields)
    return {
        key: check_setting(value, hints[key], key, f"{source}: {prefix}{key}")
        if key in hints
        else value
        for key, value in values.items()
    }


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
        return "an integer", _integer
    if hint is float:
        return "a number", _number
    if hint is str:
        return "a string", lambda v: v if isinstance(v, str) else _wrong()
    if origin in (list, tuple):
        args = typing.get_args(hint)
        if origin is tuple and (len(args) != 2 or args[1] is not Ellipsis):
            return None  # fixed-length tuples are not settings of this package
        item = _expected(args[0]) if args else None
        if item is None:
            return None
        words, check = item
        kind = origin

        def sequence(value: Any) -> Any:
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return kind(check(x) for x in value)

        return f"a list (each {words})", sequence
    if hint is dict or origin is dict:
        return "a mapping", lambda v: v if isinstance(v, dict) else _wrong()
    return None


def _wrong() -> Any:
    raise TypeError


def _integer(value: Any) -> int:
    """An integer (numpy's too, as a Python int); ``True``/``False`` are not integers here."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise TypeError


def _number(value: Any) -> float | int:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
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


#: The stage sections of a run config and the settings classes whose fields they override.
STAGE_SETTINGS = {
    "tokenizer": TokenizerStageSettings,
    "recommender": RecStageSettings,
    "codebook": CodebookSettings,
}


def typed_settings(values: dict[str, Any], source: str) -> dict[str, Any]:
    """``values`` (a run config's keys) with every value of a known key checked
    (:func:`check_settings`: type and range) against its field, in RunConfig and in the
    preset's stage settings (tokenizer, recommender, codebook). RunConfig.from_dict checks the
    key names but not the values, and a bad value (``seed: abc``, ``batch_size: -8``) would
    otherwise fail only in a stage, after the output folder and its run_config.json were
    written, or not at all."""
    checked = check_settings(values, RunConfig, source)
    for name, settings in STAGE_SETTINGS.items():
        section = checked.get(name)
        if isinstance(section, dict):  # unknown keys are left to RunConfig.check, which names them
            checked[name] = check_settings(section, settings, source, prefix=f"{name}.")
    return checked
