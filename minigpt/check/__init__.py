"""Exercise checkers for the course notebooks.

Every exercise cell of a notebook ends with one line that hands the learner's function or class
to its checker:

    def causal_self_attention(q, k, v):
        # YOUR CODE HERE
        raise NotImplementedError
    causal_self_attention = check("ch01.causal_self_attention", causal_self_attention)

`check(name, obj)` runs `obj` and the reference on the same seeded cases (several shapes; on the
GPU when there is one, else the CPU) and then

- returns `obj` when every case matches, printing one line: `✓ ch01.causal_self_attention: 4 cases match`;
- returns the *reference* when `obj` still raises NotImplementedError on every case, with a note, so
  the rest of the chapter runs (the learner can come back to the exercise later);
- raises `CheckFailed` (an AssertionError) with a report written for the learner otherwise:
  which case failed, its inputs, expected vs got shape and dtype, the largest difference and where,
  which known mistake gives the same output, a hint, and the learner's own traceback trimmed to
  their code. In a notebook only the report is shown.

On every case the engine also checks what a learner's code must not do: change its inputs (each
side gets its own deep copy), break the gradient (for differentiable exercises the gradients with
respect to the inputs and parameters are compared), change global state (default dtype, grad mode,
RNG, deterministic flag, threads), or create tensors on another device than its inputs.

Each exercise is registered in `minigpt.check.chNN` (one module per chapter) with `exercise(...)`:
its reference (imported from the minigpt package, the single source of truth), a case generator,
how to compare, a hint, plausible *wrong* implementations and alternative *correct* ones. The test
suite (tests/test_checkers.py) proves for every exercise that the checker accepts the reference and
each correct one and rejects each wrong one. docs/ENGINE.md explains how to write one.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import inspect
import math
import numbers
import pkgutil
import re
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from minigpt.device import check_device, exact_float32
from minigpt.i18n import lang, tr

__all__ = [
    "Case",
    "CheckFailed",
    "Exercise",
    "Result",
    "Step",
    "check",
    "check_function",
    "check_module",
    "check_device",
    "compare_values",
    "exercise",
    "get_exercise",
    "all_exercises",
    "run_exercise",
    "describe",
    "mistake_text",
    "covers_table",
]


class CheckFailed(AssertionError):
    """Raised by `check` when the learner's code does not match the reference. The message is the report."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback: the report only
        return str(self).splitlines()


@dataclass
class Step:
    """One step of a stateful class's lifecycle (see docs/ENGINE.md): call a method, set or read a field."""

    action: str  # "call" | "set" | "get"
    attr: str  # the method or field name
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str | None = None
    compare: bool | None = None  # None: compared unless the reference's result is None
    output_names: tuple[str, ...] = ()

    @classmethod
    def call(cls, method: str, *args, name: str | None = None, compare: bool | None = None,
             output_names: tuple[str, ...] = (), **kwargs) -> "Step":
        return cls("call", method, args, kwargs, name, compare, tuple(output_names))

    @classmethod
    def set(cls, attr: str, value, name: str | None = None) -> "Step":
        return cls("set", attr, (value,), {}, name, False)

    @classmethod
    def get(cls, attr: str, name: str | None = None) -> "Step":
        return cls("get", attr, (), {}, name, True)

    def text(self, var: str) -> str:
        if self.action == "set":
            return f"{var}.{self.attr} = {_short(self.args[0], 40)}"
        if self.action == "get":
            return f"{var}.{self.attr}"
        parts = [_arg_text(a) for a in self.args] + [f"{k}={_arg_text(v)}" for k, v in self.kwargs.items()]
        return f"{var}.{self.attr}({', '.join(parts)})"


@dataclass
class Case:
    """One input to try. For a function: `fn(*args, **kwargs)`. For a module (a class):
    `cls(*init)` builds it, then `instance(*args, **kwargs)` runs it. For a stateful class:
    `cls(*init, **init_kwargs)`, then the lifecycle `steps`. `name` is what the report shows."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: tuple = ()
    name: str | None = None
    name_ja: str | None = None
    init_kwargs: dict = field(default_factory=dict)
    steps: list | None = None  # kind="class": a list of Step
    dtypes: tuple | None = None  # None: the exercise's `dtypes`
    grad: bool | None = None  # None: the exercise's `grad`

    def label_name(self) -> str | None:
        if self.name_ja and lang() == "ja":
            return self.name_ja
        return self.name


@dataclass
class Exercise:
    name: str  # "ch01.causal_self_attention": chapter, then the name the notebook defines
    reference: Any  # the function or class to match (from the minigpt package)
    cases: Callable[[], Iterable[Case]]  # seeded: the same cases every time, CPU tensors
    kind: str = "function"  # "function" | "module" (an nn.Module class) | "class" (any class, see `run`)
    wrong: list = field(default_factory=list)  # >= 6 plausible wrong implementations (tests use them)
    correct: list = field(default_factory=list)  # >= 2 alternative correct implementations
    covers: str = ""  # what the cases cover, for docs/ENGINE.md
    compare: Callable[[Any, Any], str | None] | None = None  # None: compare_values with rtol/atol
    rtol: float = 1e-4
    atol: float = 1e-5
    hint: str = ""  # one or two sentences shown under a failure
    hint_ja: str = ""
    fallback: Any = None  # what a stub gets instead of its code (default: the reference)
    run: Callable[[Any, Case], Any] | None = None  # custom driver: run(obj, case) -> output
    uses_device: bool = True  # move tensors and modules to check_device()
    output_names: tuple[str, ...] = ()  # names of the items of a tuple output, for reports
    randomize: bool = True  # modules: perturb the reference's parameters before copying them
    grad: bool | None = None  # None: compare gradients when the reference's output is differentiable
    grad_rtol: float | None = None  # None: 10 * rtol
    grad_atol: float | None = None  # None: 10 * atol
    dtypes: tuple = ()  # ("bf16", "fp16"): also run float32 cases in these dtypes
    low_tol: dict = field(default_factory=dict)  # {"bf16": (rtol, atol)}
    mutates: tuple = ()  # arguments the exercise is meant to change in place
    global_state: bool = True  # check default dtype, grad mode, RNG, ... after the learner's code
    also_reference: tuple = ()  # other objects that count as "the reference itself" (torch.softmax)

    def __post_init__(self):
        if self.kind not in ("function", "module", "class"):
            raise ValueError(f"{self.name}: kind must be 'function', 'module' or 'class', got {self.kind!r}")
        for d in self.dtypes:
            if d not in _LOW_DTYPES:
                raise ValueError(f"{self.name}: dtypes may hold 'bf16' and 'fp16', got {d!r}")

    @property
    def chapter(self) -> str:
        return self.name.split(".", 1)[0]

    def get_fallback(self):
        return self.reference if self.fallback is None else self.fallback

    def hint_text(self) -> str:
        return self.hint_ja if (self.hint_ja and lang() == "ja") else self.hint


@dataclass
class Result:
    """What running one implementation against an exercise gave."""

    name: str
    passed: bool
    n_cases: int = 0  # cases run (all of them when passed)
    not_implemented: bool = False
    report: str = ""  # the learner-facing text when not passed
    device: str = "cpu"
    is_reference: bool = False  # the reference itself (or a thin wrapper of it) was handed in
    problem: str = ""  # what failed: "value", "mutation", "grad", "global", "device", "raised", "partial-stub", ...


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, reference, *, kind: str = "function", wrong: list | None = None,
             correct: list | None = None, **options):
    """Decorator that registers an exercise; it decorates the case generator.

        @exercise("ch00.softmax", reference=reference_softmax, wrong=[no_max, wrong_axis, ...],
                  correct=[via_logsumexp, in_float64], covers="large logits, bf16 and fp16",
                  hint="subtract the row's maximum before exp", hint_ja="exp の前に行の最大値を引く")
        def _cases():
            g = torch.Generator().manual_seed(0)
            yield Case(args=(torch.randn(3, 5, generator=g),))
    """

    def register(cases: Callable[[], Iterable[Case]]):
        ex = Exercise(name=name, reference=reference, cases=cases, kind=kind, wrong=list(wrong or []),
                      correct=list(correct or []), **options)
        _REGISTRY[name] = ex
        return cases

    return register


def get_exercise(name: str) -> Exercise:
    """The registered exercise `name` ("chNN.thing"); imports minigpt.check.chNN on first use."""
    if name not in _REGISTRY:
        chapter = name.split(".", 1)[0]
        if not re.fullmatch(r"ch\d\d", chapter):
            raise KeyError(tr("exercise names look like 'ch01.causal_self_attention', got {name!r}",
                              "演習の名前は 'ch01.causal_self_attention' の形です ({name!r} が渡されました)", name=name))
        try:
            importlib.import_module(f"minigpt.check.{chapter}")
        except ModuleNotFoundError as e:
            if e.name == f"minigpt.check.{chapter}":
                raise KeyError(tr("no checkers for chapter {chapter}: minigpt/check/{chapter}.py does not exist",
                                  "章 {chapter} のチェッカーはありません (minigpt/check/{chapter}.py がありません)",
                                  chapter=chapter)) from None
            raise
    if name not in _REGISTRY:
        known = sorted(k for k in _REGISTRY if k.startswith(name.split(".", 1)[0] + "."))
        raise KeyError(tr("no exercise named {name!r}; this chapter has {known}",
                          "{name!r} という演習はありません。この章の演習: {known}", name=name, known=known))
    return _REGISTRY[name]


def all_exercises() -> list[Exercise]:
    """Every exercise of every chapter (imports all minigpt.check.chNN modules)."""
    import minigpt.check as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if re.fullmatch(r"ch\d\d", info.name):
            importlib.import_module(f"minigpt.check.{info.name}")
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def covers_table() -> str:
    """The markdown table of what each exercise's cases cover (docs/ENGINE.md), from `covers=`."""
    rows = ["| exercise | wrong | correct | the cases cover |", "|---|---|---|---|"]
    for ex in all_exercises():
        covers = ex.covers.replace("|", "\\|") if ex.covers else "(not stated yet)"
        rows.append(f"| `{ex.name}` | {len(ex.wrong)} | {len(ex.correct)} | {covers} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- device and state
_LOW_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
_LOW_TOL = {"bf16": (2e-2, 2e-2), "fp16": (2e-3, 2e-3)}


@contextlib.contextmanager
def _own_rng(seed: int, device):
    """Seeded random numbers for one case that leave the notebook's global RNG untouched."""
    import torch

    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _rng_state(device):
    import torch

    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state())
    return states


