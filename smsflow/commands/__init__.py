"""CLI sub-commands. Each module here exposes ``register(subparsers)`` and is discovered
automatically by :mod:`smsflow.cli`, so adding a command touches only its own file."""
