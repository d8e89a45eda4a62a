"""README.md and README.ja.md stay in step: the same sections in the same order, and in each section the same
commands, numbers, links and markers; the same chapter table; every chapter notebook listed; and only commands
that exist (make targets of the Makefile, subcommands of `python -m minigpt`).

The Japanese README mirrors the English one section by section (`##`), so a section changed in one file and not
in the other fails here, naming the section and what differs. Code blocks must match line for line except for
comments (which may be translated). Numbers are compared as written with digits, so write a number with digits
in both languages ("the 12 notebooks", 12 本; "1 document in 10", 10 件に 1 件), or spelled out in both.
"""

import re
from pathlib import Path

import pytest

from minigpt.cli import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
EN = ROOT / "README.md"
JA = ROOT / "README.ja.md"

FENCE = re.compile(r"^(```|~~~)")
# A command: optional VAR=value prefixes, then a program the course tells people to run.
COMMAND = re.compile(r"^(?:[A-Z][A-Z0-9_]*=\S*\s+)*(?:make|python|pip|jupyter|conda|setx|export|torchrun|"
                     r"\.venv[/\\]\S*python)\b")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MARKER = re.compile(r"<!--\s*([A-Z][A-Z0-9_-]*)\s*-->")


def read(path):
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


def split_code(text):
    """(prose, code lines): fenced blocks taken out of the text."""
    prose, code, inside = [], [], False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return "\n".join(prose), code


def sections(text):
    """[(heading, body)] split at `## ` headings outside code blocks; the first is the title and intro."""
    out, heading, body, inside = [], "(title)", [], False
    for line in text.split("\n"):
        if FENCE.match(line.strip()):
            inside = not inside
        if not inside and line.startswith("## "):
            out.append((heading, "\n".join(body)))
            heading, body = line[3:].strip(), []
        else:
            body.append(line)
    out.append((heading, "\n".join(body)))
    return out


def code_commands(code_lines):
    """Command lines of code blocks, comments dropped (they may be translated), spaces normalised."""
    cmds = []
    for line in code_lines:
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a comment: `#` at the start or after a space
        if line:
            cmds.append(" ".join(line.split()))
    return cmds