def _global_state() -> dict:
    import torch

    return {
        "default dtype": torch.get_default_dtype(),
        "grad mode": torch.is_grad_enabled(),
        "deterministic algorithms": (torch.are_deterministic_algorithms_enabled(),
                                     torch.is_deterministic_algorithms_warn_only_enabled()),
        "thread count": torch.get_num_threads(),
    }


def _restore_global_state(state: dict) -> None:
    import torch

    torch.set_default_dtype(state["default dtype"])
    torch.set_grad_enabled(state["grad mode"])
    flag, warn_only = state["deterministic algorithms"]
    torch.use_deterministic_algorithms(flag, warn_only=warn_only)
    if torch.get_num_threads() != state["thread count"]:
        torch.set_num_threads(state["thread count"])


_STATE_FIX = {
    "default dtype": ("torch.set_default_dtype(...) changes every later torch.zeros/randn of the notebook: "
                      "pass dtype= to the tensors you create instead",
                      "torch.set_default_dtype(...) はノートブックのその後の torch.zeros/randn すべてを変えてしまいます。"
                      "作るテンソルに dtype= を渡してください"),
    "grad mode": ("torch.set_grad_enabled(...) / torch.no_grad().__enter__() without leaving it: use `with torch.no_grad():`",
                  "torch.set_grad_enabled(...) などで勾配モードを切り替えたままです。`with torch.no_grad():` を使ってください"),
    "RNG state": ("your code seeds or draws from the global random generator (torch.manual_seed, torch.rand, "
                  "a dropout that ignores eval mode...): this exercise needs no randomness",
                  "グローバルな乱数生成器を再シードするか乱数を引いています (torch.manual_seed、torch.rand、"
                  "評価モードを無視するドロップアウトなど)。この演習に乱数は要りません"),
    "deterministic algorithms": ("torch.use_deterministic_algorithms(...) is a setting of the whole notebook: leave it",
                                 "torch.use_deterministic_algorithms(...) はノートブック全体の設定です。変えないでください"),
    "thread count": ("torch.set_num_threads(...) is a setting of the whole notebook: leave it",
                     "torch.set_num_threads(...) はノートブック全体の設定です。変えないでください"),
}


def _to(obj, device, dtype=None):
    """Move tensors (also inside tuples, lists and dicts) to `device`; float32 ones to `dtype` if given."""
    import torch

    if isinstance(obj, torch.Tensor):
        if dtype is not None and obj.dtype == torch.float32:
            return obj.to(device=device, dtype=dtype)
        return obj.to(device)
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_to(o, device, dtype) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device, dtype) for o in obj]
    if isinstance(obj, dict):
        return obj if _plain_dict(obj) else {k: _to(v, device, dtype) for k, v in obj.items()}
    return obj


