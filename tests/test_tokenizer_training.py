"""Dense-tokenizer data path and Trainer training on the embedded dataset (tiny backbones)."""

import pytest
import torch

from store_hf.modeling_store import StoreTokenizerModel
from store_hf.presets import get_preset
from store_hf.templates import default_task_setup
from store_hf.training import (
    DenseTokenizerCollator,
    build_tokenizer_model,
    dense_information_gap,
    format_content,
    item_texts,
    stage_training_arguments,
    tokenize_items,
    train_dense_tokenizer,
)


@pytest.fixture(scope="module")
def tiny(embedded):
    torch.manual_seed(0)
    return build_tokenizer_model(get_preset("tiny"), embedded.attributes)


def test_default_task_sets():
    content, tasks = default_task_setup(["title", "abstract", "category", "subcategory"])
    assert content == ["title", "abstract"]  # MIND, paper Table 2
    assert [(t["attribute"], t["kind"]) for t in tasks] == [
        ("title", "reconstruction"),
        ("abstract", "reconstruction"),
        ("category", "generation"),
        ("subcategory", "generation"),
    ]
    content, tasks = default_task_setup(["name", "address", "city", "state", "categories"])
    assert content == ["name", "city", "address"] and tasks[-1] == {
        "attribute": "state",
        "kind": "generation",
    }
    content, tasks = default_task_setup(
        ["headline", "body"]
    )  # unknown catalogue: rebuild everything
    assert content == ["headline", "body"] and all(t["kind"] == "reconstruction" for t in tasks)


def test_format_content_skips_empty_attributes(embedded):
    row = embedded.items[
        embedded.item_index()[
            next(i for i, b in zip(embedded.item_ids, embedded.items["brand"]) if not b)
        ]
    ]
    text = format_content(row, ["title", "brand", "categories"])
    assert text.startswith("title: ") and "brand:" not in text
    assert format_content({"title": ""}, ["title"]) == "(no text)"


def test_collator_builds_one_sample_per_nonempty_task(tiny, embedded):
    model, tokenizer = tiny
    no_description = next(i for i, d in enumerate(embedded.items["description"]) if not d)
    rows = embedded.items.select([0, 1, no_description])
    data = tokenize_items(rows, tokenizer, model.config)
    batch = DenseTokenizerCollator(tokenizer.pad_token_id)([data[i] for i in range(3)])
    assert batch["task_item_index"].tolist() == [
        0,
        0,
        0,
        0,
        1,
        1,
        1,
        1,
        2,
        2,
        2,
    ]  # item 2: no description
    assert batch["task_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    mask = batch["content_attention_mask"]
    assert (mask[:, -1] == 1).all() and mask.sum(1).tolist() == [
        len(data[i]["content_ids"]) for i in range(3)
    ]
    labels = batch["labels"]
    ends = (labels != -100).sum(1) - 1
    assert (labels[torch.arange(len(labels)), ends] == tokenizer.eos_token_id).all()
    assert labels.shape[1] <= model.config.max_target_length
    title_ids = tokenizer(rows[0]["title"], add_special_tokens=False)["input_ids"][
        : model.config.max_target_length - 1
    ]
    assert labels[0, : len(title_ids)].tolist() == title_ids


def test_tokenize_items_rejects_missing_attribute(tiny, embedded):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match=r"no attribute\(s\) \['brand'\]"):
        tokenize_items(
            embedded.items.select(range(4)).remove_columns("brand"), tokenizer, model.config
        )


def test_trainer_reduces_the_loss_and_saves(tmp_path, embedded):
    torch.manual_seed(0)
    model, tokenizer = build_tokenizer_model(get_preset("tiny"), embedded.attributes)
    items = embedded.items.select(range(32))
    args = stage_training_arguments(
        tmp_path / "ckpt",
        get_preset("tiny").tokenizer,
        num_train_epochs=6,
        learning_rate=2e-2,
        save_strategy="no",
    )
    trainer = train_dense_tokenizer(model, tokenizer, items, args)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.05
    gap = dense_information_gap(model, tokenizer, items, batch_size=8)
    assert gap["num_targets"] > 500 and gap["loss_own"] < gap["loss_other"]
    model.merge_lora().save_pretrained(tmp_path / "model")
    reloaded = StoreTokenizerModel.from_pretrained(tmp_path / "model")
    torch.testing.assert_close(reloaded.dense_embeddings, model.dense_embeddings)


def test_encode_items_is_order_and_batch_invariant(tiny, embedded):
    model, tokenizer = tiny
    texts = item_texts(embedded.items.select(range(12)), model.config.content_attributes)
    full = model.encode_items(texts, tokenizer, batch_size=5)
    assert (
        full.shape == (12, model.config.num_dense_tokens, model.embedding_dim)
        and full.dtype == torch.float32
    )
    one = model.encode_items(texts[7:8], tokenizer, batch_size=1)
    torch.testing.assert_close(one[0], full[7], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(full[0], full[1])
    bf16 = model.encode_items(texts, tokenizer, batch_size=5, bf16=True)
    assert (
        bf16.dtype == torch.float32
        and torch.nn.functional.cosine_similarity(bf16.flatten(1), full.flatten(1)).min() > 0.95
    )


@pytest.mark.parametrize("preset", ["cpu", "tiny", "paper"])
def test_training_precision_follows_the_preset_and_the_hardware(tmp_path, preset):
    """``bf16=None`` (cpu preset) trains under bf16 exactly where the machine computes it
    natively; explicit settings are kept as they are."""
    from store_hf.backbones import native_bf16

    settings = get_preset(preset)
    for stage in (settings.tokenizer, settings.recommender):
        args = stage_training_arguments(tmp_path, stage)
        expected = native_bf16() if stage.bf16 is None else stage.bf16
        assert args.bf16 is expected, (preset, stage)
