"""A page to try a trained STORE recommender in the browser (Gradio).

``store-hf app RUN_DIR_OR_MODEL_FOLDER`` serves it over a run folder or a saved recommender;
a Hub Space serves the same file (``store_hf.space.write_space`` copies it there beside a
``space.json`` naming the model). That is why this module imports nothing of ``store_hf``: in a
Space the package is not installed, the model comes with its own code (``trust_remote_code``)
and this file needs only gradio, torch and transformers.

What a user can do:

- build a history by searching the catalogue by title (type part of a title, pick items), by
  pasting item ids, or by starting from a real test user's history;
- see the top-k items with title, score (the beam's log-probability) and semantic ID, and a
  flag where a test user's held-out next item was found;
- ask the scoring mode for the yes-probability of one candidate after that history;
- see which catalogue items share a code prefix with a recommended item (the code tree
  around it), so the semantic IDs mean something;
- read the run's metrics table and plots (run folders; a Space carries them too).

Bad input (an empty history, unknown ids, a folder that is no model) is a message on the page.
"""

from __future__ import annotations

import html
import importlib
import json
import logging
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Files of a Space (or any folder given to :func:`read_app_data`) that the page reads.
SPACE_CONFIG = "space.json"
ITEMS_FILE = "items.jsonl"
TEST_USERS_FILE = "test_users.jsonl"
METRICS_FILE = "metrics.md"

#: What the page shows at most: test users in the picker, items per code-tree level.
MAX_TEST_USERS = 500
NEIGHBOURS_SHOWN = 8
MAX_K = 50


@dataclass
class AppData:
    """Everything the page shows besides the model: plain data, so that a run folder (through
    the package) and a Space folder (through :func:`read_app_data`) give the same page.

    Attributes:
        titles: item id -> title; items missing here are shown by their id.
        test_users: ``{"user_id", "history", "target"}`` rows (history oldest first).
        metrics_markdown: the run's metrics table (Markdown), empty where there is none.
        plots: PNG files of the run's report.
        source: what was loaded, shown under the page title.
    """

    titles: dict[str, str] = field(default_factory=dict)
    test_users: list[dict[str, Any]] = field(default_factory=list)
    metrics_markdown: str = ""
    plots: list[str] = field(default_factory=list)
    source: str = ""


def read_app_data(folder: str | os.PathLike, source: str = "") -> AppData:
    """The :class:`AppData` saved in ``folder`` (a Space): ``items.jsonl``, ``test_users.jsonl``,
    ``metrics.md`` and ``*.png``, each optional. Raises ``ValueError`` naming the file and line
    of a malformed row."""
    folder = Path(folder)
    data = AppData(source=source or str(folder))
    for name, key in ((ITEMS_FILE, "items"), (TEST_USERS_FILE, "users")):
        path = folder / name
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    if key == "items":
                        data.titles[str(row["item_id"])] = str(row.get("title") or row["item_id"])
                    else:
                        data.test_users.append(
                            {
                                "user_id": str(row["user_id"]),
                                "history": [str(i) for i in row["history"]],
                                "target": str(row["target"]),
                            }
                        )
                except (ValueError, KeyError, TypeError) as err:
                    raise ValueError(f"{path}:{line_no}: not a valid row ({err})") from None
    if (folder / METRICS_FILE).is_file():
        data.metrics_markdown = (folder / METRICS_FILE).read_text(encoding="utf-8")
    data.plots = sorted(str(p) for p in folder.glob("*.png"))
    return data


def recommendation_pipeline(model):
    """The model's ``"store-recommendation"`` pipeline (``pipeline_store``, beside the module of
    its class: the package's, or a saved folder's remote code), or ``None`` for a folder saved
    before the pipeline was."""
    package = type(model).__module__.rpartition(".")[0]
    try:
        module = importlib.import_module(f"{package}.pipeline_store")
    except (ImportError, TypeError):  # no such file, or a model class outside a package
        return None
    return module.StoreRecommendationPipeline(model=model, device=model.device)


