"""Real corpora by name: Tatoeba, C4-ja, Japanese Wikipedia, and folders of text.

The embedded corpus (minigpt.corpus) is small enough to ship inside the package. Real corpora are
downloaded (or streamed) on demand, cached, and always credited:

    >>> docs = load_tatoeba("train")                      # doctest: +SKIP
    Tatoeba: sentences (c) Tatoeba contributors, https://tatoeba.org, CC BY 2.0 FR ...
    >>> for text in stream_c4_ja("train", limit=3): ...   # doctest: +SKIP

- ``download(url_or_path, cache_dir)``: a file into the cache, with a progress bar. An interrupted
  download leaves ``NAME.part``; the next call resumes it with an HTTP ``Range`` request (and
  ``If-Range``, so a file that changed on the server is fetched afresh instead of spliced).
  A local path or a ``file://`` URL is used in place, so a mirror on disk replaces any download.
- Tatoeba's Japanese export (one sentence a line, ``id<TAB>jpn<TAB>text``; CC BY 2.0 FR, credit
  "Tatoeba contributors"). ``MINIGPT_TATOEBA_URL`` (or ``url=``) replaces the download with a
  mirror URL or a local path.
- C4-ja (``allenai/c4``, config ``ja``) and Japanese Wikipedia (``wikimedia/wikipedia``) are
  streamed through Hugging Face ``datasets`` (``pip install datasets``), imported only when used.
  ``MINIGPT_C4_PATH`` / ``MINIGPT_WIKIPEDIA_PATH`` (or ``path=``) name another dataset repo or a
  local copy of it; ``HF_ENDPOINT`` points ``datasets`` at a Hugging Face mirror.
- A local folder of ``.txt`` files, read one file at a time (the split rules of minigpt.corpus).

Environment variables: ``MINIGPT_CACHE`` (default ``~/.cache/minigpt``), ``MINIGPT_TATOEBA_URL``,
``MINIGPT_C4_PATH``, ``MINIGPT_WIKIPEDIA_PATH``.

Train/validation splits are fixed by the document's id, so every run and every learner sees the
same split: a Tatoeba sentence or a Wikipedia article is validation when ``id % 20 == 19`` (5%);
C4 has its own ``validation`` split.
"""

from __future__ import annotations

import bz2
import hashlib
import http.client
import io
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator

from minigpt.corpus import CorpusError
from minigpt.errors import DownloadError

__all__ = [
    "DownloadError",
    "default_cache_dir",
    "download",
    "TATOEBA_URL",
    "TATOEBA_ATTRIBUTION",
    "fetch_tatoeba",
    "iter_tatoeba",
    "load_tatoeba",
    "stream_c4_ja",
    "stream_wikipedia_ja",
    "iter_local_documents",
    "CORPORA",
    "iter_documents",
    "is_val_id",
]

CACHE_ENV = "MINIGPT_CACHE"
TATOEBA_ENV = "MINIGPT_TATOEBA_URL"
C4_ENV = "MINIGPT_C4_PATH"
WIKIPEDIA_ENV = "MINIGPT_WIKIPEDIA_PATH"

TATOEBA_URL = "https://downloads.tatoeba.org/exports/per_language/jpn/jpn_sentences.tsv.bz2"
TATOEBA_ATTRIBUTION = ("Tatoeba: sentences (c) Tatoeba contributors, https://tatoeba.org, "
                       "CC BY 2.0 FR (https://creativecommons.org/licenses/by/2.0/fr/)")
C4_ATTRIBUTION = ("C4 (allenai/c4, ja): ODC-BY 1.0 (https://opendatacommons.org/licenses/by/1-0/), "
                  "text from Common Crawl, subject to its terms of use")
WIKIPEDIA_DATASET = ("wikimedia/wikipedia", "20231101.ja")
WIKIPEDIA_ATTRIBUTION = ("Wikipedia (ja): (c) Wikipedia contributors, CC BY-SA 4.0 "
                         "(https://creativecommons.org/licenses/by-sa/4.0/) and GFDL")

VAL_MODULUS = 20  # id % 20 == 19 -> validation (5%)
_USER_AGENT = "minigpt/0.1 (+https://github.com/; a course downloader)"




def default_cache_dir() -> Path:
    """``$MINIGPT_CACHE``, else ``~/.cache/minigpt``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "minigpt").expanduser()


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


_ATTRIBUTED: set[str] = set()


def _attribute(line: str) -> None:
    """Print a corpus's credit line on stderr, once per process (train and val credit it once)."""
    if line not in _ATTRIBUTED:
        _ATTRIBUTED.add(line)
        print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- download
