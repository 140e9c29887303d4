"""Message templates: one Liquid environment, strict about undefined variables.

A body that names a variable the engine does not provide must fail at validation time
(static analysis) or, if data is missing at send time, fail that one send loudly rather
than text a customer "Hi , your cart…". ``default`` still works, and a missing value is
falsy in ``{% if %}``, so templates can guard optional data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from liquid import BoundTemplate, Environment, FalsyStrictUndefined
from liquid.exceptions import LiquidError

ROOTS = ("profile", "trigger", "cart", "event", "link", "flow")
LINK_FIELDS = ("short", "target")


class _Undefined(FalsyStrictUndefined):
    """Strict on output, falsy in conditions, and replaced by the ``default`` filter."""

    force_liquid_default = True


ENV = Environment(undefined=_Undefined, autoescape=False)


class RenderError(Exception):
    """A template could not be rendered with the data at hand (e.g. a missing variable)."""


@dataclass(frozen=True)
class Problem:
    """A template problem at character ``offset`` of its source."""

    offset: int
    message: str


@lru_cache(maxsize=4096)
def compile_template(source: str) -> BoundTemplate:
    """Parse once per distinct source (flow reloads reuse the cache); LiquidError if invalid."""
    return ENV.from_string(source)


def render(source: str, context: Mapping[str, Any]) -> str:
    try:
        return compile_template(source).render(**context)
    except LiquidError as exc:
        raise RenderError(getattr(exc, "message", None) or str(exc).splitlines()[0]) from exc


def check(source: str) -> list[Problem]:
    """Syntax errors, variables outside :data:`ROOTS` or ``link.short/target``, unknown filters."""
    try:
        template = compile_template(source)
    except LiquidError as exc:
        token = getattr(exc, "token", None)
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        offset = getattr(token, "start_index", 0)
        return [Problem(offset if offset >= 0 else len(source), f"Liquid syntax error: {message}")]
    analysis = template.analyze()
    problems = []
    for root, uses in analysis.globals.items():
        for use in uses:
            name = ".".join(str(s) for s in use.segments)
            if root not in ROOTS:
                problems.append(Problem(use.span.index, f"undefined variable '{name}' in template "
                                        f"(use {', '.join(r + '.' for r in ROOTS)})"))
            elif root == "link" and (len(use.segments) < 2 or use.segments[1] not in LINK_FIELDS):
                problems.append(Problem(use.span.index, f"undefined variable '{name}' "
                                        "(link has only link.short and link.target)"))
    for name, spans in analysis.filters.items():
        if name not in ENV.filters:
            problems.extend(Problem(s.index, f"unknown Liquid filter '{name}'") for s in spans)
    return sorted(problems, key=lambda p: p.offset)


def uses_root(source: str, root: str) -> bool:
    """Whether a (valid) template reads any variable under ``root``."""
    return root in compile_template(source).analyze().globals
