"""The training loop, for one process or N (torchrun): AdamW, warmup + cosine learning rate,
gradient clipping, evaluation, checkpoints you can resume bit for bit, a Ctrl-C that never loses work.

    >>> from minigpt.config import get_preset
    >>> from minigpt.model import GPT
    >>> data = prepare_data("embedded", "gpt2")                               # doctest: +SKIP
    >>> model = GPT(get_preset("tiny", vocab_size=data.tokenizer.vocab_size))  # doctest: +SKIP
    >>> result = train(model, data, TrainConfig(max_steps=200, out_dir="runs/tiny"))  # doctest: +SKIP
    >>> result.val_bpc                                                        # doctest: +SKIP

One step: draw a batch -> forward (autocast in the precision of minigpt.device.precision_for:
bf16 on most GPUs, fp16 with a GradScaler on older ones, fp32 on CPU) -> backward -> clip the
gradient norm -> check that the loss and the gradient norm are finite (a step that is not is never
applied) -> AdamW step with the learning rate of this step. Every `eval_interval` steps the model is
evaluated on the same fixed validation batches (comparable between evaluations and runs), a line
goes to metrics.jsonl and a checkpoint is saved.

World size 1 is the smallest case of data parallelism. Under torchrun (``torchrun -m minigpt
train ...``, see minigpt.distributed) the same loop runs on every process:

- the model is wrapped in DDP: backward averages the gradients, so every copy takes the same step;
- rank r draws its own batches (data generator ``seed + 1000 * r``, its own slice of the data);
  rank 0 draws what a single process draws, so one process trains exactly what ``train`` trains;
- one optimizer step = ``grad_accum_steps`` micro-batches per rank (DDP syncs only on the last);
- the ranks agree on when to stop (time limit, Ctrl-C, SIGTERM, a non-finite loss) with one small
  all-reduce per step; evaluation batches are divided among them;
- rank 0 alone prints, writes metrics.jsonl and saves (the checkpoint holds every rank's data
  generator state, so a resumed run with as many ranks continues each stream).

Output folder (`out_dir`), locked while a run writes to it (minigpt.runlock):
    metrics.jsonl   one JSON object per line: {"kind": "train"|"eval", "step": ..., ...}
    loss.png        the loss curves (train and validation)
    checkpoint/     see minigpt.checkpoint; also records the data's fingerprint, the running
                    averages of the metrics and every RNG state, so a resumed run (after a pause,
                    Ctrl-C or kill -9) reproduces the uninterrupted run's weights and metrics.jsonl.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
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
from tqdm.auto import tqdm

from minigpt.checkpoint import (capture_rng_state, has_checkpoint, load_checkpoint, restore_rng_state,
                                save_checkpoint)
from minigpt.data import TokenData, prepare_data  # noqa: F401  (prepare_data: the docstring's example)
from minigpt.device import Precision, configure_for_training, peak_flops, pick_device, precision_for
from minigpt.distributed import DistInfo, all_reduce_sum, data_generator, gather_objects, param_checksum, rank_print
from minigpt.errors import CheckpointError, ConfigError, DataError, TrainingError
from minigpt.i18n import tr
from minigpt.optim import param_groups
from minigpt.plotting import plot_losses, read_metrics
from minigpt.runlock import RunLock
from minigpt.shards import ShardedTokens, sample_batch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass
class TrainConfig:
    max_steps: int = 1000  # the learning-rate schedule runs over this many steps
    batch_size: int = 16  # sequences per micro-batch (per process)
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
    device: str = "auto"  # "auto": MINIGPT_DEVICE, then cuda > mps > cpu (minigpt.device)
    out_dir: str = "runs/default"
    time_limit_s: float | None = None  # stop early (and still evaluate and save) after this long
    progress: bool = True  # a tqdm progress bar on stderr
    save: bool = True  # save checkpoints (and the plot) into out_dir
    plot: bool = True  # write out_dir/loss.png at each evaluation and at the end
    grad_accum_steps: int = 1  # micro-batches per optimizer step, per process
    batch_tokens: int | None = None  # if set: tokens per optimizer step over all processes (sets grad_accum_steps)
    compile: bool = False  # torch.compile the model (the first steps are slow while it compiles)
    precision: str = "auto"  # "auto" | "bf16" | "fp16" | "fp32" (minigpt.device.precision_for)

    def __post_init__(self):
        for name in ("max_steps", "batch_size", "seq_len", "eval_interval", "eval_iters", "log_interval",
                     "grad_accum_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(tr("TrainConfig.{name} must be a positive integer, got {v!r}",
                                     "TrainConfig.{name} は正の整数にしてください (値: {v!r})", name=name, v=value))
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ConfigError(tr("TrainConfig.warmup_steps must be an integer >= 0, got {v!r}",
                                 "TrainConfig.warmup_steps は 0 以上の整数にしてください (値: {v!r})",
                                 v=self.warmup_steps))
        if not (_finite(self.lr) and self.lr > 0):
            raise ConfigError(tr("the learning rate must be a positive finite number, got lr={lr}; try --lr 1e-3",
                                 "学習率は正の有限な数にしてください (lr={lr})。例: --lr 1e-3", lr=self.lr))
        if not (_finite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise ConfigError(tr("need 0 <= min_lr <= lr, got lr={lr}, min_lr={m}; lower --min-lr",
                                 "0 <= min_lr <= lr にしてください (lr={lr}, min_lr={m})。--min-lr を下げてください",
                                 lr=self.lr, m=self.min_lr))
        if self.grad_clip is not None and not (_finite(self.grad_clip) and self.grad_clip >= 0):
            raise ConfigError(tr("grad_clip must be a finite number >= 0 (0: no clipping), got {v}",
                                 "grad_clip は 0 以上の有限な数にしてください (0 でクリップなし) (値: {v})",
                                 v=self.grad_clip))
        if self.time_limit_s is not None and not (_finite(self.time_limit_s) and self.time_limit_s > 0):
            raise ConfigError(tr("the time limit must be a positive number of minutes, got {v} s; e.g. --minutes 5",
                                 "制限時間は正の数 (分) にしてください (値: {v} 秒)。例: --minutes 5",
                                 v=self.time_limit_s))
        if self.batch_tokens is not None and (not isinstance(self.batch_tokens, int) or self.batch_tokens <= 0):
            raise ConfigError(tr("batch_tokens must be a positive integer (or None), got {v!r}",
                                 "batch_tokens は正の整数 (または None) にしてください (値: {v!r})",
                                 v=self.batch_tokens))
        if self.precision not in PRECISIONS:
            raise ConfigError(tr("unknown precision {p!r}: use auto, bf16, fp16 or fp32",
                                 "不明な精度 {p!r} です: auto、bf16、fp16、fp32 のいずれかを指定してください",
                                 p=self.precision))

    def accum_for(self, world_size: int) -> int:
        """Micro-batches per step on each of `world_size` processes."""
        if self.batch_tokens is None:
            return self.grad_accum_steps
        per_micro = self.batch_size * self.seq_len * world_size
        if self.batch_tokens % per_micro:
            raise ConfigError(tr("batch_tokens={bt:,} is not a multiple of batch_size * seq_len * world_size = "
                                 "{pm:,}; change --batch-size or --batch-tokens",
                                 "batch_tokens={bt:,} が batch_size * seq_len * プロセス数 = {pm:,} の倍数ではありません。"
                                 "--batch-size か --batch-tokens を変えてください", bt=self.batch_tokens, pm=per_micro))
        return self.batch_tokens // per_micro


@dataclass
class TrainResult:
    step: int  # steps done in total (including those before a resume)
    train_loss: float | None  # mean training loss over the last log_interval steps
    val_loss: float | None  # cross-entropy on the fixed validation batches, nats per token
    val_ppl: float | None
    val_bpc: float | None  # bits per character
    elapsed_s: float  # wall time of this call
    stopped: str  # "done" | "time_limit" | "until_step" | "interrupted"
    checkpoint: str | None  # the checkpoint folder, when saved
    losses: list[float] = field(default_factory=list)  # training loss of every step of this call
    tokens_per_s: float = 0.0  # over all processes
    mfu: float | None = None  # model FLOPs utilisation on a GPU of known peak (minigpt.device.PEAK_FLOPS)

    @property
    def interrupted(self) -> bool:
        return self.stopped == "interrupted"

    def metrics(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("losses")
        return d


# --------------------------------------------------------------------------- pieces
def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


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
    """AdamW with the two groups of minigpt.optim.param_groups (chapter 01's exercise): linear weights
    decay; norm gains, biases and embedding tables (with a head tied to them) do not."""
    extra = {"fused": True} if torch.device(device).type == "cuda" else {}  # one kernel for all parameters
    return torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **extra)


def fixed_eval_batches(data: TokenData, cfg: TrainConfig) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The validation batches, drawn once from their own seeded generator: every evaluation
    (and every run with the same seed) measures the same windows."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    return [sample_batch(data.val, cfg.batch_size, cfg.seq_len, g) for _ in range(cfg.eval_iters)]


@torch.no_grad()
def evaluate(model, data: TokenData, batches, device: torch.device, precision: Precision | None = None) -> dict:
    """Cross-entropy (without MoE auxiliary losses), perplexity and bits per character."""
    precision = precision or precision_for(device)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for x, y in batches:
            with precision.autocast(device):
                _, loss = model(x.to(device), y.to(device))
            parts = getattr(model, "last_losses", None) or {}
            total += float(parts["ce"]) if "ce" in parts else loss.item()
    finally:
        model.train(was_training)
    ce = total / len(batches)
    return {"val_loss": ce, "val_ppl": math.exp(min(ce, 700.0)), "val_bpc": data.bits_per_char(ce, "val")}


def data_fingerprint(data: TokenData) -> dict:
    """What identifies the training data: token counts and a sha256 of the token streams (for
    shards: of their records in meta.json). A checkpoint keeps it; --resume on other data refuses."""
    h = hashlib.sha256()
    counts = {}
    for split in ("train", "val"):
        stream = getattr(data, split)
        counts[f"{split}_tokens"] = len(stream)
        h.update(split.encode())
        if isinstance(stream, ShardedTokens):
            records = stream.meta["splits"][split]["shards"]
            h.update(json.dumps(records, sort_keys=True).encode())
        else:
            h.update(stream.detach().to("cpu", torch.int64).contiguous().numpy().tobytes())
    return {"fingerprint": h.hexdigest()[:32], **counts}


def resume_command(cfg: TrainConfig) -> str:
    """The command that continues this run (what Ctrl-C prints)."""
    if sys.argv and Path(sys.argv[0]).name in ("__main__.py", "minigpt") and ("train" in sys.argv or "train-ddp" in sys.argv):
        args = [a for a in sys.argv[1:] if a not in ("--resume", "--overwrite")]
        return f"{shlex.quote(sys.executable)} -m minigpt {' '.join(shlex.quote(a) for a in args)} --resume"
    return f"train(model, data, TrainConfig(out_dir={cfg.out_dir!r}, ...), resume=True)"


class _GracefulStop:
    """Ctrl-C (SIGINT) or SIGTERM (what torchrun, a job scheduler or `kill` send): stop after the
    current step, evaluate and save. A second Ctrl-C stops sooner: the step in progress is dropped
    (never applied half-way; an optimizer step or a save in progress is finished first) and, in a
    single process, the last completed step is saved. Installed only in the main thread; a SIGINT
    handler someone else installed (not Python's default) is left alone."""

    def __init__(self, world_size: int = 1):
        self.world_size = world_size
        self.requested = False  # stop after this step
        self.hard = False  # a second Ctrl-C: stop now
        self.critical = False  # inside optimizer.step or a save: a second Ctrl-C waits for its end
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handler)
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                self._previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handler)
        return self

    def _handler(self, signum, frame):
        name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        if not self.requested:
            self.requested = True
            if self.world_size > 1:
                again = tr("Ctrl-C again: stop at once without saving; the last checkpoint stays as it is",
                           "もう一度 Ctrl-C: 保存せずにすぐ止めます。最後のチェックポイントはそのまま残ります")
            else:
                again = tr("Ctrl-C again: stop sooner, dropping the step in progress and saving the last "
                           "completed one", "もう一度 Ctrl-C: 実行中のステップを捨てて、完了した最後のステップを保存してすぐ止めます")
            rank_print(tr("\n{sig}: stopping after this step and saving a checkpoint ({again})",
                          "\n{sig}: このステップの後で止めてチェックポイントを保存します ({again})",
                          sig=name, again=again), file=sys.stderr)
            return
        if signum != signal.SIGINT:
            return  # a repeated SIGTERM: we are already stopping
        self.hard = True
        if not self.critical:
            raise KeyboardInterrupt

    def check(self):
        """Called when a critical section ends: a second Ctrl-C that came during it takes effect now."""
        if self.hard:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


