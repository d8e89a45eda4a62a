"""The course engine: chapters/ is generated from solutions/ (tools/make_exercises.py), the solution
notebooks are executed and follow the rules of docs/ENGINE.md, and every check() names an exercise."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from minigpt.check import all_exercises

ROOT = Path(__file__).resolve().parent.parent


def _load_tool():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
SOLUTIONS = tool.solution_notebooks()
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](ch\d\d\.\w+)["']""")


def _code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _tags(cell):
    return cell.metadata.get("tags", [])


def test_there_are_solution_notebooks():
    assert [p.name[:2] for p in SOLUTIONS][:4] == ["00", "01", "02", "03"]


def test_chapters_are_exactly_what_make_exercises_generates():
    problems = tool.stale_chapters()
    assert not problems, "chapters/ is stale, run `make exercises`:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_chapter_has_stubs_instead_of_solutions_and_no_outputs(path):
    chapter = ROOT / "chapters" / path.name
    solution = "\n".join(c.source for c in _code_cells(path))
    cells = _code_cells(chapter)
    text = "\n".join(c.source for c in cells)
    assert tool.BEGIN not in text and tool.END not in text
    stubs = "# YOUR CODE HERE\n"  # (a notebook may also show a stub on purpose, so count the new ones)
    assert text.count(stubs) - solution.count(stubs) == solution.count(tool.BEGIN)
    assert all(c.outputs == [] and c.execution_count is None for c in cells)


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_notebook_was_run_top_to_bottom(path):
    """`make notebooks` stores outputs; nbval compares against them, so they must be there."""
    counts = [c.execution_count for c in _code_cells(path) if "nbval-skip" not in _tags(c)]
    assert counts == list(range(1, len(counts) + 1)), "re-run it with `make notebooks`"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_outputs_have_no_errors_or_warnings(path):
    for i, cell in enumerate(_code_cells(path)):
        for out in cell.outputs:
            assert out.output_type != "error", f"code cell {i} raised {out.get('ename')}"
            assert not (out.output_type == "stream" and out.name == "stderr"), \
                f"code cell {i} wrote to stderr (nbval compares it): {out.text[:200]!r}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_first_code_cell_installs_minigpt_in_colab_only_and_nbval_skips_it(path):
    first = _code_cells(path)[0]
    assert 'if "google.colab" in sys.modules:' in first.source
    assert "nbval-skip" in _tags(first)
    compile(first.source, "colab cell", "exec")  # plain Python, no `!pip` magic


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_notebook_calls_setup_before_anything_else(path):
    cells = [c for c in _code_cells(path) if "nbval-skip" not in _tags(c)]
    assert "setup(" in cells[0].source, "the first code cell after the Colab cell calls minigpt.notebook.setup()"


@pytest.mark.parametrize("path", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_check_names_belong_to_the_notebooks_chapter(path):
    names = [n for c in _code_cells(path) for n in CHECK_CALL.findall(c.source)]
    assert all(n.startswith(f"ch{path.name[:2]}.") for n in names), names


def test_every_check_call_names_a_registered_exercise_and_every_exercise_is_used():
    used = {n for path in SOLUTIONS for c in _code_cells(path) for n in CHECK_CALL.findall(c.source)}
    registered = {ex.name for ex in all_exercises()}
    assert used <= registered, f"check() names without a checker: {sorted(used - registered)}"
    chapters_with_notebooks = {f"ch{p.name[:2]}" for p in SOLUTIONS}
    unused = {n for n in registered - used if n.split(".")[0] in chapters_with_notebooks}
    assert not unused, f"checkers no notebook uses: {sorted(unused)}"


# ------------------------------------------------------------------------- the stub generator itself
def test_a_solution_region_becomes_a_stub_at_its_indentation():
    source = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return x + y\n    ### END SOLUTION\nf = check('ch00.f', f)"
    out, n = tool.stub_source(source)
    assert n == 1
    assert out == ("def f(x):\n    y = 1\n    # YOUR CODE HERE\n    raise NotImplementedError\n"
                   "f = check('ch00.f', f)")


def test_two_regions_in_one_cell_become_two_stubs():
    source = ("class A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n"
              "    def g(self):\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION\n")
    out, n = tool.stub_source(source)
    assert n == 2 and out.count("        raise NotImplementedError") == 2


@pytest.mark.parametrize("source,message", [
    ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "inside a function"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1", "never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION", "without a"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    ### END SOLUTION", "inside another"),
])
def test_broken_markers_are_reported(source, message):
    with pytest.raises(tool.SolutionError, match=message):
        tool.stub_source(source, "test cell")


def test_a_cell_with_a_solution_must_call_check():
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"))
    with pytest.raises(tool.SolutionError, match="check"):
        tool.make_chapter(nb, "test.ipynb")


def test_generated_chapter_keeps_tags_and_drops_outputs():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                     outputs=[nbformat.v4.new_output("stream", text="1\n")])
    cell.metadata.update(tags=["nbval-skip"], collapsed=True)
    nb.cells.append(cell)
    out = tool.make_chapter(nb)
    assert out.cells[0].outputs == [] and out.cells[0].execution_count is None
    assert dict(out.cells[0].metadata) == {"tags": ["nbval-skip"]}


# ------------------------------------------------------------------------- never overwrite a learner's work
EXERCISE = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\nf = check('ch98.f', f)"


def _solution(text="Add one."):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell(EXERCISE),
                nbformat.v4.new_code_cell("print(f(1))")]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c98-{i:02d}"
    return nb


