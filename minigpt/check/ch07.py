"""Chapter 07 (attention scaling): scaled scores, soft-capping, attention entropy, and an attention
module with the three kinds of logits (standard, QK-norm, soft-capped).

The references are minigpt.attention's own functions and module. The notebook's attention module
takes `(x, cos=None, sin=None)` (no KV cache); a thin adapter gives the package's module that
interface.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import attention
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig
from minigpt.rope import RotaryEmbedding, apply_rope


# ----------------------------------------------------------------------------- scaled scores
def scores_without_scale(q, k):
    """q @ k^T without dividing by sqrt(head_dim): the logits grow with the width of a head.
    ja: q @ k^T を sqrt(head_dim) で割っていません。ロジットがヘッドの幅とともに大きくなります。"""
    return q @ k.transpose(-2, -1)


def scores_divided_by_head_dim(q, k):
    """Divides by head_dim instead of its square root.
    ja: head_dim の平方根ではなく head_dim そのもので割っています。"""
    return (q @ k.transpose(-2, -1)) / q.shape[-1]


def scores_scaled_by_sequence_length(q, k):
    """sqrt of the number of positions instead of the width of a head.
    ja: ヘッドの幅ではなく位置の数の平方根で割っています。"""
    return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-2])


def scores_keys_times_queries(q, k):
    """k q^T: the right shape when T == S, but row i now belongs to key i.
    ja: k q^T: T == S なら形状は合いますが、行 i がキー i のものになります。"""
    return (k @ q.transpose(-2, -1)) / math.sqrt(q.shape[-1])


def scores_multiplied_by_sqrt(q, k):
    """Multiplies by sqrt(head_dim) instead of dividing.
    ja: sqrt(head_dim) で割らずに掛けています。"""
    return (q @ k.transpose(-2, -1)) * math.sqrt(q.shape[-1])


def scores_in_place(q, k):
    """Scales q in place first (q.div_(...)), to divide the smaller matrix: the caller's q changes.
    ja: 小さい方の行列を割るつもりで、先に q をインプレースでスケールしています (q.div_(...))。呼び出し側の q が変わります。"""
    q.div_(math.sqrt(q.shape[-1]))
    return q @ k.transpose(-2, -1)


def scores_scaled_by_model_width(q, k):
    """sqrt(n_head * head_dim), the model's width, instead of the width of one head.
    ja: 1 つのヘッドの幅ではなく、モデルの幅 sqrt(n_head * head_dim) で割っています。"""
    return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[1] * q.shape[-1])


def scores_integer_sqrt(q, k):
    """int(math.sqrt(head_dim)): right for 16 and 64, wrong for head_dim 12 (3 instead of 3.46).
    ja: int(math.sqrt(head_dim)): 16 や 64 では正しいのですが、head_dim 12 では誤りです (3.46 ではなく 3)。"""
    return (q @ k.transpose(-2, -1)) / int(math.sqrt(q.shape[-1]))


def scores_in_float32(q, k):
    """Computes in float32 for accuracy and returns float32: bfloat16 q and k give float32 scores.
    ja: 精度のため float32 で計算して float32 で返しています。bfloat16 の q と k から float32 のスコアが返ります。"""
    return (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])


@torch.no_grad()
def scores_without_grad(q, k):
    """Under @torch.no_grad(): the right scores, but no gradient reaches q and k.
    ja: @torch.no_grad() の下で計算しています。スコアは正しいのですが、q と k に勾配が届きません。"""
    return (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])


def scores_by_einsum(q, k):
    """Correct: einsum over the head dimension, times head_dim ** -0.5."""
    return torch.einsum("bhtd,bhsd->bhts", q, k) * q.shape[-1] ** -0.5


def scores_scale_q_first(q, k):
    """Correct: scale q (out of place), then multiply by k^T (k.mT)."""
    return (q / math.sqrt(q.shape[-1])) @ k.mT


def scores_in_float64(q, k):
    """Correct: float64 inside, cast back to q's dtype."""
    return ((q.double() @ k.double().transpose(-2, -1)) / math.sqrt(q.shape[-1])).to(q.dtype)


