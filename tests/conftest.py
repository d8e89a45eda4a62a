"""Shared pytest settings and fixtures (shared test doubles that are not fixtures: tests/helpers.py).

`make test` runs two pytest-xdist workers on a 2-core machine; two torch threads per worker would
oversubscribe the cores (measured: up to 8x slower under load). One thread per process, also for
the subprocesses tests start (they inherit OMP_NUM_THREADS). Set MINIGPT_TEST_THREADS to change it.
"""

import os

import pytest

_threads = os.environ.get("MINIGPT_TEST_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", _threads)
os.environ.setdefault("MKL_NUM_THREADS", _threads)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# The package tests read English messages; a Japanese locale (LANG=ja_JP...) must not change them.
# Tests of the Japanese messages set MINIGPT_LANG=ja themselves.
os.environ["MINIGPT_LANG"] = "en"

import torch  # noqa: E402

torch.set_num_threads(int(_threads))


@pytest.fixture(scope="session")
def train_sp(tmp_path_factory):
    """train_sp(source="embedded", split="train", vocab_size=3000, **options): a SentencePiece
    tokenizer trained on `load_documents(source, split)`, once per session for each set of arguments
    (options go to train_sentencepiece: model_type, normalization, ...). Tests must not move or
    change its files: copy them first."""
    from minigpt.corpus import load_documents
    from minigpt.tokenizer import train_sentencepiece

    trained = {}

    def make(source="embedded", split="train", vocab_size=3000, **options):
        key = (str(source), split, vocab_size, tuple(sorted(options.items())))
        if key not in trained:
            folder = tmp_path_factory.mktemp("sp")
            trained[key] = train_sentencepiece(load_documents(source, split), folder / "sp", vocab_size=vocab_size,
                                               **options)
        return trained[key]

    return make
