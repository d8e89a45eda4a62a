"""Chapter 09 (the modern Japanese GPT): the config switches, attention with RoPE on q and k, and
the modern pre-norm block.

The references are minigpt's own code. `modern_config` must turn any GPT-2-style GPTConfig into its
modern twin: the switches are those that differ between the presets `gpt2` and `modern` (so the
gpt2 preset comes out as the modern preset). The attention and the block are the package's
`CausalSelfAttention` and `Block`, behind thin adapters with the notebook's interface
(`forward(x, cos, sin)`, the block returning x only).
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F

from minigpt import attention, model
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig, get_preset
from minigpt.i18n import tr
from minigpt.rope import RotaryEmbedding, apply_rope, apply_rope_interleaved


# ----------------------------------------------------------------------------- the config switches
def modern_switches() -> dict:
    """The fields that differ between the presets `gpt2` and `modern`, apart from the vocabulary
    (which follows the tokenizer): {'bias': False, 'mlp': 'swiglu', 'norm': 'rmsnorm', 'pos': 'rope'}."""
    gpt2, modern = get_preset("gpt2").to_dict(), get_preset("modern").to_dict()
    return {k: v for k, v in sorted(modern.items()) if v != gpt2[k] and k != "vocab_size"}


def reference_modern_config(base: GPTConfig) -> GPTConfig:
    """The modern twin of `base`: the same sizes and other settings, the modern switches flipped."""
    return base.replace(**modern_switches())


def _run_modern_config(fn, case: Case):
    """Call fn on a copy of the base config; report the result and whether the base was left alone."""
    base = copy.deepcopy(case.args[0])
    before = base.to_dict()
    out = fn(base)
    return {"config": out, "base_unchanged": base.to_dict() == before}


def _compare_configs(expected: dict, got: dict) -> str | None:
    out = got["config"]
    if not isinstance(out, GPTConfig):
        return tr("output: expected a GPTConfig, got a {t} ({o})", "出力: GPTConfig が必要ですが、{t} ({o}) でした",
                  t=type(out).__name__, o=repr(out)[:60])
    want, have = expected["config"].to_dict(), out.to_dict()
    diff = [tr("{k}: expected {w}, got {h}", "{k}: 期待 {w}、実際 {h}", k=k, w=repr(want[k]), h=repr(have[k]))
            for k in want if want[k] != have[k]]
    if diff:
        return tr("output: these fields differ from the reference:", "出力: 次のフィールドが参照実装と違います:") + \
            "\n    " + "\n    ".join(diff)
    if not got["base_unchanged"]:
        return tr("output: the fields are right, but your function changed the config it was given; return a new "
                  "one with base.replace(...) and leave base as it was (other code may still use it)",
                  "出力: フィールドは正しいのですが、渡された設定を書き換えています。base.replace(...) で新しい設定を"
                  "返し、base は元のままにしてください (ほかのコードがまだ使っているかもしれません)")
    return None


def modern_config_keeps_biases(base):
    """Flips norm, MLP and positions but keeps the biases (Llama has none).
    ja: norm、MLP、位置埋め込みは切り替えていますが、バイアスを残しています (Llama にはありません)。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope")


def modern_config_keeps_learned_positions(base):
    """Forgets RoPE: the learned absolute position embeddings stay.
    ja: RoPE を忘れています。学習される絶対位置埋め込みが残ります。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", bias=False)


def modern_config_from_defaults(base):
    """Builds a fresh GPTConfig with the switches: the sizes of `base` (layers, width...) are lost.
    ja: スイッチだけを指定して新しい GPTConfig を作っています。base の大きさ (層数、幅など) が失われます。"""
    return GPTConfig(vocab_size=base.vocab_size, norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)


def modern_config_keeps_gelu_width(base):
    """Sets SwiGLU's hidden size to GELU's 4 * n_embd: 1.5x the MLP parameters (chapter 06).
    ja: SwiGLU の隠れ層の大きさを GELU の 4 * n_embd にしています。MLP のパラメータが 1.5 倍になります (06 章)。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, mlp_hidden=4 * base.n_embd)


