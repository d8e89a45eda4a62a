"""Chapter 07 (attention scaling): scaled scores, soft-capping, attention entropy, and an attention
module with the three kinds of logits (standard, QK-norm, soft-capped).

The references are minigpt.attention's own functions and module. The notebook's attention module
takes `(x, cos=None, sin=None)` (no KV cache); a thin adapter gives the package's module that
interface.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import attention
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig
from minigpt.rope import RotaryEmbedding, apply_rope


# ----------------------------------------------------------------------------- scaled scores
def scores_without_scale(q, k):
    return q @ k.transpose(-2, -1)


def scores_divided_by_head_dim(q, k):
    return (q @ k.transpose(-2, -1)) / q.shape[-1]


def scores_scaled_by_sequence_length(q, k):
    """sqrt of the number of positions instead of the width of a head."""
    return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-2])


def scores_keys_times_queries(q, k):
    """k q^T: the right shape when T == S, but row i now belongs to key i."""
    return (k @ q.transpose(-2, -1)) / math.sqrt(q.shape[-1])


def scores_multiplied_by_sqrt(q, k):
    return (q @ k.transpose(-2, -1)) * math.sqrt(q.shape[-1])


@exercise("ch07.attention_scores", reference=attention.attention_scores,
          wrong=[scores_without_scale, scores_divided_by_head_dim, scores_scaled_by_sequence_length,
                 scores_keys_times_queries, scores_multiplied_by_sqrt],
          hint="q @ k.transpose(-2, -1) gives (B, nh, T, S); divide by sqrt(head_dim), the LAST dimension "
               "of q (not the number of positions).")
def _scores_cases():
    g = torch.Generator().manual_seed(70)
    for q_shape, S in [((1, 1, 5, 8), 5), ((2, 3, 6, 16), 6), ((2, 2, 3, 32), 9)]:
        B, nh, T, hd = q_shape
        q, k = torch.randn(*q_shape, generator=g), torch.randn(B, nh, S, hd, generator=g)
        yield Case(args=(q, k), name=f"q of shape {q_shape}, k of shape {(B, nh, S, hd)}")
    q, k = (torch.randn(1, 2, 4, 12, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    yield Case(args=(q, k), name="float64 q and k of shape (1, 2, 4, 12), head_dim 12 (not a square)")


# ----------------------------------------------------------------------------- soft-capping
def cap_by_clamping(logits, cap):
    """A hard clip: the same range, but no gradient beyond the cap and a kink at +-cap."""
    return logits.clamp(-cap, cap)


def cap_tanh_without_dividing(logits, cap):
    return cap * torch.tanh(logits)


def cap_tanh_without_multiplying(logits, cap):
    return torch.tanh(logits / cap)


def cap_rational(logits, cap):
    """Another soft cap (x / (1 + |x|/c)): bounded by c too, but not Gemma 2's."""
    return logits / (1 + logits.abs() / cap)


@exercise("ch07.soft_cap", reference=attention.soft_cap,
          wrong=[cap_by_clamping, cap_tanh_without_dividing, cap_tanh_without_multiplying, cap_rational],
          hint="cap * tanh(logits / cap): divide first so small logits pass almost unchanged, multiply "
               "after so the result stays within (-cap, cap).")
def _soft_cap_cases():
    g = torch.Generator().manual_seed(71)
    yield Case(args=(torch.randn(2, 3, 5, 5, generator=g) * 30, 10.0), name="logits of std 30, cap 10")
    yield Case(args=(torch.randn(4, 6, generator=g) * 0.5, 50.0), name="small logits (std 0.5), cap 50")
    yield Case(args=(torch.linspace(-200, 200, 41, dtype=torch.float64), 50.0),
               name="float64 logits from -200 to 200, cap 50")


# ----------------------------------------------------------------------------- attention entropy
def entropy_in_bits(p):
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 2))


def entropy_without_guarding_zeros(p):
    """0 * log 0 = 0 * -inf = NaN: the masked keys of a causal row poison the sum."""
    return -(p * torch.log(p)).sum(-1).mean(dim=(0, 2))


def entropy_summed_over_queries(p):
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).sum(dim=2).mean(dim=0)


def entropy_over_queries(p):
    """Sums over the queries (dim -2) instead of the keys: a column of the attention matrix is no distribution."""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-2).mean(dim=(0, 2))


def entropy_averaged_over_heads(p):
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 2)).mean().expand(p.shape[1]).clone()


def _causal_probs(B, nh, T, S, scale, g, dtype=torch.float32):
    logits = torch.randn(B, nh, T, S, generator=g, dtype=dtype) * scale
    logits = logits.masked_fill(~attention.causal_mask(T, S), float("-inf"))
    return torch.softmax(logits, dim=-1)


