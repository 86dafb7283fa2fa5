"""The browser page (`store-hf app`): its backend, its Space layout, and the page itself driven by
headless Chromium as a person would use it.

The browser test needs Debian's `chromium` (`make test` installs it) and Playwright (the `dev`
extra); it fails, not skips, where they are missing, so CI cannot pass without running it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser import Server, chromium, pick, pick_test_user, shown_items
from test_hub import LocalHub

from store_hf.app import read_app_data
from store_hf.cli import main
from store_hf.modeling_store import StoreForGenerativeRec
from store_hf.space import load_app, write_space

#: where the page's screenshots are kept (a CI artifact)
ARTIFACTS = Path(
    os.environ.get("STORE_HF_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")
)


@pytest.fixture(scope="module")
def run_dir(shared_tiny_run):
    return shared_tiny_run.out


@pytest.fixture(scope="module")
def app(run_dir):
    return load_app(run_dir)


@pytest.fixture(scope="module")
def model(run_dir):
    return StoreForGenerativeRec.from_pretrained(run_dir / "recommender" / "model").eval()


# --------------------------------------------------------------------------- the backend
def test_run_folder_gives_titles_test_users_and_the_report(app, run_dir, embedded):
    titles = dict(zip(embedded.items["item_id"], embedded.items["title"]))
    assert len(app.data.titles) == len(app.item_ids)
    assert all(app.data.titles[i] == titles[i] for i in app.item_ids[:50])
    evaluated = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    assert len(app.data.test_users) == evaluated["systems"]["STORE"]["num_users"]
    assert "| STORE |" in app.data.metrics_markdown
    assert {Path(p).name for p in app.data.plots} >= {"recall_at_k.png"}


def test_recommendations_are_the_models(app, model):
    user = app.data.test_users[0]
    rows = app.recommend(user["history"], k=7)
    expected = model.recommend([user["history"]], k=7)
    assert [r["item_id"] for r in rows] == expected.item_ids[0]
    assert [r["score"] for r in rows] == pytest.approx(expected.scores[0].tolist())
    codes = model.item_codes[model.item_rows([rows[0]["item_id"]])][0].tolist()
    assert rows[0]["semantic_id"] == "-".join(map(str, codes))
    assert rows[0]["title"] == app.data.titles[rows[0]["item_id"]]


def test_score_is_the_models_yes_probability(app, model):
    history = app.data.test_users[1]["history"]
    candidate = app.item_ids[5]
    expected = float(model.score([history], [candidate])[0])
    assert app.score(history, candidate) == pytest.approx(expected)
    assert 0.0 < expected < 1.0


def test_code_tree_lists_the_items_that_share_each_prefix(app, model):
    item = app.item_ids[3]
    codes = model.item_codes.cpu()
    row = app.item_ids.index(item)
    levels = app.neighbours(item)
    assert len(levels) == codes.shape[1]
    for depth, level in enumerate(levels, 1):
        sharing = (codes[:, :depth] == codes[row, :depth]).all(1)
        assert level["count"] == int(sharing.sum())
        assert level["prefix"] == "-".join(map(str, codes[row, :depth].tolist()))
        for other, _ in level["items"]:
            assert other != item and bool(sharing[app.item_ids.index(other)])
    assert levels[0]["count"] >= levels[-1]["count"] >= 1


def test_history_input_errors_name_the_problem(app):
    with pytest.raises(ValueError, match="history is empty"):
        app.history([], "  ,  ")
    with pytest.raises(ValueError, match="'nope'.*'B00X'"):
        app.history([app.item_ids[0]], "nope, B00X")
    assert (
        app.history([app.item_ids[0]], f"{app.item_ids[1]}\n{app.item_ids[2]}") == app.item_ids[:3]
    )
    with pytest.raises(ValueError, match="Pick a candidate"):
        app.score(app.item_ids[:2], None)


def test_held_out_item_only_for_the_users_own_history(app):
    user = app.data.test_users[0]
    assert app.held_out(user["user_id"], user["history"]) == user["target"]
    assert app.held_out(user["user_id"], user["history"][:-1]) is None
    assert app.held_out(None, user["history"]) is None


def test_the_page_ranks_with_the_models_pipeline_or_without_it(tiny_recommender):
    from store_hf.app import RecommenderApp
    from store_hf.pipeline_store import StoreRecommendationPipeline

    rec = tiny_recommender
    app = RecommenderApp(rec)
    assert isinstance(app.recommender, StoreRecommendationPipeline)
    rows = app.recommend(["i3", "i17"], k=5)
    # a model whose code has no pipeline beside it (a folder saved before it): recommend()
    old = RecommenderApp(rec)
    old.recommender = None
    assert old.recommend(["i3", "i17"], k=5) == rows
    expected = rec.recommend([["i3", "i17"]], k=5)
    assert [r["item_id"] for r in rows] == expected.item_ids[0]
    assert [r["score"] for r in rows] == pytest.approx(expected.scores[0].tolist())
    # titles the model carries, where the page has none of its own
    rec.config.item_titles = [f"title {i}" for i in rec.config.item_ids]
    try:
        titled = RecommenderApp(rec)
    finally:
        rec.config.item_titles = None
    assert [r["title"] for r in titled.recommend(["i3", "i17"], k=5)] == [
        f"title {r['item_id']}" for r in rows
    ]


def test_malformed_app_data_names_file_and_line(tmp_path):
    (tmp_path / "items.jsonl").write_text('{"item_id": "a", "title": "A"}\n{"title": "no id"}\n')
    with pytest.raises(ValueError, match=r"items.jsonl:2: not a valid row"):
        read_app_data(tmp_path)


# --------------------------------------------------------------------------- the Space
SPACE_CHECK = """
import json, sys
sys.modules["store_hf"] = None  # a Space has no store_hf: app.py and the model's own code only
sys.path.insert(0, sys.argv[1])
import app
page_app = app.RecommenderApp(
    app.load_remote_model(sys.argv[1] + "/model"), app.read_app_data(sys.argv[1])
)
assert type(page_app.model).__module__.startswith("transformers_modules"), type(page_app.model)
app.build_page(page_app)  # the page builds
user = page_app.data.test_users[0]
rows = page_app.recommend(user["history"], k=5)
print(json.dumps({"items": [r["item_id"] for r in rows], "title": rows[0]["title"]}))
"""


def test_space_layout_runs_without_the_package(run_dir, model, tmp_path):
    space = write_space(run_dir, tmp_path / "space")
    names = {p.name for p in space.iterdir()}
    assert {"app.py", "requirements.txt", "README.md", "space.json", "items.jsonl"} <= names
    assert {"test_users.jsonl", "metrics.md", "recall_at_k.png", "model"} <= names
    assert "sdk: gradio" in (space / "README.md").read_text()
    assert "gradio" in (space / "requirements.txt").read_text()
    assert not (tmp_path / "space.partial").exists()
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", SPACE_CHECK, str(space)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    user = read_app_data(space).test_users[0]
    assert out["items"] == model.recommend([user["history"]], k=5).item_ids[0]
    assert out["title"] == read_app_data(space).titles[out["items"][0]]


def test_push_uploads_the_model_and_a_space_that_loads_it(run_dir, tmp_path, monkeypatch):
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr("huggingface_hub.HfApi", lambda *a, **k: hub)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    argv = ["push", str(run_dir), "--repo-id", "me/store-tiny", "--space", "me/store-tiny-demo"]
    assert main(argv) == 0
    space = tmp_path / "hub" / "me" / "store-tiny-demo"
    assert json.loads((space / "space.json").read_text())["model"] == "me/store-tiny"
    assert not (space / "model").exists()  # the Space loads the pushed model
    card = (tmp_path / "hub" / "me" / "store-tiny" / "README.md").read_text()
    assert "https://huggingface.co/spaces/me/store-tiny-demo" in card
    kinds = [(c[1]["repo_id"], c[1].get("repo_type")) for c in hub.calls if c[0] == "create_repo"]
    assert kinds == [("me/store-tiny", "model"), ("me/store-tiny-demo", "space")]


# --------------------------------------------------------------------------- in the browser
@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


def test_the_page_as_a_person_uses_it(run_dir, app, model, browser, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    history = [app.item_ids[10], app.item_ids[20]]
    with Server(run_dir, tmp_path / "server.log") as server:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server.url, wait_until="networkidle")

        # empty history: a message, no table, the page still answers afterwards
        page.locator("#recommend").click()
        page.locator("#message").filter(has_text="history is empty").wait_for()
        assert shown_items(page) == []

        # search by title as you type, pick two items, recommend
        for item in history:
            title = app.data.titles[item]
            pick(page, "history", title[:12], f"{title} [{item}]")
        page.locator("#recommend").click()
        page.locator("#message").filter(has_text="after 2 history items").wait_for()
        assert shown_items(page) == model.recommend([history], k=10).item_ids[0]
        page.locator("#code-tree li").first.wait_for()  # the first item's code tree
        prefix = page.locator("#code-tree li").first.get_attribute("data-prefix")
        assert prefix == app.semantic_id(shown_items(page)[0]).split("-")[0]
        page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)

        # the scoring mode, on the same history
        page.get_by_role("tab", name="Score a candidate").click()
        candidate = app.item_ids[30]
        title = app.data.titles[candidate]
        pick(page, "candidate", title[:12], f"{title} [{candidate}]")
        page.locator("#score-button").click()
        page.locator("#score").filter(has_text="P(yes)").wait_for()
        expected = float(model.score([history], [candidate])[0])
        assert f"{expected:.4f}" in page.locator("#score").inner_text()

        # an unknown pasted id: named on the page
        page.get_by_role("tab", name="Recommendations").click()
        page.locator("#pasted textarea, #pasted input").first.fill("not-an-item")
        page.locator("#recommend").click()
        page.locator("#message").filter(has_text="'not-an-item'").wait_for()
        page.locator("#pasted textarea, #pasted input").first.fill("")

        # a test user's history, with the held-out item flagged where it was found
        user = app.data.test_users[0]
        pick_test_user(page, user, app.data.titles)
        page.locator("#recommend").click()
        page.locator("#message").filter(has_text="held-out next item").wait_for()
        expected_items = model.recommend([user["history"]], k=10).item_ids[0]
        assert shown_items(page) == expected_items
        flagged = page.locator("#recommendations tr.hit").evaluate_all(
            "rows => rows.map(r => r.dataset.item)"
        )
        assert flagged == ([user["target"]] if user["target"] in expected_items else [])

        # the run's metrics
        page.get_by_role("tab", name="Run metrics").click()
        page.locator("#metrics").filter(has_text="STORE").wait_for()
        page.screenshot(path=str(ARTIFACTS / "app-metrics.png"), full_page=True)


def test_a_folder_that_is_no_model_is_a_message_on_the_page(browser, tmp_path):
    (tmp_path / "empty").mkdir()
    with Server(tmp_path / "empty", tmp_path / "server.log") as server:
        page = browser.new_page()
        page.goto(server.url, wait_until="networkidle")
        page.locator("#message").filter(has_text="not a model folder").wait_for()
        assert server.proc.poll() is None  # the app is alive
