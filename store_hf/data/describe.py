"""Human-readable dataset statistics (what ``store-hf describe`` prints)."""

from __future__ import annotations

from typing import Any


def format_statistics(stats: dict[str, Any]) -> str:
    """Render :meth:`RecDataset.statistics` as an aligned plain-text report."""
    lines = [f"dataset: {stats['name']}"]
    lines.append(f"  items         {stats['items']:>10,}")
    lines.append(f"  users         {stats['users']:>10,}")
    lines.append(f"  interactions  {stats['interactions']:>10,}")
    lines.append(f"  density       {stats['density']:>10.6f}")
    d = stats["sequence_length"]
    lines.append(
        "  sequence length: min {min}  p25 {p25:g}  median {median:g}  mean {mean:.2f}  "
        "p75 {p75:g}  p90 {p90:g}  max {max}".format(**d)
    )
    lines.append("  attributes (coverage = share of items with a non-empty value):")
    for name, a in stats["attributes"].items():
        lines.append(
            f"    {name:<14} coverage {a['coverage']:7.2%}   mean words {a['mean_words']:7.1f}   max words {a['max_words']}"
        )
    if "impressions" in stats:
        imp = stats["impressions"]
        lines.append(
            f"  impressions   {imp['count']:>10,}   candidates per impression mean "
            f"{imp['candidates']['mean']:.2f}, click rate {imp['click_rate']:.2%}"
        )
    if stats.get("dropped"):
        lines.append("  dropped while reading:")
        for reason, count in stats["dropped"].items():
            lines.append(f"    {reason:<36} {count:>10,}")
    if "memory" in stats:
        m = stats["memory"]
        lines.append(
            f"  embedding memory at D={m['hidden_size']}: ID table N x D = {m['id_table']:,} "
            f"floats; semantic codes k x v x D = {m['code_table']:,} floats "
            f"({m['id_table'] / m['code_table']:.1f}x smaller)"
        )
    return "\n".join(lines)
