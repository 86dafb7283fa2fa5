"""STORE's retrieval metrics (Recall@K = HitRate@K, NDCG@K of one held-out target per user) as a
Hugging Face ``evaluate`` module.

Load it from the installed package, offline (a local path never reaches the Hub)::

    import evaluate
    from store_hf.metrics import evaluate_module_path

    metric = evaluate.load(evaluate_module_path())
    metric.compute(predictions=[["a", "b"], ["c"]], references=["b", "d"], ks=[1, 5])

``evaluate`` copies this script into its modules cache and imports it from there, so it computes
with the installed ``store_hf.metrics`` (:func:`~store_hf.metrics.target_ranks` and
:func:`~store_hf.metrics.ranking_metrics`) instead of a copy of their definitions: the numbers are
the package's, duplicates and all.
"""

import datasets
import evaluate

try:
    from store_hf.metrics import DEFAULT_KS, ranking_metrics, target_ranks
except ImportError as e:  # the script was copied out of the package it computes with
    raise ImportError(
        "the store_ranking evaluate module computes with the store-hf package "
        f"(store_hf.metrics), which cannot be imported here ({e}); pip install store-hf"
    ) from e

_DESCRIPTION = """\
Top-K retrieval with one held-out target item per user, as in the STORE paper (Tables 3 and 4).
With r the 1-based rank of the target in the user's ranked list of predicted item ids:
recall@K = 1[r <= K] (= HitRate@K) and ndcg@K = 1 / log2(r + 1) if r <= K else 0, averaged over
users. A target not in the list scores 0 for every K; lists may be shorter than K. Only the first
occurrence of an item counts (dedupe=True drops repeats before ranking). Definitions:
store_hf.metrics (docs/metrics.md).
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: one ranked list of item ids per user, best first (strings or integers).
    references: the held-out target item id of each user (same type as the predictions).
    ks: cut-offs K, each an integer >= 1 (default: 1, 5, 10, 20).
    dedupe: True (default): repeated items take no rank position; False: raw list positions.
Returns:
    recall@K and ndcg@K for every K (recall first), and num_users.
Example:
    >>> metric = evaluate.load(store_hf.metrics.evaluate_module_path())
    >>> metric.compute(predictions=[["a", "b"], ["c"]], references=["b", "d"], ks=[1, 2])
    {'recall@1': 0.0, 'recall@2': 0.5, 'ndcg@1': 0.0, 'ndcg@2': 0.31546487678572877, 'num_users': 2}
"""

_CITATION = """\
@article{liu2024store,
  title   = {STORE: Streamlining Semantic Tokenization and Generative Recommendation with A Single LLM},
  author  = {Liu, Qijiong and Zhu, Jieming and Fan, Lu and Zhao, Zhou and Wu, Xiao-Ming},
  journal = {arXiv preprint arXiv:2409.07276},
  year    = {2024}
}
"""


def _features(item: str) -> datasets.Features:
    return datasets.Features(
        {"predictions": datasets.Sequence(datasets.Value(item)), "references": datasets.Value(item)}
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StoreRanking(evaluate.Metric):
    """Recall@K and NDCG@K of ranked item lists against one target per user."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # string ids (Amazon ASINs, MIND news ids) or integer ids (MovieLens, RecBole)
            features=[_features("string"), _features("int64")],
            reference_urls=["https://arxiv.org/abs/2409.07276"],
        )

    def _compute(self, predictions, references, ks=DEFAULT_KS, dedupe=True) -> dict:
        ranks = target_ranks(predictions, references, dedupe=dedupe)
        return ranking_metrics(ranks, ks)
