"""The exercise checkers (minigpt.check): every checker accepts its reference and each registered
correct alternative, rejects each of its plausible wrong implementations for its mistake; the engine
catches changed inputs, cut gradients, changed global state, outputs on another device, partial
stubs and the reference handed in, for every exercise; stubs get the reference back; reports are useful."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn

import minigpt.check as engine
from minigpt.check import (Case, CheckFailed, Step, all_exercises, check, check_function, check_module,
                           compare_values, covers_table, get_exercise, mistake_text, run_exercise)

EXERCISES = all_exercises()
WRONG = [(ex, wrong) for ex in EXERCISES for wrong in ex.wrong]
CORRECT = [(ex, c) for ex in EXERCISES for c in ex.correct]
CALLABLE_EXERCISES = [ex for ex in EXERCISES if ex.kind in ("function", "module")]
TENSOR_EXERCISES = [ex for ex in EXERCISES if ex.kind in ("function", "module") and ex.run is None
                    and any(isinstance(t, torch.Tensor) for c in list(ex.cases())[:1]
                            for _, t in engine._tensors((c.args, c.kwargs)))]


def _stub_of(ex):
    """What a learner's untouched exercise cell hands to check(): the given parts, a raising body."""
    if ex.kind == "function":
        def stub(*args, **kwargs):
            raise NotImplementedError
        return stub
    if ex.kind == "module":  # the notebook gives __init__; forward is the stub
        return type("Stub", (ex.reference,), {"forward": lambda self, *a, **k: _raise()})
    return type("Stub", (ex.reference,), {name: (lambda self, *a, **k: _raise())
                                          for name in vars(ex.reference) if not name.startswith("_")})


def _raise():
    raise NotImplementedError


def test_every_chapter_module_registers_exercises():
    chapters = {ex.chapter for ex in EXERCISES}
    assert {"ch00", "ch01", "ch02", "ch03"} <= chapters


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_checker_accepts_the_reference(ex):
    result = run_exercise(ex, ex.reference)
    assert result.passed, result.report
    assert result.n_cases >= 1
    assert result.is_reference  # check() says so kindly instead of a tick


# Issue 14, item 10. While helper D adds implementations to ch04-ch11 this may fail for those chapters.
@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_checker_knows_at_least_six_wrong_and_two_correct_implementations(ex):
    assert len(ex.wrong) >= 6, f"{ex.name} has {len(ex.wrong)} wrong implementations"
    assert len(ex.correct) >= 2, f"{ex.name} has {len(ex.correct)} correct implementations"
    names = [w.__name__ for w in ex.wrong + ex.correct]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_every_wrong_implementation_states_its_mistake_in_its_docstring(ex):
    for wrong in ex.wrong:
        assert mistake_text(wrong) != wrong.__name__.replace("_", " "), f"{wrong.__name__} has no docstring"


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_every_wrong_implementation_states_its_mistake_in_both_languages(ex, monkeypatch):
    """The report names a recognised mistake in the learner's language: English without Japanese in it (a
    `ja:` text that wraps over two lines must not leak into the English one), and Japanese."""
    import re

    japanese = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
    for wrong in ex.wrong:
        monkeypatch.setenv("MINIGPT_LANG", "en")
        en = mistake_text(wrong)
        monkeypatch.setenv("MINIGPT_LANG", "ja")
        ja = mistake_text(wrong)
        assert not japanese.search(en), f"{wrong.__name__}: Japanese in the English text: {en}"
        assert japanese.search(ja), f"{wrong.__name__}: add a `ja: ...` line to its docstring"


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_every_exercise_has_a_japanese_hint(ex):
    assert ex.hint and ex.hint_ja and any(ord(c) > 0x3000 for c in ex.hint_ja)


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_every_exercise_states_what_its_cases_cover(ex):
    assert ex.covers.strip(), f"{ex.name}: add covers='...' to its @exercise"


