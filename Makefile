# smsflow developer entry points. Everything installs into ./.venv and deploy/kafka/.cache.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-unit test-integration bench broker-start broker-stop clean

$(BIN)/smsflow: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(BIN)/smsflow

setup: $(BIN)/smsflow  ## Python venv + pinned packages + Kafka broker jars (Maven)
	$(BIN)/smsflow broker fetch

demo: setup  ## the main job on local defaults: broker, worker, sandbox, a simulated day, report
	$(BIN)/smsflow demo

test: setup  ## the whole suite: unit tests and integration tests on the real broker
	$(BIN)/pytest -q -p no:cacheprovider

test-unit: setup
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

test-integration: setup
	$(BIN)/pytest -q -p no:cacheprovider tests/integration

bench: setup  ## benchmarks, printed as tables with ratios against a same-run baseline
	$(BIN)/python -m bench.run_all

broker-start: setup
	$(BIN)/smsflow broker start

broker-stop:
	$(BIN)/smsflow broker stop

clean:
	rm -rf $(VENV) .smsflow deploy/kafka/.cache
