"""What a run depends on (:class:`RunConfig`, saved as ``run_config.json``) and the YAML file
that may hold it."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import DataOptions, load_dataset_or_embedded
from .data.dataset import RecDataset
from .data.splits import EVAL_SEED
from .presets import SEMANTIC_IDS, Preset, get_preset

RUN_FILE = "run_config.json"


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
        try:
            preset = get_preset(self.preset)
        except ValueError as e:
            raise PipelineError(f"{source}: preset: {e}") from None
        for name, settings in (
            ("tokenizer", preset.tokenizer),
            ("recommender", preset.recommender),
            ("codebook", preset.codebook),
        ):
            allowed = {f.name for f in dataclasses.fields(settings)}
            bad = sorted(set(getattr(self, name)) - allowed)
            if bad:
                raise PipelineError(
                    f"{source}: {name}: unknown setting(s) {bad}; known: {sorted(allowed)}"
                )
        if self.semantic_ids not in SEMANTIC_IDS:
            raise PipelineError(
                f"{source}: semantic_ids: {self.semantic_ids!r} is not one of {list(SEMANTIC_IDS)}"
            )

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
        saved = json.loads(run_file.read_text()).get("identity", {})
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
