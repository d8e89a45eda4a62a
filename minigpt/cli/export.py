"""`python -m minigpt export`: a checkpoint as a transformers model folder (minigpt.export does the work)."""

from __future__ import annotations

import argparse

from minigpt.cli.common import checkpoint_folder, say
from minigpt.i18n import tr


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder, or a run folder holding checkpoint/")
    p.add_argument("--out", required=True, help="the folder to write the transformers model into")
    p.add_argument("--overwrite", action="store_true", help="write into --out even if it already holds files")


def run(args) -> int:
    # lazy: torch and transformers load only when a command runs (keeps `python -m minigpt --help` fast)
    from minigpt.checkpoint import load_model
    from minigpt.export import export_to_transformers
    from minigpt.hf import architecture

    path = checkpoint_folder(args.checkpoint)
    model, tok, _ = load_model(path)
    if tok is None:
        say(tr("note: {p} records no tokenizer; exporting the model only",
               "注意: {p} にはトークナイザの記録がありません。モデルだけを書き出します", p=path))
    out = export_to_transformers(model, tok, args.out, overwrite=args.overwrite)
    code = (f"  from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"  model = AutoModelForCausalLM.from_pretrained({str(out)!r})\n"
            f"  tokenizer = AutoTokenizer.from_pretrained({str(out)!r})")  # Python code: the same in every language
    say(tr("wrote {out} ({arch}, {n:,} parameters{t})", "{out} に書き出しました ({arch}、パラメータ {n:,} 個{t})",
           out=out, arch=architecture(model.config), n=model.num_params(),
           t=tr(", tokenizer {name}", "、トークナイザ {name}", name=tok.name) if tok is not None else "")
        + "\n" + tr("load it with:", "読み込むには:") + "\n" + code)
    return 0