@pytest.mark.parametrize("ex,wrong", WRONG, ids=[f"{ex.name}-{w.__name__}" for ex, w in WRONG])
def test_checker_rejects_a_plausible_wrong_implementation(ex, wrong):
    result = run_exercise(ex, wrong)
    assert not result.passed and not result.not_implemented
    assert result.report.startswith(f"✗ {ex.name}: case "), result.report
    # rejected for the mistake it stands for, not because the wrong version itself is broken
    first_line = result.report.splitlines()[0]
    for broken in ("RecursionError", "NameError", "UnboundLocalError", "ImportError", "AttributeError"):
        assert f" raised {broken}" not in first_line, f"{wrong.__name__} is broken, not wrong: {first_line}"
    assert "Traceback (most recent call last)" not in result.report
    assert "minigpt/check/__init__.py" not in result.report  # no frames of the engine
    if result.problem == "value" and ex.compare is None:  # item 6: a known mistake's output is named as such
        assert "known mistake" in result.report, result.report


@pytest.mark.parametrize("ex,correct", CORRECT, ids=[f"{ex.name}-{c.__name__}" for ex, c in CORRECT])
def test_checker_accepts_an_alternative_correct_implementation(ex, correct):
    result = run_exercise(ex, correct)
    assert result.passed, result.report
    assert not result.is_reference, f"{correct.__name__} is taken for the reference itself"


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_a_stub_gets_the_reference_back_with_a_note(ex, capsys):
    assert check(ex.name, _stub_of(ex)) is ex.get_fallback()
    assert "not implemented yet" in capsys.readouterr().out


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_cases_are_the_same_every_time(ex):
    first, second = list(ex.cases()), list(ex.cases())
    assert [c.name for c in first] == [c.name for c in second]
    for a, b in zip(first, second):
        assert compare_values(a.args, b.args, rtol=0, atol=0) is None


def my_softmax(x):
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def test_check_returns_the_learners_object_when_it_passes(capsys):
    n = len(list(get_exercise("ch00.softmax").cases()))
    assert check("ch00.softmax", my_softmax) is my_softmax
    assert capsys.readouterr().out.startswith(f"✓ ch00.softmax: {n} cases match the reference")


def test_check_raises_a_report_with_case_difference_and_hint():
    def softmax_over_rows(x):
        return torch.softmax(x, dim=0)

    with pytest.raises(CheckFailed) as info:
        check("ch00.softmax", softmax_over_rows)
    report = str(info.value)
    assert isinstance(info.value, AssertionError)
    n = len(list(get_exercise("ch00.softmax").cases()))
    assert f"case 2 of {n} (3 rows of 7 logits)" in report
    assert "max |expected - got|" in report and "at index" in report
    assert "hint:" in report


def helper_that_fails(x):
    return x[x.shape[0] + 5]


def test_report_shows_the_learners_traceback_trimmed_to_their_code():
    def softmax_with_a_bug(x):
        return helper_that_fails(x)

    result = run_exercise("ch00.softmax", softmax_with_a_bug)
    assert "raised IndexError" in result.report
    assert "your code (most recent call last):" in result.report
    assert "in softmax_with_a_bug" in result.report and "in helper_that_fails" in result.report
    assert "return x[x.shape[0] + 5]" in result.report
    assert "minigpt/check" not in result.report  # the checker's own frames are hidden


def test_wrong_shape_and_dtype_are_named():
    assert "wrong shape: expected (2, 3), got (3, 2)" in compare_values(torch.zeros(2, 3), torch.zeros(3, 2))
    assert "wrong dtype: expected float64, got float32" in compare_values(
        torch.zeros(2, dtype=torch.float64), torch.zeros(2))
    assert "NaN" in compare_values(torch.ones(3), torch.tensor([1.0, float("nan"), 1.0]))
    assert compare_values({"a": 1, "b": [1.0, 2.0]}, {"a": 1, "b": [1.0, 2.0 + 1e-7]}) is None
    assert "missing keys" in compare_values({"a": 1, "b": 2}, {"a": 1})


