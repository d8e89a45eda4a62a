"""The command line (`python -m minigpt ...`, minigpt.cli): help, tokenizer, train, generate, errors."""

import contextlib
import io
import os
import subprocess
import sys

import pytest

from minigpt.checkpoint import read_config
from minigpt.cli import COMMANDS, main

ENV = {**os.environ, "PYTHONIOENCODING": "utf-8"}


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)], capture_output=True, text=True,
                          encoding="utf-8", env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def trained_tokenizer(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("tok") / "sp"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["tokenizer", "train", "--vocab-size", "3000", "--out", str(prefix)])
    return status, prefix.with_suffix(".model"), out.getvalue()


@pytest.fixture(scope="module")
def sp_model(trained_tokenizer):
    return trained_tokenizer[1]


def test_help_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0
    for name in ("tokenizer", "train", "generate", "demo"):
        assert name in r.stdout


def test_commands_are_a_dict_that_more_can_be_added_to():
    assert {"tokenizer", "train", "generate", "demo"} <= set(COMMANDS)


def test_train_help_explains_resume(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_tokenizer_train_writes_a_model_and_prints_its_stats(trained_tokenizer):
    status, model_file, out = trained_tokenizer
    assert status == 0 and model_file.is_file()
    assert f"wrote {model_file}" in out and "3000 pieces" in out
    assert "gpt2" in out and "sentencepiece-3000" in out  # stats on the validation split


def test_tokenizer_compare_prints_a_row_per_tokenizer(sp_model, capsys):
    assert main(["tokenizer", "compare", "--text", "駅前の古い喫茶店が、来月で閉店するらしい。" * 5, "--sp", str(sp_model)]) == 0
    out = capsys.readouterr().out
    assert "gpt2" in out and "sentencepiece-3000" in out and "chars_per_token" in out
    assert "fffd_rate_48tok_windows" in out


def test_train_then_generate_from_the_checkpoint_with_a_seed(sp_model, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", "--preset", "tiny", "--tokenizer", sp_model, "--steps", "4", "--batch-size", "4",
                "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "done (done): step 4" in r.stdout and read_config(out / "checkpoint")["step"] == 4
    gen = ["generate", "--checkpoint", out, "--prompt", "昔々", "--max-new-tokens", "12", "--seed", "3"]
    a, b = run_cli(*gen), run_cli(*gen)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("昔々") and "\ufffd" not in a.stdout


def test_train_resume_continues_the_run_in_place(sp_model, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--batch-size", "4", "--out", str(out), "--no-progress"]
    assert main(["train", "--preset", "tiny", "--tokenizer", str(sp_model), "--steps", "6", *common]) == 0
    assert main(["train", "--resume", "--steps", "9", *common]) == 0
    assert read_config(out / "checkpoint")["step"] == 9
    assert "resuming" in capsys.readouterr().out


def test_train_refuses_to_overwrite_a_checkpoint_without_a_flag(sp_model, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--tokenizer", str(sp_model), "--steps", "2", "--batch-size", "2",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--resume" in err and "--overwrite" in err
    assert main(args + ["--overwrite"]) == 0


def test_a_user_error_is_one_line_without_traceback_and_exit_status_2(tmp_path):
    r = run_cli("generate", "--checkpoint", tmp_path / "missing")
    assert r.returncode == 2
    assert r.stderr.startswith("error: no checkpoint at") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_an_unknown_option_exits_with_status_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--no-such-option"])
    assert e.value.code == 2


def test_a_bad_tokenizer_path_is_a_user_error(tmp_path, capsys):
    assert main(["train", "--tokenizer", str(tmp_path / "nope.model"), "--out", str(tmp_path / "r"),
                 "--steps", "1"]) == 2
    assert "SentencePiece model not found" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_and_a_rerun_replaces_its_folder(tmp_path, capsys):
    from minigpt.demo import MARKER, run_demo

    out = tmp_path / "demo"
    out.mkdir()
    (out / MARKER).touch()
    (out / "stale.txt").write_text("from an earlier run")
    summary = run_demo(minutes=0.05, out_dir=out, vocab_size=4000, progress=False, max_new_tokens=8)
    printed = capsys.readouterr().out
    assert not (out / "stale.txt").exists()
    assert (out / "loss.png").is_file() and read_config(out / "checkpoint")["step"] == summary["train_steps"]
    assert summary["fffd_printed"] == 0 and "\ufffd" not in printed.split("[5/6]")[1]
    assert summary["gpt2_chars_per_token"] < summary["sp_chars_per_token"]
    assert summary["val_bpc"] > 0 and "[6/6] summary" in printed


def test_the_demo_refuses_to_delete_a_folder_it_did_not_make(tmp_path):
    from minigpt.demo import run_demo

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="was not made by the demo"):
        run_demo(minutes=0.05, out_dir=tmp_path)
    assert (tmp_path / "notes.txt").exists()
