"""The dense tokenizer on tiny OPT and Llama backbones: equivalence, leaks, persistence."""

import subprocess
import sys

import pytest
import torch
from tiny import random_batch, tiny_store_config

from store_hf.masking import cascaded_forward, literal_inputs
from store_hf.modeling_store import StoreTokenizerModel

BACKBONES = [("opt", "eager"), ("opt", "sdpa"), ("llama", "eager"), ("llama", "sdpa")]


def _model(family, attn, lora=True, **kwargs):
    torch.manual_seed(0)
    model = StoreTokenizerModel(tiny_store_config(family, attn, **kwargs))
    assert model.backbone.config._attn_implementation == attn
    if lora:
        model.add_lora()
        with torch.no_grad():  # LoRA B starts at zero; make the adapters matter
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(std=0.1)
    return model.eval()


def _loss_and_grads(model, batch, path):
    model.zero_grad()
    out = model(**batch, path=path)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("family,attn", BACKBONES)
def test_fast_and_literal_paths_agree(family, attn):
    model = _model(family, attn)
    batch = random_batch()
    fast, g_fast = _loss_and_grads(model, batch, "fast")
    literal, g_lit = _loss_and_grads(model, batch, "literal")
    torch.testing.assert_close(fast.loss, literal.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.dense_states, literal.dense_states, rtol=1e-4, atol=1e-5)
    assert set(g_fast) == set(g_lit)
    trainable = set(g_fast)
    assert {"dense_embeddings", "task_embeddings", "placeholder_scaler.gain"} <= trainable
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert not any("embed_tokens" in n or "lm_head" in n for n in trainable)
    for name in trainable:
        torch.testing.assert_close(g_fast[name], g_lit[name], rtol=1e-4, atol=1e-6, msg=name)
        assert g_fast[name].abs().sum() > 0, f"no gradient reaches {name}"


@pytest.mark.parametrize("family,attn", BACKBONES)
def test_cascaded_mask_does_not_leak(family, attn):
    model = _model(family, attn, lora=False)
    batch = random_batch()
    embeds, blocks = literal_inputs(model, **batch)
    c, v = batch["content_input_ids"].shape[1], model.config.num_dense_tokens
    torch.manual_seed(1)
    embeds[:, c + v : c + 2 * v] = torch.randn(
        embeds.shape[0], v, embeds.shape[-1]
    )  # fixed placeholders
    task_real = blocks[:, c + 2 * v :] != 0

    def task_logits(e):
        states = cascaded_forward(model, e, blocks)[:, c + 2 * v :]
        return model.backbone.get_output_embeddings()(states)[task_real]

    base = task_logits(embeds)
    other_content = embeds.clone()
    other_content[:, : c + v] = torch.randn_like(
        other_content[:, : c + v]
    )  # content and dense inputs
    torch.testing.assert_close(task_logits(other_content), base, rtol=0, atol=0)
    other_ph = embeds.clone()
    other_ph[:, c + v : c + 2 * v] += torch.randn_like(other_ph[:, c + v : c + 2 * v])
    assert (task_logits(other_ph) - base).abs().max() > 1e-2


def test_wrapping_a_loaded_backbone_keeps_causal_attention():
    from tiny import tiny_text_config
    from transformers import AutoModelForCausalLM

    from store_hf.configuration_store import StoreConfig

    backbone = AutoModelForCausalLM.from_config(tiny_text_config("llama", "eager"))
    model = StoreTokenizerModel(StoreConfig(text_config=backbone.config), backbone=backbone).eval()
    assert model.backbone.config._attn_implementation is not None
    # causal: the first position's state must not depend on later tokens
    ids = torch.randint(3, 100, (1, 6))
    first = model._run(model._embed(ids), None, torch.arange(6)[None])[0, 0]
    ids[0, 3:] = torch.randint(3, 100, (3,))
    torch.testing.assert_close(
        model._run(model._embed(ids), None, torch.arange(6)[None])[0, 0], first
    )


def test_dense_tokens_do_not_depend_on_padding():
    model = _model("llama", "sdpa")
    batch = random_batch()
    dense = model.encode_dense(batch["content_input_ids"], batch["content_attention_mask"])
    for i in range(3):
        real = batch["content_attention_mask"][i].bool()
        alone = model.encode_dense(
            batch["content_input_ids"][i][real][None],
            torch.ones(1, int(real.sum()), dtype=torch.long),
        )
        torch.testing.assert_close(alone[0], dense[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_mean_pooled_item_embedding_is_the_backbone_mean_over_real_tokens(family):
    """The "without dense tokenizer" embedding: the mean of the backbone's last-layer states over
    an item's own tokens, whatever the padding of its batch."""
    model = _model(family, "sdpa")
    batch = random_batch()
    ids, mask = batch["content_input_ids"], batch["content_attention_mask"]
    pooled = model.encode_mean(ids, mask)
    assert pooled.shape == (ids.shape[0], model.embedding_dim)
    for i in range(3):
        real = mask[i].bool()
        states = model.backbone.base_model(input_ids=ids[i][real][None]).last_hidden_state
        torch.testing.assert_close(pooled[i], states[0].mean(0), rtol=1e-4, atol=1e-5)


def test_lora_save_load_and_merge(tmp_path):
    model = _model("llama", "sdpa")
    batch = random_batch()
    ref = model(**batch).loss
    model.save_pretrained(tmp_path / "lora")
    reloaded = StoreTokenizerModel.from_pretrained(tmp_path / "lora").eval()
    assert reloaded.config.lora_active
    torch.testing.assert_close(reloaded(**batch).loss, ref)
    model.merge_lora()
    assert not model.config.lora_active and not any(
        "lora" in n for n, _ in model.named_parameters()
    )
    torch.testing.assert_close(model(**batch).loss, ref, rtol=1e-5, atol=1e-6)


def test_tied_embeddings_survive_lora_and_save(tmp_path):
    config = tiny_store_config("llama", "sdpa")
    config.text_config.tie_word_embeddings = True
    torch.manual_seed(0)
    model = StoreTokenizerModel(config).add_lora()
    bb = model.backbone
    assert bb.get_output_embeddings().weight is bb.get_input_embeddings().weight
    model.save_pretrained(tmp_path)
    reloaded = StoreTokenizerModel.from_pretrained(tmp_path).backbone
    assert reloaded.get_output_embeddings().weight is reloaded.get_input_embeddings().weight
    torch.testing.assert_close(
        reloaded.get_input_embeddings().weight, bb.get_input_embeddings().weight
    )


REMOTE = """
import sys, torch
sys.modules["store_hf"] = None  # the package cannot be imported in this process
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
batch = torch.load(sys.argv[2])
with torch.no_grad():
    out = model(**batch)
torch.save({"loss": out.loss, "dense": out.dense_states}, sys.argv[3])
"""


@pytest.mark.parametrize("family", ["opt", "llama"])
def test_remote_code_round_trip_without_package(tmp_path, family):
    model = _model(family, "sdpa").merge_lora()
    batch = random_batch()
    with torch.no_grad():
        ref = model(**batch)
    model.save_pretrained(tmp_path / "model")
    assert {"modeling_store.py", "configuration_store.py", "masking.py"} <= {
        p.name for p in (tmp_path / "model").iterdir()
    }
    torch.save(batch, tmp_path / "batch.pt")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            REMOTE,
            str(tmp_path / "model"),
            str(tmp_path / "batch.pt"),
            str(tmp_path / "out.pt"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = torch.load(tmp_path / "out.pt")
    assert torch.equal(out["loss"], ref.loss) and torch.equal(out["dense"], ref.dense_states)
