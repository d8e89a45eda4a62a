"""Chapter 11 (long context): the RoPE frequencies of four ways to stretch the context.

Every reference is `minigpt.rope.scaled_inv_freq`, which tests/test_inference.py checks against
transformers' ROPE_INIT_FUNCTIONS (linear, dynamic NTK, YaRN; static NTK-aware through the length
at which dynamic NTK's base equals it). Each exercise returns the inverse frequencies theta_i,
shape (head_dim / 2,), float32; YaRN also returns the factor that cos and sin are multiplied by.
"""

from __future__ import annotations

import math

import torch

from minigpt.check import Case, compare_values, exercise
from minigpt.i18n import tr
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
    """Multiplies the frequencies by s: positions run s times *faster*, the opposite of interpolation.
    ja: 周波数を s 倍しています。位置が s 倍「速く」進み、補間の逆になります。"""
    return rope_inv_freq(head_dim, base) * factor


def linear_scales_the_base(head_dim, base, factor):
    """Multiplies the base by s: the first frequency does not move at all, the lowest is divided by less than s.
    ja: 底を s 倍しています。最初の周波数はまったく動かず、最も低い周波数も s より小さい数でしか割られません。"""
    return rope_inv_freq(head_dim, base * factor)


def linear_divides_by_sqrt(head_dim, base, factor):
    """Divides by sqrt(s), as if the stretch were shared between q and k.
    ja: q と k で伸張を分け合うかのように、sqrt(s) で割っています。"""
    return rope_inv_freq(head_dim, base) / math.sqrt(factor)


