"""`store-hf run` end to end on the tiny preset, with a user's own catalogue in the generic format."""

import csv
import json
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np
import pytest
import torch

from store_hf.cli import main
from store_hf.pipeline import STAGES, Pipeline, PipelineError, RunConfig, native_bf16


@pytest.fixture
def tiny_run(shared_tiny_run):
    """The session's finished tiny run (codebook 32 clusters on 8 PCA dimensions, not the
    defaults 256 and 32) and its `store-hf run` arguments. Read-only: a test that runs a
    command on the folder works on a copy (:func:`_copy_run`)."""
    return shared_tiny_run.out, shared_tiny_run.args


def test_every_stage_finishes_and_the_report_has_the_table(tiny_run, capsys):
    out, _ = tiny_run
    for stage in STAGES:
        assert json.loads((out / stage / "stage.json").read_text())["stage"] == stage
    assert not list(out.glob("*.partial"))
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["systems"]) == {"STORE", "MostPopular"}
    for metrics in summary["systems"].values():
        assert all(0.0 <= metrics[f"recall@{k}"] <= 1.0 for k in (1, 5, 10, 20))
        assert metrics["num_users"] == summary["systems"]["STORE"]["num_users"] > 0
    report = (out / "report.md").read_text()
    assert "| STORE |" in report and "| MostPopular |" in report and "Codebook" in report
    assert "95% interval" in report and "p=" in report  # intervals and the paired test
    for png in ("training_curves.png", "recall_at_k.png", "cluster_sizes.png"):
        assert (out / "report" / png).stat().st_size > 1000
    codebook = json.loads((out / "codebook" / "statistics.json").read_text())
    assert codebook["collision_rate_after"] == 0.0
    # the codebook settings given to `store-hf run` reach the codebook and the recommender
    assert (codebook["codebook_size"], codebook["dim"]) == (32, 8)
    assert all(p["used_clusters"] <= 32 for p in codebook["positions"])
    from store_hf.modeling_store import StoreForGenerativeRec

    rec = StoreForGenerativeRec.from_pretrained(out / "recommender" / "model")
    assert rec.config.codebook_size == 32 and rec.num_codes == 4 * 32
    assert int(rec.item_codes.max()) < 32
    # bf16 encoding exactly where the machine computes it natively (the preset leaves it open)
    assert json.loads((out / "encode" / "stage.json").read_text())["bf16"] == native_bf16()


def test_a_second_run_skips_finished_stages(tiny_run, tmp_path, caplog):
    out, args = _copy_run(tiny_run, tmp_path)
    before = {s: (out / s / "stage.json").stat().st_mtime_ns for s in STAGES}
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert {s: (out / s / "stage.json").stat().st_mtime_ns for s in STAGES} == before
    assert sum("already done" in r.message for r in caplog.records) == len(STAGES)


def test_the_run_prints_the_reports_table_and_note(tiny_run, tmp_path, capsys):
    from store_hf.report import metrics_summary

    out, args = _copy_run(tiny_run, tmp_path)
    summary = json.loads((out / "metrics.json").read_text())
    text = metrics_summary(out / "report" / "metrics.json", hint="redo")
    assert text.startswith("| system |") and text.endswith(summary["note"])
    assert "| STORE |" in text and "| MostPopular |" in text
    capsys.readouterr()
    assert main(args) == 0
    assert text in capsys.readouterr().out  # what `store-hf run` prints; the app shows the same
    broken = tmp_path / "metrics.json"
    broken.write_text(json.dumps({"systems": summary["systems"]}))  # no note
    with pytest.raises(ValueError, match=rf"{broken}.*'note'.*redo"):
        metrics_summary(broken, hint="redo")


def test_one_stage_can_be_redone_alone(tiny_run, tmp_path):
    out, args = _copy_run(tiny_run, tmp_path)
    rec = (out / "recommender" / "stage.json").stat().st_mtime_ns
    old = (out / "evaluate" / "stage.json").stat().st_mtime_ns
    assert main(["evaluate", str(out), "--force"]) == 0
    assert (out / "evaluate" / "stage.json").stat().st_mtime_ns > old
    assert (out / "recommender" / "stage.json").stat().st_mtime_ns == rec
    # the report was made from the old evaluation: removed, and made again by the next run
    assert not (out / "report").exists() and not (out / "report.md").exists()
    assert main(args) == 0
    assert (out / "report" / "stage.json").is_file() and (out / "report.md").is_file()


