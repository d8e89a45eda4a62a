"""Chapter 10 (fast inference): attention over a KV cache, the cache itself, cached greedy
generation, batched greedy generation with left padding, and the repeat of kv heads under
grouped-query attention.

References come from the package: `minigpt.attention.causal_mask` and `repeat_kv`,
`minigpt.kv_cache.KVCache`, `minigpt.generate.generate` and `generate_batch`. The generation
exercises run on a small minigpt GPT that counts the tokens it is run on and the batch sizes it is
called with, so the checker sees not only *which* tokens come out but also whether the cache saved
the work it should (the prompt once, then one token a step) and whether the rows ran as one batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import kv_cache
from minigpt.attention import causal_mask, repeat_kv
from minigpt.check import Case, Step, exercise
from minigpt.config import GPTConfig
from minigpt.generate import generate, generate_batch
from minigpt.i18n import tr
from minigpt.model import GPT


# ----------------------------------------------------------------------------- attention over a cache
def reference_attention_with_cache(q, k, v):
    """q (B, nh, T, hd) are the last T of the S positions in k, v (B, nh, S, hd)."""
    T, S = q.shape[-2], k.shape[-2]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S, q.device))


def _attend(q, k, v, mask):
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    return torch.softmax(att, dim=-1) @ v


def attention_mask_top_left(q, k, v):
    """SDPA's is_causal=True: the triangle starts at the top-left corner, as if the queries were
    the *first* T positions. Right when T == S (training), wrong with anything in the cache.
    ja: SDPA の is_causal=True: 三角形が左上の角から始まり、クエリが「最初の」T 個の位置であるかのように扱われます。T == S (学習時) では正しいのですが、キャッシュに何かあると誤りです。"""
    T, S = q.shape[-2], k.shape[-2]
    return _attend(q, k, v, torch.ones(T, S, dtype=torch.bool, device=q.device).tril())


def attention_no_mask(q, k, v):
    """No mask: right for one new token (it may see everything), wrong for a prompt or a chunk.
    ja: マスクがありません。新しいトークン 1 つなら正しい (すべて見てよい) のですが、プロンプトやチャンクでは誤りです。"""
    return _attend(q, k, v, None)


def attention_mask_one_too_far(q, k, v):
    """Each query also sees the key right after it (the token it must predict).
    ja: 各クエリが直後のキー (予測すべきトークン) まで見えてしまいます。"""
    T, S = q.shape[-2], k.shape[-2]
    return _attend(q, k, v, torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T + 1))


def attention_mask_excludes_itself(q, k, v):
    """Each query sees the earlier keys but not its own (tril(S - T - 1)); a query at position 0 then
    sees nothing at all (NaN).
    ja: 各クエリがそれ以前のキーは見えますが自分自身が見えません (tril(S - T - 1))。位置 0 のクエリは何も見えなくなります (NaN)。"""
    T, S = q.shape[-2], k.shape[-2]
    return _attend(q, k, v, torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T - 1))


def attention_cache_without_scale(q, k, v):
    """The mask is right, but the scores are not divided by sqrt(head_dim).
    ja: マスクは正しいのですが、スコアを sqrt(head_dim) で割っていません。"""
    T, S = q.shape[-2], k.shape[-2]
    att = (q @ k.transpose(-2, -1)).masked_fill(~causal_mask(T, S, q.device), float("-inf"))
    return torch.softmax(att, dim=-1) @ v


def attention_cache_scales_q_in_place(q, k, v):
    """Scales q in place (q.mul_(...)) before the product: the caller's q changes.
    ja: 積の前に q をインプレースでスケールしています (q.mul_(...))。呼び出し側の q が変わります。"""
    T, S = q.shape[-2], k.shape[-2]
    q.mul_(q.shape[-1] ** -0.5)
    att = (q @ k.transpose(-2, -1)).masked_fill(~causal_mask(T, S, q.device), float("-inf"))
    return torch.softmax(att, dim=-1) @ v


def attention_cache_softmax_over_queries(q, k, v):
    """softmax over dim -2 (the queries) instead of the keys.
    ja: キーではなく次元 -2 (クエリ) で softmax をとっています。"""
    T, S = q.shape[-2], k.shape[-2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    att = att.masked_fill(~causal_mask(T, S, q.device), float("-inf"))
    return torch.nan_to_num(torch.softmax(att, dim=-2)) @ v


def attention_cache_mask_by_multiplying(q, k, v):
    """Multiplies the scores by the 0/1 mask instead of setting them to -inf: a masked key gets score 0, and
    exp(0) = 1 still gives it weight.
    ja: スコアを -inf にせず 0/1 のマスクを掛けています。マスクされたキーのスコアが 0 になり、exp(0) = 1 なので重みが残ります。"""
    T, S = q.shape[-2], k.shape[-2]
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]) * causal_mask(T, S, q.device)
    return torch.softmax(att, dim=-1) @ v


def attention_cache_in_float32(q, k, v):
    """Computes in float32 and returns float32: bfloat16 q, k, v give a float32 output.
    ja: float32 で計算して float32 で返しています。bfloat16 の q, k, v から float32 の出力が返ります。"""
    return _attend(q.float(), k.float(), v.float(), causal_mask(q.shape[-2], k.shape[-2], q.device))


def attention_cache_pad_the_triangle(q, k, v):
    """Correct: the usual (T, T) triangle, with S - T columns of ones on its left for the cached keys."""
    T, S = q.shape[-2], k.shape[-2]
    tri = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    mask = torch.cat((torch.ones(T, S - T, dtype=torch.bool, device=q.device), tri), dim=1)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return torch.softmax(att.masked_fill(~mask, float("-inf")), dim=-1) @ v


def attention_cache_positions_compared(q, k, v):
    """Correct: query i is at position S - T + i; key j is visible when j <= that position; SDPA with the mask."""
    T, S = q.shape[-2], k.shape[-2]
    q_pos = torch.arange(S - T, S, device=q.device)[:, None]
    k_pos = torch.arange(S, device=q.device)[None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=k_pos <= q_pos)


def attention_cache_in_float64(q, k, v):
    """Correct: float64 inside, an explicit softmax, cast back."""
    T, S = q.shape[-2], k.shape[-2]
    q64, k64, v64 = q.double(), k.double(), v.double()
    att = (q64 @ k64.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    att = att.masked_fill(~causal_mask(T, S, q.device), float("-inf"))
    e = torch.exp(att - att.amax(-1, keepdim=True))
    return ((e / e.sum(-1, keepdim=True)) @ v64).to(q.dtype)


@exercise("ch10.attention_with_cache", reference=reference_attention_with_cache,
          wrong=[attention_mask_top_left, attention_no_mask, attention_mask_one_too_far,
                 attention_mask_excludes_itself, attention_cache_without_scale, attention_cache_scales_q_in_place,
                 attention_cache_softmax_over_queries, attention_cache_mask_by_multiplying, attention_cache_in_float32],
          correct=[attention_cache_pad_the_triangle, attention_cache_positions_compared, attention_cache_in_float64],
          dtypes=("bf16", "fp16"),
          covers="T == S (training), one new token, a chunk after a cache, a prompt with nothing cached, 1 to 3 heads, "
                 "head_dim 4 to 16, large scores in float64, bfloat16 and float16, gradients of q, k and v, inputs "
                 "left unchanged",
          hint="the T queries are the LAST T of S positions: query i sits at position S - T + i and may see "
               "keys j <= S - T + i, i.e. torch.ones(T, S).tril(diagonal=S - T). Mask the scores with it "
               "(-inf where False), softmax over the keys, @ v.",
          hint_ja="T 個のクエリは S 個の位置の「最後の」T 個です。クエリ i は位置 S - T + i にあり、キー j <= S - T + i を"
                  "見られます: torch.ones(T, S).tril(diagonal=S - T)。False の所のスコアを -inf にし、キーの次元で "
                  "softmax して @ v。")
def _attention_cases():
    g = torch.Generator().manual_seed(10)
    for B, nh, T, S, hd, what, what_ja in [
            (2, 2, 5, 5, 8, "no cache (training): T == S", "キャッシュなし (学習時): T == S"),
            (2, 3, 1, 7, 8, "one new token after 6 cached ones", "キャッシュ済みの 6 個の後の新しいトークン 1 個"),
            (1, 2, 3, 8, 16, "a chunk of 3 after 5 cached ones", "キャッシュ済みの 5 個の後の 3 個のチャンク"),
            (2, 1, 4, 4, 4, "a prompt of 4, nothing cached yet", "長さ 4 のプロンプト、キャッシュはまだ空")]:
        q = torch.randn(B, nh, T, hd, generator=g)
        k, v = torch.randn(B, nh, S, hd, generator=g), torch.randn(B, nh, S, hd, generator=g)
        yield Case(args=(q, k, v), name=f"{what}: q {tuple(q.shape)}, k and v {tuple(k.shape)}",
                   name_ja=f"{what_ja}: q {tuple(q.shape)}、k と v {tuple(k.shape)}")
    q, k, v = (torch.randn(1, 2, n, 8, generator=g, dtype=torch.float64) * 3 for n in (2, 6, 6))
    yield Case(args=(q, k, v), name="float64, a chunk of 2 after 4 cached ones, large scores",
                               name_ja="float64、キャッシュ済みの 4 個の後の 2 個のチャンク、大きなスコア")


# ----------------------------------------------------------------------------- the cache
class KVCache(kv_cache.KVCache):
    """The package's cache with the notebook's constructor (float32 only)."""

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int, device=None):
        super().__init__(n_layer, batch_size, n_kv_head, max_len, head_dim, device=device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exercise: the package's update (named here so a stub of the notebook's class is recognised)."""
        return super().update(layer, k, v)


