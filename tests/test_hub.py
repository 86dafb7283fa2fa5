"""Model cards, Hub uploads (against a local stand-in for the Hub) and the Accelerate configs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from store_hf.hub import (
    CARD_TAGS,
    METRIC_COLUMNS,
    TEMPLATE_PATH,
    check_model_folder,
    extract_usage_snippet,
    push_to_hub,
    render_model_card,
    write_model_card,
)

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = sorted((ROOT / "examples" / "accelerate").glob("*.yaml"))

CONTEXT = {
    "repo_id": "store-org/store-scientific-cpu",
    "model_name": "store-scientific-cpu",
    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "dataset_name": "Scientific",
    "dataset_stats": {"items": 4344, "users": 8317, "interactions": 58492},
    "preset": "cpu",
    "settings": {
        "tokenizer": {
            "learning_rate": 0.001,
            "num_epochs": 1.0,
            "lora_target_modules": ["q_proj", "k_proj", "v_proj"],
        },
        "recommender": {"num_beams": 20, "max_history": 20, "code_init": "dense"},
    },
    "codebook_stats": {
        "utilisation": [0.984375, 1.0, 0.9765625, 0.5],
        "collision_rate_before": 0.357,
        "collision_rate_after": 0.0,
        "num_items": 4344,
        "codebook_size": 256,
        "num_positions": 4,
    },
    "metrics": {
        "STORE": {
            "recall@1": 0.004,
            "recall@5": 0.03125,
            "recall@10": 0.05,
            "recall@20": 0.08123456,
            "ndcg@5": 0.02,
            "ndcg@10": 0.0312,
            "ndcg@20": 0.04,
        },
        "MostPopular": {
            "recall@5": 0.0101,
            "recall@10": 0.02,
            "recall@20": 0.03,
            "ndcg@5": 0.005,
            "ndcg@10": 0.007,
            "ndcg@20": 0.01,
        },
    },
    "eval_note": "leave-one-out test split, 500 of 8317 users (random subset)",
    "example_history": ["B00004Z5QG", "B0000AXTUY"],
    "license": "apache-2.0",
}

SECTIONS = [
    "## Intended use",
    "## How it works",
    "## Training data",
    "## Training settings",
    "## Codebook statistics",
    "## Evaluation",
    "## Usage",
    "## Limitations",
    "## Citation",
]


def _table_row(text: str, first_cell: str) -> list[str]:
    """Cells of the markdown table row that starts with ``first_cell``."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells[1:]
    raise AssertionError(f"no table row {first_cell!r}")


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


# --------------------------------------------------------------------------- the card
def test_card_sections_metadata_and_tables():
    text = render_model_card(CONTEXT)
    assert "${" not in text
    positions = [text.index(s + "\n") for s in SECTIONS]
    assert positions == sorted(positions), "sections out of order"
    assert text.splitlines()[0] == "---"

    from huggingface_hub import ModelCard

    data = ModelCard(text).data
    assert data.library_name == "transformers"
    assert set(CARD_TAGS) <= set(data.tags)
    assert data.license == "apache-2.0"
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.pipeline_tag == "other"
    assert not data.to_dict().get("datasets")  # "Scientific" is no Hub dataset id
    assert "# store-scientific-cpu\n" in text

    evaluation = _section(text, "Evaluation")
    assert (
        "| system | Recall@5 | Recall@10 | Recall@20 | NDCG@5 | NDCG@10 | NDCG@20 |" in evaluation
    )
    assert _table_row(evaluation, "STORE") == [
        "0.0312",
        "0.0500",
        "0.0812",
        "0.0200",
        "0.0312",
        "0.0400",
    ]
    assert _table_row(evaluation, "MostPopular")[0] == "0.0101"
    assert "500 of 8317 users" in evaluation

    data_section = _section(text, "Training data")
    assert "**Scientific**" in data_section
    assert _table_row(data_section, "count") == ["4,344", "8,317", "58,492"]

    codebook = _section(text, "Codebook statistics")
    assert _table_row(codebook, "codes per position (k)") == ["256"]
    assert _table_row(codebook, "code positions per item (v)") == ["4"]
    assert "35.70%" in codebook and "0.00%" in codebook
    assert _table_row(codebook, "utilisation") == ["98.4%", "100.0%", "97.7%", "50.0%"]

    settings = _section(text, "Training settings")
    assert "Preset: `cpu`" in settings
    block = settings.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == CONTEXT["settings"]

    citation = _section(text, "Citation")
    assert "arXiv:2409.07276" in citation
    assert (
        "STORE: Streamlining Semantic Tokenization and Generative Recommendation with A Single LLM"
        in citation
    )
    snippet = extract_usage_snippet(text)
    assert 'repo_id = "store-org/store-scientific-cpu"' in snippet
    assert 'history = ["B00004Z5QG", "B0000AXTUY"]' in snippet
    assert "trust_remote_code=True" in snippet and "trie_processor()" in snippet
    assert "AutoModel.from_pretrained(repo_id" in snippet
    assert 'pipeline("store-recommendation", model=repo_id' in snippet


