"""Chapter 06 (SwiGLU): the gated feed-forward network of Llama, and its hidden size.

The references are minigpt.mlp.SwiGLU (w2(silu(w1 x) * w3 x), Meta's names; transformers calls
them gate_proj, up_proj and down_proj) and minigpt.config.swiglu_hidden.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import config, mlp
from minigpt.check import Case, exercise


# ----------------------------------------------------------------------------- the hidden size
def hidden_without_rounding(n_embd, multiple_of=32):
    """int(8 * n_embd / 3) and no rounding: matmuls of odd widths, and not Llama's sizes.
    ja: int(8 * n_embd / 3) のまま丸めていません。行列積の幅が半端になり、Llama の大きさとも一致しません。"""
    return int(8 * n_embd / 3)


def hidden_rounded_down(n_embd, multiple_of=32):
    """Rounds down to a multiple of multiple_of: fewer parameters than the GELU MLP it replaces.
    ja: multiple_of の倍数に切り捨てています。置き換え元の GELU MLP よりパラメータが少なくなります。"""
    return multiple_of * (int(8 * n_embd / 3) // multiple_of)


def hidden_rounded_to_nearest(n_embd, multiple_of=32):
    """round() to the nearest multiple instead of up.
    ja: 切り上げではなく、round() で最も近い倍数にしています。"""
    return multiple_of * round(int(8 * n_embd / 3) / multiple_of)


def hidden_like_gelu(n_embd, multiple_of=32):
    """The GELU MLP's 4 * n_embd: with three matrices instead of two, 1.5x the parameters.
    ja: GELU MLP の 4 * n_embd です。行列が 2 つではなく 3 つなので、パラメータが 1.5 倍になります。"""
    return 4 * n_embd


def hidden_two_thirds_of_d(n_embd, multiple_of=32):
    """2/3 * n_embd, rounded up: forgot that the 2/3 applies to the 4d hidden size.
    ja: n_embd の 2/3 を切り上げています。2/3 を掛けるのは 4d の隠れ層の大きさであることを忘れています。"""
    return multiple_of * -(-int(2 * n_embd / 3) // multiple_of)


def hidden_always_one_more_multiple(n_embd, multiple_of=32):
    """(hidden // multiple_of + 1) * multiple_of: rounds up, but adds a whole multiple when hidden is already one.
    ja: (hidden // multiple_of + 1) * multiple_of: 切り上げにはなりますが、hidden がすでに倍数のときに 1 つ余分に足します。"""
    return (int(8 * n_embd / 3) // multiple_of + 1) * multiple_of


def hidden_ignores_multiple_of(n_embd, multiple_of=32):
    """Always rounds to a multiple of 256 (Llama's multiple_of), whatever multiple_of says.
    ja: multiple_of が何であっても、いつも 256 (Llama の multiple_of) の倍数に丸めています。"""
    return 256 * math.ceil(int(8 * n_embd / 3) / 256)


def hidden_rounds_before_truncating(n_embd, multiple_of=32):
    """Rounds 8 * n_embd / 3 up to an integer first (math.ceil), then to the multiple: one too many when
    8 * n_embd / 3 is just above a multiple (multiple_of=1 shows it at once).
    ja: 先に 8 * n_embd / 3 を整数に切り上げ (math.ceil)、それから倍数に丸めています。8 * n_embd / 3 が整数をわずかに超えると 1 大きくなります (multiple_of=1 ですぐ分かります)。"""
    return multiple_of * math.ceil(math.ceil(8 * n_embd / 3) / multiple_of)


def hidden_returns_float(n_embd, multiple_of=32):
    """Returns a float (512.0) instead of an int: nn.Linear(dim, 512.0) refuses it.
    ja: int ではなく float (512.0) を返しています。nn.Linear(dim, 512.0) は受け付けません。"""
    return float(multiple_of * math.ceil(int(8 * n_embd / 3) / multiple_of))


def hidden_by_integer_arithmetic(n_embd, multiple_of=32):
    """Correct: integer maths only, ceil division written as -(-a // b)."""
    hidden = 8 * n_embd // 3
    return -(-hidden // multiple_of) * multiple_of


def hidden_by_loop(n_embd, multiple_of=32):
    """Correct: count up from int(8 n / 3) to the next multiple."""
    hidden = int(8 * n_embd / 3)
    while hidden % multiple_of:
        hidden += 1
    return hidden


@exercise("ch06.swiglu_hidden", reference=config.swiglu_hidden, uses_device=False,
          wrong=[hidden_without_rounding, hidden_rounded_down, hidden_rounded_to_nearest, hidden_like_gelu,
                 hidden_two_thirds_of_d, hidden_always_one_more_multiple, hidden_ignores_multiple_of,
                 hidden_rounds_before_truncating, hidden_returns_float],
          correct=[hidden_by_integer_arithmetic, hidden_by_loop],
          covers="the course's and Llama-2's sizes, multiple_of 32, 256 and 1, the default multiple_of, a hidden "
                 "size that is already a multiple (nothing to round up), 8 n / 3 not an integer with multiple_of=1, "
                 "an int returned",
          hint="hidden = int(8 * n_embd / 3), then rounded UP to a multiple of multiple_of: "
               "multiple_of * math.ceil(hidden / multiple_of).",
          hint_ja="hidden = int(8 * n_embd / 3) を、multiple_of の倍数に切り上げます: "
                  "multiple_of * math.ceil(hidden / multiple_of)。すでに倍数ならそのまま、戻り値は int です。")
def _hidden_cases():
    yield Case(args=(192, 32), name="n_embd=192, multiple_of=32 (the course's models)",
                               name_ja="n_embd=192、multiple_of=32 (このコースのモデル)")
    yield Case(args=(256, 32), name="n_embd=256, multiple_of=32", name_ja="n_embd=256、multiple_of=32")
    yield Case(args=(100, 32), name="n_embd=100, multiple_of=32", name_ja="n_embd=100、multiple_of=32")
    yield Case(args=(4096, 256), name="n_embd=4096, multiple_of=256 (Llama-2-7B)",
                                 name_ja="n_embd=4096、multiple_of=256 (Llama-2-7B)")
    yield Case(args=(5120, 256), name="n_embd=5120, multiple_of=256 (Llama-2-13B)",
                                 name_ja="n_embd=5120、multiple_of=256 (Llama-2-13B)")
    yield Case(args=(96,), name="n_embd=96 with the default multiple_of: 8 * 96 / 3 = 256 is already a multiple",
                           name_ja="n_embd=96、デフォルトの multiple_of: 8 * 96 / 3 = 256 はすでに倍数")
    yield Case(args=(97, 1), name="n_embd=97, multiple_of=1: no rounding at all, int(258.67) = 258",
                             name_ja="n_embd=97、multiple_of=1: 丸めはなく、int(258.67) = 258")
    yield Case(args=(12, 8), name="n_embd=12, multiple_of=8: 32 is already a multiple of 8",
                             name_ja="n_embd=12、multiple_of=8: 32 はすでに 8 の倍数")
    yield Case(args=(96, 1), name="n_embd=96, multiple_of=1: 8 * 96 / 3 = 256 exactly",
                             name_ja="n_embd=96、multiple_of=1: 8 * 96 / 3 = 256 ちょうど")


# ----------------------------------------------------------------------------- the SwiGLU MLP
class _WrongSwiGLU(mlp.SwiGLU):
    pass


class SwiGLUGateOnUp(_WrongSwiGLU):
    """silu on w3 instead of w1: gate_proj and up_proj swapped, as when a checkpoint is mapped wrongly.
    ja: SiLU を w1 ではなく w3 に掛けています。チェックポイントの対応付けを誤ったときのように gate_proj と up_proj が入れ替わっています。"""

    def forward(self, x):
        return self.w2(F.silu(self.w3(x)) * self.w1(x))


class SwiGLUWithSigmoid(_WrongSwiGLU):
    """sigmoid(w1 x) * w3 x is the original GLU; SwiGLU gates with silu(z) = z * sigmoid(z).
    ja: sigmoid(w1 x) * w3 x は元祖 GLU です。SwiGLU のゲートは silu(z) = z * sigmoid(z) です。"""

    def forward(self, x):
        return self.w2(torch.sigmoid(self.w1(x)) * self.w3(x))


class SwiGLUWithGELU(_WrongSwiGLU):
    """GeGLU (GELU gate): a real variant, but not Llama's.
    ja: GeGLU (GELU のゲート) です。実在する変種ですが、Llama のものではありません。"""

    def forward(self, x):
        return self.w2(F.gelu(self.w1(x)) * self.w3(x))


class SwiGLUSiluAfterProduct(_WrongSwiGLU):
    """silu(w1 x * w3 x): the SiLU applied after the product instead of to the gate only.
    ja: silu(w1 x * w3 x): SiLU をゲートだけでなく積の後に掛けています。"""

    def forward(self, x):
        return self.w2(F.silu(self.w1(x) * self.w3(x)))


class SwiGLUWithoutUp(_WrongSwiGLU):
    """No gate: w2(silu(w1 x)), an ordinary MLP with SiLU (w3 unused).
    ja: ゲートがありません: w2(silu(w1 x)) は SiLU の普通の MLP です (w3 を使っていません)。"""

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)))


class SwiGLUSiluOnBoth(_WrongSwiGLU):
    """silu on both branches, silu(w1 x) * silu(w3 x): the up projection is gated too.
    ja: 両方の枝に SiLU を掛けています: silu(w1 x) * silu(w3 x)。up 射影までゲートされます。"""

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * F.silu(self.w3(x)))