class CacheReturnsOnlyNew(KVCache):
    """Stores k, v but returns only the new ones: the new token sees no earlier token.
    ja: k, v を保存していますが、新しいものだけを返しています。新しいトークンがそれ以前のトークンを見られません。"""

    def update(self, layer, k, v):
        super().update(layer, k, v)
        return k, v


class CacheAdvancesPosInUpdate(KVCache):
    """Advances pos inside update(): the second layer writes after the first layer's tokens.
    ja: update() の中で pos を進めています。2 番目の層が 1 番目の層のトークンの後ろに書き込みます。"""

    def update(self, layer, k, v):
        out = super().update(layer, k, v)
        self.pos += k.shape[2]
        return out


class CacheIgnoresLayer(KVCache):
    """Every layer writes into layer 0's slot: the layers overwrite each other's keys and values.
    ja: どの層も層 0 の場所に書き込んでいます。層どうしでキーとバリューを上書きし合います。"""

    def update(self, layer, k, v):
        return super().update(0, k, v)


class CacheReturnsWholeBuffer(KVCache):
    """Returns all max_len slots, the zeros of the empty ones included.
    ja: 空きスロットのゼロも含めて、max_len 個すべてを返しています。"""

    def update(self, layer, k, v):
        super().update(layer, k, v)
        return self.k[layer], self.v[layer]


class CacheValuesFromKeys(KVCache):
    """Stores k in both buffers (a copy-paste slip).
    ja: 両方のバッファに k を保存しています (コピー&ペーストの誤り)。"""

    def update(self, layer, k, v):
        return super().update(layer, k, k)


class CacheAppendsToAList(KVCache):
    """Appends k and v to per-layer lists and concatenates them: it ignores pos, so setting pos back (a reset,
    or a rollback) does not rewind the cache.
    ja: 層ごとのリストに k と v を追加して連結しています。pos を無視するので、pos を戻しても (リセットやロールバック) キャッシュは巻き戻りません。"""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.k_list = [[] for _ in range(self.k.shape[0])]
        self.v_list = [[] for _ in range(self.k.shape[0])]

    def update(self, layer, k, v):
        self.k_list[layer].append(k)
        self.v_list[layer].append(v)
        return torch.cat(self.k_list[layer], dim=2), torch.cat(self.v_list[layer], dim=2)


class CacheWritesFromZero(KVCache):
    """Writes the new k, v at positions [0, T) instead of [pos, pos + T): every chunk overwrites the first one.
    ja: 新しい k, v を [pos, pos + T) ではなく位置 [0, T) に書き込んでいます。どのチャンクも最初のチャンクを上書きします。"""

    def update(self, layer, k, v):
        T = k.shape[2]
        self.k[layer, :, :, :T] = k
        self.v[layer, :, :, :T] = v
        return self.k[layer, :, :, :self.pos + T], self.v[layer, :, :, :self.pos + T]


class CacheFullOneTooEarly(KVCache):
    """Refuses when pos + T >= max_len: the last free slot can never be used.
    ja: pos + T >= max_len で拒否しています。最後の空きスロットが使えません。"""

    def update(self, layer, k, v):
        if self.pos + k.shape[2] >= self.max_len:
            raise ValueError(tr("KV cache is full (max_len={m})", "KV キャッシュがいっぱいです (max_len={m})", m=self.max_len))
        return super().update(layer, k, v)


class CacheNeverStoresNew(KVCache):
    """Returns the cached keys and values with the new ones concatenated, but never writes the new ones into the
    buffers: the next step has lost them.
    ja: キャッシュ済みのキーとバリューに新しいものを連結して返していますが、バッファには書き込んでいません。次のステップではそれが失われています。"""

    def update(self, layer, k, v):
        end = self.pos
        return (torch.cat((self.k[layer, :, :, :end], k), dim=2), torch.cat((self.v[layer, :, :, :end], v), dim=2))


class CacheAdvancesPosAfterLastLayer(KVCache):
    """Advances pos inside update() when the last layer is written: right only if the layers always come in order,
    and the model advances pos a second time.
    ja: 最後の層を書いたときに update() の中で pos を進めています。層がいつも順番どおりに来るときしか正しくなく、モデルが pos をもう一度進めます。"""

    def update(self, layer, k, v):
        out = super().update(layer, k, v)
        if layer == self.k.shape[0] - 1:
            self.pos += k.shape[2]
        return out


