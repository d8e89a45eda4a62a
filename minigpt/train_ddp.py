"""Training on several processes (GPUs, or CPU processes) with DistributedDataParallel.

    torchrun --standalone --nproc_per_node 8 -m minigpt.train_ddp --shards shards/c4ja --recipe gpu-base-c4ja
    torchrun --standalone --nproc_per_node 2 -m minigpt.train_ddp --corpus embedded --steps 50 --out runs/ddp-cpu
    python -m minigpt.train_ddp ...                    # no torchrun: one process, the same loop

It is minigpt.train's loop with what data parallelism adds, and nothing else; the pieces are
minigpt.train's own (TrainConfig, lr_at, make_optimizer, autocast_for, evaluate) and checkpoints
are minigpt.checkpoint's. What changes with N processes:

- The model is wrapped in DDP: backward averages the gradients over the processes, so every copy
  takes the same step. DDP also copies rank 0's weights to the others when it wraps the model.
- Each rank draws its own batches: data generator ``seed + 1000 * rank`` and its own slice of
  every shard (minigpt.shards.ShardedTokens). Rank 0 alone draws what a single process draws:
  with one process this loop trains exactly the model that minigpt.train.train trains.
- One optimizer step = ``grad_accum_steps`` micro-batches per rank (DDP syncs only on the last);
  tokens per step = batch_size * seq_len * grad_accum_steps * world_size.
- The ranks agree on when to stop (time limit, Ctrl-C/SIGTERM) with one all-reduce per step,
  which also averages the logged loss; evaluation batches are divided among the ranks.
- Rank 0 alone prints, writes metrics.jsonl and saves checkpoints; the checkpoint also holds
  every rank's data-generator state, so a resumed run with as many ranks continues each stream.
- At the end every rank meets at a barrier before destroy_process_group (minigpt.distributed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.checkpoint import (CheckpointError, capture_rng_state, has_checkpoint, load_checkpoint,
                                restore_rng_state, save_checkpoint)
from minigpt.distributed import (DistInfo, all_reduce_sum, data_generator, gather_objects, param_checksum,
                                 rank_print)
from minigpt.shards import sample_batch
from minigpt.train import (TrainConfig, TrainResult, _mean, _plot, _progress, _read_metrics, _trim_metrics,
                           autocast_for, evaluate, last_eval_step, lr_at, make_optimizer, resolve_device)


@dataclass
class DDPTrainConfig(TrainConfig):
    grad_accum_steps: int = 1  # micro-batches per optimizer step, per rank
    batch_tokens: int | None = None  # if set: tokens per optimizer step over all ranks (sets grad_accum_steps)
    compile: bool = False  # torch.compile the model (CUDA; the first steps are slow while it compiles)
    tf32: bool = True  # TF32 tensor cores for float32 matmuls on CUDA (bf16 autocast covers most of them)

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.grad_accum_steps, int) or self.grad_accum_steps <= 0:
            raise ValueError(f"grad_accum_steps must be a positive integer, got {self.grad_accum_steps!r}")
        if self.batch_tokens is not None and self.batch_tokens <= 0:
            raise ValueError("batch_tokens must be positive (or None)")

    def accum_for(self, world_size: int) -> int:
        """Micro-batches per step on each of `world_size` ranks."""
        if self.batch_tokens is None:
            return self.grad_accum_steps
        per_micro = self.batch_size * self.seq_len * world_size
        if self.batch_tokens % per_micro:
            raise ValueError(f"batch_tokens={self.batch_tokens:,} is not a multiple of batch_size * seq_len * "
                             f"world_size = {per_micro:,}; change --batch-size or --batch-tokens")
        return self.batch_tokens // per_micro


def configure_gpu(cfg: DDPTrainConfig, device: torch.device) -> None:
    """TF32 for float32 matmuls ("high" precision); a no-op off CUDA."""
    if device.type == "cuda" and cfg.tf32:
        torch.set_float32_matmul_precision("high")


class _GracefulStop:
    """The first SIGINT (Ctrl-C) or SIGTERM (what torchrun sends its workers when it is stopped)
    asks the ranks to stop after this step and save; a second Ctrl-C interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def eval_batches_for(data, cfg: TrainConfig):
    """The fixed validation batches (as minigpt.train.fixed_eval_batches, from any stream or shards)."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    return [sample_batch(data.val, cfg.batch_size, cfg.seq_len, g) for _ in range(cfg.eval_iters)]


def train_ddp(model, data, cfg: DDPTrainConfig, info: DistInfo | None = None, *, resume: bool = False,
              until_step: int | None = None, tokenizer=None, write_checksums: bool = False) -> TrainResult:
    """Train `model` on `data` (TokenData; its streams may be ShardedTokens) on every rank of `info`.

    Call it on every rank with the same arguments; `data.train` should already be this rank's
    part (minigpt.shards.load_shard_data(..., rank=, world_size=)). Returns a TrainResult (every
    rank gets the same numbers). resume and until_step (a pause) work as in minigpt.train.train.
    write_checksums: every rank writes out_dir/params.rank{r}.sha256 at the end.
    """
    if not isinstance(cfg, DDPTrainConfig):
        cfg = DDPTrainConfig(**dataclasses.asdict(cfg))
    info = info or DistInfo(device=resolve_device(cfg.device))  # one process, no torchrun
    if cfg.seq_len > model.config.block_size:
        raise ValueError(f"seq_len={cfg.seq_len} is longer than the model's block_size={model.config.block_size}")
    rank, world = info.rank, info.world_size
    device = info.device
    accum = cfg.accum_for(world)
    tokenizer = tokenizer if tokenizer is not None else data.tokenizer
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoint"
    metrics_path = out_dir / "metrics.jsonl"
    writes = cfg.save and info.is_main  # only rank 0 writes files

    configure_gpu(cfg, device)
    torch.manual_seed(cfg.seed + 1000 * rank)  # dropout masks differ between ranks, as their data does
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg, device)
    data_gen = data_generator(cfg.seed, rank)
    eval_batches = eval_batches_for(data, cfg)
    step, last_eval = 0, {}
    if resume:
        if not has_checkpoint(ckpt_dir):
            raise CheckpointError(f"nothing to resume: no checkpoint in {ckpt_dir}")
        meta = load_checkpoint(ckpt_dir, model, optimizer, data_generator=data_gen, restore_rng=True)
        step = int(meta["train_state"]["step"])
        last_eval = {k: v for k, v in (meta.get("metrics") or {}).items() if k.startswith("val_")}
        ranks_rng = (meta["train_state"].get("extra") or {}).get("rank_rng")
        if ranks_rng and len(ranks_rng) == world:
            restore_rng_state(ranks_rng[rank], data_gen)  # this rank's own streams
        elif world > 1:
            rank_print(f"note: the checkpoint was saved by {len(ranks_rng or [None])} process(es), this run has "
                       f"{world}: ranks other than 0 start fresh data streams")
            if rank:
                data_gen = data_generator(cfg.seed + step, rank)
    if writes:
        out_dir.mkdir(parents=True, exist_ok=True)
        _trim_metrics(metrics_path, keep_until=step if resume else -1)

    # What runs the forward pass: maybe compiled, wrapped in DDP when there are several ranks.
    # `model` itself stays the plain module: it is what we evaluate and save.
    runner = torch.compile(model) if cfg.compile else model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(runner, device_ids=[device.index] if device.type == "cuda" else None,
                     find_unused_parameters=bool(getattr(model.config, "n_experts", 0)))  # MoE: idle experts

    # every rank reads the log (up to the resumed step, as rank 0 trims it) so all make the same decisions
    records = [r for r in _read_metrics(metrics_path) if r.get("step", 0) <= step] if (cfg.save and resume) else []
    losses: list[float] = []
    since_eval: list[float] = []
    stopped = "done"
    t0 = time.perf_counter()
    start_step = step
    pbar = _progress(cfg, start_step) if info.is_main else None

    def log(record: dict):
        records.append(record)
        if writes:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def save(reason: str):
        if not cfg.save:
            return None
        rank_rng = gather_objects(capture_rng_state(data_gen))  # every rank joins; rank 0 writes
        if not writes:
            return str(ckpt_dir)
        metrics = {"train_loss": _mean(losses[-cfg.log_interval:]) if losses else None, **last_eval,
                   "stopped": reason}
        save_checkpoint(ckpt_dir, model, step=step, optimizer=optimizer, train_config=cfg, tokenizer=tokenizer,
                        metrics=metrics, rng_state=capture_rng_state(data_gen),
                        extra={"world_size": world, "rank_rng": rank_rng})
        if cfg.plot:
            _plot(records, out_dir / "loss.png")
        return str(ckpt_dir)

    def do_eval():
        nonlocal last_eval
        if world == 1:
            ce = evaluate(model, data, eval_batches, device)["val_loss"]
        else:  # each rank evaluates every world-th batch; the sum goes round
            mine = eval_batches[rank::world]
            part = evaluate(model, data, mine, device)["val_loss"] * len(mine) if mine else 0.0
            total, n = all_reduce_sum([part, len(mine)], device)
            ce = total / n
        last_eval = {"val_loss": ce, "val_ppl": math.exp(min(ce, 700.0)), "val_bpc": data.bits_per_char(ce, "val")}
        log({"kind": "eval", "step": step, "train_loss": _mean(since_eval) if since_eval else None, **last_eval,
             "time_s": round(time.perf_counter() - t0, 3)})
        since_eval.clear()
        if pbar is not None:
            pbar.set_postfix(val_bpc=f"{last_eval['val_bpc']:.3f}", val_loss=f"{last_eval['val_loss']:.3f}")

    in_update = False
    step_start_state = None
    checkpoint = None
    stop_agreed = False
    with _GracefulStop() as stop:
        try:
            while step < cfg.max_steps:
                if stop_agreed:
                    stopped = "interrupted" if stop.requested else "time_limit"
                    break
                if until_step is not None and step >= until_step:
                    stopped = "until_step"
                    break
                if world == 1 and cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s:
                    stopped = "time_limit"
                    break
                step_start_state = capture_rng_state(data_gen)
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                micro_losses = []
                for micro in range(accum):
                    x, y = sample_batch(data.train, cfg.batch_size, cfg.seq_len, data_gen, device)
                    # DDP averages gradients during backward; between micro-batches there is nothing to average yet
                    sync = contextlib.nullcontext() if (world == 1 or micro == accum - 1) else runner.no_sync()
                    with sync:
                        with autocast_for(device):
                            _, loss = runner(x, y)
                        (loss / accum if accum > 1 else loss).backward()
                    micro_losses.append(loss.detach())
                if cfg.grad_clip:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                else:
                    grad_norm = None
                in_update = True
                optimizer.step()
                step += 1
                in_update = False
                step_start_state = None

                local_loss = (torch.stack(micro_losses).mean() if accum > 1 else micro_losses[0]).item()
                if world > 1:
                    # one small all-reduce: the mean loss and whether any rank wants to stop
                    time_up = cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s
                    loss_sum, want_stop = all_reduce_sum([local_loss, float(time_up or stop.requested)], device)
                    loss_value, stop_agreed = loss_sum / world, want_stop > 0
                else:
                    loss_value, stop_agreed = local_loss, stop.requested
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"the training loss became {loss_value} at step {step}; lower the "
                                             f"learning rate (--lr, now {cfg.lr}) or resume from the last checkpoint")
                losses.append(loss_value)
                since_eval.append(loss_value)
                if step % cfg.log_interval == 0 or step == 1:
                    record = {"kind": "train", "step": step, "loss": loss_value, "lr": lr}
                    if grad_norm is not None:
                        record["grad_norm"] = grad_norm
                    log({**record, "time_s": round(time.perf_counter() - t0, 3)})
                if pbar is not None:
                    pbar.update(1)
                    if step % cfg.log_interval == 0:
                        pbar.set_postfix(loss=f"{_mean(losses[-cfg.log_interval:]):.3f}",
                                         **({"val_bpc": f"{last_eval['val_bpc']:.3f}"} if last_eval else {}))
                if step % cfg.eval_interval == 0 and step < cfg.max_steps:
                    do_eval()
                    checkpoint = save("eval")
            if not last_eval or last_eval_step(records) != step:  # the same answer on every rank
                do_eval()
            checkpoint = save(stopped)
        except KeyboardInterrupt:
            # A second Ctrl-C: no collective is safe now. A single process saves like minigpt.train.
            if world > 1 or in_update:
                rank_print(f"\ninterrupted: not saving; the last checkpoint in {ckpt_dir} is intact", file=sys.stderr)
                raise
            if step_start_state is not None:
                restore_rng_state(step_start_state, data_gen)
            stopped = "interrupted"
            checkpoint = save("interrupted")
        finally:
            if pbar is not None:
                pbar.close()
    if stopped == "interrupted" and checkpoint:
        rank_print(f"stopped at step {step}/{cfg.max_steps}; checkpoint saved to {checkpoint}; resume with --resume",
                   file=sys.stderr)
    if write_checksums:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"params.rank{rank}.sha256").write_text(f"{param_checksum(model)} {step}\n")

    elapsed = time.perf_counter() - t0
    tokens = (step - start_step) * cfg.batch_size * cfg.seq_len * accum * world
    return TrainResult(step=step, train_loss=_mean(losses[-cfg.log_interval:]) if losses else None,
                       val_loss=last_eval.get("val_loss"), val_ppl=last_eval.get("val_ppl"),
                       val_bpc=last_eval.get("val_bpc"), elapsed_s=elapsed, stopped=stopped,
                       checkpoint=checkpoint, losses=losses, tokens_per_s=tokens / elapsed if elapsed > 0 else 0.0)


# --------------------------------------------------------------------------- the program torchrun starts
def main(argv: list[str] | None = None) -> int:
    """``python -m minigpt.train_ddp`` / ``torchrun ... -m minigpt.train_ddp``: see --help."""
    import argparse

    from minigpt.scale_cli import configure_train_ddp, run_train_ddp

    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node N -m minigpt.train_ddp",
                                     description=__doc__.split("\n\n")[0])
    configure_train_ddp(parser, launcher=False)
    return run_train_ddp(parser.parse_args(argv), launcher=False)


if __name__ == "__main__":
    raise SystemExit(main())
