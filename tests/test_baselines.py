"""Baselines: MostPopular / Random on hand-built rows, SASRec on a synthetic pattern and its
invariants (causality, padding, save/load, errors)."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from store_hf.baselines import (
    MostPopular,
    RandomRecommender,
    SASRec,
    SASRecConfig,
    training_sequences,
)
from store_hf.data import RecDataset, leave_one_out
from store_hf.metrics import ranking_metrics

NUM_ITEMS = 20
ITEMS = [f"i{j}" for j in range(NUM_ITEMS)]


def successor_dataset(num_users: int = 300, seed: int = 0) -> RecDataset:
    """Users walk the catalogue in order (i3 -> i4 -> ... -> i19 -> i0), from a random start and
    for 5-10 steps, so the next item is a deterministic function of the last one."""
    rng = np.random.default_rng(seed)
    sequences = []
    for _ in range(num_users):
        start, length = int(rng.integers(NUM_ITEMS)), int(rng.integers(5, 11))
        sequences.append([ITEMS[(start + t) % NUM_ITEMS] for t in range(length)])
    return RecDataset(
        name="successor",
        items=Dataset.from_dict({"item_id": ITEMS, "title": [f"item {i}" for i in ITEMS]}),
        sequences=Dataset.from_dict(
            {"user_id": [f"u{n}" for n in range(num_users)], "item_ids": sequences}
        ),
    )


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """These tensors are tiny: with several threads, synchronisation costs more than the math
    (15x slower on a busy 2-core machine), so run this module on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = dict(hidden_size=32, num_layers=1, num_heads=2, max_len=10, batch_size=64, lr=5e-3)


@pytest.fixture(scope="module")
def trained() -> tuple[SASRec, object]:
    splits = leave_one_out(successor_dataset(), max_history=10)
    model = SASRec.fit(splits, SASRecConfig(**SMALL, dropout=0.1, epochs=12, patience=0))
    return model, splits


@pytest.fixture()
def untrained() -> SASRec:
    torch.manual_seed(0)
    return SASRec(ITEMS, SASRecConfig(**SMALL, dropout=0.0)).eval()


# ---- shared helpers --------------------------------------------------------------------------


def test_training_sequences_rebuilds_truncated_prefix_rows():
    ds = successor_dataset(num_users=30)
    splits = leave_one_out(ds, max_history=2)  # histories cut to 2, yet the chain is recovered
    expected = [seq[:-2] for seq in ds.sequences["item_ids"]]
    assert training_sequences(splits["train"]) == expected
    last_only = leave_one_out(ds, max_history=50, train_targets="last")
    assert training_sequences(last_only["train"]) == expected


# ---- popularity -------------------------------------------------------------------------------

# u1 trains on a b c, u2 on c b. Counting each interaction once: b 2, c 2, a 1, d 0. (Counting
# every row's history would give a 2, b 3, c 2 and put a above c.)
ROWS = {
    "user_id": ["u1", "u1", "u2"],
    "history": [["a"], ["a", "b"], ["c"]],
    "target": ["b", "c", "b"],
}


def test_most_popular_ranking():
    model = MostPopular().fit(ROWS, item_ids=["a", "b", "c", "d"])
    assert model.counts == {"b": 2, "c": 2, "a": 1, "d": 0}
    assert model.ranking == ["b", "c", "a", "d"]  # b/c tie keeps catalogue order
    assert model.recommend([["a"], []], k=3) == [["b", "c", "a"], ["b", "c", "a"]]
    assert model.recommend([["b", "a"]], k=3, exclude_history=True) == [["c", "d"]]
    assert model.rank_targets([["b"], ["b"], ["b"]], ["a", "b", "d"]).tolist() == [3, 1, 4]
    histories = [["b"], ["b"], ["b", "x"]]  # "x": never seen, excluded from nothing
    excluded = model.rank_targets(histories, ["a", "b", "d"], exclude_history=True)
    assert excluded.tolist() == [2, 0, 3]
    with pytest.raises(ValueError, match="'zz'"):
        model.rank_targets([["a"]], ["zz"])
    with pytest.raises(ValueError, match="'c'"):
        MostPopular().fit(ROWS, item_ids=["a", "b"])
    assert MostPopular().fit(ROWS).ranking == ["b", "c", "a"]  # catalogue = training items


def test_random_recommender_is_seeded_and_uniform():
    model = RandomRecommender(seed=3).fit(item_ids=ITEMS)
    histories = [["i1", "i2"]] * 400
    recs = model.recommend(histories, k=5)
    assert recs == RandomRecommender(seed=3).fit(item_ids=ITEMS).recommend(histories, k=5)
    assert recs != RandomRecommender(seed=4).fit(item_ids=ITEMS).recommend(histories, k=5)
    assert all(len(set(r)) == 5 and set(r) <= set(ITEMS) for r in recs)
    assert not any({"i1", "i2"} & set(r) for r in model.recommend(histories, 5, True))
    ranks = model.rank_targets(histories, ["i0"] * 400)
    assert ranks.min() >= 1 and ranks.max() <= NUM_ITEMS
    assert ranking_metrics(ranks, (5,))["recall@5"] == pytest.approx(5 / NUM_ITEMS, abs=0.06)


# ---- SASRec -----------------------------------------------------------------------------------


