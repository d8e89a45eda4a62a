"""Small helpers shared by the command modules."""

from __future__ import annotations

import math
from pathlib import Path

from minigpt.errors import ConfigError
from minigpt.i18n import tr


def say(*args, **kwargs) -> None:
    print(*args, **kwargs, flush=True)


def checkpoint_folder(path) -> Path:
    """A checkpoint folder given itself or the run folder that holds checkpoint/."""
    path = Path(path)
    if not (path / "config.json").exists() and ((path / "checkpoint").is_dir()
                                                 or (path / ".checkpoint.new").is_dir()
                                                 or (path / ".checkpoint.old").is_dir()):
        return path / "checkpoint"  # (minigpt.checkpoint finishes a swap a crash interrupted)
    return path


def require(condition: bool, en: str, ja: str, **fields) -> None:
    """ConfigError(tr(en, ja)) unless condition."""
    if not condition:
        raise ConfigError(tr(en, ja, **fields))


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
