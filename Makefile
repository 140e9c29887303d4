# smsflow developer entry points. Everything installs into ./.venv, deploy/kafka/.cache and
# deploy/.cache (promtool, pip-tools).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := deploy/.cache
# promtool (alert-rule unit tests), built from source through the Go module proxy, once.
# Without the cloud service-discovery plugins (static, file, http and DNS stay): 5 min instead
# of 7+ on 2 cores from an empty Go cache, ~35 s with a warm one.
PROMTOOL_VERSION := v0.316.0
PROMTOOL_TAGS := remove_all_sd,enable_dns_sd
PROMTOOL := $(CACHE)/bin/promtool
PIP_TOOLS_VERSION := 7.6.2
PIP_TOOLS := $(CACHE)/pip-tools
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --build-deps-for wheel \
              --no-emit-index-url --no-emit-find-links

.PHONY: setup demo typecheck test test-unit test-integration bench broker-start broker-stop lock \
        prometheusrule clean

# Locked build tools first (setuptools, wheel: the lock's own entries, hashes checked), then
# every package of requirements-dev.lock (all extras, every transitive pin, hashes checked)
# and smsflow itself, all built without build isolation, so nothing unpinned is downloaded
# (opentracing ships no wheel and is built here with the locked setuptools).
BUILD_TOOLS := awk '/^[a-z0-9]/ {keep = /^(setuptools|wheel)==/} keep'
$(BIN)/smsflow: pyproject.toml requirements-dev.lock
	$(PY) -m venv $(VENV)
	$(BUILD_TOOLS) requirements-dev.lock > $(VENV)/build-tools.lock
	$(BIN)/pip install -q --require-hashes --no-deps -r $(VENV)/build-tools.lock
	$(BIN)/pip install -q --require-hashes --no-deps --no-build-isolation -r requirements-dev.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(BIN)/smsflow

$(PROMTOOL):
	@command -v go >/dev/null || { echo "make setup: Go is needed to build promtool $(PROMTOOL_VERSION) (alert-rule tests)" >&2; exit 1; }
	GOBIN=$(abspath $(CACHE)/bin) go install -tags $(PROMTOOL_TAGS) github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

setup: $(BIN)/smsflow $(PROMTOOL)  ## venv from the lock file + promtool + Kafka broker jars (Maven)
	$(BIN)/smsflow broker fetch

demo: setup  ## the main job on local defaults: broker, worker, sandbox, a simulated day, report
	$(BIN)/smsflow demo

typecheck: setup  ## mypy, strict on smsflow/core (pyproject.toml [tool.mypy])
	$(BIN)/mypy

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

# Re-resolve every dependency (newest versions allowed by pyproject.toml) into the two lock
# files: requirements.lock (the worker image: no extras) and requirements-dev.lock (all extras:
# report, test). Review the diff, then `make setup`. The locks are for CPython 3.11 on Linux.
lock:
	test -x $(PIP_TOOLS)/bin/pip-compile || { $(PY) -m venv $(PIP_TOOLS) && $(PIP_TOOLS)/bin/pip install -q pip-tools==$(PIP_TOOLS_VERSION); }
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_TOOLS)/bin/pip-compile $(LOCK_FLAGS) \
	    --output-file requirements.lock pyproject.toml
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_TOOLS)/bin/pip-compile $(LOCK_FLAGS) \
	    --extra report --extra test --output-file requirements-dev.lock pyproject.toml

# deploy/k8s/prometheusrule.yaml from deploy/prometheus/alerts.yml
prometheusrule: setup
	$(BIN)/python deploy/prometheus/to_prometheusrule.py

clean:
	rm -rf $(VENV) .smsflow deploy/kafka/.cache $(CACHE)
