"""Documents of a corpus, by name.

A corpus is a list of documents (strings). ``load_documents`` reads one by name:

- ``"embedded"``: the small Japanese corpus shipped inside the package, the UTF-8 files
  ``minigpt/data/corpus/*.txt`` read in file-name order (news, stories, Q&A, ...; see
  ``minigpt/data/corpus/LICENSE.md``). It was written for this course, CC BY 4.0.
- a path to one text file, or to a folder: every ``*.txt`` below it, recursively, in sorted order.

File format: plain UTF-8 text. A line that is exactly ``---`` (trailing spaces allowed) separates
two documents; leading and trailing blank lines of a document are dropped, and so are documents
with no text. A file without ``---`` lines is one document.

Train/validation split, fixed so that every run and every learner sees the same one:

- In each file, document ``i`` (0-based, counted after empty documents are dropped) goes to
  validation when ``i % 10 == 9``, else to train: every tenth document, spread over the genres.
- If that rule gives no validation document at all (no file has 10 documents, e.g. a single
  novel in one file), each document is split by characters instead: its last 10% goes to
  validation, cut at a newline near that point when there is one.
- Corpora whose documents have ids (Tatoeba sentences, Wikipedia articles; minigpt.datasets)
  use ``is_val_id``: validation when ``id % 20 == 19``.

These rules live here only (``split_of_file``, ``uses_document_rule``, ``is_val_id``); the
streaming reader of minigpt.datasets applies the same functions.

    >>> docs = load_documents("embedded", split="train")
    >>> sorted(corpus_stats(docs))
    ['bytes', 'characters', 'documents']

``split="all"`` gives every document whole, in file order (train and validation together).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Iterator

from minigpt.errors import DataError
from minigpt.i18n import tr

__all__ = [
    "EMBEDDED_DIR",
    "SPLITS",
    "CorpusError",
    "read_text",
    "split_documents",
    "corpus_files",
    "load_documents",
    "split_of_file",
    "uses_document_rule",
    "is_val_id",
    "corpus_stats",
    "describe_corpus",
]

EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "corpus"
SPLITS = ("train", "val", "all")
SEPARATOR = "---"
VAL_EVERY = 10  # document i is validation when i % VAL_EVERY == VAL_EVERY - 1
VAL_FRACTION = 0.1  # share of characters for validation in the by-character fallback
VAL_MODULUS = 20  # a document with an id is validation when id % VAL_MODULUS == VAL_MODULUS - 1 (5%)


class CorpusError(DataError):
    """A corpus cannot be read: missing, empty, or not UTF-8. The message says what to do."""


def read_text(path: str | Path) -> str:
    """Read a UTF-8 text file strictly; strip a UTF-8 BOM and turn ``\\r\\n`` (and ``\\r``) into ``\\n``.

    A file in another encoding (Shift_JIS, EUC-JP, UTF-16, ...) raises ``CorpusError`` naming the
    file, the byte offset and the line of the first bad byte, instead of silently turning text
    into U+FFFD or mojibake that a model would then learn.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(tr("text file not found: {path}", "テキストファイルが見つかりません: {path}",
                             path=path)) from None
    except IsADirectoryError:
        raise CorpusError(tr("{path} is a folder; read_text wants a file (load_documents reads folders)",
                             "{path} はフォルダです。read_text にはファイルを渡します (フォルダは load_documents "
                             "で読めます)", path=path)) from None
    bom = b"\xef\xbb\xbf"
    skip = len(bom) if data.startswith(bom) else 0
    if _looks_binary(data):
        raise CorpusError(tr(
            "{path} looks like a binary file, not text (it holds NUL bytes or mostly undecodable bytes): a corpus "
            "is plain UTF-8 text (.txt). Remove it from the corpus folder, or pass the right file (text in UTF-16 "
            "without a BOM: re-save it as UTF-8).",
            "{path} はテキストではなくバイナリファイルのようです（NUL バイト、またはデコードできないバイトが大半です）。"
            "コーパスはプレーンな UTF-8 テキスト（.txt）です。コーパスのフォルダから外すか、正しいファイルを指定してください"
            "（BOM のない UTF-16 のテキストなら UTF-8 で保存し直してください）。",
            path=path))
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = data[:offset].count(b"\n") + 1
        bad = data[offset : offset + 4].hex(" ").upper()
        guess = _guess_encoding(data)
        hint = tr(" It looks like {guess}.", "{guess} のようです。", guess=guess) if guess else ""
        src = "UTF-16" if guess == "UTF-16" else "SHIFT_JIS"
        raise CorpusError(tr(
            "{path} is not valid UTF-8: bad byte(s) {bad} at byte offset {offset} (line {line}).{hint} "
            "Re-save it as UTF-8, e.g. `iconv -f {src} -t UTF-8 in.txt > out.txt` "
            "(use CP932 or EUC-JP instead of SHIFT_JIS if that is its encoding).",
            "{path} は正しい UTF-8 ではありません: バイトオフセット {offset} ({line} 行目) に不正なバイト {bad} が"
            "あります。{hint}UTF-8 で保存し直してください。例: `iconv -f {src} -t UTF-8 in.txt > out.txt` "
            "(元の文字コードが SHIFT_JIS でなく CP932 や EUC-JP なら、それを指定します)。",
            path=path, bad=bad, offset=offset, line=line, hint=hint, src=src)) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


