"""Mixture-of-Experts feed-forward layer (chapter 08).

A router scores every token against n_experts SwiGLU experts; each token is processed by its
top_k experts and their outputs are mixed by the gate weights. Parameters grow with n_experts,
compute per token only with top_k.

- Router math runs in float32 (small logit differences decide the routing; bf16 flips choices).
- Gating conventions: "mixtral" renormalises the top-k probabilities to sum to 1; "switch" keeps
  the raw softmax probabilities (Switch Transformer, and Mixtral's `norm_topk_prob=False` variants).
- Load-balancing loss N * sum_i f_i * P_i, where f_i is the fraction of tokens sent to expert i
  (counting all k assignments) and P_i the mean router probability of expert i. Perfect balance
  gives top_k; total collapse onto k experts gives up to N.
- Router z-loss mean(logsumexp(logits)^2) keeps router logits small (ST-MoE).
- Dispatch groups the (token, expert) assignments by expert and runs each expert once on all of
  its tokens: a loop over experts, never over tokens.
- Capacity (optional): each expert takes at most ceil(capacity_factor * tokens * k / N)
  assignments, in token order; the rest are dropped (the residual connection carries the token).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mlp import SwiGLU


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor, n_experts: int) -> torch.Tensor:
    """N * sum_i f_i * P_i.  router_probs (tokens, N) float32; expert_index (tokens, k).

    >>> probs = torch.full((4, 4), 0.25); idx = torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])
    >>> load_balancing_loss(probs, idx, 4)   # perfectly balanced top-2: the loss is top_k
    tensor(2.)
    """
    tokens = router_probs.shape[0]
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    f = counts / tokens  # fraction of tokens per expert, all k assignments counted: sums to k
    P = router_probs.mean(dim=0)  # mean router probability per expert: sums to 1
    return n_experts * (f * P).sum()


def router_z_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """mean over tokens of logsumexp(logits)^2."""
    return torch.logsumexp(router_logits.float(), dim=-1).pow(2).mean()


def route_tokens(x: torch.Tensor, router_weight: torch.Tensor, top_k: int, gating: str = "mixtral"):
    """The router: x (tokens, C), router_weight (N, C) -> logits (tokens, N) float32, probs (tokens, N),
    gate weights (tokens, k) and expert index (tokens, k), the k best experts first.

    >>> w = torch.eye(3)          # 3 experts; each scores one channel of x
    >>> _, probs, weights, index = route_tokens(torch.tensor([[2.0, 1.0, 0.0]]), w, top_k=2)
    >>> index.tolist(), round(weights.sum().item(), 4)   # "mixtral": the k weights sum to 1
    ([[0, 1]], 1.0)
    """
    logits = F.linear(x.float(), router_weight.float())  # router in float32, whatever x's dtype
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.top_k
        self.gating, self.capacity_factor = cfg.moe_gating, cfg.capacity_factor
        self.router = nn.Linear(cfg.n_embd, cfg.n_experts, bias=False)  # Mixtral: `gate`
        self.experts = nn.ModuleList(SwiGLU(cfg.n_embd, cfg.hidden_dim, cfg.dropout) for _ in range(cfg.n_experts))
        self.last_stats: dict | None = None

    def route(self, x: torch.Tensor):
        """x (tokens, C) -> logits (tokens, N) f32, probs (tokens, N), weights (tokens, k), index (tokens, k)."""
        return route_tokens(x, self.router.weight, self.top_k, self.gating)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        B, T, C = x.shape
        xf = x.reshape(-1, C)  # (tokens, C)
        n_tokens = xf.shape[0]
        logits, probs, weights, index = self.route(xf)

        # one row per (token, choice) assignment, grouped by expert with a stable sort
        flat_expert = index.flatten()  # (tokens * k,)
        flat_token = torch.arange(n_tokens, device=x.device).repeat_interleave(self.top_k)
        flat_weight = weights.flatten()
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=self.n_experts)
        kept = counts
        if self.capacity_factor is not None:
            capacity = math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts)
            kept = counts.clamp(max=capacity)

        y = torch.zeros_like(xf)
        start = 0
        for e, (n, n_kept) in enumerate(zip(counts.tolist(), kept.tolist())):
            rows = order[start:start + n_kept]  # the first n_kept assignments in token order
            start += n
            if n_kept == 0:
                continue
            tokens = flat_token[rows]
            out = self.experts[e](xf[tokens]) * flat_weight[rows, None].to(x.dtype)
            y.index_add_(0, tokens, out)

        dropped = (counts - kept).sum()
        aux = {
            "aux_loss": load_balancing_loss(probs, index, self.n_experts),
            "z_loss": router_z_loss(logits),
        }
        self.last_stats = {
            "tokens_per_expert": counts.detach().cpu(),
            "dropped_share": (dropped.float() / (n_tokens * self.top_k)).item(),
            "expert_index": index.detach().cpu(),
        }
        return y.view(B, T, C), aux
