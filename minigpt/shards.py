"""Token shards: tokenize a corpus once, in parallel, into memory-mapped files; train from them.

The embedded corpus fits in memory as one tensor (minigpt.data). A real corpus does not, and
tokenizing it again at every run would waste hours. So it is tokenized once into *shards*:

    shards/tatoeba/
        meta.json            tokenizer spec, dtype, and per split: every shard's file, tokens, chars
        train_000000.bin     raw token ids, uint16 (vocab <= 65536) or uint32, EOS after each document
        train_000001.bin
        val_000000.bin
        sp.model             a copy of the SentencePiece model, if the tokenizer has one

    >>> write_shards(iter_documents("tatoeba", "train"), tok, "shards/tatoeba", "train")  # doctest: +SKIP
    >>> train = ShardedTokens("shards/tatoeba", "train")                                  # doctest: +SKIP
    >>> x, y = train.get_batch(batch_size=8, seq_len=256, generator=g)                    # doctest: +SKIP

How it stays fast and small:

- The documents are cut into groups of about ``shard_chars`` characters *before* tokenizing, so
  shard ``i`` always holds the same documents. Worker processes tokenize groups in parallel and
  each writes its own shard (to a temp name, renamed when complete); meta.json is rewritten after
  every finished shard. Re-running skips every shard whose documents (a hash of their text) and
  file are unchanged, so an interrupted run continues where it stopped.
- At most ``2 * workers`` groups are in flight, so memory stays flat however big the corpus is.
- ``ShardedTokens`` opens the files with ``np.memmap``: a batch reads only its windows' bytes
  from disk (the OS page cache does the rest). Windows never cross a shard boundary.
- ``rank``/``world_size`` give each data-parallel process its own disjoint part of every shard.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from minigpt.errors import DataError
from minigpt.files import free_bytes, is_disk_full
from minigpt.i18n import tr

__all__ = ["DEFAULT_SHARD_CHARS", "ShardError", "dtype_for_vocab", "write_shards", "read_meta",
           "ShardedTokens", "sample_batch", "load_shard_data"]

FORMAT = "minigpt-shards"
VERSION = 1
META = "meta.json"
DEFAULT_SHARD_CHARS = 20_000_000  # ~10M tokens, ~20 MB of uint16 per shard


class ShardError(DataError):
    """Shards are missing, incomplete or made with another tokenizer. The message says what to do."""


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 holds ids 0..65535, so a vocabulary of up to 65536 tokens; uint32 beyond that.

    >>> dtype_for_vocab(32000), dtype_for_vocab(100_000)
    (dtype('uint16'), dtype('uint32'))
    """
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


def shard_name(split: str, index: int) -> str:
    return f"{split}_{index:06d}.bin"


# --------------------------------------------------------------------------- meta.json
def read_meta(path) -> dict:
    """The shards folder's meta.json (raises ShardError if there is none)."""
    file = Path(path) / META
    if not file.is_file():
        raise ShardError(tr("no {meta} in {path}: make shards first, e.g. {cmd}",
                            "{path} に {meta} がありません。先にシャードを作ってください。例: {cmd}", meta=META,
                            path=path, cmd=f"python -m minigpt data shard --corpus tatoeba --tokenizer gpt2 --out {path}"))
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ShardError(tr("{file} is unreadable ({e}); delete the folder and make the shards again",
                            "{file} を読めません ({e})。フォルダを削除してシャードを作り直してください", file=file,
                            e=e)) from None
    if meta.get("format") != FORMAT:
        raise ShardError(tr("{file} is not a minigpt shards file (no \"format\": \"{fmt}\")",
                            "{file} は minigpt のシャードのファイルではありません (\"format\": \"{fmt}\" がありません)",
                            file=file, fmt=FORMAT))
    return meta


def _write_meta(path: Path, meta: dict) -> None:
    tmp = path / f".{META}.tmp"
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path / META)  # atomic: a crash leaves the previous meta.json


