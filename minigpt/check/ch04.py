"""Chapter 04 (rotary position embeddings): the cos/sin table, rotate_half, apply_rope, and the
permutation that turns Meta's interleaved q/k weights into the half-split layout.

The references are minigpt.rope's own functions. The table exercise has a simpler interface than
the package's `RotaryEmbedding` module (which caches, scales and slices), so a thin adapter below
gives the module's computation the notebook's interface.
"""

from __future__ import annotations

import math

import torch

from minigpt import rope
from minigpt.check import Case, exercise


def _compare_low_precision(expected, got, rtol=1e-4, atol=1e-5):
    """compare_values, with a tolerance of a few units in the last place for float16 and bfloat16
    tensors (a correct answer computed in float32 and cast back differs from the reference there)."""
    from minigpt.check import compare_values

    lowp = (torch.float16, torch.bfloat16)
    if isinstance(expected, torch.Tensor) and expected.dtype in lowp:
        return compare_values(expected, got, rtol=2e-2, atol=2e-2)
    return compare_values(expected, got, rtol=rtol, atol=atol)


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
    """Each angle repeated for neighbours (2i, 2i+1): Meta's layout, not the half-split one.
    ja: 各角度を隣り合う (2i, 2i+1) に繰り返しています。Meta のレイアウトで、半分割のものではありません。"""
    return _table(T, head_dim, base, layout="interleaved")


def cos_sin_exponent_i_over_d(T, head_dim, base=10000.0):
    """theta_i = base^(-i/d) instead of base^(-2i/d): the frequencies fall off half as fast.
    ja: theta_i = base^(-2i/d) ではなく base^(-i/d) です。周波数の減り方が半分の速さになります。"""
    return _table(T, head_dim, base, exponent_step=1)


def cos_sin_positions_from_one(T, head_dim, base=10000.0):
    """Positions 1..T instead of 0..T-1: the first token is already rotated.
    ja: 位置が 0..T-1 ではなく 1..T です。最初のトークンがすでに回転しています。"""
    return _table(T, head_dim, base, start=1)


def cos_sin_swapped(T, head_dim, base=10000.0):
    """Returns (sin, cos) instead of (cos, sin).
    ja: (cos, sin) ではなく (sin, cos) を返しています。"""
    cos, sin = _table(T, head_dim, base)
    return sin, cos


def cos_sin_ignores_base(T, head_dim, base=10000.0):
    """Always 10000: right for most checkpoints, wrong for Llama 3 (500000) and this chapter's cases.
    ja: 底がいつも 10000 です。多くのチェックポイントでは正しいのですが、Llama 3 (500000) やこの章のケースでは誤りです。"""
    return _table(T, head_dim, 10000.0)


def cos_sin_without_repeating(T, head_dim, base=10000.0):
    """Returns the (T, head_dim/2) angles' cos and sin: forgets that both halves need them.
    ja: 形状 (T, head_dim/2) の角度の cos と sin を返しています。両方の半分に必要なことを忘れています。"""
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(T).float(), theta)
    return angles.cos(), angles.sin()


def cos_sin_pairs_from_one(T, head_dim, base=10000.0):
    """theta_i for i = 1 .. head_dim/2 instead of 0 .. head_dim/2 - 1: the fastest pair is lost.
    ja: theta_i の i が 0 .. head_dim/2 - 1 ではなく 1 .. head_dim/2 です。最も速いペアが抜け落ちます。"""
    theta = 1.0 / (base ** (torch.arange(2, head_dim + 2, 2).float() / head_dim))
    angles = torch.outer(torch.arange(T).float(), theta)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def cos_sin_in_float64(T, head_dim, base=10000.0):
    """Computes in float64 for accuracy and returns float64: the model's float32 q and k get promoted.
    ja: 精度のため float64 で計算し、float64 のまま返しています。モデルの float32 の q と k が float64 に昇格します。"""
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(T, dtype=torch.float64), theta)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def cos_sin_angles_in_bfloat16(T, head_dim, base=10000.0):
    """Stores the angles in bfloat16 to save memory: an angle near 15 is off by up to 0.03 rad, and it gets worse
    with the position.
    ja: メモリ節約のため角度を bfloat16 で保持しています。角度 15 付近で最大 0.03 rad ずれ、位置が進むほど悪化します。"""
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    angles = torch.outer(torch.arange(T).float(), theta).bfloat16()
    angles = torch.cat((angles, angles), dim=-1)
    return angles.float().cos(), angles.float().sin()


def cos_sin_sets_default_dtype(T, head_dim, base=10000.0):
    """Switches the default dtype to float64 for precision and never switches it back.
    ja: 精度のためデフォルトの dtype を float64 に切り替え、戻していません。"""
    torch.set_default_dtype(torch.float64)
    cos, sin = rope.RotaryEmbedding(head_dim, base, max_len=T)(0, T)
    return cos.float(), sin.float()


def cos_sin_in_float64_then_cast(T, head_dim, base=10000.0):
    """Correct: angles in float64, then cast to float32."""
    theta = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = torch.outer(torch.arange(T, dtype=torch.float64), theta).repeat(1, 2)
    return angles.cos().float(), angles.sin().float()