class CacheOfPerLayerBuffers(KVCache):
    """Correct: one (B, n_kv, max_len, hd) buffer per layer in a list, slices written with copy_."""

    def __init__(self, n_layer, batch_size, n_kv_head, max_len, head_dim, device=None):
        self.max_len, self.pos = max_len, 0
        self.ks = [torch.zeros(batch_size, n_kv_head, max_len, head_dim, device=device) for _ in range(n_layer)]
        self.vs = [torch.zeros(batch_size, n_kv_head, max_len, head_dim, device=device) for _ in range(n_layer)]

    def update(self, layer, k, v):
        start, end = self.pos, self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(tr("KV cache is full: {end} positions needed, max_len={m}",
                                "KV キャッシュがいっぱいです: {end} 位置が必要ですが max_len={m} です", end=end, m=self.max_len))
        self.ks[layer][:, :, start:end].copy_(k)
        self.vs[layer][:, :, start:end].copy_(v)
        return self.ks[layer][:, :, :end], self.vs[layer][:, :, :end]


class CacheGrownByConcatenation(KVCache):
    """Correct: tensors grown with torch.cat, cut back to pos first (so setting pos rewinds them)."""

    def __init__(self, n_layer, batch_size, n_kv_head, max_len, head_dim, device=None):
        self.max_len, self.pos = max_len, 0
        empty = torch.zeros(batch_size, n_kv_head, 0, head_dim, device=device)
        self.ks, self.vs = [empty] * n_layer, [empty] * n_layer

    def update(self, layer, k, v):
        if self.pos + k.shape[2] > self.max_len:
            raise ValueError(tr("KV cache is full: max_len={m}", "KV キャッシュがいっぱいです: max_len={m}", m=self.max_len))
        self.ks[layer] = torch.cat((self.ks[layer][:, :, :self.pos], k), dim=2)
        self.vs[layer] = torch.cat((self.vs[layer][:, :, :self.pos], v), dim=2)
        return self.ks[layer], self.vs[layer]


def _cache_steps(chunks, n_layer, layer_order=None, start=0):
    """update() for every layer of every chunk, then `pos` read back (update must leave it) and advanced."""
    steps, pos = [], start
    for c, (k, v) in enumerate(chunks):
        T = k.shape[3]
        where = f"positions {pos}..{pos + T - 1}"
        for layer in (layer_order or range(n_layer)):
            steps.append(Step.call("update", layer, k[layer], v[layer], output_names=("k", "v"),
                                   name=f"chunk {c + 1} ({where}), layer {layer}"))
        steps.append(Step.get("pos", name=f"pos after the layers of chunk {c + 1}: update() must not change it"))
        pos += T
        steps.append(Step.set("pos", pos, name=f"the model advances pos to {pos}"))
    return steps, pos


@exercise("ch10.KVCache", reference=KVCache, kind="class", uses_device=False, grad=False,
          also_reference=(kv_cache.KVCache,),
          wrong=[CacheReturnsOnlyNew, CacheAdvancesPosInUpdate, CacheIgnoresLayer, CacheReturnsWholeBuffer,
                 CacheValuesFromKeys, CacheAppendsToAList, CacheWritesFromZero, CacheFullOneTooEarly,
                 CacheNeverStoresNew, CacheAdvancesPosAfterLastLayer],
          correct=[CacheOfPerLayerBuffers, CacheGrownByConcatenation],
          covers="a prefill then single tokens, token by token up to max_len exactly, chunks of several tokens, "
                 "layers updated out of order, pos read back after each chunk, pos set back to 0 (a reset) and "
                 "to an earlier position (a rollback), k and v compared separately, inputs left unchanged",
          hint="in update(layer, k, v): T = k.shape[2]; write k and v into self.k[layer] and self.v[layer] at "
               "positions [self.pos, self.pos + T) (dimension 3 of the buffers); return everything up to "
               "self.pos + T. Do not change self.pos: the model advances it once all layers have run.",
          hint_ja="update(layer, k, v) では T = k.shape[2] とし、k と v を self.k[layer] と self.v[layer] の位置 "
                  "[self.pos, self.pos + T) (バッファの次元 3) に書き込み、self.pos + T までのすべてを返します。"
                  "self.pos は変えません (全層が終わってからモデルが進めます)。pos が 0 や前の位置に戻されたら、"
                  "そこから上書きします。")
def _cache_cases():
    g = torch.Generator().manual_seed(11)

    def chunks(n_layer, B, n_kv, hd, lengths):
        return [(torch.randn(n_layer, B, n_kv, T, hd, generator=g), torch.randn(n_layer, B, n_kv, T, hd, generator=g))
                for T in lengths]

    def name(n_layer, B, n_kv, max_len, hd, what):
        return f"KVCache(n_layer={n_layer}, batch_size={B}, n_kv_head={n_kv}, max_len={max_len}, head_dim={hd}), {what}"

    steps, _ = _cache_steps(chunks(2, 1, 2, 4, (3, 1, 1)), 2, layer_order=(1, 0))
    yield Case(init=(2, 1, 2, 8, 4), steps=steps,
               name=name(2, 1, 2, 8, 4, "a prefill of 3, then 2 tokens; layer 1 updated before layer 0"),
               name_ja=name(2, 1, 2, 8, 4, "3 個のプレフィルのあと 2 トークン、層 1 を層 0 より先に更新"))
    steps, _ = _cache_steps(chunks(3, 2, 1, 8, (1, 1, 1, 1)), 3)
    yield Case(init=(3, 2, 1, 4, 8), steps=steps, name=name(3, 2, 1, 4, 8, "token by token until max_len is full"),
               name_ja=name(3, 2, 1, 4, 8, "max_len が埋まるまで 1 トークンずつ"))
    steps, pos = _cache_steps(chunks(2, 2, 4, 2, (4, 2, 3)), 2)
    steps.append(Step.set("pos", 0, name="a reset: pos = 0"))
    more, _ = _cache_steps(chunks(2, 2, 4, 2, (2, 1)), 2)
    yield Case(init=(2, 2, 4, 12, 2), steps=steps + more,
               name=name(2, 2, 4, 12, 2, "chunks of 4, 2 and 3 tokens, then pos = 0 (a reset) and 2 more chunks"),
               name_ja=name(2, 2, 4, 12, 2, "4、2、3 トークンのチャンクのあと pos = 0 (リセット) にしてさらに 2 チャンク"))
    steps, _ = _cache_steps(chunks(1, 1, 1, 4, (5,)), 1)
    steps.append(Step.set("pos", 2, name="a rollback: pos = 2 (3 drafted tokens rejected)"))
    more, _ = _cache_steps(chunks(1, 1, 1, 4, (1, 2)), 1, start=2)
    yield Case(init=(1, 1, 1, 8, 4), steps=steps + more,
               name=name(1, 1, 1, 8, 4, "5 tokens, then pos set back to 2 and 3 more tokens"),
               name_ja=name(1, 1, 1, 8, 4, "5 トークンのあと pos を 2 に戻してさらに 3 トークン"))


# ----------------------------------------------------------------------------- cached greedy generation
class CountingGPT(GPT):
    """A minigpt GPT that counts the token positions it is run on (prompt and new tokens alike; per row,
    so a batch of B rows counts like one row) and records the batch size of every call."""

    def __init__(self, cfg: GPTConfig):
        super().__init__(cfg)
        self.tokens_run = 0
        self.batch_sizes: list[int] = []

    def forward(self, idx, targets=None, cache=None, attention_mask=None):
        self.tokens_run += idx.shape[1]
        self.batch_sizes.append(idx.shape[0])
        return super().forward(idx, targets, cache, attention_mask)


