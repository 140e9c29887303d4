"""What every flow-QA command reads: settings, the policy and the price table."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from smsflow.core.policy import Policy, PolicyError, default_policy, load_policy
from smsflow.flowqa.pricing import PriceError, Prices, load_prices
from smsflow.streams.settings import Settings


class QAError(ValueError):
    """A problem with the command's inputs, printed as one line."""


@dataclass
class QAContext:
    settings: Settings
    policy: Policy
    prices: Prices


def load_policy_path(path: str | Path | None, settings: Settings) -> Policy:
    """``--policy FILE``, else ``SMSFLOW_POLICY`` (``defaults``: the built-in policy)."""
    target = str(path) if path else str(settings.policy_file)
    if target == "defaults":
        return default_policy()
    if not Path(target).exists():
        raise QAError(f"policy file {target} does not exist (use --policy FILE or "
                      "--policy defaults)")
    try:
        return load_policy(target)
    except PolicyError as exc:
        raise QAError(f"invalid policy: {exc}") from None


def qa_context(args: argparse.Namespace, settings: Settings | None = None) -> QAContext:
    settings = settings or Settings.from_env()
    try:
        prices = load_prices(getattr(args, "prices", None))
    except PriceError as exc:
        raise QAError(f"invalid prices: {exc}") from None
    return QAContext(settings, load_policy_path(getattr(args, "policy", None), settings), prices)
