"""The training loop (minigpt.train): schedule, optimizer groups, learning, exact resume, Ctrl-C."""

import json
import math

import pytest
import torch

from minigpt.checkpoint import CheckpointError, has_checkpoint, read_config
from minigpt.config import get_preset
from minigpt.data import make_token_data
from minigpt.model import GPT
from minigpt.train import TrainConfig, lr_at, make_optimizer, train


class ByteTokenizer:
    """UTF-8 bytes as tokens, EOS = 256."""

    vocab_size, eos_id, name = 257, 256, "bytes"

    def encode(self, text):
        return list(text.encode("utf-8"))

    def spec(self):
        return {"type": "bytes"}


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


def test_optimizer_decays_matrices_but_not_norms_or_biases():
    model = tiny_model()
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
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
