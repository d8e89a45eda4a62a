"""Chapter 02 (byte-level tokenization pitfalls): GPT-2's byte table, BPE, encode, streaming decode.

The staircase ends, as in karpathy/minbpe, in exact equality with a trusted tokenizer: the BPE
merge loop is compared with the BPE model inside `tokenizers` (what minigpt.tokenizer.GPT2Tokenizer
runs), the full encoder with GPT2Tokenizer.encode, and the streaming decoder with
minigpt.tokenizer.StreamingDecoder, token by token.
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex

from minigpt import tokenizer as tk
from minigpt.check import Case, Step, exercise

# GPT-2's pre-tokenizer pattern (from OpenAI's encoder.py); the notebook gives it to the learner.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@lru_cache(maxsize=1)
def gpt2() -> tk.GPT2Tokenizer:
    return tk.GPT2Tokenizer()


@lru_cache(maxsize=1)
def gpt2_ranks() -> dict[tuple[str, str], int]:
    _, merges = tk.gpt2_vocab_and_merges()
    return {pair: i for i, pair in enumerate(merges)}


def _to_symbols(text: str) -> str:
    table = tk.bytes_to_unicode()
    return "".join(table[b] for b in text.encode("utf-8"))


# Texts written for this course (English, Japanese, mixed, whitespace, emoji, full/half width).
TEXTS = [
    "Hello world! Tokenizers split text into pieces.",
    "It's 2026, and we've got 3 new models... don't panic.",
    "今日は朝から雨が降っていたので、駅まで歩くのをやめてバスに乗った。",
    "第3章では、GPT2のトークナイザーが日本語をどう切るかを調べる。",
    "  two  spaces,\ttabs\nand new lines\n\n end ",
    "絵文字😀も、全角のＡＢＣや１２３も、半角のｶﾀｶﾅも、𠮷野さんの「𠮷」も試す。",
]


# More texts for the encoder: a space before Japanese, contractions in mixed case, accents.
MORE_TEXTS = [
    "see 東京 and 大阪 and the 日本語 text",
    "IT'S fine, WE'LL see, O'Sullivan's and D'Angelo's, You'Re right",
    "café naïve résumé Ångström",
]


# ----------------------------------------------------------------------------- bytes_to_unicode
def table_forgets_latin1():
    """Keeps only printable ASCII as itself and moves every other byte (also ¡..ÿ) above 255.
    ja: 表示可能な ASCII だけをそのままにし、それ以外のバイト (¡..ÿ も) をすべて 256 以上に移しています。"""
    keep = list(range(ord("!"), ord("~") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def table_identity():
    """No remapping at all: a space stays a space, and control bytes stay invisible.
    ja: 置き換えをまったくしていないので、空白は空白のまま、制御バイトは見えないままです。"""
    return {b: chr(b) for b in range(256)}


def table_offset_by_byte():
    """Moves byte b to chr(256 + b) instead of counting the moved bytes 0, 1, 2, ...
    ja: 移すバイトを 0, 1, 2, ... と数えずに、バイト b を chr(256 + b) にしています。"""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    return {b: chr(b) if b in keep else chr(256 + b) for b in range(256)}


def table_includes_soft_hyphen():
    """Treats ¡..ÿ as one range, forgetting that the soft hyphen (0xAD) is not printable.
    ja: ¡..ÿ を 1 つの範囲として扱い、ソフトハイフン (0xAD) が表示できない文字であることを忘れています。"""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("ÿ") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def table_values_are_ints():
    """Maps each byte to the code point (an int) instead of the character chr(...).
    ja: 各バイトを文字 chr(...) ではなくコードポイント (int) に対応させています。"""
    return {b: ord(c) for b, c in tk.bytes_to_unicode().items()}


def table_inverted():
    """Returns the inverse table {character: byte} (the decoder's) instead of {byte: character}.
    ja: {バイト: 文字} ではなく、逆向きの表 {文字: バイト} (デコーダ側) を返しています。"""
    return {c: b for b, c in tk.bytes_to_unicode().items()}


def table_moved_from_255():
    """Counts the moved bytes from chr(255) instead of chr(256): the first one collides with ÿ.
    ja: 移すバイトを chr(256) ではなく chr(255) から数えているので、最初の 1 つが ÿ と重なります。"""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(255 + n)
            n += 1
    return out


def table_like_gpt2_code():
    """OpenAI's encoder.py: the kept bytes first, then the others appended with 2**8 + n."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def table_from_isprintable():
    """Keeps the bytes whose Latin-1 character is printable (str.isprintable), except the space."""
    out, n = {}, 0
    for b in range(256):
        if chr(b).isprintable() and b != 0x20:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def _compare_tables(expected: dict, got) -> str | None:
    from minigpt.i18n import tr

    if not isinstance(got, dict):
        return tr("output: expected a dict {{byte: character}}, got a {t}",
                  "出力: dict {{バイト: 文字}} が期待されますが、{t} でした", t=type(got).__name__)
    bad_keys = [k for k in got if not isinstance(k, int) or isinstance(k, bool)]
    if bad_keys:
        return tr("output: the keys must be the byte values 0..255 (ints), got the key {k!r} ({t}): "
                  "is the table the wrong way round ({{character: byte}})?",
                  "出力: キーはバイト値 0..255 (int) のはずですが、キー {k!r} ({t}) がありました。"
                  "表の向きが逆 ({{文字: バイト}}) ではありませんか?", k=bad_keys[0], t=type(bad_keys[0]).__name__)
    if sorted(got) != list(range(256)):
        return tr("output: the keys must be the 256 byte values 0..255, got {n} keys",
                  "出力: キーは 256 個のバイト値 0..255 のはずですが、キーが {n} 個でした", n=len(got))
    for b in range(256):
        if not isinstance(got[b], str) or len(got[b]) != 1:
            return tr("output: byte {b} (0x{b:02X}) maps to {v!r}, a {t}: each value must be one character "
                      "(a str of length 1, chr(...)), expected {e!r}",
                      "出力: バイト {b} (0x{b:02X}) の値が {v!r} ({t}) です。値は 1 文字 (長さ 1 の str、chr(...)) "
                      "のはずで、期待値は {e!r} です", b=b, v=got[b], t=type(got[b]).__name__, e=expected[b])
        if got[b] != expected[b]:
            return tr("output: byte {b} (0x{b:02X}) maps to {g!r} (U+{gc:04X}), expected {e!r} (U+{ec:04X})",
                      "出力: バイト {b} (0x{b:02X}) が {g!r} (U+{gc:04X}) になっていますが、期待値は {e!r} (U+{ec:04X}) です",
                      b=b, g=got[b], gc=ord(got[b]), e=expected[b], ec=ord(expected[b]))
    if len(set(got.values())) != 256:
        return tr("output: two bytes map to the same character", "出力: 2 つのバイトが同じ文字になっています")
    return None


@exercise("ch02.bytes_to_unicode", reference=tk.bytes_to_unicode, uses_device=False, compare=_compare_tables,
          wrong=[table_forgets_latin1, table_identity, table_offset_by_byte, table_includes_soft_hyphen,
                 table_values_are_ints, table_inverted, table_moved_from_255],
          correct=[table_like_gpt2_code, table_from_isprintable],
          covers="all 256 bytes, keys and value types (int values are reported, not a crash), the soft hyphen 0xAD",
          hint_ja="バイト '!'..'~'、'¡'..'¬'、'®'..'ÿ' はそのまま自分自身に。それ以外のバイトは小さい順に "
                  "chr(256 + n) (n = 0, 1, 2, ...) に対応させます。",
          hint="bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' map to themselves; every other byte, in increasing "
               "order, to chr(256 + n) with n = 0, 1, 2, ...")
def _table_cases():
    yield Case(name="no arguments", name_ja="引数なし")


# ----------------------------------------------------------------------------- bpe
def reference_bpe(token: str, ranks: dict) -> list[str]:
    """The BPE model of the real GPT-2 tokenizer (the `tokenizers` library) applied to one pre-token.

    (It always uses GPT-2's merges: the cases pass exactly those as `ranks`.)"""
    return [t.value for t in gpt2().hf_tokenizer.model.tokenize(token)]


def _pairs(parts):
    return [(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]


def bpe_worst_rank_first(token, ranks):
    """Merges the pair with the *highest* rank number (the merge learned last) first.
    ja: ランク番号が最も「大きい」ペア (最後に学習したマージ) から先にマージしています。"""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if p in ranks]
        if not known:
            return parts
        best = max(known, key=ranks.get)
        parts = _merge(parts, best)


def bpe_leftmost_pair_first(token, ranks):
    """Merges the leftmost pair that has any rank, ignoring which merge was learned first.
    ja: どのマージが先に学習されたかを無視して、ランクをもつ最も左のペアをマージしています。"""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if p in ranks]
        if not known:
            return parts
        parts = _merge(parts, known[0])


