"""Property: any YAML text -- the example flows and policies mutated, broken or made
hostile -- loads into flows/a policy or into errors that name the file and a line, never
an exception and never a traceback from ``smsflow flows validate``."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smsflow.cli import main as cli_main
from smsflow.core.flows.loader import load_text
from smsflow.core.policy import PolicyError, parse_policy_text
from tests.fuzz import report
from tests.fuzz.report import examples
from tests.fuzz.yaml_strategies import billion_laughs, flow_texts, policy_texts, yaml_files

pytestmark = pytest.mark.fuzz

FLOWS = flow_texts()
POLICIES = policy_texts()
ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): \S")
SLOW = 5.0  # seconds one file may take to load, whatever it contains


def lines_of(text: str) -> int:
    return text.count("\n") + 1


def check_flow_errors(text: str, path: str) -> tuple[int, int]:
    started = time.perf_counter()
    result = load_text(text, path)
    assert time.perf_counter() - started < SLOW, "loading one flow file took too long"
    for error in result.errors:
        assert error.path == path
        assert 1 <= error.line <= lines_of(text) + 1 and error.column >= 1, str(error)
        match = ERROR.match(str(error))
        assert match and match["path"] == path, str(error)
    assert result.ok == (len(result.flows) == 1)
    return len(result.flows), len(result.errors)


@settings(max_examples=examples(250), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=yaml_files(FLOWS))
def test_any_flow_file_loads_or_names_file_line_and_column(pytestconfig, text):
    flows, errors = check_flow_errors(text, "flows/fuzzed.yaml")
    report.record(pytestconfig, "fuzz: flow files (loader + validator)", inputs=1,
                  processed=flows, dead_lettered=int(errors > 0), valid=0,
                  reasons=Counter({"with errors": int(errors > 0), "loaded": flows}))


@settings(max_examples=examples(150), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=yaml_files(POLICIES))
def test_any_policy_file_loads_or_names_file_and_line(pytestconfig, text):
    started = time.perf_counter()
    try:
        parse_policy_text(text, "deploy/fuzzed.yaml")
        loaded = 1
    except PolicyError as exc:
        loaded = 0
        assert exc.source == "deploy/fuzzed.yaml"
        assert isinstance(exc.line, int) and 1 <= exc.line <= lines_of(text) + 1, str(exc)
        assert str(exc).startswith(f"deploy/fuzzed.yaml:{exc.line}"), str(exc)
    assert time.perf_counter() - started < SLOW, "loading one policy file took too long"
    report.record(pytestconfig, "fuzz: policy files", inputs=1, processed=loaded,
                  dead_lettered=1 - loaded, reasons=Counter({"PolicyError": 1 - loaded}))


@settings(max_examples=examples(25), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(files=st.lists(st.one_of(yaml_files(FLOWS), st.binary(max_size=64)), min_size=1, max_size=4))
def test_flows_validate_exits_1_with_file_line_col_never_a_traceback(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("flows")
    for i, content in enumerate(files):
        path = folder / f"f{i}.yaml"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli_main(["flows", "validate", str(folder)])  # an exception fails the test
    lines = err.getvalue().splitlines()
    if code == 0:
        assert lines == [] and out.getvalue().startswith("ok: ")
        return
    assert code == 1
    *errors, summary = lines
    assert re.fullmatch(r"\d+ error\(s\) in \d+ file\(s\)", summary), summary
    for line in errors:
        match = ERROR.match(line)
        assert match and Path(match["path"]).parent == folder, line


def test_the_cli_on_a_folder_of_hostile_flow_files(tmp_path, pytestconfig):
    """The real command in a subprocess: exit 1, every error as file:line:col, no traceback,
    every broken file named, within seconds."""
    files = {
        "laughs.yaml": billion_laughs(9).encode(),          # 9^9 values if expanded
        "recursive.yaml": b"a: &a [*a]\nid: x\n",
        "list_key.yaml": b"? [a, b]\n: c\nid: x\n",
        "deep.yaml": b"id: deep\nsteps: " + b"[" * 5000 + b"]" * 5000 + b"\n",
        "binary.yaml": b"\xff\xfe\x00id: x\n",
        "empty.yaml": b"",
        "tab.yaml": b"id: x\n\tcategory: marketing\n",
        "two_docs.yaml": b"id: a\n---\nid: b\n",
        "python_tag.yaml": b"!!python/object/apply:os.system [echo pwned]\n",
        "liquid.yaml": FLOWS[0][1].replace("{{ link.short }}", "{{ link.short ", 1).encode(),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    started = time.perf_counter()
    smsflow = Path(sys.executable).parent / "smsflow"
    done = subprocess.run([str(smsflow), "flows", "validate", str(tmp_path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    seconds = time.perf_counter() - started
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-3000:]
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    *errors, summary = done.stderr.splitlines()
    assert summary == f"{len(errors)} error(s) in {len(files)} file(s)"
    named = {Path(ERROR.match(line)["path"]).name for line in errors if ERROR.match(line)}
    assert all(ERROR.match(line) for line in errors), [line for line in errors if not ERROR.match(line)]
    assert named == set(files), set(files) - named
    assert seconds < 60
    report.record(pytestconfig, "CLI: flows validate on hostile files", inputs=len(files),
                  dead_lettered=len(named), seconds=seconds,
                  note=f"exit 1, {len(errors)} errors as file:line:col, no traceback")


@pytest.mark.parametrize("text", [billion_laughs(9), "a: &a [*a]\n", "? [a]\n: b\n",
                                  "x: " + "[" * 5000 + "]" * 5000 + "\n"],
                         ids=["billion-laughs", "recursive-alias", "list-key", "deep"])
def test_hostile_yaml_in_a_policy_file_is_a_policy_error(text):
    started = time.perf_counter()
    with pytest.raises(PolicyError) as raised:
        parse_policy_text(text, "policy.yaml")
    assert raised.value.line is not None and str(raised.value).startswith("policy.yaml:")
    assert time.perf_counter() - started < SLOW
