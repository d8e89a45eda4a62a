"""The training loop: AdamW, warmup + cosine learning rate, gradient clipping, evaluation,
checkpoints you can resume bit for bit, and a Ctrl-C that never loses work.

    >>> from minigpt.config import get_preset
    >>> from minigpt.model import GPT
    >>> data = prepare_data("embedded", "gpt2")                               # doctest: +SKIP
    >>> model = GPT(get_preset("tiny", vocab_size=data.tokenizer.vocab_size))  # doctest: +SKIP
    >>> result = train(model, data, TrainConfig(max_steps=200, out_dir="runs/tiny"))  # doctest: +SKIP
    >>> result.val_bpc                                                        # doctest: +SKIP

One step: draw a batch -> forward (bf16 autocast on CUDA) -> backward -> clip the gradient norm ->
AdamW step with the learning rate of this step. Every `eval_interval` steps the model is evaluated
on the same fixed validation batches (so the numbers are comparable between evaluations and runs),
a line goes to metrics.jsonl and a checkpoint is saved.

Output folder (`out_dir`):
    metrics.jsonl   one JSON object per line: {"kind": "train"|"eval", "step": ..., ...}
    loss.png        the loss curves (train and validation)
    checkpoint/     see minigpt.checkpoint
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minigpt.checkpoint import (CheckpointError, capture_rng_state, has_checkpoint, load_checkpoint,
                                save_checkpoint)
from minigpt.data import TokenData, get_batch


@dataclass
class TrainConfig:
    max_steps: int = 1000  # the learning-rate schedule runs over this many steps
    batch_size: int = 16
    seq_len: int = 128  # tokens per training window; at most the model's block_size
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    min_lr: float = 1e-4  # the cosine decays to this at max_steps
    warmup_steps: int = 50
    weight_decay: float = 0.1  # applied to matrices (dim >= 2) only, not to norms and biases
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 or None: no clipping)
    beta1: float = 0.9
    beta2: float = 0.95
    eval_interval: int = 100  # evaluate, log and save a checkpoint every this many steps
    eval_iters: int = 10  # fixed validation batches per evaluation
    log_interval: int = 10  # a "train" line in metrics.jsonl every this many steps
    seed: int = 1337
    device: str = "auto"  # "auto": cuda > mps > cpu
    out_dir: str = "runs/default"
    time_limit_s: float | None = None  # stop early (and still evaluate and save) after this long
    progress: bool = True  # a tqdm progress bar on stderr
    save: bool = True  # save checkpoints (and the plot) into out_dir
    plot: bool = True  # write out_dir/loss.png at each evaluation and at the end

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "seq_len", "eval_interval", "eval_iters", "log_interval"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.warmup_steps < 0:
            raise ValueError("TrainConfig.warmup_steps must be >= 0")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"TrainConfig: need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError("TrainConfig.time_limit_s must be positive (or None for no limit)")


@dataclass
class TrainResult:
    step: int  # steps done in total (including those before a resume)
    train_loss: float | None  # mean training loss over the last steps
    val_loss: float | None  # cross-entropy on the fixed validation batches, nats per token
    val_ppl: float | None
    val_bpc: float | None  # bits per character
    elapsed_s: float  # wall time of this call
    stopped: str  # "done" | "time_limit" | "until_step" | "interrupted"
    checkpoint: str | None  # the checkpoint folder, when saved
    losses: list[float] = field(default_factory=list)  # training loss of every step of this call
    tokens_per_s: float = 0.0

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"

    def metrics(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("losses")
        return d


# --------------------------------------------------------------------------- pieces
def resolve_device(device: str = "auto") -> torch.device:
    """"auto" picks cuda, then Apple's mps, then cpu."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of step `step` (0-based): linear warmup to cfg.lr, then cosine down to cfg.min_lr.

    >>> cfg = TrainConfig(max_steps=100, warmup_steps=10, lr=1.0, min_lr=0.0)
    >>> lr_at(0, cfg), lr_at(9, cfg), lr_at(100, cfg)
    (0.1, 1.0, 0.0)
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    decay_steps = max(cfg.max_steps - cfg.warmup_steps, 1)
    progress = (step - cfg.warmup_steps) / decay_steps  # 0 -> 1
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def make_optimizer(model, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with two groups: matrices (embeddings, linear weights) decay; norms and biases do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    extra = {"fused": True} if device.type == "cuda" else {}  # one kernel for all parameters
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **extra)


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (faster matmuls, same range as fp32); plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fixed_eval_batches(data: TokenData, cfg: TrainConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The validation batches, drawn once from their own seeded generator: every evaluation
    (and every run with the same seed) measures the same windows."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    return [get_batch(data.val, cfg.batch_size, cfg.seq_len, g) for _ in range(cfg.eval_iters)]


@torch.no_grad()
def evaluate(model, data: TokenData, batches, device: torch.device) -> dict:
    """Cross-entropy (without MoE auxiliary losses), perplexity and bits per character."""
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for x, y in batches:
            with autocast_for(device):
                _, loss = model(x.to(device), y.to(device))
            parts = getattr(model, "last_losses", None) or {}
            total += float(parts["ce"]) if "ce" in parts else loss.item()
    finally:
        model.train(was_training)
    ce = total / len(batches)
    return {"val_loss": ce, "val_ppl": math.exp(min(ce, 700.0)), "val_bpc": data.bits_per_char(ce, "val")}


def resume_command(cfg: TrainConfig) -> str:
    """The command that continues this run (what Ctrl-C prints)."""
    if sys.argv and Path(sys.argv[0]).name in ("__main__.py", "minigpt") and "train" in sys.argv:
        args = [a for a in sys.argv[1:] if a != "--resume"]
        return f"{shlex.quote(sys.executable)} -m minigpt {' '.join(shlex.quote(a) for a in args)} --resume"
    return f"train(model, data, TrainConfig(out_dir={cfg.out_dir!r}, ...), resume=True)"


class _StopFlag:
    """The first Ctrl-C asks the loop to stop after the current step (then save); a second one
    interrupts at once. Only installed in the main thread (signals cannot be caught elsewhere)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            # Keep a custom handler someone else installed; replace only the default one.
            if self._previous is signal.default_int_handler:
                signal.signal(signal.SIGINT, self._handler)
            else:
                self._previous = None
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this step and saving a checkpoint "
              "(press Ctrl-C again to stop at once without saving)", file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


# --------------------------------------------------------------------------- the loop
def train(model, data: TokenData, cfg: TrainConfig, resume: bool = False, *,
          until_step: int | None = None, on_step=None, tokenizer=None) -> TrainResult:
    """Train `model` on `data` following `cfg`; returns a TrainResult with the final metrics.

    resume=True continues from out_dir/checkpoint exactly where it stopped (weights, optimizer,
    step, RNG states): N steps + resume for M steps gives the same model as N+M steps in one go.
    until_step: stop after this step (the schedule still follows cfg.max_steps) -- a pause.
    on_step(step, record): called after every step (tests use it to simulate a Ctrl-C).
    Ctrl-C saves a checkpoint, prints the command to resume and returns (stopped="interrupted").
    """
    if cfg.seq_len > model.config.block_size:
        raise ValueError(f"seq_len={cfg.seq_len} is longer than the model's block_size="
                         f"{model.config.block_size}; use --seq-len {model.config.block_size} or less")
    device = resolve_device(cfg.device)
    tokenizer = tokenizer if tokenizer is not None else data.tokenizer
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoint"
    metrics_path = out_dir / "metrics.jsonl"

    torch.manual_seed(cfg.seed)  # dropout masks; the data has its own generator
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg, device)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    eval_batches = fixed_eval_batches(data, cfg)
    step, last_eval = 0, {}
    if resume:
        if not has_checkpoint(ckpt_dir):
            raise CheckpointError(f"nothing to resume: no checkpoint in {ckpt_dir}; "
                                  "start without --resume, or pass the --out folder of the run to continue")
        meta = load_checkpoint(ckpt_dir, model, optimizer, data_generator=data_gen, restore_rng=True)
        step = int(meta["train_state"]["step"])
        last_eval = {k: v for k, v in (meta.get("metrics") or {}).items() if k.startswith("val_")}
    if cfg.save:
        out_dir.mkdir(parents=True, exist_ok=True)
        _trim_metrics(metrics_path, keep_until=step if resume else -1)

    records = _read_metrics(metrics_path) if (cfg.save and resume) else []
    losses: list[float] = []  # every step of this call
    since_eval: list[float] = []  # training losses since the last evaluation
    stopped = "done"
    t0 = time.perf_counter()
    tokens_per_step = cfg.batch_size * cfg.seq_len
    start_step = step
    pbar = _progress(cfg, start_step)
    postfix: dict[str, str] = {}  # what the progress bar shows after the counts

    def log(record: dict):
        records.append(record)
        if cfg.save:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def save(reason: str):
        if not cfg.save:
            return None
        metrics = {"train_loss": _mean(losses[-cfg.log_interval:]) if losses else None, **last_eval,
                   "stopped": reason}
        save_checkpoint(ckpt_dir, model, step=step, optimizer=optimizer, train_config=cfg,
                        tokenizer=tokenizer, metrics=metrics, rng_state=capture_rng_state(data_gen))
        if cfg.plot:
            _plot(records, out_dir / "loss.png")
        return str(ckpt_dir)

    def do_eval():
        nonlocal last_eval
        last_eval = evaluate(model, data, eval_batches, device)
        rec = {"kind": "eval", "step": step, "train_loss": _mean(since_eval) if since_eval else None,
               **last_eval, "time_s": round(time.perf_counter() - t0, 3)}
        log(rec)
        since_eval.clear()
        if pbar is not None:
            postfix.update(val_loss=f"{last_eval['val_loss']:.3f}", val_bpc=f"{last_eval['val_bpc']:.3f}")
            pbar.set_postfix(postfix)
        return rec

    # What a clean stop restores: the state at the start of a step that did not finish.
    in_update = False
    step_start_state = None
    checkpoint = None
    with _StopFlag() as stop_flag:
        try:
            while step < cfg.max_steps:
                if until_step is not None and step >= until_step:
                    stopped = "until_step"
                    break
                if cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s:
                    stopped = "time_limit"
                    break
                if stop_flag.requested:
                    raise KeyboardInterrupt
                step_start_state = capture_rng_state(data_gen)
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = get_batch(data.train, cfg.batch_size, cfg.seq_len, data_gen, device)
                with autocast_for(device):
                    _, loss = model(x, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                else:
                    grad_norm = None
                in_update = True  # a stop inside optimizer.step would leave half-updated weights
                optimizer.step()
                step += 1
                in_update = False
                step_start_state = None

                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise FloatingPointError(
                        f"the training loss became {loss_value} at step {step}; lower the learning rate "
                        f"(--lr, now {cfg.lr}) or resume from the last checkpoint")
                losses.append(loss_value)
                since_eval.append(loss_value)
                record = {"kind": "train", "step": step, "loss": loss_value, "lr": lr}
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                if step % cfg.log_interval == 0 or step == 1:
                    log({**record, "time_s": round(time.perf_counter() - t0, 3)})
                if pbar is not None:
                    if step % cfg.log_interval == 0 or step == start_step + 1:
                        postfix["loss"] = f"{_mean(losses[-cfg.log_interval:]):.3f}"
                        pbar.set_postfix(postfix, refresh=False)
                    pbar.update(1)
                if step % cfg.eval_interval == 0 and step < cfg.max_steps:
                    do_eval()
                    checkpoint = save("eval")
                if on_step is not None:
                    on_step(step, record)
            if not last_eval or last_eval_step(records) != step:
                do_eval()
            checkpoint = save(stopped)
        except KeyboardInterrupt:
            if in_update:
                # The weights may be half-updated: saving them would poison the checkpoint.
                print(f"\ninterrupted inside an optimizer step: not saving; the last checkpoint in {ckpt_dir} "
                      "is intact", file=sys.stderr)
                raise
            if step_start_state is not None:
                # The step had drawn its batch but not updated the weights: rewind the RNGs so the
                # resumed run draws that batch again, exactly as an uninterrupted run would.
                from minigpt.checkpoint import restore_rng_state
                restore_rng_state(step_start_state, data_gen)
            stopped = "interrupted"
            checkpoint = save("interrupted")
            if pbar is not None:
                pbar.close()
                pbar = None
            if checkpoint:
                print(f"\ninterrupted at step {step}/{cfg.max_steps}; checkpoint saved to {checkpoint}\n"
                      f"resume with:\n  {resume_command(cfg)}", file=sys.stderr, flush=True)
        finally:
            if pbar is not None:
                pbar.close()

    elapsed = time.perf_counter() - t0
    steps_done = step - start_step
    return TrainResult(step=step, train_loss=_mean(losses[-cfg.log_interval:]) if losses else None,
                       val_loss=last_eval.get("val_loss"), val_ppl=last_eval.get("val_ppl"),
                       val_bpc=last_eval.get("val_bpc"), elapsed_s=elapsed, stopped=stopped,
                       checkpoint=checkpoint, losses=losses,
                       tokens_per_s=steps_done * tokens_per_step / elapsed if elapsed > 0 else 0.0)


# --------------------------------------------------------------------------- helpers
def last_eval_step(records: list[dict]) -> int | None:
    evals = [r["step"] for r in records if r.get("kind") == "eval"]
    return evals[-1] if evals else None


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def _progress(cfg: TrainConfig, initial: int):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=cfg.max_steps, initial=initial, desc="train", unit="step", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def _read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return out


def _trim_metrics(path: Path, keep_until: int) -> None:
    """Start metrics.jsonl afresh (keep_until=-1), or drop lines after the resumed step: a run
    that crashed after its last checkpoint logged steps that will now be trained again."""
    if keep_until < 0 or not path.exists():
        path.write_text("", encoding="utf-8")
        return
    kept = [r for r in _read_metrics(path) if r.get("step", 0) <= keep_until]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    tmp.replace(path)


def _plot(records: list[dict], path: Path) -> None:
    from minigpt.plotting import plot_losses

    try:
        plot_losses(records, path)
    except Exception as e:  # a plot must never stop training
        print(f"warning: could not write {path}: {e}", file=sys.stderr)
