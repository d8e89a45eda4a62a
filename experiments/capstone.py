"""The capstone recipe (chapter 12): a Japanese GPT trained on Tatoeba on a 2-core CPU.

    make capstone        # = .venv/bin/python experiments/capstone.py --threads 2

The committed results (experiments/results/capstone*.{csv,json,jsonl,png}) were made on 2026-12-02 by

    MINIGPT_TATOEBA_URL=file:///work/shared/data/tatoeba/jpn_sentences.tsv.bz2 make capstone

in a fresh clone, on an otherwise idle 2-core AMD EPYC with AVX2 only: 3.142 bits per character on the whole
validation split (the target is at most 3.2), 49.9 minutes of wall time for training (96.5 of CPU time; 30.2
minutes on an AVX-512 EPYC, where the same recipe first gave 3.144: capstone_stride.json). `capstone.json`
records the machine and both times; docs/capstone.md ("Reproducing it") how far a rerun lands from it.

Offline (as the course machines and CI run it) point the download at a mirror first:

    MINIGPT_TATOEBA_URL=file:///path/to/jpn_sentences.tsv.bz2 make capstone

What it does:
1. gets Tatoeba's Japanese sentences through minigpt.datasets (download with a progress bar into
   $MINIGPT_CACHE, or the mirror named by MINIGPT_TATOEBA_URL; the attribution is printed);
2. trains a SentencePiece tokenizer on the train split and writes token shards (minigpt.shards)
   under runs/capstone/ (both are reused when they are already there);
3. trains the model of RECIPE with minigpt.train for a fixed number of steps (deterministic given
   the seed: the time it takes changes from machine to machine, the weights do not);
4. measures bits per character on the *whole* validation split (every token once, in windows of
   seq_len tokens), samples from the model, exports it for transformers, and writes
   experiments/results/capstone.json (figures, samples, command, machine, wall time),
   capstone_curve.jsonl (the training log) and capstone.png (the curve).

Sweep runs (what chose RECIPE; each appends a row to experiments/results/capstone_sweep.csv):

    .venv/bin/python experiments/capstone.py --sweep NAME --steps 600 --dropout 0.1 ...

Sampling grid (temperature x top-p on the trained model; writes capstone_sampling.csv):

    .venv/bin/python experiments/capstone.py --sampling-grid
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
WORK = ROOT / "runs" / "capstone"

# The recipe (docs/capstone.md has the sweep that chose it, and why it is this short).
RECIPE = dict(vocab_size=8000, n_layer=4, n_head=4, n_embd=192, dropout=0.0, seq_len=128, batch_size=16,
              steps=4000, lr=2e-3, min_lr=2e-4, warmup=100, weight_decay=0.1, seed=1337, eval_interval=200,
              train_order="stride")
PROMPTS = ["私の父は", "今日は", "彼女は", "東京で", "この本は", "明日"]


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- data
def prepare(vocab_size: int, work: Path | None = None, progress: bool = True, order: str = "id"):
    """Tokenizer + shards for Tatoeba at `vocab_size`; returns (shards folder, tokenizer model path).

    `order` is the order of the training sentences in their shard (minigpt.datasets.load_tatoeba: "id" or
    "stride"); the tokenizer is trained on the sentences in id order either way, so both orders share it."""
    from minigpt.datasets import load_tatoeba
    from minigpt.shards import read_meta, write_shards
    from minigpt.tokenizer import load_tokenizer, train_sentencepiece

    work = work or ROOT / "runs" / "capstone"  # shared by trial runs: the tokenizers and shards are the same
    tok_path = work / "tokenizer" / f"tatoeba{vocab_size // 1000}k.model"
    shards = work / (f"shards{vocab_size // 1000}k" + ("" if order == "id" else f"-{order}"))
    done = False
    if tok_path.is_file() and (shards / "meta.json").is_file():
        meta = read_meta(shards)
        done = all(meta["splits"].get(s, {}).get("complete") for s in ("train", "val"))
    if done:
        return shards, tok_path
    val_docs = load_tatoeba("val", progress=progress)
    if not tok_path.is_file():
        train_docs = load_tatoeba("train", progress=progress)
        log(f"training SentencePiece ({vocab_size} pieces) on {len(train_docs):,} sentences")
        train_sentencepiece(train_docs, tok_path.with_suffix(""), vocab_size=vocab_size)
    train_docs = load_tatoeba("train", progress=False, order=order)
    tok = load_tokenizer(str(tok_path))
    for split, docs in (("train", train_docs), ("val", val_docs)):
        write_shards(docs, tok, shards, split, workers=1, progress=progress)
    return shards, tok_path


# --------------------------------------------------------------------------- evaluation
def full_val_bpc(model, data, seq_len: int, batch_size: int = 64) -> dict:
    """Cross-entropy over the whole validation stream, each token predicted once.

    The stream is cut into consecutive windows of seq_len + 1 tokens overlapping by one token
    (window k predicts tokens k*seq_len+1 .. (k+1)*seq_len); bpc = total nats / chars / ln 2.
    """
    import torch
    import torch.nn.functional as F

    stream = data.val
    n_win = (len(stream) - 1) // seq_len
    was = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for b in range(0, n_win, batch_size):
            ks = torch.arange(b, min(b + batch_size, n_win))
            idx = ks[:, None] * seq_len + torch.arange(seq_len + 1)
            w = stream[idx]
            logits, _ = model(w[:, :-1])
            total += F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten(), reduction="sum").item()
            count += w[:, 1:].numel()
    model.train(was)
    # the tokens after the last whole window are not scored: scale chars to the tokens scored
    chars = data.val_chars * count / len(stream)
    return {"val_loss_full": total / count, "val_bpc_full": total / chars / math.log(2), "val_tokens": count}


# --------------------------------------------------------------------------- training
def build(settings: dict, vocab_size: int):
    from minigpt.config import get_preset
    from minigpt.model import GPT

    cfg = get_preset("modern", vocab_size=vocab_size, n_layer=settings["n_layer"], n_head=settings["n_head"],
                     n_embd=settings["n_embd"], dropout=settings["dropout"], block_size=settings["seq_len"])
    return GPT(cfg)


def run(settings: dict, out: Path, progress: bool = True) -> dict:
    import torch

    from minigpt.data import TokenData
    from minigpt.shards import load_shard_data
    from minigpt.train import TrainConfig, train

    shards, tok_path = prepare(settings["vocab_size"], progress=progress, order=settings["train_order"])
    data = load_shard_data(shards)
    # Tatoeba is small (a few MB of tokens): train from the streams in memory. With one shard,
    # ShardedTokens.get_batch draws exactly these windows (minigpt.shards).
    data = TokenData(train=data.train.read_all(), val=data.val.read_all(), train_chars=data.train_chars,
                     val_chars=data.val_chars, tokenizer=data.tokenizer)
    for split, stream in (("train", data.train), ("val", data.val)):
        if len(stream) < settings["seq_len"] + 1:
            from minigpt.errors import DataError

            raise DataError(f"the {split} split of {shards} has {len(stream):,} tokens, but one window of seq_len "
                            f"{settings['seq_len']} needs {settings['seq_len'] + 1}: use --seq-len "
                            f"{max(len(stream) - 1, 1)} or less, or a bigger corpus")
    torch.manual_seed(settings["seed"])  # the initial weights (the runs committed before this line had none)
    model = build(settings, data.tokenizer.vocab_size)
    n_params = sum(p.numel() for p in model.parameters())
    steps = settings["steps"]
    cfg = TrainConfig(max_steps=steps, batch_size=settings["batch_size"], seq_len=settings["seq_len"],
                      lr=settings["lr"], min_lr=settings["min_lr"], warmup_steps=settings["warmup"],
                      weight_decay=settings["weight_decay"], eval_interval=min(settings["eval_interval"], steps), eval_iters=10,
                      seed=settings["seed"], device="cpu", out_dir=str(out), progress=progress)
    log(f"model: {n_params / 1e6:.2f}M parameters; {steps} steps of {cfg.batch_size} x {cfg.seq_len} tokens; "
        f"torch threads {torch.get_num_threads()}")
    t0, c0 = time.time(), time.process_time()
    result = train(model, data, cfg)
    train_s, cpu_s = time.time() - t0, time.process_time() - c0
    full = full_val_bpc(model, data, settings["seq_len"])
    tokens_seen = steps * cfg.batch_size * cfg.seq_len
    return {"model": model, "data": data, "tok_path": tok_path, "result": result, "full": full,
            "n_params": n_params, "train_s": train_s, "cpu_s": cpu_s, "epochs": tokens_seen / len(data.train)}


def settings_from(args) -> dict:
    s = dict(RECIPE)
    for k in s:
        v = getattr(args, k, None)
        if v is not None:
            s[k] = v
    return s


SWEEP_FIELDS = ["name", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "seq_len", "batch_size", "steps", "eval_interval",
                "lr", "min_lr", "warmup", "weight_decay", "seed", "train_order", "params_M", "epochs", "train_loss", "val_loss",
                "val_bpc", "val_bpc_full", "train_s", "cpu_s", "threads", "load_avg", "note"]


def append_sweep(name: str, s: dict, r: dict, path: Path) -> dict:
    import torch

    row = {"name": name, **{k: s[k] for k in RECIPE}, "params_M": round(r["n_params"] / 1e6, 3),
           "epochs": round(r["epochs"], 2), "train_loss": round(r["result"].train_loss, 4),
           "val_loss": round(r["result"].val_loss, 4), "val_bpc": round(r["result"].val_bpc, 4),
           "val_bpc_full": round(r["full"]["val_bpc_full"], 4), "train_s": round(r["train_s"], 1), "cpu_s": round(r["cpu_s"], 1),
           "threads": torch.get_num_threads(), "load_avg": round(os.getloadavg()[0], 1)}
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=SWEEP_FIELDS)
        if new:
            w.writeheader()
        w.writerow(row)
    return row


# --------------------------------------------------------------------------- tokenizers
def measure_tokenizers(vocab_sizes=(4000, 8000, 16000), seq_len: int = 64, path: Path | None = None):
    """Characters per token on Tatoeba's validation split for each SentencePiece size and GPT-2's BPE,
    and the share of windows of seq_len tokens whose decode shows U+FFFD."""
    from minigpt.datasets import load_tatoeba
    from minigpt.tokenizer import load_tokenizer, tokenizer_stats

    path = path or RESULTS / "capstone_tokenizers.csv"
    val_text = "\n".join(load_tatoeba("val", progress=False))
    rows = []
    for name, tok in [(f"sp{v // 1000}k", load_tokenizer(str(prepare(v)[1]))) for v in vocab_sizes] + \
                     [("gpt2", load_tokenizer("gpt2"))]:
        st = tokenizer_stats(tok, val_text, seq_len=seq_len)
        rows.append({"tokenizer": name, "vocab_size": tok.vocab_size, "val_chars": len(val_text),
                     "tokens": st["tokens"], "chars_per_token": round(st["chars_per_token"], 4),
                     "tokens_per_char": round(st["tokens_per_char"], 4),
                     "fffd_window_rate": round(st["fffd_window_rate"], 4)})
        log(json.dumps(rows[-1]))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


# --------------------------------------------------------------------------- sampling
ENDINGS = ("。", "！", "？", "!", "?")


def sample_stats(texts: list[str], complete: list[bool]) -> dict:
    """complete: the sample stopped at EOS and ends in 。; distinct-2: distinct character bigrams over
    all bigrams; rep-4: share of character 4-grams that repeat an earlier 4-gram of the same sample."""
    bigrams = [t[i:i + 2] for t in texts for i in range(len(t) - 1)]
    reps, total = 0, 0
    for t in texts:
        seen = set()
        for i in range(len(t) - 3):
            g = t[i:i + 4]
            reps += g in seen
            total += 1
            seen.add(g)
    return {"complete_share": sum(complete) / len(texts),
            "distinct2": len(set(bigrams)) / max(len(bigrams), 1),
            "rep4": reps / max(total, 1),
            "mean_chars": sum(map(len, texts)) / len(texts)}


def draw_samples(model, tok, prompts, n_each: int, temperature: float, top_p, seed: int = 0, max_new_tokens: int = 48):
    from minigpt.generate import generate_text

    texts, complete = [], []
    for i, prompt in enumerate(prompts):
        for j in range(n_each):
            out = generate_text(model, tok, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                                top_k=None, top_p=top_p, seed=seed + 1000 * i + j)
            n_tokens = len(tok.encode(out))
            texts.append(prompt + out)
            complete.append(out.endswith("。") and n_tokens < max_new_tokens)
    return texts, complete


GRID_T = (0.6, 0.8, 1.0)
GRID_P = (0.8, 0.9, 0.95, 1.0)


def sampling_grid(model, tok, path: Path | None = None, n_each: int = 3) -> list[dict]:
    path = path or RESULTS / "capstone_sampling.csv"
    rows = []
    for t in GRID_T:
        for p in GRID_P:
            texts, complete = draw_samples(model, tok, PROMPTS, n_each, t, None if p >= 1 else p)
            st = sample_stats(texts, complete)
            rows.append({"temperature": t, "top_p": p, "samples": len(texts),
                         **{k: round(v, 4) for k, v in st.items()}, "example": texts[0]})
            log(json.dumps(rows[-1], ensure_ascii=False))
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


SAMPLING_RULE = ("the highest share of complete sentences among the settings with at most 2% repeated 4-grams; "
                 "ties go to the higher distinct-2")


def choose_sampling(rows: list[dict]) -> dict:
    """The rule fixed before looking: the highest share of complete sentences among the settings
    with at most 2% repeated 4-grams; ties go to the higher distinct-2."""
    ok = [r for r in rows if r["rep4"] <= 0.02] or rows
    return max(ok, key=lambda r: (r["complete_share"], r["distinct2"]))


# --------------------------------------------------------------------------- the full recipe
def machine() -> dict:
    import torch

    cpu, family = platform.processor() or platform.machine(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and cpu == (platform.processor() or platform.machine()):
                cpu = value.strip()
            elif key in ("cpu family", "model") and key not in family:
                family[key] = value.strip()
    except OSError:
        pass
    if family:  # "AMD EPYC" names both a Zen 3 (AVX2) and a Zen 4 (AVX-512): family/model tell them apart
        cpu += f" (family {family.get('cpu family', '?')}, model {family.get('model', '?')})"
    # the vector code PyTorch runs (AVX2 or AVX512 on x86): the same recipe runs at another pace on each
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "os": platform.system()}


def hf_generate(export_dir: Path, prompt: str) -> str:
    """Load the exported folder with transformers, offline, and continue `prompt` greedily."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(export_dir)
    hf = AutoModelForCausalLM.from_pretrained(export_dir)
    ids = hf_tok(prompt, return_tensors="pt")
    out = hf.generate(**ids, max_new_tokens=24, do_sample=False)
    return hf_tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def full_recipe(s: dict, progress: bool, command: str) -> dict:
    import shutil

    from minigpt.export import export_to_transformers
    from minigpt.generate import generate_text

    load0 = os.getloadavg()[0]
    out = WORK / "recipe"
    r = run(s, out, progress=progress)
    model, tok, res = r["model"], r["data"].tokenizer, r["result"]
    model.eval()
    log(f"step {res.step}: val bpc {r['full']['val_bpc_full']:.3f} on the whole validation split "
        f"({res.val_bpc:.3f} on the 10 fixed batches); train {r['train_s'] / 60:.1f} min wall, "
        f"{r['cpu_s'] / 60:.1f} min CPU")
    rows = sampling_grid(model, tok)
    best = choose_sampling(rows)
    t, p = best["temperature"], best["top_p"]
    samples = [pr + generate_text(model, tok, pr, max_new_tokens=48, temperature=t, top_k=None,
                                  top_p=None if p >= 1 else p, seed=0) for pr in PROMPTS]
    greedy = [pr + generate_text(model, tok, pr, max_new_tokens=48, temperature=0, seed=0) for pr in PROMPTS]
    export_dir = export_to_transformers(model, tok, WORK / "hf", overwrite=True)
    hf_text = hf_generate(export_dir, PROMPTS[0])
    ours = generate_text(model, tok, PROMPTS[0], max_new_tokens=24, temperature=0, top_k=None)
    shutil.copy(out / "metrics.jsonl", RESULTS / "capstone_curve.jsonl")
    from minigpt.plotting import plot_losses

    plot_losses([json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()],
                RESULTS / "capstone.png")
    summary = {
        "command": command, "settings": s, "params": r["n_params"], "epochs": round(r["epochs"], 2),
        "train_tokens": len(r["data"].train), "val_tokens": len(r["data"].val), "val_chars": r["data"].val_chars,
        "train_chars": r["data"].train_chars,
        "steps": res.step, "train_loss": round(res.train_loss, 4), "val_loss_10_batches": round(res.val_loss, 4),
        "val_bpc_10_batches": round(res.val_bpc, 4), "val_loss_full": round(r["full"]["val_loss_full"], 4),
        "val_bpc_full": round(r["full"]["val_bpc_full"], 4), "train_wall_s": round(r["train_s"], 1),
        "train_cpu_s": round(r["cpu_s"], 1), "load_avg_start": round(load0, 1),
        "load_avg_end": round(os.getloadavg()[0], 1), "machine": machine(),
        "sampling": {"temperature": t, "top_p": p, "rule": SAMPLING_RULE},
        "samples": samples, "greedy": greedy,
        "transformers": {"prompt": PROMPTS[0], "greedy_transformers": hf_text, "greedy_minigpt": ours,
                         "same": hf_text == ours},
    }
    (RESULTS / "capstone.json").write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log(json.dumps({k: summary[k] for k in ("val_bpc_full", "val_bpc_10_batches", "train_wall_s", "train_cpu_s")}))
    for text in samples:
        log("  " + text)
    return summary


