"""`python -m minigpt opening` (minigpt.opening): GPT-2 against SentencePiece on a Japanese sentence, then a
trained model writing Japanese; without a checkpoint and with --no-train, one error line that says what to do."""

from pathlib import Path

import pytest

from minigpt import opening
from minigpt.cli import COMMANDS, main
from minigpt.tokenizer import load_tokenizer, train_sentencepiece

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sp(tmp_path_factory):
    from minigpt.corpus import load_documents

    return train_sentencepiece(load_documents("embedded", "train"), tmp_path_factory.mktemp("sp") / "sp",
                               vocab_size=4000)


def test_opening_is_a_registered_command():
    assert "opening" in COMMANDS


def test_gpt2_needs_more_tokens_than_sentencepiece_and_a_cut_shows_fffd(sp, capsys):
    stats = opening.show_tokens(load_tokenizer("gpt2"), sp)
    out = capsys.readouterr().out
    assert stats["gpt2_tokens"] > stats["sp_tokens"]
    assert stats["bytes"] == len(opening.SENTENCE.encode("utf-8"))
    assert stats["fffd_cut"] is not None and "\ufffd" in out


def test_without_a_checkpoint_and_no_train_it_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["opening", "--no-train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "make demo" in err


def test_the_demo_checkpoint_comes_first(tmp_path):
    for rel in ("runs/capstone/recipe/checkpoint", "runs/demo/checkpoint"):
        (tmp_path / rel).mkdir(parents=True)
        (tmp_path / rel / "config.json").write_text("{}")
    assert opening.find_checkpoint(tmp_path) == tmp_path / "runs/demo"


@pytest.mark.slow
def test_the_opening_runs_end_to_end_with_a_tiny_model_trained_now(tmp_path, capsys):
    result = opening.opening(train_seconds=5, max_new_tokens=10, root=tmp_path)
    assert result["trained_now"] and result["generated"] and "\ufffd" not in result["generated"]
