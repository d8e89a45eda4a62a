"""The training loop (minigpt.train): schedule, optimizer groups, learning, exact resume, Ctrl-C."""

import json
import math

import pytest
import torch

from minigpt.checkpoint import CheckpointError, has_checkpoint, read_config
from minigpt.config import get_preset
from minigpt.data import make_token_data
from minigpt.model import GPT
from minigpt.optim import decay_split
from minigpt.train import TrainConfig, lr_at, make_optimizer, train

from helpers import ByteTokenizer


TEXT = "駅前の古い喫茶店が、来月で閉店するらしい。" * 30


@pytest.fixture(scope="module")
def data():
    return make_token_data(ByteTokenizer(), [TEXT] * 4, [TEXT[:200]])


def tiny_model(seed=0, preset="tiny"):
    torch.manual_seed(seed)
    return GPT(get_preset(preset, vocab_size=257))


def cfg(tmp_path, **kw):
    base = dict(max_steps=12, batch_size=4, seq_len=16, lr=3e-3, min_lr=3e-4, warmup_steps=3, eval_interval=5,
                eval_iters=2, log_interval=2, seed=7, device="cpu", out_dir=str(tmp_path), progress=False,
                plot=False)
    return TrainConfig(**{**base, **kw})


def test_lr_warms_up_linearly_then_follows_a_cosine_down_to_min_lr():
    c = TrainConfig(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    warm = [lr_at(s, c) for s in range(10)]
    assert warm == sorted(warm) and warm[-1] == pytest.approx(1e-3)
    assert warm[0] == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak
    decay = [lr_at(s, c) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))
    assert lr_at(55, c) == pytest.approx((1e-3 + 1e-4) / 2)  # half-way through the cosine
    assert lr_at(100, c) == pytest.approx(1e-4) and lr_at(500, c) == pytest.approx(1e-4)


def test_optimizer_decays_linear_weights_but_not_norms_biases_or_embeddings():
    model = tiny_model()
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    assert embeddings and not embeddings & {id(p) for p in decay["params"]}
    assert embeddings <= {id(p) for p in no_decay["params"]}
    # the groups are the ones chapter 01's exercise builds (minigpt.optim.decay_split)
    names = {id(p): n for n, p in model.named_parameters()}
    assert [names[id(p)] for p in decay["params"]] == decay_split(model)[0]
    # tied weights: the shared embedding/lm_head matrix is in the optimizer once
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))


def test_loss_falls_on_a_repetitive_text(data, tmp_path):
    result = train(tiny_model(), data, cfg(tmp_path, max_steps=60, eval_interval=30, save=False))
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    assert len(result.losses) == 60
    assert last < 0.6 * first
    assert result.val_loss < result.losses[0]


def test_eval_reports_perplexity_and_bits_per_char_of_the_same_loss(data, tmp_path):
    r = train(tiny_model(), data, cfg(tmp_path, max_steps=3, save=False))
    assert r.val_ppl == pytest.approx(math.exp(r.val_loss))
    assert r.val_bpc == pytest.approx(r.val_loss * len(data.val) / data.val_chars / math.log(2))


def test_training_writes_metrics_plot_and_checkpoint(data, tmp_path):
    r = train(tiny_model(), data, cfg(tmp_path, max_steps=10, plot=True))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [rec for rec in records if rec["kind"] == "eval"]
    assert [rec["step"] for rec in evals] == [5, 10]
    assert {"val_loss", "val_ppl", "val_bpc"} <= set(evals[-1])
    assert any(rec["kind"] == "train" and "lr" in rec for rec in records)
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert r.checkpoint == str(tmp_path / "checkpoint") and has_checkpoint(r.checkpoint)
    assert read_config(r.checkpoint)["step"] == 10


