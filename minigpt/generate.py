"""Sampling text from a trained model: temperature, top-k, top-p, a KV cache, and streaming text
that never shows a broken character.

One step of generation: run the model on the context, take the logits of the last position,
turn them into a probability distribution and draw the next token:

    temperature 0   -> the most likely token (greedy, deterministic)
    temperature T   -> softmax(logits / T): T < 1 sharpens, T > 1 flattens
    top_k = k       -> only the k most likely tokens may be drawn
    top_p = p       -> only the smallest set of most likely tokens whose probability reaches p

Sampling uses its own torch.Generator (seeded with `seed`), never the global RNG: the same seed
gives the same text, whatever else the program does with random numbers.

    >>> for token_id in generate(model, tok.encode("昔々"), 20, seed=0):   # doctest: +SKIP
    ...     print(token_id)
    >>> text = generate_text(model, tok, "昔々", seed=0, stream=print)     # doctest: +SKIP

Several prompts at once (greedy, a left-padded batch with one KV cache, chapter 10):

    >>> generate_batch(model, [tok.encode("昔々"), tok.encode("猫が")], 20)   # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from minigpt.errors import ConfigError
from minigpt.i18n import tr
from minigpt.utf8 import StreamingDecoder
from minigpt.utf8 import Utf8Guard  # noqa: F401  (it lived here; `from minigpt.generate import Utf8Guard` keeps working)


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set the logits of tokens outside top-k / top-p to -inf. logits: (..., V)."""
    logits = logits.clone()
    V = logits.size(-1)
    if top_k is not None and 0 < top_k < V:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest
        logits[logits < kth] = float("-inf")
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = F.softmax(sorted_logits, dim=-1)
        # A token is dropped when the tokens before it already reach top_p; the most likely
        # token is therefore always kept.
        before = probs.cumsum(dim=-1) - probs
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw the next token id from logits (V,) or (B, V); returns shape () or (B,).

    >>> sample_next(torch.tensor([1.0, 3.0, 2.0]), temperature=0)
    tensor(1)
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_logits(logits / temperature, top_k, top_p)
    probs = F.softmax(logits, dim=-1)
    flat = probs.reshape(-1, probs.size(-1))  # (B, V)
    if generator is not None and generator.device != flat.device:
        flat = flat.to(generator.device)
    ids = torch.multinomial(flat, 1, generator=generator).squeeze(-1)  # (B,)
    return ids.reshape(probs.shape[:-1]).to(logits.device)