def _to_cpu(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (tuple, list)) and not hasattr(obj, "_fields"):
        return type(obj)(_to_cpu(o) for o in obj)
    if isinstance(obj, dict):
        return obj if _plain_dict(obj) else {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _copy(obj):
    """A deep copy: tensors cloned (no grad), containers rebuilt, other objects deep-copied when they can be."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_copy(o) for o in obj)
    if isinstance(obj, list):
        return [_copy(o) for o in obj]
    if isinstance(obj, dict):
        if _plain_dict(obj):
            return dict(obj)  # fast: {pair: rank} tables of 50,000 entries
        return {k: _copy(v) for k, v in obj.items()}
    if _is_ndarray(obj):
        return obj.copy()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        try:
            return copy.deepcopy(obj)  # a config: a learner may change its fields
        except Exception:
            return obj
    return obj  # immutable, or shared on purpose (a tokenizer, a model given to both)


_PLAIN_TYPES = {int, float, str, bool, bytes, type(None)}


def _is_ndarray(obj) -> bool:
    return type(obj).__module__ == "numpy" and type(obj).__name__ == "ndarray"


def _plain_dict(d: dict) -> bool:
    """A dict of plain values only (a {pair: rank} table): copied and compared at C speed."""
    return set(map(type, d.values())) <= _PLAIN_TYPES


def _tensors(obj, prefix: str = ""):
    """(path, tensor) for every tensor inside obj."""
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, (tuple, list)):
        for i, o in enumerate(obj):
            yield from _tensors(o, f"{prefix}[{i}]")
    elif isinstance(obj, dict) and not _plain_dict(obj):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}[{k!r}]")


# ----------------------------------------------------------------------------- describing things
def _short(value, limit: int = 70) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 4] + " ..."


def _arg_text(value) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"<{tuple(value.shape)} {str(value.dtype).replace('torch.', '')}>"
    return _short(value, 30)


def describe(value) -> str:
    """A short description of a value for a report: a tensor's shape and dtype, a string's start."""
    import torch

    if isinstance(value, torch.Tensor):
        return tr("tensor of shape {s}, {d}", "形状 {s}、{d} のテンソル", s=tuple(value.shape),
                  d=str(value.dtype).replace("torch.", ""))
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return tr("{t} of {n} items", "要素 {n} 個の {t}", t=type(value).__name__, n=len(value))
    if isinstance(value, dict) and len(value) > 6:
        return tr("dict of {n} items", "要素 {n} 個の dict", n=len(value))
    if isinstance(value, type):
        return value.__name__
    return _short(value)


def _case_label(case: Case, index: int, n: int) -> str:
    label = tr("case {i} of {n}", "ケース {i}/{n}", i=index + 1, n=n)
    name = case.label_name()
    if name:
        return f"{label} ({name})"
    parts = [describe(a) for a in case.args] + [f"{k}={describe(v)}" for k, v in case.kwargs.items()]
    return tr("{l}: inputs {p}", "{l}: 入力 {p}", l=label, p=", ".join(parts)) if parts else label


def mistake_text(impl) -> str:
    """What a registered wrong implementation gets wrong: its docstring's first paragraph (the line
    `ja: ...` or the attribute `doc_ja` in Japanese), else its name."""
    doc = inspect.getdoc(impl) if (inspect.isfunction(impl) or inspect.isclass(impl)) else None
    if inspect.isclass(impl) and doc is not None and impl.__doc__ is None:
        doc = None  # inherited from the reference: says nothing about the mistake
    en, ja = "", getattr(impl, "doc_ja", "") or ""
    if doc:
        # the English text is the first paragraph up to a line `ja: ...`; the Japanese text runs from
        # that line to the end of its paragraph (it may wrap over several lines)
        en_lines, ja_lines, in_ja = [], [], False
        for i, paragraph in enumerate(doc.split("\n\n")):
            in_ja = False
            for line in paragraph.splitlines():
                line = line.strip()
                if line.startswith("ja:") and not ja_lines:
                    in_ja, line = True, line[3:].strip()
                if in_ja:
                    ja_lines.append(line)
                elif i == 0:
                    en_lines.append(line)
        en = " ".join(en_lines).strip()
        ja = ja or "".join(ja_lines).strip()
    if not en:
        en = getattr(impl, "__name__", type(impl).__name__).replace("_", " ")
    return ja if (ja and lang() == "ja") else en


# ----------------------------------------------------------------------------- comparing
def compare_values(expected, got, rtol: float = 1e-4, atol: float = 1e-5, where: str = "output") -> str | None:
    """None when `got` matches `expected`, else a message saying where and how they differ.

    Tensors must have the same shape and dtype; floating tensors are compared with
    |got - expected| <= atol + rtol * |expected| (NaN only where the reference has NaN), others
    exactly. Tuples, lists and dicts are compared item by item (a list where a tuple is expected is
    fine); floats with the same tolerance; a numpy integer counts as an int. Sequences of plain
    values and strings are shown aligned around their first difference.
    """
    import torch

    if got is expected and not isinstance(expected, torch.Tensor):
        return None  # the very same object (e.g. a shared table of 50,000 merges)
    if expected is not None and got is None:
        return tr("{w}: your code returned None (did you forget `return`?); expected {d}",
                  "{w}: あなたのコードは None を返しました (return を書き忘れていませんか?)。期待されるのは {d} です",
                  w=where, d=describe(expected))
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return tr("{w}: expected a tensor of shape {s}, got {d}", "{w}: 形状 {s} のテンソルが期待されますが、{d} でした",
                      w=where, s=tuple(expected.shape), d=describe(got))
        if got.shape != expected.shape:
            return tr("{w}: wrong shape: expected {e}, got {g}", "{w}: 形状が違います: 期待 {e}、実際 {g}",
                      w=where, e=tuple(expected.shape), g=tuple(got.shape))
        if got.dtype != expected.dtype:
            return tr("{w}: wrong dtype: expected {e}, got {g}", "{w}: dtype が違います: 期待 {e}、実際 {g}",
                      w=where, e=str(expected.dtype).replace("torch.", ""), g=str(got.dtype).replace("torch.", ""))
        return _compare_tensors(expected, got, rtol, atol, where)
    if _is_ndarray(expected):
        if not _is_ndarray(got):
            return tr("{w}: expected a numpy array of shape {s}, got {d}", "{w}: 形状 {s} の numpy 配列が期待されますが、{d} でした",
                      w=where, s=tuple(expected.shape), d=describe(got))
        import numpy as np

        return compare_values(torch.from_numpy(np.ascontiguousarray(expected)), torch.from_numpy(np.ascontiguousarray(got)),
                              rtol, atol, where)
    if isinstance(expected, str):
        if not isinstance(got, str):
            return tr("{w}: expected a str ({e}), got a {t} ({g})", "{w}: str ({e}) が期待されますが、{t} ({g}) でした",
                      w=where, e=_short(expected), t=type(got).__name__, g=_short(got))
        return None if got == expected else _sequence_diff(expected, got, where)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            if isinstance(got, torch.Tensor) and not isinstance(expected, torch.Tensor):
                return tr("{w}: expected a {t} of {n} items, got a tensor: convert it with .tolist()",
                          "{w}: 要素 {n} 個の {t} が期待されますが、テンソルでした。.tolist() で変換してください",
                          w=where, t=type(expected).__name__, n=len(expected))
            return tr("{w}: expected a {t} of {n} items, got {d}", "{w}: 要素 {n} 個の {t} が期待されますが、{d} でした",
                      w=where, t=type(expected).__name__, n=len(expected), d=describe(got))
        if _is_plain_sequence(expected):
            if _plain_equal(expected, got, rtol, atol):
                return None
            return _sequence_diff(list(expected), list(got), where)
        for i, (e, g) in enumerate(zip(expected, got)):
            msg = compare_values(e, g, rtol, atol, f"{where}[{i}]")
            if msg:
                return msg
        if len(got) != len(expected):
            return tr("{w}: expected {e} items, got {g}", "{w}: 要素数が違います: 期待 {e}、実際 {g}",
                      w=where, e=len(expected), g=len(got))
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return tr("{w}: expected a dict, got {d}", "{w}: dict が期待されますが、{d} でした", w=where, d=describe(got))
        missing, extra = [k for k in expected if k not in got], [k for k in got if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(tr("missing keys {k}", "足りないキー {k}", k=_short(missing[:5])) + (" ..." if len(missing) > 5 else ""))
            if extra:
                parts.append(tr("unexpected keys {k}", "余分なキー {k}", k=_short(extra[:5])) + (" ..." if len(extra) > 5 else ""))
            return tr("{w}: {p} ({e} keys expected, {g} given)", "{w}: {p} (期待されるキーは {e} 個、実際は {g} 個)",
                      w=where, p="; ".join(parts), e=len(expected), g=len(got))
        for k in expected:
            msg = compare_values(expected[k], got[k], rtol, atol, f"{where}[{k!r}]")
            if msg:
                return msg
        return None
    return _compare_scalars(expected, got, rtol, atol, where)


def _compare_scalars(expected, got, rtol, atol, where) -> str | None:
    import torch

    if isinstance(got, torch.Tensor) and got.dim() == 0 and isinstance(expected, (int, float)) \
            and not isinstance(expected, bool):
        return tr("{w}: expected a Python {t} ({e}), got a 0-dim tensor ({g}): use .item()",
                  "{w}: Python の {t} ({e}) が期待されますが、0 次元テンソル ({g}) でした。.item() を使ってください",
                  w=where, t=type(expected).__name__, e=_short(expected), g=_short(got.item()))
    if isinstance(expected, float) and isinstance(got, numbers.Real) and not isinstance(got, bool):
        got = float(got)
        if math.isnan(expected) and math.isnan(got):
            return None
        if expected == got or abs(got - expected) <= atol + rtol * abs(expected):
            return None
        return tr("{w}: expected {e:.6g}, got {g:.6g}", "{w}: 期待 {e:.6g}、実際 {g:.6g}", w=where, e=expected, g=got)
    if expected is None:
        return None if got is None else tr("{w}: expected None, got {d}", "{w}: None が期待されますが、{d} でした",
                                           w=where, d=describe(got))
    if isinstance(expected, int) and not isinstance(expected, bool):
        if isinstance(got, numbers.Integral) and not isinstance(got, bool):
            got = int(got)  # a numpy integer is fine where an int is expected
        elif isinstance(got, float) and got.is_integer():
            return tr("{w}: expected the int {e}, got the float {g}: use int(...) or // for whole numbers",
                      "{w}: int の {e} が期待されますが、float の {g} でした。整数には int(...) か // を使ってください",
                      w=where, e=expected, g=got)
    if type(got) is not type(expected) and not (isinstance(expected, int) and isinstance(got, int)):
        return tr("{w}: expected a {te} ({e}), got a {tg} ({g})", "{w}: {te} ({e}) が期待されますが、{tg} ({g}) でした",
                  w=where, te=type(expected).__name__, e=_short(expected), tg=type(got).__name__, g=_short(got))
    if got != expected:
        return tr("{w}: expected {e}, got {g}", "{w}: 期待 {e}、実際 {g}", w=where, e=_short(expected), g=_short(got))
    return None


def _is_plain_sequence(seq) -> bool:
    return len(seq) > 0 and all(isinstance(x, (str, bytes, numbers.Number)) and not hasattr(x, "shape") for x in seq)


def _plain_equal(expected, got, rtol, atol) -> bool:
    if len(expected) != len(got):
        return False
    return all(_compare_scalars(e, g, rtol, atol, "") is None for e, g in zip(expected, got))


def _sequence_diff(expected, got, where) -> str:
    """Both sequences (or strings) aligned around their first difference."""
    n = next((i for i, (a, b) in enumerate(zip(expected, got)) if not _same_item(a, b)), min(len(expected), len(got)))
    head = tr("{w}: {g} items, expected {e}; the first difference is at index {n}",
              "{w}: 要素 {g} 個 (期待は {e} 個)。最初の違いは位置 {n}", w=where, g=len(got), e=len(expected), n=n)
    if isinstance(expected, str):
        head = tr("{w}: {g} characters, expected {e}; the first difference is at character {n}",
                  "{w}: {g} 文字 (期待は {e} 文字)。最初の違いは {n} 文字目", w=where, g=len(got), e=len(expected), n=n)
    lo, hi = max(0, n - 4), n + 5
    exp_l, got_l = tr("expected", "期待"), tr("got", "実際")
    width = max(_width(exp_l), _width(got_l))
    exp_l, got_l = _pad(exp_l, width), _pad(got_l, width)
    if isinstance(expected, str):
        e_txt, g_txt = repr(expected[lo:hi]), repr(got[lo:hi]) if isinstance(got, str) else repr(got)
        col = _width(repr(expected[lo:n])) - 1
        pre = "..." if lo else ""
        lines = [f"    {exp_l} {pre}{e_txt}{'...' if hi < len(expected) else ''}",
                 f"    {got_l} {pre}{g_txt}{'...' if hi < len(got) else ''}",
                 f"    {' ' * width} {' ' * (len(pre) + col)}^"]
    else:
        e_cells = [repr(x) for x in expected[lo:hi]]
        g_cells = [repr(_plain(x)) for x in got[lo:hi]]
        k = max(len(e_cells), len(g_cells))
        e_cells += [""] * (k - len(e_cells))
        g_cells += [""] * (k - len(g_cells))
        widths = [max(_width(a), _width(b)) for a, b in zip(e_cells, g_cells)]
        pre = "... " if lo else ""
        e_line = " ".join(_pad(c, w) for c, w in zip(e_cells, widths)).rstrip()
        g_line = " ".join(_pad(c, w) for c, w in zip(g_cells, widths)).rstrip()
        col = len(pre) + sum(w + 1 for w in widths[: n - lo])
        lines = [f"    {exp_l} {pre}{e_line}{' ...' if hi < len(expected) else ''}",
                 f"    {got_l} {pre}{g_line}{' ...' if hi < len(got) else ''}",
                 f"    {' ' * width} {' ' * col}^"]
        if len(expected) == len(got) and len(expected) > 1 and _sorted_repr(expected) == _sorted_repr(got):
            head += tr(" (same items in another order: sort them, or keep the order of the input)",
                       " (同じ要素が別の順序で並んでいます: 並べ替えるか、入力の順序を保ってください)")
    return "\n".join([head] + lines)


def _width(s: str) -> int:
    """Columns `s` takes in a terminal or notebook: CJK characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, width: int) -> str:
    return s + " " * max(0, width - _width(s))


