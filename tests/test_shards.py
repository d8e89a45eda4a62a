"""minigpt.shards: tokenize once into memory-mapped shards; sample training windows from them."""

from __future__ import annotations

import bz2
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt.corpus import load_documents
from minigpt.data import encode_documents, get_batch
from minigpt.shards import ShardedTokens, ShardError, load_shard_data, read_meta, sample_batch, write_shards
from minigpt.tokenizer import load_tokenizer

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tatoeba" / "jpn_sentences.tsv.bz2"


@pytest.fixture(scope="module")
def gpt2():
    return load_tokenizer("gpt2")


@pytest.fixture(scope="module")
def docs():
    return load_documents("embedded", "train")[:120]  # ~60k characters


class CodepointTokenizer:
    """A stand-in tokenizer with a vocabulary too big for uint16: one id per character."""

    vocab_size = 0x110000 + 1
    eos_id = 0x110000
    name = "codepoints"

    def encode(self, text):
        return [ord(c) for c in text]

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def spec(self):
        return {"type": "codepoints"}


def test_shards_hold_every_documents_tokens_in_order_with_eos_after_each(gpt2, docs, tmp_path):
    summary = write_shards(docs, gpt2, tmp_path, "train", shard_chars=15_000, workers=0, progress=False)
    assert summary["shards"] > 2 and summary["dtype"] == "uint16"
    stream = ShardedTokens(tmp_path, "train")
    assert torch.equal(stream.read_all(), encode_documents(gpt2, docs))
    meta = read_meta(tmp_path)
    assert meta["splits"]["train"]["tokens"] == len(stream) and meta["splits"]["train"]["docs"] == len(docs)
    assert meta["tokenizer"] == gpt2.spec() and meta["eos_id"] == gpt2.eos_id


def test_parallel_workers_write_the_same_shards_as_one_process(gpt2, docs, tmp_path):
    write_shards(docs, gpt2, tmp_path / "one", shard_chars=15_000, workers=0, progress=False)
    write_shards(docs, gpt2, tmp_path / "two", shard_chars=15_000, workers=2, progress=False)
    files = sorted(p.name for p in (tmp_path / "one").glob("*.bin"))
    assert files == sorted(p.name for p in (tmp_path / "two").glob("*.bin"))
    for name in files:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_rerunning_skips_finished_shards_and_redoes_only_a_missing_one(gpt2, docs, tmp_path):
    first = write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    again = write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    assert (again["skipped"], again["written"]) == (first["shards"], 0)
    (tmp_path / "train_000001.bin").unlink()
    third = write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    assert (third["skipped"], third["written"]) == (first["shards"] - 1, 1)
    assert torch.equal(ShardedTokens(tmp_path).read_all(), encode_documents(gpt2, docs))


