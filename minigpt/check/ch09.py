"""Chapter 09 (the modern Japanese GPT): the config switches, attention with RoPE on q and k, and
the modern pre-norm block.

The references are minigpt's own code. `modern_config` must turn any GPT-2-style GPTConfig into its
modern twin: the switches are those that differ between the presets `gpt2` and `modern` (so the
gpt2 preset comes out as the modern preset). The attention and the block are the package's
`CausalSelfAttention` and `Block`, behind thin adapters with the notebook's interface
(`forward(x, cos, sin)`, the block returning x only).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from minigpt import attention, model
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig, get_preset
from minigpt.rope import RotaryEmbedding, apply_rope


# ----------------------------------------------------------------------------- the config switches
def modern_switches() -> dict:
    """The fields that differ between the presets `gpt2` and `modern`, apart from the vocabulary
    (which follows the tokenizer): {'bias': False, 'mlp': 'swiglu', 'norm': 'rmsnorm', 'pos': 'rope'}."""
    gpt2, modern = get_preset("gpt2").to_dict(), get_preset("modern").to_dict()
    return {k: v for k, v in sorted(modern.items()) if v != gpt2[k] and k != "vocab_size"}


def reference_modern_config(base: GPTConfig) -> GPTConfig:
    """The modern twin of `base`: the same sizes and other settings, the modern switches flipped."""
    return base.replace(**modern_switches())


def _run_modern_config(fn, case: Case):
    """Call fn on a copy of the base config; report the result and whether the base was left alone."""
    base = copy.deepcopy(case.args[0])
    before = base.to_dict()
    out = fn(base)
    return {"config": out, "base_unchanged": base.to_dict() == before}


def _compare_configs(expected: dict, got: dict) -> str | None:
    out = got["config"]
    if not isinstance(out, GPTConfig):
        return f"output: expected a GPTConfig, got a {type(out).__name__} ({out!r:.60})"
    want, have = expected["config"].to_dict(), out.to_dict()
    diff = [f"{k}: expected {want[k]!r}, got {have[k]!r}" for k in want if want[k] != have[k]]
    if diff:
        return "output: these fields differ from the reference:\n    " + "\n    ".join(diff)
    if not got["base_unchanged"]:
        return ("output: the fields are right, but your function changed the config it was given; return a new "
                "one with base.replace(...) and leave base as it was (other code may still use it)")
    return None


def modern_config_keeps_biases(base):
    """Flips norm, MLP and positions but keeps the biases (Llama has none)."""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope")


def modern_config_keeps_learned_positions(base):
    """Forgets RoPE: the learned absolute position embeddings stay."""
    return base.replace(norm="rmsnorm", mlp="swiglu", bias=False)


def modern_config_from_defaults(base):
    """Builds a fresh GPTConfig with the switches: the sizes of `base` (layers, width...) are lost."""
    return GPTConfig(vocab_size=base.vocab_size, norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)


def modern_config_keeps_gelu_width(base):
    """Sets SwiGLU's hidden size to GELU's 4 * n_embd: 1.5x the MLP parameters (chapter 06)."""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, mlp_hidden=4 * base.n_embd)


def modern_config_in_place(base):
    """Changes the config it was given instead of returning a new one."""
    base.norm, base.mlp, base.pos, base.bias = "rmsnorm", "swiglu", "rope", False
    return base


@exercise("ch09.modern_config", reference=reference_modern_config, uses_device=False,
          run=_run_modern_config, compare=_compare_configs,
          wrong=[modern_config_keeps_biases, modern_config_keeps_learned_positions, modern_config_from_defaults,
                 modern_config_keeps_gelu_width, modern_config_in_place],
          hint="return base.replace(norm='rmsnorm', mlp='swiglu', pos='rope', bias=False): four switches, "
               "nothing else (SwiGLU's hidden size follows from mlp_hidden=None).")
def _modern_config_cases():
    yield Case(args=(get_preset("gpt2", vocab_size=8000),),
               name="the preset gpt2 with vocab_size 8000: must give the preset modern")
    yield Case(args=(get_preset("tiny"),), name="the preset tiny (2 layers, n_embd 32)")
    yield Case(args=(GPTConfig(vocab_size=4000, block_size=64, n_layer=2, n_head=4, n_embd=128, dropout=0.1),),
               name="vocab 4000, block_size 64, 2 layers, n_embd 128, dropout 0.1")
    yield Case(args=(GPTConfig(vocab_size=32000, n_layer=3, n_head=8, n_embd=256, n_kv_head=2,
                               attn_logits="qk_norm", norm_eps=1e-6),),
               name="grouped-query attention and QK-norm already set: keep them")


# ----------------------------------------------------------------------------- attention with RoPE
class ModernAttention(attention.CausalSelfAttention):
    """The package's attention with RoPE (GPTConfig(pos='rope')), called as attn(x, cos, sin)."""

    def forward(self, x, cos, sin):
        return super().forward(x, cos, sin)


