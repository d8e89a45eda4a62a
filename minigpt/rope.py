"""Rotary position embeddings (chapter 04) and their extension to longer contexts (chapter 11).

RoPE rotates each pair of dimensions of q and k by an angle proportional to the position, so the
score q_m . k_n depends only on the distance m - n. We use the *half-split* layout of transformers
(dimension i is paired with i + head_dim/2, `rotate_half`); Meta's original Llama code pairs
neighbours (2i, 2i+1). `permute_interleaved_to_half` converts q/k projection weights from one
layout to the other so both give the same scores.

Scaling to a context s times longer than training (`GPTConfig.rope_scaling`):
- "linear"  (position interpolation): every frequency divided by s.
- "ntk"     (NTK-aware): the base raised to base * s^(d/(d-2)); high frequencies barely change.
- "dynamic" (dynamic NTK): like "ntk", with s grown from the current length, only past the
            trained context (transformers' formula).
- "yarn"    : interpolates low frequencies, keeps high ones, ramps between, and multiplies cos
            and sin by 0.1*ln(s)+1 (so attention logits by its square). This is what the
            reference code and transformers do; the paper's prose speaks of scaling the logits.
Every formula here is tested against transformers' ROPE_INIT_FUNCTIONS.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def rope_inv_freq(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """theta_i = base^(-2i/d) for i in [0, d/2): shape (head_dim/2,)."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))


def yarn_attention_factor(factor: float, mscale: float = 1.0) -> float:
    """YaRN's temperature: cos and sin are multiplied by this (logits by its square)."""
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def scaled_inv_freq(head_dim: int, base: float, scaling: dict | None, original_max: int,
                    seq_len: int | None = None) -> tuple[torch.Tensor, float]:
    """Inverse frequencies and the cos/sin multiplier for a RoPE scaling method.

    `original_max` is the context the model was trained at; `seq_len` the length now (dynamic only).
    """
    if scaling is None:
        return rope_inv_freq(head_dim, base), 1.0
    kind, s = scaling["type"], float(scaling["factor"])
    original_max = scaling.get("original_max_position_embeddings", original_max)
    d = head_dim
    if kind == "linear":
        return rope_inv_freq(d, base) / s, 1.0
    if kind == "ntk":
        return rope_inv_freq(d, base * s ** (d / (d - 2))), 1.0
    if kind == "dynamic":
        seq_len = max(seq_len or original_max, original_max)
        new_base = base * ((s * seq_len / original_max) - (s - 1)) ** (d / (d - 2))
        return rope_inv_freq(d, new_base), 1.0
    if kind == "yarn":
        return _yarn_inv_freq(d, base, s, original_max, scaling)
    raise ValueError(f"unknown rope scaling type {kind!r}")


def _yarn_inv_freq(d: int, base: float, s: float, original_max: int, scaling: dict):
    beta_fast = scaling.get("beta_fast", 32.0)  # rotations above which a dimension is kept as is
    beta_slow = scaling.get("beta_slow", 1.0)  # rotations below which it is interpolated by s
    attention_factor = scaling.get("attention_factor") or yarn_attention_factor(s)

    def dim_of(n_rotations):  # the dimension that turns n_rotations times over the trained context
        return d * math.log(original_max / (n_rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_of(beta_fast)), 0)
    high = min(math.ceil(dim_of(beta_slow)), d - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(d // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep the frequency), 0: interpolate (divide by s)
    pos_freqs = base ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    inv_freq = (1.0 / (s * pos_freqs)) * (1 - keep) + (1.0 / pos_freqs) * keep
    return inv_freq, float(attention_factor)


class RotaryEmbedding(nn.Module):
    """cos and sin for positions [start, start + T), cached up to the longest length seen."""

    def __init__(self, head_dim: int, base: float = 10000.0, max_len: int = 2048,
                 scaling: dict | None = None):
        super().__init__()
        self.head_dim, self.base, self.max_len, self.scaling = head_dim, base, max_len, scaling
        inv_freq, self.attention_factor = scaled_inv_freq(head_dim, base, scaling, max_len)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (length, cos, sin)

    def _table(self, inv_freq: torch.Tensor, length: int, factor: float, device) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, inv_freq.to(device).float())  # (T, d/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, d): half-split layout
        return emb.cos() * factor, emb.sin() * factor

    def forward(self, start: int, T: int, device=None, dtype=torch.float32):
        end = start + T
        device = device or self.inv_freq.device
        if self.scaling is not None and self.scaling["type"] == "dynamic" and end > self.max_len:
            # dynamic NTK: frequencies depend on the current length, so nothing is cached
            inv_freq, factor = scaled_inv_freq(self.head_dim, self.base, self.scaling, self.max_len, end)
            cos, sin = self._table(inv_freq, end, factor, device)
        else:
            if self._cache is None or self._cache[0] < end or self._cache[1].device != torch.device(device):
                length = max(end, self.max_len)
                self._cache = (length, *self._table(self.inv_freq, length, self.attention_factor, device))
            _, cos, sin = self._cache
        return cos[start:end].to(dtype), sin[start:end].to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hd) by the angles in cos/sin (T, hd)."""
    return x * cos + rotate_half(x) * sin


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Meta's layout: pairs (2i, 2i+1). cos/sin are the half-split tables; we take each angle once."""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    x_even, x_odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((x_even * c - x_odd * s, x_even * s + x_odd * c), dim=-1)
    return out.flatten(-2)


def permute_interleaved_to_half(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder the rows of a q or k projection (n_heads*hd, C) from Meta's interleaved layout to
    the half-split one. transformers' convert_llama_weights_to_hf.py does the same permutation."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)