# --------------------------------------------------------------------------- the loop
def train(model, data: TokenData, cfg: TrainConfig, resume: bool = False, *, info: DistInfo | None = None,
          until_step: int | None = None, on_step=None, tokenizer=None, data_name: str | None = None,
          data_id: dict | None = None, allow_other_data: bool = False, write_checksums: bool = False
          ) -> TrainResult:
    """Train `model` on `data` following `cfg`; returns a TrainResult with the final metrics.

    resume=True continues from out_dir/checkpoint exactly where it stopped (weights, optimizer,
    step, RNG states, running averages): N steps + resume for M steps gives the same model and the
    same metrics.jsonl (wall times aside) as N+M steps in one go. Resuming on data other than the
    checkpoint's (another fingerprint) is refused unless allow_other_data=True.
    info: this process's rank, world size and device (minigpt.distributed.setup_distributed);
    None = one process on cfg.device. Under torchrun call train on every rank with the same
    arguments; `data.train` is this rank's part. data_name (the corpus or shards folder) and
    data_id (minigpt.train.data_fingerprint of the whole data, before it was split among ranks)
    are recorded in the checkpoint; data_id defaults to the fingerprint of `data`.
    until_step: stop after this step (the schedule still follows cfg.max_steps) -- a pause.
    on_step(step, record): called after every step (tests use it to simulate a Ctrl-C).
    Ctrl-C or SIGTERM saves a checkpoint, prints the command to resume and returns (stopped="interrupted").
    A non-finite loss or gradient norm raises TrainingError before the step is applied; nothing is
    saved, and the last checkpoint stays as it was.
    write_checksums: every rank writes out_dir/params.rank{r}.sha256 at the end.
    """
    if cfg.seq_len > model.config.block_size:
        raise ConfigError(tr("seq_len={s} is longer than the model's block_size={b}; use --seq-len {b} or less",
                             "seq_len={s} がモデルの block_size={b} より長いです。--seq-len {b} 以下にしてください",
                             s=cfg.seq_len, b=model.config.block_size))
    info = info or DistInfo(device=pick_device(cfg.device))
    accum = cfg.accum_for(info.world_size)
    precision = precision_for(info.device, cfg.precision)
    tokenizer = tokenizer if tokenizer is not None else data.tokenizer
    out_dir = Path(cfg.out_dir)
    writes = cfg.save and info.is_main  # only rank 0 writes files
    data_id = {**(data_id or data_fingerprint(data)), **({"name": data_name} if data_name else {})}

    if writes and out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(tr("--out {d} is a file; a run needs a folder there: pass another --out",
                             "--out {d} はファイルです。学習結果はフォルダに書くので、別の --out を指定してください",
                             d=out_dir))
    lock = RunLock(out_dir) if writes else None  # before anything is read or written in out_dir
    if lock is not None:
        lock.acquire()
        if lock.took_over:
            rank_print(tr("note: took over the lock of process {pid} in {d}, which is no longer running",
                          "注意: {d} のロックを、もう動いていないプロセス {pid} から引き継ぎました",
                          pid=lock.took_over, d=out_dir), file=sys.stderr)
    try:
        return _train(model, data, cfg, resume, info, accum, precision, tokenizer, data_id, allow_other_data,
                      until_step, on_step, write_checksums)
    finally:
        if lock is not None:
            lock.release()


