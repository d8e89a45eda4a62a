"""Chapter 00 (setup and tour): the first exercise, a numerically safe softmax."""

from __future__ import annotations

import torch

from minigpt.check import Case, exercise


def reference_softmax(x: torch.Tensor) -> torch.Tensor:
    """PyTorch's own softmax over the last dimension is the reference (the oracle)."""
    return torch.softmax(x, dim=-1)


# Plausible wrong implementations: each one passes some cases and fails others.
def softmax_without_max(x):
    """Textbook formula without subtracting the maximum: exp(1000) overflows to inf, inf/inf = NaN."""
    e = torch.exp(x)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_wrong_axis(x):
    """Normalises over the first dimension instead of the last."""
    e = torch.exp(x - x.max(dim=0, keepdim=True).values)
    return e / e.sum(dim=0, keepdim=True)


def softmax_global_sum(x):
    """Divides by the sum over the whole tensor instead of each row."""
    e = torch.exp(x - x.max())
    return e / e.sum()


def softmax_always_float32(x):
    """Casts to float32, so a float64 input comes back as float32."""
    x = x.float()
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


@exercise("ch00.softmax", reference=reference_softmax,
          wrong=[softmax_without_max, softmax_wrong_axis, softmax_global_sum, softmax_always_float32],
          hint="softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)) over the LAST dimension "
               "(dim=-1, keepdim=True); keep the input's dtype.")
def _softmax_cases():
    g = torch.Generator().manual_seed(0)
    yield Case(args=(torch.randn(5, generator=g),), name="one vector of 5 logits")
    yield Case(args=(torch.randn(3, 7, generator=g),), name="3 rows of 7 logits")
    yield Case(args=(torch.randn(2, 4, 6, generator=g) * 3,), name="a (2, 4, 6) tensor")
    yield Case(args=(torch.randn(4, 5, generator=g) * 10 + 1000,), name="large logits around 1000")
    yield Case(args=(torch.randn(3, 3, generator=g, dtype=torch.float64),), name="float64 input")
