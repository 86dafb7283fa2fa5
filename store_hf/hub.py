"""Model cards and Hugging Face Hub uploads for trained STORE recommenders.

* :func:`render_model_card` fills the card template (``store_hf/resources/model_card_template.md``,
  shipped as package data) from the facts a pipeline run gathered: dataset, settings, codebook
  statistics, metrics, an example history for the usage snippet.
* :func:`write_model_card` writes the card into a model folder as ``README.md``.
* :func:`extract_usage_snippet` returns the card's Python usage code, so it can be run against a
  model folder (the tests do; so can a user who wants to check a card before publishing).
* :func:`push_to_hub` checks that a folder is a loadable model folder and uploads it.

The template uses :class:`string.Template` placeholders (``${name}``), so rendering needs no
template engine; the YAML metadata header is written by ``huggingface_hub.ModelCardData``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import string
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .files import atomic_write, link_or_copy

logger = logging.getLogger(__name__)

#: The model card template, package data of ``store_hf`` (the single copy of the card's text).
TEMPLATE_PATH = Path(__file__).resolve().parent / "resources" / "model_card_template.md"

#: Tags of every STORE recommender card (Hub search facets).
CARD_TAGS = ("recommendation", "generative-recommendation", "semantic-ids", "store")

#: The card's ``pipeline_tag``: the Hub has no recommendation task, and ``text-generation``
#: would offer a text widget and a ``pipeline("text-generation")`` snippet that do not apply (the
#: model generates semantic IDs); its pipeline is the custom ``"store-recommendation"``.
PIPELINE_TAG = "other"

#: The ``model-index`` task of the card's evaluation results.
EVAL_TASK = {"task_type": "recommendation", "task_name": "Next-item recommendation"}

#: The row of ``context["metrics"]`` that is the card's own model (the others are baselines).
MODEL_SYSTEM = "STORE"

#: ``repo_id`` of the usage snippet when the context has none.
DEFAULT_REPO_ID = "path/to/model-folder"

#: (column title, metric key) of the card's evaluation table.
METRIC_COLUMNS = tuple(
    (f"{title}@{k}", f"{key}@{k}")
    for title, key in (("Recall", "recall"), ("NDCG", "ndcg"))
    for k in (5, 10, 20)
)

#: Backbone short names of ``store_hf.backbones`` -> the Hub model their weights come from (the
#: card's ``base_model`` must be a Hub id: the Hub rejects other values).
HUB_BASE_MODELS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_MISSING = "_Not recorded._"


# --------------------------------------------------------------------------- rendering helpers
def _hub_id(name: Any) -> str | None:
    """``name`` as a Hub repository id; None for short names (``tiny-opt``) and local paths."""
    if not name:
        return None
    name = HUB_BASE_MODELS.get(str(name), str(name))
    if not _HUB_ID.fullmatch(name) or Path(name).exists():
        return None
    return name


def _metadata(ctx: Mapping[str, Any]) -> str:
    """The card's YAML header (between ``---`` lines)."""
    from huggingface_hub import ModelCardData

    datasets = _hub_datasets(ctx)
    eval_results = _eval_results(ctx, datasets)
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=ctx.get("pipeline_tag") or PIPELINE_TAG,
        tags=list(CARD_TAGS),
        license=ctx.get("license") or None,
        base_model=_hub_id(ctx.get("base_model")),
        datasets=datasets,
        model_name=_title(ctx) if eval_results else None,
        eval_results=eval_results,
    )
    return f"---\n{data.to_yaml().strip()}\n---"


def _hub_datasets(ctx: Mapping[str, Any]) -> list[str] | None:
    """The Hub dataset ids of the metadata: ``datasets``, else ``dataset_name`` if a Hub id."""
    datasets = ctx.get("datasets")
    if datasets is None:
        datasets = [ctx["dataset_name"]] if _hub_id(ctx.get("dataset_name")) else None
    return list(datasets) if datasets else None


