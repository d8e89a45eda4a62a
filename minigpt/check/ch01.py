"""Chapter 01 (a vanilla GPT-2 decoder): attention, LayerNorm, MLP, the block, the model.

The references are minigpt's own modules. Where the notebook's interface is simpler than the
package's (the package's Block also returns MoE losses; its MLP takes sizes, not a config),
a thin adapter below gives the package's computation the notebook's interface; it is also what a
learner gets back while an exercise is still a stub.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import attention, mlp, model, norm
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig


# ----------------------------------------------------------------------------- causal self-attention
def reference_causal_self_attention(q, k, v):
    """PyTorch's fused attention is the oracle: softmax(q k^T / sqrt(hd) + causal mask) v."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _attend(q, k, v, scale, diagonal=0, dim=-1, masked=True):
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * scale
    if masked:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril(diagonal=diagonal)
        att = att.masked_fill(~mask, float("-inf"))
    return torch.softmax(att, dim=dim) @ v


def attention_without_mask(q, k, v):
    """No causal mask: every position also sees the future.
    ja: 因果マスクがないので、各位置が未来も見てしまいます。"""
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), masked=False)


def attention_without_scale(q, k, v):
    """Without the 1/sqrt(head_dim) scale: the softmax is too peaked.
    ja: 1/sqrt(head_dim) のスケールがないので、softmax が尖りすぎます。"""
    return _attend(q, k, v, 1.0)


def attention_mask_off_by_one(q, k, v):
    """tril(diagonal=1): every position also sees the next one (the token it must predict).
    ja: tril(diagonal=1) なので、各位置が次の位置 (予測すべきトークン) も見てしまいます。"""
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), diagonal=1)


def attention_softmax_over_queries(q, k, v):
    """Softmax over the queries (dim=-2) instead of the keys.
    ja: softmax をキーではなくクエリの次元 (dim=-2) でとっています。"""
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), dim=-2)


def attention_scale_by_head_dim(q, k, v):
    """Divides by head_dim instead of sqrt(head_dim).
    ja: sqrt(head_dim) ではなく head_dim で割っています。"""
    return _attend(q, k, v, 1 / q.shape[-1])


def attention_mask_fills_zero(q, k, v):
    """Sets the masked scores to 0 instead of -inf: the future still gets weight exp(0).
    ja: マスクしたスコアを -inf ではなく 0 にしているので、未来にも exp(0) の重みが残ります。"""
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(att.masked_fill(~mask, 0.0), dim=-1) @ v


def attention_scales_q_in_place(q, k, v):
    """Scales q in place (q *= ...): the caller's queries are changed.
    ja: q をインプレースでスケールする (q *= ...) ので、呼び出し側のクエリが書き換わります。"""
    q *= 1 / math.sqrt(q.shape[-1])
    return _attend(q, k, v, 1.0)


def attention_detached_weights(q, k, v):
    """Detaches the attention weights: no gradient reaches q and k.
    ja: 注意の重みを detach しているので、q と k に勾配が届きません。"""
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    return torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1).detach() @ v


def attention_with_einsum(q, k, v):
    """einsum for both products, a boolean mask with torch.where."""
    T = q.shape[-2]
    att = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    att = torch.where(mask, att, torch.full_like(att, float("-inf")))
    return torch.einsum("bhij,bhjd->bhid", torch.softmax(att, dim=-1), v)


def attention_query_by_query(q, k, v):
    """A loop over the query positions: query i attends to keys 0..i."""
    out = []
    for i in range(q.shape[-2]):
        att = (q[..., i:i + 1, :] @ k[..., : i + 1, :].transpose(-2, -1)) / math.sqrt(q.shape[-1])
        out.append(torch.softmax(att, dim=-1) @ v[..., : i + 1, :])
    return torch.cat(out, dim=-2)


@exercise("ch01.causal_self_attention", reference=reference_causal_self_attention,
          wrong=[attention_without_mask, attention_without_scale, attention_mask_off_by_one,
                 attention_softmax_over_queries, attention_scale_by_head_dim, attention_mask_fills_zero,
                 attention_scales_q_in_place, attention_detached_weights],
          correct=[attention_with_einsum, attention_query_by_query], also_reference=(F.scaled_dot_product_attention,),
          dtypes=("bf16", "fp16"), low_tol={"bf16": (3e-2, 3e-2), "fp16": (3e-3, 3e-3)},
          covers="T from 1 to 33, odd head_dim, one head and several, float64 with large scores, bf16 and fp16, "
                 "gradients of q, k, v",
          hint_ja="scores = q @ k.transpose(-2, -1) / sqrt(head_dim)。j > i の scores を -inf にし (torch.tril)、"
                  "最後の次元 (キー) で softmax をとってから @ v。",
          hint="scores = q @ k.transpose(-2, -1) / sqrt(head_dim); set scores[j > i] to -inf "
               "(torch.tril); softmax over the last dimension (the keys); then @ v.")
def _attention_cases():
    g = torch.Generator().manual_seed(1)
    for shape in [(1, 1, 4, 8), (2, 3, 5, 8), (2, 2, 16, 16)]:
        q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
        yield Case(args=(q, k, v), name=f"q, k, v of shape {shape} = (B, n_head, T, head_dim)",
                   name_ja=f"形状 {shape} = (B, n_head, T, head_dim) の q, k, v")
    q, k, v = (torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64) * 4 for _ in range(3))
    yield Case(args=(q, k, v), name="float64 q, k, v of shape (1, 2, 6, 4), large scores",
               name_ja="形状 (1, 2, 6, 4) の float64 の q, k, v (大きなスコア)")
    q, k, v = (torch.randn(1, 3, 33, 5, generator=g) for _ in range(3))
    yield Case(args=(q, k, v), name="odd sizes: q, k, v of shape (1, 3, 33, 5)",
               name_ja="半端なサイズ: 形状 (1, 3, 33, 5) の q, k, v")


# ----------------------------------------------------------------------------- LayerNorm
class _WrongLayerNorm(norm.LayerNorm):
    pass


class LayerNormUnbiasedVariance(_WrongLayerNorm):
    """Unbiased variance (divides by C - 1), not the biased one LayerNorm uses.
    ja: 不偏分散 (C - 1 で割る) を使っていますが、LayerNorm は標本分散 (C で割る) です。"""

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormEpsOutsideSqrt(_WrongLayerNorm):
    """Adds eps after the square root: sqrt(var) + eps instead of sqrt(var + eps).
    ja: eps を平方根の外で足しています: sqrt(var + eps) ではなく sqrt(var) + eps。"""

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.weight + self.bias


class LayerNormWrongAxis(_WrongLayerNorm):
    """Normalises over the first dimension (the batch) instead of the last.
    ja: 最後の次元ではなく最初の次元 (バッチ) で正規化しています。"""

    def forward(self, x):
        mean, var = x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormWithoutBias(_WrongLayerNorm):
    """Forgets to add the bias.
    ja: bias を足し忘れています。"""

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight


class LayerNormFixedEps(_WrongLayerNorm):
    """Uses the default eps 1e-5 instead of self.eps.
    ja: self.eps ではなく既定値の 1e-5 を使っています。"""

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + 1e-5) * self.weight + self.bias


class LayerNormCentersInPlace(_WrongLayerNorm):
    """Centres x in place (x -= mean): the caller's tensor is changed.
    ja: x をインプレースで中心化する (x -= mean) ので、呼び出し側のテンソルが書き換わります。"""

    def forward(self, x):
        x -= x.mean(-1, keepdim=True)
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight + self.bias


class LayerNormDetachedWeight(_WrongLayerNorm):
    """Uses self.weight.detach(): right values, but the weight never learns.
    ja: self.weight.detach() を使っているので、値は正しくても重みが学習されません。"""

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight.detach() + self.bias


class LayerNormWithFunctional(_WrongLayerNorm):
    """PyTorch's functional layer_norm with the module's weights."""

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class LayerNormInFloat64(_WrongLayerNorm):
    """rsqrt in float64, cast back to the input's dtype."""

    def forward(self, x):
        d = x.double()
        c = d - d.mean(-1, keepdim=True)
        y = c * torch.rsqrt(c.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.double() + self.bias.double()).to(x.dtype)


@exercise("ch01.LayerNorm", reference=norm.LayerNorm, kind="module",
          wrong=[LayerNormUnbiasedVariance, LayerNormEpsOutsideSqrt, LayerNormWrongAxis, LayerNormWithoutBias,
                 LayerNormFixedEps, LayerNormCentersInPlace, LayerNormDetachedWeight],
          correct=[LayerNormWithFunctional, LayerNormInFloat64],
          dtypes=("bf16", "fp16"), low_tol={"bf16": (5e-2, 5e-2), "fp16": (5e-3, 5e-3)},
          covers="odd sizes, mean 5 and std 3, a nearly constant x, eps≠default (1e-2), large magnitudes (1e4), "
                 "bf16 and fp16, gradients of x, weight and bias",
          hint_ja="最後の次元で (x - mean) / sqrt(var + eps) * weight + bias。分散は標本分散 (unbiased=False、C - 1 ではなく C で割る)、"
                  "eps は平方根の中に入れ、self.eps を使ってください。",
          hint="over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias, with the biased "
               "variance (unbiased=False, divide by C, not C - 1) and eps inside the square root.")