class SwiGLUDetachedGate(_WrongSwiGLU):
    """Detaches the gate (as in "the gate only selects"): the output is right, but w1 never learns.
    ja: 「ゲートは選ぶだけ」としてゲートを detach しています。出力は正しいのですが、w1 が学習しません。"""

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)).detach() * self.w3(x))


class SwiGLUSumInsteadOfProduct(_WrongSwiGLU):
    """silu(w1 x) + w3 x: adds the two branches instead of gating one with the other.
    ja: silu(w1 x) + w3 x: 一方で他方をゲートせずに、2 つの枝を足しています。"""

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) + self.w3(x))


class SwiGLUInFloat32(_WrongSwiGLU):
    """Computes in float32 and returns float32: a bfloat16 model's activations change dtype.
    ja: float32 で計算して float32 で返しています。bfloat16 のモデルの活性の dtype が変わります。"""

    def forward(self, x):
        xf = x.float()
        w1, w2, w3 = (m.weight.float() for m in (self.w1, self.w2, self.w3))
        return F.linear(F.silu(F.linear(xf, w1)) * F.linear(xf, w3), w2)


class SwiGLUWrittenOut(mlp.SwiGLU):
    """Correct: silu written out as z * sigmoid(z), matrices applied with @ and .T."""

    def forward(self, x):
        a = x @ self.w1.weight.T
        b = x @ self.w3.weight.T
        return (a * torch.sigmoid(a) * b) @ self.w2.weight.T


