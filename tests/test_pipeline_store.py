"""The "store-recommendation" pipeline: registered, saved with a recommender's code and run from
a folder with the package unimportable (as from the Hub)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
from transformers import pipeline

from store_hf.pipeline_store import TASK, StoreRecommendationPipeline

REMOTE_PIPELINE = """
import json, sys
sys.modules["store_hf"] = None  # the package cannot be imported in this process
from transformers import pipeline
recommender = pipeline("store-recommendation", model=sys.argv[1], trust_remote_code=True)
assert type(recommender).__module__.startswith("transformers_modules"), type(recommender)
model = recommender.model
ref = model.recommend([["i1", "i2"]], k=5)
with open(sys.argv[2], "w") as f:
    json.dump(
        {
            "one": recommender(["i1", "i2"], top_k=5),
            "batch": recommender([["i1", "i2"], ["i9"], ["i3", "i4", "i5"]], top_k=4),
            "titled": recommender(["i9"], top_k=3, item_titles={"i0": "zero", "i1": "one"}),
            "recommend": model.recommend([["i1", "i2"], ["i9"], ["i3", "i4", "i5"]], k=4).item_ids,
            "one_ref": [ref.item_ids, ref.scores.tolist()],
        },
        f,
    )
"""


@pytest.fixture(scope="module")
def titled_folder(tmp_path_factory, tiny_recommender):
    """The shared tiny recommender saved with a title per item (``config.item_titles``)."""
    folder = tmp_path_factory.mktemp("titled") / "model"
    tiny_recommender.config.item_titles = [
        f"title of {i}" for i in tiny_recommender.config.item_ids
    ]
    try:
        tiny_recommender.save_pretrained(folder)
    finally:
        tiny_recommender.config.item_titles = None
    return folder


def test_the_pipeline_runs_from_a_folder_without_the_package(titled_folder, tmp_path):
    config = json.loads((titled_folder / "config.json").read_text())
    assert config["custom_pipelines"][TASK]["impl"] == "pipeline_store.StoreRecommendationPipeline"
    assert (titled_folder / "pipeline_store.py").is_file()
    proc = subprocess.run(
        [sys.executable, "-c", REMOTE_PIPELINE, str(titled_folder), str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    # one history: one list of items, best first, with the model's titles and recommend's scores
    ids, scores = out["one_ref"]
    assert [r["item_id"] for r in out["one"]] == ids[0] and len(set(ids[0])) == 5
    assert [r["score"] for r in out["one"]] == pytest.approx(scores[0])
    assert [r["title"] for r in out["one"]] == [f"title of {i}" for i in ids[0]]
    # a batch: one list per history, the items of one model.recommend call
    assert [[r["item_id"] for r in rows] for rows in out["batch"]] == out["recommend"]
    # titles given to the call replace the model's; items without one get no title
    titled = {r["item_id"]: r.get("title") for r in out["titled"]}
    assert all(titled[i] == {"i0": "zero", "i1": "one"}.get(i) for i in titled)


def test_the_pipeline_over_a_model_in_memory(tiny_recommender):
    rec = tiny_recommender
    ref = rec.recommend([["i3", "i17"], ["i30"]], k=6)
    direct = StoreRecommendationPipeline(model=rec, device=rec.device)
    registered = pipeline(TASK, model=rec, device=rec.device)  # the registered class
    assert type(registered) is StoreRecommendationPipeline
    for recommender in (direct, registered):
        rows = recommender(["i3", "i17"], top_k=6)
        assert [r["item_id"] for r in rows] == ref.item_ids[0]
        assert [r["score"] for r in rows] == pytest.approx(ref.scores[0].tolist())
        assert all("title" not in r for r in rows)  # the tiny model carries no titles
        batch = recommender([["i3", "i17"], ["i30"]], top_k=6, batch_size=1)
        assert [[r["item_id"] for r in rows] for rows in batch] == ref.item_ids


def test_fewer_items_than_top_k_and_bad_input(tiny_recommender):
    recommender = StoreRecommendationPipeline(model=tiny_recommender, device="cpu")
    rows = recommender(["i1"], top_k=60, num_beams=60)  # 40 items in the catalogue
    assert len(rows) == 40 and all(math.isfinite(r["score"]) for r in rows)
    with pytest.raises(KeyError, match="'nope'"):
        recommender(["i1", "nope"])
    with pytest.raises(ValueError, match="at least one item"):
        recommender([["i1"], []])
