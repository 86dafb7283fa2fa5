"""StoreForGenerativeRec: extended vocabulary, constrained beam search, scoring, Hub round trip."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessorList

from store_hf.backbones import load_tokenizer, tiny_backbone_config
from store_hf.configuration_store import StoreConfig
from store_hf.modeling_store import StoreForGenerativeRec, StoreTokenizerModel
from store_hf.prompts import left_pad

V, K, N = 3, 16, 120


def _rec(family="opt", tied=True, codes=None, n=N, seed=0):
    torch.manual_seed(seed)
    if tied:
        tok_model, tok = StoreTokenizerModel.from_backbone(
            f"tiny-{family}", content_attributes=["title"], num_dense_tokens=V, codebook_size=K
        )
    else:  # a backbone with its own output layer, as configured (Llama-3 style)
        tok = load_tokenizer("tiny-llama")
        cfg = tiny_backbone_config(
            family, len(tok), tok.pad_token_id, tok.eos_token_id, tok.bos_token_id
        )
        cfg.tie_word_embeddings = False
        bb = AutoModelForCausalLM.from_config(cfg)
        config = StoreConfig(
            text_config=bb.config,
            attn_implementation="sdpa",
            content_attributes=["title"],
            num_dense_tokens=V,
            codebook_size=K,
        )
        tok_model = StoreTokenizerModel(config, backbone=bb)
    if codes is None:  # distinct random code tuples
        gen = torch.Generator().manual_seed(seed)
        keys = torch.randperm(K**V, generator=gen)[:n]
        codes = torch.stack([keys // K**2, keys // K % K, keys % K], dim=1)
    ids = [f"i{j}" for j in range(len(codes))]
    rec = StoreForGenerativeRec.from_tokenizer_model(
        tok_model, tok, ids, codes, lora_r=4, lora_alpha=8, max_history=5
    ).add_lora()
    with torch.no_grad():  # LoRA B starts at zero; make the adapters matter
        for name, p in rec.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    return rec.eval(), tok


def _histories(num, n=N, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [
        [
            f"i{j}"
            for j in torch.randint(
                0, n, (int(torch.randint(1, 8, (1,), generator=gen)),), generator=gen
            ).tolist()
        ]
        for _ in range(num)
    ]


@pytest.mark.parametrize("family,tied", [("opt", True), ("llama", False)])
def test_recommend_matches_stock_constrained_generate(family, tied):
    rec, _ = _rec(family, tied)
    histories = _histories(6)
    out = rec.recommend(histories, k=8, num_beams=8)
    ids, mask = left_pad(rec._history_prompts(histories), rec._pad_id())
    gen = rec.generate(
        input_ids=ids,
        attention_mask=mask,
        num_beams=8,
        num_return_sequences=8,
        max_new_tokens=V,
        do_sample=False,
        logits_processor=LogitsProcessorList([rec.trie_processor()]),
        output_scores=True,
        return_dict_in_generate=True,
    )
    offsets = rec.config.code_token_offset + torch.arange(V) * K
    stock_codes = (gen.sequences[:, -V:] - offsets).view(len(histories), 8, V)
    assert torch.equal(out.codes, stock_codes)
    # generate divides the summed log-probability by the length (v for every beam)
    torch.testing.assert_close(out.scores, gen.sequences_scores.view(-1, 8) * V)


def test_every_recommendation_is_a_catalogue_item():
    rec, _ = _rec("llama", tied=True, n=40)
    histories = _histories(40, n=40, seed=3)
    out = rec.recommend(histories, k=20, num_beams=20, batch_size=7)
    catalogue = set(rec.config.item_ids)
    for items, scores in zip(out.item_ids, out.scores):
        assert len(items) == 20 and len(set(items)) == 20 and set(items) <= catalogue
        assert torch.all(scores[:-1] >= scores[1:]) and torch.isfinite(scores).all()
    assert rec.trie.contains(out.codes.reshape(-1, V)).all()


def test_fewer_items_than_beams_and_shared_code_sequences():
    # 5 items, two pairs sharing a code sequence (collision resolution off)
    codes = torch.tensor([[1, 2, 3], [1, 2, 3], [1, 2, 4], [5, 6, 7], [5, 6, 7]])
    rec, _ = _rec("opt", codes=codes)
    out = rec.recommend([["i0", "i3"], ["i2"]], k=10, num_beams=10)
    for items, scores in zip(out.item_ids, out.scores):
        assert sorted(items) == ["i0", "i1", "i2", "i3", "i4"]  # each item once, at item level
        assert torch.isinf(scores[5:]).all()
        pos = {item: i for i, item in enumerate(items)}
        assert abs(pos["i0"] - pos["i1"]) == 1 and scores[pos["i0"]] == scores[pos["i1"]]


def test_position_mode_only_constrains_each_position():
    codes = torch.tensor([[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    rec, _ = _rec("opt", codes=codes)
    out = rec.recommend([["i0"]], k=9, num_beams=27, mode="position")
    # any combination of the codes used per position may come out; only real items are returned
    assert set(out.item_ids[0]) <= {"i0", "i1", "i2"}
    assert out.codes.shape == (1, 27, V) and torch.all(out.codes <= 2)
    assert len({tuple(c) for c in out.codes[0].tolist()}) == 27


def test_training_step_trains_code_rows_and_lora_only():
    rec, _ = _rec("llama", tied=False)
    rec.train()
    history = rec.item_codes[:4]
    prompt = rec.prompts.recommendation(history)
    target = rec.prompts.item_tokens(rec.item_codes[7])
    ids = torch.tensor([prompt + target])
    labels = torch.tensor([[-100] * len(prompt) + target])
    out = rec(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert out.logits is None and out.loss > 0
    out.loss.backward()
    emb, head = rec.get_input_embeddings(), rec.get_output_embeddings()
    assert emb.weight.grad is None and head.weight.grad is None  # the word vocabulary is frozen
    touched = emb.code_weight.grad.abs().sum(-1) > 0
    input_rows = torch.tensor(prompt + target[:-1]) - rec.config.code_token_offset
    assert set(touched.nonzero().flatten().tolist()) == set(input_rows[input_rows >= 0].tolist())
    assert (head.code_weight.grad.abs().sum(-1) > 0).all()  # every code row gets softmax gradient
    lora = [p.grad for n, p in rec.named_parameters() if "lora_" in n]
    assert lora and all(g is not None for g in lora)
    trainable = [n for n, p in rec.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.endswith("code_weight") for n in trainable)


def test_loss_equals_cross_entropy_of_full_logits():
    rec, _ = _rec("opt")
    ids = torch.tensor([rec.prompts.recommendation(rec.item_codes[:3]) + [0, 0]])
    ids[0, -2:] = torch.tensor(rec.prompts.item_tokens(rec.item_codes[5])[:2])
    labels = torch.full_like(ids, -100)
    labels[0, -2:] = ids[0, -2:]
    with torch.no_grad():
        loss = rec(input_ids=ids, labels=labels).loss
        logits = rec(input_ids=ids).logits
    assert logits.shape[-1] == rec.config.code_token_offset + V * K
    ref = torch.nn.functional.cross_entropy(logits[0, -3:-1], ids[0, -2:])
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)


def test_score_is_a_yes_probability_and_unknown_ids_fail():
    rec, tok = _rec("opt")
    scores = rec.score([["i1", "i2"], ["i3"]], ["i4", "i5"])
    assert scores.shape == (2,) and torch.all((scores > 0) & (scores < 1))
    yes, no = rec.prompts.answer_ids
    assert tok.decode([yes]) == " yes" and tok.decode([no]) == " no"
    with pytest.raises(KeyError, match="'nope'"):
        rec.recommend([["i1", "nope"]])
    with pytest.raises(ValueError, match="histories"):
        rec.score([["i1"]], ["i2", "i3"])


@pytest.mark.parametrize("tied", [True, False])
def test_tie_or_its_absence_survives_save_and_load(tmp_path, tied):
    rec, _ = _rec("llama", tied=tied)
    rec.save_pretrained(tmp_path)
    back = StoreForGenerativeRec.from_pretrained(tmp_path)
    emb, head = back.get_input_embeddings(), back.get_output_embeddings()
    assert head.tied == tied and (head.weight is emb.weight) == tied
    assert (head.code_rows is emb.code_weight) == tied
    torch.testing.assert_close(head.weight, rec.get_output_embeddings().weight)
    torch.testing.assert_close(head.code_rows, rec.get_output_embeddings().code_rows)
    torch.testing.assert_close(emb.code_weight, rec.get_input_embeddings().code_weight)
    assert torch.equal(back.item_codes, rec.item_codes)
    # what the Trainer does with the best checkpoint: a tied head's rows are the only keys the
    # file lacks, and the model declares them (re-tied, not reported missing)
    from safetensors.torch import load_file

    loaded = rec.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    assert not loaded.unexpected_keys
    assert loaded.missing_keys == (rec._keys_to_ignore_on_save or [])
    assert bool(loaded.missing_keys) == tied


REMOTE = """
import sys, torch
sys.modules["store_hf"] = None  # the package cannot be imported in this process
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
out = model.recommend([["i1", "i2"], ["i9"]], k=5)
torch.save({"items": out.item_ids, "scores": out.scores}, sys.argv[2])
"""


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_remote_code_recommender_without_package(tmp_path, family):
    rec, _ = _rec(family)
    rec.merge_lora()
    ref = rec.recommend([["i1", "i2"], ["i9"]], k=5)
    rec.save_pretrained(tmp_path / "model")
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"modeling_store.py", "prompts.py", "trie.py", "masking.py"} <= files
    proc = subprocess.run(
        [sys.executable, "-c", REMOTE, str(tmp_path / "model"), str(tmp_path / "out.pt")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert out["items"] == ref.item_ids
    torch.testing.assert_close(out["scores"], ref.scores)


def test_auto_classes_resolve_to_the_package_classes(tmp_path):
    from transformers import AutoModelForCausalLM

    import store_hf

    rec, _ = _rec("opt")
    rec.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert type(loaded) is store_hf.StoreForGenerativeRec
    assert torch.equal(loaded.item_codes, rec.item_codes)


AUTO_MODEL = """
import json, sys, torch
sys.modules["store_hf"] = None  # the package cannot be imported in this process
from transformers import AutoModel, AutoModelForCausalLM, LogitsProcessorList
new, old = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(new, trust_remote_code=True).eval()
assert type(model).__name__ == "StoreForGenerativeRec", type(model)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
v, k, offset = model.config.num_dense_tokens, model.config.codebook_size, model.config.code_token_offset
prompt = torch.tensor([model.prompts.recommendation(model.item_codes[model.item_rows(["i1", "i2"])])])
generated = model.generate(
    prompt,
    attention_mask=torch.ones_like(prompt),
    num_beams=5,
    num_return_sequences=5,
    max_new_tokens=v,
    do_sample=False,
    logits_processor=LogitsProcessorList([model.trie_processor()]),
)
codes = generated[:, prompt.shape[1] :] - offset - k * torch.arange(v)
generate_items = [model.config.item_ids[r] for r in model.trie.lookup(codes).tolist()]
# a folder saved before AutoModel was in its auto_map still loads as it did
before = AutoModelForCausalLM.from_pretrained(old, trust_remote_code=True).eval()
with open(sys.argv[3], "w") as f:
    json.dump(
        {
            "generate": generate_items,
            "recommend": model.recommend([["i1", "i2"]], k=5).item_ids[0],
            "before": before.recommend([["i1", "i2"]], k=5).item_ids[0],
        },
        f,
    )