def modern_config_in_place(base):
    """Changes the config it was given instead of returning a new one.
    ja: 新しい設定を返さずに、渡された設定を書き換えています。"""
    base.norm, base.mlp, base.pos, base.bias = "rmsnorm", "swiglu", "rope", False
    return base


def modern_config_also_qk_norm(base):
    """Also turns on QK-norm ("modern" as in Qwen3): a switch the modern preset does not have.
    ja: QK-norm まで有効にしています (Qwen3 のような「モダン」)。modern プリセットにはないスイッチです。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, attn_logits="qk_norm")


def modern_config_llama3_eps(base):
    """Also sets norm_eps=1e-6 (Qwen2's and Qwen3's value): the epsilon must stay what the config says.
    ja: norm_eps=1e-6 (Qwen2・Qwen3 の値) まで設定しています。eps は設定に書かれた値のままにします。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, norm_eps=1e-6)


def modern_config_keeps_layernorm(base):
    """Forgets the norm: LayerNorm stays.
    ja: norm を忘れています。LayerNorm が残ります。"""
    return base.replace(mlp="swiglu", pos="rope", bias=False)


def modern_config_keeps_gelu(base):
    """Forgets the MLP: GELU stays.
    ja: MLP を忘れています。GELU が残ります。"""
    return base.replace(norm="rmsnorm", pos="rope", bias=False)


def modern_config_llama3_base(base):
    """Also sets rope_base=500000 (Llama 3's): the base is a separate choice, left as it was.
    ja: rope_base=500000 (Llama 3 の値) まで設定しています。底は別の選択で、元のままにします。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, rope_base=500000.0)


def modern_config_unties(base):
    """Also unties the embeddings (tie_weights=False, as Llama does): not one of the four switches.
    ja: 埋め込みの共有まで解除しています (Llama のように tie_weights=False)。4 つのスイッチには含まれません。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, tie_weights=False)


def modern_config_resets_mlp_hidden(base):
    """Also sets mlp_hidden=None "so that SwiGLU's size is recomputed": a hidden size the config chose is lost.
    ja: 「SwiGLU の大きさを計算し直す」ため mlp_hidden=None まで設定しています。設定で選ばれた隠れ層の大きさが失われます。"""
    return base.replace(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False, mlp_hidden=None)


def modern_config_from_dict(base):
    """Correct: a new GPTConfig from the old one's fields, four of them changed."""
    fields = base.to_dict()
    fields.update(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
    return GPTConfig(**fields)


def modern_config_by_dataclasses(base):
    """Correct: dataclasses.replace on a deep copy."""
    return dataclasses.replace(copy.deepcopy(base), bias=False, pos="rope", mlp="swiglu", norm="rmsnorm")


@exercise("ch09.modern_config", reference=reference_modern_config, uses_device=False,
          run=_run_modern_config, compare=_compare_configs,
          wrong=[modern_config_keeps_biases, modern_config_keeps_learned_positions, modern_config_from_defaults,
                 modern_config_keeps_gelu_width, modern_config_in_place, modern_config_also_qk_norm,
                 modern_config_llama3_eps, modern_config_keeps_layernorm, modern_config_keeps_gelu,
                 modern_config_llama3_base, modern_config_unties, modern_config_resets_mlp_hidden],
          correct=[modern_config_from_dict, modern_config_by_dataclasses],
          covers="the presets gpt2 and tiny, dropout, grouped-query attention and QK-norm already set, norm_eps "
                 "1e-6, a rope_base and tie_weights to keep, the given config left unchanged",
          hint="return base.replace(norm='rmsnorm', mlp='swiglu', pos='rope', bias=False): four switches, "
               "nothing else: mlp_hidden stays as it is (when it is None, SwiGLU's hidden size follows from "
               "n_embd).",
          hint_ja="base.replace(norm='rmsnorm', mlp='swiglu', pos='rope', bias=False) を返します。切り替えるのはこの 4 つ"
                  "だけで、ほかの値 (eps、rope_base、mlp_hidden など) はそのままにします (mlp_hidden が None なら、SwiGLU "
                  "の隠れ層の大きさは n_embd から決まります)。base 自体は変更しないこと。")
def _modern_config_cases():
    yield Case(args=(get_preset("gpt2", vocab_size=8000),),
               name="the preset gpt2 with vocab_size 8000: must give the preset modern",
               name_ja="vocab_size 8000 のプリセット gpt2: プリセット modern になるはずです")
    yield Case(args=(get_preset("tiny"),), name="the preset tiny (2 layers, n_embd 32)",
                                           name_ja="プリセット tiny (2 層、n_embd 32)")
    yield Case(args=(GPTConfig(vocab_size=4000, block_size=64, n_layer=2, n_head=4, n_embd=128, dropout=0.1),),
               name="vocab 4000, block_size 64, 2 layers, n_embd 128, dropout 0.1",
               name_ja="語彙 4000、block_size 64、2 層、n_embd 128、dropout 0.1")
    yield Case(args=(GPTConfig(vocab_size=32000, n_layer=3, n_head=8, n_embd=256, n_kv_head=2,
                               attn_logits="qk_norm", norm_eps=1e-6),),
               name="grouped-query attention and QK-norm already set: keep them",
               name_ja="grouped-query attention と QK-norm が設定済み: そのまま残します")
    yield Case(args=(GPTConfig(vocab_size=1000, n_layer=1, n_head=2, n_embd=64, rope_base=20000.0, tie_weights=True,
                               norm_eps=1e-5, mlp_hidden=96),),
               name="rope_base 20000, mlp_hidden 96, tied embeddings: keep them",
               name_ja="rope_base 20000、mlp_hidden 96、共有された埋め込み: そのまま残します")


# ----------------------------------------------------------------------------- attention with RoPE
class ModernAttention(attention.CausalSelfAttention):
    """The package's attention with RoPE (GPTConfig(pos='rope')), called as attn(x, cos, sin). The tables are
    constants: gradients are compared for x and the weights only."""

    def forward(self, x, cos, sin):
        return super().forward(x, cos.detach(), sin.detach())


class _AttentionParts(ModernAttention):
    def _heads(self, x):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))

    def _out(self, y):
        B, nh, T, hd = y.shape
        return self.o_proj(y.transpose(1, 2).reshape(B, T, nh * hd))


