"""Small reference functions of the training craft that the notebooks ask learners to write.

- `bits_per_char`: a cross-entropy in nats per token as bits per character, the unit in which
  models with different tokenizers can be compared (chapter 01; `TokenData.bits_per_char` is the
  same conversion for a whole split).
"""

from __future__ import annotations

import math


def bits_per_char(loss, n_tokens: int, n_chars: int):
    """Cross-entropy `loss` (nats per token, a float or a tensor) of a text of `n_tokens` tokens and
    `n_chars` characters, in bits per character: loss * n_tokens / n_chars / ln 2.

    >>> round(bits_per_char(math.log(2), 3, 2), 6)  # 1 bit per token, 1.5 tokens per character
    1.5
    """
    return loss * (n_tokens / n_chars) / math.log(2)
