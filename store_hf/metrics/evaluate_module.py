"""Where the package's Hugging Face ``evaluate`` module lies: ``evaluate.load`` of a local folder
needs its path, and the script ships inside the installed package (package data)."""

from __future__ import annotations

from pathlib import Path

#: the folder of the ``store_ranking`` evaluate module (``store_ranking/store_ranking.py``)
EVALUATE_MODULE_DIR = Path(__file__).resolve().parent / "evaluate_modules" / "store_ranking"


def evaluate_module_path() -> str:
    """The local path of the ``store_ranking`` evaluate module (Recall@K and NDCG@K computed by
    :func:`~store_hf.metrics.target_ranks` and :func:`~store_hf.metrics.ranking_metrics`),
    for ``evaluate.load(evaluate_module_path())``: no Hub access, also offline.

    Raises:
        FileNotFoundError: the script is missing (a package installed without its data files).
    """
    script = EVALUATE_MODULE_DIR / f"{EVALUATE_MODULE_DIR.name}.py"
    if not script.is_file():
        raise FileNotFoundError(
            f"{script}: the evaluate module is not installed with store_hf (package data "
            "left out?); reinstall store-hf"
        )
    return str(EVALUATE_MODULE_DIR)


__all__ = ["EVALUATE_MODULE_DIR", "evaluate_module_path"]
