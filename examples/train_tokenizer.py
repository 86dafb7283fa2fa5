"""Post-pretrain STORE's dense tokenizer on a dataset and report what the dense tokens carry.

    python examples/train_tokenizer.py --preset cpu --output-dir runs/tokenizer-cpu
    accelerate launch --num_processes 2 examples/train_tokenizer.py --preset tiny --output-dir runs/t

Writes the merged model + tokenizer to OUTPUT_DIR/model and OUTPUT_DIR/tokenizer_metrics.json with
the target loss given an item's own dense tokens vs another item's, before and after training.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from transformers import set_seed

from store_hf.data import load_dataset_or_embedded
from store_hf.presets import PRESETS, get_preset
from store_hf.training import (
    DenseTokenizerCollator,
    build_tokenizer_model,
    calibrate_placeholder_scaler,
    dense_information_gap,
    stage_training_arguments,
    tokenize_items,
    train_dense_tokenizer,
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset", help="dataset folder (default: the embedded Amazon Scientific set)"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--backbone", help="override the preset's backbone (Hub id, folder, .gguf)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--max-items", type=int, help="override the preset's training subset size")
    parser.add_argument(
        "--eval-items", type=int, default=96, help="held-out items for the own/other loss"
    )
    parser.add_argument("--epochs", type=float, help="override the preset's epochs")
    parser.add_argument(
        "--placeholder-scaling", choices=["standardize", "rms", "none"], default="standardize"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, help="override the preset's learning rate (LoRA)")
    parser.add_argument(
        "--embedding-lr", type=float, help="learning rate of dense/task embeddings, gain"
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    set_seed(args.seed)  # torch, numpy and random, before the model and its LoRA are built
    preset = get_preset(args.preset, **({"backbone": args.backbone} if args.backbone else {}))
    dataset = load_dataset_or_embedded(args.dataset)
    items = dataset.items.shuffle(seed=args.seed)
    n_train = min(
        args.max_items or preset.tokenizer.max_items or len(items), len(items) - args.eval_items
    )
    train_items = items.select(range(n_train))
    eval_items = items.select(range(len(items) - args.eval_items, len(items)))

    model, tokenizer = build_tokenizer_model(
        preset, dataset.attributes, placeholder_scaling=args.placeholder_scaling
    )
    collator = DenseTokenizerCollator(tokenizer.pad_token_id)
    calibrate_placeholder_scaler(
        model, collator, tokenize_items(train_items, tokenizer, model.config)
    )
    before = dense_information_gap(model, tokenizer, eval_items)
    logging.info("before training: %s", before)

    overrides = {"num_train_epochs": args.epochs} if args.epochs else {}
    if args.lr:
        overrides["learning_rate"] = args.lr
    training_args = stage_training_arguments(
        Path(args.output_dir) / "checkpoints", preset.tokenizer, seed=args.seed, **overrides
    )
    start = time.time()
    trainer = train_dense_tokenizer(
        model,
        tokenizer,
        train_items,
        training_args,
        embedding_learning_rate=args.embedding_lr or preset.tokenizer.embedding_learning_rate,
    )
    seconds = time.time() - start
    after = dense_information_gap(model, tokenizer, eval_items)
    logging.info("after training: %s", after)

    if trainer.is_world_process_zero():
        out = Path(args.output_dir)
        model.merge_lora()
        model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
        report = {
            "preset": preset.name,
            "backbone": preset.backbone,
            "placeholder_scaling": args.placeholder_scaling,
            "learning_rate": training_args.learning_rate,
            "embedding_learning_rate": args.embedding_lr
            or preset.tokenizer.embedding_learning_rate,
            "train_items": n_train,
            "eval_items": args.eval_items,
            "train_seconds": round(seconds, 1),
            "train_loss_curve": [h["loss"] for h in trainer.state.log_history if "loss" in h],
            "before": before,
            "after": after,
        }
        (out / "tokenizer_metrics.json").write_text(json.dumps(report, indent=2))
        print(
            json.dumps(
                {"before": before, "after": after, "train_seconds": round(seconds, 1)}, indent=2
            )
        )


if __name__ == "__main__":
    main()