def test_an_interrupted_run_keeps_its_finished_shards(gpt2, docs, tmp_path):
    def stops_half_way():
        yield from docs[:70]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(stops_half_way(), gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    with pytest.raises(ShardError, match="incomplete"):
        ShardedTokens(tmp_path, "train")
    done = sum(1 for r in read_meta(tmp_path)["splits"]["train"]["shards"] if r)
    assert done >= 1
    resumed = write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    assert resumed["skipped"] == done
    assert torch.equal(ShardedTokens(tmp_path).read_all(), encode_documents(gpt2, docs))


def test_a_full_disk_is_a_one_line_error_that_keeps_the_finished_shards(gpt2, docs, tmp_path, monkeypatch):
    import minigpt.shards as shards_mod

    real = shards_mod._tokenize_shard

    def third_shard_hits_a_full_disk(job, tokenizer=None):
        if job[2] == 2:
            raise OSError(28, "No space left on device")
        return real(job, tokenizer)

    monkeypatch.setattr(shards_mod, "_tokenize_shard", third_shard_hits_a_full_disk)
    with pytest.raises(ShardError, match="the disk is full.*run the same command again") as err:
        write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    assert "\n" not in str(err.value) and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.undo()
    resumed = write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    assert resumed["skipped"] == 2
    assert torch.equal(ShardedTokens(tmp_path).read_all(), encode_documents(gpt2, docs))


def test_a_shorter_corpus_drops_the_shards_past_its_end(gpt2, docs, tmp_path):
    write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    write_shards(docs[:10], gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    assert torch.equal(ShardedTokens(tmp_path).read_all(), encode_documents(gpt2, docs[:10]))
    assert len(list(tmp_path.glob("train_*.bin"))) == len(read_meta(tmp_path)["splits"]["train"]["shards"])


def test_vocabularies_over_65536_tokens_are_stored_as_uint32(tmp_path):
    tok = CodepointTokenizer()
    write_shards(["𠮷野家", "です"], tok, tmp_path, workers=0, progress=False)
    st = ShardedTokens(tmp_path)
    assert st.dtype == np.uint32
    assert st.read_all().tolist() == [0x20BB7, ord("野"), ord("家"), tok.eos_id, ord("で"), ord("す"), tok.eos_id]


def test_shards_of_another_tokenizer_are_refused(gpt2, tmp_path):
    write_shards(["テスト"], gpt2, tmp_path, workers=0, progress=False)
    with pytest.raises(ShardError, match="another tokenizer"):
        write_shards(["テスト"], CodepointTokenizer(), tmp_path, workers=0, progress=False)


def test_a_missing_split_says_how_to_make_it(gpt2, tmp_path):
    write_shards(["テスト"], gpt2, tmp_path, "train", workers=0, progress=False)
    with pytest.raises(ShardError, match="data shard"):
        ShardedTokens(tmp_path, "val")


def test_one_shard_gives_exactly_the_batches_of_the_in_memory_stream(gpt2, docs, tmp_path):
    write_shards(docs, gpt2, tmp_path, workers=0, progress=False)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    stream = encode_documents(gpt2, docs)
    for _ in range(3):
        x1, y1 = ShardedTokens(tmp_path).get_batch(4, 16, g1)
        x2, y2 = get_batch(stream, 4, 16, g2)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_batches_from_many_shards_are_windows_inside_one_shard(gpt2, docs, tmp_path):
    write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    st = ShardedTokens(tmp_path)
    shards = [np.asarray(st.shard(i)).astype(np.int64) for i in range(len(st.files))]
    x, y = sample_batch(st, 16, 24, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (16, 24) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    for row_x, row_y in zip(x.numpy(), y.numpy()):
        window = np.concatenate([row_x, row_y[-1:]])
        found = any(np.array_equal(s[i:i + 25], window) for s in shards for i in np.flatnonzero(s == window[0]))
        assert found


def test_each_rank_draws_from_its_own_part_of_every_shard(gpt2, docs, tmp_path):
    write_shards(docs, gpt2, tmp_path, shard_chars=15_000, workers=0, progress=False)
    parts = [ShardedTokens(tmp_path, rank=r, world_size=3).window_ranges(32) for r in range(3)]
    whole = {i: (lo, hi) for i, lo, hi in ShardedTokens(tmp_path).window_ranges(32)}
    for i, (lo, hi) in whole.items():
        mine = [next((a, b) for j, a, b in p if j == i) for p in parts]
        assert mine[0][0] == lo and mine[-1][1] == hi  # together they cover the shard ...
        assert all(mine[k][1] == mine[k + 1][0] for k in range(2))  # ... without overlap


def test_drawing_a_batch_reads_only_its_windows(tmp_path):
    tok = CodepointTokenizer()
    write_shards(["あ" * 2_000_000], tok, tmp_path, workers=0, progress=False)  # one 8 MB uint32 shard
    st = ShardedTokens(tmp_path)
    g = torch.Generator().manual_seed(0)
    st.get_batch(8, 64, g)  # open the memory map
    tracemalloc.start()
    st.get_batch(8, 64, g)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200_000  # bytes: the windows, not the 8 MB file


def test_load_shard_data_gives_token_data_with_bits_per_char(gpt2, docs, tmp_path):
    val = load_documents("embedded", "val")[:10]
    write_shards(docs, gpt2, tmp_path, "train", workers=0, progress=False)
    write_shards(val, gpt2, tmp_path, "val", workers=0, progress=False)
    data = load_shard_data(tmp_path)
    assert data.val_chars == sum(len(d) for d in val)
    assert data.val_tokens_per_char == len(encode_documents(gpt2, val)) / data.val_chars
    assert data.tokenizer.spec() == gpt2.spec()


def test_the_cli_shards_a_folder_and_describes_it(tmp_path, capsys):
    from minigpt.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n---\n".join(f"文書{i}です。" for i in range(30)), encoding="utf-8")
    out = tmp_path / "shards"
    assert main(["data", "shard", "--corpus", str(corpus), "--tokenizer", "gpt2", "--out", str(out),
                 "--workers", "0", "--no-progress"]) == 0
    assert main(["data", "info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train: 1 shard(s)" in text and "val: 1 shard(s)" in text


def test_a_tatoeba_slice_goes_from_the_export_to_shards(gpt2, tmp_path):
    if not MIRROR.is_file():
        pytest.skip(f"Tatoeba mirror not found at {MIRROR} (CI keeps ../shared beside the clone)")
    from minigpt.datasets import load_tatoeba

    with bz2.open(MIRROR, "rb") as f:
        head = b"".join(f.readline() for _ in range(2000))
    (tmp_path / "slice.tsv").write_bytes(head)  # a slice, made at test time
    docs = load_tatoeba("train", url=str(tmp_path / "slice.tsv"), progress=False)
    write_shards(docs, gpt2, tmp_path / "shards", workers=0, progress=False)
    st = ShardedTokens(tmp_path / "shards")
    assert len(st) == sum(len(gpt2.encode(d)) + 1 for d in docs)
    assert json.loads((tmp_path / "shards" / "meta.json").read_text())["splits"]["train"]["docs"] == len(docs)


def test_shards_carry_their_sentencepiece_model_and_load_after_it_moves(tmp_path):
    from minigpt.tokenizer import train_sentencepiece

    docs = load_documents("embedded", "train")
    tok = train_sentencepiece(docs, tmp_path / "tok" / "sp", vocab_size=3000)
    for split in ("train", "val"):
        write_shards(docs[:20], tok, tmp_path / "shards", split, workers=0, progress=False)
    (tmp_path / "tok" / "sp.model").rename(tmp_path / "elsewhere.model")
    data = load_shard_data(tmp_path / "shards")
    assert data.tokenizer.sha256 == tok.sha256
