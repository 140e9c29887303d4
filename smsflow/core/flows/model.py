"""Parsed flows: immutable objects the engine runs, built from schema-valid YAML data.

Durations are seconds, conditions are compiled predicates, and every step knows where it
goes next, so the engine never re-reads YAML. Raw condition specs are kept for display.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from smsflow.core.flows.conditions import ALWAYS, Predicate, compile_conditions
from smsflow.core.flows.durations import parse_duration
from smsflow.core.flows.source import Where

EXIT = "exit"  # a step reference that ends the enrollment
STEP_KINDS = ("wait", "wait_until", "send", "branch", "split", "exit")
DEFAULT_HOLDOUT = {"marketing": 0.1, "transactional": 0.0}


@dataclass(frozen=True, kw_only=True)
class EventRule:
    """An event that matters to a flow (exit, goal, wait-until), maybe about the same entity."""

    event: str
    match_entity: bool = False
    conditions: Mapping[str, Any] = field(default_factory=dict)
    when: Predicate = ALWAYS


@dataclass(frozen=True, kw_only=True)
class Goal(EventRule):
    window: float
    exit: bool = True


@dataclass(frozen=True, kw_only=True)
class Trigger:
    event: str
    conditions: Mapping[str, Any] = field(default_factory=dict)
    when: Predicate = ALWAYS
    max_age: float | None = None


@dataclass(frozen=True, kw_only=True)
class Reentry:
    mode: str = "always"          # once | always | after
    cooldown: float = 0.0         # seconds since the last enrollment started (mode after)
    while_active: str = "update"  # update | parallel


@dataclass(frozen=True, kw_only=True)
class Step:
    """One step. ``next`` is resolved: the explicit target, else the following step; None ends."""

    kind: ClassVar[str] = ""
    id: str
    index: int
    next: str | None
    refs: tuple[tuple[Where, str], ...] = ()  # (place inside the step, target) as written

    def targets(self) -> tuple[str | None, ...]:
        return (self.next,)


@dataclass(frozen=True, kw_only=True)
class WaitStep(Step):
    kind: ClassVar[str] = "wait"
    duration: float


@dataclass(frozen=True, kw_only=True)
class WaitUntilStep(Step):
    kind: ClassVar[str] = "wait_until"
    rule: EventRule
    timeout: float
    on_timeout: str | None  # None: exit with reason wait_timeout

    def targets(self) -> tuple[str | None, ...]:
        return (self.next, self.on_timeout)


PRIORITY_MIN, PRIORITY_MAX = 0, 1000


@dataclass(frozen=True, kw_only=True)
class PriorityRule:
    """``{when: conditions, add: N}``: N is added to the base when the conditions hold."""

    conditions: Mapping[str, Any]
    when: Predicate
    add: int


@dataclass(frozen=True, kw_only=True)
class Priority:
    """A send's priority: ``base`` plus the ``add`` of every rule whose conditions hold at
    send time (profile, trigger, cart, event), clamped to 0-1000. Higher wins a contested
    cap slot (and, among sends deferred to the same instant, is woken first)."""

    base: int
    rules: tuple[PriorityRule, ...] = ()

    def value(self, ctx: Mapping[str, Any]) -> int:
        return self.explain(ctx)[0]

    def explain(self, ctx: Mapping[str, Any]) -> tuple[int, list[PriorityRule]]:
        """The priority and the rules that applied."""
        applied = [rule for rule in self.rules if rule.when(ctx)]
        total = self.base + sum(rule.add for rule in applied)
        return max(PRIORITY_MIN, min(PRIORITY_MAX, total)), applied

    @property
    def reach(self) -> tuple[int, int]:
        """The lowest and highest value the rules can give (before clamping)."""
        return (self.base + sum(r.add for r in self.rules if r.add < 0),
                self.base + sum(r.add for r in self.rules if r.add > 0))


@dataclass(frozen=True, kw_only=True)
class SendStep(Step):
    kind: ClassVar[str] = "send"
    channel: str
    body: str
    media_urls: tuple[str, ...] = ()
    link: str | None = None
    priority: int | None = None                # the step's own base (None: the flow's)
    priority_rules: tuple[PriorityRule, ...] = ()  # with its own base: the step's rules


@dataclass(frozen=True, kw_only=True)
class BranchCase:
    conditions: Mapping[str, Any]
    when: Predicate
    next: str | None


@dataclass(frozen=True, kw_only=True)
class BranchStep(Step):
    kind: ClassVar[str] = "branch"
    cases: tuple[BranchCase, ...]
    otherwise: str | None

    def targets(self) -> tuple[str | None, ...]:
        return (*(case.next for case in self.cases), self.otherwise)


@dataclass(frozen=True, kw_only=True)
class Variant:
    name: str
    weight: float
    next: str | None


@dataclass(frozen=True, kw_only=True)
class SplitStep(Step):
    kind: ClassVar[str] = "split"
    variants: tuple[Variant, ...]

    def targets(self) -> tuple[str | None, ...]:
        return tuple(v.next for v in self.variants)


@dataclass(frozen=True, kw_only=True)
class ExitStep(Step):
    kind: ClassVar[str] = "exit"
    reason: str = "completed"

    def targets(self) -> tuple[str | None, ...]:
        return ()


@dataclass(frozen=True, kw_only=True)
class Flow:
    id: str
    name: str
    category: str
    priority: int
    trigger: Trigger
    audience: Predicate
    audience_spec: Mapping[str, Any]
    entity_key: str | None
    exits: tuple[EventRule, ...]
    reentry: Reentry
    holdout: float
    goal: Goal | None
    send_window: Mapping[str, Any] | None
    steps: tuple[Step, ...]
    source: str = ""
    priority_rules: tuple[PriorityRule, ...] = ()  # added to ``priority`` (the base) at send time

    @cached_property
    def _by_id(self) -> dict[str, Step]:
        return {step.id: step for step in self.steps}

    def step(self, step_id: str | None) -> Step | None:
        return self._by_id.get(step_id) if step_id else None

    @property
    def first(self) -> str:
        return self.steps[0].id

    def send_priority(self, step: SendStep) -> Priority:
        """The priority spec of a send step: the step's own if it has one, else the flow's."""
        if step.priority is not None:
            return Priority(base=step.priority, rules=step.priority_rules)
        return Priority(base=self.priority, rules=self.priority_rules)

    def event_rules(self) -> list[EventRule]:
        """Every rule that reads customer events after enrollment (exits, goal, wait-untils)."""
        rules: list[EventRule] = list(self.exits)
        rules.extend(s.rule for s in self.steps if isinstance(s, WaitUntilStep))
        return rules + ([self.goal] if self.goal else [])


def _rule(raw: Mapping[str, Any], cls: type[EventRule] = EventRule, **extra: Any) -> Any:
    spec = raw.get("conditions") or {}
    return cls(event=raw["event"], match_entity=bool(raw.get("match_entity", False)),
               conditions=spec, when=compile_conditions(spec), **extra)


def priority_spec(raw: Any) -> tuple[int, tuple[PriorityRule, ...]]:
    """``priority: 80`` or ``priority: {base: 50, rules: [{when: {...}, add: 30}]}``."""
    if raw is None:
        return 0, ()
    if isinstance(raw, Mapping):
        rules = tuple(PriorityRule(conditions=r["when"], when=compile_conditions(r["when"]),
                                   add=int(r["add"])) for r in raw.get("rules", ()))
        return int(raw["base"]), rules
    return int(raw), ()


def _seconds(duration: str | None) -> float | None:
    return None if duration is None else parse_duration(duration)


def _target(ref: str | None, default: str | None) -> str | None:
    if ref is None:
        return default
    return None if ref == EXIT else ref


def audience_conditions(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The audience shorthand as ordinary conditions on ``profile.*`` (see runner.profile_view)."""
    out: dict[str, Any] = {}
    for key in ("purchase_status", "order_count", "total_spent", "aov", "days_since_last_order",
                "discount_share", "avg_margin", "top_category"):
        if key in spec:
            out[f"profile.{key}"] = spec[key]
    for category, test in (spec.get("category_affinity") or {}).items():
        out[f"profile.category_affinity.{category}"] = test
    if "sms_clicked_within" in spec:
        out["profile.days_since_last_sms_click"] = {
            "lte": parse_duration(spec["sms_clicked_within"]) / 86400}
    if spec.get("conditions"):
        out["all"] = [spec["conditions"]]
    return out


