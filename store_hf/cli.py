"""``store-hf`` command line (also ``python -m store_hf``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .clustering import embedding_memory
from .data import (
    DataFormatError,
    DataOptions,
    available_formats,
    load_embedded_dataset,
    read_dataset,
)
from .data.describe import format_statistics


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", help="dataset folder (default: the embedded Amazon Scientific set)"
    )
    parser.add_argument(
        "--dataset-format", dest="format", choices=available_formats(), help="dataset format"
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


def load_from_args(args: argparse.Namespace):
    """Read the dataset the data arguments name (the embedded one when none is named)."""
    options = DataOptions(
        min_sequence_length=args.min_sequence_length,
        kcore=args.kcore,
        consecutive_duplicates=args.consecutive_duplicates,
    )
    if args.path is None and args.items is None and args.interactions is None:
        return load_embedded_dataset(options)
    return read_dataset(
        args.path,
        format=args.format,
        items=args.items,
        interactions=args.interactions,
        options=options,
    )


def _describe(args: argparse.Namespace) -> int:
    dataset = load_from_args(args)
    stats = dataset.statistics()
    stats["memory"] = {
        "hidden_size": args.hidden_size,
        **embedding_memory(
            len(dataset.items), args.hidden_size, args.codebook_size, args.num_dense_tokens
        ),
    }
    print(json.dumps(stats, indent=2) if args.json else format_statistics(stats))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="store-hf", description=__doc__)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except DataFormatError as e:
        print(f"store-hf: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
