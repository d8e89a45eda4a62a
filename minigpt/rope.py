"""Rotary position embeddings (chapter 04) and their extension to longer contexts (chapter 11).

RoPE rotates each pair of dimensions of q and k by an angle proportional to the position, so the
score q_m . k_n depends only on the distance m - n. We use the *half-split* layout of transformers
(dimension i is paired with i + head_dim/2, `rotate_half`); Meta's original Llama code pairs
neighbours (2i, 2i+1). `permute_interleaved_to_half` converts q/k projection weights from one
layout to the other so both give the same scores.

Scaling to a context s times longer than training (`GPTConfig.rope_scaling`):
- "linear"  (position interpolation): every frequency divided by s.
- "ntk"     (NTK-aware): the base raised to base * s^(d/(d-2)); high frequencies barely change.
- "dynamic" (dynamic NTK): like "ntk", with s grown from the current length L, only past the
            original context M: base * (s*L/M - s + 1)^(d/(d-2)) (transformers' formula). M is
            `original_max_position_embeddings` when given, else block_size.
- "yarn"    : interpolates low frequencies, keeps high ones, ramps between, and multiplies cos
            and sin by 0.1*ln(s)+1 (so attention logits by its square). This is what the
            reference code and transformers do; the paper's prose speaks of scaling the logits.
- "llama3"  (Llama 3.1): wavelengths shorter than M/high_freq_factor are kept, longer than
            M/low_freq_factor divided by s, and those between interpolated smoothly in M/wavelength
            (defaults: low_freq_factor 1, high_freq_factor 4; Llama 3.1: s = 8, M = 8192).
Every formula here is tested against transformers' ROPE_INIT_FUNCTIONS.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .i18n import tr


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
    if kind == "llama3":
        return llama3_inv_freq(d, base, s, original_max, scaling.get("low_freq_factor", 1.0),
                               scaling.get("high_freq_factor", 4.0)), 1.0
    raise ValueError(tr("unknown rope scaling type {kind!r}", "不明な RoPE スケーリングの種類です: {kind!r}", kind=kind))


def llama3_inv_freq(head_dim: int, base: float, factor: float, original_max: int,
                    low_freq_factor: float = 1.0, high_freq_factor: float = 4.0) -> torch.Tensor:
    """Llama 3.1's scaling: keep the pairs that turn more than high_freq_factor times over the
    original context, divide by `factor` those that turn less than low_freq_factor times, and
    between them mix the two in proportion to the rotations: smooth = (M/wavelength - low) / (high - low).

    >>> f = llama3_inv_freq(16, 10000.0, 8.0, 1024)
    >>> [round(r, 3) for r in (f / rope_inv_freq(16, 10000.0)).tolist()]   # kept, mixed, divided by 8
    [1.0, 1.0, 1.0, 1.0, 0.309, 0.125, 0.125, 0.125]
    """
    inv_freq = rope_inv_freq(head_dim, base)
    wavelen = 2 * math.pi / inv_freq
    low_freq_wavelen, high_freq_wavelen = original_max / low_freq_factor, original_max / high_freq_factor
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    between = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(between, smoothed, scaled)


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
    """cos and sin (T, head_dim) for positions [start, start + T); `at(positions)` gives them for
    per-row positions (B, T) instead, as (B, 1, T, head_dim).

    The tables for the first `max_len` positions are computed once, in float32, and kept as
    (non-persistent) buffers, so they follow `model.to(device)`; a forward only slices them.
    Positions past the tables are computed on the fly. With "dynamic" scaling the frequencies
    depend on the current length: up to the original context M the tables hold the unscaled
    ones, past it every call recomputes them for its end position (as transformers does).
    """

    def __init__(self, head_dim: int, base: float = 10000.0, max_len: int = 2048,
                 scaling: dict | None = None):
        super().__init__()
        self.head_dim, self.base, self.max_len, self.scaling = head_dim, base, max_len, scaling
        inv_freq, self.attention_factor = scaled_inv_freq(head_dim, base, scaling, max_len)
        self.dynamic = scaling is not None and scaling["type"] == "dynamic"
        # dynamic: the tables hold the unscaled frequencies, valid up to the original context only
        self.original_max = int(scaling.get("original_max_position_embeddings", max_len)) if self.dynamic else max_len
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        cos, sin = self._table(inv_freq, 0, self.original_max if self.dynamic else max_len, self.attention_factor)
        self.register_buffer("cos_table", cos, persistent=False)
        self.register_buffer("sin_table", sin, persistent=False)

    @staticmethod
    def _table(inv_freq: torch.Tensor, start: int, end: int, factor: float,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(start, end, device=device or inv_freq.device, dtype=torch.float32)
        freqs = torch.outer(pos, inv_freq.to(pos.device).float())  # (T, d/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (T, d): half-split layout
        return emb.cos() * factor, emb.sin() * factor

    def forward(self, start: int, T: int, device=None, dtype=torch.float32):
        end = start + T
        device = torch.device(device) if device is not None else self.cos_table.device
        if end <= self.cos_table.shape[0]:
            cos, sin = self.cos_table[start:end], self.sin_table[start:end]
            if cos.device != device:
                cos, sin = cos.to(device), sin.to(device)
        elif self.dynamic:  # past the original context: frequencies for the current length
            inv_freq, factor = scaled_inv_freq(self.head_dim, self.base, self.scaling, self.original_max, end)
            cos, sin = self._table(inv_freq, start, end, factor, device)
        else:
            cos, sin = self._table(self.inv_freq, start, end, self.attention_factor, device)
        return cos.to(dtype), sin.to(dtype)

    def at(self, positions: torch.Tensor, end: int | None = None,
           dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin (B, 1, T, head_dim) for per-row positions (B, T) (a left-padded batch, where
        each row counts its own positions from its first real token). The 1 broadcasts over the heads
        in `apply_rope`. `end`, if given, is a bound known without reading the tensor (every position
        < end): within the tables it saves a device sync. "dynamic" scaling uses the largest position
        of the batch + 1 as the current length, as transformers does with position_ids."""
        if end is None or end > self.cos_table.shape[0]:
            end = int(positions.max()) + 1 if positions.numel() else 0
        if end <= self.cos_table.shape[0]:
            table_cos, table_sin = self.cos_table, self.sin_table
            if table_cos.device != positions.device:
                table_cos, table_sin = table_cos.to(positions.device), table_sin.to(positions.device)
            cos, sin = table_cos[positions], table_sin[positions]  # (B, T, hd): one row of the table each
        else:
            inv_freq, factor = self.inv_freq, self.attention_factor
            if self.dynamic:  # past the original context: frequencies for the current length
                inv_freq, factor = scaled_inv_freq(self.head_dim, self.base, self.scaling, self.original_max, end)
            freqs = positions.float()[..., None] * inv_freq.to(positions.device).float()  # (B, T, d/2)
            emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, d): half-split layout
            cos, sin = emb.cos() * factor, emb.sin() * factor
        return cos[:, None].to(dtype), sin[:, None].to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, nh, T, hd) by the angles in cos/sin: (T, hd), the same positions for every row, or
    (B, 1, T, hd), each row its own positions (`RotaryEmbedding.at`, left-padded batches)."""
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