class AttentionRopeOnValuesToo(_AttentionParts):
    """Rotates v as well: positions leak into the values that are mixed, not only into the scores.
    ja: v も回転しています。スコアだけでなく、混ぜ合わせる値にまで位置が漏れ込みます。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k, v = apply_rope(q, cos, sin), apply_rope(k, cos, sin), apply_rope(v, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionRopeOnQueriesOnly(_AttentionParts):
    """Rotates q but not k: the score then depends on the query's absolute position, not on the distance.
    ja: q は回転していますが k はしていません。スコアが距離ではなくクエリの絶対位置に依存します。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        return self._out(F.scaled_dot_product_attention(apply_rope(q, cos, sin), k, v, is_causal=True))


class AttentionRopeCosSinSwapped(_AttentionParts):
    """apply_rope(q, sin, cos): the arguments in the wrong order.
    ja: apply_rope(q, sin, cos): 引数の順序が逆です。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k = apply_rope(q, sin, cos), apply_rope(k, sin, cos)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionWithoutCausalMask(_AttentionParts):
    """RoPE right, but every token also attends to the tokens after it.
    ja: RoPE は正しいのですが、各トークンが後ろのトークンにも注目しています。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=False))


class AttentionRebuildsRope(_AttentionParts):
    """Ignores the cos and sin it is given and builds its own table for positions 0..T-1, base 10000: wrong after
    a cache, for another base and for a scaled (YaRN) table.
    ja: 渡された cos と sin を無視し、位置 0..T-1・底 10000 のテーブルを自分で作っています。キャッシュの後、別の底、スケールされた (YaRN) テーブルでは誤りです。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        T = x.shape[1]
        cos, sin = RotaryEmbedding(self.head_dim, max_len=T)(0, T, device=x.device)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionRopeInterleaved(_AttentionParts):
    """Rotates Meta's interleaved pairs (2i, 2i+1) with the half-split table: the pairing of the other layout.
    ja: 半分割のテーブルで Meta のインターリーブ型ペア (2i, 2i+1) を回しています。もう一方のレイアウトのペアの組み方です。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k = apply_rope_interleaved(q, cos, sin), apply_rope_interleaved(k, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionWithoutScale(_AttentionParts):
    """Writes the attention out and forgets the 1/sqrt(head_dim).
    ja: アテンションを書き下して 1/sqrt(head_dim) を忘れています。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        T = x.shape[1]
        att = (q @ k.transpose(-2, -1)).masked_fill(~attention.causal_mask(T, T, x.device), float("-inf"))
        return self._out(torch.softmax(att, dim=-1) @ v)


class AttentionRopeWithoutGrad(_AttentionParts):
    """Rotates q and k inside torch.no_grad() ("positions are not learned"): q_proj and k_proj get no gradient.
    ja: 「位置は学習しない」として torch.no_grad() の中で q と k を回転しています。q_proj と k_proj に勾配が届きません。"""

    def forward(self, x, cos, sin):
        q, k, v = self._heads(x)
        with torch.no_grad():
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionHeadsWithoutTranspose(_AttentionParts):
    """reshape(B, n_head, T, head_dim) straight from (B, T, C), without the transpose: heads and positions mixed.
    ja: (B, T, C) から transpose なしで直接 reshape(B, n_head, T, head_dim) しています。ヘッドと位置が混ざります。"""

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        split = lambda t: t.reshape(B, self.n_head, T, self.head_dim)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))


class AttentionWrittenOut(ModernAttention):
    """Correct: RoPE by slicing, scores scaled by head_dim ** -0.5, a boolean mask, an explicit softmax."""

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        hd, half = self.head_dim, self.head_dim // 2
        q, k, v = (p(x).view(B, T, self.n_head, hd).permute(0, 2, 1, 3)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        rot = lambda t: torch.cat((-t[..., half:], t[..., :half]), dim=-1)  # noqa: E731
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        s = (q @ k.transpose(-2, -1)) * hd ** -0.5
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        e = (s - s.amax(dim=-1, keepdim=True)).exp()
        y = (e / e.sum(dim=-1, keepdim=True)) @ v
        return self.o_proj(y.permute(0, 2, 1, 3).reshape(B, T, C))


class AttentionComplexRope(ModernAttention):
    """Correct: RoPE with complex numbers (Meta's freqs_cis, from the first half of the table), then SDPA."""

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        hd, half = self.head_dim, self.head_dim // 2
        cis = torch.complex(cos[:, :half], sin[:, :half])  # (T, hd/2)

        def rotate(t):
            z = torch.complex(t[..., :half], t[..., half:]) * cis
            return torch.cat((z.real, z.imag), dim=-1)

        q, k, v = (p(x).view(B, T, self.n_head, hd).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        y = F.scaled_dot_product_attention(rotate(q), rotate(k), v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


def _cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=32, n_layer=1, n_head=4, n_embd=32)
    return reference_modern_config(GPTConfig(**{**base, **kw}))


def _rope(cfg: GPTConfig, start: int, T: int):
    return RotaryEmbedding(cfg.head_dim, cfg.rope_base, max_len=64)(start, T)  # (T, hd) each


@exercise("ch09.ModernAttention", reference=ModernAttention, kind="module",
          also_reference=(attention.CausalSelfAttention,),
          wrong=[AttentionRopeOnValuesToo, AttentionRopeOnQueriesOnly, AttentionRopeCosSinSwapped,
                 AttentionWithoutCausalMask, AttentionRebuildsRope, AttentionRopeInterleaved, AttentionWithoutScale,
                 AttentionRopeWithoutGrad, AttentionHeadsWithoutTranspose],
          correct=[AttentionWrittenOut, AttentionComplexRope],
          covers="1, 3 and 4 heads, positions from 0 and from 20 (a cache), a table of base 500000 scaled by 1.2 "
                 "(YaRN), T up to 12, gradients of x and every weight, x left unchanged",
          hint="q, k, v = projections viewed as (B, T, n_head, head_dim).transpose(1, 2); rotate q AND k (not v) "
               "with apply_rope(t, cos, sin); causal attention (F.scaled_dot_product_attention(q, k, v, "
               "is_causal=True)); transpose back, reshape to (B, T, C), o_proj.",
          hint_ja="q, k, v は射影を (B, T, n_head, head_dim) に view して transpose(1, 2)。渡された cos と sin で q と k "
                  "(v は回さない) を apply_rope(t, cos, sin) で回転し、因果的なアテンション "
                  "(F.scaled_dot_product_attention(q, k, v, is_causal=True)) のあと、戻して (B, T, C) にし o_proj。")
def _attention_cases():
    g = torch.Generator().manual_seed(90)
    for n_embd, n_head, start, T in [(32, 4, 0, 7), (48, 3, 0, 12), (16, 1, 20, 5)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        cos, sin = _rope(cfg, start, T)
        where = f"positions {start}..{start + T - 1}"
        yield Case(init=(cfg,), args=(torch.randn(2, T, n_embd, generator=g), cos, sin),
                   name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd}), {where}",
                   name_ja=f"n_embd={n_embd}、n_head={n_head}、形状 (2, {T}, {n_embd}) の x、位置 {start}..{start + T - 1}")
    cfg = _cfg(n_embd=32, n_head=4)
    cos, sin = RotaryEmbedding(cfg.head_dim, 500000.0, max_len=64)(0, 6)
    yield Case(init=(cfg,), args=(torch.randn(1, 6, 32, generator=g), cos * 1.2, sin * 1.2),
               name="n_embd=32, n_head=4, x of shape (1, 6, 32), a table of base 500000 scaled by 1.2 (as YaRN does)",
               name_ja="n_embd=32、n_head=4、形状 (1, 6, 32) の x、底 500000 のテーブルを 1.2 倍 (YaRN と同じ)")


# ----------------------------------------------------------------------------- the modern block
class ModernBlock(model.Block):
    """The package's block for a modern config, called as block(x, cos, sin); returns x only. The tables are
    constants: gradients are compared for x and the weights only."""

    def forward(self, x, cos, sin):
        return super().forward(x, cos.detach(), sin.detach())[0]


class BlockPostNorm(ModernBlock):
    """The original Transformer's order: normalise after adding the residual.
    ja: 元の Transformer の順序です: 残差を足した後に正規化しています。"""

    def forward(self, x, cos, sin):
        x = self.attn_norm(x + self.attn(x, cos, sin))
        return self.mlp_norm(x + self.mlp(x))


class BlockWithoutMlpResidual(ModernBlock):
    """The MLP's output replaces the stream instead of being added to it.
    ja: MLP の出力を残差ストリームに足さずに置き換えています。"""

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return self.mlp(self.mlp_norm(x))


class BlockMlpBeforeAttention(ModernBlock):
    """Runs the MLP sublayer before the attention.
    ja: アテンションより先に MLP のサブレイヤを実行しています。"""

    def forward(self, x, cos, sin):
        x = x + self.mlp(self.mlp_norm(x))
        return x + self.attn(self.attn_norm(x), cos, sin)


class BlockOneNormForBoth(ModernBlock):
    """attn_norm before both sublayers: mlp_norm's weights are never used.
    ja: 両方のサブレイヤの前で attn_norm を使っています。mlp_norm の重みが使われません。"""

    def forward(self, x, cos, sin):
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.attn_norm(x))


class BlockRebuildsRope(ModernBlock):
    """Builds its own cos and sin for positions 0..T-1 instead of passing on the ones it is given.
    ja: 渡された cos と sin をそのまま渡さず、位置 0..T-1 のテーブルを自分で作っています。"""

    def forward(self, x, cos, sin):
        T = x.shape[1]
        cos, sin = RotaryEmbedding(self.attn.head_dim, max_len=T)(0, T, device=x.device)
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class BlockNormalisesTheStream(ModernBlock):
    """x = attn_norm(x) first, then x + attn(x): the residual stream itself is normalised, not just the
    sublayer's input.
    ja: 先に x = attn_norm(x) とし、それから x + attn(x) としています。サブレイヤの入力だけでなく残差ストリームそのものが正規化されます。"""

    def forward(self, x, cos, sin):
        x = self.attn_norm(x)
        x = x + self.attn(x, cos, sin)
        x = self.mlp_norm(x)
        return x + self.mlp(x)


class BlockWithoutAttentionResidual(ModernBlock):
    """The attention's output replaces the stream instead of being added to it.
    ja: アテンションの出力を残差ストリームに足さずに置き換えています。"""

    def forward(self, x, cos, sin):
        x = self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.mlp_norm(x))