class SwiGLUByEinsum(mlp.SwiGLU):
    """Correct: the three projections as einsums."""

    def forward(self, x):
        a = torch.einsum("...c,hc->...h", x, self.w1.weight)
        b = torch.einsum("...c,hc->...h", x, self.w3.weight)
        return torch.einsum("...h,ch->...c", F.silu(a) * b, self.w2.weight)


class SwiGLUOneFusedMatmul(mlp.SwiGLU):
    """Correct: w1 and w3 stacked into one (2H, C) matmul, split afterwards (as fused kernels do)."""

    def forward(self, x):
        gate, up = F.linear(x, torch.cat((self.w1.weight, self.w3.weight))).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


@exercise("ch06.SwiGLU", reference=mlp.SwiGLU, kind="module",
          wrong=[SwiGLUGateOnUp, SwiGLUWithSigmoid, SwiGLUWithGELU, SwiGLUSiluAfterProduct, SwiGLUWithoutUp,
                 SwiGLUSiluOnBoth, SwiGLUDetachedGate, SwiGLUSumInsteadOfProduct, SwiGLUInFloat32],
          correct=[SwiGLUWrittenOut, SwiGLUByEinsum, SwiGLUOneFusedMatmul], dtypes=("bf16", "fp16"),
          covers="hidden sizes from 1.7x to 4x dim, swiglu_hidden's size, large inputs (std 4) where silu and "
                 "gelu differ, bfloat16 and float16 modules and inputs, gradients of x, w1, w2 and w3, x left "
                 "unchanged",
          hint="w2(F.silu(w1(x)) * w3(x)): silu on the gate w1 only, times the up projection w3, then down with w2.",
          hint_ja="w2(F.silu(w1(x)) * w3(x))。SiLU はゲート w1 の出力だけに掛け、up 射影 w3 の出力との要素積を "
                  "w2 で元の次元に戻します。")
