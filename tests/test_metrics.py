"""store_hf.metrics: hand-computed values, scikit-learn cross-checks, accumulator, errors."""

import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

import store_hf.metrics.significance as significance_module
from store_hf.metrics import (
    RankingMetrics,
    binary_auc,
    bootstrap_interval,
    compare_systems,
    impression_metrics,
    mcnemar_test,
    paired_bootstrap,
    per_user_metric,
    ranking_metrics,
    target_ranks,
    wilson_interval,
)
from store_hf.metrics.significance import _bootstrap_means

# ----------------------------------------------------------------------------- retrieval


def test_target_ranks_hand_cases():
    recommended = [
        ["t", "a", "b"],  # rank 1
        ["a", "b", "t", "c"],  # rank 3
        ["a", "b"],  # missing
        [],  # empty list: missing
        ["a"] * 7 + ["t"],  # rank 2 after de-duplication, 8 raw
    ]
    targets = ["t"] * 5
    ranks = target_ranks(recommended, targets)
    assert ranks.dtype == np.int64
    np.testing.assert_array_equal(ranks, [1, 3, 0, 0, 2])
    np.testing.assert_array_equal(target_ranks(recommended, targets, dedupe=False), [1, 3, 0, 0, 8])


def test_target_ranks_accepts_tuples_arrays_and_int_ids():
    recommended = [("x", "y"), np.array(["p", "q", "r"]), [3, 1, 2]]
    ranks = target_ranks(recommended, ["y", "r", 2])
    np.testing.assert_array_equal(ranks, [2, 3, 3])
    # ids are compared with ==: the string "2" is not the int 2
    assert target_ranks([[3, 1, 2]], ["2"])[0] == 0


def test_ranking_metrics_hand_values():
    m = ranking_metrics([1, 3, 0], ks=(1, 2, 5))
    assert m["num_users"] == 3
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@2"] == pytest.approx(1 / 3)
    # rank 3: 1 / log2(4) = 0.5, so (1 + 0.5 + 0) / 3
    assert m["ndcg@5"] == pytest.approx(0.5)
    assert list(m) == [
        "recall@1",
        "recall@2",
        "recall@5",
        "ndcg@1",
        "ndcg@2",
        "ndcg@5",
        "num_users",
    ]

    single = ranking_metrics(np.array([3]), ks=(2, 3, 5))
    assert single["ndcg@2"] == 0.0 and single["recall@2"] == 0.0
    assert single["ndcg@3"] == 0.5 and single["ndcg@5"] == 0.5 and single["recall@3"] == 1.0
    assert ranking_metrics([2], ks=(5,))["ndcg@5"] == pytest.approx(1 / math.log2(3))


def test_ranking_metrics_default_ks_and_miss_encodings():
    m = ranking_metrics([1, 0, np.inf, 25, 20])
    assert [k for k in m if k.startswith("recall")] == [
        "recall@1",
        "recall@5",
        "recall@10",
        "recall@20",
    ]
    assert m["recall@20"] == pytest.approx(2 / 5)
    assert m["ndcg@20"] == pytest.approx((1 + 1 / math.log2(21)) / 5)
    # 0 and inf both mean "not retrieved"
    assert ranking_metrics([1, 0, 4]) == ranking_metrics([1, np.inf, 4.0])


def test_ranking_metrics_torch_input():
    torch = pytest.importorskip("torch")
    assert ranking_metrics(torch.tensor([1, 3, 0]), ks=(5,)) == ranking_metrics([1, 3, 0], ks=(5,))


