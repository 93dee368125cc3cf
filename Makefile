# kfp-edge: `make run` and `make test` are the two commands a newcomer needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

# `make run` shows the pipeline on the bundled sensor data, where compression has weight mass to
# work on; `kfp-edge run` alone (and the test suite) uses Iris, the field's classic example.
RUN_ARGS ?= --dataset sensor --param model=mlp --param epochs=20 \
	--param 'variants=[float32,full_int8,pruned_int8,clustered_int8,qat_int8,distilled_int8,pcqat_int8]'

.PHONY: install run lint test golden bench compile clean e2e

install: $(STAMP)

# Re-install when the project's dependency list changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/kfp-edge run $(RUN_ARGS)

# One style, enforced: the suite does not start on unformatted or unlinted code.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest $(TEST_ARGS)

# Every golden file (pipelines/golden/): compiled pipelines and components, TFJob and
# SparkApplication manifests. The one way to regenerate them; tests/test_goldens.py checks them.
golden: $(STAMP)
	$(PY) -m kfp_edge.app.golden

# Opt-in, against a real cluster (docs/deploy.md, "End-to-end test"): skipped, saying what is
# missing, unless KUBECONFIG, KF_PIPELINES_ENDPOINT and the KFP_EDGE_S3_* variables are set.
e2e: $(STAMP)
	KFP_EDGE_E2E=1 $(PY) -m pytest -rs -p no:cacheprovider tests/e2e $(TEST_ARGS)

bench: $(STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

compile: $(STAMP)
	$(VENV)/bin/kfp-edge compile -o edge_pipeline.yaml

clean:
	rm -rf $(VENV) .kfp-edge build *.egg-info
