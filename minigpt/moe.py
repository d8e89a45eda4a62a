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
  its tokens, never a loop over tokens. Chapter 08 writes it as a loop over experts; that loop
  needs each expert's token count on the host (`.tolist()`: a GPU sync per layer) and gives
  torch.compile a graph per data-dependent shape. `grouped_experts` computes the same thing with
  shapes that depend only on the number of tokens: the sorted assignments are laid out in blocks
  of `block` rows, each block belonging to one expert (its last block padded with zero rows), and
  one batched matmul runs all the blocks. No host sync, one graph, at most N*(block-1) padded rows.
- Capacity (optional): each expert takes at most ceil(capacity_factor * tokens * k / N)
  assignments, in token order; the rest are dropped (the residual connection carries the token).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .mlp import SwiGLU


def expert_counts(expert_index: torch.Tensor, n_experts: int) -> torch.Tensor:
    """How many assignments each expert received: (n_experts,) int64. Like torch.bincount, whose
    output length depends on the largest value (a GPU sync), but with a fixed length.

    >>> expert_counts(torch.tensor([[0, 2], [2, 3]]), 4)
    tensor([1, 0, 2, 1])
    """
    flat = expert_index.flatten()
    return torch.zeros(n_experts, dtype=torch.int64, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))


def load_balancing_loss(router_probs: torch.Tensor, expert_index: torch.Tensor, n_experts: int) -> torch.Tensor:
    """N * sum_i f_i * P_i.  router_probs (tokens, N) float32; expert_index (tokens, k).

    >>> probs = torch.full((4, 4), 0.25); idx = torch.tensor([[0, 1], [2, 3], [0, 1], [2, 3]])
    >>> load_balancing_loss(probs, idx, 4)   # perfectly balanced top-2: the loss is top_k
    tensor(2.)
    """
    tokens = router_probs.shape[0]
    counts = expert_counts(expert_index, n_experts).to(router_probs.dtype)
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


