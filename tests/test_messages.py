"""Every message a user reads exists in English and Japanese (issue 17 item 3).

Static checks over the source of minigpt/ (no imports of the code under test) and two end-to-end runs:
- every MinigptError (and subclass) is built from ``tr(...)``, so it cannot exist in one language only;
- what the command line, ``doctor`` and ``demo`` print is ``tr(...)`` output, not a bare English literal;
- the English and Japanese texts of every ``tr`` call have the same ``{fields}``, and the call passes them;
- ``MINIGPT_LANG=ja`` makes ``doctor`` and a command-line error Japanese.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minigpt"
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")

# Calls whose argument is a message built elsewhere that is known to be tr(...) output.
MESSAGE_BUILDERS = {
    "_not_finite_message": "minigpt/train.py: returns tr(...)",
}
# Exceptions built from something other than tr(...), each with the reason it is still bilingual.
RAISE_ALLOWLIST = {
    ("minigpt/cli/data.py", "str(e)"): "re-raises _import_datasets()'s ImportError, whose message is tr(...)",
}
# Built-in exceptions raised with an English literal that stays English, each with its reason: errors of
# the checker-writing API (raised while minigpt/check is imported, before a learner's code runs), of
# the test-only self-checks, and tr() itself.
BUILTIN_RAISE_ALLOWLIST = {
    ("minigpt/check/__init__.py", "ValueError"): "Exercise registration errors: for whoever writes a checker",
    ("minigpt/checkpoint.py", "TypeError"): "save_checkpoint(extra=...) of unsupported types: for whoever writes "
                                            "a training loop on top of the library",
    ("minigpt/demo.py", "AssertionError"): "the demo's own self-check, a bug report if it ever fires",
    ("minigpt/i18n.py", "ValueError"): "tr() called without both texts",
}
BUILTIN_ERRORS = {"ValueError", "TypeError", "KeyError", "RuntimeError", "OSError", "FileNotFoundError",
                  "ImportError", "IndexError", "AssertionError", "NotImplementedError", "LookupError"}
# Functions that print; their literal arguments must be tr(...) output.
PRINTERS = {"print", "say", "_say", "_safe_print", "_header", "rank_print"}
PRINT_FILES = sorted([*(PACKAGE / "cli").glob("*.py"), PACKAGE / "doctor.py", PACKAGE / "demo.py",
                      PACKAGE / "train.py", PACKAGE / "generate.py"])
# Printed literals with words that stay the same in every language, each with its reason.
PRINT_ALLOWLIST = {
    ("minigpt/cli/__init__.py", "f'error: {str(e) or type(e).__name__}'"):
        "the `error:` prefix stays the same in both languages (scripts and tests look for it); the message is tr",
    ("minigpt/cli/train.py", "f'error: {e}'"):
        "the same `error:` line, printed by each process of a multi-process run",
}
# Wrappers that forward their (en, ja) arguments to tr(en, ja): argument positions of the two texts.
TR_FORWARDERS = {"require": (1, 2), "bad": (1, 2)}
# Functions whose tr(...) call takes variables, not literals, because they forward texts written elsewhere.
TR_VARIABLE_USERS = {("minigpt/cli/common.py", "require"), ("minigpt/config.py", "bad"),
                     ("minigpt/check/__init__.py", "_state_failure")}


@functools.cache
def _parsed() -> tuple:
    return tuple((path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8")))
                 for path in sorted(PACKAGE.rglob("*.py")))


def _modules():
    yield from _parsed()


def _name(func) -> str:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_tr(node) -> bool:
    return isinstance(node, ast.Call) and _name(node.func) == "tr"


def _error_classes() -> set[str]:
    """MinigptError and every class of minigpt/ that derives from it (by name, to a fixed point)."""
    classes = {"MinigptError"}
    defs = [(n.name, {_name(b) for b in n.bases}) for _, tree in _modules() for n in ast.walk(tree)
            if isinstance(n, ast.ClassDef)]
    while True:
        more = {name for name, bases in defs if bases & classes} - classes
        if not more:
            return classes
        classes |= more


def _has_words(node) -> bool:
    """A literal (or f-string, or concatenation/choice of them) with a word of 2+ letters in its text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(re.search(r"[A-Za-z]{2,}", node.value))
    if isinstance(node, ast.JoinedStr):
        return any(_has_words(v) for v in node.values if isinstance(v, ast.Constant))
    if isinstance(node, ast.BinOp):
        return _has_words(node.left) or _has_words(node.right)
    if isinstance(node, ast.IfExp):
        return _has_words(node.body) or _has_words(node.orelse)
    return False


