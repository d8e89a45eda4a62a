# Two commands do everything on a fresh machine:
#   make demo   train a tokenizer and a small Japanese GPT, then sample from it (CPU, < 10 min)
#   make test   every test: the package, the solution notebooks (strict) and the chapters (lax)
# Both create .venv and install what they need the first time.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch 2.13.0 has a CPU wheel on the course machines. On a CUDA or Apple-silicon laptop
# you may pick another build, e.g. `make test TORCH=torch==2.13.0+cu126` (see README).
TORCH  ?= torch==2.13.0
JOBS   ?= 2
STAMP  := $(VENV)/.installed

.PHONY: demo capstone test test-fast test-notebooks exercises notebooks lab doctor bench gpu-check clean-venv

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m minigpt demo

# The capstone recipe (chapter 12): Tatoeba, SentencePiece 8k, a fixed number of steps on 2 CPU threads
# (experiments/capstone.py; offline: MINIGPT_TATOEBA_URL=file:///path/to/jpn_sentences.tsv.bz2).
capstone: $(STAMP)
	$(BIN)/python experiments/capstone.py --threads 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile tests
	$(MAKE) --no-print-directory test-notebooks

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile -m "not slow" tests

# solutions/ includes the Japanese edition, solutions/ja/ (pytest collects subfolders), run strictly like the English one.
# chapters/ja/ is not run again: its code cells equal chapters/' (tests/test_japanese_edition.py), only the markdown differs.
test-notebooks: $(STAMP)
	MINIGPT_CI=1 $(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile -p no:randomly --nbval --nbval-sanitize-with tools/nbval_sanitize.cfg --nbval-current-env solutions
	MINIGPT_CI=1 $(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env --ignore=chapters/ja chapters

exercises: $(STAMP)
	$(BIN)/python tools/make_exercises.py

notebooks: $(STAMP)
	$(BIN)/python tools/run_notebooks.py
	$(BIN)/python tools/make_exercises.py
	$(BIN)/python tools/make_japanese.py
	$(BIN)/python tools/run_notebooks.py solutions/ja/*.ipynb

# The learner's language: MINIGPT_LANG=ja (or a ja locale) opens the Japanese edition, chapters/ja.
lab: $(STAMP)
	$(BIN)/jupyter lab $$($(BIN)/python -c "from minigpt.i18n import lang; print('chapters/ja' if lang() == 'ja' else 'chapters')")

doctor: $(STAMP)
	$(BIN)/python -m minigpt doctor

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# On a machine with a CUDA GPU (at most 10 minutes): gpu tests, checkers, notebooks and a gpu-base
# training on CUDA; writes experiments/results/gpu_check_<gpu>.json. `--dry-run` checks it anywhere.
gpu-check: $(STAMP)
	$(BIN)/python tools/gpu_check.py

clean-venv:
	rm -rf $(VENV)
