"""Training recipes for real hardware: a model preset plus the training settings that go with it.

A recipe is plain data (no torch import), used by ``python -m minigpt train --recipe NAME`` (or
``torchrun ... -m minigpt train --recipe NAME``); any option given on the command line overrides it.

    >>> sorted(RECIPES)
    ['gpu-base-c4ja', 'gpu-base-tatoeba']

Both use the ``gpu-base`` model (minigpt.config.PRESETS: 12 layers, 768 wide, GQA 12/4 heads,
RoPE, SwiGLU, RMSNorm, block 1024, SDPA attention; 100M parameters with a 32k vocabulary, 76M
without the tied embedding), sized for one 80 GB GPU:

- bf16 autocast (minigpt.device.precision_for; fp16 with loss scaling on a GPU without bf16),
  fused AdamW (minigpt.train.make_optimizer), TF32 matmuls for what stays in fp32
  (minigpt.device.configure_for_training), SDPA attention (``--attn sdpa``, the training default)
  and torch.compile (``compile``; turn it off with ``--no-compile`` to debug).
- ``batch_tokens`` fixes the tokens per optimizer step whatever the number of GPUs:
  gradient accumulation = batch_tokens / (batch_size * seq_len * GPUs).
  A micro-batch of 32 x 1024 tokens is meant to fit in 80 GB without activation checkpointing.

``gpu-base-c4ja``: 5000 steps of 0.5M tokens = 2.6B tokens, about 26 tokens per parameter (a
little over the "Chinchilla" budget of ~20). ``gpu-base-tatoeba``: Tatoeba has only a few
million tokens, so the same model sees it ~10 times in 300 steps of 64k tokens, with dropout
against memorising it; watch val bits/char and stop when it rises.

Throughput on a GPU has not been measured for these recipes (see docs/scaling.md).
"""

from __future__ import annotations

from minigpt.errors import ConfigError
from minigpt.i18n import tr

RECIPES: dict[str, dict] = {
    "gpu-base-c4ja": {
        "preset": "gpu-base",
        "model": {},
        "train": dict(max_steps=5000, batch_size=32, seq_len=1024, batch_tokens=524_288, lr=6e-4, min_lr=6e-5,
                      warmup_steps=200, weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_iters=20,
                      log_interval=10, compile=True, device="cuda"),
    },
    "gpu-base-tatoeba": {
        "preset": "gpu-base",
        "model": {"dropout": 0.1},
        "train": dict(max_steps=300, batch_size=32, seq_len=1024, batch_tokens=65_536, lr=6e-4, min_lr=6e-5,
                      warmup_steps=30, weight_decay=0.1, grad_clip=1.0, eval_interval=25, eval_iters=20,
                      log_interval=5, compile=True, device="cuda"),
    },
}


def get_recipe(name: str) -> dict:
    if name not in RECIPES:
        raise ConfigError(tr("unknown recipe {n!r}; choose one of {k}", "不明なレシピ {n!r} です。{k} から選んでください",
                             n=name, k=sorted(RECIPES)))
    recipe = RECIPES[name]
    return {"preset": recipe["preset"], "model": dict(recipe["model"]), "train": dict(recipe["train"])}
