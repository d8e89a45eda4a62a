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
                "--eval-interval", "2", "--eval-iters", "2", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "done (done): step 4" in r.stdout and read_config(out / "checkpoint")["step"] == 4
    gen = ["generate", "--checkpoint", out, "--prompt", "昔々", "--max-new-tokens", "12", "--seed", "3"]
    a, b = run_cli(*gen), run_cli(*gen)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("昔々") and "\ufffd" not in a.stdout


def test_train_resume_continues_the_run_in_place(sp_model, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["--batch-size", "4", "--eval-iters", "2", "--out", str(out), "--no-progress", "--no-plot"]
    assert main(["train", "--preset", "tiny", "--tokenizer", str(sp_model), "--steps", "6", *common]) == 0
    assert main(["train", "--resume", "--steps", "9", *common]) == 0
    assert read_config(out / "checkpoint")["step"] == 9
    assert "resuming" in capsys.readouterr().out


def test_train_refuses_to_overwrite_a_checkpoint_without_a_flag(sp_model, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--tokenizer", str(sp_model), "--steps", "2", "--batch-size", "2",
            "--eval-iters", "1", "--out", str(out), "--no-progress", "--no-plot"]
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


# --------------------------------------------------------------------------- issue 13: runs and errors
def tiny_run(sp_model, out, *extra):
    return main(["train", "--preset", "tiny", "--tokenizer", str(sp_model), "--steps", "3", "--batch-size", "2",
                 "--eval-interval", "3", "--eval-iters", "1", "--out", str(out), "--no-progress", "--no-plot",
                 *map(str, extra)])


@pytest.fixture(scope="module")
def run_folder(sp_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        assert tiny_run(sp_model, out) == 0
    return out


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "checkpoint" / "model.safetensors"))


def test_train_with_the_same_seed_gives_bit_identical_weights(sp_model, tmp_path, capsys):
    import torch

    assert tiny_run(sp_model, tmp_path / "a", "--seed", "11") == 0
    torch.manual_seed(999)  # whatever the global RNG held before must not matter
    assert tiny_run(sp_model, tmp_path / "b", "--seed", "11") == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_uses_sdpa_by_default_and_attn_chooses(sp_model, run_folder, tmp_path, capsys):
    assert read_config(run_folder / "checkpoint")["model_config"]["attn_impl"] == "sdpa"
    assert tiny_run(sp_model, tmp_path / "m", "--attn", "manual") == 0
    assert read_config(tmp_path / "m" / "checkpoint")["model_config"]["attn_impl"] == "manual"


def test_resume_trains_on_the_recorded_corpus_and_refuses_other_data(sp_model, tmp_path, capsys):
    corpus = tmp_path / "mine.txt"
    corpus.write_text("\n\n".join(f"今日は{i}番目の晴れた日です。駅前の喫茶店で本を読みました。" for i in range(60)),
                      encoding="utf-8")
    out = tmp_path / "run"
    assert tiny_run(sp_model, out, "--corpus", corpus) == 0
    assert read_config(out / "checkpoint")["info"]["data"]["name"] == str(corpus)
    first = capsys.readouterr().out
    common = ["--out", str(out), "--no-progress", "--no-plot"]
    assert main(["train", "--resume", "--steps", "5", *common]) == 0  # no --corpus: the checkpoint's
    resumed = capsys.readouterr().out
    assert first.split("data: ")[1].split(")")[0] == resumed.split("data: ")[1].split(")")[0]
    assert main(["train", "--resume", "--steps", "7", "--corpus", "embedded", *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--allow-other-data" in err
    assert read_config(out / "checkpoint")["step"] == 5
    assert main(["train", "--resume", "--steps", "7", "--corpus", "embedded", "--allow-other-data", *common]) == 0


def test_generate_with_max_new_tokens_0_prints_only_the_prompt(run_folder):
    r = run_cli("generate", "--checkpoint", run_folder, "--prompt", "昔々", "--max-new-tokens", "0", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "昔々\n"


BAD_INPUTS = {
    "lr inf": ["train", "--lr", "inf"],
    "lr nan": ["train", "--lr", "nan"],
    "lr 0": ["train", "--lr", "0"],
    "lr negative": ["train", "--lr=-1e-3"],
    "minutes nan": ["train", "--minutes", "nan"],
    "steps 0": ["train", "--steps", "0"],
    "out is a file": ["train", "--out", "{file}"],
    "device tpu": ["train", "--device", "tpu", "--out", "{tmp}/r"],
    "device cuda without CUDA": ["train", "--device", "cuda", "--out", "{tmp}/r"],
    "precision bf16 on the CPU": ["train", "--precision", "bf16", "--device", "cpu", "--out", "{tmp}/r"],
    "missing tokenizer": ["train", "--tokenizer", "{tmp}/nope.model", "--out", "{tmp}/r"],
    "resume without a checkpoint": ["train", "--resume", "--out", "{tmp}/empty"],
    "train-ddp lr nan": ["train-ddp", "--lr", "nan"],
    "generate temperature nan": ["generate", "--checkpoint", "{run}", "--temperature", "nan"],
    "generate negative max-new-tokens": ["generate", "--checkpoint", "{run}", "--max-new-tokens", "-1"],
    "generate top-p 2": ["generate", "--checkpoint", "{run}", "--top-p", "2"],
    "generate device tpu": ["generate", "--checkpoint", "{run}", "--device", "tpu"],
    "generate missing checkpoint": ["generate", "--checkpoint", "{tmp}/missing"],
    "demo minutes nan": ["demo", "--minutes", "nan"],
    "unknown option": ["train", "--no-such-option"],
    "missing value": ["train", "--lr"],
    "not a number": ["generate", "--checkpoint", "{run}", "--temperature", "warm"],
}


# Runs every bad input through minigpt.cli.main in one subprocess (one torch import, not one per input),
# each with its own stderr; an exception escaping main is what a user would see as a traceback.
DRIVER = r"""
import contextlib, io, json, sys, traceback
from minigpt.cli import main
out = {}
for name, args in json.loads(sys.argv[1]).items():
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(args)
        except SystemExit as e:
            status = e.code
        except BaseException:
            traceback.print_exc(file=err)
            status = "traceback"
    out[name] = [status, err.getvalue()]
print(json.dumps(out))
"""


def test_every_bad_input_is_one_error_line_with_exit_status_2(run_folder, tmp_path):
    import json

    import torch

    (tmp_path / "file").write_text("not a folder")
    table = {name: [a.format(file=tmp_path / "file", tmp=tmp_path, run=run_folder) for a in args]
             for name, args in BAD_INPUTS.items()
             if not (name == "device cuda without CUDA" and torch.cuda.is_available())}
    r = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(table)], capture_output=True, text=True,
                       encoding="utf-8", env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    bad = {name: (status, err[-600:]) for name, (status, err) in results.items()
           if not (status == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "))}
    assert not bad, bad
    assert len(results) == len(table) >= 18


def test_generate_given_the_run_folder_finishes_an_interrupted_checkpoint_swap(run_folder, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    (run / "checkpoint").rename(run / ".checkpoint.new")  # a crash between the two renames of a save
    assert main(["generate", "--checkpoint", str(run), "--prompt", "昔々", "--max-new-tokens", "3", "--seed", "0"]) == 0
    assert capsys.readouterr().out.startswith("昔々") and (run / "checkpoint" / "config.json").is_file()