def _plain(x):
    return int(x) if isinstance(x, numbers.Integral) and not isinstance(x, bool) else x


def _same_item(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return a == b or abs(float(a) - float(b)) <= 1e-5 + 1e-4 * abs(float(a))
        except (TypeError, ValueError):
            return False
    return a == _plain(b) and (type(a) is type(_plain(b)) or isinstance(a, numbers.Number))


def _sorted_repr(seq):
    return sorted(repr(_plain(x)) for x in seq)


def _compare_tensors(expected, got, rtol, atol, where) -> str | None:
    import torch

    e, g = expected.detach().cpu(), got.detach().cpu()
    if e.is_complex() != g.is_complex():  # casting complex to real would silently drop the imaginary part
        complex_, real = tr("complex", "複素数"), tr("real", "実数")
        return tr("{w}: expected a {k1} tensor ({de}), got a {k2} one ({dg})",
                  "{w}: {k1}のテンソル ({de}) のはずが、{k2}のテンソル ({dg}) が返されました",
                  w=where, de=e.dtype, dg=g.dtype, k1=complex_ if e.is_complex() else real,
                  k2=complex_ if g.is_complex() else real)
    if not e.is_floating_point() and not e.is_complex():
        bad = e != g
        if not bad.any():
            return None
        idx = tuple(int(i) for i in bad.nonzero()[0])
        msg = tr("{w}: {n} of {t} values differ; first at index {i}: expected {e}, got {g}",
                 "{w}: {t} 個中 {n} 個の値が違います。最初はインデックス {i}: 期待 {e}、実際 {g}",
                 w=where, n=int(bad.sum()), t=e.numel(), i=idx, e=e[idx].item(), g=g[idx].item())
        if e.dim() >= 1 and torch.equal(e.sort(dim=-1).values, g.sort(dim=-1).values):
            msg += "\n    " + _order_note()
        return msg
    if e.dim() == 0:  # a scalar such as a loss
        ev, gv = e.double().item(), g.double().item()
        if (math.isnan(ev) and math.isnan(gv)) or ev == gv or abs(gv - ev) <= atol + rtol * abs(ev):
            return None
        return tr("{w}: expected {e:.6g}, got {g:.6g} (tolerance atol={a:g}, rtol={r:g})",
                  "{w}: 期待 {e:.6g}、実際 {g:.6g} (許容誤差 atol={a:g}, rtol={r:g})", w=where, e=ev, g=gv, a=atol, r=rtol)
    e64, g64 = e.double(), g.double()
    nan_e, nan_g = torch.isnan(e64), torch.isnan(g64)
    if (nan_g & ~nan_e).any():
        new_nan = nan_g & ~nan_e
        idx = tuple(int(i) for i in new_nan.nonzero()[0])
        n = int(new_nan.sum())
        msg = tr("{w}: {n} of {t} values are NaN where the reference has numbers; first at index {i} (expected {e:.6g}).",
                 "{w}: {t} 個中 {n} 個の値が、参照実装では数なのに NaN です。最初はインデックス {i} (期待 {e:.6g})。",
                 w=where, n=n, t=e.numel(), i=idx, e=e64[idx].item())
        rows = nan_g.all(dim=-1) & ~nan_e.all(dim=-1) if e.dim() >= 1 else nan_g
        if e.dim() >= 1 and rows.any() and not _LARGE_INPUTS[0]:
            r = tuple(int(i) for i in rows.nonzero()[0])
            msg += " " + tr("The whole row {r} is NaN: a fully masked row (every score -inf, so softmax is 0/0 "
                            "= NaN)? Check which positions your mask lets each row see.",
                            "行 {r} 全体が NaN です: すべてのスコアが -inf の行 (完全にマスクされた行、softmax が 0/0 = NaN) "
                            "ではありませんか? マスクが各行に見せる位置を確かめてください。", r=r)
        else:
            msg += " " + tr("An overflow (exp of a large number: inf / inf) or 0/0?",
                            "オーバーフロー (大きな数の exp で inf / inf) か 0/0 ではありませんか?")
        return msg
    if (nan_e & ~nan_g).any():
        idx = tuple(int(i) for i in (nan_e & ~nan_g).nonzero()[0])
        return tr("{w}: the reference has NaN at index {i}, you have {g:.6g}", "{w}: 参照実装ではインデックス {i} が NaN ですが、{g:.6g} でした",
                  w=where, i=idx, g=g64[idx].item())
    both = ~nan_e
    inf_mismatch = both & (torch.isinf(e64) | torch.isinf(g64)) & (e64 != g64)
    if inf_mismatch.any():
        idx = tuple(int(i) for i in inf_mismatch.nonzero()[0])
        return tr("{w}: at index {i} expected {e:.6g}, got {g:.6g}", "{w}: インデックス {i}: 期待 {e:.6g}、実際 {g:.6g}",
                  w=where, i=idx, e=e64[idx].item(), g=g64[idx].item())
    finite = both & torch.isfinite(e64)
    diff = torch.where(finite, (g64 - e64).abs(), torch.zeros_like(e64))
    allowed = atol + rtol * e64.abs()
    bad = finite & (diff > allowed)
    if not bad.any():
        return None
    flat = int(torch.argmax(torch.where(bad, diff, torch.zeros_like(diff))))
    idx = tuple(int(i) for i in _unravel(flat, e.shape))
    msg = tr("{w}: {n} of {t} values differ; max |expected - got| = {d:.4g} at index {i}: expected {e:.6g}, got {g:.6g} "
             "(tolerance atol={a:g}, rtol={r:g})",
             "{w}: {t} 個中 {n} 個の値が違います。|期待 - 実際| の最大は {d:.4g}、インデックス {i}: 期待 {e:.6g}、実際 {g:.6g} "
             "(許容誤差 atol={a:g}, rtol={r:g})",
             w=where, n=int(bad.sum()), t=e.numel(), d=diff.max().item(), i=idx, e=e64[idx].item(), g=g64[idx].item(),
             a=atol, r=rtol)
    if e.dim() >= 1 and e.shape[-1] > 1:
        es, gs = e64.sort(dim=-1).values, g64.sort(dim=-1).values
        if torch.allclose(es, gs, rtol=rtol, atol=atol, equal_nan=True):
            msg += "\n    " + _order_note()
    return msg


_LARGE_INPUTS = [False]  # set while comparing: the case's inputs exceed ~80 (exp overflows float32 near 88)


def _order_note() -> str:
    return tr("same values in another order: sort them (torch.sort), or use sorted=True (topk)",
              "同じ値が別の順序で並んでいます: 並べ替える (torch.sort) か、sorted=True (topk) を使ってください")


def _unravel(flat: int, shape) -> list[int]:
    out = []
    for size in reversed(tuple(shape)):
        out.append(flat % size)
        flat //= size
    return list(reversed(out))


# ----------------------------------------------------------------------------- tracebacks
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # minigpt/
_CHECK_DIR = str(Path(__file__).resolve().parent)  # minigpt/check/
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]
_CELL_FILE = re.compile(r".*[/\\]ipykernel_\d+[/\\]\d+\.py$|^<ipython-input-.*>$")


def _learner_traceback(exc: BaseException, limit: int = 6) -> str:
    """The frames of the learner's own code (notebook cells and their files), most recent last."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if not _is_library_frame(f.filename)]
    if not mine:  # registered implementations live in minigpt/check: show their frames, never the engine's
        mine = [f for f in frames if _in_check_modules(f.filename)]
    lines = []
    for f in mine[-limit:]:
        place = tr("your notebook cell", "あなたのノートブックのセル") if _CELL_FILE.match(f.filename or "") else f.filename
        lines.append(tr("    {p}, line {n}, in {f}", "    {p}、{n} 行目、{f} の中", p=place, n=f.lineno, f=f.name))
        if f.line:
            lines.append(f"      {f.line.strip()}")
    lines.append(f"  {type(exc).__name__}: {_first_line(exc)}")
    return "\n".join(lines)


def _in_check_modules(filename: str) -> bool:
    path = str(Path(filename).resolve()) if filename and not filename.startswith("<") else ""
    return path.startswith(_CHECK_DIR) and not path.endswith("__init__.py")


def _is_library_frame(filename: str) -> bool:
    """minigpt itself, installed packages (torch...) and the standard library: not the learner's code."""
    path = str(Path(filename).resolve()) if filename and not filename.startswith("<") else (filename or "")
    return (path.startswith(_PACKAGE_DIR) or path.startswith(_STDLIB_DIR)
            or "site-packages" in path or "dist-packages" in path)


