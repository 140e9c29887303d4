"""Flow validation: the JSON Schema, then checks a schema cannot express.

Every problem becomes a :class:`FlowError` pointing at the YAML line and column a
marketer must edit, with a plain message (jsonschema's wording is rewritten).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from smsflow.core.flows import render
from smsflow.core.flows.conditions import ROOTS
from smsflow.core.flows.durations import parse_duration
from smsflow.core.flows.model import (EXIT, PRIORITY_MAX, PRIORITY_MIN, STEP_KINDS, EventRule,
                                      Flow, Priority, SendStep, SplitStep, WaitStep,
                                      WaitUntilStep)
from smsflow.core.flows.source import FlowError, Source, Where
from smsflow.paths import schema_path

__all__ = ["FlowError", "SCHEMA_PATH", "check_flow", "check_schema"]

SCHEMA_PATH = schema_path("flow.schema.json")
_URL = re.compile(r"https?://\S+")
_JSON_WORDS = {"object": "a mapping", "array": "a list", "string": "text",
               "boolean": "true or false", "integer": "a whole number", "number": "a number",
               "null": "empty"}
_PY_WORDS = {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "the number",
             float: "the number", type(None): "an empty value"}


@lru_cache(maxsize=1)
def _schema() -> tuple[Draft202012Validator, dict[str, Any]]:
    schema = json.loads(SCHEMA_PATH.read_text())
    return Draft202012Validator(schema), schema["$defs"]


def _def_name(error: ValidationError) -> str | None:
    """Which named definition of the schema an error's subschema is (for tailored messages)."""
    for name, definition in _schema()[1].items():
        if error.schema == definition:
            return name
    return None


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    """Replace an anyOf failure by the failures of the alternative the author clearly meant."""
    if error.validator != "anyOf" or not error.context:
        yield error
        return
    meant = [c for c in error.context
             if not (c.validator == "type" and c.absolute_path == error.absolute_path)]
    if not meant:
        yield error
    for sub in meant:
        yield from _leaves(sub)


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _field(where: Where) -> str:
    named = [str(p) for p in where if isinstance(p, str)]
    return named[-1] if named else "flow"


def _unknown(definition: str | None, key: str, allowed: list[str]) -> str:
    if definition == "conditions":
        return (f"unknown condition path '{key}' (paths start with "
                f"{', '.join(r + '.' for r in ROOTS)}; combine with any/all/not)")
    if "gte" in allowed:
        return f"unknown operator '{key}' (use {', '.join(allowed)})" + _suggest(key, allowed)
    return f"unknown field '{key}'" + _suggest(key, allowed)


