"""What the browser page (:mod:`store_hf.app`) shows of a run, and the page as a Hub Space.

``store-hf app PATH`` serves :func:`page` over a run folder (the catalogue's titles, the test
users, the metrics table and plots of its report) or a recommender model folder (the titles and
test users saved beside it, if any). :func:`write_space` lays out the same page as a Space:
``app.py`` (a copy of :mod:`store_hf.app`, which needs no ``store_hf``), ``requirements.txt``,
``README.md`` with the Space metadata, ``space.json`` naming the model, and the data files.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from . import app as app_module
from .app import (
    ITEMS_FILE,
    METRICS_FILE,
    SPACE_CONFIG,
    TEST_USERS_FILE,
    AppData,
    RecommenderApp,
    build_page,
    read_app_data,
)
from .files import atomic_write, write_json_atomic

logger = logging.getLogger(__name__)

#: the dataset attributes that name an item, best first (Amazon, MovieLens, MIND: title; Yelp: name)
TITLE_ATTRIBUTES = ("title", "name")

#: what a Space installs (the model brings its own code; this is what it imports)
SPACE_REQUIREMENTS = ("gradio>=6,<7", "torch>=2.1", "transformers>=5,<6", "numpy")


def run_app_data(run_dir: str | os.PathLike) -> AppData:
    """The :class:`AppData` of a finished run folder: titles from its dataset, the test users
    its evaluate stage ranks (same draw), its report's metrics table and plots."""
    from .pipeline import Pipeline
    from .report import metrics_summary
    from .run_config import RunConfig

    run_dir = Path(run_dir)
    pipeline = Pipeline(RunConfig.from_run_folder(run_dir))
    items = pipeline.dataset.items
    title = next((a for a in TITLE_ATTRIBUTES if a in items.column_names), None)
    titles = dict(zip(items["item_id"], items[title])) if title else {}
    test = pipeline.test_users()
    users = [
        {"user_id": u, "history": list(h), "target": t}
        for u, h, t in zip(test["user_id"], test["history"], test["target"])
    ]
    data = AppData(titles=titles, test_users=users, source=f"run {run_dir}")
    report = run_dir / "report"
    if (report / "metrics.json").is_file():
        hint = f"run `store-hf report {run_dir} --force`"
        data.metrics_markdown = metrics_summary(report / "metrics.json", hint)
    data.plots = sorted(str(p) for p in report.glob("*.png"))
    return data


def load_app(path: str | os.PathLike) -> RecommenderApp:
    """The page's backend over a run folder or a recommender model folder (raises
    ``FileNotFoundError``/``ValueError`` naming the folder when it is neither)."""
    from .modeling_store import StoreForGenerativeRec
    from .run_folder import model_folder

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder (give a run folder or a model folder)")
    folder = model_folder(path)
    model = StoreForGenerativeRec.from_pretrained(folder)
    return RecommenderApp(model, _app_data(path, folder))


def _app_data(path: Path, folder: Path) -> AppData:
    """A run folder's data, or what is saved beside the model folder ``path``."""
    if folder != path:
        return run_app_data(path)
    return read_app_data(folder, source=f"model {folder}")


def page(path: str | os.PathLike):
    """The Gradio page over ``path``; where ``path`` does not load, a page that says why."""
    try:
        app = load_app(path)
    except (OSError, ValueError, KeyError) as err:
        logger.error("%s", err)
        return build_page(None, str(err))
    return build_page(app)


def write_space(
    path: str | os.PathLike,
    out: str | os.PathLike,
    model_id: str | None = None,
    title: str | None = None,
) -> Path:
    """Lay out the page as a Hugging Face Space in ``out`` (replaced if it exists).

    Args:
        path: a run folder or a recommender model folder.
        out: the Space folder to write.
        model_id: the Hub model the Space loads (``"org/name"``); ``None`` copies the model
            folder into the Space as ``model/`` (a Space that works on its own, and locally:
            ``cd out && python app.py``).
        title: the Space's title (default: the model id or the folder name).

    Returns:
        ``out``.
    """
    from .run_folder import model_folder

    path, out = Path(path), Path(out)
    folder = model_folder(path)
    data = _app_data(path, folder)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if model_id is None:
        shutil.copytree(folder, staging / "model", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(app_module.__file__, staging / "app.py")
    (staging / "requirements.txt").write_text("\n".join(SPACE_REQUIREMENTS) + "\n")
    name = title or model_id or folder.name
    write_json_atomic(staging / SPACE_CONFIG, {"model": model_id or "model", "title": name})
    _write_data(staging, data)
    (staging / "README.md").write_text(_space_card(name, model_id))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return out


def _write_data(folder: Path, data: AppData) -> None:
    def jsonl(rows: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    items = [{"item_id": i, "title": t} for i, t in data.titles.items()]
    atomic_write(folder / ITEMS_FILE, jsonl(items))
    if data.test_users:
        atomic_write(folder / TEST_USERS_FILE, jsonl(data.test_users))
    if data.metrics_markdown:
        atomic_write(folder / METRICS_FILE, data.metrics_markdown)
    for plot in data.plots:
        shutil.copy(plot, folder / Path(plot).name)


def _space_card(title: str, model_id: str | None) -> str:
    models = f"models:\n- {model_id}\n" if model_id else ""
    return (
        "---\n"
        f"title: {json.dumps(title)}\n"
        "sdk: gradio\n"
        "app_file: app.py\n"
        f"{models}"
        "tags:\n- recommendation\n- store-hf\n"
        "---\n\n"
        f"# {title}\n\n"
        "Try a STORE generative recommender: build a history by title, see the top-k items "
        "with their semantic IDs, score a candidate. Laid out by store-hf "
        "(`store-hf push RUN --repo-id ORG/NAME --space ORG/NAME-demo`).\n"
    )


__all__ = ["load_app", "page", "run_app_data", "write_space"]
