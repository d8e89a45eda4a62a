"""Chapter 05 (RMSNorm): the normalisation of Llama and most modern decoders.

The reference is minigpt.norm.RMSNorm: y = weight * (x / sqrt(mean(x^2) + eps)), computed in
float32 and cast back to the input's dtype before the gain, as Llama does.
"""

from __future__ import annotations

import torch

from minigpt import norm
from minigpt.check import Case, exercise
from minigpt.i18n import tr


class _WrongRMSNorm(norm.RMSNorm):
    pass


class RMSNormWithoutFloat32(_WrongRMSNorm):
    """Computes in the input's dtype: in float16, x^2 overflows to inf above 256 and the row becomes 0.
    ja: 入力の dtype のまま計算しています。float16 では 256 を超えると x^2 が inf になり、その行が 0 になります。"""

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class RMSNormEpsOutsideSqrt(_WrongRMSNorm):
    """x / (sqrt(mean(x^2)) + eps): eps outside the square root, which matters for small inputs.
    ja: x / (sqrt(mean(x^2)) + eps): eps が平方根の外にあり、小さな入力で差が出ます。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x / (torch.sqrt(x.pow(2).mean(-1, keepdim=True)) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormSubtractsMean(_WrongRMSNorm):
    """LayerNorm without its bias: subtracts the mean, which RMSNorm deliberately does not.
    ja: バイアスのない LayerNorm です。RMSNorm があえて行わない平均の引き算をしています。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x - x.mean(-1, keepdim=True)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormSumNotMean(_WrongRMSNorm):
    """Divides by the L2 norm sqrt(sum(x^2)): every output is sqrt(C) times too small.
    ja: L2 ノルム sqrt(sum(x^2)) で割っています。出力がすべて sqrt(C) 倍小さくなります。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormWithoutWeight(_WrongRMSNorm):
    """Forgets to multiply by the learned gain self.weight.
    ja: 学習されるゲイン self.weight を掛け忘れています。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        return (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).to(dtype)


class RMSNormInPlace(_WrongRMSNorm):
    """Normalises with x32.mul_(...): for a float32 x, x.float() is x itself, so the caller's x is overwritten.
    ja: x32.mul_(...) で正規化しています。float32 の x では x.float() は x 自身なので、呼び出し側の x が上書きされます。"""

    def forward(self, x):
        dtype = x.dtype
        x32 = x.float()
        x32.mul_(torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps))
        return self.weight * x32.to(dtype)


class RMSNormHardCodedEps(_WrongRMSNorm):
    """Hard-codes eps = 1e-6 (Llama's value) instead of self.eps: wrong for every model built with 1e-5.
    ja: self.eps ではなく eps = 1e-6 (Llama の値) を直に書いています。1e-5 で作ったモデルではすべて誤りです。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
        return self.weight * x.to(dtype)


class RMSNormDetachedScale(_WrongRMSNorm):
    """Treats the RMS as a constant (.detach()): the output is right, the gradient misses the normalisation's
    own term, so training behaves differently.
    ja: RMS を定数として扱っています (.detach())。出力は正しいのですが、勾配に正規化そのものの項が欠け、学習の振る舞いが変わります。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps).detach()
        return self.weight * x.to(dtype)


class RMSNormOneRmsForAll(_WrongRMSNorm):
    """x.pow(2).mean() without dim=-1: one RMS for the whole batch instead of one per token.
    ja: dim=-1 のない x.pow(2).mean() です。トークンごとではなくバッチ全体で 1 つの RMS になります。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean() + self.eps)
        return self.weight * x.to(dtype)


class RMSNormWithVariance(_WrongRMSNorm):
    """Divides by sqrt(var + eps) (x.var(-1)), as if the RMS were the standard deviation.
    ja: sqrt(var + eps) (x.var(-1)) で割っています。RMS を標準偏差と取り違えています。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.var(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class RMSNormGainBeforeCast(_WrongRMSNorm):
    """(weight * y).to(dtype): the gain is applied before casting back, so with float32 weights and a float16 x
    the output is float16 where Llama's order gives float32.
    ja: (weight * y).to(dtype): 元の dtype に戻す前にゲインを掛けています。float32 の重みと float16 の x では、Llama の順序なら float32 のところが float16 になります。"""

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight * x).to(dtype)


