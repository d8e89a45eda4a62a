"""Chapter 01 (a vanilla GPT-2 decoder): attention, LayerNorm, MLP, the block, the model.

The references are minigpt's own modules. Where the notebook's interface is simpler than the
package's (the package's Block also returns MoE losses; its MLP takes sizes, not a config),
a thin adapter below gives the package's computation the notebook's interface; it is also what a
learner gets back while an exercise is still a stub.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import attention, mlp, model, norm
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig


# ----------------------------------------------------------------------------- causal self-attention
def reference_causal_self_attention(q, k, v):
    """PyTorch's fused attention is the oracle: softmax(q k^T / sqrt(hd) + causal mask) v."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def _attend(q, k, v, scale, diagonal=0, dim=-1, masked=True):
    T = q.shape[-2]
    att = (q @ k.transpose(-2, -1)) * scale
    if masked:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril(diagonal=diagonal)
        att = att.masked_fill(~mask, float("-inf"))
    return torch.softmax(att, dim=dim) @ v


def attention_without_mask(q, k, v):
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), masked=False)


def attention_without_scale(q, k, v):
    return _attend(q, k, v, 1.0)


def attention_mask_off_by_one(q, k, v):
    """tril(diagonal=1): every position also sees the next one (the token it must predict)."""
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), diagonal=1)


def attention_softmax_over_queries(q, k, v):
    return _attend(q, k, v, 1 / math.sqrt(q.shape[-1]), dim=-2)


def attention_scale_by_head_dim(q, k, v):
    return _attend(q, k, v, 1 / q.shape[-1])


@exercise("ch01.causal_self_attention", reference=reference_causal_self_attention,
          wrong=[attention_without_mask, attention_without_scale, attention_mask_off_by_one,
                 attention_softmax_over_queries, attention_scale_by_head_dim],
          hint="scores = q @ k.transpose(-2, -1) / sqrt(head_dim); set scores[j > i] to -inf "
               "(torch.tril); softmax over the last dimension (the keys); then @ v.")
def _attention_cases():
    g = torch.Generator().manual_seed(1)
    for shape in [(1, 1, 4, 8), (2, 3, 5, 8), (2, 2, 16, 16)]:
        q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
        yield Case(args=(q, k, v), name=f"q, k, v of shape {shape} = (B, n_head, T, head_dim)")
    q, k, v = (torch.randn(1, 2, 6, 4, generator=g, dtype=torch.float64) * 4 for _ in range(3))
    yield Case(args=(q, k, v), name="float64 q, k, v of shape (1, 2, 6, 4), large scores")


# ----------------------------------------------------------------------------- LayerNorm
class _WrongLayerNorm(norm.LayerNorm):
    pass


class LayerNormUnbiasedVariance(_WrongLayerNorm):
    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormEpsOutsideSqrt(_WrongLayerNorm):
    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / (torch.sqrt(var) + self.eps) * self.weight + self.bias


class LayerNormWrongAxis(_WrongLayerNorm):
    def forward(self, x):
        mean, var = x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class LayerNormWithoutBias(_WrongLayerNorm):
    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight


@exercise("ch01.LayerNorm", reference=norm.LayerNorm, kind="module",
          wrong=[LayerNormUnbiasedVariance, LayerNormEpsOutsideSqrt, LayerNormWrongAxis, LayerNormWithoutBias],
          hint="over the last dimension: (x - mean) / sqrt(var + eps) * weight + bias, with the biased "
               "variance (unbiased=False, divide by C, not C - 1) and eps inside the square root.")
def _layernorm_cases():
    g = torch.Generator().manual_seed(2)
    yield Case(init=(8,), args=(torch.randn(4, 8, generator=g),), name="LayerNorm(8) on x of shape (4, 8)")
    yield Case(init=(32,), args=(torch.randn(2, 5, 32, generator=g) * 3 + 5,),
               name="LayerNorm(32) on x of shape (2, 5, 32), mean 5, std 3")
    yield Case(init=(16,), args=(torch.randn(3, 16, generator=g) * 1e-3,),
               name="LayerNorm(16) on a nearly constant x (std 0.001): eps matters here")


