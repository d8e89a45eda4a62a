"""English or Japanese: every message a learner reads exists in both languages.

    >>> import os; os.environ["MINIGPT_LANG"] = "ja"
    >>> tr("checkpoint saved", "チェックポイントを保存しました")
    'チェックポイントを保存しました'
    >>> os.environ["MINIGPT_LANG"] = "en"
    >>> tr("{n} steps", "{n} ステップ", n=3)
    '3 steps'
    >>> del os.environ["MINIGPT_LANG"]

The language is chosen, in this order, by ``MINIGPT_LANG`` (``ja`` or ``en``), then by the locale
(``LC_ALL``, ``LC_MESSAGES``, ``LANG`` starting with ``ja``), else English. A notebook of the Japanese
edition (under a folder named ``ja``) sets ``MINIGPT_LANG=ja`` in its kernel through
``minigpt.notebook.setup()``.

Write a message once, with both texts side by side at the place it is raised or printed:
``raise ConfigError(tr("--lr must be positive", "--lr は正の数にしてください"))``. Both arguments are
required, so a message without its translation cannot be written.
"""

from __future__ import annotations

import os

LANGUAGES = ("en", "ja")


def lang() -> str:
    """The current language, "en" or "ja"."""
    value = os.environ.get("MINIGPT_LANG", "").strip().lower()
    if value:
        return "ja" if value.startswith("ja") else "en"
    for key in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(key, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def tr(en: str, ja: str, /, **fields) -> str:
    """The message in the current language, with ``{name}`` fields filled from ``fields``."""
    if not en or not ja:
        raise ValueError("tr() needs both the English and the Japanese text")
    text = ja if lang() == "ja" else en
    return text.format(**fields) if fields else text