@exercise("ch07.attention_scores", reference=attention.attention_scores,
          wrong=[scores_without_scale, scores_divided_by_head_dim, scores_scaled_by_sequence_length,
                 scores_keys_times_queries, scores_multiplied_by_sqrt, scores_in_place, scores_scaled_by_model_width,
                 scores_integer_sqrt, scores_in_float32, scores_without_grad],
          correct=[scores_by_einsum, scores_scale_q_first, scores_in_float64], dtypes=("bf16", "fp16"),
          covers="one and several heads, T != S (queries after a cache), head_dim 8, 12 (not a square), 16, 32, "
                 "float64, bfloat16 and float16, gradients of q and k, q and k left unchanged",
          hint="q @ k.transpose(-2, -1) gives (B, nh, T, S); divide by sqrt(head_dim), the LAST dimension "
               "of q (not the number of positions).",
          hint_ja="q @ k.transpose(-2, -1) で形状 (B, nh, T, S) になります。q の最後の次元 head_dim の平方根で割ります "
                  "(位置の数やモデル幅ではありません)。q と k は書き換えないこと。")
def _scores_cases():
    g = torch.Generator().manual_seed(70)
    for q_shape, S in [((1, 1, 5, 8), 5), ((2, 3, 6, 16), 6), ((2, 2, 3, 32), 9)]:
        B, nh, T, hd = q_shape
        q, k = torch.randn(*q_shape, generator=g), torch.randn(B, nh, S, hd, generator=g)
        yield Case(args=(q, k), name=f"q of shape {q_shape}, k of shape {(B, nh, S, hd)}",
                                name_ja=f"形状 {q_shape} の q、形状 {(B, nh, S, hd)} の k")
    q, k = (torch.randn(1, 2, 4, 12, generator=g, dtype=torch.float64) * 3 for _ in range(2))
    yield Case(args=(q, k), name="float64 q and k of shape (1, 2, 4, 12), head_dim 12 (not a square)",
                            name_ja="形状 (1, 2, 4, 12) の float64 の q と k、head_dim 12 (平方数ではない)")


# ----------------------------------------------------------------------------- soft-capping
def cap_by_clamping(logits, cap):
    """A hard clip: the same range, but no gradient beyond the cap and a kink at +-cap.
    ja: ハードクリップです。範囲は同じですが、cap を超えると勾配がなく、±cap で折れ曲がります。"""
    return logits.clamp(-cap, cap)


def cap_tanh_without_dividing(logits, cap):
    """cap * tanh(logits): forgets to divide by cap inside, so every logit above ~2 is squashed to cap.
    ja: cap * tanh(logits): 内側で cap で割り忘れています。約 2 を超えるロジットはすべて cap に潰れます。"""
    return cap * torch.tanh(logits)


def cap_tanh_without_multiplying(logits, cap):
    """tanh(logits / cap): forgets to multiply by cap, so every logit ends up in (-1, 1).
    ja: tanh(logits / cap): cap を掛け忘れています。すべてのロジットが (-1, 1) に収まってしまいます。"""
    return torch.tanh(logits / cap)


def cap_rational(logits, cap):
    """Another soft cap (x / (1 + |x|/c)): bounded by c too, but not Gemma 2's.
    ja: 別のソフトキャップ (x / (1 + |x|/c)) です。c で抑えられますが、Gemma 2 のものではありません。"""
    return logits / (1 + logits.abs() / cap)


def cap_in_place(logits, cap):
    """logits.div_(cap).tanh_().mul_(cap): the right values, written into the caller's logits.
    ja: logits.div_(cap).tanh_().mul_(cap): 値は正しいのですが、呼び出し側のロジットに書き込んでいます。"""
    return logits.div_(cap).tanh_().mul_(cap)


