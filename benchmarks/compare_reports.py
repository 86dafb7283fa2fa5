"""Pair one row of a quality report with a row of another report on the same test users: the
paired comparison of a lever (a setting changed between two harness runs) without ranking
either model again.

    python benchmarks/compare_reports.py \\
        benchmarks/results/quality-scientific-full-lr2e-4.json:store \\
        benchmarks/results/quality-scientific-full-v5.json:store-no-align \\
        --labels "lr 2e-4" "lr 1e-4" --name lr2e-4-vs-1e-4-full

``benchmarks/quality.py --merge`` refuses a report run under other settings, because its table
must describe one configuration; a lever is exactly such a difference, so this script pairs the
two rows instead and says where each came from. Each operand is ``REPORT.json:SYSTEM`` (the
report's ``-ranks.json`` lies beside it); the first is the reference. Both reports must have
ranked the same users with the same eval seed; every metric is rebuilt from the per-user ranks
and checked against its report (``benchmarks.quality.earlier_results``). Writes
``benchmarks/results/<name>.md`` and ``.json``: R@10 and N@10 with 95% intervals over users, the
paired bootstrap of the difference and McNemar on hits@10 (every seed pair), once with history
items kept and once with them excluded where both rows have those ranks, plus each row's
provenance (machine, date, command, commit) and the settings its report records.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import machine_info  # noqa: E402
from benchmarks.quality import VARIANTS, _main_table, aggregate, earlier_results  # noqa: E402
from store_hf.files import atomic_write, read_json, write_json_atomic  # noqa: E402


def operand(text: str) -> tuple[Path, str]:
    """``REPORT.json:SYSTEM`` -> (path, system)."""
    path, sep, system = text.rpartition(":")
    if not sep or not path or not system:
        raise argparse.ArgumentTypeError(f"{text!r}: expected REPORT.json:SYSTEM")
    return Path(path), system


def load_row(path: Path, system: str, users: list, eval_seed: int) -> tuple[list[dict], dict]:
    """The per-seed runs of ``system`` in the report ``path``, aligned to ``users`` (which it
    must have ranked with ``eval_seed``), and the report's header."""
    if not path.is_file():
        raise SystemExit(f"{path}: file not found")
    results, _ = earlier_results(path, users, eval_seed, {})
    if system not in results:
        raise SystemExit(f"{path}: no per-user ranks of {system!r} (it has {sorted(results)})")
    return results[system], read_json(path).get("machine", {})


def compare(first: tuple[Path, str], second: tuple[Path, str], labels: list[str]) -> dict:
    """Both rows and the paired tests of ``labels[0]`` minus ``labels[1]``, per history
    variant both rows have; the first report's users and eval seed are the comparison's."""
    ranks_path = first[0].with_name(first[0].stem + "-ranks.json")
    if not ranks_path.is_file():
        raise SystemExit(f"{ranks_path}: file not found")
    ranks = read_json(ranks_path)
    users, eval_seed = list(ranks["user_id"]), ranks["eval_seed"]
    runs_a, header_a = load_row(*first, users, eval_seed)
    runs_b, header_b = load_row(*second, users, eval_seed)
    results = {labels[0]: runs_a, labels[1]: runs_b}
    tables = {key: aggregate(results, labels[0], key) for key in VARIANTS}
    return {
        "tables": {key: table for key, table in tables.items() if len(table) == 2},
        "rows": {
            label: {
                "report": str(path),
                "system": system,
                "preset": header.get("preset"),
                "recommender": header.get("recommender", {}),
                "final": header.get("final", False),
            }
            for label, (path, system), header in zip(labels, (first, second), (header_a, header_b))
        },
        "test_users": len(users),
        "eval_seed": eval_seed,
    }


def markdown(info: dict, result: dict, labels: list[str]) -> str:
    lines = [
        f"# {labels[0]} against {labels[1]}, paired on the same users",
        "",
        f"Written by `benchmarks/compare_reports.py` on {info['date']}: `{info['command']}`.",
        f"{result['test_users']} test users (eval seed {result['eval_seed']}), ranked by each "
        "row's own run; nothing was ranked again.",
        "",
    ]
    for label, row in result["rows"].items():
        settings = ", ".join(f"{k}={v}" for k, v in row["recommender"].items()) or "defaults"
        lines.append(
            f"- **{label}**: `{row['system']}` of `{row['report']}` (its report: preset {row['preset']}, "
            f"--recommender {settings}{', confirmation sample' if row['final'] else ''})"
        )
    for key, table in result["tables"].items():
        lines += ["", f"## {VARIANTS[key].capitalize()}", "", *_main_table(table, labels[0])]
    lines += ["", "## Provenance", ""]
    rows = result["tables"]["ranks"]
    for label in labels:
        codes = rows[label].get("codes") or [None] * len(rows[label]["seeds"])
        for p, code in zip(rows[label]["provenance"], codes):
            p = p or {}
            lines.append(
                f"- {label}: {p.get('machine', 'unrecorded')}, {p.get('date')}, commit "
                f"{p.get('commit', 'unrecorded')}, codes {code or 'unrecorded'}: "
                f"`{p.get('command')}`"
            )
    fingerprints = [set(rows[label].get("codes") or [None]) for label in labels]
    if None in fingerprints[0] | fingerprints[1]:
        lines += ["", "The codes of a row are unrecorded: that both ranked the same codes is "
                  "not checked here."]  # fmt: skip
    else:
        same = fingerprints[0] == fingerprints[1] and len(fingerprints[0]) == 1
        lines += ["", "Both rows ranked the same codes." if same else
                  "**The rows ranked different codes**: the comparison includes the codebook."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("reference", type=operand, help="REPORT.json:SYSTEM (the reference row)")
    p.add_argument("other", type=operand, help="REPORT.json:SYSTEM")
    p.add_argument("--labels", nargs=2, metavar=("REFERENCE", "OTHER"), help="row names")
    p.add_argument("--name", required=True, help="output name under --output-dir")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    labels = args.labels or [
        f"{path.stem}:{system}" for path, system in (args.reference, args.other)
    ]
    if labels[0] == labels[1]:
        p.error(f"both rows are labelled {labels[0]!r}: give --labels")
    try:
        result = compare(args.reference, args.other, labels)
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        raise SystemExit(str(e)) from None
    info = machine_info()
    out = args.output_dir / args.name
    write_json_atomic(out.with_suffix(".json"), {"machine": info, **result})
    text = markdown(info, result, labels)
    atomic_write(out.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
