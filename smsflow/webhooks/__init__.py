"""HTTP endpoints Twilio and recipients call: inbound texts, status callbacks, link clicks.

No Faust here: the worker injects a ``publish(role, key, value)`` coroutine function.
"""

from smsflow.webhooks.app import create_webhook_app

__all__ = ["create_webhook_app"]