def _raised_by_learner(exc: BaseException) -> bool:
    """Whether the innermost frame of `exc` is code the learner (or a test) wrote, not torch or the engine."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return True
    last = frames[-1].filename or ""
    path = str(Path(last).resolve()) if not last.startswith("<") else last
    return not (path.startswith(_STDLIB_DIR) or "site-packages" in path or "dist-packages" in path
                or path == str(Path(__file__).resolve()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= 300 else first[:297] + "..."


# ----------------------------------------------------------------------------- the reference itself
def _is_reference(ex: Exercise, obj) -> bool:
    """`obj` is the reference, a wrapper of it (`functools.wraps`, `partial`), a function whose code
    calls it, or a class that only subclasses it."""
    refs = [ex.reference, *ex.also_reference]
    if ex.fallback is not None:
        refs.append(ex.fallback)
    o = obj
    for _ in range(6):
        if any(o is r for r in refs):
            return True
        if isinstance(o, functools.partial):
            o = o.func
            continue
        o = getattr(o, "__wrapped__", None)
        if o is None:
            break
    if inspect.isclass(obj):
        if inspect.isclass(ex.reference) and obj is not ex.reference and issubclass(obj, ex.reference):
            own = [v for k, v in vars(obj).items() if inspect.isfunction(v) and not k.startswith("__")]
            own += [vars(obj)[k] for k in ("forward", "__call__") if inspect.isfunction(vars(obj).get(k))]
            if not own and "__init__" not in vars(obj):
                return True
            return any(_code_calls(f, refs) for f in own)
        return False
    return inspect.isfunction(obj) and _code_calls(obj, refs)


def _code_calls(fn, refs) -> bool:
    names, codes = set(), [fn.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
    scope = dict(getattr(fn, "__globals__", {}))
    for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            scope[var] = cell.cell_contents
        except ValueError:
            pass
        names.add(var)
    ref_names = {getattr(r, "__name__", None) for r in refs}
    for n in names:
        value = scope.get(n)
        if value is None:
            continue
        if any(value is r for r in refs):
            return True
        if inspect.ismodule(value) or inspect.isclass(value):
            for rn in ref_names & names:
                if rn and any(getattr(value, rn, None) is r for r in refs):
                    return True
    return False


# ----------------------------------------------------------------------------- running
class _Failure(Exception):
    """One case failed: the report's head (the case label is added by the caller) and its kind."""

    def __init__(self, head: str, problem: str, tb: str | None = None):
        super().__init__(head)
        self.head, self.problem, self.tb = head, problem, tb


class _StubRaised(Exception):
    pass


class _WeightMismatch(Exception):
    pass


def _load_reference_weights(module, ref_state: dict) -> None:
    mine = module.state_dict()
    missing = [k for k in ref_state if k not in mine]
    extra = [k for k in mine if k not in ref_state]
    if missing or extra:
        lines = [tr("your module's parameters are not named like the reference's, so the checker cannot give it "
                    "the same weights. Keep the __init__ the notebook gives you.",
                    "あなたのモジュールのパラメータ名が参照実装と違うので、同じ重みを渡せません。"
                    "ノートブックにある __init__ はそのまま使ってください。")]
        if missing:
            lines.append(tr("  missing: ", "  足りない: ") + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""))
        if extra:
            lines.append(tr("  unexpected: ", "  余分: ") + ", ".join(extra[:6]) + (" ..." if len(extra) > 6 else ""))
        raise _WeightMismatch("\n".join(lines))
    for k, v in ref_state.items():
        if tuple(mine[k].shape) != tuple(v.shape):
            raise _WeightMismatch(tr("parameter {k} has shape {a}, the reference's has {b}. Keep the __init__ the "
                                     "notebook gives you.",
                                     "パラメータ {k} の形状は {a} ですが、参照実装では {b} です。ノートブックにある "
                                     "__init__ はそのまま使ってください。", k=k, a=tuple(mine[k].shape), b=tuple(v.shape)))
    module.load_state_dict(ref_state)