def reference_generate_greedy(model, prompt: list[int], n_new: int) -> list[int]:
    return list(generate(model, prompt, n_new, temperature=0, use_cache=True, stop_at_eos=False))


def _drive_generation(fn, case: Case):
    cfg, prompt, n_new = case.args
    torch.manual_seed(0)
    model = CountingGPT(cfg).eval()
    tokens = fn(model, list(prompt), n_new)  # no torch.no_grad() here: a grad mode left off must show
    if torch.is_tensor(tokens):
        tokens = tokens.tolist()
    if isinstance(tokens, (list, tuple)) and all(isinstance(t, int) or (torch.is_tensor(t) and t.numel() == 1)
                                                 for t in tokens):
        tokens = [int(t) for t in tokens]
    return {"tokens": tokens, "model_tokens": model.tokens_run, "budget": len(prompt) + n_new}


def _compare_generation(expected, got) -> str | None:
    e, g = expected["tokens"], got["tokens"]
    if not isinstance(g, list):
        return tr("expected a list of {n} token ids (ints), got {g}", "{n} 個のトークン ID (int) のリストが必要ですが、{g} でした",
                  n=len(e), g=repr(g)[:80])
    if g != e:
        if len(g) != len(e):
            return tr("expected {n} new tokens, got {m}: {g}", "新しいトークンが {n} 個必要ですが、{m} 個でした: {g}",
                      n=len(e), m=len(g), g=f"{g[:12]}{' ...' if len(g) > 12 else ''}")
        i = next(i for i, (a, b) in enumerate(zip(e, g)) if a != b)
        return tr("the new tokens differ from step {i}: expected {e}, got {g} (expected in all: {a})",
                  "新しいトークンがステップ {i} から違います: 期待 {e}、実際 {g} (期待される全体: {a})",
                  i=i, e=e[i:i + 8], g=g[i:i + 8], a=e)
    if got["model_tokens"] > got["budget"]:
        return tr("the tokens are right, but the model was run on {n} token positions in all; with a KV cache it "
                  "needs at most {b} (the prompt once, then one token per step). Is the cache used, and do you pass "
                  "only the new token after the prompt?",
                  "トークンは正しいのですが、モデルが合計 {n} 個のトークン位置で実行されました。KV キャッシュがあれば"
                  "最大 {b} 個で済みます (プロンプトを 1 回、そのあとは 1 ステップに 1 トークン)。キャッシュを使って"
                  "いますか。プロンプトの後は新しいトークンだけを渡していますか。",
                  n=got["model_tokens"], b=got["budget"])
    return None


def generate_without_cache(model, prompt, n_new):
    """Correct tokens, but the whole context is run through the model at every step.
    ja: トークンは正しいのですが、毎ステップ文脈全体をモデルに通しています。"""
    ids = list(prompt)
    for _ in range(n_new):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def generate_without_prefill(model, prompt, n_new):
    """Starts the cache from the last prompt token only: the model never sees the rest of the prompt.
    ja: プロンプトの最後のトークンだけからキャッシュを始めています。モデルはプロンプトの残りを見ません。"""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt[-1:]]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


def generate_feeds_everything_to_the_cache(model, prompt, n_new):
    """Uses a cache but still passes the whole sequence every step: old tokens are appended again
    at new positions.
    ja: キャッシュを使いながら、毎ステップ系列全体を渡しています。古いトークンが新しい位置に再び追加されます。"""
    cache = model.new_cache(1, max_len=model.config.block_size)
    ids, out = list(prompt), []
    for _ in range(n_new):
        if cache.pos + len(ids) > cache.max_len:
            cache.reset()
        logits, _ = model(torch.tensor([ids]), cache=cache)
        nxt = int(logits[0, -1].argmax())
        ids.append(nxt)
        out.append(nxt)
    return out


def generate_reads_first_position(model, prompt, n_new):
    """Takes the prediction at position 0 (logits[0, 0]) instead of the last position.
    ja: 最後の位置ではなく位置 0 の予測 (logits[0, 0]) を使っています。"""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, 0].argmax())
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


def generate_returns_the_prompt_too(model, prompt, n_new):
    """Returns prompt + new tokens instead of the n_new new tokens only.
    ja: 新しい n_new 個のトークンだけでなく、プロンプト + 新しいトークンを返しています。"""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    ids = list(prompt)
    for _ in range(n_new):
        ids.append(int(logits[0, -1].argmax()))
        logits, _ = model(torch.tensor([ids[-1:]]), cache=cache)
    return ids


def generate_by_sampling(model, prompt, n_new):
    """Samples from softmax(logits) (torch.multinomial) instead of taking the most likely token.
    ja: 最も確率の高いトークンをとらず、softmax(logits) からサンプリング (torch.multinomial) しています。"""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(torch.multinomial(torch.softmax(logits[0, -1], dim=-1), 1))
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


def generate_cache_too_small(model, prompt, n_new):
    """new_cache(1, max_len=len(prompt)): no room for the new tokens, the cache overflows at the first step.
    ja: new_cache(1, max_len=len(prompt)): 新しいトークンの場所がなく、最初のステップでキャッシュがあふれます。"""
    cache = model.new_cache(1, max_len=len(prompt))
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


def generate_new_cache_every_step(model, prompt, n_new):
    """Makes a new, empty cache at every step and feeds it the new token only: the model forgets the context.
    ja: 毎ステップ空のキャッシュを新しく作り、新しいトークンだけを渡しています。モデルが文脈を忘れます。"""
    logits, _ = model(torch.tensor([prompt]), cache=model.new_cache(1, max_len=len(prompt) + n_new))
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=model.new_cache(1, max_len=len(prompt) + n_new))
    return out


def generate_argmax_over_positions(model, prompt, n_new):
    """logits.argmax(dim=1)[0, -1]: the argmax over the positions, not over the vocabulary.
    ja: logits.argmax(dim=1)[0, -1]: 語彙ではなく位置についての argmax です。"""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(logits.argmax(dim=1)[0, -1])
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


def generate_feeds_last_prompt_token_again(model, prompt, n_new):
    """Prefills the prompt without using its logits, then feeds the last prompt token again: that token is now
    in the cache twice, at two positions.
    ja: プロンプトをプレフィルしてもそのロジットを使わず、プロンプトの最後のトークンをもう一度渡しています。そのトークンがキャッシュに 2 回、2 つの位置に入ります。"""
    cache = model.new_cache(1, max_len=len(prompt) + n_new + 1)
    model(torch.tensor([prompt]), cache=cache)
    nxt, out = prompt[-1], []
    for _ in range(n_new):
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
    return out


def generate_switches_grad_off(model, prompt, n_new):
    """torch.set_grad_enabled(False) at the top instead of @torch.no_grad(): the tokens are right, but gradients
    stay off for the rest of the notebook (training then fails).
    ja: @torch.no_grad() の代わりに冒頭で torch.set_grad_enabled(False) としています。トークンは正しいのですが、ノートブックの残りでも勾配がオフのままです (学習が失敗します)。"""
    torch.set_grad_enabled(False)
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    out = []
    for _ in range(n_new):
        out.append(int(logits[0, -1].argmax()))
        logits, _ = model(torch.tensor([out[-1:]]), cache=cache)
    return out


