"""minigpt against transformers, the outside oracle: copied weights, random init, fp32, offline.

Each test builds a random-init transformers model, copies its weights into minigpt through
minigpt.hf, and asserts max |logit difference| <= 1e-5. `test_equivalence_fails_when_one_weight_is_perturbed`
proves the comparison can fail.
"""

import pytest
import torch

from minigpt.config import GPTConfig
from minigpt.hf import from_hf_state_dict, hf_config, hf_model_class, load_from_hf_model, to_hf_state_dict
from minigpt.model import GPT

TOL = 1e-5
MODERN = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)

CONFIGS = {
    "gpt2": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_embd=32),
    "gpt2-untied": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_embd=32, tie_weights=False),
    "llama": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_embd=32, **MODERN),
    "llama-gqa": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                           norm_eps=1e-6, rope_base=500000.0, tie_weights=False, **MODERN),
    "llama-mqa": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_kv_head=1, n_embd=32, **MODERN),
    "qwen3-qknorm": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                              attn_logits="qk_norm", norm_eps=1e-6, **MODERN),
    "mixtral": GPTConfig(vocab_size=97, block_size=24, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                         n_experts=4, top_k=2, **MODERN),
}


def _hf_random(cfg, seed=0):
    torch.manual_seed(seed)
    hf = hf_model_class(cfg)(hf_config(cfg)).eval()
    with torch.no_grad():  # transformers zero-inits some weights (norms = 1): randomise everything
        for name, p in hf.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "norm" in name or "ln" in name else 0.08)
                    + (1.0 if ("norm" in name or "ln_" in name) and name.endswith("weight") else 0.0))
    return hf


def _max_logit_diff(ours, hf, idx):
    with torch.no_grad():
        a, _ = ours(idx)
        b = hf(idx).logits
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_transformers(name):
    cfg = CONFIGS[name]
    hf = _hf_random(cfg)
    ours = load_from_hf_model(hf, cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size), generator=torch.Generator().manual_seed(1))
    assert _max_logit_diff(ours, hf, idx) <= TOL


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa", "qwen3-qknorm", "mixtral"])
def test_weight_map_round_trips(name):
    cfg = CONFIGS[name]
    model = GPT(cfg)
    back = from_hf_state_dict(cfg, to_hf_state_dict(model))
    for k, v in model.state_dict().items():
        assert torch.equal(back[k], v), k


def test_equivalence_fails_when_one_weight_is_perturbed():
    for name in ("gpt2", "llama", "mixtral"):
        cfg = CONFIGS[name]
        hf = _hf_random(cfg)
        ours = load_from_hf_model(hf, cfg).eval()
        with torch.no_grad():
            ours.blocks[1].attn.k_proj.weight[0, 0] += 1e-2
        idx = torch.randint(0, cfg.vocab_size, (1, cfg.block_size), generator=torch.Generator().manual_seed(2))
        assert _max_logit_diff(ours, hf, idx) > TOL, name


def test_sdpa_matches_written_out_attention_on_transformers_weights():
    cfg = CONFIGS["llama-gqa"]
    hf = _hf_random(cfg)
    manual = load_from_hf_model(hf, cfg).eval()
    sdpa = load_from_hf_model(hf, cfg.replace(attn_impl="sdpa")).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, cfg.block_size))
    with torch.no_grad():
        assert (manual(idx)[0] - sdpa(idx)[0]).abs().max().item() <= TOL


def test_moe_aux_loss_matches_transformers_load_balancing_loss_func():
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    from minigpt.moe import load_balancing_loss

    torch.manual_seed(0)
    logits = torch.randn(50, 8) * 2
    ours = load_balancing_loss(torch.softmax(logits, -1), torch.softmax(logits, -1).topk(2, -1).indices, 8)
    theirs = load_balancing_loss_func((logits,), num_experts=8, top_k=2)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
