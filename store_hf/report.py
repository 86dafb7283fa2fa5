"""The run report: ``report.md``, ``metrics.json``, PNG plots and the model card, from the
plain data of a finished run (:class:`RunSummary`)."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .data.describe import format_statistics
from .files import atomic_copy, read_json, write_json_atomic

logger = logging.getLogger(__name__)

TABLE_KS = (5, 10, 20)


def metrics_table(systems: dict[str, dict[str, float]], ks: tuple[int, ...] = TABLE_KS) -> str:
    """Markdown table, one row per system: Recall@K then NDCG@K."""
    head = [f"Recall@{k}" for k in ks] + [f"NDCG@{k}" for k in ks]
    lines = ["| system | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for name, m in systems.items():
        cells = [f"{m[f'recall@{k}']:.4f}" for k in ks] + [f"{m[f'ndcg@{k}']:.4f}" for k in ks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metrics_summary(path: Path, hint: str) -> str:
    """The metrics table and its evaluation note (Markdown) of a report's ``metrics.json`` at
    ``path``; a corrupt or incomplete file raises naming it and ``hint`` (what redoes it)."""
    summary = read_json(path, hint=hint)
    try:
        return metrics_table(summary["systems"]) + "\n\n" + summary["note"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a run report's metrics ({e!r}); {hint}") from None


def _read(path: Path) -> Any:
    """A stage's JSON file (``<out>/<stage>/<name>.json``); a corrupt one names the command
    that redoes its stage."""
    from .run_folder import STAGE_COMMANDS

    stage, out = path.parent.name, path.parent.parent
    command = STAGE_COMMANDS.get(stage, "run")
    return read_json(path, hint=f"redo the stage: `store-hf {command} {out} --force`")


def _plots(folder: Path, tokenizer_log, rec_log, systems) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed (pip install store-hf[plot]): no plots")
        return []
    made = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
    steps = [(h["step"], h["loss"]) for h in tokenizer_log if "loss" in h]
    if steps:
        axes[0].plot(*zip(*steps))
    axes[0].set(title="dense tokenizer", xlabel="step", ylabel="target loss")
    for stage, log in rec_log.items():
        pts = [(h["step"], h["loss"]) for h in log if "loss" in h]
        if pts:
            axes[1].plot(*zip(*pts), label=f"{stage} train")
        pts = [(h["step"], h["eval_loss"]) for h in log if "eval_loss" in h]
        if pts:
            axes[1].plot(*zip(*pts), "o-", label=f"{stage} validation")
    axes[1].set(title="recommender", xlabel="step", ylabel="loss")
    axes[1].legend()
    # validation ranking quality over both stages, against training tokens seen where the
    # Trainer counted them (else steps); stage 2 continues stage 1's count
    unit = (
        "tokens"
        if any("num_input_tokens_seen" in h for lg in rec_log.values() for h in lg)
        else "step"
    )
    key = "num_input_tokens_seen" if unit == "tokens" else "step"
    offset = 0
    for stage, log in rec_log.items():
        metric = next((m for m in ("eval_ndcg@10", "eval_loss") if any(m in h for h in log)), None)
        if metric:
            pts = [(offset + h.get(key, 0), h[metric]) for h in log if metric in h]
            axes[2].plot(*zip(*pts), "o-", label=f"{stage}: {metric[5:]}")
        offset += max((h.get(key, 0) for h in log), default=0)
    xlabel = "training tokens seen (both stages)" if unit == "tokens" else "step (both stages)"
    axes[2].set(title="validation (learning curve)", xlabel=xlabel)
    if axes[2].lines:
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(folder / "training_curves.png", dpi=100)
    plt.close(fig)
    made.append("training_curves.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ks = (1, 5, 10, 20)
    for name, m in systems.items():
        ax.plot(ks, [m[f"recall@{k}"] for k in ks], "o-", label=name)
    ax.set(title="Recall@K (test)", xlabel="K", ylabel="Recall@K", xticks=ks)
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "recall_at_k.png", dpi=100)
    plt.close(fig)
    made.append("recall_at_k.png")
    return made


def _uncertainty(ranks: dict[str, list[int]] | None) -> list[str]:
    """Report lines: 95% bootstrap intervals over the test users for R@10 / N@10 of every
    system, and a paired bootstrap of STORE against each other system on the same users."""
    from .metrics import bootstrap_interval, paired_bootstrap, per_user_metric

    if not ranks:  # folders evaluated before ranks were kept
        return []
    ranks = {k: np.asarray(v) for k, v in ranks.items()}
    metrics = ("recall@10", "ndcg@10")
    values = {s: {m: per_user_metric(r, m) for m in metrics} for s, r in ranks.items()}
    lines = [
        "| system | R@10 [95% interval] | N@10 [95% interval] | STORE - system (R@10), p |",
        "|---|---|---|---|",
    ]
    for system, per_user in values.items():
        cells = []
        for m in metrics:
            low, high = bootstrap_interval(per_user[m])
            cells.append(f"{per_user[m].mean():.4f} [{low:.4f}, {high:.4f}]")
        if system == "STORE" or "STORE" not in values:
            paired = "reference"
        else:
            t = paired_bootstrap(values["STORE"]["recall@10"], per_user["recall@10"])
            verdict = "within noise" if t["p_value"] >= 0.05 else "differ"
            paired = f"{t['difference']:+.4f}, p={t['p_value']:.3g} ({verdict})"
        lines.append(f"| {system} | " + " | ".join(cells) + f" | {paired} |")
    return [
        "Intervals over the test users (bootstrap, 10,000 resamples); paired bootstrap on the "
        "same users (`evaluate/ranks.json` has every user's target rank):",
        "",
        *lines,
        "",
    ]


@dataclass
class RunSummary:
    """What the report shows of a finished run, as plain data.

    Attributes:
        out: the run's output folder (named in the report; ``report.md`` and ``metrics.json``
            are also copied to its top level).
        identity: the run's identity (:meth:`RunConfig.identity`); ``semantic_ids`` its
            semantic-ID method; ``preset``: the resolved preset as a dict (``Preset.to_dict``).
        dataset_stats: ``RecDataset.statistics()``.
        stages: every finished stage's ``stage.json`` by stage name.
        evaluation: ``evaluate/metrics.json``; ``ranks``: the per-system target ranks of
            ``evaluate/ranks.json`` (``None`` where absent).
        codebook: ``codebook/statistics.json``; ``cluster_sizes``: its plot, if any.
        tokenizer_log / rec_log: the ``log_history.json`` of both training stages.
        example_history: a test user's last items, for the model card's usage snippet.
    """

    out: Path
    identity: dict[str, Any]
    semantic_ids: str
    preset: dict[str, Any]
    dataset_stats: dict[str, Any]
    stages: dict[str, dict[str, Any]]
    evaluation: dict[str, Any]
    ranks: dict[str, list[int]] | None
    codebook: dict[str, Any]
    cluster_sizes: Path | None
    tokenizer_log: list[dict[str, Any]]
    rec_log: dict[str, list[dict[str, Any]]]
    example_history: list[str]

    @classmethod
    def from_stage_folders(cls, out: Path, **values: Any) -> RunSummary:
        """Read the finished stages' files under ``out``; ``values`` give the other fields."""
        ranks_file = out / "evaluate" / "ranks.json"
        sizes = out / "codebook" / "cluster_sizes.png"
        return cls(
            out=out,
            stages={
                name: _read(out / name / "stage.json")
                for name in ("tokenizer", "encode", "codebook", "recommender", "evaluate")
            },
            evaluation=_read(out / "evaluate" / "metrics.json"),
            ranks=_read(ranks_file)["ranks"] if ranks_file.is_file() else None,
            codebook=_read(out / "codebook" / "statistics.json"),
            cluster_sizes=sizes if sizes.is_file() else None,
            tokenizer_log=_read(out / "tokenizer" / "log_history.json"),
            rec_log=_read(out / "recommender" / "log_history.json"),
            **values,
        )


