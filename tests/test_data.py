"""Token streams, the train/val split in TokenData, and random batches (minigpt.data)."""

import math

import pytest
import torch

from minigpt.data import TokenData, count_chars, encode_documents, get_batch, make_token_data, prepare_data

from helpers import ByteTokenizer


def test_encode_documents_appends_eos_after_every_document():
    tok = ByteTokenizer()
    stream = encode_documents(tok, ["ab", "猫"])
    assert stream.dtype == torch.long
    assert stream.tolist() == [97, 98, 256, *"猫".encode("utf-8"), 256]


def test_encode_documents_of_no_documents_is_empty():
    assert encode_documents(ByteTokenizer(), []).numel() == 0


def test_token_data_keeps_each_split_and_its_character_count():
    train_docs, val_docs = ["今日は晴れ。", "明日"], ["雨。"]
    data = make_token_data(ByteTokenizer(), train_docs, val_docs)
    assert data.train_chars == count_chars(train_docs) == 8
    assert data.val_chars == 2
    assert len(data.train) == sum(len(d.encode()) for d in train_docs) + 2  # + one EOS per document
    assert len(data.val) == len("雨。".encode()) + 1


def test_bits_per_char_converts_nats_per_token_by_tokens_per_char():
    data = TokenData(train=torch.zeros(30, dtype=torch.long), val=torch.zeros(12, dtype=torch.long),
                     train_chars=10, val_chars=4)
    ce = 0.9
    assert data.bits_per_char(ce) == pytest.approx(ce * 12 / 4 / math.log(2))
    assert data.bits_per_char(ce, "train") == pytest.approx(ce * 30 / 10 / math.log(2))


def test_prepare_data_encodes_the_embedded_train_and_val_splits():
    from minigpt.corpus import load_documents

    data = prepare_data("embedded", "gpt2")
    val_docs = load_documents("embedded", "val")
    assert data.val_chars == count_chars(val_docs)
    assert data.train_chars == count_chars(load_documents("embedded", "train"))
    assert (data.val == data.tokenizer.eos_id).sum().item() >= len(val_docs)
    assert len(data.train) > len(data.val) > 0


def test_get_batch_targets_are_the_inputs_shifted_by_one():
    stream = torch.arange(1000)
    x, y = get_batch(stream, batch_size=4, seq_len=16, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16)
    assert x.dtype == y.dtype == torch.long
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y, x + 1)  # arange: every window is a contiguous slice of the stream


def test_get_batch_is_deterministic_given_a_generator():
    stream = torch.randint(0, 50, (500,), generator=torch.Generator().manual_seed(1))
    a = get_batch(stream, 8, 10, torch.Generator().manual_seed(42))
    b = get_batch(stream, 8, 10, torch.Generator().manual_seed(42))
    c = get_batch(stream, 8, 10, torch.Generator().manual_seed(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_get_batch_uses_every_start_including_the_last_window():
    stream = torch.arange(12)
    x, _ = get_batch(stream, batch_size=400, seq_len=8, generator=torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == {0, 1, 2, 3}  # 12 - (8 + 1) + 1 = 4 possible starts


def test_get_batch_accepts_a_stream_of_exactly_one_window():
    x, y = get_batch(torch.arange(9), 2, 8, torch.Generator().manual_seed(0))
    assert x[0].tolist() == list(range(8)) and y[0].tolist() == list(range(1, 9))


@pytest.mark.parametrize("length", [0, 5, 8])
def test_get_batch_on_a_short_stream_says_how_long_and_what_to_do(length):
    with pytest.raises(ValueError) as e:
        get_batch(torch.arange(length), 2, 8)
    msg = str(e.value)
    assert f"has {length} tokens" in msg and "seq_len + 1 = 9" in msg
    assert "smaller --seq-len" in msg and f"at most {max(length - 1, 0)}" in msg and "more text" in msg