def bpe_one_sweep(token, ranks):
    """A single left-to-right sweep merging known pairs, never revisiting merged parts.
    ja: 左から右へ 1 回だけ走査して既知のペアをマージし、マージ済みの部分を見直していません。"""
    parts, out, i = list(token), [], 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) in ranks:
            out.append(parts[i] + parts[i + 1])
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


def bpe_longest_match(token, ranks):
    """WordPiece-style: take the longest vocabulary entry at the start, repeat (not BPE).
    ja: WordPiece 風に、先頭から語彙の最長一致を取ることを繰り返しています (BPE ではありません)。"""
    vocab = {a + b for a, b in ranks} | set(token)
    out, i = [], 0
    while i < len(token):
        for j in range(len(token), i, -1):
            if token[i:j] in vocab:
                out.append(token[i:j])
                i = j
                break
    return out


def bpe_removes_used_merges(token, ranks):
    """Deletes each merge from `ranks` once used (to avoid repeating it): the caller's table loses merges.
    ja: 使ったマージを ranks から消している (繰り返さないため) ので、呼び出し側の表からマージが失われます。"""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if p in ranks]
        if not known:
            return parts
        best = min(known, key=ranks.get)
        parts = _merge(parts, best)
        del ranks[best]


def bpe_string_replace(token, ranks):
    """Merges with str.replace on the parts joined by spaces: 'ab c' -> 'abc' also merges across parts.
    ja: 空白でつないだ文字列に str.replace でマージするので、'ab c' -> 'abc' のように部分の境界をまたいでもマージされます。"""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if p in ranks]
        if not known:
            return parts
        a, b = min(known, key=ranks.get)
        parts = " ".join(parts).replace(f"{a} {b}", a + b).split(" ")