def _layernorm_cases():
    g = torch.Generator().manual_seed(2)
    yield Case(init=(8,), args=(torch.randn(4, 8, generator=g),), name="LayerNorm(8) on x of shape (4, 8)",
               name_ja="形状 (4, 8) の x に LayerNorm(8)")
    yield Case(init=(32,), args=(torch.randn(2, 5, 32, generator=g) * 3 + 5,),
               name="LayerNorm(32) on x of shape (2, 5, 32), mean 5, std 3",
               name_ja="平均 5、標準偏差 3、形状 (2, 5, 32) の x に LayerNorm(32)")
    yield Case(init=(16,), args=(torch.randn(3, 16, generator=g) * 1e-3,),
               name="LayerNorm(16) on a nearly constant x (std 0.001): eps matters here",
               name_ja="ほぼ一定の x (標準偏差 0.001) に LayerNorm(16): ここで eps が効きます")
    yield Case(init=(12, 1e-2), args=(torch.randn(3, 12, generator=g) * 0.05,),
               name="LayerNorm(12, eps=0.01) on x with std 0.05: not the default eps",
               name_ja="標準偏差 0.05 の x に LayerNorm(12, eps=0.01): 既定値ではない eps")
    yield Case(init=(7,), args=(torch.randn(2, 3, 7, generator=g) * 1e4,), name="LayerNorm(7) on large x (std 10000)", name_ja="大きな x (標準偏差 10000) に LayerNorm(7)",
               dtypes=("bf16",))  # fp16's range ends at 65504: var(x) = 1e8 overflows in any hand-written fp16 LayerNorm


# ----------------------------------------------------------------------------- MLP
class MLP(mlp.GeluMLP):
    """The package's GELU MLP built from a GPTConfig, as in the notebook."""

    def __init__(self, cfg: GPTConfig):
        super().__init__(cfg.n_embd, cfg.hidden_dim, cfg.bias, cfg.dropout)


class MLPWithReLU(MLP):
    """ReLU instead of GELU.
    ja: GELU ではなく ReLU を使っています。"""

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)))


class MLPWithExactGELU(MLP):
    """nn.GELU() defaults to the exact erf form; GPT-2 was trained with the tanh approximation.
    ja: nn.GELU() の既定は erf を使う厳密な形ですが、GPT-2 は tanh 近似で学習されています。"""

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class MLPWithoutActivation(MLP):
    """No activation between the two linear layers: the MLP collapses to one linear map.
    ja: 2 つの線形層の間に活性化関数がないので、MLP が 1 つの線形写像になってしまいます。"""

    def forward(self, x):
        return self.c_proj(self.c_fc(x))


class MLPActivationAtTheEnd(MLP):
    """Applies GELU after c_proj instead of between the layers.
    ja: GELU を層の間ではなく c_proj の後にかけています。"""

    def forward(self, x):
        return F.gelu(self.c_proj(self.c_fc(x)), approximate="tanh")


class MLPWithQuickGELU(MLP):
    """x * sigmoid(1.702 x), the 'quick GELU' of CLIP: close to GPT-2's GELU, but not the same.
    ja: CLIP の「quick GELU」x * sigmoid(1.702 x) を使っています。GPT-2 の GELU に近いものの同じではありません。"""

    def forward(self, x):
        h = self.c_fc(x)
        return self.c_proj(h * torch.sigmoid(1.702 * h))


class MLPDropoutAlwaysOn(MLP):
    """F.dropout(h, p) without training=self.training: dropout also runs in eval mode.
    ja: training=self.training を渡さない F.dropout(h, p) なので、評価モードでもドロップアウトがかかります。"""

    def forward(self, x):
        return self.c_proj(F.dropout(F.gelu(self.c_fc(x), approximate="tanh"), 0.5))


class MLPDetachedHidden(MLP):
    """Detaches the hidden activations: no gradient reaches c_fc.
    ja: 隠れ層の活性を detach しているので、c_fc に勾配が届きません。"""

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh").detach())


class MLPWithTanhFormula(MLP):
    """GPT-2's GELU written out: 0.5 h (1 + tanh(sqrt(2/pi) (h + 0.044715 h^3)))."""

    def forward(self, x):
        h = self.c_fc(x)
        return self.c_proj(0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h.pow(3)))))


class MLPWithFunctionalLinear(MLP):
    """F.linear with the layers' weights and biases, nn.GELU('tanh')."""

    def forward(self, x):
        h = F.linear(x, self.c_fc.weight, self.c_fc.bias)
        return F.linear(torch.nn.GELU(approximate="tanh")(h), self.c_proj.weight, self.c_proj.bias)


def _cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return GPTConfig(**{**base, **kw})


@exercise("ch01.MLP", reference=MLP, kind="module",
          wrong=[MLPWithReLU, MLPWithExactGELU, MLPWithoutActivation, MLPActivationAtTheEnd, MLPWithQuickGELU,
                 MLPDropoutAlwaysOn, MLPDetachedHidden],
          correct=[MLPWithTanhFormula, MLPWithFunctionalLinear], dtypes=("bf16",), low_tol={"bf16": (5e-2, 5e-2)},
          covers="n_embd 8 to 32, odd sizes, dropout 0.1 in the config (eval mode), bf16, gradients of x and every weight",
          hint_ja="c_proj(gelu(c_fc(x)))。GELU は GPT-2 の tanh 近似: F.gelu(h, approximate='tanh')。",
          hint="c_proj(gelu(c_fc(x))) with GPT-2's tanh approximation: F.gelu(h, approximate='tanh').")
def _mlp_cases():
    g = torch.Generator().manual_seed(3)
    for n_embd, shape, dropout in [(16, (2, 5), 0.0), (32, (1, 7), 0.0), (8, (3, 4), 0.0), (10, (2, 3), 0.1)]:
        cfg = _cfg(n_embd=n_embd, n_head=2, dropout=dropout)
        x = torch.randn(*shape, n_embd, generator=g) * 2
        yield Case(init=(cfg,), args=(x,), name=f"n_embd={n_embd}, x of shape {(*shape, n_embd)}"
                                               + (f", dropout={dropout} (eval mode: no dropout)" if dropout else ""),
                   name_ja=f"n_embd={n_embd}、形状 {(*shape, n_embd)} の x"
                           + (f"、dropout={dropout} (評価モードなのでドロップアウトなし)" if dropout else ""))


# ----------------------------------------------------------------------------- the attention module
class CausalSelfAttention(attention.CausalSelfAttention):
    """The package's attention module; the notebook calls it with x only."""

    def forward(self, x):
        return super().forward(x)


class _AttentionParts(CausalSelfAttention):
    def _qkv(self, x, transpose=True):
        B, T, C = x.shape
        if transpose:
            split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        else:
            split = lambda t: t.view(B, self.n_head, T, self.head_dim)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))


class AttentionHeadsWithoutTranspose(_AttentionParts):
    """view(B, n_head, T, hd) straight from (B, T, C): each 'head' gets a mix of positions.
    ja: (B, T, C) からそのまま view(B, n_head, T, hd) しているので、各「ヘッド」に位置が混ざります。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x, transpose=False)
        y = reference_causal_self_attention(q, k, v)
        return self.o_proj(y.reshape(B, T, C))


class AttentionMergeWithoutTranspose(_AttentionParts):
    """Merges the heads with reshape(B, T, C) straight from (B, n_head, T, head_dim), without transposing back.
    ja: (B, n_head, T, head_dim) から転置し直さずに reshape(B, T, C) でヘッドをまとめています。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        y = reference_causal_self_attention(q, k, v)  # (B, nh, T, hd)
        return self.o_proj(y.reshape(B, T, C))


class AttentionWithoutOutputProjection(_AttentionParts):
    """Forgets the output projection o_proj.
    ja: 出力の射影 o_proj を忘れています。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        return reference_causal_self_attention(q, k, v).transpose(1, 2).reshape(B, T, C)


class AttentionKeysAsValues(_AttentionParts):
    """Uses the keys as values (a copy-paste slip).
    ja: 値としてキーを使っています (コピー&ペーストの取り違え)。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, _ = self._qkv(x)
        y = reference_causal_self_attention(q, k, k)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class AttentionNotCausal(_AttentionParts):
    """Calls scaled_dot_product_attention without is_causal=True: every token sees the future.
    ja: is_causal=True を付けずに scaled_dot_product_attention を呼んでいるので、各トークンが未来を見ます。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        return self.o_proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, C))


class AttentionScaleByWidth(_AttentionParts):
    """Scales the scores by 1/sqrt(n_embd) instead of 1/sqrt(head_dim).
    ja: スコアを 1/sqrt(head_dim) ではなく 1/sqrt(n_embd) でスケールしています。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        return self.o_proj(_attend(q, k, v, 1 / math.sqrt(C)).transpose(1, 2).reshape(B, T, C))


class AttentionDetachedValues(_AttentionParts):
    """Detaches v: right values, but v_proj never gets a gradient.
    ja: v を detach しているので、値は正しくても v_proj に勾配が届きません。"""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        return self.o_proj(reference_causal_self_attention(q, k, v.detach()).transpose(1, 2).reshape(B, T, C))


class AttentionWrittenOut(_AttentionParts):
    """Scores, mask and softmax written out, heads merged with einops-style permute."""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        y = _attend(q, k, v, 1 / math.sqrt(self.head_dim))  # (B, nh, T, hd)
        return self.o_proj(y.permute(0, 2, 1, 3).contiguous().view(B, T, C))


class AttentionHeadByHead(_AttentionParts):
    """A loop over the heads, each with its slice of the projections' outputs."""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        heads = []
        for h in range(self.n_head):
            sl = slice(h * self.head_dim, (h + 1) * self.head_dim)
            heads.append(_attend(q[..., sl], k[..., sl], v[..., sl], 1 / math.sqrt(self.head_dim)))
        return self.o_proj(torch.cat(heads, dim=-1))


