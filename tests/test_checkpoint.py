"""Checkpoint folders (minigpt.checkpoint): round trip, tied weights, atomic saves, clear load errors."""

import json
import os

import pytest
import torch

import minigpt.checkpoint as ckpt_mod
from minigpt.checkpoint import (CheckpointError, capture_rng_state, has_checkpoint, load_checkpoint, load_model,
                                read_config, restore_rng_state, save_checkpoint)
from minigpt.config import get_preset
from minigpt.model import GPT


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return GPT(get_preset("tiny", vocab_size=300, **overrides))


def file_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def sp_tok(train_sp):
    from minigpt.corpus import load_documents

    docs = load_documents("embedded", "val")
    return train_sp("embedded", "val", vocab_size=len(set("".join(docs))) + 300)


def test_save_then_load_restores_the_weights_exactly(tmp_path):
    a, b = tiny_model(0), tiny_model(1)
    save_checkpoint(tmp_path / "ck", a, step=3)
    assert not same(params(a), params(b))
    meta = load_checkpoint(tmp_path / "ck", b)
    assert same(params(a), params(b)) and meta["step"] == 3


def test_tied_weights_are_stored_once_and_stay_tied_after_loading(tmp_path):
    from safetensors import safe_open

    a, b = tiny_model(0), tiny_model(1)
    save_checkpoint(tmp_path / "ck", a)
    with safe_open(str(tmp_path / "ck" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        aliases = json.loads(f.metadata()["aliases"])
    assert "tok_emb.weight" in keys and "lm_head.weight" not in keys
    assert aliases == {"lm_head.weight": "tok_emb.weight"}
    load_checkpoint(tmp_path / "ck", b)
    assert b.lm_head.weight is b.tok_emb.weight


def test_untied_weights_are_stored_separately(tmp_path):
    a, b = tiny_model(0, tie_weights=False), tiny_model(1, tie_weights=False)
    save_checkpoint(tmp_path / "ck", a)
    load_checkpoint(tmp_path / "ck", b)
    assert same(params(a), params(b))


def test_config_json_holds_model_config_train_config_step_and_metrics(tmp_path):
    from minigpt.train import TrainConfig

    model = tiny_model()
    save_checkpoint(tmp_path / "ck", model, step=42, train_config=TrainConfig(max_steps=50),
                    tokenizer={"type": "gpt2"}, metrics={"val_bpc": 1.5})
    cfg = read_config(tmp_path / "ck")
    assert cfg["model_config"] == model.config.to_dict()
    assert cfg["train_config"]["max_steps"] == 50
    assert cfg["step"] == 42 and cfg["metrics"] == {"val_bpc": 1.5} and cfg["tokenizer"] == {"type": "gpt2"}


def test_optimizer_and_rng_states_round_trip(tmp_path):
    model = tiny_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    save_checkpoint(tmp_path / "ck", model, optimizer=opt, rng_state=capture_rng_state(gen))
    expected = (torch.rand(3), torch.rand(3, generator=gen))
    model2 = tiny_model(1)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    gen2 = torch.Generator().manual_seed(99)
    load_checkpoint(tmp_path / "ck", model2, opt2, data_generator=gen2, restore_rng=True)
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(3, generator=gen2), expected[1])
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) for k in s1)


def test_rng_state_capture_and_restore_replays_the_same_numbers():
    gen = torch.Generator().manual_seed(0)
    state = capture_rng_state(gen)
    a = (torch.rand(4), torch.rand(4, generator=gen))
    restore_rng_state(state, gen)
    assert torch.equal(torch.rand(4), a[0]) and torch.equal(torch.rand(4, generator=gen), a[1])


def test_a_failure_while_writing_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model(0), step=1)
    before = file_bytes(path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod.torch, "save", disk_full)
    with pytest.raises(CheckpointError, match="the disk is full"):
        save_checkpoint(path, tiny_model(1), step=2)
    assert file_bytes(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no half-written folder left behind


def test_ctrl_c_while_writing_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model(0), step=1)
    before = file_bytes(path)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt_mod, "_store_tokenizer", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, tiny_model(1), step=2)
    assert file_bytes(path) == before and read_config(path)["step"] == 1