def test_a_recommender_ablation_reuses_the_earlier_stages(tiny_run, tmp_path, caplog):
    out, args = tiny_run
    config = tmp_path / "no_align.yaml"
    config.write_text("recommender:\n  alignment: false\n")
    ablation = tmp_path / "no_align"
    flags = [a for a in args if a not in ("run",)]
    flags[flags.index("--output-dir") + 1] = str(ablation)
    with caplog.at_level("INFO"):
        assert main(["run", str(config), *flags, "--reuse-stages-from", str(out)]) == 0
    taken = [r.message for r in caplog.records if "taken from" in r.message]
    assert len(taken) == 3  # tokenizer, encode, codebook: not trained again
    src, dst = (
        out / "encode" / "embeddings.safetensors",
        ablation / "encode" / "embeddings.safetensors",
    )
    assert dst.read_bytes() == src.read_bytes()
    assert (ablation / "recommender" / "stage.json").is_file()  # trained anew, without alignment
    assert json.loads((ablation / "run_config.json").read_text())["config"]["recommender"] == {
        "alignment": False
    }
    # a run that differs before the recommender cannot borrow them
    other = Pipeline(
        RunConfig.from_dict(
            {
                **json.loads((out / "run_config.json").read_text())["config"],
                "output_dir": str(tmp_path / "seed1"),
                "seed": 1,
            }
        )
    )
    with pytest.raises(PipelineError, match=r"differ in \['seed'\]"):
        other.reuse_stages(out)


@pytest.mark.parametrize("semantic_ids", ["llm-rqvae", "minilm-rqvae"])
def test_rqvae_semantic_ids_without_the_dense_tokenizer(tiny_run, tmp_path, semantic_ids):
    """The ablations: no dense-token training, one embedding per item, RQ-VAE codes (TIGER's
    recipe), then the same recommender, evaluation and report."""
    from safetensors.torch import load_file

    from store_hf.baselines.text_encoder import encode_texts, item_texts
    from store_hf.semantic_ids.rqvae import RQVAE, RQVAEConfig

    out, args = tiny_run
    flags = [a for a in args if a != "run"]
    ablation = tmp_path / semantic_ids
    flags[flags.index("--output-dir") + 1] = str(ablation)
    assert main(["run", *flags, "--semantic-ids", semantic_ids]) == 0
    assert json.loads((ablation / "tokenizer" / "stage.json").read_text())["trained"] is False
    embeddings = load_file(str(ablation / "encode" / "embeddings.safetensors"))["embeddings"]
    item_ids = json.loads((ablation / "encode" / "item_ids.json").read_text())
    stats = json.loads((ablation / "codebook" / "statistics.json").read_text())
    assert stats["method"] == "rqvae" and stats["collision_rate_after"] == 0.0
    pipeline = Pipeline(
        RunConfig.from_dict(json.loads((ablation / "run_config.json").read_text())["config"])
    )
    ids, codes, k = pipeline.item_codes()
    assert ids == item_ids and codes.shape == (len(ids), 4) and codes.max() < k
    assert len({tuple(c) for c in codes.tolist()}) == len(ids)  # every item its own sequence
    if semantic_ids == "minilm-rqvae":  # TIGER's codes: what examples/train_tiger.py computes
        texts = item_texts(pipeline.dataset.items)
        assert embeddings.shape == (len(texts), 384)
        vectors = embeddings.numpy()
        expected = RQVAE(vectors.shape[1], RQVAEConfig(seed=0, codebook_size=k)).fit(vectors)
        assert (codes == expected).all()
        # the embeddings are MiniLM's of each item's text (a sample: encoding is most of the cost)
        np.testing.assert_allclose(vectors[:16], encode_texts(texts[:16]), atol=1e-5)
    rec = pipeline.load_recommender()
    if semantic_ids == "llm-rqvae":  # one mean-pooled state of the backbone per item
        assert embeddings.shape == (len(ids), rec.config.text_config.hidden_size)
    assert rec.item_codes.tolist() == codes.tolist()
    assert not (ablation / "recommender" / "model" / "codebook").exists()
    metrics = json.loads((ablation / "metrics.json").read_text())["systems"]["STORE"]
    assert metrics["num_users"] > 0
    report = (ablation / "report.md").read_text()
    assert f"semantic IDs `{semantic_ids}`" in report and "RQ-VAE" in report
    # a different code source is a different run: its stages are not shared with STORE's
    with pytest.raises(PipelineError, match=r"semantic_ids"):
        pipeline.reuse_stages(out)