def cos_sin_from_complex_exponential(T, head_dim, base=10000.0):
    """Correct: e^(i m theta) with torch.polar (Meta's freqs_cis), then its real and imaginary parts."""
    theta = base ** (-torch.arange(0, head_dim // 2, dtype=torch.float32) * 2 / head_dim)
    pos = torch.arange(T, dtype=torch.float32)[:, None]
    cis = torch.polar(torch.ones(T, head_dim // 2), pos * theta)
    return torch.cat((cis.real, cis.real), -1), torch.cat((cis.imag, cis.imag), -1)


def cos_sin_by_loops(T, head_dim, base=10000.0):
    """Correct: a loop over positions and pairs, with math.cos and math.sin."""
    cos, sin = torch.zeros(T, head_dim), torch.zeros(T, head_dim)
    half = head_dim // 2
    for m in range(T):
        for i in range(half):
            angle = m * (1.0 / base ** (2 * i / head_dim))
            cos[m, i] = cos[m, i + half] = math.cos(angle)
            sin[m, i] = sin[m, i + half] = math.sin(angle)
    return cos, sin


@exercise("ch04.rope_cos_sin", reference=reference_rope_cos_sin, also_reference=(rope.RotaryEmbedding,),
          uses_device=False, output_names=("cos", "sin"),
          wrong=[cos_sin_interleaved, cos_sin_exponent_i_over_d, cos_sin_positions_from_one, cos_sin_swapped,
                 cos_sin_ignores_base, cos_sin_without_repeating, cos_sin_pairs_from_one, cos_sin_in_float64,
                 cos_sin_angles_in_bfloat16, cos_sin_sets_default_dtype],
          correct=[cos_sin_in_float64_then_cast, cos_sin_from_complex_exponential, cos_sin_by_loops],
          covers="one pair (head_dim 2), odd T, T = 1, bases 100, 10000 and 500000, positions up to 99 (angles "
                 "far beyond 2 pi), float32 output",
          atol=3e-5,
          hint="theta = 1 / base ** (torch.arange(0, head_dim, 2) / head_dim); angles = torch.outer(positions "
               "0..T-1, theta) of shape (T, head_dim/2); repeat them side by side with torch.cat((a, a), -1); "
               "return (angles.cos(), angles.sin()).",
          hint_ja="theta = 1 / base ** (torch.arange(0, head_dim, 2) / head_dim)。angles = torch.outer(位置 0..T-1, "
                  "theta) で形状は (T, head_dim/2)。torch.cat((a, a), -1) で左右に並べ、(angles.cos(), angles.sin()) "
                  "を float32 で返します。")
def _cos_sin_cases():
    yield Case(args=(4, 8), name="T=4, head_dim=8, base 10000", name_ja="T=4、head_dim=8、底 10000")
    yield Case(args=(16, 32), name="T=16, head_dim=32, base 10000", name_ja="T=16、head_dim=32、底 10000")
    yield Case(args=(7, 64, 500000.0), name="T=7, head_dim=64, base 500000 (Llama 3)",
                                       name_ja="T=7、head_dim=64、底 500000 (Llama 3)")
    yield Case(args=(3, 2, 100.0), name="T=3, head_dim=2 (one pair), base 100", name_ja="T=3、head_dim=2 (ペア 1 つ)、底 100")
    yield Case(args=(1, 16), name="T=1 (position 0 only), head_dim=16", name_ja="T=1 (位置 0 のみ)、head_dim=16")
    yield Case(args=(100, 12), name="T=100, head_dim=12: angles up to 99 radians",
                               name_ja="T=100、head_dim=12: 角度は最大 99 ラジアン")


# ----------------------------------------------------------------------------- rotate_half
def rotate_half_sign_on_second(x):
    """(x2, -x1): a rotation by -90 degrees; with apply_rope it turns every pair the other way.
    ja: (x2, -x1): -90 度の回転です。apply_rope と組み合わせると、どのペアも逆向きに回ります。"""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2, -x1), dim=-1)


def rotate_half_without_sign(x):
    """Swaps the halves but forgets the minus sign: a reflection, not a rotation.
    ja: 半分どうしを入れ替えていますが、マイナス符号を忘れています。回転ではなく鏡映です。"""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2, x1), dim=-1)


def rotate_half_interleaved(x):
    """Meta's layout: (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...), pairs of neighbours.
    ja: Meta のレイアウトです: (x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)、隣り合う成分のペア。"""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def rotate_half_wrong_axis(x):
    """Splits the positions (dimension -2) instead of the channels.
    ja: チャネルではなく位置の次元 (次元 -2) を分割しています。"""
    x1, x2 = x.chunk(2, dim=-2)
    return torch.cat((-x2, x1), dim=-2)


def rotate_half_in_place(x):
    """Negates the second half inside x itself (x2.neg_()) to save a copy: the caller's x changes.
    ja: コピーを省くため x の後半を x 自身の中で符号反転 (x2.neg_()) しています。呼び出し側の x が変わります。"""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x2.neg_(), x1), dim=-1)