def test_a_crash_between_the_two_renames_is_recovered_on_the_next_load(tmp_path, monkeypatch):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model(0), step=1)
    real_replace = os.replace
    calls = []

    def die_on_second_rename(src, dst):
        calls.append(src)
        if len(calls) == 2:  # checkpoint -> .ck.old done, .ck.new -> checkpoint not yet
            raise SystemExit("power cut")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt_mod.os, "replace", die_on_second_rename)
    with pytest.raises(SystemExit):
        save_checkpoint(path, tiny_model(1), step=2)
    monkeypatch.setattr(ckpt_mod.os, "replace", real_replace)
    assert not path.exists()
    assert has_checkpoint(path) and read_config(path)["step"] == 1  # the old one is moved back


def test_saving_again_replaces_the_checkpoint_and_leaves_no_temp_folders(tmp_path):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model(0), step=1)
    save_checkpoint(path, tiny_model(1), step=2)
    assert read_config(path)["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_loading_a_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*train one first"):
        load_checkpoint(tmp_path / "nope", tiny_model())


def test_a_missing_file_is_named(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model())
    (tmp_path / "ck" / "train_state.pt").unlink()
    with pytest.raises(CheckpointError, match="incomplete: missing train_state.pt"):
        load_checkpoint(tmp_path / "ck", tiny_model())


def test_corrupt_weights_raise_a_clear_error_and_leave_the_model_alone(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model(0))
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as after a crash of a naive writer
    model = tiny_model(1)
    before = params(model)
    with pytest.raises(CheckpointError, match="model.safetensors is corrupt"):
        load_checkpoint(tmp_path / "ck", model)
    assert same(before, params(model))


def test_corrupt_config_json_raises_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model(0))
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is unreadable"):
        load_model(tmp_path / "ck")


def test_a_checkpoint_of_another_shape_names_the_difference_and_leaves_the_model_alone(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model(0))
    model = GPT(get_preset("tiny", vocab_size=300, n_embd=64))
    before = params(model)
    with pytest.raises(CheckpointError, match="n_embd: 32 in the checkpoint, 64 in the model"):
        load_checkpoint(tmp_path / "ck", model)
    assert same(before, params(model))


def test_weights_that_do_not_fit_are_refused_even_if_config_json_agrees(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model(0))
    cfg_file = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["model_config"]["vocab_size"] = 400  # config edited by hand; the weights still have 300 rows
    cfg_file.write_text(json.dumps(cfg))
    model = GPT(get_preset("tiny", vocab_size=400))
    with pytest.raises(CheckpointError, match=r"tok_emb.weight has shape \(300, 32\) in the file but \(400, 32\)"):
        load_checkpoint(tmp_path / "ck", model)


def test_load_model_builds_the_model_and_tokenizer_from_the_folder_alone(tmp_path, sp_tok):
    model = GPT(get_preset("tiny-modern", vocab_size=sp_tok.vocab_size))
    save_checkpoint(tmp_path / "ck", model, step=5, tokenizer=sp_tok, metrics={"val_bpc": 2.0})
    assert (tmp_path / "ck" / "tokenizer.model").read_bytes() == sp_tok.model_file.read_bytes()
    # moved to another machine: only the folder is there
    moved = tmp_path / "elsewhere"
    (tmp_path / "ck").rename(moved)
    loaded, tok, meta = load_model(moved)
    assert same(params(model), params(loaded)) and not loaded.training
    assert tok.encode("今日は晴れ。") == sp_tok.encode("今日は晴れ。")
    assert meta["step"] == 5 and meta["metrics"]["val_bpc"] == 2.0


def test_a_resumed_optimizer_of_another_model_is_refused(tmp_path):
    model = tiny_model()
    save_checkpoint(tmp_path / "ck", model, optimizer=torch.optim.AdamW(model.parameters()))
    other = tiny_model()
    opt = torch.optim.AdamW([{"params": [other.tok_emb.weight]}, {"params": list(other.blocks.parameters())}])
    with pytest.raises(CheckpointError, match="optimizer state does not fit"):
        load_checkpoint(tmp_path / "ck", other, opt)