class BlockNormsSwapped(ModernBlock):
    """mlp_norm before the attention and attn_norm before the MLP: each norm's weights used in the wrong place.
    ja: アテンションの前に mlp_norm、MLP の前に attn_norm を使っています。それぞれの正規化の重みが違う場所で使われます。"""

    def forward(self, x, cos, sin):
        x = x + self.attn(self.mlp_norm(x), cos, sin)
        return x + self.mlp(self.attn_norm(x))


class BlockInPlaceResidual(ModernBlock):
    """x += attn(...): the residual added in place, into the caller's x.
    ja: x += attn(...): 残差をインプレースで、呼び出し側の x に足しています。"""

    def forward(self, x, cos, sin):
        x += self.attn(self.attn_norm(x), cos, sin)
        x += self.mlp(self.mlp_norm(x))
        return x


class BlockWithNamedBranches(ModernBlock):
    """Correct: each sublayer's branch in its own variable, torch.add for the residuals."""

    def forward(self, x, cos, sin):
        attn_out = self.attn(self.attn_norm(x), cos, sin)
        h = torch.add(x, attn_out)
        mlp_out = self.mlp(self.mlp_norm(h))
        return torch.add(h, mlp_out)


class BlockWithNormsWrittenOut(ModernBlock):
    """Correct: RMSNorm written out with the norms' weights and eps."""

    def forward(self, x, cos, sin):
        def rms(t, n):
            t32 = t.float()
            return n.weight * (t32 / torch.sqrt(t32.pow(2).mean(-1, keepdim=True) + n.eps)).to(t.dtype)

        x = x + self.attn(rms(x, self.attn_norm), cos, sin)
        return x + self.mlp(rms(x, self.mlp_norm))