def _train(model, data, cfg, resume, info, accum, precision, tokenizer, data_id, allow_other_data, until_step,
           on_step, write_checksums) -> TrainResult:
    rank, world, device = info.rank, info.world_size, info.device
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoint"
    metrics_path = out_dir / "metrics.jsonl"
    configure_for_training(device)
    torch.manual_seed(cfg.seed + 1000 * rank)  # dropout masks; they differ between ranks, as their data does
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg, device)
    scaler = precision.grad_scaler(device)  # active for fp16 only
    data_gen = data_generator(cfg.seed, rank)
    eval_batches = fixed_eval_batches(data, cfg)
    step, last_eval, since_eval, recent = 0, {}, [], []
    if resume:
        if not has_checkpoint(ckpt_dir):
            raise CheckpointError(tr("nothing to resume: no checkpoint in {d}; start without --resume, or pass the "
                                     "--out folder of the run to continue",
                                     "再開できません: {d} にチェックポイントがありません。--resume なしで始めるか、"
                                     "続けたい学習の --out フォルダを指定してください", d=ckpt_dir))
        meta = load_checkpoint(ckpt_dir, model, optimizer, data_generator=data_gen, restore_rng=True)
        extra = meta["train_state"].get("extra") or {}
        _check_same_data((meta.get("info") or {}).get("data"), data_id, ckpt_dir, allow_other_data)
        step = int(meta["train_state"]["step"])
        last_eval = {k: v for k, v in (meta.get("metrics") or {}).items() if k.startswith("val_")}
        since_eval, recent = list(extra.get("since_eval") or []), list(extra.get("recent_losses") or [])
        if extra.get("grad_scaler") and scaler.is_enabled():
            scaler.load_state_dict(extra["grad_scaler"])
        ranks_rng = extra.get("rank_rng")
        if ranks_rng and len(ranks_rng) == world:
            restore_rng_state(ranks_rng[rank], data_gen)  # this rank's own streams
        elif world > 1:
            rank_print(tr("note: the checkpoint was saved by {n} process(es), this run has {w}: ranks other than 0 "
                          "start fresh data streams", "注意: チェックポイントは {n} プロセスで保存されましたが、"
                          "今回は {w} プロセスです。ランク 0 以外は新しいデータ列で始めます",
                          n=len(ranks_rng or [None]), w=world))
            if rank:
                data_gen = data_generator(cfg.seed + step, rank)

    # What runs the forward pass: maybe compiled, wrapped in DDP when there are several ranks.
    # `model` itself stays the plain module: it is what we evaluate and save.
    runner = torch.compile(model) if cfg.compile else model
    if world > 1:
        runner = torch.nn.parallel.DistributedDataParallel(
            runner, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=bool(getattr(model.config, "n_experts", 0)))  # MoE: idle experts

    if cfg.save and info.is_main:
        _trim_metrics(metrics_path, keep_until=step if resume else -1)
    # every rank reads the log (up to the resumed step) so that all make the same decisions
    records = [r for r in _read_metrics(metrics_path) if r.get("step", 0) <= step] if (cfg.save and resume) else []
    return _loop(model, runner, data, cfg, info, accum, precision, scaler, optimizer, data_gen, eval_batches,
                 step, last_eval, since_eval, recent, records, until_step, on_step, tokenizer, data_id,
                 write_checksums)