def test_checks_leave_the_notebooks_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    check("ch01.Block", get_exercise("ch01.Block").reference, quiet=True)
    assert torch.equal(before, torch.get_rng_state())


def test_a_module_with_other_parameter_names_is_told_to_keep_the_given_init():
    class Renamed(nn.Module):
        def __init__(self, dim, eps=1e-5):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(dim))
            self.shift = nn.Parameter(torch.zeros(dim))

        def forward(self, x):
            return x

    result = run_exercise("ch01.LayerNorm", Renamed)
    assert "not named like the reference's" in result.report
    assert "missing: weight, bias" in result.report


def test_a_function_where_a_class_is_expected_is_reported():
    result = run_exercise("ch01.LayerNorm", lambda x: x)
    assert not result.passed and "expected a class" in result.report


def test_unknown_exercise_names_raise_a_clear_error():
    with pytest.raises(KeyError, match="this chapter has"):
        get_exercise("ch00.no_such_exercise")
    with pytest.raises(KeyError, match="no checkers for chapter ch99"):
        get_exercise("ch99.anything")


def test_ad_hoc_helpers_compare_functions_and_modules():
    cases = [Case(args=(torch.randn(4, 6),))]
    assert check_function(my_softmax, lambda x: torch.softmax(x, -1), cases).passed
    assert not check_function(my_softmax, lambda x: torch.softmax(x, 0), cases).passed
    mcases = [Case(init=(6,), args=(torch.randn(2, 6),))]
    assert check_module(nn.LayerNorm, nn.LayerNorm, mcases).passed
    assert not check_module(nn.LayerNorm, nn.Identity, mcases).passed  # no parameters to receive


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tensor_checkers_run_on_the_gpu_when_there_is_one():
    cuda = torch.device("cuda")
    for name in ["ch00.softmax", "ch01.causal_self_attention", "ch01.LayerNorm", "ch01.GPT"]:
        ex = get_exercise(name)
        result = run_exercise(ex, ex.reference, device=cuda)
        assert result.passed and result.device == "cuda", result.report
        assert all(not run_exercise(ex, w, device=cuda).passed for w in ex.wrong)
        for c in ex.correct:
            assert run_exercise(ex, c, device=cuda).passed, c.__name__

    def attention_mask_on_the_cpu(q, k, v):  # passes on a laptop, breaks on a GPU
        T = q.shape[-2]
        att = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
        att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        return torch.softmax(att, dim=-1) @ v

    result = run_exercise("ch01.causal_self_attention", attention_mask_on_the_cpu, device=cuda)
    assert not result.passed and "device=x.device" in result.report, result.report


# ----------------------------------------------------------------------------- the engine, for every exercise
def _derived(ex, after):
    """An implementation that computes the reference's output, then does `after(args, out)` (a mistake)."""
    if ex.kind == "function":
        ref = ex.reference

        def derived(*args, **kwargs):
            out = ref(*args, **kwargs)
            return after(args, out)

        return derived
    ref_forward = ex.reference.forward

    def forward(self, *args, **kwargs):
        return after(args, ref_forward(self, *args, **kwargs))

    return type("Derived", (ex.reference,), {"forward": forward})


def _differentiable(ex) -> bool:
    runner = engine._Runner(ex, list(ex.cases())[0], 0, torch.device("cpu"))
    runner.run_reference()
    return runner.differentiable


def _detach_all(out):
    if isinstance(out, torch.Tensor):
        return out.detach()
    if isinstance(out, (tuple, list)):
        return type(out)(_detach_all(o) for o in out)
    if isinstance(out, dict):
        return {k: _detach_all(v) for k, v in out.items()}
    return out