def test_ndcg_never_exceeds_recall_for_single_target():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 40, size=500)
    m = ranking_metrics(ranks, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        assert m[f"ndcg@{k}"] <= m[f"recall@{k}"] + 1e-12
    assert m["ndcg@1"] == m["recall@1"]


def test_ranking_ndcg_matches_sklearn():
    rng = np.random.default_rng(42)
    num_users, num_items = 300, 40
    scores = rng.normal(size=(num_users, num_items))
    targets = rng.integers(0, num_items, size=num_users)
    relevance = np.zeros((num_users, num_items))
    relevance[np.arange(num_users), targets] = 1
    recommended = [[f"i{j}" for j in np.argsort(-row)[:25]] for row in scores]
    ranks = target_ranks(recommended, [f"i{t}" for t in targets])
    assert (ranks == 0).any() and (ranks > 0).any()  # lists of 25 out of 40: some misses
    m = ranking_metrics(ranks, ks=(1, 5, 10, 20))
    for k in (1, 5, 10, 20):
        assert m[f"ndcg@{k}"] == pytest.approx(ndcg_score(relevance, scores, k=k), abs=1e-12)
        true_rank = (scores > scores[np.arange(num_users), targets][:, None]).sum(1) + 1
        assert m[f"recall@{k}"] == pytest.approx(np.mean(true_rank <= k))


def test_duplicates_counted_once():
    # the target repeated: one hit, never two
    m = ranking_metrics(target_ranks([["t", "t", "t"]], ["t"]), ks=(3,))
    assert m["recall@3"] == 1.0 and m["ndcg@3"] == 1.0
    # duplicates of other items take no position with dedupe=True ...
    recs = [["a", "b", "a", "b", "t"]]
    assert target_ranks(recs, ["t"])[0] == 3
    assert ranking_metrics(target_ranks(recs, ["t"]), ks=(3,))["ndcg@3"] == 0.5
    # ... and keep their raw positions with dedupe=False
    assert ranking_metrics(target_ranks(recs, ["t"], dedupe=False), ks=(3,))["recall@3"] == 0.0


def test_accumulator_equals_one_shot():
    rng = np.random.default_rng(7)
    items = [f"item{i}" for i in range(30)]
    recommended = [
        list(rng.choice(items, size=rng.integers(0, 25), replace=True)) for _ in range(103)
    ]
    targets = list(rng.choice(items, size=103))
    one_shot = ranking_metrics(target_ranks(recommended, targets))

    acc = RankingMetrics()
    for start in range(0, 103, 16):  # uneven batches, the last one of 7
        batch_ranks = acc.update(recommended[start : start + 16], targets[start : start + 16])
        assert len(batch_ranks) == len(recommended[start : start + 16])
    assert acc.num_users == 103
    assert acc.compute() == one_shot
    assert one_shot["recall@20"] > 0  # the data has hits

    acc.reset()
    assert acc.num_users == 0
    acc.update_ranks(target_ranks(recommended, targets))
    assert acc.compute() == one_shot


def test_accumulator_empty_and_dedupe_flag():
    acc = RankingMetrics(ks=(2,))
    m = acc.compute()
    assert m["num_users"] == 0 and math.isnan(m["recall@2"]) and math.isnan(m["ndcg@2"])
    raw = RankingMetrics(ks=(2,), dedupe=False)
    deduped = RankingMetrics(ks=(2,))
    for acc in (raw, deduped):
        acc.update([["a", "a", "t"]], ["t"])
    assert raw.compute()["recall@2"] == 0.0
    assert deduped.compute()["recall@2"] == 1.0


def test_ranking_errors():
    with pytest.raises(ValueError, match="recommended"):
        target_ranks([["a"], ["b"]], ["a"])
    with pytest.raises(ValueError, match="recommended"):
        target_ranks(["abc"], ["a"])  # a bare string instead of a list of ids
    with pytest.raises(ValueError, match="targets"):
        target_ranks([["a", "b"]], "a")
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics([1, 2], ks=(0,))
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics([1, 2], ks=(5, -1))
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics([1, 2], ks=())
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics([1, 2], ks=(2.5,))
    with pytest.raises(ValueError, match="ks"):
        RankingMetrics(ks=(0, 10))
    with pytest.raises(ValueError, match="ranks"):
        ranking_metrics([1, -2])
    with pytest.raises(ValueError, match="ranks"):
        ranking_metrics([1.5])
    with pytest.raises(ValueError, match="ranks"):
        ranking_metrics([np.nan])
    with pytest.raises(ValueError, match="ranks"):
        ranking_metrics([[1, 2]])
    with pytest.raises(ValueError, match="ranks"):
        RankingMetrics().update_ranks([0, -1])


# ----------------------------------------------------------------------------- scoring


def _mind_mrr(y_true, y_score):
    """The official MIND evaluation script's mrr_score (no ties in the inputs used here)."""
    order = np.argsort(y_score)[::-1]
    y_true = np.take(y_true, order)
    return np.sum(y_true / (np.arange(len(y_true)) + 1)) / np.sum(y_true)


def _mind_ndcg(y_true, y_score, k):
    def dcg(y, s):
        y = np.take(y, np.argsort(s)[::-1][:k])
        return np.sum((2**y - 1) / np.log2(np.arange(len(y)) + 2))

    return dcg(y_true, y_score) / dcg(y_true, y_true)


def test_mrr_and_ndcg_hand_case():
    # sorted: 0.9 (0), 0.5 (1), 0.3 (0), 0.1 (1): clicks at ranks 2 and 4
    m = impression_metrics([np.array([0.1, 0.9, 0.5, 0.3])], [np.array([1, 0, 1, 0])])
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["ndcg@1"] == 0.0
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert m["ndcg@5"] == pytest.approx(expected)
    # positives 0.5, 0.1 vs negatives 0.9, 0.3: 1 winning pair of 4
    assert m["auc"] == pytest.approx(0.25)
    assert m["global_auc"] == pytest.approx(0.25)
    assert m["num_impressions"] == 1 and m["num_samples"] == 4
    assert m["num_skipped_auc"] == 0 and m["num_skipped_no_click"] == 0
    assert "gauc" not in m


def test_ties_are_averaged_and_order_independent():
    m = impression_metrics([[0.5, 0.5]], [[1, 0]], ks=(1, 2))
    assert m["auc"] == 0.5
    assert m["mrr"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)  # click first or second, equally likely
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(0.5 + 0.5 / math.log2(3))

    rng = np.random.default_rng(3)
    scores = [rng.integers(0, 3, size=12) / 2 for _ in range(20)]
    labels = [rng.integers(0, 2, size=12) for _ in range(20)]
    perms = [rng.permutation(12) for _ in range(20)]
    shuffled = impression_metrics(
        [s[p] for s, p in zip(scores, perms)], [y[p] for y, p in zip(labels, perms)]
    )
    assert shuffled == impression_metrics(scores, labels)


def test_impression_metrics_match_sklearn_and_mind_script():
    rng = np.random.default_rng(123)
    scores, labels, tied_scores = [], [], []
    for _ in range(150):
        n = int(rng.integers(2, 40))
        scores.append(rng.random(n))
        tied_scores.append(rng.integers(0, 4, size=n) / 3)  # many ties
        labels.append((rng.random(n) < 0.3).astype(int))
    for s_list, exact_mind in ((scores, True), (tied_scores, False)):
        m = impression_metrics(s_list, labels, ks=(1, 5, 10))
        both = [(s, y) for s, y in zip(s_list, labels) if 0 < y.sum() < len(y)]
        clicked = [(s, y) for s, y in zip(s_list, labels) if y.sum() > 0]
        assert m["num_skipped_auc"] == 150 - len(both) > 0
        assert m["num_skipped_no_click"] == 150 - len(clicked) > 0
        assert m["auc"] == pytest.approx(np.mean([roc_auc_score(y, s) for s, y in both]))
        for k in (1, 5, 10):
            ref = np.mean([ndcg_score(y[None], s[None], k=k) for s, y in clicked])
            assert m[f"ndcg@{k}"] == pytest.approx(ref)
        pooled = roc_auc_score(np.concatenate(labels), np.concatenate(s_list))
        assert m["global_auc"] == pytest.approx(pooled)
        if exact_mind:  # without ties the MIND script's argsort order is unambiguous
            assert m["mrr"] == pytest.approx(np.mean([_mind_mrr(y, s) for s, y in clicked]))
            for k in (1, 5, 10):
                ref = np.mean([_mind_ndcg(y, s, k) for s, y in clicked])
                assert m[f"ndcg@{k}"] == pytest.approx(ref)


def test_binary_auc_matches_sklearn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=1000)
    s = np.round(rng.normal(size=1000) + y * 0.5, 1)  # rounded: ties
    assert binary_auc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert binary_auc([0.2, 0.1, 0.3], [True, False, True]) == 1.0
    assert math.isnan(binary_auc([0.2, 0.1], [1, 1]))


