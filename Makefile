# The two commands of the README: `make demo` (the main job) and `make test` (the tests).
# Each creates ./.venv and installs the package with its pinned dependencies when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench lab clean clean-notebooks git-filter figures

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(MAKE) --no-print-directory git-filter
	touch $(STAMP)

# In a git clone: notebooks are committed without outputs, whatever JupyterLab saved. The
# clean filter strips outputs, execution counts and the kernel's language_info (Python's version,
# which Lab writes on opening) from what `git add` stores (cell ids kept); the working copy keeps
# them. .gitattributes names the filter; outside a clone this does nothing.
NBSTRIP := $(abspath $(BIN))/python -m nbstripout --keep-id --extra-keys metadata.language_info
git-filter:
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '$(NBSTRIP)' && \
	  git config filter.nbstripout.smudge cat && \
	  git config diff.ipynb.textconv '$(NBSTRIP) -t' && \
	  echo "git: notebooks are stripped of outputs when added (filter nbstripout)"; fi

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/doodle run params/smoke.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# the README's figures (docs/figures/), from a fresh smoke run
figures: demo
	$(BIN)/doodle figures outputs/smoke --readme README.md

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf outputs .pytest_cache benchmarks/_work

# notebooks are committed without outputs or execution counts
clean-notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --clear-output --inplace notebooks/*.ipynb
