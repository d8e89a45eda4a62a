"""Where tensors live and in which precision: the one place minigpt chooses a device.

Order: an explicit choice (``--device``, an argument), then ``MINIGPT_DEVICE``, then CUDA > MPS > CPU.
Under ``MINIGPT_CI=1`` (notebooks run as tests; their stored outputs come from the CPU) the default
is the CPU. Exercise checkers use ``check_device()``: ``MINIGPT_CHECK_DEVICE``, else CUDA, else CPU
(Apple's MPS is left out: no float64, some ops differ slightly).

Precision (``precision_for``): bf16 autocast on a CUDA GPU that supports it, fp16 autocast with a
GradScaler on one that does not (a T4, for example), fp32 on CPU and MPS.

>>> pick_device("cpu").type
'cpu'
>>> precision_for(pick_device("cpu")).name
'fp32'
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import torch

from minigpt.errors import DeviceError
from minigpt.i18n import tr

KNOWN = ("cpu", "cuda", "mps")


def _in_ci() -> bool:
    return os.environ.get("MINIGPT_CI", "") not in ("", "0")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def best_available() -> torch.device:
    """cuda if there is an NVIDIA GPU, else mps (Apple silicon), else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def validate(device: str | torch.device) -> torch.device:
    """`device` as a torch.device, or a DeviceError that says what to use instead."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in KNOWN:
        raise DeviceError(tr("unknown device {d!r}: use cpu, cuda, cuda:N or mps (or auto)",
                             "不明なデバイス {d!r} です: cpu、cuda、cuda:N、mps (または auto) を指定してください",
                             d=str(device)))
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(tr("--device {d} was asked for, but this torch ({v}) sees no CUDA GPU: use --device cpu, "
                                 "or install a CUDA build of torch (see README, 'CPU and GPU')",
                                 "--device {d} が指定されましたが、この torch ({v}) からは CUDA GPU が見えません: "
                                 "--device cpu を使うか、CUDA 版の torch を入れてください (README「CPU と GPU」)",
                                 d=str(device), v=torch.__version__))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(tr("{d}: this machine has {n} GPU(s); use cuda:0 to cuda:{m}",
                                 "{d}: このマシンの GPU は {n} 台です。cuda:0 から cuda:{m} を指定してください",
                                 d=str(device), n=torch.cuda.device_count(), m=torch.cuda.device_count() - 1))
    if dev.type == "mps" and not _mps_available():
        raise DeviceError(tr("--device mps was asked for, but MPS (Apple silicon) is not available here: use --device cpu",
                             "--device mps が指定されましたが、ここでは MPS (Apple シリコン) が使えません: --device cpu を使ってください"))
    return dev


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to train and run on: `prefer` (unless None or "auto"), MINIGPT_DEVICE, then the best one."""
    if prefer is not None and str(prefer) != "auto":
        return validate(prefer)
    env = os.environ.get("MINIGPT_DEVICE", "").strip()
    if env and env != "auto":
        return validate(env)
    if _in_ci():
        return torch.device("cpu")
    return best_available()


def check_device() -> torch.device:
    """Where exercise checkers run: MINIGPT_CHECK_DEVICE, else (not under MINIGPT_CI) CUDA, else CPU."""
    env = os.environ.get("MINIGPT_CHECK_DEVICE", "").strip()
    if env and env != "auto":
        return validate(env)
    if not _in_ci() and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """A human-readable name: the GPU's model, or "CPU, N threads"."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU, {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (for timing); nothing on the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# --------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    """How a training step computes: autocast dtype (None = plain fp32) and whether to scale the loss."""

    name: str                    # "bf16", "fp16" or "fp32"
    dtype: torch.dtype | None    # autocast dtype, None for fp32
    use_grad_scaler: bool        # fp16 needs loss scaling; bf16 has fp32's exponent range and does not

    def autocast(self, device: torch.device):
        """The autocast context for a forward pass (a no-op context for fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(device).type, dtype=self.dtype)

    def grad_scaler(self, device: torch.device):
        """A GradScaler that is active only for fp16 (disabled, it passes values through)."""
        return torch.amp.GradScaler(torch.device(device).type, enabled=self.use_grad_scaler)


FP32 = Precision("fp32", None, False)
BF16 = Precision("bf16", torch.bfloat16, False)
FP16 = Precision("fp16", torch.float16, True)


