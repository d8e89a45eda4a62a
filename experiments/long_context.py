"""Longer context without retraining: RoPE scaling at 1x, 2x and 4x the trained context (chapter 11).

The committed results (experiments/results/long_context.csv and .png) were made with

    .venv/bin/python experiments/long_context.py --steps 600 --minutes 6.5 --threads 1

on a shared 2-core CPU (torch 2.13.0+cpu), in 3 to 6 minutes depending on the load. With the same
steps the numbers are the same on every run (seeded; two runs gave identical tables), unless the
--minutes limit stops training first (the script then says so). `--steps 100` gives a quick look.

What it does:
1. trains a SentencePiece tokenizer (unigram, vocab 4000) on the embedded corpus's train split;
2. trains a small model of the modern architecture (RMSNorm, SwiGLU, RoPE; 4 layers, n_embd 128,
   4 heads) at a context of 64 tokens with minigpt.train;
3. evaluates the validation loss at 64, 128 and 256 tokens of context with no scaling and with
   linear (position interpolation), NTK-aware, dynamic NTK and YaRN scaling, factors 2 and 4.
   Only the RotaryEmbedding is rebuilt (`set_rope_scaling`); the weights stay the same, and no
   method is fine-tuned (the papers also report numbers after fine-tuning: not measured here).
   Every context length predicts the same validation tokens: the stream is cut into windows of
   L tokens, so a longer L means more context before each prediction, never other tokens.
   The plot's right panel shows, per position of the longest context, the loss minus the loss of
   the same token with the trained context and no scaling: below 0, the extra context helps.
   (Just after each multiple of the trained context it dips: there the baseline window starts,
   so the baseline predicts that token with no context at all.);
4. writes the table to experiments/results/long_context.csv (one row per method, factor and
   context: loss over all positions, and over the positions past the trained context) and the
   plot to long_context.png, and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minigpt.config import get_preset
from minigpt.corpus import load_documents
from minigpt.data import prepare_data
from minigpt.model import GPT
from minigpt.rope import RotaryEmbedding
from minigpt.tokenizer import train_sentencepiece
from minigpt.device import pick_device
from minigpt.train import TrainConfig, train

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("linear", "ntk", "dynamic", "yarn")
LABELS = {"none": "スケーリングなし", "linear": "線形 (PI)", "ntk": "NTK-aware", "dynamic": "動的 NTK",
          "yarn": "YaRN"}
COLORS = {"none": "black", "linear": "tab:blue", "ntk": "tab:orange", "dynamic": "tab:green", "yarn": "tab:red"}


def set_rope_scaling(model: GPT, scaling: dict | None) -> None:
    """Swap the model's rotary embedding for one with `scaling` (None: plain RoPE); weights unchanged."""
    cfg = model.config.replace(rope_scaling=scaling)  # validates the scaling dict
    device = model.tok_emb.weight.device
    model.config = cfg
    # max_len = block_size: the context the model was trained at (YaRN's and dynamic NTK's reference)
    model.rope = RotaryEmbedding(cfg.head_dim, cfg.rope_base, cfg.block_size, scaling).to(device)


@torch.no_grad()
def token_losses(model: GPT, stream: torch.Tensor, context: int, n_tokens: int, batch_size: int = 16):
    """Cross-entropy of predicting stream[1 .. n_tokens], in stream order: (n_tokens,).

    The tokens are cut into consecutive windows of `context` tokens, so every context length
    predicts the same tokens; the one at stream position i sees i % context tokens before it."""
    device = model.tok_emb.weight.device
    x = stream[:n_tokens].view(-1, context)  # (N, L)
    y = stream[1:n_tokens + 1].view(-1, context)
    out = []
    model.eval()
    for i in range(0, x.shape[0], batch_size):
        logits, _ = model(x[i:i + batch_size].to(device))  # (b, L, V)
        ce = F.cross_entropy(logits.float().transpose(1, 2), y[i:i + batch_size].to(device), reduction="none")
        out.append(ce.double().cpu())  # (b, L)
    return torch.cat(out).flatten()


