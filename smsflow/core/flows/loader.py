"""Load flow files: parse, validate, build. A folder loads all or reports every error.

Errors never raise: they come back as :class:`FlowError` values (file, line, column,
message), so the CLI can print them all and a worker can refuse to start on any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from smsflow.core.flows.model import Flow, build_flow
from smsflow.core.flows.source import FlowError, parse
from smsflow.core.flows.validate import check_flow, check_schema

SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadResult:
    flows: list[Flow] = field(default_factory=list)
    errors: list[FlowError] = field(default_factory=list)
    files: int = 0
    id_at: dict[str, FlowError] = field(default_factory=dict)  # flow id -> where it is defined

    @property
    def ok(self) -> bool:
        return not self.errors

    def merge(self, other: LoadResult) -> None:
        """Add another file's result; a flow id seen before is an error at its second place."""
        self.files += other.files
        self.errors += other.errors
        for flow in other.flows:
            first, here = self.id_at.get(flow.id), other.id_at[flow.id]
            if first is None:
                self.flows.append(flow)
                self.id_at[flow.id] = here
            else:
                self.errors.append(FlowError(here.path, here.line, here.column,
                                             f"duplicate flow id '{flow.id}' (first defined at "
                                             f"{first.path}:{first.line}:{first.column})"))


def load_text(text: str, path: str = "<flow>") -> LoadResult:
    """One flow from YAML text; ``path`` only names the file in errors."""
    source = parse(text, path)
    result = LoadResult(errors=list(source.errors), files=1)
    if source.data is None and not result.errors:  # "---", "~", "null": no flow in it
        result.errors.append(FlowError(path, 1, 1, "empty flow file"))
    if source.data is None or result.errors:
        return result
    result.errors += sorted(check_schema(source))
    if result.errors:
        return result
    flow = build_flow(source.data, path)
    result.errors += check_flow(source, flow)
    if not result.errors:
        result.flows.append(flow)
        result.id_at[flow.id] = source.error(("id",), "")
    return result


def load_file(path: str | Path) -> LoadResult:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LoadResult(errors=[FlowError(str(path), 1, 1, f"cannot read file: {exc}")], files=1)
    return load_text(text, str(path))


def load_dir(directory: str | Path) -> LoadResult:
    """Every ``*.yaml``/``*.yml`` file in ``directory`` (sorted, not recursive)."""
    directory = Path(directory)
    result = LoadResult()
    if not directory.is_dir():
        result.errors.append(FlowError(str(directory), 1, 1, "not a directory"))
        return result
    for path in sorted(p for p in directory.iterdir() if p.suffix in SUFFIXES and p.is_file()):
        result.merge(load_file(path))
    result.errors.sort()
    return result