# ----------------------------------------------------------------------------- MLP
class MLP(mlp.GeluMLP):
    """The package's GELU MLP built from a GPTConfig, as in the notebook."""

    def __init__(self, cfg: GPTConfig):
        super().__init__(cfg.n_embd, cfg.hidden_dim, cfg.bias, cfg.dropout)


class MLPWithReLU(MLP):
    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)))


class MLPWithExactGELU(MLP):
    """nn.GELU() defaults to the exact erf form; GPT-2 was trained with the tanh approximation."""

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class MLPWithoutActivation(MLP):
    def forward(self, x):
        return self.c_proj(self.c_fc(x))


class MLPActivationAtTheEnd(MLP):
    def forward(self, x):
        return F.gelu(self.c_proj(self.c_fc(x)), approximate="tanh")


def _cfg(**kw) -> GPTConfig:
    base = dict(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return GPTConfig(**{**base, **kw})


@exercise("ch01.MLP", reference=MLP, kind="module",
          wrong=[MLPWithReLU, MLPWithExactGELU, MLPWithoutActivation, MLPActivationAtTheEnd],
          hint="c_proj(gelu(c_fc(x))) with GPT-2's tanh approximation: F.gelu(h, approximate='tanh').")
def _mlp_cases():
    g = torch.Generator().manual_seed(3)
    for n_embd, shape in [(16, (2, 5)), (32, (1, 7)), (8, (3, 4))]:
        cfg = _cfg(n_embd=n_embd, n_head=2)
        x = torch.randn(*shape, n_embd, generator=g) * 2
        yield Case(init=(cfg,), args=(x,), name=f"n_embd={n_embd}, x of shape {(*shape, n_embd)}")


# ----------------------------------------------------------------------------- the attention module
class CausalSelfAttention(attention.CausalSelfAttention):
    """The package's attention module; the notebook calls it with x only."""

    def forward(self, x):
        return super().forward(x)


class _AttentionParts(CausalSelfAttention):
    def _qkv(self, x, transpose=True):
        B, T, C = x.shape
        if transpose:
            split = lambda t: t.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # noqa: E731
        else:
            split = lambda t: t.view(B, self.n_head, T, self.head_dim)  # noqa: E731
        return split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))


class AttentionHeadsWithoutTranspose(_AttentionParts):
    """view(B, n_head, T, hd) straight from (B, T, C): each 'head' gets a mix of positions."""

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x, transpose=False)
        y = reference_causal_self_attention(q, k, v)
        return self.o_proj(y.reshape(B, T, C))


class AttentionMergeWithoutTranspose(_AttentionParts):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        y = reference_causal_self_attention(q, k, v)  # (B, nh, T, hd)
        return self.o_proj(y.reshape(B, T, C))


class AttentionWithoutOutputProjection(_AttentionParts):
    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        return reference_causal_self_attention(q, k, v).transpose(1, 2).reshape(B, T, C)


class AttentionKeysAsValues(_AttentionParts):
    def forward(self, x):
        B, T, C = x.shape
        q, k, _ = self._qkv(x)
        y = reference_causal_self_attention(q, k, k)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


@exercise("ch01.CausalSelfAttention", reference=CausalSelfAttention, kind="module",
          wrong=[AttentionHeadsWithoutTranspose, AttentionMergeWithoutTranspose,
                 AttentionWithoutOutputProjection, AttentionKeysAsValues],
          hint="(B, T, C) -> q, k, v -> view(B, T, n_head, head_dim).transpose(1, 2) -> attention -> "
               "transpose(1, 2).reshape(B, T, C) -> o_proj.")
def _attention_module_cases():
    g = torch.Generator().manual_seed(4)
    for n_embd, n_head, T in [(32, 4, 7), (48, 3, 12), (16, 1, 5)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        x = torch.randn(2, T, n_embd, generator=g)
        yield Case(init=(cfg,), args=(x,), name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd})")


# ----------------------------------------------------------------------------- the block
class Block(model.Block):
    """The package's block; its forward also returns MoE losses, the notebook's returns x only."""

    def forward(self, x):
        return super().forward(x)[0]


class BlockPostNorm(Block):
    """The original Transformer's order (norm after the residual add), not GPT-2's pre-norm."""

    def forward(self, x):
        x = self.attn_norm(x + self.attn(x))
        return self.mlp_norm(x + self.mlp(x))


