"""Training tokens/s per preset, and MoE grouped dispatch vs a naive per-expert loop.

    python bench/train_throughput.py [--steps 10] [--batch 8]

Prints, from one run: tokens/s of a training step (forward + backward + AdamW) for the gpt2,
modern and moe presets; MoE top-2 of 8 against a dense model with the same active parameters
(target: >= 0.85x); and the MoE layer with grouped dispatch against a loop that runs every
expert on every token.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device, header, timeit  # noqa: E402

from minigpt.config import get_preset  # noqa: E402
from minigpt.model import GPT  # noqa: E402
from minigpt.moe import MoE  # noqa: E402


def step_tokens_per_s(cfg, batch, steps, dev):
    torch.manual_seed(0)
    model = GPT(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    T = cfg.block_size
    idx = torch.randint(0, cfg.vocab_size, (batch, T + 1), device=dev)

    def step():
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sec = timeit(step, repeat=steps, warmup=2)
    return batch * T / sec, model


def naive_moe_forward(moe: MoE, x):
    """Every expert on every token, weighted by its gate (0 where not chosen): E/k times the work."""
    xf = x.reshape(-1, x.shape[-1])
    _, _, weights, index = moe.route(xf)
    gate = torch.zeros(xf.shape[0], moe.n_experts, device=x.device).scatter(1, index, weights)
    out = torch.zeros_like(xf)
    for e, expert in enumerate(moe.experts):
        out += expert(xf) * gate[:, e:e + 1]
    return out.view_as(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    dev = device()
    header("training throughput per preset")
    results = {}
    for name in ("gpt2", "modern", "moe"):
        tps, model = step_tokens_per_s(get_preset(name), args.batch, args.steps, dev)
        results[name] = tps
        print(f"{name:8s} {tps:10,.0f} tokens/s   params {model.num_params():>10,}   "
              f"active {model.num_active_params():>10,}   FLOPs/token {model.flops_per_token():>12,}")
    # modern's SwiGLU hidden 512 = moe's top-2 x 256: the same active parameters
    print(f"moe / modern (same active parameters): {results['moe'] / results['modern']:.2f}x  (target >= 0.85x)")

    header("MoE layer: grouped dispatch vs every expert on every token")
    cfg = get_preset("moe")
    moe = MoE(cfg).to(dev)
    x = torch.randn(args.batch, cfg.block_size, cfg.n_embd, device=dev, requires_grad=True)

    def grouped():
        y, _ = moe(x)
        y.sum().backward()

    def naive():
        naive_moe_forward(moe, x).sum().backward()

    with torch.no_grad():
        torch.testing.assert_close(moe(x)[0], naive_moe_forward(moe, x), atol=1e-5, rtol=1e-5)
    t_g, t_n = timeit(grouped, repeat=args.steps), timeit(naive, repeat=args.steps)
    print(f"grouped {t_g * 1e3:.1f} ms   naive {t_n * 1e3:.1f} ms   speedup {t_n / t_g:.2f}x "
          f"(top-{cfg.top_k} of {cfg.n_experts}: the naive loop does {cfg.n_experts / cfg.top_k:.0f}x the expert work)")


if __name__ == "__main__":
    main()