def _eval_results(ctx: Mapping[str, Any], datasets: list[str] | None) -> list | None:
    """The ``model-index`` of the card: one ``huggingface_hub.EvalResult`` per metric of the
    model's own row (``context["model_system"]``, default ``"STORE"``) of ``metrics``, the
    columns of the evaluation table, on the ``test`` split (the protocol is in the card's text,
    under "Evaluation"). ``None`` when that row is missing."""
    from huggingface_hub import EvalResult

    systems = {str(k).lower(): v for k, v in (ctx.get("metrics") or {}).items()}
    values = systems.get(str(ctx.get("model_system") or MODEL_SYSTEM).lower()) or {}
    lowered = {str(k).lower(): v for k, v in values.items()}
    name = str(ctx.get("dataset_name") or "not recorded")
    results = [
        EvalResult(
            **EVAL_TASK,
            dataset_type=datasets[0] if datasets else name,
            dataset_name=name,
            dataset_split="test",
            metric_type=key,
            metric_name=title,
            metric_value=float(lowered[key]),
        )
        for title, key in METRIC_COLUMNS
        if isinstance(lowered.get(key), (int, float)) and not isinstance(lowered[key], bool)
    ]
    return results or None


def _title(ctx: Mapping[str, Any]) -> str:
    return str(ctx.get("model_name") or "STORE generative recommender")


def _number(value: Any) -> str:
    """Counts with thousands separators, other numbers with 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _percent(value: Any, digits: int) -> str:
    return "–" if value is None else f"{100 * float(value):.{digits}f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "---:") -> str:
    """A markdown table; the first column is left-aligned, the others use ``align``."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|---|" + "".join(f"{align}|" for _ in header[1:]),
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """JSON types only: numpy/torch values become numbers or lists, anything else a string."""
    return json.loads(
        json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    )


def _summary(ctx: Mapping[str, Any]) -> str:
    facts = []
    if ctx.get("dataset_name"):
        facts.append(f"for the **{ctx['dataset_name']}** catalogue")
    if ctx.get("base_model"):
        facts.append(f"built on `{ctx['base_model']}`")
    if ctx.get("preset"):
        facts.append(f"trained with the `store-hf` preset `{ctx['preset']}`")
    return (
        ", ".join(["A STORE generative recommender", *facts])
        + ". Given the items a user interacted with, it generates the semantic IDs of the next "
        "items (one language model serves as item tokenizer and as recommender) and returns "
        "item ids of its catalogue."
    )


def _training_data(ctx: Mapping[str, Any]) -> str:
    lines = []
    if ctx.get("dataset_name"):
        lines.append(f"Dataset: **{ctx['dataset_name']}**.")
    stats = ctx.get("dataset_stats") or {}
    if stats:
        header = ["", *(str(k) for k in stats)]
        lines.append(_table(header, [["count", *(_number(v) for v in stats.values())]]))
    lines.append(
        "Items are described by their text attributes (title, brand, categories, ...); the "
        "recommender learns from each user's chronological sequence of items."
        + ("" if lines else " The dataset was not recorded.")
    )
    return "\n\n".join(lines)


def _training_settings(ctx: Mapping[str, Any]) -> str:
    import yaml  # a dependency of huggingface_hub

    facts = []
    if ctx.get("preset"):
        facts.append(f"Preset: `{ctx['preset']}`.")
    if ctx.get("base_model"):
        facts.append(f"Backbone: `{ctx['base_model']}`.")
    settings = ctx.get("settings")
    if not settings:
        return " ".join([*facts, "Detailed settings were not recorded."])
    # flow style for leaves keeps lists such as target modules on one line
    block = yaml.safe_dump(_plain(settings), sort_keys=False, default_flow_style=None, width=96)
    return "\n\n".join([" ".join(facts), f"```yaml\n{block.rstrip()}\n```"]).lstrip()


def _codebook(ctx: Mapping[str, Any]) -> str:
    stats = ctx.get("codebook_stats") or {}
    if not stats:
        return _MISSING
    rows = [
        [label, fmt(stats[key])]
        for label, key, fmt in (
            ("items", "num_items", _number),
            ("code positions per item (v)", "num_positions", _number),
            ("codes per position (k)", "codebook_size", _number),
            (
                "items sharing their code sequence, before collision resolution",
                "collision_rate_before",
                lambda v: _percent(v, 2),
            ),
            (
                "items sharing their code sequence, after collision resolution",
                "collision_rate_after",
                lambda v: _percent(v, 2),
            ),
        )
        if stats.get(key) is not None
    ]
    parts = [_table(["statistic", "value"], rows)] if rows else []
    utilisation = stats.get("utilisation") or []
    if utilisation:
        header = ["position", *(str(p + 1) for p in range(len(utilisation)))]
        parts.append(
            "Codebook utilisation, the share of the `k` codes that some item uses, per position:"
            + "\n\n"
            + _table(header, [["utilisation", *(_percent(u, 1) for u in utilisation)]])
        )
    return "\n\n".join(parts) or _MISSING


