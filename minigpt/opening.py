"""`python -m minigpt opening`: a five-minute opening for a workshop, in under a minute on a CPU.

1. One Japanese sentence through GPT-2's byte-level BPE and through SentencePiece: the tokens, the
   UTF-8 bytes of each GPT-2 token, and the counts (characters, bytes, tokens).
2. The U+FFFD window: the first GPT-2 prefix of that sentence whose decode shows U+FFFD (a token
   boundary inside a character), and the same cut with SentencePiece (none: its pieces are characters).
3. A trained model writes Japanese, streamed through the safe decoder.

The model comes from `--checkpoint`, else the demo's checkpoint (runs/demo, from `make demo`), else the
capstone's (runs/capstone/recipe), else a tiny model is trained on the embedded corpus for `--train-seconds`
(30 s) and saved to runs/opening (nothing is shipped in the repository). `--no-train` says how to get one instead.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from minigpt.errors import CheckpointError
from minigpt.i18n import tr

SENTENCE = "駅前の古い喫茶店が、来月で閉店するらしい。"
PROMPT = "昔々、ある村に"
FFFD = "\ufffd"
CANDIDATES = ("runs/demo", "runs/capstone/recipe", "runs/opening")


def _say(*args, **kwargs) -> None:
    print(*args, **kwargs, flush=True)


def find_checkpoint(root: Path) -> Path | None:
    """The first run folder of CANDIDATES (under `root`) that holds a checkpoint."""
    for rel in CANDIDATES:  # a checkpoint folder itself, or a run folder holding checkpoint/
        if (root / rel / "config.json").is_file() or (root / rel / "checkpoint" / "config.json").is_file():
            return root / rel
    return None


def _token_text(tok, i: int) -> str:
    b = tok.token_bytes(i)
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "<" + b.hex(" ") + ">"


def show_tokens(gpt2, sp, text: str = SENTENCE) -> dict:
    """Part 1 and 2: the tokens of `text` with both tokenizers and the first U+FFFD cut."""
    n_chars, n_bytes = len(text), len(text.encode("utf-8"))
    g_ids, s_ids = gpt2.encode(text), sp.encode(text)
    _say(tr("  the sentence: {t}   ({c} characters, {b} UTF-8 bytes)", "  文: {t}   ({c} 文字、UTF-8 で {b} バイト)",
            t=text, c=n_chars, b=n_bytes))
    _say(tr("  GPT-2 (byte-level BPE): {n} tokens", "  GPT-2 (バイトレベル BPE): {n} トークン", n=len(g_ids)))
    _say("    " + " | ".join(_token_text(gpt2, i) for i in g_ids))
    _say(tr("  SentencePiece ({v} pieces): {n} tokens", "  SentencePiece (ピース {v} 個): {n} トークン",
            v=sp.vocab_size, n=len(s_ids)))
    _say("    " + " | ".join(sp.decode([i]) for i in s_ids))
    partial = next((_token_text(gpt2, i) for i in g_ids if _token_text(gpt2, i).startswith("<")), "<..>")
    _say(tr("  {p} is a part of one character's bytes: GPT-2 cuts characters at token boundaries, and needs "
            "{r:.1f}x as many tokens for the same text", "  {p} は 1 文字のバイトの一部です: GPT-2 は文字をトークンの境目で"
            "分断し、同じ文に {r:.1f} 倍のトークンを使います", p=partial, r=len(g_ids) / max(1, len(s_ids))))
    cut = None
    for k in range(len(g_ids) // 2, len(g_ids)):  # a cut in the middle of the sentence, as a window would make
        s = gpt2.decode(g_ids[:k])
        if FFFD in s:
            cut = (k, s)
            break
    if cut:
        k, s = cut
        _say(tr("  the first {k} GPT-2 tokens decode to {s!r}: a window cut there shows U+FFFD", "  GPT-2 の最初の {k} "
                "トークンをデコードすると {s!r}: そこで切ったウィンドウには U+FFFD が出ます", k=k, s=s))
        sp_prefix = sp.decode(s_ids[:max(1, round(k * len(s_ids) / len(g_ids)))])
        _say(tr("  SentencePiece cut at the same place: {s!r} (no U+FFFD: its pieces are whole characters)",
                "  SentencePiece を同じ位置で切ると {s!r} (U+FFFD なし: ピースは文字単位です)", s=sp_prefix))
    return {"chars": n_chars, "bytes": n_bytes, "gpt2_tokens": len(g_ids), "sp_tokens": len(s_ids),
            "fffd_cut": cut[0] if cut else None}


def train_tiny(out_dir: Path, seconds: float, seed: int = 0):
    """A tiny modern GPT on the embedded corpus for about `seconds`; returns the checkpoint path."""
    import torch

    from minigpt.config import get_preset
    from minigpt.corpus import load_documents
    from minigpt.data import make_token_data
    from minigpt.model import GPT
    from minigpt.tokenizer import train_sentencepiece
    from minigpt.train import TrainConfig, train

    train_docs, val_docs = load_documents("embedded", "train"), load_documents("embedded", "val")
    sp = train_sentencepiece(train_docs, out_dir / "tokenizer" / "sp", vocab_size=4000)
    data = make_token_data(sp, train_docs, val_docs)
    torch.manual_seed(seed)
    model = GPT(get_preset("demo", vocab_size=sp.vocab_size, attn_impl="sdpa"))
    cfg = TrainConfig(max_steps=400, batch_size=16, seq_len=model.config.block_size, lr=2e-3, min_lr=2e-4,
                      warmup_steps=10, eval_interval=1000, eval_iters=4, log_interval=50, seed=seed, device="cpu",
                      out_dir=str(out_dir), time_limit_s=seconds, progress=False)
    result = train(model, data, cfg, tokenizer=sp)
    return result.checkpoint


def opening(checkpoint: str | None = None, *, train_seconds: float = 30.0, allow_train: bool = True,
            max_new_tokens: int = 60, seed: int = 0, root: str | Path = ".") -> dict:
    from minigpt.checkpoint import load_model
    from minigpt.generate import generate_text
    from minigpt.tokenizer import load_tokenizer

    t0 = time.perf_counter()
    root = Path(root)
    path = Path(checkpoint) if checkpoint else find_checkpoint(root)
    trained = False
    if path is None and allow_train:
        _say(tr("(no checkpoint in {c}: training a tiny model for {s:g} s on the embedded corpus, saved to runs/opening)",
                "({c} にチェックポイントがないので、内蔵コーパスで小さなモデルを {s:g} 秒学習し、runs/opening に保存します)",
                c=", ".join(CANDIDATES[:2]), s=train_seconds))
        path = Path(train_tiny(root / "runs" / "opening", train_seconds, seed))
        trained = True
    if path is None:
        raise CheckpointError(tr("no checkpoint found in {c}: run `make demo` (about 4 minutes) or "
                                 "`python -m minigpt opening` without --no-train (30 s of training)",
                                 "{c} にチェックポイントがありません: `make demo` (約 4 分) を実行するか、"
                                 "--no-train なしで `python -m minigpt opening` を実行してください (学習 30 秒)",
                                 c=", ".join(CANDIDATES[:2])))
    model, sp, meta = load_model(path)
    _say(tr("1. One sentence, two tokenizers", "1. 1 つの文と 2 つのトークナイザ"))
    stats = show_tokens(load_tokenizer("gpt2"), sp)
    _say()
    _say(tr("2. A model trained from scratch writes Japanese ({p}, step {s}, {m:.1f}M parameters)",
            "2. ゼロから学習したモデルが日本語を書きます ({p}、ステップ {s}、パラメータ {m:.1f}M 個)",
            p=meta.get("path", path), s=meta.get("step"), m=model.num_params() / 1e6))
    sys.stdout.write(f"  > {PROMPT}")
    printed: list[str] = []

    def stream(piece: str) -> None:
        printed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    generate_text(model, sp, PROMPT, max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, seed=seed,
                  stream=stream)
    shown = "".join(printed)
    _say()
    _say(tr("  ({n} characters streamed, U+FFFD printed: {f})", "  ({n} 文字をストリーミング表示、表示された U+FFFD: {f} 個)",
            n=len(shown), f=shown.count(FFFD)))
    seconds = time.perf_counter() - t0
    _say(tr("opening done in {s:.0f} s. Next: chapter 00 (python -m minigpt progress shows where each learner is)",
            "オープニング終了 ({s:.0f} 秒)。次は 00 章へ (各受講者の進み具合は python -m minigpt progress で見られます)",
            s=seconds))
    return {**stats, "checkpoint": str(path), "trained_now": trained, "generated": shown, "seconds": seconds}