def _swiglu_cases():
    g = torch.Generator().manual_seed(60)
    for dim, hidden, shape in [(16, 48, (2, 5)), (32, config.swiglu_hidden(32), (1, 7)), (8, 32, (3, 4))]:
        x = torch.randn(*shape, dim, generator=g) * 2
        yield Case(init=(dim, hidden), args=(x,), name=f"SwiGLU({dim}, hidden={hidden}) on x of shape {(*shape, dim)}",
                                                  name_ja=f"形状 {(*shape, dim)} の x に SwiGLU({dim}, hidden={hidden})")
    yield Case(init=(12, 20), args=(torch.randn(2, 3, 12, generator=g) * 4,),
               name="SwiGLU(12, hidden=20) on large x (std 4), x of shape (2, 3, 12)",
               name_ja="大きな x (標準偏差 4、形状 (2, 3, 12)) に SwiGLU(12, hidden=20)")


# ----------------------------------------------------------------------------- Llama's hidden size, in full
def ffn_ignores_multiplier(dim, multiple_of, ffn_dim_multiplier=None):
    """Leaves out ffn_dim_multiplier: right for Llama 2 7B and 13B, 3,328 units short for Llama-3-8B.
    ja: ffn_dim_multiplier を無視しています。Llama 2 の 7B と 13B では正しいのですが、Llama-3-8B では 3,328 ユニット足りません。"""
    return config.swiglu_hidden(dim, multiple_of)


def ffn_multiplier_after_rounding(dim, multiple_of, ffn_dim_multiplier=None):
    """Rounds up first, then multiplies: the result is no longer a multiple of multiple_of.
    ja: 先に切り上げてから倍率を掛けています。結果が multiple_of の倍数でなくなります。"""
    hidden = multiple_of * math.ceil(int(8 * dim / 3) / multiple_of)
    return hidden if ffn_dim_multiplier is None else int(ffn_dim_multiplier * hidden)


def ffn_multiplier_without_truncation(dim, multiple_of, ffn_dim_multiplier=None):
    """int(multiplier * 8 * dim / 3) in one go: skips the int() of 2/3 * 4 * dim, off by one before the rounding.
    ja: int(multiplier * 8 * dim / 3) を一度に計算しています。2/3 * 4 * dim の int() を飛ばすので、丸めの前に 1 ずれます。"""
    hidden = 8 * dim / 3 * (1.0 if ffn_dim_multiplier is None else ffn_dim_multiplier)
    return multiple_of * math.ceil(int(hidden) / multiple_of)


