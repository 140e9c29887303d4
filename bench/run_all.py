"""Run every benchmark (``make bench``) and print their tables, then a summary against
the quality bars of PRODUCT.md. Each benchmark measures its own baseline in the same run.

    .venv/bin/python -m bench.run_all            # modest sizes, ~10 minutes on 2 cores
    .venv/bin/python -m bench.run_all --only timers dispatch
"""

from __future__ import annotations

import argparse
import time
import traceback

from rich.console import Console

from bench import dispatch, ingest, timers
from bench.common import print_table

BENCHMARKS = {
    "ingest": lambda: ingest.main(["--events", "50000", "--customers", "10000", "--repeat", "3"]),
    "timers": lambda: timers.main(["--pending", "100000", "1000000", "--rate", "1000",
                                   "--seconds", "20"]),
    "dispatch": lambda: dispatch.main(["--sends", "15000", "--repeat", "3", "--mps", "1500",
                                       "--small-mps", "20", "--small-sends", "300"]),
}


def summary(results: dict) -> list[list[str]]:
    rows = []
    ing = results.get("ingest")
    if ing:
        rows.append(["ingest", "worker events/s (ratio vs raw aiokafka)",
                     f"{ing['worker']:,.0f} ({ing['worker'] / ing['raw']:.2f})", "measured", "-"])
    tim = results.get("timers")
    if tim and 1_000_000 in tim and 100_000 in tim:
        big, small = tim[1_000_000], tim[100_000]
        rows.append(["timers", "lateness p50 / p99, 1M pending",
                     f"{big['late_p50'] * 1000:,.0f} / {big['late_p99'] * 1000:,.0f} ms",
                     "p99 < 1 s", "yes" if big["late_p99"] < 1.0 else "NO"])
        ratio = big["tick_p50"] / small["tick_p50"]
        rows.append(["timers", "tick scan cost 1M / 100k pending", f"{ratio:.2f}", "near 1",
                     "yes" if ratio < 2.0 else "NO"])
    dis = results.get("dispatch")
    if dis:
        rows.append(["dispatch", "sends/s (sandbox alone)",
                     f"{dis['sends']:,.0f} ({dis['raw']:,.0f})", ">= 1,000/s",
                     "yes" if dis["sends"] >= 1000 else "NO"])
        rows.append(["dispatch", "max segments in any 1 s, 20-MPS sender",
                     f"{dis['window_small']}", "<= 20", "yes" if dis["window_small"] <= 20 else "NO"])
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    args = ap.parse_args(argv)
    console = Console(width=120)
    results: dict = {}
    for name in args.only:
        console.rule(f"[bold]{name}")
        t0 = time.monotonic()
        try:
            results[name] = BENCHMARKS[name]()
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
            traceback.print_exc()
            results[name] = None
        console.print(f"{name}: {time.monotonic() - t0:.0f}s")
    console.rule("[bold]summary")
    print_table("Quality bars (PRODUCT.md), this run", ["benchmark", "measure", "value", "target",
                                                         "met"], summary(results))
    return results


if __name__ == "__main__":
    main()
