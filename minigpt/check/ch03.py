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
class FixedRateTokenizer:
    """A toy tokenizer with an exact rate: `tokens` tokens for every `chars` characters."""

    def __init__(self, tokens: int, chars: int):
        self.tokens, self.chars = tokens, chars

    def encode(self, text: str) -> list[int]:
        return list(range(len(text) * self.tokens // self.chars))

    def __repr__(self):
        return f"FixedRateTokenizer({self.tokens} tokens per {self.chars} characters)"

    def __eq__(self, other):
        return isinstance(other, FixedRateTokenizer) and (self.tokens, self.chars) == (other.tokens, other.chars)

    __hash__ = object.__hash__


def seq_len_floor(tok, text, n_chars):
    """Rounds down (int(...)): the window then holds fewer characters than the budget.
    ja: 切り捨て (int(...)) なので、窓に予算より少ない文字しか入りません。"""
    return int(n_chars * len(tok.encode(text)) / len(text))


def seq_len_round(tok, text, n_chars):
    """Rounds to the nearest integer instead of up.
    ja: 切り上げではなく四捨五入しています。"""
    return round(n_chars * len(tok.encode(text)) / len(text))


def seq_len_inverted(tok, text, n_chars):
    """Multiplies by characters per token instead of tokens per character.
    ja: 1 文字あたりのトークン数ではなく、1 トークンあたりの文字数を掛けています。"""
    return math.ceil(n_chars * len(text) / len(tok.encode(text)))


def seq_len_from_bytes(tok, text, n_chars):
    """Counts UTF-8 bytes (3 per kana or kanji) instead of characters.
    ja: 文字ではなく UTF-8 のバイト (かなや漢字は 3 バイト) を数えています。"""
    return math.ceil(n_chars * len(tok.encode(text)) / len(text.encode("utf-8")))


def seq_len_plus_one(tok, text, n_chars):
    """Rounds up with int(x) + 1: one token too many when the ratio is a whole number.
    ja: int(x) + 1 で切り上げているので、比がちょうど整数のときに 1 トークン多くなります。"""
    return int(n_chars * len(tok.encode(text)) / len(text)) + 1


def seq_len_from_words(tok, text, n_chars):
    """Counts words (text.split()) instead of characters: Japanese has no spaces between words.
    ja: 文字ではなく単語 (text.split()) を数えています。日本語には単語の間に空白がありません。"""
    return math.ceil(n_chars * len(tok.encode(text)) / len(text.split()))


def seq_len_integer_ceil(tok, text, n_chars):
    """Exact integer arithmetic: -(-a // b) is ceil(a / b)."""
    return -(-n_chars * len(tok.encode(text)) // len(text))


def seq_len_with_fraction(tok, text, n_chars):
    """fractions.Fraction keeps the ratio exact."""
    from fractions import Fraction

    return math.ceil(Fraction(n_chars * len(tok.encode(text)), len(text)))


@exercise("ch03.seq_len_for_chars", reference=tk.seq_len_for_chars, uses_device=False,
          wrong=[seq_len_floor, seq_len_round, seq_len_inverted, seq_len_from_bytes, seq_len_plus_one,
                 seq_len_from_words],
          correct=[seq_len_integer_ceil, seq_len_with_fraction],
          covers="GPT-2 and a unigram model, Japanese and English, budgets 37 to 256, a ratio that is a whole "
                 "number",
          hint_ja="1 文字あたりのトークン数 = len(tok.encode(text)) / len(text) (バイトではなく文字)。n_chars を掛けて"
                  "切り上げます (math.ceil): 窓には予算の文字がすべて入らなければなりません。",
          hint="tokens per character = len(tok.encode(text)) / len(text) (characters, not bytes); "
               "multiply by n_chars and round UP (math.ceil): a window must hold the whole budget.")
def _seq_len_cases():
    from minigpt.check.ch02 import TEXTS, gpt2

    text = "".join(TEXTS[2:4])
    yield Case(args=(gpt2(), text, 256), name=f"GPT-2, {len(text)} characters of Japanese, budget 256",
               name_ja=f"GPT-2、日本語 {len(text)} 文字、予算 256")
    yield Case(args=(gpt2(), TEXTS[0], 100), name="GPT-2, an English sentence, budget 100", name_ja="GPT-2、英語の文、予算 100")
    yield Case(args=(unigram_tokenizer(), text, 256), name="a unigram SentencePiece, budget 256", name_ja="unigram の SentencePiece、予算 256")
    yield Case(args=(unigram_tokenizer(), text, 37), name="a unigram SentencePiece, budget 37", name_ja="unigram の SentencePiece、予算 37")
    yield Case(args=(FixedRateTokenizer(1, 2), "日本語の文章を二文字で一トークンにする例です。ここまで二十四文字", 256),
               name="1 token per 2 characters, budget 256: exactly 128 tokens (a whole number)",
               name_ja="2 文字で 1 トークン、予算 256: ちょうど 128 トークン (整数)")



# ----------------------------------------------------------------------------- unigram segmentation
def reference_unigram_segment(text: str, scores: dict[str, float]) -> list[str]:
    """SentencePiece's own segmentation, by a unigram model with exactly these pieces and scores."""
    return sentencepiece_with_scores(scores).encode(text, out_type=str)


def _max_len(scores):
    return max(len(p) for p in scores)


def segment_longest_match(text, scores):
    """Greedy: the longest piece at each position (what BPE-like intuition suggests, not unigram).
    ja: 貪欲法で各位置の最長ピースを取っています (BPE 的な直感で、unigram ではありません)。"""
    text, out, i, L = text.replace(" ", SPACE), [], 0, _max_len(scores)
    while i < len(text):
        for j in range(min(len(text), i + L), i, -1):
            if text[i:j] in scores or j == i + 1:
                out.append(text[i:j])
                i = j
                break
    return out


def segment_fewest_pieces(text, scores):
    """Dynamic programming that minimises the number of pieces and ignores the scores.
    ja: スコアを無視して、ピースの数を最小にする動的計画法になっています。"""
    text, L = text.replace(" ", SPACE), _max_len(scores)
    n = len(text)
    best, back = [0] + [math.inf] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - L), i):
            if text[j:i] in scores and best[j] + 1 < best[i]:
                best[i], back[i] = best[j] + 1, j
    return _backtrack(text, back)


def segment_best_piece_first(text, scores):
    """Greedy by score: at each position the single most probable piece, without looking ahead.
    ja: スコアによる貪欲法: 先を見ずに各位置で最も確率の高いピースを 1 つ取っています。"""
    text, out, i, L = text.replace(" ", SPACE), [], 0, _max_len(scores)
    while i < len(text):
        options = [text[i:j] for j in range(i + 1, min(len(text), i + L) + 1) if text[i:j] in scores]
        piece = max(options, key=scores.get) if options else text[i]
        out.append(piece)
        i += len(piece)
    return out


def segment_keeps_spaces(text, scores):
    """The right Viterbi, but spaces are not turned into ▁ first, so they fall out as single characters.
    ja: Viterbi は正しいものの、空白を先に ▁ に置き換えていないので、空白が 1 文字ずつ残ります。"""
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


def segment_max_piece_16(text, scores):
    """Looks at most 16 characters back (a fixed limit) instead of the longest piece in the table.
    ja: 表の最長ピースではなく、固定の 16 文字までしか遡っていません。"""
    return _viterbi(text.replace(" ", SPACE), scores, 16)


def segment_lowest_score(text, scores):
    """Keeps the segmentation with the lowest total score (min instead of max).
    ja: 合計スコアが最も低い分割を選んでいます (max ではなく min)。"""
    text, L = text.replace(" ", SPACE), _max_len(scores)
    n = len(text)
    best, back = [0.0] + [math.inf] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - L), i):
            piece = text[j:i]
            if piece in scores and best[j] + scores[piece] < best[i]:
                best[i], back[i] = best[j] + scores[piece], j
    return _backtrack(text, back)


