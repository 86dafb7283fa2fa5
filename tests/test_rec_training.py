"""Instruction data, collation, two-stage training and evaluation of the recommender."""

import math
from dataclasses import replace

import pytest
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from transformers import Trainer

from store_hf.evaluation import evaluate_recommender, evaluate_scoring
from store_hf.modeling_store import StoreForGenerativeRec, StoreTokenizerModel
from store_hf.presets import RecStageSettings, get_preset
from store_hf.training import RecCollator, RecInstructionData, train_recommender
from store_hf.training.recommender import _stage_args

V, K, N = 3, 8, 24


@pytest.fixture(scope="module")
def chain():
    """24 items where item i is always followed by item i+1 (mod 24): a learnable pattern."""
    torch.manual_seed(0)
    tok_model, tok = StoreTokenizerModel.from_backbone(
        "tiny-llama", content_attributes=["title"], num_dense_tokens=V, codebook_size=K
    )
    codes = torch.stack([torch.arange(N) // 8, torch.arange(N) % 8, (torch.arange(N) * 3) % 8], 1)
    ids = [f"p{j}" for j in range(N)]
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model, tok, ids, codes, lora_r=8, lora_alpha=16, max_history=3
    ).add_lora()
    items = Dataset.from_dict({"item_id": ids, "title": [f"product number {j}" for j in range(N)]})

    def rows(starts, user_prefix):
        return Dataset.from_dict(
            {
                "user_id": [f"{user_prefix}{s}" for s in starts],
                "history": [[ids[(s + t) % N] for t in range(3)] for s in starts],
                "target": [ids[(s + 3) % N] for s in starts],
            }
        )

    splits = DatasetDict(
        train=rows(list(range(N)) * 4, "u"),
        validation=rows(range(0, N, 2), "v"),
        test=rows(range(1, N, 2), "t"),
    )
    return rec, tok, items, splits


def test_examples_put_labels_on_the_answer_only(chain):
    rec, tok, items, splits = chain
    data = RecInstructionData(rec, tok)
    ex = data.recommendation(splits["test"].select(range(1)))[0]
    target = rec.prompts.item_tokens(rec.item_codes[rec.item_rows([splits["test"][0]["target"]])])
    assert ex["labels"][-V:] == target == ex["input_ids"][-V:]
    assert all(label == -100 for label in ex["labels"][:-V])
    align = data.alignment(items.select(range(2)), ["title"])[1]
    assert align["labels"][-V:] == rec.prompts.item_tokens(rec.item_codes[1])
    assert tok.decode([t for t in align["input_ids"] if t < rec.config.code_token_offset]).count(
        "product number 1"
    )
    sampled = data.sampled_impressions(splits["test"], negatives=3)
    assert len(sampled) == len(splits["test"])
    for row, imp in zip(splits["test"], sampled):
        assert imp["labels"] == [1, 0, 0, 0] and imp["candidates"][0] == row["target"]
        assert len(set(imp["candidates"])) == 4 and imp["history"] == row["history"]
    scoring = data.scoring(data.sampled_impressions(splits["test"].select(range(2)), negatives=1))
    yes, no = rec.prompts.answer_ids
    assert [ex["labels"][-1] for ex in scoring] == [yes, no, yes, no]


def test_logged_impressions_keep_catalogue_items_only(chain):
    rec, tok, _, _ = chain
    log = Dataset.from_dict(
        {
            "impression_id": ["1", "2", "3"],
            "user_id": ["a", "b", "c"],
            "history": [["p1", "gone", "p2"], ["gone"], ["p3"]],
            "candidates": [["p4", "gone", "p5"], ["p6"], ["gone"]],
            "labels": [[0, 1, 1], [1], [0]],
        }
    )
    kept = RecInstructionData(rec, tok).logged_impressions(log)
    assert kept["user_id"] == ["a"]  # b has no known history, c no known candidate
    assert kept[0]["history"] == ["p1", "p2"]
    assert (kept[0]["candidates"], kept[0]["labels"]) == (["p4", "p5"], [0, 1])


def test_collator_right_pads():
    batch = RecCollator(pad_token_id=7)(
        [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4], "labels": [4]}]
    )
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 7, 7]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_training_batches_group_similar_lengths(chain, tmp_path):
    rec, tok, items, splits = chain
    data = RecInstructionData(rec, tok)
    # histories of 1 to 3 items beside item texts: a spread of lengths
    train = splits["train"].map(
        lambda row, i: {"history": row["history"][i % 3 :]}, with_indices=True
    )
    mixed = concatenate_datasets(
        [data.recommendation(train), data.alignment(items, ["title"])]
    ).shuffle(seed=0)
    assert mixed["length"] == [len(ids) for ids in mixed["input_ids"]]
    padded = {}
    for group in (True, False):
        settings = RecStageSettings(batch_size=8, per_device_batch_size=8, group_by_length=group)
        args = _stage_args(tmp_path / str(group), settings, seed=0, epochs=1.0)
        trainer = Trainer(model=rec, args=args, train_dataset=mixed, data_collator=RecCollator(0))
        batches = list(trainer.get_train_dataloader())
        seen = sorted(t for b in batches for t in b["attention_mask"].sum(1).tolist())
        assert seen == sorted(mixed["length"])  # every example exactly once
        padded[group] = sum(b["input_ids"].numel() for b in batches)
    desc = sorted(mixed["length"], reverse=True)
    tightest = sum(max(desc[i : i + 8]) * len(desc[i : i + 8]) for i in range(0, len(desc), 8))
    # Trainer sorts within (here) 4 random megabatches: close to a full sort, well below random
    assert padded[True] <= 1.08 * tightest < padded[False]


