"""Packed recommendation training is the per-prefix objective in one causal pass per user."""

import pytest
import torch
from datasets import Dataset
from transformers import set_seed

from store_hf.data import leave_one_out
from store_hf.modeling_store import StoreForGenerativeRec, StoreTokenizerModel
from store_hf.packing import packing_windows, user_sequences
from store_hf.templates import packed_templates
from store_hf.training import RecCollator, RecInstructionData

V, K, N = 3, 8, 30


@pytest.fixture(scope="module", params=["tiny-opt", "tiny-llama"])
def packed_rec(request):
    set_seed(0)
    tok_model, tok = StoreTokenizerModel.from_backbone(
        request.param, content_attributes=["title"], num_dense_tokens=V, codebook_size=K
    )
    codes = torch.randint(0, K, (N, V), generator=torch.Generator().manual_seed(0))
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model,
        tok,
        [f"i{j}" for j in range(N)],
        codes,
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        max_history=20,
        templates=packed_templates(tok_model.config.templates),
    ).add_lora()
    # LoRA B starts at 0: give it weights so that LoRA gradients depend on the inputs
    for name, p in rec.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return rec.eval(), tok


def _sequences(lengths):
    rng = torch.Generator().manual_seed(1)
    seqs = [[f"i{j}" for j in torch.randint(0, N, (n,), generator=rng).tolist()] for n in lengths]
    return seqs


def _rows(seqs):
    """Per-prefix training rows of these whole training sequences (history <= 20)."""
    rows = [
        {"user_id": f"u{u}", "history": seq[max(0, t - 20) : t], "target": seq[t]}
        for u, seq in enumerate(seqs)
        for t in range(1, len(seq))
    ]
    return Dataset.from_list(rows)


def _loss_and_grads(model, examples):
    """Summed token loss over the examples, one forward each, and the summed gradients."""
    model.zero_grad()
    total = 0.0
    collate = RecCollator(model._pad_id())
    for ex in examples:
        batch = collate([ex])
        loss = model(**batch, num_items_in_batch=1).loss  # the sum over labelled tokens
        loss.backward()
        total += loss.item()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return total, grads


def test_packed_loss_and_gradients_equal_the_per_prefix_ones(packed_rec):
    model, tok = packed_rec
    rows = _rows(_sequences([2, 3, 5, 8, 21]))  # every sequence within max_history + 1 items
    data = RecInstructionData(model, tok)
    packed, per_prefix = data.packed(rows), data.recommendation(rows)
    assert len(packed) == 5 and len(per_prefix) == len(rows)
    labelled = lambda ds: sum(sum(x != -100 for x in ex["labels"]) for ex in ds)  # noqa: E731
    assert labelled(packed) == labelled(per_prefix) == len(rows) * V
    # far fewer tokens for the same supervision
    assert sum(packed["length"]) < 0.5 * sum(per_prefix["length"])
    loss_p, grads_p = _loss_and_grads(model, packed)
    loss_r, grads_r = _loss_and_grads(model, per_prefix)
    assert loss_p == pytest.approx(loss_r, rel=1e-5)
    assert grads_p.keys() == grads_r.keys() and any("lora_A" in n for n in grads_p)
    for name in grads_p:
        torch.testing.assert_close(grads_p[name], grads_r[name], rtol=1e-4, atol=1e-6)


def test_the_inference_prompt_is_the_training_context(packed_rec):
    model, tok = packed_rec
    seq = ["i3", "i7", "i1", "i4"]
    packed = RecInstructionData(model, tok).packed(_rows([seq]))[0]
    prompt = model._history_prompts([seq[:3]])[0]  # what recommend() feeds for this history
    assert packed["input_ids"][: len(prompt)] == prompt
    assert packed["labels"][len(prompt) :] == packed["input_ids"][len(prompt) :]


def test_per_prefix_templates_are_refused(packed_rec):
    model, tok = packed_rec
    with pytest.raises(ValueError, match="rec_suffix"):
        model.config.prompt_token_ids["rec_suffix"] = [5]
        try:
            RecInstructionData(model, tok).packed(_rows([["i1", "i2"]]))
        finally:
            model.config.prompt_token_ids["rec_suffix"] = []


def test_long_sequences_are_windowed_so_every_item_is_learnt_once():
    for n in range(2, 120):
        windows = packing_windows(n, max_history=20)
        supervised = [j for start, stop, first in windows for j in range(first, stop)]
        assert supervised == list(range(1, n))
        assert all(stop - start <= 21 for start, stop, _ in windows)
        # after the first window, every supervised item keeps >= 11 items of history
        assert all(
            j - start >= 11 for start, stop, first in windows[1:] for j in range(first, stop)
        )
    assert packing_windows(1, 20) == [] and packing_windows(21, 20) == [(0, 21, 1)]