@torch.no_grad()
def rotate_half_without_grad(x):
    """Under @torch.no_grad(), "there are no weights here": no gradient reaches q and k through RoPE.
    ja: 「ここには重みがない」として @torch.no_grad() の下で計算しています。RoPE を通して q と k に勾配が届きません。"""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate_half_flipped(x):
    """flip(-1) instead of swapping the halves: the channels inside each half come out reversed too.
    ja: 半分どうしの入れ替えではなく flip(-1) です。各半分の中のチャネルの順序も逆になります。"""
    y = x.flip(-1)
    half = x.shape[-1] // 2
    return torch.cat((-y[..., :half], y[..., half:]), dim=-1)


def rotate_half_sign_vector_float32(x):
    """Swaps the halves, then multiplies by a sign vector built in float32: a bfloat16 x comes back float32.
    ja: 半分を入れ替えてから float32 で作った符号ベクトルを掛けています。bfloat16 の x が float32 で返ってきます。"""
    half = x.shape[-1] // 2
    sign = torch.cat((-torch.ones(half), torch.ones(half)))
    return torch.cat((x[..., half:], x[..., :half]), dim=-1) * sign


def rotate_half_by_roll(x):
    """Correct: roll the last dimension by half, then negate the first half."""
    half = x.shape[-1] // 2
    y = torch.roll(x, shifts=half, dims=-1)
    sign = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
    sign[:half] = -1
    return y * sign


def rotate_half_by_matrix(x):
    """Correct: multiply by the (head_dim, head_dim) matrix of the rotation by 90 degrees of each pair."""
    d, half = x.shape[-1], x.shape[-1] // 2
    R = torch.zeros(d, d, dtype=x.dtype, device=x.device)
    i = torch.arange(half, device=x.device)
    R[i, i + half] = -1  # output i = -x[i + half]
    R[i + half, i] = 1  # output i + half = x[i]
    return torch.einsum("...j,ij->...i", x, R)