def cap_fixed_at_gemma_value(logits, cap):
    """Uses Gemma 2's attention cap 50.0 instead of the cap it is given.
    ja: 渡された cap ではなく、Gemma 2 のアテンションの cap 50.0 を使っています。"""
    return 50.0 * torch.tanh(logits / 50.0)


def cap_tanh_from_sigmoid_without_2(logits, cap):
    """tanh(z) = 2 sigmoid(2z) - 1 with the inner 2 forgotten: cap * (2 sigmoid(z) - 1) = cap * tanh(z / 2).
    ja: tanh(z) = 2 sigmoid(2z) - 1 の内側の 2 を忘れています: cap * (2 sigmoid(z) - 1) = cap * tanh(z / 2)。"""
    return cap * (2 * torch.sigmoid(logits / cap) - 1)


def cap_tanh_written_with_exp(logits, cap):
    """tanh written out as (e^2z - 1) / (e^2z + 1): e^2z overflows to inf for z > 44, and inf / inf = NaN.
    ja: tanh を (e^2z - 1) / (e^2z + 1) と書き下しています。z > 44 で e^2z が inf にオーバーフローし、inf / inf = NaN になります。"""
    e = torch.exp(2 * logits / cap)
    return cap * (e - 1) / (e + 1)


def cap_in_float32(logits, cap):
    """Computes tanh in float32 and returns float32: bfloat16 logits come back float32.
    ja: tanh を float32 で計算して float32 で返しています。bfloat16 のロジットが float32 で返ってきます。"""
    return cap * torch.tanh(logits.float() / cap)


def cap_by_multiplying_inverse(logits, cap):
    """Correct: multiply by 1 / cap instead of dividing."""
    inv = 1.0 / cap
    return torch.tanh(logits * inv) * cap


def cap_from_sigmoid(logits, cap):
    """tanh(z) written as 2 sigmoid(2z) - 1: right in float32, but in bfloat16 the subtraction cancels and
    small logits come out 0.
    ja: tanh(z) を 2 sigmoid(2z) - 1 と書いています。float32 では正しいのですが、bfloat16 では引き算で桁落ちし、小さなロジットが 0 になります。"""
    return cap * (2 * torch.sigmoid(2 * logits / cap) - 1)


def cap_in_float32_then_cast(logits, cap):
    """Correct: tanh in float32, cast back to the logits' dtype."""
    return (cap * torch.tanh(logits.float() / cap)).to(logits.dtype)


def cap_in_float64(logits, cap):
    """Correct: float64 inside, cast back."""
    return (cap * torch.tanh(logits.double() / cap)).to(logits.dtype)


@exercise("ch07.soft_cap", reference=attention.soft_cap,
          wrong=[cap_by_clamping, cap_tanh_without_dividing, cap_tanh_without_multiplying, cap_rational,
                 cap_in_place, cap_fixed_at_gemma_value, cap_tanh_from_sigmoid_without_2, cap_tanh_written_with_exp,
                 cap_in_float32, cap_from_sigmoid],
          correct=[cap_by_multiplying_inverse, cap_in_float32_then_cast, cap_in_float64], dtypes=("bf16", "fp16"),
          covers="logits far beyond the cap (up to 1000 with cap 5), small logits, caps 5, 10 and 50, float64, "
                 "bfloat16 and float16, gradients, logits left unchanged",
          hint="cap * tanh(logits / cap): divide first so small logits pass almost unchanged, multiply "
               "after so the result stays within (-cap, cap).",
          hint_ja="cap * tanh(logits / cap)。先に cap で割るので小さなロジットはほぼそのまま通り、後で cap を掛けるので"
                  "結果は (-cap, cap) に収まります。torch.tanh を使い、ロジットは書き換えないこと。")
