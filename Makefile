# `make test` and `make demo` each set up .venv on first use (scripts/setup_env.sh).
PY := .venv/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: env test test-fast demo clean

env:
	@bash scripts/setup_env.sh

test: env
	$(PY) -m pytest tests

test-fast: env
	$(PY) -m pytest tests -m "not slow"

demo: env
	$(PY) train_net.py --config-file configs/Synthetic/faster_rcnn_tiny_FPN_demo.yaml \
		--num-gpus 1 OUTPUT_DIR output/demo

clean:
	rm -rf output .pytest_cache
