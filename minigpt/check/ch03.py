"""Chapter 03 (a Japanese tokenizer): SEQ_LEN from a character budget, and the unigram segmentation.

The unigram exercise ends in exact equality with SentencePiece itself: the best segmentation of a
text by the sum of the pieces' log-probabilities (the Viterbi algorithm) is what
`SentencePieceProcessor.encode` returns for a unigram model.
"""

from __future__ import annotations

import math
import tempfile
from functools import lru_cache
from pathlib import Path

from minigpt import tokenizer as tk
from minigpt.check import Case, exercise

SPACE = "\u2581"  # ▁, SentencePiece's mark for a space


@lru_cache(maxsize=1)
def unigram_tokenizer() -> tk.SentencePieceTokenizer:
    """A small unigram model of the embedded corpus, trained once per process (about a second)."""
    from minigpt.corpus import load_documents

    folder = Path(tempfile.mkdtemp(prefix="minigpt-check-ch03-"))
    return tk.train_sentencepiece(load_documents("embedded", "train"), folder / "unigram", vocab_size=4000,
                                  character_coverage=0.995)


def _proto(tok: tk.SentencePieceTokenizer):
    from sentencepiece import sentencepiece_model_pb2 as pb  # needs the protobuf package

    proto = pb.ModelProto()
    proto.ParseFromString(tok.sp.serialized_model_proto())
    return proto


def piece_scores(tok: tk.SentencePieceTokenizer) -> dict[str, float]:
    """{piece: log-probability} of the normal pieces of a unigram model (no <unk>, <s>, </s>, bytes
    or user-defined pieces such as the newline)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    normal = pb.ModelProto.SentencePiece.NORMAL
    return {p.piece: p.score for p in _proto(tok).pieces if p.type == normal}


def sentencepiece_with_scores(scores: dict[str, float]):
    """A SentencePieceProcessor whose unigram model has exactly these normal pieces and scores (the
    special pieces and settings come from `unigram_tokenizer()`): SentencePiece as the oracle for any
    table of scores. Cached: a notebook calls it once per line with the same table."""
    return _sentencepiece_for(tuple(scores.items()))


@lru_cache(maxsize=4)
def _sentencepiece_for(items: tuple[tuple[str, float], ...]):
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    base = _proto(unigram_tokenizer())
    Piece = pb.ModelProto.SentencePiece
    model = pb.ModelProto()
    model.CopyFrom(base)
    del model.pieces[:]
    model.pieces.extend(p for p in base.pieces if p.type != Piece.NORMAL)
    model.pieces.extend(Piece(piece=k, score=v, type=Piece.NORMAL) for k, v in items)
    return spm.SentencePieceProcessor(model_proto=model.SerializeToString())


# ----------------------------------------------------------------------------- seq_len_for_chars
def seq_len_floor(tok, text, n_chars):
    return int(n_chars * len(tok.encode(text)) / len(text))


def seq_len_round(tok, text, n_chars):
    return round(n_chars * len(tok.encode(text)) / len(text))


def seq_len_inverted(tok, text, n_chars):
    """Multiplies by characters per token instead of tokens per character."""
    return math.ceil(n_chars * len(text) / len(tok.encode(text)))


def seq_len_from_bytes(tok, text, n_chars):
    """Counts UTF-8 bytes (3 per kana or kanji) instead of characters."""
    return math.ceil(n_chars * len(tok.encode(text)) / len(text.encode("utf-8")))


@exercise("ch03.seq_len_for_chars", reference=tk.seq_len_for_chars, uses_device=False,
          wrong=[seq_len_floor, seq_len_round, seq_len_inverted, seq_len_from_bytes],
          hint="tokens per character = len(tok.encode(text)) / len(text) (characters, not bytes); "
               "multiply by n_chars and round UP (math.ceil): a window must hold the whole budget.")
def _seq_len_cases():
    from minigpt.check.ch02 import TEXTS, gpt2

    text = "".join(TEXTS[2:4])
    yield Case(args=(gpt2(), text, 256), name=f"GPT-2, {len(text)} characters of Japanese, budget 256")
    yield Case(args=(gpt2(), TEXTS[0], 100), name="GPT-2, an English sentence, budget 100")
    yield Case(args=(unigram_tokenizer(), text, 256), name="a unigram SentencePiece, budget 256")
    yield Case(args=(unigram_tokenizer(), text, 37), name="a unigram SentencePiece, budget 37")


# ----------------------------------------------------------------------------- unigram segmentation
def reference_unigram_segment(text: str, scores: dict[str, float]) -> list[str]:
    """SentencePiece's own segmentation, by a unigram model with exactly these pieces and scores."""
    return sentencepiece_with_scores(scores).encode(text, out_type=str)


