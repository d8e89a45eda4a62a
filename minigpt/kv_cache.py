"""A preallocated key/value cache (chapter 10).

During generation each new token attends to the keys and values of every earlier token. Without a
cache they are recomputed for the whole prefix at every step (O(T^2) work per token); with one, each
step computes q, k, v for the new token(s) only and appends k, v here.

Under grouped-query attention the cache stores the n_kv_head heads *before* they are repeated for
the query heads: that is where GQA's memory saving comes from.
"""

from __future__ import annotations

import torch

from .errors import ConfigError
from .i18n import tr


class KVCache:
    """k and v for every layer: (n_layer, B, n_kv_head, max_len, head_dim), filled up to `pos`."""

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int,
                 device=None, dtype=torch.float32):
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0  # how many positions are filled; the model advances it after all layers ran

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, n_kv, T, hd) at [pos, pos+T) and return all keys/values so far (B, n_kv, pos+T, hd)."""
        T = k.shape[2]
        end = self.pos + T
        if end > self.max_len:
            raise ConfigError(tr("KV cache is full: {end} positions needed, max_len={m}. Create it with a larger "
                                 "max_len (model.new_cache(batch_size, max_len=...)).",
                                 "KV キャッシュがいっぱいです: {end} 位置が必要ですが max_len={m} です。より大きな max_len で"
                                 "作り直してください（model.new_cache(batch_size, max_len=...)）。", end=end, m=self.max_len))
        self.k[layer, :, :, self.pos:end] = k
        self.v[layer, :, :, self.pos:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def reset(self) -> None:
        self.pos = 0

    @property
    def bytes_per_token(self) -> int:
        """Bytes the cache holds per token of context (all layers, k and v, one sequence)."""
        n_layer, B, n_kv, _, hd = self.k.shape
        return 2 * n_layer * n_kv * hd * self.k.element_size()


def cache_bytes_per_token(n_layer: int, n_kv_head: int, head_dim: int, bytes_per_value: int = 2) -> int:
    """2 (k and v) x layers x kv heads x head_dim x bytes: e.g. Llama-2-7B in fp16 -> 524,288 (0.5 MiB)."""
    return 2 * n_layer * n_kv_head * head_dim * bytes_per_value
