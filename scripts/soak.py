#!/usr/bin/env python3
"""`make soak`: many sequential invocations in one container, memory sampled: it must be flat.

One `aws-lambda-rie` and one `bootstrap` process (one warm Lambda container) of a release
binary (default `issue-jwt`; settings from env.json, a loopback fake Ably for the routes that
call Ably) get N sequential invocations (default 100,000) of the function's successful event
(scripts/lambda_probe.py). Every `--every` invocations (default 5,000) the bootstrap's VmRSS
and VmHWM (/proc/<pid>/status) are sampled. Every answer must be 200.

Verdict: memory is flat when the RSS at the end exceeds the RSS at the first sample after
warm-up (`--warmup`, default 10,000 invocations) by at most `--max-growth-kib` (default 1024):
a leak of even 10 bytes per request would add ~1 MiB over 100,000 requests. Exit status 1 when
memory grew more or a request failed. Not part of `make test` (it takes minutes).

    scripts/soak.py [--function issue-jwt] [--invocations 100000] [--every 5000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import invoke  # noqa: E402  (scripts/invoke.py: the emulator driver of `make invoke`)
import lambda_probe as probe  # noqa: E402

ROOT = probe.ROOT


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--function", default="issue-jwt", choices=sorted(probe.EVENTS))
    p.add_argument("--invocations", type=int, default=100_000)
    p.add_argument("--every", type=int, default=5_000)
    p.add_argument("--warmup", type=int, default=10_000, help="the flatness baseline is the sample at this count")
    p.add_argument("--max-growth-kib", type=int, default=1024)
    p.add_argument("--target-dir", type=Path, default=ROOT / "target")
    p.add_argument("--json", type=Path, default=None, help="default: <target-dir>/soak/<function>.json")
    args = p.parse_args(argv)

    binary = args.target_dir / "release" / args.function
    if not binary.is_file():
        raise SystemExit(f"{binary} not found: run `make release` first")
    event_path, calls_ably = probe.EVENTS[args.function]
    event = (ROOT / event_path).read_bytes()
    ably = probe.FakeAbly() if calls_ably else None
    overrides = [f"ABLY_REST_URL={ably.url}"] if ably else []
    env = invoke.function_env(args.function, ROOT / "env.json", overrides + ["RUST_LOG=info"])

    emulator = invoke.Emulator(binary, args.function, env)
    samples = []
    failures = 0
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    try:
        invoker = probe.Invoker(emulator.port)
        pid = None
        for i in range(1, args.invocations + 1):
            answer = invoker.invoke(event)
            status = answer.get("statusCode")
            if status != 200:
                failures += 1
                statuses[status] = statuses.get(status, 0) + 1
            if pid is None:
                pid = probe.bootstrap_pid(emulator.proc.pid)
                if pid is None:
                    raise SystemExit(f"no bootstrap process under the emulator:\n{emulator.logs()[-2000:]}")
            if i == 1 or i % args.every == 0 or i == args.invocations:
                s = probe.proc_status(pid)
                samples.append({"invocations": i, "rss_kib": s.get("VmRSS"), "hwm_kib": s.get("VmHWM"),
                                "elapsed_s": round(time.perf_counter() - started, 2)})
                print(f"{i:>8} invocations  RSS {s.get('VmRSS', 0) / 1024:6.2f} MiB  peak {s.get('VmHWM', 0) / 1024:6.2f}"
                      f" MiB  {time.perf_counter() - started:7.1f} s", flush=True)
        invoker.close()
        if emulator.proc.poll() is not None or probe.proc_status(pid) == {}:
            raise SystemExit("the bootstrap process is gone: it was restarted, the container did not stay warm")
    finally:
        emulator.stop()
        if ably:
            ably.stop()

    elapsed = time.perf_counter() - started
    rss = [s["rss_kib"] for s in samples]
    baseline = next((s for s in samples if s["invocations"] >= args.warmup), samples[0])
    growth = samples[-1]["rss_kib"] - baseline["rss_kib"]
    summary = {
        "function": args.function,
        "invocations": args.invocations,
        "failures": failures,
        "statuses_other_than_200": statuses,
        "elapsed_s": round(elapsed, 1),
        "invocations_per_s": round(args.invocations / elapsed, 1),
        "rss_first_kib": rss[0],
        "rss_baseline_kib": baseline["rss_kib"],
        "baseline_at": baseline["invocations"],
        "rss_last_kib": rss[-1],
        "rss_max_kib": max(rss),
        "peak_hwm_kib": samples[-1]["hwm_kib"],
        "growth_after_warmup_kib": growth,
        "samples": samples,
    }
    out = args.json or args.target_dir / "soak" / f"{args.function}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{args.function}: {args.invocations} invocations in {elapsed:.0f} s ({summary['invocations_per_s']}/s), "
          f"{failures} not 200")
    print(f"RSS first {rss[0] / 1024:.2f} MiB, at {baseline['invocations']} {baseline['rss_kib'] / 1024:.2f} MiB, "
          f"last {rss[-1] / 1024:.2f} MiB, max {max(rss) / 1024:.2f} MiB; peak (VmHWM) {samples[-1]['hwm_kib'] / 1024:.2f} MiB")
    flat = growth <= args.max_growth_kib
    print(f"growth after warm-up: {growth} KiB ({'flat' if flat else 'NOT FLAT'}: limit {args.max_growth_kib} KiB)")
    print(f"details: {out}")
    return 0 if flat and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