def _metric(values: Mapping[str, Any], key: str) -> str:
    lowered = {str(k).lower(): v for k, v in values.items()}
    value = lowered.get(key)
    if value is None:
        return "–"
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


def _evaluation(ctx: Mapping[str, Any]) -> str:
    metrics = ctx.get("metrics") or {}
    parts = []
    if metrics:
        rows = [
            [name, *(_metric(values or {}, key) for _, key in METRIC_COLUMNS)]
            for name, values in metrics.items()
        ]
        parts.append(_table(["system", *(title for title, _ in METRIC_COLUMNS)], rows))
        parts.append(
            "Recall@K: share of test users whose held-out next item is among the top K "
            "recommendations; NDCG@K also rewards ranking it higher."
        )
    else:
        parts.append(_MISSING)
    if ctx.get("eval_note"):
        note = str(ctx["eval_note"]).rstrip()
        parts.append("Protocol: " + note + ("" if note.endswith(".") else "."))
    if _eval_results(ctx, _hub_datasets(ctx)):
        system = ctx.get("model_system") or MODEL_SYSTEM
        parts.append(
            f"The `{system}` row is also in this card's metadata (`model-index`, split `test`), "
            "where the Hub indexes it."
        )
    return "\n\n".join(parts)


def _history_literal(history: Any) -> str:
    """A Python literal of the example history (JSON string syntax is valid Python)."""
    if not history:  # still a runnable snippet: any ids of the catalogue
        return "model.config.item_ids[:3]"
    return json.dumps([str(item) for item in history])


# --------------------------------------------------------------------------- public API
def render_model_card(context: Mapping[str, Any], template: str | os.PathLike | None = None) -> str:
    """The model card (``README.md`` text) of a trained recommender.

    Args:
        context: facts about the model, all optional (missing ones render as "not recorded"):
            ``repo_id`` (used in the usage snippet, default ``"path/to/model-folder"``),
            ``model_name``, ``base_model``, ``dataset_name``, ``dataset_stats`` (``items``,
            ``users``, ``interactions``), ``preset``, ``settings`` (dict), ``codebook_stats``
            (``utilisation`` per position, ``collision_rate_before``/``_after``,
            ``num_items``, ``codebook_size``, ``num_positions``), ``metrics`` (system ->
            ``{"recall@5": ..., "ndcg@10": ...}``), ``eval_note``, ``example_history`` (item
            ids of the catalogue), ``license`` and ``datasets`` (Hub dataset ids for the
            metadata; by default ``dataset_name`` when it is a Hub id).
        template: another template file using the same ``${placeholders}``.

    Returns:
        The card: a YAML metadata header (library, tags, license, base model, datasets)
        followed by markdown.

    Raises:
        KeyError: the template uses a placeholder this function does not fill.
    """
    ctx = dict(context)
    text = Path(template or TEMPLATE_PATH).read_text(encoding="utf-8")
    values = {
        "metadata": _metadata(ctx),
        "title": _title(ctx),
        "summary": _summary(ctx),
        "training_data": _training_data(ctx),
        "training_settings": _training_settings(ctx),
        "codebook": _codebook(ctx),
        "evaluation": _evaluation(ctx),
        "repo_id": json.dumps(str(ctx.get("repo_id") or DEFAULT_REPO_ID)),
        "example_history": _history_literal(ctx.get("example_history")),
    }
    # substitute, not safe_substitute: a placeholder left unfilled is a bug, not card text
    return string.Template(text).substitute(values)


