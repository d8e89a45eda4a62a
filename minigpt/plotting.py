"""Loss curves as PNG files, with Japanese labels.

The figure is drawn on matplotlib's Agg canvas directly (no pyplot), so plotting from a training
run never changes the backend of a notebook that imported it. Japanese text needs a font with
kana and kanji: `matplotlib_fontja` registers one (IPAexGothic); without it the labels fall back
to the default font, silently.

    >>> plot_losses([{"kind": "train", "step": 1, "loss": 5.0},
    ...              {"kind": "eval", "step": 1, "val_loss": 5.1, "val_bpc": 3.0}], "/tmp/loss.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path

_font_ready: bool | None = None


def setup_japanese_font() -> bool:
    """Make matplotlib draw Japanese (returns False when no Japanese font package is installed)."""
    global _font_ready
    if _font_ready is None:
        try:
            import matplotlib_fontja  # noqa: F401  (registers the font and sets rcParams on import)

            _font_ready = True
        except Exception:
            _font_ready = False
    return _font_ready


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl file (lines that do not parse are skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def plot_losses(records, path, title: str | None = None) -> Path:
    """Plot training loss and validation loss (and bits per character on a second axis).

    `records` is a list of metrics.jsonl records or the path of such a file.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(records, (str, Path)):
        records = read_metrics(records)
    setup_japanese_font()
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and r.get("loss") is not None]
    evals = [r for r in records if r.get("kind") == "eval" and r.get("val_loss") is not None]

    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if train:
        ax.plot(*zip(*train), color="tab:blue", lw=1.2, alpha=0.8, label="学習損失 (train)")
    if evals:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", color="tab:orange",
                lw=1.5, ms=4, label="検証損失 (val)")
    ax.set_xlabel("ステップ (step)")
    ax.set_ylabel("交差エントロピー (nats / token)")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    bpc = [(r["step"], r["val_bpc"]) for r in evals if r.get("val_bpc") is not None]
    if bpc:
        ax2 = ax.twinx()
        ax2.plot(*zip(*bpc), "s--", color="tab:green", lw=1, ms=3, label="検証 bits/文字 (val bpc)")
        ax2.set_ylabel("bits / 文字")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="upper right")
    ax.set_title(title or "損失の推移")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)  # a reader (an image viewer, a notebook) never sees half a PNG
    return path