def _spec_of(tokenizer) -> dict:
    spec = tokenizer.spec() if hasattr(tokenizer, "spec") else None
    if not isinstance(spec, dict):
        raise TypeError(tr("{tok!r} has no spec(): shards record the tokenizer that made them",
                          "{tok!r} には spec() がありません。シャードは作成に使ったトークナイザを記録します", tok=tokenizer))
    return spec


def _same_tokenizer(a: dict, b: dict) -> bool:
    # A SentencePiece spec names a file path; the hash is what identifies the model.
    if a.get("type") == b.get("type") == "sentencepiece":
        return a.get("sha256") == b.get("sha256")
    return a == b


# --------------------------------------------------------------------------- writing
def _groups(docs: Iterable[str], shard_chars: int) -> Iterator[tuple[list[str], int]]:
    """Consecutive documents in groups of at least ``shard_chars`` characters (the last may be smaller)."""
    group, chars = [], 0
    for doc in docs:
        group.append(doc)
        chars += len(doc)
        if chars >= shard_chars:
            yield group, chars
            group, chars = [], 0
    if group:
        yield group, chars


def _fingerprint(docs: list[str]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for d in docs:
        h.update(d.encode("utf-8"))
        h.update(b"\x00")  # a separator, so ["ab", "c"] and ["a", "bc"] differ
    return h.hexdigest()


_WORKER_TOKENIZER = None


def _init_worker(spec: dict) -> None:
    global _WORKER_TOKENIZER
    from minigpt.tokenizer import load_tokenizer

    # One thread per worker: the workers are the parallelism (HF tokenizers would start a pool in each).
    os.environ["TOKENIZERS_PARALLELISM"] = "false"

    _WORKER_TOKENIZER = load_tokenizer(spec)


def _tokenize_shard(job: tuple, tokenizer=None) -> dict:
    """Encode one group of documents (EOS after each) and write it as one shard file."""
    folder, split, index, docs, chars, fingerprint, dtype_name = job
    tok = tokenizer if tokenizer is not None else _WORKER_TOKENIZER
    dtype = np.dtype(dtype_name)
    eos = (tok.eos_id,)
    ids = tok.encode_batch(docs)
    out = np.fromiter(itertools.chain.from_iterable(itertools.chain(x, eos) for x in ids), dtype=dtype)
    name = shard_name(split, index)
    tmp = Path(folder) / f".{name}.tmp"
    try:
        out.tofile(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written shard behind
        raise
    os.replace(tmp, Path(folder) / name)  # a shard file exists only once it is complete
    return {"file": name, "tokens": int(out.size), "chars": chars, "docs": len(docs), "fingerprint": fingerprint}


def _is_done(folder: Path, record: dict | None, fingerprint: str, itemsize: int) -> bool:
    if not record or record.get("fingerprint") != fingerprint:
        return False
    file = folder / record["file"]
    return file.is_file() and file.stat().st_size == record["tokens"] * itemsize


def write_shards(docs: Iterable[str], tokenizer, out_dir, split: str = "train", *,
                 shard_chars: int = DEFAULT_SHARD_CHARS, workers: int | None = None, progress: bool = True,
                 total_chars: int | None = None, mp_context: str = "spawn") -> dict:
    """Tokenize ``docs`` into shards ``out_dir/{split}_NNNNNN.bin``; returns the split's summary.

    workers: processes that tokenize in parallel (default: the CPU count, at most 8; 0 or 1:
    in this process). Shards already done (same documents, same tokenizer) are skipped.
    total_chars: the corpus size, if known, for the progress bar's total.
    Returns {"shards", "tokens", "chars", "docs", "skipped", "written", "dtype"}.
    """
    if shard_chars <= 0:
        raise ValueError(tr("shard_chars must be positive", "shard_chars は正の数にしてください"))
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    spec = _spec_of(tokenizer)
    dtype = dtype_for_vocab(tokenizer.vocab_size)
    meta = read_meta(folder) if (folder / META).is_file() else None
    if meta is not None and not _same_tokenizer(meta["tokenizer"], spec):
        raise ShardError(tr("{folder} holds shards made with another tokenizer ({t}, vocab {v}); write to another "
                            "--out folder, or delete this one",
                            "{folder} には別のトークナイザ ({t}、語彙サイズ {v}) で作ったシャードがあります。別の "
                            "--out フォルダに書き出すか、このフォルダを削除してください", folder=folder,
                            t=meta["tokenizer"].get("type"), v=meta.get("vocab_size")))
    if meta is None:
        meta = {"format": FORMAT, "version": VERSION, "tokenizer": spec, "vocab_size": tokenizer.vocab_size,
                "eos_id": tokenizer.eos_id, "dtype": dtype.name, "splits": {}}
        model_file = spec.get("model_file")
        if isinstance(model_file, str) and Path(model_file).is_file():
            # a copy of the SentencePiece model travels with the shards (found there by load_shard_data)
            shutil.copyfile(model_file, folder / Path(model_file).name)
    old = meta["splits"].get(split, {})
    old_records = old.get("shards", [])
    records: list[dict | None] = list(old_records)
    entry = {"complete": False, "shard_chars": shard_chars, "shards": records}
    meta["splits"][split] = entry
    _write_meta(folder, meta)

    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    parallel = workers > 1
    bar = _chars_bar(f"shard {split}", total_chars, progress)
    skipped = written = n_groups = 0

    def finished(index: int, record: dict) -> None:
        nonlocal written
        while len(records) <= index:
            records.append(None)
        records[index] = record
        written += 1
        _write_meta(folder, meta)
        bar.update(record["chars"])

    pool = None
    pending = {}
    try:
        if parallel:
            import multiprocessing

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(mp_context),
                                       initializer=_init_worker, initargs=(spec,))
        for index, (group, chars) in enumerate(_groups(docs, shard_chars)):
            n_groups = index + 1
            fingerprint = _fingerprint(group)
            if _is_done(folder, old_records[index] if index < len(old_records) else None, fingerprint,
                        dtype.itemsize):
                skipped += 1
                bar.update(chars)
                continue
            job = (str(folder), split, index, group, chars, fingerprint, dtype.name)
            if pool is None:
                finished(index, _tokenize_shard(job, tokenizer))
                continue
            pending[pool.submit(_tokenize_shard, job)] = index
            while len(pending) >= 2 * workers:  # bounded: memory stays flat
                _collect(pending, finished)
        while pending:
            _collect(pending, finished)
    except Exception as e:
        if not is_disk_full(e, folder):
            raise
        free = free_bytes(folder)
        raise ShardError(tr(
            "cannot write the shards in {folder}: the disk is full ({free} free; {err}). The shards finished so "
            "far are kept: free some space (or pass another --out) and run the same command again to continue.",
            "{folder} にシャードを書けません: ディスクがいっぱいです（空き {free}、{err}）。書き終えたシャードは"
            "残っています。空き容量を作って（または別の --out を指定して）同じコマンドをもう一度実行すると続きから再開します。",
            folder=folder, free=f"{free / 1e6:.1f} MB" if free is not None else "?", err=type(e).__name__)) from None
    finally:
        for future in pending:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    # The corpus may have become shorter since a previous run: drop shards past its end.
    for record in records[n_groups:]:
        if record:
            (folder / record["file"]).unlink(missing_ok=True)
    del records[n_groups:]
    if n_groups == 0:
        raise ShardError(tr("no documents to shard for split {split}: the corpus is empty",
                            "分割 {split} にシャードにする文書がありません。コーパスが空です", split=repr(split)))
    entry.update(complete=True, tokens=sum(r["tokens"] for r in records), chars=sum(r["chars"] for r in records),
                 docs=sum(r["docs"] for r in records))
    _write_meta(folder, meta)
    return {"shards": n_groups, "tokens": entry["tokens"], "chars": entry["chars"], "docs": entry["docs"],
            "skipped": skipped, "written": written, "dtype": dtype.name}


def _collect(pending: dict, finished) -> None:
    """Wait for at least one shard to finish and record it."""
    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    for future in done:
        index = pending.pop(future)
        finished(index, future.result())  # a worker's exception is raised here


def _chars_bar(desc: str, total: int | None, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="char", unit_scale=True, disable=not progress, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


# --------------------------------------------------------------------------- reading
class ShardedTokens:
    """The token stream of one split, read from its memory-mapped shards.

    ``len(st)`` is the split's token count; ``st.get_batch(B, T, generator, device)`` draws B
    random windows of T + 1 tokens, like ``minigpt.data.get_batch`` on an in-memory stream (with a
    single shard and one process it draws the very same windows). With ``rank``/``world_size``,
    process ``rank`` draws only from its own ``1/world_size`` slice of every shard.
    """

    def __init__(self, path, split: str = "train", *, rank: int = 0, world_size: int = 1):
        self.path = Path(path)
        meta = read_meta(self.path)
        entry = meta["splits"].get(split)
        if entry is None:
            raise ShardError(tr("{path} has no {split} shards (it has {have}); make them with {cmd}",
                                "{path} には {split} のシャードがありません (あるのは {have})。次のコマンドで作って"
                                "ください: {cmd}", path=self.path, split=repr(split), have=sorted(meta["splits"]),
                                cmd=f"python -m minigpt data shard ... --out {self.path}"))
        if not entry.get("complete"):
            raise ShardError(tr("the {split} shards in {path} are incomplete (the run that made them stopped); run "
                                "the same `data shard` command again to finish them",
                                "{path} の {split} のシャードは不完全です (作成中に止まりました)。同じ `data shard` "
                                "コマンドをもう一度実行して仕上げてください", split=repr(split), path=self.path))
        if not 0 <= rank < world_size:
            raise ValueError(tr("need 0 <= rank < world_size, got rank={rank}, world_size={world_size}",
                                "0 <= rank < world_size が必要です (rank={rank}, world_size={world_size})",
                                rank=rank, world_size=world_size))
        self.meta, self.split, self.rank, self.world_size = meta, split, rank, world_size
        self.dtype = np.dtype(meta["dtype"])
        self.files = [self.path / r["file"] for r in entry["shards"]]
        self.lengths = [int(r["tokens"]) for r in entry["shards"]]
        self.chars = int(entry["chars"])
        for file, n in zip(self.files, self.lengths):
            if not file.is_file() or file.stat().st_size != n * self.dtype.itemsize:
                raise ShardError(tr("{file} is missing or has the wrong size; run the `data shard` command again",
                                    "{file} がないか、サイズが違います。`data shard` コマンドをもう一度実行してください",
                                    file=file))
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return sum(self.lengths)

    def __repr__(self) -> str:
        return (f"ShardedTokens({str(self.path)!r}, {self.split!r}, {len(self.files)} shards, {len(self):,} tokens, "
                f"rank {self.rank}/{self.world_size})")

    def shard(self, i: int) -> np.memmap:
        """Shard ``i`` as a read-only memory map (opened on first use)."""
        if i not in self._maps:
            self._maps[i] = np.memmap(self.files[i], dtype=self.dtype, mode="r")
        return self._maps[i]

    def window_ranges(self, seq_len: int) -> list[tuple[int, int, int]]:
        """(shard, lo, hi) for every shard: this rank draws windows of seq_len + 1 tokens starting in [lo, hi)."""
        need = seq_len + 1
        out = []
        for i, n in enumerate(self.lengths):
            starts = n - need + 1  # windows that fit in shard i
            if starts <= 0:
                continue
            lo = starts * self.rank // self.world_size
            hi = starts * (self.rank + 1) // self.world_size
            if hi > lo:
                out.append((i, lo, hi))
        return out

    def get_batch(self, batch_size: int, seq_len: int, generator=None, device="cpu"):
        """``batch_size`` windows of ``seq_len + 1`` tokens -> (x, y) LongTensors of shape (B, T)."""
        import torch

        need = seq_len + 1
        ranges = self.window_ranges(seq_len)
        if not ranges:
            longest = max(self.lengths, default=0)
            raise ValueError(tr("no shard of {path} ({split}) holds a window of seq_len + 1 = {need} tokens for rank "
                                "{rank} of {world} (the longest shard has {longest}); use a smaller seq_len, larger "
                                "shards (--shard-chars) or fewer processes",
                                "{path} ({split}) のシャードには、プロセス {rank}/{world} 用の seq_len + 1 = {need} "
                                "トークンのウィンドウが入りません (最長のシャードは {longest} トークン)。seq_len を"
                                "小さくするか、シャードを大きくする (--shard-chars) か、プロセスを減らしてください",
                                path=self.path, split=self.split, need=need, rank=self.rank, world=self.world_size,
                                longest=longest))
        if len(ranges) == 1:
            # The same draw as minigpt.data.get_batch, so one shard reproduces in-memory training.
            i, lo, hi = ranges[0]
            shard_ids = [i] * batch_size
            starts = (torch.randint(0, hi - lo, (batch_size,), generator=generator) + lo).tolist()
        else:
            # A shard with probability proportional to its windows, then a uniform start in it.
            counts = torch.tensor([hi - lo for _, lo, hi in ranges], dtype=torch.float64)
            which = torch.multinomial(counts, batch_size, replacement=True, generator=generator)  # (B,)
            u = torch.rand(batch_size, generator=generator, dtype=torch.float64)  # (B,)
            shard_ids, starts = [], []
            for k, r in zip(which.tolist(), u.tolist()):
                i, lo, hi = ranges[k]
                shard_ids.append(i)
                starts.append(lo + min(int(r * (hi - lo)), hi - lo - 1))
        # Only these B windows are read from disk.
        windows = np.stack([self.shard(i)[s:s + need] for i, s in zip(shard_ids, starts)]).astype(np.int64)
        windows = torch.from_numpy(windows)  # (B, T+1)
        x, y = windows[:, :-1].contiguous(), windows[:, 1:].contiguous()  # (B, T), (B, T)
        device = torch.device(device)
        if device.type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x.to(device), y.to(device)

    def read_all(self):
        """Every token of the split as one int64 tensor (for tests and small corpora only)."""
        import torch

        return torch.from_numpy(np.concatenate([np.asarray(self.shard(i)) for i in range(len(self.files))])
                                .astype(np.int64))


def sample_batch(source, batch_size: int, seq_len: int, generator=None, device="cpu"):
    """A batch from an in-memory stream (a 1-D tensor) or from anything with ``get_batch`` (ShardedTokens)."""
    if hasattr(source, "get_batch"):
        return source.get_batch(batch_size, seq_len, generator, device)
    from minigpt.data import get_batch

    return get_batch(source, batch_size, seq_len, generator, device)


def load_shard_data(path, *, rank: int = 0, world_size: int = 1, load_tokenizer: bool = True):
    """A ``minigpt.data.TokenData`` whose train/val streams are shards (train split among the ranks).

    Validation is not split: every rank sees the same validation stream.
    """
    from minigpt.data import TokenData

    train = ShardedTokens(path, "train", rank=rank, world_size=world_size)
    val = ShardedTokens(path, "val")
    tok = None
    if load_tokenizer:
        from minigpt.tokenizer import load_tokenizer as _load

        tok = _load(train.meta["tokenizer"], base_dir=path)  # the copy in the folder if the original moved
    return TokenData(train=train, val=val, train_chars=train.chars, val_chars=val.chars, tokenizer=tok)
