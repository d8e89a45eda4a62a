"""pytest settings for the whole repo; they matter for the notebooks (`make test-notebooks`:
solutions/ strictly, chapters/ laxly, both by nbval).

nbval starts each notebook's kernel from this process, so the kernel inherits this environment:
minigpt.notebook.NOTEBOOK_ENV, the same one tools/run_notebooks.py used to make the stored outputs
(one torch thread, fixed string hashing, no progress bars). See docs/ENGINE.md.
"""

import os

from minigpt.notebook import notebook_env

# Chapter 12 reads Tatoeba: on the course machines through the offline mirror beside the repository
# (../shared/data/tatoeba), as tests/test_datasets.py does; elsewhere MINIGPT_TATOEBA_URL or a download.
for _key, _value in notebook_env(os.path.dirname(os.path.abspath(__file__))).items():
    os.environ.setdefault(_key, _value)



# Stored outputs are compared exactly, except where they cannot be the same: a cell that prints
# CPU-dependent numbers, in a notebook executed on other float code (an Intel CPU's MKL rounds otherwise
# than an AMD one's). Such cells still run, and an error in one still fails; the summary says how many
# were not compared, and why. See docs/ENGINE.md ("Determinism").
def pytest_collection_modifyitems(config, items):
    from minigpt.notebook import compares_outputs, float_code

    here = float_code()
    for item in items:
        nb, cell, options = getattr(item.parent, "nb", None), getattr(item, "cell", None), getattr(item, "options", None)
        if nb is None or cell is None or not options or not options.get("check"):
            continue  # not a notebook cell, or nbval does not compare it anyway (--nbval-lax)
        if not compares_outputs(nb.metadata, cell.get("id"), here):
            options["check"] = False


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # the controller's own count: under pytest-xdist the workers collect, not this process
    if not getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False):
        return
    import json
    from pathlib import Path

    from minigpt.notebook import compares_outputs, float_code

    here, relaxed = float_code(), {}
    for arg in config.args:
        path = Path(arg.split("::")[0])
        for nb_path in ([path] if path.suffix == ".ipynb" else sorted(path.rglob("*.ipynb")) if path.is_dir() else []):
            try:
                nb = json.loads(nb_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            cells = [c.get("id") for c in nb.get("cells", []) if c.get("cell_type") == "code"]
            n = sum(not compares_outputs(nb.get("metadata", {}), cid, here) for cid in cells)
            if n:
                relaxed.setdefault(nb["metadata"]["minigpt"]["outputs_made_on"], []).append(f"{nb_path} ({n})")
    for made_on, notebooks in relaxed.items():
        terminalreporter.write_line(
            f"notebooks made on '{made_on}', run on '{here}': their CPU-dependent cells ran without comparing "
            f"their numbers: " + ", ".join(notebooks))