@exercise("ch01.CausalSelfAttention", reference=CausalSelfAttention, kind="module",
          wrong=[AttentionHeadsWithoutTranspose, AttentionMergeWithoutTranspose,
                 AttentionWithoutOutputProjection, AttentionKeysAsValues, AttentionNotCausal, AttentionScaleByWidth,
                 AttentionDetachedValues],
          correct=[AttentionWrittenOut, AttentionHeadByHead], dtypes=("bf16",), low_tol={"bf16": (5e-2, 5e-2)},
          covers="1 to 4 heads, T from 5 to 12, bf16, gradients of x and of every projection",
          hint_ja="(B, T, C) -> q, k, v -> view(B, T, n_head, head_dim).transpose(1, 2) -> 注意 -> "
                  "transpose(1, 2).reshape(B, T, C) -> o_proj。",
          hint="(B, T, C) -> q, k, v -> view(B, T, n_head, head_dim).transpose(1, 2) -> attention -> "
               "transpose(1, 2).reshape(B, T, C) -> o_proj.")
def _attention_module_cases():
    g = torch.Generator().manual_seed(4)
    for n_embd, n_head, T in [(32, 4, 7), (48, 3, 12), (16, 1, 5)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        x = torch.randn(2, T, n_embd, generator=g)
        yield Case(init=(cfg,), args=(x,), name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd})",
                   name_ja=f"n_embd={n_embd}、n_head={n_head}、形状 (2, {T}, {n_embd}) の x")


# ----------------------------------------------------------------------------- the block
class Block(model.Block):
    """The package's block; its forward also returns MoE losses, the notebook's returns x only."""

    def forward(self, x):
        return super().forward(x)[0]


class BlockPostNorm(Block):
    """The original Transformer's order (norm after the residual add), not GPT-2's pre-norm.
    ja: 元の Transformer の順序 (残差を足した後に正規化) で、GPT-2 の pre-norm ではありません。"""

    def forward(self, x):
        x = self.attn_norm(x + self.attn(x))
        return self.mlp_norm(x + self.mlp(x))


class BlockWithoutResiduals(Block):
    """No residual connections.
    ja: 残差接続がありません。"""

    def forward(self, x):
        x = self.attn(self.attn_norm(x))
        return self.mlp(self.mlp_norm(x))


class BlockOneNormForBoth(Block):
    """Uses attn_norm before the MLP too, instead of mlp_norm.
    ja: MLP の前にも mlp_norm ではなく attn_norm を使っています。"""

    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.attn_norm(x))


class BlockParallel(Block):
    """Attention and MLP both from the block's input (GPT-J's parallel block), not one after the other.
    ja: 注意と MLP の両方をブロックの入力から計算しています (GPT-J の並列ブロック)。順番に適用するのが正解です。"""

    def forward(self, x):
        return x + self.attn(self.attn_norm(x)) + self.mlp(self.mlp_norm(x))


class BlockAddsInPlace(Block):
    """x += ...: the residual is added into the caller's tensor.
    ja: x += ... なので、残差が呼び出し側のテンソルに書き込まれます。"""

    def forward(self, x):
        x += self.attn(self.attn_norm(x))
        x += self.mlp(self.mlp_norm(x))
        return x


class BlockDetachedResidual(Block):
    """Detaches the residual stream: the gradient reaches x only through the sublayers.
    ja: 残差の流れを detach しているので、x への勾配がサブレイヤー経由の分しか届きません。"""

    def forward(self, x):
        x = x.detach() + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class BlockNamedSteps(Block):
    """Each step on its own line with a name."""

    def forward(self, x):
        attended = self.attn(self.attn_norm(x))
        h = torch.add(x, attended)
        transformed = self.mlp(self.mlp_norm(h))
        return h + transformed


class BlockWithSublayerHelper(Block):
    """A helper that applies one pre-norm sublayer with its residual."""

    def forward(self, x):
        def sublayer(inp, norm_, layer):
            return inp + layer(norm_(inp))

        return sublayer(sublayer(x, self.attn_norm, self.attn), self.mlp_norm, self.mlp)


class BlockResidualFromTheNorm(Block):
    """Adds the sublayer to norm(x) instead of x: the residual stream is normalised every time.
    ja: サブレイヤーの出力を x ではなく norm(x) に足しているので、残差の流れが毎回正規化されてしまいます。"""

    def forward(self, x):
        h = self.attn_norm(x)
        x = h + self.attn(h)
        h = self.mlp_norm(x)
        return h + self.mlp(h)


@exercise("ch01.Block", reference=Block, kind="module",
          wrong=[BlockPostNorm, BlockWithoutResiduals, BlockOneNormForBoth, BlockResidualFromTheNorm, BlockParallel,
                 BlockAddsInPlace, BlockDetachedResidual],
          correct=[BlockNamedSteps, BlockWithSublayerHelper], dtypes=("bf16",), low_tol={"bf16": (5e-2, 5e-2)},
          covers="two widths and head counts, an odd T, bf16, gradients of x and every weight",
          hint_ja="2 つの残差接続をもつ pre-norm: x = x + attn(attn_norm(x)); x = x + mlp(mlp_norm(x))。",
          hint="pre-norm with two residual connections: x = x + attn(attn_norm(x)); x = x + mlp(mlp_norm(x)).")
def _block_cases():
    g = torch.Generator().manual_seed(5)
    for n_embd, n_head, T in [(16, 2, 6), (32, 4, 9), (24, 3, 1)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        yield Case(init=(cfg,), args=(torch.randn(2, T, n_embd, generator=g),),
                   name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd})",
                   name_ja=f"n_embd={n_embd}、n_head={n_head}、形状 (2, {T}, {n_embd}) の x")


# ----------------------------------------------------------------------------- the model
class _WrongGPT(model.GPT):
    def _run(self, idx, targets, use_pos=True, final_norm=True, shift=False):
        B, T = idx.shape
        x = self.tok_emb(idx)
        if use_pos:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x, _ = block(x)
        if final_norm:
            x = self.norm_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            if shift:
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets[:, 1:].reshape(-1))
            else:
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


class GPTWithoutPositions(_WrongGPT):
    """Forgets the position embeddings.
    ja: 位置埋め込みを足し忘れています。"""

    def forward(self, idx, targets=None):
        return self._run(idx, targets, use_pos=False)


class GPTWithoutFinalNorm(_WrongGPT):
    """Forgets the final LayerNorm norm_f before lm_head.
    ja: lm_head の前の最後の LayerNorm (norm_f) を忘れています。"""

    def forward(self, idx, targets=None):
        return self._run(idx, targets, final_norm=False)


class GPTShiftsTargetsAgain(_WrongGPT):
    """The batch's targets are already the inputs shifted by one; shifting again predicts 2 ahead.
    ja: バッチの targets はすでに入力を 1 つずらしたものです。さらにずらすと 2 つ先を予測することになります。"""

    def forward(self, idx, targets=None):
        return self._run(idx, targets, shift=True)


class GPTPositionsFromOne(_WrongGPT):
    """Numbers the positions from 1 instead of 0.
    ja: 位置を 0 ではなく 1 から数えています。"""

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(1, T + 1, device=idx.device) % self.config.block_size)
        for block in self.blocks:
            x, _ = block(x)
        logits = self.lm_head(self.norm_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


class GPTLossSummed(_WrongGPT):
    """Sums the cross-entropy over the tokens instead of averaging it.
    ja: 交差エントロピーをトークンで平均せずに合計しています。"""

    def forward(self, idx, targets=None):
        logits, _ = self._run(idx, None)
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                                             reduction="sum")
        return logits, loss


class GPTLossOnLastPosition(_WrongGPT):
    """Computes the loss on the last position only, as if only the next token after the block counted.
    ja: 最後の位置だけで損失を計算しています。すべての位置で次のトークンを予測させるのが正解です。"""

    def forward(self, idx, targets=None):
        logits, _ = self._run(idx, None)
        loss = None if targets is None else F.cross_entropy(logits[:, -1], targets[:, -1])
        return logits, loss


