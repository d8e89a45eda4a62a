"""The architecture ladder at matched training FLOPs: from vanilla GPT-2 to a modern decoder and MoE.

Chapter 09 plots this. Each rung flips one switch of the rung before it (GPTConfig.replace):

    (1) gpt2     preset gpt2: LayerNorm, GELU MLP, learned positions, biases; GPT-2's BPE (50257)
    (2) sp       + a SentencePiece tokenizer (unigram, 8000 pieces, trained on the train split)
    (3) rope     + RoPE instead of learned absolute positions
    (4) rmsnorm  + RMSNorm instead of LayerNorm
    (5) modern   + SwiGLU instead of GELU, no biases          (= preset modern)
    (6) moe      8 SwiGLU experts, top-2, same active params  (= preset moe)

Fair comparison:
- Equal training compute: every run gets the same FLOPs budget, so a run takes
  steps = budget / (model.flops_per_token(seq_len) * batch_size * seq_len). The GPT-2 head
  (50257 x 192) costs FLOPs on every token, so run (1) gets about 3x fewer steps than the others.
- Same batch size, seq_len (= block_size 128), learning-rate schedule shape (warmup for the first
  10% of the steps, then cosine), optimizer and seed for all runs; the loop is minigpt.train.train.
- Bits per character, not loss per token: the tokenizers cut the same text into different numbers
  of tokens. Every evaluation of every run covers the same validation text (by default every third
  validation document: 13 documents, 6,495 characters), cut into consecutive windows of seq_len
  tokens, so each token is predicted once:
  bpc = CE (nats per token) * tokens / characters / ln 2   (TokenData.bits_per_char).

Outputs in --out: ablation.csv (one row per evaluation) and ablation.png (val bpc vs training FLOPs).

The committed results in experiments/results/ (ablation.csv: every evaluation of every run, with its seed;
ablation.png; ablation_seeds.csv: the mean and spread over seeds) were made on 2026-12-02 on the course's
2-core CPU (torch 2.13.0+cpu) with

    .venv/bin/python experiments/ablation.py --budget-pflops 0.005 --runs all --seeds 1337,1,2 --out experiments/results --threads 1

(its printout says 3,024 s of wall time; it shared the CPU with other jobs and was paused for half an hour
during another measurement, so that time says little about the script). The numbers do not depend on the
load, only the times do.

Seeds: one seed is one draw of initial weights and batch order. `--seeds 1337,1,2` climbs the whole
ladder once per seed (ablation.csv gets a seed column) and writes ablation_seeds.csv: each rung's mean,
standard deviation, min and max over the seeds, and each step's change paired by seed, marked
"exceeds spread" only when every seed moves the same way and the mean change is larger than the
seed-to-seed range of both rungs. `--summarize CSV...` recomputes that table from CSVs without
training.

Chapter 09's quick look (a tiny budget, a few evaluations, one thread; about 27 s on the 2-core
CPU; writes to runs/ablation-quick unless --out is given):

    .venv/bin/python experiments/ablation.py --quick
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from minigpt.config import GPTConfig, get_preset  # noqa: E402
from minigpt.corpus import load_documents  # noqa: E402
from minigpt.data import TokenData, make_token_data  # noqa: E402
from minigpt.model import GPT  # noqa: E402
from minigpt.tokenizer import GPT2Tokenizer, train_sentencepiece  # noqa: E402
from minigpt.device import pick_device  # noqa: E402
from minigpt.train import TrainConfig, train  # noqa: E402


@dataclass(frozen=True)
class Rung:
    name: str  # what --runs accepts
    label: str  # the legend of the plot
    tokenizer: str  # "gpt2" | "sp"
    changes: dict  # GPTConfig fields flipped relative to the rung before


LADDER = [
    Rung("gpt2", "(1) GPT-2 + GPT-2 BPE", "gpt2", {}),
    Rung("sp", "(2) + SentencePiece 8k", "sp", {}),  # vocab_size follows the tokenizer
    Rung("rope", "(3) + RoPE", "sp", {"pos": "rope"}),
    Rung("rmsnorm", "(4) + RMSNorm", "sp", {"norm": "rmsnorm"}),
    Rung("modern", "(5) + SwiGLU = modern", "sp", {"mlp": "swiglu", "bias": False}),
    Rung("moe", "(6) MoE top-2 of 8", "sp", {"n_experts": 8, "top_k": 2, "mlp_hidden": 256}),
]
RUN_NAMES = [r.name for r in LADDER]
CSV_COLUMNS = ["run", "seed", "step", "flops", "tokens", "train_loss", "val_loss_per_token", "val_bpc", "wall_s"]
SEEDS_COLUMNS = ["run", "seeds", "bpc_mean", "bpc_std", "bpc_min", "bpc_max", "change_mean", "change_min",
                 "change_max", "exceeds_spread"]
EXPECTED_RATIO = 0.85  # the claim to check: modern's bpc <= 0.85 x vanilla GPT-2's
EVAL_BATCH = 32  # windows per forward pass when evaluating (no gradients: bigger is faster)
# Defaults. FULL made the committed results: the whole ladder in about 8 minutes of one thread of the
# shared 2-core CPU (under 15 minutes even with moderate load from other jobs).
# Small batches because the budget is small: at equal FLOPs they give more optimizer steps.
FULL = dict(budget_pflops=0.005, batch_size=8, evals=8, eval_every=3, out=ROOT / "experiments/results")
# QUICK uses one thread: on a 2-core CPU with anything else running, torch's two threads wait for
# each other and the quick look took 191 s instead of 27 s.
QUICK = dict(budget_pflops=0.00015, batch_size=4, evals=3, eval_every=6, out=ROOT / "runs/ablation-quick",
             threads=1)


def ladder_configs(sp_vocab_size: int) -> dict[str, GPTConfig]:
    """Every rung's GPTConfig: the gpt2 preset, then one replace(...) per rung, cumulatively.

    Rungs (5) and (6) must come out equal to the presets `modern` and `moe`: checked here, so the
    ladder and the presets can never drift apart.
    """
    configs, cfg = {}, get_preset("gpt2")
    for rung in LADDER:
        if rung.tokenizer == "sp":
            cfg = cfg.replace(vocab_size=sp_vocab_size)
        cfg = cfg.replace(**rung.changes)
        configs[rung.name] = cfg
    for name in ("modern", "moe"):
        preset = get_preset(name, vocab_size=sp_vocab_size)
        if configs[name] != preset:
            diff = {k: (v, preset.to_dict()[k]) for k, v in configs[name].to_dict().items()
                    if v != preset.to_dict()[k]}
            raise AssertionError(f"rung {name!r} differs from preset {name!r}: {diff}")
    return configs


# ------------------------------------------------------------------------------ evaluation
def eval_windows(stream: torch.Tensor, seq_len: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cut a token stream into consecutive windows so that every token after the first is a target
    exactly once. Returns (x, y) pairs of length <= seq_len (the last one may be shorter)."""
    out = []
    for start in range(0, len(stream) - 1, seq_len):
        chunk = stream[start : start + seq_len + 1]  # (<= T+1,)
        out.append((chunk[:-1], chunk[1:]))
    return out