def dispatch_block_size(n_assignments: int, n_experts: int) -> int:
    """Rows per block of `grouped_experts`: about a quarter of an expert's mean share of the
    assignments, a multiple of 8 once above 8. Padding adds at most N*(block-1) rows, a quarter of the
    work when every expert is used; fewer, larger blocks mean fewer expert weights to gather.
    Depends only on the shapes, so a compiled graph stays valid for every routing."""
    b = max(1, n_assignments // (4 * n_experts))
    return b if b <= 8 else 8 * (b // 8)


def grouped_experts(xf: torch.Tensor, weights: torch.Tensor, index: torch.Tensor, w1: torch.Tensor,
                    w3: torch.Tensor, w2: torch.Tensor, capacity: int | None = None, dropout: float = 0.0,
                    training: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sum over each token's k choices of weight * SwiGLU_e(x), without host syncs.

    xf (tokens, C); weights, index (tokens, k) from the router; w1, w3 (N, H, C) and w2 (N, C, H)
    the stacked expert weights. Returns y (tokens, C) and the kept assignments per expert (N,).

    Every tensor's shape depends only on (tokens, k, N): the assignments are sorted by expert
    (stable: token order within an expert), expert e's rows fill blocks_e = ceil(kept_e / block)
    consecutive blocks of `block` rows, and the at most (tokens*k + N*(block-1)) / block blocks
    run as one batched matmul with the weights of their expert. Padding rows read a zero row and
    have gate weight 0. Each token's k outputs are added in expert order (as Mixtral's loop does).
    """
    n_tokens, C = xf.shape
    k, N = index.shape[1], w1.shape[0]
    M = n_tokens * k
    flat_expert = index.flatten()  # (M,): row t*k + j is token t's j-th choice
    order = torch.argsort(flat_expert, stable=True)  # assignments grouped by expert, in token order
    sorted_expert = flat_expert[order]
    counts = expert_counts(flat_expert, N)
    kept = counts if capacity is None else counts.clamp(max=capacity)
    rank = torch.arange(M, device=xf.device) - (counts.cumsum(0) - counts)[sorted_expert]  # place within its expert
    most = M if capacity is None else min(M, N * capacity)  # assignments that can be kept
    block = dispatch_block_size(most, N)
    n_blocks = (most + N * (block - 1)) // block  # sum_e ceil(kept_e / block) is never more
    blocks_per_expert = (kept + block - 1) // block
    block_end = blocks_per_expert.cumsum(0)
    first_slot = (block_end - blocks_per_expert) * block  # where expert e's rows start
    slot = first_slot[sorted_expert] + rank  # (M,) the padded row of each assignment
    n_slots = n_blocks * block
    if capacity is not None:  # assignments beyond an expert's capacity go to a discarded slot
        slot = torch.where(rank < capacity, slot, n_slots)
    slot_token = torch.full((n_slots + 1,), n_tokens, dtype=torch.long, device=xf.device)
    slot_token = slot_token.scatter(0, slot, order // k)[:n_slots]  # token n_tokens: the zero row
    slot_weight = torch.zeros(n_slots + 1, dtype=weights.dtype, device=xf.device)
    slot_weight = slot_weight.scatter(0, slot, weights.flatten()[order])[:n_slots]
    # the expert of each block; blocks past the last used one are all padding (any expert will do)
    block_expert = torch.searchsorted(block_end, torch.arange(n_blocks, device=xf.device), right=True).clamp(max=N - 1)

    # index_select rather than w[idx]: its backward is an index_add_, much faster on CPU than index_put_
    xz = torch.cat([xf, xf.new_zeros(1, C)]).index_select(0, slot_token).view(n_blocks, block, C)
    w1b, w3b, w2b = (w.index_select(0, block_expert).transpose(1, 2) for w in (w1, w3, w2))
    h = F.silu(torch.bmm(xz, w1b)) * torch.bmm(xz, w3b)
    out = torch.bmm(h, w2b).view(n_slots, C)
    out = F.dropout(out, dropout, training) * slot_weight[:, None].to(xf.dtype)
    y = xf.new_zeros(n_tokens + 1, C).index_add_(0, slot_token, out)[:n_tokens]
    return y, kept


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_experts, self.top_k = cfg.n_experts, cfg.top_k
        self.gating, self.capacity_factor = cfg.moe_gating, cfg.capacity_factor
        self.dropout = cfg.dropout
        self.router = nn.Linear(cfg.n_embd, cfg.n_experts, bias=False)  # Mixtral: `gate`
        self.experts = nn.ModuleList(SwiGLU(cfg.n_embd, cfg.hidden_dim, cfg.dropout) for _ in range(cfg.n_experts))
        self._stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def route(self, x: torch.Tensor):
        """x (tokens, C) -> logits (tokens, N) f32, probs (tokens, N), weights (tokens, k), index (tokens, k)."""
        return route_tokens(x, self.router.weight, self.top_k, self.gating)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        B, T, C = x.shape
        xf = x.reshape(-1, C)  # (tokens, C)
        n_tokens = xf.shape[0]
        logits, probs, weights, index = self.route(xf)
        capacity = None
        if self.capacity_factor is not None:
            capacity = math.ceil(self.capacity_factor * n_tokens * self.top_k / self.n_experts)
        stack = lambda name: torch.stack([getattr(e, name).weight for e in self.experts])  # noqa: E731
        y, kept = grouped_experts(xf, weights, index, stack("w1"), stack("w3"), stack("w2"), capacity,
                                  self.dropout, self.training)
        aux = {
            "aux_loss": load_balancing_loss(probs, index, self.n_experts),
            "z_loss": router_z_loss(logits),
        }
        self._stats = (expert_counts(index, self.n_experts), kept, index.detach())  # read lazily: no sync here
        return y.view(B, T, C), aux

    @property
    def last_stats(self) -> dict | None:
        """Routing of the last forward, on the CPU: tokens_per_expert (N,), dropped_share (float),
        expert_index (tokens, k). Reading it copies to the host (a GPU sync); the forward never does."""
        if self._stats is None:
            return None
        counts, kept, index = self._stats
        return {
            "tokens_per_expert": counts.cpu(),
            "dropped_share": ((counts - kept).sum().float() / index.numel()).item(),
            "expert_index": index.cpu(),
        }