def test_gauc_hand_case():
    scores = [
        [0.9, 0.1],  # user A: AUC 1
        [0.2, 0.8, 0.5],  # user A: AUC 0
        [0.3, 0.6],  # user B: AUC 0
        [0.4, 0.7],  # user C: no click, skipped
    ]
    labels = [[1, 0], [1, 0, 0], [1, 0], [0, 0]]
    users = ["A", "A", "B", "C"]
    m = impression_metrics(scores, labels, users)
    # A pooled: positives 0.9, 0.2 vs negatives 0.1, 0.8, 0.5 -> 4 of 6 pairs = 2/3
    # weights = samples: A 5, B 2 -> (5 * 2/3 + 2 * 0) / 7
    assert m["gauc"] == pytest.approx(10 / 21)
    assert m["num_users"] == 3 and m["num_skipped_gauc_users"] == 1
    by_imp = impression_metrics(scores, labels, users, gauc_weight="impressions")
    assert by_imp["gauc"] == pytest.approx((2 * 2 / 3 + 1 * 0) / 3)
    # per-impression AUC: (1 + 0 + 0) / 3, the all-0 impression skipped and counted
    assert m["auc"] == pytest.approx(1 / 3)
    assert m["num_skipped_auc"] == 1 and m["num_skipped_no_click"] == 1
    assert m["global_auc"] == pytest.approx(roc_auc_score(sum(labels, []), sum(scores, [])))