def test_sasrec_learns_successor_pattern(trained):
    model, splits = trained
    test = model.evaluate(splits["test"], ks=(1, 5))
    assert test["recall@1"] >= 0.95, test
    assert model.recommend([["i7", "i8"], ["i19"]], k=1) == [["i9"], ["i0"]]
    losses = [e["loss"] for e in model.fit_log]
    assert losses[-1] < 0.5 * losses[0]
    assert all("valid_ndcg@10" in e for e in model.fit_log)


def test_sasrec_early_stopping_restores_best_epoch():
    splits = leave_one_out(successor_dataset(num_users=60), max_history=10)
    # validation Recall@10 over 20 items reaches 1.0 within a few epochs and cannot improve on it
    config = SASRecConfig(**SMALL, epochs=30, patience=2, monitor="recall@10")
    model = SASRec.fit(splits, config)
    best = max(e["epoch"] for e in model.fit_log if e["best"])
    assert model.fit_log[best - 1]["valid_recall@10"] == 1.0
    assert [e["epoch"] for e in model.fit_log] == list(range(1, best + 3))  # stopped early
    # the returned weights are the best epoch's: a seeded run of that many epochs ends there too
    shorter = SASRec.fit(splits, SASRecConfig(**SMALL, epochs=best, monitor="recall@10"))
    for name, tensor in shorter.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_sasrec_training_is_deterministic():
    dataset = successor_dataset(num_users=40)
    splits = leave_one_out(dataset, max_history=10)
    a, c = (
        SASRec.fit(splits, SASRecConfig(**SMALL, epochs=2, seed=s), item_ids=ITEMS) for s in (1, 2)
    )
    # a RecDataset is split with max_history = max_len and keeps its own catalogue: same run
    b = SASRec.fit(dataset, SASRecConfig(**SMALL, epochs=2, seed=1))
    assert b.item_ids == ITEMS and b.fit_log[-1]["loss"] == a.fit_log[-1]["loss"]
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), name
    assert not torch.equal(a.item_emb.weight, c.item_emb.weight)


def test_sasrec_is_causal(untrained):
    ids = torch.tensor([[3, 5, 7, 9, 11, 13, 15, 17]])
    changed = ids.clone()
    changed[0, 5] = 2
    with torch.no_grad():
        before, after = untrained(ids), untrained(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_sasrec_scores_ignore_padding_and_batch_mates(untrained):
    short, long = ["i3", "i4", "i5"], ["i1", "i9", "i2", "i8", "i0", "i6", "i7"]
    alone = untrained.score(torch.tensor([[4, 5, 6]]), torch.tensor([3]))
    # whatever sits after a history (0 or real ids) is never attended to
    padded = torch.tensor([[4, 5, 6, 0, 0, 0, 0], [4, 5, 6, 11, 12, 13, 14]])
    torch.testing.assert_close(untrained.score(padded, torch.tensor([3, 3])), alone.repeat(2, 1))
    # the public API gives the same answer alone and batched with a longer history
    assert untrained.recommend([short], 5) == untrained.recommend([long, short], 5)[1:]
    targets = ["i6", "i2"]
    np.testing.assert_array_equal(
        untrained.rank_targets([short, long], targets, batch_size=1),
        untrained.rank_targets([short, long], targets, batch_size=2),
    )


def test_sasrec_rank_matches_recommend_and_exclusion(trained):
    model, splits = trained
    histories, targets = splits["test"]["history"][:50], splits["test"]["target"][:50]
    ranks = model.rank_targets(histories, targets)
    top = model.recommend(histories, k=NUM_ITEMS)
    assert [t[r - 1] for t, r in zip(top, ranks)] == list(targets)
    kept = model.recommend([["i1", "i2"]], k=NUM_ITEMS, exclude_history=True)[0]
    assert len(kept) == NUM_ITEMS - 2 and not {"i1", "i2"} & set(kept)
    assert model.rank_targets([["i1", "i2"]], ["i2"], exclude_history=True).tolist() == [0]


def test_sasrec_save_load_roundtrip(trained, tmp_path):
    model, splits = trained
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "sasrec.json",
        "sasrec.safetensors",
    ]
    loaded = SASRec.load(tmp_path / "m")
    assert loaded.config == model.config and loaded.item_ids == model.item_ids
    assert loaded.fit_log == model.fit_log
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    histories, targets = splits["test"]["history"], splits["test"]["target"]
    np.testing.assert_array_equal(
        loaded.rank_targets(histories, targets), model.rank_targets(histories, targets)
    )
    # a weights file of other weights is refused (the pairing is a hash of the content: a
    # second save of the same weights pairs, since it is the same file)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save(tmp_path / "other")
    (tmp_path / "m" / "sasrec.safetensors").write_bytes(
        (tmp_path / "other" / "sasrec.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="different saves"):
        SASRec.load(tmp_path / "m")


def test_sasrec_input_errors(untrained):
    with pytest.raises(ValueError, match="'unknown-item'"):
        untrained.recommend([["i1"], ["i2", "unknown-item"]], k=3)
    with pytest.raises(ValueError, match="'nope'"):
        untrained.rank_targets([["i1"]], ["nope"])
    with pytest.raises(ValueError, match="empty history"):
        untrained.recommend([[]], k=3)
    with pytest.raises(ValueError, match="duplicates"):
        SASRec(["a", "a"])
    with pytest.raises(ValueError, match="monitor"):
        SASRecConfig(monitor="mrr")
    with pytest.raises(ValueError, match="'zz'"):
        SASRec.fit(
            {"train": Dataset.from_dict({"user_id": ["u"], "history": [["i1"]], "target": ["zz"]})},
            SASRecConfig(**SMALL, epochs=1),
            item_ids=ITEMS,
        )
