"""Chapter 12 (training on real Japanese): a batch read from a token shard, bits per character of
a validation set, and the top-p (nucleus) filter used when sampling.

References: the shard reader is `minigpt.shards.ShardedTokens.get_batch` with its random draw taken
out (the starts are given), written here as `reference_shard_batch`; bits per character is the
formula of `minigpt.data.TokenData.bits_per_char` applied to a summed cross-entropy; the top-p
filter is `minigpt.generate.filter_logits(logits, top_p=p)`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.check import Case, exercise
from minigpt.generate import filter_logits

LN2 = math.log(2)


# ============================================================================= shard_batch
def reference_shard_batch(tokens: torch.Tensor, starts: torch.Tensor, seq_len: int):
    """tokens: a 1-D torch.uint16 tensor (a shard: torch.from_numpy of its memory map, no copy);
    starts: (B,) int64 window starts. Returns x, y: (B, seq_len) int64, y the window shifted by one."""
    need = seq_len + 1
    windows = torch.stack([tokens[s:s + need] for s in starts.tolist()]).long()  # (B, T+1)
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def shard_batch_keeps_uint16(tokens, starts, seq_len):
    """Keeps the shard's dtype (uint16): the model's embedding and cross-entropy need int64 ids.
    ja: シャードの dtype (uint16) のままなので、埋め込みとクロスエントロピーが必要とする int64 になっていません。"""
    w = torch.stack([tokens[s:s + seq_len + 1] for s in starts.tolist()])
    return w[:, :-1], w[:, 1:]


def shard_batch_via_int16(tokens, starts, seq_len):
    """Converts through int16: ids of 32768 and above (a vocabulary larger than 32k) turn negative.
    ja: int16 を経由するので、32768 以上の id (32k を超える語彙) が負の数になります。"""
    w = torch.stack([tokens[s:s + seq_len + 1] for s in starts.tolist()]).to(torch.int16).long()
    return w[:, :-1], w[:, 1:]


def shard_batch_not_shifted(tokens, starts, seq_len):
    """y is the same window as x (not shifted): the model learns to copy its input.
    ja: y が x と同じ窓 (ずらしていない) なので、モデルは入力を写すことを学びます。"""
    w = torch.stack([tokens[s:s + seq_len] for s in starts.tolist()]).long()
    return w, w.clone()


def shard_batch_window_too_short(tokens, starts, seq_len):
    """Reads seq_len tokens per window instead of seq_len + 1, so x and y have seq_len - 1 tokens.
    ja: 窓ごとに seq_len + 1 ではなく seq_len トークンを読むので、x と y が seq_len - 1 トークンになります。"""
    w = torch.stack([tokens[s:s + seq_len] for s in starts.tolist()]).long()
    return w[:, :-1], w[:, 1:]


def shard_batch_swapped(tokens, starts, seq_len):
    """Returns (y, x): the targets come first.
    ja: (y, x) の順で返すので、ターゲットが先になっています。"""
    x, y = reference_shard_batch(tokens, starts, seq_len)
    return y, x


def shard_batch_transposed(tokens, starts, seq_len):
    """Returns (seq_len, B) tensors: positions first, the batch second.
    ja: 形状 (seq_len, B) で返すので、位置が先でバッチが後になっています。"""
    x, y = reference_shard_batch(tokens, starts, seq_len)
    return x.T.contiguous(), y.T.contiguous()


def shard_batch_starts_off_by_one(tokens, starts, seq_len):
    """Reads each window from start + 1: every window is one token late.
    ja: 各窓を start + 1 から読むので、どの窓も 1 トークン遅れます。"""
    return reference_shard_batch(tokens, starts + 1, seq_len)


def shard_batch_first_start_only(tokens, starts, seq_len):
    """Uses starts[0] for every row: the batch is B copies of one window.
    ja: すべての行に starts[0] を使うので、バッチが 1 つの窓の B 個のコピーになります。"""
    return reference_shard_batch(tokens, starts[:1].repeat(len(starts)), seq_len)


def shard_batch_float(tokens, starts, seq_len):
    """Returns float tensors: token ids must be integers (int64).
    ja: float のテンソルを返します。トークン id は整数 (int64) でなければなりません。"""
    x, y = reference_shard_batch(tokens, starts, seq_len)
    return x.float(), y.float()


# correct alternatives
def shard_batch_fancy_index(tokens, starts, seq_len):
    """One indexing read: tokens[starts[:, None] + arange(T + 1)]."""
    w = tokens[starts[:, None] + torch.arange(seq_len + 1)].long()
    return w[:, :-1], w[:, 1:]


def shard_batch_row_by_row(tokens, starts, seq_len):
    """A loop: one tensor per window from a list of ints, stacked."""
    xs, ys = [], []
    for s in starts.tolist():
        w = torch.tensor(tokens[s:s + seq_len + 1].tolist(), dtype=torch.long)
        xs.append(w[:-1])
        ys.append(w[1:])
    return torch.stack(xs), torch.stack(ys)


def shard_batch_through_numpy(tokens, starts, seq_len):
    """Through numpy (what np.memmap hands out), cast to int64 there."""
    a = tokens.numpy()
    w = torch.from_numpy(np.stack([a[s:s + seq_len + 1].astype(np.int64) for s in starts.tolist()]))
    return w[:, :-1], w[:, 1:]


def _shard(n: int, vocab: int, seed: int, dtype=np.uint16) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, vocab, size=n).astype(dtype))


@exercise("ch12.shard_batch", reference=reference_shard_batch, uses_device=False, grad=False,
          wrong=[shard_batch_keeps_uint16, shard_batch_via_int16, shard_batch_not_shifted, shard_batch_window_too_short,
                 shard_batch_swapped, shard_batch_transposed, shard_batch_starts_off_by_one,
                 shard_batch_first_start_only, shard_batch_float],
          correct=[shard_batch_fancy_index, shard_batch_row_by_row, shard_batch_through_numpy],
          output_names=("x", "y"),
          covers="uint16 shards with ids up to 65,535, an int32 stream, one window, windows that end on the shard's "
                 "last token, overlapping windows, seq_len 1, x and y compared separately, inputs left unchanged",
          hint="for each start s take the seq_len + 1 tokens tokens[s : s + seq_len + 1]; stack them into a (B, T+1) "
               "int64 tensor; x is every window without its last token, y without its first.",
          hint_ja="各 start s について seq_len + 1 個のトークン tokens[s : s + seq_len + 1] を取り、(B, T+1) の int64 "
                  "テンソルに積み重ねます。x は各窓の最後のトークンを除いたもの、y は最初のトークンを除いたものです。")
def _shard_batch_cases():
    a = _shard(200, 8000, 0)
    yield Case(args=(a, torch.tensor([0, 17, 150, 42]), 8), name="a uint16 shard of 200 tokens, 4 windows of 8",
               name_ja="200 トークンの uint16 シャード、長さ 8 の窓が 4 つ")
    yield Case(args=(a, torch.tensor([5]), 16), name="one window of 16", name_ja="長さ 16 の窓が 1 つ")
    yield Case(args=(a, torch.tensor([200 - 13, 0, 200 - 13]), 12),
               name="windows ending on the shard's last token (start = len - seq_len - 1)",
               name_ja="シャードの最後のトークンで終わる窓 (start = len - seq_len - 1)")
    big = _shard(300, 65536, 1)
    yield Case(args=(big, torch.tensor([3, 4, 5, 100, 250]), 32),
               name="ids up to 65,535 (a 64k vocabulary), overlapping windows",
               name_ja="65,535 までの id (64k の語彙)、重なり合う窓")
    yield Case(args=(_shard(64, 100_000, 2, np.int32), torch.tensor([0, 30]), 20),
               name="an int32 stream (vocabulary 100,000)", name_ja="int32 のトークン列 (語彙 100,000)")
    yield Case(args=(a, torch.tensor([9, 10, 11]), 1), name="seq_len 1", name_ja="seq_len 1")


# ============================================================================= bits_per_char
def reference_bits_per_char(logits: torch.Tensor, targets: torch.Tensor, n_chars: int) -> torch.Tensor:
    """logits (B, T, V), targets (B, T) int64, n_chars: the characters the targets encode.
    Returns the 0-dim tensor sum of -ln p(target) / n_chars / ln 2 (bits per character)."""
    nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
    return nats / n_chars / LN2


def bpc_mean_over_tokens(logits, targets, n_chars):
    """Averages the cross-entropy over the tokens, then divides by the characters again.
    ja: クロスエントロピーをトークンで平均してから、さらに文字数で割っています。"""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)) / n_chars / LN2


def bpc_in_nats(logits, targets, n_chars):
    """Forgets the / ln 2: nats per character, not bits.
    ja: ln 2 で割るのを忘れているので、ビットではなくナット毎文字になっています。"""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum") / n_chars


def bpc_per_token(logits, targets, n_chars):
    """Bits per token (mean cross-entropy / ln 2): n_chars is not used.
    ja: トークンあたりのビット数 (平均クロスエントロピー / ln 2) で、n_chars を使っていません。"""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1)) / LN2


def bpc_ratio_inverted(logits, targets, n_chars):
    """Mean cross-entropy times characters per token instead of tokens per character.
    ja: 平均クロスエントロピーに「文字あたりのトークン数」ではなく「トークンあたりの文字数」を掛けています。"""
    ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
    return ce * n_chars / targets.numel() / LN2


def bpc_log10(logits, targets, n_chars):
    """Divides by ln 10 instead of ln 2 (decimal digits, not bits).
    ja: ln 2 ではなく ln 10 で割っています (ビットではなく 10 進の桁数)。"""
    nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
    return nats / n_chars / math.log(10)


def bpc_shifts_again(logits, targets, n_chars):
    """Shifts the targets once more (logits[:, :-1] against targets[:, 1:]): they are already the next tokens.
    ja: ターゲットをもう一度ずらしています (logits[:, :-1] と targets[:, 1:])。ターゲットはすでに次のトークンです。"""
    lg, tg = logits[:, :-1], targets[:, 1:]
    nats = F.cross_entropy(lg.reshape(-1, lg.size(-1)), tg.reshape(-1), reduction="sum")
    return nats / n_chars / LN2


def bpc_log_of_softmax(logits, targets, n_chars):
    """log(softmax(logits)): a target whose probability underflows to 0 gives log 0 = -inf (use log_softmax).
    ja: log(softmax(logits)) なので、確率が 0 にアンダーフローしたターゲットで log 0 = -inf になります (log_softmax を使う)。"""
    p = torch.softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -torch.log(p).sum() / n_chars / LN2


def bpc_softmax_over_positions(logits, targets, n_chars):
    """log_softmax over the positions (dim 1) instead of the vocabulary.
    ja: 語彙ではなく位置 (dim 1) について log_softmax を取っています。"""
    lp = torch.log_softmax(logits, dim=1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -lp.sum() / n_chars / LN2


def bpc_as_float(logits, targets, n_chars):
    """Returns a Python float (.item()): no gradient, and not a tensor.
    ja: Python の float (.item()) を返すので、勾配がなくテンソルでもありません。"""
    return reference_bits_per_char(logits, targets, n_chars).item()


# correct alternatives
def bpc_via_gather(logits, targets, n_chars):
    """log_softmax, then pick each target's log-probability with gather."""
    lp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -lp.sum() / (n_chars * LN2)


