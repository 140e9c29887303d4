"""Shared benchmark helpers: a private broker and a plain table printer (rich)."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager

from rich.console import Console
from rich.table import Table

from smsflow.broker import Broker, free_port


@contextmanager
def private_broker():
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(port=free_port(), controller_port=free_port(), run_dir=tmp, heap="1g")
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


def print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=120).print(table)
