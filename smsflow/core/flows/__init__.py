"""Flows: the YAML flow format (schema, loader, validator) and the pure flow engine.

Entry points: :func:`load_dir` (files -> :class:`Flow` objects and :class:`FlowError` list)
and :class:`FlowEngine` (customer state + event/timer -> :class:`Effects`). No Faust here.
"""