def _check_same_data(saved: dict | None, current: dict, ckpt_dir: Path, allow_other_data: bool) -> None:
    if not saved or allow_other_data or saved.get("fingerprint") == current.get("fingerprint"):
        return
    raise DataError(tr(
        "{ckpt} was trained on other data ({s_name}: {s_n:,} training tokens, fingerprint {s_fp}) than this run "
        "gives ({c_name}: {c_n:,} tokens, fingerprint {c_fp}). Pass the same --corpus/--shards as the run you "
        "resume, or --allow-other-data to continue on this data on purpose",
        "{ckpt} は別のデータで学習されています ({s_name}: 学習トークン {s_n:,} 個、指紋 {s_fp})。今回のデータは "
        "{c_name}: {c_n:,} トークン、指紋 {c_fp} です。再開する学習と同じ --corpus/--shards を指定するか、"
        "意図してこのデータで続けるなら --allow-other-data を付けてください",
        ckpt=ckpt_dir, s_name=saved.get("name", "?"), s_n=saved.get("train_tokens", 0), s_fp=saved.get("fingerprint"),
        c_name=current.get("name", "?"), c_n=current.get("train_tokens", 0), c_fp=current.get("fingerprint")))


def _loop(model, runner, data, cfg, info, accum, precision, scaler, optimizer, data_gen, eval_batches, step,
          last_eval, since_eval, recent, records, until_step, on_step, tokenizer, data_id, write_checksums):
    rank, world, device = info.rank, info.world_size, info.device
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoint"
    metrics_path = out_dir / "metrics.jsonl"
    writes = cfg.save and info.is_main
    losses: list[float] = []  # every step of this call
    stopped = "done"
    t0 = time.perf_counter()
    start_step = step
    tokens_per_step = cfg.batch_size * cfg.seq_len * accum * world
    flops_per_token = model.flops_per_token(cfg.seq_len) if hasattr(model, "flops_per_token") else None
    peak = peak_flops(device, precision)  # None off CUDA or on a GPU of unknown peak: no MFU
    pbar = _progress(cfg, start_step) if info.is_main else None
    postfix: dict[str, str] = {}  # what the progress bar shows after the counts
    speed = {"t": t0, "step": step}  # where the current throughput interval started

    def log(record: dict):
        records.append(record)
        if writes:
            with open(metrics_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def throughput() -> dict:
        now = time.perf_counter()
        dt, n = now - speed["t"], step - speed["step"]
        speed.update(t=now, step=step)
        if dt <= 0 or n <= 0:
            return {}
        tps = n * tokens_per_step / dt
        out = {"tokens_per_s": round(tps, 1)}
        if peak and flops_per_token:
            out["mfu"] = round(tps * flops_per_token / (peak * world), 4)
        return out

    def save(reason: str):
        if not cfg.save:
            return None
        rank_rng = gather_objects(capture_rng_state(data_gen))  # every rank joins; rank 0 writes
        if not writes:
            return str(ckpt_dir)
        metrics = {"train_loss": _mean(recent) if recent else None, **last_eval, "stopped": reason}
        # extra (train_state.pt): what an exact resume needs; info (config.json, for people too): what was trained on
        extra = {"world_size": world, "rank_rng": rank_rng, "since_eval": list(since_eval),
                 "recent_losses": list(recent)}
        if scaler.is_enabled():
            extra["grad_scaler"] = scaler.state_dict()
        stop.critical = True  # a second Ctrl-C waits until the checkpoint is complete
        try:
            save_checkpoint(ckpt_dir, model, step=step, optimizer=optimizer, train_config=cfg, tokenizer=tokenizer,
                            metrics=metrics, rng_state=capture_rng_state(data_gen), extra=extra,
                            info={"data": data_id, "seed": cfg.seed, "world_size": world})
        finally:
            stop.critical = False
        if cfg.plot:
            _plot(records, out_dir / "loss.png")
        return str(ckpt_dir)

    def do_eval():
        nonlocal last_eval
        if world == 1:
            ce = evaluate(model, data, eval_batches, device, precision)["val_loss"]
        else:  # each rank evaluates every world-th batch; the sum goes round
            mine = eval_batches[rank::world]
            part = evaluate(model, data, mine, device, precision)["val_loss"] * len(mine) if mine else 0.0
            total, n = all_reduce_sum([part, len(mine)], device)
            ce = total / n
        last_eval = {"val_loss": ce, "val_ppl": math.exp(min(ce, 700.0)), "val_bpc": data.bits_per_char(ce, "val")}
        log({"kind": "eval", "step": step, "train_loss": _mean(since_eval) if since_eval else None, **last_eval,
             "time_s": round(time.perf_counter() - t0, 3)})
        since_eval.clear()
        if pbar is not None:
            postfix.update(val_loss=f"{last_eval['val_loss']:.3f}", val_bpc=f"{last_eval['val_bpc']:.3f}")
            pbar.set_postfix(postfix)

    step_start_state = None  # the RNG states at the start of a step that has not finished
    checkpoint = None
    signal_stop = time_stop = deliberate = False  # (the ranks' agreed decisions)
    clip = cfg.grad_clip or math.inf  # clip_grad_norm_ also measures the norm; max_norm=inf clips nothing
    with _GracefulStop(world) as stop:
        try:
            while step < cfg.max_steps:
                if signal_stop or (world == 1 and stop.requested):
                    deliberate = True  # every rank takes this branch at the same step
                    raise KeyboardInterrupt
                if time_stop:
                    stopped = "time_limit"
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
                        with precision.autocast(device):
                            _, loss = runner(x, y)
                        scaler.scale(loss / accum if accum > 1 else loss).backward()
                    micro_losses.append(loss.detach())
                scaler.unscale_(optimizer)  # (a no-op unless fp16) so that the norm and the clip see true gradients
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                local_loss = torch.stack(micro_losses).mean() if accum > 1 else micro_losses[0]
                loss_value, norm_value = torch.stack([local_loss.float(), grad_norm.float()]).tolist()  # one sync
                if world > 1:
                    # one small all-reduce: the mean loss and whether any rank wants to stop
                    time_up = cfg.time_limit_s is not None and time.perf_counter() - t0 >= cfg.time_limit_s
                    loss_sum, signals, times_up = all_reduce_sum([loss_value, float(stop.requested), float(time_up)],
                                                                 device)
                    loss_value, signal_stop, time_stop = loss_sum / world, signals > 0, times_up > 0
                # fp16: the GradScaler skips a step with overflowing gradients by itself (and lowers its scale)
                if not math.isfinite(loss_value) or (not math.isfinite(norm_value) and not scaler.is_enabled()):
                    raise TrainingError(_not_finite_message(step + 1, loss_value, norm_value, cfg, ckpt_dir))
                stop.critical = True  # a second Ctrl-C inside optimizer.step would leave half-updated weights
                scaler.step(optimizer)
                scaler.update()
                step += 1
                stop.critical = False
                step_start_state = None
                stop.check()

                losses.append(loss_value)
                since_eval.append(loss_value)
                recent.append(loss_value)
                del recent[:-cfg.log_interval]
                record = {"kind": "train", "step": step, "loss": loss_value, "lr": lr}
                if cfg.grad_clip:
                    record["grad_norm"] = norm_value
                if step % cfg.log_interval == 0 or step == 1:
                    speed_now = throughput()
                    log({**record, "time_s": round(time.perf_counter() - t0, 3), **speed_now})
                    if pbar is not None:
                        postfix["loss"] = f"{_mean(recent):.3f}"
                        if "tokens_per_s" in speed_now:
                            postfix["tok/s"] = f"{speed_now['tokens_per_s']:,.0f}"
                        if "mfu" in speed_now:
                            postfix["mfu"] = f"{speed_now['mfu']:.1%}"
                        pbar.set_postfix(postfix, refresh=False)
                if pbar is not None:
                    pbar.update(1)
                if step % cfg.eval_interval == 0 and step < cfg.max_steps:
                    do_eval()
                    checkpoint = save("eval")
                    stop.check()  # a second Ctrl-C that came during the save
                if on_step is not None:
                    on_step(step, record)
            if not last_eval or last_eval_step(records) != step:  # the same answer on every rank
                do_eval()
            checkpoint = save(stopped)
        except KeyboardInterrupt:
            if world > 1 and not deliberate:
                # A second Ctrl-C under torchrun: no collective is safe now.
                rank_print(tr("\ninterrupted: not saving; the last checkpoint in {d} stays as it is",
                              "\n中断しました: 保存しません。{d} の最後のチェックポイントはそのまま残ります",
                              d=ckpt_dir), file=sys.stderr)
                raise
            if step_start_state is not None:
                # The step had drawn its batch but not updated the weights: rewind the RNGs so the
                # resumed run draws that batch again, exactly as an uninterrupted run would.
                restore_rng_state(step_start_state, data_gen)
            stopped = "interrupted"
            checkpoint = save("interrupted")
            if pbar is not None:
                pbar.close()
                pbar = None
            if checkpoint:
                rank_print(tr("\ninterrupted at step {s}/{n}; checkpoint saved to {c}\nresume with:\n  {cmd}",
                              "\nステップ {s}/{n} で中断しました。チェックポイントを {c} に保存しました\n再開するには:\n  {cmd}",
                              s=step, n=cfg.max_steps, c=checkpoint, cmd=resume_command(cfg)), file=sys.stderr)
        finally:
            if pbar is not None:
                pbar.close()
    if write_checksums:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"params.rank{rank}.sha256").write_text(f"{param_checksum(model)} {step}\n")

    elapsed = time.perf_counter() - t0
    tokens_per_s = (step - start_step) * tokens_per_step / elapsed if elapsed > 0 else 0.0
    mfu = tokens_per_s * flops_per_token / (peak * world) if (peak and flops_per_token) else None
    return TrainResult(step=step, train_loss=_mean(recent) if recent else None,
                       val_loss=last_eval.get("val_loss"), val_ppl=last_eval.get("val_ppl"),
                       val_bpc=last_eval.get("val_bpc"), elapsed_s=elapsed, stopped=stopped,
                       checkpoint=checkpoint, losses=losses, tokens_per_s=tokens_per_s, mfu=mfu)