def write_report(folder: Path, run: RunSummary) -> dict[str, Any]:
    """Write the report, its plots and the model card (``README.md``) of ``run`` into
    ``folder``; copy ``report.md`` and ``metrics.json`` to the top of the output folder."""
    out, evaluation, codebook, stages = run.out, run.evaluation, run.codebook, run.stages
    tokenizer_log, rec_log = run.tokenizer_log, run.rec_log
    systems = evaluation["systems"]

    plots = _plots(folder, tokenizer_log, rec_log, systems)
    if run.cluster_sizes is not None:
        shutil.copy(run.cluster_sizes, folder / "cluster_sizes.png")
        plots.append("cluster_sizes.png")

    preset, dataset_stats = run.preset, run.dataset_stats
    util = ", ".join(f"{p['utilisation']:.2f}" for p in codebook["positions"])
    timing = "\n".join(f"| {n} | {s['seconds']:.0f} s |" for n, s in stages.items())
    lines = [
        f"# STORE run: {dataset_stats.get('name', 'dataset')}, preset `{preset['name']}`",
        "",
        f"Backbone `{preset['backbone']}`; output folder `{out}`.",
        "",
        "## Test metrics",
        "",
        metrics_table(systems),
        "",
        evaluation["note"] + ".",
        "",
        *_uncertainty(run.ranks),
        "## Dataset",
        "",
        "```text",
        format_statistics(dataset_stats),
        "```",
        "",
        "## Dense tokenizer",
        "",
        f"Trained on {stages['tokenizer']['train_items']} items; final training loss "
        f"{stages['tokenizer']['final_loss']}."
        if stages["tokenizer"].get("trained", True)
        else f"Not used: semantic IDs `{run.semantic_ids}` (an ablation; see "
        "`store_hf.presets.SEMANTIC_IDS`).",
    ]
    gap = stages["tokenizer"].get("dense_information_after") or {}
    if gap:
        lines.append(
            f"Held-out target loss with an item's own dense tokens {gap['loss_own']:.3f} vs "
            f"another item's {gap['loss_other']:.3f} (gap {gap['gap']:.3f} nats/token)."
        )
    scoring = evaluation.get("scoring")
    if scoring:
        lines += [
            "",
            "## Scoring mode",
            "",
            "| AUC | MRR | NDCG@1 | NDCG@5 | GAUC | impressions |",
            "|---|---|---|---|---|---|",
            f"| {scoring['auc']:.4f} | {scoring['mrr']:.4f} | {scoring['ndcg@1']:.4f} | "
            f"{scoring['ndcg@5']:.4f} | {scoring.get('gauc', float('nan')):.4f} | "
            f"{scoring['num_impressions']} ({scoring['impressions']}) |",
        ]
    lines += [
        "",
        "## Codebook",
        "",
        f"k = {codebook['codebook_size']} clusters x v = {codebook['num_positions']} positions "
        f"over {codebook['num_items']} items, "
        + (
            f"RQ-VAE with a {codebook['dim']}-dim latent"
            if codebook.get("method") == "rqvae"
            else f"PCA to {codebook['dim']} dims"
        )
        + "; utilisation per "
        f"position {util}; items sharing a code sequence: "
        f"{codebook['collision_rate_before']:.2%} before resolution, "
        f"{codebook['collision_rate_after']:.2%} after; fit in {codebook['fit_seconds']:.1f} s.",
        "",
        "## Stage times",
        "",
        "| stage | time |",
        "|---|---|",
        timing,
        "",
        "## Configuration",
        "",
        "```json",
        json.dumps({"run": run.identity, "preset": preset}, indent=2),
        "```",
        "",
    ]
    lines += [f"![{p}]({p})" for p in plots]
    report = "\n".join(lines) + "\n"
    (folder / "report.md").write_text(report)
    summary = {
        "systems": systems,
        "note": evaluation["note"],
        "scoring": scoring,
        "codebook": {
            "utilisation": [p["utilisation"] for p in codebook["positions"]],
            "collision_rate_before": codebook["collision_rate_before"],
            "collision_rate_after": codebook["collision_rate_after"],
        },
    }
    write_json_atomic(folder / "metrics.json", summary)
    for name in ("report.md", "metrics.json"):  # also at the top of the output folder
        atomic_copy(folder / name, out / name)
    _model_card(folder, run)
    return {"plots": plots, "table": metrics_table(systems)}


