"""What the Kafka-facing commands share: ``-b/--bootstrap``, the settings it overrides, a
quick reachability check and one-line failures (no traceback, no client log flood).

Not a command itself (no ``register``): :mod:`smsflow.cli` skips it.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import sys
from collections.abc import Callable

EXIT_KAFKA = 2  # Kafka unreachable, credentials refused, bad Kafka settings
CONNECT_TIMEOUT = 5.0
REPORT_EXTRA = ("scipy", "statsmodels", "matplotlib")


def add_bootstrap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-b", "--bootstrap", metavar="HOST:PORT[,...]",
        help="Kafka bootstrap servers (default: SMSFLOW_BROKER, else 127.0.0.1:9092); "
             "TLS and SASL come from the SMSFLOW_KAFKA_* variables")


def broker_url(bootstrap: str) -> str:
    """``h1:9092,h2:9092`` -> ``kafka://h1:9092,kafka://h2:9092`` (the SMSFLOW_BROKER form)."""
    return ",".join(part if "://" in part else f"kafka://{part}"
                    for part in (p.strip() for p in bootstrap.split(",")) if part)


def settings_from_args(args: argparse.Namespace):
    """``Settings.from_env()`` with ``--bootstrap`` applied."""
    from smsflow.streams.settings import Settings

    settings = Settings.from_env()
    bootstrap = getattr(args, "bootstrap", None)
    return settings.with_(broker=broker_url(bootstrap)) if bootstrap else settings


def connect(args: argparse.Namespace, timeout: float = CONNECT_TIMEOUT):
    """Settings for this invocation, after checking that Kafka answers with them.
    Raises KafkaUnavailable / KafkaConfigError, which :func:`kafka_command` prints."""
    from smsflow.kafka_admin import check_reachable

    settings = settings_from_args(args)
    check_reachable(settings, timeout=timeout)
    return settings


def fail(prog: str, message: str, code: int = EXIT_KAFKA) -> int:
    print(f"smsflow {prog}: {' '.join(str(message).split())}", file=sys.stderr)
    return code


def kafka_command(prog: str) -> Callable:
    """Decorate a command's ``run(args)``: Kafka errors become one line on stderr and exit
    code 2, however deep they were raised."""
    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def wrapper(args: argparse.Namespace) -> int:
            from confluent_kafka import KafkaException

            from smsflow.kafka_admin import KafkaUnavailable
            from smsflow.kafka_config import KafkaConfigError

            try:
                return run(args)
            except KafkaUnavailable as exc:
                return fail(prog, exc)
            except KafkaConfigError as exc:
                return fail(prog, f"Kafka settings: {exc}")
            except KafkaException as exc:
                error = exc.args[0] if exc.args else exc
                return fail(prog, f"Kafka error: {getattr(error, 'str', lambda: error)()}")
            except BrokenPipeError:  # output piped into `head` and the like
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 0
        return wrapper
    return decorate


def missing_report_extra() -> str | None:
    """The one-line hint when the optional ``report`` dependencies are not installed."""
    missing = [name for name in REPORT_EXTRA if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"the report needs the optional dependencies {', '.join(missing)}: "
            "pip install 'smsflow[report]'")


def report_preflight(args: argparse.Namespace) -> int | None:
    """Called first by ``smsflow report`` (and the demo): an exit code to stop with after a
    one-line message, or None to go on. Checks the ``report`` extra and, when the report
    reads a topic, that Kafka answers."""
    hint = missing_report_extra()
    if hint:
        return fail("report", hint, code=3)
    if getattr(args, "input", None):
        return None
    from smsflow.kafka_admin import KafkaUnavailable
    from smsflow.kafka_config import KafkaConfigError

    try:
        connect(args)
    except KafkaUnavailable as exc:
        return fail("report", exc)
    except KafkaConfigError as exc:
        return fail("report", f"Kafka settings: {exc}")
    return None
