#!/usr/bin/env python3
"""`make coldstart`: each release binary started fresh under the Lambda emulator, N times.

For each function (target/release/<function>, built by `make release`):

- binary size, and the deployment zip size (`bootstrap` at the root, deflated, as
  `python3 -m zipfile -c` and `sam build`/cargo-lambda package it);
- N cold starts (default 20): a new `aws-lambda-rie` and a new `bootstrap` process each time
  (scripts/invoke.py's `Emulator`, settings from env.json: the Ably key from the environment),
  one successful request (the event in scripts/lambda_probe.py), then:
  - init duration: the emulator's own `INIT REPORT(durationMs)`, from starting the bootstrap
    process to its first `GET /runtime/invocation/next` — what Lambda reports as "Init
    Duration". (The emulator's REPORT line also prints an "Init Duration", but it is not the
    init phase there: ~0.03 ms; we ignore it);
  - process start to first response: init duration + the emulator's `INVOKE RTDONE` duration
    of that first request (event handed over → response posted);
  - client round trip: the time from POSTing the event to the emulator until the answer arrived
    (adds the emulator's own work and process spawn: an upper bound);
  - warm invoke: the emulator's `INVOKE RTDONE` durations of --warm further requests in the
    same container (the Lambda "Duration" of a warm request);
  - peak RSS: VmHWM of the bootstrap process (/proc/<pid>/status) after those requests.

`issue-ably-token` and `revoke-tokens` call Ably on their first request: a loopback fake Ably
(plain HTTP, scripts/lambda_probe.py) answers, so their first-response time excludes a real
TLS handshake and network round trip to Ably (tens of ms in a region; see docs/PERFORMANCE.md).

    scripts/coldstart.py [--runs 20] [--functions issue-jwt,...] [--target-dir DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import invoke  # noqa: E402  (scripts/invoke.py: the emulator driver of `make invoke`)
import lambda_probe as probe  # noqa: E402

ROOT = probe.ROOT
TARGETS = {"init_ms": 20.0, "zip_bytes": 3_000_000, "peak_rss_kib": 24 * 1024}


def one_cold_start(binary: Path, function: str, env: dict[str, str], event: bytes, warm: int) -> dict:
    emulator = invoke.Emulator(binary, function, env)
    try:
        invoker = probe.Invoker(emulator.port)
        started = time.perf_counter()
        answer = invoker.invoke(event)
        round_trip_ms = (time.perf_counter() - started) * 1000
        pid = probe.bootstrap_pid(emulator.proc.pid)
        first = probe.proc_status(pid) if pid else {}
        for _ in range(warm):
            if invoker.invoke(event).get("statusCode") != 200:
                raise SystemExit(f"{function}: a warm request failed:\n{emulator.logs()[-3000:]}")
        log = probe.wait_for_log(emulator, probe.INVOKE_RE, count=1 + warm)
        status = probe.proc_status(pid) if pid else {}
        invoker.close()
        init_ms, invokes = probe.emulator_timings(log)
        if answer.get("statusCode") != 200:
            raise SystemExit(f"{function}: the first request answered {answer.get('statusCode')}: {answer}\n{log}")
        if init_ms is None or not invokes:
            raise SystemExit(f"{function}: no INIT REPORT / INVOKE RTDONE in the emulator's log:\n{log}")
        return {
            "init_ms": init_ms,
            "first_invoke_ms": invokes[0],
            "warm_invoke_ms": invokes[1:],
            "start_to_first_response_ms": init_ms + invokes[0],
            "client_round_trip_ms": round_trip_ms,
            "peak_rss_kib_after_first": first.get("VmHWM"),
            "peak_rss_kib": status.get("VmHWM"),
            "rss_kib": status.get("VmRSS"),
        }
    finally:
        emulator.stop()


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warm", type=int, default=50, help="warm requests after each cold one (their durations too)")
    p.add_argument("--functions", default=",".join(probe.EVENTS))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an extra setting for the functions")
    p.add_argument("--target-dir", type=Path, default=ROOT / "target", help="where release/<function> is")
    p.add_argument("--json", type=Path, default=None, help="default: <target-dir>/coldstart/summary.json")
    args = p.parse_args(argv)

    functions = [f.strip() for f in args.functions.split(",") if f.strip()]
    work = Path(tempfile.mkdtemp(prefix="coldstart-"))
    ably = probe.FakeAbly()
    summary: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "runs": args.runs, "settings": args.set,
                     "load_average_before": probe.loadavg(), "functions": {}}
    try:
        for function in functions:
            binary = args.target_dir / "release" / function
            if not binary.is_file():
                raise SystemExit(f"{binary} not found: run `make release` first")
            event_path, calls_ably = probe.EVENTS[function]
            event = (ROOT / event_path).read_bytes()
            overrides = ([f"ABLY_REST_URL={ably.url}"] if calls_ably else []) + args.set
            env = invoke.function_env(function, ROOT / "env.json", overrides)
            runs = []
            for i in range(args.runs):
                runs.append(one_cold_start(binary, function, env, event, args.warm))
                print(f"\r{function}: cold start {i + 1}/{args.runs}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            col = lambda k: [r[k] for r in runs if r[k] is not None]  # noqa: E731
            summary["functions"][function] = {
                "binary_bytes": binary.stat().st_size,
                "zip_bytes": probe.zip_size(binary, work),
                "init_ms_median": probe.median(col("init_ms")),
                "init_ms_min": min(col("init_ms")),
                "init_ms_max": max(col("init_ms")),
                "first_invoke_ms_median": probe.median(col("first_invoke_ms")),
                "start_to_first_response_ms_median": probe.median(col("start_to_first_response_ms")),
                "client_round_trip_ms_median": probe.median(col("client_round_trip_ms")),
                "warm_invoke_ms_median": probe.median([w for r in runs for w in r["warm_invoke_ms"]]),
                "warm_invoke_ms_p99": percentile([w for r in runs for w in r["warm_invoke_ms"]], 0.99),
                "peak_rss_kib_median": probe.median(col("peak_rss_kib")),
                "peak_rss_kib_max": max(col("peak_rss_kib"), default=None),
                "runs": runs,
            }
    finally:
        ably.stop()
        shutil.rmtree(work, ignore_errors=True)
    summary["load_average_after"] = probe.loadavg()

    out = args.json or args.target_dir / "coldstart" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")

    header = ["function", "binary", "zip", "init (median, min–max)", "start→1st response", "client round trip",
              "warm invoke (median / p99)", "peak RSS (median / max)"]
    rows = []
    missed = []
    for function, s in summary["functions"].items():
        rows.append([
            function,
            f"{s['binary_bytes'] / 1e6:.2f} MB",
            f"{s['zip_bytes'] / 1e6:.2f} MB",
            f"{s['init_ms_median']:.1f} ms ({s['init_ms_min']:.1f}–{s['init_ms_max']:.1f})",
            f"{s['start_to_first_response_ms_median']:.1f} ms",
            f"{s['client_round_trip_ms_median']:.1f} ms",
            f"{s['warm_invoke_ms_median']:.2f} / {s['warm_invoke_ms_p99']:.2f} ms" if s["warm_invoke_ms_median"] else "-",
            f"{s['peak_rss_kib_median'] / 1024:.1f} / {s['peak_rss_kib_max'] / 1024:.1f} MiB",
        ])
        if s["init_ms_median"] > TARGETS["init_ms"]:
            missed.append(f"{function} init {s['init_ms_median']:.1f} ms > 20 ms")
        if s["zip_bytes"] > TARGETS["zip_bytes"]:
            missed.append(f"{function} zip {s['zip_bytes']:,} B > 3,000,000 B")
        if s["peak_rss_kib_max"] and s["peak_rss_kib_max"] > TARGETS["peak_rss_kib"]:
            missed.append(f"{function} peak RSS {s['peak_rss_kib_max'] / 1024:.1f} MiB > 24 MiB")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"{args.runs} cold starts per function under aws-lambda-rie; load average {summary['load_average_before']}"
          f" before, {summary['load_average_after']} after")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print("\ntargets (init ≤ 20 ms, zip ≤ 3 MB (3,000,000 B), peak RSS ≤ 24 MiB): " + ("; ".join(missed) if missed else "all met"))
    print(f"details: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