class GPTDetachedEmbeddings(_WrongGPT):
    """Detaches the token embeddings: tok_emb gets a gradient only through the tied lm_head.
    ja: トークン埋め込みを detach しているので、tok_emb には共有された lm_head 経由の勾配しか届きません。"""

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok_emb(idx).detach() + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x, _ = block(x)
        logits = self.lm_head(self.norm_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


class GPTWrittenOut(_WrongGPT):
    """Embeddings by indexing the weight tables; the loss from log_softmax and gather."""

    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok_emb.weight[idx] + self.pos_emb.weight[:T]
        for block in self.blocks:
            x = block(x)[0]
        logits = self.lm_head(self.norm_f(x))
        if targets is None:
            return logits, None
        logp = torch.log_softmax(logits, dim=-1)
        return logits, -logp.gather(-1, targets.unsqueeze(-1)).mean()


class GPTFlattenFirst(_WrongGPT):
    """Flattens with reshape and uses F.embedding."""

    def forward(self, idx, targets=None):
        B, T = idx.shape
        pos = torch.arange(T, device=idx.device).unsqueeze(0).expand(B, T)
        x = F.embedding(idx, self.tok_emb.weight) + F.embedding(pos, self.pos_emb.weight)
        for block in self.blocks:
            x, _ = block(x)
        logits = self.lm_head(self.norm_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(B * T))
        return logits, loss


@exercise("ch01.GPT", reference=model.GPT, kind="module", output_names=("logits", "loss"),
          wrong=[GPTWithoutPositions, GPTWithoutFinalNorm, GPTShiftsTargetsAgain, GPTPositionsFromOne, GPTLossSummed,
                 GPTLossOnLastPosition, GPTDetachedEmbeddings],
          correct=[GPTWrittenOut, GPTFlattenFirst],
          covers="two configs, a full block, no targets (loss None), gradients of every weight through the loss",
          hint_ja="x = tok_emb(idx) + pos_emb(arange(T)); 各ブロック; norm_f; lm_head -> logits (B, T, vocab)。"
                  "loss = cross_entropy(logits.view(-1, vocab), targets.view(-1)) (targets はすでにずらしてあります)。",
          hint="x = tok_emb(idx) + pos_emb(arange(T)); each block; norm_f; lm_head -> logits (B, T, vocab); "
               "loss = cross_entropy(logits.view(-1, vocab), targets.view(-1)) (targets are already shifted).")
def _gpt_cases():
    g = torch.Generator().manual_seed(6)
    cfg = _cfg(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    idx, tgt = torch.randint(0, 50, (2, 8), generator=g), torch.randint(0, 50, (2, 8), generator=g)
    yield Case(init=(cfg,), args=(idx, tgt), name="vocab 50, n_layer=2, idx and targets of shape (2, 8)",
               name_ja="語彙 50、n_layer=2、形状 (2, 8) の idx と targets")
    idx, tgt = torch.randint(0, 50, (1, 16), generator=g), torch.randint(0, 50, (1, 16), generator=g)
    yield Case(init=(cfg,), args=(idx, tgt), name="a full block: idx and targets of shape (1, 16)",
               name_ja="ブロックいっぱい: 形状 (1, 16) の idx と targets")
    cfg = _cfg(vocab_size=70, block_size=12, n_layer=1, n_head=4, n_embd=32)
    yield Case(init=(cfg,), args=(torch.randint(0, 70, (3, 5), generator=g),),
               name="vocab 70, n_layer=1, idx of shape (3, 5), no targets (loss must be None)",
               name_ja="語彙 70、n_layer=1、形状 (3, 5) の idx、targets なし (loss は None のはず)")


# ----------------------------------------------------------------------------- bits per character
from minigpt import metrics  # noqa: E402


def bpc_forgets_ln2(loss, n_tokens, n_chars):
    """Forgets to divide by ln 2: that is nats per character, not bits.
    ja: ln 2 で割り忘れています。これは文字あたりのナットで、ビットではありません。"""
    return loss * (n_tokens / n_chars)


def bpc_log10(loss, n_tokens, n_chars):
    """Divides by ln 10 instead of ln 2: decimal digits (bans) per character, not bits.
    ja: ln 2 ではなく ln 10 で割っているので、ビットではなく文字あたりの 10 進桁数になっています。"""
    return loss * (n_tokens / n_chars) / math.log(10)


def bpc_ratio_inverted(loss, n_tokens, n_chars):
    """Multiplies by characters per token instead of tokens per character.
    ja: 1 文字あたりのトークン数ではなく、1 トークンあたりの文字数を掛けています。"""
    return loss * (n_chars / n_tokens) / math.log(2)


def bpc_times_ln2(loss, n_tokens, n_chars):
    """Multiplies by ln 2 instead of dividing: log2(x) = ln(x) / ln 2.
    ja: ln 2 で割る代わりに掛けています。log2(x) = ln(x) / ln 2 です。"""
    return loss * (n_tokens / n_chars) * math.log(2)


def bpc_per_token(loss, n_tokens, n_chars):
    """Converts to bits but forgets the tokens per character: bits per token.
    ja: ビットには直していますが、1 文字あたりのトークン数を掛け忘れています (トークンあたりのビット数)。"""
    return loss / math.log(2)


def bpc_integer_ratio(loss, n_tokens, n_chars):
    """Tokens per character with integer division (n_tokens // n_chars): 1.46 becomes 1, 0.59 becomes 0.
    ja: 1 文字あたりのトークン数を整数除算 (n_tokens // n_chars) で求めているので、1.46 が 1 に、0.59 が 0 になります。"""
    return loss * (n_tokens // n_chars) / math.log(2)


def bpc_log2_of_loss(loss, n_tokens, n_chars):
    """Takes log2 of the loss: the loss is already a logarithm, only its base changes.
    ja: 損失の log2 を取っています。損失はすでに対数なので、変えるのは底だけです。"""
    return torch.log2(loss) * (n_tokens / n_chars)


def bpc_as_float(loss, n_tokens, n_chars):
    """Returns a Python float (loss.item()): no tensor, no gradient.
    ja: Python の float (loss.item()) を返しているので、テンソルでも勾配もありません。"""
    return loss.item() * (n_tokens / n_chars) / math.log(2)


def bpc_total_bits(loss, n_tokens, n_chars):
    """Bits of the whole text (loss * n_tokens / ln 2), not divided by the characters.
    ja: テキスト全体のビット数 (loss * n_tokens / ln 2) で、文字数で割っていません。"""
    return loss * n_tokens / math.log(2)


def bpc_via_log2e(loss, n_tokens, n_chars):
    """Total nats of the text, per character, times log2(e) = 1 / ln 2."""
    return loss * n_tokens / n_chars * math.log2(math.e)


def bpc_in_tensors(loss, n_tokens, n_chars):
    """The same with tensors: ln 2 as torch.log of a tensor of the loss's dtype."""
    two = torch.tensor(2.0, dtype=loss.dtype, device=loss.device)
    return loss * n_tokens / (n_chars * torch.log(two))


@exercise("ch01.bits_per_char", reference=metrics.bits_per_char,
          wrong=[bpc_forgets_ln2, bpc_log10, bpc_ratio_inverted, bpc_times_ln2, bpc_per_token, bpc_integer_ratio,
                 bpc_log2_of_loss, bpc_as_float, bpc_total_bits],
          correct=[bpc_via_log2e, bpc_in_tensors],
          covers="more tokens than characters (GPT-2 on Japanese) and fewer (a Japanese tokenizer), a whole-number "
                 "ratio, a uniform model's loss ln V, a batch of losses, float64, gradients of the loss",
          hint="bits per character = loss (nats per token) x tokens per character / ln 2; keep the loss a tensor.",
          hint_ja="文字あたりのビット数 = 損失 (トークンあたりのナット) x 1 文字あたりのトークン数 / ln 2。"
                  "損失はテンソルのまま計算してください。")
def _bits_per_char_cases():
    yield Case(args=(torch.tensor(3.914), 9514, 6495), name="loss 3.914 nats/token, 9,514 tokens for 6,495 characters",
               name_ja="損失 3.914 ナット/トークン、6,495 文字に 9,514 トークン")
    yield Case(args=(torch.tensor(4.6), 4321, 6495), name="loss 4.6, 4,321 tokens for 6,495 characters (fewer tokens)",
               name_ja="損失 4.6、6,495 文字に 4,321 トークン (文字より少ないトークン)")
    yield Case(args=(torch.tensor(math.log(993)), 2000, 1000),
               name="a uniform guess over 993 tokens (loss ln 993), exactly 2 tokens per character",
               name_ja="993 トークンの一様な推測 (損失 ln 993)、1 文字にちょうど 2 トークン")
    yield Case(args=(torch.tensor([6.9, 4.5, 3.9]), 300334, 206013),
               name="three losses at once (a tensor of shape (3,)), 300,334 tokens for 206,013 characters",
               name_ja="3 つの損失を一度に (形状 (3,) のテンソル)、206,013 文字に 300,334 トークン")
    yield Case(args=(torch.tensor(2.25, dtype=torch.float64), 7, 3), name="a float64 loss, 7 tokens for 3 characters",
               name_ja="float64 の損失、3 文字に 7 トークン")


# ----------------------------------------------------------------------------- learning-rate schedule
from minigpt import train as _train  # noqa: E402


def reference_lr_at(step: int, max_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """minigpt.train.lr_at with the notebook's interface (plain numbers instead of a TrainConfig)."""
    cfg = _train.TrainConfig(max_steps=max_steps, warmup_steps=warmup_steps, lr=lr, min_lr=min_lr)
    return _train.lr_at(step, cfg)


def _cosine(step, max_steps, warmup_steps, lr, min_lr):
    progress = (step - warmup_steps) / max(max_steps - warmup_steps, 1)
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_warmup_from_zero(step, max_steps, warmup_steps, lr, min_lr):
    """Warms up from 0 (lr * step / warmup_steps): the first step gets a learning rate of 0 and is wasted.
    ja: 0 からウォームアップしている (lr * step / warmup_steps) ので、最初のステップの学習率が 0 になり無駄になります。"""
    if step < warmup_steps:
        return lr * step / warmup_steps
    if step >= max_steps:
        return min_lr
    return _cosine(step, max_steps, warmup_steps, lr, min_lr)


def lr_cosine_to_zero(step, max_steps, warmup_steps, lr, min_lr):
    """The cosine ends at 0 instead of min_lr.
    ja: コサインが min_lr ではなく 0 まで下がっています。"""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return 0.0
    return _cosine(step, max_steps, warmup_steps, lr, 0.0)


def lr_progress_over_all_steps(step, max_steps, warmup_steps, lr, min_lr):
    """Measures the cosine's progress from step 0 (step / max_steps), not from the end of warmup: the decay has
    already begun when warmup ends, so the peak lr is never reached.
    ja: コサインの進み具合をウォームアップの終わりからではなくステップ 0 から (step / max_steps) 測っているので、
    ウォームアップが終わった時点ですでに減衰が始まっていて、最大の学習率に届きません。"""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    return min_lr + 0.5 * (1 + math.cos(math.pi * step / max_steps)) * (lr - min_lr)


def lr_linear_decay(step, max_steps, warmup_steps, lr, min_lr):
    """Decays linearly from lr to min_lr instead of along a cosine.
    ja: lr から min_lr までコサインではなく直線で下げています。"""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(max_steps - warmup_steps, 1)
    return lr - progress * (lr - min_lr)


def lr_quarter_cosine(step, max_steps, warmup_steps, lr, min_lr):
    """Uses cos(pi/2 x progress), a quarter period, as the factor: right at both ends, too high in between.
    ja: 係数に 4 分の 1 周期の cos(pi/2 x progress) を使っているので、両端は正しくても途中が高すぎます。"""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(max_steps - warmup_steps, 1)
    return min_lr + math.cos(0.5 * math.pi * progress) * (lr - min_lr)


def lr_no_floor_after_the_end(step, max_steps, warmup_steps, lr, min_lr):
    """Keeps following the cosine after max_steps, so the learning rate climbs back up.
    ja: max_steps を過ぎてもコサインをたどり続けるので、学習率がまた上がっていきます。"""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return _cosine(step, max_steps, warmup_steps, lr, min_lr)


def lr_warmup_one_step_too_long(step, max_steps, warmup_steps, lr, min_lr):
    """Still warms up at step == warmup_steps (<= instead of <): that step's lr is above the peak.
    ja: step == warmup_steps でもまだウォームアップしている (< ではなく <=) ので、そのステップの学習率が最大値を超えます。"""
    if step <= warmup_steps and warmup_steps > 0:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    return _cosine(step, max_steps, warmup_steps, lr, min_lr)


def lr_min_lr_as_a_ratio(step, max_steps, warmup_steps, lr, min_lr):
    """Treats min_lr as a fraction of lr (decays to lr * min_lr) instead of a learning rate.
    ja: min_lr を学習率ではなく lr に対する比率として扱い、lr * min_lr まで下げています。"""
    return reference_lr_at(step, max_steps, warmup_steps, lr, lr * min_lr)


def lr_without_warmup(step, max_steps, warmup_steps, lr, min_lr):
    """No warmup: the cosine starts at step 0 with the full learning rate.
    ja: ウォームアップがなく、ステップ 0 から最大の学習率でコサインが始まります。"""
    return _cosine(min(step, max_steps), max_steps, 0, lr, min_lr)


def lr_with_numpy(step, max_steps, warmup_steps, lr, min_lr):
    """The same with branches in another order, and the cosine written as lr - (lr - min_lr) (1 - cos) / 2."""
    if step >= max_steps:
        return min_lr
    if step >= warmup_steps:
        p = (step - warmup_steps) / max(max_steps - warmup_steps, 1)
        return lr - (lr - min_lr) * (1 - math.cos(math.pi * p)) / 2
    return (step + 1) / warmup_steps * lr


def lr_as_a_table(step, max_steps, warmup_steps, lr, min_lr):
    """Precomputes the whole schedule as a list with torch, then reads one entry."""
    steps = torch.arange(max_steps, dtype=torch.float64)
    warm = lr * (steps + 1) / max(warmup_steps, 1)
    progress = ((steps - warmup_steps) / max(max_steps - warmup_steps, 1)).clamp(0, 1)
    decay = min_lr + 0.5 * (1 + torch.cos(math.pi * progress)) * (lr - min_lr)
    table = torch.where(steps < warmup_steps, warm, decay).tolist()
    return table[step] if step < max_steps else min_lr


@exercise("ch01.lr_at", reference=reference_lr_at, also_reference=(_train.lr_at,), grad=False, uses_device=False,
          wrong=[lr_warmup_from_zero, lr_cosine_to_zero, lr_progress_over_all_steps, lr_linear_decay,
                 lr_quarter_cosine, lr_no_floor_after_the_end, lr_warmup_one_step_too_long, lr_min_lr_as_a_ratio,
                 lr_without_warmup],
          correct=[lr_with_numpy, lr_as_a_table],
          covers="the first step, the last warmup step and the one after it, the middle and the end of the cosine, "
                 "steps past max_steps, no warmup at all, min_lr 0 and min_lr = lr / 10, lr 6e-4 and 1",
          hint="step < warmup_steps: lr * (step + 1) / warmup_steps; step >= max_steps: min_lr; in between "
               "min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2 with p = (step - warmup_steps) / (max_steps - warmup_steps).",
          hint_ja="step < warmup_steps なら lr * (step + 1) / warmup_steps、step >= max_steps なら min_lr、その間は "
                  "p = (step - warmup_steps) / (max_steps - warmup_steps) として min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2。")
def _lr_at_cases():
    def case(step, max_steps, warmup, lr, min_lr, what, what_ja):
        return Case(args=(step, max_steps, warmup, lr, min_lr),
                    name=f"step {step} of max_steps={max_steps}, warmup_steps={warmup}, lr={lr:g}, min_lr={min_lr:g}: {what}",
                    name_ja=f"max_steps={max_steps}、warmup_steps={warmup}、lr={lr:g}、min_lr={min_lr:g} のステップ {step}: {what_ja}")
    yield case(0, 100, 10, 1.0, 0.0, "the first step", "最初のステップ")
    yield case(4, 100, 10, 1.0, 0.0, "during warmup", "ウォームアップ中")
    yield case(9, 100, 10, 1.0, 0.0, "the last warmup step (lr reached)", "ウォームアップの最後のステップ (lr に到達)")
    yield case(10, 100, 10, 1.0, 0.0, "the first step of the cosine", "コサインの最初のステップ")
    yield case(55, 100, 10, 1.0, 0.0, "half-way through the cosine", "コサインのちょうど半分")
    yield case(30, 100, 10, 1.0, 0.0, "early in the cosine", "コサインの前半")
    yield case(99, 100, 10, 1.0, 0.0, "the last step", "最後のステップ")
    yield case(100, 100, 10, 1.0, 0.0, "max_steps itself", "max_steps そのもの")
    yield case(400, 2000, 100, 6e-4, 6e-5, "GPT-2 small's values, early in the cosine",
               "GPT-2 small の値で、コサインの前半")
    yield case(1500, 2000, 100, 6e-4, 6e-5, "late in the cosine (min_lr matters)", "コサインの後半 (min_lr が効く)")
    yield case(2300, 2000, 100, 6e-4, 6e-5, "past max_steps", "max_steps を過ぎたステップ")
    yield case(0, 50, 0, 1e-3, 1e-4, "no warmup: the first step", "ウォームアップなし: 最初のステップ")
    yield case(20, 50, 0, 1e-3, 1e-4, "no warmup: the cosine", "ウォームアップなし: コサイン")


# ----------------------------------------------------------------------------- gradient clipping
def reference_clip_grad_norm(grads: list, max_norm: float):
    """torch.nn.utils.clip_grad_norm_ (the oracle) on copies: (clipped gradients, global norm before clipping)."""
    params = []
    for g in grads:
        p = torch.nn.Parameter(torch.zeros_like(g))
        p.grad = g.clone()
        params.append(p)
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params], norm


def _global_norm(grads):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def clip_each_tensor(grads, max_norm):
    """Clips every tensor by its own norm instead of all of them by the global norm: the direction changes.
    ja: 全体のノルムではなくテンソルごとのノルムでクリップしているので、勾配の向きが変わってしまいます。"""
    out = [g * min(1.0, max_norm / (float(torch.linalg.vector_norm(g)) + 1e-6)) for g in grads]
    return out, _global_norm(grads)


def clip_values(grads, max_norm):
    """Clamps each value to [-max_norm, max_norm] (clip_grad_value_) instead of rescaling by the norm.
    ja: ノルムで縮める代わりに、各値を [-max_norm, max_norm] に切り詰めています (clip_grad_value_)。"""
    return [g.clamp(-max_norm, max_norm) for g in grads], _global_norm(grads)


def clip_always_rescales(grads, max_norm):
    """Rescales to max_norm even when the norm is already smaller: small gradients are blown up.
    ja: ノルムがすでに小さいときにも max_norm に合わせて拡大してしまいます。"""
    norm = _global_norm(grads)
    return [g * (max_norm / (norm + 1e-6)) for g in grads], norm


def clip_sum_of_norms(grads, max_norm):
    """Adds the norms of the tensors (||g1|| + ||g2|| + ...) instead of taking the norm of all values together.
    ja: 全部の値をまとめたノルムではなく、テンソルごとのノルムの和 (||g1|| + ||g2|| + ...) を使っています。"""
    norm = sum(torch.linalg.vector_norm(g) for g in grads)
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads], norm


def clip_squared_norm(grads, max_norm):
    """Forgets the square root: compares the sum of squares with max_norm.
    ja: 平方根を取り忘れていて、2 乗和を max_norm と比べています。"""
    norm = sum((g ** 2).sum() for g in grads)
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads], norm


def clip_returns_norm_after(grads, max_norm):
    """Returns the norm after clipping instead of before (the log then never shows a spike).
    ja: クリップ前ではなくクリップ後のノルムを返しています (これではログにスパイクが現れません)。"""
    norm = _global_norm(grads)
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    out = [g * scale for g in grads]
    return out, _global_norm(out)


def clip_in_place(grads, max_norm):
    """Scales the given gradients in place (g.mul_): the caller's tensors change.
    ja: 渡された勾配をインプレースで (g.mul_) 縮めているので、呼び出し側のテンソルが変わります。"""
    norm = _global_norm(grads)
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    for g in grads:
        g.mul_(scale)
    return list(grads), norm


def clip_rms(grads, max_norm):
    """Uses the root mean square of all values instead of the norm (divides by the number of values).
    ja: ノルムではなく全部の値の 2 乗平均平方根を使っています (値の個数で割っています)。"""
    flat = torch.cat([g.flatten() for g in grads])
    norm = flat.pow(2).mean().sqrt()
    scale = min(1.0, max_norm / (float(norm) + 1e-6))
    return [g * scale for g in grads], norm


def clip_by_concatenation(grads, max_norm):
    """All values in one vector, its norm, and a clamped scale factor as a tensor."""
    flat = torch.cat([g.flatten() for g in grads])
    norm = flat.norm()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    return [g * scale for g in grads], norm


def clip_in_float64(grads, max_norm):
    """The norm in float64 from the sum of squares, the scale without the 1e-6 (a harmless difference)."""
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).to(grads[0].dtype)
    if norm > max_norm:
        return [g * (max_norm / norm) for g in grads], norm
    return [g.clone() for g in grads], norm