def test_gauc_matches_sklearn_per_user():
    rng = np.random.default_rng(11)
    scores = [rng.random(int(rng.integers(1, 15))) for _ in range(80)]
    labels = [(rng.random(len(s)) < 0.4).astype(int) for s in scores]
    users = rng.integers(0, 12, size=80).tolist()
    m = impression_metrics(scores, labels, users)
    num, den, skipped = 0.0, 0.0, 0
    for u in sorted(set(users)):
        s = np.concatenate([s for s, uu in zip(scores, users) if uu == u])
        y = np.concatenate([y for y, uu in zip(labels, users) if uu == u])
        if 0 < y.sum() < len(y):
            num += len(y) * roc_auc_score(y, s)
            den += len(y)
        else:
            skipped += 1
    assert m["gauc"] == pytest.approx(num / den)
    assert m["num_skipped_gauc_users"] == skipped


def test_impression_input_forms():
    two_d = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.8]])
    y = np.array([[0, 1, 0], [1, 0, 0]])
    as_lists = impression_metrics(list(two_d), list(y))
    assert impression_metrics(two_d, y) == as_lists
    assert impression_metrics(two_d, y.astype(bool)) == as_lists
    assert as_lists["auc"] == pytest.approx((1.0 + 0.5) / 2)
    torch = pytest.importorskip("torch")
    as_tensors = impression_metrics(list(torch.tensor(two_d)), list(torch.tensor(y)))
    assert as_tensors == as_lists
    empty = impression_metrics([], [])
    assert empty["num_impressions"] == 0 and math.isnan(empty["auc"]) and math.isnan(empty["mrr"])


