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
from minigpt.check import Case, exercise

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


# ----------------------------------------------------------------------------- bytes_to_unicode
def table_forgets_latin1():
    """Keeps only printable ASCII as itself and moves every other byte (also ¡..ÿ) above 255."""
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
    """No remapping at all: a space stays a space, and control bytes stay invisible."""
    return {b: chr(b) for b in range(256)}


def table_offset_by_byte():
    """Moves byte b to chr(256 + b) instead of counting the moved bytes 0, 1, 2, ..."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), ord("ÿ") + 1))
    return {b: chr(b) if b in keep else chr(256 + b) for b in range(256)}


def table_includes_soft_hyphen():
    """Treats ¡..ÿ as one range, forgetting that the soft hyphen (0xAD) is not printable."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("ÿ") + 1))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def _compare_tables(expected: dict, got) -> str | None:
    if not isinstance(got, dict):
        return f"output: expected a dict {{byte: character}}, got a {type(got).__name__}"
    if sorted(got) != list(range(256)):
        return f"output: the keys must be the 256 byte values 0..255, got {len(got)} keys"
    for b in range(256):
        if got[b] != expected[b]:
            return (f"output: byte {b} (0x{b:02X}) maps to {got[b]!r} (U+{ord(got[b][0]):04X}), expected "
                    f"{expected[b]!r} (U+{ord(expected[b]):04X})")
    return None


@exercise("ch02.bytes_to_unicode", reference=tk.bytes_to_unicode, uses_device=False, compare=_compare_tables,
          wrong=[table_forgets_latin1, table_identity, table_offset_by_byte, table_includes_soft_hyphen],
          hint="bytes '!'..'~', '¡'..'¬' and '®'..'ÿ' map to themselves; every other byte, in increasing "
               "order, to chr(256 + n) with n = 0, 1, 2, ...")
def _table_cases():
    yield Case(name="no arguments")


# ----------------------------------------------------------------------------- bpe
def reference_bpe(token: str, ranks: dict) -> list[str]:
    """The BPE model of the real GPT-2 tokenizer (the `tokenizers` library) applied to one pre-token.

    (It always uses GPT-2's merges: the cases pass exactly those as `ranks`.)"""
    return [t.value for t in gpt2().hf_tokenizer.model.tokenize(token)]


def _pairs(parts):
    return [(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]


def bpe_worst_rank_first(token, ranks):
    """Merges the pair with the *highest* rank number (the merge learned last) first."""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if p in ranks]
        if not known:
            return parts
        best = max(known, key=ranks.get)
        parts = _merge(parts, best)


def bpe_leftmost_pair_first(token, ranks):
    """Merges the leftmost pair that has any rank, ignoring which merge was learned first."""
    parts = list(token)
    while True:
        known = [p for p in _pairs(parts) if p in ranks]
        if not known:
            return parts
        parts = _merge(parts, known[0])


def bpe_one_sweep(token, ranks):
    """A single left-to-right sweep merging known pairs, never revisiting merged parts."""
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
    """WordPiece-style: take the longest vocabulary entry at the start, repeat (not BPE)."""
    vocab = {a + b for a, b in ranks} | set(token)
    out, i = [], 0
    while i < len(token):
        for j in range(len(token), i, -1):
            if token[i:j] in vocab:
                out.append(token[i:j])
                i = j
                break
    return out


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
          wrong=[bpe_worst_rank_first, bpe_leftmost_pair_first, bpe_one_sweep, bpe_longest_match],
          hint="start from single characters; repeatedly find the adjacent pair with the LOWEST rank, "
               "merge every occurrence of it, and stop when no adjacent pair has a rank.")
def _bpe_cases():
    ranks = gpt2_ranks()
    for chunk in [" tokenization", "Hello", " unbelievable", " 2026", "今日は", "トークナイザー", " aaaaaaaa", "😀"]:
        yield Case(args=(_to_symbols(chunk), ranks), name=f"the pre-token {chunk!r}, as {_to_symbols(chunk)!r}")


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
    """BPE over the whole text at once: merges cross word boundaries ('d w' ...)."""
    return _encode_chunks([text]) if text else []


def encode_split_on_whitespace(text):
    """Words and whitespace runs as separate chunks: the space is never glued to the next word."""
    return _encode_chunks(re.findall(r"\S+|\s+", text))


