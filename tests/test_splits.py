import pytest

from store_hf.data import DataFormatError, leave_one_out, sample_users, user_split


def test_leave_one_out_protocol(embedded):
    splits = leave_one_out(embedded)
    assert len(splits["test"]) == len(splits["validation"]) == embedded.num_users
    seqs = dict(zip(embedded.sequences["user_id"], embedded.sequences["item_ids"]))
    for row in splits["test"].select(range(200)):
        seq = seqs[row["user_id"]]
        assert row["target"] == seq[-1] and row["history"] == seq[:-1][-20:]
    for row in splits["validation"].select(range(200)):
        seq = seqs[row["user_id"]]
        assert row["target"] == seq[-2] and row["history"] == seq[:-2][-20:]
    # every training row predicts an item before the validation target
    assert len(splits["train"]) == sum(len(s) - 3 for s in seqs.values())
    longest = max(seqs, key=lambda u: len(seqs[u]))
    assert len(seqs[longest]) == 78
    test_row = splits["test"][embedded.sequences["user_id"].index(longest)]
    assert len(test_row["history"]) == 20


def test_leave_one_out_options(embedded):
    splits = leave_one_out(embedded, max_history=3, train_targets="last")
    assert len(splits["train"]) == embedded.num_users
    assert max(len(h) for h in splits["test"]["history"]) == 3
    with pytest.raises(DataFormatError, match="max_history"):
        leave_one_out(embedded, max_history=0)


def test_user_split_is_disjoint_and_deterministic(embedded):
    a = user_split(embedded, num_test_users=500, num_validation_users=300, seed=3)
    b = user_split(embedded, num_test_users=500, num_validation_users=300, seed=3)
    c = user_split(embedded, num_test_users=500, num_validation_users=300, seed=4)
    assert a["test"]["user_id"] == b["test"]["user_id"] != c["test"]["user_id"]
    test_users, valid_users = set(a["test"]["user_id"]), set(a["validation"]["user_id"])
    train_users = set(a["train"]["user_id"])
    assert len(test_users) == 500 and len(valid_users) == 300
    assert (
        not (test_users & valid_users)
        and not (test_users & train_users)
        and not (valid_users & train_users)
    )
    assert len(train_users) == embedded.num_users - 800
    with pytest.raises(DataFormatError, match="the dataset has 8317"):
        user_split(embedded, num_test_users=9000)


def test_sample_users_depends_only_on_the_users_and_the_seed(embedded):
    splits = leave_one_out(embedded)
    test, valid = splits["test"], splits["validation"]
    a = sample_users(test, 50, seed=1)
    assert len(set(a["user_id"])) == len(a) == 50
    assert list(a["user_id"]) == sorted(a["user_id"], key=list(test["user_id"]).index)  # order kept
    assert list(sample_users(test, 50, seed=1)["user_id"]) == list(a["user_id"])
    assert set(sample_users(test, 50, seed=2)["user_id"]) != set(a["user_id"])
    # the same user set in another split gives the same users (systems on different rows agree)
    assert set(sample_users(valid, 50, seed=1)["user_id"]) == set(a["user_id"])
    assert sample_users(test, None) is test and sample_users(test, len(test)) is test
    train = splits["train"]  # several rows per user: all of a chosen user's rows are kept
    some = sample_users(train, 20, seed=0)
    assert len(set(some["user_id"])) == 20
    chosen = set(some["user_id"])
    assert len(some) == sum(u in chosen for u in train["user_id"])
