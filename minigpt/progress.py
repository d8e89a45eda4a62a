"""Learner progress: which exercises of the course notebooks are done, failing or not started.

    python -m minigpt progress                 # chapters/ of this folder
    python -m minigpt progress path/to/chapters --json > alice.json
    python -m minigpt progress --collect answers/   # a teacher: many learners' JSON files, one table

In a notebook: ``from minigpt.notebook import progress; progress()`` (or ``%run -m minigpt progress``).

How it works, and what it never does:

- It only *reads* the learner's notebooks. For each notebook it finds the exercise cells (a cell that
  defines ``X`` and hands it to ``X = check("chNN.X", X)``), and the earlier code cells each one needs:
  the cells that bind a name the exercise cell uses, found by reading the code (``ast``), then the names
  those cells use, and so on. Plots, training runs and demonstrations the exercise does not need are not
  run.
- Those cells run in one fresh Python process per notebook (``MINIGPT_CI=1``: one thread, the CPU),
  in the notebook's folder, their printed output discarded. ``check`` is replaced there by a version
  that records the result (done, failing with the first line of its report, not started) and hands the
  reference on for a failing or unfinished exercise, so the next exercise is judged on its own.
- Each cell has a time limit (``--timeout``, 30 s of CPU time, so that a busy machine does not trip it;
  10 times as long, at least 60 s, on the clock for a cell that waits); a cell that hangs or raises gives its exercise a
  line in the table, never a crash. A notebook that is not valid JSON gets one line.
- Results are cached under ``$MINIGPT_CACHE/progress`` (default ``~/.cache/minigpt/progress``), keyed
  by the source of the exercise cell and of every cell it needs, the checker code and the language:
  a second run only re-checks what the learner changed.
- Exercise names this version's checkers do not know (a chapters folder from another version) are
  listed as such, and so are this version's exercises the notebook lacks.
"""

from __future__ import annotations

import ast
import builtins
import collections
import concurrent.futures
import datetime
import getpass
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minigpt.errors import ConfigError
from minigpt.i18n import lang, tr
from minigpt.notebook_env import NOTEBOOK_ENV

__all__ = ["ExerciseStatus", "NotebookProgress", "find_exercises", "run_progress", "format_table",
           "to_json", "collect", "format_collected", "STATUSES"]

# done: passes the checker; failing: CheckFailed (or the cell raised); not_started: still the stub;
# reference: minigpt's own implementation handed in; timeout: a cell ran past the limit; unknown: a name
# this version has no checker for; missing: an exercise of this version the notebook lacks;
# invalid: the notebook cannot be read.
STATUSES = ("done", "failing", "not_started", "reference", "timeout", "unknown", "missing", "invalid")
_MARK = {"done": "✓", "failing": "✗", "not_started": "·", "reference": "…", "timeout": "⏱", "unknown": "?",
         "missing": "?", "invalid": "✗"}
DEFAULT_TIMEOUT = 30.0
_EXERCISE_RE = re.compile(r"""(\w+)\s*=\s*check\(\s*["'](ch\d\d\.\w+)["']\s*,\s*(\w+)\s*[,)]""")
_REGISTER_RE = re.compile(r"""@exercise\(\s*["'](ch\d\d\.\w+)["']""")
_NOTEBOOK_RE = re.compile(r"^(\d\d)_\w+\.ipynb$")
# the environment of the notebooks under test
CHILD_ENV = dict(NOTEBOOK_ENV)


def _status_text(status: str) -> str:
    return {
        "done": tr("done", "完了"),
        "failing": tr("failing", "不合格"),
        "not_started": tr("not started", "未着手"),
        "reference": tr("the reference handed in", "参照実装をそのまま提出"),
        "timeout": tr("timed out", "時間切れ"),
        "unknown": tr("unknown to this version", "このバージョンにない演習"),
        "missing": tr("not in the notebook", "ノートブックにない演習"),
        "invalid": tr("notebook unreadable", "ノートブックを読めません"),
    }[status]


@dataclass
class ExerciseStatus:
    name: str  # "ch01.LayerNorm"
    status: str  # one of STATUSES
    reason: str = ""  # one line for the table
    report: str = ""  # the checker's full report, when failing
    cell: int | None = None  # the index of the code cell (0 = the first code cell)
    seconds: float = 0.0
    cached: bool = False