def test_model_index_holds_the_models_own_metrics():
    from huggingface_hub import ModelCard

    text = render_model_card(CONTEXT)
    data = ModelCard(text).data
    assert data.model_name == "store-scientific-cpu"
    results = {r.metric_type: r for r in data.eval_results}
    assert sorted(results) == sorted(key for _, key in METRIC_COLUMNS)  # recall@1: no column
    assert results["recall@10"].metric_value == 0.05 and results["ndcg@20"].metric_value == 0.04
    assert results["recall@20"].metric_value == pytest.approx(0.08123456)
    assert results["ndcg@10"].metric_name == "NDCG@10"
    for r in results.values():  # the STORE row only: the baselines stay in the text
        assert (r.task_type, r.dataset_name, r.dataset_type, r.dataset_split) == (
            "recommendation",
            "Scientific",
            "Scientific",
            "test",
        )
    # the YAML as the Hub reads it, and the protocol in the text
    meta = yaml.safe_load(text.split("---")[1])
    (entry,) = meta["model-index"]
    assert entry["results"][0]["dataset"]["split"] == "test"
    assert "500 of 8317 users" in _section(text, "Evaluation")
    assert "`model-index`" in _section(text, "Evaluation")


def test_model_index_names_a_hub_dataset_and_another_system():
    from huggingface_hub import ModelCard

    context = {
        **CONTEXT,
        "datasets": ["org/amazon-scientific"],
        "model_system": "MostPopular",
        "pipeline_tag": "text-generation",
    }
    data = ModelCard(render_model_card(context)).data
    assert data.pipeline_tag == "text-generation"
    assert {r.dataset_type for r in data.eval_results} == {"org/amazon-scientific"}
    assert {r.metric_type: r.metric_value for r in data.eval_results}["recall@5"] == 0.0101
    # no row of the model: no model-index (and no claim about it in the text)
    text = render_model_card(
        {**CONTEXT, "metrics": {"MostPopular": CONTEXT["metrics"]["MostPopular"]}}
    )
    assert ModelCard(text).data.eval_results is None and "model-index" not in text


def test_card_title_matches_the_paper():
    paper = Path("/work/shared/paper/STORE-paper.txt")
    if not paper.is_file():
        pytest.skip("paper text not available")
    title = paper.read_text().splitlines()[0].strip()
    assert f"title   = {{{title}}}" in TEMPLATE_PATH.read_text()


def test_minimal_context_renders_a_valid_card():
    from huggingface_hub import ModelCard

    text = render_model_card({})
    assert "${" not in text
    assert "# STORE generative recommender" in text
    data = ModelCard(text).data.to_dict()
    assert data["library_name"] == "transformers" and "license" not in data
    assert "base_model" not in data and "model-index" not in data
    for title in ("Codebook statistics", "Evaluation"):
        assert "_Not recorded._" in _section(text, title)
    snippet = extract_usage_snippet(text)
    assert 'repo_id = "path/to/model-folder"' in snippet
    assert "history = model.config.item_ids[:3]" in snippet
    compile(snippet, "usage", "exec")


@pytest.mark.parametrize(
    ("base_model", "expected"),
    [
        ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),  # the offline GGUF's source
        ("facebook/opt-350m", "facebook/opt-350m"),
        ("tiny-opt", None),  # a random test model, not on the Hub
        ("/models/my-llm", None),
    ],
)
def test_base_model_metadata_only_for_hub_ids(base_model, expected):
    from huggingface_hub import ModelCard

    text = render_model_card({"base_model": base_model})
    assert ModelCard(text).data.to_dict().get("base_model") == expected
    assert f"`{base_model}`" in text  # the body names what was used


def test_hub_dataset_ids_reach_the_metadata():
    from huggingface_hub import ModelCard

    text = render_model_card({"dataset_name": "McAuley-Lab/Amazon-Reviews-2023"})
    assert ModelCard(text).data.datasets == ["McAuley-Lab/Amazon-Reviews-2023"]
    text = render_model_card({"dataset_name": "Scientific", "datasets": ["org/scientific"]})
    assert ModelCard(text).data.datasets == ["org/scientific"]


