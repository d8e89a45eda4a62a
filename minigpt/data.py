"""From documents to training batches: one token stream per split, random windows out of it.

A language model learns from one long stream of token ids. Documents are encoded one by one and
joined with the end-of-text token after each, so the model learns where a document ends (and,
at generation time, EOS is also a sensible "start of a new document" token):

    >>> stream = encode_documents(tok, ["今日は晴れ。", "明日は雨。"])   # doctest: +SKIP
    >>> stream.tolist()[-1] == tok.eos_id                                # doctest: +SKIP
    True

A batch is `batch_size` random windows of `seq_len + 1` tokens: the input is the window without
its last token, the target is the window shifted by one (every position predicts the next token).

Bits per character make runs with different tokenizers comparable. Cross-entropy is measured per
*token*, and a tokenizer with long tokens has fewer, harder tokens to predict; per character the
comparison is fair:

    bpc = CE (nats per token) * n_tokens / n_chars / ln 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from minigpt.errors import DataError
from minigpt.i18n import tr


def encode_documents(tok, docs: Iterable[str]) -> torch.Tensor:
    """Encode every document and append EOS after each; returns one 1-D LongTensor (the stream).

    >>> encode_documents(tok, ["ab", "c"])   # doctest: +SKIP
    tensor([ 397,   65, 50256,   66, 50256])  # with GPT-2: 'ab', EOS, 'c', EOS
    """
    docs = list(docs)
    # encode_batch (when the tokenizer has one) encodes all documents in one fast call
    encoded = tok.encode_batch(docs) if hasattr(tok, "encode_batch") else [tok.encode(d) for d in docs]
    ids: list[int] = []
    for doc_ids in encoded:
        ids.extend(doc_ids)
        ids.append(tok.eos_id)
    return torch.tensor(ids, dtype=torch.long)


def count_chars(docs: Iterable[str]) -> int:
    """Characters (Unicode code points) of the documents: the denominator of bits per character."""
    return sum(len(d) for d in docs)


@dataclass
class TokenData:
    """The train and validation token streams, and how many characters of text each encodes."""

    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64
    train_chars: int
    val_chars: int
    tokenizer: object = None  # the tokenizer that made the streams (its spec goes in checkpoints)

    @property
    def val_tokens_per_char(self) -> float:
        return len(self.val) / max(self.val_chars, 1)

    @property
    def train_tokens_per_char(self) -> float:
        return len(self.train) / max(self.train_chars, 1)

    def bits_per_char(self, ce_nats_per_token: float, split: str = "val") -> float:
        """Convert a cross-entropy in nats per token into bits per character of `split`."""
        tokens_per_char = self.val_tokens_per_char if split == "val" else self.train_tokens_per_char
        return ce_nats_per_token * tokens_per_char / math.log(2)

    def __repr__(self) -> str:
        return (f"TokenData(train={len(self.train):,} tokens / {self.train_chars:,} chars, "
                f"val={len(self.val):,} tokens / {self.val_chars:,} chars)")


def make_token_data(tok, train_docs: list[str], val_docs: list[str]) -> TokenData:
    """TokenData from documents you already have (a list of strings per split)."""
    return TokenData(train=encode_documents(tok, train_docs), val=encode_documents(tok, val_docs),
                     train_chars=count_chars(train_docs), val_chars=count_chars(val_docs),
                     tokenizer=tok)


def prepare_data(corpus: str = "embedded", tokenizer=None) -> TokenData:
    """Load a corpus's train and val documents (minigpt.corpus) and encode them with `tokenizer`.

    `tokenizer` is a tokenizer object or anything `load_tokenizer` accepts ("gpt2", a spec).

    >>> data = prepare_data("embedded", "gpt2")   # doctest: +SKIP
    """
    from minigpt.corpus import load_documents
    from minigpt.tokenizer import load_tokenizer

    if tokenizer is None:
        raise ValueError(tr("prepare_data needs a tokenizer: e.g. prepare_data('embedded', 'gpt2')",
                            "prepare_data にはトークナイザが必要です。例: prepare_data('embedded', 'gpt2')"))
    # a str has .encode too, so test for the spec types rather than for the method
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, dict, Path)) else tokenizer
    return make_token_data(tok, load_documents(corpus, split="train"), load_documents(corpus, split="val"))


def get_batch(stream: torch.Tensor, batch_size: int, seq_len: int,
              generator: torch.Generator | None = None, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of `seq_len + 1` tokens -> inputs x and next-token targets y.

    Deterministic given `generator` (a CPU torch.Generator); the global RNG is used otherwise.

    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = get_batch(torch.arange(100), batch_size=2, seq_len=8, generator=g)
    >>> x.shape, bool((y == x + 1).all())
    (torch.Size([2, 8]), True)
    """
    n = len(stream)
    need = seq_len + 1
    if n < need:
        raise DataError(tr("the token stream has {n} tokens, but one training window needs seq_len + 1 = {need}; "
                           "use a smaller --seq-len (at most {m}) or more text",
                           "トークン列は {n} トークンですが、学習の窓 1 つに seq_len + 1 = {need} トークン必要です。"
                           "--seq-len を小さくする (最大 {m}) か、テキストを増やしてください",
                           n=n, need=need, m=max(n - 1, 0)))
    # Window starts are uniform over every position where a whole window fits.
    starts = torch.randint(0, n - need + 1, (batch_size,), generator=generator)  # (B,)
    idx = starts[:, None] + torch.arange(need)  # (B, T+1)
    windows = stream[idx]  # (B, T+1)
    x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T), (B, T)
    device = torch.device(device)
    if device.type == "cuda":
        # pinned memory + non_blocking lets the copy overlap with the GPU's work
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)