@torch.no_grad()
def generate_with_batched_argmax(model, prompt, n_new):
    """Correct: argmax over the vocabulary for the whole batch row, the new token kept as a (1, 1) tensor."""
    device = model.tok_emb.weight.device
    cache = model.new_cache(batch_size=1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt], device=device), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1, :].argmax(dim=-1, keepdim=True)  # (1, 1)
        out.append(int(nxt))
        logits, _ = model(nxt, cache=cache)
    return out


def generate_as_tensor(model, prompt, n_new):
    """Correct: collects the tokens in a tensor (the checker accepts a tensor or a list of ints)."""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    ids = torch.tensor([prompt])
    new = []
    for step in range(n_new):
        logits, _ = model(ids, cache=cache)
        ids = logits[:, -1:].argmax(-1)
        new.append(ids[0])
    return torch.cat(new)


@exercise("ch10.generate_greedy", reference=reference_generate_greedy, also_reference=(generate,),
          run=_drive_generation,
          compare=_compare_generation, uses_device=False,
          wrong=[generate_without_cache, generate_without_prefill, generate_feeds_everything_to_the_cache,
                 generate_reads_first_position, generate_returns_the_prompt_too, generate_by_sampling,
                 generate_cache_too_small, generate_new_cache_every_step, generate_argmax_over_positions,
                 generate_feeds_last_prompt_token_again, generate_switches_grad_off],
          correct=[generate_with_batched_argmax, generate_as_tensor],
          covers="GPT-2 style and RoPE models, multi-query attention, a 1-token prompt, up to 20 new tokens, the "
                 "number of token positions the model is run on (the cache must save work)",
          hint="cache = model.new_cache(1, max_len=len(prompt) + n_new); run the whole prompt once with "
               "cache=cache (prefill); then repeat: next = logits[0, -1].argmax(), and run the model on "
               "[[next]] only, with the same cache.",
          hint_ja="cache = model.new_cache(1, max_len=len(prompt) + n_new) を作り、プロンプト全体を cache=cache で "
                  "1 回だけ流します (プレフィル)。そのあとは next = logits[0, -1].argmax() を繰り返し、同じキャッシュで "
                  "[[next]] だけをモデルに渡します。返すのは新しい n_new 個のトークンだけです。")
def _generation_cases():
    base = dict(vocab_size=64, block_size=48, n_layer=2, n_head=4, n_embd=32, init_std=0.3, tie_weights=False)
    modern = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
    g = torch.Generator().manual_seed(12)
    for cfg, p, n, what, what_ja in [
            (GPTConfig(**base), 5, 12, "GPT-2 style (learned positions)", "GPT-2 型 (学習される位置埋め込み)"),
            (GPTConfig(**base, **modern), 7, 20, "modern (RoPE)", "モダン (RoPE)"),
            (GPTConfig(**base, **modern, n_kv_head=1), 1, 16, "modern, multi-query, 1-token prompt",
             "モダン、multi-query、1 トークンのプロンプト")]:
        prompt = torch.randint(0, 64, (p,), generator=g).tolist()
        yield Case(args=(cfg, prompt, n), name=f"{what}, prompt {prompt}, {n} new tokens",
                   name_ja=f"{what_ja}、プロンプト {prompt}、新しいトークン {n} 個")


# ----------------------------------------------------------------------------- batched generation, left padding
def reference_generate_batch(model, prompts: list[list[int]], n_new: int, pad_id: int = 0) -> list[list[int]]:
    return generate_batch(model, prompts, n_new, pad_id)


def _as_rows(out):
    """A tensor (B, n), or a list of tensors or of lists of ints -> a list of lists of ints (else as given)."""
    if torch.is_tensor(out):
        out = out.tolist()
    if not isinstance(out, (list, tuple)):
        return out
    rows = []
    for row in out:
        if torch.is_tensor(row):
            row = row.tolist()
        if not (isinstance(row, (list, tuple)) and all(isinstance(t, int) or (torch.is_tensor(t) and t.numel() == 1)
                                                      for t in row)):
            return out
        rows.append([int(t) for t in row])
    return rows


def _drive_batch_generation(fn, case: Case):
    cfg, prompts, n_new = case.args
    torch.manual_seed(0)
    model = CountingGPT(cfg).eval()
    rows = _as_rows(fn(model, [list(p) for p in prompts], n_new))  # no torch.no_grad() here, as above
    return {"rows": rows, "lengths": [len(p) for p in prompts], "batch_sizes": sorted(set(model.batch_sizes)),
            "model_tokens": model.tokens_run, "budget": max(len(p) for p in prompts) + n_new}


def _compare_batch_generation(expected, got) -> str | None:
    e, g, lengths = expected["rows"], got["rows"], expected["lengths"]
    B, n = len(e), len(e[0])
    if not (isinstance(g, list) and all(isinstance(row, list) for row in g)):
        return tr("expected a list of {b} lists (one per prompt) of {n} token ids each, got {g}",
                  "{n} 個ずつのトークン ID のリストを、プロンプトごとに 1 つ、合わせて {b} 個並べたリストが必要ですが、"
                  "{g} でした", b=B, n=n, g=repr(g)[:80])
    if len(g) != B:
        return tr("expected one list of new tokens per prompt ({b} lists), got {m}",
                  "プロンプトごとに新しいトークンのリストが 1 つ ({b} 個) 必要ですが、{m} 個でした", b=B, m=len(g))
    wrong = [r for r in range(B) if g[r] != e[r]]
    if wrong:
        r = wrong[0]
        er, gr = e[r], g[r]
        if len(gr) != len(er):
            text = tr("row {r} (prompt length {p}): expected {n} new tokens, got {m}: {g}",
                      "行 {r} (プロンプトの長さ {p}): 新しいトークンが {n} 個必要ですが、{m} 個でした: {g}",
                      r=r, p=lengths[r], n=len(er), m=len(gr), g=f"{gr[:12]}{' ...' if len(gr) > 12 else ''}")
        else:
            i = next(i for i, (a, b) in enumerate(zip(er, gr)) if a != b)
            text = tr("row {r} (prompt length {p}): the new tokens differ from step {i}: expected {e}, got {g} "
                      "(expected in all: {a})",
                      "行 {r} (プロンプトの長さ {p}): 新しいトークンがステップ {i} から違います: 期待 {e}、実際 {g} "
                      "(期待される全体: {a})", r=r, p=lengths[r], i=i, e=er[i:i + 8], g=gr[i:i + 8], a=er)
        longest = max(lengths)
        if all(lengths[w] < longest for w in wrong):
            text += tr(". The rows of the longest prompts are right, those with padding are not: is the padding on "
                       "the left, and is the attention mask passed at every step, with a column of ones for each "
                       "new token?",
                       "。最長のプロンプトの行は正しく、パディングのある行が違います。パディングは左にありますか。"
                       "アテンションマスクを毎ステップ渡し、新しいトークンごとに 1 の列を足していますか。")
        return text
    if got["batch_sizes"] != [B]:
        return tr("the tokens are right, but the model was called with batch sizes {s}: run the {b} prompts together, "
                  "as one left-padded batch of {b} rows with one KV cache of batch {b}",
                  "トークンは正しいのですが、モデルがバッチサイズ {s} で呼ばれました。{b} 個のプロンプトをまとめて、"
                  "左にパディングした {b} 行の 1 つのバッチとして、バッチ {b} の 1 つの KV キャッシュで実行してください",
                  s=got["batch_sizes"], b=B)
    if got["model_tokens"] > got["budget"]:
        return tr("the tokens are right, but the model was run on {n} positions per row in all; with a KV cache it "
                  "needs at most {b} (the padded prompts once, then one token per row and step). Is the cache used, "
                  "and do you pass only the new tokens after the prefill?",
                  "トークンは正しいのですが、モデルが 1 行あたり合計 {n} 個の位置で実行されました。KV キャッシュがあれば"
                  "最大 {b} 個で済みます (パディングしたプロンプトを 1 回、そのあとは 1 ステップに各行 1 トークン)。"
                  "キャッシュを使っていますか。プレフィルの後は新しいトークンだけを渡していますか。",
                  n=got["model_tokens"], b=got["budget"])
    return None


