"""Learning byte-level BPE merges from text (chapter 02's exercise; the reference).

The minbpe "basic" trainer: start from the UTF-8 bytes of the text (ids 0..255); repeatedly count
every pair of adjacent ids (overlapping pairs included: "aaa" holds the pair (a, a) twice), take the
most frequent pair (on a tie, the pair that occurs first in the text), give it the next id
(256, 257, ...) and replace its occurrences from left to right, never overlapping ("aaa" -> [X, a]).
GPT-2's tokenizer was trained this way too, with the text first split into chunks by its pattern
and the bytes shown as printable characters (chapter 02 reads its merges).
"""

from __future__ import annotations


def pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each pair of adjacent ids occurs, in order of first occurrence (dicts keep insertion order)."""
    counts: dict[tuple[int, int], int] = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair`, from left to right and without overlaps, by `new_id`."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(text: str, num_merges: int) -> list[tuple[int, int]]:
    """The first `num_merges` merges learned from `text`: merges[i] is the pair that becomes id 256 + i.
    Stops early when no pair is left (the text became a single id).

    >>> train_bpe("aaabdaaabac", 3)
    [(97, 97), (256, 97), (257, 98)]
    """
    ids = list(text.encode("utf-8"))
    merges = []
    for i in range(num_merges):
        counts = pair_counts(ids)
        if not counts:
            break
        pair = max(counts, key=counts.get)  # the first of the most frequent pairs
        ids = merge(ids, pair, 256 + i)
        merges.append(pair)
    return merges
