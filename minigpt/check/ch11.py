"""Chapter 11 (long context): the RoPE frequencies of four ways to stretch the context.

Every reference is `minigpt.rope.scaled_inv_freq`, which tests/test_inference.py checks against
transformers' ROPE_INIT_FUNCTIONS (linear, dynamic NTK, YaRN; static NTK-aware through the length
at which dynamic NTK's base equals it). Each exercise returns the inverse frequencies theta_i,
shape (head_dim / 2,), float32; YaRN also returns the factor that cos and sin are multiplied by.
"""

from __future__ import annotations

import math

import torch

from minigpt.check import Case, exercise
from minigpt.rope import rope_inv_freq, scaled_inv_freq

# (head_dim, base, factor): a toy head, a course-sized head, Llama-2's and Llama-3's heads
_SHAPES = [(16, 10000.0, 2.0), (48, 10000.0, 4.0), (128, 10000.0, 8.0), (128, 500000.0, 4.0)]


def _describe(head_dim, base, factor, **more):
    extra = "".join(f", {k}={v}" for k, v in more.items())
    return f"head_dim={head_dim}, base={base:g}, factor={factor:g}{extra}"


# ----------------------------------------------------------------------------- linear (position interpolation)
def reference_linear_inv_freq(head_dim: int, base: float, factor: float) -> torch.Tensor:
    return scaled_inv_freq(head_dim, base, {"type": "linear", "factor": factor}, original_max=1)[0]


def linear_multiplies(head_dim, base, factor):
    """Multiplies the frequencies by s: positions run s times *faster*, the opposite of interpolation."""
    return rope_inv_freq(head_dim, base) * factor


def linear_scales_the_base(head_dim, base, factor):
    """Multiplies the base by s: the lowest frequency barely moves, the first one not at all."""
    return rope_inv_freq(head_dim, base * factor)


def linear_divides_by_sqrt(head_dim, base, factor):
    """Divides by sqrt(s), as if the stretch were shared between q and k."""
    return rope_inv_freq(head_dim, base) / math.sqrt(factor)


@exercise("ch11.linear_inv_freq", reference=reference_linear_inv_freq, uses_device=False,
          wrong=[linear_multiplies, linear_scales_the_base, linear_divides_by_sqrt],
          hint="position interpolation squeezes position m to m / s, and angle = m * theta_i, so every "
               "theta_i is divided by s: rope_inv_freq(head_dim, base) / factor.")
def _linear_cases():
    for hd, base, s in _SHAPES:
        yield Case(args=(hd, base, s), name=_describe(hd, base, s))


# ----------------------------------------------------------------------------- NTK-aware
def reference_ntk_inv_freq(head_dim: int, base: float, factor: float) -> torch.Tensor:
    return scaled_inv_freq(head_dim, base, {"type": "ntk", "factor": factor}, original_max=1)[0]


def ntk_base_times_factor(head_dim, base, factor):
    """base * s without the exponent: the lowest frequency is divided by less than s."""
    return rope_inv_freq(head_dim, base * factor)


def ntk_exponent_inverted(head_dim, base, factor):
    """base * s^((d-2)/d): the exponent upside down."""
    return rope_inv_freq(head_dim, base * factor ** ((head_dim - 2) / head_dim))


def ntk_divides_the_frequencies(head_dim, base, factor):
    """Divides every frequency by s^(d/(d-2)) instead of changing the base: the high frequencies move too."""
    return rope_inv_freq(head_dim, base) / factor ** (head_dim / (head_dim - 2))


@exercise("ch11.ntk_inv_freq", reference=reference_ntk_inv_freq, uses_device=False,
          wrong=[ntk_base_times_factor, ntk_exponent_inverted, ntk_divides_the_frequencies],
          hint="change the base, not the frequencies: new_base = base * factor ** (head_dim / (head_dim - 2)), "
               "then rope_inv_freq(head_dim, new_base). The exponent makes the lowest frequency exactly 1/s of "
               "its old value while the highest stays 1.")
def _ntk_cases():
    for hd, base, s in _SHAPES:
        yield Case(args=(hd, base, s), name=_describe(hd, base, s))


# ----------------------------------------------------------------------------- dynamic NTK
def reference_dynamic_ntk_inv_freq(head_dim: int, base: float, factor: float, original_max: int,
                                   seq_len: int) -> torch.Tensor:
    return scaled_inv_freq(head_dim, base, {"type": "dynamic", "factor": factor}, original_max, seq_len)[0]


def dynamic_without_clamp(head_dim, base, factor, original_max, seq_len):
    """Applies the formula below the trained length too: short inputs get a *smaller* base."""
    d = head_dim
    return rope_inv_freq(d, base * ((factor * seq_len / original_max) - (factor - 1)) ** (d / (d - 2)))


def dynamic_is_static(head_dim, base, factor, original_max, seq_len):
    """Ignores the length: static NTK-aware with the full factor, even on short inputs."""
    return rope_inv_freq(head_dim, base * factor ** (head_dim / (head_dim - 2)))


