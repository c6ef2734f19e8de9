# The two set-up commands of the README: `make quickstart` and `make test`.
# Each creates .venv, installs the project and fetches what the machine lacks (Debian packages).
VENV := .venv
PY := $(VENV)/bin/python
DIKD := $(VENV)/bin/dikd
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
APT := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: quickstart test test-variants lint setup data system-test-deps clean gpu-wheels mutation

setup: $(VENV)/.installed

# torch and torchvision are pinned to the builds that lie on this machine kind's disk.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV) || ($(APT) update -qq && $(APT) install -y -qq python3-venv \
		&& python3 -m venv $(VENV))
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

$(FMNIST):
	$(APT) update -qq && $(APT) install -y -qq dataset-fashion-mnist

data: $(FMNIST)

system-test-deps: data
	@test -d /usr/share/openclipart/png || ($(APT) update -qq && $(APT) install -y -qq openclipart-png)
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
		($(APT) update -qq && $(APT) install -y -qq postgresql)
	@test -x /usr/bin/chromium || ($(APT) update -qq && $(APT) install -y -qq chromium)

quickstart: setup data
	$(DIKD) quickstart

# One pytest-xdist worker per core, one thread each (tiny models: more threads only wait on each
# other); a test file stays on one worker, so its module fixtures are made once.
test: setup system-test-deps
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist loadfile

# The suite under other CPU kernels, as other machines run it (not part of `make test`): torch's
# scalar ATen kernels on one thread, then its AVX2 kernels (different from the default only on
# an AVX-512 machine). tests/README.md says which variants ran and passed where.
test-variants: setup system-test-deps
	ATEN_CPU_CAPABILITY=default OMP_NUM_THREADS=1 $(PY) -m pytest -q -n auto --dist loadfile
	ATEN_CPU_CAPABILITY=avx2 $(PY) -m pytest -q -n auto --dist loadfile

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) dikd.db quickstart mutants

# Mutation testing of the core (not part of `make test`; about an hour on two cores): the
# method, the schedule, the analysis and the budget logic. Configured in pyproject.toml's
# [tool.mutmut]; one worker, so that the machine stays usable. Scores: benchmarks/README.md.
MUTANTS := 'objectives._reduce.*' 'objectives._schedule.*' 'searcher.verdict.front.*' \
	'searcher.study.search.x_budget_left__mutmut_*' 'searcher.study.search.x__time_up__mutmut_*' \
	'searcher.study.search.x__wait_for_running__mutmut_*' \
	'searcher.study.search.xǁ_Objectiveǁobjective__mutmut_*' \
	'searcher.study.storage.x_count_trials__mutmut_*' 'searcher.study.storage.x__not_confirmation__mutmut_*'

mutation: setup
	$(VENV)/bin/mutmut run --max-children 1 $(MUTANTS)
	$(VENV)/bin/python benchmarks/mutation_scores.py

# Wheels for benchmarks/gpu_check.sh on GPU machines without registry access. Their image has
# torch, numpy, click, tqdm and pyyaml; the wheels of those are dropped (two versions clash).
gpu-wheels:
	rm -rf benchmarks/wheels
	$(PY) -m pip download -q -d benchmarks/wheels --python-version 3.12 --only-binary=:all: \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 --platform any optuna sqlalchemy pydantic plotly
	cd benchmarks/wheels && rm -f numpy-* packaging-* pyyaml-* click-* tqdm-* markupsafe-*
