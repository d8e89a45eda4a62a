"""minigpt.utf8: whole characters only while streaming (StreamingDecoder), valid UTF-8 only while
sampling (Utf8Guard)."""

import random
from pathlib import Path

import pytest
import torch

from helpers import ByteTokenizer
from minigpt.tokenizer import GPT2Tokenizer
from minigpt.utf8 import StreamingDecoder, Utf8Guard, decode_stream

FIXTURE = Path(__file__).parent / "fixtures" / "ja_small.txt"
# None of 𠮷, 😀, 🍣, 鬱 is in the fixture, so a SentencePiece model trained on it falls back to bytes.
JA_TEXT = "𠮷野家で牛丼を食べた😀。午後２時、駅前のカフェで「ありがとう！」と言われた🍣 鬱蒼 ok\n次の行。"


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer()


@pytest.fixture(scope="module")
def tiny_sp(train_sp):
    return train_sp(FIXTURE, "all", vocab_size=530)


# --- Streaming decoder -----------------------------------------------------------------------


def assert_streams_cleanly(tok, text):
    ids = tok.encode(text)
    full = tok.decode(ids)
    assert full == text
    # Cut the token stream at every point: what was printed so far never contains U+FFFD, and it
    # is every complete character received so far (only an unfinished last one waits).
    for k in range(len(ids) + 1):
        dec = StreamingDecoder(tok)
        shown = "".join(dec.feed(i) for i in ids[:k])
        assert "\ufffd" not in shown, (k, shown)
        received = b"".join(tok.token_bytes(i) for i in ids[:k])
        assert shown == received.decode("utf-8", errors="ignore"), (k, shown)
        assert shown + "".join(dec.feed(i) for i in ids[k:]) + dec.flush() == full
    assert "".join(decode_stream(tok, ids)) == full


def test_plain_decode_of_a_cut_token_stream_shows_fffd(gpt2, tiny_sp):
    # The pitfall the streaming decoder exists for.
    for tok in (gpt2, tiny_sp):
        ids = tok.encode(JA_TEXT)
        assert any("\ufffd" in tok.decode(ids[:k]) for k in range(len(ids)))


def test_streaming_decoder_never_emits_fffd_for_gpt2_tokens(gpt2):
    assert_streams_cleanly(gpt2, JA_TEXT)


def test_streaming_decoder_never_emits_fffd_for_sentencepiece_byte_pieces(tiny_sp):
    ids = tiny_sp.encode(JA_TEXT)
    byte_pieces = [tiny_sp.piece(i) for i in ids if tiny_sp.sp.is_byte(i)]
    assert "<0xF0>" in byte_pieces  # 𠮷 and the emoji really fell back to bytes
    assert_streams_cleanly(tiny_sp, JA_TEXT)


def test_streaming_decoder_equals_decode_on_random_invalid_bytes():
    tok = ByteTokenizer()
    rng = random.Random(0)
    interesting = [0x41, 0x80, 0xBF, 0xC0, 0xC2, 0xE0, 0xE3, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0x9F, 0xA0]
    for _ in range(2000):
        ids = [rng.choice(interesting) for _ in range(rng.randrange(1, 9))]
        streamed = "".join(decode_stream(tok, ids))
        assert streamed == bytes(ids).decode("utf-8", errors="replace") == tok.decode(ids), bytes(ids)


def test_streaming_decoder_holds_back_an_unfinished_character(gpt2):
    dec = StreamingDecoder(gpt2)
    assert [dec.feed(i) for i in gpt2.encode("猫")] == ["", "", "猫"]
    dec.feed(gpt2.encode("猫")[0])
    assert dec.flush() == "\ufffd"  # a character that never completes is shown as U+FFFD at the end
    assert dec.flush() == ""


# --- Utf8Guard ---------------------------------------------------------------------------------


def test_utf8guard_still_imports_from_generate():
    import minigpt.generate

    assert minigpt.generate.Utf8Guard is Utf8Guard


def test_tokens_drawn_through_the_guard_always_decode_as_strict_utf8():
    tok = ByteTokenizer()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        guard = Utf8Guard(tok)
        drawn = []
        for _ in range(24):  # uniform logits: without the guard, most draws would be invalid
            logits = guard(torch.zeros(tok.vocab_size))
            i = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
            guard.feed(i)
            drawn.append(i)
        data = b"".join(tok.token_bytes(i) for i in drawn)
        if guard.open_character:  # an unfinished last character is allowed: cut it off
            data = data[: len(data) - len(guard.pending)]
        data.decode("utf-8")  # strict: raises on any invalid byte