def bpc_via_logsumexp(logits, targets, n_chars):
    """-ln p = logsumexp(logits) - logit of the target; log2 via change of base."""
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    nats = (torch.logsumexp(logits, dim=-1) - picked).sum()
    return nats / n_chars * (1 / LN2)


def bpc_mean_times_ratio(logits, targets, n_chars):
    """The mean cross-entropy (nats/token) times tokens per character, in float64, cast back."""
    ce = F.cross_entropy(logits.double().reshape(-1, logits.size(-1)), targets.reshape(-1))
    return (ce * (targets.numel() / n_chars) / math.log(2.0)).to(logits.dtype)


@exercise("ch12.bits_per_char", reference=reference_bits_per_char,
          wrong=[bpc_mean_over_tokens, bpc_in_nats, bpc_per_token, bpc_ratio_inverted, bpc_log10, bpc_shifts_again,
                 bpc_log_of_softmax, bpc_softmax_over_positions, bpc_as_float],
          correct=[bpc_via_gather, bpc_via_logsumexp, bpc_mean_times_ratio],
          covers="batches of 1 to 4 windows, vocabularies of 7 to 500, more characters than tokens and fewer, "
                 "logits spread over 200 (a log-probability that underflows), float64, gradients of the logits",
          hint="bits per character = (sum over every target of -ln p(target)) / n_chars / ln 2; -ln p comes from "
               "log_softmax over the vocabulary (the last dimension), or F.cross_entropy with reduction='sum'.",
          hint_ja="文字あたりのビット数 = (すべてのターゲットについての -ln p(target) の和) / n_chars / ln 2。-ln p は語彙 "
                  "(最後の次元) についての log_softmax、または reduction='sum' の F.cross_entropy から求めます。")
