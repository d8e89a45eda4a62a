"""Causal self-attention (chapters 01, 07, 10).

One module covers what the course teaches, chosen by GPTConfig switches:
- logits: standard q.k / sqrt(head_dim); "qk_norm" (per-head RMSNorm of q and k, whose learnable
  gains set the logit scale, as in Qwen3; OLMo 2 normalises the whole projection instead);
  "softcap" (c * tanh(logits / c), as in Gemma 2).
  Note that `x * head_dim**-0.5` is the same computation as `x / sqrt(head_dim)`, not a remedy.
- grouped-query attention: n_kv_head key/value heads shared by groups of query heads.
- implementation: written out ("manual", what the chapters teach) or F.scaled_dot_product_attention
  ("sdpa", the training default of `minigpt train`: one fused kernel, chosen by PyTorch among
  flash, memory-efficient, cuDNN and math kernels; flash needs fp16/bf16 on CUDA). The sdpa path
  covers training (causal, dropout), the KV cache (one token, or a chunk with a bottom-right mask)
  and GQA (enable_gqa: the kv heads are not repeated in memory). SDPA cannot apply soft-capping,
  and recording attention statistics needs the probabilities: both fall back to "manual".
- a KV cache, with the three cases spelled out in `causal_mask`.
- padding (a left-padded batch of prompts of different lengths, chapter 10): an attention mask
  (B, S) of real tokens, combined with the causal mask by `padded_causal_mask`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norm import RMSNorm
from .rope import apply_rope


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, S, hd) -> (B, n_kv * n_rep, S, hd): each kv head serves n_rep query heads."""
    if n_rep == 1:
        return x
    B, n_kv, S, hd = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, S, hd).reshape(B, n_kv * n_rep, S, hd)


def attention_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Scaled dot products: (B, nh, T, hd) x (B, nh, S, hd) -> (B, nh, T, S), q.k / sqrt(head_dim).

    With unit-variance components, q.k has variance head_dim; dividing by sqrt(head_dim) brings it
    back to about 1 whatever the width (chapter 07). `* head_dim**-0.5` is the same computation up
    to float rounding, not a fix for logits that grow during training.
    """
    return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])


def soft_cap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap * tanh(logits / cap): about the identity while |logits| << cap, never beyond +-cap
    (Gemma 2's attention logit soft-capping). Apply it before the causal mask: tanh(-inf) = -1."""
    return cap * torch.tanh(logits / cap)