def _arg_names(ex: Exercise, args: tuple, kwargs: dict) -> list[str]:
    """Names for the positional arguments (the reference's parameter names where it has them)."""
    target = ex.reference
    if ex.kind == "module":
        target = getattr(ex.reference, "forward", None)
    try:
        params = [p for p in inspect.signature(target).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if ex.kind == "module" and params and params[0].name == "self":
        params = params[1:]
    names = [p.name for p in params]
    return [names[i] if i < len(names) else f"argument {i + 1}" for i in range(len(args))]


def _changed_input(ex: Exercise, names, given, pristine) -> str | None:
    """The name of the first input (or a path inside it) that differs from its untouched copy."""
    import torch

    def same(a, b) -> bool:
        if isinstance(b, torch.Tensor):
            return (isinstance(a, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype
                    and bool(torch.equal(a.detach().cpu().nan_to_num(7.5), b.detach().cpu().nan_to_num(7.5))))
        if isinstance(b, (tuple, list)):
            return isinstance(a, (tuple, list)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(b, dict):
            if isinstance(a, dict) and _plain_dict(b):
                return a == b
            return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
        if a is b:
            return True
        if _is_ndarray(b):
            import numpy as np

            return _is_ndarray(a) and a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))
        if isinstance(b, (str, bytes, int, float, bool, type(None))):
            return a == b or (isinstance(b, float) and math.isnan(b) and isinstance(a, float) and math.isnan(a))
        try:
            return bool(a == b) if type(a).__eq__ is not object.__eq__ else True
        except Exception:
            return True

    for name, a, b in zip(names, given, pristine):
        if name in ex.mutates:
            continue
        if not same(a, b):
            return name
    return None


def _mutation_report(name: str, kind: str = "function") -> str:
    who = {"function": tr("your function", "あなたの関数"), "module": tr("your forward", "あなたの forward"),
           "class": tr("your method", "あなたのメソッド")}[kind]
    return tr("{who} changed its input `{n}` (an in-place operation such as `{n} -= ...`, `{n}.sub_(...)`, "
              "`{n}[...] = ...`, or changing a list/dict you were given): work on new tensors instead "
              "(`{n} = {n} - ...`, `{n}.clone()`)",
              "{who}が入力 `{n}` を書き換えました (`{n} -= ...`、`{n}.sub_(...)`、`{n}[...] = ...` などのインプレース演算、"
              "または渡されたリストや dict の変更)。新しいテンソルで計算してください (`{n} = {n} - ...`、`{n}.clone()`)",
              n=name, who=who)


def _device_problem(out, device) -> str | None:
    for path, t in _tensors(out):
        if t.device.type != device.type:
            return tr("output{p} is on {g}, but the inputs live on {e}: a tensor was created without a device "
                      "(torch.ones(T, T) is on the CPU). Create it with device=x.device (or torch.ones_like(x), x.new_ones(...)).",
                      "出力{p} が {g} 上にありますが、入力は {e} 上にあります: device を指定せずに作ったテンソルがあります "
                      "(torch.ones(T, T) は CPU 上)。device=x.device を付けて作ってください (torch.ones_like(x)、x.new_ones(...) も可)。",
                      p=path, g=t.device.type, e=device.type)
    return None


def _device_error(exc: BaseException) -> str | None:
    text = str(exc)
    if "same device" in text or ("device" in text and ("cuda" in text and "cpu" in text)):
        return tr("a tensor you created lives on another device than the inputs (torch.ones(T, T) is on the CPU "
                  "while x is on the GPU): create it with device=x.device (or torch.ones_like(x), x.new_ones(...))",
                  "作ったテンソルが入力とは別のデバイスにあります (x が GPU 上でも torch.ones(T, T) は CPU 上)。"
                  "device=x.device を付けて作ってください (torch.ones_like(x)、x.new_ones(...) も可)")
    return None


class _Runner:
    """Runs one implementation on one case (one dtype) the way the engine needs: fresh inputs, global
    state watched, a module built with the reference's weights."""

    def __init__(self, ex: Exercise, case: Case, index: int, device, dtype=None):
        import torch

        self.ex, self.case, self.index, self.device = ex, case, index, device
        self.dtype = None if dtype is None else getattr(torch, _LOW_DTYPES[dtype])
        self.dtype_name = dtype
        self.seed = 1000 + index
        base_args = _to(case.args, device, self.dtype)
        base_kwargs = _to(case.kwargs, device, self.dtype)
        self.base = (base_args, base_kwargs)
        self.names = _arg_names(ex, case.args, case.kwargs)
        self.ref_state = None
        self.expected = None
        self.ref_rng_after = None
        self.ref_grads = None  # {name: grad or None}
        self.differentiable = False

    def fresh(self, requires_grad: bool = False):
        args, kwargs = _copy(self.base[0]), _copy(self.base[1])
        if requires_grad:
            for _, t in list(_tensors(args)) + list(_tensors(kwargs)):
                if t.is_floating_point():
                    t.requires_grad_(True)
        return args, kwargs

    # -- building and calling
    def _build(self, obj, is_reference: bool):
        import torch

        with _own_rng(self.seed, self.device):
            module = obj(*_copy(self.case.init), **_copy(self.case.init_kwargs))
        if not isinstance(module, torch.nn.Module):
            raise _Failure(tr("{o}(...) built a {t}, not a torch.nn.Module", "{o}(...) が作ったのは {t} で、torch.nn.Module ではありません",
                              o=describe(obj), t=type(module).__name__), "kind")
        module = module.to(self.device)
        if self.dtype is not None:
            module = module.to(self.dtype)
        if is_reference:
            if self.ex.randomize:
                with torch.no_grad():
                    g = torch.Generator().manual_seed(self.seed)
                    for p in module.parameters():
                        p.add_((torch.randn(p.shape, generator=g) * 0.1).to(p.device, p.dtype))
            self.ref_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            _load_reference_weights(module, self.ref_state)
        module.eval()
        return module

    def call(self, obj, args, kwargs, module=None, grad: bool = True):
        import torch

        ex = self.ex
        with _own_rng(self.seed, self.device):
            if ex.run is not None:
                case = Case(args=args, kwargs=kwargs, init=self.case.init, name=self.case.name,
                            init_kwargs=self.case.init_kwargs, steps=self.case.steps)
                out = ex.run(obj, case)
            elif ex.kind == "function":
                with torch.set_grad_enabled(grad):
                    out = obj(*args, **kwargs)
                    self.grad_mode_left = torch.is_grad_enabled() != grad
            else:
                with torch.set_grad_enabled(grad):
                    out = module(*args, **kwargs)
                    self.grad_mode_left = torch.is_grad_enabled() != grad
            rng_after = _rng_state(self.device)
        return out, rng_after

    # -- the reference
    def run_reference(self):
        import torch

        ex = self.ex
        want_grad = (self.dtype is None and ex.run is None and ex.kind in ("function", "module")
                     and ex.grad is not False and self.case.grad is not False)
        args, kwargs = self.fresh(requires_grad=want_grad)
        module = self._build(ex.reference, True) if ex.kind == "module" else None
        with torch.enable_grad():
            out, self.ref_rng_after = self.call(ex.reference, args, kwargs, module, grad=want_grad)
        self.expected = _to_cpu(out)
        floats = [t for _, t in _tensors(out) if t.is_floating_point() or t.is_complex()]
        self.differentiable = want_grad and any(t.requires_grad for t in floats)
        if self.differentiable:
            self.ref_grads = self._grads(out, args, kwargs, module)

    def _projection_loss(self, out):
        import torch

        total = None
        for j, (_, t) in enumerate(_tensors(out)):
            if not (t.is_floating_point() and t.requires_grad):
                continue
            g = torch.Generator().manual_seed(7 + j)
            w = torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device, t.dtype)
            finite = torch.isfinite(t.detach())
            term = (torch.where(finite, t, torch.zeros_like(t)) * w).sum()
            total = term if total is None else total + term
        return total

    def _grads(self, out, args, kwargs, module) -> dict:
        import torch

        leaves = {}
        for name, a in zip(self.names, args):
            for path, t in _tensors(a, name):
                if t.requires_grad:
                    leaves[path] = t
        for k, v in kwargs.items():
            for path, t in _tensors(v, k):
                if t.requires_grad:
                    leaves[path] = t
        if module is not None:
            for k, p in module.named_parameters():
                if p.requires_grad:
                    leaves[k] = p
                    p.grad = None
        loss = self._projection_loss(out)
        if loss is None:
            return {k: None for k in leaves}
        with torch.enable_grad():
            loss.backward()
        return {k: (None if t.grad is None else t.grad.detach().cpu().clone()) for k, t in leaves.items()}

    # -- the learner
    def run_candidate(self, obj) -> Any:
        """Returns the output (CPU); raises _Failure or _StubRaised."""
        import torch

        ex = self.ex
        args, kwargs = self.fresh()
        pristine = (_copy(args), _copy(kwargs))
        module = None
        if ex.kind == "module":
            try:
                module = self._build(obj, False)
            except _WeightMismatch as e:
                raise _Failure(str(e), "weights") from None
            except _Failure:
                raise
            except NotImplementedError as e:
                if _raised_by_learner(e):
                    raise _StubRaised() from None
                raise _Failure(*self._raised(e)) from None
            except Exception as e:
                raise _Failure(*self._raised(e)) from None
        out, self.rng_after = self._guarded(lambda: self.call(obj, args, kwargs, module, grad=ex.kind != "module"))
        if self.ref_rng_after is not None:
            self.check_rng(self.rng_after)
        name = _changed_input(ex, self.names + list(kwargs), list(args) + list(kwargs.values()),
                              list(pristine[0]) + list(pristine[1].values()))
        if name is not None:
            raise _Failure(_mutation_report(name, ex.kind), "mutation")
        if module is not None:
            for k, p in module.named_parameters():
                if k in self.ref_state and not torch.equal(p.detach(), self.ref_state[k].to(p.device)):
                    raise _Failure(tr("your forward changed the module's parameter `{k}`: forward must only read the "
                                      "weights (no `self.{k}.data...=` or in-place ops on it)",
                                      "あなたの forward がモジュールのパラメータ `{k}` を書き換えました。forward は重みを読むだけにしてください "
                                      "(`self.{k}.data...=` や、それへのインプレース演算をしない)", k=k), "mutation")
        if ex.uses_device and ex.run is None:
            problem = _device_problem(out, self.device)
            if problem:
                raise _Failure(problem, "device")
        self.cand_module = module
        return _to_cpu(out)

    def _guarded(self, fn):
        """Run the learner's code with the global state watched (and restored)."""
        ex = self.ex
        before = _global_state()
        try:
            result = fn()
        except NotImplementedError as e:
            _restore_global_state(before)
            if _raised_by_learner(e):
                raise _StubRaised() from None
            raise _Failure(*self._raised(e)) from None
        except _Failure:
            _restore_global_state(before)
            raise
        except Exception as e:
            _restore_global_state(before)
            raise _Failure(*self._raised(e)) from None
        after = _global_state()
        if getattr(self, "grad_mode_left", False):  # changed inside our own set_grad_enabled block
            after["grad mode"] = not before["grad mode"]
            self.grad_mode_left = False
        _restore_global_state(before)
        if ex.global_state:
            for key in before:
                if before[key] != after[key]:
                    self._state_failure(key, before[key], after[key])
        return result

    def _state_failure(self, key, before, after):
        en, ja = _STATE_FIX[key]
        if key == "RNG state":
            raise _Failure(tr("your code changed the global random generator's state: {fix}. (The checker has set it back.)",
                              "あなたのコードがグローバルな乱数生成器の状態を変えました: {fix}。(チェッカーが元に戻しました。)",
                              fix=tr(en, ja)), "global")
        raise _Failure(tr("your code changed the global {k} ({b} -> {a}) and did not restore it: {fix}. "
                          "(The checker has set it back.)",
                          "あなたのコードがグローバルな {k} を変えたまま戻していません ({b} -> {a}): {fix}。"
                          "(チェッカーが元に戻しました。)", k=key, b=_short(before, 30), a=_short(after, 30),
                          fix=tr(en, ja)), "global")

    def _raised(self, e: BaseException):
        dev = _device_error(e)
        if isinstance(e, TypeError) and "NoneType" in str(e):
            head = tr("raised {t}: {m}. Some code of yours returned None where a value was expected: did you forget `return`?",
                      "{t} が発生しました: {m}。あなたのコードのどこかが、値が必要な所で None を返しています。return を書き忘れていませんか?",
                      t=type(e).__name__, m=_first_line(e))
        else:
            head = tr("raised {t}: {m}", "{t} が発生しました: {m}", t=type(e).__name__, m=_first_line(e))
        if dev:
            head += "\n  " + dev
        return head, "raised", _learner_traceback(e)

    def check_rng(self, rng_after):
        import torch

        if not self.ex.global_state or self.ref_rng_after is None or rng_after is None:
            return
        if any(not torch.equal(a, b) for a, b in zip(rng_after, self.ref_rng_after)):
            self._state_failure("RNG state", "seeded", "changed")

    def run_candidate_grads(self, obj) -> None:
        """The gradient pass: raises _Failure when the learner's gradients differ from the reference's."""
        import torch

        ex = self.ex
        args, kwargs = self.fresh(requires_grad=True)
        module = self.cand_module
        if module is not None:
            for p in module.parameters():
                p.grad = None
        with torch.enable_grad():
            out = self._guarded(lambda: self.call(obj, args, kwargs, module, grad=True)[0])
        floats = [t for _, t in _tensors(out) if t.is_floating_point()]
        if not any(t.requires_grad for t in floats):
            raise _Failure(tr("your output carries no gradient (no grad_fn): it is detached from the inputs. "
                              "Look for .detach(), .data, .item(), .tolist(), .numpy(), torch.tensor(...) of results, "
                              "@torch.no_grad() or `with torch.no_grad():` on the way.",
                              "出力に勾配がありません (grad_fn がない): 入力から切り離されています。途中の .detach()、.data、"
                              ".item()、.tolist()、.numpy()、結果の torch.tensor(...)、@torch.no_grad() や "
                              "`with torch.no_grad():` を探してください。"), "grad")
        try:
            with torch.enable_grad():
                got = self._grads(out, args, kwargs, module)
        except Exception as e:
            raise _Failure(tr("backward() through your output failed: {t}: {m}",
                              "あなたの出力からの backward() が失敗しました: {t}: {m}", t=type(e).__name__, m=_first_line(e)),
                           "grad", _learner_traceback(e)) from None
        rtol = ex.grad_rtol if ex.grad_rtol is not None else 10 * ex.rtol
        atol = ex.grad_atol if ex.grad_atol is not None else 10 * ex.atol
        for name, g_ref in self.ref_grads.items():
            g = got.get(name)
            if g_ref is None or not bool((g_ref != 0).any()):
                continue
            if g is None:
                raise _Failure(tr("the values are right, but no gradient flows to `{n}`: it is cut off on the way "
                                  "(.detach(), .data, .item(), torch.no_grad(), a new tensor built from values)",
                                  "値は正しいのですが、`{n}` に勾配が流れません: 途中で切れています "
                                  "(.detach()、.data、.item()、torch.no_grad()、値から新しく作ったテンソル)", n=name), "grad")
            scale = float(g_ref.abs().max())
            msg = compare_values(g_ref, g, rtol, atol * max(1.0, scale),
                                 where=tr("gradient of `{n}` differs", "`{n}` の勾配が違います", n=name))
            if msg:
                raise _Failure(tr("the values are right, but the {m}. Something on the way changes how the output depends on `{n}` "
                                  "(a detached part, a constant where a tensor belongs)",
                                  "値は正しいのですが、{m}。出力の `{n}` への依存が途中で変わっています "
                                  "(一部が切り離されている、テンソルであるべき所が定数になっている)", m=msg, n=name), "grad")