def linear_in_float64(head_dim, base, factor):
    """Computes in float64 and returns float64: the table built from it is then float64 too.
    ja: float64 で計算して float64 で返しています。そこから作るテーブルも float64 になります。"""
    return 1.0 / (factor * base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


def linear_exponent_i_over_d(head_dim, base, factor):
    """theta_i = base^(-i/d) instead of base^(-2i/d), then divided by s.
    ja: theta_i = base^(-2i/d) ではなく base^(-i/d) を s で割っています。"""
    return 1.0 / (base ** (torch.arange(head_dim // 2).float() / head_dim)) / factor


def linear_unscaled(head_dim, base, factor):
    """Returns the unscaled frequencies ("the positions are divided by s elsewhere"): nothing is interpolated.
    ja: 「位置はどこか別の場所で s で割る」として、スケールしていない周波数を返しています。何も補間されません。"""
    return rope_inv_freq(head_dim, base)


def linear_integer_division(head_dim, base, factor):
    """torch.arange(0, d, 2) // d: integer division gives exponent 0, so every theta is 1 / s.
    ja: torch.arange(0, d, 2) // d: 整数除算で指数が 0 になり、theta がすべて 1 / s になります。"""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2) // head_dim).float()) / factor


def linear_one_per_dimension(head_dim, base, factor):
    """head_dim frequencies (arange(d) * 2 / d) instead of one per pair: shape (d,), not (d/2,).
    ja: ペアごとに 1 つではなく head_dim 個の周波数 (arange(d) * 2 / d) です。形状が (d/2,) ではなく (d,) になります。"""
    return 1.0 / (base ** (torch.arange(head_dim).float() * 2 / head_dim)) / factor


def linear_written_out(head_dim, base, factor):
    """Correct: 1 / (s * base^(2i/d)) in one expression."""
    i = torch.arange(head_dim // 2, dtype=torch.float32)
    return 1.0 / (factor * base ** (2 * i / head_dim))


def linear_in_float64_then_cast(head_dim, base, factor):
    """Correct: float64 inside, float32 returned."""
    i = torch.arange(0, head_dim, 2, dtype=torch.float64)
    return (base ** (-i / head_dim) / factor).float()


@exercise("ch11.linear_inv_freq", reference=reference_linear_inv_freq, also_reference=(scaled_inv_freq,),
          uses_device=False,
          wrong=[linear_multiplies, linear_scales_the_base, linear_divides_by_sqrt, linear_in_float64,
                 linear_exponent_i_over_d, linear_unscaled, linear_integer_division, linear_one_per_dimension],
          correct=[linear_written_out, linear_in_float64_then_cast],
          covers="head_dim 2 to 128, bases 10000 and 500000, factors 1 (no stretch), 2.5, 2, 4 and 8, a float32 "
                 "result of shape (head_dim / 2,)",
          hint="position interpolation squeezes position m to m / s, and angle = m * theta_i, so every "
               "theta_i is divided by s: rope_inv_freq(head_dim, base) / factor.",
          hint_ja="位置補間は位置 m を m / s に縮めます。角度は m * theta_i なので、すべての theta_i を s で割ります: "
                  "rope_inv_freq(head_dim, base) / factor (float32、形状 (head_dim/2,))。")
def _linear_cases():
    for hd, base, s in _SHAPES:
        yield Case(args=(hd, base, s), name=_describe(hd, base, s))
    yield Case(args=(32, 10000.0, 2.5), name=_describe(32, 10000.0, 2.5))
    yield Case(args=(8, 10000.0, 1.0), name=_describe(8, 10000.0, 1.0) + " (no stretch: plain RoPE)",
               name_ja=_describe(8, 10000.0, 1.0) + " (伸張なし: 普通の RoPE)")
    yield Case(args=(2, 100.0, 4.0), name=_describe(2, 100.0, 4.0) + " (one pair)",
               name_ja=_describe(2, 100.0, 4.0) + " (ペア 1 つ)")


# ----------------------------------------------------------------------------- NTK-aware
def reference_ntk_inv_freq(head_dim: int, base: float, factor: float) -> torch.Tensor:
    return scaled_inv_freq(head_dim, base, {"type": "ntk", "factor": factor}, original_max=1)[0]


def ntk_base_times_factor(head_dim, base, factor):
    """base * s without the exponent: the lowest frequency is divided by less than s.
    ja: 指数なしの base * s です。最も低い周波数が s より小さい数でしか割られません。"""
    return rope_inv_freq(head_dim, base * factor)


def ntk_exponent_inverted(head_dim, base, factor):
    """base * s^((d-2)/d): the exponent upside down.
    ja: base * s^((d-2)/d): 指数が上下逆です。"""
    return rope_inv_freq(head_dim, base * factor ** ((head_dim - 2) / head_dim))


def ntk_divides_the_frequencies(head_dim, base, factor):
    """Divides every frequency by s^(d/(d-2)) instead of changing the base: the high frequencies move too.
    ja: 底を変えずに、すべての周波数を s^(d/(d-2)) で割っています。高い周波数まで動きます。"""
    return rope_inv_freq(head_dim, base) / factor ** (head_dim / (head_dim - 2))


def ntk_exponent_d_over_d_minus_1(head_dim, base, factor):
    """base * s^(d/(d-1)): an off-by-one in the exponent, so the lowest frequency is not exactly divided by s.
    ja: base * s^(d/(d-1)): 指数に 1 のずれがあり、最も低い周波数がちょうど s で割られません。"""
    return rope_inv_freq(head_dim, base * factor ** (head_dim / (head_dim - 1)))


def ntk_in_float64(head_dim, base, factor):
    """Computes in float64 and returns float64.
    ja: float64 で計算して float64 で返しています。"""
    new_base = base * factor ** (head_dim / (head_dim - 2))
    return 1.0 / (new_base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


def ntk_d_as_number_of_pairs(head_dim, base, factor):
    """Uses d = head_dim / 2 (the number of pairs) in the exponent d / (d - 2).
    ja: 指数 d / (d - 2) の d に head_dim / 2 (ペアの数) を使っています。"""
    d = head_dim // 2
    return rope_inv_freq(head_dim, base * factor ** (d / (d - 2)))


def ntk_and_linear(head_dim, base, factor):
    """Raises the base AND divides by s: NTK-aware and position interpolation at once, the stretch twice over.
    ja: 底を大きくし、さらに s で割っています。NTK-aware と位置補間を同時に行い、伸張が二重になります。"""
    return rope_inv_freq(head_dim, base * factor ** (head_dim / (head_dim - 2))) / factor


def ntk_written_out(head_dim, base, factor):
    """Correct: theta_i = (base * s^(d/(d-2)))^(-2i/d) written out."""
    d = head_dim
    new_base = base * factor ** (d / (d - 2))
    return new_base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)


def ntk_in_float64_then_cast(head_dim, base, factor):
    """Correct: float64 inside, float32 returned."""
    d = head_dim
    i = torch.arange(0, d, 2, dtype=torch.float64)
    return (1.0 / (base * factor ** (d / (d - 2))) ** (i / d)).float()


@exercise("ch11.ntk_inv_freq", reference=reference_ntk_inv_freq, also_reference=(scaled_inv_freq,),
          uses_device=False,
          wrong=[ntk_base_times_factor, ntk_exponent_inverted, ntk_divides_the_frequencies,
                 ntk_exponent_d_over_d_minus_1, ntk_in_float64, ntk_d_as_number_of_pairs, ntk_and_linear],
          correct=[ntk_written_out, ntk_in_float64_then_cast],
          covers="head_dim 8 to 128, bases 10000 and 500000, factors 1.5, 2, 4 and 8, a float32 result of shape "
                 "(head_dim / 2,)",
          hint="change the base, not the frequencies: new_base = base * factor ** (head_dim / (head_dim - 2)), "
               "then rope_inv_freq(head_dim, new_base). The exponent makes the lowest frequency exactly 1/s of "
               "its old value while the highest stays 1.",
          hint_ja="周波数ではなく底を変えます: new_base = base * factor ** (head_dim / (head_dim - 2))、そして "
                  "rope_inv_freq(head_dim, new_base)。この指数で、最も低い周波数が元の値のちょうど 1/s "
                  "になり、最も高い周波数は 1 のままです。")
def _ntk_cases():
    for hd, base, s in _SHAPES:
        yield Case(args=(hd, base, s), name=_describe(hd, base, s))
    yield Case(args=(8, 10000.0, 1.5), name=_describe(8, 10000.0, 1.5))


# ----------------------------------------------------------------------------- dynamic NTK
def reference_dynamic_ntk_inv_freq(head_dim: int, base: float, factor: float, original_max: int,
                                   seq_len: int) -> torch.Tensor:
    return scaled_inv_freq(head_dim, base, {"type": "dynamic", "factor": factor}, original_max, seq_len)[0]


def dynamic_without_clamp(head_dim, base, factor, original_max, seq_len):
    """Applies the formula below the trained length too: short inputs get a *smaller* base.
    ja: 学習時の長さより短いときにも式を適用しています。短い入力で底が「小さく」なります。"""
    d = head_dim
    return rope_inv_freq(d, base * ((factor * seq_len / original_max) - (factor - 1)) ** (d / (d - 2)))


def dynamic_is_static(head_dim, base, factor, original_max, seq_len):
    """Ignores the length: static NTK-aware with the full factor, even on short inputs.
    ja: 長さを無視しています。短い入力でも全係数の静的な NTK-aware になります。"""
    return rope_inv_freq(head_dim, base * factor ** (head_dim / (head_dim - 2)))


def dynamic_length_ratio_only(head_dim, base, factor, original_max, seq_len):
    """Uses the stretch seq_len / original_max as the factor and forgets `factor` altogether.
    ja: 伸張率 seq_len / original_max を係数として使い、factor を完全に忘れています。"""
    d, L = head_dim, max(seq_len, original_max)
    return rope_inv_freq(d, base * (L / original_max) ** (d / (d - 2)))


def dynamic_without_offset(head_dim, base, factor, original_max, seq_len):
    """factor * L / M without the '- (factor - 1)': at the trained length the base is already scaled.
    ja: '- (factor - 1)' のない factor * L / M です。学習時の長さですでに底がスケールされます。"""
    d, L = head_dim, max(seq_len, original_max)
    return rope_inv_freq(d, base * (factor * L / original_max) ** (d / (d - 2)))


def dynamic_min_instead_of_max(head_dim, base, factor, original_max, seq_len):
    """L = min(seq_len, original_max): long inputs are never stretched, short ones are.
    ja: L = min(seq_len, original_max): 長い入力は伸張されず、短い入力が伸張されます。"""
    d, L = head_dim, min(seq_len, original_max)
    return rope_inv_freq(d, base * ((factor * L / original_max) - (factor - 1)) ** (d / (d - 2)))


def dynamic_exponent_inverted(head_dim, base, factor, original_max, seq_len):
    """The exponent (d - 2) / d instead of d / (d - 2).
    ja: 指数が d / (d - 2) ではなく (d - 2) / d です。"""
    d, L = head_dim, max(seq_len, original_max)
    return rope_inv_freq(d, base * ((factor * L / original_max) - (factor - 1)) ** ((d - 2) / d))


def dynamic_in_float64(head_dim, base, factor, original_max, seq_len):
    """Computes in float64 and returns float64.
    ja: float64 で計算して float64 で返しています。"""
    d, L = head_dim, max(seq_len, original_max)
    new_base = base * ((factor * L / original_max) - (factor - 1)) ** (d / (d - 2))
    return 1.0 / (new_base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))


def dynamic_offset_added(head_dim, base, factor, original_max, seq_len):
    """+ (factor - 1) instead of - (factor - 1): the base grows even at the trained length.
    ja: - (factor - 1) ではなく + (factor - 1) です。学習時の長さでも底が大きくなります。"""
    d, L = head_dim, max(seq_len, original_max)
    return rope_inv_freq(d, base * ((factor * L / original_max) + (factor - 1)) ** (d / (d - 2)))


def dynamic_with_a_branch(head_dim, base, factor, original_max, seq_len):
    """Correct: plain RoPE up to the trained length, the grown base past it."""
    d = head_dim
    if seq_len <= original_max:
        return 1.0 / base ** (torch.arange(0, d, 2).float() / d)
    stretch = factor * seq_len / original_max - (factor - 1)
    return 1.0 / (base * stretch ** (d / (d - 2))) ** (torch.arange(0, d, 2).float() / d)


def dynamic_in_float64_then_cast(head_dim, base, factor, original_max, seq_len):
    """Correct: float64 inside, float32 returned."""
    d, L = head_dim, max(seq_len, original_max)
    new_base = base * (factor * L / original_max - factor + 1) ** (d / (d - 2))
    return (new_base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)).float()


@exercise("ch11.dynamic_ntk_inv_freq", reference=reference_dynamic_ntk_inv_freq, also_reference=(scaled_inv_freq,),
          uses_device=False,
          wrong=[dynamic_without_clamp, dynamic_is_static, dynamic_length_ratio_only, dynamic_without_offset,
                 dynamic_min_instead_of_max, dynamic_exponent_inverted, dynamic_in_float64, dynamic_offset_added],
          correct=[dynamic_with_a_branch, dynamic_in_float64_then_cast],
          covers="shorter than, exactly at, and 2x, 2.7x and 4x the trained length, factors 2 to 8, head_dim 16 to "
                 "128, bases 10000 and 500000, a float32 result",
          hint="L = max(seq_len, original_max) (no change up to the trained length); "
               "new_base = base * (factor * L / original_max - (factor - 1)) ** (d / (d - 2)); "
               "then rope_inv_freq(head_dim, new_base).",
          hint_ja="L = max(seq_len, original_max) (学習時の長さまでは変えない)。"
                  "new_base = base * (factor * L / original_max - (factor - 1)) ** (d / (d - 2))、そして "
                  "rope_inv_freq(head_dim, new_base)。")
def _dynamic_cases():
    for (hd, base, s), (M, L) in zip(_SHAPES, [(64, 128), (128, 64), (4096, 4096), (2048, 8192)]):
        what = "shorter than trained" if L < M else "at the trained length" if L == M else f"{L / M:g}x the trained length"
        what_ja = "学習時より短い" if L < M else "学習時の長さちょうど" if L == M else f"学習時の長さの {L / M:g} 倍"
        yield Case(args=(hd, base, s, M, L), name=_describe(hd, base, s, original_max=M, seq_len=L) + f" ({what})",
                   name_ja=_describe(hd, base, s, original_max=M, seq_len=L) + f" ({what_ja})")
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
    """Interpolates the high frequencies and keeps the low ones: the ramp the wrong way round.
    ja: 高い周波数を補間し、低い周波数をそのままにしています。ランプが逆向きです。"""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow, reverse=True), 0.1 * math.log(factor) + 1


def yarn_hard_switch(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Keeps or interpolates each dimension with no ramp in between (a step at the middle).
    ja: 中間のランプなしに、各次元をそのまま残すか補間するかの二択にしています (中央で段差)。"""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow, hard=True), 0.1 * math.log(factor) + 1


def yarn_factor_squared(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Returns the logits' factor (0.1 ln s + 1)^2 as the cos/sin factor: the logits would get its square again.
    ja: ロジットの係数 (0.1 ln s + 1)^2 を cos/sin の係数として返しています。ロジットにはさらにその 2 乗が掛かります。"""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow), (0.1 * math.log(factor) + 1) ** 2


def yarn_factor_as_divisor(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Reads 'temperature' as something to divide by: 1 / (0.1 ln s + 1) flattens attention instead of sharpening it.
    ja: 「温度」を割る数と読んでいます: 1 / (0.1 ln s + 1) ではアテンションが鋭くならず平らになります。"""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow), 1 / (0.1 * math.log(factor) + 1)


def yarn_ramp_over_dimension_index(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Ramps over the dimension index 2i instead of the pair index i: the ramp ends twice too early.
    ja: ペアの番号 i ではなく次元の番号 2i でランプを作っています。ランプが 2 倍早く終わります。"""
    theta = rope_inv_freq(head_dim, base)
    low, high = yarn_correction_range(head_dim, base, original_max, beta_fast, beta_slow)
    ramp = ((torch.arange(0, head_dim, 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    return theta * (1 - ramp) + theta / factor * ramp, 0.1 * math.log(factor) + 1


def yarn_factor_without_log(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """0.1 * s + 1 instead of 0.1 * ln(s) + 1.
    ja: 0.1 * ln(s) + 1 ではなく 0.1 * s + 1 です。"""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow), 0.1 * factor + 1


def yarn_factor_log10(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """math.log10 instead of the natural log in 0.1 ln(s) + 1.
    ja: 0.1 ln(s) + 1 で自然対数ではなく math.log10 を使っています。"""
    return _yarn(head_dim, base, factor, original_max, beta_fast, beta_slow), 0.1 * math.log10(factor) + 1


def yarn_betas_swapped(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Passes beta_slow where beta_fast belongs (and the other way round): low and high change places.
    ja: beta_fast の場所に beta_slow を (その逆も) 渡しています。low と high が入れ替わります。"""
    return _yarn(head_dim, base, factor, original_max, beta_slow, beta_fast), 0.1 * math.log(factor) + 1


def yarn_ignores_betas(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Always uses the default betas 32 and 1, whatever it is given.
    ja: 渡された値にかかわらず、いつもデフォルトの beta 32 と 1 を使っています。"""
    return _yarn(head_dim, base, factor, original_max, 32.0, 1.0), 0.1 * math.log(factor) + 1


def yarn_blends_the_divisor(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """theta / ((1 - ramp) + factor * ramp): blends the divisor instead of the frequencies, so the pairs inside
    the ramp get too low a frequency.
    ja: theta / ((1 - ramp) + factor * ramp): 周波数ではなく割る数を混ぜています。ランプの途中のペアの周波数が低くなりすぎます。"""
    theta = rope_inv_freq(head_dim, base)
    low, high = yarn_correction_range(head_dim, base, original_max, beta_fast, beta_slow)
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    return theta / ((1 - ramp) + factor * ramp), 0.1 * math.log(factor) + 1


def yarn_by_lerp(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Correct: torch.lerp from theta to theta / s by the ramp."""
    theta = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
    low, high = yarn_correction_range(head_dim, base, original_max, beta_fast, beta_slow)
    ramp = torch.clamp((torch.arange(head_dim // 2).float() - low) / (high - low), 0.0, 1.0)
    return torch.lerp(theta, theta / factor, ramp), 1.0 + 0.1 * math.log(factor)


def yarn_factor_as_tensor(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Correct: the attention factor computed with torch.log, handed back as a 0-dim tensor."""
    inv_freq, _ = yarn_by_lerp(head_dim, base, factor, original_max, beta_fast, beta_slow)
    return inv_freq, 0.1 * torch.log(torch.tensor(factor)) + 1


def yarn_by_loop(head_dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0):
    """Correct: pair by pair with Python floats, then one float32 tensor."""
    low, high = yarn_correction_range(head_dim, base, original_max, beta_fast, beta_slow)
    out = []
    for i in range(head_dim // 2):
        theta = 1.0 / base ** (2 * i / head_dim)
        r = min(max((i - low) / (high - low), 0.0), 1.0)
        out.append(theta * (1 - r) + theta / factor * r)
    return torch.tensor(out, dtype=torch.float32), 0.1 * math.log(factor) + 1.0


def _compare_yarn(expected, got):
    """compare_values; an attention factor handed back as a 0-dim tensor counts as its float."""
    if isinstance(got, (tuple, list)) and len(got) == 2 and torch.is_tensor(got[1]) and got[1].numel() == 1:
        got = (got[0], float(got[1]))
    names = ("inv_freq", "attention_factor")
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return compare_values(expected, got)
    for name, e, g in zip(names, expected, got):
        msg = compare_values(e, g, where=tr("output {n}", "出力 {n}", n=name))
        if msg:
            return msg
    return None


@exercise("ch11.yarn_inv_freq", reference=reference_yarn_inv_freq, also_reference=(scaled_inv_freq,),
          uses_device=False,
          output_names=("inv_freq", "attention_factor"), compare=_compare_yarn,
          wrong=[yarn_ramp_reversed, yarn_hard_switch, yarn_factor_squared, yarn_factor_as_divisor,
                 yarn_ramp_over_dimension_index, yarn_factor_without_log, yarn_factor_log10, yarn_betas_swapped,
                 yarn_ignores_betas, yarn_blends_the_divisor],
          correct=[yarn_by_lerp, yarn_by_loop, yarn_factor_as_tensor],
          covers="head_dim 16 to 128, bases 10000 and 500000, factors 2 to 16, trained lengths 64 to 8192, betas other "
                 "than the defaults, the attention factor",
          hint="ramp_i = clamp((i - low) / (high - low), 0, 1) for i = 0 .. head_dim/2 - 1; "
               "inv_freq = theta * (1 - ramp) + theta / factor * ramp (keep the fast dimensions, interpolate the "
               "slow ones); attention_factor = 0.1 * ln(factor) + 1, the number cos and sin are multiplied by.",
          hint_ja="i = 0 .. head_dim/2 - 1 について ramp_i = clamp((i - low) / (high - low), 0, 1)。"
                  "inv_freq = theta * (1 - ramp) + theta / factor * ramp (速い次元はそのまま、遅い次元は補間)。"
                  "attention_factor = 0.1 * ln(factor) + 1 で、cos と sin に掛ける数です。low と high は "
                  "yarn_correction_range に beta_fast と beta_slow を渡して求めます。")
def _yarn_cases():
    for (hd, base, s), M in zip(_SHAPES, (64, 128, 4096, 8192)):
        yield Case(args=(hd, base, s, M), name=_describe(hd, base, s, original_max=M))
    yield Case(args=(64, 10000.0, 16.0, 2048, 16.0, 2.0),
               name=_describe(64, 10000.0, 16.0, original_max=2048, beta_fast=16.0, beta_slow=2.0))
