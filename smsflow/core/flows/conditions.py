"""The condition language of flow files: dotted paths tested with a few operators.

    properties.value: {gte: 50}              # operator map (all must hold)
    profile.purchase_status: never           # scalar = eq
    profile.country: [US, CA]                # list = in
    cart.products.*.category: skincare       # '*' = any list item
    any: [{...}, {...}]   all: [...]   not: {...}

Paths are rooted at event, properties, profile, trigger or cart (see :data:`ROOTS`). A
missing value fails every test except ``ne``, ``not_in`` and ``exists: false``, so a
condition on data a producer forgot to send never sends a message by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ROOTS = ("event", "properties", "profile", "trigger", "cart")
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: object, b: object) -> bool:
    if _is_num(a) and _is_num(b):
        return float(a) == float(b)  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


def _ordered(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """Compare numbers with numbers and strings with strings; anything else is false."""
    def test(a: Any, b: Any) -> bool:
        if (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
            return fn(a, b)
        return False
    return test


def _contains(a: Any, b: Any) -> bool:
    if isinstance(a, str):
        return isinstance(b, str) and b in a
    if isinstance(a, list):
        return any(_eq(item, b) for item in a)
    if isinstance(a, Mapping):
        return b in a
    return False


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "gt": _ordered(lambda a, b: a > b),
    "gte": _ordered(lambda a, b: a >= b),
    "lt": _ordered(lambda a, b: a < b),
    "lte": _ordered(lambda a, b: a <= b),
    "in": lambda a, b: any(_eq(a, item) for item in b),
    "not_in": lambda a, b: not any(_eq(a, item) for item in b),
    "contains": _contains,
}
_NEGATIVE = ("ne", "not_in")


def resolve(ctx: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, :data:`MISSING` when absent; '*' yields a list of matches."""
    values: list[Any] = [ctx]
    multi = False
    for segment in path.split("."):
        found = []
        for value in values:
            if segment == "*":
                if isinstance(value, list):
                    found.extend(value)
            elif isinstance(value, Mapping):
                if segment in value:
                    found.append(value[segment])
            elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
                found.append(value[int(segment)])
        multi = multi or segment == "*"
        values = found
    if multi:
        return values
    return values[0] if values else MISSING


@dataclass(frozen=True, slots=True)
class Clause:
    path: str
    op: str
    value: Any

    def __call__(self, ctx: Mapping[str, Any]) -> bool:
        found = resolve(ctx, self.path)
        if "*" in self.path.split("."):
            if self.op == "exists":
                return bool(bool(found) == self.value)
            check = all if self.op in _NEGATIVE else any
            return check(self._test(v) for v in found) if found else self.op in _NEGATIVE
        if self.op == "exists":
            return bool((found is not MISSING and found is not None) == self.value)
        if found is MISSING:
            return self.op in _NEGATIVE
        return self._test(found)

    def _test(self, found: Any) -> bool:
        return _TESTS[self.op](found, self.value)


@dataclass(frozen=True, slots=True)
class Combined:
    mode: str  # "all" | "any" | "not"
    items: tuple[Callable[[Mapping[str, Any]], bool], ...]

    def __call__(self, ctx: Mapping[str, Any]) -> bool:
        if self.mode == "any":
            return any(item(ctx) for item in self.items)
        if self.mode == "not":
            return not self.items[0](ctx)
        return all(item(ctx) for item in self.items)


Predicate = Callable[[Mapping[str, Any]], bool]
ALWAYS: Predicate = Combined("all", ())


def clauses_for(path: str, test: Any) -> list[Clause]:
    """The clauses of one ``path: test`` entry (scalar = eq, list = in, map = operators)."""
    if isinstance(test, Mapping):
        return [Clause(path, op, value) for op, value in test.items()]
    if isinstance(test, list):
        return [Clause(path, "in", tuple(test))]
    return [Clause(path, "eq", test)]


def compile_conditions(spec: Mapping[str, Any] | None) -> Predicate:
    """A predicate over a context dict of :data:`ROOTS` (spec already schema-valid)."""
    if not spec:
        return ALWAYS
    items: list[Predicate] = []
    for key, test in spec.items():
        if key in ("any", "all"):
            items.append(Combined(key, tuple(compile_conditions(s) for s in test)))
        elif key == "not":
            items.append(Combined("not", (compile_conditions(test),)))
        else:
            items.extend(clauses_for(key, test))
    return items[0] if len(items) == 1 else Combined("all", tuple(items))