def _known_mistake(ex: Exercise, runner: _Runner | None, case: Case, got, compare) -> str | None:
    """The description of a registered wrong implementation whose output on this case equals `got`."""
    for wrong in ex.wrong:
        try:
            if runner is not None:
                before = _global_state()
                try:
                    out = runner.run_candidate(wrong)
                finally:
                    _restore_global_state(before)
            else:
                out = _run_lifecycle_quiet(ex, wrong, case)
        except Exception:
            continue
        try:
            same = compare(out, got) is None
        except Exception:
            same = False
        if not same and not list(_tensors(out)):
            try:
                same = bool(out == got)
            except Exception:
                same = False
        if same:
            return mistake_text(wrong)
    return None


def _lifecycle(ex: Exercise, obj, case: Case, device, results: list, stop_at: int | None = None):
    """Build a stateful object and run its steps; appends each step's result to `results`."""
    init_args = _to(_copy(case.init), device) if ex.uses_device else _copy(case.init)
    instance = obj(*init_args, **_copy(case.init_kwargs))
    for i, step in enumerate(case.steps):
        if stop_at is not None and i > stop_at:
            break
        args = _to(_copy(step.args), device) if ex.uses_device else _copy(step.args)
        kwargs = _to(_copy(step.kwargs), device) if ex.uses_device else _copy(step.kwargs)
        pristine = (_copy(args), _copy(kwargs))
        if step.action == "set":
            setattr(instance, step.attr, args[0])
            out = None
        elif step.action == "get":
            out = getattr(instance, step.attr)
        else:
            out = getattr(instance, step.attr)(*args, **kwargs)
        results.append((_to_cpu(_copy(out)), args, kwargs, pristine))
    return instance


def _run_lifecycle_quiet(ex, obj, case):
    import torch

    results = []
    _lifecycle(ex, obj, case, torch.device("cpu") if not ex.uses_device else check_device(), results)
    return [r[0] for r in results]


def _step_names(ex: Exercise, obj, step: Step) -> list[str]:
    if step.action != "call":
        return []
    try:
        fn = getattr(ex.reference, step.attr)
        params = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    except (TypeError, ValueError, AttributeError):
        params = []
    return [params[i] if i < len(params) else f"argument {i + 1}" for i in range(len(step.args))]


def _run_lifecycle_case(ex: Exercise, obj, case: Case, label: str, device) -> None:
    """Raises _Failure (with the step named) or _StubRaised."""
    var = "obj"
    ref_results: list = []
    with _own_rng(0, device):
        _lifecycle(ex, ex.reference, case, device, ref_results)
    got_results: list = []
    before = _global_state()
    try:
        with _own_rng(0, device):
            _lifecycle(ex, obj, case, device, got_results)
        error = None
    except NotImplementedError as e:
        error = e
        if _raised_by_learner(e):
            _restore_global_state(before)
            raise _StubRaised() from None
    except Exception as e:  # noqa: BLE001 - the learner's code
        error = e
    after = _global_state()
    _restore_global_state(before)

    def history(n):
        lines = [f"    {var} = {describe(obj)}({', '.join(_arg_text(a) for a in case.init)})"]
        for j, (step, res) in enumerate(zip(case.steps[:n], ref_results[:n])):
            shown = "" if step.action == "set" else f"  -> {_short(res[0], 50)}"
            lines.append(f"    {step.text(var)}{shown}")
        return lines[-8:] if len(lines) > 8 else lines

    n_steps = len(case.steps)
    if error is not None:
        i = len(got_results)
        step = case.steps[i] if i < n_steps else None
        where = (tr("step {i} of {n}", "ステップ {i}/{n}", i=i + 1, n=n_steps) + (f" ({step.name})" if step and step.name else "")
                 + (f": {step.text(var)}" if step else tr(": building the object", ": オブジェクトの生成")))
        head, problem, tb = _Runner(ex, Case(), 0, device)._raised(error)
        lines = [f"{where} {head}", tr("  steps before it (with the reference's results):", "  それまでのステップ (参照実装の結果):")]
        raise _Failure("\n".join(lines + history(i)), problem, tb)
    for key in before:
        if ex.global_state and before[key] != after[key]:
            _Runner(ex, Case(), 0, device)._state_failure(key, before[key], after[key])
    for i, (step, (e_out, _, _, _), (g_out, g_args, g_kwargs, pristine)) in enumerate(zip(case.steps, ref_results, got_results)):
        names = _step_names(ex, obj, step) + list(g_kwargs)
        changed = _changed_input(ex, names, list(g_args) + list(g_kwargs.values()),
                                 list(pristine[0]) + list(pristine[1].values()))
        where = tr("step {i} of {n}", "ステップ {i}/{n}", i=i + 1, n=n_steps) + (f" ({step.name})" if step.name else "")
        if changed is not None and step.action == "call":
            raise _Failure(f"{where}: {step.text(var)}: " + _mutation_report(changed, "class"), "mutation")
        do_compare = step.compare if step.compare is not None else e_out is not None
        if not do_compare:
            continue
        if ex.compare is not None and not step.output_names:
            msg = ex.compare(e_out, g_out)
        elif step.output_names and isinstance(e_out, tuple):
            msg = None
            if not isinstance(g_out, (tuple, list)) or len(g_out) != len(e_out):
                msg = tr("returned {d}, expected a tuple ({n})", "戻り値は {d} でしたが、タプル ({n}) が期待されます",
                         d=describe(g_out), n=", ".join(step.output_names))
            else:
                for nm, e, g in zip(step.output_names, e_out, g_out):
                    msg = compare_values(e, g, ex.rtol, ex.atol, nm)
                    if msg:
                        break
        else:
            what = tr("the result", "結果") if step.action == "call" else f"{var}.{step.attr}"
            msg = compare_values(e_out, g_out, ex.rtol, ex.atol, what)
        if msg:
            lines = [f"{where}: {step.text(var)}", f"  {msg}"]
            wrong_msg = _lifecycle_known_mistake(ex, case, i, [r[0] for r in got_results])
            if wrong_msg:
                lines.append("  " + _mistake_line(wrong_msg))
            lines.append(tr("  steps before it (with the reference's results):", "  それまでのステップ (参照実装の結果):"))
            raise _Failure("\n".join(lines + history(i)), "value")


def _lifecycle_known_mistake(ex, case, i, got_outs):
    """A wrong implementation whose results at steps 1..i+1 are exactly the learner's."""
    for wrong in ex.wrong:
        try:
            outs = _run_lifecycle_quiet(ex, wrong, case)
            if len(outs) > i and compare_values(got_outs[: i + 1], outs[: i + 1], ex.rtol, ex.atol) is None:
                return mistake_text(wrong)
        except Exception:
            continue
    return None


def _mistake_line(text: str) -> str:
    return tr("this is what you get with a known mistake: {m}", "これはよくある間違いと同じ出力です: {m}", m=text)


