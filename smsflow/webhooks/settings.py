"""Settings of the webhook server, read from environment variables.

Broker, topic names, Twilio credentials, public URL and port come from the worker's
:class:`smsflow.streams.settings.Settings` (read-only here); what only the webhook server
needs lives in this module so the worker's settings stay the worker's.

========================================  ==============================  ==================================
variable                                  default                         meaning
========================================  ==============================  ==================================
``SMSFLOW_WEBHOOK_HOST``                  ``127.0.0.1``                   bind address (``--host`` wins);
                                                                          ``0.0.0.0`` only behind a proxy
``SMSFLOW_WEBHOOK_DIR``                   ``$SMSFLOW_DATA_DIR/``          this replica's own folder: spool,
                                          ``webhooks-$SMSFLOW_APP_ID``    replay window, links store. One
                                                                          per replica (locked while running)
``SMSFLOW_WEBHOOK_SPOOL_DIR``             ``<dir>/spool``                 the durable journal used while
                                                                          Kafka is unreachable
``SMSFLOW_WEBHOOK_SPOOL_MAX_BYTES``       ``268435456`` (256 MiB)         journal bound; when full, inbound
                                                                          and status posts get 503
``SMSFLOW_WEBHOOK_MAX_BODY_BYTES``        ``65536`` (64 KiB)              larger bodies get 413
``SMSFLOW_WEBHOOK_MAX_FIELDS``            ``256``                         more form fields get 400
``SMSFLOW_WEBHOOK_REPLAY_WINDOW``         ``200000``                      how many recent dedupe ids the
                                                                          replica remembers on disk
``SMSFLOW_WEBHOOK_LINK_WAIT``             ``1.0`` (seconds)               how long a click on a code not
                                                                          (yet) in the links store waits
``SMSFLOW_WEBHOOK_DELIVERY_TIMEOUT_MS``   ``5000``                        how long a record may wait for a
                                                                          Kafka ack before it is journaled
``SMSFLOW_WEBHOOK_RETRY_MAX``             ``10.0`` (seconds)              the longest backoff between two
                                                                          attempts to publish the journal
========================================  ==============================  ==================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from smsflow.streams.settings import Settings


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(float(raw)) if raw.strip() else default
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw.strip() else default
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class WebhookSettings:
    host: str = "127.0.0.1"
    state_dir: Path = Path(".smsflow/webhooks")
    spool_dir: Path | None = None
    spool_max_bytes: int = 256 * 1024 * 1024
    max_body_bytes: int = 64 * 1024
    max_fields: int = 256
    replay_window: int = 200_000
    link_wait: float = 1.0
    delivery_timeout_ms: int = 5000
    retry_max: float = 10.0

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.state_dir / "spool"

    @property
    def seen_dir(self) -> Path:
        return self.state_dir / "seen"

    @property
    def links_dir(self) -> Path:
        return self.state_dir / "links"

    def with_(self, **changes) -> "WebhookSettings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, settings: Settings) -> "WebhookSettings":
        d = cls()
        state = os.environ.get("SMSFLOW_WEBHOOK_DIR") or str(
            Path(settings.data_dir) / f"webhooks-{settings.app_id}")
        spool = os.environ.get("SMSFLOW_WEBHOOK_SPOOL_DIR")
        return cls(
            host=os.environ.get("SMSFLOW_WEBHOOK_HOST") or d.host,
            state_dir=Path(state),
            spool_dir=Path(spool) if spool else None,
            spool_max_bytes=_int("SMSFLOW_WEBHOOK_SPOOL_MAX_BYTES", d.spool_max_bytes),
            max_body_bytes=_int("SMSFLOW_WEBHOOK_MAX_BODY_BYTES", d.max_body_bytes),
            max_fields=_int("SMSFLOW_WEBHOOK_MAX_FIELDS", d.max_fields),
            replay_window=_int("SMSFLOW_WEBHOOK_REPLAY_WINDOW", d.replay_window),
            link_wait=_float("SMSFLOW_WEBHOOK_LINK_WAIT", d.link_wait),
            delivery_timeout_ms=_int("SMSFLOW_WEBHOOK_DELIVERY_TIMEOUT_MS", d.delivery_timeout_ms),
            retry_max=_float("SMSFLOW_WEBHOOK_RETRY_MAX", d.retry_max),
        )