def _fields(text: str) -> list[tuple[str, str]]:
    return sorted((name, spec) for _, name, spec, _ in string.Formatter().parse(text) if name is not None)


def _tr_calls():
    """(file, line, en, ja, call) for every tr call and tr forwarder with literal texts."""
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            positions = (0, 1) if name == "tr" else TR_FORWARDERS.get(name)
            if positions is None or len(node.args) <= max(positions):
                continue
            en, ja = (node.args[i] for i in positions)
            if all(isinstance(t, ast.Constant) and isinstance(t.value, str) for t in (en, ja)):
                yield rel, node.lineno, en.value, ja.value, node


def test_every_minigpt_error_is_built_from_tr():
    classes = _error_classes()
    assert {"ConfigError", "CorpusError", "ShardError"} <= classes  # the scan finds subclasses outside errors.py
    bad = []
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _name(node.func) in classes):
                continue
            if not node.args:
                bad.append(f"{rel}:{node.lineno}: {_name(node.func)}() without a message")
                continue
            msg = node.args[0]
            if _is_tr(msg) or (isinstance(msg, ast.Call) and _name(msg.func) in MESSAGE_BUILDERS):
                continue
            if (rel, ast.unparse(msg)) not in RAISE_ALLOWLIST:
                bad.append(f"{rel}:{node.lineno}: {_name(node.func)}({ast.unparse(msg)[:70]})")
    assert not bad, "messages not written with tr(en, ja):\n" + "\n".join(bad)