def rotate_half_by_slicing(x):
    """Correct: slices instead of chunk."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


@exercise("ch04.rotate_half", reference=rope.rotate_half,
          wrong=[rotate_half_sign_on_second, rotate_half_without_sign, rotate_half_interleaved,
                 rotate_half_wrong_axis, rotate_half_in_place, rotate_half_without_grad, rotate_half_flipped,
                 rotate_half_sign_vector_float32],
          correct=[rotate_half_by_roll, rotate_half_by_matrix, rotate_half_by_slicing],
          covers="a 1-D x, (B, n_head, T, head_dim) with T != head_dim, head_dim 2, float64, bfloat16 and float16, "
                 "gradients, x left unchanged",
          hint="split the LAST dimension into halves x1, x2 (x.chunk(2, dim=-1)) and return "
               "torch.cat((-x2, x1), dim=-1).",
          hint_ja="最後の次元を半分ずつ x1, x2 に分け (x.chunk(2, dim=-1))、torch.cat((-x2, x1), dim=-1) を返します。"
                  "入力 x は書き換えないこと。")
def _rotate_half_cases():
    g = torch.Generator().manual_seed(40)
    yield Case(args=(torch.arange(1.0, 5.0),), name="x = [1, 2, 3, 4]", name_ja="x = [1, 2, 3, 4]")
    yield Case(args=(torch.randn(2, 3, 6, 8, generator=g),), name="x of shape (2, 3, 6, 8) = (B, n_head, T, head_dim)",
                                                             name_ja="形状 (2, 3, 6, 8) = (B, n_head, T, head_dim) の x")
    yield Case(args=(torch.randn(1, 2, 4, 16, generator=g, dtype=torch.float64),),
               name="float64 x of shape (1, 2, 4, 16)", name_ja="形状 (1, 2, 4, 16) の float64 の x")
    yield Case(args=(torch.randn(1, 2, 3, 2, generator=g),), name="head_dim 2 (one pair), x of shape (1, 2, 3, 2)",
                                                             name_ja="head_dim 2 (ペア 1 つ)、形状 (1, 2, 3, 2) の x")
    yield Case(args=(torch.randn(2, 1, 5, 8, generator=g).bfloat16(),), name="bfloat16 x of shape (2, 1, 5, 8)",
                                                                        name_ja="形状 (2, 1, 5, 8) の bfloat16 の x")
    yield Case(args=(torch.randn(1, 2, 3, 8, generator=g).half(),), name="float16 x of shape (1, 2, 3, 8)",
                                                                    name_ja="形状 (1, 2, 3, 8) の float16 の x")


# ----------------------------------------------------------------------------- apply_rope
def reference_apply_rope(x, cos, sin):
    """rope.apply_rope. The tables are constants (gradients are compared for x only): Meta's complex-number
    version reads each angle once, from the first half of the table, which is just as right."""
    return rope.apply_rope(x, cos.detach(), sin.detach())


def apply_rope_minus(x, cos, sin):
    """x cos - rotate_half(x) sin: every pair turns the other way (angle -m theta).
    ja: x cos - rotate_half(x) sin: どのペアも逆向き (角度 -mθ) に回ります。"""
    return x * cos - rope.rotate_half(x) * sin


def apply_rope_sin_on_x(x, cos, sin):
    """x sin + rotate_half(x) cos: cos and sin exchanged.
    ja: x sin + rotate_half(x) cos: cos と sin が入れ替わっています。"""
    return x * sin + rope.rotate_half(x) * cos


def apply_rope_without_rotate_half(x, cos, sin):
    """x cos + x sin: scales each channel instead of mixing the two channels of a pair.
    ja: x cos + x sin: ペアの 2 成分を混ぜずに、各チャネルを定数倍しているだけです。"""
    return x * cos + x * sin


def apply_rope_interleaved_pairs(x, cos, sin):
    """Meta's interleaved pairs with the half-split table: the right idea in the other layout.
    ja: 半分割のテーブルで Meta のインターリーブ型ペア (2i, 2i+1) を回しています。考え方は正しいが、レイアウトが違います。"""
    return rope.apply_rope_interleaved(x, cos, sin)


def apply_rope_in_place(x, cos, sin):
    """x.mul_(cos).add_(...): the right numbers, written into the caller's q or k.
    ja: x.mul_(cos).add_(...): 値は正しいのですが、呼び出し側の q や k に書き込んでいます。"""
    r = rope.rotate_half(x)
    return x.mul_(cos).add_(r * sin)


def apply_rope_rebuilds_the_table(x, cos, sin):
    """Ignores the cos and sin it is given and rebuilds them for positions 0..T-1 with base 10000: wrong
    after a KV cache (positions 100..) and for any other base or scaled table.
    ja: 渡された cos と sin を無視し、位置 0..T-1・底 10000 のテーブルを作り直しています。KV キャッシュの後 (位置 100..) や、別の底・スケールされたテーブルでは誤りです。"""
    cos, sin = reference_rope_cos_sin(x.shape[-2], x.shape[-1])
    return x * cos.to(x) + rope.rotate_half(x) * sin.to(x)


def apply_rope_unit_rotation_from_angle(x, cos, sin):
    """Recovers the angle with atan2(sin, cos) and rotates by it: a scaled table (YaRN multiplies cos and sin
    by 0.1 ln s + 1) loses its factor.
    ja: atan2(sin, cos) で角度を取り出して回転しています。スケールされたテーブル (YaRN は cos と sin に 0.1 ln s + 1 を掛けます) では係数が失われます。"""
    angle = torch.atan2(sin, cos)
    return x * angle.cos() + rope.rotate_half(x) * angle.sin()


def apply_rope_returns_float32(x, cos, sin):
    """Computes in float32 for accuracy and forgets to cast back: a bfloat16 q comes back float32.
    ja: 精度のため float32 で計算し、元に戻し忘れています。bfloat16 の q が float32 で返ってきます。"""
    xf = x.float()
    return xf * cos.float() + rope.rotate_half(xf) * sin.float()


@torch.no_grad()
def apply_rope_without_grad(x, cos, sin):
    """@torch.no_grad() because "RoPE has no parameters": no gradient reaches q_proj and k_proj.
    ja: 「RoPE にはパラメータがない」として @torch.no_grad() を付けています。q_proj と k_proj に勾配が届きません。"""
    return x * cos + rope.rotate_half(x) * sin


def apply_rope_as_complex_numbers(x, cos, sin):
    """Correct: each pair (x_i, x_{i+d/2}) as a complex number times cos + i sin (in float32, then cast back)."""
    half = x.shape[-1] // 2
    z = torch.complex(x[..., :half].float(), x[..., half:].float())
    w = torch.complex(cos[..., :half].float(), sin[..., :half].float())
    out = z * w
    return torch.cat((out.real, out.imag), dim=-1).to(torch.promote_types(x.dtype, cos.dtype))


def apply_rope_in_float64(x, cos, sin):
    """Correct: the same formula in float64, cast back to the dtype the reference returns."""
    out_dtype = torch.promote_types(x.dtype, cos.dtype)
    x64 = x.double()
    return (x64 * cos.double() + rope.rotate_half(x64) * sin.double()).to(out_dtype)


def apply_rope_by_pairs(x, cos, sin):
    """Correct: the 2x2 rotation written out for the two halves."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c1, s1, c2, s2 = cos[..., :half], sin[..., :half], cos[..., half:], sin[..., half:]
    return torch.cat((x1 * c1 - x2 * s1, x2 * c2 + x1 * s2), dim=-1)



def _scaled_and_low_precision_table_cases(g):
    """Cases both RoPE layouts need: a scaled table (code that rebuilds its own table fails) and bf16."""
    cos, sin = reference_rope_cos_sin(6, 16, 500000.0)
    yield Case(args=(torch.randn(2, 2, 6, 16, generator=g), cos * 1.2, sin * 1.2),
               name="x of shape (2, 2, 6, 16), a YaRN-scaled table (cos and sin times 1.2), base 500000",
               name_ja="形状 (2, 2, 6, 16) の x、YaRN でスケールしたテーブル (cos と sin を 1.2 倍)、底 500000")
    cos, sin = rope.RotaryEmbedding(16)(3, 7)
    yield Case(args=(torch.randn(1, 2, 7, 16, generator=g).bfloat16(), cos.bfloat16(), sin.bfloat16()),
               name="bfloat16 x of shape (1, 2, 7, 16) with bfloat16 cos and sin (positions 3..9)",
               name_ja="形状 (1, 2, 7, 16) の bfloat16 の x と bfloat16 の cos, sin (位置 3..9)", grad=False)