def _mutable_arg(args):
    for a in args:
        if isinstance(a, (torch.Tensor, dict, list)):
            return a
    return None


@pytest.mark.parametrize("ex", CALLABLE_EXERCISES, ids=[ex.name for ex in CALLABLE_EXERCISES])
def test_a_change_to_an_input_is_caught_for_every_exercise(ex):
    if ex.run is not None or not any(_mutable_arg(c.args) is not None for c in ex.cases()):
        pytest.skip(f"{ex.name}: no tensor, dict or list argument to change (or its own run= driver)")

    def mutate(args, out):
        a = _mutable_arg(args)
        if isinstance(a, torch.Tensor):
            a.add_(1)
        elif isinstance(a, dict):
            a["a key the learner added"] = 1
        elif isinstance(a, list):
            a.append(None)
        return out

    result = run_exercise(ex, _derived(ex, mutate))
    assert not result.passed and result.problem == "mutation", result.report
    assert "changed its input `" in result.report


@pytest.mark.parametrize("ex", TENSOR_EXERCISES, ids=[ex.name for ex in TENSOR_EXERCISES])
def test_a_cut_gradient_is_caught_for_every_differentiable_exercise(ex):
    if ex.grad is False or not _differentiable(ex):
        pytest.skip(f"{ex.name}: its output does not depend differentiably on its inputs")
    result = run_exercise(ex, _derived(ex, lambda args, out: _detach_all(out)))
    assert not result.passed and result.problem == "grad", result.report
    assert "gradient" in result.report


@pytest.mark.parametrize("ex", CALLABLE_EXERCISES, ids=[ex.name for ex in CALLABLE_EXERCISES])
def test_a_changed_default_dtype_is_caught_and_restored_for_every_exercise(ex):
    def change(args, out):
        torch.set_default_dtype(torch.float64)
        return out

    result = run_exercise(ex, _derived(ex, change))
    assert torch.get_default_dtype() == torch.float32
    assert not result.passed and result.problem == "global", result.report
    assert "default dtype" in result.report


@pytest.mark.parametrize("ex", TENSOR_EXERCISES, ids=[ex.name for ex in TENSOR_EXERCISES])
def test_an_output_on_another_device_is_named_with_the_fix_for_every_exercise(ex):
    if not ex.uses_device:
        pytest.skip(f"{ex.name} runs on the CPU only (uses_device=False)")

    def move(args, out):  # what a GPU run shows when a tensor is made without device=
        return out.to("meta") if isinstance(out, torch.Tensor) else \
            type(out)(o.to("meta") if isinstance(o, torch.Tensor) else o for o in out)

    result = run_exercise(ex, _derived(ex, move))
    assert not result.passed and result.problem == "device", result.report
    assert "device=x.device" in result.report


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_the_reference_or_a_thin_wrapper_of_it_is_recognised_for_every_exercise(ex):
    ref = ex.reference
    if ex.kind == "function":
        wrapped = functools.wraps(ref)(lambda *a, **k: ref(*a, **k))
        calling = lambda *a, **k: ref(*a, **k)  # noqa: E731
        assert engine._is_reference(ex, wrapped) and engine._is_reference(ex, calling)
        assert engine._is_reference(ex, functools.partial(ref))
    else:
        assert engine._is_reference(ex, type("Mine", (ref,), {}))
    assert engine._is_reference(ex, ref)
    for impl in ex.wrong + ex.correct:
        assert not engine._is_reference(ex, impl) or impl in ex.wrong, impl.__name__


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_a_partial_stub_fails_instead_of_falling_back_for_every_exercise(ex):
    calls = []
    if ex.kind == "function":
        ref = ex.reference

        def impl(*args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise NotImplementedError
            return ref(*args, **kwargs)
    elif ex.kind == "module":
        ref_forward = ex.reference.forward

        def forward(self, *args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise NotImplementedError
            return ref_forward(self, *args, **kwargs)

        impl = type("Partial", (ex.reference,), {"forward": forward})
    elif ex.run is not None:
        pytest.skip(f"{ex.name}: a class driven by its own run=, not a lifecycle")
    else:
        def init(self, *args, **kwargs):
            calls.append(1)
            if len(calls) > 1:
                raise NotImplementedError
            ex.reference.__init__(self, *args, **kwargs)

        impl = type("Partial", (ex.reference,), {"__init__": init})
    if len(list(ex.cases())) < 2 and not (ex.kind != "class" and ex.run is None and _differentiable(ex)):
        pytest.skip(f"{ex.name}: one case, one call: nothing can be partly written")
    result = run_exercise(ex, impl)
    assert not result.passed and not result.not_implemented, result.report
    assert result.problem == "partial-stub" and "NotImplementedError" in result.report


def test_a_stub_of_a_stateful_class_gets_the_fallback_even_with_a_given_method(capsys):
    class Decoder:
        def __init__(self, tokenizer):
            self.tokenizer = tokenizer

        def feed(self, token_id):
            raise NotImplementedError

        def flush(self):
            raise NotImplementedError

    assert check("ch02.StreamingDecoder", Decoder) is get_exercise("ch02.StreamingDecoder").get_fallback()


# ----------------------------------------------------------------------------- the engine, on synthetic exercises
def reference_mm(x, w1):
    """relu(x @ w1)."""
    return (x @ w1).relu()


MM_CASES = [Case(args=(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)),
                       torch.randn(4, 5, generator=torch.Generator().manual_seed(1))), name="x (3, 4), w1 (4, 5)"),
            Case(args=(torch.randn(2, 4, generator=torch.Generator().manual_seed(2)),
                       torch.randn(4, 2, generator=torch.Generator().manual_seed(3))), name="x (2, 4), w1 (4, 2)")]


