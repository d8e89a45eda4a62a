"""Chapter 08 (Mixture-of-Experts): the router, the load-balancing loss, the router z-loss and the
MoE layer with grouped dispatch.

The references are minigpt.moe's own functions and module (`route_tokens`, `load_balancing_loss`,
`router_z_loss`, `MoE`). The notebook's MoE has no capacity limit; the cases leave it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from minigpt import moe
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig


# ----------------------------------------------------------------------------- the router
def route_in_input_dtype(x, router_weight, top_k, gating="mixtral"):
    """Router matmul and softmax in x's dtype (bf16 here): small logit differences get rounded away."""
    logits = F.linear(x, router_weight.to(x.dtype))
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits.float(), probs.float(), weights.float(), index


def route_always_renormalised(x, router_weight, top_k, gating="mixtral"):
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    return logits, probs, weights / weights.sum(dim=-1, keepdim=True), index


def route_never_renormalised(x, router_weight, top_k, gating="mixtral"):
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=-1)
    weights, index = probs.topk(top_k, dim=-1)
    return logits, probs, weights, index


def route_softmax_over_tokens(x, router_weight, top_k, gating="mixtral"):
    """Softmax over dim 0 (the tokens) instead of over the experts."""
    logits = F.linear(x.float(), router_weight.float())
    probs = F.softmax(logits, dim=0)
    weights, index = probs.topk(top_k, dim=-1)
    if gating == "mixtral":
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return logits, probs, weights, index


def route_top_k_of_logits_then_softmax(x, router_weight, top_k, gating="mixtral"):
    """Softmax over the k best logits only: for "switch" that renormalises, which switch must not do."""
    logits = F.linear(x.float(), router_weight.float())
    top, index = logits.topk(top_k, dim=-1)
    return logits, F.softmax(logits, dim=-1), F.softmax(top, dim=-1), index


@exercise("ch08.route_tokens", reference=moe.route_tokens, output_names=("logits", "probs", "weights", "index"),
          wrong=[route_in_input_dtype, route_always_renormalised, route_never_renormalised,
                 route_softmax_over_tokens, route_top_k_of_logits_then_softmax],
          hint="logits = x.float() @ router_weight.float().T (float32 whatever x's dtype); probs = softmax over the "
               "experts (dim -1); weights, index = probs.topk(k); 'mixtral' divides the k weights by their sum, "
               "'switch' keeps them as they are.")
def _route_cases():
    g = torch.Generator().manual_seed(80)
    for n_tokens, C, N, k, gating in [(6, 8, 4, 2, "mixtral"), (10, 16, 8, 2, "switch"), (5, 8, 4, 1, "switch"),
                                      (7, 16, 8, 3, "mixtral")]:
        x, w = torch.randn(n_tokens, C, generator=g), torch.randn(N, C, generator=g)
        yield Case(args=(x, w, k, gating), name=f"{n_tokens} tokens of width {C}, {N} experts, top_k={k}, {gating!r}")
    x, w = torch.randn(64, 64, generator=g).bfloat16(), torch.randn(8, 64, generator=g).bfloat16() * 0.05
    yield Case(args=(x, w, 2, "mixtral"),
               name="bfloat16 x and router weight: 64 tokens of width 64, 8 experts, top_k=2")


# ----------------------------------------------------------------------------- load-balancing loss
def lb_loss_first_choice_only(router_probs, expert_index, n_experts):
    """Counts only each token's first choice: f sums to 1, and perfect balance gives 1 instead of top_k."""
    counts = torch.bincount(expert_index[:, 0], minlength=n_experts).to(router_probs.dtype)
    return n_experts * (counts / router_probs.shape[0] * router_probs.mean(0)).sum()


def lb_loss_f_over_assignments(router_probs, expert_index, n_experts):
    """Divides the counts by tokens * k (f sums to 1): perfect balance then gives 1, not top_k."""
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    return n_experts * (counts / expert_index.numel() * router_probs.mean(0)).sum()


def lb_loss_without_n(router_probs, expert_index, n_experts):
    counts = torch.bincount(expert_index.flatten(), minlength=n_experts).to(router_probs.dtype)
    return (counts / router_probs.shape[0] * router_probs.mean(0)).sum()


def lb_loss_probs_squared(router_probs, expert_index, n_experts):
    """N * sum P_i^2: differentiable, but it ignores where the tokens actually went."""
    return n_experts * router_probs.mean(0).pow(2).sum()


def _balanced_index(n_tokens, n_experts, k):
    return (torch.arange(n_tokens * k) % n_experts).view(n_tokens, k)


@exercise("ch08.load_balancing_loss", reference=moe.load_balancing_loss,
          wrong=[lb_loss_first_choice_only, lb_loss_f_over_assignments, lb_loss_without_n, lb_loss_probs_squared],
          hint="f_i = (assignments to expert i, all k choices of every token) / tokens (so f sums to k); "
               "P_i = mean router probability of expert i over the tokens; loss = N * sum_i f_i * P_i.")
def _lb_cases():
    g = torch.Generator().manual_seed(81)
    for n_tokens, N, k in [(12, 4, 2), (20, 8, 2), (9, 3, 1)]:
        probs = torch.softmax(torch.randn(n_tokens, N, generator=g) * 2, dim=-1)
        yield Case(args=(probs, probs.topk(k, dim=-1).indices, N),
                   name=f"{n_tokens} tokens, {N} experts, top_k={k}, the index of the top-k probabilities")
    yield Case(args=(torch.full((8, 4), 0.25), _balanced_index(8, 4, 2), 4),
               name="perfect balance: uniform probabilities, every expert gets 4 of 16 assignments (top_k=2)")
    probs = torch.softmax(torch.randn(10, 4, generator=g), dim=-1)
    yield Case(args=(probs, torch.tensor([[0, 1]] * 10), 4), name="collapse: all 10 tokens go to experts 0 and 1")


