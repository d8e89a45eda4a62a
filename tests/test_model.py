"""The reference model's parts, one behaviour per test."""

import math
import shutil

import pytest
import torch

from minigpt.config import PRESETS, GPTConfig, get_preset, swiglu_hidden
from minigpt.mlp import GeluMLP, SwiGLU
from minigpt.model import GPT
from minigpt.moe import MoE, load_balancing_loss, router_z_loss
from minigpt.norm import RMSNorm

MODERN = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize("fields, kwargs", [
    ("n_embd, n_head", dict(n_embd=30, n_head=4)),
    ("n_kv_head", dict(n_head=4, n_kv_head=3)),
    ("pos, n_embd, n_head", dict(pos="rope", n_embd=12, n_head=4)),  # head_dim 3 is odd
    ("top_k, n_experts", dict(mlp="swiglu", n_experts=2, top_k=3)),
    ("norm", dict(norm="batchnorm")),
    ("rope_scaling", dict(pos="rope", rope_scaling={"type": "magic", "factor": 2})),
    ("mlp, n_experts", dict(n_experts=4, top_k=2)),
    ("dropout", dict(dropout=1.5)),
])
def test_invalid_config_raises_value_error_naming_the_fields(fields, kwargs):
    with pytest.raises(ValueError, match=fields.split(",")[0]):
        GPTConfig(**kwargs)


def test_config_round_trips_through_a_dict():
    cfg = get_preset("moe")
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown fields"):
        GPTConfig.from_dict({**GPTConfig().to_dict(), "flash": True})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_a_valid_config(name):
    assert get_preset(name).n_layer > 0


# ----------------------------------------------------------------------------- norms and MLPs
def test_rmsnorm_matches_its_formula():
    x = torch.randn(3, 5, 16)
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected)


def test_rmsnorm_computes_in_float32_so_fp16_inputs_do_not_overflow():
    x = torch.full((1, 8), 300.0, dtype=torch.float16)  # 300^2 = 90000 > fp16 max 65504
    naive = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert not torch.isfinite(naive).all() or naive.abs().max() < 0.5  # the naive fp16 version breaks
    out = RMSNorm(8).half()(x)  # weights in fp16 too, as in a half-precision model
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.ones(1, 8), atol=1e-3, rtol=0)


def test_swiglu_hidden_matches_llama_sizes():
    assert swiglu_hidden(4096, 256) == 11008  # Llama-2-7B
    assert swiglu_hidden(192, 32) == 512


def test_swiglu_has_about_the_parameters_of_a_4d_gelu_mlp():
    d = 192
    gelu = sum(p.numel() for p in GeluMLP(d, 4 * d, bias=False).parameters())
    swiglu = sum(p.numel() for p in SwiGLU(d, swiglu_hidden(d)).parameters())
    assert abs(swiglu - gelu) / gelu < 0.01


def test_swiglu_is_w2_of_silu_w1_times_w3():
    mlp = SwiGLU(8, 12)
    x = torch.randn(2, 3, 8)
    expected = mlp.w2(torch.nn.functional.silu(mlp.w1(x)) * mlp.w3(x))
    torch.testing.assert_close(mlp(x), expected)
    assert all(m.bias is None for m in (mlp.w1, mlp.w2, mlp.w3))


# ----------------------------------------------------------------------------- MoE
def _moe(**kw):
    cfg = GPTConfig(n_embd=16, n_head=2, mlp="swiglu", n_experts=4, top_k=2, **kw)
    torch.manual_seed(0)
    return MoE(cfg)


def _naive_moe(moe, x):
    """Per token, per choice: the definition, with Python loops."""
    xf = x.reshape(-1, x.shape[-1])
    _, _, weights, index = moe.route(xf)
    out = torch.zeros_like(xf)
    for t in range(xf.shape[0]):
        for j in range(moe.top_k):
            out[t] += weights[t, j] * moe.experts[int(index[t, j])](xf[t:t + 1])[0]
    return out.view_as(x)


