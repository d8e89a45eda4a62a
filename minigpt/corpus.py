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

    >>> docs = load_documents("embedded", split="train")
    >>> sorted(corpus_stats(docs))
    ['bytes', 'characters', 'documents']

``split="all"`` gives every document whole, in file order (train and validation together).
"""

from __future__ import annotations

from pathlib import Path
from minigpt.errors import DataError

__all__ = [
    "EMBEDDED_DIR",
    "SPLITS",
    "CorpusError",
    "read_text",
    "split_documents",
    "corpus_files",
    "load_documents",
    "corpus_stats",
    "describe_corpus",
]

EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "corpus"
SPLITS = ("train", "val", "all")
SEPARATOR = "---"
VAL_EVERY = 10  # document i is validation when i % VAL_EVERY == VAL_EVERY - 1
VAL_FRACTION = 0.1  # share of characters for validation in the by-character fallback


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
        raise CorpusError(f"text file not found: {path}") from None
    except IsADirectoryError:
        raise CorpusError(f"{path} is a folder; read_text wants a file (load_documents reads folders)") from None
    bom = b"\xef\xbb\xbf"
    skip = len(bom) if data.startswith(bom) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = data[:offset].count(b"\n") + 1
        bad = data[offset : offset + 4].hex(" ").upper()
        guess = _guess_encoding(data)
        hint = f" It looks like {guess}." if guess else ""
        src = "UTF-16" if guess == "UTF-16" else "SHIFT_JIS"
        raise CorpusError(
            f"{path} is not valid UTF-8: bad byte(s) {bad} at byte offset {offset} (line {line}).{hint} "
            f"Re-save it as UTF-8, e.g. `iconv -f {src} -t UTF-8 in.txt > out.txt` "
            f"(use CP932 or EUC-JP instead of SHIFT_JIS if that is its encoding)."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
            raise CorpusError(
                f"the embedded corpus has no *.txt files in {EMBEDDED_DIR}; "
                "reinstall minigpt (pip install -e .) or pass a path to your own corpus"
            )
        return files
    path = Path(name).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise CorpusError(f"no *.txt files found under folder {path}; put UTF-8 .txt files there")
        return files
    raise CorpusError(
        f"no corpus named {str(name)!r}: expected 'embedded', a .txt file or a folder of .txt files, "
        f"but {path.resolve()} does not exist"
    )


def _cut_point(doc: str) -> int:
    """Where to cut a document so that about the last 10% of its characters remain."""
    n = len(doc)
    cut = n - max(1, round(n * VAL_FRACTION))
    # Prefer the newline nearest before the cut (not earlier than 80%), then one shortly after.
    nl = doc.rfind("\n", int(n * 0.8), cut + 1)
    if nl == -1:
        nl = doc.find("\n", cut, int(n * 0.95))
    return nl if nl > 0 else cut


def load_documents(name: str | Path = "embedded", split: str = "train") -> list[str]:
    """The documents of corpus ``name`` in ``split`` ("train", "val" or "all").

    ``name`` is "embedded" or a path to a .txt file or a folder (see the module docstring for the
    file format and the fixed split). Raises ``CorpusError`` for a missing, empty or non-UTF-8 corpus.

        >>> train = load_documents("embedded", "train")  # doctest: +SKIP
        >>> val = load_documents("embedded", "val")      # doctest: +SKIP
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    files = corpus_files(name)
    per_file = [split_documents(read_text(f)) for f in files]
    docs = [d for file_docs in per_file for d in file_docs]
    if not docs:
        shown = ", ".join(str(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")
        raise CorpusError(
            f"corpus {str(name)!r} has no text: {len(files)} file(s) ({shown}) contain only "
            "whitespace or '---' separators; add UTF-8 text to them"
        )
    if split == "all":
        return docs

    if any(len(file_docs) >= VAL_EVERY for file_docs in per_file):
        # The document rule: every tenth document of each file is validation.
        want_val = split == "val"
        return [
            d
            for file_docs in per_file
            for i, d in enumerate(file_docs)
            if (i % VAL_EVERY == VAL_EVERY - 1) == want_val
        ]

    # Too few documents for the rule: split each document by characters instead.
    out = []
    for d in docs:
        cut = _cut_point(d)
        part = d[:cut].rstrip("\n") if split == "train" else d[cut:].lstrip("\n")
        if part.strip():
            out.append(part)
    return out


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
    label = "embedded corpus" if isinstance(name, str) and name == "embedded" else f"corpus {name}"
    return (
        f"{label}: {len(files)} file(s), {stats['documents']} documents "
        f"(train {len(train)} / val {len(val)}), {stats['characters']:,} characters, "
        f"{stats['bytes']:,} bytes UTF-8"
    )
