"""F.scaled_dot_product_attention against written-out attention, forward + backward.

    python bench/attention.py [--T 128 512 1024] [--batch 4] [--repeat 5]

One attention layer of the demo model (n_embd 192, 4 heads of 48, RoPE), fp32 (bf16 on a GPU),
causal. The written-out version materialises the (B, nh, T, T) score matrix, masks it, takes a
softmax and multiplies by v, and autograd keeps that matrix for the backward pass: its time and
memory grow as T^2. SDPA's fused kernels (FlashAttention on CUDA, a blocked kernel on CPU) never
store it. Prints milliseconds per forward + backward and the ratio manual / sdpa per T, after
checking that both give the same output and gradients.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import device, header, timeit  # noqa: E402

from minigpt.attention import CausalSelfAttention  # noqa: E402
from minigpt.config import get_preset  # noqa: E402
from minigpt.rope import RotaryEmbedding  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, nargs="+", default=[128, 512, 1024], help="sequence lengths")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    dev = device()
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    header(f"attention layer forward + backward: written out vs SDPA ({dtype})")
    cfg = get_preset("demo", block_size=max(args.T))
    torch.manual_seed(0)
    manual = CausalSelfAttention(cfg).to(dev, dtype)
    sdpa = CausalSelfAttention(cfg.replace(attn_impl="sdpa")).to(dev, dtype)
    sdpa.load_state_dict(manual.state_dict())
    rope = RotaryEmbedding(cfg.head_dim, cfg.rope_base, max(args.T))
    print(f"demo attention: n_embd {cfg.n_embd}, {cfg.n_head} heads of {cfg.head_dim}, batch {args.batch}")
    print(f"{'T':>6}  {'manual':>10}  {'sdpa':>10}  {'manual/sdpa':>11}")
    for T in args.T:
        x = torch.randn(args.batch, T, cfg.n_embd, device=dev, dtype=dtype, requires_grad=True)
        cos, sin = rope(0, T, device=dev, dtype=dtype)

        def step(layer):
            x.grad = None
            layer.zero_grad(set_to_none=True)
            y = layer(x, cos, sin)
            y.float().pow(2).mean().backward()
            return y

        y1, g1 = step(manual), x.grad.clone()
        y2, g2 = step(sdpa), x.grad.clone()
        tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else dict(atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(y1, y2, **tol)
        torch.testing.assert_close(g1, g2, **tol)
        t_manual = timeit(lambda: step(manual), repeat=args.repeat)
        t_sdpa = timeit(lambda: step(sdpa), repeat=args.repeat)
        print(f"{T:>6}  {t_manual * 1e3:>8.1f}ms  {t_sdpa * 1e3:>8.1f}ms  {t_manual / t_sdpa:>10.2f}x")


if __name__ == "__main__":
    main()
