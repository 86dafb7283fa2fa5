"""The store-hf command line (also python -m store_hf).

Building the parser and parsing the arguments import nothing heavy (no torch, transformers or
datasets): every command imports what it needs when it runs, so ``store-hf --help`` and usage
errors answer at once. Errors the user can act on are one line on stderr with a non-zero exit
status, never a traceback (``-v`` shows it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .presets import SEMANTIC_IDS

if TYPE_CHECKING:
    from .data.dataset import RecDataset
    from .modeling_store import StoreForGenerativeRec
    from .run_config import RunConfig

DESCRIPTION = (
    "STORE generative recommendation: read a dataset, run the pipeline (or one stage of it), "
    "recommend and score with a trained model, push it to the Hugging Face Hub."
)

#: The names of the dataset readers, i.e. ``store_hf.data.available_formats()``, written out:
#: importing the reader registry imports every reader and, with them, numpy and datasets (over a
#: second), which ``--help`` must not pay. tests/test_cli.py checks that the two agree.
DATASET_FORMATS = ("amazon", "generic", "lcrec", "mind", "movielens", "recbole", "yelp")

#: exit status of an interrupted command (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130
#: exit status of a command that stopped on an error it reported in one line
EXIT_ERROR = 2


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", help="dataset folder (default: the embedded Amazon Scientific set)"
    )
    parser.add_argument(
        "--dataset-format", dest="format", choices=DATASET_FORMATS, help="dataset format"
    )
    parser.add_argument("--items", help="items file (with --interactions)")
    parser.add_argument("--interactions", help="interactions file (with --items)")
    parser.add_argument("--kcore", type=int, default=None, help="k-core filtering (default: off)")
    parser.add_argument("--min-sequence-length", type=int, default=3)
    parser.add_argument(
        "--consecutive-duplicates",
        choices=["drop", "keep"],
        default="drop",
        help="repeated back-to-back items",
    )


def load_from_args(args: argparse.Namespace) -> RecDataset:
    """Read the dataset the data arguments name (the embedded one when none is named)."""
    from .data import DataOptions, load_dataset_or_embedded

    options = DataOptions(
        min_sequence_length=args.min_sequence_length,
        kcore=args.kcore,
        consecutive_duplicates=args.consecutive_duplicates,
    )
    return load_dataset_or_embedded(
        args.path,
        format=args.format,
        items=args.items,
        interactions=args.interactions,
        options=options,
    )


def _describe(args: argparse.Namespace) -> int:
    from .data.describe import format_statistics
    from .semantic_ids import embedding_memory

    dataset = load_from_args(args)
    stats = dataset.statistics()
    memory = {
        "hidden_size": args.hidden_size,
        **embedding_memory(
            len(dataset.items), args.hidden_size, args.codebook_size, args.num_dense_tokens
        ),
    }
    if args.json:
        print(json.dumps({**stats, "memory": memory}, indent=2))
    else:
        print(format_statistics(stats) + "\n" + memory_line(memory))
    return 0


def memory_line(memory: dict[str, int]) -> str:
    """The describe table's line on the memory model: the ID table against the code table,
    saying which is smaller and by how much (``2.5x larger`` where the codes need more)."""
    ids, codes = memory["id_table"], memory["code_table"]
    if ids >= codes:
        ratio = f"{ids / codes:.1f}x smaller" if codes else "none"
    else:
        ratio = f"{codes / ids:.1f}x larger" if ids else "no items"
    return (
        f"  embedding memory at D={memory['hidden_size']}: ID table N x D = {ids:,} floats; "
        f"semantic codes k x v x D = {codes:,} floats ({ratio})"
    )


def _build_config(values: dict[str, Any], source: str) -> RunConfig:
    """A checked :class:`RunConfig` from ``values``; every problem is a PipelineError that
    names ``source`` and the field, raised before anything is written."""
    from .run_config import RunConfig

    return RunConfig.from_dict(values, source=source)


# ---------------------------------------------------------------------------- pipeline
_STAGE_COMMANDS = {
    "tokenizer-train": "tokenizer",
    "encode": "encode",
    "cluster": "codebook",
    "rec-train": "recommender",
    "evaluate": "evaluate",
    "report": "report",
}


def _run_config_from_args(args: argparse.Namespace) -> RunConfig:
    from .run_config import PipelineError, read_yaml_settings

    values = read_yaml_settings(args.config) if args.config else {}
    flags = {
        "output_dir": args.output_dir,
        "preset": args.preset,
        "backbone": args.backbone,
        "dataset": args.dataset,
        "dataset_format": args.format,
        "items": args.items,
        "interactions": args.interactions,
        "kcore": args.kcore,
        "seed": args.seed,
        "semantic_ids": args.semantic_ids,
        "report_to": args.report_to,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    codebook = {"codebook_size": args.codebook_size, "pca_dim": args.pca_dim}
    codebook = {k: v for k, v in codebook.items() if v is not None}
    if codebook:  # flags over the config file's codebook settings
        values["codebook"] = {**(values.get("codebook") or {}), **codebook}
    if "output_dir" not in values:
        raise PipelineError("give --output-dir (or output_dir in the config file)")
    return _build_config(values, source=args.config or "command line")


def _run_folder_config(folder: Path) -> RunConfig:
    from .run_config import RunConfig

    return RunConfig.from_run_folder(folder)


def _print_table(out_dir: Path) -> None:
    from .report import metrics_summary

    hint = f"run `store-hf report {out_dir} --force`"
    print(metrics_summary(out_dir / "metrics.json", hint))


def _run(args: argparse.Namespace) -> int:
    config = _run_config_from_args(args)  # checked before anything is read or written
    from .pipeline import Pipeline

    pipeline = Pipeline(config, force=args.force, break_lock=args.break_lock)
    if args.reuse_stages_from:
        pipeline.reuse_stages(args.reuse_stages_from)
    out = pipeline.run()
    _print_table(out)
    print(f"model folder: {pipeline.stage_dir('recommender') / 'model'}")
    return 0


def _stage(args: argparse.Namespace) -> int:
    config = _run_folder_config(args.output_dir)
    if getattr(args, "report_to", None):  # the training stages' flag (changes no result)
        config.report_to = args.report_to
    from .pipeline import Pipeline

    # a stage command never takes the folder over: it cannot redo the stages before its own
    pipeline = Pipeline(config, force=args.force, take_over=False, break_lock=args.break_lock)
    folder = getattr(pipeline, _STAGE_COMMANDS[args.command])()
    print(folder)
    return 0


# ---------------------------------------------------------------------------- a trained model
def _load_rec(path: str | Path, verify: bool = True) -> StoreForGenerativeRec:
    """The recommender of a model or run folder; a run's model is checked against the
    checksums its stage recorded first (``verify``), and an unreadable weights file is one
    line naming it."""
    from .files import safetensors_errors
    from .modeling_store import StoreForGenerativeRec
    from .run_folder import verified_model_folder

    folder = verified_model_folder(path, verify=verify)
    weights = sorted(folder.glob("*.safetensors"))
    hint = "save or download the model again (a run's: `store-hf rec-train RUN --force`)"
    with safetensors_errors(weights[0] if len(weights) == 1 else folder, hint=hint):
        return StoreForGenerativeRec.from_pretrained(folder)


def _finite(score: float) -> float | None:
    """JSON has no infinity nor NaN (json.dumps would write -Infinity): null instead."""
    return score if math.isfinite(score) else None


def _recommend(args: argparse.Namespace) -> int:
    if args.k < 1:  # before the model loads
        raise ValueError(f"-k must be at least 1, got {args.k}")
    rec = _load_rec(args.model, verify=not args.no_verify)
    k, catalogue = args.k, len(rec.config.item_ids)
    if k > catalogue:  # beam search cannot find more items than there are
        print(
            f"store-hf: -k {k} is more than the {catalogue} items of the catalogue; "
            f"recommending all {catalogue}",
            file=sys.stderr,
        )
        k = catalogue
    out = rec.recommend([args.history], k=k)
    items = out.item_ids[0]
    # fewer than k items where beams were no item: the scores beyond them are -inf fillers
    scores = [_finite(s) for s in out.scores[0].tolist()[: len(items)]]
    print(json.dumps({"items": items, "scores": scores}, indent=2, allow_nan=False))
    return 0


def _score(args: argparse.Namespace) -> int:
    rec = _load_rec(args.model, verify=not args.no_verify)
    scores = rec.score([args.history] * len(args.candidates), args.candidates)
    values = [_finite(s) for s in scores.tolist()]
    print(json.dumps(dict(zip(args.candidates, values)), indent=2, allow_nan=False))
    return 0


def _push(args: argparse.Namespace) -> int:
    import tempfile

    from .hub import push_space, push_to_hub
    from .run_folder import model_folder

    card = Path(args.folder) / "report" / "README.md"  # a run folder's model card
    url = push_to_hub(
        model_folder(args.folder),
        args.repo_id,
        private=args.private,
        model_card=card if card.is_file() else None,
        space_id=args.space,
    )
    print(url)
    if args.space:  # the model is on the Hub now: the Space loads it from there
        from .space import write_space

        with tempfile.TemporaryDirectory(prefix="store-hf-space-") as tmp:
            space = write_space(args.folder, Path(tmp) / "space", model_id=args.repo_id)
            print(push_space(space, args.space, private=args.private))
    return 0


def _app(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "the app needs Gradio: pip install 'store-hf[app]' (or pip install gradio)"
        ) from None
    from . import space

    if args.write_space:
        print(space.write_space(args.path, args.write_space, model_id=args.model_id))
        return 0
    from .app import launch

    page = space.page(args.path)  # a path that does not load is a page that says why
    launch(page, host=args.host, port=args.port, share=args.share)
    return 0


def _report_to(value: str) -> str:
    """``--report-to`` checked while parsing: a wrong name is a usage error naming the flag."""
    from .reporting import parse_report_to

    try:
        parse_report_to(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def _add_report_to_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report-to",
        type=_report_to,
        metavar="NAMES",
        help="where training logs go, as TrainingArguments.report_to: none (default), "
        "tensorboard (under RUN/logs), trackio, wandb, ..., all, or a comma-separated list",
    )


def _add_break_lock_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--break-lock",
        action="store_true",
        help="take over the run folder's lock whoever holds it (a run on another host that "
        "no longer runs; a lock of this host is taken over when its process is gone)",
    )


def _add_no_verify_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="load a run's model without checking its files against the run's checksums",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="store-hf", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    describe = sub.add_parser("describe", help="read a dataset and print its statistics")
    _add_data_arguments(describe)
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")
    describe.add_argument(
        "--hidden-size", type=int, default=1024, help="D of the memory model (OPT-350m: 1024)"
    )
    describe.add_argument("--codebook-size", type=int, default=256, help="k, clusters per position")
    describe.add_argument("--num-dense-tokens", type=int, default=4, help="v, code positions")
    describe.set_defaults(func=_describe)

    run = sub.add_parser(
        "run", help="the whole pipeline: data -> tokenizer -> codebook -> recommender -> report"
    )
    run.add_argument("config", nargs="?", help="a YAML run config (flags override it)")
    run.add_argument("--output-dir", type=str)
    run.add_argument("--preset", help="cpu (default), full, tiny or paper (docs/pipeline.md)")
    run.add_argument("--backbone", help="Hub id, local folder, .gguf file or smollm2-135m")
    run.add_argument("--dataset", help="dataset folder (default: the embedded Amazon set)")
    run.add_argument("--dataset-format", dest="format", choices=DATASET_FORMATS)
    run.add_argument("--items", help="items file (with --interactions)")
    run.add_argument("--interactions", help="interactions file (with --items)")
    run.add_argument("--kcore", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument(
        "--semantic-ids",
        choices=SEMANTIC_IDS,
        help="store (default): the dense tokenizer + k-means; llm-rqvae: mean-pooled backbone "
        "embeddings + RQ-VAE; minilm-rqvae: TIGER's MiniLM + RQ-VAE codes (ablations)",
    )
    run.add_argument(
        "--codebook-size", type=int, help="k, codes per position (default: the preset's, 256)"
    )
    run.add_argument("--pca-dim", type=int, help="d, PCA size before k-means (default 32)")
    _add_report_to_argument(run)
    run.add_argument(
        "--force",
        action="store_true",
        help="redo finished stages; take over a folder of other settings or data",
    )
    _add_break_lock_argument(run)
    run.add_argument(
        "--reuse-stages-from",
        metavar="RUN_DIR",
        help="take the tokenizer, encode and codebook stages from a run whose settings differ "
        "only in 'recommender' (recommender ablations)",
    )
    run.set_defaults(func=_run)

    for command, stage in _STAGE_COMMANDS.items():
        p = sub.add_parser(command, help=f"run only the {stage} stage of a run folder")
        p.add_argument(
            "output_dir", type=Path, help="the run's output folder (the stage writes here)"
        )
        p.add_argument(
            "--force",
            action="store_true",
            help="redo the stage if finished (never the earlier stages: see store-hf run)",
        )
        _add_break_lock_argument(p)
        if stage in ("tokenizer", "recommender"):
            _add_report_to_argument(p)
        p.set_defaults(func=_stage)

    rec = sub.add_parser("recommend", help="top-k next items for one history")
    rec.add_argument("model", help="a recommender model folder or a run folder")
    rec.add_argument("--history", nargs="+", required=True, help="item ids, oldest first")
    rec.add_argument(
        "-k", type=int, default=10, help="how many items (at most the catalogue's size)"
    )
    _add_no_verify_argument(rec)
    rec.set_defaults(func=_recommend)

    score = sub.add_parser("score", help="yes-probabilities of candidates for one history")
    score.add_argument("model", help="a recommender model folder or a run folder")
    score.add_argument("--history", nargs="+", required=True)
    score.add_argument("--candidates", nargs="+", required=True)
    _add_no_verify_argument(score)
    score.set_defaults(func=_score)

    push = sub.add_parser("push", help="upload a model folder to the Hugging Face Hub")
    push.add_argument("folder", help="a recommender model folder or a run folder")
    push.add_argument("--repo-id", required=True, help="org/name")
    push.add_argument("--private", action="store_true")
    push.add_argument(
        "--space",
        metavar="ORG/NAME",
        help="also upload the browser app as a Gradio Space that loads the pushed model",
    )
    push.set_defaults(func=_push)

    app = sub.add_parser(
        "app",
        help="try a trained model in the browser (Gradio: pip install 'store-hf[app]')",
        description="Serve a page where you build a history by title and see the model's "
        "recommendations, scores and semantic IDs (docs/app.md).",
    )
    app.add_argument("path", help="a run folder or a recommender model folder")
    app.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    app.add_argument("--port", type=int, default=7860)
    app.add_argument("--share", action="store_true", help="a public gradio.live link")
    app.add_argument(
        "--write-space",
        metavar="DIR",
        help="write the page as a Hugging Face Space folder instead of serving it",
    )
    app.add_argument(
        "--model-id",
        metavar="ORG/NAME",
        help="with --write-space: the Hub model the Space loads (default: a copy in the Space)",
    )
    app.set_defaults(func=_app)
    return parser


def _error_message(error: Exception) -> str | None:
    """The one line that reports ``error`` to the user; ``None`` for what is a bug (its
    traceback is what a bug report needs)."""
    if isinstance(error, KeyError):  # unknown item ids: the message is the key
        message = str(error.args[0]) if error.args else repr(error)
    elif isinstance(error, OSError) and error.filename is not None:
        # "[Errno 13] Permission denied: 'runs/x'" -> "runs/x: Permission denied"
        where = f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 else "")
        message = f"{where}: {error.strerror or error}"
    elif isinstance(error, (OSError, RuntimeError, ValueError)) or (
        type(error).__name__ == "SafetensorError"  # by name: importing safetensors is slow
    ):
        # OSError: network, disk; ValueError: bad settings or data (PipelineError,
        # DataFormatError); RuntimeError: e.g. no Hub token; SafetensorError: a damaged weights
        # file, a full disk while saving (not an OSError; the stages name the file)
        message = str(error) or type(error).__name__
    else:
        return None
    # one line, also where a library's message has several (the Hub's HTTP errors)
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C: the user knows why; finished stages stay finished
        print("store-hf: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        message = _error_message(e)
        if message is None or args.verbose:  # the full traceback, for bug reports
            raise
        print(f"store-hf: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
