"""Training tokens/s of minigpt against a minimal plain-PyTorch GPT of the same shape, per preset.

    python bench/train_throughput.py [--rounds 12] [--batch 16] [--threads 2] [--attn sdpa]

For each preset (gpt2, modern, moe) at the shape of issue 12 (4 layers, 4 heads, width 128,
T=128, B=16, vocabulary 8000) it times one training step (forward + backward + AdamW) of
  - minigpt's GPT on its default training path (`--attn sdpa`, what `minigpt train` uses), and
  - `PlainGPT` below: one file, fused qkv projection, F.scaled_dot_product_attention, nothing else
    (for `modern` and `moe` the same RMSNorm + RoPE + SwiGLU maths written plainly; for `moe` a
    plain top-k loop over experts as most one-file MoEs are written),
interleaved A, B, A, B, ... so that load from other processes hits both alike, and prints the
median tokens/s of each and their ratio (target for gpt2 and modern: >= 1.0x on 2 CPU threads).
Then: MoE against the dense `modern` model with the same active parameters (target >= 0.85x,
from the same measurements) and the MoE layer's static-shape dispatch against running every
expert on every token. Only the ratios mean something; the absolute numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import device, header  # noqa: E402

from minigpt.config import get_preset  # noqa: E402
from minigpt.device import pick_device, synchronize  # noqa: E402
from minigpt.model import GPT  # noqa: E402
from minigpt.moe import MoE  # noqa: E402

SHAPE = dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=8000)


# ----------------------------------------------------------------------------- the plain GPT
class PlainRMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.weight * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class PlainMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, bias = cfg.hidden_dim, cfg.bias and cfg.mlp == "gelu"
        self.fc, self.proj = nn.Linear(cfg.n_embd, h, bias=bias), nn.Linear(h, cfg.n_embd, bias=bias)
        self.gate = nn.Linear(cfg.n_embd, h, bias=False) if cfg.mlp == "swiglu" else None

    def forward(self, x):
        if self.gate is not None:
            return self.proj(F.silu(self.gate(x)) * self.fc(x))
        return self.proj(F.gelu(self.fc(x), approximate="tanh"))


class PlainMoE(nn.Module):
    """Top-k routing, then a loop over experts with torch.where: the usual one-file MoE."""

    def __init__(self, cfg):
        super().__init__()
        self.k = cfg.top_k
        self.router = nn.Linear(cfg.n_embd, cfg.n_experts, bias=False)
        self.experts = nn.ModuleList(PlainMLP(cfg) for _ in range(cfg.n_experts))

    def forward(self, x):
        xf = x.view(-1, x.shape[-1])
        logits = self.router(xf)
        probs = F.softmax(logits.float(), dim=-1)
        w, idx = probs.topk(self.k, dim=-1)
        w = (w / w.sum(-1, keepdim=True)).to(x.dtype)
        y = torch.zeros_like(xf)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(idx == e)
            y.index_add_(0, token, expert(xf[token]) * w[token, slot, None])
        # the same two auxiliary losses minigpt adds
        f = torch.zeros(probs.shape[1], device=x.device).scatter_add_(0, idx.flatten(), torch.ones(idx.numel(), device=x.device))
        aux = probs.shape[1] * (f / xf.shape[0] * probs.mean(0)).sum()
        z = torch.logsumexp(logits.float(), -1).pow(2).mean()
        return y.view_as(x), aux, z


class PlainBlock(nn.Module):
    def __init__(self, cfg, rope):
        super().__init__()
        C, self.nh = cfg.n_embd, cfg.n_head
        norm = (lambda: nn.LayerNorm(C)) if cfg.norm == "layernorm" else (lambda: PlainRMSNorm(C))
        self.ln1, self.ln2 = norm(), norm()
        self.qkv = nn.Linear(C, 3 * C, bias=cfg.bias)  # fused q, k, v
        self.proj = nn.Linear(C, C, bias=cfg.bias)
        self.mlp = PlainMoE(cfg) if cfg.n_experts else PlainMLP(cfg)
        self.rope = rope

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.nh, C // self.nh).permute(2, 0, 3, 1, 4)
        if self.rope:
            q = q * cos + torch.cat((-q[..., q.shape[-1] // 2:], q[..., :q.shape[-1] // 2]), -1) * sin
            k = k * cos + torch.cat((-k[..., k.shape[-1] // 2:], k[..., :k.shape[-1] // 2]), -1) * sin
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        out = self.mlp(self.ln2(x))
        if isinstance(out, tuple):
            return x + out[0], out[1], out[2]
        return x + out, None, None


class PlainGPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg, rope = cfg, cfg.pos == "rope"
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = None if rope else nn.Embedding(cfg.block_size, cfg.n_embd)
        self.blocks = nn.ModuleList(PlainBlock(cfg, rope) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd) if cfg.norm == "layernorm" else PlainRMSNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.head.weight = self.wte.weight
        for name, p in self.named_parameters():  # GPT-2's initialisation, as minigpt (and nanoGPT) use
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * cfg.n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        hd = cfg.n_embd // cfg.n_head
        inv = 1.0 / (cfg.rope_base ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.outer(torch.arange(cfg.block_size).float(), inv)
        self.register_buffer("cos", torch.cat((ang, ang), -1).cos(), persistent=False)
        self.register_buffer("sin", torch.cat((ang, ang), -1).sin(), persistent=False)

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(T, device=idx.device))
        aux = z = 0.0
        for block in self.blocks:
            x, a, zz = block(x, self.cos[:T], self.sin[:T])
            if a is not None:
                aux, z = aux + a / len(self.blocks), z + zz / len(self.blocks)
        logits = self.head(self.ln_f(x))
        loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        if self.cfg.n_experts:
            loss = loss + self.cfg.aux_loss_coef * aux + self.cfg.z_loss_coef * z
        return logits, loss


# ----------------------------------------------------------------------------- timing
def training_step(model, cfg, batch, dev):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    idx = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1), device=dev,
                        generator=torch.Generator(dev).manual_seed(0))

    def step():
        _, loss = model(idx[:, :-1], idx[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def interleaved(steps: dict, rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds of each call of each step, timed in turns A, B, A, B, ... so that load from other
    processes falls on all of them alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            synchronize(pick_device())
            t0 = time.perf_counter()
            step()
            synchronize(pick_device())
            times[name].append(time.perf_counter() - t0)
    return times


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
    ap.add_argument("--rounds", type=int, default=12, help="timed steps per model (after 2 warm-up steps)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (ignored on a GPU)")
    ap.add_argument("--attn", choices=("sdpa", "manual"), default="sdpa", help="minigpt's attention path")
    ap.add_argument("--presets", nargs="+", default=["gpt2", "modern", "moe"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = device()
    header(f"training tokens/s, minigpt (attn={args.attn}) vs a plain one-file GPT, interleaved")
    print(f"shape: {SHAPE}, batch {args.batch}, {args.rounds} interleaved rounds; the machine may be shared: "
          f"compare the ratios")
    tps = {}
    for name in args.presets:
        cfg = get_preset(name, **SHAPE, attn_impl=args.attn)
        torch.manual_seed(0)
        ours = GPT(cfg).to(dev).train()
        torch.manual_seed(0)
        plain = PlainGPT(cfg).to(dev).train()
        times = interleaved({"minigpt": training_step(ours, cfg, args.batch, dev),
                             "plain": training_step(plain, cfg, args.batch, dev)}, args.rounds)
        tok = args.batch * cfg.block_size
        tps[name] = {k: tok / statistics.median(t) for k, t in times.items()}
        best = {k: tok / min(t) for k, t in times.items()}  # the steps least disturbed by other processes
        target = "  (target >= 1.0x)" if name in ("gpt2", "modern") else ""
        print(f"{name:7s} minigpt {tps[name]['minigpt']:8,.0f} tokens/s   plain {tps[name]['plain']:8,.0f} tokens/s   "
              f"ratio {tps[name]['minigpt'] / tps[name]['plain']:.2f}x (medians; fastest steps: "
              f"{best['minigpt'] / best['plain']:.2f}x){target}   "
              f"(params {ours.num_params():,} and {sum(p.numel() for p in plain.parameters()):,})")
    if "moe" in tps and "modern" in tps:
        # modern's SwiGLU hidden 512 = moe's top-2 x 256: the same active parameters
        print(f"moe / modern (same active parameters): {tps['moe']['minigpt'] / tps['modern']['minigpt']:.2f}x  "
              f"(target >= 0.85x)")

    header("MoE layer: static-shape dispatch vs every expert on every token (forward + backward)")
    cfg = get_preset("moe", **SHAPE)
    moe = MoE(cfg).to(dev)
    x = torch.randn(args.batch, cfg.block_size, cfg.n_embd, device=dev, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(moe(x)[0], naive_moe_forward(moe, x), atol=1e-5, rtol=1e-5)
    times = interleaved({"grouped": lambda: moe(x)[0].square().sum().backward(),
                         "naive": lambda: naive_moe_forward(moe, x).square().sum().backward()}, args.rounds)
    sec = {k: statistics.median(t) for k, t in times.items()}
    print(f"grouped {sec['grouped'] * 1e3:.1f} ms   naive {sec['naive'] * 1e3:.1f} ms   speedup "
          f"{sec['naive'] / sec['grouped']:.2f}x (top-{cfg.top_k} of {cfg.n_experts}: the naive loop does "
          f"{cfg.n_experts / cfg.top_k:.0f}x the expert work)")


if __name__ == "__main__":
    main()