@dataclass
class NotebookProgress:
    path: str
    chapter: str  # "01"
    exercises: list[ExerciseStatus] = field(default_factory=list)
    error: str = ""  # the notebook could not be read at all


# ----------------------------------------------------------------------------- reading a notebook
@dataclass
class _Cell:
    index: int  # among the code cells
    source: str  # magics (% and ! lines) replaced by `pass`
    tree: ast.Module | None
    binds: set
    uses: set
    exercise: str | None = None  # the exercise this cell hands to check()
    skip: bool = False  # tagged nbval-skip (the Colab install cell)


_BUILTINS = set(dir(builtins))


class _Names(ast.NodeVisitor):
    """The names a cell binds at the top level, and the free names it uses (function bodies included:
    the checker calls them)."""

    def __init__(self):
        self.binds: set = set()
        self.uses: set = set()
        self._scopes: list[set] = []  # names local to the functions being visited

    def _bind(self, name: str):
        (self._scopes[-1] if self._scopes else self.binds).add(name)

    def visit_Name(self, node):
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._bind(node.id)
        elif not any(node.id in s for s in self._scopes):
            self.uses.add(node.id)

    def visit_alias_list(self, names):
        for a in names:
            if a.name != "*":
                self._bind((a.asname or a.name).split(".")[0])

    def visit_Import(self, node):
        self.visit_alias_list(node.names)

    def visit_ImportFrom(self, node):
        self.visit_alias_list(node.names)

    def _function(self, node, args, body):
        local = set()
        for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if a is not None:
                local.add(a.arg)
        for stmt in ast.walk(ast.Module(body=body if isinstance(body, list) else [ast.Expr(body)], type_ignores=[])):
            if isinstance(stmt, ast.Name) and isinstance(stmt.ctx, ast.Store):
                local.add(stmt.id)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                local.add(stmt.name)
            elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
                local.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        for d in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.visit(d)
        self._scopes.append(local)
        for stmt in (body if isinstance(body, list) else [body]):
            self.visit(stmt)
        self._scopes.pop()

    def visit_FunctionDef(self, node):
        for d in node.decorator_list:
            self.visit(d)
        self._bind(node.name)
        self._function(node, node.args, node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        self._function(node, node.args, node.body)

    def visit_ClassDef(self, node):
        for d in node.decorator_list + node.bases + [k.value for k in node.keywords]:
            self.visit(d)
        self._bind(node.name)
        self._scopes.append(set())  # class attributes are not globals
        for stmt in node.body:
            self.visit(stmt)
        self._scopes.pop()


def _clean_source(src: str) -> str:
    """IPython magics and shell lines become `pass` (same line numbers)."""
    out = []
    for line in src.splitlines():
        stripped = line.lstrip()
        out.append(line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line)
    return "\n".join(out)


def _exercise_of(tree: ast.Module | None, source: str) -> str | None:
    """The exercise of a cell `X = check("chNN.X", X)` whose X the cell defines; None for cells that only
    call check to show something (chapter 00 hands it a wrong softmax on purpose)."""
    if tree is None:  # a syntax error: the learner is writing it
        m = _EXERCISE_RE.search(source)
        return m.group(2) if m and m.group(1) == m.group(3) else None
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "check" and len(node.value.args) >= 2
                and isinstance(node.value.args[0], ast.Constant) and isinstance(node.value.args[0].value, str)
                and isinstance(node.value.args[1], ast.Name)
                and node.targets[0].id == node.value.args[1].id and node.targets[0].id in defined):
            return node.value.args[0].value
    return None