class _AttentionParts(ModernAttention):
    def _heads(self, x):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))

    def _out(self, y):
        B, nh, T, hd = y.shape
        return self.o_proj(y.transpose(1, 2).reshape(B, T, nh * hd))


class AttentionRopeOnValuesToo(_AttentionParts):
    """Rotates v as well: positions leak into the values that are mixed, not only into the scores."""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k, v = apply_rope(q, cos, sin), apply_rope(k, cos, sin), apply_rope(v, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionRopeOnQueriesOnly(_AttentionParts):
    """Rotates q but not k: the score then depends on the query's absolute position, not on the distance."""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        return self._out(F.scaled_dot_product_attention(apply_rope(q, cos, sin), k, v, is_causal=True))


class AttentionRopeCosSinSwapped(_AttentionParts):
    """apply_rope(q, sin, cos): the arguments in the wrong order."""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionWithoutCausalMask(_AttentionParts):
    """RoPE right, but every token also attends to the tokens after it."""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=False))


def _cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=32, n_layer=1, n_head=4, n_embd=32)
    return reference_modern_config(GPTConfig(**{**base, **kw}))


def _rope(cfg: GPTConfig, start: int, T: int):
    return RotaryEmbedding(cfg.head_dim, cfg.rope_base, max_len=64)(start, T)  # (T, hd) each


@exercise("ch09.ModernAttention", reference=ModernAttention, kind="module",
          wrong=[AttentionRopeOnValuesToo, AttentionRopeOnQueriesOnly, AttentionRopeCosSinSwapped,
                 AttentionWithoutCausalMask],
          hint="q, k, v = projections viewed as (B, T, n_head, head_dim).transpose(1, 2); rotate q AND k (not v) "
               "with apply_rope(t, cos, sin); causal attention (F.scaled_dot_product_attention(q, k, v, "
               "is_causal=True)); transpose back, reshape to (B, T, C), o_proj.")
def _attention_cases():
    g = torch.Generator().manual_seed(90)
    for n_embd, n_head, start, T in [(32, 4, 0, 7), (48, 3, 0, 12), (16, 1, 20, 5)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        cos, sin = _rope(cfg, start, T)
        where = f"positions {start}..{start + T - 1}"
        yield Case(init=(cfg,), args=(torch.randn(2, T, n_embd, generator=g), cos, sin),
                   name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd}), {where}")


# ----------------------------------------------------------------------------- the modern block
class ModernBlock(model.Block):
    """The package's block for a modern config, called as block(x, cos, sin); returns x only."""

    def forward(self, x, cos, sin):
        return super().forward(x, cos, sin)[0]


class BlockPostNorm(ModernBlock):
    """The original Transformer's order: normalise after adding the residual."""

    def forward(self, x, cos, sin):
        x = self.attn_norm(x + self.attn(x, cos, sin))
        return self.mlp_norm(x + self.mlp(x))


class BlockWithoutMlpResidual(ModernBlock):
    """The MLP's output replaces the stream instead of being added to it."""

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return self.mlp(self.mlp_norm(x))


class BlockMlpBeforeAttention(ModernBlock):
    def forward(self, x, cos, sin):
        x = x + self.mlp(self.mlp_norm(x))
        return x + self.attn(self.attn_norm(x), cos, sin)


class BlockOneNormForBoth(ModernBlock):
    """attn_norm before both sublayers: mlp_norm's weights are never used."""

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.attn_norm(x))


@exercise("ch09.ModernBlock", reference=ModernBlock, kind="module",
          wrong=[BlockPostNorm, BlockWithoutMlpResidual, BlockMlpBeforeAttention, BlockOneNormForBoth],
          hint="pre-norm, two residuals, RoPE's cos and sin handed to the attention: "
               "x = x + attn(attn_norm(x), cos, sin); x = x + mlp(mlp_norm(x)).")
def _block_cases():
    g = torch.Generator().manual_seed(91)
    for n_embd, n_head, start, T in [(32, 4, 0, 6), (64, 2, 0, 9), (32, 2, 10, 4)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        cos, sin = _rope(cfg, start, T)
        yield Case(init=(cfg,), args=(torch.randn(2, T, n_embd, generator=g) * 2, cos, sin),
                   name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd}), "
                        f"positions {start}..{start + T - 1}")