def bpe_pairs_reversed(token, ranks):
    """Looks each pair up the wrong way round, as (right, left).
    ja: ペアを逆向き (右, 左) で引いています。"""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if (p[1], p[0]) in ranks]
        if not known:
            return parts
        parts = _merge(parts, min(known, key=lambda p: ranks[(p[1], p[0])]))


def bpe_minbpe_style(token, ranks):
    """minbpe's loop: the pair with the lowest rank (inf for unknown pairs), merged everywhere, until none is known."""
    parts = list(token)
    while len(parts) >= 2:
        pair = min(zip(parts, parts[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        merged, i = [], 0
        while i < len(parts):
            if i < len(parts) - 1 and (parts[i], parts[i + 1]) == pair:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def bpe_recursive(token, ranks):
    """The same merges written recursively: merge the best pair everywhere, then recurse."""
    def go(parts):
        ranked = [(ranks[p], p) for p in set(zip(parts, parts[1:])) if p in ranks]
        if not ranked:
            return parts
        return go(_merge(parts, min(ranked)[1]))

    return go(list(token))


def _merge(parts, pair):
    out, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
            out.append(parts[i] + parts[i + 1])
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return out


@exercise("ch02.bpe", reference=reference_bpe, uses_device=False,
          wrong=[bpe_worst_rank_first, bpe_leftmost_pair_first, bpe_one_sweep, bpe_longest_match,
                 bpe_removes_used_merges, bpe_string_replace, bpe_pairs_reversed],
          correct=[bpe_minbpe_style, bpe_recursive],
          covers="English, digits, Japanese, an emoji, repeated letters, a word longer than any GPT-2 token, "
                 "the ranks table must stay unchanged",
          hint_ja="1 文字ずつから始め、隣り合うペアのうちランクが最も小さいものを探してそのすべての出現をマージする、"
                  "を繰り返します。ランクをもつペアがなくなったら終わりです。",
          hint="start from single characters; repeatedly find the adjacent pair with the LOWEST rank, "
               "merge every occurrence of it, and stop when no adjacent pair has a rank.")
def _bpe_cases():
    ranks = gpt2_ranks()
    for chunk in [" tokenization", "Hello", " unbelievable", " 2026", "今日は", "トークナイザー", " aaaaaaaa", "😀",
                  " internationalizationalization", "ababcbabc", " the"]:
        yield Case(args=(_to_symbols(chunk), ranks), name=f"the pre-token {chunk!r}, as {_to_symbols(chunk)!r}",
                   name_ja=f"事前トークン {chunk!r} ({_to_symbols(chunk)!r} として)")


# ----------------------------------------------------------------------------- gpt2_encode
def reference_gpt2_encode(text: str) -> list[int]:
    return gpt2().encode(text)


@lru_cache(maxsize=1)
def _vocab() -> dict[str, int]:
    vocab, _ = tk.gpt2_vocab_and_merges()
    return vocab


def _encode_chunks(chunks, bpe=reference_bpe) -> list[int]:
    vocab, ranks = _vocab(), gpt2_ranks()
    return [vocab[p] for chunk in chunks for p in bpe(_to_symbols(chunk), ranks)]


def encode_without_pretokenizer(text):
    """BPE over the whole text at once: merges cross word boundaries ('d w' ...).
    ja: テキスト全体に一度に BPE をかけているので、マージが単語の境界をまたぎます ('d w' など)。"""
    return _encode_chunks([text]) if text else []


def encode_split_on_whitespace(text):
    """Words and whitespace runs as separate chunks: the space is never glued to the next word.
    ja: 単語と空白の並びを別々のチャンクにしているので、空白が次の単語にくっつきません。"""
    return _encode_chunks(re.findall(r"\S+|\s+", text))


def encode_without_lookahead(text):
    """Drops the pattern's \\s+(?!\\S): a run of spaces then swallows the space that belongs to the next word.
    ja: パターンの \\s+(?!\\S) を落としているので、空白の並びが次の単語に属する空白まで飲み込みます。"""
    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"""
    return _encode_chunks(regex.findall(pattern, text))


def encode_with_prefix_space(text):
    """Adds a space in front of the text (add_prefix_space=True in some libraries): GPT-2 does not.
    ja: テキストの前に空白を足しています (一部のライブラリの add_prefix_space=True)。GPT-2 は足しません。"""
    return _encode_chunks(regex.findall(GPT2_PATTERN, " " + text))


def encode_with_leftmost_merges(text):
    """The right pre-tokenizer, but a BPE that merges the leftmost known pair first.
    ja: 事前分割は正しいものの、BPE が既知のペアの最も左のものからマージしています。"""
    return _encode_chunks(regex.findall(GPT2_PATTERN, text), bpe=bpe_leftmost_pair_first)


def encode_contractions_any_case(text):
    """Matches the contractions case-insensitively ((?i) as in newer patterns): GPT-2's 'S and 'LL are not contractions.
    ja: 短縮形を大文字小文字を区別せずに照合しています ((?i)、新しいパターンの書き方)。GPT-2 では 'S や 'LL は短縮形ではありません。"""
    return _encode_chunks(regex.findall("(?i:'s|'t|'re|'ve|'m|'ll|'d)" + GPT2_PATTERN[len("'s|'t|'re|'ve|'m|'ll|'d"):], text))


def encode_ascii_letters(text):
    """[A-Za-z] instead of \\p{L}: Japanese and accented letters fall into the punctuation class.
    ja: \\p{L} の代わりに [A-Za-z] を使っているので、日本語やアクセント付きの文字が記号のクラスに入ります。"""
    return _encode_chunks(regex.findall(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""", text))


def encode_nfkc_first(text):
    """Normalises the text with NFKC first: full-width ＡＢＣ and half-width ｶﾀｶﾅ change before encoding.
    ja: 先に NFKC で正規化しているので、全角の ＡＢＣ や半角の ｶﾀｶﾅ がエンコード前に変わってしまいます。"""
    import unicodedata

    return _encode_chunks(regex.findall(GPT2_PATTERN, unicodedata.normalize("NFKC", text)))


def encode_with_own_bpe(text):
    """regex.finditer, the byte table, a minbpe-style merge loop and a cache per chunk."""
    table, vocab, ranks, cache = tk.bytes_to_unicode(), _vocab(), gpt2_ranks(), {}
    ids = []
    for m in regex.finditer(GPT2_PATTERN, text):
        chunk = "".join(table[b] for b in m.group().encode("utf-8"))
        if chunk not in cache:
            cache[chunk] = [vocab[p] for p in bpe_minbpe_style(chunk, ranks)]
        ids.extend(cache[chunk])
    return ids


def encode_as_tuple_of_numpy_ints(text):
    """Returns a tuple of numpy integers: accepted where a list of ints is expected."""
    import numpy as np

    return tuple(np.int64(i) for i in _encode_chunks(regex.findall(GPT2_PATTERN, text), bpe=bpe_recursive))


def _compare_ids(expected: list[int], got) -> str | None:
    import numbers

    from minigpt.i18n import tr

    if not isinstance(got, (list, tuple)) or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool)
                                                     for i in got):
        kind = type(got).__name__ if not isinstance(got, (list, tuple)) else \
            f"{type(got).__name__} holding {type(next(i for i in got if not isinstance(i, numbers.Integral))).__name__}"
        fix = tr(": convert it with .tolist()", "。.tolist() で変換してください") if hasattr(got, "tolist") else ""
        return tr("output: expected a list of int token ids, got a {k}", "出力: int のトークン ID のリストが期待されますが、{k} でした",
                  k=kind) + fix
    got = [int(i) for i in got]
    if got == expected:
        return None
    tok = gpt2()
    n = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))

    def show(ids):
        return " ".join(f"{i}:{tok.token_bytes(i)!r}" if 0 <= i < tok.vocab_size else f"{i}:?" for i in ids)

    return (tr("output: {g} ids, expected {e}; the first difference is at position {n}",
               "出力: ID が {g} 個 (期待は {e} 個)。最初の違いは位置 {n}", g=len(got), e=len(expected), n=n) + "\n"
            + tr("    expected ... {s}", "    期待 ... {s}", s=show(expected[max(0, n - 1): n + 3])) + "\n"
            + tr("    got      ... {s}", "    実際 ... {s}", s=show(got[max(0, n - 1): n + 3])))


