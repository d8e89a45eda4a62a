"""minigpt.distributed and minigpt.train on N processes: DDP on CPU (gloo) with torchrun, and the single-process case."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import load_model
from minigpt.config import get_preset
from minigpt.corpus import load_documents
from minigpt.data import make_token_data
from minigpt.distributed import data_generator, param_checksum, setup_distributed, shutdown
from minigpt.model import GPT
from minigpt.shards import load_shard_data, write_shards
from minigpt.cli import main
from minigpt.cli.train import configure_train, torchrun_command
from minigpt.distributed import DistInfo
from minigpt.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=4, seq_len=32, eval_iters=3, warmup_steps=2, progress=False, plot=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, train_sp):
    """A small SentencePiece tokenizer and train/val shards of the embedded corpus."""
    root = tmp_path_factory.mktemp("ddp")
    tok = train_sp("embedded", "train", vocab_size=3000)
    for split in ("train", "val"):
        write_shards(load_documents("embedded", split), tok, root / "shards", split, shard_chars=50_000,
                     workers=0, progress=False)
    return {"tok": tok, "shards": root / "shards", "root": root}


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "minigpt", "train", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def job_args(corpus, out, steps=8):
    return ["--shards", corpus["shards"], "--preset", "tiny-modern", "--steps", steps, "--batch-size", 4,
            "--seq-len", 32, "--eval-interval", 4, "--eval-iters", 3, "--no-progress", "--no-plot", "--write-checksums",
            "--out", out]


def checksums(out: Path) -> list[str]:
    return [(out / f"params.rank{r}.sha256").read_text().split() for r in range(2)]


# --------------------------------------------------------------------------- torchrun, 2 CPU processes
@pytest.fixture(scope="module")
def straight_run(corpus):
    """8 steps on 2 processes in one go (shared by the tests below: each torchrun costs seconds)."""
    out = corpus["root"] / "straight"
    return out, torchrun(*job_args(corpus, out))


@pytest.mark.slow
def test_torchrun_two_processes_keep_identical_parameters_and_exit_cleanly(straight_run):
    out, proc = straight_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (sum0, step0), (sum1, step1) = checksums(out)
    assert sum0 == sum1 and step0 == step1 == "8"
    model, _, meta = load_model(out / "checkpoint")  # what rank 0 saved is what both ranks hold
    assert meta["step"] == 8 and param_checksum(model) == sum0
    assert proc.stdout.count("done (done)") == 1  # only rank 0 prints
    assert "2 process(es) on cpu (gloo)" in proc.stdout


@pytest.mark.slow
def test_pause_and_resume_under_torchrun_equals_one_uninterrupted_run(corpus, straight_run, tmp_path):
    straight, _ = straight_run
    first = torchrun(*job_args(corpus, tmp_path), "--pause-at", 4)
    assert first.returncode == 0 and "done (until_step): step 4" in first.stdout, first.stderr[-3000:]
    second = torchrun(*job_args(corpus, tmp_path), "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    assert checksums(tmp_path) == checksums(straight)


# --------------------------------------------------------------------------- one process
def test_without_torchrun_there_is_one_process_and_no_process_group(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = setup_distributed("cpu")
    assert (info.rank, info.world_size, info.backend, info.is_main) == (0, 1, None, True)
    assert not torch.distributed.is_initialized()
    shutdown()  # nothing to shut down: no error


def test_rank_zero_draws_what_one_process_draws_and_other_ranks_draw_otherwise():
    one = torch.randint(0, 10**6, (8,), generator=torch.Generator().manual_seed(7))
    r0 = torch.randint(0, 10**6, (8,), generator=data_generator(7, 0))
    r1 = torch.randint(0, 10**6, (8,), generator=data_generator(7, 1))
    assert torch.equal(one, r0) and not torch.equal(r0, r1)


def test_the_distributed_path_in_one_process_trains_exactly_what_train_trains(corpus, tmp_path):
    tok = corpus["tok"]
    data = make_token_data(tok, load_documents("embedded", "train"), load_documents("embedded", "val"))
    models = []
    for info in (None, DistInfo(rank=0, world_size=1, device=torch.device("cpu"))):
        torch.manual_seed(0)
        model = GPT(get_preset("tiny-modern", vocab_size=tok.vocab_size))
        result = train(model, data, TrainConfig(max_steps=5, eval_interval=5, out_dir=str(tmp_path), save=False,
                                                **SMALL), info=info)
        models.append((model, result))
    (m1, r1), (m2, r2) = models
    assert r1.losses == r2.losses and r1.val_loss == r2.val_loss
    assert param_checksum(m1) == param_checksum(m2)


def test_two_accumulated_half_batches_take_the_step_of_one_full_batch(corpus, tmp_path):
    data = load_shard_data(corpus["shards"])
    data.train = data.train.read_all()  # one stream: 2 draws of 2 windows are the 4 windows of one draw
    params = []
    for batch, accum in ((4, 1), (2, 2)):
        torch.manual_seed(0)
        model = GPT(get_preset("tiny-modern", vocab_size=corpus["tok"].vocab_size))
        cfg = TrainConfig(**{**SMALL, "batch_size": batch}, grad_accum_steps=accum, max_steps=2, eval_interval=2,
                          out_dir=str(tmp_path), save=False)
        train(model, data, cfg)
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=1e-5, atol=1e-6)


def test_batch_tokens_sets_the_accumulation_for_the_number_of_ranks():
    cfg = TrainConfig(batch_size=4, seq_len=32, batch_tokens=1024)
    assert (cfg.accum_for(1), cfg.accum_for(2), cfg.accum_for(8)) == (8, 4, 1)
    with pytest.raises(ValueError, match="not a multiple"):
        cfg.accum_for(3)


def test_the_train_ddp_command_refuses_to_overwrite_a_checkpoint(corpus, tmp_path, capsys):
    args = [str(a) for a in job_args(corpus, tmp_path, steps=2)]
    args[args.index("--eval-interval") + 1] = "2"
    assert main(["train-ddp", *args]) == 0
    assert main(["train-ddp", *args]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_the_launcher_hands_torchrun_the_options_it_was_given():
    import argparse

    launcher = argparse.ArgumentParser()
    configure_train(launcher)
    given = launcher.parse_args(["--nproc-per-node", "2", "--shards", "s", "--steps", "5", "--lr", "0.0006",
                                 "--no-compile", "--write-checksums", "--pause-at", "3", "--attn", "manual"])
    cmd = torchrun_command(given)
    assert cmd[cmd.index("--nproc_per_node=2") + 1:cmd.index("train") + 1] == ["-m", "minigpt", "train"]
    passed = launcher.parse_args(cmd[cmd.index("train") + 1:])
    assert vars(passed) == {**vars(given), "nproc_per_node": 1}


def test_the_same_seed_gives_bit_identical_weights_on_the_distributed_path(corpus, tmp_path):
    sums = []
    for name in ("a", "b"):
        args = [str(a) for a in job_args(corpus, tmp_path / name, steps=2)]
        assert main(["train-ddp", *args, "--seed", "5"]) == 0
        sums.append((tmp_path / name / "params.rank0.sha256").read_text())
    assert sums[0] == sums[1]
