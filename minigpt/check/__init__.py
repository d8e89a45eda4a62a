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
- returns the *reference* when `obj` still raises NotImplementedError, with a note, so the rest of
  the chapter runs (the learner can come back to the exercise later);
- raises `CheckFailed` (an AssertionError) with a report written for the learner otherwise:
  which case failed, its inputs, expected vs got shape and dtype, the largest difference and where,
  a hint, and the learner's own traceback trimmed to their code.

Each exercise is registered in `minigpt.check.chNN` (one module per chapter) with `exercise(...)`:
its reference (imported from the minigpt package, the single source of truth), a case generator,
how to compare, a hint, and at least three plausible *wrong* implementations. The test suite
(tests/test_checkers.py) proves for every exercise that the checker accepts the reference and
rejects each wrong implementation. docs/ENGINE.md explains how to write one.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import pkgutil
import re
import sysconfig
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = [
    "Case",
    "CheckFailed",
    "Exercise",
    "Result",
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
]


class CheckFailed(AssertionError):
    """Raised by `check` when the learner's code does not match the reference. The message is the report."""


@dataclass
class Case:
    """One input to try. For a function: `fn(*args, **kwargs)`. For a module (a class):
    `cls(*init)` builds it, then `instance(*args, **kwargs)` runs it. `name` is what the report shows."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    init: tuple = ()
    name: str | None = None


@dataclass
class Exercise:
    name: str  # "ch01.causal_self_attention": chapter, then the name the notebook defines
    reference: Any  # the function or class to match (from the minigpt package)
    cases: Callable[[], Iterable[Case]]  # seeded: the same cases every time, CPU tensors
    kind: str = "function"  # "function" | "module" (an nn.Module class) | "class" (any class, see `run`)
    wrong: list = field(default_factory=list)  # >= 3 plausible wrong implementations (tests use them)
    compare: Callable[[Any, Any], str | None] | None = None  # None: compare_values with rtol/atol
    rtol: float = 1e-4
    atol: float = 1e-5
    hint: str = ""  # one or two sentences shown under a failure
    fallback: Any = None  # what a stub gets instead of its code (default: the reference)
    run: Callable[[Any, Case], Any] | None = None  # custom driver: run(obj, case) -> output
    uses_device: bool = True  # move tensors and modules to check_device()
    output_names: tuple[str, ...] = ()  # names of the items of a tuple output, for reports
    randomize: bool = True  # modules: perturb the reference's parameters before copying them

    def __post_init__(self):
        if self.kind not in ("function", "module", "class"):
            raise ValueError(f"{self.name}: kind must be 'function', 'module' or 'class', got {self.kind!r}")

    @property
    def chapter(self) -> str:
        return self.name.split(".", 1)[0]

    def get_fallback(self):
        return self.reference if self.fallback is None else self.fallback


@dataclass
class Result:
    """What running one implementation against an exercise gave."""

    name: str
    passed: bool
    n_cases: int = 0  # cases run (all of them when passed)
    not_implemented: bool = False
    report: str = ""  # the learner-facing text when not passed
    device: str = "cpu"


# ----------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, reference, *, kind: str = "function", wrong: list | None = None, **options):
    """Decorator that registers an exercise; it decorates the case generator.

        @exercise("ch00.softmax", reference=reference_softmax, wrong=[no_max, wrong_axis, no_sum],
                  hint="subtract the row's maximum before exp")
        def _cases():
            g = torch.Generator().manual_seed(0)
            yield Case(args=(torch.randn(3, 5, generator=g),))
    """

    def register(cases: Callable[[], Iterable[Case]]):
        ex = Exercise(name=name, reference=reference, cases=cases, kind=kind, wrong=list(wrong or []), **options)
        _REGISTRY[name] = ex
        return cases

    return register


def get_exercise(name: str) -> Exercise:
    """The registered exercise `name` ("chNN.thing"); imports minigpt.check.chNN on first use."""
    if name not in _REGISTRY:
        chapter = name.split(".", 1)[0]
        if not re.fullmatch(r"ch\d\d", chapter):
            raise KeyError(f"exercise names look like 'ch01.causal_self_attention', got {name!r}")
        try:
            importlib.import_module(f"minigpt.check.{chapter}")
        except ModuleNotFoundError as e:
            if e.name == f"minigpt.check.{chapter}":
                raise KeyError(f"no checkers for chapter {chapter}: minigpt/check/{chapter}.py does not exist") from None
            raise
    if name not in _REGISTRY:
        known = sorted(k for k in _REGISTRY if k.startswith(name.split(".", 1)[0] + "."))
        raise KeyError(f"no exercise named {name!r}; this chapter has {known}")
    return _REGISTRY[name]


def all_exercises() -> list[Exercise]:
    """Every exercise of every chapter (imports all minigpt.check.chNN modules)."""
    import minigpt.check as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if re.fullmatch(r"ch\d\d", info.name):
            importlib.import_module(f"minigpt.check.{info.name}")
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


# ----------------------------------------------------------------------------- device
def check_device():
    """Where checkers run: the CUDA GPU when there is one, else the CPU.

    MINIGPT_CHECK_DEVICE overrides; under MINIGPT_CI=1 (notebooks run as tests, whose stored outputs
    come from the CPU) the default is the CPU. Apple's MPS is left out on purpose: it has no float64
    and some ops differ slightly."""
    import os

    import torch

    if os.environ.get("MINIGPT_CHECK_DEVICE"):
        return torch.device(os.environ["MINIGPT_CHECK_DEVICE"])
    if os.environ.get("MINIGPT_CI", "") not in ("", "0"):
        return torch.device("cpu")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@contextlib.contextmanager
def _exact_float32(device):
    """Full-precision float32 matmuls while checking: TF32 on a GPU would differ by ~1e-3."""
    import torch

    if device.type != "cuda":
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@contextlib.contextmanager
def _own_rng(seed: int, device):
    """Seeded random numbers for one case that leave the notebook's global RNG untouched."""
    import torch

    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _to(obj, device):
    """Move tensors (also inside tuples, lists and dicts) to `device`."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _to_cpu(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_cpu(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------- describing things
def _short(value, limit: int = 70) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 4] + " ..."


def describe(value) -> str:
    """A short description of a value for a report: a tensor's shape and dtype, a string's start."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)}, {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"{type(value).__name__} of {len(value)} items"
    if isinstance(value, dict) and len(value) > 6:
        return f"dict of {len(value)} items"
    if isinstance(value, type):
        return value.__name__
    return _short(value)


