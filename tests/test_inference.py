"""KV cache, SDPA and GQA (chapter 10's reference). RoPE and its scaling: tests/test_rope.py."""

import pytest
import torch

from minigpt.attention import causal_mask
from minigpt.config import GPTConfig, get_preset
from minigpt.kv_cache import cache_bytes_per_token
from minigpt.model import GPT

PRESETS_TO_TEST = ["tiny", "tiny-modern", "tiny-moe", "gpt2", "modern", "moe", "demo"]


def _small(name):
    # the course presets at their real architecture, with fewer layers so the test stays fast
    cfg = get_preset(name)
    return cfg.replace(n_layer=min(cfg.n_layer, 2), vocab_size=min(cfg.vocab_size, 512))


@torch.no_grad()
def greedy(model, prompt, n, use_cache):
    idx = prompt
    if not use_cache:
        for _ in range(n):
            logits, _ = model(idx)
            idx = torch.cat([idx, logits[:, -1:].argmax(-1)], dim=1)
        return idx
    cache = model.new_cache(prompt.shape[0], max_len=prompt.shape[1] + n)
    logits, _ = model(prompt, cache=cache)
    for _ in range(n):
        nxt = logits[:, -1:].argmax(-1)
        idx = torch.cat([idx, nxt], dim=1)
        logits, _ = model(nxt, cache=cache)
    return idx


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
@pytest.mark.parametrize("name", PRESETS_TO_TEST)
def test_greedy_generation_is_identical_with_and_without_the_cache(name, impl):
    torch.manual_seed(0)
    cfg = _small(name).replace(attn_impl=impl)
    model = GPT(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (2, 5))
    n = min(40, cfg.block_size - 5)
    assert torch.equal(greedy(model, prompt, n, True), greedy(model, prompt, n, False))


@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_chunked_prefill_gives_the_logits_of_a_full_forward(impl):
    torch.manual_seed(0)
    model = GPT(get_preset("tiny-modern", n_kv_head=1, attn_impl=impl)).eval()
    idx = torch.randint(0, 256, (2, 20))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache(2, max_len=20)
        parts = [model(idx[:, a:b], cache=cache)[0] for a, b in ((0, 7), (7, 8), (8, 20))]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)


def test_causal_mask_is_aligned_bottom_right_for_a_chunk_after_the_cache():
    m = causal_mask(2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_cache_stores_the_unrepeated_kv_heads_under_gqa():
    model = GPT(get_preset("tiny-modern", n_head=4, n_kv_head=1))
    cache = model.new_cache(1, max_len=16)
    assert cache.k.shape == (2, 1, 1, 16, 8)
    assert cache.bytes_per_token == 2 * 2 * 1 * 8 * 4


def test_cache_bytes_per_token_for_real_shapes():
    assert cache_bytes_per_token(32, 32, 128, 2) == 524288  # Llama-2-7B, fp16: 0.5 MiB per token
    assert cache_bytes_per_token(32, 8, 128, 2) == 131072  # Llama-3-8B (GQA, 8 kv heads)


def test_cache_overflow_error_says_how_to_fix_it():
    model = GPT(get_preset("tiny-modern"))
    cache = model.new_cache(1, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


@pytest.mark.parametrize("logits", ["standard", "qk_norm"])
def test_sdpa_equals_written_out_attention_forward_and_backward(logits):
    torch.manual_seed(0)
    cfg = get_preset("tiny-modern", n_head=4, n_kv_head=2, attn_logits=logits)
    manual = GPT(cfg)
    sdpa = GPT(cfg.replace(attn_impl="sdpa"))
    sdpa.load_state_dict(manual.state_dict())
    idx = torch.randint(0, 256, (2, 32))
    _, l1 = manual(idx, idx)
    _, l2 = sdpa(idx, idx)
    l1.backward()
    l2.backward()
    assert abs(l1.item() - l2.item()) < 1e-5
    for (n, p1), p2 in zip(manual.named_parameters(), sdpa.parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, atol=1e-5, rtol=1e-4, msg=n)


def test_sdpa_applies_attention_dropout_in_training_only():
    torch.manual_seed(0)
    model = GPT(get_preset("tiny-modern", n_head=4, n_kv_head=2, attn_impl="sdpa", dropout=0.5))
    attn, x = model.blocks[0].attn, torch.randn(2, 16, 32)
    attn.resid_dropout.p = 0.0  # only the attention-probability dropout is left
    attn.train()
    a, b = attn(x, *model.rope(0, 16)), attn(x, *model.rope(0, 16))
    attn.eval()
    e1, e2 = attn(x, *model.rope(0, 16)), attn(x, *model.rope(0, 16))
    assert not torch.allclose(a, b) and torch.equal(e1, e2)
