"""A flow file as text, data and YAML nodes, so every error can name its line and column.

The YAML is read with YAML 1.2-style scalars: ``21:00`` stays a string (YAML 1.1 would
make it the number 1260), ``NO`` stays a country code and ``08540`` stays a zip code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Where = tuple[Any, ...]  # a path inside a YAML document: keys and list indexes

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


@dataclass(frozen=True, order=True)
class FlowError:
    """One problem in a flow file, rendered as ``path:line:col: message`` (1-based)."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars (no sexagesimal, yes/no, octal or dates)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+)$", "-+0123456789."),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


@dataclass
class Source:
    """Parsed file: ``data`` plus the value and key node of every path (a tuple of keys/indexes)."""

    path: str
    data: Any = None
    values: dict[Where, Node] = field(default_factory=dict)
    keys: dict[Where, Node] = field(default_factory=dict)
    errors: list[FlowError] = field(default_factory=list)

    def position(self, where: Where, *, key: bool = False,
                 offset: int | None = None) -> tuple[int, int]:
        """1-based (line, column) of a path's value (or key); the nearest ancestor if absent.

        ``offset`` points inside a string value (a Liquid error); exact for plain, quoted and
        literal (``|``) scalars, the start of the value otherwise.
        """
        while where and where not in (self.keys if key else self.values):
            where, key = where[:-1], False
        node = (self.keys if key else self.values).get(where)
        if node is None:
            return 1, 1
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        if offset and isinstance(node, ScalarNode):
            return _inside(node, offset, line, col)
        return line, col

    def error(self, where: Where, message: str, *, key: bool = False,
              offset: int | None = None) -> FlowError:
        line, col = self.position(where, key=key, offset=offset)
        return FlowError(self.path, line, col, message)


def _inside(node: ScalarNode, offset: int, line: int, col: int) -> tuple[int, int]:
    text = node.value[:offset]
    if node.style == "|":
        buffer, start = node.start_mark.buffer, node.start_mark.pointer
        if buffer is None:
            return line, col
        first = buffer.index("\n", start) + 1  # content starts on the line after the indicator
        content = buffer[first:].split("\n")
        indent = next((len(s) - len(s.lstrip(" ")) for s in content if s.strip()), 0)
        return line + 1 + text.count("\n"), indent + len(text.rsplit("\n", 1)[-1]) + 1
    if "\n" in text or node.style == ">":
        return line, col
    return line, col + len(text) + (1 if node.style in ("'", '"') else 0)


MAX_VALUES = 100_000  # values of one file, an alias counted each time it is used
MAX_DEPTH = 64        # mappings and lists inside each other


class _Refused(Exception):
    """The document is not indexed (and not built): ``message`` at ``node``."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


def _index(source: Source, node: Node, where: Where, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _Refused(node, f"the file expands to more than {MAX_VALUES:,} values "
                             "(YAML aliases repeat what they name)")
    if len(where) > MAX_DEPTH:  # also a YAML alias inside what it names
        raise _Refused(node, f"nested deeper than {MAX_DEPTH} levels")
    source.values[where] = node
    if isinstance(node, MappingNode):
        seen: dict[Any, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise _Refused(key_node, "a key must be plain text, not a list or a mapping")
            name = key_node.value
            if name in seen:
                mark = key_node.start_mark
                source.errors.append(FlowError(source.path, mark.line + 1, mark.column + 1,
                                               f"duplicate key '{name}'"))
            seen[name] = key_node
            source.keys[(*where, name)] = key_node
            _index(source, value_node, (*where, name), budget)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _index(source, item, (*where, i), budget)


def parse(text: str, path: str) -> Source:
    """Compose and construct ``text``; YAML syntax errors land in ``errors`` with their marks,
    and so do documents too deep or too large to read (nesting, aliases that expand
    exponentially or name themselves, keys that are lists), which are not built."""
    source = Source(path)
    try:
        loader = _Loader(text)  # checks every character first
    except yaml.reader.ReaderError as exc:
        before = text[:exc.position]
        source.errors.append(FlowError(path, before.count("\n") + 1,
                                       len(before) - before.rfind("\n"),
                                       f"YAML syntax error: {exc.reason}"))
        return source
    try:
        node = loader.get_single_node()
        if node is None:
            source.errors.append(FlowError(path, 1, 1, "empty flow file"))
            return source
        _index(source, node, (), [MAX_VALUES])
        source.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        source.errors.append(FlowError(path, line, col, f"YAML syntax error: {problem}"))
    except _Refused as exc:
        mark = exc.node.start_mark
        source.values.clear()
        source.keys.clear()
        source.errors.append(FlowError(path, mark.line + 1, mark.column + 1, exc.message))
    except RecursionError:  # the YAML reader itself recurses per nesting level
        source.values.clear()
        source.keys.clear()
        source.errors.append(FlowError(path, loader.line + 1, loader.column + 1,
                                       f"nested deeper than {MAX_DEPTH} levels"))
    finally:
        loader.dispose()
    return source