@exercise("ch01.clip_grad_norm", reference=reference_clip_grad_norm, grad=False,
          also_reference=(torch.nn.utils.clip_grad_norm_,), output_names=("grads", "norm"),
          wrong=[clip_each_tensor, clip_values, clip_always_rescales, clip_sum_of_norms, clip_squared_norm,
                 clip_returns_norm_after, clip_in_place, clip_rms],
          correct=[clip_by_concatenation, clip_in_float64],
          covers="a global norm above max_norm and one below it (nothing to clip), tensors of very different norms, "
                 "one tensor and five, max_norm 1.0, 0.5 and 5.0, a gradient 1000x too large (a loss spike), float64, "
                 "the gradients left unchanged",
          hint="global norm = sqrt(sum over all tensors of sum(g**2)); scale = min(1, max_norm / (norm + 1e-6)); "
               "return [g * scale for g in grads] and the norm before clipping.",
          hint_ja="全体のノルム = sqrt(全テンソルの sum(g**2) の和)。scale = min(1, max_norm / (norm + 1e-6))。"
                  "[g * scale for g in grads] とクリップ前のノルムを返してください。")
def _clip_cases():
    g = torch.Generator().manual_seed(11)
    r = lambda *s, **kw: torch.randn(*s, generator=g, **kw)  # noqa: E731
    yield Case(args=([r(4, 3), r(3)], 1.0), name="a (4, 3) and a (3,) gradient, norm above max_norm=1.0",
               name_ja="形状 (4, 3) と (3,) の勾配、ノルムが max_norm=1.0 を超える")
    yield Case(args=([r(4, 3) * 0.01, r(3) * 0.01], 1.0), name="small gradients (norm about 0.04): nothing to clip",
               name_ja="小さな勾配 (ノルム約 0.04): クリップ不要")
    yield Case(args=([r(8, 8) * 0.01, r(8) * 5.0, r(2, 3, 4)], 0.5),
               name="three tensors of very different norms, max_norm=0.5",
               name_ja="ノルムが大きく違う 3 つのテンソル、max_norm=0.5")
    yield Case(args=([r(16, 4) * 0.05, r(4) * 1000.0], 1.0), name="one gradient 1000x too large (a loss spike)",
               name_ja="1000 倍大きい勾配が 1 つ (損失のスパイク)")
    yield Case(args=([r(10)], 5.0), name="a single tensor, max_norm=5.0", name_ja="テンソル 1 つ、max_norm=5.0")
    yield Case(args=([r(6, 5), r(5), r(5), r(5, 6), r(6)], 1.0),
               name="five tensors (a small layer's weights and biases)", name_ja="5 つのテンソル (小さな層の重みとバイアス)")
    yield Case(args=([r(3, 3, dtype=torch.float64) * 3, r(3, dtype=torch.float64)], 1.0), name="float64 gradients",
               name_ja="float64 の勾配")