def check_sampling(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   max_new_tokens: int = 0) -> None:
    """ConfigError unless the sampling settings make sense (NaN and infinity included)."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(tr("--temperature must be a finite number >= 0 (0 = greedy), got {v}",
                             "--temperature は 0 以上の有限な数にしてください (0 で貪欲法) (値: {v})", v=temperature))
    if top_k is not None and top_k < 1:
        raise ConfigError(tr("--top-k must be >= 1 (or 0 / None for no limit), got {v}",
                             "--top-k は 1 以上にしてください (0 または None で制限なし) (値: {v})", v=top_k))
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ConfigError(tr("--top-p must be in (0, 1] (or None for no limit), got {v}",
                             "--top-p は 0 より大きく 1 以下にしてください (None で制限なし) (値: {v})", v=top_p))
    if max_new_tokens < 0:
        raise ConfigError(tr("--max-new-tokens must be >= 0, got {v}", "--max-new-tokens は 0 以上にしてください (値: {v})",
                             v=max_new_tokens))


def _device_of(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, use_cache: bool = True,
             stop_at_eos: bool = True, eos_id: int | None = None,
             logits_filter: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Iterator[int]:
    """Yield up to `max_new_tokens` new token ids after `prompt_ids` (a list of ints).

    Without a cache the context is cropped to the last block_size tokens before every step.
    With a cache the prompt is run once (prefill), then one token per step; when the cache is full
    (block_size positions) generation carries on without it, on a cropped context.
    Stops early at `eos_id` when stop_at_eos (the EOS itself is not yielded).
    `logits_filter(logits) -> logits` (V,) may change the logits before each draw (e.g. Utf8Guard).
    """
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    ids = [int(i) for i in (prompt_ids.tolist() if torch.is_tensor(prompt_ids) else prompt_ids)]
    if max_new_tokens == 0:
        return
    if not ids:
        if eos_id is None:
            raise ValueError(tr("the prompt is empty: give at least one token (or an eos_id to start from)",
                                "プロンプトが空です。トークンを 1 つ以上渡すか、開始に使う eos_id を指定してください"))
        ids = [eos_id]  # documents start right after an EOS in training
    block_size = model.config.block_size
    device = _device_of(model)
    gen = torch.Generator()  # CPU: the same seed gives the same tokens on every device
    if seed is None:
        gen.seed()  # fresh entropy from the OS, without touching the global RNG
    else:
        gen.manual_seed(seed)

    was_training = model.training
    model.eval()
    try:
        cache = None
        if use_cache and hasattr(model, "new_cache"):
            cache = model.new_cache(batch_size=1, max_len=min(block_size, len(ids) + max_new_tokens))
            context = ids[-block_size:]
            # prefill: the whole prompt in one forward pass fills the cache
            with torch.no_grad():
                logits, _ = model(torch.tensor([context], device=device), cache=cache)
        for _ in range(max_new_tokens):
            if cache is None:
                context = ids[-block_size:]
                with torch.no_grad():
                    logits, _ = model(torch.tensor([context], device=device))
            last = logits[0, -1].float().to("cpu")  # (V,)
            if logits_filter is not None:
                last = logits_filter(last)
            next_id = int(sample_next(last, temperature, top_k, top_p, gen))
            if stop_at_eos and eos_id is not None and next_id == eos_id:
                return
            ids.append(next_id)
            yield next_id
            if cache is not None:
                if cache.pos >= cache.max_len:
                    cache = None  # full: recompute on the cropped context from now on
                    continue
                with torch.no_grad():
                    logits, _ = model(torch.tensor([[next_id]], device=device), cache=cache)
    finally:
        model.train(was_training)


def left_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> ids (B, T) and mask (B, T), both long, T the longest prompt:
    each prompt is right-aligned, with pad_id (mask 0) before it and mask 1 on its tokens.

    >>> ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[5, 6, 7], [0, 0, 8]], [[1, 1, 1], [0, 0, 1]])
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ConfigError(tr("generate_batch needs at least one prompt and at least one token in each prompt "
                             "(got prompt lengths {n})",
                             "generate_batch には 1 つ以上のプロンプトが必要で、どのプロンプトも 1 トークン以上にしてください "
                             "(プロンプトの長さ: {n})", n=[len(p) for p in prompts]))
    B, T = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, T), int(pad_id), dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        n = len(prompt)
        ids[row, T - n:] = torch.as_tensor([int(i) for i in prompt], dtype=torch.long)  # right-aligned
        mask[row, T - n:] = 1
    return ids, mask


def generate_batch(model, prompts: list[list[int]], max_new_tokens: int, pad_id: int = 0) -> list[list[int]]:
    """Greedy generation for several prompts at once: row b of the result holds the `max_new_tokens`
    new token ids after prompts[b] (the same tokens as `generate(model, prompts[b], max_new_tokens,
    temperature=0, stop_at_eos=False)` alone, up to float rounding on near-ties).

    How: the prompts are *left*-padded to the longest length P (`left_pad`), the whole batch is run
    once through the model with an attention mask (the prefill fills one KV cache of batch B), then
    every step runs the B newest tokens, one per row, with the mask extended by a column of ones:

        ids, mask    (B, P)            mask[b, j] = 1 for a real token, 0 for padding
        prefill      logits (B, P, V)  = model(ids, cache=cache, attention_mask=mask)
        next token   (B,)              = logits[:, -1].argmax(-1)
        step         mask (B, S + 1)   = [mask | 1],   logits (B, 1, V) = model(next[:, None], cache, mask)

    Why left: with the padding in front, the last column is every row's newest token, so
    logits[:, -1] is right for all rows and each step appends one column for everyone. Right padding
    would put padding in the last column of the shorter rows (their prediction would come from a pad)
    and their new tokens after the pads. The mask does the rest (`GPT.forward`): each row counts its
    positions from its own first real token (mask.cumsum(-1) - 1), and no query attends to a pad key,
    so the padding changes nothing in the real rows but float rounding.

    The model must be a minigpt `GPT` (it needs `attention_mask` and `new_cache`). No sampling, no
    EOS stop: every row gets exactly max_new_tokens tokens; the longest prompt plus max_new_tokens - 1
    must fit in block_size (the cache is not cropped). The pad id itself never matters (pads are masked).
    """
    check_sampling(max_new_tokens=max_new_tokens)
    if not prompts:
        return []
    if max_new_tokens == 0:
        return [[] for _ in prompts]
    ids, mask = left_pad([[int(i) for i in (p.tolist() if torch.is_tensor(p) else p)] for p in prompts], pad_id)
    B, P = ids.shape
    needed = P + max_new_tokens - 1  # the last new token is never run through the model
    if needed > model.config.block_size:
        raise ConfigError(tr("generate_batch: the longest prompt ({p} tokens) + max_new_tokens ({n}) - 1 = {t} positions "
                             "do not fit in block_size={b}; shorten the prompts or ask for fewer tokens",
                             "generate_batch: 最長のプロンプト ({p} トークン) + max_new_tokens ({n}) - 1 = {t} 位置が "
                             "block_size={b} に収まりません。プロンプトを短くするか、生成するトークンを減らしてください",
                             p=P, n=max_new_tokens, t=needed, b=model.config.block_size))
    device = _device_of(model)
    ids, mask = ids.to(device), mask.to(device)
    new = torch.empty(B, max_new_tokens, dtype=torch.long, device=device)  # (B, n): the answer
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            cache = model.new_cache(batch_size=B, max_len=needed)
            logits, _ = model(ids, cache=cache, attention_mask=mask)  # prefill: (B, P, V)
            for step in range(max_new_tokens):
                nxt = logits[:, -1].float().argmax(dim=-1)  # (B,): every row's newest position is the last column
                new[:, step] = nxt
                if step == max_new_tokens - 1:
                    break
                mask = torch.cat((mask, mask.new_ones(B, 1)), dim=1)  # (B, S + 1): the new token is real
                logits, _ = model(nxt[:, None], cache=cache, attention_mask=mask)  # (B, 1, V)
    finally:
        model.train(was_training)
    return new.tolist()


def generate_text(model, tok, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
                  top_k: int | None = 50, top_p: float | None = None, seed: int | None = None,
                  use_cache: bool = True, stop_at_eos: bool = True, valid_utf8: bool = True,
                  stream: Callable[[str], None] | None = None) -> str:
    """Generate a continuation of `prompt` and return it as text (without the prompt).

    Text is decoded through StreamingDecoder: a token that ends inside a multi-byte UTF-8
    character (common with byte-level BPE on Japanese) is held back until the character is
    complete, so `stream` never receives U+FFFD for a cut character. With valid_utf8 (default)
    a Utf8Guard also stops the model from drawing bytes that cannot form a character, and a
    character still open after max_new_tokens is finished (at most 3 more tokens).

    >>> generate_text(model, tok, "昔々", seed=0, stream=lambda s: print(s, end="", flush=True))  # doctest: +SKIP
    """
    check_sampling(temperature, top_k, top_p, max_new_tokens)
    if max_new_tokens == 0:
        return ""  # nothing asked for: not even the tokens that would finish a character
    decoder = StreamingDecoder(tok)
    guard = Utf8Guard(tok, model.config.vocab_size) if valid_utf8 else None
    pieces: list[str] = []

    def emit(piece: str) -> None:
        if piece:
            pieces.append(piece)
            if stream is not None:
                stream(piece)

    extra = 3 if guard is not None else 0  # room to finish a 4-byte character
    tokens = generate(model, tok.encode(prompt), max_new_tokens + extra, temperature=temperature, top_k=top_k,
                      top_p=top_p, seed=seed, use_cache=use_cache, stop_at_eos=stop_at_eos,
                      eos_id=getattr(tok, "eos_id", None), logits_filter=guard)
    for n, token_id in enumerate(tokens, start=1):
        if guard is not None:
            guard.feed(token_id)
        emit(decoder.feed(token_id))
        if n >= max_new_tokens and not (guard is not None and guard.open_character):
            break
    tokens.close()
    emit(decoder.flush())
    return "".join(pieces)
