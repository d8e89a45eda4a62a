"""Real corpora by name: Tatoeba, C4-ja, Japanese Wikipedia, and folders of text.

The embedded corpus (minigpt.corpus) is small enough to ship inside the package. Real corpora are
downloaded (or streamed) on demand, cached, and always credited:

    >>> docs = load_tatoeba("train")                      # doctest: +SKIP
    Tatoeba: sentences (c) Tatoeba contributors, https://tatoeba.org, CC BY 2.0 FR ...
    >>> for text in stream_c4_ja("train", limit=3): ...   # doctest: +SKIP

- ``download(url_or_path, cache_dir)``: a file into the cache, with a progress bar. The cache is
  keyed by the whole URL (``CACHE/<hash of the URL>/NAME``, see ``cache_path``), so two URLs that end
  in the same file name never share a file. An interrupted download leaves ``NAME.part``; the next
  call resumes it with an HTTP ``Range`` request (and ``If-Range``, so a file that changed on the
  server is fetched afresh instead of spliced). A local path or a ``file://`` URL is used in place,
  so a mirror on disk replaces any download. Without a network the error names the mirror option.
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
import errno
import hashlib
import http.client
import io
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator

from minigpt import corpus
from minigpt.corpus import VAL_MODULUS, CorpusError, is_val_id
from minigpt.errors import ConfigError, DownloadError
from minigpt.files import is_sha256, sha256_file
from minigpt.i18n import tr

__all__ = [
    "DownloadError",
    "default_cache_dir",
    "cache_path",
    "download",
    "TATOEBA_URL",
    "TATOEBA_ATTRIBUTION",
    "fetch_tatoeba",
    "iter_tatoeba",
    "load_tatoeba",
    "TATOEBA_ORDERS",
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

_USER_AGENT = "minigpt/0.1 (+https://github.com/; a course downloader)"




def default_cache_dir() -> Path:
    """``$MINIGPT_CACHE``, else ``~/.cache/minigpt``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "minigpt").expanduser()


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
        raise DownloadError(tr("cannot download {src}: only http://, https://, file:// and local paths are "
                               "supported",
                               "{src} はダウンロードできません。使えるのは http://、https://、file:// とローカルの"
                               "パスだけです", src=repr(src)))
    return Path(src).expanduser()  # no scheme (or a Windows drive letter): a path


def _normal_sha256(sha256: str | None) -> str | None:
    """A given sha256 in lowercase; a malformed one is refused before anything is downloaded."""
    if sha256 is None:
        return None
    if not is_sha256(sha256):
        raise ConfigError(tr("--sha256 must be 64 hexadecimal digits (a SHA-256 digest), got {v!r}; copy it again "
                             "or leave it out",
                             "--sha256 は 16 進数 64 桁（SHA-256 のダイジェスト）にしてください（値: {v!r}）。"
                             "コピーし直すか、指定しないでください", v=sha256))
    return sha256.strip().lower()