def _local_path(src: str) -> Path | None:
    """The file a local path or file:// URL names; None for an http(s) URL."""
    parts = urllib.parse.urlsplit(src)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme and len(parts.scheme) > 1:
        raise DownloadError(f"cannot download {src!r}: only http://, https://, file:// and local paths are "
                            "supported")
    return Path(src).expanduser()  # no scheme (or a Windows drive letter): a path


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url_or_path, cache_dir=None, progress: bool = True, *, filename: str | None = None,
             sha256: str | None = None, retries: int = 2, timeout: float = 60.0,
             chunk_size: int = 1 << 20) -> Path:
    """Fetch ``url_or_path`` into ``cache_dir`` (default ``default_cache_dir()``); return the file's path.

    - An http(s) URL is written to ``cache_dir/NAME.part`` and renamed to ``NAME`` when complete.
      A ``.part`` left by an interrupted download is resumed with ``Range: bytes=N-``; a server
      that ignores Range (status 200) or whose file changed (``If-Range``) restarts it from zero.
      A connection that drops is retried ``retries`` times, each resuming where it stopped.
    - A file that is already in the cache is not downloaded again.
    - A local path or a ``file://`` URL is used where it is (nothing is copied).
    - ``sha256``, when known, is checked; a mismatch raises ``DownloadError`` and the bytes are
      kept beside the cache as ``NAME.sha256-mismatch`` for you to inspect.

    >>> download("file:///data/jpn_sentences.tsv.bz2")   # doctest: +SKIP
    PosixPath('/data/jpn_sentences.tsv.bz2')
    """
    src = str(url_or_path)
    local = _local_path(src)
    if local is not None:
        if not local.is_file():
            raise DownloadError(f"{src}: no such file ({local.resolve()}); check the path, or unset the "
                                "mirror variable to download from the internet")
        _check_sha256(local, sha256, keep_bad=False)
        return local

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = filename or Path(urllib.parse.unquote(urllib.parse.urlsplit(src).path)).name or "download"
    dest = cache / name
    if dest.is_file() and (sha256 is None or _file_sha256(dest) == sha256):
        return dest
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f"{name}.part"
    for attempt in range(retries + 1):
        try:
            _fetch_into(src, part, progress=progress, timeout=timeout, chunk_size=chunk_size)
            break
        except (OSError, http.client.HTTPException, DownloadError) as e:  # URLError is an OSError
            if isinstance(e, urllib.error.HTTPError) and e.code < 500:
                raise DownloadError(f"{src}: HTTP {e.code} {e.reason}; check the URL, or set a mirror "
                                    f"URL or local path (e.g. {TATOEBA_ENV} for Tatoeba)") from None
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"downloading {src} failed after {have:,} bytes ({type(e).__name__}: {e}). The partial file "
                    f"is kept at {part}: run the same command again to resume, or use a mirror URL or a local "
                    "copy instead") from None
            print(f"download interrupted at {have:,} bytes ({type(e).__name__}); resuming", file=sys.stderr)
    _check_sha256(part, sha256, keep_bad=True, shown_name=src)
    os.replace(part, dest)
    _info_path(part).unlink(missing_ok=True)
    return dest


def _info_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")  # NAME.part.json: the validator of the partial file


def _fetch_into(url: str, part: Path, *, progress: bool, timeout: float, chunk_size: int) -> None:
    """One HTTP request that appends to (or restarts) ``part``; raises if it ends early."""
    offset = part.stat().st_size if part.exists() else 0
    info_path = _info_path(part)
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("url", url) != url:  # a partial file of another source: never splice the two
            offset = 0
        else:
            headers["Range"] = f"bytes={offset}-"
            if info.get("validator"):
                headers["If-Range"] = info["validator"]  # the server sends the whole file if it changed
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # the range starts past the end: the .part is not what it was
            part.unlink()
            info_path.unlink(missing_ok=True)
            raise DownloadError("the partial file does not fit the server's file; starting again") from None
        raise
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(f"asked for bytes {offset}- but the server sent bytes from {start}")
            mode = "ab"
        else:  # 200: the whole file (the server ignores Range, or the file changed)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        if mode == "wb":
            info_path.write_text(json.dumps({"url": url, "validator": validator}))
        bar = _bytes_bar(part.name.removesuffix(".part"), total, offset, progress)
        received = offset
        try:
            with open(part, mode) as f:
                while True:
                    block = response.read(chunk_size)
                    if not block:
                        break
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if total is not None and received != total:
        raise DownloadError(f"the connection closed at {received:,} of {total:,} bytes")