def inline_commands(prose):
    spans = (" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose))  # a span may wrap a line
    return {s for s in spans if COMMAND.match(s)}


def numbers(text):
    text = MARKER.sub("", text)
    return set(NUMBER.findall(text))


def profile(body):
    """What must be the same in both languages, for one section."""
    prose, code = split_code(body)
    return {
        "code block lines": code_commands(code),
        "commands in the text": inline_commands(prose),
        "numbers": numbers(body),
        "links": set(LINK.findall(prose)) - {"README.md", "README.ja.md"},
        "markers": set(MARKER.findall(body)),
        "### subsections": len(re.findall(r"^### ", prose, re.MULTILINE)),
    }


def chapter_table(text):
    """{chapter number: modules in backticks} from the table whose first header cell is `#`."""
    rows, in_table = {}, False
    for line in split_code(text)[0].split("\n"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            in_table = False
        elif cells[0] == "#":
            in_table = True
        elif in_table and re.fullmatch(r"\d\d", cells[0]):
            rows[cells[0]] = re.findall(r"`([^`]+)`", cells[-1])
    return rows


EN_TEXT, JA_TEXT = read(EN), read(JA)
EN_SECTIONS, JA_SECTIONS = sections(EN_TEXT), sections(JA_TEXT)
PAIRS = list(zip(EN_SECTIONS, JA_SECTIONS))


# --------------------------------------------------------------------------- the parser itself
def test_parser_ignores_headings_and_comments_inside_code_blocks():
    text = "# T\n\nintro 1\n\n## A\n\n```bash\n## not a heading\nmake demo   # 10 min\n```\n\nsee `make lab`\n\n## B\nx"
    secs = sections(text)
    assert [h for h, _ in secs] == ["(title)", "A", "B"]
    p = profile(secs[1][1])
    assert p["code block lines"] == ["make demo"] and p["commands in the text"] == {"make lab"}
    assert p["numbers"] == {"10"}


def test_parser_reads_inline_commands_that_wrap_a_line():
    assert inline_commands("run `pip install torch==2.13.0 --index-url\n  https://x/whl` now") == \
        {"pip install torch==2.13.0 --index-url https://x/whl"}


# --------------------------------------------------------------------------- the two READMEs
def test_each_readme_links_to_the_other():
    assert "(README.ja.md)" in EN_TEXT and "(README.md)" in JA_TEXT


def test_both_readmes_have_the_same_number_of_sections():
    en = [h for h, _ in EN_SECTIONS]
    ja = [h for h, _ in JA_SECTIONS]
    assert len(en) == len(ja), f"README.md sections {en}\nREADME.ja.md sections {ja}"


@pytest.mark.parametrize("index", range(len(PAIRS)), ids=[en[0] for en, _ in PAIRS])
def test_section_has_the_same_commands_numbers_and_links_in_both_languages(index):
    (en_heading, en_body), (ja_heading, ja_body) = PAIRS[index]
    en, ja = profile(en_body), profile(ja_body)
    for key in en:
        assert en[key] == ja[key], (
            f"section '{en_heading}' / '{ja_heading}': {key} differ; update README.ja.md (or README.md)\n"
            f"  only in README.md:    {_only(en[key], ja[key])}\n  only in README.ja.md: {_only(ja[key], en[key])}")


def _only(a, b):
    if isinstance(a, int):
        return a
    if isinstance(a, list):
        return [x for x in a if x not in b] or (a if a != b else [])
    return sorted(a - b)


def test_both_readmes_list_the_same_make_and_minigpt_commands():
    def commands(text):
        prose, code = split_code(text)
        found = set()
        for s in inline_commands(prose) | set(code_commands(code)):
            found |= {f"make {t}" for t in re.findall(r"\bmake\s+([a-z][\w-]*)", s)}
            found |= {f"python -m minigpt {c}" for c in re.findall(r"python -m minigpt\s+([a-z][\w-]*)", s)}
        return found

    en, ja = commands(EN_TEXT), commands(JA_TEXT)
    assert en == ja, f"only in README.md: {sorted(en - ja)}; only in README.ja.md: {sorted(ja - en)}"
    assert {"make demo", "make test", "make lab", "make doctor", "python -m minigpt doctor"} <= en


def test_both_readmes_have_the_same_chapter_table():
    en, ja = chapter_table(EN_TEXT), chapter_table(JA_TEXT)
    assert en, "no chapter table (a table whose first header cell is #) in README.md"
    assert en == ja


@pytest.mark.parametrize("readme", [EN, JA], ids=["README.md", "README.ja.md"])
def test_every_chapter_notebook_is_in_the_chapter_table(readme):
    listed = set(chapter_table(read(readme)))
    notebooks = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    missing = [p.name for p in notebooks if p.name[:2] not in listed]
    assert not missing, f"{readme.name}'s chapter table has no row for {missing}"


# --------------------------------------------------------------------------- commands that exist
def _make_targets():
    text = read(ROOT / "Makefile")
    return set(re.findall(r"^([a-z][\w-]*):", text, re.MULTILINE))


@pytest.mark.parametrize("readme", [EN, JA], ids=["README.md", "README.ja.md"])
def test_readme_names_only_existing_make_targets_and_minigpt_commands(readme):
    prose, code = split_code(read(readme))
    spans = inline_commands(prose) | set(code_commands(code))
    targets = {t for s in spans for t in re.findall(r"(?:^|[\s;&(])make\s+([a-z][\w-]*)", s)}
    subcommands = {c for s in spans for c in re.findall(r"python -m minigpt\s+([a-z][\w-]*)", s)}
    assert targets <= _make_targets(), f"not in the Makefile: {sorted(targets - _make_targets())}"
    assert subcommands <= set(COMMANDS), f"not a command of python -m minigpt: {sorted(subcommands - set(COMMANDS))}"


@pytest.mark.parametrize("readme", [EN, JA], ids=["README.md", "README.ja.md"])
def test_readme_links_to_files_that_exist(readme):
    targets = [t for t in LINK.findall(read(readme)) if "://" not in t]
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, missing