def test_missing_metric_values_render_as_dashes():
    text = render_model_card({"metrics": {"SASRec": {"Recall@5": 0.1, "NDCG@10": None}}})
    assert _table_row(text, "SASRec") == ["0.1000", "–", "–", "–", "–", "–"]


def test_settings_with_numpy_values_and_paths_render_as_yaml():
    import numpy as np

    settings = {"lr": np.float32(0.5), "dims": np.arange(3), "out": Path("/runs/x")}
    text = _section(render_model_card({"settings": settings}), "Training settings")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(block) == {"lr": 0.5, "dims": [0, 1, 2], "out": "/runs/x"}


def test_write_model_card_replaces_readme_atomically(tmp_path):
    (tmp_path / "README.md").write_text("old card")
    path = write_model_card(tmp_path, CONTEXT)
    assert path == tmp_path / "README.md"
    assert path.read_text() == render_model_card(CONTEXT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]  # no temp file left
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        write_model_card(tmp_path / "missing", CONTEXT)


def test_extract_usage_snippet_swaps_the_repo_id(tmp_path):
    text = render_model_card(CONTEXT)
    folder = tmp_path / "my model"
    snippet = extract_usage_snippet(text, repo_id=folder)
    assert f"repo_id = {json.dumps(str(folder))}" in snippet
    assert "store-org/store-scientific-cpu" not in snippet
    compile(snippet, "usage", "exec")
    with pytest.raises(ValueError, match="Usage"):
        extract_usage_snippet("# a card\n\n## Intended use\n\ntext\n")
    with pytest.raises(ValueError, match="python"):
        extract_usage_snippet("## Usage\n\n```bash\nls\n```\n")


# --------------------------------------------------------------------------- push_to_hub
class LocalHub:
    """Stands in for ``huggingface_hub.HfApi``: repositories are folders under ``root``."""

    def __init__(self, root: Path, user: str = "me") -> None:
        self.root, self.user = root, user
        self.calls: list[tuple[str, dict]] = []

    def create_repo(
        self, repo_id, *, token=None, private=None, repo_type=None, exist_ok=False, **options
    ):
        call = {"repo_id": repo_id, "token": token, "private": private, "repo_type": repo_type}
        self.calls.append(("create_repo", {**call, **options}))
        full = repo_id if "/" in repo_id else f"{self.user}/{repo_id}"
        (self.root / full).mkdir(parents=True, exist_ok=exist_ok)
        from huggingface_hub import RepoUrl

        return RepoUrl(f"https://huggingface.co/{full}")

    def upload_folder(
        self,
        *,
        repo_id,
        folder_path,
        repo_type=None,
        token=None,
        commit_message=None,
        ignore_patterns=None,
    ):
        from huggingface_hub.utils import filter_repo_objects

        self.calls.append(
            (
                "upload_folder",
                {"repo_id": repo_id, "token": token, "commit_message": commit_message},
            )
        )
        src = Path(folder_path)
        files = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()]
        for rel in filter_repo_objects(files, ignore_patterns=ignore_patterns):
            dest = self.root / repo_id / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes((src / rel).read_bytes())
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")


