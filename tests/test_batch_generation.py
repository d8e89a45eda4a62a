"""Batched generation with left padding (chapter 10): `GPT.forward(..., attention_mask=...)`,
`RotaryEmbedding.at`, `minigpt.generate.left_pad` and `generate_batch`.

Three oracles: the same prompts generated one by one (`generate`), the logits of each prompt run
alone, and transformers (the weights copied by `minigpt.hf.hf_model_from_minigpt`, offline) given
the same left-padded batch with its attention mask and position ids. The models are tiny, with a
large init_std, so that greedy decoding never sits on a near-tie a 1e-6 rounding could flip.
"""

import pytest
import torch

from minigpt.attention import padded_causal_mask
from minigpt.config import GPTConfig
from minigpt.errors import ConfigError
from minigpt.generate import generate, generate_batch, left_pad
from minigpt.model import GPT
from minigpt.rope import RotaryEmbedding

BASE = dict(vocab_size=64, block_size=48, n_layer=2, n_head=4, n_embd=32, init_std=0.3, tie_weights=False)
MODERN = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
MODELS = {
    "gpt2": GPTConfig(**BASE),  # learned positions: a position mistake changes the logits at once
    "modern-gqa": GPTConfig(**BASE, **MODERN, n_kv_head=2),  # RoPE, 2 kv heads for 4 query heads
    "qwen3-mqa": GPTConfig(**BASE, **MODERN, n_kv_head=1, attn_logits="qk_norm"),
}
PROMPTS = [[5, 9, 1, 33, 7, 2], [17], [40, 41, 42], [3, 8, 60, 12, 0, 44]]  # unequal, one of 1, two longest


def _model(name, impl="manual"):
    torch.manual_seed(0)
    return GPT(MODELS[name].replace(attn_impl=impl)).eval()


def test_left_pad_right_aligns_every_prompt():
    ids, mask = left_pad([[5, 6, 7], [8], [9, 10]], pad_id=63)
    assert ids.tolist() == [[5, 6, 7], [63, 63, 8], [63, 9, 10]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert ids.dtype == mask.dtype == torch.long


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("name", list(MODELS))
def test_generate_batch_equals_generating_each_prompt_alone(name, impl):
    model = _model(name, impl)
    batch = generate_batch(model, PROMPTS, 16)
    alone = [list(generate(model, p, 16, temperature=0, use_cache=True, stop_at_eos=False)) for p in PROMPTS]
    assert batch == alone
    assert len({tuple(row) for row in batch}) == len(PROMPTS)  # a real test: the rows differ


def test_the_pad_id_does_not_change_the_tokens():
    model = _model("gpt2")
    assert generate_batch(model, PROMPTS, 8, pad_id=0) == generate_batch(model, PROMPTS, 8, pad_id=63)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("name", list(MODELS))
def test_padded_logits_at_real_positions_equal_the_unpadded_ones(name, impl):
    model = _model(name, impl)
    ids, mask = left_pad(PROMPTS, pad_id=0)
    P = ids.shape[1]
    with torch.no_grad():
        padded, _ = model(ids, attention_mask=mask)  # (B, P, V)
        assert torch.isfinite(padded).all()  # padding rows too: no NaN to leak into the real rows
        for row, prompt in enumerate(PROMPTS):
            alone, _ = model(torch.tensor([prompt]))
            torch.testing.assert_close(padded[row, P - len(prompt):], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("name", list(MODELS))
def test_a_padded_cache_gives_the_logits_of_each_row_alone(name, impl):
    """Prefill a padded chunk, then a chunk of 2, then single tokens: each with the mask of all positions so far."""
    model = _model(name, impl)
    g = torch.Generator().manual_seed(1)
    ids, mask = left_pad(PROMPTS, pad_id=0)
    B, P = ids.shape
    more = torch.randint(0, 64, (B, 4), generator=g)  # the tokens that follow, the same for every row
    with torch.no_grad():
        cache = model.new_cache(B, max_len=P + 4)
        parts = [model(ids, cache=cache, attention_mask=mask)[0][:, -1:]]
        for a, b in ((0, 2), (2, 3), (3, 4)):
            mask = torch.cat((mask, torch.ones(B, b - a, dtype=torch.long)), dim=1)
            parts.append(model(more[:, a:b], cache=cache, attention_mask=mask)[0])
        cached = torch.cat(parts, dim=1)  # (B, 5, V): the last prompt position and the 4 that follow
        for row, prompt in enumerate(PROMPTS):
            alone, _ = model(torch.cat((torch.tensor(prompt), more[row]))[None])
            torch.testing.assert_close(cached[row], alone[0, -5:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "modern-gqa", "qwen3-mqa"])
def test_left_padded_logits_equal_transformers_with_its_attention_mask(name):
    pytest.importorskip("transformers")
    from minigpt.hf import hf_model_from_minigpt

    model = _model(name)
    hf = hf_model_from_minigpt(model, bos_token_id=0, eos_token_id=0)  # ids within the tiny vocabulary
    ids, mask = left_pad(PROMPTS, pad_id=0)
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)  # what transformers' generate passes for left padding
    with torch.no_grad():
        ours, _ = model(ids, attention_mask=mask)
        theirs = hf(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    real = mask.bool()
    assert (ours[real] - theirs[real]).abs().max().item() <= 1e-5


def test_without_a_mask_and_with_an_all_ones_mask_the_logits_agree():
    for name in MODELS:
        model = _model(name)
        idx = torch.randint(0, 64, (2, 9), generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            torch.testing.assert_close(model(idx, attention_mask=torch.ones(2, 9, dtype=torch.bool))[0],
                                       model(idx)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_a_row_of_padding_only_stays_finite_and_changes_no_other_row(impl):
    model = _model("modern-gqa", impl)
    ids = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0]])
    with torch.no_grad():
        logits, _ = model(ids, attention_mask=mask)
        alone, _ = model(ids[:1])
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits[0], alone[0], atol=1e-5, rtol=1e-5)