def _max_len(scores):
    return max(len(p) for p in scores)


def segment_longest_match(text, scores):
    """Greedy: the longest piece at each position (what BPE-like intuition suggests, not unigram)."""
    text, out, i, L = text.replace(" ", SPACE), [], 0, _max_len(scores)
    while i < len(text):
        for j in range(min(len(text), i + L), i, -1):
            if text[i:j] in scores or j == i + 1:
                out.append(text[i:j])
                i = j
                break
    return out


def segment_fewest_pieces(text, scores):
    """Dynamic programming that minimises the number of pieces and ignores the scores."""
    text, L = text.replace(" ", SPACE), _max_len(scores)
    n = len(text)
    best, back = [0] + [math.inf] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - L), i):
            if text[j:i] in scores and best[j] + 1 < best[i]:
                best[i], back[i] = best[j] + 1, j
    return _backtrack(text, back)


def segment_best_piece_first(text, scores):
    """Greedy by score: at each position the single most probable piece, without looking ahead."""
    text, out, i, L = text.replace(" ", SPACE), [], 0, _max_len(scores)
    while i < len(text):
        options = [text[i:j] for j in range(i + 1, min(len(text), i + L) + 1) if text[i:j] in scores]
        piece = max(options, key=scores.get) if options else text[i]
        out.append(piece)
        i += len(piece)
    return out


def segment_keeps_spaces(text, scores):
    """The right Viterbi, but spaces are not turned into ▁ first, so they fall out as single characters."""
    L = _max_len(scores)
    n = len(text)
    best, back = [0.0] + [-math.inf] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - L), i):
            piece = text[j:i]
            score = scores.get(piece, -20.0 if len(piece) == 1 else None)
            if score is not None and best[j] + score > best[i]:
                best[i], back[i] = best[j] + score, j
    return _backtrack(text, back)


def _backtrack(text, back):
    out, i = [], len(text)
    while i > 0:
        out.append(text[back[i]:i])
        i = back[i]
    return out[::-1]


@exercise("ch03.unigram_segment", reference=reference_unigram_segment, uses_device=False,
          wrong=[segment_longest_match, segment_fewest_pieces, segment_best_piece_first, segment_keeps_spaces],
          hint="replace ' ' with '▁'; best[i] = max over pieces text[j:i] in scores of best[j] + scores[piece] "
               "(best[0] = 0); remember which j won, then walk back from the end.")
def _segment_cases():
    from minigpt.check.ch02 import TEXTS

    # Tables made by hand: the longest first piece (東京都) is a worse start than 東京 + 都庁; the
    # fewest pieces (日本語 + 教室) score worse than three (日本 + 語 + 教室); the best first piece
    # (東京) leaves a bad rest (都), while 東 + 京都 is better overall.
    toy = {"東": -8.0, "京": -8.0, "都": -8.0, "庁": -8.0, "前": -2.0, "東京": -3.0, "東京都": -10.0, "都庁": -3.0}
    yield Case(args=("東京都庁前", toy), name=f"text '東京都庁前' with the scores {toy}")
    toy = {"日": -8.0, "本": -8.0, "語": -2.0, "教": -8.0, "室": -8.0, "日本": -3.0, "日本語": -9.0, "教室": -3.0}
    yield Case(args=("日本語教室", toy), name=f"text '日本語教室' with the scores {toy}")
    toy = {"東": -5.0, "京": -10.0, "都": -10.0, "東京": -1.0, "京都": -1.0}
    yield Case(args=("東京都", toy), name=f"text '東京都' with the scores {toy}")
    toy = {"東京": -1.0, "大阪": -1.0, "と": -2.0, "▁": -3.0, "▁と": -2.0, "▁大阪": -2.0}
    yield Case(args=("東京 と 大阪", toy), name=f"text '東京 と 大阪' (spaces) with the scores {toy}")
    scores = piece_scores(unigram_tokenizer())
    candidates = [TEXTS[2], TEXTS[3], "昔の駅の前には小さな本屋があって、学生がよく立ち読みをしていた。",
                  "会議は午後三時から始まり、新しい計画について話し合った。", "東京 と 大阪 の 天気"]
    usable = [t for t in candidates if all(c in scores for c in t.replace(" ", SPACE))]
    for text in usable:
        yield Case(args=(text, scores), name=f"text {text[:20]!r}{'...' if len(text) > 20 else ''}, "
                                             f"the {len(scores)} pieces of a unigram model of the corpus")