def eval_batches(stream: torch.Tensor, seq_len: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The windows of eval_windows, stacked into batches; a short last window is padded
    (input with token 0, target with -1, which cross_entropy ignores; the model is causal, so
    padding at the end never changes the predictions before it)."""
    windows = eval_windows(stream, seq_len)
    batches = []
    for i in range(0, len(windows), batch_size):
        group = windows[i : i + batch_size]
        x = torch.zeros(len(group), seq_len, dtype=torch.long)  # (B, T)
        y = torch.full((len(group), seq_len), -1, dtype=torch.long)  # (B, T)
        for j, (wx, wy) in enumerate(group):
            x[j, : len(wx)], y[j, : len(wy)] = wx, wy
        batches.append((x, y))
    return batches


@torch.no_grad()
def val_loss_per_token(model: GPT, batches, device: torch.device) -> float:
    """Mean cross-entropy (nats) over every target token of the batches; no MoE auxiliary losses."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for x, y in batches:
            logits, _ = model(x.to(device))  # (B, T, vocab)
            y = y.to(device)
            total += F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-1,
                                     reduction="sum").item()
            count += int((y != -1).sum())
    finally:
        model.train(was_training)
    return total / count


def unigram_bpc(train_stream: torch.Tensor, val_stream: torch.Tensor, vocab_size: int, val_chars: int) -> float:
    """Bits per character of a model that knows only how often each token occurs in train
    (add-one smoothed): the level a language model passes once it uses context at all."""
    counts = torch.bincount(train_stream, minlength=vocab_size).double() + 1.0  # (vocab,)
    log_p = counts.log() - counts.sum().log()
    return float(-log_p[val_stream].sum()) / val_chars / math.log(2)


