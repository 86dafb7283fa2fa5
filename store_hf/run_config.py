"""What a run depends on (:class:`RunConfig`, saved as ``run_config.json``) and the YAML file
that may hold it."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataOptions, load_dataset_or_embedded
from .data.dataset import RecDataset
from .data.splits import EVAL_SEED
from .files import read_json, sha256_file
from .presets import SEMANTIC_IDS, Preset, get_preset

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
        config = cls(**values)
        config.check(source)
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_yaml_settings(path), source=str(path))

    def check(self, source: str = "config") -> None:
        """Validate every field and stage setting (names and types); :class:`PipelineError`
        names ``source`` and the field."""
        _check_fields(self, type(self), source, skip=("tokenizer", "recommender", "codebook"))
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
            _check_fields(values, type(settings), f"{source}: {name}")
        if self.semantic_ids not in SEMANTIC_IDS:
            raise PipelineError(
                f"{source}: semantic_ids: {self.semantic_ids!r} is not one of {list(SEMANTIC_IDS)}"
            )
        if self.seed < 0 or self.eval_seed < 0:
            raise PipelineError(f"{source}: seed and eval_seed must be >= 0")

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
        saved = read_json(run_file, hint=RUN_FILE_HINT).get("identity", {})
        mine = self.identity()
        return sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))

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


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _check_fields(values: Any, cls: type, source: str, skip: tuple[str, ...] = ()) -> None:
    """Check ``values`` (a dataclass instance or a dict of its fields) against the field types
    of ``cls``: int, float, bool, str, ``X | None`` and dicts, the kinds settings use."""
    hints = typing.get_type_hints(cls)
    items = (
        values.items()
        if isinstance(values, dict)
        else ((f.name, getattr(values, f.name)) for f in dataclasses.fields(values))
    )
    for name, value in items:
        if name in skip or name not in hints:
            continue
        allowed = typing.get_args(hints[name]) or (hints[name],)
        if value is None and type(None) in allowed:
            continue
        if not any(_is_a(value, t) for t in allowed):
            wanted = " or ".join(
                _TYPE_NAMES.get(typing.get_origin(t) or t, getattr(t, "__name__", str(t)))
                for t in allowed
                if t is not type(None)
            )
            optional = " (or null)" if type(None) in allowed else ""
            raise PipelineError(f"{source}: {name}: expected {wanted}{optional}, got {value!r}")


def _is_a(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind) or kind
    if origin is Any:
        return True
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:  # YAML's true/false are not integers here
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, origin)
