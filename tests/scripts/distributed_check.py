"""Both trainings and item encoding, for comparing one process with `accelerate launch` (2 CPU
processes over gloo). Writes losses and embeddings to the JSON/pt file named by argv[1]."""

import json
import os
import sys
from dataclasses import replace

import torch
from datasets import DatasetDict

from store_hf.data import load_embedded_dataset
from store_hf.data.splits import leave_one_out
from store_hf.item_encoding import encode_items
from store_hf.modeling_store import StoreForGenerativeRec
from store_hf.presets import get_preset
from store_hf.templates import packed_templates
from store_hf.training import (
    build_tokenizer_model,
    item_texts,
    stage_training_arguments,
    train_dense_tokenizer,
    train_recommender,
)

out_dir = sys.argv[1]
world = int(os.environ.get("WORLD_SIZE", "1"))
torch.manual_seed(0)
dataset = load_embedded_dataset()
preset = get_preset("tiny")
settings = replace(preset.tokenizer, batch_size=16, per_device_batch_size=16 // world, max_steps=2)
model, tokenizer = build_tokenizer_model(preset, dataset.attributes)
items = dataset.items.select(range(32))
args = stage_training_arguments(
    f"{out_dir}/tok-ckpt", settings, seed=0, save_strategy="no", dataloader_drop_last=True
)
trainer = train_dense_tokenizer(model, tokenizer, items, args)
tok_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
model.merge_lora()
embeddings = encode_items(
    model,
    item_texts(dataset.items.select(range(21)), model.config.content_attributes),
    tokenizer,
    batch_size=4,
    show_progress=False,
)

gen = torch.Generator().manual_seed(0)
codes = torch.randint(0, model.config.codebook_size, (len(dataset.items), 4), generator=gen)
rec = StoreForGenerativeRec.from_tokenizer_model(
    model,
    tokenizer,
    dataset.items["item_id"],
    codes,
    lora_r=4,
    lora_alpha=8,
    templates=packed_templates(model.config.templates),  # the tiny preset trains packed
).add_lora()
splits = leave_one_out(dataset)
splits = DatasetDict(
    train=splits["train"].select(range(64)), validation=splits["validation"].select(range(8))
)
rec_settings = replace(
    preset.recommender,
    batch_size=16,
    per_device_batch_size=16 // world,
    max_steps=2,
    max_train_users=None,
    max_eval_users=None,
    scoring_negatives=0,
    alignment=False,
    eval_steps=1000,
    early_stopping_metric="loss",
    # the length-grouped sampler draws megabatches per process batch size, which differs
    # between the 1- and 2-process runs: plain random order makes them comparable
    group_by_length=False,
    # one example per training target: every example has v labelled tokens, so the logged loss
    # (Trainer averages the processes' token means) is comparable between 1 and 2 processes
    layout="per-prefix",
)
result = train_recommender(
    rec,
    tokenizer,
    splits,
    dataset.items,
    model.config.content_attributes,
    rec_settings,
    f"{out_dir}/rec-ckpt",
)
rec_losses = [h["loss"] for h in result["joint_log"] + result["rec_log"] if "loss" in h]
if int(os.environ.get("RANK", "0")) == 0:
    torch.save(embeddings, f"{out_dir}/embeddings.pt")
    with open(f"{out_dir}/losses.json", "w") as f:
        json.dump({"world": world, "tokenizer": tok_losses, "recommender": rec_losses}, f)