_CONTROL = bytes(b for b in range(32) if b not in b"\t\n\r\x0c") + b"\x7f"


def _looks_binary(data: bytes) -> bool:
    """NUL bytes, or more than 5% control bytes: text in any encoding has almost none, while compressed
    files, models and executables have 10% and more. (UTF-16 text starts with its BOM: not binary.)"""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    sample = data[: 1 << 16]
    if not sample:
        return False
    return b"\x00" in sample or len(sample) - len(sample.translate(None, _CONTROL)) > 0.05 * len(sample)


def _guess_encoding(data: bytes) -> str | None:
    """A hint for the error message only: which common Japanese encoding decodes ``data``."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    for name, label in (("cp932", "Shift_JIS (CP932)"), ("euc_jp", "EUC-JP")):
        try:
            data.decode(name)
            return label
        except UnicodeDecodeError:
            pass
    return None


def split_documents(text: str) -> list[str]:
    """Split a file's text at lines that are exactly ``---``; drop empty documents.

    >>> split_documents("猫が鳴いた。\\n---\\n犬が走った。\\n")
    ['猫が鳴いた。', '犬が走った。']
    """
    docs, current = [], []
    for line in text.split("\n"):
        if line.rstrip() == SEPARATOR:
            docs.append("\n".join(current))
            current = []
        else:
            current.append(line)
    docs.append("\n".join(current))
    # Strip blank lines around a document, but keep indentation of its first line.
    return [d.strip("\n").rstrip() for d in docs if d.strip()]


def corpus_files(name: str | Path = "embedded") -> list[Path]:
    """The text files of a corpus, in the order they are read."""
    if isinstance(name, str) and name == "embedded":
        files = sorted(EMBEDDED_DIR.glob("*.txt"))
        if not files:
            raise CorpusError(tr(
                "the embedded corpus has no *.txt files in {d}; reinstall minigpt (pip install -e .) or pass a "
                "path to your own corpus",
                "同梱のコーパスの {d} に *.txt ファイルがありません。minigpt をインストールし直す "
                "(pip install -e .) か、自分のコーパスのパスを指定してください", d=EMBEDDED_DIR))
        return files
    path = Path(name).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise CorpusError(tr("no *.txt files found under folder {path}; put UTF-8 .txt files there",
                                 "フォルダ {path} の下に *.txt ファイルがありません。UTF-8 の .txt ファイルを置いて"
                                 "ください", path=path))
        return files
    raise CorpusError(tr(
        "no corpus named {name}: expected 'embedded', a .txt file or a folder of .txt files, but {path} does not "
        "exist",
        "{name} という名前のコーパスはありません。'embedded'、.txt ファイル、.txt ファイルのフォルダのいずれかを"
        "指定してください ({path} は存在しません)", name=repr(str(name)), path=path.resolve()))


def _cut_point(doc: str) -> int:
    """Where to cut a document so that about the last 10% of its characters remain."""
    n = len(doc)
    cut = n - max(1, round(n * VAL_FRACTION))
    # Prefer the newline nearest before the cut (not earlier than 80%), then one shortly after.
    nl = doc.rfind("\n", int(n * 0.8), cut + 1)
    if nl == -1:
        nl = doc.find("\n", cut, int(n * 0.95))
    return nl if nl > 0 else cut


def is_val_id(doc_id) -> bool:
    """The fixed validation rule for corpora with ids: ``int(id) % 20 == 19``.

    >>> is_val_id(39), is_val_id(40)
    (True, False)
    """
    try:
        n = int(doc_id)
    except (TypeError, ValueError):  # a non-numeric id: a stable hash of it instead
        n = int.from_bytes(hashlib.sha1(str(doc_id).encode("utf-8")).digest()[:8], "big")
    return n % VAL_MODULUS == VAL_MODULUS - 1


def uses_document_rule(documents_per_file: Iterable[int]) -> bool:
    """Whether a corpus is split by documents (some file has >= 10) or, failing that, by characters."""
    return any(n >= VAL_EVERY for n in documents_per_file)


def split_of_file(docs: list[str], split: str, by_document: bool) -> Iterator[str]:
    """What one file's documents give to ``split`` ("train", "val" or "all") under the fixed rule.

    ``by_document``: every tenth document (``i % 10 == 9``) is validation; else the last 10% of
    each document's characters is (see the module docstring).

    >>> list(split_of_file([f"d{i}" for i in range(10)], "val", by_document=True))
    ['d9']
    """
    if split == "all":
        yield from docs
        return
    want_val = split == "val"
    for i, d in enumerate(docs):
        if by_document:
            if (i % VAL_EVERY == VAL_EVERY - 1) == want_val:
                yield d
            continue
        cut = _cut_point(d)
        part = d[cut:].lstrip("\n") if want_val else d[:cut].rstrip("\n")
        if part.strip():
            yield part


def load_documents(name: str | Path = "embedded", split: str = "train") -> list[str]:
    """The documents of corpus ``name`` in ``split`` ("train", "val" or "all").

    ``name`` is "embedded" or a path to a .txt file or a folder (see the module docstring for the
    file format and the fixed split). Raises ``CorpusError`` for a missing, empty or non-UTF-8 corpus.

        >>> train = load_documents("embedded", "train")  # doctest: +SKIP
        >>> val = load_documents("embedded", "val")      # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(tr("split must be one of {splits}, got {split!r}", "split は {splits} のどれかにしてください ({split!r} が渡されました)",
                            splits=SPLITS, split=split))
    files = corpus_files(name)
    per_file = [split_documents(read_text(f)) for f in files]
    docs = [d for file_docs in per_file for d in file_docs]
    if not docs:
        shown = ", ".join(str(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")
        raise CorpusError(tr(
            "corpus {name} has no text: {n} file(s) ({shown}) contain only whitespace or '---' separators; add "
            "UTF-8 text to them",
            "コーパス {name} にテキストがありません。{n} 個のファイル ({shown}) には空白か '---' の区切りしか"
            "ありません。UTF-8 のテキストを書き加えてください", name=repr(str(name)), n=len(files), shown=shown))
    by_document = uses_document_rule(len(file_docs) for file_docs in per_file)
    return [d for file_docs in per_file for d in split_of_file(file_docs, split, by_document)]


def corpus_stats(docs: list[str]) -> dict:
    """Counts of a list of documents: ``{"documents", "characters", "bytes"}`` (bytes in UTF-8)."""
    return {
        "documents": len(docs),
        "characters": sum(len(d) for d in docs),
        "bytes": sum(len(d.encode("utf-8")) for d in docs),
    }


def describe_corpus(name: str | Path = "embedded") -> str:
    """A one-line summary: files, documents (train / val), characters and UTF-8 bytes."""
    files = corpus_files(name)
    train, val = load_documents(name, "train"), load_documents(name, "val")
    stats = corpus_stats(load_documents(name, "all"))
    embedded = isinstance(name, str) and name == "embedded"
    label = tr("embedded corpus", "同梱コーパス") if embedded else tr("corpus {name}", "コーパス {name}", name=name)
    return tr("{label}: {files} file(s), {docs} documents (train {train} / val {val}), {chars:,} characters, "
              "{bytes:,} bytes UTF-8",
              "{label}: ファイル {files} 個、文書 {docs} 件 (train {train} / val {val})、{chars:,} 文字、"
              "UTF-8 で {bytes:,} バイト",
              label=label, files=len(files), docs=stats["documents"], train=len(train), val=len(val),
              chars=stats["characters"], bytes=stats["bytes"])