def ffn_rounded_down(dim, multiple_of, ffn_dim_multiplier=None):
    """Rounds down to a multiple of multiple_of: fewer parameters than the checkpoint's matrices.
    ja: multiple_of の倍数に切り捨てています。チェックポイントの行列よりパラメータが少なくなります。"""
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * (hidden // multiple_of)


def ffn_always_adds_a_multiple(dim, multiple_of, ffn_dim_multiplier=None):
    """(hidden // multiple_of + 1) * multiple_of: one multiple too many when hidden is already a multiple.
    ja: (hidden // multiple_of + 1) * multiple_of: hidden がすでに倍数のとき、1 倍数ぶん多くなります。"""
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return (hidden // multiple_of + 1) * multiple_of


def ffn_rounded_to_nearest(dim, multiple_of, ffn_dim_multiplier=None):
    """round() to the nearest multiple instead of up.
    ja: 切り上げではなく round() で最も近い倍数に丸めています。"""
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * round(hidden / multiple_of)


def ffn_multiplier_on_4d(dim, multiple_of, ffn_dim_multiplier=None):
    """Applies the multiplier to 4 * dim and forgets the 2/3: a GELU-sized hidden layer, 1.5 times too wide.
    ja: 倍率を 4 * dim に掛け、2/3 を忘れています。GELU 用の大きさの隠れ層になり、1.5 倍広すぎます。"""
    hidden = 4 * dim if ffn_dim_multiplier is None else int(ffn_dim_multiplier * 4 * dim)
    return multiple_of * math.ceil(hidden / multiple_of)


def ffn_multiplier_on_dim(dim, multiple_of, ffn_dim_multiplier=None):
    """Multiplies the model width first, int(multiplier * dim), then takes 8/3 of it: the truncations differ.
    ja: 先にモデルの幅に倍率を掛け (int(multiplier * dim))、そのあと 8/3 をとっています。切り捨ての位置が違います。"""
    width = dim if ffn_dim_multiplier is None else int(ffn_dim_multiplier * dim)
    return multiple_of * math.ceil(int(8 * width / 3) / multiple_of)


def ffn_with_math_ceil(dim, multiple_of, ffn_dim_multiplier=None):
    """Correct: math.ceil on the quotient (exact here: both numbers are far below 2**53)."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * math.ceil(hidden / multiple_of)


def ffn_by_negative_floor_division(dim, multiple_of, ffn_dim_multiplier=None):
    """Correct: -(-hidden // multiple_of), the integer ceiling."""
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(hidden * ffn_dim_multiplier)
    return -(-hidden // multiple_of) * multiple_of


@exercise("ch06.llama_ffn_hidden", reference=config.llama_ffn_hidden, uses_device=False, grad=False,
          wrong=[ffn_ignores_multiplier, ffn_multiplier_after_rounding, ffn_multiplier_without_truncation,
                 ffn_rounded_down, ffn_always_adds_a_multiple, ffn_rounded_to_nearest, ffn_multiplier_on_4d,
                 ffn_multiplier_on_dim],
          correct=[ffn_with_math_ceil, ffn_by_negative_floor_division],
          covers="Llama 2 (7B, 70B), Llama 3 (8B) and Llama 3.1 (405B) configs, no multiplier, a multiplier of 1.0, "
                 "multiple_of 1 (where every truncation shows), a size that is already a multiple",
          hint="three steps, each truncated or rounded as in Meta's code: hidden = int(2/3 of 4 * dim); with a "
               "multiplier, hidden = int(multiplier * hidden); then round hidden UP to a multiple of multiple_of.",
          hint_ja="Meta のコードと同じ 3 段階で、それぞれ切り捨てと切り上げを守ります: hidden = int(4 * dim の 2/3)、"
                  "倍率があれば hidden = int(倍率 * hidden)、最後に hidden を multiple_of の倍数に切り上げます。")
def _llama_ffn_cases():
    yield Case(args=(192, 32), name="dim 192, multiple_of 32, no multiplier (the course's models)")
    yield Case(args=(96, 32), name="dim 96, multiple_of 32: 8 * 96 / 3 = 256 is already a multiple of 32")
    yield Case(args=(4096, 256), name="dim 4096, multiple_of 256, no multiplier (Llama-2-7B: 11008)")
    yield Case(args=(4096, 1024, 1.3), name="dim 4096, multiple_of 1024, ffn_dim_multiplier 1.3 (Llama-3-8B)")
    yield Case(args=(8192, 4096, 1.3), name="dim 8192, multiple_of 4096, ffn_dim_multiplier 1.3 (Llama-2-70B)")
    yield Case(args=(16384, 4096, 1.2), name="dim 16384, multiple_of 4096, ffn_dim_multiplier 1.2 (Llama-3.1-405B)")
    yield Case(args=(100, 32), name="dim 100, multiple_of 32: int(8 * 100 / 3) = 266 is rounded up to 288")
    yield Case(args=(100, 1), name="dim 100, multiple_of 1 (no rounding at all)")
    yield Case(args=(4096, 1, 1.3), name="dim 4096, multiple_of 1, ffn_dim_multiplier 1.3: every truncation shows")
    yield Case(args=(768, 256, 1.0), name="dim 768, multiple_of 256, ffn_dim_multiplier 1.0 (given, but neutral)")