def _soft_cap_cases():
    g = torch.Generator().manual_seed(71)
    yield Case(args=(torch.randn(2, 3, 5, 5, generator=g) * 30, 10.0), name="logits of std 30, cap 10",
                                                                       name_ja="標準偏差 30 のロジット、cap 10")
    yield Case(args=(torch.randn(4, 6, generator=g) * 0.5, 50.0), name="small logits (std 0.5), cap 50",
                                                                  name_ja="小さなロジット (標準偏差 0.5)、cap 50")
    yield Case(args=(torch.linspace(-200, 200, 41, dtype=torch.float64), 50.0),
               name="float64 logits from -200 to 200, cap 50", name_ja="-200 から 200 までの float64 のロジット、cap 50")
    yield Case(args=(torch.linspace(-1000, 1000, 21), 5.0), name="logits from -1000 to 1000, cap 5",
                                                            name_ja="-1000 から 1000 までのロジット、cap 5")


# ----------------------------------------------------------------------------- attention entropy
def entropy_in_bits(p):
    """log2 instead of the natural log: bits, not nats (1 / ln 2 = 1.44 times too large).
    ja: 自然対数ではなく log2 を使っています。nat ではなくビットで、1 / ln 2 = 1.44 倍大きくなります。"""
    return -(p * torch.log2(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 2))


def entropy_without_guarding_zeros(p):
    """0 * log 0 = 0 * -inf = NaN: the masked keys of a causal row poison the sum.
    ja: 0 * log 0 = 0 * -inf = NaN: 因果マスクでマスクされたキーが和を壊します。"""
    return -(p * torch.log(p)).sum(-1).mean(dim=(0, 2))


def entropy_summed_over_queries(p):
    """Sums over the queries instead of averaging: grows with T.
    ja: クエリで平均せずに和をとっています。T とともに大きくなります。"""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).sum(dim=2).mean(dim=0)


def entropy_over_queries(p):
    """Sums over the queries (dim -2) instead of the keys: a column of the attention matrix is no distribution.
    ja: キーではなくクエリ (次元 -2) で和をとっています。アテンション行列の列は確率分布ではありません。"""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-2).mean(dim=(0, 2))


def entropy_averaged_over_heads(p):
    """Averages over the heads too and repeats that one number for every head.
    ja: ヘッドでも平均し、その 1 つの値を全ヘッドに繰り返しています。"""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 2)).mean().expand(p.shape[1]).clone()


def entropy_in_place(p):
    """p.clamp_min_(1e-30) to guard the zeros: the caller's attention probabilities change.
    ja: 0 を避けるため p.clamp_min_(1e-30) としています。呼び出し側のアテンション確率が変わります。"""
    return -(p * torch.log(p.clamp_min_(1e-30))).sum(-1).mean(dim=(0, 2))


def entropy_mean_over_keys(p):
    """The mean over the keys instead of the sum: divided by the number of keys S.
    ja: キーで和ではなく平均をとっています。キーの数 S で割った値になります。"""
    return -(p * torch.log(p.clamp_min(1e-30))).mean(-1).mean(dim=(0, 2))


def entropy_of_every_query(p):
    """Returns the (B, n_head, T) entropies of every query without averaging them.
    ja: 各クエリのエントロピー (B, n_head, T) を平均せずに返しています。"""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def entropy_per_position(p):
    """Averages over the batch and the heads (dims 0 and 1): one number per query position, not per head.
    ja: バッチとヘッド (次元 0 と 1) で平均しています。ヘッドごとではなくクエリの位置ごとの値になります。"""
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 1))


def entropy_in_float32(p):
    """p.float() first, "to be safe": float64 probabilities give a float32 entropy.
    ja: 「念のため」最初に p.float() としています。float64 の確率から float32 のエントロピーが返ります。"""
    p = p.float()
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean(dim=(0, 2))


def entropy_with_xlogy(p):
    """Correct: torch.xlogy(p, p) is 0 where p is 0."""
    return -torch.xlogy(p, p).sum(-1).mean(dim=(0, 2))


