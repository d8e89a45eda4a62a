"""Normalisation layers (chapter 05): LayerNorm (GPT-2) and RMSNorm (Llama and most modern decoders).

RMSNorm drops LayerNorm's mean subtraction and bias: y = x / sqrt(mean(x^2) + eps) * weight.
It computes in float32 and casts back: in fp16, x^2 overflows above 256 (256^2 = 65536 > 65504),
and in bf16 the mean of squares loses precision. eps must match the checkpoint (1e-5 or 1e-6).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .i18n import tr


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's nn.LayerNorm always has one before 2.1)."""

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32.

    >>> RMSNorm(4)(torch.tensor([[3.0, -3.0, 3.0, -3.0]])).detach().round(decimals=4)  # rms 3 -> 1 (eps aside)
    tensor([[ 1., -1.,  1., -1.]])
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)  # cast back before the gain, as Llama does


def make_norm(kind: str, dim: int, eps: float = 1e-5, bias: bool = True) -> nn.Module:
    if kind == "layernorm":
        return LayerNorm(dim, eps, bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    raise ValueError(tr("norm must be 'layernorm' or 'rmsnorm', got {kind!r}",
                        "norm は 'layernorm' か 'rmsnorm' にしてください ({kind!r} が渡されました)", kind=kind))
