"""Train the TIGER baseline end to end and report test Recall/NDCG@1/5/10/20.

    python examples/train_tiger.py --output-dir runs/tiger
    python examples/train_tiger.py --output-dir runs/tiger-cpu --size cpu --epochs 8 --threads 1

Steps (each timed in the printed JSON):

1. item texts (title, brand, categories) -> all-MiniLM-L6-v2 sentence embeddings (cached in
   OUTPUT_DIR/item_embeddings.npy and reused when the texts and model are the same);
2. RQ-VAE -> 3 codes of 256 per item + the collision position -> unique 4-code semantic IDs;
3. a T5 trained from scratch to generate the next item's semantic ID from the history's
   (leave-one-out: the last item is the test target, the one before it the validation target;
   early stopping on validation NDCG@10 over a fixed user sample);
4. constrained beam search (20 beams, every beam a catalogue item) over the test users -- all of
   them, or a seeded random sample of ``--max-test-users`` (stated in the output).

MostPopular on the same test users is reported alongside. Writes OUTPUT_DIR/model (TIGER),
OUTPUT_DIR/codes.npy, OUTPUT_DIR/metrics.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from store_hf.baselines.script import (
    KS,
    baseline_parser,
    best_epoch,
    checked_config,
    finish,
    parse_args,
    start,
)
from store_hf.baselines.text_encoder import DEFAULT_MODEL, encode_texts, item_texts
from store_hf.baselines.tiger import TIGER, TIGERConfig
from store_hf.metrics import ranking_metrics
from store_hf.semantic_ids.rqvae import RQVAE, RQVAEConfig

#: ``paper``: TIGER's T5 as published (4 + 4 layers, d_model 128, 6 heads of 64, d_ff 1024);
#: ``cpu``: 2 + 2 layers, 4 heads of 32, d_ff 256, for runs on a small CPU.
SIZES = {
    "paper": {"d_ff": 1024},
    "cpu": {"num_layers": 2, "num_heads": 4, "d_kv": 32, "d_ff": 256, "lr": 3e-3},
}


def item_embeddings(dataset, model: str, out: Path, batch_size: int, device: str):
    """Embeddings of the item texts, reused from ``out`` when texts and model match."""
    texts = item_texts(dataset.items)
    key = hashlib.sha256(json.dumps([model, texts]).encode()).hexdigest()
    path, meta = out / "item_embeddings.npy", out / "item_embeddings.json"
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("key") == key:
        return np.load(path), True
    vectors = encode_texts(texts, model=model, batch_size=batch_size, device=device)
    np.save(path, vectors)
    meta.write_text(json.dumps({"key": key, "model": model, "shape": list(vectors.shape)}))
    return vectors, False


def main() -> None:
    parser = baseline_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=30, help="upper bound for the T5")
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--lr", type=float, help="T5 learning rate (default: the size's)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--max-history", type=int, default=20)
    parser.add_argument("--num-user-tokens", type=int, default=0, help="TIGER uses 2000")
    parser.add_argument(
        "--valid-max-users", type=int, default=1000, help="validation sample for early stopping"
    )
    parser.add_argument("--rqvae-epochs", type=int, default=RQVAEConfig.epochs)
    parser.add_argument("--text-model", default=DEFAULT_MODEL)
    args = parse_args(parser)
    # every setting checked before anything is read or written
    rq_config = checked_config(parser, RQVAEConfig, epochs=args.rqvae_epochs, seed=args.seed)
    config = checked_config(
        parser,
        TIGERConfig,
        **{
            **SIZES[args.size],
            **({"lr": args.lr} if args.lr else {}),
            "epochs": args.epochs,
            "patience": args.patience,
            "batch_size": args.batch_size,
            "num_beams": args.num_beams,
            "max_history": args.max_history,
            "num_user_tokens": args.num_user_tokens,
            "valid_max_users": args.valid_max_users,
            "seed": args.seed,
            "eval_seed": args.eval_seed,
        },
    )
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    def lap(name: str, since: float) -> None:
        seconds[name] = round(time.perf_counter() - since, 1)
        logging.info("%s done in %.1f s", name, seconds[name])

    started = t = time.perf_counter()
    data = start(args, max_history=args.max_history)  # seeded before anything is built
    dataset, splits, test = data.dataset, data.splits, data.test
    lap("load_and_split", t)

    t = time.perf_counter()
    vectors, cached = item_embeddings(dataset, args.text_model, out, 64, args.device)
    lap("encode_texts", t)

    t = time.perf_counter()
    rqvae = RQVAE(vectors.shape[1], rq_config)
    codes = rqvae.fit(vectors)
    np.save(out / "codes.npy", codes)
    lap("rqvae", t)
    rq_report = {k: v for k, v in rqvae.report.items() if k != "config"}

    t = time.perf_counter()
    model = TIGER.fit(
        splits, codes, config, item_ids=dataset.item_ids, device=args.device,
        callback=lambda e: print(json.dumps(e), flush=True),
    )  # fmt: skip
    lap("train_t5", t)
    model.save(out / "model")

    t = time.perf_counter()
    users = test["user_id"] if config.num_user_tokens else None
    ranks = model.rank_targets(test["history"], test["target"], users, max(max(KS), args.num_beams))
    lap("test_beam_search", t)

    best = best_epoch(model.fit_log)
    report = {
        **data.summary(args.eval_seed),
        "tiger": ranking_metrics(ranks, KS),
        "most_popular": data.popular_metrics(),
        "semantic_ids": rq_report,
        "t5_parameters": sum(p.numel() for p in model.model.parameters()),
        "t5_best_epoch": best["epoch"],
        "t5_epochs_run": len(model.fit_log),
        "t5_valid_ndcg@10": best.get("valid_ndcg@10"),
        "t5_valid_recall@10": best.get("valid_recall@10"),
        "embeddings_reused_from_cache": cached,
        "config": vars(args) | {"tiger": asdict(config), "rqvae": asdict(rq_config)},
        "seconds": seconds | {"total": round(time.perf_counter() - started, 1)},
        "torch_threads": torch.get_num_threads(),
    }
    finish(out, data, ranks, report)


if __name__ == "__main__":
    main()