def run_exercise(ex: Exercise | str, obj, device=None) -> Result:
    """Run `obj` against exercise `ex` on every case. Never raises for the learner's mistakes:
    the Result says whether it passed, was not implemented yet, or failed (with a report)."""
    __tracebackhide__ = True
    import torch

    if isinstance(ex, str):
        ex = get_exercise(ex)
    if device is None:
        device = check_device() if ex.uses_device else torch.device("cpu")
    device = torch.device(device)
    dev_name = str(device.type)
    problem = _kind_problem(ex, obj)
    if problem:
        return Result(ex.name, False, 0, report=_report(ex, problem, None), device=dev_name, problem="kind")
    cases = list(ex.cases())
    compare = ex.compare or (lambda e, g: _compare_outputs(ex, e, g))
    stubbed, done, ran = [], [], []  # ran: cases where some call of the learner's code returned
    state = _global_state()
    try:
        with exact_float32(device):
            for i, case in enumerate(cases):
                label = _case_label(case, i, len(cases))
                variants = [None] + [d for d in (ex.dtypes if case.dtypes is None else case.dtypes)
                                     if ex.kind != "class" and ex.run is None and (ex.kind == "module" or _has_float32(case))]
                for variant in variants:
                    where = label if variant is None else tr("{l}, in {d}", "{l}、{d} で", l=label, d=variant)
                    try:
                        _run_one(ex, obj, case, i, variant, device, compare, ran)
                    except _StubRaised:
                        stubbed.append(where)
                        break
                    except _Failure as f:
                        lifecycle = ex.kind == "class" and ex.run is None
                        head = (f"{where}\n  {f.head}" if f.problem == "value" and not lifecycle
                                else f"{where}: {f.head}")
                        return Result(ex.name, False, i, report=_report(ex, head, f.tb), device=dev_name,
                                      problem=f.problem)
                    else:
                        done.append(where)
    finally:
        _restore_global_state(state)
    if stubbed:
        if not done and not ran:
            return Result(ex.name, False, 0, not_implemented=True, device=dev_name)
        head = tr("your code raises NotImplementedError in {s}, but runs {d}: a branch is still a stub. "
                  "Finish it (the checker does not fall back to the reference for a partly written exercise).",
                  "あなたのコードは {s} で NotImplementedError を出しますが、{d} では動きます: まだスタブのままの分岐があります。"
                  "書き上げてください (一部だけ書かれた演習では参照実装に切り替えません)。",
                  s=stubbed[0], d=done[0] if done else tr("another call of the same case", "同じケースの別の呼び出し"))
        return Result(ex.name, False, len(done), report=_report(ex, head, None), device=dev_name, problem="partial-stub")
    return Result(ex.name, True, len(cases), device=dev_name, is_reference=_is_reference(ex, obj))


def _has_float32(case: Case) -> bool:
    import torch

    tensors = list(_tensors(case.args)) + list(_tensors(case.kwargs))
    return any(t.dtype == torch.float32 for _, t in tensors)


def _run_one(ex: Exercise, obj, case: Case, i: int, variant, device, compare, ran: list) -> None:
    """One case in one dtype; raises _Failure, _StubRaised, or returns when it matches."""
    if ex.kind == "class" and ex.run is None:
        if not case.steps:
            raise ValueError(f"{ex.name}: a kind='class' exercise needs run= or Case(steps=[...])")
        _run_lifecycle_case(ex, obj, case, "", device)
        return
    runner = _Runner(ex, case, i, device, variant)
    if ex.kind == "module":  # the learner's module needs the reference's weights first
        runner.run_reference()
        got = runner.run_candidate(obj)
    else:  # the learner first: a stub raises at once, without running the reference
        got = runner.run_candidate(obj)
        runner.run_reference()
        runner.check_rng(runner.rng_after)
    ran.append(i)
    if variant is not None:
        rtol, atol = {**_LOW_TOL, **ex.low_tol}.get(variant)
        cmp = ex.compare or (lambda e, g: _compare_outputs(ex, e, g, rtol, atol))
    else:
        cmp = compare
    _LARGE_INPUTS[0] = any(t.is_floating_point() and t.numel() and float(t.abs().nan_to_num(0, 0, 0).max()) > 80
                           for _, t in list(_tensors(case.args)) + list(_tensors(case.kwargs)))
    try:
        msg = cmp(runner.expected, got)
    finally:
        _LARGE_INPUTS[0] = False
    if msg:
        known = _known_mistake(ex, runner, case, got, cmp)  # a wrong one's output in the expected role
        if known:
            msg += "\n  " + _mistake_line(known)
        raise _Failure(msg, "value")
    if ex.run is not None or ex.kind == "class":
        return
    if runner.differentiable:
        runner.run_candidate_grads(obj)


def _compare_outputs(ex: Exercise, expected, got, rtol=None, atol=None) -> str | None:
    rtol = ex.rtol if rtol is None else rtol
    atol = ex.atol if atol is None else atol
    if ex.output_names and isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return tr("output: expected a tuple ({n}), got {d}", "出力: タプル ({n}) が期待されますが、{d} でした",
                      n=", ".join(ex.output_names), d=describe(got))
        for name, e, g in zip(ex.output_names, expected, got):
            msg = compare_values(e, g, rtol, atol, tr("output {n}", "出力 {n}", n=name))
            if msg:
                return msg
        return None
    return compare_values(expected, got, rtol, atol, tr("output", "出力"))


def _kind_problem(ex: Exercise, obj) -> str | None:
    if ex.kind in ("module", "class") and not inspect.isclass(obj):
        if obj is None:
            return tr("got None instead of a class: the cell must define the class and pass it (check(name, MyClass))",
                      "クラスではなく None が渡されました: セルでクラスを定義して、それを渡してください (check(name, MyClass))")
        return tr("expected a class, got {d}; define it with `class ...:` and pass the class itself",
                  "クラスが期待されますが、{d} でした。`class ...:` で定義して、クラスそのものを渡してください", d=describe(obj))
    if ex.kind == "function" and (inspect.isclass(obj) or not callable(obj)):
        return tr("expected a function, got {d}", "関数が期待されますが、{d} でした", d=describe(obj))
    return None


def _report(ex: Exercise, head: str, tb: str | None) -> str:
    lines = [f"✗ {ex.name}: {head}"]
    if tb:
        lines += [tr("  your code (most recent call last):", "  あなたのコード (最後が最も新しい呼び出し):"), tb]
    hint = ex.hint_text()
    if hint:
        lines.append(tr("  hint: ", "  ヒント: ") + hint)
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the notebook API
def check(name: str, obj, *, quiet: bool = False):
    """Check the learner's `obj` against exercise `name`; see the module docstring.

    Returns `obj` when it matches the reference on every case, the reference when `obj` is not
    implemented yet (so the rest of the notebook runs), and raises CheckFailed otherwise.
    """
    __tracebackhide__ = True  # IPython hides this frame: the learner sees the report, not our code
    ex = get_exercise(name)
    result = run_exercise(ex, obj)
    where = f" on {result.device}" if ex.uses_device else ""
    if result.passed and result.is_reference:
        if not quiet:
            print(tr("… {n}: this is minigpt's own implementation (the reference itself), so of course it matches: "
                     "write your own to learn it. The notebook goes on with this one.",
                     "… {n}: これは minigpt 自身の実装 (参照実装そのもの) なので一致して当然です。"
                     "身につけるには自分で書いてみてください。ノートブックはこのまま続けます。", n=name))
        return obj
    if result.passed:
        if not quiet:
            cases = "1 case matches" if result.n_cases == 1 else f"{result.n_cases} cases match"
            if lang() == "ja":
                print(f"✓ {name}: {result.n_cases} ケースが参照実装と一致しました" + (f" ({result.device})" if where else ""))
            else:
                print(f"✓ {name}: {cases} the reference{where}")
        return obj
    if result.not_implemented:
        if not quiet:
            print(tr("… {n}: not implemented yet, so the notebook goes on with minigpt's reference "
                     "implementation. Write your code in the cell above and run it again.",
                     "… {n}: まだ実装されていないので、ノートブックは minigpt の参照実装で続けます。"
                     "上のセルにコードを書いて、もう一度実行してください。", n=name))
        return ex.get_fallback()
    raise CheckFailed(result.report) from None


def check_function(reference, candidate, cases: Iterable[Case], *, rtol: float = 1e-4, atol: float = 1e-5,
                   compare=None, device=None, name: str = "function", **options) -> Result:
    """Compare two functions on `cases` without registering an exercise (for quick checks and tests)."""
    cases = list(cases)
    ex = Exercise(name=name, reference=reference, cases=lambda: list(cases), kind="function", rtol=rtol,
                  atol=atol, compare=compare, **options)
    return run_exercise(ex, candidate, device)


def check_module(reference, candidate, cases: Iterable[Case], *, rtol: float = 1e-4, atol: float = 1e-5,
                 compare=None, device=None, name: str = "module", randomize: bool = True, **options) -> Result:
    """Compare two nn.Module classes on `cases` (Case.init builds them, Case.args runs them); the
    candidate gets the reference's weights, perturbed first unless randomize=False."""
    cases = list(cases)
    ex = Exercise(name=name, reference=reference, cases=lambda: list(cases), kind="module", rtol=rtol,
                  atol=atol, compare=compare, randomize=randomize, **options)
    return run_exercise(ex, candidate, device)
