"""`make demo` (`python -m minigpt demo`): the whole course in a few minutes on a laptop CPU.

1. Train a SentencePiece tokenizer on the embedded corpus's train split.
2. Compare it with GPT-2's BPE on the validation text: characters per token, and how often a
   window of 48 tokens decodes to text with U+FFFD (the problem chapter 02 starts from).
3. Train the `demo` model (modern architecture: RMSNorm, SwiGLU, RoPE) for a few minutes, with a
   progress bar and evaluation in bits per character.
4. Save the loss plot and the checkpoint under runs/demo/.
5. Load the checkpoint back and generate Japanese text, streamed through the safe decoder
   (checked: no U+FFFD is printed).
6. Print a summary of everything measured.

Re-running replaces runs/demo (only a folder the demo made itself is ever deleted).
"""

from __future__ import annotations

import copy
import math
import re
import shutil
import sys
import time
import unicodedata
from pathlib import Path

import torch

from minigpt.checkpoint import load_model
from minigpt.config import get_preset
from minigpt.corpus import describe_corpus, load_documents
from minigpt.data import get_batch, make_token_data
from minigpt.device import pick_device
from minigpt.errors import ConfigError
from minigpt.generate import generate_text
from minigpt.i18n import tr
from minigpt.model import GPT
from minigpt.tokenizer import format_stats_table, load_tokenizer, tokenizer_stats, train_sentencepiece
from minigpt.train import TrainConfig, train

MARKER = ".minigpt-demo"  # a folder with this file was made by the demo and may be replaced
PROMPTS = ("昔々、ある村に", "今日は", "研究チームによると、")
FFFD = "\ufffd"


def _say(*args, **kwargs):
    print(*args, **kwargs, flush=True)


def _width(text: str) -> int:
    """Columns `text` takes in a terminal: East Asian wide and full-width characters take 2."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _header(i: int, n: int, title: str) -> None:
    _say(f"\n[{i}/{n}] {title}")


def _fresh_out_dir(out_dir: Path) -> None:
    """Empty `out_dir` for a new demo run, refusing to delete a folder the demo did not make."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise ConfigError(tr("{d} is a file; pass another --out folder for the demo",
                                 "{d} はファイルです。デモには別の --out フォルダを指定してください", d=out_dir))
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise ConfigError(tr("{d} exists and was not made by the demo (no {m} file in it); pass another --out "
                                 "folder, or delete it yourself",
                                 "{d} はすでにあり、デモが作ったものではありません ({m} がありません)。別の --out "
                                 "フォルダを指定するか、自分で削除してください", d=out_dir, m=MARKER))
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / MARKER).write_text("made by `python -m minigpt demo`; replaced on every run\n", encoding="utf-8")


def _train_tokenizer(train_docs, prefix: Path, vocab_size: int):
    """Train SentencePiece; if the corpus cannot fill `vocab_size` pieces, use the largest that fits."""
    try:
        return train_sentencepiece(train_docs, prefix, vocab_size=vocab_size)
    except ValueError as e:
        fits = re.search(r"largest that fits is (\d+)", str(e))
        if not fits:
            raise
        _say(tr("  vocab_size {v} is too large for this corpus; using {fit}",
                "  語彙サイズ {v} はこのコーパスには大きすぎるため、{fit} にします", v=vocab_size, fit=fits.group(1)))
        return train_sentencepiece(train_docs, prefix, vocab_size=int(fits.group(1)))


def _fffd_example(tok, text: str, seq_len: int = 48) -> str | None:
    """The first window of `seq_len` tokens whose decode shows U+FFFD, shortened around it."""
    ids = tok.encode(text)
    for start in range(0, max(len(ids) - seq_len, 1), seq_len):
        s = tok.decode(ids[start:start + seq_len])
        if FFFD in s:
            i = s.index(FFFD) if s.index(FFFD) > len(s) // 2 else s.rindex(FFFD)
            return s[max(0, i - 20):i + 5].replace("\n", " ")
    return None