def segment_adds_missing_characters(text, scores):
    """Adds the text's missing single characters to `scores` (with a penalty): the caller's table is changed.
    ja: テキストの中で表にない 1 文字を (ペナルティ付きで) scores に足しているので、呼び出し側の表が書き換わります。"""
    text = text.replace(" ", SPACE)
    for c in text:
        scores.setdefault(c, -20.0)
    return _viterbi(text, scores, _max_len(scores))


def segment_dummy_prefix(text, scores):
    """Puts ▁ in front of the text, like SentencePiece's add_dummy_prefix (turned off in this course).
    ja: SentencePiece の add_dummy_prefix のようにテキストの前に ▁ を付けています (この講座ではオフ)。"""
    return _viterbi(SPACE + text.replace(" ", SPACE), scores, _max_len(scores))


def _viterbi(text, scores, L):
    n = len(text)
    best, back = [0.0] + [-math.inf] * n, [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - L), i):
            piece = text[j:i]
            if piece in scores and best[j] + scores[piece] > best[i]:
                best[i], back[i] = best[j] + scores[piece], j
    return _backtrack(text, back)


def segment_from_the_end(text, scores):
    """Best segmentation of each suffix, memoised recursion from the end of the text."""
    from functools import lru_cache

    text, L = text.replace(" ", SPACE), _max_len(scores)

    @lru_cache(maxsize=None)
    def best(i):  # (score, pieces) of text[i:]
        if i == len(text):
            return 0.0, ()
        options = []
        for j in range(i + 1, min(len(text), i + L) + 1):
            piece = text[i:j]
            if piece in scores:
                rest = best(j)
                if rest is not None:
                    options.append((scores[piece] + rest[0], (piece,) + rest[1]))
        return max(options, key=lambda o: o[0]) if options else None

    return list(best(0)[1])


def segment_forward_relaxation(text, scores):
    """Viterbi that pushes forward: from each reached position, try every piece that starts there."""
    text = text.replace(" ", SPACE)
    n = len(text)
    best = {0: (0.0, None)}
    by_start = {}
    for piece in scores:
        by_start.setdefault(piece[0], []).append(piece)
    for i in range(n):
        if i not in best:
            continue
        for piece in by_start.get(text[i], ()):
            j = i + len(piece)
            if text.startswith(piece, i):
                total = best[i][0] + scores[piece]
                if j not in best or total > best[j][0]:
                    best[j] = (total, i)
    out, j = [], n
    while j > 0:
        i = best[j][1]
        out.append(text[i:j])
        j = i
    return out[::-1]