def dynamic_length_ratio_only(head_dim, base, factor, original_max, seq_len):
    """Uses the stretch seq_len / original_max as the factor and forgets `factor` altogether."""
    d, L = head_dim, max(seq_len, original_max)
    return rope_inv_freq(d, base * (L / original_max) ** (d / (d - 2)))


def dynamic_without_offset(head_dim, base, factor, original_max, seq_len):
    """factor * L / M without the '- (factor - 1)': at the trained length the base is already scaled."""
    d, L = head_dim, max(seq_len, original_max)
    return rope_inv_freq(d, base * (factor * L / original_max) ** (d / (d - 2)))


@exercise("ch11.dynamic_ntk_inv_freq", reference=reference_dynamic_ntk_inv_freq, uses_device=False,
          wrong=[dynamic_without_clamp, dynamic_is_static, dynamic_length_ratio_only, dynamic_without_offset],
          hint="L = max(seq_len, original_max) (no change up to the trained length); "
               "new_base = base * (factor * L / original_max - (factor - 1)) ** (d / (d - 2)); "
               "then rope_inv_freq(head_dim, new_base).")
def _dynamic_cases():
    for (hd, base, s), (M, L) in zip(_SHAPES, [(64, 128), (128, 64), (4096, 4096), (2048, 8192)]):
        what = "shorter than trained" if L < M else "at the trained length" if L == M else f"{L / M:g}x the trained length"
        yield Case(args=(hd, base, s, M, L), name=_describe(hd, base, s, original_max=M, seq_len=L) + f" ({what})")
    yield Case(args=(64, 10000.0, 4.0, 256, 700), name=_describe(64, 10000.0, 4.0, original_max=256, seq_len=700))


# ----------------------------------------------------------------------------- YaRN
def yarn_correction_range(head_dim: int, base: float, original_max: int, beta_fast: float = 32.0,
                          beta_slow: float = 1.0) -> tuple[float, float]:
    """The dimensions (low, high) between which YaRN ramps from keeping to interpolating: low turns
    beta_fast times over the trained context, high beta_slow times (the same as the notebook's helper)."""

    def dim_of(n_rotations):
        return head_dim * math.log(original_max / (n_rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(dim_of(beta_fast)), 0)
    high = min(math.ceil(dim_of(beta_slow)), head_dim - 1)
    return (low, high + 0.001) if low == high else (low, high)


def reference_yarn_inv_freq(head_dim: int, base: float, factor: float, original_max: int,
                            beta_fast: float = 32.0, beta_slow: float = 1.0) -> tuple[torch.Tensor, float]:
    scaling = {"type": "yarn", "factor": factor, "beta_fast": beta_fast, "beta_slow": beta_slow}
    return scaled_inv_freq(head_dim, base, scaling, original_max)


def _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow, reverse=False, hard=False):
    theta = rope_inv_freq(head_dim, base)
    low, high = yarn_correction_range(head_dim, base, original_max, beta_fast, beta_slow)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    if hard:
        ramp = (ramp >= 0.5).float()
    if reverse:
        ramp = 1 - ramp
    return theta * (1 - ramp) + theta / factor * ramp


def yarn_ramp_reversed(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Interpolates the high frequencies and keeps the low ones: the ramp the wrong way round."""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow, reverse=True), 0.1 * math.log(factor) + 1


def yarn_hard_switch(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Keeps or interpolates each dimension with no ramp in between (a step at the middle)."""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow, hard=True), 0.1 * math.log(factor) + 1


def yarn_factor_squared(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Returns the logits' factor (0.1 ln s + 1)^2 as the cos/sin factor: the logits would get its square again."""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow), (0.1 * math.log(factor) + 1) ** 2


def yarn_factor_as_divisor(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Reads 'temperature' as something to divide by: 1 / (0.1 ln s + 1) flattens attention instead of sharpening it."""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow), 1 / (0.1 * math.log(factor) + 1)


@exercise("ch11.yarn_inv_freq", reference=reference_yarn_inv_freq, uses_device=False,
          output_names=("inv_freq", "attention_factor"),
          wrong=[yarn_ramp_reversed, yarn_hard_switch, yarn_factor_squared, yarn_factor_as_divisor],
          hint="ramp_i = clamp((i - low) / (high - low), 0, 1) for i = 0 .. head_dim/2 - 1; "
               "inv_freq = theta * (1 - ramp) + theta / factor * ramp (keep the fast dimensions, interpolate the "
               "slow ones); attention_factor = 0.1 * ln(factor) + 1, the number cos and sin are multiplied by.")
def _yarn_cases():
    for (hd, base, s), M in zip(_SHAPES, (64, 128, 4096, 8192)):
        yield Case(args=(hd, base, s, M), name=_describe(hd, base, s, original_max=M))
    yield Case(args=(64, 10000.0, 16.0, 2048, 16.0, 2.0),
               name=_describe(64, 10000.0, 16.0, original_max=2048, beta_fast=16.0, beta_slow=2.0))