class BlockWithoutResiduals(Block):
    def forward(self, x):
        x = self.attn(self.attn_norm(x))
        return self.mlp(self.mlp_norm(x))


class BlockOneNormForBoth(Block):
    def forward(self, x):
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.attn_norm(x))


class BlockResidualFromTheNorm(Block):
    """Adds the sublayer to norm(x) instead of x: the residual stream is normalised every time."""

    def forward(self, x):
        h = self.attn_norm(x)
        x = h + self.attn(h)
        h = self.mlp_norm(x)
        return h + self.mlp(h)


@exercise("ch01.Block", reference=Block, kind="module",
          wrong=[BlockPostNorm, BlockWithoutResiduals, BlockOneNormForBoth, BlockResidualFromTheNorm],
          hint="pre-norm with two residual connections: x = x + attn(attn_norm(x)); x = x + mlp(mlp_norm(x)).")
def _block_cases():
    g = torch.Generator().manual_seed(5)
    for n_embd, n_head, T in [(16, 2, 6), (32, 4, 9)]:
        cfg = _cfg(n_embd=n_embd, n_head=n_head)
        yield Case(init=(cfg,), args=(torch.randn(2, T, n_embd, generator=g),),
                   name=f"n_embd={n_embd}, n_head={n_head}, x of shape (2, {T}, {n_embd})")


# ----------------------------------------------------------------------------- the model
class _WrongGPT(model.GPT):
    def _run(self, idx, targets, use_pos=True, final_norm=True, shift=False):
        B, T = idx.shape
        x = self.tok_emb(idx)
        if use_pos:
            x = x + self.pos_emb(torch.arange(T, device=idx.device))
        for block in self.blocks:
            x, _ = block(x)
        if final_norm:
            x = self.norm_f(x)
        logits = self.lm_head(x)
        loss = None
        if targets is not None:
            if shift:
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), targets[:, 1:].reshape(-1))
            else:
                loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


class GPTWithoutPositions(_WrongGPT):
    def forward(self, idx, targets=None):
        return self._run(idx, targets, use_pos=False)


class GPTWithoutFinalNorm(_WrongGPT):
    def forward(self, idx, targets=None):
        return self._run(idx, targets, final_norm=False)


class GPTShiftsTargetsAgain(_WrongGPT):
    """The batch's targets are already the inputs shifted by one; shifting again predicts 2 ahead."""

    def forward(self, idx, targets=None):
        return self._run(idx, targets, shift=True)


class GPTPositionsFromOne(_WrongGPT):
    def forward(self, idx, targets=None):
        B, T = idx.shape
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(1, T + 1, device=idx.device) % self.config.block_size)
        for block in self.blocks:
            x, _ = block(x)
        logits = self.lm_head(self.norm_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss


@exercise("ch01.GPT", reference=model.GPT, kind="module", output_names=("logits", "loss"),
          wrong=[GPTWithoutPositions, GPTWithoutFinalNorm, GPTShiftsTargetsAgain, GPTPositionsFromOne],
          hint="x = tok_emb(idx) + pos_emb(arange(T)); each block; norm_f; lm_head -> logits (B, T, vocab); "
               "loss = cross_entropy(logits.view(-1, vocab), targets.view(-1)) (targets are already shifted).")
def _gpt_cases():
    g = torch.Generator().manual_seed(6)
    cfg = _cfg(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    idx, tgt = torch.randint(0, 50, (2, 8), generator=g), torch.randint(0, 50, (2, 8), generator=g)
    yield Case(init=(cfg,), args=(idx, tgt), name="vocab 50, n_layer=2, idx and targets of shape (2, 8)")
    idx, tgt = torch.randint(0, 50, (1, 16), generator=g), torch.randint(0, 50, (1, 16), generator=g)
    yield Case(init=(cfg,), args=(idx, tgt), name="a full block: idx and targets of shape (1, 16)")
    cfg = _cfg(vocab_size=70, block_size=12, n_layer=1, n_head=4, n_embd=32)
    yield Case(init=(cfg,), args=(torch.randint(0, 70, (3, 5), generator=g),),
               name="vocab 70, n_layer=1, idx of shape (3, 5), no targets (loss must be None)")