def test_an_input_changed_in_place_is_named():
    def mm_scaling_w1(x, w1):
        w1 *= 1.0  # the values stay, but it writes into the caller's tensor... and then really changes it
        w1[0, 0] = w1[0, 0] + 1
        return (x @ (w1 - torch.eye(4, w1.shape[1])[:, :w1.shape[1]] * 0)).relu()

    result = check_function(reference_mm, mm_scaling_w1, MM_CASES)
    assert not result.passed and "your function changed its input `w1`" in result.report


def test_the_reference_gets_its_own_copy_of_the_inputs():
    seen = []

    def mm_mutating_x(x, w1):
        out = (x @ w1).relu()
        x.zero_()
        seen.append(x)
        return out

    result = check_function(reference_mm, mm_mutating_x, MM_CASES)
    assert "changed its input `x`" in result.report
    assert MM_CASES[0].args[0].abs().sum() > 0  # the case itself is untouched


def test_a_detached_weight_gets_no_gradient_message():
    def mm_detached_w1(x, w1):
        return (x @ w1.detach()).relu()

    result = check_function(reference_mm, mm_detached_w1, MM_CASES)
    assert not result.passed and "no gradient flows to `w1`" in result.report


def test_a_wrong_gradient_with_right_values_is_named():
    class StraightThrough(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.relu()

        @staticmethod
        def backward(ctx, g):
            return g  # ignores the relu in backward

    def mm_straight_through(x, w1):
        return StraightThrough.apply(x @ w1)

    result = check_function(reference_mm, mm_straight_through, MM_CASES)
    assert not result.passed and "gradient of `x` differs" in result.report


def test_no_grad_decorator_is_caught():
    @torch.no_grad()
    def mm_no_grad(x, w1):
        return (x @ w1).relu()

    result = check_function(reference_mm, mm_no_grad, MM_CASES)
    assert not result.passed and "carries no gradient" in result.report


@pytest.mark.parametrize("change,name", [
    (lambda: torch.set_default_dtype(torch.float64), "default dtype"),
    (lambda: torch.set_grad_enabled(False), "grad mode"),
    (lambda: torch.manual_seed(0), "random generator"),
    (lambda: torch.use_deterministic_algorithms(True), "deterministic algorithms"),
    (lambda: torch.set_num_threads(max(1, torch.get_num_threads() - 1) if torch.get_num_threads() > 1 else 2),
     "thread count"),
])
def test_a_change_of_global_state_is_named_and_undone(change, name):
    before = engine._global_state()
    rng = torch.get_rng_state()

    def mm_changing_state(x, w1):
        change()
        return (x @ w1).relu()

    result = check_function(reference_mm, mm_changing_state, MM_CASES)
    assert not result.passed and result.problem == "global" and name in result.report, result.report
    assert engine._global_state() == before and torch.equal(rng, torch.get_rng_state())


def test_a_forward_that_changes_its_parameters_is_caught():
    class ScalesItsWeight(nn.LayerNorm):
        def forward(self, x):
            self.weight.data.mul_(1.0001)
            return super().forward(x)

    result = check_module(nn.LayerNorm, ScalesItsWeight, [Case(init=(6,), args=(torch.randn(2, 6),))])
    assert not result.passed and "changed the module's parameter `weight`" in result.report


def test_a_tensor_made_on_another_device_is_reported_with_the_fix():
    def mm_device_error(x, w1):
        raise RuntimeError("Expected all tensors to be on the same device, but found at least two devices, "
                           "cuda:0 and cpu!")

    result = check_function(reference_mm, mm_device_error, MM_CASES)
    assert "device=x.device" in result.report


def test_a_partial_stub_is_reported():
    def mm_partial(x, w1):
        if x.shape[0] == 2:
            raise NotImplementedError
        return (x @ w1).relu()

    result = check_function(reference_mm, mm_partial, MM_CASES)
    assert not result.passed and not result.not_implemented and result.problem == "partial-stub"
    assert "case 2 of 2" in result.report and "case 1 of 2" in result.report


def test_the_reference_itself_gets_a_kind_note_and_is_returned(capsys):
    ref = get_exercise("ch00.softmax").reference
    assert check("ch00.softmax", ref) is ref
    out = capsys.readouterr().out
    assert "minigpt's own implementation" in out and "write your own" in out and "✓" not in out
    assert check("ch00.softmax", lambda x: torch.softmax(x, dim=-1), quiet=True) is not None


class Counter:
    """A stateful toy: add(n) returns the running total; reset(); a field `total`."""

    def __init__(self, start=0):
        self.total = start

    def add(self, n, log=None):
        self.total += n
        if log is not None:
            log.append(n)
        return self.total

    def reset(self):
        self.total = 0


COUNTER_CASES = [Case(init=(5,), steps=[Step.call("add", 2), Step.call("reset"), Step.call("add", 3, name="after reset"),
                                        Step.set("total", 10), Step.call("add", 1), Step.get("total"),
                                        Step.call("add", 1, [], name="with a log")])]


def _counter_exercise(**kw):
    return engine.Exercise(name="toy.Counter", reference=Counter, cases=lambda: COUNTER_CASES, kind="class",
                           uses_device=False, grad=False, **kw)


def test_a_lifecycle_names_the_step_that_differs():
    class ResetForgets(Counter):
        def reset(self):
            pass

    result = run_exercise(_counter_exercise(), ResetForgets)
    assert not result.passed
    assert "step 3 of 7 (after reset): obj.add(3)" in result.report, result.report
    assert "obj.reset()" in result.report  # the steps before it are shown


def test_a_lifecycle_checks_set_fields_and_changed_arguments():
    class IgnoresTotal(Counter):
        def __init__(self, start=0):
            super().__init__(start)
            self._t = start

        def add(self, n, log=None):
            self._t += n
            if log is not None:
                log.append(n)
            return self._t

        def reset(self):
            self._t = 0

    assert "step 5 of 7" in run_exercise(_counter_exercise(mutates=("log",)), IgnoresTotal).report
    assert run_exercise(_counter_exercise(mutates=("log",)), Counter).passed  # add() may append to its log
    result = run_exercise(_counter_exercise(), Counter)  # unless the exercise says so, it may not
    assert "step 7 of 7 (with a log): obj.add(1, [])" in result.report
    assert "changed its input `log`" in result.report


# ----------------------------------------------------------------------------- reports
def test_returned_none_is_said_plainly():
    def softmax_without_return(x):
        torch.softmax(x, dim=-1)

    result = run_exercise("ch00.softmax", softmax_without_return)
    assert "returned None" in result.report and "forget `return`" in result.report


def test_sequences_are_shown_aligned_around_the_first_difference():
    msg = compare_values([10, 20, 30, 40, 50], [10, 20, 31, 40, 50])
    lines = msg.splitlines()
    assert "first difference is at index 2" in lines[0]
    caret = lines[3].index("^")
    assert lines[1][caret:caret + 2] == "30" and lines[2][caret:caret + 2] == "31"
    assert "first difference is at character 3" in compare_values("hello", "helpo")


def test_order_only_differences_are_named():
    assert "another order" in compare_values(torch.tensor([[3.0, 1.0, 2.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    assert "another order" in compare_values(torch.tensor([[2, 0, 1]]), torch.tensor([[0, 1, 2]]))
    assert "another order" in compare_values(["a", "b", "c"], ["b", "a", "c"])


def test_a_fully_masked_row_is_named_when_nan_appears():
    got = torch.tensor([[float("nan")] * 3, [0.2, 0.3, 0.5]])
    assert "fully masked row" in compare_values(torch.full((2, 3), 1 / 3), got)
    assert "fully masked" not in compare_values(torch.full((2, 3), 1 / 3), torch.tensor([[float("nan"), 0.5, 0.5],
                                                                                       [0.2, 0.3, 0.5]]))


def test_harmless_type_differences_are_accepted_or_explained():
    import numpy as np

    assert compare_values(5, np.int64(5)) is None
    assert compare_values((1, 2), [1, 2]) is None
    assert compare_values([1, 2], (np.int64(1), 2)) is None
    assert ".item()" in compare_values(3, torch.tensor(3))
    assert "int(...)" in compare_values(3, 3.0)


def test_bytes_to_unicode_with_int_values_is_reported_not_a_crash():
    def table_of_ints():
        return {b: b for b in range(256)}

    result = run_exercise("ch02.bytes_to_unicode", table_of_ints)
    assert not result.passed and "raised" not in result.report and "each value must be one character" in result.report


def test_a_notebook_shows_only_the_report():
    error = CheckFailed("✗ ch00.softmax: case 1\n  hint: ...")
    assert error._render_traceback_() == ["✗ ch00.softmax: case 1", "  hint: ..."]  # IPython shows this, no frames


def test_reports_and_hints_speak_japanese(monkeypatch):
    monkeypatch.setenv("MINIGPT_LANG", "ja")

    def softmax_over_rows(x):
        return torch.softmax(x, dim=0)

    report = run_exercise("ch00.softmax", softmax_over_rows).report
    assert "ヒント: " in report and "最後の次元" in report and "ロジット 7 個の行が 3 行" in report
    assert "よくある間違い" in report and "最初の次元" in report  # the wrong implementation's ja: line
    assert "hint:" not in report


def test_the_covers_table_in_engine_md_is_up_to_date():
    from minigpt.check.__main__ import BEGIN, END, ENGINE_MD

    text = ENGINE_MD.read_text(encoding="utf-8")
    assert text.split(BEGIN, 1)[1].split(END, 1)[0].strip() == covers_table(), \
        "docs/ENGINE.md is out of date: run `python -m minigpt.check --write-docs`"
