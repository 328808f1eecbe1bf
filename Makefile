# `make test` and `make demo` each set up .venv on first use (scripts/setup_env.sh).
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: env env-modern lint format test test-fast test-modern demo bench clean

env:
	@bash scripts/setup_env.sh

# The modern stack (Python 3.11, current torch, NumPy 2, Detectron2 built from source).
env-modern:
	@bash scripts/setup_env.sh modern

# ruff's linter and formatter, configured in pyproject.toml; `make format` applies both.
lint: env
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: env
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: env
	$(PY) -m pytest tests

test-modern: env-modern
	.venv-modern/bin/python -m pytest tests

test-fast: env
	$(PY) -m pytest tests -m "not slow"

# The demo: train + COCO AP + detections drawn on 3 val images (scripts/demo.sh, docs/demo.md);
# DEMO_CONFIG=configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml for the from-scratch one.
demo: env
	PY=$(PY) bash scripts/demo.sh

# The accuracy + speed benchmark suite (not part of CI; hours on a CPU). BENCH_ARGS: see
# `benchmarks/suite.py --help`, e.g. make bench BENCH_ARGS="--jobs 2".
bench: env
	$(PY) benchmarks/suite.py $(BENCH_ARGS)

clean:
	rm -rf output .pytest_cache