def _bpc_cases():
    g = torch.Generator().manual_seed(12)
    yield Case(args=(torch.randn(2, 5, 11, generator=g), torch.randint(0, 11, (2, 5), generator=g), 17),
               name="2 windows of 5 tokens, vocabulary 11, 17 characters", name_ja="5 トークンの窓が 2 つ、語彙 11、17 文字")
    yield Case(args=(torch.randn(1, 8, 50, generator=g) * 3, torch.randint(0, 50, (1, 8), generator=g), 6),
               name="one window, fewer characters (6) than tokens (8)", name_ja="窓 1 つ、文字数 (6) がトークン数 (8) より少ない")
    yield Case(args=(torch.randn(4, 16, 500, generator=g), torch.randint(0, 500, (4, 16), generator=g), 125),
               name="4 windows of 16, vocabulary 500", name_ja="16 トークンの窓が 4 つ、語彙 500")
    yield Case(args=(torch.randn(2, 3, 7, generator=g) * 100, torch.randint(0, 7, (2, 3), generator=g), 9),
               name="logits spread over about 200 (some targets have probability below 1e-38)",
               name_ja="約 200 の幅に広がったロジット (確率が 1e-38 未満のターゲットがある)")
    yield Case(args=(torch.randn(3, 4, 9, generator=g, dtype=torch.float64), torch.randint(0, 9, (3, 4), generator=g), 20),
               name="float64 logits", name_ja="float64 のロジット")


