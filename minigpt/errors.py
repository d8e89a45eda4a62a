"""Errors a user can fix: one base class, one subclass per area.

The command line prints a `MinigptError` as one line, ``error: <message>``, and exits with status 2;
any other exception is a bug in minigpt and keeps its traceback. A message says what went wrong
*and what to do next* (which option, which file, which command).

Each class also derives from the built-in exception that code catching errors by kind expects
(a bad value is still a ``ValueError``), so ``except ValueError`` keeps working.

>>> issubclass(ConfigError, MinigptError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations


class MinigptError(Exception):
    """A problem with the user's input, files or machine that the user can fix."""


class ConfigError(MinigptError, ValueError):
    """A setting or command-line value is invalid (a negative learning rate, an unknown preset)."""


class DataError(MinigptError, ValueError):
    """A corpus or token shard cannot be read or is too small for the run."""


class TokenizerError(MinigptError, ValueError):
    """A tokenizer cannot be trained or loaded (vocabulary size, a broken .model file)."""


class CheckpointError(MinigptError):
    """A checkpoint cannot be saved, verified or loaded."""


class DownloadError(MinigptError, RuntimeError):
    """A download failed or gave the wrong bytes."""


class DeviceError(MinigptError, RuntimeError):
    """The requested device (cuda, mps, ...) is not available in this torch build or machine."""


class TrainingError(MinigptError, RuntimeError):
    """Training cannot go on (the loss or a gradient became non-finite)."""


class RunLockedError(MinigptError):
    """Another process is writing to the same run folder."""


class ExportError(MinigptError):
    """A model cannot be exported to the transformers format."""