@exercise("ch04.apply_rope", reference=reference_apply_rope, also_reference=(rope.apply_rope,),
          compare=_compare_low_precision,
          wrong=[apply_rope_minus, apply_rope_sin_on_x, apply_rope_without_rotate_half,
                 apply_rope_interleaved_pairs, apply_rope_in_place, apply_rope_rebuilds_the_table,
                 apply_rope_unit_rotation_from_angle, apply_rope_returns_float32, apply_rope_without_grad],
          correct=[apply_rope_as_complex_numbers, apply_rope_in_float64, apply_rope_by_pairs],
          covers="several (B, n_head, T, head_dim), positions 100..104 (a KV cache), base 500000, a YaRN-scaled "
                 "table (cos and sin times 1.2), bfloat16 and float16 x with tables of the same dtype, gradients, "
                 "x left unchanged",
          hint="x * cos + rotate_half(x) * sin, with the cos and sin you are given (they may start at any position "
               "or be scaled); they are (T, head_dim) and broadcast over (B, n_head).",
          hint_ja="x * cos + rotate_half(x) * sin。cos と sin は渡されたものをそのまま使います (任意の位置から始まる、"
                  "あるいはスケールされたテーブルのこともあります)。形状 (T, head_dim) で (B, n_head) 方向にブロード"
                  "キャストされます。")
def _apply_rope_cases():
    g = torch.Generator().manual_seed(41)
    for B, nh, T, hd in [(1, 1, 4, 8), (2, 3, 6, 16), (2, 2, 9, 32)]:
        cos, sin = reference_rope_cos_sin(T, hd)
        x = torch.randn(B, nh, T, hd, generator=g)
        yield Case(args=(x, cos, sin), name=f"x of shape {(B, nh, T, hd)}, cos and sin of shape {(T, hd)}",
                                       name_ja=f"形状 {(B, nh, T, hd)} の x、形状 {(T, hd)} の cos と sin")
    cos, sin = rope.RotaryEmbedding(8)(100, 5)  # positions 100..104, as with a KV cache
    yield Case(args=(torch.randn(1, 2, 5, 8, generator=g), cos, sin),
               name="x of shape (1, 2, 5, 8) at positions 100..104", name_ja="位置 100..104 にある形状 (1, 2, 5, 8) の x")
    yield from _scaled_and_low_precision_table_cases(g)
    cos, sin = rope.RotaryEmbedding(8)(0, 4)
    yield Case(args=(torch.randn(2, 1, 4, 8, generator=g).half(), cos.half(), sin.half()),
               name="float16 x of shape (2, 1, 4, 8) with float16 cos and sin",
               name_ja="形状 (2, 1, 4, 8) の float16 の x と float16 の cos, sin", grad=False)