# ----------------------------------------------------------------------------- AdamW parameter groups
from minigpt import optim as _optim  # noqa: E402


def _names(model, decide):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if decide(name, p) else no_decay).append(name)
    return decay, no_decay


def split_matrices_decay(model):
    """Decays every matrix (p.dim() >= 2), embeddings included: nanoGPT's rule, but rare tokens' rows shrink.
    ja: 埋め込みも含めてすべての行列 (p.dim() >= 2) を減衰させています (nanoGPT の規則) が、まれなトークンの行が縮んでいきます。"""
    return _names(model, lambda n, p: p.dim() >= 2)


def split_by_bias_name(model):
    """Leaves out only parameters named "bias": the norm gains and the embeddings are decayed.
    ja: 名前が "bias" のパラメータだけを除外しているので、正規化のゲインと埋め込みが減衰されます。"""
    return _names(model, lambda n, p: not n.endswith("bias"))


def split_nn_layernorm_only(model):
    """Recognises norms by isinstance(m, nn.LayerNorm): minigpt's (and your own) LayerNorm and RMSNorm are
    other classes, so their gains are decayed.
    ja: isinstance(m, nn.LayerNorm) で正規化層を判定しているので、minigpt (やあなた) の LayerNorm・RMSNorm は
    別のクラスとみなされ、ゲインが減衰されます。"""
    skip = set()
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            if isinstance(m, (nn_LayerNorm, nn_Embedding)) or pname == "bias":
                skip.add(full)
    return _names(model, lambda n, p: n not in skip)


def split_tied_head_twice(model):
    """Walks the modules: the head tied to the token embedding is listed a second time, as a decayed Linear weight.
    ja: モジュールを順にたどるので、トークン埋め込みと共有された出力層が、減衰する Linear の重みとしてもう一度現れます。"""
    decay, no_decay = [], []
    for mname, m in model.named_modules():
        for pname, p in m.named_parameters(recurse=False):
            full = f"{mname}.{pname}" if mname else pname
            (no_decay if isinstance(m, nn_Embedding) or p.dim() < 2 else decay).append(full)
    return decay, no_decay


def split_swapped(model):
    """Returns the two lists the other way round: (no decay, decay).
    ja: 2 つのリストを逆の順 (減衰なし, 減衰あり) で返しています。"""
    decay, no_decay = _optim.decay_split(model)
    return no_decay, decay


def split_token_embedding_only(model):
    """Leaves out the token embedding but not the position embedding.
    ja: トークン埋め込みは除外していますが、位置埋め込みを除外していません。"""
    return _names(model, lambda n, p: p.dim() >= 2 and not n.startswith("tok_emb"))


def split_decay_everything(model):
    """Puts every parameter in the decayed group: one group for the whole model.
    ja: すべてのパラメータを減衰するグループに入れています (モデル全体で 1 グループ)。"""
    return [n for n, _ in model.named_parameters()], []


def split_sorted(model):
    """Sorts the names alphabetically instead of keeping the order of named_parameters().
    ja: named_parameters() の順ではなく、名前をアルファベット順に並べ替えています。"""
    decay, no_decay = _optim.decay_split(model)
    return sorted(decay), sorted(no_decay)


def split_by_module_type(model):
    """Decides by the module that owns each parameter: Linear weights decay; everything else does not."""
    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn_Linear)}
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn_Embedding)}
    return _names(model, lambda n, p: (id(p) in linear or p.dim() >= 2) and id(p) not in embeddings)


def split_by_shape_and_identity(model):
    """Two passes: first the set of embedding tensors, then a list comprehension per group."""
    emb = [m.weight for m in model.modules() if isinstance(m, nn_Embedding)]
    is_emb = lambda p: any(p is e for e in emb)  # noqa: E731
    named = list(model.named_parameters())
    return ([n for n, p in named if p.ndim > 1 and not is_emb(p)], [n for n, p in named if p.ndim <= 1 or is_emb(p)])


nn_LayerNorm, nn_Embedding, nn_Linear = torch.nn.LayerNorm, torch.nn.Embedding, torch.nn.Linear


def _drive_decay_split(fn, case: Case):
    """Build a minigpt GPT of the case's config (a GPT-2 style or a modern one) and split its parameters."""
    (cfg,) = case.args
    out = fn(model.GPT(cfg))
    return tuple(out) if isinstance(out, list) else out


@exercise("ch01.decay_split", reference=_optim.decay_split, grad=False, uses_device=False,
          output_names=("decay", "no_decay"), run=_drive_decay_split,
          wrong=[split_matrices_decay, split_by_bias_name, split_nn_layernorm_only, split_tied_head_twice, split_swapped,
                 split_token_embedding_only, split_decay_everything, split_sorted],
          correct=[split_by_module_type, split_by_shape_and_identity],
          covers="GPT-2 style (LayerNorm, biases, learned positions, tied head), Llama style (RMSNorm, no biases, RoPE), "
                 "an untied head (it decays), QK-norm gains inside attention, a Mixture-of-Experts router and experts",
          hint="decay = parameters with p.dim() >= 2 that are not an nn.Embedding's weight; everything else (biases, "
               "norm gains, embeddings) goes to no_decay; keep the order of model.named_parameters().",
          hint_ja="減衰あり = p.dim() >= 2 で nn.Embedding の重みでないパラメータ。それ以外 (バイアス、正規化のゲイン、埋め込み) は "
                  "減衰なし。順序は model.named_parameters() のとおりにしてください。")