def _model_card(folder: Path, run: RunSummary) -> None:
    """The recommender's model card, ``folder/README.md`` (``store-hf push`` uploads it with
    the model; the finished recommender stage is never written to)."""
    from .hub import write_model_card

    codebook, preset, stats = run.codebook, run.preset, run.dataset_stats
    write_model_card(
        folder,
        {
            "model_name": f"store-{stats.get('name', 'rec').lower()}-{preset['name']}",
            "base_model": preset["backbone"],
            "dataset_name": stats.get("name", "dataset"),
            "dataset_stats": {k: stats[k] for k in ("items", "users", "interactions")},
            "preset": preset["name"],
            "settings": {"tokenizer": preset["tokenizer"], "recommender": preset["recommender"]},
            "codebook_stats": {
                "utilisation": [p["utilisation"] for p in codebook["positions"]],
                "collision_rate_before": codebook["collision_rate_before"],
                "collision_rate_after": codebook["collision_rate_after"],
                "num_items": codebook["num_items"],
                "codebook_size": codebook["codebook_size"],
                "num_positions": codebook["num_positions"],
            },
            "metrics": run.evaluation["systems"],
            "eval_note": run.evaluation["note"],
            "example_history": run.example_history,
        },
    )


__all__ = ["RunSummary", "metrics_table", "write_report"]
