"""Chapter 10 (fast inference): attention over a KV cache, the cache itself, cached greedy
generation, and the repeat of kv heads under grouped-query attention.

References come from the package: `minigpt.attention.causal_mask` and `repeat_kv`,
`minigpt.kv_cache.KVCache`, `minigpt.generate.generate`. The generation exercise runs on a small
minigpt GPT that counts the tokens it is run on, so the checker sees not only *which* tokens come
out but also whether the cache saved the work it should (the prompt once, then one token a step).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from minigpt import kv_cache
from minigpt.attention import causal_mask, repeat_kv
from minigpt.check import Case, exercise
from minigpt.config import GPTConfig
from minigpt.generate import generate
from minigpt.model import GPT


# ----------------------------------------------------------------------------- attention over a cache
def reference_attention_with_cache(q, k, v):
    """q (B, nh, T, hd) are the last T of the S positions in k, v (B, nh, S, hd)."""
    T, S = q.shape[-2], k.shape[-2]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(T, S, q.device))


def _attend(q, k, v, mask):
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    return torch.softmax(att, dim=-1) @ v


def attention_mask_top_left(q, k, v):
    """SDPA's is_causal=True: the triangle starts at the top-left corner, as if the queries were
    the *first* T positions. Right when T == S (training), wrong with anything in the cache."""
    T, S = q.shape[-2], k.shape[-2]
    return _attend(q, k, v, torch.ones(T, S, dtype=torch.bool, device=q.device).tril())


def attention_no_mask(q, k, v):
    """No mask: right for one new token (it may see everything), wrong for a prompt or a chunk."""
    return _attend(q, k, v, None)


def attention_mask_one_too_far(q, k, v):
    """Each query also sees the key right after it (the token it must predict)."""
    T, S = q.shape[-2], k.shape[-2]
    return _attend(q, k, v, torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T + 1))


def attention_mask_excludes_itself(q, k, v):
    """Each query sees the earlier keys but not its own (tril(S - T - 1)); a query at position 0 then
    sees nothing at all (NaN)."""
    T, S = q.shape[-2], k.shape[-2]
    return _attend(q, k, v, torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T - 1))


@exercise("ch10.attention_with_cache", reference=reference_attention_with_cache,
          wrong=[attention_mask_top_left, attention_no_mask, attention_mask_one_too_far,
                 attention_mask_excludes_itself],
          hint="the T queries are the LAST T of S positions: query i sits at position S - T + i and may see "
               "keys j <= S - T + i, i.e. torch.ones(T, S).tril(diagonal=S - T). Mask the scores with it "
               "(-inf where False), softmax over the keys, @ v.")
def _attention_cases():
    g = torch.Generator().manual_seed(10)
    for B, nh, T, S, hd, what in [(2, 2, 5, 5, 8, "no cache (training): T == S"),
                                  (2, 3, 1, 7, 8, "one new token after 6 cached ones"),
                                  (1, 2, 3, 8, 16, "a chunk of 3 after 5 cached ones"),
                                  (2, 1, 4, 4, 4, "a prompt of 4, nothing cached yet")]:
        q = torch.randn(B, nh, T, hd, generator=g)
        k, v = torch.randn(B, nh, S, hd, generator=g), torch.randn(B, nh, S, hd, generator=g)
        yield Case(args=(q, k, v), name=f"{what}: q {tuple(q.shape)}, k and v {tuple(k.shape)}")
    q, k, v = (torch.randn(1, 2, n, 8, generator=g, dtype=torch.float64) * 3 for n in (2, 6, 6))
    yield Case(args=(q, k, v), name="float64, a chunk of 2 after 4 cached ones, large scores")


# ----------------------------------------------------------------------------- the cache
class KVCache(kv_cache.KVCache):
    """The package's cache with the notebook's constructor (float32 only)."""

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int, device=None):
        super().__init__(n_layer, batch_size, n_kv_head, max_len, head_dim, device=device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exercise: the package's update (named here so a stub of the notebook's class is recognised)."""
        return super().update(layer, k, v)


def _drive_cache(cls, case: Case):
    """Build the cache, then for each chunk call update() for every layer and advance pos (as the
    model does after its last layer). Returns every (k, v) that update() returned, cloned."""
    cache = cls(*case.init)
    chunks = case.args[0]  # list of (k, v) per chunk; k: (n_layer, B, n_kv, T, hd)
    out = []
    for k, v in chunks:
        for layer in range(k.shape[0]):
            kk, vv = cache.update(layer, k[layer], v[layer])
            out.append((kk.clone(), vv.clone()))
        cache.pos += k.shape[3]
    return out