def _decay_split_cases():
    base = GPTConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16)
    yield Case(args=(base,), name="GPT-2 style: LayerNorm, biases, learned positions, tied head",
               name_ja="GPT-2 型: LayerNorm、バイアス、学習する位置埋め込み、共有された出力層")
    modern = base.replace(norm="rmsnorm", bias=False, pos="rope", mlp="swiglu")
    yield Case(args=(modern,), name="Llama style: RMSNorm, no biases, RoPE (no position table), SwiGLU",
               name_ja="Llama 型: RMSNorm、バイアスなし、RoPE (位置の表なし)、SwiGLU")
    yield Case(args=(base.replace(tie_weights=False, n_layer=1),), name="an untied head: lm_head.weight decays",
               name_ja="共有しない出力層: lm_head.weight は減衰する")
    yield Case(args=(modern.replace(attn_logits="qk_norm", n_layer=1),), name="QK-norm gains inside attention",
               name_ja="アテンション内の QK-norm のゲイン")
    yield Case(args=(modern.replace(n_layer=1, n_experts=3, top_k=1, mlp_hidden=16),),
               name="Mixture-of-Experts: a router and 3 experts", name_ja="Mixture-of-Experts: ルーターと 3 つのエキスパート")


# ----------------------------------------------------------------------------- sampling: temperature, top-k, top-p
from minigpt.generate import filter_logits as _filter_logits  # noqa: E402


def reference_sampling_probs(logits, temperature=1.0, top_k=None, top_p=None):
    """The distribution minigpt.generate.sample_next draws from: softmax(filter_logits(logits / T, top_k, top_p));
    temperature 0 is greedy (all the probability on the argmax)."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return torch.softmax(_filter_logits(logits / temperature, top_k, top_p), dim=-1)


def _keep_top_k(z, k):
    if k is None or k >= z.shape[-1]:
        return z
    kth = torch.topk(z, k, dim=-1).values[..., -1:]
    return z.masked_fill(z < kth, float("-inf"))


def _keep_top_p(z, p, strict_before=True, sort=True):
    if p is None or p >= 1:
        return z
    if sort:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
    else:
        sorted_z, order = z, torch.arange(z.shape[-1]).expand_as(z)
    probs = torch.softmax(sorted_z, dim=-1)
    cum = probs.cumsum(dim=-1)
    drop_sorted = (cum - probs >= p) if strict_before else (cum > p)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return z.masked_fill(drop, float("-inf"))


def _probs(logits, temperature, top_k, top_p, **kw):
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    z = _keep_top_p(_keep_top_k(logits / temperature, top_k), top_p, **kw)
    return torch.softmax(z, dim=-1)


def probs_temperature_multiplied(logits, temperature=1.0, top_k=None, top_p=None):
    """Multiplies the logits by the temperature instead of dividing: a low temperature flattens the distribution.
    ja: ロジットを温度で割らずに掛けているので、低い温度で分布が平らになってしまいます。"""
    if temperature == 0:
        return reference_sampling_probs(logits, 0)
    return torch.softmax(_keep_top_p(_keep_top_k(logits * temperature, top_k), top_p), dim=-1)


def probs_top_k_one_short(logits, temperature=1.0, top_k=None, top_p=None):
    """Masks the logits <= the k-th largest (instead of <): only k - 1 tokens are kept.
    ja: k 番目に大きいロジット以下 (< ではなく <=) を消しているので、残るトークンが k - 1 個になります。"""
    if temperature == 0:
        return reference_sampling_probs(logits, 0)
    z = logits / temperature
    if top_k is not None and top_k < z.shape[-1]:
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]
        z = z.masked_fill(z <= kth, float("-inf"))
    return torch.softmax(_keep_top_p(z, top_p), dim=-1)


def probs_top_p_drops_the_crossing_token(logits, temperature=1.0, top_k=None, top_p=None):
    """Keeps only the tokens whose cumulative probability is <= p, dropping the one that crosses p: the kept mass
    is below p, and when the most likely token alone is above p nothing is left (NaN).
    ja: 累積確率が p 以下のトークンだけを残し、p をまたぐトークンを捨てているので、残る確率が p に届かず、
    最も確からしいトークンだけで p を超えるときは何も残りません (NaN)。"""
    return _probs(logits, temperature, top_k, top_p, strict_before=False)


def probs_top_p_before_temperature(logits, temperature=1.0, top_k=None, top_p=None):
    """Chooses the nucleus on the untempered distribution, then applies the temperature: the set of tokens kept
    does not follow the temperature.
    ja: 温度をかける前の分布で核 (nucleus) を選んでから温度をかけているので、残すトークンの集合が温度に応じて変わりません。"""
    if temperature == 0:
        return reference_sampling_probs(logits, 0)
    z = _keep_top_p(_keep_top_k(logits, top_k), top_p)
    return torch.softmax(z / temperature, dim=-1)


def probs_not_renormalised(logits, temperature=1.0, top_k=None, top_p=None):
    """Zeroes the probabilities outside top-k / top-p after the softmax but does not renormalise: they sum to less than 1.
    ja: softmax の後で top-k / top-p の外の確率を 0 にしていますが、正規化し直していないので合計が 1 未満です。"""
    if temperature == 0:
        return reference_sampling_probs(logits, 0)
    z = logits / temperature
    keep = torch.isfinite(_keep_top_p(_keep_top_k(z, top_k), top_p))
    return torch.softmax(z, dim=-1) * keep


def probs_top_p_unsorted(logits, temperature=1.0, top_k=None, top_p=None):
    """Accumulates the probabilities in vocabulary order instead of from the most likely token down.
    ja: 確率の大きい順ではなく、語彙の順に確率を累積しています。"""
    return _probs(logits, temperature, top_k, top_p, sort=False)


def probs_zero_temperature_divides(logits, temperature=1.0, top_k=None, top_p=None):
    """Divides by the temperature even when it is 0 (greedy): logits / 0 gives inf and NaN.
    ja: 温度が 0 (貪欲法) のときにも温度で割っているので、logits / 0 が inf や NaN になります。"""
    z = _keep_top_p(_keep_top_k(logits / temperature, top_k), top_p)
    return torch.softmax(z, dim=-1)


def probs_top_p_before_top_k(logits, temperature=1.0, top_k=None, top_p=None):
    """Applies top-p to the full distribution and top-k afterwards: the nucleus is chosen among all tokens, not
    among the k kept ones.
    ja: top-p を分布全体にかけてから top-k をかけているので、核 (nucleus) が残した k 個の中ではなく全トークンから選ばれます。"""
    if temperature == 0:
        return reference_sampling_probs(logits, 0)
    return torch.softmax(_keep_top_k(_keep_top_p(logits / temperature, top_p), top_k), dim=-1)


def probs_softmax_first_axis(logits, temperature=1.0, top_k=None, top_p=None):
    """Takes the softmax over the first dimension: for a batch of rows it mixes the rows.
    ja: 最初の次元で softmax を取っているので、行のバッチでは行どうしが混ざります。"""
    if temperature == 0:
        return reference_sampling_probs(logits, 0)
    return torch.softmax(_keep_top_p(_keep_top_k(logits / temperature, top_k), top_p), dim=0)


def probs_with_sorted_loop(logits, temperature=1.0, top_k=None, top_p=None):
    """Row by row: sort once, keep a prefix (the top k, then the nucleus among them), softmax over the prefix."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    rows = (logits / temperature).reshape(-1, logits.shape[-1])
    out = []
    for row in rows:
        values, order = torch.sort(row, descending=True)
        n = len(values) if top_k is None else min(top_k, len(values))
        if top_p is not None and top_p < 1:
            p = torch.softmax(values[:n], dim=-1)
            before = p.cumsum(-1) - p
            n = int((before < top_p).sum())
        kept = torch.softmax(values[:n], dim=-1)
        out.append(torch.zeros_like(row).scatter(0, order[:n], kept))
    return torch.stack(out).reshape(logits.shape)


def probs_with_masks(logits, temperature=1.0, top_k=None, top_p=None):
    """Boolean masks of the tokens to keep, combined, then a masked softmax written out with exp."""
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    z = logits / temperature
    keep = torch.ones_like(z, dtype=torch.bool)
    if top_k is not None:
        keep &= z >= torch.topk(z, min(top_k, z.shape[-1]), dim=-1).values[..., -1:]
    if top_p is not None and top_p < 1:
        zk = z.masked_fill(~keep, float("-inf"))
        p = torch.softmax(zk, dim=-1)
        sorted_p, order = torch.sort(p, dim=-1, descending=True)
        before_sorted = sorted_p.cumsum(-1) - sorted_p
        before = torch.empty_like(before_sorted).scatter(-1, order, before_sorted)
        keep &= before < top_p
    e = torch.exp(z - z.masked_fill(~keep, float("-inf")).amax(-1, keepdim=True)) * keep
    return e / e.sum(-1, keepdim=True)


