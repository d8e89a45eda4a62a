"""RoPE (chapter 04) and its scaling to longer contexts (chapter 11); the scalings against transformers."""

import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.model import GPT
from minigpt.rope import (RotaryEmbedding, apply_rope, apply_rope_interleaved, llama3_inv_freq,
                          permute_interleaved_to_half, rope_inv_freq, scaled_inv_freq)

MODERN = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)


# ----------------------------------------------------------------------------- rotary embeddings
def test_rope_scores_depend_only_on_the_distance():
    hd = 16
    rope = RotaryEmbedding(hd, max_len=64)
    cos, sin = rope(0, 64)
    q, k = torch.randn(hd), torch.randn(hd)

    def score(m, n):
        qm = apply_rope(q.view(1, 1, 1, hd), cos[m:m + 1], sin[m:m + 1])
        kn = apply_rope(k.view(1, 1, 1, hd), cos[n:n + 1], sin[n:n + 1])
        return (qm * kn).sum().item()

    assert score(10, 3) == pytest.approx(score(40, 33), abs=1e-4)
    assert score(10, 3) != pytest.approx(score(10, 4), abs=1e-4)


def test_rope_preserves_vector_norms():
    rope = RotaryEmbedding(8, max_len=32)
    cos, sin = rope(0, 32)
    x = torch.randn(2, 3, 32, 8)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_interleaved_layout_gives_the_same_scores_after_the_weight_permutation():
    C, n_heads, hd, T = 16, 2, 8, 10
    wq, wk = torch.randn(n_heads * hd, C), torch.randn(n_heads * hd, C)
    x = torch.randn(1, T, C)
    cos, sin = RotaryEmbedding(hd, max_len=T)(0, T)

    def scores(wq, wk, rope_fn):
        q = (x @ wq.t()).view(1, T, n_heads, hd).transpose(1, 2)
        k = (x @ wk.t()).view(1, T, n_heads, hd).transpose(1, 2)
        q, k = rope_fn(q, cos, sin), rope_fn(k, cos, sin)
        return q @ k.transpose(-2, -1)

    meta = scores(wq, wk, apply_rope_interleaved)
    ours = scores(permute_interleaved_to_half(wq, n_heads), permute_interleaved_to_half(wk, n_heads), apply_rope)
    torch.testing.assert_close(ours, meta, atol=1e-4, rtol=1e-4)
    unpermuted = scores(wq, wk, apply_rope)  # loading Meta weights without the permutation is wrong
    assert (unpermuted - meta).abs().max() > 1e-2


def test_rope_inv_freq_matches_the_formula():
    torch.testing.assert_close(rope_inv_freq(8, 10000.0),
                               torch.tensor([10000 ** (-i / 8) for i in range(0, 8, 2)]))


# ----------------------------------------------------------------------------- scaling vs transformers
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


@pytest.mark.parametrize("factor, original, low, high, head_dim, base", [
    (8.0, 8192, 1.0, 4.0, 128, 500000.0),  # Llama 3.1
    (32.0, 8192, 1.0, 4.0, 64, 500000.0),  # Llama 3.2 1B/3B
    (4.0, 64, 1.0, 4.0, 16, 10000.0),
    (2.0, 32, 2.0, 8.0, 16, 10000.0),
])
def test_llama3_inv_freq_and_attention_factor_match_transformers(factor, original, low, high, head_dim, base):
    params = {"rope_type": "llama3", "factor": factor, "rope_theta": base, "low_freq_factor": low,
              "high_freq_factor": high, "original_max_position_embeddings": original}
    theirs, att = _hf_rope(params, head_dim=head_dim, max_pos=int(original * factor))
    scaling = {"type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
               "original_max_position_embeddings": original}
    ours, our_att = scaled_inv_freq(head_dim, base, scaling, 12345)  # the dict's original context wins
    torch.testing.assert_close(ours, theirs)
    assert our_att == att == 1.0
    torch.testing.assert_close(llama3_inv_freq(head_dim, base, factor, original, low, high), theirs)