class CacheReturnsOnlyNew(KVCache):
    """Stores k, v but returns only the new ones: the new token sees no earlier token."""

    def update(self, layer, k, v):
        super().update(layer, k, v)
        return k, v


class CacheAdvancesPosInUpdate(KVCache):
    """Advances pos inside update(): the second layer writes after the first layer's tokens."""

    def update(self, layer, k, v):
        out = super().update(layer, k, v)
        self.pos += k.shape[2]
        return out


class CacheIgnoresLayer(KVCache):
    """Every layer writes into layer 0's slot: the layers overwrite each other's keys and values."""

    def update(self, layer, k, v):
        return super().update(0, k, v)


class CacheReturnsWholeBuffer(KVCache):
    """Returns all max_len slots, the zeros of the empty ones included."""

    def update(self, layer, k, v):
        super().update(layer, k, v)
        return self.k[layer], self.v[layer]


class CacheValuesFromKeys(KVCache):
    """Stores k in both buffers (a copy-paste slip)."""

    def update(self, layer, k, v):
        return super().update(layer, k, k)


@exercise("ch10.KVCache", reference=KVCache, kind="class", run=_drive_cache, uses_device=False,
          wrong=[CacheReturnsOnlyNew, CacheAdvancesPosInUpdate, CacheIgnoresLayer, CacheReturnsWholeBuffer,
                 CacheValuesFromKeys],
          hint="in update(layer, k, v): T = k.shape[2]; write k and v into self.k[layer] and self.v[layer] at "
               "positions [self.pos, self.pos + T) (dimension 3 of the buffers); return everything up to "
               "self.pos + T. Do not change self.pos: the model advances it once all layers have run.")
def _cache_cases():
    g = torch.Generator().manual_seed(11)
    for n_layer, B, n_kv, hd, lengths, max_len in [(2, 1, 2, 4, (3, 1, 1), 8),  # prefill 3, then 2 tokens
                                                   (3, 2, 1, 8, (1, 1, 1, 1), 4),  # token by token to the end
                                                   (2, 2, 4, 2, (4, 2, 3), 12)]:  # chunks
        chunks = [(torch.randn(n_layer, B, n_kv, T, hd, generator=g), torch.randn(n_layer, B, n_kv, T, hd, generator=g))
                  for T in lengths]
        yield Case(init=(n_layer, B, n_kv, max_len, hd), args=(chunks,),
                   name=f"KVCache(n_layer={n_layer}, batch_size={B}, n_kv_head={n_kv}, max_len={max_len}, "
                        f"head_dim={hd}), then chunks of {', '.join(map(str, lengths))} tokens")