def write_model_card(
    folder: str | os.PathLike,
    context: Mapping[str, Any],
    template: str | os.PathLike | None = None,
) -> Path:
    """Render the card and write it to ``folder/README.md``.

    The file is written to a temporary name and renamed, so a reader (or an upload running at the
    same time) never sees a half-written card. Returns the path of ``README.md``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder")
    text = render_model_card(context, template)
    return atomic_write(folder / "README.md", text)


def extract_usage_snippet(card_text: str, repo_id: str | os.PathLike | None = None) -> str:
    """The Python code of the card's "Usage" section (all its ``python`` blocks, joined).

    Args:
        card_text: a rendered card.
        repo_id: if given, the snippet's ``repo_id = ...`` line loads this repository or local
            folder instead.

    Raises:
        ValueError: the card has no usage section, no Python code in it, or (with ``repo_id``)
            no single ``repo_id = ...`` line.
    """
    match = re.search(r"^## Usage[^\n]*\n(.*?)(?=^## |\Z)", card_text, flags=re.S | re.M)
    if match is None:
        raise ValueError("the model card has no '## Usage' section")
    blocks = re.findall(r"^```python\n(.*?)^```", match.group(1), flags=re.S | re.M)
    if not blocks:
        raise ValueError("the model card's usage section holds no ```python block")
    code = "\n".join(blocks)
    if repo_id is not None:
        code, count = re.subn(
            r"^repo_id = .*$",
            lambda _: f"repo_id = {json.dumps(str(repo_id))}",
            code,
            flags=re.M,
        )
        if count != 1:
            raise ValueError(f"expected one 'repo_id = ...' line in the snippet, found {count}")
    return code


def _remote_code_files(folder: Path, config: Mapping[str, Any]) -> list[str]:
    """Python files the folder's ``auto_map`` and ``custom_pipelines`` need (with their relative
    imports), missing ones included, so they can be reported."""
    from transformers.dynamic_module_utils import get_relative_imports

    refs = [
        ref
        for entry in (config.get("auto_map") or {}).values()
        for ref in (entry if isinstance(entry, (list, tuple)) else [entry])
    ]
    refs += [task.get("impl") for task in (config.get("custom_pipelines") or {}).values()]
    pending = [
        ref.split(".")[0] + ".py"
        for ref in refs
        if ref and "--" not in ref  # "other/repo--module.Class" lives in another repository
    ]
    needed: list[str] = []
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.append(name)
        if (folder / name).is_file():
            pending += [f"{m.split('.')[0]}.py" for m in get_relative_imports(folder / name)]
    return needed


def check_model_folder(folder: str | os.PathLike) -> Path:
    """Check that ``folder`` holds a model that loads from the Hub: ``config.json``, weights
    (single or sharded safetensors / PyTorch files) and the remote code its ``auto_map`` names.

    Returns the folder as a Path. Raises ``FileNotFoundError`` naming what is missing.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    hint = (
        "push the recommender's model folder (OUTPUT_DIR/recommender/model of `store-hf run`, "
        "or a folder written by save_pretrained)"
    )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json, so not a model folder; {hint}")
    weights = [
        p
        for pattern in ("*.safetensors", "pytorch_model*.bin")
        for p in folder.glob(pattern)
        if p.is_file()
    ]
    for index in folder.glob("*.index.json"):  # sharded weights: every shard must be there
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            raise FileNotFoundError(f"{folder}: {index.name} lists missing shards {missing}")
        weights.append(index)
    if not weights:
        raise FileNotFoundError(
            f"{folder}: config.json but no weights (*.safetensors or pytorch_model*.bin); {hint}"
        )
    config = json.loads(config_path.read_text())
    missing = [f for f in _remote_code_files(folder, config) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: config.json's auto_map needs {missing}, which are missing; the model "
            "would not load with trust_remote_code. Save it again with save_pretrained."
        )
    return folder


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload STORE recommender",
    api: Any = None,
    model_card: str | os.PathLike | None = None,
    space_id: str | None = None,
) -> str:
    """Upload a model folder to a Hub model repository (created if needed).

    Args:
        folder: a model folder (see :func:`check_model_folder`); write its card first with
            :func:`write_model_card` (``store-hf run`` does).
        repo_id: ``"org/name"`` (or ``"name"`` under your own account).
        token: a Hub token with write access; default: ``huggingface_hub.get_token()``, i.e.
            the ``HF_TOKEN`` environment variable or the token saved by ``hf auth login``.
        private: create the repository as private. An existing repository keeps its visibility.
        commit_message: message of the upload commit.
        api: an object with ``create_repo`` and ``upload_folder`` like
            ``huggingface_hub.HfApi`` (default: a new ``HfApi``); tests pass a stand-in.
        model_card: a card to upload as the repository's ``README.md`` instead of the folder's
            own (a run's card is ``report/README.md``: the report stage never writes into the
            finished recommender stage).
        space_id: a Space that serves this model (:func:`push_space`): the uploaded card
            gains a "Try it" section that links to it.

    Returns:
        The URL of the upload commit (the repository URL if the API returns none).

    Raises:
        FileNotFoundError: ``folder`` is not a complete model folder.
        RuntimeError: no token was given or found.
        ConnectionError: the Hub could not be reached ("could not reach the Hugging Face
            Hub: ...", whatever HTTP client huggingface_hub uses).
    """
    folder = check_model_folder(folder)
    if model_card is None and space_id is not None and (folder / "README.md").is_file():
        model_card = folder / "README.md"
    if model_card is not None:
        card = Path(model_card)
        if not card.is_file():
            raise FileNotFoundError(f"{card}: model card not found")
        text = card.read_text(encoding="utf-8")
        if space_id is not None:
            text += (
                f"\n## Try it\n\nIn the browser: [{space_id}](https://huggingface.co/spaces/"
                f"{space_id}), a page where you pick items by title and see what this model "
                "recommends.\n"
            )
        return _push_with_card(folder, text, repo_id, token, private, commit_message, api)
    if not (folder / "README.md").is_file():
        logger.warning(
            "%s has no README.md: the Hub page will have no model card (write one with "
            "store_hf.hub.write_model_card)",
            folder,
        )
    return _upload(folder, repo_id, "model", token, private, commit_message, api)


