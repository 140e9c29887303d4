"""Flows: the YAML flow format (schema, loader, validator) and the pure flow engine.

Entry points: :func:`load_dir` (files -> :class:`Flow` objects and :class:`FlowError` list)
and :class:`FlowEngine` (customer state + event/timer -> :class:`Effects`). No Faust here.
"""

from smsflow.core.flows.effects import Effects
from smsflow.core.flows.engine import FlowEngine
from smsflow.core.flows.loader import LoadResult, load_dir, load_file, load_text
from smsflow.core.flows.model import Flow
from smsflow.core.flows.validate import FlowError

__all__ = ["Effects", "Flow", "FlowEngine", "FlowError", "LoadResult", "load_dir",
           "load_file", "load_text"]