@exercise("ch07.attention_entropy", reference=attention.attention_entropy,
          wrong=[entropy_in_bits, entropy_without_guarding_zeros, entropy_summed_over_queries,
                 entropy_over_queries, entropy_averaged_over_heads],
          hint="H = -sum over keys (the last dimension) of p * ln p, with 0 * ln 0 = 0 (torch.xlogy or a "
               "clamp); then the mean over the batch and the queries (dims 0 and 2): one number per head.")
def _entropy_cases():
    g = torch.Generator().manual_seed(72)
    yield Case(args=(_causal_probs(1, 2, 5, 5, 1.0, g),), name="causal attention, (B, nh, T, S) = (1, 2, 5, 5)")
    yield Case(args=(_causal_probs(2, 4, 8, 8, 5.0, g),),
               name="peaked causal attention (logits of std 5), (2, 4, 8, 8)")
    yield Case(args=(_causal_probs(2, 3, 3, 7, 1.0, g, torch.float64),),
               name="float64, 3 new queries over 7 keys (a KV cache), (2, 3, 3, 7)")
    one_hot = torch.zeros(1, 2, 4, 4)
    one_hot[..., 0] = 1.0
    yield Case(args=(one_hot,), name="every query attends to key 0 only: entropy 0")


# ----------------------------------------------------------------------------- the attention module
class CausalSelfAttention(attention.CausalSelfAttention):
    """The package's attention module (record_stats off, no cache), called as in the notebook."""

    def forward(self, x, cos=None, sin=None):
        return super().forward(x, cos, sin)


class _AttentionParts(CausalSelfAttention):
    def _qkv(self, x):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))

    def _normed_rotated_qkv(self, x, cos, sin):
        """q, k, v with QK-norm (if on) before RoPE (if on): the part these wrong versions get right."""
        q, k, v = self._qkv(x)
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def _finish(self, att, v, B, T, C):
        att = torch.softmax(att, dim=-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, C))


class AttentionCapAfterMask(_AttentionParts):
    """Soft-caps after the mask: tanh(-inf) = -1, so the future gets logit -cap instead of -inf."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = attention.attention_scores(q, k).masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        return self._finish(att, v, B, T, C)


class AttentionCapBeforeScale(_AttentionParts):
    """Caps the raw dot products, then divides by sqrt(head_dim): the cap is effectively cap/sqrt(hd)."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = q @ k.transpose(-2, -1)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = (att / math.sqrt(self.head_dim)).masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormWithoutScale(_AttentionParts):
    """Drops 1/sqrt(head_dim) with QK-norm, as if the norm replaced it (Qwen3 keeps both)."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = q @ k.transpose(-2, -1)
        if self.logits != "qk_norm":
            att = att / math.sqrt(self.head_dim)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormAfterRope(_AttentionParts):
    """Normalises after RoPE: the per-channel gains then act on rotated channels (Qwen3: norm, then RoPE)."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormL2(_AttentionParts):
    """Divides q and k by their length (cosine similarity) instead of their RMS: sqrt(head_dim) times smaller."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if self.logits == "qk_norm":
            q = F.normalize(q, dim=-1) * self.q_norm.weight
            k = F.normalize(k, dim=-1) * self.k_norm.weight
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


def _attn_cfg(logits: str, n_embd: int, n_head: int, **kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=16, n_layer=1, n_head=n_head, n_embd=n_embd, bias=False,
                norm="rmsnorm", mlp="swiglu", attn_logits=logits, softcap=2.0)
    return GPTConfig(**{**base, **kw})


@exercise("ch07.CausalSelfAttention", reference=CausalSelfAttention, kind="module",
          wrong=[AttentionCapAfterMask, AttentionCapBeforeScale, AttentionQKNormWithoutScale,
                 AttentionQKNormAfterRope, AttentionQKNormL2],
          hint="q, k, v (B, nh, T, hd); qk_norm: q_norm(q), k_norm(k) BEFORE RoPE; scores = q.k / sqrt(hd) "
               "(also with qk_norm); softcap: cap * tanh(scores / cap) BEFORE the causal mask; mask, softmax, @ v, "
               "merge the heads, o_proj.")
def _attention_module_cases():
    g = torch.Generator().manual_seed(73)
    for logits in ("standard", "qk_norm", "softcap"):
        for n_embd, n_head, T, rope in [(32, 4, 7, False), (48, 3, 9, True)]:
            cfg = _attn_cfg(logits, n_embd, n_head, pos="rope" if rope else "learned")
            x = torch.randn(2, T, n_embd, generator=g) * 3
            args = (x,)
            if rope:
                cos, sin = RotaryEmbedding(cfg.head_dim, max_len=16)(0, T)
                args = (x, cos, sin)
            cap = " (softcap=2.0)" if logits == "softcap" else ""
            yield Case(init=(cfg,), args=args,
                       name=f"attn_logits={logits!r}{cap}, n_embd={n_embd}, n_head={n_head}, "
                            f"x of shape (2, {T}, {n_embd}){', with RoPE cos/sin' if rope else ''}")
