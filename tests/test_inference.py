"""KV cache, SDPA, GQA and RoPE scaling (chapter 10 and 11's reference)."""

import pytest
import torch

from minigpt.attention import causal_mask
from minigpt.config import GPTConfig, get_preset
from minigpt.kv_cache import cache_bytes_per_token
from minigpt.model import GPT
from minigpt.rope import RotaryEmbedding, scaled_inv_freq

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


@pytest.mark.parametrize("name", PRESETS_TO_TEST)
def test_greedy_generation_is_identical_with_and_without_the_cache(name):
    torch.manual_seed(0)
    cfg = _small(name)
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


# ----------------------------------------------------------------------------- RoPE scaling vs transformers
def _hf_rope(rope_parameters, head_dim=16, max_pos=64, seq_len=None):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(hidden_size=head_dim * 2, num_attention_heads=2, head_dim=head_dim,
                      max_position_embeddings=max_pos, rope_parameters=rope_parameters)
    return ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](cfg, "cpu", seq_len=seq_len)


@pytest.mark.parametrize("factor", [2.0, 4.0, 8.0])
def test_linear_scaling_matches_transformers(factor):
    theirs, att = _hf_rope({"rope_type": "linear", "factor": factor, "rope_theta": 10000.0})
    ours, our_att = scaled_inv_freq(16, 10000.0, {"type": "linear", "factor": factor}, 64)
    torch.testing.assert_close(ours, theirs)
    assert our_att == att


@pytest.mark.parametrize("factor, seq_len", [(2.0, 32), (2.0, 128), (4.0, 256), (4.0, 100)])
def test_dynamic_ntk_matches_transformers(factor, seq_len):
    theirs, _ = _hf_rope({"rope_type": "dynamic", "factor": factor, "rope_theta": 10000.0}, seq_len=seq_len)
    ours, _ = scaled_inv_freq(16, 10000.0, {"type": "dynamic", "factor": factor}, 64, seq_len=seq_len)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("factor", [2.0, 4.0, 16.0])
def test_static_ntk_equals_dynamic_ntk_at_the_length_where_their_bases_agree(factor):
    # transformers has no static NTK-aware type; its dynamic formula base * (s*L/M - s + 1)^(d/(d-2))
    # equals the static base * s^(d/(d-2)) when s*L/M - s + 1 = s, i.e. L = M * (2s - 1) / s.
    M = 64
    L = M * (2 * factor - 1) / factor
    theirs, _ = _hf_rope({"rope_type": "dynamic", "factor": factor, "rope_theta": 10000.0}, seq_len=L)
    ours, _ = scaled_inv_freq(16, 10000.0, {"type": "ntk", "factor": factor}, M)
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("factor, head_dim, base", [(2.0, 16, 10000.0), (4.0, 64, 10000.0), (8.0, 128, 500000.0)])
def test_yarn_inv_freq_and_attention_factor_match_transformers(factor, head_dim, base):
    params = {"rope_type": "yarn", "factor": factor, "rope_theta": base, "original_max_position_embeddings": 64}
    theirs, att = _hf_rope(params, head_dim=head_dim, max_pos=int(64 * factor))
    ours, our_att = scaled_inv_freq(head_dim, base, {"type": "yarn", "factor": factor}, 64)
    torch.testing.assert_close(ours, theirs)
    assert our_att == pytest.approx(att)
    assert our_att == pytest.approx(0.1 * torch.log(torch.tensor(factor)).item() + 1)


def test_yarn_scales_cos_and_sin_so_logits_scale_by_the_square():
    plain = RotaryEmbedding(16, max_len=32)
    yarn = RotaryEmbedding(16, max_len=32, scaling={"type": "yarn", "factor": 4.0})
    cos, sin = yarn(0, 64)
    # cos^2 + sin^2 = attention_factor^2 at every position and frequency
    torch.testing.assert_close(cos ** 2 + sin ** 2, torch.full_like(cos, yarn.attention_factor ** 2))
    assert plain.attention_factor == 1.0


def test_yarn_model_matches_transformers_llama_beyond_the_trained_context():
    from minigpt.hf import hf_model_from_minigpt

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32, norm="rmsnorm",
                    mlp="swiglu", pos="rope", bias=False, rope_scaling={"type": "yarn", "factor": 4.0})
    ours = GPT(cfg).eval()
    hf = hf_model_from_minigpt(ours)
    idx = torch.randint(0, 64, (1, 64))  # 4x the trained context
    with torch.no_grad():
        diff = (ours(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff <= 1e-5
