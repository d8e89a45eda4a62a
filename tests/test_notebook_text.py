"""The text of the solution notebooks keeps in step with their code and their outputs.

1. No answer in the text: a non-trivial line (20 characters or more, stripped, comments removed) of the
   solution code of a chapter (between `### BEGIN SOLUTION` and `### END SOLUTION`) must not appear in
   that chapter's markdown. Exercises are stated by their maths, interface and examples; hints give the
   idea and the formula, never the code.
2. Quoted numbers come from outputs: in a markdown cell tagged `quotes-outputs`, every number with at least
   2 significant digits must occur in some stored output of the notebook (see docs/ENGINE.md, "Numbers in
   the text"). Numbers in LaTeX, in `code`, in links, years, numbers glued to a word (`Llama-2-7B`, `22B`,
   `ch05`) and numbers after "chapter"/"section" are not quotes; a cell may list more exceptions in its
   metadata, `"quotes-outputs-except": ["1e-5", ...]`, for constants written in plain text.
3. Every exercise has folded, progressive hints: the markdown between the previous code cell and an exercise's
   code cell (a cell with `### BEGIN SOLUTION`) holds `<details>` blocks whose summaries start with "Hint 1" and
   then "Hint 2" (in the Japanese edition, solutions/ja/, "ヒント 1" and "ヒント 2"), in that order.

The checks are plain functions, tested on synthetic notebooks below so that they can be seen to fail.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
JA_NOTEBOOKS = sorted((ROOT / "solutions" / "ja").glob("[0-9][0-9]_*.ipynb"))
HINT_LABELS = {"en": ("Hint 1", "Hint 2"), "ja": ("ヒント 1", "ヒント 2")}

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
MIN_LINE = 20  # shorter lines (`return x`, `y = y + 1`) are too generic to be an answer
MIN_PART = 12  # the shortest expression of such a line that counts (whitespace removed)
TAG = "quotes-outputs"
EXCEPT_KEY = "quotes-outputs-except"


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


# ----------------------------------------------------------------------------- 1. no answer in the text
def _strip_comment(line: str) -> str:
    """The code part of a line: everything before a `#` that is not inside a string literal."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote and line[i - 1] != "\\":
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


_PREFIX = re.compile(r"\b(?:self|torch|F|nn|math|np)\.")
_BARE_CALL = re.compile(r"[\w.]+\((?:\w+(?:,\w+)*)?\)")  # `rope_inv_freq(head_dim,base)`: an interface


def _normalise(code: str) -> str:
    """Code without whitespace and without the prefixes a text drops (`self.`, `torch.`, `F.`...)."""
    return re.sub(r"\s+", "", _PREFIX.sub("", code))


def _answer_parts(code: str) -> list[str]:
    """What of a solution line would give it away: the line, and what it assigns or returns."""
    parts = [_normalise(code)]
    m = re.match(r"(?:return\s+|[\w\s,.\[\]]+?(?<![=!<>])=(?!=)\s*)(.+)", code)
    if m and not _BARE_CALL.fullmatch(_normalise(m.group(1))):  # `= attention_scores(q, k)` names a helper
        parts.append(_normalise(m.group(1)))
    return [p for p in parts if len(p) >= MIN_PART]


def solution_lines(nb: dict) -> list[str]:
    """The non-trivial code lines of every solution region of a notebook (comments removed)."""
    lines, inside = [], False
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in _source(cell).split("\n"):
            stripped = line.strip()
            if stripped == BEGIN:
                inside = True
            elif stripped == END:
                inside = False
            elif inside:
                code = _strip_comment(stripped).strip()
                if len(code) >= MIN_LINE:
                    lines.append(code)
    return lines


