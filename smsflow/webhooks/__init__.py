"""HTTP endpoints Twilio and recipients call: inbound texts, status callbacks, link clicks.

:mod:`~smsflow.webhooks.app` is the aiohttp application (no Kafka, no Faust: it is given a
``publish(role, key, value)`` coroutine); :mod:`~smsflow.webhooks.server` assembles the
process around it: durable publishing (Kafka or a local journal), the replay window, the
links store and ``/metrics``. Settings: :mod:`~smsflow.webhooks.settings`.
"""

from smsflow.webhooks.app import create_webhook_app

__all__ = ["create_webhook_app"]