def run_and_params(model, data, c, **kw):
    result = train(model, data, c, **kw)
    return result, {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.parametrize("preset", ["tiny", "tiny-moe"])
def test_pause_and_resume_equals_an_uninterrupted_run_bit_for_bit(data, tmp_path, preset):
    full, full_params = run_and_params(tiny_model(preset=preset), data, cfg(tmp_path / "full"))
    c = cfg(tmp_path / "split")
    first, _ = run_and_params(tiny_model(preset=preset), data, c, until_step=7)
    assert first.stopped == "until_step" and first.step == 7
    # a fresh model with other random weights: everything must come from the checkpoint
    second, split_params = run_and_params(tiny_model(seed=123, preset=preset), data, c, resume=True)
    assert second.step == full.step == 12
    assert first.losses + second.losses == full.losses
    assert_same_params(full_params, split_params)


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(data, tmp_path, capsys):
    full, full_params = run_and_params(tiny_model(), data, cfg(tmp_path / "full"))

    def press_ctrl_c(step, record):
        if step == 4:
            raise KeyboardInterrupt

    c = cfg(tmp_path / "run")
    first = train(tiny_model(), data, c, on_step=press_ctrl_c)
    assert first.stopped == "interrupted" and first.interrupted and first.step == 4
    assert read_config(tmp_path / "run" / "checkpoint")["step"] == 4
    err = capsys.readouterr().err
    assert "interrupted at step 4" in err and "resume=True" in err
    second, params = run_and_params(tiny_model(seed=5), data, c, resume=True)
    assert first.losses + second.losses == full.losses
    assert_same_params(full_params, params)


def test_ctrl_c_in_the_middle_of_a_step_resumes_that_step_from_the_start(data, tmp_path):
    full, full_params = run_and_params(tiny_model(), data, cfg(tmp_path / "full"))
    model = tiny_model()
    calls = {"n": 0}
    forward = model.forward

    def forward_then_ctrl_c(*args, **kwargs):
        out = forward(*args, **kwargs)
        if model.training:
            calls["n"] += 1
            if calls["n"] == 6:  # the batch of step 6 was drawn, the weights not yet updated
                raise KeyboardInterrupt
        return out

    model.forward = forward_then_ctrl_c
    c = cfg(tmp_path / "run")
    first = train(model, data, c)
    assert first.interrupted and first.step == 5
    second, params = run_and_params(tiny_model(seed=9), data, c, resume=True)
    assert first.losses + second.losses == full.losses
    assert_same_params(full_params, params)


def test_time_limit_stops_early_and_still_evaluates_and_saves(data, tmp_path):
    r = train(tiny_model(), data, cfg(tmp_path, max_steps=100_000, time_limit_s=0.5))
    assert r.stopped == "time_limit" and 0 < r.step < 100_000
    assert r.val_loss is not None and read_config(r.checkpoint)["step"] == r.step


def test_resume_drops_metrics_logged_after_the_checkpoint(data, tmp_path):
    c = cfg(tmp_path, max_steps=10)
    train(tiny_model(), data, c, until_step=5)
    with open(tmp_path / "metrics.jsonl", "a") as f:  # a crash after the checkpoint logged step 6
        f.write(json.dumps({"kind": "train", "step": 6, "loss": 1.0}) + "\n")
    train(tiny_model(), data, c, resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(6) == 1


def test_resume_without_a_checkpoint_is_a_clear_error(data, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(tiny_model(), data, cfg(tmp_path), resume=True)


def test_seq_len_longer_than_the_block_size_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="block_size"):
        train(tiny_model(), data, cfg(tmp_path, seq_len=64))


def test_train_config_rejects_nonsense():
    with pytest.raises(ValueError, match="max_steps"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)


# --------------------------------------------------------------------------- issue 13: nothing is lost
def files_digest(folder):
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def comparable(records):
    """metrics.jsonl records without what depends on the wall clock."""
    return [{k: v for k, v in r.items() if k not in ("time_s", "tokens_per_s", "mfu")} for r in records]


def metrics_of(folder):
    return comparable([json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()])


def optimizer_state(folder):
    return torch.load(folder / "checkpoint" / "train_state.pt", weights_only=True)["optimizer"]


def assert_same_optimizer_state(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for name, value in a["state"][k].items():
            assert torch.equal(value, b["state"][k][name]), f"optimizer state {k}.{name} differs"


@pytest.mark.parametrize("what", ["loss", "grad_norm"])
def test_a_non_finite_step_is_never_applied_nor_saved_and_the_error_names_the_last_good_checkpoint(
        data, tmp_path, what):
    from minigpt.errors import TrainingError

    model = tiny_model()
    calls = {"n": 0}
    forward = model.forward

    def poisoned(*args, **kwargs):
        logits, loss = forward(*args, **kwargs)
        if model.training:
            calls["n"] += 1
            if calls["n"] == 8:  # step 8: after the checkpoint of step 5
                if what == "loss":
                    loss = loss * float("nan")
                else:  # the loss stays finite, a gradient becomes infinite
                    logits.register_hook(lambda g: g * float("inf"))
        return logits, loss

    model.forward = poisoned
    ckpt = tmp_path / "checkpoint"
    before = {}
    with pytest.raises(TrainingError) as e:
        train(model, data, cfg(tmp_path), on_step=lambda step, rec: step == 5 and before.update(files_digest(ckpt)))
    message = str(e.value)
    assert str(ckpt) in message and "step 8" in message and "--lr" in message
    assert read_config(ckpt)["step"] == 5 and files_digest(ckpt) == before  # unchanged
    assert all(torch.isfinite(p).all() for p in model.parameters())  # step 8 was not applied


def test_a_non_finite_learning_rate_is_refused():
    from minigpt.errors import ConfigError

    for lr in (float("inf"), float("nan"), 0.0, -1e-3):
        with pytest.raises(ConfigError, match="learning rate"):
            TrainConfig(lr=lr, min_lr=0.0)


def test_a_nan_time_limit_is_refused():
    with pytest.raises(ValueError, match="time limit"):
        TrainConfig(time_limit_s=float("nan"))


def test_resume_on_other_data_is_refused_unless_allowed(data, tmp_path):
    from minigpt.errors import DataError

    c = cfg(tmp_path)
    train(tiny_model(), data, c, until_step=5)
    other = make_token_data(ByteTokenizer(), ["別の文章です。" * 50] * 4, [TEXT[:200]])
    with pytest.raises(DataError, match="allow-other-data"):
        train(tiny_model(), other, c, resume=True)
    assert read_config(tmp_path / "checkpoint")["step"] == 5
    assert train(tiny_model(), other, c, resume=True, allow_other_data=True).step == 12


def test_the_checkpoint_records_the_data_and_the_seed(data, tmp_path):
    from minigpt.train import data_fingerprint

    train(tiny_model(), data, cfg(tmp_path, max_steps=5), data_name="my-corpus")
    info = read_config(tmp_path / "checkpoint")["info"]
    assert info["data"]["name"] == "my-corpus" and info["seed"] == 7
    assert info["data"]["fingerprint"] == data_fingerprint(data)["fingerprint"]
    assert info["data"]["train_tokens"] == len(data.train)


def test_resume_after_ctrl_c_reproduces_weights_optimizer_and_metrics(data, tmp_path):
    full, full_params = run_and_params(tiny_model(), data, cfg(tmp_path / "full", log_interval=1))
    c = cfg(tmp_path / "run", log_interval=1)

    def press_ctrl_c(step, record):
        if step == 7:  # two steps after the evaluation of step 5: train_loss of step 10 averages 6..10
            raise KeyboardInterrupt

    assert train(tiny_model(), data, c, on_step=press_ctrl_c).interrupted
    _, params = run_and_params(tiny_model(seed=5), data, c, resume=True)
    assert_same_params(full_params, params)
    assert_same_optimizer_state(optimizer_state(tmp_path / "full"), optimizer_state(tmp_path / "run"))
    assert metrics_of(tmp_path / "run") == metrics_of(tmp_path / "full")


def test_a_second_ctrl_c_saves_the_last_completed_step_as_its_message_says(data, tmp_path, capsys):
    import os
    import signal

    full, full_params = run_and_params(tiny_model(), data, cfg(tmp_path / "full"))

    def press_ctrl_c_twice(step, record):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # first: stop after this step
            os.kill(os.getpid(), signal.SIGINT)  # second: stop now

    c = cfg(tmp_path / "run")
    first = train(tiny_model(), data, c, on_step=press_ctrl_c_twice)
    err = capsys.readouterr().err
    assert "saving the last completed one" in err
    assert first.interrupted and read_config(tmp_path / "run" / "checkpoint")["step"] == 4
    _, params = run_and_params(tiny_model(seed=3), data, c, resume=True)
    assert_same_params(full_params, params)


def test_training_logs_tokens_per_second_and_no_mfu_on_the_cpu(data, tmp_path):
    r = train(tiny_model(), data, cfg(tmp_path, max_steps=4))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    trains = [rec for rec in records if rec["kind"] == "train"]
    assert trains and all(rec["tokens_per_s"] > 0 and "mfu" not in rec for rec in trains)
    assert r.tokens_per_s > 0 and r.mfu is None


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_holds_it(data, tmp_path):
    from minigpt.errors import RunLockedError
    from minigpt.runlock import RunLock

    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=str(__import__("os").getpid())):
            train(tiny_model(), data, cfg(tmp_path, max_steps=2))
    assert not (tmp_path / "metrics.jsonl").exists()


SCRIPT = r'''
import os, signal, sys
import torch
sys.path.insert(0, {tests!r})
from test_train import ByteTokenizer, TEXT, tiny_model, cfg
from minigpt.data import make_token_data
from minigpt.train import train
from pathlib import Path

data = make_token_data(ByteTokenizer(), [TEXT] * 4, [TEXT[:200]])
kill_at, sig = int(sys.argv[2]), getattr(signal, sys.argv[3])
def hook(step, record):
    if step == kill_at:
        os.kill(os.getpid(), sig)
r = train(tiny_model(), data, cfg(Path(sys.argv[1]), log_interval=1), on_step=hook)
print("stopped", r.stopped, r.step)
'''


def run_script(tmp_path, out, kill_at, sig):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    return subprocess.run([sys.executable, str(script), str(out), str(kill_at), sig], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_stops_like_ctrl_c(tmp_path):
    proc = run_script(tmp_path, tmp_path / "run", 4, "SIGTERM")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stopped interrupted 4" in proc.stdout and "SIGTERM" in proc.stderr
    assert read_config(tmp_path / "run" / "checkpoint")["step"] == 4


@pytest.mark.slow
def test_resume_after_kill_9_reproduces_weights_optimizer_and_metrics(data, tmp_path):
    full, full_params = run_and_params(tiny_model(), data, cfg(tmp_path / "full", log_interval=1))
    proc = run_script(tmp_path, tmp_path / "run", 8, "SIGKILL")  # killed at step 8, after the checkpoint of 5
    assert proc.returncode == -9
    assert read_config(tmp_path / "run" / "checkpoint")["step"] == 5
    # the lock file of the dead process is still there; the next run takes it over
    _, params = run_and_params(tiny_model(seed=5), data, cfg(tmp_path / "run", log_interval=1), resume=True)
    assert_same_params(full_params, params)
    assert_same_optimizer_state(optimizer_state(tmp_path / "full"), optimizer_state(tmp_path / "run"))
    assert metrics_of(tmp_path / "run") == metrics_of(tmp_path / "full")