def settings() -> list[tuple[str, float]]:
    return [("none", 1.0)] + [(m, s) for s in (2.0, 4.0) for m in METHODS]


def evaluate_all(model: GPT, val: torch.Tensor, trained: int, multiples=(1, 2, 4), max_tokens: int = 8192):
    """Rows of the results table, and per position at the longest context: the loss minus the
    loss of the same token at the trained context without scaling (what the longer context adds)."""
    longest = trained * max(multiples)
    n_tokens = min(len(val) - 1, max_tokens) // longest * longest  # whole windows at every context length
    rows, curves, baseline = [], {}, None
    for method, factor in settings():
        set_rope_scaling(model, None if method == "none" else {"type": method, "factor": factor})
        for m in multiples:
            L = trained * m
            losses = token_losses(model, val, L, n_tokens)
            if baseline is None:
                baseline = losses  # no scaling at the trained context: the first setting evaluated
            per_pos = losses.view(-1, L)  # (windows, L)
            beyond = per_pos[:, trained:].mean().item() if L > trained else float("nan")
            rows.append({"method": method, "factor": factor, "context": L, "context_multiple": m,
                         "val_loss": round(per_pos.mean().item(), 4), "val_loss_beyond_trained": round(beyond, 4),
                         "val_tokens": n_tokens})
            if L == longest:
                curves[(method, factor)] = (losses - baseline).view(-1, L).mean(0)  # (L,)
    set_rope_scaling(model, None)
    return rows, curves


def print_table(rows: list[dict], trained: int) -> None:
    multiples = sorted({r["context_multiple"] for r in rows})
    head = "".join(f"{f'{m}x ({trained * m})':>12}" for m in multiples)
    beyond = "".join(f"{f'{m}x past {trained}':>14}" for m in multiples if m > 1)
    print(f"\nvalidation loss (nats/token), all positions | positions past the trained context")
    print(f"{'method':<10}{'factor':>7}{head}  |{beyond}")
    for method, factor in settings():
        mine = {r["context_multiple"]: r for r in rows if r["method"] == method and r["factor"] == factor}
        cells = "".join(f"{mine[m]['val_loss']:>12.3f}" for m in multiples)
        past = "".join(f"{mine[m]['val_loss_beyond_trained']:>14.3f}" for m in multiples if m > 1)
        print(f"{method:<10}{factor:>7g}{cells}  |{past}")


