"""Run every benchmark (``make bench``), print their tables, then the targets of issue 11
(and the other quality bars of PRODUCT.md) with "met" yes/NO. Each benchmark measures its
own baseline in the same run; figures are medians of 3 runs (``--quick``: 1 run, smaller
sizes, for trying the harness out, not for the record).

    .venv/bin/python -m bench.run_all                        # ~25 minutes on 2 shared cores
    .venv/bin/python -m bench.run_all --only recovery timers
    .venv/bin/python -m bench.run_all --quick                # ~8 minutes, 1 run each
    .venv/bin/python -m bench.run_all --profile never        # no py-spy runs for missed targets
"""

from __future__ import annotations

import argparse
import json
import time
import traceback

from rich.console import Console

from bench import dispatch, ingest, recovery, textpath, timers
from bench.common import PROFILE_DIR, loadavg, print_profile, print_table

FULL = {
    "ingest": ["--events", "100000", "--customers", "20000", "--repeat", "3"],
    "textpath": ["--customers", "15000", "--repeat", "3"],
    "dispatch": ["--sends", "10000", "--repeat", "3", "--mps", "1500", "--small-mps", "20",
                 "--small-sends", "300"],
    "recovery": ["--customers", "1000000", "--repeat", "3", "--repeat-32", "1"],
    "timers": ["--pending", "100000", "1000000", "--rate", "1000", "--seconds", "15",
               "--repeat", "3"],
}
QUICK = {
    "ingest": ["--events", "30000", "--customers", "6000", "--repeat", "1"],
    "textpath": ["--customers", "3000", "--repeat", "1", "--raw", "2000"],
    "dispatch": ["--sends", "3000", "--repeat", "1", "--small-sends", "100", "--raw", "2000"],
    "recovery": ["--customers", "100000", "--repeat", "1", "--repeat-32", "1"],
    "timers": ["--pending", "100000", "--seconds", "10", "--naive-seconds", "4", "--repeat", "1"],
}
MODULES = {"ingest": ingest, "textpath": textpath, "dispatch": dispatch, "recovery": recovery,
           "timers": timers}


def yes(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "NO")