def test_a_failed_stage_leaves_no_finished_folder(tiny_run, tmp_path, monkeypatch):
    out, _ = _copy_run(tiny_run, tmp_path)
    config = json.loads((out / "run_config.json").read_text())["config"]
    pipeline = Pipeline(RunConfig.from_dict({**config, "output_dir": str(out)}), force=True)

    def boom(folder):
        (folder / "half-written.json").write_text("{")
        raise KeyboardInterrupt  # killed mid-stage

    monkeypatch.setattr(pipeline, "_report", boom)
    with pytest.raises(KeyboardInterrupt):
        pipeline.report()
    assert (out / "report").is_dir()  # the old finished stage is untouched...
    assert not (out / "report" / "half-written.json").exists()
    assert (out / "report.partial" / "half-written.json").exists()  # ...the attempt is aside


def test_model_folder_recommends_without_the_package(tiny_run, tmp_path):
    out, _ = tiny_run
    folder = out / "recommender" / "model"
    test = json.loads((out / "evaluate" / "stage.json").read_text())
    assert test["metrics"]["STORE"]["num_users"] > 0
    assert main(["recommend", str(out), "--history", *_history(folder), "-k", "5"]) == 0
    code = (
        "import sys, json\n"
        "sys.modules['store_hf'] = None\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(folder)!r}, trust_remote_code=True)\n"
        f"print(json.dumps(m.recommend([{_history(folder)!r}], k=5).item_ids[0]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from store_hf.modeling_store import StoreForGenerativeRec

    local = StoreForGenerativeRec.from_pretrained(folder).recommend([_history(folder)], k=5)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == local.item_ids[0]


def _history(folder):
    ids = json.loads((folder / "config.json").read_text())["item_ids"]
    return ids[:3]


def test_bad_input_gets_one_line_errors(tiny_run, tmp_path, capsys):
    out, args = _copy_run(tiny_run, tmp_path)
    snapshot = (out / "run_config.json").read_text()
    cases = [
        (["run", "--preset", "huge", "--output-dir", str(tmp_path / "a")], "huge"),
        (
            [
                "run",
                "--output-dir",
                str(tmp_path / "b"),
                "--dataset-format",
                "generic",
                "--items",
                str(tmp_path / "missing.jsonl"),
                "--interactions",
                str(tmp_path / "x.csv"),
            ],
            "missing.jsonl",
        ),
        ([*args[:-6], "--seed", "7", *args[-6:]], "another run"),  # a folder from another run
    ]
    bad_yaml = tmp_path / "run.yaml"
    bad_yaml.write_text(f"output_dir: {tmp_path / 'c'}\npreset: tiny\nrecommender:\n  lorra_r: 8\n")
    cases.append((["run", str(bad_yaml)], "lorra_r"))
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert (out / "run_config.json").read_text() == snapshot
    with pytest.raises(PipelineError, match="unknown key"):
        RunConfig.from_dict({"output_dir": "x", "presett": "cpu"})


@pytest.mark.parametrize("name", ["mind-small-subset", "movielens-latest-small"])
def test_run_on_the_shared_datasets(name, tmp_path, capsys):
    from conftest import shared_path

    folder = shared_path(name)
    config = tmp_path / "run.yaml"
    config.write_text(
        f"output_dir: {tmp_path / 'out'}\n"
        "preset: tiny\n"
        f"dataset: {folder}\n"
        "tokenizer:\n  max_items: 32\n"
        "recommender:\n  max_train_users: 6\n  max_eval_users: 8\n  max_test_users: 8\n"
        "  joint_epochs: 0.5\n  num_epochs: 0.5\n"
        # not the alignment task over every item 6 MovieLens users rated (~700)
        "  alignment_max_items: 64\n"
    )
    assert main(["run", str(config)]) == 0
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["systems"]["STORE"]["num_users"] == 8
    assert "| STORE |" in capsys.readouterr().out
    if name.startswith("mind"):  # a click log: the scoring mode is trained and evaluated on it
        scoring = summary["scoring"]
        assert scoring["impressions"] == "held-out logged impressions"
        assert scoring["num_impressions"] > 0 and 0.0 <= scoring["mrr"] <= 1.0


def _amazon_rows(embedded, num_users=120):
    """The first users of the embedded Amazon set: their items and (user, item, time) rows."""
    rows = []
    for user, seq in zip(
        embedded.sequences["user_id"][:num_users], embedded.sequences["item_ids"][:num_users]
    ):
        rows += [(f"U{user}", item, 1_400_000_000 + 86_400 * t) for t, item in enumerate(seq)]
    used = {item for _, item, _ in rows}
    return [r for r in embedded.items if r["item_id"] in used], rows


def _write_raw(layout: str, folder, embedded):
    """Real catalogue rows rewritten in a raw published layout, field for field."""
    from conftest import shared_path
    from test_readers_raw import write_1m, write_100k, write_lines, write_recbole

    if layout in ("ml-100k", "ml-1m", "recbole"):  # real MovieLens rows: the first 30 users
        source = shared_path("movielens-latest-small")
        with open(source / "movies.csv", encoding="utf-8", newline="") as f:
            movies = {r["movieId"]: (r["title"], r["genres"]) for r in csv.DictReader(f)}
        with open(source / "ratings.csv", encoding="utf-8", newline="") as f:
            ratings = [tuple(r.values()) for r in csv.DictReader(f)]  # user, movie, rating, time
        users = list(dict.fromkeys(u for u, *_ in ratings))[:30]
        ratings = [r for r in ratings if r[0] in users]
        movies = {m: movies[m] for m in dict.fromkeys(r[1] for r in ratings)}
        writer = {"ml-100k": write_100k, "ml-1m": write_1m, "recbole": write_recbole}[layout]
        writer(folder, movies, ratings)
        return
    items, rows = _amazon_rows(embedded)
    folder.mkdir(parents=True)
    if layout == "yelp":
        business = [
            {"business_id": r["item_id"], "name": r["title"], "address": "1 Main St",
             "city": "Tempe", "state": "AZ", "postal_code": "85281", "latitude": 33.4,
             "longitude": -111.9, "stars": 4.0, "review_count": 5, "is_open": 1,
             "attributes": None, "categories": r["categories"].replace(",", ", "), "hours": None}
            for r in items
        ]  # fmt: skip
        reviews = [
            {"review_id": f"R{i}", "user_id": u, "business_id": item, "stars": 5.0,
             "useful": 0, "funny": 0, "cool": 0, "text": "Good.",
             "date": datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}
            for i, (u, item, ts) in enumerate(rows)
        ]  # fmt: skip
        write_lines(folder / "yelp_academic_dataset_business.json", map(json.dumps, business))
        write_lines(folder / "yelp_academic_dataset_review.json", map(json.dumps, reviews))
        return
    meta = [
        {"asin": r["item_id"], "title": r["title"], "brand": r["brand"],
         "category": r["categories"].split(","), "description": [r["description"]]}
        for r in items
    ]  # fmt: skip
    reviews = [
        {"reviewerID": u, "asin": item, "overall": 5.0, "unixReviewTime": ts}
        for u, item, ts in rows
    ]
    write_lines(folder / "meta_Industrial_and_Scientific.json.gz", map(json.dumps, meta))
    write_lines(folder / "Industrial_and_Scientific_5.json.gz", map(json.dumps, reviews))


@pytest.mark.parametrize("layout", ["yelp", "amazon-2018", "ml-100k", "ml-1m", "recbole"])
def test_run_on_every_raw_layout(layout, tmp_path, embedded, capsys):
    folder = tmp_path / layout
    _write_raw(layout, folder, embedded)
    out = tmp_path / "out"
    config = tmp_path / "run.yaml"
    config.write_text(
        "preset: tiny\ntokenizer:\n  max_items: 16\n"
        "recommender:\n  max_train_users: 6\n  max_eval_users: 8\n  max_test_users: 8\n"
        "  joint_epochs: 0.5\n  num_epochs: 0.5\n"
        # not the alignment task over every item 6 MovieLens users rated (~700) nor a sampled
        # scoring row per history position (~2,000): the test is about reading the layout
        "  alignment_max_items: 64\n  scoring_negatives: 0\n"
    )
    assert main(["run", str(config), "--output-dir", str(out), "--dataset", str(folder)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["systems"]["STORE"]["num_users"] == 8
    assert "| STORE |" in capsys.readouterr().out
    run = json.loads((out / "run_config.json").read_text())["config"]
    assert run["dataset"] == str(folder)


def test_runs_reproduce_from_their_seed(tiny_run, tmp_path):
    """Two runs with one seed give byte-identical weights and codes and identical metrics and
    per-user ranks, also when the second was stopped between stages and resumed; ``--force``
    with another seed retrains from the start (another LoRA initialisation). Test users are
    drawn with the fixed evaluation seed, so both seeds are ranked on the same users."""
    from transformers import set_seed

    from store_hf.training import build_tokenizer_model

    first, args = tiny_run
    out = args.index("--output-dir") + 1
    again = tmp_path / "again"
    argv = [*args[:out], str(again), *args[out + 1 :]]
    config = json.loads((first / "run_config.json").read_text())["config"]
    # stopped after the encode stage (a new process later runs the rest)
    Pipeline(RunConfig.from_dict({**config, "output_dir": str(again)})).run(until="encode")
    assert not (again / "codebook").exists()
    assert main(argv) == 0

    def files(run, stage):  # every tensor of every safetensors file, as bytes
        from safetensors.numpy import load_file

        return {
            (str(p.relative_to(run / stage)), name): array.tobytes()
            for p in sorted((run / stage).rglob("*.safetensors"))
            for name, array in load_file(str(p)).items()
        }

    def ranks(run):
        return json.loads((run / "evaluate" / "ranks.json").read_text())

    def metrics(run):
        systems = json.loads((run / "metrics.json").read_text())["systems"]
        return {s: {k: v for k, v in m.items() if "second" not in k} for s, m in systems.items()}

    for stage in ("tokenizer", "codebook", "recommender"):
        assert files(first, stage) and files(first, stage) == files(again, stage), stage
    assert metrics(first) == metrics(again) and ranks(first) == ranks(again)
    # --force with another seed on that folder: every stage again, no old checkpoint resumed
    assert main([*argv, "--seed", "1", "--force"]) == 0
    assert files(first, "tokenizer") != files(again, "tokenizer")
    assert files(first, "recommender") != files(again, "recommender")
    assert ranks(first)["user_id"] == ranks(again)["user_id"]  # the same test users
    assert json.loads((again / "run_config.json").read_text())["config"]["seed"] == 1

    def lora_init(seed):
        set_seed(seed)
        model, _ = build_tokenizer_model(
            Pipeline(RunConfig(str(tmp_path / "x"), "tiny")).preset, ["title"]
        )
        return torch.cat([p.flatten() for n, p in model.named_parameters() if "lora_A" in n])

    assert torch.equal(lora_init(0), lora_init(0)) and not torch.equal(lora_init(0), lora_init(1))


def test_a_folder_made_under_other_preset_defaults_is_not_taken_for_this_run(
    tiny_run, tmp_path, capsys
):
    """run_config.json keeps every setting the preset gave the run: when a preset's default
    changes later, the folder is another run (its stages would mix two settings), named by the
    setting; a folder of an older version, without them, is compared by its identity alone."""
    copy, argv = _copy_run(tiny_run, tmp_path)
    run_file = copy / "run_config.json"
    saved = json.loads(run_file.read_text())
    config = RunConfig.from_dict(saved["config"])
    assert saved["settings"] == config.settings() and config.differences(copy) == []
    assert saved["settings"]["recommender.alignment"] is True  # the tiny preset's default
    saved["settings"]["recommender.alignment"] = False  # as if the default were changed since
    run_file.write_text(json.dumps(saved))
    assert config.differences(copy) == ["recommender.alignment"]
    assert main(argv) != 0
    assert "recommender.alignment" in capsys.readouterr().err
    del saved["settings"]  # as an older version wrote it
    run_file.write_text(json.dumps(saved))
    assert config.differences(copy) == []


def _copy_run(tiny_run, tmp_path, name="copy"):
    """A copy of the tiny run's folder and the `store-hf run` arguments that address it."""
    import shutil

    out, args = tiny_run
    copy = tmp_path / name
    shutil.copytree(out, copy)
    argv = list(args)
    argv[argv.index("--output-dir") + 1] = str(copy)
    return copy, argv


def test_a_folder_in_use_is_locked_and_a_stale_lock_taken_over(tiny_run, tmp_path, capsys):
    import socket

    from store_hf.run_folder import LOCK_FILE

    copy, argv = _copy_run(tiny_run, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (copy / LOCK_FILE).write_text(f"{holder.pid} {socket.gethostname()}\n")
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert f"in use by another store-hf run (process {holder.pid})" in err
        assert len(err.splitlines()) == 1
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over; the finished run is only reread
    assert main(argv) == 0
    assert not (copy / LOCK_FILE).exists()  # released at the end


def test_damaged_files_of_a_finished_stage_are_named(tiny_run, tmp_path, capsys):
    copy, argv = _copy_run(tiny_run, tmp_path)
    weights = copy / "recommender" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert str(weights) in err and "damaged" in err and "store-hf rec-train" in err
    assert len(err.splitlines()) == 1
    # redoing that stage as told repairs the run (the later stages are made again)
    assert main(["rec-train", str(copy), "--force"]) == 0
    assert main(argv) == 0
    assert (copy / "report" / "stage.json").is_file()


@pytest.mark.parametrize(
    "damaged", ["run_config.json", "encode/stage.json", "encode/item_ids.json"]
)
def test_corrupt_json_files_are_named(tiny_run, tmp_path, capsys, damaged):
    copy, argv = _copy_run(tiny_run, tmp_path)
    (copy / damaged).write_text('{"truncated": ')
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{copy / damaged}: " in err and len(err.splitlines()) == 1, err


def test_changed_input_data_is_noticed(tiny_run, tmp_path, capsys):
    copy, argv = _copy_run(tiny_run, tmp_path)
    run = json.loads((copy / "run_config.json").read_text())
    # keyed by role, not by the paths as typed (a run is the same from any working directory)
    assert set(run["inputs"]) == {"items", "interactions"}
    run["inputs"]["items"] = "0" * 64  # the items file as it was when the run was computed
    (copy / "run_config.json").write_text(json.dumps(run))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "input data changed since this run was computed (items)" in err
    assert len(err.splitlines()) == 1


def test_the_fingerprint_follows_the_file_contents(tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text('{"item_id": "a", "title": "x"}\n')
    config = RunConfig(str(tmp_path / "run"), items=str(data), interactions=str(data))
    before = config.input_fingerprint()
    data.write_text('{"item_id": "a", "title": "y"}\n')
    assert config.input_fingerprint() != before
    assert set(RunConfig(str(tmp_path / "x")).input_fingerprint())  # the embedded files


def test_bad_settings_fail_before_anything_is_written(tiny_run, tmp_path, capsys):
    out, args = tiny_run
    bad_seed = tmp_path / "seed.yaml"
    bad_seed.write_text(f"output_dir: {tmp_path / 'a'}\npreset: tiny\nseed: abc\n")
    big_k = [a if a != str(out) else str(tmp_path / "b") for a in args]
    big_k[big_k.index("--codebook-size") + 1] = "4096"  # more codes than items
    cases = [
        (["run", str(bad_seed)], "seed: expected an integer, got 'abc'"),
        (big_k, "--codebook-size"),
        (["run", "--preset", "tiny", "--output-dir", "/proc/store-hf-run"], "/proc/store-hf-run"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_incomplete_checkpoints_are_skipped(tmp_path):
    from store_hf.training.checkpoints import last_checkpoint

    folder = tmp_path / "rec"
    for step, complete in ((5, True), (10, True), (15, False)):
        ckpt = folder / f"checkpoint-{step}"
        ckpt.mkdir(parents=True)
        (ckpt / "model.safetensors").write_bytes(b"weights")
        if complete:  # Trainer writes its state last
            (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "checkpoint-20").mkdir()
    (folder / "checkpoint-20" / "trainer_state.json").write_text('{"global_st')  # cut off
    assert last_checkpoint(folder) == folder / "checkpoint-10"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-5"]
    assert last_checkpoint(tmp_path / "none") is None