def attention_entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each query's attention distribution p (B, nh, T, S), averaged over the
    batch and the queries: (nh,). Masked keys have p = 0 and add nothing (0 * log 0 = 0).

    >>> attention_entropy(torch.full((1, 1, 1, 4), 0.25))   # uniform over 4 keys: ln 4
    tensor([1.3863])
    """
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 2))


def causal_mask(T: int, S: int, device=None) -> torch.Tensor:
    """Boolean (T, S) mask, True where query i may attend to key j.

    The T queries are the *last* T of S positions (S - T are already in the KV cache), so query i
    sits at position S - T + i and sees keys j <= S - T + i:
      training / no cache: T == S, the usual lower triangle;
      one new token:       T == 1, it sees every key (a row of ones);
      chunked prefill:     1 < T < S, a lower triangle shifted right by S - T. SDPA's is_causal=True
                           would align it top-left instead, which is wrong here.
    """
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def padded_causal_mask(attention_mask: torch.Tensor, T: int) -> torch.Tensor:
    """(B, S) key mask (True or 1 = a real token, False or 0 = padding) -> boolean (B, 1, T, S), True
    where query i (at position S - T + i) may attend to key j: causal (`causal_mask`) AND a real key,
    OR the query's own position. The 1 broadcasts over the heads.

    The last rule changes nothing for a real query (its own key is real and causal), but a padding
    query would otherwise have no key at all: softmax over nothing but -inf is 0/0 = NaN, and that NaN
    would reach the real rows in the next layer (0 * NaN = NaN in p @ v). Attending to itself keeps
    padding rows finite; their outputs are never used.
    """
    B, S = attention_mask.shape
    device = attention_mask.device
    own = torch.arange(S, device=device)[None, :] == torch.arange(S - T, S, device=device)[:, None]  # (T, S)
    real = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)
    return (causal_mask(T, S, device) & real) | own  # (B, 1, T, S)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.logits, self.softcap, self.impl = cfg.attn_logits, cfg.softcap, cfg.attn_impl
        self.use_rope = cfg.pos == "rope"
        C, hd = cfg.n_embd, cfg.head_dim
        self.q_proj = nn.Linear(C, self.n_head * hd, bias=cfg.bias)
        self.k_proj = nn.Linear(C, self.n_kv_head * hd, bias=cfg.bias)
        self.v_proj = nn.Linear(C, self.n_kv_head * hd, bias=cfg.bias)
        self.o_proj = nn.Linear(self.n_head * hd, C, bias=cfg.bias)
        if self.logits == "qk_norm":
            self.q_norm = RMSNorm(hd, cfg.norm_eps)  # learnable gains = the learnable logit scale
            self.k_norm = RMSNorm(hd, cfg.norm_eps)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.record_stats = False  # set True to keep entropy / max-logit of the next forward
        self.last_stats: dict | None = None

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q (B, T, nh*hd), k and v (B, T, n_kv*hd). The sdpa path runs the three projections as one
        matmul on the concatenated weights (one kernel instead of three; the same numbers up to float
        rounding); the written-out path keeps the three matmuls the chapters show."""
        if self.impl != "sdpa":
            return self.q_proj(x), self.k_proj(x), self.v_proj(x)
        projs = (self.q_proj, self.k_proj, self.v_proj)
        weight = torch.cat([p.weight for p in projs])
        bias = torch.cat([p.bias for p in projs]) if self.q_proj.bias is not None else None
        kv = self.n_kv_head * self.head_dim
        return F.linear(x, weight, bias).split([self.n_head * self.head_dim, kv, kv], dim=-1)

    def forward(self, x, cos=None, sin=None, cache=None, layer: int = 0, attention_mask=None):
        """x (B, T, C) -> (B, T, C). With a cache, x holds the new tokens only. attention_mask (B, S),
        S = cached + T: 1/True for real tokens, 0/False for padding (see `padded_causal_mask`)."""
        B, T, C = x.shape
        q, k, v = self.project_qkv(x)
        # (B, T, nh*hd) -> (B, T, nh, hd) -> (B, nh, T, hd)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)  # per head, before RoPE (Qwen3)
        if self.use_rope:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, n_kv, S, hd), S = cached + T
        S = k.shape[2]
        n_rep = self.n_head // self.n_kv_head

        mask = padded_causal_mask(attention_mask, T) if attention_mask is not None else None  # (B, 1, T, S)

        if self.impl == "sdpa" and self.logits != "softcap" and not self.record_stats:
            p = self.dropout if self.training else 0.0
            gqa = n_rep > 1  # SDPA shares each kv head among n_rep query heads itself
            if mask is not None:  # padding: causal and real keys, one (B, 1, T, S) mask
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, enable_gqa=gqa)
            elif T == S:  # training / no cache: the usual lower triangle
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p, enable_gqa=gqa)
            elif T == 1:  # one new token: it sees every key, no mask needed
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, enable_gqa=gqa)
            else:  # a chunk after the cache: the mask must be aligned bottom-right (see causal_mask)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S, x.device), dropout_p=p,
                                                   enable_gqa=gqa)
        else:
            k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, nh, S, hd)
            att = attention_scores(q, k)  # (B, nh, T, S)
            if self.logits == "softcap":
                att = soft_cap(att, self.softcap)
            if mask is not None:  # padding: even one new token must not see the padding keys
                att = att.masked_fill(~mask, float("-inf"))
            elif T > 1:  # one new token sees every key: nothing to mask
                att = att.masked_fill(~causal_mask(T, S, x.device), float("-inf"))
            att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
            if self.record_stats:
                self.last_stats = _attention_stats(att.detach().float(), att_logits_max(q, k, self))
            att = F.dropout(att, p=self.dropout, training=self.training)
            y = att @ v  # (B, nh, T, S) @ (B, nh, S, hd) -> (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)
        return self.resid_dropout(self.o_proj(y))


def att_logits_max(q, k, attn: CausalSelfAttention) -> float:
    """The largest attention logit a query gives an allowed key (after scale and soft-capping)."""
    T, S = q.shape[2], k.shape[2]
    att = attention_scores(q, k)
    if attn.logits == "softcap":
        att = soft_cap(att, attn.softcap)
    return att.masked_fill(~causal_mask(T, S, q.device), float("-inf")).max().item()


def _attention_stats(p: torch.Tensor, max_logit: float) -> dict:
    return {"entropy": attention_entropy(p).cpu(), "max_logit": max_logit}