def plot(rows: list[dict], curves: dict, trained: int, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from minigpt.plotting import setup_japanese_font

    setup_japanese_font()
    fig = Figure(figsize=(12, 4.8))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for method, factor in settings():
        mine = sorted((r for r in rows if r["method"] == method and r["factor"] == factor),
                      key=lambda r: r["context"])
        style = "-" if factor in (1.0, 4.0) else "--"
        ax1.plot([r["context"] for r in mine], [r["val_loss"] for r in mine], style, marker="o",
                 color=COLORS[method], label=f"{LABELS[method]}" + ("" if method == "none" else f" ×{factor:g}"))
    ax1.set_xscale("log", base=2)
    contexts = sorted({r["context"] for r in rows})
    ax1.set_xticks(contexts, [str(c) for c in contexts])
    ax1.axvline(trained, color="gray", lw=0.8, ls=":")
    ax1.set_xlabel("コンテキスト長 (トークン)")
    ax1.set_ylabel("検証損失 (全位置の平均, nats/トークン)")
    ax1.set_title("コンテキスト長ごとの検証損失 (実線 ×4, 破線 ×2)")
    ax1.legend(fontsize=8)

    bucket = max(1, trained // 8)
    for (method, factor), per_pos in curves.items():
        if method != "none" and factor != 4.0:
            continue
        L = len(per_pos) // bucket * bucket
        smooth = per_pos[:L].view(-1, bucket).mean(1)
        centers = torch.arange(L).view(-1, bucket).float().mean(1)
        ax2.plot(centers.tolist(), smooth.tolist(), color=COLORS[method],
                 label=LABELS[method] + ("" if method == "none" else " ×4"))
    ax2.axhline(0, color="gray", lw=0.8)
    ax2.axvline(trained, color="gray", lw=0.8, ls=":")
    ax2.text(trained, ax2.get_ylim()[1], " 学習時の長さ", va="top", fontsize=8, color="gray")
    ax2.set_xlabel(f"位置 (コンテキスト {max(contexts)} トークン中)")
    ax2.set_ylabel(f"損失の差 ({bucket} 位置ごとの平均, nats)")
    ax2.set_title(f"同じトークンの損失 − 学習長 {trained}・スケーリングなしの損失\n(負 = 長い文脈が役立つ)", fontsize=10)
    ax2.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))  # room for the note below
    fig.text(0.99, 0.01, f"右: {trained} の倍数の直後の谷は、基準の窓がそこで始まり、基準がそのトークンを文脈なしで"
                         "予測するため", ha="right", fontsize=7, color="gray")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=600, help="training steps (the length of the lr schedule)")
    ap.add_argument("--minutes", type=float, default=6.5, help="stop training after this long even if steps remain")
    ap.add_argument("--block-size", type=int, default=64, help="the trained context (default 64)")
    ap.add_argument("--n-embd", type=int, default=128)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--vocab-size", type=int, default=4000, help="SentencePiece vocabulary (default 4000)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--eval-tokens", type=int, default=8192,
                    help="validation tokens predicted per setting, the same ones at every context (default 8192)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; 1 on a busy machine)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for long_context.csv/.png")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    command = "python experiments/long_context.py " + " ".join(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory() as tmp:
        tok = train_sentencepiece(load_documents("embedded", "train"), Path(tmp) / "sp", vocab_size=args.vocab_size)
    data = prepare_data("embedded", tok)
    print(f"tokenizer {tok.name}; {data}", flush=True)
    cfg = get_preset("modern", vocab_size=tok.vocab_size, block_size=args.block_size, n_embd=args.n_embd,
                     n_layer=args.n_layer)
    torch.manual_seed(args.seed)
    model = GPT(cfg)
    print(f"model: modern, {model.num_params():,} parameters, trained context {cfg.block_size}", flush=True)
    tcfg = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, seq_len=args.block_size,
                       warmup_steps=max(1, args.steps // 20), eval_interval=args.steps, seed=args.seed,
                       device=args.device, time_limit_s=args.minutes * 60, save=False, plot=False, progress=False)

    def report(step, record):
        if step % 50 == 0:
            print(f"  step {step}/{args.steps}  loss {record['loss']:.3f}  {time.perf_counter() - t0:.0f} s", flush=True)

    result = train(model, data, tcfg, on_step=report, tokenizer=tok)
    print(f"trained {result.step} steps in {result.elapsed_s:.0f} s ({result.stopped}): "
          f"val loss {result.val_loss:.3f} at context {args.block_size}", flush=True)
    model.to(pick_device(args.device))

    rows, curves = evaluate_all(model, data.val, args.block_size, max_tokens=args.eval_tokens)
    print_table(rows, args.block_size)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = args.out / "long_context.csv", args.out / "long_context.png"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    title = (f"modern {model.num_params() / 1e6:.1f}M, 学習コンテキスト {args.block_size}, {result.step} ステップ "
             f"(微調整なし) — {command}")
    plot(rows, curves, args.block_size, png_path, title)
    print(f"\nwrote {csv_path} and {png_path} ({time.perf_counter() - t0:.0f} s in all)\ncommand: {command}")
    if result.stopped == "time_limit":
        print(f"note: the time limit stopped training at step {result.step} of {args.steps}; "
              "the numbers depend on the machine's speed", file=sys.stderr)
    return 0 if all(math.isfinite(r["val_loss"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