def entropy_with_entr(p):
    """Correct: torch.special.entr(p) = -p ln p (0 at p = 0), summed over keys, averaged over batch and queries."""
    h = torch.special.entr(p).sum(-1)  # (B, nh, T)
    return h.mean(dim=0).mean(dim=-1)


def entropy_masked_by_where(p):
    """Correct: p ln p only where p > 0, by torch.where."""
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return -(torch.where(p > 0, p * torch.log(safe), torch.zeros_like(p))).sum(-1).mean(dim=(0, 2))


def _causal_probs(B, nh, T, S, scale, g, dtype=torch.float32):
    logits = torch.randn(B, nh, T, S, generator=g, dtype=dtype) * scale
    logits = logits.masked_fill(~attention.causal_mask(T, S), float("-inf"))
    return torch.softmax(logits, dim=-1)


@exercise("ch07.attention_entropy", reference=attention.attention_entropy,
          wrong=[entropy_in_bits, entropy_without_guarding_zeros, entropy_summed_over_queries,
                 entropy_over_queries, entropy_averaged_over_heads, entropy_in_place, entropy_mean_over_keys,
                 entropy_of_every_query, entropy_per_position, entropy_in_float32],
          correct=[entropy_with_xlogy, entropy_with_entr, entropy_masked_by_where],
          grad=False,  # a diagnostic, never backpropagated (and -p ln p has no gradient at p = 0)
          covers="causal rows with exact zeros, peaked rows, 3 queries over 7 keys (T != S), one-hot rows (entropy "
                 "0), uniform rows over 64 keys (ln 64), float64, p left unchanged",
          hint="H = -sum over keys (the last dimension) of p * ln p, with 0 * ln 0 = 0 (torch.xlogy or a "
               "clamp); then the mean over the batch and the queries (dims 0 and 2): one number per head.",
          hint_ja="H = -Σ_キー p ln p (最後の次元で和をとる)。0 * ln 0 = 0 とします (torch.xlogy か clamp)。"
                  "そのあとバッチとクエリ (次元 0 と 2) で平均し、ヘッドごとに 1 つの値 (形状 (n_head,)) を返します。"
                  "p は書き換えないこと。")
def _entropy_cases():
    g = torch.Generator().manual_seed(72)
    yield Case(args=(_causal_probs(1, 2, 5, 5, 1.0, g),), name="causal attention, (B, nh, T, S) = (1, 2, 5, 5)",
                                                          name_ja="因果的なアテンション、(B, nh, T, S) = (1, 2, 5, 5)")
    yield Case(args=(_causal_probs(2, 4, 8, 8, 5.0, g),),
               name="peaked causal attention (logits of std 5), (2, 4, 8, 8)",
               name_ja="鋭い因果的なアテンション (ロジットの標準偏差 5)、(2, 4, 8, 8)")
    yield Case(args=(_causal_probs(2, 3, 3, 7, 1.0, g, torch.float64),),
               name="float64, 3 new queries over 7 keys (a KV cache), (2, 3, 3, 7)",
               name_ja="float64、7 個のキーに対する 3 個の新しいクエリ (KV キャッシュ)、(2, 3, 3, 7)")
    one_hot = torch.zeros(1, 2, 4, 4)
    one_hot[..., 0] = 1.0
    yield Case(args=(one_hot,), name="every query attends to key 0 only: entropy 0",
                                name_ja="どのクエリもキー 0 だけに注目: エントロピー 0")
    yield Case(args=(torch.full((2, 3, 3, 64), 1 / 64),), name="uniform over 64 keys: entropy ln 64, (2, 3, 3, 64)",
                                                          name_ja="64 個のキーに一様: エントロピー ln 64、(2, 3, 3, 64)")


