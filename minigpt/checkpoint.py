"""Checkpoints: a folder you can resume training from, or load a model and its tokenizer from.

    runs/demo/checkpoint/
        model.safetensors   the weights (safetensors: no pickle, so loading cannot run code)
        config.json         model config, train config, tokenizer spec, step, metrics
        train_state.pt      optimizer state, step, RNG states (to resume bit for bit)
        tokenizer.model     a copy of the SentencePiece model, when the tokenizer has one

Two rules make checkpoints safe:

- **Atomic.** Everything is written into a temp folder beside the checkpoint (`.checkpoint.new`);
  only when it is complete is it swapped in with `os.replace`. A crash or Ctrl-C while saving
  leaves the previous checkpoint as it was. The old folder is deleted only after the swap.
- **Checked on load.** A missing file, a corrupt file or weights that do not fit the model raise
  `CheckpointError` with the file and what to do; the model is modified only once everything
  has been checked.

    >>> save_checkpoint("runs/x/checkpoint", model, step=100, tokenizer=tok)   # doctest: +SKIP
    >>> model, tok, meta = load_model("runs/x/checkpoint")                    # doctest: +SKIP
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
from minigpt.errors import CheckpointError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"
TOKENIZER_FILE = "tokenizer.model"
REQUIRED = (WEIGHTS, CONFIG, TRAIN_STATE)
FORMAT = "minigpt-checkpoint"
VERSION = 1
# Model config fields that may differ between a checkpoint and the model it is loaded into:
# they change how the model runs, not what its weights mean.
RUNTIME_FIELDS = {"dropout", "attn_impl"}




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
def save_checkpoint(path, model, *, step: int = 0, optimizer=None, train_config=None, tokenizer=None,
                    metrics: dict | None = None, rng_state: dict | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint folder at `path` atomically and return its path.

    `tokenizer` is a tokenizer object (its `spec()` is stored; a SentencePiece model file is
    copied into the folder so the checkpoint is self-contained) or a spec dict.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    tmp = _new_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)  # left over from a save that failed half-way; never a real checkpoint
    tmp.mkdir()
    try:
        from safetensors.torch import save_file

        tensors, aliases = _dedupe_shared(model.state_dict())
        save_file(tensors, tmp / WEIGHTS, metadata={"format": "pt", "aliases": json.dumps(aliases)})

        torch.save({"step": int(step),
                    "optimizer": optimizer.state_dict() if optimizer is not None else None,
                    "rng": rng_state,
                    "extra": extra or {}}, tmp / TRAIN_STATE)

        spec = _store_tokenizer(tokenizer, tmp)
        config = {
            "format": FORMAT,
            "version": VERSION,
            "step": int(step),
            "model_config": _model_config_dict(model),
            "train_config": _jsonable(train_config),
            "tokenizer": spec,
            "metrics": _jsonable(metrics) or {},
            "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        # config.json is written last: a folder with all three files is complete
        (tmp / CONFIG).write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
        for name in os.listdir(tmp):
            _fsync_file(tmp / name)
        _fsync_dir(tmp)
        _swap(tmp, path)
    except BaseException:  # also KeyboardInterrupt: the old checkpoint stays, the half-written one goes
        shutil.rmtree(tmp, ignore_errors=True)
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
def has_checkpoint(path) -> bool:
    path = Path(path)
    _recover(path)
    return _is_complete(path)


def read_config(path) -> dict:
    """The checkpoint's config.json as a dict (raises CheckpointError if missing or unreadable)."""
    path = Path(path)
    _recover(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: train one first (python -m minigpt train --out ...) "
                              "or pass the folder that holds model.safetensors")
    if path.is_file():
        raise CheckpointError(f"{path} is a file; a checkpoint is a folder with {', '.join(REQUIRED)}")
    missing = [name for name in REQUIRED if not (path / name).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}; "
                              "use another checkpoint or train again")
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / CONFIG} is unreadable ({e}); the checkpoint is damaged: "
                              "use another checkpoint or train again") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG} is not a minigpt checkpoint config "
                              f"(expected \"format\": \"{FORMAT}\")")
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
        raise CheckpointError(f"{file} is corrupt or not a safetensors file ({type(e).__name__}: {e}); "
                              "use another checkpoint or train again") from None
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
        problems.append(f"the model has {len(missing)} tensors the file lacks (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"the file has {len(unexpected)} tensors the model lacks (e.g. {unexpected[0]})")
    saved = config.get("model_config") or {}
    ours = _model_config_dict(model) or {}
    diff = [f"{k}={saved[k]!r} (model: {ours.get(k)!r})" for k in saved if k in ours and saved[k] != ours[k]]
    hint = f" The checkpoint was saved with {', '.join(diff)}." if diff else ""
    raise CheckpointError(
        f"{path / WEIGHTS} does not match the model: {'; '.join(problems)}.{hint} Build the model from the "
        "checkpoint's config (minigpt.checkpoint.load_model(path)) or use a checkpoint of this architecture")


def _check_config(path: Path, config: dict, model) -> None:
    saved, ours = config.get("model_config"), _model_config_dict(model)
    if not saved or not ours:
        return
    diff = [f"{k}: {saved.get(k)!r} in the checkpoint, {ours.get(k)!r} in the model"
            for k in sorted(set(saved) | set(ours)) if k not in RUNTIME_FIELDS and saved.get(k) != ours.get(k)]
    if diff:
        raise CheckpointError(
            f"{path / CONFIG} was saved for another model config ({'; '.join(diff[:4])}). Build the model from "
            "the checkpoint (minigpt.checkpoint.load_model(path)), or train into another --out folder")


def load_checkpoint(path, model, optimizer=None, *, data_generator: torch.Generator | None = None,
                    restore_rng: bool = False) -> dict:
    """Load a checkpoint into `model` (and `optimizer`, RNG states) after checking that it fits.

    Returns the config.json dict plus "train_state" (step, rng, extra). Nothing is modified
    when the checkpoint is missing, damaged or made for another model.
    """
    path = Path(path)
    config = read_config(path)
    _check_config(path, config, model)
    tensors = _read_weights(path)
    _check_weights(path, tensors, model, config)
    try:
        state = torch.load(path / TRAIN_STATE, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path / TRAIN_STATE} is corrupt ({type(e).__name__}: {e}); "
                              "use another checkpoint or train again") from None
    if optimizer is not None:
        if state.get("optimizer") is None:
            raise CheckpointError(f"{path / TRAIN_STATE} holds no optimizer state (saved for inference only); "
                                  "it can be loaded with load_model but not resumed")
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path / TRAIN_STATE}: the optimizer state does not fit ({e}); "
                                  "resume with the same model and optimizer settings") from None
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)
    if restore_rng and state.get("rng") is not None:
        restore_rng_state(state["rng"], data_generator)
    return {**config, "train_state": state}


def load_model(path, device="cpu"):
    """Build the model a checkpoint was saved from, load its weights and its tokenizer.

    Returns (model, tokenizer, meta); meta has "step", "metrics", "train_config", "path".
    The model is in eval mode.

    >>> model, tok, meta = load_model("runs/demo/checkpoint")   # doctest: +SKIP
    """
    from minigpt.config import GPTConfig
    from minigpt.model import GPT

    path = Path(path)
    config = read_config(path)
    try:
        model_config = GPTConfig.from_dict(config["model_config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / CONFIG}: invalid model_config ({e})") from None
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
            raise CheckpointError(f"{path / CONFIG}: cannot load its tokenizer {spec!r} ({e})") from None
    meta = {"path": str(path), "step": config.get("step", 0), "metrics": config.get("metrics", {}),
            "train_config": config.get("train_config"), "model_config": config.get("model_config"),
            "tokenizer": spec}
    return model, tok, meta
