"""Speed of the dense tokenizer's fast path vs the literal (paper) path, per item, at 4 tasks.

    python benchmarks/tokenizer_paths.py                      # tiny OPT-like model (seconds)
    python benchmarks/tokenizer_paths.py --backbone smollm2-135m --items 16

Both paths compute the same loss and gradients (tests/test_modeling_tokenizer.py); this prints
the time of one forward+backward over the same real items (embedded Amazon Scientific set) and
the ratio, measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch

from store_hf.data import load_embedded_dataset
from store_hf.modeling_store import StoreTokenizerModel
from store_hf.templates import default_task_setup
from store_hf.training import DenseTokenizerCollator, tokenize_items


def time_path(model, batch, path: str, repeats: int) -> float:
    model(**batch, path=path).loss.backward()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        model.zero_grad(set_to_none=True)
        model(**batch, path=path).loss.backward()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="tiny-opt")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-content-length", type=int, default=128)
    parser.add_argument("--max-target-length", type=int, default=32)
    args = parser.parse_args()
    torch.manual_seed(0)
    dataset = load_embedded_dataset()
    content, tasks = default_task_setup(dataset.attributes)
    model, tokenizer = StoreTokenizerModel.from_backbone(
        args.backbone,
        content_attributes=content,
        tasks=tasks,
        max_content_length=args.max_content_length,
        max_target_length=args.max_target_length,
    )
    model.add_lora().train()
    items = tokenize_items(dataset.items.select(range(args.items)), tokenizer, model.config)
    batch = DenseTokenizerCollator(tokenizer.pad_token_id)([items[i] for i in range(len(items))])
    fast = time_path(model, batch, "fast", args.repeats)
    literal = time_path(model, batch, "literal", args.repeats)
    n = args.items
    print(
        f"backbone {args.backbone}, {n} items x {len(tasks)} tasks, content <= {args.max_content_length} tokens, "
        f"targets <= {args.max_target_length} tokens, torch threads {torch.get_num_threads()}"
    )
    print(f"literal path: {1000 * literal / n:8.1f} ms per item (forward + backward)")
    print(f"fast path:    {1000 * fast / n:8.1f} ms per item (forward + backward)")
    print(f"speed-up of the fast path: {literal / fast:.2f}x")


if __name__ == "__main__":
    main()
