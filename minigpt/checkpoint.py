"""Checkpoints: a folder you can resume training from, or load a model and its tokenizer from.

    runs/demo/checkpoint/
        model.safetensors   the weights (safetensors: no pickle, so loading cannot run code)
        config.json         model config, train config, tokenizer spec, step, metrics, info,
                            and the sha256 of every other file of the folder
        train_state.pt      optimizer state, step, RNG states, extra state (to resume bit for bit)
        tokenizer.model     a copy of the SentencePiece model, when the tokenizer has one

Four rules make checkpoints safe:

- **Atomic.** Everything is written into a temp folder beside the checkpoint (`.checkpoint.new`);
  only when it is complete is it swapped in with `os.replace`. A crash, Ctrl-C or a full disk
  while saving leaves the previous checkpoint as it was (a full disk raises a one-line
  `CheckpointError`). The old folder is deleted only after the swap; a crash between the swap's
  two renames is finished by the next save or load.
- **Only finite weights.** A model or optimizer state holding NaN or inf is never written: the save
  raises `NonFiniteWeightsError` (a `CheckpointError` and a `TrainingError`) naming the last good
  checkpoint, which is left untouched.
- **Checksummed.** config.json records the sha256 and size of every other file; loading verifies
  them (`verify=True`), so a flipped byte on disk raises `CheckpointError` instead of a model that
  prints nonsense.
- **Checked on load.** A missing file, a corrupt file or weights that do not fit the model raise
  `CheckpointError` with the file and what to do; the model is modified only once everything
  has been checked.

API (what the training loop and the command line call):

    save_checkpoint(path, model, *, step=0, optimizer=None, train_config=None, tokenizer=None,
                    metrics=None, rng_state=None, extra=None, info=None) -> Path
        `info`: a JSON-able dict stored in config.json (readable by people: corpus name and
        fingerprint, seed, ...); `extra`: a dict of tensors, numbers, strings, lists and dicts stored
        in train_state.pt (running metric sums, data positions, ...). Both come back on load.
    load_checkpoint(path, model, optimizer=None, *, data_generator=None, restore_rng=False,
                    verify=True) -> dict
        config.json's dict (with "info") plus "train_state": {"step", "optimizer", "rng", "extra"}.
    load_model(path, device="cpu", *, verify=True) -> (model, tokenizer, meta)
        `path` may be a checkpoint folder or a run folder holding checkpoint/.
    resolve_checkpoint(path) -> Path       a run folder or a checkpoint folder -> the checkpoint folder
    has_checkpoint(path), read_config(path), tokenizer_spec(path), verify_checkpoint(path)
    capture_rng_state(generator), restore_rng_state(state, generator)

    >>> save_checkpoint("runs/x/checkpoint", model, step=100, tokenizer=tok)   # doctest: +SKIP
    >>> model, tok, meta = load_model("runs/x")                               # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

from minigpt.errors import CheckpointError, TrainingError
from minigpt.files import default_file_mode, free_bytes, is_disk_full, sha256_file
from minigpt.i18n import tr

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"
TOKENIZER_FILE = "tokenizer.model"
REQUIRED = (WEIGHTS, CONFIG, TRAIN_STATE)
CHECKPOINT_DIR = "checkpoint"  # the checkpoint's name inside a run folder (runs/x/checkpoint)
FORMAT = "minigpt-checkpoint"
VERSION = 2  # 2: config.json records every file's sha256 ("files") and "info"; version 1 still loads
# Model config fields that may differ between a checkpoint and the model it is loaded into:
# they change how the model runs, not what its weights mean.
RUNTIME_FIELDS = {"dropout", "attn_impl"}


class NonFiniteWeightsError(CheckpointError, TrainingError):
    """The model or optimizer state to be saved holds NaN or inf: nothing was written."""


# --------------------------------------------------------------------------- small helpers
def _fsync_dir(path: Path) -> None:
    try:  # makes the rename durable on POSIX; not possible (nor needed) on Windows
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _is_complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name in REQUIRED)


def _new_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.new")


def _old_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.old")


def _recover(path: Path) -> None:
    """Finish a swap that a crash interrupted between its two renames (see `_swap`)."""
    if path.exists():
        return
    for candidate in (_new_path(path), _old_path(path)):
        if _is_complete(candidate):
            os.replace(candidate, path)
            return


def _swap(tmp: Path, path: Path) -> None:
    """Put the complete folder `tmp` at `path`. The old checkpoint is deleted only at the end.

    A directory cannot be renamed over a non-empty one, so the swap is two renames:
    path -> .old, then tmp -> path. If the process dies between the two, `_recover` finds
    the complete `.new` (or `.old`) folder next time and moves it into place.
    """
    old = _old_path(path)
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def _model_config_dict(model) -> dict | None:
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    if dataclasses.is_dataclass(cfg):
        return dataclasses.asdict(cfg)
    return dict(vars(cfg))


def _jsonable(obj):
    if obj is None:
        return None
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


def _dedupe_shared(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Keep one name per shared tensor (e.g. tied embedding and lm_head weights).

    safetensors refuses two names for one memory, so the second name is stored as an alias
    (alias -> kept name) in the file's metadata and filled back in on load.
    """
    kept: dict[tuple, str] = {}
    tensors, aliases = {}, {}
    for name, t in state.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
        if t.numel() > 0 and key in kept:
            aliases[name] = kept[key]
            continue
        kept[key] = name
        # a detached contiguous CPU copy: safetensors writes plain memory, and views of a
        # bigger storage would otherwise be refused too
        tensors[name] = t.detach().to("cpu").contiguous().clone()
    return tensors, aliases