def test_impression_errors():
    with pytest.raises(ValueError, match="labels"):
        impression_metrics([[0.1, 0.2]], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match=r"scores\[1\] and labels\[1\]"):
        impression_metrics([[0.1, 0.2], [0.3]], [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="labels"):
        impression_metrics([[0.1, 0.2]], [[2, 0]])
    with pytest.raises(ValueError, match="labels"):
        impression_metrics([[0.1, 0.2]], [[0.5, 0]])
    with pytest.raises(ValueError, match="scores"):
        impression_metrics([[np.nan, 0.2]], [[1, 0]])
    with pytest.raises(ValueError, match="user_ids"):
        impression_metrics([[0.1, 0.2]], [[1, 0]], user_ids=["a", "b"])
    with pytest.raises(ValueError, match="ks"):
        impression_metrics([[0.1, 0.2]], [[1, 0]], ks=(0,))
    with pytest.raises(ValueError, match="gauc_weight"):
        impression_metrics([[0.1, 0.2]], [[1, 0]], ["u"], gauc_weight="users")
    with pytest.raises(ValueError, match="labels"):
        binary_auc([0.1, 0.2], [1, 3])
    with pytest.raises(ValueError, match="same length"):
        binary_auc([0.1, 0.2], [1])


# ----------------------------------------------------------------------------- comparing systems


def _ranks_with_hit_rate(rng, num_users, hit_rate, max_rank=10):
    """Random ranks: a hit in 1..max_rank with probability ``hit_rate``, else a miss (0)."""
    hit = rng.random(num_users) < hit_rate
    return np.where(hit, rng.integers(1, max_rank + 1, size=num_users), 0)


def _mcnemar_exact(b, c):
    """Exact two-sided McNemar p with rational arithmetic: min(1, 2 P(X <= min(b, c)))."""
    n = b + c
    term = tail = 1  # C(n, 0); C(n, i) = C(n, i - 1) * (n - i + 1) / i, exact integers
    for i in range(1, min(b, c) + 1):
        term = term * (n - i + 1) // i
        tail += term
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def _paired_hits(b, c, both=0, neither=0):
    a = np.r_[np.ones(b), np.zeros(c), np.ones(both), np.zeros(neither)]
    other = np.r_[np.zeros(b), np.ones(c), np.ones(both), np.zeros(neither)]
    return a, other


def test_per_user_metric_means_equal_ranking_metrics():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 40, size=700)
    ks = (1, 5, 10, 20)
    m = ranking_metrics(ranks, ks=ks)
    for k in ks:
        for name in ("recall", "ndcg"):
            values = per_user_metric(ranks, f"{name}@{k}")
            assert values.shape == (700,) and values.dtype == np.float64
            assert values.mean() == pytest.approx(m[f"{name}@{k}"], abs=1e-15)
    np.testing.assert_array_equal(per_user_metric([1, 3, 0, 6], "recall@5"), [1, 1, 0, 0])
    np.testing.assert_allclose(per_user_metric([1, 3, 0, 6], "ndcg@5"), [1, 0.5, 0, 0])
    assert per_user_metric([2, np.inf], "ndcg@2").tolist() == [1 / math.log2(3), 0.0]


def test_per_user_metric_errors():
    for bad in ("mrr@10", "recall", "recall@", "recall@x", "recall@0", "ndcg@-1", "Recall@5"):
        with pytest.raises(ValueError, match="metric|K"):
            per_user_metric([1, 2], bad)
    with pytest.raises(ValueError, match="ranks"):
        per_user_metric([1, -2], "recall@5")


def test_wilson_interval_known_value():
    low, high = wilson_interval(10, 300)
    # hand formula, z = 1.959964 (97.5% normal quantile)
    z, n, p = 1.959963984540054, 300, 10 / 300
    center = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert low == pytest.approx(center - half, rel=1e-12)
    assert high == pytest.approx(center + half, rel=1e-12)
    assert (low, high) == pytest.approx((0.018205, 0.060262), abs=1e-6)
    # inside [0, 1] and containing p-hat; wider at higher confidence
    for hits, n in ((0, 20), (1, 20), (10, 20), (19, 20), (20, 20), (10, 300), (0, 1)):
        lo, hi = wilson_interval(hits, n)
        assert 0.0 <= lo <= hits / n <= hi <= 1.0
        lo99, hi99 = wilson_interval(hits, n, confidence=0.99)
        assert lo99 <= lo and hi <= hi99
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0
    assert wilson_interval(np.int64(10), np.int64(300)) == (low, high)


def test_wilson_interval_errors():
    for args in ((5, 0), (-1, 10), (11, 10), (2.5, 10), (True, 10)):
        with pytest.raises(ValueError, match="hits|n "):
            wilson_interval(*args)
    for confidence in (0.0, 1.0, 95):
        with pytest.raises(ValueError, match="confidence"):
            wilson_interval(5, 10, confidence=confidence)