@exercise("ch02.gpt2_encode", reference=reference_gpt2_encode, uses_device=False, compare=_compare_ids,
          wrong=[encode_without_pretokenizer, encode_split_on_whitespace, encode_without_lookahead,
                 encode_with_prefix_space, encode_with_leftmost_merges, encode_contractions_any_case,
                 encode_ascii_letters, encode_nfkc_first],
          correct=[encode_with_own_bpe, encode_as_tuple_of_numpy_ints],
          covers="English, Japanese, mixed, runs of spaces, tabs and new lines, emoji, full- and half-width, "
                 "a space before Japanese, contractions in mixed case, accented letters, a corpus document",
          hint_ja="regex.findall(GPT2_PATTERN, text) -> 各チャンクの UTF-8 バイトをバイト表で文字に -> bpe(...) -> "
                  "各ピースの vocab[piece]。",
          hint="regex.findall(GPT2_PATTERN, text) -> for each chunk: its UTF-8 bytes through the byte table "
               "-> bpe(...) -> vocab[piece] for each piece.")
def _encode_cases():
    from minigpt.corpus import load_documents

    for text in TEXTS + MORE_TEXTS:
        yield Case(args=(text,), name=f"text {text[:24]!r}{'...' if len(text) > 24 else ''}",
                   name_ja=f"テキスト {text[:24]!r}{'...' if len(text) > 24 else ''}")
    doc = load_documents("embedded", "val")[0][:300]
    yield Case(args=(doc,), name="the first 300 characters of the embedded corpus's first validation document",
               name_ja="組み込みコーパスの最初の検証用文書の先頭 300 文字")