@exercise("ch01.sampling_probs", reference=reference_sampling_probs, also_reference=(_filter_logits,),
          wrong=[probs_temperature_multiplied, probs_top_k_one_short, probs_top_p_drops_the_crossing_token,
                 probs_top_p_before_temperature, probs_not_renormalised, probs_top_p_unsorted,
                 probs_zero_temperature_divides, probs_top_p_before_top_k, probs_softmax_first_axis],
          correct=[probs_with_sorted_loop, probs_with_masks],
          covers="temperatures 0 (greedy), 0.5, 1 and 2, top_k 1, 3 and 5, top_p 0.5 and 0.9, a most likely token above "
                 "p (only it is kept), top-k and top-p together, logits in shuffled order, one vector and a batch of rows, "
                 "a vocabulary of 1000, float64, gradients of the logits",
          hint="divide the logits by the temperature; keep the k largest; among them keep the most likely tokens until "
               "the probability *before* a token reaches p; softmax over what is left (temperature 0: one-hot argmax).",
          hint_ja="ロジットを温度で割り、大きい k 個を残し、その中で確率の大きい順に、そのトークンより前の累積確率が p に達するまで残します。"
                  "残りで softmax を取ります (温度 0 なら argmax の one-hot)。")
def _sampling_probs_cases():
    g = torch.Generator().manual_seed(21)
    v = torch.randn(10, generator=g) * 2
    yield Case(args=(v,), name="10 logits, temperature 1, no filter", name_ja="ロジット 10 個、温度 1、フィルタなし")
    yield Case(args=(v, 0.5), name="temperature 0.5 (sharper)", name_ja="温度 0.5 (鋭くなる)")
    yield Case(args=(v, 2.0), name="temperature 2 (flatter)", name_ja="温度 2 (平らになる)")
    yield Case(args=(v, 0), grad=False, name="temperature 0: greedy", name_ja="温度 0: 貪欲法")
    yield Case(args=(v, 1.0, 3), name="top_k=3", name_ja="top_k=3")
    yield Case(args=(v, 1.0, 1), name="top_k=1 (only the most likely)", name_ja="top_k=1 (最も確からしいものだけ)")
    yield Case(args=(v, 1.0, None, 0.9), name="top_p=0.9", name_ja="top_p=0.9")
    yield Case(args=(v, 0.7, None, 0.5), name="temperature 0.7 and top_p=0.5", name_ja="温度 0.7 と top_p=0.5")
    peaked = torch.tensor([0.1, 6.0, -1.0, 0.5, 0.3, -2.0])
    yield Case(args=(peaked, 1.0, None, 0.5), name="a most likely token above p=0.5: only it is kept",
               name_ja="最も確からしいトークンだけで p=0.5 を超える: それだけが残る")
    yield Case(args=(torch.randn(3, 12, generator=g) * 3, 1.5, 5, 0.8),
               name="a batch of 3 rows, temperature 1.5, top_k=5 and top_p=0.8 together",
               name_ja="3 行のバッチ、温度 1.5、top_k=5 と top_p=0.8 を同時に")
    yield Case(args=(torch.randn(2, 1000, generator=g) * 2, 0.8, 50, 0.95),
               name="a vocabulary of 1000, temperature 0.8, top_k=50, top_p=0.95",
               name_ja="語彙 1000、温度 0.8、top_k=50、top_p=0.95")
    yield Case(args=(torch.randn(8, generator=g, dtype=torch.float64) * 2, 1.0, 4, 0.7), name="float64 logits",
               name_ja="float64 のロジット")


# ----------------------------------------------------------------------------- gradient accumulation
def _drive_accumulation(fn, case: Case):
    """A small GPT with stale gradients in .grad (as after the previous step); fn(model, x, y, micro_batches) must
    leave the gradient of the whole batch's mean loss there. Returns {name: .grad}."""
    cfg, x, y, n = case.args
    torch.manual_seed(0)
    m = model.GPT(cfg)
    _, stale = m(torch.zeros_like(x[:1]), torch.zeros_like(y[:1]))
    stale.backward()
    fn(m, x, y, n)
    return {name: None if p.grad is None else p.grad.detach().clone() for name, p in m.named_parameters()}


def _split(x, y, n):
    return list(zip(x.tensor_split(n), y.tensor_split(n)))


def accum_unscaled(m, x, y, n):
    """Calls backward on each micro-batch's loss as it is: the gradients add up to n times the big batch's.
    ja: マイクロバッチごとの損失をそのまま backward しているので、勾配が大きなバッチの n 倍に足し合わされます。"""
    m.zero_grad(set_to_none=True)
    for xs, ys in _split(x, y, n):
        m(xs, ys)[1].backward()


def accum_divides_by_n(m, x, y, n):
    """Divides every micro-batch's loss by n: right only when all micro-batches have the same size.
    ja: どのマイクロバッチの損失も n で割っているので、マイクロバッチの大きさがすべて同じときしか正しくありません。"""
    m.zero_grad(set_to_none=True)
    for xs, ys in _split(x, y, n):
        (m(xs, ys)[1] / n).backward()


def accum_zero_grad_inside(m, x, y, n):
    """Clears the gradients inside the loop: only the last micro-batch's gradient is left.
    ja: ループの中で勾配を消しているので、最後のマイクロバッチの勾配しか残りません。"""
    B = x.shape[0]
    for xs, ys in _split(x, y, n):
        m.zero_grad(set_to_none=True)
        (m(xs, ys)[1] * (xs.shape[0] / B)).backward()


def accum_no_zero_grad(m, x, y, n):
    """Never clears the gradients: the previous step's are added in.
    ja: 勾配を一度も消していないので、前のステップの勾配が足し込まれます。"""
    B = x.shape[0]
    for xs, ys in _split(x, y, n):
        (m(xs, ys)[1] * (xs.shape[0] / B)).backward()


def accum_splits_positions(m, x, y, n):
    """Splits along the positions (dim 1) instead of the batch: each piece loses the context before it.
    ja: バッチではなく位置 (dim 1) で分割しているので、各断片がそれより前の文脈を失います。"""
    m.zero_grad(set_to_none=True)
    T = x.shape[1]
    for xs, ys in zip(x.tensor_split(n, dim=1), y.tensor_split(n, dim=1)):
        (m(xs, ys)[1] * (xs.shape[1] / T)).backward()


def accum_first_micro_batch_only(m, x, y, n):
    """Uses only the first micro-batch (a break or return in the loop).
    ja: 最初のマイクロバッチしか使っていません (ループ内の break や return)。"""
    m.zero_grad(set_to_none=True)
    xs, ys = _split(x, y, n)[0]
    m(xs, ys)[1].backward()


def accum_divides_by_micro_size(m, x, y, n):
    """Divides each micro-batch's loss by its number of sequences: the loss is already a mean.
    ja: 各マイクロバッチの損失をその系列数で割っていますが、損失はすでに平均です。"""
    m.zero_grad(set_to_none=True)
    for xs, ys in _split(x, y, n):
        (m(xs, ys)[1] / xs.shape[0]).backward()


def accum_summed_tokens(m, x, y, n):
    """Sums the per-token losses of every micro-batch and divides by all of the batch's tokens."""
    m.zero_grad(set_to_none=True)
    total = y.numel()
    for xs, ys in _split(x, y, n):
        logits, _ = m(xs)
        (F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="sum") / total).backward()


def accum_one_backward(m, x, y, n):
    """Weights the micro-batch losses by their sizes, adds them up, and calls backward once at the end."""
    for p in m.parameters():
        p.grad = None
    B = x.shape[0]
    total = sum(m(xs, ys)[1] * xs.shape[0] for xs, ys in _split(x, y, n)) / B
    total.backward()


@exercise("ch01.accumulate_gradients", reference=_optim.accumulate_gradients, run=_drive_accumulation, grad=False,
          uses_device=False, rtol=1e-4, atol=1e-6,
          wrong=[accum_unscaled, accum_divides_by_n, accum_zero_grad_inside, accum_no_zero_grad,
                 accum_splits_positions, accum_first_micro_batch_only, accum_divides_by_micro_size],
          correct=[accum_summed_tokens, accum_one_backward],
          covers="2, 3 and 4 micro-batches of equal size, micro-batches of unequal size (5 sequences in 2), one sequence "
                 "per micro-batch, 1 micro-batch (the plain step), stale gradients from the step before, every weight's gradient",
          hint="clear .grad once, then for each piece of the batch (x.tensor_split(n)): loss * (len(piece) / B), backward; "
               "the pieces' gradients add up to the big batch's.",
          hint_ja="最初に .grad を一度だけ消し、バッチの各断片 (x.tensor_split(n)) について loss * (断片の長さ / B) を backward します。"
                  "断片の勾配の和が大きなバッチの勾配になります。")
def _accumulation_cases():
    g = torch.Generator().manual_seed(31)
    cfg = GPTConfig(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=16)

    def batch(B, T=8):
        return torch.randint(0, 30, (B, T), generator=g), torch.randint(0, 30, (B, T), generator=g)

    for B, n, what, what_ja in [(4, 2, "4 sequences in 2 micro-batches", "4 系列を 2 つのマイクロバッチに"),
                                (6, 3, "6 sequences in 3 micro-batches", "6 系列を 3 つのマイクロバッチに"),
                                (5, 2, "5 sequences in 2 micro-batches of 3 and 2 (unequal sizes)",
                                 "5 系列を 3 と 2 のマイクロバッチに (大きさが違う)"),
                                (3, 3, "one sequence per micro-batch", "マイクロバッチあたり 1 系列"),
                                (4, 1, "a single micro-batch (the plain step)", "マイクロバッチ 1 つ (普通のステップ)"),
                                (7, 4, "7 sequences in 4 micro-batches of 2, 2, 2 and 1",
                                 "7 系列を 2、2、2、1 の 4 つのマイクロバッチに")]:
        x, y = batch(B)
        yield Case(args=(cfg, x, y, n), name=f"{what}, stale gradients in .grad", name_ja=f"{what_ja}、.grad に前の勾配あり")