def _fake_model_folder(folder: Path, with_sibling: bool = True) -> Path:
    """A folder with what check_model_folder looks for (not a loadable model)."""
    folder.mkdir(parents=True)
    config = {"model_type": "store", "auto_map": {"AutoModelForCausalLM": "modeling_x.Model"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    (folder / "modeling_x.py").write_text("from .helpers import f\n")
    if with_sibling:
        (folder / "helpers.py").write_text("def f():\n    return 1\n")
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_push_uploads_the_folder(tmp_path):
    folder = _fake_model_folder(tmp_path / "model")
    write_model_card(folder, CONTEXT)
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "modeling_x.cpython-311.pyc").write_bytes(b"x")
    (folder / ".README.md.tmp").write_text("half a card")
    hub = LocalHub(tmp_path / "hub")

    url = push_to_hub(folder, "org/store-sci", token="hf_test", private=True, api=hub)
    assert url == "https://huggingface.co/org/store-sci/commit/0123abc"
    assert hub.calls[0] == (
        "create_repo",
        {"repo_id": "org/store-sci", "token": "hf_test", "private": True, "repo_type": "model"},
    )
    assert hub.calls[1][0] == "upload_folder"
    assert hub.calls[1][1]["repo_id"] == "org/store-sci" and hub.calls[1][1]["token"] == "hf_test"
    uploaded = sorted(p.name for p in (tmp_path / "hub" / "org" / "store-sci").rglob("*"))
    assert uploaded == sorted(
        ["README.md", "config.json", "helpers.py", "model.safetensors", "modeling_x.py"]
        + ["tokenizer.json"]
    )
    card = (tmp_path / "hub" / "org" / "store-sci" / "README.md").read_text()
    assert card == render_model_card(CONTEXT)


def test_push_to_own_namespace_uses_the_id_the_hub_returns(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_from_login")
    folder = _fake_model_folder(tmp_path / "model")
    hub = LocalHub(tmp_path / "hub", user="alice")
    url = push_to_hub(folder, "store-sci", api=hub)
    assert url.startswith("https://huggingface.co/alice/store-sci/")
    assert hub.calls[0][1] == {
        "repo_id": "store-sci",
        "token": "hf_from_login",
        "private": False,
        "repo_type": "model",
    }
    assert hub.calls[1][1]["repo_id"] == "alice/store-sci"
    assert (tmp_path / "hub" / "alice" / "store-sci" / "model.safetensors").is_file()


def test_push_without_token_explains_how_to_log_in(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    folder = _fake_model_folder(tmp_path / "model")
    hub = LocalHub(tmp_path / "hub")
    with pytest.raises(RuntimeError, match="hf auth login") as err:
        push_to_hub(folder, "org/store-sci", api=hub)
    assert "HF_TOKEN" in str(err.value)
    assert hub.calls == []  # nothing was created


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "no such folder"),
        ("empty", "no config.json"),
        ("no_weights", "no weights"),
        ("missing_shard", "missing shards"),
        ("missing_code", "helpers.py"),
    ],
)
def test_push_refuses_what_is_not_a_model_folder(tmp_path, breakage, message):
    folder = tmp_path / "model"
    if breakage == "empty":
        folder.mkdir()
    elif breakage == "no_weights":
        _fake_model_folder(folder)
        (folder / "model.safetensors").unlink()
    elif breakage == "missing_shard":
        _fake_model_folder(folder)
        (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
        shards = {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": shards}))
    elif breakage == "missing_code":
        _fake_model_folder(folder, with_sibling=False)
    hub = LocalHub(tmp_path / "hub")
    with pytest.raises(FileNotFoundError, match=message):
        push_to_hub(folder, "org/store-sci", token="hf_test", api=hub)
    assert hub.calls == []


def test_check_model_folder_wants_the_code_of_custom_pipelines(tmp_path):
    folder = _fake_model_folder(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    config["custom_pipelines"] = {"store-recommendation": {"impl": "pipeline_x.P", "pt": []}}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="pipeline_x.py"):
        check_model_folder(folder)
    (folder / "pipeline_x.py").write_text("from .helpers import f\n")
    assert check_model_folder(folder) == folder


def test_check_model_folder_accepts_sharded_weights(tmp_path):
    folder = _fake_model_folder(tmp_path / "model")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    index = {"weight_map": {"w": "model-00001-of-00001.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert check_model_folder(folder) == folder


# --------------------------------------------------------------------------- the usage snippet runs
@pytest.fixture(scope="module")
def recommender_folder(tiny_recommender_folder, tmp_path_factory) -> Path:
    """A copy of the shared saved recommender of 40 items (the tests write its card)."""
    import shutil

    return Path(shutil.copytree(tiny_recommender_folder, tmp_path_factory.mktemp("rec") / "model"))


RUN_SNIPPET = """
import json, sys
sys.modules["store_hf"] = None  # the package cannot be imported: the remote-code path
namespace = {"__name__": "card_usage"}
with open(sys.argv[1]) as f:
    exec(compile(f.read(), "README.md usage", "exec"), namespace)
model = namespace["model"]
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
assert type(model).__name__ == "StoreForGenerativeRec", type(model)  # loaded with AutoModel
generated = [model.config.item_ids[row] for row in namespace["rows"].tolist()]
with open(sys.argv[2], "w") as f:
    json.dump(
        {
            "recommend": namespace["out"].item_ids[0],
            "generate": generated,
            "pipeline": namespace["top"],
            "recommend_5": model.recommend([namespace["history"]], k=5).item_ids[0],
        },
        f,
    )
"""


def test_usage_snippet_runs_against_a_saved_folder(recommender_folder, tmp_path):
    history = ["i3", "i17", "i30"]
    write_model_card(recommender_folder, {**CONTEXT, "example_history": history})
    check_model_folder(recommender_folder)
    card = (recommender_folder / "README.md").read_text()
    (tmp_path / "usage.py").write_text(extract_usage_snippet(card, repo_id=recommender_folder))
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", RUN_SNIPPET, str(tmp_path / "usage.py"), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    catalogue = {f"i{j}" for j in range(40)}
    for key in ("recommend", "generate"):
        assert len(out[key]) == 10 and len(set(out[key])) == 10, out
        assert set(out[key]) <= catalogue, out
    # recommend() and generate() run the same trie-constrained beam search
    assert set(out["recommend"]) == set(out["generate"]), out
    assert str(out["recommend"]) in proc.stdout  # the snippet prints the ids
    # the pipeline's top 5 are recommend's (item ids and scores, best first)
    assert [r["item_id"] for r in out["pipeline"]] == out["recommend_5"]
    assert all(set(r) == {"item_id", "score"} for r in out["pipeline"])  # no titles saved


def test_the_package_loads_a_saved_tokenizer_without_asking_to_trust_code(recommender_folder):
    # store_hf imported before transformers (as by the CLI): its Auto classes are not registered
    # by the import, yet the stages load saved STORE folders' tokenizers without a prompt
    code = (
        "import sys; from store_hf.backbones import load_tokenizer; "
        f"t = load_tokenizer({str(recommender_folder)!r}); print(type(t).__name__, len(t))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr  # the prompt is input()'s, on stdout
    assert "custom code" not in said and "trust_remote_code" not in said, said
    assert "Tokenizer" in proc.stdout


# --------------------------------------------------------------------------- Accelerate configs
def test_accelerate_configs_exist():
    names = {p.name for p in ACCELERATE_CONFIGS}
    assert {"ddp_multi_gpu.yaml", "fsdp.yaml", "deepspeed_zero2.yaml", "cpu_2proc.yaml"} <= names


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=lambda p: p.name)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    config = load_config_from_file(str(path))  # rejects unknown top-level keys
    assert isinstance(config, ClusterConfig)
    expected = {
        "ddp_multi_gpu.yaml": (DistributedType.MULTI_GPU, 8),
        "fsdp.yaml": (DistributedType.FSDP, 8),
        "deepspeed_zero2.yaml": (DistributedType.DEEPSPEED, 8),
        "cpu_2proc.yaml": (DistributedType.MULTI_GPU, 2),  # torchrun launcher, see the file
    }[path.name]
    assert (config.distributed_type, config.num_processes) == expected
    if path.name == "fsdp.yaml":
        fsdp = config.fsdp_config
        assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
        assert fsdp["fsdp_use_orig_params"] is True  # LoRA: frozen and trainable params mixed
    if path.name == "deepspeed_zero2.yaml":
        assert config.deepspeed_config["zero_stage"] == 2
        # left to the Trainer ("auto"): explicit values would have to match its arguments
        assert "gradient_accumulation_steps" not in config.deepspeed_config


PROBE = """
import torch, torch.distributed as dist
from transformers import TrainingArguments
args = TrainingArguments(output_dir="out", report_to="none")
value = torch.tensor([float(args.process_index + 1)])
dist.all_reduce(value)
print(f"rank={args.process_index} world={args.world_size} mode={args.parallel_mode.value} "
      f"backend={dist.get_backend()} sum={value.item():.0f}", flush=True)
"""


def test_cpu_2proc_config_runs_two_synchronised_processes(tmp_path):
    """The documented CPU launch gives the Trainer two gloo processes (about 15 s)."""
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.is_file():
        pytest.skip("the accelerate launcher is not installed next to this Python")
    (tmp_path / "probe.py").write_text(PROBE)
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    command = [
        str(accelerate),
        "launch",
        "--config_file",
        str(ROOT / "examples" / "accelerate" / "cpu_2proc.yaml"),
        "probe.py",
    ]
    expected = [f"rank={r} world=2 mode=distributed backend=gloo sum=3" for r in range(2)]
    failures = []
    # one retry: the launcher picks a free port and then binds it, so another job on a shared
    # machine can take the port in between; a configuration error fails both attempts
    for _ in range(2):
        proc = subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600
        )
        # the two processes share stdout, so their lines may run together
        pattern = r"rank=\d world=\d mode=\w+ backend=\w+ sum=\d"
        lines = sorted(re.findall(pattern, proc.stdout))
        if proc.returncode == 0 and lines == expected:
            return
        failures.append(f"rc={proc.returncode}\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
    pytest.fail("\n----- retry -----\n".join(failures))