def _pad_left(prompts, pad_id):
    """ids and mask (B, P) long, the prompts right-aligned (a helper of the implementations below)."""
    P = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (P - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def generate_batch_right_padding(model, prompts, n_new, pad_id=0):
    """Pads on the right and reads logits[:, -1]: for a shorter prompt the last column is a pad, so its first
    prediction comes from a pad, and its new tokens land after the pads.
    ja: 右側にパディングして logits[:, -1] を読んでいます。短いプロンプトでは最後の列がパディングなので、最初の予測がパディングから出てしまい、新しいトークンもパディングの後ろに入ります。"""
    P = max(len(p) for p in prompts)
    ids = torch.tensor([list(p) + [pad_id] * (P - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (P - len(p)) for p in prompts])
    cache = model.new_cache(len(prompts), max_len=P + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        mask = torch.cat((mask, torch.ones(len(prompts), 1, dtype=mask.dtype)), dim=1)
        logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)
    return torch.stack(out, dim=1).tolist()


def generate_batch_without_mask(model, prompts, n_new, pad_id=0):
    """Left-pads but passes no attention_mask: the real tokens attend to the pads, and every row counts its
    positions from the first column, pads included.
    ja: 左にパディングしていますが attention_mask を渡していません。本物のトークンがパディングにアテンションし、どの行も位置をパディングを含む最初の列から数えます。"""
    ids, _ = _pad_left(prompts, pad_id)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        logits, _ = model(nxt[:, None], cache=cache)
    return torch.stack(out, dim=1).tolist()


def generate_batch_mask_only_at_prefill(model, prompts, n_new, pad_id=0):
    """Passes the attention mask to the prefill only: from the first new token on, the pads are attended to
    again and the positions are those of the padded row.
    ja: アテンションマスクをプレフィルにしか渡していません。最初の新しいトークンからは再びパディングにアテンションし、位置もパディングを含めた行のものになります。"""
    ids, mask = _pad_left(prompts, pad_id)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        logits, _ = model(nxt[:, None], cache=cache)
    return torch.stack(out, dim=1).tolist()


def generate_batch_mask_not_extended(model, prompts, n_new, pad_id=0):
    """Passes the prefill's mask (B, P) at every step: it must cover every position so far, so it needs a
    column of ones for each new token.
    ja: 毎ステップ、プレフィルのときのマスク (B, P) を渡しています。マスクはこれまでのすべての位置を覆う必要があるので、新しいトークンごとに 1 の列を足さなければなりません。"""
    ids, mask = _pad_left(prompts, pad_id)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)
    return torch.stack(out, dim=1).tolist()


def generate_batch_pads_counted_as_real(model, prompts, n_new, pad_id=0):
    """The mask is all ones (torch.ones_like(ids)): the pads count as real tokens.
    ja: マスクがすべて 1 です (torch.ones_like(ids))。パディングが本物のトークンとして数えられます。"""
    ids, _ = _pad_left(prompts, pad_id)
    mask = torch.ones_like(ids)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        mask = torch.cat((mask, torch.ones_like(mask[:, :1])), dim=1)
        logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)
    return torch.stack(out, dim=1).tolist()


def generate_batch_one_row_at_a_time(model, prompts, n_new, pad_id=0):
    """Right tokens, but the prompts run one after another, each with its own cache of batch 1: no batching.
    ja: トークンは正しいのですが、プロンプトを 1 つずつ、それぞれバッチ 1 のキャッシュで順に実行しています。バッチになっていません。"""
    rows = []
    for p in prompts:
        cache = model.new_cache(1, max_len=len(p) + n_new)
        logits, _ = model(torch.tensor([p]), cache=cache)
        row = []
        for _ in range(n_new):
            row.append(int(logits[0, -1].argmax()))
            logits, _ = model(torch.tensor([row[-1:]]), cache=cache)
        rows.append(row)
    return rows


def generate_batch_rows_share_one_cache(model, prompts, n_new, pad_id=0):
    """One cache of batch 1 for all the prompts, run one after another: each row after the first also sees the
    keys and values of the rows before it.
    ja: すべてのプロンプトでバッチ 1 のキャッシュを 1 つだけ使い、順に実行しています。2 行目以降は、それより前の行のキーとバリューも見てしまいます。"""
    cache = model.new_cache(1, max_len=sum(len(p) + n_new for p in prompts))  # room for every row
    rows = []
    for p in prompts:
        logits, _ = model(torch.tensor([p]), cache=cache)
        row = []
        for _ in range(n_new):
            row.append(int(logits[0, -1].argmax()))
            logits, _ = model(torch.tensor([row[-1:]]), cache=cache)
        rows.append(row)
    return rows


def generate_batch_without_cache(model, prompts, n_new, pad_id=0):
    """Right tokens, but the whole padded context is run through the model at every step (no KV cache).
    ja: トークンは正しいのですが、毎ステップ、パディングした文脈全体をモデルに通しています (KV キャッシュなし)。"""
    ids, mask = _pad_left(prompts, pad_id)
    out = []
    for _ in range(n_new):
        logits, _ = model(ids, attention_mask=mask)
        nxt = logits[:, -1:].argmax(-1)
        out.append(nxt)
        ids, mask = torch.cat((ids, nxt), dim=1), torch.cat((mask, torch.ones_like(nxt)), dim=1)
    return torch.cat(out, dim=1).tolist()


def generate_batch_returns_the_prompt_too(model, prompts, n_new, pad_id=0):
    """Returns the padded prompts followed by the new tokens instead of the new tokens only.
    ja: 新しいトークンだけでなく、パディングしたプロンプトの後ろに新しいトークンを付けて返しています。"""
    ids, mask = _pad_left(prompts, pad_id)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    for _ in range(n_new):
        nxt = logits[:, -1:].argmax(-1)
        ids, mask = torch.cat((ids, nxt), dim=1), torch.cat((mask, torch.ones_like(nxt)), dim=1)
        logits, _ = model(nxt, cache=cache, attention_mask=mask)
    return ids.tolist()