# --------------------------------------------------------------------------- never lose a good checkpoint
def nan_model(seed=1):
    model = tiny_model(seed)
    with torch.no_grad():  # what a diverged run holds: every weight NaN
        for p in model.parameters():
            p.fill_(float("nan"))
    return model


def test_weights_with_nan_are_never_saved_and_the_last_good_checkpoint_is_named_and_kept(tmp_path):
    from minigpt.checkpoint import NonFiniteWeightsError
    from minigpt.errors import TrainingError

    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model(0), step=20)
    before = file_bytes(path)
    with pytest.raises(NonFiniteWeightsError, match=r"step 30.*NaN or inf.*last good checkpoint.*ck \(step 20\)") as e:
        save_checkpoint(path, nan_model(), step=30)
    assert isinstance(e.value, TrainingError) and isinstance(e.value, CheckpointError)
    assert file_bytes(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_weights_with_inf_and_no_earlier_checkpoint_write_nothing(tmp_path):
    from minigpt.checkpoint import NonFiniteWeightsError

    model = tiny_model(0)
    with torch.no_grad():
        model.tok_emb.weight[3, 1] = float("inf")
    with pytest.raises(NonFiniteWeightsError, match="No checkpoint was written"):
        save_checkpoint(tmp_path / "ck", model, step=1)
    assert not (tmp_path / "ck").exists() and list(tmp_path.iterdir()) == []


def test_an_optimizer_state_with_nan_is_never_saved(tmp_path):
    from minigpt.checkpoint import NonFiniteWeightsError

    model = tiny_model(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    next(iter(opt.state.values()))["exp_avg_sq"].fill_(float("nan"))
    with pytest.raises(NonFiniteWeightsError, match="optimizer state"):
        save_checkpoint(tmp_path / "ck", model, optimizer=opt)


def test_config_json_records_the_sha256_of_every_other_file(tmp_path, sp_tok):
    import hashlib

    model = GPT(get_preset("tiny-modern", vocab_size=sp_tok.vocab_size))
    save_checkpoint(tmp_path / "ck", model, optimizer=torch.optim.AdamW(model.parameters()), tokenizer=sp_tok)
    files = read_config(tmp_path / "ck")["files"]
    assert sorted(files) == ["model.safetensors", "tokenizer.model", "train_state.pt"]
    for name, record in files.items():
        data = (tmp_path / "ck" / name).read_bytes()
        assert record == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def flip_byte(file, offset_from_end=10):
    data = bytearray(file.read_bytes())
    data[-offset_from_end] ^= 0xFF  # inside the tensor data: the header still parses
    file.write_bytes(bytes(data))


def test_a_flipped_byte_in_the_weights_is_detected_on_load(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model(0))
    flip_byte(tmp_path / "ck" / "model.safetensors")
    model = tiny_model(1)
    before = params(model)
    with pytest.raises(CheckpointError, match=r"model.safetensors is corrupted.*sha256.*backup.*train again") as e:
        load_checkpoint(tmp_path / "ck", model)
    assert "\n" not in str(e.value) and same(before, params(model))
    with pytest.raises(CheckpointError, match="is corrupted"):
        load_model(tmp_path / "ck")


def test_a_flipped_byte_in_the_train_state_is_detected_on_load(tmp_path):
    model = tiny_model(0)
    save_checkpoint(tmp_path / "ck", model, optimizer=torch.optim.AdamW(model.parameters()))
    flip_byte(tmp_path / "ck" / "train_state.pt", 200)
    with pytest.raises(CheckpointError, match="train_state.pt is corrupted"):
        load_checkpoint(tmp_path / "ck", tiny_model(1))


def test_verify_false_skips_the_checksums(tmp_path):
    save_checkpoint(tmp_path / "ck", tiny_model(0))
    flip_byte(tmp_path / "ck" / "model.safetensors")
    load_model(tmp_path / "ck", verify=False)  # the bytes still parse: no error without verification


def test_a_checkpoint_without_recorded_hashes_still_loads(tmp_path):
    a, b = tiny_model(0), tiny_model(1)
    save_checkpoint(tmp_path / "ck", a)
    cfg_file = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    del cfg["files"], cfg["info"]
    cfg["version"] = 1  # as written before checksums existed
    cfg_file.write_text(json.dumps(cfg))
    load_checkpoint(tmp_path / "ck", b)
    assert same(params(a), params(b))


@pytest.mark.parametrize("where", ["weights", "train_state"])
def test_a_full_disk_gives_a_one_line_error_and_leaves_nothing_half_written(tmp_path, monkeypatch, where):
    path = tmp_path / "ck"
    save_checkpoint(path, tiny_model(0), step=1)
    before = file_bytes(path)
    import safetensors.torch

    def full(*args, **kwargs):
        if where == "weights":  # what safetensors raises (its own exception type, only a text)
            raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
        raise OSError(28, "No space left on device")

    if where == "weights":
        monkeypatch.setattr(safetensors.torch, "save_file", full)
    else:
        monkeypatch.setattr(ckpt_mod.torch, "save", full)
    with pytest.raises(CheckpointError, match=r"the disk is full.*previous checkpoint .*ck is untouched") as e:
        save_checkpoint(path, tiny_model(1), step=2)
    assert "\n" not in str(e.value)
    assert file_bytes(path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


def test_every_file_of_a_checkpoint_gets_the_same_mode_as_a_new_file(tmp_path, sp_tok):
    old = os.umask(0o022)
    try:
        model = GPT(get_preset("tiny-modern", vocab_size=sp_tok.vocab_size))
        save_checkpoint(tmp_path / "ck", model, tokenizer=sp_tok)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "ck").iterdir()}
    assert modes == {name: 0o644 for name in modes} and "model.safetensors" in modes


def test_info_and_extra_state_round_trip(tmp_path):
    info = {"corpus": {"name": "embedded", "fingerprint": "ab12"}, "seed": 7, "note": "日本語"}
    extra = {"train_loss_sum": torch.tensor(12.5, dtype=torch.float64), "steps_since_eval": 3,
             "positions": [1, 2, 3], "nested": {"x": torch.arange(4)}}
    model = tiny_model(0)
    save_checkpoint(tmp_path / "ck", model, info=info, extra=extra)
    assert read_config(tmp_path / "ck")["info"] == info  # readable in config.json
    meta = load_checkpoint(tmp_path / "ck", tiny_model(1))
    assert meta["info"] == info
    got = meta["train_state"]["extra"]
    assert torch.equal(got["train_loss_sum"], extra["train_loss_sum"]) and got["steps_since_eval"] == 3
    assert got["positions"] == [1, 2, 3] and torch.equal(got["nested"]["x"], torch.arange(4))
    assert load_model(tmp_path / "ck")[2]["info"] == info


def test_info_that_is_not_json_and_extra_that_needs_pickle_are_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="info must be JSON-able"):
        save_checkpoint(tmp_path / "ck", tiny_model(0), info={"f": object()})
    with pytest.raises(TypeError, match=r"extra\['f'\] is a object"):
        save_checkpoint(tmp_path / "ck", tiny_model(0), extra={"f": object()})
    assert not (tmp_path / "ck").exists()


def test_a_run_folder_resolves_to_its_checkpoint(tmp_path):
    from minigpt.checkpoint import resolve_checkpoint

    save_checkpoint(tmp_path / "run" / "checkpoint", tiny_model(0))
    assert resolve_checkpoint(tmp_path / "run") == tmp_path / "run" / "checkpoint"
    assert resolve_checkpoint(tmp_path / "run" / "checkpoint") == tmp_path / "run" / "checkpoint"


@pytest.mark.parametrize("given", ["run", "run/checkpoint"])
def test_an_interrupted_swap_is_recovered_whether_given_the_run_folder_or_the_checkpoint(tmp_path, given):
    run = tmp_path / "run"
    model = tiny_model(0)
    save_checkpoint(run / "checkpoint", model, step=4)
    os.replace(run / "checkpoint", run / ".checkpoint.old")  # killed between the two renames of a swap
    loaded, _, meta = load_model(tmp_path / given)
    assert meta["step"] == 4 and same(params(model), params(loaded))
    assert (run / "checkpoint" / "config.json").is_file()