def _not_finite_message(step: int, loss: float, norm: float, cfg: TrainConfig, ckpt_dir: Path) -> str:
    what = (tr("the training loss became {v}", "学習の損失が {v} になりました", v=loss) if not math.isfinite(loss)
            else tr("the gradient norm became {v}", "勾配ノルムが {v} になりました", v=norm))
    if has_checkpoint(ckpt_dir):
        last = tr("the last good checkpoint, {d}, is unchanged: resume from it with --resume and a lower --lr",
                  "最後の正常なチェックポイント {d} は変更されていません: 小さい --lr と --resume でそこから再開してください",
                  d=ckpt_dir)
    else:
        last = tr("no checkpoint had been saved yet; start again with a lower --lr",
                  "チェックポイントはまだ保存されていません。小さい --lr でやり直してください")
    return tr("{what} at step {s}; the step was not applied and nothing was saved. Lower the learning rate "
              "(--lr, now {lr}); {last}",
              "ステップ {s} で{what}。このステップは適用せず、何も保存していません。学習率を下げてください "
              "(--lr、現在 {lr})。{last}", what=what, s=step, lr=cfg.lr, last=last)


# --------------------------------------------------------------------------- helpers
def last_eval_step(records: list[dict]) -> int | None:
    evals = [r["step"] for r in records if r.get("kind") == "eval"]
    return evals[-1] if evals else None


def _mean(xs) -> float:
    return sum(xs) / len(xs)


def _progress(cfg: TrainConfig, initial: int):
    if not cfg.progress:
        return None
    return tqdm(total=cfg.max_steps, initial=initial, desc="train", unit="step", file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def _read_metrics(path: Path) -> list[dict]:
    return read_metrics(path) if path.exists() else []


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
    try:
        plot_losses(records, path)
    except Exception as e:  # a plot must never stop training
        print(tr("warning: could not write {p}: {e}", "警告: {p} を書けませんでした: {e}", p=path, e=e), file=sys.stderr)
