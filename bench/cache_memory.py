"""KV cache memory per token: multi-head (MHA) vs grouped-query (GQA) vs multi-query (MQA) attention.

    python bench/cache_memory.py [--context 4096]

Every token of context keeps, in every layer, one key and one value vector per *kv* head:
    bytes/token = 2 (k, v) x n_layer x n_kv_head x head_dim x bytes per value
GQA lets groups of query heads share a kv head, so the cache shrinks by n_head / n_kv_head; MQA
(one kv head) by n_head. For the course's demo model the numbers are *measured* from a KVCache
that the model allocates (and checked against the formula); for Llama-2-7B (32 layers, 32 heads
of 128) and Llama-3-8B (the same, but 8 kv heads) they are computed with the same formula.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import header  # noqa: E402

from minigpt.config import get_preset  # noqa: E402
from minigpt.kv_cache import cache_bytes_per_token  # noqa: E402
from minigpt.model import GPT  # noqa: E402


def measured_bytes_per_token(n_kv_head: int, dtype: torch.dtype, max_len: int = 128) -> int:
    """Allocate the demo model's cache and divide its bytes by the positions it holds."""
    model = GPT(get_preset("demo", n_kv_head=n_kv_head))
    cache = model.new_cache(batch_size=1, max_len=max_len, dtype=dtype)
    total = cache.k.numel() * cache.k.element_size() + cache.v.numel() * cache.v.element_size()
    return total // max_len


def human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:,.0f} {unit}" if unit == "B" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--context", type=int, default=4096, help="context length for the per-sequence column")
    args = ap.parse_args()
    header("KV cache bytes per token: MHA vs GQA vs MQA")
    demo = get_preset("demo")
    rows = []  # (model, attention, n_layer, n_head, n_kv, head_dim, fp16 bytes, fp32 bytes, how)
    for kv, kind in ((demo.n_head, "MHA"), (2, "GQA"), (1, "MQA")):
        b16, b32 = measured_bytes_per_token(kv, torch.bfloat16), measured_bytes_per_token(kv, torch.float32)
        assert b16 == cache_bytes_per_token(demo.n_layer, kv, demo.head_dim, 2), "measured != formula"
        assert b32 == cache_bytes_per_token(demo.n_layer, kv, demo.head_dim, 4), "measured != formula"
        rows.append(("minigpt demo", kind, demo.n_layer, demo.n_head, kv, demo.head_dim, b16, b32, "measured"))
    for name, kv, kind in (("Llama-2-7B", 32, "MHA"), ("Llama-3-8B", 8, "GQA"), ("Llama-2-7B as MQA", 1, "MQA")):
        rows.append((name, kind, 32, 32, kv, 128, cache_bytes_per_token(32, kv, 128, 2),
                     cache_bytes_per_token(32, kv, 128, 4), "computed"))

    print(f"{'model':<18} {'attn':<4} {'layers':>6} {'heads':>5} {'kv':>3} {'hd':>4}  "
          f"{'bytes/token fp16/bf16':>21} {'fp32':>9}  {'vs MHA':>6}  "
          f"{f'bf16, {args.context} tokens':>18}  how")
    mha = {}
    for name, kind, L, nh, kv, hd, b16, b32, how in rows:
        family = "demo" if name.startswith("minigpt") else "llama"
        mha.setdefault(family, b16)
        print(f"{name:<18} {kind:<4} {L:>6} {nh:>5} {kv:>3} {hd:>4}  {b16:>21,} {b32:>9,}  "
              f"{b16 / mha[family]:>6.3f}  {human(b16 * args.context):>18}  {how}")
    print(f"Llama-2-7B at {args.context} tokens, batch 32: "
          f"{human(32 * args.context * cache_bytes_per_token(32, 32, 128, 2))} of KV cache in fp16 "
          f"(the weights are 12.6 GiB); with Llama-3-8B's GQA: "
          f"{human(32 * args.context * cache_bytes_per_token(32, 8, 128, 2))}")


if __name__ == "__main__":
    main()
