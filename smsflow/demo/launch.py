"""``python -m smsflow.demo.launch <smsflow sub-command> [args]``: the CLI on the demo's clock.

Why: :class:`smsflow.clock.ScaledClock` reads ``SMSFLOW_CLOCK_ORIGIN`` as the simulated time
*at the moment the clock object is created*, and each process creates its own clock after
its imports (a worker several seconds after launch). At 400x, a 3 s difference between the
worker's and the webhook server's start-up would put their clocks 20 simulated minutes apart.

So the demo passes ``SMSFLOW_DEMO_CLOCK_ANCHOR="<simulated epoch>@<real epoch>"`` (one fixed
mapping for every process) and this launcher imports the sub-command's heavy modules first,
then sets ``SMSFLOW_CLOCK_ORIGIN`` to the simulated time of *now* and runs the unchanged
``smsflow`` command, which creates its clock a few milliseconds later. All processes then
agree with the demo's own clock to within those milliseconds (x speed).
"""

from __future__ import annotations

import importlib
import os
import sys
import time

ANCHOR_ENV = "SMSFLOW_DEMO_CLOCK_ANCHOR"
PRELOAD = {
    "worker": ("faust", "faust.worker", "streams.app", "smsflow.kafka_admin", "agents.customers",
               "agents.phones", "agents.dispatcher", "agents.products", "agents.receipts"),
    "webhooks": ("aiokafka", "smsflow.webhooks.server", "streams.runtime"),
}


def anchor_origin(anchor: str, speed: float, now: float | None = None) -> float:
    """Simulated time of real time ``now`` under the anchor ``"SIM@REAL"``."""
    sim, real = (float(part) for part in anchor.split("@", 1))
    return sim + ((time.time() if now is None else now) - real) * speed


def main(argv: list[str]) -> int:
    from smsflow.cli import build_parser

    for module in PRELOAD.get(argv[0] if argv else "", ()):
        importlib.import_module(module)
    args = build_parser().parse_args(argv)
    anchor = os.environ.get(ANCHOR_ENV)
    if anchor:
        speed = float(os.environ.get("SMSFLOW_CLOCK_SPEED") or 1.0)
        os.environ["SMSFLOW_CLOCK_ORIGIN"] = repr(anchor_origin(anchor, speed))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