class RecommenderApp:
    """What the page does, without the page: search, recommend, score, code neighbours.

    Args:
        model: a ``StoreForGenerativeRec`` (the package's class or its remote-code copy).
        data: titles, test users, metrics and plots; without titles, the model's own
            (``config.item_titles``) where it carries them.
    """

    def __init__(self, model, data: AppData | None = None) -> None:
        self.model = model.eval()
        self.data = data or AppData()
        if not self.data.titles and getattr(model.config, "item_titles", None):
            self.data.titles = dict(zip(model.config.item_ids, model.config.item_titles))
        self.recommender = recommendation_pipeline(model)
        self.item_ids: list[str] = list(model.config.item_ids)
        self.known = set(self.item_ids)
        self.codes = model.item_codes.cpu()  # (num_items, v)
        self.users = {u["user_id"]: u for u in self.data.test_users[:MAX_TEST_USERS]}

    # -- what the widgets list
    def title(self, item_id: str) -> str:
        return self.data.titles.get(item_id, item_id)

    def item_choices(self) -> list[tuple[str, str]]:
        """``(label, item id)`` for the history and candidate pickers; the label has the title
        (what a user types to search) and the id."""
        return [(f"{self.title(i)} [{i}]", i) for i in self.item_ids]

    def user_choices(self) -> list[tuple[str, str]]:
        return [(f"{u} ({len(r['history'])} items)", u) for u, r in self.users.items()]

    def semantic_id(self, item_id: str) -> str:
        """The item's codes, one per dense-token position, e.g. ``"12-200-3"``."""
        row = int(self.model.item_rows([item_id])[0])
        return "-".join(str(c) for c in self.codes[row].tolist())

    # -- input
    def history(self, picked: list[str] | None, pasted: str | None) -> list[str]:
        """The history, oldest first: the picked items, then the pasted ids (separated by
        commas, spaces or new lines). Raises ``ValueError`` for an empty history or unknown
        ids (all of them named)."""
        ids = [str(i) for i in picked or []] + re.split(r"[\s,]+", (pasted or "").strip())
        ids = [i for i in ids if i]
        if not ids:
            raise ValueError(
                "The history is empty: pick items by title, paste item ids or choose a test user."
            )
        unknown = [i for i in ids if i not in self.known]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise ValueError(f"Not in the catalogue of this model: {shown}.")
        return ids

    def held_out(self, user_id: str | None, history: list[str]) -> str | None:
        """The test user's held-out next item, when the history is still that user's."""
        user = self.users.get(user_id or "")
        return user["target"] if user and user["history"] == history else None

    # -- the model
    def recommend(self, history: list[str], k: int = 10) -> list[dict[str, Any]]:
        """Top-``k`` items after ``history`` (the ``"store-recommendation"`` pipeline, i.e.
        :meth:`StoreForGenerativeRec.recommend`): rows with ``rank``, ``item_id``, ``title``,
        ``score`` (beam log-probability) and ``semantic_id``."""
        k = max(1, min(int(k), MAX_K, len(self.item_ids)))
        if self.recommender is not None:
            found = [(r["item_id"], r["score"]) for r in self.recommender(history, top_k=k)]
        else:  # a folder saved before the pipeline
            out = self.model.recommend([history], k=k)
            found = list(zip(out.item_ids[0], out.scores[0].tolist()))
        return [
            {
                "rank": rank,
                "item_id": item,
                "title": self.title(item),
                "score": score,
                "semantic_id": self.semantic_id(item),
            }
            for rank, (item, score) in enumerate(found, 1)
        ]

    def score(self, history: list[str], candidate: str | None) -> float:
        """The scoring mode's yes-probability of ``candidate`` after ``history``."""
        if not candidate:
            raise ValueError("Pick a candidate item to score.")
        if candidate not in self.known:
            raise ValueError(f"Not in the catalogue of this model: {candidate!r}.")
        return float(self.model.score([history], [candidate])[0])

    def neighbours(self, item_id: str) -> list[dict[str, Any]]:
        """The code tree around ``item_id``: for each prefix length ``d = 1..v``, the prefix,
        how many catalogue items share it and the first :data:`NEIGHBOURS_SHOWN` of them
        (the item itself left out)."""
        row = int(self.model.item_rows([item_id])[0])
        same = self.codes == self.codes[row]  # (num_items, v): position by position
        shared = same.int().cumprod(dim=1).bool()  # shares the first d+1 codes
        levels = []
        for d in range(self.codes.shape[1]):
            rows = shared[:, d].nonzero().flatten().tolist()
            others = [self.item_ids[r] for r in rows if r != row]
            levels.append(
                {
                    "prefix": "-".join(str(c) for c in self.codes[row, : d + 1].tolist()),
                    "count": len(rows),
                    "items": [(i, self.title(i)) for i in others[:NEIGHBOURS_SHOWN]],
                }
            )
        return levels


