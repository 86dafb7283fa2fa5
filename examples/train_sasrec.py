"""Train the SASRec baseline with leave-one-out splits and report full-ranking test metrics.

    python examples/train_sasrec.py --output-dir runs/sasrec
    python examples/train_sasrec.py --dataset path/to/folder --epochs 100 --output-dir runs/s

Per user, the last item is the test target and the second-to-last the validation target; SASRec
trains on the items before them, early-stops on validation NDCG@10 and ranks each test target
among all items (history items not excluded, as STORE evaluates). MostPopular, fitted on the same
training interactions, is reported alongside. Writes OUTPUT_DIR/model (the best SASRec) and
OUTPUT_DIR/metrics.json, and prints the metrics as JSON.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from store_hf.baselines import SASRec, SASRecConfig
from store_hf.baselines.script import (
    KS,
    baseline_parser,
    best_epoch,
    checked_config,
    finish,
    parse_args,
    start,
)
from store_hf.metrics import ranking_metrics


def main() -> None:
    parser = baseline_parser(__doc__)
    parser.add_argument(
        "--epochs", type=int, default=200, help="upper bound; early stopping ends sooner"
    )
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--dropout", type=float, default=0.5)
    args = parse_args(parser)
    started = time.perf_counter()
    config = checked_config(  # before the data is read
        parser,
        SASRecConfig,
        epochs=args.epochs,
        patience=args.patience,
        seed=args.seed,
        max_len=args.max_len,
        dropout=args.dropout,
    )
    data = start(args, max_history=args.max_len)  # seeded before the model is built
    train_started = time.perf_counter()
    model = SASRec.fit(data.splits, config, item_ids=data.dataset.item_ids, device=args.device)
    train_seconds = time.perf_counter() - train_started
    eval_started = time.perf_counter()
    ranks = model.rank_targets(data.test["history"], data.test["target"])
    eval_seconds = time.perf_counter() - eval_started
    model.save(f"{args.output_dir}/model")

    best = best_epoch(model.fit_log)
    report = {
        **data.summary(args.eval_seed),
        "sasrec": ranking_metrics(ranks, KS),
        "most_popular": data.popular_metrics(),
        "sasrec_best_epoch": best["epoch"],
        "sasrec_epochs_run": len(model.fit_log),
        "sasrec_valid_ndcg@10": best.get("valid_ndcg@10"),
        "config": vars(args) | {"sasrec": asdict(config)},
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    finish(args.output_dir, data, ranks, report)


if __name__ == "__main__":
    main()
