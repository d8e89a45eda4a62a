"""Chapter 00 (setup and tour): the first exercise, a numerically safe softmax."""

from __future__ import annotations

import torch

from minigpt.check import Case, exercise


def reference_softmax(x: torch.Tensor) -> torch.Tensor:
    """PyTorch's own softmax over the last dimension is the reference (the oracle)."""
    return torch.softmax(x, dim=-1)


# Plausible wrong implementations: each one passes some cases and fails others.
def softmax_without_max(x):
    """Textbook formula without subtracting the maximum: exp(1000) overflows to inf, inf/inf = NaN.
    ja: 最大値を引かない教科書どおりの式: exp(1000) が inf にオーバーフローし、inf/inf = NaN になります。"""
    e = torch.exp(x)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_wrong_axis(x):
    """Normalises over the first dimension instead of the last.
    ja: 最後の次元ではなく最初の次元で正規化しています。"""
    e = torch.exp(x - x.max(dim=0, keepdim=True).values)
    return e / e.sum(dim=0, keepdim=True)


def softmax_global_sum(x):
    """Divides by the sum over the whole tensor instead of each row.
    ja: 行ごとではなくテンソル全体の和で割っています。"""
    e = torch.exp(x - x.max())
    return e / e.sum()


def softmax_always_float32(x):
    """Casts to float32, so a float64 or bf16 input comes back as float32.
    ja: float32 に変換するので、float64 や bf16 の入力が float32 で返ってきます。"""
    x = x.float()
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_global_max(x):
    """Subtracts the maximum of the whole tensor, not of each row: a row far below the others
    underflows to exp(-1000) = 0 everywhere, and 0/0 = NaN.
    ja: 行ごとではなくテンソル全体の最大値を引くので、他の行よりずっと小さい行は exp が 0 になり 0/0 = NaN になります。"""
    e = torch.exp(x - x.max())
    return e / e.sum(dim=-1, keepdim=True)