def test_llama3_keeps_fast_pairs_divides_slow_pairs_and_mixes_between():
    theta = rope_inv_freq(16, 10000.0)
    ratio = llama3_inv_freq(16, 10000.0, 8.0, 64) / theta
    assert ratio[0] == 1.0 and ratio[-1] == pytest.approx(1 / 8)
    assert ((ratio[1:-1] <= 1.0) & (ratio[1:-1] >= 1 / 8)).all() and (ratio.diff() <= 0).all()


def _modern(block_size, **kw):
    return GPTConfig(vocab_size=64, block_size=block_size, n_layer=2, n_head=2, n_embd=32, **MODERN, **kw)


def test_dynamic_ntk_scales_from_the_original_context_not_from_block_size():
    scaling = {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 16}
    rope = RotaryEmbedding(16, max_len=32, scaling=scaling)
    plain = RotaryEmbedding(16, max_len=32)
    torch.testing.assert_close(rope(0, 16), plain(0, 16))  # within the original context: unscaled
    inv_freq, _ = scaled_inv_freq(16, 10000.0, scaling, 32, seq_len=24)
    expected = RotaryEmbedding._table(inv_freq, 0, 24, 1.0)
    torch.testing.assert_close(rope(0, 24), expected)  # 16 < 24 <= block_size: already scaled for 24
    assert not torch.allclose(rope(0, 24)[0], plain(0, 24)[0])


def test_dynamic_ntk_with_an_original_context_matches_the_exported_llama_at_t48(tmp_path):
    from transformers import AutoModelForCausalLM

    from minigpt.export import export_to_transformers

    torch.manual_seed(0)
    cfg = _modern(32, rope_scaling={"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 16})
    ours = GPT(cfg).eval()
    hf = AutoModelForCausalLM.from_pretrained(export_to_transformers(ours, None, tmp_path / "hf")).eval()
    assert hf.config.rope_parameters["original_max_position_embeddings"] == 16
    idx = torch.randint(0, 64, (1, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for T in (12, 24, 48):  # before, between and past the original context and block_size
            assert (ours(idx[:, :T])[0] - hf(idx[:, :T]).logits).abs().max().item() <= 1e-5, T


def test_llama3_model_matches_transformers_llama_beyond_the_original_context():
    from minigpt.hf import hf_model_from_minigpt

    torch.manual_seed(0)
    cfg = _modern(64, rope_scaling={"type": "llama3", "factor": 4.0, "original_max_position_embeddings": 16})
    ours = GPT(cfg).eval()
    hf = hf_model_from_minigpt(ours)
    idx = torch.randint(0, 64, (1, 64))
    with torch.no_grad():
        assert (ours(idx)[0] - hf(idx).logits).abs().max().item() <= 1e-5


@pytest.mark.parametrize("scaling", [
    None,
    {"type": "linear", "factor": 4.0},
    {"type": "dynamic", "factor": 2.0, "original_max_position_embeddings": 16},
    {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 16.0},
    {"type": "llama3", "factor": 8.0, "original_max_position_embeddings": 16, "low_freq_factor": 1.0,
     "high_freq_factor": 4.0},
])
def test_rope_scaling_round_trips_through_transformers_rope_parameters(scaling):
    from minigpt.hf import hf_config, rope_scaling_from_hf

    cfg = _modern(64, rope_base=500000.0, rope_scaling=scaling)
    hf = hf_config(cfg)
    base, back = rope_scaling_from_hf(hf.rope_parameters, hf.max_position_embeddings)
    assert base == 500000.0 and back == scaling


def test_rope_tables_follow_the_model_dtype_cast_and_stay_out_of_the_state_dict():
    model = GPT(_modern(16))
    assert not any("rope" in k for k in model.state_dict())
    cos, _ = model.rope(0, 16)
    half = model.to(torch.bfloat16).rope(0, 16, dtype=torch.bfloat16)[0]
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half, cos.bfloat16())


def test_positions_past_the_tables_are_computed_like_the_tables():
    short, long = RotaryEmbedding(16, max_len=8), RotaryEmbedding(16, max_len=64)
    for a, b in zip(short(5, 30), long(5, 30)):
        assert torch.equal(a, b)
