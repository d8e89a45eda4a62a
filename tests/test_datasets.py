"""minigpt.datasets: resumable, checked downloads; Tatoeba from a mirror; C4/Wikipedia through `datasets`.

Offline: Tatoeba is served from ../shared/data/tatoeba/ by a loopback HTTP server started here
(or read through file://); `datasets` is a fake module. Tests that need the internet are marked
`network` and run only with MINIGPT_NETWORK_TESTS=1. No sentence of Tatoeba is stored in this file.
"""

from __future__ import annotations

import bz2
import hashlib
import os
import re
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from minigpt import datasets as ds
from minigpt.corpus import CorpusError, load_documents

TATOEBA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tatoeba"
MIRROR = TATOEBA_DIR / "jpn_sentences.tsv.bz2"
needs_mirror = pytest.mark.skipif(not MIRROR.is_file(), reason=f"Tatoeba mirror not found at {MIRROR} "
                                  "(CI keeps ../shared beside the clone)")
needs_network = pytest.mark.skipif(os.environ.get("MINIGPT_NETWORK_TESTS") != "1",
                                   reason="needs the internet: set MINIGPT_NETWORK_TESTS=1 to run")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # a private cache, no mirror set from outside, and the attribution shown afresh in every test
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    for var in ("MINIGPT_TATOEBA_URL", "MINIGPT_C4_PATH", "MINIGPT_WIKIPEDIA_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(ds, "_ATTRIBUTED", set())


@pytest.fixture(scope="module")
def slice_bytes() -> bytes:
    """The first 3000 lines of the mirror, bz2-compressed again (made at test time, never stored)."""
    if not MIRROR.is_file():
        pytest.skip(f"Tatoeba mirror not found at {MIRROR}")
    lines = []
    with bz2.open(MIRROR, "rt", encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            if len(lines) == 3000:
                break
    return bz2.compress("".join(lines).encode("utf-8"))


# --------------------------------------------------------------------------- a loopback server
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        srv = self.server
        srv.requests.append({"Range": self.headers.get("Range"), "If-Range": self.headers.get("If-Range")})
        data, start = srv.payload, 0
        wanted = self.headers.get("Range")
        if wanted and not srv.ignore_range and self.headers.get("If-Range") in (None, srv.etag):
            start = int(wanted.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", srv.etag)
        self.end_headers()
        if srv.cut_next is not None:  # drop the connection part-way, as a flaky network does
            cut, srv.cut_next = srv.cut_next, None
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(slice_bytes):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.etag, srv.requests = slice_bytes, '"v1"', []
    srv.cut_next, srv.ignore_range = None, False
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/exports/jpn_sentences.tsv.bz2"
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# --------------------------------------------------------------------------- download
def cached(server, cache, suffix=""):
    """Where download(server.url, cache) keeps its file (plus `suffix`: ".part", ".part.json", ...)."""
    path = ds.cache_path(server.url, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(path.name + suffix)


def test_download_over_http_writes_the_file_and_then_uses_the_cache(server, tmp_path):
    path = ds.download(server.url, tmp_path / "c", progress=False)
    assert path == cached(server, tmp_path / "c") and path.name == "jpn_sentences.tsv.bz2"
    assert path.read_bytes() == server.payload
    assert not list(path.parent.glob("*.part*"))
    assert ds.download(server.url, tmp_path / "c", progress=False) == path
    assert len(server.requests) == 1  # the second call found the file in the cache


def test_interrupted_download_keeps_the_part_file_and_resumes_it_with_range(server, tmp_path):
    server.cut_next = 1000
    with pytest.raises(ds.DownloadError, match="run the same command again to resume"):
        ds.download(server.url, tmp_path, progress=False, retries=0)
    part = cached(server, tmp_path, ".part")
    assert part.stat().st_size == 1000
    path = ds.download(server.url, tmp_path, progress=False)
    assert server.requests[-1] == {"Range": "bytes=1000-", "If-Range": server.etag}
    assert path.read_bytes() == server.payload
    assert not part.exists()


def test_a_dropped_connection_is_retried_from_where_it_stopped(server, tmp_path):
    server.cut_next = 777
    path = ds.download(server.url, tmp_path, progress=False, retries=1)
    assert [r["Range"] for r in server.requests] == [None, "bytes=777-"]
    assert path.read_bytes() == server.payload


def test_a_server_that_ignores_range_restarts_the_download(server, tmp_path):
    cached(server, tmp_path, ".part").write_bytes(b"x" * 500)
    server.ignore_range = True
    path = ds.download(server.url, tmp_path, progress=False)
    assert server.requests[-1]["Range"] == "bytes=500-"
    assert path.read_bytes() == server.payload


def test_a_file_that_changed_on_the_server_is_fetched_afresh(server, tmp_path):
    cached(server, tmp_path, ".part").write_bytes(b"old bytes")
    cached(server, tmp_path, ".part.json").write_text('{"validator": "\\"v0\\""}')
    path = ds.download(server.url, tmp_path, progress=False)
    assert server.requests[-1]["If-Range"] == '"v0"'  # the server answered 200: not spliced onto old bytes
    assert path.read_bytes() == server.payload


def test_a_sha256_mismatch_raises_and_keeps_the_bytes_aside(server, tmp_path):
    with pytest.raises(ds.DownloadError, match="sha256"):
        ds.download(server.url, tmp_path, progress=False, sha256="0" * 64)
    assert not cached(server, tmp_path, "").exists()
    assert cached(server, tmp_path, ".sha256-mismatch").read_bytes() == server.payload


def test_a_matching_sha256_is_accepted(server, tmp_path):
    digest = hashlib.sha256(server.payload).hexdigest()
    assert ds.download(server.url, tmp_path, progress=False, sha256=digest).read_bytes() == server.payload


def test_two_urls_with_the_same_file_name_each_download_their_own_file(server, tmp_path):
    first = ds.download(server.url, tmp_path, progress=False)
    other = server.url.replace("/exports/", "/mirror/")  # same name, another URL
    server.payload, server.etag = b"another file", '"v2"'
    second = ds.download(other, tmp_path, progress=False)
    assert first.name == second.name and first != second
    assert len(server.requests) == 2 and second.read_bytes() == b"another file"
    assert ds.download(server.url, tmp_path, progress=False) == first and len(server.requests) == 2


def test_an_uppercase_sha256_is_accepted_and_the_cache_is_reused(server, tmp_path):
    digest = hashlib.sha256(server.payload).hexdigest().upper()
    path = ds.download(server.url, tmp_path, progress=False, sha256=digest)
    assert ds.download(server.url, tmp_path, progress=False, sha256=digest) == path
    assert len(server.requests) == 1


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "0" * 63, "sha256:" + "0" * 64])
def test_a_malformed_sha256_is_refused_before_any_download(server, tmp_path, bad):
    from minigpt.errors import ConfigError

    with pytest.raises(ConfigError, match="64 hexadecimal digits"):
        ds.download(server.url, tmp_path, progress=False, sha256=bad)
    assert server.requests == []


def test_no_network_names_the_offline_mirror_variable(monkeypatch, tmp_path):
    import socket
    import urllib.error

    def no_network(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(ds.urllib.request, "urlopen", no_network)
    with pytest.raises(ds.DownloadError, match=r"cannot reach downloads\.tatoeba\.org.*MINIGPT_TATOEBA_URL=file://") as e:
        ds.fetch_tatoeba(progress=False, cache_dir=tmp_path)
    assert "\n" not in str(e.value)


def test_a_local_path_and_a_file_url_are_used_in_place(slice_bytes, tmp_path):
    src = tmp_path / "mirror" / "jpn_sentences.tsv.bz2"
    src.parent.mkdir()
    src.write_bytes(slice_bytes)
    assert ds.download(str(src), tmp_path / "cache", progress=False) == src
    assert ds.download(src.as_uri(), tmp_path / "cache", progress=False) == src
    assert not (tmp_path / "cache").exists()  # nothing was copied


def test_a_missing_local_file_says_what_to_do(tmp_path):
    with pytest.raises(ds.DownloadError, match="no such file"):
        ds.download(tmp_path / "nope.bz2", progress=False)


def test_an_unsupported_scheme_is_refused():
    with pytest.raises(ds.DownloadError, match="only http"):
        ds.download("ftp://example.org/file", progress=False)


@needs_mirror
def test_the_mirror_has_the_sha256_its_readme_states():
    stated = re.search(r"sha256:\s*([0-9a-f]{64})", (TATOEBA_DIR / "README.md").read_text()).group(1)
    assert ds.download(MIRROR.as_uri(), sha256=stated, progress=False) == MIRROR


# --------------------------------------------------------------------------- Tatoeba
def test_tatoeba_through_a_loopback_server_splits_by_id_and_prints_the_attribution(server, monkeypatch, capsys):
    monkeypatch.setenv("MINIGPT_TATOEBA_URL", server.url)
    train = ds.load_tatoeba("train", progress=False)
    val = ds.load_tatoeba("val", progress=False)
    everything = ds.load_tatoeba("all", progress=False)
    assert "Tatoeba contributors" in capsys.readouterr().err and "CC BY 2.0 FR" in ds.TATOEBA_ATTRIBUTION
    assert len(server.requests) == 1  # downloaded once, then read from the cache
    assert len(train) + len(val) == len(everything) == 3000
    path = ds.cache_path(server.url)
    ids = [sid for sid, _ in ds.iter_tatoeba(path)]
    assert val == [t for sid, t in ds.iter_tatoeba(path) if sid % 20 == 19]
    assert 0 < len(val) < len(train) and len(ids) == 3000


def test_tatoeba_in_stride_order_puts_neighbours_20_ids_apart(slice_bytes, tmp_path):
    src = tmp_path / "jpn_sentences.tsv.bz2"
    src.write_bytes(slice_bytes)
    by_id = ds.load_tatoeba("train", url=src.as_uri(), progress=False)
    strided = ds.load_tatoeba("train", url=src.as_uri(), progress=False, order="stride")
    assert sorted(strided) == sorted(by_id) and strided != by_id  # the same sentences, in another order
    text_to_id = {t: sid for sid, t in ds.iter_tatoeba(src)}
    ids = [text_to_id[t] for t in strided]
    assert ids == sorted(ids, key=lambda n: (n % 20, n))
    gaps = [b - a for a, b in zip(ids, ids[1:]) if a % 20 == b % 20]
    assert gaps and all(g % 20 == 0 for g in gaps) and max(gaps) >= 20
    with pytest.raises(ValueError, match="order"):
        ds.load_tatoeba("train", url=src.as_uri(), progress=False, order="shuffled")


def test_tatoeba_through_a_file_url(slice_bytes, tmp_path):
    src = tmp_path / "jpn_sentences.tsv.bz2"
    src.write_bytes(slice_bytes)
    docs = ds.load_tatoeba("all", url=src.as_uri(), progress=False, limit=10)
    assert len(docs) == 10 and all(isinstance(d, str) and d for d in docs)


def test_a_file_that_is_not_a_tatoeba_export_raises_a_clear_error(tmp_path):
    bad = tmp_path / "sentences.tsv"
    bad.write_text("this is not tab separated\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="id<TAB>lang<TAB>text"):
        ds.load_tatoeba("train", url=str(bad), progress=False)


def test_other_languages_in_an_export_are_skipped(tmp_path):
    f = tmp_path / "sentences.tsv"
    f.write_text("1\teng\tHello.\n2\tjpn\tテスト。\n", encoding="utf-8")
    assert list(ds.iter_tatoeba(f)) == [(2, "テスト。")]


# --------------------------------------------------------------------------- Hugging Face datasets (faked)
def _fake_datasets(rows):
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return iter(rows)

    return types.SimpleNamespace(load_dataset=load_dataset, calls=calls)


def test_c4_ja_is_streamed_from_allenai_c4_and_credited(monkeypatch, capsys):
    fake = _fake_datasets([{"text": "一つ目。"}, {"text": "  "}, {"text": "二つ目。"}, {"text": "三つ目。"}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert list(ds.stream_c4_ja("val", limit=2)) == ["一つ目。", "二つ目。"]
    assert fake.calls == [(("allenai/c4", "ja"), {"split": "validation", "streaming": True})]
    assert "ODC-BY" in capsys.readouterr().err


def test_c4_ja_source_can_be_replaced_by_a_mirror(monkeypatch):
    fake = _fake_datasets([{"text": "本文。"}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.setenv("MINIGPT_C4_PATH", "/data/c4-mirror")
    assert list(ds.iter_documents("c4-ja", "train")) == ["本文。"]
    assert fake.calls[0][0] == ("/data/c4-mirror", "ja")


def test_wikipedia_ja_splits_articles_by_id(monkeypatch, capsys):
    rows = [{"id": str(i), "text": f"記事{i}"} for i in range(1, 41)]
    fake = _fake_datasets(rows)
    monkeypatch.setitem(sys.modules, "datasets", fake)
    assert list(ds.stream_wikipedia_ja("val")) == ["記事19", "記事39"]
    assert fake.calls[0] == (("wikimedia/wikipedia", "20231101.ja"), {"split": "train", "streaming": True})
    assert len(list(ds.stream_wikipedia_ja("train"))) == 38
    assert "Wikipedia contributors" in capsys.readouterr().err


def test_a_missing_datasets_library_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(ImportError, match="pip install datasets"):
        list(ds.stream_c4_ja("train"))


# --------------------------------------------------------------------------- local folders
@pytest.mark.parametrize("split", ["train", "val", "all"])
def test_local_documents_stream_exactly_what_load_documents_returns(split):
    assert list(ds.iter_local_documents("embedded", split)) == load_documents("embedded", split)


def test_a_folder_without_ten_documents_per_file_splits_by_characters(tmp_path):
    (tmp_path / "a.txt").write_text("あ" * 50 + "\n" + "い" * 50, encoding="utf-8")
    (tmp_path / "b.txt").write_text("う" * 100, encoding="utf-8")
    for split in ("train", "val"):
        assert list(ds.iter_local_documents(tmp_path, split)) == load_documents(tmp_path, split)


def test_an_unknown_corpus_name_is_a_clear_error():
    with pytest.raises(CorpusError, match="no corpus named"):
        list(ds.iter_documents("no-such-corpus"))


# --------------------------------------------------------------------------- the internet (opt-in)
@pytest.mark.network
@needs_network
def test_the_real_tatoeba_export_downloads(tmp_path):
    docs = ds.load_tatoeba("val", cache_dir=tmp_path, progress=False)
    assert len(docs) > 5000


@pytest.mark.network
@needs_network
def test_the_real_c4_ja_streams_documents():
    pytest.importorskip("datasets")
    docs = list(ds.stream_c4_ja("val", limit=3))
    assert len(docs) == 3 and all(docs)


def test_the_cli_downloads_tatoeba_from_a_mirror_and_credits_it(slice_bytes, tmp_path, capsys):
    from minigpt.cli import main

    src = tmp_path / "jpn_sentences.tsv.bz2"
    src.write_bytes(slice_bytes)
    assert main(["data", "download", "tatoeba", "--url", src.as_uri(), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert str(src) in out.out and "Tatoeba contributors" in out.err


def test_a_partial_file_from_another_source_is_not_resumed(server, tmp_path):
    cached(server, tmp_path, ".part").write_bytes(b"bytes of another mirror")
    cached(server, tmp_path, ".part.json").write_text('{"url": "http://elsewhere/x", "validator": "\\"v1\\""}')
    path = ds.download(server.url, tmp_path, progress=False)
    assert server.requests[-1]["Range"] is None
    assert path.read_bytes() == server.payload