def _content_range(value: str) -> tuple[int, int | None]:
    # "bytes 100-199/200" -> (100, 200); the total may be "*" (unknown)
    try:
        unit, rest = value.split(" ", 1)
        span, total = rest.split("/")
        return int(span.split("-")[0]), (None if total.strip() == "*" else int(total))
    except ValueError:
        raise DownloadError(f"the server answered 206 with a bad Content-Range {value!r}") from None


def _bytes_bar(name: str, total: int | None, initial: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _check_sha256(path: Path, expected: str | None, *, keep_bad: bool, shown_name: str | None = None) -> None:
    if expected is None:
        return
    actual = _file_sha256(path)
    if actual == expected.lower():
        return
    where = ""
    if keep_bad:
        bad = path.with_name(path.name.removesuffix(".part") + ".sha256-mismatch")
        os.replace(path, bad)
        _info_path(path).unlink(missing_ok=True)
        where = f" The bytes are kept at {bad}."
    raise DownloadError(f"{shown_name or path} has sha256 {actual[:16]}... but {expected[:16]}... was expected: "
                        f"the file is damaged or is another version.{where} Download it again, or pass the "
                        "sha256 of the version you mean (or none)")


# --------------------------------------------------------------------------- Tatoeba
def tatoeba_source(url: str | None = None) -> str:
    """Where Tatoeba comes from: ``url``, else ``$MINIGPT_TATOEBA_URL``, else the official export."""
    return url or os.environ.get(TATOEBA_ENV) or TATOEBA_URL


def fetch_tatoeba(url: str | None = None, cache_dir=None, progress: bool = True, sha256: str | None = None) -> Path:
    """The Tatoeba Japanese export on disk (downloaded into the cache unless a local mirror is named).

    Prints the attribution the license asks for.
    """
    _attribute(TATOEBA_ATTRIBUTION)
    return download(tatoeba_source(url), cache_dir, progress, sha256=sha256)


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        magic = f.read(3)
    raw = bz2.open(path, "rb") if magic == b"BZh" else open(path, "rb")  # bz2 export or a plain .tsv
    return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")


def iter_tatoeba(path, lang: str = "jpn") -> Iterator[tuple[int, str]]:
    """(id, sentence) for every line ``id<TAB>lang<TAB>text`` of a Tatoeba export (.tsv or .tsv.bz2).

    Lines of other languages are skipped, so the all-languages ``sentences.tsv.bz2`` works too.
    """
    path = Path(path)
    with _open_text(path) as f:
        try:
            for n, line in enumerate(f, 1):
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 3 or not fields[0].isdigit():
                    raise CorpusError(f"{path}, line {n}: expected 'id<TAB>lang<TAB>text'; is this a Tatoeba "
                                      "sentences export (jpn_sentences.tsv.bz2)?")
                if fields[1] == lang and fields[2].strip():
                    yield int(fields[0]), "\t".join(fields[2:])
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise DownloadError(f"{path} is damaged ({type(e).__name__}: {e}); delete it and download it "
                                "again") from None


def load_tatoeba(split: str = "train", *, url: str | None = None, cache_dir=None, progress: bool = True,
                 sha256: str | None = None, limit: int | None = None) -> list[str]:
    """Tatoeba's Japanese sentences of ``split`` ("train", "val" or "all"), one document each.

    A sentence is validation when ``id % 20 == 19``. ``limit`` keeps the first N of the split.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    path = fetch_tatoeba(url, cache_dir, progress, sha256)
    docs = []
    for sid, text in iter_tatoeba(path):
        if split == "all" or is_val_id(sid) == (split == "val"):
            docs.append(text)
            if limit is not None and len(docs) >= limit:
                break
    return docs


# --------------------------------------------------------------------------- Hugging Face datasets
def _import_datasets():
    try:
        import datasets  # the Hugging Face library (absolute import: not this module)
    except ImportError:
        raise ImportError("this corpus is streamed with Hugging Face `datasets`, which is not installed: "
                          "pip install datasets   (or: pip install -e '.[datasets]')") from None
    return datasets


def _take(texts: Iterable[str], limit: int | None) -> Iterator[str]:
    for n, text in enumerate(texts):
        if limit is not None and n >= limit:
            return
        yield text


def stream_c4_ja(split: str = "train", *, limit: int | None = None, path: str | None = None,
                 **load_kwargs) -> Iterator[str]:
    """Documents of C4's Japanese part, streamed (nothing big is stored): ``allenai/c4``, config ``ja``.

    split: "train" or "val" (C4's "validation"). path: another dataset repo or a local copy of
    allenai/c4 (default ``$MINIGPT_C4_PATH`` or "allenai/c4"). Extra keywords go to load_dataset.
    """
    datasets = _import_datasets()
    hf_split = {"val": "validation"}.get(split, split)
    if hf_split not in ("train", "validation"):
        raise ValueError(f"C4 has the splits 'train' and 'val', got {split!r}")
    _attribute(C4_ATTRIBUTION)
    name = path or os.environ.get(C4_ENV) or "allenai/c4"
    ds = datasets.load_dataset(name, "ja", split=hf_split, streaming=True, **load_kwargs)
    return _take((row["text"] for row in ds if row["text"].strip()), limit)


def stream_wikipedia_ja(split: str = "train", *, limit: int | None = None, path: str | None = None,
                        config: str | None = None, **load_kwargs) -> Iterator[str]:
    """Japanese Wikipedia articles, streamed: ``wikimedia/wikipedia``, config ``20231101.ja``.

    Wikipedia has one split; an article is validation when ``id % 20 == 19``.
    """
    datasets = _import_datasets()
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    _attribute(WIKIPEDIA_ATTRIBUTION)
    name = path or os.environ.get(WIKIPEDIA_ENV) or WIKIPEDIA_DATASET[0]
    ds = datasets.load_dataset(name, config or WIKIPEDIA_DATASET[1], split="train", streaming=True, **load_kwargs)
    texts = (row["text"] for row in ds
             if row["text"].strip() and (split == "all" or is_val_id(row.get("id")) == (split == "val")))
    return _take(texts, limit)


# --------------------------------------------------------------------------- local folders
def iter_local_documents(name, split: str = "train") -> Iterator[str]:
    """The documents of a .txt file or folder, one file in memory at a time.

    Gives exactly ``minigpt.corpus.load_documents(name, split)``, but streams: a folder bigger
    than memory can be sharded.
    """
    from minigpt import corpus

    if split not in corpus.SPLITS:
        raise ValueError(f"split must be one of {corpus.SPLITS}, got {split!r}")
    files = corpus.corpus_files(name)

    def docs_of(f):
        return corpus.split_documents(corpus.read_text(f))

    # load_documents' rule: every tenth document of each file, unless no file has ten documents
    # (then the last 10% of each document's characters). Deciding needs a first look at the files.
    by_document = split == "all" or any(len(docs_of(f)) >= corpus.VAL_EVERY for f in files)
    any_doc = False
    for f in files:
        for i, d in enumerate(docs_of(f)):
            any_doc = True
            if split == "all":
                yield d
            elif by_document:
                if (i % corpus.VAL_EVERY == corpus.VAL_EVERY - 1) == (split == "val"):
                    yield d
            else:
                cut = corpus._cut_point(d)
                part = d[:cut].rstrip("\n") if split == "train" else d[cut:].lstrip("\n")
                if part.strip():
                    yield part
    if not any_doc:
        raise corpus.CorpusError(f"corpus {str(name)!r} has no text; add UTF-8 text to its .txt files")


# --------------------------------------------------------------------------- by name
CORPORA = {
    "embedded": "the small corpus shipped with minigpt (CC BY 4.0)",
    "tatoeba": "Tatoeba's Japanese sentences, ~190k (CC BY 2.0 FR; downloaded, or $MINIGPT_TATOEBA_URL)",
    "c4-ja": "C4's Japanese web text, streamed (ODC-BY; needs `pip install datasets`)",
    "wikipedia-ja": "Japanese Wikipedia, streamed (CC BY-SA 4.0; needs `pip install datasets`)",
}


def iter_documents(name, split: str = "train", *, limit: int | None = None, progress: bool = True,
                   **kwargs) -> Iterator[str]:
    """Documents of a corpus by name (see CORPORA), or of a .txt file / folder of .txt files.

    >>> next(iter_documents("embedded", "val"))[:5]   # doctest: +SKIP
    """
    key = str(name)
    if key == "tatoeba":
        return iter(load_tatoeba(split, progress=progress, limit=limit, **kwargs))
    if key == "c4-ja":
        return stream_c4_ja(split, limit=limit, **kwargs)
    if key == "wikipedia-ja":
        return stream_wikipedia_ja(split, limit=limit, **kwargs)
    if kwargs:
        raise TypeError(f"unexpected options for corpus {key!r}: {sorted(kwargs)}")
    return _take(iter_local_documents(name, split), limit)  # "embedded" or a path