@exercise("ch09.ModernBlock", reference=ModernBlock, kind="module",
          wrong=[BlockPostNorm, BlockWithoutMlpResidual, BlockMlpBeforeAttention, BlockOneNormForBoth,
                 BlockRebuildsRope, BlockNormalisesTheStream, BlockWithoutAttentionResidual, BlockNormsSwapped,
                 BlockInPlaceResidual],
          correct=[BlockWithNamedBranches, BlockWithNormsWrittenOut],
          covers="2 and 4 heads, widths 32 and 64, positions from 0 and from 10, a table scaled by 1.2 (YaRN), "
                 "inputs of std 2, gradients of x and every weight (norm gains perturbed), x left unchanged",
          hint="pre-norm, two residuals, RoPE's cos and sin handed to the attention: "
               "x = x + attn(attn_norm(x), cos, sin); x = x + mlp(mlp_norm(x)).",
          hint_ja="プレノルムで残差接続が 2 つ。RoPE の cos と sin はそのままアテンションに渡します: "
                  "x = x + attn(attn_norm(x), cos, sin); x = x + mlp(mlp_norm(x))。x += のようなインプレース加算で"
                  "入力を書き換えないこと。")
def _block_cases():
    g = torch.Generator().manual_seed(91)
    for n_embd, n_head, start, T in [(32, 4, 0, 6), (64, 2, 0, 9), (32, 2, 10, 4)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        cos, sin = _rope(cfg, start, T)
        yield Case(init=(cfg,), args=(torch.randn(2, T, n_embd, generator=g) * 2, cos, sin),
                   name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd}), "
                        f"positions {start}..{start + T - 1}",
                   name_ja=f"n_embd={n_embd}、n_head={n_head}、形状 (2, {T}, {n_embd}) の x、位置 {start}..{start + T - 1}")
    cfg = _cfg(n_embd=32, n_head=4)
    cos, sin = _rope(cfg, 3, 5)
    yield Case(init=(cfg,), args=(torch.randn(1, 5, 32, generator=g) * 2, cos * 1.2, sin * 1.2),
               name="n_embd=32, n_head=4, x of shape (1, 5, 32), positions 3..7, the table scaled by 1.2 (YaRN)",
               name_ja="n_embd=32、n_head=4、形状 (1, 5, 32) の x、位置 3..7、テーブルを 1.2 倍 (YaRN)")