# ----------------------------------------------------------------------------- router z-loss
def z_loss_not_squared(router_logits):
    return torch.logsumexp(router_logits.float(), dim=-1).mean()


def z_loss_summed(router_logits):
    return torch.logsumexp(router_logits.float(), dim=-1).pow(2).sum()


def z_loss_max_logit(router_logits):
    """The largest logit squared: close to logsumexp when one expert dominates, not otherwise."""
    return router_logits.float().max(dim=-1).values.pow(2).mean()


def z_loss_mean_square_logits(router_logits):
    return router_logits.float().pow(2).mean()


@exercise("ch08.router_z_loss", reference=moe.router_z_loss,
          wrong=[z_loss_not_squared, z_loss_summed, z_loss_max_logit, z_loss_mean_square_logits],
          hint="torch.logsumexp(logits, dim=-1) per token (over the experts), squared, then the mean over tokens.")
def _z_cases():
    g = torch.Generator().manual_seed(82)
    yield Case(args=(torch.randn(6, 4, generator=g),), name="router logits of 6 tokens, 4 experts")
    yield Case(args=(torch.randn(32, 8, generator=g) * 5 + 2,),
               name="large router logits (std 5, mean 2), 32 tokens, 8 experts")
    yield Case(args=(torch.randn(5, 8, generator=g).bfloat16() * 3,), name="bfloat16 logits: the loss is float32")


# ----------------------------------------------------------------------------- the MoE layer
class _WrongMoE(moe.MoE):
    def _loop(self, x, combine="add", use_weights=True, only_first=False):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = self.route(xf)
        if only_first:
            index, weights = index[:, :1], torch.ones_like(weights[:, :1])
        y = torch.zeros_like(xf)
        for e in range(self.n_experts):
            token, slot = (index == e).nonzero(as_tuple=True)
            if len(token) == 0:
                continue
            out = self.experts[e](xf[token])
            if use_weights:
                out = out * weights[token, slot, None].to(x.dtype)
            if combine == "add":
                y.index_add_(0, token, out)
            else:  # overwrite
                y[token] = out
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return y.view(B, T, C), aux


class MoEOverwritesInsteadOfAdding(_WrongMoE):
    """y[tokens] = out: a token's second expert replaces its first instead of adding to it."""

    def forward(self, x):
        return self._loop(x, combine="overwrite")


class MoEWithoutGateWeights(_WrongMoE):
    def forward(self, x):
        return self._loop(x, use_weights=False)


class MoEFirstChoiceOnly(_WrongMoE):
    """Sends each token to its best expert only (weight 1), whatever top_k says."""

    def forward(self, x):
        return self._loop(x, only_first=True)


class MoEDenseMixture(moe.MoE):
    """Runs every expert on every token and mixes all N outputs by the router probabilities."""

    def forward(self, x):
        B, T, C = x.shape
        xf = x.reshape(-1, C)
        logits, probs, weights, index = self.route(xf)
        y = sum(probs[:, e, None].to(x.dtype) * self.experts[e](xf) for e in range(self.n_experts))
        aux = {"aux_loss": moe.load_balancing_loss(probs, index, self.n_experts), "z_loss": moe.router_z_loss(logits)}
        return y.view(B, T, C), aux


class MoEAuxLossOnGateWeights(_WrongMoE):
    """Gives load_balancing_loss the k gate weights instead of the router probabilities of all experts."""

    def forward(self, x):
        y, aux = self._loop(x)
        B, T, C = x.shape
        logits, probs, weights, index = self.route(x.reshape(-1, C))
        dense = torch.zeros_like(probs).scatter(1, index, weights)
        aux["aux_loss"] = moe.load_balancing_loss(dense, index, self.n_experts)
        return y, aux


def _moe_cfg(n_embd: int, n_experts: int, top_k: int, gating: str) -> GPTConfig:
    return GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=2, n_embd=n_embd, bias=False, norm="rmsnorm",
                     mlp="swiglu", mlp_hidden=2 * n_embd, n_experts=n_experts, top_k=top_k, moe_gating=gating)


@exercise("ch08.MoE", reference=moe.MoE, kind="module", output_names=("y", "aux"),
          wrong=[MoEOverwritesInsteadOfAdding, MoEWithoutGateWeights, MoEFirstChoiceOnly, MoEDenseMixture,
                 MoEAuxLossOnGateWeights],
          hint="route the (tokens, C) rows; for each expert e, take the (token, choice) pairs that chose e, run the "
               "expert once on those tokens, multiply by their gate weights and ADD into y (index_add_); "
               "aux = {'aux_loss': load_balancing_loss(probs, index, N), 'z_loss': router_z_loss(logits)}.")
def _moe_cases():
    g = torch.Generator().manual_seed(83)
    for n_embd, N, k, gating, shape in [(16, 4, 2, "mixtral", (2, 5)), (32, 8, 2, "switch", (1, 9)),
                                        (16, 4, 1, "switch", (3, 4)), (16, 6, 3, "mixtral", (2, 6))]:
        cfg = _moe_cfg(n_embd, N, k, gating)
        yield Case(init=(cfg,), args=(torch.randn(*shape, n_embd, generator=g),),
                   name=f"n_embd={n_embd}, {N} experts, top_k={k}, {gating!r}, x of shape {(*shape, n_embd)}")
