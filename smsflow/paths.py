"""Where the JSON Schemas (the public contract) live, for a checkout or an installed wheel.

In a checkout they are the repo's top-level ``schemas/``; a wheel installs the same files
under ``<prefix>/share/smsflow/schemas`` (see ``[tool.setuptools.data-files]``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "schemas",
    Path(sys.prefix) / "share" / "smsflow" / "schemas",
)


def schema_path(name: str) -> Path:
    for folder in _CANDIDATES:
        path = folder / name
        if path.exists():
            return path
    raise FileNotFoundError(f"schema {name} not found in {', '.join(map(str, _CANDIDATES))}")