def test_two_stage_training_learns_the_pattern(chain, tmp_path):
    rec, tok, items, splits = chain
    before = evaluate_recommender(rec, splits["test"], ks=(1, 5), num_beams=5, show_progress=False)
    settings = RecStageSettings(
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        learning_rate=5e-3,
        code_learning_rate=1e-2,
        batch_size=16,
        per_device_batch_size=16,
        joint_epochs=2.0,
        num_epochs=40.0,
        eval_steps=6,
        patience=4,
        early_stopping_metric="ndcg@10",
        scoring_negatives=1,
        num_beams=10,
        warmup_ratio=0.0,
        # the per-batch divisor this test was sized with; the constant divisor (the default)
        # is tested in test_packing.py and by test_full_finetuning_with_one_schedule...
        loss_normalization="batch",
    )
    result = train_recommender(rec, tok, splits, items, ["title"], settings, tmp_path, seed=0)
    after = evaluate_recommender(rec, splits["test"], ks=(1, 5), num_beams=5, show_progress=False)
    assert result["metric_for_best_model"] == "eval_ndcg@10"
    assert any("eval_ndcg@10" in h for h in result["rec_log"])
    # a random frozen backbone adapted by rank-8 LoRA: the item is found, not always first
    assert after["recall@5"] >= 0.9 and after["ndcg@5"] > before["ndcg@5"] + 0.4, (before, after)
    impressions = RecInstructionData(rec, tok).sampled_impressions(splits["test"], negatives=3)
    scoring = evaluate_scoring(rec, impressions)
    assert 0.0 <= scoring["auc"] <= 1.0 and scoring["num_impressions"] == len(splits["test"])