def softmax_minus_min(x):
    """Subtracts the row's minimum instead of its maximum: a row spread wider than ~88 overflows.
    ja: 行の最大値ではなく最小値を引くので、値の幅が 88 程度を超える行でオーバーフローします。"""
    e = torch.exp(x - x.min(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_clamped(x):
    """Clamps the logits to [-80, 80] instead of subtracting the maximum: large logits all become 80.
    ja: 最大値を引く代わりにロジットを [-80, 80] に切り詰めるので、大きなロジットがすべて 80 になります。"""
    e = torch.exp(x.clamp(-80, 80))
    return e / e.sum(dim=-1, keepdim=True)


def softmax_in_half(x):
    """Computes in float16 to save memory: 3 significant digits only, and logits beyond 65504 become inf.
    ja: メモリ節約のため float16 で計算するので、有効数字は 3 桁ほどで、65504 を超えるロジットは inf になります。"""
    h = x.half()
    e = torch.exp(h - h.max(dim=-1, keepdim=True).values)
    return (e / e.sum(dim=-1, keepdim=True)).to(x.dtype)


def softmax_in_place(x):
    """Subtracts the maximum in place (x -= ...): the caller's logits are changed.
    ja: 最大値をインプレースで引く (x -= ...) ので、呼び出し側のロジットが書き換わります。"""
    x -= x.max(dim=-1, keepdim=True).values
    e = torch.exp(x)
    return e / e.sum(dim=-1, keepdim=True)


@torch.no_grad()
def softmax_without_grad(x):
    """Decorated with @torch.no_grad(): right values, but no gradient reaches the logits.
    ja: @torch.no_grad() が付いているので、値は正しくてもロジットに勾配が届きません。"""
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_detached_max(x):
    """Builds the result from numbers: torch.tensor(...) of a list has no gradient.
    ja: 結果を数値から作り直す (リストからの torch.tensor(...)) ので勾配がありません。"""
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return torch.tensor((e / e.sum(dim=-1, keepdim=True)).tolist(), dtype=x.dtype, device=x.device)


# Alternative correct implementations: the checker must accept them.
def softmax_via_logsumexp(x):
    """exp(x - logsumexp(x)): the log-space form (in float32 at least, as torch.softmax computes)."""
    f = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return torch.exp(f - torch.logsumexp(f, dim=-1, keepdim=True)).to(x.dtype)


def softmax_in_float64(x):
    """Computes in float64 and casts back to the input's dtype."""
    d = x.double()
    e = torch.exp(d - d.amax(dim=-1, keepdim=True))
    return (e / e.sum(dim=-1, keepdim=True)).to(x.dtype)


def softmax_row_by_row(x):
    """A Python loop over the rows (slow but right)."""
    rows = x.reshape(-1, x.shape[-1])
    out = []
    for row in rows:
        e = (row - row.max()).exp()
        out.append(e / e.sum())
    return torch.stack(out).reshape(x.shape)


@exercise("ch00.softmax", reference=reference_softmax, also_reference=(torch.softmax, torch.nn.functional.softmax),
          wrong=[softmax_without_max, softmax_wrong_axis, softmax_global_sum, softmax_always_float32,
                 softmax_global_max, softmax_minus_min, softmax_clamped, softmax_in_half, softmax_in_place,
                 softmax_without_grad, softmax_detached_max],
          correct=[softmax_via_logsumexp, softmax_in_float64, softmax_row_by_row],
          dtypes=("bf16", "fp16"),
          covers="1-3 dimensions, logits around 1000, rows on very different scales, rows spread wider than 88, "
                 "rows of 1000 logits, float64, bf16 and fp16, gradients",
          hint="softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)) over the LAST dimension "
               "(dim=-1, keepdim=True), the max of each row; keep the input's dtype.",
          hint_ja="最後の次元 (dim=-1, keepdim=True) について softmax(x)_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x))。"
                  "max は行ごとに取り、入力の dtype を保ってください。")
def _softmax_cases():
    g = torch.Generator().manual_seed(0)
    yield Case(args=(torch.randn(5, generator=g),), name="one vector of 5 logits", name_ja="ロジット 5 個のベクトル 1 本")
    yield Case(args=(torch.randn(3, 7, generator=g),), name="3 rows of 7 logits", name_ja="ロジット 7 個の行が 3 行")
    yield Case(args=(torch.randn(2, 4, 6, generator=g) * 3,), name="a (2, 4, 6) tensor", name_ja="形状 (2, 4, 6) のテンソル")
    yield Case(args=(torch.randn(4, 5, generator=g) * 10 + 1000,), name="large logits around 1000",
               name_ja="1000 前後の大きなロジット")
    yield Case(args=(torch.randn(3, 3, generator=g, dtype=torch.float64),), name="float64 input", name_ja="float64 の入力")
    scales = torch.tensor([[0.0], [1000.0], [-500.0]])
    yield Case(args=(torch.randn(3, 6, generator=g) + scales,), name="rows on very different scales (around 0, 1000, -500)",
               name_ja="スケールが大きく違う行 (0、1000、-500 前後)")
    yield Case(args=(torch.linspace(-60, 60, 9).repeat(2, 1) + torch.randn(2, 9, generator=g),),
               name="rows spread from -60 to 60 (wider than 88)", name_ja="-60 から 60 まで広がった行 (幅が 88 を超える)")
    yield Case(args=(torch.randn(2, 1000, generator=g) * 4,), name="2 long rows of 1000 logits",
               name_ja="ロジット 1000 個の長い行が 2 行")


# ----------------------------------------------------------------------------- UTF-8 by hand
def reference_utf8_encode(cp: int) -> bytes:
    """Python's own UTF-8 encoder is the reference (the oracle): the bytes of the character chr(cp)."""
    return chr(cp).encode("utf-8")


def _bits(b) -> str:
    return " ".join(f"{x:08b}" for x in b)


def _compare_bytes(expected, got, *args, **kwargs) -> str | None:
    """Equal bytes pass; otherwise both sides are shown in hex and in bits (the marker bits are the point)."""
    from minigpt.i18n import tr

    if type(got) is type(expected) and got == expected:
        return None
    if not isinstance(expected, (bytes, bytearray)):  # a wrong implementation in the expected role
        return tr("output: {e!r} expected, got {g!r}", "出力: {e!r} が期待されますが、{g!r} でした", e=expected, g=got)
    if not isinstance(got, (bytes, bytearray)):
        return tr("output: expected bytes ({e}), got a {t} ({g!r}): build it with bytes([...])",
                  "出力: bytes ({e}) が期待されますが、{t} ({g!r}) でした。bytes([...]) で作ってください",
                  e=expected.hex(" "), t=type(got).__name__, g=got)
    return tr("output: expected {n} byte(s) {e} (bits {eb}), got {m} byte(s) {g} (bits {gb})",
              "出力: {n} バイト {e} (ビット {eb}) が期待されますが、{m} バイト {g} (ビット {gb}) でした",
              n=len(expected), e=expected.hex(" "), eb=_bits(expected), m=len(got), g=bytes(got).hex(" "),
              gb=_bits(got))


def _utf8_from_tiers(cp, limits=(0x80, 0x800, 0x10000), leads=(0x00, 0xC0, 0xE0, 0xF0), cont=0x80, mask=0x3F,
                     shift=6, little_endian=False):
    """UTF-8 with knobs, to build the wrong implementations below from one place."""
    n = 1 + sum(cp >= lim for lim in limits)
    tail = [cont | ((cp >> (shift * k)) & mask) for k in range(n - 1)][::-1]  # the last 6 bits go last
    lead_bits = 7 - n if n > 1 else 7
    lead = (leads[n - 1] | ((cp >> (shift * (n - 1))) & ((1 << lead_bits) - 1))) & 0xFF
    out = [lead] + tail
    return bytes(out[::-1] if little_endian else out)


# Plausible wrong implementations: each one passes some cases and fails others.
def utf8_lead_limit_off_by_one(cp):
    """1 byte only below 0x7F (cp < 0x7F instead of cp < 0x80): U+007F gets 2 bytes.
    ja: 1 バイトになるのを 0x7F 未満 (cp < 0x80 ではなく cp < 0x7F) にしているので、U+007F が 2 バイトになります。"""
    return _utf8_from_tiers(cp, limits=(0x7F, 0x800, 0x10000))


def utf8_three_byte_limit_off_by_one(cp):
    """2 bytes up to and including 0x800 (cp <= 0x800): U+0800 does not fit in 11 bits.
    ja: 2 バイトを 0x800 まで含めている (cp <= 0x800) ので、11 ビットに収まらない U+0800 が壊れます。"""
    return _utf8_from_tiers(cp, limits=(0x80, 0x801, 0x10000))


def utf8_without_four_bytes(cp):
    """Stops at 3 bytes: a code point above U+FFFF (𠮷, emoji) loses its top bits.
    ja: 3 バイトまでしか扱わないので、U+FFFF を超える符号位置 (𠮷、絵文字) の上位ビットが失われます。"""
    return _utf8_from_tiers(cp, limits=(0x80, 0x800, 0x10FFFF + 1))


def utf8_continuation_prefix_11(cp):
    """Continuation bytes start with 11 (0xC0 | ...) instead of 10 (0x80 | ...).
    ja: 継続バイトの先頭ビットが 10 (0x80 | ...) ではなく 11 (0xC0 | ...) になっています。"""
    return _utf8_from_tiers(cp, cont=0xC0)


def utf8_continuation_keeps_7_bits(cp):
    """Masks the continuation bytes with 0x7F instead of 0x3F: 7 payload bits overwrite the marker 10.
    ja: 継続バイトを 0x3F ではなく 0x7F でマスクしているので、7 ビット分の値が目印の 10 に重なります。"""
    return _utf8_from_tiers(cp, mask=0x7F)


def utf8_shift_by_8(cp):
    """Cuts the code point into whole bytes (shifts by 8) instead of 6-bit groups.
    ja: 符号位置を 6 ビットずつではなく 8 ビット (1 バイト) ずつ切り分けています。"""
    return _utf8_from_tiers(cp, shift=8)


def utf8_little_endian(cp):
    """The right bytes in reverse order: the lead byte last.
    ja: バイトは正しいのですが順序が逆で、先頭バイトが最後に来ています。"""
    return _utf8_from_tiers(cp, little_endian=True)


def utf8_without_markers(cp):
    """The code point's value in 1 to 4 bytes (cp.to_bytes), without UTF-8's marker bits.
    ja: 符号位置の値をそのまま 1-4 バイトに書いて (cp.to_bytes)、UTF-8 の目印のビットがありません。"""
    n = 1 + sum(cp >= lim for lim in (0x80, 0x800, 0x10000))
    return cp.to_bytes(n, "big")


def utf8_as_utf16(cp):
    """Encodes UTF-16 (2 or 4 bytes, big-endian), the other Unicode encoding.
    ja: もう 1 つの Unicode の符号化、UTF-16 (2 または 4 バイト、ビッグエンディアン) で符号化しています。"""
    return chr(cp).encode("utf-16-be")


def utf8_as_list(cp):
    """Returns a list of ints instead of bytes.
    ja: bytes ではなく int のリストを返しています。"""
    return list(chr(cp).encode("utf-8"))


# Alternative correct implementations: the checker must accept them.
def utf8_by_bit_strings(cp):
    """Writes the code point in binary, pads it and cuts the bit string into the UTF-8 template."""
    if cp < 0x80:
        return bytes([cp])
    n = 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    bits = format(cp, "b").zfill(5 * n + 1)  # payload bits: 11, 16 or 21
    first = "1" * n + "0" + bits[: 7 - n]
    rest = [("10" + bits[7 - n + 6 * k: 7 - n + 6 * (k + 1)]) for k in range(n - 1)]
    return bytes(int(b, 2) for b in [first] + rest)


def utf8_by_peeling_from_the_end(cp):
    """Peels 6-bit groups from the end into continuation bytes until the rest fits the lead byte."""
    if cp < 0x80:
        return bytes([cp])
    tail = []
    while True:
        tail.append(0x80 | (cp & 0x3F))
        cp >>= 6
        n = len(tail) + 1
        if cp < (1 << (7 - n)):  # the lead byte of an n-byte sequence holds 7 - n bits
            break
    lead = ((0xFF << (8 - n)) & 0xFF) | cp
    return bytes([lead] + tail[::-1])


def utf8_by_division(cp):
    """Integer division and remainders by 64 instead of shifts and masks."""
    if cp < 128:
        return bytes([cp])
    n, first = (2, 192) if cp < 2048 else (3, 224) if cp < 65536 else (4, 240)
    groups = []
    for _ in range(n - 1):
        cp, r = divmod(cp, 64)
        groups.append(128 + r)
    return bytes([first + cp] + groups[::-1])


_UTF8_CASES = [
    (0x41, "'A'"), (0x0A, "a new line"), (0x7F, "the last 1-byte code point (DEL)"),
    (0x80, "the first 2-byte code point"), (0xE9, "'é'"), (0x7FF, "the last 2-byte code point"),
    (0x800, "the first 3-byte code point"), (0x3042, "'あ'"), (0x30FC, "'ー' (the long vowel mark)"),
    (0x8A9E, "'語'"), (0xFF01, "'！' (full-width)"), (0xFFFF, "the last 3-byte code point"),
    (0x10000, "the first 4-byte code point"), (0x20BB7, "'𠮷' (CJK extension B)"), (0x1F600, "an emoji"),
    (0x10FFFF, "the last code point of Unicode"),
]
_UTF8_CASES_JA = {
    "a new line": "改行", "the last 1-byte code point (DEL)": "1 バイトの最後の符号位置 (DEL)",
    "the first 2-byte code point": "2 バイトの最初の符号位置", "the last 2-byte code point": "2 バイトの最後の符号位置",
    "the first 3-byte code point": "3 バイトの最初の符号位置", "'ー' (the long vowel mark)": "'ー' (長音符)",
    "'！' (full-width)": "'！' (全角)", "the last 3-byte code point": "3 バイトの最後の符号位置",
    "the first 4-byte code point": "4 バイトの最初の符号位置", "'𠮷' (CJK extension B)": "'𠮷' (CJK 拡張 B)",
    "an emoji": "絵文字", "the last code point of Unicode": "Unicode の最後の符号位置",
}


@exercise("ch00.utf8_encode", reference=reference_utf8_encode, uses_device=False, grad=False,
          compare=_compare_bytes,
          wrong=[utf8_lead_limit_off_by_one, utf8_three_byte_limit_off_by_one, utf8_without_four_bytes,
                 utf8_continuation_prefix_11, utf8_continuation_keeps_7_bits, utf8_shift_by_8, utf8_little_endian,
                 utf8_without_markers, utf8_as_utf16, utf8_as_list],
          correct=[utf8_by_bit_strings, utf8_by_peeling_from_the_end, utf8_by_division],
          covers="ASCII, both ends of the 1-, 2-, 3- and 4-byte ranges (U+007F/U+0080, U+07FF/U+0800, U+FFFF/U+10000, "
                 "U+10FFFF), kana, kanji, full-width punctuation, CJK extension B, an emoji, bytes returned",
          hint="the number of bytes follows from the value (below 0x80, 0x800, 0x10000, else 4); the lead byte starts "
               "with as many 1 bits as there are bytes, then a 0; every following byte is 10 and 6 bits of the code "
               "point, the lowest 6 bits last.",
          hint_ja="バイト数は値で決まります (0x80、0x800、0x10000 未満、それ以外は 4)。先頭バイトはバイト数と同じ個数の 1 "
                  "と 0 で始まり、続くバイトは 10 と符号位置の 6 ビットで、最下位の 6 ビットが最後に来ます。")
def _utf8_cases():
    for cp, what in _UTF8_CASES:
        yield Case(args=(cp,), name=f"U+{cp:04X}, {what}", name_ja=f"U+{cp:04X}、{_UTF8_CASES_JA.get(what, what)}")