def summary(r: dict) -> list[list[str]]:
    rows = []
    ing = r.get("ingest")
    if ing:
        w = ing["worker"]
        note = f" (workaround {ing['workaround']})" if ing.get("stalls") else ""
        rows.append(["ingest", "worker events/s, full pipeline, 1 worker" + note, f"{w:,.0f}",
                     ">= 10,000/s", yes(w >= 10_000)])
        rows.append(["ingest", "ratio vs raw aiokafka consume+produce (same run)",
                     f"{w / ing['raw']:.2f} ({ing['raw']:,.0f}/s)", ">= 0.2", yes(w / ing["raw"] >= 0.2)])
        rows.append(["ingest", "ratio vs same work without Faust (same run)",
                     f"{w / ing['same']:.2f} ({ing['same']:,.0f}/s)", ">= 0.6",
                     yes(w / ing["same"] >= 0.6)])
        rows.append(["ingest", "backlog larger than the lane queue processed without stalling",
                     f"{len(ing.get('stalls') or [])} stalls", "0", yes(not ing.get("stalls"))])
    tp = r.get("textpath")
    if tp and tp.get("rate") is not None:
        note = f" (workaround {tp['workaround']})" if tp.get("stalls") else ""
        rows.append(["text path", "texts/s, events -> sandbox, 1 worker (raw sandbox, same run)" + note,
                     f"{tp['rate']:,.0f} ({tp['raw']:,.0f})", ">= 2,500/s", yes(tp["rate"] >= 2500)])
        rows.append(["text path", "max segments in any 1 s, per sender (MPS)",
                     f"{tp['window']:,} ({tp['mps']:,.0f})", "<= MPS", yes(tp["window"] <= tp["mps"])])
        rows.append(["text path", "backlog larger than the lane queue processed without stalling",
                     f"{len(tp.get('stalls') or [])} stalls", "0", yes(not tp.get("stalls"))])
    elif tp:
        rows.append(["text path", "texts/s", "no run finished", ">= 2,500/s", "NO"])
    dis = r.get("dispatch")
    if dis:
        rows.append(["dispatch", "dispatcher alone, sends/s (raw sandbox, same run)",
                     f"{dis['sends']:,.0f} ({dis['raw']:,.0f})", ">= 1,000/s",
                     yes(dis["sends"] >= 1000)])
        rows.append(["dispatch", "max segments in any 1 s, 1,500-MPS sender",
                     f"{dis['window_fast']:,}", "<= 1,500", yes(dis["window_fast"] <= 1500)])
        rows.append(["dispatch", "max segments in any 1 s, 20-MPS sender",
                     f"{dis['window_small']}", "<= 20", yes(dis["window_small"] <= 20)])
    rec = r.get("recovery")
    if rec:
        n = f"{rec['customers'] / 1e6:g}M" if rec["customers"] >= 1e6 else f"{rec['customers']:,}"
        rows.append(["recovery", f"{n} customers, empty data dir: start -> next event processed",
                     f"{rec['empty']:.1f} s", "< 30 s", yes(rec["empty"] < 30)])
        rows.append(["recovery", "  bulk restore itself (its log line; baseline: same read in the bench)",
                     f"{rec['restore_log']:.1f} s", f"({rec['baseline']:.1f} s)", "-"])
        rows.append(["recovery", f"{n} customers, same data dir after a clean stop",
                     f"{rec['same']:.1f} s", "< 8 s", yes(rec["same"] < 8)])
        rows.append(["recovery", "restored state used by the next event", "checked",
                     "yes", yes(rec["restored_ok"])])
        for parts, m in rec["rss"].items():
            for key, label in (("empty", "empty dir (bulk restore)"), ("same", "same dir")):
                rows.append(["memory", f"worker RSS peak / steady, {n} customers, {parts} partitions, {label}",
                             f"{m[key + '_peak']:,.0f} / {m[key + '_steady']:,.0f} MiB",
                             "< 512 MiB", yes(m[key + "_peak"] < 512)])
            if rec.get("trimmed", {}).get(parts):
                rows.append(["memory", "  steady after the bulk restore, once malloc_trim(0) ran (gdb)",
                             f"{rec['trimmed'][parts]:,.0f} MiB", "(diagnosis)", "-"])
        parts = sorted(rec["rss"])
        if len(parts) > 1:
            lo, hi = rec["rss"][parts[0]], rec["rss"][parts[-1]]
            rows.append(["memory", f"peak RSS {parts[-1]} / {parts[0]} partitions, empty dir / same dir",
                         f"{hi['empty_peak'] / lo['empty_peak']:.2f} / {hi['same_peak'] / lo['same_peak']:.2f}",
                         "bounded (< 1.25)",
                         yes(max(hi['empty_peak'] / lo['empty_peak'], hi['same_peak'] / lo['same_peak']) < 1.25)])
    tim = r.get("timers")
    if tim:
        big = tim.get(1_000_000) or tim[max(tim)]
        n = 1_000_000 if 1_000_000 in tim else max(tim)
        rows.append(["timers", f"lateness p50 / p99, {n:,} pending (median of runs)",
                     f"{big['late_p50'] * 1000:,.0f} / {big['late_p99'] * 1000:,.1f} ms",
                     "p99 < 500 ms", yes(big["late_p99"] < 0.5)])
        if 100_000 in tim and n != 100_000:
            ratio = big["tick_p50"] / tim[100_000]["tick_p50"]
            rows.append(["timers", "tick scan cost 1M / 100k pending", f"{ratio:.2f}", "near 1 (< 2)",
                         yes(ratio < 2.0)])
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=list(MODULES), default=list(MODULES))
    ap.add_argument("--quick", action="store_true", help="1 run each, smaller sizes")
    ap.add_argument("--profile", choices=["auto", "always", "never"], default="auto",
                    help="py-spy the worker in an extra run for every missed target (auto)")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    console = Console(width=140)
    results: dict = {}
    took: dict = {}
    started = time.monotonic()
    for name in args.only:
        console.rule(f"[bold]{name}")
        print(f"load average before: {loadavg()}", flush=True)
        t0 = time.monotonic()
        argv_ = list(sizes[name])
        if name != "timers":
            argv_ += ["--profile", args.profile]
        try:
            results[name] = MODULES[name].main(argv_)
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others
            traceback.print_exc()
            results[name] = None
        took[name] = time.monotonic() - t0
        console.print(f"{name}: {took[name]:.0f}s; load average after: {loadavg()}")
    console.rule("[bold]summary")
    rows = summary({k: v for k, v in results.items() if v})
    print_table(f"Issue 11 targets and quality bars, this run ({'quick, 1 run each' if args.quick else 'medians of 3'})",
                ["benchmark", "measure", "value", "target", "met"], rows)
    missed = [row for row in rows if row[-1] == "NO"]
    print(f"{len(rows) - len(missed) - sum(1 for row in rows if row[-1] == '-')} met, "
          f"{len(missed)} missed; total {time.monotonic() - started:.0f}s ("
          + ", ".join(f"{k} {v:.0f}s" for k, v in took.items()) + ")")
    profiles = [(name, res.get("profile")) for name, res in results.items()
                if isinstance(res, dict) and res.get("profile")]
    if profiles:
        console.rule("[bold]profiles of the missed targets (py-spy, top frames)")
        for name, prof in profiles:
            print_profile(name, prof)
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    (PROFILE_DIR / "last-run-summary.json").write_text(json.dumps(
        {"rows": rows, "took": took, "quick": args.quick}, indent=1))
    return results


if __name__ == "__main__":
    main()