def test_validation_ranks_a_bf16_copy_as_the_evaluate_stage_does(chain, tmp_path, monkeypatch):
    """``rank_bf16``: the validation users are ranked on bf16 weights, as the test users are,
    while the trained model keeps its fp32 weights."""
    import copy

    from store_hf.training import recommender
    from store_hf.training.recommender import RecTrainer

    ranked_dtypes = []

    def spy(model, *args, **kwargs):
        ranked_dtypes.append(model.dtype)
        return evaluate_recommender(model, *args, **kwargs)

    monkeypatch.setattr(recommender, "evaluate_recommender", spy)

    rec, tok, items, splits = chain
    rec = copy.deepcopy(rec).eval()
    before = {n: p.detach().clone() for n, p in rec.named_parameters()}
    args = _stage_args(tmp_path, RecStageSettings(), seed=0, epochs=1.0, bf16=True)
    trainer = RecTrainer(model=rec, args=args, ranking_split=splits["test"], rank_bf16=True)
    ranked = trainer._rank_validation()
    expected = evaluate_recommender(
        copy.deepcopy(rec).to(torch.bfloat16),
        splits["test"],
        ks=(10,),
        num_beams=20,
        show_progress=False,
        return_ranks=True,
    )
    assert ranked_dtypes == [torch.bfloat16]
    assert ranked["ndcg@10"] == expected["ndcg@10"] and ranked["recall@10"] == expected["recall@10"]
    for name, p in rec.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[name]), name


def _validated(steps: int, total: int) -> list[int]:
    """The steps a stage of ``total`` steps validates at every ``steps`` (and at its end)."""
    return sorted({*range(steps, total + 1, steps), total})


def test_evaluation_cadence_leaves_early_stopping_room_to_act():
    from store_hf.training import evaluation_steps

    # the cpu preset's old stage 2: 620 rows in batches of 16 (39 steps), eval every 50 steps:
    # one evaluation, at the end; now at least patience + 1 evaluations
    settings = RecStageSettings(batch_size=16, per_device_batch_size=16, patience=5)
    steps = evaluation_steps(620, settings, epochs=1.0)
    validated = _validated(steps, 39)  # the Trainer validates the last step too
    assert len(validated) >= settings.patience + 1 and 39 - validated[-2] >= steps // 2
    for total in range(6, 200):  # short stages keep patience + 1 validations
        steps = evaluation_steps(16 * total, settings, epochs=1.0)
        assert len(_validated(steps, total)) >= settings.patience + 1, total
    # long stages: evals_per_epoch decides
    assert evaluation_steps(16 * 400, settings, epochs=10.0) == 100
    # the full preset's stages (8,389 packed users, one epoch in stage 1, two in stage 2): the
    # last validation on the last step, not one or two steps before it as 262 gave; stage 1,
    # which does not stop early, at evals_per_epoch without the patience + 1 floor
    full = get_preset("full").recommender
    for epochs, early_stopping, expected in (
        (1.0, False, [263, 525]),
        (1.0, True, [175, 350, 525]),
        (2.0, True, [263, 526, 789, 1050]),
    ):
        steps = evaluation_steps(8389, full, epochs, early_stopping)
        total = math.ceil(8389 / full.batch_size) * int(epochs)
        assert _validated(steps, total) == expected
    assert evaluation_steps(16 * 400, replace(settings, eval_steps=7), epochs=10.0) == 7