def _english_builtin_raises(tree):
    """(line, exception name, message source) of every built-in exception raised with a literal that has words."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            call, name = node.exc, _name(node.exc.func)
            if name in BUILTIN_ERRORS and call.args and _has_words(call.args[0]):
                yield node.lineno, name, ast.unparse(call.args[0])


def test_the_builtin_scan_can_fail():
    tree = ast.parse('raise ValueError(f"split must be train or val, got {s!r}")\n'
                     'raise KeyError(tr("no exercise {n}", "演習 {n} はありません", n=n))\n'
                     'raise TypeError(str(e))\n')
    assert [(line, name) for line, name, _ in _english_builtin_raises(tree)] == [(1, "ValueError")]


def test_builtin_errors_with_words_are_built_from_tr():
    """A ValueError or KeyError a learner reads (a wrong split, an unknown exercise name) is bilingual too:
    raising a built-in exception with an English literal fails unless BUILTIN_RAISE_ALLOWLIST says why."""
    bad, used = [], set()
    for rel, tree in _modules():
        for lineno, name, text in _english_builtin_raises(tree):
            if (rel, name) in BUILTIN_RAISE_ALLOWLIST:
                used.add((rel, name))
                continue
            bad.append(f"{rel}:{lineno}: {name}({text[:70]})")
    assert not bad, "built-in exceptions raised with English-only text (use tr(en, ja)):\n" + "\n".join(bad)
    assert used == set(BUILTIN_RAISE_ALLOWLIST), f"stale allowlist entries: {set(BUILTIN_RAISE_ALLOWLIST) - used}"


def test_printed_literals_are_tr_output():
    bad = []
    for path in PRINT_FILES:
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            args = node.args if name in PRINTERS else node.args[1:2] if name == "Check" else []
            for arg in args:
                if _has_words(arg) and (rel, ast.unparse(arg)) not in PRINT_ALLOWLIST:
                    bad.append(f"{rel}:{node.lineno}: {name}({ast.unparse(arg)[:70]})")
    assert not bad, "printed text not written with tr(en, ja):\n" + "\n".join(bad)


def test_allowlists_have_no_stale_entries():
    trees = dict(_modules())
    stale = []
    for rel, text in [*RAISE_ALLOWLIST, *PRINT_ALLOWLIST]:
        calls = [n for n in ast.walk(trees[rel]) if isinstance(n, ast.Call)]
        if not any(ast.unparse(a) == text for c in calls for a in c.args):
            stale.append((rel, text))
    assert not stale, stale


def test_scan_catches_an_english_only_message():
    tree = ast.parse('raise ConfigError(f"--lr must be positive, got {x}")\nprint("wrote the file")')
    raise_call, print_call = [n for n in ast.walk(tree) if isinstance(n, ast.Call)][:2]
    assert not _is_tr(raise_call.args[0]) and _has_words(print_call.args[0])
    assert not _has_words(ast.parse('f"{a:>8} | {b:.3f}"').body[0].value)  # a table row of numbers passes


def test_japanese_and_english_texts_have_the_same_fields():
    calls = list(_tr_calls())
    assert len(calls) > 300  # the scan sees the whole package
    bad = [f"{rel}:{line}: {_fields(en)} != {_fields(ja)}" for rel, line, en, ja, _ in calls
           if _fields(en) != _fields(ja)]
    assert not bad, "\n".join(bad)


def test_every_field_of_a_message_is_passed():
    bad = []
    for rel, line, en, _, call in _tr_calls():
        given = {k.arg for k in call.keywords}
        if None in given:  # **fields: checked where they are written
            continue
        names = {re.split(r"[.\[]", name)[0] for name, _ in _fields(en)}
        if names - given:
            bad.append(f"{rel}:{line}: {sorted(names - given)} not passed")
    assert not bad, "\n".join(bad)


def test_tr_takes_literal_texts_outside_forwarders():
    def visit(node, rel, owner, bad):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owner = node.name  # the innermost function holds the call
        if _is_tr(node) and not all(isinstance(a, ast.Constant) for a in node.args[:2]) \
                and (rel, owner) not in TR_VARIABLE_USERS:
            bad.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:60]}... in {owner}()")
        for child in ast.iter_child_nodes(node):
            visit(child, rel, owner, bad)

    bad = []
    for rel, tree in _modules():
        visit(tree, rel, None, bad)
    assert not bad, "\n".join(bad)


def _run(*args, lang: str):
    env = {**os.environ, "MINIGPT_LANG": lang, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "minigpt", *args], capture_output=True, text=True,
                          encoding="utf-8", cwd=ROOT, env=env, timeout=120)


def test_doctor_speaks_japanese_with_minigpt_lang_ja():
    r = _run("doctor", lang="ja")
    lines = r.stdout.strip().splitlines()
    assert r.returncode in (0, 1), r.stderr
    assert len(lines) >= 10, r.stdout
    checks = [line for line in lines[1:-1] if line.split()[0] in ("OK", "WARN", "FAIL")]
    japanese = [line for line in checks if JAPANESE.search(line)]
    assert len(japanese) >= len(checks) - 3, r.stdout  # a few lines are only names and versions
    assert JAPANESE.search(lines[-1]), lines[-1]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_a_command_line_error_is_one_error_line_in_the_chosen_language(lang, tmp_path, monkeypatch, capsys):
    from minigpt.cli import main  # in process: the same code path as `python -m minigpt`, without a new torch import

    monkeypatch.setenv("MINIGPT_LANG", lang)
    assert main(["train", "--lr", "-1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--lr" in err[0], err
    assert bool(JAPANESE.search(err[0])) == (lang == "ja"), err[0]