def push_space(
    folder: str | os.PathLike,
    space_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload STORE recommender Space",
    api: Any = None,
) -> str:
    """Upload a Space folder (:func:`store_hf.space.write_space`) to a Gradio Space on the Hub
    (created if needed). Arguments, return value and errors as :func:`push_to_hub`."""
    folder = Path(folder)
    for name in ("app.py", "space.json", "README.md"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: no {name}; not a Space folder (write_space)")
    return _upload(
        folder, space_id, "space", token, private, commit_message, api, space_sdk="gradio"
    )


def _upload(
    folder: Path,
    repo_id: str,
    repo_type: str,
    token: str | None,
    private: bool,
    commit_message: str,
    api: Any,
    **create: Any,
) -> str:
    """Create the repository if needed and upload ``folder`` in one commit."""
    import huggingface_hub

    token = token or huggingface_hub.get_token()
    if not token:
        raise RuntimeError(
            "no Hugging Face token: run `hf auth login` (formerly `huggingface-cli login`), set "
            "the HF_TOKEN environment variable, or pass token=... (it needs write access)"
        )
    api = api if api is not None else huggingface_hub.HfApi()
    try:
        url = api.create_repo(
            repo_id, token=token, private=private, repo_type=repo_type, exist_ok=True, **create
        )
        # a bare "name" becomes "user/name": upload to the id the Hub answered with
        target = getattr(url, "repo_id", None) or repo_id
        commit = api.upload_folder(
            repo_id=target,
            folder_path=str(folder),
            repo_type=repo_type,
            token=token,
            commit_message=commit_message,
            ignore_patterns=["__pycache__/*", "*.pyc", ".*"],  # caches, temp files of cards
        )
    except Exception as e:
        if not isinstance(e, _network_errors()):
            raise
        endpoint = getattr(api, "endpoint", None) or huggingface_hub.constants.ENDPOINT
        # one ConnectionError whatever the HTTP client: callers (the CLI) report it in a line
        raise ConnectionError(f"could not reach the Hugging Face Hub: {e} (at {endpoint})") from e
    return str(getattr(commit, "commit_url", None) or url)


def _network_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that say the Hub could not be reached: the built-in ``ConnectionError``
    (huggingface_hub's ``OfflineModeIsEnabled`` is one) and ``TimeoutError``, and the
    transport errors of the HTTP client huggingface_hub uses, which are not ``OSError``s
    (httpx2 in huggingface_hub 2.x, httpx in 1.x, requests before). Looked up when an upload
    failed, so the client is imported by then and none is imported here."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for client in ("httpx2", "httpx"):
        module = sys.modules.get(client)
        if module is not None and hasattr(module, "TransportError"):
            errors.append(module.TransportError)  # connect, read and proxy errors, timeouts
    requests = sys.modules.get("requests")
    if requests is not None:
        errors += [requests.ConnectionError, requests.Timeout]
    return tuple(errors)


def _push_with_card(folder: Path, card: str, repo_id, token, private, commit_message, api) -> str:
    """Push ``folder`` with the text ``card`` as its README: a staging folder of hard links
    (copies across file systems) holds both, so the upload is one commit."""
    with tempfile.TemporaryDirectory(prefix="store-hf-push-") as staging:
        stage = Path(staging) / folder.name
        shutil.copytree(folder, stage, copy_function=link_or_copy, ignore=_UPLOAD_IGNORE)
        (stage / "README.md").write_text(card, encoding="utf-8")
        return push_to_hub(stage, repo_id, token, private, commit_message, api)


_UPLOAD_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "README.md")


__all__ = [
    "CARD_TAGS",
    "TEMPLATE_PATH",
    "check_model_folder",
    "extract_usage_snippet",
    "push_space",
    "push_to_hub",
    "render_model_card",
    "write_model_card",
]