def test_bootstrap_interval_covers_mean_and_narrows():
    rng = np.random.default_rng(1)
    small = (rng.random(200) < 0.3).astype(float)
    large = (rng.random(5000) < 0.3).astype(float)
    lo_s, hi_s = bootstrap_interval(small)
    lo_l, hi_l = bootstrap_interval(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # width ~ 1 / sqrt(n): 25x the users -> about 5x narrower
    assert (hi_l - lo_l) < (hi_s - lo_s) / 3
    # close to the normal approximation mean +- 1.96 SE
    se = large.std() / math.sqrt(len(large))
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * se, rel=0.1)
    # deterministic given the seed; a higher confidence widens it
    assert bootstrap_interval(small, seed=3) == bootstrap_interval(small, seed=3)
    lo99, hi99 = bootstrap_interval(small, confidence=0.99)
    assert lo99 <= lo_s and hi_s <= hi99
    # a constant sample has a zero-width interval
    assert bootstrap_interval(np.full(10, 0.25)) == (0.25, 0.25)


def test_bootstrap_chunking(monkeypatch):
    rng = np.random.default_rng(2)
    values = rng.random(300)
    one_chunk = bootstrap_interval(values, num_resamples=2001)
    # 7 resamples of 300 users per chunk: 286 chunks, the last one partial
    monkeypatch.setattr(significance_module, "_BOOTSTRAP_CHUNK_ELEMENTS", 7 * 300 + 5)
    chunked = bootstrap_interval(values, num_resamples=2001)
    assert chunked == pytest.approx(one_chunk, abs=0.01)
    assert chunked[0] < values.mean() < chunked[1]