# ----------------------------------------------------------------------------- the attention module
class CausalSelfAttention(attention.CausalSelfAttention):
    """The package's attention module (record_stats off, no cache), called as in the notebook. The RoPE
    tables are constants: gradients are compared for x and the weights only."""

    def forward(self, x, cos=None, sin=None):
        if cos is not None:
            cos, sin = cos.detach(), sin.detach()
        return super().forward(x, cos, sin)


class _AttentionParts(CausalSelfAttention):
    def _qkv(self, x):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))

    def _normed_rotated_qkv(self, x, cos, sin):
        """q, k, v with QK-norm (if on) before RoPE (if on): the part these wrong versions get right."""
        q, k, v = self._qkv(x)
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q, k, v

    def _finish(self, att, v, B, T, C):
        att = torch.softmax(att, dim=-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(B, T, C))


class AttentionCapAfterMask(_AttentionParts):
    """Soft-caps after the mask: tanh(-inf) = -1, so the future gets logit -cap instead of -inf.
    ja: マスクの後にソフトキャップしています。tanh(-inf) = -1 なので、未来のロジットが -inf ではなく -cap になります。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = attention.attention_scores(q, k).masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        return self._finish(att, v, B, T, C)


class AttentionCapBeforeScale(_AttentionParts):
    """Caps the raw dot products, then divides by sqrt(head_dim): the cap is effectively cap/sqrt(hd).
    ja: 生の内積をキャップしてから sqrt(head_dim) で割っています。実質的なキャップが cap/sqrt(hd) になります。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = q @ k.transpose(-2, -1)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = (att / math.sqrt(self.head_dim)).masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormWithoutScale(_AttentionParts):
    """Drops 1/sqrt(head_dim) with QK-norm, as if the norm replaced it (Qwen3 keeps both).
    ja: QK-norm があるとき 1/sqrt(head_dim) を省いています。正規化がスケールの代わりになるわけではありません (Qwen3 は両方使います)。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = q @ k.transpose(-2, -1)
        if self.logits != "qk_norm":
            att = att / math.sqrt(self.head_dim)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormAfterRope(_AttentionParts):
    """Normalises after RoPE: the per-channel gains then act on rotated channels (Qwen3: norm, then RoPE).
    ja: RoPE の後に正規化しています。チャネルごとのゲインが回転後のチャネルに掛かります (Qwen3 は正規化してから RoPE)。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormL2(_AttentionParts):
    """Divides q and k by their length (cosine similarity) instead of their RMS: sqrt(head_dim) times smaller.
    ja: q と k を RMS ではなく長さで割っています (コサイン類似度)。sqrt(head_dim) 倍小さくなります。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if self.logits == "qk_norm":
            q = F.normalize(q, dim=-1) * self.q_norm.weight
            k = F.normalize(k, dim=-1) * self.k_norm.weight
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionRebuildsRope(_AttentionParts):
    """Ignores the cos and sin it is given and builds its own table for positions 0..T-1: wrong for any other
    start (a cache), base or scaled table.
    ja: 渡された cos と sin を無視し、位置 0..T-1・底 10000 のテーブルを自分で作っています。キャッシュの後、別の底、スケールされた (YaRN) テーブルでは誤りです。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        if cos is not None:
            cos, sin = RotaryEmbedding(self.head_dim, max_len=T)(0, T, device=x.device)
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionCapByClamping(_AttentionParts):
    """Caps with clamp(-cap, cap) instead of cap * tanh(scores / cap).
    ja: cap * tanh(scores / cap) ではなく clamp(-cap, cap) でキャップしています。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = att.clamp(-self.softcap, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionMaskOffByOne(_AttentionParts):
    """tril(diagonal=1): every position also sees the next one (the token it must predict).
    ja: tril(diagonal=1): 各位置が次の位置 (予測すべきトークン) まで見えてしまいます。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._normed_rotated_qkv(x, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril(diagonal=1)
        return self._finish(att.masked_fill(~mask, float("-inf")), v, B, T, C)


class AttentionQKNormOverWholeWidth(_AttentionParts):
    """Normalises q and k over the whole projection (all heads together, OLMo 2's choice) instead of per head.
    ja: q と k をヘッドごとではなく射影全体 (全ヘッドまとめて、OLMo 2 の方式) で正規化しています。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.logits == "qk_norm":
            eps = self.q_norm.eps
            q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + eps)
            k = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + eps)
        split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        if self.logits == "qk_norm":
            q, k = q * self.q_norm.weight, k * self.k_norm.weight
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionHeadsWithoutTranspose(_AttentionParts):
    """view(B, n_head, T, head_dim) straight from (B, T, C), without the transpose: heads and positions mixed.
    ja: (B, T, C) から transpose なしで直接 reshape(B, n_head, T, head_dim) しています。ヘッドと位置が混ざります。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        split = lambda t: t.reshape(B, self.n_head, T, self.head_dim)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionRopeWithoutGrad(_AttentionParts):
    """Applies RoPE inside torch.no_grad() ("positions are not learned"): q_proj and k_proj get no gradient.
    ja: 「位置は学習しない」として torch.no_grad() の中で q と k を回転しています。q_proj と k_proj に勾配が届きません。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        with torch.no_grad():
            if cos is not None:
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionQKNormOnQueriesOnly(_AttentionParts):
    """Normalises q with q_norm but forgets k_norm for the keys.
    ja: q には q_norm を掛けていますが、キーの k_norm を忘れています。"""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        if self.logits == "qk_norm":
            q = self.q_norm(q)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        att = attention.attention_scores(q, k)
        if self.logits == "softcap":
            att = attention.soft_cap(att, self.softcap)
        att = att.masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._finish(att, v, B, T, C)


class AttentionWithSDPA(CausalSelfAttention):
    """Correct: F.scaled_dot_product_attention where it can (it cannot soft-cap), written out otherwise."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q, k, v = (p(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        if self.logits == "qk_norm":
            q, k = self.q_norm(q), self.k_norm(k)
        if cos is not None:
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.logits == "softcap":
            s = self.softcap * torch.tanh((q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim) / self.softcap)
            s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            y = torch.softmax(s, dim=-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class AttentionWrittenOut(CausalSelfAttention):
    """Correct: einsums, q scaled before the product, an explicit softmax (exp of score - max, normalised)."""

    def forward(self, x, cos=None, sin=None):
        B, T, C = x.shape
        q = torch.einsum("btc,oc->bto", x, self.q_proj.weight).reshape(B, T, self.n_head, self.head_dim)
        k = torch.einsum("btc,oc->bto", x, self.k_proj.weight).reshape(B, T, self.n_head, self.head_dim)
        v = torch.einsum("btc,oc->bto", x, self.v_proj.weight).reshape(B, T, self.n_head, self.head_dim)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        if self.logits == "qk_norm":
            q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + self.q_norm.eps) * self.q_norm.weight
            k = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + self.k_norm.eps) * self.k_norm.weight
        if cos is not None:
            half = self.head_dim // 2
            rot = lambda t: torch.cat((-t[..., half:], t[..., :half]), -1)  # noqa: E731
            q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        s = torch.einsum("bhtd,bhsd->bhts", q * self.head_dim ** -0.5, k)
        if self.logits == "softcap":
            s = self.softcap * torch.tanh(s / self.softcap)
        future = torch.arange(T, device=x.device)[None, :] > torch.arange(T, device=x.device)[:, None]
        s = s.masked_fill(future, float("-inf"))
        e = torch.exp(s - s.amax(-1, keepdim=True))
        y = torch.einsum("bhts,bhsd->bhtd", e / e.sum(-1, keepdim=True), v)
        return torch.einsum("btc,oc->bto", y.permute(0, 2, 1, 3).reshape(B, T, C), self.o_proj.weight)