def test_user_sequences_rebuild_the_training_part(embedded):
    splits = leave_one_out(embedded, max_history=20)
    train = splits["train"].select(range(200))
    users, seqs = user_sequences(train["user_id"], train["history"], train["target"])
    by_user = dict(zip(embedded.sequences["user_id"], embedded.sequences["item_ids"]))
    for user, seq in zip(users[:-1], seqs[:-1]):  # the last user may be cut by select()
        assert seq == by_user[user][:-2]
    with pytest.raises(ValueError, match="not consecutive"):
        user_sequences(["a", "b", "a"], [["x"], ["y"], ["x"]], ["z", "z", "z"])


def test_packed_templates_are_importable_from_packing():
    from store_hf.packing import packed_templates as from_packing

    assert from_packing is packed_templates


@pytest.mark.parametrize("normalization", ["constant", "batch"])
def test_every_supervised_item_weighs_the_same_under_length_grouping(
    packed_rec, tmp_path, normalization
):
    """Each optimiser step divides its summed token loss by the Trainer's count: with
    ``loss_normalization="constant"`` that count is the stage's mean labelled tokens per step,
    so every supervised item has the same gradient weight whatever batch the length-grouped
    sampler puts it in; the per-batch count ("batch") up-weights users with short sequences."""
    from store_hf.presets import RecStageSettings
    from store_hf.training.recommender import _stage_args, _trainer, labelled_tokens_per_step

    model, tok = packed_rec
    lengths = [2, 3, 3, 4, 5, 6, 8, 10, 12, 15, 18, 21] * 4  # items per user
    seqs = _sequences(lengths)
    users = [{"user_id": f"u{u}", "history": s[:-1], "target": s[-1]} for u, s in enumerate(seqs)]
    train = RecInstructionData(model, tok).packed(Dataset.from_list(users))
    settings = RecStageSettings(
        batch_size=8,
        per_device_batch_size=4,
        group_by_length=True,
        loss_normalization=normalization,
        layout="packed",
        bf16=False,
    )
    args = _stage_args(tmp_path, settings, seed=0, epochs=1.0, report_to="none")
    trainer = _trainer(model, args, train, train.select([]), settings, None)
    assert (
        args.gradient_accumulation_steps == 2 and args.train_sampling_strategy == "group_by_length"
    )
    # gradient clipping rescales a whole step: an item's weight is V / count times the step's
    # clip factor, under the stage's own clipping and under the Trainer's default of 1.0
    assert args.max_grad_norm == (0.0 if normalization == "constant" else 1.0)
    params = [p for p in model.parameters() if p.requires_grad]
    iterator = iter(trainer.get_train_dataloader())
    weights = {"as trained": [], "clipped at 1.0": []}
    steps = 0
    while True:
        batches, count = trainer.get_batch_samples(iterator, 2, torch.device("cpu"))
        if not batches:
            break
        steps += 1
        model.zero_grad()
        for batch in batches:
            trainer.compute_loss(model, batch, num_items_in_batch=count).backward()
        norm = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])))
        for name, max_norm in (("as trained", args.max_grad_norm), ("clipped at 1.0", 1.0)):
            clip = min(1.0, max_norm / norm) if max_norm > 0 else 1.0
            for batch in batches:
                for labels in batch["labels"]:
                    assert int((labels[1:] != -100).sum()) % V == 0
                    weights[name].append(V / float(count) * clip)  # an item is V code tokens
    model.zero_grad()

    def spread(values: list[float]) -> float:
        return max(values) / min(values)

    if normalization == "constant":
        assert spread(weights["as trained"]) == pytest.approx(1.0, abs=0.01)
        # clipping every step to the same norm would bring the bias back
        assert spread(weights["clipped at 1.0"]) > 1.5
        # the constant is the epoch's mean labelled tokens per step: weights sum to 1 per step
        total_tokens = sum(sum(1 for x in row[1:] if x != -100) for row in train["labels"])
        assert trainer.loss_normalizer == pytest.approx(total_tokens / steps)
        assert labelled_tokens_per_step(train, settings) == trainer.loss_normalizer
    else:  # length grouping puts short users together: their items weigh several times more
        assert spread(weights["as trained"]) > 2.0
