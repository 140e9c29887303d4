"""Local Twilio-compatible Messages API: start it with :func:`start_sandbox` (in-process)
or ``smsflow sandbox`` (CLI)."""

from smsflow.sandbox.server import Sandbox, SandboxConfig, SandboxHandle, serve, start_sandbox

__all__ = ["Sandbox", "SandboxConfig", "SandboxHandle", "serve", "start_sandbox"]
