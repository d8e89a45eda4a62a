"""The exercise checkers (minigpt.check): every checker accepts its reference and rejects each of
its plausible wrong implementations; stubs get the reference back; reports are useful."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from minigpt.check import (Case, CheckFailed, all_exercises, check, check_function, check_module,
                           compare_values, get_exercise, run_exercise)

EXERCISES = all_exercises()
WRONG = [(ex, wrong) for ex in EXERCISES for wrong in ex.wrong]


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


@pytest.mark.parametrize("ex", EXERCISES, ids=[ex.name for ex in EXERCISES])
def test_checker_knows_at_least_three_wrong_implementations(ex):
    assert len(ex.wrong) >= 3
    assert len({w.__name__ for w in ex.wrong}) == len(ex.wrong)


@pytest.mark.parametrize("ex,wrong", WRONG, ids=[f"{ex.name}-{w.__name__}" for ex, w in WRONG])
def test_checker_rejects_a_plausible_wrong_implementation(ex, wrong):
    result = run_exercise(ex, wrong)
    assert not result.passed and not result.not_implemented
    assert result.report.startswith(f"✗ {ex.name}: case "), result.report
    # rejected for the mistake it stands for, not because the wrong version itself is broken
    first_line = result.report.splitlines()[0]
    for broken in ("RecursionError", "NameError", "UnboundLocalError", "ImportError"):
        assert f" raised {broken}" not in first_line, f"{wrong.__name__} is broken, not wrong: {first_line}"


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
    assert check("ch00.softmax", my_softmax) is my_softmax
    assert capsys.readouterr().out.startswith("✓ ch00.softmax: 5 cases match the reference")


def test_check_raises_a_report_with_case_difference_and_hint():
    def softmax_over_rows(x):
        return torch.softmax(x, dim=0)

    with pytest.raises(CheckFailed) as info:
        check("ch00.softmax", softmax_over_rows)
    report = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "case 2 of 5 (3 rows of 7 logits)" in report
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
    for name in ["ch01.causal_self_attention", "ch01.GPT"]:
        ex = get_exercise(name)
        result = run_exercise(ex, ex.reference, device=cuda)
        assert result.passed and result.device == "cuda", result.report
        assert all(not run_exercise(ex, w, device=cuda).passed for w in ex.wrong)
