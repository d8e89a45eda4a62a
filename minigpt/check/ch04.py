"""Chapter 04 (rotary position embeddings): the cos/sin table, rotate_half, apply_rope, and the
permutation that turns Meta's interleaved q/k weights into the half-split layout.

The references are minigpt.rope's own functions. The table exercise has a simpler interface than
the package's `RotaryEmbedding` module (which caches, scales and slices), so a thin adapter below
gives the module's computation the notebook's interface.
"""

from __future__ import annotations

import torch

from minigpt import rope
from minigpt.check import Case, exercise


# ----------------------------------------------------------------------------- the cos/sin table
def reference_rope_cos_sin(T: int, head_dim: int, base: float = 10000.0):
    """cos and sin of the angles m * theta_i for positions m in [0, T): two (T, head_dim) tensors."""
    return rope.RotaryEmbedding(head_dim, base, max_len=T)(0, T)


def _table(T, head_dim, base, exponent_step=2, start=0, layout="half"):
    theta = 1.0 / (base ** (torch.arange(0, head_dim // 2, dtype=torch.float32) * exponent_step / head_dim))
    pos = torch.arange(start, start + T, dtype=torch.float32)
    angles = torch.outer(pos, theta)  # (T, hd/2)
    if layout == "half":
        angles = torch.cat((angles, angles), dim=-1)
    else:  # each angle twice in a row: Meta's interleaved pairs (2i, 2i+1)
        angles = angles.repeat_interleave(2, dim=-1)
    return angles.cos(), angles.sin()


def cos_sin_interleaved(T, head_dim, base=10000.0):
    """Each angle repeated for neighbours (2i, 2i+1): Meta's layout, not the half-split one."""
    return _table(T, head_dim, base, layout="interleaved")


def cos_sin_exponent_i_over_d(T, head_dim, base=10000.0):
    """theta_i = base^(-i/d) instead of base^(-2i/d): the frequencies fall off half as fast."""
    return _table(T, head_dim, base, exponent_step=1)


def cos_sin_positions_from_one(T, head_dim, base=10000.0):
    """Positions 1..T instead of 0..T-1: the first token is already rotated."""
    return _table(T, head_dim, base, start=1)


def cos_sin_swapped(T, head_dim, base=10000.0):
    cos, sin = _table(T, head_dim, base)
    return sin, cos


def cos_sin_ignores_base(T, head_dim, base=10000.0):
    """Always 10000: right for most checkpoints, wrong for Llama 3 (500000) and this chapter's cases."""
    return _table(T, head_dim, 10000.0)


@exercise("ch04.rope_cos_sin", reference=reference_rope_cos_sin, uses_device=False, output_names=("cos", "sin"),
          wrong=[cos_sin_interleaved, cos_sin_exponent_i_over_d, cos_sin_positions_from_one, cos_sin_swapped,
                 cos_sin_ignores_base],
          hint="theta = 1 / base ** (torch.arange(0, head_dim, 2) / head_dim); angles = torch.outer(positions "
               "0..T-1, theta) of shape (T, head_dim/2); repeat them side by side with torch.cat((a, a), -1); "
               "return (angles.cos(), angles.sin()).")
def _cos_sin_cases():
    yield Case(args=(4, 8), name="T=4, head_dim=8, base 10000")
    yield Case(args=(16, 32), name="T=16, head_dim=32, base 10000")
    yield Case(args=(7, 64, 500000.0), name="T=7, head_dim=64, base 500000 (Llama 3)")
    yield Case(args=(3, 2, 100.0), name="T=3, head_dim=2 (one pair), base 100")


# ----------------------------------------------------------------------------- rotate_half
def rotate_half_sign_on_second(x):
    """(x2, -x1): a rotation by -90 degrees; with apply_rope it turns every pair the other way."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2, -x1), dim=-1)


def rotate_half_without_sign(x):
    """Swaps the halves but forgets the minus sign: a reflection, not a rotation."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2, x1), dim=-1)


def rotate_half_interleaved(x):
    """Meta's layout: (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...), pairs of neighbours."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def rotate_half_wrong_axis(x):
    """Splits the positions (dimension -2) instead of the channels."""
    x1, x2 = x.chunk(2, dim=-2)
    return torch.cat((-x2, x1), dim=-2)


@exercise("ch04.rotate_half", reference=rope.rotate_half,
          wrong=[rotate_half_sign_on_second, rotate_half_without_sign, rotate_half_interleaved,
                 rotate_half_wrong_axis],
          hint="split the LAST dimension into halves x1, x2 (x.chunk(2, dim=-1)) and return "
               "torch.cat((-x2, x1), dim=-1).")
def _rotate_half_cases():
    g = torch.Generator().manual_seed(40)
    yield Case(args=(torch.arange(1.0, 5.0),), name="x = [1, 2, 3, 4]")
    yield Case(args=(torch.randn(2, 3, 6, 8, generator=g),), name="x of shape (2, 3, 6, 8) = (B, n_head, T, head_dim)")
    yield Case(args=(torch.randn(1, 2, 4, 16, generator=g, dtype=torch.float64),),
               name="float64 x of shape (1, 2, 4, 16)")


# ----------------------------------------------------------------------------- apply_rope
def apply_rope_minus(x, cos, sin):
    """x cos - rotate_half(x) sin: every pair turns the other way (angle -m theta)."""
    return x * cos - rope.rotate_half(x) * sin


def apply_rope_sin_on_x(x, cos, sin):
    """x sin + rotate_half(x) cos: cos and sin exchanged."""
    return x * sin + rope.rotate_half(x) * cos


def apply_rope_without_rotate_half(x, cos, sin):
    """x cos + x sin: scales each channel instead of mixing the two channels of a pair."""
    return x * cos + x * sin


def apply_rope_interleaved_pairs(x, cos, sin):
    """Meta's interleaved pairs with the half-split table: the right idea in the other layout."""
    return rope.apply_rope_interleaved(x, cos, sin)


@exercise("ch04.apply_rope", reference=rope.apply_rope,
          wrong=[apply_rope_minus, apply_rope_sin_on_x, apply_rope_without_rotate_half,
                 apply_rope_interleaved_pairs],
          hint="x * cos + rotate_half(x) * sin; cos and sin are (T, head_dim) and broadcast over (B, n_head).")
def _apply_rope_cases():
    g = torch.Generator().manual_seed(41)
    for B, nh, T, hd in [(1, 1, 4, 8), (2, 3, 6, 16), (2, 2, 9, 32)]:
        cos, sin = reference_rope_cos_sin(T, hd)
        x = torch.randn(B, nh, T, hd, generator=g)
        yield Case(args=(x, cos, sin), name=f"x of shape {(B, nh, T, hd)}, cos and sin of shape {(T, hd)}")
    cos, sin = rope.RotaryEmbedding(8)(100, 5)  # positions 100..104, as with a KV cache
    yield Case(args=(torch.randn(1, 2, 5, 8, generator=g), cos, sin),
               name="x of shape (1, 2, 5, 8) at positions 100..104")


# ----------------------------------------------------------------------------- checkpoints
def permute_inverse(w, n_heads):
    """The inverse permutation (half-split -> interleaved): view(n_heads, 2, hd/2, C)."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, 2, hd // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def permute_ignoring_heads(w, n_heads):
    """Treats the whole matrix as one head: the even rows of every head go to the top half."""
    out_dim, in_dim = w.shape
    return w.view(out_dim // 2, 2, in_dim).transpose(0, 1).reshape(out_dim, in_dim)


def permute_head_dim_from_columns(w, n_heads):
    """head_dim = C // n_heads: right for q_proj, wrong for k_proj when there are fewer key/value heads."""
    out_dim, in_dim = w.shape
    hd = in_dim // n_heads
    return w.reshape(-1, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def permute_nothing(w, n_heads):
    """Loads Meta's weights as they are."""
    return w.clone()


@exercise("ch04.permute_interleaved_to_half", reference=rope.permute_interleaved_to_half, uses_device=False,
          wrong=[permute_inverse, permute_ignoring_heads, permute_head_dim_from_columns, permute_nothing],
          hint="per head, rows (0, 2, 4, ...) then rows (1, 3, 5, ...): w.view(n_heads, head_dim // 2, 2, C)"
               ".transpose(1, 2).reshape(n_heads * head_dim, C).")
def _permute_cases():
    g = torch.Generator().manual_seed(42)
    yield Case(args=(torch.arange(8.0)[:, None].repeat(1, 3), 1),
               name="one head of head_dim 8, row r filled with the number r, C=3")
    yield Case(args=(torch.randn(2 * 8, 16, generator=g), 2), name="q_proj weight of 2 heads x head_dim 8, C=16")
    yield Case(args=(torch.randn(4 * 16, 32, generator=g), 4), name="q_proj weight of 4 heads x head_dim 16, C=32")
    yield Case(args=(torch.randn(1 * 16, 64, generator=g), 1),
               name="k_proj weight with 1 key/value head of head_dim 16, C=64 (grouped-query attention)")