def _attn_cfg(logits: str, n_embd: int, n_head: int, **kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=16, n_layer=1, n_head=n_head, n_embd=n_embd, bias=False,
                norm="rmsnorm", mlp="swiglu", attn_logits=logits, softcap=2.0)
    return GPTConfig(**{**base, **kw})


@exercise("ch07.CausalSelfAttention", reference=CausalSelfAttention, kind="module",
          also_reference=(attention.CausalSelfAttention,),
          wrong=[AttentionCapAfterMask, AttentionCapBeforeScale, AttentionQKNormWithoutScale,
                 AttentionQKNormAfterRope, AttentionQKNormL2, AttentionRebuildsRope, AttentionCapByClamping,
                 AttentionMaskOffByOne, AttentionQKNormOverWholeWidth, AttentionHeadsWithoutTranspose,
                 AttentionRopeWithoutGrad, AttentionQKNormOnQueriesOnly],
          correct=[AttentionWithSDPA, AttentionWrittenOut],
          covers="the three logits (standard, qk_norm, softcap 2.0), with and without RoPE, RoPE tables that start "
                 "at position 5 and are scaled by 1.2 (YaRN), 3 and 4 heads, inputs of std 3, gradients of x and "
                 "every weight (q_norm and k_norm gains perturbed), x left unchanged",
          hint="q, k, v (B, nh, T, hd); qk_norm: q_norm(q), k_norm(k) BEFORE RoPE; scores = q.k / sqrt(hd) "
               "(also with qk_norm); softcap: cap * tanh(scores / cap) BEFORE the causal mask; mask, softmax, @ v, "
               "merge the heads, o_proj.",
          hint_ja="q, k, v は (B, nh, T, hd)。qk_norm では RoPE の前に q_norm(q), k_norm(k) をヘッドごとに適用し、"
                  "スコアは q・k / sqrt(hd) (qk_norm でもスケールは残します)。softcap では因果マスクの前に "
                  "cap * tanh(scores / cap)。cos と sin は渡されたものを使い、マスク、softmax、@ v、ヘッドを結合して o_proj。")