def encode_without_lookahead(text):
    """Drops the pattern's \\s+(?!\\S): a run of spaces then swallows the space that belongs to the next word."""
    pattern = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"""
    return _encode_chunks(regex.findall(pattern, text))


def encode_with_prefix_space(text):
    """Adds a space in front of the text (add_prefix_space=True in some libraries): GPT-2 does not."""
    return _encode_chunks(regex.findall(GPT2_PATTERN, " " + text))


def encode_with_leftmost_merges(text):
    """The right pre-tokenizer, but a BPE that merges the leftmost known pair first."""
    return _encode_chunks(regex.findall(GPT2_PATTERN, text), bpe=bpe_leftmost_pair_first)


def _compare_ids(expected: list[int], got) -> str | None:
    if not isinstance(got, (list, tuple)) or not all(isinstance(i, int) for i in got):
        return f"output: expected a list of int token ids, got {type(got).__name__}"
    got = list(got)
    if got == expected:
        return None
    tok = gpt2()
    n = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))

    def show(ids):
        return " ".join(f"{i}:{tok.token_bytes(i)!r}" if 0 <= i < tok.vocab_size else f"{i}:?" for i in ids)

    return (f"output: {len(got)} ids, expected {len(expected)}; the first difference is at position {n}\n"
            f"    expected ... {show(expected[max(0, n - 1): n + 3])}\n"
            f"    got      ... {show(got[max(0, n - 1): n + 3])}")


@exercise("ch02.gpt2_encode", reference=reference_gpt2_encode, uses_device=False, compare=_compare_ids,
          wrong=[encode_without_pretokenizer, encode_split_on_whitespace, encode_without_lookahead,
                 encode_with_prefix_space, encode_with_leftmost_merges],
          hint="regex.findall(GPT2_PATTERN, text) -> for each chunk: its UTF-8 bytes through the byte table "
               "-> bpe(...) -> vocab[piece] for each piece.")
def _encode_cases():
    from minigpt.corpus import load_documents

    for text in TEXTS:
        yield Case(args=(text,), name=f"text {text[:24]!r}{'...' if len(text) > 24 else ''}")
    doc = load_documents("embedded", "val")[0][:300]
    yield Case(args=(doc,), name="the first 300 characters of the embedded corpus's first validation document")


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


class DecoderDecodesEachToken:
    """Decodes each token's bytes on their own: half a character becomes U+FFFD."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def feed(self, token_id):
        return self.tokenizer.token_bytes(token_id).decode("utf-8", errors="replace")

    def flush(self):
        return ""


class DecoderWaitsOnlyAfterLeadByte(DecoderDecodesEachToken):
    """Holds back a trailing lead byte, but not a lead byte followed by some of its continuation bytes."""

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
    """Right while streaming, but an unfinished character at the end silently disappears."""

    def flush(self):
        self.pending = b""
        return ""


class DecoderIgnoresErrors(DecoderDecodesEachToken):
    """errors='ignore': no U+FFFD on screen, because the partial characters are dropped."""

    def feed(self, token_id):
        return self.tokenizer.token_bytes(token_id).decode("utf-8", errors="ignore")


class DecoderAllAtTheEnd(DecoderDecodesEachToken):
    """Correct text, but nothing is shown until flush(): that is not streaming."""

    def __init__(self, tokenizer):
        super().__init__(tokenizer)
        self.buf = b""

    def feed(self, token_id):
        self.buf += self.tokenizer.token_bytes(token_id)
        return ""

    def flush(self):
        out, self.buf = self.buf.decode("utf-8", errors="replace"), b""
        return out


@exercise("ch02.StreamingDecoder", reference=tk.StreamingDecoder, kind="class", run=_drive, uses_device=False,
          compare=_compare_pieces,
          wrong=[DecoderDecodesEachToken, DecoderWaitsOnlyAfterLeadByte, DecoderFlushForgetsPending,
                 DecoderIgnoresErrors, DecoderAllAtTheEnd],
          hint="keep a byte buffer; in feed(), add the token's bytes and return only the longest prefix that "
               "does not end inside a character (look at the last 1-3 bytes: a lead byte 110xxxxx / 1110xxxx / "
               "11110xxx says how many bytes its character needs); flush() decodes what is left with "
               "errors='replace'.")
def _streaming_cases():
    tok = gpt2()
    for text in (TEXTS[2], TEXTS[5]):
        yield Case(args=(tok, tok.encode(text)), name=f"GPT-2 ids of {text[:16]!r}...")
    mixed = "aé日𠮷😀ん"
    yield Case(args=(BYTE_TOKENS, list(mixed.encode("utf-8"))),
               name=f"one byte per token (every split point) of {mixed!r}")
    broken = b"ok \xe3\x81\x82 \x80 lone continuation, \xe3\x81 cut short, \xf0\x9f\x98"
    yield Case(args=(BYTE_TOKENS, list(broken)), name="invalid UTF-8: a lone continuation byte, a cut "
                                                     "character, and a 4-byte character missing its end")
