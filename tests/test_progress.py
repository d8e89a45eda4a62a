"""`python -m minigpt progress` (minigpt.progress): every exercise of a learner's notebooks is reported as
done, failing (with the reason), not started, timed out or unknown; bad notebooks get a line, never a
crash; the learner's files are never changed; results are cached; `--collect` merges many learners."""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt import progress
from minigpt.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parent.parent


def notebook(*cells) -> dict:
    """A notebook of code cells; a cell given as (source, ["tag"]) has tags."""
    out = []
    for i, c in enumerate(cells):
        src, tags = (c, []) if isinstance(c, str) else c
        out.append({"cell_type": "code", "id": f"c{i}", "metadata": {"tags": tags}, "execution_count": None,
                    "outputs": [], "source": src.splitlines(keepends=True)})
    out.insert(0, {"cell_type": "markdown", "id": "m", "metadata": {}, "source": ["# a chapter"]})
    return {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


SETUP = "from minigpt.notebook import setup\n\ndevice = setup(seed=0)"
COLAB = ("raise RuntimeError('the Colab cell must not run')", ["nbval-skip"])

ROPE = notebook(
    COLAB,
    SETUP,
    "import torch\n\nfrom minigpt.check import check",
    "import time\ntime.sleep(1000)  # a long cell no exercise needs",
    'def rope_cos_sin(T, head_dim, base=10000.0):\n    return None\n\n'
    'undefined_helper()\nrope_cos_sin = check("ch04.rope_cos_sin", rope_cos_sin)',
    'def rotate_half(x):\n    x1, x2 = x.chunk(2, dim=-1)\n    return torch.cat((-x2, x1), dim=-1)\n\n'
    'rotate_half = check("ch04.rotate_half", rotate_half)\nprint(rotate_half(torch.ones(4)))',
    'def apply_rope(x, cos, sin):\n    return x * cos + rotate_half(x) * cos  # sin forgotten\n\n'
    'apply_rope = check("ch04.apply_rope", apply_rope)',
    'def permute_interleaved_to_half(w, n_head):\n    while True:\n        pass\n\n'
    'permute_interleaved_to_half = check("ch04.permute_interleaved_to_half", permute_interleaved_to_half)',
)

SOFTMAX = notebook(
    SETUP,
    "import torch\n\nfrom minigpt.check import check",
    'def softmax(x):\n    # YOUR CODE HERE\n    raise NotImplementedError\n\nsoftmax = check("ch00.softmax", softmax)',
    'def old_name(x):\n    return x\n\nold_name = check("ch00.old_name", old_name)',
)


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def learner(tmp_path_factory):
    """A learner's folder with two notebooks and a broken one, checked once (cache in a temporary folder)."""
    folder = tmp_path_factory.mktemp("chapters")
    (folder / "04_rope.ipynb").write_text(json.dumps(ROPE), encoding="utf-8")
    (folder / "00_setup.ipynb").write_text(json.dumps(SOFTMAX), encoding="utf-8")
    (folder / "06_swiglu.ipynb").write_text('{"cells": [', encoding="utf-8")
    before = digest(folder)
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINIGPT_CACHE", str(cache))
    mp.setenv("MINIGPT_LANG", "en")
    result = progress.run_progress(folder, timeout=3, jobs=2)
    yield {"folder": folder, "before": before, "result": result, "cache": cache, "mp": mp}
    mp.undo()


def statuses(result) -> dict:
    return {e.name: e for nb in result for e in nb.exercises}


# --------------------------------------------------------------------------- reading the notebooks
def test_exercise_cells_are_the_ones_that_hand_their_own_definition_to_check():
    nb = notebook(SETUP, "from minigpt.check import check",
                  'def softmax(x):\n    raise NotImplementedError\n\nsoftmax = check("ch00.softmax", softmax)',
                  'def softmax_stub(x):\n    raise NotImplementedError\n\nfallback = check("ch00.softmax", softmax_stub)',
                  'try:\n    check("ch00.softmax", lambda x: x)\nexcept AssertionError as e:\n    print(e)')
    cells = progress._read_cells(nb)
    assert [c.exercise for c in cells] == [None, None, "ch00.softmax", None, None]


def test_an_exercise_cell_with_a_syntax_error_is_still_found():
    nb = notebook('def softmax(x):\n    return (x\n\nsoftmax = check("ch00.softmax", softmax)')
    assert progress._read_cells(nb)[0].exercise == "ch00.softmax"


def test_an_exercise_needs_the_cells_that_bind_its_names_and_not_the_others():
    cells = progress._read_cells(ROPE)
    needed = progress._needed_cells(cells, 6)  # apply_rope uses torch, check and rotate_half
    assert needed == [1, 2, 5, 6]  # setup, imports, rotate_half's cell; not Colab (0), sleep (3), stub (4)


def test_names_local_to_a_function_do_not_pull_in_earlier_cells():
    nb = notebook("x = expensive()", 'def f(x):\n    y = x + 1\n    return y\n\nf = check("ch00.f", f)')
    cells = progress._read_cells(nb)
    assert progress._needed_cells(cells, 1) == [1]


# --------------------------------------------------------------------------- one run of a learner's folder
def test_a_correct_exercise_is_done(learner):
    assert statuses(learner["result"])["ch04.rotate_half"].status == "done"


def test_a_stub_is_not_started(learner):
    assert statuses(learner["result"])["ch00.softmax"].status == "not_started"


def test_a_wrong_exercise_is_failing_with_the_checkers_reason(learner):
    e = statuses(learner["result"])["ch04.apply_rope"]
    assert e.status == "failing"
    assert e.reason and "\n" not in e.reason and e.report.startswith("✗ ch04.apply_rope")


def test_a_hanging_exercise_times_out_and_the_run_goes_on(learner):
    e = statuses(learner["result"])["ch04.permute_interleaved_to_half"]
    assert e.status == "timeout" and "3 s" in e.reason


def test_a_cell_that_raises_before_check_is_failing_with_the_error(learner):
    e = statuses(learner["result"])["ch04.rope_cos_sin"]
    assert e.status == "failing" and "NameError" in e.reason and "undefined_helper" in e.reason


def test_an_exercise_name_this_version_does_not_know_is_listed_as_unknown(learner):
    assert statuses(learner["result"])["ch00.old_name"].status == "unknown"


def test_an_exercise_of_this_version_the_notebook_lacks_is_listed_as_missing(tmp_path):
    (tmp_path / "04_rope.ipynb").write_text(json.dumps(notebook(SETUP)), encoding="utf-8")
    found = progress._progress_notebook(tmp_path / "04_rope.ipynb", 3, True)
    assert {e.name: e.status for e in found.exercises}.get("ch04.rotate_half") == "missing"


def test_a_notebook_that_is_not_json_gets_one_line_and_the_others_are_checked(learner):
    bad = [nb for nb in learner["result"] if nb.path.endswith("06_swiglu.ipynb")]
    assert len(bad) == 1 and bad[0].error and not bad[0].exercises
    table = progress.format_table(learner["result"])
    assert "06_swiglu.ipynb" in table and "ch04.rotate_half" in table


def test_the_learners_files_are_not_changed(learner):
    assert digest(learner["folder"]) == learner["before"]


def test_a_second_run_takes_every_result_from_the_cache(learner):
    again = progress.run_progress(learner["folder"], timeout=3)
    checked = [e for e in statuses(again).values() if e.status not in ("missing", "timeout")]
    assert checked and all(e.cached for e in checked)
    assert {n: e.status for n, e in statuses(again).items()} == {n: e.status for n, e in statuses(learner["result"]).items()}


def test_a_changed_exercise_cell_is_checked_again(learner, tmp_path):
    changed = json.loads(json.dumps(ROPE))
    cell = changed["cells"][6]  # rotate_half's cell (after the markdown cell)
    cell["source"] = [s.replace("return torch.cat((-x2, x1), dim=-1)", "return torch.cat((x2, x1), dim=-1)")
                      for s in cell["source"]]
    (tmp_path / "04_rope.ipynb").write_text(json.dumps(changed), encoding="utf-8")
    found = progress._progress_notebook(tmp_path / "04_rope.ipynb", 3, True)
    e = {x.name: x for x in found.exercises}["ch04.rotate_half"]
    assert e.status == "failing" and not e.cached


def test_the_json_holds_every_exercise_with_its_status(learner):
    data = json.loads(json.dumps(progress.to_json(learner["result"], "alice")))
    assert data["learner"] == "alice" and data["format"].startswith("minigpt-progress/")
    rows = {e["name"]: e["status"] for nb in data["notebooks"] for e in nb["exercises"]}
    assert rows["ch04.rotate_half"] == "done" and rows["ch04.apply_rope"] == "failing"


def test_the_table_is_japanese_with_minigpt_lang_ja(learner, monkeypatch):
    monkeypatch.setenv("MINIGPT_LANG", "ja")
    table = progress.format_table(learner["result"])
    assert "完了" in table and "未着手" in table and "not started" not in table


# --------------------------------------------------------------------------- the command
def test_progress_is_a_registered_command():
    assert "progress" in COMMANDS


def test_a_folder_without_notebooks_is_one_error_line(tmp_path, capsys):
    assert main(["progress", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_command_prints_the_table_from_the_cache(learner, capsys):
    assert main(["progress", str(learner["folder"])]) == 0
    out = capsys.readouterr().out
    assert "✓ ch04.rotate_half" in out and "✗ ch04.apply_rope" in out


# --------------------------------------------------------------------------- a teacher's view
def learner_file(folder: Path, who: str, rows: dict) -> None:
    data = {"format": "minigpt-progress/1", "learner": who,
            "notebooks": [{"path": "04_rope.ipynb", "chapter": "04", "error": "",
                           "exercises": [{"name": n, "status": s, "reason": r} for n, (s, r) in rows.items()]}]}
    (folder / f"{who}.json").write_text(json.dumps(data), encoding="utf-8")


def test_collect_shows_where_each_learner_is_stuck_and_the_most_common_failure(tmp_path):
    sign = "case 1 of 3 — output: the signs of x2 are wrong"
    learner_file(tmp_path, "ann", {"ch04.rope_cos_sin": ("done", ""), "ch04.rotate_half": ("failing", sign)})
    learner_file(tmp_path, "bo", {"ch04.rope_cos_sin": ("done", ""), "ch04.rotate_half": ("failing", sign)})
    learner_file(tmp_path, "cy", {"ch04.rope_cos_sin": ("not_started", ""), "ch04.rotate_half": ("done", "")})
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    merged = progress.collect(tmp_path)
    assert merged.learners == ["ann", "bo", "cy"] and len(merged.problems) == 1
    text = progress.format_collected(merged)
    ann = next(line for line in text.splitlines() if line.strip().startswith("ann"))
    cy = next(line for line in text.splitlines() if line.strip().startswith("cy"))
    assert "ch04.rotate_half" in ann and "ch04.rope_cos_sin" in cy
    row = next(line for line in text.splitlines() if line.strip().startswith("ch04.rotate_half"))
    assert "2×" in row and "signs of x2" in row
    assert "broken.json" in text


def test_collect_of_a_folder_without_progress_files_is_a_user_error(tmp_path):
    with pytest.raises(progress.ConfigError):
        progress.collect(tmp_path)


@pytest.mark.slow
def test_the_command_runs_as_a_module_in_a_fresh_process(learner):
    env = {**__import__("os").environ, "MINIGPT_CACHE": str(learner["cache"]), "MINIGPT_LANG": "en"}
    out = subprocess.run([sys.executable, "-m", "minigpt", "progress", str(learner["folder"]), "--json"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["notebooks"]


def test_the_notebook_helper_prints_the_table_of_the_kernels_folder(learner, monkeypatch, capsys):
    from minigpt.notebook import progress as notebook_progress

    monkeypatch.chdir(learner["folder"])
    result = notebook_progress(timeout=3)
    assert "ch04.rotate_half" in capsys.readouterr().out and len(result) == 3


def test_the_notebooks_run_in_the_environment_of_the_notebook_tests():
    from minigpt.notebook import NOTEBOOK_ENV

    assert progress.CHILD_ENV == NOTEBOOK_ENV