def test_stage_two_stops_early_and_keeps_the_best_checkpoint(tmp_path):
    """Validation targets contradict the training pattern (item i -> i + 13 instead of i + 1):
    validation loss improves while the code rows settle, then worsens as the pattern is learnt.
    Stage 2 must stop before its last epoch with the best checkpoint's weights in the model."""
    from safetensors.torch import load_file
    from transformers import set_seed

    set_seed(0)
    tok_model, tok = StoreTokenizerModel.from_backbone(
        "tiny-llama", content_attributes=["title"], num_dense_tokens=V, codebook_size=K
    )
    codes = torch.stack([torch.arange(N) // 8, torch.arange(N) % 8, (torch.arange(N) * 3) % 8], 1)
    ids = [f"p{j}" for j in range(N)]
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model, tok, ids, codes, lora_r=8, lora_alpha=16, max_history=3
    ).add_lora()
    items = Dataset.from_dict({"item_id": ids, "title": [f"product {j}" for j in range(N)]})

    def rows(starts, shift, prefix):
        return Dataset.from_dict(
            {
                "user_id": [f"{prefix}{s}" for s in starts],
                "history": [[ids[(s + t) % N] for t in range(3)] for s in starts],
                "target": [ids[(s + 2 + shift) % N] for s in starts],
            }
        )

    splits = DatasetDict(train=rows(list(range(N)) * 4, 1, "u"), validation=rows(range(N), 13, "u"))
    settings = RecStageSettings(
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        learning_rate=5e-3,
        code_learning_rate=1e-2,
        batch_size=16,
        per_device_batch_size=16,
        joint_epochs=1.0,
        num_epochs=30.0,
        evals_per_epoch=2,
        patience=2,
        early_stopping_metric="loss",
        alignment=False,
        warmup_ratio=0.0,
        group_by_length=False,
    )
    result = train_recommender(rec, tok, splits, items, ["title"], settings, tmp_path, seed=0)
    losses = [(h["step"], h["eval_loss"]) for h in result["rec_log"] if "eval_loss" in h]
    assert result["stopped_at_step"] < result["max_steps"], losses  # stopped early
    best_step, best_loss = min(losses, key=lambda s: s[1])
    assert best_step < losses[-1][0] and result["best_metric"] == pytest.approx(best_loss)
    assert result["best_checkpoint"].endswith(f"checkpoint-{best_step}")
    # the model is the better of stage 2's best checkpoint and stage 1's end
    stage1 = result["stage1_metric"]
    assert result["stage2_kept"] == (best_loss < stage1), (best_loss, stage1)
    best = (
        result["best_checkpoint"] if result["stage2_kept"] else _last_checkpoint(tmp_path / "joint")
    )
    saved = load_file(f"{best}/model.safetensors")
    state = rec.state_dict()
    lora = [n for n in saved if "lora_" in n or n.endswith("code_weight")]
    assert lora and all(torch.equal(saved[n], state[n]) for n in lora)


def _last_checkpoint(folder):
    from store_hf.training.checkpoints import last_checkpoint

    return str(last_checkpoint(folder))


def test_stage_one_is_kept_where_stage_two_never_beat_it():
    """Stage 2's best validation (higher NDCG is better) below stage 1's last: the trainable
    weights go back to stage 1's; above it, stage 2's stay; a tie keeps stage 1."""
    from store_hf.training.recommender import keep_better_stage

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    model[0].weight.requires_grad_(False)  # frozen: not part of what a stage trains
    stage1 = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # what stage 2 did
    stage2 = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert keep_better_stage(model, stage1, 0.07, 0.08, greater_is_better=True)
    assert all(torch.equal(p, stage2[n]) for n, p in model.named_parameters())
    assert not keep_better_stage(model, stage1, 0.07, 0.07, greater_is_better=True)
    for name, p in model.named_parameters():
        assert torch.equal(p, stage1[name] if name in stage1 else stage2[name]), name
    # loss: lower is better
    assert keep_better_stage(model, stage1, 2.5, 2.4, greater_is_better=False)
    assert keep_better_stage(model, stage1, None, 2.4, greater_is_better=False)


def test_each_training_stage_reports_to_its_own_tensorboard_folder(chain, tmp_path):
    """``report_to="tensorboard"``: stage 1 and stage 2 (each restarts its step count) write
    their events under ``logging_dir/joint`` and ``logging_dir/rec``, not the checkpoints."""
    import copy
    import os

    pytest.importorskip("tensorboard")
    from store_hf.reporting import TENSORBOARD_ENV

    rec, tok, items, splits = chain
    # a few steps of each stage (the model's LoRA is the fixture's, not these settings')
    settings = RecStageSettings(
        num_epochs=1.0, early_stopping_metric="loss", alignment=False, scoring_negatives=0
    )
    logs = tmp_path / "logs"
    train_recommender(
        copy.deepcopy(rec),  # the fixture's model stays untrained for the other tests
        tok,
        splits,
        items,
        ["title"],
        settings,
        tmp_path / "checkpoints",
        report_to="tensorboard",
        logging_dir=logs,
    )
    for stage in ("joint", "rec"):
        assert list((logs / stage).glob("events.out.tfevents.*")), stage
    assert not list((tmp_path / "checkpoints").rglob("events.out.tfevents.*"))
    assert TENSORBOARD_ENV not in os.environ


def test_full_finetuning_with_one_schedule_over_both_stages(tmp_path):
    """``finetune="full"`` trains every backbone weight (no LoRA), and ``lr_schedule=
    "continuous"`` runs one cosine schedule over both stages: stage 2 starts at the rate stage 1
    ended with instead of warming up again."""
    torch.manual_seed(0)
    tok_model, tok = StoreTokenizerModel.from_backbone(
        "tiny-llama", content_attributes=["title"], num_dense_tokens=V, codebook_size=K
    )
    ids = [f"p{j}" for j in range(N)]
    codes = torch.stack([torch.arange(N) // 8, torch.arange(N) % 8, (torch.arange(N) * 3) % 8], 1)
    rec = StoreForGenerativeRec.from_tokenizer_model(tok_model, tok, ids, codes, max_history=3)
    rec.requires_grad_(True)  # what the recommender stage does for finetune="full"
    items = Dataset.from_dict({"item_id": ids, "title": [f"product number {j}" for j in range(N)]})
    rows = Dataset.from_dict(
        {
            "user_id": [f"u{s}" for s in range(N)],
            "history": [[ids[(s + t) % N] for t in range(3)] for s in range(N)],
            "target": [ids[(s + 3) % N] for s in range(N)],
        }
    )
    splits = DatasetDict(train=rows, validation=rows.select(range(8)), test=rows.select(range(8)))
    settings = RecStageSettings(
        finetune="full",
        lr_schedule="continuous",
        learning_rate=1e-3,
        code_learning_rate=5e-3,
        batch_size=8,
        per_device_batch_size=8,
        joint_epochs=1.0,
        num_epochs=1.0,
        warmup_ratio=0.2,
        early_stopping_metric="loss",
        scoring_negatives=0,
        patience=1,
        eval_steps=100,
    )
    layer = next(p for n, p in rec.named_parameters() if "layers.0.mlp" in n)
    before = layer.detach().clone()
    result = train_recommender(rec, tok, splits, items, ["title"], settings, tmp_path, seed=0)
    assert not torch.equal(layer, before)  # a backbone weight itself trained
    assert result["finetune"] == "full" and result["lr_schedule"] == "continuous"
    lr1 = [h["learning_rate"] for h in result["joint_log"] if "learning_rate" in h]
    lr2 = [h["learning_rate"] for h in result["rec_log"] if "learning_rate" in h]
    # stage 1 warms up then decays; stage 2 goes on decaying from below stage 1's last rate
    assert max(lr1) == pytest.approx(1e-3, rel=0.05) and lr1[-1] < max(lr1)
    assert lr2[0] <= lr1[-1] and lr2 == sorted(lr2, reverse=True) and lr2[-1] < 1e-4
    assert result["loss_normalization"] == "constant" and result["loss_normalizer"]["rec"] > 0


@pytest.mark.parametrize(
    "field, value",
    [("finetune", "partial"), ("loss_normalization", "mean"), ("lr_schedule", "linear")],
)
def test_unknown_recommender_choices_are_refused_by_name(field, value):
    from store_hf.training.recommender import check_rec_settings

    with pytest.raises(ValueError, match=f"recommender.{field} must be one of"):
        check_rec_settings(replace(RecStageSettings(), **{field: value}))
