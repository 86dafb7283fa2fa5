"""The whole STORE pipeline as resumable stages, each in its own folder of the output directory.

    data -> tokenizer -> encode -> codebook -> recommender -> evaluate -> report

A stage writes into ``<name>.partial/`` and renames it to ``<name>/`` once everything, ending
with ``stage.json``, is written: a killed run never leaves a folder a later stage would take for
finished. Finished stages are skipped unless forced; interrupted trainings resume from their
checkpoints under ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import set_seed

from .backbones import native_bf16, resolve_bf16
from .clustering import SemanticCodebook
from .data import DataOptions, load_embedded_dataset, read_dataset
from .data.dataset import RecDataset
from .data.splits import EVAL_SEED, leave_one_out, sample_users
from .files import write_json_atomic
from .presets import (
    SEMANTIC_IDS,
    Preset,
    RecStageSettings,
    TokenizerStageSettings,
    get_preset,
)

logger = logging.getLogger(__name__)

STAGES = ("tokenizer", "encode", "codebook", "recommender", "evaluate", "report")
#: stages whose work is split across processes under ``accelerate launch``
DISTRIBUTED_STAGES = ("tokenizer", "encode", "recommender")
RUN_FILE = "run_config.json"
#: Stages another run can lend (``reuse_stages``): they do not depend on the ``recommender``
#: settings, so runs that differ only there (recommender ablations) can share them.
SHAREABLE_STAGES = ("tokenizer", "encode", "codebook")


class PipelineError(ValueError):
    """A run that cannot start or continue (bad config, foreign output folder, missing stage)."""


@dataclass
class RunConfig:
    """Everything a run depends on; saved as ``run_config.json`` in the output folder.

    ``tokenizer``/``recommender``/``codebook`` override fields of the preset's stage settings
    (:class:`TokenizerStageSettings`, :class:`RecStageSettings`) and of
    :class:`SemanticCodebook`.
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
        codebook_keys = {"pca_dim", "pca", "collisions", "engine", "n_init", "max_iter"}
        bad = sorted(set(self.codebook) - codebook_keys)
        if bad:
            raise PipelineError(
                f"{source}: codebook: unknown setting(s) {bad}; known: {sorted(codebook_keys)}"
            )

    def resolved_preset(self) -> Preset:
        preset = get_preset(self.preset, **({"backbone": self.backbone} if self.backbone else {}))
        return dataclasses.replace(
            preset,
            tokenizer=dataclasses.replace(preset.tokenizer, **self.tokenizer),
            recommender=dataclasses.replace(preset.recommender, **self.recommender),
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
        options = DataOptions(kcore=self.kcore)
        if self.dataset is None and self.items is None and self.interactions is None:
            return load_embedded_dataset(options)
        return read_dataset(
            self.dataset,
            format=self.dataset_format,
            items=self.items,
            interactions=self.interactions,
            options=options,
        )


# ---------------------------------------------------------------------------- stage plumbing
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


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copy2(src, dst)


_write_json = write_json_atomic


class Pipeline:
    """Runs the stages of one :class:`RunConfig` into its output folder."""

    def __init__(self, config: RunConfig, force: bool = False) -> None:
        self.config = config
        self.out = Path(config.output_dir)
        self.force = force
        self.preset = config.resolved_preset()
        self._dataset: RecDataset | None = None
        self._splits = None
        from accelerate import PartialState

        # cpu=True where there is no GPU: a bare PartialState() would ignore ACCELERATE_USE_CPU
        self.state = PartialState(cpu=not torch.cuda.is_available())

    # -- bookkeeping
    def claim_output_dir(self) -> None:
        """Create the output folder, or check that it belongs to this run (main process)."""
        if self.is_main:
            self._claim_output_dir()
        self.state.wait_for_everyone()

    def _claim_output_dir(self) -> None:
        run_file = self.out / RUN_FILE
        if self.out.exists() and not self.out.is_dir():
            raise PipelineError(f"{self.out}: exists and is not a folder")
        if run_file.is_file():
            diff = self.config.differences(self.out)
            if diff and not self.force:
                raise PipelineError(
                    f"{self.out}: holds another run (settings differ: {diff}); choose a new "
                    "--output-dir, or pass --force to overwrite it"
                )
        elif self.out.is_dir() and any(self.out.iterdir()) and not self.force:
            raise PipelineError(
                f"{self.out}: not empty and not a store-hf run folder; choose a new --output-dir"
            )
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(
            run_file,
            {"identity": self.config.identity(), "config": dataclasses.asdict(self.config)},
        )

    def reuse_stages(self, source: str | os.PathLike) -> list[str]:
        """Take the finished stages of ``SHAREABLE_STAGES`` from the run folder ``source``
        instead of computing them again; returns the names taken.

        ``source`` must hold a run whose settings differ from this one's in ``recommender``
        alone (what an ablation of the recommender changes); anything else raises
        :class:`PipelineError`. Files are hard-linked where the file system allows (no extra
        disk; stages are never modified in place), else copied, and each stage is published
        atomically like a computed one. Stages this run has already finished are kept.
        """
        source = Path(source)
        diff = self.config.differences(source)
        if diff is None:
            raise PipelineError(f"{source}: not a store-hf run folder (no {RUN_FILE})")
        diff = [k for k in diff if k != "recommender"]
        if diff:
            raise PipelineError(
                f"{source}: its stages cannot be reused here, the runs differ in {diff} "
                "(only 'recommender' settings may differ)"
            )
        self.claim_output_dir()
        taken = []
        for name in SHAREABLE_STAGES:
            if not (source / name / "stage.json").is_file():
                break  # a later stage depends on this one: take no more
            if self.is_done(name):
                continue
            if self.is_main:
                partial = self.out / f"{name}.partial"
                shutil.rmtree(partial, ignore_errors=True)
                shutil.copytree(source / name, partial, copy_function=_link_or_copy)
                os.replace(partial, self.stage_dir(name))
                logger.info("stage %s: taken from %s", name, source / name)
            taken.append(name)
        self.state.wait_for_everyone()
        return taken

    def stage_dir(self, name: str) -> Path:
        return self.out / name

    def is_done(self, name: str) -> bool:
        return (self.stage_dir(name) / "stage.json").is_file()

    def require(self, name: str) -> Path:
        if not self.is_done(name):
            raise PipelineError(
                f"{self.stage_dir(name)}: stage {name!r} has not finished; run "
                f"`store-hf {name if name != 'recommender' else 'rec-train'}` (or `store-hf run`)"
            )
        return self.stage_dir(name)

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes (always, outside ``accelerate launch``)."""
        return self.state.is_main_process

    def run_stage(self, name: str, body: Callable[[Path], dict[str, Any]]) -> Path:
        """Run ``body(partial_dir) -> summary`` unless the stage is done; publish atomically.

        Under several processes the training and encoding stages run on all of them (Trainer
        and ``encode_items`` split the work) and the others on the main process only; only the
        main process writes the stage folder.
        """
        final = self.stage_dir(name)
        done = self.is_done(name) and not self.force
        self.state.wait_for_everyone()  # every process decides on the same folder state
        if done:
            logger.info("stage %s: already done (%s), skipping", name, final)
            return final
        partial = self.out / f"{name}.partial"
        if self.is_main:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
        self.state.wait_for_everyone()
        start = time.time()
        logger.info("stage %s: started", name)
        # every stage seeds itself from the run seed before it builds a model, injects LoRA or
        # initialises new rows: a stage computes the same whether the run was interrupted
        # before it or not
        set_seed(self.config.seed)
        summary = body(partial) if name in DISTRIBUTED_STAGES or self.is_main else {}
        self.state.wait_for_everyone()
        if self.is_main:
            summary = {"stage": name, "seconds": round(time.time() - start, 1), **summary}
            _write_json(partial / "stage.json", summary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(partial, final)
            logger.info("stage %s: done in %.1f s", name, summary["seconds"])
        self.state.wait_for_everyone()
        return final

    # -- shared inputs
    @property
    def dataset(self) -> RecDataset:
        if self._dataset is None:
            self._dataset = self.config.load_dataset()
        return self._dataset

    @property
    def splits(self):
        if self._splits is None:
            self._splits = leave_one_out(
                self.dataset, max_history=self.preset.recommender.max_history
            )
        return self._splits

    def impressions(self, part: str):
        """A click log's impressions in time order: the first 80% train the scoring task, the
        rest evaluate it (``None`` for sequence-only datasets)."""
        log = self.dataset.impressions
        if log is None or len(log) == 0:
            return None
        cut = int(len(log) * 0.8)
        return log.select(range(cut)) if part == "train" else log.select(range(cut, len(log)))

    # -- stages
    def tokenizer(self) -> Path:
        return self.run_stage("tokenizer", self._tokenizer)

    def _tokenizer(self, folder: Path) -> dict[str, Any]:
        from .collators import DenseTokenizerCollator, tokenize_items
        from .tokenizer_training import (
            build_tokenizer_model,
            calibrate_placeholder_scaler,
            dense_information_gap,
            stage_training_arguments,
            train_dense_tokenizer,
        )

        settings: TokenizerStageSettings = self.preset.tokenizer
        if self.config.semantic_ids != "store":
            # the ablations read the pretrained backbone as it is: no dense-token training
            model, tokenizer = build_tokenizer_model(self.preset, self.dataset.attributes)
            model.merge_lora()  # LoRA starts as the identity (B = 0): this is the backbone
            if self.is_main:
                model.save_pretrained(folder / "model")
                tokenizer.save_pretrained(folder / "model")
                _write_json(folder / "log_history.json", [])
            return {"trained": False, "train_items": 0, "final_loss": None}
        items = self.dataset.items.shuffle(seed=self.config.seed)
        n_eval = min(self.config.eval_tokenizer_items, len(items) // 10)
        n_train = min(settings.max_items or len(items), len(items) - n_eval)
        train_items = items.select(range(n_train))
        eval_items = items.select(range(len(items) - n_eval, len(items)))
        model, tokenizer = build_tokenizer_model(self.preset, self.dataset.attributes)
        if n_eval >= 2:  # the scaler must be calibrated before "before" means anything
            calibrate_placeholder_scaler(
                model,
                DenseTokenizerCollator(tokenizer.pad_token_id),
                tokenize_items(train_items, tokenizer, model.config),
            )
            before = dense_information_gap(model, tokenizer, eval_items)
        else:
            before = {}
        checkpoints = self.out / "checkpoints" / "tokenizer"
        args = stage_training_arguments(checkpoints, settings, seed=self.config.seed)
        resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
        trainer = train_dense_tokenizer(
            model,
            tokenizer,
            train_items,
            args,
            resume_from_checkpoint=True if resume else None,
            embedding_learning_rate=settings.embedding_learning_rate,
        )
        gap = dense_information_gap(model, tokenizer, eval_items) if n_eval >= 2 else {}
        model.merge_lora()
        log = trainer.state.log_history
        if self.is_main:
            model.save_pretrained(folder / "model")
            tokenizer.save_pretrained(folder / "model")
            _write_json(folder / "log_history.json", log)
        return {
            "trained": True,
            "train_items": n_train,
            "eval_items": n_eval,
            "dense_information_before": before,
            "dense_information_after": gap,
            "final_loss": next((h["loss"] for h in reversed(log) if "loss" in h), None),
        }

    def encode(self) -> Path:
        return self.run_stage("encode", self._encode)

    def _load_tokenizer_model(self):
        from transformers import AutoTokenizer

        from .modeling_store import StoreTokenizerModel

        folder = self.require("tokenizer") / "model"
        return StoreTokenizerModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)

    def _encode(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        from .tokenizer_training import item_texts

        items = self.dataset.items
        start = time.time()
        bf16 = resolve_bf16(self.preset.tokenizer.encode_bf16)
        if self.config.semantic_ids == "minilm-rqvae":
            from .baselines.text_encoder import encode_texts
            from .baselines.text_encoder import item_texts as sentence_texts

            bf16 = False
            embeddings = torch.from_numpy(encode_texts(sentence_texts(items)))
        else:
            from .item_encoding import encode_items

            model, tokenizer = self._load_tokenizer_model()
            embeddings = encode_items(
                model,
                item_texts(items, model.config.content_attributes),
                tokenizer,
                batch_size=self.preset.tokenizer.encode_batch_size,
                bf16=bf16,
                pooling="dense" if self.config.semantic_ids == "store" else "mean",
            )
        seconds = time.time() - start
        if self.is_main:
            save_file(
                {"embeddings": embeddings.contiguous()}, str(folder / "embeddings.safetensors")
            )
            _write_json(folder / "item_ids.json", list(items["item_id"]))
        return {
            "num_items": len(items),
            "shape": list(embeddings.shape),
            "items_per_second": round(len(items) / max(seconds, 1e-9), 1),
            "bf16": bf16,
        }

    def _embeddings(self) -> tuple[torch.Tensor, list[str]]:
        from safetensors.torch import load_file

        folder = self.require("encode")
        embeddings = load_file(str(folder / "embeddings.safetensors"))["embeddings"]
        return embeddings, json.loads((folder / "item_ids.json").read_text())

    def codebook(self) -> Path:
        return self.run_stage("codebook", self._codebook)

    def _codebook(self, folder: Path) -> dict[str, Any]:
        embeddings, item_ids = self._embeddings()
        tok_config = json.loads((self.require("tokenizer") / "model" / "config.json").read_text())
        k = tok_config.get("codebook_size", 256)
        if self.config.semantic_ids != "store":
            stats = _fit_rqvae(
                embeddings, item_ids, tok_config["num_dense_tokens"], k, self.config.seed, folder
            )
        else:
            codebook = SemanticCodebook(
                codebook_size=k,
                pca_dim=tok_config.get("codebook_dim", 32),
                seed=self.config.seed,
                **self.config.codebook,
            ).fit(embeddings.numpy(), item_ids)
            codebook.save_pretrained(folder / "codebook")
            stats = codebook.statistics()
            try:
                codebook.plot_cluster_sizes(folder / "cluster_sizes.png")
            except ImportError as e:  # matplotlib is an optional extra
                logger.warning("no cluster-size plot: %s", e)
        _write_json(folder / "statistics.json", stats)
        return {
            "utilisation": [p["utilisation"] for p in stats["positions"]],
            "collision_rate_before": stats["collision_rate_before"],
            "collision_rate_after": stats["collision_rate_after"],
            "fit_seconds": stats["fit_seconds"],
        }

    def recommender(self) -> Path:
        return self.run_stage("recommender", self._recommender)

    def item_codes(self) -> tuple[list[str], np.ndarray, int]:
        """The finished codebook stage's catalogue: item ids, ``(num_items, v)`` codes and k."""
        folder = self.require("codebook")
        if (folder / "codebook").is_dir():
            codebook = SemanticCodebook.from_pretrained(folder / "codebook")
            return codebook.item_ids, codebook.codes, codebook.codebook_size
        from safetensors.numpy import load_file

        stats = json.loads((folder / "statistics.json").read_text())
        item_ids = json.loads((folder / "rqvae" / "item_ids.json").read_text())
        codes = load_file(str(folder / "rqvae" / "codes.safetensors"))["codes"]
        return item_ids, codes, stats["codebook_size"]

    def _recommender(self, folder: Path) -> dict[str, Any]:
        from .modeling_store import StoreForGenerativeRec
        from .packing import packed_templates
        from .rec_training import train_recommender

        settings: RecStageSettings = self.preset.recommender
        tok_model, tokenizer = self._load_tokenizer_model()
        item_ids, codes, k = self.item_codes()
        code_rows = None
        # code rows from dense tokens need dense tokens: the RQ-VAE ablations start from the
        # default initialisation (mean word embedding plus noise)
        if settings.code_init == "dense" and self.config.semantic_ids == "store":
            embeddings, _ = self._embeddings()
            code_rows = code_embeddings_from_dense(tok_model, embeddings, torch.as_tensor(codes), k)
        rec = StoreForGenerativeRec.from_tokenizer_model(
            tok_model,
            tokenizer,
            item_ids,
            codes,
            codebook_size=k,
            code_embeddings=code_rows,
            lora_r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            max_history=settings.max_history,
            # packed training: no text between the history and the next item
            **(
                {"templates": packed_templates(tok_model.config.templates)}
                if settings.layout == "packed"
                else {}
            ),
        )
        rec.add_lora()
        checkpoints = self.out / "checkpoints" / "recommender"
        result = train_recommender(
            rec,
            tokenizer,
            self.splits,
            self.dataset.items,
            rec.config.content_attributes,
            settings,
            checkpoints,
            seed=self.config.seed,
            resume_from_checkpoint=True,
            impressions=self.impressions("train"),
            eval_seed=self.config.eval_seed,
        )
        rec.merge_lora()
        if self.is_main:
            model_dir = folder / "model"
            rec.save_pretrained(model_dir)
            tokenizer.save_pretrained(model_dir)
            codebook = self.require("codebook") / "codebook"
            if codebook.is_dir():  # assigns codes to new items (STORE's codebook only)
                shutil.copytree(codebook, model_dir / "codebook")
            logs = {"joint": result["joint_log"], "rec": result["rec_log"]}
            _write_json(folder / "log_history.json", logs)
        return {k: v for k, v in result.items() if not k.endswith("_log")}

    def evaluate(self) -> Path:
        return self.run_stage("evaluate", self._evaluate)

    def load_recommender(self):
        from .modeling_store import StoreForGenerativeRec

        return StoreForGenerativeRec.from_pretrained(self.require("recommender") / "model")

    def _evaluate(self, folder: Path) -> dict[str, Any]:
        from .baselines import MostPopular
        from .metrics import ranking_metrics
        from .rec_training import evaluate_recommender

        settings = self.preset.recommender
        rec = self.load_recommender()
        bf16 = resolve_bf16(settings.eval_bf16)
        if bf16:
            rec = rec.to(torch.bfloat16)
        test = self.test_users()
        ks = (1, 5, 10, 20)
        store = evaluate_recommender(
            rec,
            test,
            ks=ks,
            num_beams=max(settings.num_beams, max(ks)),
            batch_size=settings.eval_batch_size,
            return_ranks=True,
        )
        popular = MostPopular().fit(self.splits["train"], item_ids=rec.config.item_ids)
        popular_ranks = popular.rank_targets(test["history"], test["target"])
        ranks = {"STORE": store.pop("ranks"), "MostPopular": popular_ranks}
        metrics = {
            "STORE": store | {"bf16": bf16},
            "MostPopular": ranking_metrics(popular_ranks, ks),
        }
        # per-user record: any two systems (or runs) can later be compared user by user
        _write_json(folder / "ranks.json", {"user_id": list(test["user_id"]), "ranks": ranks})
        scoring = self._evaluate_scoring(rec, test)
        note = (
            f"leave-one-out test split, {len(test)} of {len(self.splits['test'])} users"
            + (" (random subset)" if len(test) < len(self.splits["test"]) else "")
            + f", full ranking over {len(rec.config.item_ids)} items, beam size "
            f"{max(settings.num_beams, max(ks))}"
        )
        result = {"systems": metrics, "note": note}
        if scoring:
            result["scoring"] = scoring
        _write_json(folder / "metrics.json", result)
        return {"metrics": metrics, "note": note, "scoring": scoring}

    def test_users(self):
        """The test rows the evaluate stage ranks: ``max_test_users`` users drawn with the
        run's ``eval_seed`` (the same users for every training seed and system)."""
        limit = self.preset.recommender.max_test_users
        return sample_users(self.splits["test"], limit, self.config.eval_seed)

    def _evaluate_scoring(self, rec, test) -> dict[str, Any]:
        """Scoring mode on held-out impressions (click logs) or, where the scoring task was
        trained with sampled negatives, on the test targets plus 19 sampled items."""
        from .rec_training import RecInstructionData, evaluate_scoring

        data = RecInstructionData(rec, None)
        logged = self.impressions("test")
        if logged is not None:
            impressions, source = data.logged_impressions(logged), "held-out logged impressions"
        elif self.preset.recommender.scoring_negatives > 0:
            impressions = data.sampled_impressions(test, 19, seed=self.config.eval_seed + 1)
            source = "test target + 19 sampled negatives per user"
        else:
            return {}
        if len(impressions) == 0:
            return {}
        return {**evaluate_scoring(rec, impressions), "impressions": source}

    def report(self) -> Path:
        return self.run_stage("report", self._report)

    def _report(self, folder: Path) -> dict[str, Any]:
        from .report import write_report

        return write_report(self, folder)

    def run(self, until: str | None = None) -> Path:
        """Run every stage in order (up to and including ``until``)."""
        if not self.is_done("report") or self.force:
            _ = self.dataset  # read (and so check) the data before touching the output folder
        self.claim_output_dir()
        for name in STAGES:
            getattr(self, name)()
            if name == until:
                break
        return self.out


def _fit_rqvae(
    embeddings: torch.Tensor,
    item_ids: list[str],
    num_positions: int,
    codebook_size: int,
    seed: int,
    folder: Path,
) -> dict[str, Any]:
    """TIGER's quantiser on one embedding per item: ``num_positions - 1`` RQ-VAE levels of
    ``codebook_size`` codes plus the collision position. Writes ``rqvae/`` (weights, codes, item
    ids) into ``folder``; returns statistics in the keys of ``SemanticCodebook.statistics``."""
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file

    from .baselines.rqvae import RQVAE, RQVAEConfig, code_statistics

    if embeddings.ndim != 2:
        raise PipelineError(
            f"RQ-VAE codes need one embedding per item, got shape {tuple(embeddings.shape)}"
        )
    config = RQVAEConfig(num_levels=num_positions - 1, codebook_size=codebook_size, seed=seed)
    rqvae = RQVAE(embeddings.shape[1], config)
    codes = rqvae.fit(embeddings.numpy())
    report = rqvae.report
    if codes[:, -1].max() >= codebook_size:
        raise PipelineError(
            f"RQ-VAE: {report['max_group_size']} items share one code sequence, more than the "
            f"{codebook_size} values of the collision position"
        )
    (folder / "rqvae").mkdir()
    save_file(
        {k: v.contiguous() for k, v in rqvae.state_dict().items()},
        str(folder / "rqvae" / "rqvae.safetensors"),
    )
    save_numpy({"codes": codes}, str(folder / "rqvae" / "codes.safetensors"))
    _write_json(folder / "rqvae" / "item_ids.json", list(item_ids))
    final = code_statistics(codes, codebook_size)  # all positions, collision position included
    return {
        "method": "rqvae",
        "num_items": len(codes),
        "num_positions": num_positions,
        "codebook_size": codebook_size,
        "dim": config.latent_dim,
        "positions": [
            {"position": p, "used_clusters": used, "utilisation": share}
            for p, (used, share) in enumerate(zip(final["codes_used"], final["utilisation"]))
        ],
        "collision_rate_before": report["collision_rate"],
        "collision_rate_after": final["collision_rate"],
        "fit_seconds": report["seconds"],
        "rqvae": {k: v for k, v in report.items() if k != "config"},
    }


@torch.no_grad()
def code_embeddings_from_dense(
    tokenizer_model, dense: torch.Tensor, codes: torch.Tensor, codebook_size: int
) -> torch.Tensor:
    """Initial code-token rows ``(v * k, dim)``: for code ``c`` at position ``p``, the mean
    placeholder input (scaled dense token ``p``) of the items in that cluster.

    The recommender thus starts by reading a code token the way the tokenizer taught the LLM to
    read that cluster's dense tokens. Empty clusters get the mean over all items.
    """
    states = tokenizer_model.placeholder_scaler(dense.to(tokenizer_model.dtype)).float()
    n, v, dim = states.shape
    rows = (codes.long() + torch.arange(v) * codebook_size).reshape(-1)
    sums = torch.zeros(v * codebook_size, dim).index_add_(0, rows, states.reshape(-1, dim))
    counts = torch.bincount(rows, minlength=v * codebook_size).unsqueeze(1)
    fallback = states.mean(0).repeat_interleave(codebook_size, dim=0)  # per position
    return torch.where(counts > 0, sums / counts.clamp_min(1), fallback)


__all__ = [
    "STAGES",
    "Pipeline",
    "PipelineError",
    "RunConfig",
    "code_embeddings_from_dense",
    "native_bf16",
]