# ----------------------------------------------------------------------------- checkpoints
def permute_inverse(w, n_heads):
    """The inverse permutation (half-split -> interleaved): view(n_heads, 2, hd/2, C).
    ja: 逆の置換 (半分割 -> インターリーブ) です: view(n_heads, 2, hd/2, C)。"""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, 2, hd // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def permute_ignoring_heads(w, n_heads):
    """Treats the whole matrix as one head: the even rows of every head go to the top half.
    ja: 行列全体を 1 つのヘッドとして扱っています。全ヘッドの偶数行が上半分に集まります。"""
    out_dim, in_dim = w.shape
    return w.view(out_dim // 2, 2, in_dim).transpose(0, 1).reshape(out_dim, in_dim)


def permute_head_dim_from_columns(w, n_heads):
    """head_dim = C // n_heads: right for q_proj, wrong for k_proj when there are fewer key/value heads.
    ja: head_dim = C // n_heads としています。q_proj では正しいのですが、キー/バリューのヘッドが少ない k_proj では誤りです。"""
    out_dim, in_dim = w.shape
    hd = in_dim // n_heads
    return w.reshape(-1, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def permute_nothing(w, n_heads):
    """Loads Meta's weights as they are.
    ja: Meta の重みをそのまま読み込んでいます。"""
    return w.clone()


def permute_in_place(w, n_heads):
    """Writes the permuted rows back into w (w.copy_(...)) and returns it: the checkpoint's tensor changes.
    ja: 置換した行を w に書き戻して (w.copy_(...)) 返しています。チェックポイントのテンソルが変わってしまいます。"""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.copy_(w.view(n_heads, hd // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim))


def permute_odd_rows_first(w, n_heads):
    """Per head, the odd rows (1, 3, 5, ...) first: each pair's two members land in the wrong halves.
    ja: ヘッドごとに奇数行 (1, 3, 5, ...) を先にしています。各ペアの 2 つの成分が逆の半分に入ります。"""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    heads = w.view(n_heads, hd, in_dim)
    return torch.cat((heads[:, 1::2], heads[:, 0::2]), dim=1).reshape(out_dim, in_dim)


def permute_into_float32_buffer(w, n_heads):
    """Fills a torch.zeros(w.shape) buffer head by head: a bfloat16 checkpoint comes back float32.
    ja: torch.zeros(w.shape) のバッファにヘッドごとに詰めています。bfloat16 のチェックポイントが float32 で返ってきます。"""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    out = torch.zeros(w.shape)
    for h in range(n_heads):
        head = w[h * hd:(h + 1) * hd]
        out[h * hd:(h + 1) * hd] = torch.cat((head[0::2], head[1::2]))
    return out


def permute_pairs_across_heads(w, n_heads):
    """transpose(0, 2) instead of (1, 2): the even rows of all heads first, then the odd rows of all heads.
    ja: transpose(1, 2) ではなく transpose(0, 2) です。全ヘッドの偶数行が先に、次に全ヘッドの奇数行が並びます。"""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    return w.view(n_heads, hd // 2, 2, in_dim).transpose(0, 2).reshape(out_dim, in_dim)


def permute_by_index(w, n_heads):
    """Correct: one index tensor of the new row order, w[index]."""
    out_dim, in_dim = w.shape
    hd = out_dim // n_heads
    one_head = torch.cat((torch.arange(0, hd, 2), torch.arange(1, hd, 2)))
    index = torch.cat([h * hd + one_head for h in range(n_heads)])
    return w[index.to(w.device)]


def permute_head_by_head(w, n_heads):
    """Correct: for each head, its even rows then its odd rows."""
    return torch.cat([torch.cat((h[0::2], h[1::2])) for h in w.chunk(n_heads, dim=0)])


@exercise("ch04.permute_interleaved_to_half", reference=rope.permute_interleaved_to_half, uses_device=False,
          wrong=[permute_inverse, permute_ignoring_heads, permute_head_dim_from_columns, permute_nothing,
                 permute_in_place, permute_odd_rows_first, permute_into_float32_buffer, permute_pairs_across_heads],
          correct=[permute_by_index, permute_head_by_head],
          covers="one head with readable rows, 2 and 4 heads, a k_proj with fewer rows than columns (grouped-query "
                 "attention), head_dim 2, a bfloat16 checkpoint, w left unchanged",
          hint="per head, rows (0, 2, 4, ...) then rows (1, 3, 5, ...): w.view(n_heads, head_dim // 2, 2, C)"
               ".transpose(1, 2).reshape(n_heads * head_dim, C).",
          hint_ja="ヘッドごとに、行 (0, 2, 4, ...) の後に行 (1, 3, 5, ...) を並べます: w.view(n_heads, head_dim // 2, "
                  "2, C).transpose(1, 2).reshape(n_heads * head_dim, C)。head_dim は行数 / n_heads です。")
def _permute_cases():
    g = torch.Generator().manual_seed(42)
    yield Case(args=(torch.arange(8.0)[:, None].repeat(1, 3), 1),
               name="one head of head_dim 8, row r filled with the number r, C=3",
               name_ja="head_dim 8 のヘッド 1 つ、行 r には数 r が入っている、C=3")
    yield Case(args=(torch.randn(2 * 8, 16, generator=g), 2), name="q_proj weight of 2 heads x head_dim 8, C=16",
                                                              name_ja="2 ヘッド x head_dim 8 の q_proj の重み、C=16")
    yield Case(args=(torch.randn(4 * 16, 32, generator=g), 4), name="q_proj weight of 4 heads x head_dim 16, C=32",
                                                               name_ja="4 ヘッド x head_dim 16 の q_proj の重み、C=32")
    yield Case(args=(torch.randn(1 * 16, 64, generator=g), 1),
               name="k_proj weight with 1 key/value head of head_dim 16, C=64 (grouped-query attention)",
               name_ja="キー/バリューのヘッドが 1 つ (head_dim 16) の k_proj の重み、C=64 (grouped-query attention)")
    yield Case(args=(torch.randn(3 * 2, 5, generator=g), 3), name="3 heads of head_dim 2 (one pair each), C=5",
                                                             name_ja="head_dim 2 (各ペア 1 つ) のヘッド 3 つ、C=5")
    yield Case(args=(torch.randn(2 * 8, 12, generator=g).bfloat16(), 2),
               name="a bfloat16 checkpoint: k_proj of 2 heads x head_dim 8, C=12",
               name_ja="bfloat16 のチェックポイント: 2 ヘッド x head_dim 8 の k_proj、C=12")


# ----------------------------------------------------------------------------- interleaved RoPE
def reference_apply_rope_interleaved(x, cos, sin):
    """rope.apply_rope_interleaved: pairs (x_2i, x_2i+1) turned by the angle of column i of the half-split
    table. The tables are constants (gradients are compared for x only)."""
    return rope.apply_rope_interleaved(x, cos.detach(), sin.detach())


def _pairs(x):
    return x[..., 0::2], x[..., 1::2]


def _interleave(even, odd):
    return torch.stack((even, odd), dim=-1).flatten(-2)


def interleaved_with_half_split_pairs(x, cos, sin):
    """Rotates the half-split pairs (x_i, x_i+d/2) with rotate_half: the other layout, not neighbours.
    ja: rotate_half で半分割のペア (x_i, x_i+d/2) を回しています。隣り合うペアではなく、もう一方のレイアウトです。"""
    return x * cos + rope.rotate_half(x) * sin


def interleaved_every_other_column(x, cos, sin):
    """Takes the angles from the table's even columns (cos[..., 0::2]): pair i gets the angle of pair 2i.
    ja: テーブルの偶数列 (cos[..., 0::2]) から角度を取っています。ペア i にペア 2i の角度が付きます。"""
    c, s = cos[..., 0::2], sin[..., 0::2]
    e, o = _pairs(x)
    return _interleave(e * c - o * s, e * s + o * c)


def interleaved_table_as_is(x, cos, sin):
    """Multiplies channel j by cos[..., j] of the half-split table: the two members of a pair get different angles.
    ja: 半分割のテーブルの cos[..., j] をチャネル j にそのまま掛けています。ペアの 2 成分に別々の角度が付きます。"""
    e, o = _pairs(x)
    rotated = _interleave(-o, e)  # (x0, x1) -> (-x1, x0) for each neighbour pair
    return x * cos + rotated * sin


def interleaved_turns_backwards(x, cos, sin):
    """(x_2i cos + x_2i+1 sin, -x_2i sin + x_2i+1 cos): every pair turns by -m theta.
    ja: (x_2i cos + x_2i+1 sin, -x_2i sin + x_2i+1 cos): どのペアも -mθ 回転しています。"""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    e, o = _pairs(x)
    return _interleave(e * c + o * s, -e * s + o * c)


def interleaved_output_concatenated(x, cos, sin):
    """Right rotations, but returns torch.cat((even, odd)) : the result comes out in the half-split order.
    ja: 回転は正しいのですが torch.cat((even, odd)) で返すので、結果が半分割の順序で出てきます。"""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    e, o = _pairs(x)
    return torch.cat((e * c - o * s, e * s + o * c), dim=-1)


def interleaved_cos_sin_swapped(x, cos, sin):
    """Uses sin where cos belongs and cos where sin belongs.
    ja: cos を使うべきところに sin、sin を使うべきところに cos を使っています。"""
    half = x.shape[-1] // 2
    c, s = sin[..., :half], cos[..., :half]
    e, o = _pairs(x)
    return _interleave(e * c - o * s, e * s + o * c)


def interleaved_in_place(x, cos, sin):
    """Writes the rotated pairs back into x through the views x[..., 0::2] and x[..., 1::2]: the caller's q changes.
    ja: ビュー x[..., 0::2] と x[..., 1::2] を通して回転したペアを x に書き戻しています。呼び出し側の q が変わります。"""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    e, o = x[..., 0::2].clone(), x[..., 1::2].clone()
    x[..., 0::2] = e * c - o * s
    x[..., 1::2] = e * s + o * c
    return x


def interleaved_rebuilds_the_table(x, cos, sin):
    """Ignores the cos and sin it is given and rebuilds the angles for positions 0..T-1, base 10000: wrong after
    a KV cache, for another base and for a scaled table.
    ja: 渡された cos と sin を無視し、位置 0..T-1・底 10000 の角度を作り直しています。KV キャッシュの後、別の底、スケールされたテーブルでは誤りです。"""
    T, hd = x.shape[-2], x.shape[-1]
    c, s = reference_rope_cos_sin(T, hd)
    return rope.apply_rope_interleaved(x, c.to(x), s.to(x))


def interleaved_angle_from_atan2(x, cos, sin):
    """Recovers the angle with atan2(sin, cos) and turns by it: a scaled (YaRN) table loses its factor.
    ja: atan2(sin, cos) で角度を取り出して回しています。スケールされた (YaRN) テーブルでは係数が失われます。"""
    half = x.shape[-1] // 2
    angle = torch.atan2(sin[..., :half], cos[..., :half])
    c, s = angle.cos(), angle.sin()
    e, o = _pairs(x)
    return _interleave(e * c - o * s, e * s + o * c)


def interleaved_returns_float32(x, cos, sin):
    """Computes in float32 and forgets to cast back: a bfloat16 q comes back float32.
    ja: float32 で計算し、元の dtype に戻し忘れています。bfloat16 の q が float32 で返ってきます。"""
    half = x.shape[-1] // 2
    c, s = cos[..., :half].float(), sin[..., :half].float()
    e, o = _pairs(x.float())
    return _interleave(e * c - o * s, e * s + o * c)


@torch.no_grad()
def interleaved_without_grad(x, cos, sin):
    """@torch.no_grad() because "RoPE has no parameters": no gradient reaches q_proj and k_proj.
    ja: 「RoPE にはパラメータがない」として @torch.no_grad() を付けています。q_proj と k_proj に勾配が届きません。"""
    return reference_apply_rope_interleaved(x, cos, sin)


def interleaved_as_complex_numbers(x, cos, sin):
    """Correct: Meta's way, torch.view_as_complex of the neighbour pairs times cos + i sin (float32, cast back)."""
    half = x.shape[-1] // 2
    out_dtype = torch.promote_types(x.dtype, cos.dtype)
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], half, 2).contiguous())
    w = torch.complex(cos[..., :half].float(), sin[..., :half].float())
    return torch.view_as_real(z * w).flatten(-2).to(out_dtype)


def interleaved_by_rotation_matrices(x, cos, sin):
    """Correct: one 2x2 rotation matrix per position and pair, applied with einsum."""
    half = x.shape[-1] // 2
    c, s = cos[..., :half], sin[..., :half]
    R = torch.stack((torch.stack((c, -s), -1), torch.stack((s, c), -1)), -2)  # (T, d/2, 2, 2)
    pairs = x.reshape(*x.shape[:-1], half, 2)
    return torch.einsum("...tpij,...tpj->...tpi", R, pairs).reshape(x.shape)


def interleaved_by_permuting_channels(x, cos, sin):
    """Correct: reorder the channels to the half-split layout, rotate with rotate_half, reorder back."""
    hd = x.shape[-1]
    to_half = torch.cat((torch.arange(0, hd, 2), torch.arange(1, hd, 2))).to(x.device)
    back = torch.argsort(to_half)
    xh = x[..., to_half]
    return (xh * cos + rope.rotate_half(xh) * sin)[..., back]


@exercise("ch04.apply_rope_interleaved", reference=reference_apply_rope_interleaved,
          also_reference=(rope.apply_rope_interleaved,), compare=_compare_low_precision,
          wrong=[interleaved_with_half_split_pairs, interleaved_every_other_column, interleaved_table_as_is,
                 interleaved_turns_backwards, interleaved_output_concatenated, interleaved_cos_sin_swapped,
                 interleaved_in_place, interleaved_rebuilds_the_table, interleaved_angle_from_atan2,
                 interleaved_returns_float32, interleaved_without_grad],
          correct=[interleaved_as_complex_numbers, interleaved_by_rotation_matrices, interleaved_by_permuting_channels],
          covers="readable x at position 1, several (B, n_head, T, head_dim), head_dim 2 (one pair), positions 7..11 "
                 "and 100..104 (a KV cache), base 500000, a YaRN-scaled table (cos and sin times 1.2), bfloat16 and "
                 "float16 x with tables of the same dtype, gradients, x left unchanged",
          hint="neighbours (x_2i, x_2i+1) form pair i and turn by the angle of column i of the table (its first half); "
               "rotate each pair as a 2-D vector and put the results back at 2i and 2i+1.",
          hint_ja="隣り合う (x_2i, x_2i+1) がペア i で、テーブルの列 i (前半) の角度で回ります。各ペアを 2 次元ベクトルとして"
                  "回し、結果を 2i と 2i+1 に戻します。")
def _apply_rope_interleaved_cases():
    g = torch.Generator().manual_seed(43)
    cos, sin = rope.RotaryEmbedding(8)(1, 1)
    yield Case(args=(torch.arange(1.0, 9.0).view(1, 1, 1, 8), cos, sin),
               name="x = [1, 2, ..., 8] at position 1 (head_dim 8)", name_ja="位置 1 にある x = [1, 2, ..., 8] (head_dim 8)")
    for B, nh, T, hd in [(1, 1, 4, 8), (2, 3, 6, 16), (2, 2, 9, 32)]:
        cos, sin = reference_rope_cos_sin(T, hd)
        yield Case(args=(torch.randn(B, nh, T, hd, generator=g), cos, sin),
                   name=f"x of shape {(B, nh, T, hd)}, cos and sin of shape {(T, hd)}",
                   name_ja=f"形状 {(B, nh, T, hd)} の x、形状 {(T, hd)} の cos と sin")
    cos, sin = rope.RotaryEmbedding(2)(0, 5)
    yield Case(args=(torch.randn(1, 2, 5, 2, generator=g), cos, sin),
               name="head_dim 2 (one pair), x of shape (1, 2, 5, 2)", name_ja="head_dim 2 (ペア 1 つ)、形状 (1, 2, 5, 2) の x")
    cos, sin = rope.RotaryEmbedding(16)(7, 5)
    yield Case(args=(torch.randn(1, 2, 5, 16, generator=g), cos, sin),
               name="x of shape (1, 2, 5, 16) at positions 7..11", name_ja="位置 7..11 にある形状 (1, 2, 5, 16) の x")
    cos, sin = rope.RotaryEmbedding(8)(100, 5)
    yield Case(args=(torch.randn(2, 1, 5, 8, generator=g), cos, sin),
               name="x of shape (2, 1, 5, 8) at positions 100..104 (a KV cache)",
               name_ja="位置 100..104 にある形状 (2, 1, 5, 8) の x (KV キャッシュ)")
    yield from _scaled_and_low_precision_table_cases(g)
    cos, sin = rope.RotaryEmbedding(8)(5, 4)
    yield Case(args=(torch.randn(2, 1, 4, 8, generator=g).half(), cos.half(), sin.half()),
               name="float16 x of shape (2, 1, 4, 8) with float16 cos and sin (positions 5..8)",
               name_ja="形状 (2, 1, 4, 8) の float16 の x と float16 の cos, sin (位置 5..8)", grad=False)