def _translate(source: Source, error: ValidationError) -> list[FlowError]:
    value: Any = error.instance
    where, kind = tuple(error.absolute_path), error.validator
    schema: Any = error.schema
    expected_value: Any = error.validator_value
    name = _def_name(error)
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        extra = [k for k in value if k not in allowed and not any(
            re.search(p, str(k)) for p in schema.get("patternProperties", {}))]
        return [source.error((*where, k), _unknown(name, str(k), allowed), key=True) for k in extra]
    if kind == "required":
        missing = [k for k in expected_value if k not in value]
        return [source.error(where, f"missing required field '{k}' in {_field(where)}")
                for k in missing]
    if kind == "oneOf" and isinstance(value, dict) and "id" in value:
        found = [k for k in STEP_KINDS if k in value]
        return [source.error(where, f"step '{value.get('id')}' needs exactly one of "
                             f"{', '.join(STEP_KINDS)} (found {', '.join(found) or 'none'})")]
    if kind in ("pattern", "type") and name in ("duration", "hhmm"):
        if name == "hhmm":
            return [source.error(where, f"bad time {value!r} (use a quoted 24-hour \"HH:MM\")")]
        try:
            parse_duration(value)
        except ValueError as exc:
            return [source.error(where, str(exc))]
    if kind == "anyOf" and name == "priority":
        return [source.error(where, f"priority must be a whole number 0-1000 or "
                             f"{{base: N, rules: [{{when: {{...}}, add: N}}]}} (got {value!r})")]
    if kind == "pattern":
        return [source.error(where, f"bad {_field(where)} '{value}' (lowercase letters, digits "
                             "and _, starting with a letter)")]
    if kind == "not" and _field(where) == "id":
        return [source.error(where, "'exit' is reserved (it ends the flow); pick another step id")]
    if kind == "enum":
        options = ", ".join(str(o) for o in expected_value)
        return [source.error(where, f"'{value}' is not one of: {options}"
                             + _suggest(str(value), [str(o) for o in expected_value]))]
    if kind == "type":
        expected = expected_value if isinstance(expected_value, list) else [expected_value]
        words = " or ".join(dict.fromkeys(_JSON_WORDS[t] for t in expected))
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        return [source.error(where, f"{_field(where)} must be {words} "
                             f"(got {_PY_WORDS.get(type(value), 'a value')} {shown})")]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bounds = {"minimum": "at least", "maximum": "at most",
                  "exclusiveMinimum": "more than", "exclusiveMaximum": "less than"}
        return [source.error(where, f"{_field(where)} must be {bounds[kind]} "
                             f"{expected_value} (got {value})")]
    if kind in ("minItems", "minProperties"):
        return [source.error(where, f"{_field(where)} needs at least {expected_value} "
                             f"{'item' if kind == 'minItems' else 'entry'}"
                             f"{'s' if expected_value > 1 else ''}")]
    return [source.error(where, f"{_field(where)}: {error.message}")]


def check_schema(source: Source) -> list[FlowError]:
    """Errors of the data against ``schemas/flow.schema.json``."""
    validator = _schema()[0]
    errors: list[FlowError] = []
    for error in validator.iter_errors(source.data):
        for leaf in _leaves(error):
            errors.extend(_translate(source, leaf))
    return errors


# --- semantic checks on a built flow --------------------------------------------------------

def _at(step_index: int, *rest: Any) -> Where:
    return ("steps", step_index, *rest)


def _check_steps(source: Source, flow: Flow) -> Iterator[FlowError]:
    seen: set[str] = set()
    for step in flow.steps:
        if step.id in seen:
            yield source.error(_at(step.index, "id"), f"duplicate step id '{step.id}'")
        seen.add(step.id)
        for place, target in step.refs:
            if target != EXIT and flow.step(target) is None:
                yield source.error(_at(step.index, *place), f"unknown step '{target}'"
                                   + _suggest(target, [s.id for s in flow.steps]))


def _check_graph(source: Source, flow: Flow) -> Iterator[FlowError]:
    """Every step reachable from the first; no loops (a step runs at most once per enrollment)."""
    state: dict[str, str] = {}  # id -> "open" | "done"

    def visit(step_id: str) -> Iterator[FlowError]:
        state[step_id] = "open"
        step = flow.step(step_id)
        if step is None:
            state[step_id] = "done"
            return
        for target in step.targets():
            if target is None or flow.step(target) is None:
                continue
            if state.get(target) == "open":
                yield source.error(_at(step.index, "id"), f"step '{step_id}' leads back to "
                                   f"'{target}': flows must not loop (step ids key each send)")
            elif target not in state:
                yield from visit(target)
        state[step_id] = "done"

    yield from visit(flow.first)
    for step in flow.steps:
        if step.id not in state:
            yield source.error(_at(step.index, "id"), f"step '{step.id}' is unreachable "
                               "(no step leads to it)")


def _check_template(source: Source, where: Where, text: str) -> Iterator[FlowError]:
    for problem in render.check(text):
        yield source.error(where, problem.message, offset=problem.offset)


