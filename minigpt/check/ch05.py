"""Chapter 05 (RMSNorm): the normalisation of Llama and most modern decoders.

The reference is minigpt.norm.RMSNorm: y = weight * (x / sqrt(mean(x^2) + eps)), computed in
float32 and cast back to the input's dtype before the gain, as Llama does.
"""

from __future__ import annotations

import torch

from minigpt import norm
from minigpt.check import Case, exercise


class _WrongRMSNorm(norm.RMSNorm):
    pass


class RMSNormWithoutFloat32(_WrongRMSNorm):
    """Computes in the input's dtype: in float16, x^2 overflows to inf above 256 and the row becomes 0."""

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class RMSNormEpsOutsideSqrt(_WrongRMSNorm):
    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x / (torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormSubtractsMean(_WrongRMSNorm):
    """LayerNorm without its bias: subtracts the mean, which RMSNorm deliberately does not."""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x - x.mean(-1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormSumNotMean(_WrongRMSNorm):
    """Divides by the L2 norm sqrt(sum(x^2)): every output is sqrt(C) times too small."""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormWithoutWeight(_WrongRMSNorm):
    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).to(dtype)


@exercise("ch05.RMSNorm", reference=norm.RMSNorm, kind="module",
          wrong=[RMSNormWithoutFloat32, RMSNormEpsOutsideSqrt, RMSNormSubtractsMean, RMSNormSumNotMean,
                 RMSNormWithoutWeight],
          hint="x32 = x.float(); y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps); "
               "return self.weight * y.to(x.dtype). No mean subtraction, eps inside the square root, "
               "float32 inside even for a float16 input.")
def _rmsnorm_cases():
    g = torch.Generator().manual_seed(50)
    yield Case(init=(8,), args=(torch.randn(4, 8, generator=g),), name="RMSNorm(8) on x of shape (4, 8)")
    yield Case(init=(32,), args=(torch.randn(2, 5, 32, generator=g) * 3 + 5,),
               name="RMSNorm(32) on x of shape (2, 5, 32), mean 5, std 3")
    yield Case(init=(16, 1e-6), args=(torch.randn(3, 16, generator=g) * 1e-3,),
               name="RMSNorm(16, eps=1e-6) on a tiny x (std 0.001): eps matters here")
    yield Case(init=(64,), args=((torch.randn(2, 3, 64, generator=g) * 400).half(),),
               name="RMSNorm(64) on a float16 x of shape (2, 3, 64) with values in the hundreds")