def _case_label(case: Case, index: int, n: int) -> str:
    label = f"case {index + 1} of {n}"
    if case.name:
        return f"{label} ({case.name})"
    parts = [describe(a) for a in case.args] + [f"{k}={describe(v)}" for k, v in case.kwargs.items()]
    return f"{label}: inputs {', '.join(parts)}" if parts else label


# ----------------------------------------------------------------------------- comparing
def compare_values(expected, got, rtol: float = 1e-4, atol: float = 1e-5, where: str = "output") -> str | None:
    """None when `got` matches `expected`, else a message saying where and how they differ.

    Tensors must have the same shape and dtype; floating tensors are compared with
    |got - expected| <= atol + rtol * |expected| (NaN only where the reference has NaN), others
    exactly. Tuples, lists and dicts are compared item by item; floats with the same tolerance.
    """
    import torch

    if got is expected and not isinstance(expected, torch.Tensor):
        return None  # the very same object (e.g. a shared table of 50,000 merges)
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{where}: expected a tensor of shape {tuple(expected.shape)}, got {describe(got)}"
        if got.shape != expected.shape:
            return (f"{where}: wrong shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}")
        if got.dtype != expected.dtype:
            return (f"{where}: wrong dtype: expected {str(expected.dtype).replace('torch.', '')}, "
                    f"got {str(got.dtype).replace('torch.', '')}")
        return _compare_tensors(expected, got, rtol, atol, where)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"{where}: expected a {type(expected).__name__} of {len(expected)} items, got {describe(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            msg = compare_values(e, g, rtol, atol, f"{where}[{i}]")
            if msg:
                return msg
        if len(got) != len(expected):
            return f"{where}: expected {len(expected)} items, got {len(got)}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{where}: expected a dict, got {describe(got)}"
        missing, extra = [k for k in expected if k not in got], [k for k in got if k not in expected]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing keys {_short(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
            if extra:
                parts.append(f"unexpected keys {_short(extra[:5])}" + (" ..." if len(extra) > 5 else ""))
            return f"{where}: {'; '.join(parts)} ({len(expected)} keys expected, {len(got)} given)"
        for k in expected:
            msg = compare_values(expected[k], got[k], rtol, atol, f"{where}[{k!r}]")
            if msg:
                return msg
        return None
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if math.isnan(expected) and math.isnan(got):
            return None
        if abs(got - expected) <= atol + rtol * abs(expected):
            return None
        return f"{where}: expected {expected:.6g}, got {got:.6g}"
    if expected is None:
        return None if got is None else f"{where}: expected None, got {describe(got)}"
    if type(got) is not type(expected) and not (isinstance(expected, int) and isinstance(got, int)):
        return f"{where}: expected a {type(expected).__name__} ({_short(expected)}), got a {type(got).__name__} ({_short(got)})"
    if got != expected:
        return f"{where}: expected {_short(expected)}, got {_short(got)}"
    return None


def _compare_tensors(expected, got, rtol, atol, where) -> str | None:
    import torch

    e, g = expected.detach().cpu(), got.detach().cpu()
    if not e.is_floating_point() and not e.is_complex():
        bad = e != g
        if not bad.any():
            return None
        idx = tuple(int(i) for i in bad.nonzero()[0])
        return (f"{where}: {int(bad.sum())} of {e.numel()} values differ; first at index {idx}: "
                f"expected {e[idx].item()}, got {g[idx].item()}")
    if e.dim() == 0:  # a scalar such as a loss
        ev, gv = e.item(), g.item()
        if (math.isnan(ev) and math.isnan(gv)) or abs(gv - ev) <= atol + rtol * abs(ev):
            return None
        return f"{where}: expected {ev:.6g}, got {gv:.6g} (tolerance atol={atol:g}, rtol={rtol:g})"
    e64, g64 = e.double(), g.double()
    nan_e, nan_g = torch.isnan(e64), torch.isnan(g64)
    if (nan_g & ~nan_e).any():
        idx = tuple(int(i) for i in (nan_g & ~nan_e).nonzero()[0])
        n = int((nan_g & ~nan_e).sum())
        return (f"{where}: {n} of {e.numel()} values are NaN where the reference has numbers; first at index {idx} "
                f"(expected {e64[idx].item():.6g}). An overflow (exp of a large number) or 0/0?")
    if (nan_e & ~nan_g).any():
        idx = tuple(int(i) for i in (nan_e & ~nan_g).nonzero()[0])
        return f"{where}: the reference has NaN at index {idx}, you have {g64[idx].item():.6g}"
    both = ~nan_e
    inf_mismatch = both & (torch.isinf(e64) | torch.isinf(g64)) & (e64 != g64)
    if inf_mismatch.any():
        idx = tuple(int(i) for i in inf_mismatch.nonzero()[0])
        return f"{where}: at index {idx} expected {e64[idx].item():.6g}, got {g64[idx].item():.6g}"
    finite = both & torch.isfinite(e64)
    diff = torch.where(finite, (g64 - e64).abs(), torch.zeros_like(e64))
    allowed = atol + rtol * e64.abs()
    bad = finite & (diff > allowed)
    if not bad.any():
        return None
    flat = int(torch.argmax(torch.where(bad, diff, torch.zeros_like(diff))))
    idx = tuple(int(i) for i in _unravel(flat, e.shape))
    return (f"{where}: {int(bad.sum())} of {e.numel()} values differ; max |expected - got| = {diff.max().item():.4g} "
            f"at index {idx}: expected {e64[idx].item():.6g}, got {g64[idx].item():.6g} "
            f"(tolerance atol={atol:g}, rtol={rtol:g})")


def _unravel(flat: int, shape) -> list[int]:
    out = []
    for size in reversed(tuple(shape)):
        out.append(flat % size)
        flat //= size
    return list(reversed(out))


# ----------------------------------------------------------------------------- tracebacks
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)  # minigpt/
_STDLIB_DIR = sysconfig.get_paths()["stdlib"]
_CELL_FILE = re.compile(r".*[/\\]ipykernel_\d+[/\\]\d+\.py$|^<ipython-input-.*>$")


def _learner_traceback(exc: BaseException, limit: int = 6) -> str:
    """The frames of the learner's own code (notebook cells and their files), most recent last."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if not _is_library_frame(f.filename)]
    shown = mine[-limit:] if mine else frames[-2:]
    lines = []
    for f in shown:
        place = "your notebook cell" if _CELL_FILE.match(f.filename or "") else f.filename
        lines.append(f"    {place}, line {f.lineno}, in {f.name}")
        if f.line:
            lines.append(f"      {f.line.strip()}")
    lines.append(f"  {type(exc).__name__}: {_first_line(exc)}")
    return "\n".join(lines)


def _is_library_frame(filename: str) -> bool:
    """minigpt itself, installed packages (torch...) and the standard library: not the learner's code."""
    path = str(Path(filename).resolve()) if filename and not filename.startswith("<") else (filename or "")
    return (path.startswith(_PACKAGE_DIR) or path.startswith(_STDLIB_DIR)
            or "site-packages" in path or "dist-packages" in path)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= 300 else first[:297] + "..."


# ----------------------------------------------------------------------------- running
class _NotImplemented(Exception):
    pass


def _run_case(ex: Exercise, obj, case: Case, seed: int, device, is_reference: bool, ref_state=None):
    """Run `obj` on one case; returns (output, state_dict of a reference module or None)."""
    import torch

    args, kwargs = _to(case.args, device), _to(case.kwargs, device)
    if ex.run is not None:
        with _own_rng(seed, device):
            return ex.run(obj, case), None
    if ex.kind == "function":
        with _own_rng(seed, device):
            return obj(*args, **kwargs), None
    # a module: build it, give the candidate the reference's (perturbed) weights
    with _own_rng(seed, device):
        module = obj(*case.init)
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"{describe(obj)}(...) built a {type(module).__name__}, not a torch.nn.Module")
        module = module.to(device)
        if is_reference:
            if ex.randomize:
                with torch.no_grad():
                    for p in module.parameters():
                        p.add_(torch.randn_like(p) * 0.1)
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            state = None
            _load_reference_weights(module, ref_state)
        module.eval()
        with torch.no_grad():
            out = module(*args, **kwargs)
    return out, state