def test_bootstrap_interval_errors():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_interval([])
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([0.1, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        bootstrap_interval([[0.1, 0.2]])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([0.1, 0.2], confidence=1.5)
    with pytest.raises(ValueError, match="num_resamples"):
        bootstrap_interval([0.1, 0.2], num_resamples=0)


def test_paired_bootstrap_detects_a_better_system():
    rng = np.random.default_rng(10)
    better = per_user_metric(_ranks_with_hit_rate(rng, 2000, 0.30), "recall@10")
    worse = per_user_metric(_ranks_with_hit_rate(rng, 2000, 0.20), "recall@10")
    r = paired_bootstrap(better, worse)
    assert set(r) == {"difference", "low", "high", "p_value"}
    assert r["difference"] == pytest.approx(better.mean() - worse.mean())
    assert r["low"] < r["difference"] < r["high"]
    assert r["low"] > 0 and r["p_value"] < 0.01
    # swapping the systems flips the difference and keeps the p-value
    swapped = paired_bootstrap(worse, better)
    assert swapped["difference"] == pytest.approx(-r["difference"])
    assert swapped["p_value"] == r["p_value"]
    assert swapped["high"] < 0


def test_paired_bootstrap_p_is_never_zero():
    # A clearly better system: no resample reaches 0, so the p-value is the add-one floor
    # 2 / (B + 1), the smallest value B resamples can support, never 0.
    better = np.ones(500)
    worse = np.r_[np.zeros(400), np.ones(100)]
    for resamples in (1_000, 10_000):
        r = paired_bootstrap(better, worse, num_resamples=resamples)
        assert r["p_value"] == pytest.approx(2 / (resamples + 1))
    # one resample at or below 0 out of B: (1 + 1) * 2 / (B + 1)
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.05, 1, 400), rng.normal(0, 1, 400)
    r = paired_bootstrap(a, b, num_resamples=2_000)
    means = _bootstrap_means(a - b, 2_000, 0)  # the resamples paired_bootstrap draws
    crossing = min((means <= 0).sum(), (means >= 0).sum())
    assert r["p_value"] == pytest.approx(min(1.0, 2 * (crossing + 1) / 2_001))


def test_paired_bootstrap_same_distribution_is_not_significant():
    rng = np.random.default_rng(20)
    a = per_user_metric(_ranks_with_hit_rate(rng, 2000, 0.25), "ndcg@10")
    b = per_user_metric(_ranks_with_hit_rate(rng, 2000, 0.25), "ndcg@10")
    r = paired_bootstrap(a, b, seed=1)
    assert r["p_value"] > 0.2
    assert r["low"] < 0 < r["high"]
    # identical systems: no difference at all, p = 1
    same = paired_bootstrap(a, a.copy())
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_paired_bootstrap_errors():
    with pytest.raises(ValueError, match="values_a has 3 users but values_b has 2"):
        paired_bootstrap([1.0, 0.0, 1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match="values_b"):
        paired_bootstrap([1.0], [np.nan])


def test_mcnemar_hand_cases():
    a, b = _paired_hits(0, 5, both=7, neither=3)  # concordant users are ignored
    assert mcnemar_test(a, b) == {"a_only": 0, "b_only": 5, "p_value": 0.0625}  # 2 / 2**5
    assert mcnemar_test(b, a) == {"a_only": 5, "b_only": 0, "p_value": 0.0625}
    # b = 1, c = 3: 2 * (1 + 4) / 16
    assert mcnemar_test(*_paired_hits(1, 3))["p_value"] == pytest.approx(10 / 16)
    assert mcnemar_test(*_paired_hits(4, 4))["p_value"] == 1.0
    assert mcnemar_test(*_paired_hits(0, 0, both=3, neither=2))["p_value"] == 1.0
    assert mcnemar_test([True, False], [True, False])["p_value"] == 1.0


def test_mcnemar_exact_for_large_counts():
    for b, c in ((3, 10), (40, 60), (480, 520), (4000, 4400), (4950, 5050), (0, 30), (200, 2000)):
        p = mcnemar_test(*_paired_hits(b, c))["p_value"]
        assert p == pytest.approx(_mcnemar_exact(b, c), rel=1e-9, abs=1e-300)


def test_mcnemar_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for b, c in ((0, 5), (2, 9), (17, 30), (250, 300), (4000, 4400), (5100, 4900), (6, 6)):
        ref = scipy_stats.binomtest(b, b + c, 0.5).pvalue
        assert mcnemar_test(*_paired_hits(b, c))["p_value"] == pytest.approx(ref, rel=1e-9)


def test_mcnemar_errors():
    with pytest.raises(ValueError, match="hits_a has 3 users but hits_b has 2"):
        mcnemar_test([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="hits_b"):
        mcnemar_test([1, 0], [1, 2])
    with pytest.raises(ValueError, match="empty"):
        mcnemar_test([], [])


def test_compare_systems():
    rng = np.random.default_rng(30)
    ranks_a = _ranks_with_hit_rate(rng, 2000, 0.30, max_rank=20)
    ranks_b = _ranks_with_hit_rate(rng, 2000, 0.20, max_rank=20)
    out = compare_systems(ranks_a, ranks_b, ks=(5, 20), num_resamples=2000)
    assert list(out) == ["recall@5", "recall@20", "ndcg@5", "ndcg@20"]
    ma, mb = ranking_metrics(ranks_a, ks=(5, 20)), ranking_metrics(ranks_b, ks=(5, 20))
    for key, r in out.items():
        assert r["difference"] == pytest.approx(ma[key] - mb[key])
        expected = paired_bootstrap(
            per_user_metric(ranks_a, key), per_user_metric(ranks_b, key), num_resamples=2000
        )
        assert {k: r[k] for k in expected} == expected
        assert ("mcnemar_p_value" in r) == key.startswith("recall")
    hits_a, hits_b = per_user_metric(ranks_a, "recall@20"), per_user_metric(ranks_b, "recall@20")
    assert out["recall@20"]["mcnemar_p_value"] == mcnemar_test(hits_a, hits_b)["p_value"]
    assert out["recall@20"]["mcnemar_p_value"] < 1e-6 and out["recall@20"]["p_value"] < 0.01
    # the default: K = 10, recall and NDCG; a system against itself
    same = compare_systems(ranks_a, ranks_a)
    assert list(same) == ["recall@10", "ndcg@10"]
    assert same["recall@10"]["p_value"] == 1.0 and same["recall@10"]["mcnemar_p_value"] == 1.0
    assert list(compare_systems(ranks_a, ranks_b, metrics=("ndcg",), num_resamples=10)) == [
        "ndcg@10"
    ]


def test_compare_systems_errors():
    with pytest.raises(ValueError, match="ranks_a has 3 users but ranks_b has 2"):
        compare_systems([1, 2, 0], [1, 2])
    with pytest.raises(ValueError, match="metric"):
        compare_systems([1, 2], [2, 1], metrics=("mrr",))
    with pytest.raises(ValueError, match="ks"):
        compare_systems([1, 2], [2, 1], ks=(0,))
    with pytest.raises(ValueError, match="ranks_b"):
        compare_systems([1, 2], [2, -1])
