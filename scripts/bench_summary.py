#!/usr/bin/env python3
"""Print the medians of the criterion benchmarks as one table, with the targets of issue 7.

`make bench` runs `cargo bench -p shared` and then this script. It reads criterion's own
results, `<target>/criterion/**/new/estimates.json` (the `median` estimate: the median of
the per-iteration times of the samples, in nanoseconds, with its 95 % confidence interval)
and `benchmark.json` next to it (the benchmark's full id).

    scripts/bench_summary.py                      # every benchmark criterion has results for
    scripts/bench_summary.py --since 1700000000   # only results written after that time
    scripts/bench_summary.py --json out.json      # also write {id: median_ns} for other scripts
    scripts/bench_summary.py --markdown           # a Markdown table (docs/PERFORMANCE.md)

Every bench binary of ours (engine, token_request, routes, caller) also measures
`baseline/<binary>` — HMAC-SHA256 of 256 bytes with AWS-LC, in the same process (see
shared/benches/common) — and the table gives each median as a ratio to the baseline of the
process that measured it: a machine-independent figure (the baseline is native code that no
compiler setting changes).

Exit status 0 even when a target is missed: the table says so (benchmarks measure, tests
decide; see docs/PERFORMANCE.md for the explanation of any miss).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Benchmark id -> (target median in ns, what the target is).
TARGETS: dict[str, tuple[float, str]] = {
    "jwt_mint": (5_000, "mint <= 5 us"),
    "token_request_sign": (5_000, "sign <= 5 us"),
    "issue_jwt_full_request_hs256_caller": (25_000, "HS256 request <= 25 us"),
    "route_issue_jwt_hs256": (25_000, "HS256 request <= 25 us"),
    "issue_jwt_full_request_rs256_caller": (60_000, "RS256 request <= 60 us"),
    "route_issue_jwt_rs256": (60_000, "RS256 request <= 60 us"),
}


# Benchmark id (exact, or prefix ending in "_") -> the bench binary that measures it.
BINARY_OF: list[tuple[str, str]] = [
    ("issue_jwt_full_request_hs256_caller", "engine"),
    ("issue_jwt_full_request_", "caller"),
    ("jwt_mint", "engine"),
    ("capability_", "engine"),
    ("policy_", "engine"),
    ("token_request_sign", "token_request"),
    ("route_", "routes"),
    ("caller_", "caller"),
    ("rsa2048_", "caller"),
]


def binary_of(bench_id: str) -> str | None:
    for key, binary in BINARY_OF:
        if bench_id == key or (key.endswith("_") and bench_id.startswith(key)):
            return binary
    return None


def ratio(results: dict[str, dict], bench_id: str) -> str:
    """The median as a multiple of the same process's baseline, or "-"."""
    if bench_id.startswith("baseline/"):
        return "1"
    base = results.get(f"baseline/{binary_of(bench_id)}")
    if not base or not base["median"]:
        return "-"
    r = results[bench_id]["median"] / base["median"]
    return f"{r:.1f}" if r < 100 else f"{r:,.0f}"


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")


def collect(criterion: Path, since: float | None) -> dict[str, dict]:
    """{full id: {median, low, high, mtime}} from criterion's result files."""
    found: dict[str, dict] = {}
    for estimates in criterion.glob("**/new/estimates.json"):
        mtime = estimates.stat().st_mtime
        if since is not None and mtime < since:
            continue
        try:
            median = json.loads(estimates.read_text())["median"]
        except (OSError, ValueError, KeyError):
            continue
        bench_id = str(estimates.parent.parent.relative_to(criterion))
        meta = estimates.parent / "benchmark.json"
        try:
            bench_id = json.loads(meta.read_text()).get("full_id") or bench_id
        except (OSError, ValueError):
            pass
        ci = median.get("confidence_interval", {})
        found[bench_id] = {
            "median": median["point_estimate"],
            "low": ci.get("lower_bound"),
            "high": ci.get("upper_bound"),
            "mtime": mtime,
        }
    return found


def human(ns: float | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def rows(results: dict[str, dict]) -> list[list[str]]:
    out = []
    for bench_id in sorted(results):
        r = results[bench_id]
        verdict = ""
        if bench_id in TARGETS:
            limit, what = TARGETS[bench_id]
            verdict = f"{'ok' if r['median'] <= limit else 'MISSED'} ({what})"
        out.append([bench_id, human(r["median"]), f"{human(r['low'])} – {human(r['high'])}", ratio(results, bench_id),
                    verdict])
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--criterion-dir", type=Path, default=None, help="default: <target>/criterion")
    p.add_argument("--since", type=float, default=None, help="only results written at or after this Unix time")
    p.add_argument("--json", type=Path, default=None, help="write {id: median_ns} here")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = p.parse_args(argv)

    criterion = args.criterion_dir or target_dir() / "criterion"
    results = collect(criterion, args.since)
    if not results:
        print(f"no criterion results in {criterion}" + (" from this run" if args.since else ""), file=sys.stderr)
        return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: v["median"] for k, v in sorted(results.items())}, indent=2) + "\n")

    header = ["benchmark", "median", "95% CI of the median", "× baseline", "target"]
    table = rows(results)
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join(["---", "---:", "---", "---:", "---"]) + "|")
        for r in table:
            print("| " + " | ".join(f"`{r[0]}`" if i == 0 else c for i, c in enumerate(r)) + " |")
        return 0
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in table:
        print("  ".join((c.rjust(w) if i in (1, 3) else c.ljust(w)) for i, (c, w) in enumerate(zip(r, widths))))
    missed = [r[0] for r in table if "MISSED" in r[4]]
    if missed:
        print(f"\ntargets missed: {', '.join(missed)} (see docs/PERFORMANCE.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