# ----------------------------------------------------------------------------- StreamingDecoder
class ByteTokens:
    """A toy tokenizer whose token i is the single byte i: every byte boundary is a split point."""

    vocab_size = 256

    def token_bytes(self, token_id: int) -> bytes:
        return bytes([token_id])


BYTE_TOKENS = ByteTokens()


def _drive(cls, case: Case) -> list[str]:
    tokenizer, ids = case.args
    dec = cls(tokenizer)
    return [dec.feed(i) for i in ids] + [dec.flush()]


def _compare_pieces(expected: list[str], got) -> str | None:
    if got == expected:
        return None
    for i, (e, g) in enumerate(zip(expected, got)):
        if e != g:
            step = "flush()" if i == len(expected) - 1 else f"feed() number {i + 1}"
            return (f"{step} returned {g!r}, expected {e!r} (outputs so far: {''.join(expected[:i])[-20:]!r})")
    return f"expected {len(expected)} outputs, got {len(got)}"


class ChunkTokens:
    """A toy tokenizer with multi-byte tokens cut anywhere, some holding an invalid byte and the start
    of a character (as a model can draw them)."""

    TOKENS = [b"ok ", b"\x80\xe3", b"\x81\x82", b" \xe6\x97", b"\xa5", b"\xff\xf0\x9f", b"\x98\x80!", b"\xe3\x81",
              b"A", b"\xc3", b"\xa9 end"]
    vocab_size = len(TOKENS)

    def token_bytes(self, token_id: int) -> bytes:
        return self.TOKENS[token_id]


CHUNK_TOKENS = ChunkTokens()


class DecoderDecodesEachToken:
    """Decodes each token's bytes on their own: half a character becomes U+FFFD.
    ja: 各トークンのバイトを単独でデコードしているので、文字の半分が U+FFFD になります。"""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def feed(self, token_id):
        return self.tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")

    def flush(self):
        return ""


class DecoderWaitsOnlyAfterLeadByte(DecoderDecodesEachToken):
    """Holds back a trailing lead byte, but not a lead byte followed by some of its continuation bytes.
    ja: 末尾の先頭バイトは保留しますが、継続バイトが一部続いた先頭バイトは保留していません。"""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.pending = b""

    def feed(self, token_id):
        buf = self.pending + self.tokenizer.token_bytes(token_id)
        if buf and buf[-1] >= 0xC0:
            self.pending, buf = buf[-1:], buf[:-1]
        else:
            self.pending = b""
        return buf.decode("utf-8", errors="replace")

    def flush(self):
        out, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return out


class DecoderFlushForgetsPending(tk.StreamingDecoder):
    """Right while streaming, but an unfinished character at the end silently disappears.
    ja: ストリーミング中は正しいものの、最後の未完成の文字が黙って消えます。"""

    def flush(self):
        self.pending = b""
        return ""


class DecoderIgnoresErrors(DecoderDecodesEachToken):
    """errors='ignore': no U+FFFD on screen, because the partial characters are dropped.
    ja: errors='ignore' なので画面に U+FFFD は出ませんが、文字の一部が捨てられます。"""

    def feed(self, token_id):
        return self.tokenizer.token_bytes(token_id).decode("utf-8", errors="ignore")


class DecoderFlushKeepsPending(tk.StreamingDecoder):
    """flush() returns the unfinished bytes but does not empty the buffer: feeding after flush() repeats them.
    ja: flush() が未完成のバイトを返すもののバッファを空にしないので、flush() の後に feed すると同じものがまた出ます。"""

    def flush(self):
        return self.pending.decode("utf-8", errors="replace")