def test_padded_causal_mask_is_causal_and_real_keys_plus_each_querys_own_position():
    mask = padded_causal_mask(torch.tensor([[0, 1, 1], [0, 0, 1]]), T=2)  # 2 queries at positions 1 and 2
    assert mask.shape == (2, 1, 2, 3)
    assert mask[0, 0].tolist() == [[False, True, False], [False, True, True]]
    assert mask[1, 0].tolist() == [[False, True, False], [False, False, True]]  # a pad query sees itself only


def test_rope_at_per_row_positions_equals_the_contiguous_tables():
    for scaling in (None, {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 8}):
        rope = RotaryEmbedding(8, max_len=16, scaling=scaling)
        for start, T in ((0, 5), (3, 4), (12, 10)):  # within the tables, and past them
            cos, sin = rope(start, T)
            pos = torch.arange(start, start + T)[None].expand(2, T)
            for end in (None, start + T):
                cos_at, sin_at = rope.at(pos, end=end)
                assert cos_at.shape == (2, 1, T, 8)
                torch.testing.assert_close(cos_at[1, 0], cos, atol=1e-6, rtol=0)
                torch.testing.assert_close(sin_at[0, 0], sin, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mask,what", [
    (torch.ones(3, 4, dtype=torch.long), "(2, 4)"),  # the wrong batch
    (torch.ones(2, 3, dtype=torch.long), "(2, 4)"),  # not every position
    (torch.ones(2, 1, 4, dtype=torch.long), "(2, 4)"),  # a 4-d mask is not what is asked for
    (torch.zeros(2, 4), "bool or integer"),  # an additive float mask
])
def test_a_wrong_attention_mask_is_a_one_line_config_error(mask, what):
    model = _model("gpt2")
    with pytest.raises(ConfigError) as err:
        model(torch.zeros(2, 4, dtype=torch.long), attention_mask=mask)
    assert what in str(err.value) and "attention_mask" in str(err.value) and "\n" not in str(err.value)


def test_with_a_cache_the_mask_covers_the_cached_positions_too():
    model = _model("gpt2")
    cache = model.new_cache(1, max_len=8)
    model(torch.tensor([[1, 2, 3]]), cache=cache, attention_mask=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match=r"\(1, 4\)"):
        model(torch.tensor([[4]]), cache=cache, attention_mask=torch.ones(1, 1, dtype=torch.long))


def test_generate_batch_edge_cases():
    model = _model("gpt2").train()
    assert generate_batch(model, [], 5) == []
    assert generate_batch(model, [[1], [2, 3]], 0) == [[], []]
    assert generate_batch(model, [[1]], 3) == [list(generate(model, [1], 3, temperature=0, stop_at_eos=False))]
    assert model.training  # put back as it was
    with pytest.raises(ConfigError, match="at least one token"):
        generate_batch(model, [[1], []], 3)
    with pytest.raises(ConfigError, match="block_size=48"):
        generate_batch(model, [[1] * 40], 10)
    assert len(generate_batch(model, [[1] * 40], 9)[0]) == 9  # 40 + 9 - 1 = 48 fits exactly