# ---------------------------------------------------------------------------- HTML
def _table(rows: list[dict[str, Any]], target: str | None) -> str:
    head = "<tr><th>#</th><th>title</th><th>item id</th><th>score</th><th>semantic ID</th><th>held out</th></tr>"
    body = []
    for r in rows:
        hit = r["item_id"] == target
        row_class = ' class="hit"' if hit else ""
        score = f"{r['score']:.3f}" if math.isfinite(r["score"]) else ""
        body.append(
            f'<tr data-item="{html.escape(r["item_id"])}"{row_class}>'
            f"<td>{r['rank']}</td><td>{html.escape(r['title'])}</td>"
            f"<td><code>{html.escape(r['item_id'])}</code></td><td>{score}</td>"
            f"<td><code>{r['semantic_id']}</code></td>"
            f"<td>{'held-out next item' if hit else ''}</td></tr>"
        )
    return f'<table id="recommendations">{head}{"".join(body)}</table>'


def _tree(item_id: str, title: str, levels: list[dict[str, Any]]) -> str:
    parts = [f"<p><b>{html.escape(title)}</b> <code>{html.escape(item_id)}</code></p><ul>"]
    for level in levels:
        names = ", ".join(html.escape(t) for _, t in level["items"])
        more = level["count"] - 1 - len(level["items"])
        names += f" and {more} more" if more > 0 else ""
        parts.append(
            f'<li data-prefix="{level["prefix"]}"><code>{level["prefix"]}</code>: '
            f"{level['count']} item{'s' if level['count'] != 1 else ''}"
            f"{': ' + names if names else ''}</li>"
        )
    return f'<div id="tree">{"".join(parts)}</ul></div>'


def _error(err: Exception) -> str:
    if isinstance(err, KeyError):  # the model's unknown-id message is the key
        message = str(err.args[0]) if err.args else repr(err)
    elif isinstance(err, ValueError):
        message = str(err)
    else:  # a bug: the log keeps the traceback, the page says what failed
        logger.exception("the page's request failed")
        message = (
            f"Something went wrong ({type(err).__name__}: {err}); the server log has the details."
        )
    return f"**Error:** {html.escape(message)}"


CSS = """
#recommendations { width: 100%; border-collapse: collapse; }
#recommendations td, #recommendations th { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; }
#recommendations tr.hit { background: #d7f5d7; font-weight: 600; }
"""


