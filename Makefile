# The README's two commands: `make repro` (set up, then the whole pipeline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR = false
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION ?= false

.PHONY: setup repro test lint format ui screenshots bench bench-full results clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv==0.13.9
	# Compiled once here: this environment sets PYTHONDONTWRITEBYTECODE, and without .pyc files
	# every stage and dvc call recompiles TensorFlow, MLflow and DVC (import 17 s -> 7 s).
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

repro: setup  ## download MNIST, train every model, evaluate, report
	PATH=$(abspath $(VENV))/bin:$$PATH dvc repro

test: setup  ## the whole test suite (unit + end-to-end dvc repro on a small subset), a module per core
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m pytest -n 2 --dist loadfile --durations=25

lint: setup
	$(VENV)/bin/ruff check pipeline tests tools && $(VENV)/bin/ruff format --check pipeline tests tools

format: setup
	$(VENV)/bin/ruff format pipeline tests tools && $(VENV)/bin/ruff check --fix pipeline tests tools

ui: setup  ## MLflow UI on http://127.0.0.1:5000 against the embedded store (pipeline/paths.py)
	@# Keras and matplotlib, loaded with pipeline.tracking, keep their config and font cache in
	@# the venv, not in the home folder
	@KERAS_HOME=$(abspath $(VENV))/keras MPLCONFIGDIR=$(abspath $(VENV))/matplotlib $(PY) -c 'from pipeline.entry import print_runs_url; print_runs_url("http://$(HOST):$(PORT)")'
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true $(VENV)/bin/mlflow ui --host $(HOST) --port $(PORT) $$($(PY) -c 'from pipeline import paths; \
	    print(f"--backend-store-uri sqlite:///{paths.MLFLOW_DB} --default-artifact-root {paths.MLFLOW_ARTIFACTS}")')

screenshots: setup  ## MLflow UI screenshots in docs/ (runs, confusion matrix, compare, charts; needs /usr/bin/chromium)
	$(PY) -m tools.screenshots --out docs

bench: setup  ## the benchmark (7-10 minutes on 2 idle cores); writes bench.json
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m tools.bench --json reports/bench.json

bench-full: setup  ## the benchmark plus a full dvc repro from a clean copy (60-80 minutes on 2 cores)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m tools.bench --full --json reports/bench-full.json

results: setup  ## copy reports/results.md (made by the report stage) into README.md
	$(PY) -m tools.readme

clean:
	rm -rf $(VENV)
