"""minigpt.corpus: documents by name, the fixed train/val split, strict UTF-8 with clear errors."""

from collections import Counter
from pathlib import Path

import pytest

from minigpt.corpus import (
    EMBEDDED_DIR,
    CorpusError,
    corpus_files,
    corpus_stats,
    describe_corpus,
    load_documents,
    read_text,
    split_documents,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ja_small.txt"


def write_docs(path: Path, docs: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n---\n".join(docs) + "\n", encoding="utf-8")
    return path


def test_embedded_split_is_deterministic_disjoint_and_complete():
    train, val, all_docs = (load_documents("embedded", s) for s in ("train", "val", "all"))
    assert train and val, "the embedded corpus should give both splits"
    assert load_documents("embedded", "train") == train
    assert load_documents("embedded", "val") == val
    # Every document lands in exactly one split.
    assert Counter(train) + Counter(val) == Counter(all_docs)
    assert not set(train) & set(val)


def test_every_tenth_document_of_each_file_is_validation(tmp_path):
    write_docs(tmp_path / "a.txt", [f"文書A{i}です。" for i in range(12)])
    write_docs(tmp_path / "b.txt", [f"文書B{i}です。" for i in range(21)])
    assert load_documents(tmp_path, "val") == ["文書A9です。", "文書B9です。", "文書B19です。"]
    train = load_documents(tmp_path, "train")
    assert len(train) == 12 + 21 - 3
    assert train[:2] == ["文書A0です。", "文書A1です。"]  # files in sorted order, documents in file order


def test_separator_is_a_line_of_exactly_three_dashes():
    text = "一つ目。\n----\nまだ一つ目。\nA---B\n---\n二つ目。\n--- \n三つ目。"
    assert split_documents(text) == ["一つ目。\n----\nまだ一つ目。\nA---B", "二つ目。", "三つ目。"]


def test_empty_documents_are_dropped_and_blank_lines_trimmed():
    assert split_documents("\n\n---\n\n本文です。\n\n---\n   \n---\n") == ["本文です。"]


def test_single_document_corpus_is_split_by_characters_at_a_newline(tmp_path):
    lines = [f"{i}行目の文です。" for i in range(40)]
    path = tmp_path / "novel.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    (train,), (val,) = load_documents(path, "train"), load_documents(path, "val")
    assert load_documents(path, "all") == ["\n".join(lines)]
    assert train + "\n" + val == "\n".join(lines)  # cut at a line break, nothing lost
    assert 0.05 < len(val) / (len(train) + len(val)) < 0.2


def test_folder_is_read_recursively_in_sorted_order(tmp_path):
    write_docs(tmp_path / "b" / "z.txt", ["三番目。"])
    write_docs(tmp_path / "a.txt", ["一番目。"])
    write_docs(tmp_path / "b" / "c.txt", ["二番目。"])
    (tmp_path / "notes.md").write_text("読まない。", encoding="utf-8")
    assert [p.name for p in corpus_files(tmp_path)] == ["a.txt", "c.txt", "z.txt"]
    assert load_documents(tmp_path, "all") == ["一番目。", "二番目。", "三番目。"]


def test_read_text_strips_bom_and_normalises_newlines(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes(b"\xef\xbb\xbf" + "一行目\r\n二行目\r三行目\n".encode("utf-8"))
    assert read_text(path) == "一行目\n二行目\n三行目\n"


def test_non_utf8_file_error_names_file_and_byte_offset(tmp_path):
    path = tmp_path / "sjis.txt"
    good = "最初の行はUTF-8です。\n".encode("utf-8")
    path.write_bytes(good + "ここはシフトJISです。".encode("cp932"))
    with pytest.raises(CorpusError) as err:
        load_documents(path, "all")
    message = str(err.value)
    assert str(path) in message
    assert f"byte offset {len(good)}" in message
    assert "line 2" in message
    assert "iconv" in message and "UTF-8" in message
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("kind", ["nul bytes", "compressed", "model file"])
def test_a_binary_file_is_called_binary_not_shift_jis(tmp_path, kind):
    import bz2
    import random

    text = "駅前の古い喫茶店が閉店する。\n" * 40
    rng = random.Random(0)
    data = {"nul bytes": text.encode("utf-8") + b"\x00\x01\x02" + text.encode("utf-8"),
            "compressed": bz2.compress(text.encode("utf-8")),
            "model file": bytes(rng.randrange(256) for _ in range(4000))}[kind]
    path = tmp_path / "data.txt"
    path.write_bytes(data)
    with pytest.raises(CorpusError, match="looks like a binary file") as err:
        load_documents(path, "all")
    assert "iconv" not in str(err.value) and "Shift_JIS" not in str(err.value)


@pytest.mark.parametrize("encoding", ["cp932", "euc_jp"])
def test_real_japanese_text_in_another_encoding_keeps_the_iconv_hint(tmp_path, encoding):
    path = tmp_path / "old.txt"
    path.write_bytes(("今日は良い天気です。散歩に行きましょう。\n" * 20).encode(encoding))
    with pytest.raises(CorpusError, match="iconv") as err:
        load_documents(path, "all")
    assert "binary" not in str(err.value)


def test_the_split_rule_is_one_function_for_lists_and_streams(tmp_path):
    from minigpt.corpus import split_of_file
    from minigpt.datasets import iter_local_documents

    (tmp_path / "a.txt").write_text("\n---\n".join(f"文書{i}" for i in range(23)), encoding="utf-8")
    docs = [f"文書{i}" for i in range(23)]
    for split in ("train", "val", "all"):
        expected = list(split_of_file(docs, split, by_document=True))
        assert load_documents(tmp_path, split) == list(iter_local_documents(tmp_path, split)) == expected
    assert load_documents(tmp_path, "val") == ["文書9", "文書19"]


def test_missing_path_error_says_what_was_looked_for(tmp_path):
    with pytest.raises(CorpusError, match="'embedded', a .txt file or a folder"):
        load_documents(tmp_path / "nothing_here.txt")


def test_folder_without_text_files_is_an_error(tmp_path):
    (tmp_path / "readme.md").write_text("テキストではない", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"no \*\.txt files"):
        load_documents(tmp_path)


def test_empty_corpus_error(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n---\n\n\u3000\n---\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="has no text"):
        load_documents(tmp_path, "train")


def test_unknown_split_name_is_rejected():
    with pytest.raises(ValueError, match="split must be one of"):
        load_documents(FIXTURE, "test")


def test_corpus_stats_counts_characters_and_utf8_bytes():
    assert corpus_stats(["猫", "ab"]) == {"documents": 2, "characters": 3, "bytes": 5}


def test_describe_corpus_is_one_line_with_counts():
    line = describe_corpus(FIXTURE)
    assert "\n" not in line
    assert "13 documents (train 12 / val 1)" in line


def test_every_embedded_file_is_utf8_and_listed_in_the_licence():
    files = sorted(EMBEDDED_DIR.glob("*.txt"))
    assert files
    licence = (EMBEDDED_DIR / "LICENSE.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in licence
    for f in files:
        read_text(f)  # raises on non-UTF-8
        assert f"`{f.name}`" in licence, f"{f.name} is missing from minigpt/data/corpus/LICENSE.md"