def _refs(raw: Mapping[str, Any]) -> tuple[tuple[Where, str], ...]:
    found: list[tuple[Where, str]] = []
    if "next" in raw:
        found.append((("next",), raw["next"]))
    body = raw.get("wait_until") or {}
    if "on_timeout" in body:
        found.append((("wait_until", "on_timeout"), body["on_timeout"]))
    branch = raw.get("branch") or {}
    for i, case in enumerate(branch.get("cases", ())):
        found.append((("branch", "cases", i, "next"), case["next"]))
    if "else" in branch:
        found.append((("branch", "else"), branch["else"]))
    for i, variant in enumerate((raw.get("split") or {}).get("variants", ())):
        found.append((("split", "variants", i, "next"), variant["next"]))
    return tuple(found)


def _step(raw: Mapping[str, Any], index: int, following: str | None) -> Step:
    kind = next(k for k in STEP_KINDS if k in raw)
    body = raw[kind] or {}
    common = {"id": raw["id"], "index": index, "next": _target(raw.get("next"), following),
              "refs": _refs(raw)}
    if kind == "wait":
        return WaitStep(**common, duration=parse_duration(body["duration"]))
    if kind == "wait_until":
        return WaitUntilStep(**common, rule=_rule(body), timeout=parse_duration(body["timeout"]),
                             on_timeout=_target(body.get("on_timeout"), None))
    if kind == "send":
        base, rules = priority_spec(body["priority"]) if "priority" in body else (None, ())
        return SendStep(**common, channel=body.get("channel", "sms"), body=body["body"],
                        media_urls=tuple(body.get("media_urls", ())), link=body.get("link"),
                        priority=base, priority_rules=rules)
    if kind == "branch":
        cases = tuple(BranchCase(conditions=c["when"], when=compile_conditions(c["when"]),
                                 next=_target(c["next"], None)) for c in body["cases"])
        otherwise = _target(body.get("else"), common["next"])
        return BranchStep(**common, cases=cases, otherwise=otherwise)
    if kind == "split":
        variants = tuple(Variant(name=v["name"], weight=float(v["weight"]),
                                 next=_target(v["next"], None)) for v in body["variants"])
        return SplitStep(**common, variants=variants)
    return ExitStep(**common, reason=body.get("reason", "completed"))