class DecoderHoldsUntilValid(DecoderDecodesEachToken):
    """Holds everything back while the buffer does not decode cleanly: one invalid byte blocks the stream until flush().
    ja: バッファがきれいにデコードできるまで全部をためるので、無効なバイトが 1 つあると flush() まで何も出なくなります。"""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.buf = b""

    def feed(self, token_id):
        self.buf += self.tokenizer.token_bytes(token_id)
        try:
            out = self.buf.decode("utf-8")
        except UnicodeDecodeError:
            return ""
        self.buf = b""
        return out

    def flush(self):
        out, self.buf = self.buf.decode("utf-8", errors="replace"), b""
        return out


class DecoderDropsInvalidLead(DecoderDecodesEachToken):
    """Waits for a character's end, but an invalid byte before it is dropped instead of shown as U+FFFD.
    ja: 文字の終わりは待つものの、その前にある無効なバイトを U+FFFD として出さずに捨てています。"""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.pending = b""

    def feed(self, token_id):
        from minigpt.utf8 import complete_prefix_length

        buf = self.pending + self.tokenizer.token_bytes(token_id)
        n = complete_prefix_length(buf)
        self.pending = buf[n:]
        return buf[:n].decode("utf-8", errors="ignore")

    def flush(self):
        out, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return out


class DecoderWithCodecs:
    """Python's incremental UTF-8 decoder does the same bookkeeping."""

    def __init__(self, tokenizer):
        import codecs

        self.tokenizer = tokenizer
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id):
        return self.decoder.decode(self.tokenizer.token_bytes(token_id))

    def flush(self):
        return self.decoder.decode(b"", final=True)


