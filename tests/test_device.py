"""minigpt.device: the one device picker, the precision policy and the peak-FLOPs table for MFU."""

import sys
from pathlib import Path

import pytest
import torch

from minigpt import device as dev
from minigpt import notebook
from minigpt.errors import DeviceError


def test_minigpt_device_overrides_the_default_everywhere(monkeypatch):
    monkeypatch.setenv("MINIGPT_DEVICE", "cpu")
    monkeypatch.delenv("MINIGPT_CI", raising=False)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import common

    assert dev.pick_device().type == notebook.pick_device().type == common.device() == "cpu"


def test_an_explicit_choice_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("MINIGPT_DEVICE", "mps")
    assert dev.pick_device("cpu").type == "cpu"


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:x"])
def test_an_unknown_device_is_a_device_error_that_lists_the_choices(name):
    with pytest.raises(DeviceError, match="cpu, cuda"):
        dev.pick_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_torch_without_cuda_is_a_device_error():
    with pytest.raises(DeviceError, match="--device cpu"):
        dev.pick_device("cuda")


def test_the_cpu_trains_in_fp32_and_refuses_half_precision():
    cpu = torch.device("cpu")
    assert dev.precision_for(cpu) is dev.FP32 and dev.precision_for(cpu, "fp32") is dev.FP32
    for wanted in ("bf16", "fp16"):
        with pytest.raises(DeviceError, match="CUDA GPU"):
            dev.precision_for(cpu, wanted)


def test_only_fp16_uses_a_grad_scaler():
    assert dev.FP16.use_grad_scaler and not dev.BF16.use_grad_scaler and not dev.FP32.use_grad_scaler


@pytest.mark.parametrize("gpu, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12), ("NVIDIA H100 PCIe", "bf16", 756e12),
    ("NVIDIA A100-SXM4-80GB", "fp16", 312e12), ("Tesla T4", "fp16", 65e12), ("NVIDIA L4", "bf16", 121e12),
])
def test_the_peak_flops_of_known_gpus(gpu, precision, peak):
    assert dev.peak_flops_for_name(gpu, precision) == peak


@pytest.mark.parametrize("gpu, precision", [
    ("Tesla T4", "bf16"),  # no bf16 on a T4
    ("NVIDIA RTX A1000", "bf16"),  # not an A100
    ("NVIDIA L40", "bf16"),  # not an L4
    ("Some Future GPU", "bf16"),
    ("NVIDIA H100 80GB HBM3", "fp32"),
])
def test_an_unknown_peak_is_none_never_a_guess(gpu, precision):
    assert dev.peak_flops_for_name(gpu, precision) is None


def test_there_is_no_peak_and_so_no_mfu_off_cuda():
    assert dev.peak_flops("cpu", dev.BF16) is None


def test_doctor_reports_the_device_that_training_uses(monkeypatch):
    from minigpt import doctor
    from minigpt.train import TrainConfig

    monkeypatch.setenv("MINIGPT_DEVICE", "cpu")
    check = doctor.check_torch()[0]
    assert check.status == "OK" and "on cpu (MINIGPT_DEVICE)" in check.what
    assert dev.pick_device(TrainConfig().device).type == "cpu"
