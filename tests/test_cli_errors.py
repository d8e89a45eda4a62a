"""Every mistake a learner can make on the command line is one line, ``error: ...``, and exit status 2.

A table of bad inputs (issue 13: tokenizers, checkpoints, downloads, exports, devices, sampling
settings, full disks), each run as `python -m minigpt ...` in its own subprocess. For every row:
exit status 2, exactly one line on stderr, starting with ``error:``, no traceback, and the words
that say what went wrong. The subprocesses run in parallel (most of their time is importing torch).

A full disk is simulated inside the subprocess: a small wrapper replaces the writer (torch.save,
transformers' save_pretrained, Path.write_bytes) by one that raises ENOSPC, then runs
`python -m minigpt` as usual.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

FIXTURE = Path(__file__).parent / "fixtures" / "ja_small.txt"
ENV = {**os.environ, "PYTHONIOENCODING": "utf-8", "MINIGPT_LANG": "en", "CUDA_VISIBLE_DEVICES": ""}
ENV.pop("MINIGPT_DEBUG", None)
ENV.pop("MINIGPT_TATOEBA_URL", None)

FULL_DISK = """
import errno, runpy, sys

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

target = sys.argv.pop(1)
if target == "torch.save":
    import torch
    torch.save = full
elif target == "save_pretrained":
    import transformers
    transformers.PreTrainedModel.save_pretrained = full
elif target == "write_bytes":
    import pathlib
    pathlib.Path.write_bytes = full