@pytest.fixture
def course(tmp_path):
    """A solutions folder with one notebook and its generated chapters folder."""
    src, dst = tmp_path / "solutions", tmp_path / "chapters"
    src.mkdir()
    nbformat.write(_solution(), src / "98_demo.ipynb")
    tool.generate(src, dst, log=lambda *a: None)
    return src, dst


def _learner_solves_the_exercise(path):
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace("raise NotImplementedError", "return x + 1  # mine")
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="✓ ch98.f\n")]
    nbformat.write(nb, path)


def test_generate_writes_chapters_and_a_manifest_that_check_accepts(course):
    src, dst = course
    assert (dst / "98_demo.ipynb").is_file() and (dst / tool.MANIFEST).is_file()
    assert "raise NotImplementedError" in (dst / "98_demo.ipynb").read_text()
    assert tool.stale_chapters(src, dst) == []


def test_an_edited_chapter_is_kept_and_the_new_version_goes_beside_it(course):
    src, dst = course
    chapter = dst / "98_demo.ipynb"
    _learner_solves_the_exercise(chapter)
    mine = chapter.read_bytes()
    nbformat.write(_solution("Add one to x."), src / "98_demo.ipynb")  # the course changed meanwhile
    messages = []
    done = tool.generate(src, dst, log=messages.append)
    assert chapter.read_bytes() == mine
    copy = dst / "98_demo.new.ipynb"
    assert done["kept"] == [chapter] and done["new_copies"] == [copy]
    assert "Add one to x." in copy.read_text() and "raise NotImplementedError" in copy.read_text()
    assert any("kept" in m and "c98-01" in m and "--force" in m for m in messages)
    tool.generate(src, dst, log=messages.append)  # again: still kept, never overwritten
    assert chapter.read_bytes() == mine


def test_an_edited_chapter_of_an_unchanged_course_gets_no_new_copy(course):
    src, dst = course
    _learner_solves_the_exercise(dst / "98_demo.ipynb")
    mine = (dst / "98_demo.ipynb").read_bytes()
    done = tool.generate(src, dst, log=lambda *a: None)
    assert (dst / "98_demo.ipynb").read_bytes() == mine and not (dst / "98_demo.new.ipynb").exists()
    assert done["written"] == done["new_copies"] == []


def test_an_untouched_chapter_is_refreshed_when_its_solution_changes(course):
    src, dst = course
    nbformat.write(_solution("Add one to x."), src / "98_demo.ipynb")
    done = tool.generate(src, dst, log=lambda *a: None)
    assert done["written"] == [dst / "98_demo.ipynb"] and "Add one to x." in (dst / "98_demo.ipynb").read_text()
    assert not (dst / "98_demo.new.ipynb").exists() and tool.stale_chapters(src, dst) == []


def test_a_chapter_that_was_only_run_keeps_its_outputs(course):
    src, dst = course
    chapter = dst / "98_demo.ipynb"
    nb = nbformat.read(chapter, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nbformat.write(nb, chapter)
    ran = chapter.read_bytes()
    tool.generate(src, dst, log=lambda *a: None)
    assert chapter.read_bytes() == ran and not (dst / "98_demo.new.ipynb").exists()


def test_a_tag_added_in_the_course_reaches_a_chapter_that_was_only_run_and_its_outputs_stay(course):
    src, dst = course
    chapter = dst / "98_demo.ipynb"
    nb = nbformat.read(chapter, as_version=4)
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="2\n")]
    nbformat.write(nb, chapter)
    solution = _solution()
    solution.cells[2].metadata["tags"] = ["nbval-skip"]
    nbformat.write(solution, src / "98_demo.ipynb")
    tool.generate(src, dst, log=lambda *a: None)
    cell = nbformat.read(chapter, as_version=4).cells[2]
    assert cell.metadata["tags"] == ["nbval-skip"] and cell.outputs[0]["text"] == "2\n"


def test_force_replaces_an_edited_chapter(course):
    src, dst = course
    _learner_solves_the_exercise(dst / "98_demo.ipynb")
    tool.generate(src, dst, force=True, log=lambda *a: None)
    assert "# mine" not in (dst / "98_demo.ipynb").read_text() and tool.stale_chapters(src, dst) == []


def test_a_learners_own_notebooks_are_never_deleted(course):
    src, dst = course
    own = dst / "my_notes.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), own)
    edited = dst / "97_old.ipynb"  # a chapter whose solution is gone, but the learner worked in it
    nbformat.write(_solution("my work"), edited)
    tool.generate(src, dst, log=lambda *a: None)
    assert own.exists() and edited.exists()


def test_an_untouched_chapter_without_a_solution_is_deleted(course):
    src, dst = course
    (src / "98_demo.ipynb").rename(src / "99_renamed.ipynb")
    done = tool.generate(src, dst, log=lambda *a: None)
    assert done["deleted"] == [dst / "98_demo.ipynb"] and (dst / "99_renamed.ipynb").exists()


def test_the_command_line_takes_another_source_and_destination(course, capsys):
    src, dst = course
    _learner_solves_the_exercise(dst / "98_demo.ipynb")
    nbformat.write(_solution("Add one to x."), src / "98_demo.ipynb")
    assert tool.main(["--src", str(src), "--dst", str(dst)]) == 0
    assert "kept" in capsys.readouterr().out and "# mine" in (dst / "98_demo.ipynb").read_text()
    assert tool.main(["--src", str(src), "--dst", str(dst), "--check"]) == 1
    assert tool.main(["--src", str(src), "--dst", str(dst), "--force"]) == 0
    (dst / "98_demo.new.ipynb").unlink()
    assert tool.main(["--src", str(src), "--dst", str(dst), "--check"]) == 0