def generate_batch_argmax_over_positions(model, prompts, n_new, pad_id=0):
    """logits.argmax(dim=1)[:, -1]: the argmax over the positions, not over the vocabulary.
    ja: logits.argmax(dim=1)[:, -1]: 語彙ではなく位置についての argmax です。"""
    ids, mask = _pad_left(prompts, pad_id)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    out = []
    for _ in range(n_new):
        nxt = logits.argmax(dim=1)[:, -1]
        out.append(nxt)
        mask = torch.cat((mask, torch.ones_like(mask[:, :1])), dim=1)
        logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)
    return torch.stack(out, dim=1).tolist()


def generate_batch_switches_grad_off(model, prompts, n_new, pad_id=0):
    """torch.set_grad_enabled(False) at the top instead of @torch.no_grad(): the tokens are right, but gradients
    stay off for the rest of the notebook (training then fails).
    ja: @torch.no_grad() の代わりに冒頭で torch.set_grad_enabled(False) としています。トークンは正しいのですが、ノートブックの残りでも勾配がオフのままです (学習が失敗します)。"""
    torch.set_grad_enabled(False)
    ids, mask = _pad_left(prompts, pad_id)
    cache = model.new_cache(len(prompts), max_len=ids.shape[1] + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    out = []
    for _ in range(n_new):
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
        mask = torch.cat((mask, torch.ones_like(mask[:, :1])), dim=1)
        logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)
    return torch.stack(out, dim=1).tolist()


@torch.no_grad()
def generate_batch_bool_mask_with_cat(model, prompts, n_new, pad_id=0):
    """Correct: a bool mask grown with torch.cat, the new tokens kept as a (B, 1) tensor, rows as tensors."""
    device = model.tok_emb.weight.device
    B, P = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, P), pad_id, device=device)
    mask = torch.zeros(B, P, dtype=torch.bool, device=device)
    for b, p in enumerate(prompts):
        ids[b, P - len(p):] = torch.tensor(p, device=device)
        mask[b, P - len(p):] = True
    cache = model.new_cache(batch_size=B, max_len=P + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    new = []
    for _ in range(n_new):
        nxt = logits[:, -1:].argmax(dim=-1)  # (B, 1)
        new.append(nxt)
        mask = torch.cat((mask, torch.ones(B, 1, dtype=torch.bool, device=device)), dim=1)
        logits, _ = model(nxt, cache=cache, attention_mask=mask)
    return list(torch.cat(new, dim=1))  # B tensors of n_new ids: the checker accepts them


@torch.no_grad()
def generate_batch_long_mask_preallocated(model, prompts, n_new, pad_id=0):
    """Correct: ids and a long mask preallocated for all P + n_new columns, sliced to the positions so far."""
    B, P = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, P + n_new), pad_id, dtype=torch.long)
    mask = torch.zeros(B, P + n_new, dtype=torch.long)
    for b, p in enumerate(prompts):
        ids[b, P - len(p):P] = torch.tensor(p)
        mask[b, P - len(p):] = 1  # the new columns are real tokens too
    cache = model.new_cache(B, max_len=P + n_new - 1)
    logits, _ = model(ids[:, :P], cache=cache, attention_mask=mask[:, :P])
    for step in range(n_new):
        ids[:, P + step] = logits[:, -1].argmax(-1)
        if step < n_new - 1:
            S = P + step + 1
            logits, _ = model(ids[:, S - 1:S], cache=cache, attention_mask=mask[:, :S])
    return ids[:, P:].tolist()


@torch.no_grad()
def generate_batch_right_padded_read_at_each_end(model, prompts, n_new, pad_id=0):
    """Correct: right padding works too when the first prediction is read at each row's last real token; the
    new tokens then go after the pads, which the mask hides (the positions come from the mask, not the column)."""
    B, P = len(prompts), max(len(p) for p in prompts)
    ids = torch.tensor([list(p) + [pad_id] * (P - len(p)) for p in prompts])
    mask = torch.tensor([[1] * len(p) + [0] * (P - len(p)) for p in prompts])
    last = torch.tensor([len(p) - 1 for p in prompts])
    cache = model.new_cache(B, max_len=P + n_new)
    logits, _ = model(ids, cache=cache, attention_mask=mask)
    nxt = logits[torch.arange(B), last].argmax(-1)  # (B,): each row's own last real token
    out = [nxt]
    for _ in range(n_new - 1):
        mask = torch.cat((mask, torch.ones(B, 1, dtype=mask.dtype)), dim=1)
        logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)
        nxt = logits[:, -1].argmax(-1)
        out.append(nxt)
    return torch.stack(out, dim=1).tolist()


@exercise("ch10.generate_batch", reference=reference_generate_batch, also_reference=(generate_batch,),
          run=_drive_batch_generation, compare=_compare_batch_generation, uses_device=False,
          wrong=[generate_batch_right_padding, generate_batch_without_mask, generate_batch_mask_only_at_prefill,
                 generate_batch_mask_not_extended, generate_batch_pads_counted_as_real,
                 generate_batch_one_row_at_a_time, generate_batch_rows_share_one_cache, generate_batch_without_cache,
                 generate_batch_returns_the_prompt_too, generate_batch_argmax_over_positions,
                 generate_batch_switches_grad_off],
          correct=[generate_batch_bool_mask_with_cat, generate_batch_long_mask_preallocated,
                   generate_batch_right_padded_read_at_each_end],
          covers="GPT-2 style (learned positions) and RoPE models, grouped-query attention through SDPA, 4 prompts "
                 "of unequal lengths with a 1-token one and two of the longest length, 8 to 12 new tokens, the batch "
                 "size the model is called with (all rows at once) and the positions it is run on (the cache must "
                 "save work)",
          hint="left-pad: ids (B, P) with pad_id before each prompt and a mask (B, P), 1 on the real tokens; one "
               "cache = model.new_cache(B, max_len=P + n_new); prefill model(ids, cache=cache, attention_mask=mask); "
               "then repeat: next = logits[:, -1].argmax(-1) (B,), add a column of ones to the mask, and run "
               "model(next[:, None], cache=cache, attention_mask=mask). Return each row's n_new new tokens.",
          hint_ja="左にパディングします: 各プロンプトの前に pad_id を置いた ids (B, P) と、本物のトークンが 1 のマスク "
                  "(B, P)。キャッシュは cache = model.new_cache(B, max_len=P + n_new) の 1 つだけです。"
                  "model(ids, cache=cache, attention_mask=mask) でプレフィルし、そのあとは next = logits[:, -1].argmax(-1) "
                  "(B,) をとり、マスクに 1 の列を 1 つ足して model(next[:, None], cache=cache, attention_mask=mask) を"
                  "繰り返します。返すのは各行の新しい n_new 個のトークンです。")