def _backtrack(text, back):
    out, i = [], len(text)
    while i > 0:
        out.append(text[back[i]:i])
        i = back[i]
    return out[::-1]


@exercise("ch03.unigram_segment", reference=reference_unigram_segment, uses_device=False,
          wrong=[segment_longest_match, segment_fewest_pieces, segment_best_piece_first, segment_keeps_spaces,
                 segment_max_piece_16, segment_lowest_score, segment_adds_missing_characters, segment_dummy_prefix],
          correct=[segment_from_the_end, segment_forward_relaxation],
          covers="hand-made tables where greedy choices lose, spaces (▁), a piece longer than 16 characters, "
                 "▁ at the start, the 4000 pieces of a unigram model on Japanese sentences, the table must stay unchanged",
          hint_ja="' ' を '▁' に置き換え、best[i] = max(best[j] + scores[piece]) (text[j:i] が scores にあるピース、best[0] = 0) "
                  "を計算し、勝った j を覚えておいて、最後から逆にたどります。",
          hint="replace ' ' with '▁'; best[i] = max over pieces text[j:i] in scores of best[j] + scores[piece] "
               "(best[0] = 0); remember which j won, then walk back from the end.")
def _segment_cases():
    from minigpt.check.ch02 import TEXTS

    # Tables made by hand: the longest first piece (東京都) is a worse start than 東京 + 都庁; the
    # fewest pieces (日本語 + 教室) score worse than three (日本 + 語 + 教室); the best first piece
    # (東京) leaves a bad rest (都), while 東 + 京都 is better overall.
    toy = {"東": -8.0, "京": -8.0, "都": -8.0, "庁": -8.0, "前": -2.0, "東京": -3.0, "東京都": -10.0, "都庁": -3.0}
    yield Case(args=("東京都庁前", toy), name=f"text '東京都庁前' with the scores {toy}", name_ja=f"テキスト '東京都庁前'、スコア {toy}")
    toy = {"日": -8.0, "本": -8.0, "語": -2.0, "教": -8.0, "室": -8.0, "日本": -3.0, "日本語": -9.0, "教室": -3.0}
    yield Case(args=("日本語教室", toy), name=f"text '日本語教室' with the scores {toy}", name_ja=f"テキスト '日本語教室'、スコア {toy}")
    toy = {"東": -5.0, "京": -10.0, "都": -10.0, "東京": -1.0, "京都": -1.0}
    yield Case(args=("東京都", toy), name=f"text '東京都' with the scores {toy}", name_ja=f"テキスト '東京都'、スコア {toy}")
    toy = {"東京": -1.0, "大阪": -1.0, "と": -2.0, "▁": -3.0, "▁と": -2.0, "▁大阪": -2.0}
    yield Case(args=("東京 と 大阪", toy), name=f"text '東京 と 大阪' (spaces) with the scores {toy}",
               name_ja=f"テキスト '東京 と 大阪' (空白あり)、スコア {toy}")
    toy = {"ス": -9.0, "ー": -9.0, "パ": -9.0, "カ": -9.0, "リ": -9.0, "フ": -9.0, "ラ": -9.0, "ジ": -9.0,
           "テ": -9.0, "ィ": -9.0, "ッ": -9.0, "ク": -9.0, "と": -2.0, "スーパーカリフラジリスティック": -12.0,
           "スーパーカリフラジリスティックスーパーカリ": -5.0}
    yield Case(args=("スーパーカリフラジリスティックスーパーカリと", toy),
               name="a piece of 21 characters, longer than any fixed limit of 16",
               name_ja="21 文字のピース: 16 などの固定の上限より長い")
    toy = {"▁": -6.0, "東": -6.0, "京": -6.0, "▁東京": -1.0, "東京": -4.0, "▁大阪": -2.0, "大": -6.0, "阪": -6.0}
    yield Case(args=("東京 大阪", toy), name="'東京 大阪' with the scores " + str(toy) + ": no ▁ before the first word",
               name_ja="'東京 大阪'、スコア " + str(toy) + ": 最初の単語の前に ▁ は付きません")
    scores = piece_scores(unigram_tokenizer())
    candidates = [TEXTS[2], TEXTS[3], "昔の駅の前には小さな本屋があって、学生がよく立ち読みをしていた。",
                  "会議は午後三時から始まり、新しい計画について話し合った。", "東京 と 大阪 の 天気"]
    usable = [t for t in candidates if all(c in scores for c in t.replace(" ", SPACE))]
    for text in usable:
        yield Case(args=(text, scores), name=f"text {text[:20]!r}{'...' if len(text) > 20 else ''}, "
                                             f"the {len(scores)} pieces of a unigram model of the corpus",
                   name_ja=f"テキスト {text[:20]!r}{'...' if len(text) > 20 else ''}、"
                           f"コーパスの unigram モデルの {len(scores)} 個のピース")