class _WeightMismatch(Exception):
    pass


def _load_reference_weights(module, ref_state: dict) -> None:
    mine = module.state_dict()
    missing = [k for k in ref_state if k not in mine]
    extra = [k for k in mine if k not in ref_state]
    if missing or extra:
        lines = ["your module's parameters are not named like the reference's, so the checker cannot give it "
                 "the same weights. Keep the __init__ the notebook gives you."]
        if missing:
            lines.append(f"  missing: {', '.join(missing[:6])}" + (" ..." if len(missing) > 6 else ""))
        if extra:
            lines.append(f"  unexpected: {', '.join(extra[:6])}" + (" ..." if len(extra) > 6 else ""))
        raise _WeightMismatch("\n".join(lines))
    for k, v in ref_state.items():
        if tuple(mine[k].shape) != tuple(v.shape):
            raise _WeightMismatch(f"parameter {k} has shape {tuple(mine[k].shape)}, the reference's has "
                                  f"{tuple(v.shape)}. Keep the __init__ the notebook gives you.")
    module.load_state_dict(ref_state)


def run_exercise(ex: Exercise | str, obj, device=None) -> Result:
    """Run `obj` against exercise `ex` on every case. Never raises for the learner's mistakes:
    the Result says whether it passed, was not implemented yet, or failed (with a report)."""
    __tracebackhide__ = True
    if isinstance(ex, str):
        ex = get_exercise(ex)
    if device is None:
        device = check_device() if ex.uses_device else _cpu()
    dev_name = str(device.type) if hasattr(device, "type") else str(device)
    problem = _kind_problem(ex, obj)
    if problem:
        return Result(ex.name, False, 0, report=_report(ex, f"{problem}", None), device=dev_name)
    cases = list(ex.cases())
    compare = ex.compare or (lambda e, g: _compare_outputs(ex, e, g))
    with _exact_float32(device):
        for i, case in enumerate(cases):
            label = _case_label(case, i, len(cases))
            expected, ref_state = _run_case(ex, ex.reference, case, 1000 + i, device, is_reference=True)
            try:
                got, _ = _run_case(ex, obj, case, 1000 + i, device, is_reference=False, ref_state=ref_state)
            except NotImplementedError:
                return Result(ex.name, False, i, not_implemented=True, device=dev_name)
            except _WeightMismatch as e:
                return Result(ex.name, False, i, report=_report(ex, f"{label}: {e}", None), device=dev_name)
            except Exception as e:  # the learner's code raised: show where, in their code
                head = f"{label} raised {type(e).__name__}: {_first_line(e)}"
                return Result(ex.name, False, i, report=_report(ex, head, _learner_traceback(e)), device=dev_name)
            msg = compare(_to_cpu(expected), _to_cpu(got))
            if msg:
                return Result(ex.name, False, i, report=_report(ex, f"{label}\n  {msg}", None), device=dev_name)
    return Result(ex.name, True, len(cases), device=dev_name)


