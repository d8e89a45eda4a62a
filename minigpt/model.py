"""The GPT model: vanilla GPT-2 by default, a modern decoder by GPTConfig switches.

Notable choices (what is special before you read the code):
- Pre-norm blocks: x + attn(norm(x)), then x + mlp(norm(x)); a final norm before the head.
- norm: LayerNorm (GPT-2) or RMSNorm in float32 (Llama).       -> norm.py, chapter 05
- positions: learned absolute embeddings (GPT-2) or RoPE.        -> rope.py, chapters 04, 11
- MLP: GELU 4d (GPT-2) or SwiGLU ~8d/3 (Llama), or a Mixture of SwiGLU experts.
                                                                 -> mlp.py, moe.py, chapters 06, 08
- attention: standard, QK-norm or soft-capped logits; MHA/GQA/MQA; written out or SDPA; KV cache.
                                                                 -> attention.py, kv_cache.py, chapters 07, 10
- GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 * n_layer).
- Weight tying (lm_head = token embedding) is a switch; tied parameters are counted once.

Parameter names follow the checkpoints they map to (q_proj/k_proj/v_proj/o_proj as in Llama,
c_fc/c_proj as in GPT-2, w1/w2/w3 as in Meta's Llama), so weight-copy tables stay short.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import CausalSelfAttention
from .config import GPTConfig
from .errors import ConfigError
from .i18n import tr
from .kv_cache import KVCache
from .mlp import make_mlp
from .moe import MoE
from .norm import make_norm
from .rope import RotaryEmbedding


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn_norm = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.mlp_norm = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.mlp = MoE(cfg) if cfg.n_experts else make_mlp(cfg)

    def forward(self, x, cos=None, sin=None, cache=None, layer: int = 0, attention_mask=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer, attention_mask)
        if isinstance(self.mlp, MoE):
            out, aux = self.mlp(self.mlp_norm(x))
            return x + out, aux
        return x + self.mlp(self.mlp_norm(x)), None


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == "learned" else None
        self.rope = (RotaryEmbedding(cfg.head_dim, cfg.rope_base, cfg.block_size, cfg.rope_scaling)
                     if cfg.pos == "rope" else None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg.norm, cfg.n_embd, cfg.norm_eps, cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), two per block
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "c_proj.weight", "w2.weight")):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))
        # the loss parts of the last forward with targets, as detached tensors: reading them as
        # numbers (`last_losses`) waits for the device, so the training loop does it at log intervals
        self.loss_parts: dict[str, torch.Tensor] = {}

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)

    # ------------------------------------------------------------------ forward
    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, cache: KVCache | None = None,
                attention_mask: torch.Tensor | None = None):
        """idx (B, T) token ids -> logits (B, T, vocab), loss (scalar or None).

        With a cache, idx holds only the new tokens; they sit at positions [cache.pos, cache.pos + T).

        attention_mask (B, S), as in transformers: 1/True for real tokens, 0/False for padding, over
        every position so far (S = cache.pos + T with a cache, T without). Each row then counts its own
        positions, mask.cumsum(-1) - 1 (clamped at 0: padding sits at 0), so a left-padded prompt gets
        the positions it would have alone; the last T of them are the new tokens'. Attention sees only
        real keys (`attention.padded_causal_mask`). The logits of padding positions mean nothing. (A MoE
        with a capacity limit still routes the padding tokens, which take expert slots.)
        Without it, the positions are [start, start + T) for every row, as before.
        """
        cfg = self.config
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        if self.pos_emb is not None and start + T > cfg.block_size:
            raise ConfigError(tr("sequence of {n} tokens is longer than block_size={b}, the most learned position "
                                 "embeddings can cover; crop the input to the last {b} tokens",
                                 "{n} トークンの系列は block_size={b}（学習した位置埋め込みが扱える最大長）より長いです。"
                                 "入力を末尾の {b} トークンに切り詰めてください", n=start + T, b=cfg.block_size))
        positions = None
        if attention_mask is not None:
            attention_mask = self._check_attention_mask(attention_mask, B, start + T).to(idx.device)
            positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)[:, -T:]  # (B, T): each row its own
        x = self.tok_emb(idx)  # (B, T, C)
        cos = sin = None
        if self.pos_emb is not None:
            if positions is None:
                x = x + self.pos_emb(torch.arange(start, start + T, device=idx.device))
            else:
                x = x + self.pos_emb(positions)  # (B, T, C)
        elif positions is None:
            cos, sin = self.rope(start, T, device=idx.device, dtype=x.dtype)  # (T, hd) each
        else:
            cos, sin = self.rope.at(positions, end=start + T, dtype=x.dtype)  # (B, 1, T, hd) each
        x = self.drop(x)
        aux_loss = z_loss = None
        n_moe = 0
        for i, block in enumerate(self.blocks):
            x, aux = block(x, cos, sin, cache, i, attention_mask)
            if aux is not None:  # MoE layers: average their auxiliary losses over layers
                n_moe += 1
                aux_loss = aux["aux_loss"] if aux_loss is None else aux_loss + aux["aux_loss"]
                z_loss = aux["z_loss"] if z_loss is None else z_loss + aux["z_loss"]
        if cache is not None:
            cache.pos += T
        x = self.norm_f(x)
        logits = self.lm_head(x)  # (B, T, vocab)

        loss = None
        parts: dict[str, torch.Tensor] = {}
        if targets is not None:
            ce = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
            loss = ce
            parts["ce"] = ce.detach()
            if n_moe:
                aux_loss, z_loss = aux_loss / n_moe, z_loss / n_moe
                loss = loss + cfg.aux_loss_coef * aux_loss + cfg.z_loss_coef * z_loss
                parts.update(aux=aux_loss.detach(), z=z_loss.detach())
        self.loss_parts = parts  # no .item() here: a host sync per forward, and a graph break
        return logits, loss

    @staticmethod
    def _check_attention_mask(mask, B: int, S: int) -> torch.Tensor:
        """The mask as given when it is a (B, S) bool or integer tensor; else a one-line ConfigError."""
        if not torch.is_tensor(mask) or mask.shape != (B, S) or mask.is_floating_point() or mask.is_complex():
            got = (f"{tuple(mask.shape)} {str(mask.dtype).removeprefix('torch.')}" if torch.is_tensor(mask)
                   else type(mask).__name__)
            raise ConfigError(tr("attention_mask must be a bool or integer tensor of shape (batch, cache.pos + T) = "
                                 "({b}, {s}), 1 for real tokens and 0 for padding over every position so far; got {g}",
                                 "attention_mask は形状 (バッチ, cache.pos + T) = ({b}, {s}) の bool か整数のテンソルにして"
                                 "ください (これまでのすべての位置について、本物のトークンは 1、パディングは 0)。渡されたのは "
                                 "{g} です", b=B, s=S, g=got))
        return mask

    @property
    def last_losses(self) -> dict[str, float]:
        """The loss parts of the last forward as Python floats: ce, and for MoE models aux and z
        (averaged over the MoE layers). Reading them waits for the device."""
        return {k: v.item() for k, v in self.loss_parts.items()}

    # ------------------------------------------------------------------ inference helpers
    def new_cache(self, batch_size: int = 1, max_len: int | None = None, dtype=None) -> KVCache:
        cfg = self.config
        p = self.tok_emb.weight
        return KVCache(cfg.n_layer, batch_size, cfg.kv_heads, max_len or cfg.block_size, cfg.head_dim,
                       device=p.device, dtype=dtype or p.dtype)

    # ------------------------------------------------------------------ accounting
    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters, each tensor counted once (tied weights once). non_embedding drops the
        token and position embedding tables (the head still counts when it is not tied)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
        return n

    def num_active_params(self, non_embedding: bool = False) -> int:
        """Parameters used per token: with MoE only top_k of n_experts experts run."""
        n = self.num_params(non_embedding)
        cfg = self.config
        if cfg.n_experts:
            per_expert = sum(p.numel() for p in self.blocks[0].mlp.experts[0].parameters())
            n -= cfg.n_layer * (cfg.n_experts - cfg.top_k) * per_expert
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward), PaLM's estimate:
        6 * active non-embedding parameters (+ the head when tied) + 12 * n_layer * n_embd * seq_len."""
        cfg = self.config
        T = seq_len or cfg.block_size
        n = self.num_active_params(non_embedding=True)
        if cfg.tie_weights:  # the head matmul still costs vocab * n_embd per token
            n += cfg.vocab_size * cfg.n_embd
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * T

    # ------------------------------------------------------------------ measurement (chapter 07)
    @torch.no_grad()
    def attention_stats(self, idx: torch.Tensor) -> list[dict]:
        """Per layer: attention entropy per head (nats) and the largest attention logit."""
        for block in self.blocks:
            block.attn.record_stats = True
        try:
            self(idx)
            return [block.attn.last_stats for block in self.blocks]
        finally:
            for block in self.blocks:
                block.attn.record_stats = False