def main(argv=None) -> int:
    global RESULTS, WORK
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", metavar="NAME", help="a sweep run: append a row to --sweep-csv, no results files")
    p.add_argument("--sweep-csv", default=str(RESULTS / "capstone_sweep.csv"))
    p.add_argument("--measure-tokenizers", action="store_true", help="only measure the tokenizers")
    from minigpt.datasets import TATOEBA_ORDERS

    for k, v in RECIPE.items():
        p.add_argument("--" + k.replace("_", "-"), dest=k, type=type(v),
                       choices=TATOEBA_ORDERS if k == "train_order" else None)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--results", help="write the results here instead of experiments/results (a trial run)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    import torch

    if args.results:
        RESULTS = Path(args.results)
        WORK = RESULTS / "work"
        RESULTS.mkdir(parents=True, exist_ok=True)

    if args.threads:
        torch.set_num_threads(args.threads)
    s = settings_from(args)
    if args.measure_tokenizers:
        measure_tokenizers(seq_len=s["seq_len"])
        return 0
    if args.sweep:
        out = WORK / "sweep" / args.sweep
        r = run(s, out, progress=not args.no_progress)
        row = append_sweep(args.sweep, s, r, Path(args.sweep_csv))
        log(json.dumps(row))
        return 0
    command = "python experiments/capstone.py " + " ".join(argv if argv is not None else sys.argv[1:])
    full_recipe(s, not args.no_progress, command.strip())
    return 0


def cli(argv=None) -> int:
    """main() with the course's error convention: a MinigptError is one line `error: ...`, exit status 2."""
    from minigpt.errors import MinigptError  # DownloadError (no network: it names MINIGPT_TATOEBA_URL), DataError

    try:
        return main(argv)
    except MinigptError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli())