def _read_cells(nb: dict) -> list[_Cell]:
    cells = []
    code = [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
    for i, c in enumerate(code):
        src = c.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        src = _clean_source(src)
        try:
            tree = ast.parse(src)
        except SyntaxError:
            tree = None
        names = _Names()
        if tree is not None:
            names.visit(tree)
        tags = (c.get("metadata") or {}).get("tags") or []
        cells.append(_Cell(i, src, tree, names.binds, names.uses - _BUILTINS, _exercise_of(tree, src),
                           skip="nbval-skip" in tags))
    return cells


def _needed_cells(cells: list[_Cell], target: int) -> list[int]:
    """The cells `target` needs: for every free name, the last earlier cell that binds it, transitively;
    and the setup cell (seeds, device, language)."""
    needed = {target}
    todo = [(target, n) for n in cells[target].uses]
    while todo:
        before, name = todo.pop()
        for j in range(before - 1, -1, -1):
            if name in cells[j].binds and not cells[j].skip:
                if j not in needed:
                    needed.add(j)
                    todo.extend((j, n) for n in cells[j].uses)
                break
    for c in cells[:target]:
        if not c.skip and re.search(r"\bsetup\(", c.source) and "from minigpt.notebook import" in c.source:
            needed.add(c.index)
    return sorted(needed)


def find_exercises(notebook: str | Path) -> list[tuple[str, int, list[int]]]:
    """(exercise name, code cell index, the code cells it needs) for every exercise cell of a notebook."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    cells = _read_cells(nb)
    return [(c.exercise, c.index, _needed_cells(cells, c.index)) for c in cells if c.exercise]


# ----------------------------------------------------------------------------- the cache
def cache_dir() -> Path:
    base = os.environ.get("MINIGPT_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "minigpt") / "progress"


def _checker_fingerprint(chapter: str) -> str:
    import minigpt

    here = Path(__file__).resolve().parent / "check"
    h = hashlib.sha256(minigpt.__version__.encode())
    for name in ("__init__.py", f"{chapter}.py"):
        p = here / name
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()


def _cache_key(name: str, sources: list[str], fingerprint: str) -> str:
    payload = json.dumps([name, lang(), fingerprint, sources], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _cache_get(key: str) -> dict | None:
    try:
        return json.loads((cache_dir() / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _cache_put(key: str, value: dict) -> None:
    try:
        d = cache_dir()
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, d / f"{key}.json")
    except OSError:
        pass  # no cache: slower, not wrong


def _registered(chapter: str) -> list[str]:
    """This version's exercises of a chapter, read from minigpt/check/chNN.py without importing torch."""
    p = Path(__file__).resolve().parent / "check" / f"ch{chapter}.py"
    return sorted(set(_REGISTER_RE.findall(p.read_text(encoding="utf-8")))) if p.is_file() else []


# ----------------------------------------------------------------------------- running one notebook
def _one_line(report: str, limit: int = 200) -> str:
    lines = [ln.strip() for ln in report.splitlines() if ln.strip()]
    if not lines:
        return ""
    first = re.sub(r"^✗ ch\d\d\.\w+: ", "", lines[0])
    hint = (tr("hint: ", "ヒント: ").strip(), "hint:", "ヒント:")
    if len(lines) > 1 and not lines[1].startswith(hint) and len(first) < 120:
        first = f"{first} — {lines[1]}"
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _progress_notebook(path: Path, timeout: float, use_cache: bool) -> NotebookProgress:
    m = _NOTEBOOK_RE.match(path.name)
    chapter = m.group(1) if m else "??"
    prog = NotebookProgress(str(path), chapter)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError(tr("no list of cells", "セルの一覧がありません"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        prog.error = tr("not a notebook that can be read ({e}): take a fresh copy of it, or open it in Jupyter "
                        "and save it again; the other notebooks are checked as usual",
                        "読めるノートブックではありません ({e}): 新しいコピーを取るか、Jupyter で開いて保存し直してください。"
                        "ほかのノートブックは通常どおり確認します", e=str(e).splitlines()[0][:120])
        return prog
    cells = _read_cells(nb)
    fingerprint = _checker_fingerprint(f"ch{chapter}")
    todo, keys = [], {}
    seen = set()
    for c in cells:
        if not c.exercise or c.exercise in seen:
            continue
        seen.add(c.exercise)
        needed = _needed_cells(cells, c.index)
        key = _cache_key(c.exercise, [cells[j].source for j in needed], fingerprint)
        keys[c.exercise] = key
        hit = _cache_get(key) if use_cache else None
        if hit is not None:
            prog.exercises.append(ExerciseStatus(**{**hit, "cached": True}))
        else:
            todo.append((c, needed))
    if todo:
        results = _run_child(path, cells, todo, {e.name: e.status for e in prog.exercises}, timeout)
        for c, _ in todo:
            r = results.get(c.exercise) or ExerciseStatus(
                c.exercise, "timeout", tr("the notebook's process stopped before this exercise (over the time limit)",
                                          "この演習の前にノートブックのプロセスが止まりました (時間制限を超えました)"),
                cell=c.index)
            prog.exercises.append(r)
            if r.status != "timeout" or r.report == "cpu-limit":
                _cache_put(keys[c.exercise], {k: v for k, v in asdict(r).items() if k != "cached"})
    order = {c.exercise: c.index for c in cells if c.exercise}
    prog.exercises.sort(key=lambda e: order.get(e.name, 0))
    present = set(order)
    if chapter != "??":
        for name in _registered(chapter):
            if name not in present:
                prog.exercises.append(ExerciseStatus(name, "missing", tr(
                    "your notebook lacks it (a notebook from an older version of the course?)",
                    "ノートブックにありません (古い版のノートブック?)")))
    return prog


def _run_child(path: Path, cells: list[_Cell], todo, known: dict, timeout: float) -> dict[str, ExerciseStatus]:
    targets = {c.exercise for c, _ in todo}
    run = sorted({j for _, needed in todo for j in needed})
    deps = {c.exercise: needed for c, needed in todo}
    spec = {"cells": [{"index": j, "source": cells[j].source, "exercise": cells[j].exercise,
                       "target": cells[j].exercise in targets, "known": known.get(cells[j].exercise)}
                      for j in run],
            "deps": deps, "timeout": timeout, "lang": lang()}
    with tempfile.TemporaryDirectory(prefix="minigpt-progress-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "results.jsonl"
        spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        out_path.touch()
        env = {**os.environ, **CHILD_ENV, "MPLBACKEND": "Agg", "MINIGPT_LANG": lang(), "OMP_NUM_THREADS": "1",
               "PYTHONIOENCODING": "utf-8"}
        cmd = [sys.executable, "-m", "minigpt.progress", "--child", str(spec_path), str(out_path)]
        stderr = ""
        try:
            proc = subprocess.run(cmd, cwd=path.parent, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, timeout=_wall_limit(timeout) * (len(run) + 1) + 60,
                                  text=True, errors="replace")
            stderr = proc.stderr if proc.returncode else ""
        except subprocess.TimeoutExpired:
            stderr = ""
        results = {}
        for line in out_path.read_text(encoding="utf-8").splitlines():
            try:
                r = ExerciseStatus(**json.loads(line))
            except (ValueError, TypeError):
                continue
            results[r.name] = r
        if stderr and len(results) < len(targets):  # the process died (out of memory, a crash in C code)
            last = [ln for ln in stderr.splitlines() if ln.strip()][-1:] or ["?"]
            for name in targets - set(results):
                results[name] = ExerciseStatus(name, "failing", tr(
                    "the notebook's process stopped: {e}", "ノートブックのプロセスが止まりました: {e}", e=last[0][:160]))
        return results


def _wall_limit(timeout: float) -> float:
    return max(60.0, 10 * timeout)  # on the clock: a loaded 2-core machine gives a process a fraction of a core


class _CellTimeout(BaseException):  # not an Exception: the checker must not report it as the learner's error
    pass


def _child(spec_path: str, out_path: str) -> None:
    """Runs inside the per-notebook process: execute the needed cells, record each target exercise."""
    import contextlib
    import io
    import signal
    import traceback

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = open(out_path, "a", encoding="utf-8")
    timeout = float(spec["timeout"])
    want_lang = spec["lang"]

    def record(r: ExerciseStatus) -> None:
        out.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
        out.flush()

    import minigpt.check as mc

    original_check = mc.check
    current = {"cell": None, "recorded": set(), "t0": 0.0}
    done_names: set = set()

    def progress_check(name, obj, *, quiet=False):
        cell = current["cell"]
        if cell is None or cell["exercise"] != name or name in current["recorded"]:
            return original_check(name, obj, quiet=True)  # a demonstration, or a cell run again
        try:
            ex = mc.get_exercise(name)
        except KeyError as e:
            if cell["target"]:
                record(ExerciseStatus(name, "unknown", tr(
                    "this version of minigpt has no checker for it ({e}): the notebook may come from another version",
                    "このバージョンの minigpt にはこの演習の確認がありません ({e}): 別の版のノートブックかもしれません",
                    e=str(e).strip("'\"")), cell=cell["index"]))
                current["recorded"].add(name)
            return obj
        if not cell["target"]:  # checked before (cached): hand on what the notebook would
            return obj if cell["known"] in ("done", "reference") else ex.get_fallback()
        res = mc.run_exercise(ex, obj)
        secs = round(time.perf_counter() - current["t0"], 2)
        if res.passed and res.is_reference:
            r = ExerciseStatus(name, "reference", tr("minigpt's own implementation was handed in: write your own",
                                                     "minigpt 自身の実装が渡されました: 自分で書いてみてください"))
        elif res.passed:
            r = ExerciseStatus(name, "done", tr("{n} cases match", "{n} ケースが一致", n=res.n_cases))
        elif res.not_implemented:
            r = ExerciseStatus(name, "not_started", tr("still the stub (NotImplementedError)",
                                                       "スタブのまま (NotImplementedError)"))
        else:
            r = ExerciseStatus(name, "failing", _one_line(res.report), res.report)
        r.cell, r.seconds = cell["index"], secs
        record(r)
        current["recorded"].add(name)
        done_names.add(name) if r.status in ("done", "reference") else None
        return obj if r.status in ("done", "reference") else ex.get_fallback()

    mc.check = progress_check
    for cell in spec["cells"]:  # import the checkers now: their import time is not the learner's cell's
        if cell["exercise"]:
            try:
                mc.get_exercise(cell["exercise"])
            except KeyError:
                pass

    def on_alarm(signum, frame):
        raise _CellTimeout(signum == getattr(signal, "SIGPROF", None))

    # The limit is on CPU time (SIGPROF), so a busy machine does not make a cell time out; a cell that
    # waits without computing (a sleep, input) is stopped by a wall-clock limit (_wall_limit).
    has_alarm = hasattr(signal, "SIGALRM") and hasattr(signal, "SIGPROF")
    if has_alarm:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.signal(signal.SIGPROF, on_alarm)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    errors: dict[int, str] = {}
    cpu_timeouts: set = set()
    for cell in spec["cells"]:
        current.update(cell=cell, t0=time.perf_counter())
        sink = io.StringIO()
        problem = None
        try:
            code = compile(cell["source"], f"<cell {cell['index']}>", "exec")
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                if has_alarm:
                    signal.setitimer(signal.ITIMER_PROF, timeout)
                    signal.setitimer(signal.ITIMER_REAL, _wall_limit(timeout))
                try:
                    exec(code, ns)
                finally:
                    if has_alarm:
                        signal.setitimer(signal.ITIMER_PROF, 0)
                        signal.setitimer(signal.ITIMER_REAL, 0)
        except _CellTimeout as e:
            if e.args and e.args[0]:  # CPU time: the same on a busy machine, so the result may be cached
                cpu_timeouts.add(cell["index"])
                problem = ("timeout", tr("the cell computed for longer than {t:g} s (an endless loop? a large training "
                                         "run?)", "セルが {t:g} 秒を超えて計算を続けています (無限ループ? 大きな学習?)",
                                         t=timeout))
            else:
                problem = ("timeout", tr("the cell waited longer than {t:g} s on the clock (sleep, input, the network?)",
                                         "セルが {t:g} 秒を超えて待ち続けています (sleep、input、ネットワーク?)",
                                         t=_wall_limit(timeout)))
        except SyntaxError as e:
            problem = ("failing", tr("the cell has a syntax error, line {n}: {m}", "セルに構文エラーがあります ({n} 行目): {m}",
                                     n=e.lineno, m=e.msg))
        except (Exception, SystemExit) as e:  # noqa: BLE001 - the learner's code
            tb = traceback.extract_tb(e.__traceback__)
            line = next((f.lineno for f in reversed(tb) if f.filename == f"<cell {cell['index']}>"), None)
            text = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip()
            where = tr(", line {n}", "、{n} 行目", n=line) if line else ""
            problem = ("failing", tr("the cell raised {e}{w}", "セルで {e} が起きました{w}", e=text[:160], w=where))
        finally:
            os.environ["MINIGPT_LANG"] = want_lang  # setup() sets it for the notebooks' stored outputs
        if problem:
            errors[cell["index"]] = problem[1]
        name = cell["exercise"]
        if name and cell["target"] and name not in current["recorded"]:
            status, reason = problem or ("failing", tr("the cell did not call check(...)", "セルが check(...) を呼びませんでした"))
            before = [j for j in spec["deps"].get(name, []) if j in errors and j != cell["index"]]
            if before:
                reason += tr(" (an earlier cell it needs failed: cell {j}: {e})",
                             " (必要な前のセルが失敗しています: セル {j}: {e})", j=before[0], e=errors[before[0]])
            cpu_limit = status == "timeout" and cell["index"] in cpu_timeouts  # (kept in the cache)
            record(ExerciseStatus(name, status, reason, "cpu-limit" if cpu_limit else "", cell=cell["index"],
                                  seconds=round(time.perf_counter() - current["t0"], 2)))
            current["recorded"].add(name)
    out.close()


# ----------------------------------------------------------------------------- the whole folder
def default_folder() -> Path:
    """The folder a notebook kernel runs in when it holds chapter notebooks (Jupyter starts the kernel in the
    notebook's folder), else ./chapters."""
    here = Path.cwd()
    if any(_NOTEBOOK_RE.match(p.name) for p in here.glob("*.ipynb")) or not (here / "chapters").is_dir():
        return here
    return here / "chapters"


def notebooks_in(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise ConfigError(tr("{f} is not a folder: pass the folder of your chapter notebooks "
                             "(python -m minigpt progress chapters/)",
                             "{f} はフォルダではありません: 章のノートブックのフォルダを指定してください "
                             "(python -m minigpt progress chapters/)", f=folder))
    found = sorted(p for p in folder.glob("*.ipynb") if _NOTEBOOK_RE.match(p.name))
    if not found:
        raise ConfigError(tr("no chapter notebooks (NN_name.ipynb) in {f}: pass the folder that holds them",
                             "{f} に章のノートブック (NN_name.ipynb) がありません: それを含むフォルダを指定してください",
                             f=folder))
    return found


def run_progress(folder: str | Path = "chapters", *, timeout: float = DEFAULT_TIMEOUT, use_cache: bool = True,
                 jobs: int | None = None) -> list[NotebookProgress]:
    """Check every exercise of the notebooks in `folder` (one process per notebook, `jobs` at a time)."""
    paths = notebooks_in(folder)
    jobs = jobs or max(1, min(len(paths), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda p: _progress_notebook(p, timeout, use_cache), paths))


def _counts(progress: list[NotebookProgress]) -> collections.Counter:
    return collections.Counter(e.status for nb in progress for e in nb.exercises)


def format_table(progress: list[NotebookProgress]) -> str:
    lines = []
    for nb in progress:
        name = Path(nb.path).name
        if nb.error:
            lines += [f"{nb.chapter} · {name}", f"  {_MARK['invalid']} {nb.error}", ""]
            continue
        c = collections.Counter(e.status for e in nb.exercises)
        lines.append(f"{nb.chapter} · {name}  " + tr("({d} of {n} done)", "({n} 問中 {d} 問完了)",
                                                     d=c["done"], n=len(nb.exercises)))
        if not nb.exercises:
            lines.append("  " + tr("no exercise cells found", "演習セルが見つかりません"))
        width = max((len(e.name) for e in nb.exercises), default=0)
        for e in nb.exercises:
            reason = f": {e.reason}" if e.reason and e.status != "done" else ""
            lines.append(f"  {_MARK[e.status]} {e.name:<{width}}  {_status_text(e.status)}{reason}")
        lines.append("")
    c = _counts(progress)
    total = sum(c.values())
    lines.append(tr("{d} of {n} exercises done, {f} failing, {s} not started",
                    "全 {n} 問中 {d} 問完了、{f} 問不合格、{s} 問未着手",
                    d=c["done"], n=total, f=c["failing"] + c["timeout"], s=c["not_started"]))
    invalid = sum(1 for nb in progress if nb.error)
    if invalid:
        lines.append(tr("{k} notebook(s) could not be read", "{k} 冊のノートブックを読めませんでした", k=invalid))
    return "\n".join(lines)


def to_json(progress: list[NotebookProgress], learner: str | None = None) -> dict:
    import minigpt

    return {"format": "minigpt-progress/1", "minigpt": minigpt.__version__,
            "learner": learner or _default_learner(),
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "notebooks": [{"path": nb.path, "chapter": nb.chapter, "error": nb.error,
                           "exercises": [asdict(e) for e in nb.exercises]} for nb in progress]}


def _default_learner() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers)
        return "learner"


# ----------------------------------------------------------------------------- a teacher's view
@dataclass
class Collected:
    learners: list[str]  # in file order
    exercises: list[str]  # in course order
    status: dict  # (learner, exercise) -> ExerciseStatus
    problems: list[str]  # files that could not be read


def collect(folder: str | Path) -> Collected:
    """Merge the `--json` files of many learners (one file each) found in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(tr("{f} is not a folder: put the learners' JSON files (python -m minigpt progress --json "
                             "--name NAME > NAME.json) in one folder and pass it",
                             "{f} はフォルダではありません: 受講者の JSON ファイル (python -m minigpt progress --json "
                             "--name 名前 > 名前.json) を 1 つのフォルダに集めて指定してください", f=folder))
    learners, status, order, problems = [], {}, {}, []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not str(data.get("format", "")).startswith("minigpt-progress/"):
                raise ValueError(tr("not a `minigpt progress --json` file", "`minigpt progress --json` のファイルではありません"))
            who = str(data.get("learner") or path.stem)
            if who in learners:
                who = f"{who} ({path.stem})"
            rows = []
            for nb in data.get("notebooks", []):
                for e in nb.get("exercises", []):
                    rows.append(ExerciseStatus(**{k: e[k] for k in ("name", "status", "reason", "report", "cell",
                                                                     "seconds", "cached") if k in e}))
                if nb.get("error"):
                    rows.append(ExerciseStatus(f"ch{nb.get('chapter', '??')}.*", "invalid", nb["error"]))
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError) as e:
            problems.append(f"{path.name}: {str(e).splitlines()[0][:120] if str(e) else type(e).__name__}")
            continue
        learners.append(who)
        for r in rows:
            status[(who, r.name)] = r
            order.setdefault(r.name, len(order))
    if not learners:
        raise ConfigError(tr("no learner's progress file in {f} ({p}): each learner runs "
                             "`python -m minigpt progress --json --name NAME > NAME.json`",
                             "{f} に受講者の進捗ファイルがありません ({p}): 受講者が "
                             "`python -m minigpt progress --json --name 名前 > 名前.json` を実行します",
                             f=folder, p="; ".join(problems) or tr("no *.json", "*.json なし")))
    exercises = sorted(order, key=lambda n: (n.split(".")[0], order[n]))
    return Collected(learners, exercises, status, problems)


def format_collected(c: Collected) -> str:
    lines = [tr("learners: {n}", "受講者: {n} 人", n=len(c.learners)), ""]
    lines.append(tr("Who is stuck where (the first exercise not done):", "どこで止まっているか (最初の未完了の演習):"))
    width = max(len(w) for w in c.learners)
    for who in c.learners:
        stuck = next((c.status[(who, n)] for n in c.exercises
                      if (who, n) in c.status and c.status[(who, n)].status not in ("done", "missing", "unknown")), None)
        done = sum(1 for n in c.exercises if (who, n) in c.status and c.status[(who, n)].status == "done")
        where = (tr("everything done", "すべて完了") if stuck is None
                 else f"{stuck.name} ({_status_text(stuck.status)}" + (f": {stuck.reason}" if stuck.status in
                                                                        ("failing", "timeout", "invalid") else "") + ")")
        lines.append(f"  {who:<{width}}  " + tr("{d} done", "{d} 問完了", d=done) + f" · {where}")
    lines += ["", tr("Per exercise (done / failing / not started; the most common failure):",
                     "演習ごと (完了 / 不合格 / 未着手、最も多い失敗):")]
    width = max(len(n) for n in c.exercises)
    for name in c.exercises:
        rows = [c.status[(w, name)] for w in c.learners if (w, name) in c.status]
        cnt = collections.Counter(r.status for r in rows)
        fails = collections.Counter(_failure_key(r.reason) for r in rows if r.status in ("failing", "timeout"))
        line = f"  {name:<{width}}  {cnt['done']:>3} / {cnt['failing'] + cnt['timeout']:>3} / {cnt['not_started']:>3}"
        if fails:
            reason, k = fails.most_common(1)[0]
            line += "  " + tr("{k}×: {r}", "{k} 人: {r}", k=k, r=reason)
        lines.append(line)
    for p in c.problems:
        lines.append(tr("skipped {p}", "読み飛ばしました: {p}", p=p))
    return "\n".join(lines)


def _failure_key(reason: str) -> str:
    """Failures grouped by what went wrong, not by the numbers in the report."""
    return re.sub(r"\s+", " ", reason.split(" — ")[-1]).strip()[:140] or "?"


def collected_json(c: Collected) -> dict:
    return {"format": "minigpt-progress-collected/1", "learners": c.learners, "exercises": c.exercises,
            "status": {w: {n: c.status[(w, n)].status for n in c.exercises if (w, n) in c.status} for w in c.learners},
            "problems": c.problems}


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    _child(sys.argv[2], sys.argv[3])
