"""The image's inputs: lock files with every pin and hash, the report's heavy dependencies
as an extra, a build context that holds only what the Dockerfile copies, and a wheel that
installs one top-level package."""

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from smsflow.cli import main

REPO = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
REPORT_EXTRA = {"scipy", "statsmodels", "numpy", "matplotlib"}


def name_of(requirement: str) -> str:
    return re.split(r"[=<>!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def lock_entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a pip-compile --generate-hashes file."""
    entries, current = {}, None
    for line in path.read_text().splitlines():
        pin = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if pin:
            current = pin.group(1).lower().replace("_", "-")
            entries[current] = (pin.group(2), [])
        elif line.strip().startswith("--hash=sha256:") and current:
            entries[current][1].append(line.strip().split(":", 1)[1].rstrip(" \\"))
        elif line.strip() and not line.lstrip().startswith("#"):
            assert line.startswith("    "), f"{path.name}: unexpected line {line!r}"
    return entries


@pytest.mark.parametrize("lock", ["requirements.lock", "requirements-dev.lock"])
def test_locks_pin_everything_with_hashes(lock):
    text = (REPO / lock).read_text()
    assert "--find-links" not in text and "--index-url" not in text and "\n-e " not in text
    entries = lock_entries(REPO / lock)
    for name, (version, hashes) in entries.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), name
    # the build tools (installed first, then everything builds without isolation)
    assert {"setuptools", "wheel"} <= set(entries)
    # every direct dependency at exactly the version pyproject.toml pins
    for requirement in PYPROJECT["project"]["dependencies"]:
        name, version = name_of(requirement), requirement.split("==")[1]
        assert entries[name][0] == version, requirement


def test_worker_lock_has_no_extras_and_dev_lock_has_them_all():
    worker = lock_entries(REPO / "requirements.lock")
    dev = lock_entries(REPO / "requirements-dev.lock")
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {name_of(r) for r in extras["report"]} == REPORT_EXTRA
    assert not REPORT_EXTRA & {name_of(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not REPORT_EXTRA & set(worker)
    assert not {"pytest", "pandas"} & set(worker)  # pandas comes with statsmodels
    for requirement in extras["report"] + extras["test"]:
        assert dev[name_of(requirement)][0] == requirement.split("==")[1], requirement
    # the worker's pins are the dev environment's pins: tests run what the image runs
    for name, (version, _) in worker.items():
        assert dev[name][0] == version, name


def test_report_without_its_extra_says_what_to_install(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in REPORT_EXTRA else real(name, *a))
    source = tmp_path / "outcomes.jsonl"
    source.write_text("")
    assert main(["report", "--input", str(source)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["smsflow report: the report needs the optional dependencies scipy, "
                   "statsmodels, matplotlib: pip install 'smsflow[report]'"]


def test_wheel_installs_one_top_level_package(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                             "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("smsflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"smsflow"}
    assert "smsflow/streams/app.py" in names and "smsflow/agents/dispatcher.py" in names
    assert not any(n.startswith(("streams/", "agents/", "tests/")) for n in names)
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    assert zipfile.ZipFile(wheel).read(f"{dist_info}/top_level.txt").decode().split() == ["smsflow"]
    assert any(n.endswith(".data/data/share/smsflow/schemas/event.schema.json") for n in names)


# --- build context ---------------------------------------------------------------------------

def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        patterns.append((negate, line.lstrip("!").rstrip("/")))
    return patterns


def _match(pattern: str, path: str) -> bool:
    """Docker's rule: a pattern matches a path or any of its parent folders; `*` stays
    within one path element, `**` spans any number."""
    regex = "^" + re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*") \
        .replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "$"
    parts = path.split("/")
    return any(re.match(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1))


def in_context(path: str, patterns) -> bool:
    included = True
    for negate, pattern in patterns:
        if _match(pattern, path):
            included = negate
    return included


def build_context(patterns) -> tuple[list[str], int]:
    files, size = [], 0
    for root, dirs, names in os.walk(REPO):
        rel_root = os.path.relpath(root, REPO)
        rel_root = "" if rel_root == "." else rel_root + "/"
        # skip folders excluded with no exception below them (as the Docker client does)
        dirs[:] = [d for d in dirs if in_context(rel_root + d, patterns)
                   or any(neg and p.startswith(rel_root + d + "/") for neg, p in patterns)]
        for name in names:
            rel = rel_root + name
            if in_context(rel, patterns):
                files.append(rel)
                size += os.path.getsize(os.path.join(root, name))
    return files, size


def test_dockerignore_matcher_follows_docker_rules():
    patterns = [(False, "*"), (True, "smsflow"), (True, "deploy/policy.yaml"),
                (False, "**/__pycache__")]
    assert in_context("smsflow/cli.py", patterns)
    assert not in_context("smsflow/__pycache__/cli.cpython-311.pyc", patterns)
    assert in_context("deploy/policy.yaml", patterns)
    assert not in_context("deploy/Dockerfile", patterns)
    assert not in_context(".venv/bin/python", patterns)


def test_build_context_is_small_and_has_what_the_dockerfile_copies():
    patterns = dockerignore_patterns()
    files, size = build_context(patterns)
    assert size < 8 * 1024 * 1024, f"build context is {size / 1e6:.1f} MB"
    for banned in (".venv/", ".git/", "deploy/kafka/.cache/", "deploy/.cache/", "tests/",
                   ".smsflow/", "demo-output/", "bench/"):
        assert not any(f.startswith(banned) for f in files), banned
    assert not any("__pycache__" in f for f in files)
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    sources = [src for line in dockerfile.splitlines()
               if line.startswith("COPY ") and "--from=" not in line
               for src in line.split()[1:-1]]
    assert "requirements.lock" in sources and "smsflow" in sources
    for source in sources:
        matched = [f for f in files if fnmatch.fnmatch(f, source) or f.startswith(source + "/")]
        assert matched, f"COPY {source}: nothing in the build context"


def test_dockerfile_installs_from_the_lock_with_hashes():
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert "pip install --require-hashes --no-deps --no-build-isolation -r requirements.lock" in dockerfile
    assert "pip install --no-deps --no-build-isolation ." in dockerfile
    assert "tomllib" not in dockerfile  # no longer reads unpinned dependencies from pyproject
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes --no-deps --no-build-isolation -r requirements-dev.lock" in makefile