# ============================================================================= top_p_filter
def reference_top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probabilities add up to at least p; the
    other logits become -inf. logits (..., V), 0 < p < 1."""
    return filter_logits(logits, top_p=p)


def _sorted_probs(logits):
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    return sorted_logits, order, torch.softmax(sorted_logits, dim=-1)


def top_p_drops_the_crossing_token(logits, p):
    """Keeps only tokens whose cumulative probability is <= p: the token that crosses p is dropped
    (and with a top token above p, nothing is left).
    ja: 累積確率が p 以下のトークンだけを残すので、p をまたぐトークンが落ちます (先頭のトークンが p を超えると何も残りません)。"""
    _, order, probs = _sorted_probs(logits)
    drop_sorted = probs.cumsum(-1) > p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_ascending(logits, p):
    """Sorts in ascending order: keeps the least likely tokens.
    ja: 昇順に並べるので、確率の低いトークンを残します。"""
    sorted_logits, order = torch.sort(logits, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop_sorted = probs.cumsum(-1) - probs >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_not_unsorted(logits, p):
    """Applies the mask computed in sorted order to the logits in their original order.
    ja: 並べ替えた順で求めたマスクを、元の順のロジットにそのまま当てています。"""
    _, _, probs = _sorted_probs(logits)
    drop = probs.cumsum(-1) - probs >= p
    return logits.masked_fill(drop, float("-inf"))


def top_p_cumsum_of_exp(logits, p):
    """Accumulates exp(logits) without normalising by their sum: not probabilities.
    ja: exp(logits) を和で正規化せずに累積しているので、確率になっていません。"""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    e = sorted_logits.exp()
    drop_sorted = e.cumsum(-1) - e >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def top_p_zero_not_inf(logits, p):
    """Sets the dropped logits to 0 instead of -inf: they keep a probability.
    ja: 落とすロジットを -inf ではなく 0 にしているので、確率が残ります。"""
    keep = torch.isfinite(reference_top_p_filter(logits, p))
    return logits * keep


def top_p_in_place(logits, p):
    """Writes -inf into the caller's logits (logits[drop] = -inf on the input).
    ja: 呼び出し側のロジットに -inf を書き込んでいます (入力に logits[drop] = -inf)。"""
    drop = ~torch.isfinite(reference_top_p_filter(logits, p))
    logits[drop] = float("-inf")
    return logits


def top_p_returns_probabilities(logits, p):
    """Returns the renormalised probabilities of the kept tokens instead of logits.
    ja: ロジットではなく、残したトークンの正規化し直した確率を返しています。"""
    return torch.softmax(reference_top_p_filter(logits, p), dim=-1)


def top_p_first_row_for_all(logits, p):
    """Computes the kept set from the first row only and applies it to every row of a batch.
    ja: 最初の行だけで残す集合を決め、バッチのすべての行に当てています。"""
    keep0 = torch.isfinite(reference_top_p_filter(logits.reshape(-1, logits.size(-1))[0], p))
    return logits.masked_fill(~keep0, float("-inf"))


def top_p_as_top_k(logits, p):
    """Keeps the k = ceil(p * V) largest logits: a fraction of the vocabulary, not of the probability.
    ja: 大きい方から k = ceil(p * V) 個のロジットを残しています。確率ではなく語彙の割合です。"""
    k = max(1, math.ceil(p * logits.size(-1)))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


# correct alternatives
def top_p_row_by_row(logits, p):
    """A Python loop over the rows and over the sorted tokens."""
    flat = logits.reshape(-1, logits.size(-1))
    out = []
    for row in flat:
        probs = torch.softmax(row, dim=-1)
        order = torch.argsort(probs, descending=True).tolist()
        keep = torch.zeros(row.size(0), dtype=torch.bool)
        total = 0.0
        for i in order:
            keep[i] = True
            total += float(probs[i].detach())
            if total >= p:
                break
        out.append(row.masked_fill(~keep.to(row.device), float("-inf")))
    return torch.stack(out).reshape(logits.shape)


def top_p_by_threshold(logits, p):
    """Finds the smallest kept probability, then keeps every token at least that likely (no scatter)."""
    probs = torch.softmax(logits, dim=-1)
    sorted_probs = torch.sort(probs, dim=-1, descending=True).values
    before = sorted_probs.cumsum(-1) - sorted_probs
    n_keep = (before < p).sum(-1, keepdim=True)  # >= 1
    threshold = sorted_probs.gather(-1, n_keep - 1)
    return logits.masked_fill(probs < threshold, float("-inf"))


def top_p_by_gather_back(logits, p):
    """The mask in sorted order, brought back with gather of the inverse permutation."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    drop_sorted = torch.cat([torch.zeros_like(probs[..., :1], dtype=torch.bool),
                             probs.cumsum(-1)[..., :-1] >= p], dim=-1)
    inverse = torch.argsort(order, dim=-1)
    return logits.masked_fill(drop_sorted.gather(-1, inverse), float("-inf"))