class RMSNormWithoutCastBack(_WrongRMSNorm):
    """Never casts back to the input's dtype: a float16 or bfloat16 x skips Llama's rounding before the gain.
    ja: 入力の dtype に戻していません。float16 や bfloat16 の x で、ゲインの前の Llama の丸めが抜けます。"""

    def forward(self, x):
        x = x.float()
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class RMSNormDividingBySqrt(norm.RMSNorm):
    """Correct: x / sqrt(mean(x^2) + eps) instead of rsqrt."""

    def forward(self, x):
        x32 = x.float()
        y = x32 / torch.sqrt((x32 * x32).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


class RMSNormInFloat64(norm.RMSNorm):
    """Correct: the statistic in float64, then cast back before the gain."""

    def forward(self, x):
        x64 = x.double()
        y = x64 * (x64.square().sum(-1, keepdim=True) / x.shape[-1] + self.eps) ** -0.5
        return self.weight * y.to(x.dtype)


class RMSNormWithTorchFunction(norm.RMSNorm):
    """Correct: torch.nn.functional.rms_norm on the float32 input, then the gain."""

    def forward(self, x):
        y = torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * y.to(x.dtype)


@exercise("ch05.RMSNorm", reference=norm.RMSNorm, kind="module",
          wrong=[RMSNormWithoutFloat32, RMSNormEpsOutsideSqrt, RMSNormSubtractsMean, RMSNormSumNotMean,
                 RMSNormWithoutWeight, RMSNormInPlace, RMSNormHardCodedEps, RMSNormDetachedScale,
                 RMSNormOneRmsForAll, RMSNormWithVariance, RMSNormGainBeforeCast, RMSNormWithoutCastBack],
          correct=[RMSNormDividingBySqrt, RMSNormInFloat64, RMSNormWithTorchFunction],
          covers="a mean far from 0, tiny inputs with eps 1e-5 (the default) and 1e-6, rows on very different "
                 "scales, an odd width, float16 values in the hundreds, bfloat16, gradients of x and weight, "
                 "x left unchanged",
          hint="y = w * x / sqrt(mean(x^2) + eps) over the last dimension: no mean is subtracted and eps (self.eps) "
               "sits inside the square root. Compute the statistics and x / rms in float32 even for a float16 "
               "input, bring the normalised x back to x's dtype, then multiply by the weight.",
          hint_ja="最後の次元について y = w * x / sqrt(mean(x^2) + eps)。平均は引かず、eps (self.eps) は平方根の内側"
                  "に入れます。入力が float16 でも統計量と x / rms は float32 で計算し、正規化した x を x の dtype に"
                  "戻してから重みを掛けます。入力 x は書き換えないこと。")
def _rmsnorm_cases():
    g = torch.Generator().manual_seed(50)
    yield Case(init=(8,), args=(torch.randn(4, 8, generator=g),), name="RMSNorm(8) on x of shape (4, 8)",
                                                                  name_ja="形状 (4, 8) の x に RMSNorm(8)")
    yield Case(init=(32,), args=(torch.randn(2, 5, 32, generator=g) * 3 + 5,),
               name="RMSNorm(32) on x of shape (2, 5, 32), mean 5, std 3",
               name_ja="形状 (2, 5, 32)、平均 5、標準偏差 3 の x に RMSNorm(32)")
    yield Case(init=(16, 1e-6), args=(torch.randn(3, 16, generator=g) * 1e-3,),
               name="RMSNorm(16, eps=1e-6) on a tiny x (std 0.001): eps matters here",
               name_ja="ごく小さな x (標準偏差 0.001) に RMSNorm(16, eps=1e-6): ここでは eps が効きます")
    yield Case(init=(64,), args=((torch.randn(2, 3, 64, generator=g) * 400).half(),),
               name="RMSNorm(64) on a float16 x of shape (2, 3, 64) with values in the hundreds",
               name_ja="値が数百の、形状 (2, 3, 64) の float16 の x に RMSNorm(64)")
    yield Case(init=(12,), args=(torch.randn(3, 12, generator=g) * 2e-3,),
               name="RMSNorm(12) with the default eps 1e-5 on a tiny x (std 0.002)",
               name_ja="ごく小さな x (標準偏差 0.002) にデフォルトの eps 1e-5 の RMSNorm(12)")
    scales = torch.tensor([1e-2, 1.0, 100.0])[:, None, None]
    yield Case(init=(7,), args=(torch.randn(3, 2, 7, generator=g) * scales,),
               name="RMSNorm(7) on x of shape (3, 2, 7) whose rows have scales 0.01, 1 and 100",
               name_ja="行のスケールが 0.01、1、100 の、形状 (3, 2, 7) の x に RMSNorm(7)")
    yield Case(init=(16,), args=((torch.randn(2, 4, 16, generator=g) * 30).bfloat16(),),
               name="RMSNorm(16) on a bfloat16 x of shape (2, 4, 16)",
               name_ja="形状 (2, 4, 16) の bfloat16 の x に RMSNorm(16)")


# ----------------------------------------------------------------------------- the backward of RMSNorm
# The learner writes RMSNorm as a torch.autograd.Function: forward(ctx, x, weight, eps) and
# backward(ctx, grad_out) -> (grad_x, grad_weight, None). The reference's forward is minigpt.norm.RMSNorm's
# and its backward is what autograd computes through that module: the single source of truth, no formula of
# ours. The driver runs forward and backward and compares the output and both gradients.
def _package_rmsnorm(x, weight, eps):
    """minigpt.norm.RMSNorm's forward, with `weight` as its gain."""
    module = norm.RMSNorm(weight.shape[-1], eps)
    return torch.func.functional_call(module, {"weight": weight}, (x,))


class RMSNormFunction(torch.autograd.Function):
    """Reference: minigpt.norm.RMSNorm forward; backward by autograd through the same module."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return _package_rmsnorm(x, weight, eps)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        with torch.enable_grad():
            x_, w_ = x.detach().requires_grad_(), weight.detach().requires_grad_()
            grad_x, grad_w = torch.autograd.grad(_package_rmsnorm(x_, w_, ctx.eps), (x_, w_), grad_out)
        return grad_x, grad_w, None


def _run_function(cls, case):
    """Forward and backward of `cls` on one case: (output, grad of x, grad of weight, grad_out changed?)."""
    x, weight, eps, grad_out = case.args
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    g = grad_out.clone()
    y = cls.apply(x, weight, eps)
    if not isinstance(y, torch.Tensor) or y.grad_fn is None:
        raise TypeError(tr("forward must return the output tensor (computed from x and weight)",
                           "forward は出力のテンソル (x と weight から計算したもの) を返してください"))
    y.backward(g)
    return y.detach(), x.grad, weight.grad, not torch.equal(g, grad_out)


_GRAD_NAMES = ("output", "grad of x", "grad of weight")
_LOW_PRECISION_TOL = {torch.float16: (5e-3, 5e-3), torch.bfloat16: (3e-2, 3e-2)}


def _compare_output_and_grads(expected, got):
    """Output and gradients, with tolerances of the output's dtype (float16, bfloat16 round at 1e-3, 1e-2)."""
    from minigpt.check import compare_values

    if got[3] and not expected[3]:
        return ("backward changed grad_out in place; autograd may hand the same tensor to other functions, so "
                "compute new tensors (grad_out * weight, not grad_out.mul_(weight))")
    for name, e, g in zip(_GRAD_NAMES, expected, got):
        if g is None:
            return (f"{name}: no gradient: backward returned None for it (return one gradient per input of "
                    "forward: grad_x, grad_weight, None for eps)")
        rtol, atol = _LOW_PRECISION_TOL.get(e.dtype, (1e-4, 1e-5))
        msg = compare_values(e, g, rtol, atol, name)
        if msg:
            return msg
    return None


class _RMSNormFunctionBase(torch.autograd.Function):
    """A correct forward that saves x, weight and 1/RMS (float32) for the wrong backwards below."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        x32 = x.float()
        rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
        ctx.save_for_backward(x, weight, rstd)
        ctx.eps = eps
        return weight * (x32 * rstd).to(x.dtype)


def _parts(ctx, grad_out):
    x, weight, rstd = ctx.saved_tensors
    xhat = x.float() * rstd
    gh = grad_out.float() * weight.float()
    return x, weight, rstd, xhat, gh


def _grad_weight(grad_out, xhat, x, weight):
    """The gain's gradient: summed over every dimension but the last."""
    return (grad_out.float() * xhat.to(x.dtype).float()).reshape(-1, x.shape[-1]).sum(0).to(weight.dtype)


class BackwardRmsAsConstant(_RMSNormFunctionBase):
    """grad_x = grad_out * weight / RMS: treats the RMS as a constant and drops the term that comes from x being in
    its own RMS.
    ja: grad_x = grad_out * weight / RMS: RMS を定数とみなし、x が自分自身の RMS に含まれることから来る項を落としています。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        return (gh * rstd).to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardSumNotMean(_RMSNormFunctionBase):
    """The projection term with a sum over the C channels instead of a mean: C times too large.
    ja: 射影の項で、C チャネルについての平均ではなく和をとっています。C 倍大きくなります。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        gx = rstd * (gh - xhat * (gh * xhat).sum(-1, keepdim=True))
        return gx.to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardPlusProjection(_RMSNormFunctionBase):
    """rstd * (gh + xhat * mean(gh * xhat)): the sign of the projection term flipped.
    ja: rstd * (gh + xhat * mean(gh * xhat)): 射影の項の符号が逆です。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        gx = rstd * (gh + xhat * (gh * xhat).mean(-1, keepdim=True))
        return gx.to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardWithoutWeight(_RMSNormFunctionBase):
    """Uses grad_out where grad_out * weight belongs: right only when every gain is 1 (at initialisation).
    ja: grad_out * weight を使うべきところで grad_out を使っています。正しいのはゲインがすべて 1 のとき (初期化直後) だけです。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, _ = _parts(ctx, grad_out)
        gh = grad_out.float()
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        return gx.to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardGradWeightFromX(_RMSNormFunctionBase):
    """grad_weight = sum(grad_out * x): the raw input instead of the normalised one.
    ja: grad_weight = sum(grad_out * x): 正規化した入力ではなく、元の入力を使っています。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        gw = (grad_out.float() * x.float()).reshape(-1, x.shape[-1]).sum(0)
        return gx.to(x.dtype), gw.to(weight.dtype), None


class BackwardGradWeightMean(_RMSNormFunctionBase):
    """grad_weight = the mean of grad_out * xhat over the tokens instead of their sum: every gain's gradient is
    divided by the number of tokens.
    ja: grad_weight をトークンについての和ではなく grad_out * xhat の平均にしています。どのゲインの勾配もトークン数で割られてしまいます。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        gw = (grad_out.float() * xhat).reshape(-1, x.shape[-1]).mean(0)
        return gx.to(x.dtype), gw.to(weight.dtype), None


class BackwardOneMeanForAll(_RMSNormFunctionBase):
    """mean(gh * xhat) over the whole tensor instead of per token (dim=-1 forgotten).
    ja: mean(gh * xhat) をトークンごとではなくテンソル全体でとっています (dim=-1 の指定漏れ)。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        gx = rstd * (gh - xhat * (gh * xhat).mean())
        return gx.to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardRecomputedWithoutEps(_RMSNormFunctionBase):
    """Recomputes the RMS in backward as sqrt(mean(x^2)) and forgets eps: wrong wherever eps matters (tiny x).
    ja: backward で RMS を sqrt(mean(x^2)) として計算し直し、eps を忘れています。eps が効くところ (非常に小さい x) で間違います。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, _, _, gh = _parts(ctx, grad_out)
        x32 = x.float()
        rstd = torch.rsqrt(x32.pow(2).mean(-1, keepdim=True))
        xhat = x32 * rstd
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        return gx.to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardInInputDtype(_RMSNormFunctionBase):
    """Recomputes the statistic in backward in x's own dtype: in float16, x^2 overflows above 256 and the gradient
    becomes 0 or NaN.
    ja: backward で統計量を x 自身の dtype で計算し直しています。float16 では 256 を超えると x^2 がオーバーフローし、勾配が 0 か NaN になります。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, _, _, _ = _parts(ctx, grad_out)
        rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ctx.eps)
        xhat = x * rstd
        gh = grad_out.to(x.dtype) * weight.to(x.dtype)
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        return gx.to(x.dtype), _grad_weight(grad_out, xhat.float(), x, weight), None


class BackwardChangesGradOut(_RMSNormFunctionBase):
    """grad_out.mul_(weight): the right numbers, but computed in place in a tensor autograd owns.
    ja: grad_out.mul_(weight): 値は正しいのですが、autograd が持っているテンソルをその場で書き換えています。"""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, _ = _parts(ctx, grad_out)
        gw = _grad_weight(grad_out, xhat, x, weight)
        gh = grad_out.mul_(weight).float()
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        return gx.to(x.dtype), gw, None


class BackwardExpanded(_RMSNormFunctionBase):
    """Correct: the same gradient written as rstd * gh - x * rstd^3 * mean(gh * x)."""

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, rstd, xhat, gh = _parts(ctx, grad_out)
        x32 = x.float()
        gx = rstd * gh - x32 * rstd.pow(3) * (gh * x32).mean(-1, keepdim=True)
        return gx.to(x.dtype), _grad_weight(grad_out, xhat, x, weight), None


class BackwardFloat64(torch.autograd.Function):
    """Correct: saves only x and weight, recomputes everything in float64 in backward."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        x64 = x.double()
        return weight * (x64 / (x64.square().mean(-1, keepdim=True) + eps).sqrt()).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        x64 = x.double()
        rstd = (x64.square().mean(-1, keepdim=True) + ctx.eps) ** -0.5
        xhat = x64 * rstd
        gh = grad_out.double() * weight.double()
        gx = rstd * (gh - xhat * (gh * xhat).mean(-1, keepdim=True))
        gw = (grad_out.double() * xhat.to(x.dtype).double()).flatten(0, -2).sum(0)
        return gx.to(x.dtype), gw.to(weight.dtype), None


class BackwardByVjp(torch.autograd.Function):
    """Correct: lets torch.func.vjp differentiate the forward formula (no derivation, but a real Function)."""

    @staticmethod
    def forward(ctx, x, weight, eps):
        ctx.save_for_backward(x, weight)
        ctx.eps = eps
        return _BackwardByVjpFormula(x, weight, eps)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        _, vjp = torch.func.vjp(lambda a, b: _BackwardByVjpFormula(a, b, ctx.eps), x, weight)
        grad_x, grad_w = vjp(grad_out)
        return grad_x, grad_w, None


def _BackwardByVjpFormula(x, weight, eps):
    x32 = x.float()
    return weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


@exercise("ch05.RMSNormFunction", reference=RMSNormFunction, kind="class", run=_run_function,
          compare=_compare_output_and_grads, uses_device=False, grad=False,
          wrong=[BackwardRmsAsConstant, BackwardSumNotMean, BackwardPlusProjection, BackwardWithoutWeight,
                 BackwardGradWeightFromX, BackwardGradWeightMean, BackwardOneMeanForAll,
                 BackwardRecomputedWithoutEps, BackwardInInputDtype, BackwardChangesGradOut],
          correct=[BackwardExpanded, BackwardFloat64, BackwardByVjp],
          covers="gains far from 1, a mean far from 0, eps 1e-5 and 1e-6 on tiny inputs, float16 values in the "
                 "hundreds, bfloat16, an odd width, 3-D inputs, grad_out left unchanged",
          hint="with xhat = x / RMS and gh = grad_out * weight (in float32): grad_x = (gh - xhat * mean(gh * xhat)) "
               "/ RMS, the mean over the last dimension; grad_weight = the sum of grad_out * xhat over every "
               "dimension but the last; None for eps.",
          hint_ja="xhat = x / RMS、gh = grad_out * weight (float32 で) とすると、grad_x = (gh - xhat * mean(gh * xhat)) "
                  "/ RMS (mean は最後の次元)、grad_weight は grad_out * xhat を最後以外の全次元で和をとったもの。"
                  "eps への勾配は None です。")
def _rmsnorm_function_cases():
    g = torch.Generator().manual_seed(51)

    def case(shape, eps, scale=1.0, shift=0.0, dtype=torch.float32, name=""):
        x = (torch.randn(*shape, generator=g) * scale + shift).to(dtype)
        weight = (1 + 0.5 * torch.randn(shape[-1], generator=g)).to(dtype)  # gains far from 1
        grad_out = torch.randn(*shape, generator=g).to(dtype)
        return Case(args=(x, weight, eps, grad_out), name=name)

    yield case((4, 8), 1e-5, name="x of shape (4, 8), eps 1e-5")
    yield case((2, 5, 32), 1e-6, scale=3.0, shift=5.0, name="x of shape (2, 5, 32), mean 5, std 3, eps 1e-6")
    yield case((3, 16), 1e-5, scale=1e-3, name="a tiny x (std 0.001) with eps 1e-5: eps dominates the RMS")
    yield case((3, 7), 1e-6, scale=2e-3, name="a tiny x (std 0.002), eps 1e-6, an odd width 7")
    yield case((2, 3, 64), 1e-5, scale=400.0, dtype=torch.float16,
               name="float16 x of shape (2, 3, 64) with values in the hundreds, float16 weight and grad_out")
    yield case((2, 4, 16), 1e-5, scale=30.0, dtype=torch.bfloat16,
               name="bfloat16 x of shape (2, 4, 16), bfloat16 weight and grad_out")


# ----------------------------------------------------------------------------- Gemma's RMSNorm
# minigpt has no Gemma norm of its own; transformers' GemmaRMSNorm is the trusted oracle (its weight is an offset
# from 1, initialised at 0; the gain is applied in float32 and the result cast to the input's dtype at the end).
class GemmaRMSNormOracle(torch.nn.Module):
    """transformers' GemmaRMSNorm, run with this module's weight (transformers is imported on first use only)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

        oracle = GemmaRMSNorm(self.weight.shape[0], self.eps).to(self.weight.device)
        return torch.func.functional_call(oracle, {"weight": self.weight}, (x,))


class _GemmaBase(torch.nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = torch.nn.Parameter(torch.zeros(dim))


class GemmaTimesWeight(_GemmaBase):
    """Multiplies by w (Llama's gain) instead of 1 + w: Gemma stores its gains as offsets from 1.
    ja: 1 + w ではなく w (Llama のゲイン) を掛けています。Gemma はゲインを 1 からのずれとして保存します。"""

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


class GemmaCastBeforeGain(_GemmaBase):
    """Llama's order: casts to x's dtype first, then multiplies by (1 + w); with float32 weights and a float16 x the
    result is float32 where Gemma's is float16.
    ja: Llama の順序です: 先に x の dtype にキャストしてから (1 + w) を掛けています。float32 の重みと float16 の x では、Gemma なら float16 になる結果が float32 になります。"""

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (1.0 + self.weight) * y.to(x.dtype)


class GemmaWithoutFloat32(_GemmaBase):
    """Every operation in x's own dtype: in float16 the squares overflow above 256 and the row becomes zeros.
    ja: すべての演算を x 自身の dtype で行っています。float16 では 256 を超える値の 2 乗がオーバーフローし、その行が 0 になります。"""

    def forward(self, x):
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.to(x.dtype))).to(x.dtype)


class GemmaEpsOutsideSqrt(_GemmaBase):
    """x / (sqrt(mean(x^2)) + eps): eps added outside the square root.
    ja: x / (sqrt(mean(x^2)) + eps): eps を平方根の外で足しています。"""

    def forward(self, x):
        x32 = x.float()
        y = x32 / (x32.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


class GemmaSubtractsMean(_GemmaBase):
    """Subtracts the mean first, as LayerNorm does.
    ja: LayerNorm のように、先に平均を引いています。"""

    def forward(self, x):
        x32 = x.float()
        x32 = x32 - x32.mean(-1, keepdim=True)
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


class GemmaHardCodedEps(_GemmaBase):
    """Hard-codes eps = 1e-5 (Llama's) instead of self.eps (Gemma's 1e-6).
    ja: self.eps (Gemma の 1e-6) ではなく eps = 1e-5 (Llama の値) を直接書いています。"""

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-5)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


class GemmaSumNotMean(_GemmaBase):
    """Divides by sqrt(sum(x^2)), the L2 norm: every output sqrt(C) times too small.
    ja: sqrt(sum(x^2)) (L2 ノルム) で割っています。出力がすべて sqrt(C) 倍小さくなります。"""

    def forward(self, x):
        x32 = x.float()
        y = x32 * torch.rsqrt(x32.pow(2).sum(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).to(x.dtype)


class GemmaWithTorchRmsNorm(_GemmaBase):
    """Correct: torch.nn.functional.rms_norm in float32, then the (1 + w) gain, then the cast."""

    def forward(self, x):
        y = torch.nn.functional.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return (y * (1 + self.weight.float())).type_as(x)


class GemmaInFloat64(_GemmaBase):
    """Correct: the statistic and the gain in float64, one cast at the end."""

    def forward(self, x):
        x64 = x.double()
        y = x64 / (x64.square().mean(-1, keepdim=True) + self.eps).sqrt()
        return (y * (1 + self.weight.double())).to(x.dtype)


@exercise("ch05.GemmaRMSNorm", reference=GemmaRMSNormOracle, kind="module",
          wrong=[GemmaTimesWeight, GemmaCastBeforeGain, GemmaWithoutFloat32, GemmaEpsOutsideSqrt, GemmaSubtractsMean,
                 GemmaHardCodedEps, GemmaSumNotMean],
          correct=[GemmaWithTorchRmsNorm, GemmaInFloat64],
          covers="gains near 0 (offsets from 1), the default eps 1e-6 and 1e-5 on tiny inputs, a mean far from 0, "
                 "float16 values in the hundreds with float32 gains, bfloat16, gradients of x and weight",
          hint="normalise a float32 copy of x as in RMSNorm, multiply by (1 + weight) in float32, and only then cast "
               "the result to x's dtype.",
          hint_ja="RMSNorm と同じく x の float32 のコピーを正規化し、float32 のまま (1 + weight) を掛けてから、最後に x の "
                  "dtype に戻します。")
def _gemma_cases():
    g = torch.Generator().manual_seed(52)
    yield Case(init=(8,), args=(torch.randn(4, 8, generator=g),), name="GemmaRMSNorm(8) on x of shape (4, 8)")
    yield Case(init=(32,), args=(torch.randn(2, 5, 32, generator=g) * 3 + 5,),
               name="GemmaRMSNorm(32) on x of shape (2, 5, 32), mean 5, std 3")
    yield Case(init=(16,), args=(torch.randn(3, 16, generator=g) * 1e-3,),
               name="GemmaRMSNorm(16) with its default eps 1e-6 on a tiny x (std 0.001)")
    yield Case(init=(12, 1e-5), args=(torch.randn(3, 12, generator=g) * 2e-3,),
               name="GemmaRMSNorm(12, eps=1e-5) on a tiny x (std 0.002)")
    yield Case(init=(64,), args=((torch.randn(2, 3, 64, generator=g) * 400).half(),),
               name="GemmaRMSNorm(64) with float32 gains on a float16 x with values in the hundreds")
    yield Case(init=(16,), args=((torch.randn(2, 4, 16, generator=g) * 30).bfloat16(),),
               name="GemmaRMSNorm(16) with float32 gains on a bfloat16 x")
