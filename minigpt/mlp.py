"""Feed-forward networks (chapter 06): GPT-2's GELU MLP and the SwiGLU MLP of Llama.

GELU MLP:   c_proj(gelu(c_fc x)), hidden 4d, biases (GPT-2's names c_fc/c_proj).
SwiGLU MLP: w2(silu(w1 x) * w3 x), hidden ~8d/3, no biases. Meta's names; in transformers'
            Llama w1 = gate_proj, w3 = up_proj, w2 = down_proj.
Both have about 8d^2 parameters, so swapping one for the other keeps the budget.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GeluMLP(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, C) -> (B, T, H) -> (B, T, C); GPT-2 uses the tanh approximation of GELU
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * w3 x): a gate (w1) decides how much of each up-projected unit (w3) passes."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)  # gate_proj
        self.w3 = nn.Linear(dim, hidden, bias=False)  # up_proj
        self.w2 = nn.Linear(hidden, dim, bias=False)  # down_proj
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


def make_mlp(cfg) -> nn.Module:
    if cfg.mlp == "gelu":
        return GeluMLP(cfg.n_embd, cfg.hidden_dim, cfg.bias, cfg.dropout)
    return SwiGLU(cfg.n_embd, cfg.hidden_dim, cfg.dropout)
