"""benchmarks/speed.py --quick: runs every section on tiny backbones and writes its report."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("tokenizer", "encode", "codebook", "recommender", "evaluate")
SECTIONS = ("trie_step", "beam_search", "recommend", "tokenizer_paths", "scoring", "encode")


@pytest.fixture
def quality_cli(script_cli):
    """``python benchmarks/quality.py --preset tiny ARGS`` in this process (:func:`script_cli`)."""
    return lambda *args: script_cli("benchmarks/quality.py", "--preset", "tiny", *args)


def _ratio(cell: str) -> float:
    assert cell.endswith("x"), cell
    return float(cell[:-1])


def test_speed_quick_writes_every_ratio(tmp_path, script_cli):
    out = tmp_path / "results"
    proc = script_cli("benchmarks/speed.py", "--quick", "--threads", "1", "--output-dir", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "speed.md").read_text()
    assert "speed.py --quick" in md and "torch threads 1" in md  # the command and the machine
    lines = md.splitlines()
    head = lines.index("| section | comparison | A | B | ratio | ratio is |")
    assert lines[head + 1] == "|---|---|---|---|---|---|"
    rows = []
    for line in lines[head + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 6, line
        rows.append(cells)
    assert {r[0] for r in rows} == set(SECTIONS)
    for section, _, _, _, ratio, meaning in rows:
        value = _ratio(ratio)
        assert math.isfinite(value) and value > 0, (section, ratio)
        assert meaning, section
    report = json.loads((out / "speed.json").read_text())
    assert set(report["sections"]) == set(SECTIONS)
    assert report["machine"]["torch_threads"] == 1 and report["machine"]["cores"] >= 1
    assert report["sections"]["recommend"]["same_beams"] is True


def test_quality_ranks_every_system_on_the_same_users(tmp_path, quality_cli, script_cli):
    work, out = tmp_path / "work", tmp_path / "results"
    systems = "store,store-no-cbs,store-no-align,store-no-dt,lcrec,popular,random"
    cmd = ["--systems", systems, "--test-users", "16", "--work-dir", str(work)]
    cmd += ["--output-dir", str(out)]
    proc = quality_cli(*cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "random, seed 0: started" in proc.stderr  # the log is captured (checked below)
    report = json.loads((out / "quality-scientific-tiny.json").read_text())
    table = report["systems"]
    assert list(table) == systems.split(",")
    for system, row in table.items():
        assert row["test_users"] == 16 and row["seeds"] == [0], system
        assert all(0.0 <= row[f"recall@{k}"] <= 1.0 for k in (1, 5, 10, 20)), system
        assert row["ndcg@10"] <= row["recall@10"] and row["ndcg@10_std"] is None
    saved = json.loads((out / "quality-scientific-tiny-ranks.json").read_text())
    assert set(saved["ranks"]) == set(table) and len(saved["user_id"]) == 16
    # per-user ranks of every system on the same users, in the same order
    results = {s: json.loads((work / f"{s}-seed0" / "result.json").read_text()) for s in table}
    users = results["store"]["user_id"]
    assert len(users) == 16 and all(r["user_id"] == users for r in results.values())
    for system, result in results.items():
        ranks = result["ranks"]
        assert len(ranks) == 16 and all(r >= 0 for r in ranks), system
        assert sum(0 < r <= 10 for r in ranks) / 16 == table[system]["recall@10"], system
        low, high = table[system]["recall@10_ci95"]
        assert low <= table[system]["recall@10"] <= high, system
        if system != "store":  # paired tests against the reference system
            test = table[system]["versus_store"]["recall@10"]
            assert 0.0 <= test["p_value"] <= 1.0 and 0.0 <= test["mcnemar"]["p_value"] <= 1.0
            assert test["difference"] == pytest.approx(
                table["store"]["recall@10"] - table[system]["recall@10"]
            )
    # the pipeline ranked the same 16 users: its most-popular numbers are the harness's
    evaluate = json.loads((work / "store-seed0" / "evaluate" / "metrics.json").read_text())
    pipeline_pop = evaluate["systems"]["MostPopular"]
    assert all(pipeline_pop[m] == table["popular"][m] for m in ("recall@20", "ndcg@20"))
    assert evaluate["systems"]["STORE"]["recall@20"] == table["store"]["recall@20"]
    # the ablation trained its own recommender on the store run's tokenizer and codes
    a, b = work / "store-seed0" / "codebook", work / "store-no-align-seed0" / "codebook"
    assert (a / "stage.json").read_bytes() == (b / "stage.json").read_bytes()
    assert not json.loads((work / "store-no-align-seed0" / "run_config.json").read_text())[
        "config"
    ]["recommender"]["alignment"]
    # without the dense tokenizer: RQ-VAE codes; LC-Rec decodes that run's model per position
    no_dt = work / "store-no-dt-seed0"
    assert json.loads((no_dt / "codebook" / "statistics.json").read_text())["method"] == "rqvae"
    assert json.loads((no_dt / "tokenizer" / "stage.json").read_text())["trained"] is False
    lcrec = table["lcrec"]["commands"][0]
    assert "mode='position'" in lcrec and str(no_dt) in lcrec
    # every stage a STORE row computed, with its seconds as its stage.json recorded them
    for system, stages in {"store": STAGES, "store-no-align": STAGES[3:]}.items():
        folder, times = work / f"{system}-seed0", results[system]["stage_seconds"]
        validation = json.loads((folder / "recommender" / "stage.json").read_text())
        assert times == {
            **{s: json.loads((folder / s / "stage.json").read_text())["seconds"] for s in stages},
            "validation": validation["validation_seconds"],
        }, system
        assert results[system]["seconds"] == pytest.approx(
            sum(times[s] for s in stages) + results[system]["eval_seconds"]
        )
    assert results["store-no-cbs"]["stage_seconds"] == {}  # it ranks store's model
    # the codes each row ranked with: shared by the ablations of one run's codebook only
    codes = {s: r.get("codes") for s, r in results.items()}
    assert len(codes["store"]) == 16 and int(codes["store"], 16) >= 0
    assert codes["store"] == codes["store-no-align"] == codes["store-no-cbs"]
    assert codes["lcrec"] == codes["store-no-dt"] != codes["store"]
    assert codes["popular"] is None and table["store"]["codes"] == [codes["store"]]
    md = (out / "quality-scientific-tiny.md").read_text()
    assert "## Intervals and paired tests" in md and "within noise" in md
    stage_rows = [line for line in md.splitlines() if line.startswith("| store-no-align | 0 | - |")]
    assert len(stage_rows) == 1, md  # the reused stages shown as such
    assert "| store-no-cbs |" in md and "--reuse-stages-from" in md
    assert "--semantic-ids llm-rqvae" in md
    assert f"| {codes['store']} |" in md and f"| {codes['store-no-dt']} |" in md
    # ranking speed per precision and batch size, and bf16 vs fp32 agreement, on that run
    bench = [work / "store-seed0", "--users", "8", "--batch-sizes", "4,8", "--output-dir", out]
    proc = script_cli("benchmarks/evaluation.py", *bench, "--name", "eval-tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluation = json.loads((out / "eval-tiny.json").read_text())
    assert "autocast vs bf16 weights" in (out / "eval-tiny.md").read_text()
    assert set(evaluation["users_per_second"]) == {"float32", "autocast", "bfloat16"}
    assert all(v > 0 for r in evaluation["users_per_second"].values() for v in r.values())
    assert 0.0 <= evaluation["agreement"]["same_target_rank"] <= 1.0
    # a rerun takes the finished results instead of training again
    again = quality_cli(*cmd)
    assert again.returncode == 0 and "started" not in again.stderr
    # ... unless the preset resolves to other settings than when the result was computed
    saved_path = work / "store-seed0" / "result.json"
    saved = saved_path.read_text()
    changed = json.loads(saved)
    changed["identity"]["settings"]["recommender.num_beams"] += 1
    saved_path.write_text(json.dumps(changed))
    refused = quality_cli(*cmd)
    assert refused.returncode == 2 and "recommender.num_beams" in refused.stderr
    saved_path.write_text(saved)
    assert json.loads((out / "quality-scientific-tiny.json").read_text())["systems"] == table
    # --table-only tabulates what is finished (seed 0) and computes nothing for seed 1
    only = quality_cli(*cmd, "--seeds", "0,1", "--table-only")
    assert only.returncode == 0 and "started" not in only.stderr, only.stderr[-2000:]
    rows = json.loads((out / "quality-scientific-tiny.json").read_text())["systems"]
    assert {s: r["seeds"] for s, r in rows.items()} == {s: [0] for s in table}
    assert not (work / "store-seed1").exists()
    # --merge: a new system's row beside an earlier report's rows, rebuilt from their ranks
    merged_out = tmp_path / "merged"
    merge = ["--systems", "popular", "--test-users", "16", "--work-dir", str(tmp_path / "work2")]
    merge += ["--output-dir", str(merged_out), "--merge", str(out / "quality-scientific-tiny.json")]
    proc = quality_cli(*merge)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((merged_out / "quality-scientific-tiny.json").read_text())["systems"]
    timing = ("seconds", "eval_seconds", "provenance")  # popular ran again: metrics agree
    for system, row in rows.items():
        assert {k: v for k, v in merged[system].items() if k not in timing} == {
            k: v for k, v in row.items() if k not in timing
        }, system
    assert merged["store"] == rows["store"]
    assert (
        "quality-scientific-tiny.json` (same users"
        in (merged_out / "quality-scientific-tiny.md").read_text()
    )
    # seeds of one configuration trained in different sessions make one row: a seed run now
    # joins the merged report's seeds of the same identity; a merged seed of another is named
    report = out / "quality-scientific-tiny.json"
    seeds = ["--systems", "popular,random", "--seeds", "1", "--test-users", "16"]
    seeds += ["--work-dir", str(tmp_path / "work3"), "--output-dir", str(tmp_path / "seeds")]
    proc = quality_cli(*seeds, "--merge", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    joined = json.loads((tmp_path / "seeds" / "quality-scientific-tiny.json").read_text())
    assert joined["systems"]["popular"]["seeds"] == [0, 1]
    assert joined["systems"]["random"]["seeds"] == [0, 1]
    assert joined["systems"]["random"]["recall@10_std"] is not None
    assert joined["systems"]["store"]["seeds"] == [0]  # not run now: the merged row as it was
    assert [i["seed"] for i in joined["systems"]["popular"]["identity"]] == [0, 1]
    edited = json.loads(report.read_text())
    edited["systems"]["random"]["identity"][0]["sample"] = "eval seed 5, 16 users"
    other_report = tmp_path / "edited" / "quality-other.json"
    other_report.parent.mkdir()
    other_report.write_text(json.dumps(edited))
    ranks_copy = other_report.with_name("quality-other-ranks.json")
    ranks_copy.write_text((out / "quality-scientific-tiny-ranks.json").read_text())
    proc = quality_cli(*seeds, "--merge", str(other_report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    joined = json.loads((tmp_path / "seeds" / "quality-scientific-tiny.json").read_text())
    assert joined["systems"]["random"]["seeds"] == [1]
    assert joined["systems"]["popular"]["seeds"] == [0, 1]
    md = (tmp_path / "seeds" / "quality-scientific-tiny.md").read_text()
    assert "not joined to the row run now: random seed 0 of quality-other.json" in md
    assert "sample differ" in md
    # an earlier report of other users cannot be merged: its paired tests would compare others
    other = [a if a != "16" else "8" for a in merge]
    proc = quality_cli(*other)
    assert proc.returncode == 2 and "ranked other test users" in proc.stderr
    assert "popular, seed 0: started" not in proc.stderr  # refused before anything ran


def test_quality_harness_checks_saved_results_and_keeps_provenance(tmp_path, quality_cli):
    work, out = tmp_path / "work", tmp_path / "results"
    base = ["--work-dir", str(work), "--output-dir", str(out), "--test-users", "64"]
    proc = quality_cli("--systems", "popular,random", "--seeds", "0,1", *base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "quality-scientific-tiny.json").read_text())
    kept, excluded = report["systems"], report["systems_excluding_history"]
    assert set(kept) == set(excluded) == {"popular", "random"}
    # each row says where, when and on which commit each of its seeds ran
    for row in kept.values():
        assert len(row["provenance"]) == 2
        assert all(p["commit"] and p["machine"] and p["date"] for p in row["provenance"])
    # both history variants, from per-user ranks of the same users
    ranks = json.loads((out / "quality-scientific-tiny-ranks.json").read_text())
    assert set(ranks["ranks"]) == set(ranks["ranks_excluding_history"]) == {"popular", "random"}
    assert excluded["popular"]["recall@20"] >= kept["popular"]["recall@20"]
    # McNemar pairs every seed of the reference with the same seed of the system
    tests = kept["random"]["versus_popular"]["recall@10"]["mcnemar"]["per_seed_pair"]
    assert [t["seeds"] for t in tests] == [[0, 0], [1, 1]]
    md = (out / "quality-scientific-tiny.md").read_text()
    assert "### History items excluded" in md and "## Provenance" in md

    # 1. a saved result is not reused for another sample of users or another identity
    proc = quality_cli("--systems", "popular", *base[:4], "--test-users", "32")
    assert proc.returncode == 2 and "was computed for another run" in proc.stderr
    assert "sample" in proc.stderr and "started" not in proc.stderr
    legacy = json.loads((work / "random-seed0" / "result.json").read_text())
    del legacy["identity"]  # as an older harness wrote it
    (work / "random-seed0" / "result.json").write_text(json.dumps(legacy))
    proc = quality_cli("--systems", "random", *base)
    assert proc.returncode == 2 and "records no identity" in proc.stderr

    # 2. --merge never overwrites its input, names what it drops and keeps the rows' provenance
    earlier = out / "quality-scientific-tiny.json"
    proc = quality_cli("--systems", "popular", *base, "--merge", str(earlier))
    assert proc.returncode == 2 and "never overwritten" in proc.stderr
    merged_out = tmp_path / "merged"
    args = ["--work-dir", str(work), "--output-dir", str(merged_out), "--test-users", "64"]
    proc = quality_cli(
        "--systems", "popular", *args, "--merge", str(earlier), "--reference", "popular"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = json.loads((merged_out / "quality-scientific-tiny.json").read_text())["systems"]
    assert merged["random"]["provenance"] == kept["random"]["provenance"]
    # a report of another preset's settings cannot be merged
    proc = quality_cli(
        "--systems", "popular", *args, "--merge", str(earlier), "--recommender", "num_beams=5"
    )
    assert proc.returncode == 2 and "was run with recommender" in proc.stderr

    # 3. the confirmation sample: only with --final, disjoint from the tuning samples, recorded
    final = ["--work-dir", str(work), "--output-dir", str(out), "--final"]
    proc = quality_cli("--systems", "popular", "--test-users", "100", *final)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "quality-scientific-tiny-final.json").read_text())
    assert "confirmation" in report["machine"]["split"]
    users = set(
        json.loads((out / "quality-scientific-tiny-final-ranks.json").read_text())["user_id"]
    )
    assert len(users) == 100  # drawn outside the tuning samples (the next test)
    uses = (out / "confirmation-uses.jsonl").read_text().splitlines()
    assert len(uses) == 1 and json.loads(uses[0])["systems"] == ["popular"]


def test_confirmation_sample_avoids_every_tuning_sample(embedded):
    from store_hf.data import TUNING_SAMPLES, confirmation_sample, leave_one_out, sample_users

    test = leave_one_out(embedded, max_history=20)["test"]
    tuning = set()
    for seed, size in TUNING_SAMPLES:
        tuning |= set(sample_users(test, size, seed)["user_id"])
    final = confirmation_sample(test)
    assert len(set(final["user_id"])) == 2000 and not tuning & set(final["user_id"])
    assert list(final["user_id"]) == list(confirmation_sample(test)["user_id"])  # fixed rule
    with pytest.raises(ValueError, match="outside the tuning samples"):
        confirmation_sample(test, 8317)


def test_packing_benchmark_prints_both_ratios(tmp_path, script_cli):
    cmd = ["--backbone", "tiny-llama", "--users", "8", "--threads", "1", "--output-dir", tmp_path]
    proc = script_cli("benchmarks/packing.py", *cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "packing.json").read_text())
    packed, prefix = report["layouts"]["packed"], report["layouts"]["per-prefix"]
    # the same supervision (every training target's codes) in far fewer tokens
    assert packed["supervised_tokens_per_epoch"] == prefix["supervised_tokens_per_epoch"]
    assert report["ratios"]["tokens"] > 3  # wall time on a tiny model is overhead: only > 0
    assert math.isfinite(report["ratios"]["wall_time"]) and report["ratios"]["wall_time"] > 0
    assert "Per-prefix / packed" in (tmp_path / "packing.md").read_text()


def test_finetune_benchmark_measures_both_modes(tmp_path, script_cli):
    cmd = ["--backbone", "tiny-llama", "--users", "32", "--batch-size", "8", "--threads", "1"]
    proc = script_cli("benchmarks/finetune.py", *cmd, "--output-dir", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "finetune.json").read_text())
    lora, full = report["modes"]["lora"], report["modes"]["full"]
    # full trains every weight, LoRA a small share (the adapters and the code rows)
    assert full["trainable_parameters"] == full["parameters"]
    assert lora["trainable_parameters"] < lora["parameters"] / 10
    assert lora["timed_tokens"] == full["timed_tokens"] > 0  # the same data in both modes
    assert all(r["peak_memory_mib"] > 0 and r["tokens_per_second"] > 0 for r in (lora, full))
    assert "Full / LoRA" in (tmp_path / "finetune.md").read_text()


def _on_run(script_cli, script: str, run: Path, output_dir: Path, *extra: str) -> None:
    """Run ``benchmarks/<script>`` on a finished run folder, writing into ``output_dir``."""
    proc = script_cli(f"benchmarks/{script}", run, "--output-dir", output_dir, *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_demo_report_records_stage_times_and_metrics(shared_tiny_run, tmp_path, script_cli):
    _on_run(script_cli, "demo_report.py", shared_tiny_run.out, tmp_path)
    report = json.loads((tmp_path / "demo.json").read_text())
    assert report["preset"] == "tiny" and report["machine"]["cpu"]
    times = report["stage_seconds"]
    assert set(times) >= {"tokenizer", "recommender", "evaluate"} and report["total_seconds"] > 0
    evaluated = json.loads((shared_tiny_run.out / "evaluate" / "metrics.json").read_text())
    assert report["metrics"]["STORE"]["recall@10"] == evaluated["systems"]["STORE"]["recall@10"]
    # a run that has not finished is refused by name
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    proc = script_cli("benchmarks/demo_report.py", unfinished)
    assert proc.returncode != 0 and "have not finished" in proc.stderr


def test_grad_norms_summarise_each_stage_of_a_run(shared_tiny_run, tmp_path, script_cli):
    _on_run(script_cli, "grad_norms.py", shared_tiny_run.out, tmp_path)
    report = json.loads((tmp_path / "grad-norms.json").read_text())
    logs = json.loads((shared_tiny_run.out / "recommender" / "log_history.json").read_text())
    for key, row in report["stages"].items():
        norms = [e["grad_norm"] for e in logs[key] if "grad_norm" in e and "loss" in e]
        assert row["steps"] == len(norms)
        assert row["percentiles"]["50"] == pytest.approx(float(np.median(norms)))
        assert row["share_above_1"] == pytest.approx(np.mean(np.array(norms) > 1.0))
    assert report["settings"]["loss_normalization"] == "constant"
    assert report["settings"]["max_grad_norm"] == 0.0
    assert "stage 1" in (tmp_path / "grad-norms.md").read_text()
    missing = script_cli("benchmarks/grad_norms.py", tmp_path)
    assert missing.returncode != 0 and "log_history.json: not found" in missing.stderr


def test_validation_curve_lists_every_validation_of_both_stages(
    shared_tiny_run, tmp_path, script_cli
):
    _on_run(
        script_cli,
        "validation_curve.py",
        shared_tiny_run.out,
        tmp_path,
        "--name",
        "tiny",
        "--note",
        "resumed once",
    )
    report = json.loads((tmp_path / "tiny-validation-curve.json").read_text())
    logs = json.loads((shared_tiny_run.out / "recommender" / "log_history.json").read_text())
    validated = {k: [h for h in logs[k] if "eval_loss" in h] for k in ("joint", "rec")}
    logged = validated["joint"] + validated["rec"]
    assert [r["step"] for r in report["curve"]] == [h["step"] for h in logged]
    assert validated["rec"] and report["best_checkpoint"]
    for row, h in zip(report["curve"], logged):
        assert row["loss"] == h["eval_loss"] and row["ndcg@10"] == h.get("eval_ndcg@10")
    md = (tmp_path / "tiny-validation-curve.md").read_text()
    assert md.count("| stage 2 |") == len(validated["rec"]) and "resumed once" in md


def test_checkpoint_eval_compares_a_checkpoint_with_a_reports_systems(
    shared_tiny_run, tmp_path, script_cli
):
    """A training checkpoint ranked on the run's test users, paired with its final model and
    with the systems of a harness ranks file (users in another order, aligned by id)."""
    from store_hf.metrics import compare_systems

    out = shared_tiny_run.out
    ckpt = sorted((out / "checkpoints" / "recommender" / "rec").glob("checkpoint-*"))[-1]
    final = json.loads((out / "evaluate" / "ranks.json").read_text())
    order = list(reversed(range(len(final["user_id"]))))
    ranks_file = tmp_path / "quality-ranks.json"
    ranks_file.write_text(
        json.dumps(
            {
                "user_id": [final["user_id"][i] for i in order],
                "ranks": {"final": {"0": [final["ranks"]["STORE"][i] for i in order]}},
            }
        )
    )
    output = tmp_path / "checkpoint.json"
    cmd = [out, ckpt, "--name", "ckpt", "--versus", ranks_file, "--output", output]
    proc = script_cli("benchmarks/checkpoint_eval.py", *cmd, "--num-beams", "24")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["user_id"] == final["user_id"]
    assert report["num_beams"] == 24 and "24 beams" in proc.stdout  # a beam-width comparison
    direct = compare_systems(report["ranks"], final["ranks"]["STORE"], ks=(10,))
    versus = report["versus"]["final"]["versus_ckpt"]
    for metric in ("recall@10", "ndcg@10"):
        assert versus[metric]["difference"] == pytest.approx(direct[metric]["difference"])
        assert report["paired_vs_final"][metric]["difference"] == pytest.approx(
            direct[metric]["difference"]
        )
    assert "| final | 0 |" in proc.stdout
    # a ranks file of other users is refused by name
    ranks_file.write_text(json.dumps({"user_id": ["x"], "ranks": {"final": {"0": [1]}}}))
    proc = script_cli("benchmarks/checkpoint_eval.py", *cmd, "--num-beams", "24")
    assert proc.returncode != 0 and "ranked other test users" in proc.stderr


def test_tokenizer_stability_reports_every_seeds_gap(tmp_path, script_cli):
    cmd = ["--preset", "tiny", "--seeds", "0,1", "--work-dir", tmp_path / "work"]
    cmd += ["--output-dir", tmp_path, "--tokenizer", "max_items=48", "--name", "tiny-48"]
    proc = script_cli("benchmarks/tokenizer_stability.py", *cmd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "tokenizer-stability-tiny-48.json").read_text())
    assert report["seeds"] == [0, 1] and report["tokenizer_settings"] == {"max_items": 48}
    gaps = []
    for row in report["rows"]:
        # what the tokenizer stage measured on its held-out items, per seed
        stage = json.loads(
            (
                tmp_path / "work" / f"tiny-48-seed{row['seed']}" / "tokenizer" / "stage.json"
            ).read_text()
        )
        assert row["after"] == stage["dense_information_after"]
        assert row["train_items"] == stage["train_items"] <= 48
        after = row["after"]
        assert after["gap"] == pytest.approx(after["loss_other"] - after["loss_own"])
        gaps.append(after["gap"])
    assert report["gap_after_min"] == min(gaps)
    assert report["gap_after_mean"] == pytest.approx(sum(gaps) / 2)
    md = (tmp_path / "tokenizer-stability-tiny-48.md").read_text()
    assert "{'max_items': 48}" in md and "| 1 |" in md
    # other settings than the preset's need their own name, or they would overwrite its results
    bad = script_cli("benchmarks/tokenizer_stability.py", *cmd[:-2])
    assert bad.returncode == 2 and "--name" in bad.stderr


def test_compare_reports_pairs_rows_of_two_reports_on_the_same_users(tmp_path, script_cli):
    """Two rows of committed reports paired without ranking again: the result is the paired
    test the harness itself computed when both rows were in one report; a report of other
    users, a missing system or a malformed operand is refused by name."""
    results = ROOT / "benchmarks" / "results"
    v5 = results / "quality-scientific-full-v5.json"
    # the reference row from another report whose users come in another order
    ranks = json.loads((results / "quality-scientific-full-v3-ranks.json").read_text())
    order = list(reversed(range(len(ranks["user_id"]))))
    shuffled = {
        **ranks,
        "user_id": [ranks["user_id"][i] for i in order],
        **{
            key: {
                s: {seed: [v[i] for i in order] for seed, v in by.items()} for s, by in val.items()
            }
            for key, val in ranks.items()
            if key.startswith("ranks")
        },
    }
    v3 = tmp_path / "quality-v3.json"
    v3.write_text((results / "quality-scientific-full-v3.json").read_text())
    (tmp_path / "quality-v3-ranks.json").write_text(json.dumps(shuffled))
    args = [f"{v3}:store", f"{v5}:store-no-align", "--labels", "with", "without"]
    proc = script_cli(
        "benchmarks/compare_reports.py", *args, "--name", "cmp", "--output-dir", tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "cmp.json").read_text())
    harness = json.loads(v5.read_text())
    for key, table in (
        ("ranks", "systems"),
        ("ranks_excluding_history", "systems_excluding_history"),
    ):
        mine = out["tables"][key]["without"]["versus_with"]
        theirs = harness[table]["store-no-align"]["versus_store"]
        for metric in ("recall@10", "ndcg@10"):
            assert mine[metric]["difference"] == pytest.approx(theirs[metric]["difference"])
            assert mine[metric]["p_value"] == pytest.approx(theirs[metric]["p_value"], abs=0.02)
        assert mine["recall@10"]["mcnemar"]["p_value"] == pytest.approx(
            theirs["recall@10"]["mcnemar"]["p_value"]
        )
    text = (tmp_path / "cmp.md").read_text()
    assert "## History items excluded" in text and "commit 10da0009e4f7" in text
    # refusals
    (tmp_path / "quality-v3-ranks.json").write_text(
        json.dumps({**shuffled, "user_id": ["nobody", *shuffled["user_id"][1:]]})
    )
    proc = script_cli(
        "benchmarks/compare_reports.py", *args, "--name", "x", "--output-dir", tmp_path
    )
    assert proc.returncode == 1 and "ranked other test users" in proc.stderr
    assert not (tmp_path / "x.json").exists()
    proc = script_cli(
        "benchmarks/compare_reports.py", f"{v5}:tiger", f"{v5}:store", "--name", "x",
        "--output-dir", tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1 and "no per-user ranks of 'tiger'" in proc.stderr
    proc = script_cli("benchmarks/compare_reports.py", str(v5), f"{v5}:store", "--name", "x")
    assert proc.returncode == 2 and "REPORT.json:SYSTEM" in proc.stderr