def _seconds_per_step(model, data, batch_size: int, seq_len: int, threads_options=None) -> tuple[float, int]:
    """Time a training step (forward + backward + AdamW) on a copy of the model.

    Also picks the number of CPU threads: torch uses one per core, which is fastest on an idle
    machine but can be several times slower than one thread when other programs keep the cores
    busy (the threads wait for each other). Returns (seconds per step, threads), and leaves
    torch set to the faster thread count.
    """
    default = torch.get_num_threads()
    options = threads_options or sorted({1, default})
    probe = copy.deepcopy(model)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)

    def step() -> float:
        x, y = get_batch(data.train, batch_size, seq_len, g)
        t = time.perf_counter()
        _, loss = probe(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    step()  # the first step pays for warm-up allocations
    timings = {}
    for n in options:
        torch.set_num_threads(n)
        timings[n] = min(step() for _ in range(2))
    best = min(timings, key=timings.get)
    torch.set_num_threads(best)
    return timings[best], best


def run_demo(minutes: float = 4.0, out_dir: str | Path = "runs/demo", vocab_size: int = 8000, seed: int = 1337,
             progress: bool = True, preset: str = "demo", batch_size: int = 16, lr: float = 2e-3,
             max_new_tokens: int = 120) -> dict:
    """Run the demo; returns the summary numbers as a dict (also printed at the end)."""
    threads = torch.get_num_threads()
    try:
        return _run(minutes, Path(out_dir), vocab_size, seed, progress, preset, batch_size, lr, max_new_tokens)
    finally:
        torch.set_num_threads(threads)  # the demo may have picked another count for its training


def _run(minutes, out_dir, vocab_size, seed, progress, preset, batch_size, lr, max_new_tokens) -> dict:
    t_start = time.perf_counter()
    n = 6
    summary: dict = {}
    torch.manual_seed(seed)
    _say(tr("minigpt demo: a Japanese GPT from scratch, end to end", "minigpt demo: 日本語 GPT をゼロから作る一連の流れ"))
    _say(describe_corpus("embedded"))
    _fresh_out_dir(out_dir)
    train_docs, val_docs = load_documents("embedded", "train"), load_documents("embedded", "val")
    val_text = "\n".join(val_docs)

    # 1. tokenizer ---------------------------------------------------------------------------
    _header(1, n, tr("training a SentencePiece tokenizer (unigram, vocab {v}) on the train split",
                     "学習用分割で SentencePiece トークナイザを学習します (unigram、語彙サイズ {v})", v=vocab_size))
    t = time.perf_counter()
    sp = _train_tokenizer(train_docs, out_dir / "tokenizer" / "sp", vocab_size)
    _say(tr("  wrote {file} ({n} pieces) in {s:.1f} s", "  {file} を書き出しました (ピース {n} 個、{s:.1f} 秒)",
            file=sp.model_file, n=sp.vocab_size, s=time.perf_counter() - t))

    # 2. GPT-2 vs SentencePiece ------------------------------------------------------------
    _header(2, n, tr("GPT-2's BPE vs SentencePiece on the validation text (windows of 48 tokens)",
                     "検証用のテキストで GPT-2 の BPE と SentencePiece を比べます (48 トークンのウィンドウ)"))
    gpt2 = load_tokenizer("gpt2")
    stats = {name: tokenizer_stats(tok, val_text, seq_len=48) for name, tok in (("gpt2", gpt2), ("sp", sp))}
    rows = [{"tokenizer": s["tokenizer"], "tokens": s["tokens"], "chars/token": s["chars_per_token"],
             "tokens/char": s["tokens_per_char"], "partial tokens": s["partial_token_share"],
             "U+FFFD windows": s["fffd_window_rate"]} for s in stats.values()]
    _say(format_stats_table(rows))
    example = _fffd_example(gpt2, val_text)
    if example:
        _say(tr("  a GPT-2 window cut at 48 tokens decodes to ...{example}: the cut split a character",
                "  48 トークンで切った GPT-2 のウィンドウをデコードすると ...{example} になります。切れ目が文字を分断しています",
                example=repr(example)))
    _say(tr("  GPT-2 needs {ratio:.1f}x as many tokens for the same text: a context of 128 tokens holds that much "
            "less Japanese",
            "  同じテキストに GPT-2 は {ratio:.1f} 倍のトークンを使います。128 トークンのコンテキストに入る日本語は"
            "その分だけ短くなります", ratio=stats["gpt2"]["tokens_per_char"] / stats["sp"]["tokens_per_char"]))

    # 3. train -------------------------------------------------------------------------------
    data = make_token_data(sp, train_docs, val_docs)
    torch.manual_seed(seed)  # right before the model: its weights depend on the seed only
    model = GPT(get_preset(preset, vocab_size=sp.vocab_size, attn_impl="sdpa"))  # SDPA: the fast path for training
    seq_len = model.config.block_size
    device = pick_device("auto")
    budget_s = minutes * 60
    step_s, threads = (_seconds_per_step(model, data, batch_size, seq_len) if device.type == "cpu"
                       else (0.05, torch.get_num_threads()))
    # Size the cosine schedule to the time budget (evaluations and saves take ~10% of it).
    max_steps = max(20, int(budget_s * 0.9 / step_s))
    eval_interval = max(5, max_steps // 8)
    cfg = TrainConfig(max_steps=max_steps, batch_size=batch_size, seq_len=seq_len, lr=lr, min_lr=lr / 10,
                      warmup_steps=max(5, max_steps // 20), eval_interval=eval_interval, eval_iters=8,
                      log_interval=max(1, max_steps // 100), seed=seed, device="auto", out_dir=str(out_dir), time_limit_s=budget_s,
                      progress=progress)
    _header(3, n, tr("training the '{preset}' model ({m:.1f}M parameters: RMSNorm, SwiGLU, RoPE) for up to "
                     "{minutes:g} min on {device}",
                     "'{preset}' モデル (パラメータ数 {m:.1f}M、RMSNorm・SwiGLU・RoPE) を {device} で最大 {minutes:g} 分"
                     "学習します", preset=preset, m=model.num_params() / 1e6, minutes=minutes, device=device.type))
    _say(f"  {data}")
    threads_text = (tr("{n} CPU threads", "CPU スレッド {n} 本", n=threads) if threads > 1
                    else tr("1 CPU thread", "CPU スレッド 1 本"))
    _say(tr("  ~{step_s:.2f} s per step of {b}x{t} tokens ({threads}) -> a schedule of {steps} steps, "
            "evaluation every {every} steps (bits per character on the validation text)",
            "  {b}x{t} トークンの 1 ステップに約 {step_s:.2f} 秒 ({threads}) -> {steps} ステップの"
            "スケジュールで、{every} ステップごとに評価します (検証用テキストの 1 文字あたりのビット数)",
            step_s=step_s, b=batch_size, t=seq_len, threads=threads_text, steps=max_steps,
            every=eval_interval))
    result = train(model, data, cfg, tokenizer=sp)
    _say(tr("  stopped ({why}) at step {step} after {s:.0f} s, {tps:,.0f} tokens/s; val loss {loss:.3f} nats/token, "
            "{bpc:.3f} bits/char",
            "  {s:.0f} 秒後、ステップ {step} で停止しました ({why})。{tps:,.0f} トークン/秒、検証損失 {loss:.3f} "
            "nats/トークン、{bpc:.3f} ビット/文字", why=result.stopped, step=result.step, s=result.elapsed_s,
            tps=result.tokens_per_s, loss=result.val_loss, bpc=result.val_bpc))
    summary.update(train_steps=result.step, train_seconds=result.elapsed_s, val_loss=result.val_loss,
                   val_bpc=result.val_bpc, val_ppl=result.val_ppl, interrupted=result.interrupted)
    if result.interrupted:
        _say(tr("demo stopped by Ctrl-C; the checkpoint above has what was trained",
                "Ctrl-C でデモを止めました。ここまでの学習は上のチェックポイントに保存されています"))
        return summary

    # 4. files -------------------------------------------------------------------------------
    _header(4, n, tr("saved", "保存したファイル"))
    _say(tr("  loss plot:  {f}", "  損失のグラフ:     {f}", f=out_dir / "loss.png"))
    _say(tr("  metrics:    {f}", "  メトリクス:       {f}", f=out_dir / "metrics.jsonl"))
    _say(tr("  checkpoint: {f}", "  チェックポイント: {f}", f=result.checkpoint))

    # 5. generate ----------------------------------------------------------------------------
    _header(5, n, tr("generating from the saved checkpoint (streamed through the safe decoder)",
                     "保存したチェックポイントから生成します (安全なデコーダを通してストリーミング表示)"))
    loaded, tok, meta = load_model(result.checkpoint)
    printed: list[str] = []

    def stream(piece: str) -> None:
        printed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    samples = []
    for i, prompt in enumerate(PROMPTS):
        sys.stdout.write(f"\n  > {prompt}")
        text = generate_text(loaded, tok, prompt, max_new_tokens=max_new_tokens, temperature=0.8, top_k=50,
                             seed=seed + i, stream=stream)
        samples.append(prompt + text)
        sys.stdout.write("\n")
    shown = "".join(printed)
    if FFFD in shown:  # the point of StreamingDecoder + Utf8Guard: this must never happen
        raise AssertionError("U+FFFD was printed while streaming generated text")
    _say(tr("  ({n} characters streamed, U+FFFD printed: 0)", "  ({n} 文字をストリーミング表示、表示された U+FFFD: 0 個)",
            n=len(shown)))

    # 6. summary -----------------------------------------------------------------------------
    total = time.perf_counter() - t_start
    summary.update(
        run_seconds=total, vocab_size=sp.vocab_size,
        gpt2_chars_per_token=stats["gpt2"]["chars_per_token"], sp_chars_per_token=stats["sp"]["chars_per_token"],
        gpt2_fffd_window_rate=stats["gpt2"]["fffd_window_rate"], sp_fffd_window_rate=stats["sp"]["fffd_window_rate"],
        fffd_printed=0, samples=samples, out_dir=str(out_dir))
    _header(6, n, tr("summary", "まとめ"))
    sep = tr(", ", "、")
    lines = [
        (tr("run time", "実行時間"),
         tr("{m:.1f} min ({s:.0f} s), training {ts:.0f} s, {steps} steps",
            "{m:.1f} 分 ({s:.0f} 秒)、うち学習 {ts:.0f} 秒、{steps} ステップ",
            m=total / 60, s=total, ts=result.elapsed_s, steps=result.step)),
        (tr("chars/token", "文字/トークン"),
         f"GPT-2 {summary['gpt2_chars_per_token']:.2f}{sep}"
         f"SentencePiece-{sp.vocab_size} {summary['sp_chars_per_token']:.2f}"),
        (tr("U+FFFD in 48-token windows", "48 トークンのウィンドウ中の U+FFFD"),
         f"GPT-2 {summary['gpt2_fffd_window_rate']:.1%}{sep}SentencePiece {summary['sp_fffd_window_rate']:.1%}"),
        (tr("final val loss", "最終的な検証損失"),
         tr("{loss:.3f} nats/token (perplexity {ppl:.1f})", "{loss:.3f} nats/トークン (パープレキシティ {ppl:.1f})",
            loss=result.val_loss, ppl=result.val_ppl)),
        (tr("final val bits/char", "最終的な検証ビット/文字"),
         tr("{bpc:.3f} (a uniform guess over the corpus's characters: {u:.1f})",
            "{bpc:.3f} (コーパスの文字から一様にランダムに選んだ場合: {u:.1f})",
            bpc=result.val_bpc, u=math.log2(len(set("".join(train_docs)))))),
        (tr("U+FFFD printed while sampling", "サンプリング中に表示された U+FFFD"), "0"),
        (tr("outputs", "出力"), f"{out_dir}/loss.png{sep}{out_dir}/metrics.jsonl{sep}{out_dir}/checkpoint/"),
    ]
    width = max(_width(k) for k, _ in lines)
    _say("  " + "-" * 60)
    for k, v in lines:
        _say(f"  {k}{' ' * (width - _width(k))}  {v}")
    _say("  " + "-" * 60)
    _say(tr("  next: {cmd}", "  次は: {cmd}", cmd=f"python -m minigpt generate --checkpoint {out_dir} --prompt 昔々 --seed 0"))
    return summary