def _distinct(g, *shape, scale=2.0):
    # distinct values (no ties, so every correct way of sorting agrees)
    n = int(np.prod(shape))
    x = torch.randperm(n * 4, generator=g)[:n].float() / (n * 4) * scale * 4
    return x.reshape(shape)


@exercise("ch12.top_p_filter", reference=reference_top_p_filter, also_reference=(filter_logits,),
          wrong=[top_p_drops_the_crossing_token, top_p_ascending, top_p_not_unsorted, top_p_cumsum_of_exp,
                 top_p_zero_not_inf, top_p_in_place, top_p_returns_probabilities, top_p_first_row_for_all,
                 top_p_as_top_k],
          correct=[top_p_row_by_row, top_p_by_threshold, top_p_by_gather_back],
          covers="one vector and a batch of rows, p from 0.1 to 0.95, a most likely token above p (only it is kept), "
                 "logits in shuffled order, vocabularies of 6 to 1000, gradients of the logits",
          hint="sort the probabilities in descending order; a token is kept when the probability of the tokens "
               "BEFORE it is still below p (so the most likely token always stays); put the mask back in the "
               "original order and set the other logits to -inf on a copy.",
          hint_ja="確率を降順に並べ、そのトークンより前のトークンの確率の和がまだ p 未満なら残します (最も確率の高いトークンは"
                  "必ず残ります)。マスクを元の順に戻し、コピーの上で他のロジットを -inf にしてください。")
def _top_p_cases():
    g = torch.Generator().manual_seed(7)
    yield Case(args=(torch.tensor([1.0, 3.0, 0.5, 2.0, -1.0, 2.5]), 0.7), name="6 logits in shuffled order, p = 0.7",
               name_ja="順不同のロジット 6 個、p = 0.7")
    yield Case(args=(torch.tensor([0.2, 5.0, 0.1, 1.0, 0.3]), 0.5),
               name="the most likely token alone has more than p = 0.5 (only it is kept)",
               name_ja="最も確率の高いトークンだけで p = 0.5 を超える (それだけが残る)")
    yield Case(args=(_distinct(g, 4, 50, scale=3.0), 0.9), name="a batch of 4 rows of 50, p = 0.9",
               name_ja="50 個の行が 4 行のバッチ、p = 0.9")
    yield Case(args=(_distinct(g, 2, 3, 40), 0.3), name="a (2, 3, 40) tensor, p = 0.3", name_ja="形状 (2, 3, 40) のテンソル、p = 0.3")
    yield Case(args=(_distinct(g, 1000, scale=4.0), 0.95), name="1000 logits, p = 0.95", name_ja="ロジット 1000 個、p = 0.95")
    yield Case(args=(_distinct(g, 3, 20, scale=1.0), 0.1), name="3 flat rows of 20, p = 0.1", name_ja="平らな 20 個の行が 3 行、p = 0.1")