def cache_path(url: str, cache_dir=None, filename: str | None = None) -> Path:
    """Where ``download(url)`` keeps its file: ``CACHE/<first 16 hex digits of sha256(url)>/NAME``.

    >>> cache_path("https://a.example/x.tsv", "/c") != cache_path("https://b.example/x.tsv", "/c")
    True
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = filename or Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name or "download"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache / key / name


def _offline_error(src: str, error: BaseException, mirror_env: str | None) -> DownloadError:
    host = urllib.parse.urlsplit(src).hostname or src
    reason = getattr(error, "reason", error)
    option = (tr("set {env} to a mirror URL or a local copy (e.g. {env}=file:///path/to/{name})",
                 "{env} にミラーの URL かローカルのコピーを指定してください（例: {env}=file:///path/to/{name}）",
                 env=mirror_env, name=Path(urllib.parse.urlsplit(src).path).name or "file")
              if mirror_env else
              tr("pass a local path or a file:// URL of a copy instead",
                 "代わりにコピーのローカルパスか file:// の URL を指定してください"))
    return DownloadError(tr("cannot reach {host} to download {src} ({reason}): is there a network? To work offline, "
                            "{option}",
                            "{src} をダウンロードするために {host} に接続できません（{reason}）。ネットワークに"
                            "つながっていますか。オフラインで使うには、{option}",
                            host=host, src=src, reason=reason, option=option))


_NO_ROUTE = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN)


def _unreachable(error: BaseException) -> bool:
    """No connection at all (DNS fails, network down, refused), as opposed to one that dropped."""
    if isinstance(error, urllib.error.HTTPError):
        return False
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError)) or \
        (isinstance(reason, OSError) and reason.errno in _NO_ROUTE)


def download(url_or_path, cache_dir=None, progress: bool = True, *, filename: str | None = None,
             sha256: str | None = None, retries: int = 2, timeout: float = 60.0,
             chunk_size: int = 1 << 20, mirror_env: str | None = None) -> Path:
    """Fetch ``url_or_path`` into ``cache_dir`` (default ``default_cache_dir()``); return the file's path.

    - An http(s) URL is written to ``cache_dir/NAME.part`` and renamed to ``NAME`` when complete.
      A ``.part`` left by an interrupted download is resumed with ``Range: bytes=N-``; a server
      that ignores Range (status 200) or whose file changed (``If-Range``) restarts it from zero.
      A connection that drops is retried ``retries`` times, each resuming where it stopped.
    - A file that is already in the cache (``cache_path(url)``: keyed by the whole URL) is not
      downloaded again.
    - A local path or a ``file://`` URL is used where it is (nothing is copied).
    - ``sha256``, when known (either case), is checked; a mismatch raises ``DownloadError`` and the
      bytes are kept beside the cache as ``NAME.sha256-mismatch`` for you to inspect. A malformed one
      raises ``ConfigError`` before any request.
    - No network: ``DownloadError`` naming ``mirror_env`` (e.g. MINIGPT_TATOEBA_URL), the variable
      that points at an offline mirror.

    >>> download("file:///data/jpn_sentences.tsv.bz2")   # doctest: +SKIP
    PosixPath('/data/jpn_sentences.tsv.bz2')
    """
    src = str(url_or_path)
    sha256 = _normal_sha256(sha256)
    local = _local_path(src)
    if local is not None:
        if not local.is_file():
            raise DownloadError(tr("{src}: no such file ({local}); check the path, or unset the mirror variable "
                                   "to download from the internet",
                                   "{src}: ファイルがありません ({local})。パスを確かめるか、インターネットから"
                                   "ダウンロードするならミラーの環境変数を外してください", src=src,
                                   local=local.resolve()))
        _check_sha256(local, sha256, keep_bad=False)
        return local

    dest = cache_path(src, cache_dir, filename)
    if dest.is_file() and (sha256 is None or sha256_file(dest) == sha256):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.part")
    for attempt in range(retries + 1):
        try:
            _fetch_into(src, part, progress=progress, timeout=timeout, chunk_size=chunk_size)
            break
        except (OSError, http.client.HTTPException, DownloadError) as e:  # URLError is an OSError
            if isinstance(e, urllib.error.HTTPError) and e.code < 500:
                raise DownloadError(tr("{src}: HTTP {code} {reason}; check the URL, or set a mirror URL or local "
                                       "path (e.g. {env} for Tatoeba)",
                                       "{src}: HTTP {code} {reason}。URL を確かめるか、ミラーの URL かローカルのパスを"
                                       "指定してください (Tatoeba なら {env})", src=src, code=e.code, reason=e.reason,
                                       env=TATOEBA_ENV)) from None
            have = part.stat().st_size if part.exists() else 0
            if have == 0 and _unreachable(e):  # no network: retrying will not help, a mirror will
                raise _offline_error(src, e, mirror_env) from None
            if attempt == retries:
                raise DownloadError(tr(
                    "downloading {src} failed after {have:,} bytes ({kind}: {e}). The partial file is kept at "
                    "{part}: run the same command again to resume, or use a mirror URL or a local copy instead",
                    "{src} のダウンロードが {have:,} バイトで失敗しました ({kind}: {e})。途中までのファイルは "
                    "{part} に残してあります。同じコマンドをもう一度実行すると続きから再開します。ミラーの URL か"
                    "ローカルのコピーを使うこともできます", src=src, have=have, kind=type(e).__name__, e=e,
                    part=part)) from None
            print(tr("download interrupted at {have:,} bytes ({kind}); resuming",
                     "{have:,} バイトでダウンロードが中断しました ({kind})。再開します", have=have, kind=type(e).__name__),
                  file=sys.stderr)
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
            raise DownloadError(tr("the partial file does not fit the server's file; starting again",
                                   "途中までのファイルがサーバのファイルと合わないため、最初からやり直します")) from None
        raise
    with response:
        if response.status == 206:
            start, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(tr("asked for bytes {offset}- but the server sent bytes from {start}",
                                       "{offset} バイト目以降を要求しましたが、サーバは {start} バイト目から送って"
                                       "きました", offset=offset, start=start))
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
        raise DownloadError(tr("the connection closed at {received:,} of {total:,} bytes",
                               "{total:,} バイト中 {received:,} バイトの時点で接続が切れました", received=received,
                               total=total))


def _content_range(value: str) -> tuple[int, int | None]:
    # "bytes 100-199/200" -> (100, 200); the total may be "*" (unknown)
    try:
        unit, rest = value.split(" ", 1)
        span, total = rest.split("/")
        return int(span.split("-")[0]), (None if total.strip() == "*" else int(total))
    except ValueError:
        raise DownloadError(tr("the server answered 206 with a bad Content-Range {value}",
                               "サーバが不正な Content-Range {value} で 206 を返しました", value=repr(value))) from None


def _bytes_bar(name: str, total: int | None, initial: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not progress, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


def _check_sha256(path: Path, expected: str | None, *, keep_bad: bool, shown_name: str | None = None) -> None:
    if expected is None:
        return
    actual = sha256_file(path)
    if actual == expected.lower():
        return
    where = ""
    if keep_bad:
        bad = path.with_name(path.name.removesuffix(".part") + ".sha256-mismatch")
        os.replace(path, bad)
        _info_path(path).unlink(missing_ok=True)
        where = tr(" The bytes are kept at {bad}.", "受け取ったバイトは {bad} に残してあります。", bad=bad)
    raise DownloadError(tr("{name} has sha256 {actual}... but {expected}... was expected: the file is damaged or "
                           "is another version.{where} Download it again, or pass the sha256 of the version you mean "
                           "(or none)",
                           "{name} の sha256 は {actual}... ですが、期待した値は {expected}... です。ファイルが壊れて"
                           "いるか、別の版です。{where}もう一度ダウンロードするか、目的の版の sha256 を指定して"
                           "ください (指定しなくても構いません)", name=shown_name or path, actual=actual[:16],
                           expected=expected[:16], where=where))


# --------------------------------------------------------------------------- Tatoeba
def tatoeba_source(url: str | None = None) -> str:
    """Where Tatoeba comes from: ``url``, else ``$MINIGPT_TATOEBA_URL``, else the official export."""
    return url or os.environ.get(TATOEBA_ENV) or TATOEBA_URL


def fetch_tatoeba(url: str | None = None, cache_dir=None, progress: bool = True, sha256: str | None = None) -> Path:
    """The Tatoeba Japanese export on disk (downloaded into the cache unless a local mirror is named).

    Prints the attribution the license asks for (once the file is there: a failed download prints
    only its error).
    """
    path = download(tatoeba_source(url), cache_dir, progress, sha256=sha256, mirror_env=TATOEBA_ENV)
    _attribute(TATOEBA_ATTRIBUTION)
    return path


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
                    raise CorpusError(tr("{path}, line {n}: expected 'id<TAB>lang<TAB>text'; is this a Tatoeba "
                                         "sentences export (jpn_sentences.tsv.bz2)?",
                                         "{path} の {n} 行目: 'id<TAB>lang<TAB>text' の形ではありません。Tatoeba の"
                                         "例文のエクスポート (jpn_sentences.tsv.bz2) でしょうか?", path=path, n=n))
                if fields[1] == lang and fields[2].strip():
                    yield int(fields[0]), "\t".join(fields[2:])
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise DownloadError(tr("{path} is damaged ({kind}: {e}); delete it and download it again",
                                   "{path} が壊れています ({kind}: {e})。削除してダウンロードし直してください",
                                   path=path, kind=type(e).__name__, e=e)) from None


TATOEBA_ORDERS = ("id", "stride")


def load_tatoeba(split: str = "train", *, url: str | None = None, cache_dir=None, progress: bool = True,
                 sha256: str | None = None, limit: int | None = None, order: str = "id") -> list[str]:
    """Tatoeba's Japanese sentences of ``split`` ("train", "val" or "all"), one document each.

    A sentence is validation when ``id % 20 == 19``. ``limit`` keeps the first N of the split.

    ``order``: "id" lists the sentences as the export does, by id. "stride" lists them by ``(id % 20, id)``:
    one run for each value of ``id % 20`` (19 in the training split), and inside a run neighbours are 20 ids
    apart. ``limit`` is applied first, in id order. Why it matters: sentences with nearby ids are
    often related (one contributor's series, variants of one sentence), and a model trained on a stream in id
    order learns to copy from the sentence before; the validation split, one id in 20, has neighbours 20 ids
    apart. "stride" gives the training stream the same distance (chapter 12, docs/capstone.md).
    """
    if split not in ("train", "val", "all"):
        raise ValueError(tr("split must be 'train', 'val' or 'all', got {split!r}",
                            "split は 'train'、'val'、'all' のどれかにしてください ({split!r} が渡されました)", split=split))
    if order not in TATOEBA_ORDERS:
        raise ValueError(tr("order must be 'id' or 'stride', got {order!r}",
                            "order は 'id' か 'stride' にしてください ({order!r} が渡されました)", order=order))
    path = fetch_tatoeba(url, cache_dir, progress, sha256)
    rows = []
    for sid, text in iter_tatoeba(path):
        if split == "all" or is_val_id(sid) == (split == "val"):
            rows.append((sid, text))
            if limit is not None and len(rows) >= limit:
                break
    if order == "stride":  # iter_tatoeba's ids are integers
        rows.sort(key=lambda row: (row[0] % VAL_MODULUS, row[0]))
    return [text for _, text in rows]


# --------------------------------------------------------------------------- Hugging Face datasets
def _import_datasets():
    try:
        import datasets  # the Hugging Face library (absolute import: not this module)
    except ImportError:
        raise ImportError(tr("this corpus is streamed with Hugging Face `datasets`, which is not installed: "
                             "pip install datasets   (or: pip install -e '.[datasets]')",
                             "このコーパスは Hugging Face の `datasets` でストリーミングしますが、インストールされて"
                             "いません: pip install datasets   (または: pip install -e '.[datasets]')")) from None
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
        raise ValueError(tr("C4 has the splits 'train' and 'val', got {split!r}",
                            "C4 の split は 'train' と 'val' です ({split!r} が渡されました)", split=split))
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
        raise ValueError(tr("split must be 'train', 'val' or 'all', got {split!r}",
                            "split は 'train'、'val'、'all' のどれかにしてください ({split!r} が渡されました)", split=split))
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
    if split not in corpus.SPLITS:
        raise ValueError(tr("split must be one of {splits}, got {split!r}", "split は {splits} のどれかにしてください ({split!r} が渡されました)",
                            splits=corpus.SPLITS, split=split))
    files = corpus.corpus_files(name)

    def docs_of(f):
        return corpus.split_documents(corpus.read_text(f))

    # The rule depends on the whole corpus (does some file have ten documents?): a first look
    # counts documents per file, the second pass streams them.
    by_document = split == "all" or corpus.uses_document_rule(len(docs_of(f)) for f in files)
    any_doc = False
    for f in files:
        docs = docs_of(f)
        any_doc = any_doc or bool(docs)
        yield from corpus.split_of_file(docs, split, by_document)
    if not any_doc:
        raise corpus.CorpusError(tr("corpus {name} has no text; add UTF-8 text to its .txt files",
                                    "コーパス {name} にテキストがありません。その .txt ファイルに UTF-8 のテキストを"
                                    "書き加えてください", name=repr(str(name))))


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
        raise TypeError(tr("unexpected options for corpus {key!r}: {opts}", "コーパス {key!r} にない設定です: {opts}",
                          key=key, opts=sorted(kwargs)))
    return _take(iter_local_documents(name, split), limit)  # "embedded" or a path