# ------------------------------------------------------------------------------ one run
def run_one(rung: Rung, cfg: GPTConfig, data: TokenData, eval_data: TokenData, args, device) -> dict:
    """Train one rung for its share of the FLOPs budget; returns its summary and its CSV rows."""
    torch.manual_seed(args.seed)  # the same seed for every run's initial weights
    model = GPT(cfg)
    flops_per_token = model.flops_per_token(args.seq_len)
    tokens_per_step = args.batch_size * args.seq_len
    steps = max(1, int(args.budget_pflops * 1e15 // (flops_per_token * tokens_per_step)))
    # evaluate at evenly spaced steps; the last evaluation is the last step
    eval_steps = sorted({max(1, round(steps * k / args.evals)) for k in range(1, args.evals + 1)})
    tcfg = TrainConfig(max_steps=steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                       min_lr=args.lr / 10, warmup_steps=max(1, round(0.1 * steps)),
                       eval_interval=steps + 1, eval_iters=1,  # train()'s own evaluation: once, tiny
                       seed=args.seed, device=str(device), out_dir=str(args.out / f"_{rung.name}"),
                       progress=False, save=False, plot=False)
    batches = eval_batches(eval_data.val, args.seq_len, EVAL_BATCH)

    rows, since_eval = [], []
    eval_s = eval_cpu = 0.0  # time spent evaluating, left out of the training times
    t0, cpu0 = time.perf_counter(), time.process_time()

    def on_step(step: int, record: dict):
        nonlocal eval_s, eval_cpu
        since_eval.append(model.last_losses.get("ce", record["loss"]))  # CE without MoE aux losses
        if step not in eval_steps:
            return
        t_eval, cpu_eval = time.perf_counter(), time.process_time()
        wall = t_eval - t0 - eval_s
        ce = val_loss_per_token(model, batches, device)
        row = {"run": rung.name, "seed": args.seed, "step": step, "flops": step * tokens_per_step * flops_per_token,
               "tokens": step * tokens_per_step, "train_loss": sum(since_eval) / len(since_eval),
               "val_loss_per_token": ce, "val_bpc": eval_data.bits_per_char(ce, "val"), "wall_s": wall}
        rows.append(row)
        since_eval.clear()
        eval_s += time.perf_counter() - t_eval
        eval_cpu += time.process_time() - cpu_eval
        print(f"  {rung.name:8s} step {step:5d}/{steps}  {row['flops'] / 1e12:7.2f} TFLOPs  "
              f"train {row['train_loss']:.3f}  val {ce:.3f} nats/token  {row['val_bpc']:.3f} bpc  "
              f"{wall:6.1f} s", flush=True)

    result = train(model, data, tcfg, on_step=on_step)
    wall = time.perf_counter() - t0 - eval_s
    cpu = time.process_time() - cpu0 - eval_cpu  # CPU seconds of all our threads: less noisy when shared
    return {"run": rung.name, "seed": args.seed, "label": rung.label, "params": model.num_params(),
            "active_params": model.num_active_params(), "flops_per_token": flops_per_token,
            "steps": result.step, "tokens": result.step * tokens_per_step,
            "epochs": result.step * tokens_per_step / len(data.train),
            "val_bpc": rows[-1]["val_bpc"], "val_loss": rows[-1]["val_loss_per_token"],
            "wall_s": wall, "cpu_s": cpu, "eval_s": eval_s, "tokens_per_s": result.step * tokens_per_step / wall,
            "rows": rows}


# ------------------------------------------------------------------------------ outputs
def write_csv(path: Path, summaries: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for s in summaries:
            for r in s["rows"]:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot(path: Path, summaries: list[dict], budget_pflops: float) -> None:
    """Validation bits per character against training FLOPs, one line per run (Agg canvas, no pyplot)."""
    from matplotlib.figure import Figure

    from minigpt.plotting import setup_japanese_font

    setup_japanese_font()  # import matplotlib_fontja: kana and kanji in the labels
    # Left: every run. Right: the SentencePiece runs only, whose differences are small next to
    # the gap that the tokenizer makes.
    sp_runs = [s for s in summaries if s["run"] != "gpt2"]
    panels = [(summaries, "全体")] + ([(sp_runs, "(2)-(6) の拡大")] if len(sp_runs) < len(summaries) else [])
    fig = Figure(figsize=(6.5 * len(panels), 5), dpi=120)
    colors = {r.name: f"C{i}" for i, r in enumerate(LADDER)}
    for i, (runs, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        finals: dict[str, list[float]] = {}
        for s in runs:
            finals.setdefault(s["run"], []).append(s["val_bpc"])
        labelled = set()
        for s in runs:
            xs = [r["flops"] / 1e12 for r in s["rows"]]
            ys = [r["val_bpc"] for r in s["rows"]]
            f = finals[s["run"]]
            label = None
            if s["run"] not in labelled:
                labelled.add(s["run"])
                label = (f"{s['label']}  ({f[0]:.2f})" if len(f) == 1 else
                         f"{s['label']}  ({sum(f) / len(f):.2f}, {len(f)} seeds)")
            ax.plot(xs, ys, marker="o", markersize=3, color=colors[s["run"]], alpha=0.8 if len(f) > 1 else 1.0,
                    lw=1.0 if len(f) > 1 else 1.5, label=label)
        ax.set_xlabel("学習の計算量 (TFLOPs)")
        ax.set_ylabel("検証データの bits / 文字 (低いほど良い)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    n_seeds = len({s.get("seed") for s in summaries})
    seeds = f"、シード {n_seeds} 個" if n_seeds > 1 else ""
    fig.suptitle(f"アーキテクチャの比較: どの実行も同じ計算量 ({budget_pflops:g} PFLOPs) で学習{seeds}")
    fig.tight_layout()
    fig.savefig(path)


def summary_table(summaries: list[dict]) -> str:
    """The final table: one line per run, with the ratio of its bpc to vanilla GPT-2's."""
    base = next((s["val_bpc"] for s in summaries if s["run"] == "gpt2"), None)
    head = (f"{'run':8s} {'params':>10s} {'active':>10s} {'FLOPs/tok':>10s} {'steps':>6s} {'epochs':>6s} "
            f"{'val bpc':>8s} {'vs gpt2':>8s} {'wall s':>7s} {'CPU s':>7s} {'tok/s':>7s}")
    lines = [head, "-" * len(head)]
    for s in summaries:
        ratio = f"{s['val_bpc'] / base:.3f}" if base else "-"
        lines.append(f"{s['run']:8s} {s['params']:>10,d} {s['active_params']:>10,d} "
                     f"{s['flops_per_token'] / 1e6:>9.1f}M {s['steps']:>6d} {s['epochs']:>6.2f} "
                     f"{s['val_bpc']:>8.3f} {ratio:>8s} {s['wall_s']:>7.1f} {s['cpu_s']:>7.1f} {s['tokens_per_s']:>7.0f}")
    return "\n".join(lines)


def seed_summary(finals: dict[tuple[str, int], float]) -> list[dict]:
    """Mean and spread over seeds of each rung's final bits per character, and of each step of the ladder.

    finals: {(run, seed): final val bpc}. A step is the change from the rung before it ((6) moe is
    compared with (5) modern, the dense model it replaces), paired by seed. It "exceeds the spread"
    when every seed moves the same way and the mean change is larger than the seed-to-seed range
    (max - min) of both rungs it compares: a difference that the choice of seed alone cannot make.
    """
    out, previous = [], None
    for name in RUN_NAMES:
        seeds = sorted(s for r, s in finals if r == name)
        if not seeds:
            continue
        vals = [finals[(name, s)] for s in seeds]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else float("nan")
        row = {"run": name, "seeds": " ".join(map(str, seeds)), "bpc_mean": mean, "bpc_std": std,
               "bpc_min": min(vals), "bpc_max": max(vals), "change_mean": float("nan"), "change_min": float("nan"),
               "change_max": float("nan"), "exceeds_spread": ""}
        base = "modern" if name == "moe" else previous
        paired = [s for s in seeds if (base, s) in finals]
        if base is not None and paired:
            diffs = [finals[(name, s)] - finals[(base, s)] for s in paired]
            d = sum(diffs) / len(diffs)
            ranges = [max(v) - min(v) for v in ([finals[(name, s)] for s in paired], [finals[(base, s)] for s in paired])]
            same_sign = all(x < 0 for x in diffs) or all(x > 0 for x in diffs)
            row.update(change_mean=d, change_min=min(diffs), change_max=max(diffs),
                       exceeds_spread=("yes" if same_sign and abs(d) > max(ranges) else "no") if len(paired) > 1 else "")
        out.append(row)
        if name != "moe":
            previous = name
    return out


def seed_table(rows: list[dict]) -> str:
    head = (f"{'run':8s} {'seeds':>14s} {'bpc mean':>8s} {'std':>6s} {'min':>7s} {'max':>7s}   "
            f"{'step (mean, min..max over seeds)':>34s}  exceeds spread")
    lines = [head, "-" * len(head)]
    for r in rows:
        step = ("" if math.isnan(r["change_mean"]) else
                f"{r['change_mean']:+.3f} ({r['change_min']:+.3f}..{r['change_max']:+.3f})")
        std = "" if math.isnan(r["bpc_std"]) else f"{r['bpc_std']:.3f}"
        lines.append(f"{r['run']:8s} {r['seeds']:>14s} {r['bpc_mean']:8.3f} {std:>6s} {r['bpc_min']:7.3f} "
                     f"{r['bpc_max']:7.3f}   {step:>34s}  {r['exceeds_spread']}")
    return "\n".join(lines)


def write_seeds_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SEEDS_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else f"{v:.6g}" if isinstance(v, float) else v)
                        for k, v in r.items()})


def read_finals(paths: list[Path]) -> dict[tuple[str, int], float]:
    """{(run, seed): the last evaluation's val bpc} from ablation CSVs (a file without a seed column,
    as written before --seeds existed, holds one seed: --seed's default, 1337)."""
    finals = {}
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):  # rows in training order: the last one of a run is its final
                finals[(row["run"], int(row.get("seed") or 1337))] = float(row["val_bpc"])
    return finals


def check_expectation(summaries: list[dict]) -> str | None:
    by_name = {s["run"]: s for s in summaries}
    if "gpt2" not in by_name or "modern" not in by_name:
        return None
    ratio = by_name["modern"]["val_bpc"] / by_name["gpt2"]["val_bpc"]
    verdict = "held" if ratio <= EXPECTED_RATIO else "FAILED"
    return f"modern / gpt2 bits per character = {ratio:.3f} (expectation <= {EXPECTED_RATIO}: {verdict})"


# ------------------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-pflops", type=float, default=None,
                   help=f"training FLOPs per run, in PFLOPs (1e15); default {FULL['budget_pflops']}, "
                        f"{QUICK['budget_pflops']} with --quick")
    p.add_argument("--runs", default="all", help=f"'all' or a comma-separated subset of {','.join(RUN_NAMES)}")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default experiments/results; runs/ablation-quick with --quick, "
                        "so a quick look never overwrites the committed results)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget, small batches, 3 evaluations on a sixth of the validation text: "
                        "the idea in < 40 s")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"sequences per step, the same for every run (default {FULL['batch_size']}, "
                        f"{QUICK['batch_size']} with --quick)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (min_lr = lr / 10)")
    p.add_argument("--evals", type=int, default=None,
                   help=f"evaluations per run (default {FULL['evals']}, {QUICK['evals']} with --quick)")
    p.add_argument("--eval-every", type=int, default=None,
                   help=f"evaluate on every n-th validation document (1: all of them; default "
                        f"{FULL['eval_every']}, {QUICK['eval_every']} with --quick)")
    p.add_argument("--sp-vocab", type=int, default=8000)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds: run the whole ladder once per seed (default: --seed only); "
                        "with more than one, also writes ablation_seeds.csv (mean and spread per rung)")
    p.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="CSV",
                   help="train nothing: read ablation CSVs (one or several seeds each), print the mean and spread "
                        "over seeds and write ablation_seeds.csv into --out")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 with --quick); 1 is much faster on "
                        "a CPU shared with other jobs, where threads that wait for each other waste time")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.budget_pflops <= 0 or min(args.evals, args.eval_every, args.batch_size, args.seq_len) <= 0:
        p.error("--budget-pflops, --batch-size, --seq-len, --evals and --eval-every must be positive")
    names = RUN_NAMES if args.runs == "all" else [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in RUN_NAMES]
    if unknown or not names:
        p.error(f"--runs: unknown run(s) {unknown}; choose 'all' or some of {','.join(RUN_NAMES)}")
    args.run_names = [n for n in RUN_NAMES if n in names]  # always in ladder order
    try:
        args.seed_list = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else [args.seed]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not args.seed_list or len(set(args.seed_list)) != len(args.seed_list):
        p.error(f"--seeds: expected distinct integers, got {args.seeds!r}")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        rows = seed_summary(read_finals(args.summarize))
        print(seed_table(rows))
        write_seeds_csv(args.out / "ablation_seeds.csv", rows)
        print(f"wrote {args.out / 'ablation_seeds.csv'}")
        return rows
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_docs = load_documents("embedded", "train")
    val_docs = load_documents("embedded", "val")
    eval_docs = val_docs[:: args.eval_every]

    rungs = [r for r in LADDER if r.name in args.run_names]
    tokenizers = {}
    if any(r.tokenizer == "gpt2" for r in rungs):
        tokenizers["gpt2"] = GPT2Tokenizer()
    with tempfile.TemporaryDirectory() as tmp:  # the SentencePiece model file lives only for this run
        if any(r.tokenizer == "sp" for r in rungs):
            tokenizers["sp"] = train_sentencepiece(train_docs, Path(tmp) / "sp", vocab_size=args.sp_vocab)
        datas = {k: make_token_data(tok, train_docs, val_docs) for k, tok in tokenizers.items()}
        evals = {k: make_token_data(tok, [], eval_docs) if args.eval_every > 1 else datas[k]
                 for k, tok in tokenizers.items()}
    configs = ladder_configs(tokenizers["sp"].vocab_size if "sp" in tokenizers else args.sp_vocab)

    print(f"ablation: {len(rungs)} run(s), {args.budget_pflops:g} PFLOPs each, batch {args.batch_size} x "
          f"{args.seq_len} tokens, lr {args.lr:g}, seed(s) {','.join(map(str, args.seed_list))}, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    for k in tokenizers:
        d, e = datas[k], evals[k]
        print(f"  tokenizer {k}: train {len(d.train):,} tokens / {d.train_chars:,} chars "
              f"({d.train_tokens_per_char:.3f} tokens/char); evaluation text {len(e.val):,} tokens / "
              f"{e.val_chars:,} chars of {len(eval_docs)} validation documents; a unigram model scores "
              f"{unigram_bpc(d.train, e.val, tokenizers[k].vocab_size, e.val_chars):.3f} bpc on it")

    summaries = []
    for seed in args.seed_list:
        args.seed = seed
        for rung in rungs:
            print(f"{rung.label}" + (f"  (seed {seed})" if len(args.seed_list) > 1 else ""), flush=True)
            summaries.append(run_one(rung, configs[rung.name], datas[rung.tokenizer], evals[rung.tokenizer],
                                      args, device))
            write_csv(args.out / "ablation.csv", summaries)  # after every run: a crash keeps what was done
    plot(args.out / "ablation.png", summaries, args.budget_pflops)

    for seed in args.seed_list:
        print()
        if len(args.seed_list) > 1:
            print(f"seed {seed}:")
        mine = [s for s in summaries if s["seed"] == seed]
        print(summary_table(mine))
        verdict = check_expectation(mine)
        if verdict:
            print(verdict)
    if len(args.seed_list) > 1:
        rows = seed_summary({(s["run"], s["seed"]): s["val_bpc"] for s in summaries})
        print()
        print(seed_table(rows))
        write_seeds_csv(args.out / "ablation_seeds.csv", rows)
    print(f"total wall time {time.perf_counter() - t_start:.0f} s "
          f"(training {sum(s['wall_s'] for s in summaries):.0f} s, evaluation "
          f"{sum(s['eval_s'] for s in summaries):.0f} s); wrote {args.out / 'ablation.csv'} and "
          f"{args.out / 'ablation.png'}")
    return summaries


if __name__ == "__main__":
    main()