"""


def _as_saved_before_auto_model(folder):
    """Rewrite a saved recommender's config.json as the package wrote it before ``AutoModel``,
    ``custom_pipelines`` and ``item_titles`` (``auto_map``: AutoConfig, AutoModelForCausalLM)."""
    import json

    path = folder / "config.json"
    config = json.loads(path.read_text())
    del config["auto_map"]["AutoModel"]
    for key in ("custom_pipelines", "item_titles"):
        config.pop(key, None)
    path.write_text(json.dumps(config))
    return folder


def test_auto_model_loads_the_recommender_without_package(tmp_path):
    import json
    import shutil

    from store_hf.hub import check_model_folder

    rec, _ = _rec("opt", n=40)
    rec.merge_lora()
    ref = rec.recommend([["i1", "i2"]], k=5).item_ids[0]
    rec.save_pretrained(tmp_path / "model")
    auto_map = json.loads((tmp_path / "model" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == auto_map["AutoModelForCausalLM"]
    assert auto_map["AutoModel"] == "modeling_store.StoreForGenerativeRec"
    old = _as_saved_before_auto_model(Path(shutil.copytree(tmp_path / "model", tmp_path / "old")))
    check_model_folder(old)
    assert (
        StoreForGenerativeRec.from_pretrained(old).recommend([["i1", "i2"]], k=5).item_ids[0] == ref
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            AUTO_MODEL,
            str(tmp_path / "model"),
            str(old),
            str(tmp_path / "out.json"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["recommend"] == ref and out["before"] == ref
    # stock generate with the trie processor runs the same constrained beam search
    assert sorted(out["generate"]) == sorted(ref)


def test_tokenizer_folder_keeps_auto_model_for_the_tokenizer_model(tmp_path):
    import json

    torch.manual_seed(0)
    tok_model, _ = StoreTokenizerModel.from_backbone(
        "tiny-opt", content_attributes=["title"], num_dense_tokens=V, codebook_size=K
    )
    tok_model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_store.StoreConfig",
        "AutoModel": "modeling_store.StoreTokenizerModel",
    }
    assert "custom_pipelines" not in config