def answers_in_text(nb: dict) -> list[str]:
    """Solution lines that the markdown of the same notebook gives away (the line itself, or what it
    assigns or returns, compared without whitespace and without `self.`/`torch.`/`F.` prefixes)."""
    markdown = [(i, _normalise(_source(c))) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"]
    found = []
    for line in dict.fromkeys(solution_lines(nb)):  # each line once, in order
        for i, text in markdown:
            if any(part in text for part in _answer_parts(line)):
                found.append(f"markdown cell {i} contains the solution line `{line}`")
    return found


# ----------------------------------------------------------------------------- 2. numbers from outputs
_NUMBER = re.compile(r"(?<![\w.])(?<!\w-)(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
_NOT_PROSE = re.compile(
    r"```.*?```"  # fenced code
    r"|\$\$.*?\$\$|\$[^$\n]+\$"  # LaTeX
    r"|`[^`\n]*`"  # inline code
    r"|\]\([^)]*\)|https?://\S+"  # link targets
    r"|<[^>\n]+>",  # HTML tags (their attributes)
    re.S)
_REFERENCE_WORDS = re.compile(r"(?:chapters?|sections?|cells?|step|steps|Hint|ch)\s*(?:\d+(?:\s*(?:,|and|-|–|to)\s*)?)*$",
                              re.I)


def _value(token: str) -> Decimal | None:
    try:
        return Decimal(token.replace(",", "")).normalize()
    except InvalidOperation:
        return None


def significant_digits(token: str) -> int:
    """2 for `0.0042`, 3 for `5.30`, 1 for `100` and `2000` (trailing zeros of an integer are not counted)."""
    mantissa = re.split(r"[eE]", token.replace(",", ""))[0]
    digits = mantissa.replace(".", "").lstrip("0")
    if "." not in mantissa:
        digits = digits.rstrip("0")
    return len(digits)


def quoted_numbers(markdown: str) -> list[str]:
    """The numbers of a markdown text that claim to be measured: >= 2 significant digits, in prose."""
    prose = _NOT_PROSE.sub(" ", markdown)
    out = []
    for m in _NUMBER.finditer(prose):
        token = m.group(0)
        if significant_digits(token) < 2:
            continue
        if re.fullmatch(r"(19|20)\d\d", token):  # a year
            continue
        if _REFERENCE_WORDS.search(prose[max(0, m.start() - 40):m.start()].rstrip()):  # chapter 10, section 12
            continue
        out.append(token)
    return out


def _output_text(nb: dict) -> str:
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            if "text" in out:
                parts.append(_source({"source": out["text"]}))
            for mime in ("text/plain", "text/markdown", "text/html"):
                if mime in out.get("data", {}):
                    parts.append(_source({"source": out["data"][mime]}))
    return "\n".join(parts)


def output_values(nb: dict) -> set[Decimal]:
    """Every number printed by the notebook's stored outputs, as values (`5.30` == `5.3`, `8,192` == `8192`)."""
    values = set()
    for m in re.finditer(r"(?:\d{1,3}(?:,\d{3})+(?![\d,])|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?", _output_text(nb)):
        v = _value(m.group(0))
        if v is not None:
            values.add(v)
    return values


def unquoted_numbers(nb: dict) -> list[str]:
    """Numbers of the `quotes-outputs` cells that no stored output of the notebook contains."""
    printed = output_values(nb)
    missing = []
    for i, cell in enumerate(nb["cells"]):
        meta = cell.get("metadata", {})
        if cell["cell_type"] != "markdown" or TAG not in meta.get("tags", []):
            continue
        allowed = {_value(t) for t in meta.get(EXCEPT_KEY, [])}
        for token in quoted_numbers(_source(cell)):
            if _value(token) not in printed and _value(token) not in allowed:
                missing.append(f"markdown cell {i} (id {cell.get('id')}) quotes {token}, which no output prints")
    return missing


# ----------------------------------------------------------------------------- 3. hints for every exercise
_SUMMARY = re.compile(r"<details>\s*<summary>(.*?)</summary>", re.S)


def hint_summaries(markdown: str) -> list[str]:
    """The summaries of the folded `<details>` blocks of a markdown text, in order."""
    return [m.group(1).strip() for m in _SUMMARY.finditer(markdown)]


def exercises_without_hints(nb: dict, labels: tuple[str, ...] = HINT_LABELS["en"]) -> list[str]:
    """Exercise code cells (with a solution region) whose preceding markdown (since the previous code cell) lacks
    folded hints whose summaries start with `labels` ("Hint 1", "Hint 2"), in that order."""
    missing, markdown = [], []
    for i, cell in enumerate(nb["cells"]):
        source = _source(cell)
        if cell["cell_type"] == "markdown":
            markdown.append(source)
            continue
        if any(line.strip() == BEGIN for line in source.split("\n")):
            summaries, found = iter(hint_summaries("\n\n".join(markdown))), []
            for label in labels:  # each label after the previous one
                found.append(any(s.startswith(label) for s in summaries))
            if not all(found):
                name = re.search(r"^\s*(?:def|class)\s+(\w+)", source, re.M)
                missing.append(f"cell {i} (id {cell.get('id')}, {name.group(1) if name else '?'}): the markdown "
                               f"before it has no folded {' and '.join(repr(lb) for lb in labels)}, in that order")
        markdown = []
    return missing


# ----------------------------------------------------------------------------- the real notebooks
def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_markdown_does_not_contain_the_solution_code(path):
    found = answers_in_text(_load(path))
    assert not found, f"{path.name}: the text gives the answer away:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_numbers_quoted_in_marked_cells_occur_in_the_outputs(path):
    missing = unquoted_numbers(_load(path))
    assert not missing, (f"{path.name}: re-read the text against the outputs (or print the number):\n  "
                         + "\n  ".join(missing))


def _hint_params(paths, lang):
    return [pytest.param(p, lang, id=f"{lang}-{p.stem}") for p in paths]


@pytest.mark.parametrize("path, lang", _hint_params(NOTEBOOKS, "en") + _hint_params(JA_NOTEBOOKS, "ja"))
def test_every_exercise_has_folded_progressive_hints(path, lang):
    missing = exercises_without_hints(_load(path), HINT_LABELS[lang])
    assert not missing, (f"{path.relative_to(ROOT)}: give every exercise at least two folded hints "
                         "(as chapter 04 does):\n  " + "\n  ".join(missing))


# ----------------------------------------------------------------------------- the checks can fail
def _notebook(*cells) -> dict:
    return {"cells": list(cells), "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _md(text: str, tags=(), **meta) -> dict:
    return {"cell_type": "markdown", "metadata": {"tags": list(tags), **meta}, "source": text}


def _code(src: str, printed: str = "") -> dict:
    outputs = [{"output_type": "stream", "name": "stdout", "text": printed}] if printed else []
    return {"cell_type": "code", "metadata": {}, "source": src, "outputs": outputs, "execution_count": None}


EXERCISE = ("def rms(x):\n"
            "    ### BEGIN SOLUTION\n"
            "    ms = x.pow(2).mean(-1, keepdim=True)  # the mean of squares\n"
            "    return x * torch.rsqrt(ms + 1e-5)\n"
            "    ### END SOLUTION\n")


def test_a_solution_line_written_in_the_markdown_is_found():
    nb = _notebook(_md("Compute `ms = x.pow(2).mean(-1,  keepdim=True)` first."), _code(EXERCISE))
    found = answers_in_text(nb)
    assert len(found) == 1 and "x.pow(2).mean(-1, keepdim=True)" in found[0]


def test_the_maths_of_an_exercise_is_not_mistaken_for_its_code():
    nb = _notebook(_md(r"$$\mathrm{RMSNorm}(x) = x / \sqrt{\tfrac{1}{C}\sum_j x_j^2 + \epsilon}$$"),
                   _code(EXERCISE))
    assert answers_in_text(nb) == []


def test_short_lines_and_comments_of_a_solution_do_not_count():
    lines = solution_lines(_notebook(_code(EXERCISE)))
    assert lines == ["ms = x.pow(2).mean(-1, keepdim=True)", "return x * torch.rsqrt(ms + 1e-5)"]
    assert answers_in_text(_notebook(_md("then `x * rsqrt(ms + 1e-5)`"), _code(EXERCISE)))  # the returned part
    assert answers_in_text(_notebook(_md("the mean of squares"), _code(EXERCISE))) == []


def test_naming_the_helper_a_solution_calls_is_not_an_answer():
    code = ("def f(head_dim, base, factor):\n    ### BEGIN SOLUTION\n"
            "    theta = rope_inv_freq(head_dim, base)\n    return theta / factor\n    ### END SOLUTION\n")
    assert answers_in_text(_notebook(_md("use `rope_inv_freq(head_dim, base)`"), _code(code))) == []


def test_a_quoted_number_missing_from_the_outputs_is_reported():
    nb = _notebook(_code("print(loss)", "val loss 5.301\n"),
                   _md("The loss reaches 5.310 after 200 steps.", tags=[TAG]))
    missing = unquoted_numbers(nb)
    assert len(missing) == 1 and "5.310" in missing[0]


def test_a_quoted_number_that_an_output_prints_passes():
    nb = _notebook(_code("print(loss)", "val loss 5.30, 8,192 tokens, 0.37%\n"),
                   _md("The loss reaches 5.3 on 8192 tokens (error 0.37%).", tags=[TAG]))
    assert unquoted_numbers(nb) == []


def test_only_tagged_cells_are_checked():
    nb = _notebook(_code("print(1)", "1\n"), _md("An untagged claim: 42.5 nats."))
    assert unquoted_numbers(nb) == []


def test_constants_references_and_names_are_not_quotes():
    text = ("Chapter 10 and section 12 (Zhai et al., 2023) use $\\theta_i = 10000^{-2i/d}$, `eps=1e-5`, "
            "Llama-2-7B, a 22B model, ch05, 3 layers and [a link](https://example.com/1234).")
    assert quoted_numbers(text) == []


def test_a_cell_can_list_plain_text_constants_as_exceptions():
    nb = _notebook(_code("print(1)", "1\n"),
                   _md("Gemma 2 caps attention logits at 50.0 and uses eps 1e-6.", tags=[TAG],
                       **{EXCEPT_KEY: ["50.0"]}))
    assert unquoted_numbers(nb) == []
    nb["cells"][1]["metadata"][EXCEPT_KEY] = []
    assert len(unquoted_numbers(nb)) == 1


def test_significant_digits_ignore_leading_and_integer_trailing_zeros():
    assert [significant_digits(t) for t in ["0.0042", "5.30", "100", "2000", "8,192", "1e-5", "0.5"]] == \
        [2, 3, 1, 1, 4, 1, 1]


def _hints(*summaries: str) -> str:
    return "\n\n".join(f"<details><summary>{s}</summary>\n\nsome words\n</details>" for s in summaries)


def test_an_exercise_with_two_folded_hints_passes():
    nb = _notebook(_md("Write `rms(x)`."), _md(_hints("Hint 1: the idea", "Hint 2: the formula")), _code(EXERCISE))
    assert exercises_without_hints(nb) == []
    assert hint_summaries(_hints("Hint 1: the idea", "Hint 2: the formula")) == ["Hint 1: the idea",
                                                                                "Hint 2: the formula"]


def test_an_exercise_without_hints_is_reported():
    nb = _notebook(_md("Write `rms(x)`."), _code(EXERCISE))
    missing = exercises_without_hints(nb)
    assert len(missing) == 1 and "id None, rms" in missing[0]


def test_one_hint_hints_out_of_order_or_hints_before_the_previous_code_cell_are_not_enough():
    one = _notebook(_md(_hints("Hint 1: the idea")), _code(EXERCISE))
    swapped = _notebook(_md(_hints("Hint 2: the formula", "Hint 1: the idea")), _code(EXERCISE))
    too_early = _notebook(_md(_hints("Hint 1: the idea", "Hint 2: the formula")), _code("print(1)"), _code(EXERCISE))
    assert all(len(exercises_without_hints(nb)) == 1 for nb in (one, swapped, too_early))


def test_code_cells_without_a_solution_need_no_hints_and_each_exercise_needs_its_own():
    hinted = _md(_hints("Hint 1", "Hint 2"))
    nb = _notebook(_md("A tour."), _code("print(1)"), hinted, _code(EXERCISE), _code(EXERCISE))
    assert len(exercises_without_hints(nb)) == 1  # the second exercise shares nothing with the first


def test_the_japanese_edition_uses_its_own_labels():
    nb = _notebook(_md(_hints("ヒント 1: 考え方", "ヒント 2: 式")), _code(EXERCISE))
    assert exercises_without_hints(nb, HINT_LABELS["ja"]) == []
    assert len(exercises_without_hints(nb)) == 1  # English labels are not there
