"""Chapter 06 (SwiGLU): the gated feed-forward network of Llama, and its hidden size.

The references are minigpt.mlp.SwiGLU (w2(silu(w1 x) * w3 x), Meta's names; transformers calls
them gate_proj, up_proj and down_proj) and minigpt.config.swiglu_hidden.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minigpt import config, mlp
from minigpt.check import Case, exercise


# ----------------------------------------------------------------------------- the hidden size
def hidden_without_rounding(n_embd, multiple_of=32):
    return int(8 * n_embd / 3)


def hidden_rounded_down(n_embd, multiple_of=32):
    return multiple_of * (int(8 * n_embd / 3) // multiple_of)


def hidden_rounded_to_nearest(n_embd, multiple_of=32):
    return multiple_of * round(int(8 * n_embd / 3) / multiple_of)


def hidden_like_gelu(n_embd, multiple_of=32):
    """The GELU MLP's 4 * n_embd: with three matrices instead of two, 1.5x the parameters."""
    return 4 * n_embd


def hidden_two_thirds_of_d(n_embd, multiple_of=32):
    """2/3 * n_embd, rounded up: forgot that the 2/3 applies to the 4d hidden size."""
    return multiple_of * -(-int(2 * n_embd / 3) // multiple_of)


@exercise("ch06.swiglu_hidden", reference=config.swiglu_hidden, uses_device=False,
          wrong=[hidden_without_rounding, hidden_rounded_down, hidden_rounded_to_nearest, hidden_like_gelu,
                 hidden_two_thirds_of_d],
          hint="hidden = int(8 * n_embd / 3), then rounded UP to a multiple of multiple_of: "
               "multiple_of * math.ceil(hidden / multiple_of).")
def _hidden_cases():
    yield Case(args=(192, 32), name="n_embd=192, multiple_of=32 (the course's models)")
    yield Case(args=(256, 32), name="n_embd=256, multiple_of=32")
    yield Case(args=(100, 32), name="n_embd=100, multiple_of=32")
    yield Case(args=(4096, 256), name="n_embd=4096, multiple_of=256 (Llama-2-7B)")
    yield Case(args=(5120, 256), name="n_embd=5120, multiple_of=256 (Llama-2-13B)")


# ----------------------------------------------------------------------------- the SwiGLU MLP
class _WrongSwiGLU(mlp.SwiGLU):
    pass


class SwiGLUGateOnUp(_WrongSwiGLU):
    """silu on w3 instead of w1: gate_proj and up_proj swapped, as when a checkpoint is mapped wrongly."""

    def forward(self, x):
        return self.w2(F.silu(self.w3(x)) * self.w1(x))


class SwiGLUWithSigmoid(_WrongSwiGLU):
    """sigmoid(w1 x) * w3 x is the original GLU; SwiGLU gates with silu(z) = z * sigmoid(z)."""

    def forward(self, x):
        return self.w2(torch.sigmoid(self.w1(x)) * self.w3(x))


class SwiGLUWithGELU(_WrongSwiGLU):
    """GeGLU (GELU gate): a real variant, but not Llama's."""

    def forward(self, x):
        return self.w2(F.gelu(self.w1(x)) * self.w3(x))


class SwiGLUSiluAfterProduct(_WrongSwiGLU):
    def forward(self, x):
        return self.w2(F.silu(self.w1(x) * self.w3(x)))


class SwiGLUWithoutUp(_WrongSwiGLU):
    """No gate: w2(silu(w1 x)), an ordinary MLP with SiLU (w3 unused)."""

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)))


@exercise("ch06.SwiGLU", reference=mlp.SwiGLU, kind="module",
          wrong=[SwiGLUGateOnUp, SwiGLUWithSigmoid, SwiGLUWithGELU, SwiGLUSiluAfterProduct, SwiGLUWithoutUp],
          hint="w2(F.silu(w1(x)) * w3(x)): silu on the gate w1 only, times the up projection w3, then down with w2.")
def _swiglu_cases():
    g = torch.Generator().manual_seed(60)
    for dim, hidden, shape in [(16, 48, (2, 5)), (32, config.swiglu_hidden(32), (1, 7)), (8, 32, (3, 4))]:
        x = torch.randn(*shape, dim, generator=g) * 2
        yield Case(init=(dim, hidden), args=(x,), name=f"SwiGLU({dim}, hidden={hidden}) on x of shape {(*shape, dim)}")