sys.argv[0] = "minigpt"
runpy.run_module("minigpt", run_name="__main__", alter_sys=True)
"""

# id -> (arguments after `python -m minigpt`, words the error line must hold). "{t}" is the temp folder.
# A first argument "@writer" runs the row on a full disk (see FULL_DISK).
TINY_TRAIN = ["--preset", "tiny", "--steps", "2", "--batch-size", "2", "--corpus", str(FIXTURE), "--no-progress",
              "--no-plot"]
ROWS = {
    # tokenizers
    "tokenizer train --vocab-size 1": (["tokenizer", "train", "--corpus", str(FIXTURE), "--vocab-size", "1",
                                        "--out", "{t}/sp1"], "smallest usable size"),
    "tokenizer train --vocab-size 2": (["tokenizer", "train", "--corpus", str(FIXTURE), "--vocab-size", "2",
                                        "--out", "{t}/sp2"], "smallest usable size"),
    "tokenizer train --vocab-size 0": (["tokenizer", "train", "--corpus", str(FIXTURE), "--vocab-size", "0",
                                        "--out", "{t}/sp0"], "vocab"),
    "tokenizer train on a binary file": (["tokenizer", "train", "--corpus", "{t}/binary.txt", "--out", "{t}/spb"],
                                         "binary file"),
    "tokenizer train on a missing corpus": (["tokenizer", "train", "--corpus", "{t}/nothing", "--out", "{t}/spm"],
                                            "no corpus named"),
    "tokenizer train on a full disk": (["@write_bytes", "tokenizer", "train", "--corpus", str(FIXTURE),
                                        "--vocab-size", "530", "--out", "{t}/spfull"], "disk is full"),
    "tokenizer compare --sp truncated": (["tokenizer", "compare", "--text", "猫", "--sp", "{t}/truncated.model"],
                                         "not a SentencePiece model"),
    "tokenizer compare --sp empty": (["tokenizer", "compare", "--text", "猫", "--sp", "{t}/empty.model"],
                                     "not a SentencePiece model"),
    "tokenizer compare --sp text": (["tokenizer", "compare", "--text", "猫", "--sp", "{t}/text.model"],
                                    "not a SentencePiece model"),
    "tokenizer compare --sp missing": (["tokenizer", "compare", "--text", "猫", "--sp", "{t}/missing.model"],
                                       "not found"),
    "tokenizer compare --file missing": (["tokenizer", "compare", "--file", "{t}/missing.txt", "--sp",
                                          "{t}/good.model"], "not found"),
    "tokenizer compare --seq-len 0": (["tokenizer", "compare", "--text", "猫", "--seq-len", "0", "--sp",
                                       "{t}/good.model"], "--seq-len"),
    # training
    "train --tokenizer truncated": (["train", "--tokenizer", "{t}/truncated.model", "--out", "{t}/r1", *TINY_TRAIN],
                                    "not a SentencePiece model"),
    "train --tokenizer empty": (["train", "--tokenizer", "{t}/empty.model", "--out", "{t}/r2", *TINY_TRAIN],
                                "not a SentencePiece model"),
    "train --tokenizer text": (["train", "--tokenizer", "{t}/text.model", "--out", "{t}/r3", *TINY_TRAIN],
                               "not a SentencePiece model"),
    "train --tokenizer missing": (["train", "--tokenizer", "{t}/missing.model", "--out", "{t}/r4", *TINY_TRAIN],
                                  "SentencePiece model not found"),
    "train --device tpu": (["train", "--device", "tpu", "--out", "{t}/r5", *TINY_TRAIN], "tpu"),
    "train --device cuda without CUDA": (["train", "--device", "cuda", "--out", "{t}/r6", *TINY_TRAIN], "cuda"),
    "train --out an existing file": (["train", "--out", "{t}/afile", *TINY_TRAIN], "afile"),
    "train --lr inf": (["train", "--lr", "inf", "--out", "{t}/r7", *TINY_TRAIN], "--lr"),
    "train --lr nan": (["train", "--lr", "nan", "--out", "{t}/r8", *TINY_TRAIN], "--lr"),
    "train --minutes nan": (["train", "--minutes", "nan", "--out", "{t}/r9", *TINY_TRAIN], "--minutes"),
    "train --resume without a checkpoint": (["train", "--resume", "--out", "{t}/empty_run", *TINY_TRAIN],
                                            "checkpoint"),
    "train on a full disk": (["@torch.save", "train", "--out", "{t}/r10", *TINY_TRAIN], "disk is full"),
    "train --out a run that has a checkpoint": (["train", "--out", "{t}/run", *TINY_TRAIN], "--resume"),
    "train-ddp --out a run that has a checkpoint": (["train-ddp", "--out", "{t}/run", *TINY_TRAIN], "--resume"),
    # generating
    "generate --checkpoint missing": (["generate", "--checkpoint", "{t}/missing"], "no checkpoint at"),
    "generate --temperature nan": (["generate", "--checkpoint", "{t}/run", "--temperature", "nan"], "--temperature"),
    "generate --temperature -1": (["generate", "--checkpoint", "{t}/run", "--temperature", "-1"], "--temperature"),
    "generate --max-new-tokens -1": (["generate", "--checkpoint", "{t}/run", "--max-new-tokens", "-1"],
                                     "--max-new-tokens"),
    "generate --top-p 2": (["generate", "--checkpoint", "{t}/run", "--top-p", "2"], "--top-p"),
    "generate --device tpu": (["generate", "--checkpoint", "{t}/run", "--device", "tpu"], "tpu"),
    "generate from a corrupted checkpoint": (["generate", "--checkpoint", "{t}/corrupted"], "is corrupted"),
    # exporting
    "export a corrupted checkpoint": (["export", "--checkpoint", "{t}/corrupted", "--out", "{t}/hf1"],
                                      "is corrupted"),
    "export --out an existing file": (["export", "--checkpoint", "{t}/run", "--out", "{t}/afile"], "is a file"),
    "export --out a folder with files": (["export", "--checkpoint", "{t}/run", "--out", "{t}/full_folder"],
                                         "already holds files"),
    "export on a full disk": (["@save_pretrained", "export", "--checkpoint", "{t}/run", "--out", "{t}/hf2"],
                              "disk is full"),
    # downloads and shards
    "data download --sha256 malformed": (["data", "download", "http://127.0.0.1:9/x.tsv.bz2", "--sha256", "abc123",
                                          "--cache", "{t}/cache"], "64 hexadecimal digits"),
    "data download without a network": (["data", "download", "tatoeba", "--url",
                                         "http://127.0.0.1:9/jpn_sentences.tsv.bz2", "--cache", "{t}/cache",
                                         "--no-progress"], "MINIGPT_TATOEBA_URL"),
    "data download a missing local file": (["data", "download", "tatoeba", "--url", "{t}/missing.tsv.bz2"],
                                           "no such file"),
    "data info on a folder without shards": (["data", "info", "{t}/empty_run"], "meta.json"),
    "data shard --tokenizer truncated": (["data", "shard", "--corpus", str(FIXTURE), "--tokenizer",
                                          "{t}/truncated.model", "--out", "{t}/shards"], "not a SentencePiece model"),
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, train_sp):
    """Tokenizer files good and bad, a checkpoint good and corrupted, a plain file, a binary file."""
    from minigpt.checkpoint import save_checkpoint
    from minigpt.config import get_preset
    from minigpt.model import GPT
    from minigpt.tokenizer import load_tokenizer

    t = tmp_path_factory.mktemp("bad_inputs")
    data = train_sp(FIXTURE, "all", vocab_size=530).model_file.read_bytes()
    (t / "good.model").write_bytes(data)
    tok = load_tokenizer(t / "good.model")
    (t / "truncated.model").write_bytes(data[: len(data) // 2])
    (t / "empty.model").write_bytes(b"")
    (t / "text.model").write_text("this is not a model\n")
    (t / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (t / "afile").write_text("a file, not a folder\n")
    (t / "empty_run").mkdir()
    (t / "full_folder").mkdir()
    (t / "full_folder" / "notes.txt").write_text("keep me\n")
    torch.manual_seed(0)
    model = GPT(get_preset("tiny", vocab_size=tok.vocab_size))
    for name in ("run", "corrupted"):
        save_checkpoint(t / name / "checkpoint", model, step=1, tokenizer=tok)
    weights = t / "corrupted" / "checkpoint" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-100] ^= 0xFF
    weights.write_bytes(bytes(raw))
    return t


def _run(row_id: str, t: Path) -> subprocess.CompletedProcess:
    args, _ = ROWS[row_id]
    args = [a.replace("{t}", str(t)) for a in args]
    if args[0].startswith("@"):
        command = [sys.executable, "-c", FULL_DISK, args[0][1:], *args[1:]]
    else:
        command = [sys.executable, "-m", "minigpt", *args]
    return subprocess.run(command, capture_output=True, text=True, encoding="utf-8", env=ENV, timeout=300,
                          cwd=t)


@pytest.fixture(scope="module")
def results(request, folder):
    """Every selected row (all, or those `-k` picked), run in parallel once."""
    wanted = [item.callspec.params["row_id"] for item in request.session.items
              if getattr(item, "callspec", None) is not None and "row_id" in item.callspec.params]
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {row_id: pool.submit(_run, row_id, folder) for row_id in dict.fromkeys(wanted)}
        return {row_id: f.result() for row_id, f in futures.items()}


def test_the_table_has_every_bad_input_of_issue_13():
    assert len(ROWS) >= 42


@pytest.mark.slow
@pytest.mark.parametrize("row_id", list(ROWS))
def test_a_bad_input_is_one_error_line_with_exit_status_2(results, row_id):
    r = results[row_id]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    shown = f"exit {r.returncode}, stderr:\n{r.stderr[-3000:]}"
    assert r.returncode == 2, shown
    assert "Traceback" not in r.stderr, shown
    assert len(lines) == 1 and lines[0].startswith("error: "), shown
    assert ROWS[row_id][1] in lines[0], shown