def precision_for(device: torch.device, wanted: str = "auto") -> Precision:
    """The precision policy: bf16 on a CUDA GPU that supports it, else fp16 + GradScaler; fp32 elsewhere.

    `wanted` ("auto", "bf16", "fp16", "fp32") overrides; bf16 on a GPU without it is a DeviceError."""
    device = torch.device(device)
    wanted = (wanted or "auto").lower()
    if wanted not in ("auto", "bf16", "fp16", "fp32"):
        raise DeviceError(tr("unknown precision {p!r}: use auto, bf16, fp16 or fp32",
                             "不明な精度 {p!r} です: auto、bf16、fp16、fp32 のいずれかを指定してください", p=wanted))
    if device.type != "cuda":
        if wanted in ("bf16", "fp16"):
            raise DeviceError(tr("{p} training needs a CUDA GPU; on {d} minigpt trains in fp32 (use --precision auto)",
                                 "{p} での学習には CUDA GPU が必要です。{d} では fp32 で学習します (--precision auto を使ってください)",
                                 p=wanted, d=device.type))
        return FP32
    bf16_ok = torch.cuda.is_bf16_supported()
    if wanted == "fp32":
        return FP32
    if wanted == "fp16":
        return FP16
    if wanted == "bf16" and not bf16_ok:
        raise DeviceError(tr("this GPU ({g}) has no bf16: use --precision fp16 (with a GradScaler) or auto",
                             "この GPU ({g}) は bf16 に対応していません: --precision fp16 (GradScaler 付き) か auto を使ってください",
                             g=torch.cuda.get_device_name(device)))
    return BF16 if bf16_ok else FP16


def configure_for_training(device: torch.device) -> None:
    """TF32 matmuls on for training on CUDA (about 10 bits of mantissa: plenty for training)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextlib.contextmanager
def exact_float32(device: torch.device):
    """Full-precision float32 matmuls inside the block (TF32 off): checking exercises needs ~1e-6, not ~1e-3."""
    if torch.device(device).type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# --------------------------------------------------------------------------- peak FLOPs (for MFU)
# Dense tensor-core peak of one GPU, in FLOP/s, from NVIDIA's data sheets (without sparsity):
# (pattern in torch.cuda.get_device_name(), bf16, fp16). None = not in the data sheet (no bf16
# on that GPU, or a variant whose figure we do not know). The first matching pattern wins, so a
# variant comes before its family. A GPU that matches nothing has no MFU: tokens/s only, never a
# guessed peak. Patterns match whole words ("A100" does not match "RTX A1000", "L4" not "L40S").
PEAK_FLOPS: tuple[tuple[str, float | None, float | None], ...] = (
    ("H100 PCIe", 756e12, 756e12),
    ("H100 NVL", None, None),
    ("H100", 989e12, 989e12),       # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", 989e12, 989e12),
    ("GH200", 989e12, 989e12),
    ("A100", 312e12, 312e12),       # SXM4 and PCIe
    ("L40S", 362e12, 362e12),
    ("L4", 121e12, 121e12),
    ("V100", None, 125e12),         # SXM2; no bf16
    ("T4", None, 65e12),            # no bf16
)


def peak_flops(device: torch.device | str, precision: "Precision | str") -> float | None:
    """The GPU's dense bf16/fp16 peak in FLOP/s from PEAK_FLOPS, or None (CPU, MPS, fp32, unknown GPU).

    >>> peak_flops("cpu", "bf16") is None
    True
    """
    device = torch.device(device)
    name = precision.name if isinstance(precision, Precision) else str(precision)
    if device.type != "cuda" or name not in ("bf16", "fp16"):
        return None
    return peak_flops_for_name(torch.cuda.get_device_name(device), name)


def peak_flops_for_name(gpu_name: str, precision: str) -> float | None:
    """The table lookup behind peak_flops, by GPU name.

    >>> peak_flops_for_name("NVIDIA H100 80GB HBM3", "bf16")
    989000000000000.0
    >>> peak_flops_for_name("Tesla T4", "bf16") is None, peak_flops_for_name("NVIDIA RTX A1000", "fp16") is None
    (True, True)
    """
    for pattern, bf16, fp16 in PEAK_FLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(pattern)}(?![A-Za-z0-9])", gpu_name):
            return bf16 if precision == "bf16" else fp16 if precision == "fp16" else None
    return None