def build_flow(data: Mapping[str, Any], source: str = "") -> Flow:
    """A :class:`Flow` from data that passed the JSON Schema (semantic checks run on the result)."""
    raw_steps = data["steps"]
    ids = [raw["id"] for raw in raw_steps] + [None]
    trigger = data["trigger"]
    reentry = data.get("reentry") or {}
    audience = data.get("audience") or {}
    base, rules = priority_spec(data.get("priority"))
    return Flow(
        id=data["id"], name=data.get("name", data["id"]), category=data["category"],
        priority=base, priority_rules=rules,
        trigger=Trigger(event=trigger["event"], conditions=trigger.get("conditions") or {},
                        when=compile_conditions(trigger.get("conditions")),
                        max_age=_seconds(trigger.get("max_age"))),
        audience=compile_conditions(audience_conditions(audience)), audience_spec=audience,
        entity_key=data.get("entity_key"),
        exits=tuple(_rule(r) for r in (data.get("exit") or {}).get("events", ())),
        reentry=Reentry(mode=reentry.get("mode", "always"),
                        cooldown=_seconds(reentry.get("cooldown")) or 0.0,
                        while_active=reentry.get("while_active", "update")),
        holdout=float(data.get("holdout", DEFAULT_HOLDOUT[data["category"]])),
        goal=_rule(data["goal"], Goal, window=parse_duration(data["goal"]["window"]),
                   exit=bool(data["goal"].get("exit", True))) if data.get("goal") else None,
        send_window=data.get("send_window"),
        steps=tuple(_step(raw, i, ids[i + 1]) for i, raw in enumerate(raw_steps)),
        source=source,
    )