def _attention_module_cases():
    g = torch.Generator().manual_seed(73)
    for logits in ("standard", "qk_norm", "softcap"):
        for n_embd, n_head, T, rope in [(32, 4, 7, False), (48, 3, 9, True)]:
            cfg = _attn_cfg(logits, n_embd, n_head, pos="rope" if rope else "learned")
            x = torch.randn(2, T, n_embd, generator=g) * 3
            args = (x,)
            if rope:
                cos, sin = RotaryEmbedding(cfg.head_dim, max_len=16)(0, T)
                args = (x, cos, sin)
            cap = " (softcap=2.0)" if logits == "softcap" else ""
            yield Case(init=(cfg,), args=args,
                       name=f"attn_logits={logits!r}{cap}, n_embd={n_embd}, n_head={n_head}, "
                            f"x of shape (2, {T}, {n_embd}){', with RoPE cos/sin' if rope else ''}",
                       name_ja=f"attn_logits={logits!r}{cap}、n_embd={n_embd}、n_head={n_head}、"
                               f"形状 (2, {T}, {n_embd}) の x{'、RoPE の cos/sin あり' if rope else ''}")
    for logits in ("standard", "qk_norm"):
        cfg = _attn_cfg(logits, 32, 4, pos="rope")
        cos, sin = RotaryEmbedding(cfg.head_dim, max_len=16)(5, 6)
        yield Case(init=(cfg,), args=(torch.randn(1, 6, 32, generator=g) * 3, cos * 1.2, sin * 1.2),
                   name=f"attn_logits={logits!r}, n_embd=32, n_head=4, x of shape (1, 6, 32), RoPE tables for "
                        "positions 5..10 scaled by 1.2 (as YaRN does)",
                   name_ja=f"attn_logits={logits!r}、n_embd=32、n_head=4、形状 (1, 6, 32) の x、位置 5..10 の RoPE "
                           "テーブルを 1.2 倍 (YaRN と同じ)")