@pytest.mark.parametrize("gating", ["mixtral", "switch"])
def test_grouped_dispatch_equals_the_per_token_definition(gating):
    moe = _moe(moe_gating=gating)
    x = torch.randn(3, 7, 16)
    y, _ = moe(x)
    torch.testing.assert_close(y, _naive_moe(moe, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_tokens, n_experts, top_k", [(1, 4, 2), (5, 8, 3), (200, 4, 1), (300, 8, 2)])
def test_grouped_dispatch_equals_the_definition_with_its_gradients_for_any_block_layout(n_tokens, n_experts, top_k):
    # 1 token: blocks of one row; 300 tokens x top-2 of 8: blocks of 16 rows, some padded
    cfg = GPTConfig(n_embd=16, n_head=2, mlp="swiglu", mlp_hidden=24, n_experts=n_experts, top_k=top_k)
    torch.manual_seed(n_tokens)
    moe = MoE(cfg)
    x = torch.randn(1, n_tokens, 16, requires_grad=True)
    y, _ = moe(x)
    ref = _naive_moe(moe, x)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    got = torch.autograd.grad((y * g).sum(), [x, moe.experts[0].w1.weight, moe.router.weight])
    want = torch.autograd.grad((ref * g).sum(), [x, moe.experts[0].w1.weight, moe.router.weight])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_dispatch_blocks_cover_every_assignment_whatever_the_routing():
    from minigpt.moe import dispatch_block_size

    for M, N in [(2, 8), (64, 4), (4096, 8), (1000, 3)]:
        b = dispatch_block_size(M, N)
        n_blocks = (M + N * (b - 1)) // b
        worst = [M - (N - 1)] + [1] * (N - 1)  # one expert takes almost all, the others one each
        assert sum(-(-c // b) for c in worst) <= n_blocks
        assert sum(-(-c // b) for c in [M // N + (e < M % N) for e in range(N)]) <= n_blocks


def test_mixtral_gating_renormalises_and_switch_keeps_raw_probabilities():
    x = torch.randn(20, 16)
    _, probs, w_mix, _ = _moe(moe_gating="mixtral").route(x)
    _, probs_s, w_sw, idx = _moe(moe_gating="switch").route(x)
    torch.testing.assert_close(w_mix.sum(-1), torch.ones(20))
    torch.testing.assert_close(w_sw, probs_s.gather(-1, idx))
    assert (w_sw.sum(-1) < 1).all()


def test_router_runs_in_float32_for_bf16_inputs():
    moe = _moe().to(torch.bfloat16)
    logits, probs, _, _ = moe.route(torch.randn(5, 16, dtype=torch.bfloat16))
    assert logits.dtype == probs.dtype == torch.float32


def test_load_balancing_loss_is_top_k_when_perfectly_balanced_and_n_when_collapsed():
    N, k, T = 4, 2, 8
    probs = torch.full((T, N), 1 / N)
    balanced = torch.tensor([[0, 1], [2, 3]] * (T // 2))
    assert load_balancing_loss(probs, balanced, N).item() == pytest.approx(k)
    collapsed_probs = torch.zeros(T, N)
    collapsed_probs[:, 0] = 1.0
    collapsed = torch.tensor([[0, 1]] * T)
    assert load_balancing_loss(collapsed_probs, collapsed, N).item() == pytest.approx(N)


def test_router_z_loss_is_mean_squared_logsumexp():
    logits = torch.randn(6, 4)
    assert router_z_loss(logits).item() == pytest.approx(torch.logsumexp(logits, -1).pow(2).mean().item())


def test_capacity_drops_assignments_beyond_each_experts_capacity():
    moe = _moe(capacity_factor=0.5)
    with torch.no_grad():  # send every token to experts 0 and 1
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0
        moe.router.weight[1] = 0.5
    x = torch.rand(1, 16, 16) + 0.1
    y, _ = moe(x)
    capacity = math.ceil(0.5 * 16 * 2 / 4)  # 4 assignments per expert
    stats = moe.last_stats
    assert stats["tokens_per_expert"].tolist() == [16, 16, 0, 0]
    assert stats["dropped_share"] == pytest.approx((32 - 2 * capacity) / 32)
    assert (y[0, capacity:] == 0).all() and (y[0, :capacity] != 0).any()  # later tokens were dropped


def test_moe_model_adds_auxiliary_losses_to_the_training_loss():
    model = GPT(get_preset("tiny-moe"))
    idx = torch.randint(0, 256, (2, 16))
    _, loss = model(idx, idx)
    cfg = model.config
    parts = model.last_losses
    assert loss.item() == pytest.approx(parts["ce"] + cfg.aux_loss_coef * parts["aux"] + cfg.z_loss_coef * parts["z"],
                                        rel=1e-5)


def test_loss_parts_stay_tensors_and_last_losses_reads_them_as_floats():
    model = GPT(get_preset("tiny-moe"))
    idx = torch.randint(0, 256, (2, 16))
    model(idx, idx)
    assert sorted(model.loss_parts) == ["aux", "ce", "z"]
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad for v in model.loss_parts.values())
    assert model.last_losses == {k: v.item() for k, v in model.loss_parts.items()}
    model(idx)  # no targets: no loss parts
    assert model.last_losses == {}


def _host_syncs(fn) -> dict:
    """Calls that copy a value to the host (a GPU sync) or give shapes that depend on values."""
    from torch.overrides import TorchFunctionMode
    from torch.utils._python_dispatch import TorchDispatchMode

    functions = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"}
    ops = {"_local_scalar_dense", "nonzero", "bincount", "unique", "_unique2", "masked_select", "repeat_interleave"}
    seen: dict = {}

    class Functions(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if getattr(func, "__name__", "") in functions:
                seen[func.__name__] = seen.get(func.__name__, 0) + 1
            return func(*args, **(kwargs or {}))

    class Ops(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func._overloadpacket.__name__
            if name in ops:
                seen[name] = seen.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    with Functions(), Ops():
        fn()
    return seen


@pytest.mark.parametrize("name", ["tiny", "tiny-modern", "tiny-moe"])
@pytest.mark.parametrize("impl", ["manual", "sdpa"])
def test_a_training_step_makes_no_host_sync(name, impl):
    model = GPT(get_preset(name, attn_impl=impl, capacity_factor=1.0 if name == "tiny-moe" else None))
    idx = torch.randint(0, 256, (2, 17))

    def step():
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()

    assert _host_syncs(step) == {}
    assert _host_syncs(lambda: model.last_losses)  # reading the numbers is where the sync goes


@pytest.mark.parametrize("name", ["tiny", "tiny-modern", "tiny-moe"])
def test_the_training_forward_is_one_graph_for_torch_compile(name):
    model = GPT(get_preset(name, attn_impl="sdpa"))
    idx = torch.randint(0, 256, (2, 17))
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(idx[:, :-1], idx[:, 1:])
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="torch.compile on CPU needs a C compiler")
@pytest.mark.parametrize("name", ["tiny-modern", "tiny-moe"])
def test_fullgraph_compiled_model_trains_like_the_eager_one(name):
    torch.manual_seed(0)
    model = GPT(get_preset(name, attn_impl="sdpa"))
    idx = torch.randint(0, 256, (2, 17))
    _, eager = model(idx[:, :-1], idx[:, 1:])
    want = torch.autograd.grad(eager, list(model.parameters()))
    torch._dynamo.reset()
    _, compiled = torch.compile(model, fullgraph=True)(idx[:, :-1], idx[:, 1:])
    got = torch.autograd.grad(compiled, list(model.parameters()))
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-5)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_moe_aux_loss_has_gradients_into_the_router():
    model = GPT(get_preset("tiny-moe", aux_loss_coef=1.0, z_loss_coef=0.0))
    idx = torch.randint(0, 256, (2, 16))
    _, loss = model(idx, idx)
    loss.backward()
    assert model.blocks[0].mlp.router.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- model
def test_gpt2_init_scales_residual_projections():
    cfg = GPTConfig(n_layer=8, n_embd=256, n_head=4, vocab_size=100)
    model = GPT(cfg)
    std = model.blocks[0].attn.o_proj.weight.std().item()
    assert std == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert model.blocks[0].attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_tied_weights_are_shared_and_counted_once():
    tied, untied = GPT(get_preset("tiny")), GPT(get_preset("tiny", tie_weights=False))
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.num_params() - tied.num_params() == 256 * 32


def test_moe_active_parameters_match_the_dense_model_with_the_same_active_width():
    dense, moe = GPT(get_preset("modern")), GPT(get_preset("moe"))
    assert moe.num_active_params() == pytest.approx(dense.num_active_params(), rel=0.01)
    assert moe.num_params() > 1.8 * dense.num_params()


def test_learned_positions_refuse_sequences_longer_than_block_size():
    model = GPT(get_preset("tiny"))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_attention_stats_report_entropy_per_head_and_max_logit_per_layer():
    model = GPT(get_preset("tiny-modern"))
    stats = model.attention_stats(torch.randint(0, 256, (2, 16)))
    assert len(stats) == 2
    assert stats[0]["entropy"].shape == (2,)
    assert 0 <= stats[0]["entropy"].min() and stats[0]["entropy"].max() <= math.log(16) + 1e-4
    assert math.isfinite(stats[0]["max_logit"])


@pytest.mark.parametrize("logits", ["standard", "qk_norm", "softcap"])
def test_every_attention_variant_trains(logits):
    torch.manual_seed(0)
    model = GPT(get_preset("tiny-modern", attn_logits=logits, softcap=5.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    idx = torch.arange(32).repeat(4, 1) % 7
    first = None
    for _ in range(30):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_softcap_bounds_attention_logits():
    model = GPT(get_preset("tiny-modern", attn_logits="softcap", softcap=2.0))
    with torch.no_grad():
        for b in model.blocks:
            b.attn.q_proj.weight.mul_(50)
    stats = model.attention_stats(torch.randint(0, 256, (1, 16)))
    assert all(s["max_logit"] <= 2.0 for s in stats)
