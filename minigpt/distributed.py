"""Data-parallel helpers: who am I (rank), talk only once, seed each rank, and end cleanly.

``torchrun --nproc_per_node N -m minigpt train ...`` starts N copies of the same program and
tells each one who it is through environment variables:

    RANK        0 .. N-1 over all machines    (rank 0 logs, saves checkpoints, writes metrics)
    LOCAL_RANK  0 .. on this machine         (the GPU this process uses: cuda:LOCAL_RANK)
    WORLD_SIZE  N                             MASTER_ADDR, MASTER_PORT: where to rendezvous

Every process holds a full copy of the model; each draws *different* batches (its own data
generator, its own slice of the shards), and DistributedDataParallel averages the gradients
across processes during backward, so all copies take the same optimizer step and stay identical.
Backends: NCCL between GPUs, gloo on CPU. Without torchrun (no WORLD_SIZE), everything here works
as a single process and no process group is created.

    info = setup_distributed()
    rank_print(f"{info.world_size} processes")   # printed once, by rank 0
    ...
    shutdown()                                   # barrier, then destroy_process_group

Clean shutdown: every rank waits at a barrier before ``destroy_process_group``, so no rank tears
down its connections while another is still inside a collective (which makes torchrun report
the job as failed). bench/torchrun_clean_exit.py counts clean exits with and without the barrier;
docs/scaling.md has what it measured.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from minigpt.device import pick_device, validate
from minigpt.errors import ConfigError, DeviceError
from minigpt.i18n import tr

__all__ = ["DistInfo", "setup_distributed", "is_distributed", "get_rank", "get_world_size", "is_main",
           "rank_print", "barrier", "shutdown", "main_process_first", "data_generator", "all_reduce_sum",
           "gather_objects", "param_checksum"]


@dataclass
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        return int(value) if value is not None else default
    except ValueError:
        raise ConfigError(tr("environment variable {name}={value!r} is not an integer; start the job with torchrun, "
                             "which sets it", "環境変数 {name}={value!r} が整数ではありません。torchrun で起動してください "
                             "(torchrun が設定します)", name=name, value=value)) from None


def setup_distributed(device: str = "auto", backend: str | None = None, timeout_s: float = 600.0) -> DistInfo:
    """Read torchrun's environment, pick this process's device and join the process group.

    device: "auto" (minigpt.device.pick_device; with several processes: cuda:LOCAL_RANK if CUDA is
    available, else cpu), "cuda", "cpu" (or "mps" for a single process). backend: default NCCL on
    CUDA, gloo on CPU.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world_size == 1:
        return DistInfo(device=pick_device(device))
    dev = pick_device(device)
    if dev.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DeviceError(tr("LOCAL_RANK={r} but this machine has {n} GPU(s): use --nproc_per_node at most the "
                                 "number of GPUs", "LOCAL_RANK={r} ですが、このマシンの GPU は {n} 台です。"
                                 "--nproc_per_node は GPU の台数以下にしてください",
                                 r=local_rank, n=torch.cuda.device_count()))
        dev = validate(f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    elif dev.type != "cpu":
        raise DeviceError(tr("device {d!r} cannot be used with {w} processes: use cuda (NCCL) or cpu (gloo)",
                             "デバイス {d!r} は {w} プロセスでは使えません: cuda (NCCL) か cpu (gloo) を指定してください",
                             d=str(device), w=world_size))
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    kwargs = {"device_id": dev} if dev.type == "cuda" else {}  # NCCL: bind this GPU at once
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=dev, backend=backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else _env_int("RANK", 0)


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0, the process that logs and writes files."""
    return get_rank() == 0


def rank_print(*args, all_ranks: bool = False, **kwargs) -> None:
    """print() on rank 0 only; with all_ranks=True on every rank, prefixed with "[rank r]"."""
    kwargs.setdefault("flush", True)
    if all_ranks:
        print(f"[rank {get_rank()}]", *args, **kwargs)
    elif is_main():
        print(*args, **kwargs)


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a single process)."""
    if is_distributed():
        dist.barrier()


def shutdown(barrier_first: bool = True) -> None:
    """Leave the process group cleanly: all ranks meet at a barrier, then destroy_process_group.

    barrier_first=False exists only to measure what the barrier prevents (bench/torchrun_clean_exit.py).
    """
    if not is_distributed():
        return
    if barrier_first:
        dist.barrier()
    dist.destroy_process_group()


@contextlib.contextmanager
def main_process_first():
    """Run the block on rank 0 first (e.g. a download into the shared cache), then on the others.

        with main_process_first():
            path = fetch_tatoeba()   # rank 0 downloads; the others find the file in the cache
    """
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def data_generator(seed: int, rank: int = 0) -> torch.Generator:
    """The data generator of one rank: seed + 1000 * rank, so rank 0 draws what a single process draws
    and every other rank draws different batches."""
    return torch.Generator().manual_seed(seed + 1000 * rank)


def all_reduce_sum(values: list[float], device) -> list[float]:
    """Sum a few numbers over all ranks (one collective); the numbers themselves in a single process."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...] on every rank (picklable objects)."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def param_checksum(model) -> str:
    """sha256 of every tensor of the model's state_dict, in order: equal checksums mean equal weights."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
