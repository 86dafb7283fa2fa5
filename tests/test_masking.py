import torch

from store_hf.masking import (
    CONTENT,
    DENSE,
    PAD,
    PLACEHOLDER,
    TASK,
    block_attention_allowed,
    block_position_ids,
    cascaded_attention_mask,
)

C, D, P, T, _ = CONTENT, DENSE, PLACEHOLDER, TASK, PAD


def test_cascaded_mask_matches_figure_4():
    blocks = torch.tensor([[_, C, C, D, D, P, P, T, T, _]])
    allowed = block_attention_allowed(blocks)[0]
    expected = torch.tensor(
        [
            # _  C  C  D  D  P  P  T  T  _      (keys)
            [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # pad: itself only (never a fully masked row)
            [0, 1, 0, 0, 0, 0, 0, 0, 0, 0],  # content: causal
            [0, 1, 1, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0, 0, 0, 0, 0, 0],  # dense: all content + causal
            [0, 1, 1, 1, 1, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 1, 0, 0, 0, 0],  # placeholder: causal within its block only
            [0, 0, 0, 0, 0, 1, 1, 0, 0, 0],
            [0, 0, 0, 0, 0, 1, 1, 1, 0, 0],  # task: all placeholders + causal
            [0, 0, 0, 0, 0, 1, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def test_additive_float_mask_and_positions():
    blocks = torch.tensor([[_, C, D, P, T, T]])
    mask = cascaded_attention_mask(blocks, torch.bfloat16)
    assert mask.shape == (1, 1, 6, 6) and mask.dtype == torch.bfloat16
    assert set(mask.unique().tolist()) == {0.0, torch.finfo(torch.bfloat16).min}
    assert block_position_ids(blocks).tolist() == [[0, 0, 1, 0, 1, 2]]
    # no NaN even for padding rows under sdpa
    q = torch.randn(1, 1, 6, 4)
    out = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask.float())
    assert not out.isnan().any()