# --------------------------------------------------------------------------- RNG states
def capture_rng_state(data_generator: torch.Generator | None = None) -> dict:
    """Every RNG state a training step uses, so a resumed run draws the same numbers."""
    state = {"torch_cpu": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    if data_generator is not None:
        state["data_generator"] = data_generator.get_state()
    return state


def restore_rng_state(state: dict, data_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch_cpu"])
    if "python" in state:
        random.setstate(_as_tuple(state["python"]))
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
    if data_generator is not None and "data_generator" in state:
        data_generator.set_state(state["data_generator"])


def _as_tuple(x):
    # random.setstate needs tuples all the way down; some loaders give lists
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- save
def _all_finite(t: torch.Tensor) -> torch.Tensor:
    """A 0-d bool tensor: whether every element of `t` is finite.

    The smallest and largest element are NaN when any element is (aminmax propagates NaN), and
    -inf / inf when one is: one pass, no bool tensor as big as `t` (torch.isfinite(t).all() is
    about 10x slower; bench/checkpoint_integrity.py).
    """
    lo, hi = torch.aminmax(t.detach())
    return torch.isfinite(lo) & torch.isfinite(hi)


def _non_finite(tensors) -> list[str]:
    """Names of the floating-point tensors in (name, tensor) pairs that hold a NaN or an inf."""
    named = [(name, t) for name, t in tensors if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel()]
    if not named:
        return []
    flags = [_all_finite(t).cpu() for _, t in named]
    if bool(torch.stack(flags).all()):
        return []
    return [name for (name, _), ok in zip(named, flags) if not bool(ok)]


def _optimizer_tensors(optimizer):
    for index, state in (optimizer.state_dict().get("state") or {}).items():
        for key, value in state.items():
            yield f"optimizer state {index}.{key}", value


def _describe_last_good(path: Path) -> str:
    if _is_complete(path):
        try:
            step = json.loads((path / CONFIG).read_text(encoding="utf-8")).get("step", "?")
        except (OSError, ValueError):
            step = "?"
        return tr("The last good checkpoint, {path} (step {step}), is left as it was: resume from it with a "
                  "lower --lr (or a longer warmup).",
                  "最後の正常なチェックポイント {path}（ステップ {step}）はそのまま残っています。"
                  "--lr を下げて（またはウォームアップを長くして）そこから再開してください。",
                  path=path, step=step)
    return tr("No checkpoint was written at {path}; train again with a lower --lr.",
              "{path} にはチェックポイントを書いていません。--lr を下げて学習し直してください。", path=path)


def _refuse_non_finite(path: Path, step: int, state: dict, optimizer) -> None:
    bad = _non_finite(state.items())
    if optimizer is not None:
        bad += _non_finite(_optimizer_tensors(optimizer))
    if bad:
        raise NonFiniteWeightsError(tr(
            "refusing to save a checkpoint at step {step}: {n} tensor(s) hold NaN or inf (first: {first}), so "
            "training diverged. {last}",
            "ステップ {step} のチェックポイントは保存しません: {n} 個のテンソルに NaN または inf があります"
            "（最初は {first}）。学習が発散しました。{last}",
            step=step, n=len(bad), first=bad[0], last=_describe_last_good(path)))


_LOADABLE = (str, int, float, bool, type(None), torch.Tensor, torch.Size, torch.dtype, torch.device)


def _check_loadable(obj, where: str) -> None:
    """`extra` is read back with torch.load(weights_only=True): only plain data and tensors pass."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save_checkpoint: key {k!r} in {where} is not a str or int")
            _check_loadable(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_loadable(v, f"{where}[{i}]")
    elif not isinstance(obj, _LOADABLE):
        raise TypeError(f"save_checkpoint: {where} is a {type(obj).__name__}; extra may hold only tensors, "
                        "numbers, strings, None, lists, tuples and dicts (so that it loads without pickle)")


def _check_json(obj, where: str):
    try:
        return json.loads(json.dumps(obj, ensure_ascii=False))
    except (TypeError, ValueError) as e:
        raise TypeError(f"save_checkpoint: {where} must be JSON-able ({e})") from None


def _disk_full_error(path: Path, error: BaseException, free: int | None) -> CheckpointError:
    shown = f"{free / 1e6:.1f} MB" if free is not None else "?"
    last = tr(" The previous checkpoint {path} is untouched.", " 以前のチェックポイント {path} はそのままです。",
              path=path) if _is_complete(path) else ""
    return CheckpointError(tr(
        "cannot save the checkpoint {path}: the disk is full ({free} free; {err}). Nothing half-written was "
        "left behind.{last} Free some space or save into another --out folder, then run again.",
        "チェックポイント {path} を保存できません: ディスクがいっぱいです（空き {free}、{err}）。"
        "書きかけのファイルは残していません。{last}空き容量を作るか別の --out フォルダに保存して、もう一度実行してください。",
        path=path, free=shown, err=type(error).__name__, last=last))


def save_checkpoint(path, model, *, step: int = 0, optimizer=None, train_config=None, tokenizer=None,
                    metrics: dict | None = None, rng_state: dict | None = None, extra: dict | None = None,
                    info: dict | None = None) -> Path:
    """Write a checkpoint folder at `path` atomically and return its path.

    `tokenizer` is a tokenizer object (its `spec()` is stored; a SentencePiece model file is
    copied into the folder so the checkpoint is self-contained) or a spec dict.
    `info` (JSON-able) goes into config.json, `extra` (tensors and plain data) into train_state.pt;
    `load_checkpoint` returns both. Raises `NonFiniteWeightsError` when a weight or optimizer tensor is
    not finite, and `CheckpointError` when the disk is full; in both cases `path` stays as it was.
    """
    path = Path(path)
    state_dict = model.state_dict()
    _refuse_non_finite(path, int(step), state_dict, optimizer)
    extra = extra or {}
    _check_loadable(extra, "extra")
    info = _check_json(info or {}, "info")
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp = _new_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)  # left over from a save that failed half-way; never a real checkpoint
    tmp.mkdir()
    try:
        from safetensors.torch import save_file

        tensors, aliases = _dedupe_shared(state_dict)
        save_file(tensors, tmp / WEIGHTS, metadata={"format": "pt", "aliases": json.dumps(aliases)})
        del tensors
        with open(tmp / TRAIN_STATE, "wb") as f:  # a Python file: a full disk is an OSError, not a C++ one
            torch.save({"step": int(step),
                        "optimizer": optimizer.state_dict() if optimizer is not None else None,
                        "rng": rng_state,
                        "extra": extra}, f)

        spec = _store_tokenizer(tokenizer, tmp)
        mode = default_file_mode()
        files = {}
        for name in sorted(os.listdir(tmp)):
            os.chmod(tmp / name, mode)  # safetensors creates its file with 0600; all files alike
            files[name] = {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
        config = {
            "format": FORMAT,
            "version": VERSION,
            "step": int(step),
            "model_config": _model_config_dict(model),
            "train_config": _jsonable(train_config),
            "tokenizer": spec,
            "metrics": _jsonable(metrics) or {},
            "info": info,
            "files": files,
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        # config.json is written last: a folder with all three files is complete
        (tmp / CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        _swap(tmp, path)
    except BaseException as e:  # also KeyboardInterrupt: the old checkpoint stays, the half-written one goes
        full = isinstance(e, Exception) and is_disk_full(e, path.parent)  # before the space is freed again
        free = free_bytes(path.parent)
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            raise _disk_full_error(path, e, free) from None
        raise
    return path


def _store_tokenizer(tokenizer, folder: Path) -> dict | None:
    if tokenizer is None:
        return None
    spec = dict(tokenizer.spec()) if hasattr(tokenizer, "spec") else dict(tokenizer)
    # A SentencePiece spec points at a .model file somewhere on disk: copy it in, so the
    # checkpoint still loads when that file is moved or deleted.
    for key in ("model_file", "model_path", "path"):
        src = spec.get(key)
        if isinstance(src, str) and src.endswith(".model") and Path(src).is_file():
            shutil.copyfile(src, folder / TOKENIZER_FILE)
            spec[key] = TOKENIZER_FILE  # relative to the checkpoint folder
            break
    return spec


# --------------------------------------------------------------------------- load
def resolve_checkpoint(path) -> Path:
    """The checkpoint folder `path` names: the folder itself, or `path/checkpoint` for a run folder.

    An interrupted checkpoint swap is recovered first, in either place, so `generate --checkpoint
    runs/x` and `--checkpoint runs/x/checkpoint` find the same checkpoint. A path that is neither is
    returned as it is (loading it then raises a CheckpointError that says what to do).
    """
    path = Path(path)
    _recover(path)
    if (path / CONFIG).is_file() or not path.is_dir():
        return path
    inner = path / CHECKPOINT_DIR
    _recover(inner)
    return inner if inner.is_dir() else path


def has_checkpoint(path) -> bool:
    path = Path(path)
    _recover(path)
    return _is_complete(path)


def read_config(path) -> dict:
    """The checkpoint's config.json as a dict (raises CheckpointError if missing or unreadable)."""
    path = Path(path)
    _recover(path)
    if not path.exists():
        raise CheckpointError(tr("no checkpoint at {path}: train one first (python -m minigpt train --out ...) "
                                 "or pass the folder that holds model.safetensors",
                                 "{path} にチェックポイントがありません。先に学習する (python -m minigpt train --out ...) "
                                 "か、model.safetensors のあるフォルダを指定してください", path=path))
    if path.is_file():
        raise CheckpointError(tr("{path} is a file; a checkpoint is a folder with {files}",
                                 "{path} はファイルです。チェックポイントは {files} を含むフォルダです", path=path,
                                 files=", ".join(REQUIRED)))
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise CheckpointError(tr("checkpoint {path} is incomplete: missing {files}; use another checkpoint or "
                                 "train again",
                                 "チェックポイント {path} が不完全です ({files} がありません)。別のチェックポイントを"
                                 "使うか、学習し直してください", path=path, files=", ".join(missing)))
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(tr("{file} is unreadable ({e}); the checkpoint is damaged: use another checkpoint "
                                 "or train again",
                                 "{file} を読めません ({e})。チェックポイントが壊れています。別のチェックポイントを"
                                 "使うか、学習し直してください", file=path / CONFIG, e=e)) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(tr("{file} is not a minigpt checkpoint config (expected \"format\": \"{fmt}\")",
                                 "{file} は minigpt のチェックポイントの設定ではありません "
                                 "(\"format\": \"{fmt}\" がありません)", file=path / CONFIG, fmt=FORMAT))
    return config


def _verify_file(path: Path, name: str, config: dict) -> None:
    """Check one file of the folder against the sha256 and size config.json recorded for it."""
    record = (config.get("files") or {}).get(name)
    if not record:  # a version-1 checkpoint, or a file it does not record
        return
    file = path / name
    size = file.stat().st_size if file.is_file() else None
    actual = sha256_file(file) if size == record.get("bytes") else None
    if actual is not None and actual == record.get("sha256"):
        return
    found = (tr("{n:,} bytes instead of {m:,}", "{n:,} バイト（記録は {m:,} バイト）", n=size, m=record.get("bytes"))
             if actual is None else tr("sha256 {a}... instead of {b}...", "sha256 が {a}...（記録は {b}...）",
                                       a=actual[:12], b=str(record.get("sha256"))[:12]))
    raise CheckpointError(tr(
        "{file} is corrupted: it has {found} recorded in config.json when it was saved (a disk or copy error "
        "changed it). Do not use it: restore the checkpoint folder from a backup, or train again "
        "(python -m minigpt train ... --out a new folder).",
        "{file} は壊れています: 保存時に config.json に記録された値と違い、{found} です（ディスクかコピーの"
        "エラーで変わりました）。使わないでください。バックアップからチェックポイントのフォルダを戻すか、"
        "学習し直してください（python -m minigpt train ... --out 新しいフォルダ）。",
        file=file, found=found))


def verify_checkpoint(path, config: dict | None = None) -> dict:
    """Verify every file of a checkpoint against its recorded sha256; returns the config.

    Raises CheckpointError naming the first corrupted file. A version-1 checkpoint (no hashes
    recorded) passes unchecked.
    """
    path = Path(path)
    config = config if config is not None else read_config(path)
    for name in sorted(config.get("files") or {}):
        _verify_file(path, name, config)
    return config


def tokenizer_spec(path, config: dict | None = None) -> dict | None:
    """The tokenizer spec stored in a checkpoint, with a copied model file made an absolute path."""
    path = Path(path)
    config = config if config is not None else read_config(path)
    spec = config.get("tokenizer")
    if spec is None:
        return None
    spec = dict(spec)
    for key in ("model_file", "model_path", "path"):
        if spec.get(key) == TOKENIZER_FILE:
            spec[key] = str((path / TOKENIZER_FILE).resolve())
    return spec


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    file = path / WEIGHTS
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
        aliases = json.loads(metadata.get("aliases", "{}"))
    except Exception as e:  # safetensors raises its own error types for a damaged header/data
        raise CheckpointError(tr("{file} is corrupt or not a safetensors file ({kind}: {e}); use another "
                                 "checkpoint or train again",
                                 "{file} は壊れているか、safetensors のファイルではありません ({kind}: {e})。"
                                 "別のチェックポイントを使うか、学習し直してください",
                                 file=file, kind=type(e).__name__, e=e)) from None
    for alias, name in aliases.items():
        if name in tensors:
            tensors[alias] = tensors[name]
    return tensors


def _check_weights(path: Path, tensors: dict, model, config: dict) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [(k, tuple(tensors[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in tensors and tuple(tensors[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or wrong):
        return
    problems = []
    if wrong:
        problems += [f"{k} has shape {a} in the file but {b} in the model" for k, a, b in wrong[:3]]
    if missing:
        problems.append(tr("the model has {n} tensors the file lacks (e.g. {first})",
                           "モデルにはファイルにないテンソルが {n} 個あります (例: {first})", n=len(missing), first=missing[0]))
    if unexpected:
        problems.append(tr("the file has {n} tensors the model lacks (e.g. {first})",
                           "ファイルにはモデルにないテンソルが {n} 個あります (例: {first})", n=len(unexpected),
                           first=unexpected[0]))
    saved = config.get("model_config") or {}
    ours = _model_config_dict(model) or {}
    diff = [f"{k}={saved[k]!r} (model: {ours.get(k)!r})" for k in saved if k in ours and saved[k] != ours[k]]
    hint = tr(" The checkpoint was saved with {diff}.", "このチェックポイントは {diff} で保存されています。",
              diff=", ".join(diff)) if diff else ""
    raise CheckpointError(tr(
        "{file} does not match the model: {problems}.{hint} Build the model from the checkpoint's config "
        "(minigpt.checkpoint.load_model(path)) or use a checkpoint of this architecture",
        "{file} はモデルと合いません: {problems}。{hint}チェックポイントの設定からモデルを作る "
        "(minigpt.checkpoint.load_model(path)) か、このアーキテクチャのチェックポイントを使ってください",
        file=path / WEIGHTS, problems="; ".join(problems), hint=hint))


def _check_config(path: Path, config: dict, model) -> None:
    saved, ours = config.get("model_config"), _model_config_dict(model)
    if not saved or not ours:
        return
    diff = [f"{k}: {saved.get(k)!r} in the checkpoint, {ours.get(k)!r} in the model"
            for k in sorted(set(saved) | set(ours)) if k not in RUNTIME_FIELDS and saved.get(k) != ours.get(k)]
    if diff:
        raise CheckpointError(tr(
            "{file} was saved for another model config ({diff}). Build the model from the checkpoint "
            "(minigpt.checkpoint.load_model(path)), or train into another --out folder",
            "{file} は別のモデル設定で保存されています ({diff})。チェックポイントからモデルを作る "
            "(minigpt.checkpoint.load_model(path)) か、別の --out フォルダに学習してください",
            file=path / CONFIG, diff="; ".join(diff[:4])))


def load_checkpoint(path, model, optimizer=None, *, data_generator: torch.Generator | None = None,
                    restore_rng: bool = False, verify: bool = True) -> dict:
    """Load a checkpoint into `model` (and `optimizer`, RNG states) after checking that it fits.

    Returns the config.json dict (with "info") plus "train_state" (step, optimizer, rng, extra).
    Nothing is modified when the checkpoint is missing, damaged (a file whose sha256 differs from
    the one recorded, with `verify=True`) or made for another model.
    """
    path = Path(path)
    config = read_config(path)
    _check_config(path, config, model)
    if verify:
        verify_checkpoint(path, config)
    tensors = _read_weights(path)
    _check_weights(path, tensors, model, config)
    try:
        state = torch.load(path / TRAIN_STATE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(tr("{file} is corrupt ({kind}: {e}); use another checkpoint or train again",
                                 "{file} が壊れています ({kind}: {e})。別のチェックポイントを使うか、学習し直して"
                                 "ください", file=path / TRAIN_STATE, kind=type(e).__name__, e=e)) from None
    if optimizer is not None:
        if state.get("optimizer") is None:
            raise CheckpointError(tr("{file} holds no optimizer state (saved for inference only); it can be "
                                     "loaded with load_model but not resumed",
                                     "{file} にはオプティマイザの状態がありません (推論用に保存されたもの)。"
                                     "load_model で読み込めますが、学習の再開はできません", file=path / TRAIN_STATE))
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(tr("{file}: the optimizer state does not fit ({e}); resume with the same model "
                                     "and optimizer settings",
                                     "{file}: オプティマイザの状態が合いません ({e})。同じモデルとオプティマイザの"
                                     "設定で再開してください", file=path / TRAIN_STATE, e=e)) from None
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)
    if restore_rng and state.get("rng") is not None:
        restore_rng_state(state["rng"], data_generator)
    config.setdefault("info", {})
    return {**config, "train_state": state}


def load_model(path, device="cpu", *, verify: bool = True):
    """Build the model a checkpoint was saved from, load its weights and its tokenizer.

    `path` is a checkpoint folder or a run folder holding one (see `resolve_checkpoint`).
    Returns (model, tokenizer, meta); meta has "path", "step", "metrics", "train_config",
    "model_config", "tokenizer", "info". The model is in eval mode. With `verify`, every file is
    checked against the sha256 recorded in config.json first.

    >>> model, tok, meta = load_model("runs/demo")   # doctest: +SKIP
    """
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    path = resolve_checkpoint(path)
    config = read_config(path)
    if verify:  # what this reads: the weights and the tokenizer (train_state.pt only matters to a resume)
        for name in (WEIGHTS, TOKENIZER_FILE):
            _verify_file(path, name, config)
    try:
        model_config = GPTConfig.from_dict(config["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(tr("{file}: invalid model_config ({e})", "{file}: model_config が不正です ({e})",
                                 file=path / CONFIG, e=e)) from None
    model = GPT(model_config)
    tensors = _read_weights(path)
    _check_weights(path, tensors, model, config)
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    tok = None
    spec = tokenizer_spec(path, config)
    if spec is not None:
        from minigpt.tokenizer import load_tokenizer

        try:
            tok = load_tokenizer(spec, base_dir=path)
        except Exception as e:
            raise CheckpointError(tr("{file}: cannot load its tokenizer {spec} ({e})",
                                     "{file}: 記録されたトークナイザ {spec} を読み込めません ({e})", file=path / CONFIG,
                                     spec=repr(spec), e=e)) from None
    meta = {"path": str(path), "step": config.get("step", 0), "metrics": config.get("metrics", {}),
            "train_config": config.get("train_config"), "model_config": config.get("model_config"),
            "tokenizer": spec, "info": config.get("info", {})}
    return model, tok, meta