def _compare_outputs(ex: Exercise, expected, got) -> str | None:
    if ex.output_names and isinstance(expected, tuple):
        if not isinstance(got, tuple) or len(got) != len(expected):
            return (f"output: expected a tuple ({', '.join(ex.output_names)}), got {describe(got)}")
        for name, e, g in zip(ex.output_names, expected, got):
            msg = compare_values(e, g, ex.rtol, ex.atol, f"output {name}")
            if msg:
                return msg
        return None
    return compare_values(expected, got, ex.rtol, ex.atol)


def _cpu():
    import torch

    return torch.device("cpu")


def _kind_problem(ex: Exercise, obj) -> str | None:
    if ex.kind in ("module", "class") and not inspect.isclass(obj):
        return f"expected a class, got {describe(obj)}; define it with `class ...:` and pass the class itself"
    if ex.kind == "function" and (inspect.isclass(obj) or not callable(obj)):
        return f"expected a function, got {describe(obj)}"
    return None


def _report(ex: Exercise, head: str, tb: str | None) -> str:
    lines = [f"✗ {ex.name}: {head}"]
    if tb:
        lines += ["  your code (most recent call last):", tb]
    if ex.hint:
        lines.append(f"  hint: {ex.hint}")
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
    if result.passed:
        if not quiet:
            cases = "1 case matches" if result.n_cases == 1 else f"{result.n_cases} cases match"
            print(f"✓ {name}: {cases} the reference{where}")
        return obj
    if result.not_implemented:
        if not quiet:
            print(f"… {name}: not implemented yet, so the notebook goes on with minigpt's reference "
                  f"implementation. Write your code in the cell above and run it again.")
        return ex.get_fallback()
    raise CheckFailed(result.report)


def check_function(reference, candidate, cases: Iterable[Case], *, rtol: float = 1e-4, atol: float = 1e-5,
                   compare=None, device=None, name: str = "function") -> Result:
    """Compare two functions on `cases` without registering an exercise (for quick checks and tests)."""
    ex = Exercise(name=name, reference=reference, cases=lambda: list(cases), kind="function", rtol=rtol,
                  atol=atol, compare=compare)
    return run_exercise(ex, candidate, device)


def check_module(reference, candidate, cases: Iterable[Case], *, rtol: float = 1e-4, atol: float = 1e-5,
                 compare=None, device=None, name: str = "module", randomize: bool = True) -> Result:
    """Compare two nn.Module classes on `cases` (Case.init builds them, Case.args runs them); the
    candidate gets the reference's weights, perturbed first unless randomize=False."""
    ex = Exercise(name=name, reference=reference, cases=lambda: list(cases), kind="module", rtol=rtol,
                  atol=atol, compare=compare, randomize=randomize)
    return run_exercise(ex, candidate, device)