def _check_send(source: Source, step: SendStep) -> Iterator[FlowError]:
    at = _at(step.index, "send")
    body_errors = list(_check_template(source, (*at, "body"), step.body))
    yield from body_errors
    if step.link:
        yield from _check_template(source, (*at, "link"), step.link)
    for i, url in enumerate(step.media_urls):
        yield from _check_template(source, (*at, "media_urls", i), url)
    links = len(_URL.findall(step.body)) + (1 if step.link else 0)
    if links > 1:
        yield source.error((*at, "body"), "a send step carries one link: put the call-to-action "
                           "URL in 'link' and write {{ link.short }} in the body")
    elif not body_errors and step.link and not render.uses_root(step.body, "link"):
        yield source.error((*at, "link"),
                           "the link is never used: write {{ link.short }} in the body")
    elif not body_errors and not step.link and render.uses_root(step.body, "link"):
        yield source.error((*at, "body"), "the body uses link.* but the step has no 'link'")
    if step.channel == "mms" and not step.media_urls:
        yield source.error((*at, "channel"), "an mms step needs media_urls")
    if step.channel == "sms" and step.media_urls:
        yield source.error((*at, "media_urls"), "media_urls need channel: mms")


def _check_entities(source: Source, flow: Flow) -> Iterator[FlowError]:
    if flow.entity_key:
        return
    places: list[tuple[Where, EventRule]] = [(("exit", "events", i), r)
                                             for i, r in enumerate(flow.exits)]
    places += [(_at(s.index, "wait_until"), s.rule)
               for s in flow.steps if isinstance(s, WaitUntilStep)]
    places += [(("goal",), flow.goal)] if flow.goal else []
    for where, rule in places:
        if rule.match_entity:
            yield source.error((*where, "match_entity"), "match_entity needs the flow's entity_key")


def _check_flow_rules(source: Source, flow: Flow) -> Iterator[FlowError]:
    waits = [s for s in flow.steps if isinstance(s, (WaitStep, WaitUntilStep))]
    if flow.category == "marketing" and waits and not flow.exits:
        yield source.error(_at(waits[0].index), f"marketing flow waits (step '{waits[0].id}') but "
                           "has no exit events: add exit: {events: [{event: Order Placed}]} so "
                           "customers who buy stop getting texts")
    reentry = (source.data.get("reentry") or {})
    if "cooldown" in reentry and reentry.get("mode") != "after":
        yield source.error(("reentry", "cooldown"), "cooldown only applies with mode: after")
    for step in flow.steps:
        if isinstance(step, SplitStep):
            names = [v.name for v in step.variants]
            for i, variant_name in enumerate(names):
                if variant_name in names[:i]:
                    yield source.error(_at(step.index, "split", "variants", i, "name"),
                                       f"duplicate variant '{variant_name}'")
        if isinstance(step, SendStep):
            yield from _check_send(source, step)


def _check_priorities(source: Source, flow: Flow) -> Iterator[FlowError]:
    """A priority's rules must not be able to leave 0-1000 (clamping would hide a mistake:
    two rules that add 600 each can no longer tell their carts apart)."""
    places: list[tuple[Where, Priority]] = []
    if flow.priority_rules:
        places.append((("priority",), Priority(base=flow.priority, rules=flow.priority_rules)))
    for step in flow.steps:
        if isinstance(step, SendStep) and step.priority_rules and step.priority is not None:
            places.append((_at(step.index, "send", "priority"),
                           Priority(base=step.priority, rules=step.priority_rules)))
    for where, spec in places:
        low, high = spec.reach
        if high > PRIORITY_MAX:
            yield source.error(where, f"priority can reach {high} (base {spec.base} plus every "
                               f"positive rule); keep base + rules within 0-{PRIORITY_MAX}")
        if low < PRIORITY_MIN:
            yield source.error(where, f"priority can fall to {low} (base {spec.base} plus every "
                               f"negative rule); keep base + rules within 0-{PRIORITY_MAX}")


def check_flow(source: Source, flow: Flow) -> list[FlowError]:
    """Semantic errors of a schema-valid flow, in file order."""
    errors = list(_check_steps(source, flow))
    if not errors:  # the graph walk needs unique ids and valid references
        errors.extend(_check_graph(source, flow))
    errors += [*_check_entities(source, flow), *_check_flow_rules(source, flow),
               *_check_priorities(source, flow)]
    return sorted(set(errors))