class DecoderCountsLeadBytes:
    """Looks back at most 3 bytes for an unfinished character's lead byte and holds it with its continuation bytes."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = b""

    def feed(self, token_id):
        buf = self.pending + self.tokenizer.token_bytes(token_id)
        cut = len(buf)
        for back in range(1, min(3, len(buf)) + 1):
            b = buf[-back]
            if b & 0xC0 == 0x80:  # a continuation byte: keep looking for its lead
                continue
            need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
            if need > back:
                cut = len(buf) - back
            break
        self.pending = buf[cut:]
        return buf[:cut].decode("utf-8", errors="replace")

    def flush(self):
        out, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return out


class DecoderAllAtTheEnd(DecoderDecodesEachToken):
    """Correct text, but nothing is shown until flush(): that is not streaming.
    ja: テキストは正しいものの、flush() まで何も表示されません。これはストリーミングではありません。"""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.buf = b""

    def feed(self, token_id):
        self.buf += self.tokenizer.token_bytes(token_id)
        return ""

    def flush(self):
        out, self.buf = self.buf.decode("utf-8", errors="replace"), b""
        return out


def _stream_steps(ids, again=()):
    """feed every id, flush; then (the lifecycle) feed again after the flush and flush once more."""
    from minigpt.i18n import tr

    steps = [Step.call("feed", i) for i in ids] + [Step.call("flush")]
    steps += [Step.call("feed", i, name=tr("feeding again after flush()", "flush() の後にまた feed")) for i in again]
    if again:
        steps.append(Step.call("flush", name=tr("the second flush()", "2 回目の flush()")))
    return steps


@exercise("ch02.StreamingDecoder", reference=tk.StreamingDecoder, kind="class", uses_device=False, grad=False,
          wrong=[DecoderDecodesEachToken, DecoderWaitsOnlyAfterLeadByte, DecoderFlushForgetsPending,
                 DecoderIgnoresErrors, DecoderAllAtTheEnd, DecoderFlushKeepsPending, DecoderHoldsUntilValid,
                 DecoderDropsInvalidLead],
          correct=[DecoderWithCodecs, DecoderCountsLeadBytes],
          covers="GPT-2 ids of Japanese and emoji, one byte per token, invalid UTF-8 (lone continuation, cut "
                 "characters), multi-byte tokens holding an invalid byte and the start of a character, "
                 "feeding again after flush()",
          hint="keep a byte buffer; in feed(), add the token's bytes and return only the longest prefix that "
               "does not end inside a character (look at the last 1-3 bytes: a lead byte 110xxxxx / 1110xxxx / "
               "11110xxx says how many bytes its character needs); flush() decodes what is left with "
               "errors='replace' and empties the buffer.",
          hint_ja="バイトのバッファを持ち、feed() ではトークンのバイトを足して、文字の途中で終わらない最長の先頭部分だけを返します "
                  "(最後の 1-3 バイトを見る: 先頭バイト 110xxxxx / 1110xxxx / 11110xxx が文字のバイト数を表します)。"
                  "flush() は残りを errors='replace' でデコードし、バッファを空にします。")
def _streaming_cases():
    tok = gpt2()
    for text in (TEXTS[2], TEXTS[5]):
        ids = tok.encode(text)
        yield Case(init=(tok,), steps=_stream_steps(ids, again=tok.encode("猫")), name=f"GPT-2 ids of {text[:16]!r}..., "
                   "then flush() and more ids", name_ja=f"{text[:16]!r}... の GPT-2 の ID、flush() の後にさらに ID")
    mixed = "aé日𠮷😀ん"
    yield Case(init=(BYTE_TOKENS,), steps=_stream_steps(list(mixed.encode("utf-8"))),
               name=f"one byte per token (every split point) of {mixed!r}",
               name_ja=f"{mixed!r} を 1 トークン 1 バイトで (すべての切れ目)")
    broken = b"ok \xe3\x81\x82 \x80 lone continuation, \xe3\x81 cut short, \xf0\x9f\x98"
    yield Case(init=(BYTE_TOKENS,), steps=_stream_steps(list(broken), again=list("é".encode())),
               name="invalid UTF-8: a lone continuation byte, a cut character, and a 4-byte character missing its "
                    "end; then feeding again after flush()",
               name_ja="無効な UTF-8: 単独の継続バイト、途中で切れた文字、終わりのない 4 バイト文字。その後 flush() してからまた feed")
    yield Case(init=(CHUNK_TOKENS,), steps=_stream_steps(range(CHUNK_TOKENS.vocab_size), again=[7, 2, 9, 10]),
               name="multi-byte tokens: an invalid byte followed by the start of a character, cut characters",
               name_ja="複数バイトのトークン: 無効なバイトの後に文字の先頭、途中で切れた文字")
    yield Case(init=(CHUNK_TOKENS,), steps=_stream_steps([1, 7], again=[8, 3, 4]),
               name="a character cut at the end, flush(), then new text: nothing of the old one may come back",
               name_ja="最後で切れた文字、flush()、そして新しいテキスト: 前の文字が再び出てはいけません")


# ----------------------------------------------------------------------------- learning the merges (BPE training)
from minigpt import bpe as _bpe  # noqa: E402


def _train(text, num_merges, choose=None, merge=None, count=None, first_id=256, encode=None):
    ids = list(text.encode("utf-8")) if encode is None else encode(text)
    merges = []
    for i in range(num_merges):
        counts = (count or _bpe.pair_counts)(ids)
        if not counts:
            break
        pair = (choose or (lambda c: max(c, key=c.get)))(counts)
        ids = (merge or _bpe.merge)(ids, pair, first_id + i)
        merges.append(pair)
    return merges


def train_bpe_ties_to_largest_pair(text, num_merges):
    """Breaks ties by the largest pair (max over (count, pair)) instead of the pair that occurs first.
    ja: 同数のときに最初に現れるペアではなく、値の大きいペア ((count, pair) の max) を選んでいます。"""
    return _train(text, num_merges, choose=lambda c: max(c, key=lambda p: (c[p], p)))


def train_bpe_ties_to_last(text, num_merges):
    """Breaks ties by the pair that occurs last (a >= comparison in a loop).
    ja: 同数のときに最後に現れるペアを選んでいます (ループ内の >= の比較)。"""
    def choose(c):
        best = None
        for p, n in c.items():
            if best is None or n >= c[best]:
                best = p
        return best
    return _train(text, num_merges, choose=choose)


def _merge_overlapping(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
        elif not (i > 0 and ids[i - 1] == pair[0] and ids[i] == pair[1] and out and out[-1] == new_id):
            out.append(ids[i])
        i += 1
    return out


def train_bpe_overlapping_merge(text, num_merges):
    """Merges overlapping occurrences ("aaa" with (a, a) becomes [X, X] instead of [X, a]).
    ja: 重なった出現もマージしています ((a, a) で "aaa" が [X, a] ではなく [X, X] になります)。"""
    return _train(text, num_merges, merge=_merge_overlapping)


def train_bpe_ids_from_255(text, num_merges):
    """Numbers the new tokens from 255 instead of 256: the first new id collides with byte 0xFF.
    ja: 新しいトークンを 256 ではなく 255 から番号付けしているので、最初の新しい ID がバイト 0xFF とぶつかります。"""
    return _train(text, num_merges, first_id=255)


def _count_non_overlapping(ids):
    counts, i = {}, 0
    while i + 1 < len(ids):
        pair = (ids[i], ids[i + 1])
        counts[pair] = counts.get(pair, 0) + 1
        i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def train_bpe_counts_without_overlaps(text, num_merges):
    """Counts "aaa" as one (a, a) pair instead of two: runs of one byte are undercounted.
    ja: "aaa" を (a, a) のペア 2 つではなく 1 つと数えているので、同じバイトの連続が少なく数えられます。"""
    return _train(text, num_merges, count=_count_non_overlapping)


def train_bpe_counts_once(text, num_merges):
    """Counts the pairs once and takes the most frequent ones in order, without recounting after each merge.
    ja: ペアを一度だけ数えて頻度順に取っており、マージのたびに数え直していません。"""
    counts = _bpe.pair_counts(list(text.encode("utf-8")))
    return sorted(counts, key=lambda p: -counts[p])[:num_merges]


def train_bpe_on_characters(text, num_merges):
    """Starts from the characters' code points instead of the UTF-8 bytes: not byte-level, and a kanji's id is
    far above 256.
    ja: UTF-8 のバイトではなく文字のコードポイントから始めているので、バイトレベルではなく、漢字の ID が 256 よりずっと大きくなります。"""
    return _train(text, num_merges, encode=lambda t: [ord(ch) for ch in t])


def train_bpe_one_merge_short(text, num_merges):
    """Learns one merge fewer than asked (range(num_merges - 1)).
    ja: 指定より 1 つ少ないマージしか学習していません (range(num_merges - 1))。"""
    return _train(text, num_merges - 1)


def train_bpe_with_counter(text, num_merges):
    """collections.Counter and most_common(1), which keeps the first of equal counts; merge with a list rebuilt
    by index."""
    from collections import Counter

    ids = list(text.encode("utf-8"))
    merges = []
    for i in range(num_merges):
        if len(ids) < 2:
            break
        pair = Counter(zip(ids, ids[1:])).most_common(1)[0][0]
        new, j = [], 0
        while j < len(ids):
            if ids[j:j + 2] == list(pair):
                new.append(256 + i)
                j += 2
            else:
                new.append(ids[j])
                j += 1
        ids = new
        merges.append(pair)
    return merges


def train_bpe_first_max_by_scan(text, num_merges):
    """Counts with a dict, finds the maximum count, then scans the text for the first pair that has it."""
    ids = list(text.encode("utf-8"))
    merges = []
    for i in range(num_merges):
        counts = {}
        for p in zip(ids, ids[1:]):
            counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        top = max(counts.values())
        pair = next(p for p in zip(ids, ids[1:]) if counts[p] == top)
        ids = _bpe.merge(ids, pair, 256 + i)
        merges.append(pair)
    return merges


@exercise("ch02.train_bpe", reference=_bpe.train_bpe, grad=False, uses_device=False,
          wrong=[train_bpe_ties_to_largest_pair, train_bpe_ties_to_last, train_bpe_overlapping_merge,
                 train_bpe_ids_from_255, train_bpe_counts_without_overlaps, train_bpe_counts_once,
                 train_bpe_on_characters, train_bpe_one_merge_short],
          correct=[train_bpe_with_counter, train_bpe_first_max_by_scan],
          covers="the classic aaabdaaabac, ties between pairs (the first one wins), runs of one byte (aaaa: overlapping "
                 "pairs), merges of merged tokens, Japanese (3 bytes a character), an emoji, more merges than possible "
                 "(stops when one id is left), 120 merges on corpus documents",
          hint="ids = the UTF-8 bytes; num_merges times: count all adjacent pairs, take the most frequent (the first one "
               "on a tie), replace it left to right without overlaps by 256 + i; return the pairs in order.",
          hint_ja="ids = UTF-8 のバイト列。num_merges 回: 隣り合うペアをすべて数え、最も多いもの (同数なら最初に現れるもの) を、"
                  "左から重ならないように 256 + i で置き換えます。ペアを順に返してください。")
def _train_bpe_cases():
    from minigpt.corpus import load_documents

    yield Case(args=("aaabdaaabac", 3), name="aaabdaaabac, 3 merges (the classic example)",
               name_ja="aaabdaaabac、マージ 3 回 (定番の例)")
    yield Case(args=("abcdcdab", 2), name="abcdcdab: ab and cd both occur twice, ab first",
               name_ja="abcdcdab: ab と cd がどちらも 2 回、ab が先")
    yield Case(args=("xyzzzzyxzz", 3), name="a run of one byte (zzzz): overlapping pairs",
               name_ja="同じバイトの連続 (zzzz): 重なったペア")
    yield Case(args=("ababababab", 4), name="merges of merged tokens (ab, abab, ...)",
               name_ja="マージしたトークンのマージ (ab、abab、...)")
    yield Case(args=("東京の桜と東京の空", 6), name="Japanese: 3 bytes per character", name_ja="日本語: 1 文字 3 バイト")
    yield Case(args=("🍣🍣と🍣", 5), name="an emoji (4 bytes), repeated", name_ja="絵文字 (4 バイト) の繰り返し")
    yield Case(args=("abcab", 10), name="more merges than possible: stops when one id is left",
               name_ja="可能な数より多いマージ: ID が 1 つになったら止まる")
    docs = load_documents("embedded", split="val")[:3]
    yield Case(args=("\n".join(docs), 120), name="120 merges on 3 documents of the corpus",
               name_ja="コーパスの 3 文書で 120 回のマージ")
