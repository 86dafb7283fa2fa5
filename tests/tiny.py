"""Tiny randomly initialised backbones built in code (no Hub access in tests)."""

import csv
import json

import torch
from transformers import LlamaConfig, OPTConfig

from store_hf.configuration_store import StoreConfig


def tiny_text_config(family: str, attn: str = "eager", vocab_size: int = 128):
    if family == "opt":
        cfg = OPTConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            ffn_dim=64,
            num_attention_heads=4,
            word_embed_proj_dim=32,
            max_position_embeddings=256,
            dropout=0.0,
            attention_dropout=0.0,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        )
    else:
        cfg = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
    cfg._attn_implementation = attn
    return cfg


def tiny_store_config(family: str = "opt", attn: str = "eager", **kwargs) -> StoreConfig:
    kwargs.setdefault("content_attributes", ["title", "brand"])
    kwargs.setdefault(
        "tasks",
        [
            {"attribute": "title", "kind": "reconstruction"},
            {"attribute": "brand", "kind": "reconstruction"},
            {"attribute": "categories", "kind": "generation"},
            {"attribute": "description", "kind": "generation"},
        ],
    )
    kwargs.setdefault("lora_r", 4)
    kwargs.setdefault("lora_alpha", 8)
    kwargs.setdefault("lora_dropout", 0.0)
    return StoreConfig(
        text_config=tiny_text_config(family, attn), attn_implementation=attn, **kwargs
    )


def random_batch(
    num_items=3, content_lens=(7, 4, 9), target_lens=(3, 5, 2, 4), vocab=128, seed=0, num_tasks=4
):
    """A collated batch: left-padded content, every item with every task, right-padded labels."""
    g = torch.Generator().manual_seed(seed)
    width = max(content_lens)
    ids = torch.full((num_items, width), 1, dtype=torch.long)
    mask = torch.zeros((num_items, width), dtype=torch.long)
    for i, n in enumerate(content_lens[:num_items]):
        ids[i, width - n :] = torch.randint(3, vocab, (n,), generator=g)
        mask[i, width - n :] = 1
    item_index = torch.arange(num_items).repeat_interleave(num_tasks)
    task_ids = torch.arange(num_tasks).repeat(num_items)
    t_width = max(target_lens)
    labels = torch.full((len(item_index), t_width), -100, dtype=torch.long)
    for s in range(len(item_index)):
        n = target_lens[s % len(target_lens)]
        labels[s, :n] = torch.randint(3, vocab, (n,), generator=g)
    return {
        "content_input_ids": ids,
        "content_attention_mask": mask,
        "task_item_index": item_index,
        "task_ids": task_ids,
        "labels": labels,
    }


def save_tiny_recommender(folder, num_items: int = 40):
    """Save a recommender of ``num_items`` items ``i0``, ``i1``, ... (v 3, k 16) on a tiny random
    OPT with SmolLM2's tokenizer into ``folder``; returns the folder (seconds)."""
    from store_hf.modeling_store import StoreForGenerativeRec, StoreTokenizerModel

    torch.manual_seed(0)
    tok_model, tok = StoreTokenizerModel.from_backbone(
        "tiny-opt", content_attributes=["title"], num_dense_tokens=3, codebook_size=16
    )
    j = torch.arange(num_items)
    codes = torch.stack([j // 16, j % 16, j % 7], 1)
    ids = [f"i{n}" for n in range(num_items)]
    rec = StoreForGenerativeRec.from_tokenizer_model(tok_model, tok, ids, codes)
    rec.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_generic_dataset(folder, embedded, num_users=150):
    """The first users of the embedded Amazon set, rewritten as generic items/interactions."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    for user, seq in zip(
        embedded.sequences["user_id"][:num_users], embedded.sequences["item_ids"][:num_users]
    ):
        for t, item in enumerate(seq):
            rows.append((user, item, 1_600_000_000 + t))
            used.add(item)
    with open(folder / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(rows)
    with open(folder / "items.jsonl", "w") as f:
        for row in embedded.items:
            if row["item_id"] in used:
                f.write(json.dumps({k: row[k] for k in ("item_id", "title", "brand")}) + "\n")
    return folder / "items.jsonl", folder / "interactions.csv"


def tiny_run_args(root, embedded, *extra: str) -> list[str]:
    """``store-hf run`` arguments of the tiny preset on the first 150 embedded users (as a
    generic dataset under ``root/data``), into ``root/out`` (about a minute)."""
    items, interactions = write_generic_dataset(root / "data", embedded)
    args = ["run", "--preset", "tiny", "--output-dir", str(root / "out"), *extra]
    args += ["--dataset-format", "generic", "--items", str(items)]
    return args + ["--interactions", str(interactions)]
