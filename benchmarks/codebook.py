"""Semantic codebook (PCA + per-position k-means) on the embedded Amazon Scientific items.

    python benchmarks/codebook.py                          # MiniLM, 4 attributes, all 4,344 items
    python benchmarks/codebook.py --items 1200 --k 64
    python benchmarks/codebook.py --embeddings dense_tokens.npy   # (num_items, v, hidden)

Without --embeddings each item gets v=4 vectors: the all-MiniLM-L6-v2 sentence embedding
(mean-pooled, L2-normalised) of its title, brand, categories and description (empty attribute ->
empty string). Prints, measured in this run: fit time, utilisation per position, collision rate
before/after resolution, largest group, items moved and the distortion increase of the
resolution, and the embedding-table sizes of the memory model (paper section 2.1). With
--holdout F the last F of the items are left out of the fit and added with ``assign``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from store_hf.semantic_ids import SemanticCodebook, embedding_memory

ATTRIBUTES = ("title", "brand", "categories", "description")


def minilm_embed(texts: list[str], max_length: int = 64) -> np.ndarray:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings ``(len(texts), 384)``."""
    from store_hf.baselines.text_encoder import encode_texts

    return encode_texts(texts, max_length=max_length)


def report(book: SemanticCodebook, label: str) -> None:
    s = book.statistics()
    r = s["resolution"]
    print(
        f"\n== {label}: pca={s['pca']}, k={s['codebook_size']}, d={s['dim']}, engine={s['engine']}"
    )
    print(
        f"fit: {s['fit_seconds']:.2f} s for {s['fit_items']} items x {s['num_positions']} "
        f"positions (PCA explained variance {', '.join(f'{v:.3f}' for v in s['pca_explained_variance'])})"
    )
    for p in s["positions"]:
        print(
            f"  position {p['position']}: utilisation {p['utilisation']:.3f} "
            f"({p['used_clusters']}/{s['codebook_size']}), sizes min {p['size_min']} "
            f"max {p['size_max']} mean {p['size_mean']:.1f} std {p['size_std']:.1f}, "
            f"cv {p['size_cv']:.3f}, normalised entropy {p['normalised_entropy']:.4f}"
        )
    print(
        f"collisions before: rate {s['collision_rate_before']:.4f} "
        f"({s['colliding_items_before']} items in {s['colliding_groups_before']} groups), "
        f"largest group {s['largest_group_before']}"
    )
    print(
        f"collisions after:  rate {s['collision_rate_after']:.4f}, "
        f"largest group {s['largest_group_after']}"
    )
    print(
        f"resolution: {r['moved_items']} items moved ({100 * r['moved_share']:.2f}%), "
        f"changed per position {r['moved_at_position']}"
    )
    print(
        f"  distortion (sum of squared PCA distances over positions): mean before "
        f"{r['mean_distortion_before']:.4f}, after {r['mean_distortion_after']:.4f}; "
        f"increase per moved item {r['mean_distortion_increase_moved']:.4f} "
        f"(+{100 * r['relative_distortion_increase_moved']:.1f}% of their own), "
        f"over all items {r['mean_distortion_increase_all']:.4f} "
        f"(+{100 * r['relative_distortion_increase_all']:.2f}%)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embeddings", help=".npy file of shape (num_items, v, hidden)")
    parser.add_argument("--items", type=int, default=None, help="use the first N items")
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--pca-dim", type=int, default=32)
    parser.add_argument("--pca", choices=["shared", "per_position", "both"], default="both")
    parser.add_argument("--engine", choices=["sklearn", "faiss"], default="sklearn")
    parser.add_argument("--max-length", type=int, default=64, help="MiniLM truncation")
    parser.add_argument("--holdout", type=float, default=0.0, help="share added via assign")
    parser.add_argument("--plot", help="write the cluster-size PNG here")
    args = parser.parse_args()

    if args.embeddings:
        x = np.load(args.embeddings)
        if args.items:
            x = x[: args.items]
        ids = [str(i) for i in range(len(x))]
        print(f"embeddings {args.embeddings}: shape {x.shape}")
    else:
        from store_hf.data import load_embedded_dataset

        items = load_embedded_dataset().items
        if args.items:
            items = items.select(range(min(args.items, len(items))))
        start = time.perf_counter()
        x = np.stack(
            [minilm_embed(items[a], max_length=args.max_length) for a in ATTRIBUTES], axis=1
        )
        ids = items["item_id"]
        print(
            f"MiniLM embeddings of {', '.join(ATTRIBUTES)} for {len(x)} items: shape {x.shape}, "
            f"{time.perf_counter() - start:.1f} s (max_length {args.max_length})"
        )
    n_fit = len(x) - int(round(args.holdout * len(x)))
    modes = ["shared", "per_position"] if args.pca == "both" else [args.pca]
    for mode in modes:
        book = SemanticCodebook(
            codebook_size=args.k, pca_dim=args.pca_dim, pca=mode, engine=args.engine
        ).fit(x[:n_fit], item_ids=ids[:n_fit])
        report(book, "fit")
        if n_fit < len(x):
            start = time.perf_counter()
            new = book.assign(x[n_fit:], item_ids=ids[n_fit:])
            moved = int((new != book.raw_codes[n_fit:]).any(axis=1).sum())
            print(
                f"assign: {len(new)} new items in {time.perf_counter() - start:.3f} s, "
                f"{moved} moved to avoid a taken tuple; catalogue unique: "
                f"{len(np.unique(book.codes, axis=0)) == len(book)}"
            )
        if args.plot:
            print(f"plot: {book.plot_cluster_sizes(args.plot.replace('.png', f'_{mode}.png'))}")
    v, hidden = x.shape[1], x.shape[2]
    mem = embedding_memory(len(x), hidden, args.k, v)
    print(
        f"\nmemory model (floats): id_table N*D = {len(x)}*{hidden} = {mem['id_table']:,}; "
        f"code_table k*v*D = {args.k}*{v}*{hidden} = {mem['code_table']:,} "
        f"({mem['id_table'] / mem['code_table']:.2f}x smaller)"
    )


if __name__ == "__main__":
    main()