def _batch_generation_cases():
    base = dict(vocab_size=64, block_size=48, n_layer=2, n_head=4, n_embd=32, init_std=0.3, tie_weights=False)
    modern = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
    g = torch.Generator().manual_seed(14)
    for cfg, lengths, n, what, what_ja in [
            # init_std 0.5: at 0.3 this GPT-2 model predicts a few tokens after almost any context, so the
            # prediction read at a pad (right padding) can match by chance
            (GPTConfig(**{**base, "init_std": 0.5}), (5, 1, 3, 5), 8, "GPT-2 style (learned positions)", "GPT-2 型 (学習される位置埋め込み)"),
            (GPTConfig(**base, **modern), (2, 7, 1, 7), 12, "modern (RoPE)", "モダン (RoPE)"),
            (GPTConfig(**base, **modern, n_kv_head=2, attn_impl="sdpa"), (1, 6, 3, 6), 8,
             "modern, grouped-query attention, SDPA", "モダン、grouped-query attention、SDPA")]:
        prompts = [torch.randint(0, 64, (p,), generator=g).tolist() for p in lengths]
        yield Case(args=(cfg, prompts, n), name=f"{what}, prompts {prompts}, {n} new tokens",
                   name_ja=f"{what_ja}、プロンプト {prompts}、新しいトークン {n} 個")


# ----------------------------------------------------------------------------- repeat_kv
def repeat_kv_tiled(x, n_rep):
    """x.repeat(1, n_rep, 1, 1): heads come out kv0, kv1, kv0, kv1 instead of kv0, kv0, kv1, kv1.
    ja: x.repeat(1, n_rep, 1, 1): ヘッドが kv0, kv0, kv1, kv1 ではなく kv0, kv1, kv0, kv1 の順になります。"""
    return x.repeat(1, n_rep, 1, 1)


def repeat_kv_over_positions(x, n_rep):
    """Repeats along the positions (dim 2) instead of the heads.
    ja: ヘッドではなく位置 (次元 2) の方向に繰り返しています。"""
    B, n_kv, S, hd = x.shape
    return x.repeat_interleave(n_rep, dim=2).reshape(B, n_kv * n_rep, S, hd)


def repeat_kv_along_head_dim(x, n_rep):
    """Repeats each vector along head_dim, then views it as more heads: mixes positions into heads.
    ja: 各ベクトルを head_dim の方向に繰り返してから、より多くのヘッドとして view しています。位置がヘッドに混ざります。"""
    B, n_kv, S, hd = x.shape
    return x.repeat(1, 1, 1, n_rep).view(B, n_kv * n_rep, S, hd)


def repeat_kv_detached(x, n_rep):
    """x.detach() first ("the cache needs no gradient"): in training, k_proj and v_proj then get no gradient.
    ja: 「キャッシュに勾配は要らない」として先に x.detach() しています。学習時に k_proj と v_proj に勾配が届きません。"""
    return x.detach().repeat_interleave(n_rep, dim=1)


def repeat_kv_n_rep_as_heads(x, n_rep):
    """Reads n_rep as the number of query heads and repeats each kv head n_rep // n_kv times.
    ja: n_rep をクエリヘッドの数と読み、各 kv ヘッドを n_rep // n_kv 回だけ繰り返しています。"""
    return x.repeat_interleave(max(n_rep // x.shape[1], 1), dim=1)


def repeat_kv_without_reshape(x, n_rep):
    """Returns the expanded (B, n_kv, n_rep, S, hd) tensor without merging the two head dimensions.
    ja: 展開した (B, n_kv, n_rep, S, hd) のテンソルを、2 つのヘッドの次元をまとめずに返しています。"""
    B, n_kv, S, hd = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, S, hd)


def repeat_kv_over_batch(x, n_rep):
    """repeat_interleave on dim 0: n_rep copies of the batch instead of the heads.
    ja: 次元 0 で repeat_interleave しています: ヘッドではなくバッチを n_rep 回複製しています。"""
    return x.repeat_interleave(n_rep, dim=0)


def repeat_kv_into_float32_buffer(x, n_rep):
    """Fills a torch.zeros(...) buffer head by head: a bfloat16 cache comes back float32.
    ja: torch.zeros(...) のバッファにヘッドごとに詰めています。bfloat16 のキャッシュが float32 で返ってきます。"""
    B, n_kv, S, hd = x.shape
    out = torch.zeros(B, n_kv * n_rep, S, hd, device=x.device)
    for h in range(n_kv * n_rep):
        out[:, h] = x[:, h // n_rep]
    return out


def repeat_kv_by_index(x, n_rep):
    """Correct: query head h reads kv head h // n_rep, with index_select."""
    index = torch.arange(x.shape[1] * n_rep, device=x.device) // n_rep
    return x.index_select(1, index)


def repeat_kv_by_concatenation(x, n_rep):
    """Correct: each kv head concatenated n_rep times, in order."""
    return torch.cat([x[:, h:h + 1] for h in range(x.shape[1]) for _ in range(n_rep)], dim=1)


def repeat_kv_by_repeat_interleave(x, n_rep):
    """Correct: repeat_interleave on the head dimension."""
    return x.repeat_interleave(n_rep, dim=1)


@exercise("ch10.repeat_kv", reference=repeat_kv,
          wrong=[repeat_kv_tiled, repeat_kv_over_positions, repeat_kv_along_head_dim, repeat_kv_detached,
                 repeat_kv_n_rep_as_heads, repeat_kv_without_reshape, repeat_kv_over_batch,
                 repeat_kv_into_float32_buffer],
          correct=[repeat_kv_by_index, repeat_kv_by_concatenation, repeat_kv_by_repeat_interleave],
          dtypes=("bf16", "fp16"),
          covers="grouped-query and multi-query heads, n_rep = 1, 3 kv heads, a batch of 2, bfloat16 and float16, "
                 "gradients of x",
          hint="query head h uses kv head h // n_rep, so each kv head is repeated n_rep times in a row: "
               "x.repeat_interleave(n_rep, dim=1), or x[:, :, None].expand(B, n_kv, n_rep, S, hd)"
               ".reshape(B, n_kv * n_rep, S, hd).",
          hint_ja="クエリヘッド h は kv ヘッド h // n_rep を使うので、各 kv ヘッドを n_rep 回続けて並べます: "
                  "x.repeat_interleave(n_rep, dim=1)、または x[:, :, None].expand(B, n_kv, n_rep, S, hd)"
                  ".reshape(B, n_kv * n_rep, S, hd)。")
def _repeat_kv_cases():
    g = torch.Generator().manual_seed(13)
    for shape, n_rep, what, what_ja in [
            ((2, 2, 5, 4), 3, "GQA, 2 kv heads for 6 query heads", "GQA、クエリヘッド 6 個に kv ヘッド 2 個"),
            ((1, 1, 6, 8), 4, "MQA, 1 kv head for 4 query heads", "MQA、クエリヘッド 4 個に kv ヘッド 1 個"),
            ((2, 4, 3, 8), 1, "n_rep = 1 (plain multi-head)", "n_rep = 1 (普通のマルチヘッド)"),
            ((1, 3, 4, 2), 2, "GQA, 3 kv heads for 6 query heads", "GQA、クエリヘッド 6 個に kv ヘッド 3 個")]:
        yield Case(args=(torch.randn(*shape, generator=g), n_rep), name=f"{what}: x {shape}, n_rep={n_rep}",
                   name_ja=f"{what_ja}: x {shape}、n_rep={n_rep}")
