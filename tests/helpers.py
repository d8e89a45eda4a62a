"""Test doubles shared by the test files (import them: `from helpers import ByteTokenizer`).

Fixtures shared the same way (a SentencePiece tokenizer trained once per session) are in
tests/conftest.py.
"""

from __future__ import annotations

from minigpt.tokenizer import Tokenizer


class ByteTokenizer(Tokenizer):
    """One token per UTF-8 byte, EOS = 256: the simplest tokenizer. Every Japanese character is 3
    tokens, like GPT-2's byte tokens; enough to test the data pipeline, training, generation and the
    Tokenizer base class without training anything."""

    name, vocab_size, eos_id = "bytes", 257, 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def token_bytes(self, token_id: int) -> bytes:
        return b"" if token_id == self.eos_id else bytes([token_id])

    def spec(self) -> dict:
        return {"type": "bytes"}
