"""UTF-8 across token boundaries: print whole characters only, and draw only tokens that can form them.

A byte-level tokenizer (GPT-2's BPE, SentencePiece with byte pieces like ``<0xE3>``) can put part
of a character into one token and the rest into the next. Two different things then go wrong:

- **Cutting.** Decoding token by token (streaming while sampling, or a window cut at SEQ_LEN)
  shows U+FFFD for a character whose bytes are split between tokens. ``StreamingDecoder`` keeps
  the bytes of an unfinished character until the token that completes it arrives;
  ``decode_stream`` is the same as a generator.
- **Drawing.** A model can *sample* bytes that never form a character (a lead byte followed by a
  new kanji token, a stray continuation byte). No decoder can print those; ``Utf8Guard`` is a
  logits filter that masks every token that could not continue the open character.

    >>> from minigpt.tokenizer import load_tokenizer
    >>> tok = load_tokenizer("gpt2")
    >>> dec = StreamingDecoder(tok)
    >>> [dec.feed(i) for i in tok.encode("猫")]   # one kanji, three byte tokens
    ['', '', '猫']

``minigpt.tokenizer`` re-exports ``StreamingDecoder`` and ``decode_stream``, and ``minigpt.generate``
re-exports ``Utf8Guard``, so older imports keep working.
"""

from __future__ import annotations

import codecs
from typing import Iterable, Iterator

__all__ = ["StreamingDecoder", "decode_stream", "Utf8Guard", "utf8_length", "complete_prefix_length"]


def utf8_length(lead: int) -> int:
    """How many bytes the UTF-8 character starting with byte ``lead`` has (1 if not a valid lead)."""
    if 0xC2 <= lead <= 0xDF:
        return 2  # 110xxxxx
    if 0xE0 <= lead <= 0xEF:
        return 3  # 1110xxxx: kana and most kanji
    if 0xF0 <= lead <= 0xF4:
        return 4  # 11110xxx: emoji, rare kanji like 𠮷
    return 1  # ASCII, or a byte that cannot start a character (decoded as U+FFFD)


def complete_prefix_length(buf: bytes) -> int:
    """Length of the longest prefix of ``buf`` that does not end inside an unfinished character."""
    # The last character starts at the last byte that is not a continuation byte (10xxxxxx).
    for back in range(1, min(4, len(buf)) + 1):
        b = buf[-back]
        if b & 0xC0 != 0x80:
            return len(buf) - back if utf8_length(b) > back else len(buf)
    return len(buf)  # only continuation bytes: invalid anyway, nothing to wait for


class StreamingDecoder:
    """Turn token ids into text one token at a time, never printing half a character.

    A token's bytes may end in the middle of a UTF-8 character (GPT-2 byte tokens, SentencePiece
    byte pieces like ``<0xE3>``). ``feed`` adds the token's bytes to a buffer and returns only
    the complete characters; an unfinished trailing sequence waits for the next token.
    ``flush`` returns what is left (as U+FFFD if it never completed). The concatenated output
    equals ``tok.decode(ids)``. (Python's ``codecs.getincrementaldecoder("utf-8")`` does the
    same bookkeeping; it is written out here because it is the point of the lesson.)

    >>> from minigpt.tokenizer import load_tokenizer
    >>> tok = load_tokenizer("gpt2")
    >>> dec = StreamingDecoder(tok)
    >>> [dec.feed(i) for i in tok.encode("猫")]
    ['', '', '猫']
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.pending = b""  # bytes of an unfinished character

    def feed(self, token_id: int) -> str:
        buf = self.pending + self.tokenizer.token_bytes(token_id)
        n = complete_prefix_length(buf)
        self.pending = buf[n:]
        return buf[:n].decode("utf-8", errors="replace")

    def flush(self) -> str:
        out, self.pending = self.pending.decode("utf-8", errors="replace"), b""
        return out


def decode_stream(tokenizer, ids: Iterable[int]) -> Iterator[str]:
    """Yield text pieces (whole characters only) as the token ids arrive."""
    dec = StreamingDecoder(tokenizer)
    for i in ids:
        text = dec.feed(i)
        if text:
            yield text
    rest = dec.flush()
    if rest:
        yield rest


class Utf8Guard:
    """A logits filter that only lets the model draw tokens that keep the output valid UTF-8.

    StreamingDecoder fixes U+FFFD caused by *cutting* a character between tokens. A model can
    also *draw* bytes that never form a character (a lead byte followed by a new kanji token, or
    a stray continuation byte): no decoder can print those. With byte tokens in the vocabulary
    (GPT-2's bytes, SentencePiece's <0xE3> pieces) an undertrained model does that now and then.
    The guard tracks the bytes of the unfinished character and masks every token that could not
    continue it; when no character is open, it masks the tokens that start with a stray byte.

    Most tokens are whole characters: they are allowed exactly when no character is open, so only
    the few "partial" tokens need a check at each step.
    """

    def __init__(self, tok, vocab_size: int | None = None):
        import torch  # here, not at the top: the tokenizer commands import this module and never need torch

        self._decoder_cls = codecs.getincrementaldecoder("utf-8")
        self.tok = tok
        V = vocab_size or tok.vocab_size
        n = min(V, tok.vocab_size)
        self.token_bytes = [tok.token_bytes(i) for i in range(n)]
        whole = torch.zeros(V, dtype=torch.bool)
        can_start = torch.zeros(V, dtype=torch.bool)  # allowed when no character is open
        self.partial_ids = []
        for i, b in enumerate(self.token_bytes):
            if self._complete(b):
                whole[i] = can_start[i] = True
            else:
                self.partial_ids.append(i)
                can_start[i] = self._valid_prefix(b)
        self.whole, self.can_start = whole, can_start
        self.pending = b""

    def _complete(self, b: bytes) -> bool:
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    def _valid_prefix(self, b: bytes) -> bool:
        """True when b is valid UTF-8, except perhaps an unfinished character at its end."""
        try:
            self._decoder_cls("strict").decode(b, final=False)
            return True
        except UnicodeDecodeError:
            return False

    def allowed(self):
        """(V,) bool: the tokens that may come next."""
        if not self.pending:
            return self.can_start
        mask = self.whole.new_zeros(self.whole.shape)  # (V,) bool, all False
        for i in self.partial_ids:
            if self._valid_prefix(self.pending + self.token_bytes[i]):
                mask[i] = True
        return mask

    def __call__(self, logits):
        mask = self.allowed()
        if not mask.any():  # cannot happen with byte tokens in the vocabulary; never block generation
            return logits
        return logits.masked_fill(~mask.to(logits.device), float("-inf"))

    def feed(self, token_id: int) -> None:
        """Record a drawn token: keep the bytes of a character it leaves unfinished."""
        dec = self._decoder_cls("replace")
        dec.decode(self.pending + self.tok.token_bytes(token_id), final=False)
        self.pending = dec.getstate()[0]

    @property
    def open_character(self) -> bool:
        return bool(self.pending)