def _theme():
    import gradio as gr

    # system fonts: the page works offline (the default theme would fetch web fonts)
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def build_page(app: RecommenderApp | None, error: str | None = None):
    """The Gradio ``Blocks`` of the page; with ``app=None`` a page that says ``error``."""
    import gradio as gr

    with gr.Blocks(title="STORE recommender", analytics_enabled=False) as page:
        gr.Markdown("# STORE recommender")
        if app is None:
            gr.Markdown(f"**Error:** {html.escape(error or 'no model')}", elem_id="message")
            return page
        gr.Markdown(
            f"{html.escape(app.data.source)}: {len(app.item_ids):,} items, "
            f"{app.codes.shape[1]} codes per item."
        )
        with gr.Row():
            picked = gr.Dropdown(
                app.item_choices(),
                value=[],
                multiselect=True,
                filterable=True,
                label="History (oldest first): type part of a title and pick items",
                elem_id="history",
                scale=3,
            )
            pasted = gr.Textbox(
                label="... or paste item ids", placeholder="id1, id2, ...", elem_id="pasted"
            )
        with gr.Row():
            user = gr.Dropdown(
                app.user_choices(),
                value=None,
                label="Start from a test user's history",
                elem_id="test-user",
                visible=bool(app.users),
            )
            k = gr.Slider(
                1, min(MAX_K, len(app.item_ids)), value=10, step=1, label="k", elem_id="k"
            )
        message = gr.Markdown("", elem_id="message")
        with gr.Tab("Recommendations"):
            go = gr.Button("Recommend", variant="primary", elem_id="recommend")
            table = gr.HTML("", elem_id="results")
            explore = gr.Dropdown(
                [], label="Items that share codes with", elem_id="explore", interactive=True
            )
            tree = gr.HTML("", elem_id="code-tree")
        with gr.Tab("Score a candidate"):
            candidate = gr.Dropdown(
                app.item_choices(), value=None, label="Candidate item", elem_id="candidate"
            )
            score_button = gr.Button("Score", elem_id="score-button")
            score_out = gr.Markdown("", elem_id="score")
        if app.data.metrics_markdown or app.data.plots:
            with gr.Tab("Run metrics"):
                gr.Markdown(app.data.metrics_markdown, elem_id="metrics")
                for plot in app.data.plots:
                    gr.Image(plot, label=Path(plot).stem, interactive=False)

        def on_user(user_id):
            row = app.users.get(user_id or "")
            return (row["history"] if row else []), ""

        def on_recommend(picked_ids, pasted_ids, user_id, k_value):
            try:
                history = app.history(picked_ids, pasted_ids)
                rows = app.recommend(history, int(k_value))
            except Exception as err:  # every failure is a message on the page
                return _error(err), "", gr.update(choices=[], value=None), ""
            target = app.held_out(user_id, history)
            found = target is not None and any(r["item_id"] == target for r in rows)
            note = f"Recommended {len(rows)} items after {len(history)} history items."
            if target is not None:
                note += (
                    f" The held-out next item ({app.title(target)}) is at rank "
                    f"{next(r['rank'] for r in rows if r['item_id'] == target)}."
                    if found
                    else f" The held-out next item ({app.title(target)}) is not in the top {len(rows)}."
                )
            choices = [(f"{r['rank']}. {r['title']}", r["item_id"]) for r in rows]
            first = rows[0]["item_id"] if rows else None
            return note, _table(rows, target), gr.update(choices=choices, value=first), ""

        def on_explore(item_id):
            if not item_id:
                return ""
            try:
                return _tree(item_id, app.title(item_id), app.neighbours(item_id))
            except Exception as err:
                return _error(err)

        def on_score(picked_ids, pasted_ids, candidate_id):
            try:
                history = app.history(picked_ids, pasted_ids)
                p = app.score(history, candidate_id)
            except Exception as err:
                return _error(err)
            return (
                f"P(yes) = **{p:.4f}** that a user with this history of {len(history)} items "
                f"takes {html.escape(app.title(candidate_id))}."
            )

        user.change(on_user, user, [picked, pasted])
        go.click(on_recommend, [picked, pasted, user, k], [message, table, explore, tree])
        explore.change(on_explore, explore, tree)
        score_button.click(on_score, [picked, pasted, candidate], score_out)
    return page


def launch(page, host: str = "127.0.0.1", port: int | None = None, **kwargs):
    """Serve ``page`` (blocks until stopped unless ``prevent_thread_lock=True``)."""
    return page.launch(
        server_name=host,
        server_port=port,
        theme=_theme(),
        css=CSS,
        ssr_mode=False,
        footer_links=[],
        **kwargs,
    )


def load_remote_model(name_or_path: str):
    """A saved recommender with its own code, as a Space loads it (``trust_remote_code``)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(name_or_path, trust_remote_code=True)
    if not hasattr(model, "recommend"):
        raise ValueError(f"{name_or_path}: not a STORE recommender (no recommend method)")
    torch.set_grad_enabled(False)
    return model.eval()


def space_page(folder: str | os.PathLike = "."):
    """The page of a Space folder: the model named in ``space.json``, the data beside it. A
    model that does not load is a page that says why."""
    folder = Path(folder)
    try:
        config = json.loads((folder / SPACE_CONFIG).read_text(encoding="utf-8"))
        model_id = config["model"]
        model_path = folder / model_id
        model = load_remote_model(str(model_path) if model_path.is_dir() else model_id)
        app = RecommenderApp(model, read_app_data(folder, source=config.get("title", model_id)))
    except Exception as err:
        logger.exception("the Space could not load its model")
        return build_page(None, f"{type(err).__name__}: {err}")
    return build_page(app)


if __name__ == "__main__":  # a Space: `python app.py`
    logging.basicConfig(level=logging.INFO)
    here = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent)
    port = int(os.environ.get("GRADIO_SERVER_PORT", "7860"))
    launch(space_page(here), host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), port=port)