# ----------------------------------------------------------------------------- cached greedy generation
class CountingGPT(GPT):
    """A minigpt GPT that counts the token positions it is run on (prompt and new tokens alike)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__(cfg)
        self.tokens_run = 0

    def forward(self, idx, targets=None, cache=None):
        self.tokens_run += idx.shape[1]
        return super().forward(idx, targets, cache)


def reference_generate_greedy(model, prompt: list[int], n_new: int) -> list[int]:
    return list(generate(model, prompt, n_new, temperature=0, use_cache=True, stop_at_eos=False))


def _drive_generation(fn, case: Case):
    cfg, prompt, n_new = case.args
    torch.manual_seed(0)
    model = CountingGPT(cfg).eval()
    with torch.no_grad():
        tokens = fn(model, list(prompt), n_new)
    tokens = [int(t) for t in (tokens.tolist() if torch.is_tensor(tokens) else tokens)]
    return {"tokens": tokens, "model_tokens": model.tokens_run, "budget": len(prompt) + n_new}


def _compare_generation(expected, got) -> str | None:
    e, g = expected["tokens"], got["tokens"]
    if g != e:
        if len(g) != len(e):
            return f"expected {len(e)} new tokens, got {len(g)}: {g[:12]}{' ...' if len(g) > 12 else ''}"
        i = next(i for i, (a, b) in enumerate(zip(e, g)) if a != b)
        return (f"the new tokens differ from step {i}: expected {e[i:i + 8]}, got {g[i:i + 8]} "
                f"(expected in all: {e})")
    if got["model_tokens"] > got["budget"]:
        return (f"the tokens are right, but the model was run on {got['model_tokens']} token positions in all; "
                f"with a KV cache it needs at most {got['budget']} (the prompt once, then one token per step). "
                "Is the cache used, and do you pass only the new token after the prompt?")
    return None


def generate_without_cache(model, prompt, n_new):
    """Correct tokens, but the whole context is run through the model at every step."""
    ids = list(prompt)
    for _ in range(n_new):
        logits, _ = model(torch.tensor([ids]))
        ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def generate_without_prefill(model, prompt, n_new):
    """Starts the cache from the last prompt token only: the model never sees the rest of the prompt."""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt[-1:]]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, -1].argmax())
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


def generate_feeds_everything_to_the_cache(model, prompt, n_new):
    """Uses a cache but still passes the whole sequence every step: old tokens are appended again
    at new positions."""
    cache = model.new_cache(1, max_len=model.config.block_size)
    ids, out = list(prompt), []
    for _ in range(n_new):
        if cache.pos + len(ids) > cache.max_len:
            cache.reset()
        logits, _ = model(torch.tensor([ids]), cache=cache)
        nxt = int(logits[0, -1].argmax())
        ids.append(nxt)
        out.append(nxt)
    return out


def generate_reads_first_position(model, prompt, n_new):
    """Takes the prediction at position 0 (logits[0, 0]) instead of the last position."""
    cache = model.new_cache(1, max_len=len(prompt) + n_new)
    logits, _ = model(torch.tensor([prompt]), cache=cache)
    out = []
    for _ in range(n_new):
        nxt = int(logits[0, 0].argmax())
        out.append(nxt)
        logits, _ = model(torch.tensor([[nxt]]), cache=cache)
    return out


@exercise("ch10.generate_greedy", reference=reference_generate_greedy, run=_drive_generation,
          compare=_compare_generation, uses_device=False,
          wrong=[generate_without_cache, generate_without_prefill, generate_feeds_everything_to_the_cache,
                 generate_reads_first_position],
          hint="cache = model.new_cache(1, max_len=len(prompt) + n_new); run the whole prompt once with "
               "cache=cache (prefill); then repeat: next = logits[0, -1].argmax(), and run the model on "
               "[[next]] only, with the same cache.")
def _generation_cases():
    base = dict(vocab_size=64, block_size=48, n_layer=2, n_head=4, n_embd=32, init_std=0.3, tie_weights=False)
    modern = dict(norm="rmsnorm", mlp="swiglu", pos="rope", bias=False)
    g = torch.Generator().manual_seed(12)
    for cfg, p, n, what in [(GPTConfig(**base), 5, 12, "GPT-2 style (learned positions)"),
                            (GPTConfig(**base, **modern), 7, 20, "modern (RoPE)"),
                            (GPTConfig(**base, **modern, n_kv_head=1), 1, 16, "modern, multi-query, 1-token prompt")]:
        prompt = torch.randint(0, 64, (p,), generator=g).tolist()
        yield Case(args=(cfg, prompt, n), name=f"{what}, prompt {prompt}, {n} new tokens")


# ----------------------------------------------------------------------------- repeat_kv
def repeat_kv_tiled(x, n_rep):
    """x.repeat(1, n_rep, 1, 1): heads come out kv0, kv1, kv0, kv1 instead of kv0, kv0, kv1, kv1."""
    return x.repeat(1, n_rep, 1, 1)


def repeat_kv_over_positions(x, n_rep):
    """Repeats along the positions (dim 2) instead of the heads."""
    B, n_kv, S, hd = x.shape
    return x.repeat_interleave(n_rep, dim=2).reshape(B, n_kv * n_rep, S, hd)


def repeat_kv_along_head_dim(x, n_rep):
    """Repeats each vector along head_dim, then views it as more heads: mixes positions into heads."""
    B, n_kv, S, hd = x.shape
    return x.repeat(1, 1, 1, n_rep).view(B, n_kv * n_rep, S, hd)


@exercise("ch10.repeat_kv", reference=repeat_kv,
          wrong=[repeat_kv_tiled, repeat_kv_over_positions, repeat_kv_along_head_dim],
          hint="query head h uses kv head h // n_rep, so each kv head is repeated n_rep times in a row: "
               "x.repeat_interleave(n_rep, dim=1), or x[:, :, None].expand(B, n_kv, n_rep, S, hd)"
               ".reshape(B, n_kv * n_rep, S, hd).")
def _repeat_kv_cases():
    g = torch.Generator().manual_seed(13)
    for shape, n_rep, what in [((2, 2, 5, 4), 3, "GQA, 2 kv heads for 6 query heads"),
                               ((1, 1, 6, 8), 4, "MQA, 1 kv head for 4 query heads"),
                               ((2, 4, 3, 8), 1, "n_rep = 1 (plain multi-head)"),
                               ((1, 3, 4, 2), 2, "GQA, 3 kv heads for 6 query heads")]:
        yield Case(args=(torch.randn(*shape, generator=g), n_rep), name=f"{what}: x {shape}, n_rep={n_rep}")
